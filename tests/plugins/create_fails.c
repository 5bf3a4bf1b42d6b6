/* create_fails: a strategy whose create() always refuses, after logging why. */
#include <fulcrum/plugin.h>

static int cf_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    host->log(host, FC_LOG_ERROR, "cannot start: the test says so");
    return FC_EINVAL;
}

static int cf_pick(void *state, const struct fc_pick_args *args)
{
    return FC_ENOBACKEND;
}

static const struct fc_strategy_ops cf_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = cf_create,
    .pick = cf_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "create_fails", .version = "0.0.1",
                     .description = "test: create() fails", .strategy = &cf_ops);
