/*
 * SIGTERM: fulcrum stops accepting, lets in-flight requests finish, and
 * exits 0 within the shutdown bound.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

IT_TEST(sigterm_exits_zero)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.shutdown_ms = 3000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* An idle keep-alive connection must not hold the exit up. */
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);

    int64_t t0 = it_now_ms();
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, cfg.shutdown_ms + 2000);
    assert_in_range(it_now_ms() - t0, 0, cfg.shutdown_ms + 1000);
    assert_true(it_conn_wait_closed(c, 1000));
}

IT_TEST(sigterm_drains_in_flight)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.shutdown_ms = 5000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET /slow?ms=2000 HTTP/1.1\r\nHost: test\r\n\r\n");
    it_sleep_ms(300); /* the request is at the backend now */
    it_proc_signal(f->proc, SIGTERM);

    /* New connections are refused while the slow request is still running. */
    int64_t deadline = it_now_ms() + 1000;
    int err = 0;
    for (;;) {
        struct it_conn *probe = it_connect_raw(env, f->port, &err);
        if (probe == NULL)
            break;
        it_conn_close(probe);
        if (it_now_ms() > deadline)
            fail_msg("fulcrum still accepts connections 1 s after SIGTERM");
        it_sleep_ms(20);
    }
    assert_int_equal(err, -ECONNREFUSED);

    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-Backend"), "a");
    it_response_free(&r);

    it_fulcrum_expect_clean_exit(env, f, cfg.shutdown_ms + 2000);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(sigterm_exits_zero),
    IT_CASE(sigterm_drains_in_flight),
};

IT_MAIN(tests)
