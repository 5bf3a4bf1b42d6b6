/*
 * Counters kept per worker; see stats.h.
 *
 * The registry is a list under a mutex: it is used when a generation is built
 * or destroyed and when a listener socket opens or closes, never per request.
 */
#include "stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const char *const fc_stats_class_names[FC_STATS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
const char *const fc_stats_cache_result_names[FC_STATS_CACHE_RESULTS] = {"hit", "miss", "stale",
                                                                         "bypass"};

const int fc_stats_proxy_codes[FC_STATS_PROXY_CODES] = {400, 405, 408, 413, 429,
                                                        431, 502, 503, 504, 505};

const double fc_stats_bucket_bounds[FC_STATS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

/* The bounds in nanoseconds, for the hot path. */
static const uint64_t bounds_ns[FC_STATS_BUCKETS] = {
    500000ull,     1000000ull,    2500000ull,    5000000ull,     10000000ull,
    25000000ull,   50000000ull,   100000000ull,  250000000ull,   500000000ull,
    1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull,
};

static const size_t slot_size[] = {
    [FC_STATS_LISTENER] = sizeof(struct fc_listener_stats),
    [FC_STATS_POOL] = sizeof(struct fc_pool_stats),
    [FC_STATS_BACKEND] = sizeof(struct fc_backend_stats),
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fc_stats *blocks;

struct fc_stats *fc_stats_acquire(enum fc_stats_kind kind, const char *key, uint32_t n_workers)
{
    pthread_mutex_lock(&lock);
    struct fc_stats *s = blocks;
    while (s != NULL && !(s->kind == kind && s->n_workers == n_workers && strcmp(s->key, key) == 0))
        s = s->next;
    if (s != NULL) {
        s->refs++;
        pthread_mutex_unlock(&lock);
        return s;
    }
    s = calloc(1, sizeof(*s));
    char *copy = strdup(key);
    void *slots = NULL;
    if (posix_memalign(&slots, 64, slot_size[kind] * n_workers) != 0)
        slots = NULL;
    if (s == NULL || copy == NULL || slots == NULL) {
        pthread_mutex_unlock(&lock);
        free(s);
        free(copy);
        free(slots);
        return NULL;
    }
    memset(slots, 0, slot_size[kind] * n_workers);
    s->kind = kind;
    s->n_workers = n_workers;
    s->refs = 1;
    s->key = copy;
    s->slots = slots;
    s->next = blocks;
    blocks = s;
    pthread_mutex_unlock(&lock);
    return s;
}

void fc_stats_release(struct fc_stats *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&lock);
    if (--s->refs > 0) {
        pthread_mutex_unlock(&lock);
        return;
    }
    struct fc_stats **p = &blocks;
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    pthread_mutex_unlock(&lock);
    free(s->slots);
    free(s->key);
    free(s);
}

int fc_stats_proxy_index(int status)
{
    for (int i = 0; i < FC_STATS_PROXY_CODES; i++)
        if (fc_stats_proxy_codes[i] == status)
            return i;
    return -1;
}

unsigned fc_stats_bucket(uint64_t ns)
{
    unsigned i = 0;
    while (i < FC_STATS_BUCKETS && ns > bounds_ns[i])
        i++;
    return i;
}

/* The slot structs hold nothing but uint64_t counters (and zeroed padding). */
static void sum_slots(const struct fc_stats *s, uint64_t *out, size_t size)
{
    memset(out, 0, size);
    for (uint32_t w = 0; w < s->n_workers; w++) {
        const uint64_t *slot = (const uint64_t *)((const char *)s->slots + (size_t)w * size);
        for (size_t i = 0; i < size / sizeof(uint64_t); i++)
            out[i] += __atomic_load_n(&slot[i], __ATOMIC_RELAXED);
    }
}

void fc_stats_sum_listener(const struct fc_stats *s, struct fc_listener_stats *out)
{
    sum_slots(s, (uint64_t *)out, sizeof(*out));
}

void fc_stats_sum_pool(const struct fc_stats *s, struct fc_pool_stats *out)
{
    sum_slots(s, (uint64_t *)out, sizeof(*out));
}

void fc_stats_sum_backend(const struct fc_stats *s, struct fc_backend_stats *out)
{
    sum_slots(s, (uint64_t *)out, sizeof(*out));
}

int fc_stats_sum_listener_at(const char *address, uint32_t n_workers, struct fc_listener_stats *out)
{
    struct fc_stats *s = fc_stats_acquire(FC_STATS_LISTENER, address, n_workers);
    if (s == NULL) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    fc_stats_sum_listener(s, out);
    fc_stats_release(s);
    return 0;
}
