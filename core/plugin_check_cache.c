/*
 * `fulcrum plugin-check` for a cache store: one instance, shared by THREADS
 * threads as the daemon's workers share it.
 *
 * First, on one thread, the contract of each op: a key is not found before
 * its commit nor after an abort; a committed entry gives back its meta and
 * body exactly, in spans, whether the body came with its length or without;
 * a commit replaces the key's entry while a reader of the old one keeps
 * reading it unchanged; update_meta() renews the meta and keeps the body;
 * remove() by prefix takes exactly the keys it names, and with no prefix all
 * of them; usage() counts what is stored. Then THREADS threads store, look
 * up, read, renew and remove over KEYS shared keys at full speed: every body read
 * must match its meta (which names the version stored), and the store must
 * keep within its max_bytes while it evicts. Last, removing everything must
 * leave no entry and no byte counted.
 */
#include "plugin_check_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define KEYS 64
#define OPS 20000u /* a thread's, at scale 100 */
#define BODY_MAX 16384
#define SPANS 8

struct cache_run {
    struct fc_check *c;
    struct fc_instance inst;
    const struct fc_cache_ops *ops;
    void *state;
    uint32_t ops_per_thread;
    uint64_t max_seen, max_bytes;
    uv_mutex_t lock; /* max_seen */
    uint64_t hits, misses, stores, refused, removes, mismatches;
};

struct cache_thread {
    struct cache_run *run;
    uv_thread_t thread;
    uint32_t index;
    uint64_t hits, misses, stores, refused, removes;
    unsigned char body[BODY_MAX];
};

/* The meta stored with a body: its version and length, so that a reader can check the body. */
struct meta {
    uint32_t key, version, len;
};

/* The byte at `offset` of version v of key k's body. */
static unsigned char body_byte(uint32_t k, uint32_t v, uint64_t offset)
{
    return (unsigned char)((k * 131u + v * 31u + offset * 7u + (offset >> 8)) & 0xff);
}

static void make_key(uint32_t k, char *key, size_t len)
{
    snprintf(key, len, "/c/%u\n127.0.0.1", k);
}

/* Stores version v of key k with a body of len bytes (in pieces). Returns what commit said. */
static int store(struct cache_run *run, uint32_t k, uint32_t v, uint32_t len, int known,
                 unsigned char *scratch)
{
    char key[64];
    make_key(k, key, sizeof(key));
    struct meta meta = {k, v, len};
    struct fc_cache_store *st = NULL;
    int rc = run->ops->store_begin(run->state, key, strlen(key), &meta, sizeof(meta),
                                   known ? len : FC_CACHE_LEN_UNKNOWN, &st);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < len; i++)
        scratch[i] = body_byte(k, v, i);
    /* Pieces of 1 byte, then growing: a body arrives in reads of any size. */
    for (uint32_t at = 0, piece = 1; at < len && rc == 0; at += piece, piece *= 3) {
        if (piece > len - at)
            piece = len - at;
        rc = run->ops->store_append(run->state, st, scratch + at, piece);
    }
    if (rc < 0) {
        run->ops->store_abort(run->state, st);
        return rc;
    }
    return run->ops->store_commit(run->state, st);
}

/*
 * Reads a held entry's whole body through read() from offset 0, a few spans
 * at a time, and checks it against its meta. Returns 0, or -1 (recorded).
 */
static int check_entry(struct cache_run *run, struct fc_cache_entry *e,
                       const struct fc_cache_hit *hit, uint32_t k, const char *when)
{
    struct meta meta;
    if (hit->meta.len != sizeof(meta))
        return fc_check_fail(run->c, "%s: lookup() gave a meta of %zu bytes, %zu were stored", when,
                             hit->meta.len, sizeof(meta));
    memcpy(&meta, hit->meta.data, sizeof(meta));
    if (meta.key != k)
        return fc_check_fail(run->c, "%s: lookup() of key %u gave key %u's entry", when, k,
                             meta.key);
    if (hit->body_len != meta.len)
        return fc_check_fail(run->c, "%s: the body of key %u is %llu bytes, %u were stored", when,
                             k, (unsigned long long)hit->body_len, meta.len);
    uint64_t offset = 0;
    for (;;) {
        struct fc_cache_span spans[SPANS];
        int n = run->ops->read(run->state, e, offset, spans, SPANS);
        if (n < 0 || n > SPANS)
            return fc_check_fail(run->c, "%s: read() returned %d (asked for at most %d spans)",
                                 when, n, SPANS);
        if (n == 0)
            break;
        for (int i = 0; i < n; i++) {
            const unsigned char *p = spans[i].data;
            if (spans[i].len == 0 || p == NULL)
                return fc_check_fail(run->c, "%s: read() gave an empty span", when);
            if (offset + spans[i].len > meta.len)
                return fc_check_fail(run->c, "%s: read() gave more than the %u bytes stored", when,
                                     meta.len);
            for (size_t j = 0; j < spans[i].len; j++)
                if (p[j] != body_byte(k, meta.version, offset + j))
                    return fc_check_fail(run->c,
                                         "%s: byte %llu of key %u's body differs from what "
                                         "was stored",
                                         when, (unsigned long long)(offset + j), k);
            offset += spans[i].len;
        }
    }
    if (offset != meta.len)
        return fc_check_fail(run->c, "%s: read() ended after %llu of the %u bytes stored", when,
                             (unsigned long long)offset, meta.len);
    return 0;
}

/* Looks key k up: 1 found (held in *e), 0 not. */
static int lookup(struct cache_run *run, uint32_t k, struct fc_cache_entry **e,
                  struct fc_cache_hit *hit)
{
    char key[64];
    make_key(k, key, sizeof(key));
    *hit = (struct fc_cache_hit){.size = sizeof(*hit)};
    return run->ops->lookup(run->state, key, strlen(key), e, hit);
}

static void note_usage(struct cache_run *run)
{
    struct fc_cache_usage u = {.size = sizeof(u)};
    run->ops->usage(run->state, &u);
    uv_mutex_lock(&run->lock);
    if (u.bytes > run->max_seen)
        run->max_seen = u.bytes;
    uv_mutex_unlock(&run->lock);
}

/* ---- the contract, one op at a time ------------------------------------ */

static int contract(struct cache_run *run, unsigned char *scratch)
{
    struct fc_check *c = run->c;
    struct fc_cache_entry *e = NULL, *old = NULL;
    struct fc_cache_hit hit, old_hit;
    const uint32_t k = 0;

    if (lookup(run, k, &e, &hit) != 0)
        return fc_check_fail(c, "lookup() found a key that was never stored");
    /* Aborted: nothing. */
    char key[64];
    make_key(k, key, sizeof(key));
    struct meta meta = {k, 1, 10};
    struct fc_cache_store *st = NULL;
    if (run->ops->store_begin(run->state, key, strlen(key), &meta, sizeof(meta), 10, &st) < 0)
        return fc_check_fail(c, "store_begin() of a 10-byte body failed");
    if (run->ops->store_append(run->state, st, "0123456789", 10) < 0)
        return fc_check_fail(c, "store_append() of 10 bytes failed");
    if (lookup(run, k, &e, &hit) != 0)
        return fc_check_fail(c, "lookup() found an entry before its store_commit()");
    run->ops->store_abort(run->state, st);
    if (lookup(run, k, &e, &hit) != 0)
        return fc_check_fail(c, "lookup() found an entry whose store was aborted");

    /* Known length and unknown, small and spanning several reads. */
    static const uint32_t lens[] = {0, 1, 1000, BODY_MAX};
    for (int i = 0; i < 4; i++) {
        for (int known = 0; known < 2; known++) {
            int rc = store(run, k, (uint32_t)(i * 2 + known), lens[i], known, scratch);
            if (rc == FC_E2BIG && i > 0) {
                if (c->verbose && known)
                    fc_check_say(c, "  a %u-byte body is refused (FC_E2BIG): not checked", lens[i]);
                continue;
            }
            if (rc < 0)
                return fc_check_fail(c, "storing a %u-byte body (%s) failed: %d", lens[i],
                                     known ? "length known" : "length unknown", rc);
            if (lookup(run, k, &e, &hit) != 1)
                return fc_check_fail(c, "lookup() did not find a %u-byte body just committed",
                                     lens[i]);
            int ok = check_entry(run, e, &hit, k, "after a commit");
            run->ops->release(run->state, e);
            if (ok < 0)
                return FC_ERROR;
        }
    }

    /* A reader of the old entry keeps it, unchanged, while the key gets a new one. */
    if (lookup(run, k, &old, &old_hit) != 1)
        return fc_check_fail(c, "lookup() lost the entry it just found");
    int rc = store(run, k, 100, 500, 1, scratch);
    if (rc < 0) {
        run->ops->release(run->state, old);
        return fc_check_fail(c, "replacing an entry failed: %d", rc);
    }
    rc = check_entry(run, old, &old_hit, k, "the old entry, held while its key was replaced");
    run->ops->release(run->state, old);
    if (rc < 0)
        return FC_ERROR;
    if (lookup(run, k, &e, &hit) != 1)
        return fc_check_fail(c, "lookup() found nothing after the key's entry was replaced");
    memcpy(&meta, hit.meta.data, sizeof(meta) <= hit.meta.len ? sizeof(meta) : 0);
    if (hit.meta.len != sizeof(meta) || meta.version != 100) {
        run->ops->release(run->state, e);
        return fc_check_fail(c, "lookup() after a replacement gave the old entry");
    }

    /* update_meta(): a new meta, the same body. */
    struct meta renewed = {k, 100, 500};
    unsigned char bigger[sizeof(renewed) + 1] = {0};
    memcpy(bigger, &renewed, sizeof(renewed));
    rc = run->ops->update_meta(run->state, e, bigger, sizeof(bigger));
    run->ops->release(run->state, e);
    if (rc < 0)
        return fc_check_fail(c, "update_meta() of a held entry failed: %d", rc);
    if (lookup(run, k, &e, &hit) != 1)
        return fc_check_fail(c, "lookup() found nothing after update_meta()");
    rc = hit.meta.len == sizeof(bigger) ? 0 : -1;
    hit.meta.len = sizeof(renewed);
    if (rc < 0 || check_entry(run, e, &hit, k, "after update_meta()") < 0) {
        run->ops->release(run->state, e);
        return fc_check_failed(c) ? FC_ERROR
                                  : fc_check_fail(c, "lookup() after update_meta() gave the "
                                                     "old meta");
    }
    /* Replaced while held: update_meta() of that entry must say FC_ENOENT. */
    if (store(run, k, 101, 10, 1, scratch) < 0) {
        run->ops->release(run->state, e);
        return fc_check_fail(c, "replacing an entry failed");
    }
    rc = run->ops->update_meta(run->state, e, &renewed, sizeof(renewed));
    run->ops->release(run->state, e);
    if (rc != FC_ENOENT)
        return fc_check_fail(c,
                             "update_meta() of an entry whose key has a newer one returned %d, "
                             "expected FC_ENOENT",
                             rc);

    /* remove(): by prefix, then everything. "/c/1" is the prefix of 1, 10 to 19 (and 100...). */
    for (uint32_t i = 0; i < 20; i++)
        if (store(run, i, 200, 100, 1, scratch) < 0)
            return fc_check_fail(c, "storing 20 small entries failed");
    struct fc_cache_usage u = {.size = sizeof(u)};
    run->ops->usage(run->state, &u);
    if (u.entries != 20)
        return fc_check_fail(c,
                             "usage() says %llu entries after 20 were stored (the check needs "
                             "a store that holds 20 bodies of 100 bytes)",
                             (unsigned long long)u.entries);
    if (u.bytes < 20 * 100)
        return fc_check_fail(c, "usage() says %llu bytes for 20 bodies of 100",
                             (unsigned long long)u.bytes);
    int64_t removed = run->ops->remove(run->state, "/c/1", 4);
    if (removed != 11)
        return fc_check_fail(c,
                             "remove(\"/c/1\") removed %lld entries; keys /c/1 and /c/10 to "
                             "/c/19 are 11",
                             (long long)removed);
    if (lookup(run, 12, &e, &hit) != 0 || lookup(run, 2, &e, &hit) != 1)
        return fc_check_fail(c, "remove(\"/c/1\") took other keys than those it names");
    run->ops->release(run->state, e);
    removed = run->ops->remove(run->state, NULL, 0);
    run->ops->usage(run->state, &u);
    if (removed != 9 || u.entries != 0 || u.bytes != 0)
        return fc_check_fail(c,
                             "remove() of everything removed %lld of 9 entries and left %llu "
                             "entries, %llu bytes counted",
                             (long long)removed, (unsigned long long)u.entries,
                             (unsigned long long)u.bytes);
    if (c->verbose)
        fc_check_say(c, "%s",
                     "  store, abort, commit (length known and not), replace while held, "
                     "update_meta(), remove() by prefix and of all: as the ABI says");
    return 0;
}

/* ---- many threads ------------------------------------------------------- */

static void thread_main(void *arg)
{
    struct cache_thread *t = arg;
    struct cache_run *run = t->run;
    uint64_t x = 0x9e3779b97f4a7c15u * (t->index + 1);
    for (uint32_t i = 0; i < run->ops_per_thread && !fc_check_failed(run->c); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t k = (uint32_t)(x >> 8) % KEYS, what = (uint32_t)(x >> 40) % 100;
        if (what < 70) {
            struct fc_cache_entry *e;
            struct fc_cache_hit hit;
            if (lookup(run, k, &e, &hit) == 1) {
                t->hits++;
                int rc = check_entry(run, e, &hit, k, "under 4 threads");
                /* Some hits are renewed, as a 304 does: the same meta again. */
                if (rc == 0 && what < 15) {
                    int u = run->ops->update_meta(run->state, e, hit.meta.data, hit.meta.len);
                    if (u != 0 && u != FC_ENOENT && u != FC_ENOMEM)
                        rc = fc_check_fail(run->c, "update_meta() under 4 threads returned %d", u);
                    note_usage(run);
                }
                run->ops->release(run->state, e);
                if (rc < 0)
                    return;
            } else {
                t->misses++;
            }
        } else if (what < 98) {
            uint32_t len = 1000 + (uint32_t)(x >> 20) % (BODY_MAX - 1000);
            int rc = store(run, k, i * THREADS + t->index, len, (x & 1) != 0, t->body);
            if (rc == 0)
                t->stores++;
            else if (rc == FC_E2BIG || rc == FC_ENOMEM)
                t->refused++;
            else {
                fc_check_fail(run->c, "storing a %u-byte body returned %d", len, rc);
                return;
            }
            note_usage(run);
        } else {
            char key[64];
            make_key(k, key, sizeof(key));
            size_t len = strlen(key);
            /* The whole key, up to and with the line break: only that one. */
            run->ops->remove(run->state, key, len);
            t->removes++;
        }
    }
}

static int threads(struct cache_run *run)
{
    struct cache_thread *t = calloc(THREADS, sizeof(*t));
    if (t == NULL)
        return fc_check_fail(run->c, "out of memory");
    int started = 0;
    for (; started < THREADS; started++) {
        t[started].run = run;
        t[started].index = (uint32_t)started;
        if (uv_thread_create(&t[started].thread, thread_main, &t[started]) != 0)
            break;
    }
    for (int i = 0; i < started; i++) {
        uv_thread_join(&t[i].thread);
        run->hits += t[i].hits;
        run->misses += t[i].misses;
        run->stores += t[i].stores;
        run->refused += t[i].refused;
        run->removes += t[i].removes;
    }
    free(t);
    if (started < THREADS)
        return fc_check_fail(run->c, "cannot start a thread");
    return fc_check_failed(run->c) ? FC_ERROR : 0;
}

static int exercise(struct cache_run *run, unsigned char *scratch)
{
    struct fc_check *c = run->c;
    if (contract(run, scratch) < 0)
        return FC_ERROR;
    uint64_t t0 = uv_hrtime();
    if (threads(run) < 0)
        return FC_ERROR;
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    struct fc_cache_usage u = {.size = sizeof(u)};
    run->ops->usage(run->state, &u);
    if (u.max_bytes > 0 && u.bytes > u.max_bytes)
        return fc_check_fail(c, "usage() says %llu bytes, more than its max_bytes of %llu",
                             (unsigned long long)u.bytes, (unsigned long long)u.max_bytes);
    if (u.max_bytes > 0 && run->max_seen > u.max_bytes)
        return fc_check_fail(c,
                             "the store held %llu bytes at one point, more than its max_bytes "
                             "of %llu",
                             (unsigned long long)run->max_seen, (unsigned long long)u.max_bytes);
    if (c->verbose) {
        uint64_t total = (uint64_t)THREADS * run->ops_per_thread;
        fc_check_say(c,
                     "  %d threads, %u operations each over %d keys in %.0f ms (%.0f ns an "
                     "operation)",
                     THREADS, run->ops_per_thread, KEYS, ms, ms * 1e6 / (double)total);
        fc_check_say(c,
                     "  lookups: %llu hits (every body as stored), %llu misses; %llu stores, "
                     "%llu refused, %llu removes",
                     (unsigned long long)run->hits, (unsigned long long)run->misses,
                     (unsigned long long)run->stores, (unsigned long long)run->refused,
                     (unsigned long long)run->removes);
        if (u.max_bytes > 0)
            fc_check_say(c, "  bytes counted: at most %llu of max_bytes %llu; %llu at the end",
                         (unsigned long long)run->max_seen, (unsigned long long)u.max_bytes,
                         (unsigned long long)u.bytes);
        else
            fc_check_say(c, "  bytes counted: at most %llu (no max_bytes)",
                         (unsigned long long)run->max_seen);
    }
    if (run->stores == 0)
        return fc_check_fail(c, "every store was refused: bodies of 1,000 to %d bytes", BODY_MAX);
    int64_t removed = run->ops->remove(run->state, NULL, 0);
    run->ops->usage(run->state, &u);
    if (u.entries != 0 || u.bytes != 0)
        return fc_check_fail(c,
                             "remove() of everything (%lld entries) left %llu entries and %llu "
                             "bytes counted",
                             (long long)removed, (unsigned long long)u.entries,
                             (unsigned long long)u.bytes);
    return 0;
}

int fc_check_cache(struct fc_check *c)
{
    struct cache_run *run = calloc(1, sizeof(*run));
    unsigned char *scratch = malloc(BODY_MAX);
    if (run == NULL || scratch == NULL || uv_mutex_init(&run->lock) != 0) {
        free(run);
        free(scratch);
        return fc_check_fail(c, "out of memory");
    }
    run->c = c;
    run->ops = c->plugin->desc->cache;
    run->ops_per_thread = OPS * c->scale / 100;
    char label[96];
    snprintf(label, sizeof(label), "pool check: cache %s", c->plugin->desc->name);
    struct fc_instance_hooks hooks = {.owner = run, .worker_count = THREADS, .pool_name = "check"};
    int rc = fc_check_create(c, &run->inst, NULL, &hooks, label);
    if (rc == 0) {
        run->state = run->inst.state;
        if (c->verbose)
            fc_check_say(c, "cache: one instance shared by %d threads, as by the workers", THREADS);
        rc = exercise(run, scratch);
        if (c->verbose && rc == 0)
            fc_check_say(c, "%s", "");
        fc_instance_destroy(&run->inst);
    }
    uv_mutex_destroy(&run->lock);
    free(scratch);
    free(run);
    return rc;
}
