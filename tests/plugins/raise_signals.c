/*
 * raise_signals: a round-robin strategy whose first create() sends the
 * daemon SIGHUP and SIGUSR1, as a logrotate or an impatient operator would
 * while the configuration still loads. `marker` (a path) records that it
 * did, so that the reload the SIGHUP causes does not raise them again.
 */
#include <fulcrum/plugin.h>

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

struct rs {
    const struct fc_pool_view *pool;
    uint32_t next;
};

static int rs_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    const char *marker = NULL;
    if (host->config_string(host, "marker", &marker) != 0) {
        host->config_error(host, "marker", "expected a path");
        return FC_EINVAL;
    }
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
        close(fd);
        raise(SIGHUP);
        raise(SIGUSR1);
    }
    struct rs *rs = calloc(1, sizeof(*rs));
    if (rs == NULL)
        return FC_ENOMEM;
    rs->pool = pool;
    *state = rs;
    return 0;
}

static void rs_destroy(void *state)
{
    free(state);
}

static int rs_pick(void *state, const struct fc_pick_args *args)
{
    struct rs *rs = state;
    for (uint32_t i = 0; i < rs->pool->n_backends; i++) {
        uint32_t k = (rs->next + i) % rs->pool->n_backends;
        if (fc_backend_eligible(args, &rs->pool->backends[k])) {
            rs->next = k + 1;
            return (int)k;
        }
    }
    return FC_ENOBACKEND;
}

static const struct fc_strategy_ops rs_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = rs_create,
    .destroy = rs_destroy,
    .pick = rs_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "raise_signals", .version = "0.0.1",
                     .description = "test: create() raises SIGHUP and SIGUSR1 once",
                     .strategy = &rs_ops);
