/*
 * Routing: which pool serves a request, from its host and target. Matching
 * only, over the configuration; no state, any thread.
 */
#ifndef FC_ROUTE_H
#define FC_ROUTE_H

#include <stddef.h>
#include <stdint.h>

struct fc_config;

/**
 * The pool index for a request: the first route of cfg whose host and path
 * prefix both match, else `listener_pool`. `host` (may be NULL: none sent) is
 * the request's authority as sent; it is compared normalised: without case,
 * without its port, without the brackets of an IPv6 literal and without a
 * trailing dot, so "API.example.com.:8080" matches a route for
 * "api.example.com" and "[::1]:8080" one for "::1" or "[::1]". The path
 * prefix is compared byte for byte with the start of `target`.
 */
uint32_t fc_route_pool(const struct fc_config *cfg, uint32_t listener_pool, const char *host,
                       size_t host_len, const char *target, size_t target_len);

#endif
