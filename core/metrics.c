/*
 * The Prometheus exposition; see metrics.h.
 *
 * Every series of a family is written under one # HELP / # TYPE pair, the
 * families in a fixed order. Label values (addresses, pool names) are
 * escaped as the text format asks: backslash, double quote, newline.
 */
#include "metrics.h"

#include "discovery.h"
#include "generation.h"
#include "log_writer.h"
#include "stats.h"
#include "tls.h"
#include "tls_context.h"

#include <dirent.h>
#include <stddef.h>
#include <fulcrum/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A label value escaped for the text format, in buf (truncated to its size). */
static const char *esc(const char *v, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *v != '\0' && o + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') {
            buf[o++] = '\\';
            buf[o++] = *v;
        } else if (*v == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *v;
        }
    }
    buf[o] = '\0';
    return buf;
}

static void family(struct fc_text *t, const char *name, const char *type, const char *help)
{
    fc_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- the process ------------------------------------------------------- */

static void process_metrics(struct fc_text *t, double start_time)
{
    long page = sysconf(_SC_PAGESIZE), hz = sysconf(_SC_CLK_TCK);
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%llu %llu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    unsigned long long utime = 0, stime = 0;
    f = fopen("/proc/self/stat", "r");
    if (f != NULL) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* Fields after the command, which may hold spaces: from the last ')'. */
        const char *p = strrchr(buf, ')');
        if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                                &utime, &stime) != 2)
            utime = stime = 0;
    }
    unsigned fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            fds += e->d_name[0] != '.';
        closedir(d);
        fds = fds > 0 ? fds - 1 : 0; /* the directory's own descriptor */
    }
    family(t, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
    fc_text_printf(t, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / (double)hz);
    family(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    fc_text_printf(t, "process_resident_memory_bytes %llu\n", resident * (unsigned long long)page);
    family(t, "process_open_fds", "gauge", "Number of open file descriptors.");
    fc_text_printf(t, "process_open_fds %u\n", fds);
    family(t, "process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
    fc_text_printf(t, "process_start_time_seconds %.3f\n", start_time);
}

/* ---- what fulcrum counts ------------------------------------------------ */

struct sums {
    struct fc_listener_stats *listeners; /* [n_listeners] */
    struct fc_pool_stats *pools;         /* [n_pools] */
    struct fc_backend_stats **backends;  /* [n_pools][n_backends] */
};

static int sum_all(const struct fc_generation *g, struct sums *s)
{
    const struct fc_config *cfg = g->cfg;
    s->listeners = calloc(cfg->n_listeners + 1, sizeof(*s->listeners));
    s->pools = calloc(cfg->n_pools + 1, sizeof(*s->pools));
    s->backends = calloc(cfg->n_pools + 1, sizeof(*s->backends));
    if (s->listeners == NULL || s->pools == NULL || s->backends == NULL)
        return -1;
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        if (fc_stats_sum_listener_at(cfg->listeners[l].address, g->n_workers, &s->listeners[l]) !=
            0)
            return -1;
    for (uint32_t p = 0; p < cfg->n_pools; p++) {
        const struct fc_gen_pool *pool = &g->pools[p];
        fc_stats_sum_pool(pool->stats, &s->pools[p]);
        s->backends[p] = calloc(pool->n_backends + 1, sizeof(**s->backends));
        if (s->backends[p] == NULL)
            return -1;
        for (uint32_t b = 0; b < pool->n_backends; b++)
            fc_stats_sum_backend(pool->backend_stats[b], &s->backends[p][b]);
    }
    return 0;
}

static void sums_free(const struct fc_generation *g, struct sums *s)
{
    if (s->backends != NULL)
        for (uint32_t p = 0; p < g->cfg->n_pools; p++)
            free(s->backends[p]);
    free(s->backends);
    free(s->pools);
    free(s->listeners);
}

/* One counter of each listener: name{listener} value, the value at `offset` in its sums. */
static void listener_counter(struct fc_text *t, const struct fc_config *cfg, const struct sums *s,
                             const char *name, const char *help, size_t offset)
{
    char a[256];
    family(t, name, "counter", help);
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        fc_text_printf(
            t, "%s{listener=\"%s\"} %llu\n", name, esc(cfg->listeners[l].address, a, sizeof(a)),
            (unsigned long long)*(const uint64_t *)((const char *)&s->listeners[l] + offset));
}

static void listener_metrics(struct fc_text *t, const struct fc_config *cfg, const struct sums *s)
{
    char a[256];
    family(t, "fulcrum_listener_connections", "gauge", "Client connections open now.");
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        fc_text_printf(t, "fulcrum_listener_connections{listener=\"%s\"} %llu\n",
                       esc(cfg->listeners[l].address, a, sizeof(a)),
                       (unsigned long long)(s->listeners[l].accepted - s->listeners[l].closed));
    listener_counter(t, cfg, s, "fulcrum_listener_connections_total",
                     "Client connections accepted.", offsetof(struct fc_listener_stats, accepted));
    family(t, "fulcrum_requests_total", "counter", "Responses sent to clients, by status class.");
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        for (int c = 0; c < FC_STATS_CLASSES; c++)
            fc_text_printf(t, "fulcrum_requests_total{listener=\"%s\",code=\"%s\"} %llu\n",
                           esc(cfg->listeners[l].address, a, sizeof(a)), fc_stats_class_names[c],
                           (unsigned long long)s->listeners[l].responses[c]);
    family(t, "fulcrum_proxy_responses_total", "counter",
           "Responses the proxy made itself, by status code.");
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        for (int c = 0; c < FC_STATS_PROXY_CODES; c++)
            fc_text_printf(t, "fulcrum_proxy_responses_total{listener=\"%s\",code=\"%d\"} %llu\n",
                           esc(cfg->listeners[l].address, a, sizeof(a)), fc_stats_proxy_codes[c],
                           (unsigned long long)s->listeners[l].proxy_responses[c]);
    listener_counter(t, cfg, s, "fulcrum_bytes_received_total", "Bytes received from clients.",
                     offsetof(struct fc_listener_stats, bytes_in));
    listener_counter(t, cfg, s, "fulcrum_bytes_sent_total", "Bytes of responses sent to clients.",
                     offsetof(struct fc_listener_stats, bytes_out));
    listener_counter(t, cfg, s, "fulcrum_requests_abandoned_total",
                     "Requests whose client left while their response was awaited (logged 499).",
                     offsetof(struct fc_listener_stats, abandoned));
    family(t, "fulcrum_tunnels", "gauge", "WebSocket tunnels open now.");
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        fc_text_printf(
            t, "fulcrum_tunnels{listener=\"%s\"} %llu\n",
            esc(cfg->listeners[l].address, a, sizeof(a)),
            (unsigned long long)(s->listeners[l].tunnels_opened - s->listeners[l].tunnels_closed));
    /* TLS listeners only: a plain one has no handshake to fail. */
    int tls = 0;
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        tls |= cfg->listeners[l].tls != NULL;
    if (!tls)
        return;
    family(t, "fulcrum_tls_handshake_failures_total", "counter",
           "TLS handshakes that failed, and connections closed for a bad record, by reason.");
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        for (int r = 0; cfg->listeners[l].tls != NULL && r < FC_TLS_FAILURES; r++)
            fc_text_printf(t,
                           "fulcrum_tls_handshake_failures_total{listener=\"%s\",reason=\"%s\"} "
                           "%llu\n",
                           esc(cfg->listeners[l].address, a, sizeof(a)), fc_tls_failure_names[r],
                           (unsigned long long)s->listeners[l].tls_failures[r]);
    family(t, "fulcrum_tls_certificate_not_after_seconds", "gauge",
           "The end of each listener certificate's validity, as a Unix time.");
    for (uint32_t l = 0; l < cfg->n_listeners; l++) {
        const struct fc_tls_server *srv = cfg->listeners[l].tls;
        for (uint32_t i = 0; srv != NULL && i < fc_tls_server_count(srv); i++) {
            struct fc_tls_certificate_info ci;
            char f[1024], n[1024];
            fc_tls_server_certificate(srv, i, &ci);
            fc_text_printf(t,
                           "fulcrum_tls_certificate_not_after_seconds{listener=\"%s\",cert=\"%s\","
                           "names=\"%s\"} %lld\n",
                           esc(cfg->listeners[l].address, a, sizeof(a)), esc(ci.file, f, sizeof(f)),
                           esc(ci.names, n, sizeof(n)), (long long)ci.not_after);
        }
    }
}

/* Writes one backend series: name{pool,backend<extra>} value. */
#define FOR_EACH_BACKEND(g, p, b)                                                                  \
    for (uint32_t p = 0; p < (g)->cfg->n_pools; p++)                                               \
        for (uint32_t b = 0; b < (g)->pools[p].n_backends; b++)

static void backend_metrics(struct fc_text *t, const struct fc_generation *g, const struct sums *s)
{
    char pn[256], ba[256];
#define LABELS                                                                                     \
    esc(g->pools[p].view.name, pn, sizeof(pn)), esc(g->pools[p].views[b].address, ba, sizeof(ba))
    family(t, "fulcrum_backend_requests_total", "counter",
           "Responses received from each backend, by status class.");
    FOR_EACH_BACKEND(g, p, b)
    for (int c = 0; c < FC_STATS_CLASSES; c++)
        fc_text_printf(t,
                       "fulcrum_backend_requests_total{pool=\"%s\",backend=\"%s\",code=\"%s\"} "
                       "%llu\n",
                       LABELS, fc_stats_class_names[c],
                       (unsigned long long)s->backends[p][b].responses[c]);
    family(t, "fulcrum_backend_response_seconds", "histogram",
           "From the start of a request to the backend's response head.");
    FOR_EACH_BACKEND(g, p, b)
    {
        const struct fc_backend_stats *bs = &s->backends[p][b];
        uint64_t cumulative = 0;
        for (int i = 0; i < FC_STATS_BUCKETS; i++) {
            cumulative += bs->buckets[i];
            fc_text_printf(t,
                           "fulcrum_backend_response_seconds_bucket{pool=\"%s\",backend=\"%s\","
                           "le=\"%g\"} %llu\n",
                           LABELS, fc_stats_bucket_bounds[i], (unsigned long long)cumulative);
        }
        cumulative += bs->buckets[FC_STATS_BUCKETS];
        fc_text_printf(t,
                       "fulcrum_backend_response_seconds_bucket{pool=\"%s\",backend=\"%s\","
                       "le=\"+Inf\"} %llu\n",
                       LABELS, (unsigned long long)cumulative);
        fc_text_printf(t, "fulcrum_backend_response_seconds_sum{pool=\"%s\",backend=\"%s\"} %.9f\n",
                       LABELS, (double)bs->latency_ns / 1e9);
        fc_text_printf(t,
                       "fulcrum_backend_response_seconds_count{pool=\"%s\",backend=\"%s\"} %llu\n",
                       LABELS, (unsigned long long)cumulative);
    }
    family(t, "fulcrum_backend_up", "gauge",
           "1 when health checks and passive detection let the backend take traffic, else 0.");
    FOR_EACH_BACKEND(g, p, b)
    fc_text_printf(t, "fulcrum_backend_up{pool=\"%s\",backend=\"%s\"} %u\n", LABELS,
                   __atomic_load_n(&g->pools[p].shared[b]->state.up, __ATOMIC_RELAXED) ? 1u : 0u);
    family(t, "fulcrum_backend_admin_state", "gauge",
           "1 for the state the operator set (ready: in rotation; drain, maint: out), else 0.");
    FOR_EACH_BACKEND(g, p, b)
    for (int a = FC_BACKEND_READY; a <= FC_BACKEND_MAINT; a++)
        fc_text_printf(t,
                       "fulcrum_backend_admin_state{pool=\"%s\",backend=\"%s\",state=\"%s\"} %d\n",
                       LABELS, fc_backend_admin_name(a), g->pools[p].backends[b].admin == a);
    family(t, "fulcrum_backend_inflight", "gauge", "Requests in progress on the backend.");
    FOR_EACH_BACKEND(g, p, b)
    fc_text_printf(t, "fulcrum_backend_inflight{pool=\"%s\",backend=\"%s\"} %u\n", LABELS,
                   __atomic_load_n(&g->pools[p].shared[b]->state.inflight, __ATOMIC_RELAXED));
    family(t, "fulcrum_backend_connect_failures_total", "counter",
           "Connects to the backend that failed or timed out (local errors not counted).");
    FOR_EACH_BACKEND(g, p, b)
    fc_text_printf(t, "fulcrum_backend_connect_failures_total{pool=\"%s\",backend=\"%s\"} %llu\n",
                   LABELS, (unsigned long long)s->backends[p][b].connect_failures);
#undef LABELS
}

/* The response caches of the pools that have one: what they did, and what their stores hold. */
static void cache_metrics(struct fc_text *t, const struct fc_generation *g, const struct sums *s)
{
    char pn[256];
    family(t, "fulcrum_cache_requests_total", "counter",
           "Requests of a pool with a cache, by result: hit (answered from the cache), miss, "
           "stale (forwarded to revalidate or replace), bypass (not a request the cache answers).");
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        if (g->pools[p].cache == NULL)
            continue;
        esc(g->pools[p].view.name, pn, sizeof(pn));
        for (int r = 0; r < FC_STATS_CACHE_RESULTS; r++)
            fc_text_printf(t, "fulcrum_cache_requests_total{pool=\"%s\",result=\"%s\"} %llu\n", pn,
                           fc_stats_cache_result_names[r],
                           (unsigned long long)s->pools[p].cache[r]);
    }
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"fulcrum_cache_bytes", "Bytes the pool's cache store holds, keys, heads and bookkeeping "
                                "included."},
        {"fulcrum_cache_max_bytes", "The most bytes the pool's cache store holds (0: no limit)."},
        {"fulcrum_cache_entries", "Entries in the pool's cache store (variants count apart)."},
    };
    struct fc_cache_usage *u = calloc(g->cfg->n_pools ? g->cfg->n_pools : 1, sizeof(*u));
    if (u == NULL) {
        t->oom = 1;
        return;
    }
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        const struct fc_instance *c = g->pools[p].cache;
        if (c == NULL)
            continue;
        u[p].size = sizeof(u[p]);
        c->plugin->desc->cache->usage(c->state, &u[p]);
    }
    for (size_t k = 0; k < sizeof(gauges) / sizeof(gauges[0]); k++) {
        family(t, gauges[k].name, "gauge", gauges[k].help);
        for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
            if (g->pools[p].cache == NULL)
                continue;
            uint64_t v = k == 0 ? u[p].bytes : k == 1 ? u[p].max_bytes : u[p].entries;
            fc_text_printf(t, "%s{pool=\"%s\"} %llu\n", gauges[k].name,
                           esc(g->pools[p].view.name, pn, sizeof(pn)), (unsigned long long)v);
        }
    }
    free(u);
}

/*
 * Service discovery: the queries of each pool that has DNS entries, by
 * result, and every pool's backends (what DNS and the runtime API make of
 * the file's list).
 */
static void dns_metrics(struct fc_text *t, const struct fc_generation *g,
                        const struct fc_discovery *dns)
{
    char pn[256];
    family(t, "fulcrum_pool_backends", "gauge",
           "Backends in the pool now, in every state (the file's, the runtime's and DNS's).");
    for (uint32_t p = 0; p < g->cfg->n_pools; p++)
        fc_text_printf(t, "fulcrum_pool_backends{pool=\"%s\"} %u\n",
                       esc(g->pools[p].view.name, pn, sizeof(pn)), g->pools[p].n_backends);
    if (dns == NULL)
        return;
    family(t, "fulcrum_dns_queries_total", "counter",
           "DNS queries for the pool's resolve = true and srv: entries, by result.");
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        if (g->cfg->pools[p].n_discover == 0)
            continue;
        uint64_t counts[FC_DNS_RESULTS];
        fc_discovery_counts(dns, g->cfg->pools[p].name, counts);
        for (int r = 0; r < FC_DNS_RESULTS; r++)
            fc_text_printf(t, "fulcrum_dns_queries_total{pool=\"%s\",result=\"%s\"} %llu\n",
                           esc(g->pools[p].view.name, pn, sizeof(pn)), fc_dns_result_names[r],
                           (unsigned long long)counts[r]);
    }
}

static void pool_metrics(struct fc_text *t, const struct fc_generation *g, const struct sums *s)
{
    char pn[256];
    static const struct {
        const char *name, *help;
        size_t offset;
    } counters[] = {
        {"fulcrum_pool_retries_total",
         "Requests sent to another backend after a failure (retry_on).",
         offsetof(struct fc_pool_stats, retries)},
        {"fulcrum_pool_no_backend_total", "Requests for which no backend was available (503).",
         offsetof(struct fc_pool_stats, no_backend)},
        {"fulcrum_ratelimit_denied_total", "Requests refused by the pool's rate limiter (429).",
         offsetof(struct fc_pool_stats, ratelimit_denied)},
    };
    for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
        family(t, counters[c].name, "counter", counters[c].help);
        for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
            const uint64_t *v = (const uint64_t *)((const char *)&s->pools[p] + counters[c].offset);
            fc_text_printf(t, "%s{pool=\"%s\"} %llu\n", counters[c].name,
                           esc(g->pools[p].view.name, pn, sizeof(pn)), (unsigned long long)*v);
        }
    }
    cache_metrics(t, g, s);
}

double fc_metrics_quantile_ms(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (int i = 0; i <= FC_STATS_BUCKETS; i++)
        total += buckets[i];
    if (total == 0)
        return 0;
    double rank = q * (double)total, seen = 0, lower = 0;
    for (int i = 0; i < FC_STATS_BUCKETS; i++) {
        double upper = fc_stats_bucket_bounds[i];
        if (seen + (double)buckets[i] >= rank && buckets[i] > 0)
            return 1000 * (lower + (upper - lower) * (rank - seen) / (double)buckets[i]);
        seen += (double)buckets[i];
        lower = upper;
    }
    return 1000 * fc_stats_bucket_bounds[FC_STATS_BUCKETS - 1]; /* in +Inf: past the last bound */
}

void fc_metrics_render(const struct fc_generation *g, const struct fc_metrics_info *info,
                       struct fc_text *out)
{
    family(out, "fulcrum_build_info", "gauge", "Version and plugin ABI of this fulcrum.");
    fc_text_printf(out, "fulcrum_build_info{version=\"%s\",abi=\"%d.%d\"} 1\n", FC_VERSION,
                   FC_ABI_MAJOR, FC_ABI_MINOR);
    family(out, "fulcrum_generation", "gauge", "The configuration generation in force.");
    fc_text_printf(out, "fulcrum_generation %llu\n", (unsigned long long)g->id);
    family(out, "fulcrum_reloads_total", "counter", "Reloads, by outcome.");
    fc_text_printf(out, "fulcrum_reloads_total{result=\"done\"} %llu\n",
                   (unsigned long long)info->reloads_done);
    fc_text_printf(out, "fulcrum_reloads_total{result=\"failed\"} %llu\n",
                   (unsigned long long)info->reloads_failed);
    family(out, "fulcrum_last_reload_success_timestamp_seconds", "gauge",
           "When the configuration in force was loaded (the start counts).");
    fc_text_printf(out, "fulcrum_last_reload_success_timestamp_seconds %llu\n",
                   (unsigned long long)info->last_reload_success_unix);

    struct sums s = {0};
    if (sum_all(g, &s) != 0) {
        out->oom = 1;
    } else {
        listener_metrics(out, g->cfg, &s);
        backend_metrics(out, g, &s);
        pool_metrics(out, g, &s);
        dns_metrics(out, g, info->dns);
    }
    sums_free(g, &s);
    family(out, "fulcrum_log_dropped_lines_total", "counter",
           "Log lines dropped because the log's output did not take them in time.");
    fc_text_printf(out, "fulcrum_log_dropped_lines_total{log=\"error\"} %llu\n",
                   (unsigned long long)fc_log_writer_dropped(FC_LOG_ERRORS));
    fc_text_printf(out, "fulcrum_log_dropped_lines_total{log=\"access\"} %llu\n",
                   (unsigned long long)fc_log_writer_dropped(FC_LOG_ACCESS));
    process_metrics(out, info->start_time_unix);
}
