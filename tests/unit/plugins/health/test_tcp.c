/*
 * Tests of plugins/health/tcp.c, loaded through the real loader and host,
 * probing sockets the test owns on 127.0.0.1: one listening, one bound but
 * not listening (refused), and one whose accept queue is full, so that the
 * kernel drops the probe's SYN and the connect hangs until the timeout.
 */
#include "probe_harness.h"

#include <stdlib.h>
#include <sys/socket.h>

#define TCP_PLUGIN FC_PLUGIN_BUILD_DIR "/tcp.so"

static int listen_fd = -1;
static int filler_fd = -1;

/* Points backend i at a socket listening with `backlog`; returns the port. */
static uint16_t listen_on(uint32_t i, int backlog)
{
    listen_fd = bound_socket();
    assert_int_equal(listen(listen_fd, backlog), 0);
    uint16_t port = local_port(listen_fd);
    set_backend(i, port);
    return port;
}

static int setup(void **unused)
{
    listen_fd = -1;
    filler_fd = -1;
    return harness_setup(TCP_PLUGIN, 2);
}

static int teardown(void **unused)
{
    int rc = harness_teardown(NULL);
    if (filler_fd >= 0)
        close(filler_fd);
    if (listen_fd >= 0)
        close(listen_fd);
    return rc;
}

static void test_descriptor(void **unused)
{
    assert_string_equal(H.plugin->desc->name, "tcp");
    assert_int_equal(H.plugin->desc->kind, FC_PLUGIN_HEALTH);
}

static void test_listening_passes(void **unused)
{
    listen_on(0, 16);
    /* The core's own keys sit in the group and are not reported as unknown. */
    assert_int_equal(create_instance("    interval_ms = 1000; timeout_ms = 500; rise = 2;"), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_true(r->ok);
    assert_string_equal(r->reason, "connected");
    /* Probes of one backend follow each other on the same slot. */
    for (int i = 0; i < 5; i++)
        assert_true(probe_one(0, 1000)->ok);
    assert_int_equal(n_log_lines, 0);
}

static void test_refused(void **unused)
{
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_false(r->ok);
    assert_string_equal(r->reason, "connect: connection refused");
}

static void test_full_backlog_times_out(void **unused)
{
    /*
     * With a backlog of 0 Linux queues one connection; while it sits there
     * unaccepted, the listener drops new SYNs (tcp_abort_on_overflow = 0, the
     * default, else it would answer with a reset). The first SYN retry comes
     * after a second, so a 300 ms probe cannot get through.
     */
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_abort_on_overflow", "r");
    int abort_on_overflow = 0;
    if (f != NULL) {
        if (fscanf(f, "%d", &abort_on_overflow) != 1)
            abort_on_overflow = 0;
        fclose(f);
    }
    if (abort_on_overflow != 0)
        skip();

    uint16_t port = listen_on(0, 0);
    filler_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(filler_fd >= 0);
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(filler_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);

    assert_int_equal(create_instance(""), 0);
    probe_expecting_timeout(0, 300);
}

static void test_two_backends_at_once(void **unused)
{
    listen_on(0, 16); /* backend 1 stays on the refused port */
    assert_int_equal(create_instance(""), 0);
    assert_int_equal(start_probe(0, 1000), 0);
    assert_int_equal(start_probe(1, 1000), 0);
    finish_two_probes("connect: connection refused");
}

static void test_connect_fails_synchronously(void **unused)
{
    expect_connect_fails_synchronously();
}

static void test_destroy_inside_probe_done(void **unused)
{
    listen_on(0, 16);
    assert_int_equal(create_instance(""), 0);
    H.destroy_in_done = 1;
    assert_true(probe_one(0, 1000)->ok);
    assert_false(H.have_inst);
    assert_int_equal(plugin_handles(), 0);
}

static void test_no_options(void **unused)
{
    assert_int_equal(create_instance("    port = 80;"), FC_EINVAL);
    assert_logged("test.conf:5: pool \"web\": health.port: unknown key for health plugin \"tcp\"");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_listening_passes),
        T(test_refused),
        T(test_full_backlog_times_out),
        T(test_two_backends_at_once),
        T(test_connect_fails_synchronously),
        T(test_destroy_inside_probe_done),
        T(test_no_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
