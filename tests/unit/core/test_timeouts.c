/*
 * core/timeouts.h on a real libuv loop: every deadline expires once, not
 * before its time and not much after it, in order; re-arming moves it,
 * stopping cancels it; more durations than queues are still never late;
 * an expiry may arm again or stop others.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "timeouts.h"

#include <string.h>

/* How late an expiry may come on a loaded test machine. */
#define SLACK_MS 150

struct item {
    struct fc_timeout t; /* first: the callback casts back */
    uint64_t armed_at;
    uint32_t ms;
    uint64_t fired_at;
    int fired;
    int rearm; /* times it arms itself again from its callback */
    struct item *stop_other;
};

static uv_loop_t loop;
static struct fc_timeouts ts;
static uint32_t order[64];
static uint32_t n_order;
static struct item items[64];

static void on_expiry(struct fc_timeout *t)
{
    struct item *it = (struct item *)t;
    it->fired++;
    it->fired_at = uv_now(&loop);
    order[n_order++] = (uint32_t)(it - items);
    if (it->stop_other != NULL)
        fc_timeout_stop(&ts, &it->stop_other->t);
    if (it->rearm > 0) {
        it->rearm--;
        it->armed_at = uv_now(&loop);
        fc_timeout_arm(&ts, t, it->ms);
    }
}

static void arm(struct item *it, uint32_t ms)
{
    it->armed_at = uv_now(&loop);
    it->ms = ms;
    fc_timeout_arm(&ts, &it->t, ms);
}

/* The timer does not keep the loop alive: this one does, until `ms` passed. */
static uv_timer_t keeper;
static void keeper_cb(uv_timer_t *h)
{
    (void)h;
}
static void run_for(uint32_t ms)
{
    uv_timer_start(&keeper, keeper_cb, ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static int setup(void **state)
{
    (void)state;
    memset(items, 0, sizeof(items));
    n_order = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &keeper);
    fc_timeouts_init(&ts, &loop, on_expiry);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fc_timeouts_close(&ts);
    uv_close((uv_handle_t *)&keeper, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

static void assert_on_time(const struct item *it)
{
    assert_int_equal(it->fired, 1);
    assert_true(it->fired_at >= it->armed_at + it->ms);
    assert_true(it->fired_at <= it->armed_at + it->ms + SLACK_MS);
}

static void test_deadlines_expire_in_order_on_time(void **state)
{
    (void)state;
    arm(&items[0], 60);
    arm(&items[1], 20);
    arm(&items[2], 40);
    assert_int_equal(fc_timeouts_count(&ts), 3);
    run_for(300);
    for (int i = 0; i < 3; i++)
        assert_on_time(&items[i]);
    assert_int_equal(n_order, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 0);
    assert_int_equal(fc_timeouts_count(&ts), 0);
    assert_false(fc_timeout_armed(&items[0].t));
}

static void test_rearming_moves_and_stopping_cancels(void **state)
{
    (void)state;
    arm(&items[0], 30);
    arm(&items[1], 30);
    arm(&items[2], 30);
    fc_timeout_stop(&ts, &items[1].t);
    fc_timeout_stop(&ts, &items[1].t); /* twice is fine */
    run_for(15);
    arm(&items[0], 30); /* moved behind items[2] in their queue */
    run_for(200);
    assert_int_equal(items[1].fired, 0);
    assert_on_time(&items[0]);
    assert_on_time(&items[2]);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 0);
    assert_int_equal(n_order, 2);
}

static void test_more_durations_than_queues_are_never_late(void **state)
{
    (void)state;
    /* Three times the queues, longest first so that no queue's duration fits the next. */
    int n = 3 * FC_TIMEOUT_QUEUES;
    for (int i = 0; i < n; i++)
        arm(&items[i], (uint32_t)(20 + 7 * (n - i)));
    assert_int_equal(fc_timeouts_count(&ts), (uint32_t)n);
    run_for(600);
    for (int i = 0; i < n; i++)
        assert_on_time(&items[i]);
    for (int i = 1; i < n; i++)
        assert_true(items[order[i - 1]].ms <= items[order[i]].ms);
}

static void test_an_expiry_may_arm_again_and_stop_others(void **state)
{
    (void)state;
    items[0].rearm = 2;
    arm(&items[0], 20);
    items[1].stop_other = &items[2];
    arm(&items[1], 10);
    arm(&items[2], 50);
    run_for(300);
    assert_int_equal(items[0].fired, 3);
    assert_true(items[0].fired_at >= items[0].armed_at + 20);
    assert_int_equal(items[1].fired, 1);
    assert_int_equal(items[2].fired, 0); /* stopped by items[1]'s expiry */
    assert_int_equal(fc_timeouts_count(&ts), 0);
}

static void test_zero_is_one_millisecond(void **state)
{
    (void)state;
    arm(&items[0], 0);
    run_for(50);
    assert_int_equal(items[0].fired, 1);
    assert_true(items[0].fired_at >= items[0].armed_at + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deadlines_expire_in_order_on_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearming_moves_and_stopping_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_more_durations_than_queues_are_never_late, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_expiry_may_arm_again_and_stop_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_zero_is_one_millisecond, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
