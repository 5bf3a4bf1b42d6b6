/*
 * Timeouts as users see them: a backend slower than upstream_ms gets the
 * client a 504 on time; a client that never finishes its head gets 408 after
 * client_header_ms and is disconnected.
 */
#include "harness.h"

static void assert_proxy_error(struct it_env *env, const struct it_response *r)
{
    assert_null(it_header(r, "X-Backend"));
    assert_string_equal(it_header(r, "Content-Length"), it_strf(env, "%zu", r->body_len));
    assert_true(r->body_len < 1024);
}

IT_TEST(upstream_timeout_gateway_timeout)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.upstream_ms = 500;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    int64_t t0 = it_now_ms();
    it_send_str(c, "GET /slow?ms=3000 HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    int64_t elapsed = it_now_ms() - t0;
    assert_int_equal(r.status, 504);
    assert_proxy_error(env, &r);
    assert_in_range(elapsed, 400, 1500);
    it_response_free(&r);

    /* Others are still served. */
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
}

IT_TEST(client_header_timeout_request_timeout)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.client_header_ms = 500;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    int64_t t0 = it_now_ms();
    it_send_str(c, "GET / HTTP/1.1\r\nHost: x\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    int64_t elapsed = it_now_ms() - t0;
    assert_int_equal(r.status, 408);
    assert_proxy_error(env, &r);
    assert_in_range(elapsed, 400, 1500);
    assert_true(it_conn_wait_closed(c, 1000));
    it_response_free(&r);

    /* A prompt client on another connection is unaffected. */
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(upstream_timeout_gateway_timeout),
    IT_CASE(client_header_timeout_request_timeout),
};

IT_MAIN(tests)
