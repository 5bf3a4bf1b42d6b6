/*
 * Listening sockets. Every worker accepts on a SO_REUSEPORT socket of its own
 * for each configured listener, so the kernel spreads connections over the
 * workers. A listener is identified across generations by its address: a
 * reload that keeps an address keeps its sockets and connections.
 *
 * A listener's memory lives as long as its socket is open or a connection
 * accepted on it is: fc_listener_acquire() and fc_listener_release() count
 * the connections. Everything here runs on the worker that owns the listener,
 * except fc_listen_socket(), fc_listen_socket_defer(), fc_listen_socket_exclusive(),
 * fc_listen_unix() and fc_listen_check_free(), which any thread may call.
 */
#ifndef FC_LISTENER_H
#define FC_LISTENER_H

#include "worker_types.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct fc_config;

struct fc_listener;

/**
 * What a listener does with a connection it accepted: `fd` (non-blocking,
 * close-on-exec) is the callee's from here, `peer` borrowed for the call.
 */
typedef void (*fc_accept_cb)(struct fc_listener *l, int fd, const struct sockaddr *peer,
                             socklen_t peer_len);

/**
 * One listening socket of one worker. It accepts itself, from a poll handle
 * on the socket, rather than through uv_listen(), so that it can stop: when
 * descriptors run out (EMFILE, ENFILE, ENOBUFS, ENOMEM) or the open client
 * connections of all workers reach limits.max_connections, it pauses and
 * tries again every FC_LISTENER_PAUSE_MS, while new connections wait in the
 * kernel's backlog. (libuv's accept loop calls back on EMFILE and tries again
 * at once, forever, when several loops share the descriptor table.)
 */
struct fc_listener {
    uv_poll_t poll;   /**< readable: connections to accept; poll.data is the listener */
    uv_timer_t retry; /**< while paused */
    int fd;
    struct fc_worker *worker;
    fc_accept_cb on_accept;
    char *address;      /**< the configured address: its identity across generations */
    int32_t conf_index; /**< index in the worker's current generation's listeners; -1: removed */
    uint32_t conns;     /**< client connections accepted on it and still open */
    int handles;        /**< handles not closed yet; freed when 0 and conns drops to 0 */
    int closing, paused;
    struct fc_stats *stats;  /**< its counters (stats.h), by address; one reference */
    uint64_t last_pause_log; /**< uv_now() of the last "accepting paused" line */
    uint64_t pauses;         /**< since that line */
};

#define FC_LISTENER_PAUSE_MS 100

/**
 * Creates a bound, listening SO_REUSEPORT TCP socket for `addr`, with
 * TCP_DEFER_ACCEPT when `defer_accept` (fc_listen_socket_defer()). Returns
 * the fd, or a negative errno value.
 */
int fc_listen_socket(const struct sockaddr *addr, socklen_t len, int defer_accept);

/**
 * Sets or clears TCP_DEFER_ACCEPT on a listening socket (a listener's
 * `defer_accept`): a connection is handed over once its first bytes came.
 * Any thread.
 */
void fc_listen_socket_defer(int fd, int on);

/**
 * Creates a bound TCP socket listening on `addr` without SO_REUSEPORT (with
 * SO_REUSEADDR, non-blocking, close-on-exec): while it is open, no other
 * socket can listen there, and the bind fails (-EADDRINUSE) where another
 * one does. For the admin listener, which one thread serves. Returns the fd,
 * or a negative errno value.
 */
int fc_listen_socket_exclusive(const struct sockaddr *addr, socklen_t len, int backlog);

/**
 * A listening unix socket at path. A socket file left by a daemon that died
 * is removed, but only when nothing answers on it (a connect is refused): a
 * second daemon must not take the socket of a running one. Anything else at
 * the path is left alone. The mode is set to 0660 before listen(), so that
 * nobody connects while it is wider. Returns the fd or a negative errno;
 * *why explains a refusal that the errno does not.
 */
int fc_listen_unix(const char *path, int backlog, const char **why);

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
                                     int fd, fc_accept_cb on_accept);

/**
 * Brings w's listeners in line with cfg: an address that stays keeps its
 * socket (and its connections); a new one gets a socket of this worker's own;
 * for a removed one, removed(w, l) runs (to wind its connections down), then
 * it stops accepting.
 */
void fc_listeners_update(struct fc_worker *w, const struct fc_config *cfg, fc_accept_cb on_accept,
                         void (*removed)(struct fc_worker *w, struct fc_listener *l));

/** Stops accepting on every listener of w (draining). */
void fc_listeners_close(struct fc_worker *w);

/**
 * A connection accepted on l holds it, and counts among the open client
 * connections of all workers (limits.max_connections).
 */
void fc_listener_acquire(struct fc_listener *l);

/** That connection closed: the last one frees a listener whose socket is closed. */
void fc_listener_release(struct fc_listener *l);

/** Open client connections over all workers. Any thread. */
uint32_t fc_listener_connections(void);

#endif
