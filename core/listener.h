/*
 * Listening sockets. Every worker accepts on a SO_REUSEPORT socket of its own
 * for each configured listener, so the kernel spreads connections over the
 * workers. A listener is identified across generations by its address: a
 * reload that keeps an address keeps its sockets and connections.
 *
 * A listener's memory lives as long as its socket is open or a connection
 * accepted on it is: fc_listener_acquire() and fc_listener_release() count
 * the connections. Everything here runs on the worker that owns the listener,
 * except fc_listen_socket(), which any thread may call.
 */
#ifndef FC_LISTENER_H
#define FC_LISTENER_H

#include "worker_types.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct fc_config;

struct fc_listener {
    uv_tcp_t tcp; /**< tcp.data is the listener */
    struct fc_worker *worker;
    char *address;      /**< the configured address: its identity across generations */
    int32_t conf_index; /**< index in the worker's current generation's listeners; -1: removed */
    uint32_t conns;     /**< client connections accepted on it and still open */
    int closed;         /**< its handle is closed; freed when conns drops to 0 */
};

/**
 * Creates a bound, listening SO_REUSEPORT TCP socket for `addr`. Returns the fd,
 * or a negative errno value.
 */
int fc_listen_socket(const struct sockaddr *addr, socklen_t len);

/**
 * Whether addr is free for this daemon to listen on: no other socket (of
 * another process, or another fulcrum: SO_REUSEPORT would let both bind, and
 * the kernel would split the traffic between them) listens there. Returns 0,
 * or a negative errno (-EADDRINUSE). Any thread; nothing stays bound.
 */
int fc_listen_check_free(const struct sockaddr *addr, socklen_t len);

/**
 * Adds to w a listener for `address` on fd (bound and listening already; owned
 * by the listener from here, closed on failure too), accepting with
 * on_connection. Returns it, or NULL after logging why.
 */
struct fc_listener *fc_listener_open(struct fc_worker *w, const char *address, int32_t conf_index,
                                     int fd, uv_connection_cb on_connection);

/**
 * Brings w's listeners in line with cfg: an address that stays keeps its
 * socket (and its connections); a new one gets a socket of this worker's own;
 * for a removed one, removed(w, l) runs (to wind its connections down), then
 * it stops accepting.
 */
void fc_listeners_update(struct fc_worker *w, const struct fc_config *cfg,
                         uv_connection_cb on_connection,
                         void (*removed)(struct fc_worker *w, struct fc_listener *l));

/** Stops accepting on every listener of w (draining). */
void fc_listeners_close(struct fc_worker *w);

/** A connection accepted on l holds it. */
static inline void fc_listener_acquire(struct fc_listener *l)
{
    l->conns++;
}

/** That connection closed: the last one frees a listener whose socket is closed. */
void fc_listener_release(struct fc_listener *l);

#endif
