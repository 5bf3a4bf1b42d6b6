/*
 * What the operator sees, on the admin listener: GET /metrics (Prometheus),
 * GET /api/status (JSON) and GET /api/events (Server-Sent Events: `status`
 * once a second, `backend` on each state change, `reload` on each reload).
 * It reads the daemon through the callbacks it is given and never touches a
 * worker's memory but through the counters of stats.h. Main thread.
 */
#ifndef FC_MONITOR_H
#define FC_MONITOR_H

#include "metrics.h"

#include <stdint.h>
#include <uv.h>

struct fc_admin;
struct fc_generation;
struct fc_monitor;

/** How the monitor reads the daemon. */
struct fc_monitor_source {
    const struct fc_generation *(*generation)(void *arg); /**< the one in force */
    void (*info)(void *arg, struct fc_metrics_info *out);
    uint32_t workers;
    void *arg;
};

/**
 * Registers the routes on admin and starts the once-a-second status events.
 * Returns NULL when out of memory.
 */
struct fc_monitor *fc_monitor_create(struct fc_admin *admin, uv_loop_t *loop,
                                     const struct fc_monitor_source *src);

/** A reload ended: an `event: reload` with its outcome (error: NULL when it was done). */
void fc_monitor_reloaded(struct fc_monitor *m, uint64_t generation, const char *error);

/**
 * The runtime API changed a backend: an `event: backend` with its new state
 * ("up", "down", "drain", "maint", or "removed") and why.
 */
void fc_monitor_backend_set(struct fc_monitor *m, const char *pool, const char *address,
                            const char *state, const char *reason);

/** Stops the timer and forgets the streams; frees m once its timer closed. */
void fc_monitor_destroy(struct fc_monitor *m);

#endif
