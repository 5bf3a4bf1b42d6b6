/*
 * Reload (SIGHUP) as a user sees it: a new generation is built from the file
 * and takes over only if all of it succeeded, without failing a request;
 * in-flight requests finish on the generation they started on, which is
 * released (its plugin instances destroyed) after its last request and not
 * before; plugin code really changes when its file changed; listeners follow
 * the file; a rate limiter whose code and settings did not change keeps its
 * counts; `fulcrum -t` runs beside a live daemon; and a long run of reloads
 * costs no memory.
 *
 * Plugins from tests/plugins: mark_strategy appends "created LABEL" and
 * "destroyed LABEL" to its `mark_file`, one line per instance (one instance
 * per worker), which makes the release of a generation observable;
 * always_a / always_b send every request to backend 0 / backend 1, two files
 * whose code differs, for replacing one by the other under the same path.
 *
 * The daemon logs "reload done: generation N in force (...)" or "reload
 * failed: generation N stays in force (...)" for every SIGHUP, and
 * "generation N released" when the last reference to one went.
 * it_fulcrum_reload() and it_fulcrum_reload_text() wait for the first two.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* The test plugins land beside the bundled ones: <build>/plugins, <build>/tests/plugins. */
#define TEST_PLUGIN_DIR FC_PLUGIN_BUILD_DIR "/../tests/plugins"

/* How long something the daemon does asynchronously may take to show, far above what it needs. */
#define SETTLE_DEADLINE_MS 5000

/* ---- helpers ------------------------------------------------------------ */

/* The contents of a file the test reads while the daemon appends to it ("" if absent). */
static const char *file_text(struct it_env *env, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "";
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0 || (len += (size_t)n) == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    return it_strf(env, "%s", buf);
}

static bool wait_file_count(struct it_env *env, const char *path, const char *needle, size_t n,
                            int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    while (it_count(file_text(env, path), needle) < n) {
        if (it_now_ms() >= deadline)
            return false;
        it_sleep_ms(5);
    }
    return true;
}

/* Copies a file byte for byte to a new file (created or truncated). */
static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

/* The backend that answered a 200, as its X-Backend header names it (an env string). */
static const char *answered_by(struct it_env *env, const struct it_response *r)
{
    assert_int_equal(r->status, 200);
    const char *name = it_header(r, "X-Backend");
    assert_non_null(name);
    return it_strf(env, "%s", name);
}

/* GET `path` on a fresh connection; returns the backend that answered. */
static const char *get_backend(struct it_env *env, int port, const char *path)
{
    struct it_response r;
    it_get(env, port, "test", path, &r);
    const char *name = answered_by(env, &r);
    it_response_free(&r);
    return name;
}

/* True if `name` is one of the space-separated words of `set`. */
static bool in_set(const char *set, const char *name)
{
    size_t len = strlen(name);
    for (const char *at = strstr(set, name); at != NULL; at = strstr(at + 1, name))
        if ((at == set || at[-1] == ' ') && (at[len] == ' ' || at[len] == '\0'))
            return true;
    return false;
}

/* n requests on fresh connections: every one must be answered by a backend of `set`. */
static void expect_served_by(struct it_env *env, int port, int n, const char *set)
{
    for (int i = 0; i < n; i++) {
        const char *name = get_backend(env, port, "/");
        if (!in_set(set, name))
            fail_msg("request %d answered by backend \"%s\", expected one of \"%s\"", i, name, set);
    }
}

/*
 * The text of cfg rendered for the listener on ports[0], with the listener
 * list replaced by one listener per port (all on the listener pool).
 */
static const char *render_listeners(struct it_env *env, const struct it_config *cfg,
                                    const int *ports, size_t n)
{
    const char *text = it_config_render(env, cfg, ports[0]);
    const char *start = strstr(text, "listeners = (");
    assert_non_null(start);
    const char *end = strchr(start, '\n');
    assert_non_null(end);
    const char *pool = cfg->listener_pool ? cfg->listener_pool : cfg->pools[0].name;
    const char *list = "";
    for (size_t i = 0; i < n; i++)
        list = it_strf(env, "%s%s { address = \"127.0.0.1:%d\"; pool = \"%s\"; }", list,
                       i ? "," : "", ports[i], pool);
    return it_strf(env, "%.*slisteners = (%s );%s", (int)(start - text), text, list, end);
}

/* Reload that must succeed; prints fulcrum's log if it did not. */
static void reload_ok(struct it_env *env, struct it_fulcrum *f, const struct it_config *cfg)
{
    if (it_fulcrum_reload(env, f, cfg) != 0) {
        it_proc_dump(env, f->proc);
        fail_msg("the reload was refused");
    }
}

static void reload_text_ok(struct it_env *env, struct it_fulcrum *f, const char *text)
{
    if (it_fulcrum_reload_text(env, f, text) != 0) {
        it_proc_dump(env, f->proc);
        fail_msg("the reload was refused");
    }
}

/* ---- a: reloads under load ---------------------------------------------- */

/*
 * A client thread: one keep-alive connection, POST /sum with a body of a few
 * KB in a loop, every answer checked. Plain sockets: cmocka and the harness's
 * client are not for threads. Everything it reports is in its struct.
 */
struct load_client {
    int port;
    uint32_t seed;
    int stop;              /* atomic: set by the test */
    int64_t final_since;   /* atomic: requests started after it must hit final_set; 0 none */
    const char *final_set; /* space-separated backend names */
    long ok, failed, final_checked, final_wrong;
    char error[512]; /* the first failure */
};

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/*
 * Reads one response with a Content-Length body. Returns 0 with the status,
 * the X-Backend value and the body (NUL-terminated), or -1 with the reason.
 */
static int read_response(int fd, int *status, char *backend, size_t bcap, char *body,
                         size_t body_cap, char *why, size_t why_cap)
{
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
        if (len == sizeof(buf) - 1) {
            snprintf(why, why_cap, "response head too large");
            return -1;
        }
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(why, why_cap, "connection %s before the response head",
                     n == 0 ? "closed" : strerror(errno));
            return -1;
        }
        len += (size_t)n;
    }
    end[2] = '\0'; /* the head, with its last CRLF, as a string */
    size_t head_len = (size_t)(end - buf) + 4;
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        snprintf(why, why_cap, "bad status line: %.60s", buf);
        return -1;
    }
    char cl[32];
    if (!it_head_value(buf, "Content-Length", cl, sizeof(cl))) {
        snprintf(why, why_cap, "status %d without Content-Length", *status);
        return -1;
    }
    size_t want = strtoul(cl, NULL, 10);
    if (want >= body_cap) {
        snprintf(why, why_cap, "status %d with a body of %zu bytes", *status, want);
        return -1;
    }
    if (!it_head_value(buf, "X-Backend", backend, bcap))
        backend[0] = '\0';
    size_t have = len - head_len;
    if (have > want) {
        snprintf(why, why_cap, "%zu bytes more than the response", have - want);
        return -1;
    }
    memcpy(body, buf + head_len, have);
    while (have < want) {
        ssize_t n = recv(fd, body + have, want - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(why, why_cap, "connection %s in the body",
                     n == 0 ? "closed" : strerror(errno));
            return -1;
        }
        have += (size_t)n;
    }
    body[want] = '\0';
    return 0;
}

static void *load_client_main(void *arg)
{
    struct load_client *c = arg;
    int fd = it_socket_connect(c->port, 10);
    if (fd < 0) {
        snprintf(c->error, sizeof(c->error), "connect: %s", strerror(-fd));
        c->failed++;
        return NULL;
    }
    uint8_t body[8192];
    char answer[256], backend[64], why[256];
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        size_t len = 1024 + xorshift(&c->seed) % 5000;
        for (size_t i = 0; i < len; i++)
            body[i] = (uint8_t)xorshift(&c->seed);
        char head[128];
        int hl = snprintf(head, sizeof(head),
                          "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n\r\n", len);
        int64_t started = it_now_ms();
        int status = 0;
        if (it_send_all(fd, head, (size_t)hl) != 0 || it_send_all(fd, body, len) != 0) {
            snprintf(c->error, sizeof(c->error), "request %ld: send: %s", c->ok + c->failed,
                     strerror(errno));
            c->failed++;
            break;
        }
        if (read_response(fd, &status, backend, sizeof(backend), answer, sizeof(answer), why,
                          sizeof(why)) != 0) {
            snprintf(c->error, sizeof(c->error), "request %ld: %s", c->ok + c->failed, why);
            c->failed++;
            break;
        }
        char expect[64];
        snprintf(expect, sizeof(expect), "len=%zu fnv=%016llx\n", len,
                 (unsigned long long)it_fnv1a64(body, len));
        if (status != 200 || strcmp(answer, expect) != 0) {
            if (c->failed++ == 0)
                snprintf(c->error, sizeof(c->error),
                         "request %ld: status %d from \"%s\", body \"%s\", expected \"%s\"",
                         c->ok + c->failed - 1, status, backend, answer, expect);
            continue;
        }
        c->ok++;
        int64_t since = __atomic_load_n(&c->final_since, __ATOMIC_ACQUIRE);
        if (since != 0 && started >= since) {
            c->final_checked++;
            if (!in_set(c->final_set, backend) && c->final_wrong++ == 0 && c->failed == 0)
                snprintf(c->error, sizeof(c->error),
                         "request after the last reload answered by \"%s\", not one of \"%s\"",
                         backend, c->final_set);
        }
    }
    close(fd);
    return NULL;
}

#define LOAD_CLIENTS 8
#define LOAD_RELOADS 30

static const char *const STRATEGIES[] = {"round_robin", "least_conn", "ip_hash", "weighted", "p2c"};

IT_TEST(reloads_under_load_fail_no_request)
{
    static const char *const names[4] = {"b0", "b1", "b2", "b3"};
    int ports[4];
    for (int i = 0; i < 4; i++)
        ports[i] = it_backend_start(env, names[i]);
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 2, ports[0], ports[1]);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /*
     * Heap, not stack: a failed assertion leaves this frame while the threads
     * still run; they end when teardown stops fulcrum under them.
     */
    struct load_client *clients = calloc(LOAD_CLIENTS, sizeof(*clients));
    assert_non_null(clients);
    pthread_t threads[LOAD_CLIENTS];
    for (int i = 0; i < LOAD_CLIENTS; i++) {
        clients[i].port = f->port;
        clients[i].seed = 0x9e3779b9u * (uint32_t)(i + 1);
        assert_int_equal(pthread_create(&threads[i], NULL, load_client_main, &clients[i]), 0);
    }
    it_sleep_ms(200);

    /* Reload i: strategy i mod 5, backends i, i+1 (and i+2 every other time), mod 4. */
    int refused = -1;
    const char *final_set = "";
    for (int i = 0; i < LOAD_RELOADS && refused < 0; i++) {
        pool->strategy = STRATEGIES[i % 5];
        pool->nports = 2 + (size_t)(i % 2);
        final_set = "";
        for (size_t j = 0; j < pool->nports; j++) {
            int k = (int)((i + (int)j) % 4);
            pool->ports[j] = ports[k];
            final_set = it_strf(env, "%s%s%s", final_set, j ? " " : "", names[k]);
        }
        if (it_fulcrum_reload(env, f, &cfg) != 0)
            refused = i;
        else
            it_sleep_ms(100);
    }
    /*
     * "reload done" is logged once the generation is published; each worker
     * adopts it at its next loop iteration. A request that starts a little
     * later must reach only the final backends.
     */
    for (int i = 0; i < LOAD_CLIENTS; i++) {
        clients[i].final_set = final_set;
        __atomic_store_n(&clients[i].final_since, it_now_ms() + 100, __ATOMIC_RELEASE);
    }
    it_sleep_ms(700);
    for (int i = 0; i < LOAD_CLIENTS; i++)
        __atomic_store_n(&clients[i].stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < LOAD_CLIENTS; i++)
        pthread_join(threads[i], NULL);

    struct load_client results[LOAD_CLIENTS];
    memcpy(results, clients, sizeof(results));
    free(clients);
    if (refused >= 0) {
        it_proc_dump(env, f->proc);
        fail_msg("reload %d was refused", refused + 1);
    }
    long total = 0, checked = 0;
    for (int i = 0; i < LOAD_CLIENTS; i++) {
        const struct load_client *c = &results[i];
        if (c->failed != 0 || c->final_wrong != 0)
            fail_msg("client %d: %ld ok, %ld failed, %ld of %ld after the last reload on wrong "
                     "backends; first: %s",
                     i, c->ok, c->failed, c->final_wrong, c->final_checked, c->error);
        assert_true(c->ok > 0);
        total += c->ok;
        checked += c->final_checked;
    }
    print_message("%ld requests, none failed; %ld after the last reload, all on %s\n", total,
                  checked, final_set);
    assert_true(checked >= LOAD_CLIENTS);
    assert_int_equal(it_fulcrum_log_count(env, f, "reload done: "), LOAD_RELOADS);
    assert_int_equal(it_fulcrum_log_count(env, f, "reload failed: "), 0);
    assert_int_equal(it_fulcrum_log_count(env, f,
                                          it_strf(env,
                                                  "reload done: generation %d in force "
                                                  "(reloads: %d done, 0 failed)",
                                                  LOAD_RELOADS + 1, LOAD_RELOADS)),
                     1);
    /* New connections too. */
    expect_served_by(env, f->port, 12, final_set);
}

/* ---- b: a broken file keeps the running generation ----------------------- */

/*
 * Reloads `text` (NULL: cfg rendered) and expects it refused: "reload failed:
 * generation 1 stays in force", an error line that names `where` (the file,
 * and for most errors its line) and contains `why`, and the old backends
 * still answering.
 */
static void expect_refused(struct it_env *env, struct it_fulcrum *f, const struct it_config *cfg,
                           const char *text, const char *where, const char *why)
{
    size_t skip = strlen(it_proc_stderr(env, f->proc));
    int rc = text != NULL ? it_fulcrum_reload_text(env, f, text) : it_fulcrum_reload(env, f, cfg);
    const char *log = it_proc_stderr(env, f->proc) + skip;
    if (rc != -EINVAL)
        fail_msg("reload accepted; expected it refused with \"%s\"; log:\n%s", why, log);
    if (strstr(log, "reload failed: generation 1 stays in force") == NULL)
        fail_msg("no \"reload failed: generation 1 stays in force\" in:\n%s", log);
    /* One error line carries both the place and the reason. */
    bool found = false;
    for (const char *line = log; line != NULL && *line && !found;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        const char *l = it_strf(env, "%.*s", (int)n, line);
        found = strstr(l, "[error] ") != NULL && strstr(l, where) != NULL && strstr(l, why);
        line = eol ? eol + 1 : NULL;
    }
    if (!found)
        fail_msg("no error line with \"%s\" and \"%s\" in:\n%s", where, why, log);
    expect_served_by(env, f->port, 6, "a b");
}

IT_TEST(broken_file_keeps_old_generation)
{
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    int c = it_backend_start(env, "c");
    struct it_config good;
    it_config_init(&good);
    it_config_add_pool(&good, "web", 1, 2, a, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &good);
    expect_served_by(env, f->port, 6, "a b");
    const char *path = f->config_path;

    /* Every broken file would send the requests to c. */
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 1, c);

    /* A syntax error on line 4. */
    const char *text = it_strf(env,
                               "workers = 2;\nplugin_dir = \"%s\";\n"
                               "listeners = ( { address = \"127.0.0.1:%d\"; pool = \"web\"; } );\n"
                               "pools = ( { name = \"web\" strategy = ; } );\n",
                               FC_PLUGIN_BUILD_DIR, f->port);
    expect_refused(env, f, NULL, text, it_strf(env, "%s:4: ", path), "syntax error");

    /* The listener names a pool that does not exist. */
    cfg.listener_pool = "nope";
    expect_refused(env, f, &cfg, NULL, it_strf(env, "%s:", path), "unknown pool \"nope\"");
    cfg.listener_pool = NULL;

    /* A plugin file that does not exist. */
    pool->strategy = "no_such_strategy";
    expect_refused(env, f, &cfg, NULL, it_strf(env, "%s:", path),
                   "no_such_strategy.so: No such file or directory");

    /* A plugin the loader refuses: built for another ABI major. */
    pool->strategy = TEST_PLUGIN_DIR "/bad_abi_major.so";
    expect_refused(env, f, &cfg, NULL, it_strf(env, "%s:", path),
                   "bad_abi_major.so: built for plugin ABI 2.0");

    /* The number of workers cannot change without a restart. */
    pool->strategy = NULL;
    cfg.workers = 1;
    expect_refused(env, f, &cfg, NULL, path, "workers");
    cfg.workers = 2;

    /* The failures cost nothing: the next good file is generation 2. */
    reload_ok(env, f, &cfg);
    assert_int_equal(it_fulcrum_log_count(env, f,
                                          "reload done: generation 2 in force (reloads: 1 done, "
                                          "5 failed)"),
                     1);
    expect_served_by(env, f->port, 6, "c");
}

/*
 * A plugin whose create() fails is refused like the others, and the error
 * names the file (the configuration file with its line, or the plugin's own
 * file) and the reason, as every other refusal does.
 */
IT_TEST(failing_create_keeps_old_generation)
{
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    int c = it_backend_start(env, "c");
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 2, a, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    pool->nports = 1;
    pool->ports[0] = c;
    pool->strategy = TEST_PLUGIN_DIR "/create_fails.so";
    size_t skip = strlen(it_proc_stderr(env, f->proc));
    int rc = it_fulcrum_reload(env, f, &cfg);
    const char *log = it_proc_stderr(env, f->proc) + skip;
    assert_int_equal(rc, -EINVAL);
    expect_served_by(env, f->port, 6, "a b");
    const char *line = strstr(log, "create() failed");
    assert_non_null(line);
    while (line > log && line[-1] != '\n')
        line--;
    line = it_strf(env, "%.*s", (int)strcspn(line, "\n"), line);
    if (strstr(line, it_strf(env, "%s:", f->config_path)) == NULL &&
        strstr(line, "create_fails.so") == NULL)
        fail_msg("the create() failure names neither %s:LINE nor create_fails.so:\n%s",
                 f->config_path, log);
}

/* ---- c: plugin code changes with its file -------------------------------- */

/* n requests on one keep-alive connection and n on fresh ones: all answered by `name`. */
static void expect_all_by(struct it_env *env, int port, int n, const char *name)
{
    struct it_conn *conn = it_connect(env, port);
    for (int i = 0; i < n; i++) {
        it_send_str(conn, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        struct it_response r;
        it_expect_response(conn, "GET", &r);
        const char *got = answered_by(env, &r);
        it_response_free(&r);
        if (strcmp(got, name) != 0)
            fail_msg("keep-alive request %d answered by \"%s\", expected \"%s\"", i, got, name);
    }
    it_conn_close(conn);
    expect_served_by(env, port, n, name);
}

IT_TEST(replaced_plugin_runs_new_code_after_hup)
{
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    const char *plugin = it_path(env, "pick.so");
    copy_file(TEST_PLUGIN_DIR "/always_a.so", plugin);
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 0, 2, a, b);
    pool->strategy = plugin;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    expect_all_by(env, f->port, 4, "a");

    /* mv: a new file under the old name. The daemon runs its copy until told. */
    const char *tmp = it_path(env, "pick.so.new");
    copy_file(TEST_PLUGIN_DIR "/always_b.so", tmp);
    assert_int_equal(rename(tmp, plugin), 0);
    expect_all_by(env, f->port, 4, "a");
    reload_text_ok(env, f, NULL);
    expect_all_by(env, f->port, 4, "b");

    /* cp over the file in place: its bytes change under the same inode. */
    struct it_run_result cp;
    const char *const argv[] = {"/bin/cp", TEST_PLUGIN_DIR "/always_a.so", plugin, NULL};
    it_run(env, argv, 10000, &cp);
    assert_int_equal(cp.exit_code, 0);
    expect_all_by(env, f->port, 4, "b");
    it_sleep_ms(100);
    expect_all_by(env, f->port, 4, "b");
    reload_text_ok(env, f, NULL);
    expect_all_by(env, f->port, 4, "a");
    assert_int_equal(it_fulcrum_log_count(env, f, "reload done: generation 3 in force"), 1);
}

/* ---- d: listeners follow the file ---------------------------------------- */

/* Connects to port until it succeeds (want_open) or is refused; false at the deadline. */
static bool wait_port(struct it_env *env, int port, bool want_open, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        int err = 0;
        struct it_conn *conn = it_connect_raw(env, port, &err);
        if (conn != NULL)
            it_conn_close(conn);
        if (want_open ? conn != NULL : err == -ECONNREFUSED)
            return true;
        if (it_now_ms() >= deadline)
            return false;
        it_sleep_ms(10);
    }
}

IT_TEST(listeners_added_and_removed_by_reload)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* A second listener. Its port was free a moment ago; another process may take it. */
    int ports[2] = {f->port, 0};
    for (int attempt = 1;; attempt++) {
        ports[1] = it_free_port();
        size_t skip = strlen(it_proc_stderr(env, f->proc));
        if (it_fulcrum_reload_text(env, f, render_listeners(env, &cfg, ports, 2)) == 0)
            break;
        const char *log = it_proc_stderr(env, f->proc) + skip;
        if (attempt == 3 || strstr(log, "in use") == NULL) {
            it_proc_dump(env, f->proc);
            fail_msg("the reload adding listener 127.0.0.1:%d was refused", ports[1]);
        }
    }
    /* Each worker binds its socket when it adopts the generation, just after the log line. */
    if (!wait_port(env, ports[1], true, 2000))
        fail_msg("the new listener 127.0.0.1:%d does not accept", ports[1]);
    assert_string_equal(get_backend(env, ports[1], "/"), "a");
    assert_string_equal(get_backend(env, ports[0], "/"), "a");

    /* A keep-alive connection on it, with a request in flight when the listener goes. */
    struct it_conn *kept = it_connect(env, ports[1]);
    it_send_str(kept, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(kept, "GET", &r);
    assert_string_equal(answered_by(env, &r), "a");
    it_response_free(&r);
    int64_t sent = it_now_ms();
    it_send_str(kept, "GET /slow?ms=500 HTTP/1.1\r\nHost: test\r\n\r\n");
    it_sleep_ms(100);

    reload_text_ok(env, f, render_listeners(env, &cfg, ports, 1));
    int64_t reloaded = it_now_ms() - sent;
    if (reloaded >= 500)
        fail_msg("the reload took until %lld ms after the request: not in flight any more",
                 (long long)reloaded);
    if (!wait_port(env, ports[1], false, 2000))
        fail_msg("the removed listener 127.0.0.1:%d still accepts", ports[1]);

    it_expect_response(kept, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "a\n");
    it_response_free(&r);
    assert_true(it_now_ms() - sent >= 500);
    /* Its connections end after their current request. */
    assert_true(it_conn_wait_closed(kept, 2000));

    /* The listener that stays never stopped. */
    assert_string_equal(get_backend(env, ports[0], "/"), "a");
}

/* ---- e: a generation is released after its last request ------------------ */

IT_TEST(old_generation_released_after_last_request)
{
    int a = it_backend_start(env, "a");
    const char *marks = it_path(env, "marks");
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 1, a);
    pool->strategy = TEST_PLUGIN_DIR "/mark_strategy.so";
    pool->strategy_options = it_strf(env, "mark_file = \"%s\"; label = \"gen1\";", marks);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    assert_int_equal(it_count(file_text(env, marks), "created gen1\n"), (size_t)cfg.workers);

    struct it_conn *conn = it_connect(env, f->port);
    int64_t sent = it_now_ms();
    it_send_str(conn, "GET /slow?ms=800 HTTP/1.1\r\nHost: test\r\n\r\n");
    it_sleep_ms(150);

    pool->strategy_options = it_strf(env, "mark_file = \"%s\"; label = \"gen2\";", marks);
    reload_ok(env, f, &cfg);
    assert_true(it_now_ms() - sent < 800);
    /* Reloaded: the new instances exist, the old ones still serve the request in flight. */
    assert_int_equal(it_count(file_text(env, marks), "created gen2\n"), (size_t)cfg.workers);
    assert_int_equal(it_count(file_text(env, marks), "destroyed gen1\n"), 0);
    assert_int_equal(it_fulcrum_log_count(env, f, "generation 1 released"), 0);
    /* Both workers adopted generation 2 meanwhile: a new request reaches it. */
    assert_string_equal(get_backend(env, f->port, "/"), "a");
    it_sleep_ms(400);
    int64_t before_end = it_now_ms() - sent;
    const char *text = file_text(env, marks);
    size_t released = it_fulcrum_log_count(env, f, "generation 1 released");

    struct it_response r;
    it_expect_response(conn, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    assert_true(before_end < 800);
    if (it_count(text, "destroyed gen1\n") != 0 || released != 0)
        fail_msg("generation 1 released %lld ms after its request started, before it ended; "
                 "marks:\n%s",
                 (long long)before_end, text);

    /* Its last request ended: now it goes, the connection staying open. */
    if (!wait_file_count(env, marks, "destroyed gen1\n", (size_t)cfg.workers, SETTLE_DEADLINE_MS))
        fail_msg("generation 1 not destroyed after its last request; marks:\n%s",
                 file_text(env, marks));
    assert_true(it_fulcrum_wait_log(env, f, "generation 1 released", 1, SETTLE_DEADLINE_MS));
    assert_int_equal(it_count(file_text(env, marks), "destroyed gen2\n"), 0);
    assert_int_equal(it_fulcrum_log_count(env, f, "generation 2 released"), 0);
    assert_false(it_conn_wait_closed(conn, 50));
}

/* ---- f: rate limiter state across reloads -------------------------------- */

static int get_status(struct it_env *env, int port)
{
    struct it_response r;
    it_get(env, port, "test", "/", &r);
    int status = r.status;
    if (status == 429)
        assert_non_null(it_header(&r, "Retry-After"));
    it_response_free(&r);
    return status;
}

IT_TEST(rate_limit_state_survives_unrelated_reload)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 1);
    pool->pool_options = "rate_limit = { plugin = \"token_bucket\"; rate = 0.1; burst = 3; };";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    for (int i = 0; i < 3; i++)
        assert_int_equal(get_status(env, f->port), 200);

    /* Only a timeout changes: the bucket, empty now, is handed on. */
    cfg.upstream_ms = 20000;
    reload_ok(env, f, &cfg);
    assert_int_equal(get_status(env, f->port), 429);

    /* The limiter's settings change: a fresh, full bucket. */
    pool->pool_options = "rate_limit = { plugin = \"token_bucket\"; rate = 0.2; burst = 3; };";
    reload_ok(env, f, &cfg);
    assert_int_equal(get_status(env, f->port), 200);
}

/* ---- g: fulcrum -t beside the daemon -------------------------------------- */

IT_TEST(config_test_beside_live_daemon)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    struct it_conn *kept = it_connect(env, f->port);
    it_send_str(kept, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(kept, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    size_t skip = strlen(it_proc_stderr(env, f->proc));

    /* The same file, so the same listener address, which the daemon has bound. */
    struct it_run_result t;
    const char *const argv[] = {FC_BINARY, "-t", "-c", f->config_path, NULL};
    it_run(env, argv, 10000, &t);
    if (t.exit_code != 0 || strstr(t.out, "configuration OK") == NULL)
        fail_msg("fulcrum -t exited %d; stdout:\n%s\nstderr:\n%s", t.exit_code, t.out, t.err);

    /* The daemon did not notice. */
    it_send_str(kept, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    it_expect_response(kept, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    expect_served_by(env, f->port, 3, "a");
    const char *log = it_fulcrum_log_settled(env, f) + skip;
    if (strstr(log, "[error]") != NULL || strstr(log, "reload") != NULL)
        fail_msg("the daemon logged, while fulcrum -t ran:\n%s", log);
}

/* ---- h: reloads cost no memory ------------------------------------------- */

/*
 * The file loads on a thread of libuv's pool and its memory is freed on the
 * main thread. glibc's malloc takes that in its stride (flat from the 20th
 * reload), but ASan's allocator keeps per-thread caches that fill over the
 * first few hundred reloads spread over the pool's four threads (measured:
 * 21.9 MB after 100 reloads, 24.5 after 200, 25.3 after 400, 26.0 after
 * 600): under ASan the baseline is taken once they are warm.
 */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_RELOADS 400
#define MEM_BASELINE 200
#else
#define MEM_RELOADS 200
#define MEM_BASELINE 20
#endif

/* VmRSS of a process in KiB, from /proc/PID/status. */
static long rss_kb(pid_t pid)
{
    long kb = it_rss_kib(pid);
    assert_true(kb > 0);
    return kb;
}

/*
 * After `done` reloads: every generation but the current one released, then a
 * short pause for the workers to go idle; returns the RSS.
 */
static long settled_rss(struct it_env *env, struct it_fulcrum *f, int done)
{
    const char *released = it_strf(env, "generation %d released", done);
    if (!it_fulcrum_wait_log(env, f, released, 1, SETTLE_DEADLINE_MS))
        fail_msg("no \"%s\" after %d reloads", released, done);
    it_sleep_ms(300);
    return rss_kb(it_proc_pid(f->proc));
}

IT_TEST(reloads_cost_no_memory)
{
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    struct it_config cfg[2];
    it_config_init(&cfg[0]);
    it_config_add_pool(&cfg[0], "web", 1, 1, a);
    it_config_init(&cfg[1]);
    struct it_pool_config *pool = it_config_add_pool(&cfg[1], "web", 1, 2, a, b);
    pool->strategy = "least_conn";
    const char *asan_options = it_rss_asan_begin(env);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg[0]);
    it_rss_asan_end(asan_options);

    long baseline = 0;
    for (int i = 1; i <= MEM_RELOADS; i++) {
        if (it_fulcrum_reload(env, f, &cfg[i % 2]) != 0) {
            it_proc_dump(env, f->proc);
            fail_msg("reload %d was refused", i);
        }
        if (i % 10 == 0)
            expect_served_by(env, f->port, 2, i % 2 ? "a b" : "a");
        if (i == MEM_BASELINE)
            baseline = settled_rss(env, f, i);
    }
    long after = settled_rss(env, f, MEM_RELOADS);
    print_message("fulcrum VmRSS: %ld kB after %d reloads, %ld kB after %d (%+.1f%%)\n", baseline,
                  MEM_BASELINE, after, MEM_RELOADS,
                  100.0 * (double)(after - baseline) / (double)baseline);
    if (after * 10 > baseline * 11)
        fail_msg("VmRSS grew from %ld kB after %d reloads to %ld kB after %d: more than 10%%",
                 baseline, MEM_BASELINE, after, MEM_RELOADS);
}

/* ---- hardening 7: a second daemon cannot share a listener ---------------- */

IT_TEST(second_daemon_on_a_listener_is_refused)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct it_fulcrum *a = it_fulcrum_start(env, &cfg);

    /*
     * SO_REUSEPORT would let a second fulcrum bind a's address without error,
     * and the kernel would split a's traffic with it: it must refuse to start.
     */
    const char *path = it_write_file(env, "second.conf", it_config_render(env, &cfg, a->port));
    const char *const argv[] = {FC_BINARY, "-c", path, NULL};
    struct it_run_result res;
    it_run(env, argv, 5000, &res);
    assert_int_equal(res.exit_code, 1);
    const char *want = it_strf(env, "listener 127.0.0.1:%d: address already in use", a->port);
    if (strstr(res.err, want) == NULL)
        fail_msg("expected \"%s\" in:\n%s", want, res.err);
    for (int i = 0; i < 4; i++)
        assert_string_equal(get_backend(env, a->port, "/"), "a");

    /* A reload of a that adds a listener on another daemon's address is refused too. */
    struct it_fulcrum *b = it_fulcrum_start(env, &cfg);
    int ports[2] = {a->port, b->port};
    size_t skip = strlen(it_proc_stderr(env, a->proc));
    assert_int_equal(it_fulcrum_reload_text(env, a, render_listeners(env, &cfg, ports, 2)),
                     -EINVAL);
    want = it_strf(env, "listener 127.0.0.1:%d: address already in use", b->port);
    if (strstr(it_proc_stderr(env, a->proc) + skip, want) == NULL)
        fail_msg("expected \"%s\" in the reload's log", want);
    assert_string_equal(get_backend(env, a->port, "/"), "a");
}

/* ---- hardening 6: signals while the configuration loads ------------------ */

IT_TEST(signals_during_startup_wait_for_their_handlers)
{
    /*
     * The strategy's first create() raises SIGHUP and SIGUSR1, as logrotate
     * or an operator may while the plugins load. Their default action would
     * end the daemon there; they must wait, and the SIGHUP reload after start.
     */
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 1);
    pool->strategy = FC_TEST_PLUGIN_DIR "/raise_signals.so";
    pool->strategy_options = it_strf(env, "marker = \"%s\";", it_path(env, "raised"));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    assert_string_equal(get_backend(env, f->port, "/"), "a");
    int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
    while (it_fulcrum_log_count(env, f, "reload done") == 0 && it_now_ms() < deadline)
        it_sleep_ms(20);
    assert_int_equal(it_fulcrum_log_count(env, f, "reload done"), 1);
    assert_string_equal(get_backend(env, f->port, "/"), "a");
}

/* ---- hardening 5: a reload never ends the daemon on an @include --------- */

IT_TEST(include_of_a_folder_refuses_the_reload)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    assert_int_equal(mkdir(it_path(env, "conf.d"), 0755), 0);

    /* libconfig's scanner would exit the process on it; the reload is refused instead. */
    const char *text =
        it_strf(env, "%s\n@include \"conf.d\"\n", it_config_render(env, &cfg, f->port));
    assert_int_equal(it_fulcrum_reload_text(env, f, text), -EINVAL);
    assert_int_equal(it_fulcrum_log_count(env, f, "@include \"conf.d\": is a folder, not a file"),
                     1);
    assert_string_equal(get_backend(env, f->port, "/"), "a");

    /* -t says the same, with the file and line, and exits 1 (not 2 from the scanner). */
    const char *path = it_write_file(env, "checked.conf", text);
    const char *const argv[] = {FC_BINARY, "-t", "-c", path, NULL};
    struct it_run_result res;
    it_run(env, argv, 10000, &res);
    assert_int_equal(res.exit_code, 1);
    assert_non_null(strstr(res.err, "@include \"conf.d\": is a folder, not a file"));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(reloads_under_load_fail_no_request),
    IT_CASE(broken_file_keeps_old_generation),
    IT_CASE(failing_create_keeps_old_generation),
    IT_CASE(replaced_plugin_runs_new_code_after_hup),
    IT_CASE(listeners_added_and_removed_by_reload),
    IT_CASE(old_generation_released_after_last_request),
    IT_CASE(rate_limit_state_survives_unrelated_reload),
    IT_CASE(config_test_beside_live_daemon),
    IT_CASE(reloads_cost_no_memory),
    IT_CASE(second_daemon_on_a_listener_is_refused),
    IT_CASE(signals_during_startup_wait_for_their_handlers),
    IT_CASE(include_of_a_folder_refuses_the_reload),
};

IT_MAIN(tests)
