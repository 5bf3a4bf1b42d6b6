/*
 * Plugin instances and the host table each of them receives. An instance ties
 * a loaded plugin to its configuration group and its private state; the host
 * table embedded in it is what the plugin calls back into.
 */
#ifndef FC_PLUGIN_HOST_H
#define FC_PLUGIN_HOST_H

#include "config.h"
#include "plugin_loader.h"
#include "probe.h"

#include <fulcrum/plugin.h>
#include <stdint.h>

/**
 * Services that only the instance's owner (a pool of a generation) can
 * provide; any of them may be NULL.
 */
struct fc_instance_hooks {
    void *owner;
    void *main_loop; /**< uv_loop_t * of the main thread */
    uint32_t worker_count;
    void (*probe_done)(void *owner, struct fc_probe *probe, int ok, const char *reason);
    void (*ratelimit_done)(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                           uint64_t retry_after_ms);
    /** Replaces the monotonic clock the plugin sees (tests inject time with it). */
    uint64_t (*now_ns)(void *owner);
    /** The pool's name, copied into the instance (fc_host.pool_name). NULL: "". */
    const char *pool_name;
    /** The pool's `tls`, for the probes (struct fc_prober); NULL: plain TCP. */
    const struct fc_tls_client *tls;
};

struct fc_instance {
    struct fc_host host;            /**< handed to the plugin; the instance is found from it */
    const struct fc_plugin *plugin; /**< borrowed: outlives the instance */
    void *state;                    /**< the plugin's, from create() */
    struct fc_instance_hooks hooks;
    char label[192];     /**< log prefix, e.g. "pool web: strategy round_robin" */
    char pool_name[128]; /**< a copy: the instance may outlive the config it came from */
    /** Copies of the strings config_string() handed out; freed by fc_instance_destroy(). */
    struct fc_instance_string *strings;
    /**
     * The probes that probe_connect() runs for the plugin, on hooks.main_loop,
     * reported through hooks.probe_done.
     */
    struct fc_prober prober;

    /* Only meaningful during create(). */
    const struct fc_conf_plugin *conf;
    const char *config_file;
    const char *const *core_keys; /**< keys the core reads itself (NULL-terminated) */
    int creating;
    int config_failed;
    uint64_t keys_read; /**< bit i set: the i-th setting of the group was read */
};

/**
 * Creates an instance of `plugin` (whose kind decides which create() runs) with
 * its keys from `conf`, for `pool` (NULL for a rate limiter). `core_keys` lists
 * the keys of the group that the core reads itself (besides "plugin"), which
 * are then not reported as unknown. Runs the plugin's create() and then
 * reports every key of the group that neither side read as
 * "FILE:LINE: KEY: unknown key for PLUGIN". Returns 0, or a negative code after
 * logging why (create() failed, a value was rejected, an unknown key).
 * `label` becomes the log prefix. inst is caller-owned memory.
 */
int fc_instance_create(struct fc_instance *inst, const struct fc_plugin *plugin,
                       const struct fc_conf_plugin *conf, const char *config_file,
                       const char *const *core_keys, const struct fc_pool_view *pool,
                       const struct fc_instance_hooks *hooks, const char *label);

/** Runs the plugin's destroy() (if any). Does not free inst. */
void fc_instance_destroy(struct fc_instance *inst);

/** The instance that owns a host table. */
static inline struct fc_instance *fc_instance_of(const struct fc_host *host)
{
    return (struct fc_instance *)(void *)host; /* host is the first member */
}

#endif
