/* small_ops: a strategy ops table whose size is smaller than ABI 1.0's. */
#include <fulcrum/plugin.h>

static int so_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    return 0;
}

static int so_pick(void *state, const struct fc_pick_args *args)
{
    return 0;
}

static const struct fc_strategy_ops so_ops = {
    .size = 8,
    .create = so_create,
    .pick = so_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "small_ops", .version = "0.0.1",
                     .description = "test: ops table too small", .strategy = &so_ops);
