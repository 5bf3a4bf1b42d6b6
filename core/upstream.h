/*
 * The upstream transport: TCP connections from a worker to backends, and the
 * worker's keep-alive pool of idle ones. It connects, reads into its own
 * buffer, writes, keeps each connection's timer and closes; what those events
 * mean for the request is the transaction's business (txn.c), which it
 * reports to through struct fc_upstream_events. It never calls the client
 * transport.
 *
 * A connection serves one transaction at a time (`txn`), or sits idle in the
 * pool of its backend for this worker. An idle connection that speaks or
 * closes is dropped at once, and one idle for timeouts.idle_ms too. Every
 * connection holds a reference to its backend's shared state
 * (fc_backend_shared_acquire()), so a backend removed by a reload lives on
 * until its last connection closes.
 *
 * Everything here runs on the connection's worker.
 */
#ifndef FC_UPSTREAM_H
#define FC_UPSTREAM_H

#include "worker_types.h"

#include <stdint.h>
#include <uv.h>

struct fc_txn;
struct fc_backend_shared;
struct fc_tls_io;
struct fc_tls_client;

/* The read buffer of a busy connection: also the largest response head accepted. */
#define FC_UPSTREAM_BUF_SIZE (16 * 1024)
/*
 * The read buffer for the rest of a long body (fc_upstream_bulk()): a
 * 128 KiB read and write relay a 1 MiB body from a sendfile() backend on
 * loopback at under half the CPU of 16 KiB ones (fewer, fuller segments, and
 * fewer window updates that each wake the backend); 64 KiB saved less than
 * half of that, 256 KiB no more (tests/bench, URL_PATH=/bulk).
 */
#define FC_UPSTREAM_BULK_SIZE (128 * 1024)

struct fc_upstream {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq; /**< fc_upstream_shutdown() */
    struct fc_worker *w;
    struct fc_backend_shared *backend; /**< one reference held */
    struct fc_txn *txn;                /**< the transaction it serves; NULL when idle */
    struct fc_upstream *idle_next, *idle_prev;
    struct fc_upstream *all_next, *all_prev; /**< every upstream of the worker */
    char *buf; /**< buf_cap bytes while busy; what was read is [off, len) */
    uint32_t len, off;
    uint32_t buf_cap;      /**< FC_UPSTREAM_BUF_SIZE, or FC_UPSTREAM_BULK_SIZE for a long body */
    uint64_t last_active;  /**< uv_now() of the last byte read or written (see txn.c) */
    struct fc_tls_io *tls; /**< the TLS variant's connection (tls.h), owned; NULL: plain TCP */
    uint64_t tls_serial;   /**< the serial of the TLS context it was made with; 0: plain */
    int handles;
    /*
     * `reading`: the transaction wants input (or the connection is idle). Over
     * TLS the socket is read also during the handshake (sock_reading).
     */
    unsigned connected : 1, reused : 1, writing : 1, reading : 1, got_bytes : 1, closing : 1,
        idle : 1, sock_reading : 1, shut : 1;
};

/**
 * What the transport reports to the transaction of a busy connection. Each
 * runs on the worker, in a libuv callback of the connection, and never for a
 * connection that is closing or idle.
 */
struct fc_upstream_events {
    /** The connect ended: 0 (connected, TCP_NODELAY set) or a libuv error. */
    void (*on_connect)(struct fc_upstream *u, int status);
    /** Bytes were appended to u->buf (u->len grew). */
    void (*on_read)(struct fc_upstream *u);
    /** Reading stopped: the backend closed (UV_EOF) or failed. */
    void (*on_read_end)(struct fc_upstream *u, int status);
    /** A write that fc_upstream_write() left pending ended (status < 0: failed). */
    void (*on_written)(struct fc_upstream *u, int status);
    /** The timer set with fc_upstream_timer_arm() fired. */
    void (*on_timeout)(struct fc_upstream *u);
};

/** Sets the events of every upstream connection. Main thread, before any worker starts. */
void fc_upstream_set_events(const struct fc_upstream_events *ev);

/** The worker's set of upstream connections (w->upstreams). Returns 0 or FC_ENOMEM. */
int fc_upstream_worker_init(struct fc_worker *w);

/** Frees the set and its free lists. The worker's loop has stopped. */
void fc_upstream_worker_free(struct fc_worker *w);

/** Open upstream connections of the worker, idle or busy. */
uint32_t fc_upstreams_count(const struct fc_worker *w);

/** Closes every idle upstream connection of the worker. */
void fc_upstreams_close_idle(struct fc_worker *w);

/**
 * An idle connection to b from this worker's pool, taken out of it; NULL when
 * none. Only one made with `tls` (NULL: plain TCP) is taken: those made with
 * other settings, before a reload, are closed.
 */
struct fc_upstream *fc_upstream_take_idle(struct fc_worker *w, struct fc_backend_shared *b,
                                          const struct fc_tls_client *tls);

/**
 * Closes w's idle connections to each backend of generation g that is
 * retiring (struct fc_backend_shared): drained, in maintenance or removed
 * by the generation that replaces g.
 */
void fc_upstreams_close_retiring(struct fc_worker *w, const struct fc_generation *g);

/** A new, unconnected connection to b. NULL when out of memory. */
struct fc_upstream *fc_upstream_new(struct fc_worker *w, struct fc_backend_shared *b);

/**
 * Connects u (attached already) to addr, with `timeout_ms` for the connect
 * (on_timeout). With `tls` (a pool's `tls`; NULL: plain TCP) the connection
 * speaks TLS: on_connect comes when the handshake is done, within the same
 * time, and a handshake that fails (a certificate that does not verify, say)
 * is a failed connect (UV_EPROTO; fc_upstream_strerror() says why). The
 * name sent as SNI and verified is the context's server_name, else the host
 * of `address` (the backend as configured). A session the backend gave this
 * worker before is resumed. Returns 0, or the libuv error of a connect
 * refused at once.
 */
int fc_upstream_connect(struct fc_upstream *u, const struct sockaddr *addr, const char *address,
                        const struct fc_tls_client *tls, uint32_t timeout_ms);

/** Why a connect failed with err, in words: uv_strerror(), or the TLS handshake's reason. */
const char *fc_upstream_strerror(const struct fc_upstream *u, int err, char *buf, size_t cap);

/**
 * The rest of a long body is read FC_UPSTREAM_BULK_SIZE at a time: the
 * (empty) buffer is swapped for a larger one, when one can be had. Call only
 * with nothing in the buffer (off == len) and no write from it pending.
 */
void fc_upstream_bulk(struct fc_upstream *u);

/** Hands u (new, or idle from fc_upstream_take_idle()) to t. Returns 0 or FC_ENOMEM. */
int fc_upstream_attach(struct fc_upstream *u, struct fc_txn *t);

void fc_upstream_read_start(struct fc_upstream *u);
void fc_upstream_read_stop(struct fc_upstream *u);

/**
 * Writes bufs with the connection's write request. `more`: more of the same
 * message is known to follow (MSG_MORE; plain TCP only). Returns 1 when all
 * went out at once, 0 when the write is pending (u->writing is set until
 * on_written), or a negative libuv error.
 */
int fc_upstream_write(struct fc_upstream *u, uv_buf_t *bufs, unsigned n, int more);

/** on_timeout in `ms` (replacing what the timer was set to). */
void fc_upstream_timer_arm(struct fc_upstream *u, uint64_t ms);

/** No on_timeout: the transaction keeps time itself (a tunnel). */
void fc_upstream_timer_stop(struct fc_upstream *u);

/**
 * Ends our side of the byte stream once what was written has gone out
 * (close_notify first, over TLS): the backend reads an end, and may go on
 * sending. Once only; the connection is never reused after it.
 */
void fc_upstream_shutdown(struct fc_upstream *u);

/**
 * The transaction is done with u and both messages ended cleanly: back to
 * the pool of its backend, or closed when the worker drains.
 */
void fc_upstream_park(struct fc_upstream *u);

/** Closes u; its transaction (if any) lets go of it. */
void fc_upstream_close(struct fc_upstream *u);

#endif
