/*
 * round_robin as a user sees it: requests spread evenly over the pool's
 * backends, in a fixed rotation, whether each arrives on its own connection
 * or all on one keep-alive connection. workers = 1, because each worker
 * thread keeps its own rotation.
 */
#include "harness.h"

#include <string.h>

static const char *const NAMES[] = {"a", "b", "c"};

static struct it_fulcrum *start_three(struct it_env *env)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 3);
    cfg.workers = 1;
    return it_fulcrum_start(env, &cfg);
}

/* Index of the backend that answered, checked against the body it sent. */
static int answered_by(const struct it_response *r)
{
    assert_int_equal(r->status, 200);
    const char *name = it_header(r, "X-Backend");
    assert_non_null(name);
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, NAMES[i]) == 0) {
            char body[8];
            strcpy(body, NAMES[i]);
            strcat(body, "\n");
            assert_string_equal(r->body, body);
            return i;
        }
    }
    fail_msg("unknown X-Backend \"%s\"", name);
    return -1;
}

IT_TEST(fresh_connections_rotate)
{
    struct it_fulcrum *f = start_three(env);
    int seq[9], counts[3] = {0};
    for (int i = 0; i < 9; i++) {
        struct it_response r;
        it_get(env, f->port, "test", "/", &r);
        seq[i] = answered_by(&r);
        counts[seq[i]]++;
        it_response_free(&r);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], 3);
    /* A fixed rotation: the first three differ and then repeat, a b c a b c ... */
    assert_int_not_equal(seq[0], seq[1]);
    assert_int_not_equal(seq[1], seq[2]);
    assert_int_not_equal(seq[0], seq[2]);
    for (int i = 3; i < 9; i++)
        assert_int_equal(seq[i], seq[i % 3]);
}

IT_TEST(keepalive_connection_spreads)
{
    struct it_fulcrum *f = start_three(env);
    struct it_conn *c = it_connect(env, f->port);
    int counts[3] = {0};
    for (int i = 0; i < 9; i++) {
        it_send_str(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        struct it_response r;
        it_expect_response(c, "GET", &r);
        counts[answered_by(&r)]++;
        it_response_free(&r);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], 3);
    /* The client's connection survived all nine. */
    assert_false(it_conn_wait_closed(c, 50));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(fresh_connections_rotate),
    IT_CASE(keepalive_connection_spreads),
};

IT_MAIN(tests)
