/*
 * Regressions: one test per defect that a review of the proxy, or an attack
 * on it, found (the hardening cases are numbered as in its issue), each against a raw backend that
 * sends exactly the bytes that once broke it and records exactly what the proxy forwarded. Every
 * test ends with an ordinary request still being served, and teardown checks that fulcrum exits 0,
 * so a crash anywhere fails the test.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* How long a handler waits for the proxy; teardown wakes it earlier. */
#define HANDLER_MS 10000
/* The largest request a keep-alive handler buffers. */
#define HANDLER_BUF (256 * 1024)

static const char ok_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* ---- handlers (their own threads: no cmocka assertions in here) --------- */

/* True if the request head (head_len bytes) has Transfer-Encoding: chunked. */
static bool head_is_chunked(const char *head, size_t head_len)
{
    static const char name[] = "\r\ntransfer-encoding:";
    for (size_t i = 0; i + sizeof(name) - 1 <= head_len; i++)
        if (strncasecmp(head + i, name, sizeof(name) - 1) == 0)
            return true;
    return false;
}

/*
 * Reads one whole request (head and body, Content-Length or chunked, trailer
 * included) from buf/fd. Returns its length in buf, or a negative errno.
 */
static ssize_t read_request(int fd, char *buf, size_t *len)
{
    ssize_t head = it_raw_read_until(fd, buf, HANDLER_BUF, len, "\r\n\r\n", HANDLER_MS);
    if (head < 0)
        return head;
    if (head_is_chunked(buf, (size_t)head)) {
        /* The last chunk: "0" on a line of its own (the head's CRLF ends the line before). */
        size_t base = (size_t)head - 2, sub = *len - base;
        ssize_t r =
            it_raw_read_until(fd, buf + base, HANDLER_BUF - base, &sub, "\r\n0\r\n", HANDLER_MS);
        *len = base + sub;
        if (r < 0)
            return r;
        /* Then trailer fields, if any, and the empty line. */
        base += (size_t)r - 2;
        sub = *len - base;
        r = it_raw_read_until(fd, buf + base, HANDLER_BUF - base, &sub, "\r\n\r\n", HANDLER_MS);
        *len = base + sub;
        return r < 0 ? r : (ssize_t)base + r;
    }
    long cl = it_raw_content_length(buf, (size_t)head);
    if (cl <= 0)
        return head;
    if ((size_t)cl > HANDLER_BUF - (size_t)head)
        return -ENOBUFS;
    int r = it_raw_read_len(fd, buf, HANDLER_BUF, len, (size_t)head + (size_t)cl, HANDLER_MS);
    return r < 0 ? r : head + cl;
}

/* Keep-alive: answers every complete request with the bytes `arg` (a string). */
static void h_respond(int fd, void *arg)
{
    const char *response = arg;
    char *buf = malloc(HANDLER_BUF);
    size_t len = 0;
    while (buf != NULL) {
        ssize_t n = read_request(fd, buf, &len);
        if (n < 0 || it_raw_write_str(fd, response) != 0)
            break;
        it_raw_consume(buf, &len, (size_t)n);
    }
    free(buf);
}

/* 103 Early Hints with ~12 KB of Link headers, INTERIM_COUNT times, then a 200. */
#define INTERIM_COUNT 5
#define INTERIM_LINKS 20
#define INTERIM_BODY 200000

static void h_interim(int fd, void *arg)
{
    (void)arg;
    char *buf = malloc(HANDLER_BUF);
    size_t hint_cap = 64 * 1024;
    char *hint = malloc(hint_cap);
    char *body = malloc(INTERIM_BODY);
    size_t len = 0;
    if (buf == NULL || hint == NULL || body == NULL)
        goto out;
    size_t hn = (size_t)snprintf(hint, hint_cap, "HTTP/1.1 103 Early Hints\r\n");
    for (int i = 0; i < INTERIM_LINKS; i++) {
        hn += (size_t)snprintf(hint + hn, hint_cap - hn, "Link: </static/asset-%02d-", i);
        for (int k = 0; k < 560; k++)
            hint[hn++] = (char)('a' + (i + k) % 26);
        hn += (size_t)snprintf(hint + hn, hint_cap - hn, ".css>; rel=preload; as=style\r\n");
    }
    hn += (size_t)snprintf(hint + hn, hint_cap - hn, "\r\n");
    it_pattern_fill(body, 0, INTERIM_BODY);
    char final[128];
    snprintf(final, sizeof(final), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", INTERIM_BODY);
    for (;;) {
        ssize_t n = read_request(fd, buf, &len);
        if (n < 0)
            break;
        it_raw_consume(buf, &len, (size_t)n);
        int r = 0;
        for (int i = 0; i < INTERIM_COUNT && r == 0; i++)
            r = it_raw_write(fd, hint, hn);
        if (r != 0 || it_raw_write_str(fd, final) != 0 || it_raw_write(fd, body, INTERIM_BODY))
            break;
    }
out:
    free(body);
    free(hint);
    free(buf);
}

/*
 * Keep-alive: answers each request with a 103 and, in the same write, the
 * first bytes of the final head; the rest of the final response follows
 * 200 ms later.
 */
static void h_interim_split(int fd, void *arg)
{
    (void)arg;
    char *buf = malloc(HANDLER_BUF);
    size_t len = 0;
    while (buf != NULL) {
        ssize_t n = read_request(fd, buf, &len);
        if (n < 0)
            break;
        it_raw_consume(buf, &len, (size_t)n);
        if (it_raw_write_str(fd, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                                 "HTTP/1.1 200 OK\r\nCont") != 0 ||
            !it_raw_sleep_ms(200) || it_raw_write_str(fd, "ent-Length: 2\r\n\r\nok") != 0)
            break;
    }
    free(buf);
}

/* One request, answered with `*(size_t *)arg` pattern bytes delimited by the close. */
static void h_eof(int fd, void *arg)
{
    size_t n = *(const size_t *)arg;
    char *buf = malloc(HANDLER_BUF);
    char *body = malloc(n);
    size_t len = 0;
    if (buf != NULL && body != NULL && read_request(fd, buf, &len) >= 0 &&
        it_raw_write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n") ==
            0) {
        it_pattern_fill(body, 0, n);
        it_raw_write(fd, body, n);
    }
    free(body);
    free(buf);
    /* Returning closes the connection: the end of the body. */
}

/*
 * Answers at once, before reading anything, then reads the request (head and
 * Content-Length body) or until the proxy closes.
 */
static void h_early(int fd, void *arg)
{
    (void)arg;
    if (it_raw_write_str(fd, ok_response) != 0)
        return;
    size_t cap = 2 * 1024 * 1024;
    char *buf = malloc(cap);
    size_t len = 0;
    if (buf == NULL)
        return;
    ssize_t head = it_raw_read_until(fd, buf, cap, &len, "\r\n\r\n", HANDLER_MS);
    if (head > 0) {
        long cl = it_raw_content_length(buf, (size_t)head);
        if (cl > 0 && (size_t)cl <= cap - (size_t)head)
            it_raw_read_len(fd, buf, cap, &len, (size_t)head + (size_t)cl, HANDLER_MS);
    }
    free(buf);
}

/* One request, answered with a head and part of a body delimited by the close, then silence. */
static void h_stall_mid_body(int fd, void *arg)
{
    (void)arg;
    char *buf = malloc(HANDLER_BUF);
    size_t len = 0;
    char body[1000];
    memset(body, 'x', sizeof(body));
    if (buf != NULL && read_request(fd, buf, &len) >= 0 &&
        it_raw_write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n") == 0 &&
        it_raw_write(fd, body, sizeof(body)) == 0)
        it_raw_sleep_ms(3000); /* past upstream_ms: the proxy gives up on the rest */
    free(buf);
}

/*
 * A slow backend that notices being given up: reads a request, then waits up
 * to 3 s for more, and records when the proxy closed the connection instead
 * (arg: struct watch). Still open by then, it answers.
 */
struct watch {
    int64_t closed_at; /* it_now_ms() of the proxy's close; 0 while none */
};

static void h_slow_watching(int fd, void *arg)
{
    struct watch *w = arg;
    char *buf = malloc(HANDLER_BUF);
    size_t len = 0;
    if (buf != NULL && read_request(fd, buf, &len) >= 0) {
        char more[256];
        ssize_t n = it_raw_read(fd, more, sizeof(more), 3000);
        if (n == 0 || n == -ECONNRESET)
            __atomic_store_n(&w->closed_at, it_now_ms(), __ATOMIC_RELAXED);
        else
            it_raw_write_str(fd, ok_response);
    }
    free(buf);
}

/* Keep-alive: answers every request with ok_response after 300 ms. */
static void h_slow_keepalive(int fd, void *arg)
{
    char *buf = malloc(HANDLER_BUF);
    size_t len = 0;
    while (buf != NULL) {
        ssize_t n = read_request(fd, buf, &len);
        if (n < 0 || !it_raw_sleep_ms(300) || it_raw_write_str(fd, ok_response) != 0)
            break;
        it_raw_consume(buf, &len, (size_t)n);
    }
    free(buf);
}

/* ---- helpers ------------------------------------------------------------ */

static void config_one(struct it_config *cfg, int port)
{
    it_config_init(cfg);
    cfg->workers = 1;
    it_config_add_pool(cfg, "web", 1, 1, port);
}

/* An ordinary request on a fresh connection gets `body` with 200. */
static void expect_still_serving(struct it_env *env, int port, const char *body)
{
    struct it_response r;
    it_get(env, port, "test", "/still-serving", &r);
    assert_int_equal(r.status, 200);
    if (body != NULL)
        assert_string_equal(r.body, body);
    it_response_free(&r);
}

/* Sends `request` on a fresh connection; expects the proxy's own 400 and the close. */
static void expect_rejected(struct it_env *env, int port, const char *request)
{
    struct it_conn *c = it_connect(env, port);
    it_conn_set_timeout(c, 3000);
    it_send_str(c, request);
    struct it_response r;
    it_expect_response(c, "GET", &r);
    if (r.status != 400)
        print_error("request: %s\n", request);
    assert_int_equal(r.status, 400);
    assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", r.body_len));
    assert_true(it_conn_wait_closed(c, 2000));
    it_response_free(&r);
    it_conn_close(c);
}

static size_t count(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/*
 * What connection `i` of the raw backend on `port` received, once it holds
 * `needle` (the handler may still be reading when the client has its answer).
 */
static const char *wait_received(struct it_env *env, int port, size_t i, const char *needle)
{
    int64_t deadline = it_now_ms() + 3000;
    for (;;) {
        const char *got = it_raw_backend_received(env, port, i, NULL);
        if (got != NULL && strstr(got, needle) != NULL)
            return got;
        if (it_now_ms() >= deadline)
            fail_msg("raw backend %d, connection %zu: no \"%s\" in:\n%.300s", port, i, needle,
                     got ? got : "(no such connection)");
        it_sleep_ms(10);
    }
}

static bool contains_nocase(const char *haystack, const char *needle)
{
    return strcasestr(haystack, needle) != NULL;
}

/* ---- 1: a chunked trailer split across reads ---------------------------- */

IT_TEST(chunked_trailer_split_across_reads)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 5000);
    it_send_str(c, "POST /trailer HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\nX-T: aaaa");
    it_sleep_ms(300);
    it_send_str(c, "bbbb\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    it_response_free(&r);

    const char *got = it_raw_backend_received_all(env, b, NULL);
    assert_true(strncmp(got, "POST /trailer HTTP/1.1\r\n", 24) == 0);
    const char *body = strstr(got, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, "5\r\nhello\r\n0\r\nX-T: aaaabbbb\r\n\r\n");

    /* The same connection goes on. */
    it_send_str(c, "GET /after HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    expect_still_serving(env, f->port, "ok");
}

/* ---- 2: Content-Length: 0 responses on a keep-alive connection ----------- */

IT_TEST(empty_body_response_ends_with_its_head)
{
    static const char found[] = "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
    int b = it_raw_backend_start(env, h_respond, (void *)found);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.upstream_ms = 3000; /* what the second request used to wait for */
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 5000);
    for (int i = 0; i < 2; i++) {
        int64_t t0 = it_now_ms();
        it_send_str(c, it_strf(env, "GET /r%d HTTP/1.1\r\nHost: test\r\n\r\n", i));
        struct it_response r;
        it_expect_response(c, "GET", &r);
        int64_t elapsed = it_now_ms() - t0;
        assert_int_equal(r.status, 302);
        assert_string_equal(it_header(&r, "Location"), "/x");
        assert_int_equal(r.body_len, 0);
        it_response_free(&r);
        /* Milliseconds, or upstream_ms when the proxy waits for a body that never comes;
         * the bound leaves room for a loaded machine and a sanitizer build. */
        if (elapsed >= 500)
            fail_msg("request %d answered after %lld ms", i, (long long)elapsed);
    }
    /* Both went over one pooled backend connection. */
    assert_int_equal(it_raw_backend_conns(env, b), 1);
    const char *got = it_raw_backend_received(env, b, 0, NULL);
    assert_non_null(strstr(got, "GET /r0 HTTP/1.1\r\n"));
    assert_non_null(strstr(got, "GET /r1 HTTP/1.1\r\n"));

    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 302);
    it_response_free(&r);
}

/* ---- 3: a series of 1xx responses to a slow reader ----------------------- */

IT_TEST(interim_responses_to_slow_client)
{
    int b = it_raw_backend_start(env, h_interim, NULL);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect_rcvbuf(env, f->port, 4096);
    it_conn_set_timeout(c, 3000);
    it_send_str(c, "GET /hints HTTP/1.1\r\nHost: test\r\n\r\n");
    it_sleep_ms(500); /* the proxy's writes back up meanwhile */
    struct it_response r;
    int rc = it_recv_response(c, "GET", &r);
    if (rc != 0)
        fail_msg("no complete final response after the interim ones: %s", strerror(-rc));
    assert_int_equal(r.interim, INTERIM_COUNT);
    assert_int_equal(r.interim_status, 103);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, INTERIM_BODY);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), INTERIM_BODY);
    it_response_free(&r);

    /* Again on the same connection, read at once this time. */
    it_send_str(c, "GET /hints HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.interim, INTERIM_COUNT);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, INTERIM_BODY);
    it_response_free(&r);
}

/*
 * The smallest form of the above: the final head starts in the same read as
 * the interim response and ends in a later one.
 */
IT_TEST(interim_response_then_split_final_head)
{
    int b = it_raw_backend_start(env, h_interim_split, NULL);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.upstream_ms = 5000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 2000);
    for (int i = 0; i < 2; i++) {
        it_send_str(c, "GET /hint HTTP/1.1\r\nHost: test\r\n\r\n");
        struct it_response r;
        int rc = it_recv_response(c, "GET", &r);
        if (rc != 0)
            fail_msg("request %d: no final response after the 103: %s", i, strerror(-rc));
        assert_int_equal(r.interim, 1);
        assert_int_equal(r.interim_status, 103);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok");
        it_response_free(&r);
    }
}

/* ---- 4: a slow upload is progress, not a backend timeout ---------------- */

IT_TEST(slow_upload_is_not_a_timeout)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.upstream_ms = 1500;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /*
     * Three at once: three 504s would also trip the passive health check
     * (max_fails = 3), so a regression shows in the log as well.
     */
    enum { N = 3 };
    static const char body[] = "0123456789abc"; /* 13 bytes */
    struct it_conn *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = it_connect(env, f->port);
        it_conn_set_timeout(c[i], 5000);
        it_send_str(c[i], "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 13\r\n\r\n");
    }
    /*
     * Each byte is progress, so upstream_ms (1500) never passes without any.
     * On a machine so loaded that this test itself stalled for most of that,
     * a timeout proves nothing: such a run is skipped rather than failed.
     */
    int64_t last = it_now_ms(), max_gap = 0;
    const char *why = NULL;
    for (size_t k = 0; k < sizeof(body) - 1 && why == NULL; k++) {
        it_sleep_ms(400);
        for (int i = 0; i < N && why == NULL; i++) {
            int rc = it_send_raw(c[i], body + k, 1);
            if (rc != 0)
                why = it_strf(env, "connection %d: byte %zu of the body: %s (answered early?)", i,
                              k, strerror(-rc));
        }
        int64_t now = it_now_ms();
        if (now - last > max_gap)
            max_gap = now - last;
        last = now;
    }
    for (int i = 0; i < N && why == NULL; i++) {
        struct it_response r;
        int rc = it_recv_response(c[i], "POST", &r);
        if (rc != 0)
            why = it_strf(env, "connection %d: no response: %s", i, strerror(-rc));
        else if (r.status != 200 || strcmp(r.body, "ok") != 0)
            why = it_strf(env, "connection %d: status %d, not 200", i, r.status);
        it_response_free(&r);
    }
    const char *err = it_fulcrum_log_settled(env, f);
    if (why == NULL && (strstr(err, "DOWN") != NULL || strstr(err, "no response within") != NULL))
        why = it_strf(env, "fulcrum blamed the backend for a slow client:\n%s", err);
    if (why != NULL && max_gap >= 1100) {
        print_message("%s\nbut this test stalled for %lld ms between two bytes: skipped\n", why,
                      (long long)max_gap);
        skip();
    }
    if (why != NULL)
        fail_msg("%s", why);
    const char *got = it_raw_backend_received_all(env, b, NULL);
    assert_non_null(strstr(got, "\r\n\r\n0123456789abc"));
    expect_still_serving(env, f->port, "ok");
}

/*
 * The client pauses in the middle of its body, longer than upstream_ms, after
 * the backend has taken everything it was sent: the wait is the client's, so
 * no 504, and the backend is not marked down (here max_fails = 2, and two
 * such uploads in a row used to take it out).
 */
IT_TEST(client_pause_in_body_is_not_a_backend_timeout)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.upstream_ms = 500;
    cfg.pools[0].pool_options = "max_fails = 2;";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    for (int round = 0; round < 2; round++) {
        struct it_conn *c = it_connect(env, f->port);
        it_conn_set_timeout(c, 5000);
        it_send_str(c, "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n01234");
        it_sleep_ms(1000);
        it_send_str(c, "56789");
        struct it_response r;
        it_expect_response(c, "POST", &r);
        assert_int_equal(r.status, 200);
        it_response_free(&r);
    }
    const char *err = it_fulcrum_log_settled(env, f);
    if (strstr(err, "DOWN") != NULL || strstr(err, "no response within") != NULL)
        fail_msg("fulcrum blamed the backend for a client's pause:\n%s", err);
    expect_still_serving(env, f->port, "ok");
}

/* Answers the first request of a connection, then dies as the second arrives. */
static void h_dies_on_reuse(int fd, void *arg)
{
    (void)arg;
    char *buf = malloc(HANDLER_BUF);
    size_t len = 0;
    ssize_t n = buf != NULL ? read_request(fd, buf, &len) : -1;
    if (n >= 0 && it_raw_write_str(fd, ok_response) == 0) {
        it_raw_consume(buf, &len, (size_t)n);
        read_request(fd, buf, &len); /* ...and the connection closes unanswered */
    }
    free(buf);
}

/*
 * A pooled connection that the backend closes just as a request reuses it:
 * a request without a body goes again on a fresh connection, so the client
 * never sees the race (retries = 0: this is not a retry on another backend).
 */
IT_TEST(reused_connection_closed_by_backend_is_replaced)
{
    int b = it_raw_backend_start(env, h_dies_on_reuse, NULL);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.pools[0].retries = 0;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    for (int i = 0; i < 4; i++) {
        struct it_response r;
        it_get(env, f->port, "test", "/", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok");
        it_response_free(&r);
    }
    /* The first connection served one request, every later request needed a new one. */
    assert_int_equal(it_raw_backend_conns(env, b), 4);
}

/* ---- 5: an Upgrade request does not wedge the connection ----------------- */

IT_TEST(upgrade_request_then_next_request)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 3000);
    it_send_str(c, "GET /a HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                   "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    it_response_free(&r);

    it_send_str(c, "GET /b HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    it_response_free(&r);

    const char *got = it_raw_backend_received_all(env, b, NULL);
    assert_non_null(strstr(got, "GET /a HTTP/1.1\r\n"));
    assert_non_null(strstr(got, "GET /b HTTP/1.1\r\n"));
    if (contains_nocase(got, "upgrade") || contains_nocase(got, "http2-settings"))
        fail_msg("hop-by-hop headers reached the backend:\n%s", got);
    expect_still_serving(env, f->port, "ok");
}

/* ---- 6: heads that other parsers could read differently ------------------ */

IT_TEST(ambiguous_heads_rejected)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* Obsolete line folding hiding a Transfer-Encoding. */
    expect_rejected(env, f->port,
                    "POST / HTTP/1.1\r\nHost: test\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n"
                    "Content-Length: 5\r\n\r\nhello");
    /* Two Hosts: which one routes? */
    expect_rejected(env, f->port, "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n");
    /* More Connection names than the proxy can strip. */
    char names[1024] = "";
    for (int i = 1; i <= 40; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%sx-hop-%d",
                 i > 1 ? ", " : "", i);
    expect_rejected(env, f->port,
                    it_strf(env, "GET / HTTP/1.1\r\nHost: test\r\nConnection: %s\r\n\r\n", names));

    assert_int_equal(it_raw_backend_conns(env, b), 0);
    expect_still_serving(env, f->port, "ok");
    assert_int_equal(it_raw_backend_conns(env, b), 1);
    const char *got = it_raw_backend_received_all(env, b, NULL);
    assert_true(strncmp(got, "GET /still-serving HTTP/1.1\r\n", 29) == 0);
}

/* ---- 7: absolute-form targets ------------------------------------------- */

IT_TEST(absolute_form_routed_by_authority)
{
    static const char web_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nweb";
    static const char routed_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nrouted";
    int web = it_raw_backend_start(env, h_respond, (void *)web_response);
    int routed = it_raw_backend_start(env, h_respond, (void *)routed_response);
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    it_config_add_pool(&cfg, "web", 1, 1, web);
    it_config_add_pool(&cfg, "routed", 1, 1, routed);
    cfg.listener_pool = "web";
    cfg.routes = "  { host = \"routed.example\"; pool = \"routed\"; }";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_response r;
    it_fetch(env, f->port, "GET", "GET http://routed.example/v1/x HTTP/1.1\r\nHost: other\r\n\r\n",
             &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "routed");
    it_response_free(&r);

    assert_int_equal(it_raw_backend_conns(env, web), 0);
    const char *got = it_raw_backend_received_all(env, routed, NULL);
    if (strncmp(got, "GET /v1/x HTTP/1.1\r\n", 20) != 0)
        fail_msg("forwarded as:\n%s", got);
    assert_non_null(strstr(got, "\r\nHost: routed.example\r\n"));
    assert_int_equal(count(got, "\r\nHost:"), 1);
    if (strstr(got, "other") != NULL)
        fail_msg("the client's Host header was forwarded:\n%s", got);

    /* Only http is spoken here. */
    expect_rejected(env, f->port, "GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(it_raw_backend_conns(env, web), 0);
    assert_int_equal(it_raw_backend_conns(env, routed), 1);

    /* Origin-form with Host: other goes to the listener's pool. */
    it_get(env, f->port, "other", "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "web");
    it_response_free(&r);
}

/* ---- 8: a body delimited by the end of the backend connection ----------- */

IT_TEST(eof_delimited_response)
{
    static const size_t n = 64 * 1024 + 17;
    int b = it_raw_backend_start(env, h_eof, (void *)&n);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 5000);
    it_send_str(c, "GET /eof HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.close_delimited);
    assert_int_equal(r.body_len, n);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), n);
    it_response_free(&r);
    assert_true(it_conn_wait_closed(c, 2000));

    /* Another one, so the first one's log lines are surely written by now. */
    c = it_connect(env, f->port);
    it_send_str(c, "GET /eof HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, n);
    it_response_free(&r);
    const char *err = it_fulcrum_log_settled(env, f);
    if (strstr(err, "closed before the response ended") != NULL ||
        strstr(err, it_strf(env, "backend 127.0.0.1:%d", b)) != NULL)
        fail_msg("fulcrum complained about a complete response:\n%s", err);
}

/* ---- 9: lingering close -------------------------------------------------- */

IT_TEST(linger_keeps_end_of_response_before_close)
{
    static const size_t n = 300 * 1024;
    int b = it_raw_backend_start(env, h_eof, (void *)&n);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* A slow reader, so the end of the response is still in the proxy's socket at close. */
    struct it_conn *c = it_connect_rcvbuf(env, f->port, 4096);
    it_conn_set_timeout(c, 5000);
    it_send_str(c, "GET /big HTTP/1.1\r\nHost: test\r\n\r\n");
    it_sleep_ms(150);
    /* Pipelined, and unread by the proxy when it closes after the first response. */
    it_send_str(c, "GET /second HTTP/1.1\r\nHost: test\r\n\r\n");
    it_sleep_ms(300);
    struct it_response r;
    int rc = it_recv_response(c, "GET", &r);
    if (rc != 0)
        fail_msg("the first response was cut short: %s", strerror(-rc));
    assert_int_equal(r.status, 200);
    assert_true(r.close_delimited);
    assert_int_equal(r.body_len, n);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), n);
    it_response_free(&r);
    assert_true(it_conn_wait_closed(c, 3000));
    assert_int_equal(it_raw_backend_conns(env, b), 1);

    struct it_response s;
    it_get(env, f->port, "test", "/", &s);
    assert_int_equal(s.status, 200);
    assert_int_equal(s.body_len, n);
    it_response_free(&s);
}

IT_TEST(linger_keeps_413_while_client_sends)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.max_body_bytes = 1000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 5000);
    it_send_str(c, "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 200000\r\n\r\n");
    /* Keeps streaming the body for half a second, as a client that has not looked yet would. */
    static char piece[8000];
    memset(piece, 'u', sizeof(piece));
    int send_err = 0;
    for (int i = 0; i < 25 && send_err == 0; i++) {
        send_err = it_send_raw(c, piece, sizeof(piece));
        it_sleep_ms(20);
    }
    struct it_response r;
    int rc = it_recv_response(c, "POST", &r);
    if (rc != 0)
        fail_msg("no complete 413: %s (sending had %s)", strerror(-rc),
                 send_err ? strerror(-send_err) : "succeeded");
    assert_int_equal(r.status, 413);
    assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", r.body_len));
    it_response_free(&r);
    /* The proxy read and dropped the rest instead of resetting the connection. */
    if (send_err != 0)
        fail_msg("sending the rest of the body failed: %s", strerror(-send_err));
    assert_true(it_conn_wait_closed(c, 3000));
    assert_int_equal(it_raw_backend_conns(env, b), 0);
    expect_still_serving(env, f->port, "ok");
}

/*
 * A client that said Connection: close, and sent nothing more, is closed at
 * once: no shutdown and wait for its FIN, so its connection is gone from the
 * proxy while the client still holds its end (a lingering close would keep
 * it 2 s). A pipelined request behind it is another matter (above).
 */
/* fulcrum in front of a backend answering ok_response, with an admin listener on *admin. */
static struct it_fulcrum *start_ok_with_admin(struct it_env *env, const char *listener_extra,
                                              int *admin)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.listener_extra = listener_extra;
    *admin = it_free_port();
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", *admin);
    return it_fulcrum_start(env, &cfg);
}

IT_TEST(close_request_is_closed_without_lingering)
{
    int admin;
    struct it_fulcrum *f = start_ok_with_admin(env, NULL, &admin);
    const char *open_now =
        it_strf(env, "fulcrum_listener_connections{listener=\"127.0.0.1:%d\"}", f->port);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 3000);
    it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    assert_true(it_conn_wait_closed(c, 1000)); /* the proxy's FIN; our end stays open */
    long n = -1;
    for (int i = 0; i < 50 && (n = it_metric(env, admin, open_now)) != 0; i++)
        it_sleep_ms(10);
    if (n != 0)
        fail_msg("the proxy still holds the connection (%ld open) while the client has not closed",
                 n);
}

/*
 * defer_accept (on by default): a connection is accepted once its first
 * bytes come, so one that stays silent is not a connection of the proxy's
 * yet; with defer_accept = false it is, at once.
 */
static void silent_connection(struct it_env *env, const char *listener_extra, long accepted_before)
{
    int admin;
    struct it_fulcrum *f = start_ok_with_admin(env, listener_extra, &admin);
    const char *total =
        it_strf(env, "fulcrum_listener_connections_total{listener=\"127.0.0.1:%d\"}", f->port);
    long base = it_metric(env, admin, total); /* it_fulcrum_start()'s own probes */

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 3000);
    long n = -1;
    for (int i = 0; i < 30; i++) {
        n = it_metric(env, admin, total) - base;
        if (n == accepted_before && accepted_before == 1)
            break;
        it_sleep_ms(10);
    }
    assert_int_equal(n, accepted_before);
    it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    assert_int_equal(it_metric(env, admin, total) - base, 1);
}

IT_TEST(defer_accept_waits_for_the_first_bytes)
{
    silent_connection(env, NULL, 0);
}

IT_TEST(defer_accept_false_accepts_at_once)
{
    silent_connection(env, "defer_accept = false;", 1);
}

/* ---- 10: a response that arrives before the request is written ----------- */

IT_TEST(response_before_request_written)
{
    int b = it_raw_backend_start(env, h_early, NULL);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    size_t len = 1024 * 1024;
    char *body = malloc(len);
    assert_non_null(body);
    it_pattern_fill(body, 0, len);
    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 5000);
    it_send_str(
        c, it_strf(env, "POST /big HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n\r\n", len));
    /* The proxy may stop taking the body once the answer is out; that is its right. */
    it_send_raw(c, body, len);
    free(body);
    struct it_response r;
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    it_response_free(&r);

    const char *got = wait_received(env, b, 0, "\r\n\r\n");
    if (strncmp(got, "POST /big HTTP/1.1\r\n", 20) != 0)
        fail_msg("the backend received:\n%.300s", got);
    expect_still_serving(env, f->port, "ok");
}

/* ---- 11: a 304 with the Content-Length of its representation ------------ */

/*
 * A 304 (or 204) has no body whatever its framing headers say; llhttp skips
 * it only when there are none, and the proxy waited for the 1234 bytes
 * (upstream_ms, then a reset). Found by the body fuzz target (tests/fuzz/).
 */
IT_TEST(not_modified_with_content_length_ends_with_its_head)
{
    static const char not_modified[] =
        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n";
    int b = it_raw_backend_start(env, h_respond, (void *)not_modified);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.upstream_ms = 3000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 5000);
    for (int i = 0; i < 2; i++) {
        int64_t t0 = it_now_ms();
        it_send_str(
            c, it_strf(env, "GET /r%d HTTP/1.1\r\nHost: test\r\nIf-None-Match: \"v1\"\r\n\r\n", i));
        struct it_response r;
        it_expect_response(c, "GET", &r);
        int64_t elapsed = it_now_ms() - t0;
        assert_int_equal(r.status, 304);
        assert_string_equal(it_header(&r, "Content-Length"), "1234");
        assert_int_equal(r.body_len, 0);
        it_response_free(&r);
        if (elapsed >= 500)
            fail_msg("request %d answered after %lld ms", i, (long long)elapsed);
    }
    assert_false(it_conn_wait_data(c, 200));
    /* Both went over one pooled backend connection. */
    assert_int_equal(it_raw_backend_conns(env, b), 1);
}

/* ---- hardening 12: a status below 100 is no interim response ------------- */

IT_TEST(status_below_100_is_502)
{
    static const char bad[] = "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n";
    int b = it_raw_backend_start(env, h_respond, (void *)bad);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    /* Nothing of the backend's answer reaches the client: the proxy's 502 comes first. */
    assert_int_equal(r.interim, 0);
    assert_int_equal(r.status, 502);
    it_response_free(&r);
    assert_true(it_fulcrum_wait_log(env, f, "invalid status code", 1, 2000));
    it_fulcrum_log_settled(env, f);
    assert_int_equal(it_fulcrum_log_count(env, f, "invalid status code"), 1);
}

/* ---- hardening 13: an empty body delimited by the close is no error ----- */

IT_TEST(empty_eof_delimited_response_is_clean)
{
    static const size_t n = 0;
    int b = it_raw_backend_start(env, h_eof, (void *)&n);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    for (int i = 0; i < 2; i++) { /* the second one: the first one's log lines are out */
        struct it_conn *c = it_connect(env, f->port);
        it_send_str(c, "GET /eof HTTP/1.1\r\nHost: test\r\n\r\n");
        struct it_response r;
        it_expect_response(c, "GET", &r);
        assert_int_equal(r.status, 200);
        assert_true(r.close_delimited);
        assert_int_equal(r.body_len, 0);
        it_response_free(&r);
        assert_true(it_conn_wait_closed(c, 2000));
        it_conn_close(c);
    }
    const char *err = it_fulcrum_log_settled(env, f);
    if (strstr(err, "closed before the response ended") != NULL ||
        strstr(err, "Invalid EOF state") != NULL)
        fail_msg("fulcrum complained about a complete response:\n%s", err);
}

/* ---- hardening 8: an empty Transfer-Encoding is no framing --------------- */

IT_TEST(empty_transfer_encoding_rejected)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    expect_rejected(env, f->port,
                    "POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding:\r\n"
                    "Content-Length: 5\r\n\r\nhello");
    expect_rejected(env, f->port, "POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: \r\n\r\n");
    expect_rejected(env, f->port,
                    "GET / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding:\r\n"
                    "Transfer-Encoding:\r\n\r\n");
    /* Nothing of them reached the backend. */
    assert_int_equal(it_raw_backend_conns(env, b), 0);
    expect_still_serving(env, f->port, "ok");
}

/* ---- hardening 16: protocol versions, asterisk-form, Host syntax -------- */

IT_TEST(protocol_forms_checked)
{
    int b = it_raw_backend_start(env, h_respond, (void *)ok_response);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* HTTP/2.0 in HTTP/1 syntax is no HTTP/1.1 request: 505, not forwarded as one. */
    struct it_response r;
    it_fetch(env, f->port, "GET", "GET / HTTP/2.0\r\nHost: test\r\n\r\n", &r);
    assert_int_equal(r.status, 505);
    it_response_free(&r);
    /* Hosts that an authority cannot be. */
    expect_rejected(env, f->port, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n");
    expect_rejected(env, f->port, "GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n");
    assert_int_equal(it_raw_backend_conns(env, b), 0);

    /* OPTIONS * asks about the server: forwarded as it is. */
    it_fetch(env, f->port, "OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    const char *got = wait_received(env, b, 0, "\r\n\r\n");
    if (strncmp(got, "OPTIONS * HTTP/1.1\r\n", 20) != 0)
        fail_msg("forwarded as:\n%s", got);
    expect_still_serving(env, f->port, "ok");
}

/* ---- hardening 10: a request half-closed behind its body is answered ---- */

IT_TEST(half_closed_request_with_body_answered)
{
    /* Connection: close, so that no idle upstream connection is ever there to reuse. */
    static const char closing_ok[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    int b = it_raw_backend_start(env, h_respond, (void *)closing_ok);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    static const char *const requests[] = {
        "POST /cl HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello",
        "POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n",
        "POST /http10 HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
    };
    for (size_t i = 0; i < 3; i++) {
        struct it_conn *c = it_connect(env, f->port);
        it_send_str(c, requests[i]);
        assert_int_equal(shutdown(it_conn_fd(c), SHUT_WR), 0); /* at once: nothing more comes */
        struct it_response r;
        it_expect_response(c, "POST", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok");
        it_response_free(&r);
        assert_true(it_conn_wait_closed(c, 2000));
        it_conn_close(c);
        const char *got = wait_received(env, b, i, "hello");
        if (strstr(got, "hello") == NULL)
            fail_msg("request %zu reached the backend as:\n%s", i, got);
    }

    /* A body the client never completes before its half-close is not answered as one. */
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "POST /short HTTP/1.1\r\nHost: test\r\nContent-Length: 50\r\n\r\nhello");
    assert_int_equal(shutdown(it_conn_fd(c), SHUT_WR), 0);
    struct it_response r;
    assert_true(it_recv_response(c, "POST", &r) < 0);
    expect_still_serving(env, f->port, "ok");
}

/* ---- hardening 11: a client that leaves is not waited for ---------------- */

IT_TEST(client_that_leaves_abandons_its_request)
{
    struct watch *w = it_zalloc(env, sizeof(*w));
    int b = it_raw_backend_start(env, h_slow_watching, w);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.access_log = "stdout";
    int admin = it_free_port();
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", admin);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* The request reaches the slow backend; then the client closes, as a browser that
     * navigates away does. */
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    wait_received(env, b, 0, "\r\n\r\n");
    it_sleep_ms(300); /* well past timeouts.half_close_ms: not a half-close */
    int64_t left = it_now_ms();
    it_conn_close(c);

    /* The proxy gives the backend's work up at once rather than after the backend's 3 s. */
    int64_t deadline = left + 2000;
    while (__atomic_load_n(&w->closed_at, __ATOMIC_RELAXED) == 0 && it_now_ms() < deadline)
        it_sleep_ms(10);
    int64_t closed = __atomic_load_n(&w->closed_at, __ATOMIC_RELAXED);
    if (closed == 0)
        fail_msg("the backend connection stayed open after the client left");
    assert_true(closed - left < 1000);

    /* Logged as 499, as nginx does; the backend is not blamed for it. */
    int64_t log_deadline = it_now_ms() + 2000;
    while (strstr(it_proc_stdout(env, f->proc), "\"GET /slow HTTP/1.1\" 499 ") == NULL) {
        if (it_now_ms() >= log_deadline)
            fail_msg("no 499 in the access log:\n%s", it_proc_stdout(env, f->proc));
        it_sleep_ms(10);
    }
    const char *err = it_fulcrum_log_settled(env, f);
    if (strstr(err, "DOWN") != NULL || strstr(err, "[warn]") != NULL)
        fail_msg("fulcrum blamed someone for a client that left:\n%s", err);

    /* And counted. */
    struct it_conn *a = it_connect(env, admin);
    it_send_str(a, "GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
    struct it_response m;
    it_expect_response(a, "GET", &m);
    const char *want =
        it_strf(env, "fulcrum_requests_abandoned_total{listener=\"127.0.0.1:%d\"} 1\n", f->port);
    if (strstr(m.body, want) == NULL)
        fail_msg("no \"%s\" in /metrics", want);
    it_response_free(&m);
}

IT_TEST(half_close_with_a_warm_connection_answered)
{
    /* An idle upstream connection is there: the request goes out at once, and the
     * half-close arrives while the (slow) response is awaited. */
    int b = it_raw_backend_start(env, h_slow_keepalive, NULL);
    struct it_config cfg;
    config_one(&cfg, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    expect_still_serving(env, f->port, "ok"); /* leaves the connection idle in the pool */

    for (int i = 0; i < 5; i++) {
        struct it_conn *c = it_connect(env, f->port);
        it_send_str(c, "POST /half HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
        assert_int_equal(shutdown(it_conn_fd(c), SHUT_WR), 0);
        struct it_response r;
        it_expect_response(c, "POST", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok");
        it_response_free(&r);
        assert_true(it_conn_wait_closed(c, 2000));
        it_conn_close(c);
    }
    assert_int_equal(it_raw_backend_conns(env, b), 1); /* all on the warm connection */
}

/* ---- hardening 9: a response cut short is not passed off as complete ---- */

IT_TEST(cut_close_delimited_response_resets_client)
{
    int b = it_raw_backend_start(env, h_stall_mid_body, NULL);
    struct it_config cfg;
    config_one(&cfg, b);
    cfg.upstream_ms = 500;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* The body ends with the connection: a FIN would make the cut body look whole. */
    struct it_conn *c = it_connect(env, f->port);
    it_conn_set_timeout(c, 5000);
    it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    int rc = it_recv_response(c, "GET", &r);
    if (rc == 0) {
        fail_msg("a %zu-byte body the backend never finished arrived as a complete response",
                 r.body_len);
    }
    assert_int_equal(rc, -ECONNRESET);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(chunked_trailer_split_across_reads),
    IT_CASE(empty_body_response_ends_with_its_head),
    IT_CASE(interim_responses_to_slow_client),
    IT_CASE(interim_response_then_split_final_head),
    IT_CASE(slow_upload_is_not_a_timeout),
    IT_CASE(client_pause_in_body_is_not_a_backend_timeout),
    IT_CASE(reused_connection_closed_by_backend_is_replaced),
    IT_CASE(upgrade_request_then_next_request),
    IT_CASE(ambiguous_heads_rejected),
    IT_CASE(absolute_form_routed_by_authority),
    IT_CASE(eof_delimited_response),
    IT_CASE(linger_keeps_end_of_response_before_close),
    IT_CASE(linger_keeps_413_while_client_sends),
    IT_CASE(close_request_is_closed_without_lingering),
    IT_CASE(defer_accept_waits_for_the_first_bytes),
    IT_CASE(defer_accept_false_accepts_at_once),
    IT_CASE(response_before_request_written),
    IT_CASE(not_modified_with_content_length_ends_with_its_head),
    IT_CASE(status_below_100_is_502),
    IT_CASE(empty_eof_delimited_response_is_clean),
    IT_CASE(empty_transfer_encoding_rejected),
    IT_CASE(protocol_forms_checked),
    IT_CASE(half_closed_request_with_body_answered),
    IT_CASE(cut_close_delimited_response_resets_client),
    IT_CASE(client_that_leaves_abandons_its_request),
    IT_CASE(half_close_with_a_warm_connection_answered),
};

IT_MAIN(tests)
