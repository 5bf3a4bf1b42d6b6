/*
 * Tests of plugins/strategy/weighted.c (smooth weighted round-robin), loaded
 * through the real loader and host, against synthetic pools whose weights and
 * backend states the tests set (see strategy_fixture.h). The algorithm is
 * deterministic, so sequences and counts are checked exactly.
 */
#include "strategy_fixture.h"

#define WEIGHTED FC_PLUGIN_BUILD_DIR "/weighted.so"
#define N MAX_BACKENDS

/* a a b a c a a: weights 5, 1, 1. */
static const int SEQ_511[] = {0, 0, 1, 0, 2, 0, 0};

static void expect_sequence(const int *expected, size_t n, const uint8_t *tried)
{
    for (size_t i = 0; i < n; i++) {
        int b = pick(tried);
        if (b != expected[i])
            fail_msg("pick %zu: got backend %d, expected %d", i + 1, b, expected[i]);
    }
}

static void test_descriptor(void **unused)
{
    assert_string_equal(fx.plugin->desc->name, "weighted");
    assert_int_equal(fx.plugin->desc->kind, FC_PLUGIN_STRATEGY);
    assert_null(fx.plugin->desc->strategy->outcome);
}

static void test_sequence_5_1_1(void **unused)
{
    static const uint32_t w[] = {5, 1, 1};
    use_pool(3, w);
    /* Smooth: a a b a c a a, not a a a a a b c; and the cycle repeats exactly. */
    expect_sequence(SEQ_511, 7, NULL);
    expect_sequence(SEQ_511, 7, NULL);
    expect_sequence(SEQ_511, 7, NULL);
}

static void test_sequence_3_2(void **unused)
{
    static const uint32_t w[] = {3, 2};
    use_pool(2, w);
    static const int expected[] = {0, 1, 0, 1, 0, 0, 1, 0, 1, 0};
    expect_sequence(expected, 10, NULL);
}

static void test_sequence_equal_weights(void **unused)
{
    /* Equal weights are plain round-robin. */
    static const uint32_t w[] = {2, 2, 2};
    use_pool(3, w);
    static const int expected[] = {0, 1, 2, 0, 1, 2};
    expect_sequence(expected, 6, NULL);
}

static void test_distribution_exact(void **unused)
{
    /* 10,000 picks of 5,1,1: 1428 whole cycles of 7, then a a b a. */
    static const uint32_t w511[] = {5, 1, 1};
    use_pool(3, w511);
    int count[N];
    count_picks(count, 10000, NULL);
    assert_int_equal(count[0], 1428 * 5 + 3);
    assert_int_equal(count[1], 1428 + 1);
    assert_int_equal(count[2], 1428);
}

static void test_distribution_cycles_exact(void **unused)
{
    /* 1,2,3,4: 10,000 picks are 1000 cycles of 10, and every cycle is exact on its own. */
    static const uint32_t w1234[] = {1, 2, 3, 4};
    use_pool(4, w1234);
    int count[N] = {0};
    for (int cycle = 0; cycle < 1000; cycle++) {
        int in_cycle[N] = {0};
        for (int i = 0; i < 10; i++)
            in_cycle[pick(NULL)]++;
        for (int b = 0; b < N; b++) {
            assert_int_equal(in_cycle[b], b + 1);
            count[b] += in_cycle[b];
        }
    }
    assert_int_equal(count[0], 1000);
    assert_int_equal(count[1], 2000);
    assert_int_equal(count[2], 3000);
    assert_int_equal(count[3], 4000);
}

static void test_down_skipped(void **unused)
{
    static const uint32_t w[] = {5, 1, 1};
    use_pool(3, w);
    states[1].up = 0;
    /* b is not advanced while down: a and c share 5:1, smoothly (a a a c a a). */
    static const int without_b[] = {0, 0, 0, 2, 0, 0};
    int count[N] = {0};
    for (int cycle = 0; cycle < 1000; cycle++) {
        expect_sequence(without_b, 6, NULL);
        count[0] += 5;
        count[2] += 1;
    }
    assert_int_equal(count[0], 5000);
    assert_int_equal(count[2], 1000);

    /*
     * Back up, b resumes where it left off: it piled up no credit while down
     * (no burst of b's), and after whole cycles of a and c every current
     * weight is 0 again, so the original sequence starts over.
     */
    states[1].up = 1;
    expect_sequence(SEQ_511, 7, NULL);
    expect_sequence(SEQ_511, 7, NULL);
}

static void test_tried_skipped(void **unused)
{
    static const uint32_t w[] = {5, 1, 1};
    use_pool(3, w);
    uint8_t tried[N] = {1, 0, 0, 0};
    /* A retry after failing on a goes to b or c, never back to a. */
    for (int i = 0; i < 100; i++) {
        int b = pick(tried);
        assert_true(b == 1 || b == 2);
    }
    tried[1] = 1;
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick(tried), 2);
    tried[2] = 1;
    assert_int_equal(pick(tried), FC_ENOBACKEND);
    /* Tried flags belong to one request: the next one sees every backend. */
    assert_true(pick(NULL) >= 0);
}

static void test_all_down(void **unused)
{
    static const uint32_t w[] = {5, 1, 1};
    use_pool(3, w);
    for (int i = 0; i < 3; i++)
        states[i].up = 0;
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    states[2].up = 1;
    assert_int_equal(pick(NULL), 2);
    assert_int_equal(pick(NULL), 2);
}

static void test_instances_start_apart(void **unused)
{
    /* The fixture's is instance 0; instance k starts k picks into the cycle. */
    static const uint32_t w[] = {5, 1, 1};
    use_pool(3, w);
    for (int k = 1; k <= 8; k++) {
        struct fc_instance other;
        create_other(&other);
        for (int i = 0; i < 14; i++)
            assert_int_equal(pick_from(&other, (uint32_t)k, NULL), SEQ_511[(k + i) % 7]);
        fc_instance_destroy(&other);
    }
    expect_sequence(SEQ_511, 7, NULL);
}

static void test_empty_pool(void **unused)
{
    use_pool(0, NULL);
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
}

int main(void)
{
#define T(name) STRATEGY_TEST(name, WEIGHTED)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),         T(test_sequence_5_1_1),
        T(test_sequence_3_2),       T(test_sequence_equal_weights),
        T(test_distribution_exact), T(test_distribution_cycles_exact),
        T(test_down_skipped),       T(test_tried_skipped),
        T(test_all_down),           T(test_instances_start_apart),
        T(test_empty_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
