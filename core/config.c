/*
 * Loading and validating the configuration file (schema v1; every key is in
 * the README's configuration reference).
 *
 * The file is parsed with libconfig into cfg->lc, which the config keeps: the
 * keys of the `strategy`, `health` and `rate_limit` groups other than `plugin`
 * belong to the plugins, which read them from that tree while they are
 * created. Everything else is checked here, and copied into plain C fields.
 *
 * Validation does not stop at the first error: it walks the whole file,
 * reports every error it finds through fc_log(FC_LOG_ERROR), and only then
 * fails, so that a person fixes a file in one round.
 *
 * Error lines read "FILE:LINE: KEY: what is wrong". FILE is the path as given
 * to fc_config_load() (or, for a setting that came from an @include, that
 * file). LINE is the line of the offending setting; a missing key is reported
 * at the line of the group that should hold it. KEY is the setting's path
 * from the top of the file: group members joined with '.', list elements
 * written with their index, as in `timeouts.idle_ms` or
 * `listeners[1].address`. Inside a pool whose name is known (a non-empty
 * string that no earlier pool uses), `pools[N].` is replaced by
 * `pool "NAME": `, which is what a person searches the file for:
 * `pool "web": backends[1].address`, `pool "web": strategy.plugin`. A pool
 * without such a name keeps its index: `pools[2].backends[0].weight`.
 *
 * Out of memory: every allocation failure is remembered, the walk goes on
 * without the missing piece, and fc_config_load() returns FC_ENOMEM after
 * freeing everything. Nothing aborts.
 */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The most worker threads; `workers = 0` resolves to the CPU count capped here. */
#define MAX_WORKERS 256
#define MAX_TIMEOUT_MS 86400000
#define MAX_RETRIES 16
#define MAX_WEIGHT 1000

/* State of one load: the config being built and what went wrong so far. */
struct loader {
    struct fc_config *cfg;
    unsigned errors; /* errors reported */
    int nomem;       /* an allocation failed */
    /*
     * Pool names as written (owned by cfg->lc), or NULL for a pool that has
     * no usable name. Listeners and routes are resolved against these rather
     * than against the copies in cfg->pools, which may be missing after an
     * allocation failure.
     */
    const char **pool_names;
    /* Per pool: 1 when its name is usable in keys (set, non-empty, unique). */
    unsigned char *pool_named;
};

/* ------------------------------------------------------------------------ */
/* Reporting                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Logs one error as "FILE:LINE: PREFIXKEY: message". `s` is the setting the
 * line was taken from (for its file), or NULL for the main file.
 */
static void report(struct loader *ld, const config_setting_t *s, int line, const char *prefix,
                   const char *key, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void report(struct loader *ld, const config_setting_t *s, int line, const char *prefix,
                   const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    /*
     * libconfig records an included file by the name written in @include,
     * which it opened relative to the include dir (the config's folder).
     */
    const char *file = s != NULL ? config_setting_source_file(s) : NULL;
    const struct fc_config *cfg = ld->cfg;
    if (file == NULL || strcmp(file, cfg->path) == 0)
        fc_log(FC_LOG_ERROR, "%s:%d: %s%s: %s", cfg->path, line, prefix, key, msg);
    else if (file[0] == '/')
        fc_log(FC_LOG_ERROR, "%s:%d: %s%s: %s", file, line, prefix, key, msg);
    else
        fc_log(FC_LOG_ERROR, "%s/%s:%d: %s%s: %s", cfg->dir, file, line, prefix, key, msg);
    ld->errors++;
}

/* The line of a setting; the top-level group has none, so it counts as line 1. */
static int line_of(const config_setting_t *s)
{
    int line = (int)config_setting_source_line(s);
    return line > 0 ? line : 1;
}

/* ------------------------------------------------------------------------ */
/* Strings and paths                                                         */
/* ------------------------------------------------------------------------ */

static char *copy_string(struct loader *ld, const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        ld->nomem = 1;
    return p;
}

/* Returns a new string a + b + c, or NULL (and notes it) when out of memory. */
static char *concat3(struct loader *ld, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *p = malloc(la + lb + lc + 1);
    if (p == NULL) {
        ld->nomem = 1;
        return NULL;
    }
    memcpy(p, a, la);
    memcpy(p + la, b, lb);
    memcpy(p + la + lb, c, lc + 1);
    return p;
}

/* "dir/rel", without doubling the slash when dir is "/". */
static char *join_path(struct loader *ld, const char *dir, const char *rel)
{
    size_t n = strlen(dir);
    return concat3(ld, dir, (n > 0 && dir[n - 1] == '/') ? "" : "/", rel);
}

/* A path from the file: absolute as is, relative against the config's folder. */
static char *resolve_path(struct loader *ld, const char *value)
{
    if (value[0] == '/')
        return copy_string(ld, value);
    return join_path(ld, ld->cfg->dir, value);
}

/* "<plugin_dir>/<name>.so" for a plugin named without a '/'. */
static char *plugin_file(struct loader *ld, const char *plugin_dir, const char *name)
{
    size_t n = strlen(plugin_dir) + strlen(name) + sizeof("/.so");
    char *p = malloc(n);
    if (p == NULL) {
        ld->nomem = 1;
        return NULL;
    }
    snprintf(p, n, "%s/%s.so", plugin_dir, name);
    return p;
}

/* The folder of `path` as written: "." when it has no slash, "/" for "/x". */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* ------------------------------------------------------------------------ */
/* Typed access to settings                                                  */
/* ------------------------------------------------------------------------ */

/* Results of the getters below. */
enum {
    GOT = 0,     /* present and valid; the output is set */
    ABSENT = 1,  /* absent; the output is left alone */
    INVALID = 2, /* present but wrong; already reported */
};

/* Reports every member of `group` whose name is not in `allowed` (NULL-terminated). */
static void check_keys(struct loader *ld, const config_setting_t *group, const char *prefix,
                       const char *const *allowed)
{
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        int known = 0;
        for (const char *const *a = allowed; *a != NULL && !known; a++)
            known = strcmp(name, *a) == 0;
        if (!known)
            report(ld, s, line_of(s), prefix, name, "unknown key");
    }
}

static void report_missing(struct loader *ld, const config_setting_t *group, const char *prefix,
                           const char *name)
{
    report(ld, group, line_of(group), prefix, name, "missing required key");
}

/* An integer (libconfig int or int64) in [min, max]. */
static int get_int(struct loader *ld, const config_setting_t *group, const char *prefix,
                   const char *name, int64_t min, int64_t max, int64_t *out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL)
        return ABSENT;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        report(ld, s, line_of(s), prefix, name, "expected an integer");
        return INVALID;
    }
    int64_t v = (int64_t)config_setting_get_int64(s);
    if (v < min || v > max) {
        if (max == INT64_MAX)
            report(ld, s, line_of(s), prefix, name,
                   "must be at least %" PRId64 " (got %" PRId64 ")", min, v);
        else
            report(ld, s, line_of(s), prefix, name,
                   "must be between %" PRId64 " and %" PRId64 " (got %" PRId64 ")", min, max, v);
        return INVALID;
    }
    *out = v;
    return GOT;
}

/* An integer in [min, max] that fits a uint32_t; `*out` keeps its default when absent. */
static void get_u32(struct loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, int64_t min, int64_t max, uint32_t *out)
{
    int64_t v;
    if (get_int(ld, group, prefix, name, min, max, &v) == GOT)
        *out = (uint32_t)v;
}

/* A non-empty string; *out points into the libconfig tree. */
static int get_string(struct loader *ld, const config_setting_t *group, const char *prefix,
                      const char *name, int required, const char **out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL) {
        if (required)
            report_missing(ld, group, prefix, name);
        return required ? INVALID : ABSENT;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        report(ld, s, line_of(s), prefix, name, "expected a string");
        return INVALID;
    }
    const char *v = config_setting_get_string(s);
    if (v[0] == '\0') {
        report(ld, s, line_of(s), prefix, name, "must not be empty");
        return INVALID;
    }
    *out = v;
    return GOT;
}

/* A member of the given libconfig type (a group or a list). */
static int get_compound(struct loader *ld, const config_setting_t *group, const char *prefix,
                        const char *name, int type, int required, const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL) {
        if (required)
            report_missing(ld, group, prefix, name);
        return required ? INVALID : ABSENT;
    }
    if (config_setting_type(s) != type) {
        report(ld, s, line_of(s), prefix, name,
               type == CONFIG_TYPE_GROUP ? "expected a group ({ ... })"
                                         : "expected a list (( ... ))");
        return INVALID;
    }
    *out = s;
    return GOT;
}

/*
 * Element i of a list, which must be a group. `key` is the list's full key
 * ("listeners", "pool \"web\": backends") for the report.
 */
static const config_setting_t *list_group(struct loader *ld, const config_setting_t *list,
                                          unsigned i, const char *key)
{
    const config_setting_t *s = config_setting_get_elem(list, i);
    if (config_setting_type(s) == CONFIG_TYPE_GROUP)
        return s;
    char idx[32];
    snprintf(idx, sizeof(idx), "[%u]", i);
    report(ld, s, line_of(s), key, idx, "expected a group ({ ... })");
    return NULL;
}

/* Same address family, address and port. */
static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

/*
 * Reads `address` of `group` into the outputs. Returns GOT, or INVALID after
 * reporting (a missing key included).
 */
static int get_address(struct loader *ld, const config_setting_t *group, const char *prefix,
                       char **text, struct sockaddr_storage *addr, socklen_t *len)
{
    const char *v;
    if (get_string(ld, group, prefix, "address", 1, &v) != GOT)
        return INVALID;
    const config_setting_t *s = config_setting_get_member(group, "address");
    const char *why = NULL;
    int rc = fc_config_parse_address(v, addr, len, &why);
    if (rc == FC_ENOMEM) {
        ld->nomem = 1;
        return INVALID;
    }
    if (rc != 0) {
        report(ld, s, line_of(s), prefix, "address", "invalid address \"%s\": %s", v, why);
        return INVALID;
    }
    *text = copy_string(ld, v);
    return GOT;
}

/* Index of the pool named `name`, or -1. */
static int find_pool(const struct loader *ld, const char *name)
{
    for (uint32_t i = 0; i < ld->cfg->n_pools; i++)
        if (ld->pool_names[i] != NULL && strcmp(ld->pool_names[i], name) == 0)
            return (int)i;
    return -1;
}

/* Reads the `pool` key of a listener or route into *index. */
static void get_pool_ref(struct loader *ld, const config_setting_t *group, const char *prefix,
                         uint32_t *index)
{
    const char *name;
    if (get_string(ld, group, prefix, "pool", 1, &name) != GOT)
        return;
    int i = find_pool(ld, name);
    if (i < 0) {
        const config_setting_t *s = config_setting_get_member(group, "pool");
        report(ld, s, line_of(s), prefix, "pool", "unknown pool \"%s\"", name);
        return;
    }
    *index = (uint32_t)i;
}

/* ------------------------------------------------------------------------ */
/* Sections                                                                  */
/* ------------------------------------------------------------------------ */

static void load_globals(struct loader *ld, const config_setting_t *root)
{
    struct fc_config *cfg = ld->cfg;

    int64_t workers = 0;
    get_int(ld, root, "", "workers", 0, MAX_WORKERS, &workers);
    if (workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        workers = n < 1 ? 1 : (n > MAX_WORKERS ? MAX_WORKERS : n);
    }
    cfg->workers = (uint32_t)workers;

    const char *dir = "plugins";
    get_string(ld, root, "", "plugin_dir", 0, &dir);
    cfg->plugin_dir = resolve_path(ld, dir);
}

static void load_log(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"level", "access", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *g;

    cfg->log_level = FC_LOG_INFO;
    cfg->access_log = FC_ACCESS_LOG_STDOUT;
    if (get_compound(ld, root, "", "log", CONFIG_TYPE_GROUP, 0, &g) != GOT)
        return;
    check_keys(ld, g, "log.", keys);

    const char *v;
    if (get_string(ld, g, "log.", "level", 0, &v) == GOT) {
        int level = fc_log_level_parse(v);
        if (level < 0) {
            const config_setting_t *s = config_setting_get_member(g, "level");
            report(ld, s, line_of(s), "log.", "level",
                   "must be one of debug, info, warn, error (got \"%s\")", v);
        } else {
            cfg->log_level = level;
        }
    }
    if (get_string(ld, g, "log.", "access", 0, &v) == GOT) {
        if (strcmp(v, "stdout") == 0) {
            cfg->access_log = FC_ACCESS_LOG_STDOUT;
        } else if (strcmp(v, "off") == 0) {
            cfg->access_log = FC_ACCESS_LOG_OFF;
        } else {
            cfg->access_log = FC_ACCESS_LOG_FILE;
            cfg->access_log_path = resolve_path(ld, v);
        }
    }
}

static void load_timeouts(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"connect_ms",  "client_header_ms", "idle_ms",
                                       "upstream_ms", "shutdown_ms",      NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *g;

    cfg->timeouts.connect_ms = 2000;
    cfg->timeouts.client_header_ms = 10000;
    cfg->timeouts.idle_ms = 60000;
    cfg->timeouts.upstream_ms = 30000;
    cfg->timeouts.shutdown_ms = 10000;
    if (get_compound(ld, root, "", "timeouts", CONFIG_TYPE_GROUP, 0, &g) != GOT)
        return;
    check_keys(ld, g, "timeouts.", keys);

    get_u32(ld, g, "timeouts.", "connect_ms", 1, MAX_TIMEOUT_MS, &cfg->timeouts.connect_ms);
    get_u32(ld, g, "timeouts.", "client_header_ms", 1, MAX_TIMEOUT_MS,
            &cfg->timeouts.client_header_ms);
    get_u32(ld, g, "timeouts.", "idle_ms", 1, MAX_TIMEOUT_MS, &cfg->timeouts.idle_ms);
    get_u32(ld, g, "timeouts.", "upstream_ms", 1, MAX_TIMEOUT_MS, &cfg->timeouts.upstream_ms);
    get_u32(ld, g, "timeouts.", "shutdown_ms", 1, MAX_TIMEOUT_MS, &cfg->timeouts.shutdown_ms);
}

static void load_limits(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"max_header_bytes", "max_body_bytes", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *g;

    cfg->limits.max_header_bytes = 16384;
    cfg->limits.max_body_bytes = 0;
    if (get_compound(ld, root, "", "limits", CONFIG_TYPE_GROUP, 0, &g) != GOT)
        return;
    check_keys(ld, g, "limits.", keys);

    get_u32(ld, g, "limits.", "max_header_bytes", 1024, 1048576, &cfg->limits.max_header_bytes);
    int64_t v;
    if (get_int(ld, g, "limits.", "max_body_bytes", 0, INT64_MAX, &v) == GOT)
        cfg->limits.max_body_bytes = (uint64_t)v;
}

/*
 * A plugin group (`strategy`, `health`, `rate_limit`) of a pool. Only `plugin`
 * is checked; the other keys are the plugin's own.
 */
static void load_plugin(struct loader *ld, const config_setting_t *pool, const char *prefix,
                        const char *name, int required, struct fc_conf_plugin *out)
{
    const config_setting_t *g;
    if (get_compound(ld, pool, prefix, name, CONFIG_TYPE_GROUP, required, &g) != GOT)
        return;
    out->group = g;
    out->line = line_of(g);

    char sub[320];
    snprintf(sub, sizeof(sub), "%s%s.", prefix, name);
    const char *v;
    if (get_string(ld, g, sub, "plugin", 1, &v) != GOT)
        return;
    out->name = copy_string(ld, v);
    if (strchr(v, '/') != NULL)
        out->path = resolve_path(ld, v);
    else if (ld->cfg->plugin_dir != NULL) /* NULL only after running out of memory */
        out->path = plugin_file(ld, ld->cfg->plugin_dir, v);
}

/*
 * The keys of a `health` group that the core reads itself; the plugin reads
 * the others (and is told that these are taken).
 */
static void load_health(struct loader *ld, const config_setting_t *g, const char *prefix,
                        struct fc_conf_health *h)
{
    char sub[320];
    snprintf(sub, sizeof(sub), "%shealth.", prefix);
    h->interval_ms = 2000;
    h->timeout_ms = 1000;
    h->rise = 2;
    h->fall = 3;
    h->initial_up = 1;
    get_u32(ld, g, sub, "interval_ms", 10, MAX_TIMEOUT_MS, &h->interval_ms);
    get_u32(ld, g, sub, "timeout_ms", 1, MAX_TIMEOUT_MS, &h->timeout_ms);
    get_u32(ld, g, sub, "rise", 1, 100, &h->rise);
    get_u32(ld, g, sub, "fall", 1, 100, &h->fall);
    const char *initial;
    if (get_string(ld, g, sub, "initial", 0, &initial) == GOT) {
        if (strcmp(initial, "up") == 0 || strcmp(initial, "down") == 0) {
            h->initial_up = initial[0] == 'u';
        } else {
            const config_setting_t *s = config_setting_get_member(g, "initial");
            report(ld, s, line_of(s), sub, "initial", "expected \"up\" or \"down\" (got \"%s\")",
                   initial);
        }
    }
}

/* `key` of a `rate_limit` group: "address" (the default) or "header:NAME". */
static void load_ratelimit(struct loader *ld, const config_setting_t *g, const char *prefix,
                           struct fc_conf_ratelimit *rl)
{
    char sub[320];
    snprintf(sub, sizeof(sub), "%srate_limit.", prefix);
    const char *key;
    if (get_string(ld, g, sub, "key", 0, &key) != GOT || strcmp(key, "address") == 0)
        return;
    if (strncmp(key, "header:", 7) == 0 && key[7] != '\0' && strpbrk(key + 7, " \t:") == NULL) {
        rl->header = copy_string(ld, key + 7);
        return;
    }
    const config_setting_t *s = config_setting_get_member(g, "key");
    report(ld, s, line_of(s), sub, "key", "expected \"address\" or \"header:NAME\" (got \"%s\")",
           key);
}

static void load_backends(struct loader *ld, const config_setting_t *pg, const char *prefix,
                          struct fc_conf_pool *pool)
{
    static const char *const keys[] = {"address", "weight", NULL};
    const config_setting_t *list;
    if (get_compound(ld, pg, prefix, "backends", CONFIG_TYPE_LIST, 1, &list) != GOT)
        return;
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0) {
        report(ld, list, line_of(list), prefix, "backends", "at least one backend is required");
        return;
    }
    pool->backends = calloc(n, sizeof(*pool->backends));
    if (pool->backends == NULL) {
        ld->nomem = 1;
        return;
    }
    pool->n_backends = n;

    char list_key[320];
    snprintf(list_key, sizeof(list_key), "%sbackends", prefix);
    /* ok[i]: backend i has a resolved address to compare later ones against. */
    unsigned char *ok = calloc(n, 1);
    if (ok == NULL) {
        ld->nomem = 1;
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        struct fc_conf_backend *b = &pool->backends[i];
        b->weight = 1;
        const config_setting_t *g = list_group(ld, list, i, list_key);
        if (g == NULL)
            continue;
        b->line = line_of(g);

        char sub[352];
        snprintf(sub, sizeof(sub), "%s[%u].", list_key, i);
        check_keys(ld, g, sub, keys);
        get_u32(ld, g, sub, "weight", 1, MAX_WEIGHT, &b->weight);
        if (get_address(ld, g, sub, &b->address, &b->addr, &b->addr_len) != GOT)
            continue;
        for (unsigned j = 0; j < i; j++) {
            if (ok[j] && same_address(&pool->backends[j].addr, &b->addr)) {
                const config_setting_t *s = config_setting_get_member(g, "address");
                report(ld, s, line_of(s), sub, "address",
                       "duplicate backend address (same as backends[%u] on line %d)", j,
                       pool->backends[j].line);
                break;
            }
        }
        ok[i] = 1;
    }
    free(ok);
}

static void load_pool(struct loader *ld, const config_setting_t *pg, uint32_t index)
{
    static const char *const keys[] = {"name",       "strategy",        "health",
                                       "rate_limit", "retries",         "backends",
                                       "max_fails",  "fail_timeout_ms", NULL};
    struct fc_conf_pool *pool = &ld->cfg->pools[index];
    char prefix[288];
    if (ld->pool_named[index])
        snprintf(prefix, sizeof(prefix), "pool \"%s\": ", ld->pool_names[index]);
    else
        snprintf(prefix, sizeof(prefix), "pools[%u].", index);

    pool->line = line_of(pg);
    pool->retries = 1;
    pool->max_fails = 3;
    pool->fail_timeout_ms = 10000;
    if (ld->pool_names[index] != NULL)
        pool->name = copy_string(ld, ld->pool_names[index]);

    check_keys(ld, pg, prefix, keys);
    load_plugin(ld, pg, prefix, "strategy", 1, &pool->strategy);
    load_plugin(ld, pg, prefix, "health", 0, &pool->health);
    if (pool->health.group != NULL)
        load_health(ld, pool->health.group, prefix, &pool->health_conf);
    load_plugin(ld, pg, prefix, "rate_limit", 0, &pool->rate_limit);
    if (pool->rate_limit.group != NULL)
        load_ratelimit(ld, pool->rate_limit.group, prefix, &pool->rate_limit_conf);
    get_u32(ld, pg, prefix, "retries", 0, MAX_RETRIES, &pool->retries);
    get_u32(ld, pg, prefix, "max_fails", 0, 100, &pool->max_fails);
    get_u32(ld, pg, prefix, "fail_timeout_ms", 1, MAX_TIMEOUT_MS, &pool->fail_timeout_ms);
    load_backends(ld, pg, prefix, pool);
}

/*
 * Pools come before listeners and routes, which refer to them by name. The
 * names are read in a first pass so that every pool's errors can carry its
 * name, and a duplicate is known before any of the pool's keys is reported.
 */
static void load_pools(struct loader *ld, const config_setting_t *root)
{
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *list;
    if (get_compound(ld, root, "", "pools", CONFIG_TYPE_LIST, 1, &list) != GOT)
        return;
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0) {
        report(ld, list, line_of(list), "", "pools", "at least one pool is required");
        return;
    }
    cfg->pools = calloc(n, sizeof(*cfg->pools));
    ld->pool_names = calloc(n, sizeof(*ld->pool_names));
    ld->pool_named = calloc(n, 1);
    if (cfg->pools == NULL || ld->pool_names == NULL || ld->pool_named == NULL) {
        ld->nomem = 1;
        return;
    }
    cfg->n_pools = n;

    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            continue; /* reported in the second pass */
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "pools[%u].", i);
        const char *name;
        if (get_string(ld, g, prefix, "name", 1, &name) != GOT)
            continue;
        ld->pool_names[i] = name;
        int first = find_pool(ld, name);
        if (first >= 0 && (unsigned)first < i) {
            const config_setting_t *s = config_setting_get_member(g, "name");
            report(ld, s, line_of(s), prefix, "name",
                   "duplicate pool name \"%s\" (first defined on line %d)", name,
                   line_of(config_setting_get_elem(list, (unsigned)first)));
            continue;
        }
        ld->pool_named[i] = 1;
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = list_group(ld, list, i, "pools");
        if (g != NULL)
            load_pool(ld, g, i);
    }
}

static void load_listeners(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"address", "pool", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *list;
    if (get_compound(ld, root, "", "listeners", CONFIG_TYPE_LIST, 1, &list) != GOT)
        return;
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0) {
        report(ld, list, line_of(list), "", "listeners", "at least one listener is required");
        return;
    }
    cfg->listeners = calloc(n, sizeof(*cfg->listeners));
    unsigned char *ok = calloc(n, 1);
    if (cfg->listeners == NULL || ok == NULL) {
        free(ok);
        ld->nomem = 1;
        return;
    }
    cfg->n_listeners = n;

    for (unsigned i = 0; i < n; i++) {
        struct fc_conf_listener *l = &cfg->listeners[i];
        const config_setting_t *g = list_group(ld, list, i, "listeners");
        if (g == NULL)
            continue;
        l->line = line_of(g);
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "listeners[%u].", i);
        check_keys(ld, g, prefix, keys);
        get_pool_ref(ld, g, prefix, &l->pool);
        if (get_address(ld, g, prefix, &l->address, &l->addr, &l->addr_len) != GOT)
            continue;
        for (unsigned j = 0; j < i; j++) {
            if (ok[j] && same_address(&cfg->listeners[j].addr, &l->addr)) {
                const config_setting_t *s = config_setting_get_member(g, "address");
                report(ld, s, line_of(s), prefix, "address",
                       "duplicate listener address (same as listeners[%u] on line %d)", j,
                       cfg->listeners[j].line);
                break;
            }
        }
        ok[i] = 1;
    }
    free(ok);
}

static void load_routes(struct loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"host", "path_prefix", "pool", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *list;
    if (get_compound(ld, root, "", "routes", CONFIG_TYPE_LIST, 0, &list) != GOT)
        return;
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0)
        return;
    cfg->routes = calloc(n, sizeof(*cfg->routes));
    if (cfg->routes == NULL) {
        ld->nomem = 1;
        return;
    }
    cfg->n_routes = n;

    for (unsigned i = 0; i < n; i++) {
        struct fc_conf_route *r = &cfg->routes[i];
        const config_setting_t *g = list_group(ld, list, i, "routes");
        if (g == NULL)
            continue;
        r->line = line_of(g);
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "routes[%u].", i);
        check_keys(ld, g, prefix, keys);

        const char *v;
        int host = get_string(ld, g, prefix, "host", 0, &v);
        if (host == GOT)
            r->host = copy_string(ld, v);
        int path = get_string(ld, g, prefix, "path_prefix", 0, &v);
        if (path == GOT) {
            if (v[0] != '/') {
                const config_setting_t *s = config_setting_get_member(g, "path_prefix");
                report(ld, s, line_of(s), prefix, "path_prefix", "must start with '/' (got \"%s\")",
                       v);
            } else {
                r->path_prefix = copy_string(ld, v);
            }
        }
        if (host == ABSENT && path == ABSENT) {
            char key[32];
            snprintf(key, sizeof(key), "routes[%u]", i);
            report(ld, g, r->line, "", key, "needs host, path_prefix or both");
        }
        get_pool_ref(ld, g, prefix, &r->pool);
    }
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                          */
/* ------------------------------------------------------------------------ */

/*
 * Reads the file into cfg->lc. Opening it here, rather than through
 * config_read_file(), gives the reason a file cannot be read, and keeps
 * folders away from libconfig's scanner, which exits the process on them.
 */
static int read_file(struct loader *ld)
{
    struct fc_config *cfg = ld->cfg;
    FILE *f = fopen(cfg->path, "r");
    if (f == NULL) {
        int err = errno;
        fc_log(FC_LOG_ERROR, "%s: cannot read: %s", cfg->path, strerror(err));
        return err == ENOMEM ? FC_ENOMEM : FC_EINVAL;
    }
    struct stat st;
    int err = fstat(fileno(f), &st) != 0 ? errno : (S_ISDIR(st.st_mode) ? EISDIR : 0);
    if (err != 0) {
        fclose(f);
        fc_log(FC_LOG_ERROR, "%s: cannot read: %s", cfg->path, strerror(err));
        return FC_EINVAL;
    }
    int ok = config_read(&cfg->lc, f);
    fclose(f);
    if (ok == CONFIG_TRUE)
        return 0;

    const char *text = config_error_text(&cfg->lc);
    if (config_error_type(&cfg->lc) == CONFIG_ERR_FILE_IO) {
        fc_log(FC_LOG_ERROR, "%s: cannot read: %s", cfg->path, text ? text : "I/O error");
        return FC_EINVAL;
    }
    const char *file = config_error_file(&cfg->lc);
    if (file == NULL)
        fc_log(FC_LOG_ERROR, "%s:%d: syntax error: %s", cfg->path, config_error_line(&cfg->lc),
               text ? text : "?");
    else if (file[0] == '/')
        fc_log(FC_LOG_ERROR, "%s:%d: syntax error: %s", file, config_error_line(&cfg->lc),
               text ? text : "?");
    else
        fc_log(FC_LOG_ERROR, "%s/%s:%d: syntax error: %s", cfg->dir, file,
               config_error_line(&cfg->lc), text ? text : "?");
    return FC_EINVAL;
}

int fc_config_load(const char *path, struct fc_config **out)
{
    static const char *const keys[] = {"workers",   "plugin_dir", "log",   "timeouts", "limits",
                                       "listeners", "routes",     "pools", NULL};
    *out = NULL;
    struct fc_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return FC_ENOMEM;
    config_init(&cfg->lc);
    cfg->path = strdup(path);
    cfg->dir = dir_of(path);
    if (cfg->path == NULL || cfg->dir == NULL) {
        fc_config_free(cfg);
        return FC_ENOMEM;
    }
    /* @include "x" then reads x next to the file, whatever the working folder. */
    config_set_include_dir(&cfg->lc, cfg->dir);
    if (config_get_include_dir(&cfg->lc) == NULL) {
        fc_config_free(cfg);
        return FC_ENOMEM;
    }

    struct loader ld = {.cfg = cfg};
    int rc = read_file(&ld);
    if (rc != 0) {
        fc_config_free(cfg);
        return rc;
    }

    const config_setting_t *root = config_root_setting(&cfg->lc);
    check_keys(&ld, root, "", keys);
    load_globals(&ld, root);
    load_log(&ld, root);
    load_timeouts(&ld, root);
    load_limits(&ld, root);
    load_pools(&ld, root);
    load_listeners(&ld, root);
    load_routes(&ld, root);

    free(ld.pool_names);
    free(ld.pool_named);
    if (ld.nomem || ld.errors > 0) {
        fc_config_free(cfg);
        return ld.nomem ? FC_ENOMEM : FC_EINVAL;
    }
    *out = cfg;
    return 0;
}

static void free_plugin(struct fc_conf_plugin *p)
{
    free(p->name);
    free(p->path);
    p->name = NULL;
    p->path = NULL;
    p->group = NULL;
}

void fc_config_free(struct fc_config *cfg)
{
    if (cfg == NULL)
        return;
    for (uint32_t i = 0; i < cfg->n_pools; i++) {
        struct fc_conf_pool *p = &cfg->pools[i];
        free(p->name);
        free_plugin(&p->strategy);
        free_plugin(&p->health);
        free_plugin(&p->rate_limit);
        free(p->rate_limit_conf.header);
        for (uint32_t j = 0; j < p->n_backends; j++)
            free(p->backends[j].address);
        free(p->backends);
    }
    free(cfg->pools);
    for (uint32_t i = 0; i < cfg->n_listeners; i++)
        free(cfg->listeners[i].address);
    free(cfg->listeners);
    for (uint32_t i = 0; i < cfg->n_routes; i++) {
        free(cfg->routes[i].host);
        free(cfg->routes[i].path_prefix);
    }
    free(cfg->routes);
    free(cfg->plugin_dir);
    free(cfg->access_log_path);
    config_destroy(&cfg->lc);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

/* Port: 1 to 5 decimal digits, 1..65535. */
static int parse_port(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return -1;
    long v = strtol(s, NULL, 10);
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

int fc_config_parse_address(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                            const char **why)
{
    const char *unused;
    if (why == NULL)
        why = &unused;
    if (text == NULL || text[0] == '\0') {
        *why = "empty address";
        return FC_EINVAL;
    }

    const char *host, *host_end, *port;
    int bracketed = text[0] == '[';
    if (bracketed) {
        host = text + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL) {
            *why = "missing ']'";
            return FC_EINVAL;
        }
        if (host_end[1] == '\0') {
            *why = "missing port";
            return FC_EINVAL;
        }
        if (host_end[1] != ':') {
            *why = "expected ':' after ']'";
            return FC_EINVAL;
        }
        port = host_end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL) {
            *why = "missing port";
            return FC_EINVAL;
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            *why = "IPv6 address needs brackets, as in [::1]:80";
            return FC_EINVAL;
        }
        if (strpbrk(text, "[]") != NULL) {
            *why = "unexpected bracket";
            return FC_EINVAL;
        }
        host = text;
        host_end = colon;
        port = colon + 1;
    }
    if (host_end == host) {
        *why = "empty host";
        return FC_EINVAL;
    }
    if (port[0] == '\0') {
        *why = "missing port";
        return FC_EINVAL;
    }
    if (parse_port(port) < 0) {
        *why = "invalid port";
        return FC_EINVAL;
    }
    char name[NI_MAXHOST];
    size_t n = (size_t)(host_end - host);
    if (n >= sizeof(name)) {
        *why = "host name too long";
        return FC_EINVAL;
    }
    memcpy(name, host, n);
    name[n] = '\0';

    struct addrinfo hints = {
        .ai_family = bracketed ? AF_INET6 : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0),
    };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(name, port, &hints, &res);
    if (rc == EAI_MEMORY) {
        *why = "out of memory";
        return FC_ENOMEM;
    }
    if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(*addr)) {
        if (res != NULL)
            freeaddrinfo(res);
        *why = bracketed ? "invalid IPv6 address" : "cannot resolve host";
        return FC_EINVAL;
    }
    memset(addr, 0, sizeof(*addr));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}
