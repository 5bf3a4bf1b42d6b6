/*
 * The admin listener: a small HTTP/1.1 server on the main thread's loop (never
 * on a worker), for the operator's endpoints (`/metrics`, `/api/status`,
 * `/api/events`, the dashboard, the runtime API). It owns the transport:
 * accepting on TCP or a unix socket, parsing with llhttp, bounded heads and
 * bodies, the bearer token (compared in constant time), JSON errors, keep-
 * alive, and event streams with bounded buffering. What each path answers is
 * the caller's: routes are registered with fc_admin_route().
 *
 * Everything here runs on the main thread.
 */
#ifndef FC_ADMIN_H
#define FC_ADMIN_H

#include "text.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct fc_config;
struct fc_admin;
struct json_t;
struct fc_admin_stream;

/** Largest request head, and largest request body, the admin listener takes. */
#define FC_ADMIN_MAX_HEAD 8192
#define FC_ADMIN_MAX_BODY (64 * 1024)
/** Event streams open at once; one more is refused with 503. */
#define FC_ADMIN_MAX_STREAMS 16
/** Bytes an event stream may have waiting for a slow reader before it is closed. */
#define FC_ADMIN_STREAM_BUFFER (256 * 1024)

/** Segments of a path that a route's "{}" segments capture, at most. */
#define FC_ADMIN_MAX_PARAMS 4

/**
 * One request, borrowed for the handler's call. Strings are not
 * NUL-terminated, except the params.
 */
struct fc_admin_request {
    const char *method;
    size_t method_len;
    const char *path; /**< without the query */
    size_t path_len;
    const char *query; /**< after '?', or NULL */
    size_t query_len;
    const char *body;
    size_t body_len;
    /** What the route's "{}" segments matched, percent-decoded, NUL-terminated. */
    const char *params[FC_ADMIN_MAX_PARAMS];
    unsigned n_params;
};

/**
 * The value of query parameter `name` of req ("?path=/x&all=1"),
 * percent-decoded into out (cap bytes, NUL-terminated; '+' stays '+').
 * Returns 1 when it is there, 0 when it is not, -1 when its value does not
 * decode (or decodes to a NUL) or does not fit.
 */
int fc_admin_query_param(const struct fc_admin_request *req, const char *name, char *out,
                         size_t cap);

struct fc_admin_conn;
struct fc_admin_later;

/**
 * What a handler answers. The handler sets status and content_type (a
 * string literal; they come preset to 200 and "application/json"), may set
 * headers, and appends the body with fc_admin_body_append() /
 * fc_admin_body_printf(), or renders into `body` with the fc_text functions
 * (text.h); the admin listener owns the buffer.
 */
struct fc_admin_response {
    int status;
    const char *content_type;
    /**
     * More header lines for the head, each ending in "\r\n" (a string that
     * outlives the response: a literal), or NULL (preset). They are sent
     * with whatever status the handler answers, but not on the 500 that
     * replaces a response the handler could not build.
     */
    const char *headers;
    struct fc_text body; /**< body.oom: an append failed, the listener answers 500 instead */
    /* The admin listener's own (fc_admin_defer()). */
    struct fc_admin_conn *conn;
    struct fc_admin_later *later;
};

/**
 * A handler that can answer only later (once the workers have taken a
 * change): takes the response along. The handler returns without touching
 * resp again; the answer goes when fc_admin_later_send() is called, on the
 * main loop, with what fc_admin_later_response() was filled with. The
 * connection reads nothing meanwhile. NULL: out of memory (resp is then
 * still the handler's to fill).
 */
struct fc_admin_later *fc_admin_defer(struct fc_admin_response *resp);

/** The response to fill before fc_admin_later_send() (status, body...). */
struct fc_admin_response *fc_admin_later_response(struct fc_admin_later *l);

/**
 * Sends the response and frees l. When the client went away meanwhile (or
 * the listener stopped), the response is dropped. Must be called once for
 * every fc_admin_later.
 */
void fc_admin_later_send(struct fc_admin_later *l);

void fc_admin_body_append(struct fc_admin_response *r, const char *data, size_t len);
void fc_admin_body_printf(struct fc_admin_response *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * Appends s as a JSON string, quotes included: '"', '\\' and control
 * characters escaped, valid UTF-8 kept, any other byte replaced by U+FFFD,
 * so that the document stays valid JSON whatever s holds.
 */
void fc_admin_body_json_string(struct fc_admin_response *r, const char *s);

/**
 * Answers `status` with the JSON body {"error": "<message>"} (the message is
 * escaped for JSON) in place of what the body held.
 */
void fc_admin_error(struct fc_admin_response *r, int status, const char *message);

/**
 * Answers `status` with j (a jansson value, which this takes) as the JSON
 * body, one line; a NULL j, or one that cannot be written, is a 500.
 */
void fc_admin_json(struct fc_admin_response *r, int status, struct json_t *j);

/** The lines of text (each ending in '\n', as fc_log_collect_errors() keeps them), as a JSON array.
 */
struct json_t *fc_admin_json_lines(const char *text);

/**
 * Answers a request. It may call fc_admin_apply() or fc_admin_destroy() (a
 * reload endpoint): if that closed its connection, the response is dropped.
 */
typedef void (*fc_admin_handler)(void *arg, const struct fc_admin_request *req,
                                 struct fc_admin_response *resp);

/**
 * Starts a stream instead of a response (Server-Sent Events): called for a
 * route registered with fc_admin_stream_route(). Return 0 to keep the stream
 * (send on it with fc_admin_stream_send() until it closes; sends made inside
 * the call follow the response head), or an HTTP status to refuse it (the
 * client gets that status with a JSON error; s is invalid after the call and
 * no closed call follows). `closed` tells the owner that a kept stream went
 * away (client gone, too slow, token changed, listener stopping): exactly
 * once per kept stream, always from the loop (never from inside a call to
 * fc_admin_*()); the pointer is invalid after it.
 */
typedef int (*fc_admin_stream_open)(void *arg, struct fc_admin_stream *s);
typedef void (*fc_admin_stream_closed)(void *arg, struct fc_admin_stream *s);

/** Flags of a route. */
enum {
    FC_ADMIN_PUBLIC = 1, /**< served without the token (the dashboard's static page) */
};

/**
 * Creates the admin listener for cfg's `admin` group on loop (nothing is
 * bound while cfg has none). Returns 0 or a negative errno; a bind error is
 * logged with the file and line of the address. On failure nothing stays
 * bound and nothing is created.
 */
int fc_admin_create(uv_loop_t *loop, const struct fc_config *cfg, struct fc_admin **out);

/**
 * Registers `method path` with its handler. The path is compared byte for
 * byte without the query, segment by segment, except that a "{}" segment
 * matches any one non-empty segment, which the handler gets percent-decoded
 * in req->params (a segment that does not decode, or decodes to a NUL, is
 * answered 400). Returns 0, -EINVAL (no method, a path that does not start
 * with '/', more than FC_ADMIN_MAX_PARAMS "{}"), -EEXIST (registered
 * already) or -ENOMEM.
 */
int fc_admin_route(struct fc_admin *a, const char *method, const char *path, unsigned flags,
                   fc_admin_handler fn, void *arg);

/** Registers `GET path` as an event stream; returns as fc_admin_route(). */
int fc_admin_stream_route(struct fc_admin *a, const char *path, unsigned flags,
                          fc_admin_stream_open open, fc_admin_stream_closed closed, void *arg);

/**
 * Follows a reload: a changed address is bound anew (the old socket closes
 * once the new one listens; a bind error fails the call and changes nothing,
 * the old stays), a changed token is in force for the next request, and a
 * new token closes the streams of routes without FC_ADMIN_PUBLIC (let in
 * under the old one). Connections accepted on the old address stay. A cfg
 * without an admin group closes the listener and every connection. Returns
 * 0 or a negative errno (logged with file:line).
 */
int fc_admin_apply(struct fc_admin *a, const struct fc_config *cfg);

/**
 * Queues bytes on a stream (an SSE event, already formatted; data is copied
 * if it cannot be written at once). When more than FC_ADMIN_STREAM_BUFFER
 * bytes would wait for the reader, the stream is closed instead. Returns 0,
 * or a negative errno: the stream is closing (-ENOBUFS: too slow), and its
 * closed call follows from the loop.
 */
int fc_admin_stream_send(struct fc_admin_stream *s, const char *data, size_t len);

/** Bytes queued on s that the reader has not taken yet (at most FC_ADMIN_STREAM_BUFFER). */
size_t fc_admin_stream_queued(const struct fc_admin_stream *s);

/** Event streams open now (at most FC_ADMIN_MAX_STREAMS). */
unsigned fc_admin_streams(const struct fc_admin *a);

/**
 * Closes the listener and every connection and stream; frees a once they
 * closed, from the loop (which must run for that; the streams' closed calls
 * come then). NULL is accepted.
 */
void fc_admin_destroy(struct fc_admin *a);

#endif
