/*
 * Tests of core/plugin_host.c through the test_strategy and create_fails
 * plugins: configuration getters and their errors (with file and line),
 * unknown keys, failing create(), and the other host functions.
 */
#include "plugin_fixture.h"

#include "test_strategy.h"
#include "http_request.h"

#define TEST_PLUGIN(name) FC_TEST_PLUGIN_DIR "/" name ".so"
#define CONFIG_FILE "test.conf"

static struct fc_plugin *test_strategy;
static struct fc_plugin *create_fails;

static int create_with(struct fc_instance *inst, struct parsed_group *p, const char *text,
                       const char *const *core_keys)
{
    parse_group(p, text, "strategy", "test_strategy");
    return fc_instance_create(inst, test_strategy, &p->conf, CONFIG_FILE, core_keys, NULL, NULL,
                              "pool web: strategy test_strategy");
}

static const struct test_strategy_state *state_of(const struct fc_instance *inst)
{
    return inst->state;
}

static int group_setup(void **unused)
{
    if (load_plugin(TEST_PLUGIN("test_strategy"), FC_PLUGIN_STRATEGY, &test_strategy) < 0 ||
        load_plugin(TEST_PLUGIN("create_fails"), FC_PLUGIN_STRATEGY, &create_fails) < 0)
        return -1;
    return 0;
}

static int group_teardown(void **unused)
{
    fc_plugin_unload(test_strategy);
    fc_plugin_unload(create_fails);
    return 0;
}

static int setup(void **unused)
{
    log_capture_start();
    return 0;
}

static int teardown(void **unused)
{
    log_capture_stop();
    return 0;
}

static void test_values_read(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = {\n"
                                 "    plugin = \"test_strategy\";\n"
                                 "    answer = 42;\n"
                                 "    label = \"hello\";\n"
                                 "    ratio = 0.25;\n"
                                 "    flag = true;\n"
                                 "};\n",
                                 NULL),
                     0);
    const struct test_strategy_state *s = state_of(&inst);
    assert_int_equal(s->rc_answer, 0);
    assert_int_equal(s->rc_label, 0);
    assert_int_equal(s->rc_ratio, 0);
    assert_int_equal(s->rc_flag, 0);
    assert_int_equal(s->answer, 42);
    assert_string_equal(s->label, "hello");
    assert_true(s->ratio == 0.25);
    assert_int_equal(s->flag, 1);
    assert_int_equal(n_log_lines, 0);

    assert_int_equal(inst.host.size, sizeof(struct fc_host));
    assert_int_equal(inst.host.abi_minor, FC_ABI_MINOR);
    assert_string_equal(inst.label, "pool web: strategy test_strategy");

    /* Strings outlive the config tree they came from. */
    config_destroy(&p.lc);
    assert_string_equal(s->label, "hello");
    fc_instance_destroy(&inst);
    assert_null(inst.state);
    fc_instance_destroy(&inst); /* twice is harmless */
}

static void test_defaults_when_absent(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;

    assert_int_equal(create_with(&inst, &p, "strategy = { plugin = \"test_strategy\"; };", NULL),
                     0);
    const struct test_strategy_state *s = state_of(&inst);
    assert_int_equal(s->rc_answer, FC_ENOENT);
    assert_int_equal(s->rc_label, FC_ENOENT);
    assert_int_equal(s->rc_ratio, FC_ENOENT);
    assert_int_equal(s->rc_flag, FC_ENOENT);
    assert_int_equal(s->answer, 7);
    assert_string_equal(s->label, "none");
    assert_true(s->ratio == 1.0);
    assert_int_equal(s->flag, 0);
    fc_instance_destroy(&inst);
    config_destroy(&p.lc);

    /* No group, no pool, no label, no hooks at all. */
    assert_int_equal(fc_instance_create(&inst, test_strategy, NULL, NULL, NULL, NULL, NULL, NULL),
                     0);
    assert_string_equal(inst.label, "strategy test_strategy");
    assert_int_equal(state_of(&inst)->rc_answer, FC_ENOENT);
    fc_instance_destroy(&inst);
}

static void test_numeric_conversions(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = {\n"
                                 "    plugin = \"test_strategy\";\n"
                                 "    answer = 5000000000L;\n"
                                 "    ratio = 2;\n"
                                 "};\n",
                                 NULL),
                     0);
    assert_true(state_of(&inst)->answer == INT64_C(5000000000));
    assert_true(state_of(&inst)->ratio == 2.0);
    fc_instance_destroy(&inst);
    config_destroy(&p.lc);

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = { plugin = \"test_strategy\"; ratio = 6000000000L; };",
                                 NULL),
                     0);
    assert_true(state_of(&inst)->ratio == 6e9);
    fc_instance_destroy(&inst);
    config_destroy(&p.lc);
}

static void test_wrong_types(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = {\n"
                                 "    plugin = \"test_strategy\";\n"
                                 "    answer = \"forty-two\";\n"
                                 "    label = 3;\n"
                                 "    ratio = \"half\";\n"
                                 "    flag = 1;\n"
                                 "};\n",
                                 NULL),
                     FC_EINVAL);
    assert_logged(
        "test.conf:3: strategy.answer: expected an integer for strategy plugin \"test_strategy\"");
    assert_logged(
        "test.conf:4: strategy.label: expected a string for strategy plugin \"test_strategy\"");
    assert_logged(
        "test.conf:5: strategy.ratio: expected a number for strategy plugin \"test_strategy\"");
    assert_logged(
        "test.conf:6: strategy.flag: expected a boolean (true or false) for strategy plugin "
        "\"test_strategy\"");
    /* A key of the wrong type was still read: it is not also reported as unknown. */
    assert_int_equal(n_log_lines, 4);
    /* The created state was destroyed (the sanitizer build proves no leak) and inst reset. */
    assert_null(inst.plugin);
    assert_null(inst.state);
    fc_instance_destroy(&inst);
    config_destroy(&p.lc);
}

static void test_unknown_keys(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = {\n"
                                 "    plugin = \"test_strategy\";\n"
                                 "    anwser = 42;\n"
                                 "    label = \"x\";\n"
                                 "    retries = 2;\n"
                                 "    colour = \"blue\";\n"
                                 "};\n",
                                 NULL),
                     FC_EINVAL);
    assert_logged(
        "test.conf:3: strategy.anwser: unknown key for strategy plugin \"test_strategy\"");
    assert_logged(
        "test.conf:5: strategy.retries: unknown key for strategy plugin \"test_strategy\"");
    assert_logged(
        "test.conf:6: strategy.colour: unknown key for strategy plugin \"test_strategy\"");
    assert_int_equal(n_log_lines, 3);
    assert_null(inst.state);
    config_destroy(&p.lc);

    /* Keys the core reads itself are not the plugin's to know. */
    static const char *const core_keys[] = {"retries", "colour", NULL};
    n_log_lines = 0;
    assert_int_equal(create_with(&inst, &p,
                                 "strategy = {\n"
                                 "    plugin = \"test_strategy\";\n"
                                 "    retries = 2;\n"
                                 "    colour = \"blue\";\n"
                                 "    answer = 1;\n"
                                 "};\n",
                                 core_keys),
                     0);
    assert_int_equal(n_log_lines, 0);
    fc_instance_destroy(&inst);
    config_destroy(&p.lc);
}

static void test_unknown_and_wrong_type_together(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = {\n"
                                 "    plugin = \"test_strategy\";\n"
                                 "    flag = \"yes\";\n"
                                 "    flg = true;\n"
                                 "};\n",
                                 NULL),
                     FC_EINVAL);
    assert_logged(
        "test.conf:3: strategy.flag: expected a boolean (true or false) for strategy plugin "
        "\"test_strategy\"");
    assert_logged("test.conf:4: strategy.flg: unknown key for strategy plugin \"test_strategy\"");
    config_destroy(&p.lc);
}

static void test_config_error(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = {\n"
                                 "    plugin = \"test_strategy\";\n"
                                 "\n"
                                 "    answer = -1;\n"
                                 "};\n",
                                 NULL),
                     FC_EINVAL);
    assert_logged("test.conf:4: strategy.answer: must not be negative, got -1");
    assert_int_equal(n_log_lines, 1);
    config_destroy(&p.lc);
}

/* The 64th key is the last one a group may have, and its bit counts. */
static void test_group_size_limit(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;
    char text[4096];
    const char *core_keys[64];
    char names[64][8];
    int off = snprintf(text, sizeof(text), "strategy = {\n    plugin = \"test_strategy\";\n");

    for (int i = 0; i < 62; i++) {
        snprintf(names[i], sizeof(names[i]), "k%d", i);
        core_keys[i] = names[i];
        off += snprintf(text + off, sizeof(text) - (size_t)off, "    k%d = %d;\n", i, i);
    }
    core_keys[62] = NULL;
    snprintf(text + off, sizeof(text) - (size_t)off, "    answer = 64;\n};\n");
    assert_int_equal(create_with(&inst, &p, text, core_keys), 0);
    assert_int_equal(config_setting_index(config_setting_get_member(p.conf.group, "answer")), 63);
    assert_int_equal(state_of(&inst)->answer, 64);
    assert_int_equal(n_log_lines, 0);
    fc_instance_destroy(&inst);
    config_destroy(&p.lc);

    /* One more and the group is refused before create() runs. */
    off = (int)strlen(text) - 3;
    snprintf(text + off, sizeof(text) - (size_t)off, "    k99 = 1;\n};\n");
    assert_int_equal(create_with(&inst, &p, text, core_keys), FC_EINVAL);
    assert_logged("test.conf:1: strategy plugin \"test_strategy\": more than 64 keys in one group");
    assert_null(inst.state);
    config_destroy(&p.lc);
}

static void test_create_fails(void **unused)
{
    struct fc_instance inst;

    assert_int_equal(fc_instance_create(&inst, create_fails, NULL, CONFIG_FILE, NULL, NULL, NULL,
                                        "pool web: strategy create_fails"),
                     FC_EINVAL);
    assert_logged("pool web: strategy create_fails: cannot start: the test says so");
    char want[512];
    snprintf(want, sizeof(want),
             "%s:0: pool web: strategy create_fails: %s: create() failed: invalid argument or "
             "configuration",
             CONFIG_FILE, create_fails->path);
    assert_logged(want);
    assert_null(inst.plugin);
    fc_instance_destroy(&inst); /* a failed instance needs none, but it is harmless */

    assert_int_equal(fc_instance_create(&inst, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                     FC_EINVAL);
}

static void test_getters_outside_create(void **unused)
{
    struct fc_instance inst;
    struct parsed_group p;
    int64_t i = 5;
    double d = 5;
    int b = 5;
    const char *str = "unchanged";

    assert_int_equal(create_with(&inst, &p,
                                 "strategy = { plugin = \"test_strategy\"; answer = 1; "
                                 "label = \"l\"; ratio = 1.5; flag = false; };",
                                 NULL),
                     0);
    assert_int_equal(inst.host.config_int(&inst.host, "answer", &i), FC_EINVAL);
    assert_int_equal(inst.host.config_double(&inst.host, "ratio", &d), FC_EINVAL);
    assert_int_equal(inst.host.config_bool(&inst.host, "flag", &b), FC_EINVAL);
    assert_int_equal(inst.host.config_string(&inst.host, "label", &str), FC_EINVAL);
    assert_int_equal(i, 5);
    assert_true(d == 5);
    assert_int_equal(b, 5);
    assert_string_equal(str, "unchanged");
    assert_logged("pool web: strategy test_strategy: config_int(\"answer\") called outside "
                  "create()");

    inst.host.config_error(&inst.host, "answer", "too late");
    assert_logged("pool web: strategy test_strategy: answer: too late (config_error() called "
                  "outside create())");
    fc_instance_destroy(&inst);
    config_destroy(&p.lc);
}

static void test_log(void **unused)
{
    struct fc_instance inst;

    assert_int_equal(fc_instance_create(&inst, test_strategy, NULL, NULL, NULL, NULL, NULL,
                                        "pool api: strategy test_strategy"),
                     0);
    fc_log_set_level(FC_LOG_WARN);
    inst.host.log(&inst.host, FC_LOG_INFO, "hidden %d", 1);
    assert_int_equal(n_log_lines, 0);
    inst.host.log(&inst.host, FC_LOG_WARN, "shown %d", 2);
    assert_int_equal(n_log_lines, 1);
    assert_string_equal(log_lines[0], "pool api: strategy test_strategy: shown 2");
    /* A level out of range is clamped, not used as an index. */
    inst.host.log(&inst.host, (enum fc_log_level)99, "loud");
    assert_string_equal(log_lines[1], "pool api: strategy test_strategy: loud");
    fc_instance_destroy(&inst);
}

static int probes, verdicts;
static void *seen_owner;

static void hook_probe_done(void *owner, struct fc_probe *probe, int ok, const char *reason)
{
    seen_owner = owner;
    assert_ptr_equal(probe, (struct fc_probe *)&probes);
    assert_int_equal(ok, 1);
    assert_string_equal(reason, "HTTP 200");
    probes++;
}

static void hook_ratelimit_done(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                                uint64_t retry_after_ms)
{
    seen_owner = owner;
    assert_int_equal(verdict, FC_RATELIMIT_DENY);
    assert_int_equal(retry_after_ms, 1500);
    verdicts++;
}

static void test_hooks(void **unused)
{
    struct fc_instance inst;
    int owner, loop;
    struct fc_instance_hooks hooks = {
        .owner = &owner,
        .main_loop = &loop,
        .worker_count = 6,
        .probe_done = hook_probe_done,
        .ratelimit_done = hook_ratelimit_done,
    };

    assert_int_equal(fc_instance_create(&inst, test_strategy, NULL, NULL, NULL, NULL, &hooks, "t"),
                     0);
    assert_ptr_equal(inst.host.main_loop(&inst.host), &loop);
    assert_int_equal(inst.host.worker_count(&inst.host), 6);
    inst.host.probe_done(&inst.host, (struct fc_probe *)&probes, 1, "HTTP 200");
    assert_int_equal(probes, 1);
    assert_ptr_equal(seen_owner, &owner);
    inst.host.ratelimit_done(&inst.host, NULL, FC_RATELIMIT_DENY, 1500);
    assert_int_equal(verdicts, 1);
    fc_instance_destroy(&inst);

    /* Without hooks: nothing to forward to, which is an error worth a line, not a crash. */
    assert_int_equal(fc_instance_create(&inst, test_strategy, NULL, NULL, NULL, NULL, NULL, "t"),
                     0);
    assert_null(inst.host.main_loop(&inst.host));
    assert_int_equal(inst.host.worker_count(&inst.host), 0);
    inst.host.probe_done(&inst.host, NULL, 0, "timeout");
    inst.host.ratelimit_done(&inst.host, NULL, FC_RATELIMIT_ALLOW, 0);
    assert_logged("t: probe_done() called, but this instance runs no probes");
    assert_logged("t: ratelimit_done() called, but this instance has no pending checks");
    assert_int_equal(probes, 1);
    fc_instance_destroy(&inst);
}

static void test_now_ns(void **unused)
{
    struct fc_instance inst;

    assert_int_equal(fc_instance_create(&inst, test_strategy, NULL, NULL, NULL, NULL, NULL, NULL),
                     0);
    uint64_t a = inst.host.now_ns(&inst.host);
    uint64_t b = inst.host.now_ns(&inst.host);
    assert_true(a > 0);
    assert_true(b >= a);
    fc_instance_destroy(&inst);
}

static struct fc_span span(const char *s)
{
    return (struct fc_span){.p = s, .len = (uint32_t)strlen(s)};
}

static void test_request_header(void **unused)
{
    struct fc_instance inst;
    static struct fc_request req;
    size_t len = 99;

    req.headers[0].name = span("Host");
    req.headers[0].value = span("example.com");
    req.headers[1].name = span("X-Api-Key");
    req.headers[1].value = span("secret");
    req.headers[2].name = span("x-api-key");
    req.headers[2].value = span("second");
    req.headers[3].name = span("X-Api-Ke");
    req.headers[3].value = span("prefix");
    req.n_headers = 4;

    assert_int_equal(fc_instance_create(&inst, test_strategy, NULL, NULL, NULL, NULL, NULL, NULL),
                     0);
    const char *v = inst.host.request_header(&inst.host, &req, "x-API-key", &len);
    assert_non_null(v);
    assert_int_equal(len, 6);
    assert_memory_equal(v, "secret", 6);
    v = inst.host.request_header(&inst.host, &req, "host", &len);
    assert_int_equal(len, 11);
    assert_memory_equal(v, "example.com", 11);
    assert_null(inst.host.request_header(&inst.host, &req, "X-Api-Keys", &len));
    assert_int_equal(len, 0);
    assert_null(inst.host.request_header(&inst.host, &req, "X-Api", &len));
    assert_null(inst.host.request_header(&inst.host, NULL, "Host", &len));
    fc_instance_destroy(&inst);
}

static void test_response_header_add(void **unused)
{
    struct fc_instance inst;
    static struct fc_request req;
    static struct fc_added_headers added;
    assert_int_equal(fc_instance_create(&inst, test_strategy, NULL, NULL, NULL, NULL, NULL, NULL),
                     0);
    const struct fc_host *h = &inst.host;
    /* Outside pick() (the host opens the request's room only around it): refused. */
    assert_int_equal(h->response_header_add(h, &req, "X-A", "1"), FC_EINVAL);
    req.added = &added;
    assert_int_equal(h->response_header_add(h, &req, "X-A", "1"), FC_EINVAL);
    added.open = 1;
    assert_int_equal(h->response_header_add(h, &req, "Set-Cookie", "fcsrv=ab12; HttpOnly"), 0);
    assert_int_equal(h->response_header_add(h, &req, "X-T", "tab\tok"), 0);
    /* Names are tokens; values carry no line breaks nor other controls. */
    static const char *const bad_names[] = {"", "X A", "X:A", "X\r\nA", "X\"", "\x80"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        assert_int_equal(h->response_header_add(h, &req, bad_names[i], "v"), FC_EINVAL);
    static const char *const bad_values[] = {"a\r\nSet-Cookie: x", "a\nb", "a\rb", "\x7f", "\x01"};
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++)
        assert_int_equal(h->response_header_add(h, &req, "X-B", bad_values[i]), FC_EINVAL);
    assert_int_equal(h->response_header_add(h, &req, NULL, "v"), FC_EINVAL);
    assert_int_equal(h->response_header_add(h, &req, "X-B", NULL), FC_EINVAL);
    const char *want = "Set-Cookie: fcsrv=ab12; HttpOnly\r\nX-T: tab\tok\r\n";
    assert_int_equal(added.len, strlen(want));
    assert_memory_equal(added.buf, want, added.len);
    /* The room is bounded: what does not fit is refused whole, and what came before stays. */
    char big[FC_RESPONSE_HEADERS_MAX];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(h->response_header_add(h, &req, "X-Big", big), FC_ENOMEM);
    assert_int_equal(added.len, strlen(want));
    big[FC_RESPONSE_HEADERS_MAX - strlen(want) - strlen("X-Big: \r\n")] = '\0';
    assert_int_equal(h->response_header_add(h, &req, "X-Big", big), 0);
    assert_int_equal(added.len, FC_RESPONSE_HEADERS_MAX);
    assert_int_equal(h->response_header_add(h, &req, "X", ""), FC_ENOMEM);
    fc_instance_destroy(&inst);
}

/* The header-only Cookie parser of the SDK. */
static void test_cookie_value(void **unused)
{
    const char *hdr = "a=1; fcsrv=\"q\"; sess = x y ;empty=; flag; fcsrv=second;A=upper";
    size_t n = strlen(hdr), len = 99;
    const char *v = fc_cookie_value(hdr, n, "a", &len);
    assert_non_null(v);
    assert_int_equal(len, 1);
    assert_memory_equal(v, "1", 1);
    v = fc_cookie_value(hdr, n, "fcsrv", &len); /* the first; quotes dropped */
    assert_int_equal(len, 1);
    assert_memory_equal(v, "q", 1);
    v = fc_cookie_value(hdr, n, "sess", &len);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "x y", 3);
    v = fc_cookie_value(hdr, n, "empty", &len);
    assert_non_null(v);
    assert_int_equal(len, 0);
    v = fc_cookie_value(hdr, n, "A", &len); /* names are case-sensitive */
    assert_memory_equal(v, "upper", 5);
    assert_null(fc_cookie_value(hdr, n, "flag", &len)); /* no '=': no value */
    assert_null(fc_cookie_value(hdr, n, "fcsr", &len));
    assert_null(fc_cookie_value(hdr, n, "b", &len));
    assert_null(fc_cookie_value(hdr, 3, "fcsrv", &len)); /* only the first len bytes */
    assert_null(fc_cookie_value(NULL, 0, "a", &len));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_values_read),
        T(test_defaults_when_absent),
        T(test_numeric_conversions),
        T(test_wrong_types),
        T(test_unknown_keys),
        T(test_unknown_and_wrong_type_together),
        T(test_config_error),
        T(test_group_size_limit),
        T(test_create_fails),
        T(test_getters_outside_create),
        T(test_log),
        T(test_hooks),
        T(test_now_ns),
        T(test_request_header),
        T(test_response_header_add),
        T(test_cookie_value),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
