/*
 * HTTP/1.0 clients: without keep-alive the proxy closes after the response,
 * and they never see chunked framing (which HTTP/1.0 does not have), even
 * when the backend sends it.
 */
#include "harness.h"

IT_TEST(closes_after_response)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET / HTTP/1.0\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "a\n");
    assert_true(it_conn_wait_closed(c, 2000));
    it_response_free(&r);
}

IT_TEST(chunked_backend_body_unchunked)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET /bytes?n=1000&chunked=1 HTTP/1.0\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_false(r.chunked);
    assert_null(it_header(&r, "Transfer-Encoding"));
    assert_int_equal(r.body_len, 1000);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), 1000);
    assert_true(r.close_delimited || it_conn_wait_closed(c, 2000));
    it_response_free(&r);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(closes_after_response),
    IT_CASE(chunked_backend_body_unchunked),
};

IT_MAIN(tests)
