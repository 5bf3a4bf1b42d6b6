/*
 * Runtime control end to end: POST, PATCH and DELETE on
 * /api/pools/{pool}/backends change the real daemon's pools while real
 * backends serve real traffic, and each answer comes only once every worker
 * serves the change, so a request that starts after it sees it.
 *
 * What is checked, case by case: a backend added under load takes traffic at
 * once and no request fails; a drained one gets no request that starts after
 * the answer while the requests it holds finish, and fulcrum closes its
 * connections to it, busy ones once their answer is in and idle ones at
 * once; requests sent right after an answer, round after round, never see
 * the state before it; maintenance stops the health probes that drain keeps
 * running; weights move the split of the weighted strategy; DELETE removes
 * file and runtime backends and tells the requests still in flight; every
 * kind of change survives SIGHUP and a restart through the state file, and
 * the file has the last word on the backends it names; a corrupt or
 * unreadable state file is reported and ignored; the token guards every
 * write; every bad request gets its JSON error; IPv6 addresses go through
 * their URL-encoded form; a pool with every backend drained answers 503.
 *
 * Traffic goes through the demo backends (examples/demo_backend), which name
 * themselves in X-Backend, except where the test must see what fulcrum sends
 * a backend: the health probes are counted on a raw backend. fulcrum's open
 * connections to a backend are counted in /proc/net/tcp.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN "control-token-for-the-test"

/* How long something the daemon does asynchronously may take to show, far above what it needs. */
#define SETTLE_MS 3000

/* ---- the admin API -------------------------------------------------------- */

struct admin {
    int port;
    const char *token; /* sent as the bearer token when not NULL */
};

/* Sets cfg->admin to a loopback listener on a free port, with a token file when token. */
static struct admin admin_config(struct it_env *env, struct it_config *cfg, const char *token)
{
    struct admin a = {.port = it_free_port(), .token = token};
    if (token != NULL) {
        const char *file = it_write_file(env, "admin.token", it_strf(env, "%s\n", token));
        cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"%s\";", a.port, file);
    } else {
        cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\";", a.port);
    }
    return a;
}

/* it_fulcrum_start(), and a wait until its admin listener listens too. */
static struct it_fulcrum *start(struct it_env *env, const struct it_config *cfg,
                                const struct admin *a)
{
    struct it_fulcrum *f = it_fulcrum_start(env, cfg);
    if (!it_fulcrum_wait_log(env, f, it_strf(env, "admin listening on 127.0.0.1:%d", a->port), 1,
                             SETTLE_MS)) {
        it_proc_dump(env, f->proc);
        fail_msg("the admin listener on 127.0.0.1:%d did not start", a->port);
    }
    return f;
}

/* The last answer's JSON (an object), freed by the next call. */
static json_t *answer;

/*
 * One admin request on a fresh connection, with `auth` as the whole
 * Authorization value (NULL: none) and `body` as JSON text (NULL: no body).
 * Every answer must be a JSON object, with the admin listener's content
 * type; it is left in `answer`. Returns the status.
 */
static int call_auth(struct it_env *env, int port, const char *auth, const char *method,
                     const char *path, const char *body)
{
    const char *req = it_strf(env, "%s %s HTTP/1.1\r\nHost: admin\r\n%s%s%s", method, path,
                              auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
    if (body != NULL)
        req = it_strf(env, "%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", req,
                      strlen(body), body);
    else
        req = it_strf(env, "%s\r\n", req);
    struct it_response r;
    it_fetch(env, port, method, req, &r);
    json_decref(answer);
    json_error_t err;
    answer = json_loads(r.body, 0, &err);
    const char *type = it_header(&r, "Content-Type");
    if (answer == NULL || !json_is_object(answer) || type == NULL ||
        strcmp(type, "application/json") != 0)
        fail_msg("%s %s answered %d (Content-Type %s), not with a JSON object: %s", method, path,
                 r.status, type ? type : "none", r.body);
    int status = r.status;
    it_response_free(&r);
    return status;
}

/* call_auth() with the admin's token, if it has one. */
static int call(struct it_env *env, const struct admin *a, const char *method, const char *path,
                const char *body)
{
    return call_auth(env, a->port, a->token ? it_strf(env, "Bearer %s", a->token) : NULL, method,
                     path, body);
}

/* What `answer` says, as text for a failure message. */
static const char *answer_text(struct it_env *env)
{
    char *s = json_dumps(answer, JSON_COMPACT);
    const char *copy = it_strf(env, "%s", s ? s : "?");
    free(s);
    return copy;
}

/* call() that must answer `want`. */
static void expect_call(struct it_env *env, const struct admin *a, int want, const char *method,
                        const char *path, const char *body)
{
    int status = call(env, a, method, path, body);
    if (status != want)
        fail_msg("%s %s %s: %d %s, expected %d", method, path, body ? body : "", status,
                 answer_text(env), want);
}

/* A string member of the JSON object o ("" if it has none). */
static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* An integer member of the JSON object o; fails the test if it is not one. */
static long long jint(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("\"%s\" is not an integer", key);
    return (long long)json_integer_value(v);
}

static const char *backend_path(struct it_env *env, const char *pool, int port)
{
    return it_strf(env, "/api/pools/%s/backends/127.0.0.1:%d", pool, port);
}

static const char *addr(struct it_env *env, int port)
{
    return it_strf(env, "127.0.0.1:%d", port);
}

/*
 * The answer to a POST or PATCH (in `answer`) describes backend `address` of
 * pool "web" as it is now: weight, state and source.
 */
static void expect_answer_backend(struct it_env *env, const char *address, int weight,
                                  const char *state, const char *source)
{
    const json_t *b = json_object_get(answer, "backend");
    if (!json_is_true(json_object_get(answer, "ok")) || strcmp(jstr(answer, "pool"), "web") != 0 ||
        strcmp(jstr(b, "address"), address) != 0 ||
        !json_is_integer(json_object_get(b, "weight")) ||
        json_integer_value(json_object_get(b, "weight")) != weight ||
        strcmp(jstr(b, "state"), state) != 0 || strcmp(jstr(b, "source"), source) != 0 ||
        jint(answer, "generation") < 2)
        fail_msg("answer %s; expected ok, pool web, backend %s weight %d state %s source %s, and "
                 "a generation",
                 answer_text(env), address, weight, state, source);
}

/* ---- the status ------------------------------------------------------------ */

/* The last status document, freed by the next call. */
static json_t *status_doc;

static json_t *get_status(struct it_env *env, const struct admin *a)
{
    int st = call(env, a, "GET", "/api/status", NULL);
    if (st != 200)
        fail_msg("GET /api/status: %d %s", st, answer_text(env));
    json_decref(status_doc);
    status_doc = json_incref(answer);
    return status_doc;
}

static long long status_generation(struct it_env *env, const struct admin *a)
{
    return jint(get_status(env, a), "generation");
}

/* The backends of pool "web" in the status, as fetched now. */
static json_t *web_backends(struct it_env *env, const struct admin *a)
{
    json_t *pools = json_object_get(get_status(env, a), "pools");
    for (size_t i = 0; i < json_array_size(pools); i++)
        if (strcmp(jstr(json_array_get(pools, i), "name"), "web") == 0)
            return json_object_get(json_array_get(pools, i), "backends");
    fail_msg("the status has no pool \"web\"");
    return NULL;
}

/* "address state source weight" for every backend of "web", in the status's order. */
static const char *web_summary(struct it_env *env, const struct admin *a)
{
    json_t *list = web_backends(env, a);
    const char *s = "";
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *b = json_array_get(list, i);
        s = it_strf(env, "%s%s%s %s %s %lld", s, i ? ", " : "", jstr(b, "address"),
                    jstr(b, "state"), jstr(b, "source"), jint(b, "weight"));
    }
    return s;
}

static void expect_summary(struct it_env *env, const struct admin *a, const char *want)
{
    const char *got = web_summary(env, a);
    if (strcmp(got, want) != 0)
        fail_msg("pool web in the status:\n  %s\nexpected:\n  %s", got, want);
}

/* The status of backend `address` of "web" (NULL if not listed), valid until the next status. */
static json_t *web_backend(struct it_env *env, const struct admin *a, const char *address)
{
    json_t *list = web_backends(env, a);
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(jstr(json_array_get(list, i), "address"), address) == 0)
            return json_array_get(list, i);
    return NULL;
}

/* ---- traffic ----------------------------------------------------------------- */

/* One GET / through fulcrum on a fresh connection: the status, the X-Backend ("" if none). */
static int fetch_from(struct it_env *env, int port, const char **from)
{
    struct it_response r;
    it_get(env, port, "test", "/", &r);
    const char *b = it_header(&r, "X-Backend");
    *from = it_strf(env, "%s", b ? b : "");
    int status = r.status;
    it_response_free(&r);
    return status;
}

/* n requests, each answered 200 by a backend other than `avoid`. */
static void expect_never(struct it_env *env, int port, int n, const char *avoid)
{
    for (int i = 0; i < n; i++) {
        const char *from;
        int st = fetch_from(env, port, &from);
        if (st != 200 || strcmp(from, avoid) == 0)
            fail_msg("request %d: %d from \"%s\", expected 200 from another backend than \"%s\"", i,
                     st, from, avoid);
    }
}

/* Up to n requests, all answered 200, until `want` answers one; whether it did. */
static bool reaches(struct it_env *env, int port, int n, const char *want)
{
    for (int i = 0; i < n; i++) {
        const char *from;
        int st = fetch_from(env, port, &from);
        if (st != 200)
            fail_msg("request %d: %d from \"%s\", expected 200", i, st, from);
        if (strcmp(from, want) == 0)
            return true;
    }
    return false;
}

static void expect_reaches(struct it_env *env, int port, int n, const char *want)
{
    if (!reaches(env, port, n, want))
        fail_msg("%d requests, none of them answered by \"%s\"", n, want);
}

/* n requests, each answered 200 by `want`. */
static void expect_all_from(struct it_env *env, int port, int n, const char *want)
{
    for (int i = 0; i < n; i++) {
        const char *from;
        int st = fetch_from(env, port, &from);
        if (st != 200 || strcmp(from, want) != 0)
            fail_msg("request %d: %d from \"%s\", expected 200 from \"%s\"", i, st, from, want);
    }
}

/*
 * fulcrum's connections to 127.0.0.1:port that are established now, from
 * /proc/net/tcp: sockets whose remote end is that port. Only fulcrum
 * connects to the backends of these tests.
 */
static int conns_to(int port)
{
    FILE *fp = fopen("/proc/net/tcp", "r");
    if (fp == NULL)
        fail_msg("/proc/net/tcp: %s", strerror(errno));
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        unsigned lport, rport, st;
        char laddr[64], raddr[64];
        if (sscanf(line, " %*u: %63[0-9A-Fa-f]:%x %63[0-9A-Fa-f]:%x %x", laddr, &lport, raddr,
                   &rport, &st) == 5 &&
            rport == (unsigned)port && st == 0x01 /* TCP_ESTABLISHED */)
            n++;
    }
    fclose(fp);
    return n;
}

/* ---- load clients ------------------------------------------------------------- */

/*
 * A client thread: one keep-alive connection to fulcrum, GET / in a loop,
 * every answer checked. Plain sockets: cmocka and the harness's client are
 * not for threads. The test sets two marks around a change, `sent` (just
 * before it sent it) and `answered` (just after the answer came); what the
 * client counts after the mark is about requests it began at or after
 * `answered`. Counters the test reads while the thread runs are atomic.
 */
struct load;

struct load_client {
    struct load *load;
    long ok, failed;
    long after;          /* requests begun after the answer, answered 200 (atomic) */
    long after_watch;    /* of those, by the watched backend */
    long after_avoid;    /* of those, by the avoided backend: must stay 0 */
    long spanning_avoid; /* begun before `sent`, answered by the avoided backend after `answered` */
    long before_watch;   /* answered by the watched backend before the change was sent */
    int64_t first_watch_ms; /* when the watched backend first answered a request begun after */
    char error[300];        /* the first failure */
};

#define MAX_LOAD_CLIENTS 16
#define LOAD_MAX_REQUESTS 200000 /* per client: a bound, far above what a test makes */

struct load {
    int port;
    const char *watch, *avoid;    /* backend names, or NULL */
    int stop;                     /* atomic */
    int64_t sent_ms, answered_ms; /* atomic; 0 until the test sets them */
    int n;
    pthread_t threads[MAX_LOAD_CLIENTS];
    struct load_client clients[MAX_LOAD_CLIENTS];
};

static bool same_name(const char *want, const char *name)
{
    return want != NULL && strcmp(want, name) == 0;
}

static void *load_client_main(void *arg)
{
    struct load_client *c = arg;
    struct load *l = c->load;
    int fd = it_socket_connect(l->port, 10);
    if (fd < 0) {
        snprintf(c->error, sizeof(c->error), "connect: %s", strerror(-fd));
        __atomic_add_fetch(&c->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    static const char req[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    for (long i = 0; i < LOAD_MAX_REQUESTS && !__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE); i++) {
        int64_t began = it_now_ms();
        int status = 0;
        char backend[64], why[200];
        if (it_send_all(fd, req, sizeof(req) - 1) != 0) {
            snprintf(c->error, sizeof(c->error), "request %ld: send: %s", i, strerror(errno));
            __atomic_add_fetch(&c->failed, 1, __ATOMIC_RELAXED);
            break;
        }
        if (it_read_backend_response(fd, &status, backend, sizeof(backend), why, sizeof(why)) !=
            0) {
            snprintf(c->error, sizeof(c->error), "request %ld: %s", i, why);
            __atomic_add_fetch(&c->failed, 1, __ATOMIC_RELAXED);
            break;
        }
        int64_t done = it_now_ms();
        if (status != 200) {
            if (__atomic_fetch_add(&c->failed, 1, __ATOMIC_RELAXED) == 0)
                snprintf(c->error, sizeof(c->error), "request %ld: status %d from \"%s\"", i,
                         status, backend);
            continue;
        }
        __atomic_add_fetch(&c->ok, 1, __ATOMIC_RELAXED);
        int64_t sent = __atomic_load_n(&l->sent_ms, __ATOMIC_ACQUIRE);
        int64_t answered = __atomic_load_n(&l->answered_ms, __ATOMIC_ACQUIRE);
        if (sent == 0 && same_name(l->watch, backend))
            c->before_watch++;
        if (answered != 0 && began >= answered) {
            if (same_name(l->watch, backend)) {
                if (c->after_watch++ == 0)
                    c->first_watch_ms = done;
            }
            if (same_name(l->avoid, backend) && c->after_avoid++ == 0 && c->error[0] == '\0')
                snprintf(c->error, sizeof(c->error),
                         "request %ld, begun %lld ms after the answer, answered by \"%s\"", i,
                         (long long)(began - answered), backend);
            __atomic_add_fetch(&c->after, 1, __ATOMIC_RELEASE);
        } else if (answered != 0 && began < sent && done >= answered &&
                   same_name(l->avoid, backend)) {
            c->spanning_avoid++;
        }
    }
    close(fd);
    return NULL;
}

/*
 * Starts n clients. Heap, not stack: a failed assertion leaves the test's
 * frame while the threads still run; they end when teardown stops fulcrum.
 */
static struct load *load_start(int port, int n, const char *watch, const char *avoid)
{
    struct load *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    assert_true(n <= MAX_LOAD_CLIENTS);
    l->port = port;
    l->watch = watch;
    l->avoid = avoid;
    l->n = n;
    for (int i = 0; i < n; i++) {
        l->clients[i].load = l;
        assert_int_equal(pthread_create(&l->threads[i], NULL, load_client_main, &l->clients[i]), 0);
    }
    return l;
}

/* Waits until every client has `want` of the counter at `offset` (or failed); false at the
 * deadline. */
static bool load_wait(struct load *l, size_t offset, long want, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        int short_of = 0;
        for (int i = 0; i < l->n; i++) {
            struct load_client *c = &l->clients[i];
            long *counter = (long *)((char *)c + offset);
            if (__atomic_load_n(&c->failed, __ATOMIC_RELAXED) != 0)
                return true; /* the caller's checks report it */
            short_of += __atomic_load_n(counter, __ATOMIC_ACQUIRE) < want;
        }
        if (short_of == 0)
            return true;
        if (it_now_ms() >= deadline)
            return false;
        it_sleep_ms(5);
    }
}

static void load_stop(struct load *l)
{
    __atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < l->n; i++)
        pthread_join(l->threads[i], NULL);
}

/* Fails the test if a client failed a request; then sums what they counted into *sum. */
static void load_check(const struct load *l, struct load_client *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < l->n; i++) {
        const struct load_client *c = &l->clients[i];
        if (c->failed != 0)
            fail_msg("client %d: %ld ok, %ld failed; first: %s", i, c->ok, c->failed, c->error);
        sum->ok += c->ok;
        sum->after += c->after;
        sum->after_watch += c->after_watch;
        sum->after_avoid += c->after_avoid;
        sum->spanning_avoid += c->spanning_avoid;
        sum->before_watch += c->before_watch;
        if (c->after_watch > 0 &&
            (sum->first_watch_ms == 0 || c->first_watch_ms < sum->first_watch_ms))
            sum->first_watch_ms = c->first_watch_ms;
        if (c->after_avoid > 0)
            fail_msg("client %d: %ld of %ld requests begun after the answer went to \"%s\"; "
                     "first: %s",
                     i, c->after_avoid, c->after, l->avoid, c->error);
    }
}

/* ---- 1. add under load --------------------------------------------------------- */

IT_TEST(add_under_load_takes_traffic_at_once)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 2); /* a, b */
    struct admin a = admin_config(env, &cfg, NULL);
    int c_port = it_backend_start(env, "c");
    struct it_fulcrum *f = start(env, &cfg, &a);
    long long gen = status_generation(env, &a);

    struct load *l = load_start(f->port, 8, "c", NULL);
    if (!load_wait(l, offsetof(struct load_client, ok), 20, SETTLE_MS))
        fail_msg("the load clients made too few requests before the change");
    int64_t sent = it_now_ms();
    __atomic_store_n(&l->sent_ms, sent, __ATOMIC_RELEASE);
    int st = call(env, &a, "POST", "/api/pools/web/backends",
                  it_strf(env, "{\"address\": \"%s\"}", addr(env, c_port)));
    int64_t answered = it_now_ms();
    __atomic_store_n(&l->answered_ms, answered, __ATOMIC_RELEASE);
    if (st != 201)
        fail_msg("POST: %d %s", st, answer_text(env));
    expect_answer_backend(env, addr(env, c_port), 1, "ready", "runtime");
    assert_true(jint(answer, "generation") > gen);

    bool enough = load_wait(l, offsetof(struct load_client, after), 60, SETTLE_MS);
    load_stop(l);
    struct load_client sum;
    load_check(l, &sum);
    free(l);
    if (!enough)
        fail_msg("too few requests after the answer (%ld in all)", sum.after);
    print_message("%ld requests, none failed; %ld after the answer, %ld of them by c, the first "
                  "%lld ms after it\n",
                  sum.ok, sum.after, sum.after_watch, (long long)(sum.first_watch_ms - answered));
    assert_int_equal(sum.before_watch, 0); /* c answered nothing before it was added */
    if (sum.after_watch == 0 || sum.first_watch_ms - answered > 1000)
        fail_msg("c answered %ld of %ld requests after the 201, the first %lld ms after it",
                 sum.after_watch, sum.after,
                 (long long)(sum.after_watch ? sum.first_watch_ms - answered : -1));
    /* Round robin over three: about a third; a fifth at least. */
    if (sum.after_watch * 5 < sum.after)
        fail_msg("c answered only %ld of %ld requests after the 201", sum.after_watch, sum.after);

    json_t *c = web_backend(env, &a, addr(env, c_port));
    assert_non_null(c);
    assert_string_equal(jstr(c, "state"), "up");
    assert_string_equal(jstr(c, "source"), "runtime");
    assert_true(jint(c, "requests") > 0);
}

/* ---- 2. drain under load --------------------------------------------------------- */

IT_TEST(drain_under_load_finishes_in_flight_and_closes_idle)
{
    /* b answers 300 ms late, so that some requests are always in flight on it. */
    static const char *const slow[] = {"--delay-ms", "300", NULL};
    int pa = it_backend_start(env, "a");
    int pb = it_backend_start_args(env, "b", slow);
    int pc = it_backend_start(env, "c");
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 3, pa, pb, pc);
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);

    struct load *l = load_start(f->port, 16, NULL, "b");
    if (!load_wait(l, offsetof(struct load_client, ok), 3, SETTLE_MS))
        fail_msg("the load clients made too few requests before the drain");
    int64_t deadline = it_now_ms() + SETTLE_MS;
    while (conns_to(pb) == 0 && it_now_ms() < deadline)
        it_sleep_ms(5);
    int open_before = conns_to(pb);
    if (open_before == 0)
        fail_msg("fulcrum holds no connection to b under load: the check below would prove "
                 "nothing");

    __atomic_store_n(&l->sent_ms, it_now_ms(), __ATOMIC_RELEASE);
    int st = call(env, &a, "PATCH", backend_path(env, "web", pb), "{\"state\": \"drain\"}");
    int64_t answered = it_now_ms();
    __atomic_store_n(&l->answered_ms, answered, __ATOMIC_RELEASE);
    if (st != 200)
        fail_msg("PATCH drain: %d %s", st, answer_text(env));
    expect_answer_backend(env, addr(env, pb), 1, "drain", "config");

    /* Its connections close, in-flight ones once their answer is in, while traffic goes on. */
    deadline = it_now_ms() + SETTLE_MS;
    int open = conns_to(pb);
    while (open > 0 && it_now_ms() < deadline) {
        it_sleep_ms(5);
        open = conns_to(pb);
    }
    int64_t closed_after = it_now_ms() - answered;
    bool enough = load_wait(l, offsetof(struct load_client, after), 5, SETTLE_MS);
    load_stop(l);
    struct load_client sum;
    load_check(l, &sum); /* no failure, none begun after the answer went to b */
    free(l);
    print_message("%ld requests, none failed; %ld begun after the answer, none on b; %ld in "
                  "flight on b finished after it; fulcrum's %d connections to b closed within "
                  "%lld ms\n",
                  sum.ok, sum.after, sum.spanning_avoid, open_before, (long long)closed_after);
    if (open > 0)
        fail_msg("fulcrum still holds %d connection(s) to the drained backend %d ms after the "
                 "answer",
                 open, SETTLE_MS);
    if (!enough)
        fail_msg("too few requests after the answer (%ld in all)", sum.after);
    /* Requests b held when the drain came finished there, answered 200. */
    assert_true(sum.spanning_avoid >= 1);

    json_t *b = web_backend(env, &a, addr(env, pb));
    assert_non_null(b);
    assert_string_equal(jstr(b, "state"), "drain");
    assert_int_equal(jint(b, "inflight"), 0);
    /* And no new connection to it since. */
    expect_never(env, f->port, 9, "b");
    assert_int_equal(conns_to(pb), 0);

    /*
     * Without load, so that fulcrum surely keeps idle connections to b: ready
     * again, nine requests at once (some on b whichever worker takes them),
     * all answered; then maintenance closes them as drain does.
     */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"ready\"}");
    enum { N = 9 };
    struct it_conn *conns[N];
    for (int i = 0; i < N; i++) {
        conns[i] = it_connect(env, f->port);
        it_send_str(conns[i], "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    }
    int by_b = 0;
    for (int i = 0; i < N; i++) {
        struct it_response r;
        it_expect_response(conns[i], "GET", &r);
        const char *from = it_header(&r, "X-Backend");
        assert_int_equal(r.status, 200);
        by_b += from != NULL && strcmp(from, "b") == 0;
        it_response_free(&r);
    }
    assert_true(by_b >= 1);
    int idle = conns_to(pb);
    assert_true(idle >= 1);
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"maint\"}");
    deadline = it_now_ms() + SETTLE_MS;
    while ((open = conns_to(pb)) > 0 && it_now_ms() < deadline)
        it_sleep_ms(5);
    if (open > 0)
        fail_msg("%d of fulcrum's %d idle connections to b still open %d ms after maint", open,
                 idle, SETTLE_MS);
}

/*
 * The answer waits for the workers: right after each drain answer, requests
 * on connections already open to both workers (sent at once, so that a
 * worker that has not yet taken the change would see them in the same turn
 * of its loop as the wake-up) never reach the drained backend.
 */
IT_TEST(answer_comes_once_every_worker_serves_the_change)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 2); /* a, b */
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);
    int pb = pool->ports[1];
    enum { N = 8, ROUNDS = 40 };
    struct it_conn *conns[N];
    for (int i = 0; i < N; i++)
        conns[i] = it_connect(env, f->port);
    static const char get[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    int by_b_when_ready = 0;
    for (int round = 0; round < ROUNDS; round++) {
        expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"drain\"}");
        for (int i = 0; i < N; i++)
            it_send_str(conns[i], get);
        for (int i = 0; i < N; i++) {
            struct it_response r;
            it_expect_response(conns[i], "GET", &r);
            const char *from = it_header(&r, "X-Backend");
            if (r.status != 200 || from == NULL || strcmp(from, "a") != 0)
                fail_msg("round %d, request %d, sent after the drain answer: %d from \"%s\"", round,
                         i, r.status, from ? from : "");
            it_response_free(&r);
        }
        expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"ready\"}");
        for (int i = 0; i < N; i++)
            it_send_str(conns[i], get);
        for (int i = 0; i < N; i++) {
            struct it_response r;
            it_expect_response(conns[i], "GET", &r);
            const char *from = it_header(&r, "X-Backend");
            assert_int_equal(r.status, 200);
            by_b_when_ready += from != NULL && strcmp(from, "b") == 0;
            it_response_free(&r);
        }
    }
    /* Ready, b took its share: the drained rounds above avoided it for the change alone. */
    assert_true(by_b_when_ready >= ROUNDS * N / 4);
}

/* ---- 3. maintenance stops the health probes ----------------------------------------- */

/*
 * A raw backend that answers like a demo backend named `arg`: 200 with
 * X-Backend and the name for every request, keeping the connection, and
 * 200 "ok" with a close for the health checker's GET /hc.
 */
static void named_handler(int fd, void *arg)
{
    const char *name = arg;
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t end = it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 30000);
        if (end < 0)
            return;
        long body = it_raw_content_length(buf, (size_t)end);
        bool hc = len >= 8 && memcmp(buf, "GET /hc ", 8) == 0;
        if (body > 0 &&
            it_raw_read_len(fd, buf, sizeof(buf), &len, (size_t)end + (size_t)body, 30000) != 0)
            return;
        it_raw_consume(buf, &len, (size_t)end + (size_t)(body > 0 ? body : 0));
        char resp[256];
        if (hc) {
            snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
            it_raw_write_str(fd, resp);
            return;
        }
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nX-Backend: %s\r\n\r\n%s\n",
                 strlen(name) + 1, name, name);
        if (it_raw_write_str(fd, resp) != 0)
            return;
    }
}

/* Health probes the raw backend on port has read so far. */
static size_t probes(struct it_env *env, int port)
{
    return it_count(it_raw_backend_received_all(env, port, NULL), "GET /hc HTTP/1.1\r\n");
}

/* Waits until the raw backend on port has had more than n probes; the count then. */
static size_t wait_probes(struct it_env *env, int port, size_t n, const char *what)
{
    int64_t deadline = it_now_ms() + SETTLE_MS;
    size_t got;
    while ((got = probes(env, port)) <= n) {
        if (it_now_ms() >= deadline)
            fail_msg("%s: %zu health probes, still %zu after %d ms", what, n, got, SETTLE_MS);
        it_sleep_ms(5);
    }
    return got;
}

IT_TEST(maint_stops_health_probes_and_ready_restarts_them)
{
    static char name[] = "m";
    int pa = it_backend_start(env, "a");
    int pm = it_raw_backend_start(env, named_handler, name);
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 2, pa, pm);
    pool->health = "plugin = \"http\"; path = \"/hc\"; interval_ms = 50; timeout_ms = 1000; "
                   "rise = 1; fall = 3;";
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);

    wait_probes(env, pm, 2, "at the start");
    expect_reaches(env, f->port, 10, "m");

    /* Drained, it is still checked. */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pm), "{\"state\": \"drain\"}");
    size_t n = probes(env, pm);
    wait_probes(env, pm, n + 2, "drained");
    expect_never(env, f->port, 10, "m");

    /*
     * In maintenance it is not: at most the one probe that may have been on
     * its way at the answer reaches it, and nothing after that over ten
     * intervals and more.
     */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pm), "{\"state\": \"maint\"}");
    expect_answer_backend(env, addr(env, pm), 1, "maint", "config");
    size_t at_answer = probes(env, pm);
    it_sleep_ms(500);
    size_t settled = probes(env, pm);
    if (settled > at_answer + 1)
        fail_msg("%zu health probes in the 500 ms after the maint answer", settled - at_answer);
    it_sleep_ms(300);
    if (probes(env, pm) != settled)
        fail_msg("%zu health probes 500 to 800 ms after the maint answer",
                 probes(env, pm) - settled);
    json_t *m = web_backend(env, &a, addr(env, pm));
    assert_non_null(m);
    assert_string_equal(jstr(m, "state"), "maint");
    expect_never(env, f->port, 10, "m");

    /* Ready: checked again, and back in rotation. */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pm), "{\"state\": \"ready\"}");
    expect_answer_backend(env, addr(env, pm), 1, "ready", "config");
    wait_probes(env, pm, settled + 1, "ready again");
    expect_reaches(env, f->port, 10, "m");
    m = web_backend(env, &a, addr(env, pm));
    assert_non_null(m);
    assert_string_equal(jstr(m, "state"), "up");
}

/* ---- 4. weights ------------------------------------------------------------------- */

/* 400 requests over 4 keep-alive connections; how many b answered (the rest must be a). */
static int split_b(struct it_env *env, int port)
{
    struct it_conn *conns[4];
    for (int i = 0; i < 4; i++)
        conns[i] = it_connect(env, port);
    int b = 0;
    for (int i = 0; i < 400; i++) {
        struct it_conn *c = conns[i % 4];
        it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        struct it_response r;
        it_expect_response(c, "GET", &r);
        const char *from = it_header(&r, "X-Backend");
        if (r.status != 200 || from == NULL || (strcmp(from, "a") != 0 && strcmp(from, "b") != 0))
            fail_msg("request %d: %d from \"%s\"", i, r.status, from ? from : "");
        b += strcmp(from, "b") == 0;
        it_response_free(&r);
    }
    for (int i = 0; i < 4; i++)
        it_conn_close(conns[i]);
    return b;
}

static void expect_split(struct it_env *env, int port, int want_b, int tolerance)
{
    int b = split_b(env, port);
    print_message("b answered %d of 400 (expected %d)\n", b, want_b);
    if (b < want_b - tolerance || b > want_b + tolerance)
        fail_msg("b answered %d of 400 requests, expected %d +- %d", b, want_b, tolerance);
}

IT_TEST(weight_changes_the_split)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 2); /* a, b: weight 1 each */
    pool->strategy = "weighted";
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);
    int pb = pool->ports[1];

    /* Smooth weighted round-robin is exact over each cycle: the tolerance is generous. */
    expect_split(env, f->port, 200, 25);
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"weight\": 3}");
    expect_answer_backend(env, addr(env, pb), 3, "ready", "config");
    expect_split(env, f->port, 300, 25);
    assert_int_equal(jint(web_backend(env, &a, addr(env, pb)), "weight"), 3);

    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pool->ports[0]), "{\"weight\": 7}");
    expect_split(env, f->port, 120, 25); /* 3 of 10 */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"weight\": 1000}");
    expect_answer_backend(env, addr(env, pb), 1000, "ready", "config");
    expect_split(env, f->port, 397, 5); /* 1000 of 1007: the highest weight there is */

    /* Back to the file's weights. */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pool->ports[0]), "{\"weight\": 1}");
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"weight\": 1}");
    expect_split(env, f->port, 200, 25);
    assert_int_equal(jint(web_backend(env, &a, addr(env, pb)), "weight"), 1);
}

/* ---- 5. remove ------------------------------------------------------------------------ */

IT_TEST(remove_file_and_runtime_backends)
{
    /* b answers 800 ms late: requests are still in flight on it when it goes. */
    static const char *const slow[] = {"--delay-ms", "800", NULL};
    int pa = it_backend_start(env, "a");
    int pb = it_backend_start_args(env, "b", slow);
    int pc = it_backend_start(env, "c");
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 2, pa, pb);
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);
    expect_call(env, &a, 201, "POST", "/api/pools/web/backends",
                it_strf(env, "{\"address\": \"%s\"}", addr(env, pc)));
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s up config 1, %s up runtime 1", addr(env, pa),
                           addr(env, pb), addr(env, pc)));

    /* Nine requests at once: round robin over three sends some of them to b on either worker. */
    enum { N = 9 };
    struct it_conn *conns[N];
    for (int i = 0; i < N; i++) {
        conns[i] = it_connect(env, f->port);
        it_send_str(conns[i], "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    }
    int64_t deadline = it_now_ms() + SETTLE_MS;
    json_t *b;
    while ((b = web_backend(env, &a, addr(env, pb))) != NULL && jint(b, "inflight") == 0 &&
           it_now_ms() < deadline)
        it_sleep_ms(5);
    assert_non_null(b);
    assert_true(jint(b, "inflight") >= 1);

    expect_call(env, &a, 200, "DELETE", backend_path(env, "web", pb), NULL);
    if (!json_is_true(json_object_get(answer, "ok")) || strcmp(jstr(answer, "pool"), "web") != 0 ||
        strcmp(jstr(answer, "address"), addr(env, pb)) != 0 || jint(answer, "generation") < 2 ||
        jint(answer, "inflight") < 1)
        fail_msg("DELETE answered %s; expected ok, the pool, the address, the generation and "
                 "the requests still in flight on b",
                 answer_text(env));
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s up runtime 1", addr(env, pa), addr(env, pc)));

    /* The requests it held finish there, answered. */
    int by_b = 0;
    for (int i = 0; i < N; i++) {
        struct it_response r;
        it_expect_response(conns[i], "GET", &r);
        const char *from = it_header(&r, "X-Backend");
        if (r.status != 200 || from == NULL)
            fail_msg("request %d in flight at the DELETE: %d", i, r.status);
        by_b += strcmp(from, "b") == 0;
        it_response_free(&r);
    }
    assert_true(by_b >= 1);
    expect_never(env, f->port, 12, "b");

    /* The runtime one goes the same way, and nothing is left of it. */
    expect_call(env, &a, 200, "DELETE", backend_path(env, "web", pc), NULL);
    assert_string_equal(jstr(answer, "address"), addr(env, pc));
    assert_int_equal(jint(answer, "inflight"), 0);
    expect_summary(env, &a, it_strf(env, "%s up config 1", addr(env, pa)));
    expect_all_from(env, f->port, 6, "a");
    assert_int_equal(call(env, &a, "DELETE", backend_path(env, "web", pc), NULL), 404);
    assert_int_equal(call(env, &a, "DELETE", backend_path(env, "web", pb), NULL), 404);
    assert_true(it_fulcrum_wait_log(
        env, f, it_strf(env, "backend %s removed: generation", addr(env, pb)), 1, SETTLE_MS));

    /* Added again, the file's b is the file's again, in its place. */
    expect_call(env, &a, 201, "POST", "/api/pools/web/backends",
                it_strf(env, "{\"address\": \"%s\"}", addr(env, pb)));
    expect_answer_backend(env, addr(env, pb), 1, "ready", "config");
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s up config 1", addr(env, pa), addr(env, pb)));
    expect_reaches(env, f->port, 6, "b");

    /*
     * With a weight of its own in the file: removed and added again without
     * one, it has the file's weight, and a later edit of the file applies.
     */
    const char *text = it_config_render(env, &cfg, f->port);
    const char *plain = it_strf(env, "{ address = \"127.0.0.1:%d\"; }", pb);
    const char *at = strstr(text, plain);
    assert_non_null(at);
    const char *weighed = it_strf(env, "%.*s{ address = \"127.0.0.1:%d\"; weight = %%d; }%s",
                                  (int)(at - text), text, pb, at + strlen(plain));
    assert_int_equal(it_fulcrum_reload_text(env, f, it_strf(env, weighed, 4)), 0);
    expect_call(env, &a, 200, "DELETE", backend_path(env, "web", pb), NULL);
    expect_call(env, &a, 201, "POST", "/api/pools/web/backends",
                it_strf(env, "{\"address\": \"%s\"}", addr(env, pb)));
    expect_answer_backend(env, addr(env, pb), 4, "ready", "config");
    assert_int_equal(it_fulcrum_reload_text(env, f, it_strf(env, weighed, 6)), 0);
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s up config 6", addr(env, pa), addr(env, pb)));
}

/* ---- 6. the overlay survives reloads and restarts ---------------------------------- */

/* The state file as JSON, freed by the next call. */
static json_t *state_doc;

/*
 * "pool address source state-or-removed [weight]" for each entry of the
 * state file, in its order; or what is wrong with it, in parentheses.
 */
static const char *state_summary(struct it_env *env, const char *path)
{
    json_decref(state_doc);
    state_doc = NULL;
    if (access(path, F_OK) != 0)
        return "(none)";
    json_error_t err;
    json_t *doc = state_doc = json_load_file(path, 0, &err);
    if (doc == NULL)
        return it_strf(env, "(not JSON: line %d: %s)", err.line, err.text);
    json_t *version = json_object_get(doc, "version");
    json_t *list = json_object_get(doc, "backends");
    if (!json_is_integer(version) || json_integer_value(version) != 1 || !json_is_array(list))
        return "(no version 1 with backends)";
    const char *s = "";
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        const char *what =
            json_is_true(json_object_get(e, "removed")) ? "removed" : jstr(e, "state");
        s = it_strf(env, "%s%s%s %s %s %s", s, i ? ", " : "", jstr(e, "pool"), jstr(e, "address"),
                    jstr(e, "source"), what);
        if (json_object_get(e, "weight") != NULL)
            s = it_strf(env, "%s %lld", s, jint(e, "weight"));
    }
    return s;
}

/* Waits until the state file (written off the main thread, then renamed) says `want`. */
static void expect_state(struct it_env *env, const char *path, const char *want)
{
    int64_t deadline = it_now_ms() + SETTLE_MS;
    const char *got;
    while (strcmp((got = state_summary(env, path)), want) != 0) {
        if (it_now_ms() >= deadline)
            fail_msg("state file %s:\n  %s\nexpected:\n  %s", path, got, want);
        it_sleep_ms(5);
    }
}

/*
 * `fulcrum -c` the file of `old`, which has exited: the same file, so the
 * same listener port (free again, as the old one closed it) and state file.
 * Returns once the listener and the admin listener accept.
 */
static struct it_fulcrum *restart(struct it_env *env, const struct it_fulcrum *old,
                                  const struct admin *a)
{
    const char *const argv[] = {FC_BINARY, "-c", old->config_path, NULL};
    struct it_fulcrum *f = it_zalloc(env, sizeof(*f));
    f->proc = it_start(env, "fulcrum-restarted", argv);
    f->port = old->port;
    f->config_path = old->config_path;
    const char *admin_up = it_strf(env, "admin listening on 127.0.0.1:%d", a->port);
    int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
    for (;;) {
        int err = 0;
        struct it_conn *c =
            it_fulcrum_log_count(env, f, admin_up) > 0 ? it_connect_raw(env, f->port, &err) : NULL;
        if (c != NULL) {
            it_conn_close(c);
            return f;
        }
        int status;
        if (it_proc_wait(f->proc, 0, &status) == 0 || it_now_ms() >= deadline) {
            it_proc_dump(env, f->proc);
            fail_msg("fulcrum -c %s, restarted, did not listen on 127.0.0.1:%d", f->config_path,
                     f->port);
        }
        it_sleep_ms(10);
    }
}

IT_TEST(changes_survive_reload_and_restart)
{
    static const char *const names[5] = {"a", "b", "c", "d", "e"};
    int p[5];
    for (int i = 0; i < 5; i++)
        p[i] = it_backend_start(env, names[i]);
    const char *state = it_path(env, "state.json");
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 4, p[0], p[1], p[2], p[3]);
    cfg.top = it_strf(env, "state_file = \"%s\";", state);
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);

    /* One change of each kind. */
    expect_call(env, &a, 201, "POST", "/api/pools/web/backends",
                it_strf(env, "{\"address\": \"%s\", \"weight\": 2}", addr(env, p[4])));
    expect_answer_backend(env, addr(env, p[4]), 2, "ready", "runtime");
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", p[1]), "{\"state\": \"drain\"}");
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", p[2]), "{\"weight\": 5}");
    expect_call(env, &a, 200, "DELETE", backend_path(env, "web", p[3]), NULL);
    const char *changed =
        it_strf(env, "%s up config 1, %s drain config 1, %s up config 5, %s up runtime 2",
                addr(env, p[0]), addr(env, p[1]), addr(env, p[2]), addr(env, p[4]));
    expect_summary(env, &a, changed);
    const char *saved = it_strf(env,
                                "web %s runtime ready 2, web %s config drain, web %s config "
                                "ready 5, web %s config removed",
                                addr(env, p[4]), addr(env, p[1]), addr(env, p[2]), addr(env, p[3]));
    expect_state(env, state, saved);

    /* SIGHUP with the same file: all of it stays, in the status and in the traffic. */
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    expect_summary(env, &a, changed);
    expect_never(env, f->port, 8, "b");
    expect_never(env, f->port, 8, "d");
    expect_reaches(env, f->port, 12, "e");

    /* A restart with the same file and state file. */
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 6000);
    expect_state(env, state, saved);
    f = restart(env, f, &a);
    assert_true(it_fulcrum_wait_log(
        env, f, it_strf(env, "state file %s: 4 runtime changes restored", state), 1, SETTLE_MS));
    expect_summary(env, &a, changed);
    expect_never(env, f->port, 8, "b");
    expect_never(env, f->port, 8, "d");
    expect_reaches(env, f->port, 12, "e");

    /* The file adds e itself: it is the file's now, with the file's weight. */
    pool->ports[4] = p[4];
    pool->nports = 5;
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s drain config 1, %s up config 5, %s up config 1",
                           addr(env, p[0]), addr(env, p[1]), addr(env, p[2]), addr(env, p[4])));
    assert_true(it_fulcrum_wait_log(
        env, f,
        it_strf(env, "backend %s: runtime change dropped: the file has it now", addr(env, p[4])), 1,
        SETTLE_MS));

    /* The file drops the drained b: gone, and so is its drain; back in the file, b is ready. */
    pool->ports[1] = p[4];
    pool->nports = 4; /* a e c d */
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s up config 1, %s up config 5", addr(env, p[0]),
                           addr(env, p[4]), addr(env, p[2])));
    pool->ports[4] = p[1];
    pool->nports = 5; /* a e c d b */
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s up config 1, %s up config 5, %s up config 1",
                           addr(env, p[0]), addr(env, p[4]), addr(env, p[2]), addr(env, p[1])));
    expect_reaches(env, f->port, 12, "b");
    expect_never(env, f->port, 8, "d"); /* still removed: the file still has it */
    expect_state(env, state,
                 it_strf(env, "web %s config ready 5, web %s config removed", addr(env, p[2]),
                         addr(env, p[3])));
    /* Teardown checks this for the fulcrums of it_fulcrum_start() only. */
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 6000);
}

/* ---- 7. a bad state file ------------------------------------------------------------ */

IT_TEST(corrupt_state_file_is_reported_and_ignored)
{
    int pa = it_backend_start(env, "a");
    int pb = it_backend_start(env, "b");
    const char *state = it_path(env, "state.json");
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 2, pa, pb);
    cfg.top = it_strf(env, "state_file = \"%s\";", state);
    struct admin a = admin_config(env, &cfg, NULL);
    const char *const damaged[] = {
        "this is not JSON at all {{{\n",
        "{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"addr",
        "{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:notaport\", "
        "\"source\": \"runtime\", \"state\": \"ready\", \"weight\": 1}]}\n",
        "{\"version\": 99, \"backends\": []}\n",
    };
    for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
        FILE *fp = fopen(state, "w");
        assert_non_null(fp);
        fputs(damaged[i], fp);
        assert_int_equal(fclose(fp), 0);

        struct it_fulcrum *f = start(env, &cfg, &a);
        if (!it_fulcrum_wait_log(env, f, it_strf(env, "state file %s: corrupt: ", state), 1,
                                 SETTLE_MS)) {
            it_proc_dump(env, f->proc);
            fail_msg("state file %zu: no \"corrupt\" error naming it", i);
        }
        expect_summary(
            env, &a, it_strf(env, "%s up config 1, %s up config 1", addr(env, pa), addr(env, pb)));
        expect_reaches(env, f->port, 6, "a");
        expect_reaches(env, f->port, 6, "b");

        /* The next change writes it anew, whole. */
        expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"drain\"}");
        expect_state(env, state, it_strf(env, "web %s config drain", addr(env, pb)));
        it_proc_signal(f->proc, SIGTERM);
        it_fulcrum_expect_clean_exit(env, f, 6000);
    }
}

IT_TEST(unreadable_state_file_is_reported_and_ignored)
{
    int pa = it_backend_start(env, "a");
    int pb = it_backend_start(env, "b");
    const char *state = it_path(env, "state.json");
    assert_int_equal(mkdir(state, 0755), 0); /* a folder where the file should be */
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 2, pa, pb);
    cfg.top = it_strf(env, "state_file = \"%s\";", state);
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);
    if (!it_fulcrum_wait_log(env, f, it_strf(env, "state file %s: cannot read it: ", state), 1,
                             SETTLE_MS)) {
        it_proc_dump(env, f->proc);
        fail_msg("no error naming the unreadable state file");
    }
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s up config 1", addr(env, pa), addr(env, pb)));
    expect_reaches(env, f->port, 6, "b");

    /* A change still takes; writing it down fails, and says so. */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"drain\"}");
    expect_never(env, f->port, 6, "b");
    if (!it_fulcrum_wait_log(env, f, it_strf(env, "state file %s: cannot write it: ", state), 1,
                             SETTLE_MS)) {
        it_proc_dump(env, f->proc);
        fail_msg("no error about the state file that cannot be written");
    }

    /* The folder gone, the next change writes the file, with both changes. */
    assert_int_equal(rmdir(state), 0);
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pa), "{\"weight\": 4}");
    expect_state(
        env, state,
        it_strf(env, "web %s config drain, web %s config ready 4", addr(env, pb), addr(env, pa)));
}

/* ---- 8. the token ---------------------------------------------------------------------- */

IT_TEST(token_guards_every_change)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 2);
    int pa = pool->ports[0], pb = pool->ports[1];
    int pc = it_backend_start(env, "c");
    struct admin a = admin_config(env, &cfg, TOKEN);
    struct it_fulcrum *f = start(env, &cfg, &a);
    long long gen = status_generation(env, &a);
    const char *before = web_summary(env, &a);

    const char *post = it_strf(env, "{\"address\": \"%s\"}", addr(env, pc));
    const char *const auths[] = {NULL, "Bearer wrong-token", "Basic " TOKEN, "Bearer"};
    for (size_t i = 0; i < sizeof(auths) / sizeof(auths[0]); i++) {
        const char *auth = auths[i];
        assert_int_equal(call_auth(env, a.port, auth, "POST", "/api/pools/web/backends", post),
                         401);
        assert_true(strlen(jstr(answer, "error")) > 0);
        assert_int_equal(call_auth(env, a.port, auth, "PATCH", backend_path(env, "web", pa),
                                   "{\"state\": \"drain\"}"),
                         401);
        assert_int_equal(call_auth(env, a.port, auth, "DELETE", backend_path(env, "web", pb), NULL),
                         401);
    }
    /* Nothing changed. */
    assert_int_equal(status_generation(env, &a), gen);
    expect_summary(env, &a, before);
    expect_reaches(env, f->port, 6, "a");
    expect_reaches(env, f->port, 6, "b");
    expect_never(env, f->port, 6, "c");
    assert_int_equal(it_fulcrum_log_count(env, f, "runtime: "), 0);

    /* With it, each works. */
    expect_call(env, &a, 201, "POST", "/api/pools/web/backends", post);
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pa), "{\"state\": \"drain\"}");
    expect_call(env, &a, 200, "DELETE", backend_path(env, "web", pb), NULL);
    expect_summary(
        env, &a, it_strf(env, "%s drain config 1, %s up runtime 1", addr(env, pa), addr(env, pc)));
    expect_all_from(env, f->port, 6, "c");
}

/* ---- 9. bad requests ------------------------------------------------------------------- */

struct bad_case {
    const char *method;
    const char *path; /* "{A}" stands for backend a's address */
    const char *body; /* NULL: none */
    int status;
    const char *error; /* what the error must contain */
};

/* text with every "{A}" replaced by `a`. */
static const char *subst(struct it_env *env, const char *text, const char *a)
{
    if (text == NULL)
        return NULL;
    const char *out = "";
    const char *at;
    while ((at = strstr(text, "{A}")) != NULL) {
        out = it_strf(env, "%s%.*s%s", out, (int)(at - text), text, a);
        text = at + 3;
    }
    return it_strf(env, "%s%s", out, text);
}

#define POST_WEB "POST", "/api/pools/web/backends"
#define PATCH_A "PATCH", "/api/pools/web/backends/{A}"

static const struct bad_case bad_cases[] = {
    {"POST", "/api/pools/nope/backends", "{\"address\": \"127.0.0.1:9\"}", 404, "nope"},
    {"PATCH", "/api/pools/nope/backends/{A}", "{\"state\": \"drain\"}", 404, "nope"},
    {"DELETE", "/api/pools/nope/backends/{A}", NULL, 404, "nope"},
    {"PATCH", "/api/pools/web/backends/127.0.0.1:9", "{\"state\": \"drain\"}", 404, "127.0.0.1:9"},
    {"DELETE", "/api/pools/web/backends/127.0.0.1:9", NULL, 404, "127.0.0.1:9"},
    {POST_WEB, "{\"address\": \"127.0.0.1\"}", 400, "address"},
    {POST_WEB, "{\"address\": \"127.0.0.1:65536\"}", 400, "address"},
    {POST_WEB, "{\"address\": \"127.0.0.1:http\"}", 400, "address"},
    {POST_WEB, "{\"address\": \"300.1.2.3:80\"}", 400, "address"},
    {POST_WEB, "{\"address\": \"::1:80\"}", 400, "address"},
    {POST_WEB, "{\"address\": \"\"}", 400, "address"},
    {POST_WEB, "{\"address\": \"localhost:8080\"}", 400, "localhost"},
    {POST_WEB, "{\"address\": \"backend.example:80\"}", 400, "backend.example"},
    {POST_WEB, "{\"address\": 9}", 400, "address"},
    {POST_WEB, "{\"weight\": 1}", 400, "address"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"weight\": 0}", 400, "weight"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"weight\": 1001}", 400, "weight"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"weight\": -1}", 400, "weight"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"weight\": \"x\"}", 400, "weight"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"weight\": 1.5}", 400, "weight"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"state\": \"up\"}", 400, "state"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"state\": 1}", 400, "state"},
    {POST_WEB, "{\"address\": \"{A}\"}", 409, "{A}"},
    {POST_WEB, "{\"address\": \"{A}\", \"weight\": 3}", 409, "{A}"},
    {POST_WEB, "{\"address\": ", 400, "malformed JSON"},
    {POST_WEB, "not json", 400, "malformed JSON"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"address\": \"127.0.0.1:8\"}", 400, "JSON"},
    {POST_WEB, "{\"address\": \"127.0.0.1:9\", \"colour\": \"red\"}", 400, "colour"},
    {POST_WEB, "[\"127.0.0.1:9\"]", 400, "object"},
    {POST_WEB, "\"127.0.0.1:9\"", 400, "JSON"},
    {POST_WEB, "42", 400, "JSON"},
    {POST_WEB, "", 400, "object"},
    {PATCH_A, "{}", 400, "nothing to change"},
    {PATCH_A, "", 400, "object"},
    {PATCH_A, "{\"address\": \"127.0.0.1:9\"}", 400, "address"},
    {PATCH_A, "{\"weight\": 0}", 400, "weight"},
    {PATCH_A, "{\"weight\": 1001}", 400, "weight"},
    {PATCH_A, "{\"weight\": \"x\"}", 400, "weight"},
    {PATCH_A, "{\"state\": \"up\"}", 400, "state"},
    {PATCH_A, "{\"state\": \"drain\", \"weight\": 0}", 400, "weight"},
    {PATCH_A, "{\"state\": ", 400, "malformed JSON"},
    {PATCH_A, "[]", 400, "object"},
    {"PATCH", "/api/pools/web/backends/127.0.0.1%3", "{\"state\": \"drain\"}", 400, "percent"},
    {"PATCH", "/api/pools/web/backends/127.0.0.1%zz1", "{\"state\": \"drain\"}", 400, "percent"},
    {"PATCH", "/api/pools/web/backends/127.0.0.1%00", "{\"state\": \"drain\"}", 400, "percent"},
    {"DELETE", "/api/pools/web/backends/%G1", NULL, 400, "percent"},
    {"POST", "/api/pools/w%zz/backends", "{\"address\": \"127.0.0.1:9\"}", 400, "percent"},
};

/* A body over the admin listener's 64 KiB: 413 as soon as the head announces it. */
static void expect_oversized(struct it_env *env, const struct admin *a, const char *method,
                             const char *path)
{
    struct it_conn *c = it_connect(env, a->port);
    it_send_str(c, it_strf(env,
                           "%s %s HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n"
                           "Content-Length: %d\r\n\r\n",
                           method, path, 64 * 1024 + 1));
    struct it_response r;
    it_expect_response(c, method, &r);
    json_t *j = json_loads(r.body, 0, NULL);
    if (r.status != 413 || j == NULL || strlen(jstr(j, "error")) == 0)
        fail_msg("%s %s with a body of 64 KiB + 1: %d %s, expected 413 with a JSON error", method,
                 path, r.status, r.body);
    json_decref(j);
    it_response_free(&r);
    it_conn_close(c);
}

IT_TEST(bad_requests_get_json_errors)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 2);
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);
    const char *pa = addr(env, pool->ports[0]);
    long long gen = status_generation(env, &a);
    const char *before = web_summary(env, &a);

    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        const char *path = subst(env, bc->path, pa);
        const char *body = subst(env, bc->body, pa);
        int st = call(env, &a, bc->method, path, body);
        const char *error = jstr(answer, "error");
        const char *want = subst(env, bc->error, pa);
        if (st != bc->status || strstr(error, want) == NULL)
            fail_msg("case %zu: %s %s %s: %d %s; expected %d with an error that names \"%s\"", i,
                     bc->method, path, body ? body : "(no body)", st, answer_text(env), bc->status,
                     want);
    }
    expect_oversized(env, &a, "POST", "/api/pools/web/backends");
    expect_oversized(env, &a, "PATCH", subst(env, "/api/pools/web/backends/{A}", pa));

    /* None of it changed anything. */
    assert_int_equal(status_generation(env, &a), gen);
    expect_summary(env, &a, before);
    assert_int_equal(it_fulcrum_log_count(env, f, "runtime: "), 0);
    expect_reaches(env, f->port, 6, "a");
    expect_reaches(env, f->port, 6, "b");
}

IT_TEST(ipv6_backend_by_its_encoded_address)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 1);
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);
    /* Never served: added drained, then in maintenance. Any port will do. */
    int port = it_free_port();
    const char *v6 = it_strf(env, "[::1]:%d", port);
    const char *encoded = it_strf(env, "/api/pools/web/backends/%%5B%%3A%%3A1%%5D%%3A%d", port);

    expect_call(env, &a, 201, "POST", "/api/pools/web/backends",
                it_strf(env, "{\"address\": \"%s\", \"weight\": 3, \"state\": \"drain\"}", v6));
    expect_answer_backend(env, v6, 3, "drain", "runtime");
    /* The same address written otherwise is the same backend. */
    expect_call(env, &a, 409, "POST", "/api/pools/web/backends",
                it_strf(env, "{\"address\": \"[0:0:0:0:0:0:0:1]:%d\"}", port));

    expect_call(env, &a, 200, "PATCH", encoded, "{\"state\": \"maint\", \"weight\": 9}");
    expect_answer_backend(env, v6, 9, "maint", "runtime");
    expect_summary(
        env, &a, it_strf(env, "%s up config 1, %s maint runtime 9", addr(env, pool->ports[0]), v6));
    expect_all_from(env, f->port, 4, "a");

    expect_call(env, &a, 200, "DELETE", encoded, NULL);
    assert_string_equal(jstr(answer, "address"), v6);
    expect_summary(env, &a, it_strf(env, "%s up config 1", addr(env, pool->ports[0])));
    expect_call(env, &a, 404, "PATCH", encoded, "{\"state\": \"ready\"}");
}

/* ---- 10. every backend drained ---------------------------------------------------------- */

IT_TEST(pool_with_every_backend_drained_answers_503)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 2);
    struct admin a = admin_config(env, &cfg, NULL);
    struct it_fulcrum *f = start(env, &cfg, &a);
    int pa = pool->ports[0], pb = pool->ports[1];

    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pa), "{\"state\": \"drain\"}");
    expect_never(env, f->port, 4, "a");
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"drain\"}");
    /* At once after the answer: no backend. */
    for (int i = 0; i < 4; i++) {
        const char *from;
        int st = fetch_from(env, f->port, &from);
        if (st != 503 || from[0] != '\0')
            fail_msg("request %d with every backend drained: %d from \"%s\", expected 503 from "
                     "fulcrum",
                     i, st, from);
    }
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pb), "{\"state\": \"maint\"}");
    {
        const char *from;
        assert_int_equal(fetch_from(env, f->port, &from), 503);
    }
    expect_summary(
        env, &a,
        it_strf(env, "%s drain config 1, %s maint config 1", addr(env, pa), addr(env, pb)));

    /* One ready again: served at once, by it alone. */
    expect_call(env, &a, 200, "PATCH", backend_path(env, "web", pa), "{\"state\": \"ready\"}");
    expect_all_from(env, f->port, 6, "a");
    expect_summary(env, &a,
                   it_strf(env, "%s up config 1, %s maint config 1", addr(env, pa), addr(env, pb)));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(add_under_load_takes_traffic_at_once),
    IT_CASE(drain_under_load_finishes_in_flight_and_closes_idle),
    IT_CASE(answer_comes_once_every_worker_serves_the_change),
    IT_CASE(maint_stops_health_probes_and_ready_restarts_them),
    IT_CASE(weight_changes_the_split),
    IT_CASE(remove_file_and_runtime_backends),
    IT_CASE(changes_survive_reload_and_restart),
    IT_CASE(corrupt_state_file_is_reported_and_ignored),
    IT_CASE(unreadable_state_file_is_reported_and_ignored),
    IT_CASE(token_guards_every_change),
    IT_CASE(bad_requests_get_json_errors),
    IT_CASE(ipv6_backend_by_its_encoded_address),
    IT_CASE(pool_with_every_backend_drained_answers_503),
};

IT_MAIN(tests)
