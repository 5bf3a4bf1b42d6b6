/*
 * The admin listener in the real daemon: where it listens, its token, its
 * errors, reloads that move it, and SIGTERM with its connections open. What
 * is checked here is the transport and its wiring, on paths that nothing
 * serves (404, or 401 without the token); what the endpoints answer is
 * tested in test_monitor.c and test_dashboard.c.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define TOKEN "integration-token-42"

/* 1-based number of the first line of `text` containing `needle`. */
static int line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    assert_non_null(at);
    int line = 1;
    for (const char *p = text; p < at; p++)
        if (*p == '\n')
            line++;
    return line;
}

/* A demo pool of one backend, and the admin listener on 127.0.0.1:admin_port. */
static void admin_config(struct it_env *env, struct it_config *cfg, int admin_port)
{
    it_config_demo_pool(env, cfg, 1);
    cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\";", admin_port);
}

/* GET path on conn, which must answer 404 with the admin listener's JSON error. */
static void expect_admin_404(struct it_conn *conn, const char *path)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: admin\r\n\r\n", path);
    it_send_str(conn, req);
    struct it_response r;
    it_expect_response(conn, "GET", &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(it_header(&r, "Content-Type"), "application/json");
    assert_string_equal(it_header(&r, "Cache-Control"), "no-store");
    assert_string_equal(it_header(&r, "X-Content-Type-Options"), "nosniff");
    char want[300];
    snprintf(want, sizeof(want), "{\"error\": \"no such endpoint: %s\"}\n", path);
    assert_string_equal(r.body, want);
    it_response_free(&r);
}

/* A listening socket on 127.0.0.1 that the test holds: its port is in use. */
static int busy_port(int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *fd_out = fd;
    return ntohs(sin.sin_port);
}

IT_TEST(admin_answers_json_404)
{
    int admin_port = it_free_port();
    struct it_config cfg;
    admin_config(env, &cfg, admin_port);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    assert_true(it_fulcrum_wait_log(
        env, f, it_strf(env, "admin listening on 127.0.0.1:%d", admin_port), 1, 2000));

    /* Keep-alive: two requests on one connection. */
    struct it_conn *c = it_connect(env, admin_port);
    expect_admin_404(c, "/nope");
    expect_admin_404(c, "/api/nope");

    /* The proxy is not disturbed. */
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);

    /* A malformed request: 400 in JSON, then the close. */
    struct it_conn *bad = it_connect(env, admin_port);
    it_send_str(bad, "NOT HTTP\r\n\r\n");
    it_expect_response(bad, "GET", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(it_header(&r, "Content-Type"), "application/json");
    it_response_free(&r);
    assert_true(it_conn_wait_closed(bad, 3000));
}

IT_TEST(admin_token_required)
{
    int admin_port = it_free_port();
    it_write_file(env, "admin.token", TOKEN "\n");
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    /* Relative to the configuration's folder; a token makes any address acceptable. */
    cfg.admin =
        it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"admin.token\";", admin_port);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    assert_true(it_fulcrum_wait_log(env, f, "(token required)", 1, 2000));

    struct it_conn *c = it_connect(env, admin_port);
    it_send_str(c, "GET /nope HTTP/1.1\r\nHost: admin\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(it_header(&r, "WWW-Authenticate"), "Bearer");
    assert_string_equal(it_header(&r, "Content-Type"), "application/json");
    it_response_free(&r);

    it_send_str(c, "GET /nope HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer wrong\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 401);
    it_response_free(&r);

    it_send_str(c, "GET /nope HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer " TOKEN "\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 404);
    it_response_free(&r);
}

/* Runs `fulcrum [-t] -c path` and expects exit 1 with `message` at path:line on stderr. */
static void expect_refused(struct it_env *env, const char *path, int test_only, int line,
                           const char *message)
{
    const char *const run[] = {FC_BINARY, "-c", path, NULL};
    const char *const check[] = {FC_BINARY, "-t", "-c", path, NULL};
    struct it_run_result res;
    it_run(env, test_only ? check : run, 10000, &res);
    const char *want = it_strf(env, "%s:%d: %s", path, line, message);
    if (res.exit_code != 1 || strstr(res.err, want) == NULL)
        print_error("expected exit 1 and \"%s\" on stderr; got exit %d, stderr:\n%s\n", want,
                    res.exit_code, res.err);
    assert_int_equal(res.exit_code, 1);
    assert_non_null(strstr(res.err, want));
    assert_null(strstr(res.out, "configuration OK"));
}

IT_TEST(admin_non_loopback_without_token_refused)
{
    int admin_port = it_free_port();
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 1, it_dead_port(env));
    cfg.admin = it_strf(env, "address = \"0.0.0.0:%d\";", admin_port);
    const char *text = it_config_render(env, &cfg, it_free_port());
    const char *path = it_write_file(env, "open.conf", text);
    int line = line_of(text, "admin = {");
    const char *msg = "admin.address: a non-loopback admin address needs admin.token_file";
    expect_refused(env, path, 0, line, msg);
    expect_refused(env, path, 1, line, msg);

    /* Nothing was bound. */
    int err = 0;
    assert_null(it_connect_raw(env, admin_port, &err));
    assert_int_equal(err, -ECONNREFUSED);

    /* -t reads the token file: a missing one is an error there too. */
    cfg.admin =
        it_strf(env, "address = \"0.0.0.0:%d\";\n  token_file = \"missing.token\";", admin_port);
    text = it_config_render(env, &cfg, it_free_port());
    path = it_write_file(env, "missing.conf", text);
    expect_refused(env, path, 1, line_of(text, "token_file"),
                   it_strf(env, "admin.token_file: cannot read \"%s\": No such file or directory",
                           it_path(env, "missing.token")));

    /* With the token, -t accepts it and binds nothing. */
    it_write_file(env, "ok.token", TOKEN);
    cfg.admin = it_strf(env, "address = \"0.0.0.0:%d\"; token_file = \"ok.token\";", admin_port);
    path = it_write_file(env, "ok.conf", it_config_render(env, &cfg, it_free_port()));
    const char *const check[] = {FC_BINARY, "-t", "-c", path, NULL};
    struct it_run_result res;
    it_run(env, check, 10000, &res);
    if (res.exit_code != 0)
        print_error("stderr: %s\n", res.err);
    assert_int_equal(res.exit_code, 0);
    assert_non_null(strstr(res.out, "configuration OK"));
    assert_null(it_connect_raw(env, admin_port, &err));
}

IT_TEST(admin_port_in_use_stops_start)
{
    int fd;
    int admin_port = busy_port(&fd);
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 1, it_dead_port(env));
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", admin_port);
    int listen_port = it_free_port();
    const char *text = it_config_render(env, &cfg, listen_port);
    const char *path = it_write_file(env, "busy.conf", text);
    expect_refused(env, path, 0, line_of(text, "admin = {"),
                   it_strf(env,
                           "admin.address \"127.0.0.1:%d\": address already in use (another "
                           "fulcrum, or another server, listens there)",
                           admin_port));
    /* It stopped before its listeners were bound. */
    int err = 0;
    assert_null(it_connect_raw(env, listen_port, &err));
    close(fd);
}

IT_TEST(admin_reload_moves_port)
{
    int old_port = it_free_port();
    struct it_config cfg;
    admin_config(env, &cfg, old_port);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    struct it_conn *c = it_connect(env, old_port);
    expect_admin_404(c, "/before");

    int new_port = it_free_port();
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", new_port);
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    int err = 0;
    assert_null(it_connect_raw(env, old_port, &err));
    assert_int_equal(err, -ECONNREFUSED);
    expect_admin_404(it_connect(env, new_port), "/after");
    /* The connection accepted on the old address is still served. */
    expect_admin_404(c, "/still");

    /* A port in use fails the reload, with file:line; the admin listener stays. */
    int fd;
    int busy = busy_port(&fd);
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", busy);
    const char *text = it_config_render(env, &cfg, f->port);
    assert_int_equal(it_fulcrum_reload_text(env, f, text), -EINVAL);
    assert_true(it_fulcrum_wait_log(
        env, f,
        it_strf(env, "%s:%d: admin.address \"127.0.0.1:%d\": address already in use",
                f->config_path, line_of(text, "admin = {"), busy),
        1, 2000));
    expect_admin_404(it_connect(env, new_port), "/kept");
    close(fd);

    /* No admin group: no admin listener. */
    cfg.admin = NULL;
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    assert_null(it_connect_raw(env, new_port, &err));
    assert_int_equal(err, -ECONNREFUSED);
    assert_true(it_conn_wait_closed(c, 3000));

    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
}

/* A connection to the unix socket at path; -errno if refused. */
static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

IT_TEST(admin_unix_socket)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.admin = "address = \"unix:admin.sock\";";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *path = it_path(env, "admin.sock");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);

    int fd = unix_connect(path);
    assert_true(fd >= 0);
    static const char req[] = "GET /nope HTTP/1.1\r\nHost: admin\r\n\r\n";
    assert_int_equal(it_send_all(fd, req, sizeof(req) - 1), 0);
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_int_equal(strncmp(buf, "HTTP/1.1 404 ", 13), 0);
    assert_non_null(strstr(buf, "Cache-Control: no-store\r\n"));

    /* SIGTERM with that connection open: exit 0 at once, and the socket file is gone. */
    int64_t t0 = it_now_ms();
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 2000);
    assert_in_range(it_now_ms() - t0, 0, 2000);
    close(fd);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

IT_TEST(admin_sigterm_with_keepalive)
{
    int admin_port = it_free_port();
    struct it_config cfg;
    admin_config(env, &cfg, admin_port);
    cfg.shutdown_ms = 5000; /* longer than the 2 s the exit may take */
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* An idle keep-alive connection, and one in the middle of a request head. */
    struct it_conn *idle = it_connect(env, admin_port);
    expect_admin_404(idle, "/nope");
    struct it_conn *partial = it_connect(env, admin_port);
    it_send_str(partial, "GET /nope HTTP/1.1\r\nHo");
    it_sleep_ms(100);

    int64_t t0 = it_now_ms();
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 2000);
    assert_in_range(it_now_ms() - t0, 0, 2000);
    assert_true(it_conn_wait_closed(idle, 1000));
    assert_true(it_conn_wait_closed(partial, 1000));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(admin_answers_json_404),
    IT_CASE(admin_token_required),
    IT_CASE(admin_non_loopback_without_token_refused),
    IT_CASE(admin_port_in_use_stops_start),
    IT_CASE(admin_reload_moves_port),
    IT_CASE(admin_unix_socket),
    IT_CASE(admin_sigterm_with_keepalive),
};

IT_MAIN(tests)
