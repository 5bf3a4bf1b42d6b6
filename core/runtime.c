#include "runtime.h"

#include "admin.h"
#include "config.h"
#include "config_reader.h"
#include "generation.h"
#include "log.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <fulcrum/plugin.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* Weights, as the file allows them. */
#define WEIGHT_MAX 1000
/* The longest path or prefix a purge names (a key the cache builds is at most 4096 bytes). */
#define PURGE_MAX 4096
/* How often the answers due look whether the workers took their change, and for how long. */
#define ADOPT_POLL_MS 1
#define ADOPT_WAIT_MS 2000
/* A state file larger than this is not one fulcrum wrote. */
#define STATE_MAX_BYTES (16 * 1024 * 1024)

/* An answer due once every worker serves generation `id`. */
struct pending {
    struct pending *next;
    struct fc_admin_later *later;
    uint64_t id;
    uint64_t deadline; /* loop time, ms */
    int status;
    json_t *answer;
    struct fc_backend_shared *removed; /* DELETE: its in-flight count is told; one reference */
};

struct fc_runtime {
    uv_loop_t *loop;
    struct fc_runtime_host host;
    struct fc_overlay overlay;
    uv_timer_t timer; /* runs while answers are due */
    struct pending *pending;
    /* The state file: one write at a time, on the thread pool; `dirty`: write again after. */
    uv_work_t work;
    int writing, dirty;
    char *write_path, *write_text;
    int write_errno;
    int closing; /* destroyed: freed once the timer closed and no write is running */
    int timer_open;
};

const struct fc_overlay *fc_runtime_overlay(const struct fc_runtime *rt)
{
    return &rt->overlay;
}

/* ------------------------------------------------------------------------ */
/* The state file                                                            */
/* ------------------------------------------------------------------------ */

static void maybe_free(struct fc_runtime *rt)
{
    if (!rt->closing || rt->writing || rt->timer_open)
        return;
    fc_overlay_free(&rt->overlay);
    free(rt);
}

/* Writes path through a temporary file, fsync and rename: a crash leaves the old or the new. */
static int write_atomic(const char *path, const char *text)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (tmp == NULL)
        return ENOMEM;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int err = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        err = errno;
        free(tmp);
        return err;
    }
    size_t len = strlen(text), off = 0;
    while (err == 0 && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno != EINTR)
            err = errno;
        else if (w == 0)
            err = EIO; /* a regular file that takes nothing: no progress to wait for */
        else if (w > 0)
            off += (size_t)w;
    }
    if (err == 0 && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err == 0 && rename(tmp, path) != 0)
        err = errno;
    if (err != 0) {
        unlink(tmp);
    } else {
        /* The rename itself reaches the disk with the folder. */
        char *slash = strrchr(tmp, '/');
        if (slash != NULL)
            slash[slash == tmp ? 1 : 0] = '\0';
        int dfd = open(slash != NULL ? tmp : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    free(tmp);
    return err;
}

static void write_work(uv_work_t *w)
{
    struct fc_runtime *rt = w->data;
    rt->write_errno = write_atomic(rt->write_path, rt->write_text);
}

static void save(struct fc_runtime *rt);

static void write_done(uv_work_t *w, int status)
{
    struct fc_runtime *rt = w->data;
    rt->writing = 0;
    if (status != 0 || rt->write_errno != 0)
        fc_log_error("state file %s: cannot write it: %s (the runtime changes are in force, but "
                     "a restart would not keep them)",
                     rt->write_path, status != 0 ? uv_strerror(status) : strerror(rt->write_errno));
    free(rt->write_path);
    free(rt->write_text);
    rt->write_path = rt->write_text = NULL;
    if (rt->dirty && !rt->closing)
        save(rt);
    maybe_free(rt);
}

/* Writes the overlay to the state file of the config in force, if it has one. */
static void save(struct fc_runtime *rt)
{
    const char *path = rt->host.generation(rt->host.arg)->cfg->state_file;
    if (path == NULL)
        return;
    if (rt->writing) {
        rt->dirty = 1; /* written again, as it is then, once this write is done */
        return;
    }
    rt->dirty = 0;
    char *json = fc_overlay_to_json(&rt->overlay);
    size_t n = json != NULL ? strlen(json) : 0;
    rt->write_text = json != NULL ? realloc(json, n + 2) : NULL;
    if (rt->write_text != NULL)
        memcpy(rt->write_text + n, "\n", 2); /* a text file: its last line ends */
    else
        free(json);
    rt->write_path = strdup(path);
    if (rt->write_text == NULL || rt->write_path == NULL) {
        fc_log_error("state file %s: cannot write it: out of memory", path);
        free(rt->write_text);
        free(rt->write_path);
        rt->write_text = rt->write_path = NULL;
        return;
    }
    rt->work.data = rt;
    if (uv_queue_work(rt->loop, &rt->work, write_work, write_done) == 0)
        rt->writing = 1;
    else
        write_done(&rt->work, UV_ENOMEM);
}

/* The whole state file, or NULL with errno set (ENOENT: there is none). */
static char *read_state(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *text = NULL;
    if (fstat(fd, &st) != 0) {
        ;
    } else if (!S_ISREG(st.st_mode)) {
        errno = EISDIR;
    } else if (st.st_size > STATE_MAX_BYTES) {
        errno = EFBIG;
    } else if ((text = malloc((size_t)st.st_size + 1)) != NULL) {
        size_t off = 0;
        while (off < (size_t)st.st_size) {
            ssize_t r = read(fd, text + off, (size_t)st.st_size - off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            off += (size_t)r;
        }
        text[off] = '\0';
        *len = off;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return text;
}

void fc_runtime_load(struct fc_runtime *rt, const struct fc_config *cfg)
{
    if (cfg->state_file == NULL)
        return;
    size_t len = 0;
    char *text = read_state(cfg->state_file, &len);
    if (text == NULL) {
        if (errno == ENOENT)
            fc_log_info("state file %s: none yet (runtime changes will be kept there)",
                        cfg->state_file);
        else
            fc_log_error("state file %s: cannot read it: %s: ignored, starting with the "
                         "configuration file's backends",
                         cfg->state_file, strerror(errno));
        return;
    }
    char err[256];
    struct fc_overlay o;
    int rc = fc_overlay_from_json(text, len, &o, err, sizeof(err));
    free(text);
    if (rc != 0) {
        fc_log_error("state file %s: corrupt: %s: ignored, starting with the configuration "
                     "file's backends (the next runtime change rewrites it)",
                     cfg->state_file, err);
        return;
    }
    fc_overlay_reconcile(&o, cfg, 0);
    fc_overlay_free(&rt->overlay);
    rt->overlay = o;
    if (o.n > 0)
        fc_log_info("state file %s: %u runtime change%s restored", cfg->state_file, o.n,
                    o.n == 1 ? "" : "s");
}

int fc_runtime_fit(const struct fc_runtime *rt, const struct fc_config *cfg, struct fc_overlay *out)
{
    if (fc_overlay_copy(&rt->overlay, out) != 0)
        return FC_ENOMEM;
    fc_overlay_reconcile(out, cfg, 1); /* told by fc_runtime_reloaded(), if the reload is done */
    return 0;
}

void fc_runtime_reloaded(struct fc_runtime *rt, struct fc_overlay *fitted,
                         const struct fc_config *cfg)
{
    /* The same fitting again, on the overlay itself, telling what goes: now it went. */
    fc_overlay_free(fitted);
    int changed = fc_overlay_reconcile(&rt->overlay, cfg, 0) > 0;
    /* Entries the file took back go from the state file too (and a new state_file gets it all). */
    if (changed || rt->overlay.n > 0)
        save(rt);
}

/* ------------------------------------------------------------------------ */
/* Answers, once the workers serve the change                                */
/* ------------------------------------------------------------------------ */

static void finish(struct fc_runtime *rt, struct pending *p, int late)
{
    if (p->removed != NULL) {
        json_object_set_new(
            p->answer, "inflight",
            json_integer(__atomic_load_n(&p->removed->state.inflight, __ATOMIC_RELAXED)));
        fc_backend_shared_release(p->removed);
    }
    if (late) {
        fc_log_warn("runtime: generation %llu: a worker has not taken it after %d ms; answered "
                    "anyway",
                    (unsigned long long)p->id, ADOPT_WAIT_MS);
        json_object_set_new(p->answer, "warning",
                            json_string("not every worker has taken the change yet"));
    }
    (void)rt;
    fc_admin_json(fc_admin_later_response(p->later), p->status, p->answer);
    fc_admin_later_send(p->later);
    free(p);
}

static void poll_cb(uv_timer_t *t)
{
    struct fc_runtime *rt = t->data;
    uint64_t now = uv_now(rt->loop);
    for (struct pending **pp = &rt->pending; *pp != NULL;) {
        struct pending *p = *pp;
        int adopted = rt->host.adopted(rt->host.arg, p->id);
        if (!adopted && now < p->deadline) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        finish(rt, p, !adopted);
    }
    if (rt->pending == NULL)
        uv_timer_stop(t);
}

/*
 * Answers `status` with `answer` (taken) once every worker serves generation
 * id. `removed` (may be NULL): a backend whose in-flight count is added then.
 */
static void answer_adopted(struct fc_runtime *rt, struct fc_admin_response *resp, uint64_t id,
                           int status, json_t *answer, struct fc_backend_shared *removed)
{
    struct pending *p = calloc(1, sizeof(*p));
    struct fc_admin_later *later = p != NULL ? fc_admin_defer(resp) : NULL;
    if (later == NULL) {
        free(p);
        if (removed != NULL)
            fc_backend_shared_release(removed);
        fc_admin_json(resp, status, answer); /* the change is in force; only the wait is skipped */
        return;
    }
    *p = (struct pending){.later = later,
                          .id = id,
                          .status = status,
                          .answer = answer,
                          .removed = removed,
                          .deadline = uv_now(rt->loop) + ADOPT_WAIT_MS};
    p->next = rt->pending;
    rt->pending = p;
    if (!uv_is_active((uv_handle_t *)&rt->timer))
        uv_timer_start(&rt->timer, poll_cb, 0, ADOPT_POLL_MS);
}

/* ------------------------------------------------------------------------ */
/* The endpoints                                                             */
/* ------------------------------------------------------------------------ */

static void errorf(struct fc_admin_response *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errorf(struct fc_admin_response *resp, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fc_admin_error(resp, status, msg);
}

/* The body as a JSON object with only `allowed` keys; NULL after answering the error. */
static json_t *body_object(const struct fc_admin_request *req, struct fc_admin_response *resp,
                           const char *const *allowed, const char *expected)
{
    if (req->body_len == 0) {
        errorf(resp, 400, "expected a JSON object as the body: %s", expected);
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        errorf(resp, 400, "malformed JSON: line %d, column %d: %s", e.line, e.column, e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        errorf(resp, 400, "expected a JSON object as the body: %s", expected);
        return NULL;
    }
    const char *key;
    json_t *value;
    json_object_foreach(j, key, value)
    {
        int known = 0;
        for (const char *const *a = allowed; *a != NULL; a++)
            known |= strcmp(*a, key) == 0;
        if (!known) {
            errorf(resp, 400, "unknown key \"%.64s\": expected %s", key, expected);
            json_decref(j);
            return NULL;
        }
    }
    return j;
}

/* `weight` of j into *out if present: 1 (given), 0 (absent), -1 (answered 400). */
static int get_weight(json_t *j, struct fc_admin_response *resp, uint32_t *out)
{
    json_t *w = json_object_get(j, "weight");
    if (w == NULL)
        return 0;
    if (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > WEIGHT_MAX) {
        errorf(resp, 400, "weight: expected an integer from 1 to %d", WEIGHT_MAX);
        return -1;
    }
    *out = (uint32_t)json_integer_value(w);
    return 1;
}

/* `state` of j into *out if present: as get_weight(). */
static int get_state(json_t *j, struct fc_admin_response *resp, int *out)
{
    json_t *s = json_object_get(j, "state");
    if (s == NULL)
        return 0;
    int admin = json_is_string(s) ? fc_backend_admin_parse(json_string_value(s)) : -1;
    if (admin < 0) {
        errorf(resp, 400, "state: expected \"ready\", \"drain\" or \"maint\"");
        return -1;
    }
    *out = admin;
    return 1;
}

/* The pool of the path; NULL after answering 404. */
static const struct fc_gen_pool *
path_pool(struct fc_runtime *rt, const struct fc_admin_request *req, struct fc_admin_response *resp)
{
    const struct fc_gen_pool *pool =
        fc_generation_pool(rt->host.generation(rt->host.arg), req->params[0]);
    if (pool == NULL)
        errorf(resp, 404, "no such pool: %.128s", req->params[0]);
    return pool;
}

static json_t *backend_json(const char *address, uint32_t weight, int admin, int source)
{
    return json_pack("{s:s, s:i, s:s, s:s}", "address", address, "weight", (int)weight, "state",
                     fc_backend_admin_name(admin), "source", fc_status_source_name(source));
}

/*
 * Puts `next` in force: a new generation over the running config. Returns
 * its id, or 0 after answering 422 with the errors of the build.
 */
static uint64_t apply(struct fc_runtime *rt, struct fc_overlay *next,
                      struct fc_admin_response *resp)
{
    static char errors[8192];
    errors[0] = '\0';
    fc_log_collect_errors(errors, sizeof(errors));
    uint64_t id = rt->host.apply(rt->host.arg, next);
    fc_log_collect_errors(NULL, 0);
    if (id == 0) {
        fc_overlay_free(next);
        json_t *list = fc_admin_json_lines(errors);
        const char *first = json_array_size(list) > 0 ? json_string_value(json_array_get(list, 0))
                                                      : "the new generation could not be built";
        fc_admin_json(resp, 422,
                      json_pack("{s:s, s:o}", "error", first != NULL ? first : "", "errors", list));
        return 0;
    }
    fc_overlay_free(&rt->overlay);
    rt->overlay = *next;
    *next = (struct fc_overlay){0};
    save(rt);
    return id;
}

/* Tells the daemon how backend `address` of `pool` is now, in the generation in force. */
static void tell(struct fc_runtime *rt, const char *pool, const char *address, const char *reason)
{
    const struct fc_generation *g = rt->host.generation(rt->host.arg);
    const struct fc_gen_pool *p = fc_generation_pool(g, pool);
    int i = p != NULL ? fc_gen_pool_find(p, address) : -1;
    const char *state = i >= 0 ? fc_status_state_name(p, (uint32_t)i) : "removed";
    rt->host.changed(rt->host.arg, pool, address, state, reason);
}

static int refuse_when_stopping(struct fc_runtime *rt, struct fc_admin_response *resp)
{
    if (!rt->host.stopping(rt->host.arg))
        return 0;
    fc_admin_error(resp, 503, "stopping: no change now");
    return 1;
}

/* POST /api/pools/{pool}/backends {"address": "IP:PORT", "weight": N, "state": S} */
static void backend_add(void *arg, const struct fc_admin_request *req,
                        struct fc_admin_response *resp)
{
    static const char *const keys[] = {"address", "weight", "state", NULL};
    static const char expected[] = "{\"address\": \"IP:PORT\", \"weight\": N, \"state\": S}";
    struct fc_runtime *rt = arg;
    if (refuse_when_stopping(rt, resp))
        return;
    const struct fc_gen_pool *pool = path_pool(rt, req, resp);
    json_t *j = pool != NULL ? body_object(req, resp, keys, expected) : NULL;
    if (j == NULL)
        return;
    uint32_t weight = 1;
    int admin = FC_BACKEND_READY;
    json_t *a = json_object_get(j, "address");
    const char *text = json_is_string(a) ? json_string_value(a) : NULL;
    struct sockaddr_storage addr;
    socklen_t len;
    const char *why = NULL;
    int has_weight = get_weight(j, resp, &weight);
    if (has_weight < 0 || get_state(j, resp, &admin) < 0) {
        json_decref(j);
        return;
    }
    if (text == NULL) {
        errorf(resp, 400, "address: expected a string, as in \"127.0.0.1:9004\"");
        json_decref(j);
        return;
    }
    if (fc_config_parse_ip_address(text, &addr, &len, &why) != 0) {
        errorf(resp, 400, "address \"%.128s\": %s", text, why);
        json_decref(j);
        return;
    }
    json_decref(j);
    char canon[64];
    fc_config_format_address(&addr, canon, sizeof(canon));
    for (uint32_t b = 0; b < pool->n_backends; b++)
        if (fc_cfg_same_address(&pool->backends[b].addr, &addr)) {
            errorf(resp, 409, "pool %s already has backend %s", pool->conf->name,
                   pool->backends[b].address);
            return;
        }

    struct fc_overlay next;
    if (fc_overlay_copy(&rt->overlay, &next) != 0) {
        fc_admin_error(resp, 500, "out of memory");
        return;
    }
    /* One the file has, removed at run time, comes back as the file's (with these settings). */
    const struct fc_conf_backend *fb = fc_overlay_file_backend(pool->conf, &addr);
    const char *address = fb != NULL ? fb->address : canon;
    if (fb != NULL && !has_weight)
        weight = fb->weight; /* one of the file's, back: as the file has it */
    struct fc_overlay_entry *e = fc_overlay_put(&next, pool->conf->name, address, &addr, len);
    if (e == NULL) {
        fc_overlay_free(&next);
        fc_admin_error(resp, 500, "out of memory");
        return;
    }
    e->runtime = fb == NULL;
    e->dns = 0; /* added: the runtime's now, whether DNS gave it before or not */
    e->removed = 0;
    e->admin = (uint8_t)admin;
    e->weight = fb != NULL && weight == fb->weight ? 0 : weight;
    if (fb != NULL)
        fc_overlay_tidy(&next, e, fb->weight);
    const char *name = pool->conf->name; /* the config's: the new generation shares it */
    uint64_t id = apply(rt, &next, resp);
    if (id == 0)
        return;
    fc_log_info("runtime: pool %s: backend %s added (weight %u, %s): generation %llu", name,
                address, weight, fc_backend_admin_name(admin), (unsigned long long)id);
    tell(rt, name, address, "added through the runtime API");
    answer_adopted(rt, resp, id, 201,
                   json_pack("{s:b, s:s, s:o, s:I}", "ok", 1, "pool", name, "backend",
                             backend_json(address, weight, admin,
                                          fb == NULL ? FC_SOURCE_RUNTIME : FC_SOURCE_CONFIG),
                             "generation", (json_int_t)id),
                   NULL);
}

/* The backend of the path in pool; -1 after answering 404. */
static int path_backend(const struct fc_gen_pool *pool, const struct fc_admin_request *req,
                        struct fc_admin_response *resp)
{
    int i = fc_gen_pool_find(pool, req->params[1]);
    if (i < 0)
        errorf(resp, 404, "pool %s has no backend %.128s", pool->conf->name, req->params[1]);
    return i;
}

/*
 * A change to backend i of pool begins: `next` becomes a copy of the
 * overlay in force, and the entry returned holds the backend's changes in
 * it (made when the file's backend had none). NULL after answering 500
 * (out of memory; `next` is then empty).
 */
static struct fc_overlay_entry *change_of(struct fc_runtime *rt, struct fc_overlay *next,
                                          const struct fc_gen_pool *pool, uint32_t i,
                                          struct fc_admin_response *resp)
{
    const struct fc_gen_backend *b = &pool->backends[i];
    struct fc_overlay_entry *e = NULL;
    if (fc_overlay_copy(&rt->overlay, next) == 0 &&
        (e = fc_overlay_put(next, pool->conf->name, b->address, &b->addr, b->addr_len)) == NULL)
        fc_overlay_free(next);
    if (e == NULL) {
        fc_admin_error(resp, 500, "out of memory");
        return NULL;
    }
    if (b->source == FC_SOURCE_RUNTIME)
        e->runtime = 1;
    if (b->source == FC_SOURCE_DNS)
        e->dns = 1;
    return e;
}

/*
 * A backend that DNS gives is not removed through the runtime API (409):
 * the next answer would bring it back. It can be drained, put in
 * maintenance or weighed instead, which holds while DNS gives it.
 */
static int refuse_discovered(const struct fc_gen_pool *pool, const struct fc_gen_backend *b,
                             struct fc_admin_response *resp)
{
    if (b->source != FC_SOURCE_DNS)
        return 0;
    errorf(resp, 409,
           "pool %s: backend %s comes from DNS, whose next answer would bring it back: drain it "
           "or put it in maintenance instead, or change the DNS records",
           pool->conf->name, b->address);
    return 1;
}

/*
 * DELETE of an address that DNS no longer gives, whose drain, maintenance
 * or weight the overlay still keeps (it would apply again if DNS gave the
 * address again): the change goes. 1 when it was such an address (answered
 * here), 0 when it was not (the caller answers 404).
 */
static int forget_dns_change(struct fc_runtime *rt, const struct fc_gen_pool *pool,
                             const struct fc_admin_request *req, struct fc_admin_response *resp)
{
    struct sockaddr_storage addr;
    socklen_t len;
    if (fc_config_parse_ip_address(req->params[1], &addr, &len, NULL) != 0)
        return 0;
    const struct fc_overlay_entry *e = fc_overlay_find(&rt->overlay, pool->conf->name, &addr);
    if (e == NULL || !e->dns)
        return 0;
    struct fc_overlay next;
    if (fc_overlay_copy(&rt->overlay, &next) != 0) {
        fc_admin_error(resp, 500, "out of memory");
        return 1;
    }
    char *address = strdup(e->address);
    fc_overlay_drop(&next, fc_overlay_find(&next, pool->conf->name, &addr));
    const char *name = pool->conf->name;
    uint64_t id = address != NULL ? apply(rt, &next, resp) : 0;
    if (address == NULL) {
        fc_overlay_free(&next);
        fc_admin_error(resp, 500, "out of memory");
    }
    if (id != 0) {
        fc_log_info("runtime: pool %s: the change to %s, which DNS no longer gives, dropped: "
                    "generation %llu",
                    name, address, (unsigned long long)id);
        fc_admin_json(resp, 200,
                      json_pack("{s:b, s:s, s:s, s:I, s:i}", "ok", 1, "pool", name, "address",
                                address, "generation", (json_int_t)id, "inflight", 0));
    }
    free(address);
    return 1;
}

/*
 * Whether a PATCH that changes nothing in force must still rewrite the
 * overlay: the entry of a file or DNS backend that now holds what the file
 * or DNS gives anyway (DNS's weight moved to the one the change set) goes,
 * as it would after a change.
 */
static int entry_needless(const struct fc_runtime *rt, const struct fc_gen_pool *pool,
                          const struct fc_gen_backend *b)
{
    if (b->source == FC_SOURCE_RUNTIME)
        return 0;
    const struct fc_overlay_entry *e = fc_overlay_find(&rt->overlay, pool->conf->name, &b->addr);
    return e != NULL && !e->removed && e->weight != 0 && e->weight == b->given_weight;
}

/* PATCH /api/pools/{pool}/backends/{address} {"state": S, "weight": N} */
static void backend_patch(void *arg, const struct fc_admin_request *req,
                          struct fc_admin_response *resp)
{
    static const char *const keys[] = {"state", "weight", NULL};
    static const char expected[] =
        "{\"state\": \"drain\"|\"maint\"|\"ready\"} and/or {\"weight\": N}";
    struct fc_runtime *rt = arg;
    if (refuse_when_stopping(rt, resp))
        return;
    const struct fc_gen_pool *pool = path_pool(rt, req, resp);
    int i = pool != NULL ? path_backend(pool, req, resp) : -1;
    json_t *j = i >= 0 ? body_object(req, resp, keys, expected) : NULL;
    if (j == NULL)
        return;
    const struct fc_gen_backend *b = &pool->backends[i];
    uint32_t weight = b->weight;
    int admin = b->admin;
    int has_w = get_weight(j, resp, &weight);
    int has_s = has_w >= 0 ? get_state(j, resp, &admin) : -1;
    json_decref(j);
    if (has_w < 0 || has_s < 0)
        return;
    if (!has_w && !has_s) {
        errorf(resp, 400, "nothing to change: expected %s", expected);
        return;
    }
    const struct fc_generation *g = rt->host.generation(rt->host.arg);
    int runtime = b->source == FC_SOURCE_RUNTIME;
    int source = b->source;
    const char *name = pool->conf->name; /* the config's: the new generation shares it */
    if (weight == b->weight && admin == b->admin && !entry_needless(rt, pool, b)) {
        /* as it is: nothing to build */
        fc_admin_json(resp, 200,
                      json_pack("{s:b, s:s, s:o, s:I}", "ok", 1, "pool", name, "backend",
                                backend_json(b->address, weight, admin, source), "generation",
                                (json_int_t)g->id));
        return;
    }
    struct fc_overlay next;
    char *address = strdup(b->address); /* b is the replaced generation's */
    struct fc_overlay_entry *e =
        address != NULL ? change_of(rt, &next, pool, (uint32_t)i, resp) : NULL;
    if (e == NULL) {
        if (address == NULL)
            fc_admin_error(resp, 500, "out of memory");
        free(address);
        return;
    }
    e->admin = (uint8_t)admin;
    e->weight = weight;
    if (!runtime) {
        uint32_t given = b->given_weight; /* the file's, or DNS's */
        if (weight == given)
            e->weight = 0; /* the file's (DNS's): a later change of it there applies */
        fc_overlay_tidy(&next, e, given);
    }
    uint64_t id = apply(rt, &next, resp);
    if (id == 0) {
        free(address);
        return;
    }
    fc_log_info("runtime: pool %s: backend %s: %s, weight %u: generation %llu", name, address,
                fc_backend_admin_name(admin), weight, (unsigned long long)id);
    char reason[96];
    snprintf(reason, sizeof(reason), "set to %s, weight %u, through the runtime API",
             fc_backend_admin_name(admin), weight);
    tell(rt, name, address, reason);
    answer_adopted(rt, resp, id, 200,
                   json_pack("{s:b, s:s, s:o, s:I}", "ok", 1, "pool", name, "backend",
                             backend_json(address, weight, admin, source), "generation",
                             (json_int_t)id),
                   NULL);
    free(address);
}

/* DELETE /api/pools/{pool}/backends/{address} */
static void backend_delete(void *arg, const struct fc_admin_request *req,
                           struct fc_admin_response *resp)
{
    struct fc_runtime *rt = arg;
    if (refuse_when_stopping(rt, resp))
        return;
    const struct fc_gen_pool *pool = path_pool(rt, req, resp);
    if (pool != NULL && fc_gen_pool_find(pool, req->params[1]) < 0 &&
        forget_dns_change(rt, pool, req, resp))
        return;
    int i = pool != NULL ? path_backend(pool, req, resp) : -1;
    if (i < 0 || refuse_discovered(pool, &pool->backends[i], resp))
        return;
    struct fc_overlay next;
    char *address = strdup(pool->backends[i].address); /* the replaced generation's */
    struct fc_overlay_entry *e =
        address != NULL ? change_of(rt, &next, pool, (uint32_t)i, resp) : NULL;
    if (e == NULL) {
        if (address == NULL)
            fc_admin_error(resp, 500, "out of memory");
        free(address);
        return;
    }
    if (e->runtime) {
        fc_overlay_drop(&next, e);
    } else {
        e->removed = 1;
        e->admin = FC_BACKEND_READY;
        e->weight = 0;
    }
    /* Its in-flight requests finish on the generations they started on; the answer tells them. */
    struct fc_backend_shared *s = pool->shared[i];
    fc_backend_shared_acquire(s);
    const char *name = pool->conf->name; /* the config's: the new generation shares it */
    uint64_t id = apply(rt, &next, resp);
    if (id == 0) {
        free(address);
        fc_backend_shared_release(s);
        return;
    }
    fc_log_info("runtime: pool %s: backend %s removed: generation %llu", name, address,
                (unsigned long long)id);
    tell(rt, name, address, "removed through the runtime API");
    answer_adopted(rt, resp, id, 200,
                   json_pack("{s:b, s:s, s:s, s:I}", "ok", 1, "pool", name, "address", address,
                             "generation", (json_int_t)id),
                   s);
    free(address);
}

/*
 * DELETE /api/pools/{pool}/cache?path=/x (that target, every host and
 * variant), ?prefix=/x (every target that starts so) or ?all=1: removes
 * entries from the pool's response cache at once.
 */
static void cache_purge(void *arg, const struct fc_admin_request *req,
                        struct fc_admin_response *resp)
{
    static const char expected[] = "expected one of ?path=/x, ?prefix=/x or ?all=1";
    struct fc_runtime *rt = arg;
    if (refuse_when_stopping(rt, resp))
        return;
    const struct fc_gen_pool *pool = path_pool(rt, req, resp);
    if (pool == NULL)
        return;
    if (pool->cache == NULL) {
        errorf(resp, 404, "pool %s has no cache", pool->conf->name);
        return;
    }
    char path[PURGE_MAX + 1], prefix[PURGE_MAX + 1], all[8], key[PURGE_MAX + 2];
    int has_path = fc_admin_query_param(req, "path", path, sizeof(path));
    int has_prefix = fc_admin_query_param(req, "prefix", prefix, sizeof(prefix));
    int has_all = fc_admin_query_param(req, "all", all, sizeof(all));
    if (has_path < 0 || has_prefix < 0 || has_all < 0) {
        errorf(resp, 400, "a query value that does not decode, or longer than %d bytes", PURGE_MAX);
        return;
    }
    if (has_path + has_prefix + has_all != 1 || (has_all && strcmp(all, "1") != 0)) {
        errorf(resp, 400, "%s", expected);
        return;
    }
    const char *match = has_path ? "path" : has_prefix ? "prefix" : "all";
    const char *value = has_path ? path : has_prefix ? prefix : NULL;
    size_t key_len = 0;
    if (value != NULL) {
        if (value[0] != '/') {
            errorf(resp, 400, "%s: \"%.128s\" does not start with '/'", match, value);
            return;
        }
        key_len = strlen(value);
        memcpy(key, value, key_len);
        if (has_path)
            key[key_len++] = '\n'; /* a key is target, '\n', host... (cache_entry.h) */
    }
    const struct fc_cache_ops *ops = pool->cache->plugin->desc->cache;
    int64_t removed = ops->remove(pool->cache->state, value != NULL ? key : NULL, key_len);
    if (removed < 0) {
        errorf(resp, 500, "the cache store's remove() failed (%lld)", (long long)removed);
        return;
    }
    fc_log_info("runtime: pool %s: cache: purged %s %s: %lld entries", pool->conf->name, match,
                value != NULL ? value : "", (long long)removed);
    json_t *j = json_pack("{s:b, s:s, s:s, s:I}", "ok", 1, "pool", pool->conf->name, "match", match,
                          "removed", (json_int_t)removed);
    if (j != NULL && value != NULL)
        json_object_set_new(j, match, json_string(value));
    fc_admin_json(resp, 200, j);
}

int fc_runtime_routes(struct fc_runtime *rt, struct fc_admin *a)
{
    int rc = fc_admin_route(a, "POST", "/api/pools/{}/backends", 0, backend_add, rt);
    if (rc == 0)
        rc = fc_admin_route(a, "PATCH", "/api/pools/{}/backends/{}", 0, backend_patch, rt);
    if (rc == 0)
        rc = fc_admin_route(a, "DELETE", "/api/pools/{}/backends/{}", 0, backend_delete, rt);
    if (rc == 0)
        rc = fc_admin_route(a, "DELETE", "/api/pools/{}/cache", 0, cache_purge, rt);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Life                                                                      */
/* ------------------------------------------------------------------------ */

struct fc_runtime *fc_runtime_create(uv_loop_t *loop, const struct fc_runtime_host *host)
{
    struct fc_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return NULL;
    rt->loop = loop;
    rt->host = *host;
    uv_timer_init(loop, &rt->timer);
    rt->timer.data = rt;
    rt->timer_open = 1;
    return rt;
}

static void timer_closed(uv_handle_t *h)
{
    struct fc_runtime *rt = h->data;
    rt->timer_open = 0;
    maybe_free(rt);
}

void fc_runtime_destroy(struct fc_runtime *rt)
{
    if (rt == NULL)
        return;
    while (rt->pending != NULL) {
        struct pending *p = rt->pending;
        rt->pending = p->next;
        if (p->removed != NULL)
            fc_backend_shared_release(p->removed);
        json_decref(p->answer);
        fc_admin_error(fc_admin_later_response(p->later), 503, "stopping");
        fc_admin_later_send(p->later);
        free(p);
    }
    rt->closing = 1;
    uv_close((uv_handle_t *)&rt->timer, timer_closed);
}
