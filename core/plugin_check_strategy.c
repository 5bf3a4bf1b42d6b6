/*
 * `fulcrum plugin-check` for a strategy: a simulation of the request path
 * on a virtual clock, with the plugin's own instances, one per simulated
 * worker, created through the real host (plugin_check_run.h).
 *
 * A request arrives every ARRIVAL_NS from one of CLIENTS clients, each with
 * its own address, an X-User header, a target of its own and a cookie jar
 * that keeps what the strategy's Set-Cookie lines gave it (as a browser
 * does). The request's worker picks its backend; the backend answers after
 * its synthetic latency (the first one is slow), which is when the in-flight
 * count the plugin sees drops and outcome() hears of it, with the latency
 * and status 200, or status 0 when the backend went down meanwhile. One
 * request in RETRY_EVERY first fails to connect: outcome() hears status 0
 * and the request is picked again with that backend marked tried, as the
 * core retries.
 *
 * Four phases, as a pool meets them: every backend up; the second one down
 * (its health check failed); the fourth one drained, which for a strategy
 * means a new instance over a pool view without it, while the old instances
 * live on until their requests finished, as at a reload; every backend
 * down. Picks are checked against the ABI (an index of the pool or
 * FC_ENOBACKEND, never a backend that is down or was tried) and the
 * distribution of each phase is reported.
 */
#include "http_request.h"
#include "plugin_check_run.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WORKERS 2
#define CLIENTS 1000
#define ARRIVAL_NS 100000ull /* 10,000 requests a second */
#define PICKS 100000u        /* a phase's requests, at scale 100 */
#define ALL_DOWN_PICKS 1000u
#define RETRY_EVERY 100u
#define MAX_INFLIGHT 8192u
#define COOKIES 4
#define CONNECT_FAIL_US 1000u

/* Synthetic latency of each backend: the first is slow. Each answer varies by +-20 %. */
static const uint32_t latency_ms[FC_CHECK_BACKENDS] = {20, 5, 5, 5};

struct client {
    struct sockaddr_in addr;
    char user[16];              /* "user-17" */
    char target[48];            /* "/c/17?user=17" */
    char cookies[COOKIES][160]; /* "name=value", from Set-Cookie */
    int n_cookies;
    int last; /* the backend of its last request, -1 before its first */
};

struct answer {
    uint64_t done_ns, start_ns;
    uint32_t backend; /* the pool's index: every view is a prefix of the four */
    uint8_t gen, worker;
};

/* The instances over one pool view, one a worker, as a generation holds them. */
struct gen {
    struct fc_instance inst[WORKERS];
    int created;
    int retired; /* destroyed once its last request answered */
    uint32_t inflight;
    struct fc_pool_view view;
};

/* A phase's figures. */
struct tally {
    uint64_t picks[FC_CHECK_BACKENDS];
    uint64_t refused, retries, retries_refused, moved, returning, added;
    uint64_t pick_ns, timed;
    char added_names[4][64];
    uint64_t added_counts[4];
};

struct sim {
    struct fc_check *c;
    uint64_t now, rng, seq;
    struct fc_backend_state states[FC_CHECK_BACKENDS];
    struct sockaddr_storage addrs[FC_CHECK_BACKENDS];
    struct fc_backend_view views[FC_CHECK_BACKENDS];
    const char *drained; /* the address drained, once phase 3 began */
    struct gen gens[2];
    int current; /* the generation new requests go to */
    struct answer heap[MAX_INFLIGHT];
    uint32_t n_heap;
    struct client clients[CLIENTS];
    struct fc_request req;
    struct fc_added_headers added;
    char cookie[COOKIES * 160 + 32];
    struct tally t;
};

static uint64_t sim_now(void *owner)
{
    return ((struct sim *)owner)->now;
}

/* xorshift64*: the same sequence on every run, so that runs can be compared. */
static uint64_t next_random(struct sim *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545f4914f6cdd1dull;
}

/* ---- the answers still to come, a min-heap on done_ns ---- */

static void heap_push(struct sim *s, struct answer a)
{
    uint32_t i = s->n_heap++;
    while (i > 0 && s->heap[(i - 1) / 2].done_ns > a.done_ns) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = a;
}

static struct answer heap_pop(struct sim *s)
{
    struct answer top = s->heap[0], last = s->heap[--s->n_heap];
    uint32_t i = 0;
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= s->n_heap)
            break;
        if (child + 1 < s->n_heap && s->heap[child + 1].done_ns < s->heap[child].done_ns)
            child++;
        if (s->heap[child].done_ns >= last.done_ns)
            break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    if (s->n_heap > 0)
        s->heap[i] = last;
    return top;
}

/* ---- generations ---- */

static int gen_create(struct sim *s, int g, uint32_t n_backends)
{
    struct gen *gen = &s->gens[g];
    gen->view =
        (struct fc_pool_view){.name = "check", .n_backends = n_backends, .backends = s->views};
    struct fc_instance_hooks hooks = {
        .owner = s, .worker_count = WORKERS, .now_ns = sim_now, .pool_name = "check"};
    for (int w = 0; w < WORKERS; w++) {
        char label[96];
        snprintf(label, sizeof(label), "pool check: strategy %s (worker %d)",
                 s->c->plugin->desc->name, w);
        if (fc_check_create(s->c, &gen->inst[w], &gen->view, &hooks, label) != 0) {
            while (w-- > 0)
                fc_instance_destroy(&gen->inst[w]);
            return FC_ERROR;
        }
    }
    gen->created = 1;
    gen->retired = 0;
    gen->inflight = 0;
    return 0;
}

static void gen_destroy(struct sim *s, int g)
{
    struct gen *gen = &s->gens[g];
    if (!gen->created)
        return;
    for (int w = 0; w < WORKERS; w++)
        fc_instance_destroy(&gen->inst[w]);
    gen->created = 0;
}

/* ---- answers ---- */

static void answer(struct sim *s, const struct answer *a)
{
    struct gen *gen = &s->gens[a->gen];
    s->now = a->done_ns;
    s->states[a->backend].inflight--;
    gen->inflight--;
    void (*outcome)(void *, uint32_t, int, uint64_t) = s->c->plugin->desc->strategy->outcome;
    if (outcome != NULL) {
        int status = s->states[a->backend].up ? 200 : 0; /* down meanwhile: reset */
        outcome(gen->inst[a->worker].state, a->backend, status, (a->done_ns - a->start_ns) / 1000);
    }
    if (gen->retired && gen->inflight == 0)
        gen_destroy(s, a->gen);
}

/* Answers every request due by `until`, in order, then sets the clock to it. */
static void answer_until(struct sim *s, uint64_t until)
{
    while (s->n_heap > 0 && s->heap[0].done_ns <= until) {
        struct answer a = heap_pop(s);
        answer(s, &a);
    }
    s->now = until;
}

/* ---- requests ---- */

static void add_header(struct fc_request *req, const char *name, const char *value)
{
    struct fc_header *h = &req->headers[req->n_headers++];
    *h = (struct fc_header){.name = {name, (uint32_t)strlen(name)},
                            .value = {value, (uint32_t)strlen(value)},
                            .value_done = 1};
}

/* The request `cl` sends now: its target, its headers, its cookies. */
static void build_request(struct sim *s, const struct client *cl)
{
    struct fc_request *req = &s->req;
    req->method = (struct fc_span){"GET", 3};
    req->target = (struct fc_span){cl->target, (uint32_t)strlen(cl->target)};
    req->host = (struct fc_span){"check.example", 13};
    req->http_major = 1;
    req->http_minor = 1;
    req->n_headers = 0;
    add_header(req, "Host", "check.example");
    add_header(req, "User-Agent", "fulcrum-plugin-check");
    add_header(req, "X-User", cl->user);
    size_t used = (size_t)snprintf(s->cookie, sizeof(s->cookie), "session=s%s", cl->user + 5);
    for (int i = 0; i < cl->n_cookies && used < sizeof(s->cookie); i++)
        used +=
            (size_t)snprintf(s->cookie + used, sizeof(s->cookie) - used, "; %s", cl->cookies[i]);
    add_header(req, "Cookie", s->cookie);
    s->added.len = 0;
    req->added = &s->added;
}

/* Keeps a Set-Cookie value's "name=value" in the client's jar, or drops it for Max-Age=0. */
static void take_cookie(struct client *cl, const char *v, size_t len)
{
    const char *semi = memchr(v, ';', len);
    size_t pair = semi != NULL ? (size_t)(semi - v) : len;
    const char *eq = memchr(v, '=', pair);
    if (eq == NULL || pair >= sizeof(cl->cookies[0]))
        return;
    size_t name_len = (size_t)(eq - v) + 1; /* with the '=' */
    int expired = 0;
    for (const char *a = v + pair; a + 10 <= v + len; a++)
        if (strncasecmp(a, "Max-Age=0", 9) == 0 && (a + 9 == v + len || a[9] == ';'))
            expired = 1;
    int i = 0;
    while (i < cl->n_cookies && strncmp(cl->cookies[i], v, name_len) != 0)
        i++;
    if (expired) {
        if (i < cl->n_cookies)
            memcpy(cl->cookies[i], cl->cookies[--cl->n_cookies], sizeof(cl->cookies[0]));
        return;
    }
    if (i == cl->n_cookies) {
        if (cl->n_cookies == COOKIES)
            return;
        cl->n_cookies++;
    }
    memcpy(cl->cookies[i], v, pair);
    cl->cookies[i][pair] = '\0';
}

/* What the pick added to the response: counted by name, and cookies kept. */
static void take_added(struct sim *s, struct client *cl)
{
    if (s->added.len == 0)
        return;
    s->t.added++;
    const char *p = s->added.buf, *end = s->added.buf + s->added.len;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol)
            break;
        size_t name_len = (size_t)(colon - p);
        int k = 0;
        while (k < 4 && s->t.added_names[k][0] != '\0' &&
               (strlen(s->t.added_names[k]) != name_len ||
                strncasecmp(s->t.added_names[k], p, name_len) != 0))
            k++;
        if (k < 4) {
            if (s->t.added_names[k][0] == '\0')
                snprintf(s->t.added_names[k], sizeof(s->t.added_names[k]), "%.*s", (int)name_len,
                         p);
            s->t.added_counts[k]++;
        }
        if (name_len == 10 && strncasecmp(p, "Set-Cookie", 10) == 0)
            take_cookie(cl, colon + 2, (size_t)(eol - colon - 2));
        p = eol + 2;
    }
}

/*
 * Checks what pick() returned against the ABI. Returns 0 for a backend, 1
 * for FC_ENOBACKEND, or FC_ERROR after recording the failure.
 */
static int check_pick(struct sim *s, int rc, const uint8_t *tried)
{
    const struct gen *gen = &s->gens[s->current];
    if (rc == FC_ENOBACKEND)
        return 1;
    if (rc < 0)
        return fc_check_fail(s->c,
                             "pick() returned %d: neither a backend's index nor "
                             "FC_ENOBACKEND",
                             rc);
    if ((uint32_t)rc >= gen->view.n_backends)
        return fc_check_fail(s->c, "pick() returned %d, but the pool has %u backends%s%s%s", rc,
                             gen->view.n_backends, s->drained != NULL ? " (" : "",
                             s->drained != NULL ? s->drained : "",
                             s->drained != NULL ? " was drained: a new pool view without it)" : "");
    if (!s->states[rc].up)
        return fc_check_fail(s->c, "pick() chose %s, which is down",
                             fc_check_address((uint32_t)rc));
    if (tried != NULL && tried[rc])
        return fc_check_fail(s->c,
                             "pick() chose %s again for a request whose connect to it had just "
                             "failed (fc_pick_args.tried marks it)",
                             fc_check_address((uint32_t)rc));
    return 0;
}

static int timed_pick(struct sim *s, const struct fc_pick_args *args)
{
    const struct fc_instance *inst = &s->gens[s->current].inst[args->worker];
    s->added.open = 1;
    uint64_t t0 = uv_hrtime();
    int rc = s->c->plugin->desc->strategy->pick(inst->state, args);
    s->t.pick_ns += uv_hrtime() - t0;
    s->t.timed++;
    s->added.open = 0;
    return rc;
}

/*
 * A pick for cl's request, checked (check_pick()); what it added to the
 * response is taken in. Returns the backend, FC_ENOBACKEND (counted in
 * *refused), or FC_ERROR.
 */
static int checked_pick(struct sim *s, struct client *cl, const struct fc_pick_args *args,
                        const uint8_t *tried, uint64_t *refused)
{
    int rc = timed_pick(s, args);
    int got = check_pick(s, rc, tried);
    if (got < 0)
        return FC_ERROR;
    if (got == 1) {
        (*refused)++;
        return FC_ENOBACKEND;
    }
    take_added(s, cl);
    return rc;
}

/* One request: arrives, is picked for (and maybe retried), and goes in flight. */
static int one_request(struct sim *s)
{
    answer_until(s, s->now + ARRIVAL_NS);
    struct client *cl = &s->clients[next_random(s) % CLIENTS];
    uint32_t worker = (uint32_t)(s->seq++ % WORKERS);
    build_request(s, cl);
    uint8_t tried[FC_CHECK_BACKENDS] = {0};
    struct fc_pick_args args = {.size = sizeof(args),
                                .worker = worker,
                                .request = &s->req,
                                .client = (const struct sockaddr *)&cl->addr,
                                .client_len = sizeof(cl->addr),
                                .tried = tried};
    int rc = checked_pick(s, cl, &args, NULL, &s->t.refused);
    if (rc < 0)
        return rc == FC_ENOBACKEND ? 0 : FC_ERROR;
    struct gen *gen = &s->gens[s->current];
    if (next_random(s) % RETRY_EVERY == 0) {
        /* The connect failed: told at once, then a pick of its own elsewhere. */
        void (*outcome)(void *, uint32_t, int, uint64_t) = s->c->plugin->desc->strategy->outcome;
        if (outcome != NULL)
            outcome(gen->inst[worker].state, (uint32_t)rc, 0, CONNECT_FAIL_US);
        tried[rc] = 1;
        s->t.retries++;
        build_request(s, cl);
        rc = checked_pick(s, cl, &args, tried, &s->t.retries_refused);
        if (rc < 0)
            return rc == FC_ENOBACKEND ? 0 : FC_ERROR;
    }
    uint32_t b = (uint32_t)rc;
    s->t.picks[b]++;
    if (cl->last >= 0) {
        s->t.returning++;
        s->t.moved += cl->last != (int)b;
    }
    cl->last = (int)b;
    if (s->n_heap == MAX_INFLIGHT)
        return fc_check_fail(s->c, "the simulation ran out of room: %u requests in flight",
                             MAX_INFLIGHT);
    uint64_t latency = (uint64_t)latency_ms[b] * 1000000ull;
    latency = latency * (80 + next_random(s) % 41) / 100;
    s->states[b].inflight++;
    gen->inflight++;
    heap_push(s, (struct answer){.done_ns = s->now + latency,
                                 .start_ns = s->now,
                                 .backend = b,
                                 .gen = (uint8_t)s->current,
                                 .worker = (uint8_t)worker});
    return 0;
}

/* ---- the report ---- */

static double percent(uint64_t part, uint64_t whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

static void report_phase(struct sim *s, const char *title, uint64_t requests)
{
    struct fc_check *c = s->c;
    const struct tally *t = &s->t;
    uint64_t placed = 0;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        placed += t->picks[i];
    fc_check_say(c, "%s: %llu requests, %.0f ns a pick()", title, (unsigned long long)requests,
                 t->timed > 0 ? (double)t->pick_ns / (double)t->timed : 0.0);
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++) {
        const char *state = s->drained == fc_check_address(i) ? "drained"
                            : s->states[i].up                 ? "up"
                                                              : "down";
        char bar[41];
        int n = (int)(percent(t->picks[i], placed) * 40 / 100 + 0.5);
        memset(bar, '#', (size_t)n);
        bar[n] = '\0';
        fc_check_say(c, "  %-16s %-7s %3u ms  %7llu  %5.1f %%  %s", fc_check_address(i), state,
                     latency_ms[i], (unsigned long long)t->picks[i], percent(t->picks[i], placed),
                     bar);
    }
    fc_check_say(c, "  refused (FC_ENOBACKEND): %llu", (unsigned long long)t->refused);
    if (t->retries > 0)
        fc_check_say(c,
                     "  retried after a failed connect: %llu, never to the same backend "
                     "(%llu refused)",
                     (unsigned long long)t->retries, (unsigned long long)t->retries_refused);
    if (t->returning > 0)
        fc_check_say(c, "  requests that went elsewhere than their client's last one: %.1f %%",
                     percent(t->moved, t->returning));
    if (t->added > 0) {
        char names[256];
        size_t used = 0;
        names[0] = '\0';
        for (int k = 0; k < 4 && t->added_names[k][0] != '\0' && used < sizeof(names); k++)
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s %llu",
                                     used > 0 ? ", " : "", t->added_names[k],
                                     (unsigned long long)t->added_counts[k]);
        fc_check_say(c, "  response headers added to %llu picks: %s", (unsigned long long)t->added,
                     names);
    }
}

static int run_phase(struct sim *s, const char *title, uint64_t requests)
{
    memset(&s->t, 0, sizeof(s->t));
    for (uint64_t i = 0; i < requests; i++)
        if (one_request(s) != 0)
            return FC_ERROR;
    report_phase(s, title, requests);
    return 0;
}

/* ---- the exercise ---- */

static void init_sim(struct sim *s, struct fc_check *c)
{
    s->c = c;
    s->now = 1000000000000ull; /* a clock that is not at 0 */
    s->rng = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++) {
        s->states[i] = (struct fc_backend_state){.up = 1};
        fc_check_sockaddr(i, &s->addrs[i], &s->views[i].sockaddr_len);
        s->views[i].index = i;
        s->views[i].weight = 1;
        s->views[i].address = fc_check_address(i);
        s->views[i].sockaddr = (const struct sockaddr *)&s->addrs[i];
        s->views[i].state = &s->states[i];
    }
    for (uint32_t i = 0; i < CLIENTS; i++) {
        struct client *cl = &s->clients[i];
        cl->addr.sin_family = AF_INET;
        cl->addr.sin_port = htons((uint16_t)(40000 + i % 20000));
        cl->addr.sin_addr.s_addr = htonl(0x0a000000u + (i / 250) * 256 + i % 250 + 1);
        snprintf(cl->user, sizeof(cl->user), "user-%u", i);
        snprintf(cl->target, sizeof(cl->target), "/c/%u?user=%u", i, i);
        cl->last = -1;
    }
}

static int exercise(struct sim *s)
{
    struct fc_check *c = s->c;
    uint64_t picks = (uint64_t)PICKS * c->scale / 100;
    uint64_t all_down = (uint64_t)ALL_DOWN_PICKS * c->scale / 100;
    char title[128];

    fc_check_say(c,
                 "strategy: pool \"check\" of %d backends, weight 1 each; %d workers, an "
                 "instance each",
                 FC_CHECK_BACKENDS, WORKERS);
    fc_check_say(c,
                 "  %d clients: client N sends X-User: user-N, Cookie: session=sN and what "
                 "Set-Cookie",
                 CLIENTS);
    fc_check_say(c,
                 "  gave it, for /c/N?user=N; a request every %llu us on a virtual clock; "
                 "1 in %u",
                 ARRIVAL_NS / 1000, RETRY_EVERY);
    fc_check_say(c, "  first fails to connect and is picked again");
    fc_check_say(c, "%s", "");

    if (gen_create(s, 0, FC_CHECK_BACKENDS) != 0)
        return FC_ERROR;
    if (run_phase(s, "phase 1, all up", picks) != 0)
        return FC_ERROR;
    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        if (s->t.picks[i] == 0)
            fc_check_warn(c, "%s got no request with every backend up", fc_check_address(i));
    if (s->t.refused == picks)
        return fc_check_fail(c,
                             "pick() refused every request (FC_ENOBACKEND) with all %d "
                             "backends up",
                             FC_CHECK_BACKENDS);

    s->states[1].up = 0;
    snprintf(title, sizeof(title), "phase 2, %s down", fc_check_address(1));
    if (run_phase(s, title, picks) != 0)
        return FC_ERROR;

    /* A drain: a new generation over the view without it; the old one lives on a while. */
    if (gen_create(s, 1, FC_CHECK_BACKENDS - 1) != 0)
        return FC_ERROR;
    s->current = 1;
    s->drained = fc_check_address(FC_CHECK_BACKENDS - 1);
    s->gens[0].retired = 1;
    if (s->gens[0].inflight == 0)
        gen_destroy(s, 0);
    snprintf(title, sizeof(title), "phase 3, %s drained (a view of %d, as after a reload)",
             s->drained, FC_CHECK_BACKENDS - 1);
    if (run_phase(s, title, picks) != 0)
        return FC_ERROR;

    for (uint32_t i = 0; i < FC_CHECK_BACKENDS; i++)
        s->states[i].up = 0;
    if (run_phase(s, "phase 4, all down", all_down) != 0)
        return FC_ERROR;
    fc_check_say(c, "%s", "");
    return 0;
}

int fc_check_strategy(struct fc_check *c)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return fc_check_fail(c, "out of memory");
    init_sim(s, c);
    int rc = exercise(s);
    /* Every request still out answers, then the instances go. */
    while (s->n_heap > 0) {
        struct answer a = heap_pop(s);
        answer(s, &a);
    }
    gen_destroy(s, 0);
    gen_destroy(s, 1);
    free(s);
    return rc;
}
