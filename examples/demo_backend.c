/*
 * demo_backend: a small HTTP/1.1 origin server for the quick start and the
 * integration tests.
 *
 * It is the "real backend" that fulcrum proxies to in every end-to-end test,
 * so it aims to be boringly correct rather than fast: requests are parsed by
 * llhttp in strict mode, keep-alive and pipelining are supported (requests on
 * one connection are answered strictly in order, one at a time: the parser is
 * paused after each complete request and resumed once its response has been
 * written), HTTP/1.0 connections close unless the client asked for
 * keep-alive, request bodies may use Content-Length or chunked encoding, and
 * HEAD gets the headers a GET would get without the body. Large bodies are
 * never held in memory: uploads are hashed as they arrive, downloads are
 * generated piece by piece from the write callback, so a slow reader holds
 * back the writer (back-pressure). Every response carries `X-Backend: NAME`
 * so that a test can tell which backend answered.
 *
 * Usage: demo_backend --name NAME --listen ADDR:PORT [--hc-file PATH] [--delay-ms N]
 *
 * --delay-ms N holds the answer to every well-formed request for N ms (a
 * timer, so the backend keeps serving other connections meanwhile): a slow
 * backend, for tests of strategies that should avoid one. Without it, or with
 * 0, answers go out at once. Malformed requests still get their 400 at once.
 *
 * ADDR is IPv4 or a bracketed IPv6 address; port 0 picks a free port. Once
 * bound, the one line "listening on ADDR:PORT" (the real port) is printed to
 * stdout. SIGTERM and SIGINT close everything and exit 0.
 *
 * Endpoints (the query string is ignored unless listed):
 *   /                   200, body "NAME\n" (also any unknown path)
 *   /hc                 200 "ok\n"; 503 if --hc-file names a file containing "fail"
 *   /bytes?n=N[&chunked=1]
 *                       N bytes, byte i = (uint8_t)(i * 131 + 7), N <= 1 GiB,
 *                       with Content-Length or in chunks of up to 16 KiB
 *   /sum                body "len=L fnv=H\n": length and FNV-1a 64 of the request body
 *   /headers            the request line and each header as received, one per line
 *   /status/CODE        that status (200..599); 204 and 304 without a body
 *   /slow?ms=N          waits N ms (timer), then 200 "NAME\n"
 *   /cached?max_age=N   200, body "NAME\n", with "Cache-Control: max-age=N" (default 60):
 *                       an answer a cache may store
 *   /close              200 with "Connection: close", then closes
 *   /nolength?n=N       N pattern bytes, no length: the body ends when the connection does
 *   /drop               closes the connection without answering
 * "Expect: 100-continue" on a request with a body gets an interim 100 first.
 * Malformed requests get 400 and the connection is closed.
 */

#define _GNU_SOURCE /* memmem */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#define READ_BUF_SIZE (64 * 1024)
#define PIECE_SIZE (64 * 1024) /* bytes of body generated per write */
#define CHUNK_SIZE (16 * 1024) /* largest chunk of a chunked download */
#define MAX_INFLIGHT 2         /* body pieces queued at once per connection */
#define MAX_URL (8 * 1024)
#define MAX_HEADERS (64 * 1024)
#define MAX_BYTES (1024ull * 1024 * 1024)
#define MAX_SLOW_MS (10 * 60 * 1000)
#define MAX_NAME 200
#define LINGER_MS 2000

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

struct conn;

/* Everything the process shares; lives in main()'s frame. */
struct server {
    uv_loop_t loop;
    const char *name; /* sent as X-Backend */
    char *name_body;  /* "NAME\n", the body of most answers */
    size_t name_body_len;
    const char *hc_file; /* NULL: always healthy */
    uint64_t delay_ms;   /* --delay-ms: every answer waits this long first */
    uv_tcp_t listener;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    llhttp_settings_t settings;
    struct conn *conns; /* every open connection, for shutdown */
};

/* A growable byte buffer with a hard limit. */
struct buf {
    char *p;
    size_t len;
    size_t cap;
};

enum conn_state {
    CONN_READING,    /* parsing requests; reading unless input is buffered */
    CONN_RESPONDING, /* one request complete; reading stopped until its response is written */
    CONN_LINGERING,  /* write side shut down; draining input until EOF or timeout */
    CONN_CLOSING,    /* uv_close() called on both handles */
};

enum route {
    ROUTE_NAME,
    ROUTE_HC,
    ROUTE_BYTES,
    ROUTE_SUM,
    ROUTE_HEADERS,
    ROUTE_STATUS,
    ROUTE_SLOW,
    ROUTE_CLOSE,
    ROUTE_NOLENGTH,
    ROUTE_DROP,
    ROUTE_CACHED,
};

/* What the current request asked for; reset when the next one begins. */
struct request {
    struct buf url;
    struct buf head; /* "Name: value\n" for each header, as received */
    size_t field_start;
    size_t value_start;
    bool in_field;
    bool expect_continue;
    bool too_large; /* the URL or headers passed their limit */
    bool complete;
    bool delayed; /* the --delay-ms wait for this request has begun (or is over) */
    bool keep_alive;
    bool is_head;
    unsigned http_major;
    unsigned http_minor;
    enum route route;
    bool bad_param; /* the route's query or path parameter is invalid */
    uint64_t n;     /* /bytes, /nolength, /slow, /status, /cached */
    bool chunked;   /* /bytes?chunked=1 */
    uint64_t body_len;
    uint64_t fnv;
};

/* The body still to be generated for the current response. */
struct response {
    uint64_t total;   /* pattern bytes in the body */
    uint64_t sent;    /* pattern bytes generated so far */
    bool active;      /* a response is being written */
    bool streaming;   /* pattern bytes remain to be generated */
    bool chunked;     /* frame the pattern as chunks */
    bool close_after; /* shut the connection down once it is written */
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* --delay-ms and /slow delays, and the lingering close */
    struct server *srv;
    struct conn *prev;
    struct conn *next;
    llhttp_t parser;
    enum conn_state state;
    bool reading;
    int handles_open;
    unsigned writes_pending;
    size_t in_off; /* unparsed input kept in rbuf while a response is written */
    size_t in_len;
    struct request req;
    struct response resp;
    char rbuf[READ_BUF_SIZE];
};

/* One queued write; freed in its callback. */
struct wreq {
    uv_write_t req;
    struct conn *conn;
    size_t len;
    char data[];
};

static void conn_close(struct conn *c);
static void conn_resume(struct conn *c);
static void conn_pump(struct conn *c);

/* ---- small helpers ---------------------------------------------------- */

static int buf_append(struct buf *b, const char *p, size_t n, size_t limit)
{
    if (b->len + n > limit)
        return -1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Out of memory is not worth recovering from in a test backend. */
static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fprintf(stderr, "demo_backend: out of memory\n");
        abort();
    }
    return p;
}

static void fill_pattern(char *dst, uint64_t start, size_t n)
{
    /* Only the low 8 bits of i matter, so 32-bit arithmetic is exact. */
    uint32_t base = (uint32_t)start;
    for (size_t j = 0; j < n; j++)
        dst[j] = (char)(uint8_t)((base + (uint32_t)j) * 131u + 7u);
}

/* Parses a decimal in [0, max]; returns -1 when s is not exactly that. */
static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

/* Finds key's value in a query string "a=1&b=2"; NULL if absent. */
static const char *query_param(const char *q, size_t qlen, const char *key, size_t *vlen)
{
    size_t klen = strlen(key);
    const char *end = q + qlen;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pend = amp ? amp : end;
        if ((size_t)(pend - q) > klen && memcmp(q, key, klen) == 0 && q[klen] == '=') {
            *vlen = (size_t)(pend - q) - klen - 1;
            return q + klen + 1;
        }
        q = amp ? amp + 1 : end;
    }
    return NULL;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

/* The health file is tiny and local, so a blocking read is acceptable here. */
static bool hc_failing(const struct server *srv)
{
    char data[4096];
    if (srv->hc_file == NULL)
        return false;
    int fd = open(srv->hc_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, data, sizeof(data));
    close(fd);
    return n > 0 && memmem(data, (size_t)n, "fail", 4) != NULL;
}

/* ---- writing ---------------------------------------------------------- */

static struct wreq *wreq_new(struct conn *c, size_t cap)
{
    struct wreq *w = xmalloc(sizeof(*w) + cap);
    w->conn = c;
    w->len = 0;
    return w;
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->conn;
    free(w);
    c->writes_pending--;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->resp.active)
        conn_pump(c);
}

/* Queues w (taking ownership); on failure the connection is closed. */
static void conn_send(struct conn *c, struct wreq *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->writes_pending++;
}

/*
 * Formats a response head into dst. content_length < 0 means no
 * Content-Length header (204, 304, chunked or close-delimited bodies).
 */
static size_t format_head(struct conn *c, char *dst, size_t cap, int status, const char *ctype,
                          int64_t content_length, bool chunked)
{
    const struct request *r = &c->req;
    int n = snprintf(dst, cap, "HTTP/1.1 %d %s\r\nX-Backend: %s\r\n", status, reason_phrase(status),
                     c->srv->name);
    if (ctype != NULL)
        n += snprintf(dst + n, cap - (size_t)n, "Content-Type: %s\r\n", ctype);
    if (content_length >= 0)
        n += snprintf(dst + n, cap - (size_t)n, "Content-Length: %" PRId64 "\r\n", content_length);
    if (chunked)
        n += snprintf(dst + n, cap - (size_t)n, "Transfer-Encoding: chunked\r\n");
    if (r->route == ROUTE_CACHED && status == 200)
        n += snprintf(dst + n, cap - (size_t)n, "Cache-Control: max-age=%" PRIu64 "\r\n", r->n);
    if (c->resp.close_after)
        n += snprintf(dst + n, cap - (size_t)n, "Connection: close\r\n");
    else if (r->http_major == 1 && r->http_minor == 0)
        n += snprintf(dst + n, cap - (size_t)n, "Connection: keep-alive\r\n");
    n += snprintf(dst + n, cap - (size_t)n, "\r\n");
    return (size_t)n;
}

#define HEAD_CAP (512 + MAX_NAME)

static void response_start(struct conn *c, bool close_after)
{
    c->resp.active = true;
    c->resp.streaming = false;
    c->resp.close_after = close_after || !c->req.keep_alive;
}

/* A complete response with a small in-memory body. */
static void respond(struct conn *c, int status, const char *body, size_t body_len, bool close_after)
{
    bool bodyless = status == 204 || status == 304;
    response_start(c, close_after);
    struct wreq *w = wreq_new(c, HEAD_CAP + body_len);
    w->len = format_head(c, w->data, HEAD_CAP, status, bodyless ? NULL : "text/plain",
                         bodyless ? -1 : (int64_t)body_len, false);
    if (!bodyless && !c->req.is_head) {
        memcpy(w->data + w->len, body, body_len);
        w->len += body_len;
    }
    conn_send(c, w);
    if (c->state != CONN_CLOSING)
        conn_pump(c);
}

static void respond_str(struct conn *c, int status, const char *body)
{
    respond(c, status, body, strlen(body), false);
}

/*
 * A response whose body is n pattern bytes, streamed by conn_pump():
 * with Content-Length, chunked, or (close_delimited) ended by closing.
 */
static void respond_pattern(struct conn *c, uint64_t n, bool chunked, bool close_delimited)
{
    response_start(c, close_delimited);
    struct response *p = &c->resp;
    p->total = n;
    p->sent = 0;
    p->chunked = chunked;
    p->streaming = !c->req.is_head;
    struct wreq *w = wreq_new(c, HEAD_CAP);
    w->len = format_head(c, w->data, HEAD_CAP, 200, "application/octet-stream",
                         chunked || close_delimited ? -1 : (int64_t)n, chunked);
    conn_send(c, w);
    if (c->state != CONN_CLOSING)
        conn_pump(c);
}

/* Generates the next piece of a pattern body into a new write. */
static struct wreq *next_piece(struct conn *c)
{
    struct response *p = &c->resp;
    if (!p->chunked) {
        uint64_t left = p->total - p->sent;
        size_t n = left < PIECE_SIZE ? (size_t)left : PIECE_SIZE;
        struct wreq *w = wreq_new(c, n);
        fill_pattern(w->data, p->sent, n);
        w->len = n;
        p->sent += n;
        p->streaming = p->sent < p->total;
        return w;
    }
    /* Up to PIECE_SIZE / CHUNK_SIZE chunks, each "hex\r\n" data "\r\n", then maybe the last. */
    enum { FRAME = 16 };
    struct wreq *w = wreq_new(c, PIECE_SIZE + (PIECE_SIZE / CHUNK_SIZE + 1) * FRAME);
    for (int i = 0; i < PIECE_SIZE / CHUNK_SIZE && p->sent < p->total; i++) {
        uint64_t left = p->total - p->sent;
        size_t n = left < CHUNK_SIZE ? (size_t)left : CHUNK_SIZE;
        w->len += (size_t)sprintf(w->data + w->len, "%zx\r\n", n);
        fill_pattern(w->data + w->len, p->sent, n);
        w->len += n;
        memcpy(w->data + w->len, "\r\n", 2);
        w->len += 2;
        p->sent += n;
    }
    if (p->sent == p->total) {
        memcpy(w->data + w->len, "0\r\n\r\n", 5);
        w->len += 5;
        p->streaming = false;
    }
    return w;
}

static void on_shutdown(uv_shutdown_t *req, int status);

/* Called whenever a write completes: generate more, or finish the response. */
static void conn_pump(struct conn *c)
{
    struct response *p = &c->resp;
    while (p->streaming && c->writes_pending < MAX_INFLIGHT) {
        conn_send(c, next_piece(c));
        if (c->state == CONN_CLOSING)
            return;
    }
    if (p->streaming || c->writes_pending > 0)
        return;
    p->active = false;
    if (p->close_after) {
        /*
         * Send FIN after the response, then drain what the client still sends:
         * closing with unread input would make the kernel send RST, which can
         * destroy response bytes the client has not read yet.
         */
        uv_shutdown_t *req = xmalloc(sizeof(*req));
        req->data = c;
        c->state = CONN_LINGERING;
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
            free(req);
            conn_close(c);
        }
        return;
    }
    conn_resume(c);
}

/* ---- connection lifetime ------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    buf_free(&c->req.url);
    buf_free(&c->req.head);
    free(c);
}

/* Closes both handles; c is freed once both close callbacks have run. */
static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;
    /* Reading only runs while no unparsed input is kept, so rbuf is free. */
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void conn_feed(struct conn *c);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0 || c->state == CONN_LINGERING) {
        if (nread < 0)
            conn_close(c);
        return;
    }
    c->in_off = 0;
    c->in_len = (size_t)nread;
    conn_feed(c);
}

static void set_reading(struct conn *c, bool on)
{
    if (on == c->reading)
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = on;
}

static void on_linger_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    free(req);
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->in_len = 0;
    set_reading(c, true);
    if (c->state != CONN_CLOSING)
        uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
}

/* The current response is written: parse what is buffered, then read on. */
static void conn_resume(struct conn *c)
{
    c->state = CONN_READING;
    c->req.complete = false;
    llhttp_resume(&c->parser);
    if (c->in_len > 0)
        conn_feed(c);
    if (c->state == CONN_READING)
        set_reading(c, true);
}

/* ---- requests ----------------------------------------------------------- */

static void dispatch(struct conn *c);

/*
 * Parses c->rbuf[in_off, in_off + in_len). A complete request pauses the
 * parser; the rest of the input stays in rbuf until its response is written.
 */
static void conn_feed(struct conn *c)
{
    const char *data = c->rbuf + c->in_off;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, c->in_len);
    if (err == HPE_OK) {
        c->in_off = c->in_len = 0;
        return;
    }
    if (c->state == CONN_CLOSING)
        return;
    set_reading(c, false);
    c->state = CONN_RESPONDING;
    if ((err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) && c->req.complete) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        c->in_off += used;
        c->in_len -= used;
        dispatch(c);
        return;
    }
    c->in_len = 0;
    c->req.keep_alive = false;
    if (c->req.too_large)
        respond(c, 431, "request too large\n", 18, true);
    else
        respond(c, 400, "bad request\n", 12, true);
}

static void on_slow_done(uv_timer_t *t)
{
    struct conn *c = t->data;
    respond(c, 200, c->srv->name_body, c->srv->name_body_len, false);
}

static void on_delay_done(uv_timer_t *t)
{
    dispatch(t->data);
}

static void respond_headers(struct conn *c)
{
    struct request *r = &c->req;
    const char *method = llhttp_method_name(llhttp_get_method(&c->parser));
    struct buf b = {0};
    char ver[32];
    int vn = snprintf(ver, sizeof(ver), " HTTP/%u.%u\n", r->http_major, r->http_minor);
    if (buf_append(&b, method, strlen(method), SIZE_MAX) < 0 ||
        buf_append(&b, " ", 1, SIZE_MAX) < 0 ||
        buf_append(&b, r->url.p ? r->url.p : "", r->url.len, SIZE_MAX) < 0 ||
        buf_append(&b, ver, (size_t)vn, SIZE_MAX) < 0 ||
        buf_append(&b, r->head.p ? r->head.p : "", r->head.len, SIZE_MAX) < 0) {
        buf_free(&b);
        respond_str(c, 500, "out of memory\n");
        return;
    }
    respond(c, 200, b.p, b.len, false);
    buf_free(&b);
}

/* Answers the complete request in c->req. */
static void dispatch(struct conn *c)
{
    struct request *r = &c->req;
    struct server *srv = c->srv;
    char body[64];
    int n;

    if (srv->delay_ms > 0 && !r->delayed) {
        /* The connection is not reading meanwhile; conn_close() stops the timer. */
        r->delayed = true;
        uv_timer_start(&c->timer, on_delay_done, srv->delay_ms, 0);
        return;
    }
    if (r->bad_param) {
        respond_str(c, 400, "bad parameter\n");
        return;
    }
    switch (r->route) {
    case ROUTE_NAME:
        respond(c, 200, srv->name_body, srv->name_body_len, false);
        break;
    case ROUTE_HC:
        if (hc_failing(srv))
            respond_str(c, 503, "fail\n");
        else
            respond_str(c, 200, "ok\n");
        break;
    case ROUTE_BYTES:
        respond_pattern(c, r->n, r->chunked && r->http_minor >= 1, false);
        break;
    case ROUTE_SUM:
        n = snprintf(body, sizeof(body), "len=%" PRIu64 " fnv=%016" PRIx64 "\n", r->body_len,
                     r->fnv);
        respond(c, 200, body, (size_t)n, false);
        break;
    case ROUTE_HEADERS:
        respond_headers(c);
        break;
    case ROUTE_STATUS:
        n = snprintf(body, sizeof(body), "%d\n", (int)r->n);
        respond(c, (int)r->n, body, (size_t)n, false);
        break;
    case ROUTE_SLOW:
        uv_timer_start(&c->timer, on_slow_done, r->n, 0);
        break;
    case ROUTE_CLOSE:
        respond(c, 200, srv->name_body, srv->name_body_len, true);
        break;
    case ROUTE_CACHED:
        respond(c, 200, srv->name_body, srv->name_body_len, false);
        break;
    case ROUTE_NOLENGTH:
        respond_pattern(c, r->n, false, true);
        break;
    case ROUTE_DROP:
        conn_close(c);
        break;
    }
}

/* Picks the route and its parameters from the URL. */
static void route_request(struct request *r)
{
    const char *url = r->url.p ? r->url.p : "";
    size_t len = r->url.len;
    /* Absolute form (http://host/path): skip to the path. */
    if (len > 7 && strncasecmp(url, "http://", 7) == 0) {
        const char *slash = memchr(url + 7, '/', len - 7);
        size_t skip = slash ? (size_t)(slash - url) : len;
        url += skip;
        len -= skip;
    }
    const char *qmark = memchr(url, '?', len);
    size_t plen = qmark ? (size_t)(qmark - url) : len;
    const char *q = qmark ? qmark + 1 : "";
    size_t qlen = qmark ? len - plen - 1 : 0;
    const char *v;
    size_t vlen = 0;

#define PATH_IS(s) (plen == sizeof(s) - 1 && memcmp(url, s, plen) == 0)
    r->route = ROUTE_NAME;
    if (PATH_IS("/hc")) {
        r->route = ROUTE_HC;
    } else if (PATH_IS("/bytes") || PATH_IS("/nolength")) {
        r->route = PATH_IS("/bytes") ? ROUTE_BYTES : ROUTE_NOLENGTH;
        v = query_param(q, qlen, "n", &vlen);
        r->bad_param = v == NULL || parse_u64(v, vlen, MAX_BYTES, &r->n) < 0;
        v = query_param(q, qlen, "chunked", &vlen);
        r->chunked = v != NULL && vlen == 1 && v[0] == '1';
    } else if (PATH_IS("/sum")) {
        r->route = ROUTE_SUM;
    } else if (PATH_IS("/headers")) {
        r->route = ROUTE_HEADERS;
    } else if (plen > 8 && memcmp(url, "/status/", 8) == 0) {
        r->route = ROUTE_STATUS;
        r->bad_param = parse_u64(url + 8, plen - 8, 599, &r->n) < 0 || r->n < 200;
    } else if (PATH_IS("/slow")) {
        r->route = ROUTE_SLOW;
        v = query_param(q, qlen, "ms", &vlen);
        r->bad_param = v == NULL || parse_u64(v, vlen, MAX_SLOW_MS, &r->n) < 0;
    } else if (PATH_IS("/close")) {
        r->route = ROUTE_CLOSE;
    } else if (PATH_IS("/drop")) {
        r->route = ROUTE_DROP;
    } else if (PATH_IS("/cached")) {
        r->route = ROUTE_CACHED;
        v = query_param(q, qlen, "max_age", &vlen);
        r->n = 60;
        r->bad_param = v != NULL && parse_u64(v, vlen, 31536000, &r->n) < 0;
    }
#undef PATH_IS
}

/* ---- llhttp callbacks ----------------------------------------------------- */

static int on_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    struct request *r = &c->req;
    struct buf url = r->url, head = r->head;
    /* Keep the buffers' memory for the next request on this connection. */
    url.len = head.len = 0;
    memset(r, 0, sizeof(*r));
    r->url = url;
    r->head = head;
    r->fnv = FNV_OFFSET;
    return 0;
}

static int too_large(llhttp_t *p)
{
    struct conn *c = p->data;
    c->req.too_large = true;
    llhttp_set_error_reason(p, "request too large");
    return HPE_USER;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    return buf_append(&c->req.url, at, len, MAX_URL) < 0 ? too_large(p) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct request *r = &((struct conn *)p->data)->req;
    if (!r->in_field) {
        r->in_field = true;
        r->field_start = r->head.len;
    }
    return buf_append(&r->head, at, len, MAX_HEADERS) < 0 ? too_large(p) : 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct request *r = &((struct conn *)p->data)->req;
    r->in_field = false;
    if (buf_append(&r->head, ": ", 2, MAX_HEADERS) < 0)
        return too_large(p);
    r->value_start = r->head.len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct request *r = &((struct conn *)p->data)->req;
    return buf_append(&r->head, at, len, MAX_HEADERS) < 0 ? too_large(p) : 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct request *r = &((struct conn *)p->data)->req;
    const char *field = r->head.p + r->field_start;
    size_t flen = r->value_start - 2 - r->field_start;
    const char *value = r->head.p + r->value_start;
    size_t vlen = r->head.len - r->value_start;
    if (flen == 6 && strncasecmp(field, "expect", 6) == 0 && vlen == 12 &&
        strncasecmp(value, "100-continue", 12) == 0)
        r->expect_continue = true;
    return buf_append(&r->head, "\n", 1, MAX_HEADERS) < 0 ? too_large(p) : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct request *r = &c->req;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->is_head = llhttp_get_method(p) == HTTP_HEAD;
    route_request(r);
    bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    if (r->expect_continue && has_body && (p->http_major > 1 || p->http_minor >= 1)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct wreq *w = wreq_new(c, sizeof(cont) - 1);
        memcpy(w->data, cont, sizeof(cont) - 1);
        w->len = sizeof(cont) - 1;
        conn_send(c, w);
        if (c->state == CONN_CLOSING)
            return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct request *r = &((struct conn *)p->data)->req;
    r->body_len += len;
    if (r->route == ROUTE_SUM) {
        uint64_t h = r->fnv;
        for (size_t i = 0; i < len; i++) {
            h ^= (uint8_t)at[i];
            h *= FNV_PRIME;
        }
        r->fnv = h;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->req.complete = true;
    /* After CONNECT or Upgrade the bytes that follow are not HTTP: close after answering. */
    c->req.keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
    return HPE_PAUSED;
}

/* ---- server ----------------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *srv = listener->data;
    if (status < 0)
        return;
    struct conn *c = xmalloc(sizeof(*c));
    memset(c, 0, offsetof(struct conn, rbuf));
    c->srv = srv;
    uv_tcp_init(&srv->loop, &c->tcp);
    uv_timer_init(&srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->state = CONN_READING;
    c->next = srv->conns;
    if (c->next)
        c->next->prev = c;
    srv->conns = c;
    llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
    c->parser.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    set_reading(c, true);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct server *srv = s->data;
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    while (srv->conns != NULL)
        conn_close(srv->conns);
}

/* Parses "1.2.3.4:80" or "[::1]:80". */
static int parse_listen(const char *s, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon;
    uint64_t port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
        if (parse_u64(colon + 1, strlen(colon + 1), 65535, &port) < 0)
            return -1;
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) < 0 ? -1 : 0;
    }
    colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (parse_u64(colon + 1, strlen(colon + 1), 65535, &port) < 0)
        return -1;
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) < 0 ? -1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: demo_backend --name NAME --listen ADDR:PORT [--hc-file PATH] "
               "[--delay-ms N]\n"
               "  ADDR is IPv4 or [IPv6]; port 0 picks a free port.\n"
               "  --delay-ms N delays every answer by N ms.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},    {"listen", required_argument, NULL, 'l'},
        {"hc-file", required_argument, NULL, 'H'}, {"delay-ms", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    struct server srv;
    const char *listen_addr = NULL;
    struct sockaddr_storage ss;
    int opt, rc;

    memset(&srv, 0, sizeof(srv));
    while ((opt = getopt_long(argc, argv, "n:l:H:d:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            srv.name = optarg;
            break;
        case 'l':
            listen_addr = optarg;
            break;
        case 'H':
            srv.hc_file = optarg;
            break;
        case 'd':
            if (parse_u64(optarg, strlen(optarg), MAX_SLOW_MS, &srv.delay_ms) < 0) {
                fprintf(stderr, "demo_backend: --delay-ms %s: expected 0 to %d\n", optarg,
                        MAX_SLOW_MS);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (srv.name == NULL || listen_addr == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    size_t name_len = strlen(srv.name);
    for (size_t i = 0; i < name_len; i++) {
        if ((unsigned char)srv.name[i] < 0x21 || (unsigned char)srv.name[i] > 0x7e) {
            fprintf(stderr, "demo_backend: --name must be printable ASCII without spaces\n");
            return 2;
        }
    }
    if (name_len == 0 || name_len > MAX_NAME) {
        fprintf(stderr, "demo_backend: --name must have 1 to %d characters\n", MAX_NAME);
        return 2;
    }
    if (parse_listen(listen_addr, &ss) < 0) {
        fprintf(stderr, "demo_backend: --listen %s: expected ADDR:PORT or [ADDR]:PORT\n",
                listen_addr);
        return 2;
    }
    srv.name_body_len = name_len + 1;
    srv.name_body = xmalloc(srv.name_body_len + 1);
    memcpy(srv.name_body, srv.name, name_len);
    memcpy(srv.name_body + name_len, "\n", 2);

    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&srv.loop);
    llhttp_settings_init(&srv.settings);
    srv.settings.on_message_begin = on_message_begin;
    srv.settings.on_url = on_url;
    srv.settings.on_header_field = on_header_field;
    srv.settings.on_header_field_complete = on_header_field_complete;
    srv.settings.on_header_value = on_header_value;
    srv.settings.on_header_value_complete = on_header_value_complete;
    srv.settings.on_headers_complete = on_headers_complete;
    srv.settings.on_body = on_body;
    srv.settings.on_message_complete = on_message_complete;

    uv_tcp_init(&srv.loop, &srv.listener);
    srv.listener.data = &srv;
    if ((rc = uv_tcp_bind(&srv.listener, (struct sockaddr *)&ss, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&srv.listener, 511, on_connection)) < 0) {
        fprintf(stderr, "demo_backend: listen on %s: %s\n", listen_addr, uv_strerror(rc));
        return 1;
    }

    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    char host[INET6_ADDRSTRLEN];
    uv_tcp_getsockname(&srv.listener, (struct sockaddr *)&bound, &blen);
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&bound;
        uv_ip6_name(a6, host, sizeof(host));
        printf("listening on [%s]:%u\n", host, ntohs(a6->sin6_port));
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&bound;
        uv_ip4_name(a4, host, sizeof(host));
        printf("listening on %s:%u\n", host, ntohs(a4->sin_port));
    }
    fflush(stdout);

    uv_signal_init(&srv.loop, &srv.sigterm);
    uv_signal_init(&srv.loop, &srv.sigint);
    srv.sigterm.data = &srv;
    srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);

    uv_run(&srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv.loop);
    free(srv.name_body);
    return 0;
}
