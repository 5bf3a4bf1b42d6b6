/*
 * Pipelined requests, written in one go, are answered in order on the same
 * connection, even when the first is the slowest and the pool spreads them
 * over two backends.
 */
#include "harness.h"

#include <string.h>

IT_TEST(four_requests_in_one_write)
{
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    it_config_add_pool(&cfg, "web", 1, 2, a, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET /slow?ms=300 HTTP/1.1\r\nHost: test\r\n\r\n"
                   "GET /bytes?n=3 HTTP/1.1\r\nHost: test\r\n\r\n"
                   "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
                   "GET /status/202 HTTP/1.1\r\nHost: test\r\n\r\n");

    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);

    it_expect_pattern(c, 3);
    it_expect_sum(env, c, "hello", 5);

    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 202);
    it_response_free(&r);

    /* Nothing extra arrived, and the connection still serves. */
    assert_int_equal(it_conn_buffered(c), 0);
    it_send_str(c, "GET /bytes?n=4 HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 4);
    it_response_free(&r);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(four_requests_in_one_write),
};

IT_MAIN(tests)
