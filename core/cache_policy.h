/*
 * The HTTP caching decisions of the response cache (RFC 9111), as pure
 * functions of parsed heads and times, so that they can be tested as a
 * table: whether a request may be answered from the cache, whether a
 * response may be stored and for how long, how old it is, and whether a
 * client's conditional request is answered 304 by a stored response.
 *
 * Only explicit freshness counts (s-maxage, max-age, Expires): a response
 * without any is never stored, there is no heuristic freshness. Times are
 * seconds since the epoch.
 */
#ifndef FC_CACHE_POLICY_H
#define FC_CACHE_POLICY_H

#include "http_request.h"

#include <stdint.h>

/** What the cache does with a request. */
enum fc_cache_request_kind {
    FC_CACHE_BYPASS = 0, /**< not GET or HEAD: forwarded, and its response never stored */
    FC_CACHE_LOOKUP,     /**< may be answered from the cache */
    /** Cache-Control: no-cache or max-age=0 (or Pragma: no-cache): forwarded; the response may be
       stored */
    FC_CACHE_FORWARD,
    /** Cache-Control: no-store: forwarded, and its response not stored */
    FC_CACHE_NO_STORE,
};

enum fc_cache_request_kind fc_cache_request_kind(const struct fc_request *req);

/** What fc_cache_response_verdict() found. */
struct fc_cache_verdict {
    int store;           /**< the response may be stored */
    const char *why;     /**< when not, the reason: "no-store", "private", "Vary: *", ... */
    int64_t lifetime_s;  /**< freshness lifetime (s-maxage, max-age, or Expires - Date) */
    int64_t age_s;       /**< its age when received (RFC 9111 4.2.3: corrected initial age) */
    int no_cache;        /**< response no-cache: revalidated before every use */
    int has_validator;   /**< it carries an ETag or a Last-Modified */
    struct fc_span vary; /**< the Vary value ("" for none), when stored */
};

/**
 * Whether the response `resp` to `req` may be stored by a shared cache, and
 * with which freshness. request_time and response_time are when the request
 * was sent and the response head received (for the age).
 */
void fc_cache_response_verdict(const struct fc_request *req, const struct fc_request *resp,
                               int64_t request_time, int64_t response_time,
                               struct fc_cache_verdict *v);

/**
 * Parses an HTTP-date (RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850
 * and asctime forms). Returns 0 with the time in *t, or -1.
 */
int fc_http_date_parse(const char *s, size_t len, int64_t *t);

/** Writes `t` as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") in buf (30 bytes at least). */
void fc_http_date_format(int64_t t, char *buf, size_t len);

/**
 * Whether the client's conditional request `req` is answered 304 by a
 * stored response whose ETag and Last-Modified values are `etag` and
 * `last_modified` (spans with len 0 when absent): If-None-Match, compared
 * weakly, when present; else If-Modified-Since against Last-Modified.
 */
int fc_cache_not_modified(const struct fc_request *req, struct fc_span etag,
                          struct fc_span last_modified);

#endif
