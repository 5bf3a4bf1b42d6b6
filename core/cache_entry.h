/*
 * What the response cache hands its store, and reads back: the key of a
 * request and the meta of a response (struct fc_cache_ops in the SDK keeps
 * both as opaque bytes).
 *
 * A key is the request's target, a line break, its scheme and host
 * ("http://example.com", the host in lower case); for a response that
 * has a Vary, a second key adds, per header it names, a line break, the
 * name in lower case, '=' and the request's values of it (joined by ", ";
 * "" when absent). Under the first key then lies a *variant stub*: a meta
 * with the Vary names and no head, telling the next lookup which headers to
 * read for the second. So a purge of a target takes the prefix target + '\n'.
 *
 * A meta holds the status, the freshness (when the response was received,
 * its age then, its lifetime), the Vary value, its validators' places, and
 * the end-to-end header lines as received ("Name: value\r\n" each), without
 * the hop-by-hop ones, the framing (the cache frames what it serves), Age
 * and Cache-Status, which a hit says anew. A hit's head has no
 * Content-Length for a 204.
 */
#ifndef FC_CACHE_ENTRY_H
#define FC_CACHE_ENTRY_H

#include "cache_policy.h"
#include "http_request.h"

#include <stddef.h>
#include <stdint.h>

/** The most bytes of a key, and of a meta, the cache builds; longer ones are not cached. */
#define FC_CACHE_KEY_MAX 4096
#define FC_CACHE_META_MAX 16384

/** A meta read back. Spans point into the meta's bytes. */
struct fc_cache_meta {
    int stub; /**< a variant stub: only vary is set */
    int status;
    int no_cache;          /**< revalidate before every use */
    int64_t response_time; /**< when the response was received */
    int64_t age_s;         /**< its age then */
    int64_t lifetime_s;
    struct fc_span reason;              /**< the status's reason phrase */
    struct fc_span vary;                /**< the Vary value, "" for none */
    struct fc_span headers;             /**< the header lines, each ending in CRLF */
    struct fc_span etag, last_modified; /**< values, len 0 when absent */
};

/**
 * Writes the key of `req`, which came over TLS when `https`, to buf: the
 * first one with an empty `vary`, else the one of the variant that `vary` (a
 * Vary value) selects. Returns its length, or 0 when it would not fit in cap
 * bytes.
 */
size_t fc_cache_key(const struct fc_request *req, int https, struct fc_span vary, char *buf,
                    size_t cap);

/**
 * Writes the meta of the response `resp`, which `v` says may be stored and
 * which arrived at response_time, to buf. Returns its length, or 0 when it
 * would not fit in cap bytes.
 */
size_t fc_cache_meta_encode(const struct fc_request *resp, const struct fc_cache_verdict *v,
                            int64_t response_time, char *buf, size_t cap);

/** Writes a variant stub's meta for the Vary value `vary`. Returns its length, or 0. */
size_t fc_cache_stub_encode(struct fc_span vary, char *buf, size_t cap);

/** Reads a meta back. Returns 0, or -1 for bytes that are not a meta of this version. */
int fc_cache_meta_decode(const void *data, size_t len, struct fc_cache_meta *m);

/** The response's age at `now` (RFC 9111 4.2.3: current_age). */
int64_t fc_cache_current_age(const struct fc_cache_meta *m, int64_t now);

/** Whether it may be served at `now` without revalidation. */
int fc_cache_is_fresh(const struct fc_cache_meta *m, int64_t now);

/**
 * Writes the head of a response served from the cache: the stored status
 * (or 304 when not_modified, with only the headers RFC 9110 15.4.5 keeps),
 * the stored headers, Age, "Cache-Status: fulcrum; <status>" (e.g. "hit"),
 * and Content-Length: body_len (none for a 304). Returns its length, or 0
 * when it would not fit in cap bytes.
 */
size_t fc_cache_hit_head(const struct fc_cache_meta *m, uint64_t body_len, int64_t now,
                         int not_modified, const char *cache_status, char *buf, size_t cap);

/**
 * Reads the stored head of `m` (not a stub) into `head`: its status and
 * header lines, as spans into the meta. Returns 0, or -1 for lines that do
 * not parse (or more than FC_MAX_HEADERS).
 */
int fc_cache_meta_head(const struct fc_cache_meta *m, struct fc_request *head);

/**
 * The head of an entry refreshed by a 304 to a revalidation (RFC 9111
 * 4.3.4): the stored head with each header the 304 carries replacing the
 * stored ones of that name. `merged` borrows from both. Returns 0, or -1
 * when the headers would be more than FC_MAX_HEADERS.
 */
int fc_cache_merge_304(const struct fc_request *stored, const struct fc_request *not_modified,
                       struct fc_request *merged);

#endif
