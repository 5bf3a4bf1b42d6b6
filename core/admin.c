/*
 * The admin listener; see admin.h.
 *
 * A connection serves one request at a time. What arrives is read into the
 * connection's input buffer and parsed in place by llhttp (strict), whose
 * callbacks copy the few things a request needs (the target, the
 * Authorization and Expect values, the body) out of it. The parser pauses at
 * the end of each head, where the head's size and the announced body are
 * checked, and at the end of each request, where reading stops until the
 * response has been written: a pipelined request waits in the buffer, or in
 * the kernel, so answers go out in order and a connection holds at most one
 * buffer of input and one response.
 *
 * Bounds, so that no client holds more than a little of the main thread: a
 * head of FC_ADMIN_MAX_HEAD bytes (else 431), a body of FC_ADMIN_MAX_BODY
 * (else 413), REQUEST_MS from a request's first byte to its end (else 408),
 * IDLE_MS for a keep-alive connection without a request or a response that
 * the client does not take, MAX_CONNS connections (more are closed at once),
 * FC_ADMIN_MAX_STREAMS event streams (more get 503), and
 * FC_ADMIN_STREAM_BUFFER bytes queued on a stream (more close it). A response
 * that ends the connection (400, 408, 413, 431) is followed by a lingering
 * close, so that the client reads it before any reset.
 *
 * Memory: a connection is freed in the close callback of its last handle,
 * after libuv has called back every write it still had; a listening socket
 * in its close callback; struct fc_admin after fc_admin_destroy(), once the
 * last of those has gone.
 */
#include "admin.h"

#include "config.h"
#include "errors.h"
#include "listener.h"
#include "log.h"

#include <errno.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 64
#define IDLE_MS 30000
#define REQUEST_MS 10000
#define LINGER_MS 2000
#define BACKLOG 64
/* One read's worth of input; the parser consumes it all before the next read. */
#define IN_CAP 16384
/* Methods and paths quoted in error messages are cut to this many bytes. */
#define QUOTE_MAX 256

static const char json_type[] = "application/json";

/* ------------------------------------------------------------------------ */
/* Types                                                                     */
/* ------------------------------------------------------------------------ */

struct route {
    char *method;
    char *path;
    size_t path_len;
    unsigned flags;
    fc_admin_handler fn;       /* a plain route */
    fc_admin_stream_open open; /* a stream route */
    fc_admin_stream_closed closed;
    void *arg;
};

union handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
};

/* A listening socket: TCP or unix. */
struct server {
    union handle h;
    struct fc_admin *a; /* NULL for a socket that failed to start */
    char *address;      /* as configured, for logs */
    struct sockaddr_storage addr;
    socklen_t addr_len; /* 0: a unix socket */
    char *unix_path;    /* removed when the socket closes */
};

/* A connection over the limit, or one that no memory could be found for: accepted to be closed. */
struct reject {
    union handle h;
};

enum conn_state {
    CONN_READING,   /* waiting for a request, or for the rest of one */
    CONN_WRITING,   /* a response is being written; nothing is read */
    CONN_STREAMING, /* an event stream; what arrives is thrown away */
    CONN_LINGERING, /* answered and shut down: input is thrown away until the close */
    CONN_CLOSING,
};

/* Bytes of a stream waiting for the socket. */
struct swrite {
    uv_write_t req;
    struct fc_admin_stream *s;
    struct swrite *next; /* while the stream opens: the sends made meanwhile, in order */
    size_t len;
    char data[];
};

struct fc_admin_stream {
    struct conn *c;
    fc_admin_stream_closed closed;
    void *arg;
    size_t queued; /* bytes in swrites not called back yet */
    unsigned opening : 1, kept : 1, closing : 1;
    unsigned needs_token : 1;               /* not FC_ADMIN_PUBLIC: a new token closes it */
    struct swrite *pending, **pending_tail; /* while opening */
};

struct conn {
    union handle h;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct fc_admin *a;
    struct conn *prev, *next;
    enum conn_state state;
    int handles; /* not closed yet: freed at 0 */
    unsigned reading : 1, in_request : 1, head_done : 1, head_checked : 1, msg_done : 1;
    unsigned in_auth : 1, in_expect : 1, has_auth : 1, expect_continue : 1, close_after : 1;
    unsigned resumed : 1; /* the parser resumed after a head: it runs once more, input or not */
    int err_status; /* what a parser callback refused the request with; 0: 400 */
    llhttp_t parser;
    size_t in_len;     /* bytes in `in`; the parser takes them all before the next read */
    size_t in_off;     /* how far the parser has come in `in` */
    size_t head_bytes; /* of the current request's head so far */
    /* The target, then the Authorization value, copied out of the input. */
    size_t scratch_len, url_len, auth_off, auth_len;
    char field[16]; /* the header name being parsed (only short ones matter) */
    size_t field_len;
    char expect[16];
    size_t expect_len;
    char *body;
    size_t body_len, body_cap;
    char *out; /* the response being written */
    struct fc_admin_stream *stream;
    char scratch[FC_ADMIN_MAX_HEAD];
    char in[IN_CAP];
};

struct fc_admin {
    uv_loop_t *loop;
    struct server *server; /* NULL: not listening */
    char *token;           /* NULL: none required */
    size_t token_len;
    struct route *routes;
    size_t n_routes;
    struct conn *conns;
    unsigned n_conns;
    unsigned n_streams;
    unsigned live; /* servers and connections not freed yet */
    int destroyed;
};

static llhttp_settings_t settings;

static void close_conn(struct conn *c);
static void process(struct conn *c);

static void maybe_free(struct fc_admin *a)
{
    if (a->destroyed && a->live == 0)
        free(a);
}

static void free_token(char *token)
{
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
}

/* ------------------------------------------------------------------------ */
/* Response bodies                                                           */
/* ------------------------------------------------------------------------ */

static int body_reserve(struct fc_admin_response *r, size_t more)
{
    if (r->oom)
        return -1;
    if (r->len + more <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : 256;
    while (cap < r->len + more)
        cap *= 2;
    char *p = realloc(r->body, cap);
    if (p == NULL) {
        r->oom = 1;
        return -1;
    }
    r->body = p;
    r->cap = cap;
    return 0;
}

void fc_admin_body_append(struct fc_admin_response *r, const char *data, size_t len)
{
    if (len == 0 || body_reserve(r, len) != 0)
        return;
    memcpy(r->body + r->len, data, len);
    r->len += len;
}

void fc_admin_body_printf(struct fc_admin_response *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0 || body_reserve(r, (size_t)n + 1) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(r->body + r->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->len += (size_t)n;
}

/* The length of the valid UTF-8 sequence of two to four bytes at p, or 0. */
static size_t utf8_sequence(const unsigned char *p)
{
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n;
    uint32_t cp;
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* the terminating NUL stops here too */
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/*
 * s as a JSON string, quotes included: '"', '\\' and control characters
 * escaped, valid UTF-8 kept, and any other byte (a message may quote a
 * client's path) replaced by U+FFFD, so that the document stays valid JSON.
 */
static void json_string(struct fc_admin_response *r, const char *s)
{
    fc_admin_body_append(r, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t n = *p >= 0x80 ? utf8_sequence(p) : 0;
        if (n > 0) {
            fc_admin_body_append(r, (const char *)p, n);
            p += n;
            continue;
        }
        unsigned char ch = *p++;
        if (ch == '"')
            fc_admin_body_append(r, "\\\"", 2);
        else if (ch == '\\')
            fc_admin_body_append(r, "\\\\", 2);
        else if (ch == '\n')
            fc_admin_body_append(r, "\\n", 2);
        else if (ch == '\r')
            fc_admin_body_append(r, "\\r", 2);
        else if (ch == '\t')
            fc_admin_body_append(r, "\\t", 2);
        else if (ch < 0x20 || ch == 0x7f)
            fc_admin_body_printf(r, "\\u%04x", ch);
        else if (ch >= 0x80)
            fc_admin_body_append(r, "\\ufffd", 6);
        else
            fc_admin_body_append(r, (const char *)&ch, 1);
    }
    fc_admin_body_append(r, "\"", 1);
}

void fc_admin_error(struct fc_admin_response *r, int status, const char *message)
{
    r->status = status;
    r->content_type = json_type;
    r->len = 0;
    fc_admin_body_append(r, "{\"error\": ", 10);
    json_string(r, message);
    fc_admin_body_append(r, "}\n", 2);
}

/* ------------------------------------------------------------------------ */
/* Writing responses                                                         */
/* ------------------------------------------------------------------------ */

static void timer_arm(struct conn *c, uint64_t ms);

static void read_stop(struct conn *c)
{
    if (c->reading)
        uv_read_stop(&c->h.stream);
    c->reading = 0;
}

static void on_shutdown(uv_shutdown_t *req, int status);
static void read_start(struct conn *c);

/*
 * Closing a socket with unread input makes the kernel answer with a reset,
 * which can destroy the response before the client has read it (the rest of
 * a refused body, a pipelined request). So our side is shut down first and
 * what the client still sends is thrown away, for LINGER_MS at most.
 */
static void linger(struct conn *c)
{
    read_stop(c);
    c->state = CONN_LINGERING;
    timer_arm(c, LINGER_MS);
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, &c->h.stream, on_shutdown) != 0)
        close_conn(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        close_conn(c);
        return;
    }
    read_start(c);
}

/* A request answered: the connection reads the next one (which may wait in the buffer). */
static void request_done(struct conn *c)
{
    free(c->body);
    c->body = NULL;
    c->body_len = c->body_cap = 0;
    c->head_bytes = 0;
    c->in_request = 0;
    c->head_checked = c->head_done = c->msg_done = 0;
    enum llhttp_errno e = llhttp_get_errno(&c->parser);
    if (e == HPE_PAUSED)
        llhttp_resume(&c->parser);
    else if (e == HPE_PAUSED_UPGRADE) /* not reached: an upgrade closes the connection */
        llhttp_resume_after_upgrade(&c->parser);
    c->state = CONN_READING;
    timer_arm(c, IDLE_MS);
    process(c);
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    free(c->out);
    c->out = NULL;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0)
        close_conn(c);
    else if (c->close_after)
        linger(c);
    else
        request_done(c);
}

/*
 * Writes r (whose body is freed here) as the response to the current
 * request, with `extra` (whole header lines) among its headers. `close` ends
 * the connection after it. A response the handler could not build (out of
 * memory, or a status that is not a final one) becomes a 500.
 */
static void respond(struct conn *c, struct fc_admin_response *r, int head_only, const char *extra,
                    int close)
{
    int status = r->status;
    const char *type = r->content_type != NULL ? r->content_type : json_type;
    const char *body = r->body;
    size_t len = r->len;
    if (r->oom || status < 200 || status > 599) {
        static const char oom[] = "{\"error\": \"out of memory\"}\n";
        static const char bad[] = "{\"error\": \"the handler answered no valid status\"}\n";
        if (!r->oom)
            fc_log_error("admin: a handler answered status %d: 500 instead", status);
        body = r->oom ? oom : bad;
        len = r->oom ? sizeof(oom) - 1 : sizeof(bad) - 1;
        status = 500;
        type = json_type;
    }
    /* 204 and 304 have no body, and so no length (RFC 9110 8.6). */
    int bodiless = status == 204 || status == 304;
    char length[48] = "";
    if (!bodiless)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", len);
    if (bodiless || head_only)
        len = 0;
    static const char fmt[] = "HTTP/1.1 %d %s\r\n"
                              "Content-Type: %s\r\n"
                              "%s"
                              "Cache-Control: no-store\r\n"
                              "X-Content-Type-Options: nosniff\r\n"
                              "%s%s"
                              "\r\n";
    const char *reason = fc_status_reason(status);
    const char *conn_hdr = close ? "Connection: close\r\n" : "";
    extra = extra != NULL ? extra : "";
    int n = snprintf(NULL, 0, fmt, status, reason, type, length, extra, conn_hdr);
    char *buf = n > 0 ? malloc((size_t)n + 1 + len) : NULL;
    if (buf == NULL) {
        free(r->body);
        r->body = NULL;
        close_conn(c);
        return;
    }
    snprintf(buf, (size_t)n + 1, fmt, status, reason, type, length, extra, conn_hdr);
    if (len > 0)
        memcpy(buf + n, body, len);
    free(r->body);
    r->body = NULL;

    read_stop(c);
    c->state = CONN_WRITING;
    c->close_after = close;
    c->out = buf;
    c->wreq.data = c;
    timer_arm(c, IDLE_MS); /* a client that does not take its response */
    uv_buf_t b = uv_buf_init(buf, (unsigned)((size_t)n + len));
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_written) != 0) {
        free(c->out);
        c->out = NULL;
        close_conn(c);
    }
}

static void reply_error(struct conn *c, int status, const char *message, const char *extra,
                        int close)
{
    struct fc_admin_response r = {0};
    fc_admin_error(&r, status, message);
    respond(c, &r, 0, extra, close);
}

/* ------------------------------------------------------------------------ */
/* Parsing requests                                                          */
/* ------------------------------------------------------------------------ */

static int scratch_append(struct conn *c, const char *at, size_t len)
{
    if (len > sizeof(c->scratch) - c->scratch_len) {
        c->err_status = 431;
        return -1;
    }
    memcpy(c->scratch + c->scratch_len, at, len);
    c->scratch_len += len;
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    c->scratch_len = c->url_len = c->auth_off = c->auth_len = 0;
    c->field_len = c->expect_len = 0;
    c->in_auth = c->in_expect = c->has_auth = c->expect_continue = 0;
    c->head_done = c->msg_done = 0;
    c->body_len = 0;
    c->err_status = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (scratch_append(c, at, len) != 0)
        return -1;
    c->url_len += len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->field_len < sizeof(c->field)) {
        size_t n = len < sizeof(c->field) - c->field_len ? len : sizeof(c->field) - c->field_len;
        memcpy(c->field + c->field_len, at, n);
    }
    c->field_len += len;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->in_auth = c->field_len == 13 && strncasecmp(c->field, "authorization", 13) == 0;
    c->in_expect = c->field_len == 6 && strncasecmp(c->field, "expect", 6) == 0;
    c->field_len = 0;
    if (c->in_auth) {
        if (c->has_auth)
            return -1; /* two Authorization headers: which one is meant? 400 */
        c->has_auth = 1;
        c->auth_off = c->scratch_len;
        c->auth_len = 0;
    }
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->in_auth) {
        if (scratch_append(c, at, len) != 0)
            return -1;
        c->auth_len += len;
    } else if (c->in_expect) {
        if (c->expect_len < sizeof(c->expect)) {
            size_t room = sizeof(c->expect) - c->expect_len;
            memcpy(c->expect + c->expect_len, at, len < room ? len : room);
        }
        c->expect_len += len;
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->in_expect)
        c->expect_continue = c->expect_len == 12 && strncasecmp(c->expect, "100-continue", 12) == 0;
    c->in_auth = c->in_expect = 0;
    c->expect_len = 0;
    return 0;
}

/* Pauses, so that process() checks the head's size and the announced body. */
static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->head_done = 1;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (len > FC_ADMIN_MAX_BODY - c->body_len) {
        c->err_status = 413;
        return HPE_USER;
    }
    if (c->body_len + len > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 1024;
        while (cap < c->body_len + len)
            cap *= 2;
        char *b = realloc(c->body, cap);
        if (b == NULL) {
            c->err_status = 503;
            return HPE_USER;
        }
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

/* Pauses: the request is answered before anything after it is parsed. */
static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->msg_done = 1;
    return HPE_PAUSED;
}

static void settings_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

/* ------------------------------------------------------------------------ */
/* Answering requests                                                        */
/* ------------------------------------------------------------------------ */

/*
 * Whether the n bytes of `given` are the token, in a time that depends on
 * the lengths only: every byte up to the longer of the two is compared, and a
 * difference in length counts as a difference, so that neither where the
 * first wrong byte is nor how long a matching prefix is shows in the time.
 */
static int token_equal(const char *given, size_t n, const char *token, size_t len)
{
    size_t max = n > len ? n : len;
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < max; i++) {
        unsigned char x = i < n ? (unsigned char)given[i] : 0;
        unsigned char y = i < len ? (unsigned char)token[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    size_t d = n ^ len;
    diff |= (unsigned char)((d | (0 - d)) >> (sizeof(d) * 8 - 1)); /* 1 when d != 0 */
    return diff == 0;
}

/* Whether the request carries `Authorization: Bearer <the token>`. */
static int authorized(const struct fc_admin *a, const struct conn *c)
{
    if (!c->has_auth)
        return 0;
    const char *v = c->scratch + c->auth_off;
    size_t n = c->auth_len;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n < 7 || strncasecmp(v, "Bearer", 6) != 0 || v[6] != ' ')
        return 0;
    v += 7;
    n -= 7;
    while (n > 0 && v[0] == ' ') {
        v++;
        n--;
    }
    return token_equal(v, n, a->token, a->token_len);
}

static void swrite_done(uv_write_t *req, int status);

static struct swrite *swrite_new(struct fc_admin_stream *s, const char *data, size_t len)
{
    struct swrite *w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return NULL;
    w->s = s;
    w->next = NULL;
    w->len = len;
    memcpy(w->data, data, len);
    w->req.data = w;
    return w;
}

/* Hands w to libuv; on failure w is freed and the connection closes. */
static int swrite_submit(struct fc_admin_stream *s, struct swrite *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, &s->c->h.stream, &b, 1, swrite_done);
    if (rc != 0) {
        s->queued -= w->len;
        free(w);
        close_conn(s->c);
    }
    return rc;
}

static void swrite_done(uv_write_t *req, int status)
{
    struct swrite *w = req->data;
    struct fc_admin_stream *s = w->s;
    s->queued -= w->len;
    free(w);
    if (status < 0)
        close_conn(s->c);
}

static void open_stream(struct conn *c, const struct route *rt, int needs_token)
{
    static const char head[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\n"
                               "X-Content-Type-Options: nosniff\r\n"
                               "Connection: close\r\n"
                               "\r\n";
    struct fc_admin *a = c->a;
    if (a->n_streams >= FC_ADMIN_MAX_STREAMS) {
        char msg[96];
        snprintf(msg, sizeof(msg), "too many event streams (%d are open)", FC_ADMIN_MAX_STREAMS);
        reply_error(c, 503, msg, NULL, 0);
        return;
    }
    struct fc_admin_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        reply_error(c, 503, "out of memory", NULL, 0);
        return;
    }
    s->c = c;
    s->closed = rt->closed;
    s->arg = rt->arg;
    s->needs_token = (unsigned)needs_token;
    s->opening = 1;
    s->pending_tail = &s->pending;
    c->stream = s;
    a->n_streams++;
    int status = rt->open(rt->arg, s);
    s->opening = 0;
    if (status != 0 || c->state == CONN_CLOSING) {
        while (s->pending != NULL) {
            struct swrite *w = s->pending;
            s->pending = w->next;
            free(w);
        }
        c->stream = NULL;
        a->n_streams--;
        free(s);
        if (c->state == CONN_CLOSING) /* the owner closed the listener meanwhile */
            return;
        if (status < 400 || status > 599)
            status = 500;
        reply_error(c, status, fc_status_reason(status), NULL, 0);
        return;
    }
    s->kept = 1;
    c->state = CONN_STREAMING;
    uv_timer_stop(&c->timer);
    c->in_off = c->in_len; /* anything pipelined after the request is not read */

    struct swrite *pending = s->pending;
    s->pending = NULL;
    struct swrite *w = swrite_new(s, head, sizeof(head) - 1);
    int failed = w == NULL;
    if (w != NULL) {
        s->queued += w->len;
        failed = swrite_submit(s, w) != 0;
    }
    while (pending != NULL) {
        w = pending;
        pending = w->next;
        if (failed) {
            s->queued -= w->len;
            free(w);
        } else {
            failed = swrite_submit(s, w) != 0;
        }
    }
    if (failed || s->closing)
        close_conn(c);
    else
        read_start(c); /* to see the client leave */
}

/*
 * The request is complete: find its route, check the token, and answer.
 * A route without FC_ADMIN_PUBLIC needs the token before anything about
 * the path is told (404 and 405 included), so that the paths cannot be
 * probed without it.
 */
static void handle_request(struct conn *c)
{
    struct fc_admin *a = c->a;
    llhttp_t *p = &c->parser;
    int keep =
        llhttp_should_keep_alive(p) && p->http_major == 1 && p->http_minor >= 1 && !p->upgrade;
    const char *method = llhttp_method_name(llhttp_get_method(p));
    const char *url = c->scratch;
    size_t url_len = c->url_len;
    if (url_len == 0 || url[0] != '/') {
        reply_error(c, 400, "the request target must be a path", NULL, 1);
        return;
    }
    const char *q = memchr(url, '?', url_len);
    struct fc_admin_request req = {
        .method = method,
        .method_len = strlen(method),
        .path = url,
        .path_len = q != NULL ? (size_t)(q - url) : url_len,
        .query = q != NULL ? q + 1 : NULL,
        .query_len = q != NULL ? url_len - (size_t)(q - url) - 1 : 0,
        .body = c->body,
        .body_len = c->body_len,
    };

    const struct route *match = NULL;
    int known_path = 0;
    for (size_t i = 0; i < a->n_routes; i++) {
        const struct route *r = &a->routes[i];
        if (r->path_len != req.path_len || memcmp(r->path, req.path, req.path_len) != 0)
            continue;
        known_path = 1;
        if (strcmp(r->method, method) == 0)
            match = r;
    }
    int public = match != NULL && (match->flags & FC_ADMIN_PUBLIC);
    if (a->token != NULL && !public && !authorized(a, c)) {
        reply_error(c, 401, "this endpoint needs Authorization: Bearer <token>",
                    "WWW-Authenticate: Bearer\r\n", !keep);
        return;
    }
    int path_shown = (int)(req.path_len < QUOTE_MAX ? req.path_len : QUOTE_MAX);
    if (!known_path) {
        char msg[QUOTE_MAX + 64];
        snprintf(msg, sizeof(msg), "no such endpoint: %.*s", path_shown, req.path);
        reply_error(c, 404, msg, NULL, !keep);
        return;
    }
    if (match == NULL) {
        char allow[512];
        size_t n = (size_t)snprintf(allow, sizeof(allow), "Allow: ");
        const char *sep = "";
        for (size_t i = 0; i < a->n_routes; i++) {
            const struct route *r = &a->routes[i];
            if (r->path_len != req.path_len || memcmp(r->path, req.path, req.path_len) != 0 ||
                n + strlen(r->method) + 5 > sizeof(allow))
                continue;
            n += (size_t)snprintf(allow + n, sizeof(allow) - n, "%s%s", sep, r->method);
            sep = ", ";
        }
        snprintf(allow + n, sizeof(allow) - n, "\r\n");
        char msg[QUOTE_MAX + 64];
        snprintf(msg, sizeof(msg), "method %s not allowed on %.*s", method, path_shown, req.path);
        reply_error(c, 405, msg, allow, !keep);
        return;
    }
    if (match->open != NULL) {
        open_stream(c, match, !public);
        return;
    }
    struct fc_admin_response r = {.status = 200, .content_type = json_type};
    fc_admin_handler fn = match->fn;
    fn(match->arg, &req, &r);
    if (c->state == CONN_CLOSING) { /* the handler closed the listener (a reload without it) */
        free(r.body);
        return;
    }
    respond(c, &r, strcmp(method, "HEAD") == 0, NULL, !keep);
}

/* Sends "100 Continue" to a client that waits for it before its body. */
static void send_continue(struct conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)line, sizeof(line) - 1);
    int n = uv_try_write(&c->h.stream, &b, 1);
    /* Nothing written: the client sends its body after its own wait. Half: the stream is broken. */
    if (n > 0 && (size_t)n < sizeof(line) - 1)
        close_conn(c);
}

/*
 * Runs the parser over the input that has arrived, up to the end of a
 * request (then answers it), an error (then answers that and closes), or
 * the end of the input (then reads more).
 */
static void process(struct conn *c)
{
    while (c->state == CONN_READING) {
        /*
         * After a head, the parser runs again even without input: a request
         * without a body ends there, in states that consume nothing.
         */
        if (c->in_off == c->in_len && !c->resumed) {
            c->in_off = c->in_len = 0;
            read_start(c);
            return;
        }
        c->resumed = 0;
        if (!c->in_request) {
            c->in_request = 1;
            timer_arm(c, REQUEST_MS);
        }
        const char *start = c->in + c->in_off;
        size_t avail = c->in_len - c->in_off;
        enum llhttp_errno e = llhttp_execute(&c->parser, start, avail);
        size_t used = e == HPE_OK ? avail : (size_t)(llhttp_get_error_pos(&c->parser) - start);
        if (!c->head_checked) {
            c->head_bytes += used;
            if (c->head_bytes > FC_ADMIN_MAX_HEAD) {
                char msg[64];
                snprintf(msg, sizeof(msg), "request head larger than %d bytes", FC_ADMIN_MAX_HEAD);
                reply_error(c, 431, msg, NULL, 1);
                return;
            }
        }
        if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
            int status = c->err_status ? c->err_status : 400;
            char msg[160];
            if (status == 431)
                snprintf(msg, sizeof(msg), "request head larger than %d bytes", FC_ADMIN_MAX_HEAD);
            else if (status == 413)
                snprintf(msg, sizeof(msg), "request body larger than %d bytes", FC_ADMIN_MAX_BODY);
            else if (status == 503)
                snprintf(msg, sizeof(msg), "out of memory");
            else if (llhttp_get_error_reason(&c->parser) != NULL)
                snprintf(msg, sizeof(msg), "malformed request: %s",
                         llhttp_get_error_reason(&c->parser));
            else
                snprintf(msg, sizeof(msg), "malformed request");
            reply_error(c, status, msg, NULL, 1);
            return;
        }
        c->in_off += used;
        if (e == HPE_OK)
            continue;
        if (c->msg_done) {
            read_stop(c);
            uv_timer_stop(&c->timer);
            handle_request(c);
            return;
        }
        /* Paused at the end of a head. */
        c->head_checked = 1;
        c->resumed = 1;
        llhttp_resume(&c->parser);
        if ((c->parser.flags & F_CONTENT_LENGTH) && c->parser.content_length > FC_ADMIN_MAX_BODY) {
            char msg[64];
            snprintf(msg, sizeof(msg), "request body larger than %d bytes", FC_ADMIN_MAX_BODY);
            reply_error(c, 413, msg, NULL, 1);
            return;
        }
        if (c->expect_continue && ((c->parser.flags & F_CHUNKED) || c->parser.content_length > 0))
            send_continue(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char sink[4096]; /* input read only to be thrown away; main thread only */
    struct conn *c = h->data;
    if (c->state == CONN_READING) {
        buf->base = c->in + c->in_len;
        buf->len = IN_CAP - c->in_len;
    } else {
        buf->base = sink;
        buf->len = sizeof(sink);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    if (n == 0 || c->state == CONN_CLOSING)
        return;
    if (n < 0 || c->state != CONN_READING) {
        if (n < 0) /* the client left (or broke the connection): nothing to answer */
            close_conn(c);
        return;
    }
    c->in_len += (size_t)n;
    process(c);
}

static void read_start(struct conn *c)
{
    if (c->reading)
        return;
    if (uv_read_start(&c->h.stream, on_alloc, on_read) != 0) {
        close_conn(c);
        return;
    }
    c->reading = 1;
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == CONN_READING && c->in_request) {
        char msg[64];
        snprintf(msg, sizeof(msg), "request not complete within %d ms", REQUEST_MS);
        reply_error(c, 408, msg, NULL, 1);
        return;
    }
    close_conn(c); /* idle, a response not taken, or lingering long enough */
}

static void timer_arm(struct conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct fc_admin *a = c->a;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    a->n_conns--;
    struct fc_admin_stream *s = c->stream;
    if (s != NULL) {
        c->stream = NULL;
        a->n_streams--;
        s->closed(s->arg, s);
        free(s);
    }
    free(c->body);
    free(c->out);
    free(c);
    a->live--;
    maybe_free(a);
}

static void close_conn(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    if (c->stream != NULL)
        c->stream->closing = 1;
    uv_close(&c->h.handle, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void reject_closed(uv_handle_t *h)
{
    free(h->data);
}

/*
 * Accepts a connection only to close it: over MAX_CONNS, or without memory
 * for it. It must be accepted, or libuv stops watching the socket.
 */
static void reject(struct server *sv)
{
    struct reject *r = malloc(sizeof(*r));
    if (r == NULL) {
        fc_log_error("admin %s: out of memory: a connection waits", sv->address);
        return;
    }
    if (sv->addr_len != 0)
        uv_tcp_init(sv->h.handle.loop, &r->h.tcp);
    else
        uv_pipe_init(sv->h.handle.loop, &r->h.pipe, 0);
    r->h.handle.data = r;
    uv_accept(&sv->h.stream, &r->h.stream);
    uv_close(&r->h.handle, reject_closed);
}

static void on_connection(uv_stream_t *st, int status)
{
    struct server *sv = st->data;
    struct fc_admin *a = sv->a;
    if (status < 0) {
        fc_log_warn("admin %s: accept: %s", sv->address, uv_strerror(status));
        return;
    }
    struct conn *c = NULL;
    if (a->n_conns >= MAX_CONNS) {
        fc_log_debug("admin %s: %d connections open: one more closed", sv->address, MAX_CONNS);
        reject(sv);
        return;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        fc_log_error("admin %s: out of memory for a connection", sv->address);
        reject(sv);
        return;
    }
    c->a = a;
    if (sv->addr_len != 0)
        uv_tcp_init(a->loop, &c->h.tcp);
    else
        uv_pipe_init(a->loop, &c->h.pipe, 0);
    uv_timer_init(a->loop, &c->timer);
    c->h.handle.data = c->timer.data = c;
    c->handles = 2;
    c->next = a->conns;
    if (a->conns != NULL)
        a->conns->prev = c;
    a->conns = c;
    a->n_conns++;
    a->live++;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    c->state = CONN_READING;
    if (uv_accept(st, &c->h.stream) != 0) {
        close_conn(c);
        return;
    }
    if (sv->addr_len != 0)
        uv_tcp_nodelay(&c->h.tcp, 1);
    timer_arm(c, IDLE_MS);
    read_start(c);
}

/* ------------------------------------------------------------------------ */
/* Listening sockets                                                         */
/* ------------------------------------------------------------------------ */

/*
 * A listening unix socket at path. A socket file left by a daemon that died
 * is removed, but only when nothing answers on it (a connect is refused): a
 * second daemon must not take the socket of a running one. Anything else at
 * the path is left alone. The mode is set to 0660 before listen(), so that
 * nobody connects while it is wider. Returns the fd or a negative errno;
 * *why explains a refusal that the errno does not.
 */
static int unix_listen(const char *path, const char **why)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    memcpy(sun.sun_path, path, strlen(path) + 1);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            *why = "the path exists and is not a socket";
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return -errno;
        int rc = connect(probe, (const struct sockaddr *)&sun, sizeof(sun));
        int err = rc == 0 ? 0 : errno;
        close(probe);
        if (rc == 0 || err == EAGAIN || err == EINPROGRESS) {
            *why = "address already in use (another fulcrum, or another server, listens there)";
            return -EADDRINUSE;
        }
        if (err != ECONNREFUSED)
            return -err;
        if (unlink(path) != 0 && errno != ENOENT) /* stale: nobody listens */
            return -errno;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (const struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (chmod(path, 0660) != 0 || listen(fd, BACKLOG) != 0) {
        int err = errno;
        unlink(path);
        close(fd);
        return -err;
    }
    return fd;
}

static void server_closed(uv_handle_t *h)
{
    struct server *sv = h->data;
    struct fc_admin *a = sv->a;
    free(sv->address);
    free(sv->unix_path);
    free(sv);
    if (a != NULL) {
        a->live--;
        maybe_free(a);
    }
}

static void server_close(struct server *sv)
{
    /* Removed while the socket is still ours: nobody else can have bound the path since. */
    if (sv->unix_path != NULL)
        unlink(sv->unix_path);
    uv_close(&sv->h.handle, server_closed);
}

/* Binds and listens on cfg's admin address; logs why not with file:line. */
static int server_open(struct fc_admin *a, const struct fc_config *cfg, struct server **out)
{
    const struct fc_conf_admin *ca = &cfg->admin;
    const char *why = NULL;
    int fd = ca->unix_path != NULL ? unix_listen(ca->unix_path, &why)
                                   : fc_listen_socket_exclusive((const struct sockaddr *)&ca->addr,
                                                                ca->addr_len, BACKLOG);
    if (fd < 0) {
        if (why == NULL && fd == -EADDRINUSE)
            why = "address already in use (another fulcrum, or another server, listens there)";
        fc_log_error("%s:%d: admin.address \"%s\": %s", cfg->path, ca->line, ca->address,
                     why != NULL ? why : strerror(-fd));
        return fd;
    }
    struct server *sv = calloc(1, sizeof(*sv));
    if (sv == NULL || (sv->address = strdup(ca->address)) == NULL ||
        (ca->unix_path != NULL && (sv->unix_path = strdup(ca->unix_path)) == NULL)) {
        if (sv != NULL) {
            free(sv->address);
            free(sv);
        }
        if (ca->unix_path != NULL)
            unlink(ca->unix_path);
        close(fd);
        fc_log_error("%s:%d: admin.address \"%s\": out of memory", cfg->path, ca->line,
                     ca->address);
        return -ENOMEM;
    }
    memcpy(&sv->addr, &ca->addr, sizeof(sv->addr));
    sv->addr_len = ca->unix_path != NULL ? 0 : ca->addr_len;
    int rc;
    if (sv->addr_len != 0) {
        uv_tcp_init(a->loop, &sv->h.tcp);
        rc = uv_tcp_open(&sv->h.tcp, fd);
    } else {
        uv_pipe_init(a->loop, &sv->h.pipe, 0);
        rc = uv_pipe_open(&sv->h.pipe, fd);
    }
    sv->h.handle.data = sv;
    if (rc == 0)
        rc = uv_listen(&sv->h.stream, BACKLOG, on_connection);
    if (rc != 0) {
        fc_log_error("%s:%d: admin.address \"%s\": %s", cfg->path, ca->line, ca->address,
                     uv_strerror(rc));
        if (uv_fileno(&sv->h.handle, &(uv_os_fd_t){0}) != 0)
            close(fd);    /* not taken by the handle */
        server_close(sv); /* sv->a is NULL: it counts for nobody */
        return rc;
    }
    sv->a = a;
    a->live++;
    *out = sv;
    return 0;
}

static int same_place(const struct server *sv, const struct fc_conf_admin *ca)
{
    if (ca->unix_path != NULL || sv->unix_path != NULL)
        return ca->unix_path != NULL && sv->unix_path != NULL &&
               strcmp(ca->unix_path, sv->unix_path) == 0;
    if (sv->addr.ss_family != ca->addr.ss_family)
        return 0;
    if (sv->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&sv->addr;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&ca->addr;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&sv->addr;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&ca->addr;
    return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                          */
/* ------------------------------------------------------------------------ */

int fc_admin_create(uv_loop_t *loop, const struct fc_config *cfg, struct fc_admin **out)
{
    *out = NULL;
    settings_init();
    struct fc_admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->loop = loop;
    if (cfg->has_admin) {
        if (cfg->admin.token != NULL) {
            if ((a->token = strdup(cfg->admin.token)) == NULL) {
                free(a);
                return -ENOMEM;
            }
            a->token_len = strlen(a->token);
        }
        int rc = server_open(a, cfg, &a->server);
        if (rc != 0) {
            free_token(a->token);
            free(a);
            return rc;
        }
        fc_log_info("admin listening on %s%s", cfg->admin.address,
                    a->token != NULL ? " (token required)" : "");
    }
    *out = a;
    return 0;
}

static int add_route(struct fc_admin *a, const char *method, const char *path, unsigned flags,
                     const struct route *proto)
{
    if (method == NULL || method[0] == '\0' || path == NULL || path[0] != '/')
        return -EINVAL;
    for (size_t i = 0; i < a->n_routes; i++)
        if (strcmp(a->routes[i].method, method) == 0 && strcmp(a->routes[i].path, path) == 0)
            return -EEXIST;
    struct route *routes = realloc(a->routes, (a->n_routes + 1) * sizeof(*routes));
    if (routes == NULL)
        return -ENOMEM;
    a->routes = routes;
    struct route *r = &routes[a->n_routes];
    *r = *proto;
    r->method = strdup(method);
    r->path = strdup(path);
    if (r->method == NULL || r->path == NULL) {
        free(r->method);
        free(r->path);
        return -ENOMEM;
    }
    r->path_len = strlen(path);
    r->flags = flags;
    a->n_routes++;
    return 0;
}

int fc_admin_route(struct fc_admin *a, const char *method, const char *path, unsigned flags,
                   fc_admin_handler fn, void *arg)
{
    if (fn == NULL)
        return -EINVAL;
    struct route proto = {.fn = fn, .arg = arg};
    return add_route(a, method, path, flags, &proto);
}

int fc_admin_stream_route(struct fc_admin *a, const char *path, unsigned flags,
                          fc_admin_stream_open open, fc_admin_stream_closed closed, void *arg)
{
    if (open == NULL || closed == NULL)
        return -EINVAL;
    struct route proto = {.open = open, .closed = closed, .arg = arg};
    return add_route(a, "GET", path, flags, &proto);
}

int fc_admin_apply(struct fc_admin *a, const struct fc_config *cfg)
{
    const struct fc_conf_admin *ca = cfg->has_admin ? &cfg->admin : NULL;
    char *token = NULL;
    if (ca != NULL && ca->token != NULL && (token = strdup(ca->token)) == NULL) {
        fc_log_error("%s:%d: admin.token_file: out of memory", cfg->path, ca->token_line);
        return -ENOMEM;
    }
    struct server *fresh = NULL;
    int move = ca != NULL && (a->server == NULL || !same_place(a->server, ca));
    if (move) {
        int rc = server_open(a, cfg, &fresh);
        if (rc != 0) {
            free_token(token);
            return rc;
        }
    }

    int token_changed =
        (a->token == NULL) != (token == NULL) || (token != NULL && strcmp(a->token, token) != 0);
    free_token(a->token);
    a->token = token;
    a->token_len = token != NULL ? strlen(token) : 0;

    if (move || ca == NULL) {
        if (a->server != NULL) {
            if (ca == NULL)
                fc_log_info("admin listener on %s closed", a->server->address);
            server_close(a->server);
        }
        a->server = fresh;
        if (fresh != NULL)
            fc_log_info("admin listening on %s%s", ca->address,
                        token != NULL ? " (token required)" : "");
    } else if (strcmp(a->server->address, ca->address) != 0) {
        char *text = strdup(ca->address); /* the same socket, written another way */
        if (text != NULL) {
            free(a->server->address);
            a->server->address = text;
        }
    }
    for (struct conn *c = a->conns; c != NULL; c = c->next) {
        if (ca == NULL)
            close_conn(c);
        else if (token_changed && token != NULL && c->stream != NULL && c->stream->needs_token)
            close_conn(c); /* let in with a token (or none) that no longer opens it */
    }
    return 0;
}

int fc_admin_stream_send(struct fc_admin_stream *s, const char *data, size_t len)
{
    if (s->closing)
        return -EPIPE;
    if (len == 0)
        return 0;
    if (s->opening) {
        if (len > FC_ADMIN_STREAM_BUFFER - s->queued) {
            s->closing = 1;
            return -ENOBUFS;
        }
        struct swrite *w = swrite_new(s, data, len);
        if (w == NULL) {
            s->closing = 1;
            return -ENOMEM;
        }
        *s->pending_tail = w;
        s->pending_tail = &w->next;
        s->queued += len;
        return 0;
    }
    struct conn *c = s->c;
    if (s->queued == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write(&c->h.stream, &b, 1);
        if (n >= 0) {
            data += n;
            len -= (size_t)n;
            if (len == 0)
                return 0;
        } else if (n != UV_EAGAIN) {
            close_conn(c);
            return n;
        }
    }
    if (len > FC_ADMIN_STREAM_BUFFER - s->queued) {
        fc_log_debug("admin: an event stream's reader is %zu bytes behind: closed",
                     s->queued + len);
        close_conn(c);
        return -ENOBUFS;
    }
    struct swrite *w = swrite_new(s, data, len);
    if (w == NULL) {
        close_conn(c);
        return -ENOMEM;
    }
    s->queued += len;
    int rc = swrite_submit(s, w);
    return rc != 0 ? rc : 0;
}

size_t fc_admin_stream_queued(const struct fc_admin_stream *s)
{
    return s->queued;
}

unsigned fc_admin_streams(const struct fc_admin *a)
{
    return a->n_streams;
}

void fc_admin_destroy(struct fc_admin *a)
{
    if (a == NULL)
        return;
    a->destroyed = 1;
    if (a->server != NULL) {
        server_close(a->server);
        a->server = NULL;
    }
    for (struct conn *c = a->conns; c != NULL; c = c->next)
        close_conn(c);
    for (size_t i = 0; i < a->n_routes; i++) {
        free(a->routes[i].method);
        free(a->routes[i].path);
    }
    free(a->routes);
    a->routes = NULL;
    a->n_routes = 0;
    free_token(a->token);
    a->token = NULL;
    maybe_free(a);
}
