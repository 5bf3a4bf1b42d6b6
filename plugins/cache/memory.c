/*
 * memory: the bundled cache store. Entries live in this process's memory,
 * LRU within max_bytes, the largest body max_object_bytes:
 *
 *   cache = { plugin = "memory"; max_bytes = 67108864; max_object_bytes = 1048576; };
 *
 * The index is split into SHARDS shards by the key's hash, each with its own
 * mutex, hash chains and LRU list, so that workers looking up different keys
 * rarely meet on a lock, and nothing on the hit path takes a lock of the
 * whole store or allocates: a lookup finds the entry, moves it to the front
 * of its shard's list, stamps it with the store's use counter and takes a
 * reference; the body is read without a lock (it never changes once
 * committed) and the reference is given back at the end.
 *
 * LRU is over the whole store, not per shard: every use stamps the entry
 * with the next value of one counter, each shard's list is in stamp order
 * (stamps are taken under the shard's lock), so the least recently used
 * entry of the store is the tail with the smallest stamp. A commit that
 * needs room evicts such tails one by one, locking one shard at a time.
 *
 * What is counted: for each entry a lookup can find, its bookkeeping, key,
 * meta and body chunks as allocated (headers and capacity included), which
 * is what usage() reports and what stays within max_bytes. A body being
 * stored is counted from its commit on (at most max_object_bytes each
 * meanwhile); an entry removed or replaced while a reader holds it stops
 * counting at once and is freed by the last release.
 *
 * A body whose length is known is kept in one chunk of exactly that size;
 * one of unknown length grows in chunks from CHUNK_MIN to CHUNK_MAX bytes.
 * An entry renewed by update_meta() (after a 304) is a new entry that shares
 * the body, which is reference-counted for that.
 */
#include <fulcrum/plugin.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 16
#define BUCKETS_MIN 64
#define CHUNK_MIN 4096
#define CHUNK_MAX (256 * 1024)
#define MAX_BYTES_DEFAULT (64 * 1024 * 1024)
#define MAX_OBJECT_DEFAULT (1024 * 1024)
/* An eviction that keeps losing races to other threads gives up after this many scans. */
#define EVICT_TRIES 8

struct chunk {
    struct chunk *next;
    size_t len, cap;
    unsigned char data[];
};

/* A body, shared by the entries of one key that update_meta() made. */
struct body {
    struct chunk *first, *last;
    uint64_t len;
    size_t charge; /* this struct and its chunks */
    uint32_t refs; /* under the shard's lock, once committed */
};

struct mem_entry {
    struct mem_entry *hnext;       /* in its shard's hash chain */
    struct mem_entry *prev, *next; /* in its shard's LRU list, most recent first */
    uint64_t hash;
    uint64_t stamp; /* the store's use counter at the last use */
    uint32_t refs;  /* readers, and 1 for the index while indexed */
    int indexed;    /* a lookup can find it */
    int free_body;  /* once unindexed by remove(): whether its body goes with it */
    size_t charge;  /* what it counts while indexed */
    struct body *body;
    size_t key_len, meta_len;
    unsigned char bytes[]; /* key, then meta */
};

struct shard {
    pthread_mutex_t lock;
    struct mem_entry **buckets;
    size_t n_buckets, count;
    struct mem_entry *head, *tail;
};

struct memory {
    const struct fc_host *host;
    uint64_t max_bytes, max_object;
    uint64_t seed;
    _Atomic uint64_t bytes, entries, stamp;
    struct shard shards[SHARDS];
};

struct fc_cache_store {
    struct memory *m;
    struct mem_entry *e; /* not indexed until the commit */
    uint64_t known_len;
};

/* ---- hashing ------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static uint64_t hash_key(const struct memory *m, const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = m->seed ^ (len * UINT64_C(0x9e3779b97f4a7c15));
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix(h ^ w);
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    if (len > 0)
        memcpy(&w, p, len);
    return mix(h ^ w ^ ((uint64_t)len << 56));
}

static struct shard *shard_of(struct memory *m, uint64_t hash)
{
    return &m->shards[hash >> 60]; /* SHARDS is 16: the top 4 bits */
}

static size_t bucket_of(const struct shard *s, uint64_t hash)
{
    return (size_t)hash & (s->n_buckets - 1);
}

/* ---- entries ------------------------------------------------------------ */

static void body_free(struct body *b)
{
    for (struct chunk *c = b->first, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(b);
}

/* Frees an entry no one holds; its body too unless another entry shares it. Under no lock. */
static void entry_free(struct mem_entry *e, int body_too)
{
    if (body_too)
        body_free(e->body);
    free(e);
}

static struct mem_entry *entry_new(const void *key, size_t key_len, const void *meta,
                                   size_t meta_len)
{
    struct mem_entry *e = malloc(sizeof(*e) + key_len + meta_len);
    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->key_len = key_len;
    e->meta_len = meta_len;
    if (key_len > 0)
        memcpy(e->bytes, key, key_len);
    if (meta_len > 0)
        memcpy(e->bytes + key_len, meta, meta_len);
    return e;
}

static int key_equal(const struct mem_entry *e, uint64_t hash, const void *key, size_t key_len)
{
    return e->hash == hash && e->key_len == key_len &&
           (key_len == 0 || memcmp(e->bytes, key, key_len) == 0);
}

static void lru_unlink(struct shard *s, struct mem_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct shard *s, struct mem_entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head != NULL)
        s->head->prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

/* The chain link that points at e. Under the shard's lock; e is indexed. */
static struct mem_entry **chain_link(struct shard *s, struct mem_entry *e)
{
    struct mem_entry **link = &s->buckets[bucket_of(s, e->hash)];
    while (*link != e)
        link = &(*link)->hnext;
    return link;
}

/*
 * Takes e out of the index, under its shard's lock. Returns whether the
 * index held the last reference, in which case the caller frees it (after
 * unlocking), with its body when *body_too says so. Its bytes stay counted.
 */
static int unindex_uncounted(struct memory *m, struct shard *s, struct mem_entry *e, int *body_too)
{
    *chain_link(s, e) = e->hnext;
    e->hnext = NULL;
    lru_unlink(s, e);
    e->indexed = 0;
    s->count--;
    atomic_fetch_sub(&m->entries, 1);
    if (--e->refs > 0)
        return 0;
    *body_too = --e->body->refs == 0;
    return 1;
}

/* The same, and its bytes no longer count. */
static int unindex(struct memory *m, struct shard *s, struct mem_entry *e, int *body_too)
{
    atomic_fetch_sub(&m->bytes, e->charge);
    return unindex_uncounted(m, s, e, body_too);
}

/* Doubles a shard's chains when they grow long. Under its lock; failing only keeps them long. */
static void maybe_grow(struct shard *s)
{
    if (s->count < s->n_buckets)
        return;
    size_t n = s->n_buckets * 2;
    struct mem_entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return;
    for (size_t i = 0; i < s->n_buckets; i++) {
        for (struct mem_entry *e = s->buckets[i], *next; e != NULL; e = next) {
            next = e->hnext;
            size_t j = (size_t)e->hash & (n - 1);
            e->hnext = b[j];
            b[j] = e;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->n_buckets = n;
}

/* Puts e in the index, at the front of the LRU. Under its shard's lock. */
static void index_entry(struct memory *m, struct shard *s, struct mem_entry *e)
{
    maybe_grow(s);
    size_t i = bucket_of(s, e->hash);
    e->hnext = s->buckets[i];
    s->buckets[i] = e;
    e->indexed = 1;
    e->refs++;
    e->stamp = atomic_fetch_add(&m->stamp, 1);
    lru_push_front(s, e);
    s->count++;
    atomic_fetch_add(&m->entries, 1);
}

static struct mem_entry *find(struct shard *s, uint64_t hash, const void *key, size_t key_len)
{
    for (struct mem_entry *e = s->buckets[bucket_of(s, hash)]; e != NULL; e = e->hnext)
        if (key_equal(e, hash, key, key_len))
            return e;
    return NULL;
}

/*
 * Evicts the least recently used entry of the store. Returns 1, or 0 when
 * there was nothing to evict.
 */
static int evict_one(struct memory *m)
{
    for (int tries = 0; tries < EVICT_TRIES; tries++) {
        int best = -1;
        uint64_t best_stamp = 0;
        for (int i = 0; i < SHARDS; i++) {
            struct shard *s = &m->shards[i];
            pthread_mutex_lock(&s->lock);
            if (s->tail != NULL && (best < 0 || s->tail->stamp < best_stamp)) {
                best = i;
                best_stamp = s->tail->stamp;
            }
            pthread_mutex_unlock(&s->lock);
        }
        if (best < 0)
            return 0;
        struct shard *s = &m->shards[best];
        pthread_mutex_lock(&s->lock);
        struct mem_entry *e = s->tail;
        /* Used or evicted meanwhile: look again, or after enough tries take what is there. */
        if (e == NULL || (e->stamp != best_stamp && tries + 1 < EVICT_TRIES)) {
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        int body_too = 0, last = unindex(m, s, e, &body_too);
        pthread_mutex_unlock(&s->lock);
        if (last)
            entry_free(e, body_too);
        return 1;
    }
    return 0;
}

/*
 * Counts `charge` more bytes, evicting the least recently used entries
 * until they fit within max_bytes: the count never goes past it, also with
 * several threads reserving at once. Returns 0, or FC_ENOMEM, counting
 * nothing, when there is nothing left to evict.
 */
static int reserve(struct memory *m, size_t charge)
{
    for (;;) {
        uint64_t bytes = atomic_load(&m->bytes);
        if (bytes + charge <= m->max_bytes) {
            if (atomic_compare_exchange_weak(&m->bytes, &bytes, bytes + charge))
                return 0;
        } else if (!evict_one(m)) {
            return FC_ENOMEM;
        }
    }
}

/* ---- the ops ------------------------------------------------------------ */

static int mem_lookup(void *state, const void *key, size_t key_len, struct fc_cache_entry **entry,
                      struct fc_cache_hit *hit)
{
    struct memory *m = state;
    uint64_t hash = hash_key(m, key, key_len);
    struct shard *s = shard_of(m, hash);
    pthread_mutex_lock(&s->lock);
    struct mem_entry *e = find(s, hash, key, key_len);
    if (e != NULL) {
        e->refs++;
        e->stamp = atomic_fetch_add(&m->stamp, 1);
        if (s->head != e) {
            lru_unlink(s, e);
            lru_push_front(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (e == NULL)
        return 0;
    *entry = (struct fc_cache_entry *)(void *)e;
    hit->meta = (struct fc_cache_span){e->bytes + e->key_len, e->meta_len};
    hit->body_len = e->body->len;
    return 1;
}

static int mem_read(void *state, struct fc_cache_entry *entry, uint64_t offset,
                    struct fc_cache_span *spans, int max_spans)
{
    const struct mem_entry *e = (const struct mem_entry *)(const void *)entry;
    int n = 0;
    uint64_t at = 0;
    for (const struct chunk *c = e->body->first; c != NULL && n < max_spans; c = c->next) {
        if (offset < at + c->len) {
            size_t skip = offset > at ? (size_t)(offset - at) : 0;
            spans[n++] = (struct fc_cache_span){c->data + skip, c->len - skip};
        }
        at += c->len;
    }
    return n;
}

static void mem_release(void *state, struct fc_cache_entry *entry)
{
    struct memory *m = state;
    struct mem_entry *e = (struct mem_entry *)(void *)entry;
    struct shard *s = shard_of(m, e->hash);
    pthread_mutex_lock(&s->lock);
    int last = --e->refs == 0, body_too = last && --e->body->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        entry_free(e, body_too);
}

static int mem_store_begin(void *state, const void *key, size_t key_len, const void *meta,
                           size_t meta_len, uint64_t body_len, struct fc_cache_store **store)
{
    struct memory *m = state;
    if (body_len != FC_CACHE_LEN_UNKNOWN && body_len > m->max_object)
        return FC_E2BIG;
    struct fc_cache_store *st = calloc(1, sizeof(*st));
    struct body *b = calloc(1, sizeof(*b));
    struct mem_entry *e = entry_new(key, key_len, meta, meta_len);
    if (st == NULL || b == NULL || e == NULL) {
        free(st);
        free(b);
        free(e);
        return FC_ENOMEM;
    }
    b->charge = sizeof(*b);
    b->refs = 1;
    e->body = b;
    e->hash = hash_key(m, key, key_len);
    *st = (struct fc_cache_store){.m = m, .e = e, .known_len = body_len};
    *store = st;
    return 0;
}

/* A new chunk for `need` more bytes: the whole known length, else growing sizes. */
static struct chunk *chunk_new(const struct fc_cache_store *st, size_t need)
{
    const struct body *b = st->e->body;
    size_t cap;
    if (st->known_len != FC_CACHE_LEN_UNKNOWN && b->len < st->known_len &&
        st->known_len - b->len >= need)
        cap = (size_t)(st->known_len - b->len);
    else {
        cap = b->last == NULL ? CHUNK_MIN : b->last->cap * 2;
        if (cap > CHUNK_MAX)
            cap = CHUNK_MAX;
        if (cap > st->m->max_object - b->len)
            cap = (size_t)(st->m->max_object - b->len);
        if (cap < need)
            cap = need;
    }
    struct chunk *c = malloc(sizeof(*c) + cap);
    if (c != NULL) {
        c->next = NULL;
        c->len = 0;
        c->cap = cap;
    }
    return c;
}

static int mem_store_append(void *state, struct fc_cache_store *st, const void *data, size_t len)
{
    struct body *b = st->e->body;
    if (len > st->m->max_object - b->len)
        return FC_E2BIG;
    const unsigned char *p = data;
    while (len > 0) {
        struct chunk *c = b->last;
        if (c == NULL || c->len == c->cap) {
            c = chunk_new(st, len);
            if (c == NULL)
                return FC_ENOMEM;
            if (b->last != NULL)
                b->last->next = c;
            else
                b->first = c;
            b->last = c;
            b->charge += sizeof(*c) + c->cap;
        }
        size_t n = c->cap - c->len < len ? c->cap - c->len : len;
        memcpy(c->data + c->len, p, n);
        c->len += n;
        b->len += n;
        p += n;
        len -= n;
    }
    return 0;
}

static void mem_store_abort(void *state, struct fc_cache_store *st)
{
    entry_free(st->e, 1);
    free(st);
}

/*
 * Takes the entry of e's key out of the index, if there is one; then, with
 * `insert`, indexes e (whose bytes are reserved) in its place.
 */
static void replace_key(struct memory *m, struct mem_entry *e, int insert)
{
    struct shard *s = shard_of(m, e->hash);
    pthread_mutex_lock(&s->lock);
    struct mem_entry *old = find(s, e->hash, e->bytes, e->key_len);
    int old_last = 0, old_body = 0;
    if (old != NULL)
        old_last = unindex(m, s, old, &old_body);
    if (insert)
        index_entry(m, s, e);
    pthread_mutex_unlock(&s->lock);
    if (old_last)
        entry_free(old, old_body);
}

/* Gives back the unused end of the last chunk, so that a body counts what it holds. */
static void trim_last(struct body *b)
{
    struct chunk *c = b->last;
    if (c == NULL || c->len == c->cap)
        return;
    struct chunk **link = &b->first;
    while (*link != c)
        link = &(*link)->next;
    struct chunk *t = realloc(c, sizeof(*c) + c->len);
    if (t == NULL)
        return; /* it stays as large as it was, and counts so */
    b->charge -= t->cap - t->len;
    t->cap = t->len;
    *link = t;
    b->last = t;
}

static int mem_store_commit(void *state, struct fc_cache_store *st)
{
    struct memory *m = state;
    struct mem_entry *e = st->e;
    free(st);
    trim_last(e->body);
    e->charge = sizeof(*e) + e->key_len + e->meta_len + e->body->charge;
    if (e->charge > m->max_bytes) {
        entry_free(e, 1);
        return FC_E2BIG;
    }
    /* The entry it replaces goes first, so that it makes room rather than taking it. */
    replace_key(m, e, 0);
    if (reserve(m, e->charge) < 0) {
        entry_free(e, 1);
        return FC_ENOMEM;
    }
    replace_key(m, e, 1); /* and one committed meanwhile */
    return 0;
}

static int mem_update_meta(void *state, struct fc_cache_entry *entry, const void *meta,
                           size_t meta_len)
{
    struct memory *m = state;
    struct mem_entry *e = (struct mem_entry *)(void *)entry;
    struct mem_entry *ne = entry_new(e->bytes, e->key_len, meta, meta_len);
    if (ne == NULL)
        return FC_ENOMEM;
    ne->hash = e->hash;
    ne->body = e->body;
    /* The body is read without a lock, and committed bodies never change: e's is safe here. */
    ne->charge = sizeof(*ne) + ne->key_len + ne->meta_len + e->body->charge;
    /* Room for what the new entry takes more than e (e's charge never changes); that may evict e.
     */
    size_t extra = ne->charge > e->charge ? ne->charge - e->charge : 0;
    if (ne->charge > m->max_bytes || (extra > 0 && reserve(m, extra) < 0)) {
        free(ne);
        return FC_ENOMEM;
    }
    struct shard *s = shard_of(m, e->hash);
    pthread_mutex_lock(&s->lock);
    if (!e->indexed) {
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_sub(&m->bytes, extra);
        free(ne);
        return FC_ENOENT;
    }
    e->body->refs++;
    int body_too = 0;
    /*
     * One change of the count, from e's charge to ne's (of which `extra` is
     * counted already): giving e's bytes back first would let another
     * thread's reserve() take them, and the count pass max_bytes.
     */
    unindex_uncounted(m, s, e, &body_too); /* the caller still holds e: never the last ref */
    if (ne->charge - extra < e->charge)
        atomic_fetch_sub(&m->bytes, e->charge - (ne->charge - extra));
    index_entry(m, s, ne);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int64_t mem_remove(void *state, const void *prefix, size_t prefix_len)
{
    struct memory *m = state;
    int64_t removed = 0;
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &m->shards[i];
        struct mem_entry *dead = NULL; /* freed once the lock is let go, chained by hnext */
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->n_buckets; b++) {
            for (struct mem_entry *e = s->buckets[b], *next; e != NULL; e = next) {
                next = e->hnext;
                if (prefix_len > 0 &&
                    (e->key_len < prefix_len || memcmp(e->bytes, prefix, prefix_len) != 0))
                    continue;
                int body_too = 0;
                removed++;
                if (unindex(m, s, e, &body_too)) {
                    e->free_body = body_too;
                    e->hnext = dead;
                    dead = e;
                }
            }
        }
        pthread_mutex_unlock(&s->lock);
        for (struct mem_entry *e = dead, *next; e != NULL; e = next) {
            next = e->hnext;
            entry_free(e, e->free_body);
        }
    }
    return removed;
}

static void mem_usage(void *state, struct fc_cache_usage *usage)
{
    struct memory *m = state;
    usage->bytes = atomic_load(&m->bytes);
    usage->max_bytes = m->max_bytes;
    usage->entries = atomic_load(&m->entries);
}

static void mem_destroy(void *state)
{
    struct memory *m = state;
    mem_remove(m, NULL, 0);
    for (int i = 0; i < SHARDS; i++) {
        free(m->shards[i].buckets);
        pthread_mutex_destroy(&m->shards[i].lock);
    }
    free(m);
}

/* Reads an optional positive integer key. Returns 0, or FC_EINVAL after saying why. */
static int positive_key(const struct fc_host *host, const char *key, int64_t *value)
{
    int rc = host->config_int(host, key, value);
    if (rc == FC_ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (*value < 1) {
        host->config_error(host, key, "expected a number of bytes >= 1 (got %lld)",
                           (long long)*value);
        return FC_EINVAL;
    }
    return 0;
}

static int mem_create(const struct fc_host *host, void **state)
{
    int64_t max_bytes = MAX_BYTES_DEFAULT, max_object = MAX_OBJECT_DEFAULT;
    int rc_bytes = positive_key(host, "max_bytes", &max_bytes);
    int rc_object = positive_key(host, "max_object_bytes", &max_object);
    if (rc_bytes < 0 || rc_object < 0)
        return FC_EINVAL;
    if (max_object > max_bytes) {
        host->config_error(host, "max_object_bytes",
                           "%lld is more than max_bytes (%lld): no object that large would fit",
                           (long long)max_object, (long long)max_bytes);
        return FC_EINVAL;
    }
    struct memory *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return FC_ENOMEM;
    m->host = host;
    m->max_bytes = (uint64_t)max_bytes;
    m->max_object = (uint64_t)max_object;
    m->seed = mix((uint64_t)(uintptr_t)m ^ host->now_ns(host));
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &m->shards[i];
        s->buckets = calloc(BUCKETS_MIN, sizeof(*s->buckets));
        s->n_buckets = BUCKETS_MIN;
        if (s->buckets == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
            for (int j = 0; j <= i; j++)
                free(m->shards[j].buckets);
            for (int j = 0; j < i; j++)
                pthread_mutex_destroy(&m->shards[j].lock);
            free(m);
            return FC_ENOMEM;
        }
    }
    *state = m;
    return 0;
}

static const struct fc_cache_ops memory_ops = {
    .size = sizeof(struct fc_cache_ops),
    .create = mem_create,
    .destroy = mem_destroy,
    .lookup = mem_lookup,
    .read = mem_read,
    .release = mem_release,
    .store_begin = mem_store_begin,
    .store_append = mem_store_append,
    .store_commit = mem_store_commit,
    .store_abort = mem_store_abort,
    .update_meta = mem_update_meta,
    .remove = mem_remove,
    .usage = mem_usage,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_CACHE, .name = "memory", .version = "1.0.0",
                     .description = "responses in this process's memory, LRU within max_bytes",
                     .cache = &memory_ops);
