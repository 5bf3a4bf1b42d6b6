/*
 * Tests of plugins/strategy/sticky.c, loaded through the real loader and
 * host, over a synthetic pool (see strategy_fixture.h): the backend a cookie
 * names, the Set-Cookie a new client gets, and a value that is the same for
 * the same address on every instance and in any order of the pool.
 */
#include "strategy_fixture.h"

#include "http_request.h"

#define STICKY FC_PLUGIN_BUILD_DIR "/sticky.so"
#define N_STATES MAX_BACKENDS

static struct fc_request req;
static struct fc_added_headers added;

static struct fc_span span(const char *s)
{
    return (struct fc_span){s, (uint32_t)strlen(s)};
}

/* A request that carries `cookie` (NULL: no Cookie header), and an empty room for headers. */
static const struct fc_request *request(const char *cookie)
{
    memset(&req, 0, sizeof(req));
    memset(&added, 0, sizeof(added));
    req.added = &added;
    added.open = 1;
    if (cookie != NULL) {
        req.headers[0].name = span("Cookie");
        req.headers[0].value = span(cookie);
        req.n_headers = 1;
    }
    return &req;
}

static int pick_with(const struct fc_instance *in, const char *cookie, uint32_t flags,
                     const uint8_t *tried)
{
    struct fc_pick_args args = {
        .size = sizeof(args), .request = request(cookie), .tried = tried, .flags = flags};
    return fx.plugin->desc->strategy->pick(in->state, &args);
}

/* What the last pick added: "" when nothing. */
static const char *added_text(void)
{
    static char text[FC_RESPONSE_HEADERS_MAX + 1];
    memcpy(text, added.buf, added.len);
    text[added.len] = '\0';
    return text;
}

/* The cookie value the last pick set (16 hex digits), copied. */
static const char *set_value(void)
{
    static char v[17];
    const char *at = strstr(added_text(), "Set-Cookie: fcsrv=");
    assert_non_null(at);
    memcpy(v, at + 18, 16);
    v[16] = '\0';
    for (int i = 0; i < 16; i++)
        assert_non_null(strchr("0123456789abcdef", v[i]));
    return v;
}

/* The cookie value backend i gets: a new client sent there (it alone is idle), copied into v. */
static void value_for(uint32_t i, char v[17])
{
    for (uint32_t b = 0; b < N_STATES; b++)
        states[b].inflight = b == i ? 0 : 9;
    assert_int_equal(pick_with(&fx.inst, NULL, 0, NULL), (int)i);
    snprintf(v, 17, "%s", set_value());
}

static void test_new_client_gets_least_loaded_and_a_cookie(void **unused)
{
    use_pool(4, NULL);
    set_inflight(3, 1, 2, 5);
    assert_int_equal(pick_with(&fx.inst, NULL, 0, NULL), 1);
    const char *v = set_value();
    char want[128];
    snprintf(want, sizeof(want), "Set-Cookie: fcsrv=%s; Path=/; HttpOnly; SameSite=Lax\r\n", v);
    assert_string_equal(added_text(), want);
    /* On a TLS listener (secure = "auto"), Secure too. */
    assert_int_equal(pick_with(&fx.inst, NULL, FC_PICK_TLS, NULL), 1);
    snprintf(want, sizeof(want), "Set-Cookie: fcsrv=%s; Path=/; HttpOnly; SameSite=Lax; Secure\r\n",
             v);
    assert_string_equal(added_text(), want);
    /* Weights: 4 in flight over weight 8 is less than 1 over weight 1. */
    static const uint32_t w[] = {1, 8, 1, 1};
    use_pool(4, w);
    set_inflight(1, 4, 1, 1);
    assert_int_equal(pick_with(&fx.inst, NULL, 0, NULL), 1);
}

static void test_the_cookie_keeps_the_backend(void **unused)
{
    use_pool(4, NULL);
    char cookies[4][64];
    for (uint32_t i = 0; i < 4; i++) {
        char v[17];
        value_for(i, v);
        snprintf(cookies[i], sizeof(cookies[i]), "other=1; fcsrv=%s; x=y", v);
    }
    /* Whatever the loads, the cookie decides, and no Set-Cookie goes out again. */
    set_inflight(50, 0, 0, 0);
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 4; i++) {
            assert_int_equal(pick_with(&fx.inst, cookies[i], 0, NULL), i);
            assert_int_equal(added.len, 0);
        }
    /* Its backend down, or already failed for this request: another, with a new cookie. */
    states[0].up = 0;
    set_inflight(0, 5, 1, 5);
    assert_int_equal(pick_with(&fx.inst, cookies[0], 0, NULL), 2);
    char want[32];
    snprintf(want, sizeof(want), "%.22s", cookies[2] + strlen("other=1; ")); /* fcsrv=VALUE */
    assert_non_null(strstr(added_text(), want));
    states[0].up = 1;
    set_inflight(3, 5, 1, 5);
    uint8_t tried[4] = {1, 0, 0, 0};
    assert_int_equal(pick_with(&fx.inst, cookies[0], 0, tried), 2);
    assert_true(added.len > 0);
    /* Tampered, truncated, empty or foreign values are ignored: a pick of least load. */
    static const char *const bad[] = {
        "fcsrv=0000000000000000", "fcsrv=abc", "fcsrv=", "fcsrv", "FCSRV=x", "session=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(pick_with(&fx.inst, bad[i], 0, NULL), 2);
        assert_non_null(strstr(added_text(), "Set-Cookie: fcsrv="));
    }
    /* None eligible: no backend, and no cookie. */
    for (int i = 0; i < 4; i++)
        states[i].up = 0;
    assert_int_equal(pick_with(&fx.inst, cookies[1], 0, NULL), FC_ENOBACKEND);
    assert_int_equal(added.len, 0);
}

/* The value belongs to the address: other instances (workers, restarts) and orders agree. */
static void test_the_value_is_the_address_s(void **unused)
{
    use_pool(4, NULL);
    char values[4][17];
    for (uint32_t i = 0; i < 4; i++) {
        value_for(i, values[i]);
        for (uint32_t j = 0; j < i; j++)
            assert_string_not_equal(values[i], values[j]);
    }
    struct fc_instance other;
    create_other(&other);
    char cookie[64];
    for (int i = 0; i < 4; i++) {
        snprintf(cookie, sizeof(cookie), "fcsrv=%s", values[i]);
        assert_int_equal(pick_with(&other, cookie, 0, NULL), i);
    }
    fc_instance_destroy(&other);
    /* The pool reordered (a backend removed before it, say): the same address, the same value. */
    views[0].address = "127.0.0.1:9004";
    views[3].address = "127.0.0.1:9001";
    create_other(&other);
    snprintf(cookie, sizeof(cookie), "fcsrv=%s", values[3]);
    assert_int_equal(pick_with(&other, cookie, 0, NULL), 0);
    snprintf(cookie, sizeof(cookie), "fcsrv=%s", values[0]);
    assert_int_equal(pick_with(&other, cookie, 0, NULL), 3);
    fc_instance_destroy(&other);
}

static void test_keys(void **unused)
{
    use_pool(2, NULL);
    set_inflight(0, 9, 0, 0); /* every instance picks backend 0 */
    struct fc_instance in;
    assert_int_equal(
        create_with_keys(&in,
                         "cookie = \"srv_id\"; max_age_s = 3600; httponly = false; "
                         "samesite = \"Strict\"; secure = \"true\"; secret = \"s3cret\";",
                         &pool),
        0);
    assert_int_equal(pick_with(&in, NULL, 0, NULL), 0);
    const char *t = added_text();
    assert_non_null(strstr(t, "Set-Cookie: srv_id="));
    assert_non_null(strstr(t, "; Path=/; SameSite=Strict; Max-Age=3600; Secure\r\n"));
    assert_null(strstr(t, "HttpOnly"));
    /* Another secret, another value for the same address. */
    char v1[17];
    memcpy(v1, strstr(t, "srv_id=") + 7, 16);
    v1[16] = '\0';
    fc_instance_destroy(&in);
    assert_int_equal(pick_with(&fx.inst, NULL, 0, NULL) >= 0, 1);
    assert_int_equal(
        create_with_keys(&in, "cookie = \"srv_id\"; secure = \"false\"; samesite = \"\";", &pool),
        0);
    assert_int_equal(pick_with(&in, NULL, FC_PICK_TLS, NULL), 0);
    t = added_text();
    assert_null(strstr(t, v1));
    assert_non_null(strstr(t, "; Path=/; HttpOnly\r\n")); /* no SameSite, no Secure even on TLS */
    fc_instance_destroy(&in);

    static const char *const bad[] = {
        "cookie = \"a b\";",   "cookie = \"\";",
        "max_age_s = -1;",     "secure = \"yes\";",
        "samesite = \"lax\";", "samesite = \"None\"; secure = \"false\";",
        "secret = \"\";",      "httponly = 1;",
        "cokie = \"x\";",      NULL};
    assert_keys_refused(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STRATEGY_TEST(test_new_client_gets_least_loaded_and_a_cookie, STICKY),
        STRATEGY_TEST(test_the_cookie_keeps_the_backend, STICKY),
        STRATEGY_TEST(test_the_value_is_the_address_s, STICKY),
        STRATEGY_TEST(test_keys, STICKY),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
