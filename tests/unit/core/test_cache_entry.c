/*
 * Keys and metas of the response cache (core/cache_entry.c): the key tells
 * apart what a cache must (target, host, the headers a Vary names) and not
 * what it must not (the host's case); a meta gives back the stored head
 * without hop-by-hop and framing headers; a hit's head says Age and
 * Cache-Status and frames the body itself; a 304 refreshes the freshness.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include "cache_entry.h"

#include <stdio.h>
#include <string.h>

#define NOW INT64_C(1796292000) /* Thu, 03 Dec 2026 10:00:00 GMT */

/* Fills h from "Name: value" lines separated by '\n' (copied into buf, which must outlive h). */
static void head(struct fc_request *h, char *buf, size_t buflen, int status, const char *lines)
{
    memset(h, 0, sizeof(*h));
    snprintf(buf, buflen, "%s", lines);
    h->status = status;
    h->reason = (struct fc_span){"OK", 2};
    h->method = (struct fc_span){"GET", 3};
    h->target = (struct fc_span){"/a?b=1", 6};
    h->host = (struct fc_span){"Example.COM", 11};
    char *p = buf;
    while (*p != '\0') {
        char *nl = strchr(p, '\n');
        char *end = nl != NULL ? nl : p + strlen(p);
        char *colon = memchr(p, ':', (size_t)(end - p));
        assert_non_null(colon);
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        struct fc_header *hd = &h->headers[h->n_headers++];
        hd->name = (struct fc_span){p, (uint32_t)(colon - p)};
        hd->value = (struct fc_span){v, (uint32_t)(end - v)};
        if (nl == NULL)
            break;
        p = nl + 1;
    }
}

static struct fc_span span(const char *s)
{
    return (struct fc_span){s, (uint32_t)strlen(s)};
}

static void test_keys(void **unused)
{
    char buf[256], lines[256];
    struct fc_request req;
    head(&req, lines, sizeof(lines), 0, "Accept-Encoding: gzip\nAccept: a\nAccept: b");
    size_t n = fc_cache_key(&req, 0, span(""), buf, sizeof(buf));
    assert_int_equal(n, strlen("/a?b=1\nhttp://example.com"));
    assert_memory_equal(buf, "/a?b=1\nhttp://example.com", n);
    /* The same target over TLS is another resource (RFC 9110 4.2). */
    n = fc_cache_key(&req, 1, span(""), buf, sizeof(buf));
    assert_memory_equal(buf, "/a?b=1\nhttps://example.com", n);
    /* A variant: each header the Vary names, in lower case, with the request's values. */
    n = fc_cache_key(&req, 0, span("Accept-Encoding, ACCEPT,User-Agent"), buf, sizeof(buf));
    const char *want = "/a?b=1\nhttp://example.com\naccept-encoding=gzip\naccept=a, b\nuser-agent=";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
    /* Too long for the room given: no key at all. */
    assert_int_equal(fc_cache_key(&req, 0, span(""), buf, 10), 0);
}

static void test_meta_round_trip(void **unused)
{
    char lines[512], meta[1024];
    struct fc_request resp;
    head(&resp, lines, sizeof(lines), 200,
         "Content-Type: text/plain\nCache-Control: max-age=60\nConnection: x-private\n"
         "X-Private: hop\nContent-Length: 5\nTransfer-Encoding: chunked\nAge: 3\n"
         "ETag: \"v1\"\nLast-Modified: Thu, 03 Dec 2026 09:00:00 GMT\nVary: Accept-Encoding");
    /* The parser notes what Connection names: hop-by-hop as well. */
    resp.conn_tokens[resp.n_conn_tokens++] = span("x-private");
    struct fc_request req;
    char qlines[8];
    head(&req, qlines, sizeof(qlines), 0, "");
    struct fc_cache_verdict v;
    fc_cache_response_verdict(&req, &resp, NOW, NOW, &v);
    assert_true(v.store);
    size_t n = fc_cache_meta_encode(&resp, &v, NOW, meta, sizeof(meta));
    assert_true(n > 0);

    struct fc_cache_meta m;
    assert_int_equal(fc_cache_meta_decode(meta, n, &m), 0);
    assert_false(m.stub);
    assert_int_equal(m.status, 200);
    assert_int_equal(m.lifetime_s, 60);
    assert_int_equal(m.age_s, 3);
    assert_memory_equal(m.vary.p, "Accept-Encoding", m.vary.len);
    assert_memory_equal(m.etag.p, "\"v1\"", m.etag.len);
    assert_int_equal(m.last_modified.len, 29);
    const char *want = "Content-Type: text/plain\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n"
                       "Last-Modified: Thu, 03 Dec 2026 09:00:00 GMT\r\nVary: Accept-Encoding\r\n";
    assert_int_equal(m.headers.len, strlen(want));
    assert_memory_equal(m.headers.p, want, m.headers.len);

    /* Fresh for 60 s counting the 3 it was old when it came. */
    assert_int_equal(fc_cache_current_age(&m, NOW + 10), 13);
    assert_true(fc_cache_is_fresh(&m, NOW + 56));
    assert_false(fc_cache_is_fresh(&m, NOW + 57));

    /* Bytes that are not a meta are refused, truncated ones too. */
    assert_int_equal(fc_cache_meta_decode(meta, n - 1, &m), -1);
    assert_int_equal(fc_cache_meta_decode("not a meta at all, not at all, no", 33, &m), -1);
}

static void test_stub(void **unused)
{
    char meta[256];
    size_t n = fc_cache_stub_encode(span("Accept-Encoding"), meta, sizeof(meta));
    struct fc_cache_meta m;
    assert_int_equal(fc_cache_meta_decode(meta, n, &m), 0);
    assert_true(m.stub);
    assert_memory_equal(m.vary.p, "Accept-Encoding", m.vary.len);
    assert_false(fc_cache_is_fresh(&m, NOW));
}

static void decode(struct fc_request *resp, char *meta, size_t cap, struct fc_cache_meta *m)
{
    struct fc_request req;
    char qlines[8];
    head(&req, qlines, sizeof(qlines), 0, "");
    struct fc_cache_verdict v;
    fc_cache_response_verdict(&req, resp, NOW, NOW, &v);
    assert_true(v.store);
    size_t n = fc_cache_meta_encode(resp, &v, NOW, meta, cap);
    assert_int_equal(fc_cache_meta_decode(meta, n, m), 0);
}

static void test_hit_heads(void **unused)
{
    char lines[256], meta[1024], out[1024];
    struct fc_request resp;
    head(&resp, lines, sizeof(lines), 200,
         "Content-Type: text/plain\nCache-Control: max-age=60\nETag: \"v1\"\nX-Backend: a");
    struct fc_cache_meta m;
    decode(&resp, meta, sizeof(meta), &m);

    size_t n = fc_cache_hit_head(&m, 5, NOW + 7, 0, "hit", out, sizeof(out));
    const char *want =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\n"
        "ETag: \"v1\"\r\nX-Backend: a\r\nAge: 7\r\nCache-Status: fulcrum; hit\r\n"
        "Content-Length: 5\r\n\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);

    /* A 304 keeps only what RFC 9110 15.4.5 lists, and frames no body. */
    n = fc_cache_hit_head(&m, 5, NOW + 7, 1, "hit", out, sizeof(out));
    want = "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\nAge: 7\r\n"
           "Cache-Status: fulcrum; hit\r\n\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);

    assert_int_equal(fc_cache_hit_head(&m, 5, NOW, 0, "hit", out, 40), 0);
}

static void test_304_refreshes(void **unused)
{
    char lines[256], meta[1024], nm_lines[256], meta2[1024];
    struct fc_request resp;
    head(&resp, lines, sizeof(lines), 200,
         "Content-Type: text/plain\nCache-Control: max-age=0\nETag: \"v1\"\nX-Old: 1");
    struct fc_cache_meta m;
    decode(&resp, meta, sizeof(meta), &m);
    assert_false(fc_cache_is_fresh(&m, NOW));

    struct fc_request stored, nm, merged;
    assert_int_equal(fc_cache_meta_head(&m, &stored), 0);
    assert_int_equal(stored.n_headers, 4);
    head(&nm, nm_lines, sizeof(nm_lines), 304,
         "Cache-Control: max-age=120\nETag: \"v1\"\nContent-Length: 0");
    assert_int_equal(fc_cache_merge_304(&stored, &nm, &merged), 0);
    assert_int_equal(merged.status, 200);

    struct fc_request req;
    char qlines[8];
    head(&req, qlines, sizeof(qlines), 0, "");
    struct fc_cache_verdict v;
    fc_cache_response_verdict(&req, &merged, NOW, NOW, &v);
    assert_true(v.store);
    assert_int_equal(v.lifetime_s, 120);
    size_t n = fc_cache_meta_encode(&merged, &v, NOW, meta2, sizeof(meta2));
    struct fc_cache_meta m2;
    assert_int_equal(fc_cache_meta_decode(meta2, n, &m2), 0);
    assert_true(fc_cache_is_fresh(&m2, NOW + 100));
    /* The stored headers the 304 did not name stay; those it named are its own; no framing. */
    const char *want =
        "Content-Type: text/plain\r\nX-Old: 1\r\nCache-Control: max-age=120\r\nETag: \"v1\"\r\n";
    assert_int_equal(m2.headers.len, strlen(want));
    assert_memory_equal(m2.headers.p, want, m2.headers.len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),          cmocka_unit_test(test_meta_round_trip),
        cmocka_unit_test(test_stub),          cmocka_unit_test(test_hit_heads),
        cmocka_unit_test(test_304_refreshes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
