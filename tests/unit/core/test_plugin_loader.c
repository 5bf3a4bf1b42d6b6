/*
 * Tests of core/plugin_loader.c: every refusal names the file and the exact
 * reason, and every load is a private copy, independent of other loads of the
 * same path and of what happens to the file afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include "plugin_host.h"
#include "plugin_loader.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_PLUGIN(name) FC_TEST_PLUGIN_DIR "/" name ".so"
#define ROUND_ROBIN FC_PLUGIN_BUILD_DIR "/round_robin.so"
#define TEST_STRATEGY TEST_PLUGIN("test_strategy")

static char tmpdir[64];
static char err[1024];

static struct fc_backend_state states[3] = {{1, 0}, {1, 0}, {1, 0}};
static const struct fc_backend_view views[3] = {
    {.index = 0, .weight = 1, .address = "127.0.0.1:9001", .state = &states[0]},
    {.index = 1, .weight = 1, .address = "127.0.0.1:9002", .state = &states[1]},
    {.index = 2, .weight = 1, .address = "127.0.0.1:9003", .state = &states[2]},
};
static const struct fc_pool_view pool = {.name = "web", .n_backends = 3, .backends = views};

static void tmp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void copy_file(const char *src, const char *dst)
{
    char buf[65536];
    int in = open(src, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(out >= 0);
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

/* Picks once through a fresh instance of a strategy plugin. */
static int first_pick(const struct fc_plugin *p)
{
    struct fc_instance inst;
    struct fc_pick_args args = {.size = sizeof(args)};
    assert_int_equal(fc_instance_create(&inst, p, NULL, NULL, NULL, &pool, NULL, NULL), 0);
    int picked = p->desc->strategy->pick(inst.state, &args);
    fc_instance_destroy(&inst);
    return picked;
}

static int setup(void **unused)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/fc_loader_XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **unused)
{
    static const char *const names[] = {"plugin.so", "plugin.so.new", "text.so", "empty.so"};
    char path[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        tmp_path(path, sizeof(path), names[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

/* Loads `path` as `kind`, expects `code` and exactly "<path>: <reason>". */
static void expect_refusal(const char *path, enum fc_plugin_kind kind, int code, const char *reason)
{
    struct fc_plugin *p = (struct fc_plugin *)&p; /* must be reset to NULL */
    char expected[1024];

    assert_int_equal(fc_plugin_load(path, kind, &p, err, sizeof(err)), code);
    assert_null(p);
    snprintf(expected, sizeof(expected), "%s: %s", path, reason);
    assert_string_equal(err, expected);
}

static void test_good_plugin_loads(void **unused)
{
    struct fc_plugin *p = NULL;

    assert_int_equal(fc_plugin_load(ROUND_ROBIN, FC_PLUGIN_STRATEGY, &p, err, sizeof(err)), 0);
    assert_non_null(p);
    assert_string_equal(p->path, ROUND_ROBIN);
    assert_string_equal(p->desc->name, "round_robin");
    assert_int_equal(p->desc->kind, FC_PLUGIN_STRATEGY);
    assert_non_null(p->desc->strategy->pick);
    assert_true(p->memfd >= 0);
    assert_int_equal(first_pick(p), 0);
    fc_plugin_unload(p);

    /* The same checks accept a health checker loaded as one. */
    assert_int_equal(
        fc_plugin_load(TEST_PLUGIN("wrong_kind"), FC_PLUGIN_HEALTH, &p, err, sizeof(err)), 0);
    assert_string_equal(p->desc->name, "wrong_kind");
    fc_plugin_unload(p);

    fc_plugin_unload(NULL);
}

static void test_no_descriptor(void **unused)
{
    expect_refusal(TEST_PLUGIN("no_descriptor"), FC_PLUGIN_STRATEGY, FC_EINVAL,
                   "no fc_plugin descriptor: not a fulcrum plugin");
}

static void test_bad_magic(void **unused)
{
    expect_refusal(TEST_PLUGIN("bad_magic"), FC_PLUGIN_STRATEGY, FC_EINVAL,
                   "fc_plugin descriptor has a bad magic number 0xdeadbeef: not a fulcrum plugin");
}

static void test_bad_abi_major(void **unused)
{
    char reason[128];
    snprintf(reason, sizeof(reason), "built for plugin ABI %d.0, this fulcrum provides %d.%d",
             FC_ABI_MAJOR + 1, FC_ABI_MAJOR, FC_ABI_MINOR);
    expect_refusal(TEST_PLUGIN("bad_abi_major"), FC_PLUGIN_STRATEGY, FC_EINVAL, reason);
}

static void test_bad_abi_minor(void **unused)
{
    char reason[128];
    snprintf(reason, sizeof(reason),
             "built for plugin ABI %d.%d, newer than this fulcrum's %d.%d: upgrade fulcrum",
             FC_ABI_MAJOR, FC_ABI_MINOR + 5, FC_ABI_MAJOR, FC_ABI_MINOR);
    expect_refusal(TEST_PLUGIN("bad_abi_minor"), FC_PLUGIN_STRATEGY, FC_EINVAL, reason);
}

static void test_small_descriptor(void **unused)
{
    char reason[128];
    /* 1.0's descriptor ends with the ratelimit member; later minors appended to it. */
    snprintf(reason, sizeof(reason), "descriptor too small (16 bytes, ABI 1.0 has %zu)",
             offsetof(struct fc_plugin_descriptor, ratelimit) + sizeof(void *));
    expect_refusal(TEST_PLUGIN("small_descriptor"), FC_PLUGIN_STRATEGY, FC_EINVAL, reason);
}

static void test_wrong_kind(void **unused)
{
    expect_refusal(TEST_PLUGIN("wrong_kind"), FC_PLUGIN_STRATEGY, FC_EINVAL,
                   "is a health plugin, expected a strategy plugin");
    expect_refusal(ROUND_ROBIN, FC_PLUGIN_RATELIMIT, FC_EINVAL,
                   "is a strategy plugin, expected a ratelimit plugin");
}

/* The cache kind came with ABI 1.3: a descriptor that predates it, or has no ops, is refused. */
static void test_cache_kind(void **unused)
{
    char reason[128];
    snprintf(reason, sizeof(reason),
             "cache plugin built for plugin ABI 1.2 (%zu-byte descriptor): the cache kind needs "
             "1.3",
             offsetof(struct fc_plugin_descriptor, cache));
    expect_refusal(TEST_PLUGIN("old_cache"), FC_PLUGIN_CACHE, FC_EINVAL, reason);
    expect_refusal(TEST_PLUGIN("no_cache_ops"), FC_PLUGIN_CACHE, FC_EINVAL,
                   "cache plugin has no cache ops");
    struct fc_plugin *p = NULL;
    assert_int_equal(
        fc_plugin_load(FC_PLUGIN_BUILD_DIR "/memory.so", FC_PLUGIN_CACHE, &p, err, sizeof(err)), 0);
    assert_string_equal(p->desc->name, "memory");
    assert_string_equal(fc_plugin_kind_name((int)p->desc->kind), "cache");
    fc_plugin_unload(p);
}

static void test_no_name(void **unused)
{
    expect_refusal(TEST_PLUGIN("no_name"), FC_PLUGIN_STRATEGY, FC_EINVAL, "descriptor has no name");
}

static void test_no_ops(void **unused)
{
    expect_refusal(TEST_PLUGIN("no_ops"), FC_PLUGIN_STRATEGY, FC_EINVAL,
                   "strategy plugin has no strategy ops");
}

static void test_small_ops(void **unused)
{
    char reason[128];
    snprintf(reason, sizeof(reason), "strategy ops table too small (8 bytes, ABI 1.0 has %zu)",
             sizeof(struct fc_strategy_ops));
    expect_refusal(TEST_PLUGIN("small_ops"), FC_PLUGIN_STRATEGY, FC_EINVAL, reason);
}

static void test_no_pick(void **unused)
{
    expect_refusal(TEST_PLUGIN("no_pick"), FC_PLUGIN_STRATEGY, FC_EINVAL,
                   "strategy ops lack pick()");
}

static void test_missing_file(void **unused)
{
    expect_refusal("/nonexistent/fulcrum/missing.so", FC_PLUGIN_STRATEGY, FC_ENOENT,
                   "No such file or directory");
}

static void test_not_elf(void **unused)
{
    char path[128];
    char text[512];
    memset(text, 'x', sizeof(text));
    tmp_path(path, sizeof(path), "text.so");
    write_file(path, text, sizeof(text));
    /* dlerror() names /proc/self/fd/N; the loader names the file instead. */
    expect_refusal(path, FC_PLUGIN_STRATEGY, FC_EINVAL, "invalid ELF header");

    tmp_path(path, sizeof(path), "empty.so");
    write_file(path, "", 0);
    expect_refusal(path, FC_PLUGIN_STRATEGY, FC_EINVAL, "file too short");
}

static void test_directory(void **unused)
{
    struct fc_plugin *p;
    char expected[128];
    assert_int_equal(fc_plugin_load(tmpdir, FC_PLUGIN_STRATEGY, &p, err, sizeof(err)), FC_ERROR);
    assert_null(p);
    snprintf(expected, sizeof(expected), "%s: copying to memfd: Is a directory", tmpdir);
    assert_string_equal(err, expected);
}

static void test_small_error_buffer(void **unused)
{
    struct fc_plugin *p;
    char small[8];
    assert_int_equal(
        fc_plugin_load(TEST_PLUGIN("no_pick"), FC_PLUGIN_STRATEGY, &p, small, sizeof(small)),
        FC_EINVAL);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_int_equal(fc_plugin_load(TEST_PLUGIN("no_pick"), FC_PLUGIN_STRATEGY, &p, NULL, 0),
                     FC_EINVAL);
}

static void test_same_path_twice(void **unused)
{
    struct fc_plugin *a, *b;

    assert_int_equal(fc_plugin_load(ROUND_ROBIN, FC_PLUGIN_STRATEGY, &a, err, sizeof(err)), 0);
    assert_int_equal(fc_plugin_load(ROUND_ROBIN, FC_PLUGIN_STRATEGY, &b, err, sizeof(err)), 0);
    assert_ptr_not_equal(a->handle, b->handle);
    assert_ptr_not_equal(a->desc, b->desc);
    assert_int_not_equal(a->memfd, b->memfd);

    /*
     * Independent data too: round_robin starts its k-th instance at backend
     * k, counting per loaded copy. Two instances from a, then one from b,
     * which starts over.
     */
    assert_int_equal(first_pick(a), 0);
    assert_int_equal(first_pick(a), 1);
    assert_int_equal(first_pick(b), 0);

    fc_plugin_unload(a);
    assert_int_equal(first_pick(b), 1);
    fc_plugin_unload(b);
}

static void test_replaced_file_runs_new_code(void **unused)
{
    char path[128], staging[128];
    struct fc_plugin *old, *new;

    tmp_path(path, sizeof(path), "plugin.so");
    tmp_path(staging, sizeof(staging), "plugin.so.new");

    copy_file(TEST_STRATEGY, path);
    assert_int_equal(fc_plugin_load(path, FC_PLUGIN_STRATEGY, &old, err, sizeof(err)), 0);
    assert_string_equal(old->desc->name, "test_strategy");

    /* Replace the file the way a package manager does, while the old code is loaded. */
    copy_file(ROUND_ROBIN, staging);
    assert_int_equal(rename(staging, path), 0);
    assert_int_equal(fc_plugin_load(path, FC_PLUGIN_STRATEGY, &new, err, sizeof(err)), 0);
    assert_string_equal(new->desc->name, "round_robin");
    assert_string_equal(old->desc->name, "test_strategy");
    assert_int_equal(first_pick(new), 0);
    fc_plugin_unload(old);
    fc_plugin_unload(new);

    /*
     * And after an unload: the next load reuses the memfd's number, hence the
     * same /proc/self/fd/N name, and must not get the previous object back.
     */
    copy_file(TEST_STRATEGY, staging);
    assert_int_equal(rename(staging, path), 0);
    assert_int_equal(fc_plugin_load(path, FC_PLUGIN_STRATEGY, &new, err, sizeof(err)), 0);
    assert_string_equal(new->desc->name, "test_strategy");
    fc_plugin_unload(new);
}

static void test_overwritten_in_place_keeps_running(void **unused)
{
    char path[128];
    char garbage[8192];
    struct fc_plugin *p;

    tmp_path(path, sizeof(path), "plugin.so");
    copy_file(ROUND_ROBIN, path);
    assert_int_equal(fc_plugin_load(path, FC_PLUGIN_STRATEGY, &p, err, sizeof(err)), 0);

    /* Truncate and scribble over the very file that was loaded. */
    memset(garbage, 0xcc, sizeof(garbage));
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, garbage, sizeof(garbage)), (ssize_t)sizeof(garbage));
    assert_int_equal(close(fd), 0);

    /* The loaded copy still runs: its code and data come from the memfd. */
    assert_string_equal(p->desc->name, "round_robin");
    assert_int_equal(first_pick(p), 0);
    assert_int_equal(first_pick(p), 1);

    /* While a new load sees the garbage. */
    expect_refusal(path, FC_PLUGIN_STRATEGY, FC_EINVAL, "invalid ELF header");
    fc_plugin_unload(p);
}

static void test_kind_names(void **unused)
{
    assert_string_equal(fc_plugin_kind_name(FC_PLUGIN_STRATEGY), "strategy");
    assert_string_equal(fc_plugin_kind_name(FC_PLUGIN_HEALTH), "health");
    assert_string_equal(fc_plugin_kind_name(FC_PLUGIN_RATELIMIT), "ratelimit");
    assert_string_equal(fc_plugin_kind_name(0), "unknown");
    assert_string_equal(fc_plugin_kind_name(42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plugin_loads),
        cmocka_unit_test(test_no_descriptor),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_bad_abi_major),
        cmocka_unit_test(test_bad_abi_minor),
        cmocka_unit_test(test_small_descriptor),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_no_name),
        cmocka_unit_test(test_cache_kind),
        cmocka_unit_test(test_no_ops),
        cmocka_unit_test(test_small_ops),
        cmocka_unit_test(test_no_pick),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_elf),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_same_path_twice),
        cmocka_unit_test(test_replaced_file_runs_new_code),
        cmocka_unit_test(test_overwritten_in_place_keeps_running),
        cmocka_unit_test(test_kind_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
