/* wrong_kind: a valid health checker, which the tests load where a strategy is expected. */
#include <fulcrum/plugin.h>

static int wk_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    return 0;
}

static int wk_probe(void *state, const struct fc_backend_view *backend, uint32_t timeout_ms,
                    struct fc_probe *probe)
{
    return FC_ERROR;
}

static const struct fc_health_ops wk_ops = {
    .size = sizeof(struct fc_health_ops),
    .create = wk_create,
    .probe = wk_probe,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_HEALTH, .name = "wrong_kind", .version = "0.0.1",
                     .description = "test: a health checker", .health = &wk_ops);
