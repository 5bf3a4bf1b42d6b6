/*
 * libFuzzer target: a message body as the proxy relays it, Content-Length,
 * chunked or (for a response) delimited by the close, over reads split where
 * the input says.
 *
 * The parsers are the proxy's own: core/txn_parser.c is compiled in, and its
 * callbacks run on a struct fc_txn whose connection, worker, generation and
 * upstream connection hold only what those callbacks read (the body limit,
 * the upstream buffer). What txn.c does around llhttp_execute() is tied to
 * libuv and the two transports, so it is written out again below as glue,
 * step for step and with the same names: fc_txn_parse_head(), the check of
 * fc_txn_begin() and fc_txn_forward_body() for a request;
 * fc_txn_relay_response(), response_head() and the EOF of
 * upstream_on_read_end() (txn_events.c) for a response. Writes complete at
 * once, so each relay is followed by what fc_txn_upstream_written() or
 * fc_txn_client_written() does next. A change to those steps must be made
 * here too. Rewriting the heads is left to the request and response targets.
 *
 * Input: byte 0 picks the side and its options (see LLVMFuzzerTestOneInput),
 * byte 1 how many read sizes follow (1 to 8), each byte one read size (0:
 * all that is left), taken in turn until the message is read; the rest is
 * the message and whatever follows it. The message is run once in one read
 * and once in those reads, and the two verdicts must be the same: refused or
 * not (and, once the head was taken, with which status), where the message
 * ended, whether it is complete, how many body bytes the callbacks saw and,
 * for an HTTP/1.0 client of a chunked response, the body decoded in place.
 * Each run also checks that no more bytes are taken than were read, that a
 * complete Content-Length body has that length, that a message without a
 * body (a request without one, a response to HEAD, a 204 or a 304
 * whatever its framing headers say) ends with its head, that the body bytes
 * relayed raw are the ones read, and that a decoded body is the chunk data
 * of the raw one. Any broken invariant calls abort().
 */
#include "txn_state.h"

#include "http_rewrite.h"
#include "upstream.h"

#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The parser's callbacks hand a stored response's body to the response
 * cache (txn_cache.c) only while t->c_store is set; the fuzzed transaction
 * has no cache, so it never is, and reaching these is a broken invariant.
 */
void fc_txn_cache_body(struct fc_txn *t, const char *at, size_t len)
{
    abort();
}

void fc_txn_cache_complete(struct fc_txn *t)
{
    abort();
}

/* The request input buffer: max_header_bytes' default, as fc_txn_acquire() sizes it. */
#define IN_CAP 16384

/* What one run of a message came to. */
struct verdict {
    int status;         /* 0: relayed; else the status answered, 502 for a backend's failure */
    int complete;       /* the message ended */
    int head_done;      /* the head was taken: head_len and the framing below are set */
    size_t head_len;    /* bytes of the message up to its body */
    size_t consumed;    /* bytes of the message parsed: head, body, nothing after its end */
    uint64_t body_seen; /* request: what req_on_body() counted */
    int content_length; /* framed by Content-Length, with a body */
    uint64_t declared;  /* that length */
    int chunked;        /* framed by chunked encoding */
    int bodiless;       /* no body whatever the framing: the message ends with its head */
    size_t relayed_len; /* body bytes relayed raw (response, not decoded) */
    size_t decoded_len; /* body bytes decoded in place (HTTP/1.0 client) */
};

/* One run: the transaction, its input, and where the reads are. */
struct run {
    struct fc_txn *t;
    const char *msg; /* the message, and what follows it */
    size_t len;
    const uint8_t *sizes; /* read sizes, taken in turn; NULL: one read of everything */
    size_t n_sizes, next;
    size_t fed;    /* bytes of msg read so far */
    size_t base;   /* offset in msg of the buffer's first byte */
    char *relayed; /* body bytes relayed, raw or decoded, in the order they went out */
    struct verdict v;
};

static struct fc_client client;
static struct fc_worker worker;
static struct fc_generation gen;
static struct fc_config cfg;
static struct fc_upstream up;
static struct fc_txn txn;
static char *in_buf;
static char *up_buf;

static void check(int ok)
{
    if (!ok)
        abort();
}

/* The size of the next read into a buffer with `room` bytes free (0: none is possible). */
static size_t next_read(struct run *r, size_t room)
{
    size_t left = r->len - r->fed;
    size_t n = left;
    if (r->sizes != NULL) {
        size_t s = r->sizes[r->next++ % r->n_sizes];
        if (s != 0 && s < n)
            n = s;
    }
    return n < room ? n : room;
}

/* ------------------------------------------------------------------------ */
/* The request                                                               */
/* ------------------------------------------------------------------------ */

/* The head is complete: fc_txn_begin() checks it before anything is relayed. */
static int request_begin(struct run *r)
{
    struct fc_txn *t = r->t;
    t->req.http_major = t->parser.http_major;
    t->req.http_minor = t->parser.http_minor;
    r->v.head_done = 1;
    r->v.head_len = r->base + t->in_off;
    r->v.chunked = (t->parser.flags & F_CHUNKED) != 0;
    r->v.content_length = !r->v.chunked && (t->parser.flags & F_CONTENT_LENGTH) && t->req_has_body;
    r->v.bodiless = !t->req_has_body;
    r->v.declared = t->parser.content_length;
    const char *why = NULL;
    int refuse = fc_head_check_request(&t->req, r->v.chunked, t->parser.content_length,
                                       cfg.limits.max_body_bytes, &why);
    check(refuse == 0 || why != NULL);
    r->v.status = refuse;
    return refuse;
}

/*
 * fc_txn_parse_head() on what the buffer holds. Returns 1 when the head is
 * done (and its check passed), 0 to read on, -1 refused.
 */
static int request_parse_head(struct run *r)
{
    struct fc_txn *t = r->t;
    const char *start = t->in + t->in_off;
    size_t avail = t->in_len - t->in_off;
    enum llhttp_errno e = llhttp_execute(&t->parser, start, avail);
    if (e == HPE_OK) {
        t->in_off = t->in_len;
        if (t->in_len == t->in_cap) {
            r->v.status = 431;
            return -1;
        }
        return 0;
    }
    if (fc_parser_paused(e) && t->head_done) {
        const char *pos = llhttp_get_error_pos(&t->parser);
        check(pos >= start && pos <= start + avail);
        t->in_off = (uint32_t)(pos - t->in);
        t->req_done = t->msg_done;
        return request_begin(r) == 0 ? 1 : -1;
    }
    r->v.status = fc_txn_parse_error_status(t);
    return -1;
}

/*
 * fc_txn_forward_body(): relays what the buffer holds of the body. Returns 0
 * to read on, 1 at the end of the message, -1 refused.
 */
static int request_forward_body(struct run *r)
{
    struct fc_txn *t = r->t;
    for (;;) {
        if (t->req_done)
            return 1;
        const char *start = t->in + t->in_off;
        size_t avail = t->in_len - t->in_off;
        fc_parser_resume(&t->parser); /* paused at the end of the head */
        enum llhttp_errno e = avail ? llhttp_execute(&t->parser, start, avail) : HPE_OK;
        size_t used;
        if (e == HPE_OK) {
            used = avail;
        } else if (fc_parser_paused(e) && t->msg_done) {
            const char *pos = llhttp_get_error_pos(&t->parser);
            check(pos >= start && pos <= start + avail);
            used = (size_t)(pos - start);
            t->req_done = 1;
        } else {
            t->req_done = 0;
            r->v.status = fc_txn_parse_error_status(t);
            return -1;
        }
        t->in_off += (uint32_t)used;
        /* The write went out at once: fc_txn_upstream_written(). */
        if (t->req_done)
            return 1;
        if (t->in_off < t->in_len)
            continue;
        r->base += t->in_len;
        t->in_off = t->in_len = 0; /* everything read so far was relayed */
        return 0;
    }
}

static void run_request(struct run *r)
{
    struct fc_txn *t = r->t;
    t->in = in_buf;
    t->in_cap = IN_CAP;
    fc_txn_request_parser_init(t);
    int head = 0, rc = 0;
    while (r->fed < r->len) {
        size_t n = next_read(r, t->in_cap - t->in_len);
        check(n > 0); /* the head phase refuses a full buffer; the body phase empties it */
        memcpy(t->in + t->in_len, r->msg + r->fed, n);
        t->in_len += (uint32_t)n;
        r->fed += n;
        if (!head) {
            rc = request_parse_head(r);
            if (rc <= 0) {
                if (rc < 0)
                    break;
                continue;
            }
            head = 1;
        }
        rc = request_forward_body(r);
        if (rc != 0)
            break;
    }
    r->v.consumed = r->base + t->in_off;
    r->v.complete = rc == 1;
    r->v.body_seen = t->body_seen;
    check(r->v.consumed <= r->fed);
}

/* ------------------------------------------------------------------------ */
/* The response                                                              */
/* ------------------------------------------------------------------------ */

/* Relayed body bytes: they go to the client at once. */
static void response_send(struct run *r, const char *p, size_t n, int decoded)
{
    memcpy(r->relayed + r->v.relayed_len + r->v.decoded_len, p, n);
    if (decoded)
        r->v.decoded_len += n;
    else
        r->v.relayed_len += n;
}

static void response_failed(struct run *r)
{
    r->v.status = 502;
}

/*
 * response_head(): the response head is complete. Returns 1 (the body bytes
 * parsed are *start, *used), 0 for an interim response (the next head
 * follows), -1 failed.
 */
static int response_head(struct run *r, const char **start, size_t *used, size_t avail)
{
    struct fc_txn *t = r->t;
    struct fc_upstream *u = t->up;
    llhttp_t *p = &t->resp_parser;
    int status = p->status_code;
    if (status == 101 || status < 100) {
        response_failed(r);
        return -1;
    }
    if (status < 200) {
        u->off += (uint32_t)*used;
        t->up_head_done = 0;
        uint32_t left = u->len - u->off;
        memmove(u->buf, u->buf + u->off, left);
        r->base += u->off;
        u->len = left;
        u->off = 0;
        return 0;
    }
    int chunked = (p->flags & F_CHUNKED) != 0;
    int bodiless = t->head_req || status == 204 || status == 304;
    t->dechunk = chunked && t->client_10 && !bodiless;
    t->resp_started = 1;
    const char *body = *start + *used;
    size_t rest = avail - *used;
    u->off += (uint32_t)*used;
    *start = body;
    *used = 0;
    r->v.head_done = 1;
    r->v.head_len = r->base + u->off;
    r->v.chunked = chunked && !bodiless;
    r->v.bodiless = bodiless;
    r->v.content_length = !chunked && !bodiless && (p->flags & F_CONTENT_LENGTH);
    r->v.declared = p->content_length;
    if (t->up_msg_done || rest == 0)
        return 1;
    fc_parser_resume(p);
    t->dechunk_w = u->off;
    enum llhttp_errno e = llhttp_execute(p, body, rest);
    if (e == HPE_OK) {
        *used = rest;
    } else if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(p);
        check(pos >= body && pos <= body + rest);
        *used = (size_t)(pos - body);
    } else {
        response_failed(r); /* the head went out; the connection is reset */
        return -1;
    }
    return 1;
}

/*
 * fc_txn_relay_response() on what the upstream buffer holds. Returns 0 to
 * read on, 1 at the end of the response, -1 failed.
 */
static int response_relay(struct run *r)
{
    struct fc_txn *t = r->t;
    struct fc_upstream *u = t->up;
    for (;;) {
        if (t->resp_done)
            return 1;
        const char *start = u->buf + u->off;
        size_t avail = u->len - u->off;
        if (avail == 0)
            return 0;
        fc_parser_resume(&t->resp_parser);
        t->dechunk_w = u->off;
        enum llhttp_errno e = llhttp_execute(&t->resp_parser, start, avail);
        size_t used;
        if (e == HPE_OK) {
            used = avail;
        } else if (e == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&t->resp_parser);
            check(pos >= start && pos <= start + avail);
            used = (size_t)(pos - start);
        } else {
            response_failed(r);
            return -1;
        }
        if (!t->up_head_done) {
            u->off += (uint32_t)used;
            if (u->len == FC_UPSTREAM_BUF_SIZE) {
                response_failed(r); /* response head too large */
                return -1;
            }
            return 0;
        }
        unsigned n = 0;
        if (!t->resp_started) {
            int hn = response_head(r, &start, &used, avail);
            if (hn < 0)
                return -1;
            if (hn == 0)
                continue; /* interim: relayed (or dropped), then the next head */
            n = 1;        /* the rewritten head */
        }
        if (used > 0) {
            if (t->dechunk) {
                uint32_t from = (uint32_t)(start - u->buf);
                check(t->dechunk_w >= from && t->dechunk_w - from <= used);
                if (t->dechunk_w > from) {
                    response_send(r, start, t->dechunk_w - from, 1);
                    n++;
                }
            } else {
                response_send(r, start, used, 0);
                n++;
            }
            u->off += (uint32_t)used;
        }
        if (t->up_msg_done)
            t->resp_done = 1;
        if (n == 0)
            return t->resp_done;
        /* The write went out at once: fc_txn_client_written(). */
        if (t->resp_done)
            return 1;
        if (u->off < u->len)
            continue;
        r->base += u->len;
        u->off = u->len = 0;
        return 0;
    }
}

/* The backend closed: upstream_on_read_end() with UV_EOF. Returns 1 at the end, else -1. */
static int response_eof(struct run *r)
{
    struct fc_txn *t = r->t;
    struct fc_upstream *u = t->up;
    if (t->up_head_done && !t->resp_done) {
        fc_parser_resume(&t->resp_parser);
        llhttp_execute(&t->resp_parser, u->buf + u->len, 0);
        enum llhttp_errno fe = llhttp_finish(&t->resp_parser);
        if ((fe == HPE_OK || fe == HPE_PAUSED) && t->up_msg_done) {
            t->resp_done = 1;
            return 1;
        }
    }
    response_failed(r);
    return -1;
}

static void run_response(struct run *r)
{
    struct fc_txn *t = r->t;
    struct fc_upstream *u = &up;
    memset(u, 0, sizeof(*u));
    u->buf = up_buf;
    t->up = u;
    fc_txn_response_parser_init(t);
    int rc = 0;
    while (r->fed < r->len) {
        size_t n = next_read(r, FC_UPSTREAM_BUF_SIZE - u->len);
        if (n == 0) {
            rc = -1; /* a full buffer: libuv reports UV_ENOBUFS and the response fails */
            response_failed(r);
            break;
        }
        memcpy(u->buf + u->len, r->msg + r->fed, n);
        u->len += (uint32_t)n;
        r->fed += n;
        rc = response_relay(r);
        if (rc != 0)
            break;
    }
    if (rc == 0)
        rc = response_eof(r);
    r->v.consumed = r->base + u->off;
    r->v.complete = rc == 1;
    check(r->v.consumed <= r->fed);
}

/* ------------------------------------------------------------------------ */
/* The checks                                                                */
/* ------------------------------------------------------------------------ */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * The chunk data of a chunked body that llhttp took as complete, decoded
 * apart from llhttp: a size, the rest of its line, that many bytes and CR LF,
 * until the size 0 (the trailer section after it holds no data).
 */
static size_t chunk_data(const char *p, size_t len, char *out)
{
    size_t i = 0, n = 0;
    for (;;) {
        uint64_t size = 0;
        for (int d; i < len && (d = hex_digit(p[i])) >= 0; i++) {
            check(size >> 60 == 0);
            size = size * 16 + (uint64_t)d;
        }
        while (i < len && p[i] != '\n')
            i++; /* extensions, CR LF */
        check(i < len);
        i++;
        if (size == 0)
            return n;
        check(size + 2 <= len - i);
        memcpy(out + n, p + i, size);
        n += size;
        i += size + 2;
    }
}

/* What each run checks of itself. */
static void check_run(const struct run *r, int response)
{
    const struct verdict *v = &r->v;
    check(v->consumed <= r->len);
    /* A HEAD, 204 or 304 response, a request without a body (one that passed its
     * check): the message ends with its head, and nothing more is waited for. */
    if (v->head_done && v->bodiless && (response || v->status == 0))
        check(v->status == 0 && v->complete && v->consumed == v->head_len);
    if (v->status != 0 || !v->complete)
        return;
    check(v->head_done && v->head_len <= v->consumed);
    size_t body = v->consumed - v->head_len;
    if (v->content_length)
        check(body == v->declared);
    if (!response) {
        check(v->body_seen <= body);
        if (v->content_length)
            check(v->body_seen == v->declared);
        return;
    }
    if (r->t->dechunk) {
        static char want[65536];
        check(body <= sizeof(want));
        size_t n = chunk_data(r->msg + v->head_len, body, want);
        check(v->relayed_len == 0 && v->decoded_len == n && memcmp(r->relayed, want, n) == 0);
    } else {
        check(v->decoded_len == 0 && v->relayed_len == body);
        check(memcmp(r->relayed, r->msg + v->head_len, body) == 0);
    }
}

/* The verdict of one run must not depend on how the bytes were split. */
static void check_same(const struct run *a, const struct run *b)
{
    check((a->v.status != 0) == (b->v.status != 0));
    check(a->v.head_done == b->v.head_done);
    /*
     * Within a head, a callback may refuse a partial field (the 129th header:
     * 431) that, whole, llhttp would have refused for a bad byte further on
     * (400): either answer is right, and which comes first follows the split.
     * Once the head is taken, the status must be the same.
     */
    if (a->v.head_done)
        check(a->v.status == b->v.status);
    if (a->v.status != 0)
        return;
    check(a->v.complete == b->v.complete);
    check(a->v.consumed == b->v.consumed);
    if (a->v.head_done)
        check(a->v.head_len == b->v.head_len);
    check(a->v.body_seen == b->v.body_seen);
    check(a->v.relayed_len == b->v.relayed_len);
    check(a->v.decoded_len == b->v.decoded_len);
    check(memcmp(a->relayed, b->relayed, a->v.relayed_len + a->v.decoded_len) == 0);
}

static void run_one(struct run *r, unsigned flags)
{
    struct fc_txn *t = &txn;
    memset(t, 0, sizeof(*t));
    t->c = &client;
    r->t = t;
    memset(&r->v, 0, sizeof(r->v));
    if (flags & 1u) {
        t->head_req = (flags & 2u) != 0;
        t->client_10 = (flags & 4u) != 0;
        run_response(r);
    } else {
        run_request(r);
    }
    check_run(r, (flags & 1u) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Byte 0: bit 0 a response (else a request). For a request, bits 1 and 2
 * pick limits.max_body_bytes (none, 1, 16, 256). For a response, bit 1: the
 * request was HEAD; bit 2: the client speaks HTTP/1.0 (a chunked body is
 * decoded).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (in_buf == NULL) {
        fc_txn_parsers_init();
        client.w = &worker;
        worker.gen = &gen;
        gen.cfg = &cfg;
        in_buf = malloc(IN_CAP);
        up_buf = malloc(FC_UPSTREAM_BUF_SIZE);
        if (in_buf == NULL || up_buf == NULL)
            abort();
    }
    if (size < 2)
        return 0;
    unsigned flags = data[0];
    size_t n_sizes = (size_t)(data[1] % 8) + 1;
    if (size < 2 + n_sizes)
        return 0;
    static const uint64_t limits[4] = {0, 1, 16, 256};
    cfg.limits.max_body_bytes = (flags & 1u) ? 0 : limits[(flags >> 1) & 3u];
    const uint8_t *sizes = data + 2;
    size_t len = size - 2 - n_sizes;
    /* Copies of their own, so that a read past the message is a sanitizer report. */
    char *msg = malloc(len ? len : 1);
    char *relayed = malloc(2 * (len ? len : 1));
    if (msg == NULL || relayed == NULL)
        abort();
    memcpy(msg, data + 2 + n_sizes, len);

    struct run whole = {.msg = msg, .len = len, .relayed = relayed};
    run_one(&whole, flags);
    struct run split = {
        .msg = msg, .len = len, .sizes = sizes, .n_sizes = n_sizes, .relayed = relayed + len};
    run_one(&split, flags);
    check_same(&whole, &split);

    free(relayed);
    free(msg);
    return 0;
}
