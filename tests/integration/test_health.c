/*
 * Backend health end to end: the http and tcp checkers take failing backends
 * out of rotation and bring them back, passive detection does the same
 * without a checker, and none of it costs a client an error or a wait.
 *
 * The probes run every INTERVAL_MS so that each case takes a second or two.
 * Transitions are observed in fulcrum's stderr, which carries one line per
 * transition:
 *
 *   pool web: backend 127.0.0.1:9001 DOWN (HTTP 503, 3 of 3 checks failed)
 *   pool web: backend 127.0.0.1:9001 UP (2 of 2 checks passed)
 *   pool web: backend 127.0.0.1:9001 DOWN (connect failed, 2 in a row; retried in 1000 ms)
 *
 * and is written before the new state is published to the workers: a
 * response that arrived while the line was not yet in the log was served
 * under the old state. The cases lean on that to assert without races.
 *
 * The demo backends answer GET /hc with 503 while their --hc-file contains
 * "fail"; the file is replaced with rename(), so a backend never reads half
 * of it.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define INTERVAL_MS 100
#define TIMEOUT_MS 200
/* How long a transition may take to show up in the log, far above what it needs. */
#define TRANSITION_DEADLINE_MS 4000

/* ---- helpers ------------------------------------------------------------ */

/* The first line of `text` that contains `needle`, as an env string, or NULL. */
static const char *line_with(struct it_env *env, const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    if (at == NULL)
        return NULL;
    const char *start = at;
    while (start > text && start[-1] != '\n')
        start--;
    const char *end = strchr(at, '\n');
    size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
    return it_strf(env, "%.*s", (int)len, start);
}

static const char *log_text(struct it_env *env, struct it_fulcrum *f)
{
    return it_proc_stderr(env, f->proc);
}

/*
 * Waits until fulcrum's stderr holds `needle` at least n times; returns the
 * milliseconds waited. Fails the test at the deadline.
 */
static int64_t wait_log(struct it_env *env, struct it_fulcrum *f, const char *needle, size_t n,
                        int timeout_ms)
{
    int64_t start = it_now_ms();
    for (;;) {
        if (it_fulcrum_log_count(env, f, needle) >= n)
            return it_now_ms() - start;
        if (it_now_ms() - start > timeout_ms) {
            it_proc_dump(env, f->proc);
            fail_msg("\"%s\" not logged %zu time(s) within %d ms", needle, n, timeout_ms);
        }
        it_sleep_ms(10);
    }
}

static const char *down_needle(struct it_env *env, int port)
{
    return it_strf(env, "backend 127.0.0.1:%d DOWN", port);
}

static const char *up_needle(struct it_env *env, int port)
{
    return it_strf(env, "backend 127.0.0.1:%d UP", port);
}

/* Starts demo backend `name` whose /hc follows the file "hc-<name>" (now "ok"). */
static int start_hc_backend(struct it_env *env, const char *name)
{
    const char *path = it_write_file(env, it_strf(env, "hc-%s", name), "ok\n");
    const char *const extra[] = {"--hc-file", path, NULL};
    return it_backend_start_args(env, name, extra);
}

/* Replaces the file "hc-<name>" in one step with `text` ("ok" or "fail"). */
static void set_hc(struct it_env *env, const char *name, const char *text)
{
    const char *tmp = it_write_file(env, it_strf(env, "hc-%s.tmp", name), text);
    const char *path = it_path(env, it_strf(env, "hc-%s", name));
    if (rename(tmp, path) != 0)
        fail_msg("rename %s: %s", path, strerror(errno));
}

/* One GET / on a new connection; the status, and X-Backend ("" if none) in *from. */
static int get_from(struct it_env *env, struct it_fulcrum *f, const char **from)
{
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    const char *b = it_header(&r, "X-Backend");
    *from = it_strf(env, "%s", b != NULL ? b : "");
    int status = r.status;
    it_response_free(&r);
    return status;
}

/* n requests: every one must get 200 from a backend other than `avoid`. */
static void expect_avoided(struct it_env *env, struct it_fulcrum *f, int n, const char *avoid)
{
    for (int i = 0; i < n; i++) {
        const char *from;
        int status = get_from(env, f, &from);
        if (status != 200 || from[0] == '\0' || strcmp(from, avoid) == 0) {
            it_proc_dump(env, f->proc);
            fail_msg("request %d: status %d from \"%s\"; expected 200 from a backend other "
                     "than \"%s\"",
                     i, status, from, avoid);
        }
    }
}

/* Up to n requests until `want` answers one; all must get 200. True if it did. */
static bool reaches(struct it_env *env, struct it_fulcrum *f, int n, const char *want)
{
    for (int i = 0; i < n; i++) {
        const char *from;
        int status = get_from(env, f, &from);
        if (status != 200)
            fail_msg("request %d: status %d from \"%s\", expected 200", i, status, from);
        if (strcmp(from, want) == 0)
            return true;
    }
    return false;
}

static const char *http_check(struct it_env *env, int rise, int fall, int timeout_ms)
{
    return it_strf(env,
                   "plugin = \"http\"; path = \"/hc\"; interval_ms = %d; timeout_ms = %d; "
                   "rise = %d; fall = %d;",
                   INTERVAL_MS, timeout_ms, rise, fall);
}

/*
 * Binds 127.0.0.1:port without listening, so that connections to it are
 * refused and no process of a test running beside us can take the port of a
 * backend we killed. Best effort: -1 if someone has it already.
 */
static int squat_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- 1: http checker, out and back in ----------------------------------- */

IT_TEST(http_check_takes_backend_out_and_back)
{
    enum { RISE = 2, FALL = 3 };
    int a = start_hc_backend(env, "a");
    int b = start_hc_backend(env, "b");
    int c = start_hc_backend(env, "c");
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 3, a, b, c);
    pool->health = http_check(env, RISE, FALL, TIMEOUT_MS);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *down = down_needle(env, b), *up = up_needle(env, b);

    assert_true(reaches(env, f, 20, "b"));

    set_hc(env, "b", "fail\n");
    int64_t took = wait_log(env, f, down, 1, TRANSITION_DEADLINE_MS);
    /* FALL failed probes, INTERVAL_MS apart: no sooner than (FALL - 1) intervals. */
    if (took < (FALL - 1) * INTERVAL_MS - 50 || took > 2000)
        fail_msg("DOWN %lld ms after /hc began to fail; expected about %d", (long long)took,
                 FALL * INTERVAL_MS);
    const char *line = line_with(env, log_text(env, f), down);
    if (strstr(line, "HTTP 503") == NULL ||
        strstr(line, it_strf(env, "%d of %d checks failed", FALL, FALL)) == NULL)
        fail_msg("DOWN line without its reason: %s", line);
    expect_avoided(env, f, 20, "b");

    /* Down it stays, once logged, while /hc fails. */
    it_sleep_ms(5 * INTERVAL_MS);
    assert_int_equal(it_fulcrum_log_count(env, f, down), 1);
    assert_int_equal(it_fulcrum_log_count(env, f, up), 0);

    set_hc(env, "b", "ok\n");
    took = wait_log(env, f, up, 1, TRANSITION_DEADLINE_MS);
    if (took < (RISE - 1) * INTERVAL_MS - 50 || took > 2000)
        fail_msg("UP %lld ms after /hc recovered; expected about %d", (long long)took,
                 RISE * INTERVAL_MS);
    line = line_with(env, log_text(env, f), up);
    if (strstr(line, it_strf(env, "%d of %d checks passed", RISE, RISE)) == NULL)
        fail_msg("UP line without its reason: %s", line);
    assert_true(reaches(env, f, 20, "b"));

    it_sleep_ms(3 * INTERVAL_MS);
    assert_int_equal(it_fulcrum_log_count(env, f, down), 1);
    assert_int_equal(it_fulcrum_log_count(env, f, up), 1);
    /* The healthy ones never moved. */
    assert_int_equal(it_fulcrum_log_count(env, f, down_needle(env, a)), 0);
    assert_int_equal(it_fulcrum_log_count(env, f, down_needle(env, c)), 0);
}

/* ---- 2: tcp checker, a killed backend ----------------------------------- */

IT_TEST(tcp_check_killed_backend_no_client_error)
{
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    int c = it_backend_start(env, "c");
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 2;
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 0, 3, a, b, c);
    pool->health = it_strf(env,
                           "plugin = \"tcp\"; interval_ms = %d; timeout_ms = %d; rise = 2; "
                           "fall = 2;",
                           INTERVAL_MS, TIMEOUT_MS);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* Every backend served, so the workers hold idle connections to b too. */
    assert_true(reaches(env, f, 20, "b"));
    for (int i = 0; i < 10; i++) {
        const char *from;
        assert_int_equal(get_from(env, f, &from), 200);
    }

    struct it_proc *proc = it_backend_proc(env, "b");
    it_proc_signal(proc, SIGKILL);
    int status = 0;
    assert_int_equal(it_proc_wait(proc, IT_STOP_TIMEOUT_MS, &status), 0);
    assert_true(WIFSIGNALED(status));
    int squat = squat_port(b);

    const char *down = down_needle(env, b);
    wait_log(env, f, down, 1, TRANSITION_DEADLINE_MS);
    const char *line = line_with(env, log_text(env, f), down);
    if (strstr(line, "connect") == NULL || strstr(line, "2 of 2 checks failed") == NULL)
        fail_msg("DOWN line without its reason: %s", line);

    expect_avoided(env, f, 60, "b");
    assert_int_equal(it_fulcrum_log_count(env, f, down), 1);
    assert_int_equal(it_fulcrum_log_count(env, f, up_needle(env, b)), 0);
    if (squat >= 0)
        close(squat);
}

/* ---- 3: a backend that accepts and never answers ------------------------- */

#define MAX_HELD 128

/* A listening socket nobody answers on: connections are accepted and held open, unread. */
struct mute_backend {
    int listen_fd;
    int port;
    int held[MAX_HELD];
    size_t accepted;
};

static void mute_start(struct mute_backend *m)
{
    memset(m, 0, sizeof(*m));
    m->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(m->listen_fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(m->listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(m->listen_fd, (struct sockaddr *)&sin, &len), 0);
    assert_int_equal(listen(m->listen_fd, MAX_HELD), 0);
    m->port = ntohs(sin.sin_port);
}

/*
 * Accepts whatever connections wait in the backlog, so that `accepted` counts
 * every connection made so far (the kernel completes a handshake before
 * accept() is called).
 */
static size_t mute_drain(struct mute_backend *m)
{
    for (;;) {
        int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        if (m->accepted < MAX_HELD)
            m->held[m->accepted] = fd;
        else
            close(fd);
        m->accepted++;
    }
    return m->accepted;
}

static void mute_stop(struct mute_backend *m)
{
    for (size_t i = 0; i < m->accepted && i < MAX_HELD; i++)
        close(m->held[i]);
    close(m->listen_fd);
}

IT_TEST(hanging_backend_costs_one_probe_per_timeout)
{
    /* Static: a failed assertion leaves this frame, and the fds are only closed at exit then. */
    static struct mute_backend mute;
    mute_start(&mute);
    int a = it_backend_start(env, "a");
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 2, a, mute.port);
    pool->health = http_check(env, 2, 2, TIMEOUT_MS);
    int64_t started = it_now_ms();
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    const char *down = down_needle(env, mute.port);
    int64_t deadline = it_now_ms() + TRANSITION_DEADLINE_MS;
    while (it_fulcrum_log_count(env, f, down) == 0) {
        mute_drain(&mute);
        if (it_now_ms() > deadline) {
            it_proc_dump(env, f->proc);
            fail_msg("the mute backend was not marked down within %d ms", TRANSITION_DEADLINE_MS);
        }
        it_sleep_ms(10);
    }
    const char *line = line_with(env, log_text(env, f), down);
    if (strstr(line, it_strf(env, "timeout after %d ms", TIMEOUT_MS)) == NULL)
        fail_msg("DOWN line without a timeout reason: %s", line);

    /* Requests go to a meanwhile, without waiting on the mute one. */
    expect_avoided(env, f, 10, "");

    size_t before = mute_drain(&mute);
    int64_t t0 = it_now_ms();
    while (it_now_ms() - t0 < 2000) {
        mute_drain(&mute);
        it_sleep_ms(20);
    }
    size_t after = mute_drain(&mute);
    int64_t now = it_now_ms();
    long window_max = (long)((now - t0) / TIMEOUT_MS) + 2;
    long total_max = (long)((now - started) / TIMEOUT_MS) + 2;
    fprintf(stderr, "mute backend: %zu connections in %lld ms (%zu in the last %lld ms)\n", after,
            (long long)(now - started), after - before, (long long)(now - t0));
    if ((long)(after - before) > window_max)
        fail_msg("%zu probe connections in %lld ms with timeout_ms = %d: a pile-up", after - before,
                 (long long)(now - t0), TIMEOUT_MS);
    if ((long)after > total_max)
        fail_msg("%zu probe connections in %lld ms since start with timeout_ms = %d", after,
                 (long long)(now - started), TIMEOUT_MS);
    /* A down backend is still probed, or it could never come back. */
    assert_true(after - before >= 2);
    assert_int_equal(it_fulcrum_log_count(env, f, down), 1);
    assert_int_equal(it_fulcrum_log_count(env, f, up_needle(env, mute.port)), 0);
    mute_stop(&mute);
}

/* ---- 4: every backend down ----------------------------------------------- */

IT_TEST(all_down_answers_503_at_once)
{
    int ports[3];
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        ports[i] = start_hc_backend(env, names[i]);
        set_hc(env, names[i], "fail\n");
    }
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool =
        it_config_add_pool(&cfg, "web", 1, 3, ports[0], ports[1], ports[2]);
    pool->health = http_check(env, 2, 2, TIMEOUT_MS);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    for (int i = 0; i < 3; i++)
        wait_log(env, f, down_needle(env, ports[i]), 1, TRANSITION_DEADLINE_MS);

    for (int i = 0; i < 10; i++) {
        int64_t t0 = it_now_ms();
        struct it_response r;
        it_get(env, f->port, "test", "/", &r);
        int64_t took = it_now_ms() - t0;
        if (r.status != 503)
            fail_msg("request %d: status %d, expected 503", i, r.status);
        assert_null(it_header(&r, "X-Backend"));
        assert_non_null(it_header(&r, "Content-Length"));
        it_response_free(&r);
        if (took >= 100)
            fail_msg("request %d: 503 after %lld ms; expected at once", i, (long long)took);
    }
}

/* ---- 5: passive detection without a checker ---------------------------- */

IT_TEST(passive_detection_cools_down_and_retries)
{
    enum { FAIL_TIMEOUT_MS = 1000 };
    int a = it_backend_start(env, "a");
    int dead = it_dead_port(env);
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 2, a, dead);
    pool->pool_options = it_strf(env, "max_fails = 2; fail_timeout_ms = %d;", FAIL_TIMEOUT_MS);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *down = down_needle(env, dead);
    const char *up = up_needle(env, dead);
    const char *tried = it_strf(env, "backend 127.0.0.1:%d: connect", dead);

    /* Every other request tries the dead one first; the retry takes it to a. */
    int n = 0;
    while (it_fulcrum_log_count(env, f, down) == 0) {
        if (++n > 10) {
            it_proc_dump(env, f->proc);
            fail_msg("the dead backend was not marked down after %d requests", n - 1);
        }
        expect_avoided(env, f, 1, "");
    }
    int64_t down_at = it_now_ms();
    const char *text = log_text(env, f);
    const char *line = line_with(env, text, down);
    if (strstr(line, "connect failed, 2 in a row") == NULL ||
        strstr(line, it_strf(env, "retried in %d ms", FAIL_TIMEOUT_MS)) == NULL)
        fail_msg("DOWN line without its reason: %s", line);
    size_t tries = it_count(text, tried);
    assert_int_equal(tries, 2);

    /*
     * During the cool-down no request tries it. A response that came back
     * before the UP line was logged was routed while it was still down.
     */
    int during = 0;
    for (;;) {
        if (it_now_ms() - down_at > FAIL_TIMEOUT_MS + 3000) {
            it_proc_dump(env, f->proc);
            fail_msg("the cool-down did not end within %d ms", FAIL_TIMEOUT_MS + 3000);
        }
        expect_avoided(env, f, 1, "");
        text = log_text(env, f);
        if (it_count(text, up) > 0)
            break;
        during++;
        if (it_count(text, tried) != tries) {
            it_proc_dump(env, f->proc);
            fail_msg("request %d during the cool-down tried the dead backend", during);
        }
        it_sleep_ms(10);
    }
    int64_t cooled = it_now_ms() - down_at;
    fprintf(stderr, "cool-down: %d requests, UP after %lld ms\n", during, (long long)cooled);
    assert_true(during >= 20);
    if (cooled < FAIL_TIMEOUT_MS - 100 || cooled > FAIL_TIMEOUT_MS + 1500)
        fail_msg("UP %lld ms after DOWN; expected fail_timeout_ms = %d", (long long)cooled,
                 FAIL_TIMEOUT_MS);
    line = line_with(env, text, up);
    if (strstr(line, "cool-down") == NULL)
        fail_msg("UP line without its reason: %s", line);

    /* Back in rotation: it is tried again (and fails again), clients still see 200. */
    for (int i = 0; i < 4 && it_fulcrum_log_count(env, f, tried) == tries; i++)
        expect_avoided(env, f, 1, "");
    if (it_fulcrum_log_count(env, f, tried) == tries) {
        it_proc_dump(env, f->proc);
        fail_msg("the dead backend was not tried again after its cool-down");
    }
}

/* ---- 6: initial = "down" ------------------------------------------------- */

IT_TEST(initial_down_waits_for_rise)
{
    enum { RISE = 10 };
    int a = it_backend_start(env, "a");
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 1, a);
    pool->health = it_strf(env, "%s initial = \"down\";", http_check(env, RISE, 2, TIMEOUT_MS));
    int64_t started = it_now_ms();
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *up = up_needle(env, a);

    int refused = 0;
    int64_t up_at = -1;
    for (;;) {
        if (it_now_ms() - started > TRANSITION_DEADLINE_MS + 2000) {
            it_proc_dump(env, f->proc);
            fail_msg("no 200 within %d ms of the start", TRANSITION_DEADLINE_MS + 2000);
        }
        const char *from;
        int status = get_from(env, f, &from);
        bool logged = it_fulcrum_log_count(env, f, up) > 0;
        if (logged && up_at < 0)
            up_at = it_now_ms();
        if (!logged) {
            /* Served before UP was logged, so before it was published: not in service. */
            if (status != 503 || from[0] != '\0')
                fail_msg("status %d from \"%s\" before the backend came up; expected 503", status,
                         from);
            refused++;
        } else if (status == 200) {
            assert_string_equal(from, "a");
            break;
        } else if (status != 503 || it_now_ms() - up_at > 1000) {
            fail_msg("status %d from \"%s\" after UP was logged", status, from);
        }
        it_sleep_ms(20);
    }
    int64_t took = up_at - started;
    fprintf(stderr, "initial down: %d requests refused, UP after %lld ms\n", refused,
            (long long)took);
    assert_true(refused >= 1);
    /* RISE passing probes, the first at once, then INTERVAL_MS apart. */
    assert_true(took >= (RISE - 1) * INTERVAL_MS - 100);
    const char *line = line_with(env, log_text(env, f), up);
    if (strstr(line, it_strf(env, "%d of %d checks passed", RISE, RISE)) == NULL)
        fail_msg("UP line without its reason: %s", line);

    for (int i = 0; i < 10; i++) {
        const char *from;
        assert_int_equal(get_from(env, f, &from), 200);
        assert_string_equal(from, "a");
    }
    it_sleep_ms(3 * INTERVAL_MS);
    assert_int_equal(it_fulcrum_log_count(env, f, up), 1);
    assert_int_equal(it_fulcrum_log_count(env, f, down_needle(env, a)), 0);
}

/* ---- 7: a reload keeps health ------------------------------------------- */

IT_TEST(reload_keeps_backend_down)
{
    int a = start_hc_backend(env, "a");
    int b = start_hc_backend(env, "b");
    int c = start_hc_backend(env, "c");
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *pool = it_config_add_pool(&cfg, "web", 1, 3, a, b, c);
    pool->health = http_check(env, 2, 2, TIMEOUT_MS);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *down = down_needle(env, b), *up = up_needle(env, b);

    set_hc(env, "b", "fail\n");
    wait_log(env, f, down, 1, TRANSITION_DEADLINE_MS);
    expect_avoided(env, f, 10, "b");

    /* Something else changes: the probe timeout and the connect timeout. */
    pool->health = http_check(env, 2, 2, TIMEOUT_MS + 100);
    cfg.connect_ms = 1500;
    if (it_fulcrum_reload(env, f, &cfg) != 0) {
        it_proc_dump(env, f->proc);
        fail_msg("the reload was refused");
    }
    /* At once and a while later: still out, never logged up, never logged down again. */
    expect_avoided(env, f, 20, "b");
    it_sleep_ms(5 * INTERVAL_MS);
    expect_avoided(env, f, 20, "b");
    assert_int_equal(it_fulcrum_log_count(env, f, down), 1);
    assert_int_equal(it_fulcrum_log_count(env, f, up), 0);

    /* The new generation's checker carries on from there. */
    set_hc(env, "b", "ok\n");
    wait_log(env, f, up, 1, TRANSITION_DEADLINE_MS);
    assert_true(reaches(env, f, 20, "b"));
    it_sleep_ms(3 * INTERVAL_MS);
    assert_int_equal(it_fulcrum_log_count(env, f, up), 1);
    assert_int_equal(it_fulcrum_log_count(env, f, down), 1);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(http_check_takes_backend_out_and_back),
    IT_CASE(tcp_check_killed_backend_no_client_error),
    IT_CASE(hanging_backend_costs_one_probe_per_timeout),
    IT_CASE(all_down_answers_503_at_once),
    IT_CASE(passive_detection_cools_down_and_retries),
    IT_CASE(initial_down_waits_for_rise),
    IT_CASE(reload_keeps_backend_down),
};

IT_MAIN(tests)
