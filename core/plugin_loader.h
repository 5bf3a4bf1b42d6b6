/*
 * Loading plugin shared objects. Each load reads the file into a private
 * memfd and dlopen()s it through /proc/self/fd/N, so that:
 *   - loading the same path again after the file changed runs the new code
 *     (glibc would otherwise return the cached handle of the path), and
 *   - overwriting the file on disk in place cannot crash a running process,
 *     whose mapping comes from the memfd, not the file.
 * The memfd stays open until fc_plugin_unload(): its number must not be reused
 * while the handle lives, or glibc would hand back the old handle for the same
 * /proc/self/fd/N path.
 */
#ifndef FC_PLUGIN_LOADER_H
#define FC_PLUGIN_LOADER_H

#include <fulcrum/plugin.h>
#include <stddef.h>

struct fc_plugin {
    char *path;                              /**< the file it was loaded from */
    int memfd;                               /**< private copy, open until unload */
    void *handle;                            /**< from dlopen */
    const struct fc_plugin_descriptor *desc; /**< inside the loaded object */
    uint64_t digest; /**< hash of the file's bytes: the same code loaded twice has the same */
    uint32_t refs;   /**< holders: see fc_plugin_acquire(); main thread only */
};

/** fc_plugin_load()'s `kind` that accepts a plugin of any kind. */
#define FC_PLUGIN_ANY_KIND ((enum fc_plugin_kind)0)

/**
 * Loads `path` and checks it is a plugin of `kind` (or of any kind, for
 * FC_PLUGIN_ANY_KIND): the descriptor symbol
 * exists, its magic, ABI major (equal) and minor (not newer than ours), size,
 * kind, name and the kind's required ops. On success stores it in *out and
 * returns 0. On failure returns a negative code and writes one line to err
 * naming the file and the reason, e.g.
 *   "/usr/lib/fulcrum/plugins/x.so: built for plugin ABI 2.0, this fulcrum provides 1.0".
 */
int fc_plugin_load(const char *path, enum fc_plugin_kind kind, struct fc_plugin **out, char *err,
                   size_t errlen);

/**
 * References, for code several holders share (generations, rate limiter
 * instances handed on across reloads). fc_plugin_load() returns one; the last
 * release unloads. Main thread only.
 */
void fc_plugin_acquire(struct fc_plugin *p);
void fc_plugin_release(struct fc_plugin *p);

/**
 * Unloads at once, whatever the count (for a plugin with one holder, such as
 * a test's). Call only when no instance of it is left. NULL is accepted.
 */
void fc_plugin_unload(struct fc_plugin *p);

/** "strategy", "health", "ratelimit", "cache", or "unknown". */
const char *fc_plugin_kind_name(int kind);

#endif
