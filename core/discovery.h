/*
 * Service discovery: the backends that DNS names. A backend entry of the
 * file with `resolve = true` ("web.service.consul:8080") stands for every
 * A/AAAA answer for its name, at its port, with its weight; one with an
 * "srv:" address ("srv:_http._tcp.api.service.consul") for the SRV records
 * of that name, of the lowest priority value: each target's addresses, at
 * the record's port, with the record's weight.
 *
 * Each such entry is a target, queried on the main loop through c-ares
 * (never waiting) every `resolve_interval_ms` of its pool, sooner when the
 * answer's TTL is shorter (but not sooner than FC_DISCOVERY_MIN_TTL_MS).
 * When the set of addresses of a target changes, the host's changed()
 * builds a new generation over the config in force, as a runtime change
 * does: addresses that stay keep their state, those that went are drained.
 * A failed query (a timeout, SERVFAIL, NXDOMAIN, an empty or malformed
 * answer) keeps the last good set; the first failure of a streak is logged
 * with its reason, the streak then once a minute, and the recovery.
 *
 * Main thread only.
 */
#ifndef FC_DISCOVERY_H
#define FC_DISCOVERY_H

#include "config.h"
#include "dns.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/** The most addresses one target's answer may give; more is rejected ("oversized"). */
#define FC_DISCOVERY_MAX_ADDRS 256
/** An answer's TTL shortens the interval, down to this. */
#define FC_DISCOVERY_MIN_TTL_MS 1000

/** One discovered address. */
struct fc_discovered {
    struct sockaddr_storage addr;
    socklen_t len;
    uint32_t weight; /**< SRV: the record's, scaled to 1..1000; A/AAAA: 0 (the entry's) */
};

struct fc_discovery_host {
    /**
     * A target's set changed: build and publish a generation over the
     * config in force with the sets as they are now. Called from the loop,
     * once for the changes of one turn.
     */
    void (*changed)(void *arg);
    void *arg;
};

struct fc_discovery;

/** NULL: out of memory, or c-ares failed (logged). */
struct fc_discovery *fc_discovery_create(uv_loop_t *loop, const struct fc_discovery_host *host);

/**
 * Makes cfg's targets known: those that are new are queried at once; the
 * others keep their sets (and their intervals until the commit); cfg's
 * `resolvers` are asked from now on (once the queries running have ended:
 * c-ares changes servers only then). Returns 1 when no target is new, else 0, and
 * ready(arg) runs from the loop once each new target has had its first
 * answer or failure (bounded by c-ares's timeouts, dns.h). One prepare at a
 * time: a second replaces the first's ready(). Targets of other configs
 * stay until fc_discovery_commit().
 */
int fc_discovery_prepare(struct fc_discovery *d, const struct fc_config *cfg,
                         void (*ready)(void *arg), void *arg);

/**
 * cfg is in force (a start or reload went through, or one failed and the
 * config in force stays): the targets it does not have stop, the pools it
 * lacks lose their counts, and its intervals and `resolvers` apply.
 */
void fc_discovery_commit(struct fc_discovery *d, const struct fc_config *cfg);

/**
 * The last good set of backend entry `b` (discover != FC_DISCOVER_NONE) of
 * pool `pool`: its addresses, sorted, in *n; NULL with *n == 0 before any
 * good answer. Valid until the next turn of the loop. d may be NULL (no
 * discovery: `fulcrum -t`).
 */
const struct fc_discovered *fc_discovery_find(const struct fc_discovery *d, const char *pool,
                                              const struct fc_conf_backend *b, uint32_t *n);

/**
 * Grows each time a set changes: a generation built when it had a value
 * has every set of that moment (0 when d is NULL).
 */
uint64_t fc_discovery_version(const struct fc_discovery *d);

/** The queries of `pool`'s targets so far, by result (zeros for a pool without any). */
void fc_discovery_counts(const struct fc_discovery *d, const char *pool,
                         uint64_t out[FC_DNS_RESULTS]);

/** Stops every query and closes the handles; memory goes in their close callbacks. */
void fc_discovery_destroy(struct fc_discovery *d);

#endif
