/*
 * Runtime control on the admin listener: POST /api/reload reloads as SIGHUP
 * does and answers with the outcome, the new generation or every error with
 * its file and line; the token rules hold for it. A request that began
 * before a runtime change and picks its backend after it passes over one the
 * change took out of rotation.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "s3cret-token-for-the-test"

/* POST /api/reload, with the token when `token`; the response's status, body in *body. */
static int post_reload(struct it_env *env, int port, int token, json_t **body)
{
    struct it_conn *c = it_connect(env, port);
    it_send_str(
        c, it_strf(env, "POST /api/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n%s\r\n",
                   token ? "Authorization: Bearer " TOKEN "\r\n" : ""));
    struct it_response r;
    it_expect_response(c, "POST", &r);
    int status = r.status;
    json_error_t err;
    *body = json_loads(r.body, 0, &err);
    if (*body == NULL)
        fail_msg("POST /api/reload answered %d with no JSON: %s", status, r.body);
    it_response_free(&r);
    it_conn_close(c);
    return status;
}

/* Writes text over fulcrum's config file the way an editor that renames does. */
static void rewrite_config(struct it_env *env, struct it_fulcrum *f, const char *text)
{
    const char *tmp = it_write_file(env, "next.conf.tmp", text);
    if (rename(tmp, f->config_path) != 0)
        fail_msg("rename: %s", strerror(errno));
}

IT_TEST(reload_endpoint)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    int admin = it_free_port();
    const char *token_file = it_write_file(env, "admin.token", TOKEN "\n");
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"%s\";", admin, token_file);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    json_t *j;
    assert_int_equal(post_reload(env, admin, 0, &j), 401); /* the token rules hold */
    json_decref(j);
    assert_int_equal(it_fulcrum_log_count(env, f, "reloading "), 0);

    assert_int_equal(post_reload(env, admin, 1, &j), 200);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 2);
    json_decref(j);

    /* A broken file: 422 with every error, each naming the file and the line. */
    const char *good = it_config_render(env, &cfg, f->port);
    const char *bad = it_strf(env, "%s\nworkers = \"many\";\nbogus_key = 1;\n", good);
    rewrite_config(env, f, bad);
    assert_int_equal(post_reload(env, admin, 1, &j), 422);
    assert_true(json_is_false(json_object_get(j, "ok")));
    json_t *errors = json_object_get(j, "errors");
    assert_true(json_array_size(errors) >= 1);
    int named = 0;
    for (size_t i = 0; i < json_array_size(errors); i++) {
        const char *e = json_string_value(json_array_get(errors, i));
        assert_non_null(e);
        named += strstr(e, it_strf(env, "%s:", f->config_path)) != NULL;
    }
    assert_true(named >= 1);
    json_decref(j);

    /* The old generation stays in force and serves; the file fixed, the next reload takes. */
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    rewrite_config(env, f, good);
    assert_int_equal(post_reload(env, admin, 1, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 3);
    json_decref(j);
}

/*
 * A port whose connects hang: it listens with a backlog of 0 and its accept
 * queue is full (two connections nobody accepts), so the kernel drops new
 * SYNs and a connect waits until the caller's timeout. The sockets are the
 * test's until `fds` are closed.
 */
static int hanging_port(int fds[3])
{
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fds[0] < 0 || bind(fds[0], (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(fds[0], 0) != 0 || getsockname(fds[0], (struct sockaddr *)&a, &len) != 0)
        fail_msg("hanging port: %s", strerror(errno));
    for (int i = 1; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fds[i], (struct sockaddr *)&a, sizeof(a));
    }
    it_sleep_ms(50);
    /* The proof that it hangs: one more connect gets no answer in 300 ms. */
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(probe, (struct sockaddr *)&a, sizeof(a));
    struct pollfd p = {.fd = probe, .events = POLLOUT};
    int ready = poll(&p, 1, 300);
    close(probe);
    if (ready != 0)
        fail_msg("hanging port: a connect to a full accept queue completed; the test needs "
                 "the kernel to drop SYNs there (net.ipv4.tcp_abort_on_overflow = 0)");
    return ntohs(a.sin_port);
}

/* A request of the admin API with the token; its status, the JSON body in *body. */
static int admin_call(struct it_env *env, int port, const char *method, const char *path,
                      const char *body, json_t **out)
{
    const char *text;
    int status = it_admin_send(env, port, method, path, TOKEN, body, &text);
    json_error_t err;
    *out = json_loads(text, 0, &err);
    if (*out == NULL)
        fail_msg("%s %s answered %d with no JSON: %s", method, path, status, text);
    return status;
}

/*
 * A request waits on a hanging connect (the pool's first backend) while b,
 * next in turn, is drained; with `with_c`, backend c follows b. The request
 * retries on the generation it began with once its connect times out.
 * Returns the X-Backend of its answer, which must be a 200 that came after
 * the drain's answer, and the daemon in *out.
 */
static const char *retry_after_a_drain(struct it_env *env, int with_c, struct it_fulcrum **out)
{
    int hang[3];
    int x = hanging_port(hang);
    int b = it_backend_start(env, "b");
    int c = with_c ? it_backend_start(env, "c") : 0;
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;       /* one round-robin instance: its first pick is the first backend */
    cfg.connect_ms = 1000; /* the hanging connect fails after this, and is retried */
    it_config_add_pool(&cfg, "web", 1, with_c ? 3 : 2, x, b, c);
    int admin = it_free_port();
    const char *token_file = it_write_file(env, "admin.token", TOKEN "\n");
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"%s\";", admin, token_file);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_conn *conn = it_connect(env, f->port);
    int64_t sent = it_now_ms();
    it_send_str(conn, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    it_sleep_ms(200);
    json_t *j;
    assert_int_equal(admin_call(env, admin, "PATCH",
                                it_strf(env, "/api/pools/web/backends/127.0.0.1%%3A%d", b),
                                "{\"state\": \"drain\"}", &j),
                     200);
    json_decref(j);
    assert_true(it_now_ms() - sent < 900); /* the retry is still to come */

    struct it_response r;
    it_expect_response(conn, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_true(it_now_ms() - sent >= 900); /* it did wait for the hanging connect */
    const char *from = it_header(&r, "X-Backend");
    from = it_strf(env, "%s", from != NULL ? from : "(none)");
    it_response_free(&r);
    it_conn_close(conn);
    for (int i = 0; i < 3; i++)
        close(hang[i]);
    *out = f;
    return from;
}

/* The retry passes over the drained b: c answers. */
IT_TEST(retry_after_a_drain_passes_over_the_drained_backend)
{
    struct it_fulcrum *f;
    assert_string_equal(retry_after_a_drain(env, 1, &f), "c");
}

/*
 * When the drained backend is the only other one, the request, accepted
 * before the drain, is served by it rather than refused.
 */
IT_TEST(retry_with_only_a_drained_backend_left_is_served)
{
    struct it_fulcrum *f;
    assert_string_equal(retry_after_a_drain(env, 0, &f), "b");
    assert_int_equal(it_fulcrum_log_count(env, f, "no backend available"), 0);
}

/* GET / on a fresh connection: the status. */
static int get_status(struct it_env *env, int port)
{
    struct it_response r;
    it_get(env, port, "test", "/", &r);
    int status = r.status;
    it_response_free(&r);
    return status;
}

/*
 * A runtime change builds new strategy instances over the new pool view,
 * but hands the pool's rate limiter on: its bucket, emptied before the
 * change, stays empty after it; and a backend that stays keeps its counters.
 */
IT_TEST(runtime_change_keeps_rate_limiter_and_counters)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 1);
    pool->pool_options = "rate_limit = { plugin = \"token_bucket\"; rate = 0.1; burst = 3; };";
    int admin = it_free_port();
    const char *token_file = it_write_file(env, "admin.token", TOKEN "\n");
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"%s\";", admin, token_file);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    for (int i = 0; i < 3; i++)
        assert_int_equal(get_status(env, f->port), 200);

    int b = it_backend_start(env, "b");
    json_t *j;
    assert_int_equal(admin_call(env, admin, "POST", "/api/pools/web/backends",
                                it_strf(env, "{\"address\": \"127.0.0.1:%d\"}", b), &j),
                     201);
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 2);
    json_decref(j);
    assert_int_equal(get_status(env, f->port), 429);

    assert_int_equal(admin_call(env, admin, "GET", "/api/status", "", &j), 200);
    json_t *backends = json_object_get(json_array_get(json_object_get(j, "pools"), 0), "backends");
    assert_int_equal(json_array_size(backends), 2);
    /* a, of the file, kept its three requests across the change. */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(backends, 0), "requests")),
                     3);
    json_decref(j);
}

/* POST /api/reload with these Host and Origin headers (NULL: none); the status. */
static int reload_from(struct it_env *env, int port, const char *host, const char *origin)
{
    struct it_conn *c = it_connect(env, port);
    it_send_str(
        c, it_strf(env, "POST /api/reload HTTP/1.1\r\nHost: %s\r\n%s%s%sContent-Length: 0\r\n\r\n",
                   host, origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : ""));
    struct it_response r;
    it_expect_response(c, "POST", &r);
    int status = r.status;
    if (status == 403 && strstr(r.body, "\"error\"") == NULL)
        fail_msg("403 without a JSON error: %s", r.body);
    it_response_free(&r);
    it_conn_close(c);
    return status;
}

IT_TEST(writes_from_other_sites_are_refused)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    int admin = it_free_port();
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", admin); /* loopback, no token */
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *self = it_strf(env, "127.0.0.1:%d", admin);

    /* A page of another site posting a form to the admin listener. */
    assert_int_equal(reload_from(env, admin, self, "http://evil.example"), 403);
    assert_int_equal(reload_from(env, admin, self, "null"), 403);
    /* DNS rebinding: the page's own name, rebound to 127.0.0.1, so Origin matches Host. */
    const char *rebound = it_strf(env, "evil.example:%d", admin);
    assert_int_equal(reload_from(env, admin, rebound, it_strf(env, "http://%s", rebound)), 403);
    assert_int_equal(it_fulcrum_log_count(env, f, "reloading "), 0);

    /* The dashboard itself (same origin, by address or localhost), and clients without Origin. */
    assert_int_equal(reload_from(env, admin, self, it_strf(env, "http://%s", self)), 200);
    const char *local = it_strf(env, "localhost:%d", admin);
    assert_int_equal(reload_from(env, admin, local, it_strf(env, "http://%s", local)), 200);
    assert_int_equal(reload_from(env, admin, "admin", NULL), 200);
    assert_true(it_fulcrum_wait_log(env, f, "reload done: generation 4", 1, 2000));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(reload_endpoint),
    IT_CASE(writes_from_other_sites_are_refused),
    IT_CASE(runtime_change_keeps_rate_limiter_and_counters),
    IT_CASE(retry_after_a_drain_passes_over_the_drained_backend),
    IT_CASE(retry_with_only_a_drained_backend_left_is_served),
};

IT_MAIN(tests)
