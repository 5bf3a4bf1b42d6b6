/*
 * `fulcrum plugin-check` for a rate limiter: one instance, shared by THREADS
 * worker threads as the daemon shares it, each with a libuv loop of its own
 * (plugin_check_run.h).
 *
 * Each thread runs worker_start() on its loop, then CHECKS checks as fast
 * as they come over KEYS keys that every thread uses, running its loop
 * between them so that a verdict left pending (FC_RATELIMIT_PENDING) can
 * come; then it waits for the verdicts still out. The checks are judged
 * against the ABI: a verdict is ALLOW, DENY or PENDING, and a pending one
 * comes through ratelimit_done() exactly once, on the thread that asked,
 * within PENDING_LIMIT_MS. A thread keeps at most OUTSTANDING_MAX verdicts
 * out at once, as a worker with that many requests waiting would: a limiter
 * that asks a server is tested at a pace the server can answer. Once every
 * thread is done, the first one tests Retry-After on a key no other thread
 * uses: it asks, one check at a time, until a check is denied, waits the
 * Retry-After that denial said and asks again, which must then pass. Then
 * each thread runs worker_stop(), which must leave no handle on its loop.
 */
#include "http_request.h"
#include "plugin_check_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define CHECKS 5000u /* a thread's, at scale 100 */
#define KEYS 16
#define OUTSTANDING_MAX 256
#define RETRY_PROBES 10000 /* checks of the Retry-After key before giving up on a denial */
#define PENDING_LIMIT_MS 10000
#define RETRY_WAIT_MAX_MS 5000
#define RETRY_SLACK_MS 20
#define STOP_LIMIT_MS 2000

struct rl_check;

struct rl_worker {
    struct rl_run *run;
    uint32_t index;
    uv_thread_t thread, self;
    uv_loop_t loop;
    int loop_ready;
    uv_timer_t timer; /* waits: for the verdicts still out, for a Retry-After */
    int timer_fired;
    struct rl_check *checks; /* one a check, so that each pending one has its handle */
    uint32_t n_checks;
    uint64_t outstanding;
    int in_check; /* inside check(): a verdict may not come through ratelimit_done() now */
    /* figures */
    uint64_t allowed[KEYS], denied, pending, zero_retry;
    uint64_t retry_min, retry_max, retry_sum;
    uint64_t check_ns;
};

struct rl_check {
    struct rl_worker *w;
    uint32_t key;
    int done;
    int tally; /* counted in the burst's figures */
    int verdict;
    uint64_t retry_after_ms;
};

struct rl_run {
    struct fc_check *c;
    struct fc_instance inst;
    const struct fc_ratelimit_ops *ops;
    struct rl_worker workers[THREADS];
    uv_barrier_t burst_done, retry_done;
    uint32_t checks;
    struct fc_request req;
    char keys[KEYS + 1][32]; /* the last one is the Retry-After test's alone */
    struct rl_check probe;   /* the Retry-After test's checks, one at a time */
    char retry_line[256];
};

static void count_verdict(struct rl_worker *w, uint32_t key, int verdict, uint64_t retry_after_ms)
{
    if (verdict == FC_RATELIMIT_ALLOW) {
        w->allowed[key]++;
        return;
    }
    w->denied++;
    if (retry_after_ms == 0)
        w->zero_retry++;
    if (w->denied == 1 || retry_after_ms < w->retry_min)
        w->retry_min = retry_after_ms;
    if (retry_after_ms > w->retry_max)
        w->retry_max = retry_after_ms;
    w->retry_sum += retry_after_ms;
}

/* The host's ratelimit_done(), for a verdict that check() left pending. */
static void on_ratelimit_done(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                              uint64_t retry_after_ms)
{
    struct rl_run *run = owner;
    struct rl_check *ck = (struct rl_check *)(void *)pending;
    struct rl_worker *w = ck->w;
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &w->self)) {
        fc_check_fail(run->c,
                      "ratelimit_done() came on another thread than the check() of "
                      "worker %u",
                      w->index);
        return;
    }
    if (w->in_check) {
        fc_check_fail(run->c, "ratelimit_done() came inside check(): a pending verdict must "
                              "come later, from the loop");
        return;
    }
    if (ck->done) {
        fc_check_fail(run->c, "ratelimit_done() came twice for one pending check of worker %u",
                      w->index);
        return;
    }
    ck->done = 1;
    ck->verdict = verdict;
    ck->retry_after_ms = retry_after_ms;
    w->outstanding--;
    if (verdict != FC_RATELIMIT_ALLOW && verdict != FC_RATELIMIT_DENY) {
        fc_check_fail(run->c,
                      "ratelimit_done() gave the verdict %d: expected "
                      "FC_RATELIMIT_ALLOW or FC_RATELIMIT_DENY",
                      verdict);
        return;
    }
    if (ck->tally)
        count_verdict(w, ck->key, verdict, retry_after_ms);
}

/*
 * One check of `key` through the handle ck. Returns the verdict, or -1 after
 * recording a failure.
 */
static int check_with(struct rl_worker *w, struct rl_check *ck, uint32_t key, int tally,
                      uint64_t *retry_after_ms)
{
    struct rl_run *run = w->run;
    *ck = (struct rl_check){.w = w, .key = key, .tally = tally};
    struct fc_ratelimit_args args = {.size = sizeof(args),
                                     .worker = w->index,
                                     .loop = &w->loop,
                                     .key = run->keys[key],
                                     .key_len = strlen(run->keys[key]),
                                     .request = &run->req,
                                     .pending = (struct fc_ratelimit_pending *)(void *)ck};
    *retry_after_ms = 0;
    uint64_t t0 = uv_hrtime();
    w->in_check = 1;
    int verdict = run->ops->check(run->inst.state, &args, retry_after_ms);
    w->in_check = 0;
    w->check_ns += uv_hrtime() - t0;
    switch (verdict) {
    case FC_RATELIMIT_ALLOW:
    case FC_RATELIMIT_DENY:
        ck->done = 1;
        ck->verdict = verdict;
        ck->retry_after_ms = *retry_after_ms;
        if (tally)
            count_verdict(w, key, verdict, *retry_after_ms);
        return verdict;
    case FC_RATELIMIT_PENDING:
        w->pending += (uint64_t)tally;
        w->outstanding++;
        return verdict;
    default:
        return fc_check_fail(run->c,
                             "check() returned %d: not a verdict (ALLOW 0, DENY 1, "
                             "PENDING 2)",
                             verdict);
    }
}

/* One check of the burst, counted in its figures. */
static int check_key(struct rl_worker *w, uint32_t key)
{
    if (w->n_checks == w->run->checks)
        return fc_check_fail(w->run->c, "the exercise ran out of check handles");
    uint64_t retry;
    return check_with(w, &w->checks[w->n_checks++], key, 1, &retry);
}

static void on_timer(uv_timer_t *t)
{
    ((struct rl_worker *)t->data)->timer_fired = 1;
}

/*
 * Runs the worker's loop until at most `left` verdicts are still out, or
 * fails when none came for PENDING_LIMIT_MS.
 */
static int wait_pending(struct rl_worker *w, uint64_t left)
{
    if (w->outstanding <= left)
        return 0;
    w->timer_fired = 0;
    uv_update_time(&w->loop);
    uv_timer_start(&w->timer, on_timer, PENDING_LIMIT_MS, 0);
    while (w->outstanding > left && !w->timer_fired && !fc_check_failed(w->run->c))
        uv_run(&w->loop, UV_RUN_ONCE);
    uv_timer_stop(&w->timer);
    if (w->outstanding > left)
        return fc_check_fail(w->run->c,
                             "worker %u: %llu pending checks got no verdict within %d ms "
                             "(ratelimit_done() never came)",
                             w->index, (unsigned long long)w->outstanding, PENDING_LIMIT_MS);
    return 0;
}

/* Runs the worker's loop for ms milliseconds. */
static void run_for(struct rl_worker *w, uint64_t ms)
{
    w->timer_fired = 0;
    /* The loop's clock stood still while this thread waited at the barrier. */
    uv_update_time(&w->loop);
    uv_timer_start(&w->timer, on_timer, ms, 0);
    while (!w->timer_fired)
        uv_run(&w->loop, UV_RUN_ONCE);
}

/* One check of the Retry-After key, waited for. Returns the verdict, or -1. */
static int probe(struct rl_worker *w, uint64_t *retry_after_ms)
{
    struct rl_check *ck = &w->run->probe;
    uint64_t retry = 0;
    int verdict = check_with(w, ck, KEYS, 0, &retry);
    if (verdict < 0 || wait_pending(w, 0) != 0 || !ck->done)
        return -1;
    *retry_after_ms = ck->retry_after_ms;
    return ck->verdict;
}

/*
 * The first worker, once every worker is done: asks for a key of its own
 * until a check is denied, waits the Retry-After it said, and asks again.
 */
static void test_retry_after(struct rl_run *run)
{
    struct rl_worker *w = &run->workers[0];
    const char *key = run->keys[KEYS];
    uint64_t wait = 0;
    int verdict = FC_RATELIMIT_ALLOW, n = 0;
    while (verdict == FC_RATELIMIT_ALLOW && n < RETRY_PROBES) {
        verdict = probe(w, &wait);
        n++;
    }
    if (verdict < 0)
        return;
    if (verdict == FC_RATELIMIT_ALLOW) {
        snprintf(run->retry_line, sizeof(run->retry_line),
                 "  key %s was allowed %d times in a row: Retry-After is not tested", key, n);
        return;
    }
    if (wait > RETRY_WAIT_MAX_MS) {
        snprintf(run->retry_line, sizeof(run->retry_line),
                 "  key %s: denied after %d checks with Retry-After %llu ms, longer than "
                 "plugin-check waits (%d ms)",
                 key, n, (unsigned long long)wait, RETRY_WAIT_MAX_MS);
        return;
    }
    run_for(w, wait + RETRY_SLACK_MS);
    uint64_t again = 0;
    verdict = probe(w, &again);
    if (verdict < 0)
        return;
    if (verdict != FC_RATELIMIT_ALLOW) {
        fc_check_fail(run->c,
                      "key %s was denied again %llu ms after a denial said Retry-After %llu "
                      "ms (with no other check of that key between)",
                      key, (unsigned long long)(wait + RETRY_SLACK_MS), (unsigned long long)wait);
        return;
    }
    snprintf(run->retry_line, sizeof(run->retry_line),
             "  key %s: denied after %d checks in a row, asked again %llu ms after its "
             "Retry-After of %llu ms: allowed",
             key, n, (unsigned long long)(wait + RETRY_SLACK_MS), (unsigned long long)wait);
}

/* Whether only handles that are closing are left on the loop; counts the others. */
static void count_open(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        (*(int *)arg)++;
}

/* After worker_stop(): the loop's handles close, and the loop with them. */
static int close_loop(struct rl_worker *w)
{
    uv_close((uv_handle_t *)&w->timer, NULL);
    uint64_t deadline = uv_hrtime() + (uint64_t)STOP_LIMIT_MS * 1000000;
    while (uv_loop_alive(&w->loop) && uv_hrtime() < deadline) {
        int open = 0;
        uv_walk(&w->loop, count_open, &open);
        if (open > 0)
            break; /* an open handle: running on would wait for it */
        uv_run(&w->loop, UV_RUN_NOWAIT);
    }
    int open = 0;
    uv_walk(&w->loop, count_open, &open);
    /* Left open or not, the loop is done with: nothing runs it again. */
    w->loop_ready = 0;
    if (open > 0 || uv_loop_close(&w->loop) != 0)
        return fc_check_fail(w->run->c, "worker_stop() left %d handles open on worker %u's loop",
                             open, w->index);
    return 0;
}

static void worker_main(void *arg)
{
    struct rl_worker *w = arg;
    struct rl_run *run = w->run;
    w->self = uv_thread_self();
    int started = 0;
    if (run->ops->worker_start != NULL) {
        int rc = run->ops->worker_start(run->inst.state, w->index, &w->loop);
        if (rc < 0)
            fc_check_fail(run->c, "worker_start() failed on worker %u (returned %d)", w->index, rc);
        started = rc >= 0;
    } else {
        started = 1;
    }
    for (uint32_t i = 0; started && i < run->checks && !fc_check_failed(run->c); i++) {
        if (check_key(w, (i * 7 + w->index) % KEYS) < 0)
            break;
        if (i % 64 == 63)
            uv_run(&w->loop, UV_RUN_NOWAIT);
        if (wait_pending(w, OUTSTANDING_MAX - 1) != 0)
            break;
    }
    if (started)
        wait_pending(w, 0);
    uv_barrier_wait(&run->burst_done);
    if (w->index == 0 && started && !fc_check_failed(run->c))
        test_retry_after(run);
    uv_barrier_wait(&run->retry_done);
    if (started && run->ops->worker_stop != NULL)
        run->ops->worker_stop(run->inst.state, w->index, &w->loop);
    if (w->outstanding > 0)
        fc_check_fail(run->c, "worker_stop() on worker %u left %llu checks without a verdict",
                      w->index, (unsigned long long)w->outstanding);
    close_loop(w);
}

static void report(struct rl_run *run)
{
    struct fc_check *c = run->c;
    uint64_t allowed = 0, denied = 0, pending = 0, zero = 0, ns = 0, sum = 0;
    uint64_t rmin = 0, rmax = 0, kmin = UINT64_MAX, kmax = 0;
    for (int i = 0; i < THREADS; i++) {
        const struct rl_worker *w = &run->workers[i];
        denied += w->denied;
        pending += w->pending;
        zero += w->zero_retry;
        ns += w->check_ns;
        sum += w->retry_sum;
        if (w->denied > 0 && (rmin == 0 || w->retry_min < rmin))
            rmin = w->retry_min;
        if (w->retry_max > rmax)
            rmax = w->retry_max;
    }
    for (int k = 0; k < KEYS; k++) {
        uint64_t n = 0;
        for (int i = 0; i < THREADS; i++)
            n += run->workers[i].allowed[k];
        allowed += n;
        kmin = n < kmin ? n : kmin;
        kmax = n > kmax ? n : kmax;
    }
    uint64_t total = (uint64_t)THREADS * run->checks;
    fc_check_say(c, "ratelimit: %d worker threads, a loop each, %u checks each at full speed",
                 THREADS, run->checks);
    fc_check_say(c, "  over %d keys that every thread uses", KEYS);
    fc_check_say(c, "  allowed %llu, denied %llu; %llu of them came later (PENDING)",
                 (unsigned long long)allowed, (unsigned long long)denied,
                 (unsigned long long)pending);
    fc_check_say(c, "  check() took %.0f ns on average", total > 0 ? (double)ns / total : 0.0);
    fc_check_say(c, "  allowed per key: %llu to %llu", (unsigned long long)kmin,
                 (unsigned long long)kmax);
    if (denied > 0)
        fc_check_say(c, "  Retry-After of the denials: %llu ms to %llu ms, %.0f ms on average",
                     (unsigned long long)rmin, (unsigned long long)rmax,
                     (double)sum / (double)denied);
    else
        fc_check_warn(c, "no check was denied: with a lower rate (rate=10 burst=5, say) the "
                         "denials and their Retry-After are checked too");
    if (zero > 0)
        fc_check_warn(c, "%llu denials said Retry-After 0 ms: a client is told to retry at once",
                      (unsigned long long)zero);
    if (run->retry_line[0] != '\0')
        fc_check_say(c, "%s", run->retry_line);
    fc_check_say(c, "%s", "");
}

int fc_check_ratelimit(struct fc_check *c)
{
    struct rl_run *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return fc_check_fail(c, "out of memory");
    run->c = c;
    run->ops = c->plugin->desc->ratelimit;
    run->checks = CHECKS * c->scale / 100;
    for (int k = 0; k < KEYS; k++)
        snprintf(run->keys[k], sizeof(run->keys[k]), "198.51.100.%d", k + 1);
    snprintf(run->keys[KEYS], sizeof(run->keys[KEYS]), "203.0.113.1");
    run->req.method = (struct fc_span){"GET", 3};
    run->req.target = (struct fc_span){"/", 1};
    run->req.http_major = run->req.http_minor = 1;

    struct fc_instance_hooks hooks = {.owner = run,
                                      .worker_count = THREADS,
                                      .ratelimit_done = on_ratelimit_done,
                                      .pool_name = "check"};
    char label[96];
    snprintf(label, sizeof(label), "pool check: rate_limit %s", c->plugin->desc->name);
    int rc = fc_check_create(c, &run->inst, NULL, &hooks, label);
    int threads = 0;
    if (rc == 0) {
        uv_barrier_init(&run->burst_done, THREADS);
        uv_barrier_init(&run->retry_done, THREADS);
        for (int i = 0; i < THREADS && rc == 0; i++) {
            struct rl_worker *w = &run->workers[i];
            *w = (struct rl_worker){.run = run, .index = (uint32_t)i};
            w->checks = calloc(run->checks, sizeof(*w->checks));
            if (w->checks == NULL || uv_loop_init(&w->loop) != 0)
                rc = fc_check_fail(c, "out of memory");
            else {
                w->loop_ready = 1;
                uv_timer_init(&w->loop, &w->timer);
                w->timer.data = w;
            }
        }
        while (rc == 0 && threads < THREADS) {
            if (uv_thread_create(&run->workers[threads].thread, worker_main,
                                 &run->workers[threads]) != 0)
                rc = fc_check_fail(c, "cannot start a thread");
            else
                threads++;
        }
        if (threads < THREADS && threads > 0) {
            /* The threads that started wait at the barrier for good: the process ends with
             * them, and their memory is left to it. */
            return FC_ERROR;
        }
        for (int i = 0; i < threads; i++)
            uv_thread_join(&run->workers[i].thread);
        uv_barrier_destroy(&run->burst_done);
        uv_barrier_destroy(&run->retry_done);
        if (!fc_check_failed(c))
            report(run);
        fc_instance_destroy(&run->inst);
    }
    for (int i = 0; i < THREADS; i++) {
        struct rl_worker *w = &run->workers[i];
        if (w->loop_ready) { /* its thread never ran */
            uv_close((uv_handle_t *)&w->timer, NULL);
            uv_run(&w->loop, UV_RUN_NOWAIT);
            uv_loop_close(&w->loop);
        }
        free(w->checks);
    }
    free(run);
    return fc_check_failed(c) ? FC_ERROR : 0;
}
