/*
 * The strategy ABI 1.2 additions as a strategy sees them in the real
 * fulcrum: outcome() for every request sent to a backend (status 0 for a
 * failure before a response head), response_header_add() from pick(), and
 * fc_pick_args.flags. tests/plugins/outcome_strategy.c shows what it was
 * told in the responses' headers.
 */
#include "harness.h"

#include <string.h>

#define OUTCOME_STRATEGY FC_TEST_PLUGIN_DIR "/outcome_strategy.so"

static struct it_pool_config *outcome_pool(struct it_config *cfg, int retries, size_t n, int *ports)
{
    it_config_init(cfg);
    cfg->workers = 1; /* one instance: it has seen every request */
    struct it_pool_config *p = it_config_add_pool(cfg, "web", retries, 0);
    for (size_t i = 0; i < n; i++)
        p->ports[p->nports++] = ports[i];
    p->strategy = OUTCOME_STRATEGY;
    return p;
}

/* Reads a request head, then leaves without a word: the backend's connection ends. */
static void hang_up(int fd, void *arg)
{
    char buf[4096];
    size_t len = 0;
    it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 5000);
}

/* Reads a request head and answers nothing for a second. */
static void say_nothing(int fd, void *arg)
{
    char buf[4096];
    size_t len = 0;
    if (it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 5000) >= 0)
        it_raw_sleep_ms(1000);
}

IT_TEST(a_failed_connect_is_an_outcome_and_its_headers_go)
{
    int ports[] = {it_dead_port(env), it_backend_start(env, "a")};
    struct it_config cfg;
    outcome_pool(&cfg, 1, 2, ports);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* Backend 0 refuses: outcome 0, then the retry's pick takes backend 1. */
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(it_header_count(&r, "X-Picked"), 1); /* the failed pick's are gone */
    assert_string_equal(it_header(&r, "X-Picked"), "1");
    assert_string_equal(it_header(&r, "X-Outcomes"), "0:0");
    assert_string_equal(it_header(&r, "X-Pick-TLS"), "0");
    it_response_free(&r);
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-Outcomes"), "0:0,1:200,0:0");
    it_response_free(&r);
}

IT_TEST(resets_and_timeouts_before_a_head_are_outcomes_of_zero)
{
    int ports[] = {it_raw_backend_start(env, hang_up, NULL),
                   it_raw_backend_start(env, say_nothing, NULL), it_backend_start(env, "a")};
    struct it_config cfg;
    outcome_pool(&cfg, 0, 3, ports);
    cfg.upstream_ms = 300;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 502);
    assert_null(it_header(&r, "X-Picked")); /* the proxy's own answer carries none */
    it_response_free(&r);
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 504);
    assert_null(it_header(&r, "X-Picked"));
    it_response_free(&r);
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-Picked"), "2");
    assert_string_equal(it_header(&r, "X-Outcomes"), "0:0,1:0");
    it_response_free(&r);
    it_get(env, f->port, "test", "/", &r); /* back to the one that hangs up */
    assert_int_equal(r.status, 502);
    it_response_free(&r);
    it_get(env, f->port, "test", "/", &r);
    it_response_free(&r);
    it_get(env, f->port, "test", "/", &r);
    assert_string_equal(it_header(&r, "X-Outcomes"), "0:0,1:0,2:200,0:0,1:0");
    it_response_free(&r);
}

IT_TEST(a_header_that_would_split_the_response_is_refused)
{
    int ports[] = {it_backend_start(env, "a")};
    struct it_config cfg;
    outcome_pool(&cfg, 0, 1, ports);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    struct it_response r;
    it_fetch(env, f->port, "GET", "GET / HTTP/1.1\r\nHost: test\r\nX-Bad-Header: 1\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-Bad-Rc"), "-3"); /* FC_EINVAL */
    assert_null(it_header(&r, "X-Injected"));
    assert_null(it_header(&r, "Set-Cookie"));
    assert_string_equal(it_header(&r, "X-Picked"), "0");
    it_response_free(&r);
}

IT_TEST(a_pick_knows_a_tls_listener)
{
    const char *dir = it_make_certs(env);
    int ports[] = {it_backend_start(env, "a")};
    struct it_config cfg;
    outcome_pool(&cfg, 0, 1, ports);
    cfg.listener_tls = it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "site"));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *argv[] = {"/usr/bin/curl",
                          "-sS",
                          "--max-time",
                          "10",
                          "-D",
                          "-",
                          "-o",
                          "/dev/null",
                          "--cacert",
                          it_strf(env, "%s/ca.pem", dir),
                          "--resolve",
                          it_strf(env, "site.test:%d:127.0.0.1", f->port),
                          it_strf(env, "https://site.test:%d/", f->port),
                          NULL};
    struct it_run_result r;
    it_run(env, argv, 15000, &r);
    if (r.exit_code != 0 || strstr(r.out, "\r\nX-Pick-TLS: 1\r\n") == NULL)
        fail_msg("curl (exit %d): %s%s", r.exit_code, r.out, r.err);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(a_failed_connect_is_an_outcome_and_its_headers_go),
    IT_CASE(resets_and_timeouts_before_a_head_are_outcomes_of_zero),
    IT_CASE(a_header_that_would_split_the_response_is_refused),
    IT_CASE(a_pick_knows_a_tls_listener),
};

IT_MAIN(tests)
