/*
 * Strict parsing: a request that is ambiguous or malformed gets 400 from the
 * proxy itself and its connection is closed; nothing reaches a backend, and
 * the proxy goes on serving everyone else.
 */
#include "harness.h"

#include <string.h>

/* Sends `request`, expects the proxy's own 400 and the connection closed. */
static void expect_rejected(struct it_env *env, int port, const char *request)
{
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, request);
    struct it_response r;
    it_expect_response(c, "GET", &r);
    if (r.status != 400)
        print_error("request: %s\n", request);
    assert_int_equal(r.status, 400);
    /* Made by the proxy, not passed through from the backend. */
    assert_null(it_header(&r, "X-Backend"));
    assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", r.body_len));
    assert_true(it_conn_wait_closed(c, 2000));
    it_response_free(&r);
    it_conn_close(c);
}

static void expect_still_serving(struct it_env *env, int port)
{
    struct it_response r;
    it_get(env, port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "a\n");
    it_response_free(&r);
}

IT_TEST(content_length_with_transfer_encoding)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    /* The classic smuggling shape: each framing would end the body elsewhere. */
    expect_rejected(env, f->port,
                    "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /status/299 HTTP/1.1\r\n"
                    "Host: test\r\n\r\n");
    expect_rejected(env, f->port,
                    "POST /sum HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Length: 5\r\n\r\n0\r\n\r\n");
    expect_still_serving(env, f->port);
}

IT_TEST(malformed_request_line)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    expect_rejected(env, f->port, "NOT A REQUEST\r\n\r\n");
    expect_rejected(env, f->port, "GET / HTTP/1.1 trailing\r\nHost: test\r\n\r\n");
    expect_rejected(env, f->port, "GET / HTTQ/1.1\r\nHost: test\r\n\r\n");
    expect_still_serving(env, f->port);
}

IT_TEST(malformed_header)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    expect_rejected(env, f->port, "GET / HTTP/1.1\r\nHost : test\r\n\r\n");
    expect_rejected(env, f->port, "GET / HTTP/1.1\r\nHost: test\r\nX Foo: 1\r\n\r\n");
    expect_rejected(env, f->port, "GET / HTTP/1.1\r\nHost: test\r\nNoColon\r\n\r\n");
    expect_still_serving(env, f->port);
}

IT_TEST(rejected_after_good_request_on_same_connection)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);

    it_send_str(c, "GET / HTTP/1.1\r\nHost : test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 400);
    assert_true(it_conn_wait_closed(c, 2000));
    it_response_free(&r);
    expect_still_serving(env, f->port);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(content_length_with_transfer_encoding),
    IT_CASE(malformed_request_line),
    IT_CASE(malformed_header),
    IT_CASE(rejected_after_good_request_on_same_connection),
};

IT_MAIN(tests)
