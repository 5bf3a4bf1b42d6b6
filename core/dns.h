/*
 * Name resolution, all through c-ares: the daemon never calls getaddrinfo().
 *
 * Two users. The configuration loader resolves a host name that a backend,
 * listener or admin address names without `resolve = true` once, when the
 * file loads (fc_dns_lookup()): at the start and for `fulcrum -t` on the
 * main thread before anything serves, and at a reload on a thread of
 * libuv's pool (main.c), never on a loop. Service discovery (discovery.h)
 * runs its queries on the main loop, without waiting.
 *
 * Every query is bounded: FC_DNS_TRIES tries of each server, the first
 * waiting FC_DNS_TIMEOUT_MS and the second twice that (c-ares doubles it),
 * so that a lookup ends (answered or failed) within 3 s per server.
 */
#ifndef FC_DNS_H
#define FC_DNS_H

#include <ares.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define FC_DNS_TIMEOUT_MS 1000
#define FC_DNS_TRIES 2

/** c-ares's process-wide set-up: once, before any thread starts (main()). 0 or FC_ERROR. */
int fc_dns_library_init(void);

/**
 * A channel with fulcrum's bounds and `servers` ("127.0.0.1:8600,[::1]:53",
 * as ares_set_servers_ports_csv() takes them; NULL: /etc/resolv.conf).
 * `optmask`/`opts` add options of the caller's (a socket state callback).
 * Returns 0, or an error with its text in *why.
 */
int fc_dns_channel(ares_channel *out, const char *servers, int optmask, struct ares_options *opts,
                   const char **why);

/**
 * Resolves `name` (a host name, or an address literal) to one address with
 * `port`, waiting for the answer: for the configuration loader only (see
 * above). `family` is AF_UNSPEC (the first IPv4 answer, else the first IPv6
 * one) or AF_INET6. Returns 0, FC_ENOMEM, or FC_EINVAL with c-ares's reason
 * in *why ("Domain name not found").
 */
int fc_dns_lookup(const char *name, int family, uint16_t port, const char *servers,
                  struct sockaddr_storage *out, socklen_t *len, const char **why);

/**
 * The result of a query, as counted by fulcrum_dns_queries_total: "ok",
 * "nxdomain", "empty" (the name has no record of the type asked), "timeout",
 * "malformed" (c-ares rejected the answer), "oversized" (more addresses
 * than a set takes: FC_DISCOVERY_MAX_ADDRS) or "error" (SERVFAIL, REFUSED,
 * no server reachable...). fc_dns_result_of() maps a c-ares status.
 */
enum fc_dns_result {
    FC_DNS_OK = 0,
    FC_DNS_NXDOMAIN,
    FC_DNS_EMPTY,
    FC_DNS_TIMEOUT,
    FC_DNS_MALFORMED,
    FC_DNS_OVERSIZED,
    FC_DNS_ERROR,
    FC_DNS_RESULTS
};
extern const char *const fc_dns_result_names[FC_DNS_RESULTS];
enum fc_dns_result fc_dns_result_of(int ares_status);

/**
 * The least TTL of the SRV records in a DNS answer (abuf, alen bytes, as
 * c-ares hands it to ares_query()'s callback), or -1 when it has none or
 * does not parse. Takes any bytes (tests/fuzz/fuzz_dns.c).
 */
int64_t fc_dns_srv_ttl(const unsigned char *abuf, int alen);

#endif
