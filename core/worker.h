/*
 * Worker threads: their lifecycle, seen from the main thread. Each worker
 * runs its own libuv loop and accepts on its own SO_REUSEPORT socket per
 * listener, so the kernel spreads connections over workers. A client
 * connection, its upstream connections and their buffers all live on one
 * worker; nothing of them is shared. What the rooms of the request path see
 * of a worker is struct fc_worker (worker_types.h).
 *
 * The main thread talks to a worker only through the worker's async handle:
 * it publishes a new generation into `pending` or raises `stop`, then wakes it.
 */
#ifndef FC_WORKER_H
#define FC_WORKER_H

#include "worker_types.h"

#include <stdint.h>
#include <uv.h>

struct fc_generation;

/** Each worker thread signals `async` as it ends. Main thread, before any worker starts. */
void fc_worker_notify_exit(uv_async_t *async);

/**
 * Prepares worker `index` (loop, handles, each room's per-worker state, one
 * listener per fd, which must be bound and listening already) on the calling
 * (main) thread. Takes a reference to gen.
 */
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

#endif
