/*
 * The tunnel: what a connection becomes once the backend answers a
 * WebSocket handshake with 101 (RFC 6455). From then on the bytes of both
 * sides go through untouched, whatever protocol they speak.
 *
 * Each direction has the buffer it already had: the client's input buffer
 * (t->in) carries bytes towards the backend, the upstream connection's
 * buffer (u->buf) bytes towards the client. A direction reads into its
 * buffer, writes it out, and reads again only once the write has gone:
 * while one side does not take what it is sent, nothing more is read from
 * the other. A fast sender in front of a slow reader therefore costs the
 * two buffers and what the kernels hold, never more.
 *
 * An end of one side's stream (a FIN, or close_notify over TLS) is passed
 * on as the end of our writing to the other side, once what it still had
 * to get has gone out; that side may go on sending. The tunnel ends when
 * both directions have ended, when a side fails (the other is then closed
 * at once), or after timeouts.tunnel_ms without a byte either way. It keeps
 * the generation its request began on until then: a reload does not cut
 * it, and SIGTERM closes it when timeouts.shutdown_ms runs out.
 *
 * Everything here runs on the connection's worker.
 */
#include "txn_state.h"

#include "listener.h"
#include "log.h"
#include "stats.h"
#include "upstream.h"

/* A byte went one way or the other: the idle limit starts again (lazily). */
static void active(struct fc_txn *t)
{
    fc_client_timer_arm(t->c, fc_txn_config(t)->timeouts.tunnel_ms);
}

/* Both directions have ended and nothing is on its way: the tunnel is done. */
static void maybe_end(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (t->tun_client_eof && t->tun_backend_eof && !c->writing && !t->up->writing)
        fc_client_close(c); /* the upstream connection goes with the request */
}

/* A side failed: the tunnel cannot go on, and the other side learns it from a reset. */
static void cut(struct fc_txn *t, const char *side, int status)
{
    fc_log_debug("client %s: tunnel to %s: %s: %s", t->c->ip, t->pool->views[t->backend].address,
                 side, uv_strerror(status));
    fc_client_reset(t->c);
}

static void to_client(struct fc_txn *t, uv_buf_t *bufs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        t->bytes_out += bufs[i].len;
    fc_upstream_read_stop(t->up); /* nothing more from the backend until the client took this */
    int rc = fc_client_write(t->c, &t->wreq, bufs, n, 0);
    if (rc < 0)
        cut(t, "client write", rc);
    else if (rc == 1)
        fc_tunnel_client_written(t, 0);
}

static void to_backend(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    uv_buf_t b = uv_buf_init(t->in + t->in_off, t->in_len - t->in_off);
    t->in_off = t->in_len;
    fc_client_read_stop(c); /* nothing more from the client until the backend took this */
    int rc = fc_upstream_write(t->up, &b, 1, 0);
    if (rc < 0)
        cut(t, "backend write", rc);
    else if (rc == 1)
        fc_tunnel_backend_written(t, 0);
}

void fc_tunnel_start(struct fc_txn *t, uv_buf_t *bufs, unsigned n)
{
    struct fc_client *c = t->c;
    struct fc_upstream *u = t->up;
    t->phase = FC_TXN_TUNNEL;
    t->tun_client_eof = c->eof; /* it may have half-closed behind its handshake */
    t->tun_backend_eof = 0;
    t->keep_alive = 0;
    fc_stats_add(&fc_txn_listener_stats(t)->tunnels_opened, 1);
    fc_upstream_timer_stop(u); /* upstream_ms is for responses: the tunnel has tunnel_ms */
    active(t);
    u->off = u->len; /* the head and what follows it go out now */
    /* What the client sent behind its handshake goes first, then it is read again. */
    if (t->in_off < t->in_len) {
        to_backend(t);
    } else {
        t->in_off = t->in_len = 0;
        if (c->eof)
            fc_upstream_shutdown(u);
        else
            fc_client_read_start(c);
    }
    if (c->txn != t || c->closing)
        return;
    to_client(t, bufs, n);
}

void fc_tunnel_from_client(struct fc_txn *t)
{
    if (t->up->writing)
        return; /* it goes when the write before it has */
    active(t);
    to_backend(t);
}

void fc_tunnel_backend_written(struct fc_txn *t, int status)
{
    struct fc_client *c = t->c;
    if (c->closing)
        return;
    if (status < 0) {
        cut(t, "backend write", status);
        return;
    }
    active(t);
    if (t->in_off < t->in_len) {
        to_backend(t); /* read while the write before it was going */
        return;
    }
    t->in_off = t->in_len = 0;
    if (t->tun_client_eof) {
        fc_upstream_shutdown(t->up); /* the client's end, passed on */
        maybe_end(t);
        return;
    }
    fc_client_read_start(c);
}

void fc_tunnel_client_ended(struct fc_txn *t, int status)
{
    if (status == UV_ENOBUFS)
        return; /* the buffer is full: reading resumes once the backend took it */
    if (status != UV_EOF) {
        cut(t, "client read", status);
        return;
    }
    t->tun_client_eof = 1;
    if (!t->up->writing && t->in_off == t->in_len) {
        fc_upstream_shutdown(t->up);
        maybe_end(t);
    }
}

void fc_tunnel_from_backend(struct fc_txn *t)
{
    struct fc_upstream *u = t->up;
    if (t->c->writing)
        return;
    active(t);
    uv_buf_t b = uv_buf_init(u->buf + u->off, u->len - u->off);
    u->off = u->len;
    to_client(t, &b, 1);
}

void fc_tunnel_client_written(struct fc_txn *t, int status)
{
    struct fc_client *c = t->c;
    struct fc_upstream *u = t->up;
    if (c->closing)
        return;
    if (status < 0) {
        cut(t, "client write", status);
        return;
    }
    active(t);
    if (u->off < u->len) {
        fc_tunnel_from_backend(t); /* read while the write before it was going */
        return;
    }
    u->off = u->len = 0;
    if (t->tun_backend_eof) {
        fc_client_shutdown(c); /* the backend's end, passed on */
        maybe_end(t);
        return;
    }
    fc_upstream_read_start(u);
}

void fc_tunnel_backend_ended(struct fc_txn *t, int status)
{
    if (status != UV_EOF) {
        cut(t, "backend read", status);
        return;
    }
    t->tun_backend_eof = 1;
    if (!t->c->writing && t->up->off == t->up->len) {
        fc_client_shutdown(t->c);
        maybe_end(t);
    }
}

void fc_tunnel_timeout(struct fc_txn *t)
{
    fc_log_debug("client %s: tunnel to %s: idle for %u ms: closed", t->c->ip,
                 t->pool->views[t->backend].address, fc_txn_config(t)->timeouts.tunnel_ms);
    fc_client_close(t->c);
}

void fc_tunnel_closed(struct fc_txn *t)
{
    fc_stats_add(&fc_txn_listener_stats(t)->tunnels_closed, 1);
    fc_txn_log(t);
}
