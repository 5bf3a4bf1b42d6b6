/*
 * Plugin instances and their host tables; see plugin_host.h.
 *
 * fc_instance_create() and fc_instance_destroy() run on the main thread. The
 * configuration getters are only valid while create() runs, on that thread,
 * so the bookkeeping they do (which keys were read, whether a value was
 * rejected) needs no lock. So does the probe service (probe_connect(), and
 * probe_done(), which looks at it), which health instances use on the main
 * thread only. The other host functions may run on any thread and only read
 * the instance.
 */
#include "plugin_host.h"

#include "http_request.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A string handed to the plugin by config_string(): it must outlive the config tree. */
struct fc_instance_string {
    struct fc_instance_string *next;
    char text[];
};

/* keys_read has one bit per setting of the group. */
#define MAX_GROUP_KEYS 64

static const char *error_name(int rc)
{
    switch (rc) {
    case FC_ENOMEM:
        return "out of memory";
    case FC_EINVAL:
        return "invalid argument or configuration";
    case FC_ENOENT:
        return "not found";
    case FC_ENOBACKEND:
        return "no backend";
    default:
        return "error";
    }
}

static const char *plugin_name(const struct fc_instance *inst)
{
    return inst->plugin->desc->name;
}

static const char *plugin_kind(const struct fc_instance *inst)
{
    return fc_plugin_kind_name((int)inst->plugin->desc->kind);
}

/* The file to name in messages about `s`: its own (it may come from an @include). */
static const char *setting_file(const struct fc_instance *inst, const config_setting_t *s)
{
    if (s != NULL && config_setting_source_file(s) != NULL)
        return config_setting_source_file(s);
    return inst->config_file != NULL ? inst->config_file : "(config)";
}

static int setting_line(const struct fc_instance *inst, const config_setting_t *s)
{
    if (s != NULL)
        return config_setting_source_line(s);
    return inst->conf != NULL ? inst->conf->line : 0;
}

/* ------------------------------------------------------------------------ */
/* Host functions                                                            */
/* ------------------------------------------------------------------------ */

static void host_log(const struct fc_host *host, enum fc_log_level level, const char *fmt, ...)
{
    const struct fc_instance *inst = fc_instance_of(host);

    /* A plugin may pass anything; fc_log indexes its level names with it. */
    if ((int)level < FC_LOG_DEBUG)
        level = FC_LOG_DEBUG;
    if ((int)level > FC_LOG_ERROR)
        level = FC_LOG_ERROR;
    if (level < fc_log_get_level())
        return;

    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fc_log(level, "%s: %s", inst->label, msg);
}

/*
 * Finds `key` in the instance's group and marks it read. Returns 0 with the
 * setting in *out, FC_ENOENT when absent, FC_EINVAL outside create().
 */
static int find_key(const struct fc_host *host, const char *key, const char *getter,
                    const config_setting_t **out)
{
    struct fc_instance *inst = fc_instance_of(host);

    if (!inst->creating) {
        fc_log_error("%s: %s(\"%s\") called outside create()", inst->label, getter,
                     key != NULL ? key : "(null)");
        return FC_EINVAL;
    }
    if (key == NULL)
        return FC_EINVAL;
    if (inst->conf == NULL || inst->conf->group == NULL)
        return FC_ENOENT;

    const config_setting_t *s = config_setting_get_member(inst->conf->group, key);
    if (s == NULL)
        return FC_ENOENT;
    int i = config_setting_index(s);
    if (i >= 0 && i < MAX_GROUP_KEYS)
        inst->keys_read |= UINT64_C(1) << i;
    *out = s;
    return 0;
}

/*
 * The path of a key as the config loader writes it, so that a plugin's keys
 * read like the rest: `pool "web": strategy.max_inflight`.
 */
static const char *key_path(const struct fc_instance *inst, const char *key, char *buf, size_t len)
{
    const config_setting_t *group = inst->conf != NULL ? inst->conf->group : NULL;
    const char *gname = group != NULL ? config_setting_name(group) : NULL;
    const config_setting_t *parent = group != NULL ? config_setting_parent(group) : NULL;
    const char *pool = NULL;
    if (parent != NULL)
        config_setting_lookup_string(parent, "name", &pool);
    if (gname == NULL)
        snprintf(buf, len, "%s", key);
    else if (pool != NULL)
        snprintf(buf, len, "pool \"%s\": %s.%s", pool, gname, key);
    else
        snprintf(buf, len, "%s.%s", gname, key);
    return buf;
}

static int type_error(const struct fc_host *host, const config_setting_t *s, const char *expected)
{
    struct fc_instance *inst = fc_instance_of(host);

    char path[256];
    fc_log_error("%s:%d: %s: expected %s for %s plugin \"%s\"", setting_file(inst, s),
                 setting_line(inst, s), key_path(inst, config_setting_name(s), path, sizeof(path)),
                 expected, plugin_kind(inst), plugin_name(inst));
    inst->config_failed = 1;
    return FC_EINVAL;
}

static int config_int(const struct fc_host *host, const char *key, int64_t *out)
{
    const config_setting_t *s;
    int rc = find_key(host, key, "config_int", &s);
    if (rc < 0)
        return rc;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        *out = config_setting_get_int(s);
        return 0;
    case CONFIG_TYPE_INT64:
        *out = config_setting_get_int64(s);
        return 0;
    default:
        return type_error(host, s, "an integer");
    }
}

static int config_double(const struct fc_host *host, const char *key, double *out)
{
    const config_setting_t *s;
    int rc = find_key(host, key, "config_double", &s);
    if (rc < 0)
        return rc;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_FLOAT:
        *out = config_setting_get_float(s);
        return 0;
    /* "ratio = 2;" is an integer to libconfig, but surely meant as a number. */
    case CONFIG_TYPE_INT:
        *out = config_setting_get_int(s);
        return 0;
    case CONFIG_TYPE_INT64:
        *out = (double)config_setting_get_int64(s);
        return 0;
    default:
        return type_error(host, s, "a number");
    }
}

static int config_bool(const struct fc_host *host, const char *key, int *out)
{
    const config_setting_t *s;
    int rc = find_key(host, key, "config_bool", &s);
    if (rc < 0)
        return rc;

    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return type_error(host, s, "a boolean (true or false)");
    *out = config_setting_get_bool(s) != 0;
    return 0;
}

static int config_string(const struct fc_host *host, const char *key, const char **out)
{
    struct fc_instance *inst = fc_instance_of(host);
    const config_setting_t *s;
    int rc = find_key(host, key, "config_string", &s);
    if (rc < 0)
        return rc;

    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return type_error(host, s, "a string");

    /*
     * The config tree may be freed once the generation is built, but the
     * plugin may keep the string for the instance's life: hand out a copy.
     */
    const char *value = config_setting_get_string(s);
    size_t len = strlen(value);
    struct fc_instance_string *copy = malloc(sizeof(*copy) + len + 1);
    if (copy == NULL)
        return FC_ENOMEM;
    memcpy(copy->text, value, len + 1);
    copy->next = inst->strings;
    inst->strings = copy;
    *out = copy->text;
    return 0;
}

static void config_error(const struct fc_host *host, const char *key, const char *fmt, ...)
{
    struct fc_instance *inst = fc_instance_of(host);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (key == NULL)
        key = "(null)";
    if (!inst->creating) {
        fc_log_error("%s: %s: %s (config_error() called outside create())", inst->label, key, msg);
        return;
    }

    /* Point at the key when it exists, else at the group that lacks it. */
    const config_setting_t *s = NULL;
    if (inst->conf != NULL && inst->conf->group != NULL)
        s = config_setting_get_member(inst->conf->group, key);
    const config_setting_t *where = s != NULL ? s : (inst->conf != NULL ? inst->conf->group : NULL);
    char path[256];
    fc_log_error("%s:%d: %s: %s", setting_file(inst, where), setting_line(inst, s),
                 key_path(inst, key, path, sizeof(path)), msg);
    inst->config_failed = 1;
}

static const char *pool_name(const struct fc_host *host)
{
    return fc_instance_of(host)->pool_name;
}

static uint64_t now_ns(const struct fc_host *host)
{
    const struct fc_instance *inst = fc_instance_of(host);
    if (inst->hooks.now_ns != NULL)
        return inst->hooks.now_ns(inst->hooks.owner);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *main_loop(const struct fc_host *host)
{
    return fc_instance_of(host)->hooks.main_loop;
}

static uint32_t worker_count(const struct fc_host *host)
{
    return fc_instance_of(host)->hooks.worker_count;
}

static const char *request_header(const struct fc_host *host, const struct fc_request *req,
                                  const char *name, size_t *len)
{
    size_t n = 0;
    const char *value = NULL;

    if (req != NULL && name != NULL)
        value = fc_request_header(req, name, &n);
    if (len != NULL)
        *len = value != NULL ? n : 0;
    return value;
}

static void probe_done(const struct fc_host *host, struct fc_probe *probe, int ok,
                       const char *reason)
{
    const struct fc_instance *inst = fc_instance_of(host);

    if (inst->hooks.probe_done == NULL) {
        fc_log_error("%s: probe_done() called, but this instance runs no probes", inst->label);
        return;
    }
    /* Its own verdict follows from the loop; a second one would end the next probe early. */
    if (fc_prober_runs(&inst->prober, probe)) {
        fc_log_error("%s: probe_done() called for a probe that probe_connect() runs", inst->label);
        return;
    }
    inst->hooks.probe_done(inst->hooks.owner, probe, ok, reason != NULL ? reason : "");
}

/* The probe service (ABI 1.1): core/probe.c does the work, on the instance's prober. */
static int probe_connect(const struct fc_host *host, struct fc_probe *probe,
                         const struct fc_probe_args *args)
{
    return fc_prober_start(&fc_instance_of(host)->prober, probe, args);
}

static int response_header_add(const struct fc_host *host, const struct fc_request *req,
                               const char *name, const char *value)
{
    const struct fc_instance *inst = (const struct fc_instance *)host;
    struct fc_added_headers *a = req != NULL ? req->added : NULL;
    if (a == NULL || !a->open) {
        fc_log_error("%s: response_header_add() called outside pick()", inst->label);
        return FC_EINVAL;
    }
    if (name == NULL || value == NULL || name[0] == '\0')
        return FC_EINVAL;
    size_t nl = strlen(name), vl = strlen(value);
    for (size_t i = 0; i < nl; i++)
        if (!fc_is_tchar((unsigned char)name[i]))
            return FC_EINVAL;
    for (size_t i = 0; i < vl; i++)
        if (((unsigned char)value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f)
            return FC_EINVAL;
    if (a->len + nl + 2 + vl + 2 > sizeof(a->buf))
        return FC_ENOMEM;
    char *o = a->buf + a->len;
    memcpy(o, name, nl);
    memcpy(o + nl, ": ", 2);
    memcpy(o + nl + 2, value, vl);
    memcpy(o + nl + 2 + vl, "\r\n", 2);
    a->len += (uint32_t)(nl + vl + 4);
    return 0;
}

static const char *request_target(const struct fc_host *host, const struct fc_request *req,
                                  size_t *len)
{
    if (req == NULL || req->target.p == NULL) {
        *len = 0;
        return NULL;
    }
    *len = req->target.len;
    return req->target.p;
}

static void ratelimit_done(const struct fc_host *host, struct fc_ratelimit_pending *pending,
                           int verdict, uint64_t retry_after_ms)
{
    const struct fc_instance *inst = fc_instance_of(host);

    if (inst->hooks.ratelimit_done == NULL) {
        fc_log_error("%s: ratelimit_done() called, but this instance has no pending checks",
                     inst->label);
        return;
    }
    inst->hooks.ratelimit_done(inst->hooks.owner, pending, verdict, retry_after_ms);
}

/* ------------------------------------------------------------------------ */
/* Instances                                                                 */
/* ------------------------------------------------------------------------ */

static void free_strings(struct fc_instance *inst)
{
    while (inst->strings != NULL) {
        struct fc_instance_string *next = inst->strings->next;
        free(inst->strings);
        inst->strings = next;
    }
}

static void run_destroy(struct fc_instance *inst)
{
    const struct fc_plugin_descriptor *d = inst->plugin->desc;
    void (*destroy)(void *) = NULL;

    switch (d->kind) {
    case FC_PLUGIN_STRATEGY:
        destroy = d->strategy->destroy;
        break;
    case FC_PLUGIN_HEALTH:
        destroy = d->health->destroy;
        break;
    case FC_PLUGIN_RATELIMIT:
        destroy = d->ratelimit->destroy;
        break;
    case FC_PLUGIN_CACHE:
        destroy = d->cache->destroy;
        break;
    }
    if (destroy != NULL)
        destroy(inst->state);
    inst->state = NULL;
}

static int is_core_key(const char *const *core_keys, const char *name)
{
    if (strcmp(name, "plugin") == 0)
        return 1;
    for (; core_keys != NULL && *core_keys != NULL; core_keys++)
        if (strcmp(*core_keys, name) == 0)
            return 1;
    return 0;
}

/* Logs every key of the group that nobody read. Returns how many there were. */
static int report_unknown_keys(const struct fc_instance *inst)
{
    if (inst->conf == NULL || inst->conf->group == NULL ||
        !config_setting_is_group(inst->conf->group))
        return 0;

    int unknown = 0;
    int n = config_setting_length(inst->conf->group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(inst->conf->group, (unsigned)i);
        if (inst->keys_read & (UINT64_C(1) << i))
            continue;
        if (is_core_key(inst->core_keys, config_setting_name(s)))
            continue;
        char path[256];
        fc_log_error("%s:%d: %s: unknown key for %s plugin \"%s\"", setting_file(inst, s),
                     setting_line(inst, s),
                     key_path(inst, config_setting_name(s), path, sizeof(path)), plugin_kind(inst),
                     plugin_name(inst));
        unknown++;
    }
    return unknown;
}

/* Runs the plugin's create() for its kind. */
static int run_create(struct fc_instance *inst, const struct fc_pool_view *pool)
{
    const struct fc_plugin_descriptor *d = inst->plugin->desc;

    switch (d->kind) {
    case FC_PLUGIN_STRATEGY:
        return d->strategy->create(&inst->host, pool, &inst->state);
    case FC_PLUGIN_HEALTH:
        return d->health->create(&inst->host, pool, &inst->state);
    case FC_PLUGIN_RATELIMIT:
        return d->ratelimit->create(&inst->host, &inst->state);
    case FC_PLUGIN_CACHE:
        return d->cache->create(&inst->host, &inst->state);
    default:
        return FC_EINVAL;
    }
}

int fc_instance_create(struct fc_instance *inst, const struct fc_plugin *plugin,
                       const struct fc_conf_plugin *conf, const char *config_file,
                       const char *const *core_keys, const struct fc_pool_view *pool,
                       const struct fc_instance_hooks *hooks, const char *label)
{
    memset(inst, 0, sizeof(*inst));
    if (plugin == NULL || plugin->desc == NULL)
        return FC_EINVAL;

    inst->host.size = sizeof(inst->host);
    inst->host.abi_minor = FC_ABI_MINOR;
    inst->host.log = host_log;
    inst->host.config_string = config_string;
    inst->host.config_int = config_int;
    inst->host.config_double = config_double;
    inst->host.config_bool = config_bool;
    inst->host.config_error = config_error;
    inst->host.now_ns = now_ns;
    inst->host.main_loop = main_loop;
    inst->host.worker_count = worker_count;
    inst->host.request_header = request_header;
    inst->host.probe_done = probe_done;
    inst->host.ratelimit_done = ratelimit_done;
    inst->host.pool_name = pool_name;
    inst->host.probe_connect = probe_connect;
    inst->host.response_header_add = response_header_add;
    inst->host.request_target = request_target;

    inst->plugin = plugin;
    if (hooks != NULL)
        inst->hooks = *hooks;
    snprintf(inst->pool_name, sizeof(inst->pool_name), "%s",
             inst->hooks.pool_name != NULL ? inst->hooks.pool_name : "");
    inst->hooks.pool_name = NULL; /* the copy above is what lasts */
    inst->prober = (struct fc_prober){.loop = inst->hooks.main_loop,
                                      .report = inst->hooks.probe_done,
                                      .report_arg = inst->hooks.owner,
                                      .tls = inst->hooks.tls};
    if (label != NULL)
        snprintf(inst->label, sizeof(inst->label), "%s", label);
    else
        snprintf(inst->label, sizeof(inst->label), "%s %s", plugin_kind(inst), plugin_name(inst));
    inst->prober.label = inst->label;
    inst->conf = conf;
    inst->config_file = config_file;
    inst->core_keys = core_keys;

    int rc = 0;
    const config_setting_t *group = conf != NULL ? conf->group : NULL;
    if (group != NULL && config_setting_length(group) > MAX_GROUP_KEYS) {
        fc_log_error("%s:%d: %s plugin \"%s\": more than %d keys in one group",
                     setting_file(inst, group), setting_line(inst, group), plugin_kind(inst),
                     plugin_name(inst), MAX_GROUP_KEYS);
        rc = FC_EINVAL;
        goto fail;
    }

    inst->creating = 1;
    rc = run_create(inst, pool);
    inst->creating = 0;
    if (rc != 0) {
        /* The plugin logged why; say which instance gave up. */
        fc_log_error("%s:%d: %s: %s: create() failed: %s", setting_file(inst, group),
                     setting_line(inst, group), inst->label, plugin->path, error_name(rc));
        inst->state = NULL;
        rc = rc < 0 ? rc : FC_ERROR;
        goto fail;
    }

    /* Report unknown keys even after a rejected value: the user fixes both at once. */
    int unknown = report_unknown_keys(inst);
    if (inst->config_failed || unknown > 0) {
        run_destroy(inst);
        rc = FC_EINVAL;
        goto fail;
    }

    inst->conf = NULL;
    inst->config_file = NULL;
    inst->core_keys = NULL;
    return 0;

fail:
    /* Leave inst so that a fc_instance_destroy() on it does nothing. */
    free_strings(inst);
    inst->plugin = NULL;
    inst->conf = NULL;
    inst->config_file = NULL;
    inst->core_keys = NULL;
    return rc;
}

void fc_instance_destroy(struct fc_instance *inst)
{
    if (inst == NULL || inst->plugin == NULL)
        return;
    run_destroy(inst);
    free_strings(inst);
    inst->plugin = NULL;
}
