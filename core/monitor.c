/*
 * The operator's endpoints; see monitor.h.
 *
 * Event streams are kept in a list; each event is formatted once and sent to
 * every stream. A stream whose reader falls behind is closed by the admin
 * listener (FC_ADMIN_STREAM_BUFFER), which tells us through stream_closed().
 */
#include "monitor.h"

#include "admin.h"
#include "generation.h"
#include "health.h"
#include "status.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct stream {
    struct fc_admin_stream *s;
    struct stream *next;
};

struct fc_monitor {
    struct fc_admin *admin;
    struct fc_monitor_source src;
    uv_timer_t tick;
    struct stream *streams;
};

/* Both render straight into the response; one that runs out of memory is answered 500. */
static void metrics_get(void *arg, const struct fc_admin_request *req,
                        struct fc_admin_response *resp)
{
    struct fc_monitor *m = arg;
    struct fc_metrics_info info;
    m->src.info(m->src.arg, &info);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    fc_metrics_render(m->src.generation(m->src.arg), &info, &resp->body);
}

static int status_text(struct fc_monitor *m, struct fc_text *t)
{
    struct fc_metrics_info info;
    m->src.info(m->src.arg, &info);
    fc_status_render(m->src.generation(m->src.arg), &info, m->src.workers, t);
    return t->oom ? -1 : 0;
}

static void status_get(void *arg, const struct fc_admin_request *req,
                       struct fc_admin_response *resp)
{
    resp->status = 200;
    resp->content_type = "application/json";
    status_text(arg, &resp->body);
    fc_text_append(&resp->body, "\n", 1);
}

/* Sends one event to every stream: "event: NAME\ndata: JSON\n\n". */
static void broadcast(struct fc_monitor *m, const char *name, const struct fc_text *json)
{
    if (m->streams == NULL || json->oom)
        return;
    struct fc_text ev = {0};
    fc_text_printf(&ev, "event: %s\ndata: %.*s\n\n", name, (int)json->len, json->p);
    if (!ev.oom) {
        /* A send may close its stream, which unlinks it: walk a step ahead. */
        for (struct stream *s = m->streams, *next; s != NULL; s = next) {
            next = s->next;
            fc_admin_stream_send(s->s, ev.p, ev.len);
        }
    }
    fc_text_free(&ev);
}

static void tick_cb(uv_timer_t *h)
{
    struct fc_monitor *m = h->data;
    if (m->streams == NULL)
        return;
    struct fc_text t = {0};
    if (status_text(m, &t) == 0)
        broadcast(m, "status", &t);
    fc_text_free(&t);
}

static int stream_open(void *arg, struct fc_admin_stream *s)
{
    struct fc_monitor *m = arg;
    struct stream *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return 503;
    st->s = s;
    st->next = m->streams;
    m->streams = st;
    /* The status at once, so a new reader has something to show. */
    struct fc_text t = {0};
    if (status_text(m, &t) == 0) {
        struct fc_text ev = {0};
        fc_text_printf(&ev, "retry: 2000\nevent: status\ndata: %.*s\n\n", (int)t.len, t.p);
        if (!ev.oom)
            fc_admin_stream_send(s, ev.p, ev.len);
        fc_text_free(&ev);
    }
    fc_text_free(&t);
    return 0;
}

static void stream_closed(void *arg, struct fc_admin_stream *s)
{
    struct fc_monitor *m = arg;
    for (struct stream **p = &m->streams; *p != NULL; p = &(*p)->next)
        if ((*p)->s == s) {
            struct stream *gone = *p;
            *p = gone->next;
            free(gone);
            return;
        }
}

/* The health observer: a backend went up or down. */
static void backend_changed(void *arg, struct fc_gen_pool *pool, uint32_t backend)
{
    struct fc_monitor *m = arg;
    const struct fc_generation *g = m->src.generation(m->src.arg);
    /*
     * The checker of an older generation may be the one that saw it (right
     * after a reload): the backend is told as the generation in force has it,
     * found by its shared state, which the generations have in common.
     */
    const struct fc_backend_shared *shared = pool->shared[backend];
    for (uint32_t p = 0; p < g->cfg->n_pools; p++)
        for (uint32_t b = 0; b < g->pools[p].n_backends; b++)
            if (g->pools[p].shared[b] == shared) {
                struct fc_text t = {0};
                fc_status_backend_event(g, p, b, &t);
                broadcast(m, "backend", &t);
                fc_text_free(&t);
                return;
            }
}

/* Sends `event: type` with j (taken; NULL: out of memory, nothing sent) to every stream. */
static void broadcast_json(struct fc_monitor *m, const char *type, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL)
        return;
    struct fc_text t = {.p = text, .len = strlen(text), .cap = strlen(text) + 1};
    broadcast(m, type, &t);
    fc_text_free(&t);
}

void fc_monitor_reloaded(struct fc_monitor *m, uint64_t generation, const char *error)
{
    if (m == NULL)
        return;
    broadcast_json(m, "reload",
                   json_pack("{s:s, s:I, s:s, s:I}", "result", error ? "failed" : "done",
                             "generation", (json_int_t)generation, "error", error ? error : "",
                             "time", (json_int_t)time(NULL)));
}

void fc_monitor_backend_set(struct fc_monitor *m, const char *pool, const char *address,
                            const char *state, const char *reason)
{
    if (m == NULL)
        return;
    broadcast_json(m, "backend",
                   json_pack("{s:s, s:s, s:s, s:I, s:s}", "pool", pool, "backend", address, "state",
                             state, "since", (json_int_t)time(NULL), "reason", reason));
}

struct fc_monitor *fc_monitor_create(struct fc_admin *admin, uv_loop_t *loop,
                                     const struct fc_monitor_source *src)
{
    struct fc_monitor *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->admin = admin;
    m->src = *src;
    if (fc_admin_route(admin, "GET", "/metrics", 0, metrics_get, m) != 0 ||
        fc_admin_route(admin, "GET", "/api/status", 0, status_get, m) != 0 ||
        fc_admin_stream_route(admin, "/api/events", 0, stream_open, stream_closed, m) != 0) {
        free(m);
        return NULL;
    }
    uv_timer_init(loop, &m->tick);
    m->tick.data = m;
    uv_timer_start(&m->tick, tick_cb, 1000, 1000);
    uv_unref((uv_handle_t *)&m->tick); /* must not keep the loop alive at shutdown */
    fc_health_set_observer(backend_changed, m);
    return m;
}

static void tick_closed(uv_handle_t *h)
{
    free(h->data);
}

void fc_monitor_destroy(struct fc_monitor *m)
{
    if (m == NULL)
        return;
    fc_health_set_observer(NULL, NULL);
    while (m->streams != NULL) {
        struct stream *s = m->streams;
        m->streams = s->next;
        free(s);
    }
    uv_close((uv_handle_t *)&m->tick, tick_closed);
}
