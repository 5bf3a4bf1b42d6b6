/*
 * The status document; see status.h. Built with jansson, so that every
 * string (addresses, pool names, errors) is escaped as JSON wants.
 */
#include "status.h"

#include "generation.h"
#include "plugin_loader.h"
#include "stats.h"
#include "tls_context.h"

#include <fulcrum/plugin.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static json_t *plugin_json(const struct fc_instance *inst)
{
    if (inst == NULL || inst->plugin == NULL)
        return json_null();
    return json_pack("{s:s, s:s}", "plugin", inst->plugin->desc->name, "version",
                     inst->plugin->desc->version ? inst->plugin->desc->version : "");
}

/* A pool's response cache: its store plugin, what it did with requests, what it holds. */
static json_t *cache_json(const struct fc_gen_pool *pool)
{
    const struct fc_instance *c = pool->cache;
    if (c == NULL)
        return json_null();
    struct fc_pool_stats ps;
    fc_stats_sum_pool(pool->stats, &ps);
    struct fc_cache_usage u = {.size = sizeof(u)};
    c->plugin->desc->cache->usage(c->state, &u);
    json_t *j = plugin_json(c);
    json_t *requests = json_object();
    for (int r = 0; r < FC_STATS_CACHE_RESULTS; r++)
        json_object_set_new(requests, fc_stats_cache_result_names[r],
                            json_integer((json_int_t)ps.cache[r]));
    json_object_set_new(j, "requests", requests);
    json_object_set_new(j, "bytes", json_integer((json_int_t)u.bytes));
    json_object_set_new(j, "max_bytes", json_integer((json_int_t)u.max_bytes));
    json_object_set_new(j, "entries", json_integer((json_int_t)u.entries));
    return j;
}

const char *fc_status_source_name(int source)
{
    return source == FC_SOURCE_RUNTIME ? "runtime" : source == FC_SOURCE_DNS ? "dns" : "config";
}

const char *fc_status_state_name(const struct fc_gen_pool *pool, uint32_t i)
{
    if (pool->backends[i].admin != FC_BACKEND_READY)
        return fc_backend_admin_name(pool->backends[i].admin);
    return __atomic_load_n(&pool->shared[i]->state.up, __ATOMIC_RELAXED) ? "up" : "down";
}

static json_t *backend_json(const struct fc_gen_pool *pool, uint32_t i)
{
    const struct fc_backend_shared *b = pool->shared[i];
    struct fc_backend_stats s;
    fc_stats_sum_backend(pool->backend_stats[i], &s);
    json_t *responses = json_object();
    uint64_t failures = s.connect_failures + s.responses[4];
    for (int c = 0; c < FC_STATS_CLASSES; c++)
        json_object_set_new(responses, fc_stats_class_names[c],
                            json_integer((json_int_t)s.responses[c]));
    json_t *health = json_pack("{s:b, s:s, s:I}", "ok", (int)b->seen_up, "reason", b->why, "since",
                               (json_int_t)b->since_unix);
    return json_pack(
        "{s:s, s:i, s:s, s:s, s:i, s:I, s:o, s:I, s:{s:f, s:f}, s:o}", "address",
        pool->views[i].address, "weight", (int)pool->views[i].weight, "state",
        fc_status_state_name(pool, i), "source", fc_status_source_name(pool->backends[i].source),
        "inflight", (int)__atomic_load_n(&b->state.inflight, __ATOMIC_RELAXED), "requests",
        (json_int_t)s.requests, "responses", responses, "failures", (json_int_t)failures,
        "latency_ms", "p50", fc_metrics_quantile_ms(s.buckets, 0.5), "p99",
        fc_metrics_quantile_ms(s.buckets, 0.99), "health", health);
}

/* A TLS listener's certificates: file, names and the end of validity; [] for a plain one. */
static json_t *certificates_json(const struct fc_tls_server *srv)
{
    json_t *list = json_array();
    for (uint32_t i = 0; srv != NULL && i < fc_tls_server_count(srv); i++) {
        struct fc_tls_certificate_info ci;
        fc_tls_server_certificate(srv, i, &ci);
        json_array_append_new(list, json_pack("{s:s, s:s, s:I}", "file", ci.file, "names", ci.names,
                                              "not_after", (json_int_t)ci.not_after));
    }
    return list;
}

static json_t *status_json(const struct fc_generation *g, const struct fc_metrics_info *info,
                           uint32_t workers)
{
    const struct fc_config *cfg = g->cfg;
    json_t *listeners = json_array();
    for (uint32_t l = 0; l < cfg->n_listeners; l++) {
        struct fc_listener_stats s;
        fc_stats_sum_listener_at(cfg->listeners[l].address, g->n_workers, &s);
        json_array_append_new(listeners,
                              json_pack("{s:s, s:s, s:I, s:I, s:b, s:o}", "address",
                                        cfg->listeners[l].address, "pool",
                                        cfg->pools[cfg->listeners[l].pool].name, "connections",
                                        (json_int_t)(s.accepted - s.closed), "tunnels",
                                        (json_int_t)(s.tunnels_opened - s.tunnels_closed), "tls",
                                        cfg->listeners[l].tls != NULL, "certificates",
                                        certificates_json(cfg->listeners[l].tls)));
    }
    json_t *pools = json_array();
    for (uint32_t p = 0; p < cfg->n_pools; p++) {
        const struct fc_gen_pool *pool = &g->pools[p];
        json_t *backends = json_array();
        for (uint32_t k = 0; k < pool->n_backends; k++)
            json_array_append_new(backends, backend_json(pool, pool->order[k]));
        json_array_append_new(
            pools, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "name", pool->view.name, "strategy",
                             plugin_json(&pool->strategy[0]), "health", plugin_json(pool->health),
                             "rate_limit", plugin_json(pool->ratelimit), "cache", cache_json(pool),
                             "backends", backends));
    }
    double now = (double)time(NULL);
    char abi[16];
    snprintf(abi, sizeof(abi), "%d.%d", FC_ABI_MAJOR, FC_ABI_MINOR);
    return json_pack(
        "{s:s, s:s, s:i, s:I, s:I, s:i, s:{s:I, s:I, s:s}, s:o, s:o}", "version", FC_VERSION, "abi",
        abi, "pid", (int)getpid(), "uptime_s", (json_int_t)(now - info->start_time_unix),
        "generation", (json_int_t)g->id, "workers", (int)workers, "reloads", "done",
        (json_int_t)info->reloads_done, "failed", (json_int_t)info->reloads_failed, "last_error",
        info->last_error ? info->last_error : "", "listeners", listeners, "pools", pools);
}

static void append_json(json_t *j, struct fc_text *out)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text == NULL)
        out->oom = 1;
    else
        fc_text_printf(out, "%s", text);
    free(text);
    json_decref(j);
}

void fc_status_render(const struct fc_generation *g, const struct fc_metrics_info *info,
                      uint32_t workers, struct fc_text *out)
{
    append_json(status_json(g, info, workers), out);
}

void fc_status_backend_event(const struct fc_generation *g, uint32_t p, uint32_t i,
                             struct fc_text *out)
{
    const struct fc_gen_pool *pool = &g->pools[p];
    const struct fc_backend_shared *b = pool->shared[i];
    append_json(json_pack("{s:s, s:s, s:s, s:I, s:s}", "pool", pool->view.name, "backend",
                          pool->views[i].address, "state", fc_status_state_name(pool, i), "since",
                          (json_int_t)b->since_unix, "reason", b->why),
                out);
}
