/*
 * The command line: `-t` checks a configuration and its plugins without
 * binding anything, and reports errors as FILE:LINE; --version and --help.
 */
#include "harness.h"

#include <errno.h>
#include <string.h>

#ifndef FC_IT_VERSION
#error "FC_IT_VERSION (the project version) must be defined by the build"
#endif

/* 1-based number of the first line of `text` containing `needle`. */
static int line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    assert_non_null(at);
    int line = 1;
    for (const char *p = text; p < at; p++)
        if (*p == '\n')
            line++;
    return line;
}

static void check(struct it_env *env, const char *path, struct it_run_result *res)
{
    const char *const argv[] = {FC_BINARY, "-t", "-c", path, NULL};
    it_run(env, argv, 10000, res);
}

IT_TEST(check_good_config)
{
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 2, it_dead_port(env), it_dead_port(env));
    int port = it_free_port();
    const char *path = it_write_file(env, "good.conf", it_config_render(env, &cfg, port));

    struct it_run_result res;
    check(env, path, &res);
    if (res.exit_code != 0)
        print_error("stderr: %s\n", res.err);
    assert_int_equal(res.exit_code, 0);
    assert_non_null(strstr(res.out, "configuration OK"));

    /* It only checked: nothing listens on the configured port. */
    int err = 0;
    assert_null(it_connect_raw(env, port, &err));
    assert_int_equal(err, -ECONNREFUSED);
}

/* Runs -t on `text` and expects exit 1 with "bad.conf:<line of needle>" on stderr. */
static void expect_error_at(struct it_env *env, const char *text, const char *needle)
{
    const char *path = it_write_file(env, "bad.conf", text);
    struct it_run_result res;
    check(env, path, &res);
    const char *where = it_strf(env, "bad.conf:%d", line_of(text, needle));
    if (res.exit_code != 1 || strstr(res.err, where) == NULL)
        print_error("expected exit 1 and \"%s\" on stderr; got exit %d, stderr:\n%s", where,
                    res.exit_code, res.err);
    assert_int_equal(res.exit_code, 1);
    assert_non_null(strstr(res.err, where));
    assert_null(strstr(res.out, "configuration OK"));
}

IT_TEST(check_unknown_pool)
{
    const char *text = it_strf(env,
                               "workers = 1;\n"
                               "plugin_dir = \"%s\";\n"
                               "listeners = (\n"
                               "  { address = \"127.0.0.1:%d\";\n"
                               "    pool = \"nope\"; }\n"
                               ");\n"
                               "pools = (\n"
                               "  { name = \"web\";\n"
                               "    strategy = { plugin = \"round_robin\"; };\n"
                               "    backends = ( { address = \"127.0.0.1:%d\"; } );\n"
                               "  }\n"
                               ");\n",
                               FC_PLUGIN_BUILD_DIR, it_free_port(), it_dead_port(env));
    expect_error_at(env, text, "pool = \"nope\"");
}

IT_TEST(check_missing_plugin)
{
    const char *text = it_strf(env,
                               "workers = 1;\n"
                               "plugin_dir = \"%s\";\n"
                               "listeners = ( { address = \"127.0.0.1:%d\"; pool = \"web\"; } );\n"
                               "pools = (\n"
                               "  { name = \"web\";\n"
                               "    strategy = { plugin = \"no_such_strategy\"; };\n"
                               "    backends = ( { address = \"127.0.0.1:%d\"; } );\n"
                               "  }\n"
                               ");\n",
                               FC_PLUGIN_BUILD_DIR, it_free_port(), it_dead_port(env));
    expect_error_at(env, text, "no_such_strategy");
}

IT_TEST(version_and_help)
{
    struct it_run_result res;
    const char *const version[] = {FC_BINARY, "--version", NULL};
    it_run(env, version, 10000, &res);
    assert_int_equal(res.exit_code, 0);
    assert_non_null(strstr(res.out, FC_IT_VERSION));

    const char *const help[] = {FC_BINARY, "--help", NULL};
    it_run(env, help, 10000, &res);
    assert_int_equal(res.exit_code, 0);
    assert_non_null(strstr(res.out, "-c"));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(check_good_config),
    IT_CASE(check_unknown_pool),
    IT_CASE(check_missing_plugin),
    IT_CASE(version_and_help),
};

IT_MAIN(tests)
