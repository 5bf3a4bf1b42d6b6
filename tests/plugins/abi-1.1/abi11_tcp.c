/*
 * abi11_tcp: the bundled `tcp` health checker as it was at ABI 1.1, built
 * against the frozen 1.1 header beside it (tests/plugins/abi-1.1/fulcrum/),
 * so that the tests load a real 1.1 health checker, which lets the core's
 * probe service do its I/O, into the current host. Keep it to the 1.1 API.
 *
 * tcp: a backend passes when a TCP connection to its resolved address
 * completes within the probe's timeout; the connection is closed at once,
 * without sending anything. This is the plain `check` of HAProxy without
 * `option httpchk`: it proves that something accepts connections on the
 * port, not that it answers sensibly (the `http` checker does that).
 *
 * It has no options of its own. A probe fails with "connect: connection
 * refused" (or another connect error, as libuv words it) or "timeout after N
 * ms"; a passing probe reports "connected". No DNS runs at probe time.
 *
 * The core's probe service (fc_host.probe_connect(), ABI 1.1) does all of
 * it: it connects, keeps the deadline, words the failures, and closes the
 * connection before it reports. The plugin only passes the probe as soon as
 * the connection is up, and keeps no state: the host table is all it needs,
 * and the service refuses a second probe of a backend while one runs.
 */
#include <fulcrum/plugin.h>

#include <stdint.h>
#include <stdio.h>

/* Built against anything but the frozen 1.1 header, this would test nothing. */
#if FC_ABI_MAJOR != 1 || FC_ABI_MINOR != 1
#error "abi11_tcp must be built against tests/plugins/abi-1.1/fulcrum/plugin.h (ABI 1.1)"
#endif

static int tcp_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    /* Only ever read back as const, in tcp_probe(). */
    *state = (void *)host;
    return 0;
}

static int tcp_connected(void *arg, char *reason, size_t reason_len)
{
    snprintf(reason, reason_len, "connected");
    return FC_PROBE_PASS;
}

static int tcp_probe(void *state, const struct fc_backend_view *backend, uint32_t timeout_ms,
                     struct fc_probe *probe)
{
    const struct fc_host *host = state;
    const struct fc_probe_args args = {
        .size = sizeof(args),
        .backend = backend,
        .timeout_ms = timeout_ms,
        .on_connected = tcp_connected,
    };
    return host->probe_connect(host, probe, &args);
}

static const struct fc_health_ops tcp_ops = {
    .size = sizeof(struct fc_health_ops),
    .create = tcp_create,
    .probe = tcp_probe,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_HEALTH, .name = "abi11_tcp", .version = "1.1.0",
                     .description = "ABI 1.1 tcp checker, for the compatibility tests",
                     .health = &tcp_ops);
