/*
 * `fulcrum plugin-check FILE.so [KEY=VALUE ...]` as a plugin author meets it:
 * every bundled plugin passes, with a report of what its exercise saw; every
 * plugin built wrong (tests/plugins/bad_descriptor.c and friends) is refused
 * for its reason; every plugin that loads but breaks a rule of the ABI
 * (tests/plugins/misbehave.c) fails, the last line of stderr saying which
 * rule. Exit status 0 passed, 1 failed, 2 a wrong command line.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

/* Far more than the slowest exercise takes (no_verdict's, about 5 s), also under ASan. */
#define CHECK_TIMEOUT_MS 60000

/* Runs plugin-check with argv's words after it (NULL-terminated, at most 8). */
static void plugin_check(struct it_env *env, const char *const *words, struct it_run_result *res)
{
    const char *argv[12] = {FC_BINARY, "plugin-check"};
    int n = 2;
    for (int i = 0; words[i] != NULL && n < 11; i++)
        argv[n++] = words[i];
    argv[n] = NULL;
    it_run(env, argv, CHECK_TIMEOUT_MS, res);
}

static const char *bundled(struct it_env *env, const char *name)
{
    return it_strf(env, "%s/%s.so", FC_PLUGIN_BUILD_DIR, name);
}

static const char *test_plugin(struct it_env *env, const char *name)
{
    return it_strf(env, "%s/%s.so", FC_TEST_PLUGIN_DIR, name);
}

/* Fails the test, with what the command printed, unless `needle` is in `text`. */
static void expect_in(const char *what, const char *text, const char *needle,
                      const struct it_run_result *res)
{
    if (strstr(text, needle) == NULL)
        fail_msg("expected \"%s\" in %s; exit %d\nstdout:\n%s\nstderr:\n%s", needle, what,
                 res->exit_code, res->out, res->err);
}

/* Checks `path` with `keys` (NULL-terminated) and expects it to pass; returns stdout. */
static const char *expect_pass(struct it_env *env, const char *path, const char *const *keys)
{
    const char *words[10] = {path};
    int n = 1;
    for (int i = 0; keys != NULL && keys[i] != NULL && n < 9; i++)
        words[n++] = keys[i];
    words[n] = NULL;
    struct it_run_result res;
    plugin_check(env, words, &res);
    if (res.exit_code != 0)
        fail_msg("plugin-check %s: exit %d\nstdout:\n%s\nstderr:\n%s", path, res.exit_code, res.out,
                 res.err);
    /* The last line says so. */
    expect_in("stdout", res.out, it_strf(env, "\n%s: passed\n", path), &res);
    expect_in("stdout", res.out, "leaks: 3 more runs", &res);
    return res.out;
}

/* Checks `path` with `words` after it and expects exit 1 with `reason` in the last line. */
static void expect_refused(struct it_env *env, const char *const *words, const char *reason)
{
    struct it_run_result res;
    plugin_check(env, words, &res);
    const char *last = res.err + strlen(res.err);
    if (last > res.err)
        last--; /* the final newline */
    while (last > res.err && last[-1] != '\n')
        last--;
    const char *want = it_strf(env, "fulcrum plugin-check: %s: ", words[0]);
    if (res.exit_code != 1 || strncmp(last, want, strlen(want)) != 0 ||
        strstr(last, reason) == NULL)
        fail_msg("plugin-check %s: expected exit 1 and a last line \"%s...%s...\"; got exit %d, "
                 "last line \"%s\"\nstdout:\n%s\nstderr:\n%s",
                 words[0], want, reason, res.exit_code, last, res.out, res.err);
    assert_null(strstr(res.out, ": passed\n"));
}

/* The distribution line of `backend` in `phase` of a strategy's report. */
static const char *phase_line(struct it_env *env, const char *out, const char *phase,
                              const char *backend)
{
    const char *at = strstr(out, phase);
    if (at == NULL)
        fail_msg("no \"%s\" in:\n%s", phase, out);
    /* The table's line, not the phase's own, which may name the backend too. */
    at = strstr(at, it_strf(env, "\n  %s ", backend));
    assert_non_null(at);
    at += 3;
    const char *end = strchr(at, '\n');
    assert_non_null(end);
    return it_strf(env, "%.*s", (int)(end - at), at);
}

IT_TEST(bundled_strategies_pass)
{
    const char *names[] = {"round_robin", "weighted", "least_conn", "ip_hash",
                           "hash",        "p2c",      "ewma",       "sticky"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *out = expect_pass(env, bundled(env, names[i]), NULL);
        struct it_run_result res = {.out = out, .err = ""};
        expect_in("stdout", out, "kind        strategy\n", &res);
        /* Phase 2: the backend that is down gets nothing. */
        expect_in("phase 2", phase_line(env, out, "phase 2", "192.0.2.2:8080"), " 0    0.0 %",
                  &res);
        /* Phase 4: everything is refused. */
        expect_in("stdout", out, "refused (FC_ENOBACKEND): 1000\n", &res);
    }
}

/* round_robin's figures are exact: a quarter each, a third each once one is down. */
IT_TEST(round_robin_report)
{
    const char *out = expect_pass(env, bundled(env, "round_robin"), NULL);
    struct it_run_result res = {.out = out, .err = ""};
    for (int b = 1; b <= 4; b++)
        expect_in("phase 1", phase_line(env, out, "phase 1", it_strf(env, "192.0.2.%d:8080", b)),
                  "25.0 %", &res);
    expect_in("phase 2", phase_line(env, out, "phase 2", "192.0.2.1:8080"), "33.3 %", &res);
    expect_in("phase 3", phase_line(env, out, "phase 3", "192.0.2.4:8080"), "drained", &res);
    expect_in("stdout", out, "never to the same backend (0 refused)", &res);
}

/* sticky keeps a client where its cookie says: almost no request moves. */
IT_TEST(sticky_keeps_clients)
{
    const char *out = expect_pass(env, bundled(env, "sticky"), NULL);
    const char *moved = strstr(out, "went elsewhere than their client's last one: ");
    assert_non_null(moved);
    double share = 100.0;
    assert_int_equal(sscanf(moved, "went elsewhere than their client's last one: %lf", &share), 1);
    if (share > 5.0)
        fail_msg("sticky moved %.1f %% of requests off their client's backend:\n%s", share, out);
    /* And it said so with a cookie: headers added are reported. */
    struct it_run_result res = {.out = out, .err = ""};
    expect_in("stdout", out, "Set-Cookie", &res);
}

IT_TEST(bundled_health_checkers_pass)
{
    const char *keys[] = {"timeout_ms=300", NULL};
    const char *names[] = {"http", "tcp"};
    for (int i = 0; i < 2; i++) {
        const char *out = expect_pass(env, bundled(env, names[i]), keys);
        struct it_run_result res = {.out = out, .err = ""};
        expect_in("stdout", out, "kind        health\n", &res);
        expect_in("stdout", out, "keys        timeout_ms=300\n", &res);
    }
}

IT_TEST(token_bucket_passes_and_keeps_its_retry_after)
{
    const char *keys[] = {"rate=10", "burst=5", NULL};
    const char *out = expect_pass(env, bundled(env, "token_bucket"), keys);
    struct it_run_result res = {.out = out, .err = ""};
    expect_in("stdout", out, "kind        ratelimit\n", &res);
    /* 16 keys, a burst of 5 each, and well under a second for a sixth token to come. */
    expect_in("stdout", out, "allowed per key: 5 to 5\n", &res);
    expect_in("stdout", out, "key 203.0.113.1: denied after 6 checks in a row", &res);
    expect_in("stdout", out, "ms: allowed\n", &res);
}

IT_TEST(redis_passes_against_a_real_server)
{
    int port = it_redis_start(env, 0, NULL);
    const char *keys[] = {"rate=10", "burst=5", it_strf(env, "address=127.0.0.1:%d", port),
                          "timeout_ms=1000", NULL};
    struct it_run_result res;
    const char *out = expect_pass(env, bundled(env, "redis"), keys);
    res = (struct it_run_result){.out = out, .err = ""};
    /* Every verdict came from Redis, later: none is the on_error default. */
    expect_in("stdout", out, "of them came later (PENDING)", &res);
    expect_in("stdout", out, "key 203.0.113.1: denied after 6 checks in a row", &res);
    expect_in("stdout", out, "ms: allowed\n", &res);
}

/* memory: every op as the ABI says, 4 threads at once, and never more than max_bytes counted. */
IT_TEST(memory_cache_passes_within_its_bytes)
{
    const char *keys[] = {"max_bytes=200000", "max_object_bytes=20000", NULL};
    const char *out = expect_pass(env, bundled(env, "memory"), keys);
    struct it_run_result res = {.out = out, .err = ""};
    expect_in("stdout", out, "kind        cache\n", &res);
    expect_in("stdout", out, "remove() by prefix and of all: as the ABI says\n", &res);
    const char *at = strstr(out, "bytes counted: at most ");
    assert_non_null(at);
    unsigned long long most = 0, max = 0;
    assert_int_equal(sscanf(at, "bytes counted: at most %llu of max_bytes %llu", &most, &max), 2);
    assert_int_equal(max, 200000);
    assert_true(most <= max);
    /* The store was full: eviction ran, and what was stored was found again. */
    assert_true(most > max / 2);
    expect_in("stdout", out, "hits (every body as stored)", &res);
}

/* With no server, the on_error verdict ("allow") is a pass, and a warning says nothing was denied.
 */
IT_TEST(redis_without_a_server_passes_with_a_warning)
{
    const char *keys[] = {"rate=10", "burst=5",
                          it_strf(env, "address=127.0.0.1:%d", it_dead_port(env)), NULL};
    const char *words[] = {bundled(env, "redis"), keys[0], keys[1], keys[2], NULL};
    struct it_run_result res;
    plugin_check(env, words, &res);
    assert_int_equal(res.exit_code, 0);
    expect_in("stdout", res.out, "warning: no check was denied", &res);
    expect_in("stderr", res.err, "Connection refused; checks get on_error = \"allow\"", &res);
}

IT_TEST(broken_plugins_are_refused_for_their_reason)
{
    static const struct {
        const char *name, *reason;
    } cases[] = {
        {"bad_abi_major", "ABI"},
        {"bad_abi_minor", "ABI"},
        {"bad_magic", "magic"},
        {"small_descriptor", "descriptor"},
        {"no_name", "name"},
        {"no_descriptor", "fc_plugin"},
        {"no_ops", "ops"},
        {"small_ops", "ops"},
        {"no_pick", "pick"},
        {"bad_kind", "descriptor has an unknown kind 9"},
        {"old_cache", "cache plugin built for plugin ABI 1.2"},
        {"no_cache_ops", "cache plugin has no cache ops"},
        {"create_fails", "create() failed: pool check: strategy create_fails (worker 0): "
                         "cannot start: the test says so"},
        {"wrong_kind", "which answers HTTP 200 to anything"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *words[] = {test_plugin(env, cases[i].name), NULL};
        expect_refused(env, words, cases[i].reason);
    }
}

IT_TEST(misbehaving_plugins_fail_the_rule_they_break)
{
    static const struct {
        const char *name, *reason;
    } cases[] = {
        {"picks_down", "pick() chose 192.0.2.2:8080, which is down"},
        {"ignores_tried", "again for a request whose connect to it had just failed"},
        {"out_of_range", "pick() returned 4, but the pool has 4 backends"},
        {"grows_memory", "leaks memory: "},
        {"leaks_fd", "leaks file descriptors: "},
        {"bad_verdict", "check() returned 7: not a verdict"},
        {"done_inside", "ratelimit_done() came inside check()"},
        {"loses_pending", "pending checks got no verdict within 10000 ms"},
        {"false_retry", "key 203.0.113.1 was denied again 21 ms after a denial said "
                        "Retry-After 1 ms"},
        {"passes_all", "which refuses connections: looks fine from here"},
        {"no_verdict", "no verdict for 127.0.0.1:"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *words[] = {test_plugin(env, cases[i].name), "timeout_ms=300", NULL};
        if (strncmp(cases[i].name, "passes_all", 10) != 0 &&
            strncmp(cases[i].name, "no_verdict", 10) != 0)
            words[1] = NULL; /* only the health checkers have timeout_ms */
        expect_refused(env, words, cases[i].reason);
    }
}

IT_TEST(a_bad_key_is_named_as_in_a_config)
{
    const char *words[] = {bundled(env, "token_bucket"), "rate=10", "nope=1", NULL};
    expect_refused(env, words, "key=value:2");
    expect_refused(env, words, "nope");
    /* A value libconfig cannot read as one setting is a string: here, not a number. */
    const char *typed[] = {bundled(env, "token_bucket"), "rate=fast", NULL};
    expect_refused(env, typed, "rate");
}

IT_TEST(kind_is_enforced)
{
    const char *words[] = {bundled(env, "round_robin"), NULL};
    struct it_run_result res;
    const char *argv[] = {FC_BINARY, "plugin-check", "--kind", "health", words[0], NULL};
    it_run(env, argv, CHECK_TIMEOUT_MS, &res);
    assert_int_equal(res.exit_code, 1);
    expect_in("stderr", res.err, "is a strategy plugin, expected a health plugin", &res);

    const char *ok[] = {FC_BINARY, "plugin-check", "--kind", "strategy", words[0], NULL};
    it_run(env, ok, CHECK_TIMEOUT_MS, &res);
    assert_int_equal(res.exit_code, 0);
}

IT_TEST(a_wrong_command_line_exits_2)
{
    struct it_run_result res;
    const char *none[] = {FC_BINARY, "plugin-check", NULL};
    it_run(env, none, CHECK_TIMEOUT_MS, &res);
    assert_int_equal(res.exit_code, 2);
    expect_in("stderr", res.err, "usage: fulcrum plugin-check", &res);

    const char *kind[] = {FC_BINARY, "plugin-check", "--kind", "proxy", bundled(env, "hash"), NULL};
    it_run(env, kind, CHECK_TIMEOUT_MS, &res);
    assert_int_equal(res.exit_code, 2);

    const char *pair[] = {FC_BINARY, "plugin-check", bundled(env, "hash"), "novalue", NULL};
    it_run(env, pair, CHECK_TIMEOUT_MS, &res);
    assert_int_equal(res.exit_code, 2);

    const char *help[] = {FC_BINARY, "plugin-check", "--help", NULL};
    it_run(env, help, CHECK_TIMEOUT_MS, &res);
    assert_int_equal(res.exit_code, 0);
    expect_in("stdout", res.out, "Exit status: 0 passed, 1 failed", &res);
}

/* A file that is not there, or not a plugin, is refused as the daemon refuses it. */
IT_TEST(a_missing_file_is_refused)
{
    const char *words[] = {it_strf(env, "%s/none-such.so", FC_TEST_PLUGIN_DIR), NULL};
    expect_refused(env, words, "none-such.so");
}

static const struct CMUnitTest tests[] = {
    IT_CASE(bundled_strategies_pass),
    IT_CASE(round_robin_report),
    IT_CASE(sticky_keeps_clients),
    IT_CASE(bundled_health_checkers_pass),
    IT_CASE(token_bucket_passes_and_keeps_its_retry_after),
    IT_CASE(redis_passes_against_a_real_server),
    IT_CASE(memory_cache_passes_within_its_bytes),
    IT_CASE(redis_without_a_server_passes_with_a_warning),
    IT_CASE(broken_plugins_are_refused_for_their_reason),
    IT_CASE(misbehaving_plugins_fail_the_rule_they_break),
    IT_CASE(a_bad_key_is_named_as_in_a_config),
    IT_CASE(kind_is_enforced),
    IT_CASE(a_wrong_command_line_exits_2),
    IT_CASE(a_missing_file_is_refused),
};

IT_MAIN(tests)
