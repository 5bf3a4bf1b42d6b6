/*
 * test_strategy: a well-formed strategy that reads four keys of every type
 * through the host (answer: integer, label: string, ratio: number, flag:
 * boolean) and keeps the values and the getters' return codes in its state
 * for the tests to inspect. It rejects a negative answer through
 * config_error(). After a getter's FC_EINVAL it still returns 0, unlike a
 * real plugin, so that the tests see the host refuse the configuration on its
 * own. pick() always answers backend 0.
 */
#include "test_strategy.h"

#include <fulcrum/plugin.h>

#include <stdlib.h>

static int ts_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct test_strategy_state *s = malloc(sizeof(*s));
    if (s == NULL)
        return FC_ENOMEM;

    s->answer = 7;
    s->label = "none";
    s->ratio = 1.0;
    s->flag = 0;
    s->rc_answer = host->config_int(host, "answer", &s->answer);
    s->rc_label = host->config_string(host, "label", &s->label);
    s->rc_ratio = host->config_double(host, "ratio", &s->ratio);
    s->rc_flag = host->config_bool(host, "flag", &s->flag);
    if (s->rc_label == FC_ENOMEM) {
        free(s);
        return FC_ENOMEM;
    }
    if (s->rc_answer == 0 && s->answer < 0)
        host->config_error(host, "answer", "must not be negative, got %lld", (long long)s->answer);
    *state = s;
    return 0;
}

static void ts_destroy(void *state)
{
    free(state);
}

static int ts_pick(void *state, const struct fc_pick_args *args)
{
    return 0;
}

static const struct fc_strategy_ops ts_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = ts_create,
    .destroy = ts_destroy,
    .pick = ts_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "test_strategy", .version = "0.0.1",
                     .description = "test: reads one key of each type", .strategy = &ts_ops);
