/*
 * WebSocket tunnels as users meet them: a real client and server (Debian's
 * python3-websockets, through ws_peer.py) on both sides of fulcrum, over
 * plain and TLS listeners and to plain and TLS backends; and raw sockets for
 * what a library hides (bytes behind the heads, half-closes).
 */
#include "harness.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define WS_PEER FC_IT_SOURCE_DIR "/tests/integration/ws_peer.py"
#define MiB (1024 * 1024)

/* Starts ws_peer.py's server (wss with cert and key, else ws); returns its port. */
static int ws_server_start(struct it_env *env, const char *cert, const char *key)
{
    int port = it_free_port();
    const char *argv[] = {PYTHON, WS_PEER, "server", it_strf(env, "%d", port), cert, key, NULL};
    if (cert == NULL)
        argv[4] = NULL;
    it_proc_wait_output(env, it_start(env, "ws_server", argv), "listening", 10000);
    return port;
}

/* argv of `ws_peer.py client URL SCENARIO` and the NULL-terminated opts (pairs; may be NULL). */
static const char *const *client_argv(struct it_env *env, const char *url, const char *scenario,
                                      const char *const *opts)
{
    const char **argv = it_zalloc(env, 16 * sizeof(*argv));
    size_t n = 0;
    argv[n++] = PYTHON;
    argv[n++] = WS_PEER;
    argv[n++] = "client";
    argv[n++] = url;
    argv[n++] = scenario;
    for (size_t i = 0; opts != NULL && opts[i] != NULL && opts[i + 1] != NULL && n < 14; i += 2) {
        argv[n++] = opts[i];
        argv[n++] = opts[i + 1];
    }
    return argv;
}

/* ws_peer.py client URL SCENARIO [OPTION VALUE ...]: its run, checked to have printed "ok". */
static const char *ws_client(struct it_env *env, const char *url, const char *scenario,
                             const char *const *opts)
{
    const char *const *argv = client_argv(env, url, scenario, opts);
    struct it_run_result r;
    it_run(env, argv, 60000, &r);
    if (r.exit_code != 0 || (strncmp(r.out, "ok", 2) != 0 && strstr(r.out, "\nok") == NULL))
        fail_msg("ws_peer.py client %s %s: exit %d: %s%s", url, scenario, r.exit_code, r.out,
                 r.err);
    return r.out;
}

/* The same, running on while the test goes on; it prints "open" once it is. */
static struct it_proc *ws_client_start(struct it_env *env, const char *url, const char *scenario,
                                       const char *const *opts)
{
    return it_start(env, "ws_client", client_argv(env, url, scenario, opts));
}

/* A config whose one pool is the WebSocket server on `port`, with an admin listener. */
static int ws_config(struct it_env *env, struct it_config *cfg, int port)
{
    it_config_init(cfg);
    it_config_add_pool(cfg, "ws", 0, 1, port);
    int admin = it_free_port();
    cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\";", admin);
    cfg->access_log = "stdout";
    return admin;
}

static const char *tunnels(struct it_env *env, int port)
{
    return it_strf(env, "fulcrum_tunnels{listener=\"127.0.0.1:%d\"}", port);
}

/* Waits up to 3 s for the tunnel gauge to read `want`; returns what it read last. */
static long tunnels_settle(struct it_env *env, int admin, int port, long want)
{
    int64_t deadline = it_now_ms() + 3000;
    long v;
    while ((v = it_metric(env, admin, tunnels(env, port))) != want && it_now_ms() < deadline)
        it_sleep_ms(20);
    return v;
}

/* The "tunnels" of the listener in /api/status. */
static long status_tunnels(struct it_env *env, int admin)
{
    struct it_response r;
    it_get(env, admin, "admin", "/api/status", &r);
    assert_int_equal(r.status, 200);
    json_error_t err;
    json_t *root = json_loads(r.body, 0, &err);
    it_response_free(&r);
    assert_non_null(root);
    json_t *n = json_object_get(json_array_get(json_object_get(root, "listeners"), 0), "tunnels");
    long v = json_is_integer(n) ? (long)json_integer_value(n) : -1;
    json_decref(root);
    return v;
}

/* The access log from its line holding `needle` on, once fulcrum wrote it (3 s at most). */
static const char *access_line(struct it_env *env, struct it_fulcrum *f, const char *needle)
{
    int64_t deadline = it_now_ms() + 3000;
    const char *at;
    while ((at = strstr(it_proc_stdout(env, f->proc), needle)) == NULL && it_now_ms() < deadline)
        it_sleep_ms(20);
    if (at == NULL)
        fail_msg("no %s in the access log:\n%s", needle, it_proc_stdout(env, f->proc));
    return at;
}

static const char *ws_url(struct it_env *env, const char *scheme, const char *name, int port)
{
    return it_strf(env, "%s://%s:%d", scheme, name, port);
}

/* ---- frames, both ways, through a plain listener -------------------------- */

IT_TEST(frames_of_every_size_ping_and_close_through_a_plain_listener)
{
    int ws = ws_server_start(env, NULL, NULL);
    struct it_config cfg;
    int admin = ws_config(env, &cfg, ws);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *url = ws_url(env, "ws", "127.0.0.1", f->port);

    ws_client(env, url, "frames", NULL);
    /* The backend saw the handshake as the client made it, forwarded. */
    const char *h = ws_client(env, url, "headers", NULL);
    assert_non_null(strstr(h, "\"upgrade\": \"websocket\""));
    assert_non_null(strstr(h, "\"connection\": \"Upgrade\""));
    assert_non_null(strstr(h, "\"sec-websocket-key\": "));
    assert_non_null(strstr(h, "\"x-forwarded-for\": \"127.0.0.1\""));
    assert_non_null(strstr(h, "\"x-forwarded-proto\": \"http\""));

    /* Each tunnel is logged once it closed, as a 101, and none stays open. */
    assert_int_equal(tunnels_settle(env, admin, f->port, 0), 0);
    access_line(env, f, "\"GET /headers HTTP/1.1\" 101 ");
    assert_int_equal(it_count(it_proc_stdout(env, f->proc), "\"GET /echo HTTP/1.1\" 101 "), 1);
    assert_int_equal(it_count(it_proc_stdout(env, f->proc), "\"GET /headers HTTP/1.1\" 101 "), 1);
    assert_int_equal(it_metric(env, admin,
                               it_strf(env,
                                       "fulcrum_requests_total{listener=\"127.0.0.1:%d\","
                                       "code=\"1xx\"}",
                                       f->port)),
                     2);
}

IT_TEST(twenty_sockets_of_fifty_messages_at_once)
{
    int ws = ws_server_start(env, NULL, NULL);
    struct it_config cfg;
    ws_config(env, &cfg, ws);
    cfg.workers = 2;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *out = ws_client(env, ws_url(env, "ws", "127.0.0.1", f->port), "many", NULL);
    assert_non_null(strstr(out, "ok many 1000"));
}

/* ---- wss: a TLS listener, and a TLS backend --------------------------------- */

IT_TEST(wss_through_a_tls_listener_to_a_tls_backend)
{
    const char *dir = it_make_certs(env);
    int ws = ws_server_start(env, it_strf(env, "%s/backend.pem", dir),
                             it_strf(env, "%s/backend.key", dir));
    struct it_config cfg;
    int admin = ws_config(env, &cfg, ws);
    cfg.listener_tls = it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "site"));
    cfg.pools[0].pool_options = it_strf(env, "tls = { ca = \"%s/ca.pem\"; };", dir);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *url = ws_url(env, "wss", "site.test", f->port);
    const char *ca = it_strf(env, "%s/ca.pem", dir);

    const char *opts[] = {"--ca", ca, NULL};
    ws_client(env, url, "frames", opts);
    ws_client(env, url, "many", opts);
    const char *h = ws_client(env, url, "headers", opts);
    assert_non_null(strstr(h, "\"x-forwarded-proto\": \"https\""));
    assert_non_null(strstr(h, "\"upgrade\": \"websocket\""));
    assert_int_equal(tunnels_settle(env, admin, f->port, 0), 0);
}

/* ---- what is not a tunnel ---------------------------------------------------- */

IT_TEST(a_refused_handshake_is_an_ordinary_response)
{
    int ws = ws_server_start(env, NULL, NULL);
    int demo = it_backend_start(env, "demo");
    struct it_config cfg;
    int admin = ws_config(env, &cfg, ws);
    it_config_add_pool(&cfg, "demo", 0, 1, demo);
    cfg.routes = "  { host = \"demo.test\"; pool = \"demo\"; }";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *hs = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    /* The server refuses: its 403 reaches the client as it was sent. */
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, it_strf(env, "GET /deny HTTP/1.1\r\nHost: ws.test\r\n%s\r\n", hs));
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.body, "denied\n");
    assert_null(it_header(&r, "Upgrade"));
    it_response_free(&r);

    /* A backend that knows no WebSocket answers 200: the connection goes on in HTTP. */
    c = it_connect(env, f->port);
    it_send_str(c, it_strf(env, "GET /a HTTP/1.1\r\nHost: demo.test\r\n%s\r\n", hs));
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_null(it_header(&r, "Upgrade"));
    it_response_free(&r);
    it_send_str(c, "GET /b HTTP/1.1\r\nHost: demo.test\r\n\r\n");
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    assert_int_equal(it_metric(env, admin, tunnels(env, f->port)), 0);
}

/* A backend that answers 101 to what was no WebSocket handshake, or to websocket with h2c. */
static void switch_anyway(int fd, void *arg)
{
    const char *upgrade = arg;
    char buf[4096];
    size_t len = 0;
    if (it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 5000) < 0)
        return;
    it_raw_write_str(fd, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ");
    it_raw_write_str(fd, upgrade);
    it_raw_write_str(fd, "\r\n\r\nnot http");
    it_raw_sleep_ms(300);
}

IT_TEST(a_101_that_was_not_asked_for_is_a_bad_gateway)
{
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "plain", 0, 1, it_raw_backend_start(env, switch_anyway, "websocket"));
    it_config_add_pool(&cfg, "h2c", 0, 1, it_raw_backend_start(env, switch_anyway, "h2c"));
    cfg.routes = "  { host = \"h2c.test\"; pool = \"h2c\"; }";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_response r;
    it_get(env, f->port, "plain.test", "/", &r); /* no Upgrade asked for */
    assert_int_equal(r.status, 502);
    it_response_free(&r);
    it_fetch(
        env, f->port, "GET",
        "GET / HTTP/1.1\r\nHost: h2c.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        &r);
    assert_int_equal(r.status, 502); /* websocket asked for, h2c given */
    it_response_free(&r);
    assert_true(it_fulcrum_wait_log(env, f, "unexpected 101 Switching Protocols", 1, 3000));
    assert_true(
        it_fulcrum_wait_log(env, f, "101 Switching Protocols to other than websocket", 1, 3000));
}

/* ---- the byte tunnel itself: bytes behind the heads, half-closes ------------- */

/*
 * Answers the handshake with 101 and "early" behind it in the same write,
 * echoes what comes until the client's end arrives, then sends "bye" and
 * ends its own side (the harness shuts it down when this returns).
 */
static void echo_until_eof(int fd, void *arg)
{
    char buf[65536];
    size_t len = 0;
    ssize_t head = it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 5000);
    if (head < 0)
        return;
    it_raw_consume(buf, &len, (size_t)head);
    it_raw_write_str(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nearly|");
    if (len > 0 && it_raw_write(fd, buf, len) != 0)
        return;
    for (;;) {
        ssize_t n = it_raw_read(fd, buf, sizeof(buf), 5000);
        if (n <= 0)
            break;
        if (it_raw_write(fd, buf, (size_t)n) != 0)
            return;
    }
    it_raw_write_str(fd, "|bye");
}

/* Everything until the peer's end, at most cap - 1 bytes, NUL-terminated; -1 on a timeout. */
static ssize_t read_to_eof(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t len = 0;
    int64_t deadline = it_now_ms() + timeout_ms;
    while (len < cap - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)(deadline - it_now_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return -1;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

IT_TEST(bytes_behind_the_heads_and_half_closes_go_through)
{
    struct it_config cfg;
    int admin = ws_config(env, &cfg, it_raw_backend_start(env, echo_until_eof, NULL));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    int fd = it_socket_connect(f->port, 10);
    assert_true(fd >= 0);
    /* The handshake and the first bytes of the new protocol in one write. */
    const char *hello = "GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
                        "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: a2V5\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\nhello|";
    assert_int_equal(it_send_all(fd, hello, strlen(hello)), 0);
    char buf[8192] = "";
    size_t len = 0;
    int64_t deadline = it_now_ms() + 5000;
    while (strstr(buf, "hello|") == NULL && it_now_ms() < deadline) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
    }
    assert_non_null(strstr(buf, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strstr(buf, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(buf, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(buf, "\r\nSec-WebSocket-Accept: x\r\n"));
    assert_int_equal(it_metric(env, admin, tunnels(env, f->port)), 1);
    assert_int_equal(status_tunnels(env, admin), 1);

    /* More, then our end: the backend echoes, sees the end, says bye and ends too. */
    assert_int_equal(it_send_all(fd, "more", 4), 0);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_true(read_to_eof(fd, buf + len, sizeof(buf) - len, 5000) >= 0);
    close(fd);
    const char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, "early|hello|more|bye");
    assert_int_equal(tunnels_settle(env, admin, f->port, 0), 0);
    assert_int_equal(status_tunnels(env, admin), 0);
}

/* ---- memory: a fast sender, a slow reader ------------------------------------ */

/*
 * 32 MiB from a server that sends as fast as it may, through fulcrum, to a
 * client that reads 64 KiB every 5 ms: what waits must wait in the sender,
 * not in fulcrum, whose RSS may grow by its two buffers and little more.
 */
static void slow_reader(struct it_env *env, struct it_fulcrum *f, const char *url, const char *ca)
{
    pid_t pid = it_proc_pid(f->proc);
    /* Warm up: one tunnel first, so that the worker's buffers exist already. */
    const char *warm[] = {"--ca", ca, NULL};
    ws_client(env, url, "frames", ca ? warm : NULL);
    long before = it_rss_kib(pid), peak = before;
    const char *opts[] = {"--bytes", it_strf(env, "%d", 32 * MiB), "--ca", ca, NULL};
    struct it_proc *p = ws_client_start(env, url, "slow", opts);
    int status = 0;
    int64_t deadline = it_now_ms() + 60000;
    while (it_proc_wait(p, 0, &status) == -ETIMEDOUT && it_now_ms() < deadline) {
        long now = it_rss_kib(pid);
        if (now > peak)
            peak = now;
        it_sleep_ms(20);
    }
    if (it_proc_wait(p, 1000, &status) != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the slow reader failed: %s%s", it_proc_stdout(env, p), it_proc_stderr(env, p));
    assert_non_null(strstr(it_proc_stdout(env, p), it_strf(env, "ok slow %d", 32 * MiB)));
    if (peak - before > 4096)
        fail_msg("fulcrum's RSS grew by %ld KiB (from %ld KiB) under a slowly read 32 MiB",
                 peak - before, before);
}

IT_TEST(a_slow_reader_of_a_fast_sender_keeps_memory_bounded)
{
    int ws = ws_server_start(env, NULL, NULL);
    struct it_config cfg;
    ws_config(env, &cfg, ws);
    cfg.workers = 1;
    const char *asan = it_rss_asan_begin(env);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    slow_reader(env, f, ws_url(env, "ws", "127.0.0.1", f->port), NULL);

    const char *dir = it_make_certs(env);
    cfg.admin = NULL; /* the first one's still listens */
    cfg.listener_tls = it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "site"));
    f = it_fulcrum_start(env, &cfg);
    it_rss_asan_end(asan);
    slow_reader(env, f, ws_url(env, "wss", "site.test", f->port), it_strf(env, "%s/ca.pem", dir));
}

/* ---- time: the idle limit, reloads, SIGTERM ---------------------------------- */

IT_TEST(an_idle_tunnel_closes_after_tunnel_ms)
{
    int ws = ws_server_start(env, NULL, NULL);
    struct it_config cfg;
    int admin = ws_config(env, &cfg, ws);
    cfg.tunnel_ms = 400;
    cfg.idle_ms = 100; /* not the tunnel's limit */
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *out = ws_client(env, ws_url(env, "ws", "127.0.0.1", f->port), "idle", NULL);
    int ms = -1;
    assert_int_equal(sscanf(out, "ok closed after %d ms", &ms), 1);
    assert_in_range(ms, 350, 3000);
    assert_int_equal(tunnels_settle(env, admin, f->port, 0), 0);

    /* Messages keep it open past the limit: "hold" echoes every 100 ms for 1.5 s. */
    const char *opts[] = {"--seconds", "1.5", NULL};
    ws_client(env, ws_url(env, "ws", "127.0.0.1", f->port), "hold", opts);
}

IT_TEST(a_reload_does_not_cut_a_tunnel)
{
    int ws = ws_server_start(env, NULL, NULL);
    struct it_config cfg;
    int admin = ws_config(env, &cfg, ws);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *opts[] = {"--seconds", "2.5", NULL};
    struct it_proc *p = ws_client_start(env, ws_url(env, "ws", "127.0.0.1", f->port), "hold", opts);
    it_proc_wait_output(env, p, "open", 10000);
    it_sleep_ms(300);
    cfg.idle_ms = 30000; /* a change: generation 2 */
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    assert_int_equal(it_metric(env, admin, tunnels(env, f->port)), 1);
    int status = 0;
    assert_int_equal(it_proc_wait(p, 15000, &status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the tunnel did not last the reload: %s%s", it_proc_stdout(env, p),
                 it_proc_stderr(env, p));
    int n = 0;
    assert_int_equal(sscanf(strstr(it_proc_stdout(env, p), "ok echoed"), "ok echoed %d", &n), 1);
    assert_true(n >= 10);
    /* It ran on the generation its handshake began on, to its end. */
    assert_non_null(strstr(access_line(env, f, "\"GET /echo HTTP/1.1\" 101 "), " gen=1 "));
}

IT_TEST(sigterm_closes_open_tunnels_after_shutdown_ms)
{
    int ws = ws_server_start(env, NULL, NULL);
    struct it_config cfg;
    ws_config(env, &cfg, ws);
    cfg.shutdown_ms = 600;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *opts[] = {"--seconds", "30", NULL};
    struct it_proc *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = ws_client_start(env, ws_url(env, "ws", "127.0.0.1", f->port), "hold", opts);
        it_proc_wait_output(env, p[i], "open", 10000);
    }
    int64_t t0 = it_now_ms();
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 5000);
    int64_t took = it_now_ms() - t0;
    assert_in_range(took, 500, 2500); /* the tunnels held it until shutdown_ms, no longer */
    for (int i = 0; i < 3; i++) {
        int status = 0;
        assert_int_equal(it_proc_wait(p[i], 10000, &status), 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 3); /* closed under it */
    }
}

static const struct CMUnitTest tests[] = {
    IT_CASE(frames_of_every_size_ping_and_close_through_a_plain_listener),
    IT_CASE(twenty_sockets_of_fifty_messages_at_once),
    IT_CASE(wss_through_a_tls_listener_to_a_tls_backend),
    IT_CASE(a_refused_handshake_is_an_ordinary_response),
    IT_CASE(a_101_that_was_not_asked_for_is_a_bad_gateway),
    IT_CASE(bytes_behind_the_heads_and_half_closes_go_through),
    IT_CASE(a_slow_reader_of_a_fast_sender_keeps_memory_bounded),
    IT_CASE(an_idle_tunnel_closes_after_tunnel_ms),
    IT_CASE(a_reload_does_not_cut_a_tunnel),
    IT_CASE(sigterm_closes_open_tunnels_after_shutdown_ms),
};

IT_MAIN(tests)
