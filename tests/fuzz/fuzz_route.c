/*
 * libFuzzer target: which pool a request goes to. The input is a Host value
 * and a request target, split at the first newline (no newline: no Host, an
 * HTTP/1.0 request); the request is checked with fc_head_check_request(),
 * as fc_txn_begin() does, and only one it accepts is routed with
 * fc_route_pool(), over the fixed routes below: whatever the check refuses
 * never reaches routing in the proxy. route.c's host normalisation is static,
 * so it is tested through fc_route_pool(). What a user relies on, each an
 * abort() when broken:
 *
 *   - the pool is the listener's or one a route names;
 *   - the case of the host, one trailing dot, a port and the brackets of an
 *     IPv6 literal do not change the pick ("ADMIN.EXAMPLE." picks as
 *     "admin.example", "[::1]:8080" as "::1", "[0:0::1]" as "[::1]"), for every such variant the
 *     check also accepts;
 *   - a route whose host matches and whose path prefix starts the target,
 *     or starts the path as a backend may normalise it (percent-encoded
 *     unreserved characters decoded, "//" merged, "." and ".." segments
 *     removed: "/%6cogin", "//login", "/x/../login"), is picked, or an
 *     earlier one is: no accepted spelling of a path slips past its route.
 */
#include "config.h"
#include "http_rewrite.h"
#include "route.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Route i sends to pool i + 1; the listener's pool is 0. */
static struct fc_conf_route routes[] = {
    {.host = "admin.example", .pool = 1},
    {.path_prefix = "/login", .pool = 2},
    {.host = "::1", .path_prefix = "/v1/", .pool = 3},
    {.host = "api.example.com.", .pool = 4},
    {.host = "[2001:db8::7]", .path_prefix = "/admin", .pool = 5},
    {.path_prefix = "/v1/", .pool = 6},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static const struct fc_config cfg = {.routes = routes, .n_routes = N_ROUTES};

/* Longest Host or target looked at; longer inputs are cut. */
#define MAX_PART 1024

static void check(int ok)
{
    if (!ok)
        abort();
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/*
 * The name a host designates, as route.h states it, written apart from
 * route.c: without brackets, port, one trailing dot and case.
 */
static size_t host_name(const char *s, size_t len, char *out)
{
    const char *p = s;
    size_t n = len;
    const char *close = len > 0 && s[0] == '[' ? memchr(s, ']', len) : NULL;
    if (close != NULL) {
        p = s + 1;
        n = (size_t)(close - p);
    } else {
        size_t colons = 0, at = 0;
        for (size_t i = 0; i < len; i++)
            if (s[i] == ':' && colons++ == 0)
                at = i;
        if (colons == 1)
            n = at;
        if (n > 0 && p[n - 1] == '.')
            n--;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = lower(p[i]);
    return n;
}

static int host_matches(const char *route_host, const char *host, size_t len)
{
    static char a[MAX_PART + 32], b[MAX_PART + 32];
    if (host == NULL)
        return 0;
    size_t na = host_name(route_host, strlen(route_host), a);
    size_t nb = host_name(host, len, b);
    return na == nb && memcmp(a, b, na) == 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int unreserved(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/*
 * The path of a target as a backend may normalise it (RFC 3986 6.2.2): the
 * percent-encoding of unreserved characters decoded, empty segments merged,
 * dot-segments removed (5.2.4). Returns its length in out.
 */
static size_t normalised_path(const char *t, size_t len, char *out)
{
    static char dec[MAX_PART + 1];
    size_t end = 0, n = 0;
    while (end < len && t[end] != '?' && t[end] != '#')
        end++;
    for (size_t i = 0; i < end; i++) {
        int hi = i + 2 < end ? hex_value(t[i + 1]) : -1;
        int lo = i + 2 < end ? hex_value(t[i + 2]) : -1;
        if (t[i] == '%' && hi >= 0 && lo >= 0 && unreserved((char)(hi * 16 + lo))) {
            dec[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dec[n++] = t[i];
        }
    }
    /* Segment by segment: out holds "/seg/seg..." so far. */
    size_t o = 0, i = 0;
    while (i < n) {
        while (i < n && dec[i] == '/')
            i++;
        size_t s = i;
        while (i < n && dec[i] != '/')
            i++;
        size_t sl = i - s;
        int last = i == n;
        if (sl == 1 && dec[s] == '.') {
            if (last)
                out[o++] = '/';
        } else if (sl == 2 && dec[s] == '.' && dec[s + 1] == '.') {
            while (o > 0 && out[--o] != '/')
                ;
            if (last)
                out[o++] = '/';
        } else if (sl > 0 || last) {
            out[o++] = '/';
            memcpy(out + o, dec + s, sl);
            o += sl;
        }
    }
    return o;
}

static int starts_with(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/*
 * A request with this Host (NULL: none) and target, checked as the proxy
 * checks it. Returns the pool, or -1 when the check refuses the request.
 * *req keeps the head as routed (an absolute-form target gives its
 * authority and path).
 */
static int pick(const char *host, size_t host_len, const char *target, size_t target_len,
                struct fc_request *req)
{
    fc_head_reset(req);
    req->method = (struct fc_span){"GET", 3};
    req->target = (struct fc_span){target, (uint32_t)target_len};
    if (host != NULL)
        req->host = (struct fc_span){host, (uint32_t)host_len};
    req->http_major = 1;
    req->http_minor = host != NULL ? 1 : 0;
    const char *why = NULL;
    if (fc_head_check_request(req, 0, 0, 0, &why) != 0) {
        check(why != NULL);
        return -1;
    }
    uint32_t pool =
        fc_route_pool(&cfg, 0, req->host.p, req->host.len, req->target.p, req->target.len);
    check(pool <= N_ROUTES);
    return (int)pool;
}

/* The pick of a variant of the host, when the check accepts it, must be `want`. */
static void same_pick(int want, const char *host, size_t host_len, const char *target,
                      size_t target_len)
{
    static struct fc_request req;
    int got = pick(host, host_len, target, target_len, &req);
    check(got < 0 || got == want);
}

static int ipv6_chars(const char *s, size_t len)
{
    size_t colons = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ':')
            colons++;
        else if (hex_value(s[i]) < 0 && s[i] != '.')
            return 0;
    }
    return colons >= 2 && len > 0 && s[len - 1] != '.';
}

/* The host variants that must pick as `host` does. */
static void check_host_variants(int want, const char *host, size_t len, const char *target,
                                size_t target_len)
{
    static char v[MAX_PART + 32];
    /* Case. */
    for (size_t i = 0; i < len; i++)
        v[i] = lower(host[i]);
    same_pick(want, v, len, target, target_len);
    for (size_t i = 0; i < len; i++)
        v[i] = host[i] >= 'a' && host[i] <= 'z' ? (char)(host[i] - 32) : host[i];
    same_pick(want, v, len, target, target_len);

    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close == NULL)
            return;
        size_t in = (size_t)(close - host - 1);
        if (close + 1 == host + len) {
            /* "[::1]" picks as "[::1]:8080". */
            memcpy(v, host, len);
            memcpy(v + len, ":8080", 5);
            same_pick(want, v, len + 5, target, target_len);
        }
        if (ipv6_chars(host + 1, in)) /* "[::1]:8080" picks as "::1" */
            same_pick(want, host + 1, in, target, target_len);
        /* "[0:0::0001]" picks as "[::1]": the address, however it is written. */
        char addr[INET6_ADDRSTRLEN], canon[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (in < sizeof(addr)) {
            memcpy(addr, host + 1, in);
            addr[in] = '\0';
            if (inet_pton(AF_INET6, addr, &a6) == 1 &&
                inet_ntop(AF_INET6, &a6, canon, sizeof(canon)) != NULL) {
                size_t n = strlen(canon);
                v[0] = '[';
                memcpy(v + 1, canon, n);
                v[n + 1] = ']';
                same_pick(want, v, n + 2, target, target_len);
            }
        }
        return;
    }
    size_t colons = 0, at = len;
    for (size_t i = 0; i < len; i++)
        if (host[i] == ':' && colons++ == 0)
            at = i;
    if (colons >= 2) {
        if (ipv6_chars(host, len)) {
            /* "::1" picks as "[::1]:8080". */
            v[0] = '[';
            memcpy(v + 1, host, len);
            memcpy(v + 1 + len, "]:8080", 6);
            same_pick(want, v, len + 7, target, target_len);
        }
        return;
    }
    /* One trailing dot on the name, before any port: added, or taken off. */
    size_t name = colons == 1 ? at : len;
    if (name > 0 && host[name - 1] == '.') {
        if (name < 2 || host[name - 2] != '.') {
            memcpy(v, host, name - 1);
            memcpy(v + name - 1, host + name, len - name);
            same_pick(want, v, len - 1, target, target_len);
        }
    } else {
        memcpy(v, host, name);
        v[name] = '.';
        memcpy(v + name + 1, host + name, len - name);
        same_pick(want, v, len + 1, target, target_len);
    }
    /* A port: added, or taken off. */
    if (colons == 1) {
        same_pick(want, host, at, target, target_len);
    } else {
        memcpy(v, host, len);
        memcpy(v + len, ":8080", 5);
        same_pick(want, v, len + 5, target, target_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copies of their own, so that a read past either is a sanitizer report. */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t host_len = nl ? (size_t)(nl - data) : 0;
    size_t target_len = nl ? size - host_len - 1 : size;
    if (host_len > MAX_PART)
        host_len = MAX_PART;
    if (target_len > MAX_PART)
        target_len = MAX_PART;
    char *host = nl ? malloc(host_len ? host_len : 1) : NULL;
    char *target = malloc(target_len ? target_len : 1);
    if ((nl && host == NULL) || target == NULL)
        abort();
    if (host != NULL)
        memcpy(host, data, host_len);
    memcpy(target, nl ? nl + 1 : data, target_len);

    static struct fc_request req;
    int pool = pick(host, host_len, target, target_len, &req);
    if (pool >= 0) {
        if (host != NULL && !req.absolute_form)
            check_host_variants(pool, host, host_len, target, target_len);
        static char path[MAX_PART + 1];
        size_t path_len = normalised_path(req.target.p, req.target.len, path);
        for (uint32_t i = 0; i < N_ROUTES; i++) {
            const struct fc_conf_route *r = &routes[i];
            if (r->host != NULL && !host_matches(r->host, req.host.p, req.host.len))
                continue;
            if (r->path_prefix != NULL &&
                !starts_with(req.target.p, req.target.len, r->path_prefix) &&
                !starts_with(path, path_len, r->path_prefix))
                continue;
            /* Route i applies: it is picked, or an earlier one is. */
            check(pool != 0 && (uint32_t)pool <= r->pool);
            break;
        }
    }
    free(target);
    free(host);
    return 0;
}
