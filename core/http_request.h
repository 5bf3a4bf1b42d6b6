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

/** What the proxy needs to know of a header, found once when it is parsed. */
enum fc_header_kind {
    FC_HDR_OTHER = 0,
    FC_HDR_HOP,     /**< Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade */
    FC_HDR_FRAMING, /**< Content-Length, Transfer-Encoding */
    FC_HDR_HOST,
    FC_HDR_XFF, /**< X-Forwarded-For */
    FC_HDR_XFP, /**< X-Forwarded-Proto */
    FC_HDR_FWD, /**< Forwarded (RFC 7239) */
};

struct fc_header {
    struct fc_span name;
    struct fc_span value; /**< leading and trailing whitespace already removed */
    uint8_t value_done;   /**< parsing: the value is complete */
    uint8_t kind;         /**< enum fc_header_kind */
};

#define FC_MAX_HEADERS 128
#define FC_MAX_CONN_TOKENS 32

/**
 * The response headers a strategy's pick() adds for a request
 * (fc_host.response_header_add()): whole lines, "Name: value\r\n" each.
 * `open` while the pick runs: only then may it add.
 */
struct fc_added_headers {
    uint32_t len;
    uint8_t open;
    char buf[FC_RESPONSE_HEADERS_MAX];
};

/**
 * A parsed message head, request or response. The same structure serves both
 * directions: a request has method and target, a response status and reason.
 */
struct fc_request {
    struct fc_span method; /**< request: e.g. "GET" */
    struct fc_span target; /**< request: target as sent, e.g. "/a?b" */
    struct fc_span host;   /**< request: the authority: absolute-form target's, else Host's */
    int absolute_form;     /**< request: target was "http://authority/path"; target is the path */
    int status;            /**< response: status code */
    struct fc_span reason; /**< response: reason phrase */
    uint8_t http_major, http_minor;
    uint8_t upgrade_ws;   /**< an Upgrade header names websocket */
    uint8_t conn_upgrade; /**< Connection holds the token "upgrade" */
    /** Header names listed in Connection (other than close/keep-alive): hop-by-hop too. */
    struct fc_span conn_tokens[FC_MAX_CONN_TOKENS];
    uint32_t n_conn_tokens;
    struct fc_header headers[FC_MAX_HEADERS];
    uint32_t n_headers;
    /** request: where its pick adds response headers; NULL: nowhere (none may be added) */
    struct fc_added_headers *added;
};

/**
 * Finds header `name` (case-insensitive). Returns its value and stores its
 * length, or returns NULL. With several headers of that name, the first.
 */
const char *fc_request_header(const struct fc_request *req, const char *name, size_t *len);

#endif
