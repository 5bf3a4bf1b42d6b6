/*
 * The transaction: one request, from its first byte to the end of its
 * response (txn.c). It sits above the two transports (client.c, upstream.c),
 * whose events it handles, and below the worker's lifecycle (worker.c), which
 * calls what is declared here.
 */
#ifndef FC_TXN_H
#define FC_TXN_H

#include "worker_types.h"

#include <uv.h>

struct fc_listener;

/**
 * Prepares the parser settings and hands the transports their event tables
 * and the generations their rate-limit callback. Main thread, once, before
 * the first generation is built and before any worker starts.
 */
void fc_txn_init(void);

/** The worker's request memory (w->txns). Returns 0 or FC_ENOMEM. */
int fc_txn_worker_init(struct fc_worker *w);

/** Frees it. The worker's loop has stopped. */
void fc_txn_worker_free(struct fc_worker *w);

/**
 * Ends the connections accepted on `l` (all of the worker's when NULL)
 * gracefully: idle ones now, the others after their current response.
 */
void fc_txn_wind_down(struct fc_worker *w, struct fc_listener *l);

#endif
