/*
 * Worker threads. Each worker runs its own libuv loop and accepts on its own
 * SO_REUSEPORT socket per listener, so the kernel spreads connections over
 * workers. A client connection, its upstream connections and their buffers
 * all live on one worker; nothing of them is shared.
 *
 * The main thread talks to a worker only through the worker's async handle:
 * it publishes a new generation into `pending` or raises `stop`, then wakes it.
 */
#ifndef FC_WORKER_H
#define FC_WORKER_H

#include "generation.h"

#include <stdint.h>
#include <uv.h>

struct fc_client;
struct fc_upstream;

/** One listening socket of one worker. */
struct fc_listener {
    uv_tcp_t tcp;
    struct fc_worker *worker;
    char *address;      /**< the configured address: its identity across generations */
    int32_t conf_index; /**< index in the worker's current generation's listeners; -1: removed */
    uint32_t conns;     /**< client connections accepted on it and still open */
    int closed;         /**< its handle is closed; freed when conns drops to 0 */
};

/** A block of free memory on a worker's free list. */
struct fc_free_block {
    struct fc_free_block *next;
};

struct fc_worker {
    uint32_t index;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;
    uv_check_t flush_check;
    uv_idle_t release_idle;         /**< releases retired generations; see worker.c */
    struct fc_generation **retired; /**< done with in this iteration */
    struct fc_generation **ready;   /**< done with in the previous one: released next */
    uint32_t n_retired, cap_retired, n_ready, cap_ready;

    struct fc_generation *gen;     /**< the generation new requests use; one reference held */
    struct fc_generation *pending; /**< published by the main thread (atomic exchange) */
    uint32_t stop;                 /**< atomic: 1 drain and stop, 2 stop now */
    int draining;
    uint32_t exited; /**< atomic: the thread's loop has returned */

    struct fc_listener **listeners;
    uint32_t n_listeners;

    uv_tcp_t reject; /**< accepts and closes a connection when memory runs out */
    int reject_busy;
    struct fc_client *clients; /**< every open client connection (for draining) */
    uint32_t n_clients;
    struct fc_upstream *upstreams; /**< every open upstream connection, idle or busy */
    uint32_t n_upstreams;

    /* Free lists: the hot path allocates nothing once they are warm. */
    struct fc_free_block *free_clients;
    struct fc_free_block *free_upstreams;
    struct fc_free_block *free_txn;   /**< client request memory, of txn_size bytes */
    struct fc_free_block *free_upbuf; /**< upstream read buffers */
    size_t txn_size;                  /**< size of the blocks on free_txn */
    uint32_t n_free_clients, n_free_upstreams, n_free_txn, n_free_upbuf;

    /* Access log lines, written in one go after each loop iteration. */
    char *log_buf;
    size_t log_len;
};

/** Runtime settings shared by all workers, written only before they start. */
struct fc_runtime {
    /**
     * Always open (on /dev/null while the log is off); the main thread points
     * it at the configured file with dup2() at start, on reload and on
     * SIGUSR1, so workers never see it change.
     */
    int access_log_fd;
    uint32_t access_log_on;    /**< atomic: write access log lines */
    uv_async_t *worker_exited; /**< signalled by each worker thread as it ends */
};
extern struct fc_runtime fc_runtime;

/** Prepares worker `index` (loop, handles) on the calling (main) thread. */
int fc_worker_init(struct fc_worker *w, uint32_t index, struct fc_generation *gen, int *listen_fds,
                   uint32_t n_listen_fds);

/** Starts the worker's thread. */
int fc_worker_start(struct fc_worker *w);

/** Hands a new generation to the worker (takes a reference for it). Main thread. */
void fc_worker_publish(struct fc_worker *w, struct fc_generation *g);

/** Asks the worker to stop: level 1 drains in-flight requests, 2 closes everything. */
void fc_worker_request_stop(struct fc_worker *w, uint32_t level);

/** Waits for the thread to end and frees what the worker holds. Main thread. */
void fc_worker_join(struct fc_worker *w);

/**
 * Creates a bound, listening SO_REUSEPORT TCP socket for `addr`. Returns the fd,
 * or a negative errno-style uv error code.
 */
int fc_listen_socket(const struct sockaddr *addr, socklen_t len);

/* Free-list helpers for the proxy. */
void *fc_worker_alloc(struct fc_worker *w, struct fc_free_block **list, uint32_t *count,
                      size_t size);
void fc_worker_free(struct fc_worker *w, struct fc_free_block **list, uint32_t *count, void *p);

/** Appends one access log line (without newline). */
void fc_worker_access_log(struct fc_worker *w, const char *line, size_t len);

/**
 * The worker is done with generation g: runs the rate limiters' worker_stop()
 * here, and drops the worker's reference a full loop iteration later, once
 * the close callbacks of handles the plugins closed have run (their code
 * must still be loaded then).
 */
void fc_worker_retire(struct fc_worker *w, struct fc_generation *g);

/** Called by the proxy when the worker may have become idle while draining. */
void fc_worker_maybe_done(struct fc_worker *w);

#endif
