/*
 * http: a backend passes when it answers `GET <path> HTTP/1.1` with a status
 * that `expect` accepts. Each probe opens a new TCP connection to the
 * backend's resolved address (no DNS at probe time), sends
 *
 *   GET <path> HTTP/1.1\r\n
 *   Host: <host>\r\n
 *   Connection: close\r\n
 *   User-Agent: fulcrum-health\r\n
 *   \r\n
 *
 * and reads until the status line is complete (or its first 256 bytes, which
 * hold the code); the headers and body are not read. Like HAProxy's
 * `option httpchk` with `http-check expect status`, only the status decides.
 *
 * Options, all read and checked at create():
 *   path    "/"          request target; must start with '/', no spaces or
 *                        control characters;
 *   host    the backend's configured address ("127.0.0.1:9001");
 *   expect  "200-399"    a code ("200"), a range ("200-399"), or a comma list
 *                        of them ("200,204,300-302"), codes 100 to 599.
 *
 * A probe fails with one of these reasons: "HTTP 503" (a status `expect`
 * rejects), "connect: connection refused" (or another connect error), "write:
 * ...", "read: ...", "invalid response" (not an HTTP/1.x status line),
 * "connection closed before the status line", or "timeout after N ms" (one
 * timer covers connect, write and read, so a backend that accepts and never
 * answers costs exactly one timeout). A passing probe reports "HTTP 200".
 *
 * The host runs at most one probe per backend at a time, so create() makes
 * one probe slot per backend, with its handles, read buffer and request text,
 * and a probe allocates nothing. A probe ends by closing its two handles (the
 * TCP handle and the timer) and calls probe_done() from the last close
 * callback: by then libuv has cancelled the pending connect and write
 * requests, so nothing of the probe is left on the loop, and the host may
 * destroy the instance right after the last probe_done(). This holds too when
 * a probe fails before probe() returns (uv_tcp_connect refusing the address):
 * probe_done() still comes later, from the loop.
 */
#include <fulcrum/plugin.h>
#include <uv.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Status codes `expect` may name. */
#define CODE_MIN 100
#define CODE_MAX 599

/* Enough for any sane status line; a longer one is judged on these bytes. */
#define STATUS_LINE_MAX 256

struct http_check;

/* One backend's probe: reused by each probe of that backend. */
struct http_slot {
    struct http_check *check;
    struct fc_probe *probe;
    int busy; /* a probe runs: from probe() to its probe_done() */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    int open_handles; /* handles whose close callback has not run yet */
    int ending;       /* the verdict is in; the handles are closing */
    int ok;
    uint32_t timeout_ms;
    char reason[80];
    char *request; /* the whole request, built at create() */
    size_t request_len;
    size_t len; /* bytes of the response in buf */
    char buf[STATUS_LINE_MAX];
};

struct http_check {
    const struct fc_host *host;
    uint32_t n_slots;
    struct http_slot *slots;               /* one per backend */
    uint64_t expect[(CODE_MAX + 64) / 64]; /* bit c set: status c passes */
};

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

static void expect_set(struct http_check *c, unsigned lo, unsigned hi)
{
    for (unsigned code = lo; code <= hi; code++)
        c->expect[code / 64] |= UINT64_C(1) << (code % 64);
}

static int expect_has(const struct http_check *c, unsigned code)
{
    return code <= CODE_MAX && (c->expect[code / 64] >> (code % 64)) & 1;
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads a three-digit status code at *p; 0 with *p advanced, or -1. */
static int parse_code(const char **p, unsigned *code)
{
    const char *s = *p;
    unsigned v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 4) {
        v = v * 10 + (unsigned)(*s - '0');
        s++;
        digits++;
    }
    if (digits != 3 || v < CODE_MIN || v > CODE_MAX)
        return -1;
    *code = v;
    *p = s;
    return 0;
}

/*
 * Parses `expect`: comma-separated items, each a code or a range "lo-hi",
 * blanks allowed around them. Returns 0, or -1 when any of it is not that.
 */
static int parse_expect(struct http_check *c, const char *text)
{
    const char *p = text;
    for (;;) {
        unsigned lo, hi;
        p = skip_blanks(p);
        if (parse_code(&p, &lo) < 0)
            return -1;
        hi = lo;
        p = skip_blanks(p);
        if (*p == '-') {
            p = skip_blanks(p + 1);
            if (parse_code(&p, &hi) < 0 || hi < lo)
                return -1;
            p = skip_blanks(p);
        }
        expect_set(c, lo, hi);
        if (*p == '\0')
            return 0;
        if (*p != ',')
            return -1;
        p++;
    }
}

/* True when s is non-empty and holds no byte that could break the request's framing. */
static int is_token_text(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s == 0x7f)
            return 0;
    return 1;
}

static int build_request(struct http_slot *slot, const char *path, const char *host)
{
    static const char fmt[] = "GET %s HTTP/1.1\r\n"
                              "Host: %s\r\n"
                              "Connection: close\r\n"
                              "User-Agent: fulcrum-health\r\n"
                              "\r\n";
    int n = snprintf(NULL, 0, fmt, path, host);
    if (n < 0)
        return FC_EINVAL;
    slot->request = malloc((size_t)n + 1);
    if (slot->request == NULL)
        return FC_ENOMEM;
    snprintf(slot->request, (size_t)n + 1, fmt, path, host);
    slot->request_len = (size_t)n;
    return 0;
}

static void http_destroy(void *state)
{
    struct http_check *c = state;
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < c->n_slots; i++)
        free(c->slots[i].request);
    free(c->slots);
    free(c);
}

static int http_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    const char *path = "/";
    const char *vhost = NULL;
    const char *expect = "200-399";
    int rc = 0;

    /* A wrong type is logged by the getter and fails create() on its own. */
    if (host->config_string(host, "path", &path) == FC_ENOMEM ||
        host->config_string(host, "host", &vhost) == FC_ENOMEM ||
        host->config_string(host, "expect", &expect) == FC_ENOMEM)
        return FC_ENOMEM;

    struct http_check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return FC_ENOMEM;
    c->host = host;

    if (path[0] != '/' || !is_token_text(path)) {
        host->config_error(host, "path",
                           "expected a path starting with '/', without spaces or control "
                           "characters (got \"%s\")",
                           path);
        rc = FC_EINVAL;
    }
    if (vhost != NULL && !is_token_text(vhost)) {
        host->config_error(host, "host",
                           "expected a host name, without spaces or control characters "
                           "(got \"%s\")",
                           vhost);
        rc = FC_EINVAL;
    }
    if (parse_expect(c, expect) < 0) {
        host->config_error(host, "expect",
                           "expected a status code (%d-%d), a range \"200-399\" or a comma "
                           "list of them such as \"200,204,300-302\" (got \"%s\")",
                           CODE_MIN, CODE_MAX, expect);
        rc = FC_EINVAL;
    }
    if (rc < 0)
        goto fail;

    c->n_slots = pool->n_backends;
    c->slots = calloc(c->n_slots > 0 ? c->n_slots : 1, sizeof(*c->slots));
    if (c->slots == NULL) {
        rc = FC_ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < c->n_slots; i++) {
        struct http_slot *slot = &c->slots[i];
        slot->check = c;
        rc = build_request(slot, path, vhost != NULL ? vhost : pool->backends[i].address);
        if (rc < 0)
            goto fail;
    }
    *state = c;
    return 0;

fail:
    http_destroy(c);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Probes                                                                    */
/* ------------------------------------------------------------------------ */

static void on_close(uv_handle_t *handle)
{
    struct http_slot *slot = handle->data;
    if (--slot->open_handles > 0)
        return;

    /* Everything of this probe is off the loop: hand the verdict over. */
    struct fc_probe *probe = slot->probe;
    const struct fc_host *host = slot->check->host;
    int ok = slot->ok;
    char reason[sizeof(slot->reason)];
    memcpy(reason, slot->reason, sizeof(reason));
    slot->probe = NULL;
    slot->busy = 0;
    /*
     * The host may destroy the instance inside this call, so the arguments
     * live on the stack and nothing of the slot is touched after it.
     */
    host->probe_done(host, probe, ok, reason);
}

/*
 * Records the verdict and closes the probe's handles; the last close callback
 * reports it. Only the first call of a probe counts: later events (a
 * cancelled connect or write) find the probe already ending.
 */
static void finish(struct http_slot *slot, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct http_slot *slot, int ok, const char *fmt, ...)
{
    if (slot->ending)
        return;
    slot->ending = 1;
    slot->ok = ok;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(slot->reason, sizeof(slot->reason), fmt, ap);
    va_end(ap);

    uv_close((uv_handle_t *)&slot->timer, on_close);
    uv_close((uv_handle_t *)&slot->tcp, on_close);
}

/*
 * Reads the status code from an HTTP/1.x status line of `len` bytes
 * ("HTTP/1.1 200 OK\r\n"). Returns the code, or -1 when it is not one.
 */
static int status_code(const char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ')
        return -1;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return -1;
        code = code * 10 + (line[i] - '0');
    }
    /* After the code: the reason phrase, or an empty one ended at once. */
    if (len > 12 && line[12] != ' ' && line[12] != '\r' && line[12] != '\n')
        return -1;
    return code < 100 ? -1 : code;
}

static void judge(struct http_slot *slot, size_t line_len)
{
    int code = status_code(slot->buf, line_len);
    if (code < 0)
        finish(slot, 0, "invalid response");
    else
        finish(slot, expect_has(slot->check, (unsigned)code), "HTTP %d", code);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct http_slot *slot = handle->data;
    *buf = uv_buf_init(slot->buf + slot->len, (unsigned)(sizeof(slot->buf) - slot->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct http_slot *slot = stream->data;

    if (nread == UV_EOF) {
        finish(slot, 0, "connection closed before the status line");
        return;
    }
    if (nread < 0) {
        finish(slot, 0, "read: %s", uv_strerror((int)nread));
        return;
    }
    size_t before = slot->len;
    slot->len += (size_t)nread;

    /* Anything but "HTTP/" at the start cannot become a status line: no need to wait. */
    size_t prefix = slot->len < 5 ? slot->len : 5;
    if (memcmp(slot->buf, "HTTP/", prefix) != 0) {
        judge(slot, slot->len);
        return;
    }
    const char *eol = memchr(slot->buf + before, '\n', slot->len - before);
    if (eol != NULL)
        judge(slot, (size_t)(eol - slot->buf) + 1);
    else if (slot->len == sizeof(slot->buf))
        judge(slot, slot->len); /* a long reason phrase: the code is in what we have */
}

static void on_write(uv_write_t *req, int status)
{
    struct http_slot *slot = req->data;
    if (status < 0)
        finish(slot, 0, "write: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    struct http_slot *slot = req->data;

    if (slot->ending) /* cancelled by finish() */
        return;
    if (status < 0) {
        finish(slot, 0, "connect: %s", uv_strerror(status));
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&slot->tcp, on_alloc, on_read);
    if (rc < 0) {
        finish(slot, 0, "read: %s", uv_strerror(rc));
        return;
    }
    /* uv_write only reads the buffer; the request text is never written to. */
    uv_buf_t buf = uv_buf_init(slot->request, (unsigned)slot->request_len);
    rc = uv_write(&slot->write, (uv_stream_t *)&slot->tcp, &buf, 1, on_write);
    if (rc < 0)
        finish(slot, 0, "write: %s", uv_strerror(rc));
}

static void on_timeout(uv_timer_t *timer)
{
    struct http_slot *slot = timer->data;
    finish(slot, 0, "timeout after %u ms", slot->timeout_ms);
}

static int http_probe(void *state, const struct fc_backend_view *backend, uint32_t timeout_ms,
                      struct fc_probe *probe)
{
    struct http_check *c = state;

    /* Asked here, not at create(): a configuration check creates instances without a loop. */
    uv_loop_t *loop = c->host->main_loop(c->host);
    if (loop == NULL || backend->index >= c->n_slots || backend->sockaddr == NULL)
        return FC_EINVAL;
    struct http_slot *slot = &c->slots[backend->index];
    if (slot->busy) {
        c->host->log(c->host, FC_LOG_ERROR, "backend %s: a probe is already in flight",
                     backend->address);
        return FC_EINVAL;
    }

    /* A failed init registers no handle: nothing to close. */
    int rc = uv_tcp_init(loop, &slot->tcp);
    if (rc < 0)
        return FC_ERROR;
    uv_timer_init(loop, &slot->timer); /* cannot fail */
    slot->busy = 1;
    slot->probe = probe;
    slot->timer.data = slot;
    slot->tcp.data = slot;
    slot->connect.data = slot;
    slot->write.data = slot;
    slot->open_handles = 2;
    slot->ending = 0;
    slot->ok = 0;
    slot->reason[0] = '\0';
    slot->timeout_ms = timeout_ms;
    slot->len = 0;

    uv_timer_start(&slot->timer, on_timeout, timeout_ms, 0);
    rc = uv_tcp_connect(&slot->connect, &slot->tcp, backend->sockaddr, on_connect);
    if (rc < 0)
        finish(slot, 0, "connect: %s", uv_strerror(rc)); /* probe_done follows from the loop */
    return 0;
}

static const struct fc_health_ops http_ops = {
    .size = sizeof(struct fc_health_ops),
    .create = http_create,
    .destroy = http_destroy,
    .probe = http_probe,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_HEALTH, .name = "http", .version = "1.0.0",
                     .description = "GET a path on a new connection and judge the status code",
                     .health = &http_ops);
