/*
 * Tests of the `hash` strategy (plugins/strategy/ip_hash.c built with
 * FC_HASH_FULL), loaded through the real loader and host over a synthetic
 * pool (see strategy_fixture.h): each key kind, consistency when a backend
 * leaves, and the bound on any backend's load with `balance_factor` under a
 * single hot key.
 */
#include "strategy_fixture.h"

#include "http_request.h"

#include <math.h>

#define HASH FC_PLUGIN_BUILD_DIR "/hash.so"
#define N MAX_BACKENDS

static struct fc_span span(const char *s)
{
    return (struct fc_span){s, (uint32_t)strlen(s)};
}

static struct fc_request req;

/* A request with this target and, when not NULL, one header. */
static const struct fc_request *request(const char *target, const char *name, const char *value)
{
    memset(&req, 0, sizeof(req));
    req.target = span(target);
    if (name != NULL) {
        req.headers[0].name = span(name);
        req.headers[0].value = span(value);
        req.n_headers = 1;
    }
    return &req;
}

static int pick_req(const struct fc_instance *in, const struct fc_request *r)
{
    struct fc_pick_args args = {.size = sizeof(args), .request = r};
    return fx.plugin->desc->strategy->pick(in->state, &args);
}

/* Each kind hashes its own part of the request: the same value, the same backend. */
static void test_every_key_kind(void **unused)
{
    use_pool(4, NULL);
    static const char *const kinds[] = {"key = \"uri\";", "key = \"query:user\";",
                                        "key = \"cookie:sid\";", "key = \"header:X-User\";"};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct fc_instance in;
        assert_int_equal(create_with_keys(&in, kinds[k], &pool), 0);
        int seen[N] = {0};
        for (int u = 0; u < 400; u++) {
            char target[64], cookie[64], user[16];
            snprintf(user, sizeof(user), "%d", u);
            snprintf(target, sizeof(target), "/p/%d?x=1&user=%d", u, u);
            snprintf(cookie, sizeof(cookie), "a=b; sid=%d", u);
            const char *name = k == 2 ? "Cookie" : k == 3 ? "X-User" : NULL;
            const char *value = k == 2 ? cookie : user;
            int b = pick_req(&in, request(target, name, value));
            assert_true(b >= 0 && b < N);
            seen[b]++;
            /* The same key again, with other parts of the request changed: the same backend. */
            char other[64];
            snprintf(other, sizeof(other), k == 0 ? "/p/%d?x=1&user=%d" : "/q?user=%d&y=2", u, u);
            if (k == 0)
                snprintf(other, sizeof(other), "/p/%d?x=1&user=%d", u, u);
            int again = pick_req(&in, request(other, name, value));
            assert_int_equal(again, b);
        }
        for (int i = 0; i < N; i++)
            if (seen[i] < 40)
                fail_msg("%s: backend %d got %d of 400 keys", kinds[k], i, seen[i]);
        fc_instance_destroy(&in);
    }
}

/* A backend leaves: only its keys move. */
static void test_consistent_when_a_backend_leaves(void **unused)
{
    use_pool(4, NULL);
    struct fc_instance four, three;
    assert_int_equal(create_with_keys(&four, "key = \"uri\";", &pool), 0);
    static struct fc_backend_view v3[3];
    v3[0] = views[0];
    v3[1] = views[1];
    v3[2] = views[3];
    for (uint32_t i = 0; i < 3; i++)
        v3[i].index = i;
    static const struct fc_pool_view pool3 = {.name = "web", .n_backends = 3, .backends = v3};
    assert_int_equal(create_with_keys(&three, "key = \"uri\";", &pool3), 0);
    static const int to3[N] = {0, 1, -1, 2};
    int moved = 0;
    for (int u = 0; u < 1000; u++) {
        char target[32];
        snprintf(target, sizeof(target), "/obj/%d", u);
        int a = pick_req(&four, request(target, NULL, NULL));
        int b = pick_req(&three, request(target, NULL, NULL));
        if (a == 2)
            moved++;
        else
            assert_int_equal(b, to3[a]);
    }
    assert_true(moved > 100 && moved < 400);
    fc_instance_destroy(&four);
    fc_instance_destroy(&three);
}

/*
 * One hot key, and requests that never end: each pick adds one in flight.
 * With balance_factor 1.25 no backend ever holds more than
 * ceil(1.25 * total / 4); without it, the key's backend takes them all.
 */
static void test_balance_factor_bounds_a_hot_key(void **unused)
{
    use_pool(4, NULL);
    struct fc_instance in;
    assert_int_equal(create_with_keys(&in, "key = \"uri\"; balance_factor = 1.25;", &pool), 0);
    int home = -1;
    for (int k = 1; k <= 400; k++) {
        int b = pick_req(&in, request("/hot", NULL, NULL));
        assert_true(b >= 0 && b < N);
        if (home < 0)
            home = b;
        states[b].inflight++;
        uint32_t bound = (uint32_t)ceil(1.25 * k / N);
        for (int i = 0; i < N; i++)
            if (states[i].inflight > bound)
                fail_msg("after %d picks backend %d holds %u, over the bound %u", k, i,
                         states[i].inflight, bound);
    }
    /* The key's own backend is full up to its bound; the spill-over went to the others. */
    assert_int_equal(states[home].inflight, 125);
    /* As the load falls away, the key comes home. */
    for (int i = 0; i < N; i++)
        states[i].inflight = 0;
    assert_int_equal(pick_req(&in, request("/hot", NULL, NULL)), home);
    fc_instance_destroy(&in);

    assert_int_equal(create_with_keys(&in, "key = \"uri\";", &pool), 0);
    for (int i = 0; i < N; i++)
        states[i].inflight = i == home ? 1000 : 0;
    assert_int_equal(pick_req(&in, request("/hot", NULL, NULL)), home); /* unbounded */
    fc_instance_destroy(&in);
}

/* No request, or one without the key: the client address decides. */
static void test_missing_key_falls_back_to_the_address(void **unused)
{
    use_pool(4, NULL);
    struct fc_instance in;
    assert_int_equal(create_with_keys(&in, "key = \"query:user\";", &pool), 0);
    int a = pick_req(&in, request("/no-query", NULL, NULL));
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick_req(&in, request("/other?user=", NULL, NULL)), a);
    fc_instance_destroy(&in);
}

static void test_keys(void **unused)
{
    use_pool(2, NULL);
    static const char *const bad[] = {"key = \"url\";",          "key = \"query:\";",
                                      "key = \"cookie:a b\";",   "key = \"header:\";",
                                      "balance_factor = 1.0;",   "balance_factor = 0.5;",
                                      "balance_factor = 101.0;", "balance_factor = \"x\";",
                                      "factor = 2.0;",           NULL};
    assert_keys_refused(bad);
    static const char *const good[] = {"key = \"source\";", "balance_factor = 1.25;",
                                       "balance_factor = 0.0;", "key = \"cookie:sid\";"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct fc_instance in;
        assert_int_equal(create_with_keys(&in, good[i], &pool), 0);
        fc_instance_destroy(&in);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STRATEGY_TEST(test_every_key_kind, HASH),
        STRATEGY_TEST(test_consistent_when_a_backend_leaves, HASH),
        STRATEGY_TEST(test_balance_factor_bounds_a_hot_key, HASH),
        STRATEGY_TEST(test_missing_key_falls_back_to_the_address, HASH),
        STRATEGY_TEST(test_keys, HASH),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
