/*
 * The redis rate limiter as a user sees it: pools with
 *
 *   rate_limit = { plugin = "redis"; rate = R; burst = B; address = "127.0.0.1:P"; };
 *
 * in two fulcrum processes that share one redis-server share one limit per
 * client address; when Redis dies, requests get the on_error verdict at once
 * (200 for "allow", 429 with Retry-After: 1 for "deny") and nothing stalls;
 * when Redis comes back on the same address, limiting resumes by itself.
 * The address may be a host name, looked up by fulcrum's workers as they
 * connect: "localhost" (from /etc/hosts) limits as 127.0.0.1 does, and a
 * name that never resolves is treated as a Redis that cannot be reached,
 * reported once in the log.
 *
 * Every request comes from 127.0.0.1 on a fresh connection, so all of them
 * count against one key, whichever worker of whichever fulcrum accepts them.
 * The rates are slow (a token every 100 s) so that no token comes back while
 * a test runs: what passes is exactly the burst.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A request must be answered within this, whatever state Redis is in: far
 * more than the plugin's timeout_ms (at most 1000 here), far less than a
 * request stalled on a dead Redis would take, with room for a loaded machine.
 */
#define PROMPT_MS 3000

/* A configuration whose one pool of `backend` is limited by the redis plugin with `keys`. */
static void limited_config(struct it_env *env, struct it_config *cfg, int backend, const char *keys)
{
    it_config_init(cfg);
    cfg->workers = 2;
    struct it_pool_config *pool = it_config_add_pool(cfg, "web", 0, 1, backend);
    pool->pool_options = it_strf(env, "rate_limit = { plugin = \"redis\"; %s };", keys);
}

static struct it_fulcrum *start_fulcrum(struct it_env *env, int backend, const char *keys)
{
    struct it_config cfg;
    limited_config(env, &cfg, backend, keys);
    return it_fulcrum_start(env, &cfg);
}

/*
 * GET / on a fresh connection; returns the status. Fails the test unless the
 * answer came within PROMPT_MS, or unless a 429 carries a Retry-After of at
 * least 1 second; stores that value in *retry_after (if not NULL; 0 for
 * other statuses).
 */
static int get(struct it_env *env, int port, long *retry_after)
{
    struct it_response r;
    int64_t start = it_now_ms();
    it_get(env, port, "test", "/", &r);
    int64_t took = it_now_ms() - start;
    if (took > PROMPT_MS)
        fail_msg("GET / took %lld ms (status %d)", (long long)took, r.status);
    long retry = 0;
    if (r.status == 429) {
        const char *value = it_header(&r, "Retry-After");
        if (value == NULL || atol(value) < 1)
            fail_msg("429 with Retry-After %s", value != NULL ? value : "(none)");
        retry = atol(value);
    }
    if (retry_after != NULL)
        *retry_after = retry;
    int status = r.status;
    it_response_free(&r);
    return status;
}

static void kill_redis(struct it_proc *redis)
{
    it_proc_signal(redis, SIGKILL);
    if (it_proc_wait(redis, IT_STOP_TIMEOUT_MS, NULL) != 0)
        fail_msg("redis-server survived SIGKILL");
}

IT_TEST(two_instances_share_one_limit)
{
    int redis = it_redis_start(env, 0, NULL);
    int backend = it_backend_start(env, "a");
    const char *keys = it_strf(env,
                               "rate = 0.01; burst = 5; timeout_ms = 1000; "
                               "address = \"127.0.0.1:%d\";",
                               redis);
    struct it_fulcrum *f[2] = {start_fulcrum(env, backend, keys),
                               start_fulcrum(env, backend, keys)};

    int passed[2] = {0, 0}, limited = 0;
    for (int i = 0; i < 16; i++) {
        long retry = 0;
        int status = get(env, f[i % 2]->port, &retry);
        if (status == 200) {
            passed[i % 2]++;
        } else {
            assert_int_equal(status, 429);
            /* A token every 100 s: the next one is that far away, give or take. */
            assert_true(retry >= 90 && retry <= 100);
            limited++;
        }
    }
    /* The burst, once, shared: not once per process. */
    assert_int_equal(passed[0] + passed[1], 5);
    assert_int_equal(limited, 11);
    assert_true(passed[0] >= 2 && passed[1] >= 2);
}

/* Redis dies under a working limit: every request is answered at once with the on_error verdict. */
static void redis_killed(struct it_env *env, const char *on_error, int status, long retry_after)
{
    struct it_proc *redis = NULL;
    int port = it_redis_start(env, 0, &redis);
    int backend = it_backend_start(env, "a");
    struct it_fulcrum *f =
        start_fulcrum(env, backend,
                      it_strf(env,
                              "rate = 0.01; burst = 1; timeout_ms = 100; on_error = \"%s\"; "
                              "address = \"127.0.0.1:%d\";",
                              on_error, port));
    assert_int_equal(get(env, f->port, NULL), 200);
    assert_int_equal(get(env, f->port, NULL), 429); /* Redis decides */

    kill_redis(redis);
    for (int i = 0; i < 10; i++) {
        long retry = 0;
        assert_int_equal(get(env, f->port, &retry), status);
        assert_int_equal(retry, retry_after);
    }

    /* Many at once, on keep-alive connections: none waits for another. */
    struct it_conn *conns[8];
    int64_t start = it_now_ms();
    for (int i = 0; i < 8; i++) {
        conns[i] = it_connect(env, f->port);
        it_send_str(conns[i], "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 8; i++) {
            struct it_response r;
            it_expect_response(conns[i], "GET", &r);
            assert_int_equal(r.status, status);
            it_response_free(&r);
            if (round < 2)
                it_send_str(conns[i], "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        }
    }
    int64_t took = it_now_ms() - start;
    if (took > PROMPT_MS)
        fail_msg("24 requests on 8 connections took %lld ms with Redis dead", (long long)took);
}

IT_TEST(redis_killed_allows)
{
    redis_killed(env, "allow", 200, 0);
}

IT_TEST(redis_killed_denies)
{
    redis_killed(env, "deny", 429, 1);
}

IT_TEST(redis_restarted_resumes)
{
    struct it_proc *redis = NULL;
    int port = it_redis_start(env, 0, &redis);
    int backend = it_backend_start(env, "a");
    struct it_fulcrum *f = start_fulcrum(
        env, backend,
        it_strf(env, "rate = 0.01; burst = 1; timeout_ms = 200; address = \"127.0.0.1:%d\";",
                port));
    assert_int_equal(get(env, f->port, NULL), 200);
    assert_int_equal(get(env, f->port, NULL), 429);

    kill_redis(redis);
    for (int i = 0; i < 5; i++)
        assert_int_equal(get(env, f->port, NULL), 200); /* on_error = "allow" */
    it_sleep_ms(500); /* reconnects keep failing meanwhile: the backoff grows */

    /*
     * A new, empty Redis on the same address. With on_error "allow", only
     * Redis answers 429: once both workers have reconnected (each on its own
     * backoff), every request gets one.
     */
    it_redis_start(env, port, &redis);
    int64_t deadline = it_now_ms() + 6000;
    int in_a_row = 0;
    while (in_a_row < 8 && it_now_ms() < deadline) {
        long retry = 0;
        if (get(env, f->port, &retry) == 429) {
            assert_true(retry >= 90 && retry <= 100);
            in_a_row++;
        } else {
            in_a_row = 0;
            it_sleep_ms(50);
        }
    }
    if (in_a_row < 8)
        fail_msg("limiting did not resume within 6 s of Redis coming back");
}

/*
 * Reloads: new settings make a new limiter (and the old one's connections
 * close as its workers retire it), the same settings keep the running one;
 * either way requests keep being limited, and fulcrum exits cleanly at the
 * end (teardown checks it).
 */
IT_TEST(reload_replaces_or_keeps_the_limiter)
{
    int redis = it_redis_start(env, 0, NULL);
    int backend = it_backend_start(env, "a");
    struct it_config one, three;
    limited_config(env, &one, backend,
                   it_strf(env, "rate = 0.01; burst = 1; address = \"127.0.0.1:%d\";", redis));
    limited_config(env, &three, backend,
                   it_strf(env,
                           "rate = 0.01; burst = 3; key_prefix = \"other:\"; "
                           "address = \"127.0.0.1:%d\";",
                           redis));
    struct it_fulcrum *f = it_fulcrum_start(env, &one);
    assert_int_equal(get(env, f->port, NULL), 200);
    assert_int_equal(get(env, f->port, NULL), 429);

    /* New settings, new keys: a fresh burst of 3. */
    assert_int_equal(it_fulcrum_reload(env, f, &three), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(get(env, f->port, NULL), 200);
    assert_int_equal(get(env, f->port, NULL), 429);

    /* The same settings again: the limit carries on where it was. */
    assert_int_equal(it_fulcrum_reload(env, f, &three), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(get(env, f->port, NULL), 429);

    /* Back to the first: its key in Redis still has no token either. */
    assert_int_equal(it_fulcrum_reload(env, f, &one), 0);
    assert_int_equal(get(env, f->port, NULL), 429);
}

/*
 * "localhost:P": each worker looks the name up (c-ares reads /etc/hosts) and
 * limiting works as with 127.0.0.1. on_error is "deny" so that only Redis
 * lets requests through: a 429 with Retry-After: 1 is the error verdict (a
 * worker not connected yet, e.g. trying an ::1 that localhost may also
 * have), one of about 100 s the bucket's.
 */
IT_TEST(host_name_limits_as_an_address)
{
    int redis = it_redis_start(env, 0, NULL);
    int backend = it_backend_start(env, "a");
    struct it_fulcrum *f =
        start_fulcrum(env, backend,
                      it_strf(env,
                              "rate = 0.01; burst = 3; timeout_ms = 1000; on_error = \"deny\"; "
                              "address = \"localhost:%d\";",
                              redis));
    int passed = 0, limited = 0;
    int64_t deadline = it_now_ms() + 5000;
    while (limited < 5 && it_now_ms() < deadline) {
        long retry = 0;
        int status = get(env, f->port, &retry);
        if (status == 200) {
            passed++;
        } else {
            assert_int_equal(status, 429);
            if (retry == 1) {
                assert_int_equal(passed + limited, 0); /* errors only before Redis answered */
                it_sleep_ms(50);
                continue;
            }
            assert_true(retry >= 90 && retry <= 100);
            limited++;
        }
    }
    assert_int_equal(passed, 3);
    assert_int_equal(limited, 5);
    assert_int_equal(it_count(it_fulcrum_log_settled(env, f), "cannot resolve"), 0);
}

/*
 * "nosuch.invalid:P" never resolves (RFC 6761): fulcrum starts all the same,
 * every request gets the on_error verdict at once, as with a dead Redis,
 * while the workers look the name up again at the reconnect backoff; the
 * log says so in one line, not one per request or retry; and fulcrum keeps
 * serving, then exits cleanly (teardown checks it).
 */
static void unresolvable(struct it_env *env, const char *on_error, int status, long retry_after)
{
    int backend = it_backend_start(env, "a");
    struct it_fulcrum *f =
        start_fulcrum(env, backend,
                      it_strf(env,
                              "rate = 0.01; burst = 1; timeout_ms = 100; on_error = \"%s\"; "
                              "address = \"nosuch.invalid:%d\";",
                              on_error, it_dead_port(env)));
    /* Within 10 s even with no name server to ask: 2 tries of 1 s and 2 s, per search domain. */
    const char *line = "redis: cannot resolve \"nosuch.invalid\": ";
    int64_t logged_at = 0, deadline = it_now_ms() + 10000;
    int requests = 0;
    while (logged_at == 0 ? it_now_ms() < deadline : it_now_ms() < logged_at + 1500) {
        long retry = 0;
        assert_int_equal(get(env, f->port, &retry), status);
        assert_int_equal(retry, retry_after);
        requests++;
        if (logged_at == 0 && it_fulcrum_log_count(env, f, line) > 0)
            logged_at = it_now_ms();
        it_sleep_ms(10);
    }
    if (logged_at == 0)
        fail_msg("no \"%s...\" in 10 s; fulcrum logged:\n%s", line, it_fulcrum_log_settled(env, f));
    assert_true(requests > 20);
    const char *log = it_fulcrum_log_settled(env, f);
    if (it_count(log, "nosuch.invalid") != 1)
        fail_msg("expected one line naming nosuch.invalid; fulcrum logged:\n%s", log);
    assert_int_equal(get(env, f->port, NULL), status);
}

IT_TEST(unresolvable_name_allows)
{
    unresolvable(env, "allow", 200, 0);
}

IT_TEST(unresolvable_name_denies)
{
    unresolvable(env, "deny", 429, 1);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(two_instances_share_one_limit),
    IT_CASE(redis_killed_allows),
    IT_CASE(redis_killed_denies),
    IT_CASE(redis_restarted_resumes),
    IT_CASE(reload_replaces_or_keeps_the_limiter),
    IT_CASE(host_name_limits_as_an_address),
    IT_CASE(unresolvable_name_allows),
    IT_CASE(unresolvable_name_denies),
};

IT_MAIN(tests)
