/*
 * Backend health: active checks through a health plugin, and passive
 * detection of failing backends by the proxy itself.
 *
 * Every backend's health lives in its struct fc_backend_shared, so it survives
 * reloads. What strategies see, fc_backend_state.up, is derived from two
 * verdicts:
 *   - active: the rise/fall state machine fed by the pool's health plugin
 *     (main thread only); a pool without a checker has no active veto;
 *   - passive: a backend that failed `max_fails` times in a row (failed
 *     connects, response timeouts) on any worker is taken out. Without a
 *     checker it comes back after `fail_timeout_ms`; with one, it is marked
 *     down for the checker, which brings it back after `rise` passing probes.
 */
#ifndef FC_HEALTH_H
#define FC_HEALTH_H

#include "generation.h"

#include <stdint.h>
#include <uv.h>

enum fc_health_transition {
    FC_HEALTH_SAME = 0,
    FC_HEALTH_WENT_UP = 1,
    FC_HEALTH_WENT_DOWN = 2,
};

/**
 * Applies one probe result to the counters: an up backend goes down after
 * `fall` consecutive failures, a down one comes up after `rise` consecutive
 * passes. Returns the transition. Pure: unit-tested on its own.
 */
enum fc_health_transition fc_health_apply(struct fc_health_counters *h, int ok, uint32_t rise,
                                          uint32_t fall);

/**
 * Hands the generations this room's probe_done(), which their health checker
 * instances call. Main thread, before the first generation is built.
 */
void fc_health_init(void);

/**
 * Starts the generation's active checkers (the instances it built, with one
 * probe slot per backend) and passive scan on the main loop. `at_once`: the
 * first round of probes runs at once (a start, a reload); otherwise (a
 * runtime or DNS change) each backend is probed one interval after its last
 * probe began, whichever generation ran it, so that changes in quick
 * succession neither add probes nor hold them off, and a backend new to the
 * pool is probed at once.
 */
int fc_health_start(struct fc_generation *g, uv_loop_t *loop, int at_once);

/**
 * Stops them: no new probe starts; once the probes in flight have ended and
 * the handles are closed, `done(arg)` runs on the main loop. A generation that
 * was never started calls done at once.
 */
void fc_health_stop(struct fc_generation *g, void (*done)(void *arg), void *arg);

/**
 * Passive detection, called by workers: a failed connect or a response
 * timeout on backend `b` of `pool`. May mark the backend down.
 */
void fc_health_report_failure(struct fc_gen_pool *pool, uint32_t b, const char *what);

/** The same at a given time (monotonic ns): for tests. */
void fc_health_report_failure_at(struct fc_gen_pool *pool, uint32_t b, const char *what,
                                 uint64_t now_ns);

/**
 * Ends passive cool-downs that are over at `now_ns` and republishes every
 * backend's up state. The running generation's scan timer calls it; exposed
 * for tests. Main thread.
 */
void fc_health_scan(struct fc_generation *g, uint64_t now_ns);

/**
 * fn(arg, pool, backend) is called on the main thread whenever a backend's
 * state as strategies see it (up or down) changed; the backend's shared state
 * then holds since when and why (struct fc_backend_shared: since_unix, why).
 */
void fc_health_set_observer(void (*fn)(void *arg, struct fc_gen_pool *pool, uint32_t backend),
                            void *arg);

/** Passive detection: the backend answered. Resets its failure count. */
static inline void fc_health_report_success(uint32_t *consecutive_failures)
{
    if (__atomic_load_n(consecutive_failures, __ATOMIC_RELAXED) != 0)
        __atomic_store_n(consecutive_failures, 0, __ATOMIC_RELAXED);
}

#endif
