/*
 * ABI compatibility end to end: the real fulcrum runs a pool whose strategy
 * and health checker are plugins built against the frozen ABI 1.0 header
 * (tests/plugins/abi-1.0/): abi10_round_robin spreads the requests, and
 * abi10_tcp, which does its own libuv I/O on the main loop, takes a killed
 * backend out of rotation. workers = 1, so that one strategy instance sees
 * every request and the rotation is exact.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef FC_TEST_PLUGIN_DIR
#error "FC_TEST_PLUGIN_DIR (where the test plugins are built) must be defined by the build"
#endif

#define INTERVAL_MS 100
#define TIMEOUT_MS 200
#define DOWN_DEADLINE_MS 4000

/* n requests on fresh connections; how many each of the backends a, b, c answered. */
static void count_backends(struct it_env *env, struct it_fulcrum *f, int n, int counts[3])
{
    memset(counts, 0, 3 * sizeof(counts[0]));
    for (int i = 0; i < n; i++) {
        struct it_response r;
        it_get(env, f->port, "test", "/", &r);
        const char *from = it_header(&r, "X-Backend");
        if (r.status != 200 || from == NULL || strlen(from) != 1 || from[0] < 'a' || from[0] > 'c')
            fail_msg("request %d: status %d from \"%s\"", i, r.status, from != NULL ? from : "");
        counts[from[0] - 'a']++;
        it_response_free(&r);
    }
}

/*
 * Keeps a killed backend's port refusing connections, so that no process of
 * a test running beside us takes it: bound, never listening. Best effort.
 */
static int hold_port(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
                    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

IT_TEST(abi_1_0_strategy_and_health_checker)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 3);
    cfg.workers = 1;
    pool->strategy = FC_TEST_PLUGIN_DIR "/abi10_round_robin.so";
    pool->health = it_strf(env,
                           "plugin = \"%s\"; interval_ms = %d; timeout_ms = %d; rise = 2; "
                           "fall = 2;",
                           FC_TEST_PLUGIN_DIR "/abi10_tcp.so", INTERVAL_MS, TIMEOUT_MS);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* The 1.0 strategy: each backend in turn. */
    int counts[3];
    count_backends(env, f, 9, counts);
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], 3);

    /* The 1.0 checker: b killed, b marked down, with the checker's own reason. */
    int b = pool->ports[1];
    struct it_proc *proc = it_backend_proc(env, "b");
    it_proc_signal(proc, SIGKILL);
    int status;
    assert_int_equal(it_proc_wait(proc, IT_STOP_TIMEOUT_MS, &status), 0);
    static int held = -1; /* static: closed at exit should an assertion leave this frame */
    held = hold_port(b);

    const char *down = it_strf(env,
                               "backend 127.0.0.1:%d DOWN (connect: connection refused, "
                               "2 of 2 checks failed)",
                               b);
    int64_t deadline = it_now_ms() + DOWN_DEADLINE_MS;
    while (it_fulcrum_log_count(env, f, down) == 0) {
        if (it_now_ms() > deadline) {
            it_proc_dump(env, f->proc);
            fail_msg("\"%s\" not logged within %d ms", down, DOWN_DEADLINE_MS);
        }
        it_sleep_ms(10);
    }

    /* Out of rotation: a and c share every request, and none fails. */
    count_backends(env, f, 10, counts);
    assert_int_equal(counts[0], 5);
    assert_int_equal(counts[1], 0);
    assert_int_equal(counts[2], 5);
    assert_int_equal(it_fulcrum_log_count(env, f, "DOWN"), 1);
    if (held >= 0)
        close(held);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(abi_1_0_strategy_and_health_checker),
};

IT_MAIN(tests)
