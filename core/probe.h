/*
 * The health probe service behind fc_host.probe_connect() (ABI 1.1): the
 * core connects to a backend, writes what the health plugin gave, hands the
 * plugin's callbacks what comes back until one of them judges, and owns the
 * socket, the deadline and the close-then-report sequence, so that no health
 * plugin has to get them right again.
 *
 * Each plugin instance that runs probes has one struct fc_prober, which knows
 * the loop, where verdicts go and which probes are in flight. Everything here
 * runs on the thread of that loop: the main thread.
 */
#ifndef FC_PROBE_H
#define FC_PROBE_H

#include <fulcrum/plugin.h>
#include <uv.h>

/* One probe in flight; private to probe.c. */
struct fc_probe_conn;
struct fc_tls_client;

/**
 * The probes of one plugin instance. Caller-owned memory, zeroed and then
 * filled in; it must not move and must outlive every probe started on it
 * (a host destroys an instance only once no probe of it is in flight).
 */
struct fc_prober {
    uv_loop_t *loop;   /**< where probes run; NULL: this owner runs no probes */
    const char *label; /**< log prefix, e.g. "pool web: health http"; borrowed */
    /**
     * Where a verdict goes: exactly once per started probe, from the loop,
     * after every handle of the probe is closed and its memory freed. The
     * callee may free the prober (and its owner) inside the call. NULL: this
     * owner runs no probes.
     */
    void (*report)(void *report_arg, struct fc_probe *probe, int ok, const char *reason);
    void *report_arg;
    struct fc_probe_conn *in_flight; /**< probes started and not yet reported */
    /**
     * The pool's `tls` (NULL: plain TCP): a probe then speaks TLS to the
     * backend as requests do, verified the same way, and the plugin sees the
     * connection only once the handshake is done. Borrowed from the config.
     */
    const struct fc_tls_client *tls;
};

/**
 * Starts `probe` as fc_host.probe_connect() describes (see the SDK header),
 * reading only the fields of *args that args->size covers. Returns 0, after
 * which exactly one report follows, never before the return; or a negative
 * code after logging why, with no report to follow: FC_EINVAL (args invalid
 * or too small, no loop or report, `probe` already in flight on this
 * prober), FC_ENOMEM, FC_ERROR (no socket).
 */
int fc_prober_start(struct fc_prober *prober, struct fc_probe *probe,
                    const struct fc_probe_args *args);

/** The number of probes in flight on prober: started, not yet reported. */
unsigned fc_prober_in_flight(const struct fc_prober *prober);

/** Whether `probe` is in flight on prober, so that only its report may end it. */
int fc_prober_runs(const struct fc_prober *prober, const struct fc_probe *probe);

#endif
