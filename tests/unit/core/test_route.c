/*
 * core/route.c: which pool serves a request, from its host and target, over
 * routes built by hand (no file, no sockets): first match wins, the
 * listener's pool otherwise, hosts compared normalised (case, port, IPv6
 * brackets, trailing dot), path prefixes byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"
#include "route.h"

#include <string.h>

#define LISTENER_POOL 9

static struct fc_conf_route routes[8];
static struct fc_config cfg;

static void add_route(const char *host, const char *path_prefix, uint32_t pool)
{
    struct fc_conf_route *r = &routes[cfg.n_routes++];
    r->host = (char *)host;
    r->path_prefix = (char *)path_prefix;
    r->pool = pool;
}

static int setup(void **state)
{
    memset(&cfg, 0, sizeof(cfg));
    memset(routes, 0, sizeof(routes));
    cfg.routes = routes;
    return 0;
}

/* The pool for `host` (NULL: no Host) and `target`. */
static uint32_t route(const char *host, const char *target)
{
    return fc_route_pool(&cfg, LISTENER_POOL, host, host ? strlen(host) : 0, target,
                         strlen(target));
}

static void test_no_routes_is_the_listeners_pool(void **state)
{
    assert_int_equal(route("example.com", "/"), LISTENER_POOL);
    assert_int_equal(route(NULL, "/"), LISTENER_POOL);
}

static void test_host_ignores_case_and_port(void **state)
{
    add_route("api.example.com", NULL, 1);
    assert_int_equal(route("api.example.com", "/"), 1);
    assert_int_equal(route("API.Example.COM", "/x"), 1);
    assert_int_equal(route("api.example.com:8080", "/"), 1);
    assert_int_equal(route("api.example.com.", "/"), 1);
    assert_int_equal(route("api.example.com.:443", "/"), 1);
    /* Not the same name: a longer one, a shorter one, a sub-domain, no Host at all. */
    assert_int_equal(route("api.example.community", "/"), LISTENER_POOL);
    assert_int_equal(route("api.example.co", "/"), LISTENER_POOL);
    assert_int_equal(route("x.api.example.com", "/"), LISTENER_POOL);
    assert_int_equal(route(NULL, "/"), LISTENER_POOL);
    assert_int_equal(route("", "/"), LISTENER_POOL);
}

static void test_ipv6_host_with_port(void **state)
{
    add_route("::1", NULL, 1);
    add_route("[2001:db8::7]", NULL, 2);
    /* The brackets and the port are not part of the name. */
    assert_int_equal(route("[::1]", "/"), 1);
    assert_int_equal(route("[::1]:8080", "/"), 1);
    assert_int_equal(route("[2001:db8::7]:443", "/"), 2);
    assert_int_equal(route("[2001:DB8::7]", "/"), 2);
    /* Other spellings of the same address. */
    assert_int_equal(route("[0:0::1]:8080", "/"), 1);
    assert_int_equal(route("[::0001]", "/"), 1);
    assert_int_equal(route("[0:0:0:0:0:0:0:1]", "/"), 1);
    assert_int_equal(route("[2001:0db8:0:0::7]:443", "/"), 2);
    /* A different address, and colons of an IPv6 literal are not a port. */
    assert_int_equal(route("[::2]:8080", "/"), LISTENER_POOL);
    assert_int_equal(route("[2001:db8::]:7", "/"), LISTENER_POOL);
}

static void test_ipv4_host_with_port(void **state)
{
    add_route("127.0.0.1", NULL, 3);
    assert_int_equal(route("127.0.0.1:8080", "/"), 3);
    assert_int_equal(route("127.0.0.1", "/"), 3);
    assert_int_equal(route("127.0.0.10:80", "/"), LISTENER_POOL);
}

static void test_path_prefix_is_exact_bytes(void **state)
{
    add_route(NULL, "/v1/", 4);
    assert_int_equal(route("any", "/v1/users"), 4);
    assert_int_equal(route(NULL, "/v1/"), 4);
    assert_int_equal(route("any", "/v1"), LISTENER_POOL); /* shorter than the prefix */
    assert_int_equal(route("any", "/V1/users"), LISTENER_POOL);
    assert_int_equal(route("any", "/v2/users"), LISTENER_POOL);
}

static void test_host_and_prefix_must_both_match(void **state)
{
    add_route("api.example.com", "/v1/", 5);
    assert_int_equal(route("api.example.com", "/v1/x"), 5);
    assert_int_equal(route("api.example.com", "/v2/x"), LISTENER_POOL);
    assert_int_equal(route("www.example.com", "/v1/x"), LISTENER_POOL);
}

static void test_first_match_wins(void **state)
{
    add_route("api.example.com", "/v1/admin/", 6);
    add_route("api.example.com", "/v1/", 7);
    add_route(NULL, "/", 8);
    assert_int_equal(route("api.example.com", "/v1/admin/x"), 6);
    assert_int_equal(route("api.example.com", "/v1/x"), 7);
    assert_int_equal(route("api.example.com", "/v2"), 8);
    assert_int_equal(route("other", "/anything"), 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_no_routes_is_the_listeners_pool, setup),
        cmocka_unit_test_setup(test_host_ignores_case_and_port, setup),
        cmocka_unit_test_setup(test_ipv6_host_with_port, setup),
        cmocka_unit_test_setup(test_ipv4_host_with_port, setup),
        cmocka_unit_test_setup(test_path_prefix_is_exact_bytes, setup),
        cmocka_unit_test_setup(test_host_and_prefix_must_both_match, setup),
        cmocka_unit_test_setup(test_first_match_wins, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
