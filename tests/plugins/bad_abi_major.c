/* bad_abi_major: a strategy built for plugin ABI 2.0, which this host must refuse. */
#include <fulcrum/plugin.h>

static int broken_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    return 0;
}

static int broken_pick(void *state, const struct fc_pick_args *args)
{
    return 0;
}

static const struct fc_strategy_ops broken_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = broken_create,
    .pick = broken_pick,
};

/* Written out by hand: FC_PLUGIN_DESCRIPTOR() would stamp the correct fields. */
FC_PLUGIN_EXPORT const struct fc_plugin_descriptor fc_plugin = {
    .magic = FC_PLUGIN_MAGIC,
    .abi_major = FC_ABI_MAJOR + 1,
    .abi_minor = 0,
    .size = sizeof(struct fc_plugin_descriptor),
    .kind = FC_PLUGIN_STRATEGY,
    .name = "bad_abi_major",
    .strategy = &broken_ops,
};
