/*
 * bad_descriptor: a strategy whose descriptor is wrong in exactly one way,
 * chosen when it is built. CMakeLists.txt builds it once for each way, under
 * the name the loader tests load:
 *
 *   bad_abi_major     built for plugin ABI 2.0, which this host must refuse
 *   bad_abi_minor     built for plugin ABI 1.5, newer than the host's 1.0
 *   bad_magic         an fc_plugin symbol that does not start with FC_PLUGIN_MAGIC
 *   small_descriptor  a descriptor claiming fewer bytes than ABI 1.0 defines
 *   no_name           a descriptor with an empty name
 *   bad_kind          a descriptor of kind 9, which no fulcrum has
 *   old_cache         a cache plugin built for ABI 1.2, which had no cache kind
 *   no_cache_ops      a cache plugin without a cache ops table
 *
 * Each build defines BAD_NAME, the descriptor's name, and may replace one of
 * the correct values below (BAD_MAGIC, BAD_ABI_MAJOR, BAD_ABI_MINOR,
 * BAD_SIZE, BAD_KIND). The strategy itself is well-formed, so that the descriptor is
 * the only reason the loader has to refuse it.
 */
#include <fulcrum/plugin.h>

#include <stddef.h>

#ifndef BAD_NAME
#error "build with -DBAD_NAME=\"...\" (see tests/plugins/CMakeLists.txt)"
#endif
#ifndef BAD_MAGIC
#define BAD_MAGIC FC_PLUGIN_MAGIC
#endif
#ifndef BAD_ABI_MAJOR
#define BAD_ABI_MAJOR FC_ABI_MAJOR
#endif
#ifndef BAD_ABI_MINOR
#define BAD_ABI_MINOR FC_ABI_MINOR
#endif
#ifndef BAD_KIND
#define BAD_KIND FC_PLUGIN_STRATEGY
#endif
#ifndef BAD_SIZE
#define BAD_SIZE sizeof(struct fc_plugin_descriptor)
#endif

static int broken_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    return 0;
}

static int broken_pick(void *state, const struct fc_pick_args *args)
{
    return 0;
}

static const struct fc_strategy_ops broken_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = broken_create,
    .pick = broken_pick,
};

/* Written out by hand: FC_PLUGIN_DESCRIPTOR() would stamp the correct fields. */
FC_PLUGIN_EXPORT const struct fc_plugin_descriptor fc_plugin = {
    .magic = (BAD_MAGIC),
    .abi_major = (BAD_ABI_MAJOR),
    .abi_minor = (BAD_ABI_MINOR),
    .size = (BAD_SIZE),
    .kind = (BAD_KIND),
    .name = BAD_NAME,
    .strategy = &broken_ops,
};
