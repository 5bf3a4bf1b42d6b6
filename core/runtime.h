/*
 * Runtime control: the admin listener's write endpoints for backends
 *
 *   POST   /api/pools/{pool}/backends            {"address": "IP:PORT", "weight": N, "state": S}
 *   PATCH  /api/pools/{pool}/backends/{address}  {"state": "drain"|"maint"|"ready", "weight": N}
 *   DELETE /api/pools/{pool}/backends/{address}
 *
 * and the overlay (overlay.h) they change, with its state file. A change
 * is a new generation over the running file's config with the new overlay
 * (the daemon builds and publishes it, fc_runtime_host.apply); the answer
 * goes once every worker serves it, so that no request that starts after
 * the answer can reach a drained or removed backend.
 *
 * Main thread only.
 */
#ifndef FC_RUNTIME_H
#define FC_RUNTIME_H

#include "overlay.h"

#include <stdint.h>
#include <uv.h>

struct fc_admin;
struct fc_config;
struct fc_generation;

/** What the runtime needs of the daemon. */
struct fc_runtime_host {
    /** The generation in force. */
    const struct fc_generation *(*generation)(void *arg);
    /**
     * Builds a generation over the running config with `overlay` and puts
     * it in force; returns its id, or 0 when that failed (the errors are
     * logged, the running generation stays).
     */
    uint64_t (*apply)(void *arg, const struct fc_overlay *overlay);
    /** Whether every worker serves generation `id` (or a later one) now. */
    int (*adopted)(void *arg, uint64_t id);
    /** The daemon is stopping: no change is taken any more. */
    int (*stopping)(void *arg);
    /**
     * A change is in force: backend `address` of `pool` is now `state`
     * ("up", "down", "drain", "maint" or "removed") because of `reason`.
     */
    void (*changed)(void *arg, const char *pool, const char *address, const char *state,
                    const char *reason);
    void *arg;
};

struct fc_runtime;

/** Creates the runtime with an empty overlay. NULL: out of memory. */
struct fc_runtime *fc_runtime_create(uv_loop_t *loop, const struct fc_runtime_host *host);

/**
 * Reads cfg's state file, if it has one, into the overlay, fitted to cfg.
 * A missing file is no change; an unreadable or corrupt one is reported and
 * ignored (the daemon starts with the file's backends as they are).
 */
void fc_runtime_load(struct fc_runtime *rt, const struct fc_config *cfg);

/** The overlay in force (for the first generation). */
const struct fc_overlay *fc_runtime_overlay(const struct fc_runtime *rt);

/**
 * A reload: `out` receives the overlay fitted to the newly loaded cfg, for
 * the generation to build (nothing is logged yet). Once that generation is
 * in force, fc_runtime_reloaded() frees `fitted` and fits the overlay in
 * force the same way, telling in the log what it drops; a reload that fails
 * frees `out` with fc_overlay_free() and changes nothing. 0 or FC_ENOMEM.
 */
int fc_runtime_fit(const struct fc_runtime *rt, const struct fc_config *cfg,
                   struct fc_overlay *out);
void fc_runtime_reloaded(struct fc_runtime *rt, struct fc_overlay *fitted,
                         const struct fc_config *cfg);

/** Registers the endpoints on a. Returns 0 or a negative errno. */
int fc_runtime_routes(struct fc_runtime *rt, struct fc_admin *a);

/**
 * Frees the runtime: answers still due are dropped; a state file being
 * written is finished first (the loop must run for that).
 */
void fc_runtime_destroy(struct fc_runtime *rt);

#endif
