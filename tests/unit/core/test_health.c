/*
 * core/health.c: the rise/fall state machine fed with injected results, and
 * passive failure detection driven with an injected clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "generation.h"
#include "health.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static char logged[8][512];
static int n_logged;

static void sink(void *arg, enum fc_log_level level, const char *line)
{
    if (n_logged < 8)
        snprintf(logged[n_logged++], sizeof(logged[0]), "%s", line);
}

static void test_rise_fall(void **state)
{
    struct fc_health_counters h = {.up = 1};
    /* Up: two failures are not enough with fall = 3, and a pass resets the count. */
    assert_int_equal(fc_health_apply(&h, 0, 2, 3), FC_HEALTH_SAME);
    assert_int_equal(fc_health_apply(&h, 0, 2, 3), FC_HEALTH_SAME);
    assert_int_equal(fc_health_apply(&h, 1, 2, 3), FC_HEALTH_SAME);
    assert_int_equal(fc_health_apply(&h, 0, 2, 3), FC_HEALTH_SAME);
    assert_int_equal(fc_health_apply(&h, 0, 2, 3), FC_HEALTH_SAME);
    assert_true(h.up);
    /* The third failure in a row takes it down, once. */
    assert_int_equal(fc_health_apply(&h, 0, 2, 3), FC_HEALTH_WENT_DOWN);
    assert_false(h.up);
    assert_int_equal(fc_health_apply(&h, 0, 2, 3), FC_HEALTH_SAME);
    /* Down: a pass then a failure starts over; two passes in a row bring it up, once. */
    assert_int_equal(fc_health_apply(&h, 1, 2, 3), FC_HEALTH_SAME);
    assert_int_equal(fc_health_apply(&h, 0, 2, 3), FC_HEALTH_SAME);
    assert_int_equal(fc_health_apply(&h, 1, 2, 3), FC_HEALTH_SAME);
    assert_false(h.up);
    assert_int_equal(fc_health_apply(&h, 1, 2, 3), FC_HEALTH_WENT_UP);
    assert_true(h.up);
    assert_int_equal(fc_health_apply(&h, 1, 2, 3), FC_HEALTH_SAME);
}

static void test_rise_fall_one(void **state)
{
    struct fc_health_counters h = {.up = 0};
    assert_int_equal(fc_health_apply(&h, 1, 1, 1), FC_HEALTH_WENT_UP);
    assert_int_equal(fc_health_apply(&h, 0, 1, 1), FC_HEALTH_WENT_DOWN);
    assert_int_equal(fc_health_apply(&h, 1, 1, 1), FC_HEALTH_WENT_UP);
}

/* A generation with one pool of two backends, built by hand: no sockets, no plugins. */
struct fixture {
    struct fc_config cfg;
    struct fc_conf_pool conf;
    struct fc_generation g;
    struct fc_gen_pool pool;
    struct fc_backend_view views[2];
    struct fc_gen_backend backends[2];
    struct fc_backend_shared shared[2];
    struct fc_backend_shared *shared_ptrs[2];
};

static struct fixture fx;

static void fixture_init(uint32_t max_fails, int with_checker)
{
    memset(&fx, 0, sizeof(fx));
    fx.conf.name = "web";
    fx.conf.max_fails = max_fails;
    fx.conf.fail_timeout_ms = 1000;
    fx.cfg.pools = &fx.conf;
    fx.cfg.n_pools = 1;
    fx.g.cfg = &fx.cfg;
    fx.g.pools = &fx.pool;
    fx.pool.conf = &fx.conf;
    fx.pool.views = fx.views;
    fx.pool.shared = fx.shared_ptrs;
    fx.pool.view.n_backends = 2;
    fx.pool.view.backends = fx.views;
    fx.pool.all = fx.pool.view;
    fx.pool.n_backends = 2;
    fx.pool.backends = fx.backends;
    /* Only its presence matters to the passive logic. */
    fx.pool.health = with_checker ? &fx.pool.health_inst : NULL;
    const char *names[2] = {"127.0.0.1:9001", "127.0.0.1:9002"};
    for (int i = 0; i < 2; i++) {
        fx.shared[i].state.up = 1;
        fx.shared[i].active.up = 1;
        fx.shared_ptrs[i] = &fx.shared[i];
        fx.views[i].index = (uint32_t)i;
        fx.views[i].address = names[i];
        fx.views[i].state = &fx.shared[i].state;
    }
    n_logged = 0;
    fc_log_set_sink(sink, NULL);
}

#define MS 1000000ull

static void test_passive_cooldown(void **state)
{
    fixture_init(3, 0);
    uint64_t t0 = 5000 * MS;
    fc_health_report_failure_at(&fx.pool, 0, "connect failed", t0);
    fc_health_report_failure_at(&fx.pool, 0, "connect failed", t0);
    assert_int_equal(fx.shared[0].state.up, 1);
    fc_health_report_failure_at(&fx.pool, 0, "connect failed", t0);
    assert_int_equal(fx.shared[0].state.up, 0);
    assert_int_equal(fx.shared[1].state.up, 1); /* the other backend is not touched */
    assert_int_equal(n_logged, 1);
    assert_string_equal(logged[0], "pool web: backend 127.0.0.1:9001 DOWN (connect failed, 3 in "
                                   "a row; retried in 1000 ms)");
    /* Still down half-way through the cool-down, up once it is over. */
    fc_health_scan(&fx.g, t0 + 500 * MS);
    assert_int_equal(fx.shared[0].state.up, 0);
    fc_health_scan(&fx.g, t0 + 1000 * MS);
    assert_int_equal(fx.shared[0].state.up, 1);
    assert_int_equal(n_logged, 2);
    assert_string_equal(logged[1],
                        "pool web: backend 127.0.0.1:9001 UP (cool-down of 1000 ms over)");
    fc_log_set_sink(NULL, NULL);
}

static void test_passive_success_resets(void **state)
{
    fixture_init(3, 0);
    for (int round = 0; round < 5; round++) {
        fc_health_report_failure_at(&fx.pool, 1, "response timed out", 1);
        fc_health_report_failure_at(&fx.pool, 1, "response timed out", 1);
        fc_health_report_success(&fx.shared[1].passive_failures);
    }
    assert_int_equal(fx.shared[1].state.up, 1);
    assert_int_equal(n_logged, 0);
    fc_log_set_sink(NULL, NULL);
}

static void test_passive_disabled(void **state)
{
    fixture_init(0, 0);
    for (int i = 0; i < 100; i++)
        fc_health_report_failure_at(&fx.pool, 0, "connect failed", 1);
    assert_int_equal(fx.shared[0].state.up, 1);
    fc_log_set_sink(NULL, NULL);
}

/* With an active checker, a passive trip is undone by passing probes, not by the clock. */
static void test_passive_with_checker(void **state)
{
    fixture_init(2, 1);
    fc_health_report_failure_at(&fx.pool, 0, "connect failed", 1);
    fc_health_report_failure_at(&fx.pool, 0, "connect failed", 1);
    assert_int_equal(fx.shared[0].state.up, 0);
    assert_string_equal(logged[0], "pool web: backend 127.0.0.1:9001 DOWN (connect failed, 2 in "
                                   "a row; back when health checks pass)");
    fc_health_scan(&fx.g, 1 + 60000 * MS);
    assert_int_equal(fx.shared[0].active.up, 0);
    assert_int_equal(fx.shared[0].state.up, 0);
    fc_log_set_sink(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rise_fall),        cmocka_unit_test(test_rise_fall_one),
        cmocka_unit_test(test_passive_cooldown), cmocka_unit_test(test_passive_success_resets),
        cmocka_unit_test(test_passive_disabled), cmocka_unit_test(test_passive_with_checker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
