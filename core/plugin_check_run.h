/*
 * What the parts of `fulcrum plugin-check` share (plugin_check.h): one run
 * of a kind's exercise over the loaded plugin and its keys, and how a run
 * reports. The exercise runs several times (leak accounting compares the
 * memory in use after each): the first run prints its report, the others
 * run quietly and shorter.
 *
 * Everything runs on the main thread except what the rate limiter's
 * exercise runs on its own worker threads, which only calls
 * fc_check_fail() (locked) from there.
 */
#ifndef FC_PLUGIN_CHECK_RUN_H
#define FC_PLUGIN_CHECK_RUN_H

#include "plugin_host.h"

#include <stdint.h>
#include <uv.h>

/** The simulated pool's backends. */
#define FC_CHECK_BACKENDS 4

struct fc_check {
    const char *file; /**< as given on the command line */
    const struct fc_plugin *plugin;
    const struct fc_conf_plugin *conf; /**< the keys given, as a group */
    const char *conf_file;             /**< what messages about the keys name as the file */
    const char *const *core_keys;      /**< the group's keys the core reads itself */

    int verbose;    /**< this run prints its report (the first) */
    uint32_t scale; /**< 100 on the first run, less on the quiet ones: a percentage of the work */

    /** Health: the probes' timeout_ms (the group's `timeout_ms`, else the core's default). */
    uint32_t timeout_ms;

    uv_mutex_t lock; /**< guards failure, from the rate limiter's threads */
    int failed;
    char failure[512]; /**< the first failure: the line the command ends with */
};

/** Prints a line of the report (printf's format; a newline follows), on the first run only. */
void fc_check_say(struct fc_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Prints "  warning: ..." on the first run only: something to look at that is not a failure. */
void fc_check_warn(struct fc_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Records a failure (the first one is kept), from any thread. Returns FC_ERROR. */
int fc_check_fail(struct fc_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Whether a failure was recorded: the exercise stops at the next step. Any thread. */
int fc_check_failed(struct fc_check *c);

/**
 * Creates an instance of the plugin with the keys given, as the daemon
 * would for a pool (NULL for a rate limiter). A refusal is recorded as the
 * failure, with the first error line the plugin or the host logged. 0 or
 * FC_ERROR.
 */
int fc_check_create(struct fc_check *c, struct fc_instance *inst, const struct fc_pool_view *pool,
                    const struct fc_instance_hooks *hooks, const char *label);

/**
 * The simulated pool's backend addresses ("192.0.2.1:8080" ...: TEST-NET-1,
 * nothing is ever sent to them) and a sockaddr for each.
 */
const char *fc_check_address(uint32_t i);
void fc_check_sockaddr(uint32_t i, struct sockaddr_storage *ss, socklen_t *len);

/** The exercises, one a kind. Each returns 0 or FC_ERROR after fc_check_fail(). */
int fc_check_strategy(struct fc_check *c);
int fc_check_ratelimit(struct fc_check *c);
int fc_check_health(struct fc_check *c);
int fc_check_cache(struct fc_check *c);

#endif
