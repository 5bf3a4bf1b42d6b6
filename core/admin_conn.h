/*
 * The admin listener's connections, as the files behind admin.h share them:
 * admin.c (listening sockets, connections, the public functions),
 * admin_request.c (one request: parsing, routing, the token, the answer)
 * and admin_stream.c (event streams). Private to those files; the API is
 * admin.h. Everything here runs on the main thread.
 */
#ifndef FC_ADMIN_CONN_H
#define FC_ADMIN_CONN_H

#include "admin.h"

#include <llhttp.h>
#include <stddef.h>
#include <uv.h>

/* One read's worth of input; the parser consumes it all before the next read. */
#define FC_ADMIN_IN_CAP 16384
/* An idle keep-alive connection, or a response the client does not take, is closed after this. */
#define FC_ADMIN_IDLE_MS 30000
/* From a request's first byte to its end, at most (else 408). */
#define FC_ADMIN_REQUEST_MS 10000
/* How long a closing connection's unread input is thrown away. */
#define FC_ADMIN_LINGER_MS 2000

struct fc_admin_server;
struct fc_admin_swrite;

struct fc_admin_route {
    char *method;
    char *path;
    size_t path_len;
    unsigned n_params; /* its "{}" segments */
    unsigned flags;
    fc_admin_handler fn;       /* a plain route */
    fc_admin_stream_open open; /* a stream route */
    fc_admin_stream_closed closed;
    void *arg;
};

union fc_admin_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
};

enum fc_admin_conn_state {
    FC_ADMIN_CONN_READING,   /* waiting for a request, or for the rest of one */
    FC_ADMIN_CONN_WAITING,   /* a handler answers later (fc_admin_defer()); nothing is read */
    FC_ADMIN_CONN_WRITING,   /* a response is being written; nothing is read */
    FC_ADMIN_CONN_STREAMING, /* an event stream; what arrives is thrown away */
    FC_ADMIN_CONN_LINGERING, /* answered and shut down: input is thrown away until the close */
    FC_ADMIN_CONN_CLOSING,
};

struct fc_admin_stream {
    struct fc_admin_conn *c;
    fc_admin_stream_closed closed;
    void *arg;
    size_t queued; /* bytes in swrites not called back yet */
    unsigned opening : 1, kept : 1, closing : 1;
    unsigned needs_token : 1; /* not FC_ADMIN_PUBLIC: a new token closes it */
    struct fc_admin_swrite *pending, **pending_tail; /* while opening */
};

struct fc_admin_conn {
    union fc_admin_handle h;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct fc_admin *a;
    struct fc_admin_conn *prev, *next;
    enum fc_admin_conn_state state;
    int handles; /* not closed yet: freed at 0 */
    unsigned reading : 1, in_request : 1, head_done : 1, head_checked : 1, msg_done : 1;
    unsigned in_auth : 1, in_expect : 1, has_auth : 1, expect_continue : 1, close_after : 1;
    unsigned in_host : 1, has_host : 1, in_origin : 1, has_origin : 1;
    unsigned resumed : 1; /* the parser resumed after a head: it runs once more, input or not */
    int err_status;       /* what a parser callback refused the request with; 0: 400 */
    llhttp_t parser;
    size_t in_len;     /* bytes in `in`; the parser takes them all before the next read */
    size_t in_off;     /* how far the parser has come in `in` */
    size_t head_bytes; /* of the current request's head so far */
    /* The target, then the Authorization value, copied out of the input. */
    size_t scratch_len, url_len, auth_off, auth_len;
    size_t host_off, host_len, origin_off, origin_len; /* Host and Origin, in scratch too */
    char field[16]; /* the header name being parsed (only short ones matter) */
    size_t field_len;
    char expect[16];
    size_t expect_len;
    char *body;
    size_t body_len, body_cap;
    char *out; /* the response being written */
    struct fc_admin_stream *stream;
    struct fc_admin_later *later; /* while WAITING */
    char scratch[FC_ADMIN_MAX_HEAD];
    char in[FC_ADMIN_IN_CAP];
};

struct fc_admin {
    uv_loop_t *loop;
    struct fc_admin_server *server; /* NULL: not listening */
    char *token;                    /* NULL: none required */
    size_t token_len;
    struct fc_admin_route *routes;
    size_t n_routes;
    struct fc_admin_conn *conns;
    unsigned n_conns;
    unsigned n_streams;
    unsigned live; /* servers and connections not freed yet */
    int destroyed;
};

/* ---- admin.c: the connection ------------------------------------------- */

/* Starts closing c: its memory is freed in the close callback of its last handle. */
void fc_admin_conn_close(struct fc_admin_conn *c);

/* Reads on c, if it does not already; closes it on failure. */
void fc_admin_conn_read_start(struct fc_admin_conn *c);
void fc_admin_conn_read_stop(struct fc_admin_conn *c);

/* (Re)arms c's one timer; what its expiry means depends on c->state. */
void fc_admin_conn_timer_arm(struct fc_admin_conn *c, uint64_t ms);

/*
 * Closing a socket with unread input makes the kernel answer with a reset,
 * which can destroy the response before the client has read it (the rest of
 * a refused body, a pipelined request). So c's side is shut down first and
 * what the client still sends is thrown away, for FC_ADMIN_LINGER_MS at most.
 */
void fc_admin_conn_linger(struct fc_admin_conn *c);

/* ---- admin_request.c: one request --------------------------------------- */

/* c is closing while a handler's answer is due: the answer will be dropped. */
void fc_admin_later_orphan(struct fc_admin_later *l);

/* Sets up c's parser (llhttp, strict) for its first request. */
void fc_admin_request_init(struct fc_admin_conn *c);

/*
 * Runs the parser over what c's buffer holds, up to the end of a request
 * (then answers it), an error (then answers that and closes), or the end of
 * the input (then reads more).
 */
void fc_admin_request_process(struct fc_admin_conn *c);

/*
 * Answers c's current request with `status` and the JSON error `message`;
 * `extra` is more header lines (or NULL); `close` ends the connection after.
 */
void fc_admin_conn_reply_error(struct fc_admin_conn *c, int status, const char *message,
                               const char *extra, int close);

/* ---- admin_stream.c: event streams -------------------------------------- */

/*
 * Makes c's request (for the stream route rt) an event stream: open() is
 * asked, then the head and what open() sent are written; or c gets 503 (too
 * many streams) or open()'s refusal. `needs_token`: rt is not FC_ADMIN_PUBLIC.
 */
void fc_admin_stream_start(struct fc_admin_conn *c, const struct fc_admin_route *rt,
                           int needs_token);

/* s's connection has closed: its owner is told (if open() kept it), and s freed. */
void fc_admin_stream_end(struct fc_admin_stream *s);

#endif
