/*
 * core/access_log.c: the line format, the per-worker buffer written out on
 * flush (and when it fills), the log turned off, and a reopen (what SIGUSR1
 * and a reload do) sending the next lines to the file now at the path. No
 * threads, no loop: a worker struct on the stack and a file in a temporary
 * folder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>

#include "access_log.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static char path[128];
static struct fc_config cfg;
static struct fc_worker w;

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/fc-access-log-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/access.log", dir);
    memset(&cfg, 0, sizeof(cfg));
    cfg.path = "test.conf";
    cfg.access_log = FC_ACCESS_LOG_FILE;
    cfg.access_log_path = path;
    memset(&w, 0, sizeof(w));
    assert_int_equal(fc_access_log_init(), 0);
    assert_int_equal(fc_access_log_worker_init(&w), 0);
    fc_access_log_apply(&cfg);
    return 0;
}

static int teardown(void **state)
{
    fc_access_log_worker_free(&w);
    fc_access_log_shutdown();
    char old[160];
    snprintf(old, sizeof(old), "%s.1", path);
    unlink(old);
    unlink(path);
    rmdir(dir);
    return 0;
}

/* The file at `p`, NUL-terminated, in a static buffer. */
static const char *contents(const char *p)
{
    static char buf[1 << 20];
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void write_line(const char *request_line, int status, const char *backend)
{
    struct fc_access_entry e = {
        .client_ip = "192.0.2.7",
        .request_line = request_line,
        .status = status,
        .bytes_sent = 1234,
        .backend = backend,
        .started_ns = uv_hrtime(),
    };
    fc_access_log_write(&w, &e);
}

static void test_line_format(void **state)
{
    write_line("GET /a?b=c HTTP/1.1", 200, "127.0.0.1:9001");
    assert_string_equal(contents(path), ""); /* buffered until the flush */
    fc_access_log_flush(&w);
    const char *line = contents(path);
    /* 2026-12-02T10:00:00Z 192.0.2.7 "GET /a?b=c HTTP/1.1" 200 1234 127.0.0.1:9001 0.001ms */
    int y, mo, d, h, mi, s;
    char rest[256];
    assert_int_equal(
        sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2dZ %255[^\n]", &y, &mo, &d, &h, &mi, &s, rest), 7);
    assert_true(y >= 2026 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31);
    const char *want = "192.0.2.7 \"GET /a?b=c HTTP/1.1\" 200 1234 127.0.0.1:9001 ";
    assert_memory_equal(rest, want, strlen(want));
    const char *ms = rest + strlen(want);
    double v;
    char unit[8];
    assert_int_equal(sscanf(ms, "%lf%7s", &v, unit), 2);
    assert_string_equal(unit, "ms");
    assert_true(v >= 0 && v < 1000);
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1); /* one line, ended */
}

static void test_unknowns_are_dashes(void **state)
{
    /* A head that never completed (a 408, a 400) and no backend. */
    write_line("", 408, NULL);
    fc_access_log_flush(&w);
    assert_non_null(strstr(contents(path), " 192.0.2.7 \"-\" 408 1234 - "));
}

static void test_off_writes_nothing(void **state)
{
    cfg.access_log = FC_ACCESS_LOG_OFF;
    fc_access_log_apply(&cfg);
    assert_false(fc_access_log_on());
    write_line("GET / HTTP/1.1", 200, "b");
    fc_access_log_flush(&w);
    assert_string_equal(contents(path), "");
}

static void test_full_buffer_is_written(void **state)
{
    /* 64 kB of buffer: 1,000 lines of ~90 bytes fill it and go out without a flush. */
    for (int i = 0; i < 1000; i++)
        write_line("GET /a-request-line-of-some-length HTTP/1.1", 200, "127.0.0.1:9001");
    const char *text = contents(path);
    size_t lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_true(lines > 0 && lines < 1000);
    fc_access_log_flush(&w);
    lines = 0;
    for (const char *p = contents(path); (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 1000); /* none lost, none twice */
}

static void test_reopen_follows_the_path(void **state)
{
    write_line("GET /before HTTP/1.1", 200, "b");
    fc_access_log_flush(&w);
    /* logrotate moves the file away, then fulcrum gets SIGUSR1 and reopens. */
    char old[160];
    snprintf(old, sizeof(old), "%s.1", path);
    assert_int_equal(rename(path, old), 0);
    fc_access_log_apply(&cfg);
    write_line("GET /after HTTP/1.1", 200, "b");
    fc_access_log_flush(&w);
    assert_non_null(strstr(contents(old), "/before"));
    assert_null(strstr(contents(old), "/after"));
    assert_non_null(strstr(contents(path), "/after"));
    assert_null(strstr(contents(path), "/before"));
}

static void write_timed(const char *request_line, const char *backend, const char *pool)
{
    struct fc_access_entry e = {
        .client_ip = "192.0.2.7",
        .request_line = request_line,
        .status = 200,
        .bytes_sent = 14,
        .backend = backend,
        .pool = pool,
        .generation = 3,
        .started_ns = uv_hrtime() - 2000000, /* 2 ms ago */
        .connect_ns = 250000,                /* 0.25 ms */
        .head_ns = 1500000,                  /* 1.5 ms */
    };
    fc_access_log_write(&w, &e);
}

static void test_text_has_pool_generation_and_timings(void **state)
{
    write_timed("GET /t HTTP/1.1", "127.0.0.1:9001", "web");
    fc_access_log_flush(&w);
    const char *line = contents(path);
    assert_non_null(strstr(line, "\"GET /t HTTP/1.1\" 200 14 127.0.0.1:9001 "));
    assert_non_null(strstr(line, "ms pool=web gen=3 connect=0.250ms head=1.500ms\n"));
    /* A reply of the proxy's own: no backend, no timings. */
    write_line("GET /x HTTP/1.1", 503, NULL);
    fc_access_log_flush(&w);
    assert_non_null(strstr(contents(path), "pool=- gen=0 connect=- head=-\n"));
}

static void test_json_lines(void **state)
{
    cfg.access_log_json = 1;
    fc_access_log_apply(&cfg);
    write_timed("POST /a\"b\\c?d=1 HTTP/1.0", "127.0.0.1:9001", "web");
    write_line("", 408, NULL);
    fc_access_log_flush(&w);
    char *text = strdup(contents(path));
    char *second = strchr(text, '\n');
    assert_non_null(second);
    *second++ = '\0';
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", err.text, text);
    assert_string_equal(json_string_value(json_object_get(j, "client")), "192.0.2.7");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(j, "target")), "/a\"b\\c?d=1");
    assert_string_equal(json_string_value(json_object_get(j, "version")), "1.0");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 14);
    assert_string_equal(json_string_value(json_object_get(j, "pool")), "web");
    assert_string_equal(json_string_value(json_object_get(j, "backend")), "127.0.0.1:9001");
    assert_int_equal(json_integer_value(json_object_get(j, "generation")), 3);
    assert_true(json_real_value(json_object_get(j, "connect_ms")) == 0.25);
    assert_true(json_real_value(json_object_get(j, "head_ms")) == 1.5);
    assert_true(json_real_value(json_object_get(j, "total_ms")) >= 2.0);
    int y, mo, d, h, mi, sec;
    assert_int_equal(sscanf(json_string_value(json_object_get(j, "time")),
                            "%4d-%2d-%2dT%2d:%2d:%2dZ", &y, &mo, &d, &h, &mi, &sec),
                     6);
    json_decref(j);
    /* The head never completed: nulls, not made-up values. */
    *strchr(second, '\n') = '\0';
    j = json_loads(second, 0, &err);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", err.text, second);
    assert_true(json_is_null(json_object_get(j, "method")));
    assert_true(json_is_null(json_object_get(j, "backend")));
    assert_true(json_is_null(json_object_get(j, "pool")));
    assert_true(json_is_null(json_object_get(j, "head_ms")));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 408);
    json_decref(j);
    free(text);
    cfg.access_log_json = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknowns_are_dashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_has_pool_generation_and_timings, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_buffer_is_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_follows_the_path, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
