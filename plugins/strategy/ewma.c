/*
 * ewma: peak-EWMA latency balancing, as Finagle's `Balancers.p2cPeakEwma`
 * (Twitter, 2016; "Peak EWMA" in Finagle's `PeakEwma.scala`), linkerd and
 * Envoy's least_request with active-request bias use it. It sends requests
 * where they will be answered soonest, and reacts to a backend that slows
 * down within a request or two, where least_conn only notices once requests
 * pile up on it.
 *
 * The algorithm. Each backend has a cost: a moving average of its response
 * latency (request start to response head, from outcome()), in microseconds,
 * and the time it was last updated. A new sample `rtt`, `td` after the last
 * update, with `tau` = decay_ms:
 *
 *   w = exp(-td / tau)
 *   cost = rtt                       if rtt > cost   (the peak: up at once)
 *   cost = cost * w + rtt * (1 - w)  otherwise       (down slowly)
 *
 * and, read at a pick, the cost decays as if a sample of 0 had come, so a
 * backend that was slow once is tried again after a while instead of being
 * shunned for good. A request that failed before a response head (outcome
 * status 0: connect failure, reset, timeout) or got a 5xx counts as a sample
 * of `penalty_ms`. The load of a backend is
 *
 *   cost * (in flight + 1) / weight
 *
 * with the in-flight count over all workers (fc_backend_inflight()), so a
 * fast backend that is already busy is not buried under the next requests.
 * A pick draws two distinct eligible backends at random and takes the one
 * of lower load (the power of two choices: Mitzenmacher, 2001), which
 * avoids the herd a pure "least cost" pick sends to one backend between two
 * samples. A backend with no sample yet costs 0, so it is tried as soon as
 * it is drawn; once it has requests in flight and still no answer, it costs
 * `penalty_ms` per request in flight.
 *
 * Keys: decay_ms (default 10000, Finagle's default), penalty_ms (default
 * 1000). The costs are per worker (one instance per worker thread and pool,
 * so no lock): each worker learns from the requests it sent.
 */
#include <fulcrum/plugin.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

struct backend_cost {
    double cost_us;    /* the peak-EWMA of latency */
    uint64_t stamp_ns; /* its last update */
    int sampled;       /* a sample came */
};

struct ewma {
    const struct fc_host *host;
    const struct fc_pool_view *pool;
    double tau_ns, penalty_us;
    uint64_t rng;
    struct backend_cost *b; /* [n_backends] */
    uint32_t *eligible;     /* [n_backends]: scratch for a pick */
};

static uint32_t instances;

static uint64_t next_random(struct ewma *e)
{
    /* xorshift64*: enough to draw backends, and the instance's own. */
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return e->rng * 0x2545F4914F6CDD1DULL;
}

/* The cost of b decayed to `now`, as a sample of `rtt` would leave it. */
static void observe(struct ewma *e, struct backend_cost *b, double rtt_us, uint64_t now)
{
    double td = now > b->stamp_ns ? (double)(now - b->stamp_ns) : 0.0;
    double w = exp(-td / e->tau_ns);
    if (rtt_us > b->cost_us)
        b->cost_us = rtt_us;
    else
        b->cost_us = b->cost_us * w + rtt_us * (1.0 - w);
    b->stamp_ns = now;
}

static int ewma_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    int64_t decay_ms = 10000, penalty_ms = 1000;
    if (host->config_int(host, "decay_ms", &decay_ms) == FC_EINVAL ||
        host->config_int(host, "penalty_ms", &penalty_ms) == FC_EINVAL)
        return FC_EINVAL;
    int bad = 0;
    if (decay_ms < 1 || decay_ms > 3600000) {
        host->config_error(host, "decay_ms", "must be 1 to 3600000 (got %lld)",
                           (long long)decay_ms);
        bad = 1;
    }
    if (penalty_ms < 1 || penalty_ms > 3600000) {
        host->config_error(host, "penalty_ms", "must be 1 to 3600000 (got %lld)",
                           (long long)penalty_ms);
        bad = 1;
    }
    if (bad)
        return FC_EINVAL;
    struct ewma *e = calloc(1, sizeof(*e));
    uint32_t n = pool->n_backends ? pool->n_backends : 1;
    if (e == NULL || (e->b = calloc(n, sizeof(*e->b))) == NULL ||
        (e->eligible = calloc(n, sizeof(*e->eligible))) == NULL) {
        if (e != NULL)
            free(e->b);
        free(e);
        return FC_ENOMEM;
    }
    e->host = host;
    e->pool = pool;
    e->tau_ns = (double)decay_ms * 1e6;
    e->penalty_us = (double)penalty_ms * 1e3;
    uint32_t k = __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED);
    e->rng = (host->now_ns(host) ^ ((uint64_t)k << 32)) | 1;
    *state = e;
    return 0;
}

static void ewma_destroy(void *state)
{
    struct ewma *e = state;
    free(e->b);
    free(e->eligible);
    free(e);
}

/* cost * (in flight + 1) / weight, the cost decayed to now. */
static double load_of(struct ewma *e, uint32_t i, uint64_t now)
{
    const struct fc_backend_view *v = &e->pool->backends[i];
    struct backend_cost *b = &e->b[i];
    uint32_t inflight = fc_backend_inflight(v);
    double cost;
    if (!b->sampled) {
        cost = inflight ? e->penalty_us : 0.0; /* untried: try it, unless it hangs already */
    } else {
        double td = now > b->stamp_ns ? (double)(now - b->stamp_ns) : 0.0;
        cost = b->cost_us * exp(-td / e->tau_ns); /* a sample of 0 now, without keeping it */
    }
    return cost * (double)(inflight + 1) / (double)v->weight;
}

static int ewma_pick(void *state, const struct fc_pick_args *args)
{
    struct ewma *e = state;
    uint32_t n = 0;
    for (uint32_t i = 0; i < e->pool->n_backends; i++)
        if (fc_backend_eligible(args, &e->pool->backends[i]))
            e->eligible[n++] = i;
    if (n == 0)
        return FC_ENOBACKEND;
    if (n == 1)
        return (int)e->eligible[0];
    uint32_t a = (uint32_t)(next_random(e) % n);
    uint32_t b = (uint32_t)(next_random(e) % (n - 1));
    if (b >= a)
        b++;
    uint64_t now = e->host->now_ns(e->host);
    uint32_t ia = e->eligible[a], ib = e->eligible[b];
    return (int)(load_of(e, ib, now) < load_of(e, ia, now) ? ib : ia);
}

static void ewma_outcome(void *state, uint32_t index, int status, uint64_t latency_us)
{
    struct ewma *e = state;
    if (index >= e->pool->n_backends)
        return;
    double rtt = status == 0 || status >= 500 ? e->penalty_us : (double)latency_us;
    struct backend_cost *b = &e->b[index];
    if (!b->sampled) {
        b->sampled = 1;
        b->cost_us = rtt;
        b->stamp_ns = e->host->now_ns(e->host);
        return;
    }
    observe(e, b, rtt, e->host->now_ns(e->host));
}

static const struct fc_strategy_ops ewma_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = ewma_create,
    .destroy = ewma_destroy,
    .pick = ewma_pick,
    .outcome = ewma_outcome,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "ewma", .version = "1.0.0",
                     .description = "peak-EWMA latency x load, power of two choices",
                     .strategy = &ewma_ops);
