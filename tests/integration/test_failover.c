/*
 * Backends that refuse connections: a failed connect is retried on another
 * backend, so users of a pool with one dead member never notice; with every
 * backend dead they get a clean 502 from the proxy.
 */
#include "harness.h"

#include <string.h>

/* The proxy's own error: short, correctly framed, no backend's mark on it. */
static void assert_proxy_error(struct it_env *env, const struct it_response *r)
{
    assert_null(it_header(r, "X-Backend"));
    assert_false(r->chunked);
    assert_false(r->close_delimited);
    assert_non_null(it_header(r, "Content-Length"));
    assert_string_equal(it_header(r, "Content-Length"), it_strf(env, "%zu", r->body_len));
    assert_true(r->body_len < 1024);
}

IT_TEST(dead_backend_skipped)
{
    int a = it_backend_start(env, "a");
    int dead = it_dead_port(env);
    int c = it_backend_start(env, "c");
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    it_config_add_pool(&cfg, "web", 1, 3, a, dead, c);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    int from_a = 0, from_c = 0;
    for (int i = 0; i < 12; i++) {
        struct it_response r;
        it_get(env, f->port, "test", "/", &r);
        assert_int_equal(r.status, 200);
        const char *name = it_header(&r, "X-Backend");
        assert_non_null(name);
        if (strcmp(name, "a") == 0)
            from_a++;
        else if (strcmp(name, "c") == 0)
            from_c++;
        else
            fail_msg("unexpected X-Backend \"%s\"", name);
        it_response_free(&r);
    }
    assert_true(from_a > 0);
    assert_true(from_c > 0);
}

IT_TEST(all_backends_dead_bad_gateway)
{
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    it_config_add_pool(&cfg, "web", 1, 2, it_dead_port(env), it_dead_port(env));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 502);
    assert_proxy_error(env, &r);
    it_response_free(&r);

    /*
     * The proxy keeps serving. Both backends have now failed, so it may
     * already have marked them down passively and answer 503 instead.
     */
    it_get(env, f->port, "test", "/", &r);
    if (r.status != 502 && r.status != 503)
        fail_msg("second request: status %d, expected 502 (or 503 once marked down)", r.status);
    assert_proxy_error(env, &r);
    it_response_free(&r);
}

/* Hardening 4: an outage writes a few summary lines, not one per request. */
IT_TEST(failures_logged_in_summary)
{
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    it_config_add_pool(&cfg, "web", 0, 1, it_dead_port(env));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *c = it_connect(env, f->port);
    int answered = 0;
    for (int i = 0; i < 200; i++) {
        it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        struct it_response r;
        it_expect_response(c, "GET", &r);
        answered += r.status == 502 || r.status == 503;
        it_response_free(&r);
    }
    assert_int_equal(answered, 200);
    /* At most 5 lines a second of each kind (the whole run takes far less than one). */
    it_fulcrum_wait_log(env, f, "connect: connection refused", 1, 2000);
    it_fulcrum_log_settled(env, f);
    size_t refused = it_fulcrum_log_count(env, f, "connect: connection refused");
    size_t none = it_fulcrum_log_count(env, f, "pool web: no backend available");
    if (refused < 1 || refused > 6 || none > 6)
        fail_msg("%zu + %zu warning lines for 200 failed requests:\n%s", refused, none,
                 it_proc_stderr(env, f->proc));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(dead_backend_skipped),
    IT_CASE(all_backends_dead_bad_gateway),
    IT_CASE(failures_logged_in_summary),
};

IT_MAIN(tests)
