/*
 * round_robin: each pick goes to the next eligible backend of the pool, in
 * configuration order, wrapping around at the end; with every backend up the
 * backends of an n-backend pool take exactly one request in n each.
 *
 * The instance keeps a cursor, the index just after its last pick, and scans
 * forward from it for the first backend that fc_backend_eligible() accepts: a
 * down backend, or one this request already failed on, is skipped and the
 * following one takes the request. The scan is bounded by the pool size, so a
 * pool with nothing eligible answers FC_ENOBACKEND after one lap.
 *
 * The host creates one instance per worker thread, so the cursor needs no
 * lock, and the rotation is even per worker rather than globally. Were every
 * instance to start at backend 0, the first request of every worker would hit
 * the same backend; instead the k-th instance created from this copy of the
 * plugin starts at backend k (mod n), which spreads the workers of a pool over
 * its backends. Each load of the plugin is a private copy (one per
 * configuration generation), so the count restarts with each reload.
 *
 * Weights are ignored: every backend counts as weight 1. The `weighted`
 * strategy honours them.
 */
#include <fulcrum/plugin.h>

#include <stdint.h>
#include <stdlib.h>

struct round_robin {
    const struct fc_pool_view *pool;
    uint32_t next; /* where the next scan starts, < pool->n_backends */
};

/* Instances created so far; create() runs on the main thread, atomic all the same. */
static uint32_t instances;

static int rr_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct round_robin *rr = malloc(sizeof(*rr));
    if (rr == NULL)
        return FC_ENOMEM;

    uint32_t k = __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED);
    rr->pool = pool;
    rr->next = pool->n_backends > 0 ? k % pool->n_backends : 0;
    *state = rr;
    return 0;
}

static void rr_destroy(void *state)
{
    free(state);
}

static int rr_pick(void *state, const struct fc_pick_args *args)
{
    struct round_robin *rr = state;
    uint32_t n = rr->pool->n_backends;
    uint32_t i = rr->next;

    for (uint32_t scanned = 0; scanned < n; scanned++) {
        if (fc_backend_eligible(args, &rr->pool->backends[i])) {
            rr->next = i + 1 < n ? i + 1 : 0;
            return (int)i;
        }
        i = i + 1 < n ? i + 1 : 0;
    }
    return FC_ENOBACKEND;
}

static const struct fc_strategy_ops rr_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = rr_create,
    .destroy = rr_destroy,
    .pick = rr_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "round_robin", .version = "1.0.0",
                     .description = "each backend in turn, skipping those down or already tried",
                     .strategy = &rr_ops);
