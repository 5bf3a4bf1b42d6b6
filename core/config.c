/*
 * Loading and validating the configuration file (schema v1; every key is in
 * the README's configuration reference).
 *
 * The file is parsed with libconfig into cfg->lc, which the config keeps: the
 * keys of the `strategy`, `health`, `rate_limit` and `cache` groups other than `plugin`
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

#include "config_reader.h"
#include "log.h"
#include "log_writer.h"
#include "tls_context.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The most worker threads; `workers = 0` resolves to the CPU count capped here. */
#define MAX_WORKERS 256
#define MAX_TIMEOUT_MS 86400000
#define MAX_RETRIES 16
#define MAX_WEIGHT 1000
/* The largest admin token file: a token is a line, not a document. */
#define MAX_TOKEN_BYTES 4096

/* ------------------------------------------------------------------------ */
/* Sections                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * `resolvers = ( "127.0.0.1:8600", "::1" )`: IP addresses, each with an
 * optional port (53), kept as the list c-ares takes. Read before anything
 * that names a host, which is resolved through them.
 */
static void load_resolvers(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    const config_setting_t *list;
    if (fc_cfg_get_list(ld, root, "", "resolvers",
                        "expected a list of DNS server addresses, as ( \"127.0.0.1:53\" )",
                        &list) != FC_CFG_GOT)
        return;
    int n = config_setting_length(list);
    if (n == 0) {
        fc_cfg_report(ld, list, fc_cfg_line(list), "", "resolvers",
                      "at least one server (leave the key out to use /etc/resolv.conf)");
        return;
    }
    size_t cap = (size_t)n * (INET6_ADDRSTRLEN + 10) + 1;
    char *csv = calloc(1, cap);
    if (csv == NULL) {
        ld->nomem = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *v =
            config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
        char with_port[INET6_ADDRSTRLEN + 16];
        /* A bare address takes port 53: "10.0.0.2" and "::1" as "[::1]:53". */
        if (v != NULL && fc_config_is_ip(v))
            snprintf(with_port, sizeof(with_port), strchr(v, ':') ? "[%s]:53" : "%s:53", v);
        else
            snprintf(with_port, sizeof(with_port), "%s", v != NULL ? v : "");
        struct sockaddr_storage ss;
        socklen_t len;
        const char *why = "not a string";
        if (v == NULL || fc_config_parse_ip_address(with_port, &ss, &len, &why) != 0) {
            fc_cfg_report(ld, e, fc_cfg_line(e), "", "resolvers",
                          "invalid DNS server \"%s\": %s (expected an IP address with an "
                          "optional port, as \"127.0.0.1:8600\" or \"[::1]:53\")",
                          v != NULL ? v : "", why);
            free(csv);
            return;
        }
        size_t used = strlen(csv);
        if (used > 0)
            csv[used++] = ',';
        fc_config_format_address(&ss, csv + used, cap - used);
    }
    ld->cfg->resolvers = csv;
}

static void load_globals(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    struct fc_config *cfg = ld->cfg;

    int64_t workers = 0;
    fc_cfg_get_int(ld, root, "", "workers", 0, MAX_WORKERS, &workers);
    if (workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        workers = n < 1 ? 1 : (n > MAX_WORKERS ? MAX_WORKERS : n);
    }
    cfg->workers = (uint32_t)workers;

    const char *dir = "plugins";
    fc_cfg_get_string(ld, root, "", "plugin_dir", 0, &dir);
    cfg->plugin_dir = fc_cfg_resolve_path(ld, dir);

    load_resolvers(ld, root);

    const char *state = NULL;
    if (fc_cfg_get_string(ld, root, "", "state_file", 0, &state) == FC_CFG_GOT) {
        const config_setting_t *s = config_setting_get_member(root, "state_file");
        cfg->state_file_line = fc_cfg_line(s);
        if (state[0] == '\0')
            fc_cfg_report(ld, s, cfg->state_file_line, "", "state_file",
                          "must be a file path (leave the key out to keep no state)");
        else
            cfg->state_file = fc_cfg_resolve_path(ld, state);
    }
}

static void load_log(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"level", "access", "access_format", "buffer_bytes", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *g;

    cfg->log_level = FC_LOG_INFO;
    cfg->access_log = FC_ACCESS_LOG_STDOUT;
    cfg->log_buffer_bytes = FC_LOG_ACCESS_BUFFER;
    if (fc_cfg_get_compound(ld, root, "", "log", CONFIG_TYPE_GROUP, 0, &g) != FC_CFG_GOT)
        return;
    fc_cfg_check_keys(ld, g, "log.", keys);

    const char *v;
    if (fc_cfg_get_string(ld, g, "log.", "level", 0, &v) == FC_CFG_GOT) {
        int level = fc_log_level_parse(v);
        if (level < 0) {
            const config_setting_t *s = config_setting_get_member(g, "level");
            fc_cfg_report(ld, s, fc_cfg_line(s), "log.", "level",
                          "must be one of debug, info, warn, error (got \"%s\")", v);
        } else {
            cfg->log_level = level;
        }
    }
    if (fc_cfg_get_string(ld, g, "log.", "access", 0, &v) == FC_CFG_GOT) {
        if (strcmp(v, "stdout") == 0) {
            cfg->access_log = FC_ACCESS_LOG_STDOUT;
        } else if (strcmp(v, "off") == 0) {
            cfg->access_log = FC_ACCESS_LOG_OFF;
        } else {
            cfg->access_log = FC_ACCESS_LOG_FILE;
            cfg->access_log_path = fc_cfg_resolve_path(ld, v);
        }
    }
    fc_cfg_get_u32(ld, g, "log.", "buffer_bytes", FC_LOG_BUFFER_MIN, FC_LOG_BUFFER_MAX,
                   &cfg->log_buffer_bytes);
    if (fc_cfg_get_string(ld, g, "log.", "access_format", 0, &v) == FC_CFG_GOT) {
        if (strcmp(v, "json") == 0) {
            cfg->access_log_json = 1;
        } else if (strcmp(v, "text") != 0) {
            const config_setting_t *s = config_setting_get_member(g, "access_format");
            fc_cfg_report(ld, s, fc_cfg_line(s), "log.", "access_format",
                          "must be \"text\" or \"json\" (got \"%s\")", v);
        }
    }
}

static void load_timeouts(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {
        "connect_ms",  "client_header_ms", "idle_ms",   "upstream_ms",
        "shutdown_ms", "half_close_ms",    "tunnel_ms", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *g;

    cfg->timeouts.connect_ms = 2000;
    cfg->timeouts.client_header_ms = 10000;
    cfg->timeouts.idle_ms = 60000;
    cfg->timeouts.upstream_ms = 30000;
    cfg->timeouts.shutdown_ms = 10000;
    cfg->timeouts.half_close_ms = 100;
    cfg->timeouts.tunnel_ms = 3600000;
    if (fc_cfg_get_compound(ld, root, "", "timeouts", CONFIG_TYPE_GROUP, 0, &g) != FC_CFG_GOT)
        return;
    fc_cfg_check_keys(ld, g, "timeouts.", keys);

    fc_cfg_get_u32(ld, g, "timeouts.", "connect_ms", 1, MAX_TIMEOUT_MS, &cfg->timeouts.connect_ms);
    fc_cfg_get_u32(ld, g, "timeouts.", "client_header_ms", 1, MAX_TIMEOUT_MS,
                   &cfg->timeouts.client_header_ms);
    fc_cfg_get_u32(ld, g, "timeouts.", "idle_ms", 1, MAX_TIMEOUT_MS, &cfg->timeouts.idle_ms);
    fc_cfg_get_u32(ld, g, "timeouts.", "upstream_ms", 1, MAX_TIMEOUT_MS,
                   &cfg->timeouts.upstream_ms);
    fc_cfg_get_u32(ld, g, "timeouts.", "shutdown_ms", 1, MAX_TIMEOUT_MS,
                   &cfg->timeouts.shutdown_ms);
    fc_cfg_get_u32(ld, g, "timeouts.", "half_close_ms", 0, MAX_TIMEOUT_MS,
                   &cfg->timeouts.half_close_ms);
    fc_cfg_get_u32(ld, g, "timeouts.", "tunnel_ms", 1, MAX_TIMEOUT_MS, &cfg->timeouts.tunnel_ms);
}

static void load_limits(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"max_header_bytes", "max_body_bytes", "max_connections",
                                       NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *g;

    cfg->limits.max_header_bytes = 16384;
    cfg->limits.max_body_bytes = 0;
    cfg->limits.max_connections = fc_config_default_max_connections();
    if (fc_cfg_get_compound(ld, root, "", "limits", CONFIG_TYPE_GROUP, 0, &g) != FC_CFG_GOT)
        return;
    fc_cfg_check_keys(ld, g, "limits.", keys);

    fc_cfg_get_u32(ld, g, "limits.", "max_header_bytes", 1024, 1048576,
                   &cfg->limits.max_header_bytes);
    int64_t v;
    if (fc_cfg_get_int(ld, g, "limits.", "max_body_bytes", 0, INT64_MAX, &v) == FC_CFG_GOT)
        cfg->limits.max_body_bytes = (uint64_t)v;
    fc_cfg_get_u32(ld, g, "limits.", "max_connections", 0, 10000000, &cfg->limits.max_connections);
    if (cfg->limits.max_connections == 0)
        cfg->limits.max_connections = fc_config_default_max_connections();
}

uint32_t fc_config_default_max_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 10000000;
    uint64_t n = rl.rlim_cur > 128 + 32 ? (rl.rlim_cur - 128) / 2 : 16;
    return n > 10000000 ? 10000000 : (uint32_t)n;
}

/*
 * A plugin group (`strategy`, `health`, `rate_limit`, `cache`) of a pool. Only `plugin`
 * is checked; the other keys are the plugin's own.
 */
static void load_plugin(struct fc_cfg_loader *ld, const config_setting_t *pool, const char *prefix,
                        const char *name, int required, struct fc_conf_plugin *out)
{
    const config_setting_t *g;
    if (fc_cfg_get_compound(ld, pool, prefix, name, CONFIG_TYPE_GROUP, required, &g) != FC_CFG_GOT)
        return;
    out->group = g;
    out->line = fc_cfg_line(g);

    char sub[320];
    snprintf(sub, sizeof(sub), "%s%s.", prefix, name);
    const char *v;
    if (fc_cfg_get_string(ld, g, sub, "plugin", 1, &v) != FC_CFG_GOT)
        return;
    out->name = fc_cfg_strdup(ld, v);
    if (strchr(v, '/') != NULL)
        out->path = fc_cfg_resolve_path(ld, v);
    else if (ld->cfg->plugin_dir != NULL) /* NULL only after running out of memory */
        out->path = fc_cfg_plugin_file(ld, ld->cfg->plugin_dir, v);
}

/*
 * The keys of a `health` group that the core reads itself; the plugin reads
 * the others (and is told that these are taken).
 */
static void load_health(struct fc_cfg_loader *ld, const config_setting_t *g, const char *prefix,
                        struct fc_conf_health *h)
{
    char sub[320];
    snprintf(sub, sizeof(sub), "%shealth.", prefix);
    h->interval_ms = 2000;
    h->timeout_ms = 1000;
    h->rise = 2;
    h->fall = 3;
    h->initial_up = 1;
    fc_cfg_get_u32(ld, g, sub, "interval_ms", 10, MAX_TIMEOUT_MS, &h->interval_ms);
    fc_cfg_get_u32(ld, g, sub, "timeout_ms", 1, MAX_TIMEOUT_MS, &h->timeout_ms);
    fc_cfg_get_u32(ld, g, sub, "rise", 1, 100, &h->rise);
    fc_cfg_get_u32(ld, g, sub, "fall", 1, 100, &h->fall);
    const char *initial;
    if (fc_cfg_get_string(ld, g, sub, "initial", 0, &initial) == FC_CFG_GOT) {
        if (strcmp(initial, "up") == 0 || strcmp(initial, "down") == 0) {
            h->initial_up = initial[0] == 'u';
        } else {
            const config_setting_t *s = config_setting_get_member(g, "initial");
            fc_cfg_report(ld, s, fc_cfg_line(s), sub, "initial",
                          "expected \"up\" or \"down\" (got \"%s\")", initial);
        }
    }
}

/* `key` of a `rate_limit` group: "address" (the default) or "header:NAME". */
static void load_ratelimit(struct fc_cfg_loader *ld, const config_setting_t *g, const char *prefix,
                           struct fc_conf_ratelimit *rl)
{
    char sub[320];
    snprintf(sub, sizeof(sub), "%srate_limit.", prefix);
    const char *key;
    if (fc_cfg_get_string(ld, g, sub, "key", 0, &key) != FC_CFG_GOT || strcmp(key, "address") == 0)
        return;
    if (strncmp(key, "header:", 7) == 0 && key[7] != '\0' && strpbrk(key + 7, " \t:") == NULL) {
        rl->header = fc_cfg_strdup(ld, key + 7);
        return;
    }
    const config_setting_t *s = config_setting_get_member(g, "key");
    fc_cfg_report(ld, s, fc_cfg_line(s), sub, "key",
                  "expected \"address\" or \"header:NAME\" (got \"%s\")", key);
}

/* A DNS name: letters, digits, '-', '_' and '.', in labels of at most 63 bytes. */
static int valid_dns_name(const char *name)
{
    size_t n = strlen(name), label = 0;
    if (n == 0 || n > 253 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/*
 * Backend i, when DNS gives its addresses: "srv:NAME", or a "host:port"
 * with `resolve = true`. Returns 1 for such an entry (read), 0 for a plain
 * one (the caller reads its address), -1 after an error was reported.
 */
static int load_discovered(struct fc_cfg_loader *ld, const config_setting_t *g, const char *sub,
                           struct fc_conf_pool *pool, unsigned i)
{
    struct fc_conf_backend *b = &pool->backends[i];
    const char *address;
    if (fc_cfg_get_string(ld, g, sub, "address", 1, &address) != FC_CFG_GOT)
        return -1;
    const config_setting_t *as = config_setting_get_member(g, "address");
    int resolve = -1; /* absent */
    if (fc_cfg_get_bool(ld, g, sub, "resolve", &resolve) == FC_CFG_INVALID)
        return -1;
    const config_setting_t *rs = config_setting_get_member(g, "resolve");
    char name[256];
    if (strncmp(address, "srv:", 4) == 0) {
        if (resolve == 0) {
            fc_cfg_report(ld, rs, fc_cfg_line(rs), sub, "resolve",
                          "an \"srv:\" address is always resolved");
            return -1;
        }
        if (config_setting_get_member(g, "weight") != NULL) {
            const config_setting_t *ws = config_setting_get_member(g, "weight");
            fc_cfg_report(ld, ws, fc_cfg_line(ws), sub, "weight",
                          "the weights of an \"srv:\" address come from its SRV records");
            return -1;
        }
        if (!valid_dns_name(address + 4)) {
            fc_cfg_report(ld, as, fc_cfg_line(as), sub, "address",
                          "invalid SRV name \"%s\" (expected \"srv:_service._proto.name\")",
                          address);
            return -1;
        }
        snprintf(name, sizeof(name), "%s", address + 4);
        b->discover = FC_DISCOVER_SRV;
    } else if (resolve == 1) {
        const char *why = NULL;
        uint16_t port;
        if (fc_config_split_host(address, name, sizeof(name), &port, &why) != 0) {
            fc_cfg_report(ld, as, fc_cfg_line(as), sub, "address", "invalid address \"%s\": %s",
                          address, why);
            return -1;
        }
        if (fc_config_is_ip(name) || address[0] == '[') {
            fc_cfg_report(ld, rs, fc_cfg_line(rs), sub, "resolve",
                          "\"%s\" is an IP address: `resolve = true` needs a host name", address);
            return -1;
        }
        if (!valid_dns_name(name)) {
            fc_cfg_report(ld, as, fc_cfg_line(as), sub, "address", "invalid host name \"%s\"",
                          name);
            return -1;
        }
        b->discover = FC_DISCOVER_HOST;
        b->port = port;
    } else {
        return 0;
    }
    /* Names are compared as DNS compares them: without case, without a final dot. */
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        name[n - 1] = '\0';
    for (char *c = name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    for (unsigned j = 0; j < i; j++) {
        const struct fc_conf_backend *o = &pool->backends[j];
        if (o->discover == b->discover && o->dns_name != NULL && strcmp(o->dns_name, name) == 0 &&
            o->port == b->port) {
            fc_cfg_report(ld, as, fc_cfg_line(as), sub, "address",
                          "duplicate backend address (same as backends[%u] on line %d)", j,
                          o->line);
            b->discover = FC_DISCOVER_NONE;
            return -1;
        }
    }
    b->address = fc_cfg_strdup(ld, address);
    b->dns_name = fc_cfg_strdup(ld, name);
    return 1;
}

static void load_backends(struct fc_cfg_loader *ld, const config_setting_t *pg, const char *prefix,
                          struct fc_conf_pool *pool)
{
    static const char *const keys[] = {"address", "weight", "resolve", NULL};
    const config_setting_t *list;
    if (fc_cfg_get_compound(ld, pg, prefix, "backends", CONFIG_TYPE_LIST, 1, &list) != FC_CFG_GOT)
        return;
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0) {
        fc_cfg_report(ld, list, fc_cfg_line(list), prefix, "backends",
                      "at least one backend is required");
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
        const config_setting_t *g = fc_cfg_list_group(ld, list, i, list_key);
        if (g == NULL)
            continue;
        b->line = fc_cfg_line(g);

        char sub[352];
        snprintf(sub, sizeof(sub), "%s[%u].", list_key, i);
        fc_cfg_check_keys(ld, g, sub, keys);
        fc_cfg_get_u32(ld, g, sub, "weight", 1, MAX_WEIGHT, &b->weight);
        int rc = load_discovered(ld, g, sub, pool, i);
        if (rc < 0)
            continue;
        if (rc > 0) {
            pool->n_discover++;
            continue;
        }
        if (fc_cfg_get_address(ld, g, sub, &b->address, &b->addr, &b->addr_len) != FC_CFG_GOT)
            continue;
        for (unsigned j = 0; j < i; j++) {
            if (ok[j] && fc_cfg_same_address(&pool->backends[j].addr, &b->addr)) {
                const config_setting_t *s = config_setting_get_member(g, "address");
                fc_cfg_report(ld, s, fc_cfg_line(s), sub, "address",
                              "duplicate backend address (same as backends[%u] on line %d)", j,
                              pool->backends[j].line);
                break;
            }
        }
        ok[i] = 1;
    }
    free(ok);
}

/* `retry_on`: a list of "connect", "reset", "502", "503", "504". */
static void load_retry_on(struct fc_cfg_loader *ld, const config_setting_t *pg, const char *prefix,
                          unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } kinds[] = {{"connect", FC_RETRY_CONNECT},
                 {"reset", FC_RETRY_RESET},
                 {"502", FC_RETRY_502},
                 {"503", FC_RETRY_503},
                 {"504", FC_RETRY_504}};
    const config_setting_t *list;
    *out = FC_RETRY_CONNECT;
    if (fc_cfg_get_list(ld, pg, prefix, "retry_on",
                        "expected a list such as ( \"connect\", \"reset\", \"503\" )",
                        &list) != FC_CFG_GOT)
        return;
    *out = 0;
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *v =
            config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
        unsigned bit = 0;
        for (size_t k = 0; v != NULL && k < sizeof(kinds) / sizeof(kinds[0]); k++)
            if (strcmp(v, kinds[k].name) == 0)
                bit = kinds[k].bit;
        if (bit == 0) {
            fc_cfg_report(ld, list, fc_cfg_line(list), prefix, "retry_on",
                          "\"%s\" is none of \"connect\", \"reset\", \"502\", \"503\", \"504\"",
                          v != NULL ? v : "(not a string)");
            return;
        }
        *out |= bit;
    }
}

static void load_pool(struct fc_cfg_loader *ld, const config_setting_t *pg, uint32_t index)
{
    static const char *const keys[] = {
        "name",     "strategy",  "health",          "rate_limit", "cache",    "retries",
        "backends", "max_fails", "fail_timeout_ms", "tls",        "retry_on", "resolve_interval_ms",
        NULL};
    struct fc_conf_pool *pool = &ld->cfg->pools[index];
    char prefix[288];
    if (ld->pool_named[index])
        snprintf(prefix, sizeof(prefix), "pool \"%s\": ", ld->pool_names[index]);
    else
        snprintf(prefix, sizeof(prefix), "pools[%u].", index);

    pool->line = fc_cfg_line(pg);
    pool->retries = 1;
    pool->max_fails = 3;
    pool->fail_timeout_ms = 10000;
    if (ld->pool_names[index] != NULL)
        pool->name = fc_cfg_strdup(ld, ld->pool_names[index]);

    fc_cfg_check_keys(ld, pg, prefix, keys);
    load_plugin(ld, pg, prefix, "strategy", 1, &pool->strategy);
    load_plugin(ld, pg, prefix, "health", 0, &pool->health);
    if (pool->health.group != NULL)
        load_health(ld, pool->health.group, prefix, &pool->health_conf);
    load_plugin(ld, pg, prefix, "rate_limit", 0, &pool->rate_limit);
    if (pool->rate_limit.group != NULL)
        load_ratelimit(ld, pool->rate_limit.group, prefix, &pool->rate_limit_conf);
    load_plugin(ld, pg, prefix, "cache", 0, &pool->cache);
    fc_cfg_get_u32(ld, pg, prefix, "retries", 0, MAX_RETRIES, &pool->retries);
    load_retry_on(ld, pg, prefix, &pool->retry_on);
    fc_cfg_get_u32(ld, pg, prefix, "max_fails", 0, 100, &pool->max_fails);
    fc_cfg_get_u32(ld, pg, prefix, "fail_timeout_ms", 1, MAX_TIMEOUT_MS, &pool->fail_timeout_ms);
    pool->resolve_interval_ms = 5000;
    fc_cfg_get_u32(ld, pg, prefix, "resolve_interval_ms", 100, MAX_TIMEOUT_MS,
                   &pool->resolve_interval_ms);
    load_backends(ld, pg, prefix, pool);
    fc_cfg_load_pool_tls(ld, pg, prefix, &pool->tls);
}

/*
 * Pools come before listeners and routes, which refer to them by name. The
 * names are read in a first pass so that every pool's errors can carry its
 * name, and a duplicate is known before any of the pool's keys is reported.
 */
static void load_pools(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *list;
    if (fc_cfg_get_compound(ld, root, "", "pools", CONFIG_TYPE_LIST, 1, &list) != FC_CFG_GOT)
        return;
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0) {
        fc_cfg_report(ld, list, fc_cfg_line(list), "", "pools", "at least one pool is required");
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
        if (fc_cfg_get_string(ld, g, prefix, "name", 1, &name) != FC_CFG_GOT)
            continue;
        ld->pool_names[i] = name;
        int first = fc_cfg_find_pool(ld, name);
        if (first >= 0 && (unsigned)first < i) {
            const config_setting_t *s = config_setting_get_member(g, "name");
            fc_cfg_report(ld, s, fc_cfg_line(s), prefix, "name",
                          "duplicate pool name \"%s\" (first defined on line %d)", name,
                          fc_cfg_line(config_setting_get_elem(list, (unsigned)first)));
            continue;
        }
        ld->pool_named[i] = 1;
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = fc_cfg_list_group(ld, list, i, "pools");
        if (g != NULL)
            load_pool(ld, g, i);
    }
}

static void load_listeners(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"address", "pool", "tls", "defer_accept", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *list;
    if (fc_cfg_get_compound(ld, root, "", "listeners", CONFIG_TYPE_LIST, 1, &list) != FC_CFG_GOT)
        return;
    unsigned n = (unsigned)config_setting_length(list);
    if (n == 0) {
        fc_cfg_report(ld, list, fc_cfg_line(list), "", "listeners",
                      "at least one listener is required");
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
        const config_setting_t *g = fc_cfg_list_group(ld, list, i, "listeners");
        if (g == NULL)
            continue;
        l->line = fc_cfg_line(g);
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "listeners[%u].", i);
        fc_cfg_check_keys(ld, g, prefix, keys);
        l->defer_accept = 1;
        fc_cfg_get_bool(ld, g, prefix, "defer_accept", &l->defer_accept);
        fc_cfg_get_pool_ref(ld, g, prefix, &l->pool);
        if (fc_cfg_get_address(ld, g, prefix, &l->address, &l->addr, &l->addr_len) != FC_CFG_GOT)
            continue;
        for (unsigned j = 0; j < i; j++) {
            if (ok[j] && fc_cfg_same_address(&cfg->listeners[j].addr, &l->addr)) {
                const config_setting_t *s = config_setting_get_member(g, "address");
                fc_cfg_report(ld, s, fc_cfg_line(s), prefix, "address",
                              "duplicate listener address (same as listeners[%u] on line %d)", j,
                              cfg->listeners[j].line);
                break;
            }
        }
        ok[i] = 1;
        fc_cfg_load_listener_tls(ld, g, prefix, l->address, &l->tls);
    }
    free(ok);
}

static void load_routes(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"host", "path_prefix", "pool", NULL};
    struct fc_config *cfg = ld->cfg;
    const config_setting_t *list;
    if (fc_cfg_get_compound(ld, root, "", "routes", CONFIG_TYPE_LIST, 0, &list) != FC_CFG_GOT)
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
        const config_setting_t *g = fc_cfg_list_group(ld, list, i, "routes");
        if (g == NULL)
            continue;
        r->line = fc_cfg_line(g);
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "routes[%u].", i);
        fc_cfg_check_keys(ld, g, prefix, keys);

        const char *v;
        int host = fc_cfg_get_string(ld, g, prefix, "host", 0, &v);
        if (host == FC_CFG_GOT)
            r->host = fc_cfg_strdup(ld, v);
        int path = fc_cfg_get_string(ld, g, prefix, "path_prefix", 0, &v);
        if (path == FC_CFG_GOT) {
            if (v[0] != '/') {
                const config_setting_t *s = config_setting_get_member(g, "path_prefix");
                fc_cfg_report(ld, s, fc_cfg_line(s), prefix, "path_prefix",
                              "must start with '/' (got \"%s\")", v);
            } else {
                r->path_prefix = fc_cfg_strdup(ld, v);
            }
        }
        if (host == FC_CFG_ABSENT && path == FC_CFG_ABSENT) {
            char key[32];
            snprintf(key, sizeof(key), "routes[%u]", i);
            fc_cfg_report(ld, g, r->line, "", key, "needs host, path_prefix or both");
        }
        fc_cfg_get_pool_ref(ld, g, prefix, &r->pool);
    }
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/*
 * The admin token: the content of token_file, read now so that `fulcrum -t`
 * and a reload refuse a file that the daemon could not use. Opened without
 * blocking (a FIFO would hold the load up) and refused unless it is a
 * regular file. Returns the trimmed token, or NULL after reporting.
 */
static char *read_token(struct fc_cfg_loader *ld, const config_setting_t *s, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        fc_cfg_report(ld, s, fc_cfg_line(s), "admin.", "token_file", "cannot read \"%s\": %s", path,
                      strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        fc_cfg_report(ld, s, fc_cfg_line(s), "admin.", "token_file", "\"%s\" is not a regular file",
                      path);
        return NULL;
    }
    char buf[MAX_TOKEN_BYTES + 1];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof(buf) && (got = read(fd, buf + n, sizeof(buf) - n)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int err = errno;
            close(fd);
            fc_cfg_report(ld, s, fc_cfg_line(s), "admin.", "token_file", "cannot read \"%s\": %s",
                          path, strerror(err));
            return NULL;
        }
        n += (size_t)got;
    }
    close(fd);
    if (n > MAX_TOKEN_BYTES) {
        fc_cfg_report(ld, s, fc_cfg_line(s), "admin.", "token_file",
                      "\"%s\" is longer than %d bytes", path, MAX_TOKEN_BYTES);
        return NULL;
    }
    size_t start = 0, end = n;
    while (start < end && is_space(buf[start]))
        start++;
    while (end > start && is_space(buf[end - 1]))
        end--;
    if (start == end) {
        fc_cfg_report(ld, s, fc_cfg_line(s), "admin.", "token_file", "\"%s\" is empty", path);
        return NULL;
    }
    /* What a client can send after "Bearer ": visible ASCII, no spaces. */
    for (size_t i = start; i < end; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c < 0x21 || c > 0x7e) {
            fc_cfg_report(ld, s, fc_cfg_line(s), "admin.", "token_file",
                          "\"%s\": the token must be one word of visible ASCII characters", path);
            return NULL;
        }
    }
    char *token = strndup(buf + start, end - start);
    explicit_bzero(buf, sizeof(buf));
    if (token == NULL)
        ld->nomem = 1;
    return token;
}

/* 127.0.0.0/8, ::1, and 127.0.0.0/8 mapped into IPv6. */
static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

/*
 * The `admin` group (after the listeners, whose addresses it must not take).
 * Without a token, only a loopback address or a unix socket is accepted:
 * anyone who can reach the admin listener can read and change the daemon.
 */
static void load_admin(struct fc_cfg_loader *ld, const config_setting_t *root)
{
    static const char *const keys[] = {"address", "token_file", NULL};
    struct fc_config *cfg = ld->cfg;
    struct fc_conf_admin *a = &cfg->admin;
    const config_setting_t *g;
    if (fc_cfg_get_compound(ld, root, "", "admin", CONFIG_TYPE_GROUP, 0, &g) != FC_CFG_GOT)
        return;
    cfg->has_admin = 1;
    fc_cfg_check_keys(ld, g, "admin.", keys);
    a->line = fc_cfg_line(g);

    const char *v;
    int have_token_file = 0;
    if (fc_cfg_get_string(ld, g, "admin.", "token_file", 0, &v) == FC_CFG_GOT) {
        const config_setting_t *s = config_setting_get_member(g, "token_file");
        have_token_file = 1;
        a->token_line = fc_cfg_line(s);
        a->token_file = fc_cfg_resolve_path(ld, v);
        if (a->token_file != NULL)
            a->token = read_token(ld, s, a->token_file);
    } else if (config_setting_get_member(g, "token_file") != NULL) {
        have_token_file = 1; /* present but invalid: reported */
    }

    if (fc_cfg_get_string(ld, g, "admin.", "address", 1, &v) != FC_CFG_GOT)
        return;
    const config_setting_t *s = config_setting_get_member(g, "address");
    a->line = fc_cfg_line(s);
    if (strncmp(v, "unix:", 5) == 0) {
        if (v[5] == '\0') {
            fc_cfg_report(ld, s, a->line, "admin.", "address",
                          "invalid address \"%s\": expected a path after \"unix:\"", v);
            return;
        }
        char *path = fc_cfg_resolve_path(ld, v + 5);
        if (path == NULL)
            return;
        if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            fc_cfg_report(ld, s, a->line, "admin.", "address",
                          "invalid address \"%s\": the socket's path \"%s\" is longer than %zu "
                          "bytes",
                          v, path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            free(path);
            return;
        }
        a->unix_path = path;
        a->address = fc_cfg_strdup(ld, v);
        return;
    }
    char *text = NULL;
    if (fc_cfg_get_address(ld, g, "admin.", &text, &a->addr, &a->addr_len) != FC_CFG_GOT)
        return;
    a->address = text;
    if (!have_token_file && !is_loopback(&a->addr))
        fc_cfg_report(ld, s, a->line, "admin.", "address",
                      "a non-loopback admin address needs admin.token_file (got \"%s\")", v);
    for (uint32_t i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].address != NULL &&
            fc_cfg_same_address(&cfg->listeners[i].addr, &a->addr)) {
            fc_cfg_report(ld, s, a->line, "admin.", "address",
                          "the same address as listeners[%u] on line %d", i,
                          cfg->listeners[i].line);
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                          */
/* ------------------------------------------------------------------------ */

/* libconfig's own bound on nested @include. */
#define MAX_INCLUDE_DEPTH 10

/*
 * libconfig 1.5's scanner ends the process ("input in flex scanner failed")
 * when an @include names a folder, and a SIGHUP must never do that. So the
 * include targets are checked first, as libconfig will read them: every
 * `@include "name"` at the start of a line outside a comment, relative to the
 * config's folder, nested ones too. A folder or anything else that is not a
 * regular file is an error naming FILE:LINE; a missing file is left for
 * libconfig to report. Returns 0 or -1.
 */
static int check_includes(struct fc_cfg_loader *ld, FILE *f, const char *name, int depth)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, in_comment = 0, rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        /*
         * A configuration is text. A NUL byte would end a name early for
         * libconfig and not for us (an @include of "/\0tmp" names "/"), so
         * the file is refused whole.
         */
        if (memchr(line, '\0', (size_t)n) != NULL) {
            fc_log(FC_LOG_ERROR, "%s:%d: a NUL byte: not a text file", name, lineno);
            ld->errors++;
            rc = -1;
            break;
        }
        const char *p = line;
        if (in_comment) {
            const char *end = strstr(p, "*/");
            if (end == NULL)
                continue;
            in_comment = 0;
            p = end + 2;
        }
        while (*p == ' ' || *p == '\t')
            p++;
        /* A comment that starts here and does not end on this line hides what follows. */
        const char *open = strstr(p, "/*");
        if (open != NULL && strstr(open + 2, "*/") == NULL)
            in_comment = 1;
        if (strncmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
            continue;
        const char *q = strchr(p + 8, '"');
        const char *qe = q != NULL ? strchr(q + 1, '"') : NULL;
        if (qe == NULL)
            continue; /* a syntax error libconfig reports */
        char target[1024];
        snprintf(target, sizeof(target), "%.*s", (int)(qe - q - 1), q + 1);
        char *path = fc_cfg_resolve_path(ld, target);
        if (path == NULL)
            return -1;
        struct stat st;
        FILE *inc = NULL;
        if (stat(path, &st) != 0) {
            /* Missing: libconfig says so itself. */
        } else if (!S_ISREG(st.st_mode)) {
            fc_log(FC_LOG_ERROR, "%s:%d: @include \"%s\": %s", name, lineno, target,
                   S_ISDIR(st.st_mode) ? "is a folder, not a file" : "is not a regular file");
            ld->errors++;
            rc = -1;
        } else if (depth + 1 < MAX_INCLUDE_DEPTH && (inc = fopen(path, "r")) != NULL) {
            if (check_includes(ld, inc, path, depth + 1) != 0)
                rc = -1;
            fclose(inc);
        }
        free(path);
    }
    free(line);
    return rc;
}

/*
 * Reads the file into cfg->lc. Opening it here, rather than through
 * config_read_file(), gives the reason a file cannot be read, and keeps
 * folders away from libconfig's scanner, which exits the process on them.
 */
static int read_file(struct fc_cfg_loader *ld)
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
    if (check_includes(ld, f, cfg->path, 0) != 0) {
        fclose(f);
        return FC_EINVAL;
    }
    rewind(f);
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
    static const char *const keys[] = {"workers", "plugin_dir", "log",       "timeouts",
                                       "limits",  "listeners",  "routes",    "pools",
                                       "admin",   "state_file", "resolvers", NULL};
    *out = NULL;
    struct fc_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return FC_ENOMEM;
    config_init(&cfg->lc);
    cfg->refs = 1;
    cfg->path = strdup(path);
    cfg->dir = fc_cfg_dir_of(path);
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

    struct fc_cfg_loader ld = {.cfg = cfg};
    int rc = read_file(&ld);
    if (rc != 0) {
        fc_config_free(cfg);
        return rc;
    }

    const config_setting_t *root = config_root_setting(&cfg->lc);
    fc_cfg_check_keys(&ld, root, "", keys);
    load_globals(&ld, root);
    load_log(&ld, root);
    load_timeouts(&ld, root);
    load_limits(&ld, root);
    load_pools(&ld, root);
    load_listeners(&ld, root);
    load_routes(&ld, root);
    load_admin(&ld, root);

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

void fc_config_acquire(struct fc_config *cfg)
{
    __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
}

void fc_config_free(struct fc_config *cfg)
{
    if (cfg == NULL || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (uint32_t i = 0; i < cfg->n_pools; i++) {
        struct fc_conf_pool *p = &cfg->pools[i];
        free(p->name);
        free_plugin(&p->strategy);
        free_plugin(&p->health);
        free_plugin(&p->rate_limit);
        free_plugin(&p->cache);
        free(p->rate_limit_conf.header);
        for (uint32_t j = 0; j < p->n_backends; j++) {
            free(p->backends[j].address);
            free(p->backends[j].dns_name);
        }
        free(p->backends);
        fc_tls_client_free(p->tls);
    }
    free(cfg->pools);
    for (uint32_t i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].address);
        fc_tls_server_free(cfg->listeners[i].tls);
    }
    free(cfg->listeners);
    for (uint32_t i = 0; i < cfg->n_routes; i++) {
        free(cfg->routes[i].host);
        free(cfg->routes[i].path_prefix);
    }
    free(cfg->routes);
    free(cfg->plugin_dir);
    free(cfg->state_file);
    free(cfg->resolvers);
    free(cfg->access_log_path);
    free(cfg->admin.address);
    free(cfg->admin.unix_path);
    free(cfg->admin.token_file);
    if (cfg->admin.token != NULL) {
        explicit_bzero(cfg->admin.token, strlen(cfg->admin.token));
        free(cfg->admin.token);
    }
    config_destroy(&cfg->lc);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}
