/*
 * A generation: the immutable snapshot built from one configuration file —
 * pools, backends, routes, listeners and the plugin instances bound to them.
 *
 * Reference counting. The main thread holds one reference to the current
 * generation; each worker holds one to the generation it currently serves and
 * one to every older generation it still has requests on. A request does not
 * touch the shared count: it bumps its worker's own counter in the
 * generation (fc_generation_enter/leave), which only that worker touches, so
 * starting a request costs no atomic operation. When the last reference goes,
 * the generation is handed to the main thread, which destroys it — plugin
 * instances first, then the plugin code only it used.
 *
 * Backends carry live state (struct fc_backend_shared) that outlives
 * generations: a backend present in two generations (same pool name, same
 * address) keeps its health, counters and idle upstream connections.
 */
#ifndef FC_GENERATION_H
#define FC_GENERATION_H

#include "config.h"
#include "overlay.h"
#include "plugin_host.h"

#include <stdint.h>
#include <uv.h>

struct fc_upstream;
struct fc_stats;

/** The rise/fall counters of one backend's active health checks (see health.h). */
struct fc_health_counters {
    uint32_t passes; /**< consecutive passing probes */
    uint32_t fails;  /**< consecutive failing probes */
    int up;          /**< the active verdict */
};

/**
 * Per worker list of idle upstream connections to one backend, and the TLS
 * session the next connection to it resumes (upstream.c).
 */
struct fc_idle_list {
    struct fc_upstream *head;
    uint32_t count;
    void *tls_session;   /**< an SSL_SESSION of the pool's TLS context, or NULL */
    uint64_t tls_serial; /**< the serial of that context (fc_tls_client_serial()) */
    char pad[64 - 2 * sizeof(void *) - sizeof(uint32_t) - sizeof(uint64_t) - 4];
};

/**
 * The part of a backend that lives across generations. Created by the main
 * thread; idle[w] is touched only by worker w.
 */
struct fc_backend_shared {
    struct fc_backend_state state; /**< what plugins see: up, inflight (atomics) */
    uint32_t refs;                 /**< generations using it (atomic) */
    char *key;                     /**< "pool\naddress" */
    struct fc_idle_list *idle;     /**< [worker_count] */
    uint32_t n_workers;

    /* Health (see health.h). */
    struct fc_health_counters active; /**< main thread only */
    uint64_t probed_ms;        /**< when its last probe began (main loop's uv_now), 0: never */
    uint32_t passive_failures; /**< consecutive, any worker (atomic) */
    uint32_t passive_tripped;  /**< set by a worker that marked it down (atomic) */
    uint64_t passive_until_ns; /**< end of a passive cool-down, 0 none (atomic) */

    /**
     * Not in rotation in the newest generation (drained, in maintenance or
     * removed): an idle connection to it is closed instead of kept. Set by
     * the main thread before it publishes that generation (atomic).
     */
    uint32_t retiring;

    /* What the operator sees (the status, the events). Main thread only. */
    uint32_t seen_up;    /**< state.up as the main thread last published it */
    uint64_t since_unix; /**< when it became so (0: since the start) */
    char why[128];       /**< why, as the health check or passive detection said */
};

/** What health.c keeps of a pool while its checker runs (probe slots, the timer). */
struct fc_health_pool;

/**
 * A rate limiter instance and what keeps it alive. It may outlive the
 * generation that created it: a reload whose pool of the same name names the
 * same plugin code with the same settings hands the instance on, so its
 * counts survive the reload. Main thread, except started[w] (worker w only).
 */
struct fc_ratelimit_shared {
    struct fc_instance inst;
    struct fc_plugin *plugin; /**< one reference held */
    uint32_t refs;            /**< generations using it */
    uint64_t settings;        /**< hash of the group's settings, with the plugin's digest */
    uint32_t *started;        /**< [n_workers]: generations that ran worker_start() there */
};

/**
 * A response cache store instance (a `cache` group), shared by all workers.
 * Handed on across a reload as a rate limiter is, with what it holds, when
 * the pool of the same name names the same plugin code with the same
 * settings. Main thread; the store's ops are called from any worker.
 */
struct fc_cache_shared {
    struct fc_instance inst;
    struct fc_plugin *plugin; /**< one reference held */
    uint32_t refs;            /**< generations using it */
    uint64_t settings;        /**< hash of the group's settings, with the plugin's digest */
};

/**
 * One backend of a generation's pool: the file's (as the runtime overlay may
 * have changed it) or one the overlay added.
 */
struct fc_gen_backend {
    char *address; /**< as configured, or as the runtime API shows it; owned */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint32_t weight;
    uint32_t given_weight; /**< the file's, DNS's or the runtime's, before the overlay's change */
    uint8_t admin;         /**< enum fc_backend_admin */
    uint8_t source;        /**< enum fc_backend_source */
};

/*
 * A pool's backends. All of them, in `backends`, `views`, `shared` and
 * `backend_stats`, share one index: those in rotation (admin state ready)
 * come first, in the file's order and then the runtime's, and the rest
 * (drained, in maintenance) after them. So the strategies' view is a prefix
 * of the health checker's: `view` holds the first n_rotation, `all` every one.
 */
struct fc_gen_pool {
    const struct fc_conf_pool *conf;
    struct fc_instance *health; /**< the checker instance (&health_inst); NULL: no `health` group */
    struct fc_instance health_inst;
    struct fc_health_pool *checker;  /**< health.c's, while the generation's checkers run */
    struct fc_pool_view view;        /**< the strategies': backends in rotation */
    struct fc_pool_view all;         /**< the health checker's: every backend */
    uint32_t n_backends;             /**< every backend (all.n_backends) */
    struct fc_gen_backend *backends; /**< [n_backends] */
    uint32_t
        *order; /**< [n_backends]: the indexes in the file's order, then the runtime's (shown so) */
    struct fc_backend_view *views;     /**< [n_backends] */
    struct fc_backend_shared **shared; /**< [n_backends] */
    struct fc_instance *strategy;      /**< [worker_count]: one instance per worker */
    struct fc_instance *ratelimit;     /**< NULL, or &rl->inst: shared by all workers */
    struct fc_ratelimit_shared *rl;
    struct fc_instance *cache; /**< NULL, or &cs->inst: the response cache's store */
    struct fc_cache_shared *cs;
    struct fc_stats *stats;          /**< the pool's counters (stats.h), one reference */
    struct fc_stats **backend_stats; /**< [n_backends]: each backend's, one reference each */
};

/** Per worker counters, each on its own cache line. */
struct fc_gen_worker {
    uint64_t requests; /**< requests of this worker still running on this generation */
    uint32_t entered;  /**< the worker ran the rate limiters' worker_start() for it */
    char pad[52];
};

struct fc_generation {
    uint32_t refs; /**< atomic */
    uint64_t id;
    struct fc_config *cfg; /**< owned */
    uint32_t n_workers;
    struct fc_plugin **plugins; /**< distinct loaded files, owned */
    uint32_t n_plugins;
    struct fc_gen_pool *pools;        /**< [cfg->n_pools] */
    struct fc_gen_worker *workers;    /**< [n_workers] */
    struct fc_generation *next_dead;  /**< main thread's list of generations to destroy */
    struct fc_health_run *health_run; /**< running checkers and scan; NULL when stopped */
};

struct fc_discovery;

/**
 * Builds a generation from a loaded config (one reference to cfg passes to
 * it, also on failure) with the runtime changes of `overlay` (may be NULL)
 * applied to its pools, and each `resolve = true` or "srv:" entry standing
 * for the addresses `dns` has for it now (none when dns is NULL or has no
 * answer yet): loads every plugin, creates every instance.
 * `previous` (may be NULL) lends backends that keep their state, and, when
 * it was built over the same cfg (a runtime change), its loaded plugins.
 * `main_loop` is handed to health plugins. Logs every error with file:line.
 * Main thread only.
 */
int fc_generation_build(struct fc_config *cfg, const struct fc_overlay *overlay,
                        const struct fc_discovery *dns, const struct fc_generation *previous,
                        uint32_t n_workers, void *main_loop, struct fc_generation **out);

/**
 * Before g is published: marks each backend that is not in rotation in g,
 * and each of `previous` that g no longer has, so that workers close their
 * idle connections to them (and keep none). Main thread.
 */
void fc_generation_mark_retiring(const struct fc_generation *g,
                                 const struct fc_generation *previous);

/** The pool named `name` in g, or NULL. */
struct fc_gen_pool *fc_generation_pool(const struct fc_generation *g, const char *name);

/**
 * The backend of pool `p` that `address` names: the same text as configured,
 * or the same IP address and port. Returns its index or -1.
 */
int fc_gen_pool_find(const struct fc_gen_pool *p, const char *address);

/** Takes a reference to a backend's shared state. Any thread, on state the caller can reach. */
void fc_backend_shared_acquire(struct fc_backend_shared *s);

/**
 * Drops a reference to a backend's shared state (held by each generation that
 * has the backend and by each open upstream connection to it). Any thread.
 */
void fc_backend_shared_release(struct fc_backend_shared *s);

/** Takes a reference. Any thread, on a generation the caller already holds. */
void fc_generation_acquire(struct fc_generation *g);

/**
 * Drops a reference. When it was the last, the generation is queued for the
 * main thread (through fc_generation_set_reaper's callback) or, with no reaper,
 * destroyed at once.
 */
void fc_generation_release(struct fc_generation *g);

/** How the last release reaches the main thread: fn(arg, g) must get g destroyed there. */
void fc_generation_set_reaper(void (*fn)(void *arg, struct fc_generation *g), void *arg);

/**
 * The function rate limiter instances get as their host's ratelimit_done():
 * the transaction's (txn.c sets it before the first generation is built).
 */
typedef void (*fc_ratelimit_done_fn)(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                                     uint64_t retry_after_ms);
void fc_generation_set_ratelimit_done(fc_ratelimit_done_fn fn);

/**
 * Likewise the function health checker instances get as probe_done(), with
 * their pool (struct fc_gen_pool) as `owner`: health.c's, which runs them.
 */
typedef void (*fc_probe_done_fn)(void *owner, struct fc_probe *probe, int ok, const char *reason);
void fc_generation_set_probe_done(fc_probe_done_fn fn);

/** Destroys a generation with no references left. Main thread only. */
void fc_generation_destroy(struct fc_generation *g);

/**
 * A worker starts or stops using a generation: runs the rate limiters'
 * worker_start() / worker_stop() on the calling worker thread. Leave is called
 * before the worker drops its last use of the generation.
 */
void fc_generation_worker_enter(struct fc_generation *g, uint32_t worker, void *loop);
void fc_generation_worker_leave(struct fc_generation *g, uint32_t worker, void *loop);

/**
 * A request of `worker` starts on g: it holds g through the worker's own
 * counter, so this costs no atomic operation. Worker thread.
 */
static inline void fc_generation_request_start(struct fc_generation *g, uint32_t worker)
{
    g->workers[worker].requests++;
}

/** That request ended. Returns the worker's requests still running on g. */
static inline uint64_t fc_generation_request_end(struct fc_generation *g, uint32_t worker)
{
    return --g->workers[worker].requests;
}

/** Requests of `worker` running on g. */
static inline uint64_t fc_generation_requests(const struct fc_generation *g, uint32_t worker)
{
    return g->workers[worker].requests;
}

#endif
