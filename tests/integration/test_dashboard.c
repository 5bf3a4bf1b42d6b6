/*
 * The dashboard (core/dashboard.c, core/dashboard/) in the real daemon: what
 * GET / and its assets answer, with their Content-Security-Policy and
 * without the token, and the page itself in a real browser.
 *
 * The browser cases run headless Chromium (Debian's `chromium`; missing, the
 * case fails: it never skips) through dashboard_browser.py beside this file,
 * which drives it over the DevTools pipe, reads what the DOM shows with the
 * page's selectors and prints it as JSON; every assertion is made here. The
 * live case runs three demo backends and a load (a forked client, bounded in
 * count and time, stopped by PID), takes a snapshot once every backend row
 * shows figures, then kills one backend and reloads twice (one refused, one
 * done) while the page is open, and takes a second snapshot: the figures
 * must have moved, the killed backend must be down and the timeline must
 * tell the backend event and both reloads. Then at 400 px wide, nothing may
 * stick out. The controls case clicks the page's buttons (Drain, Maint,
 * Ready, Reload) through the driver's --step list, and between its steps
 * (files in the env's folder: the driver writes NAME.json, this side answers
 * with go-*) checks what the daemon's /api/status says. The screenshots stay
 * in the env's folder (FC_IT_KEEP=1 keeps it) and are copied to
 * <build>/test-artifacts/ for CI.
 *
 * FC_IT_DASHBOARD_HOLD_S=N holds the page N seconds before the second
 * snapshot of the live case (default 3) and before the first click of the
 * controls case (default 1): a longer chart for a screenshot of the docs.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "dashboard-token-7"
#define CHROMIUM "/usr/bin/chromium"
#define PYTHON "/usr/bin/python3"
#define DRIVER FC_IT_SOURCE_DIR "/tests/integration/dashboard_browser.py"
#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

/* ---- small tools ------------------------------------------------------------ */

static int admin_address(struct it_env *env, struct it_config *cfg, bool token)
{
    int port = it_free_port();
    if (token) {
        it_write_file(env, "admin.token", TOKEN "\n");
        cfg->admin =
            it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"admin.token\";", port);
    } else {
        cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\";", port);
    }
    return port;
}

/* GET path on the admin port, with `auth` as the Authorization value (or none). */
static void admin_get(struct it_env *env, int port, const char *path, const char *auth,
                      struct it_response *r)
{
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, it_strf(env, "GET %s HTTP/1.1\r\nHost: admin\r\n%s%s%s\r\n", path,
                           auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : ""));
    it_expect_response(c, "GET", r);
    it_conn_close(c);
}

/* A write on the admin port with the token: method path body (or none); the status, body in *j. */
static int admin_write(struct it_env *env, int port, const char *method, const char *path,
                       const char *body, json_t **j)
{
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, it_strf(env,
                           "%s %s HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer " TOKEN
                           "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                           method, path, body ? strlen(body) : 0, body ? body : ""));
    struct it_response r;
    it_expect_response(c, method, &r);
    it_conn_close(c);
    json_error_t err;
    *j = json_loads(r.body, 0, &err);
    if (*j == NULL)
        fail_msg("%s %s answered %d with no JSON: %s", method, path, r.status, r.body);
    int status = r.status;
    it_response_free(&r);
    return status;
}

/* GET /api/status with the token, as JSON (the caller frees it). */
static json_t *admin_status(struct it_env *env, int port)
{
    struct it_response r;
    admin_get(env, port, "/api/status", "Bearer " TOKEN, &r);
    if (r.status != 200)
        fail_msg("GET /api/status: %d %s", r.status, r.body);
    json_error_t err;
    json_t *j = json_loads(r.body, 0, &err);
    if (j == NULL)
        fail_msg("GET /api/status: no JSON (%s): %s", err.text, r.body);
    it_response_free(&r);
    return j;
}

/* The backend `address` of pool `pool` in a status document; fails if there is none. */
static json_t *status_backend(json_t *status, const char *pool, const char *address)
{
    json_t *pools = json_object_get(status, "pools");
    for (size_t p = 0; p < json_array_size(pools); p++) {
        json_t *po = json_array_get(pools, p);
        if (strcmp(json_string_value(json_object_get(po, "name")), pool) != 0)
            continue;
        json_t *bs = json_object_get(po, "backends");
        for (size_t b = 0; b < json_array_size(bs); b++)
            if (strcmp(json_string_value(json_object_get(json_array_get(bs, b), "address")),
                       address) == 0)
                return json_array_get(bs, b);
    }
    fail_msg("/api/status has no backend %s in pool %s", address, pool);
    return NULL;
}

/*
 * Fails unless GET /api/status says backend `address` of pool web is in
 * `state` within timeout_ms (0: at once), with `source`.
 */
static void expect_status_state(struct it_env *env, int port, const char *address,
                                const char *state, const char *source, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        json_t *s = admin_status(env, port);
        json_t *b = status_backend(s, "web", address);
        const char *got = json_string_value(json_object_get(b, "state"));
        const char *src = json_string_value(json_object_get(b, "source"));
        if (strcmp(got, state) == 0) {
            assert_string_equal(src, source);
            json_decref(s);
            return;
        }
        if (it_now_ms() >= deadline)
            fail_msg("/api/status: backend %s is %s, not %s", address, got, state);
        json_decref(s);
        it_sleep_ms(100);
    }
}

static const char *source_file(struct it_env *env, const char *name)
{
    const char *path = it_strf(env, "%s/core/dashboard/%s", FC_IT_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("%s: %s", path, strerror(errno));
    char *buf = it_zalloc(env, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* An asset answered 200 with its type, the headers of the dashboard, and the file's bytes. */
static void expect_asset(struct it_env *env, int port, const char *path, const char *file,
                         const char *type)
{
    struct it_response r;
    admin_get(env, port, path, NULL, &r);
    if (r.status != 200)
        fail_msg("GET %s: %d %s", path, r.status, r.body);
    assert_string_equal(it_header(&r, "Content-Type"), type);
    assert_string_equal(it_header(&r, "Content-Security-Policy"), CSP);
    assert_string_equal(it_header(&r, "X-Frame-Options"), "DENY");
    assert_string_equal(it_header(&r, "X-Content-Type-Options"), "nosniff");
    assert_string_equal(it_header(&r, "Cache-Control"), "no-store");
    const char *want = source_file(env, file);
    if (r.body_len != strlen(want) || memcmp(r.body, want, r.body_len) != 0)
        fail_msg("GET %s: %zu bytes, not the %zu of core/dashboard/%s", path, r.body_len,
                 strlen(want), file);
    it_response_free(&r);
}

/* Whether html has an attribute like onclick= (an inline script). */
static bool has_handler_attribute(const char *html)
{
    for (const char *p = html; (p = strcasestr(p, " on")) != NULL; p += 3) {
        const char *q = p + 3;
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'))
            q++;
        if (q > p + 3 && *q == '=')
            return true;
    }
    return false;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = in ? fopen(to, "wb") : NULL;
    if (in == NULL || out == NULL)
        fail_msg("copy %s to %s: %s", from, to, strerror(errno));
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Keeps a screenshot where CI collects it: <build>/test-artifacts/NAME. */
static void keep_artifact(struct it_env *env, const char *path, const char *name)
{
    if (mkdir(FC_IT_ARTIFACT_DIR, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", FC_IT_ARTIFACT_DIR, strerror(errno));
    const char *to = it_strf(env, "%s/%s", FC_IT_ARTIFACT_DIR, name);
    copy_file(path, to);
    fprintf(stderr, "screenshot: %s (and %s)\n", to, path);
}

static void require_browser(void)
{
    if (access(CHROMIUM, X_OK) != 0)
        fail_msg("%s is not installed: the dashboard's browser test needs Debian's chromium "
                 "(apt-get install chromium; tests/run.sh installs it)",
                 CHROMIUM);
    if (access(PYTHON, X_OK) != 0)
        fail_msg("%s is not installed", PYTHON);
}

/* ---- reading the report ------------------------------------------------------- */

static json_t *get(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        fail_msg("the report has no \"%s\"", key);
    return v;
}

static const char *str(json_t *obj, const char *key)
{
    json_t *v = get(obj, key);
    if (!json_is_string(v))
        fail_msg("\"%s\" is not a string in the report", key);
    return json_string_value(v);
}

/* Whether text starts with a number ("12.5", "0.30 ms", "3 %"). */
static bool numeric(const char *text)
{
    char *end;
    strtod(text, &end);
    return end != text;
}

static double sum_requests(json_t *snap)
{
    json_t *rows = get(snap, "backends");
    double total = 0;
    for (size_t i = 0; i < json_array_size(rows); i++)
        total += json_number_value(get(json_array_get(rows, i), "requests"));
    return total;
}

/* The backend row of `address` in a snapshot; fails if there is none. */
static json_t *row(json_t *snap, const char *address)
{
    json_t *rows = get(snap, "backends");
    for (size_t i = 0; i < json_array_size(rows); i++)
        if (strcmp(str(json_array_get(rows, i), "backend"), address) == 0)
            return json_array_get(rows, i);
    fail_msg("no backend row for %s", address);
    return NULL;
}

static size_t timeline_count(json_t *snap, const char *kind, const char *key, const char *value)
{
    json_t *timeline = get(snap, "timeline");
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(timeline); i++) {
        json_t *e = json_array_get(timeline, i);
        json_t *v = json_object_get(e, key);
        if (strcmp(str(e, "kind"), kind) == 0 && json_is_string(v) &&
            strcmp(json_string_value(v), value) == 0)
            n++;
    }
    return n;
}

static void expect_no_overflow(json_t *narrow)
{
    assert_int_equal(json_integer_value(get(narrow, "inner_width")), 400);
    json_int_t sw = json_integer_value(get(narrow, "scroll_width"));
    json_t *over = get(narrow, "overflowing");
    if (sw > 400 || json_array_size(over) > 0) {
        char *text = json_dumps(over, 0);
        fail_msg("at 400 px the page is %lld px wide; sticking out: %s", (long long)sw, text);
    }
}

/* The actions of the buttons of a snapshot's row, in order, joined by spaces ("drain maint"). */
static const char *buttons(struct it_env *env, json_t *r)
{
    json_t *list = get(r, "buttons");
    const char *out = "";
    for (size_t i = 0; i < json_array_size(list); i++)
        out = it_strf(env, "%s%s%s", out, i ? " " : "", str(json_array_get(list, i), "action"));
    return out;
}

/* No write button anywhere in a snapshot: none in a row, no Reload. */
static void expect_no_buttons(struct it_env *env, json_t *snap)
{
    assert_true(json_is_false(get(snap, "writable")));
    assert_true(json_is_false(get(snap, "reload_button")));
    json_t *rows = get(snap, "backends");
    for (size_t i = 0; i < json_array_size(rows); i++)
        if (strcmp(buttons(env, json_array_get(rows, i)), "") != 0)
            fail_msg("backend %s shows buttons (%s) before the token",
                     str(json_array_get(rows, i), "backend"),
                     buttons(env, json_array_get(rows, i)));
}

/* The outcome told in a snapshot's #action-status, at `level`, in its live region. */
static json_t *action_status(json_t *snap, const char *level)
{
    json_t *a = get(snap, "action_status");
    assert_string_equal(str(a, "role"), "status");
    assert_string_equal(str(a, "live"), "polite");
    assert_true(json_is_true(get(a, "shown")));
    json_t *l = get(a, "level");
    if (!json_is_string(l) || strcmp(json_string_value(l), level) != 0)
        fail_msg("#action-status is not at \"%s\": %s", level, json_dumps(a, 0));
    return a;
}

static void expect_no_problems(json_t *report)
{
    json_t *problems = get(report, "problems");
    if (json_array_size(problems) > 0) {
        char *text = json_dumps(problems, JSON_INDENT(2));
        fail_msg("the page reported problems (CSP violations, exceptions, console errors):\n%s",
                 text);
    }
}

/* ---- the browser ---------------------------------------------------------------- */

struct browser {
    struct it_proc *proc;
    const char *shot, *narrow;
};

/* Starts dashboard_browser.py on the page; `more` are extra arguments (NULL-terminated). */
static struct browser browser_start(struct it_env *env, int admin, const char *const *more)
{
    require_browser();
    struct browser b = {
        .shot = it_path(env, "dashboard.png"),
        .narrow = it_path(env, "dashboard-narrow.png"),
    };
    const char *argv[96] = {PYTHON,
                            DRIVER,
                            "--chromium",
                            CHROMIUM,
                            "--url",
                            it_strf(env, "http://127.0.0.1:%d/", admin),
                            "--user-data-dir",
                            it_path(env, "chromium-profile"),
                            "--out",
                            it_env_dir(env),
                            "--shot",
                            b.shot,
                            "--narrow-shot",
                            b.narrow};
    size_t n = 14;
    for (size_t i = 0; more != NULL && more[i] != NULL; i++) {
        if (n + 1 >= sizeof(argv) / sizeof(argv[0]))
            fail_msg("browser_start: more than %zu arguments", sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = more[i];
    }
    argv[n] = NULL;
    b.proc = it_start(env, "dashboard_browser", argv);
    return b;
}

/* Waits for the driver to finish and returns its report; fails the test if it failed. */
static json_t *browser_report(struct it_env *env, struct browser *b, int timeout_ms)
{
    int status;
    if (it_proc_wait(b->proc, timeout_ms, &status) != 0)
        fail_msg("dashboard_browser.py did not finish within %d ms:\n%s", timeout_ms,
                 it_proc_stderr(env, b->proc));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("dashboard_browser.py failed:\n%s", it_proc_stderr(env, b->proc));
    const char *out = it_proc_stdout(env, b->proc);
    json_error_t err;
    json_t *report = json_loads(out, 0, &err);
    if (report == NULL)
        fail_msg("dashboard_browser.py printed no JSON (%s):\n%s", err.text, out);
    fprintf(stderr, "browser: started in %.2f s, live figures at %.2f s, done in %.2f s\n",
            json_number_value(get(report, "started_s")), json_number_value(get(report, "ready_s")),
            json_number_value(get(report, "total_s")));
    return report;
}

/* ---- background load ---------------------------------------------------------------- */

/*
 * A forked client: GET / on fresh connections in a loop (every 20th a GET
 * /status/503, so that the error figures have something to show), a few
 * milliseconds apart, until SIGTERM, max_requests or max_ms. It uses only
 * the harness functions that never fail the test, and dies with the test
 * process (PR_SET_PDEATHSIG) if that goes first.
 */
static pid_t load_start(int port, int max_requests, int max_ms)
{
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(120);
    /* The harness's handlers kill its children: not this process's business. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    static const char ok[] = "GET / HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n";
    static const char bad[] =
        "GET /status/503 HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n";
    int64_t end = it_now_ms() + max_ms;
    for (int i = 0; i < max_requests && it_now_ms() < end; i++) {
        int fd = it_socket_connect(port, 2);
        if (fd < 0) {
            it_sleep_ms(20);
            continue;
        }
        const char *req = i % 20 == 19 ? bad : ok;
        if (it_send_all(fd, req, strlen(req)) == 0) {
            char buf[4096];
            while (recv(fd, buf, sizeof(buf), 0) > 0)
                ;
        }
        close(fd);
        it_sleep_ms(4);
    }
    _exit(0);
}

/* Stops the load by PID: SIGTERM, then SIGKILL after 5 s. */
static void load_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int64_t deadline = it_now_ms() + 5000;
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (it_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return;
        }
        it_sleep_ms(10);
    }
}

static void wait_for_file(struct it_env *env, struct browser *b, const char *path, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    while (access(path, F_OK) != 0) {
        int status;
        if (it_proc_wait(b->proc, 0, &status) == 0)
            fail_msg("dashboard_browser.py ended before %s:\n%s", path,
                     it_proc_stderr(env, b->proc));
        if (it_now_ms() > deadline)
            fail_msg("no %s within %d ms:\n%s", path, timeout_ms, it_proc_stderr(env, b->proc));
        it_sleep_ms(50);
    }
}

/* ---- the cases ------------------------------------------------------------------------ */

IT_TEST(dashboard_served_with_its_policy)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    int admin = admin_address(env, &cfg, false);
    it_fulcrum_start(env, &cfg);

    expect_asset(env, admin, "/", "index.html", "text/html; charset=utf-8");
    expect_asset(env, admin, "/dashboard.js", "app.js", "text/javascript; charset=utf-8");
    expect_asset(env, admin, "/dashboard.css", "app.css", "text/css; charset=utf-8");

    /* What the policy needs of the page: its own two files, nothing inline, nothing outside. */
    const char *page = source_file(env, "index.html");
    assert_non_null(strstr(page, "<script src=\"/dashboard.js\" defer></script>"));
    assert_non_null(strstr(page, "<link rel=\"stylesheet\" href=\"/dashboard.css\">"));
    assert_int_equal(it_count(page, "<script"), 1);
    assert_int_equal(it_count(page, "<style"), 0);
    assert_int_equal(it_count(page, "style="), 0);
    assert_false(has_handler_attribute(page));
    assert_null(strstr(page, "//"));
    assert_null(strstr(source_file(env, "app.js"), "innerHTML"));
    assert_null(strstr(source_file(env, "app.css"), "url("));

    /* Another method is 405, and HEAD is not served. */
    struct it_response r;
    struct it_conn *c = it_connect(env, admin);
    it_send_str(c, "POST / HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(it_header(&r, "Allow"), "GET");
    it_response_free(&r);
}

IT_TEST(dashboard_public_when_a_token_is_set)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    int admin = admin_address(env, &cfg, true);
    it_fulcrum_start(env, &cfg);

    expect_asset(env, admin, "/", "index.html", "text/html; charset=utf-8");
    expect_asset(env, admin, "/dashboard.js", "app.js", "text/javascript; charset=utf-8");
    expect_asset(env, admin, "/dashboard.css", "app.css", "text/css; charset=utf-8");

    struct it_response r;
    admin_get(env, admin, "/api/status", NULL, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(it_header(&r, "WWW-Authenticate"), "Bearer");
    it_response_free(&r);
    admin_get(env, admin, "/api/events", NULL, &r);
    assert_int_equal(r.status, 401);
    it_response_free(&r);
    admin_get(env, admin, "/api/status", "Bearer " TOKEN, &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
}

IT_TEST(dashboard_shows_live_traffic_in_a_browser)
{
    require_browser();
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 2;
    int ports[3];
    ports[0] = it_backend_start(env, "a");
    ports[1] = it_backend_start_args(env, "b", (const char *const[]){"--delay-ms", "3", NULL});
    ports[2] = it_backend_start(env, "c");
    struct it_pool_config *pool =
        it_config_add_pool(&cfg, "web", 1, 3, ports[0], ports[1], ports[2]);
    pool->health = "plugin = \"tcp\"; interval_ms = 200; timeout_ms = 200; rise = 1; fall = 1;";
    pool->pool_options = "cache = { plugin = \"memory\"; max_bytes = 1048576; };";
    int admin = admin_address(env, &cfg, false);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    /* One miss and three hits in the cache before the load's misses (GET / is not cacheable). */
    for (int i = 0; i < 4; i++) {
        struct it_response cr;
        it_get(env, f->port, "test", "/cached", &cr);
        assert_int_equal(cr.status, 200);
        it_response_free(&cr);
    }
    const char *addr[3];
    for (int i = 0; i < 3; i++)
        addr[i] = it_strf(env, "127.0.0.1:%d", ports[i]);

    const char *hold = getenv("FC_IT_DASHBOARD_HOLD_S");
    int hold_s = hold != NULL && atoi(hold) > 0 ? atoi(hold) : 3;
    int64_t t0 = it_now_ms();
    pid_t load = load_start(f->port, 100000, (hold_s + 60) * 1000);
    struct browser b =
        browser_start(env, admin,
                      (const char *const[]){"--traffic", "--sync", it_env_dir(env), "--hold",
                                            it_strf(env, "%d", hold_s), NULL});
    wait_for_file(env, &b, it_path(env, "a.json"), 30000);

    /* While the page is open: a backend dies, a reload is refused, one is done. */
    it_proc_signal(it_backend_proc(env, "c"), SIGKILL);
    /*
     * The reloads wait until the daemon has seen it (a health check or the
     * load's failed connections), so that its backend event comes from the
     * generation in force: one an older generation tells is not sent.
     */
    if (!it_fulcrum_wait_log(env, f, it_strf(env, "backend %s DOWN", addr[2]), 1, 5000))
        fail_msg("fulcrum did not see backend %s go down", addr[2]);
    it_sleep_ms(300);
    cfg.workers = 3; /* refused: the number of workers needs a restart */
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), -EINVAL);
    cfg.workers = 2;
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    it_write_file(env, "go", "");

    json_t *report = browser_report(env, &b, 30000 + hold_s * 1000);
    load_stop(load);
    fprintf(stderr, "browser test: %lld ms from the load's start to the report\n",
            (long long)(it_now_ms() - t0));
    keep_artifact(env, b.shot, "dashboard.png");
    keep_artifact(env, b.narrow, "dashboard-narrow.png");

    /* The first snapshot: a row per backend, all up, with figures. */
    json_t *a = get(report, "a");
    assert_string_equal(str(a, "conn"), "live");
    assert_string_equal(str(a, "version"), FC_IT_VERSION);
    assert_string_equal(str(a, "workers"), "2");
    assert_string_equal(str(a, "generation"), "1");
    assert_int_equal(json_array_size(get(a, "backends")), 3);
    for (int i = 0; i < 3; i++) {
        json_t *r = json_array_get(get(a, "backends"), (size_t)i);
        assert_string_equal(str(r, "pool"), "web");
        assert_string_equal(str(r, "backend"), addr[i]);
        assert_string_equal(str(r, "state"), "up");
        assert_string_equal(str(r, "weight"), "1");
        if (!numeric(str(r, "rps")) || !numeric(str(r, "errors")) ||
            strstr(str(r, "p50"), "ms") == NULL || strstr(str(r, "p99"), "ms") == NULL ||
            !numeric(str(r, "inflight")))
            fail_msg("backend %s shows no figures: rps %s, errors %s, p50 %s, p99 %s, inflight %s",
                     addr[i], str(r, "rps"), str(r, "errors"), str(r, "p50"), str(r, "p99"),
                     str(r, "inflight"));
        assert_true(json_number_value(get(r, "requests")) > 0);
    }
    json_t *l = json_array_get(get(a, "listeners"), 0);
    assert_non_null(l);
    assert_string_equal(str(l, "address"), it_strf(env, "127.0.0.1:%d", f->port));
    assert_string_equal(str(l, "pool"), "web");
    json_t *p = json_array_get(get(a, "pools"), 0);
    assert_non_null(p);
    assert_string_equal(str(p, "name"), "web");
    assert_non_null(strstr(str(p, "strategy"), "round_robin"));
    /* The cache: a hit ratio, and what the store holds, of how much. */
    const char *cache = str(p, "cache");
    if (strncmp(cache, "cache ", 6) != 0 || strstr(cache, " % hits · ") == NULL ||
        strstr(cache, " of 1.0 MiB · 1 entry (memory") == NULL)
        fail_msg("the pool's cache shows \"%s\"", cache);
    assert_true(numeric(str(a, "total_rps")));
    /* A listener without a token takes writes from anyone it lets in: the buttons are there. */
    assert_true(json_is_true(get(a, "writable")));
    assert_true(json_is_true(get(a, "reload_button")));
    for (int i = 0; i < 3; i++)
        assert_string_equal(buttons(env, row(a, addr[i])), "drain maint");
    assert_true(json_is_null(get(row(a, addr[0]), "source_badge")));

    /* The second: the figures moved, as the stream went on. */
    json_t *s = get(report, "b");
    assert_string_equal(str(s, "conn"), "live");
    if (strcmp(str(a, "uptime"), str(s, "uptime")) == 0)
        fail_msg("the uptime stayed at %s", str(a, "uptime"));
    assert_true(json_integer_value(get(s, "statuses")) > json_integer_value(get(a, "statuses")));
    assert_true(sum_requests(s) > sum_requests(a));
    for (int i = 0; i < 2; i++)
        if (json_number_value(get(row(s, addr[i]), "requests")) <=
            json_number_value(get(row(a, addr[i]), "requests")))
            fail_msg("backend %s: its request count did not grow", addr[i]);
    assert_true(strtod(str(s, "total_rps"), NULL) > 0);
    assert_true(json_integer_value(get(json_array_get(get(s, "pools"), 0), "chart_points")) >= 3);
    /* The killed backend: down, and told by a backend event (only those fill the timeline). */
    assert_string_equal(str(row(s, addr[2]), "state"), "down");
    assert_string_equal(str(row(s, addr[0]), "state"), "up");
    assert_true(timeline_count(s, "backend-change", "backend", addr[2]) >= 1);
    /* Both reloads, from their events, and the counts of the status. */
    assert_int_equal(timeline_count(s, "reload", "result", "failed"), 1);
    assert_int_equal(timeline_count(s, "reload", "result", "done"), 1);
    assert_string_equal(str(s, "generation"), "2");
    assert_non_null(strstr(str(s, "timeline_summary"), "1 done, 1 failed"));
    assert_non_null(strstr(str(s, "timeline_summary"), "workers"));

    /* At 400 px: the same rows, and nothing wider than the window. */
    json_t *narrow = get(report, "narrow");
    assert_int_equal(json_array_size(get(narrow, "backends")), 3);
    expect_no_overflow(narrow);
    expect_no_problems(report);
    json_decref(report);
}

IT_TEST(dashboard_asks_for_the_token_in_a_browser)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 2);
    int admin = admin_address(env, &cfg, true);
    it_fulcrum_start(env, &cfg);

    /* A wrong token first: refused, asked again; then the right one. */
    const char *prompt = it_path(env, "dashboard-token.png");
    struct browser b =
        browser_start(env, admin,
                      (const char *const[]){"--token", "wrong", "--token", TOKEN, "--prompt-shot",
                                            prompt, "--hold", "1", NULL});
    json_t *report = browser_report(env, &b, 40000);
    keep_artifact(env, prompt, "dashboard-token.png");

    json_t *prompts = get(report, "prompts");
    assert_int_equal(json_array_size(prompts), 2);
    json_t *first = json_array_get(prompts, 0), *second = json_array_get(prompts, 1);
    assert_string_equal(str(first, "conn"), "token");
    assert_true(json_is_true(get(first, "token_form")));
    assert_true(json_is_false(get(first, "token_error")));
    assert_int_equal(json_array_size(get(first, "backends")), 0);
    expect_no_buttons(env, first);
    assert_string_equal(str(second, "conn"), "token");
    assert_true(json_is_true(get(second, "token_error")));
    expect_no_buttons(env, second);

    json_t *a = get(report, "a");
    assert_string_equal(str(a, "conn"), "live");
    assert_true(json_is_false(get(a, "token_form")));
    assert_int_equal(json_array_size(get(a, "backends")), 2);
    assert_string_equal(str(json_array_get(get(a, "backends"), 0), "state"), "up");
    /* The token taken: the buttons come with the figures. */
    assert_true(json_is_true(get(a, "writable")));
    assert_true(json_is_true(get(a, "reload_button")));
    assert_string_equal(buttons(env, json_array_get(get(a, "backends"), 0)), "drain maint");
    expect_no_overflow(get(report, "narrow"));
    /* The two refusals are the only problems: the console tells of each 401. */
    json_t *problems = get(report, "problems");
    for (size_t i = 0; i < json_array_size(problems); i++) {
        const char *problem = json_string_value(json_array_get(problems, i));
        if (strstr(problem, "401") == NULL)
            fail_msg("the page reported: %s", problem);
    }
    json_decref(report);
}

/* One --step of dashboard_browser.py (KIND:ARGUMENT), as one argument. */
static const char *step(struct it_env *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *step(struct it_env *env, const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(text))
        fail_msg("a step longer than %zu bytes", sizeof(text) - 1);
    return it_strf(env, "--step=%s", text);
}

/* The selector of the button `action` in the row of backend `address`. */
static const char *button(struct it_env *env, const char *address, const char *action)
{
    return it_strf(env, "tr.backend[data-backend=\"%s\"] button.action[data-action=\"%s\"]",
                   address, action);
}

/* A wait: until the row of `address` shows `state` and its buttons are back. */
static const char *row_shows(struct it_env *env, const char *address, const char *state)
{
    return step(
        env,
        "wait:(() => { const tr = document.querySelector('tr.backend[data-backend=\"%s\"]');"
        " return !!tr && tr.dataset.state === '%s' && tr.getAttribute('aria-busy') !== 'true'"
        " && tr.querySelectorAll('button.action').length > 0; })()",
        address, state);
}

/* A wait: until the row of `address` shows no requests/s at all (its rate is 0.0). */
static const char *row_idle(struct it_env *env, const char *address)
{
    return step(
        env,
        "wait:(() => { const tr = document.querySelector('tr.backend[data-backend=\"%s\"]');"
        " return !!tr && tr.querySelector('td.rps').textContent === '0.0'; })()",
        address);
}

/* Waits for the browser's snapshot NAME (SYNC/NAME.json) and returns it. */
static json_t *synced(struct it_env *env, struct browser *b, const char *name)
{
    const char *path = it_path(env, it_strf(env, "%s.json", name));
    wait_for_file(env, b, path, 40000);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (j == NULL)
        fail_msg("%s: %s", path, err.text);
    return j;
}

/*
 * With a token: without it the page shows no button; with it, every row has
 * its buttons and the header Reload. Drain and Maint, clicked, change what
 * the daemon does (its /api/status, checked here between the browser's
 * steps) and what the rows show; Ready brings them back; Reload shows the
 * new generation; a reload of a broken file shows the server's own error
 * lines. A backend added at run time wears its "runtime" badge.
 */
IT_TEST(dashboard_controls_backends_in_a_browser)
{
    require_browser();
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 2;
    int ports[4];
    ports[0] = it_backend_start(env, "a");
    ports[1] = it_backend_start(env, "b");
    ports[2] = it_backend_start(env, "c");
    struct it_pool_config *pool =
        it_config_add_pool(&cfg, "web", 1, 3, ports[0], ports[1], ports[2]);
    pool->health = "plugin = \"tcp\"; interval_ms = 200; timeout_ms = 200; rise = 1; fall = 1;";
    int admin = admin_address(env, &cfg, true);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    ports[3] = it_backend_start(env, "d");
    const char *addr[4];
    for (int i = 0; i < 4; i++)
        addr[i] = it_strf(env, "127.0.0.1:%d", ports[i]);
    json_t *j;
    assert_int_equal(admin_write(env, admin, "POST", "/api/pools/web/backends",
                                 it_strf(env, "{\"address\": \"%s\"}", addr[3]), &j),
                     201);
    json_decref(j);

    const char *hold = getenv("FC_IT_DASHBOARD_HOLD_S");
    int hold_s = hold != NULL && atoi(hold) > 0 ? atoi(hold) : 1;
    pid_t load = load_start(f->port, 100000, (hold_s + 80) * 1000);
    const char *drained_shot = it_path(env, "dashboard-controls.png");
    it_write_file(env, "go", ""); /* snapshot a needs no wait: the steps have theirs */
    const char *const args[] = {
        "--token",
        TOKEN,
        "--traffic",
        "--sync",
        it_env_dir(env),
        "--hold",
        "1",
        step(env, "pause:%d", hold_s),
        step(env, "click:%s", button(env, addr[1], "drain")),
        row_shows(env, addr[1], "drain"),
        step(env, "click:%s", button(env, addr[2], "maint")),
        row_shows(env, addr[2], "maint"),
        row_idle(env, addr[1]),
        row_idle(env, addr[2]),
        step(env, "snap:drained"),
        step(env, "shot:%s", drained_shot),
        step(env, "sync:go-ready"),
        step(env, "click:%s", button(env, addr[1], "ready")),
        row_shows(env, addr[1], "up"),
        step(env, "click:%s", button(env, addr[2], "ready")),
        row_shows(env, addr[2], "up"),
        step(env, "snap:ready"),
        step(env, "sync:go-reload"),
        step(env, "click:#reload"),
        step(env, "wait:(() => { const s = document.querySelector('#action-status');"
                  " return s.dataset.level === 'ok' && !!s.dataset.generation &&"
                  " document.querySelector('#generation').textContent === s.dataset.generation; "
                  "})()"),
        step(env, "snap:reloaded"),
        step(env, "sync:go-broken"),
        step(env, "click:#reload"),
        step(env, "wait:document.querySelector('#action-status').dataset.level === 'error'"),
        step(env, "snap:failed"),
        NULL};
    struct browser b = browser_start(env, admin, args);

    /* Drained and in maintenance, as the daemon has them. */
    json_t *drained = synced(env, &b, "drained");
    expect_status_state(env, admin, addr[0], "up", "config", 0);
    expect_status_state(env, admin, addr[1], "drain", "config", 0);
    expect_status_state(env, admin, addr[2], "maint", "config", 0);
    expect_status_state(env, admin, addr[3], "up", "runtime", 0);
    it_write_file(env, "go-ready", "");

    /* Back in rotation (c's health checks start again: up within a few of them). */
    json_t *ready = synced(env, &b, "ready");
    expect_status_state(env, admin, addr[1], "up", "config", 0);
    expect_status_state(env, admin, addr[2], "up", "config", 2000);
    json_t *st = admin_status(env, admin);
    json_int_t generation = json_integer_value(json_object_get(st, "generation"));
    json_decref(st);
    it_write_file(env, "go-reload", "");

    /* A reload done: the generation the page shows is the daemon's. */
    json_t *reloaded = synced(env, &b, "reloaded");
    st = admin_status(env, admin);
    assert_int_equal(json_integer_value(json_object_get(st, "generation")), generation + 1);
    json_decref(st);
    /* Then a broken file, written the way an editor that renames does. */
    const char *good = it_config_render(env, &cfg, f->port);
    const char *tmp = it_write_file(
        env, "broken.conf.tmp", it_strf(env, "%s\nworkers = \"many\";\nbogus_key = 1;\n", good));
    if (rename(tmp, f->config_path) != 0)
        fail_msg("rename %s: %s", tmp, strerror(errno));
    it_write_file(env, "go-broken", "");

    json_t *report = browser_report(env, &b, 60000 + hold_s * 1000);
    load_stop(load);
    keep_artifact(env, drained_shot, "dashboard-controls.png");
    keep_artifact(env, b.shot, "dashboard-controls-failed.png");
    keep_artifact(env, b.narrow, "dashboard-controls-narrow.png");
    /* What the server answers that reload, asked again: the lines the page showed. */
    assert_int_equal(admin_write(env, admin, "POST", "/api/reload", NULL, &j), 422);
    json_t *errors = json_object_get(j, "errors");
    assert_true(json_array_size(errors) >= 1);

    /* Without the token: the prompt, and no button. */
    json_t *prompts = get(report, "prompts");
    assert_int_equal(json_array_size(prompts), 1);
    assert_true(json_is_true(get(json_array_get(prompts, 0), "token_form")));
    expect_no_buttons(env, json_array_get(prompts, 0));

    /* With it: each row has the buttons that change its state, the header Reload. */
    json_t *a = get(report, "a");
    assert_string_equal(str(a, "conn"), "live");
    assert_true(json_is_true(get(a, "writable")));
    assert_true(json_is_true(get(a, "reload_button")));
    assert_int_equal(json_array_size(get(a, "backends")), 4);
    for (int i = 0; i < 4; i++) {
        json_t *r = row(a, addr[i]);
        assert_string_equal(str(r, "state"), "up");
        assert_string_equal(buttons(env, r), "drain maint");
        json_t *first = json_array_get(get(r, "buttons"), 0);
        assert_string_equal(str(first, "label"), "Drain");
        assert_string_equal(str(first, "aria_label"), it_strf(env, "Drain %s (pool web)", addr[i]));
        assert_true(json_is_false(get(first, "disabled")));
    }
    /* The backend added at run time, and only it, wears the badge. */
    assert_string_equal(str(row(a, addr[3]), "source"), "runtime");
    assert_string_equal(str(row(a, addr[3]), "source_badge"), "runtime");
    assert_true(json_is_null(get(row(a, addr[0]), "source_badge")));
    assert_string_equal(str(row(a, addr[0]), "source"), "config");

    /* Every click's button was disabled while its request ran. */
    json_t *clicks = get(report, "clicks");
    assert_int_equal(json_array_size(clicks), 6);
    for (size_t i = 0; i < json_array_size(clicks); i++)
        if (!json_is_true(get(json_array_get(clicks, i), "disabled_while_running")))
            fail_msg("the button of %s was not disabled while its request ran",
                     str(json_array_get(clicks, i), "selector"));

    /* Drained, in maintenance: in words, in classes, with the buttons that undo it. */
    json_t *r = row(drained, addr[1]);
    assert_string_equal(str(r, "state"), "drain");
    assert_non_null(strstr(str(r, "state_class"), "state-drain"));
    assert_non_null(strstr(str(r, "reason"), "no new requests"));
    assert_string_equal(buttons(env, r), "ready maint");
    assert_string_equal(str(r, "rps"), "0.0");
    r = row(drained, addr[2]);
    assert_string_equal(str(r, "state"), "maint");
    assert_non_null(strstr(str(r, "state_class"), "state-maint"));
    assert_string_equal(buttons(env, r), "ready drain");
    assert_string_equal(str(row(drained, addr[0]), "state"), "up");
    json_t *as = action_status(drained, "ok");
    assert_non_null(strstr(str(as, "text"), addr[2]));
    assert_non_null(strstr(str(as, "text"), "in maintenance"));
    assert_true(timeline_count(drained, "backend-change", "state", "drain") >= 1);
    assert_true(timeline_count(drained, "backend-change", "state", "maint") >= 1);

    /* Ready again. */
    for (int i = 1; i <= 2; i++) {
        r = row(ready, addr[i]);
        assert_string_equal(str(r, "state"), "up");
        assert_non_null(strstr(str(r, "state_class"), "state-up"));
        assert_string_equal(buttons(env, r), "drain maint");
    }
    assert_non_null(strstr(str(action_status(ready, "ok"), "text"), "back in rotation"));

    /* Reloaded: the new generation, in the header and in the message. */
    const char *next = it_strf(env, "%lld", (long long)(generation + 1));
    assert_string_equal(str(reloaded, "generation"), next);
    assert_non_null(strstr(str(action_status(reloaded, "ok"), "text"),
                           it_strf(env, "generation %s in force", next)));
    assert_true(json_is_false(get(reloaded, "reload_disabled")));

    /*
     * Refused: the server's lines, and the generation stays. Those that name
     * the file are the same word for word; the last one counts the reloads,
     * one more since.
     */
    json_t *failed = get(report, "failed");
    as = action_status(failed, "error");
    assert_non_null(strstr(str(as, "text"), it_strf(env, "generation %s stays in force", next)));
    json_t *lines = get(as, "lines");
    assert_int_equal(json_array_size(lines), json_array_size(errors));
    size_t named = 0;
    for (size_t i = 0; i < json_array_size(errors); i++) {
        const char *want = json_string_value(json_array_get(errors, i));
        const char *got = json_string_value(json_array_get(lines, i));
        if (strstr(want, f->config_path) != NULL) {
            assert_string_equal(got, want);
            named++;
        } else {
            assert_non_null(strstr(got, "reload failed"));
        }
    }
    assert_true(named >= 1);
    assert_string_equal(str(failed, "generation"), next);
    json_decref(j);

    /* At 400 px, with the buttons: nothing wider than the window. */
    expect_no_overflow(get(report, "narrow"));
    assert_string_equal(buttons(env, row(get(report, "narrow"), addr[0])), "drain maint");
    /* The page's only complaints: the 401 before the token, the 422 of the broken reload. */
    json_t *problems = get(report, "problems");
    for (size_t i = 0; i < json_array_size(problems); i++) {
        const char *problem = json_string_value(json_array_get(problems, i));
        if (strstr(problem, "401") == NULL &&
            (strstr(problem, "422") == NULL || strstr(problem, "/api/reload") == NULL))
            fail_msg("the page reported: %s", problem);
    }
    json_decref(drained);
    json_decref(ready);
    json_decref(reloaded);
    json_decref(report);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(dashboard_served_with_its_policy),
    IT_CASE(dashboard_public_when_a_token_is_set),
    IT_CASE(dashboard_shows_live_traffic_in_a_browser),
    IT_CASE(dashboard_asks_for_the_token_in_a_browser),
    IT_CASE(dashboard_controls_backends_in_a_browser),
};

IT_MAIN(tests)
