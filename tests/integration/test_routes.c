/*
 * Routes: a request matching a route's host and path prefix goes to that
 * route's pool; everything else goes to the listener's pool.
 */
#include "harness.h"

#include <string.h>

static const char *backend_for(struct it_env *env, int port, const char *host, const char *path)
{
    struct it_response r;
    it_get(env, port, host, path, &r);
    const char *name = it_header(&r, "X-Backend");
    if (name == NULL)
        fail_msg("Host %s, %s: status %d and no X-Backend", host, path, r.status);
    const char *copy = it_strf(env, "%s", name);
    it_response_free(&r);
    return copy;
}

IT_TEST(host_and_prefix_route)
{
    int web = it_backend_start(env, "web");
    int api = it_backend_start(env, "api");
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 1, web);
    it_config_add_pool(&cfg, "api", 1, 1, api);
    cfg.listener_pool = "web";
    cfg.routes = "  { host = \"api.example.com\"; path_prefix = \"/v1/\"; pool = \"api\"; }";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    assert_string_equal(backend_for(env, f->port, "api.example.com", "/v1/items"), "api");
    assert_string_equal(backend_for(env, f->port, "api.example.com", "/v1/"), "api");
    assert_string_equal(backend_for(env, f->port, "api.example.com", "/v2/items"), "web");
    assert_string_equal(backend_for(env, f->port, "api.example.com", "/"), "web");
    assert_string_equal(backend_for(env, f->port, "www.example.com", "/v1/items"), "web");
    assert_string_equal(backend_for(env, f->port, "example.com", "/"), "web");
}

/*
 * Hardening 15: forms that name a routed path, or host, to a backend that
 * normalises them cannot slip past the route: the host forms are matched
 * normalised, the path forms are refused with 400.
 */
IT_TEST(route_cannot_be_dodged)
{
    int web = it_backend_start(env, "web");
    int admin = it_backend_start(env, "admin");
    struct it_config cfg;
    it_config_init(&cfg);
    it_config_add_pool(&cfg, "web", 1, 1, web);
    it_config_add_pool(&cfg, "admin", 1, 1, admin);
    cfg.listener_pool = "web";
    cfg.routes = "  { host = \"admin.example\"; pool = \"admin\"; },\n"
                 "  { path_prefix = \"/login\"; pool = \"admin\"; }";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    assert_string_equal(backend_for(env, f->port, "test", "/login"), "admin");
    assert_string_equal(backend_for(env, f->port, "admin.example", "/"), "admin");
    assert_string_equal(backend_for(env, f->port, "ADMIN.EXAMPLE.", "/"), "admin");
    assert_string_equal(backend_for(env, f->port, "admin.example.:8080", "/"), "admin");
    assert_string_equal(backend_for(env, f->port, "test", "/other"), "web");

    static const char *const dodges[] = {"//login", "/./login", "/%6cogin", "/x/../login"};
    for (size_t i = 0; i < sizeof(dodges) / sizeof(dodges[0]); i++) {
        struct it_response r;
        it_get(env, f->port, "test", dodges[i], &r);
        if (r.status != 400)
            fail_msg("%s: status %d, expected 400", dodges[i], r.status);
        assert_null(it_header(&r, "X-Backend"));
        it_response_free(&r);
    }
}

static const struct CMUnitTest tests[] = {
    IT_CASE(host_and_prefix_route),
    IT_CASE(route_cannot_be_dodged),
};

IT_MAIN(tests)
