/*
 * p2c: the power of two random choices. Each pick draws two distinct eligible
 * backends at random and sends the request to the less loaded of the two,
 * load being requests in flight per unit of weight (fc_backend_load_cmp()),
 * counted over all worker threads. It is HAProxy's `balance random(2)`, the
 * Linux IPVS "twos" scheduler and Envoy's LEAST_REQUEST, after Mitzenmacher's
 * "The Power of Two Choices in Randomized Load Balancing" (2001).
 *
 * Why two random choices come close to least_conn's quality: one random
 * choice lets loads drift apart (n requests placed at random on n backends
 * leave the busiest with about log n / log log n of them), while the better
 * of two random choices cuts that exponentially, to about log log n. In
 * balancing terms: the most loaded backend is never picked unless tied, the
 * least loaded is picked whenever it is drawn, and a backend that slows
 * down accumulates requests and loses every comparison until it drains. Each
 * pick costs the same however large the pool (two draws and one comparison,
 * against least_conn's scan of every backend), and the randomness spreads
 * simultaneous picks: least_conn on several workers at the same instant
 * sends them all to the same least-loaded backend, p2c does not.
 *
 * Weights act twice, as in HAProxy: in the draws and in the comparison. The
 * two backends are drawn in proportion to their weights (the second from the
 * others), and loads are compared as inflight/weight. So an idle pool, whose
 * loads all tie, still shares requests in proportion to weight: a tie goes to
 * the first draw. Weighted draws cost O(1) through Walker's alias method
 * (Vose's construction, in integers so that it is exact): create() lays out n
 * columns of height W (the sum of the weights) and fills each with at most two
 * backends; a draw picks a column uniformly and a height in [0, W) uniformly,
 * and takes the column's own backend below its cut, the column's alias above.
 * Backend b owns weight(b) * n of the n * W cells: probability weight(b) / W.
 *
 * A draw that lands on a backend that is down, already tried by this request
 * (fc_backend_eligible()), or is the first choice again, is drawn again, up to
 * DRAW_TRIES times; after that an exact weighted draw over a scan of the
 * eligible backends takes over, so the result has the same distribution and a
 * pool with few backends up still costs only O(n). With one eligible backend
 * the pick returns it; with none, FC_ENOBACKEND.
 *
 * Randomness comes from a per-instance splitmix64 generator (Steele, Lea and
 * Flood 2014; the seeding generator of xoshiro), seeded from the host's clock
 * and the instance's address and sequence number; never the global rand(),
 * which is shared, locked in glibc and not ours to reseed. Numbers below a
 * bound are taken by multiplying 32 random bits by the bound and keeping the
 * top 32 bits (Lemire 2019); the bias is below bound / 2^32, under one in
 * 400,000 for weights adding up to 10,000. (W must fit in 32 bits, which
 * create() checks.)
 */
#include <fulcrum/plugin.h>

#include <stdint.h>
#include <stdlib.h>

/* Draws that may miss (down, tried, or the first choice again) before the exact scan. */
#define DRAW_TRIES 8

struct p2c {
    const struct fc_pool_view *pool;
    uint64_t rng;    /* splitmix64 state */
    uint32_t total;  /* W, the sum of the weights */
    uint32_t *cut;   /* per column: draws below this height take the column's backend */
    uint32_t *alias; /* per column: the backend taking the draws at or above the cut */
};

/* Instances created so far; create() runs on the main thread, atomic all the same. */
static uint32_t instances;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A number in [0, bound), bound > 0. */
static uint32_t below(struct p2c *p, uint32_t bound)
{
    uint32_t x = (uint32_t)(splitmix64(&p->rng) >> 32);
    return (uint32_t)(((uint64_t)x * bound) >> 32);
}

/*
 * Builds the alias table. scaled[i] starts as weight(i) * n, the cells that
 * backend i must own out of n columns of W cells each. A column short of W
 * ("small") is topped up from a backend with W or more ("large"), which then
 * owns fewer cells and may become small itself. Every column ends full: the
 * total is n * W throughout.
 */
static int alias_build(struct p2c *p)
{
    const struct fc_backend_view *backends = p->pool->backends;
    uint32_t n = p->pool->n_backends;
    if (n == 0)
        return 0;
    uint64_t *scaled = malloc(n * sizeof(*scaled));
    uint32_t *small = malloc(n * sizeof(*small));
    uint32_t *large = malloc(n * sizeof(*large));
    if (scaled == NULL || small == NULL || large == NULL) {
        free(scaled);
        free(small);
        free(large);
        return FC_ENOMEM;
    }

    uint32_t n_small = 0, n_large = 0;
    for (uint32_t i = 0; i < n; i++) {
        scaled[i] = (uint64_t)backends[i].weight * n;
        if (scaled[i] < p->total)
            small[n_small++] = i;
        else
            large[n_large++] = i;
    }
    while (n_small > 0 && n_large > 0) {
        uint32_t s = small[--n_small];
        uint32_t l = large[n_large - 1];
        p->cut[s] = (uint32_t)scaled[s];
        p->alias[s] = l;
        scaled[l] -= p->total - scaled[s];
        if (scaled[l] < p->total) {
            n_large--;
            small[n_small++] = l;
        }
    }
    /*
     * What is left owns exactly W cells, its whole column: the cells still to
     * place are W per column left, and the arithmetic is exact. (So only
     * `large` can have entries left; a column is full either way.)
     */
    while (n_large > 0) {
        uint32_t l = large[--n_large];
        p->cut[l] = p->total;
        p->alias[l] = l;
    }
    while (n_small > 0) {
        uint32_t s = small[--n_small];
        p->cut[s] = p->total;
        p->alias[s] = s;
    }
    free(scaled);
    free(small);
    free(large);
    return 0;
}

static void p2c_destroy(void *state)
{
    struct p2c *p = state;
    free(p->cut);
    free(p->alias);
    free(p);
}

static int p2c_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < pool->n_backends; i++)
        total += pool->backends[i].weight;
    if (total > UINT32_MAX) {
        host->log(host, FC_LOG_ERROR, "the weights of pool \"%s\" add up to more than %u",
                  pool->name, (unsigned)UINT32_MAX);
        return FC_EINVAL;
    }

    struct p2c *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return FC_ENOMEM;
    size_t columns = pool->n_backends > 0 ? pool->n_backends : 1;
    p->pool = pool;
    p->total = (uint32_t)total;
    p->cut = calloc(columns, sizeof(*p->cut));
    p->alias = calloc(columns, sizeof(*p->alias));
    if (p->cut == NULL || p->alias == NULL || alias_build(p) < 0) {
        p2c_destroy(p);
        return FC_ENOMEM;
    }

    /* Distinct streams for instances created in the same nanosecond, or at the same address. */
    uint32_t k = __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED);
    p->rng = host->now_ns(host) ^ ((uint64_t)k << 32) ^ (uint64_t)(uintptr_t)p;
    splitmix64(&p->rng);
    *state = p;
    return 0;
}

/* An eligible backend other than `exclude` (UINT32_MAX: none), drawn by weight; or -1. */
static int draw(struct p2c *p, const struct fc_pick_args *args, uint32_t exclude)
{
    const struct fc_backend_view *backends = p->pool->backends;
    uint32_t n = p->pool->n_backends;

    for (int tries = 0; tries < DRAW_TRIES; tries++) {
        uint32_t column = below(p, n);
        uint32_t i = below(p, p->total) < p->cut[column] ? column : p->alias[column];
        if (i != exclude && fc_backend_eligible(args, &backends[i]))
            return (int)i;
    }

    /* Missed too often: draw exactly among the backends that qualify. */
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i != exclude && fc_backend_eligible(args, &backends[i]))
            sum += backends[i].weight;
    if (sum == 0)
        return -1;
    uint32_t r = below(p, (uint32_t)sum);
    for (uint32_t i = 0; i < n; i++) {
        /* Re-checked: another thread may mark a backend down meanwhile; then take the last. */
        if (i == exclude || !fc_backend_eligible(args, &backends[i]))
            continue;
        if (r < backends[i].weight)
            return (int)i;
        r -= backends[i].weight;
    }
    for (uint32_t i = n; i-- > 0;)
        if (i != exclude && fc_backend_eligible(args, &backends[i]))
            return (int)i;
    return -1;
}

static int p2c_pick(void *state, const struct fc_pick_args *args)
{
    struct p2c *p = state;
    const struct fc_backend_view *backends = p->pool->backends;
    if (p->pool->n_backends == 0)
        return FC_ENOBACKEND;

    int first = draw(p, args, UINT32_MAX);
    if (first < 0)
        return FC_ENOBACKEND;
    int second = draw(p, args, (uint32_t)first);
    if (second < 0)
        return first;
    /* Strictly less: a tie goes to the first draw, itself drawn in proportion to weight. */
    return fc_backend_load_cmp(&backends[second], &backends[first]) < 0 ? second : first;
}

static const struct fc_strategy_ops p2c_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = p2c_create,
    .destroy = p2c_destroy,
    .pick = p2c_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "p2c", .version = "1.0.0",
                     .description = "the less loaded of two backends drawn at random by weight "
                                    "(power of two choices)",
                     .strategy = &p2c_ops);
