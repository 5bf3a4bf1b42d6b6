/*
 * The llhttp callbacks of the transaction's two parsers: they record the
 * spans of a head as it is parsed in place, and pause the parser where the
 * transaction must act (the end of a head with a body, the end of a
 * message); see txn.c for why.
 */
#include "txn_state.h"

#include "http_rewrite.h"
#include "upstream.h"

#include <string.h>

static llhttp_settings_t req_settings;
static llhttp_settings_t resp_settings;

/* ------------------------------------------------------------------------ */
/* Parsing the request                                                       */
/* ------------------------------------------------------------------------ */

static int req_on_message_begin(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    fc_head_reset(&t->req);
    t->head_done = t->msg_done = 0;
    return 0;
}

static int req_on_method(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    fc_head_on_span(&t->req.method, at, len);
    return 0;
}

static int req_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    fc_head_on_span(&t->req.target, at, len);
    return 0;
}

/*
 * Header callbacks also fire for the trailer fields of a chunked body, which
 * are relayed raw with the body and must not be recorded: the head's buffer
 * has moved on by then.
 */
static int req_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    if (t->head_done)
        return 0;
    if (fc_head_on_field(&t->req, at, len) != 0) {
        t->err_status = 431;
        return -1;
    }
    return 0;
}

static int req_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    if (t->head_done)
        return 0;
    return fc_head_on_value(&t->req, at, len);
}

static int req_on_header_value_complete(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    if (t->head_done)
        return 0;
    return fc_head_on_value_complete(&t->req) == 0 ? 0 : -1;
}

/*
 * A request with a body pauses here, so that the body is relayed only once an
 * upstream connection is ready. One without a body runs on to
 * on_message_complete, which pauses: head and end arrive together.
 */
static int req_on_headers_complete(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    t->head_done = 1;
    if ((p->flags & F_CHUNKED) || p->content_length > 0) {
        t->req_has_body = 1;
        return HPE_PAUSED;
    }
    t->req_has_body = 0;
    return 0;
}

static int req_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    t->body_seen += len;
    uint64_t max = fc_txn_config(t)->limits.max_body_bytes;
    if (max != 0 && t->body_seen > max) {
        t->err_status = 413;
        return HPE_USER;
    }
    return 0;
}

static int req_on_message_complete(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    t->msg_done = 1;
    return HPE_PAUSED;
}

/* ------------------------------------------------------------------------ */
/* Parsing the response                                                      */
/* ------------------------------------------------------------------------ */

static int resp_on_message_begin(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    fc_head_reset(&t->resp);
    t->up_head_done = t->up_msg_done = 0;
    return 0;
}

static int resp_on_status(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    fc_head_on_span(&t->resp.reason, at, len);
    return 0;
}

static int resp_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    if (t->up_head_done)
        return 0; /* a trailer field */
    return fc_head_on_field(&t->resp, at, len);
}

static int resp_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    if (t->up_head_done)
        return 0;
    return fc_head_on_value(&t->resp, at, len);
}

static int resp_on_header_value_complete(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    if (t->up_head_done)
        return 0;
    return fc_head_on_value_complete(&t->resp) == 0 ? 0 : -1;
}

/*
 * The same rule as for requests: a response with a body pauses here so that
 * its head is written before its body; one without runs on to its end. A
 * response to HEAD, an interim (1xx) one, a 204 and a 304 have no body
 * whatever their headers say (RFC 9112 6.3). llhttp skips the body of a 204
 * or 304 only when it has no Content-Length nor Transfer-Encoding, and would
 * otherwise wait for one (a 304 may well carry the Content-Length of the
 * representation), so the callback says so itself.
 */
static int resp_on_headers_complete(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    t->up_head_done = 1;
    if (t->head_req || p->status_code < 200 || p->status_code == 204 || p->status_code == 304)
        return 1; /* no body */
    if (!(p->flags & F_CHUNKED) && (p->flags & F_CONTENT_LENGTH) && p->content_length == 0)
        return 0; /* an empty body: the message ends with its head */
    return HPE_PAUSED;
}

/*
 * The body, decoded: to the cache when the response is being stored; and for
 * HTTP/1.0 clients of a chunked response, decoded in place.
 */
static int resp_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct fc_txn *t = p->data;
    if (t->c_store != NULL)
        fc_txn_cache_body(t, at, len); /* before a decode moves the bytes */
    if (t->dechunk) {
        /* Decoded bytes never overtake the raw ones, so moving them down is safe. */
        memmove(t->up->buf + t->dechunk_w, at, len);
        t->dechunk_w += (uint32_t)len;
    }
    return 0;
}

static int resp_on_message_complete(llhttp_t *p)
{
    struct fc_txn *t = p->data;
    t->up_msg_done = 1;
    if (t->c_store != NULL)
        fc_txn_cache_complete(t); /* the body came whole */
    return HPE_PAUSED;
}

void fc_txn_parsers_init(void)
{
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = req_on_message_begin;
    req_settings.on_method = req_on_method;
    req_settings.on_url = req_on_url;
    req_settings.on_header_field = req_on_header_field;
    req_settings.on_header_value = req_on_header_value;
    req_settings.on_header_value_complete = req_on_header_value_complete;
    req_settings.on_headers_complete = req_on_headers_complete;
    req_settings.on_body = req_on_body;
    req_settings.on_message_complete = req_on_message_complete;

    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = resp_on_message_begin;
    resp_settings.on_status = resp_on_status;
    resp_settings.on_header_field = resp_on_header_field;
    resp_settings.on_header_value = resp_on_header_value;
    resp_settings.on_header_value_complete = resp_on_header_value_complete;
    resp_settings.on_headers_complete = resp_on_headers_complete;
    resp_settings.on_body = resp_on_body;
    resp_settings.on_message_complete = resp_on_message_complete;
}

void fc_txn_request_parser_init(struct fc_txn *t)
{
    llhttp_init(&t->parser, HTTP_REQUEST, &req_settings);
    t->parser.data = t;
}

void fc_txn_response_parser_init(struct fc_txn *t)
{
    llhttp_init(&t->resp_parser, HTTP_RESPONSE, &resp_settings);
    t->resp_parser.data = t;
}
