/*
 * Routing; see route.h.
 */
#include "route.h"

#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* The name part of an authority: no port, no IPv6 brackets, no trailing dot. */
static void host_name(const char *s, size_t len, const char **out, size_t *out_len)
{
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close != NULL) {
            *out = s + 1;
            *out_len = (size_t)(close - s - 1);
            return;
        }
    } else {
        /* One colon starts a port; several make a bare IPv6 address, which has none. */
        const char *colon = memchr(s, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL)
            len = (size_t)(colon - s);
    }
    if (len > 0 && s[len - 1] == '.')
        len--;
    *out = s;
    *out_len = len;
}

/*
 * Whether two IPv6 literals name the same address, however written
 * ("::1", "0:0::1", "::0001"); 0 when either is not one.
 */
static int same_ipv6(const char *a, size_t a_len, const char *b, size_t b_len)
{
    char sa[INET6_ADDRSTRLEN], sb[INET6_ADDRSTRLEN];
    struct in6_addr x, y;
    if (a_len >= sizeof(sa) || b_len >= sizeof(sb) || memchr(a, ':', a_len) == NULL)
        return 0;
    memcpy(sa, a, a_len);
    sa[a_len] = '\0';
    memcpy(sb, b, b_len);
    sb[b_len] = '\0';
    return inet_pton(AF_INET6, sa, &x) == 1 && inet_pton(AF_INET6, sb, &y) == 1 &&
           memcmp(&x, &y, sizeof(x)) == 0;
}

static int same_host(const char *want, const char *host, size_t len)
{
    const char *a, *b;
    size_t a_len, b_len;
    host_name(want, strlen(want), &a, &a_len);
    host_name(host, len, &b, &b_len);
    if (same_ipv6(a, a_len, b, b_len))
        return 1;
    if (a_len != b_len)
        return 0;
    for (size_t i = 0; i < a_len; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

uint32_t fc_route_pool(const struct fc_config *cfg, uint32_t listener_pool, const char *host,
                       size_t host_len, const char *target, size_t target_len)
{
    for (uint32_t i = 0; i < cfg->n_routes; i++) {
        const struct fc_conf_route *r = &cfg->routes[i];
        if (r->host != NULL && (host == NULL || !same_host(r->host, host, host_len)))
            continue;
        if (r->path_prefix != NULL) {
            size_t n = strlen(r->path_prefix);
            if (target_len < n || memcmp(target, r->path_prefix, n) != 0)
                continue;
        }
        return r->pool;
    }
    return listener_pool;
}
