/*
 * Responses that carry no body (HEAD, 204, 304) are framed correctly: the
 * client sees the headers only, and the keep-alive connection goes on.
 */
#include "harness.h"

IT_TEST(head_has_no_body)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "HEAD /bytes?n=100 HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "HEAD", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "Content-Length"), "100");
    assert_int_equal(r.body_len, 0);
    it_response_free(&r);
    /* No stray body bytes follow the head. */
    assert_false(it_conn_wait_data(c, 200));

    it_send_str(c, "GET /bytes?n=10 HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_pattern(c, 10);
}

IT_TEST(status_204_and_304_have_no_body)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    struct it_conn *c = it_connect(env, f->port);
    struct it_response r;

    it_send_str(c, "GET /status/204 HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_null(it_header(&r, "Transfer-Encoding"));
    it_response_free(&r);

    it_send_str(c, "GET /status/304 HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    assert_null(it_header(&r, "Transfer-Encoding"));
    it_response_free(&r);
    assert_false(it_conn_wait_data(c, 200));

    it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "a\n");
    it_response_free(&r);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(head_has_no_body),
    IT_CASE(status_204_and_304_have_no_body),
};

IT_MAIN(tests)
