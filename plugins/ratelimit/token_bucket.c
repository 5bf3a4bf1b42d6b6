/*
 * token_bucket: each key (a client address, or a header's value: the core
 * chooses and hands it to check()) owns a bucket of `burst` tokens that
 * refills at `rate` tokens per second; a request takes one token, and a
 * request that finds none is denied with the time until the next token
 * arrives. One instance serves every worker thread of the process, so the
 * limit is per process, not per worker.
 *
 * The bucket is stored as one number, the "theoretical arrival time" (TAT) of
 * the Generic Cell Rate Algorithm (ATM Forum TM 4.0, 1996; the form that
 * redis-cell and Go's throttled use), which is the token bucket exactly:
 * with T = 1/rate (the emission interval) and tau = (burst - 1) * T, a bucket
 * holds burst - (TAT - now) / T tokens while TAT > now and is full once
 * TAT <= now. So a request may pass when TAT - now <= tau (at least one token
 * left), and passing sets TAT = max(TAT, now) + T (one token taken); a denied
 * request changes nothing and may retry after TAT - tau - now, rounded up to
 * whole milliseconds. Time is the host's monotonic clock in nanoseconds and T
 * is rounded to the nearest nanosecond once, at create(): the arithmetic is
 * exact integer arithmetic from there on, with no fraction of a token drifting
 * away as floating point accumulates (rate 3 is one token every 333,333,333 ns:
 * one part in 10^9 fast). A new key starts with a full bucket.
 *
 * Forgetting. A full bucket (TAT <= now) carries no information: it says the
 * same as no bucket at all. So a bucket is dropped as soon as it is full,
 * which happens at most burst / rate seconds after its last request, and the
 * memory a key costs lasts no longer than its debt. Dropping is lazy: every
 * check first looks at the RECLAIM_SCAN least recently used buckets of its
 * shard and frees those that are full. There is no `idle_ms` knob: a longer
 * one would keep buckets that say nothing, a shorter one would forgive debts
 * early, and `max_keys` is the knob that bounds memory.
 *
 * Bounded memory. At most `max_keys` buckets exist, in a slab allocated at
 * create() (48 bytes each, touched only as keys arrive) with as many hash
 * chain heads (8 bytes each, rounded up to a power of two per shard), and no
 * allocation at all in check(). A bucket remembers the key by a 128-bit SipHash-1-3 digest
 * (Aumasson and Bernstein, 2012) under a random secret seed, not by a copy of
 * the key, so a bucket costs the same for a 10-byte address and a 4 KiB
 * header, and a client cannot craft keys that pile into one hash chain or
 * that collide with another client's (two of 100,000 live keys share a digest
 * with probability about 10^-29). A new key in a full shard takes, in this
 * order, a freed bucket, a full one among the RECLAIM_SCAN_FULL least recently
 * used, or else the least recently used bucket, whose key then starts again
 * from a full bucket: with more active keys than `max_keys` the limit leaks
 * for the keys idle longest, but a new key is never refused for lack of room
 * and memory never grows. The first time that happens the instance logs a
 * warning that names max_keys. Each shard holds an equal part of max_keys,
 * so with keys spread by a random hash a shard may fill up a little before
 * the whole table would.
 *
 * Threads. The table is split into up to SHARDS_MAX shards by the digest,
 * each with its own mutex, LRU list, hash table and slice of the slab, and
 * each on its own cache lines, so workers contend only when their keys share
 * a shard. The critical section is O(1): a short chain walk, the GCRA step,
 * an LRU move and a scan of at most RECLAIM_SCAN_FULL entries; it makes no
 * system call and allocates nothing, so a worker waits there for nanoseconds,
 * never for I/O. A lock-free table would save that wait but not the cache
 * line transfer that any shared counter costs, at the price of much harder
 * code for LRU eviction. The mutex is glibc's adaptive one, which spins
 * briefly before sleeping, the right choice for critical sections this short.
 * The clock is read before taking the lock; a thread that read it a little
 * earlier than another may be denied slightly early, never allowed too much.
 */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */

#include <fulcrum/plugin.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NS_PER_S 1000000000.0
#define NS_PER_MS UINT64_C(1000000)

#define MAX_KEYS_DEFAULT 100000
#define MAX_KEYS_LIMIT 100000000
/* T >= 1 us: the interval is whole nanoseconds, so its rounding stays under 0.05%. */
#define RATE_LIMIT 1e6
/* Time to refill a whole bucket, burst * T, at most ~31 years: TAT never nears 2^64. */
#define REFILL_LIMIT_S 1e9

/* Shards: a power of two, each with at least SHARD_MIN_KEYS buckets. */
#define SHARDS_MAX 64
#define SHARD_MIN_KEYS 16
/* Least recently used buckets looked at by each check, and when a new key needs room. */
#define RECLAIM_SCAN 2
#define RECLAIM_SCAN_FULL 8

/* One key's bucket; 48 bytes. */
struct tb_entry {
    uint64_t id[2];         /* SipHash-1-3-128 of the key */
    uint64_t tat;           /* theoretical arrival time, ns */
    struct tb_entry *chain; /* next in the hash chain, or in the free list */
    struct tb_entry *newer; /* LRU neighbours; NULL at the ends */
    struct tb_entry *older;
};

struct tb_shard {
    pthread_mutex_t lock;
    struct tb_entry **heads; /* mask + 1 hash chains */
    uint32_t mask;
    uint32_t cap;            /* buckets this shard may hold */
    uint32_t carved;         /* slab entries handed out so far, <= cap */
    struct tb_entry *slab;   /* cap entries */
    struct tb_entry *free;   /* dropped entries, through ->chain */
    struct tb_entry *newest; /* the LRU list */
    struct tb_entry *oldest;
} __attribute__((aligned(64))); /* cache lines of its own: no false sharing between shards */

struct token_bucket {
    const struct fc_host *host;
    uint64_t interval; /* T, ns per token */
    uint64_t tau;      /* (burst - 1) * T */
    uint64_t seed[2];  /* SipHash key */
    int64_t max_keys;
    uint32_t shard_mask;
    uint32_t warned; /* the max_keys warning was logged */
    struct tb_shard *shards;
    struct tb_entry *slab;
    struct tb_entry **heads;
    uint32_t n_locks; /* shard mutexes initialised, for destroy */
};

/* ------------------------------------------------------------------------ */
/* Key digests                                                               */
/* ------------------------------------------------------------------------ */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = ROTL(v[1], 13);
    v[1] ^= v[0];
    v[0] = ROTL(v[0], 32);
    v[2] += v[3];
    v[3] = ROTL(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = ROTL(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = ROTL(v[1], 17);
    v[1] ^= v[2];
    v[2] = ROTL(v[2], 32);
}

/*
 * SipHash-1-3 with 128-bit output, as the reference implementation computes
 * it. Words are read in host byte order: the digest never leaves the process,
 * so it need not match the reference's test vectors on a big-endian machine.
 */
static void siphash128(const uint64_t k[2], const char *data, size_t len, uint64_t out[2])
{
    uint64_t v[4] = {UINT64_C(0x736f6d6570736575) ^ k[0], UINT64_C(0x646f72616e646f6d) ^ k[1],
                     UINT64_C(0x6c7967656e657261) ^ k[0], UINT64_C(0x7465646279746573) ^ k[1]};
    v[1] ^= 0xee;

    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t m;
        memcpy(&m, data + i, 8);
        v[3] ^= m;
        sip_round(v);
        v[0] ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)(unsigned char)data[i + j] << (8 * j);
    v[3] ^= b;
    sip_round(v);
    v[0] ^= b;

    v[2] ^= 0xee;
    for (int r = 0; r < 3; r++)
        sip_round(v);
    out[0] = v[0] ^ v[1] ^ v[2] ^ v[3];
    v[1] ^= 0xdd;
    for (int r = 0; r < 3; r++)
        sip_round(v);
    out[1] = v[0] ^ v[1] ^ v[2] ^ v[3];
}

/*
 * A secret seed, so that clients cannot predict digests. getrandom() only
 * fails on kernels older than 3.17; the clock and an address are then a weak
 * but working substitute (the table stays correct, only less hardened).
 */
static void make_seed(uint64_t seed[2], const void *salt)
{
    if (getrandom(seed, 2 * sizeof(seed[0]), 0) == (ssize_t)(2 * sizeof(seed[0])))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed[0] = (uint64_t)ts.tv_sec * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)ts.tv_nsec;
    seed[1] = (uint64_t)(uintptr_t)salt * UINT64_C(0xbf58476d1ce4e5b9) ^ seed[0];
}

/* ------------------------------------------------------------------------ */
/* Shards: hash chains, LRU list, slab. All under the shard's lock.          */
/* ------------------------------------------------------------------------ */

static struct tb_entry **chain_of(struct tb_shard *s, const uint64_t id[2])
{
    /* id[0]'s low bits chose the shard; id[1] chooses the chain. */
    return &s->heads[id[1] & s->mask];
}

static struct tb_entry *lookup(struct tb_shard *s, const uint64_t id[2])
{
    for (struct tb_entry *e = *chain_of(s, id); e != NULL; e = e->chain)
        if (e->id[0] == id[0] && e->id[1] == id[1])
            return e;
    return NULL;
}

static void lru_unlink(struct tb_shard *s, struct tb_entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        s->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        s->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(struct tb_shard *s, struct tb_entry *e)
{
    e->older = s->newest;
    e->newer = NULL;
    if (s->newest != NULL)
        s->newest->newer = e;
    else
        s->oldest = e;
    s->newest = e;
}

/* Takes e out of the table and the LRU list; the caller reuses or frees it. */
static void unlink_entry(struct tb_shard *s, struct tb_entry *e)
{
    struct tb_entry **p = chain_of(s, e->id);
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    e->chain = NULL;
    lru_unlink(s, e);
}

/* Frees the full buckets among the `scan` least recently used; returns how many. */
static int reclaim(struct tb_shard *s, uint64_t now, int scan)
{
    int freed = 0;
    struct tb_entry *e = s->oldest;
    for (int i = 0; i < scan && e != NULL; i++) {
        struct tb_entry *newer = e->newer;
        if (e->tat <= now) {
            unlink_entry(s, e);
            e->chain = s->free;
            s->free = e;
            freed++;
        }
        e = newer;
    }
    return freed;
}

/*
 * An unused entry for a new key: a freed one, a fresh one from the slab, a
 * full one among the least recently used, or else the least recently used,
 * whose key loses its debt (*evicted_active is then set).
 */
static struct tb_entry *take_entry(struct tb_shard *s, uint64_t now, int *evicted_active)
{
    /* Recycled entries first: the slab's untouched pages then stay untouched. */
    if (s->free == NULL && s->carved < s->cap)
        return &s->slab[s->carved++];
    if (s->free == NULL)
        reclaim(s, now, RECLAIM_SCAN_FULL);
    if (s->free != NULL) {
        struct tb_entry *e = s->free;
        s->free = e->chain;
        e->chain = NULL;
        return e;
    }
    /* cap >= 1 and nothing is free: the shard is full, so oldest exists. */
    struct tb_entry *e = s->oldest;
    unlink_entry(s, e);
    *evicted_active = 1;
    return e;
}

/* ------------------------------------------------------------------------ */
/* Ops                                                                       */
/* ------------------------------------------------------------------------ */

static void tb_destroy(void *state)
{
    struct token_bucket *tb = state;
    if (tb == NULL)
        return;
    for (uint32_t i = 0; i < tb->n_locks; i++)
        pthread_mutex_destroy(&tb->shards[i].lock);
    free(tb->shards);
    free(tb->heads);
    free(tb->slab);
    free(tb);
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* Splits max_keys over the shards and allocates the slab and the chains. */
static int build_table(struct token_bucket *tb)
{
    uint32_t max = (uint32_t)tb->max_keys;
    uint32_t n = 1;
    while (n < SHARDS_MAX && max / (n * 2) >= SHARD_MIN_KEYS)
        n *= 2;
    tb->shard_mask = n - 1;

    /* Chains: a power of two per shard, at least as many as buckets. */
    uint32_t base = max / n, extra = max % n;
    uint32_t chains = pow2_at_least(base + (extra > 0));
    /* calloc: big blocks come from mmap, zero pages that cost memory only once touched. */
    tb->slab = calloc(max, sizeof(*tb->slab));
    tb->heads = calloc((size_t)chains * n, sizeof(*tb->heads));
    tb->shards = aligned_alloc(64, n * sizeof(*tb->shards));
    if (tb->slab == NULL || tb->heads == NULL || tb->shards == NULL)
        return FC_ENOMEM;

    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    size_t offset = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct tb_shard *s = &tb->shards[i];
        memset(s, 0, sizeof(*s));
        s->cap = base + (i < extra);
        s->slab = tb->slab + offset;
        offset += s->cap;
        s->heads = tb->heads + (size_t)chains * i;
        s->mask = chains - 1;
        if (pthread_mutex_init(&s->lock, &attr) != 0)
            break;
        tb->n_locks++;
    }
    pthread_mutexattr_destroy(&attr);
    return tb->n_locks == n ? 0 : FC_ERROR;
}

static int tb_create(const struct fc_host *host, void **state)
{
    double rate = 0;
    int64_t burst = 0, max_keys = MAX_KEYS_DEFAULT;
    int rc = 0;

    /* Each getter logs a wrong type itself; the host then fails create(). */
    int rate_rc = host->config_double(host, "rate", &rate);
    int burst_rc = host->config_int(host, "burst", &burst);
    int keys_rc = host->config_int(host, "max_keys", &max_keys);
    if (rate_rc == FC_EINVAL || burst_rc == FC_EINVAL || keys_rc == FC_EINVAL)
        rc = FC_EINVAL;

    if (rate_rc == FC_ENOENT) {
        host->config_error(host, "rate", "required: tokens per second, a number > 0");
        rc = FC_EINVAL;
    } else if (rate_rc == 0 && !(rate > 0 && rate <= RATE_LIMIT)) {
        host->config_error(host, "rate", "expected tokens per second, > 0 and <= %.0f (got %g)",
                           RATE_LIMIT, rate);
        rc = FC_EINVAL;
    }
    if (rc == 0 && burst_rc == FC_ENOENT) {
        /* The default: ceil(rate), one second's worth, at least 1. */
        burst = (int64_t)rate;
        if ((double)burst < rate)
            burst++;
    }
    if (burst_rc == 0 && burst < 1) {
        host->config_error(host, "burst", "expected an integer >= 1 (got %lld)", (long long)burst);
        rc = FC_EINVAL;
    }
    if (rc == 0 && (double)burst / rate > REFILL_LIMIT_S) {
        host->config_error(host, burst_rc == 0 ? "burst" : "rate",
                           "burst / rate, the time to refill a bucket, is %g s; at most %.0f s",
                           (double)burst / rate, REFILL_LIMIT_S);
        rc = FC_EINVAL;
    }
    if (keys_rc == 0 && (max_keys < 1 || max_keys > MAX_KEYS_LIMIT)) {
        host->config_error(host, "max_keys", "expected an integer from 1 to %d (got %lld)",
                           MAX_KEYS_LIMIT, (long long)max_keys);
        rc = FC_EINVAL;
    }
    if (rc < 0)
        return rc;

    struct token_bucket *tb = calloc(1, sizeof(*tb));
    if (tb == NULL)
        return FC_ENOMEM;
    tb->host = host;
    tb->interval = (uint64_t)(NS_PER_S / rate + 0.5);
    if (tb->interval == 0)
        tb->interval = 1;
    tb->tau = (uint64_t)(burst - 1) * tb->interval;
    tb->max_keys = max_keys;
    make_seed(tb->seed, tb);

    rc = build_table(tb);
    if (rc < 0) {
        host->log(host, FC_LOG_ERROR, "max_keys = %lld: cannot allocate the table (%zu MiB)",
                  (long long)max_keys, (size_t)max_keys * sizeof(struct tb_entry) >> 20);
        tb_destroy(tb);
        return rc;
    }
    *state = tb;
    return 0;
}

static int tb_check(void *state, const struct fc_ratelimit_args *args, uint64_t *retry_after_ms)
{
    struct token_bucket *tb = state;
    uint64_t id[2];
    siphash128(tb->seed, args->key != NULL ? args->key : "", args->key_len, id);
    struct tb_shard *s = &tb->shards[id[0] & tb->shard_mask];
    uint64_t now = tb->host->now_ns(tb->host);
    int verdict = FC_RATELIMIT_ALLOW;
    int evicted_active = 0;

    pthread_mutex_lock(&s->lock);
    reclaim(s, now, RECLAIM_SCAN);
    struct tb_entry *e = lookup(s, id);
    if (e == NULL) {
        e = take_entry(s, now, &evicted_active);
        e->id[0] = id[0];
        e->id[1] = id[1];
        e->tat = now; /* a full bucket */
        struct tb_entry **head = chain_of(s, id);
        e->chain = *head;
        *head = e;
    } else {
        lru_unlink(s, e);
    }
    lru_push_newest(s, e);

    uint64_t tat = e->tat > now ? e->tat : now;
    if (tat - now > tb->tau) {
        /* Less than one token: the next one is whole at TAT - tau. Nothing changes. */
        uint64_t wait = tat - tb->tau - now;
        *retry_after_ms = (wait + NS_PER_MS - 1) / NS_PER_MS;
        verdict = FC_RATELIMIT_DENY;
    } else {
        e->tat = tat + tb->interval;
    }
    /* Either way e->tat > now now, so reclaim() cannot take e before its next use. */
    pthread_mutex_unlock(&s->lock);

    if (evicted_active && !__atomic_exchange_n(&tb->warned, 1, __ATOMIC_RELAXED))
        tb->host->log(tb->host, FC_LOG_WARN,
                      "max_keys (%lld) reached: the least recently used keys are forgotten "
                      "before their buckets refill, so they may exceed the limit; raise max_keys",
                      (long long)tb->max_keys);
    return verdict;
}

static const struct fc_ratelimit_ops tb_ops = {
    .size = sizeof(struct fc_ratelimit_ops),
    .create = tb_create,
    .destroy = tb_destroy,
    .check = tb_check,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_RATELIMIT, .name = "token_bucket", .version = "1.0.0",
                     .description = "a token bucket per key, shared by all workers (GCRA)",
                     .ratelimit = &tb_ops);
