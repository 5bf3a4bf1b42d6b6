/*
 * The worker as the rooms of the request path see it: one thread's libuv
 * loop, the generation new requests use, whether it drains, and the
 * per-worker state of each room. Types only, so that every room can include
 * it without including the worker's lifecycle (worker.h), which sits above
 * them all.
 *
 * Each room owns its part: client.c the client connections, upstream.c the
 * upstream connections and keep-alive pool, txn.c the request memory,
 * access_log.c the buffered lines, listener.c the listening sockets. Each
 * part is created by its room's fc_*_worker_init() and freed by its
 * fc_*_worker_free(), both called by worker.c.
 *
 * Rooms never call the worker: what the worker must hear of comes up through
 * the two hooks below, which worker.c sets.
 */
#ifndef FC_WORKER_TYPES_H
#define FC_WORKER_TYPES_H

#include <stdint.h>
#include <uv.h>

struct fc_generation;
struct fc_listener;
struct fc_client_set;
struct fc_upstream_set;
struct fc_txn_cache;
struct fc_access_log;
struct fc_tls_worker;

struct fc_worker {
    uint32_t index;
    uv_loop_t loop;
    struct fc_generation *gen; /**< the generation new requests use; one reference held */
    int draining;              /**< stopping: no new connections, none kept alive */

    struct fc_listener **listeners; /**< listener.c: this worker's sockets, one per listener */
    uint32_t n_listeners;
    struct fc_client_set *clients;     /**< client.c */
    struct fc_upstream_set *upstreams; /**< upstream.c */
    struct fc_txn_cache *txns;         /**< txn.c */
    struct fc_access_log *access_log;  /**< access_log.c */
    struct fc_tls_worker *tls; /**< tls.c: the TLS connections' buffers (worker.c makes it) */

    /**
     * A client or upstream connection closed (its last close callback ran).
     * While draining, the worker looks whether it has become idle.
     */
    void (*on_connection_closed)(struct fc_worker *w);
    /**
     * The last request on generation g, which is no longer the worker's
     * current one, ended: the worker retires g.
     */
    void (*on_generation_done)(struct fc_worker *w, struct fc_generation *g);

    /* The lifecycle's own fields (worker.c only). */
    uv_thread_t thread;
    uv_async_t wakeup;
    uv_check_t flush_check;
    uv_idle_t release_idle;         /**< releases retired generations; see worker.c */
    struct fc_generation **retired; /**< done with in this iteration */
    struct fc_generation **ready;   /**< done with in the previous one: released next */
    uint32_t n_retired, cap_retired, n_ready, cap_ready;
    struct fc_generation *pending; /**< published by the main thread (atomic exchange) */
    uint32_t stop;                 /**< atomic: 1 drain and stop, 2 stop now */
    uint32_t exited;               /**< atomic: the thread's loop has returned */
    uint64_t adopted;              /**< atomic: id of the generation the worker serves now */
};

#endif
