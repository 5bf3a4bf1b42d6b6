/*
 * abi10_round_robin: a small round-robin strategy built against the frozen
 * ABI 1.0 header beside it (tests/plugins/abi-1.0/fulcrum/), so that the
 * tests can load a real 1.0 strategy into the current host and pick with
 * it. Each pick takes the first eligible backend at or after a cursor, which
 * then moves past it; with nothing eligible it answers FC_ENOBACKEND. Every
 * instance starts at backend 0, so the tests know the sequence (the bundled
 * round_robin spreads its instances instead). Keep it to the 1.0 API.
 */
#include <fulcrum/plugin.h>

#include <stdlib.h>

/* Built against anything but the frozen 1.0 header, this would test nothing. */
#if FC_ABI_MAJOR != 1 || FC_ABI_MINOR != 0
#error "abi10_round_robin must be built against tests/plugins/abi-1.0/fulcrum/plugin.h (ABI 1.0)"
#endif

struct cursor {
    const struct fc_pool_view *pool;
    uint32_t at; /* the backend the next scan starts from */
};

static int cursor_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return FC_ENOMEM;
    c->pool = pool;
    *state = c;
    return 0;
}

static void cursor_destroy(void *state)
{
    free(state);
}

static int cursor_pick(void *state, const struct fc_pick_args *args)
{
    struct cursor *c = state;
    uint32_t n = c->pool->n_backends;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (c->at + k) % n;
        if (fc_backend_eligible(args, &c->pool->backends[i])) {
            c->at = (i + 1) % n;
            return (int)i;
        }
    }
    return FC_ENOBACKEND;
}

static const struct fc_strategy_ops cursor_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = cursor_create,
    .destroy = cursor_destroy,
    .pick = cursor_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "abi10_round_robin", .version = "1.0.0",
                     .description = "ABI 1.0 round-robin, for the compatibility tests",
                     .strategy = &cursor_ops);
