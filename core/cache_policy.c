/*
 * RFC 9111 decisions for the response cache; see cache_policy.h.
 */
#include "cache_policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 9111 1.2.2: a delta-seconds too large to keep is taken as 2^31. */
#define DELTA_MAX INT64_C(2147483648)

/* Statuses a shared cache may store with explicit freshness (RFC 9110 15.1's heuristically
 * cacheable list, but 206, which needs ranges). */
static int status_storable(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return 1;
    default:
        return 0;
    }
}

static int span_is(struct fc_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

/* ---- Cache-Control ------------------------------------------------------ */

struct cache_control {
    int no_store, no_cache, private_, public_, must_revalidate, proxy_revalidate;
    int64_t max_age, s_maxage; /* -1: absent or invalid */
};

/* delta-seconds (RFC 9111 1.2.2): digits only. Returns the value, or -1. */
static int64_t delta_seconds(const char *p, size_t len)
{
    if (len == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v < DELTA_MAX)
            v = v * 10 + (p[i] - '0');
    }
    return v < DELTA_MAX ? v : DELTA_MAX;
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* One directive, name and value (without quotes), of a Cache-Control header. */
static void directive(struct cache_control *cc, struct fc_span name, const char *value,
                      size_t value_len)
{
    if (span_is(name, "no-store"))
        cc->no_store = 1;
    else if (span_is(name, "no-cache"))
        cc->no_cache = 1; /* with field names too: the whole response is revalidated */
    else if (span_is(name, "private"))
        cc->private_ = 1; /* with field names too: a shared cache keeps none of it */
    else if (span_is(name, "public"))
        cc->public_ = 1;
    else if (span_is(name, "must-revalidate"))
        cc->must_revalidate = 1;
    else if (span_is(name, "proxy-revalidate"))
        cc->proxy_revalidate = 1;
    else if (span_is(name, "max-age"))
        cc->max_age = value != NULL ? delta_seconds(value, value_len) : -1;
    else if (span_is(name, "s-maxage"))
        cc->s_maxage = value != NULL ? delta_seconds(value, value_len) : -1;
}

/* Every Cache-Control header of `h`, directives separated by commas, quoted values kept whole. */
static void parse_cache_control(const struct fc_request *h, struct cache_control *cc)
{
    *cc = (struct cache_control){.max_age = -1, .s_maxage = -1};
    for (uint32_t i = 0; i < h->n_headers && i < FC_MAX_HEADERS; i++) {
        if (!span_is(h->headers[i].name, "Cache-Control"))
            continue;
        const char *p = h->headers[i].value.p, *end = p + h->headers[i].value.len;
        while (p < end) {
            p = skip_ows(p, end);
            const char *n0 = p;
            while (p < end && *p != '=' && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            struct fc_span name = {n0, (uint32_t)(p - n0)};
            const char *value = NULL;
            size_t value_len = 0;
            p = skip_ows(p, end);
            if (p < end && *p == '=') {
                p = skip_ows(p + 1, end);
                if (p < end && *p == '"') {
                    value = ++p;
                    while (p < end && *p != '"') {
                        if (*p == '\\' && p + 1 < end)
                            p++;
                        p++;
                    }
                    value_len = (size_t)(p - value);
                    if (p < end)
                        p++;
                } else {
                    value = p;
                    while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                        p++;
                    value_len = (size_t)(p - value);
                }
            }
            if (name.len > 0)
                directive(cc, name, value, value_len);
            while (p < end && *p != ',')
                p++;
            if (p < end)
                p++;
        }
    }
}

static const char *header(const struct fc_request *h, const char *name, size_t *len)
{
    return fc_request_header(h, name, len);
}

/* ---- the request -------------------------------------------------------- */

enum fc_cache_request_kind fc_cache_request_kind(const struct fc_request *req)
{
    if (!span_is(req->method, "GET") && !span_is(req->method, "HEAD"))
        return FC_CACHE_BYPASS;
    struct cache_control cc;
    parse_cache_control(req, &cc);
    if (cc.no_store)
        return FC_CACHE_NO_STORE;
    if (cc.no_cache || cc.max_age == 0)
        return FC_CACHE_FORWARD;
    size_t len = 0;
    const char *cc_value = header(req, "Cache-Control", &len);
    const char *pragma = header(req, "Pragma", &len);
    /* Pragma: no-cache counts only without Cache-Control (RFC 9111 5.4). */
    if (cc_value == NULL && pragma != NULL && len >= 8 && strncasecmp(pragma, "no-cache", 8) == 0)
        return FC_CACHE_FORWARD;
    return FC_CACHE_LOOKUP;
}

/* ---- the response ------------------------------------------------------- */

static int64_t date_header(const struct fc_request *h, const char *name, int *present)
{
    size_t len = 0;
    const char *v = header(h, name, &len);
    int64_t t = 0;
    *present = v != NULL;
    if (v == NULL || fc_http_date_parse(v, len, &t) < 0)
        return -1;
    return t;
}

void fc_cache_response_verdict(const struct fc_request *req, const struct fc_request *resp,
                               int64_t request_time, int64_t response_time,
                               struct fc_cache_verdict *v)
{
    *v = (struct fc_cache_verdict){.lifetime_s = -1, .vary = {"", 0}};
    struct cache_control cc;
    parse_cache_control(resp, &cc);
    size_t len = 0;

    if (fc_cache_request_kind(req) == FC_CACHE_BYPASS) {
        v->why = "method";
        return;
    }
    if (fc_cache_request_kind(req) == FC_CACHE_NO_STORE) {
        v->why = "request no-store";
        return;
    }
    if (!status_storable(resp->status)) {
        v->why = "status";
        return;
    }
    if (cc.no_store) {
        v->why = "no-store";
        return;
    }
    if (cc.private_) {
        v->why = "private";
        return;
    }
    if (header(resp, "Set-Cookie", &len) != NULL) {
        v->why = "Set-Cookie";
        return;
    }
    const char *vary = header(resp, "Vary", &len);
    if (vary != NULL) {
        for (size_t i = 0; i < len; i++) {
            if (vary[i] == '*') {
                v->why = "Vary: *";
                return;
            }
        }
        v->vary = (struct fc_span){vary, (uint32_t)len};
    }
    /* RFC 9111 3.5: a shared cache stores an answer to Authorization only when told it may. */
    if (header(req, "Authorization", &len) != NULL && !cc.public_ && cc.s_maxage < 0 &&
        !cc.must_revalidate) {
        v->why = "Authorization";
        return;
    }

    int has_date = 0, has_expires = 0, has_lm = 0;
    int64_t date = date_header(resp, "Date", &has_date);
    if (date < 0)
        date = response_time;
    if (cc.s_maxage >= 0)
        v->lifetime_s = cc.s_maxage;
    else if (cc.max_age >= 0)
        v->lifetime_s = cc.max_age;
    else {
        int64_t expires = date_header(resp, "Expires", &has_expires);
        if (has_expires) /* an invalid Expires means already expired (RFC 9111 5.3) */
            v->lifetime_s = expires > date ? expires - date : 0;
    }
    v->has_validator = header(resp, "ETag", &len) != NULL;
    date_header(resp, "Last-Modified", &has_lm);
    v->has_validator |= has_lm;
    v->no_cache = cc.no_cache;

    if (v->lifetime_s < 0) {
        v->why = "no explicit freshness";
        return;
    }
    if ((v->lifetime_s == 0 || v->no_cache) && !v->has_validator) {
        v->why = "stale, no validator";
        return;
    }

    /* RFC 9111 4.2.3. */
    int64_t apparent = response_time > date ? response_time - date : 0;
    const char *age = header(resp, "Age", &len);
    int64_t age_value = age != NULL ? delta_seconds(age, len) : 0;
    if (age_value < 0)
        age_value = 0;
    int64_t delay = response_time > request_time ? response_time - request_time : 0;
    int64_t corrected = age_value + delay;
    v->age_s = apparent > corrected ? apparent : corrected;
    v->store = 1;
}

/* ---- HTTP-dates --------------------------------------------------------- */

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char days[7][4] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; m 1-12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_of(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (strncmp(p, months[i], 3) == 0)
            return i + 1;
    return 0;
}

/* n digits at p; -1 unless they all are. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int make_time(int64_t y, int mon, int d, const char *hms, int64_t *t)
{
    int h = digits(hms, 2), mi = digits(hms + 3, 2), s = digits(hms + 6, 2);
    if (mon == 0 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60 ||
        hms[2] != ':' || hms[5] != ':')
        return -1;
    *t = days_from_civil(y, mon, d) * 86400 + h * 3600 + mi * 60 + s;
    return 0;
}

int fc_http_date_parse(const char *s, size_t len, int64_t *t)
{
    char b[64];
    if (len < 24 || len >= sizeof(b))
        return -1;
    memcpy(b, s, len);
    b[len] = '\0';
    const char *comma = memchr(b, ',', len);
    if (comma != NULL && comma - b == 3) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (len != 29 || b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' ||
            strcmp(b + 25, " GMT") != 0)
            return -1;
        int d = digits(b + 5, 2), y = digits(b + 12, 4);
        if (d < 0 || y < 0)
            return -1;
        return make_time(y, month_of(b + 8), d, b + 17, t);
    }
    if (comma != NULL) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        const char *p = comma + 2;
        if (comma[1] != ' ' || (size_t)(p - b) + 22 != len || p[2] != '-' || p[6] != '-' ||
            p[9] != ' ' || strcmp(p + 18, " GMT") != 0)
            return -1;
        int d = digits(p, 2), yy = digits(p + 7, 2);
        if (d < 0 || yy < 0)
            return -1;
        return make_time(yy < 70 ? 2000 + yy : 1900 + yy, month_of(p + 3), d, p + 10, t);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    if (len != 24 || b[3] != ' ' || b[7] != ' ' || b[10] != ' ' || b[19] != ' ')
        return -1;
    int d = b[8] == ' ' ? digits(b + 9, 1) : digits(b + 8, 2), y = digits(b + 20, 4);
    if (d < 0 || y < 0)
        return -1;
    return make_time(y, month_of(b + 4), d, b + 11, t);
}

void fc_http_date_format(int64_t t, char *buf, size_t len)
{
    int64_t day = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t sec = t - day * 86400;
    /* civil_from_days */
    int64_t z = day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    int64_t y = yoe + era * 400 + (m <= 2);
    int wd = (int)(((day % 7) + 7) % 7);
    snprintf(buf, len, "%s, %02d %s %04lld %02d:%02d:%02d GMT", days[wd], d, months[m - 1],
             (long long)y, (int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60));
}

/* ---- conditionals ------------------------------------------------------- */

/* The opaque-tag of an entity-tag, without W/. */
static struct fc_span opaque_tag(struct fc_span tag)
{
    if (tag.len >= 2 && tag.p[0] == 'W' && tag.p[1] == '/')
        return (struct fc_span){tag.p + 2, tag.len - 2};
    return tag;
}

int fc_cache_not_modified(const struct fc_request *req, struct fc_span etag,
                          struct fc_span last_modified)
{
    size_t len = 0;
    const char *inm = header(req, "If-None-Match", &len);
    if (inm != NULL) {
        const char *p = inm, *end = inm + len;
        struct fc_span mine = opaque_tag(etag);
        while (p < end) {
            p = skip_ows(p, end);
            const char *t0 = p;
            if (p < end && *p == '*')
                return 1;
            if (p + 1 < end && p[0] == 'W' && p[1] == '/')
                p += 2;
            if (p < end && *p == '"') {
                p++;
                while (p < end && *p != '"')
                    p++;
                if (p < end)
                    p++;
            }
            struct fc_span theirs = opaque_tag((struct fc_span){t0, (uint32_t)(p - t0)});
            if (etag.len > 0 && theirs.len == mine.len && theirs.len > 0 &&
                memcmp(theirs.p, mine.p, mine.len) == 0)
                return 1;
            while (p < end && *p != ',')
                p++;
            if (p < end)
                p++;
        }
        return 0; /* If-Modified-Since is not looked at when If-None-Match is there */
    }
    const char *ims = header(req, "If-Modified-Since", &len);
    int64_t since = 0, modified = 0;
    if (ims == NULL || last_modified.len == 0 || fc_http_date_parse(ims, len, &since) < 0 ||
        fc_http_date_parse(last_modified.p, last_modified.len, &modified) < 0)
        return 0;
    return modified <= since;
}
