/*
 * Tests of plugins/cache/memory.c, loaded through the real loader and
 * created through the real host from a `cache` group: LRU order over the
 * whole store (not per shard), byte accounting within max_bytes, a body
 * larger than max_object_bytes refused, an entry too large for the store
 * kept nowhere, keys as opaque bytes, and the group's keys checked.
 * (`fulcrum plugin-check memory.so` runs the ops' contract and 4 threads;
 * tests/integration/test_plugin_check.c runs it.)
 */
#include "plugin_fixture.h"

#define MEMORY FC_PLUGIN_BUILD_DIR "/memory.so"
#define CONFIG_FILE "test.conf"

struct fixture {
    struct fc_plugin *plugin;
    const struct fc_cache_ops *ops;
    struct fc_instance inst;
    int have_inst;
    struct parsed_group group;
    int have_group;
};
static struct fixture fx;

static int setup(void **unused)
{
    memset(&fx, 0, sizeof(fx));
    log_capture_start();
    if (load_plugin(MEMORY, FC_PLUGIN_CACHE, &fx.plugin) < 0)
        return -1;
    fx.ops = fx.plugin->desc->cache;
    return 0;
}

static void drop_instance(void)
{
    if (fx.have_inst)
        fc_instance_destroy(&fx.inst);
    fx.have_inst = 0;
    if (fx.have_group)
        config_destroy(&fx.group.lc);
    fx.have_group = 0;
}

static int teardown(void **unused)
{
    drop_instance();
    fc_plugin_unload(fx.plugin);
    log_capture_stop();
    return 0;
}

/* Creates the store from a cache group whose own lines are `body` (first key on line 5). */
static int create(const char *body)
{
    drop_instance();
    fx.have_group = 1;
    parse_pool_group(&fx.group, "cache", "memory", body);
    struct fc_instance_hooks hooks = {.worker_count = 4};
    int rc = fc_instance_create(&fx.inst, fx.plugin, &fx.group.conf, CONFIG_FILE, NULL, NULL,
                                &hooks, "pool web: cache memory");
    fx.have_inst = rc == 0;
    return rc;
}

static void must_create(const char *body)
{
    int rc = create(body);
    if (rc != 0)
        dump_log();
    assert_int_equal(rc, 0);
}

/* Stores `len` bytes of `fill` under key (NUL-terminated here); returns what commit said. */
static int put(const char *key, size_t len, char fill)
{
    static char body[65536];
    assert_true(len <= sizeof(body));
    memset(body, fill, len);
    struct fc_cache_store *st = NULL;
    int rc = fx.ops->store_begin(fx.inst.state, key, strlen(key), "m", 1, len, &st);
    if (rc < 0)
        return rc;
    rc = fx.ops->store_append(fx.inst.state, st, body, len);
    if (rc < 0) {
        fx.ops->store_abort(fx.inst.state, st);
        return rc;
    }
    return fx.ops->store_commit(fx.inst.state, st);
}

/* Whether key is found (and the lookup counts as a use). */
static int has(const char *key)
{
    struct fc_cache_entry *e = NULL;
    struct fc_cache_hit hit = {.size = sizeof(hit)};
    if (fx.ops->lookup(fx.inst.state, key, strlen(key), &e, &hit) != 1)
        return 0;
    fx.ops->release(fx.inst.state, e);
    return 1;
}

static struct fc_cache_usage usage(void)
{
    struct fc_cache_usage u = {.size = sizeof(u)};
    fx.ops->usage(fx.inst.state, &u);
    return u;
}

/* 3 bodies of 10,000 bytes fit in 35,000 with their bookkeeping; a fourth evicts the LRU. */
static void test_lru_over_the_whole_store(void **unused)
{
    must_create("max_bytes = 35000; max_object_bytes = 12000;");
    assert_int_equal(put("A", 10000, 'a'), 0);
    assert_int_equal(put("B", 10000, 'b'), 0);
    assert_int_equal(put("C", 10000, 'c'), 0);
    assert_int_equal(usage().entries, 3);
    assert_true(has("A")); /* A is now the most recent: B is the least */
    assert_int_equal(put("D", 10000, 'd'), 0);
    assert_false(has("B"));
    assert_true(has("C")); /* order now A, D, C: A is the least recent */
    assert_int_equal(put("E", 10000, 'e'), 0);
    assert_false(has("A"));
    assert_true(has("C") && has("D") && has("E"));
    assert_int_equal(usage().entries, 3);
    assert_true(usage().bytes <= 35000);
}

/* Many keys, spread over every shard: the oldest go first, whichever shard they are in. */
static void test_lru_across_shards(void **unused)
{
    must_create("max_bytes = 110000; max_object_bytes = 1000;");
    char key[16];
    int stored = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(put(key, 1000, 'x'), 0);
        stored++;
    }
    uint64_t kept = usage().entries;
    assert_true(kept > 50 && kept < 100);
    /* Exactly the newest `kept` keys are left. */
    for (int i = 0; i < stored; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (has(key) != (i >= stored - (int)kept))
            fail_msg("k%d: found %d, but %llu of %d kept should be the newest", i, has(key),
                     (unsigned long long)kept, stored);
    }
}

static void test_bytes_counted(void **unused)
{
    must_create("max_bytes = 1000000; max_object_bytes = 100000;");
    assert_int_equal(usage().bytes, 0);
    assert_int_equal(usage().max_bytes, 1000000);
    assert_int_equal(put("/a\nhost", 50000, 'a'), 0);
    struct fc_cache_usage u = usage();
    /* The key, the meta and the body, and bookkeeping that is not free but is small. */
    assert_true(u.bytes > 50000 + 8);
    assert_true(u.bytes < 50000 + 1024);
    /* Replacing it counts the new one only. */
    assert_int_equal(put("/a\nhost", 20000, 'b'), 0);
    assert_true(usage().bytes < 20000 + 1024);
    /* A body of unknown length grows in chunks, but counts what it keeps once committed. */
    struct fc_cache_store *st = NULL;
    assert_int_equal(fx.ops->store_begin(fx.inst.state, "u", 1, "", 0, FC_CACHE_LEN_UNKNOWN, &st),
                     0);
    assert_int_equal(fx.ops->store_append(fx.inst.state, st, "tiny", 4), 0);
    assert_int_equal(fx.ops->store_commit(fx.inst.state, st), 0);
    assert_true(usage().bytes < 20000 + 1024 + 4 + 1024);
    assert_int_equal(fx.ops->remove(fx.inst.state, NULL, 0), 2);
    assert_int_equal(usage().bytes, 0);
    assert_int_equal(usage().entries, 0);
}

static void test_too_large(void **unused)
{
    must_create("max_bytes = 3000; max_object_bytes = 2000;");
    struct fc_cache_store *st = NULL;
    assert_int_equal(fx.ops->store_begin(fx.inst.state, "k", 1, "", 0, 2001, &st), FC_E2BIG);
    assert_int_equal(put("k", 2001, 'x'), FC_E2BIG);
    /* Unknown length: refused by the append that goes past it. */
    assert_int_equal(fx.ops->store_begin(fx.inst.state, "k", 1, "", 0, FC_CACHE_LEN_UNKNOWN, &st),
                     0);
    static char chunk[1500];
    assert_int_equal(fx.ops->store_append(fx.inst.state, st, chunk, sizeof(chunk)), 0);
    assert_int_equal(fx.ops->store_append(fx.inst.state, st, chunk, sizeof(chunk)), FC_E2BIG);
    fx.ops->store_abort(fx.inst.state, st);
    assert_false(has("k"));
    /* An entry that fits max_object_bytes but not, with its bookkeeping, max_bytes. */
    must_create("max_bytes = 1000; max_object_bytes = 1000;");
    assert_true(put("k", 1000, 'x') < 0);
    assert_false(has("k"));
    assert_int_equal(usage().bytes, 0);
}

/* Keys are bytes: embedded NULs, and keys that only differ after one. */
static void test_opaque_keys(void **unused)
{
    must_create("");
    struct fc_cache_store *st = NULL;
    assert_int_equal(fx.ops->store_begin(fx.inst.state, "a\0b", 3, "m\0n", 3, 0, &st), 0);
    assert_int_equal(fx.ops->store_commit(fx.inst.state, st), 0);
    struct fc_cache_entry *e = NULL;
    struct fc_cache_hit hit = {.size = sizeof(hit)};
    assert_int_equal(fx.ops->lookup(fx.inst.state, "a\0c", 3, &e, &hit), 0);
    assert_int_equal(fx.ops->lookup(fx.inst.state, "a", 1, &e, &hit), 0);
    assert_int_equal(fx.ops->lookup(fx.inst.state, "a\0b", 3, &e, &hit), 1);
    assert_int_equal(hit.meta.len, 3);
    assert_memory_equal(hit.meta.data, "m\0n", 3);
    assert_int_equal(hit.body_len, 0);
    struct fc_cache_span spans[2];
    assert_int_equal(fx.ops->read(fx.inst.state, e, 0, spans, 2), 0);
    fx.ops->release(fx.inst.state, e);
    /* The defaults. */
    assert_int_equal(usage().max_bytes, 64 * 1024 * 1024);
}

static void test_bad_keys(void **unused)
{
    assert_true(create("max_bytes = 0;") < 0);
    assert_logged("test.conf:5: pool \"web\": cache.max_bytes: expected a number of bytes >= 1 "
                  "(got 0)");
    assert_true(create("max_bytes = 1000; max_object_bytes = 2000;") < 0);
    assert_logged("test.conf:5: pool \"web\": cache.max_object_bytes: 2000 is more than "
                  "max_bytes (1000): no object that large would fit");
    assert_true(create("nope = 1;") < 0);
    assert_logged("test.conf:5: pool \"web\": cache.nope: unknown key for cache plugin \"memory\"");
    assert_true(create("max_bytes = \"lots\";") < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lru_over_the_whole_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_across_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opaque_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
