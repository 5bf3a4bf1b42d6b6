/*
 * Runtime control on the admin listener: POST /api/reload reloads as SIGHUP
 * does and answers with the outcome, the new generation or every error with
 * its file and line; the token rules hold for it.
 */
#include "harness.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "s3cret-token-for-the-test"

/* POST /api/reload, with the token when `token`; the response's status, body in *body. */
static int post_reload(struct it_env *env, int port, int token, json_t **body)
{
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, it_strf(env,
                           "POST /api/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n%s\r\n",
                           token ? "Authorization: Bearer " TOKEN "\r\n" : ""));
    struct it_response r;
    it_expect_response(c, "POST", &r);
    int status = r.status;
    json_error_t err;
    *body = json_loads(r.body, 0, &err);
    if (*body == NULL)
        fail_msg("POST /api/reload answered %d with no JSON: %s", status, r.body);
    it_response_free(&r);
    it_conn_close(c);
    return status;
}

/* Writes text over fulcrum's config file the way an editor that renames does. */
static void rewrite_config(struct it_env *env, struct it_fulcrum *f, const char *text)
{
    const char *tmp = it_write_file(env, "next.conf.tmp", text);
    if (rename(tmp, f->config_path) != 0)
        fail_msg("rename: %s", strerror(errno));
}

IT_TEST(reload_endpoint)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    int admin = it_free_port();
    const char *token_file = it_write_file(env, "admin.token", TOKEN "\n");
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\"; token_file = \"%s\";", admin, token_file);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    json_t *j;
    assert_int_equal(post_reload(env, admin, 0, &j), 401); /* the token rules hold */
    json_decref(j);
    assert_int_equal(it_fulcrum_log_count(env, f, "reloading "), 0);

    assert_int_equal(post_reload(env, admin, 1, &j), 200);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 2);
    json_decref(j);

    /* A broken file: 422 with every error, each naming the file and the line. */
    const char *good = it_config_render(env, &cfg, f->port);
    const char *bad = it_strf(env, "%s\nworkers = \"many\";\nbogus_key = 1;\n", good);
    rewrite_config(env, f, bad);
    assert_int_equal(post_reload(env, admin, 1, &j), 422);
    assert_true(json_is_false(json_object_get(j, "ok")));
    json_t *errors = json_object_get(j, "errors");
    assert_true(json_array_size(errors) >= 1);
    int named = 0;
    for (size_t i = 0; i < json_array_size(errors); i++) {
        const char *e = json_string_value(json_array_get(errors, i));
        assert_non_null(e);
        named += strstr(e, it_strf(env, "%s:", f->config_path)) != NULL;
    }
    assert_true(named >= 1);
    json_decref(j);

    /* The old generation stays in force and serves; the file fixed, the next reload takes. */
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    rewrite_config(env, f, good);
    assert_int_equal(post_reload(env, admin, 1, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 3);
    json_decref(j);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(reload_endpoint),
};

IT_MAIN(tests)
