/*
 * `fulcrum ctl`, the admin listener's command-line client, run as a user
 * runs it against the real daemon: what it prints on stdout and stderr and
 * the status it exits with. The address and the token come from the file
 * (-c) or the command line (-a, --token-file), over TCP or a unix socket.
 *
 * The ctl_writes_* cases change backends at run time (add, drain, maint,
 * ready, weight, remove): they are written against the contract of the
 * runtime API (README: Runtime control) and need the daemon's side of it.
 */
#include "harness.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef FC_IT_VERSION
#error "FC_IT_VERSION (the project version) must be defined by the build"
#endif

#define TOKEN "ctl-test-token-0123456789"
#define CTL_TIMEOUT_MS 20000

/* A daemon with an admin listener on 127.0.0.1 and its token in a file of the env. */
struct admin {
    struct it_fulcrum *f;
    int port;
    const char *address;    /* "127.0.0.1:PORT" */
    const char *token_file; /* holds TOKEN */
};

/* Starts fulcrum with cfg, plus an admin group with a token (`token`) or without. */
static void start_admin(struct it_env *env, struct it_config *cfg, int token, struct admin *a)
{
    a->port = it_free_port();
    a->address = it_strf(env, "127.0.0.1:%d", a->port);
    a->token_file = it_write_file(env, "admin.token", "  " TOKEN "\n");
    cfg->admin =
        token ? it_strf(env, "address = \"%s\"; token_file = \"%s\";", a->address, a->token_file)
              : it_strf(env, "address = \"%s\";", a->address);
    a->f = it_fulcrum_start(env, cfg);
}

/* Runs `fulcrum ctl ARGS...` (NULL-terminated) to completion. */
static void ctl(struct it_env *env, struct it_run_result *r, ...)
{
    const char *argv[32] = {FC_BINARY, "ctl"};
    size_t n = 2;
    va_list ap;
    va_start(ap, r);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        if (n + 1 >= sizeof(argv) / sizeof(argv[0]))
            fail_msg("too many arguments for ctl()");
        argv[n++] = s;
    }
    va_end(ap);
    argv[n] = NULL;
    it_run(env, argv, CTL_TIMEOUT_MS, r);
}

/* Fails unless the command exited with `code`; prints what it said when it did not. */
static void expect_exit(const struct it_run_result *r, int code)
{
    if (r->exit_code != code)
        print_error("fulcrum ctl exited %d, expected %d\nstdout:\n%s\nstderr:\n%s\n", r->exit_code,
                    code, r->out, r->err);
    assert_int_equal(r->exit_code, code);
}

/* Fails unless `text` contains `needle`, showing both when it does not. */
static void expect_contains(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        print_error("expected \"%s\" in:\n%s\n", needle, text);
    assert_non_null(strstr(text, needle));
}

/* The JSON document on stdout. */
static json_t *parse_out(const struct it_run_result *r)
{
    json_error_t err;
    json_t *j = json_loads(r->out, 0, &err);
    if (j == NULL)
        fail_msg("fulcrum ctl --json printed no JSON (%s):\n%s", err.text, r->out);
    return j;
}

static json_t *find_named(const json_t *array, const char *key, const char *value)
{
    for (size_t i = 0; i < json_array_size(array); i++) {
        const char *s = json_string_value(json_object_get(json_array_get(array, i), key));
        if (s != NULL && strcmp(s, value) == 0)
            return json_array_get(array, i);
    }
    return NULL;
}

/* The backend `address` of pool `pool` in the daemon's status, through `ctl --json status`. */
static json_t *status_backend(struct it_env *env, const struct admin *a, const char *pool,
                              const char *address, json_t **doc)
{
    struct it_run_result r;
    ctl(env, &r, "-c", a->f->config_path, "--json", "status", NULL);
    expect_exit(&r, 0);
    *doc = parse_out(&r);
    json_t *p = find_named(json_object_get(*doc, "pools"), "name", pool);
    assert_non_null(p);
    return find_named(json_object_get(p, "backends"), "address", address);
}

/* The line of `table` that starts with `first` followed by a blank, or NULL. */
static const char *row_of(struct it_env *env, const char *table, const char *first)
{
    const char *want = it_strf(env, "%s ", first);
    for (const char *line = table; *line != '\0';) {
        if (strncmp(line, want, strlen(want)) == 0) {
            size_t n = strcspn(line, "\n");
            return it_strf(env, "%.*s", (int)n, line);
        }
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return NULL;
}

/* One row of the backends table, split into its eight columns. */
struct row {
    char address[128], state[16], source[16], rate[32], p99[32];
    long weight, inflight, errors;
};

static void parse_row(struct it_env *env, const char *table, const char *address, struct row *out)
{
    const char *line = row_of(env, table, address);
    if (line == NULL)
        fail_msg("no row for %s in:\n%s", address, table);
    int n = sscanf(line, "%127s %ld %15s %15s %ld %31s %ld %31s", out->address, &out->weight,
                   out->state, out->source, &out->inflight, out->rate, &out->errors, out->p99);
    if (n != 8)
        fail_msg("a row of %d columns, not 8: \"%s\"", n, line);
}

/* 1-based number of the first line of `text` containing `needle`. */
static int line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    assert_non_null(at);
    int line = 1;
    for (const char *p = text; p < at; p++)
        line += *p == '\n';
    return line;
}

/* Writes text over fulcrum's config file the way an editor that renames does. */
static void rewrite_config(struct it_env *env, struct it_fulcrum *f, const char *text)
{
    const char *tmp = it_write_file(env, "next.conf.tmp", text);
    if (rename(tmp, f->config_path) != 0)
        fail_msg("rename: %s", strerror(errno));
}

/* GET / through the proxy; the demo backend's name that answered ("a"), owned by the env. */
static const char *get_name(struct it_env *env, int port)
{
    struct it_response resp;
    it_get(env, port, "test", "/", &resp);
    assert_int_equal(resp.status, 200);
    const char *name = it_strf(env, "%.*s", (int)strcspn(resp.body, "\n"), resp.body);
    it_response_free(&resp);
    return name;
}

/* ---- status ------------------------------------------------------------- */

IT_TEST(ctl_status)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 2);
    struct admin a;
    start_admin(env, &cfg, 1, &a);

    /* -c: the address and the token come from the daemon's own file. */
    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "status", NULL);
    expect_exit(&r, 0);
    expect_contains(r.out, "version     " FC_IT_VERSION " (plugin ABI ");
    expect_contains(r.out, it_strf(env, "pid         %d\n", (int)it_proc_pid(a.f->proc)));
    expect_contains(r.out, "generation  1\n");
    expect_contains(r.out, it_strf(env, "workers     %d\n", cfg.workers));
    expect_contains(r.out, "reloads     0 done, 0 failed\n");
    expect_contains(r.out, it_strf(env, "listener    127.0.0.1:%d -> web, ", a.f->port));
    expect_contains(r.out, "pool        web: round_robin ");
    expect_contains(r.out, ", 2/2 backends up\n");
    assert_null(strstr(r.out, "last error"));
    assert_string_equal(r.err, "");

    /* --json: the server's document, whole. */
    ctl(env, &r, "-c", a.f->config_path, "--json", "status", NULL);
    expect_exit(&r, 0);
    json_t *j = parse_out(&r);
    assert_string_equal(json_string_value(json_object_get(j, "version")), FC_IT_VERSION);
    assert_int_equal(json_integer_value(json_object_get(j, "pid")), it_proc_pid(a.f->proc));
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 1);
    json_t *pool = find_named(json_object_get(j, "pools"), "name", "web");
    assert_non_null(pool);
    assert_int_equal(json_array_size(json_object_get(pool, "backends")), 2);
    assert_non_null(find_named(json_object_get(pool, "backends"), "address",
                               it_strf(env, "127.0.0.1:%d", cfg.pools[0].ports[1])));
    json_decref(j);

    /* Options after the command are options too. */
    ctl(env, &r, "status", "--json", "-a", a.address, "--token-file", a.token_file, NULL);
    expect_exit(&r, 0);
    json_decref(parse_out(&r));
}

/* ---- backends ----------------------------------------------------------- */

IT_TEST(ctl_backends_table)
{
    struct it_config cfg;
    struct it_pool_config *web = it_config_demo_pool(env, &cfg, 2);
    /* A dead backend: its failed connects are its errors (the request retries elsewhere). */
    web->ports[web->nports++] = it_dead_port(env);
    web->retries = 2;
    web->pool_options = "max_fails = 0;";
    struct admin a;
    start_admin(env, &cfg, 0, &a);
    for (int i = 0; i < 6; i++)
        get_name(env, a.f->port);

    struct it_run_result r;
    ctl(env, &r, "-a", a.address, "backends", NULL);
    expect_exit(&r, 0);
    expect_contains(r.out, "pool web (round_robin)\n");
    const char *head = row_of(env, r.out, "ADDRESS");
    assert_non_null(head);
    /* The columns, in order, each where its values are. */
    const char *cols[] = {"ADDRESS",  "WEIGHT", "STATE",  "SOURCE",
                          "INFLIGHT", "REQ/S",  "ERRORS", "P99"};
    const char *at = head;
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        const char *next = strstr(at, cols[i]);
        if (next == NULL)
            fail_msg("column %s missing or out of order in \"%s\"", cols[i], head);
        at = next + strlen(cols[i]);
    }
    for (size_t i = 0; i < 2; i++) {
        struct row row;
        parse_row(env, r.out, it_strf(env, "127.0.0.1:%d", web->ports[i]), &row);
        assert_int_equal(row.weight, 1);
        assert_string_equal(row.state, "up");
        assert_string_equal(row.source, "config");
        assert_int_equal(row.inflight, 0);
        assert_string_equal(row.rate, "0.0"); /* nothing was sent during the second */
        assert_int_equal(row.errors, 0);
        assert_non_null(strstr(row.p99, "ms"));
    }
    struct row dead;
    parse_row(env, r.out, it_strf(env, "127.0.0.1:%d", web->ports[2]), &dead);
    assert_true(dead.errors >= 1);
    assert_string_equal(dead.p99, "-"); /* it never answered */
    /* Aligned: the STATE column starts at the same place on every line. */
    size_t state_at = (size_t)(strstr(head, "STATE") - head);
    const char *row0 = row_of(env, r.out, it_strf(env, "127.0.0.1:%d", web->ports[0]));
    assert_memory_equal(row0 + state_at, "up ", 3);
}

IT_TEST(ctl_backends_rate)
{
    struct it_config cfg;
    struct it_pool_config *web = it_config_demo_pool(env, &cfg, 2);
    struct admin a;
    start_admin(env, &cfg, 0, &a);

    /* Requests all through the second that `backends` measures: a rate above 0 for each. */
    const char *argv[] = {FC_BINARY, "ctl", "-a", a.address, "--json", "backends", "web", NULL};
    struct it_proc *p = it_start(env, "ctl", argv);
    int status = -1;
    int sent = 0;
    int64_t until = it_now_ms() + 5000;
    while (it_proc_wait(p, 0, &status) == -ETIMEDOUT && it_now_ms() < until) {
        get_name(env, a.f->port);
        sent++;
    }
    assert_int_equal(it_proc_wait(p, CTL_TIMEOUT_MS, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    json_error_t err;
    json_t *j = json_loads(it_proc_stdout(env, p), 0, &err);
    if (j == NULL)
        fail_msg("no JSON (%s): %s", err.text, it_proc_stdout(env, p));
    /* The pools array, filtered to the pool asked for. */
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 1);
    json_t *pool = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(pool, "name")), "web");
    double total = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *b = find_named(json_object_get(pool, "backends"), "address",
                               it_strf(env, "127.0.0.1:%d", web->ports[i]));
        assert_non_null(b);
        json_t *rate = json_object_get(b, "requests_per_s");
        assert_true(json_is_number(rate));
        assert_true(json_number_value(rate) > 0);
        total += json_number_value(rate);
    }
    /* At most what was sent over the time it took (a second and a bit). */
    assert_true(total <= sent + 1);
    json_decref(j);
}

IT_TEST(ctl_backends_unknown_pool)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct admin a;
    start_admin(env, &cfg, 1, &a);
    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "backends", "nosuch", NULL);
    expect_exit(&r, 1);
    expect_contains(r.err, "fulcrum ctl: no such pool: nosuch\n");
    assert_string_equal(r.out, "");
    ctl(env, &r, "-c", a.f->config_path, "--json", "backends", "nosuch", NULL);
    expect_exit(&r, 1);
    assert_string_equal(r.out, "");
}

/* ---- reload ------------------------------------------------------------- */

IT_TEST(ctl_reload)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct admin a;
    start_admin(env, &cfg, 1, &a);

    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "reload", NULL);
    expect_exit(&r, 0);
    assert_string_equal(r.out, "reloaded: generation 2\n");

    /* A broken file: every error line the daemon found, with its file and line. */
    const char *good = it_config_render(env, &cfg, a.f->port);
    const char *bad = it_strf(env, "%s\nbogus_key = 1;\nother_bogus_key = 2;\n", good);
    rewrite_config(env, a.f, bad);
    ctl(env, &r, "-a", a.address, "--token-file", a.token_file, "reload", NULL);
    expect_exit(&r, 1);
    assert_string_equal(r.out, "");
    expect_contains(r.err, it_strf(env, "fulcrum ctl: %s:%d: ", a.f->config_path,
                                   line_of(bad, "other_bogus_key")));
    expect_contains(
        r.err, it_strf(env, "fulcrum ctl: %s:%d: ", a.f->config_path, line_of(bad, "bogus_key")));

    /* The generation in force stays, and status says the reload failed, and why. */
    ctl(env, &r, "-a", a.address, "--token-file", a.token_file, "status", NULL);
    expect_exit(&r, 0);
    expect_contains(r.out, "generation  2\n");
    expect_contains(r.out, "reloads     1 done, 1 failed\n");
    expect_contains(r.out, it_strf(env, "last error  %s:", a.f->config_path));

    /* -c cannot read the admin group of a file that does not load: it says so, exit 2. */
    ctl(env, &r, "-c", a.f->config_path, "reload", NULL);
    expect_exit(&r, 2);
    expect_contains(
        r.err, it_strf(env, "fulcrum ctl: %s:%d: ", a.f->config_path, line_of(bad, "bogus_key")));
    expect_contains(r.err, "does not load");

    rewrite_config(env, a.f, good);
    ctl(env, &r, "-c", a.f->config_path, "--json", "reload", NULL);
    expect_exit(&r, 0);
    json_t *j = parse_out(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 3);
    json_decref(j);
}

/* ---- tokens and addresses ----------------------------------------------- */

IT_TEST(ctl_token)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct admin a;
    start_admin(env, &cfg, 1, &a);
    const char *wrong = it_write_file(env, "wrong.token", "not-the-token\n");

    /* No token: the server's 401, said as it said it. */
    struct it_run_result r;
    ctl(env, &r, "-a", a.address, "status", NULL);
    expect_exit(&r, 1);
    expect_contains(r.err, "fulcrum ctl: this endpoint needs Authorization: Bearer <token>\n");
    assert_string_equal(r.out, "");

    ctl(env, &r, "-a", a.address, "--token-file", wrong, "status", NULL);
    expect_exit(&r, 1);
    expect_contains(r.err, "fulcrum ctl: this endpoint needs Authorization: Bearer <token>\n");

    /* --token-file wins over the file's token. */
    ctl(env, &r, "-c", a.f->config_path, "--token-file", wrong, "status", NULL);
    expect_exit(&r, 1);
    ctl(env, &r, "-a", a.address, "--token-file", a.token_file, "status", NULL);
    expect_exit(&r, 0);

    /* A token file that cannot be used is the user's error: nothing is sent. */
    ctl(env, &r, "-a", a.address, "--token-file", it_path(env, "missing.token"), "status", NULL);
    expect_exit(&r, 2);
    expect_contains(r.err, "missing.token");
    ctl(env, &r, "-a", a.address, "--token-file", it_write_file(env, "empty.token", " \n"),
        "status", NULL);
    expect_exit(&r, 2);
    expect_contains(r.err, "is empty");
    ctl(env, &r, "-a", a.address, "--token-file", it_write_file(env, "two.token", "a b\n"),
        "status", NULL);
    expect_exit(&r, 2);
    expect_contains(r.err, "one word");
}

IT_TEST(ctl_config_without_admin)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    struct it_run_result r;
    ctl(env, &r, "-c", f->config_path, "status", NULL);
    expect_exit(&r, 2);
    expect_contains(r.err, it_strf(env,
                                   "fulcrum ctl: %s has no admin group: add admin = { "
                                   "address = ...; } or use -a\n",
                                   f->config_path));
    ctl(env, &r, "-c", it_path(env, "missing.conf"), "status", NULL);
    expect_exit(&r, 2);
    expect_contains(r.err, "missing.conf");
}

IT_TEST(ctl_unix_socket)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.admin = "address = \"unix:admin.sock\";"; /* relative: next to the file */
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_run_result r;
    ctl(env, &r, "-c", f->config_path, "status", NULL);
    expect_exit(&r, 0);
    expect_contains(r.out, "generation  1\n");

    ctl(env, &r, "-a", it_strf(env, "unix:%s", it_path(env, "admin.sock")), "--json", "backends",
        NULL);
    expect_exit(&r, 0);
    json_t *j = parse_out(&r);
    assert_non_null(find_named(j, "name", "web"));
    json_decref(j);

    ctl(env, &r, "-c", f->config_path, "reload", NULL);
    expect_exit(&r, 0);
    assert_string_equal(r.out, "reloaded: generation 2\n");
}

IT_TEST(ctl_unreachable)
{
    struct it_run_result r;
    int dead = it_dead_port(env);
    ctl(env, &r, "-a", it_strf(env, "127.0.0.1:%d", dead), "status", NULL);
    expect_exit(&r, 3);
    expect_contains(r.err, it_strf(env, "fulcrum ctl: cannot connect to 127.0.0.1:%d: ", dead));
    assert_string_equal(r.out, "");
    ctl(env, &r, "-a", it_strf(env, "unix:%s", it_path(env, "nobody.sock")), "reload", NULL);
    expect_exit(&r, 3);
    expect_contains(r.err, "nobody.sock");

    /* A config whose admin listener is not running is unreachable too. */
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 1, dead);
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", dead);
    const char *path = it_write_file(env, "down.conf", it_config_render(env, &cfg, it_free_port()));
    ctl(env, &r, "-c", path, "backends", NULL);
    expect_exit(&r, 3);
}

/* ---- the requests as sent, and answers the admin listener never gives ---- */

/*
 * A raw server (raw_backend.c) reads one request, head and Content-Length
 * body, answers the bytes `arg` (a NUL-terminated string that lives until
 * teardown) and closes. "" closes without an answer.
 */
static void answer_once(int fd, void *arg)
{
    const char *answer = arg;
    char buf[16384];
    size_t len = 0;
    ssize_t head = it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 5000);
    if (head < 0)
        return;
    long body = it_raw_content_length(buf, (size_t)head);
    if (body > 0 &&
        it_raw_read_len(fd, buf, sizeof(buf), &len, (size_t)head + (size_t)body, 5000) != 0)
        return;
    it_raw_write_str(fd, answer);
}

/* A raw server that answers every connection with `answer`; its port. */
static int answering(struct it_env *env, const char *answer)
{
    char *copy = it_zalloc(env, strlen(answer) + 1);
    memcpy(copy, answer, strlen(answer));
    return it_raw_backend_start(env, answer_once, copy);
}

/* An answer with a JSON body and its Content-Length. */
static const char *json_answer(struct it_env *env, int status, const char *body)
{
    return it_strf(env,
                   "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
                   "%zu\r\nConnection: close\r\n\r\n%s",
                   status, strlen(body), body);
}

/* The request of connection i: its head lines must hold each of `lines`; returns its body. */
static const char *expect_request(struct it_env *env, int port, size_t i, const char *start,
                                  const char *const *lines)
{
    const char *got = it_raw_backend_received(env, port, i, NULL);
    if (got == NULL)
        fail_msg("no request %zu on the raw server", i);
    if (strncmp(got, start, strlen(start)) != 0)
        fail_msg("expected a request starting \"%s\", got:\n%s", start, got);
    const char *end = strstr(got, "\r\n\r\n");
    assert_non_null(end);
    const char *head = it_strf(env, "%.*s", (int)(end - got + 2), got);
    for (; *lines != NULL; lines++)
        expect_contains(head, it_strf(env, "\r\n%s\r\n", *lines));
    return end + 4;
}

/* Fails unless `body` is the JSON document `want` (compared as JSON). */
static void expect_json_body(const char *body, const char *want)
{
    json_error_t err;
    json_t *got = json_loads(body, 0, &err);
    json_t *expected = json_loads(want, 0, &err);
    assert_non_null(expected);
    if (got == NULL || !json_equal(got, expected))
        fail_msg("expected the body %s, got \"%s\"", want, body);
    json_decref(got);
    json_decref(expected);
}

IT_TEST(ctl_request_format)
{
    const char *token = it_write_file(env, "t.token", TOKEN "\n");
    int port = answering(
        env, json_answer(env, 200,
                         "{\"ok\": true, \"pool\": \"my pool/x\", \"address\": \"[::1]:9004\", "
                         "\"inflight\": 2, \"backend\": {\"address\": \"[::1]:9004\", "
                         "\"weight\": 3, \"state\": \"drain\", \"source\": \"runtime\"}}"));
    const char *addr = it_strf(env, "127.0.0.1:%d", port);
    const char *const json_lines[] = {"Connection: close", "Authorization: Bearer " TOKEN,
                                      "Content-Type: application/json",
                                      it_strf(env, "Host: %s", addr), NULL};
    const char *const plain_lines[] = {"Connection: close", "Authorization: Bearer " TOKEN,
                                       "Content-Length: 0", NULL};
    struct it_run_result r;

    /* Every byte outside the unreserved ones percent-encoded, in each path segment. */
    ctl(env, &r, "-a", addr, "--token-file", token, "drain", "my pool/x", "[::1]:9004", NULL);
    expect_exit(&r, 0);
    assert_string_equal(r.out, "my pool/x: [::1]:9004 drain (weight 3, runtime)\n");
    const char *body = expect_request(
        env, port, 0, "PATCH /api/pools/my%20pool%2Fx/backends/%5B%3A%3A1%5D%3A9004 HTTP/1.1\r\n",
        json_lines);
    expect_json_body(body, "{\"state\": \"drain\"}");

    ctl(env, &r, "-a", addr, "--token-file", token, "add", "web", "127.0.0.1:9004", "3", NULL);
    expect_exit(&r, 0);
    body = expect_request(env, port, 1, "POST /api/pools/web/backends HTTP/1.1\r\n", json_lines);
    expect_json_body(body, "{\"address\": \"127.0.0.1:9004\", \"weight\": 3}");

    ctl(env, &r, "-a", addr, "--token-file", token, "add", "web", "127.0.0.1:9005", NULL);
    expect_exit(&r, 0);
    body = expect_request(env, port, 2, "POST /api/pools/web/backends HTTP/1.1\r\n", json_lines);
    /* Without WEIGHT, none is sent: the server's default (1, or the file's for its backend). */
    expect_json_body(body, "{\"address\": \"127.0.0.1:9005\"}");

    ctl(env, &r, "-a", addr, "--token-file", token, "weight", "web", "127.0.0.1:9004", "7", NULL);
    expect_exit(&r, 0);
    body = expect_request(
        env, port, 3, "PATCH /api/pools/web/backends/127.0.0.1%3A9004 HTTP/1.1\r\n", json_lines);
    expect_json_body(body, "{\"weight\": 7}");

    ctl(env, &r, "-a", addr, "--token-file", token, "maint", "web", "127.0.0.1:9004", NULL);
    expect_exit(&r, 0);
    body = expect_request(
        env, port, 4, "PATCH /api/pools/web/backends/127.0.0.1%3A9004 HTTP/1.1\r\n", json_lines);
    expect_json_body(body, "{\"state\": \"maint\"}");
    ctl(env, &r, "-a", addr, "--token-file", token, "ready", "web", "127.0.0.1:9004", NULL);
    expect_exit(&r, 0);
    body = expect_request(
        env, port, 5, "PATCH /api/pools/web/backends/127.0.0.1%3A9004 HTTP/1.1\r\n", json_lines);
    expect_json_body(body, "{\"state\": \"ready\"}");

    ctl(env, &r, "-a", addr, "--token-file", token, "remove", "web", "[::1]:9004", NULL);
    expect_exit(&r, 0);
    assert_string_equal(r.out,
                        "my pool/x: [::1]:9004 removed (2 requests in flight finish first)\n");
    body = expect_request(env, port, 6,
                          "DELETE /api/pools/web/backends/%5B%3A%3A1%5D%3A9004 HTTP/1.1\r\n",
                          plain_lines);
    assert_string_equal(body, "");

    /* --json: the answer as the server gave it. */
    ctl(env, &r, "-a", addr, "--json", "reload", NULL);
    expect_exit(&r, 0);
    expect_json_body(r.out, "{\"ok\": true, \"pool\": \"my pool/x\", \"address\": "
                            "\"[::1]:9004\", \"inflight\": 2, \"backend\": {\"address\": "
                            "\"[::1]:9004\", \"weight\": 3, \"state\": \"drain\", "
                            "\"source\": \"runtime\"}}");
    /* Without a token, no Authorization header at all. */
    const char *got = it_raw_backend_received(env, port, 7, NULL);
    assert_non_null(got);
    assert_true(strncmp(got, "POST /api/reload HTTP/1.1\r\n", 27) == 0);
    assert_null(strstr(got, "Authorization"));
}

IT_TEST(ctl_odd_answers)
{
    struct it_run_result r;
    /* Closed without an answer: the listener is not reachable, exit 3. */
    int closes = answering(env, "");
    ctl(env, &r, "-a", it_strf(env, "127.0.0.1:%d", closes), "status", NULL);
    expect_exit(&r, 3);
    expect_contains(r.err, "closed the connection before its answer was complete");

    int garbage = answering(env, "SSH-2.0-OpenSSH_9.2\r\n");
    ctl(env, &r, "-a", it_strf(env, "127.0.0.1:%d", garbage), "status", NULL);
    expect_exit(&r, 1);
    expect_contains(r.err, "did not answer with HTTP/1.1");

    int not_json = answering(env, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    ctl(env, &r, "-a", it_strf(env, "127.0.0.1:%d", not_json), "status", NULL);
    expect_exit(&r, 1);
    expect_contains(r.err, "with 200 but no JSON document");

    int oops = answering(env, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 9\r\n\r\nupstream\n");
    ctl(env, &r, "-a", it_strf(env, "127.0.0.1:%d", oops), "reload", NULL);
    expect_exit(&r, 1);
    expect_contains(r.err, "fulcrum ctl: the admin listener answered 502: upstream\n");

    /* A refused reload: each error on its own line. */
    int refused = answering(
        env, json_answer(env, 422,
                         "{\"ok\": false, \"errors\": [\"a.conf:3: one\", \"a.conf:9: two\"]}"));
    ctl(env, &r, "-a", it_strf(env, "127.0.0.1:%d", refused), "reload", NULL);
    expect_exit(&r, 1);
    assert_string_equal(r.err, "fulcrum ctl: a.conf:3: one\nfulcrum ctl: a.conf:9: two\n");

    /* A chunked body, read to its end; the summary of an older daemon's fields. */
    const char *doc =
        "{\"version\": \"9.9.9\", \"abi\": \"1.0\", \"pid\": 42, \"uptime_s\": 93725, "
        "\"generation\": 7, \"workers\": 3, \"reloads\": {\"done\": 6, \"failed\": 1, "
        "\"last_error\": \"x.conf:3: bad\"}, \"listeners\": [{\"address\": "
        "\"127.0.0.1:80\", \"pool\": \"web\", \"connections\": 12, \"tls\": true}], "
        "\"pools\": [{\"name\": \"web\", \"strategy\": {\"plugin\": \"p2c\", "
        "\"version\": \"1.2.0\"}, \"health\": {\"plugin\": \"http\"}, "
        "\"rate_limit\": null, \"backends\": [{\"address\": \"10.0.0.1:80\", "
        "\"state\": \"up\"}, {\"address\": \"10.0.0.2:80\", \"state\": "
        "\"down\"}]}]}";
    size_t half = strlen(doc) / 2;
    int chunked = answering(env, it_strf(env,
                                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         "%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n",
                                         half, (int)half, doc, strlen(doc) - half, doc + half));
    ctl(env, &r, "-a", it_strf(env, "127.0.0.1:%d", chunked), "status", NULL);
    expect_exit(&r, 0);
    assert_string_equal(r.out, "version     9.9.9 (plugin ABI 1.0)\n"
                               "pid         42\n"
                               "uptime      1d 2h 2m 5s\n"
                               "generation  7\n"
                               "workers     3\n"
                               "reloads     6 done, 1 failed\n"
                               "last error  x.conf:3: bad\n"
                               "listener    127.0.0.1:80 -> web, 12 connections, tls\n"
                               "pool        web: p2c 1.2.0, health http, 1/2 backends up\n");
}

/* ---- the command line --------------------------------------------------- */

/* Expects exit 2 with `needle` and the usage on stderr, nothing on stdout. */
static void expect_usage_error(struct it_env *env, const char *needle, const char *const *args)
{
    const char *argv[16] = {FC_BINARY, "ctl"};
    size_t n = 2;
    for (; args[n - 2] != NULL; n++)
        argv[n] = args[n - 2];
    argv[n] = NULL;
    struct it_run_result r;
    it_run(env, argv, CTL_TIMEOUT_MS, &r);
    expect_exit(&r, 2);
    expect_contains(r.err, needle);
    expect_contains(r.err, "usage: fulcrum ctl ");
    assert_string_equal(r.out, "");
}

IT_TEST(ctl_usage)
{
    /* A dead address: a usage error must be found before anything is sent or read. */
    const char *dead = it_strf(env, "127.0.0.1:%d", it_dead_port(env));
    expect_usage_error(env, "a command is needed", (const char *[]){"-a", dead, NULL});
    expect_usage_error(env, "unknown command \"frobnicate\"",
                       (const char *[]){"-a", dead, "frobnicate", NULL});
    expect_usage_error(env, "expected fulcrum ctl drain POOL ADDRESS",
                       (const char *[]){"-a", dead, "drain", "web", NULL});
    expect_usage_error(env, "expected fulcrum ctl status",
                       (const char *[]){"-a", dead, "status", "extra", NULL});
    expect_usage_error(env, "expected fulcrum ctl weight POOL ADDRESS N",
                       (const char *[]){"-a", dead, "weight", "web", "127.0.0.1:1", NULL});
    expect_usage_error(env, "invalid weight \"heavy\"",
                       (const char *[]){"-a", dead, "weight", "web", "127.0.0.1:1", "heavy", NULL});
    expect_usage_error(env, "invalid weight \"2x\"",
                       (const char *[]){"-a", dead, "add", "web", "127.0.0.1:1", "2x", NULL});
    expect_usage_error(env, "-c and -a exclude each other",
                       (const char *[]){"-c", "x.conf", "-a", dead, "status", NULL});
    expect_usage_error(env, "unknown option --frob", (const char *[]){"--frob", "status", NULL});
    expect_usage_error(env, "--token-file needs a value",
                       (const char *[]){"status", "--token-file", NULL});

    struct it_run_result r;
    ctl(env, &r, "-a", "no-port-here", "status", NULL);
    expect_exit(&r, 2);
    expect_contains(r.err, "fulcrum ctl: invalid admin address \"no-port-here\"");

    /* Help is asked for: stdout, exit 0. */
    ctl(env, &r, "--help", NULL);
    expect_exit(&r, 0);
    expect_contains(r.out,
                    "usage: fulcrum ctl [-c FILE | -a ADDRESS] [--token-file FILE] [--json]");
    expect_contains(r.out, "  backends [POOL]");
    assert_string_equal(r.err, "");
    ctl(env, &r, "-h", NULL);
    expect_exit(&r, 0);

    /* The daemon's own help tells of ctl. */
    const char *const argv[] = {FC_BINARY, "--help", NULL};
    it_run(env, argv, CTL_TIMEOUT_MS, &r);
    expect_exit(&r, 0);
    expect_contains(r.out, "fulcrum ctl");
}

/* ---- runtime changes: need the daemon's runtime API --------------------- */

/* A pool "web" of backends a and b, an admin listener with a token. */
static void start_writes(struct it_env *env, struct it_config *cfg, struct admin *a)
{
    it_config_demo_pool(env, cfg, 2);
    start_admin(env, cfg, 1, a);
}

/*
 * Fails unless `out` is the confirmation of a change, "POOL: ADDRESS STATE
 * (weight W, SOURCE)\n". A backend in rotation is "ready" as the change asked
 * or "up" as the status says it: either is the server's to choose.
 */
static void expect_change(struct it_env *env, const char *out, const char *pool,
                          const char *address, const char *state, int weight, const char *source)
{
    const char *tail = it_strf(env, " (weight %d, %s)\n", weight, source);
    const char *exact = it_strf(env, "%s: %s %s%s", pool, address, state, tail);
    const char *ready = it_strf(env, "%s: %s ready%s", pool, address, tail);
    const char *up = it_strf(env, "%s: %s up%s", pool, address, tail);
    int in_rotation = strcmp(state, "ready") == 0 || strcmp(state, "up") == 0;
    if (strcmp(out, exact) != 0 &&
        !(in_rotation && (strcmp(out, ready) == 0 || strcmp(out, up) == 0)))
        fail_msg("expected \"%s\", got \"%s\"", exact, out);
}

/* Waits up to 2 s (a change is in force within one) until n answers in a row come from `name`. */
static bool answers_only(struct it_env *env, int port, const char *name, int n)
{
    int64_t until = it_now_ms() + 2000;
    int run = 0;
    while (run < n && it_now_ms() < until)
        run = strcmp(get_name(env, port), name) == 0 ? run + 1 : 0;
    return run >= n;
}

IT_TEST(ctl_writes_add_remove)
{
    struct it_config cfg;
    struct admin a;
    start_writes(env, &cfg, &a);
    int port_c = it_backend_start(env, "c");
    const char *c_addr = it_strf(env, "127.0.0.1:%d", port_c);

    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "add", "web", c_addr, "2", NULL);
    expect_exit(&r, 0);
    expect_change(env, r.out, "web", c_addr, "ready", 2, "runtime");

    json_t *doc;
    json_t *b = status_backend(env, &a, "web", c_addr, &doc);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "source")), "runtime");
    assert_int_equal(json_integer_value(json_object_get(b, "weight")), 2);
    json_decref(doc);
    /* It takes traffic. */
    int from_c = 0;
    for (int i = 0; i < 12; i++)
        from_c += strcmp(get_name(env, a.f->port), "c") == 0;
    assert_true(from_c > 0);

    /* Twice: the server's 409, said as it said it. */
    ctl(env, &r, "-c", a.f->config_path, "add", "web", c_addr, NULL);
    expect_exit(&r, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "fulcrum ctl: "));
    ctl(env, &r, "-c", a.f->config_path, "add", "nosuch", c_addr, NULL);
    expect_exit(&r, 1);
    ctl(env, &r, "-c", a.f->config_path, "add", "web", "not an address", NULL);
    expect_exit(&r, 1);

    ctl(env, &r, "-c", a.f->config_path, "remove", "web", c_addr, NULL);
    expect_exit(&r, 0);
    expect_contains(r.out, it_strf(env, "web: %s removed", c_addr));
    assert_null(status_backend(env, &a, "web", c_addr, &doc));
    json_decref(doc);
    ctl(env, &r, "-c", a.f->config_path, "remove", "web", c_addr, NULL);
    expect_exit(&r, 1);
}

IT_TEST(ctl_writes_drain_ready)
{
    struct it_config cfg;
    struct admin a;
    start_writes(env, &cfg, &a);
    const char *a_addr = it_strf(env, "127.0.0.1:%d", cfg.pools[0].ports[0]);

    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "drain", "web", a_addr, NULL);
    expect_exit(&r, 0);
    expect_change(env, r.out, "web", a_addr, "drain", 1, "config");
    assert_true(answers_only(env, a.f->port, "b", 6));

    ctl(env, &r, "-c", a.f->config_path, "backends", "web", NULL);
    expect_exit(&r, 0);
    struct row row;
    parse_row(env, r.out, a_addr, &row);
    assert_string_equal(row.state, "drain");

    ctl(env, &r, "-c", a.f->config_path, "--json", "ready", "web", a_addr, NULL);
    expect_exit(&r, 0);
    json_t *j = parse_out(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_true(json_is_string(json_object_get(json_object_get(j, "backend"), "state")));
    json_decref(j);
    json_t *doc;
    json_t *b = status_backend(env, &a, "web", a_addr, &doc);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "state")), "up");
    json_decref(doc);
    int from_a = 0;
    for (int i = 0; i < 8; i++)
        from_a += strcmp(get_name(env, a.f->port), "a") == 0;
    assert_true(from_a > 0);
}

IT_TEST(ctl_writes_maint)
{
    struct it_config cfg;
    struct admin a;
    start_writes(env, &cfg, &a);
    const char *b_addr = it_strf(env, "127.0.0.1:%d", cfg.pools[0].ports[1]);

    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "maint", "web", b_addr, NULL);
    expect_exit(&r, 0);
    expect_change(env, r.out, "web", b_addr, "maint", 1, "config");
    assert_true(answers_only(env, a.f->port, "a", 6));
    json_t *doc;
    json_t *b = status_backend(env, &a, "web", b_addr, &doc);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "state")), "maint");
    json_decref(doc);

    /* Unknown pool or backend: the server's 404, exit 1. */
    ctl(env, &r, "-c", a.f->config_path, "maint", "nosuch", b_addr, NULL);
    expect_exit(&r, 1);
    ctl(env, &r, "-c", a.f->config_path, "maint", "web", "127.0.0.1:1", NULL);
    expect_exit(&r, 1);
    assert_non_null(strstr(r.err, "fulcrum ctl: "));
}

IT_TEST(ctl_writes_weight)
{
    struct it_config cfg;
    struct admin a;
    start_writes(env, &cfg, &a);
    const char *a_addr = it_strf(env, "127.0.0.1:%d", cfg.pools[0].ports[0]);

    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "weight", "web", a_addr, "5", NULL);
    expect_exit(&r, 0);
    expect_change(env, r.out, "web", a_addr, "ready", 5, "config");
    json_t *doc;
    json_t *b = status_backend(env, &a, "web", a_addr, &doc);
    assert_non_null(b);
    assert_int_equal(json_integer_value(json_object_get(b, "weight")), 5);
    json_decref(doc);

    /* Out of range (weights are 1..1000): the server's 400, exit 1, nothing changed. */
    ctl(env, &r, "-c", a.f->config_path, "weight", "web", a_addr, "0", NULL);
    expect_exit(&r, 1);
    assert_non_null(strstr(r.err, "fulcrum ctl: "));
    b = status_backend(env, &a, "web", a_addr, &doc);
    assert_int_equal(json_integer_value(json_object_get(b, "weight")), 5);
    json_decref(doc);
}

/* An IPv6 address goes percent-encoded in the path and comes back as written. */
IT_TEST(ctl_writes_ipv6_address)
{
    struct it_config cfg;
    struct admin a;
    start_writes(env, &cfg, &a);
    const char *v6 = it_strf(env, "[::1]:%d", it_free_port());

    struct it_run_result r;
    ctl(env, &r, "-c", a.f->config_path, "add", "web", v6, NULL);
    expect_exit(&r, 0);
    expect_change(env, r.out, "web", v6, "ready", 1, "runtime");
    ctl(env, &r, "-c", a.f->config_path, "drain", "web", v6, NULL);
    expect_exit(&r, 0);
    expect_change(env, r.out, "web", v6, "drain", 1, "runtime");
    ctl(env, &r, "-c", a.f->config_path, "remove", "web", v6, NULL);
    expect_exit(&r, 0);
    json_t *doc;
    assert_null(status_backend(env, &a, "web", v6, &doc));
    json_decref(doc);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(ctl_status),
    IT_CASE(ctl_backends_table),
    IT_CASE(ctl_backends_rate),
    IT_CASE(ctl_backends_unknown_pool),
    IT_CASE(ctl_reload),
    IT_CASE(ctl_token),
    IT_CASE(ctl_config_without_admin),
    IT_CASE(ctl_unix_socket),
    IT_CASE(ctl_unreachable),
    IT_CASE(ctl_request_format),
    IT_CASE(ctl_odd_answers),
    IT_CASE(ctl_usage),
    IT_CASE(ctl_writes_add_remove),
    IT_CASE(ctl_writes_drain_ready),
    IT_CASE(ctl_writes_maint),
    IT_CASE(ctl_writes_weight),
    IT_CASE(ctl_writes_ipv6_address),
};

IT_MAIN(tests)
