/*
 * The proxy's transaction state machine.
 *
 * A client connection parses one request at a time with llhttp. The request
 * head stays in the connection's input buffer, contiguous, until it is
 * complete, so the parser's callbacks only record spans of it. When the head
 * is complete the parser pauses; the proxy picks a backend, takes an idle
 * upstream connection from the worker's pool or connects a new one, writes
 * the rewritten head and then relays the body *as received* — the raw bytes
 * the parser consumed, framing included — so Content-Length and chunked
 * bodies pass through with one copy at most (none: they are written from the
 * buffer they were read into).
 *
 * The response comes back the same way: its head is parsed in the upstream
 * connection's buffer, rewritten into the transaction's output buffer, and its
 * body relayed raw. The one exception is a chunked response to an HTTP/1.0
 * client, which cannot read chunked framing: its body is decoded in place and
 * the connection closed at its end.
 *
 * Back-pressure: each direction has at most one write in flight. While a write
 * to one side is pending, the proxy does not read from the other side, so a
 * connection holds at most one input buffer per side whatever the body size.
 * Writes are first tried synchronously (uv_try_write); only what the socket
 * did not take waits for a callback.
 *
 * Memory: the per-request memory (parsed heads, input and output buffers)
 * comes from per-worker free lists when the first byte of a request arrives
 * and goes back when the connection turns idle, so an idle keep-alive
 * connection costs only its struct fc_client, and the steady state allocates
 * nothing.
 */
#include "proxy.h"

#include "errors.h"
#include "http_rewrite.h"
#include "log.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Upstream read buffer: also the largest response head accepted. */
#define UPBUF_SIZE (16 * 1024)
/* Output buffer room beyond the input buffer: forwarding headers, Connection, status line. */
#define OUT_EXTRA 2048

enum phase {
    PH_IDLE,       /* between requests */
    PH_HEAD,       /* receiving a request head */
    PH_RATELIMIT,  /* head complete: waiting for the rate limiter's verdict */
    PH_CONNECTING, /* head complete: picking a backend, connecting */
    PH_PROXY,      /* upstream connected: relaying both ways */
    PH_REPLY,      /* writing a response of the proxy's own */
    PH_LINGER,     /* response sent, our side shut down: discarding input before closing */
};

/* How long a closing connection's unread input is drained; see client_linger(). */
#define LINGER_MS 2000

struct fc_txn_mem {
    struct fc_request req;
    struct fc_request resp;
    llhttp_t parser;         /* the client's request parser */
    uv_write_t wreq;         /* the write to the client */
    uint8_t tried_small[32]; /* fc_client.tried for pools of up to 32 backends */
    char log_req[256];       /* "GET /path HTTP/1.1" for the access log */
    /* followed by the input buffer (in_cap bytes) and the output buffer */
};

struct fc_upstream {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    struct fc_worker *w;
    struct fc_backend_shared *backend; /* one reference held */
    struct fc_client *c;               /* the transaction it serves; NULL when idle */
    struct fc_upstream *idle_next, *idle_prev;
    struct fc_upstream *all_next, *all_prev; /* every upstream of the worker */
    llhttp_t parser;
    char *buf; /* UPBUF_SIZE, from the worker's free list while busy */
    uint32_t len, off, dechunk_w;
    uint64_t last_active; /* uv_now() of the last byte read or written: see upstream_timer_cb() */
    int handles;
    unsigned connected : 1, reused : 1, writing : 1, reading : 1, got_bytes : 1, closing : 1,
        idle : 1, head_done : 1, msg_done : 1, keep_alive : 1;
};

/* The handle a rate limiter gets for a verdict it gives later: the client it is for. */
struct fc_ratelimit_pending {
    struct fc_client *c;
};

/*
 * A client connection. What only a request in progress needs (parser, write
 * request, heads, buffers) lives in struct fc_txn_mem, taken when a request's
 * first byte arrives and given back when the connection turns idle: an idle
 * keep-alive connection costs this struct alone.
 */
struct fc_client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct fc_worker *w;
    struct fc_listener *listener;
    struct fc_client *prev, *next;
    int handles;
    llhttp_t *parser; /* &mem->parser while mem is held */
    char ip[INET6_ADDRSTRLEN];
    uint32_t ip_len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    socklen_t peer_len;

    struct fc_txn_mem *mem;
    char *in, *out;
    uint32_t in_cap, out_cap;
    uint32_t in_len, in_off;
    uint32_t out_len;

    enum phase phase;
    unsigned closing : 1, reading : 1, writing : 1, eof : 1, in_process : 1, again : 1,
        head_done : 1, msg_done : 1, req_done : 1, req_has_body : 1, head_pending : 1, head_req : 1,
        client_10 : 1, keep_alive : 1, resp_started : 1, resp_done : 1, dechunk : 1,
        close_after_reply : 1, stale_retried : 1, head_writing : 1, rl_waiting : 1,
        close_deferred : 1;
    struct fc_ratelimit_pending rl_pending;
    uint64_t retry_after_s; /* for a 429 */
    uint64_t deadline;      /* uv_now() by which the client timer acts; 0: none */
    int err_status;         /* set by a parser callback that refuses the request */

    /* The transaction. */
    struct fc_generation *gen;
    struct fc_gen_pool *pool;
    struct fc_upstream *up;
    int32_t backend; /* index in pool, -1 none */
    uint32_t attempts;
    uint8_t *tried;
    uint64_t body_seen;
    uint64_t t_start;
    uint64_t bytes_out;
    int status;
};

static llhttp_settings_t req_settings;
static llhttp_settings_t resp_settings;

static void client_process(struct fc_client *c);
static void client_close(struct fc_client *c);
static void client_write(struct fc_client *c, uv_buf_t *bufs, unsigned n);
static void client_read_start(struct fc_client *c);
static void client_timer_stop(struct fc_client *c);
static void client_read_stop(struct fc_client *c);
static void reply(struct fc_client *c, int status, int close);
static void txn_connect(struct fc_client *c);
static void txn_end(struct fc_client *c);
static void txn_abort(struct fc_client *c, const char *why);
static void upstream_close(struct fc_upstream *u);
static void access_log(struct fc_client *c);
static void upstream_process(struct fc_client *c);
static void upstream_read_start(struct fc_upstream *u);
static void forward_request_body(struct fc_client *c);
static void send_request_head(struct fc_client *c);

static const struct fc_config *wcfg(const struct fc_worker *w)
{
    return w->gen->cfg;
}

/* ------------------------------------------------------------------------ */
/* Per-request memory                                                        */
/* ------------------------------------------------------------------------ */

static int mem_acquire(struct fc_client *c)
{
    uint32_t in_cap = wcfg(c->w)->limits.max_header_bytes;
    uint32_t out_cap = (in_cap > UPBUF_SIZE ? in_cap : UPBUF_SIZE) + OUT_EXTRA;
    size_t size = sizeof(struct fc_txn_mem) + in_cap + out_cap;
    struct fc_worker *w = c->w;
    if (w->txn_size != size) {
        /* The limit changed with a new generation: drop blocks of the old size. */
        while (w->free_txn != NULL) {
            struct fc_free_block *b = w->free_txn;
            w->free_txn = b->next;
            free(b);
        }
        w->n_free_txn = 0;
        w->txn_size = size;
    }
    struct fc_txn_mem *m = fc_worker_alloc(w, &w->free_txn, &w->n_free_txn, size);
    if (m == NULL)
        return FC_ENOMEM;
    c->mem = m;
    llhttp_init(&m->parser, HTTP_REQUEST, &req_settings);
    m->parser.data = c;
    m->wreq.data = c;
    c->parser = &m->parser;
    c->in = (char *)(m + 1);
    c->out = c->in + in_cap;
    c->in_cap = in_cap;
    c->out_cap = out_cap;
    c->in_len = c->in_off = 0;
    return 0;
}

static void mem_release(struct fc_client *c)
{
    if (c->mem == NULL)
        return;
    size_t size = sizeof(struct fc_txn_mem) + c->in_cap + c->out_cap;
    if (size == c->w->txn_size)
        fc_worker_free(c->w, &c->w->free_txn, &c->w->n_free_txn, c->mem);
    else
        free(c->mem);
    c->mem = NULL;
    c->parser = NULL;
    c->in = c->out = NULL;
    c->in_len = c->in_off = 0;
}

/* ------------------------------------------------------------------------ */
/* Request parser callbacks                                                  */
/* ------------------------------------------------------------------------ */

static int req_on_message_begin(llhttp_t *p)
{
    struct fc_client *c = p->data;
    fc_head_reset(&c->mem->req);
    c->head_done = c->msg_done = 0;
    return 0;
}

static int req_on_method(llhttp_t *p, const char *at, size_t len)
{
    struct fc_client *c = p->data;
    fc_head_on_span(&c->mem->req.method, at, len);
    return 0;
}

static int req_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct fc_client *c = p->data;
    fc_head_on_span(&c->mem->req.target, at, len);
    return 0;
}

/*
 * Header callbacks also fire for the trailer fields of a chunked body, which
 * are relayed raw with the body and must not be recorded: the head's buffer
 * has moved on by then.
 */
static int req_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct fc_client *c = p->data;
    if (c->head_done)
        return 0;
    if (fc_head_on_field(&c->mem->req, at, len) != 0) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int req_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct fc_client *c = p->data;
    if (c->head_done)
        return 0;
    return fc_head_on_value(&c->mem->req, at, len);
}

static int req_on_header_value_complete(llhttp_t *p)
{
    struct fc_client *c = p->data;
    if (c->head_done)
        return 0;
    return fc_head_on_value_complete(&c->mem->req) == 0 ? 0 : -1;
}

/*
 * A request with a body pauses here, so that the body is relayed only once an
 * upstream connection is ready. One without a body runs on to
 * on_message_complete, which pauses: head and end arrive together.
 */
static int req_on_headers_complete(llhttp_t *p)
{
    struct fc_client *c = p->data;
    c->head_done = 1;
    if ((p->flags & F_CHUNKED) || p->content_length > 0) {
        c->req_has_body = 1;
        return HPE_PAUSED;
    }
    c->req_has_body = 0;
    return 0;
}

static int req_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct fc_client *c = p->data;
    c->body_seen += len;
    uint64_t max = wcfg(c->w)->limits.max_body_bytes;
    if (max != 0 && c->body_seen > max) {
        c->err_status = 413;
        return HPE_USER;
    }
    return 0;
}

static int req_on_message_complete(llhttp_t *p)
{
    struct fc_client *c = p->data;
    c->msg_done = 1;
    return HPE_PAUSED;
}

/* ------------------------------------------------------------------------ */
/* Response parser callbacks                                                 */
/* ------------------------------------------------------------------------ */

static int resp_on_message_begin(llhttp_t *p)
{
    struct fc_upstream *u = p->data;
    fc_head_reset(&u->c->mem->resp);
    u->head_done = u->msg_done = 0;
    return 0;
}

static int resp_on_status(llhttp_t *p, const char *at, size_t len)
{
    struct fc_upstream *u = p->data;
    fc_head_on_span(&u->c->mem->resp.reason, at, len);
    return 0;
}

static int resp_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct fc_upstream *u = p->data;
    if (u->head_done)
        return 0; /* a trailer field */
    return fc_head_on_field(&u->c->mem->resp, at, len);
}

static int resp_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct fc_upstream *u = p->data;
    if (u->head_done)
        return 0;
    return fc_head_on_value(&u->c->mem->resp, at, len);
}

static int resp_on_header_value_complete(llhttp_t *p)
{
    struct fc_upstream *u = p->data;
    if (u->head_done)
        return 0;
    return fc_head_on_value_complete(&u->c->mem->resp) == 0 ? 0 : -1;
}

/*
 * The same rule as for requests: a response with a body pauses here so that
 * its head is written before its body; one without runs on to its end. A
 * response to HEAD and an interim (1xx) response have no body whatever their
 * headers say; llhttp knows 204 and 304 itself.
 */
static int resp_on_headers_complete(llhttp_t *p)
{
    struct fc_upstream *u = p->data;
    u->head_done = 1;
    if (u->c->head_req || p->status_code < 200)
        return 1; /* no body */
    if (p->status_code == 204 || p->status_code == 304)
        return 0;
    if (!(p->flags & F_CHUNKED) && (p->flags & F_CONTENT_LENGTH) && p->content_length == 0)
        return 0; /* an empty body: the message ends with its head */
    return HPE_PAUSED;
}

/* Only for HTTP/1.0 clients of a chunked response: decode the body in place. */
static int resp_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct fc_upstream *u = p->data;
    if (u->c->dechunk) {
        /* Decoded bytes never overtake the raw ones, so moving them down is safe. */
        memmove(u->buf + u->dechunk_w, at, len);
        u->dechunk_w += (uint32_t)len;
    }
    return 0;
}

static int resp_on_message_complete(llhttp_t *p)
{
    struct fc_upstream *u = p->data;
    u->msg_done = 1;
    return HPE_PAUSED;
}

void fc_proxy_init(void)
{
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = req_on_message_begin;
    req_settings.on_method = req_on_method;
    req_settings.on_url = req_on_url;
    req_settings.on_header_field = req_on_header_field;
    req_settings.on_header_value = req_on_header_value;
    req_settings.on_header_value_complete = req_on_header_value_complete;
    req_settings.on_headers_complete = req_on_headers_complete;
    req_settings.on_body = req_on_body;
    req_settings.on_message_complete = req_on_message_complete;

    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = resp_on_message_begin;
    resp_settings.on_status = resp_on_status;
    resp_settings.on_header_field = resp_on_header_field;
    resp_settings.on_header_value = resp_on_header_value;
    resp_settings.on_header_value_complete = resp_on_header_value_complete;
    resp_settings.on_headers_complete = resp_on_headers_complete;
    resp_settings.on_body = resp_on_body;
    resp_settings.on_message_complete = resp_on_message_complete;
}

/*
 * Resumes a parser that paused at the end of a message. A request that asked
 * for an upgrade pauses with HPE_PAUSED_UPGRADE, which llhttp_resume() does not
 * clear; the proxy strips Upgrade and refuses 101, so the connection simply
 * goes on in HTTP.
 */
static void parser_resume(llhttp_t *p)
{
    enum llhttp_errno e = llhttp_get_errno(p);
    if (e == HPE_PAUSED)
        llhttp_resume(p);
    else if (e == HPE_PAUSED_UPGRADE)
        llhttp_resume_after_upgrade(p);
}

static int paused(enum llhttp_errno e)
{
    return e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE;
}

/* ------------------------------------------------------------------------ */
/* Timers                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * The client's timer is lazy, like the backend's: arming it only moves a
 * deadline, and the timer, when it fires, sleeps again until the deadline or
 * does nothing if there is none. A keep-alive request thus costs no timer
 * heap operation in the common case, where the deadline moves every time.
 */
static void client_timer_cb(uv_timer_t *t)
{
    struct fc_client *c = t->data;
    if (c->deadline == 0)
        return; /* disarmed since */
    uint64_t now = uv_now(&c->w->loop);
    if (now < c->deadline) {
        uv_timer_start(&c->timer, client_timer_cb, c->deadline - now, 0);
        return;
    }
    c->deadline = 0;
    switch (c->phase) {
    case PH_IDLE:
        client_close(c); /* keep-alive timeout: nothing to answer */
        break;
    case PH_HEAD:
        fc_log_debug("client %s: request head not received in time", c->ip);
        reply(c, 408, 1);
        break;
    case PH_PROXY:
    case PH_CONNECTING:
    case PH_RATELIMIT: /* not armed while waiting for a verdict */
        if (!c->resp_started && !c->req_done)
            reply(c, 408, 1);
        else
            txn_abort(c, "client stalled");
        break;
    case PH_REPLY:
    case PH_LINGER:
        client_close(c);
        break;
    }
}

static void client_timer_arm(struct fc_client *c, uint32_t ms)
{
    uint64_t deadline = uv_now(&c->w->loop) + ms;
    /* The timer must fire by the deadline: restart it only when it would be late. */
    if (!uv_is_active((uv_handle_t *)&c->timer) || deadline < c->deadline || c->deadline == 0)
        uv_timer_start(&c->timer, client_timer_cb, ms, 0);
    c->deadline = deadline;
}

static void client_timer_stop(struct fc_client *c)
{
    c->deadline = 0; /* the timer may still fire once, and then does nothing */
}

/* ------------------------------------------------------------------------ */
/* Upstream connections                                                      */
/* ------------------------------------------------------------------------ */

static void backend_inflight_add(struct fc_client *c, int delta)
{
    struct fc_backend_shared *b = c->pool->shared[c->backend];
    if (delta > 0)
        __atomic_add_fetch(&b->state.inflight, 1, __ATOMIC_RELAXED);
    else
        __atomic_sub_fetch(&b->state.inflight, 1, __ATOMIC_RELAXED);
}

static void upstream_on_close(uv_handle_t *h)
{
    struct fc_upstream *u = h->data;
    if (--u->handles > 0)
        return;
    struct fc_worker *w = u->w;
    if (u->all_prev)
        u->all_prev->all_next = u->all_next;
    if (u->all_next)
        u->all_next->all_prev = u->all_prev;
    if (w->n_upstreams > 0)
        w->n_upstreams--;
    if (w->upstreams == u)
        w->upstreams = u->all_next;
    if (u->buf)
        fc_worker_free(w, &w->free_upbuf, &w->n_free_upbuf, u->buf);
    struct fc_backend_shared *b = u->backend;
    fc_worker_free(w, &w->free_upstreams, &w->n_free_upstreams, u);
    fc_backend_shared_release(b); /* last: the backend may go with its last reference */
    fc_worker_maybe_done(w);
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

static void upstream_close(struct fc_upstream *u)
{
    if (u->closing)
        return;
    u->closing = 1;
    idle_unlink(u);
    u->c = NULL;
    uv_close((uv_handle_t *)&u->tcp, upstream_on_close);
    uv_close((uv_handle_t *)&u->timer, upstream_on_close);
}

static struct fc_upstream *upstream_new(struct fc_worker *w, struct fc_backend_shared *b)
{
    struct fc_upstream *u =
        fc_worker_alloc(w, &w->free_upstreams, &w->n_free_upstreams, sizeof(*u));
    if (u == NULL)
        return NULL;
    memset(u, 0, sizeof(*u));
    u->w = w;
    u->backend = b;
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    uv_tcp_init(&w->loop, &u->tcp);
    uv_timer_init(&w->loop, &u->timer);
    u->tcp.data = u->timer.data = u->creq.data = u->wreq.data = u;
    u->handles = 2;
    u->all_next = w->upstreams;
    if (u->all_next)
        u->all_next->all_prev = u;
    w->upstreams = u;
    w->n_upstreams++;
    return u;
}

static void upstream_idle_timer_cb(uv_timer_t *t)
{
    upstream_close(t->data);
}

static void upstream_park(struct fc_upstream *u)
{
    struct fc_worker *w = u->w;
    if (w->draining) {
        upstream_close(u);
        return;
    }
    u->c = NULL;
    if (u->buf) {
        fc_worker_free(w, &w->free_upbuf, &w->n_free_upbuf, u->buf);
        u->buf = NULL;
    }
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
    upstream_read_start(u);
    uv_timer_start(&u->timer, upstream_idle_timer_cb, wcfg(w)->timeouts.idle_ms, 0);
}

static struct fc_upstream *upstream_take_idle(struct fc_worker *w, struct fc_backend_shared *b)
{
    struct fc_upstream *u = b->idle[w->index].head;
    if (u == NULL)
        return NULL;
    idle_unlink(u);
    return u; /* its idle timer is replaced when the request goes out */
}

static int upstream_attach(struct fc_client *c, struct fc_upstream *u)
{
    if (u->buf == NULL) {
        u->buf = fc_worker_alloc(c->w, &c->w->free_upbuf, &c->w->n_free_upbuf, UPBUF_SIZE);
        if (u->buf == NULL)
            return FC_ENOMEM;
    }
    u->c = c;
    u->len = u->off = 0;
    u->got_bytes = u->head_done = u->msg_done = u->keep_alive = 0;
    llhttp_init(&u->parser, HTTP_RESPONSE, &resp_settings);
    u->parser.data = u;
    c->up = u;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Writes what it can at once and queues the rest. Returns 1 when everything
 * went out synchronously (the caller goes on), 0 when a write is pending (the
 * callback goes on), or a negative error.
 */
static int write_some(uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    int done = uv_try_write(s, bufs, n);
    if (done == UV_EAGAIN || done == UV_ENOSYS)
        done = 0;
    if (done < 0)
        return done;
    if ((size_t)done == total)
        return 1;
    /* Skip what was written. */
    size_t skip = (size_t)done;
    unsigned first = 0;
    while (skip >= bufs[first].len) {
        skip -= bufs[first].len;
        first++;
    }
    bufs[first].base += skip;
    bufs[first].len -= skip;
    int rc = uv_write(req, s, bufs + first, n - first, cb);
    return rc < 0 ? rc : 0;
}

static void on_client_written(struct fc_client *c);

static void client_write_cb(uv_write_t *req, int status)
{
    struct fc_client *c = req->data;
    c->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        fc_log_debug("client %s: write: %s", c->ip, uv_strerror(status));
        txn_abort(c, NULL);
        return;
    }
    on_client_written(c);
}

static void client_write(struct fc_client *c, uv_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        c->bytes_out += bufs[i].len;
    int rc = write_some((uv_stream_t *)&c->tcp, &c->mem->wreq, bufs, n, client_write_cb);
    if (rc < 0) {
        fc_log_debug("client %s: write: %s", c->ip, uv_strerror(rc));
        txn_abort(c, NULL);
        return;
    }
    if (rc == 0) {
        c->writing = 1;
        /* Back-pressure: read no more of the response until the client took this. */
        if (c->up != NULL && c->up->reading) {
            uv_read_stop((uv_stream_t *)&c->up->tcp);
            c->up->reading = 0;
        }
        /* A client that does not read its response is a stalled client. */
        client_timer_arm(c, wcfg(c->w)->timeouts.idle_ms);
        return;
    }
    on_client_written(c);
}

static void on_upstream_written(struct fc_client *c);

static void upstream_write_cb(uv_write_t *req, int status)
{
    struct fc_upstream *u = req->data;
    u->writing = 0;
    struct fc_client *c = u->c;
    if (c == NULL || u->closing)
        return;
    if (status < 0) {
        fc_log_debug("backend %s: write: %s", c->pool->views[c->backend].address,
                     uv_strerror(status));
        /* Whatever the backend managed to answer is read on; if nothing, the read fails. */
        c->head_writing = 0;
        if (u->off < u->len)
            upstream_process(c);
        else if (!c->writing)
            upstream_read_start(u);
        return;
    }
    on_upstream_written(c);
}

static void upstream_write(struct fc_client *c, uv_buf_t *bufs, unsigned n)
{
    struct fc_upstream *u = c->up;
    int rc = write_some((uv_stream_t *)&u->tcp, &u->wreq, bufs, n, upstream_write_cb);
    if (rc < 0) {
        /* The read side reports the failure (EOF or reset) with the right status. */
        fc_log_debug("backend %s: write: %s", c->pool->views[c->backend].address, uv_strerror(rc));
        c->head_writing = 0;
        return;
    }
    if (rc == 0) {
        u->writing = 1;
        return;
    }
    on_upstream_written(c);
}

/* ------------------------------------------------------------------------ */
/* The proxy's own responses                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Answers the current request with `status`. The connection stays open only
 * when the request was read to its end and nothing forces a close.
 */
static void reply(struct fc_client *c, int status, int close)
{
    if (c->closing)
        return;
    if (c->up != NULL) {
        upstream_close(c->up);
        c->up = NULL;
        backend_inflight_add(c, -1);
    }
    if (c->resp_started || c->writing) {
        /* Part of a response went out, or is going out: nothing valid can follow. */
        client_close(c);
        return;
    }
    if (c->mem == NULL && mem_acquire(c) != 0) {
        client_close(c);
        return;
    }
    if (!c->req_done || !c->keep_alive || c->w->draining)
        close = 1;
    c->close_after_reply = close;
    c->status = status;
    c->phase = PH_REPLY;
    c->resp_started = 1;
    client_read_stop(c);
    int n =
        fc_error_response(status, close, status == 429 ? c->retry_after_s : 0, c->out, c->out_cap);
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)n);
    client_write(c, &buf, 1);
}

/* ------------------------------------------------------------------------ */
/* Client connections                                                        */
/* ------------------------------------------------------------------------ */

static void client_on_close(uv_handle_t *h)
{
    struct fc_client *c = h->data;
    if (--c->handles > 0)
        return;
    struct fc_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_clients--;
    mem_release(c);
    struct fc_listener *l = c->listener;
    if (--l->conns == 0 && l->closed)
        free(l); /* its handle closed earlier; the last connection frees it */
    fc_worker_free(w, &w->free_clients, &w->n_free_clients, c);
    fc_worker_maybe_done(w);
}

/* Ends the transaction's hold on its generation and backend, if it has one. */
static void txn_release(struct fc_client *c)
{
    if (c->up != NULL) {
        upstream_close(c->up);
        c->up = NULL;
        backend_inflight_add(c, -1);
    }
    if (c->gen != NULL) {
        struct fc_generation *g = c->gen;
        c->gen = NULL;
        if (--g->workers[c->w->index].requests == 0 && g != c->w->gen)
            fc_worker_retire(c->w, g);
    }
    if (c->mem == NULL || c->tried != c->mem->tried_small)
        free(c->tried);
    c->tried = NULL;
}

static void client_close(struct fc_client *c)
{
    if (c->closing)
        return;
    if (c->rl_waiting) {
        /* The rate limiter holds a handle to this connection: close once it answers. */
        c->close_deferred = 1;
        return;
    }
    c->closing = 1;
    txn_release(c);
    /* A pending write's request lives in mem: libuv cancels it, with its
     * callback, before the close callback, where mem then goes. */
    if (!c->writing)
        mem_release(c);
    uv_close((uv_handle_t *)&c->tcp, client_on_close);
    uv_close((uv_handle_t *)&c->timer, client_on_close);
}

static void linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static __thread char sink[4096]; /* read only to be thrown away */
    buf->base = sink;
    buf->len = sizeof(sink);
}

static void linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0)
        client_close(s->data); /* the client closed too: done */
}

static void linger_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct fc_client *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, linger_alloc, linger_read) != 0)
        client_close(c);
}

/*
 * Closes a connection after a complete response. Closing a socket that still
 * has unread input makes the kernel answer with a reset, which can destroy the
 * end of the response before the client has read it (a pipelined request
 * behind it, the rest of a refused upload). So, like nginx's lingering close:
 * shut our side down (the client sees the end of the response), then read and
 * discard what it still sends, for LINGER_MS at most.
 */
static void client_linger(struct fc_client *c)
{
    if (c->closing || c->phase == PH_LINGER)
        return;
    txn_release(c);
    mem_release(c);
    client_read_stop(c);
    if (c->eof) {
        client_close(c); /* nothing more will arrive */
        return;
    }
    c->phase = PH_LINGER;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, linger_shutdown_cb) != 0) {
        client_close(c);
        return;
    }
    client_timer_arm(c, LINGER_MS);
}

/* Ends the transaction and the connection after an error nothing can be answered to. */
static void txn_abort(struct fc_client *c, const char *why)
{
    if (why != NULL && c->pool != NULL && c->backend >= 0)
        fc_log_warn("client %s: backend %s: %s", c->ip, c->pool->views[c->backend].address, why);
    client_close(c);
}

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct fc_client *c = h->data;
    if (c->mem == NULL && mem_acquire(c) != 0) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS */
        return;
    }
    buf->base = c->in + c->in_len;
    buf->len = c->in_cap - c->in_len;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fc_client *c = s->data;
    if (n > 0) {
        c->in_len += (uint32_t)n;
        client_process(c);
        return;
    }
    if (n == 0)
        return;
    client_read_stop(c);
    if (n == UV_ENOBUFS) {
        if (c->mem == NULL)
            client_close(c); /* out of memory for its request */
        /* else the buffer is full (pipelined requests, or a body waiting for its
         * backend): reading resumes once it has been drained */
        return;
    }
    c->eof = 1;
    switch (c->phase) {
    case PH_IDLE:
    case PH_HEAD:
        client_close(c); /* gone between requests or in the middle of a head */
        break;
    case PH_RATELIMIT: /* the close waits for the verdict: see client_close() */
    case PH_CONNECTING:
    case PH_PROXY:
        if (!c->req_done || n != UV_EOF)
            txn_abort(c, NULL); /* the request will never be complete */
        else
            c->keep_alive = 0; /* half-closed: answer, then close */
        break;
    case PH_REPLY:
        break;
    case PH_LINGER:
        client_close(c); /* not reached: lingering reads with linger_read() */
        break;
    }
}

static void client_read_start(struct fc_client *c)
{
    if (c->reading || c->eof || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read) == 0)
        c->reading = 1;
}

static void client_read_stop(struct fc_client *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

static void reject_closed(uv_handle_t *h)
{
    struct fc_worker *w = h->data;
    w->reject_busy = 0;
}

void fc_proxy_on_connection(uv_stream_t *server, int status)
{
    struct fc_listener *l = server->data;
    struct fc_worker *w = l->worker;
    if (status < 0) {
        fc_log_warn("listener %s: accept: %s", l->address, uv_strerror(status));
        return;
    }
    struct fc_client *c = fc_worker_alloc(w, &w->free_clients, &w->n_free_clients, sizeof(*c));
    if (c == NULL) {
        /*
         * Out of memory: accept into the worker's spare handle and close it at
         * once, so the client is told instead of left hanging and the listener
         * keeps being polled (libuv stops watching it until we accept).
         */
        if (!w->reject_busy) {
            uv_tcp_init(&w->loop, &w->reject);
            w->reject.data = w;
            w->reject_busy = 1;
            uv_accept(server, (uv_stream_t *)&w->reject);
            uv_close((uv_handle_t *)&w->reject, reject_closed);
        }
        fc_log_error("listener %s: out of memory for a new connection", l->address);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->w = w;
    c->listener = l;
    c->backend = -1;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->rl_pending.c = c;
    c->handles = 2;
    l->conns++;
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->n_clients++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    int peer_len = sizeof(c->peer);
    if (uv_tcp_getpeername(&c->tcp, &c->peer.sa, &peer_len) != 0) {
        client_close(c); /* reset before we could look at it: nothing to serve */
        return;
    }
    c->peer_len = (socklen_t)peer_len;
    if (c->peer.sa.sa_family == AF_INET6)
        uv_ip6_name(&c->peer.in6, c->ip, sizeof(c->ip));
    else
        uv_ip4_name(&c->peer.in, c->ip, sizeof(c->ip));
    c->ip_len = (uint32_t)strlen(c->ip);
    c->phase = PH_IDLE;
    c->keep_alive = 1;
    client_timer_arm(c, wcfg(w)->timeouts.client_header_ms);
    client_read_start(c);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

static int parse_error_status(struct fc_client *c, enum llhttp_errno e)
{
    if (c->err_status)
        return c->err_status;
    (void)e;
    return 400;
}

static void txn_begin(struct fc_client *c);

static void parse_head(struct fc_client *c)
{
    if (c->in_off == c->in_len)
        return;
    if (c->phase == PH_IDLE) {
        c->phase = PH_HEAD;
        c->t_start = uv_hrtime();
        c->mem->log_req[0] = '\0';
        client_timer_arm(c, wcfg(c->w)->timeouts.client_header_ms);
    }
    const char *start = c->in + c->in_off;
    enum llhttp_errno e = llhttp_execute(c->parser, start, c->in_len - c->in_off);
    if (e == HPE_OK) {
        c->in_off = c->in_len;
        if (c->in_len == c->in_cap) {
            c->req_done = 0;
            reply(c, 431, 1);
        }
        return;
    }
    if (paused(e) && c->head_done) {
        c->in_off = (uint32_t)(llhttp_get_error_pos(c->parser) - c->in);
        c->req_done = c->msg_done;
        txn_begin(c);
        return;
    }
    fc_log_debug("client %s: bad request: %s", c->ip, llhttp_get_error_reason(c->parser));
    c->req_done = 0;
    reply(c, parse_error_status(c, e), 1);
}

static void ratelimit_verdict(struct fc_client *c, int verdict, uint64_t retry_after_ms)
{
    if (verdict != FC_RATELIMIT_DENY) {
        c->phase = PH_CONNECTING;
        txn_connect(c);
        return;
    }
    /* Whole seconds, rounded up: a client that waits that long finds a token. */
    c->retry_after_s = (retry_after_ms + 999) / 1000;
    if (c->retry_after_s == 0)
        c->retry_after_s = 1;
    reply(c, 429, 0);
}

/*
 * Asks the pool's rate limiter about the request, keyed by the client address
 * or the configured header. The verdict may come later, through
 * fc_proxy_ratelimit_done(); meanwhile what the client sends waits in the
 * buffer, and a close waits for the verdict (the limiter holds a handle).
 */
static void ratelimit_check(struct fc_client *c)
{
    struct fc_instance *rl = c->pool->ratelimit;
    const char *key = c->ip;
    size_t key_len = c->ip_len;
    const char *header = c->pool->conf->rate_limit_conf.header;
    if (header != NULL) {
        size_t len;
        const char *v = fc_request_header(&c->mem->req, header, &len);
        if (v != NULL && len > 0) {
            key = v;
            key_len = len;
        }
    }
    struct fc_ratelimit_args args = {
        .size = sizeof(args),
        .worker = c->w->index,
        .loop = &c->w->loop,
        .key = key,
        .key_len = key_len,
        .request = &c->mem->req,
        .pending = &c->rl_pending,
    };
    uint64_t retry_after_ms = 0;
    c->phase = PH_RATELIMIT;
    c->rl_waiting = 1;
    int verdict = rl->plugin->desc->ratelimit->check(rl->state, &args, &retry_after_ms);
    if (verdict == FC_RATELIMIT_PENDING)
        return; /* fc_proxy_ratelimit_done() goes on, possibly already has */
    c->rl_waiting = 0;
    ratelimit_verdict(c, verdict, retry_after_ms);
}

void fc_proxy_ratelimit_done(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                             uint64_t retry_after_ms)
{
    struct fc_client *c = pending->c;
    if (!c->rl_waiting) {
        fc_log_error("%s: ratelimit_done() for a check that is not pending",
                     ((struct fc_instance *)owner)->label);
        return;
    }
    c->rl_waiting = 0;
    if (c->close_deferred) {
        client_close(c);
        return;
    }
    ratelimit_verdict(c, verdict, retry_after_ms);
}

static void txn_begin(struct fc_client *c)
{
    struct fc_worker *w = c->w;
    struct fc_request *req = &c->mem->req;
    /*
     * Reading goes on while the request is served, so that a client that goes
     * away is noticed; what it sends meanwhile (a body, pipelined requests)
     * waits in the buffer, and reading pauses only when the buffer is full.
     */
    client_timer_stop(c);
    c->phase = PH_CONNECTING;
    c->gen = w->gen;
    c->gen->workers[w->index].requests++;
    c->attempts = 0;
    c->backend = -1;
    c->resp_started = c->resp_done = c->dechunk = 0;
    c->stale_retried = 0;
    c->head_writing = 0;
    c->bytes_out = 0;
    c->status = 0;
    c->body_seen = 0;
    req->http_major = c->parser->http_major;
    req->http_minor = c->parser->http_minor;
    c->client_10 = req->http_major == 1 && req->http_minor == 0;
    c->head_req = c->parser->method == HTTP_HEAD;
    c->keep_alive = llhttp_should_keep_alive(c->parser) && !w->draining;
    if (__atomic_load_n(&fc_runtime.access_log_on, __ATOMIC_RELAXED))
        snprintf(c->mem->log_req, sizeof(c->mem->log_req), "%.*s %.*s HTTP/%u.%u",
                 (int)req->method.len, req->method.p,
                 (int)(req->target.len > 200 ? 200 : req->target.len), req->target.p,
                 req->http_major, req->http_minor);

    const struct fc_config *cfg = c->gen->cfg;
    int32_t li = c->listener->conf_index;
    if (li < 0) {
        /* Its listener was removed by a reload: this connection ends here. */
        c->keep_alive = 0;
        reply(c, 503, 1);
        return;
    }
    if (c->parser->method == HTTP_CONNECT) {
        reply(c, 405, 1);
        return;
    }
    if (fc_head_request_complete(req) != 0) {
        fc_log_debug("client %s: unsupported request target", c->ip);
        reply(c, 400, 1);
        return;
    }
    if (req->host.p == NULL && !c->client_10) {
        fc_log_debug("client %s: HTTP/1.1 request without Host", c->ip);
        reply(c, 400, 1);
        return;
    }
    if (cfg->limits.max_body_bytes && !(c->parser->flags & F_CHUNKED) &&
        c->parser->content_length > cfg->limits.max_body_bytes) {
        reply(c, 413, 1);
        return;
    }
    c->pool = fc_generation_route(c->gen, cfg->listeners[li].pool, req->host.p, req->host.len,
                                  req->target.p, req->target.len);
    uint32_t nb = c->pool->view.n_backends;
    c->tried = nb <= sizeof(c->mem->tried_small) ? c->mem->tried_small : calloc(nb, 1);
    if (c->tried == NULL) {
        reply(c, 503, 1);
        return;
    }
    memset(c->tried, 0, nb);
    if (c->pool->ratelimit != NULL)
        ratelimit_check(c);
    else
        txn_connect(c);
}

static void upstream_connect_cb(uv_connect_t *req, int status);

static void connect_failed(struct fc_client *c, int err, int timed_out)
{
    struct fc_upstream *u = c->up;
    fc_log_warn("client %s: backend %s: connect: %s", c->ip, c->pool->views[c->backend].address,
                timed_out ? "timed out" : uv_strerror(err));
    upstream_close(u);
    c->up = NULL;
    backend_inflight_add(c, -1);
    fc_health_report_failure(c->pool, (uint32_t)c->backend,
                             timed_out ? "connect timed out" : "connect failed");
    c->tried[c->backend] = 1;
    c->attempts++;
    if (c->attempts > c->pool->conf->retries) {
        reply(c, timed_out ? 504 : 502, 0);
        return;
    }
    txn_connect(c);
}

static void upstream_timer_cb(uv_timer_t *t)
{
    struct fc_upstream *u = t->data;
    struct fc_client *c = u->c;
    if (c == NULL) {
        upstream_close(u);
        return;
    }
    if (!u->connected) {
        connect_failed(c, UV_ETIMEDOUT, 1);
        return;
    }
    /*
     * upstream_ms counts the backend's silence. Rather than restarting the
     * timer on every read and write, activity only notes the time, and the
     * timer, when it fires, sleeps again for what is left. Waiting on a slow
     * client (to read the response, or to send the rest of its body while
     * the backend has taken all we had) is not the backend's fault: it
     * starts the count afresh.
     */
    uint64_t now = uv_now(&c->w->loop);
    uint64_t limit = wcfg(c->w)->timeouts.upstream_ms;
    if (c->writing || c->resp_done || (!c->req_done && !u->writing))
        u->last_active = now; /* waiting on the client (its response, or its body) */
    if (now - u->last_active < limit) {
        uv_timer_start(&u->timer, upstream_timer_cb, limit - (now - u->last_active), 0);
        return;
    }
    fc_log_warn("client %s: backend %s: no response within %u ms", c->ip,
                c->pool->views[c->backend].address, wcfg(c->w)->timeouts.upstream_ms);
    fc_health_report_failure(c->pool, (uint32_t)c->backend, "response timed out");
    if (!c->resp_started)
        reply(c, 504, 0);
    else
        txn_abort(c, NULL);
}

/* Out of memory for an upstream connection: the transaction ends with 502. */
static void attach_failed(struct fc_client *c)
{
    c->up = NULL;
    backend_inflight_add(c, -1);
    reply(c, 502, 1);
}

/*
 * Connects a new upstream connection to backend b (c->backend) for the
 * transaction; upstream_connect_cb() goes on. On failure the transaction has
 * been answered, or handed to connect_failed() for another backend.
 */
static void upstream_open(struct fc_client *c, struct fc_backend_shared *b)
{
    struct fc_upstream *u = upstream_new(c->w, b);
    if (u == NULL || upstream_attach(c, u) != 0) {
        if (u != NULL)
            upstream_close(u);
        attach_failed(c);
        return;
    }
    int rc =
        uv_tcp_connect(&u->creq, &u->tcp, c->pool->views[c->backend].sockaddr, upstream_connect_cb);
    if (rc != 0) {
        connect_failed(c, rc, 0);
        return;
    }
    uv_timer_start(&u->timer, upstream_timer_cb, wcfg(c->w)->timeouts.connect_ms, 0);
}

static void txn_connect(struct fc_client *c)
{
    struct fc_worker *w = c->w;
    struct fc_gen_pool *pool = c->pool;
    struct fc_instance *inst = &pool->strategy[w->index];
    struct fc_pick_args args = {
        .size = sizeof(args),
        .worker = w->index,
        .request = &c->mem->req,
        .client = &c->peer.sa,
        .client_len = c->peer_len,
        .tried = c->attempts ? c->tried : NULL,
    };
    int idx = inst->plugin->desc->strategy->pick(inst->state, &args);
    if (idx < 0 || (uint32_t)idx >= pool->view.n_backends) {
        if (c->attempts == 0)
            fc_log_warn("client %s: pool %s: no backend available", c->ip, pool->conf->name);
        reply(c, c->attempts ? 502 : 503, 0);
        return;
    }
    c->backend = idx;
    struct fc_backend_shared *b = pool->shared[idx];
    backend_inflight_add(c, 1);

    struct fc_upstream *u = upstream_take_idle(w, b);
    if (u == NULL) {
        upstream_open(c, b);
        return;
    }
    if (upstream_attach(c, u) != 0) {
        upstream_close(u);
        attach_failed(c);
        return;
    }
    u->reused = 1;
    send_request_head(c);
}

static void upstream_connect_cb(uv_connect_t *req, int status)
{
    struct fc_upstream *u = req->data;
    struct fc_client *c = u->c;
    if (status == UV_ECANCELED || u->closing || c == NULL)
        return;
    if (status < 0) {
        connect_failed(c, status, 0);
        return;
    }
    u->connected = 1;
    uv_tcp_nodelay(&u->tcp, 1);
    send_request_head(c);
}

static void send_request_head(struct fc_client *c)
{
    struct fc_upstream *u = c->up;
    const struct fc_backend_view *v = &c->pool->views[c->backend];
    u->connected = 1;
    struct fc_forward_info fw = {
        .client_ip = c->ip,
        .client_ip_len = c->ip_len,
        .proto = "http",
        .default_host = v->address,
        .default_host_len = strlen(v->address),
    };
    int n = fc_rewrite_request(&c->mem->req, &fw, c->out, c->out_cap);
    if (n < 0) {
        reply(c, 431, 1);
        return;
    }
    c->out_len = (uint32_t)n;
    c->head_pending = 1;
    c->phase = PH_PROXY;
    u->last_active = uv_now(&c->w->loop);
    uv_timer_start(&u->timer, upstream_timer_cb, wcfg(c->w)->timeouts.upstream_ms, 0);
    upstream_read_start(u);
    forward_request_body(c);
}

/*
 * Relays what the input buffer holds of the request: the rewritten head first
 * if it has not gone yet, then raw body bytes up to the end of the message.
 */
static void forward_request_body(struct fc_client *c)
{
    struct fc_upstream *u = c->up;
    if (u == NULL || u->writing)
        return;
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (c->head_pending) {
        bufs[n++] = uv_buf_init(c->out, c->out_len);
        c->head_pending = 0;
        c->head_writing = 1; /* c->out is busy until on_upstream_written() */
        if (!c->req_has_body)
            parser_resume(c->parser); /* paused at the end of a bodiless request */
    }
    if (!c->req_done) {
        const char *start = c->in + c->in_off;
        size_t avail = c->in_len - c->in_off;
        parser_resume(c->parser); /* paused at the end of the head */
        enum llhttp_errno e = avail ? llhttp_execute(c->parser, start, avail) : HPE_OK;
        size_t used;
        if (e == HPE_OK) {
            used = avail;
        } else if (paused(e) && c->msg_done) {
            used = (size_t)(llhttp_get_error_pos(c->parser) - start);
            c->req_done = 1;
        } else {
            fc_log_debug("client %s: bad request body: %s", c->ip,
                         llhttp_get_error_reason(c->parser));
            c->req_done = 0;
            reply(c, parse_error_status(c, e), 1);
            return;
        }
        if (used > 0)
            bufs[n++] = uv_buf_init((char *)start, (unsigned)used);
        c->in_off += (uint32_t)used;
    }
    if (n == 0) {
        client_read_start(c); /* wait for more body */
        client_timer_arm(c, wcfg(c->w)->timeouts.idle_ms);
        return;
    }
    /* Nothing more is read from the client until the backend took this; the wait is
     * the backend's (upstream_ms), not the client's. */
    client_read_stop(c);
    if (!c->writing)
        client_timer_stop(c);
    upstream_write(c, bufs, n);
}

static void on_upstream_written(struct fc_client *c)
{
    if (c->closing || c->phase != PH_PROXY)
        return;
    struct fc_upstream *u = c->up;
    /* The backend is taking the request: that is progress, as a response byte would be. */
    u->last_active = uv_now(&c->w->loop);
    if (c->head_writing) {
        c->head_writing = 0;
        if (u->off < u->len)
            upstream_process(c); /* a response that arrived while the head was going out */
        else if (!c->writing)
            upstream_read_start(u);
        if (c->closing || c->phase != PH_PROXY)
            return;
    }
    if (c->req_done) {
        client_timer_stop(c);
        return;
    }
    if (c->in_off < c->in_len) {
        forward_request_body(c); /* bytes that arrived with the head */
        return;
    }
    /* Everything read so far was relayed: the buffer starts over. */
    c->in_off = c->in_len = 0;
    client_read_start(c);
    client_timer_arm(c, wcfg(c->w)->timeouts.idle_ms);
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                 */
/* ------------------------------------------------------------------------ */

static void upstream_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct fc_upstream *u = h->data;
    if (u->idle || u->buf == NULL) {
        static __thread char sink[64]; /* contents unused: the connection is dropped */
        buf->base = sink;
        buf->len = sizeof(sink);
        return;
    }
    buf->base = u->buf + u->len;
    buf->len = UPBUF_SIZE - u->len;
}

/* A keep-alive connection that died before answering: try once more on a fresh one. */
static int retry_stale(struct fc_client *c)
{
    struct fc_upstream *u = c->up;
    if (!u->reused || u->got_bytes || c->req_has_body || c->stale_retried || c->resp_started)
        return 0;
    c->stale_retried = 1;
    struct fc_backend_shared *b = u->backend;
    upstream_close(u);
    c->up = NULL;
    /* The head is written again, from the request still parsed in place, once connected. */
    c->phase = PH_CONNECTING;
    upstream_open(c, b);
    return 1;
}

static void upstream_failed(struct fc_client *c, const char *why)
{
    if (retry_stale(c))
        return;
    if (!c->resp_started) {
        fc_log_warn("client %s: backend %s: %s", c->ip, c->pool->views[c->backend].address, why);
        reply(c, 502, 0);
    } else {
        txn_abort(c, why);
    }
}

static void upstream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fc_upstream *u = s->data;
    if (u->idle) {
        if (n != 0)
            upstream_close(u); /* closed, or spoke out of turn, while idle */
        return;
    }
    struct fc_client *c = u->c;
    if (c == NULL || u->closing)
        return;
    if (n > 0) {
        u->len += (uint32_t)n;
        u->got_bytes = 1;
        u->last_active = uv_now(&c->w->loop);
        upstream_process(c);
        return;
    }
    if (n == 0)
        return;
    uv_read_stop(s);
    u->reading = 0;
    if (n == UV_EOF && u->head_done && !c->resp_done) {
        /* A body delimited by the end of the connection ends here. */
        u->keep_alive = 0;
        parser_resume(&u->parser);
        enum llhttp_errno fe = llhttp_finish(&u->parser);
        if ((fe == HPE_OK || fe == HPE_PAUSED) && u->msg_done) {
            c->resp_done = 1;
            if (!c->writing)
                txn_end(c);
            return;
        }
    }
    upstream_failed(c, n == UV_EOF ? "connection closed before the response ended"
                                   : uv_strerror((int)n));
}

static void upstream_read_start(struct fc_upstream *u)
{
    if (u->reading)
        return;
    if (uv_read_start((uv_stream_t *)&u->tcp, upstream_alloc, upstream_read) == 0)
        u->reading = 1;
}

/*
 * Parses what the upstream buffer holds and relays it: the response head
 * (rewritten) when it is complete, then body bytes. Called again after each
 * write to the client completes, until the buffer is consumed.
 */
static void upstream_process(struct fc_client *c)
{
    struct fc_upstream *u = c->up;
    if (c->writing || c->resp_done)
        return;
    if (c->head_writing) {
        /* The output buffer still holds the request head being sent: answer after it. */
        uv_read_stop((uv_stream_t *)&u->tcp);
        u->reading = 0;
        return;
    }
    uv_buf_t bufs[2];
    unsigned n = 0;
    const char *start = u->buf + u->off;
    size_t avail = u->len - u->off;
    if (avail == 0)
        return;
    parser_resume(&u->parser);
    u->dechunk_w = u->off;
    enum llhttp_errno e = llhttp_execute(&u->parser, start, avail);
    size_t used;
    if (e == HPE_OK) {
        used = avail;
    } else if (e == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&u->parser) - start);
    } else {
        upstream_failed(c, llhttp_get_error_reason(&u->parser));
        return;
    }

    if (!u->head_done) {
        /* Still in the head: it must fit in the buffer. Read on for the rest. */
        u->off += (uint32_t)used;
        if (u->len == UPBUF_SIZE) {
            upstream_failed(c, "response head too large");
            return;
        }
        upstream_read_start(u);
        return;
    }

    struct fc_request *resp = &c->mem->resp;
    if (!c->resp_started) {
        int status = u->parser.status_code;
        resp->status = status;
        resp->http_major = u->parser.http_major;
        resp->http_minor = u->parser.http_minor;
        if (status == 101) {
            upstream_failed(c, "unexpected 101 Switching Protocols");
            return;
        }
        if (status < 200) {
            /* Interim response: relay it to HTTP/1.1 clients, then wait for the final one. */
            int hn = c->client_10 ? 0 : fc_rewrite_response(resp, 0, c->out, c->out_cap);
            u->off += (uint32_t)used;
            u->head_done = 0;
            /* The next head starts here: move it to the front, so that a series of
             * interim responses never fills the buffer. */
            uint32_t left = u->len - u->off;
            memmove(u->buf, u->buf + u->off, left);
            u->len = left;
            u->off = 0;
            if (hn > 0) {
                uv_buf_t b = uv_buf_init(c->out, (unsigned)hn);
                client_write(c, &b, 1);
            } else {
                upstream_process(c);
            }
            return;
        }
        int chunked = (u->parser.flags & F_CHUNKED) != 0;
        int bodiless = c->head_req || status == 204 || status == 304;
        int delimited = bodiless || chunked || (u->parser.flags & F_CONTENT_LENGTH);
        c->dechunk = chunked && c->client_10 && !bodiless;
        if (!delimited || c->dechunk)
            c->keep_alive = 0; /* the end of the body is the end of the connection */
        unsigned flags = 0;
        if (!c->keep_alive || c->w->draining)
            flags |= FC_RESP_CLOSE;
        else if (c->client_10)
            flags |= FC_RESP_KEEPALIVE;
        if (c->dechunk)
            flags |= FC_RESP_DECHUNK;
        int hn = fc_rewrite_response(resp, flags, c->out, c->out_cap);
        if (hn < 0) {
            upstream_failed(c, "response head too large");
            return;
        }
        c->status = status;
        c->resp_started = 1;
        fc_health_report_success(&c->pool->shared[c->backend]->passive_failures);
        bufs[n++] = uv_buf_init(c->out, (unsigned)hn);
        if (c->pool->strategy[c->w->index].plugin->desc->strategy->outcome) {
            struct fc_instance *inst = &c->pool->strategy[c->w->index];
            inst->plugin->desc->strategy->outcome(inst->state, (uint32_t)c->backend, status,
                                                  (uv_hrtime() - c->t_start) / 1000);
        }
        /* The head may have ended exactly here; the body (if any) follows. */
        const char *body = start + used;
        size_t rest = avail - used;
        u->off += (uint32_t)used;
        if (!u->msg_done && rest > 0) {
            parser_resume(&u->parser);
            u->dechunk_w = u->off;
            e = llhttp_execute(&u->parser, body, rest);
            if (e == HPE_OK)
                used = rest;
            else if (e == HPE_PAUSED)
                used = (size_t)(llhttp_get_error_pos(&u->parser) - body);
            else {
                /* The head goes out; the broken body ends the connection after it. */
                c->keep_alive = 0;
                u->keep_alive = 0;
                client_write(c, bufs, n);
                if (!c->closing)
                    txn_abort(c, llhttp_get_error_reason(&u->parser));
                return;
            }
            start = body;
        } else {
            used = 0;
            start = body;
        }
    }

    if (used > 0) {
        if (c->dechunk) {
            uint32_t from = (uint32_t)(start - u->buf);
            if (u->dechunk_w > from)
                bufs[n++] = uv_buf_init((char *)start, u->dechunk_w - from);
        } else {
            bufs[n++] = uv_buf_init((char *)start, (unsigned)used);
        }
        u->off += (uint32_t)used;
    }
    if (u->msg_done) {
        c->resp_done = 1;
        u->keep_alive = llhttp_should_keep_alive(&u->parser) && u->off == u->len;
    }
    if (n > 0) {
        client_write(c, bufs, n); /* stops reading the backend if the client lags */
        return;
    }
    if (c->resp_done)
        txn_end(c);
}

static void on_client_written(struct fc_client *c)
{
    if (c->closing)
        return;
    if (c->phase == PH_REPLY) {
        if (c->close_after_reply) {
            access_log(c);
            client_linger(c);
            return;
        }
        txn_end(c);
        return;
    }
    if (c->phase != PH_PROXY && c->phase != PH_CONNECTING)
        return;
    client_timer_stop(c);
    if (c->up != NULL)
        c->up->last_active = uv_now(&c->w->loop); /* the client's wait ends: a fresh count */
    if (c->resp_done) {
        txn_end(c);
        return;
    }
    struct fc_upstream *u = c->up;
    if (u == NULL)
        return;
    if (u->off < u->len) {
        upstream_process(c);
        return;
    }
    u->off = u->len = 0;
    upstream_read_start(u);
    if (!c->req_done && c->reading)
        client_timer_arm(c, wcfg(c->w)->timeouts.idle_ms);
}

static void access_log(struct fc_client *c)
{
    if (!__atomic_load_n(&fc_runtime.access_log_on, __ATOMIC_RELAXED) || c->mem == NULL)
        return;
    char line[512];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *backend = (c->pool && c->backend >= 0) ? c->pool->views[c->backend].address : "-";
    double ms = (double)(uv_hrtime() - c->t_start) / 1e6;
    int n = snprintf(line, sizeof(line), "%s %s \"%s\" %d %llu %s %.3fms", ts, c->ip,
                     c->mem->log_req[0] ? c->mem->log_req : "-", c->status,
                     (unsigned long long)c->bytes_out, backend, ms);
    if (n > 0)
        fc_worker_access_log(c->w, line,
                             (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1));
}

/*
 * The response has been written in full. The upstream connection goes back to
 * the pool if both messages ended cleanly; the client connection waits for its
 * next request, which may already be in the buffer (pipelining).
 */
static void txn_end(struct fc_client *c)
{
    access_log(c);
    struct fc_upstream *u = c->up;
    if (u != NULL) {
        c->up = NULL;
        backend_inflight_add(c, -1);
        if (u->keep_alive && c->req_done && c->resp_done && !u->writing) {
            upstream_park(u);
        } else {
            upstream_close(u);
        }
    }
    int keep = c->keep_alive && c->req_done && !c->w->draining && !c->eof;
    txn_release(c);
    if (!keep) {
        client_linger(c);
        return;
    }
    /* Next request. */
    c->phase = PH_IDLE;
    c->pool = NULL;
    c->backend = -1;
    c->head_done = c->msg_done = c->req_done = 0;
    c->resp_started = c->resp_done = 0;
    c->err_status = 0;
    c->head_pending = 0;
    /* The message is complete: start the parser afresh (this also leaves the state
     * in which an Upgrade request pauses, since the upgrade never happens). */
    llhttp_reset(c->parser);
    uint32_t left = c->in_len - c->in_off;
    if (left > 0) {
        memmove(c->in, c->in + c->in_off, left);
        c->in_len = left;
        c->in_off = 0;
    } else {
        mem_release(c); /* idle: no memory held beyond the connection itself */
    }
    client_timer_arm(c, wcfg(c->w)->timeouts.idle_ms);
    client_read_start(c);
    if (left > 0)
        client_process(c);
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

static void client_step(struct fc_client *c)
{
    switch (c->phase) {
    case PH_IDLE:
    case PH_HEAD:
        parse_head(c);
        break;
    case PH_PROXY:
        if (!c->req_done)
            forward_request_body(c);
        break;
    default:
        break;
    }
}

/*
 * Runs the connection's state machine on what it has read. Re-entry (a step
 * that completes synchronously and starts the next pipelined request) is
 * turned into another turn of the loop, so the stack stays flat.
 */
static void client_process(struct fc_client *c)
{
    if (c->in_process) {
        c->again = 1;
        return;
    }
    c->in_process = 1;
    do {
        c->again = 0;
        client_step(c);
    } while (c->again && !c->closing);
    c->in_process = 0;
}

/* ------------------------------------------------------------------------ */
/* Worker-wide operations                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Ends the connections accepted on `l` (all of the worker's when NULL)
 * gracefully: idle ones now, the others after their current response.
 */
static void wind_down(struct fc_worker *w, const struct fc_listener *l)
{
    struct fc_client *c = w->clients;
    while (c != NULL) {
        struct fc_client *next = c->next;
        if (l == NULL || c->listener == l) {
            if (c->phase == PH_IDLE && c->in_len == 0)
                client_close(c);
            else
                c->keep_alive = 0;
        }
        c = next;
    }
}

void fc_proxy_listener_removed(struct fc_worker *w, struct fc_listener *l)
{
    wind_down(w, l);
}

void fc_proxy_drain(struct fc_worker *w)
{
    wind_down(w, NULL);
}

void fc_proxy_close_clients(struct fc_worker *w)
{
    struct fc_client *c = w->clients;
    while (c != NULL) {
        struct fc_client *next = c->next;
        client_close(c);
        c = next;
    }
}

void fc_proxy_close_idle_upstreams(struct fc_worker *w)
{
    struct fc_upstream *u = w->upstreams;
    while (u != NULL) {
        struct fc_upstream *next = u->all_next;
        if (u->c == NULL)
            upstream_close(u);
        u = next;
    }
}

static void free_list(struct fc_free_block **list, uint32_t *count)
{
    while (*list != NULL) {
        struct fc_free_block *b = *list;
        *list = b->next;
        free(b);
    }
    *count = 0;
}

void fc_proxy_free_lists(struct fc_worker *w)
{
    free_list(&w->free_clients, &w->n_free_clients);
    free_list(&w->free_upstreams, &w->n_free_upstreams);
    free_list(&w->free_txn, &w->n_free_txn);
    free_list(&w->free_upbuf, &w->n_free_upbuf);
}
