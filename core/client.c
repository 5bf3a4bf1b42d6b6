/*
 * The client transport; see client.h.
 */
#include "client.h"

#include "config.h"
#include "freelist.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "stream.h"

#include <fulcrum/plugin.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a closing connection's unread input is drained; see fc_client_linger(). */
#define LINGER_MS 2000

struct fc_client_set {
    struct fc_client *head; /* every open client connection (for draining) */
    uint32_t n;
    struct fc_freelist free;
    uv_tcp_t first; /* see fc_client_worker_init() */
};

static const struct fc_client_events *events;

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
    return 0;
}

void fc_client_worker_free(struct fc_worker *w)
{
    if (w->clients == NULL)
        return;
    fc_freelist_clear(&w->clients->free);
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

/* ------------------------------------------------------------------------ */
/* Timer                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * The timer is lazy: when it fires it sleeps again until the deadline, or
 * does nothing if there is none.
 */
static void timer_cb(uv_timer_t *t)
{
    struct fc_client *c = t->data;
    if (c->deadline == 0)
        return; /* disarmed since */
    uint64_t now = uv_now(&c->w->loop);
    if (now < c->deadline) {
        uv_timer_start(&c->timer, timer_cb, c->deadline - now, 0);
        return;
    }
    c->deadline = 0;
    if (c->lingering)
        fc_client_close(c);
    else
        events->on_timeout(c);
}

void fc_client_timer_arm(struct fc_client *c, uint32_t ms)
{
    uint64_t deadline = uv_now(&c->w->loop) + ms;
    /* The timer must fire by the deadline: restart it only when it would be late. */
    if (!uv_is_active((uv_handle_t *)&c->timer) || deadline < c->deadline || c->deadline == 0)
        uv_timer_start(&c->timer, timer_cb, ms, 0);
    c->deadline = deadline;
}

/* ------------------------------------------------------------------------ */
/* Reading and writing                                                       */
/* ------------------------------------------------------------------------ */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    events->alloc(h->data, buf);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fc_client *c = s->data;
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

void fc_client_read_start(struct fc_client *c)
{
    if (c->reading || c->eof || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
        c->reading = 1;
}

void fc_client_read_stop(struct fc_client *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

static void write_cb(uv_write_t *req, int status)
{
    struct fc_client *c = req->data;
    c->writing = 0;
    if (c->closing)
        return;
    events->on_written(c, status);
}

int fc_client_write(struct fc_client *c, uv_write_t *req, uv_buf_t *bufs, unsigned n)
{
    req->data = c;
    int rc = fc_stream_write((uv_stream_t *)&c->tcp, req, bufs, n, write_cb);
    if (rc == 0)
        c->writing = 1;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Lingering and closing                                                     */
/* ------------------------------------------------------------------------ */

static void on_close(uv_handle_t *h)
{
    struct fc_client *c = h->data;
    if (--c->handles > 0)
        return;
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
    /* A reset needs the socket to be ours alone: not while our side is shutting down. */
    if (!reset || c->lingering || uv_tcp_close_reset(&c->tcp, on_close) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_close);
    uv_close((uv_handle_t *)&c->timer, on_close);
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

static void linger_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct fc_client *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, linger_alloc, linger_read) != 0)
        fc_client_close(c);
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
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, linger_shutdown_cb) != 0) {
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
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
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
    uv_tcp_nodelay(&c->tcp, 1);
    memcpy(&c->peer, peer, peer_len < sizeof(c->peer) ? peer_len : sizeof(c->peer));
    c->peer_len = peer_len < sizeof(c->peer) ? peer_len : (socklen_t)sizeof(c->peer);
    if (c->peer.sa.sa_family == AF_INET6)
        uv_ip6_name(&c->peer.in6, c->ip, sizeof(c->ip));
    else
        uv_ip4_name(&c->peer.in, c->ip, sizeof(c->ip));
    c->ip_len = (uint32_t)strlen(c->ip);
    fc_client_timer_arm(c, w->gen->cfg->timeouts.client_header_ms);
    fc_client_read_start(c);
}
