/*
 * sticky as a user sees it: a client that sends back the cookie it got
 * stays on one backend, whichever worker accepts its connections and after
 * fulcrum restarts; when that backend is drained (runtime API), down or gone
 * the client moves and gets a new cookie; a TLS listener makes it Secure.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define TOKEN "sticky-test-token"

/* One GET with `cookie` (NULL: none) on a fresh connection; the response in *r. */
static void get(struct it_env *env, int port, const char *cookie, struct it_response *r)
{
    it_fetch(env, port, "GET",
             it_strf(env, "GET / HTTP/1.1\r\nHost: test\r\n%s%s%s\r\n", cookie ? "Cookie: " : "",
                     cookie ? cookie : "", cookie ? "\r\n" : ""),
             r);
    assert_int_equal(r->status, 200);
}

/* "fcsrv=VALUE" from a Set-Cookie, copied; fails when there is none. */
static const char *cookie_of(struct it_env *env, const struct it_response *r)
{
    const char *sc = it_header(r, "Set-Cookie");
    if (sc == NULL)
        fail_msg("no Set-Cookie");
    const char *end = strchr(sc, ';');
    return it_strf(env, "%.*s", (int)(end ? end - sc : (long)strlen(sc)), sc);
}

/* A new client's first request: the backend that answered and the cookie it was given. */
static void first_visit(struct it_env *env, int port, const char **backend, const char **cookie,
                        const char **set_cookie)
{
    struct it_response r;
    get(env, port, NULL, &r);
    *backend = it_strf(env, "%s", it_header(&r, "X-Backend"));
    *cookie = cookie_of(env, &r);
    if (set_cookie != NULL)
        *set_cookie = it_strf(env, "%s", it_header(&r, "Set-Cookie"));
    it_response_free(&r);
}

static struct it_fulcrum *start_sticky(struct it_env *env, struct it_config *cfg, int *admin)
{
    struct it_pool_config *p = it_config_demo_pool(env, cfg, 3);
    cfg->workers = 2;
    p->strategy = "sticky";
    p->strategy_options = "max_age_s = 600;";
    *admin = it_free_port();
    cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"%s\";", *admin,
                         it_write_file(env, "admin.token", TOKEN "\n"));
    return it_fulcrum_start(env, cfg);
}

IT_TEST(a_cookie_keeps_the_client_on_its_backend_across_workers_and_restarts)
{
    struct it_config cfg;
    int admin;
    struct it_fulcrum *f = start_sticky(env, &cfg, &admin);
    const char *backend, *cookie, *sc;
    first_visit(env, f->port, &backend, &cookie, &sc);
    struct it_response r;
    assert_non_null(strstr(sc, "; Path=/; HttpOnly; SameSite=Lax; Max-Age=600"));
    assert_null(strstr(sc, "Secure")); /* a plain listener */

    /* 20 requests, each on its own connection (so either worker), with other cookies around it. */
    for (int i = 0; i < 20; i++) {
        get(env, f->port, it_strf(env, "theme=dark; %s; lang=en", cookie), &r);
        assert_string_equal(it_header(&r, "X-Backend"), backend);
        assert_null(it_header(&r, "Set-Cookie"));
        it_response_free(&r);
    }
    /* Clients without one spread: three new ones, three backends (none is busy). */
    int seen[3] = {0};
    for (int i = 0; i < 30; i++) {
        get(env, f->port, NULL, &r);
        seen[it_header(&r, "X-Backend")[0] - 'a'] = 1;
        it_response_free(&r);
    }
    assert_int_equal(seen[0] + seen[1] + seen[2], 3);

    /* A restart (a new process, same configuration): the same cookie, the same backend. */
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 5000);
    f = it_fulcrum_start(env, &cfg);
    for (int i = 0; i < 5; i++) {
        get(env, f->port, cookie, &r);
        assert_string_equal(it_header(&r, "X-Backend"), backend);
        assert_null(it_header(&r, "Set-Cookie"));
        it_response_free(&r);
    }
}

IT_TEST(a_drained_backend_loses_its_clients_to_others_with_new_cookies)
{
    struct it_config cfg;
    int admin;
    struct it_fulcrum *f = start_sticky(env, &cfg, &admin);
    const char *backend, *cookie;
    first_visit(env, f->port, &backend, &cookie, NULL);
    struct it_response r;
    int port = cfg.pools[0].ports[backend[0] - 'a'];

    it_fetch(env, admin, "PATCH",
             it_strf(env,
                     "PATCH /api/pools/web/backends/127.0.0.1%%3A%d HTTP/1.1\r\nHost: admin\r\n"
                     "Authorization: Bearer " TOKEN "\r\nContent-Length: 18\r\n\r\n"
                     "{\"state\":\"drain\"}\n",
                     port),
             &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);

    get(env, f->port, cookie, &r);
    const char *moved = it_strf(env, "%s", it_header(&r, "X-Backend"));
    assert_string_not_equal(moved, backend);
    const char *cookie2 = cookie_of(env, &r);
    assert_string_not_equal(cookie2, cookie);
    it_response_free(&r);
    /* The new cookie holds. */
    for (int i = 0; i < 5; i++) {
        get(env, f->port, cookie2, &r);
        assert_string_equal(it_header(&r, "X-Backend"), moved);
        assert_null(it_header(&r, "Set-Cookie"));
        it_response_free(&r);
    }
    /* A tampered value is a new client. */
    get(env, f->port, "fcsrv=0123456789abcdef", &r);
    assert_non_null(it_header(&r, "Set-Cookie"));
    it_response_free(&r);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(a_cookie_keeps_the_client_on_its_backend_across_workers_and_restarts),
    IT_CASE(a_drained_backend_loses_its_clients_to_others_with_new_cookies),
};

IT_MAIN(tests)
