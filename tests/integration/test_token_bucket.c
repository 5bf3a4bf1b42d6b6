/*
 * token_bucket as a user sees it: a pool with
 *
 *   rate_limit = { plugin = "token_bucket"; rate = R; burst = B; };
 *
 * lets B quick requests of a client address through, answers the next ones
 * 429 with a Retry-After in whole seconds and never forwards them; the bucket
 * refills at R per second; another address has a bucket of its own; and the
 * limit is one for the whole process, however many workers accept the
 * connections.
 *
 * The backend is a raw one that answers every request 200 on a keep-alive
 * connection and records what it read, so that a test can tell exactly which
 * requests reached it: every request has a path of its own, /tb/<n>.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long the backend's handler waits for the next request; teardown wakes it earlier. */
#define HANDLER_MS 10000

static const char ok_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

/* Answers each request head with ok_response (its own thread: no cmocka in here). */
static void h_ok(int fd, void *arg)
{
    (void)arg;
    char buf[16384];
    size_t len = 0;
    for (;;) {
        ssize_t n = it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", HANDLER_MS);
        if (n < 0 || it_raw_write_str(fd, ok_response) != 0)
            break;
        it_raw_consume(buf, &len, (size_t)n);
    }
}

struct tb_env {
    struct it_fulcrum *f;
    int backend;
    int next; /* the n of the next /tb/<n> */
};

/* A pool of one raw backend limited by `rate_limit` (the group's keys, without braces). */
static struct tb_env start(struct it_env *env, int workers, const char *rate_limit)
{
    struct tb_env t = {.next = 1};
    t.backend = it_raw_backend_start(env, h_ok, NULL);
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = workers;
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 0, 1, t.backend);
    pool->pool_options = it_strf(env, "rate_limit = { %s };", rate_limit);
    t.f = it_fulcrum_start(env, &cfg);
    return t;
}

/* Sends GET /tb/<n> on conn (with `header`, a whole "Name: value\r\n" line, if not NULL). */
static int send_get(struct it_env *env, struct tb_env *t, struct it_conn *conn, const char *header)
{
    int n = t->next++;
    it_send_str(conn, it_strf(env, "GET /tb/%d HTTP/1.1\r\nHost: test\r\n%s\r\n", n,
                              header != NULL ? header : ""));
    return n;
}

/*
 * One request on a fresh connection from `source` (127.0.0.x); returns its
 * status, with the response in *r (freed by the caller) and its n in *n.
 */
static int get_from(struct it_env *env, struct tb_env *t, const char *source, const char *header,
                    struct it_response *r, int *n)
{
    struct it_conn *conn = it_connect_from(env, t->f->port, source);
    int sent = send_get(env, t, conn, header);
    it_expect_response(conn, "GET", r);
    it_conn_close(conn);
    if (n != NULL)
        *n = sent;
    return r->status;
}

/* The status of one request from `source`; checks a 200 came from the backend. */
static int status_from(struct it_env *env, struct tb_env *t, const char *source)
{
    struct it_response r;
    int status = get_from(env, t, source, NULL, &r, NULL);
    if (status == 200)
        assert_string_equal(r.body, "ok\n");
    it_response_free(&r);
    return status;
}

/* Whether the backend received GET /tb/<n>. */
static bool backend_got(struct it_env *env, struct tb_env *t, int n)
{
    const char *all = it_raw_backend_received_all(env, t->backend, NULL);
    return strstr(all, it_strf(env, "GET /tb/%d HTTP/1.1\r\n", n)) != NULL;
}

/* How many requests the backend received. */
static int backend_requests(struct it_env *env, struct tb_env *t)
{
    const char *all = it_raw_backend_received_all(env, t->backend, NULL);
    int count = 0;
    for (const char *p = all; (p = strstr(p, "GET /tb/")) != NULL; p++)
        count++;
    return count;
}

/* Checks r is the proxy's 429: Retry-After in whole seconds, at least 1; a short body. */
static void assert_429(const struct it_response *r, long max_retry_s)
{
    assert_int_equal(r->status, 429);
    const char *retry = it_header(r, "Retry-After");
    assert_non_null(retry);
    assert_int_equal(it_header_count(r, "Retry-After"), 1);
    char *end = NULL;
    long seconds = strtol(retry, &end, 10);
    if (end == retry || *end != '\0' || seconds < 1 || seconds > max_retry_s)
        fail_msg("Retry-After: \"%s\", expected whole seconds from 1 to %ld", retry, max_retry_s);
    assert_true(r->body_len > 0 && r->body_len < 512);
    /* Not from the backend. */
    assert_null(it_header(r, "X-Backend"));
}

/*
 * rate 1, burst 5: five quick requests pass, the sixth is answered 429 with
 * Retry-After: 1 and never reaches the backend.
 */
IT_TEST(burst_then_429)
{
    struct tb_env t = start(env, 1, "plugin = \"token_bucket\"; rate = 1.0; burst = 5;");
    for (int i = 0; i < 5; i++)
        assert_int_equal(status_from(env, &t, "127.0.0.1"), 200);

    struct it_response r;
    int n;
    assert_int_equal(get_from(env, &t, "127.0.0.1", NULL, &r, &n), 429);
    /* Less than a second's worth of token is missing: 1 s. */
    assert_429(&r, 1);
    it_response_free(&r);

    /* The proxy keeps serving, and the denied request never reached the backend. */
    assert_int_equal(backend_requests(env, &t), 5);
    assert_false(backend_got(env, &t, n));
    for (int i = 1; i <= 5; i++)
        assert_true(backend_got(env, &t, i));
}

/* Several requests on one keep-alive connection count one by one as well. */
IT_TEST(keepalive_connection)
{
    struct tb_env t = start(env, 1, "plugin = \"token_bucket\"; rate = 0.1; burst = 3;");
    struct it_conn *conn = it_connect(env, t.f->port);
    for (int i = 0; i < 3; i++) {
        send_get(env, &t, conn, NULL);
        struct it_response r;
        it_expect_response(conn, "GET", &r);
        assert_int_equal(r.status, 200);
        it_response_free(&r);
    }
    send_get(env, &t, conn, NULL);
    struct it_response r;
    it_expect_response(conn, "GET", &r);
    /* rate 0.1: the next token is 10 s away. */
    assert_429(&r, 10);
    assert_true(atoi(it_header(&r, "Retry-After")) >= 9);
    it_response_free(&r);
    assert_int_equal(backend_requests(env, &t), 3);
}

/* Tokens come back at the configured rate: 1.1 s after running dry, one more passes. */
IT_TEST(refill)
{
    struct tb_env t = start(env, 1, "plugin = \"token_bucket\"; rate = 1.0; burst = 5;");
    for (int i = 0; i < 5; i++)
        assert_int_equal(status_from(env, &t, "127.0.0.1"), 200);
    assert_int_equal(status_from(env, &t, "127.0.0.1"), 429);

    it_sleep_ms(1100);
    assert_int_equal(status_from(env, &t, "127.0.0.1"), 200);
    /* That was the only one. */
    assert_int_equal(status_from(env, &t, "127.0.0.1"), 429);
    assert_int_equal(backend_requests(env, &t), 6);
}

/* Another client address has a bucket of its own. */
IT_TEST(per_address)
{
    struct tb_env t = start(env, 1, "plugin = \"token_bucket\"; rate = 0.1; burst = 5;");
    for (int i = 0; i < 5; i++)
        assert_int_equal(status_from(env, &t, "127.0.0.1"), 200);
    assert_int_equal(status_from(env, &t, "127.0.0.1"), 429);

    for (int i = 0; i < 5; i++)
        assert_int_equal(status_from(env, &t, "127.0.0.2"), 200);
    assert_int_equal(status_from(env, &t, "127.0.0.2"), 429);
    /* And the first one is still limited. */
    assert_int_equal(status_from(env, &t, "127.0.0.1"), 429);
    assert_int_equal(backend_requests(env, &t), 10);
}

/* With `key = "header:NAME"` the header's value picks the bucket, not the address. */
IT_TEST(header_key)
{
    struct tb_env t = start(env, 1,
                            "plugin = \"token_bucket\"; key = \"header:X-Api-Key\"; rate = 0.1; "
                            "burst = 2;");
    struct it_response r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(get_from(env, &t, "127.0.0.1", "X-Api-Key: alice\r\n", &r, NULL), 200);
        it_response_free(&r);
    }
    /* Same key from another address: the same bucket. */
    assert_int_equal(get_from(env, &t, "127.0.0.2", "X-Api-Key: alice\r\n", &r, NULL), 429);
    assert_429(&r, 10);
    it_response_free(&r);
    /* Another key from the first address: a bucket of its own. */
    assert_int_equal(get_from(env, &t, "127.0.0.1", "X-Api-Key: bob\r\n", &r, NULL), 200);
    it_response_free(&r);
    assert_int_equal(backend_requests(env, &t), 3);
}

#define CONNS 48
#define BURST 20

/*
 * workers = 2 and CONNS connections at once, which the kernel spreads over
 * both workers' sockets (all on one worker: one chance in 2^47): exactly
 * BURST requests pass in all, one limit per process, not one per worker.
 */
IT_TEST(one_limit_across_workers)
{
    struct tb_env t =
        start(env, 2, it_strf(env, "plugin = \"token_bucket\"; rate = 0.01; burst = %d;", BURST));
    struct it_conn *conns[CONNS];
    /* Connect them all first, so that every worker holds some while the requests run. */
    for (int i = 0; i < CONNS; i++)
        conns[i] = it_connect_from(env, t.f->port, "127.0.0.3");
    for (int i = 0; i < CONNS; i++)
        send_get(env, &t, conns[i], NULL);

    int ok = 0, limited = 0;
    for (int i = 0; i < CONNS; i++) {
        struct it_response r;
        it_expect_response(conns[i], "GET", &r);
        if (r.status == 200) {
            ok++;
        } else {
            assert_429(&r, 100);
            limited++;
        }
        it_response_free(&r);
    }
    assert_int_equal(ok, BURST);
    assert_int_equal(limited, CONNS - BURST);
    assert_int_equal(backend_requests(env, &t), BURST);

    /* And a second round finds the bucket still empty, whichever worker takes it. */
    for (int i = 0; i < CONNS; i++) {
        it_conn_close(conns[i]);
        conns[i] = it_connect_from(env, t.f->port, "127.0.0.3");
    }
    for (int i = 0; i < CONNS; i++)
        send_get(env, &t, conns[i], NULL);
    for (int i = 0; i < CONNS; i++) {
        struct it_response r;
        it_expect_response(conns[i], "GET", &r);
        assert_429(&r, 100);
        it_response_free(&r);
    }
    assert_int_equal(backend_requests(env, &t), BURST);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(burst_then_429), IT_CASE(keepalive_connection), IT_CASE(refill),
    IT_CASE(per_address),    IT_CASE(header_key),           IT_CASE(one_limit_across_workers),
};

IT_MAIN(tests)
