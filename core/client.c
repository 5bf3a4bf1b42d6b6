/*
 * The client transport; see client.h.
 */
#include "client.h"

#include "config.h"
#include "freelist.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "stats.h"
#include "stream.h"
#include "tls.h"
#include "tls_context.h"

#include <fulcrum/plugin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a closing connection's unread input is drained; see fc_client_linger(). */
#define LINGER_MS 2000

struct fc_client_set {
    struct fc_client *head; /* every open client connection (for draining) */
    uint32_t n;
    struct fc_freelist free;
    struct fc_freelist free_shutdown; /* uv_shutdown_t for lingering closes */
    struct fc_timeouts timeouts;      /* every connection's deadline */
    uv_tcp_t first;                   /* see fc_client_worker_init() */
};

static const struct fc_client_events *events;

static void timeout_cb(struct fc_timeout *t);

void fc_client_set_events(const struct fc_client_events *ev)
{
    events = ev;
}

int fc_client_worker_init(struct fc_worker *w)
{
    w->clients = calloc(1, sizeof(*w->clients));
    if (w->clients == NULL)
        return FC_ENOMEM;
    /*
     * libuv opens a reserve descriptor for each loop with the loop's first
     * stream handle. Open it now, with a handle closed at once, so that the
     * worker's descriptors do not grow with its first client (operators and
     * the leak tests watch that count).
     */
    uv_tcp_init(&w->loop, &w->clients->first);
    uv_close((uv_handle_t *)&w->clients->first, NULL);
    fc_timeouts_init(&w->clients->timeouts, &w->loop, timeout_cb);
    return 0;
}

void fc_client_worker_free(struct fc_worker *w)
{
    if (w->clients == NULL)
        return;
    fc_freelist_clear(&w->clients->free);
    fc_freelist_clear(&w->clients->free_shutdown);
    free(w->clients);
    w->clients = NULL;
}

uint32_t fc_clients_count(const struct fc_worker *w)
{
    return w->clients->n;
}

void fc_clients_each(struct fc_worker *w, void (*fn)(struct fc_client *c, void *arg), void *arg)
{
    struct fc_client *c = w->clients->head;
    while (c != NULL) {
        struct fc_client *next = c->next;
        fn(c, arg);
        c = next;
    }
}

void fc_clients_close(struct fc_worker *w)
{
    struct fc_client *c = w->clients->head;
    while (c != NULL) {
        struct fc_client *next = c->next;
        fc_client_close(c);
        c = next;
    }
}

static void tls_failed(struct fc_client *c, enum fc_tls_failure why);

/* ------------------------------------------------------------------------ */
/* Timer                                                                     */
/* ------------------------------------------------------------------------ */

static void timeout_cb(struct fc_timeout *t)
{
    struct fc_client *c = (struct fc_client *)((char *)t - offsetof(struct fc_client, timeout));
    if (c->lingering)
        fc_client_close(c);
    else if (c->tls != NULL && !c->tls->handshaken)
        tls_failed(c, FC_TLS_FAIL_TIMEOUT);
    else
        events->on_timeout(c);
}

void fc_client_timer_arm(struct fc_client *c, uint32_t ms)
{
    fc_timeout_arm(&c->w->clients->timeouts, &c->timeout, ms);
}

void fc_client_timer_stop(struct fc_client *c)
{
    fc_timeout_stop(&c->w->clients->timeouts, &c->timeout);
}

/* ------------------------------------------------------------------------ */
/* Reading and writing                                                       */
/* ------------------------------------------------------------------------ */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct fc_client *c = h->data;
    if (c->tls != NULL)
        fc_tls_read_buffer(c->w->tls, buf); /* ciphertext: the plaintext goes where alloc says */
    else
        events->alloc(c, buf);
}

static void tls_read(struct fc_client *c, ssize_t n, const uv_buf_t *buf);

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fc_client *c = s->data;
    if (c->tls != NULL) {
        tls_read(c, n, buf);
        return;
    }
    if (n > 0) {
        events->on_read(c, (size_t)n);
        return;
    }
    if (n == 0)
        return;
    fc_client_read_stop(c);
    if (n != UV_ENOBUFS)
        c->eof = 1;
    events->on_read_end(c, (int)n);
}

static void sock_read_start(struct fc_client *c)
{
    if (!c->sock_reading && uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
        c->sock_reading = 1;
}

void fc_client_read_start(struct fc_client *c)
{
    if (c->reading || c->eof || c->closing)
        return;
    if (c->tls != NULL && fc_tls_io_pending(c->tls)) {
        /* Input waits already: it comes from the loop, not from inside this call. */
        c->reading = 1;
        fc_tls_io_schedule(c->tls);
        return;
    }
    sock_read_start(c);
    c->reading = c->sock_reading;
}

void fc_client_read_stop(struct fc_client *c)
{
    if (!c->reading)
        return;
    if (c->sock_reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = c->sock_reading = 0;
}

static void write_cb(uv_write_t *req, int status)
{
    struct fc_client *c = req->data;
    c->writing = 0;
    if (c->closing)
        return;
    events->on_written(c, status);
}

int fc_client_write(struct fc_client *c, uv_write_t *req, uv_buf_t *bufs, unsigned n, int more)
{
    int rc;
    if (c->tls != NULL) {
        rc = fc_tls_io_write(c->tls, bufs, n);
    } else {
        req->data = c;
        rc = fc_stream_write((uv_stream_t *)&c->tcp, req, bufs, n, write_cb, more);
    }
    if (rc == 0)
        c->writing = 1;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The TLS variant                                                           */
/* ------------------------------------------------------------------------ */

/* What a plain HTTP request to a TLS port gets before the close. */
#define PLAINTEXT_BODY "This port speaks TLS: send the request with https://\n"
_Static_assert(sizeof(PLAINTEXT_BODY) - 1 == 53, "the Content-Length below");
static const char plaintext_reply[] = "HTTP/1.1 400 Bad Request\r\n"
                                      "Content-Type: text/plain\r\n"
                                      "Content-Length: 53\r\n"
                                      "Connection: close\r\n"
                                      "\r\n" PLAINTEXT_BODY;

static void tls_failed(struct fc_client *c, enum fc_tls_failure why)
{
    fc_stats_add(&fc_stats_listener(c->listener->stats, c->w->index)->tls_failures[why], 1);
    fc_log_debug("listener %s: TLS from %s: %s", c->listener->address, c->ip,
                 fc_tls_failure_names[why]);
    if (why == FC_TLS_FAIL_PLAINTEXT) {
        /* Told in its own words, as nginx does, and closed after it. */
        uv_buf_t b = uv_buf_init((char *)plaintext_reply, sizeof(plaintext_reply) - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        fc_client_read_stop(c);
        fc_client_linger(c);
        return;
    }
    fc_client_close(c);
}

/*
 * Hands the transaction what the input decrypts to, as the plain transport
 * does with what it reads: into the buffer alloc gives, until the input is
 * used up, the transaction stops reading or has no room.
 */
static void tls_deliver(struct fc_client *c)
{
    struct fc_tls_io *io = c->tls;
    if (!io->handshaken) {
        int rc = fc_tls_io_handshake(io);
        if (rc < 0)
            tls_failed(c, (enum fc_tls_failure)io->failure);
        if (rc <= 0)
            return;
    }
    if (!fc_tls_io_pending(io)) {
        /* Nothing to decrypt (a handshake that just ended): no request memory until there is. */
        sock_read_start(c);
        return;
    }
    while (c->reading && !c->closing) {
        uv_buf_t buf = {0};
        events->alloc(c, &buf);
        if (buf.base == NULL || buf.len == 0) {
            fc_client_read_stop(c);
            events->on_read_end(c, UV_ENOBUFS);
            return;
        }
        int n = fc_tls_io_read(io, buf.base, buf.len);
        if (n > 0) {
            events->on_read(c, (size_t)n);
            /* Nothing decrypted waits, no ciphertext either: another SSL_read() would only
             * say so (no read-ahead: OpenSSL holds no whole record we have not seen). */
            if (c->reading && !c->closing && !fc_tls_io_pending(io)) {
                sock_read_start(c);
                return;
            }
            continue;
        }
        if (n == FC_TLS_WANT) {
            /* The input is used up: the rest comes from the socket. */
            sock_read_start(c);
            return;
        }
        if (n == FC_TLS_ERROR)
            fc_stats_add(
                &fc_stats_listener(c->listener->stats, c->w->index)->tls_failures[io->failure], 1);
        fc_client_read_stop(c);
        c->eof = 1;
        events->on_read_end(c, n == FC_TLS_CLOSED ? UV_EOF : UV_EPROTO);
        return;
    }
}

static void tls_read(struct fc_client *c, ssize_t n, const uv_buf_t *buf)
{
    struct fc_tls_io *io = c->tls;
    if (n == 0)
        return;
    if (n < 0) {
        if (!io->handshaken) {
            /* A connect and a close without a byte is a TCP check, not a failure. */
            if (io->got_bytes)
                tls_failed(c, FC_TLS_FAIL_CLOSED);
            else
                fc_client_close(c);
            return;
        }
        fc_client_read_stop(c);
        c->eof = 1;
        events->on_read_end(c, (int)n);
        return;
    }
    /* A handshake record starts with 22; a letter is a plain request's method. */
    if (!io->got_bytes && buf->base[0] >= 'A' && buf->base[0] <= 'Z') {
        io->got_bytes = 1;
        tls_failed(c, FC_TLS_FAIL_PLAINTEXT);
        return;
    }
    fc_tls_io_input(io, buf->base, (size_t)n);
    tls_deliver(c);
    if (c->closing || io->in_len == 0)
        return;
    /* The reader stopped with input left: keep it until reading starts again. */
    if (c->sock_reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->sock_reading = 0;
    }
    if (fc_tls_io_keep(io) != 0)
        fc_client_close(c);
}

static void tls_resume(struct fc_tls_io *io)
{
    struct fc_client *c = io->owner;
    if (c->reading && !c->closing)
        tls_deliver(c);
}

static void tls_written(struct fc_tls_io *io, int status)
{
    struct fc_client *c = io->owner;
    c->writing = 0;
    if (c->closing)
        return;
    events->on_written(c, status);
}

/* ------------------------------------------------------------------------ */
/* Lingering and closing                                                     */
/* ------------------------------------------------------------------------ */

static void on_close(uv_handle_t *h)
{
    struct fc_client *c = h->data;
    struct fc_worker *w = c->w;
    struct fc_client_set *set = w->clients;
    if (c->prev)
        c->prev->next = c->next;
    else
        set->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    set->n--;
    if (c->txn != NULL)
        events->on_closed(c);
    fc_tls_io_free(c->tls);
    c->tls = NULL;
    fc_listener_release(c->listener);
    fc_freelist_put(&set->free, c, sizeof(*c));
    w->on_connection_closed(w);
}

static void close_client(struct fc_client *c, int reset)
{
    if (c->closing)
        return;
    if (c->txn != NULL && events->on_close(c) != 0)
        return;
    c->closing = 1;
    fc_client_timer_stop(c);
    if (c->tls != NULL && !reset)
        fc_tls_io_shutdown(c->tls, 0);
    /* A reset needs the socket to be ours alone: not while our side is shutting down. */
    if (!reset || c->lingering || uv_tcp_close_reset(&c->tcp, on_close) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

void fc_client_close(struct fc_client *c)
{
    close_client(c, 0);
}

void fc_client_reset(struct fc_client *c)
{
    close_client(c, 1);
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
        fc_client_close(s->data); /* the client closed too: done */
}

/* The shutdown request goes back to the free list (its callback runs also when the close cancels
 * it). */
static struct fc_client *shutdown_done(uv_shutdown_t *req)
{
    struct fc_client *c = req->data;
    fc_freelist_put(&c->w->clients->free_shutdown, req, sizeof(*req));
    return c;
}

static void linger_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct fc_client *c = shutdown_done(req);
    if (c->closing)
        return;
    if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, linger_alloc, linger_read) != 0)
        fc_client_close(c);
}

/*
 * Ends our side of the stream once what was written has gone out (over TLS,
 * close_notify first, before the FIN); cb then. Returns uv_shutdown()'s code.
 */
static int shut_our_side(struct fc_client *c, uv_shutdown_cb cb)
{
    c->shut = 1;
    if (c->tls != NULL)
        fc_tls_io_shutdown(c->tls, 1);
    uv_shutdown_t *req = fc_freelist_get(&c->w->clients->free_shutdown, sizeof(*req));
    if (req == NULL)
        return UV_ENOMEM;
    req->data = c;
    int rc = uv_shutdown(req, (uv_stream_t *)&c->tcp, cb);
    if (rc != 0)
        fc_freelist_put(&c->w->clients->free_shutdown, req, sizeof(*req));
    return rc;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    /* Nothing waits for it: the connection closes when both ways have ended. */
    shutdown_done(req);
}

void fc_client_shutdown(struct fc_client *c)
{
    if (c->closing || c->lingering || c->shut)
        return;
    shut_our_side(c, shutdown_cb);
}

/*
 * Closing a socket that still has unread input makes the kernel answer with a
 * reset, which can destroy the end of the response before the client has read
 * it (a pipelined request behind it, the rest of a refused upload). So shut
 * our side down (the client sees the end of the response), then read and
 * discard what it still sends, for LINGER_MS at most.
 */
void fc_client_linger(struct fc_client *c)
{
    if (c->closing || c->lingering)
        return;
    fc_client_read_stop(c);
    if (c->eof) {
        fc_client_close(c); /* nothing more will arrive */
        return;
    }
    c->lingering = 1;
    if (shut_our_side(c, linger_shutdown_cb) != 0) {
        fc_client_close(c);
        return;
    }
    fc_client_timer_arm(c, LINGER_MS);
}

/* ------------------------------------------------------------------------ */
/* Accepting                                                                 */
/* ------------------------------------------------------------------------ */

void fc_client_on_connection(struct fc_listener *l, int fd, const struct sockaddr *peer,
                             socklen_t peer_len)
{
    struct fc_worker *w = l->worker;
    struct fc_client_set *set = w->clients;
    struct fc_client *c = fc_freelist_get(&set->free, sizeof(*c));
    if (c == NULL) {
        /* Out of memory: the client is told by the close instead of left hanging. */
        close(fd);
        fc_log_error("listener %s: out of memory for a new connection", l->address);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->w = w;
    c->listener = l;
    fc_listener_acquire(l);
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->next = set->head;
    if (set->head)
        set->head->prev = c;
    set->head = c;
    set->n++;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        fc_client_close(c);
        return;
    }
    /* TCP_NODELAY comes from the listening socket (listener.c). */
    memcpy(&c->peer, peer, peer_len < sizeof(c->peer) ? peer_len : sizeof(c->peer));
    c->peer_len = peer_len < sizeof(c->peer) ? peer_len : (socklen_t)sizeof(c->peer);
    if (c->peer.sa.sa_family == AF_INET6)
        uv_ip6_name(&c->peer.in6, c->ip, sizeof(c->ip));
    else
        uv_ip4_name(&c->peer.in, c->ip, sizeof(c->ip));
    c->ip_len = (uint32_t)strlen(c->ip);
    const struct fc_conf_listener *conf =
        l->conf_index >= 0 ? &w->gen->cfg->listeners[l->conf_index] : NULL;
    if (conf != NULL && conf->tls != NULL) {
        c->tls = fc_tls_io_new(w->tls, fc_tls_server_ctx(conf->tls), 1, (uv_stream_t *)&c->tcp, c,
                               tls_written, tls_resume);
        if (c->tls == NULL) {
            fc_log_error("listener %s: out of memory for a new TLS connection", l->address);
            fc_client_close(c);
            return;
        }
    }
    fc_client_timer_arm(c, w->gen->cfg->timeouts.client_header_ms);
    fc_client_read_start(c);
}
