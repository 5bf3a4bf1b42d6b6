/*
 * libFuzzer target: the response cache's decisions and entries
 * (cache_policy.c, cache_entry.c) on any response head, request head and
 * bytes. The input is response header lines, a blank line, request header
 * lines ("Name: value", '\n' between them); its first byte picks the status.
 * What a user relies on, each an abort() when broken:
 *
 *   - a response the verdict stores encodes to a meta that decodes, whose
 *     head reads back with the same lines and makes a hit head that ends in
 *     an empty line; none of the hop-by-hop or framing headers is in it;
 *   - a stored response has a lifetime >= 0 and an age >= 0;
 *   - an HTTP-date that parses formats back to a date that parses to the
 *     same time;
 *   - the raw input as a meta, and every header value as a date or as a
 *     client conditional, never crashes.
 */
#include "cache_entry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NOW INT64_C(1796292000)

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Header lines of text[0, len) into h, as spans into text. Returns where they ended. */
static size_t lines(const char *text, size_t len, struct fc_request *h)
{
    size_t at = 0;
    while (at < len && h->n_headers < FC_MAX_HEADERS) {
        const char *p = text + at;
        const char *nl = memchr(p, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - p) : len - at;
        at += n + (nl != NULL);
        if (n == 0)
            break; /* the blank line */
        const char *colon = memchr(p, ':', n);
        if (colon == NULL || colon == p)
            continue;
        const char *v = colon + 1, *end = p + n;
        while (v < end && *v == ' ')
            v++;
        struct fc_header *hd = &h->headers[h->n_headers++];
        hd->name = (struct fc_span){p, (uint32_t)(colon - p)};
        hd->value = (struct fc_span){v, (uint32_t)(end - v)};
    }
    return at;
}

static const int statuses[] = {200, 203, 204, 206, 300, 301, 302, 304, 308, 404, 410, 500};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static struct fc_request req, resp, back;
    static char meta[FC_CACHE_META_MAX], out[FC_CACHE_META_MAX + 512], key[FC_CACHE_KEY_MAX];
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    resp.status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
    resp.reason = (struct fc_span){"OK", 2};
    size_t at = lines(text, len, &resp);
    lines(text + at, len - at, &req);
    req.method = (struct fc_span){(data[0] & 0x80) ? "HEAD" : "GET", (data[0] & 0x80) ? 4u : 3u};
    req.target = (struct fc_span){"/x", 2};
    req.host = (struct fc_span){"Example", 7};

    struct fc_cache_meta m;
    fc_cache_meta_decode(data, size, &m); /* anything at all: refused or read, never a crash */

    struct fc_cache_verdict v;
    fc_cache_response_verdict(&req, &resp, NOW - (data[0] & 3), NOW, &v);
    if (v.store) {
        check(v.lifetime_s >= 0 && v.age_s >= 0);
        size_t n = fc_cache_meta_encode(&resp, &v, NOW, meta, sizeof(meta));
        if (n > 0) {
            check(fc_cache_meta_decode(meta, n, &m) == 0);
            check(!m.stub && m.status == resp.status && m.lifetime_s == v.lifetime_s);
            check(fc_cache_meta_head(&m, &back) == 0);
            for (uint32_t i = 0; i < back.n_headers; i++) {
                struct fc_span name = back.headers[i].name;
                check(!(name.len == 14 && strncasecmp(name.p, "Content-Length", 14) == 0));
                check(!(name.len == 17 && strncasecmp(name.p, "Transfer-Encoding", 17) == 0));
                check(!(name.len == 3 && strncasecmp(name.p, "Age", 3) == 0));
            }
            size_t h = fc_cache_hit_head(&m, 10, NOW + 5, data[0] & 1, "hit", out, sizeof(out));
            check(h == 0 || (h >= 4 && memcmp(out + h - 4, "\r\n\r\n", 4) == 0));
            fc_cache_is_fresh(&m, NOW + 5);
        }
        fc_cache_key(&req, data[0] & 2, v.vary, key, sizeof(key));
    }
    fc_cache_request_kind(&req);
    for (uint32_t i = 0; i < resp.n_headers; i++) {
        int64_t t = 0;
        struct fc_span value = resp.headers[i].value;
        if (fc_http_date_parse(value.p, value.len, &t) == 0 && t > -INT64_C(62135596800) &&
            t < INT64_C(253402300800)) {
            char d[64];
            int64_t again = 0;
            fc_http_date_format(t, d, sizeof(d));
            check(fc_http_date_parse(d, strlen(d), &again) == 0 && again == t);
        }
        fc_cache_not_modified(&req, value, value);
    }
    return 0;
}
