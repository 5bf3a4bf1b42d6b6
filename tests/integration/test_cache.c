/*
 * The response cache as a client and an origin see it: a pool with a
 * `cache` group (the bundled `memory` store) in front of a scripted origin
 * that numbers its answers, so that an answer from the cache is the same
 * answer again, and counts what it was asked.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define BIG_BYTES (4u << 20)
#define FLOOD_BODY 16384

struct origin {
    int served; /* answers so far, under the atomics below */
};

/* The request header `name`'s value in head, into out ("" when absent). */
static void request_header(const char *head, const char *name, char *out, size_t cap)
{
    if (!it_head_value(head, name, out, cap))
        out[0] = '\0';
}

static int send_head(int fd, const char *status, const char *headers, size_t body_len)
{
    char head[2048];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n", status,
                     headers, body_len);
    return n > 0 && (size_t)n < sizeof(head) ? it_raw_write(fd, head, (size_t)n) : -1;
}

static int answer(int fd, const char *status, const char *headers, const char *body)
{
    if (send_head(fd, status, headers, strlen(body)) != 0)
        return -1;
    return it_raw_write_str(fd, body);
}

/*
 * One request (its head in head, NUL-terminated), answered by its path:
 *   /fresh...   max-age=60            /short   max-age=1, ETag "v1" (304 to it)
 *   /nostore    no-store              /private private, max-age=60
 *   /cookie     Set-Cookie            /vary    Vary: Accept-Encoding
 *   /chunked    chunked, max-age=60   /big     4 MiB of the pattern, max-age=60
 *   /cut        Content-Length 1000, then 500 bytes and the close
 *   /expires    max-age=1, no validator
 * Every body names the answer's number.
 */
static int serve(int fd, struct origin *o, const char *head, const char *path)
{
    int n = __atomic_add_fetch(&o->served, 1, __ATOMIC_SEQ_CST);
    char body[512], value[256];
    snprintf(body, sizeof(body), "answer %d for %s\n", n, path);
    if (strncmp(head, "POST ", 5) == 0)
        return answer(fd, "200 OK", "", body);
    if (strncmp(path, "/fresh", 6) == 0)
        return answer(fd, "200 OK", "Cache-Control: max-age=60\r\nETag: \"f1\"\r\n", body);
    if (strncmp(path, "/n/", 3) == 0) {
        /* 16 KiB each, for the flood. */
        static char pad[FLOOD_BODY];
        memset(pad, 'n', sizeof(pad));
        if (send_head(fd, "200 OK", "Cache-Control: max-age=60\r\n", sizeof(pad)) != 0)
            return -1;
        return it_raw_write(fd, pad, sizeof(pad));
    }
    if (strcmp(path, "/nostore") == 0)
        return answer(fd, "200 OK", "Cache-Control: no-store\r\n", body);
    if (strcmp(path, "/private") == 0)
        return answer(fd, "200 OK", "Cache-Control: private, max-age=60\r\n", body);
    if (strcmp(path, "/cookie") == 0)
        return answer(fd, "200 OK", "Cache-Control: max-age=60\r\nSet-Cookie: s=1\r\n", body);
    if (strcmp(path, "/expires") == 0)
        return answer(fd, "200 OK", "Cache-Control: max-age=1\r\n", body);
    if (strcmp(path, "/vary") == 0) {
        request_header(head, "Accept-Encoding", value, sizeof(value));
        snprintf(body, sizeof(body), "answer %d for %s\n", n, value);
        return answer(fd, "200 OK", "Cache-Control: max-age=60\r\nVary: Accept-Encoding\r\n", body);
    }
    if (strcmp(path, "/short") == 0) {
        request_header(head, "If-None-Match", value, sizeof(value));
        if (strcmp(value, "\"v1\"") == 0)
            return it_raw_write_str(fd, "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=1\r\n"
                                        "ETag: \"v1\"\r\nX-Refreshed: yes\r\n\r\n");
        return answer(fd, "200 OK", "Cache-Control: max-age=1\r\nETag: \"v1\"\r\n", body);
    }
    if (strcmp(path, "/chunked") == 0) {
        char chunk[1024];
        int cn = snprintf(chunk, sizeof(chunk),
                          "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n5\r\ntail\n\r\n0\r\n\r\n",
                          strlen(body), body);
        return it_raw_write(fd, chunk, (size_t)cn);
    }
    if (strcmp(path, "/big") == 0) {
        if (send_head(fd, "200 OK", "Cache-Control: max-age=60\r\n", BIG_BYTES) != 0)
            return -1;
        static char block[65536];
        for (size_t at = 0; at < BIG_BYTES; at += sizeof(block)) {
            it_pattern_fill(block, at, sizeof(block));
            if (it_raw_write(fd, block, sizeof(block)) != 0)
                return -1;
        }
        return 0;
    }
    if (strcmp(path, "/cut") == 0) {
        if (send_head(fd, "200 OK", "Cache-Control: max-age=60\r\n", 1000) != 0)
            return -1;
        memset(body, 'x', 250);
        it_raw_write(fd, body, 250);
        it_raw_write(fd, body, 250);
        return -1; /* and the connection ends */
    }
    return answer(fd, "404 Not Found", "", body);
}

static void origin_handler(int fd, void *arg)
{
    struct origin *o = arg;
    char buf[16384];
    size_t len = 0;
    for (;;) {
        ssize_t end = it_raw_read_until(fd, buf, sizeof(buf) - 1, &len, "\r\n\r\n", 5000);
        if (end < 0)
            return;
        char head[8192];
        size_t hl = (size_t)end < sizeof(head) - 1 ? (size_t)end : sizeof(head) - 1;
        memcpy(head, buf, hl);
        head[hl] = '\0';
        long cl = it_raw_content_length(buf, (size_t)end);
        it_raw_consume(buf, &len, (size_t)end);
        if (cl > 0) {
            if (it_raw_read_len(fd, buf, sizeof(buf), &len, (size_t)cl, 5000) != 0)
                return;
            it_raw_consume(buf, &len, (size_t)cl);
        }
        char path[512] = "";
        sscanf(head, "%*s %511s", path);
        if (serve(fd, o, head, path) != 0)
            return;
    }
}

struct setup {
    struct it_fulcrum *f;
    struct it_config cfg;
    int origin;
    int admin;
};

/* A fulcrum of one worker whose pool "web" has the origin and a cache with `cache_keys`. */
static void start(struct it_env *env, struct setup *s, const char *cache_keys)
{
    struct origin *o = it_zalloc(env, sizeof(*o));
    s->origin = it_raw_backend_start(env, origin_handler, o);
    it_config_init(&s->cfg);
    s->cfg.workers = 1;
    struct it_pool_config *p = it_config_add_pool(&s->cfg, "web", 1, 1, s->origin);
    p->pool_options = it_strf(env, "cache = { plugin = \"memory\"; %s };", cache_keys);
    s->admin = it_free_port();
    s->cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", s->admin);
    s->f = it_fulcrum_start(env, &s->cfg);
}

/* How many requests for `path` (as "GET /path ") the origin has been sent. */
static size_t asked(struct it_env *env, const struct setup *s, const char *method, const char *path)
{
    size_t len = 0;
    const char *all = it_raw_backend_received_all(env, s->origin, &len);
    return it_count(all, it_strf(env, "%s %s HTTP/1.1\r\n", method, path));
}

/* A GET of path with more header lines (`extra`, each ending in CRLF) on a fresh connection. */
static void get(struct it_env *env, const struct setup *s, const char *path, const char *extra,
                struct it_response *r)
{
    it_fetch(
        env, s->f->port, "GET",
        it_strf(env, "GET %s HTTP/1.1\r\nHost: cache.test\r\n%s\r\n", path, extra ? extra : ""), r);
}

static const char *status_of(struct it_env *env, const struct setup *s, const char *path)
{
    struct it_response r;
    get(env, s, path, NULL, &r);
    const char *v = it_strf(env, "%s", it_header(&r, "Cache-Status"));
    it_response_free(&r);
    return v;
}

IT_TEST(a_second_get_is_answered_without_the_backend)
{
    struct setup s;
    start(env, &s, "");
    struct it_response a, b;
    get(env, &s, "/fresh", NULL, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(it_header(&a, "Cache-Status"), "fulcrum; fwd=miss");
    it_sleep_ms(1100); /* so that the Age of the hit counts a second */
    get(env, &s, "/fresh", NULL, &b);
    assert_int_equal(b.status, 200);
    assert_string_equal(b.body, a.body);
    assert_string_equal(it_header(&b, "Cache-Status"), "fulcrum; hit");
    assert_non_null(it_header(&b, "Age"));
    assert_true(atoi(it_header(&b, "Age")) >= 1);
    assert_string_equal(it_header(&b, "Cache-Control"), "max-age=60");
    assert_string_equal(it_header(&b, "ETag"), "\"f1\"");
    assert_int_equal(asked(env, &s, "GET", "/fresh"), 1);
    it_response_free(&a);
    it_response_free(&b);

    /* A chunked answer is stored decoded and served with its length. */
    get(env, &s, "/chunked", NULL, &a);
    get(env, &s, "/chunked", NULL, &b);
    assert_true(a.chunked);
    assert_false(b.chunked);
    assert_string_equal(b.body, a.body);
    assert_int_equal(b.body_len, a.body_len);
    assert_string_equal(it_header(&b, "Cache-Status"), "fulcrum; hit");
    assert_int_equal(asked(env, &s, "GET", "/chunked"), 1);
    it_response_free(&a);
    it_response_free(&b);
    assert_int_equal(
        it_metric(env, s.admin, "fulcrum_cache_requests_total{pool=\"web\",result=\"hit\"}"), 2);
    assert_int_equal(
        it_metric(env, s.admin, "fulcrum_cache_requests_total{pool=\"web\",result=\"miss\"}"), 2);
    /* The real promtool finds nothing to say about the cache's families. */
    struct it_response m;
    it_get(env, s.admin, "admin", "/metrics", &m);
    assert_non_null(strstr(m.body, "# TYPE fulcrum_cache_bytes gauge"));
    assert_true(it_metric(env, s.admin, "fulcrum_cache_bytes{pool=\"web\"}") > 0);
    assert_int_equal(it_metric(env, s.admin, "fulcrum_cache_entries{pool=\"web\"}"), 2);
    const char *file = it_write_file(env, "metrics.txt", m.body);
    it_response_free(&m);
    const char *argv[] = {"/bin/sh", "-c", it_strf(env, "promtool check metrics < %s", file), NULL};
    struct it_run_result pr;
    it_run(env, argv, 20000, &pr);
    if (pr.exit_code != 0)
        fail_msg("promtool check metrics exited %d:\n%s%s", pr.exit_code, pr.out, pr.err);
}

IT_TEST(no_store_private_and_set_cookie_are_never_stored)
{
    struct setup s;
    start(env, &s, "");
    const char *paths[] = {"/nostore", "/private", "/cookie"};
    for (size_t i = 0; i < 3; i++) {
        for (int round = 0; round < 2; round++) {
            struct it_response r;
            get(env, &s, paths[i], NULL, &r);
            assert_int_equal(r.status, 200);
            assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=miss");
            it_response_free(&r);
        }
        assert_int_equal(asked(env, &s, "GET", paths[i]), 2);
    }
    /* Asked not to use the store, or not to store: forwarded each time, said so. */
    struct it_response r;
    get(env, &s, "/fresh", "Cache-Control: no-store\r\n", &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=bypass");
    it_response_free(&r);
    get(env, &s, "/fresh", NULL, &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=miss"); /* not stored */
    it_response_free(&r);
    get(env, &s, "/fresh", "Cache-Control: no-cache\r\n", &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=request");
    it_response_free(&r);
    assert_int_equal(asked(env, &s, "GET", "/fresh"), 3);
    get(env, &s, "/fresh", "Authorization: Basic dTpw\r\n", &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=request");
    it_response_free(&r);
    assert_int_equal(asked(env, &s, "GET", "/fresh"), 4);
}

IT_TEST(vary_keeps_one_variant_per_value)
{
    struct setup s;
    start(env, &s, "");
    struct it_response g1, b1, g2, b2;
    get(env, &s, "/vary", "Accept-Encoding: gzip\r\n", &g1);
    get(env, &s, "/vary", "Accept-Encoding: br\r\n", &b1);
    get(env, &s, "/vary", "Accept-Encoding: gzip\r\n", &g2);
    get(env, &s, "/vary", "Accept-Encoding: br\r\n", &b2);
    assert_true(strstr(g1.body, "for gzip") != NULL);
    assert_true(strstr(b1.body, "for br") != NULL);
    assert_string_equal(g2.body, g1.body);
    assert_string_equal(b2.body, b1.body);
    assert_string_equal(it_header(&g2, "Cache-Status"), "fulcrum; hit");
    assert_string_equal(it_header(&b2, "Cache-Status"), "fulcrum; hit");
    assert_int_equal(asked(env, &s, "GET", "/vary"), 2);
    it_response_free(&g1);
    it_response_free(&b1);
    it_response_free(&g2);
    it_response_free(&b2);
}

IT_TEST(a_stale_entry_is_revalidated_with_its_etag)
{
    struct setup s;
    start(env, &s, "");
    struct it_response a, b, c, d;
    get(env, &s, "/short", NULL, &a);
    get(env, &s, "/short", NULL, &b);
    assert_string_equal(it_header(&b, "Cache-Status"), "fulcrum; hit");
    assert_int_equal(asked(env, &s, "GET", "/short"), 1);
    it_sleep_ms(2100); /* max-age=1 has passed */
    get(env, &s, "/short", NULL, &c);
    /* The origin was asked whether "v1" still holds, said 304, and the client got the body. */
    assert_int_equal(asked(env, &s, "GET", "/short"), 2);
    size_t len = 0;
    const char *all = it_raw_backend_received_all(env, s.origin, &len);
    assert_int_equal(it_count(all, "If-None-Match: \"v1\"\r\n"), 1);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.body, a.body);
    assert_string_equal(it_header(&c, "Cache-Status"), "fulcrum; fwd=stale; fwd-status=304");
    assert_string_equal(it_header(&c, "X-Refreshed"), "yes"); /* the 304's headers replace */
    /* Refreshed: fresh again for its new max-age. */
    get(env, &s, "/short", NULL, &d);
    assert_string_equal(it_header(&d, "Cache-Status"), "fulcrum; hit");
    assert_string_equal(d.body, a.body);
    assert_int_equal(asked(env, &s, "GET", "/short"), 2);
    it_response_free(&a);
    it_response_free(&b);
    it_response_free(&c);
    it_response_free(&d);
    assert_int_equal(
        it_metric(env, s.admin, "fulcrum_cache_requests_total{pool=\"web\",result=\"stale\"}"), 1);
}

IT_TEST(an_entry_expires_after_its_max_age)
{
    struct setup s;
    start(env, &s, "");
    struct it_response a, b, c;
    get(env, &s, "/expires", NULL, &a);
    get(env, &s, "/expires", NULL, &b);
    assert_string_equal(b.body, a.body);
    it_sleep_ms(2100);
    get(env, &s, "/expires", NULL, &c);
    assert_string_equal(it_header(&c, "Cache-Status"), "fulcrum; fwd=stale");
    assert_string_not_equal(c.body, a.body);
    assert_int_equal(asked(env, &s, "GET", "/expires"), 2);
    it_response_free(&a);
    it_response_free(&b);
    it_response_free(&c);
}

IT_TEST(conditionals_and_head_are_answered_from_the_store)
{
    struct setup s;
    start(env, &s, "");
    struct it_response a, r;
    get(env, &s, "/fresh", NULL, &a);
    get(env, &s, "/fresh", "If-None-Match: \"f1\"\r\n", &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(it_header(&r, "ETag"), "\"f1\"");
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; hit");
    it_response_free(&r);
    get(env, &s, "/fresh", "If-None-Match: \"other\"\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, a.body);
    it_response_free(&r);

    it_fetch(env, s.f->port, "HEAD", "HEAD /fresh HTTP/1.1\r\nHost: cache.test\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_int_equal(atol(it_header(&r, "Content-Length")), (long)a.body_len);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; hit");
    it_response_free(&r);
    assert_int_equal(asked(env, &s, "GET", "/fresh"), 1);
    assert_int_equal(asked(env, &s, "HEAD", "/fresh"), 0);

    /* On one keep-alive connection, answers from the store and the backend alternate. */
    struct it_conn *conn = it_connect(env, s.f->port);
    for (int i = 0; i < 3; i++) {
        it_send_str(conn, "GET /fresh HTTP/1.1\r\nHost: cache.test\r\n\r\n"
                          "GET /nostore HTTP/1.1\r\nHost: cache.test\r\n\r\n");
        it_expect_response(conn, "GET", &r);
        assert_string_equal(r.body, a.body);
        it_response_free(&r);
        it_expect_response(conn, "GET", &r);
        assert_true(strstr(r.body, "for /nostore") != NULL);
        it_response_free(&r);
    }
    it_response_free(&a);
}

IT_TEST(a_four_mib_object_streams_and_comes_back_byte_exact)
{
    struct setup s;
    start(env, &s, "max_bytes = 16777216; max_object_bytes = 8388608;");
    for (int round = 0; round < 2; round++) {
        struct it_response r;
        get(env, &s, "/big", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, BIG_BYTES);
        assert_int_equal(it_pattern_mismatch(r.body, r.body_len), BIG_BYTES);
        assert_string_equal(it_header(&r, "Cache-Status"),
                            round ? "fulcrum; hit" : "fulcrum; fwd=miss");
        it_response_free(&r);
    }
    assert_int_equal(asked(env, &s, "GET", "/big"), 1);
}

IT_TEST(an_object_over_max_object_bytes_streams_through_unstored)
{
    struct setup s;
    start(env, &s, "max_object_bytes = 65536;");
    for (int round = 0; round < 2; round++) {
        struct it_response r;
        get(env, &s, "/big", NULL, &r);
        assert_int_equal(r.body_len, BIG_BYTES);
        assert_int_equal(it_pattern_mismatch(r.body, r.body_len), BIG_BYTES);
        assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=miss");
        it_response_free(&r);
    }
    assert_int_equal(asked(env, &s, "GET", "/big"), 2);
}

IT_TEST(an_aborted_response_is_not_stored)
{
    struct setup s;
    start(env, &s, "");
    for (int round = 0; round < 2; round++) {
        struct it_conn *c = it_connect(env, s.f->port);
        it_send_str(c, "GET /cut HTTP/1.1\r\nHost: cache.test\r\n\r\n");
        struct it_response r;
        assert_true(it_recv_response(c, "GET", &r) < 0); /* cut: never a whole answer */
        it_conn_close(c);
    }
    assert_int_equal(asked(env, &s, "GET", "/cut"), 2);
}

IT_TEST(a_successful_post_invalidates_its_target)
{
    struct setup s;
    start(env, &s, "");
    struct it_response a, r;
    get(env, &s, "/fresh", NULL, &a);
    it_fetch(env, s.f->port, "POST",
             "POST /fresh HTTP/1.1\r\nHost: cache.test\r\nContent-Length: 2\r\n\r\nhi", &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=method");
    it_response_free(&r);
    get(env, &s, "/fresh", NULL, &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=miss");
    assert_string_not_equal(r.body, a.body);
    it_response_free(&r);
    it_response_free(&a);
    assert_int_equal(asked(env, &s, "GET", "/fresh"), 2);
}

/*
 * A request body that arrives after its head overwrites the head in the
 * proxy's input buffer: what the cache does with that request (store its
 * answer, invalidate its target) must not read the body as a head.
 */
IT_TEST(a_body_sent_after_its_head_changes_nothing_else_in_the_cache)
{
    struct setup s;
    start(env, &s, "");
    const char *victim = "GET /fresh-victim HTTP/1.1\r\nHost: cache.test\r\n\r\n";
    size_t n = strlen(victim);
    struct it_conn *c = it_connect(env, s.f->port);
    it_send_str(c, it_strf(env,
                           "GET /fresh-evil HTTP/1.1\r\nHost: cache.test\r\n"
                           "Cache-Control: no-cache\r\nContent-Length: %zu\r\n\r\n",
                           n));
    it_sleep_ms(100); /* the head is on its way to the backend before the body comes */
    it_send(c, victim, n);
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=bypass");
    it_response_free(&r);
    it_conn_close(c);
    get(env, &s, "/fresh-victim", NULL, &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=miss");
    assert_non_null(strstr(r.body, "for /fresh-victim"));
    it_response_free(&r);

    /* A POST whose body comes late still drops its own target, and only that. */
    struct it_response a;
    get(env, &s, "/fresh", NULL, &a);
    assert_string_equal(status_of(env, &s, "/fresh"), "fulcrum; hit");
    assert_string_equal(status_of(env, &s, "/fresh-victim"), "fulcrum; hit");
    c = it_connect(env, s.f->port);
    const char *body = "/fresh-victim\n/fresh-victim\n";
    it_send_str(
        c, it_strf(env, "POST /fresh HTTP/1.1\r\nHost: cache.test\r\nContent-Length: %zu\r\n\r\n",
                   strlen(body)));
    it_sleep_ms(100);
    it_send_str(c, body);
    it_expect_response(c, "POST", &r);
    it_response_free(&r);
    it_conn_close(c);
    assert_string_equal(status_of(env, &s, "/fresh"), "fulcrum; fwd=miss");
    assert_string_equal(status_of(env, &s, "/fresh-victim"), "fulcrum; hit");
    it_response_free(&a);
}

IT_TEST(a_reload_keeps_the_cache_unless_its_settings_change)
{
    struct setup s;
    start(env, &s, "max_bytes = 1048576;");
    struct it_response a, r;
    get(env, &s, "/fresh", NULL, &a);
    /* Another key of the pool changes; the cache group does not. */
    s.cfg.pools[0].retries = 2;
    assert_int_equal(it_fulcrum_reload(env, s.f, &s.cfg), 0);
    get(env, &s, "/fresh", NULL, &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; hit");
    assert_string_equal(r.body, a.body);
    it_response_free(&r);
    /* A new max_bytes: a new, empty store. */
    s.cfg.pools[0].pool_options = "cache = { plugin = \"memory\"; max_bytes = 2097152; };";
    assert_int_equal(it_fulcrum_reload(env, s.f, &s.cfg), 0);
    get(env, &s, "/fresh", NULL, &r);
    assert_string_equal(it_header(&r, "Cache-Status"), "fulcrum; fwd=miss");
    it_response_free(&r);
    it_response_free(&a);
    assert_int_equal(asked(env, &s, "GET", "/fresh"), 2);
}

/* A request to the admin listener, on a fresh connection. */
static void admin(struct it_env *env, const struct setup *s, const char *method, const char *target,
                  struct it_response *r)
{
    it_fetch(env, s->admin, method,
             it_strf(env, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method, target), r);
}

IT_TEST(purge_by_path_prefix_and_all)
{
    struct setup s;
    start(env, &s, "");
    const char *paths[] = {"/fresh", "/fresh2", "/fresh2?x=1", "/n/1"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(status_of(env, &s, paths[i]), "fulcrum; fwd=miss");
        assert_string_equal(status_of(env, &s, paths[i]), "fulcrum; hit");
    }
    struct it_response r;
    admin(env, &s, "DELETE", "/api/pools/web/cache?path=%2Ffresh", &r);
    assert_int_equal(r.status, 200);
    assert_true(strstr(r.body, "\"removed\": 1") != NULL ||
                strstr(r.body, "\"removed\":1") != NULL);
    it_response_free(&r);
    assert_string_equal(status_of(env, &s, "/fresh"), "fulcrum; fwd=miss");
    assert_string_equal(status_of(env, &s, "/fresh2"), "fulcrum; hit"); /* a path, not a prefix */

    admin(env, &s, "DELETE", "/api/pools/web/cache?prefix=/fresh2", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    assert_string_equal(status_of(env, &s, "/fresh2"), "fulcrum; fwd=miss");
    assert_string_equal(status_of(env, &s, "/fresh2?x=1"), "fulcrum; fwd=miss");
    assert_string_equal(status_of(env, &s, "/fresh"), "fulcrum; hit");

    /* Bad calls: a clear error, nothing removed. */
    const char *bad[][2] = {
        {"/api/pools/web/cache", "400"},
        {"/api/pools/web/cache?path=fresh", "400"},
        {"/api/pools/web/cache?path=/a&all=1", "400"},
        {"/api/pools/web/cache?all=yes", "400"},
        {"/api/pools/web/cache?path=%zz", "400"},
        {"/api/pools/nope/cache?all=1", "404"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        admin(env, &s, "DELETE", bad[i][0], &r);
        if (r.status != atoi(bad[i][1]))
            fail_msg("DELETE %s: %d, expected %s (%s)", bad[i][0], r.status, bad[i][1], r.body);
        assert_non_null(strstr(r.body, "\"error\""));
        it_response_free(&r);
    }
    assert_string_equal(status_of(env, &s, "/n/1"), "fulcrum; hit");

    /* fulcrum ctl purge, as an operator would: a path, then everything. */
    const char *addr = it_strf(env, "127.0.0.1:%d", s.admin);
    const char *argv1[] = {FC_BINARY, "ctl", "-a", addr, "purge", "web", "/n/*", NULL};
    struct it_run_result rr;
    it_run(env, argv1, 10000, &rr);
    assert_int_equal(rr.exit_code, 0);
    assert_string_equal(rr.out, "web: purged /n/*: 1 entry\n");
    assert_string_equal(status_of(env, &s, "/n/1"), "fulcrum; fwd=miss");
    const char *argv2[] = {FC_BINARY, "ctl", "-a", addr, "purge", "web", "*", NULL};
    it_run(env, argv2, 10000, &rr);
    assert_int_equal(rr.exit_code, 0);
    assert_int_equal(it_metric(env, s.admin, "fulcrum_cache_entries{pool=\"web\"}"), 0);
    assert_int_equal(it_metric(env, s.admin, "fulcrum_cache_bytes{pool=\"web\"}"), 0);
    const char *argv3[] = {FC_BINARY, "ctl", "-a", addr, "purge", "web", "fresh", NULL};
    it_run(env, argv3, 10000, &rr);
    assert_int_equal(rr.exit_code, 2); /* bad usage, said before anything is sent */
    assert_non_null(strstr(rr.err, "expected /path, /prefix* or *"));
}

IT_TEST(max_bytes_holds_under_a_flood_of_distinct_urls)
{
    const char *asan = it_rss_asan_begin(env);
    struct setup s;
    start(env, &s, "max_bytes = 1048576; max_object_bytes = 65536;");
    it_rss_asan_end(asan);
    pid_t pid = it_proc_pid(s.f->proc);
    struct it_conn *c = it_connect(env, s.f->port);
    struct it_response r;
    /* Warm up: the worker's buffers and the store's tables exist before the count starts. */
    for (int i = 0; i < 200; i++) {
        it_send_str(c, it_strf(env, "GET /n/w%d HTTP/1.1\r\nHost: cache.test\r\n\r\n", i));
        it_expect_response(c, "GET", &r);
        it_response_free(&r);
    }
    long before = it_rss_kib(pid), peak = before;
    assert_true(before > 0);
    const int urls = 4000; /* 64 MB of distinct bodies into a 1 MiB store */
    long most = 0;
    for (int i = 0; i < urls; i++) {
        it_send_str(c, it_strf(env, "GET /n/%d HTTP/1.1\r\nHost: cache.test\r\n\r\n", i));
        it_expect_response(c, "GET", &r);
        assert_int_equal(r.body_len, FLOOD_BODY);
        it_response_free(&r);
        if (i % 500 == 499) {
            long bytes = it_metric(env, s.admin, "fulcrum_cache_bytes{pool=\"web\"}");
            most = bytes > most ? bytes : most;
            long now = it_rss_kib(pid);
            peak = now > peak ? now : peak;
        }
    }
    assert_true(most > 512 * 1024); /* it filled up */
    assert_true(most <= 1048576);
    /* The last ones are still there; the first ones were evicted. */
    assert_string_equal(status_of(env, &s, it_strf(env, "/n/%d", urls - 1)), "fulcrum; hit");
    assert_string_equal(status_of(env, &s, "/n/0"), "fulcrum; fwd=miss");
    if (peak - before > 8 * 1024)
        fail_msg("fulcrum's RSS grew by %ld KiB (from %ld KiB) while 64 MB went through a "
                 "1 MiB cache",
                 peak - before, before);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(a_second_get_is_answered_without_the_backend),
    IT_CASE(no_store_private_and_set_cookie_are_never_stored),
    IT_CASE(vary_keeps_one_variant_per_value),
    IT_CASE(a_stale_entry_is_revalidated_with_its_etag),
    IT_CASE(an_entry_expires_after_its_max_age),
    IT_CASE(conditionals_and_head_are_answered_from_the_store),
    IT_CASE(a_four_mib_object_streams_and_comes_back_byte_exact),
    IT_CASE(an_object_over_max_object_bytes_streams_through_unstored),
    IT_CASE(an_aborted_response_is_not_stored),
    IT_CASE(a_successful_post_invalidates_its_target),
    IT_CASE(a_body_sent_after_its_head_changes_nothing_else_in_the_cache),
    IT_CASE(a_reload_keeps_the_cache_unless_its_settings_change),
    IT_CASE(purge_by_path_prefix_and_all),
    IT_CASE(max_bytes_holds_under_a_flood_of_distinct_urls),
};

IT_MAIN(tests)
