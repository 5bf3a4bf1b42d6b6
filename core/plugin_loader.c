/*
 * Loading plugin shared objects through a private memfd copy; see plugin_loader.h
 * for why. Everything here runs on the main thread, at startup or on reload.
 *
 * Errors: FC_EINVAL when the file is readable but not an acceptable plugin
 * (not ELF, wrong ABI, wrong kind, incomplete descriptor), FC_ENOENT when it
 * does not exist, FC_ENOMEM when memory runs out, FC_ERROR for other I/O
 * failures. Every failure writes "<path>: <reason>" to err.
 */
#define _GNU_SOURCE
#include "plugin_loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * The smallest tables a plugin built against ABI 1.0 can have. Later minors
 * only append fields, so a table at least this large holds every field that
 * the host reads without first checking the table's size.
 */
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
#define DESCRIPTOR_SIZE_1_0 END_OF(struct fc_plugin_descriptor, ratelimit)
#define STRATEGY_OPS_SIZE_1_0 END_OF(struct fc_strategy_ops, outcome)
#define HEALTH_OPS_SIZE_1_0 END_OF(struct fc_health_ops, probe)
#define RATELIMIT_OPS_SIZE_1_0 END_OF(struct fc_ratelimit_ops, worker_stop)
/* The cache kind came with 1.3: its descriptor and table are 1.3's at least. */
#define DESCRIPTOR_SIZE_1_3 END_OF(struct fc_plugin_descriptor, cache)
#define CACHE_OPS_SIZE_1_3 END_OF(struct fc_cache_ops, usage)

const char *fc_plugin_kind_name(int kind)
{
    switch (kind) {
    case FC_PLUGIN_STRATEGY:
        return "strategy";
    case FC_PLUGIN_HEALTH:
        return "health";
    case FC_PLUGIN_RATELIMIT:
        return "ratelimit";
    case FC_PLUGIN_CACHE:
        return "cache";
    default:
        return "unknown";
    }
}

static void set_error(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    int n = snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/*
 * Copies all of `src` into `dst` from their current offsets, and hashes the
 * bytes (FNV-1a, 64 bits) into *digest. Returns 0 or -errno.
 */
static int copy_fd(int src, int dst, uint64_t *digest)
{
    char buf[65536];
    uint64_t h = 0xcbf29ce484222325u;

    for (;;) {
        ssize_t n = read(src, buf, sizeof(buf));
        if (n == 0) {
            *digest = h;
            return 0;
        }
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ (uint8_t)buf[i]) * 0x100000001b3u;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(dst, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            off += w;
        }
    }
}

/*
 * Makes a sealed private copy of `path` and returns its descriptor, or a
 * negative code after writing the reason to err. Sealing the copy against
 * writes guarantees that the code we validate is the code that runs, and
 * stays so for as long as it is mapped.
 */
static int make_private_copy(const char *path, uint64_t *digest, char *err, size_t errlen)
{
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        int e = errno;
        set_error(err, errlen, path, "%s", strerror(e));
        return e == ENOENT ? FC_ENOENT : e == ENOMEM ? FC_ENOMEM : FC_ERROR;
    }

    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    char name[64];
    snprintf(name, sizeof(name), "fulcrum-plugin:%s", base);

    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        int e = errno;
        set_error(err, errlen, path, "memfd_create: %s", strerror(e));
        close(src);
        return e == ENOMEM ? FC_ENOMEM : FC_ERROR;
    }

    int rc = copy_fd(src, fd, digest);
    close(src);
    if (rc < 0) {
        set_error(err, errlen, path, "copying to memfd: %s", strerror(-rc));
        close(fd);
        return rc == -ENOMEM || rc == -ENOSPC ? FC_ENOMEM : FC_ERROR;
    }

    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        set_error(err, errlen, path, "sealing memfd: %s", strerror(errno));
        close(fd);
        return FC_ERROR;
    }
    return fd;
}

/*
 * dlerror() names the object by the path we opened, /proc/self/fd/N, which
 * means nothing to the user: drop that prefix, the caller names the file.
 */
static const char *strip_proc_path(const char *msg, const char *proc_path)
{
    size_t n = strlen(proc_path);
    if (msg == NULL)
        return "dlopen failed";
    if (strncmp(msg, proc_path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
        return msg + n + 2;
    return msg;
}

/* The required op that `d`'s ops table lacks, or NULL. Call only once its size is checked. */
static const char *missing_op(const struct fc_plugin_descriptor *d)
{
    switch (d->kind) {
    case FC_PLUGIN_STRATEGY:
        if (d->strategy->create == NULL)
            return "create";
        return d->strategy->pick == NULL ? "pick" : NULL;
    case FC_PLUGIN_HEALTH:
        if (d->health->create == NULL)
            return "create";
        return d->health->probe == NULL ? "probe" : NULL;
    case FC_PLUGIN_RATELIMIT:
        if (d->ratelimit->create == NULL)
            return "create";
        return d->ratelimit->check == NULL ? "check" : NULL;
    case FC_PLUGIN_CACHE: {
        const struct fc_cache_ops *c = d->cache;
        if (c->create == NULL)
            return "create";
        if (c->lookup == NULL)
            return "lookup";
        if (c->read == NULL)
            return "read";
        if (c->release == NULL)
            return "release";
        if (c->store_begin == NULL)
            return "store_begin";
        if (c->store_append == NULL)
            return "store_append";
        if (c->store_commit == NULL)
            return "store_commit";
        if (c->store_abort == NULL)
            return "store_abort";
        if (c->update_meta == NULL)
            return "update_meta";
        if (c->remove == NULL)
            return "remove";
        return c->usage == NULL ? "usage" : NULL;
    }
    default:
        return NULL;
    }
}

/* Checks the kind's ops table. Returns 0 or FC_EINVAL with the reason in err. */
static int check_ops(const struct fc_plugin_descriptor *d, const char *path, char *err,
                     size_t errlen)
{
    const char *kind = fc_plugin_kind_name((int)d->kind);
    const uint32_t *size = NULL; /* every ops table starts with its size */
    size_t min_size = 0;

    switch (d->kind) {
    case FC_PLUGIN_STRATEGY:
        size = d->strategy != NULL ? &d->strategy->size : NULL;
        min_size = STRATEGY_OPS_SIZE_1_0;
        break;
    case FC_PLUGIN_HEALTH:
        size = d->health != NULL ? &d->health->size : NULL;
        min_size = HEALTH_OPS_SIZE_1_0;
        break;
    case FC_PLUGIN_RATELIMIT:
        size = d->ratelimit != NULL ? &d->ratelimit->size : NULL;
        min_size = RATELIMIT_OPS_SIZE_1_0;
        break;
    case FC_PLUGIN_CACHE:
        size = d->cache != NULL ? &d->cache->size : NULL;
        min_size = CACHE_OPS_SIZE_1_3;
        break;
    }

    if (size == NULL) {
        set_error(err, errlen, path, "%s plugin has no %s ops", kind, kind);
        return FC_EINVAL;
    }
    /* A table smaller than it should be may end before the pointers read below. */
    if (*size < min_size) {
        set_error(err, errlen, path, "%s ops table too small (%u bytes, ABI %s has %zu)", kind,
                  *size, d->kind == FC_PLUGIN_CACHE ? "1.3" : "1.0", min_size);
        return FC_EINVAL;
    }
    const char *missing = missing_op(d);
    if (missing != NULL) {
        set_error(err, errlen, path, "%s ops lack %s()", kind, missing);
        return FC_EINVAL;
    }
    return 0;
}

/* Validates a descriptor just found in `path`. Returns 0 or FC_EINVAL with the reason in err. */
static int check_descriptor(const struct fc_plugin_descriptor *d, enum fc_plugin_kind kind,
                            const char *path, char *err, size_t errlen)
{
    if (d == NULL) {
        set_error(err, errlen, path, "no %s descriptor: not a fulcrum plugin", FC_PLUGIN_SYMBOL);
        return FC_EINVAL;
    }
    /* The magic comes first: it tells whether any other field is worth reading. */
    if (d->magic != FC_PLUGIN_MAGIC) {
        set_error(err, errlen, path,
                  "%s descriptor has a bad magic number 0x%08x: not a fulcrum plugin",
                  FC_PLUGIN_SYMBOL, d->magic);
        return FC_EINVAL;
    }
    if (d->abi_major != FC_ABI_MAJOR) {
        set_error(err, errlen, path, "built for plugin ABI %u.%u, this fulcrum provides %d.%d",
                  d->abi_major, d->abi_minor, FC_ABI_MAJOR, FC_ABI_MINOR);
        return FC_EINVAL;
    }
    if (d->abi_minor > FC_ABI_MINOR) {
        set_error(err, errlen, path,
                  "built for plugin ABI %u.%u, newer than this fulcrum's %d.%d: upgrade fulcrum",
                  d->abi_major, d->abi_minor, FC_ABI_MAJOR, FC_ABI_MINOR);
        return FC_EINVAL;
    }
    if (d->size < DESCRIPTOR_SIZE_1_0) {
        set_error(err, errlen, path, "descriptor too small (%u bytes, ABI 1.0 has %zu)", d->size,
                  DESCRIPTOR_SIZE_1_0);
        return FC_EINVAL;
    }
    if (d->kind != FC_PLUGIN_STRATEGY && d->kind != FC_PLUGIN_HEALTH &&
        d->kind != FC_PLUGIN_RATELIMIT && d->kind != FC_PLUGIN_CACHE) {
        set_error(err, errlen, path, "descriptor has an unknown kind %u", d->kind);
        return FC_EINVAL;
    }
    /* A cache plugin's descriptor holds the member 1.3 appended for it. */
    if (d->kind == FC_PLUGIN_CACHE && (d->abi_minor < 3 || d->size < DESCRIPTOR_SIZE_1_3)) {
        set_error(err, errlen, path,
                  "cache plugin built for plugin ABI %u.%u (%u-byte descriptor): the cache "
                  "kind needs 1.3",
                  d->abi_major, d->abi_minor, d->size);
        return FC_EINVAL;
    }
    if (kind != FC_PLUGIN_ANY_KIND && d->kind != (uint32_t)kind) {
        set_error(err, errlen, path, "is a %s plugin, expected a %s plugin",
                  fc_plugin_kind_name((int)d->kind), fc_plugin_kind_name(kind));
        return FC_EINVAL;
    }
    if (d->name == NULL || d->name[0] == '\0') {
        set_error(err, errlen, path, "descriptor has no name");
        return FC_EINVAL;
    }
    return check_ops(d, path, err, errlen);
}

int fc_plugin_load(const char *path, enum fc_plugin_kind kind, struct fc_plugin **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    struct fc_plugin *p = calloc(1, sizeof(*p));
    if (p != NULL)
        p->refs = 1; /* the caller's */
    char *path_copy = strdup(path);
    if (p == NULL || path_copy == NULL) {
        set_error(err, errlen, path, "out of memory");
        free(p);
        free(path_copy);
        return FC_ENOMEM;
    }
    p->path = path_copy;
    p->memfd = -1;

    int rc = make_private_copy(path, &p->digest, err, errlen);
    if (rc < 0)
        goto fail;
    p->memfd = rc;

    char proc_path[64];
    snprintf(proc_path, sizeof(proc_path), "/proc/self/fd/%d", p->memfd);

    /*
     * glibc hands back an already loaded object whose name matches. Our own
     * loads keep their memfd (hence their N) until unload, but an object that
     * refused to unload (RTLD_NODELETE, unique symbols) would still carry an
     * old /proc/self/fd/N name: refuse rather than silently run old code.
     */
    void *stale = dlopen(proc_path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (stale != NULL) {
        dlclose(stale);
        set_error(err, errlen, path, "%s still maps an unloaded plugin; restart fulcrum",
                  proc_path);
        rc = FC_ERROR;
        goto fail;
    }

    p->handle = dlopen(proc_path, RTLD_NOW | RTLD_LOCAL);
    if (p->handle == NULL) {
        set_error(err, errlen, path, "%s", strip_proc_path(dlerror(), proc_path));
        rc = FC_EINVAL;
        goto fail;
    }

    p->desc = dlsym(p->handle, FC_PLUGIN_SYMBOL);
    rc = check_descriptor(p->desc, kind, path, err, errlen);
    if (rc < 0)
        goto fail;

    *out = p;
    return 0;

fail:
    fc_plugin_unload(p);
    return rc;
}

void fc_plugin_acquire(struct fc_plugin *p)
{
    p->refs++;
}

void fc_plugin_release(struct fc_plugin *p)
{
    if (--p->refs == 0)
        fc_plugin_unload(p);
}

void fc_plugin_unload(struct fc_plugin *p)
{
    if (p == NULL)
        return;
    /* The handle first: its number must not be reused while glibc knows the name. */
    if (p->handle != NULL)
        dlclose(p->handle);
    if (p->memfd >= 0)
        close(p->memfd);
    free(p->path);
    free(p);
}
