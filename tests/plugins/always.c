/*
 * always: a strategy that sends every request to one fixed backend,
 * ALWAYS_INDEX (a compile-time definition), or answers "no backend" when that
 * one is down or absent. Built twice, as always_a (backend 0) and always_b
 * (backend 1), from this one source: two plugin files whose code differs, so
 * that a test can put one at a path, replace it by the other (mv, or cp over
 * it in place) and tell from the responses which code the daemon runs.
 */
#include <fulcrum/plugin.h>

#ifndef ALWAYS_INDEX
#error "build with -DALWAYS_INDEX=N -DALWAYS_NAME=\"...\""
#endif

static int always_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    *state = (void *)pool;
    return 0;
}

static int always_pick(void *state, const struct fc_pick_args *args)
{
    const struct fc_pool_view *pool = state;
    if ((uint32_t)ALWAYS_INDEX >= pool->n_backends ||
        !fc_backend_eligible(args, &pool->backends[ALWAYS_INDEX]))
        return FC_ENOBACKEND;
    return ALWAYS_INDEX;
}

static const struct fc_strategy_ops always_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = always_create,
    .pick = always_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = ALWAYS_NAME, .version = "0.0.1",
                     .description = "test: every request to one fixed backend",
                     .strategy = &always_ops);
