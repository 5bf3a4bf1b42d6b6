/*
 * One request on an admin connection, top to bottom: parsing it (llhttp in
 * strict mode, its head and body bounded), finding its route, checking the
 * token, and writing the answer; see admin.c for the connection around it.
 *
 * What arrives is parsed in place in the connection's input buffer, and the
 * callbacks copy the few things a request needs (the target, the
 * Authorization and Expect values, the body) out of it. The parser pauses at
 * the end of each head, where the head's size and the announced body are
 * checked, and at the end of each request, where reading stops until the
 * response has been written: a pipelined request waits in the buffer, or in
 * the kernel, so answers go out in order and a connection holds at most one
 * buffer of input and one response.
 */
#include "admin_conn.h"

#include "errors.h"
#include "log.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Methods and paths quoted in error messages are cut to this many bytes. */
#define QUOTE_MAX 256

static const char json_type[] = "application/json";

static llhttp_settings_t settings;

static void settings_init(void);

/* ------------------------------------------------------------------------ */
/* Writing responses                                                         */
/* ------------------------------------------------------------------------ */

/* A request answered: the connection reads the next one (which may wait in the buffer). */
static void request_done(struct fc_admin_conn *c)
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
    c->state = FC_ADMIN_CONN_READING;
    fc_admin_conn_timer_arm(c, FC_ADMIN_IDLE_MS);
    fc_admin_request_process(c);
}

static void on_written(uv_write_t *req, int status)
{
    struct fc_admin_conn *c = req->data;
    free(c->out);
    c->out = NULL;
    if (c->state == FC_ADMIN_CONN_CLOSING)
        return;
    if (status < 0)
        fc_admin_conn_close(c);
    else if (c->close_after)
        fc_admin_conn_linger(c);
    else
        request_done(c);
}

/*
 * Writes r (whose body is freed here) as the response to the current
 * request, with r->headers and `extra` (whole header lines) among its
 * headers. `close` ends the connection after it. A response the handler
 * could not build (out of memory, or a status that is not a final one)
 * becomes a 500.
 */
static void respond(struct fc_admin_conn *c, struct fc_admin_response *r, int head_only,
                    const char *extra, int close)
{
    int status = r->status;
    const char *type = r->content_type != NULL ? r->content_type : json_type;
    const char *body = r->body.p;
    size_t len = r->body.len;
    const char *headers = r->headers != NULL ? r->headers : "";
    if (r->body.oom || status < 200 || status > 599) {
        static const char oom[] = "{\"error\": \"out of memory\"}\n";
        static const char bad[] = "{\"error\": \"the handler answered no valid status\"}\n";
        if (!r->body.oom)
            fc_log_error("admin: a handler answered status %d: 500 instead", status);
        body = r->body.oom ? oom : bad;
        len = r->body.oom ? sizeof(oom) - 1 : sizeof(bad) - 1;
        status = 500;
        type = json_type;
        headers = ""; /* they were meant for the handler's body, not for this one */
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
                              "%s%s%s"
                              "\r\n";
    const char *reason = fc_status_reason(status);
    const char *conn_hdr = close ? "Connection: close\r\n" : "";
    extra = extra != NULL ? extra : "";
    int n = snprintf(NULL, 0, fmt, status, reason, type, length, headers, extra, conn_hdr);
    char *buf = n > 0 ? malloc((size_t)n + 1 + len) : NULL;
    if (buf == NULL) {
        fc_text_free(&r->body);
        fc_admin_conn_close(c);
        return;
    }
    snprintf(buf, (size_t)n + 1, fmt, status, reason, type, length, headers, extra, conn_hdr);
    if (len > 0)
        memcpy(buf + n, body, len);
    fc_text_free(&r->body);

    fc_admin_conn_read_stop(c);
    c->state = FC_ADMIN_CONN_WRITING;
    c->close_after = close;
    c->out = buf;
    c->wreq.data = c;
    fc_admin_conn_timer_arm(c, FC_ADMIN_IDLE_MS); /* a client that does not take its response */
    uv_buf_t b = uv_buf_init(buf, (unsigned)((size_t)n + len));
    if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_written) != 0) {
        free(c->out);
        c->out = NULL;
        fc_admin_conn_close(c);
    }
}

void fc_admin_conn_reply_error(struct fc_admin_conn *c, int status, const char *message,
                               const char *extra, int close)
{
    struct fc_admin_response r = {0};
    fc_admin_error(&r, status, message);
    respond(c, &r, 0, extra, close);
}

/* ------------------------------------------------------------------------ */
/* Parsing requests                                                          */
/* ------------------------------------------------------------------------ */

static int scratch_append(struct fc_admin_conn *c, const char *at, size_t len)
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
    struct fc_admin_conn *c = p->data;
    c->scratch_len = c->url_len = c->auth_off = c->auth_len = 0;
    c->field_len = c->expect_len = 0;
    c->in_auth = c->in_expect = c->has_auth = c->expect_continue = 0;
    c->in_host = c->has_host = c->in_origin = c->has_origin = 0;
    c->host_len = c->origin_len = 0;
    c->head_done = c->msg_done = 0;
    c->body_len = 0;
    c->err_status = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct fc_admin_conn *c = p->data;
    if (scratch_append(c, at, len) != 0)
        return -1;
    c->url_len += len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct fc_admin_conn *c = p->data;
    if (c->field_len < sizeof(c->field)) {
        size_t n = len < sizeof(c->field) - c->field_len ? len : sizeof(c->field) - c->field_len;
        memcpy(c->field + c->field_len, at, n);
    }
    c->field_len += len;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct fc_admin_conn *c = p->data;
    c->in_auth = c->field_len == 13 && strncasecmp(c->field, "authorization", 13) == 0;
    c->in_expect = c->field_len == 6 && strncasecmp(c->field, "expect", 6) == 0;
    c->in_host = c->field_len == 4 && strncasecmp(c->field, "host", 4) == 0;
    c->in_origin = c->field_len == 6 && strncasecmp(c->field, "origin", 6) == 0;
    c->field_len = 0;
    if (c->in_host || c->in_origin) {
        /* Two of either: which one is meant? 400, as for Authorization. */
        if (c->in_host ? c->has_host : c->has_origin)
            return -1;
        if (c->in_host) {
            c->has_host = 1;
            c->host_off = c->scratch_len;
        } else {
            c->has_origin = 1;
            c->origin_off = c->scratch_len;
        }
    }
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
    struct fc_admin_conn *c = p->data;
    if (c->in_auth || c->in_host || c->in_origin) {
        if (scratch_append(c, at, len) != 0)
            return -1;
        *(c->in_auth ? &c->auth_len : c->in_host ? &c->host_len : &c->origin_len) += len;
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
    struct fc_admin_conn *c = p->data;
    if (c->in_expect)
        c->expect_continue = c->expect_len == 12 && strncasecmp(c->expect, "100-continue", 12) == 0;
    c->in_auth = c->in_expect = c->in_host = c->in_origin = 0;
    c->expect_len = 0;
    return 0;
}

/* Pauses, so that fc_admin_request_process() checks the head's size and the body announced. */
static int on_headers_complete(llhttp_t *p)
{
    struct fc_admin_conn *c = p->data;
    c->head_done = 1;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct fc_admin_conn *c = p->data;
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
    struct fc_admin_conn *c = p->data;
    c->msg_done = 1;
    return HPE_PAUSED;
}

void fc_admin_request_init(struct fc_admin_conn *c)
{
    static int done;
    if (!done) {
        done = 1;
        settings_init();
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
}

static void settings_init(void)
{
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
static int authorized(const struct fc_admin *a, const struct fc_admin_conn *c)
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

/* An answer due later (fc_admin_defer()). */
struct fc_admin_later {
    struct fc_admin_conn *c; /* NULL once it closed */
    struct fc_admin_response resp;
    int head_only, close;
};

/* The values of a route's "{}" segments, decoded. */
struct params {
    const char *value[FC_ADMIN_MAX_PARAMS];
    unsigned n;
    size_t used;
    char buf[FC_ADMIN_MAX_HEAD + FC_ADMIN_MAX_PARAMS];
};

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes one segment into out (room for len + 1); -1 when it does not decode. */
static int decode_segment(const char *s, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hex_digit(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1; /* not two hex digits, or a NUL */
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        out[n++] = ch;
    }
    out[n] = '\0';
    return 0;
}

int fc_admin_query_param(const struct fc_admin_request *req, const char *name, char *out,
                         size_t cap)
{
    size_t nl = strlen(name);
    const char *q = req->query, *end = q != NULL ? q + req->query_len : NULL;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *key_end = eq != NULL ? eq : stop;
        if ((size_t)(key_end - q) == nl && memcmp(q, name, nl) == 0) {
            const char *v = eq != NULL ? eq + 1 : stop;
            size_t vl = (size_t)(stop - v);
            if (vl + 1 > cap || decode_segment(v, vl, out) != 0)
                return -1;
            return 1;
        }
        q = amp != NULL ? amp + 1 : end;
    }
    return 0;
}

/*
 * Whether path matches route r, segment by segment ("{}" matches one
 * non-empty segment). With `out`, the "{}" values are decoded into it.
 * Returns 1 (a match), 0 (none) or -1 (a match whose value does not decode).
 */
static int route_match(const struct fc_admin_route *r, const char *path, size_t len,
                       struct params *out)
{
    if (r->n_params == 0)
        return r->path_len == len && memcmp(r->path, path, len) == 0;
    const char *rp = r->path, *rend = r->path + r->path_len;
    const char *pp = path, *pend = path + len;
    int bad = 0;
    while (rp < rend && pp < pend) {
        if (*rp++ != '/' || *pp++ != '/')
            return 0;
        const char *rs = memchr(rp, '/', (size_t)(rend - rp));
        const char *ps = memchr(pp, '/', (size_t)(pend - pp));
        rs = rs != NULL ? rs : rend;
        ps = ps != NULL ? ps : pend;
        size_t seg = (size_t)(ps - pp);
        if (rs - rp == 2 && rp[0] == '{' && rp[1] == '}') {
            if (seg == 0)
                return 0;
            if (out != NULL) {
                char *dst = out->buf + out->used;
                if (decode_segment(pp, seg, dst) != 0) {
                    bad = 1;
                } else {
                    out->value[out->n++] = dst;
                    out->used += strlen(dst) + 1;
                }
            }
        } else if ((size_t)(rs - rp) != seg || memcmp(rp, pp, seg) != 0) {
            return 0;
        }
        rp = rs;
        pp = ps;
    }
    if (rp != rend || pp != pend)
        return 0;
    return bad ? -1 : 1;
}

/* Whether host (a Host value, or an origin's host[:port]) names no DNS name but localhost. */
static int host_is_local(const char *h, size_t n)
{
    if (n > 0 && h[0] == '[')
        return 1; /* an IPv6 literal */
    const char *colon = memchr(h, ':', n);
    size_t name = colon != NULL ? (size_t)(colon - h) : n;
    if (name > 0 && h[name - 1] == '.')
        name--; /* "localhost." */
    if (name == 9 && strncasecmp(h, "localhost", 9) == 0)
        return 1;
    for (size_t i = 0; i < name; i++)
        if ((h[i] < '0' || h[i] > '9') && h[i] != '.')
            return 0;
    return name > 0; /* an IPv4 literal */
}

/*
 * What a web page in the operator's browser must not do to the admin
 * listener. A page of another site may send it writes (a form's POST needs
 * no permission), and a name of that site rebound to 127.0.0.1 makes its
 * requests look same-origin. Browsers send Origin with every write: one
 * whose Origin is not the Host it was sent to is refused, and so, on a TCP
 * listener without a token, is one sent to a name that is neither an IP
 * address nor localhost. Clients that are not browsers send no Origin.
 * Returns the message of the 403, or NULL.
 */
static const char *browser_guard(const struct fc_admin *a, const struct fc_admin_conn *c,
                                 const char *method)
{
    int safe = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (safe || !c->has_origin)
        return NULL;
    const char *host = c->scratch + c->host_off;
    size_t host_len = c->host_len;
    const char *o = c->scratch + c->origin_off;
    size_t n = c->origin_len;
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= n && sep == NULL; i++)
        if (memcmp(o + i, "://", 3) == 0)
            sep = o + i;
    if (sep != NULL) {
        size_t skip = (size_t)(sep + 3 - o);
        o += skip;
        n -= skip;
    }
    if (sep == NULL || !c->has_host || n != host_len || strncasecmp(o, host, n) != 0)
        return "cross-origin write refused: the Origin is not this admin listener";
    if (c->h.handle.type == UV_TCP && a->token == NULL && !host_is_local(host, host_len))
        return "write refused: a page names this admin listener by a DNS name (DNS "
               "rebinding?); open it by IP address or localhost, or set admin.token_file";
    return NULL;
}

/*
 * The request is complete: find its route, check the token, and answer.
 * A route without FC_ADMIN_PUBLIC needs the token before anything about
 * the path is told (404 and 405 included), so that the paths cannot be
 * probed without it.
 */
static void handle_request(struct fc_admin_conn *c)
{
    struct fc_admin *a = c->a;
    llhttp_t *p = &c->parser;
    int keep =
        llhttp_should_keep_alive(p) && p->http_major == 1 && p->http_minor >= 1 && !p->upgrade;
    const char *method = llhttp_method_name(llhttp_get_method(p));
    const char *url = c->scratch;
    size_t url_len = c->url_len;
    if (url_len == 0 || url[0] != '/') {
        fc_admin_conn_reply_error(c, 400, "the request target must be a path", NULL, 1);
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

    const struct fc_admin_route *match = NULL;
    int known_path = 0;
    for (size_t i = 0; i < a->n_routes; i++) {
        const struct fc_admin_route *r = &a->routes[i];
        if (route_match(r, req.path, req.path_len, NULL) == 0)
            continue;
        known_path = 1;
        if (strcmp(r->method, method) == 0)
            match = r;
    }
    int public = match != NULL && (match->flags & FC_ADMIN_PUBLIC);
    const char *guard = browser_guard(a, c, method);
    if (guard != NULL) {
        fc_admin_conn_reply_error(c, 403, guard, NULL, !keep);
        return;
    }
    if (a->token != NULL && !public && !authorized(a, c)) {
        fc_admin_conn_reply_error(c, 401, "this endpoint needs Authorization: Bearer <token>",
                                  "WWW-Authenticate: Bearer\r\n", !keep);
        return;
    }
    int path_shown = (int)(req.path_len < QUOTE_MAX ? req.path_len : QUOTE_MAX);
    if (!known_path) {
        char msg[QUOTE_MAX + 64];
        snprintf(msg, sizeof(msg), "no such endpoint: %.*s", path_shown, req.path);
        fc_admin_conn_reply_error(c, 404, msg, NULL, !keep);
        return;
    }
    if (match == NULL) {
        char allow[512];
        size_t n = (size_t)snprintf(allow, sizeof(allow), "Allow: ");
        const char *sep = "";
        for (size_t i = 0; i < a->n_routes; i++) {
            const struct fc_admin_route *r = &a->routes[i];
            if (route_match(r, req.path, req.path_len, NULL) == 0 ||
                n + strlen(r->method) + 5 > sizeof(allow))
                continue;
            n += (size_t)snprintf(allow + n, sizeof(allow) - n, "%s%s", sep, r->method);
            sep = ", ";
        }
        snprintf(allow + n, sizeof(allow) - n, "\r\n");
        char msg[QUOTE_MAX + 64];
        snprintf(msg, sizeof(msg), "method %s not allowed on %.*s", method, path_shown, req.path);
        fc_admin_conn_reply_error(c, 405, msg, allow, !keep);
        return;
    }
    if (match->open != NULL) {
        fc_admin_stream_start(c, match, !public);
        return;
    }
    struct params params = {0};
    if (route_match(match, req.path, req.path_len, &params) < 0) {
        fc_admin_conn_reply_error(c, 400, "malformed percent-encoding in the path", NULL, !keep);
        return;
    }
    req.n_params = params.n;
    for (unsigned i = 0; i < params.n; i++)
        req.params[i] = params.value[i];
    struct fc_admin_response r = {.status = 200, .content_type = json_type, .conn = c};
    fc_admin_handler fn = match->fn;
    fn(match->arg, &req, &r);
    if (c->state ==
        FC_ADMIN_CONN_CLOSING) { /* the handler closed the listener (a reload without it) */
        fc_text_free(&r.body);
        return;
    }
    if (r.later != NULL) {
        r.later->head_only = strcmp(method, "HEAD") == 0;
        r.later->close = !keep;
        c->state = FC_ADMIN_CONN_WAITING;
        fc_admin_conn_timer_arm(c, FC_ADMIN_IDLE_MS); /* an answer that never comes */
        return;
    }
    respond(c, &r, strcmp(method, "HEAD") == 0, NULL, !keep);
}

/* ------------------------------------------------------------------------ */
/* Answers that come later                                                   */
/* ------------------------------------------------------------------------ */

struct fc_admin_later *fc_admin_defer(struct fc_admin_response *resp)
{
    struct fc_admin_later *l = calloc(1, sizeof(*l));
    if (l == NULL || resp->conn == NULL) {
        free(l);
        return NULL;
    }
    l->c = resp->conn;
    l->resp = *resp;
    l->resp.later = NULL;
    resp->body = (struct fc_text){0}; /* moved */
    resp->later = l;
    l->c->later = l;
    return l;
}

struct fc_admin_response *fc_admin_later_response(struct fc_admin_later *l)
{
    return &l->resp;
}

void fc_admin_later_orphan(struct fc_admin_later *l)
{
    l->c->later = NULL;
    l->c = NULL;
}

void fc_admin_later_send(struct fc_admin_later *l)
{
    struct fc_admin_conn *c = l->c;
    if (c != NULL) {
        c->later = NULL;
        uv_timer_stop(&c->timer);
        respond(c, &l->resp, l->head_only, NULL, l->close);
    } else {
        fc_text_free(&l->resp.body);
    }
    free(l);
}

/* Sends "100 Continue" to a client that waits for it before its body. */
static void send_continue(struct fc_admin_conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)line, sizeof(line) - 1);
    int n = uv_try_write(&c->h.stream, &b, 1);
    /* Nothing written: the client sends its body after its own wait. Half: the stream is broken. */
    if (n > 0 && (size_t)n < sizeof(line) - 1)
        fc_admin_conn_close(c);
}

/*
 * Runs the parser over the input that has arrived, up to the end of a
 * request (then answers it), an error (then answers that and closes), or
 * the end of the input (then reads more).
 */
void fc_admin_request_process(struct fc_admin_conn *c)
{
    while (c->state == FC_ADMIN_CONN_READING) {
        /*
         * After a head, the parser runs again even without input: a request
         * without a body ends there, in states that consume nothing.
         */
        if (c->in_off == c->in_len && !c->resumed) {
            c->in_off = c->in_len = 0;
            fc_admin_conn_read_start(c);
            return;
        }
        c->resumed = 0;
        if (!c->in_request) {
            c->in_request = 1;
            fc_admin_conn_timer_arm(c, FC_ADMIN_REQUEST_MS);
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
                fc_admin_conn_reply_error(c, 431, msg, NULL, 1);
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
            fc_admin_conn_reply_error(c, status, msg, NULL, 1);
            return;
        }
        c->in_off += used;
        if (e == HPE_OK)
            continue;
        if (c->msg_done) {
            fc_admin_conn_read_stop(c);
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
            fc_admin_conn_reply_error(c, 413, msg, NULL, 1);
            return;
        }
        if (c->expect_continue && ((c->parser.flags & F_CHUNKED) || c->parser.content_length > 0))
            send_continue(c);
    }
}
