/*
 * ip_hash as a user sees it: every request of a client address goes to the
 * same backend, whichever of the two workers accepts its connection, and the
 * clients spread over the pool; with `key = "header:X-Session"` the header
 * decides instead of the address. Clients get distinct addresses by binding
 * their sockets to 127.0.0.2 .. 127.0.0.21 before connecting.
 *
 * The backends listen on ports the kernel picks, so the ring, and which
 * client lands where, differs from run to run; the assertions hold for every
 * ring. The one that depends on chance, "20 clients use at least 2 of 3
 * backends", fails only if all 20 land on one backend: about 3 * (1/3)^20,
 * less than one run in a billion.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

#define SOURCES 20
#define REQUESTS 5

static const char *const NAMES[] = {"a", "b", "c"};

static struct it_fulcrum *start_three(struct it_env *env, const char *strategy_options)
{
    struct it_config cfg;
    struct it_pool_config *pool = it_config_demo_pool(env, &cfg, 3);
    cfg.workers = 2;
    pool->strategy = "ip_hash";
    pool->strategy_options = strategy_options;
    return it_fulcrum_start(env, &cfg);
}

/*
 * One GET on a fresh connection from `source`, with an X-Session header when
 * `session` is not NULL. Returns the index of the backend that answered.
 */
static int backend_for(struct it_env *env, int port, const char *source, const char *session)
{
    struct it_conn *conn = it_connect_from(env, port, source);
    it_send_str(conn, "GET / HTTP/1.1\r\nHost: test\r\n");
    if (session != NULL)
        it_send_str(conn, it_strf(env, "X-Session: %s\r\n", session));
    it_send_str(conn, "\r\n");
    struct it_response r;
    it_expect_response(conn, "GET", &r);
    it_conn_close(conn);

    assert_int_equal(r.status, 200);
    const char *name = it_header(&r, "X-Backend");
    assert_non_null(name);
    int found = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(name, NAMES[i]) == 0)
            found = i;
    if (found < 0)
        fail_msg("unknown X-Backend \"%s\"", name);
    it_response_free(&r);
    return found;
}

static const char *source(struct it_env *env, int i)
{
    return it_strf(env, "127.0.0.%d", 2 + i);
}

IT_TEST(same_address_same_backend)
{
    struct it_fulcrum *f = start_three(env, NULL);
    int counts[3] = {0};
    for (int i = 0; i < SOURCES; i++) {
        const char *src = source(env, i);
        int first = backend_for(env, f->port, src, NULL);
        for (int k = 1; k < REQUESTS; k++) {
            int b = backend_for(env, f->port, src, NULL);
            if (b != first)
                fail_msg("%s: request %d went to %s, the first one to %s", src, k + 1, NAMES[b],
                         NAMES[first]);
        }
        counts[first]++;
    }
    print_message("%d sources over backends a b c: %d %d %d\n", SOURCES, counts[0], counts[1],
                  counts[2]);
    int used = (counts[0] > 0) + (counts[1] > 0) + (counts[2] > 0);
    assert_true(used >= 2);
}

IT_TEST(header_key_decides)
{
    struct it_fulcrum *f = start_three(env, "key = \"header:X-Session\";");

    /* One session from ten client addresses: one backend. */
    int sessions[3] = {0};
    for (int s = 0; s < 6; s++) {
        const char *session = it_strf(env, "session-%d", s);
        int first = backend_for(env, f->port, source(env, 0), session);
        for (int i = 1; i < 10; i++) {
            int b = backend_for(env, f->port, source(env, i), session);
            if (b != first)
                fail_msg("session %s: from %s to %s, from %s to %s", session, source(env, 0),
                         NAMES[first], source(env, i), NAMES[b]);
        }
        sessions[first]++;
    }
    print_message("6 sessions over backends a b c: %d %d %d\n", sessions[0], sessions[1],
                  sessions[2]);

    /* Without the header the address decides again: sticky, and spread. */
    int counts[3] = {0};
    for (int i = 0; i < SOURCES; i++) {
        int first = backend_for(env, f->port, source(env, i), NULL);
        assert_int_equal(backend_for(env, f->port, source(env, i), NULL), first);
        counts[first]++;
    }
    assert_true((counts[0] > 0) + (counts[1] > 0) + (counts[2] > 0) >= 2);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(same_address_same_backend),
    IT_CASE(header_key_decides),
};

IT_MAIN(tests)
