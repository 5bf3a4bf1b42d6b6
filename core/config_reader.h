/*
 * Reading the configuration tree: what every section of the loader
 * (config.c, and config_tls.c for the `tls` groups) uses to report errors,
 * resolve paths and read typed settings. Private to the loader's files; see
 * config.c for the error format and the out-of-memory policy.
 */
#ifndef FC_CONFIG_READER_H
#define FC_CONFIG_READER_H

#include "config.h"

#include <libconfig.h>
#include <stdint.h>
#include <sys/socket.h>

/* State of one load: the config being built and what went wrong so far. */
struct fc_cfg_loader {
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

/* What the getters return. */
enum {
    FC_CFG_GOT = 0,     /* present and valid; the output is set */
    FC_CFG_ABSENT = 1,  /* absent; the output is left alone */
    FC_CFG_INVALID = 2, /* present but wrong; already reported */
};

/*
 * Logs one error as "FILE:LINE: PREFIXKEY: message" and counts it. `s` is the
 * setting the line was taken from (for its file), or NULL for the main file.
 */
void fc_cfg_report(struct fc_cfg_loader *ld, const config_setting_t *s, int line,
                   const char *prefix, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* The line of a setting; the top-level group has none, so it counts as line 1. */
int fc_cfg_line(const config_setting_t *s);

/* A copy of s, or NULL (and noted in ld->nomem) when out of memory. */
char *fc_cfg_strdup(struct fc_cfg_loader *ld, const char *s);

/* A path from the file: absolute as is, relative against the config's folder. */
char *fc_cfg_resolve_path(struct fc_cfg_loader *ld, const char *value);

/* "<plugin_dir>/<name>.so" for a plugin named without a '/'. */
char *fc_cfg_plugin_file(struct fc_cfg_loader *ld, const char *plugin_dir, const char *name);

/* The folder of `path` as written: "." when it has no slash, "/" for "/x". */
char *fc_cfg_dir_of(const char *path);

/* Reports every member of `group` whose name is not in `allowed` (NULL-terminated). */
void fc_cfg_check_keys(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                       const char *const *allowed);

/* An integer (libconfig int or int64) in [min, max]. */
int fc_cfg_get_int(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                   const char *name, int64_t min, int64_t max, int64_t *out);

/* An integer in [min, max] that fits a uint32_t; `*out` keeps its default when absent. */
void fc_cfg_get_u32(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, int64_t min, int64_t max, uint32_t *out);

/* A boolean (true or false); `*out` keeps its default when absent. */
int fc_cfg_get_bool(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, int *out);

/* A non-empty string; *out points into the libconfig tree. */
int fc_cfg_get_string(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                      const char *name, int required, const char **out);

/* A member of the given libconfig type (a group or a list). */
int fc_cfg_get_compound(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                        const char *name, int type, int required, const config_setting_t **out);

/*
 * A member that is a list (( ... )) or an array ([ ... ]), as a list of
 * scalars may be written either way. Reports `expected` (the whole message,
 * "expected a list of ...") for anything else.
 */
int fc_cfg_get_list(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                    const char *name, const char *expected, const config_setting_t **out);

/*
 * Element i of a list, which must be a group. `key` is the list's full key
 * ("listeners", "pool \"web\": backends") for the report.
 */
const config_setting_t *fc_cfg_list_group(struct fc_cfg_loader *ld, const config_setting_t *list,
                                          unsigned i, const char *key);

/* Same address family, address and port. */
int fc_cfg_same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/*
 * Reads `address` of `group` into the outputs. Returns FC_CFG_GOT, or
 * FC_CFG_INVALID after reporting (a missing key included).
 */
int fc_cfg_get_address(struct fc_cfg_loader *ld, const config_setting_t *group, const char *prefix,
                       char **text, struct sockaddr_storage *addr, socklen_t *len);

/* Index of the pool named `name`, or -1. */
int fc_cfg_find_pool(const struct fc_cfg_loader *ld, const char *name);

/* Reads the `pool` key of a listener or route into *index. */
void fc_cfg_get_pool_ref(struct fc_cfg_loader *ld, const config_setting_t *group,
                         const char *prefix, uint32_t *index);

struct fc_tls_server;
struct fc_tls_client;

/*
 * A listener's `tls` group (config_tls.c), if it has one: its settings
 * checked and its certificates loaded into *out (NULL when absent or wrong:
 * every error is reported, naming the file at fault). `lprefix` is the
 * listener's key prefix ("listeners[0]."), `address` its address (the
 * session cache's context).
 */
void fc_cfg_load_listener_tls(struct fc_cfg_loader *ld, const config_setting_t *listener,
                              const char *lprefix, const char *address, struct fc_tls_server **out);

/* A pool's `tls` group (config_tls.c), if it has one, into *out (NULL when absent or wrong). */
void fc_cfg_load_pool_tls(struct fc_cfg_loader *ld, const config_setting_t *pool,
                          const char *pprefix, struct fc_tls_client **out);

#endif
