/*
 * Service discovery as a user sees it: a pool whose backends come from DNS,
 * asked of a real DNS server (dns_server.py, on python3-dnslib, over UDP and
 * TCP on 127.0.0.1) whose zone a test rewrites while fulcrum runs.
 *
 *   resolvers = ( "127.0.0.1:PORT" );
 *   { address = "web.test:P"; resolve = true; }   every A/AAAA answer, at port P
 *   { address = "srv:_http._tcp.api.test"; }      the SRV targets of the lowest
 *                                                 priority, at their ports and weights
 *
 * What is checked is what comes back: which demo backend answered (each
 * answers with its name), the status codes, /api/status and /metrics of the
 * admin listener, fulcrum's log and what the DNS server was asked. Every
 * address is on 127.0.0.1 or ::1: an A answer is 127.0.0.1 and an AAAA
 * answer ::1, where demo backends listen on the same port; SRV targets all
 * resolve to 127.0.0.1, one demo backend a port.
 *
 * Sets change every resolve_interval_ms (INTERVAL_MS here); a test that
 * waits for a change allows it CHANGE_MS. workers = 1 throughout, so that one
 * rotation of the strategy sees every request.
 */
#define _GNU_SOURCE /* memmem */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define INTERVAL_MS 300
/* A change in DNS is served within this: the next query, its answer, the new set. */
#define CHANGE_MS (4 * INTERVAL_MS + 500)

#define SRV_NAME "_http._tcp.api.test"
#define SRV_ENTRY "{ address = \"srv:" SRV_NAME "\"; }"

/* The A records of the SRV targets a.test. to d.test., all 127.0.0.1. */
#define TARGETS                                                                                    \
    "\"a.test.\": {\"A\": [\"127.0.0.1\"]}, \"b.test.\": {\"A\": [\"127.0.0.1\"]}, "               \
    "\"c.test.\": {\"A\": [\"127.0.0.1\"]}, \"d.test.\": {\"A\": [\"127.0.0.1\"]}"

/* ---- zones and configurations ------------------------------------------- */

/* A zone with SRV_NAME's records `srv` (a JSON list body), TTL 30, and TARGETS. */
static const char *srv_zone(struct it_env *env, const char *srv)
{
    return it_strf(
        env, "{\"names\": {\"" SRV_NAME ".\": {\"ttl\": 30, \"SRV\": [%s]}, " TARGETS "}}", srv);
}

/* One SRV record for target NAME.test. at port. */
static const char *srv_record(struct it_env *env, int priority, int weight, int port,
                              const char *name)
{
    return it_strf(env, "[%d, %d, %d, \"%s.test.\"]", priority, weight, port, name);
}

/* A zone where web.test. has `records` (JSON keys: "A": [...], ...) with this TTL. */
static const char *host_zone(struct it_env *env, int ttl, const char *records)
{
    return it_strf(env, "{\"names\": {\"web.test.\": {\"ttl\": %d, %s}}}", ttl, records);
}

struct discovery {
    int dns_port;
    struct it_proc *dns;
    int admin_port;
    struct it_config cfg;
    struct it_fulcrum *f;
};

/*
 * Fills d->cfg: one pool "web" (1 retry) of `backends` (a libconfig list
 * body), re-resolved every interval_ms, asking d's DNS server, and an admin
 * listener. Does not start fulcrum.
 */
static void discovery_config(struct it_env *env, struct discovery *d, const char *strategy,
                             int interval_ms, const char *backends)
{
    it_config_init(&d->cfg);
    d->cfg.workers = 1;
    struct it_pool_config *p = it_config_add_pool(&d->cfg, "web", 1, 0);
    p->strategy = strategy;
    p->pool_options = it_strf(env, "resolve_interval_ms = %d;", interval_ms);
    p->backends_text = backends;
    d->cfg.top = it_strf(env, "resolvers = ( \"127.0.0.1:%d\" );", d->dns_port);
    d->admin_port = it_free_port();
    d->cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", d->admin_port);
}

/* The DNS server on `zone`, then fulcrum on discovery_config(). */
static void discovery_start(struct it_env *env, struct discovery *d, const char *zone,
                            const char *strategy, int interval_ms, const char *backends)
{
    memset(d, 0, sizeof(*d));
    d->dns_port = it_dns_start(env, zone, &d->dns);
    discovery_config(env, d, strategy, interval_ms, backends);
    d->f = it_fulcrum_start(env, &d->cfg);
}

/* ---- what fulcrum says: status and metrics ------------------------------ */

/*
 * The backends of pool "web" in /api/status, one "ADDRESS SOURCE WEIGHT"
 * line each, in the order listed: for checks and for failure messages.
 */
static const char *status_backends(struct it_env *env, int admin_port)
{
    struct it_response r;
    it_get(env, admin_port, "127.0.0.1", "/api/status", &r);
    if (r.status != 200)
        fail_msg("GET /api/status: %d %s", r.status, r.body);
    json_error_t err;
    json_t *j = json_loads(r.body, 0, &err);
    if (j == NULL)
        fail_msg("GET /api/status: no JSON (%s): %s", err.text, r.body);
    it_response_free(&r);
    const char *lines = NULL;
    json_t *pools = json_object_get(j, "pools");
    for (size_t p = 0; p < json_array_size(pools); p++) {
        json_t *pool = json_array_get(pools, p);
        const char *name = json_string_value(json_object_get(pool, "name"));
        if (name == NULL || strcmp(name, "web") != 0)
            continue;
        lines = "";
        json_t *bs = json_object_get(pool, "backends");
        for (size_t i = 0; i < json_array_size(bs); i++) {
            json_t *b = json_array_get(bs, i);
            const char *address = json_string_value(json_object_get(b, "address"));
            const char *source = json_string_value(json_object_get(b, "source"));
            lines = it_strf(env, "%s%s %s %lld\n", lines, address ? address : "(none)",
                            source ? source : "(none)",
                            (long long)json_integer_value(json_object_get(b, "weight")));
        }
    }
    json_decref(j);
    if (lines == NULL)
        fail_msg("/api/status has no pool \"web\"");
    return lines;
}

/* Number of lines of status_backends(). */
static size_t status_count(const char *lines)
{
    return it_count(lines, "\n");
}

/* Fails unless the status lists `address` as discovered, with this weight. */
static void expect_listed(const char *lines, const char *address, int weight)
{
    char want[96];
    snprintf(want, sizeof(want), "%s dns %d\n", address, weight);
    /* Each line starts at the start of the text or after a newline. */
    const char *at = strstr(lines, want);
    while (at != NULL && at != lines && at[-1] != '\n')
        at = strstr(at + 1, want);
    if (at == NULL)
        fail_msg("/api/status does not list \"%.*s\" in pool web; it lists:\n%s",
                 (int)strlen(want) - 1, want, lines);
}

/*
 * Waits up to timeout_ms until /api/status lists exactly n backends in pool
 * web, and returns them (status_backends()); fails with the last list.
 */
static const char *wait_listed(struct it_env *env, int admin_port, size_t n, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        const char *lines = status_backends(env, admin_port);
        if (status_count(lines) == n)
            return lines;
        if (it_now_ms() >= deadline)
            fail_msg("/api/status lists %zu backends in pool web after %d ms, not %zu:\n%s",
                     status_count(lines), timeout_ms, n, lines);
        it_sleep_ms(50);
    }
}

/* An admin metric, 0 when absent (a counter that has not counted yet). */
static long metric(struct it_env *env, int admin_port, const char *series)
{
    long v = it_metric(env, admin_port, series);
    return v < 0 ? 0 : v;
}

/* The lines of /metrics about DNS and the pool's set, for failure messages. */
static const char *dns_metrics(struct it_env *env, int admin_port)
{
    struct it_response r;
    it_get(env, admin_port, "127.0.0.1", "/metrics", &r);
    const char *out = "";
    for (const char *line = r.body; *line != '\0';) {
        size_t len = strcspn(line, "\n");
        if (strncmp(line, "fulcrum_dns", 11) == 0 ||
            strncmp(line, "fulcrum_pool_backends", 21) == 0)
            out = it_strf(env, "%s%.*s\n", out, (int)len, line);
        line += len + (line[len] == '\n');
    }
    it_response_free(&r);
    return out[0] != '\0' ? out : "(no fulcrum_dns* or fulcrum_pool_backends series)\n";
}

static long dns_queries(struct it_env *env, int admin_port, const char *result)
{
    return metric(env, admin_port,
                  it_strf(env, "fulcrum_dns_queries_total{pool=\"web\",result=\"%s\"}", result));
}

/* Waits up to timeout_ms until dns_queries(result) exceeds `than`; returns it. */
static long wait_dns_queries(struct it_env *env, int admin_port, const char *result, long than,
                             int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        long v = dns_queries(env, admin_port, result);
        if (v > than)
            return v;
        if (it_now_ms() >= deadline)
            fail_msg("fulcrum_dns_queries_total{pool=\"web\",result=\"%s\"} is %ld after %d ms, "
                     "expected more than %ld; /metrics says:\n%s",
                     result, v, timeout_ms, than, dns_metrics(env, admin_port));
        it_sleep_ms(50);
    }
}

/* ---- what the client sees ----------------------------------------------- */

/* One GET / on a fresh connection: its status, and in *backend its X-Backend ("" if none). */
static int get_backend(struct it_env *env, int port, const char **backend)
{
    struct it_response r;
    it_get(env, port, "test", "/", &r);
    const char *name = it_header(&r, "X-Backend");
    *backend = it_strf(env, "%s", name ? name : "");
    int status = r.status;
    it_response_free(&r);
    return status;
}

/*
 * n requests on one keep-alive connection, each of which must be 200 from
 * one of the `nnames` backends named; their counts into counts[].
 */
static void spread(struct it_env *env, int port, int n, const char *const *names, size_t nnames,
                   int *counts)
{
    memset(counts, 0, nnames * sizeof(*counts));
    struct it_conn *c = it_connect(env, port);
    for (int i = 0; i < n; i++) {
        it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        struct it_response r;
        it_expect_response(c, "GET", &r);
        const char *name = it_header(&r, "X-Backend");
        if (r.status != 200 || name == NULL)
            fail_msg("request %d of %d: status %d from \"%s\": %s", i + 1, n, r.status,
                     name ? name : "", r.body);
        size_t k = 0;
        while (k < nnames && strcmp(names[k], name) != 0)
            k++;
        if (k == nnames)
            fail_msg("request %d of %d answered by \"%s\", not one of the pool's", i + 1, n, name);
        counts[k]++;
        it_response_free(&r);
    }
    it_conn_close(c);
}

/*
 * Waits up to timeout_ms until GET / answers 200 from `name`; fails with the
 * last answer otherwise.
 */
static void wait_answered_by(struct it_env *env, int port, const char *name, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        const char *got;
        int status = get_backend(env, port, &got);
        if (status == 200 && strcmp(got, name) == 0)
            return;
        if (it_now_ms() >= deadline)
            fail_msg("no answer from backend %s within %d ms; the last was %d from \"%s\"", name,
                     timeout_ms, status, got);
        it_sleep_ms(20);
    }
}

/* ---- continuous traffic ------------------------------------------------- */

#define TRAFFIC_NAMES 8
#define TRAFFIC_MAX_MS 30000 /* the thread stops by itself past this */

/*
 * A client thread: GET / in a loop on a keep-alive connection (a new one when
 * fulcrum closes it), every answer counted by the backend that gave it.
 * Plain sockets: cmocka and the harness's client are not for threads. The
 * struct is malloc'd, not the env's, so that a test that fails while the
 * thread runs leaves it only its own memory until TRAFFIC_MAX_MS ends it.
 */
struct traffic {
    pthread_t thread;
    int port;
    int stop; /* atomic: set by the test */
    int64_t started;
    pthread_mutex_t lock; /* guards everything below */
    long total, failed;
    char first_failure[256];
    struct {
        char name[16];
        long count;
        int64_t first_ms, last_ms; /* it_now_ms() of its first and last answer */
    } seen[TRAFFIC_NAMES];
};

static void traffic_note(struct traffic *t, int ok, const char *backend, const char *failure)
{
    int64_t now = it_now_ms();
    pthread_mutex_lock(&t->lock);
    t->total++;
    if (!ok) {
        if (t->failed++ == 0)
            snprintf(t->first_failure, sizeof(t->first_failure), "request %ld, %lld ms in: %s",
                     t->total, (long long)(now - t->started), failure);
    } else {
        for (size_t i = 0; i < TRAFFIC_NAMES; i++) {
            if (t->seen[i].name[0] == '\0') {
                snprintf(t->seen[i].name, sizeof(t->seen[i].name), "%s", backend);
                t->seen[i].first_ms = now;
            }
            if (strcmp(t->seen[i].name, backend) == 0) {
                t->seen[i].count++;
                t->seen[i].last_ms = now;
                break;
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
}

static void *traffic_main(void *arg)
{
    struct traffic *t = arg;
    static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    int fd = -1;
    while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE) &&
           it_now_ms() - t->started < TRAFFIC_MAX_MS) {
        if (fd < 0 && (fd = it_socket_connect(t->port, 5)) < 0) {
            traffic_note(t, 0, NULL, strerror(-fd));
            it_sleep_ms(20);
            continue;
        }
        int status = 0;
        char backend[16], why[160];
        if (it_send_all(fd, req, sizeof(req) - 1) != 0) {
            snprintf(why, sizeof(why), "send: %s", strerror(errno));
            traffic_note(t, 0, NULL, why);
        } else if (it_read_backend_response(fd, &status, backend, sizeof(backend), why,
                                            sizeof(why)) != 0) {
            traffic_note(t, 0, NULL, why);
        } else if (status != 200 || backend[0] == '\0') {
            snprintf(why, sizeof(why), "status %d from \"%s\"", status, backend);
            traffic_note(t, 0, NULL, why);
            continue;
        } else {
            traffic_note(t, 1, backend, NULL);
            it_sleep_ms(1);
            continue;
        }
        close(fd);
        fd = -1;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static struct traffic *traffic_start(int port)
{
    struct traffic *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->port = port;
    t->started = it_now_ms();
    pthread_mutex_init(&t->lock, NULL);
    assert_int_equal(pthread_create(&t->thread, NULL, traffic_main, t), 0);
    return t;
}

/* What a traffic thread counted, copied out under its lock. */
struct traffic_view {
    long total, failed;
    char first_failure[256];
    long count[TRAFFIC_NAMES];
    int64_t first_ms[TRAFFIC_NAMES], last_ms[TRAFFIC_NAMES];
    char names[TRAFFIC_NAMES][16];
};

static void traffic_view(struct traffic *t, struct traffic_view *v)
{
    pthread_mutex_lock(&t->lock);
    v->total = t->total;
    v->failed = t->failed;
    memcpy(v->first_failure, t->first_failure, sizeof(v->first_failure));
    for (size_t i = 0; i < TRAFFIC_NAMES; i++) {
        v->count[i] = t->seen[i].count;
        v->first_ms[i] = t->seen[i].first_ms;
        v->last_ms[i] = t->seen[i].last_ms;
        memcpy(v->names[i], t->seen[i].name, sizeof(v->names[i]));
    }
    pthread_mutex_unlock(&t->lock);
}

/* Index of backend `name` in a view, or -1 if it never answered. */
static int view_index(const struct traffic_view *v, const char *name)
{
    for (int i = 0; i < TRAFFIC_NAMES; i++)
        if (strcmp(v->names[i], name) == 0)
            return i;
    return -1;
}

static long view_count(const struct traffic_view *v, const char *name)
{
    int i = view_index(v, name);
    return i < 0 ? 0 : v->count[i];
}

/* "a=12 b=10 ...", for messages. */
static const char *view_text(struct it_env *env, const struct traffic_view *v)
{
    const char *s = it_strf(env, "%ld requests, %ld failed:", v->total, v->failed);
    for (int i = 0; i < TRAFFIC_NAMES && v->names[i][0] != '\0'; i++)
        s = it_strf(env, "%s %s=%ld", s, v->names[i], v->count[i]);
    return s;
}

/* Waits up to timeout_ms until backend `name` has answered the traffic; returns when, or -1. */
static int64_t traffic_wait_for(struct traffic *t, const char *name, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        struct traffic_view v;
        traffic_view(t, &v);
        int i = view_index(&v, name);
        if (i >= 0)
            return v.first_ms[i];
        if (it_now_ms() >= deadline)
            return -1;
        it_sleep_ms(10);
    }
}

/* Stops and joins the thread, and frees it; what it counted into *v. */
static void traffic_stop(struct traffic *t, struct traffic_view *v)
{
    __atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
    pthread_join(t->thread, NULL);
    traffic_view(t, v);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/*
 * Demo backends a and b, the SRV targets (weight 1, priority 10) of the
 * zone's SRV_NAME, and fulcrum once it lists both. Returns the SRV records
 * (a JSON list body), for a test that rewrites the zone around them.
 */
static const char *start_two_targets(struct it_env *env, struct discovery *d, int *a, int *b)
{
    *a = it_backend_start(env, "a");
    *b = it_backend_start(env, "b");
    const char *srv =
        it_strf(env, "%s, %s", srv_record(env, 10, 1, *a, "a"), srv_record(env, 10, 1, *b, "b"));
    discovery_start(env, d, srv_zone(env, srv), NULL, INTERVAL_MS, SRV_ENTRY);
    wait_listed(env, d->admin_port, 2, CHANGE_MS);
    return srv;
}

/* ---- the cases ---------------------------------------------------------- */

/*
 * web.test has an A and an AAAA record: both addresses are backends, at the
 * entry's port, listed as discovered, and both take requests.
 */
IT_TEST(a_and_aaaa_answers_are_backends)
{
    int port = it_backend_start(env, "v4");
    it_backend_start_on(env, "v6", it_strf(env, "[::1]:%d", port));
    struct discovery d;
    discovery_start(env, &d, host_zone(env, 30, "\"A\": [\"127.0.0.1\"], \"AAAA\": [\"::1\"]"),
                    NULL, INTERVAL_MS,
                    it_strf(env, "{ address = \"web.test:%d\"; resolve = true; }", port));

    const char *lines = wait_listed(env, d.admin_port, 2, CHANGE_MS);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", port), 1);
    expect_listed(lines, it_strf(env, "[::1]:%d", port), 1);
    assert_int_equal(it_metric(env, d.admin_port, "fulcrum_pool_backends{pool=\"web\"}"), 2);
    assert_true(dns_queries(env, d.admin_port, "ok") >= 1);

    static const char *const names[] = {"v4", "v6"};
    int counts[2];
    spread(env, d.f->port, 20, names, 2, counts);
    print_message("v4 %d, v6 %d\n", counts[0], counts[1]);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
}

/*
 * Three SRV targets take traffic; a fourth added to the zone takes traffic
 * within CHANGE_MS, and one removed stops taking new requests within
 * CHANGE_MS; a client that sends requests all along sees none fail.
 */
IT_TEST(srv_targets_join_and_leave_without_a_failed_request)
{
    static const char *const names[] = {"a", "b", "c", "d"};
    int ports[4];
    for (int i = 0; i < 4; i++)
        ports[i] = it_backend_start(env, names[i]);
    const char *rec[4];
    for (int i = 0; i < 4; i++)
        rec[i] = srv_record(env, 10, 1, ports[i], names[i]);
    struct discovery d;
    discovery_start(env, &d, srv_zone(env, it_strf(env, "%s, %s, %s", rec[0], rec[1], rec[2])),
                    NULL, INTERVAL_MS, SRV_ENTRY);
    const char *lines = wait_listed(env, d.admin_port, 3, CHANGE_MS);
    for (int i = 0; i < 3; i++)
        expect_listed(lines, it_strf(env, "127.0.0.1:%d", ports[i]), 1);
    int counts[3];
    spread(env, d.f->port, 30, names, 3, counts);
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], 10);

    struct traffic *t = traffic_start(d.f->port);
    it_sleep_ms(2 * INTERVAL_MS);

    /* d joins. */
    int64_t added = it_now_ms();
    it_dns_zone(env, srv_zone(env, it_strf(env, "%s, %s, %s, %s", rec[0], rec[1], rec[2], rec[3])));
    int64_t joined = traffic_wait_for(t, "d", CHANGE_MS);
    it_sleep_ms(2 * INTERVAL_MS);

    /* c leaves. */
    int64_t removed = it_now_ms();
    it_dns_zone(env, srv_zone(env, it_strf(env, "%s, %s, %s", rec[0], rec[1], rec[3])));
    it_sleep_ms(CHANGE_MS);
    struct traffic_view mid;
    traffic_view(t, &mid);
    it_sleep_ms(3 * INTERVAL_MS);
    struct traffic_view v;
    traffic_stop(t, &v);

    int c = view_index(&v, "c");
    print_message("d answered %lld ms after it was added; c's last answer %lld ms after it was "
                  "removed; %s\n",
                  (long long)(joined - added), (long long)(c >= 0 ? v.last_ms[c] - removed : 0),
                  view_text(env, &v));
    if (v.failed != 0)
        fail_msg("%s; the first: %s", view_text(env, &v), v.first_failure);
    if (joined < 0)
        fail_msg("d took no request within %d ms of joining the zone: %s", CHANGE_MS,
                 view_text(env, &v));
    if (view_count(&v, "c") != view_count(&mid, "c"))
        fail_msg("c took %ld requests more than %d ms after it left the zone: %s",
                 view_count(&v, "c") - view_count(&mid, "c"), CHANGE_MS, view_text(env, &v));
    for (int i = 0; i < 4; i++)
        if (view_count(&v, names[i]) == 0)
            fail_msg("backend %s took no request: %s", names[i], view_text(env, &v));
    lines = wait_listed(env, d.admin_port, 3, 0);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", ports[3]), 1);
    assert_null(strstr(lines, it_strf(env, "127.0.0.1:%d ", ports[2])));
}

/*
 * Health checks over discovered backends. The checker's interval is long
 * (4 s) and a new backend starts down (`initial = "down"`, rise 1): a
 * target that joins is probed at once, not after the interval, and takes
 * traffic within CHANGE_MS; one whose check then fails leaves the rotation
 * while DNS still lists it.
 */
IT_TEST(discovered_backends_are_health_checked_at_once)
{
    static const char *const names[] = {"a", "b"};
    int ports[2];
    const char *hc[2];
    for (int i = 0; i < 2; i++) {
        hc[i] = it_write_file(env, it_strf(env, "hc-%s", names[i]), "ok\n");
        const char *const extra[] = {"--hc-file", hc[i], NULL};
        ports[i] = it_backend_start_args(env, names[i], extra);
    }
    const char *rec[2];
    for (int i = 0; i < 2; i++)
        rec[i] = srv_record(env, 10, 1, ports[i], names[i]);
    struct discovery d;
    memset(&d, 0, sizeof(d));
    d.dns_port = it_dns_start(env, srv_zone(env, rec[0]), &d.dns);
    discovery_config(env, &d, NULL, INTERVAL_MS, SRV_ENTRY);
    d.cfg.pools[0].health = "plugin = \"http\"; path = \"/hc\"; interval_ms = 4000; "
                            "timeout_ms = 1000; rise = 1; fall = 1; initial = \"down\";";
    d.f = it_fulcrum_start(env, &d.cfg);
    /* The start probes at once: a is up long before the 4 s interval. */
    wait_answered_by(env, d.f->port, "a", CHANGE_MS);

    int64_t added = it_now_ms();
    it_dns_zone(env, srv_zone(env, it_strf(env, "%s, %s", rec[0], rec[1])));
    wait_answered_by(env, d.f->port, "b", CHANGE_MS);
    print_message("b, new and initially down, took traffic %lld ms after it joined the zone\n",
                  (long long)(it_now_ms() - added));

    /* b's check fails: it leaves the rotation at its next probe (4 s), so a answers it all. */
    const char *tmp = it_write_file(env, "hc-b.tmp", "fail\n");
    if (rename(tmp, hc[1]) != 0)
        fail_msg("rename: %s", strerror(errno));
    if (!it_fulcrum_wait_log(env, d.f, it_strf(env, "backend 127.0.0.1:%d DOWN", ports[1]), 1,
                             6000))
        fail_msg("b did not go down after its check failed");
    int counts[2];
    spread(env, d.f->port, 10, names, 2, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 0);
    expect_listed(wait_listed(env, d.admin_port, 2, 0), it_strf(env, "127.0.0.1:%d", ports[1]), 1);
}

/*
 * A set that changes more often than the health checks' interval (c joins
 * and leaves the zone every 400 ms; checks every 1 s): each change makes a
 * generation, and the backends that stay are still probed on their
 * schedule, so a failing one goes down within about an interval.
 */
IT_TEST(frequent_changes_do_not_hold_off_health_checks)
{
    static const char *const names[] = {"a", "b", "c"};
    int ports[3];
    const char *hc[3];
    const char *rec[3];
    for (int i = 0; i < 3; i++) {
        hc[i] = it_write_file(env, it_strf(env, "hc-%s", names[i]), "ok\n");
        const char *const extra[] = {"--hc-file", hc[i], NULL};
        ports[i] = it_backend_start_args(env, names[i], extra);
        rec[i] = srv_record(env, 10, 1, ports[i], names[i]);
    }
    const char *two = srv_zone(env, it_strf(env, "%s, %s", rec[0], rec[1]));
    const char *three = srv_zone(env, it_strf(env, "%s, %s, %s", rec[0], rec[1], rec[2]));
    struct discovery d;
    memset(&d, 0, sizeof(d));
    d.dns_port = it_dns_start(env, two, &d.dns);
    discovery_config(env, &d, NULL, INTERVAL_MS, SRV_ENTRY);
    d.cfg.pools[0].health = "plugin = \"http\"; path = \"/hc\"; interval_ms = 1000; "
                            "timeout_ms = 500; rise = 1; fall = 1;";
    d.f = it_fulcrum_start(env, &d.cfg);
    wait_answered_by(env, d.f->port, "b", CHANGE_MS);

    const char *tmp = it_write_file(env, "hc-a.tmp", "fail\n");
    if (rename(tmp, hc[0]) != 0)
        fail_msg("rename: %s", strerror(errno));
    int64_t failed_at = it_now_ms();
    const char *down = it_strf(env, "backend 127.0.0.1:%d DOWN", ports[0]);
    size_t generations = it_fulcrum_log_count(env, d.f, "DNS: generation");
    int went_down = 0;
    for (int round = 0; round < 10 && !went_down; round++) {
        it_dns_zone(env, round % 2 == 0 ? three : two);
        went_down = it_fulcrum_wait_log(env, d.f, down, 1, 400);
    }
    size_t made = it_fulcrum_log_count(env, d.f, "DNS: generation") - generations;
    print_message("a went down %lld ms after its check began to fail, %zu DNS generations "
                  "meanwhile\n",
                  (long long)(it_now_ms() - failed_at), made);
    if (!went_down)
        fail_msg("a did not go down within 4 s while the set changed every 400 ms (%zu "
                 "generations): its health checks were held off",
                 made);
    assert_true(made >= 2);
}

/* SRV weights 1 and 3 (the weighted strategy): the shares follow them. */
IT_TEST(srv_weights_share_the_traffic)
{
    static const char *const names[] = {"light", "heavy"};
    int light = it_backend_start(env, names[0]), heavy = it_backend_start(env, names[1]);
    struct discovery d;
    discovery_start(env, &d,
                    srv_zone(env, it_strf(env, "%s, %s", srv_record(env, 10, 1, light, "a"),
                                          srv_record(env, 10, 3, heavy, "b"))),
                    "weighted", INTERVAL_MS, SRV_ENTRY);
    const char *lines = wait_listed(env, d.admin_port, 2, CHANGE_MS);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", light), 1);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", heavy), 3);

    int counts[2];
    spread(env, d.f->port, 400, names, 2, counts);
    print_message("light %d, heavy %d of 400\n", counts[0], counts[1]);
    assert_in_range(counts[0], 60, 140);  /* 15 % .. 35 % */
    assert_in_range(counts[1], 260, 340); /* 65 % .. 85 % */
}

/* Targets of priority 10 and 20: only those of the lowest value take traffic. */
IT_TEST(srv_lowest_priority_only)
{
    static const char *const names[] = {"a", "b", "c"};
    int ports[3];
    for (int i = 0; i < 3; i++)
        ports[i] = it_backend_start(env, names[i]);
    struct discovery d;
    discovery_start(env, &d,
                    srv_zone(env, it_strf(env, "%s, %s, %s", srv_record(env, 20, 1, ports[2], "c"),
                                          srv_record(env, 10, 1, ports[0], "a"),
                                          srv_record(env, 10, 1, ports[1], "b"))),
                    NULL, INTERVAL_MS, SRV_ENTRY);
    const char *lines = wait_listed(env, d.admin_port, 2, CHANGE_MS);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", ports[0]), 1);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", ports[1]), 1);

    int counts[3];
    spread(env, d.f->port, 40, names, 3, counts);
    print_message("a %d, b %d, c %d\n", counts[0], counts[1], counts[2]);
    assert_int_equal(counts[0], 20);
    assert_int_equal(counts[1], 20);
    assert_int_equal(counts[2], 0);
    assert_int_equal(it_metric(env, d.admin_port, "fulcrum_pool_backends{pool=\"web\"}"), 2);
}

/*
 * The DNS server dies once the set is known: requests keep being served by
 * the last answer for several intervals, while the failed queries are
 * counted (as timeouts, or errors: a dead UDP port may answer ICMP).
 */
IT_TEST(dns_down_keeps_the_last_answer)
{
    int a, b;
    struct discovery d;
    start_two_targets(env, &d, &a, &b);
    long before =
        dns_queries(env, d.admin_port, "timeout") + dns_queries(env, d.admin_port, "error");

    struct traffic *t = traffic_start(d.f->port);
    it_proc_signal(d.dns, SIGKILL);
    assert_int_equal(it_proc_wait(d.dns, 5000, NULL), 0);
    /* A failed query may take FC_DNS_TIMEOUT_MS (1 s) per try, 2 tries. */
    int64_t deadline = it_now_ms() + 6000;
    long after = before;
    while (after <= before && it_now_ms() < deadline) {
        it_sleep_ms(100);
        after = dns_queries(env, d.admin_port, "timeout") + dns_queries(env, d.admin_port, "error");
    }
    it_sleep_ms(4 * INTERVAL_MS);
    struct traffic_view v;
    traffic_stop(t, &v);
    print_message("failed queries %ld -> %ld; %s\n", before, after, view_text(env, &v));
    if (v.failed != 0)
        fail_msg("%s; the first: %s", view_text(env, &v), v.first_failure);
    if (after <= before)
        fail_msg("fulcrum_dns_queries_total{pool=\"web\"} with result timeout or error did not "
                 "grow within 6 s of the DNS server's death (%ld)",
                 before);
    if (view_count(&v, "a") == 0 || view_count(&v, "b") == 0)
        fail_msg("the last answer's backends did not both serve: %s", view_text(env, &v));
    wait_listed(env, d.admin_port, 2, 0);
}

/* Lines of `text` that contain both needles. */
static size_t lines_with(const char *text, const char *a, const char *b)
{
    size_t n = 0;
    while (*text != '\0') {
        const char *eol = strchr(text, '\n');
        size_t len = eol ? (size_t)(eol - text) : strlen(text);
        char *line = strndup(text, len);
        assert_non_null(line);
        if (strstr(line, a) != NULL && strstr(line, b) != NULL)
            n++;
        free(line);
        text += len + (eol ? 1 : 0);
    }
    return n;
}

/*
 * web.test (resolve = true) does not exist at the start: fulcrum starts all
 * the same, answers 503, says so in its log once (not once a query); once the
 * zone has the name, requests are served.
 */
IT_TEST(nxdomain_at_start_serves_once_the_name_appears)
{
    int port = it_backend_start(env, "a");
    struct discovery d;
    discovery_start(env, &d, "{\"names\": {}}", NULL, INTERVAL_MS,
                    it_strf(env, "{ address = \"web.test:%d\"; resolve = true; }", port));
    const char *got;
    assert_int_equal(get_backend(env, d.f->port, &got), 503);
    /* `fulcrum -t` asks too, and says so, but passes: such a name fails no start. */
    struct it_run_result r;
    const char *const check[] = {FC_BINARY, "-t", "-c", d.f->config_path, NULL};
    it_run(env, check, 15000, &r);
    if (r.exit_code != 0 || strstr(r.err, "web.test") == NULL ||
        strstr(r.err, "cannot resolve") == NULL)
        fail_msg("fulcrum -t: exit %d, expected 0 and a warning naming web.test:\n%s", r.exit_code,
                 r.err);
    wait_dns_queries(env, d.admin_port, "nxdomain", 0, CHANGE_MS);
    it_sleep_ms(4 * INTERVAL_MS);
    assert_true(dns_queries(env, d.admin_port, "nxdomain") >= 3);
    assert_int_equal(get_backend(env, d.f->port, &got), 503);
    assert_int_equal(it_metric(env, d.admin_port, "fulcrum_pool_backends{pool=\"web\"}"), 0);
    /* Teardown prints the log of a failed test. */
    size_t said = lines_with(it_fulcrum_log_settled(env, d.f), "web.test", "resolve");
    if (said != 1)
        fail_msg("%zu lines of fulcrum's log name web.test and \"resolve\", expected 1", said);

    it_dns_zone(env, host_zone(env, 30, "\"A\": [\"127.0.0.1\"]"));
    wait_answered_by(env, d.f->port, "a", CHANGE_MS);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(get_backend(env, d.f->port, &got), 200);
        assert_string_equal(got, "a");
    }
    expect_listed(wait_listed(env, d.admin_port, 1, 0), it_strf(env, "127.0.0.1:%d", port), 1);
}

/*
 * A name without `resolve` that does not resolve (asked of the configured
 * resolvers): `fulcrum -t` and a start both fail, naming it.
 */
IT_TEST(nxdomain_without_resolve_fails_naming_the_host)
{
    int port = it_backend_start(env, "a");
    struct discovery d;
    memset(&d, 0, sizeof(d));
    d.dns_port = it_dns_start(env, host_zone(env, 30, "\"A\": [\"127.0.0.1\"]"), &d.dns);
    discovery_config(env, &d, NULL, INTERVAL_MS,
                     it_strf(env, "{ address = \"nosuch.test:%d\"; }", port));
    const char *path =
        it_write_file(env, "nosuch.conf", it_config_render(env, &d.cfg, it_free_port()));

    struct it_run_result r;
    const char *const check[] = {FC_BINARY, "-t", "-c", path, NULL};
    it_run(env, check, 15000, &r);
    print_message("fulcrum -t: exit %d, stderr:\n%s", r.exit_code, r.err);
    assert_int_not_equal(r.exit_code, 0);
    assert_non_null(strstr(r.err, "nosuch.test"));

    const char *const start[] = {FC_BINARY, "-c", path, NULL};
    it_run(env, start, 15000, &r);
    assert_int_not_equal(r.exit_code, 0);
    assert_non_null(strstr(r.err, "nosuch.test"));
    assert_true(it_dns_queries(env, d.dns, "nosuch.test", NULL) >= 2);
}

/*
 * A name without `resolve` that the configured resolvers know: resolved once
 * when the file loads, and served; not asked again.
 */
IT_TEST(plain_name_resolves_once_through_the_resolvers)
{
    int port = it_backend_start(env, "a");
    struct discovery d;
    discovery_start(env, &d, host_zone(env, 1, "\"A\": [\"127.0.0.1\"]"), NULL, INTERVAL_MS,
                    it_strf(env, "{ address = \"web.test:%d\"; }", port));
    size_t asked = it_dns_queries(env, d.dns, "web.test", NULL);
    assert_true(asked >= 1);
    const char *got;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(get_backend(env, d.f->port, &got), 200);
        assert_string_equal(got, "a");
    }
    /* The TTL is 1 s and the interval 300 ms: neither makes fulcrum ask again. */
    it_sleep_ms(1500);
    assert_int_equal(get_backend(env, d.f->port, &got), 200);
    assert_int_equal(it_dns_queries(env, d.dns, "web.test", NULL), asked);
}

/*
 * An answer's TTL shorter than the interval: the name is asked again at the
 * TTL, but no sooner than a second after the last time.
 */
IT_TEST(short_ttl_is_asked_again_before_the_interval)
{
    int port = it_backend_start(env, "a");
    int64_t started = it_now_ms();
    struct discovery d;
    discovery_start(env, &d, host_zone(env, 1, "\"A\": [\"127.0.0.1\"]"), NULL, 10000,
                    it_strf(env, "{ address = \"web.test:%d\"; resolve = true; }", port));
    wait_answered_by(env, d.f->port, "a", 2000);
    size_t n = 0;
    while ((n = it_dns_queries(env, d.dns, "web.test", "A")) < 3 && it_now_ms() - started < 4500)
        it_sleep_ms(50);
    int64_t took = it_now_ms() - started;
    print_message("%zu A queries for web.test in %lld ms\n", n, (long long)took);
    if (n < 3) {
        fprintf(stderr, "---- dns_server's queries ----\n%s---- end ----\n",
                it_proc_stdout(env, d.dns));
        fail_msg("%zu A queries for web.test within %lld ms (TTL 1 s, interval 10 s)", n,
                 (long long)took);
    }
    /* A TTL of 0 is floored at 1 s: a query a second, not one a moment. */
    it_dns_zone(env, host_zone(env, 0, "\"A\": [\"127.0.0.1\"]"));
    it_sleep_ms(1200);
    size_t before = it_dns_queries(env, d.dns, "web.test", "A");
    it_sleep_ms(2000);
    n = it_dns_queries(env, d.dns, "web.test", "A") - before;
    print_message("%zu A queries for web.test in 2 s at TTL 0\n", n);
    if (n < 1 || n > 4)
        fail_msg("%zu A queries for web.test in 2 s at TTL 0: expected about 2 (1 s floor)", n);
    const char *got;
    assert_int_equal(get_backend(env, d.f->port, &got), 200);
    assert_string_equal(got, "a");
}

/*
 * The TTL of the SRV records themselves (1 s, their targets' addresses 300
 * s, the interval 10 s) brings the next SRV query forward.
 */
IT_TEST(short_srv_ttl_is_asked_again_before_the_interval)
{
    int a = it_backend_start(env, "a");
    struct discovery d;
    memset(&d, 0, sizeof(d));
    d.dns_port =
        it_dns_start(env,
                     it_strf(env,
                             "{\"names\": {\"" SRV_NAME ".\": {\"ttl\": 1, \"SRV\": [%s]}, "
                             "\"a.test.\": {\"ttl\": 300, \"A\": [\"127.0.0.1\"]}}}",
                             srv_record(env, 10, 1, a, "a")),
                     &d.dns);
    discovery_config(env, &d, NULL, 10000, SRV_ENTRY);
    int64_t started = it_now_ms();
    d.f = it_fulcrum_start(env, &d.cfg);
    wait_answered_by(env, d.f->port, "a", 2000);
    size_t n = 0;
    while ((n = it_dns_queries(env, d.dns, SRV_NAME, "SRV")) < 3 && it_now_ms() - started < 4500)
        it_sleep_ms(50);
    print_message("%zu SRV queries in %lld ms (SRV TTL 1 s, targets' 300 s, interval 10 s)\n", n,
                  (long long)(it_now_ms() - started));
    if (n < 3)
        fail_msg("%zu SRV queries within 4.5 s: the SRV records' TTL of 1 s was not followed", n);
}

/* An answer that is malformed later keeps the last good set, and is counted. */
IT_TEST(malformed_answer_keeps_the_last_good_set)
{
    static const char *const names[] = {"a", "b"};
    int a, b;
    struct discovery d;
    start_two_targets(env, &d, &a, &b);

    it_dns_zone(env, "{\"names\": {\"" SRV_NAME ".\": {\"malformed\": true}, " TARGETS "}}");
    wait_dns_queries(env, d.admin_port, "malformed", 0, CHANGE_MS);
    it_sleep_ms(2 * INTERVAL_MS);
    assert_true(dns_queries(env, d.admin_port, "malformed") >= 2);
    int counts[2];
    spread(env, d.f->port, 20, names, 2, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
    const char *lines = wait_listed(env, d.admin_port, 2, 0);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", a), 1);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", b), 1);
}

/*
 * An SRV answer of 300 records (more than a set takes; it comes over TCP,
 * too large for UDP) is rejected and counted oversized: the last good set
 * stays, and none of its ports is ever connected to.
 */
IT_TEST(oversized_answer_keeps_the_last_good_set)
{
    static const char *const names[] = {"a", "b"};
    int a, b;
    struct discovery d;
    const char *two = start_two_targets(env, &d, &a, &b);

    const char *many = two;
    for (int i = 0; i < 298; i++) /* ports nothing listens on: they must never be tried */
        many = it_strf(env, "%s, %s", many, srv_record(env, 10, 1, 20000 + i, "a"));
    it_dns_zone(env, srv_zone(env, many));
    wait_dns_queries(env, d.admin_port, "oversized", 0, CHANGE_MS);
    int counts[2];
    spread(env, d.f->port, 20, names, 2, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
    assert_int_equal(it_metric(env, d.admin_port, "fulcrum_pool_backends{pool=\"web\"}"), 2);
    assert_true(it_fulcrum_log_count(env, d.f, "an answer of more than 256 addresses") == 1);
}

/*
 * One SRV target's address lookup fails (SERVFAIL) while the SRV records
 * answer: the query as a whole has failed, and the last set stays whole;
 * the target is not dropped for a round.
 */
IT_TEST(a_target_that_fails_to_resolve_keeps_the_last_set)
{
    static const char *const names[] = {"a", "b"};
    int a, b;
    struct discovery d;
    const char *srv = start_two_targets(env, &d, &a, &b);

    it_dns_zone(env, it_strf(env,
                             "{\"names\": {\"" SRV_NAME ".\": {\"ttl\": 30, \"SRV\": [%s]}, "
                             "\"a.test.\": {\"A\": [\"127.0.0.1\"]}, "
                             "\"b.test.\": {\"rcode\": \"SERVFAIL\"}}}",
                             srv));
    wait_dns_queries(env, d.admin_port, "error", 0, CHANGE_MS);
    it_sleep_ms(2 * INTERVAL_MS);
    int counts[2];
    spread(env, d.f->port, 20, names, 2, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
    expect_listed(wait_listed(env, d.admin_port, 2, 0), it_strf(env, "127.0.0.1:%d", b), 1);
}

/*
 * The file names a backend that DNS also gives: one backend, the file's,
 * with its weight and source; DNS's other address beside it.
 */
IT_TEST(an_address_the_file_names_is_not_doubled)
{
    int a = it_backend_start(env, "a"), b = it_backend_start(env, "b");
    struct discovery d;
    discovery_start(env, &d,
                    srv_zone(env, it_strf(env, "%s, %s", srv_record(env, 10, 1, a, "a"),
                                          srv_record(env, 10, 1, b, "b"))),
                    NULL, INTERVAL_MS,
                    it_strf(env, "%s, { address = \"127.0.0.1:%d\"; weight = 5; }", SRV_ENTRY, a));
    const char *lines = wait_listed(env, d.admin_port, 2, CHANGE_MS);
    const char *fixed = it_strf(env, "127.0.0.1:%d config 5\n", a);
    if (strstr(lines, fixed) == NULL || it_count(lines, it_strf(env, "127.0.0.1:%d ", a)) != 1)
        fail_msg("expected %s once, the file's, in:\n%s", fixed, lines);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", b), 1);
    assert_int_equal(it_metric(env, d.admin_port, "fulcrum_pool_backends{pool=\"web\"}"), 2);
}

/*
 * `resolvers` changed by a reload while queries to the old server are
 * running (it never answers: each waits out c-ares's timeouts): the new
 * server is asked once they end, and its answer is in force within a few
 * seconds. c-ares changes servers only while no query runs.
 */
IT_TEST(a_reload_changes_the_resolvers_while_queries_run)
{
    int a = it_backend_start(env, "a");
    int silent = socket(AF_INET, SOCK_DGRAM, 0); /* takes queries, answers none */
    assert_true(silent >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(silent, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(silent, (struct sockaddr *)&sin, &len), 0);
    struct discovery d;
    memset(&d, 0, sizeof(d));
    d.dns_port = it_dns_start(env, srv_zone(env, srv_record(env, 10, 1, a, "a")), &d.dns);
    discovery_config(env, &d, NULL, INTERVAL_MS, SRV_ENTRY);
    d.cfg.top = it_strf(env, "resolvers = ( \"127.0.0.1:%d\" );", ntohs(sin.sin_port));
    d.f = it_fulcrum_start(env, &d.cfg);
    assert_int_equal(it_metric(env, d.admin_port, "fulcrum_pool_backends{pool=\"web\"}"), 0);
    /* The first query timed out as fulcrum started; the next one is running now. */
    it_sleep_ms(INTERVAL_MS + 200);

    d.cfg.top = it_strf(env, "resolvers = ( \"127.0.0.1:%d\" );", d.dns_port);
    int64_t reloaded = it_now_ms();
    assert_int_equal(it_fulcrum_reload(env, d.f, &d.cfg), 0);
    wait_answered_by(env, d.f->port, "a", 8000);
    print_message("the new resolvers' answer served %lld ms after the reload\n",
                  (long long)(it_now_ms() - reloaded));
    close(silent);
}

/*
 * The runtime API drains a backend that DNS gives: it takes no new request,
 * and stays drained through a DNS change (another target joins); ready
 * brings it back; removing it is refused (409), as DNS would bring it back.
 */
IT_TEST(a_dns_backend_is_drained_through_the_runtime_api)
{
    static const char *const names[] = {"a", "b", "c"};
    int a, b;
    struct discovery d;
    const char *srv = start_two_targets(env, &d, &a, &b);
    int c = it_backend_start(env, "c");
    const char *path = it_strf(env, "/api/pools/web/backends/127.0.0.1%%3A%d", b);
    const char *body;
    assert_int_equal(
        it_admin_send(env, d.admin_port, "PATCH", path, NULL, "{\"state\": \"drain\"}", &body),
        200);
    assert_non_null(strstr(body, "\"source\":\"dns\""));
    assert_non_null(strstr(body, "\"state\":\"drain\""));
    int counts[3];
    spread(env, d.f->port, 10, names, 3, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 0);

    /* c joins: a new set, a new generation; b stays drained in it. */
    it_dns_zone(env, srv_zone(env, it_strf(env, "%s, %s", srv, srv_record(env, 10, 1, c, "c"))));
    wait_listed(env, d.admin_port, 3, CHANGE_MS);
    spread(env, d.f->port, 20, names, 3, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 0);
    assert_int_equal(counts[2], 10);

    assert_int_equal(it_admin_send(env, d.admin_port, "DELETE", path, NULL, "", &body), 409);
    assert_non_null(strstr(body, "comes from DNS"));
    assert_int_equal(
        it_admin_send(env, d.admin_port, "PATCH", path, NULL, "{\"state\": \"ready\"}", &body),
        200);
    spread(env, d.f->port, 30, names, 3, counts);
    assert_int_equal(counts[1], 10);
}

/*
 * A change to an address that DNS then stops giving: it is not listed, so
 * PATCH finds no backend (404), but DELETE drops the kept change; when DNS
 * gives the address again, it comes back in rotation, not in maintenance.
 */
IT_TEST(a_change_to_an_address_dns_dropped_can_be_deleted)
{
    static const char *const names[] = {"a", "b"};
    int a, b;
    struct discovery d;
    const char *srv = start_two_targets(env, &d, &a, &b);
    const char *path = it_strf(env, "/api/pools/web/backends/127.0.0.1%%3A%d", b);
    const char *body;
    assert_int_equal(
        it_admin_send(env, d.admin_port, "PATCH", path, NULL, "{\"state\": \"maint\"}", &body),
        200);
    it_dns_zone(env, srv_zone(env, srv_record(env, 10, 1, a, "a")));
    wait_listed(env, d.admin_port, 1, CHANGE_MS);
    assert_int_equal(
        it_admin_send(env, d.admin_port, "PATCH", path, NULL, "{\"state\": \"ready\"}", &body),
        404);
    assert_int_equal(it_admin_send(env, d.admin_port, "DELETE", path, NULL, "", &body), 200);
    it_dns_zone(env, srv_zone(env, srv));
    wait_listed(env, d.admin_port, 2, CHANGE_MS);
    int counts[2];
    spread(env, d.f->port, 20, names, 2, counts);
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
}

/*
 * A weight set through the runtime API that DNS's own then comes to equal:
 * setting it again drops the change, so that DNS's next weight is b's.
 */
IT_TEST(a_weight_dns_comes_to_give_is_dns_again)
{
    int a = it_backend_start(env, "a"), b = it_backend_start(env, "b");
    const char *ra = srv_record(env, 10, 1, a, "a");
    struct discovery d;
    discovery_start(env, &d,
                    srv_zone(env, it_strf(env, "%s, %s", ra, srv_record(env, 10, 5, b, "b"))), NULL,
                    INTERVAL_MS, SRV_ENTRY);
    expect_listed(wait_listed(env, d.admin_port, 2, CHANGE_MS), it_strf(env, "127.0.0.1:%d", b), 5);
    const char *path = it_strf(env, "/api/pools/web/backends/127.0.0.1%%3A%d", b);
    const char *body;
    assert_int_equal(
        it_admin_send(env, d.admin_port, "PATCH", path, NULL, "{\"weight\": 1}", &body), 200);
    /* DNS's weight becomes 1 too, then the operator sets 1 again: the change goes. */
    it_dns_zone(env, srv_zone(env, it_strf(env, "%s, %s", ra, srv_record(env, 10, 1, b, "b"))));
    it_sleep_ms(3 * INTERVAL_MS);
    assert_int_equal(
        it_admin_send(env, d.admin_port, "PATCH", path, NULL, "{\"weight\": 1}", &body), 200);
    it_dns_zone(env, srv_zone(env, it_strf(env, "%s, %s", ra, srv_record(env, 10, 7, b, "b"))));
    int64_t deadline = it_now_ms() + CHANGE_MS;
    const char *lines = NULL;
    const char *want = it_strf(env, "127.0.0.1:%d dns 7\n", b);
    while (it_now_ms() < deadline &&
           strstr(lines = wait_listed(env, d.admin_port, 2, 0), want) == NULL)
        it_sleep_ms(50);
    if (strstr(lines, want) == NULL)
        fail_msg("b should have DNS's weight 7 again, the status lists:\n%s", lines);
}

/*
 * A reload of an unchanged file: the discovered backends keep serving, with
 * no failed request across it.
 */
IT_TEST(reload_keeps_discovered_backends_serving)
{
    static const char *const names[] = {"a", "b"};
    int a, b;
    struct discovery d;
    start_two_targets(env, &d, &a, &b);

    struct traffic *t = traffic_start(d.f->port);
    it_sleep_ms(INTERVAL_MS);
    assert_int_equal(it_fulcrum_reload_text(env, d.f, NULL), 0);
    struct traffic_view at;
    traffic_view(t, &at);
    it_sleep_ms(3 * INTERVAL_MS);
    struct traffic_view v;
    traffic_stop(t, &v);
    print_message("%s\n", view_text(env, &v));
    if (v.failed != 0)
        fail_msg("%s; the first: %s", view_text(env, &v), v.first_failure);
    for (int i = 0; i < 2; i++)
        if (view_count(&v, names[i]) <= view_count(&at, names[i]))
            fail_msg("backend %s took no request after the reload: %s", names[i],
                     view_text(env, &v));
    const char *lines = wait_listed(env, d.admin_port, 2, 0);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", a), 1);
    expect_listed(lines, it_strf(env, "127.0.0.1:%d", b), 1);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(a_and_aaaa_answers_are_backends),
    IT_CASE(srv_targets_join_and_leave_without_a_failed_request),
    IT_CASE(discovered_backends_are_health_checked_at_once),
    IT_CASE(frequent_changes_do_not_hold_off_health_checks),
    IT_CASE(srv_weights_share_the_traffic),
    IT_CASE(srv_lowest_priority_only),
    IT_CASE(dns_down_keeps_the_last_answer),
    IT_CASE(nxdomain_at_start_serves_once_the_name_appears),
    IT_CASE(nxdomain_without_resolve_fails_naming_the_host),
    IT_CASE(plain_name_resolves_once_through_the_resolvers),
    IT_CASE(short_ttl_is_asked_again_before_the_interval),
    IT_CASE(short_srv_ttl_is_asked_again_before_the_interval),
    IT_CASE(malformed_answer_keeps_the_last_good_set),
    IT_CASE(oversized_answer_keeps_the_last_good_set),
    IT_CASE(a_target_that_fails_to_resolve_keeps_the_last_set),
    IT_CASE(an_address_the_file_names_is_not_doubled),
    IT_CASE(a_reload_changes_the_resolvers_while_queries_run),
    IT_CASE(a_dns_backend_is_drained_through_the_runtime_api),
    IT_CASE(a_change_to_an_address_dns_dropped_can_be_deleted),
    IT_CASE(a_weight_dns_comes_to_give_is_dns_again),
    IT_CASE(reload_keeps_discovered_backends_serving),
};

IT_MAIN(tests)
