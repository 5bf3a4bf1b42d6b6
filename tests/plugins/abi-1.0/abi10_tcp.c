/*
 * abi10_tcp: the `tcp` health checker as it was before ABI 1.1, built
 * against the frozen 1.0 header beside it (tests/plugins/abi-1.0/fulcrum/),
 * so that the tests can load a real 1.0 health plugin, with its own libuv
 * handles on main_loop() and its own probe_done() calls, into the current
 * host. Only its name differs from the plugin it was; keep it as it is.
 *
 * What follows is that plugin's own description.
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
 * The host runs at most one probe per backend at a time, so create() makes
 * one probe slot per backend and a probe allocates nothing. A probe ends by
 * closing its two handles (the TCP handle and the timer) and calls
 * probe_done() from the last close callback: by then libuv has cancelled a
 * pending connect request, so nothing of the probe is left on the loop, and
 * the host may destroy the instance right after the last probe_done(). This
 * holds too when uv_tcp_connect() fails before probe() returns: probe_done()
 * still comes later, from the loop.
 */
#include <fulcrum/plugin.h>
#include <uv.h>

/* Built against anything but the frozen 1.0 header, this would test nothing. */
#if FC_ABI_MAJOR != 1 || FC_ABI_MINOR != 0
#error "abi10_tcp must be built against tests/plugins/abi-1.0/fulcrum/plugin.h (ABI 1.0)"
#endif

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tcp_check;

/* One backend's probe: reused by each probe of that backend. */
struct tcp_slot {
    struct tcp_check *check;
    struct fc_probe *probe;
    int busy; /* a probe runs: from probe() to its probe_done() */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    int open_handles; /* handles whose close callback has not run yet */
    int ending;       /* the verdict is in; the handles are closing */
    int ok;
    uint32_t timeout_ms;
    char reason[80];
};

struct tcp_check {
    const struct fc_host *host;
    uint32_t n_slots;
    struct tcp_slot *slots; /* one per backend */
};

static void tcp_destroy(void *state)
{
    struct tcp_check *c = state;
    if (c == NULL)
        return;
    free(c->slots);
    free(c);
}

static int tcp_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct tcp_check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return FC_ENOMEM;
    c->host = host;
    c->n_slots = pool->n_backends;
    c->slots = calloc(c->n_slots > 0 ? c->n_slots : 1, sizeof(*c->slots));
    if (c->slots == NULL) {
        free(c);
        return FC_ENOMEM;
    }
    for (uint32_t i = 0; i < c->n_slots; i++)
        c->slots[i].check = c;
    *state = c;
    return 0;
}

static void on_close(uv_handle_t *handle)
{
    struct tcp_slot *slot = handle->data;
    if (--slot->open_handles > 0)
        return;

    /* Everything of this probe is off the loop: hand the verdict over. */
    struct fc_probe *probe = slot->probe;
    const struct fc_host *host = slot->check->host;
    int ok = slot->ok;
    char reason[sizeof(slot->reason)];
    memcpy(reason, slot->reason, sizeof(reason));
    slot->probe = NULL;
    slot->busy = 0;
    /*
     * The host may destroy the instance inside this call, so the arguments
     * live on the stack and nothing of the slot is touched after it.
     */
    host->probe_done(host, probe, ok, reason);
}

/*
 * Records the verdict and closes the probe's handles; the last close callback
 * reports it. Only the first call of a probe counts: the connect request that
 * closing the TCP handle cancels finds the probe already ending.
 */
static void finish(struct tcp_slot *slot, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct tcp_slot *slot, int ok, const char *fmt, ...)
{
    if (slot->ending)
        return;
    slot->ending = 1;
    slot->ok = ok;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(slot->reason, sizeof(slot->reason), fmt, ap);
    va_end(ap);

    uv_close((uv_handle_t *)&slot->timer, on_close);
    uv_close((uv_handle_t *)&slot->tcp, on_close);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct tcp_slot *slot = req->data;
    if (status < 0)
        finish(slot, 0, "connect: %s", uv_strerror(status));
    else
        finish(slot, 1, "connected");
}

static void on_timeout(uv_timer_t *timer)
{
    struct tcp_slot *slot = timer->data;
    finish(slot, 0, "timeout after %u ms", slot->timeout_ms);
}

static int tcp_probe(void *state, const struct fc_backend_view *backend, uint32_t timeout_ms,
                     struct fc_probe *probe)
{
    struct tcp_check *c = state;

    /* The host hands the main loop for the instance's whole life; NULL would mean none. */
    uv_loop_t *loop = c->host->main_loop(c->host);
    if (loop == NULL || backend->index >= c->n_slots || backend->sockaddr == NULL)
        return FC_EINVAL;
    struct tcp_slot *slot = &c->slots[backend->index];
    if (slot->busy) {
        c->host->log(c->host, FC_LOG_ERROR, "backend %s: a probe is already in flight",
                     backend->address);
        return FC_EINVAL;
    }

    /* A failed init registers no handle: nothing to close. */
    int rc = uv_tcp_init(loop, &slot->tcp);
    if (rc < 0)
        return FC_ERROR;
    uv_timer_init(loop, &slot->timer); /* cannot fail */
    slot->busy = 1;
    slot->probe = probe;
    slot->timer.data = slot;
    slot->tcp.data = slot;
    slot->connect.data = slot;
    slot->open_handles = 2;
    slot->ending = 0;
    slot->ok = 0;
    slot->reason[0] = '\0';
    slot->timeout_ms = timeout_ms;

    uv_timer_start(&slot->timer, on_timeout, timeout_ms, 0);
    rc = uv_tcp_connect(&slot->connect, &slot->tcp, backend->sockaddr, on_connect);
    if (rc < 0)
        finish(slot, 0, "connect: %s", uv_strerror(rc)); /* probe_done follows from the loop */
    return 0;
}

static const struct fc_health_ops tcp_ops = {
    .size = sizeof(struct fc_health_ops),
    .create = tcp_create,
    .destroy = tcp_destroy,
    .probe = tcp_probe,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_HEALTH, .name = "abi10_tcp", .version = "1.0.0",
                     .description = "ABI 1.0 tcp checker: connect within the timeout",
                     .health = &tcp_ops);
