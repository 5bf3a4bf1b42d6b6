/*
 * Tests of plugins/strategy/least_conn.c, loaded through the real loader and
 * host, against a synthetic pool whose weights and backend states (up,
 * in-flight counts) the tests set (see strategy_fixture.h).
 */
#include "strategy_fixture.h"

#define LEAST_CONN FC_PLUGIN_BUILD_DIR "/least_conn.so"
#define N MAX_BACKENDS

static void test_descriptor(void **unused)
{
    assert_string_equal(fx.plugin->desc->name, "least_conn");
    assert_int_equal(fx.plugin->desc->kind, FC_PLUGIN_STRATEGY);
    assert_null(fx.plugin->desc->strategy->outcome);
}

static void test_equal_load_rotates(void **unused)
{
    use_pool(3, NULL);
    static const int expected[] = {0, 1, 2, 0, 1, 2, 0};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        assert_int_equal(pick(NULL), expected[i]);

    /* Equal but non-zero counts rotate just the same. */
    set_inflight(4, 4, 4, 0);
    assert_int_equal(pick(NULL), 1);
    assert_int_equal(pick(NULL), 2);
    assert_int_equal(pick(NULL), 0);
}

static void test_even_distribution_exact(void **unused)
{
    use_pool(4, NULL);
    set_inflight(2, 2, 2, 2);
    int count[N];
    count_picks(count, 10000, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(count[i], 2500);
}

static void test_follows_least_loaded(void **unused)
{
    use_pool(4, NULL);
    set_inflight(3, 1, 2, 5);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(NULL), 1);

    /* The counts move (other workers, finished requests): the next pick follows. */
    set_inflight(3, 4, 2, 5);
    assert_int_equal(pick(NULL), 2);
    set_inflight(0, 4, 2, 5);
    assert_int_equal(pick(NULL), 0);
    set_inflight(9, 9, 9, 8);
    assert_int_equal(pick(NULL), 3);
}

static void test_ties_among_least_rotate(void **unused)
{
    /* Backends 0 and 2 tie for least; 1 and 3 are busier and never picked. */
    use_pool(4, NULL);
    set_inflight(1, 3, 1, 2);
    int count[N] = {0};
    int last = -1;
    for (int i = 0; i < 1000; i++) {
        int b = pick(NULL);
        assert_true(b == 0 || b == 2);
        assert_int_not_equal(b, last);
        last = b;
        count[b]++;
    }
    assert_int_equal(count[0], 500);
    assert_int_equal(count[2], 500);
}

static void test_weight_scales_load(void **unused)
{
    /* 1 in flight on weight 1 is a load of 1; 2 on weight 3 is 2/3: less. */
    static const uint32_t weights[N] = {1, 3, 1, 1};
    use_pool(2, weights);
    set_inflight(1, 2, 0, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick(NULL), 1);

    /* 3 on weight 3 equals 1 on weight 1: a tie, broken in rotation. */
    set_inflight(1, 3, 0, 0);
    int a = pick(NULL), b = pick(NULL);
    assert_int_not_equal(a, b);

    /* 4 on weight 3 is more than 1 on weight 1. */
    set_inflight(1, 4, 0, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick(NULL), 0);
}

static void test_weighted_loads_exact(void **unused)
{
    /* Loads 2/3, 3/5, 5/8, 1/1: 3/5 is the least, and 2/3 vs 4/6 must tie exactly. */
    static const uint32_t weights[N] = {3, 5, 8, 1};
    use_pool(4, weights);
    set_inflight(2, 3, 5, 1);
    assert_int_equal(pick(NULL), 1);
    static const uint32_t weights2[N] = {3, 6, 1, 1};
    use_pool(2, weights2);
    set_inflight(2, 4, 0, 0);
    int first = pick(NULL);
    assert_int_not_equal(pick(NULL), first);
}

static void test_down_never_picked(void **unused)
{
    use_pool(3, NULL);
    set_inflight(5, 0, 5, 0);
    states[1].up = 0; /* the least loaded, but down */
    for (int i = 0; i < 1000; i++) {
        int b = pick(NULL);
        assert_true(b == 0 || b == 2);
    }
    states[1].up = 1;
    assert_int_equal(pick(NULL), 1);
}

static void test_tried_skipped(void **unused)
{
    use_pool(3, NULL);
    set_inflight(2, 0, 1, 0);
    uint8_t tried[N] = {0, 1, 0, 0};
    /* The retry after failing on the least loaded goes to the next least loaded. */
    assert_int_equal(pick(tried), 2);
    tried[2] = 1;
    assert_int_equal(pick(tried), 0);
    tried[0] = 1;
    assert_int_equal(pick(tried), FC_ENOBACKEND);
    /* Tried flags belong to one request: the next one sees every backend. */
    assert_int_equal(pick(NULL), 1);
}

static void test_all_down(void **unused)
{
    use_pool(3, NULL);
    for (int i = 0; i < N; i++)
        states[i].up = 0;
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    states[2].up = 1;
    states[2].inflight = 100;
    assert_int_equal(pick(NULL), 2);
}

static void test_instances_start_apart(void **unused)
{
    /* Instance 0 is the fixture's; the next ones start their scans at 1, 2, then 0 again. */
    use_pool(3, NULL);
    for (int k = 1; k <= 3; k++) {
        struct fc_instance other;
        create_other(&other);
        assert_int_equal(pick_from(&other, (uint32_t)k, NULL), k % 3);
        fc_instance_destroy(&other);
    }
    assert_int_equal(pick(NULL), 0);
}

static void test_empty_pool(void **unused)
{
    use_pool(0, NULL);
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
}

int main(void)
{
#define T(name) STRATEGY_TEST(name, LEAST_CONN)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_equal_load_rotates),
        T(test_even_distribution_exact),
        T(test_follows_least_loaded),
        T(test_ties_among_least_rotate),
        T(test_weight_scales_load),
        T(test_weighted_loads_exact),
        T(test_down_never_picked),
        T(test_tried_skipped),
        T(test_all_down),
        T(test_instances_start_apart),
        T(test_empty_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
