/*
 * The response cache on the request path, for a pool with a `cache` group:
 * what the store answers before a backend is picked, and what is stored of
 * what a backend answers. The decisions are cache_policy.c's, the keys and
 * metas cache_entry.c's; the bytes live in the pool's store plugin (struct
 * fc_cache_ops), one instance shared by every worker.
 *
 *   lookup -> fresh: answered from the store (Age, Cache-Status: hit),
 *             304 when the client's conditional matches it; HEAD from a GET
 *          -> stale with a validator: forwarded with If-None-Match /
 *             If-Modified-Since; a 304 refreshes the entry, which answers
 *          -> nothing (or stale without a validator): forwarded
 *   response head -> storable: stored as its body streams to the client,
 *             committed at its end, dropped when it fails or grows too large
 *
 * A response is stored as it is relayed: the client never waits for the
 * whole object, and an entry is found only once its commit made it whole.
 * Two clients that miss on the same object at once are both forwarded, and
 * the later commit replaces the earlier one (no request collapsing).
 *
 * Entries read from the store are held (looked up, released) while their
 * bytes are written: the writes go out from the store's own memory.
 * Everything here runs on the transaction's worker; the key and meta are
 * built in per-thread buffers, so the path allocates nothing of its own.
 */
#include "txn_state.h"

#include "cache_entry.h"
#include "cache_policy.h"
#include "http_rewrite.h"
#include "log.h"
#include "plugin_loader.h"
#include "stats.h"

#include <string.h>
#include <time.h>

/* At most this many body spans go out in one write (with the head: four buffers, which libuv
 * keeps without allocating). */
#define SPANS_PER_WRITE 3

static _Thread_local char key_buf[FC_CACHE_KEY_MAX];
static _Thread_local char meta_buf[FC_CACHE_META_MAX];
static _Thread_local char cond_buf[512];

static const struct fc_cache_ops *cache_ops(const struct fc_txn *t)
{
    return t->pool->cache->plugin->desc->cache;
}

static void *cache_state(const struct fc_txn *t)
{
    return t->pool->cache->state;
}

static int https(const struct fc_txn *t)
{
    return fc_client_is_tls(t->c);
}

static void count(struct fc_txn *t, enum fc_stats_cache_result r, const char *status)
{
    fc_stats_add(&fc_stats_pool(t->pool->stats, t->c->w->index)->cache[r], 1);
    t->c_status = status;
}

static void release_entry(struct fc_txn *t)
{
    if (t->c_entry == NULL)
        return;
    cache_ops(t)->release(cache_state(t), t->c_entry);
    t->c_entry = NULL;
}

void fc_txn_cache_abort_store(struct fc_txn *t)
{
    if (t->c_store == NULL)
        return;
    cache_ops(t)->store_abort(cache_state(t), t->c_store);
    t->c_store = NULL;
}

void fc_txn_cache_release(struct fc_txn *t)
{
    fc_txn_cache_abort_store(t);
    release_entry(t);
}

/*
 * Looks `key` up: the entry, with its meta decoded into *m, or NULL. A
 * variant stub leads on to the variant that the request's headers select.
 */
static struct fc_cache_entry *lookup(struct fc_txn *t, size_t key_len, struct fc_cache_meta *m,
                                     uint64_t *body_len)
{
    const struct fc_cache_ops *ops = cache_ops(t);
    void *state = cache_state(t);
    for (int hop = 0; hop < 2; hop++) {
        struct fc_cache_entry *e = NULL;
        struct fc_cache_hit hit = {.size = sizeof(hit)};
        if (ops->lookup(state, key_buf, key_len, &e, &hit) != 1)
            return NULL;
        if (fc_cache_meta_decode(hit.meta.data, hit.meta.len, m) < 0) {
            ops->release(state, e);
            return NULL;
        }
        if (!m->stub) {
            *body_len = hit.body_len;
            t->c_meta = hit.meta.data;
            t->c_meta_len = (uint32_t)hit.meta.len;
            return e;
        }
        /* The key of the variant is built before the stub (whose vary it reads) goes. */
        key_len = hop == 0 ? fc_cache_key(&t->req, https(t), m->vary, key_buf, sizeof(key_buf)) : 0;
        ops->release(state, e);
        if (key_len == 0)
            return NULL;
    }
    return NULL;
}

/* "Connection: close" or "keep-alive" before the end of the head of hn bytes in t->out. */
static size_t with_connection(struct fc_txn *t, size_t hn)
{
    const char *line = NULL;
    if (!t->keep_alive || t->c->w->draining)
        line = "Connection: close\r\n";
    else if (t->client_10)
        line = "Connection: keep-alive\r\n";
    if (line == NULL)
        return hn;
    int n = fc_txn_insert_lines(t, (int)hn, line, strlen(line));
    return n < 0 ? 0 : (size_t)n;
}

/*
 * Prepares the answer from entry e (held, now t->c_entry) of meta m: its
 * head in t->out, and the body to follow unless the request is HEAD or the
 * answer a 304 to the client's conditional. Returns 0, or -1 when the head
 * does not fit (nothing is held then but e, still the caller's).
 */
static int prepare_answer(struct fc_txn *t, struct fc_cache_entry *e, const struct fc_cache_meta *m,
                          uint64_t body_len, const char *status)
{
    int not_modified =
        m->status == 200 && fc_cache_not_modified(&t->req, m->etag, m->last_modified);
    size_t hn =
        fc_cache_hit_head(m, body_len, time(NULL), not_modified, status, t->out, t->out_cap);
    if (hn == 0 || (hn = with_connection(t, hn)) == 0)
        return -1;
    t->c_entry = e;
    t->c_head_len = (uint32_t)hn;
    t->c_off = 0;
    t->c_len = not_modified || t->head_req ? 0 : body_len;
    t->c_answer = not_modified ? 304 : m->status;
    return 0;
}

/*
 * RFC 9111 4.4: an unsafe request makes what is stored of its target stale.
 * Dropped as the request is forwarded (the RFC asks it of a successful
 * answer; dropping more is always safe), for every scheme, host and variant
 * (the prefix target + '\n'): by the time the answer comes, the relayed body
 * may have overwritten the request's head in the input buffer.
 */
static void invalidate(struct fc_txn *t)
{
    if (t->req.target.len + 1 > sizeof(key_buf))
        return;
    memcpy(key_buf, t->req.target.p, t->req.target.len);
    key_buf[t->req.target.len] = '\n';
    cache_ops(t)->remove(cache_state(t), key_buf, t->req.target.len + 1);
}

/*
 * Whether a stale entry of meta m can be revalidated and then answer: it
 * has a validator that fits a header line, and its head fits the output
 * buffer (tried there now: the buffer is free until the request's head is
 * written to it).
 */
static int can_revalidate(struct fc_txn *t, const struct fc_cache_meta *m, uint64_t body_len)
{
    size_t len;
    if (t->head_req || fc_txn_cache_conditional(t, &len) == NULL)
        return 0;
    return fc_cache_hit_head(m, body_len, time(NULL), 0, "fwd=stale; fwd-status=304", t->out,
                             t->out_cap - 64) > 0;
}

int fc_txn_cache_request(struct fc_txn *t)
{
    size_t len;
    t->c_request_time = time(NULL);
    t->c_kind = (uint8_t)fc_cache_request_kind(&t->req);
    /*
     * A body (or a tunnel) may overwrite the request's head in the input
     * buffer before the answer comes: such a request stores nothing.
     */
    if (t->c_kind != FC_CACHE_BYPASS && (t->req_has_body || t->websocket))
        t->c_kind = FC_CACHE_NO_STORE;
    /* A stored answer may not be what this caller is allowed (RFC 9111 3.5): ask the backend. */
    if (t->c_kind == FC_CACHE_LOOKUP && fc_request_header(&t->req, "Authorization", &len) != NULL)
        t->c_kind = FC_CACHE_FORWARD;
    switch (t->c_kind) {
    case FC_CACHE_BYPASS:
        count(t, FC_CACHE_RESULT_BYPASS, "fwd=method");
        invalidate(t);
        return 0;
    case FC_CACHE_NO_STORE:
        count(t, FC_CACHE_RESULT_BYPASS, "fwd=bypass");
        return 0;
    case FC_CACHE_FORWARD:
        count(t, FC_CACHE_RESULT_MISS, "fwd=request");
        return 0;
    default:
        break;
    }
    size_t key_len =
        fc_cache_key(&t->req, https(t), (struct fc_span){"", 0}, key_buf, sizeof(key_buf));
    if (key_len == 0) {
        t->c_kind = FC_CACHE_NO_STORE;
        count(t, FC_CACHE_RESULT_BYPASS, "fwd=bypass");
        return 0;
    }
    struct fc_cache_meta m;
    uint64_t body_len = 0;
    struct fc_cache_entry *e = lookup(t, key_len, &m, &body_len);
    if (e == NULL) {
        count(t, FC_CACHE_RESULT_MISS, "fwd=miss");
        return 0;
    }
    if (fc_cache_is_fresh(&m, time(NULL))) {
        if (prepare_answer(t, e, &m, body_len, "hit") == 0) {
            count(t, FC_CACHE_RESULT_HIT, "hit");
            return 1;
        }
        /* A head too large for the output buffer: it cannot answer; the backend's answer can. */
        cache_ops(t)->release(cache_state(t), e);
        count(t, FC_CACHE_RESULT_MISS, "fwd=miss");
        return 0;
    }
    count(t, FC_CACHE_RESULT_STALE, "fwd=stale");
    /* Kept while the backend is asked whether it still holds, when it can answer then. */
    t->c_entry = e;
    t->c_body_len = body_len;
    if (!can_revalidate(t, &m, body_len))
        release_entry(t); /* the answer replaces it */
    return 0;
}

const char *fc_txn_cache_conditional(const struct fc_txn *t, size_t *len)
{
    struct fc_cache_meta m;
    if (t->c_entry == NULL || fc_cache_meta_decode(t->c_meta, t->c_meta_len, &m) < 0)
        return NULL;
    int n = 0;
    if (m.etag.len > 0)
        n = snprintf(cond_buf, sizeof(cond_buf), "If-None-Match: %.*s\r\n", (int)m.etag.len,
                     m.etag.p);
    else if (m.last_modified.len > 0)
        n = snprintf(cond_buf, sizeof(cond_buf), "If-Modified-Since: %.*s\r\n",
                     (int)m.last_modified.len, m.last_modified.p);
    if (n <= 0 || (size_t)n >= sizeof(cond_buf))
        return NULL;
    *len = (size_t)n;
    return cond_buf;
}

size_t fc_txn_cache_status_line(const struct fc_txn *t, char *buf, size_t cap)
{
    if (t->c_status == NULL)
        return 0;
    int n = snprintf(buf, cap, "Cache-Status: fulcrum; %s\r\n", t->c_status);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/*
 * The backend's 304 to a revalidation: the stored head, refreshed with the
 * 304's headers (RFC 9111 4.3.4), replaces the entry's meta; the entry then
 * answers. A 304 that says the answer may no longer be stored (no-store,
 * say) still validates this answer, and leaves the entry as it was: stale,
 * asked again next time. When the refreshed head cannot be made (too many
 * headers, too large), the entry answers with its stored head. Returns 0,
 * or -1 when even that cannot be written.
 */
static int refresh(struct fc_txn *t, int64_t now)
{
    static const char status[] = "fwd=stale; fwd-status=304";
    struct fc_cache_meta old, m;
    struct fc_request stored, merged;
    struct fc_cache_entry *e = t->c_entry;
    if (fc_cache_meta_decode(t->c_meta, t->c_meta_len, &old) < 0)
        return -1;
    t->c_entry = NULL; /* prepare_answer() holds it again */
    struct fc_cache_verdict v;
    size_t ml = 0;
    if (fc_cache_meta_head(&old, &stored) == 0 &&
        fc_cache_merge_304(&stored, &t->resp, &merged) == 0) {
        fc_cache_response_verdict(&t->req, &merged, t->c_request_time, now, &v);
        if (v.store)
            ml = fc_cache_meta_encode(&merged, &v, now, meta_buf, sizeof(meta_buf));
    }
    if (ml > 0 && fc_cache_meta_decode(meta_buf, ml, &m) == 0 &&
        prepare_answer(t, e, &m, t->c_body_len, status) == 0) {
        /* FC_ENOENT: the key has a newer entry meanwhile, which stays. */
        cache_ops(t)->update_meta(cache_state(t), e, meta_buf, ml);
        return 0;
    }
    if (prepare_answer(t, e, &old, t->c_body_len, status) == 0)
        return 0;
    t->c_entry = e;
    return -1;
}

/* Begins storing the response under its key (and a variant stub when it has a Vary). */
static void store_begin(struct fc_txn *t, const struct fc_cache_verdict *v, int64_t now)
{
    const struct fc_cache_ops *ops = cache_ops(t);
    void *state = cache_state(t);
    const llhttp_t *p = &t->resp_parser;
    /* A body that only the end of the connection delimits cannot be told whole from cut. */
    if (!(p->flags & (F_CHUNKED | F_CONTENT_LENGTH)))
        return;
    uint64_t body_len = (p->flags & F_CHUNKED) ? FC_CACHE_LEN_UNKNOWN : p->content_length;
    size_t key_len =
        fc_cache_key(&t->req, https(t), (struct fc_span){"", 0}, key_buf, sizeof(key_buf));
    if (key_len == 0)
        return;
    fc_txn_cache_abort_store(t); /* one begun for an answer that was then retried elsewhere */
    struct fc_cache_store *st = NULL;
    if (v->vary.len > 0) {
        size_t sl = fc_cache_stub_encode(v->vary, meta_buf, sizeof(meta_buf));
        if (sl == 0 || ops->store_begin(state, key_buf, key_len, meta_buf, sl, 0, &st) != 0)
            return;
        if (ops->store_commit(state, st) != 0)
            return;
        key_len = fc_cache_key(&t->req, https(t), v->vary, key_buf, sizeof(key_buf));
        if (key_len == 0)
            return;
    }
    size_t ml = fc_cache_meta_encode(&t->resp, v, now, meta_buf, sizeof(meta_buf));
    if (ml == 0 || ops->store_begin(state, key_buf, key_len, meta_buf, ml, body_len, &st) != 0)
        return; /* too large for the store (FC_E2BIG), say: it streams through */
    t->c_store = st;
    if (t->up_msg_done)
        fc_txn_cache_complete(t); /* an empty body: the message ended with its head */
}

int fc_txn_cache_response(struct fc_txn *t)
{
    int64_t now = time(NULL);
    if (t->c_kind == FC_CACHE_BYPASS || t->c_kind == FC_CACHE_NO_STORE || t->head_req)
        return 0;
    if (t->c_entry != NULL && t->resp.status == 304)
        return refresh(t, now) == 0 ? 1 : -1;
    release_entry(t); /* what the backend answered replaces it */
    struct fc_cache_verdict v;
    fc_cache_response_verdict(&t->req, &t->resp, t->c_request_time, now, &v);
    if (v.store)
        store_begin(t, &v, now);
    else
        fc_log_debug("client %s: response %d not stored: %s", t->c->ip, t->resp.status, v.why);
    return 0;
}

void fc_txn_cache_body(struct fc_txn *t, const char *at, size_t len)
{
    if (t->c_store == NULL)
        return;
    if (cache_ops(t)->store_append(cache_state(t), t->c_store, at, len) != 0) {
        /* Larger than max_object_bytes, or no room: it streams through, unstored. */
        cache_ops(t)->store_abort(cache_state(t), t->c_store);
        t->c_store = NULL;
    }
}

void fc_txn_cache_complete(struct fc_txn *t)
{
    if (t->c_store == NULL)
        return;
    struct fc_cache_store *st = t->c_store;
    t->c_store = NULL;
    cache_ops(t)->store_commit(cache_state(t), st); /* a refusal keeps nothing: nothing to do */
}

void fc_txn_cache_send(struct fc_txn *t)
{
    struct fc_client *c = t->c;
    if (t->phase != FC_TXN_CACHE) {
        t->phase = FC_TXN_CACHE;
        t->status = t->c_answer;
        t->resp_started = 1;
        fc_client_read_stop(c); /* the next request waits in the buffer until this one is done */
    }
    fc_client_timer_stop(c);
    const struct fc_cache_ops *ops = cache_ops(t);
    for (;;) {
        uv_buf_t bufs[SPANS_PER_WRITE + 1];
        unsigned n = 0;
        if (t->c_head_len > 0) {
            bufs[n++] = uv_buf_init(t->out, t->c_head_len);
            t->c_head_len = 0;
        }
        if (t->c_off < t->c_len) {
            struct fc_cache_span spans[SPANS_PER_WRITE];
            uint64_t from = t->c_off;
            int k = ops->read(cache_state(t), t->c_entry, from, spans, SPANS_PER_WRITE);
            for (int i = 0; i < k && i < SPANS_PER_WRITE; i++) {
                size_t l = spans[i].len;
                if (l > t->c_len - t->c_off)
                    l = (size_t)(t->c_len - t->c_off);
                if (l > 0)
                    bufs[n++] = uv_buf_init((char *)spans[i].data, (unsigned)l);
                t->c_off += l;
            }
            if (t->c_off == from) {
                /* A store that cannot give back what it holds: the cut answer is reset. */
                fc_log_error("%s: read() of a held entry gave %d at byte %llu of %llu",
                             t->pool->cache->label, k, (unsigned long long)t->c_off,
                             (unsigned long long)t->c_len);
                fc_txn_abort(t, NULL);
                return;
            }
        }
        if (n == 0) {
            fc_txn_end(t);
            return;
        }
        /* Looped rather than called back while the socket takes it all: the stack stays flat. */
        if (fc_txn_write_client(t, bufs, n, 0) < 1)
            return;
    }
}
