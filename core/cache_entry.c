/*
 * Keys and metas of the response cache; see cache_entry.h.
 *
 * A meta is read back only by the process that wrote it (a store hands
 * entries on across reloads, never across restarts), so its fixed part is
 * a struct in the machine's own layout, marked with META_MAGIC, which
 * changes with the layout.
 */
#include "cache_entry.h"

#include "http_rewrite.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define META_MAGIC 0x666d6331u /* "fmc1" */
#define FLAG_STUB 1u
#define FLAG_NO_CACHE 2u

struct meta_fixed {
    uint32_t magic;
    uint16_t status;
    uint8_t flags;
    uint8_t reason_len;
    int64_t response_time, age_s, lifetime_s;
    uint32_t vary_len, headers_len;
    uint32_t etag_off, etag_len, lm_off, lm_len; /* within the header lines */
};

/* Appends n bytes to buf at *at; returns 0, or -1 when they do not fit in cap. */
static int put(char *buf, size_t cap, size_t *at, const void *p, size_t n)
{
    if (n > cap - *at)
        return -1;
    if (n > 0)
        memcpy(buf + *at, p, n);
    *at += n;
    return 0;
}

static int span_is(struct fc_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

/* ---- keys --------------------------------------------------------------- */

/* The request's values of the header `name`, joined by ", ". */
static int put_values(const struct fc_request *req, struct fc_span name, char *buf, size_t cap,
                      size_t *at)
{
    int first = 1;
    for (uint32_t i = 0; i < req->n_headers && i < FC_MAX_HEADERS; i++) {
        const struct fc_header *h = &req->headers[i];
        if (h->name.len != name.len || strncasecmp(h->name.p, name.p, name.len) != 0)
            continue;
        if ((!first && put(buf, cap, at, ", ", 2) < 0) ||
            put(buf, cap, at, h->value.p, h->value.len) < 0)
            return -1;
        first = 0;
    }
    return 0;
}

size_t fc_cache_key(const struct fc_request *req, int https, struct fc_span vary, char *buf,
                    size_t cap)
{
    size_t at = 0;
    const char *scheme = https ? "https://" : "http://";
    if (put(buf, cap, &at, req->target.p, req->target.len) < 0 || put(buf, cap, &at, "\n", 1) < 0 ||
        put(buf, cap, &at, scheme, strlen(scheme)) < 0)
        return 0;
    /* Host names are case-insensitive: one key for "Example.com" and "example.com". */
    for (uint32_t i = 0; i < req->host.len; i++) {
        char ch = req->host.p[i];
        ch = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        if (put(buf, cap, &at, &ch, 1) < 0)
            return 0;
    }
    const char *p = vary.p, *end = vary.p + vary.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *n0 = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p == n0)
            break;
        struct fc_span name = {n0, (uint32_t)(p - n0)};
        if (put(buf, cap, &at, "\n", 1) < 0)
            return 0;
        for (uint32_t i = 0; i < name.len; i++) {
            char ch = name.p[i];
            ch = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
            if (put(buf, cap, &at, &ch, 1) < 0)
                return 0;
        }
        if (put(buf, cap, &at, "=", 1) < 0 || put_values(req, name, buf, cap, &at) < 0)
            return 0;
    }
    return at;
}

/* ---- metas -------------------------------------------------------------- */

/* Whether a response header is kept in the meta. */
static int kept(const struct fc_request *resp, const struct fc_header *h)
{
    if (h->kind == FC_HDR_HOP || h->kind == FC_HDR_FRAMING || fc_header_is_hop_by_hop(resp, h))
        return 0;
    /* By name too, for heads that did not come from the parser (a 304's merge, tests). */
    static const char *const dropped[] = {"Age",        "Cache-Status",      "Content-Length",
                                          "Connection", "Transfer-Encoding", "Keep-Alive",
                                          NULL};
    for (int i = 0; dropped[i] != NULL; i++)
        if (span_is(h->name, dropped[i]))
            return 0;
    return 1;
}

static size_t encode(const struct fc_request *resp, const struct fc_cache_verdict *v,
                     int64_t response_time, struct fc_span vary, int stub, char *buf, size_t cap)
{
    struct meta_fixed f = {.magic = META_MAGIC, .vary_len = vary.len};
    size_t at = sizeof(f);
    if (cap < at)
        return 0;
    if (!stub) {
        f.status = (uint16_t)resp->status;
        f.flags = v->no_cache ? FLAG_NO_CACHE : 0;
        f.reason_len = (uint8_t)(resp->reason.len < 255 ? resp->reason.len : 255);
        f.response_time = response_time;
        f.age_s = v->age_s;
        f.lifetime_s = v->lifetime_s;
        if (put(buf, cap, &at, resp->reason.p, f.reason_len) < 0)
            return 0;
    } else {
        f.flags = FLAG_STUB;
    }
    if (put(buf, cap, &at, vary.p, vary.len) < 0)
        return 0;
    size_t headers_at = at;
    for (uint32_t i = 0; !stub && i < resp->n_headers && i < FC_MAX_HEADERS; i++) {
        const struct fc_header *h = &resp->headers[i];
        if (!kept(resp, h))
            continue;
        if (put(buf, cap, &at, h->name.p, h->name.len) < 0 || put(buf, cap, &at, ": ", 2) < 0)
            return 0;
        uint32_t value_off = (uint32_t)(at - headers_at);
        if (put(buf, cap, &at, h->value.p, h->value.len) < 0 || put(buf, cap, &at, "\r\n", 2) < 0)
            return 0;
        if (span_is(h->name, "ETag") && f.etag_len == 0) {
            f.etag_off = value_off;
            f.etag_len = h->value.len;
        } else if (span_is(h->name, "Last-Modified") && f.lm_len == 0) {
            f.lm_off = value_off;
            f.lm_len = h->value.len;
        }
    }
    f.headers_len = (uint32_t)(at - headers_at);
    memcpy(buf, &f, sizeof(f));
    return at;
}

size_t fc_cache_meta_encode(const struct fc_request *resp, const struct fc_cache_verdict *v,
                            int64_t response_time, char *buf, size_t cap)
{
    return encode(resp, v, response_time, v->vary, 0, buf, cap);
}

size_t fc_cache_stub_encode(struct fc_span vary, char *buf, size_t cap)
{
    return encode(NULL, NULL, 0, vary, 1, buf, cap);
}

int fc_cache_meta_decode(const void *data, size_t len, struct fc_cache_meta *m)
{
    struct meta_fixed f;
    if (len < sizeof(f))
        return -1;
    memcpy(&f, data, sizeof(f));
    const char *p = (const char *)data + sizeof(f);
    size_t rest = len - sizeof(f);
    if (f.magic != META_MAGIC || (size_t)f.reason_len + f.vary_len + f.headers_len != rest ||
        (uint64_t)f.etag_off + f.etag_len > f.headers_len ||
        (uint64_t)f.lm_off + f.lm_len > f.headers_len)
        return -1;
    const char *headers = p + f.reason_len + f.vary_len;
    *m = (struct fc_cache_meta){
        .stub = (f.flags & FLAG_STUB) != 0,
        .status = f.status,
        .no_cache = (f.flags & FLAG_NO_CACHE) != 0,
        .response_time = f.response_time,
        .age_s = f.age_s,
        .lifetime_s = f.lifetime_s,
        .reason = {p, f.reason_len},
        .vary = {p + f.reason_len, f.vary_len},
        .headers = {headers, f.headers_len},
        .etag = {headers + f.etag_off, f.etag_len},
        .last_modified = {headers + f.lm_off, f.lm_len},
    };
    return 0;
}

int64_t fc_cache_current_age(const struct fc_cache_meta *m, int64_t now)
{
    int64_t resident = now > m->response_time ? now - m->response_time : 0;
    return m->age_s + resident;
}

int fc_cache_is_fresh(const struct fc_cache_meta *m, int64_t now)
{
    return !m->stub && !m->no_cache && fc_cache_current_age(m, now) < m->lifetime_s;
}

/* The header lines a 304 keeps (RFC 9110 15.4.5). */
static int kept_in_304(const char *line, size_t len)
{
    static const char *const names[] = {
        "Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Vary", NULL};
    for (int i = 0; names[i] != NULL; i++) {
        size_t n = strlen(names[i]);
        if (len > n && line[n] == ':' && strncasecmp(line, names[i], n) == 0)
            return 1;
    }
    return 0;
}

size_t fc_cache_hit_head(const struct fc_cache_meta *m, uint64_t body_len, int64_t now,
                         int not_modified, const char *cache_status, char *buf, size_t cap)
{
    char line[128];
    size_t at = 0;
    int n = not_modified ? snprintf(line, sizeof(line), "HTTP/1.1 304 Not Modified\r\n")
                         : snprintf(line, sizeof(line), "HTTP/1.1 %d %.*s\r\n", m->status,
                                    (int)m->reason.len, m->reason.p);
    if (put(buf, cap, &at, line, (size_t)n) < 0)
        return 0;
    const char *p = m->headers.p, *end = p + m->headers.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol != NULL ? eol + 1 : end;
        if ((!not_modified || kept_in_304(p, (size_t)(next - p))) &&
            put(buf, cap, &at, p, (size_t)(next - p)) < 0)
            return 0;
        p = next;
    }
    n = snprintf(line, sizeof(line), "Age: %lld\r\nCache-Status: fulcrum; %s\r\n",
                 (long long)fc_cache_current_age(m, now), cache_status);
    if (n < 0 || (size_t)n >= sizeof(line) || put(buf, cap, &at, line, (size_t)n) < 0)
        return 0;
    if (!not_modified && m->status != 204) { /* a 204 has no Content-Length (RFC 9110 8.6) */
        n = snprintf(line, sizeof(line), "Content-Length: %llu\r\n", (unsigned long long)body_len);
        if (put(buf, cap, &at, line, (size_t)n) < 0)
            return 0;
    }
    if (put(buf, cap, &at, "\r\n", 2) < 0)
        return 0;
    return at;
}

int fc_cache_meta_head(const struct fc_cache_meta *m, struct fc_request *head)
{
    memset(head, 0, sizeof(*head));
    head->status = m->status;
    head->reason = m->reason;
    head->http_major = head->http_minor = 1;
    const char *p = m->headers.p, *end = p + m->headers.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol || eol - 1 < colon + 1 || eol[-1] != '\r' ||
            head->n_headers == FC_MAX_HEADERS)
            return -1;
        const char *v = colon + 1;
        while (v < eol - 1 && (*v == ' ' || *v == '\t'))
            v++;
        struct fc_header *h = &head->headers[head->n_headers++];
        h->name = (struct fc_span){p, (uint32_t)(colon - p)};
        h->value = (struct fc_span){v, (uint32_t)(eol - 1 - v)};
        h->value_done = 1;
        p = eol + 1;
    }
    return 0;
}

static int named_in(const struct fc_request *h, struct fc_span name)
{
    for (uint32_t i = 0; i < h->n_headers && i < FC_MAX_HEADERS; i++)
        if (h->headers[i].name.len == name.len &&
            strncasecmp(h->headers[i].name.p, name.p, name.len) == 0)
            return 1;
    return 0;
}

int fc_cache_merge_304(const struct fc_request *stored, const struct fc_request *not_modified,
                       struct fc_request *merged)
{
    memset(merged, 0, sizeof(*merged));
    merged->status = stored->status;
    merged->reason = stored->reason;
    merged->http_major = merged->http_minor = 1;
    for (uint32_t i = 0; i < stored->n_headers && i < FC_MAX_HEADERS; i++) {
        if (named_in(not_modified, stored->headers[i].name))
            continue;
        merged->headers[merged->n_headers++] = stored->headers[i];
    }
    for (uint32_t i = 0; i < not_modified->n_headers && i < FC_MAX_HEADERS; i++) {
        const struct fc_header *h = &not_modified->headers[i];
        if (!kept(not_modified, h))
            continue;
        if (merged->n_headers == FC_MAX_HEADERS)
            return -1;
        merged->headers[merged->n_headers++] = *h;
    }
    return 0;
}
