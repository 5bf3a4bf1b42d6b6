/*
 * The per-worker counters (core/stats.c): a block found again by kind and
 * name while held (what makes counters survive a reload), a fresh one after
 * the last release, sums over every worker's slot, and the status classes,
 * proxy codes and latency buckets the request path files counts under.
 */
#include "stats.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_same_name_same_block(void **state)
{
    struct fc_stats *a = fc_stats_acquire(FC_STATS_BACKEND, "web\n127.0.0.1:9001", 4);
    assert_non_null(a);
    fc_stats_add(&fc_stats_backend(a, 3)->requests, 5);
    /* A reload's generation asks for the same backend: it gets the same counters. */
    struct fc_stats *b = fc_stats_acquire(FC_STATS_BACKEND, "web\n127.0.0.1:9001", 4);
    assert_ptr_equal(a, b);
    fc_stats_release(a); /* the old generation goes */
    struct fc_backend_stats sum;
    fc_stats_sum_backend(b, &sum);
    assert_int_equal(sum.requests, 5);
    /* Another kind or another name is another block. */
    struct fc_stats *pool = fc_stats_acquire(FC_STATS_POOL, "web\n127.0.0.1:9001", 4);
    struct fc_stats *other = fc_stats_acquire(FC_STATS_BACKEND, "web\n127.0.0.1:9002", 4);
    assert_ptr_not_equal(pool, b);
    assert_ptr_not_equal(other, b);
    fc_stats_release(pool);
    fc_stats_release(other);
    fc_stats_release(b);
    /* Nobody held it: a backend added again later starts from zero. */
    struct fc_stats *again = fc_stats_acquire(FC_STATS_BACKEND, "web\n127.0.0.1:9001", 4);
    fc_stats_sum_backend(again, &sum);
    assert_int_equal(sum.requests, 0);
    fc_stats_release(again);
}

static void test_sums_every_worker(void **state)
{
    struct fc_stats *s = fc_stats_acquire(FC_STATS_LISTENER, "127.0.0.1:8080", 3);
    for (uint32_t w = 0; w < 3; w++) {
        struct fc_listener_stats *l = fc_stats_listener(s, w);
        fc_stats_add(&l->accepted, w + 1);
        fc_stats_add(&l->responses[fc_stats_class(204)], 10);
        fc_stats_add(&l->proxy_responses[fc_stats_proxy_index(503)], 1);
        fc_stats_add(&l->bytes_out, 1000);
        /* Each slot on cache lines of its own: workers never share one. */
        assert_int_equal((uintptr_t)l % 64, 0);
    }
    struct fc_listener_stats sum;
    fc_stats_sum_listener(s, &sum);
    assert_int_equal(sum.accepted, 6);
    assert_int_equal(sum.responses[1], 30);
    assert_int_equal(sum.responses[0] + sum.responses[2] + sum.responses[3] + sum.responses[4], 0);
    assert_int_equal(sum.proxy_responses[fc_stats_proxy_index(503)], 3);
    assert_int_equal(sum.bytes_out, 3000);
    fc_stats_release(s);
}

static void test_classes_codes_buckets(void **state)
{
    assert_int_equal(fc_stats_class(100), 0);
    assert_int_equal(fc_stats_class(599), 4);
    assert_int_equal(fc_stats_class(99), -1);
    assert_int_equal(fc_stats_class(600), -1);
    assert_int_equal(fc_stats_proxy_index(400), 0);
    assert_int_equal(fc_stats_proxy_index(505), FC_STATS_PROXY_CODES - 1);
    assert_int_equal(fc_stats_proxy_index(200), -1);
    /* A bucket holds latencies up to and including its bound. */
    assert_int_equal(fc_stats_bucket(0), 0);
    assert_int_equal(fc_stats_bucket(500000), 0);   /* 0.5 ms */
    assert_int_equal(fc_stats_bucket(500001), 1);
    assert_int_equal(fc_stats_bucket(10000000000ull), FC_STATS_BUCKETS - 1); /* 10 s */
    assert_int_equal(fc_stats_bucket(10000000001ull), FC_STATS_BUCKETS);     /* +Inf */
    for (unsigned i = 1; i < FC_STATS_BUCKETS; i++)
        assert_true(fc_stats_bucket_bounds[i] > fc_stats_bucket_bounds[i - 1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_name_same_block),
        cmocka_unit_test(test_sums_every_worker),
        cmocka_unit_test(test_classes_codes_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
