#include "http_rewrite.h"

#include <stdio.h>
#include <string.h>

void fc_head_reset(struct fc_request *h)
{
    h->absolute_form = 0;
    h->method.p = h->target.p = h->host.p = h->reason.p = NULL;
    h->method.len = h->target.len = h->host.len = h->reason.len = 0;
    h->status = 0;
    h->http_major = h->http_minor = 0;
    h->upgrade_ws = h->conn_upgrade = 0;
    h->n_conn_tokens = 0;
    h->n_headers = 0;
}

void fc_head_on_span(struct fc_span *s, const char *at, size_t len)
{
    if (s->p == NULL)
        s->p = at;
    s->len = (uint32_t)(at + len - s->p);
}

/*
 * A field piece either continues the header being named (its value has not
 * started yet) or starts a new one.
 */
int fc_head_on_field(struct fc_request *h, const char *at, size_t len)
{
    struct fc_header *cur = h->n_headers ? &h->headers[h->n_headers - 1] : NULL;
    if (cur == NULL || cur->value.p != NULL || cur->value_done) {
        if (h->n_headers == FC_MAX_HEADERS)
            return -1;
        cur = &h->headers[h->n_headers++];
        cur->name.p = NULL;
        cur->name.len = 0;
        cur->value.p = NULL;
        cur->value.len = 0;
        cur->value_done = 0;
        cur->kind = FC_HDR_OTHER;
    }
    fc_head_on_span(&cur->name, at, len);
    return 0;
}

int fc_head_on_value(struct fc_request *h, const char *at, size_t len)
{
    if (h->n_headers == 0)
        return -1;
    fc_head_on_span(&h->headers[h->n_headers - 1].value, at, len);
    return 0;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

int fc_span_equals(struct fc_span s, const char *lower_name)
{
    size_t n = strlen(lower_name);
    if (s.len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(s.p[i]) != lower_name[i])
            return 0;
    return 1;
}

static int span_equals_span(struct fc_span a, struct fc_span b)
{
    if (a.len != b.len)
        return 0;
    for (uint32_t i = 0; i < a.len; i++)
        if (lower(a.p[i]) != lower(b.p[i]))
            return 0;
    return 1;
}

/* The next element of a comma-separated list from *i on (empty at the end). */
static struct fc_span next_token(struct fc_span v, uint32_t *i)
{
    while (*i < v.len && (is_ows(v.p[*i]) || v.p[*i] == ','))
        (*i)++;
    uint32_t start = *i;
    while (*i < v.len && v.p[*i] != ',' && !is_ows(v.p[*i]))
        (*i)++;
    return (struct fc_span){v.p + start, *i - start};
}

/* Records the tokens of a Connection header that name other headers. Returns -1 on overflow. */
static int note_connection_tokens(struct fc_request *h, struct fc_span v)
{
    uint32_t i = 0;
    while (i < v.len) {
        struct fc_span tok = next_token(v, &i);
        if (tok.len == 0 || fc_span_equals(tok, "close") || fc_span_equals(tok, "keep-alive"))
            continue;
        if (fc_span_equals(tok, "upgrade"))
            h->conn_upgrade = 1;
        /* A name left unremoved would reach the next hop: refuse rather than forward it. */
        if (h->n_conn_tokens == FC_MAX_CONN_TOKENS)
            return -1;
        h->conn_tokens[h->n_conn_tokens++] = tok;
    }
    return 0;
}

/*
 * The kind of a header, by its name. Called once per header; the length
 * narrows the candidates so that most names cost one comparison or none.
 */
static enum fc_header_kind classify(struct fc_span name)
{
    switch (name.len) {
    case 2:
        return fc_span_equals(name, "te") ? FC_HDR_HOP : FC_HDR_OTHER;
    case 4:
        return fc_span_equals(name, "host") ? FC_HDR_HOST : FC_HDR_OTHER;
    case 7:
        return fc_span_equals(name, "trailer") || fc_span_equals(name, "upgrade") ? FC_HDR_HOP
                                                                                  : FC_HDR_OTHER;
    case 9:
        return fc_span_equals(name, "forwarded") ? FC_HDR_FWD : FC_HDR_OTHER;
    case 10:
        return fc_span_equals(name, "connection") || fc_span_equals(name, "keep-alive")
                   ? FC_HDR_HOP
                   : FC_HDR_OTHER;
    case 14:
        return fc_span_equals(name, "content-length") ? FC_HDR_FRAMING : FC_HDR_OTHER;
    case 15:
        return fc_span_equals(name, "x-forwarded-for") ? FC_HDR_XFF : FC_HDR_OTHER;
    case 16:
        return fc_span_equals(name, "proxy-connection") ? FC_HDR_HOP : FC_HDR_OTHER;
    case 17:
        if (fc_span_equals(name, "transfer-encoding"))
            return FC_HDR_FRAMING;
        return fc_span_equals(name, "x-forwarded-proto") ? FC_HDR_XFP : FC_HDR_OTHER;
    default:
        return FC_HDR_OTHER;
    }
}

int fc_head_on_value_complete(struct fc_request *h)
{
    if (h->n_headers == 0)
        return 0;
    struct fc_header *cur = &h->headers[h->n_headers - 1];
    cur->value_done = 1;
    if (cur->value.p == NULL) {
        /* An empty value: point it just past the name so it is not NULL. */
        cur->value.p = cur->name.p + cur->name.len;
        cur->value.len = 0;
    }
    while (cur->value.len > 0 && is_ows(cur->value.p[0])) {
        cur->value.p++;
        cur->value.len--;
    }
    while (cur->value.len > 0 && is_ows(cur->value.p[cur->value.len - 1]))
        cur->value.len--;
    /* The parser hands a folded value over as one span with CR LF inside it. */
    if (memchr(cur->value.p, '\r', cur->value.len) || memchr(cur->value.p, '\n', cur->value.len))
        return -1;
    cur->kind = (uint8_t)classify(cur->name);
    if (cur->kind == FC_HDR_HOST) {
        if (h->host.p != NULL)
            return -1; /* two Hosts: which one routes is ambiguous */
        h->host = cur->value;
    } else if (cur->kind == FC_HDR_HOP && fc_span_equals(cur->name, "connection")) {
        return note_connection_tokens(h, cur->value);
    } else if (cur->kind == FC_HDR_HOP && fc_span_equals(cur->name, "upgrade")) {
        for (uint32_t i = 0; i < cur->value.len;)
            if (fc_span_equals(next_token(cur->value, &i), "websocket"))
                h->upgrade_ws = 1;
    }
    return 0;
}

int fc_head_wants_websocket(const struct fc_request *req)
{
    return req->upgrade_ws && req->conn_upgrade && req->http_major == 1 && req->http_minor == 1 &&
           fc_span_equals(req->method, "get");
}

/*
 * The characters a Host value (uri-host [":" port], RFC 9112 3.2 and RFC 3986
 * 3.2.2) may hold: unreserved, sub-delims, ':' and the brackets of an IP
 * literal. A space, '/', '@', '?', '#' or '\\' would make the authority mean
 * one thing here and another to the backend; so would a percent-encoding
 * ("%61dmin.example"), which RFC 3986 allows in a reg-name but no DNS name
 * holds, and which a backend may decode into a name a route was written for.
 */
static int host_valid(struct fc_span host)
{
    for (uint32_t i = 0; i < host.len; i++) {
        char c = host.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == '\0' || strchr("-._~!$&'()*+,;=:[]", c) == NULL)
            return 0;
    }
    return 1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * A path that has one meaning only: no empty segment ("//"), no dot-segment
 * ("/./", "/../", or one at the end), and no percent-encoding of an
 * unreserved character ("%6c" for "l"), nor a '%' not followed by two hex
 * digits (RFC 3986 2.3, 3.3, 6.2.2). Each of those names, after the
 * normalisation a backend may apply, the same resource as another path, which
 * would let a request slip past a route (and its rate limit) written for
 * that path. The query is not looked at.
 */
static int path_canonical(struct fc_span t)
{
    uint32_t end = 0;
    while (end < t.len && t.p[end] != '?' && t.p[end] != '#')
        end++;
    for (uint32_t i = 0; i < end; i++) {
        char c = t.p[i];
        if (c == '/') {
            uint32_t rest = end - i - 1;
            const char *n = t.p + i + 1;
            if (rest > 0 && n[0] == '/')
                return 0;
            if ((rest == 1 && n[0] == '.') || (rest >= 2 && n[0] == '.' && n[1] == '/'))
                return 0;
            if ((rest == 2 && n[0] == '.' && n[1] == '.') ||
                (rest >= 3 && n[0] == '.' && n[1] == '.' && n[2] == '/'))
                return 0;
        } else if (c == '%') {
            int hi = i + 2 < end ? hex_value(t.p[i + 1]) : -1;
            int lo = i + 2 < end ? hex_value(t.p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return 0;
            char d = (char)(hi * 16 + lo);
            if ((d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'Z') || (d >= '0' && d <= '9') ||
                d == '-' || d == '.' || d == '_' || d == '~')
                return 0;
        }
    }
    return 1;
}

/* The form of the target (origin, absolute, asterisk); the authority of an absolute one. */
static int target_form(struct fc_request *h)
{
    if (h->host.p != NULL && !host_valid(h->host))
        return -1;
    struct fc_span t = h->target;
    if (t.len > 0 && t.p[0] == '/')
        return 0;
    /* asterisk-form: "OPTIONS * HTTP/1.1" asks about the server as a whole (RFC 9112 3.2.4). */
    if (t.len == 1 && t.p[0] == '*' && fc_span_equals(h->method, "options"))
        return 0;
    static const char scheme[] = "http://";
    if (t.len < sizeof(scheme) - 1 || !fc_span_equals((struct fc_span){t.p, 7}, scheme))
        return -1;
    const char *auth = t.p + 7;
    const char *end = t.p + t.len;
    const char *path = memchr(auth, '/', (size_t)(end - auth));
    const char *q = memchr(auth, '?', (size_t)(end - auth));
    if (q != NULL && (path == NULL || q < path))
        path = q;
    const char *auth_end = path ? path : end;
    if (auth_end == auth || memchr(auth, '@', (size_t)(auth_end - auth)) != NULL)
        return -1; /* no host, or user info: refused */
    h->host.p = auth;
    h->host.len = (uint32_t)(auth_end - auth);
    if (!host_valid(h->host))
        return -1;
    if (path != NULL && *path == '/') {
        h->target.p = path;
        h->target.len = (uint32_t)(end - path);
    } else {
        /* "http://h" or "http://h?q": the path is "/" (kept in static storage). */
        static const char slash[] = "/";
        h->target.p = slash;
        h->target.len = 1;
        if (path != NULL) {
            /* "?q" without a path cannot be expressed as one span with "/": refuse. */
            return -1;
        }
    }
    h->absolute_form = 1;
    return 0;
}

int fc_head_request_complete(struct fc_request *h)
{
    int rc = target_form(h);
    if (rc != 0)
        return rc;
    if (h->target.len == 1 && h->target.p[0] == '*')
        return 0;
    return path_canonical(h->target) ? 0 : -1;
}

/*
 * Reads the codings of one Transfer-Encoding value into *codings and
 * *chunked_last: -1 when an element is empty or not a token (a coding's
 * parameters included: none is defined for a request), when "chunked" is not
 * the last coding so far, or appears twice.
 */
static int te_value(struct fc_span v, uint32_t *codings, int *chunked_last)
{
    uint32_t i = 0;
    for (;;) {
        while (i < v.len && is_ows(v.p[i]))
            i++;
        uint32_t start = i;
        while (i < v.len && fc_is_tchar((unsigned char)v.p[i]))
            i++;
        struct fc_span tok = {v.p + start, i - start};
        while (i < v.len && is_ows(v.p[i]))
            i++;
        if (tok.len == 0 || (i < v.len && v.p[i] != ','))
            return -1;
        if (*chunked_last)
            return -1; /* something after chunked, or chunked twice */
        *chunked_last = fc_span_equals(tok, "chunked");
        (*codings)++;
        if (i == v.len)
            return 0;
        i++; /* the comma */
    }
}

int fc_head_framing_check(const struct fc_request *h, int chunked_by_parser)
{
    uint32_t codings = 0;
    int chunked_last = 0, te = 0, cl = 0;
    for (uint32_t i = 0; i < h->n_headers; i++) {
        const struct fc_header *hdr = &h->headers[i];
        if (hdr->kind != FC_HDR_FRAMING)
            continue;
        if (fc_span_equals(hdr->name, "content-length")) {
            cl = 1;
            continue;
        }
        te = 1;
        if (te_value(hdr->value, &codings, &chunked_last) != 0)
            return -1;
    }
    if (!te)
        return 0;
    /* A request body is chunked last, or has no framing at all; and never two framings. */
    if (!chunked_last || cl || !chunked_by_parser)
        return -1;
    return 0;
}

int fc_head_check_request(struct fc_request *req, int chunked, uint64_t content_length,
                          uint64_t max_body, const char **why)
{
    if (req->http_major != 1) {
        *why = "HTTP version not supported"; /* "GET / HTTP/2.0" in HTTP/1 syntax */
        return 505;
    }
    if (fc_span_equals(req->method, "connect")) {
        *why = "CONNECT";
        return 405;
    }
    if (fc_head_request_complete(req) != 0) {
        *why = "unsupported request target or Host";
        return 400;
    }
    if (fc_head_framing_check(req, chunked) != 0) {
        *why = "invalid Transfer-Encoding";
        return 400;
    }
    if (req->host.p == NULL && req->http_minor != 0) {
        *why = "HTTP/1.1 request without Host";
        return 400;
    }
    if (max_body != 0 && !chunked && content_length > max_body) {
        *why = "declared body larger than limits.max_body_bytes";
        return 413;
    }
    return 0;
}

/*
 * Headers that describe one hop (RFC 9110 7.6.1) are never forwarded. The
 * framing headers (Content-Length, Transfer-Encoding) are not among them: the
 * body is relayed with its framing, so they travel with it, and neither they
 * nor Host can be removed by naming them in Connection.
 */
int fc_header_is_hop_by_hop(const struct fc_request *h, const struct fc_header *hdr)
{
    if (hdr->kind == FC_HDR_HOP)
        return 1;
    if (hdr->kind != FC_HDR_OTHER || h->n_conn_tokens == 0)
        return 0;
    for (uint32_t i = 0; i < h->n_conn_tokens; i++)
        if (span_equals_span(hdr->name, h->conn_tokens[i]))
            return 1;
    return 0;
}

/* A bounded writer: once anything does not fit, len goes past cap and stays there. */
struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    /* n == 0 with s NULL is an empty span (a status line without a reason). */
    if (n > 0 && o->len + n <= o->cap)
        memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_span(struct out *o, struct fc_span s)
{
    put(o, s.p, s.len);
}

static void put_header(struct out *o, const struct fc_header *hdr)
{
    put_span(o, hdr->name);
    put(o, ": ", 2);
    put_span(o, hdr->value);
    put(o, "\r\n", 2);
}

static int finish(struct out *o)
{
    return o->len <= o->cap ? (int)o->len : -1;
}

int fc_rewrite_request(const struct fc_request *req, const struct fc_forward_info *fw, char *out,
                       size_t cap)
{
    struct out o = {out, 0, cap};
    put_span(&o, req->method);
    put(&o, " ", 1);
    put_span(&o, req->target);
    put_str(&o, " HTTP/1.1\r\n");

    for (uint32_t i = 0; i < req->n_headers; i++) {
        const struct fc_header *hdr = &req->headers[i];
        if (fc_header_is_hop_by_hop(req, hdr) || hdr->kind == FC_HDR_XFP)
            continue;
        if (hdr->kind == FC_HDR_XFF || hdr->kind == FC_HDR_FWD)
            continue; /* merged into the one written below */
        if (req->absolute_form && hdr->kind == FC_HDR_HOST)
            continue; /* the target's authority wins */
        if (fw->conditional != NULL && (fc_span_equals(hdr->name, "if-none-match") ||
                                        fc_span_equals(hdr->name, "if-modified-since")))
            continue; /* the cache's validators go instead */
        put_header(&o, hdr);
    }
    if (fw->conditional != NULL)
        put(&o, fw->conditional, fw->conditional_len);
    if (req->absolute_form) {
        put_str(&o, "Host: ");
        put_span(&o, req->host);
        put(&o, "\r\n", 2);
    } else if (req->host.p == NULL && fw->default_host != NULL) {
        put_str(&o, "Host: ");
        put(&o, fw->default_host, fw->default_host_len);
        put(&o, "\r\n", 2);
    }

    /* X-Forwarded-For: every incoming value, in order, then the client. */
    put_str(&o, "X-Forwarded-For: ");
    for (uint32_t i = 0; i < req->n_headers; i++) {
        const struct fc_header *hdr = &req->headers[i];
        if (hdr->kind != FC_HDR_XFF || hdr->value.len == 0)
            continue;
        put_span(&o, hdr->value);
        put(&o, ", ", 2);
    }
    put(&o, fw->client_ip, fw->client_ip_len);
    put_str(&o, "\r\nX-Forwarded-Proto: ");
    put_str(&o, fw->proto);
    put(&o, "\r\n", 2);
    if (fw->websocket)
        put_str(&o, "Connection: Upgrade\r\nUpgrade: websocket\r\n");

    /*
     * Forwarded (RFC 7239), when the client sent one: its elements, in order,
     * then ours, so that the chain stays true. An IPv6 address is quoted in
     * brackets. Requests without one get none (X-Forwarded-* say the same).
     */
    int fwd = 0;
    for (uint32_t i = 0; i < req->n_headers; i++) {
        const struct fc_header *hdr = &req->headers[i];
        if (hdr->kind != FC_HDR_FWD || hdr->value.len == 0)
            continue;
        put_str(&o, fwd++ ? ", " : "Forwarded: ");
        put_span(&o, hdr->value);
    }
    if (fwd > 0) {
        int v6 = memchr(fw->client_ip, ':', fw->client_ip_len) != NULL;
        put_str(&o, v6 ? ", for=\"[" : ", for=");
        put(&o, fw->client_ip, fw->client_ip_len);
        put_str(&o, v6 ? "]\";proto=" : ";proto=");
        put_str(&o, fw->proto);
        put(&o, "\r\n", 2);
    }
    put(&o, "\r\n", 2);
    return finish(&o);
}

int fc_rewrite_response(const struct fc_request *resp, unsigned flags, char *out, size_t cap)
{
    struct out o = {out, 0, cap};
    int st = resp->status; /* three digits: llhttp accepts no other */
    char status[13] = {'H',
                       'T',
                       'T',
                       'P',
                       '/',
                       '1',
                       '.',
                       '1',
                       ' ',
                       (char)('0' + st / 100 % 10),
                       (char)('0' + st / 10 % 10),
                       (char)('0' + st % 10),
                       ' '};
    put(&o, status, sizeof(status));
    put_span(&o, resp->reason);
    put(&o, "\r\n", 2);
    for (uint32_t i = 0; i < resp->n_headers; i++) {
        const struct fc_header *hdr = &resp->headers[i];
        if (fc_header_is_hop_by_hop(resp, hdr))
            continue;
        if ((flags & FC_RESP_DECHUNK) && hdr->kind == FC_HDR_FRAMING &&
            fc_span_equals(hdr->name, "transfer-encoding"))
            continue;
        put_header(&o, hdr);
    }
    if (flags & FC_RESP_UPGRADE)
        put_str(&o, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else if (flags & FC_RESP_CLOSE)
        put_str(&o, "Connection: close\r\n");
    else if (flags & FC_RESP_KEEPALIVE)
        put_str(&o, "Connection: keep-alive\r\n");
    put(&o, "\r\n", 2);
    return finish(&o);
}
