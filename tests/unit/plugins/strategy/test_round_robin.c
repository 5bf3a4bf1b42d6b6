/*
 * Tests of plugins/strategy/round_robin.c, loaded through the real loader and
 * host, against a synthetic pool whose backend states the tests set (see
 * strategy_fixture.h).
 */
#include "strategy_fixture.h"

#define ROUND_ROBIN FC_PLUGIN_BUILD_DIR "/round_robin.so"
#define N 3

/* Backend 1 weighs 5: round-robin must ignore it. */
static const uint32_t weights[N] = {1, 5, 1};

/* Every test starts with the instance over these three, at backend 0. */
static int setup(void **state)
{
    if (strategy_setup(state) < 0)
        return -1;
    use_pool(N, weights);
    return 0;
}

static void test_descriptor(void **unused)
{
    assert_string_equal(fx.plugin->desc->name, "round_robin");
    assert_null(fx.plugin->desc->strategy->outcome);
}

static void test_sequence(void **unused)
{
    static const int expected[] = {0, 1, 2, 0, 1, 2, 0};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        assert_int_equal(pick(NULL), expected[i]);
}

static void test_down_skipped(void **unused)
{
    states[1].up = 0;
    static const int expected[] = {0, 2, 0, 2, 0};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        assert_int_equal(pick(NULL), expected[i]);

    /* Back up: it takes its turn again, right after the last pick (0). */
    states[1].up = 1;
    assert_int_equal(pick(NULL), 1);
    assert_int_equal(pick(NULL), 2);
}

static void test_tried_skipped(void **unused)
{
    uint8_t tried[N] = {0, 1, 0};
    assert_int_equal(pick(NULL), 0);
    /* A retry after failing on 1 goes on to 2, not back to 1. */
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
    for (int i = 0; i < N; i++)
        states[i].up = 0;
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    states[2].up = 1;
    assert_int_equal(pick(NULL), 2);
    assert_int_equal(pick(NULL), 2);
}

static void test_even_distribution(void **unused)
{
    /* Weights are ignored: backend 1 has weight 5 and gets the same share. */
    int count[N];
    count_picks(count, 9999, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(count[i], 3333);

    /* 10,000 picks cannot split evenly in three: no backend is ahead by more than one. */
    count_picks(count, 10000, NULL);
    assert_int_equal(count[0], 3334);
    assert_int_equal(count[1], 3333);
    assert_int_equal(count[2], 3333);
}

static void test_instances_start_apart(void **unused)
{
    /* The setup made instance 0; the next ones start at backends 1, 2, then 0 again. */
    for (int k = 1; k <= 3; k++) {
        struct fc_instance other;
        create_other(&other);
        assert_int_equal(pick_from(&other, (uint32_t)k, NULL), k % N);
        fc_instance_destroy(&other);
    }
    assert_int_equal(pick(NULL), 0);
}

static void test_empty_pool(void **unused)
{
    static const struct fc_pool_view empty = {.name = "empty", .n_backends = 0, .backends = NULL};
    struct fc_instance inst;
    struct fc_pick_args args = {.size = sizeof(args)};
    assert_int_equal(fc_instance_create(&inst, fx.plugin, NULL, NULL, NULL, &empty, NULL, "e"), 0);
    assert_int_equal(fx.plugin->desc->strategy->pick(inst.state, &args), FC_ENOBACKEND);
    fc_instance_destroy(&inst);
}

int main(void)
{
#define T(name)                                                                                    \
    cmocka_unit_test_prestate_setup_teardown(name, setup, strategy_teardown, (void *)ROUND_ROBIN)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_sequence),
        T(test_down_skipped),
        T(test_tried_skipped),
        T(test_all_down),
        T(test_even_distribution),
        T(test_instances_start_apart),
        T(test_empty_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
