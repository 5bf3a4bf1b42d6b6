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
 * deadline covers connect, write and read, so a backend that accepts and
 * never answers costs exactly one timeout). A passing probe reports "HTTP 200".
 *
 * The core's probe service (fc_host.probe_connect(), ABI 1.1) does the I/O:
 * it connects, writes the request, keeps the deadline, words the connect,
 * write, read and timeout failures, refuses a second probe of a backend while
 * one runs, and closes the connection before it reports. What is left here is
 * what makes this checker `http`: the request text, built once per backend at
 * create(), and http_judge(), which reads the status line out of the bytes
 * received so far. Neither changes after create(), so the plugin allocates
 * nothing per probe and needs to know nothing of when a probe ends.
 */
#include <fulcrum/plugin.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Status codes `expect` may name. */
#define CODE_MIN 100
#define CODE_MAX 599

/* Enough for any sane status line; a longer one is judged on these bytes. */
#define STATUS_LINE_MAX 256

/* The request of one backend, built at create(); the probe service copies it. */
struct http_request {
    char *text;
    size_t len;
};

struct http_check {
    const struct fc_host *host;
    uint32_t n_backends;
    struct http_request *requests;         /* one per backend */
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

static int build_request(struct http_request *req, const char *path, const char *host)
{
    static const char fmt[] = "GET %s HTTP/1.1\r\n"
                              "Host: %s\r\n"
                              "Connection: close\r\n"
                              "User-Agent: fulcrum-health\r\n"
                              "\r\n";
    int n = snprintf(NULL, 0, fmt, path, host);
    if (n < 0)
        return FC_EINVAL;
    req->text = malloc((size_t)n + 1);
    if (req->text == NULL)
        return FC_ENOMEM;
    snprintf(req->text, (size_t)n + 1, fmt, path, host);
    req->len = (size_t)n;
    return 0;
}

static void http_destroy(void *state)
{
    struct http_check *c = state;
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < c->n_backends; i++)
        free(c->requests[i].text);
    free(c->requests);
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

    c->requests = calloc(pool->n_backends > 0 ? pool->n_backends : 1, sizeof(*c->requests));
    if (c->requests == NULL) {
        rc = FC_ENOMEM;
        goto fail;
    }
    c->n_backends = pool->n_backends;
    for (uint32_t i = 0; i < c->n_backends; i++) {
        const char *name = vhost != NULL ? vhost : pool->backends[i].address;
        rc = build_request(&c->requests[i], path, name);
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

/*
 * The probe service's on_data(): judges the status line once the `len`
 * bytes received so far hold one, or can no longer become one.
 */
static int http_judge(void *arg, const char *data, size_t len, int eof, char *reason,
                      size_t reason_len)
{
    const struct http_check *c = arg;

    /* The service hands every byte with eof = 0 first: at eof the line is incomplete. */
    if (eof) {
        snprintf(reason, reason_len, "connection closed before the status line");
        return FC_PROBE_FAIL;
    }
    /*
     * Judged up to the end of the line, or on all there is when that cannot
     * become a status line (anything but "HTTP/" at the start: no need to
     * wait) or fills the buffer (a long reason phrase: the code is in it).
     */
    size_t line_len = len;
    if (memcmp(data, "HTTP/", len < 5 ? len : 5) == 0) {
        const char *eol = memchr(data, '\n', len);
        if (eol != NULL)
            line_len = (size_t)(eol - data) + 1;
        else if (len < STATUS_LINE_MAX)
            return FC_PROBE_MORE;
    }
    int code = status_code(data, line_len);
    if (code < 0) {
        snprintf(reason, reason_len, "invalid response");
        return FC_PROBE_FAIL;
    }
    snprintf(reason, reason_len, "HTTP %d", code);
    return expect_has(c, (unsigned)code) ? FC_PROBE_PASS : FC_PROBE_FAIL;
}

static int http_probe(void *state, const struct fc_backend_view *backend, uint32_t timeout_ms,
                      struct fc_probe *probe)
{
    struct http_check *c = state;
    if (backend->index >= c->n_backends)
        return FC_EINVAL;
    const struct http_request *req = &c->requests[backend->index];
    const struct fc_probe_args args = {
        .size = sizeof(args),
        .backend = backend,
        .timeout_ms = timeout_ms,
        .send = req->text,
        .send_len = req->len,
        .recv_max = STATUS_LINE_MAX,
        .on_data = http_judge,
        .arg = c,
    };
    return c->host->probe_connect(c->host, probe, &args);
}

static const struct fc_health_ops http_ops = {
    .size = sizeof(struct fc_health_ops),
    .create = http_create,
    .destroy = http_destroy,
    .probe = http_probe,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_HEALTH, .name = "http", .version = "1.1.0",
                     .description = "GET a path on a new connection and judge the status code",
                     .health = &http_ops);
