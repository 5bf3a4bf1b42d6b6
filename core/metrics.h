/*
 * The Prometheus exposition (text format 0.0.4) of what fulcrum counts: the
 * metric names of the contract (README, "Monitoring"), from the current
 * generation, the per-worker counters (stats.h) summed now, and the process.
 * Main thread.
 */
#ifndef FC_METRICS_H
#define FC_METRICS_H

#include "text.h"

#include <stddef.h>
#include <stdint.h>

struct fc_generation;

/** What the daemon knows beyond the generation. */
struct fc_discovery;

struct fc_metrics_info {
    uint64_t reloads_done, reloads_failed;
    uint64_t last_reload_success_unix; /**< the start counts as one */
    double start_time_unix;
    const char *last_error; /**< why the last failed reload failed; "" if none failed */
    /** Service discovery's query counts (discovery.h); NULL: none (`fulcrum_dns_*` absent). */
    const struct fc_discovery *dns;
};

/** The q-quantile (0..1) of a latency histogram, in milliseconds, interpolated in its bucket. */
double fc_metrics_quantile_ms(const uint64_t *buckets, double q);

/** Appends the whole exposition to out. */
void fc_metrics_render(const struct fc_generation *g, const struct fc_metrics_info *info,
                       struct fc_text *out);

#endif
