/*
 * The health probe service; see probe.h, and fc_host.probe_connect() in the
 * SDK header for the contract a plugin sees.
 *
 * A probe is one allocation, struct fc_probe_conn, holding its two handles
 * (the TCP handle and the deadline timer), its connect and write requests, a
 * copy of the bytes to send and the buffer the answer is read into. It goes
 *
 *   connect -> on_connected() -> read and write -> on_data() ... -> finish()
 *
 * Whatever ends it first (a callback's verdict, an error, the deadline)
 * calls finish(), which records the verdict and closes both handles; what
 * comes after (the connect or write request that the close cancels) finds
 * the probe ending and does nothing. The last close callback unlinks the
 * probe, frees it and only then reports: by then libuv holds nothing of it,
 * so the owner may destroy the plugin instance, and the prober with it,
 * inside the report. A connect refused before fc_prober_start() returns
 * goes the same way, so its verdict too comes later, from the loop.
 *
 * The reasons are worded as the bundled checkers worded them when each did
 * this itself, so that logs read the same: "connect: connection refused",
 * "timeout after 500 ms", "write: broken pipe", "read: connection reset by
 * peer".
 */
#include "probe.h"

#include "log.h"
#include "tls.h"
#include "tls_context.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The smallest struct fc_probe_args a plugin can hand over: ABI 1.1's. */
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define PROBE_ARGS_SIZE_1_1 END_OF(struct fc_probe_args, arg)

/* Room for a reason; the SDK promises the callbacks at least 64 bytes. */
#define REASON_MAX 128

struct fc_probe_conn {
    struct fc_prober *prober;
    struct fc_probe_conn *next, **prev; /* in prober->in_flight */
    struct fc_probe *probe;
    /* What the plugin asked for. */
    uint32_t timeout_ms;
    int (*on_connected)(void *arg, char *reason, size_t reason_len);
    int (*on_data)(void *arg, const char *data, size_t len, int eof, char *reason,
                   size_t reason_len);
    void *arg;

    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    int open_handles; /* handles whose close callback has not run yet */
    int ending;       /* the verdict is in; the handles are closing */
    int ok;
    char reason[REASON_MAX];

    struct fc_tls_worker *tw; /* a TLS probe's buffers, and its connection: else NULL */
    struct fc_tls_io *io;

    char *send; /* our copy, in bytes[] */
    size_t send_len;
    char *recv; /* the answer so far, in bytes[] after the copy */
    size_t recv_len, recv_cap;
    char bytes[];
};

static const char *label_of(const struct fc_prober *prober)
{
    return prober->label != NULL ? prober->label : "probe";
}

static struct fc_probe_conn *find(const struct fc_prober *prober, const struct fc_probe *probe)
{
    for (struct fc_probe_conn *c = prober->in_flight; c != NULL; c = c->next)
        if (c->probe == probe)
            return c;
    return NULL;
}

unsigned fc_prober_in_flight(const struct fc_prober *prober)
{
    unsigned n = 0;
    for (const struct fc_probe_conn *c = prober->in_flight; c != NULL; c = c->next)
        n++;
    return n;
}

int fc_prober_runs(const struct fc_prober *prober, const struct fc_probe *probe)
{
    return find(prober, probe) != NULL;
}

/* ------------------------------------------------------------------------ */
/* The end of a probe                                                        */
/* ------------------------------------------------------------------------ */

static void on_close(uv_handle_t *handle)
{
    struct fc_probe_conn *c = handle->data;
    if (--c->open_handles > 0)
        return;

    /*
     * Everything of the probe is off the loop. The report may free the
     * prober, so what it needs moves to the stack and the probe is gone
     * before it runs.
     */
    struct fc_prober *prober = c->prober;
    void (*report)(void *, struct fc_probe *, int, const char *) = prober->report;
    void *report_arg = prober->report_arg;
    struct fc_probe *probe = c->probe;
    int ok = c->ok;
    char reason[REASON_MAX];
    memcpy(reason, c->reason, sizeof(reason));
    *c->prev = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    fc_tls_io_free(c->io);
    fc_tls_worker_free(c->tw);
    free(c);
    report(report_arg, probe, ok, reason);
}

/* Records the verdict and closes the handles, once: later calls find the probe ending. */
static void finish(struct fc_probe_conn *c, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct fc_probe_conn *c, int ok, const char *fmt, ...)
{
    if (c->ending)
        return;
    c->ending = 1;
    c->ok = ok;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
    if (c->io != NULL)
        fc_tls_io_shutdown(c->io, 0);

    uv_close((uv_handle_t *)&c->timer, on_close);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/*
 * Acts on what a callback returned with `reason`: ends the probe on a
 * verdict, or, when `last` says nothing more can come, on FC_PROBE_MORE too
 * (a failure). Returns 1 when the probe ended.
 */
static int take_step(struct fc_probe_conn *c, int step, const char *reason, int last)
{
    if (step == FC_PROBE_MORE && !last)
        return 0;
    int ok = step == FC_PROBE_PASS;
    const char *fallback = step == FC_PROBE_MORE ? "no verdict" : ok ? "passed" : "failed";
    finish(c, ok, "%s", reason[0] != '\0' ? reason : fallback);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */
/* ------------------------------------------------------------------------ */

static void on_timeout(uv_timer_t *timer)
{
    struct fc_probe_conn *c = timer->data;
    finish(c, 0, "timeout after %u ms", (unsigned)c->timeout_ms);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct fc_probe_conn *c = handle->data;
    /* Never empty: a full buffer ends the probe before the next read. */
    *buf = uv_buf_init(c->recv + c->recv_len, (unsigned)(c->recv_cap - c->recv_len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct fc_probe_conn *c = stream->data;
    if (nread == 0)
        return; /* nothing this time (EAGAIN) */
    if (nread < 0 && nread != UV_EOF) {
        finish(c, 0, "read: %s", uv_strerror((int)nread));
        return;
    }
    int eof = nread == UV_EOF;
    if (!eof)
        c->recv_len += (size_t)nread;
    char reason[REASON_MAX] = "";
    int step = c->on_data(c->arg, c->recv, c->recv_len, eof, reason, sizeof(reason));
    take_step(c, step, reason, eof || c->recv_len == c->recv_cap);
}

static void on_write(uv_write_t *req, int status)
{
    struct fc_probe_conn *c = req->data;
    if (status < 0)
        finish(c, 0, "write: %s", uv_strerror(status));
}

/* Connected (over TLS: the handshake done): the plugin's on_connected, then its bytes. */
static void connected(struct fc_probe_conn *c)
{
    if (c->on_connected != NULL) {
        char reason[REASON_MAX] = "";
        int step = c->on_connected(c->arg, reason, sizeof(reason));
        if (take_step(c, step, reason, c->on_data == NULL))
            return;
    }
    /* Reading first, so that an answer that beats the write's callback is not missed. */
    int rc = c->io != NULL ? 0 : uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        finish(c, 0, "read: %s", uv_strerror(rc));
        return;
    }
    if (c->send_len == 0)
        return;
    uv_buf_t buf = uv_buf_init(c->send, (unsigned)c->send_len);
    rc = c->io != NULL ? fc_tls_io_write(c->io, &buf, 1)
                       : uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc < 0)
        finish(c, 0, "write: %s", uv_strerror(rc));
}

static void tls_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct fc_probe_conn *c = handle->data;
    fc_tls_read_buffer(c->tw, buf);
}

/* The handshake, then what the answer decrypts to, as on_read hands it over. */
static void tls_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct fc_probe_conn *c = stream->data;
    if (nread == 0 || c->ending)
        return;
    if (nread < 0 && !c->io->handshaken) {
        finish(c, 0, "TLS handshake: %s",
               nread == UV_EOF ? "connection closed" : uv_strerror((int)nread));
        return;
    }
    char reason[REASON_MAX] = "";
    if (nread < 0) {
        if (nread != UV_EOF) {
            finish(c, 0, "read: %s", uv_strerror((int)nread));
            return;
        }
        int step = c->on_data(c->arg, c->recv, c->recv_len, 1, reason, sizeof(reason));
        take_step(c, step, reason, 1);
        return;
    }
    fc_tls_io_input(c->io, buf->base, (size_t)nread);
    if (!c->io->handshaken) {
        int rc = fc_tls_io_handshake(c->io);
        if (rc < 0) {
            fc_tls_io_strerror(c->io, reason, sizeof(reason));
            finish(c, 0, "%s", reason);
            return;
        }
        if (rc == 0)
            return;
        connected(c);
    }
    while (!c->ending && c->on_data != NULL) {
        int n = fc_tls_io_read(c->io, c->recv + c->recv_len, c->recv_cap - c->recv_len);
        if (n == FC_TLS_WANT)
            return;
        int eof = n < 0;
        if (n > 0)
            c->recv_len += (size_t)n;
        reason[0] = '\0';
        int step = c->on_data(c->arg, c->recv, c->recv_len, eof, reason, sizeof(reason));
        if (take_step(c, step, reason, eof || c->recv_len == c->recv_cap))
            return;
    }
}

static void tls_written(struct fc_tls_io *io, int status)
{
    if (status < 0)
        finish(io->owner, 0, "write: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    struct fc_probe_conn *c = req->data;
    if (c->ending) /* cancelled by finish() */
        return;
    if (status < 0) {
        finish(c, 0, "connect: %s", uv_strerror(status));
        return;
    }
    if (c->io != NULL) {
        /* The plugin sees the connection once the handshake is done. */
        int rc = uv_read_start((uv_stream_t *)&c->tcp, tls_alloc, tls_read);
        if (rc < 0 || fc_tls_io_handshake(c->io) < 0)
            finish(c, 0, "TLS handshake: %s", rc < 0 ? uv_strerror(rc) : "failed to start");
        return;
    }
    connected(c);
}

/* A TLS probe's connection: SNI and the name verified as for requests (upstream.c). */
static int tls_prepare(struct fc_probe_conn *c, const struct fc_tls_client *tls,
                       const char *address)
{
    c->tw = fc_tls_worker_new(c->prober->loop);
    if (c->tw == NULL)
        return FC_ENOMEM;
    c->io = fc_tls_io_new(c->tw, fc_tls_client_ctx(tls), 0, (uv_stream_t *)&c->tcp, c, tls_written,
                          NULL);
    if (c->io == NULL)
        return FC_ENOMEM;
    const char *name = fc_tls_client_server_name(tls);
    char host[256];
    if (name == NULL) {
        /* "host:port" or "[v6]:port" */
        const char *start = address[0] == '[' ? address + 1 : address;
        const char *end = address[0] == '[' ? strchr(start, ']') : strrchr(start, ':');
        size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
        snprintf(host, sizeof(host), "%.*s", (int)len, start);
        name = host;
    }
    return fc_tls_io_set_peer(c->io, name, fc_tls_client_verifies(tls), NULL);
}

/* ------------------------------------------------------------------------ */
/* The start                                                                 */
/* ------------------------------------------------------------------------ */

/* Checks what the plugin asked for; 0, or FC_EINVAL after logging why. */
static int check_args(const struct fc_prober *prober, const struct fc_probe *probe,
                      const struct fc_probe_args *a)
{
    const char *why = NULL;
    if (a->backend == NULL || a->backend->sockaddr == NULL)
        why = "no backend address";
    else if (a->on_connected == NULL && a->on_data == NULL)
        why = "neither on_connected nor on_data: nothing would judge the backend";
    else if (a->send == NULL && a->send_len > 0)
        why = "send is NULL but send_len is not 0";
    if (why != NULL) {
        fc_log_error("%s: probe_connect(): %s", label_of(prober), why);
        return FC_EINVAL;
    }
    if (find(prober, probe) != NULL) {
        const char *address = a->backend->address != NULL ? a->backend->address : "?";
        fc_log_error("%s: backend %s: a probe is already in flight", label_of(prober), address);
        return FC_EINVAL;
    }
    return 0;
}

int fc_prober_start(struct fc_prober *prober, struct fc_probe *probe,
                    const struct fc_probe_args *args)
{
    if (prober->loop == NULL || prober->report == NULL) {
        fc_log_error("%s: probe_connect() called, but this instance runs no probes",
                     label_of(prober));
        return FC_EINVAL;
    }
    if (args == NULL || args->size < PROBE_ARGS_SIZE_1_1) {
        fc_log_error("%s: probe_connect(): args %s (ABI 1.1 has %zu bytes)", label_of(prober),
                     args == NULL ? "missing" : "too small", PROBE_ARGS_SIZE_1_1);
        return FC_EINVAL;
    }
    /* A newer plugin's larger struct starts with ours; fields past its size stay zero. */
    struct fc_probe_args a = {0};
    memcpy(&a, args, args->size < sizeof(a) ? args->size : sizeof(a));
    int rc = check_args(prober, probe, &a);
    if (rc < 0)
        return rc;

    size_t cap = 0;
    if (a.on_data != NULL)
        cap = a.recv_max == 0 || a.recv_max > FC_PROBE_RECV_MAX ? FC_PROBE_RECV_MAX : a.recv_max;
    struct fc_probe_conn *c = NULL;
    if (a.send_len <= SIZE_MAX - sizeof(*c) - cap)
        c = malloc(sizeof(*c) + a.send_len + cap);
    if (c == NULL) {
        fc_log_error("%s: probe_connect(): out of memory (%zu bytes to send)", label_of(prober),
                     a.send_len);
        return FC_ENOMEM;
    }
    memset(c, 0, sizeof(*c));

    /* A failed init registers no handle: nothing to close. */
    rc = uv_tcp_init(prober->loop, &c->tcp);
    if (rc < 0) {
        fc_log_error("%s: probe: %s", label_of(prober), uv_strerror(rc));
        free(c);
        return FC_ERROR;
    }
    uv_timer_init(prober->loop, &c->timer); /* cannot fail */
    c->prober = prober;
    c->probe = probe;
    c->timeout_ms = a.timeout_ms;
    c->on_connected = a.on_connected;
    c->on_data = a.on_data;
    c->arg = a.arg;
    c->tcp.data = c->timer.data = c->connect.data = c->write.data = c;
    c->open_handles = 2;
    c->send = c->bytes;
    c->send_len = a.send_len;
    if (a.send_len > 0)
        memcpy(c->send, a.send, a.send_len);
    c->recv = c->bytes + a.send_len;
    c->recv_cap = cap;
    c->next = prober->in_flight;
    c->prev = &prober->in_flight;
    if (c->next != NULL)
        c->next->prev = &c->next;
    prober->in_flight = c;

    if (prober->tls != NULL &&
        tls_prepare(c, prober->tls, a.backend->address != NULL ? a.backend->address : "") != 0) {
        finish(c, 0, "out of memory for TLS"); /* reported later, from the loop */
        return 0;
    }
    uv_timer_start(&c->timer, on_timeout, a.timeout_ms, 0);
    rc = uv_tcp_connect(&c->connect, &c->tcp, a.backend->sockaddr, on_connect);
    if (rc < 0)
        finish(c, 0, "connect: %s", uv_strerror(rc)); /* reported later, from the loop */
    return 0;
}
