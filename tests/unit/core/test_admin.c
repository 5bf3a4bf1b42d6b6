/*
 * Tests core/admin.c, the admin listener's transport, against real sockets.
 *
 * Each test writes a configuration into a fresh temporary folder, loads it
 * with the real loader, creates the admin listener on a loop of its own,
 * registers the routes below, and runs the loop in a thread; the test then
 * drives it as a client would, with blocking sockets, and asserts on the
 * bytes that came back. Whatever touches the listener after the loop has
 * started (fc_admin_apply(), the counters of the streams' owner) runs on the
 * loop's thread through on_loop(). Teardown destroys the listener with its
 * connections still open, runs the loop until everything has closed, and
 * checks that every stream that was kept got its closed call exactly once:
 * under ASan, anything left over is a leak.
 *
 * Routes: GET and POST /echo (the request as JSON), GET /public (public,
 * with two headers of its own), GET /quote (an error whose message needs
 * escaping), GET /bad-status (a handler answering 99, with a header that the
 * 500 in its place must not carry), GET /events (a stream: "event: hello" from inside
 * open(), then an event of ev_size bytes every 10 ms) and GET /refused (a
 * stream that open() refuses with 403).
 */
#define _GNU_SOURCE
/* cmocka needs these four first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "admin.h"
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MAX_STREAMS_SEEN 256
#define MAX_CLIENTS 256
#define MAX_LOG_LINES 256
#define TOKEN "T0ken-of-the-test"

/* ------------------------------------------------------------------------ */
/* The fixture: a loop in a thread, the listener on it, a stream owner       */
/* ------------------------------------------------------------------------ */

struct client {
    int fd;
    size_t len;
    char buf[65536];
};

static struct fixture {
    char dir[64];
    char conf[128];
    int port; /* of the admin listener, for TCP */

    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async;
    uv_sem_t done;
    void (*fn)(void *);
    void *arg;
    uv_timer_t tick;
    int running;

    struct fc_config *cfg;
    struct fc_admin *admin;

    /* The streams' owner, on the loop thread. */
    struct fc_admin_stream *open[MAX_STREAMS_SEEN];
    int n_open;
    int opened, closed, stray_closes, send_errors;
    size_t max_queued;
    size_t ev_size;
    unsigned long ticks;

    struct client *clients[MAX_CLIENTS];
    int n_clients;

    uv_mutex_t log_lock;
    char *log[MAX_LOG_LINES];
    int n_log;
} fx;

static void capture(void *arg, enum fc_log_level level, const char *line)
{
    (void)arg;
    (void)level;
    uv_mutex_lock(&fx.log_lock);
    if (fx.n_log < MAX_LOG_LINES)
        fx.log[fx.n_log++] = strdup(line);
    uv_mutex_unlock(&fx.log_lock);
}

static int logged(const char *needle)
{
    int found = 0;
    uv_mutex_lock(&fx.log_lock);
    for (int i = 0; i < fx.n_log && !found; i++)
        found = strstr(fx.log[i], needle) != NULL;
    if (!found)
        for (int i = 0; i < fx.n_log; i++)
            print_message("  logged: %s\n", fx.log[i]);
    uv_mutex_unlock(&fx.log_lock);
    return found;
}

static void async_cb(uv_async_t *h)
{
    (void)h;
    if (fx.fn != NULL) {
        void (*fn)(void *) = fx.fn;
        fx.fn = NULL;
        fn(fx.arg);
        uv_sem_post(&fx.done);
    }
}

/* Runs fn(arg) on the loop's thread and waits for it. */
static void on_loop(void (*fn)(void *), void *arg)
{
    fx.arg = arg;
    fx.fn = fn;
    uv_async_send(&fx.async);
    uv_sem_wait(&fx.done);
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
    char ev[65536];
    size_t n = fx.ev_size < sizeof(ev) ? fx.ev_size : sizeof(ev);
    int head = snprintf(ev, sizeof(ev), "data: tick %lu ", ++fx.ticks);
    if (n < (size_t)head + 2)
        n = (size_t)head + 2;
    memset(ev + head, 'x', n - (size_t)head);
    ev[n - 2] = '\n';
    ev[n - 1] = '\n';
    for (int i = 0; i < fx.n_open; i++) {
        if (fc_admin_stream_send(fx.open[i], ev, n) != 0)
            fx.send_errors++;
        size_t q = fc_admin_stream_queued(fx.open[i]);
        if (q > fx.max_queued)
            fx.max_queued = q;
    }
}

static void loop_thread(void *arg)
{
    (void)arg;
    uv_run(&fx.loop, UV_RUN_DEFAULT);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    strcpy(fx.dir, "/tmp/fc-test-admin-XXXXXX");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    snprintf(fx.conf, sizeof(fx.conf), "%s/fulcrum.conf", fx.dir);
    fx.ev_size = 64;
    uv_mutex_init(&fx.log_lock);
    fc_log_set_sink(capture, NULL);
    return 0;
}

static void stop_on_loop(void *arg)
{
    (void)arg;
    fc_admin_destroy(fx.admin);
    fx.admin = NULL;
    uv_close((uv_handle_t *)&fx.async, NULL);
    uv_close((uv_handle_t *)&fx.tick, NULL);
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < fx.n_clients; i++) {
        if (fx.clients[i]->fd >= 0)
            close(fx.clients[i]->fd);
        free(fx.clients[i]);
    }
    int ok = 1;
    if (fx.running) {
        /* Destroyed with its connections (idle, streaming, lingering) open. */
        on_loop(stop_on_loop, NULL);
        uv_thread_join(&fx.thread);
        ok = uv_loop_close(&fx.loop) == 0;
        uv_sem_destroy(&fx.done);
        if (fx.n_open != 0 || fx.stray_closes != 0 || fx.closed != fx.opened) {
            print_message("streams: %d opened, %d closed, %d still open, %d stray closes\n",
                          fx.opened, fx.closed, fx.n_open, fx.stray_closes);
            ok = 0;
        }
    }
    fc_config_free(fx.cfg);
    fc_log_set_sink(NULL, NULL);
    for (int i = 0; i < fx.n_log; i++)
        free(fx.log[i]);
    uv_mutex_destroy(&fx.log_lock);
    nftw(fx.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Routes                                                                    */
/* ------------------------------------------------------------------------ */

static void echo(void *arg, const struct fc_admin_request *req, struct fc_admin_response *r)
{
    (void)arg;
    fc_admin_body_printf(r, "{\"method\": \"%.*s\", \"path\": \"%.*s\", \"query\": ",
                         (int)req->method_len, req->method, (int)req->path_len, req->path);
    if (req->query != NULL)
        fc_admin_body_printf(r, "\"%.*s\"", (int)req->query_len, req->query);
    else
        fc_admin_body_append(r, "null", 4);
    fc_admin_body_printf(r, ", \"body_len\": %zu}", req->body_len);
}

static void public_page(void *arg, const struct fc_admin_request *req, struct fc_admin_response *r)
{
    (void)arg;
    (void)req;
    r->content_type = "text/html";
    r->headers = "X-Frame-Options: DENY\r\nX-Test: public\r\n";
    fc_admin_body_append(r, "<p>public</p>", 13);
}

static void quote(void *arg, const struct fc_admin_request *req, struct fc_admin_response *r)
{
    (void)arg;
    (void)req;
    fc_admin_body_append(r, "thrown away", 11);
    fc_admin_error(r, 409, "a \"quoted\" \\ line\n\x01\x7f caf\xc3\xa9 \xff\xc3");
}

static void bad_status(void *arg, const struct fc_admin_request *req, struct fc_admin_response *r)
{
    (void)arg;
    (void)req;
    r->status = 99;
    r->headers = "X-Test: bad\r\n";
}

static int events_open(void *arg, struct fc_admin_stream *s)
{
    (void)arg;
    if (fx.n_open == MAX_STREAMS_SEEN)
        return 500;
    fx.open[fx.n_open++] = s;
    fx.opened++;
    /* Sent before the response head has gone out: it must follow the head. */
    static const char hello[] = "event: hello\ndata: {}\n\n";
    if (fc_admin_stream_send(s, hello, sizeof(hello) - 1) != 0)
        fx.send_errors++; /* no cmocka assertion here: this is the loop's thread */
    return 0;
}

static void events_closed(void *arg, struct fc_admin_stream *s)
{
    (void)arg;
    for (int i = 0; i < fx.n_open; i++) {
        if (fx.open[i] == s) {
            fx.open[i] = fx.open[--fx.n_open];
            fx.closed++;
            return;
        }
    }
    fx.stray_closes++; /* a second call, or one for a stream never kept */
}

static int refused_open(void *arg, struct fc_admin_stream *s)
{
    (void)arg;
    (void)s;
    return 403;
}

static void refused_closed(void *arg, struct fc_admin_stream *s)
{
    (void)arg;
    (void)s;
    fx.stray_closes++;
}

/* Writes a file into the test's folder. */
static void write_file(const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", fx.dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A configuration with the given admin group (or none), loaded. */
static struct fc_config *load_conf(const char *name, const char *admin)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "listeners = ( { address = \"127.0.0.2:8080\"; pool = \"web\"; } );\n"
             "pools = ( { name = \"web\";\n"
             "            strategy = { plugin = \"round_robin\"; };\n"
             "            backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n"
             "%s\n",
             admin != NULL ? admin : "");
    write_file(name, text);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", fx.dir, name);
    struct fc_config *cfg = NULL;
    assert_int_equal(fc_config_load(path, &cfg), 0);
    return cfg;
}

/* A port on 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static const char *tcp_admin(int port, int with_token)
{
    static char text[512];
    if (with_token)
        snprintf(text, sizeof(text),
                 "admin = { address = \"127.0.0.1:%d\"; token_file = \"admin.token\"; };", port);
    else
        snprintf(text, sizeof(text), "admin = { address = \"127.0.0.1:%d\"; };", port);
    return text;
}

/* Loads `admin`, creates the listener, registers the routes and starts the loop. */
static void start(const char *admin)
{
    fx.cfg = load_conf("fulcrum.conf", admin);
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    assert_int_equal(fc_admin_create(&fx.loop, fx.cfg, &fx.admin), 0);
    assert_int_equal(fc_admin_route(fx.admin, "GET", "/echo", 0, echo, NULL), 0);
    assert_int_equal(fc_admin_route(fx.admin, "POST", "/echo", 0, echo, NULL), 0);
    assert_int_equal(fc_admin_route(fx.admin, "GET", "/public", FC_ADMIN_PUBLIC, public_page, NULL),
                     0);
    assert_int_equal(fc_admin_route(fx.admin, "GET", "/quote", 0, quote, NULL), 0);
    assert_int_equal(fc_admin_route(fx.admin, "GET", "/bad-status", 0, bad_status, NULL), 0);
    assert_int_equal(
        fc_admin_stream_route(fx.admin, "/events", 0, events_open, events_closed, NULL), 0);
    assert_int_equal(
        fc_admin_stream_route(fx.admin, "/refused", 0, refused_open, refused_closed, NULL), 0);
    /* The route table's own refusals. */
    assert_int_equal(fc_admin_route(fx.admin, "GET", "/echo", 0, echo, NULL), -EEXIST);
    assert_int_equal(fc_admin_route(fx.admin, "GET", "echo", 0, echo, NULL), -EINVAL);
    assert_int_equal(fc_admin_route(fx.admin, "", "/x", 0, echo, NULL), -EINVAL);

    uv_async_init(&fx.loop, &fx.async, async_cb);
    uv_timer_init(&fx.loop, &fx.tick);
    uv_timer_start(&fx.tick, tick_cb, 10, 10);
    assert_int_equal(uv_sem_init(&fx.done, 0), 0);
    assert_int_equal(uv_thread_create(&fx.thread, loop_thread, NULL), 0);
    fx.running = 1;
}

static void start_tcp(int with_token)
{
    if (with_token)
        write_file("admin.token", TOKEN "\n");
    fx.port = free_port();
    start(tcp_admin(fx.port, with_token));
}

/* What the streams' owner has seen, copied on the loop thread. */
struct snapshot {
    int n_open, opened, closed, stray_closes, send_errors;
    unsigned streams;
    size_t max_queued;
};

static void take_snapshot(void *arg)
{
    struct snapshot *s = arg;
    s->n_open = fx.n_open;
    s->opened = fx.opened;
    s->closed = fx.closed;
    s->stray_closes = fx.stray_closes;
    s->send_errors = fx.send_errors;
    s->max_queued = fx.max_queued;
    s->streams = fx.admin != NULL ? fc_admin_streams(fx.admin) : 0;
}

static struct snapshot snapshot(void)
{
    struct snapshot s;
    on_loop(take_snapshot, &s);
    return s;
}

struct apply_call {
    struct fc_config *cfg;
    int rc;
};

static void apply_on_loop(void *arg)
{
    struct apply_call *call = arg;
    call->rc = fc_admin_apply(fx.admin, call->cfg);
}

static int apply(const char *admin)
{
    struct apply_call call = {.cfg = load_conf("next.conf", admin)};
    on_loop(apply_on_loop, &call);
    fc_config_free(call.cfg);
    return call.rc;
}

static void set_ev_size(void *arg)
{
    fx.ev_size = *(size_t *)arg;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ */
/* A blocking HTTP client                                                    */
/* ------------------------------------------------------------------------ */

static struct client *track(int fd)
{
    assert_true(fx.n_clients < MAX_CLIENTS);
    struct client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = fd;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    fx.clients[fx.n_clients++] = c;
    return c;
}

/* Connects to 127.0.0.1:port; -errno when refused. rcvbuf > 0 sets SO_RCVBUF first. */
static int tcp_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

static struct client *client_tcp(int port)
{
    int fd = tcp_connect(port, 0);
    if (fd < 0)
        fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(-fd));
    return track(fd);
}

static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

static void client_send(struct client *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            fail_msg("send: %s", n < 0 ? strerror(errno) : "nothing sent");
        data += n;
        len -= (size_t)n;
    }
}

static void client_send_str(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* One more read into c->buf: bytes read, 0 at the end, -errno. */
static ssize_t client_fill(struct client *c)
{
    if (c->len == sizeof(c->buf))
        return -ENOBUFS;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0)
        return -errno;
    c->len += (size_t)n;
    return n;
}

struct response {
    int status;
    char head[8192];
    char body[65536];
    size_t body_len;
    int has_length;
};

/* The value of header `name` in r's head, or NULL. */
static const char *header(const struct response *r, const char *name)
{
    static char value[1024];
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            const char *end = strstr(v, "\r\n");
            snprintf(value, sizeof(value), "%.*s", (int)(end - v), v);
            return value;
        }
    }
    return NULL;
}

/*
 * Reads one response: the head, then Content-Length bytes of body (a
 * response without one, an event stream, leaves its body in c->buf).
 * Returns 0, or -1 if the connection ended or timed out first.
 */
static int client_recv(struct client *c, struct response *r)
{
    memset(r, 0, sizeof(*r));
    char *end;
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
        if (client_fill(c) <= 0)
            return -1;
    size_t head_len = (size_t)(end - c->buf) + 4;
    assert_true(head_len < sizeof(r->head));
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    memmove(c->buf, c->buf + head_len, c->len - head_len);
    c->len -= head_len;
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    const char *cl = header(r, "Content-Length");
    if (cl == NULL)
        return 0;
    r->has_length = 1;
    size_t want = strtoul(cl, NULL, 10);
    assert_true(want < sizeof(r->body));
    while (c->len < want)
        if (client_fill(c) <= 0)
            return -1;
    memcpy(r->body, c->buf, want);
    r->body[want] = '\0';
    r->body_len = want;
    memmove(c->buf, c->buf + want, c->len - want);
    c->len -= want;
    return 0;
}

static void expect_response(struct client *c, struct response *r, int status)
{
    if (client_recv(c, r) != 0)
        fail_msg("no response (expected %d)", status);
    if (r->status != status)
        print_message("head:\n%s\nbody: %s\n", r->head, r->body);
    assert_int_equal(r->status, status);
}

/* Asserts the headers every response of the admin listener carries. */
static void assert_common_headers(const struct response *r)
{
    assert_non_null(header(r, "Content-Length"));
    assert_string_equal(header(r, "Cache-Control"), "no-store");
    assert_string_equal(header(r, "X-Content-Type-Options"), "nosniff");
}

/* Whether the server closes the connection within ms, with nothing else arriving. */
static int client_closed(struct client *c, int ms)
{
    int64_t deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        size_t before = c->len;
        ssize_t n = client_fill(c);
        if (n == 0 || n == -ECONNRESET)
            return c->len == before;
        if (n < 0 && n != -EAGAIN)
            return 0;
        if (c->len > before)
            return 0;
    }
    return 0;
}

/* Reads until c->buf holds `needle`; whether it did within ms. */
static int client_wait_for(struct client *c, const char *needle, int ms)
{
    int64_t deadline = now_ms() + ms;
    while (memmem(c->buf, c->len, needle, strlen(needle)) == NULL) {
        if (now_ms() >= deadline)
            return 0;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0 && client_fill(c) <= 0)
            return 0;
        if (c->len == sizeof(c->buf))
            c->len = 0; /* a stream: only what comes matters */
    }
    return 1;
}

/* One request on a fresh connection, closed after the response. */
static void fetch(const char *request, struct response *r, int status)
{
    struct client *c = client_tcp(fx.port);
    client_send_str(c, request);
    expect_response(c, r, status);
    close(c->fd);
    c->fd = -1;
}

/* Reads and throws away until the server closes; whether it did within ms. */
static int client_drained(struct client *c, int ms)
{
    int64_t deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        c->len = 0;
        ssize_t n = client_fill(c);
        if (n == 0 || n == -ECONNRESET)
            return 1;
        if (n < 0 && n != -EAGAIN)
            return 0;
    }
    return 0;
}

static const char *auth_get(const char *path, const char *authorization)
{
    static char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: admin\r\n%s%s%s\r\n", path,
             authorization != NULL ? "Authorization: " : "",
             authorization != NULL ? authorization : "", authorization != NULL ? "\r\n" : "");
    return req;
}

/* ------------------------------------------------------------------------ */
/* Requests and responses                                                    */
/* ------------------------------------------------------------------------ */

static void test_not_found(void **state)
{
    (void)state;
    start_tcp(0);
    struct response r;
    fetch("GET /nope HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 404);
    assert_common_headers(&r);
    assert_string_equal(header(&r, "Content-Type"), "application/json");
    assert_string_equal(r.body, "{\"error\": \"no such endpoint: /nope\"}\n");
    assert_null(header(&r, "Connection"));

    /* The query is not part of the path. */
    fetch("GET /echo/?x HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 404);
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    start_tcp(0);
    struct response r;
    fetch("DELETE /echo HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 405);
    assert_common_headers(&r);
    assert_string_equal(header(&r, "Allow"), "GET, POST");
    assert_string_equal(r.body, "{\"error\": \"method DELETE not allowed on /echo\"}\n");
    fetch("POST /events HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n", &r, 405);
    assert_string_equal(header(&r, "Allow"), "GET");
}

static void test_echo(void **state)
{
    (void)state;
    start_tcp(0);
    struct response r;
    fetch("GET /echo?x=1&y HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 200);
    assert_common_headers(&r);
    assert_string_equal(header(&r, "Content-Type"), "application/json");
    assert_string_equal(r.body, "{\"method\": \"GET\", \"path\": \"/echo\", \"query\": \"x=1&y\", "
                                "\"body_len\": 0}");
    fetch("POST /echo HTTP/1.1\r\nHost: admin\r\nContent-Length: 5\r\n\r\nhello", &r, 200);
    assert_string_equal(r.body, "{\"method\": \"POST\", \"path\": \"/echo\", \"query\": null, "
                                "\"body_len\": 5}");
    /* A chunked body, and one announced with Expect: 100-continue. */
    fetch("POST /echo HTTP/1.1\r\nHost: admin\r\nTransfer-Encoding: chunked\r\n\r\n"
          "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
          &r, 200);
    assert_non_null(strstr(r.body, "\"body_len\": 7"));

    struct client *c = client_tcp(fx.port);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: admin\r\nContent-Length: 3\r\n"
                       "Expect: 100-continue\r\n\r\n");
    expect_response(c, &r, 100);
    client_send_str(c, "xyz");
    expect_response(c, &r, 200);
    assert_non_null(strstr(r.body, "\"body_len\": 3"));
}

static void test_escaping_and_bad_status(void **state)
{
    (void)state;
    start_tcp(0);
    struct response r;
    fetch("GET /quote HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 409);
    /* Quotes, backslashes and controls escaped; valid UTF-8 kept; invalid bytes replaced. */
    assert_string_equal(r.body, "{\"error\": \"a \\\"quoted\\\" \\\\ line\\n\\u0001\\u007f "
                                "caf\xc3\xa9 \\ufffd\\ufffd\"}\n");
    fetch("GET /bad-status HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 500);
    assert_string_equal(r.body, "{\"error\": \"the handler answered no valid status\"}\n");
    assert_null(header(&r, "X-Test"));
}

static void test_keep_alive_and_pipelining(void **state)
{
    (void)state;
    start_tcp(0);
    struct client *c = client_tcp(fx.port);
    struct response r;
    client_send_str(c, "GET /echo?n=1 HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(c, &r, 200);
    assert_non_null(strstr(r.body, "n=1"));
    client_send_str(c, "GET /echo?n=2 HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(c, &r, 200);
    assert_non_null(strstr(r.body, "n=2"));

    /* Three at once: answered in order, one at a time. */
    client_send_str(c, "GET /echo?n=3 HTTP/1.1\r\nHost: admin\r\n\r\n"
                       "GET /nope HTTP/1.1\r\nHost: admin\r\n\r\n"
                       "POST /echo?n=5 HTTP/1.1\r\nHost: admin\r\nContent-Length: 2\r\n\r\nok");
    expect_response(c, &r, 200);
    assert_non_null(strstr(r.body, "n=3"));
    expect_response(c, &r, 404);
    expect_response(c, &r, 200);
    assert_non_null(strstr(r.body, "n=5"));
    assert_non_null(strstr(r.body, "\"body_len\": 2"));

    /* Connection: close is honoured. */
    client_send_str(c, "GET /echo HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    expect_response(c, &r, 200);
    assert_string_equal(header(&r, "Connection"), "close");
    assert_true(client_closed(c, 2000));

    /* HTTP/1.0 gets its answer, then the close. */
    c = client_tcp(fx.port);
    client_send_str(c, "GET /echo HTTP/1.0\r\n\r\n");
    expect_response(c, &r, 200);
    assert_true(client_closed(c, 2000));
}

/* ------------------------------------------------------------------------ */
/* Bounds and malformed requests                                             */
/* ------------------------------------------------------------------------ */

static void test_head_too_large(void **state)
{
    (void)state;
    start_tcp(0);
    static char req[3 * FC_ADMIN_MAX_HEAD];
    int n = snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: admin\r\nX-Big: ");
    memset(req + n, 'a', FC_ADMIN_MAX_HEAD);
    snprintf(req + n + FC_ADMIN_MAX_HEAD, sizeof(req) - (size_t)n - FC_ADMIN_MAX_HEAD, "\r\n\r\n");
    struct client *c = client_tcp(fx.port);
    client_send_str(c, req);
    struct response r;
    expect_response(c, &r, 431);
    assert_common_headers(&r);
    assert_string_equal(header(&r, "Connection"), "close");
    assert_string_equal(r.body, "{\"error\": \"request head larger than 8192 bytes\"}\n");
    assert_true(client_closed(c, 3000));

    /* A head just under the bound passes. */
    n = snprintf(req, sizeof(req), "GET /echo HTTP/1.1\r\nHost: admin\r\nX-Big: ");
    memset(req + n, 'a', FC_ADMIN_MAX_HEAD - 200);
    snprintf(req + n + FC_ADMIN_MAX_HEAD - 200, 8, "\r\n\r\n");
    fetch(req, &r, 200);

    /* A long URL in many small pieces, never ending. */
    c = client_tcp(fx.port);
    client_send_str(c, "GET /");
    char piece[1024];
    memset(piece, 'p', sizeof(piece));
    for (int i = 0; i < 12; i++)
        if (send(c->fd, piece, sizeof(piece), MSG_NOSIGNAL) < 0)
            break;
    expect_response(c, &r, 431);
}

static void test_body_too_large(void **state)
{
    (void)state;
    start_tcp(0);
    /* Announced: refused from the head, before any of the body. */
    struct client *c = client_tcp(fx.port);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: admin\r\nContent-Length: 100000\r\n\r\n");
    struct response r;
    expect_response(c, &r, 413);
    assert_common_headers(&r);
    assert_string_equal(r.body, "{\"error\": \"request body larger than 65536 bytes\"}\n");
    assert_true(client_closed(c, 3000));

    /* Sent along with it: the 413 still arrives whole (no reset over the unread body). */
    static char big[100000 + 256];
    int n = snprintf(big, sizeof(big),
                     "POST /echo HTTP/1.1\r\nHost: admin\r\nContent-Length: 100000\r\n\r\n");
    memset(big + n, 'b', 100000);
    c = client_tcp(fx.port);
    client_send(c, big, (size_t)n + 100000);
    expect_response(c, &r, 413);

    /* Chunked, growing past the bound. */
    c = client_tcp(fx.port);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: admin\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[8192 + 16];
    int hl = snprintf(chunk, sizeof(chunk), "2000\r\n");
    memset(chunk + hl, 'c', 8192);
    memcpy(chunk + hl + 8192, "\r\n", 2);
    for (int i = 0; i < 9; i++)
        client_send(c, chunk, (size_t)hl + 8192 + 2);
    expect_response(c, &r, 413);

    /* Exactly the bound passes. */
    static char ok[FC_ADMIN_MAX_BODY + 256];
    n = snprintf(ok, sizeof(ok), "POST /echo HTTP/1.1\r\nHost: admin\r\nContent-Length: %d\r\n\r\n",
                 FC_ADMIN_MAX_BODY);
    memset(ok + n, 'o', FC_ADMIN_MAX_BODY);
    c = client_tcp(fx.port);
    client_send(c, ok, (size_t)n + FC_ADMIN_MAX_BODY);
    expect_response(c, &r, 200);
    assert_non_null(strstr(r.body, "\"body_len\": 65536"));
}

static void test_malformed(void **state)
{
    (void)state;
    start_tcp(0);
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost : admin\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: admin\r\nContent-Length: 1\r\nTransfer-Encoding: "
        "chunked\r\n\r\n",
        "GET http://admin/echo HTTP/1.1\r\nHost: admin\r\n\r\n",
        "GET /echo HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client *c = client_tcp(fx.port);
        client_send_str(c, bad[i]);
        struct response r;
        expect_response(c, &r, 400);
        assert_common_headers(&r);
        assert_string_equal(header(&r, "Content-Type"), "application/json");
        assert_non_null(strstr(r.body, "{\"error\": \""));
        assert_string_equal(header(&r, "Connection"), "close");
        assert_true(client_closed(c, 3000));
    }
}

static void test_request_timeout(void **state)
{
    (void)state;
    start_tcp(0);
    /* A head that never ends: 408 after 10 s, then the close. */
    struct client *c = client_tcp(fx.port);
    struct timeval tv = {.tv_sec = 15};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    client_send_str(c, "GET /echo HTTP/1.1\r\nHost: adm");
    int64_t t0 = now_ms();
    struct response r;
    expect_response(c, &r, 408);
    assert_in_range(now_ms() - t0, 9000, 13000);
    assert_true(client_closed(c, 3000));
}

static void test_connection_limit(void **state)
{
    (void)state;
    start_tcp(0);
    struct client *held[64];
    struct response r;
    for (int i = 0; i < 64; i++) {
        held[i] = client_tcp(fx.port);
        client_send_str(held[i], "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
        expect_response(held[i], &r, 200);
    }
    /* The 65th is closed at once, unanswered. */
    struct client *c = client_tcp(fx.port);
    client_send_str(c, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_true(client_closed(c, 3000));
    assert_int_equal(c->len, 0);

    /* One leaves: there is room again. */
    close(held[0]->fd);
    held[0]->fd = -1;
    int64_t deadline = now_ms() + 3000;
    for (;;) {
        c = client_tcp(fx.port);
        client_send_str(c, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
        if (client_recv(c, &r) == 0) {
            assert_int_equal(r.status, 200);
            break;
        }
        assert_true(now_ms() < deadline);
        close(c->fd);
        c->fd = -1;
        usleep(20000);
    }
}

/* ------------------------------------------------------------------------ */
/* The token                                                                 */
/* ------------------------------------------------------------------------ */

static void test_token(void **state)
{
    (void)state;
    start_tcp(1);
    struct response r;
    fetch(auth_get("/echo", NULL), &r, 401);
    assert_common_headers(&r);
    assert_string_equal(header(&r, "WWW-Authenticate"), "Bearer");
    assert_string_equal(header(&r, "Content-Type"), "application/json");
    assert_non_null(strstr(r.body, "{\"error\": \""));

    static const char *const wrong[] = {
        "Bearer T0ken-of-the-tes",   /* a prefix */
        "Bearer T0ken-of-the-testX", /* longer */
        "Bearer T0ken-of-the-tesT",  /* same length */
        "Bearer ",
        "Basic " TOKEN,
        "Bearer" TOKEN,
        TOKEN,
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        fetch(auth_get("/echo", wrong[i]), &r, 401);
        assert_string_equal(header(&r, "WWW-Authenticate"), "Bearer");
    }
    fetch(auth_get("/echo", "Bearer " TOKEN), &r, 200);
    assert_common_headers(&r);
    fetch(auth_get("/echo", "bearer   " TOKEN "  "), &r, 200);

    /* Without the token nothing tells which paths exist. */
    fetch(auth_get("/nope", NULL), &r, 401);
    fetch(auth_get("/nope", "Bearer " TOKEN), &r, 404);
    fetch("DELETE /echo HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 401);

    /* A public route needs none; its other methods do. */
    fetch(auth_get("/public", NULL), &r, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/html");
    assert_string_equal(r.body, "<p>public</p>");
    /* The handler's own headers, among the listener's. */
    assert_common_headers(&r);
    assert_string_equal(header(&r, "X-Frame-Options"), "DENY");
    assert_string_equal(header(&r, "X-Test"), "public");
    fetch("POST /public HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n", &r, 401);

    /* A 401 keeps the connection. */
    struct client *c = client_tcp(fx.port);
    client_send_str(c, auth_get("/echo", NULL));
    expect_response(c, &r, 401);
    client_send_str(c, auth_get("/echo", "Bearer " TOKEN));
    expect_response(c, &r, 200);

    /* Streams too. */
    fetch(auth_get("/events", NULL), &r, 401);
}

/* ------------------------------------------------------------------------ */
/* Unix sockets                                                              */
/* ------------------------------------------------------------------------ */

static void test_unix_socket(void **state)
{
    (void)state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/admin.sock", fx.dir);

    /* A socket file nothing listens on (a daemon that died) is replaced. */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(stale, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(stale);

    start("admin = { address = \"unix:admin.sock\"; };");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);

    int fd = unix_connect(path);
    assert_true(fd >= 0);
    struct client *c = track(fd);
    client_send_str(c, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
    struct response r;
    expect_response(c, &r, 200);
    assert_common_headers(&r);
    client_send_str(c, "GET /nope HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(c, &r, 404);

    /* A second listener on the same path is refused, and takes nothing from the first. */
    struct fc_config *cfg = load_conf("second.conf", "admin = { address = \"unix:admin.sock\"; };");
    uv_loop_t other;
    uv_loop_init(&other);
    struct fc_admin *a2 = (struct fc_admin *)0x1;
    assert_int_equal(fc_admin_create(&other, cfg, &a2), -EADDRINUSE);
    assert_null(a2);
    assert_true(logged("second.conf:5: admin.address \"unix:admin.sock\": address already in use"));
    assert_int_equal(stat(path, &st), 0);
    client_send_str(c, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(c, &r, 200);
    fc_config_free(cfg);

    /* Something that is not a socket is left alone. */
    write_file("not-a-socket", "data\n");
    cfg = load_conf("third.conf", "admin = { address = \"unix:not-a-socket\"; };");
    assert_int_equal(fc_admin_create(&other, cfg, &a2), -EEXIST);
    assert_true(logged("admin.address \"unix:not-a-socket\": the path exists and is not a socket"));
    fc_config_free(cfg);
    char other_path[PATH_MAX];
    snprintf(other_path, sizeof(other_path), "%s/not-a-socket", fx.dir);
    assert_int_equal(stat(other_path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(uv_loop_close(&other), 0);

    /* The socket file goes with the listener. */
    close(c->fd);
    c->fd = -1;
    on_loop(stop_on_loop, NULL);
    uv_thread_join(&fx.thread);
    fx.running = 0;
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    uv_sem_destroy(&fx.done);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* ------------------------------------------------------------------------ */
/* Event streams                                                             */
/* ------------------------------------------------------------------------ */

static struct client *open_stream(int port)
{
    struct client *c = client_tcp(port);
    client_send_str(c, "GET /events HTTP/1.1\r\nHost: admin\r\n\r\n");
    struct response r;
    expect_response(c, &r, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/event-stream");
    assert_string_equal(header(&r, "Cache-Control"), "no-store");
    assert_null(header(&r, "Content-Length"));
    return c;
}

/* Waits until the owner has seen `closed` closed calls and the listener counts `streams`. */
static struct snapshot wait_streams(int closed, unsigned streams)
{
    int64_t deadline = now_ms() + 5000;
    struct snapshot s;
    for (;;) {
        s = snapshot();
        if ((s.closed == closed && s.streams == streams) || now_ms() >= deadline)
            return s;
        usleep(10000);
    }
}

static void test_stream(void **state)
{
    (void)state;
    start_tcp(0);
    struct client *c = open_stream(fx.port);
    /* What open() sent comes first, then the events. */
    assert_true(client_wait_for(c, "tick", 3000));
    assert_int_equal(memcmp(c->buf, "event: hello\ndata: {}\n\n", 23), 0);
    c->len = 0;
    assert_true(client_wait_for(c, "\n\ndata: tick", 3000));
    struct snapshot s = snapshot();
    assert_int_equal(s.streams, 1);
    assert_int_equal(s.opened, 1);

    /* The client leaves: one closed call, from the loop. */
    close(c->fd);
    c->fd = -1;
    s = wait_streams(1, 0);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.streams, 0);
    assert_int_equal(s.stray_closes, 0);

    /* Refused by open(): its status, and no closed call. */
    struct response r;
    fetch("GET /refused HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 403);
    assert_common_headers(&r);
    assert_string_equal(r.body, "{\"error\": \"Forbidden\"}\n");
    s = snapshot();
    assert_int_equal(s.streams, 0);
    assert_int_equal(s.stray_closes, 0);

    /* A stream left open is closed by the teardown's destroy, with its closed call. */
    open_stream(fx.port);
    assert_int_equal(snapshot().streams, 1);
}

static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    long size = 0, rss = 0;
    assert_int_equal(fscanf(f, "%ld %ld", &size, &rss), 2);
    fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_slow_stream_reader(void **state)
{
    (void)state;
    start_tcp(0);
    size_t ev = 16384; /* 1.6 MB/s: far more than a reader that never reads takes */
    on_loop(set_ev_size, &ev);
    long before = resident_kib();

    int fd = tcp_connect(fx.port, 4096);
    assert_true(fd >= 0);
    struct client *c = track(fd);
    client_send_str(c, "GET /events HTTP/1.1\r\nHost: admin\r\n\r\n");
    /* ... and never reads. */
    int64_t deadline = now_ms() + 15000;
    struct snapshot s;
    do {
        usleep(20000);
        s = snapshot();
        assert_true(s.max_queued <= FC_ADMIN_STREAM_BUFFER);
    } while (s.closed == 0 && now_ms() < deadline);
    assert_int_equal(s.opened, 1);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.streams, 0);
    assert_true(s.send_errors >= 1);
    assert_true(s.max_queued > FC_ADMIN_STREAM_BUFFER / 2);
    assert_true(s.max_queued <= FC_ADMIN_STREAM_BUFFER);
    long grown = resident_kib() - before;
    print_message("queued at most %zu bytes; resident memory grew by %ld KiB\n", s.max_queued,
                  grown);
    assert_true(grown < 16 * 1024);
}

static void test_stream_limit(void **state)
{
    (void)state;
    start_tcp(0);
    struct client *streams[FC_ADMIN_MAX_STREAMS];
    for (int i = 0; i < FC_ADMIN_MAX_STREAMS; i++)
        streams[i] = open_stream(fx.port);
    assert_int_equal(snapshot().streams, FC_ADMIN_MAX_STREAMS);

    struct response r;
    struct client *c = client_tcp(fx.port);
    client_send_str(c, "GET /events HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(c, &r, 503);
    assert_common_headers(&r);
    assert_string_equal(r.body, "{\"error\": \"too many event streams (16 are open)\"}\n");
    /* Other requests go on. */
    client_send_str(c, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(c, &r, 200);

    close(streams[3]->fd);
    streams[3]->fd = -1;
    struct snapshot s = wait_streams(1, FC_ADMIN_MAX_STREAMS - 1);
    assert_int_equal(s.streams, FC_ADMIN_MAX_STREAMS - 1);
    open_stream(fx.port);
    assert_int_equal(snapshot().streams, FC_ADMIN_MAX_STREAMS);
}

/* ------------------------------------------------------------------------ */
/* Reloads                                                                   */
/* ------------------------------------------------------------------------ */

static void test_apply_moves_address(void **state)
{
    (void)state;
    start_tcp(0);
    int old_port = fx.port;
    struct client *kept = client_tcp(old_port);
    struct response r;
    client_send_str(kept, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(kept, &r, 200);

    /* The same address: nothing changes. */
    assert_int_equal(apply(tcp_admin(old_port, 0)), 0);
    fetch("GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 200);

    int new_port = free_port();
    assert_int_equal(apply(tcp_admin(new_port, 0)), 0);
    assert_int_equal(tcp_connect(old_port, 0), -ECONNREFUSED);
    fx.port = new_port;
    fetch("GET /nope HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 404);
    /* A connection accepted on the old address stays. */
    client_send_str(kept, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(kept, &r, 200);

    /* An address in use: the call fails, with file:line, and the listener stays where it is. */
    int busy_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(busy_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(busy_fd, 1), 0);
    socklen_t len = sizeof(sin);
    getsockname(busy_fd, (struct sockaddr *)&sin, &len);
    int busy = ntohs(sin.sin_port);
    assert_int_equal(apply(tcp_admin(busy, 0)), -EADDRINUSE);
    char want[128];
    snprintf(want, sizeof(want),
             "next.conf:5: admin.address \"127.0.0.1:%d\": address already in use", busy);
    assert_true(logged(want));
    fetch("GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 200);
    close(busy_fd);

    /* To a unix socket and back. */
    assert_int_equal(apply("admin = { address = \"unix:moved.sock\"; };"), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/moved.sock", fx.dir);
    int fd = unix_connect(path);
    assert_true(fd >= 0);
    struct client *u = track(fd);
    client_send_str(u, "GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n");
    expect_response(u, &r, 200);
    assert_int_equal(tcp_connect(new_port, 0), -ECONNREFUSED);
    assert_int_equal(apply(tcp_admin(new_port, 0)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
    fetch("GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 200);

    /* No admin group: the listener and its connections close. */
    assert_int_equal(apply(NULL), 0);
    assert_int_equal(tcp_connect(new_port, 0), -ECONNREFUSED);
    assert_true(client_closed(kept, 3000));
    /* And it comes back. */
    assert_int_equal(apply(tcp_admin(new_port, 0)), 0);
    fetch("GET /echo HTTP/1.1\r\nHost: admin\r\n\r\n", &r, 200);
}

static void test_apply_token(void **state)
{
    (void)state;
    start_tcp(0);
    struct response r;
    fetch(auth_get("/echo", NULL), &r, 200);
    struct client *stream = open_stream(fx.port);
    struct client *idle = client_tcp(fx.port);
    client_send_str(idle, auth_get("/echo", NULL));
    expect_response(idle, &r, 200);

    /* A token comes in force: at once, and the stream let in without it closes. */
    write_file("admin.token", TOKEN "\n");
    assert_int_equal(apply(tcp_admin(fx.port, 1)), 0);
    fetch(auth_get("/echo", NULL), &r, 401);
    fetch(auth_get("/echo", "Bearer " TOKEN), &r, 200);
    client_send_str(idle, auth_get("/echo", NULL));
    expect_response(idle, &r, 401);
    assert_true(client_drained(stream, 3000));
    struct snapshot s = wait_streams(1, 0);
    assert_int_equal(s.closed, 1);

    /* Another token: the old one no longer opens anything. */
    struct client *with_old = client_tcp(fx.port);
    client_send_str(with_old, auth_get("/events", "Bearer " TOKEN));
    expect_response(with_old, &r, 200);
    write_file("admin.token", "  the-new-one\n");
    assert_int_equal(apply(tcp_admin(fx.port, 1)), 0);
    fetch(auth_get("/echo", "Bearer " TOKEN), &r, 401);
    fetch(auth_get("/echo", "Bearer the-new-one"), &r, 200);
    s = wait_streams(2, 0);
    assert_int_equal(s.closed, 2);

    /* The token removed: no token needed. */
    assert_int_equal(apply(tcp_admin(fx.port, 0)), 0);
    fetch(auth_get("/echo", NULL), &r, 200);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_and_bad_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive_and_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_stream_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_moves_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_token, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
