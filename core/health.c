/*
 * Active health checking and passive failure detection; see health.h.
 *
 * The core, not the plugin, schedules probes: each pool with a checker has a
 * repeating timer, and at each tick every backend with no probe in flight gets
 * one. A backend that hangs therefore costs one probe per timeout, never a
 * pile of them. Results go through fc_health_apply(), whose transitions are
 * logged once each with their reason.
 *
 * A generation's checkers run from when it is published until it is replaced;
 * the next generation's checkers carry on with the same backend state. One
 * scan timer per running generation also ends passive cool-downs.
 */
#include "health.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the main thread looks for passive cool-downs that ended. */
#define SCAN_INTERVAL_MS 100

struct fc_probe {
    struct fc_health_pool *hp;
    uint32_t backend;
    int in_flight;
};

/* A pool's checker while it runs: created by fc_health_start(), freed with its run. */
struct fc_health_pool {
    struct fc_gen_pool *pool;
    struct fc_probe *probes; /* [n_backends] */
    uv_timer_t timer;
    uint32_t in_flight;
    struct fc_health_run *run;
    int probe_all; /* the next tick probes every backend, due or not (a start, a reload) */
};

struct fc_health_run {
    struct fc_generation *g;
    uv_timer_t scan;
    uint32_t open; /* handles and probes that must end before done() */
    int stopping;
    void (*done)(void *arg);
    void *done_arg;
};

enum fc_health_transition fc_health_apply(struct fc_health_counters *h, int ok, uint32_t rise,
                                          uint32_t fall)
{
    if (ok) {
        h->fails = 0;
        if (h->passes < UINT32_MAX)
            h->passes++;
        if (!h->up && h->passes >= rise) {
            h->up = 1;
            return FC_HEALTH_WENT_UP;
        }
    } else {
        h->passes = 0;
        if (h->fails < UINT32_MAX)
            h->fails++;
        if (h->up && h->fails >= fall) {
            h->up = 0;
            return FC_HEALTH_WENT_DOWN;
        }
    }
    return FC_HEALTH_SAME;
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static void (*observer)(void *arg, struct fc_gen_pool *pool, uint32_t backend);
static void *observer_arg;

void fc_health_set_observer(void (*fn)(void *arg, struct fc_gen_pool *pool, uint32_t backend),
                            void *arg)
{
    observer = fn;
    observer_arg = arg;
}

/*
 * The main thread's view of backend i: when what strategies see changed
 * since it last looked, it notes when and why, and tells the observer.
 */
static void observe(struct fc_gen_pool *pool, uint32_t i, const char *why)
{
    struct fc_backend_shared *b = pool->shared[i];
    uint32_t up = __atomic_load_n(&b->state.up, __ATOMIC_RELAXED);
    if (up == b->seen_up)
        return;
    b->seen_up = up;
    b->since_unix = (uint64_t)time(NULL);
    snprintf(b->why, sizeof(b->why), "%s", why);
    if (observer != NULL)
        observer(observer_arg, pool, i);
}

/*
 * What strategies see: up when the active verdict (if the pool has a checker)
 * says so and no passive cool-down is running. Main thread.
 */
static void publish_up(struct fc_gen_pool *pool, struct fc_backend_shared *b)
{
    int up = pool->health != NULL ? b->active.up : 1;
    if (__atomic_load_n(&b->passive_until_ns, __ATOMIC_SEQ_CST) != 0)
        up = 0;
    __atomic_store_n(&b->state.up, (uint32_t)up, __ATOMIC_SEQ_CST);
    /*
     * A worker may have taken the backend out between the load and the store
     * (it sets passive_until_ns, then up = 0): look again, so that our store
     * cannot undo its. Sequentially consistent on both sides, so that either
     * this load sees its mark or its up = 0 comes after our store.
     */
    if (up && __atomic_load_n(&b->passive_until_ns, __ATOMIC_SEQ_CST) != 0)
        __atomic_store_n(&b->state.up, 0, __ATOMIC_SEQ_CST);
}

/*
 * A worker marked the backend down since the last look: with a checker, that
 * means down until `rise` probes pass; without one, until the cool-down ends.
 */
static void take_passive_trip(struct fc_gen_pool *pool, struct fc_backend_shared *b)
{
    if (!__atomic_exchange_n(&b->passive_tripped, 0, __ATOMIC_ACQ_REL))
        return;
    if (pool->health != NULL) {
        b->active.up = 0;
        b->active.passes = 0;
        __atomic_store_n(&b->passive_until_ns, 0, __ATOMIC_RELEASE);
    }
}

void fc_health_report_failure(struct fc_gen_pool *pool, uint32_t i, const char *what)
{
    fc_health_report_failure_at(pool, i, what, now_ns());
}

void fc_health_report_failure_at(struct fc_gen_pool *pool, uint32_t i, const char *what,
                                 uint64_t now)
{
    const struct fc_conf_pool *conf = pool->conf;
    struct fc_backend_shared *b = pool->shared[i];
    if (conf->max_fails == 0)
        return;
    uint32_t n = __atomic_add_fetch(&b->passive_failures, 1, __ATOMIC_RELAXED);
    if (n < conf->max_fails)
        return;
    /* Only the worker that takes the count back to zero reports the transition. */
    if (!__atomic_compare_exchange_n(&b->passive_failures, &n, 0, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    if (!__atomic_load_n(&b->state.up, __ATOMIC_RELAXED))
        return; /* already out */
    __atomic_store_n(&b->passive_until_ns, now + (uint64_t)conf->fail_timeout_ms * 1000000,
                     __ATOMIC_SEQ_CST);
    __atomic_store_n(&b->state.up, 0, __ATOMIC_SEQ_CST); /* see publish_up() */
    __atomic_store_n(&b->passive_tripped, 1, __ATOMIC_RELEASE);
    if (pool->health != NULL)
        fc_log_warn("pool %s: backend %s DOWN (%s, %u in a row; back when health checks pass)",
                    conf->name, pool->views[i].address, what, conf->max_fails);
    else
        fc_log_warn("pool %s: backend %s DOWN (%s, %u in a row; retried in %u ms)", conf->name,
                    pool->views[i].address, what, conf->max_fails, conf->fail_timeout_ms);
}

void fc_health_scan(struct fc_generation *g, uint64_t now)
{
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        struct fc_gen_pool *pool = &g->pools[p];
        for (uint32_t i = 0; i < pool->n_backends; i++) {
            struct fc_backend_shared *b = pool->shared[i];
            take_passive_trip(pool, b);
            uint64_t until = __atomic_load_n(&b->passive_until_ns, __ATOMIC_ACQUIRE);
            const char *why = "passive detection: requests failed";
            if (until != 0 && now >= until) {
                __atomic_store_n(&b->passive_until_ns, 0, __ATOMIC_RELEASE);
                fc_log_info("pool %s: backend %s UP (cool-down of %u ms over)", pool->conf->name,
                            pool->views[i].address, pool->conf->fail_timeout_ms);
                why = "passive detection: cool-down over";
            }
            publish_up(pool, b);
            observe(pool, i, why);
        }
    }
}

static void scan_cb(uv_timer_t *t)
{
    struct fc_health_run *run = t->data;
    fc_health_scan(run->g, now_ns());
}

static void run_release(struct fc_health_run *run)
{
    if (--run->open > 0)
        return;
    void (*done)(void *) = run->done;
    void *arg = run->done_arg;
    struct fc_generation *g = run->g;
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        struct fc_health_pool *hp = g->pools[p].checker;
        if (hp == NULL)
            continue;
        g->pools[p].checker = NULL;
        free(hp->probes);
        free(hp);
    }
    g->health_run = NULL;
    free(run);
    if (done != NULL)
        done(arg);
}

static void run_handle_closed(uv_handle_t *h)
{
    run_release(h->data);
}

/* The host's probe_done() of every checker instance; `owner` is its pool. */
static void probe_done(void *owner, struct fc_probe *probe, int ok, const char *reason)
{
    struct fc_gen_pool *pool = owner;
    if (pool->checker == NULL) {
        /* Its checker has stopped and every probe ended: `probe` is gone too. */
        fc_log_error("%s: probe_done() for a probe that is not in flight", pool->health->label);
        return;
    }
    struct fc_health_pool *hp = probe->hp;
    if (!probe->in_flight) {
        fc_log_error("%s: probe_done() called twice for one probe", pool->health->label);
        return;
    }
    probe->in_flight = 0;
    hp->in_flight--;
    struct fc_backend_shared *b = pool->shared[probe->backend];
    const struct fc_conf_health *hc = &pool->conf->health_conf;
    take_passive_trip(pool, b);
    enum fc_health_transition t = fc_health_apply(&b->active, ok, hc->rise, hc->fall);
    if (t == FC_HEALTH_WENT_DOWN)
        fc_log_warn("pool %s: backend %s DOWN (%s, %u of %u checks failed)", pool->conf->name,
                    pool->views[probe->backend].address, reason ? reason : "failed", hc->fall,
                    hc->fall);
    else if (t == FC_HEALTH_WENT_UP)
        fc_log_info("pool %s: backend %s UP (%u of %u checks passed)", pool->conf->name,
                    pool->views[probe->backend].address, hc->rise, hc->rise);
    else
        fc_log_debug("pool %s: backend %s check %s%s%s", pool->conf->name,
                     pool->views[probe->backend].address, ok ? "passed" : "failed", ok ? "" : ": ",
                     ok ? "" : (reason ? reason : ""));
    publish_up(pool, b);
    observe(pool, probe->backend,
            ok ? "health check passed" : (reason ? reason : "health check failed"));
    run_release(hp->run); /* a probe in flight was holding the run */
}

void fc_health_init(void)
{
    fc_generation_set_probe_done(probe_done);
}

/*
 * Each backend is probed interval_ms after its last probe began, whichever
 * generation's checker ran it (the time is kept with the backend's shared
 * state), so that the generations a runtime or DNS change makes, however
 * often, neither delay nor repeat a backend's probes; one new to the pool
 * (never probed) is due at once. The pool's timer is set for the next due
 * backend.
 */
static void tick_cb(uv_timer_t *t);

static void schedule_next(struct fc_health_pool *hp, uint64_t now)
{
    uint64_t every = hp->pool->conf->health_conf.interval_ms;
    uint64_t next = UINT64_MAX;
    for (uint32_t i = 0; i < hp->pool->n_backends; i++) {
        const struct fc_backend_shared *b = hp->pool->shared[i];
        if (hp->probes[i].in_flight || hp->pool->backends[i].admin == FC_BACKEND_MAINT)
            continue; /* one in flight is looked at again once it has ended */
        uint64_t due = b->probed_ms != 0 ? b->probed_ms + every : now;
        if (due < next)
            next = due;
    }
    if (next == UINT64_MAX)
        next = now + every;
    uv_timer_start(&hp->timer, tick_cb, next > now ? next - now : 0, 0);
}

static void tick_cb(uv_timer_t *t)
{
    struct fc_health_pool *hp = t->data;
    struct fc_health_run *run = hp->run;
    if (run->stopping)
        return;
    uint64_t now = uv_now(t->loop);
    uint64_t every = hp->pool->conf->health_conf.interval_ms;
    int all = hp->probe_all;
    hp->probe_all = 0;
    /* The run outlives this tick: the pool's timer holds it until its close callback. */
    const struct fc_instance *inst = hp->pool->health;
    const struct fc_health_ops *ops = inst->plugin->desc->health;
    for (uint32_t i = 0; i < hp->pool->n_backends; i++) {
        struct fc_probe *probe = &hp->probes[i];
        struct fc_backend_shared *b = hp->pool->shared[i];
        if (probe->in_flight)
            continue; /* still running: one probe per backend at a time */
        if (hp->pool->backends[i].admin == FC_BACKEND_MAINT)
            continue; /* in maintenance: left alone until it is ready again */
        if (!all && b->probed_ms != 0 && now < b->probed_ms + every)
            continue; /* not due yet */
        b->probed_ms = now != 0 ? now : 1;
        probe->in_flight = 1;
        hp->in_flight++;
        run->open++;
        int rc = ops->probe(inst->state, &hp->pool->views[i],
                            hp->pool->conf->health_conf.timeout_ms, probe);
        if (rc != 0 && probe->in_flight)
            probe_done(hp->pool, probe, 0, "the probe could not start");
    }
    if (!run->stopping)
        schedule_next(hp, now);
}

/* The checker of a pool with a health instance: one probe slot per backend. */
static struct fc_health_pool *checker_new(struct fc_gen_pool *pool, struct fc_health_run *run)
{
    struct fc_health_pool *hp = calloc(1, sizeof(*hp));
    if (hp == NULL)
        return NULL;
    hp->pool = pool;
    hp->run = run;
    hp->probes = calloc(pool->n_backends ? pool->n_backends : 1, sizeof(*hp->probes));
    if (hp->probes == NULL) {
        free(hp);
        return NULL;
    }
    for (uint32_t i = 0; i < pool->n_backends; i++) {
        hp->probes[i].hp = hp;
        hp->probes[i].backend = i;
    }
    return hp;
}

int fc_health_start(struct fc_generation *g, uv_loop_t *loop, int at_once)
{
    struct fc_health_run *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return FC_ENOMEM;
    run->g = g;
    run->open = 1; /* the scan timer */
    uv_timer_init(loop, &run->scan);
    run->scan.data = run;
    uv_timer_start(&run->scan, scan_cb, SCAN_INTERVAL_MS, SCAN_INTERVAL_MS);
    uv_unref((uv_handle_t *)&run->scan);
    g->health_run = run;
    int rc = 0;
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        struct fc_gen_pool *pool = &g->pools[p];
        if (pool->health == NULL)
            continue;
        struct fc_health_pool *hp = checker_new(pool, run);
        if (hp == NULL) {
            fc_log_error("pool %s: out of memory: health checks not started", pool->conf->name);
            rc = FC_ENOMEM;
            continue;
        }
        pool->checker = hp;
        run->open++;
        uv_timer_init(loop, &hp->timer);
        hp->timer.data = hp;
        /*
         * A start or reload probes every backend at once, so that an
         * initially down backend soon comes up; a runtime or DNS change goes
         * on with each backend's schedule (schedule_next()).
         */
        hp->probe_all = at_once;
        if (at_once)
            uv_timer_start(&hp->timer, tick_cb, 0, 0);
        else
            schedule_next(hp, uv_now(loop));
    }
    return rc;
}

static void pool_timer_closed(uv_handle_t *h)
{
    struct fc_health_pool *hp = h->data;
    struct fc_health_run *run = hp->run;
    run_release(run);
}

void fc_health_stop(struct fc_generation *g, void (*done)(void *arg), void *arg)
{
    struct fc_health_run *run = g->health_run;
    if (run == NULL) {
        if (done != NULL)
            done(arg);
        return;
    }
    run->stopping = 1;
    run->done = done;
    run->done_arg = arg;
    /* Hold the run while closing, so done() cannot run before the last close is queued. */
    run->open++;
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        struct fc_health_pool *hp = g->pools[p].checker;
        if (hp != NULL)
            uv_close((uv_handle_t *)&hp->timer, pool_timer_closed);
    }
    uv_close((uv_handle_t *)&run->scan, run_handle_closed);
    run_release(run);
}
