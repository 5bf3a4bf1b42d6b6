/* no_pick: a strategy ops table without its required pick(). */
#include <fulcrum/plugin.h>

static int np_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    return 0;
}

static const struct fc_strategy_ops np_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = np_create,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "no_pick", .version = "0.0.1",
                     .description = "test: no pick()", .strategy = &np_ops);
