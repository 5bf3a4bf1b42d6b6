/*
 * ABI compatibility: plugins built against the frozen ABI 1.0 and 1.1
 * headers (tests/plugins/abi-1.0/, abi-1.1/) load through the real loader
 * into the current host and work there. abi11_tcp, a 1.1 health checker on
 * the core's probe service, probes real sockets too. abi10_tcp, a 1.0 health checker that runs its
 * own libuv handles on main_loop() and calls probe_done(), probes real sockets (see
 * probe_harness.h); abi10_round_robin, a 1.0 strategy, picks over a synthetic pool (see
 * strategy_fixture.h).
 */
#include "plugins/health/probe_harness.h"
#include "plugins/strategy/strategy_fixture.h"

#define ABI10_TCP FC_TEST_PLUGIN_DIR "/abi10_tcp.so"
#define ABI10_ROUND_ROBIN FC_TEST_PLUGIN_DIR "/abi10_round_robin.so"
#define ABI11_TCP FC_TEST_PLUGIN_DIR "/abi11_tcp.so"

static int listen_fd = -1;

static void assert_built_for(const struct fc_plugin *plugin, const char *name, int minor)
{
    assert_string_equal(plugin->desc->name, name);
    assert_int_equal(plugin->desc->abi_major, 1);
    assert_int_equal(plugin->desc->abi_minor, minor);
    /* This host is newer, or the test would prove nothing. */
    assert_true(FC_ABI_MINOR > minor);
}

static void assert_built_for_1_0(const struct fc_plugin *plugin, const char *name)
{
    assert_built_for(plugin, name, 0);
}

/* ---- a 1.0 health checker ----------------------------------------------- */

static int health_setup(void **unused)
{
    listen_fd = -1;
    return harness_setup(ABI10_TCP, 2);
}

static int health_teardown(void **unused)
{
    int rc = harness_teardown(NULL);
    if (listen_fd >= 0)
        close(listen_fd);
    return rc;
}

/* Points backend i at a socket listening on 127.0.0.1. */
static void backend_listens(uint32_t i)
{
    listen_fd = bound_socket();
    assert_int_equal(listen(listen_fd, 16), 0);
    set_backend(i, local_port(listen_fd));
}

static void test_health_loads(void **unused)
{
    assert_built_for_1_0(H.plugin, "abi10_tcp");
    assert_int_equal(H.plugin->desc->kind, FC_PLUGIN_HEALTH);
    assert_int_equal(create_instance("    interval_ms = 1000; timeout_ms = 500;"), 0);
    /* It gets the whole current table and reads only the 1.0 part of it. */
    assert_int_equal(H.inst.host.abi_minor, FC_ABI_MINOR);
    assert_int_equal(H.inst.host.size, sizeof(struct fc_host));
    assert_int_equal(n_log_lines, 0);
}

static void test_health_probes(void **unused)
{
    backend_listens(0); /* backend 1 stays on the refused port */
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_true(r->ok);
    assert_string_equal(r->reason, "connected");
    r = probe_one(1, 1000);
    assert_false(r->ok);
    assert_string_equal(r->reason, "connect: connection refused");

    /* Both at once, round after round: each on its own slot, reused every time. */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(start_probe(0, 1000), 0);
        assert_int_equal(start_probe(1, 1000), 0);
        finish_two_probes("connect: connection refused");
    }

    /* Refused by uv_tcp_connect() before probe() returns: the verdict still comes later. */
    set_backend_unix(1);
    r = probe_one(1, 1000);
    assert_string_equal(r->reason, "connect: invalid argument");

    /* The host may destroy the instance inside the last probe_done(), as it does on reload. */
    H.destroy_in_done = 1;
    assert_true(probe_one(0, 1000)->ok);
    assert_false(H.have_inst);
    assert_int_equal(plugin_handles(), 0);
}

/* ---- a 1.1 health checker ------------------------------------------------ */

static int health11_setup(void **unused)
{
    listen_fd = -1;
    return harness_setup(ABI11_TCP, 2);
}

static void test_health_1_1_probes(void **unused)
{
    assert_built_for(H.plugin, "abi11_tcp", 1);
    backend_listens(0); /* backend 1 stays on the refused port */
    assert_int_equal(create_instance(""), 0);
    assert_int_equal(H.inst.host.size, sizeof(struct fc_host));
    struct probe_result *r = probe_one(0, 1000);
    assert_true(r->ok);
    assert_string_equal(r->reason, "connected");
    r = probe_one(1, 1000);
    assert_false(r->ok);
    assert_string_equal(r->reason, "connect: connection refused");
    assert_int_equal(n_log_lines, 0);
}

/* ---- a 1.0 strategy ------------------------------------------------------ */

static void test_strategy_loads(void **unused)
{
    assert_built_for_1_0(fx.plugin, "abi10_round_robin");
    use_pool(3, NULL);
    assert_int_equal(fx.inst.host.abi_minor, FC_ABI_MINOR);
}

static void test_strategy_picks(void **unused)
{
    use_pool(3, NULL);
    static const int in_turn[] = {0, 1, 2, 0, 1, 2};
    for (size_t i = 0; i < sizeof(in_turn) / sizeof(in_turn[0]); i++)
        assert_int_equal(pick(NULL), in_turn[i]);

    /* A backend that is down, or already tried by this request, is skipped. */
    states[1].up = 0;
    assert_int_equal(pick(NULL), 0);
    assert_int_equal(pick(NULL), 2);
    uint8_t tried[3] = {1, 0, 0};
    assert_int_equal(pick(tried), 2);
    tried[2] = 1;
    assert_int_equal(pick(tried), FC_ENOBACKEND);
    states[1].up = 1;

    int count[3];
    count_picks(count, 3000, NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(count[i], 1000);
}

int main(void)
{
#define HEALTH(name) cmocka_unit_test_setup_teardown(name, health_setup, health_teardown)
    const struct CMUnitTest tests[] = {
        HEALTH(test_health_loads),
        HEALTH(test_health_probes),
        cmocka_unit_test_setup_teardown(test_health_1_1_probes, health11_setup, health_teardown),
        STRATEGY_TEST(test_strategy_loads, ABI10_ROUND_ROBIN),
        STRATEGY_TEST(test_strategy_picks, ABI10_ROUND_ROBIN),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
