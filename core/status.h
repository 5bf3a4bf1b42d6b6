/*
 * The status document of GET /api/status (and of the event stream's status
 * events): the daemon, its listeners, pools and backends with their states
 * and counters, as JSON (the contract's fields; README, "Monitoring").
 * Main thread.
 */
#ifndef FC_STATUS_H
#define FC_STATUS_H

#include "metrics.h"

struct fc_gen_pool;
struct fc_generation;

/** Appends the status of g as one line of JSON (no newline) to out. */
/** A backend's source as the status shows it: "config", "runtime" or "dns". */
const char *fc_status_source_name(int source);

/**
 * Backend i's state as the status shows it: what the operator set comes
 * first ("drain", "maint": however healthy), else "up" or "down".
 */
const char *fc_status_state_name(const struct fc_gen_pool *pool, uint32_t i);

void fc_status_render(const struct fc_generation *g, const struct fc_metrics_info *info,
                      uint32_t workers, struct fc_text *out);

/**
 * Appends one backend's state change as JSON: {"pool", "backend", "state",
 * "since", "reason"} (an `event: backend` of the event stream).
 */
void fc_status_backend_event(const struct fc_generation *g, uint32_t pool, uint32_t backend,
                             struct fc_text *out);

#endif
