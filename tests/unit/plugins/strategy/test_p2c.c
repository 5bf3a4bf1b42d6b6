/*
 * Tests of plugins/strategy/p2c.c (power of two random choices), loaded
 * through the real loader and host, against synthetic pools whose weights and
 * backend states (up, in-flight counts) the tests set (see strategy_fixture.h).
 *
 * The picks are random, so distributions are checked over 10,000 picks within
 * bounds of at least six standard deviations (a false failure is rarer than
 * one run in a hundred million); what must never happen (the most loaded of
 * the pool picked, a down or tried backend picked) is checked exactly.
 */
#include "strategy_fixture.h"

#define P2C FC_PLUGIN_BUILD_DIR "/p2c.so"
#define N MAX_BACKENDS
#define PICKS 10000

/* PICKS picks into count[]; every one must be a backend of the pool. */
static void run_picks(int *count, const uint8_t *tried)
{
    count_picks(count, PICKS, tried);
}

static void assert_near(int got, int expected, int tolerance)
{
    if (got < expected - tolerance || got > expected + tolerance)
        fail_msg("count %d outside %d +- %d", got, expected, tolerance);
}

static void test_descriptor(void **unused)
{
    assert_string_equal(fx.plugin->desc->name, "p2c");
    assert_int_equal(fx.plugin->desc->kind, FC_PLUGIN_STRATEGY);
    assert_null(fx.plugin->desc->strategy->outcome);
}

static void test_equal_load_even(void **unused)
{
    /* Each of 4 equal backends within +-10% of 2,500 (sigma is 43: 5.8 sigma). */
    int count[N];
    use_pool(4, NULL);
    run_picks(count, NULL);
    for (int i = 0; i < N; i++)
        assert_near(count[i], 2500, 250);

    /* The same with every backend equally busy. */
    set_inflight(7, 7, 7, 7);
    run_picks(count, NULL);
    for (int i = 0; i < N; i++)
        assert_near(count[i], 2500, 250);
}

static void test_most_loaded_never_picked(void **unused)
{
    int count[N];
    /* Two distinct draws: the busiest of 3 loses to whichever other one is drawn with it. */
    use_pool(3, NULL);
    set_inflight(0, 0, 5, 0);
    run_picks(count, NULL);
    assert_int_equal(count[2], 0);
    assert_near(count[0], 5000, 400);
    assert_near(count[1], 5000, 400);

    /*
     * Four distinct loads: a backend is picked when it is drawn with a busier
     * one. Of the 6 pairs, the least loaded wins 3 (1/2), the next 2 (1/3),
     * the next 1 (1/6), the busiest none.
     */
    use_pool(4, NULL);
    set_inflight(3, 0, 1, 2);
    run_picks(count, NULL);
    assert_int_equal(count[0], 0);
    assert_near(count[1], 5000, 400);
    assert_near(count[2], 3333, 400);
    assert_near(count[3], 1667, 400);
}

static void test_follows_inflight(void **unused)
{
    /* With two backends both are always drawn: the less loaded always wins. */
    use_pool(2, NULL);
    set_inflight(5, 1, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(NULL), 1);
    set_inflight(2, 3, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(NULL), 0);
}

static void test_weight_scales_load(void **unused)
{
    /* 1 in flight on weight 1 (load 1) against 2 on weight 3 (load 2/3). */
    static const uint32_t w[] = {1, 3};
    use_pool(2, w);
    set_inflight(1, 2, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(NULL), 1);
    /* 4 on weight 3 is more than 1 on weight 1. */
    set_inflight(1, 4, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(NULL), 0);
}

static void test_weight_shares_idle_pool(void **unused)
{
    int count[N];
    /* Idle, every load ties and the first draw (by weight) wins: 1/4 and 3/4. */
    static const uint32_t w13[] = {1, 3};
    use_pool(2, w13);
    run_picks(count, NULL);
    assert_near(count[0], 2500, 300);
    assert_near(count[1], 7500, 300);

    /* 1, 2, 3, 4 out of 10, with four backends. */
    static const uint32_t w1234[] = {1, 2, 3, 4};
    use_pool(4, w1234);
    run_picks(count, NULL);
    assert_near(count[0], 1000, 200);
    assert_near(count[1], 2000, 300);
    assert_near(count[2], 3000, 300);
    assert_near(count[3], 4000, 300);

    /*
     * Skewed weights: the second draw must differ from the first, which takes
     * many redraws when the first is the heavy one, and then the exact scan.
     * Backend 1 wins a tie only when drawn first: 1 in 101.
     */
    static const uint32_t w_skewed[] = {100, 1};
    use_pool(2, w_skewed);
    run_picks(count, NULL);
    assert_near(count[1], 99, 60);
    set_inflight(1, 0, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(NULL), 1);
}

static void test_down_never_picked(void **unused)
{
    int count[N];
    use_pool(4, NULL);
    states[2].up = 0;
    run_picks(count, NULL);
    assert_int_equal(count[2], 0);
    assert_near(count[0], 3333, 400);
    assert_near(count[1], 3333, 400);
    assert_near(count[3], 3333, 400);

    /* Down, though the least loaded: still never picked. */
    set_inflight(4, 4, 0, 4);
    run_picks(count, NULL);
    assert_int_equal(count[2], 0);
}

static void test_one_eligible(void **unused)
{
    use_pool(4, NULL);
    states[0].up = 0;
    states[1].up = 0;
    states[3].up = 0;
    states[2].inflight = 1000;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(NULL), 2);

    /* A pool of one. */
    use_pool(1, NULL);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(NULL), 0);
}

static void test_tried_skipped(void **unused)
{
    int count[N];
    use_pool(4, NULL);
    uint8_t tried[N] = {0, 1, 0, 0};
    /* The retry never goes back to backend 1, even when it is the least loaded. */
    set_inflight(3, 0, 3, 3);
    run_picks(count, tried);
    assert_int_equal(count[1], 0);
    tried[0] = tried[2] = 1;
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(tried), 3);
    tried[3] = 1;
    assert_int_equal(pick(tried), FC_ENOBACKEND);
    /* Tried flags belong to one request: the next ones see backend 1 again (half the time). */
    run_picks(count, NULL);
    assert_near(count[1], 5000, 400);
}

static void test_all_down(void **unused)
{
    use_pool(3, NULL);
    for (int i = 0; i < N; i++)
        states[i].up = 0;
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
    states[1].up = 1;
    assert_int_equal(pick(NULL), 1);
}

static void test_instances_draw_independently(void **unused)
{
    /* Each instance has its own generator: two never repeat each other's 100 picks. */
    use_pool(4, NULL);
    struct fc_instance other;
    create_other(&other);
    int same = 0;
    for (int i = 0; i < 100; i++)
        same += pick(NULL) == pick_from(&other, 1, NULL);
    fc_instance_destroy(&other);
    assert_true(same < 100);
}

static void test_empty_pool(void **unused)
{
    use_pool(0, NULL);
    assert_int_equal(pick(NULL), FC_ENOBACKEND);
}

int main(void)
{
#define T(name) STRATEGY_TEST(name, P2C)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_equal_load_even),
        T(test_most_loaded_never_picked),
        T(test_follows_inflight),
        T(test_weight_scales_load),
        T(test_weight_shares_idle_pool),
        T(test_down_never_picked),
        T(test_one_eligible),
        T(test_tried_skipped),
        T(test_all_down),
        T(test_instances_draw_independently),
        T(test_empty_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
