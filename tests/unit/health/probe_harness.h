/*
 * What the health checker tests share: a libuv loop standing in for the main
 * loop, a health plugin loaded through the real loader and created through the
 * real host from a `health` group parsed as the config loader would hand it,
 * a synthetic pool whose backends point at 127.0.0.1 sockets the test owns,
 * and a probe_done hook recording each verdict together with whether the
 * plugin still had handles on the loop when it came.
 *
 * Included by exactly one test program each; everything is static.
 */
#ifndef FC_TEST_PROBE_HARNESS_H
#define FC_TEST_PROBE_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include "log.h"
#include "plugin_host.h"
#include "plugin_loader.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#define CONFIG_FILE "test.conf"
#define MAX_BACKENDS 4
/* No test may spin the loop longer than this, whatever the plugin does. */
#define GUARD_MS 5000
/* How long after its timeout a probe may end; see probe_expecting_timeout(). */
#define TIMEOUT_SLACK_MS 100

/* The keys the core reads from a `health` group itself. */
static const char *const health_core_keys[] = {"interval_ms", "timeout_ms", "rise",
                                               "fall",        "initial",    NULL};

/* One probe's outcome, as the probe_done hook saw it. */
struct probe_result {
    int done; /* times probe_done came for this probe: must end at 1 */
    int ok;
    char reason[128];
    int leftover; /* handles of the plugin still on the loop when probe_done came */
    uint64_t started_ms, ended_ms; /* monotonic time at probe() and at probe_done */
};

struct harness {
    uv_loop_t loop;
    uv_timer_t guard;
    int guard_fired;
    uv_timer_t reference; /* as long as a probe's timeout, started with it */
    uint64_t reference_fired_ms;
    int in_probe; /* inside the plugin's probe(): probe_done must not come now */
    int early_done;
    int destroy_in_done; /* destroy the instance inside probe_done, as the host may */

    struct fc_plugin *plugin;
    struct fc_instance inst;
    int have_inst;
    config_t lc;
    int have_lc;
    struct fc_conf_plugin conf;

    struct fc_backend_state states[MAX_BACKENDS];
    struct sockaddr_storage addrs[MAX_BACKENDS];
    char addresses[MAX_BACKENDS][64];
    struct fc_backend_view views[MAX_BACKENDS];
    struct fc_pool_view pool;
    struct probe_result results[MAX_BACKENDS];

    int refused_fd; /* bound, never listening: connections to it are refused */

    /* Set by the test program: whether a handle on the loop belongs to the test. */
    int (*test_owns)(const uv_handle_t *h);
};

static struct harness H;

/* Log lines captured through the log sink. */
static char log_lines[64][512];
static int n_log_lines;

static void capture_log(void *arg, enum fc_log_level level, const char *line)
{
    if (n_log_lines < (int)(sizeof(log_lines) / sizeof(log_lines[0])))
        snprintf(log_lines[n_log_lines++], sizeof(log_lines[0]), "%s", line);
}

static int logged(const char *line)
{
    for (int i = 0; i < n_log_lines; i++)
        if (strcmp(log_lines[i], line) == 0)
            return 1;
    return 0;
}

#define assert_logged(line)                                                                        \
    do {                                                                                           \
        if (!logged(line))                                                                         \
            for (int i_ = 0; i_ < n_log_lines; i_++)                                               \
                print_message("log: %s\n", log_lines[i_]);                                         \
        assert_true(logged(line));                                                                 \
    } while (0)

/* Monotonic milliseconds, read now (uv_now() is the loop's cached time). */
static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static int owned_by_test(const uv_handle_t *h)
{
    return h == (const uv_handle_t *)&H.guard || h == (const uv_handle_t *)&H.reference ||
           (H.test_owns != NULL && H.test_owns(h));
}

static void count_foreign(uv_handle_t *h, void *arg)
{
    if (!owned_by_test(h))
        (*(int *)arg)++;
}

/* Handles on the loop that are not the test's: the plugin's, closing or not. */
static int plugin_handles(void)
{
    int n = 0;
    uv_walk(&H.loop, count_foreign, &n);
    return n;
}

static void on_probe_done(void *owner, struct fc_probe *probe, int ok, const char *reason)
{
    /* The probe handle the tests pass is the address of the backend's result. */
    struct probe_result *r = (struct probe_result *)(void *)probe;
    if (H.in_probe)
        H.early_done = 1;
    r->done++;
    r->ok = ok;
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    r->leftover = plugin_handles();
    r->ended_ms = now_ms();
    if (H.destroy_in_done && H.have_inst) {
        fc_instance_destroy(&H.inst);
        H.have_inst = 0;
    }
}

static void on_guard(uv_timer_t *t)
{
    H.guard_fired = 1;
}

static void on_reference(uv_timer_t *t)
{
    H.reference_fired_ms = now_ms();
}

/* Sets backend i to 127.0.0.1:port. */
static void set_backend(uint32_t i, uint16_t port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&H.addrs[i];
    memset(&H.addrs[i], 0, sizeof(H.addrs[i]));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(H.addresses[i], sizeof(H.addresses[i]), "127.0.0.1:%u", (unsigned)port);
    H.views[i].sockaddr_len = sizeof(*sin);
}

/* Sets backend i to an address uv_tcp_connect() refuses on the spot (not IPv4 or IPv6). */
static void set_backend_unix(uint32_t i)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&H.addrs[i];
    memset(&H.addrs[i], 0, sizeof(H.addrs[i]));
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof(sun->sun_path), "/nonexistent/fulcrum-test");
    snprintf(H.addresses[i], sizeof(H.addresses[i]), "unix:/nonexistent/fulcrum-test");
    H.views[i].sockaddr_len = sizeof(*sun);
}

static uint16_t local_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* A TCP socket bound to 127.0.0.1 on a port the kernel picks. */
static int bound_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* Loads the plugin; a pool of n backends, all pointing at the refused port until set. */
static int harness_setup(const char *plugin_path, uint32_t n)
{
    char err[512];
    memset(&H, 0, sizeof(H));
    n_log_lines = 0;
    fc_log_set_sink(capture_log, NULL);
    fc_log_set_level(FC_LOG_INFO);

    if (uv_loop_init(&H.loop) != 0)
        return -1;
    uv_timer_init(&H.loop, &H.guard);
    uv_timer_init(&H.loop, &H.reference);
    if (fc_plugin_load(plugin_path, FC_PLUGIN_HEALTH, &H.plugin, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }

    H.refused_fd = bound_socket();
    uint16_t refused = local_port(H.refused_fd);
    for (uint32_t i = 0; i < n; i++) {
        H.states[i].up = 1;
        H.views[i] = (struct fc_backend_view){
            .index = i,
            .weight = 1,
            .address = H.addresses[i],
            .sockaddr = (const struct sockaddr *)&H.addrs[i],
            .state = &H.states[i],
        };
        set_backend(i, refused);
    }
    H.pool = (struct fc_pool_view){.name = "web", .n_backends = n, .backends = H.views};
    return 0;
}

/*
 * Creates the instance from a health group whose own lines are `body`. The
 * group's first key sits on line 5 of CONFIG_FILE:
 *
 *   1 pools = ( {
 *   2   name = "web";
 *   3   health = {
 *   4     plugin = "...";
 *   5     <body>
 */
static int create_instance(const char *body)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "pools = ( {\n"
             "  name = \"web\";\n"
             "  health = {\n"
             "    plugin = \"%s\";\n"
             "%s\n"
             "  };\n"
             "} );\n",
             H.plugin->desc->name, body);
    config_init(&H.lc);
    H.have_lc = 1;
    if (config_read_string(&H.lc, text) != CONFIG_TRUE)
        fail_msg("line %d: %s", config_error_line(&H.lc), config_error_text(&H.lc));
    const config_setting_t *group = config_lookup(&H.lc, "pools.[0].health");
    assert_non_null(group);
    H.conf = (struct fc_conf_plugin){.name = (char *)H.plugin->desc->name,
                                     .path = (char *)H.plugin->desc->name,
                                     .group = group,
                                     .line = config_setting_source_line(group)};

    struct fc_instance_hooks hooks = {.main_loop = &H.loop, .probe_done = on_probe_done};
    char label[64];
    snprintf(label, sizeof(label), "pool web: health %s", H.plugin->desc->name);
    int rc = fc_instance_create(&H.inst, H.plugin, &H.conf, CONFIG_FILE, health_core_keys, &H.pool,
                                &hooks, label);
    H.have_inst = rc == 0;
    return rc;
}

/* Starts a probe of backend i; its verdict lands in H.results[i]. */
static int start_probe(uint32_t i, uint32_t timeout_ms)
{
    struct probe_result *r = &H.results[i];
    memset(r, 0, sizeof(*r));
    uv_update_time(&H.loop);
    r->started_ms = now_ms();
    H.in_probe = 1;
    int rc = H.plugin->desc->health->probe(H.inst.state, &H.views[i], timeout_ms,
                                           (struct fc_probe *)(void *)r);
    H.in_probe = 0;
    assert_false(H.early_done);
    return rc;
}

/* Runs the loop until backends [0, n) all have a verdict, or the guard fires. */
static void run_until_done(uint32_t n)
{
    uv_timer_start(&H.guard, on_guard, GUARD_MS, 0);
    for (;;) {
        uint32_t done = 0;
        for (uint32_t i = 0; i < n; i++)
            done += H.results[i].done > 0;
        if (done == n || H.guard_fired)
            break;
        uv_run(&H.loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&H.guard);
    assert_false(H.guard_fired);
}

/* Waits for the verdict on backend i; checks the probe left nothing behind. */
static struct probe_result *wait_for(uint32_t i)
{
    uv_timer_start(&H.guard, on_guard, GUARD_MS, 0);
    while (H.results[i].done == 0 && !H.guard_fired)
        uv_run(&H.loop, UV_RUN_ONCE);
    uv_timer_stop(&H.guard);
    assert_false(H.guard_fired);
    /* Let anything late show itself: a second probe_done would be counted. */
    uv_run(&H.loop, UV_RUN_NOWAIT);
    assert_int_equal(H.results[i].done, 1);
    assert_int_equal(H.results[i].leftover, 0);
    return &H.results[i];
}

/* Probes backend i alone and waits for its verdict; checks the probe left nothing behind. */
static struct probe_result *probe_one(uint32_t i, uint32_t timeout_ms)
{
    assert_int_equal(start_probe(i, timeout_ms), 0);
    return wait_for(i);
}

/*
 * Probes backend i, which must time out, and checks that this costs one
 * timeout and no more: probe_done comes no earlier than timeout_ms after
 * probe(), and at most TIMEOUT_SLACK_MS after a reference timer of the same
 * length, started at the same loop time, fired. Measuring the excess from the
 * reference timer rather than from the start keeps a loaded machine, which
 * wakes the whole loop late, from counting against the plugin.
 */
static struct probe_result *probe_expecting_timeout(uint32_t i, uint32_t timeout_ms)
{
    char expected[64];
    snprintf(expected, sizeof(expected), "timeout after %u ms", (unsigned)timeout_ms);

    H.reference_fired_ms = 0;
    assert_int_equal(start_probe(i, timeout_ms), 0);
    /* No uv_update_time() since probe(): both timers are due at the same loop time. */
    uv_timer_start(&H.reference, on_reference, timeout_ms, 0);
    struct probe_result *r = wait_for(i);
    assert_false(r->ok);
    assert_string_equal(r->reason, expected);

    uint64_t took = r->ended_ms - r->started_ms;
    if (took + 1 < timeout_ms) /* + 1: the loop's clock counts whole milliseconds */
        fail_msg("the probe ended after %llu ms, before its %u ms timeout",
                 (unsigned long long)took, (unsigned)timeout_ms);
    /* Not fired yet: the probe ended in the same turn of the loop, before it. */
    uint64_t reference = H.reference_fired_ms != 0 ? H.reference_fired_ms : r->ended_ms;
    if (r->ended_ms > reference + TIMEOUT_SLACK_MS)
        fail_msg("the probe ended %llu ms after its %u ms timeout was due",
                 (unsigned long long)(r->ended_ms - reference), (unsigned)timeout_ms);
    return r;
}

/*
 * Destroys the instance, closes the test's handles (close_test_handles, may
 * be NULL), runs the loop dry and checks it closes: nothing of the plugin may
 * be left on it.
 */
static int harness_teardown(void (*close_test_handles)(void))
{
    if (H.have_inst)
        fc_instance_destroy(&H.inst);
    H.have_inst = 0;
    if (H.have_lc)
        config_destroy(&H.lc);
    H.have_lc = 0;

    if (close_test_handles != NULL)
        close_test_handles();
    uv_close((uv_handle_t *)&H.guard, NULL);
    uv_close((uv_handle_t *)&H.reference, NULL);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&H.loop);
    /* Only now: a handle left open would call back into the plugin's code. */
    fc_plugin_unload(H.plugin);
    H.plugin = NULL;
    if (H.refused_fd >= 0)
        close(H.refused_fd);
    fc_log_set_sink(NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
        return -1;
    }
    return 0;
}

#endif
