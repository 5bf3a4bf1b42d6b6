/*
 * Limits: a head larger than limits.max_header_bytes gets 431, a body
 * declared larger than limits.max_body_bytes gets 413, both from the proxy,
 * and requests inside the limits pass. Out of descriptors, or at
 * limits.max_connections, fulcrum stops accepting for a while instead of
 * spinning, and takes the waiting connections once it can.
 */
#include "harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct it_fulcrum *start_one(struct it_env *env, long max_body_bytes)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.max_header_bytes = 16384;
    cfg.max_body_bytes = max_body_bytes;
    return it_fulcrum_start(env, &cfg);
}

static const char *cookie_request(struct it_env *env, size_t cookie_len)
{
    char *cookie = malloc(cookie_len + 1);
    memset(cookie, 'c', cookie_len);
    cookie[cookie_len] = '\0';
    const char *req = it_strf(env, "GET / HTTP/1.1\r\nHost: test\r\nCookie: %s\r\n\r\n", cookie);
    free(cookie);
    return req;
}

IT_TEST(header_too_large)
{
    struct it_fulcrum *f = start_one(env, 0);
    struct it_response r;

    it_fetch(env, f->port, "GET", cookie_request(env, 20 * 1024), &r);
    assert_int_equal(r.status, 431);
    assert_null(it_header(&r, "X-Backend"));
    assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", r.body_len));
    it_response_free(&r);

    /* Well inside the limit: passes. */
    it_fetch(env, f->port, "GET", cookie_request(env, 8 * 1024), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "a\n");
    it_response_free(&r);
}

IT_TEST(body_too_large)
{
    struct it_fulcrum *f = start_one(env, 1000);
    char body[5000];
    it_pattern_fill(body, 0, sizeof(body));
    struct it_response r;

    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n");
    it_send(c, body, sizeof(body));
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.status, 413);
    assert_null(it_header(&r, "X-Backend"));
    assert_string_equal(it_header(&r, "Content-Length"), it_strf(env, "%zu", r.body_len));
    it_response_free(&r);
    it_conn_close(c);

    /* Exactly at the limit: passes. */
    c = it_connect(env, f->port);
    it_send_sum(env, c, body, 1000);
    it_expect_sum(env, c, body, 1000);
}

/* CPU time (user + system, in clock ticks) that process pid has used. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    long utime = 0, stime = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2)
        return -1;
    return utime + stime;
}

IT_TEST(descriptor_exhaustion_pauses_and_recovers)
{
    enum { CLIENTS = 80 };
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.workers = 2;
    cfg.nofile = 64;              /* about 30 go to the daemon itself */
    cfg.max_connections = 100000; /* descriptors run out first */
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    pid_t pid = it_proc_pid(f->proc);

    /* Half-sent requests hold their descriptors until client_header_ms. */
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = it_socket_connect(f->port, 5);
        assert_true(fds[i] >= 0);
        assert_int_equal(it_send_all(fds[i], "GET / HTTP/1.1\r\nHo", 18), 0);
    }
    it_sleep_ms(500);
    /* Out of descriptors, the workers wait instead of looping in accept(). */
    long t0 = cpu_ticks(pid);
    it_sleep_ms(1000);
    long used = cpu_ticks(pid) - t0;
    long hz = sysconf(_SC_CLK_TCK);
    if (t0 < 0 || used > hz / 4)
        fail_msg("fulcrum used %ld of %ld ticks in a second out of descriptors", used, hz);
    size_t paused = it_fulcrum_log_count(env, f, "accepting paused");
    assert_true(paused >= 1 && paused <= 4); /* said, once per worker and 10 s at most */

    /* Once the clients are gone, new ones are served again. */
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    it_sleep_ms(500);
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    /* And SIGTERM still drains and exits 0 (teardown checks it). */
}

IT_TEST(max_connections_wait_in_the_backlog)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.workers = 1;
    cfg.max_connections = 4;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    it_sleep_ms(200); /* the harness's readiness probe is gone */

    struct it_conn *held[4];
    struct it_response r;
    for (int i = 0; i < 4; i++) {
        held[i] = it_connect(env, f->port);
        it_send_str(held[i], "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        it_expect_response(held[i], "GET", &r);
        assert_int_equal(r.status, 200);
        it_response_free(&r);
    }
    /* The fifth connects (the kernel's backlog) but is not served while four are open. */
    struct it_conn *fifth = it_connect(env, f->port);
    it_send_str(fifth, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_false(it_conn_wait_data(fifth, 600));
    /* One of the four goes: the fifth is taken within a pause and answered. */
    it_conn_close(held[0]);
    it_conn_set_timeout(fifth, 3000);
    it_expect_response(fifth, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    assert_true(it_fulcrum_wait_log(env, f, "limits.max_connections reached", 1, 2000));
}

/*
 * The RLIMIT_NOFILE that leaves process pid exactly `room` descriptors to
 * open: new descriptors take the lowest free numbers, which must stay below
 * the limit. -1 if its descriptors cannot be read.
 */
static int limit_for_room(pid_t pid, int room)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    static bool used[65536];
    memset(used, 0, sizeof(used));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long n = strtol(e->d_name, NULL, 10);
        if (e->d_name[0] != '.' && n >= 0 && n < 65536)
            used[n] = true;
    }
    closedir(d);
    int limit = 0;
    for (int free_slots = 0; free_slots < room; limit++)
        free_slots += !used[limit];
    return limit;
}

IT_TEST(local_connect_errors_do_not_mark_backends_down)
{
    enum { CLIENTS = 8, ROOM = 12 };
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 1);
    pool->pool_options = "max_fails = 1; fail_timeout_ms = 60000;";
    cfg.workers = 1;
    cfg.max_connections = 100000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    pid_t pid = it_proc_pid(f->proc);
    it_sleep_ms(200); /* the readiness probe is gone */

    /*
     * Room for ROOM more descriptors: the clients fit, but not an upstream
     * connection each, so some connects fail here with EMFILE.
     */
    int n = limit_for_room(pid, ROOM);
    assert_true(n > 0);
    const char *limit = it_strf(env, "--nofile=%d:%d", n, n);
    const char *pid_text = it_strf(env, "%d", (int)pid);
    const char *const argv[] = {"/usr/bin/prlimit", "--pid", pid_text, limit, NULL};
    struct it_run_result res;
    it_run(env, argv, 5000, &res);
    assert_int_equal(res.exit_code, 0);

    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = it_socket_connect(f->port, 5);
        assert_true(fds[i] >= 0);
        const char *line = "GET /slow?ms=1000 HTTP/1.1\r\n";
        assert_int_equal(it_send_all(fds[i], line, strlen(line)), 0);
    }
    it_sleep_ms(300); /* all accepted, each with its descriptor */
    for (int i = 0; i < CLIENTS; i++)
        assert_int_equal(it_send_all(fds[i], "Host: test\r\n\r\n", 14), 0);
    it_sleep_ms(1500);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);

    /* Those failures say nothing of the backend: with max_fails = 1 it would be out for 60 s. */
    it_sleep_ms(300);
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    assert_true(it_fulcrum_wait_log(env, f, "failed here, not at the backends", 1, 2000));
    it_fulcrum_log_settled(env, f);
    assert_int_equal(it_fulcrum_log_count(env, f, "DOWN"), 0);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(header_too_large),
    IT_CASE(body_too_large),
    IT_CASE(descriptor_exhaustion_pauses_and_recovers),
    IT_CASE(max_connections_wait_in_the_backlog),
    IT_CASE(local_connect_errors_do_not_mark_backends_down),
};

IT_MAIN(tests)
