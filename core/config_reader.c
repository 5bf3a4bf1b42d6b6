/*
 * Reading the configuration tree; see config_reader.h. Also parsing the
 * addresses the file holds (fc_config_parse_address()), which others use too.
 */
#include "config_reader.h"

#include "dns.h"
#include "log.h"

#include <inttypes.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Reporting                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Logs one error as "FILE:LINE: PREFIXKEY: message". `s` is the setting the
 * line was taken from (for its file), or NULL for the main file.
 */
void fc_cfg_report(struct fc_cfg_loader *ld, const config_setting_t *s, int line,
                   const char *prefix, const char *key, const char *fmt, ...)
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
int fc_cfg_line(const config_setting_t *s)
{
    int line = (int)config_setting_source_line(s);
    return line > 0 ? line : 1;
}

/* ------------------------------------------------------------------------ */
/* Strings and paths                                                         */
/* ------------------------------------------------------------------------ */

char *fc_cfg_strdup(struct fc_cfg_loader *ld, const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        ld->nomem = 1;
    return p;
}

/* Returns a new string a + b + c, or NULL (and notes it) when out of memory. */
static char *concat3(struct fc_cfg_loader *ld, const char *a, const char *b, const char *c)
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
static char *join_path(struct fc_cfg_loader *ld, const char *dir, const char *rel)
{
    size_t n = strlen(dir);
    return concat3(ld, dir, (n > 0 && dir[n - 1] == '/') ? "" : "/", rel);
}

/* A path from the file: absolute as is, relative against the config's folder. */
char *fc_cfg_resolve_path(struct fc_cfg_loader *ld, const char *value)
{
    if (value[0] == '/')
        return fc_cfg_strdup(ld, value);
    return join_path(ld, ld->cfg->dir, value);
}

/* "<plugin_dir>/<name>.so" for a plugin named without a '/'. */
char *fc_cfg_plugin_file(struct fc_cfg_loader *ld, const char *plugin_dir, const char *name)
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
char *fc_cfg_dir_of(const char *path)
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

/* Reports every member of `group` whose name is not in `allowed` (NULL-terminated). */
void fc_cfg_check_keys(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
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
            fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name, "unknown key");
    }
}

static void report_missing(struct fc_cfg_loader *ld, const config_setting_t *group,
                           const char *prefix, const char *name)
{
    fc_cfg_report(ld, group, fc_cfg_line(group), prefix, name, "missing required key");
}

/* An integer (libconfig int or int64) in [min, max]. */
int fc_cfg_get_int(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                   const char *name, int64_t min, int64_t max, int64_t *out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL)
        return FC_CFG_ABSENT;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name, "expected an integer");
        return FC_CFG_INVALID;
    }
    int64_t v = (int64_t)config_setting_get_int64(s);
    if (v < min || v > max) {
        if (max == INT64_MAX)
            fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name,
                          "must be at least %" PRId64 " (got %" PRId64 ")", min, v);
        else
            fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name,
                          "must be between %" PRId64 " and %" PRId64 " (got %" PRId64 ")", min, max,
                          v);
        return FC_CFG_INVALID;
    }
    *out = v;
    return FC_CFG_GOT;
}

/* An integer in [min, max] that fits a uint32_t; `*out` keeps its default when absent. */
void fc_cfg_get_u32(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, int64_t min, int64_t max, uint32_t *out)
{
    int64_t v;
    if (fc_cfg_get_int(ld, group, prefix, name, min, max, &v) == FC_CFG_GOT)
        *out = (uint32_t)v;
}

/* A non-empty string; *out points into the libconfig tree. */
int fc_cfg_get_bool(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, int *out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL)
        return FC_CFG_ABSENT;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name, "expected true or false");
        return FC_CFG_INVALID;
    }
    *out = config_setting_get_bool(s);
    return FC_CFG_GOT;
}

int fc_cfg_get_string(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                      const char *name, int required, const char **out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL) {
        if (required)
            report_missing(ld, group, prefix, name);
        return required ? FC_CFG_INVALID : FC_CFG_ABSENT;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name, "expected a string");
        return FC_CFG_INVALID;
    }
    const char *v = config_setting_get_string(s);
    if (v[0] == '\0') {
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name, "must not be empty");
        return FC_CFG_INVALID;
    }
    *out = v;
    return FC_CFG_GOT;
}

/* A member of the given libconfig type (a group or a list). */
int fc_cfg_get_compound(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                        const char *name, int type, int required, const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL) {
        if (required)
            report_missing(ld, group, prefix, name);
        return required ? FC_CFG_INVALID : FC_CFG_ABSENT;
    }
    if (config_setting_type(s) != type) {
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name,
                      type == CONFIG_TYPE_GROUP ? "expected a group ({ ... })"
                                                : "expected a list (( ... ))");
        return FC_CFG_INVALID;
    }
    *out = s;
    return FC_CFG_GOT;
}

int fc_cfg_get_list(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, const char *expected, const config_setting_t **out)
{
    const config_setting_t *s = config_setting_get_member(group, name);
    if (s == NULL)
        return FC_CFG_ABSENT;
    if (config_setting_type(s) != CONFIG_TYPE_LIST && config_setting_type(s) != CONFIG_TYPE_ARRAY) {
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, name, "%s", expected);
        return FC_CFG_INVALID;
    }
    *out = s;
    return FC_CFG_GOT;
}

/*
 * Element i of a list, which must be a group. `key` is the list's full key
 * ("listeners", "pool \"web\": backends") for the report.
 */
const config_setting_t *fc_cfg_list_group(struct fc_cfg_loader *ld, const config_setting_t *list,
                                          unsigned i, const char *key)
{
    const config_setting_t *s = config_setting_get_elem(list, i);
    if (config_setting_type(s) == CONFIG_TYPE_GROUP)
        return s;
    char idx[32];
    snprintf(idx, sizeof(idx), "[%u]", i);
    fc_cfg_report(ld, s, fc_cfg_line(s), key, idx, "expected a group ({ ... })");
    return NULL;
}

/* Same address family, address and port. */
int fc_cfg_same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
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
 * Reads `address` of `group` into the outputs. Returns FC_CFG_GOT, or FC_CFG_INVALID after
 * reporting (a missing key included).
 */
int fc_cfg_get_address(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                       char **text, struct sockaddr_storage *addr, socklen_t *len)
{
    const char *v;
    if (fc_cfg_get_string(ld, group, prefix, "address", 1, &v) != FC_CFG_GOT)
        return FC_CFG_INVALID;
    const config_setting_t *s = config_setting_get_member(group, "address");
    const char *why = NULL;
    int rc = fc_config_parse_address_with(v, ld->cfg->resolvers, addr, len, &why);
    if (rc == FC_ENOMEM) {
        ld->nomem = 1;
        return FC_CFG_INVALID;
    }
    if (rc != 0) {
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, "address", "invalid address \"%s\": %s", v,
                      why);
        return FC_CFG_INVALID;
    }
    *text = fc_cfg_strdup(ld, v);
    return FC_CFG_GOT;
}

/* Index of the pool named `name`, or -1. */
int fc_cfg_find_pool(const struct fc_cfg_loader *ld, const char *name)
{
    for (uint32_t i = 0; i < ld->cfg->n_pools; i++)
        if (ld->pool_names[i] != NULL && strcmp(ld->pool_names[i], name) == 0)
            return (int)i;
    return -1;
}

/* Reads the `pool` key of a listener or route into *index. */
void fc_cfg_get_pool_ref(struct fc_cfg_loader *ld, const config_setting_t *group,
                         const char *prefix, uint32_t *index)
{
    const char *name;
    if (fc_cfg_get_string(ld, group, prefix, "pool", 1, &name) != FC_CFG_GOT)
        return;
    int i = fc_cfg_find_pool(ld, name);
    if (i < 0) {
        const config_setting_t *s = config_setting_get_member(group, "pool");
        fc_cfg_report(ld, s, fc_cfg_line(s), prefix, "pool", "unknown pool \"%s\"", name);
        return;
    }
    *index = (uint32_t)i;
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */
/* ------------------------------------------------------------------------ */

/* Port: 1 to 5 decimal digits, 1..65535. */
static int parse_port(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return -1;
    long v = strtol(s, NULL, 10);
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

/*
 * Splits "IPv4:port", "[IPv6]:port" or "name:port" into the host (copied
 * into name, without brackets), the port and whether it was bracketed.
 */
static int split_address(const char *text, char *name, size_t cap, uint16_t *port_out,
                         int *bracketed_out, const char **why)
{
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
    int p = parse_port(port);
    if (p < 0) {
        *why = "invalid port";
        return FC_EINVAL;
    }
    size_t n = (size_t)(host_end - host);
    if (n >= cap) {
        *why = "host name too long";
        return FC_EINVAL;
    }
    memcpy(name, host, n);
    name[n] = '\0';
    *port_out = (uint16_t)p;
    *bracketed_out = bracketed;
    return 0;
}

int fc_config_split_host(const char *text, char *name, size_t cap, uint16_t *port, const char **why)
{
    const char *unused;
    int bracketed;
    return split_address(text, name, cap, port, &bracketed, why != NULL ? why : &unused);
}

/*
 * `numeric`: an address literal only. Otherwise a name is resolved through
 * c-ares and `servers` (NULL: /etc/resolv.conf), waiting for the answer:
 * see dns.h for where that may happen.
 */
static int parse_address(const char *text, int numeric, const char *servers,
                         struct sockaddr_storage *addr, socklen_t *len, const char **why)
{
    const char *unused;
    if (why == NULL)
        why = &unused;
    char name[NI_MAXHOST];
    uint16_t port;
    int bracketed;
    int rc = split_address(text, name, sizeof(name), &port, &bracketed, why);
    if (rc != 0)
        return rc;
    if (numeric && !bracketed && !fc_config_is_ip(name)) {
        *why = "expected an IP address, as in 127.0.0.1:9004 or [::1]:9004";
        return FC_EINVAL;
    }
    const char *reason = NULL;
    rc = fc_dns_lookup(name, bracketed ? AF_INET6 : AF_UNSPEC, port, servers, addr, len, &reason);
    if (rc == FC_ENOMEM) {
        *why = "out of memory";
        return rc;
    }
    if (rc != 0) {
        static __thread char text_why[320];
        if (bracketed)
            snprintf(text_why, sizeof(text_why), "invalid IPv6 address");
        else
            snprintf(text_why, sizeof(text_why), "cannot resolve host \"%.200s\": %.80s", name,
                     reason);
        *why = text_why;
        return FC_EINVAL;
    }
    return 0;
}

int fc_config_is_ip(const char *name)
{
    struct in6_addr a;
    return inet_pton(AF_INET, name, &a) == 1 || inet_pton(AF_INET6, name, &a) == 1;
}

int fc_config_parse_address(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                            const char **why)
{
    return parse_address(text, 0, NULL, addr, len, why);
}

int fc_config_parse_address_with(const char *text, const char *servers,
                                 struct sockaddr_storage *addr, socklen_t *len, const char **why)
{
    return parse_address(text, 0, servers, addr, len, why);
}

int fc_config_parse_ip_address(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                               const char **why)
{
    return parse_address(text, 1, NULL, addr, len, why);
}

void fc_config_format_address(const struct sockaddr_storage *addr, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    }
}
