/*
 * What the unit tests of plugins and of the plugin host share:
 *
 *   - the log, captured line by line through the log sink;
 *   - a plugin loaded through the real loader, with the loader's reason
 *     printed when it refuses;
 *   - a plugin's group parsed from config text, as the config loader would
 *     hand it to fc_instance_create();
 *   - a libuv loop standing in for the main loop or a worker's, with a guard
 *     that ends any wait after GUARD_MS, and a reference timer to tell a
 *     plugin that is late from a machine that is slow.
 *
 * Included by exactly one test program each, so everything is static; the
 * functions are also inline, so that a program that needs only some of them
 * does not warn about the others.
 */
#ifndef FC_TEST_PLUGIN_FIXTURE_H
#define FC_TEST_PLUGIN_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include "log.h"
#include "plugin_host.h"
#include "plugin_loader.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

/* ---- the log ------------------------------------------------------------ */

/* Log lines captured through the log sink, oldest first; later ones are dropped. */
static char log_lines[80][512];
static int n_log_lines;

static inline void capture_log(void *arg, enum fc_log_level level, const char *line)
{
    if (n_log_lines < (int)(sizeof(log_lines) / sizeof(log_lines[0])))
        snprintf(log_lines[n_log_lines++], sizeof(log_lines[0]), "%s", line);
}

/* Forgets what was captured and captures from now on, at level info and above. */
static inline void log_capture_start(void)
{
    n_log_lines = 0;
    fc_log_set_sink(capture_log, NULL);
    fc_log_set_level(FC_LOG_INFO);
}

/* Sends the log back to stderr. */
static inline void log_capture_stop(void)
{
    fc_log_set_sink(NULL, NULL);
}

/* Whether exactly this line was captured. */
static inline int logged(const char *line)
{
    for (int i = 0; i < n_log_lines; i++)
        if (strcmp(log_lines[i], line) == 0)
            return 1;
    return 0;
}

/* Prints what was captured, for a failure that the log explains. */
static inline void dump_log(void)
{
    for (int i = 0; i < n_log_lines; i++)
        print_message("log: %s\n", log_lines[i]);
}

#define assert_logged(line)                                                                        \
    do {                                                                                           \
        if (!logged(line))                                                                         \
            dump_log();                                                                            \
        assert_true(logged(line));                                                                 \
    } while (0)

/* ---- plugins and their groups ------------------------------------------ */

/*
 * Loads the plugin at `path`, which must be of `kind`, into *out. Returns 0,
 * or -1 after printing the loader's reason (for a cmocka setup function,
 * which cannot fail_msg()).
 */
static inline int load_plugin(const char *path, enum fc_plugin_kind kind, struct fc_plugin **out)
{
    char err[512];
    if (fc_plugin_load(path, kind, out, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

/* A plugin's group parsed from text. The caller owns lc: config_destroy() it when done. */
struct parsed_group {
    config_t lc;
    struct fc_conf_plugin conf; /* its group lives in lc */
};

/*
 * Parses `text` into p and points p->conf at the group at `setting` (a
 * libconfig path such as "strategy"), for the plugin called `name`. Fails
 * the test if the text does not parse or has no such group.
 */
static inline void parse_group(struct parsed_group *p, const char *text, const char *setting,
                               const char *name)
{
    config_init(&p->lc);
    if (config_read_string(&p->lc, text) != CONFIG_TRUE)
        fail_msg("line %d: %s", config_error_line(&p->lc), config_error_text(&p->lc));
    const config_setting_t *group = config_lookup(&p->lc, setting);
    assert_non_null(group);
    p->conf = (struct fc_conf_plugin){.name = (char *)name,
                                      .path = (char *)name,
                                      .group = group,
                                      .line = config_setting_source_line(group)};
}

/*
 * Parses the `kind` group ("health", "rate_limit") of pool "web" for plugin
 * `name`, with `body` for its own lines. The group starts on line 3 and its
 * first key sits on line 5, which is what the tests' messages name:
 *
 *   1 pools = ( {
 *   2   name = "web";
 *   3   <kind> = {
 *   4     plugin = "<name>";
 *   5     <body>
 */
static inline void parse_pool_group(struct parsed_group *p, const char *kind, const char *name,
                                    const char *body)
{
    char text[2048], setting[64];
    snprintf(text, sizeof(text),
             "pools = ( {\n"
             "  name = \"web\";\n"
             "  %s = {\n"
             "    plugin = \"%s\";\n"
             "%s\n"
             "  };\n"
             "} );\n",
             kind, name, body);
    snprintf(setting, sizeof(setting), "pools.[0].%s", kind);
    parse_group(p, text, setting, name);
}

/* ---- a loop standing in for the core's ---------------------------------- */

/* No test may spin the loop longer than this, whatever the plugin does. */
#define GUARD_MS 5000
/*
 * How late something that times out may end after a reference timer of the
 * same length, started at the same loop time, fired. Measuring from the
 * reference rather than from the start keeps a loaded machine, which wakes
 * the whole loop late, from counting against the plugin.
 */
#define TIMEOUT_SLACK_MS 100

struct test_loop {
    uv_loop_t uv;
    uv_timer_t guard; /* ends a wait that went on for GUARD_MS */
    int guard_fired;
    uv_timer_t reference; /* as long as a timeout under test, started with it */
    uint64_t reference_fired_ms;
    uv_timer_t nap; /* see test_loop_run_for() */
};

/* Monotonic milliseconds, read now (uv_now() is the loop's cached time). */
static inline uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static inline void on_guard(uv_timer_t *t)
{
    ((struct test_loop *)t->data)->guard_fired = 1;
}

static inline void on_reference(uv_timer_t *t)
{
    ((struct test_loop *)t->data)->reference_fired_ms = now_ms();
}

static inline void on_nap(uv_timer_t *t)
{
}

/* Initializes the loop and the test's timers on it; 0 or a libuv error. */
static inline int test_loop_init(struct test_loop *tl)
{
    int rc = uv_loop_init(&tl->uv);
    if (rc != 0)
        return rc;
    uv_timer_init(&tl->uv, &tl->guard);
    uv_timer_init(&tl->uv, &tl->reference);
    uv_timer_init(&tl->uv, &tl->nap);
    tl->guard.data = tl->reference.data = tl->nap.data = tl;
    return 0;
}

/* Whether h is one of the test loop's own timers. */
static inline int test_loop_owns(const struct test_loop *tl, const uv_handle_t *h)
{
    return h == (const uv_handle_t *)&tl->guard || h == (const uv_handle_t *)&tl->reference ||
           h == (const uv_handle_t *)&tl->nap;
}

struct foreign_count {
    const struct test_loop *tl;
    int (*also_owned)(const uv_handle_t *h);
    int n;
};

static inline void count_foreign(uv_handle_t *h, void *arg)
{
    struct foreign_count *c = arg;
    if (!test_loop_owns(c->tl, h) && (c->also_owned == NULL || !c->also_owned(h)))
        c->n++;
}

/*
 * Handles on the loop, closing or not, that are neither the loop's timers nor
 * handles for which also_owned (may be NULL) says the test owns them: the
 * plugin's.
 */
static inline int test_loop_foreign_handles(const struct test_loop *tl,
                                            int (*also_owned)(const uv_handle_t *h))
{
    struct foreign_count c = {.tl = tl, .also_owned = also_owned};
    uv_walk((uv_loop_t *)&tl->uv, count_foreign, &c);
    return c.n;
}

/* Runs the loop until done(arg), or fails the test once it has run for GUARD_MS. */
static inline void test_loop_run_until(struct test_loop *tl, int (*done)(const void *arg),
                                       const void *arg)
{
    uv_timer_start(&tl->guard, on_guard, GUARD_MS, 0);
    while (!done(arg) && !tl->guard_fired)
        uv_run(&tl->uv, UV_RUN_ONCE);
    uv_timer_stop(&tl->guard);
    if (tl->guard_fired)
        fail_msg("what the test waited for did not come within %d ms", GUARD_MS);
}

/* Runs the loop for about ms milliseconds. */
static inline void test_loop_run_for(struct test_loop *tl, unsigned ms)
{
    uv_update_time(&tl->uv);
    uv_timer_start(&tl->nap, on_nap, ms, 0);
    while (uv_is_active((uv_handle_t *)&tl->nap))
        uv_run(&tl->uv, UV_RUN_ONCE);
}

/*
 * Starts the reference timer for something just started with a timeout of
 * ms: call it right after starting it, with no uv_update_time() in between,
 * so that both are due at the same loop time.
 */
static inline void test_loop_arm_reference(struct test_loop *tl, unsigned ms)
{
    tl->reference_fired_ms = 0;
    uv_timer_start(&tl->reference, on_reference, ms, 0);
}

/*
 * Fails unless something that started at started_ms with a timeout of
 * timeout_ms (and the reference timer armed with it) ended at ended_ms
 * within TIMEOUT_SLACK_MS of the reference timer or before it and, if
 * `at_least`, no earlier than timeout_ms after it started. `what` names it
 * in the failure: "the probe ended".
 */
static inline void test_loop_assert_in_time(const struct test_loop *tl, const char *what,
                                            uint64_t started_ms, uint64_t ended_ms,
                                            unsigned timeout_ms, int at_least)
{
    uint64_t took = ended_ms - started_ms;
    if (at_least && took + 1 < timeout_ms) /* + 1: the loop's clock counts whole milliseconds */
        fail_msg("%s after %llu ms, before its %u ms timeout", what, (unsigned long long)took,
                 timeout_ms);
    /* Not fired yet: it ended first, in the same turn of the loop or before. */
    uint64_t reference = tl->reference_fired_ms != 0 ? tl->reference_fired_ms : ended_ms;
    if (ended_ms > reference + TIMEOUT_SLACK_MS)
        fail_msg("%s %llu ms after its %u ms timeout was due", what,
                 (unsigned long long)(ended_ms - reference), timeout_ms);
}

/*
 * Closes the test's timers and runs the loop until nothing is left on it,
 * then closes it: 0, or -1 after printing why (a handle was left open).
 */
static inline int test_loop_close(struct test_loop *tl)
{
    uv_close((uv_handle_t *)&tl->guard, NULL);
    uv_close((uv_handle_t *)&tl->reference, NULL);
    uv_close((uv_handle_t *)&tl->nap, NULL);
    uv_run(&tl->uv, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&tl->uv);
    if (rc != 0) {
        fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
        return -1;
    }
    return 0;
}

#endif
