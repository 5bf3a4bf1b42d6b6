/*
 * Message heads as the proxy forwards them: collecting a head from the
 * parser's callbacks, and writing the head sent upstream (request) or back to
 * the client (response) with hop-by-hop headers removed and forwarding
 * headers added. Pure functions over buffers, so they are unit-tested apart
 * from any socket.
 */
#ifndef FC_HTTP_REWRITE_H
#define FC_HTTP_REWRITE_H

#include "http_request.h"

#include <stddef.h>
#include <stdint.h>

/** Clears a head before parsing a new message into it. */
void fc_head_reset(struct fc_request *h);

/*
 * Parser glue. The parser may deliver a field or value in several pieces;
 * because the head stays in one contiguous buffer until it is complete, the
 * pieces are adjacent and simply extend the span. Each returns 0, or -1 when
 * the head has more than FC_MAX_HEADERS headers.
 */
int fc_head_on_field(struct fc_request *h, const char *at, size_t len);
int fc_head_on_value(struct fc_request *h, const char *at, size_t len);
/**
 * Ends the current header: trims its value, notes Host and Connection tokens.
 * Returns 0, or -1 when the header makes the message ambiguous and it must be
 * refused: a value folded over several lines (obsolete line folding, which
 * other parsers may read differently), a second Host, or more names in
 * Connection than can be honoured.
 */
int fc_head_on_value_complete(struct fc_request *h);

/**
 * Called once the request head is complete. An absolute-form target
 * ("http://host:port/path") becomes its path, and its authority replaces any
 * Host header (RFC 9112 3.2.2). Returns 0, or -1 for a target that is
 * neither origin-form, nor http absolute-form, nor the asterisk-form of
 * OPTIONS (e.g. "https://...", "GET *"), and for a Host (or authority) with
 * a character an authority cannot hold ("a b", "a/b@c").
 */
int fc_head_request_complete(struct fc_request *h);
void fc_head_on_span(struct fc_span *s, const char *at, size_t len);

/**
 * The checks a complete request head (its version in http_major/minor) must
 * pass before it is routed, in the order the proxy applies them. `chunked`
 * and `content_length` are the parser's framing, `max_body` is
 * limits.max_body_bytes (0: none). Returns 0, or the status to answer, and
 * then close, with (*why: a short reason for the log): 505 a major version
 * other than 1, 405 CONNECT, 400 an unsupported target or Host
 * (fc_head_request_complete()), invalid framing (fc_head_framing_check()) or
 * HTTP/1.1 without Host, 413 a declared body larger than max_body. An
 * absolute-form target is made origin-form on the way, as
 * fc_head_request_complete() does.
 */
int fc_head_check_request(struct fc_request *req, int chunked, uint64_t content_length,
                          uint64_t max_body, const char **why);

/**
 * The framing of a complete request head, checked apart from the parser
 * (llhttp 8.1 lets an empty Transfer-Encoding through and frames the body by
 * Content-Length): any Transfer-Encoding must be a list of tokens whose last
 * coding, and only that one, is "chunked", with no Content-Length beside it,
 * and the parser must have framed the body as chunked
 * (`chunked_by_parser`). Returns 0, or -1 when the request must be refused
 * with 400 (RFC 9112 6.1 and 6.3).
 */
int fc_head_framing_check(const struct fc_request *h, int chunked_by_parser);

/**
 * True when a complete request head asks for a WebSocket (RFC 6455 4.1): a
 * GET in HTTP/1.1 with an Upgrade that names websocket and a Connection that
 * names upgrade. Upgrade and Connection stay hop-by-hop: the rewrites say
 * them again (struct fc_forward_info.websocket, FC_RESP_UPGRADE). Any other
 * upgrade (h2c, TLS/1.0) is not one, and is stripped.
 */
int fc_head_wants_websocket(const struct fc_request *req);

/** True when `hdr` must not be forwarded: hop-by-hop, or named in Connection. */
int fc_header_is_hop_by_hop(const struct fc_request *h, const struct fc_header *hdr);

/** Case-insensitive comparison of a span with a NUL-terminated lower-case name. */
int fc_span_equals(struct fc_span s, const char *lower);

/** What the proxy adds to a forwarded request. */
struct fc_forward_info {
    const char *client_ip; /**< appended to X-Forwarded-For */
    size_t client_ip_len;
    const char *proto;        /**< X-Forwarded-Proto value, "http" */
    const char *default_host; /**< Host sent when the client sent none (HTTP/1.0) */
    size_t default_host_len;
    int websocket; /**< the request asks for a WebSocket: "Connection: Upgrade", "Upgrade:
                      websocket" */
    /**
     * A revalidation of a stored response: its validators as header lines
     * ("If-None-Match: ...\r\n"), which replace the client's If-None-Match
     * and If-Modified-Since. NULL: none.
     */
    const char *conditional;
    size_t conditional_len;
};

/**
 * Writes the request head forwarded upstream into out: the request line in
 * HTTP/1.1, the client's headers minus hop-by-hop ones and minus incoming
 * X-Forwarded-For/-Proto, one X-Forwarded-For with the incoming values and the
 * client address appended, X-Forwarded-Proto, the WebSocket upgrade when
 * `fw->websocket` asks for it, Host if the client sent none,
 * and, if the client sent Forwarded, one Forwarded with its elements and ours
 * (for=CLIENT;proto=PROTO) appended; with `fw->conditional`, those lines in
 * place of the client's If-None-Match and If-Modified-Since.
 * Returns the length, or -1 when it does not fit in cap.
 */
int fc_rewrite_request(const struct fc_request *req, const struct fc_forward_info *fw, char *out,
                       size_t cap);

enum fc_response_rewrite_flags {
    FC_RESP_CLOSE = 1u << 0,     /**< add "Connection: close": the proxy closes after it */
    FC_RESP_KEEPALIVE = 1u << 1, /**< add "Connection: keep-alive" (HTTP/1.0 clients) */
    FC_RESP_DECHUNK = 1u << 2,   /**< drop Transfer-Encoding: the body is sent decoded */
    FC_RESP_UPGRADE =
        1u << 3, /**< a 101 to a WebSocket: "Connection: Upgrade", "Upgrade: websocket" */
};

/**
 * Writes the response head sent to the client: "HTTP/1.1 status reason", the
 * backend's headers minus hop-by-hop ones, and the Connection header `flags`
 * ask for. Returns the length, or -1 when it does not fit in cap.
 */
int fc_rewrite_response(const struct fc_request *resp, unsigned flags, char *out, size_t cap);

#endif
