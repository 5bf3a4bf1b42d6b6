/*
 * What the health checker tests share, on top of ../plugin_fixture.h: a
 * libuv loop standing in for the main loop, a health plugin loaded through
 * the real loader and created through the real host from a `health` group
 * parsed as the config loader would hand it, a synthetic pool whose backends
 * point at 127.0.0.1 sockets the test owns, and a probe_done hook recording
 * each verdict together with whether the plugin still had handles on the
 * loop when it came.
 *
 * Included by exactly one test program each; everything is static, and the
 * functions inline, as in plugin_fixture.h, so that a program that needs
 * only some of them (tests/unit/core/test_probe.c) does not warn about the
 * others.
 */
#ifndef FC_TEST_PROBE_HARNESS_H
#define FC_TEST_PROBE_HARNESS_H

#include "plugin_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#define CONFIG_FILE "test.conf"
#define MAX_BACKENDS 4

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
    struct test_loop loop;
    int in_probe; /* inside the plugin's probe(): probe_done must not come now */
    int early_done;
    int destroy_in_done; /* destroy the instance inside probe_done, as the host may */

    struct fc_plugin *plugin;
    struct fc_instance inst;
    int have_inst;
    struct parsed_group group;
    int have_group;

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

/* Handles on the loop that are not the test's: the plugin's, closing or not. */
static inline int plugin_handles(void)
{
    return test_loop_foreign_handles(&H.loop, H.test_owns);
}

static inline void on_probe_done(void *owner, struct fc_probe *probe, int ok, const char *reason)
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

/* Sets backend i to 127.0.0.1:port. */
static inline void set_backend(uint32_t i, uint16_t port)
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
static inline void set_backend_unix(uint32_t i)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&H.addrs[i];
    memset(&H.addrs[i], 0, sizeof(H.addrs[i]));
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof(sun->sun_path), "/nonexistent/fulcrum-test");
    snprintf(H.addresses[i], sizeof(H.addresses[i]), "unix:/nonexistent/fulcrum-test");
    H.views[i].sockaddr_len = sizeof(*sun);
}

static inline uint16_t local_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* A TCP socket bound to 127.0.0.1 on a port the kernel picks. */
static inline int bound_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* Loads the plugin; a pool of n backends, all pointing at the refused port until set. */
static inline int harness_setup(const char *plugin_path, uint32_t n)
{
    memset(&H, 0, sizeof(H));
    log_capture_start();
    if (test_loop_init(&H.loop) != 0)
        return -1;
    if (load_plugin(plugin_path, FC_PLUGIN_HEALTH, &H.plugin) < 0)
        return -1;

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
 * Creates the instance from a health group whose own lines are `body`; its
 * first key sits on line 5 of CONFIG_FILE (see parse_pool_group()).
 */
static inline int create_instance(const char *body)
{
    H.have_group = 1;
    parse_pool_group(&H.group, "health", H.plugin->desc->name, body);

    struct fc_instance_hooks hooks = {.main_loop = &H.loop.uv, .probe_done = on_probe_done};
    char label[64];
    snprintf(label, sizeof(label), "pool web: health %s", H.plugin->desc->name);
    int rc = fc_instance_create(&H.inst, H.plugin, &H.group.conf, CONFIG_FILE, health_core_keys,
                                &H.pool, &hooks, label);
    H.have_inst = rc == 0;
    return rc;
}

/* Starts a probe of backend i; its verdict lands in H.results[i]. */
static inline int start_probe(uint32_t i, uint32_t timeout_ms)
{
    struct probe_result *r = &H.results[i];
    memset(r, 0, sizeof(*r));
    uv_update_time(&H.loop.uv);
    r->started_ms = now_ms();
    H.in_probe = 1;
    int rc = H.plugin->desc->health->probe(H.inst.state, &H.views[i], timeout_ms,
                                           (struct fc_probe *)(void *)r);
    H.in_probe = 0;
    assert_false(H.early_done);
    return rc;
}

/* Whether the probe whose result is *r has its verdict. */
static inline int has_verdict(const void *r)
{
    return ((const struct probe_result *)r)->done > 0;
}

/* Whether backends [0, *n) all have a verdict. */
static inline int all_done(const void *n)
{
    for (uint32_t i = 0; i < *(const uint32_t *)n; i++)
        if (H.results[i].done == 0)
            return 0;
    return 1;
}

/* Runs the loop until backends [0, n) all have a verdict; fails after GUARD_MS. */
static inline void run_until_done(uint32_t n)
{
    test_loop_run_until(&H.loop, all_done, &n);
}

/* Waits for the verdict on backend i; checks the probe left nothing behind. */
static inline struct probe_result *wait_for(uint32_t i)
{
    test_loop_run_until(&H.loop, has_verdict, &H.results[i]);
    /* Let anything late show itself: a second probe_done would be counted. */
    uv_run(&H.loop.uv, UV_RUN_NOWAIT);
    assert_int_equal(H.results[i].done, 1);
    assert_int_equal(H.results[i].leftover, 0);
    return &H.results[i];
}

/* Probes backend i alone and waits for its verdict; checks the probe left nothing behind. */
static inline struct probe_result *probe_one(uint32_t i, uint32_t timeout_ms)
{
    assert_int_equal(start_probe(i, timeout_ms), 0);
    return wait_for(i);
}

/*
 * Probes backend i, which must time out, and checks that this costs one
 * timeout and no more: probe_done comes no earlier than timeout_ms after
 * probe(), and at most TIMEOUT_SLACK_MS after a reference timer of the same
 * length, started at the same loop time, fired (see test_loop_assert_in_time()).
 */
static inline struct probe_result *probe_expecting_timeout(uint32_t i, uint32_t timeout_ms)
{
    char expected[64];
    snprintf(expected, sizeof(expected), "timeout after %u ms", (unsigned)timeout_ms);

    assert_int_equal(start_probe(i, timeout_ms), 0);
    /* No uv_update_time() since probe(): both timers are due at the same loop time. */
    test_loop_arm_reference(&H.loop, timeout_ms);
    struct probe_result *r = wait_for(i);
    assert_false(r->ok);
    assert_string_equal(r->reason, expected);
    test_loop_assert_in_time(&H.loop, "the probe ended", r->started_ms, r->ended_ms, timeout_ms, 1);
    return r;
}

/*
 * Waits for the probes started on backends 0 and 1, and checks that each
 * came once, that 0 passed and 1 failed with `reason1`, and that whichever
 * came last found every handle of both probes closed.
 */
static inline void finish_two_probes(const char *reason1)
{
    run_until_done(2);
    uv_run(&H.loop.uv, UV_RUN_NOWAIT);
    assert_int_equal(H.results[0].done, 1);
    assert_int_equal(H.results[1].done, 1);
    assert_true(H.results[0].ok);
    assert_false(H.results[1].ok);
    assert_string_equal(H.results[1].reason, reason1);
    assert_true(H.results[0].leftover == 0 || H.results[1].leftover == 0);
    assert_int_equal(plugin_handles(), 0);
}

/*
 * What every checker that connects must do with an address that
 * uv_tcp_connect() refuses before probe() returns (not IPv4 or IPv6): fail
 * the probe with the reason, and still give the verdict later, from the loop.
 */
static inline void expect_connect_fails_synchronously(void)
{
    set_backend_unix(0);
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000); /* asserts probe_done came later, from the loop */
    assert_false(r->ok);
    assert_string_equal(r->reason, "connect: invalid argument");
}

/*
 * Destroys the instance, closes the test's handles (close_test_handles, may
 * be NULL), runs the loop dry and checks it closes: nothing of the plugin may
 * be left on it.
 */
static inline int harness_teardown(void (*close_test_handles)(void))
{
    if (H.have_inst)
        fc_instance_destroy(&H.inst);
    H.have_inst = 0;
    if (H.have_group)
        config_destroy(&H.group.lc);
    H.have_group = 0;

    if (close_test_handles != NULL)
        close_test_handles();
    int rc = test_loop_close(&H.loop);
    /* Only now: a handle left open would call back into the plugin's code. */
    fc_plugin_unload(H.plugin);
    H.plugin = NULL;
    if (H.refused_fd >= 0)
        close(H.refused_fd);
    log_capture_stop();
    return rc;
}

#endif
