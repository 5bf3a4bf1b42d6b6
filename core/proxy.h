/*
 * The HTTP proxy: client connections, the request/response transaction that
 * ties a client to an upstream connection, and the per-worker keep-alive pool
 * of upstream connections. Everything here runs on one worker's loop.
 */
#ifndef FC_PROXY_H
#define FC_PROXY_H

#include "worker.h"

#include <uv.h>

/** Prepares the parser settings. Main thread, before any worker starts. */
void fc_proxy_init(void);

/** libuv connection callback of a listener (server->data is its struct fc_listener). */
void fc_proxy_on_connection(uv_stream_t *server, int status);

/**
 * The host's ratelimit_done(): a verdict that a rate limiter left pending.
 * Runs on the worker thread of the request. `owner` is the limiter's instance.
 */
void fc_proxy_ratelimit_done(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                             uint64_t retry_after_ms);

/** A reload removed listener l: its idle connections close, the others after their request. */
void fc_proxy_listener_removed(struct fc_worker *w, struct fc_listener *l);

/** Draining: close idle client connections, end the others after their current request. */
void fc_proxy_drain(struct fc_worker *w);

/** Closes every client connection at once (shutdown timeout). */
void fc_proxy_close_clients(struct fc_worker *w);

/** Closes every idle upstream connection of the worker. */
void fc_proxy_close_idle_upstreams(struct fc_worker *w);

/** Frees the worker's free lists. Called once its loop has stopped. */
void fc_proxy_free_lists(struct fc_worker *w);

#endif
