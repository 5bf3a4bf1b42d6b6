/*
 * misbehave: plugins that load and run but break one rule of the ABI each,
 * for `fulcrum plugin-check` to catch. Built once per flaw from this one
 * source, MISBEHAVE naming the flaw (a compile-time definition), with
 * MISBEHAVE_NAME as the plugin's name:
 *
 *   strategies (a round robin otherwise)
 *     1 picks_down      picks a backend that is down
 *     2 ignores_tried   skips down backends but not those already tried
 *     3 out_of_range    answers n_backends, past the last backend
 *     4 grows_memory    keeps 64 bytes per pick until it is unloaded (freed at
 *                       dlclose(): no leak checker sees a leak, but a daemon
 *                       that runs on only grows)
 *     5 leaks_fd        opens /dev/null in create() and never closes it
 *   rate limiters
 *     6 bad_verdict     check() answers 7, no verdict at all
 *     7 done_inside     returns PENDING after calling ratelimit_done() itself
 *     8 loses_pending   returns PENDING now and then and never gives the verdict
 *     9 false_retry     denies everything with "Retry-After: 1 ms"
 *   health checkers
 *    10 passes_all      says every backend passes without looking
 *    11 no_verdict      starts probes and never ends them
 */
#include <fulcrum/plugin.h>

#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef MISBEHAVE
#error "build with -DMISBEHAVE=N -DMISBEHAVE_NAME=\"...\""
#endif

#if MISBEHAVE <= 5

struct rr {
    const struct fc_pool_view *pool;
    _Atomic uint32_t next;
    int fd;
};

/* What grows_memory keeps: a list no one frees, reachable from here. */
struct kept {
    struct kept *next;
    char bytes[56];
};
static struct kept *_Atomic kept_list;

/* At dlclose(): the process keeps running, and a leak checker sees nothing. */
__attribute__((destructor)) static void forget_kept(void)
{
    for (struct kept *k = atomic_load(&kept_list), *next; k != NULL; k = next) {
        next = k->next;
        free(k);
    }
}

static int rr_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct rr *rr = calloc(1, sizeof(*rr));
    if (rr == NULL)
        return FC_ENOMEM;
    rr->pool = pool;
    rr->fd = MISBEHAVE == 5 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
    *state = rr;
    return 0;
}

static void rr_destroy(void *state)
{
    free(state); /* leaks_fd: rr->fd stays open */
}

static int usable(const struct fc_pick_args *args, const struct fc_backend_view *b)
{
    if (MISBEHAVE == 1)
        return 1;
    if (MISBEHAVE == 2)
        return fc_backend_is_up(b);
    return fc_backend_eligible(args, b);
}

static int rr_pick(void *state, const struct fc_pick_args *args)
{
    struct rr *rr = state;
    uint32_t n = rr->pool->n_backends;
    if (MISBEHAVE == 3)
        return (int)n;
    if (MISBEHAVE == 4) {
        struct kept *k = malloc(sizeof(*k));
        if (k != NULL) {
            k->next = atomic_load(&kept_list);
            while (!atomic_compare_exchange_weak(&kept_list, &k->next, k))
                ;
        }
    }
    uint32_t start = atomic_fetch_add(&rr->next, 1);
    for (uint32_t i = 0; i < n; i++) {
        const struct fc_backend_view *b = &rr->pool->backends[(start + i) % n];
        if (usable(args, b))
            return (int)b->index;
    }
    return FC_ENOBACKEND;
}

static const struct fc_strategy_ops rr_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = rr_create,
    .destroy = rr_destroy,
    .pick = rr_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = MISBEHAVE_NAME, .version = "0.0.1",
                     .description = "test: a round robin that breaks one rule",
                     .strategy = &rr_ops);

#elif MISBEHAVE <= 9

static int rl_create(const struct fc_host *host, void **state)
{
    *state = (void *)host;
    return 0;
}

static _Atomic uint64_t rl_count;

static int rl_check(void *state, const struct fc_ratelimit_args *args, uint64_t *retry_after_ms)
{
    const struct fc_host *host = state;
    switch (MISBEHAVE) {
    case 6:
        return 7;
    case 7:
        host->ratelimit_done(host, args->pending, FC_RATELIMIT_ALLOW, 0);
        return FC_RATELIMIT_PENDING;
    case 8:
        /* One check in 1000 is left pending, and nothing ever answers it. */
        return atomic_fetch_add(&rl_count, 1) % 1000 == 999 ? FC_RATELIMIT_PENDING
                                                            : FC_RATELIMIT_ALLOW;
    default:
        *retry_after_ms = 1;
        return FC_RATELIMIT_DENY;
    }
}

static const struct fc_ratelimit_ops rl_ops = {
    .size = sizeof(struct fc_ratelimit_ops),
    .create = rl_create,
    .check = rl_check,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_RATELIMIT, .name = MISBEHAVE_NAME, .version = "0.0.1",
                     .description = "test: a rate limiter that breaks one rule",
                     .ratelimit = &rl_ops);

#else

static int hc_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    *state = (void *)host;
    return 0;
}

static int hc_probe(void *state, const struct fc_backend_view *backend, uint32_t timeout_ms,
                    struct fc_probe *probe)
{
    const struct fc_host *host = state;
    if (MISBEHAVE == 10)
        host->probe_done(host, probe, 1, "looks fine from here");
    return 0; /* no_verdict: and nothing more */
}

static const struct fc_health_ops hc_ops = {
    .size = sizeof(struct fc_health_ops),
    .create = hc_create,
    .probe = hc_probe,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_HEALTH, .name = MISBEHAVE_NAME, .version = "0.0.1",
                     .description = "test: a health checker that breaks one rule",
                     .health = &hc_ops);

#endif
