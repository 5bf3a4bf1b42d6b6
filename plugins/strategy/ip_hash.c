/*
 * ip_hash and hash (this one source, built twice: hash with FC_HASH_FULL).
 *
 * hash: `key = "source" | "header:NAME" | "cookie:NAME" | "uri" |
 * "query:NAME"` picks what is hashed (a request without it hashes its client
 * address), and `balance_factor` bounds the load, as "Consistent Hashing with
 * Bounded Loads" (Mirrokni, Thorup and Zadimoghaddam, SODA 2018) does and
 * HAProxy's `hash-balance-factor` and Envoy's ring_hash with
 * `hash_balance_factor` do: with factor c > 1, no backend takes a request
 * while it has ceil(c * (in flight over the pool + 1) * weight / total
 * weight) or more in flight; the request walks on along the ring to the
 * next backend under its bound, so a hot key spills over to the backends
 * after its own, in ring order, and comes back as the load falls. The
 * in-flight counts are the core's, over all workers. Without the factor (0,
 * the default) it is ip_hash with more keys.
 *
 * ip_hash: sends each client to the same backend every time, by consistent
 * hashing of the client's address (IPv4 or IPv6; the address bytes, not the
 * port), or of a request header chosen with `key = "header:NAME"`. It is a
 * hash ring with virtual nodes, the scheme of Karger et al., "Consistent
 * hashing and random trees" (STOC 1997), as memcached clients made it common
 * with libketama and as HAProxy's `hash-type consistent` and Envoy's ring_hash
 * use it: every backend owns points on a 64-bit circle, a key belongs to the
 * first point at or after its own hash, wrapping around.
 *
 * Why a ring and not Maglev (Eisenbud et al., NSDI 2016). Maglev's lookup
 * table is O(1) and balances more evenly, but when a backend leaves, the
 * table is refilled and some keys of the *other* backends move as well, and a
 * backend that is down, or failed for one request, needs either a rebuilt
 * table (moving others again, and not per request) or an ad hoc fallback. On a ring
 * both cases are exact and the same thing: skipping a backend's points while
 * walking clockwise gives precisely the ring without that backend. So a
 * backend that leaves the pool, goes down, or failed for this request (see
 * fc_backend_eligible()) moves only its own clients, each to the next backend
 * along the ring, which spreads them over the others in proportion to weight;
 * when it is back up they come back. No other client ever moves.
 *
 * The ring. Backend b owns weight(b) * POINTS_PER_WEIGHT points. libketama
 * uses 160; we use 512, because the spread of a backend's share shrinks only
 * as 1/sqrt(points): over 1,000 random pools of 4 equal backends the worst
 * backend was 27% off its fair share with 160 points, 13% with 512 (10% with
 * 1,024, at twice the memory). The points of a backend depend only on its
 * configured address: they are the successive outputs of SplitMix64 (Steele,
 * Lea and Flood, OOPSLA 2014) seeded with a hash of the address string, so a
 * backend has the same points in every pool it appears in, and its first k
 * points stay the same whatever k is. That is what makes the mapping depend
 * only on which backends are in the pool, never on their order or on the
 * others' weights. To bound memory a ring holds at most RING_MAX_POINTS
 * points (3 MiB); only a pool whose weights add up to more than
 * RING_MAX_POINTS / POINTS_PER_WEIGHT (512) is scaled down to fit, and there a
 * change of the pool's total weight also moves a share of the other clients,
 * about the relative change of the scale.
 *
 * Keys are hashed with 64-bit FNV-1a (Fowler, Noll, Vo; draft-eastlake-fnv)
 * followed by SplitMix64's finalizer, which FNV alone lacks: it makes every
 * input bit affect every output bit, so that addresses differing in their last
 * byte land far apart. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a
 * dual-stack listener reports for an IPv4 client) hashes as the IPv4 address.
 *
 * Costs. create() builds the ring once; it is immutable afterwards, and
 * identical in every worker's instance since it depends only on the pool:
 * so the instances of one pool share one ring (a registry of the rings of
 * this plugin, keyed by pool view and a fingerprint of its backends, with a
 * reference per instance; create() and destroy() run on the main thread
 * only, which is all the registry needs, and picks only read a ring).
 * pick() hashes the key, binary-searches the ring (O(log points)) and walks
 * forward past ineligible backends; it allocates nothing. The walk ends after
 * meeting every backend of the pool once, so a pool with nothing eligible
 * answers FC_ENOBACKEND; a per-instance scratch array, stamped with a pick
 * counter so that it never needs clearing, records the backends already met.
 * Instances are per worker, so that scratch needs no lock.
 */
#include <fulcrum/plugin.h>

#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Points per unit of weight; see the paragraph above for why not libketama's 160. */
#define POINTS_PER_WEIGHT 512u
/* At most 2^18 points, 3 MiB per instance (12 bytes a point). */
#define RING_MAX_POINTS (UINT32_C(1) << 18)

#define FNV1A64_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV1A64_PRIME UINT64_C(0x100000001b3)
#define SPLITMIX64_GAMMA UINT64_C(0x9e3779b97f4a7c15)

#define HEADER_PREFIX "header:"
#define COOKIE_PREFIX "cookie:"
#define QUERY_PREFIX "query:"

#ifdef FC_HASH_FULL
#define PLUGIN_NAME "hash"
#else
#define PLUGIN_NAME "ip_hash"
#endif

/* What is hashed. */
enum key_kind { KEY_SOURCE, KEY_HEADER, KEY_COOKIE, KEY_URI, KEY_QUERY };

/* A ring, shared by the instances of one pool (see "Costs" above). */
struct ring {
    const struct fc_pool_view *pool;
    uint64_t fingerprint; /* of the backends it was built from */
    uint32_t refs;
    struct ring *next;
    /* Sorted by position: points[i] belongs to backend owners[i]. */
    uint64_t *points;
    uint32_t *owners;
    uint32_t n_points;
};

/* Every ring of this plugin. Main thread only (create() and destroy()). */
static struct ring *rings;

struct ip_hash {
    const struct fc_host *host;
    const struct fc_pool_view *pool;
    enum key_kind kind;
    /* The header, cookie or query parameter to hash, for those kinds. */
    const char *name;
    double balance_factor; /* 0: unbounded */
    struct ring *ring;
    /* pick()'s scratch: met[b] == epoch when backend b was met in the current walk. */
    uint32_t *met;
    uint32_t epoch;
};

/* ------------------------------------------------------------------------ */
/* Hashing                                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = FNV1A64_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV1A64_PRIME;
    }
    return h;
}

/*
 * SplitMix64's output function, with Stafford's "Mix13" constants as in
 * Vigna's splitmix64.c: a bijection in which every input bit flips about half
 * of the output bits.
 */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t hash_bytes(const void *data, size_t len)
{
    return mix64(fnv1a64(data, len));
}

/*
 * The hash of the client's address bytes. An address of another family (or
 * none) hashes as the empty string: such clients all share one backend.
 */
static uint64_t hash_client(const struct sockaddr *sa, socklen_t len)
{
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (sa != NULL && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        return hash_bytes(&sin->sin_addr, 4);
    }
    if (sa != NULL && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *a = sin6->sin6_addr.s6_addr;
        if (memcmp(a, v4_mapped, sizeof(v4_mapped)) == 0)
            return hash_bytes(a + 12, 4);
        return hash_bytes(a, 16);
    }
    return hash_bytes("", 0);
}

/* ------------------------------------------------------------------------ */
/* Building the ring                                                         */
/* ------------------------------------------------------------------------ */

struct point {
    uint64_t pos;
    uint32_t owner;
};

/*
 * Sorts points by position with a least-significant-digit radix sort, eight
 * passes of one byte. It is stable, so points of equal position (a 2^-64
 * chance) stay in the order they were made, by backend index, which keeps
 * the ring's order total and the same in every instance; and it is linear:
 * a comparison sort of a full ring (2^18 points) took about 50 ms, paid for
 * every worker's instance at each reload.
 */
static int sort_points(struct point *points, size_t n)
{
    struct point *spare = malloc(n * sizeof(*spare));
    if (spare == NULL)
        return FC_ENOMEM;
    struct point *from = points, *to = spare;
    for (unsigned shift = 0; shift < 64; shift += 8) {
        size_t start[257] = {0};
        for (size_t i = 0; i < n; i++)
            start[((from[i].pos >> shift) & 0xff) + 1]++;
        for (unsigned d = 0; d < 256; d++)
            start[d + 1] += start[d];
        for (size_t i = 0; i < n; i++)
            to[start[(from[i].pos >> shift) & 0xff]++] = from[i];
        struct point *t = from;
        from = to;
        to = t;
    }
    /* An even number of passes: the sorted points are back in `points`. */
    free(spare);
    return 0;
}

/* How many points backend weight `w` gets when the pool's weights sum to `total`. */
static uint32_t points_for(uint32_t w, uint64_t total)
{
    if (w == 0)
        w = 1; /* the host guarantees >= 1; never let a backend vanish */
    if (total * POINTS_PER_WEIGHT <= RING_MAX_POINTS)
        return w * POINTS_PER_WEIGHT;
    /* Scaled to fit, still in proportion to weight, never below one point. */
    uint64_t n = (uint64_t)w * RING_MAX_POINTS / total;
    return n > 0 ? (uint32_t)n : 1;
}

static int build_ring(struct ring *ih)
{
    const struct fc_pool_view *pool = ih->pool;
    uint64_t total_weight = 0;
    uint64_t n_points = 0;

    for (uint32_t i = 0; i < pool->n_backends; i++)
        total_weight += pool->backends[i].weight ? pool->backends[i].weight : 1;
    for (uint32_t i = 0; i < pool->n_backends; i++)
        n_points += points_for(pool->backends[i].weight, total_weight);
    if (n_points == 0)
        return 0;

    /* At most RING_MAX_POINTS, plus one per backend when scaled: k below cannot overflow. */
    struct point *tmp = malloc(n_points * sizeof(*tmp));
    ih->points = malloc(n_points * sizeof(*ih->points));
    ih->owners = malloc(n_points * sizeof(*ih->owners));
    if (tmp == NULL || ih->points == NULL || ih->owners == NULL) {
        free(tmp);
        return FC_ENOMEM;
    }

    uint32_t k = 0;
    for (uint32_t i = 0; i < pool->n_backends; i++) {
        const char *addr = pool->backends[i].address != NULL ? pool->backends[i].address : "";
        /* SplitMix64: the state advances by the gamma and each output is mixed. */
        uint64_t state = hash_bytes(addr, strlen(addr));
        uint32_t n = points_for(pool->backends[i].weight, total_weight);
        for (uint32_t j = 0; j < n; j++) {
            state += SPLITMIX64_GAMMA;
            tmp[k].pos = mix64(state);
            tmp[k].owner = i;
            k++;
        }
    }
    if (sort_points(tmp, n_points) != 0) {
        free(tmp);
        return FC_ENOMEM;
    }
    for (uint32_t i = 0; i < k; i++) {
        ih->points[i] = tmp[i].pos;
        ih->owners[i] = tmp[i].owner;
    }
    ih->n_points = k;
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

/* Whether `name` is a non-empty run of tchars; else reports it for `key`. */
static int valid_name(struct ip_hash *ih, const char *key, const char *name, const char *what,
                      const char *example)
{
    if (*name == '\0') {
        ih->host->config_error(ih->host, "key", "\"%s\" names no %s (e.g. \"%s\")", key, what,
                               example);
        return 0;
    }
    for (const char *p = name; *p != '\0'; p++) {
        if (!fc_is_tchar((unsigned char)*p)) {
            ih->host->config_error(ih->host, "key", "\"%s\": \"%s\" is not a valid %s name", key,
                                   name, what);
            return 0;
        }
    }
    return 1;
}

#ifdef FC_HASH_FULL
/* hash's `key` and `balance_factor`. */
static int read_key(struct ip_hash *ih)
{
    const struct fc_host *host = ih->host;
    const char *key = "source";
    if (host->config_string(host, "key", &key) == FC_EINVAL ||
        host->config_double(host, "balance_factor", &ih->balance_factor) == FC_EINVAL)
        return FC_EINVAL;
    int ok = 1;
    if (strcmp(key, "source") == 0) {
        ih->kind = KEY_SOURCE;
    } else if (strcmp(key, "uri") == 0) {
        ih->kind = KEY_URI;
    } else if (strncmp(key, HEADER_PREFIX, strlen(HEADER_PREFIX)) == 0) {
        ih->kind = KEY_HEADER;
        ih->name = key + strlen(HEADER_PREFIX);
        ok = valid_name(ih, key, ih->name, "header", "header:X-Session");
    } else if (strncmp(key, COOKIE_PREFIX, strlen(COOKIE_PREFIX)) == 0) {
        ih->kind = KEY_COOKIE;
        ih->name = key + strlen(COOKIE_PREFIX);
        ok = valid_name(ih, key, ih->name, "cookie", "cookie:session");
    } else if (strncmp(key, QUERY_PREFIX, strlen(QUERY_PREFIX)) == 0) {
        ih->kind = KEY_QUERY;
        ih->name = key + strlen(QUERY_PREFIX);
        ok = valid_name(ih, key, ih->name, "query parameter", "query:user");
    } else {
        host->config_error(host, "key",
                           "expected \"source\", \"header:NAME\", \"cookie:NAME\", \"uri\" or "
                           "\"query:NAME\"; got \"%s\"",
                           key);
        ok = 0;
    }
    if (ih->balance_factor != 0 && !(ih->balance_factor > 1.0 && ih->balance_factor <= 100.0)) {
        host->config_error(host, "balance_factor",
                           "must be above 1 (e.g. 1.25) and at most 100, or 0 for no bound (got "
                           "%g)",
                           ih->balance_factor);
        ok = 0;
    }
    return ok ? 0 : FC_EINVAL;
}
#else
/* ip_hash's `key`: "header:NAME", stored in ih->name (kind KEY_HEADER); else the address. */
static int read_key(struct ip_hash *ih)
{
    const struct fc_host *host = ih->host;
    const char *key = NULL;

    int rc = host->config_string(host, "key", &key);
    if (rc == FC_ENOENT)
        return 0;
    if (rc < 0)
        return rc;

    size_t plen = strlen(HEADER_PREFIX);
    if (strncmp(key, HEADER_PREFIX, plen) != 0) {
        host->config_error(host, "key",
                           "expected \"header:NAME\" (e.g. \"header:X-Session\"), or no key to "
                           "hash the client address; got \"%s\"",
                           key);
        return FC_EINVAL;
    }
    const char *name = key + plen;
    if (!valid_name(ih, key, name, "header", "header:X-Session"))
        return FC_EINVAL;
    ih->kind = KEY_HEADER;
    ih->name = name;
    return 0;
}
#endif

/* ------------------------------------------------------------------------ */
/* Ops                                                                       */
/* ------------------------------------------------------------------------ */

/* What the ring of `pool` depends on: its backends' addresses and weights, in order. */
static uint64_t fingerprint_of(const struct fc_pool_view *pool)
{
    uint64_t h = FNV1A64_OFFSET ^ pool->n_backends;
    for (uint32_t i = 0; i < pool->n_backends; i++) {
        const char *a = pool->backends[i].address != NULL ? pool->backends[i].address : "";
        h = mix64(h ^ hash_bytes(a, strlen(a)) ^ ((uint64_t)pool->backends[i].weight << 40));
    }
    return h;
}

static void ring_release(struct ring *r)
{
    if (r == NULL || --r->refs > 0)
        return;
    for (struct ring **at = &rings; *at != NULL; at = &(*at)->next)
        if (*at == r) {
            *at = r->next;
            break;
        }
    free(r->points);
    free(r->owners);
    free(r);
}

/* The ring of `pool`, shared with the other instances over it, with a reference. */
static struct ring *ring_acquire(const struct fc_pool_view *pool)
{
    uint64_t fp = fingerprint_of(pool);
    for (struct ring *r = rings; r != NULL; r = r->next)
        if (r->pool == pool && r->fingerprint == fp) {
            r->refs++;
            return r;
        }
    struct ring *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->pool = pool;
    r->fingerprint = fp;
    r->refs = 1;
    if (build_ring(r) != 0) {
        free(r->points);
        free(r->owners);
        free(r);
        return NULL;
    }
    r->next = rings;
    rings = r;
    return r;
}

static void ih_destroy(void *state)
{
    struct ip_hash *ih = state;
    if (ih == NULL)
        return;
    ring_release(ih->ring);
    free(ih->met);
    free(ih);
}

static int ih_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct ip_hash *ih = calloc(1, sizeof(*ih));
    if (ih == NULL)
        return FC_ENOMEM;
    ih->host = host;
    ih->pool = pool;

    int rc = read_key(ih);
    if (rc == 0 && pool->n_backends > 0) {
        ih->met = calloc(pool->n_backends, sizeof(*ih->met));
        ih->ring = ih->met != NULL ? ring_acquire(pool) : NULL;
        rc = ih->ring != NULL ? 0 : FC_ENOMEM;
    }
    if (rc < 0) {
        /* The host logs "create() failed: out of memory"; a rejected key was reported. */
        ih_destroy(ih);
        return rc;
    }
    *state = ih;
    return 0;
}

/* The first ring index whose position is >= h, wrapping to 0 past the last point. */
static uint32_t ring_find(const struct ring *ih, uint64_t h)
{
    uint32_t lo = 0, hi = ih->n_points;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ih->points[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ih->n_points ? lo : 0;
}

/* The value of query parameter `name` in target (a path and "?query"), or NULL. */
static const char *query_value(const char *target, size_t len, const char *name, size_t *vlen)
{
    const char *q = memchr(target, '?', len);
    if (q == NULL)
        return NULL;
    size_t n = strlen(name), i = (size_t)(q + 1 - target);
    while (i < len) {
        size_t start = i;
        while (i < len && target[i] != '&' && target[i] != '#')
            i++;
        if (i - start > n && memcmp(target + start, name, n) == 0 && target[start + n] == '=') {
            *vlen = i - start - n - 1;
            return target + start + n + 1;
        }
        if (i < len && target[i] == '#')
            break;
        i++;
    }
    return NULL;
}

/* The hash of the request's key; the client's address when the request has none. */
static uint64_t key_hash(const struct ip_hash *ih, const struct fc_pick_args *args)
{
    const struct fc_host *h = ih->host;
    const char *value = NULL;
    size_t len = 0;
    if (args->request != NULL) {
        switch (ih->kind) {
        case KEY_SOURCE:
            break;
        case KEY_HEADER:
            value = h->request_header(h, args->request, ih->name, &len);
            break;
        case KEY_COOKIE: {
            size_t clen;
            const char *c = h->request_header(h, args->request, "cookie", &clen);
            value = fc_cookie_value(c, clen, ih->name, &len);
            break;
        }
        case KEY_URI:
            value = h->request_target(h, args->request, &len);
            break;
        case KEY_QUERY: {
            size_t tlen;
            const char *t = h->request_target(h, args->request, &tlen);
            value = t != NULL ? query_value(t, tlen, ih->name, &len) : NULL;
            break;
        }
        }
    }
    /* An empty value is no key either: it would pile every such client onto one backend. */
    if (value != NULL && len > 0)
        return hash_bytes(value, len);
    return hash_client(args->client, args->client_len);
}

/* The in-flight load over the eligible backends and their weights, read once per pick. */
struct pool_load {
    int read;
    uint64_t inflight, weights;
};

/*
 * Whether backend b may take one more request under the bound: fewer in
 * flight than ceil(c * (total + 1) * weight / total weight), with the load
 * and weights of the eligible backends (read into *load at its first use in
 * a pick). Always true without a factor.
 */
static int under_bound(const struct ip_hash *ih, const struct fc_pick_args *args, uint32_t b,
                       struct pool_load *load)
{
    if (ih->balance_factor == 0)
        return 1;
    if (!load->read) {
        load->read = 1;
        for (uint32_t i = 0; i < ih->pool->n_backends; i++) {
            const struct fc_backend_view *v = &ih->pool->backends[i];
            if (fc_backend_eligible(args, v)) {
                load->inflight += fc_backend_inflight(v);
                load->weights += v->weight;
            }
        }
    }
    const struct fc_backend_view *v = &ih->pool->backends[b];
    double bound =
        ceil(ih->balance_factor * (double)(load->inflight + 1) * v->weight / (double)load->weights);
    return (double)fc_backend_inflight(v) < bound;
}

static int ih_pick(void *state, const struct fc_pick_args *args)
{
    struct ip_hash *ih = state;
    const struct fc_pool_view *pool = ih->pool;
    const struct ring *ring = ih->ring;

    if (ring == NULL || ring->n_points == 0)
        return FC_ENOBACKEND;

    struct pool_load load = {0};
    uint32_t i = ring_find(ring, key_hash(ih, args));
    uint32_t b = ring->owners[i];
    if (fc_backend_eligible(args, &pool->backends[b]) && under_bound(ih, args, b, &load))
        return (int)b;

    /*
     * The owner cannot take it: walk clockwise to the next eligible backend
     * (under its bound, with a factor; else the first eligible one met).
     * Each backend is tested once per walk; after meeting all of them, or
     * going once around, nothing is eligible.
     */
    if (++ih->epoch == 0) {
        memset(ih->met, 0, pool->n_backends * sizeof(*ih->met));
        ih->epoch = 1;
    }
    int first = fc_backend_eligible(args, &pool->backends[b]) ? (int)b : FC_ENOBACKEND;
    ih->met[b] = ih->epoch;
    uint32_t met = 1;
    for (uint32_t step = 1; step < ring->n_points && met < pool->n_backends; step++) {
        i = i + 1 < ring->n_points ? i + 1 : 0;
        b = ring->owners[i];
        if (ih->met[b] == ih->epoch)
            continue;
        ih->met[b] = ih->epoch;
        met++;
        if (!fc_backend_eligible(args, &pool->backends[b]))
            continue;
        if (under_bound(ih, args, b, &load))
            return (int)b;
        if (first < 0)
            first = (int)b;
    }
    return first; /* all over the bound (their counts moved meanwhile): the key's own */
}

static const struct fc_strategy_ops ih_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = ih_create,
    .destroy = ih_destroy,
    .pick = ih_pick,
};

#ifdef FC_HASH_FULL
FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "hash", .version = "1.0.0",
                     .description = "consistent hashing of a request key, with bounded loads",
                     .strategy = &ih_ops);
#else
FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "ip_hash", .version = "1.0.0",
                     .description = "consistent hashing (ring) of the client address or a header",
                     .strategy = &ih_ops);
#endif
