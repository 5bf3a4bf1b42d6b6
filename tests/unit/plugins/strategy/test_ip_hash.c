/*
 * Tests of plugins/strategy/ip_hash.c, loaded through the real loader and
 * host, against synthetic pools whose backend states the tests set: stickiness,
 * IPv4 and IPv6, the spread over 10,000 client addresses, weights, minimal
 * disruption when a backend leaves or goes down, tried flags, the
 * `key = "header:NAME"` option and its errors.
 *
 * Client addresses come from a fixed-seed generator, so every figure below is
 * the same on every run; the bounds still leave room for a change of the
 * generator or of the test's backends.
 */
#include "plugin_fixture.h"
#include "http_request.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#define IP_HASH FC_PLUGIN_BUILD_DIR "/ip_hash.so"
#define N 4
#define CLIENTS 10000

static struct fc_backend_state states[N];
static const struct fc_backend_view views[N] = {
    {.index = 0, .weight = 1, .address = "10.0.0.1:8080", .state = &states[0]},
    {.index = 1, .weight = 1, .address = "10.0.0.2:8080", .state = &states[1]},
    {.index = 2, .weight = 1, .address = "10.0.0.3:8080", .state = &states[2]},
    {.index = 3, .weight = 1, .address = "[2001:db8::4]:8080", .state = &states[3]},
};
static const struct fc_pool_view pool = {.name = "web", .n_backends = N, .backends = views};

/* The pool without backend 2, as the next generation would see it: addresses, states kept. */
static const struct fc_backend_view views_without_2[N - 1] = {
    {.index = 0, .weight = 1, .address = "10.0.0.1:8080", .state = &states[0]},
    {.index = 1, .weight = 1, .address = "10.0.0.2:8080", .state = &states[1]},
    {.index = 2, .weight = 1, .address = "[2001:db8::4]:8080", .state = &states[3]},
};
static const struct fc_pool_view pool_without_2 = {
    .name = "web", .n_backends = N - 1, .backends = views_without_2};

static struct fc_plugin *plugin;
static struct fc_instance inst;

/* ---- client addresses ---------------------------------------------------- */

/* xorshift64*: a fixed sequence of pseudo-random client addresses. */
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

struct client {
    struct sockaddr_storage ss;
    socklen_t len;
};

static struct client v4(uint32_t addr, uint16_t port)
{
    struct client c;
    memset(&c, 0, sizeof(c));
    struct sockaddr_in *sin = (struct sockaddr_in *)&c.ss;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(addr);
    sin->sin_port = htons(port);
    c.len = sizeof(*sin);
    return c;
}

static struct client v6(const uint8_t addr[16], uint16_t port)
{
    struct client c;
    memset(&c, 0, sizeof(c));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c.ss;
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, addr, 16);
    sin6->sin6_port = htons(port);
    c.len = sizeof(*sin6);
    return c;
}

static struct client random_v4(void)
{
    return v4((uint32_t)rng(), (uint16_t)rng());
}

static struct client random_v6(void)
{
    uint8_t a[16];
    uint64_t hi = rng(), lo = rng();
    memcpy(a, &hi, 8);
    memcpy(a + 8, &lo, 8);
    a[0] = 0x20; /* global unicast, 2000::/3 */
    return v6(a, (uint16_t)rng());
}

static struct client clients[CLIENTS];

static void make_clients(uint64_t seed, int ipv6)
{
    rng_state = seed;
    for (int i = 0; i < CLIENTS; i++)
        clients[i] = ipv6 ? random_v6() : random_v4();
}

/* ---- instances ---------------------------------------------------------- */

static int pick_in(const struct fc_instance *in, const struct client *c,
                   const struct fc_request *req, const uint8_t *tried)
{
    struct fc_pick_args args = {
        .size = sizeof(args),
        .request = req,
        .client = c != NULL ? (const struct sockaddr *)&c->ss : NULL,
        .client_len = c != NULL ? c->len : 0,
        .tried = tried,
    };
    return plugin->desc->strategy->pick(in->state, &args);
}

static int pick(const struct client *c)
{
    return pick_in(&inst, c, NULL, NULL);
}

static void create_over(struct fc_instance *in, const struct fc_pool_view *p)
{
    assert_int_equal(fc_instance_create(in, plugin, NULL, NULL, NULL, p, NULL, "pool t: ip_hash"),
                     0);
}

/* Creates *in over `over` from the `strategy` group in text, parsed into *p. */
static int create_with(struct fc_instance *in, struct parsed_group *p, const char *text,
                       const struct fc_pool_view *over)
{
    parse_group(p, text, "strategy", "ip_hash");
    return fc_instance_create(in, plugin, &p->conf, "test.conf", NULL, over, NULL,
                              "pool web: strategy ip_hash");
}

static int group_setup(void **unused)
{
    return load_plugin(IP_HASH, FC_PLUGIN_STRATEGY, &plugin);
}

static int group_teardown(void **unused)
{
    fc_plugin_unload(plugin);
    plugin = NULL;
    return 0;
}

static int setup(void **unused)
{
    for (int i = 0; i < N; i++)
        states[i] = (struct fc_backend_state){.up = 1, .inflight = 0};
    log_capture_start();
    create_over(&inst, &pool);
    return 0;
}

static int teardown(void **unused)
{
    fc_instance_destroy(&inst);
    log_capture_stop();
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_descriptor(void **unused)
{
    assert_string_equal(plugin->desc->name, "ip_hash");
    assert_null(plugin->desc->strategy->outcome);
    assert_non_null(plugin->desc->strategy->destroy);
}

static void test_sticky_and_instances_agree(void **unused)
{
    struct fc_instance other;
    create_over(&other, &pool);
    make_clients(1, 0);
    for (int i = 0; i < CLIENTS; i++) {
        int b = pick(&clients[i]);
        assert_true(b >= 0 && b < N);
        assert_int_equal(pick(&clients[i]), b);
        assert_int_equal(pick_in(&other, &clients[i], NULL, NULL), b);
    }
    fc_instance_destroy(&other);
}

static void test_port_ignored(void **unused)
{
    make_clients(2, 0);
    for (int i = 0; i < 1000; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&clients[i].ss;
        uint32_t addr = ntohl(sin->sin_addr.s_addr);
        int b = pick(&clients[i]);
        for (uint16_t port = 1; port < 60000; port += 7919) {
            struct client c = v4(addr, port);
            assert_int_equal(pick(&c), b);
        }
    }
}

static void test_ipv6(void **unused)
{
    struct fc_instance other;
    create_over(&other, &pool);
    make_clients(3, 1);
    int count[N] = {0};
    for (int i = 0; i < CLIENTS; i++) {
        int b = pick(&clients[i]);
        assert_true(b >= 0 && b < N);
        count[b]++;
        assert_int_equal(pick(&clients[i]), b);
        assert_int_equal(pick_in(&other, &clients[i], NULL, NULL), b);
        /* The port is not part of the key. */
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&clients[i].ss;
        struct client c = v6(sin6->sin6_addr.s6_addr, (uint16_t)(ntohs(sin6->sin6_port) + 1));
        assert_int_equal(pick(&c), b);
    }
    print_message("ipv6 spread: %d %d %d %d\n", count[0], count[1], count[2], count[3]);
    for (int i = 0; i < N; i++)
        assert_in_range(count[i], 2125, 2875);
    fc_instance_destroy(&other);
}

static void test_ipv4_mapped_is_ipv4(void **unused)
{
    /* A dual-stack listener reports 192.0.2.7 as ::ffff:192.0.2.7: same client, same backend. */
    make_clients(4, 0);
    for (int i = 0; i < 1000; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&clients[i].ss;
        uint8_t a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(a + 12, &sin->sin_addr, 4);
        struct client mapped = v6(a, 1234);
        assert_int_equal(pick(&mapped), pick(&clients[i]));
    }
}

static void test_even_distribution(void **unused)
{
    int count[N] = {0};
    make_clients(5, 0);
    for (int i = 0; i < CLIENTS; i++)
        count[pick(&clients[i])]++;
    print_message("ipv4 spread over 4 equal backends: %d %d %d %d (ideal 2500)\n", count[0],
                  count[1], count[2], count[3]);
    /*
     * This seed gives 2608 2464 2411 2517. The ring gives these four backends
     * 25.2%, 25.2%, 24.5% and 25.1% of the hash space, and over 200 seeds each
     * backend got between 2,331 and 2,650: +-15% of 2,500 cannot flake.
     */
    for (int i = 0; i < N; i++)
        assert_in_range(count[i], 2125, 2875);
}

static void test_weights(void **unused)
{
    static struct fc_backend_state st[2] = {{.up = 1}, {.up = 1}};
    static const struct fc_backend_view wv[2] = {
        {.index = 0, .weight = 1, .address = "10.1.0.1:80", .state = &st[0]},
        {.index = 1, .weight = 3, .address = "10.1.0.2:80", .state = &st[1]},
    };
    static const struct fc_pool_view wp = {.name = "w", .n_backends = 2, .backends = wv};
    struct fc_instance w;
    create_over(&w, &wp);

    int count[2] = {0};
    make_clients(6, 0);
    for (int i = 0; i < CLIENTS; i++)
        count[pick_in(&w, &clients[i], NULL, NULL)]++;
    print_message("weights 1:3 -> %d : %d (ideal 2500 : 7500)\n", count[0], count[1]);
    /* The ring gives 25.7% : 74.3%; over 200 seeds the light one got 2,441..2,670. */
    assert_in_range(count[0], 2100, 2900);
    fc_instance_destroy(&w);
}

static void test_large_weights_scaled(void **unused)
{
    /* Weights summing past the ring's capacity are scaled down, in proportion. */
    static struct fc_backend_state st[3] = {{.up = 1}, {.up = 1}, {.up = 1}};
    static const struct fc_backend_view wv[3] = {
        {.index = 0, .weight = 1000, .address = "10.2.0.1:80", .state = &st[0]},
        {.index = 1, .weight = 1000, .address = "10.2.0.2:80", .state = &st[1]},
        {.index = 2, .weight = 2000, .address = "10.2.0.3:80", .state = &st[2]},
    };
    static const struct fc_pool_view wp = {.name = "big", .n_backends = 3, .backends = wv};
    struct fc_instance w;
    create_over(&w, &wp);
    int count[3] = {0};
    make_clients(7, 0);
    for (int i = 0; i < CLIENTS; i++)
        count[pick_in(&w, &clients[i], NULL, NULL)]++;
    print_message("weights 1000:1000:2000 -> %d %d %d\n", count[0], count[1], count[2]);
    assert_in_range(count[0], 2125, 2875);
    assert_in_range(count[1], 2125, 2875);
    assert_in_range(count[2], 4250, 5750);
    fc_instance_destroy(&w);
}

/* Index in `pool` of the backend that has index `b` in `pool_without_2`. */
static int full_index(int b)
{
    return b < 2 ? b : 3;
}

static void test_removed_backend_moves_only_its_clients(void **unused)
{
    struct fc_instance smaller;
    create_over(&smaller, &pool_without_2);
    int moved = 0, to[N] = {0};
    make_clients(8, 0);
    for (int i = 0; i < CLIENTS; i++) {
        int before = pick(&clients[i]);
        int after = full_index(pick_in(&smaller, &clients[i], NULL, NULL));
        if (before != 2) {
            /* A ring: exactly zero of the other clients move. */
            assert_int_equal(after, before);
        } else {
            moved++;
            to[after]++;
        }
    }
    print_message("removing backend 2 moved %d clients: to 0: %d, 1: %d, 3: %d\n", moved, to[0],
                  to[1], to[3]);
    /* Its clients spread over all three that are left. */
    assert_true(moved > 2000);
    assert_true(to[0] > moved / 6 && to[1] > moved / 6 && to[3] > moved / 6);
    fc_instance_destroy(&smaller);
}

static void test_order_does_not_matter(void **unused)
{
    /* The same backends in another order: every client still reaches the same address. */
    static const struct fc_backend_view rv[N] = {
        {.index = 0, .weight = 1, .address = "[2001:db8::4]:8080", .state = &states[3]},
        {.index = 1, .weight = 1, .address = "10.0.0.3:8080", .state = &states[2]},
        {.index = 2, .weight = 1, .address = "10.0.0.1:8080", .state = &states[0]},
        {.index = 3, .weight = 1, .address = "10.0.0.2:8080", .state = &states[1]},
    };
    static const struct fc_pool_view rp = {.name = "r", .n_backends = N, .backends = rv};
    struct fc_instance r;
    create_over(&r, &rp);
    make_clients(9, 1);
    for (int i = 0; i < CLIENTS; i++)
        assert_string_equal(rv[pick_in(&r, &clients[i], NULL, NULL)].address,
                            views[pick(&clients[i])].address);
    fc_instance_destroy(&r);
}

static void test_down_moves_only_its_clients_and_back(void **unused)
{
    static int before[CLIENTS];
    struct fc_instance smaller;
    create_over(&smaller, &pool_without_2);
    make_clients(10, 0);
    for (int i = 0; i < CLIENTS; i++)
        before[i] = pick(&clients[i]);

    states[2].up = 0;
    int moved = 0;
    for (int i = 0; i < CLIENTS; i++) {
        int b = pick(&clients[i]);
        assert_int_not_equal(b, 2);
        if (before[i] != 2)
            assert_int_equal(b, before[i]);
        else
            moved++;
        /* Down is exactly "not in the pool": the next backend on the ring. */
        assert_int_equal(b, full_index(pick_in(&smaller, &clients[i], NULL, NULL)));
        /* Deterministic: the same stand-in every time. */
        assert_int_equal(pick(&clients[i]), b);
    }
    assert_true(moved > 2000);

    states[2].up = 1;
    for (int i = 0; i < CLIENTS; i++)
        assert_int_equal(pick(&clients[i]), before[i]);
    fc_instance_destroy(&smaller);
}

static void test_tried_skipped(void **unused)
{
    make_clients(11, 0);
    for (int i = 0; i < 1000; i++) {
        uint8_t tried[N] = {0};
        int seen[N] = {0};
        int first = pick(&clients[i]);
        tried[first] = 1;
        seen[first] = 1;
        /* Each retry takes a backend not tried yet, the same one for the same tried set. */
        for (int k = 1; k < N; k++) {
            int b = pick_in(&inst, &clients[i], NULL, tried);
            assert_true(b >= 0 && b < N);
            assert_false(seen[b]);
            assert_int_equal(pick_in(&inst, &clients[i], NULL, tried), b);
            tried[b] = 1;
            seen[b] = 1;
        }
        assert_int_equal(pick_in(&inst, &clients[i], NULL, tried), FC_ENOBACKEND);
        /* Tried flags belong to one request: the next one is back on its own backend. */
        assert_int_equal(pick(&clients[i]), first);
    }

    /* A tried backend and a down one are skipped alike. */
    states[1].up = 0;
    uint8_t tried[N] = {1, 0, 0, 0};
    for (int i = 0; i < 1000; i++) {
        int b = pick_in(&inst, &clients[i], NULL, tried);
        assert_true(b == 2 || b == 3);
    }
}

static void test_all_down(void **unused)
{
    struct client c = v4(0x7f000005, 1);
    for (int i = 0; i < N; i++)
        states[i].up = 0;
    assert_int_equal(pick(&c), FC_ENOBACKEND);
    assert_int_equal(pick(&c), FC_ENOBACKEND);
    states[3].up = 1;
    make_clients(12, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(&clients[i]), 3);
}

static void test_no_client_address(void **unused)
{
    /* No address (or an unknown family) still gets an answer, always the same one. */
    int b = pick(NULL);
    assert_true(b >= 0 && b < N);
    assert_int_equal(pick(NULL), b);
}

static void test_empty_pool(void **unused)
{
    static const struct fc_pool_view empty = {.name = "empty", .n_backends = 0, .backends = NULL};
    struct fc_instance e;
    struct client c = v4(0x7f000001, 1);
    create_over(&e, &empty);
    assert_int_equal(pick_in(&e, &c, NULL, NULL), FC_ENOBACKEND);
    fc_instance_destroy(&e);
}

static struct fc_span span(const char *s)
{
    return (struct fc_span){.p = s, .len = (uint32_t)strlen(s)};
}

static void test_header_key(void **unused)
{
    struct fc_instance h;
    struct parsed_group p;
    static struct fc_request req;

    assert_int_equal(
        create_with(&h, &p, "strategy = { plugin = \"ip_hash\"; key = \"header:X-Session\"; };",
                    &pool),
        0);
    assert_int_equal(n_log_lines, 0);
    config_destroy(&p.lc);

    memset(&req, 0, sizeof(req));
    req.headers[0].name = span("Host");
    req.headers[0].value = span("example.com");
    req.headers[1].name = span("x-session"); /* names match case-insensitively */
    req.n_headers = 2;

    /* One session, many client addresses: one backend. */
    char value[32];
    int count[N] = {0};
    make_clients(13, 0);
    for (int s = 0; s < 2000; s++) {
        snprintf(value, sizeof(value), "session-%d", s);
        req.headers[1].value = span(value);
        int b = pick_in(&h, &clients[0], &req, NULL);
        assert_true(b >= 0 && b < N);
        count[b]++;
        for (int i = 1; i < 20; i++)
            assert_int_equal(pick_in(&h, &clients[i], &req, NULL), b);
    }
    print_message("2000 sessions: %d %d %d %d\n", count[0], count[1], count[2], count[3]);
    for (int i = 0; i < N; i++)
        assert_in_range(count[i], 400, 600);

    /* No such header, an empty one, or no request at all: the client address decides. */
    static struct fc_request without;
    memset(&without, 0, sizeof(without));
    without.headers[0].name = span("Host");
    without.headers[0].value = span("example.com");
    without.n_headers = 1;
    req.headers[1].value = span("");
    for (int i = 0; i < CLIENTS; i++) {
        int by_address = pick(&clients[i]);
        assert_int_equal(pick_in(&h, &clients[i], &without, NULL), by_address);
        assert_int_equal(pick_in(&h, &clients[i], &req, NULL), by_address);
        assert_int_equal(pick_in(&h, &clients[i], NULL, NULL), by_address);
    }

    /* A session whose backend is down goes to the next one on the ring, and comes back. */
    req.headers[1].value = span("session-7");
    int b = pick_in(&h, &clients[0], &req, NULL);
    states[b].up = 0;
    int stand_in = pick_in(&h, &clients[1], &req, NULL);
    assert_int_not_equal(stand_in, b);
    assert_int_equal(pick_in(&h, &clients[2], &req, NULL), stand_in);
    states[b].up = 1;
    assert_int_equal(pick_in(&h, &clients[3], &req, NULL), b);
    fc_instance_destroy(&h);
}

static void expect_refused(const char *text, const char *line)
{
    struct fc_instance bad;
    struct parsed_group p;
    n_log_lines = 0;
    assert_int_equal(create_with(&bad, &p, text, &pool), FC_EINVAL);
    assert_logged(line);
    assert_null(bad.state);
    config_destroy(&p.lc);
}

static void test_invalid_key(void **unused)
{
    expect_refused("strategy = {\n  plugin = \"ip_hash\";\n  key = \"cookie:sid\";\n};",
                   "test.conf:3: strategy.key: expected \"header:NAME\" (e.g. "
                   "\"header:X-Session\"), or no key to hash the client address; got "
                   "\"cookie:sid\"");
    expect_refused("strategy = { plugin = \"ip_hash\"; key = \"source\"; };",
                   "test.conf:1: strategy.key: expected \"header:NAME\" (e.g. "
                   "\"header:X-Session\"), or no key to hash the client address; got \"source\"");
    expect_refused("strategy = { plugin = \"ip_hash\"; key = \"header:\"; };",
                   "test.conf:1: strategy.key: \"header:\" names no header (e.g. "
                   "\"header:X-Session\")");
    expect_refused("strategy = { plugin = \"ip_hash\"; key = \"header:X Session\"; };",
                   "test.conf:1: strategy.key: \"header:X Session\": \"X Session\" is not a valid "
                   "header name");
    expect_refused("strategy = { plugin = \"ip_hash\";\n key = 5; };",
                   "test.conf:2: strategy.key: expected a string for strategy plugin "
                   "\"ip_hash\"");
    /* A typo in the key's name is an unknown key. */
    expect_refused("strategy = { plugin = \"ip_hash\"; kye = \"header:X\"; };",
                   "test.conf:1: strategy.kye: unknown key for strategy plugin \"ip_hash\"");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_sticky_and_instances_agree),
        T(test_port_ignored),
        T(test_ipv6),
        T(test_ipv4_mapped_is_ipv4),
        T(test_even_distribution),
        T(test_weights),
        T(test_large_weights_scaled),
        T(test_removed_backend_moves_only_its_clients),
        T(test_order_does_not_matter),
        T(test_down_moves_only_its_clients_and_back),
        T(test_tried_skipped),
        T(test_all_down),
        T(test_no_client_address),
        T(test_empty_pool),
        T(test_header_key),
        T(test_invalid_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
