/*
 * The transaction: one request, top to bottom.
 *
 *   receive the head -> check it -> route -> rate limit -> pick a backend
 *   -> upstream connection -> request head and body -> response head
 *   -> response body -> end (the next request may wait in the buffer)
 *
 * and, beside that path, the proxy's own replies (400 ... 504) and what
 * happens when a side fails or is too slow. The sections below follow that
 * order; the steps other files lead to are declared, in the same order, in
 * txn_state.h. The two transports (client.c, upstream.c) move bytes and
 * report what happened through event tables; txn_events.c turns each event
 * into the step it leads to here. The transports never call each other.
 *
 * Parsing. A request is parsed with llhttp in place, in the client's input
 * buffer: the head stays contiguous until it is complete, so the parser's
 * callbacks only record spans of it. The head of a request with a body pauses
 * the parser, so that the body is relayed only once an upstream connection
 * is ready; the body is relayed *as received* — the raw bytes the parser
 * consumed, framing included — so Content-Length and chunked bodies pass
 * through with one copy at most (none: they are written from the buffer they
 * were read into). The response comes back the same way, parsed in the
 * upstream connection's buffer, its head rewritten into the output buffer and
 * its body relayed raw. The one exception is a chunked response to an
 * HTTP/1.0 client, which cannot read chunked framing: its body is decoded in
 * place and the connection closed at its end.
 *
 * Back-pressure. Each direction has at most one write in flight. While a
 * write to one side is pending, nothing is read from the other side, so a
 * transaction holds at most one input buffer per side whatever the body size.
 * Writes are first tried synchronously; only what the socket did not take
 * waits for a callback.
 *
 * Memory. Everything a request needs (struct fc_txn: parser state, heads,
 * input and output buffers, the write request) comes from the worker's free
 * list when the first byte of a request arrives and goes back when the
 * connection turns idle, so an idle keep-alive connection costs only its
 * struct fc_client, and the steady state allocates nothing. Code that calls
 * something which may end the transaction (a write that completes at once, a
 * close) checks c->txn before it touches t again.
 *
 * Everything here runs on the transaction's worker.
 */
#include "txn_state.h"

#include "access_log.h"
#include "client.h"
#include "config.h"
#include "errors.h"
#include "freelist.h"
#include "generation.h"
#include "health.h"
#include "http_rewrite.h"
#include "listener.h"
#include "log.h"
#include "route.h"
#include "stats.h"
#include "upstream.h"

#include <llhttp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* 1. The request head                                                       */
/* ------------------------------------------------------------------------ */

/* The counters of the request's backend and pool, this worker's slot (stats.h). */
static struct fc_backend_stats *backend_stats(const struct fc_txn *t)
{
    return fc_stats_backend(t->pool->backend_stats[t->backend], t->c->w->index);
}

static struct fc_pool_stats *pool_stats(const struct fc_txn *t)
{
    return fc_stats_pool(t->pool->stats, t->c->w->index);
}

static void backend_inflight_add(struct fc_txn *t, int delta)
{
    struct fc_backend_shared *b = t->pool->shared[t->backend];
    if (delta > 0)
        __atomic_add_fetch(&b->state.inflight, 1, __ATOMIC_RELAXED);
    else
        __atomic_sub_fetch(&b->state.inflight, 1, __ATOMIC_RELAXED);
}

/* Closes the request's upstream connection, if it has one, and leaves its backend's count. */
static void close_upstream(struct fc_txn *t)
{
    if (t->up == NULL)
        return;
    fc_upstream_close(t->up);
    t->up = NULL;
    backend_inflight_add(t, -1);
}

/*
 * Past the rate limiter: in a pool with a cache, the store may answer
 * (txn_cache.c); else a backend is picked.
 */
static void answer_or_connect(struct fc_txn *t)
{
    if (t->pool->cache != NULL && fc_txn_cache_request(t)) {
        fc_txn_cache_send(t);
        return;
    }
    fc_txn_connect(t);
}

/*
 * The head is complete: start the transaction on the worker's current
 * generation, check the head, route it, and ask the rate limiter (if any).
 *
 * Reading goes on while the request is served, so that a client that goes
 * away is noticed; what it sends meanwhile (a body, pipelined requests) waits
 * in the buffer, and reading pauses only when the buffer is full.
 */
void fc_txn_begin(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    struct fc_worker *w = c->w;
    struct fc_request *req = &t->req;
    fc_client_timer_stop(c);
    t->phase = FC_TXN_CONNECTING;
    t->gen = w->gen;
    fc_generation_request_start(t->gen, w->index);
    t->attempts = 0;
    t->passed_over = 0;
    t->backend = -1;
    t->resp_started = t->resp_done = t->dechunk = 0;
    t->stale_retried = 0;
    t->head_writing = 0;
    t->bytes_out = 0;
    t->status = 0;
    t->body_seen = 0;
    t->connect_ns = t->head_ns = 0;
    t->c_status = NULL;
    req->http_major = t->parser.http_major;
    req->http_minor = t->parser.http_minor;
    t->client_10 = req->http_major == 1 && req->http_minor == 0;
    t->head_req = t->parser.method == HTTP_HEAD;
    t->websocket = fc_head_wants_websocket(req) && !t->req_has_body;
    t->client_close = !llhttp_should_keep_alive(&t->parser);
    t->keep_alive = !t->client_close && !w->draining;
    if (fc_access_log_on())
        snprintf(t->log_req, sizeof(t->log_req), "%.*s %.*s HTTP/%u.%u", (int)req->method.len,
                 req->method.p, (int)(req->target.len > 200 ? 200 : req->target.len), req->target.p,
                 req->http_major, req->http_minor);

    const struct fc_config *cfg = t->gen->cfg;
    int32_t li = c->listener->conf_index;
    if (li < 0) {
        /* Its listener was removed by a reload: this connection ends here. */
        t->keep_alive = 0;
        fc_txn_reply(t, 503, 1);
        return;
    }
    const char *why = NULL;
    int refuse = fc_head_check_request(req, (t->parser.flags & F_CHUNKED) != 0,
                                       t->parser.content_length, cfg->limits.max_body_bytes, &why);
    if (refuse != 0) {
        fc_log_debug("client %s: %s", c->ip, why);
        fc_txn_reply(t, refuse, 1);
        return;
    }
    uint32_t pool = fc_route_pool(cfg, cfg->listeners[li].pool, req->host.p, req->host.len,
                                  req->target.p, req->target.len);
    t->pool = &t->gen->pools[pool];
    uint32_t nb = t->pool->view.n_backends;
    t->tried = nb <= sizeof(t->tried_small) ? t->tried_small : calloc(nb, 1);
    if (t->tried == NULL) {
        fc_txn_reply(t, 503, 1);
        return;
    }
    memset(t->tried, 0, nb);
    if (t->pool->ratelimit != NULL)
        fc_txn_ratelimit_check(t);
    else
        answer_or_connect(t);
}

/* Parses what the input buffer holds of a request head; at its end, fc_txn_begin(). */
void fc_txn_parse_head(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (t->in_off == t->in_len)
        return;
    if (t->phase == FC_TXN_IDLE) {
        t->phase = FC_TXN_HEAD;
        t->t_start = uv_hrtime();
        t->log_req[0] = '\0';
        fc_client_timer_arm(c, fc_txn_config(t)->timeouts.client_header_ms);
    }
    const char *start = t->in + t->in_off;
    enum llhttp_errno e = llhttp_execute(&t->parser, start, t->in_len - t->in_off);
    if (e == HPE_OK) {
        t->in_off = t->in_len;
        if (t->in_len == t->in_cap) {
            t->req_done = 0;
            fc_txn_reply(t, 431, 1);
        }
        return;
    }
    if (fc_parser_paused(e) && t->head_done) {
        t->in_off = (uint32_t)(llhttp_get_error_pos(&t->parser) - t->in);
        t->req_done = t->msg_done;
        t->req_end = uv_now(&c->w->loop);
        fc_txn_begin(t);
        return;
    }
    fc_log_debug("client %s: bad request: %s", c->ip, llhttp_get_error_reason(&t->parser));
    t->req_done = 0;
    fc_txn_reply(t, fc_txn_parse_error_status(t), 1);
}

/* ------------------------------------------------------------------------ */
/* 2. The rate limiter                                                       */
/* ------------------------------------------------------------------------ */

static void ratelimit_verdict(struct fc_txn *t, int verdict, uint64_t retry_after_ms)
{
    if (verdict != FC_RATELIMIT_DENY) {
        t->phase = FC_TXN_CONNECTING;
        answer_or_connect(t);
        return;
    }
    /* Whole seconds, rounded up: a client that waits that long finds a token. */
    t->retry_after_s = (retry_after_ms + 999) / 1000;
    if (t->retry_after_s == 0)
        t->retry_after_s = 1;
    fc_stats_add(&pool_stats(t)->ratelimit_denied, 1);
    fc_txn_reply(t, 429, 0);
}

/*
 * Asks the pool's rate limiter about the request, keyed by the client address
 * or the configured header. The verdict may come later, through
 * fc_txn_ratelimit_done(); meanwhile what the client sends waits in the buffer,
 * and a close waits for the verdict (the limiter holds a handle).
 */
void fc_txn_ratelimit_check(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    struct fc_instance *rl = t->pool->ratelimit;
    const char *key = c->ip;
    size_t key_len = c->ip_len;
    const char *header = t->pool->conf->rate_limit_conf.header;
    if (header != NULL) {
        size_t len;
        const char *v = fc_request_header(&t->req, header, &len);
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
        .request = &t->req,
        .pending = &t->rl_pending,
    };
    uint64_t retry_after_ms = 0;
    t->phase = FC_TXN_RATELIMIT;
    t->rl_waiting = 1;
    int verdict = rl->plugin->desc->ratelimit->check(rl->state, &args, &retry_after_ms);
    if (verdict == FC_RATELIMIT_PENDING)
        return; /* fc_txn_ratelimit_done() goes on, possibly already has */
    t->rl_waiting = 0;
    ratelimit_verdict(t, verdict, retry_after_ms);
}

/* The host's ratelimit_done(), on the worker of the request. `owner` is the limiter's instance. */
void fc_txn_ratelimit_done(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                           uint64_t retry_after_ms)
{
    struct fc_txn *t = pending->t;
    if (!t->rl_waiting) {
        fc_log_error("%s: ratelimit_done() for a check that is not pending",
                     ((struct fc_instance *)owner)->label);
        return;
    }
    t->rl_waiting = 0;
    if (t->close_deferred) {
        fc_client_close(t->c);
        return;
    }
    ratelimit_verdict(t, verdict, retry_after_ms);
}

/* ------------------------------------------------------------------------ */
/* 3. Picking a backend and an upstream connection                           */
/* ------------------------------------------------------------------------ */

/* Gives u to the transaction, with a fresh response parser. Returns 0 or FC_ENOMEM. */
static int attach(struct fc_txn *t, struct fc_upstream *u)
{
    if (fc_upstream_attach(u, t) != 0)
        return FC_ENOMEM;
    t->up = u;
    t->up_head_done = t->up_msg_done = t->up_keep_alive = 0;
    fc_txn_response_parser_init(t);
    return 0;
}

/* Out of memory for an upstream connection: the transaction ends with 502. */
static void attach_failed(struct fc_txn *t)
{
    t->up = NULL;
    backend_inflight_add(t, -1);
    fc_txn_reply(t, 502, 1);
}

/*
 * Errors of this host rather than of the backend: out of descriptors,
 * buffers, memory or local ports. They say nothing of the backend's health,
 * and another backend would meet them too.
 */
static int local_error(int err)
{
    return err == UV_EMFILE || err == UV_ENFILE || err == UV_ENOBUFS || err == UV_ENOMEM ||
           err == UV_EADDRNOTAVAIL;
}

/*
 * A connect that failed for a local reason: 503, nothing held against the
 * backend, and a summarised warning (fc_txn_warn()).
 */
static void connect_failed_locally(struct fc_txn *t, int err)
{
    fc_txn_warn(t, "local connect",
                "backend %s: connect failed here, not at the backends (%s): answered 503 "
                "(client %s)",
                t->pool->views[t->backend].address, uv_strerror(err), t->c->ip);
    close_upstream(t);
    fc_txn_reply(t, 503, 0);
}

/* The connect to the picked backend failed: another backend, or 502/504. */
void fc_txn_connect_failed(struct fc_txn *t, int err, int timed_out)
{
    struct fc_client *c = t->c;
    if (!timed_out && local_error(err)) {
        connect_failed_locally(t, err);
        return;
    }
    char why[256];
    fc_txn_warn(
        t, "connect", "backend %s: connect: %s (client %s)", t->pool->views[t->backend].address,
        timed_out ? "timed out" : fc_upstream_strerror(t->up, err, why, sizeof(why)), c->ip);
    close_upstream(t);
    fc_txn_outcome(t, 0);
    fc_stats_add(&backend_stats(t)->connect_failures, 1);
    fc_health_report_failure(t->pool, (uint32_t)t->backend,
                             timed_out ? "connect timed out" : "connect failed");
    t->tried[t->backend] = 1;
    t->attempts++;
    if (t->attempts > t->pool->conf->retries || !(t->pool->conf->retry_on & FC_RETRY_CONNECT)) {
        fc_txn_reply(t, timed_out ? 504 : 502, 0);
        return;
    }
    fc_stats_add(&pool_stats(t)->retries, 1);
    fc_txn_connect(t);
}

/*
 * Connects a new upstream connection to backend b (t->backend); the
 * transport's on_connect goes on. On failure the transaction has been
 * answered, or handed to fc_txn_connect_failed() for another backend.
 */
static void upstream_open(struct fc_txn *t, struct fc_backend_shared *b)
{
    struct fc_upstream *u = fc_upstream_new(t->c->w, b);
    if (u == NULL || attach(t, u) != 0) {
        if (u != NULL)
            fc_upstream_close(u);
        attach_failed(t);
        return;
    }
    t->connect_ns = uv_hrtime(); /* the start, until fc_txn_connected() */
    const struct fc_backend_view *v = &t->pool->views[t->backend];
    int rc = fc_upstream_connect(u, v->sockaddr, v->address, t->pool->conf->tls,
                                 fc_txn_config(t)->timeouts.connect_ms);
    if (rc != 0)
        fc_txn_connect_failed(t, rc, 0);
}

/*
 * The pool's strategy picks the backend (skipping those this request failed
 * to connect to); an idle connection to it is reused, or a new one opened.
 */
void fc_txn_connect(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    struct fc_worker *w = c->w;
    struct fc_gen_pool *pool = t->pool;
    struct fc_instance *inst = &pool->strategy[w->index];
    struct fc_pick_args args = {
        .size = sizeof(args),
        .worker = w->index,
        .request = &t->req,
        .client = &c->peer.sa,
        .client_len = c->peer_len,
        .tried = t->attempts || t->passed_over ? t->tried : NULL,
        .flags = fc_client_is_tls(c) ? FC_PICK_TLS : 0,
    };
    t->added.len = 0; /* what an earlier pick of this request added goes */
    t->added.open = 1;
    int idx = inst->plugin->desc->strategy->pick(inst->state, &args);
    t->added.open = 0;
    int fallback = idx < 0 && t->passed_over > 0;
    if (fallback)
        idx = t->passed_first; /* out of rotation, but alive: better than no backend at all */
    if (idx < 0 || (uint32_t)idx >= pool->view.n_backends) {
        if (t->attempts == 0) {
            fc_stats_add(&pool_stats(t)->no_backend, 1);
            fc_txn_warn(t, "no backend", "no backend available (client %s)", c->ip);
        }
        fc_txn_reply(t, t->attempts ? 502 : 503, 0);
        return;
    }
    struct fc_backend_shared *b = pool->shared[idx];
    /*
     * A request that picks on a generation a runtime change has replaced
     * (it began before the change, and picks only now: after its rate
     * limiter's verdict, or to retry) passes over a backend the change took
     * out of rotation, so that none gets a request after the change was
     * answered. Each backend at most once. When that leaves none (its
     * generation knew no other, or the others failed), the first one passed
     * over takes it after all: drained is not dead, and the request was
     * accepted before the change.
     */
    if (!fallback && __atomic_load_n(&b->retiring, __ATOMIC_RELAXED) &&
        t->passed_over < pool->view.n_backends) {
        if (t->passed_over++ == 0)
            t->passed_first = idx;
        t->tried[idx] = 1;
        fc_txn_connect(t);
        return;
    }
    t->backend = idx;
    t->outcome_told = 0;
    backend_inflight_add(t, 1);

    struct fc_upstream *u = fc_upstream_take_idle(w, b, pool->conf->tls);
    if (u == NULL) {
        upstream_open(t, b);
        return;
    }
    if (attach(t, u) != 0) {
        fc_upstream_close(u);
        attach_failed(t);
        return;
    }
    t->connect_ns = 0; /* reused */
    fc_txn_send_request_head(t);
}

/* The new upstream connection is up: how long it took goes to the log; the request goes out. */
void fc_txn_connected(struct fc_txn *t)
{
    t->connect_ns = uv_hrtime() - t->connect_ns;
    fc_txn_send_request_head(t);
}

/* ------------------------------------------------------------------------ */
/* 4. The request goes upstream                                              */
/* ------------------------------------------------------------------------ */

static void send_to_upstream(struct fc_txn *t, uv_buf_t *bufs, unsigned n)
{
    /* More of a body of known length follows: the socket may hold a partial segment for it. */
    int rc = fc_upstream_write(t->up, bufs, n, !t->req_done && fc_body_left(&t->parser) > 0);
    if (rc < 0) {
        /* The read side reports the failure (EOF or reset) with the right status. */
        fc_log_debug("backend %s: write: %s", t->pool->views[t->backend].address, uv_strerror(rc));
        t->head_writing = 0;
        return;
    }
    if (rc == 1)
        fc_txn_upstream_written(t);
}

/*
 * Relays what the input buffer holds of the request: the rewritten head first
 * if it has not gone yet, then raw body bytes up to the end of the message.
 */
void fc_txn_forward_body(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (t->up == NULL || t->up->writing)
        return;
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (t->head_pending) {
        bufs[n++] = uv_buf_init(t->out, t->out_len);
        t->head_pending = 0;
        t->head_writing = 1; /* t->out is busy until fc_txn_upstream_written() */
        if (!t->req_has_body)
            fc_parser_resume(&t->parser); /* paused at the end of a bodiless request */
    }
    if (!t->req_done) {
        const char *start = t->in + t->in_off;
        size_t avail = t->in_len - t->in_off;
        fc_parser_resume(&t->parser); /* paused at the end of the head */
        enum llhttp_errno e = avail ? llhttp_execute(&t->parser, start, avail) : HPE_OK;
        size_t used;
        if (e == HPE_OK) {
            used = avail;
        } else if (fc_parser_paused(e) && t->msg_done) {
            used = (size_t)(llhttp_get_error_pos(&t->parser) - start);
            t->req_done = 1;
            t->req_end = uv_now(&c->w->loop);
        } else {
            fc_log_debug("client %s: bad request body: %s", c->ip,
                         llhttp_get_error_reason(&t->parser));
            t->req_done = 0;
            fc_txn_reply(t, fc_txn_parse_error_status(t), 1);
            return;
        }
        if (used > 0)
            bufs[n++] = uv_buf_init((char *)start, (unsigned)used);
        t->in_off += (uint32_t)used;
    }
    if (n == 0) {
        if (c->eof) {
            fc_txn_abort(t, NULL); /* the client is gone and the body is not complete */
            return;
        }
        fc_client_read_start(c); /* wait for more body */
        fc_client_timer_arm(c, fc_txn_config(t)->timeouts.idle_ms);
        return;
    }
    /* Nothing more of the body is read from the client until the backend took this;
     * the wait is the backend's (upstream_ms), not the client's. A whole request
     * leaves reading on: the client is watched while the response is awaited (see
     * fc_txn_upstream_written()), and a stop and a start would cost two epoll_ctl(). */
    if (!t->req_done)
        fc_client_read_stop(c);
    if (!c->writing)
        fc_client_timer_stop(c);
    send_to_upstream(t, bufs, n);
}

/* Connected (or reusing an idle connection): the rewritten head, then the body, go out. */
void fc_txn_send_request_head(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    struct fc_upstream *u = t->up;
    const struct fc_backend_view *v = &t->pool->views[t->backend];
    struct fc_forward_info fw = {
        .client_ip = c->ip,
        .client_ip_len = c->ip_len,
        .proto = fc_client_is_tls(c) ? "https" : "http",
        .default_host = v->address,
        .default_host_len = strlen(v->address),
        .websocket = t->websocket,
    };
    if (t->c_entry != NULL)
        fw.conditional = fc_txn_cache_conditional(t, &fw.conditional_len); /* a revalidation */
    int n = fc_rewrite_request(&t->req, &fw, t->out, t->out_cap);
    if (n < 0) {
        fc_txn_reply(t, 431, 1);
        return;
    }
    t->out_len = (uint32_t)n;
    t->head_pending = 1;
    t->phase = FC_TXN_PROXY;
    fc_stats_add(&backend_stats(t)->requests, 1);
    u->last_active = uv_now(&c->w->loop);
    fc_upstream_timer_arm(u, fc_txn_config(t)->timeouts.upstream_ms);
    fc_upstream_read_start(u);
    fc_txn_forward_body(t);
}

void fc_txn_upstream_written(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (c->closing || t->phase != FC_TXN_PROXY)
        return;
    struct fc_upstream *u = t->up;
    /* The backend is taking the request: that is progress, as a response byte would be. */
    u->last_active = uv_now(&c->w->loop);
    if (t->head_writing) {
        t->head_writing = 0;
        if (u->off < u->len)
            fc_txn_relay_response(t); /* a response that arrived while the head was going out */
        else if (!c->writing)
            fc_upstream_read_start(u);
        if (c->closing || c->txn != t || t->phase != FC_TXN_PROXY)
            return;
    }
    if (t->req_done) {
        fc_txn_in_small(t); /* the body is relayed: what follows it goes to the request memory */
        fc_client_timer_stop(c);
        /* The client is watched while the response is awaited: see fc_txn_client_left(). */
        fc_client_read_start(c);
        return;
    }
    if (t->in_off < t->in_len) {
        fc_txn_forward_body(t); /* bytes that arrived with the head */
        return;
    }
    /* Everything read so far was relayed: the buffer starts over, a larger one for a long body. */
    t->in_off = t->in_len = 0;
    if (fc_body_left(&t->parser) > t->in_cap)
        fc_txn_in_bulk(t);
    if (c->eof) {
        fc_txn_abort(t, NULL); /* the client is gone and the body is not complete */
        return;
    }
    fc_client_read_start(c);
    fc_client_timer_arm(c, fc_txn_config(t)->timeouts.idle_ms);
}

/* ------------------------------------------------------------------------ */
/* 5. The response comes back                                                */
/* ------------------------------------------------------------------------ */

int fc_txn_write_client(struct fc_txn *t, uv_buf_t *bufs, unsigned n, int more)
{
    struct fc_client *c = t->c;
    for (unsigned i = 0; i < n; i++)
        t->bytes_out += bufs[i].len;
    int rc = fc_client_write(c, &t->wreq, bufs, n, more);
    if (rc < 0) {
        fc_log_debug("client %s: write: %s", c->ip, uv_strerror(rc));
        fc_txn_abort(t, NULL);
        return -1;
    }
    if (rc == 0) {
        /* Back-pressure: read no more of the response until the client took this. */
        if (t->up != NULL)
            fc_upstream_read_stop(t->up);
        /* A client that does not read its response is a stalled client. */
        fc_client_timer_arm(c, fc_txn_config(t)->timeouts.idle_ms);
        return 0;
    }
    return 1;
}

static void send_to_client(struct fc_txn *t, uv_buf_t *bufs, unsigned n)
{
    if (fc_txn_write_client(t, bufs, n, 0) == 1)
        fc_txn_client_written(t);
}

/* Methods a client may send twice with the effect of once (RFC 9110 9.2.2), as llhttp parsed it. */
static int idempotent(const struct fc_txn *t)
{
    switch (t->parser.method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE:
        return 1;
    default:
        return 0;
    }
}

/*
 * Whether a backend this request has not tried is up: else a retry could
 * only end in the proxy's own 502, and the backend's answer is better.
 */
static int untried_backend_left(const struct fc_txn *t)
{
    for (uint32_t i = 0; i < t->pool->view.n_backends; i++)
        if ((int32_t)i != t->backend && !t->tried[i] && fc_backend_is_up(&t->pool->views[i]))
            return 1;
    return 0;
}

int fc_txn_retry_elsewhere(struct fc_txn *t, unsigned why, int status)
{
    const struct fc_conf_pool *conf = t->pool->conf;
    if (!(conf->retry_on & why) || t->resp_started || t->req_has_body || !idempotent(t) ||
        t->attempts >= conf->retries || t->websocket || !untried_backend_left(t))
        return 0;
    fc_log_debug("client %s: backend %s: %s: retried on another backend", t->c->ip,
                 t->pool->views[t->backend].address, status ? "its answer" : "it failed");
    fc_txn_outcome(t, status);
    close_upstream(t);
    if (t->c_store != NULL)
        fc_txn_cache_abort_store(t); /* the other backend's answer is stored, if any */
    t->tried[t->backend] = 1;
    t->attempts++;
    fc_stats_add(&pool_stats(t)->retries, 1);
    t->head_writing = 0;
    t->phase = FC_TXN_CONNECTING;
    /* The head is written again, from the request still parsed in place. */
    fc_txn_connect(t);
    return 1;
}

/* A keep-alive connection that died before answering: try once more on a fresh one. */
static int retry_stale(struct fc_txn *t)
{
    struct fc_upstream *u = t->up;
    if (!u->reused || u->got_bytes || t->req_has_body || t->stale_retried || t->resp_started)
        return 0;
    t->stale_retried = 1;
    if (t->c_store != NULL)
        fc_txn_cache_abort_store(t);
    struct fc_backend_shared *b = u->backend;
    fc_upstream_close(u);
    t->up = NULL;
    /* The head is written again, from the request still parsed in place, once connected. */
    t->phase = FC_TXN_CONNECTING;
    upstream_open(t, b);
    return 1;
}

void fc_txn_upstream_failed(struct fc_txn *t, const char *why)
{
    if (retry_stale(t))
        return;
    if (!t->resp_started && fc_txn_retry_elsewhere(t, FC_RETRY_RESET, 0))
        return;
    if (!t->resp_started) {
        fc_txn_outcome(t, 0);
        fc_log_warn("client %s: backend %s: %s", t->c->ip, t->pool->views[t->backend].address, why);
        fc_txn_reply(t, 502, 0);
    } else {
        fc_txn_abort(t, why);
    }
}

void fc_txn_outcome(struct fc_txn *t, int status)
{
    if (t->outcome_told || t->backend < 0)
        return;
    t->outcome_told = 1;
    struct fc_instance *inst = &t->pool->strategy[t->c->w->index];
    if (inst->plugin->desc->strategy->outcome)
        inst->plugin->desc->strategy->outcome(inst->state, (uint32_t)t->backend, status,
                                              (uv_hrtime() - t->t_start) / 1000);
}

/*
 * A final response head (or a 101) arrived: the response has started, and the
 * backend's health, counters and strategy hear of it.
 */
static void final_head(struct fc_txn *t)
{
    int status = t->resp.status;
    t->status = status;
    t->resp_started = 1;
    fc_health_report_success(&t->pool->shared[t->backend]->passive_failures);
    uint64_t took = uv_hrtime() - t->t_start;
    t->head_ns = took;
    struct fc_backend_stats *bs = backend_stats(t);
    int cls = fc_stats_class(status); /* -1 for 600..999, which llhttp lets through */
    if (cls >= 0)
        fc_stats_add(&bs->responses[cls], 1);
    fc_stats_add(&bs->buckets[fc_stats_bucket(took)], 1);
    fc_stats_add(&bs->latency_ns, took);
    fc_txn_outcome(t, status);
}

int fc_txn_insert_lines(struct fc_txn *t, int hn, const char *lines, size_t n)
{
    if (n == 0 || hn < 0)
        return hn;
    if ((size_t)hn + n > t->out_cap)
        return -1;
    memcpy(t->out + hn - 2, lines, n);
    memcpy(t->out + hn - 2 + n, "\r\n", 2);
    return hn + (int)n;
}

/*
 * The response head in t->out (hn bytes, ending with its blank line), with
 * the headers the pick added (fc_host.response_header_add()) and the
 * cache's Cache-Status (in a pool with a cache) before that end. Returns
 * the new length, or -1 when they do not fit.
 */
static int with_added_headers(struct fc_txn *t, int hn)
{
    char line[96];
    hn = fc_txn_insert_lines(t, hn, t->added.buf, t->added.len);
    return fc_txn_insert_lines(t, hn, line, fc_txn_cache_status_line(t, line, sizeof(line)));
}

/*
 * Hands the upstream connection back when the request is done with it: to
 * the idle pool when both messages ended cleanly, else closed.
 */
static void upstream_finished(struct fc_txn *t)
{
    struct fc_upstream *u = t->up;
    if (u == NULL)
        return;
    t->up = NULL;
    backend_inflight_add(t, -1);
    if (t->up_keep_alive && t->req_done && t->resp_done && !u->writing)
        fc_upstream_park(u);
    else
        fc_upstream_close(u);
}

/*
 * A 101: the backend switches protocols. Only a WebSocket handshake may be
 * answered so, and only to websocket: then the 101 goes to the client, and
 * the connection becomes a tunnel (txn_tunnel.c). `used` is the length of
 * the head in the upstream buffer; what follows it is the backend's first
 * bytes in the new protocol.
 */
static void switching(struct fc_txn *t, uv_buf_t *bufs, size_t used)
{
    struct fc_upstream *u = t->up;
    if (!t->websocket || !t->resp.upgrade_ws) {
        fc_txn_upstream_failed(t, t->websocket ? "101 Switching Protocols to other than websocket"
                                               : "unexpected 101 Switching Protocols");
        return;
    }
    int hn =
        with_added_headers(t, fc_rewrite_response(&t->resp, FC_RESP_UPGRADE, t->out, t->out_cap));
    if (hn < 0) {
        fc_txn_upstream_failed(t, "response head too large");
        return;
    }
    final_head(t);
    u->off += (uint32_t)used;
    unsigned n = 0;
    bufs[n++] = uv_buf_init(t->out, (unsigned)hn);
    if (u->off < u->len)
        bufs[n++] = uv_buf_init(u->buf + u->off, u->len - u->off);
    fc_tunnel_start(t, bufs, n);
}

/*
 * The response head is complete: relay an interim one and wait for the next,
 * or rewrite the final one into the output buffer (bufs[0]) and parse what
 * follows it. Returns the number of buffers to write (bufs[1] is the body
 * part that came with the head), or -1 when the transaction has gone on
 * without it. *start and *used describe the body bytes parsed.
 */
static int response_head(struct fc_txn *t, uv_buf_t *bufs, const char **start, size_t *used,
                         size_t avail)
{
    struct fc_client *c = t->c;
    struct fc_upstream *u = t->up;
    struct fc_request *resp = &t->resp;
    llhttp_t *p = &t->resp_parser;
    int status = p->status_code;
    resp->status = status;
    resp->http_major = p->http_major;
    resp->http_minor = p->http_minor;
    if (status == 101) {
        switching(t, bufs, *used);
        return -1;
    }
    unsigned retry = status == 502   ? FC_RETRY_502
                     : status == 503 ? FC_RETRY_503
                     : status == 504 ? FC_RETRY_504
                                     : 0;
    if (retry != 0) {
        /* The answering backend's counters: the retry moves on to another. */
        struct fc_backend_stats *bs = backend_stats(t);
        if (fc_txn_retry_elsewhere(t, retry, status)) {
            fc_stats_add(&bs->responses[fc_stats_class(status)], 1); /* not relayed, but answered */
            return -1;
        }
    }
    if (status < 100) {
        /* Not a status code HTTP knows (llhttp takes any three digits): nothing to relay. */
        fc_txn_upstream_failed(t, "invalid status code");
        return -1;
    }
    if (status < 200) {
        /* Interim response: relay it to HTTP/1.1 clients, then wait for the final one. */
        int hn = t->client_10 ? 0 : fc_rewrite_response(resp, 0, t->out, t->out_cap);
        u->off += (uint32_t)*used;
        t->up_head_done = 0;
        /* The next head starts here: move it to the front, so that a series of
         * interim responses never fills the buffer. */
        uint32_t left = u->len - u->off;
        memmove(u->buf, u->buf + u->off, left);
        u->len = left;
        u->off = 0;
        if (hn > 0) {
            uv_buf_t b = uv_buf_init(t->out, (unsigned)hn);
            send_to_client(t, &b, 1);
        } else {
            fc_txn_relay_response(t);
        }
        return -1;
    }
    int cached = t->c_status != NULL ? fc_txn_cache_response(t) : 0;
    if (cached < 0) {
        fc_txn_outcome(t, status);
        fc_log_warn("client %s: pool %s: a stored answer validated by a 304 does not fit the "
                    "output buffer: answered 502",
                    c->ip, t->pool->view.name);
        fc_txn_reply(t, 502, 0);
        return -1;
    }
    if (cached > 0) {
        /* A 304 refreshed the stale entry, which answers: the backend's part is over. */
        final_head(t);
        u->off += (uint32_t)*used;
        t->resp_done = 1;
        t->up_keep_alive =
            t->up_msg_done && llhttp_should_keep_alive(&t->resp_parser) && u->off == u->len;
        upstream_finished(t);
        fc_txn_cache_send(t);
        return -1;
    }
    int chunked = (p->flags & F_CHUNKED) != 0;
    int bodiless = t->head_req || status == 204 || status == 304;
    int delimited = bodiless || chunked || (p->flags & F_CONTENT_LENGTH);
    t->dechunk = chunked && t->client_10 && !bodiless;
    if (!delimited || t->dechunk)
        t->keep_alive = 0; /* the end of the body is the end of the connection */
    unsigned flags = 0;
    if (!t->keep_alive || c->w->draining)
        flags |= FC_RESP_CLOSE;
    else if (t->client_10)
        flags |= FC_RESP_KEEPALIVE;
    if (t->dechunk)
        flags |= FC_RESP_DECHUNK;
    int hn = with_added_headers(t, fc_rewrite_response(resp, flags, t->out, t->out_cap));
    if (hn < 0) {
        fc_txn_upstream_failed(t, "response head too large");
        return -1;
    }
    final_head(t);
    bufs[0] = uv_buf_init(t->out, (unsigned)hn);
    /* The head may have ended exactly here; the body (if any) follows. */
    const char *body = *start + *used;
    size_t rest = avail - *used;
    u->off += (uint32_t)*used;
    *start = body;
    *used = 0;
    if (t->up_msg_done || rest == 0)
        return 1;
    fc_parser_resume(p);
    t->dechunk_w = u->off;
    enum llhttp_errno e = llhttp_execute(p, body, rest);
    if (e == HPE_OK) {
        *used = rest;
    } else if (e == HPE_PAUSED) {
        *used = (size_t)(llhttp_get_error_pos(p) - body);
    } else {
        /* The head goes out; the broken body ends the connection after it. */
        const char *why = llhttp_get_error_reason(p);
        const char *backend = t->pool->views[t->backend].address;
        t->keep_alive = 0;
        t->up_keep_alive = 0;
        send_to_client(t, bufs, 1);
        if (!c->closing) {
            fc_log_warn("client %s: backend %s: %s", c->ip, backend, why);
            fc_client_reset(c); /* the body will not come: see fc_txn_abort() */
        }
        return -1;
    }
    return 1;
}

/*
 * Parses what the upstream buffer holds and relays it: the response head
 * (rewritten) when it is complete, then body bytes. Called again after each
 * write to the client completes, until the buffer is consumed.
 */
void fc_txn_relay_response(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    struct fc_upstream *u = t->up;
    if (c->writing || t->resp_done)
        return;
    if (t->head_writing) {
        /* The output buffer still holds the request head being sent: answer after it. */
        fc_upstream_read_stop(u);
        return;
    }
    uv_buf_t bufs[2];
    unsigned n = 0;
    const char *start = u->buf + u->off;
    size_t avail = u->len - u->off;
    if (avail == 0)
        return;
    fc_parser_resume(&t->resp_parser);
    t->dechunk_w = u->off;
    enum llhttp_errno e = llhttp_execute(&t->resp_parser, start, avail);
    size_t used;
    if (e == HPE_OK) {
        used = avail;
    } else if (fc_parser_paused(e)) {
        used = (size_t)(llhttp_get_error_pos(&t->resp_parser) - start);
    } else {
        fc_txn_upstream_failed(t, llhttp_get_error_reason(&t->resp_parser));
        return;
    }

    if (!t->up_head_done) {
        /* Still in the head: it must fit in the buffer. Read on for the rest. */
        u->off += (uint32_t)used;
        if (u->len == u->buf_cap) {
            fc_txn_upstream_failed(t, "response head too large");
            return;
        }
        fc_upstream_read_start(u);
        return;
    }
    if (!t->resp_started) {
        int hn = response_head(t, bufs, &start, &used, avail);
        if (hn < 0)
            return;
        n = (unsigned)hn;
    }

    if (used > 0) {
        if (t->dechunk) {
            uint32_t from = (uint32_t)(start - u->buf);
            if (t->dechunk_w > from)
                bufs[n++] = uv_buf_init((char *)start, t->dechunk_w - from);
        } else {
            bufs[n++] = uv_buf_init((char *)start, (unsigned)used);
        }
        u->off += (uint32_t)used;
    }
    if (t->up_msg_done) {
        t->resp_done = 1;
        t->up_keep_alive = llhttp_should_keep_alive(&t->resp_parser) && u->off == u->len;
    }
    if (n > 0) {
        /* More of a body of known length follows: the socket may hold a partial segment for
         * it. The write stops reading the backend if the client lags. */
        int more = !t->resp_done && fc_body_left(&t->resp_parser) > 0;
        if (fc_txn_write_client(t, bufs, n, more) == 1)
            fc_txn_client_written(t);
        return;
    }
    if (t->resp_done)
        fc_txn_end(t);
}

/* ------------------------------------------------------------------------ */
/* 6. The response went out: the end, and the next request                   */
/* ------------------------------------------------------------------------ */

static void access_log(struct fc_txn *t)
{
    struct fc_access_entry e = {
        .client_ip = t->c->ip,
        .request_line = t->log_req,
        .status = t->status,
        .bytes_sent = t->bytes_out,
        .backend = (t->pool && t->backend >= 0) ? t->pool->views[t->backend].address : NULL,
        .pool = t->pool ? t->pool->view.name : NULL,
        .generation = t->gen ? t->gen->id : t->c->w->gen->id,
        .started_ns = t->t_start,
        .connect_ns = t->connect_ns,
        .head_ns = t->head_ns,
    };
    fc_access_log_write(t->c->w, &e);
}

void fc_txn_log(struct fc_txn *t)
{
    struct fc_listener_stats *ls = fc_txn_listener_stats(t);
    int cls = fc_stats_class(t->status);
    if (cls >= 0)
        fc_stats_add(&ls->responses[cls], 1);
    fc_stats_add(&ls->bytes_out, t->bytes_out);
    access_log(t);
}

/* Ends the transaction's hold on its generation and backend, if it has one. */
void fc_txn_release(struct fc_txn *t)
{
    struct fc_worker *w = t->c->w;
    close_upstream(t);
    if (t->pool != NULL && t->pool->cache != NULL)
        fc_txn_cache_release(t);
    if (t->gen != NULL) {
        struct fc_generation *g = t->gen;
        t->gen = NULL;
        if (fc_generation_request_end(g, w->index) == 0 && g != w->gen)
            w->on_generation_done(w, g);
    }
    if (t->tried != t->tried_small)
        free(t->tried);
    t->tried = NULL;
}

/*
 * A complete response went out and the connection ends: release, then close.
 * A client that said it sends nothing more (Connection: close, or HTTP/1.0
 * without keep-alive; RFC 9112 9.6), and whose input was all read, is closed
 * at once, as nginx does: nothing unread can make the kernel reset the
 * connection. Any other lingers (fc_client_linger()).
 */
static void txn_linger(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (c->closing || c->lingering)
        return;
    int quiet = t->client_close && t->req_done && t->in_off == t->in_len;
    fc_txn_release(t);
    fc_txn_free(c);
    if (quiet)
        fc_client_close(c);
    else
        fc_client_linger(c);
}

void fc_txn_client_written(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (c->closing)
        return;
    if (t->phase == FC_TXN_CACHE) {
        fc_txn_cache_send(t);
        return;
    }
    if (t->phase == FC_TXN_REPLY) {
        if (t->close_after_reply) {
            fc_txn_log(t);
            txn_linger(t);
            return;
        }
        fc_txn_end(t);
        return;
    }
    if (t->phase != FC_TXN_PROXY && t->phase != FC_TXN_CONNECTING)
        return;
    fc_client_timer_stop(c);
    if (t->up != NULL)
        t->up->last_active = uv_now(&c->w->loop); /* the client's wait ends: a fresh count */
    if (t->resp_done) {
        fc_txn_end(t);
        return;
    }
    struct fc_upstream *u = t->up;
    if (u == NULL)
        return;
    if (u->off < u->len) {
        fc_txn_relay_response(t);
        return;
    }
    u->off = u->len = 0;
    /* A long body of known length: the rest is read into a larger buffer. */
    if (fc_body_left(&t->resp_parser) > FC_UPSTREAM_BUF_SIZE)
        fc_upstream_bulk(u);
    fc_upstream_read_start(u);
    if (!t->req_done && c->reading)
        fc_client_timer_arm(c, fc_txn_config(t)->timeouts.idle_ms);
}

/*
 * The response has been written in full. The upstream connection goes back to
 * the pool if both messages ended cleanly; the client connection waits for its
 * next request, which may already be in the buffer (pipelining).
 */
void fc_txn_end(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    fc_txn_log(t);
    upstream_finished(t);
    int keep = t->keep_alive && t->req_done && !c->w->draining && !c->eof;
    fc_txn_release(t);
    if (!keep) {
        txn_linger(t);
        return;
    }
    /* Next request. */
    t->phase = FC_TXN_IDLE;
    t->pool = NULL;
    t->backend = -1;
    t->head_done = t->msg_done = t->req_done = 0;
    t->resp_started = t->resp_done = 0;
    t->err_status = 0;
    t->head_pending = 0;
    /* The message is complete: start the parser afresh (this also leaves the state
     * in which an Upgrade request pauses, since the upgrade never happens). */
    llhttp_reset(&t->parser);
    uint32_t left = t->in_len - t->in_off;
    if (left > 0) {
        memmove(t->in, t->in + t->in_off, left);
        t->in_len = left;
        t->in_off = 0;
    } else {
        fc_txn_free(c); /* idle: no memory held beyond the connection itself */
    }
    fc_client_timer_arm(c, c->w->gen->cfg->timeouts.idle_ms);
    fc_client_read_start(c);
    if (left > 0)
        fc_txn_process(t);
}

/*
 * Runs the connection's state machine on what it has read. Re-entry (a step
 * that completes synchronously and starts the next pipelined request) is
 * turned into another turn of the loop, so the stack stays flat. A step may
 * end the transaction (c->txn changes): the loop stops there.
 */
void fc_txn_process(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (t->in_process) {
        t->again = 1;
        return;
    }
    t->in_process = 1;
    do {
        t->again = 0;
        if (t->phase == FC_TXN_IDLE || t->phase == FC_TXN_HEAD)
            fc_txn_parse_head(t);
        else if (t->phase == FC_TXN_PROXY && !t->req_done)
            fc_txn_forward_body(t);
    } while (c->txn == t && t->again && !c->closing);
    if (c->txn == t)
        t->in_process = 0;
}

/* ------------------------------------------------------------------------ */
/* The proxy's own replies, and giving up                                    */
/* ------------------------------------------------------------------------ */

/*
 * Answers the current request with `status`. The connection stays open only
 * when the request was read to its end and nothing forces a close.
 */
void fc_txn_reply(struct fc_txn *t, int status, int close)
{
    struct fc_client *c = t->c;
    if (c->closing)
        return;
    close_upstream(t);
    if (t->resp_started || c->writing) {
        /* Part of a response went out, or is going out: nothing valid can follow. */
        fc_client_close(c);
        return;
    }
    if (!t->req_done || !t->keep_alive || c->w->draining)
        close = 1;
    t->close_after_reply = close;
    t->status = status;
    t->phase = FC_TXN_REPLY;
    int code = fc_stats_proxy_index(status);
    if (code >= 0)
        fc_stats_add(&fc_txn_listener_stats(t)->proxy_responses[code], 1);
    t->resp_started = 1;
    fc_client_read_stop(c);
    int n =
        fc_error_response(status, close, status == 429 ? t->retry_after_s : 0, t->out, t->out_cap);
    uv_buf_t buf = uv_buf_init(t->out, (unsigned)n);
    send_to_client(t, &buf, 1);
}

/*
 * The client left while its response was awaited (its whole request read):
 * nothing will read the answer, so the backend's work is abandoned, its
 * connection closed, and the request logged as 499, as nginx does.
 */
void fc_txn_client_left(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    fc_log_debug("client %s: left while its response was awaited: request abandoned", c->ip);
    fc_stats_add(&fc_txn_listener_stats(t)->abandoned, 1);
    t->status = 499;
    access_log(t);
    fc_client_close(c); /* the upstream connection goes with the request (fc_txn_release) */
}

/* Ends the transaction and the connection after an error nothing can be answered to. */
void fc_txn_abort(struct fc_txn *t, const char *why)
{
    if (why != NULL && t->pool != NULL && t->backend >= 0)
        fc_log_warn("client %s: backend %s: %s", t->c->ip, t->pool->views[t->backend].address, why);
    /*
     * A backend's response that started and cannot end: the connection is
     * reset, so that the client cannot take a cut body (delimited by the
     * close) for a whole one.
     */
    if ((t->phase == FC_TXN_PROXY && t->resp_started && !t->resp_done) ||
        (t->phase == FC_TXN_CACHE && t->c_off < t->c_len))
        fc_client_reset(t->c);
    else
        fc_client_close(t->c);
}
