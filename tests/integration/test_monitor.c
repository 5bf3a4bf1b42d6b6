/*
 * What the operator sees on the admin listener, driven with known traffic:
 * exact metric values afterwards (parsed, not grepped) and valid for the
 * real promtool, the status document with the same figures, and the event
 * stream telling of a backend that went down within the health interval.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the admin listener's answers --------------------------------------- */

static int start_admin(struct it_env *env, struct it_config *cfg)
{
    int port = it_free_port();
    cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\";", port);
    return port;
}

/* GET path on the admin port: the body of a 200 (fails the test otherwise). */
static const char *admin_get(struct it_env *env, int port, const char *path)
{
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, it_strf(env, "GET %s HTTP/1.1\r\nHost: admin\r\n\r\n", path));
    struct it_response r;
    it_expect_response(c, "GET", &r);
    if (r.status != 200)
        fail_msg("GET %s: %d %s", path, r.status, r.body);
    const char *body = it_strf(env, "%s", r.body);
    it_response_free(&r);
    it_conn_close(c);
    return body;
}

/* The value of one series (`name{labels}` exactly as written) in an exposition. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line != NULL && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    fail_msg("no series %s in:\n%s", series, text);
    return -1;
}

/* ---- known traffic ------------------------------------------------------- */

struct traffic {
    int a, b, c, dead;
    const char *listener; /* "127.0.0.1:PORT" */
};

static struct it_fulcrum *start_with_pools(struct it_env *env, struct it_config *cfg,
                                           struct traffic *tr, int *admin)
{
    it_config_init(cfg);
    cfg->workers = 1; /* one round-robin cycle: exact counts per backend */
    tr->a = it_backend_start(env, "a");
    tr->b = it_backend_start(env, "b");
    tr->c = it_backend_start(env, "c");
    tr->dead = it_dead_port(env);
    it_config_add_pool(cfg, "web", 0, 3, tr->a, tr->b, tr->c);
    it_config_add_pool(cfg, "dead", 0, 1, tr->dead);
    struct it_pool_config *limited = it_config_add_pool(cfg, "limited", 0, 1, tr->a);
    limited->pool_options = "rate_limit = { plugin = \"token_bucket\"; rate = 0.001; burst = 2; };";
    cfg->routes = "  { host = \"dead.test\"; pool = \"dead\"; },\n"
                  "  { host = \"limited.test\"; pool = \"limited\"; }";
    *admin = start_admin(env, cfg);
    struct it_fulcrum *f = it_fulcrum_start(env, cfg);
    tr->listener = it_strf(env, "127.0.0.1:%d", f->port);
    return f;
}

/*
 * The metrics once `series` reads `want`, or after 2 s. A response is counted
 * when the worker sees its last byte go, which may be just after the client
 * has read it: a scrape right behind a request can miss it by a moment.
 */
static const char *metrics_once(struct it_env *env, int admin, const char *series, double want)
{
    int64_t deadline = it_now_ms() + 2000;
    const char *m = admin_get(env, admin, "/metrics");
    while (metric(m, series) != want && it_now_ms() < deadline) {
        it_sleep_ms(10);
        m = admin_get(env, admin, "/metrics");
    }
    return m;
}

static void requests(struct it_env *env, struct it_fulcrum *f, const char *host, int n, int status)
{
    for (int i = 0; i < n; i++) {
        struct it_response r;
        it_get(env, f->port, host, "/", &r);
        assert_int_equal(r.status, status);
        it_response_free(&r);
    }
}

IT_TEST(metrics_count_known_traffic)
{
    struct it_config cfg;
    struct traffic tr;
    int admin;
    struct it_fulcrum *f = start_with_pools(env, &cfg, &tr, &admin);

    requests(env, f, "web.test", 30, 200);    /* 10 to each of a, b, c */
    requests(env, f, "dead.test", 2, 502);    /* its only backend refuses */
    requests(env, f, "limited.test", 2, 200); /* the burst */
    requests(env, f, "limited.test", 3, 429);
    /* A failed reload, then a good one: the counters of what stays go on. */
    cfg.workers = 2; /* refused: the number of workers needs a restart */
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), -EINVAL);
    cfg.workers = 1;
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    requests(env, f, "web.test", 3, 200);

    const char *L = tr.listener;
#define S(...) it_strf(env, __VA_ARGS__)
    const char *m =
        metrics_once(env, admin, S("fulcrum_requests_total{listener=\"%s\",code=\"2xx\"}", L), 35);
    assert_int_equal(metric(m, S("fulcrum_requests_total{listener=\"%s\",code=\"2xx\"}", L)), 35);
    assert_int_equal(metric(m, S("fulcrum_requests_total{listener=\"%s\",code=\"4xx\"}", L)), 3);
    assert_int_equal(metric(m, S("fulcrum_requests_total{listener=\"%s\",code=\"5xx\"}", L)), 2);
    assert_int_equal(metric(m, S("fulcrum_proxy_responses_total{listener=\"%s\",code=\"502\"}", L)),
                     2);
    assert_int_equal(metric(m, S("fulcrum_proxy_responses_total{listener=\"%s\",code=\"429\"}", L)),
                     3);
    assert_int_equal(metric(m, S("fulcrum_proxy_responses_total{listener=\"%s\",code=\"503\"}", L)),
                     0);
    int ports[3] = {tr.a, tr.b, tr.c};
    for (int i = 0; i < 3; i++) {
        const char *B = S("127.0.0.1:%d", ports[i]);
        assert_int_equal(
            metric(m, S("fulcrum_backend_requests_total{pool=\"web\",backend=\"%s\",code=\"2xx\"}",
                        B)),
            11);
        assert_int_equal(
            metric(m, S("fulcrum_backend_response_seconds_count{pool=\"web\",backend=\"%s\"}", B)),
            11);
        assert_int_equal(metric(m, S("fulcrum_backend_response_seconds_bucket{pool=\"web\","
                                     "backend=\"%s\",le=\"+Inf\"}",
                                     B)),
                         11);
        assert_true(metric(m, S("fulcrum_backend_response_seconds_sum{pool=\"web\",backend=\"%s\"}",
                                B)) > 0);
        assert_int_equal(metric(m, S("fulcrum_backend_up{pool=\"web\",backend=\"%s\"}", B)), 1);
        assert_int_equal(metric(m, S("fulcrum_backend_inflight{pool=\"web\",backend=\"%s\"}", B)),
                         0);
    }
    const char *A = S("127.0.0.1:%d", tr.a), *D = S("127.0.0.1:%d", tr.dead);
    assert_int_equal(
        metric(m, S("fulcrum_backend_requests_total{pool=\"limited\",backend=\"%s\",code=\"2xx\"}",
                    A)),
        2);
    assert_int_equal(
        metric(m, S("fulcrum_backend_connect_failures_total{pool=\"dead\",backend=\"%s\"}", D)), 2);
    assert_int_equal(metric(m, "fulcrum_ratelimit_denied_total{pool=\"limited\"}"), 3);
    assert_int_equal(metric(m, "fulcrum_ratelimit_denied_total{pool=\"web\"}"), 0);
    assert_int_equal(metric(m, "fulcrum_pool_retries_total{pool=\"dead\"}"), 0);
    assert_int_equal(metric(m, "fulcrum_reloads_total{result=\"done\"}"), 1);
    assert_int_equal(metric(m, "fulcrum_reloads_total{result=\"failed\"}"), 1);
    assert_int_equal(metric(m, "fulcrum_generation"), 2);
    /* it_get uses a fresh connection each time; the start's probes connect too. */
    assert_true(metric(m, S("fulcrum_listener_connections_total{listener=\"%s\"}", L)) >= 40);
    assert_true(metric(m, S("fulcrum_bytes_received_total{listener=\"%s\"}", L)) > 40 * 30);
    assert_true(metric(m, S("fulcrum_bytes_sent_total{listener=\"%s\"}", L)) > 40 * 30);
    assert_true(metric(m, "process_resident_memory_bytes") > 1e6);
    assert_true(metric(m, "process_open_fds") > 3);
    assert_true(metric(m, "process_start_time_seconds") > 1.7e9);
    assert_true(strstr(m, S("fulcrum_build_info{version=\"%s\",abi=\"1.", FC_IT_VERSION)) != NULL);

    /* The real promtool finds nothing to say. */
    const char *file = it_write_file(env, "metrics.txt", m);
    const char *cmd = S("promtool check metrics < %s", file);
    const char *const argv[] = {"/bin/sh", "-c", cmd, NULL};
    struct it_run_result res;
    it_run(env, argv, 20000, &res);
    if (res.exit_code != 0)
        fail_msg("promtool check metrics exited %d:\n%s%s", res.exit_code, res.out, res.err);

    /* The status document says the same. */
    const char *text = admin_get(env, admin, "/api/status");
    json_error_t err;
    json_t *st = json_loads(text, 0, &err);
    if (st == NULL)
        fail_msg("/api/status is not JSON (%s): %s", err.text, text);
    assert_int_equal(json_integer_value(json_object_get(st, "generation")), 2);
    assert_int_equal(json_integer_value(json_object_get(st, "workers")), 1);
    json_t *reloads = json_object_get(st, "reloads");
    assert_int_equal(json_integer_value(json_object_get(reloads, "done")), 1);
    assert_int_equal(json_integer_value(json_object_get(reloads, "failed")), 1);
    assert_non_null(strstr(json_string_value(json_object_get(reloads, "last_error")), "workers"));
    json_t *pools = json_object_get(st, "pools");
    assert_int_equal(json_array_size(pools), 3);
    json_t *web = json_array_get(pools, 0);
    assert_string_equal(json_string_value(json_object_get(web, "name")), "web");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(web, "strategy"), "plugin")),
        "round_robin");
    json_t *backends = json_object_get(web, "backends");
    assert_int_equal(json_array_size(backends), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *b = json_array_get(backends, i);
        assert_string_equal(json_string_value(json_object_get(b, "address")),
                            S("127.0.0.1:%d", ports[i]));
        assert_string_equal(json_string_value(json_object_get(b, "state")), "up");
        assert_string_equal(json_string_value(json_object_get(b, "source")), "config");
        assert_int_equal(json_integer_value(json_object_get(b, "requests")), 11);
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(b, "responses"), "2xx")), 11);
        json_t *lat = json_object_get(b, "latency_ms");
        double p50 = json_real_value(json_object_get(lat, "p50"));
        double p99 = json_real_value(json_object_get(lat, "p99"));
        assert_true(p50 > 0 && p50 <= p99 && p99 < 1000);
    }
    json_t *dead = json_array_get(json_object_get(json_array_get(pools, 1), "backends"), 0);
    assert_int_equal(json_integer_value(json_object_get(dead, "failures")), 2);
    json_t *listener = json_array_get(json_object_get(st, "listeners"), 0);
    assert_string_equal(json_string_value(json_object_get(listener, "address")), L);
    json_decref(st);
#undef S
}

/* ---- the event stream ----------------------------------------------------- */

/* Reads from fd until `needle` has arrived (at most timeout_ms); returns all that came. */
struct reader {
    int fd;
    char *buf;
    size_t len, cap;
};

static const char *read_until(struct reader *r, const char *needle, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    while (strstr(r->buf, needle) == NULL) {
        int64_t left = deadline - it_now_ms();
        if (left <= 0)
            fail_msg("no \"%s\" within %d ms; got:\n%.3000s", needle, timeout_ms, r->buf);
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t n = recv(r->fd, r->buf + r->len, r->cap - 1 - r->len, MSG_DONTWAIT);
        if (n == 0)
            fail_msg("the event stream ended; got:\n%.3000s", r->buf);
        if (n > 0) {
            r->len += (size_t)n;
            r->buf[r->len] = '\0';
        }
    }
    return r->buf;
}

IT_TEST(events_tell_of_a_backend_going_down)
{
    struct it_config cfg;
    it_config_init(&cfg);
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 0, 2, a, b);
    pool->health = "plugin = \"tcp\"; interval_ms = 100; timeout_ms = 100; rise = 1; fall = 1;";
    int admin = start_admin(env, &cfg);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    (void)f;

    struct reader rd = {.fd = it_socket_connect(admin, 5), .cap = 1 << 20};
    rd.buf = it_zalloc(env, rd.cap);
    assert_true(rd.fd >= 0);
    const char *req = "GET /api/events HTTP/1.1\r\nHost: admin\r\n\r\n";
    assert_int_equal(it_send_all(rd.fd, req, strlen(req)), 0);
    const char *got = read_until(&rd, "\r\n\r\n", 3000);
    if (strncmp(got, "HTTP/1.1 200", 12) != 0 || strcasestr(got, "text/event-stream") == NULL)
        fail_msg("not an event stream:\n%s", got);
    read_until(&rd, "event: status\ndata: {", 3000); /* at once, then every second */

    it_proc_signal(it_backend_proc(env, "b"), SIGKILL);
    int64_t t0 = it_now_ms();
    const char *want = it_strf(env, "\"backend\":\"127.0.0.1:%d\",\"state\":\"down\"", b);
    got = read_until(&rd, want, 3000);
    assert_non_null(strstr(got, "event: backend\ndata: {\"pool\":\"web\""));
    fprintf(stderr, "backend down told %lld ms after the kill\n", (long long)(it_now_ms() - t0));
    assert_true(it_now_ms() - t0 < 1500); /* health interval 100 ms, fall 1 */

    /* And a reload, as it happens. */
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    read_until(&rd, "event: reload\ndata: {\"result\":\"done\"", 3000);
    close(rd.fd);
}

/* A request with a body on the admin port (no token); its status. */
static int admin_send(struct it_env *env, int port, const char *method, const char *path,
                      const char *body)
{
    return it_admin_send(env, port, method, path, NULL, body, NULL);
}

IT_TEST(events_tell_of_runtime_changes)
{
    struct it_config cfg;
    it_config_init(&cfg);
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    it_config_add_pool(&cfg, "web", 0, 1, a);
    int admin = start_admin(env, &cfg);
    it_fulcrum_start(env, &cfg);

    struct reader rd = {.fd = it_socket_connect(admin, 5), .cap = 1 << 20};
    rd.buf = it_zalloc(env, rd.cap);
    assert_true(rd.fd >= 0);
    const char *req = "GET /api/events HTTP/1.1\r\nHost: admin\r\n\r\n";
    assert_int_equal(it_send_all(rd.fd, req, strlen(req)), 0);
    read_until(&rd, "event: status\ndata: {", 3000);

    /* Each change, as it is in force: added (and up), drained, removed. */
    assert_int_equal(admin_send(env, admin, "POST", "/api/pools/web/backends",
                                it_strf(env, "{\"address\": \"127.0.0.1:%d\"}", b)),
                     201);
    read_until(&rd,
               it_strf(env,
                       "event: backend\ndata: {\"pool\":\"web\",\"backend\":\"127.0.0.1:%d\","
                       "\"state\":\"up\"",
                       b),
               3000);
    assert_int_equal(admin_send(env, admin, "PATCH",
                                it_strf(env, "/api/pools/web/backends/127.0.0.1%%3A%d", a),
                                "{\"state\": \"drain\"}"),
                     200);
    read_until(&rd, it_strf(env, "\"backend\":\"127.0.0.1:%d\",\"state\":\"drain\"", a), 3000);
    const char *m = admin_get(env, admin, "/metrics");
    const char *series =
        "fulcrum_backend_admin_state{pool=\"web\",backend=\"127.0.0.1:%d\",state=\"%s\"} %d\n";
    assert_non_null(strstr(m, it_strf(env, series, a, "drain", 1)));
    assert_non_null(strstr(m, it_strf(env, series, a, "ready", 0)));
    assert_non_null(strstr(m, it_strf(env, series, b, "ready", 1)));
    assert_int_equal(admin_send(env, admin, "DELETE",
                                it_strf(env, "/api/pools/web/backends/127.0.0.1%%3A%d", b), ""),
                     200);
    read_until(&rd, it_strf(env, "\"backend\":\"127.0.0.1:%d\",\"state\":\"removed\"", b), 3000);
    close(rd.fd);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(metrics_count_known_traffic),
    IT_CASE(events_tell_of_a_backend_going_down),
    IT_CASE(events_tell_of_runtime_changes),
};

IT_MAIN(tests)
