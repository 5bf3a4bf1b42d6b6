/*
 * least_conn: each request goes to the eligible backend with the fewest
 * requests in flight per unit of weight, the "least connections" balancing
 * of nginx (`least_conn`) and HAProxy (`balance leastconn`). It adapts to
 * backends that slow down: a slow backend holds its requests longer, its
 * count grows, and new requests go elsewhere until it drains.
 *
 * The count is fc_backend_inflight(), which the core keeps per backend over
 * ALL worker threads. nginx's least_conn counts only the connections of the
 * worker process that picks (unless a `zone` shares them), so each worker
 * balances blind to the others and a backend that one worker has just loaded
 * still looks idle to the next; here every worker sees the same numbers.
 *
 * Weights scale the count: backend b's load is inflight(b) / weight(b), so a
 * weight-3 backend with 2 requests in flight (2/3) is less loaded than a
 * weight-1 backend with 1 (1/1). Loads are compared exactly, by
 * cross-multiplication (fc_load_cmp() in the SDK): no division, no floats.
 *
 * Ties are broken in rotation, as HAProxy does: each instance remembers the
 * backend after its last pick and scans the pool from there, keeping the
 * first backend of least load that it meets. Equally loaded backends thus
 * take turns, and with equal counts the rotation is exactly round_robin's.
 * One consequence, shared with HAProxy: when every backend is idle (a lightly
 * loaded pool, one request at a time), all loads are 0 and weights play no
 * part; the `weighted` strategy honours weights at any load.
 *
 * A pick costs one scan of the pool, O(n); `p2c` gets close to this choice
 * at constant cost for large pools. Backends that are down, or that this
 * request already failed on, are skipped (fc_backend_eligible()); with none
 * left the pick answers FC_ENOBACKEND. The host creates one instance per
 * worker thread, so the cursor needs no lock; as in round_robin, the k-th
 * instance created from this copy of the plugin starts its scan at backend
 * k (mod n), so that the workers' first ties do not all go to backend 0.
 */
#include <fulcrum/plugin.h>

#include <stdint.h>
#include <stdlib.h>

struct least_conn {
    const struct fc_pool_view *pool;
    uint32_t next; /* where the next scan starts, < pool->n_backends */
};

/* Instances created so far; create() runs on the main thread, atomic all the same. */
static uint32_t instances;

static int lc_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct least_conn *lc = malloc(sizeof(*lc));
    if (lc == NULL)
        return FC_ENOMEM;

    uint32_t k = __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED);
    lc->pool = pool;
    lc->next = pool->n_backends > 0 ? k % pool->n_backends : 0;
    *state = lc;
    return 0;
}

static void lc_destroy(void *state)
{
    free(state);
}

static int lc_pick(void *state, const struct fc_pick_args *args)
{
    struct least_conn *lc = state;
    return fc_pick_least_loaded(lc->pool, args, &lc->next);
}

static const struct fc_strategy_ops lc_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = lc_create,
    .destroy = lc_destroy,
    .pick = lc_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "least_conn", .version = "1.0.0",
                     .description = "fewest requests in flight per weight, over all workers; "
                                    "ties in turn",
                     .strategy = &lc_ops);
