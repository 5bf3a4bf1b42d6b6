/*
 * The runtime overlay (core/overlay.c): the state file's JSON read back as
 * it was written, every kind of damage refused with a reason, and the file
 * keeping the last word on what it names when the overlay is fitted to it.
 */
#include "config.h"
#include "log.h"
#include "overlay.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void quiet(void *arg, enum fc_log_level level, const char *line)
{
    (void)arg;
    (void)level;
    (void)line;
}

static struct fc_overlay_entry *put(struct fc_overlay *o, const char *pool, const char *address)
{
    struct sockaddr_storage addr;
    socklen_t len;
    assert_int_equal(fc_config_parse_ip_address(address, &addr, &len, NULL), 0);
    struct fc_overlay_entry *e = fc_overlay_put(o, pool, address, &addr, len);
    assert_non_null(e);
    return e;
}

static void test_state_file_round_trip(void **state)
{
    (void)state;
    struct fc_overlay o = {0};
    struct fc_overlay_entry *e = put(&o, "web", "127.0.0.1:9004");
    e->runtime = 1;
    e->weight = 7;
    e->admin = FC_BACKEND_DRAIN;
    e = put(&o, "web", "[::1]:9001");
    e->admin = FC_BACKEND_MAINT;
    e = put(&o, "api", "10.0.0.1:80");
    e->removed = 1;
    char *text = fc_overlay_to_json(&o);
    assert_non_null(text);

    struct fc_overlay back;
    char err[256] = "";
    assert_int_equal(fc_overlay_from_json(text, strlen(text), &back, err, sizeof(err)), 0);
    assert_int_equal(back.n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        const struct fc_overlay_entry *a = &o.entries[i], *b = &back.entries[i];
        assert_string_equal(a->pool, b->pool);
        assert_string_equal(a->address, b->address);
        assert_int_equal(a->runtime, b->runtime);
        assert_int_equal(a->removed, b->removed);
        assert_int_equal(a->admin, b->admin);
        assert_int_equal(a->weight, b->weight);
        assert_int_equal(b->unresolved, 0);
    }
    free(text);
    fc_overlay_free(&back);
    fc_overlay_free(&o);
}

static void test_damage_is_refused(void **state)
{
    (void)state;
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"{\"version\": 1, \"backends\": [", "line 1"},
        {"[]", "object"},
        {"{\"version\": 2, \"backends\": []}", "version 2"},
        {"{\"version\": 1}", "backends"},
        {"{\"version\": 1, \"backends\": {}}", "array"},
        {"{\"version\": 1, \"backends\": [], \"x\": 1}", "x"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:1\"}]}",
         "source"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:1\", "
         "\"source\": \"elsewhere\"}]}",
         "source"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:1\", "
         "\"source\": \"runtime\", \"weight\": 1, \"state\": \"gone\"}]}",
         "state"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:1\", "
         "\"source\": \"runtime\", \"weight\": 0}]}",
         "weight"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:1\", "
         "\"source\": \"config\", \"weight\": 1001}]}",
         "weight"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"localhost:1\", "
         "\"source\": \"runtime\", \"weight\": 1}]}",
         "IP address"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1\", "
         "\"source\": \"runtime\", \"weight\": 1}]}",
         "port"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:1\", "
         "\"source\": \"runtime\", \"weight\": 1}, {\"pool\": \"web\", \"address\": "
         "\"127.0.0.1:1\", \"source\": \"config\"}]}",
         "twice"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": \"127.0.0.1:1\", "
         "\"source\": \"config\", \"extra\": true}]}",
         "extra"},
        /* What fulcrum never writes: a removed backend with a state (found by the fuzzer). */
        {"{\"version\": 1, \"backends\": [{\"pool\": \"api\", \"address\": \"[::1]:80\", "
         "\"source\": \"config\", \"removed\": true, \"state\": \"maint\"}]}",
         "removed"},
        {"{\"version\": 1, \"backends\": [{\"pool\": \"api\", \"address\": \"[::1]:80\", "
         "\"source\": \"config\", \"removed\": true, \"weight\": 3}]}",
         "removed"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fc_overlay o = {.n = 99};
        char err[256] = "";
        int rc = fc_overlay_from_json(cases[i].text, strlen(cases[i].text), &o, err, sizeof(err));
        if (rc != FC_EINVAL || strstr(err, cases[i].reason) == NULL)
            fail_msg("case %zu (%s): rc %d, \"%s\": expected a refusal naming \"%s\"", i,
                     cases[i].text, rc, err, cases[i].reason);
        assert_int_equal(o.n, 0); /* nothing half-read is kept */
    }
}

static struct fc_config *load(const char *text)
{
    char path[] = "/tmp/fulcrum-overlay-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct fc_config *cfg;
    int rc = fc_config_load(path, &cfg);
    unlink(path);
    assert_int_equal(rc, 0);
    return cfg;
}

static void test_the_file_has_the_last_word(void **state)
{
    (void)state;
    fc_log_set_sink(quiet, NULL);
    struct fc_config *cfg =
        load("listeners = ({ address = \"127.0.0.1:1\"; pool = \"web\"; });\n"
             "pools = ({ name = \"web\"; strategy = { plugin = \"round_robin\"; };\n"
             "  backends = ({ address = \"127.0.0.1:9001\"; }, { address = \"127.0.0.1:9002\"; },\n"
             "              { address = \"localhost:9009\"; }); });\n");
    const char *text =
        "{\"version\": 1, \"backends\": ["
        "{\"pool\": \"web\", \"address\": \"127.0.0.1:9003\", \"source\": \"runtime\", "
        "\"weight\": 2},"
        "{\"pool\": \"web\", \"address\": \"127.0.0.1:9002\", \"source\": \"runtime\", "
        "\"weight\": 1},"
        "{\"pool\": \"web\", \"address\": \"127.0.0.1:9001\", \"source\": \"config\", "
        "\"state\": \"drain\"},"
        "{\"pool\": \"web\", \"address\": \"127.0.0.1:9005\", \"source\": \"config\", "
        "\"state\": \"maint\"},"
        "{\"pool\": \"web\", \"address\": \"localhost:9009\", \"source\": \"config\", "
        "\"removed\": true},"
        "{\"pool\": \"web\", \"address\": \"nowhere:9010\", \"source\": \"config\", "
        "\"removed\": true},"
        "{\"pool\": \"gone\", \"address\": \"127.0.0.1:9001\", \"source\": \"config\", "
        "\"state\": \"drain\"}]}";
    struct fc_overlay o;
    char err[256] = "";
    assert_int_equal(fc_overlay_from_json(text, strlen(text), &o, err, sizeof(err)), 0);
    assert_int_equal(o.n, 7);
    /* Names are not resolved when the state file is read: the file's backend of the name is. */
    assert_int_equal(o.entries[4].unresolved, 1);

    assert_int_equal(fc_overlay_reconcile(&o, cfg, 0), 4);
    assert_int_equal(o.n, 3);
    /* Kept: the runtime's own, a drain of a file backend, a removal of one known by name. */
    assert_string_equal(o.entries[0].address, "127.0.0.1:9003");
    assert_true(o.entries[0].runtime);
    assert_string_equal(o.entries[1].address, "127.0.0.1:9001");
    assert_int_equal(o.entries[1].admin, FC_BACKEND_DRAIN);
    assert_string_equal(o.entries[2].address, "localhost:9009");
    assert_int_equal(o.entries[2].unresolved, 0);
    assert_true(o.entries[2].removed);
    /* Found again by address now that it is resolved. */
    assert_ptr_equal(fc_overlay_find(&o, "web", &cfg->pools[0].backends[2].addr), &o.entries[2]);
    fc_overlay_free(&o);

    /* A weight the file now has as the change set it: the change is needless and goes. */
    struct fc_overlay w = {0};
    struct fc_overlay_entry *e = put(&w, "web", "127.0.0.1:9002");
    e->weight = 1; /* the file's weight for 9002 */
    e = put(&w, "web", "127.0.0.1:9001");
    e->weight = 1;
    e->admin = FC_BACKEND_DRAIN; /* still drained: kept, with the file's weight as its own */
    assert_int_equal(fc_overlay_reconcile(&w, cfg, 1), 1);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.entries[0].address, "127.0.0.1:9001");
    assert_int_equal(w.entries[0].weight, 0);
    fc_overlay_free(&w);
    fc_config_free(cfg);
}

/*
 * A change to a backend that DNS gives: kept in the state file as such,
 * kept by a file whose pool still discovers backends, dropped by one whose
 * pool no longer does, or that names the address itself.
 */
static void test_dns_backends_keep_their_changes(void **state)
{
    (void)state;
    fc_log_set_sink(quiet, NULL);
    const char *text = "{\"version\": 1, \"backends\": ["
                       "{\"pool\": \"web\", \"address\": \"127.0.0.1:9101\", \"source\": \"dns\", "
                       "\"state\": \"drain\"},"
                       "{\"pool\": \"web\", \"address\": \"127.0.0.1:9001\", \"source\": \"dns\", "
                       "\"state\": \"maint\", \"weight\": 3}]}";
    struct fc_overlay o;
    char err[256] = "";
    assert_int_equal(fc_overlay_from_json(text, strlen(text), &o, err, sizeof(err)), 0);
    assert_int_equal(o.n, 2);
    assert_true(o.entries[0].dns);
    assert_false(o.entries[0].runtime);
    assert_int_equal(o.entries[0].admin, FC_BACKEND_DRAIN);
    char *again = fc_overlay_to_json(&o);
    assert_non_null(again);
    assert_non_null(strstr(again, "\"source\": \"dns\""));
    free(again);

    /* The pool discovers; 9001 is also the file's own: that one is the file's again. */
    struct fc_config *cfg =
        load("listeners = ({ address = \"127.0.0.1:1\"; pool = \"web\"; });\n"
             "pools = ({ name = \"web\"; strategy = { plugin = \"round_robin\"; };\n"
             "  backends = ({ address = \"127.0.0.1:9001\"; },\n"
             "              { address = \"srv:_http._tcp.web.test\"; }); });\n");
    struct fc_overlay kept;
    assert_int_equal(fc_overlay_copy(&o, &kept), 0);
    assert_int_equal(fc_overlay_reconcile(&kept, cfg, 1), 1);
    assert_int_equal(kept.n, 1);
    assert_string_equal(kept.entries[0].address, "127.0.0.1:9101");
    assert_true(kept.entries[0].dns);
    fc_overlay_free(&kept);
    fc_config_free(cfg);

    /* The pool no longer discovers: the change goes. */
    cfg = load("listeners = ({ address = \"127.0.0.1:1\"; pool = \"web\"; });\n"
               "pools = ({ name = \"web\"; strategy = { plugin = \"round_robin\"; };\n"
               "  backends = ({ address = \"127.0.0.1:9002\"; }); });\n");
    assert_int_equal(fc_overlay_reconcile(&o, cfg, 1), 2);
    assert_int_equal(o.n, 0);
    fc_overlay_free(&o);
    fc_config_free(cfg);

    /* DNS gives no removals. */
    const char *bad = "{\"version\": 1, \"backends\": [{\"pool\": \"web\", \"address\": "
                      "\"127.0.0.1:9101\", \"source\": \"dns\", \"removed\": true}]}";
    assert_int_equal(fc_overlay_from_json(bad, strlen(bad), &o, err, sizeof(err)), FC_EINVAL);
    assert_non_null(strstr(err, "a backend from DNS is not removed"));
}

static void test_tidy_drops_what_changes_nothing(void **state)
{
    (void)state;
    struct fc_overlay o = {0};
    struct fc_overlay_entry *e = put(&o, "web", "127.0.0.1:9001");
    e->admin = FC_BACKEND_DRAIN;
    fc_overlay_tidy(&o, e, 1);
    assert_int_equal(o.n, 1); /* drained: a change */
    e->admin = FC_BACKEND_READY;
    e->weight = 3;
    fc_overlay_tidy(&o, e, 1);
    assert_int_equal(o.n, 1); /* another weight: a change */
    e->weight = 1;
    fc_overlay_tidy(&o, e, 1);
    assert_int_equal(o.n, 0); /* the file's weight, ready: the file's backend as it is */
    e = put(&o, "web", "127.0.0.1:9004");
    e->runtime = 1;
    e->weight = 1;
    fc_overlay_tidy(&o, e, 1);
    assert_int_equal(o.n, 1); /* the runtime's own backend is never tidied away */
    fc_overlay_free(&o);
}

static void test_names_of_states(void **state)
{
    (void)state;
    for (int s = FC_BACKEND_READY; s <= FC_BACKEND_MAINT; s++)
        assert_int_equal(fc_backend_admin_parse(fc_backend_admin_name(s)), s);
    assert_int_equal(fc_backend_admin_parse("up"), -1);
    assert_int_equal(fc_backend_admin_parse(""), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_file_round_trip),
        cmocka_unit_test(test_damage_is_refused),
        cmocka_unit_test(test_the_file_has_the_last_word),
        cmocka_unit_test(test_dns_backends_keep_their_changes),
        cmocka_unit_test(test_tidy_drops_what_changes_nothing),
        cmocka_unit_test(test_names_of_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
