/*
 * first_up: an example strategy built outside the fulcrum tree, against the
 * installed SDK only (fulcrum-dev). Every request goes to the first backend,
 * in configuration order, that is up and not already tried for it: the
 * first backend is the primary and the others are standbys, taken in order
 * when the ones before them are down or refuse the connection
 * (active/passive failover, as HAProxy's `backup` servers).
 *
 * The host creates one instance per worker thread and pool, so pick() never
 * runs concurrently with itself; this strategy keeps no state at all beyond
 * the pool view it was given, which lives as long as the instance.
 */
#include <fulcrum/plugin.h>

static int first_up_create(const struct fc_host *host, const struct fc_pool_view *pool,
                           void **state)
{
    host->log(host, FC_LOG_INFO, "primary %s, %u standby backend(s)",
              pool->n_backends > 0 ? pool->backends[0].address : "(none)",
              pool->n_backends > 0 ? pool->n_backends - 1 : 0);
    /* The pool view is borrowed for the instance's life: it is the whole state. */
    *state = (void *)pool;
    return 0;
}

static int first_up_pick(void *state, const struct fc_pick_args *args)
{
    const struct fc_pool_view *pool = state;
    for (uint32_t i = 0; i < pool->n_backends; i++)
        if (fc_backend_eligible(args, &pool->backends[i]))
            return (int)i;
    return FC_ENOBACKEND; /* the client gets 503 */
}

static const struct fc_strategy_ops first_up_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = first_up_create,
    .pick = first_up_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "first_up", .version = "1.0.0",
                     .description = "the first backend that is up: primary and standbys",
                     .strategy = &first_up_ops);
