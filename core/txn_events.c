/*
 * What the events of the two transports mean for the transaction: the
 * tables of struct fc_client_events and struct fc_upstream_events, whose
 * handlers look at the request's phase and lead to the steps of txn.c.
 * Also the transaction room's set-up, and winding connections down.
 */
#include "txn_state.h"

#include "health.h"
#include "listener.h"
#include "log.h"
#include "stats.h"
#include "txn.h"
#include "upstream.h"

/* ------------------------------------------------------------------------ */
/* What the client transport reports                                         */
/* ------------------------------------------------------------------------ */

static void client_alloc(struct fc_client *c, uv_buf_t *buf)
{
    struct fc_txn *t = c->txn;
    if (t == NULL && (t = fc_txn_acquire(c)) == NULL) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS */
        return;
    }
    buf->base = t->in + t->in_len;
    buf->len = t->in_cap - t->in_len;
    if (fc_txn_in_is_bulk(t)) {
        /* No further than the body's end: what follows it goes to the request memory. */
        uint64_t unparsed = t->in_len - t->in_off, left = fc_body_left(&t->parser);
        uint64_t rest = left > unparsed ? left - unparsed : 0;
        if (buf->len > rest)
            buf->len = (size_t)rest;
    }
}

static void client_on_read(struct fc_client *c, size_t n)
{
    struct fc_txn *t = c->txn;
    t->in_len += (uint32_t)n;
    fc_stats_add(&fc_stats_listener(c->listener->stats, c->w->index)->bytes_in, n);
    if (t->phase == FC_TXN_TUNNEL)
        fc_tunnel_from_client(t);
    else
        fc_txn_process(t);
}

static void client_on_read_end(struct fc_client *c, int status)
{
    struct fc_txn *t = c->txn;
    if (t != NULL && t->phase == FC_TXN_TUNNEL) {
        fc_tunnel_client_ended(t, status);
        return;
    }
    if (status == UV_ENOBUFS) {
        if (t == NULL)
            fc_client_close(c); /* out of memory for its request */
        /* else the buffer is full (pipelined requests, or a body waiting for its
         * backend): reading resumes once it has been drained */
        return;
    }
    if (t == NULL) {
        fc_client_close(c); /* gone between requests */
        return;
    }
    switch (t->phase) {
    case FC_TXN_IDLE:
    case FC_TXN_HEAD:
        fc_client_close(c); /* gone between requests or in the middle of a head */
        break;
    case FC_TXN_RATELIMIT: /* the close waits for the verdict: see client_on_close() */
    case FC_TXN_CONNECTING:
    case FC_TXN_PROXY:
        /*
         * The whole request read and its response awaited: an EOF right after
         * the request is a half-close (answer, then close); a later one, or
         * a reset, means the client left (see fc_txn_client_left()). TCP
         * cannot tell a half-close from a close; the time can, nearly always.
         */
        if (t->req_done && !t->resp_started) {
            uint64_t since = uv_now(&c->w->loop) - t->req_end;
            if (status == UV_EOF && since <= fc_txn_config(t)->timeouts.half_close_ms)
                t->keep_alive = 0;
            else
                fc_txn_client_left(t);
            break;
        }
        /*
         * Half-closed after the request, or with the rest of it in the buffer
         * still to be relayed (a body behind a head that waits for its
         * backend): answer, then close. Relaying notices a body that the
         * buffer does not complete. Anything else will never be complete.
         */
        if (status == UV_EOF && (t->req_done || t->in_off < t->in_len))
            t->keep_alive = 0;
        else
            fc_txn_abort(t, NULL);
        break;
    case FC_TXN_REPLY:
    case FC_TXN_CACHE: /* reading is stopped: the write notices a client that left */
    case FC_TXN_TUNNEL:
        break;
    }
}

static void client_on_written(struct fc_client *c, int status)
{
    struct fc_txn *t = c->txn;
    if (t->phase == FC_TXN_TUNNEL) {
        fc_tunnel_client_written(t, status);
        return;
    }
    if (status < 0) {
        fc_log_debug("client %s: write: %s", c->ip, uv_strerror(status));
        fc_txn_abort(t, NULL);
        return;
    }
    fc_txn_client_written(t);
}

static void client_on_timeout(struct fc_client *c)
{
    struct fc_txn *t = c->txn;
    if (t == NULL) {
        fc_client_close(c); /* keep-alive timeout: nothing to answer */
        return;
    }
    switch (t->phase) {
    case FC_TXN_IDLE:
        fc_client_close(c);
        break;
    case FC_TXN_HEAD:
        fc_log_debug("client %s: request head not received in time", c->ip);
        fc_txn_reply(t, 408, 1);
        break;
    case FC_TXN_PROXY:
    case FC_TXN_CONNECTING:
    case FC_TXN_RATELIMIT: /* not armed while waiting for a verdict */
        if (!t->resp_started && !t->req_done)
            fc_txn_reply(t, 408, 1);
        else
            fc_txn_abort(t, "client stalled");
        break;
    case FC_TXN_REPLY:
        fc_client_close(c);
        break;
    case FC_TXN_CACHE:
        fc_txn_abort(t, NULL); /* a client that stopped reading its answer from the cache */
        break;
    case FC_TXN_TUNNEL:
        fc_tunnel_timeout(t);
        break;
    }
}

static int client_on_close(struct fc_client *c)
{
    struct fc_txn *t = c->txn;
    if (t->rl_waiting) {
        /* The rate limiter holds a handle to this request: close once it answers. */
        t->close_deferred = 1;
        return 1;
    }
    if (t->phase == FC_TXN_TUNNEL)
        fc_tunnel_closed(t);
    fc_txn_release(t);
    /* A pending write's request lives in t: libuv cancels it, with its
     * callback, before the close callback, where t then goes. */
    if (!c->writing)
        fc_txn_free(c);
    return 0;
}

static void client_on_closed(struct fc_client *c)
{
    fc_txn_free(c);
}

static const struct fc_client_events client_events = {
    .alloc = client_alloc,
    .on_read = client_on_read,
    .on_read_end = client_on_read_end,
    .on_written = client_on_written,
    .on_timeout = client_on_timeout,
    .on_close = client_on_close,
    .on_closed = client_on_closed,
};

/* ------------------------------------------------------------------------ */
/* What the upstream transport reports                                       */
/* ------------------------------------------------------------------------ */

static void upstream_on_connect(struct fc_upstream *u, int status)
{
    if (status < 0)
        fc_txn_connect_failed(u->txn, status, 0);
    else
        fc_txn_connected(u->txn);
}

static void upstream_on_read(struct fc_upstream *u)
{
    if (u->txn->phase == FC_TXN_TUNNEL)
        fc_tunnel_from_backend(u->txn);
    else
        fc_txn_relay_response(u->txn);
}

static void upstream_on_read_end(struct fc_upstream *u, int status)
{
    struct fc_txn *t = u->txn;
    if (t->phase == FC_TXN_TUNNEL) {
        fc_tunnel_backend_ended(t, status);
        return;
    }
    if (status == UV_EOF && t->up_head_done && !t->resp_done) {
        /* A body delimited by the end of the connection ends here. */
        t->up_keep_alive = 0;
        fc_parser_resume(&t->resp_parser);
        /*
         * A parser paused at the end of the head has not entered the body
         * yet, and llhttp_finish() would call that an invalid EOF state: an
         * empty run moves it into the body, whose end the EOF then is.
         */
        llhttp_execute(&t->resp_parser, u->buf + u->len, 0);
        enum llhttp_errno fe = llhttp_finish(&t->resp_parser);
        if ((fe == HPE_OK || fe == HPE_PAUSED) && t->up_msg_done) {
            t->resp_done = 1;
            if (!t->c->writing)
                fc_txn_end(t);
            return;
        }
    }
    fc_txn_upstream_failed(t, status == UV_EOF ? "connection closed before the response ended"
                                               : uv_strerror(status));
}

static void upstream_on_written(struct fc_upstream *u, int status)
{
    struct fc_txn *t = u->txn;
    if (t->phase == FC_TXN_TUNNEL) {
        fc_tunnel_backend_written(t, status);
        return;
    }
    if (status < 0) {
        fc_log_debug("backend %s: write: %s", t->pool->views[t->backend].address,
                     uv_strerror(status));
        /* Whatever the backend managed to answer is read on; if nothing, the read fails. */
        t->head_writing = 0;
        if (u->off < u->len)
            fc_txn_relay_response(t);
        else if (!t->c->writing)
            fc_upstream_read_start(u);
        return;
    }
    fc_txn_upstream_written(t);
}

/*
 * upstream_ms counts the backend's silence. Rather than restarting the timer
 * on every read and write, activity only notes the time, and the timer, when
 * it fires, sleeps again for what is left. Waiting on a slow client (to read
 * the response, or to send the rest of its body while the backend has taken
 * all we had) is not the backend's fault: it starts the count afresh.
 */
static void upstream_on_timeout(struct fc_upstream *u)
{
    struct fc_txn *t = u->txn;
    struct fc_client *c = t->c;
    if (t->phase == FC_TXN_TUNNEL)
        return; /* not armed in a tunnel: the client's timer keeps tunnel_ms */
    if (!u->connected) {
        fc_txn_connect_failed(t, UV_ETIMEDOUT, 1);
        return;
    }
    uint64_t now = uv_now(&c->w->loop);
    uint64_t limit = fc_txn_config(t)->timeouts.upstream_ms;
    if (c->writing || t->resp_done || (!t->req_done && !u->writing))
        u->last_active = now; /* waiting on the client (its response, or its body) */
    if (now - u->last_active < limit) {
        fc_upstream_timer_arm(u, limit - (now - u->last_active));
        return;
    }
    fc_log_warn("client %s: backend %s: no response within %u ms", c->ip,
                t->pool->views[t->backend].address, fc_txn_config(t)->timeouts.upstream_ms);
    fc_health_report_failure(t->pool, (uint32_t)t->backend, "response timed out");
    if (!t->resp_started && fc_txn_retry_elsewhere(t, FC_RETRY_504, 0))
        return;
    if (!t->resp_started) {
        fc_txn_outcome(t, 0);
        fc_txn_reply(t, 504, 0);
    } else {
        fc_txn_abort(t, NULL);
    }
}

static const struct fc_upstream_events upstream_events = {
    .on_connect = upstream_on_connect,
    .on_read = upstream_on_read,
    .on_read_end = upstream_on_read_end,
    .on_written = upstream_on_written,
    .on_timeout = upstream_on_timeout,
};

/* ------------------------------------------------------------------------ */
/* Set-up and winding down                                                   */
/* ------------------------------------------------------------------------ */

void fc_txn_init(void)
{
    fc_txn_parsers_init();
    fc_client_set_events(&client_events);
    fc_upstream_set_events(&upstream_events);
    fc_generation_set_ratelimit_done(fc_txn_ratelimit_done);
}

static void wind_down_one(struct fc_client *c, void *arg)
{
    const struct fc_listener *l = arg;
    if ((l != NULL && c->listener != l) || c->lingering)
        return; /* another listener's, or already on its way out */
    struct fc_txn *t = c->txn;
    if (t == NULL || (t->phase == FC_TXN_IDLE && t->in_len == 0))
        fc_client_close(c);
    else
        t->keep_alive = 0;
}

void fc_txn_wind_down(struct fc_worker *w, struct fc_listener *l)
{
    fc_clients_each(w, wind_down_one, l);
}
