/*
 * The client transport: one accepted TCP connection on a worker. It accepts,
 * reads into the buffer the transaction hands it, writes, keeps the
 * connection's one timer, lingers and closes; what those events mean for the
 * request is the transaction's business (txn.c), which it reports to through
 * struct fc_client_events. It never calls the upstream transport.
 *
 * An idle keep-alive connection holds this struct alone: everything a request
 * needs (parser, heads, buffers, the write request) is the transaction's
 * request memory, reached through `txn` while a request is in progress. Its
 * deadline is a link in the worker's timeout queues (timeouts.h), not a
 * timer of its own, and the shutdown request of a lingering close is taken
 * only then: the struct is the libuv handle and some 130 bytes more.
 *
 * Everything here runs on the connection's worker.
 */
#ifndef FC_CLIENT_H
#define FC_CLIENT_H

#include "timeouts.h"
#include "worker_types.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <uv.h>

struct fc_txn;
struct fc_listener;
struct fc_tls_io;

struct fc_client {
    uv_tcp_t tcp;
    struct fc_worker *w;
    struct fc_listener *listener; /**< held (fc_listener_acquire) until the close */
    struct fc_client *prev, *next;
    struct fc_txn *txn;        /**< the request in progress and its memory; NULL while idle */
    struct fc_tls_io *tls;     /**< the TLS variant's connection (tls.h), owned; NULL: plain TCP */
    struct fc_timeout timeout; /**< in the worker's timeout queues while armed */
    char ip[INET6_ADDRSTRLEN];
    uint32_t ip_len;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    socklen_t peer_len;
    /*
     * `reading`: the transaction wants input. Over TLS the socket may be read
     * (sock_reading) or input kept from it delivered first.
     */
    unsigned closing : 1, reading : 1, writing : 1, eof : 1, lingering : 1, sock_reading : 1,
        shut : 1;
};

/**
 * What the transport reports to the transaction. Each runs on the worker, in
 * a libuv callback of the connection.
 */
struct fc_client_events {
    /** The buffer the next read goes into; base NULL (or len 0) when there is none. */
    void (*alloc)(struct fc_client *c, uv_buf_t *buf);
    /** n > 0 bytes were read into that buffer. */
    void (*on_read)(struct fc_client *c, size_t n);
    /**
     * Reading stopped: UV_ENOBUFS (no buffer: none could be had, or it is
     * full), else the client closed (UV_EOF) or failed, and c->eof is set.
     */
    void (*on_read_end)(struct fc_client *c, int status);
    /** A write that fc_client_write() left pending ended (status < 0: failed). */
    void (*on_written)(struct fc_client *c, int status);
    /** The deadline set with fc_client_timer_arm() passed. */
    void (*on_timeout)(struct fc_client *c);
    /**
     * The connection is about to close while c->txn is set: release the
     * request. Returns non-zero to put the close off (someone still holds the
     * request); the transaction then closes it again later.
     */
    int (*on_close)(struct fc_client *c);
    /** Its handles are closed: free what c->txn still holds. */
    void (*on_closed)(struct fc_client *c);
};

/** Whether the connection speaks TLS (a listener with `tls`). */
static inline int fc_client_is_tls(const struct fc_client *c)
{
    return c->tls != NULL;
}

/** Sets the events of every client connection. Main thread, before any worker starts. */
void fc_client_set_events(const struct fc_client_events *ev);

/** The worker's set of client connections (w->clients). Returns 0 or FC_ENOMEM. */
int fc_client_worker_init(struct fc_worker *w);

/** Frees the set and its free list. The worker's loop has stopped. */
void fc_client_worker_free(struct fc_worker *w);

/** Open client connections of the worker. */
uint32_t fc_clients_count(const struct fc_worker *w);

/**
 * Runs fn on each client connection of the worker; fn may close the one it
 * is given.
 */
void fc_clients_each(struct fc_worker *w, void (*fn)(struct fc_client *c, void *arg), void *arg);

/** Closes every client connection of the worker (the shutdown deadline passed). */
void fc_clients_close(struct fc_worker *w);

/**
 * The accept callback of every listener (fc_accept_cb): takes fd as a
 * client connection of l's worker, and waits for the first request for
 * timeouts.client_header_ms. On a listener with `tls` in the worker's
 * current generation the connection speaks TLS with that listener's
 * certificates: the handshake comes first, within the same time, and a
 * handshake that fails is counted by its reason and closed without a
 * word to the transaction.
 */
void fc_client_on_connection(struct fc_listener *l, int fd, const struct sockaddr *peer,
                             socklen_t peer_len);

void fc_client_read_start(struct fc_client *c);
void fc_client_read_stop(struct fc_client *c);

/**
 * Writes bufs to the client with req (which must stay valid until
 * on_written; over TLS the write request is the transport's own). `more`:
 * more of the same message is known to follow (MSG_MORE; plain TCP only).
 * Returns 1 when all went out at once, 0 when the write is pending
 * (c->writing is set until on_written), or a negative libuv error.
 */
int fc_client_write(struct fc_client *c, uv_write_t *req, uv_buf_t *bufs, unsigned n, int more);

/**
 * The deadline passes (on_timeout) `ms` from now, whether one was set
 * before or not: a move to the tail of a queue of the worker's (timeouts.h).
 */
void fc_client_timer_arm(struct fc_client *c, uint32_t ms);

/** No deadline. */
void fc_client_timer_stop(struct fc_client *c);

/**
 * Closes after a complete response, nginx-style: shuts our side down and
 * discards what the client still sends for a short while, so that unread
 * input does not make the kernel reset the connection under the response.
 * The request must be released already (c->txn NULL).
 */
void fc_client_linger(struct fc_client *c);

/**
 * Ends our side of the byte stream once what was written has gone out
 * (close_notify first, over TLS), and goes on reading: the half-close of a
 * tunnel whose backend has finished sending. Once only.
 */
void fc_client_shutdown(struct fc_client *c);

/** Closes the connection (put off while on_close says so). */
void fc_client_close(struct fc_client *c);

/**
 * Closes the connection with a reset (RST), not a FIN: for a response cut
 * short, so that a client reading a body delimited by the close can tell it
 * from a complete one. Put off like fc_client_close().
 */
void fc_client_reset(struct fc_client *c);

#endif
