/*
 * `fulcrum plugin-check` for a health checker: one instance over a pool of
 * four real backends on 127.0.0.1, probed on a libuv loop that stands in for
 * the main loop, as the core's scheduler would probe them
 * (plugin_check_run.h):
 *
 *   - one that passes: it answers any request with HTTP 200;
 *   - one that answers 503;
 *   - one that refuses connections (a port bound but not listening);
 *   - one that accepts and never answers.
 *
 * Every round probes each backend once and waits for the verdicts, which
 * must come exactly once per probe, within timeout_ms (plus SLACK_MS), and
 * never for a probe whose probe() said it could not start. The first
 * backend must pass and the refusing one must fail; what the plugin makes
 * of the other two is its own judgment, and reported. destroy() must leave
 * no handle of the plugin's on the loop.
 */
#define _GNU_SOURCE
#include "plugin_check_run.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROUNDS 3 /* at scale 100; at least one */
#define SLACK_MS 500
#define REQUEST_MAX 4096

enum behaviour { PASSES, ANSWERS_503, REFUSES, SILENT };

static const char *const behaviour_names[FC_CHECK_BACKENDS] = {
    "answers HTTP 200", "answers HTTP 503", "refuses connections", "accepts, never answers"};

struct hc_run;

/* A connection to one of the listeners. */
struct hc_conn {
    uv_tcp_t tcp;
    struct hc_run *run;
    enum behaviour b;
    struct hc_conn *next, *prev;
    uv_write_t write;
    char buf[REQUEST_MAX];
    size_t len;
    int answered;
};

struct hc_probe {
    uint32_t backend;
    int done, ok, not_started;
    char reason[128];
    uint64_t started_ns, ended_ns;
};

struct hc_run {
    struct fc_check *c;
    uv_loop_t loop;
    uv_timer_t guard;
    int guard_fired;
    uv_tcp_t listeners[FC_CHECK_BACKENDS]; /* not for REFUSES */
    int refused_fd;
    struct hc_conn *conns;
    struct fc_instance inst;
    int have_inst;
    int in_probe;
    struct fc_backend_state states[FC_CHECK_BACKENDS];
    struct sockaddr_storage addrs[FC_CHECK_BACKENDS];
    char addresses[FC_CHECK_BACKENDS][32];
    struct fc_backend_view views[FC_CHECK_BACKENDS];
    struct fc_pool_view pool;
    struct hc_probe probes[FC_CHECK_BACKENDS];
    /* over the rounds */
    uint32_t passed[FC_CHECK_BACKENDS];
    uint64_t slowest_ms[FC_CHECK_BACKENDS];
    char last_reason[FC_CHECK_BACKENDS][128];
};

/* ---- the backends ---- */

static void on_conn_closed(uv_handle_t *h)
{
    struct hc_conn *conn = h->data;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        conn->run->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    free(conn);
}

static void conn_close(struct hc_conn *conn)
{
    if (!uv_is_closing((uv_handle_t *)&conn->tcp))
        uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct hc_conn *conn = h->data;
    if (conn->len >= sizeof(conn->buf))
        conn->len = 0; /* a long request: only its end matters */
    *buf = uv_buf_init(conn->buf + conn->len, (unsigned)(sizeof(conn->buf) - conn->len));
}

static void on_written(uv_write_t *req, int status)
{
    conn_close(req->data);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct hc_conn *conn = s->data;
    if (n < 0) {
        conn_close(conn);
        return;
    }
    conn->len += (size_t)n;
    if (conn->b == SILENT || conn->answered || memmem(conn->buf, conn->len, "\r\n\r\n", 4) == NULL)
        return;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
    static const char unavailable[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                      "Content-Type: text/plain\r\nContent-Length: 12\r\n"
                                      "Connection: close\r\n\r\nunavailable\n";
    uv_buf_t answer = conn->b == PASSES ? uv_buf_init((char *)ok, sizeof(ok) - 1)
                                        : uv_buf_init((char *)unavailable, sizeof(unavailable) - 1);
    conn->answered = 1;
    uv_read_stop(s);
    conn->write.data = conn;
    if (uv_write(&conn->write, s, &answer, 1, on_written) != 0)
        conn_close(conn);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct hc_run *run = server->data;
    if (status < 0)
        return;
    struct hc_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return;
    conn->run = run;
    conn->b = (enum behaviour)((uv_tcp_t *)server - run->listeners);
    uv_tcp_init(&run->loop, &conn->tcp);
    conn->tcp.data = conn;
    conn->next = run->conns;
    if (run->conns != NULL)
        run->conns->prev = conn;
    run->conns = conn;
    if (uv_accept(server, (uv_stream_t *)&conn->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read) != 0)
        conn_close(conn);
}

static void set_backend(struct hc_run *run, uint32_t i, const struct sockaddr_in *sin)
{
    memcpy(&run->addrs[i], sin, sizeof(*sin));
    snprintf(run->addresses[i], sizeof(run->addresses[i]), "127.0.0.1:%u",
             (unsigned)ntohs(sin->sin_port));
    run->states[i] = (struct fc_backend_state){.up = 1};
    run->views[i] = (struct fc_backend_view){.index = i,
                                             .weight = 1,
                                             .address = run->addresses[i],
                                             .sockaddr = (const struct sockaddr *)&run->addrs[i],
                                             .sockaddr_len = sizeof(*sin),
                                             .state = &run->states[i]};
}

/* Starts the four backends. 0, or FC_ERROR after recording why. */
static int start_backends(struct hc_run *run)
{
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sin);
        if (i == REFUSES) {
            run->refused_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (run->refused_fd < 0 || bind(run->refused_fd, (struct sockaddr *)&sin, len) != 0 ||
                getsockname(run->refused_fd, (struct sockaddr *)&sin, &len) != 0)
                return fc_check_fail(run->c, "cannot bind a port on 127.0.0.1");
        } else {
            uv_tcp_t *l = &run->listeners[i];
            l->data = run;
            int rc = uv_tcp_bind(l, (struct sockaddr *)&sin, 0);
            if (rc == 0)
                rc = uv_listen((uv_stream_t *)l, 64, on_connection);
            int nlen = sizeof(sin);
            if (rc == 0)
                rc = uv_tcp_getsockname(l, (struct sockaddr *)&sin, &nlen);
            if (rc != 0)
                return fc_check_fail(run->c, "cannot listen on 127.0.0.1: %s", uv_strerror(rc));
        }
        set_backend(run, i, &sin);
    }
    run->pool = (struct fc_pool_view){
        .name = "check", .n_backends = FC_CHECK_BACKENDS, .backends = run->views};
    return 0;
}

/* ---- probes ---- */

static void on_probe_done(void *owner, struct fc_probe *handle, int ok, const char *reason)
{
    struct hc_run *run = owner;
    struct hc_probe *p = (struct hc_probe *)(void *)handle;
    const char *address = run->addresses[p->backend];
    if (p->not_started) {
        fc_check_fail(run->c,
                      "probe_done() came for the probe of %s, whose probe() had "
                      "returned an error",
                      address);
        return;
    }
    if (p->done) {
        fc_check_fail(run->c, "probe_done() came twice for one probe of %s", address);
        return;
    }
    p->done = 1;
    p->ok = ok != 0;
    snprintf(p->reason, sizeof(p->reason), "%s", reason);
    p->ended_ns = uv_hrtime();
}

static void on_guard(uv_timer_t *t)
{
    ((struct hc_run *)t->data)->guard_fired = 1;
}

static int all_done(const struct hc_run *run)
{
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        if (!run->probes[i].done)
            return 0;
    return 1;
}

/* One probe of each backend, and their verdicts. 0 or FC_ERROR. */
static int probe_round(struct hc_run *run)
{
    struct fc_check *c = run->c;
    const struct fc_health_ops *ops = c->plugin->desc->health;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++) {
        struct hc_probe *p = &run->probes[i];
        *p = (struct hc_probe){.backend = i, .started_ns = uv_hrtime()};
        int rc = ops->probe(run->inst.state, &run->views[i], c->timeout_ms,
                            (struct fc_probe *)(void *)p);
        if (rc < 0 && p->done)
            return fc_check_fail(c, "probe() of %s returned %d after its probe_done() came",
                                 run->addresses[i], rc);
        if (rc < 0) {
            p->done = 1;
            p->not_started = 1;
            p->ended_ns = p->started_ns;
            snprintf(p->reason, sizeof(p->reason), "probe() returned %d: it could not start", rc);
        }
    }
    run->guard_fired = 0;
    uv_update_time(&run->loop);
    uv_timer_start(&run->guard, on_guard, c->timeout_ms + SLACK_MS + 1000, 0);
    while (!all_done(run) && !run->guard_fired && !fc_check_failed(c))
        uv_run(&run->loop, UV_RUN_ONCE);
    uv_timer_stop(&run->guard);
    if (fc_check_failed(c))
        return FC_ERROR;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++) {
        const struct hc_probe *p = &run->probes[i];
        if (!p->done)
            return fc_check_fail(c, "no verdict for %s (it %s) within %u ms; timeout_ms is %u",
                                 run->addresses[i], behaviour_names[i],
                                 c->timeout_ms + SLACK_MS + 1000, c->timeout_ms);
        uint64_t ms = (p->ended_ns - p->started_ns) / 1000000;
        if (ms > c->timeout_ms + SLACK_MS)
            return fc_check_fail(c,
                                 "the verdict for %s (it %s) came after %llu ms; timeout_ms "
                                 "is %u",
                                 run->addresses[i], behaviour_names[i], (unsigned long long)ms,
                                 c->timeout_ms);
        run->passed[i] += (uint32_t)p->ok;
        if (ms > run->slowest_ms[i])
            run->slowest_ms[i] = ms;
        snprintf(run->last_reason[i], sizeof(run->last_reason[i]), "%s", p->reason);
    }
    if (!run->probes[PASSES].ok)
        return fc_check_fail(c, "failed %s, which answers HTTP 200 to anything: %s",
                             run->addresses[PASSES], run->probes[PASSES].reason);
    if (run->probes[REFUSES].ok)
        return fc_check_fail(c, "passed %s, which refuses connections: %s", run->addresses[REFUSES],
                             run->probes[REFUSES].reason);
    return 0;
}

/* ---- the run ---- */

/* Handles on the loop that are the run's own: its timer, listeners and connections. */
static int owned(const struct hc_run *run, const uv_handle_t *h)
{
    if (h == (const uv_handle_t *)&run->guard)
        return 1;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        if (i != REFUSES && h == (const uv_handle_t *)&run->listeners[i])
            return 1;
    for (const struct hc_conn *conn = run->conns; conn != NULL; conn = conn->next)
        if (h == (const uv_handle_t *)&conn->tcp)
            return 1;
    return 0;
}

struct foreign {
    const struct hc_run *run;
    int n;
};

static void count_foreign(uv_handle_t *h, void *arg)
{
    struct foreign *f = arg;
    if (!owned(f->run, h))
        f->n++;
}

static void report(struct hc_run *run, uint32_t rounds)
{
    struct fc_check *c = run->c;
    fc_check_say(c, "health: %d backends on 127.0.0.1, %u rounds of probes, timeout_ms %u",
                 FC_CHECK_BACKENDS, rounds, c->timeout_ms);
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        fc_check_say(c, "  %-16s %-23s passed %u of %u, slowest %4llu ms: \"%s\"",
                     run->addresses[i], behaviour_names[i], run->passed[i], rounds,
                     (unsigned long long)run->slowest_ms[i], run->last_reason[i]);
    fc_check_say(c, "%s", "");
}

static int exercise(struct hc_run *run, uint32_t rounds)
{
    if (start_backends(run) != 0)
        return FC_ERROR;
    struct fc_instance_hooks hooks = {.owner = run,
                                      .main_loop = &run->loop,
                                      .worker_count = 1,
                                      .probe_done = on_probe_done,
                                      .pool_name = "check"};
    char label[96];
    snprintf(label, sizeof(label), "pool check: health %s", run->c->plugin->desc->name);
    if (fc_check_create(run->c, &run->inst, &run->pool, &hooks, label) != 0)
        return FC_ERROR;
    run->have_inst = 1;
    for (uint32_t r = 0; r < rounds; r++)
        if (probe_round(run) != 0)
            return FC_ERROR;
    fc_instance_destroy(&run->inst);
    run->have_inst = 0;
    /* What the plugin closed in destroy() closes now. */
    uv_run(&run->loop, UV_RUN_NOWAIT);
    struct foreign f = {.run = run};
    uv_walk(&run->loop, count_foreign, &f);
    if (f.n > 0)
        return fc_check_fail(run->c, "destroy() left %d handles of its own on the main loop", f.n);
    report(run, rounds);
    return 0;
}

/* A run left to the process because a probe never ended (kept reachable, not leaked). */
static struct hc_run *abandoned;

int fc_check_health(struct fc_check *c)
{
    struct hc_run *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return fc_check_fail(c, "out of memory");
    run->c = c;
    run->refused_fd = -1;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        run->probes[i].done = 1; /* none out before the first round */
    if (uv_loop_init(&run->loop) != 0) {
        free(run);
        return fc_check_fail(c, "cannot start a loop");
    }
    uv_timer_init(&run->loop, &run->guard);
    run->guard.data = run;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        if (i != REFUSES)
            uv_tcp_init(&run->loop, &run->listeners[i]);

    uint32_t rounds = ROUNDS * c->scale / 100;
    int rc = exercise(run, rounds > 0 ? rounds : 1);

    /*
     * After a failure, probes may still be running: their verdicts come
     * first, as the core destroys an instance only with no probe in flight.
     * If they do not come, or the plugin leaves handles on the loop, the
     * loop is not run again: it stays, for the process to end.
     */
    if (run->have_inst) {
        run->guard_fired = 0;
        uv_update_time(&run->loop);
        uv_timer_start(&run->guard, on_guard, c->timeout_ms + SLACK_MS + 1000, 0);
        while ((!all_done(run) || fc_prober_in_flight(&run->inst.prober) > 0) && !run->guard_fired)
            uv_run(&run->loop, UV_RUN_ONCE);
        uv_timer_stop(&run->guard);
        fc_instance_destroy(&run->inst);
    }
    uv_run(&run->loop, UV_RUN_NOWAIT);
    uv_close((uv_handle_t *)&run->guard, NULL);
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        if (i != REFUSES)
            uv_close((uv_handle_t *)&run->listeners[i], NULL);
    for (struct hc_conn *conn = run->conns; conn != NULL; conn = conn->next)
        conn_close(conn);
    if (run->refused_fd >= 0)
        close(run->refused_fd);
    struct foreign f = {.run = run};
    uv_walk(&run->loop, count_foreign, &f);
    if (all_done(run) && f.n == 0) {
        uv_run(&run->loop, UV_RUN_DEFAULT);
        uv_loop_close(&run->loop);
        free(run);
    } else
        abandoned = run; /* the plugin's handles point into it: it stays, for the process to end */
    return rc;
}
