/*
 * The upstream transport and the keep-alive pool; see upstream.h.
 */
#include "upstream.h"

#include "config.h"
#include "freelist.h"
#include "generation.h"
#include "stream.h"
#include "tls.h"
#include "tls_context.h"

#include <fulcrum/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fc_upstream_set {
    struct fc_upstream *head; /* every open upstream connection, idle or busy */
    uint32_t n;
    struct fc_freelist free;      /* struct fc_upstream */
    struct fc_freelist free_buf;  /* read buffers */
    struct fc_freelist free_bulk; /* read buffers for long bodies */
};

/* The buffer goes back to its free list. */
static void buf_put(struct fc_upstream_set *set, struct fc_upstream *u)
{
    if (u->buf == NULL)
        return;
    if (u->buf_cap == FC_UPSTREAM_BULK_SIZE)
        fc_freelist_put(&set->free_bulk, u->buf, FC_UPSTREAM_BULK_SIZE);
    else
        fc_freelist_put(&set->free_buf, u->buf, FC_UPSTREAM_BUF_SIZE);
    u->buf = NULL;
}

static const struct fc_upstream_events *events;

void fc_upstream_set_events(const struct fc_upstream_events *ev)
{
    events = ev;
}

int fc_upstream_worker_init(struct fc_worker *w)
{
    w->upstreams = calloc(1, sizeof(*w->upstreams));
    return w->upstreams != NULL ? 0 : FC_ENOMEM;
}

void fc_upstream_worker_free(struct fc_worker *w)
{
    if (w->upstreams == NULL)
        return;
    fc_freelist_clear(&w->upstreams->free);
    fc_freelist_clear(&w->upstreams->free_buf);
    fc_freelist_clear(&w->upstreams->free_bulk);
    free(w->upstreams);
    w->upstreams = NULL;
}

uint32_t fc_upstreams_count(const struct fc_worker *w)
{
    return w->upstreams->n;
}

/* ------------------------------------------------------------------------ */
/* Life of a connection                                                      */
/* ------------------------------------------------------------------------ */

static void on_close(uv_handle_t *h)
{
    struct fc_upstream *u = h->data;
    if (--u->handles > 0)
        return;
    struct fc_worker *w = u->w;
    struct fc_upstream_set *set = w->upstreams;
    if (u->all_prev)
        u->all_prev->all_next = u->all_next;
    if (u->all_next)
        u->all_next->all_prev = u->all_prev;
    if (set->head == u)
        set->head = u->all_next;
    set->n--;
    buf_put(set, u);
    fc_tls_io_free(u->tls);
    u->tls = NULL;
    struct fc_backend_shared *b = u->backend;
    fc_freelist_put(&set->free, u, sizeof(*u));
    fc_backend_shared_release(b); /* last: the backend may go with its last reference */
    w->on_connection_closed(w);
}

static void idle_unlink(struct fc_upstream *u)
{
    if (!u->idle)
        return;
    struct fc_idle_list *l = &u->backend->idle[u->w->index];
    if (u->idle_prev)
        u->idle_prev->idle_next = u->idle_next;
    else
        l->head = u->idle_next;
    if (u->idle_next)
        u->idle_next->idle_prev = u->idle_prev;
    u->idle_next = u->idle_prev = NULL;
    l->count--;
    u->idle = 0;
}

void fc_upstream_close(struct fc_upstream *u)
{
    if (u->closing)
        return;
    u->closing = 1;
    idle_unlink(u);
    u->txn = NULL;
    if (u->tls != NULL)
        fc_tls_io_shutdown(u->tls, 0);
    uv_close((uv_handle_t *)&u->tcp, on_close);
    uv_close((uv_handle_t *)&u->timer, on_close);
}

void fc_upstreams_close_idle(struct fc_worker *w)
{
    struct fc_upstream *u = w->upstreams->head;
    while (u != NULL) {
        struct fc_upstream *next = u->all_next;
        if (u->txn == NULL)
            fc_upstream_close(u);
        u = next;
    }
}

void fc_upstreams_close_retiring(struct fc_worker *w, const struct fc_generation *g)
{
    for (uint32_t p = 0; p < g->cfg->n_pools; p++)
        for (uint32_t b = 0; b < g->pools[p].n_backends; b++) {
            struct fc_backend_shared *s = g->pools[p].shared[b];
            if (!__atomic_load_n(&s->retiring, __ATOMIC_ACQUIRE))
                continue;
            while (s->idle[w->index].head != NULL)
                fc_upstream_close(s->idle[w->index].head);
        }
}

struct fc_upstream *fc_upstream_new(struct fc_worker *w, struct fc_backend_shared *b)
{
    struct fc_upstream_set *set = w->upstreams;
    struct fc_upstream *u = fc_freelist_get(&set->free, sizeof(*u));
    if (u == NULL)
        return NULL;
    memset(u, 0, sizeof(*u));
    u->w = w;
    u->backend = b;
    fc_backend_shared_acquire(b);
    uv_tcp_init(&w->loop, &u->tcp);
    uv_timer_init(&w->loop, &u->timer);
    u->tcp.data = u->timer.data = u->creq.data = u->wreq.data = u->sreq.data = u;
    u->handles = 2;
    u->all_next = set->head;
    if (u->all_next)
        u->all_next->all_prev = u;
    set->head = u;
    set->n++;
    return u;
}

int fc_upstream_attach(struct fc_upstream *u, struct fc_txn *t)
{
    if (u->buf == NULL) {
        u->buf = fc_freelist_get(&u->w->upstreams->free_buf, FC_UPSTREAM_BUF_SIZE);
        if (u->buf == NULL)
            return FC_ENOMEM;
        u->buf_cap = FC_UPSTREAM_BUF_SIZE;
    }
    u->txn = t;
    u->len = u->off = 0;
    u->got_bytes = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */
/* ------------------------------------------------------------------------ */

static void timer_cb(uv_timer_t *t)
{
    struct fc_upstream *u = t->data;
    if (u->txn == NULL) {
        fc_upstream_close(u); /* idle for idle_ms */
        return;
    }
    events->on_timeout(u);
}

void fc_upstream_timer_arm(struct fc_upstream *u, uint64_t ms)
{
    uv_timer_start(&u->timer, timer_cb, ms, 0);
}

void fc_upstream_timer_stop(struct fc_upstream *u)
{
    uv_timer_stop(&u->timer);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    /* Nothing waits for it: the connection closes when both ways have ended. */
}

void fc_upstream_shutdown(struct fc_upstream *u)
{
    if (u->shut || u->closing)
        return;
    u->shut = 1;
    if (u->tls != NULL)
        fc_tls_io_shutdown(u->tls, 1); /* close_notify, before the FIN */
    uv_shutdown(&u->sreq, (uv_stream_t *)&u->tcp, shutdown_cb);
}

static void tls_start(struct fc_upstream *u);

static void connect_cb(uv_connect_t *req, int status)
{
    struct fc_upstream *u = req->data;
    if (status == UV_ECANCELED || u->closing || u->txn == NULL)
        return;
    if (status == 0) {
        uv_tcp_nodelay(&u->tcp, 1);
        if (u->tls != NULL) {
            tls_start(u); /* on_connect when the handshake is done */
            return;
        }
        u->connected = 1;
    }
    events->on_connect(u, status);
}

static void tls_written(struct fc_tls_io *io, int status);
static void tls_resume(struct fc_tls_io *io);
static void tls_session(struct fc_tls_io *io, void *session);

/* The host part of "host:port", "[v6]:port" or "host", into out. */
static void host_of(const char *address, char *out, size_t cap)
{
    const char *start = address, *end;
    if (address[0] == '[') {
        start = address + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(address, ':');
    }
    size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
    snprintf(out, cap, "%.*s", (int)len, start);
}

int fc_upstream_connect(struct fc_upstream *u, const struct sockaddr *addr, const char *address,
                        const struct fc_tls_client *tls, uint32_t timeout_ms)
{
    if (tls != NULL) {
        u->tls = fc_tls_io_new(u->w->tls, fc_tls_client_ctx(tls), 0, (uv_stream_t *)&u->tcp, u,
                               tls_written, tls_resume);
        if (u->tls == NULL)
            return UV_ENOMEM;
        u->tls->on_session = tls_session;
        u->tls_serial = fc_tls_client_serial(tls);
        char host[256];
        const char *name = fc_tls_client_server_name(tls);
        if (name == NULL) {
            host_of(address, host, sizeof(host));
            name = host;
        }
        const struct fc_idle_list *l = &u->backend->idle[u->w->index];
        void *session = l->tls_serial == u->tls_serial ? l->tls_session : NULL;
        if (fc_tls_io_set_peer(u->tls, name, fc_tls_client_verifies(tls), session) != 0)
            return UV_ENOMEM;
    }
    int rc = uv_tcp_connect(&u->creq, &u->tcp, addr, connect_cb);
    if (rc == 0)
        fc_upstream_timer_arm(u, timeout_ms);
    return rc;
}

const char *fc_upstream_strerror(const struct fc_upstream *u, int err, char *buf, size_t cap)
{
    if (err == UV_EPROTO && u->tls != NULL && !u->tls->handshaken) {
        fc_tls_io_strerror(u->tls, buf, cap);
        return buf;
    }
    return uv_strerror(err);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct fc_upstream *u = h->data;
    if (u->tls != NULL) {
        fc_tls_read_buffer(u->w->tls, buf); /* ciphertext: the plaintext goes into u->buf */
        return;
    }
    if (u->idle || u->buf == NULL) {
        static __thread char sink[64]; /* contents unused: the connection is dropped */
        buf->base = sink;
        buf->len = sizeof(sink);
        return;
    }
    buf->base = u->buf + u->len;
    buf->len = u->buf_cap - u->len;
}

void fc_upstream_bulk(struct fc_upstream *u)
{
    if (u->buf == NULL || u->buf_cap == FC_UPSTREAM_BULK_SIZE || u->off != u->len)
        return;
    char *bulk = fc_freelist_get(&u->w->upstreams->free_bulk, FC_UPSTREAM_BULK_SIZE);
    if (bulk == NULL)
        return; /* the small one does */
    buf_put(u->w->upstreams, u);
    u->buf = bulk;
    u->buf_cap = FC_UPSTREAM_BULK_SIZE;
    u->len = u->off = 0;
}

static void tls_read(struct fc_upstream *u, ssize_t n, const uv_buf_t *buf);

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fc_upstream *u = s->data;
    if (u->tls != NULL) {
        tls_read(u, n, buf);
        return;
    }
    if (u->idle) {
        if (n != 0)
            fc_upstream_close(u); /* closed, or spoke out of turn, while idle */
        return;
    }
    if (u->txn == NULL || u->closing)
        return;
    if (n > 0) {
        u->len += (uint32_t)n;
        u->got_bytes = 1;
        u->last_active = uv_now(&u->w->loop);
        events->on_read(u);
        return;
    }
    if (n == 0)
        return;
    fc_upstream_read_stop(u);
    events->on_read_end(u, (int)n);
}

static void sock_read_start(struct fc_upstream *u)
{
    if (!u->sock_reading && uv_read_start((uv_stream_t *)&u->tcp, alloc_cb, read_cb) == 0)
        u->sock_reading = 1;
}

static void sock_read_stop(struct fc_upstream *u)
{
    if (u->sock_reading)
        uv_read_stop((uv_stream_t *)&u->tcp);
    u->sock_reading = 0;
}

void fc_upstream_read_start(struct fc_upstream *u)
{
    if (u->reading)
        return;
    if (u->tls != NULL && u->tls->handshaken && fc_tls_io_pending(u->tls)) {
        /* Input waits already: it comes from the loop, not from inside this call. */
        u->reading = 1;
        fc_tls_io_schedule(u->tls);
        return;
    }
    sock_read_start(u);
    u->reading = u->sock_reading;
}

void fc_upstream_read_stop(struct fc_upstream *u)
{
    if (!u->reading)
        return;
    u->reading = 0;
    /* The handshake reads on whatever the transaction wants. */
    if (u->tls == NULL || u->tls->handshaken)
        sock_read_stop(u);
}

static void write_cb(uv_write_t *req, int status)
{
    struct fc_upstream *u = req->data;
    u->writing = 0;
    if (u->txn == NULL || u->closing)
        return;
    events->on_written(u, status);
}

int fc_upstream_write(struct fc_upstream *u, uv_buf_t *bufs, unsigned n, int more)
{
    int rc = u->tls != NULL
                 ? fc_tls_io_write(u->tls, bufs, n)
                 : fc_stream_write((uv_stream_t *)&u->tcp, &u->wreq, bufs, n, write_cb, more);
    if (rc == 0)
        u->writing = 1;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The TLS variant                                                           */
/* ------------------------------------------------------------------------ */

/* The TCP connect is done: the ClientHello goes out, and the answer is read. */
static void tls_start(struct fc_upstream *u)
{
    sock_read_start(u);
    if (fc_tls_io_handshake(u->tls) < 0) {
        sock_read_stop(u);
        events->on_connect(u, UV_EPROTO);
    }
}

/* The backend's last session for this worker, for the next connection to resume. */
static void tls_session(struct fc_tls_io *io, void *session)
{
    struct fc_upstream *u = io->owner;
    struct fc_idle_list *l = &u->backend->idle[u->w->index];
    fc_tls_session_free(l->tls_session);
    l->tls_session = session;
    l->tls_serial = u->tls_serial;
}

/*
 * The handshake, then what the input decrypts to, into u->buf as the plain
 * transport reads into it; an idle connection that gets anything but TLS's
 * own messages (a session ticket) is dropped.
 */
static void tls_deliver(struct fc_upstream *u)
{
    struct fc_tls_io *io = u->tls;
    if (!io->handshaken) {
        int rc = fc_tls_io_handshake(io);
        if (rc == 0)
            return;
        if (rc < 0) {
            sock_read_stop(u);
            events->on_connect(u, UV_EPROTO);
            return;
        }
        u->connected = 1;
        if (!u->reading)
            sock_read_stop(u);
        events->on_connect(u, 0);
        if (u->closing || u->txn == NULL)
            return;
    }
    if (u->idle) {
        char sink[64];
        if (fc_tls_io_read(io, sink, sizeof(sink)) != FC_TLS_WANT)
            fc_upstream_close(u); /* closed, or spoke out of turn, while idle */
        return;
    }
    while (u->reading && !u->closing && u->txn != NULL && !u->idle) {
        size_t cap = u->buf_cap - u->len;
        if (cap == 0) {
            /* What the plain transport's read does with a full buffer. */
            fc_upstream_read_stop(u);
            events->on_read_end(u, UV_ENOBUFS);
            return;
        }
        int n = fc_tls_io_read(io, u->buf + u->len, cap);
        if (n > 0) {
            u->len += (uint32_t)n;
            u->got_bytes = 1;
            u->last_active = uv_now(&u->w->loop);
            events->on_read(u);
            continue;
        }
        if (n == FC_TLS_WANT) {
            sock_read_start(u); /* the rest comes from the socket */
            return;
        }
        fc_upstream_read_stop(u);
        events->on_read_end(u, n == FC_TLS_CLOSED ? UV_EOF : UV_EPROTO);
        return;
    }
}

static void tls_read(struct fc_upstream *u, ssize_t n, const uv_buf_t *buf)
{
    struct fc_tls_io *io = u->tls;
    if (n == 0 || u->closing)
        return;
    if (n < 0) {
        if (u->idle) {
            fc_upstream_close(u);
            return;
        }
        if (u->txn == NULL)
            return;
        sock_read_stop(u);
        if (!io->handshaken) {
            io->failure = FC_TLS_FAIL_CLOSED;
            events->on_connect(u, (int)n);
            return;
        }
        u->reading = 0;
        events->on_read_end(u, (int)n);
        return;
    }
    fc_tls_io_input(io, buf->base, (size_t)n);
    tls_deliver(u);
    if (u->closing || io->in_len == 0)
        return;
    if (u->idle || u->txn == NULL) {
        fc_upstream_close(u); /* more than the response: not to be reused */
        return;
    }
    /* The reader stopped with input left: keep it until reading starts again. */
    sock_read_stop(u);
    if (fc_tls_io_keep(io) != 0)
        events->on_read_end(u, UV_ENOMEM);
}

static void tls_resume(struct fc_tls_io *io)
{
    struct fc_upstream *u = io->owner;
    if (u->reading && !u->closing && u->txn != NULL)
        tls_deliver(u);
}

static void tls_written(struct fc_tls_io *io, int status)
{
    struct fc_upstream *u = io->owner;
    u->writing = 0;
    if (u->txn == NULL || u->closing)
        return;
    events->on_written(u, status);
}

/* ------------------------------------------------------------------------ */
/* The keep-alive pool                                                       */
/* ------------------------------------------------------------------------ */

void fc_upstream_park(struct fc_upstream *u)
{
    struct fc_worker *w = u->w;
    /* Stopping, or a backend out of rotation: no new request would take it. */
    if (w->draining || u->shut || __atomic_load_n(&u->backend->retiring, __ATOMIC_ACQUIRE) ||
        (u->tls != NULL && fc_tls_io_pending(u->tls))) {
        fc_upstream_close(u);
        return;
    }
    u->txn = NULL;
    buf_put(w->upstreams, u);
    u->len = u->off = 0;
    struct fc_idle_list *l = &u->backend->idle[w->index];
    u->idle_prev = NULL;
    u->idle_next = l->head;
    if (l->head)
        l->head->idle_prev = u;
    l->head = u;
    l->count++;
    u->idle = 1;
    /* Reading goes on: an idle connection that speaks or closes is dropped at once. */
    fc_upstream_read_start(u);
    fc_upstream_timer_arm(u, w->gen->cfg->timeouts.idle_ms);
}

struct fc_upstream *fc_upstream_take_idle(struct fc_worker *w, struct fc_backend_shared *b,
                                          const struct fc_tls_client *tls)
{
    uint64_t serial = tls != NULL ? fc_tls_client_serial(tls) : 0;
    struct fc_upstream *u;
    while ((u = b->idle[w->index].head) != NULL && u->tls_serial != serial)
        fc_upstream_close(u); /* made with the settings of an older configuration */
    if (u == NULL)
        return NULL;
    idle_unlink(u);
    u->reused = 1;
    return u; /* its idle timer is replaced when the request goes out */
}
