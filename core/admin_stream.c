/*
 * The admin listener's event streams (Server-Sent Events); see admin.h.
 *
 * A stream is a connection whose request got a 200 text/event-stream head
 * and no length: the body goes on until either side closes. What the owner
 * sends is written at once when the socket takes it, and copied only when it
 * does not; the copies waiting are counted, and a stream that would have
 * more than FC_ADMIN_STREAM_BUFFER bytes waiting is closed instead, so that
 * a reader that stops reading costs a bounded amount of memory. Sends made
 * inside open(), before the head has gone out, wait in order behind it. The
 * owner's closed call comes from the connection's close callback: once, and
 * never from inside a call the owner made.
 */
#include "admin_conn.h"

#include "errors.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of a stream waiting for the socket. */
struct fc_admin_swrite {
    uv_write_t req;
    struct fc_admin_stream *s;
    struct fc_admin_swrite *next; /* while the stream opens: the sends made meanwhile, in order */
    size_t len;
    char data[];
};

static void swrite_done(uv_write_t *req, int status);

static struct fc_admin_swrite *swrite_new(struct fc_admin_stream *s, const char *data, size_t len)
{
    struct fc_admin_swrite *w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return NULL;
    w->s = s;
    w->next = NULL;
    w->len = len;
    memcpy(w->data, data, len);
    w->req.data = w;
    return w;
}

/* Hands w to libuv; on failure w is freed and the connection closes. */
static int swrite_submit(struct fc_admin_stream *s, struct fc_admin_swrite *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, &s->c->h.stream, &b, 1, swrite_done);
    if (rc != 0) {
        s->queued -= w->len;
        free(w);
        fc_admin_conn_close(s->c);
    }
    return rc;
}

static void swrite_done(uv_write_t *req, int status)
{
    struct fc_admin_swrite *w = req->data;
    struct fc_admin_stream *s = w->s;
    s->queued -= w->len;
    free(w);
    if (status < 0)
        fc_admin_conn_close(s->c);
}

void fc_admin_stream_start(struct fc_admin_conn *c, const struct fc_admin_route *rt,
                           int needs_token)
{
    static const char head[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\n"
                               "X-Content-Type-Options: nosniff\r\n"
                               "Connection: close\r\n"
                               "\r\n";
    struct fc_admin *a = c->a;
    if (a->n_streams >= FC_ADMIN_MAX_STREAMS) {
        char msg[96];
        snprintf(msg, sizeof(msg), "too many event streams (%d are open)", FC_ADMIN_MAX_STREAMS);
        fc_admin_conn_reply_error(c, 503, msg, NULL, 0);
        return;
    }
    struct fc_admin_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        fc_admin_conn_reply_error(c, 503, "out of memory", NULL, 0);
        return;
    }
    s->c = c;
    s->closed = rt->closed;
    s->arg = rt->arg;
    s->needs_token = (unsigned)needs_token;
    s->opening = 1;
    s->pending_tail = &s->pending;
    s->queued = sizeof(head) - 1; /* the head goes first, and counts like the rest */
    c->stream = s;
    a->n_streams++;
    int status = rt->open(rt->arg, s);
    s->opening = 0;
    if (status != 0 || c->state == FC_ADMIN_CONN_CLOSING) {
        while (s->pending != NULL) {
            struct fc_admin_swrite *w = s->pending;
            s->pending = w->next;
            free(w);
        }
        s->queued = 0;
        if (status == 0) {
            /* Kept, but the owner closed the listener meanwhile: its closed call comes. */
            s->kept = 1;
            return;
        }
        c->stream = NULL;
        a->n_streams--;
        free(s);
        if (c->state == FC_ADMIN_CONN_CLOSING)
            return;
        if (status < 400 || status > 599)
            status = 500;
        fc_admin_conn_reply_error(c, status, fc_status_reason(status), NULL, 0);
        return;
    }
    s->kept = 1;
    c->state = FC_ADMIN_CONN_STREAMING;
    uv_timer_stop(&c->timer);
    c->in_off = c->in_len; /* anything pipelined after the request is not read */

    struct fc_admin_swrite *pending = s->pending;
    s->pending = NULL;
    struct fc_admin_swrite *w = swrite_new(s, head, sizeof(head) - 1);
    int failed = w == NULL || swrite_submit(s, w) != 0;
    while (pending != NULL) {
        w = pending;
        pending = w->next;
        if (failed) {
            s->queued -= w->len;
            free(w);
        } else {
            failed = swrite_submit(s, w) != 0;
        }
    }
    if (failed || s->closing)
        fc_admin_conn_close(c);
    else
        fc_admin_conn_read_start(c); /* to see the client leave */
}

void fc_admin_stream_end(struct fc_admin_stream *s)
{
    struct fc_admin *a = s->c->a;
    s->c->stream = NULL;
    a->n_streams--;
    if (s->kept)
        s->closed(s->arg, s);
    free(s);
}

int fc_admin_stream_send(struct fc_admin_stream *s, const char *data, size_t len)
{
    if (s->closing)
        return -EPIPE;
    if (len == 0)
        return 0;
    if (s->opening) {
        if (len > FC_ADMIN_STREAM_BUFFER - s->queued) {
            s->closing = 1;
            return -ENOBUFS;
        }
        struct fc_admin_swrite *w = swrite_new(s, data, len);
        if (w == NULL) {
            s->closing = 1;
            return -ENOMEM;
        }
        *s->pending_tail = w;
        s->pending_tail = &w->next;
        s->queued += len;
        return 0;
    }
    struct fc_admin_conn *c = s->c;
    if (s->queued == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write(&c->h.stream, &b, 1);
        if (n >= 0) {
            data += n;
            len -= (size_t)n;
            if (len == 0)
                return 0;
        } else if (n != UV_EAGAIN) {
            fc_admin_conn_close(c);
            return n;
        }
    }
    if (len > FC_ADMIN_STREAM_BUFFER - s->queued) {
        fc_log_debug("admin: an event stream's reader is %zu bytes behind: closed",
                     s->queued + len);
        fc_admin_conn_close(c);
        return -ENOBUFS;
    }
    struct fc_admin_swrite *w = swrite_new(s, data, len);
    if (w == NULL) {
        fc_admin_conn_close(c);
        return -ENOMEM;
    }
    s->queued += len;
    return swrite_submit(s, w);
}

size_t fc_admin_stream_queued(const struct fc_admin_stream *s)
{
    return s->queued;
}

unsigned fc_admin_streams(const struct fc_admin *a)
{
    return a->n_streams;
}
