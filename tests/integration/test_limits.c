/*
 * Size limits: a head larger than limits.max_header_bytes gets 431, a body
 * declared larger than limits.max_body_bytes gets 413, both from the proxy,
 * and requests inside the limits pass.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

static struct it_fulcrum *start_one(struct it_env *env, long max_body_bytes)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.max_header_bytes = 16384;
    cfg.max_body_bytes = max_body_bytes;
    return it_fulcrum_start(env, &cfg);
}

static const char *cookie_request(struct it_env *env, size_t cookie_len)
{
    char *cookie = malloc(cookie_len + 1);
    memset(cookie, 'c', cookie_len);
    cookie[cookie_len] = '\0';
    const char *req = it_strf(env, "GET / HTTP/1.1\r\nHost: test\r\nCookie: %s\r\n\r\n", cookie);
    free(cookie);
    return req;
}

IT_TEST(header_too_large)
{
    struct it_fulcrum *f = start_one(env, 0);
    struct it_response r;

    it_fetch(env, f->port, "GET", cookie_request(env, 20 * 1024), &r);
    assert_int_equal(r.status, 431);
    assert_null(it_header(&r, "X-Backend"));
    assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", r.body_len));
    it_response_free(&r);

    /* Well inside the limit: passes. */
    it_fetch(env, f->port, "GET", cookie_request(env, 8 * 1024), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "a\n");
    it_response_free(&r);
}

IT_TEST(body_too_large)
{
    struct it_fulcrum *f = start_one(env, 1000);
    char body[5000];
    it_pattern_fill(body, 0, sizeof(body));
    struct it_response r;

    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n");
    it_send(c, body, sizeof(body));
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.status, 413);
    assert_null(it_header(&r, "X-Backend"));
    assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", r.body_len));
    it_response_free(&r);
    it_conn_close(c);

    /* Exactly at the limit: passes. */
    c = it_connect(env, f->port);
    it_send_sum(env, c, body, 1000);
    it_expect_sum(env, c, body, 1000);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(header_too_large),
    IT_CASE(body_too_large),
};

IT_MAIN(tests)
