/*
 * The state of one transaction (struct fc_txn, the request memory), shared
 * by the files of the transaction room:
 *
 *   txn.c         the request path, step by step, in the order a request
 *                 takes; the steps it exports are declared below in that
 *                 order, as its table of contents
 *   txn_events.c  what each event of the two transports means for the
 *                 request, and the event tables handed to them
 *   txn_parser.c  the llhttp callbacks that record request and response heads
 *   txn_tunnel.c  what a connection becomes after a 101 to a WebSocket
 *   txn_cache.c   the response cache: answers from the pool's store, and
 *                 what is stored of the backends' answers
 *   txn_state.c   taking and giving back request memory
 *   txn_warn.c    warnings about requests, summarised
 *
 * Nothing outside these files includes this header: the worker sees txn.h.
 * Everything here runs on the transaction's worker.
 */
#ifndef FC_TXN_STATE_H
#define FC_TXN_STATE_H

#include "client.h"
#include "config.h"
#include "freelist.h"
#include "generation.h"
#include "http_request.h"
#include "listener.h"
#include "stats.h"
#include "worker_types.h"

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

struct fc_upstream;

enum fc_txn_phase {
    FC_TXN_IDLE,       /**< between requests */
    FC_TXN_HEAD,       /**< receiving a request head */
    FC_TXN_RATELIMIT,  /**< head complete: waiting for the rate limiter's verdict */
    FC_TXN_CONNECTING, /**< head complete: picking a backend, connecting */
    FC_TXN_PROXY,      /**< upstream connected: relaying both ways */
    FC_TXN_REPLY,      /**< writing a response of the proxy's own */
    FC_TXN_TUNNEL,     /**< after a 101 to a WebSocket: bytes both ways (txn_tunnel.c) */
    FC_TXN_CACHE,      /**< writing a response from the pool's cache (txn_cache.c) */
};

/* The handle a rate limiter gets for a verdict it gives later. */
struct fc_ratelimit_pending {
    struct fc_txn *t;
};

/*
 * The request memory. The fields up to `req` are reset when it is taken;
 * the heads and parsers after it are set up as they are used.
 */
struct fc_txn {
    struct fc_client *c;
    char *in, *out; /* input and output buffers, right after this struct */
    uint32_t in_cap, out_cap;
    uint32_t in_len, in_off; /* read so far; parsed so far */
    uint32_t out_len;
    uint32_t dechunk_w; /* HTTP/1.0 client of a chunked response: decoded bytes end here */
    enum fc_txn_phase phase;
    unsigned in_process : 1, again : 1, head_done : 1, msg_done : 1, req_done : 1, req_has_body : 1,
        head_pending : 1, head_req : 1, client_10 : 1, keep_alive : 1, resp_started : 1,
        resp_done : 1, dechunk : 1, close_after_reply : 1, stale_retried : 1, head_writing : 1,
        rl_waiting : 1, close_deferred : 1, up_head_done : 1, up_msg_done : 1, up_keep_alive : 1,
        websocket : 1, tun_client_eof : 1, tun_backend_eof : 1, outcome_told : 1,
        client_close : 1;   /* the request said the client sends no other (Connection: close) */
    int err_status;         /* set by a parser callback that refuses the request */
    uint64_t retry_after_s; /* for a 429 */
    struct fc_ratelimit_pending rl_pending;

    struct fc_generation *gen; /* held (fc_generation_request_start) while the request runs */
    struct fc_gen_pool *pool;
    struct fc_upstream *up;
    int32_t backend; /* index in pool, -1 none */
    uint32_t attempts;
    uint32_t passed_over; /* picks not taken: the backend had left rotation meanwhile */
    int32_t passed_first; /* the first of them (valid when passed_over > 0) */
    uint8_t *tried;       /* tried_small, or allocated for larger pools */
    uint64_t body_seen;
    uint64_t t_start;    /* uv_hrtime() at the request's first byte */
    uint64_t req_end;    /* uv_now() when the whole request had been read */
    uint64_t connect_ns; /* getting the backend connection (0: an idle one reused), for the log */
    uint64_t head_ns;    /* from t_start to the backend's response head, for the log */
    uint64_t bytes_out;
    int status;
    /* The response cache (txn_cache.c), in a pool with a `cache` group. */
    struct fc_cache_entry *c_entry; /* held: being written, or stale and being revalidated */
    struct fc_cache_store *c_store; /* the backend's answer, being stored */
    const void *c_meta;             /* c_entry's meta (the store's memory, while held) */
    uint32_t c_meta_len;
    uint32_t c_head_len;   /* the head of an answer from the cache in t->out, not yet written */
    uint64_t c_off, c_len; /* its body: bytes written, bytes to write */
    uint64_t c_body_len;   /* a stale entry's body length */
    int64_t c_request_time;
    const char *c_status; /* what Cache-Status says after "fulcrum; ", NULL: no cache */
    int c_answer;         /* the status of the answer from the cache */
    uint8_t c_kind;       /* enum fc_cache_request_kind */

    struct fc_request req;
    struct fc_request resp;
    llhttp_t parser;      /* the client's request parser */
    llhttp_t resp_parser; /* the backend's response parser */
    uv_write_t wreq;      /* the write to the client */
    uint8_t tried_small[32];
    struct fc_added_headers added; /* the response headers the pick added */
    char log_req[256];             /* "GET /path HTTP/1.1" for the access log */
};

/* The worker's request memory: blocks of one size, which follows max_header_bytes. */
/* One kind of per-request warning of a pool, summarised (see fc_txn_warn()). */
struct fc_txn_warning {
    const void *pool;    /* struct fc_conf_pool of the generation that logged it */
    const char *what;    /* the kind: a string literal, compared by address */
    uint64_t window;     /* uv_now() when the current second began */
    uint32_t in_window;  /* lines logged in it */
    uint64_t suppressed; /* occurrences not logged since */
};

/* Lines of one kind logged per second before the rest are only counted. */
#define FC_TXN_WARNINGS_PER_SECOND 5

#define FC_TXN_WARNINGS 16

/* The input buffer for the rest of a long request body (fc_txn_in_bulk()). */
#define FC_TXN_BULK_SIZE (64 * 1024)

struct fc_txn_cache {
    struct fc_freelist free;
    struct fc_freelist free_bulk; /* FC_TXN_BULK_SIZE input buffers */
    size_t size;
    struct fc_txn_warning warnings[FC_TXN_WARNINGS];
};

static inline const struct fc_config *fc_txn_config(const struct fc_txn *t)
{
    return t->c->w->gen->cfg;
}

/* The counters of the request's listener, this worker's slot (stats.h). */
static inline struct fc_listener_stats *fc_txn_listener_stats(const struct fc_txn *t)
{
    return fc_stats_listener(t->c->listener->stats, t->c->w->index);
}

/* ---- txn_state.c: request memory ---------------------------------------- */

/**
 * Takes request memory for c (c->txn), sized for the current generation's
 * max_header_bytes, with a fresh request parser. NULL when out of memory.
 */
struct fc_txn *fc_txn_acquire(struct fc_client *c);

/** Gives c->txn back (NULL is fine) and clears it. */
void fc_txn_free(struct fc_client *c);

/**
 * The rest of a long request body is read FC_TXN_BULK_SIZE at a time, into
 * a buffer of its own, and no further than the body's end (so nothing
 * pipelined behind it lands there). Only with the input buffer empty.
 */
void fc_txn_in_bulk(struct fc_txn *t);

/** Back to the request memory's own input buffer, once the bulk one is empty. */
void fc_txn_in_small(struct fc_txn *t);

/** Whether `in` is the bulk buffer (fc_txn_in_bulk()), not the request memory's own. */
static inline int fc_txn_in_is_bulk(const struct fc_txn *t)
{
    return t->in != (const char *)(t + 1);
}

/*
 * Bytes of a message body of known length (Content-Length) that the parser
 * has still to see: llhttp counts content_length down as it goes. 0 for a
 * chunked body, and for a message that has none.
 */
static inline uint64_t fc_body_left(const llhttp_t *p)
{
    return (p->flags & F_CHUNKED) ? 0 : p->content_length;
}

/* ---- txn_parser.c: the heads ---------------------------------------------- */

/** Prepares the callbacks of both parsers. Main thread, before any worker starts. */
void fc_txn_parsers_init(void);

/** A fresh request parser in t->parser (at the start of a connection's requests). */
void fc_txn_request_parser_init(struct fc_txn *t);

/** A fresh response parser in t->resp_parser (for each response). */
void fc_txn_response_parser_init(struct fc_txn *t);

/*
 * Resumes a parser that paused at the end of a message. A request that asked
 * for an upgrade pauses with HPE_PAUSED_UPGRADE, which llhttp_resume() does not
 * clear; the proxy strips Upgrade and refuses 101, so the connection simply
 * goes on in HTTP.
 */
static inline void fc_parser_resume(llhttp_t *p)
{
    enum llhttp_errno e = llhttp_get_errno(p);
    if (e == HPE_PAUSED)
        llhttp_resume(p);
    else if (e == HPE_PAUSED_UPGRADE)
        llhttp_resume_after_upgrade(p);
}

static inline int fc_parser_paused(enum llhttp_errno e)
{
    return e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE;
}

/** The status for a request the parser refused: what a callback set, else 400. */
static inline int fc_txn_parse_error_status(const struct fc_txn *t)
{
    return t->err_status ? t->err_status : 400;
}

/* ---- txn.c: the steps of a request, in order ------------------------------ */

/** Runs the request on what the input buffer holds (re-entry becomes another turn). */
void fc_txn_process(struct fc_txn *t);
/** 1. Parses the request head; at its end, fc_txn_begin(). */
void fc_txn_parse_head(struct fc_txn *t);
/** 1. The head is complete: checks, route, then the rate limiter or the pick. */
void fc_txn_begin(struct fc_txn *t);
/** 2. Asks the pool's rate limiter. */
void fc_txn_ratelimit_check(struct fc_txn *t);
/** 2. The host's ratelimit_done(): a verdict the limiter left pending. */
void fc_txn_ratelimit_done(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                           uint64_t retry_after_ms);
/** 3. Picks a backend and an upstream connection to it. */
void fc_txn_connect(struct fc_txn *t);
/** 3. The connect failed (or timed out): another backend, or 502/504. */
void fc_txn_connect_failed(struct fc_txn *t, int err, int timed_out);
/** 3. A new upstream connection is up: its time is noted, then the head goes out. */
void fc_txn_connected(struct fc_txn *t);
/** 4. Connected: the rewritten request head goes out, then the body. */
void fc_txn_send_request_head(struct fc_txn *t);
/** 4. Relays what the input buffer holds of the request. */
void fc_txn_forward_body(struct fc_txn *t);
/** 4. The backend took what was written to it. */
void fc_txn_upstream_written(struct fc_txn *t);
/** 5. Parses and relays what the upstream buffer holds of the response. */
void fc_txn_relay_response(struct fc_txn *t);
/** 5. The backend failed before or during its response: a retry, 502, or the end. */
void fc_txn_upstream_failed(struct fc_txn *t, const char *why);
/**
 * 5. Writes bufs to the client, counted in bytes_out (`more`: more of the
 * response is known to follow, fc_client_write()). Returns 1 when the
 * socket took them all, 0 when the rest waits for the client (reading the
 * backend stops, the client's stall timer runs), -1 when the write failed
 * and the transaction was aborted.
 */
int fc_txn_write_client(struct fc_txn *t, uv_buf_t *bufs, unsigned n, int more);
/**
 * Inserts n bytes of header lines before the end of the head of hn bytes
 * in t->out. Returns the new length, or -1 when they do not fit (or hn < 0).
 */
int fc_txn_insert_lines(struct fc_txn *t, int hn, const char *lines, size_t n);
/** 6. The client took what was written to it. */
void fc_txn_client_written(struct fc_txn *t);
/** 6. The response went out in full: the next request, or the close. */
void fc_txn_end(struct fc_txn *t);
/** Lets go of the generation and the backend (idempotent). */
void fc_txn_release(struct fc_txn *t);
/** Answers the request with the proxy's own response (`close`: then close). */
void fc_txn_reply(struct fc_txn *t, int status, int close);
/** The client left while its response was awaited: abandon the request (499). */
void fc_txn_client_left(struct fc_txn *t);
/** Ends the request and the connection: nothing valid can be answered. */
void fc_txn_abort(struct fc_txn *t, const char *why);
/**
 * Tells the pool's strategy the outcome of the request at its backend
 * (fc_strategy_ops.outcome): the status, or 0 for a failure before a
 * response head. Once per pick.
 */
void fc_txn_outcome(struct fc_txn *t, int status);
/**
 * Sends the request to another backend after its backend failed it in a way
 * the pool's `retry_on` names (`why`, an enum fc_retry_on bit; `status`, the
 * backend's answer or 0, for its outcome): only a request that is safe to
 * repeat (an idempotent method, no body), within `retries`, never to a
 * backend it tried. Returns 1 when it did (the transaction goes on), 0 when
 * the failure stands.
 */
int fc_txn_retry_elsewhere(struct fc_txn *t, unsigned why, int status);
/** The response went out (or the tunnel after it ended): counted, then logged. */
void fc_txn_log(struct fc_txn *t);

/* ---- txn_cache.c: the response cache -------------------------------------- */

/**
 * 3. Before the pick, in a pool with a cache: looks the request up. Returns
 * 1 when the store answers it (fc_txn_cache_send() writes the answer), 0
 * when it goes to a backend (holding a stale entry to revalidate, maybe).
 */
int fc_txn_cache_request(struct fc_txn *t);
/**
 * 4. The validator header lines of a revalidation (held stale entry) for the
 * forwarded head, or NULL. The text lives until the next call on the thread.
 */
const char *fc_txn_cache_conditional(const struct fc_txn *t, size_t *len);
/**
 * 5. A final response head arrived: begins storing it when it may be.
 * Returns 0 (relay it), 1 when it was the 304 to a revalidation and the
 * refreshed entry answers instead (fc_txn_cache_send()), or -1 when that
 * entry cannot (its head does not fit the output buffer): nothing valid
 * can be answered but an error.
 */
int fc_txn_cache_response(struct fc_txn *t);
/** 5. "Cache-Status: fulcrum; fwd=...\r\n" for a forwarded response into buf; its length, or 0. */
size_t fc_txn_cache_status_line(const struct fc_txn *t, char *buf, size_t cap);
/** 5. Body bytes of the response, decoded: appended to what is being stored. */
void fc_txn_cache_body(struct fc_txn *t, const char *at, size_t len);
/** 5. The backend's response ended whole: what was stored is committed. */
void fc_txn_cache_complete(struct fc_txn *t);
/** 6. Writes the answer from the cache: head, then body, until the client waits; then the end. */
void fc_txn_cache_send(struct fc_txn *t);
/** Lets go of a held entry and drops an unfinished store (idempotent). */
void fc_txn_cache_release(struct fc_txn *t);
/** Drops an unfinished store (its answer is retried elsewhere, say); idempotent. */
void fc_txn_cache_abort_store(struct fc_txn *t);

/* ---- txn_tunnel.c: after a 101 to a WebSocket ------------------------------ */

/**
 * The backend answered the WebSocket handshake with 101: the connection
 * becomes a tunnel. bufs[0] is the rewritten 101 head (in t->out), bufs[1]
 * (n == 2) what the backend sent behind it; what the client sent behind its
 * handshake waits in the input buffer from in_off.
 */
void fc_tunnel_start(struct fc_txn *t, uv_buf_t *bufs, unsigned n);
/** The client sent bytes (in t->in from in_off): on to the backend. */
void fc_tunnel_from_client(struct fc_txn *t);
/** The client's reading ended: UV_EOF (passed on to the backend) or an error. */
void fc_tunnel_client_ended(struct fc_txn *t, int status);
/** The client took what was written to it (status < 0: failed). */
void fc_tunnel_client_written(struct fc_txn *t, int status);
/** The backend sent bytes (in the upstream buffer from off): on to the client. */
void fc_tunnel_from_backend(struct fc_txn *t);
/** The backend's reading ended: UV_EOF (passed on to the client) or an error. */
void fc_tunnel_backend_ended(struct fc_txn *t, int status);
/** The backend took what was written to it (status < 0: failed). */
void fc_tunnel_backend_written(struct fc_txn *t, int status);
/** timeouts.tunnel_ms passed without a byte either way. */
void fc_tunnel_timeout(struct fc_txn *t);
/** The connection closes: the tunnel is counted out and logged (status 101). */
void fc_tunnel_closed(struct fc_txn *t);

/**
 * Logs a warning about the request's pool, of kind `what` (a string literal:
 * "no backend", "connect"...), as "pool NAME: MESSAGE": at most
 * FC_TXN_WARNINGS_PER_SECOND a second per worker, pool and kind; the rest are
 * counted, and the next line logged says how many were not. An outage at
 * 50,000 requests a second writes a few lines a second, not 50,000.
 */
void fc_txn_warn(struct fc_txn *t, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
