/*
 * Tests of the ops of plugins/cache/memory.c as the core uses them, loaded
 * through the real loader and created through the real host from a `cache`
 * group: what a lookup finds before and after a commit, bodies appended in
 * pieces and read back in spans, replacement and removal under readers that
 * hold the old entry, update_meta(), usage(), LRU eviction, the size limits,
 * keys and metas as opaque bytes, the group's keys, and four threads at once.
 */
#include "plugin_fixture.h"

#include <pthread.h>
#include <stdlib.h>

#define MEMORY FC_PLUGIN_BUILD_DIR "/memory.so"
#define CONFIG_FILE "test.conf"

/* What one entry may take in bookkeeping besides its key, meta and body. */
#define BOOKKEEPING_MAX 1500

struct fixture {
    struct fc_plugin *plugin;
    const struct fc_cache_ops *ops;
    struct fc_instance inst;
    int have_inst;
    struct parsed_group group;
    int have_group;
};
static struct fixture fx;

/* Number of captured log lines that contain `part`. */
static int logged_containing(const char *part)
{
    int n = 0;
    for (int i = 0; i < n_log_lines; i++)
        n += strstr(log_lines[i], part) != NULL;
    return n;
}

static int setup(void **unused)
{
    memset(&fx, 0, sizeof(fx));
    log_capture_start();
    if (load_plugin(MEMORY, FC_PLUGIN_CACHE, &fx.plugin) < 0)
        return -1;
    fx.ops = fx.plugin->desc->cache;
    return 0;
}

static void drop_instance(void)
{
    if (fx.have_inst)
        fc_instance_destroy(&fx.inst);
    fx.have_inst = 0;
    if (fx.have_group)
        config_destroy(&fx.group.lc);
    fx.have_group = 0;
}

static int teardown(void **unused)
{
    drop_instance();
    fc_plugin_unload(fx.plugin);
    fx.plugin = NULL;
    log_capture_stop();
    return 0;
}

/*
 * Creates the store from a cache group whose own lines are `body` (replacing
 * any earlier one); its first key sits on line 5 (see parse_pool_group()).
 * The core reads no key of a cache group but `plugin`.
 */
static int create(const char *body)
{
    static const char *const cache_core_keys[] = {NULL};
    drop_instance();
    fx.have_group = 1;
    parse_pool_group(&fx.group, "cache", "memory", body);
    struct fc_instance_hooks hooks = {.worker_count = 4};
    int rc = fc_instance_create(&fx.inst, fx.plugin, &fx.group.conf, CONFIG_FILE, cache_core_keys,
                                NULL, &hooks, "pool web: cache memory");
    fx.have_inst = rc == 0;
    return rc;
}

static void must_create(const char *body)
{
    int rc = create(body);
    if (rc != 0)
        dump_log();
    assert_int_equal(rc, 0);
}

/* ---- helpers ------------------------------------------------------------- */

/* A body that tells its bytes apart: offsets and seeds both change them. */
static void fill(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(i * 31 + seed * 7 + (i >> 8));
}

static unsigned char *make_body(size_t len, unsigned seed)
{
    unsigned char *b = malloc(len > 0 ? len : 1);
    assert_non_null(b);
    fill(b, len, seed);
    return b;
}

static struct fc_cache_usage usage(void)
{
    struct fc_cache_usage u = {.size = sizeof(u)};
    fx.ops->usage(fx.inst.state, &u);
    return u;
}

/* Begins a store, which must be taken. */
static struct fc_cache_store *begin(const void *key, size_t key_len, const void *meta,
                                    size_t meta_len, uint64_t body_len)
{
    struct fc_cache_store *st = NULL;
    assert_int_equal(
        fx.ops->store_begin(fx.inst.state, key, key_len, meta, meta_len, body_len, &st), 0);
    assert_non_null(st);
    return st;
}

/* Appends len bytes of body in pieces of at most `piece` bytes (0: all at once). */
static int append(struct fc_cache_store *st, const unsigned char *body, size_t len, size_t piece)
{
    size_t at = 0;
    do {
        size_t n = piece == 0 || len - at < piece ? len - at : piece;
        int rc = fx.ops->store_append(fx.inst.state, st, body + at, n);
        if (rc < 0)
            return rc;
        at += n;
    } while (at < len);
    return 0;
}

/*
 * Stores an entry whose length is announced (`known`) or not, its body
 * appended in pieces of `piece` bytes. Returns what commit said, or the
 * append's error after aborting as the core does.
 */
static int store(const void *key, size_t key_len, const void *meta, size_t meta_len,
                 const unsigned char *body, size_t body_len, int known, size_t piece)
{
    struct fc_cache_store *st =
        begin(key, key_len, meta, meta_len, known ? body_len : FC_CACHE_LEN_UNKNOWN);
    int rc = append(st, body, body_len, piece);
    if (rc < 0) {
        fx.ops->store_abort(fx.inst.state, st);
        return rc;
    }
    return fx.ops->store_commit(fx.inst.state, st);
}

/* Stores a body of len bytes of fill(seed) under the string key with the string meta. */
static int put(const char *key, const char *meta, size_t len, unsigned seed)
{
    unsigned char *body = make_body(len, seed);
    int rc = store(key, strlen(key), meta, strlen(meta), body, len, 1, 0);
    free(body);
    return rc;
}

/* The held entry of key, with its hit in *hit, or NULL when lookup finds none. */
static struct fc_cache_entry *get(const void *key, size_t key_len, struct fc_cache_hit *hit)
{
    struct fc_cache_entry *e = NULL;
    *hit = (struct fc_cache_hit){.size = sizeof(*hit)};
    int rc = fx.ops->lookup(fx.inst.state, key, key_len, &e, hit);
    assert_true(rc == 0 || rc == 1);
    if (rc == 0)
        return NULL;
    assert_non_null(e);
    return e;
}

/* Whether the string key is found (the lookup counts as a use). */
static int has(const char *key)
{
    struct fc_cache_hit hit;
    struct fc_cache_entry *e = get(key, strlen(key), &hit);
    if (e != NULL)
        fx.ops->release(fx.inst.state, e);
    return e != NULL;
}

/*
 * Reads a held entry's body from offset 0 into out (of body_len bytes),
 * asking for at most max_spans spans a call; every call must move on, stay
 * within the body, and the one at its end must say 0.
 */
static void read_body(struct fc_cache_entry *e, uint64_t body_len, unsigned char *out,
                      int max_spans)
{
    struct fc_cache_span spans[16];
    assert_true(max_spans >= 1 && max_spans <= 16);
    uint64_t at = 0;
    for (;;) {
        int n = fx.ops->read(fx.inst.state, e, at, spans, max_spans);
        assert_true(n >= 0 && n <= max_spans);
        if (n == 0)
            break;
        uint64_t before = at;
        for (int i = 0; i < n; i++) {
            assert_true(spans[i].len <= body_len - at);
            if (spans[i].len > 0)
                memcpy(out + at, spans[i].data, spans[i].len);
            at += spans[i].len;
        }
        assert_true(at > before);
    }
    assert_int_equal(at, body_len);
    assert_int_equal(fx.ops->read(fx.inst.state, e, body_len, spans, max_spans), 0);
}

/* Fails unless a held entry (and its hit) has exactly this meta and body. */
static void assert_held(struct fc_cache_entry *e, const struct fc_cache_hit *hit, const void *meta,
                        size_t meta_len, const unsigned char *body, size_t body_len)
{
    assert_int_equal(hit->meta.len, meta_len);
    if (meta_len > 0)
        assert_memory_equal(hit->meta.data, meta, meta_len);
    assert_int_equal(hit->body_len, body_len);
    unsigned char *got = malloc(body_len > 0 ? body_len : 1);
    assert_non_null(got);
    for (int spans = 1; spans <= 16; spans *= 4) {
        memset(got, 0, body_len);
        read_body(e, body_len, got, spans);
        if (body_len > 0)
            assert_memory_equal(got, body, body_len);
    }
    free(got);
}

/* Fails unless lookup of key finds exactly this meta and body. */
static void assert_entry(const void *key, size_t key_len, const void *meta, size_t meta_len,
                         const unsigned char *body, size_t body_len)
{
    struct fc_cache_hit hit;
    struct fc_cache_entry *e = get(key, key_len, &hit);
    assert_non_null(e);
    assert_held(e, &hit, meta, meta_len, body, body_len);
    fx.ops->release(fx.inst.state, e);
}

/* ---- the descriptor ------------------------------------------------------ */

static void test_descriptor(void **unused)
{
    const struct fc_plugin_descriptor *d = fx.plugin->desc;
    assert_string_equal(d->name, "memory");
    assert_int_equal(d->kind, FC_PLUGIN_CACHE);
    assert_non_null(d->cache);
    assert_null(d->strategy);
    assert_null(d->health);
    assert_null(d->ratelimit);
    assert_true(d->abi_major == FC_ABI_MAJOR && d->abi_minor >= 3);
}

/* ---- lookups, stores and reads ------------------------------------------ */

/* Nothing is found before its commit: not a key never stored, not one half stored. */
static void test_miss_before_commit(void **unused)
{
    must_create("");
    struct fc_cache_hit hit;
    assert_null(get("/a", 2, &hit));
    unsigned char *body = make_body(3000, 1);
    struct fc_cache_store *st = begin("/a", 2, "meta", 4, 3000);
    assert_null(get("/a", 2, &hit));
    assert_int_equal(append(st, body, 1000, 0), 0);
    assert_null(get("/a", 2, &hit));
    assert_int_equal(append(st, body + 1000, 2000, 0), 0);
    assert_null(get("/a", 2, &hit));
    assert_int_equal(usage().entries, 0);
    assert_int_equal(fx.ops->store_commit(fx.inst.state, st), 0);
    assert_entry("/a", 2, "meta", 4, body, 3000);
    assert_int_equal(usage().entries, 1);

    /* A replacement in progress leaves the committed entry as it was. */
    unsigned char *next = make_body(500, 2);
    st = begin("/a", 2, "new", 3, FC_CACHE_LEN_UNKNOWN);
    assert_int_equal(append(st, next, 500, 0), 0);
    assert_entry("/a", 2, "meta", 4, body, 3000);
    assert_int_equal(fx.ops->store_commit(fx.inst.state, st), 0);
    assert_entry("/a", 2, "new", 3, next, 500);
    assert_int_equal(usage().entries, 1);
    free(body);
    free(next);
}

/* An aborted store keeps nothing, counts nothing, and leaves the key's entry alone. */
static void test_abort_keeps_nothing(void **unused)
{
    must_create("max_bytes = 1000000; max_object_bytes = 100000;");
    assert_int_equal(put("/kept", "m1", 2000, 1), 0);
    struct fc_cache_usage before = usage();

    unsigned char *body = make_body(50000, 2);
    struct fc_cache_store *st = begin("/gone", 5, "m", 1, FC_CACHE_LEN_UNKNOWN);
    assert_int_equal(append(st, body, 50000, 777), 0);
    fx.ops->store_abort(fx.inst.state, st);
    assert_false(has("/gone"));

    /* A replacement of /kept, aborted: the old one is still what a lookup finds. */
    st = begin("/kept", 5, "m2", 2, 50000);
    assert_int_equal(append(st, body, 50000, 0), 0);
    fx.ops->store_abort(fx.inst.state, st);
    /* And one aborted before a byte came. */
    st = begin("/empty", 6, "m", 1, FC_CACHE_LEN_UNKNOWN);
    fx.ops->store_abort(fx.inst.state, st);

    struct fc_cache_usage after = usage();
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.entries, before.entries);
    unsigned char *kept = make_body(2000, 1);
    assert_entry("/kept", 5, "m1", 2, kept, 2000);
    assert_false(has("/empty"));
    free(kept);
    free(body);
}

/*
 * A body comes in as many appends as the response has reads, with its
 * length announced or not; it reads back byte for byte, in one span a call
 * or several, from its start or from any offset.
 */
static void test_body_in_pieces(void **unused)
{
    must_create("max_bytes = 4000000; max_object_bytes = 1000000;");
    static const size_t lens[] = {0, 1, 4095, 4096, 4097, 100000, 700001};
    static const size_t pieces[] = {0, 1, 7, 1000, 65536};
    char key[32];
    unsigned seed = 0;
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
            /* One byte at a time is slow only for the large ones: skip those. */
            if (pieces[p] == 1 && lens[l] > 5000)
                continue;
            for (int known = 0; known <= 1; known++) {
                unsigned char *body = make_body(lens[l], ++seed);
                int n = snprintf(key, sizeof(key), "/b/%zu/%zu/%d", lens[l], pieces[p], known);
                assert_int_equal(store(key, (size_t)n, "h", 1, body, lens[l], known, pieces[p]), 0);
                assert_entry(key, (size_t)n, "h", 1, body, lens[l]);
                free(body);
            }
        }
    }

    /* From an offset inside the body: the first span starts at that byte. */
    size_t len = 100000;
    unsigned char *body = make_body(len, 99);
    assert_int_equal(store("/mid", 4, "", 0, body, len, 0, 333), 0);
    struct fc_cache_hit hit;
    struct fc_cache_entry *e = get("/mid", 4, &hit);
    assert_non_null(e);
    static const uint64_t offsets[] = {1, 333, 4095, 4096, 4097, 12287, 50000, 99999};
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        struct fc_cache_span spans[4];
        uint64_t at = offsets[i];
        while (at < len) {
            int n = fx.ops->read(fx.inst.state, e, at, spans, 4);
            assert_true(n >= 1 && n <= 4);
            for (int s = 0; s < n; s++) {
                assert_true(spans[s].len <= len - at);
                assert_memory_equal(spans[s].data, body + at, spans[s].len);
                at += spans[s].len;
            }
        }
        assert_int_equal(at, len);
    }
    assert_int_equal(fx.ops->read(fx.inst.state, e, len, (struct fc_cache_span[1]){{0}}, 1), 0);
    fx.ops->release(fx.inst.state, e);
    free(body);
}

/*
 * A commit replaces the key's entry for later lookups; a reader that holds
 * the old one goes on reading it, meta and body, until it lets go.
 */
static void test_replace_while_held(void **unused)
{
    must_create("max_bytes = 1000000; max_object_bytes = 100000;");
    unsigned char *old_body = make_body(60000, 1), *new_body = make_body(100, 2);
    assert_int_equal(store("/r", 2, "old meta", 8, old_body, 60000, 0, 4000), 0);
    struct fc_cache_hit old_hit;
    struct fc_cache_entry *old = get("/r", 2, &old_hit);
    assert_non_null(old);

    assert_int_equal(store("/r", 2, "new", 3, new_body, 100, 1, 0), 0);
    assert_entry("/r", 2, "new", 3, new_body, 100);
    assert_held(old, &old_hit, "old meta", 8, old_body, 60000);
    /* Only the new entry counts, though the old one is still held. */
    struct fc_cache_usage u = usage();
    assert_int_equal(u.entries, 1);
    assert_true(u.bytes > 2 + 3 + 100);
    assert_true(u.bytes < 2 + 3 + 100 + BOOKKEEPING_MAX);

    /* Replaced twice while held, by readers of each: each keeps its own. */
    struct fc_cache_hit mid_hit;
    struct fc_cache_entry *mid = get("/r", 2, &mid_hit);
    assert_non_null(mid);
    assert_int_equal(store("/r", 2, "third", 5, old_body, 30000, 1, 0), 0);
    assert_held(mid, &mid_hit, "new", 3, new_body, 100);
    assert_held(old, &old_hit, "old meta", 8, old_body, 60000);
    assert_entry("/r", 2, "third", 5, old_body, 30000);
    fx.ops->release(fx.inst.state, old);
    assert_held(mid, &mid_hit, "new", 3, new_body, 100);
    fx.ops->release(fx.inst.state, mid);
    assert_entry("/r", 2, "third", 5, old_body, 30000);
    assert_int_equal(usage().entries, 1);
    free(old_body);
    free(new_body);
}

/*
 * update_meta() (after a 304) gives later lookups the new meta with the same
 * body, and leaves the held entry as it was; once the key leads elsewhere
 * (replaced, removed) it says FC_ENOENT and changes nothing.
 */
static void test_update_meta(void **unused)
{
    must_create("max_bytes = 1000000; max_object_bytes = 100000;");
    unsigned char *body = make_body(20000, 5), *other = make_body(10, 6);
    assert_int_equal(store("/u", 2, "v1", 2, body, 20000, 0, 3000), 0);
    struct fc_cache_hit hit;
    struct fc_cache_entry *e = get("/u", 2, &hit);
    assert_non_null(e);
    assert_int_equal(fx.ops->update_meta(fx.inst.state, e, "v2\0x", 4), 0);
    assert_held(e, &hit, "v1", 2, body, 20000);
    assert_entry("/u", 2, "v2\0x", 4, body, 20000);
    fx.ops->release(fx.inst.state, e);
    assert_entry("/u", 2, "v2\0x", 4, body, 20000);
    assert_int_equal(usage().entries, 1);
    /* A longer meta, and one much shorter. */
    char long_meta[3000];
    memset(long_meta, 'M', sizeof(long_meta));
    e = get("/u", 2, &hit);
    assert_non_null(e);
    assert_int_equal(fx.ops->update_meta(fx.inst.state, e, long_meta, sizeof(long_meta)), 0);
    fx.ops->release(fx.inst.state, e);
    assert_entry("/u", 2, long_meta, sizeof(long_meta), body, 20000);
    e = get("/u", 2, &hit);
    assert_non_null(e);
    assert_int_equal(fx.ops->update_meta(fx.inst.state, e, "s", 1), 0);
    fx.ops->release(fx.inst.state, e);
    assert_entry("/u", 2, "s", 1, body, 20000);
    struct fc_cache_usage u = usage();
    assert_true(u.bytes > 2 + 1 + 20000 && u.bytes < 2 + 1 + 20000 + BOOKKEEPING_MAX);

    /* Replaced since the lookup. */
    e = get("/u", 2, &hit);
    assert_non_null(e);
    assert_int_equal(store("/u", 2, "fresh", 5, other, 10, 1, 0), 0);
    assert_int_equal(fx.ops->update_meta(fx.inst.state, e, "stale", 5), FC_ENOENT);
    assert_held(e, &hit, "s", 1, body, 20000);
    fx.ops->release(fx.inst.state, e);
    assert_entry("/u", 2, "fresh", 5, other, 10);

    /* Removed since the lookup. */
    e = get("/u", 2, &hit);
    assert_non_null(e);
    assert_int_equal(fx.ops->remove(fx.inst.state, "/u", 2), 1);
    assert_int_equal(fx.ops->update_meta(fx.inst.state, e, "stale", 5), FC_ENOENT);
    assert_held(e, &hit, "fresh", 5, other, 10);
    fx.ops->release(fx.inst.state, e);
    assert_false(has("/u"));
    assert_int_equal(usage().entries, 0);
    assert_int_equal(usage().bytes, 0);
    free(body);
    free(other);
}

/*
 * remove() takes every key that starts with the prefix's bytes (a purge of
 * a path and its variants) and says how many; an empty prefix takes all.
 * Held entries stay readable.
 */
static void test_remove_prefix(void **unused)
{
    must_create("");
    static const char *const keys[] = {"/a/1", "/a/2", "/a/2/x", "/ab", "/b", "x/a/1"};
    for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_int_equal(put(keys[i], "m", 100 + i, i), 0);
    assert_int_equal(usage().entries, 6);

    assert_int_equal(fx.ops->remove(fx.inst.state, "/a/", 3), 3);
    assert_false(has("/a/1") || has("/a/2") || has("/a/2/x"));
    assert_true(has("/ab") && has("/b") && has("x/a/1"));
    assert_int_equal(usage().entries, 3);
    /* Nothing starts with these: not the keys they merely contain or start. */
    assert_int_equal(fx.ops->remove(fx.inst.state, "/a/", 3), 0);
    assert_int_equal(fx.ops->remove(fx.inst.state, "/abc", 4), 0);
    assert_int_equal(fx.ops->remove(fx.inst.state, "a", 1), 0);
    assert_int_equal(usage().entries, 3);
    /* A whole key is a prefix of itself. */
    assert_int_equal(fx.ops->remove(fx.inst.state, "/ab", 3), 1);
    assert_false(has("/ab"));

    /* Everything, with an entry held: it still reads; nothing is counted any more. */
    unsigned char *b = make_body(104, 4);
    struct fc_cache_hit hit;
    struct fc_cache_entry *e = get("/b", 2, &hit);
    assert_non_null(e);
    assert_int_equal(fx.ops->remove(fx.inst.state, NULL, 0), 2);
    assert_false(has("/b") || has("x/a/1"));
    assert_int_equal(usage().entries, 0);
    assert_int_equal(usage().bytes, 0);
    assert_held(e, &hit, "m", 1, b, 104);
    fx.ops->release(fx.inst.state, e);
    assert_int_equal(fx.ops->remove(fx.inst.state, NULL, 0), 0);
    free(b);
}

/* ---- usage and limits ---------------------------------------------------- */

/*
 * usage() counts what a lookup can find, every byte of it, within
 * max_bytes, after each commit of a run that evicts.
 */
static void test_usage_counts_what_is_found(void **unused)
{
    must_create("max_bytes = 60000; max_object_bytes = 9000;");
    struct fc_cache_usage u = usage();
    assert_int_equal(u.max_bytes, 60000);
    assert_int_equal(u.bytes, 0);
    assert_int_equal(u.entries, 0);
    char key[32], meta[64];
    size_t key_len[40], meta_len[40], body_len[40];
    for (int i = 0; i < 40; i++) {
        key_len[i] = (size_t)snprintf(key, sizeof(key), "/usage/%d", i);
        meta_len[i] = (size_t)snprintf(meta, sizeof(meta), "meta of %d%*s", i, i, "");
        body_len[i] = (size_t)(i * 997) % 9001;
        unsigned char *body = make_body(body_len[i], (unsigned)i);
        assert_int_equal(
            store(key, key_len[i], meta, meta_len[i], body, body_len[i], i % 2, 1000 + i), 0);
        free(body);
        /* What lookups find, against what usage() says. */
        uint64_t found = 0, sum = 0;
        u = usage();
        for (int j = 0; j <= i; j++) {
            snprintf(key, sizeof(key), "/usage/%d", j);
            if (has(key)) {
                found++;
                sum += key_len[j] + meta_len[j] + body_len[j];
            }
        }
        snprintf(key, sizeof(key), "/usage/%d", i);
        assert_true(has(key)); /* the newest is kept */
        assert_int_equal(u.entries, found);
        assert_true(u.bytes > sum);
        assert_true(u.bytes <= 60000);
        assert_int_equal(u.max_bytes, 60000);
    }
    assert_true(u.entries < 40); /* it did evict */
    assert_int_equal(fx.ops->remove(fx.inst.state, NULL, 0), (int64_t)u.entries);
    u = usage();
    assert_int_equal(u.bytes, 0);
    assert_int_equal(u.entries, 0);
}

/*
 * A commit that needs room evicts the least recently used entries of the
 * whole store, a use being a commit or a lookup.
 */
static void test_lru_eviction(void **unused)
{
    must_create("max_bytes = 35000; max_object_bytes = 12000;");
    assert_int_equal(put("A", "m", 10000, 'a'), 0);
    assert_int_equal(put("B", "m", 10000, 'b'), 0);
    assert_int_equal(put("C", "m", 10000, 'c'), 0);
    assert_int_equal(usage().entries, 3);
    assert_true(has("A")); /* order, most recent first: A C B */
    assert_int_equal(put("D", "m", 10000, 'd'), 0);
    assert_int_equal(usage().entries, 3);
    assert_false(has("B"));
    /* Checks that do not reorder what is left: look up the most recent last. */
    unsigned char *body = make_body(10000, 'a');
    assert_entry("A", 1, "m", 1, body, 10000);
    fill(body, 10000, 'c');
    assert_entry("C", 1, "m", 1, body, 10000);
    fill(body, 10000, 'd');
    assert_entry("D", 1, "m", 1, body, 10000); /* order: D C A */
    assert_true(has("C"));                     /* order: C D A */
    assert_int_equal(put("E", "m", 10000, 'e'), 0);
    assert_false(has("A"));
    assert_true(has("C") && has("D") && has("E"));
    assert_int_equal(usage().entries, 3);
    assert_true(usage().bytes <= 35000);
    free(body);
}

/*
 * max_object_bytes bounds a body: announced larger, refused at the begin;
 * grown larger, refused by the append that goes past it (the core then
 * aborts). Exactly max_object_bytes is taken.
 */
static void test_too_large(void **unused)
{
    must_create("max_bytes = 10000; max_object_bytes = 2000;");
    unsigned char *body = make_body(2001, 3);
    struct fc_cache_store *st = NULL;
    assert_int_equal(fx.ops->store_begin(fx.inst.state, "k", 1, "m", 1, 2001, &st), FC_E2BIG);
    assert_int_equal(
        fx.ops->store_begin(fx.inst.state, "k", 1, "m", 1, FC_CACHE_LEN_UNKNOWN - 1, &st),
        FC_E2BIG);

    /* Unknown length, in pieces: the piece that passes 2000 bytes. */
    st = begin("k", 1, "m", 1, FC_CACHE_LEN_UNKNOWN);
    assert_int_equal(append(st, body, 1900, 100), 0);
    assert_int_equal(fx.ops->store_append(fx.inst.state, st, body + 1900, 101), FC_E2BIG);
    fx.ops->store_abort(fx.inst.state, st);
    /* Announced short, grown long. */
    st = begin("k", 1, "m", 1, 1000);
    assert_int_equal(append(st, body, 2000, 0), 0);
    assert_int_equal(fx.ops->store_append(fx.inst.state, st, body + 2000, 1), FC_E2BIG);
    fx.ops->store_abort(fx.inst.state, st);
    /* In one append. */
    st = begin("k", 1, "m", 1, FC_CACHE_LEN_UNKNOWN);
    assert_int_equal(fx.ops->store_append(fx.inst.state, st, body, 2001), FC_E2BIG);
    fx.ops->store_abort(fx.inst.state, st);
    assert_false(has("k"));
    assert_int_equal(usage().entries, 0);
    assert_int_equal(usage().bytes, 0);

    /* The limit itself fits, announced or not. */
    assert_int_equal(store("k", 1, "m", 1, body, 2000, 1, 0), 0);
    assert_entry("k", 1, "m", 1, body, 2000);
    assert_int_equal(store("k2", 2, "m", 1, body, 2000, 0, 300), 0);
    assert_entry("k2", 2, "m", 1, body, 2000);
    free(body);

    /* An entry that fits max_object_bytes but not, with its bookkeeping, max_bytes. */
    must_create("max_bytes = 1000; max_object_bytes = 1000;");
    body = make_body(1000, 4);
    st = begin("big", 3, "m", 1, 1000);
    assert_int_equal(append(st, body, 1000, 0), 0);
    assert_true(fx.ops->store_commit(fx.inst.state, st) < 0);
    assert_false(has("big"));
    assert_int_equal(usage().entries, 0);
    assert_int_equal(usage().bytes, 0);
    /* A small one still fits. */
    assert_int_equal(put("small", "m", 10, 5), 0);
    assert_true(has("small"));
    free(body);
}

/* Keys and metas are bytes: NULs inside them, keys that differ only after one. */
static void test_opaque_bytes(void **unused)
{
    must_create("");
    unsigned char *b1 = make_body(300, 1), *b2 = make_body(400, 2);
    static const char meta1[] = "\0\0head\0er\0", meta2[] = "x\0y";
    assert_int_equal(store("a\0b", 3, meta1, sizeof(meta1), b1, 300, 1, 0), 0);
    assert_int_equal(store("a\0c", 3, meta2, sizeof(meta2), b2, 400, 0, 7), 0);
    assert_int_equal(usage().entries, 2);
    struct fc_cache_hit hit;
    assert_null(get("a", 1, &hit));
    assert_null(get("a\0", 2, &hit));
    assert_null(get("a\0bc", 4, &hit));
    assert_entry("a\0b", 3, meta1, sizeof(meta1), b1, 300);
    assert_entry("a\0c", 3, meta2, sizeof(meta2), b2, 400);
    /* The body's bytes too: a body of zeros. */
    unsigned char zeros[64] = {0};
    assert_int_equal(store("\0", 1, "", 0, zeros, sizeof(zeros), 1, 5), 0);
    assert_entry("\0", 1, "", 0, zeros, sizeof(zeros));
    /* A prefix with a NUL in it. */
    assert_int_equal(fx.ops->remove(fx.inst.state, "a\0c", 3), 1);
    assert_int_equal(fx.ops->remove(fx.inst.state, "a\0", 2), 1);
    assert_int_equal(fx.ops->remove(fx.inst.state, "\0", 1), 1);
    assert_int_equal(usage().entries, 0);
    free(b1);
    free(b2);
}

/* ---- configuration ------------------------------------------------------- */

static void test_config_defaults(void **unused)
{
    must_create("");
    assert_int_equal(usage().max_bytes, 67108864);
    assert_int_equal(n_log_lines, 0);
    struct fc_cache_store *st = NULL;
    assert_int_equal(fx.ops->store_begin(fx.inst.state, "k", 1, "", 0, 1048577, &st), FC_E2BIG);
    st = begin("k", 1, "", 0, 1048576);
    fx.ops->store_abort(fx.inst.state, st);
    /* max_object_bytes may be max_bytes itself. */
    must_create("max_bytes = 5000; max_object_bytes = 5000;");
    assert_int_equal(usage().max_bytes, 5000);
    must_create("max_bytes = 5000000000L;");
    assert_int_equal(usage().max_bytes, 5000000000ULL);
}

/* A value the store rejects fails the create and names its key. */
static void expect_refused(const char *body, const char *part)
{
    n_log_lines = 0;
    assert_true(create(body) < 0);
    if (logged_containing(part) == 0)
        dump_log();
    assert_int_equal(logged_containing(part), 1);
}

static void test_config_errors(void **unused)
{
    expect_refused("max_bytes = 0;", "test.conf:5: pool \"web\": cache.max_bytes: ");
    expect_refused("max_bytes = -1;", "test.conf:5: pool \"web\": cache.max_bytes: ");
    expect_refused("max_object_bytes = 0;", "test.conf:5: pool \"web\": cache.max_object_bytes: ");
    expect_refused("max_bytes = 1000;\n    max_object_bytes = 2000;",
                   "test.conf:6: pool \"web\": cache.max_object_bytes: ");
    /* The default max_bytes counts too. */
    expect_refused("max_object_bytes = 100000000;", "cache.max_object_bytes: ");
    expect_refused("nope = 1;", "test.conf:5: pool \"web\": cache.nope: unknown key for cache "
                                "plugin \"memory\"");
    expect_refused("max_bytes = \"lots\";", "test.conf:5: pool \"web\": cache.max_bytes: ");
}

/* ---- threads ------------------------------------------------------------- */

#define THREADS 4
#define THREAD_OPS 20000
#define SHARED_KEYS 64
#define THREAD_MAX_BYTES 200000
#define BODY_MIN 1000
#define BODY_MAX 8000

/* What a thread's meta says of its body, so that any reader can check it. */
struct thread_meta {
    uint32_t key;
    uint32_t body_len;
    uint64_t version;
    uint32_t renewed; /* update_meta() calls it went through */
};

static uint64_t next_version;
static pthread_barrier_t start_line;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 33);
}

/* Byte i of the body of version `version` of key k. */
static unsigned char thread_byte(uint64_t seed, size_t i)
{
    return (unsigned char)((seed >> (8 * (i & 7))) + (i >> 3));
}

struct worker {
    pthread_t thread;
    uint64_t rng;
    unsigned char body[BODY_MAX];
    int stores, commits, hits, removes, renewals;
    int mismatches; /* a body or meta that did not match */
    int errors;     /* an op that returned what the contract does not allow */
    int over;       /* usage() above max_bytes */
    uint64_t most_bytes, most_entries;
};

static uint64_t worker_rand(struct worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void worker_store(struct worker *w, const char *key, uint32_t k)
{
    uint64_t version = __atomic_fetch_add(&next_version, 1, __ATOMIC_RELAXED);
    uint64_t seed = mix64(version * SHARED_KEYS + k);
    struct thread_meta meta = {.key = k, .version = version};
    meta.body_len = (uint32_t)(BODY_MIN + seed % (BODY_MAX - BODY_MIN + 1));
    for (size_t i = 0; i < meta.body_len; i++)
        w->body[i] = thread_byte(seed, i);
    struct fc_cache_store *st = NULL;
    uint64_t announced = version % 2 ? meta.body_len : FC_CACHE_LEN_UNKNOWN;
    w->stores++;
    if (fx.ops->store_begin(fx.inst.state, key, 3, &meta, sizeof(meta), announced, &st) != 0) {
        w->errors++;
        return;
    }
    /* In three pieces, as reads of a response would come. */
    size_t cut1 = meta.body_len / 3, cut2 = meta.body_len / 2;
    if (fx.ops->store_append(fx.inst.state, st, w->body, cut1) != 0 ||
        fx.ops->store_append(fx.inst.state, st, w->body + cut1, cut2 - cut1) != 0 ||
        fx.ops->store_append(fx.inst.state, st, w->body + cut2, meta.body_len - cut2) != 0) {
        w->errors++;
        fx.ops->store_abort(fx.inst.state, st);
        return;
    }
    if (version % 16 == 0) {
        fx.ops->store_abort(fx.inst.state, st);
        return;
    }
    /* A commit may fail (it kept nothing) while other threads hold the room. */
    if (fx.ops->store_commit(fx.inst.state, st) == 0)
        w->commits++;
}

/* usage() at any moment: within max_bytes, and never more entries than keys. */
static void worker_check_usage(struct worker *w)
{
    struct fc_cache_usage u = {.size = sizeof(u)};
    fx.ops->usage(fx.inst.state, &u);
    if (u.bytes > THREAD_MAX_BYTES || u.entries > SHARED_KEYS)
        w->over++;
    if (u.bytes > w->most_bytes)
        w->most_bytes = u.bytes;
    if (u.entries > w->most_entries)
        w->most_entries = u.entries;
}

/* Whether a held entry of key k is a body some thread stored under it, unchanged. */
static int entry_matches(struct fc_cache_entry *e, const struct fc_cache_hit *hit, uint32_t k,
                         int max_spans)
{
    struct thread_meta meta;
    if (hit->meta.len != sizeof(meta))
        return 0;
    memcpy(&meta, hit->meta.data, sizeof(meta));
    if (meta.key != k || hit->body_len != meta.body_len)
        return 0;
    uint64_t seed = mix64(meta.version * SHARED_KEYS + k);
    struct fc_cache_span spans[4];
    uint64_t at = 0;
    for (;;) {
        int n = fx.ops->read(fx.inst.state, e, at, spans, max_spans);
        if (n < 0 || n > max_spans)
            return 0;
        if (n == 0)
            break;
        uint64_t before = at;
        for (int s = 0; s < n; s++) {
            if (spans[s].len > meta.body_len - at)
                return 0;
            const unsigned char *p = spans[s].data;
            for (size_t i = 0; i < spans[s].len; i++)
                if (p[i] != thread_byte(seed, at + i))
                    return 0;
            at += spans[s].len;
        }
        if (at == before)
            return 0;
    }
    return at == meta.body_len;
}

static void worker_lookup(struct worker *w, const char *key, uint32_t k, int renew)
{
    struct fc_cache_entry *e = NULL;
    struct fc_cache_hit hit = {.size = sizeof(hit)};
    int rc = fx.ops->lookup(fx.inst.state, key, 3, &e, &hit);
    if (rc == 0)
        return;
    if (rc != 1) {
        w->errors++;
        return;
    }
    w->hits++;
    if (!entry_matches(e, &hit, k, 1 + (int)(worker_rand(w) % 4)))
        w->mismatches++;
    if (renew && hit.meta.len == sizeof(struct thread_meta)) {
        struct thread_meta meta;
        memcpy(&meta, hit.meta.data, sizeof(meta));
        meta.renewed++;
        rc = fx.ops->update_meta(fx.inst.state, e, &meta, sizeof(meta));
        if (rc == 0)
            w->renewals++;
        else if (rc != FC_ENOENT)
            w->errors++;
        /* The held entry is unchanged by its own renewal. */
        if (!entry_matches(e, &hit, k, 4))
            w->mismatches++;
    }
    fx.ops->release(fx.inst.state, e);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    char key[8];
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < THREAD_OPS; i++) {
        uint64_t r = worker_rand(w);
        uint32_t k = (uint32_t)(r % SHARED_KEYS);
        unsigned op = (unsigned)((r >> 16) % 100);
        snprintf(key, sizeof(key), "k%02u", (unsigned)k);
        if (op < 35) {
            worker_store(w, key, k);
        } else if (op < 98) {
            worker_lookup(w, key, k, op < 45);
        } else {
            /* Keys are all three bytes: the prefix is this key alone. */
            int64_t n = fx.ops->remove(fx.inst.state, key, 3);
            if (n < 0 || n > 1)
                w->errors++;
            w->removes++;
        }
        worker_check_usage(w);
    }
    return NULL;
}

/*
 * Four threads store, look up, read, renew and remove 64 shared keys at
 * once, in a store small enough to evict all along: every reader sees a
 * body that matches its meta, and the bytes stay within max_bytes.
 */
static void test_threads(void **unused)
{
    must_create("max_bytes = 200000; max_object_bytes = 10000;");
    struct worker *w = calloc(THREADS, sizeof(*w));
    assert_non_null(w);
    next_version = 1;
    pthread_barrier_init(&start_line, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        w[t].rng = mix64((uint64_t)t + 1) | 1;
        assert_int_equal(pthread_create(&w[t].thread, NULL, worker_run, &w[t]), 0);
    }
    /* Every thread joined before the first assertion: a failure must not leave one running. */
    for (int t = 0; t < THREADS; t++)
        pthread_join(w[t].thread, NULL);
    pthread_barrier_destroy(&start_line);
    int stores = 0, commits = 0, hits = 0, renewals = 0, mismatches = 0, errors = 0, over = 0;
    uint64_t most_bytes = 0, most_entries = 0;
    for (int t = 0; t < THREADS; t++) {
        stores += w[t].stores;
        commits += w[t].commits;
        hits += w[t].hits;
        renewals += w[t].renewals;
        mismatches += w[t].mismatches;
        errors += w[t].errors;
        over += w[t].over;
        most_bytes = w[t].most_bytes > most_bytes ? w[t].most_bytes : most_bytes;
        most_entries = w[t].most_entries > most_entries ? w[t].most_entries : most_entries;
    }
    free(w);
    if (mismatches + errors + over > 0)
        fail_msg("%d mismatches, %d errors; %d times above the limits, at most %llu bytes "
                 "(max_bytes %d) and %llu entries",
                 mismatches, errors, over, (unsigned long long)most_bytes, THREAD_MAX_BYTES,
                 (unsigned long long)most_entries);
    /* The run did what it claims: most commits kept, lookups hit, renewals went through. */
    assert_true(commits > stores / 2);
    assert_true(hits > 1000);
    assert_true(renewals > 100);

    /* Quiet again: what usage() says is what lookups find, every entry intact. */
    struct fc_cache_usage u = usage();
    assert_true(u.bytes <= THREAD_MAX_BYTES);
    assert_true(u.entries < SHARED_KEYS); /* it evicted: 64 bodies of 4500 on average don't fit */
    uint64_t found = 0, sum = 0;
    for (uint32_t k = 0; k < SHARED_KEYS; k++) {
        char key[8];
        snprintf(key, sizeof(key), "k%02u", (unsigned)k);
        struct fc_cache_hit hit;
        struct fc_cache_entry *e = get(key, 3, &hit);
        if (e == NULL)
            continue;
        found++;
        sum += 3 + hit.meta.len + hit.body_len;
        assert_true(entry_matches(e, &hit, k, 4));
        fx.ops->release(fx.inst.state, e);
    }
    assert_int_equal(u.entries, found);
    assert_true(u.bytes > sum);
    assert_int_equal(fx.ops->remove(fx.inst.state, NULL, 0), (int64_t)found);
    assert_int_equal(usage().bytes, 0);
    assert_int_equal(usage().entries, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),          T(test_miss_before_commit),
        T(test_abort_keeps_nothing), T(test_body_in_pieces),
        T(test_replace_while_held),  T(test_update_meta),
        T(test_remove_prefix),       T(test_usage_counts_what_is_found),
        T(test_lru_eviction),        T(test_too_large),
        T(test_opaque_bytes),        T(test_config_defaults),
        T(test_config_errors),       T(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
