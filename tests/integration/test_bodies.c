/*
 * Bodies stream through byte-exact in both directions, with either framing:
 * uploads are checked by the backend's length + FNV-1a answer, downloads
 * against the /bytes pattern.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

/* A body that is not the /bytes pattern, so an echo could not pass by accident. */
static char *make_body(size_t len)
{
    char *body = malloc(len);
    assert_non_null(body);
    uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body[i] = (char)(x >> 24);
    }
    return body;
}

IT_TEST(upload_content_length_3mib)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    size_t len = 3 * 1024 * 1024;
    char *body = make_body(len);
    struct it_conn *c = it_connect(env, f->port);
    it_send_sum(env, c, body, len);
    it_expect_sum(env, c, body, len);
    free(body);
}

IT_TEST(upload_chunked_1mib)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    size_t len = 1024 * 1024 + 333;
    char *body = make_body(len);
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "POST /sum HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
    /* Odd sizes, one send each, so chunk boundaries fall anywhere in reads. */
    static const size_t sizes[] = {1, 7, 4093, 65537, 3, 100003, 8191, 250001, 13, 131071};
    size_t off = 0;
    for (size_t i = 0; off < len; i++) {
        size_t n = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
        if (n > len - off)
            n = len - off;
        it_send_str(c, it_strf(env, i % 2 ? "%zx\r\n" : "%zX\r\n", n));
        it_send(c, body + off, n);
        it_send_str(c, "\r\n");
        off += n;
    }
    it_send_str(c, "0\r\n\r\n");
    it_expect_sum(env, c, body, len);
    free(body);
}

IT_TEST(upload_expect_continue)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    size_t len = 200000;
    char *body = make_body(len);
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, it_strf(env,
                           "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n"
                           "Expect: 100-continue\r\n\r\n",
                           len));
    /* Like curl: wait for the go-ahead before sending the body. */
    assert_true(it_conn_wait_data(c, 3000));
    it_send(c, body, len);
    struct it_response r;
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.interim, 1);
    assert_int_equal(r.interim_status, 100);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, it_sum_line(env, body, len));
    it_response_free(&r);
    free(body);
}

static void download(struct it_env *env, bool chunked)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    size_t len = 8 * 1024 * 1024;
    struct it_response r;
    it_get(env, f->port, "test", it_strf(env, "/bytes?n=%zu%s", len, chunked ? "&chunked=1" : ""),
           &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, len);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), len);
    /* An HTTP/1.1 client gets the backend's framing passed through. */
    assert_int_equal(r.chunked, chunked);
    if (!chunked)
        assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", len));
    it_response_free(&r);
}

IT_TEST(download_8mib)
{
    download(env, false);
}

IT_TEST(download_8mib_chunked)
{
    download(env, true);
}

/*
 * A long body is read into a buffer of its own, no further than its end: the
 * requests pipelined right behind it, in the same write, are each answered
 * in order, and a long download on the same connection after them too.
 */
IT_TEST(long_upload_then_pipelined_requests_in_one_write)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    size_t len = 1024 * 1024 + 4099, small = 777;
    char *body = make_body(len);
    char *small_body = make_body(small);
    const char *head =
        it_strf(env, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n\r\n", len);
    const char *head2 =
        it_strf(env, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n\r\n", small);
    const char *get = "GET /bytes?n=300000 HTTP/1.1\r\nHost: test\r\n\r\n";
    size_t total = strlen(head) + len + strlen(head2) + small + strlen(get);
    char *all = malloc(total);
    assert_non_null(all);
    size_t off = 0;
    memcpy(all + off, head, strlen(head));
    off += strlen(head);
    memcpy(all + off, body, len);
    off += len;
    memcpy(all + off, head2, strlen(head2));
    off += strlen(head2);
    memcpy(all + off, small_body, small);
    off += small;
    memcpy(all + off, get, strlen(get));
    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 10000);
    it_send(c, all, total);
    it_expect_sum(env, c, body, len);
    it_expect_sum(env, c, small_body, small);
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 300000);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), 300000);
    it_response_free(&r);
    free(all);
    free(small_body);
    free(body);
}

/* The request pipelined behind a long body is still held to limits.max_header_bytes. */
IT_TEST(max_header_bytes_holds_behind_a_long_body)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.max_header_bytes = 1024;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    size_t len = 200 * 1024;
    char *body = make_body(len);
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *head =
        it_strf(env, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n\r\n", len);
    const char *next = it_strf(env, "GET / HTTP/1.1\r\nHost: test\r\nX-Big: %s\r\n\r\n", big);
    size_t total = strlen(head) + len + strlen(next);
    char *all = malloc(total);
    assert_non_null(all);
    memcpy(all, head, strlen(head));
    memcpy(all + strlen(head), body, len);
    memcpy(all + strlen(head) + len, next, strlen(next));
    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 10000);
    it_send(c, all, total);
    it_expect_sum(env, c, body, len);
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 431);
    it_response_free(&r);
    free(all);
    free(body);
}

/* clang-format off */
static const struct CMUnitTest tests[] = {
    IT_CASE(upload_content_length_3mib),
    IT_CASE(upload_chunked_1mib),
    IT_CASE(upload_expect_continue),
    IT_CASE(download_8mib),
    IT_CASE(download_8mib_chunked),
    IT_CASE(long_upload_then_pipelined_requests_in_one_write),
    IT_CASE(max_header_bytes_holds_behind_a_long_body),
};
/* clang-format on */

IT_MAIN(tests)
