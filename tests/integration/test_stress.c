/*
 * Stress: the proxy's edge paths under load, looking for crashes, hangs,
 * leaks and lost requests rather than for one behaviour each.
 *
 *   concurrent_mix     many keep-alive clients at once, every kind of request,
 *                      every answer checked byte for byte;
 *   rude_clients       clients that vanish at every stage of a transaction,
 *                      while well-behaved clients must see no failure at all;
 *   rude_backends      backends that drop, close, end bodies by closing, and
 *                      die in the middle of a download;
 *   slow_reader_bounded_memory
 *                      64 MB each way with the proxy's memory watched: bodies
 *                      stream, they are never buffered whole.
 *
 * Every case ends with SIGTERM and requires fulcrum to exit 0, which in the
 * sanitizer build also means no leak and no error report.
 *
 * Concurrency comes from fork()ed client processes. A client process uses
 * only the harness functions that report failures instead of failing the
 * test (cmocka's longjmp must never run in a child, or its teardown would
 * stop the parent's fulcrum), prints what went wrong to stderr, and _exit()s
 * with the number of failures; the parent reaps every client by PID with a
 * deadline. Every loop is bounded and every wait has a deadline.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CLIENTS 16

/* ---- small tools ---------------------------------------------------------- */

/* xorshift64*: reproducible from the seed printed with any failure. */
struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(0x2545f4914f6cdd1d);
}

static size_t rng_below(struct rng *r, size_t n)
{
    return n ? (size_t)(rng_next(r) % n) : 0;
}

static void rng_fill(struct rng *r, char *p, size_t n)
{
    while (n >= 8) {
        uint64_t x = rng_next(r);
        memcpy(p, &x, 8);
        p += 8;
        n -= 8;
    }
    uint64_t x = rng_next(r);
    memcpy(p, &x, n);
}

/* A growable byte string; out of memory aborts (this is a test). */
struct bytes {
    char *p;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (b->p == NULL)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void bytes_addf(struct bytes *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bytes_addf(struct bytes *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    bytes_add(b, tmp, (size_t)n);
}

/* fulcrum's resident memory in KiB, from /proc; -1 if unreadable. */

/* Open file descriptors of a process; -1 if unreadable. */
static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Fails the test if fulcrum is no longer running (it crashed meanwhile). */
static void assert_alive(struct it_env *env, struct it_fulcrum *f, const char *when)
{
    int status = 0;
    if (it_proc_wait(f->proc, 0, &status) == 0) {
        it_proc_dump(env, f->proc);
        fail_msg("fulcrum died %s: wait status 0x%x", when, status);
    }
}

/*
 * SIGTERM, then fulcrum must exit 0 in time. Teardown checks the same, but
 * here the failure names the case's own end. Under the sanitizers a leak or
 * an error report makes the exit status non-zero.
 */
static void stop_fulcrum(struct it_env *env, struct it_fulcrum *f)
{
    assert_alive(env, f, "before SIGTERM");
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, IT_STOP_TIMEOUT_MS);
}

/* ---- raw sockets: for what the harness client deliberately does not do -- */

/* A blocking socket connected to 127.0.0.1:port with 5 s send/receive timeouts, or -errno. */
static int raw_connect(int port)
{
    return it_socket_connect(port, 5);
}

/* Sends what the peer takes; errors are the point of some callers, so they are ignored. */
static void raw_send(int fd, const void *data, size_t len)
{
    (void)it_send_all(fd, data, len);
}

static void raw_send_str(int fd, const char *s)
{
    raw_send(fd, s, strlen(s));
}

/* Closes with a reset instead of a FIN: SO_LINGER with a zero timeout. */
static void raw_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Waits up to timeout_ms for bytes and reads up to cap of them: >0, 0 at EOF, -errno. */
static ssize_t raw_recv(int fd, void *buf, size_t cap, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - it_now_ms());
        int r = poll(&pfd, 1, left > 0 ? left : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR && errno != EAGAIN)
            return -errno;
    }
}

/*
 * A download read at the pace the test chooses, checked against the /bytes
 * pattern as it arrives, so 64 MB never sit in the test's memory either.
 */
struct download {
    int fd;
    int status;
    long long content_length; /* -1: no Content-Length */
    char backend[64];         /* X-Backend, "" if none */
    uint64_t body;            /* body bytes received, all checked */
    uint64_t mismatch;        /* offset of the first wrong byte, or UINT64_MAX */
    char buf[64 * 1024];
};

static void download_check(struct download *d, const char *p, size_t n)
{
    for (size_t i = 0; i < n && d->mismatch == UINT64_MAX; i++)
        if ((uint8_t)p[i] != it_pattern_byte((size_t)(d->body + i)))
            d->mismatch = d->body + i;
    d->body += n;
}

/* Sends "GET path" and reads the response head. 0, or a negative errno. */
static int download_start(struct download *d, int port, const char *path)
{
    memset(d, 0, offsetof(struct download, buf));
    d->mismatch = UINT64_MAX;
    d->content_length = -1;
    d->fd = raw_connect(port);
    if (d->fd < 0)
        return -errno;
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    raw_send_str(d->fd, req);
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        if (len + 1 >= sizeof(d->buf))
            return -EPROTO;
        ssize_t n = raw_recv(d->fd, d->buf + len, sizeof(d->buf) - 1 - len, 10000);
        if (n == 0)
            return -EPIPE;
        if (n < 0)
            return (int)n;
        len += (size_t)n;
        d->buf[len] = '\0';
        end = strstr(d->buf, "\r\n\r\n");
    }
    if (sscanf(d->buf, "HTTP/1.%*d %d", &d->status) != 1)
        return -EPROTO;
    char value[64];
    if (it_head_value(d->buf, "Content-Length", value, sizeof(value)))
        d->content_length = atoll(value);
    it_head_value(d->buf, "X-Backend", d->backend, sizeof(d->backend));
    size_t head_len = (size_t)(end + 4 - d->buf);
    download_check(d, d->buf + head_len, len - head_len);
    return 0;
}

/*
 * Reads body bytes until `upto` have arrived in all. Returns 0 when they
 * have, 1 if the connection ended first, or a negative errno (-ETIMEDOUT
 * when nothing arrived for timeout_ms).
 */
static int download_read(struct download *d, uint64_t upto, int timeout_ms)
{
    while (d->body < upto) {
        size_t want = sizeof(d->buf);
        if (upto - d->body < want)
            want = (size_t)(upto - d->body);
        ssize_t n = raw_recv(d->fd, d->buf, want, timeout_ms);
        if (n == 0)
            return 1;
        if (n < 0)
            return (int)n;
        download_check(d, d->buf, (size_t)n);
    }
    return 0;
}

/* ---- requests of every kind, and their checks ----------------------------- */

enum kind {
    K_NAME,       /* GET /: "NAME\n" from some backend */
    K_BYTES,      /* GET /bytes?n=N, maybe chunked */
    K_SUM,        /* POST /sum with Content-Length (maybe Expect: 100-continue) or chunked */
    K_HEAD,       /* HEAD /bytes?n=N: the head only */
    K_NO_CONTENT, /* GET /status/204 */
    K_HTTP10,     /* HTTP/1.0 GET /bytes?n=N: kept alive, or chunked by the backend (decoded) */
    K_KINDS,
};

/* One request of a client and what its response must be. */
struct exchange {
    enum kind kind;
    const char *method;
    size_t n;     /* K_BYTES, K_HEAD: pattern bytes; K_SUM: body bytes */
    bool chunked; /* K_BYTES, K_HTTP10: chunked by the backend; K_SUM: chunked upload */
    char sum[64]; /* K_SUM: the backend's answer */
    char what[80];
};

/*
 * Appends a random request (bodies up to max_bytes) to wire and describes it
 * in x. Unless may_close, never one whose response may end the connection
 * (the first of a pipelined pair).
 */
static void exchange_build(struct rng *r, size_t max_bytes, bool may_close, struct bytes *wire,
                           struct exchange *x)
{
    memset(x, 0, sizeof(*x));
    x->kind = (enum kind)rng_below(r, may_close ? K_KINDS : K_HTTP10);
    x->method = "GET";
    switch (x->kind) {
    case K_NAME:
        bytes_addf(wire, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        snprintf(x->what, sizeof(x->what), "GET /");
        break;
    case K_BYTES:
        x->n = rng_below(r, max_bytes + 1);
        x->chunked = rng_below(r, 2);
        bytes_addf(wire, "GET /bytes?n=%zu%s HTTP/1.1\r\nHost: test\r\n\r\n", x->n,
                   x->chunked ? "&chunked=1" : "");
        snprintf(x->what, sizeof(x->what), "GET /bytes?n=%zu%s", x->n,
                 x->chunked ? "&chunked=1" : "");
        break;
    case K_HEAD:
        x->method = "HEAD";
        x->n = rng_below(r, max_bytes + 1);
        bytes_addf(wire, "HEAD /bytes?n=%zu HTTP/1.1\r\nHost: test\r\n\r\n", x->n);
        snprintf(x->what, sizeof(x->what), "HEAD /bytes?n=%zu", x->n);
        break;
    case K_NO_CONTENT:
        bytes_addf(wire, "GET /status/204 HTTP/1.1\r\nHost: test\r\n\r\n");
        snprintf(x->what, sizeof(x->what), "GET /status/204");
        break;
    case K_HTTP10:
        /*
         * The proxy speaks HTTP/1.1 to the backend, so chunked=1 gets a chunked
         * body that the proxy must decode for this client and end by closing.
         */
        x->n = rng_below(r, max_bytes + 1);
        x->chunked = rng_below(r, 2);
        bytes_addf(wire, "GET /bytes?n=%zu%s HTTP/1.0\r\nHost: test\r\n%s\r\n", x->n,
                   x->chunked ? "&chunked=1" : "", x->chunked ? "" : "Connection: keep-alive\r\n");
        snprintf(x->what, sizeof(x->what), "HTTP/1.0 GET /bytes?n=%zu%s", x->n,
                 x->chunked ? "&chunked=1" : " (keep-alive)");
        break;
    case K_SUM:
    case K_KINDS: {
        x->kind = K_SUM;
        x->method = "POST";
        x->n = rng_below(r, max_bytes + 1);
        x->chunked = rng_below(r, 2);
        char *body = malloc(x->n + 8);
        if (body == NULL)
            abort();
        rng_fill(r, body, x->n);
        snprintf(x->sum, sizeof(x->sum), "len=%zu fnv=%016llx\n", x->n,
                 (unsigned long long)it_fnv1a64(body, x->n));
        snprintf(x->what, sizeof(x->what), "POST /sum (%zu bytes, %s)", x->n,
                 x->chunked ? "chunked" : "Content-Length");
        if (!x->chunked) {
            /* Sent without waiting for the 100, as clients may: the interim is relayed. */
            bool expect = x->n > 0 && rng_below(r, 4) == 0;
            bytes_addf(wire, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n%s\r\n",
                       x->n, expect ? "Expect: 100-continue\r\n" : "");
            bytes_add(wire, body, x->n);
            if (expect)
                strcat(x->what, " + Expect");
        } else {
            bytes_addf(wire,
                       "POST /sum HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
            /* Chunks of any size, some with an extension, hex digits in either case. */
            for (size_t off = 0; off < x->n;) {
                size_t c = 1 + rng_below(r, 40000);
                if (c > x->n - off)
                    c = x->n - off;
                bytes_addf(wire, rng_below(r, 2) ? "%zx%s\r\n" : "%zX%s\r\n", c,
                           rng_below(r, 8) == 0 ? ";ext=1" : "");
                bytes_add(wire, body + off, c);
                bytes_add(wire, "\r\n", 2);
                off += c;
            }
            bytes_addf(wire, "0\r\n%s\r\n", rng_below(r, 4) == 0 ? "X-Trailer: t\r\n" : "");
        }
        free(body);
        break;
    }
    }
}

/* True if r is the right answer to x; otherwise says why in `why`. */
static bool exchange_verify(const struct exchange *x, const struct it_response *r, char *why,
                            size_t cap)
{
    const char *backend = it_header(r, "X-Backend");
    int expect = x->kind == K_NO_CONTENT ? 204 : 200;
    if (r->status != expect) {
        snprintf(why, cap, "status %d, expected %d", r->status, expect);
        return false;
    }
    if (backend == NULL) {
        snprintf(why, cap, "no X-Backend header");
        return false;
    }
    switch (x->kind) {
    case K_NAME:
        if (r->body_len != strlen(backend) + 1 || strncmp(r->body, backend, r->body_len - 1) != 0 ||
            r->body[r->body_len - 1] != '\n') {
            snprintf(why, cap, "body \"%.40s\" from backend %s", r->body, backend);
            return false;
        }
        return true;
    case K_HTTP10:
        if (r->chunked) {
            snprintf(why, cap, "chunked framing sent to an HTTP/1.0 client");
            return false;
        }
        /* fall through */
    case K_BYTES: {
        size_t bad = it_pattern_mismatch(r->body, r->body_len);
        if (r->body_len != x->n || bad != r->body_len) {
            snprintf(why, cap, "%zu body bytes (expected %zu), first wrong byte at %zu",
                     r->body_len, x->n, bad);
            return false;
        }
        return true;
    }
    case K_SUM:
        if (strcmp(r->body, x->sum) != 0) {
            snprintf(why, cap, "body \"%.60s\", expected \"%.60s\"", r->body, x->sum);
            return false;
        }
        return true;
    case K_HEAD: {
        const char *cl = it_header(r, "Content-Length");
        char want[32];
        snprintf(want, sizeof(want), "%zu", x->n);
        if (r->body_len != 0 || cl == NULL || strcmp(cl, want) != 0) {
            snprintf(why, cap, "Content-Length %s (expected %s), %zu body bytes", cl ? cl : "none",
                     want, r->body_len);
            return false;
        }
        return true;
    }
    case K_NO_CONTENT:
    case K_KINDS:
        if (r->body_len != 0) {
            snprintf(why, cap, "%zu body bytes", r->body_len);
            return false;
        }
        return true;
    }
    return false;
}

/* ---- client processes ------------------------------------------------------ */

struct mix_params {
    int port;
    unsigned requests; /* requests per client */
    size_t max_bytes;  /* largest body either way */
    uint64_t seed;
};

/*
 * A well-behaved client: `requests` random requests on keep-alive
 * connections, sometimes two pipelined in one send, sometimes on a new
 * connection. Every response is checked. Returns the number of failures
 * (it stops at the first transport failure: the stream is lost then).
 */
static int mixed_client(struct it_env *env, unsigned id, const struct mix_params *p)
{
    struct rng r = {p->seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (id + 1))};
    struct it_conn *c = NULL;
    struct bytes wire = {0};
    int failures = 0;
    unsigned done = 0;
    for (unsigned round = 0; done < p->requests && round < p->requests; round++) {
        if (c == NULL) {
            int err = 0;
            c = it_connect_raw(env, p->port, &err);
            if (c == NULL) {
                fprintf(stderr, "client %u: connect: %s\n", id, strerror(-err));
                failures++;
                break;
            }
            it_conn_set_timeout(c, 8000);
        }
        /*
         * In a pipelined pair the first response stays small: a client that
         * sends a large request while a large response piles up unread could
         * block on a full socket itself, the client's deadlock, not the
         * proxy's. The second request may carry a large body, which waits in
         * the proxy while the first is answered.
         */
        unsigned batch = rng_below(&r, 5) == 0 ? 2 : 1;
        struct exchange xs[2];
        wire.len = 0;
        for (unsigned i = 0; i < batch; i++)
            exchange_build(&r, i + 1 < batch ? 8192 : p->max_bytes, i + 1 == batch, &wire, &xs[i]);
        int rc = it_send_raw(c, wire.p, wire.len);
        if (rc != 0) {
            fprintf(stderr, "client %u request %u (%s): send: %s\n", id, done, xs[0].what,
                    strerror(-rc));
            failures++;
            break;
        }
        bool close_now = rng_below(&r, 10) == 0;
        for (unsigned i = 0; i < batch && failures == 0; i++, done++) {
            struct it_response resp;
            rc = it_recv_response(c, xs[i].method, &resp);
            if (rc != 0) {
                fprintf(stderr, "client %u request %u (%s%s): no response: %s\n", id, done,
                        xs[i].what, i ? ", pipelined" : "", strerror(-rc));
                failures++;
                break;
            }
            char why[160];
            if (!exchange_verify(&xs[i], &resp, why, sizeof(why))) {
                fprintf(stderr, "client %u request %u (%s%s): %s\n", id, done, xs[i].what,
                        i ? ", pipelined" : "", why);
                failures++;
            }
            const char *conn_hdr = it_header(&resp, "Connection");
            if (resp.close_delimited || (conn_hdr != NULL && strcasestr(conn_hdr, "close") != NULL))
                close_now = true;
            else if (xs[i].kind == K_HTTP10 && conn_hdr == NULL)
                close_now = true; /* HTTP/1.0 without keep-alive: closes */
            it_response_free(&resp);
        }
        if (failures > 0)
            break;
        if (close_now) {
            it_conn_close(c);
            c = NULL;
        }
    }
    it_conn_close(c);
    free(wire.p);
    if (failures == 0 && done < p->requests) {
        fprintf(stderr, "client %u: only %u of %u requests done\n", id, done, p->requests);
        failures++;
    }
    return failures;
}

/*
 * Forks a client process running mixed_client(). The child restores the
 * default signal dispositions (the harness's handlers would kill the
 * parent's children) and never returns into cmocka.
 */
static pid_t client_fork(struct it_env *env, unsigned id, const struct mix_params *p)
{
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(120);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        int failures = mixed_client(env, id, p);
        fflush(stderr);
        _exit(failures > 100 ? 100 : failures);
    }
    return pid;
}

/*
 * Reaps every client by PID within timeout_ms; those still running then are
 * killed (SIGKILL, by PID) and count as failed. Returns the number of
 * clients that failed; never fails the test itself, so callers can clean up
 * first.
 */
static int clients_wait(pid_t *pids, size_t n, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    size_t left = n;
    int failed = 0;
    while (left > 0) {
        for (size_t i = 0; i < n; i++) {
            if (pids[i] <= 0)
                continue;
            int status = 0;
            pid_t r = waitpid(pids[i], &status, WNOHANG);
            if (r == 0)
                continue;
            if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "client %zu (pid %d): %s %d\n", i, (int)pids[i],
                        r > 0 && WIFEXITED(status) ? "failures:" : "wait status",
                        r > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : status);
                failed++;
            }
            pids[i] = 0;
            left--;
        }
        if (left == 0)
            break;
        if (it_now_ms() >= deadline) {
            for (size_t i = 0; i < n; i++) {
                if (pids[i] <= 0)
                    continue;
                fprintf(stderr, "client %zu (pid %d): still running after %d ms (hang?)\n", i,
                        (int)pids[i], timeout_ms);
                kill(pids[i], SIGKILL);
                waitpid(pids[i], NULL, 0);
                pids[i] = 0;
                failed++;
            }
            break;
        }
        it_sleep_ms(10);
    }
    return failed;
}

static uint64_t test_seed(void)
{
    const char *s = getenv("FC_STRESS_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)it_now_ms() * UINT64_C(2654435761);
    if (seed == 0)
        seed = 1;
    fprintf(stderr, "stress: seed 0x%llx (set FC_STRESS_SEED to repeat)\n",
            (unsigned long long)seed);
    return seed;
}

/* ---- 1. many well-behaved clients at once --------------------------------- */

IT_TEST(concurrent_mix)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 3);
    cfg.workers = 2;
    cfg.upstream_ms = 5000;
    cfg.idle_ms = 5000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct mix_params p = {
        .port = f->port, .requests = 40, .max_bytes = 300000, .seed = test_seed()};
    pid_t pids[MAX_CLIENTS];
    for (unsigned i = 0; i < MAX_CLIENTS; i++)
        pids[i] = client_fork(env, i, &p);
    int failed = clients_wait(pids, MAX_CLIENTS, 60000);
    assert_alive(env, f, "under concurrent load");
    if (failed > 0)
        fail_msg("%d of %d clients saw a wrong or missing response", failed, MAX_CLIENTS);

    /* The proxy is still in order after the load. */
    struct it_response r;
    it_get(env, f->port, "test", "/bytes?n=100000", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 100000);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), 100000);
    it_response_free(&r);
    stop_fulcrum(env, f);
}

/* ---- 2. clients that misbehave and vanish --------------------------------- */

enum rude {
    RUDE_CONNECT_CLOSE,  /* connect, close */
    RUDE_HALF_LINE,      /* half a request line, close */
    RUDE_SHORT_BODY,     /* head with Content-Length: 100000, part of the body, close */
    RUDE_DOWNLOAD_CLOSE, /* big download, close after the first bytes (RST: unread data) */
    RUDE_REQUEST_RST,    /* a request, then RST before reading anything */
    RUDE_GARBAGE,        /* random bytes */
    RUDE_SLOW_GONE,      /* a request the backend answers late, the client gone by then */
    RUDE_UPLOAD_RST,     /* part of a large upload, then RST */
    RUDE_PIPELINE_CLOSE, /* many pipelined requests, close after a few bytes */
    RUDE_NEVER_READ,     /* big download never read, closed later */
    RUDE_BODY_BEHIND,    /* a slow request, a large upload pipelined behind it, close */
    RUDE_HALF_CLOSE,     /* a full request then FIN: the answer must still come */
    RUDE_KINDS,
};

/*
 * One rude connection. Returns the fd to close later (the misbehaviour goes
 * on while others start), or -1 if it is finished. Only RUDE_HALF_CLOSE has
 * a right answer to check; a failure there is counted in *errors.
 */
static int rude_act(int port, enum rude kind, struct rng *r, int *errors)
{
    int fd = raw_connect(port);
    if (fd < 0) {
        fprintf(stderr, "rude %d: connect: %s\n", (int)kind, strerror(errno));
        (*errors)++;
        return -1;
    }
    char buf[4096];
    switch (kind) {
    case RUDE_CONNECT_CLOSE:
        close(fd);
        return -1;
    case RUDE_HALF_LINE:
        raw_send_str(fd, "GET /bytes?n=1");
        return fd;
    case RUDE_SHORT_BODY: {
        raw_send_str(fd, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n");
        size_t n = 1 + rng_below(r, 60000);
        char *body = calloc(1, n);
        raw_send(fd, body, n);
        free(body);
        return fd;
    }
    case RUDE_DOWNLOAD_CLOSE:
        raw_send_str(fd, "GET /bytes?n=5000000 HTTP/1.1\r\nHost: test\r\n\r\n");
        raw_recv(fd, buf, 1 + rng_below(r, 100), 5000);
        close(fd);
        return -1;
    case RUDE_REQUEST_RST:
        raw_send_str(fd, rng_below(r, 2) ? "GET / HTTP/1.1\r\nHost: test\r\n\r\n"
                                         : "GET /bytes?n=300000 HTTP/1.1\r\nHost: test\r\n\r\n");
        raw_reset(fd);
        return -1;
    case RUDE_GARBAGE: {
        size_t n = 1 + rng_below(r, sizeof(buf));
        rng_fill(r, buf, n);
        raw_send(fd, buf, n);
        if (rng_below(r, 2))
            return fd;
        close(fd);
        return -1;
    }
    case RUDE_SLOW_GONE:
        raw_send_str(fd, "GET /slow?ms=300 HTTP/1.1\r\nHost: test\r\n\r\n");
        close(fd);
        return -1;
    case RUDE_UPLOAD_RST: {
        raw_send_str(fd, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\r\n");
        size_t n = 1 + rng_below(r, 300000);
        char *body = calloc(1, n);
        raw_send(fd, body, n);
        free(body);
        raw_reset(fd);
        return -1;
    }
    case RUDE_PIPELINE_CLOSE: {
        struct bytes wire = {0};
        for (int i = 0; i < 16; i++)
            bytes_addf(&wire, "GET /bytes?n=20000 HTTP/1.1\r\nHost: test\r\n\r\n");
        raw_send(fd, wire.p, wire.len);
        free(wire.p);
        raw_recv(fd, buf, 10, 5000);
        close(fd);
        return -1;
    }
    case RUDE_BODY_BEHIND: {
        raw_send_str(fd, "GET /slow?ms=50 HTTP/1.1\r\nHost: test\r\n\r\n"
                         "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\r\n");
        size_t n = 1 + rng_below(r, 400000);
        char *body = calloc(1, n);
        raw_send(fd, body, n);
        free(body);
        return fd;
    }
    case RUDE_NEVER_READ:
        raw_send_str(fd, "GET /bytes?n=5000000 HTTP/1.1\r\nHost: test\r\n\r\n");
        return fd;
    case RUDE_HALF_CLOSE:
    case RUDE_KINDS: {
        raw_send_str(fd, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        shutdown(fd, SHUT_WR);
        /* The proxy answers, then closes: read to the end. */
        struct bytes got = {0};
        ssize_t n;
        while (got.len < 65536 && (n = raw_recv(fd, buf, sizeof(buf), 5000)) > 0)
            bytes_add(&got, buf, (size_t)n);
        bytes_add(&got, "", 1);
        const char *body = strstr(got.p, "\r\n\r\n");
        char backend[64] = "";
        it_head_value(got.p, "X-Backend", backend, sizeof(backend));
        if (strncmp(got.p, "HTTP/1.1 200 ", 13) != 0 || body == NULL || backend[0] == '\0' ||
            strncmp(body + 4, backend, strlen(backend)) != 0) {
            fprintf(stderr, "rude half-close: no complete 200 response; got %zu bytes: %.200s\n",
                    got.len - 1, got.p);
            (*errors)++;
        }
        free(got.p);
        close(fd);
        return -1;
    }
    }
    close(fd);
    return -1;
}

IT_TEST(rude_clients)
{
    int a = it_backend_start(env, "a");
    int b = it_backend_start(env, "b");
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 2;
    cfg.upstream_ms = 5000;
    cfg.idle_ms = 2000; /* short: idle connections must be gone before the fd count */
    cfg.client_header_ms = 3000;
    it_config_add_pool(&cfg, "web", 1, 2, a, b);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    pid_t fpid = it_proc_pid(f->proc);

    /* The harness's readiness probe may still be open in fulcrum: let it go. */
    it_sleep_ms(300);
    int fds_before = fd_count(fpid);
    assert_true(fds_before > 0);

    struct mix_params p = {
        .port = f->port, .requests = 50, .max_bytes = 200000, .seed = test_seed()};
    enum { GOOD = 3, RUDE = 240, PARKED = 24 };
    pid_t pids[GOOD];
    for (unsigned i = 0; i < GOOD; i++)
        pids[i] = client_fork(env, i, &p);

    /*
     * Rude connections, each kind in turn with random details; some stay
     * parked in a ring and are closed a little later, so that many
     * half-done transactions overlap. No assertion runs while the clients
     * run: a failure here must not leave them behind.
     */
    struct rng r = {p.seed ^ UINT64_C(0x5bd1e995)};
    int parked[PARKED];
    for (int i = 0; i < PARKED; i++)
        parked[i] = -1;
    int errors = 0;
    for (int i = 0; i < RUDE; i++) {
        enum rude kind = (enum rude)(i % RUDE_KINDS);
        int fd = rude_act(f->port, kind, &r, &errors);
        int slot = i % PARKED;
        if (parked[slot] >= 0) {
            if (rng_below(&r, 2))
                raw_reset(parked[slot]);
            else
                close(parked[slot]);
        }
        parked[slot] = fd;
    }
    for (int i = 0; i < PARKED; i++)
        if (parked[i] >= 0)
            close(parked[i]);

    int failed = clients_wait(pids, GOOD, 60000);
    assert_alive(env, f, "after the rude clients");
    if (failed > 0)
        fail_msg("%d of %d well-behaved clients saw a wrong or missing response", failed, GOOD);
    if (errors > 0)
        fail_msg("%d half-closed requests were not answered", errors);

    /*
     * Every connection is gone now, and idle upstream connections expire
     * after idle_ms: fulcrum must be back to the descriptors it started with.
     * More would be connections it lost track of.
     */
    int64_t deadline = it_now_ms() + cfg.idle_ms + 4000;
    int fds_after = fd_count(fpid);
    while (fds_after > fds_before && it_now_ms() < deadline) {
        it_sleep_ms(100);
        fds_after = fd_count(fpid);
    }
    if (fds_after > fds_before)
        fail_msg("fulcrum holds %d descriptors, %d before the rude clients: connections leaked",
                 fds_after, fds_before);

    struct it_response resp;
    it_get(env, f->port, "test", "/", &resp);
    assert_int_equal(resp.status, 200);
    it_response_free(&resp);
    it_get(env, f->port, "test", "/bytes?n=300000", &resp);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_len, 300000);
    assert_int_equal(it_pattern_mismatch(resp.body, resp.body_len), 300000);
    it_response_free(&resp);
    stop_fulcrum(env, f);
}

/* ---- 3. backends that misbehave and die ----------------------------------- */

/* The proxy's own error: no backend's mark, short, correctly framed. */
static void assert_proxy_error(struct it_env *env, const struct it_response *r, int status)
{
    assert_int_equal(r->status, status);
    assert_null(it_header(r, "X-Backend"));
    assert_false(r->close_delimited);
    assert_non_null(it_header(r, "Content-Length"));
    assert_string_equal(it_header(r, "Content-Length"), it_strf(env, "%zu", r->body_len));
}

/* True if the response announced that the connection closes after it. */
static bool closes(const struct it_response *r)
{
    const char *v = it_header(r, "Connection");
    return r->close_delimited || (v != NULL && strcasestr(v, "close") != NULL);
}

/* The next request's connection: the same one unless the last response closed it. */
static struct it_conn *next_conn(struct it_env *env, struct it_conn *c, int port, bool closed)
{
    if (!closed)
        return c;
    it_conn_close(c);
    return it_connect(env, port);
}

IT_TEST(rude_backends)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 3);
    cfg.workers = 2;
    cfg.upstream_ms = 5000;
    cfg.idle_ms = 5000;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* Dropped requests get 502; the same connection then serves on. */
    struct it_conn *c = it_connect(env, f->port);
    struct it_response r;
    for (int i = 0; i < 6; i++) {
        it_send_str(c, "GET /drop HTTP/1.1\r\nHost: test\r\n\r\n");
        it_expect_response(c, "GET", &r);
        assert_proxy_error(env, &r, 502);
        c = next_conn(env, c, f->port, closes(&r));
        it_response_free(&r);

        it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        it_expect_response(c, "GET", &r);
        assert_int_equal(r.status, 200);
        assert_non_null(it_header(&r, "X-Backend"));
        c = next_conn(env, c, f->port, closes(&r));
        it_response_free(&r);
    }

    /* A drop and a good request pipelined: the second is still answered. */
    for (int i = 0; i < 4; i++) {
        it_send_str(c, "GET /drop HTTP/1.1\r\nHost: test\r\n\r\n"
                       "GET /bytes?n=70000 HTTP/1.1\r\nHost: test\r\n\r\n");
        it_expect_response(c, "GET", &r);
        assert_proxy_error(env, &r, 502);
        bool closed = closes(&r);
        it_response_free(&r);
        if (!closed) {
            it_expect_response(c, "GET", &r);
            assert_int_equal(r.status, 200);
            assert_int_equal(r.body_len, 70000);
            assert_int_equal(it_pattern_mismatch(r.body, r.body_len), 70000);
            closed = closes(&r);
            it_response_free(&r);
        }
        c = next_conn(env, c, f->port, closed);
    }

    /* Backends that close after answering, and bodies that end with the connection. */
    for (int i = 0; i < 6; i++) {
        it_send_str(c, "GET /close HTTP/1.1\r\nHost: test\r\n\r\n");
        it_expect_response(c, "GET", &r);
        assert_int_equal(r.status, 200);
        assert_non_null(it_header(&r, "X-Backend"));
        assert_string_equal(r.body, it_strf(env, "%s\n", it_header(&r, "X-Backend")));
        c = next_conn(env, c, f->port, closes(&r));
        it_response_free(&r);

        it_send_str(c, "GET /nolength?n=100000 HTTP/1.1\r\nHost: test\r\n\r\n");
        it_expect_response(c, "GET", &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, 100000);
        assert_int_equal(it_pattern_mismatch(r.body, r.body_len), 100000);
        c = next_conn(env, c, f->port, closes(&r));
        it_response_free(&r);
    }
    it_conn_close(c);
    assert_alive(env, f, "after dropping and closing backends");

    /*
     * A backend killed in the middle of a large download: the client must see
     * the connection end before Content-Length bytes (a truncated response
     * it can recognise), promptly, and every byte before that right.
     */
    const uint64_t big = 200000000;
    struct download *d = malloc(sizeof(*d));
    assert_non_null(d);
    int rc = download_start(d, f->port, it_strf(env, "/bytes?n=%llu", (unsigned long long)big));
    assert_int_equal(rc, 0);
    assert_int_equal(d->status, 200);
    assert_true(d->content_length == (long long)big);
    assert_true(d->backend[0] != '\0');
    assert_int_equal(download_read(d, 1 << 20, 5000), 0);
    const char *killed = it_strf(env, "%s", d->backend);
    struct it_proc *victim = it_backend_proc(env, killed);
    it_proc_signal(victim, SIGKILL);
    assert_int_equal(it_proc_wait(victim, 3000, NULL), 0);
    int64_t t0 = it_now_ms();
    rc = download_read(d, big, 5000);
    int64_t took = it_now_ms() - t0;
    close(d->fd);
    if (rc != 1 && rc != -ECONNRESET)
        fail_msg("download from killed backend %s: %s after %llu bytes (expected the "
                 "connection to end)",
                 killed, rc == 0 ? "completed" : strerror(-rc), (unsigned long long)d->body);
    assert_true(d->body < big);
    if (d->mismatch != UINT64_MAX)
        fail_msg("download from killed backend: wrong byte at %llu",
                 (unsigned long long)d->mismatch);
    assert_in_range(took, 0, 5000);
    free(d);
    assert_alive(env, f, "after a backend died mid-response");

    /* The others serve every request, on fresh and on kept-alive connections. */
    c = it_connect(env, f->port);
    for (int i = 0; i < 12; i++) {
        it_get(env, f->port, "test", "/", &r);
        assert_int_equal(r.status, 200);
        assert_non_null(it_header(&r, "X-Backend"));
        assert_string_not_equal(it_header(&r, "X-Backend"), killed);
        it_response_free(&r);

        it_send_str(c, "GET /bytes?n=50000 HTTP/1.1\r\nHost: test\r\n\r\n");
        it_expect_response(c, "GET", &r);
        assert_int_equal(r.status, 200);
        assert_string_not_equal(it_header(&r, "X-Backend"), killed);
        assert_int_equal(r.body_len, 50000);
        assert_int_equal(it_pattern_mismatch(r.body, r.body_len), 50000);
        c = next_conn(env, c, f->port, closes(&r));
        it_response_free(&r);
    }
    stop_fulcrum(env, f);
}

/* ---- 4. a slow reader, a big upload: memory stays bounded ------------------ */

IT_TEST(slow_reader_bounded_memory)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    cfg.workers = 1;
    cfg.upstream_ms = 5000;
    cfg.idle_ms = 5000; /* longer than the reader's pause */
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    pid_t fpid = it_proc_pid(f->proc);

    /* Warm up: the free lists and buffers a transaction uses exist now. */
    struct it_response r;
    it_get(env, f->port, "test", "/bytes?n=1000000", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    long before = it_rss_kib(fpid);
    assert_true(before > 0);
    long peak = before;
    const long bound_kib = 20 * 1024;

    /* Download 64 MB: 1 MB, a 2 s pause with everything backed up, then the rest. */
    const uint64_t total = 64000000;
    struct download *d = malloc(sizeof(*d));
    assert_non_null(d);
    assert_int_equal(download_start(d, f->port, "/bytes?n=64000000"), 0);
    assert_int_equal(d->status, 200);
    assert_true(d->content_length == (long long)total);
    assert_int_equal(download_read(d, 1 << 20, 5000), 0);
    for (int i = 0; i < 10; i++) {
        it_sleep_ms(200);
        long now = it_rss_kib(fpid);
        peak = now > peak ? now : peak;
    }
    while (d->body < total) {
        uint64_t next = d->body + 4 * 1024 * 1024;
        int rc = download_read(d, next < total ? next : total, 5000);
        if (rc != 0) {
            close(d->fd);
            fail_msg("download stopped after %llu of %llu bytes: %s", (unsigned long long)d->body,
                     (unsigned long long)total, rc == 1 ? "connection closed" : strerror(-rc));
        }
        long now = it_rss_kib(fpid);
        peak = now > peak ? now : peak;
    }
    close(d->fd);
    if (d->mismatch != UINT64_MAX)
        fail_msg("download: wrong byte at %llu", (unsigned long long)d->mismatch);
    free(d);
    if (peak - before >= bound_kib)
        fail_msg("fulcrum's RSS grew by %ld KiB during a slowly read 64 MB download "
                 "(from %ld KiB): the body is being buffered",
                 peak - before, before);

    /* Upload 64 MB as fast as the backend takes it, the proxy's memory watched. */
    before = it_rss_kib(fpid);
    peak = before;
    const size_t block = 1 << 20, blocks = 64;
    char *buf = malloc(block);
    assert_non_null(buf);
    struct rng g = {UINT64_C(0x243f6a8885a308d3)};
    uint64_t fnv = IT_FNV1A64_INIT;
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, it_strf(env, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n\r\n",
                           block * blocks));
    for (size_t i = 0; i < blocks; i++) {
        rng_fill(&g, buf, block);
        fnv = it_fnv1a64_update(fnv, buf, block);
        it_send(c, buf, block);
        if (i % 4 == 3) {
            long now = it_rss_kib(fpid);
            peak = now > peak ? now : peak;
        }
    }
    free(buf);
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(
        r.body, it_strf(env, "len=%zu fnv=%016llx\n", block * blocks, (unsigned long long)fnv));
    it_response_free(&r);
    if (peak - before >= bound_kib)
        fail_msg("fulcrum's RSS grew by %ld KiB during a 64 MB upload (from %ld KiB)",
                 peak - before, before);
    stop_fulcrum(env, f);
}

/* clang-format off */
static const struct CMUnitTest tests[] = {
    IT_CASE(concurrent_mix),
    IT_CASE(rude_clients),
    IT_CASE(rude_backends),
    IT_CASE(slow_reader_bounded_memory),
};
/* clang-format on */

IT_MAIN(tests)
