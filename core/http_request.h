/*
 * The parsed head of a client request as the core keeps it while the request
 * is in progress: pointers into the client's read buffer, valid until the
 * request ends. Plugins see it as the opaque struct fc_request.
 */
#ifndef FC_HTTP_REQUEST_H
#define FC_HTTP_REQUEST_H

#include <fulcrum/plugin.h>
#include <stddef.h>
#include <stdint.h>

/** A span of the read buffer. */
struct fc_span {
    const char *p;
    uint32_t len;
};

struct fc_header {
    struct fc_span name;
    struct fc_span value; /**< leading and trailing whitespace already removed */
};

/** Header flags the core derives while parsing. */
enum fc_request_flags {
    FC_REQ_CONN_CLOSE = 1u << 0,      /**< Connection: close */
    FC_REQ_CONN_KEEPALIVE = 1u << 1,  /**< Connection: keep-alive (HTTP/1.0) */
    FC_REQ_HAS_BODY = 1u << 2,        /**< Content-Length > 0 or chunked */
};

#define FC_MAX_HEADERS 128

struct fc_request {
    struct fc_span method;
    struct fc_span target; /**< request target as sent, e.g. "/a?b" */
    struct fc_span host;   /**< Host header value, empty if absent */
    uint8_t http_major, http_minor;
    uint32_t flags;
    struct fc_header headers[FC_MAX_HEADERS];
    uint32_t n_headers;
};

/**
 * Finds header `name` (case-insensitive). Returns its value and stores its
 * length, or returns NULL. With several headers of that name, the first.
 */
const char *fc_request_header(const struct fc_request *req, const char *name, size_t *len);

#endif
