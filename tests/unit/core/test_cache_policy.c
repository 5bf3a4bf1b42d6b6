/*
 * The response cache's HTTP decisions (core/cache_policy.c) as a table: a
 * request and a response head in, whether it may be stored, why not, its
 * freshness lifetime and age out; HTTP-dates in their three forms; client
 * conditionals against a stored response.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include "cache_policy.h"

#include <stdio.h>
#include <string.h>

/* 2026-12-03 10:00:00 GMT, when every response below was received. */
#define NOW INT64_C(1796292000)
#define NOW_DATE "Thu, 03 Dec 2026 10:00:00 GMT"

/*
 * Fills h from "Name: value" lines separated by '\n' (copied into buf, which
 * must outlive h), with method or status.
 */
static void head(struct fc_request *h, char *buf, size_t buflen, const char *method, int status,
                 const char *lines)
{
    memset(h, 0, sizeof(*h));
    snprintf(buf, buflen, "%s", lines);
    if (method != NULL)
        h->method = (struct fc_span){method, (uint32_t)strlen(method)};
    h->status = status;
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

struct row {
    const char *method;
    const char *req; /* request header lines */
    int status;
    const char *resp; /* response header lines */
    int store;
    const char *why;  /* when not stored */
    int64_t lifetime; /* when stored */
    int64_t age;      /* when stored */
};

static const struct row rows[] = {
    /* Explicit freshness, in order of precedence. */
    {"GET", "", 200, "Cache-Control: max-age=60", 1, NULL, 60, 0},
    {"GET", "", 200, "Cache-Control: max-age=60, s-maxage=300", 1, NULL, 300, 0},
    {"GET", "", 200, "Date: " NOW_DATE "\nExpires: Thu, 03 Dec 2026 10:10:00 GMT", 1, NULL, 600, 0},
    {"GET", "", 200, "Cache-Control: max-age=5\nExpires: Thu, 03 Dec 2026 10:10:00 GMT", 1, NULL, 5,
     0},
    {"HEAD", "", 200, "Cache-Control: max-age=60", 1, NULL, 60, 0},
    {"GET", "", 200, "Cache-Control: public, max-age=\"90\"", 1, NULL, 90, 0},
    {"GET", "", 200, "Cache-Control: public\nCache-Control: max-age=30", 1, NULL, 30, 0},
    /* Age: the Age header, and a Date in the past. */
    {"GET", "", 200, "Cache-Control: max-age=60\nAge: 20", 1, NULL, 60, 20},
    {"GET", "", 200, "Cache-Control: max-age=60\nDate: Thu, 03 Dec 2026 09:59:15 GMT", 1, NULL, 60,
     45},
    /* No explicit freshness: never stored, whatever else. */
    {"GET", "", 200, "", 0, "no explicit freshness", 0, 0},
    {"GET", "", 200, "ETag: \"a\"\nLast-Modified: Thu, 03 Dec 2026 09:00:00 GMT", 0,
     "no explicit freshness", 0, 0},
    {"GET", "", 200, "Cache-Control: max-age=abc", 0, "no explicit freshness", 0, 0},
    /* Already stale: only with a validator, to be revalidated. */
    {"GET", "", 200, "Cache-Control: max-age=0", 0, "stale, no validator", 0, 0},
    {"GET", "", 200, "Cache-Control: max-age=0\nETag: \"v1\"", 1, NULL, 0, 0},
    {"GET", "", 200, "Date: " NOW_DATE "\nExpires: 0", 0, "stale, no validator", 0, 0},
    {"GET", "", 200, "Cache-Control: no-cache, max-age=60", 0, "stale, no validator", 0, 0},
    {"GET", "", 200, "Cache-Control: no-cache, max-age=60\nETag: \"v\"", 1, NULL, 60, 0},
    /* Never stored. */
    {"GET", "", 200, "Cache-Control: no-store, max-age=60", 0, "no-store", 0, 0},
    {"GET", "", 200, "Cache-Control: private, max-age=60", 0, "private", 0, 0},
    {"GET", "", 200, "Cache-Control: private=\"Set-Cookie\", max-age=60", 0, "private", 0, 0},
    {"GET", "", 200, "Cache-Control: max-age=60\nSet-Cookie: a=b", 0, "Set-Cookie", 0, 0},
    {"GET", "", 200, "Cache-Control: max-age=60\nVary: *", 0, "Vary: *", 0, 0},
    {"GET", "", 200, "Cache-Control: max-age=60\nVary: Accept, *", 0, "Vary: *", 0, 0},
    {"POST", "", 200, "Cache-Control: max-age=60", 0, "method", 0, 0},
    {"GET", "Cache-Control: no-store", 200, "Cache-Control: max-age=60", 0, "request no-store", 0,
     0},
    {"GET", "", 206, "Cache-Control: max-age=60", 0, "status", 0, 0},
    {"GET", "", 302, "Cache-Control: max-age=60", 0, "status", 0, 0},
    {"GET", "", 500, "Cache-Control: max-age=60", 0, "status", 0, 0},
    {"GET", "", 404, "Cache-Control: max-age=60", 1, NULL, 60, 0},
    {"GET", "", 301, "Cache-Control: max-age=60", 1, NULL, 60, 0},
    /* Authorization: only when the response says a shared cache may. */
    {"GET", "Authorization: Basic eDp5", 200, "Cache-Control: max-age=60", 0, "Authorization", 0,
     0},
    {"GET", "Authorization: Basic eDp5", 200, "Cache-Control: public, max-age=60", 1, NULL, 60, 0},
    {"GET", "Authorization: Basic eDp5", 200, "Cache-Control: s-maxage=60", 1, NULL, 60, 0},
    {"GET", "Authorization: Basic eDp5", 200, "Cache-Control: must-revalidate, max-age=60", 1, NULL,
     60, 0},
    /* The request's no-cache forwards, but what comes back may be stored. */
    {"GET", "Cache-Control: no-cache", 200, "Cache-Control: max-age=60", 1, NULL, 60, 0},
};

static void test_table(void **unused)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        char qbuf[512], rbuf[512];
        struct fc_request req, resp;
        head(&req, qbuf, sizeof(qbuf), r->method, 0, r->req);
        head(&resp, rbuf, sizeof(rbuf), NULL, r->status, r->resp);
        struct fc_cache_verdict v;
        fc_cache_response_verdict(&req, &resp, NOW, NOW, &v);
        int ok = v.store == r->store && (r->store ? v.lifetime_s == r->lifetime && v.age_s == r->age
                                                  : v.why != NULL && strcmp(v.why, r->why) == 0);
        if (!ok)
            fail_msg("row %zu: %s [%s] -> %d [%s]: expected store %d (%s, lifetime %lld, age "
                     "%lld), got store %d (%s, lifetime %lld, age %lld)",
                     i, r->method, r->req, r->status, r->resp, r->store,
                     r->why != NULL ? r->why : "-", (long long)r->lifetime, (long long)r->age,
                     v.store, v.why != NULL ? v.why : "-", (long long)v.lifetime_s,
                     (long long)v.age_s);
    }
}

/* The time the request was in flight counts in the age (RFC 9111 4.2.3). */
static void test_age_counts_the_response_delay(void **unused)
{
    char qbuf[64], rbuf[128];
    struct fc_request req, resp;
    head(&req, qbuf, sizeof(qbuf), "GET", 0, "");
    head(&resp, rbuf, sizeof(rbuf), NULL, 200, "Cache-Control: max-age=60\nAge: 10");
    struct fc_cache_verdict v;
    fc_cache_response_verdict(&req, &resp, NOW - 3, NOW, &v);
    assert_true(v.store);
    assert_int_equal(v.age_s, 13);
}

static void test_vary_is_kept(void **unused)
{
    char qbuf[64], rbuf[128];
    struct fc_request req, resp;
    head(&req, qbuf, sizeof(qbuf), "GET", 0, "");
    head(&resp, rbuf, sizeof(rbuf), NULL, 200, "Cache-Control: max-age=60\nVary: Accept-Encoding");
    struct fc_cache_verdict v;
    fc_cache_response_verdict(&req, &resp, NOW, NOW, &v);
    assert_true(v.store);
    assert_int_equal(v.vary.len, strlen("Accept-Encoding"));
    assert_memory_equal(v.vary.p, "Accept-Encoding", v.vary.len);
}

static void test_request_kinds(void **unused)
{
    static const struct {
        const char *method, *lines;
        enum fc_cache_request_kind kind;
    } cases[] = {
        {"GET", "", FC_CACHE_LOOKUP},
        {"HEAD", "", FC_CACHE_LOOKUP},
        {"POST", "", FC_CACHE_BYPASS},
        {"PUT", "", FC_CACHE_BYPASS},
        {"GET", "Cache-Control: no-cache", FC_CACHE_FORWARD},
        {"GET", "Cache-Control: max-age=0", FC_CACHE_FORWARD},
        {"GET", "Pragma: no-cache", FC_CACHE_FORWARD},
        {"GET", "Pragma: no-cache\nCache-Control: max-age=10", FC_CACHE_LOOKUP},
        {"GET", "Cache-Control: no-store", FC_CACHE_NO_STORE},
        {"GET", "Cache-Control: max-stale=10", FC_CACHE_LOOKUP},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        struct fc_request req;
        head(&req, buf, sizeof(buf), cases[i].method, 0, cases[i].lines);
        if (fc_cache_request_kind(&req) != cases[i].kind)
            fail_msg("%s [%s]: kind %d, expected %d", cases[i].method, cases[i].lines,
                     fc_cache_request_kind(&req), cases[i].kind);
    }
}

static void test_http_dates(void **unused)
{
    /* RFC 9110 5.6.7's example, in its three forms. */
    static const char *const forms[] = {"Sun, 06 Nov 1994 08:49:37 GMT",
                                        "Sunday, 06-Nov-94 08:49:37 GMT",
                                        "Sun Nov  6 08:49:37 1994"};
    for (int i = 0; i < 3; i++) {
        int64_t t = 0;
        assert_int_equal(fc_http_date_parse(forms[i], strlen(forms[i]), &t), 0);
        assert_int_equal(t, 784111777);
    }
    char buf[32];
    fc_http_date_format(784111777, buf, sizeof(buf));
    assert_string_equal(buf, forms[0]);
    fc_http_date_format(NOW, buf, sizeof(buf));
    assert_string_equal(buf, NOW_DATE);
    /* A leap day, and the round trip of a later one. */
    int64_t t = 0;
    assert_int_equal(fc_http_date_parse("Thu, 29 Feb 2024 23:59:59 GMT", 29, &t), 0);
    fc_http_date_format(t, buf, sizeof(buf));
    assert_string_equal(buf, "Thu, 29 Feb 2024 23:59:59 GMT");
    static const char *const bad[] = {"0",
                                      "Sun, 06 Nov 1994 08:49:37 UTC",
                                      "Sun, 06 Foo 1994 08:49:37 GMT",
                                      "Sun, 06 Nov 1994 25:49:37 GMT",
                                      "Sun, 6 Nov 1994 08:49:37 GMT",
                                      "yesterday at noon, more or less"};
    for (int i = 0; i < 6; i++)
        assert_int_equal(fc_http_date_parse(bad[i], strlen(bad[i]), &t), -1);
}

static void test_conditionals(void **unused)
{
    static const struct {
        const char *lines;
        struct fc_span etag, lm;
        int not_modified;
    } cases[] = {
        {"If-None-Match: \"v1\"", {"\"v1\"", 4}, {"", 0}, 1},
        {"If-None-Match: W/\"v1\"", {"\"v1\"", 4}, {"", 0}, 1}, /* weak comparison */
        {"If-None-Match: \"v0\", \"v1\"", {"\"v1\"", 4}, {"", 0}, 1},
        {"If-None-Match: \"v2\"", {"\"v1\"", 4}, {"", 0}, 0},
        {"If-None-Match: *", {"\"v1\"", 4}, {"", 0}, 1},
        {"If-None-Match: \"v1\"", {"", 0}, {"", 0}, 0},
        /* If-None-Match wins over If-Modified-Since. */
        {"If-None-Match: \"v2\"\nIf-Modified-Since: Thu, 03 Dec 2026 09:30:00 GMT",
         {"\"v1\"", 4},
         {"Thu, 03 Dec 2026 09:00:00 GMT", 29},
         0},
        {"If-Modified-Since: Thu, 03 Dec 2026 09:30:00 GMT",
         {"", 0},
         {"Thu, 03 Dec 2026 09:00:00 GMT", 29},
         1},
        {"If-Modified-Since: Thu, 03 Dec 2026 09:00:00 GMT",
         {"", 0},
         {"Thu, 03 Dec 2026 09:00:00 GMT", 29},
         1},
        {"If-Modified-Since: Thu, 03 Dec 2026 08:59:59 GMT",
         {"", 0},
         {"Thu, 03 Dec 2026 09:00:00 GMT", 29},
         0},
        {"If-Modified-Since: garbage", {"", 0}, {"Thu, 03 Dec 2026 09:00:00 GMT", 29}, 0},
        {"", {"\"v1\"", 4}, {"Thu, 03 Dec 2026 09:00:00 GMT", 29}, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256];
        struct fc_request req;
        head(&req, buf, sizeof(buf), "GET", 0, cases[i].lines);
        if (fc_cache_not_modified(&req, cases[i].etag, cases[i].lm) != cases[i].not_modified)
            fail_msg("case %zu [%s]: expected %d", i, cases[i].lines, cases[i].not_modified);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),        cmocka_unit_test(test_age_counts_the_response_delay),
        cmocka_unit_test(test_vary_is_kept), cmocka_unit_test(test_request_kinds),
        cmocka_unit_test(test_http_dates),   cmocka_unit_test(test_conditionals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
