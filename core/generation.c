#include "generation.h"

#include "config_reader.h"
#include "discovery.h"
#include "log.h"
#include "stats.h"
#include "tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void (*reaper_fn)(void *arg, struct fc_generation *g);
static fc_ratelimit_done_fn ratelimit_done_fn;
static fc_probe_done_fn probe_done_fn;
static void *reaper_arg;
static uint64_t next_id = 1;

void fc_generation_set_reaper(void (*fn)(void *arg, struct fc_generation *g), void *arg)
{
    reaper_fn = fn;
    reaper_arg = arg;
}

void fc_generation_set_ratelimit_done(fc_ratelimit_done_fn fn)
{
    ratelimit_done_fn = fn;
}

void fc_generation_set_probe_done(fc_probe_done_fn fn)
{
    probe_done_fn = fn;
}

void fc_generation_acquire(struct fc_generation *g)
{
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
}

void fc_generation_release(struct fc_generation *g)
{
    /* Release ordering publishes this thread's last use before the destroyer runs. */
    if (__atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (reaper_fn != NULL)
        reaper_fn(reaper_arg, g);
    else
        fc_generation_destroy(g);
}

static char *backend_key(const char *pool, const char *address)
{
    size_t a = strlen(pool), b = strlen(address);
    char *k = malloc(a + b + 2);
    if (k == NULL)
        return NULL;
    memcpy(k, pool, a);
    k[a] = '\n';
    memcpy(k + a + 1, address, b + 1);
    return k;
}

static struct fc_backend_shared *find_shared(const struct fc_generation *g, const char *key)
{
    if (g == NULL)
        return NULL;
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        const struct fc_gen_pool *pool = &g->pools[p];
        for (uint32_t b = 0; b < pool->n_backends; b++)
            if (pool->shared[b] && strcmp(pool->shared[b]->key, key) == 0)
                return pool->shared[b];
    }
    return NULL;
}

struct fc_gen_pool *fc_generation_pool(const struct fc_generation *g, const char *name)
{
    for (uint32_t p = 0; p < g->cfg->n_pools; p++)
        if (strcmp(g->pools[p].conf->name, name) == 0)
            return &g->pools[p];
    return NULL;
}

int fc_gen_pool_find(const struct fc_gen_pool *p, const char *address)
{
    for (uint32_t b = 0; b < p->n_backends; b++)
        if (strcmp(p->backends[b].address, address) == 0)
            return (int)b;
    struct sockaddr_storage addr;
    socklen_t len;
    if (fc_config_parse_ip_address(address, &addr, &len, NULL) != 0)
        return -1;
    for (uint32_t b = 0; b < p->n_backends; b++)
        if (fc_cfg_same_address(&p->backends[b].addr, &addr))
            return (int)b;
    return -1;
}

/*
 * Each flag is written once, to its final value: a backend that stays in
 * rotation must never look retiring, not even for an instant, or a request
 * picking then would pass over it (and over the only backend of a pool).
 */
void fc_generation_mark_retiring(const struct fc_generation *g,
                                 const struct fc_generation *previous)
{
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        const struct fc_gen_pool *pool = &g->pools[p];
        for (uint32_t b = 0; b < pool->n_backends; b++)
            __atomic_store_n(&pool->shared[b]->retiring, b >= pool->view.n_backends,
                             __ATOMIC_RELEASE);
    }
    if (previous == NULL)
        return;
    for (uint32_t p = 0; p < previous->cfg->n_pools; p++)
        for (uint32_t b = 0; b < previous->pools[p].n_backends; b++) {
            struct fc_backend_shared *s = previous->pools[p].shared[b];
            if (find_shared(g, s->key) != s) /* gone from g */
                __atomic_store_n(&s->retiring, 1, __ATOMIC_RELEASE);
        }
}

static struct fc_backend_shared *shared_new(char *key, uint32_t n_workers)
{
    struct fc_backend_shared *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->idle = aligned_alloc(64, sizeof(*s->idle) * n_workers);
    if (s->idle == NULL) {
        free(s);
        return NULL;
    }
    memset(s->idle, 0, sizeof(*s->idle) * n_workers);
    s->key = key;
    s->n_workers = n_workers;
    s->state.up = 1;
    s->active.up = 1;
    s->seen_up = 1;
    s->refs = 1;
    return s;
}

void fc_backend_shared_acquire(struct fc_backend_shared *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void fc_backend_shared_release(struct fc_backend_shared *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* Idle connections were closed by their workers before the last generation went. */
    for (uint32_t w = 0; w < s->n_workers; w++)
        fc_tls_session_free(s->idle[w].tls_session);
    free(s->idle);
    free(s->key);
    free(s);
}

/* FNV-1a over a NUL-terminated string, continuing from h. */
static uint64_t hash_str(uint64_t h, const char *s)
{
    for (const char *c = s ? s : ""; *c; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001b3u;
    return h;
}

/* Hashes a setting and everything under it: names, types and values. */
static uint64_t hash_setting(uint64_t h, const config_setting_t *s)
{
    h = hash_str(h, config_setting_name(s));
    int type = config_setting_type(s);
    h = (h ^ (uint64_t)type) * 0x100000001b3u;
    char buf[64];
    const char *text = buf;
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(buf, sizeof(buf), "%lld", (long long)config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, sizeof(buf), "%.17g", config_setting_get_float(s));
        break;
    case CONFIG_TYPE_BOOL:
        snprintf(buf, sizeof(buf), "%d", config_setting_get_bool(s));
        break;
    case CONFIG_TYPE_STRING:
        text = config_setting_get_string(s);
        break;
    default: /* group, list, array */
        buf[0] = '\0';
        for (int i = 0; i < config_setting_length(s); i++)
            h = hash_setting(h, config_setting_get_elem(s, (unsigned)i));
        break;
    }
    h = hash_str(h, text);
    return (h ^ 0xff) * 0x100000001b3u;
}

/* The previous generation's limiter for this pool, if it can be handed on as it is. */
static struct fc_ratelimit_shared *find_ratelimit(const struct fc_generation *previous,
                                                  const char *pool, uint64_t settings)
{
    if (previous == NULL)
        return NULL;
    for (uint32_t p = 0; p < previous->cfg->n_pools; p++) {
        struct fc_ratelimit_shared *rl = previous->pools[p].rl;
        if (rl != NULL && rl->settings == settings &&
            strcmp(previous->cfg->pools[p].name, pool) == 0)
            return rl;
    }
    return NULL;
}

static void ratelimit_release(struct fc_ratelimit_shared *rl)
{
    if (--rl->refs > 0)
        return;
    fc_instance_destroy(&rl->inst);
    fc_plugin_release(rl->plugin);
    free(rl->started);
    free(rl);
}

/* Loads a plugin file once per generation; instances of several pools share it. */
static struct fc_plugin *plugin_get(struct fc_generation *g, const struct fc_conf_plugin *conf,
                                    enum fc_plugin_kind kind, const char *where)
{
    for (uint32_t i = 0; i < g->n_plugins; i++)
        if (strcmp(g->plugins[i]->path, conf->path) == 0) {
            if (g->plugins[i]->desc->kind != (uint32_t)kind) {
                fc_log_error("%s:%d: %s: %s: is a %s plugin, expected a %s plugin", g->cfg->path,
                             conf->line, where, conf->path,
                             fc_plugin_kind_name((int)g->plugins[i]->desc->kind),
                             fc_plugin_kind_name(kind));
                return NULL;
            }
            return g->plugins[i];
        }
    struct fc_plugin **grown = realloc(g->plugins, sizeof(*grown) * (g->n_plugins + 1));
    if (grown == NULL)
        return NULL;
    g->plugins = grown;
    char err[512];
    struct fc_plugin *p;
    if (fc_plugin_load(conf->path, kind, &p, err, sizeof(err)) != 0) {
        fc_log_error("%s:%d: %s: plugin \"%s\": %s", g->cfg->path, conf->line, where, conf->name,
                     err);
        return NULL;
    }
    g->plugins[g->n_plugins++] = p; /* the generation holds the reference of the load */
    return p;
}

/* A pool's plugin group (`strategy`, `health`, `rate_limit`), ready for its instances. */
struct pool_plugin {
    struct fc_plugin *plugin;       /* loaded once per generation (plugin_get()) */
    struct fc_instance_hooks hooks; /* what every instance of the group shares */
    char label[192];                /* "pool web: strategy round_robin" */
};

/*
 * Loads the plugin of `pool`'s group `what` and prepares what its instances
 * share; the caller adds the owner and the kind's callbacks to out->hooks.
 */
static int pool_plugin(struct fc_generation *g, struct fc_gen_pool *pool, const char *what,
                       const struct fc_conf_plugin *conf, enum fc_plugin_kind kind, void *main_loop,
                       struct pool_plugin *out)
{
    const char *name = pool->conf->name;
    char where[160];
    snprintf(where, sizeof(where), "pool \"%s\": %s", name, what);
    out->plugin = plugin_get(g, conf, kind, where);
    if (out->plugin == NULL)
        return FC_EINVAL;
    out->hooks = (struct fc_instance_hooks){
        .owner = pool,
        .pool_name = name,
        .main_loop = main_loop,
        .worker_count = g->n_workers,
    };
    snprintf(out->label, sizeof(out->label), "pool %s: %s %s", name, what, out->plugin->desc->name);
    return 0;
}

/*
 * The pool's rate limiter: the previous generation's when plugin code and
 * settings are unchanged (its state carries over), else a new instance.
 */
static int build_ratelimit(struct fc_generation *g, const struct fc_generation *previous,
                           struct fc_gen_pool *pool, void *main_loop)
{
    static const char *const core_keys[] = {"key", NULL};
    const struct fc_conf_pool *conf = pool->conf;
    struct pool_plugin pp;
    int rc =
        pool_plugin(g, pool, "rate_limit", &conf->rate_limit, FC_PLUGIN_RATELIMIT, main_loop, &pp);
    if (rc != 0)
        return rc;
    struct fc_plugin *plugin = pp.plugin;
    /* The group holds the core's `key` too: the hash covers everything that configures it. */
    uint64_t settings = hash_setting(plugin->digest, conf->rate_limit.group);

    struct fc_ratelimit_shared *rl = find_ratelimit(previous, conf->name, settings);
    if (rl != NULL) {
        rl->refs++;
        pool->rl = rl;
        pool->ratelimit = &rl->inst;
        return 0;
    }
    rl = calloc(1, sizeof(*rl));
    if (rl == NULL || (rl->started = calloc(g->n_workers, sizeof(*rl->started))) == NULL) {
        free(rl);
        return FC_ENOMEM;
    }
    pp.hooks.owner = &rl->inst;
    pp.hooks.ratelimit_done = ratelimit_done_fn;
    rc = fc_instance_create(&rl->inst, plugin, &conf->rate_limit, g->cfg->path, core_keys, NULL,
                            &pp.hooks, pp.label);
    if (rc != 0) {
        free(rl->started);
        free(rl);
        return rc;
    }
    fc_plugin_acquire(plugin);
    rl->plugin = plugin;
    rl->refs = 1;
    rl->settings = settings;
    pool->rl = rl;
    pool->ratelimit = &rl->inst;
    return 0;
}

/* The previous generation's cache store for this pool, if it can be handed on as it is. */
static struct fc_cache_shared *find_cache(const struct fc_generation *previous, const char *pool,
                                          uint64_t settings)
{
    if (previous == NULL)
        return NULL;
    for (uint32_t p = 0; p < previous->cfg->n_pools; p++) {
        struct fc_cache_shared *cs = previous->pools[p].cs;
        if (cs != NULL && cs->settings == settings &&
            strcmp(previous->cfg->pools[p].name, pool) == 0)
            return cs;
    }
    return NULL;
}

static void cache_release(struct fc_cache_shared *cs)
{
    if (--cs->refs > 0)
        return;
    fc_instance_destroy(&cs->inst);
    fc_plugin_release(cs->plugin);
    free(cs);
}

/*
 * The pool's response cache store: the previous generation's when plugin
 * code and settings are unchanged (what it holds carries over), else a new,
 * empty one.
 */
static int build_cache(struct fc_generation *g, const struct fc_generation *previous,
                       struct fc_gen_pool *pool, void *main_loop)
{
    static const char *const core_keys[] = {NULL};
    const struct fc_conf_pool *conf = pool->conf;
    struct pool_plugin pp;
    int rc = pool_plugin(g, pool, "cache", &conf->cache, FC_PLUGIN_CACHE, main_loop, &pp);
    if (rc != 0)
        return rc;
    uint64_t settings = hash_setting(pp.plugin->digest, conf->cache.group);
    struct fc_cache_shared *cs = find_cache(previous, conf->name, settings);
    if (cs == NULL) {
        cs = calloc(1, sizeof(*cs));
        if (cs == NULL)
            return FC_ENOMEM;
        pp.hooks.owner = &cs->inst;
        rc = fc_instance_create(&cs->inst, pp.plugin, &conf->cache, g->cfg->path, core_keys, NULL,
                                &pp.hooks, pp.label);
        if (rc != 0) {
            free(cs);
            return rc;
        }
        fc_plugin_acquire(pp.plugin);
        cs->plugin = pp.plugin;
        cs->settings = settings;
    }
    cs->refs++;
    pool->cs = cs;
    pool->cache = &cs->inst;
    return 0;
}

/*
 * The pool's health checker instance. It validates its keys here, so a bad
 * `health` group fails the build; health.c runs it once the generation is
 * started (fc_health_start()).
 */
static int build_health(struct fc_generation *g, struct fc_gen_pool *pool, void *main_loop)
{
    static const char *const core_keys[] = {"interval_ms", "timeout_ms", "rise",
                                            "fall",        "initial",    NULL};
    const struct fc_conf_pool *conf = pool->conf;
    struct pool_plugin pp;
    int rc = pool_plugin(g, pool, "health", &conf->health, FC_PLUGIN_HEALTH, main_loop, &pp);
    if (rc != 0)
        return rc;
    pp.hooks.probe_done = probe_done_fn;
    pp.hooks.tls = conf->tls; /* probes speak TLS to a pool that does */
    rc = fc_instance_create(&pool->health_inst, pp.plugin, &conf->health, g->cfg->path, core_keys,
                            &pool->all, &pp.hooks, pp.label);
    if (rc != 0)
        return rc;
    pool->health = &pool->health_inst;
    return 0;
}

/* Appends one backend to the pool's list (built by pool_backends()). */
static int backend_add(struct fc_gen_pool *pool, const char *address,
                       const struct sockaddr_storage *addr, socklen_t addr_len, uint32_t weight,
                       uint32_t given_weight, int admin, int source)
{
    struct fc_gen_backend *b = &pool->backends[pool->n_backends];
    if ((b->address = strdup(address)) == NULL)
        return FC_ENOMEM;
    b->addr = *addr;
    b->addr_len = addr_len;
    b->weight = weight;
    b->given_weight = given_weight;
    b->admin = (uint8_t)admin;
    b->source = (uint8_t)source;
    pool->n_backends++;
    return 0;
}

/* Whether the pool's list has that address already (a DNS answer may repeat one). */
static int pool_has(const struct fc_gen_pool *pool, const struct sockaddr_storage *addr)
{
    for (uint32_t b = 0; b < pool->n_backends; b++)
        if (fc_cfg_same_address(&pool->backends[b].addr, addr))
            return 1;
    return 0;
}

/*
 * Whether the file names that address as a backend of its own, or the
 * runtime API added it: DNS giving it too does not make a second one, and
 * the file's (or the runtime's) stays what it is.
 */
static int named_elsewhere(const struct fc_conf_pool *conf, const struct fc_overlay *o,
                           const struct sockaddr_storage *addr)
{
    if (fc_overlay_file_backend(conf, addr) != NULL)
        return 1;
    for (uint32_t i = 0; o != NULL && i < o->n; i++)
        if (o->entries[i].runtime && strcmp(o->entries[i].pool, conf->name) == 0 &&
            fc_cfg_same_address(&o->entries[i].addr, addr))
            return 1;
    return 0;
}

/*
 * The addresses DNS gave entry cb, in its place: each as "IP:port", with
 * cb's weight for A/AAAA, the record's for SRV, or the state and weight the
 * runtime API gave that address.
 */
static int pool_discovered(struct fc_gen_pool *pool, const struct fc_overlay *o,
                           const struct fc_conf_backend *cb, const struct fc_discovered *set,
                           uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (pool_has(pool, &set[i].addr) || named_elsewhere(pool->conf, o, &set[i].addr))
            continue;
        char address[INET6_ADDRSTRLEN + 8];
        fc_config_format_address(&set[i].addr, address, sizeof(address));
        uint32_t given = cb->discover == FC_DISCOVER_HOST ? cb->weight : set[i].weight;
        const struct fc_overlay_entry *e =
            o ? fc_overlay_find(o, pool->conf->name, &set[i].addr) : NULL;
        if (e != NULL && !e->dns)
            e = NULL;
        if (backend_add(pool, address, &set[i].addr, set[i].len,
                        e != NULL && e->weight != 0 ? e->weight : given, given,
                        e != NULL ? e->admin : FC_BACKEND_READY, FC_SOURCE_DNS) != 0)
            return FC_ENOMEM;
    }
    return 0;
}

/*
 * The pool's backends as the file, DNS and the overlay make them: the
 * file's (less those removed, with the weight and state the overlay gives
 * them; a DNS entry's addresses in its place), then the overlay's own;
 * then those in rotation moved to the front, each part in that order. An
 * address already listed is not listed twice.
 */
static int pool_backends(struct fc_gen_pool *pool, const struct fc_overlay *o,
                         const struct fc_discovery *dns)
{
    const struct fc_conf_pool *conf = pool->conf;
    uint32_t cap = conf->n_backends;
    for (uint32_t i = 0; o != NULL && i < o->n; i++)
        cap += o->entries[i].runtime && strcmp(o->entries[i].pool, conf->name) == 0;
    for (uint32_t b = 0; b < conf->n_backends; b++) {
        uint32_t n = 0;
        if (conf->backends[b].discover != FC_DISCOVER_NONE)
            fc_discovery_find(dns, conf->name, &conf->backends[b], &n);
        cap += n;
    }
    pool->backends = calloc(cap ? cap : 1, sizeof(*pool->backends));
    if (pool->backends == NULL)
        return FC_ENOMEM;
    for (uint32_t b = 0; b < conf->n_backends; b++) {
        const struct fc_conf_backend *cb = &conf->backends[b];
        if (cb->discover != FC_DISCOVER_NONE) {
            uint32_t n;
            const struct fc_discovered *set = fc_discovery_find(dns, conf->name, cb, &n);
            if (pool_discovered(pool, o, cb, set, n) != 0)
                return FC_ENOMEM;
            continue;
        }
        const struct fc_overlay_entry *e = o ? fc_overlay_find(o, conf->name, &cb->addr) : NULL;
        if (e != NULL && e->removed)
            continue;
        uint32_t weight = e != NULL && e->weight != 0 ? e->weight : cb->weight;
        int admin = e != NULL ? e->admin : FC_BACKEND_READY;
        if (backend_add(pool, cb->address, &cb->addr, cb->addr_len, weight, cb->weight, admin,
                        FC_SOURCE_CONFIG) != 0)
            return FC_ENOMEM;
    }
    for (uint32_t i = 0; o != NULL && i < o->n; i++) {
        const struct fc_overlay_entry *e = &o->entries[i];
        if (e->runtime && strcmp(e->pool, conf->name) == 0 && !pool_has(pool, &e->addr) &&
            backend_add(pool, e->address, &e->addr, e->addr_len, e->weight, e->weight, e->admin,
                        FC_SOURCE_RUNTIME) != 0)
            return FC_ENOMEM;
    }
    /*
     * A stable partition: those in rotation to the front. `order` remembers
     * where each went, so that the status shows them as the file has them.
     */
    pool->order = calloc(cap ? cap : 1, sizeof(*pool->order));
    struct fc_gen_backend *sorted = calloc(cap ? cap : 1, sizeof(*sorted));
    if (pool->order == NULL || sorted == NULL) {
        free(sorted);
        return FC_ENOMEM;
    }
    uint32_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t b = 0; b < pool->n_backends; b++)
            if ((pool->backends[b].admin == FC_BACKEND_READY) == (pass == 0)) {
                pool->order[b] = k;
                sorted[k++] = pool->backends[b];
                if (pass == 0)
                    pool->view.n_backends = k;
            }
    free(pool->backends);
    pool->backends = sorted;
    return 0;
}

static int build_pool(struct fc_generation *g, const struct fc_overlay *overlay,
                      const struct fc_discovery *dns, const struct fc_generation *previous,
                      uint32_t index, void *main_loop)
{
    const struct fc_conf_pool *conf = &g->cfg->pools[index];
    struct fc_gen_pool *pool = &g->pools[index];
    pool->conf = conf;
    if (pool_backends(pool, overlay, dns) != 0)
        return FC_ENOMEM;
    uint32_t n = pool->n_backends ? pool->n_backends : 1;
    pool->views = calloc(n, sizeof(*pool->views));
    pool->shared = calloc(n, sizeof(*pool->shared));
    pool->strategy = calloc(g->n_workers, sizeof(*pool->strategy));
    pool->backend_stats = calloc(n, sizeof(*pool->backend_stats));
    pool->stats = fc_stats_acquire(FC_STATS_POOL, conf->name, g->n_workers);
    if (pool->views == NULL || pool->shared == NULL || pool->strategy == NULL ||
        pool->backend_stats == NULL || pool->stats == NULL)
        return FC_ENOMEM;
    pool->view.name = conf->name;
    pool->view.backends = pool->views;
    pool->all = (struct fc_pool_view){
        .name = conf->name, .n_backends = pool->n_backends, .backends = pool->views};

    for (uint32_t b = 0; b < pool->n_backends; b++) {
        const struct fc_gen_backend *cb = &pool->backends[b];
        char *key = backend_key(conf->name, cb->address);
        if (key == NULL)
            return FC_ENOMEM;
        /* Counters by the same name: a backend kept by a reload keeps counting. */
        if ((pool->backend_stats[b] = fc_stats_acquire(FC_STATS_BACKEND, key, g->n_workers)) ==
            NULL) {
            free(key);
            return FC_ENOMEM;
        }
        struct fc_backend_shared *s = find_shared(previous, key);
        if (s != NULL) {
            fc_backend_shared_acquire(s);
            free(key);
        } else if ((s = shared_new(key, g->n_workers)) == NULL) {
            free(key);
            return FC_ENOMEM;
        } else if (conf->health.name != NULL && !conf->health_conf.initial_up) {
            s->active.up = 0; /* `initial = "down"`: in service once `rise` probes pass */
            s->state.up = 0;
            s->seen_up = 0;
            snprintf(s->why, sizeof(s->why), "initial = \"down\": waiting for health checks");
        }
        pool->shared[b] = s;
        struct fc_backend_view *v = &pool->views[b];
        v->index = b;
        v->weight = cb->weight;
        v->address = cb->address;
        v->sockaddr = (const struct sockaddr *)&cb->addr;
        v->sockaddr_len = cb->addr_len;
        v->state = &s->state;
    }

    if (conf->rate_limit.name != NULL) {
        int rc = build_ratelimit(g, previous, pool, main_loop);
        if (rc != 0)
            return rc;
    }
    if (conf->cache.name != NULL) {
        int rc = build_cache(g, previous, pool, main_loop);
        if (rc != 0)
            return rc;
    }
    if (conf->health.name != NULL) {
        int rc = build_health(g, pool, main_loop);
        if (rc != 0)
            return rc;
    }

    struct pool_plugin pp;
    int rc = pool_plugin(g, pool, "strategy", &conf->strategy, FC_PLUGIN_STRATEGY, main_loop, &pp);
    if (rc != 0)
        return rc;
    for (uint32_t w = 0; w < g->n_workers; w++) {
        rc = fc_instance_create(&pool->strategy[w], pp.plugin, &conf->strategy, g->cfg->path, NULL,
                                &pool->view, &pp.hooks, pp.label);
        if (rc != 0) {
            /* The ones already created are destroyed with the generation. */
            pool->strategy[w].plugin = NULL;
            return rc;
        }
    }
    return 0;
}

/* A runtime change keeps the file's config: its plugins stay loaded as they are. */
static int reuse_plugins(struct fc_generation *g, const struct fc_generation *previous)
{
    if (previous == NULL || previous->cfg != g->cfg || previous->n_plugins == 0)
        return 0;
    g->plugins = malloc(sizeof(*g->plugins) * previous->n_plugins);
    if (g->plugins == NULL)
        return FC_ENOMEM;
    for (uint32_t i = 0; i < previous->n_plugins; i++) {
        fc_plugin_acquire(previous->plugins[i]);
        g->plugins[g->n_plugins++] = previous->plugins[i];
    }
    return 0;
}

int fc_generation_build(struct fc_config *cfg, const struct fc_overlay *overlay,
                        const struct fc_discovery *dns, const struct fc_generation *previous,
                        uint32_t n_workers, void *main_loop, struct fc_generation **out)
{
    struct fc_generation *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        fc_config_free(cfg);
        return FC_ENOMEM;
    }
    g->cfg = cfg;
    g->refs = 1;
    g->n_workers = n_workers;
    g->pools = calloc(cfg->n_pools, sizeof(*g->pools));
    g->workers = aligned_alloc(64, sizeof(*g->workers) * n_workers);
    if (g->pools == NULL || g->workers == NULL) {
        fc_generation_destroy(g);
        return FC_ENOMEM;
    }
    memset(g->workers, 0, sizeof(*g->workers) * n_workers);
    int rc = reuse_plugins(g, previous);
    for (uint32_t p = 0; rc != FC_ENOMEM && p < cfg->n_pools; p++) {
        int prc = build_pool(g, overlay, dns, previous, p, main_loop);
        if (prc == FC_ENOMEM) {
            rc = prc;
            break;
        }
        if (prc != 0)
            rc = prc; /* go on: report the errors of every pool at once */
    }
    if (rc != 0) {
        fc_generation_destroy(g);
        return rc;
    }
    g->id = next_id++;
    *out = g;
    return 0;
}

void fc_generation_destroy(struct fc_generation *g)
{
    if (g->pools != NULL) {
        for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
            struct fc_gen_pool *pool = &g->pools[p];
            fc_instance_destroy(pool->health); /* NULL: none; its probes ended before */
            if (pool->rl != NULL)
                ratelimit_release(pool->rl);
            if (pool->cs != NULL)
                cache_release(pool->cs);
            if (pool->strategy != NULL)
                for (uint32_t w = 0; w < g->n_workers; w++)
                    if (pool->strategy[w].plugin != NULL)
                        fc_instance_destroy(&pool->strategy[w]);
            if (pool->shared != NULL)
                for (uint32_t b = 0; b < pool->n_backends; b++)
                    if (pool->shared[b] != NULL)
                        fc_backend_shared_release(pool->shared[b]);
            if (pool->backend_stats != NULL)
                for (uint32_t b = 0; b < pool->n_backends; b++)
                    fc_stats_release(pool->backend_stats[b]);
            if (pool->backends != NULL)
                for (uint32_t b = 0; b < pool->n_backends; b++)
                    free(pool->backends[b].address);
            free(pool->backends);
            free(pool->order);
            fc_stats_release(pool->stats);
            free(pool->backend_stats);
            free(pool->strategy);
            free(pool->shared);
            free(pool->views);
        }
    }
    /* Code last: no instance of it is left. */
    for (uint32_t i = 0; i < g->n_plugins; i++)
        fc_plugin_release(g->plugins[i]);
    free(g->plugins);
    free(g->pools);
    free(g->workers);
    fc_config_free(g->cfg);
    free(g);
}

void fc_generation_worker_enter(struct fc_generation *g, uint32_t worker, void *loop)
{
    if (g->workers[worker].entered)
        return;
    g->workers[worker].entered = 1;
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        struct fc_ratelimit_shared *rl = g->pools[p].rl;
        /* An instance handed on from an older generation is started once per worker. */
        if (rl == NULL || rl->started[worker]++ > 0)
            continue;
        const struct fc_ratelimit_ops *ops = rl->inst.plugin->desc->ratelimit;
        if (ops->worker_start == NULL)
            continue;
        int rc = ops->worker_start(rl->inst.state, worker, loop);
        if (rc != 0)
            fc_log_error("%s: worker_start() failed on worker %u (%d)", rl->inst.label, worker, rc);
    }
}

void fc_generation_worker_leave(struct fc_generation *g, uint32_t worker, void *loop)
{
    if (!g->workers[worker].entered)
        return;
    g->workers[worker].entered = 0;
    for (uint32_t p = 0; p < g->cfg->n_pools; p++) {
        struct fc_ratelimit_shared *rl = g->pools[p].rl;
        if (rl == NULL || --rl->started[worker] > 0)
            continue;
        const struct fc_ratelimit_ops *ops = rl->inst.plugin->desc->ratelimit;
        if (ops->worker_stop != NULL)
            ops->worker_stop(rl->inst.state, worker, loop);
    }
}
