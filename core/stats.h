/*
 * Counters for the metrics and the status: kept per worker, summed when
 * asked.
 *
 * A block of counters belongs to one thing with a name that lasts across
 * reloads — a listener (its address), a pool (its name), a backend ("pool\n
 * address") — and holds one slot per worker, each on its own cache lines.
 * Worker w only ever writes slot w, with plain increments (a relaxed atomic
 * store of a load plus one: no lock prefix, no shared cache line), and the
 * main thread reads every slot with relaxed loads when it sums them. So the
 * hot path pays a few adds into memory that only its own core touches.
 *
 * Blocks are found by kind and name (fc_stats_acquire), so a generation
 * built by a reload gets the same block for a listener, pool or backend that
 * it keeps, and its counters go on counting. A block lives while someone
 * holds it: each generation that has the thing, and each listener socket
 * still open for it.
 */
#ifndef FC_STATS_H
#define FC_STATS_H

#include <stddef.h>
#include <stdint.h>

/** Response status classes: [0] is 1xx ... [4] is 5xx. */
#define FC_STATS_CLASSES 5

/** "1xx" ... "5xx", by class index. */
extern const char *const fc_stats_class_names[FC_STATS_CLASSES];

/** The statuses the proxy answers itself, in the order of fc_stats_proxy_codes. */
#define FC_STATS_PROXY_CODES 10
extern const int fc_stats_proxy_codes[FC_STATS_PROXY_CODES];

/** Upper bounds of the latency histogram's buckets, in seconds (+Inf follows). */
#define FC_STATS_BUCKETS 14
extern const double fc_stats_bucket_bounds[FC_STATS_BUCKETS];

/** Reasons of a failed TLS handshake (enum fc_tls_failure in tls.h). */
#define FC_STATS_TLS_FAILURES 8

struct fc_listener_stats {
    uint64_t accepted;                              /**< connections accepted */
    uint64_t closed;                                /**< of them, closed again */
    uint64_t responses[FC_STATS_CLASSES];           /**< responses sent, by class */
    uint64_t proxy_responses[FC_STATS_PROXY_CODES]; /**< the proxy's own, by code */
    uint64_t bytes_in, bytes_out;
    uint64_t abandoned; /**< requests whose client left while their response was awaited (499) */
    uint64_t tunnels_opened, tunnels_closed; /**< WebSocket tunnels (open: the difference) */
    uint64_t
        tls_failures[FC_STATS_TLS_FAILURES]; /**< failed handshakes and bad records, by reason */
} __attribute__((aligned(64)));

/** What the response cache did with a request, by index in fc_pool_stats.cache. */
enum fc_stats_cache_result {
    FC_CACHE_RESULT_HIT,    /**< answered from the cache (a 304 to a conditional too) */
    FC_CACHE_RESULT_MISS,   /**< forwarded: nothing stored, or the request asked (no-cache) */
    FC_CACHE_RESULT_STALE,  /**< forwarded: what was stored was stale (revalidated when it could be)
                             */
    FC_CACHE_RESULT_BYPASS, /**< forwarded: not a request the cache answers (method, no-store, body)
                             */
    FC_STATS_CACHE_RESULTS
};

/** "hit", "miss", "stale", "bypass", by index. */
extern const char *const fc_stats_cache_result_names[FC_STATS_CACHE_RESULTS];

struct fc_pool_stats {
    uint64_t retries;          /**< attempts on another backend after a failed connect */
    uint64_t no_backend;       /**< requests the strategy found no backend for (503) */
    uint64_t ratelimit_denied; /**< requests the rate limiter refused (429) */
    uint64_t cache[FC_STATS_CACHE_RESULTS]; /**< requests of a pool with a cache, by result */
} __attribute__((aligned(64)));

struct fc_backend_stats {
    uint64_t requests;                      /**< requests sent to it */
    uint64_t responses[FC_STATS_CLASSES];   /**< response heads received, by class */
    uint64_t connect_failures;              /**< connects that failed for the backend's reasons */
    uint64_t buckets[FC_STATS_BUCKETS + 1]; /**< request start to response head; +Inf last */
    uint64_t latency_ns;                    /**< the sum of those */
} __attribute__((aligned(64)));

enum fc_stats_kind { FC_STATS_LISTENER, FC_STATS_POOL, FC_STATS_BACKEND };

/** A block: one slot per worker of the kind's struct. Opaque but for the slots. */
struct fc_stats {
    enum fc_stats_kind kind;
    uint32_t n_workers;
    uint32_t refs; /**< under the registry's lock */
    char *key;
    struct fc_stats *next;
    void *slots; /**< [n_workers] of the kind's struct */
};

/**
 * The block of `kind` named `key` for n_workers workers, created empty if
 * nobody holds one, with a reference for the caller. NULL when out of memory.
 * Any thread (reloads on the main thread, listener sockets on workers).
 */
struct fc_stats *fc_stats_acquire(enum fc_stats_kind kind, const char *key, uint32_t n_workers);

/** Drops a reference; the last frees the block. Any thread; NULL is fine. */
void fc_stats_release(struct fc_stats *s);

static inline struct fc_listener_stats *fc_stats_listener(struct fc_stats *s, uint32_t worker)
{
    return (struct fc_listener_stats *)s->slots + worker;
}
static inline struct fc_pool_stats *fc_stats_pool(struct fc_stats *s, uint32_t worker)
{
    return (struct fc_pool_stats *)s->slots + worker;
}
static inline struct fc_backend_stats *fc_stats_backend(struct fc_stats *s, uint32_t worker)
{
    return (struct fc_backend_stats *)s->slots + worker;
}

/** Adds n to a counter of the calling worker's own slot. */
static inline void fc_stats_add(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/** Index of status in FC_STATS_CLASSES, or -1 outside 100..599. */
static inline int fc_stats_class(int status)
{
    return status >= 100 && status <= 599 ? status / 100 - 1 : -1;
}

/** Index of a proxy status in fc_stats_proxy_codes, or -1. */
int fc_stats_proxy_index(int status);

/** The histogram bucket of a latency. */
unsigned fc_stats_bucket(uint64_t ns);

/**
 * Sums the slots of s into *out (a struct of s's kind): what the main thread
 * reads when asked. Any thread; the sums may lag a worker by an increment.
 */
void fc_stats_sum_listener(const struct fc_stats *s, struct fc_listener_stats *out);
void fc_stats_sum_pool(const struct fc_stats *s, struct fc_pool_stats *out);
void fc_stats_sum_backend(const struct fc_stats *s, struct fc_backend_stats *out);

/**
 * Sums the counters of the listener at `address` (held by its open sockets;
 * all zero when none is open). Returns 0, or -1 when out of memory (all
 * zero then too). Any thread.
 */
int fc_stats_sum_listener_at(const char *address, uint32_t n_workers,
                             struct fc_listener_stats *out);

#endif
