#include "overlay.h"

#include "config.h"
#include "config_reader.h"
#include "log.h"

#include <fulcrum/plugin.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The state file's format; a file of another version is refused, not guessed at. */
#define STATE_VERSION 1
/* Weights, as the file allows them. */
#define WEIGHT_MAX 1000

static const char *const admin_names[] = {"ready", "drain", "maint"};

const char *fc_backend_admin_name(int admin)
{
    return admin >= 0 && admin <= FC_BACKEND_MAINT ? admin_names[admin] : "?";
}

int fc_backend_admin_parse(const char *text)
{
    for (int i = 0; i <= FC_BACKEND_MAINT; i++)
        if (strcmp(text, admin_names[i]) == 0)
            return i;
    return -1;
}

static struct fc_overlay_entry *fc_overlay_append(struct fc_overlay *o, const char *pool,
                                                  const char *address,
                                                  const struct sockaddr_storage *addr,
                                                  socklen_t addr_len);

static void entry_free(struct fc_overlay_entry *e)
{
    free(e->pool);
    free(e->address);
}

void fc_overlay_free(struct fc_overlay *o)
{
    for (uint32_t i = 0; i < o->n; i++)
        entry_free(&o->entries[i]);
    free(o->entries);
    *o = (struct fc_overlay){0};
}

int fc_overlay_copy(const struct fc_overlay *from, struct fc_overlay *to)
{
    *to = (struct fc_overlay){0};
    for (uint32_t i = 0; i < from->n; i++) {
        const struct fc_overlay_entry *f = &from->entries[i];
        struct fc_overlay_entry *e =
            fc_overlay_append(to, f->pool, f->address, &f->addr, f->addr_len);
        if (e == NULL) {
            fc_overlay_free(to);
            return FC_ENOMEM;
        }
        e->unresolved = f->unresolved;
        e->runtime = f->runtime;
        e->dns = f->dns;
        e->removed = f->removed;
        e->admin = f->admin;
        e->weight = f->weight;
    }
    return 0;
}

struct fc_overlay_entry *fc_overlay_find(const struct fc_overlay *o, const char *pool,
                                         const struct sockaddr_storage *addr)
{
    for (uint32_t i = 0; i < o->n; i++)
        if (!o->entries[i].unresolved && strcmp(o->entries[i].pool, pool) == 0 &&
            fc_cfg_same_address(&o->entries[i].addr, addr))
            return &o->entries[i];
    return NULL;
}

struct fc_overlay_entry *fc_overlay_put(struct fc_overlay *o, const char *pool, const char *address,
                                        const struct sockaddr_storage *addr, socklen_t addr_len)
{
    struct fc_overlay_entry *e = fc_overlay_find(o, pool, addr);
    return e != NULL ? e : fc_overlay_append(o, pool, address, addr, addr_len);
}

/* A new entry at the end, whatever the others are. */
static struct fc_overlay_entry *fc_overlay_append(struct fc_overlay *o, const char *pool,
                                                  const char *address,
                                                  const struct sockaddr_storage *addr,
                                                  socklen_t addr_len)
{
    struct fc_overlay_entry *e;
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? 2 * o->cap : 8;
        struct fc_overlay_entry *grown = realloc(o->entries, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        o->entries = grown;
        o->cap = cap;
    }
    e = &o->entries[o->n];
    *e = (struct fc_overlay_entry){.pool = strdup(pool), .address = strdup(address)};
    if (e->pool == NULL || e->address == NULL) {
        entry_free(e);
        return NULL;
    }
    e->addr = *addr;
    e->addr_len = addr_len;
    o->n++;
    return e;
}

void fc_overlay_drop(struct fc_overlay *o, struct fc_overlay_entry *e)
{
    uint32_t i = (uint32_t)(e - o->entries);
    entry_free(e);
    memmove(&o->entries[i], &o->entries[i + 1], (o->n - i - 1) * sizeof(*e));
    o->n--;
}

void fc_overlay_tidy(struct fc_overlay *o, struct fc_overlay_entry *e, uint32_t file_weight)
{
    if (!e->runtime && !e->removed && e->admin == FC_BACKEND_READY &&
        (e->weight == 0 || e->weight == file_weight))
        fc_overlay_drop(o, e);
}

const struct fc_conf_backend *fc_overlay_file_backend(const struct fc_conf_pool *pool,
                                                      const struct sockaddr_storage *addr)
{
    for (uint32_t b = 0; b < pool->n_backends; b++)
        if (fc_cfg_same_address(&pool->backends[b].addr, addr))
            return &pool->backends[b];
    return NULL;
}

static const struct fc_conf_pool *file_pool(const struct fc_config *cfg, const char *name)
{
    for (uint32_t p = 0; p < cfg->n_pools; p++)
        if (strcmp(cfg->pools[p].name, name) == 0)
            return &cfg->pools[p];
    return NULL;
}

/* Another entry than e for the same backend (a damaged state file naming it twice). */
static int named_twice(const struct fc_overlay *o, const struct fc_overlay_entry *e)
{
    for (uint32_t i = 0; i < o->n; i++)
        if (&o->entries[i] != e && !o->entries[i].unresolved &&
            strcmp(o->entries[i].pool, e->pool) == 0 &&
            fc_cfg_same_address(&o->entries[i].addr, &e->addr))
            return 1;
    return 0;
}

uint32_t fc_overlay_reconcile(struct fc_overlay *o, const struct fc_config *cfg, int quiet)
{
    uint32_t dropped = 0;
    for (uint32_t i = 0; i < o->n;) {
        struct fc_overlay_entry *e = &o->entries[i];
        const struct fc_conf_pool *pool = file_pool(cfg, e->pool);
        const struct fc_conf_backend *fb = NULL;
        int twice = 0;
        if (pool != NULL && e->unresolved) {
            for (uint32_t b = 0; b < pool->n_backends && fb == NULL; b++)
                if (strcmp(pool->backends[b].address, e->address) == 0)
                    fb = &pool->backends[b];
            if (fb != NULL) {
                e->addr = fb->addr;
                e->addr_len = fb->addr_len;
                e->unresolved = 0;
                twice = named_twice(o, e);
            }
        } else if (pool != NULL) {
            fb = fc_overlay_file_backend(pool, &e->addr);
        }
        if (fb != NULL && !e->runtime && !e->dns && !twice) {
            /* The file's spelling and weight now: a restart finds it by them. */
            char *spelled = strdup(fb->address);
            if (spelled != NULL) {
                free(e->address);
                e->address = spelled;
            }
            if (e->weight == fb->weight)
                e->weight = 0;
        }
        const char *why = NULL;
        if (pool == NULL)
            why = "the file has no such pool any more";
        else if (twice)
            why = "named twice in the state file";
        else if ((e->runtime || e->dns) && fb != NULL)
            why = "the file has it now: it is the file's again";
        else if (e->dns && pool->n_discover == 0)
            why = "the pool no longer has backends from DNS";
        else if (!e->runtime && !e->dns && fb == NULL)
            why = "the file no longer has it";
        else if (!e->runtime && !e->removed && e->admin == FC_BACKEND_READY && e->weight == 0)
            why = e->dns ? "DNS gives it as the change made it"
                         : "the file has it as the change made it";
        if (why == NULL) {
            i++;
            continue;
        }
        if (!quiet)
            fc_log_info("pool %s: backend %s: runtime change dropped: %s", e->pool, e->address,
                        why);
        fc_overlay_drop(o, e);
        dropped++;
    }
    return dropped;
}

/* ------------------------------------------------------------------------ */
/* The state file                                                            */
/* ------------------------------------------------------------------------ */

char *fc_overlay_to_json(const struct fc_overlay *o)
{
    json_t *list = json_array();
    json_t *doc = json_pack("{s:i, s:o}", "version", STATE_VERSION, "backends", list);
    if (doc == NULL)
        return NULL;
    int bad = 0;
    for (uint32_t i = 0; i < o->n; i++) {
        const struct fc_overlay_entry *e = &o->entries[i];
        json_t *j = json_pack("{s:s, s:s, s:s}", "pool", e->pool, "address", e->address, "source",
                              e->runtime ? "runtime"
                              : e->dns   ? "dns"
                                         : "config");
        if (j == NULL) {
            bad = 1;
            break;
        }
        if (e->removed)
            bad |= json_object_set_new(j, "removed", json_true());
        else
            bad |= json_object_set_new(j, "state", json_string(fc_backend_admin_name(e->admin)));
        if (e->weight != 0)
            bad |= json_object_set_new(j, "weight", json_integer(e->weight));
        bad |= json_array_append_new(list, j);
    }
    char *text = bad ? NULL : json_dumps(doc, JSON_INDENT(2));
    json_decref(doc);
    return text;
}

/* One entry of the file's `backends`; 0 or FC_EINVAL with err set. */
static int entry_from_json(json_t *j, size_t index, struct fc_overlay *out, char *err,
                           size_t err_cap)
{
    const char *pool = NULL, *address = NULL, *source = NULL, *state = NULL;
    int removed = 0;
    json_int_t weight = 0;
    json_error_t je;
    if (json_unpack_ex(j, &je, JSON_STRICT, "{s:s, s:s, s:s, s?:s, s?:b, s?:I}", "pool", &pool,
                       "address", &address, "source", &source, "state", &state, "removed", &removed,
                       "weight", &weight) != 0) {
        snprintf(err, err_cap, "backends[%zu]: %s", index, je.text);
        return FC_EINVAL;
    }
    struct sockaddr_storage addr = {0};
    socklen_t len = 0;
    int unresolved = 1;
    const char *why = NULL;
    int admin = state != NULL ? fc_backend_admin_parse(state) : FC_BACKEND_READY;
    int runtime = strcmp(source, "runtime") == 0;
    int dns = strcmp(source, "dns") == 0;
    if (!runtime && !dns && strcmp(source, "config") != 0)
        why = "source: expected \"config\", \"runtime\" or \"dns\"";
    else if (dns && removed)
        why = "a backend from DNS is not removed";
    else if (admin < 0)
        why = "state: expected \"ready\", \"drain\" or \"maint\"";
    else if (weight < 0 || weight > WEIGHT_MAX || (runtime && (weight == 0 || removed)))
        why = "weight or removed out of place";
    else if (removed && (state != NULL || weight != 0))
        why = "a removed backend has no state or weight";
    else if (fc_config_parse_ip_address(address, &addr, &len, &why) == 0)
        unresolved = 0;
    else if (runtime || dns)
        ; /* why says it: the runtime adds IP addresses only, DNS gives them only */
    else
        why = NULL; /* a file backend by its name: found in the file by fc_overlay_reconcile() */
    for (uint32_t i = 0; why == NULL && i < out->n; i++)
        if (strcmp(out->entries[i].pool, pool) == 0 &&
            (strcmp(out->entries[i].address, address) == 0 ||
             (!unresolved && !out->entries[i].unresolved &&
              fc_cfg_same_address(&out->entries[i].addr, &addr))))
            why = "the same backend twice";
    if (why != NULL) {
        snprintf(err, err_cap, "backends[%zu] (pool %s, %s): %s", index, pool, address, why);
        return FC_EINVAL;
    }
    struct fc_overlay_entry *e = fc_overlay_append(out, pool, address, &addr, len);
    if (e == NULL) {
        snprintf(err, err_cap, "out of memory");
        return FC_ENOMEM;
    }
    e->unresolved = (uint8_t)unresolved;
    e->runtime = (uint8_t)runtime;
    e->dns = (uint8_t)dns;
    e->removed = (uint8_t)removed;
    e->admin = (uint8_t)admin;
    e->weight = (uint32_t)weight;
    return 0;
}

int fc_overlay_from_json(const char *text, size_t len, struct fc_overlay *out, char *err,
                         size_t err_cap)
{
    *out = (struct fc_overlay){0};
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL) {
        snprintf(err, err_cap, "line %d: %s", je.line, je.text);
        return FC_EINVAL;
    }
    int version = 0;
    json_t *list = NULL;
    int rc = 0;
    if (json_unpack_ex(doc, &je, JSON_STRICT, "{s:i, s:o}", "version", &version, "backends",
                       &list) != 0) {
        snprintf(err, err_cap, "%s", je.text);
        rc = FC_EINVAL;
    } else if (version != STATE_VERSION) {
        snprintf(err, err_cap, "version %d: this fulcrum reads version %d", version, STATE_VERSION);
        rc = FC_EINVAL;
    } else if (!json_is_array(list)) {
        snprintf(err, err_cap, "backends: expected an array");
        rc = FC_EINVAL;
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(list); i++)
        rc = entry_from_json(json_array_get(list, i), i, out, err, err_cap);
    json_decref(doc);
    if (rc != 0)
        fc_overlay_free(out);
    return rc;
}
