/*
 * Tests of plugins/strategy/ewma.c, loaded through the real loader and host,
 * over a synthetic pool (see strategy_fixture.h), with latencies told
 * through outcome() as the core would: a slow backend is left alone from its
 * first slow answer, a failure costs penalty_ms, untried backends are
 * tried, load and weight scale the cost, and the cost decays back.
 */
#include "strategy_fixture.h"

#include <time.h>

#define EWMA FC_PLUGIN_BUILD_DIR "/ewma.so"
#define N MAX_BACKENDS

static void tell(uint32_t backend, int status, uint64_t latency_us)
{
    fx.plugin->desc->strategy->outcome(fx.inst.state, backend, status, latency_us);
}

static void test_descriptor(void **unused)
{
    assert_string_equal(fx.plugin->desc->name, "ewma");
    assert_non_null(fx.plugin->desc->strategy->outcome);
}

static void test_untried_backends_are_tried(void **unused)
{
    use_pool(4, NULL);
    int count[N];
    count_picks(count, 200, NULL);
    for (int i = 0; i < N; i++)
        assert_true(count[i] > 0);
}

/*
 * n picks as the core makes them: each answered (outcome()) in latency_us[i]
 * by the backend i it went to. Counts into count[].
 */
static void serve(int n, const uint64_t *latency_us, int *count)
{
    memset(count, 0, N * sizeof(*count));
    for (int k = 0; k < n; k++) {
        int b = pick(NULL);
        assert_true(b >= 0 && b < (int)pool.n_backends);
        count[b]++;
        tell((uint32_t)b, 200, latency_us[b]);
    }
}

/* One slow answer, and the next 1,000 requests leave the backend alone (two of four are drawn). */
static void test_a_slow_backend_is_left_alone_at_once(void **unused)
{
    use_pool(4, NULL);
    static const uint64_t fast[N] = {1000, 1000, 1000, 1000};
    int count[N];
    serve(100, fast, count);
    tell(1, 200, 100000); /* 100 ms: the peak counts at once */
    static const uint64_t one_slow[N] = {1000, 100000, 1000, 1000};
    serve(1000, one_slow, count);
    assert_int_equal(count[1], 0);
    for (int i = 0; i < N; i++)
        if (i != 1)
            assert_true(count[i] > 200);
}

/* A failure before a head (status 0) and a 5xx cost penalty_ms (1 s). */
static void test_failures_cost_the_penalty(void **unused)
{
    use_pool(4, NULL);
    for (uint32_t i = 0; i < N; i++)
        tell(i, 200, 20000); /* 20 ms each */
    tell(2, 0, 50);          /* a refused connect: quick, but a failure */
    tell(3, 503, 100);
    int count[N];
    count_picks(count, 1000, NULL);
    /* Only when the two of them are drawn together: 1 pick in 6, about 167 of 1,000. */
    assert_true(count[2] + count[3] < 250);
    /*
     * 0 and 1 cost the same but for the decay since each was told (0 a little
     * longer ago, so a little cheaper): 0 takes about 500, 1 about 333
     * (σ ≈ 15), so each is well above 250.
     */
    assert_true(count[0] + count[1] > 750);
    assert_true(count[0] > 250 && count[1] > 250);
}

/* Equal costs: requests in flight, divided by weight, decide. */
static void test_load_and_weight_scale_the_cost(void **unused)
{
    use_pool(2, NULL);
    tell(0, 200, 1000);
    tell(1, 200, 1000);
    set_inflight(5, 0, 0, 0);
    int count[N];
    count_picks(count, 100, NULL);
    assert_int_equal(count[0], 0);
    static const uint32_t w[] = {8, 1, 1, 1};
    use_pool(2, w);
    tell(0, 200, 1000);
    tell(1, 200, 1000);
    set_inflight(3, 0, 0, 0); /* 1000 * 4 / 8 = 500 < 1000 * 1 / 1 */
    count_picks(count, 100, NULL);
    assert_int_equal(count[1], 0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* With decay_ms = 20, a backend slow once is tried again after a while. */
static void test_the_cost_decays(void **unused)
{
    use_pool(2, NULL);
    fc_instance_destroy(&fx.inst);
    assert_int_equal(create_with_keys(&fx.inst, "decay_ms = 20;", &pool), 0);
    tell(0, 200, 1000);
    tell(1, 200, 1000);
    tell(1, 200, 200000);
    assert_int_equal(pick(NULL), 0);
    /* 300 ms = 15 decays: 200 ms * e^-15 is far below 1 ms. */
    sleep_ms(300);
    tell(0, 200, 1000); /* backend 0 still costs about 1 ms */
    int count[N];
    count_picks(count, 50, NULL);
    assert_true(count[1] > 0);
}

static void test_keys(void **unused)
{
    use_pool(2, NULL);
    static const char *const bad[] = {"decay_ms = 0;",    "decay_ms = \"x\";",
                                      "penalty_ms = -5;", "penalty_ms = 3600001;",
                                      "decay = 5;",       NULL};
    assert_keys_refused(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STRATEGY_TEST(test_descriptor, EWMA),
        STRATEGY_TEST(test_untried_backends_are_tried, EWMA),
        STRATEGY_TEST(test_a_slow_backend_is_left_alone_at_once, EWMA),
        STRATEGY_TEST(test_failures_cost_the_penalty, EWMA),
        STRATEGY_TEST(test_load_and_weight_scale_the_cost, EWMA),
        STRATEGY_TEST(test_the_cost_decays, EWMA),
        STRATEGY_TEST(test_keys, EWMA),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
