/*
 * weighted: smooth weighted round-robin, the algorithm of nginx's default
 * upstream balancing (ngx_http_upstream_get_peer(), explained nowhere in its
 * source). Over every cycle of W picks, where W is the sum of the weights,
 * backend b takes exactly weight(b) requests, and its turns are spread
 * through the cycle instead of bunched together.
 *
 * Each backend has a "current weight", 0 at first. On each pick:
 *   1. every eligible backend adds its weight to its current weight;
 *   2. the eligible backend with the largest current weight is picked (the
 *      first in configuration order on a tie);
 *   3. the picked one subtracts W, the sum of the eligible backends' weights.
 * Step 1 adds W in all and step 3 takes W back, so the current weights always
 * sum to 0: a backend that has been picked often is pushed below the others
 * and must earn its next turn back at the pace of its weight, while a light
 * backend's credit grows slowly until it is, briefly, the largest. Worked
 * example, weights a=5, b=1, c=1 (W = 7); current weights after step 1 and
 * the pick, then after step 3:
 *
 *   pick  after step 1   picked  after step 3
 *     1     5,  1,  1      a      -2,  1,  1
 *     2     3,  2,  2      a      -4,  2,  2
 *     3     1,  3,  3      b       1, -4,  3
 *     4     6, -3,  4      a      -1, -3,  4
 *     5     4, -2,  5      c       4, -2, -2
 *     6     9, -1, -1      a       2, -1, -1
 *     7     7,  0,  0      a       0,  0,  0   (back to the start)
 *
 * giving a a b a c a a, where plain weighted round-robin would give
 * a a a a a b c and send a five requests in a row.
 *
 * Backends that are down, or that this request already failed on
 * (fc_backend_eligible()), take no part in a pick: their current weight is
 * not advanced and W counts only eligible weights, as in nginx. Advancing
 * them would let a down backend pile up credit for as long as it is down and
 * then take a burst of consecutive requests when it comes back, the moment it
 * is least able to; frozen, it resumes where it left off. The sum of all
 * current weights stays 0 either way (the eligible ones gain W and lose W),
 * so no current weight grows without bound. With no backend eligible the pick
 * answers FC_ENOBACKEND.
 *
 * The host creates one instance per worker thread, so the current weights
 * need no lock and each worker runs its own cycle. Were every instance to
 * start from zeros, the first request of every worker would go to the same
 * (heaviest) backend; instead the k-th instance created from this copy of the
 * plugin starts k picks into the cycle (mod W), which spreads the workers'
 * first picks. A pick costs O(n) in the pool size.
 */
#include <fulcrum/plugin.h>

#include <stdint.h>
#include <stdlib.h>

struct weighted {
    const struct fc_pool_view *pool;
    /*
     * One per backend. They sum to 0 and stay within a small multiple of W
     * (weights are at most 1000), far inside int64_t.
     */
    int64_t *current;
};

/* Instances created so far; create() runs on the main thread, atomic all the same. */
static uint32_t instances;

/* One pick over the backends for which eligible() holds; see the opening comment. */
static int weighted_next(struct weighted *w, const struct fc_pick_args *args)
{
    const struct fc_backend_view *backends = w->pool->backends;
    uint32_t n = w->pool->n_backends;
    int64_t total = 0;
    int best = FC_ENOBACKEND;

    for (uint32_t i = 0; i < n; i++) {
        if (!fc_backend_eligible(args, &backends[i]))
            continue;
        w->current[i] += backends[i].weight;
        total += backends[i].weight;
        if (best < 0 || w->current[i] > w->current[best])
            best = (int)i;
    }
    if (best >= 0)
        w->current[best] -= total;
    return best;
}

static int weighted_create(const struct fc_host *host, const struct fc_pool_view *pool,
                           void **state)
{
    struct weighted *w = malloc(sizeof(*w));
    if (w == NULL)
        return FC_ENOMEM;
    w->pool = pool;
    w->current = calloc(pool->n_backends > 0 ? pool->n_backends : 1, sizeof(*w->current));
    if (w->current == NULL) {
        free(w);
        return FC_ENOMEM;
    }

    /* Start k picks into the cycle, as if k requests had come with no backend tried. */
    uint64_t cycle = 0;
    for (uint32_t i = 0; i < pool->n_backends; i++)
        cycle += pool->backends[i].weight;
    uint32_t k = __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED);
    if (cycle > 0) {
        struct fc_pick_args all = {.size = sizeof(all)};
        for (uint64_t skip = k % cycle; skip > 0; skip--)
            weighted_next(w, &all);
    }
    *state = w;
    return 0;
}

static void weighted_destroy(void *state)
{
    struct weighted *w = state;
    free(w->current);
    free(w);
}

static int weighted_pick(void *state, const struct fc_pick_args *args)
{
    return weighted_next(state, args);
}

static const struct fc_strategy_ops weighted_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = weighted_create,
    .destroy = weighted_destroy,
    .pick = weighted_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "weighted", .version = "1.0.0",
                     .description = "smooth weighted round-robin (nginx's), skipping those down "
                                    "or already tried",
                     .strategy = &weighted_ops);
