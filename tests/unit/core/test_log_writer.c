/*
 * The log writer (core/log_writer.c): lines put while a log's descriptor is
 * a pipe that nobody reads never wait; what does not fit in the buffer is
 * dropped and counted, whole lines only; the error log says so once the pipe
 * moves; a resize keeps the waiting lines; a stop gives up on a stuck
 * descriptor in time, and lines then go out directly again after a clean one.
 */
#include "log_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static int errors[2], access_[2]; /* pipes: [0] read, [1] write */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
    if (pipe(errors) != 0 || pipe(access_) != 0)
        return -1;
    fcntl(errors[0], F_SETFL, O_NONBLOCK);
    fcntl(access_[0], F_SETFL, O_NONBLOCK);
    fc_log_writer_set_fd(FC_LOG_ERRORS, errors[1]);
    fc_log_writer_set_fd(FC_LOG_ACCESS, access_[1]);
    return 0;
}

static int teardown(void **state)
{
    fc_log_writer_stop(100);
    for (int i = 0; i < 2; i++) {
        close(errors[i]);
        close(access_[i]);
    }
    return 0;
}

/* Reads fd until nothing came for quiet_ms; appends to out (NUL-terminated, truncated). */
static size_t drain(int fd, char *out, size_t cap, int quiet_ms)
{
    size_t len = 0;
    char buf[65536];
    int64_t last = now_ms();
    while (now_ms() - last < quiet_ms) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
            continue;
        }
        last = now_ms();
        size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(out + len, buf, take);
        len += take;
    }
    out[len] = '\0';
    return len;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

#define LINES 20000 /* of 100 bytes: 2 MB, far more than the pipe and a 64 KiB buffer */

static void test_a_stuck_pipe_never_blocks(void **state)
{
    assert_int_equal(fc_log_writer_start(FC_LOG_BUFFER_MIN), 0);
    char line[101];
    int64_t t0 = now_ms();
    for (int i = 0; i < LINES; i++) {
        snprintf(line, sizeof(line), "%-99d\n", i); /* 99 bytes and the newline */
        fc_log_writer_put(FC_LOG_ACCESS, line, 100);
    }
    assert_true(now_ms() - t0 < 2000); /* it would wait forever on the pipe */
    uint64_t dropped = fc_log_writer_dropped(FC_LOG_ACCESS);
    assert_true(dropped > 0 && dropped < LINES);

    static char text[4 * 1024 * 1024];
    size_t len = drain(access_[0], text, sizeof(text), 300);
    assert_int_equal(len % 100, 0); /* whole lines only */
    for (size_t off = 0; off < len; off += 100)
        assert_int_equal(text[off + 99], '\n');
    assert_int_equal(len / 100 + fc_log_writer_dropped(FC_LOG_ACCESS), LINES);
    /* The first lines were kept (nothing is written over), in order. */
    assert_int_equal(strtol(text, NULL, 10), 0);
    assert_int_equal(strtol(text + 100, NULL, 10), 1);

    /* The error log tells of the loss, with the number, in a line or two (when the log
     * had caught up: the writer may have caught up for a moment while lines came). */
    static char notice[4096];
    drain(errors[0], notice, sizeof(notice), 100);
    size_t notices = count(notice, "access log: ");
    assert_true(notices >= 1 && notices <= 3);
    unsigned long long told = 0;
    for (const char *p = notice; (p = strstr(p, "access log: ")) != NULL; p++)
        told += strtoull(p + strlen("access log: "), NULL, 10);
    assert_int_equal(told, fc_log_writer_dropped(FC_LOG_ACCESS));
    assert_non_null(strstr(notice, " lines dropped ("));
    assert_non_null(strstr(notice, "[warn] "));
}

static void test_lines_that_fit_are_all_written(void **state)
{
    assert_int_equal(fc_log_writer_start(FC_LOG_BUFFER_MIN), 0);
    uint64_t before = fc_log_writer_dropped(FC_LOG_ERRORS);
    fc_log_writer_put(FC_LOG_ERRORS, "one\ntwo\n", 8);
    fc_log_writer_put(FC_LOG_ERRORS, "three\n", 6);
    char text[64];
    drain(errors[0], text, sizeof(text), 100);
    assert_string_equal(text, "one\ntwo\nthree\n");
    assert_int_equal(fc_log_writer_dropped(FC_LOG_ERRORS), before);
}

static void test_resize_keeps_waiting_lines(void **state)
{
    assert_int_equal(fc_log_writer_start(FC_LOG_BUFFER_MIN), 0);
    uint64_t start = fc_log_writer_dropped(FC_LOG_ACCESS); /* counted since the first start */
    /* Fill the pipe, so that the next lines wait in the buffer. */
    char line[101];
    memset(line, 'x', 99);
    line[99] = '\n';
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 1000; i++)
            fc_log_writer_put(FC_LOG_ACCESS, line, 100);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    uint64_t dropped = fc_log_writer_dropped(FC_LOG_ACCESS);
    fc_log_writer_resize(FC_LOG_ACCESS, 2 * FC_LOG_BUFFER_MIN);
    for (int i = 0; i < 300; i++)
        fc_log_writer_put(FC_LOG_ACCESS, line, 100); /* room for these now */
    uint64_t dropped_after = fc_log_writer_dropped(FC_LOG_ACCESS);
    static char text[1024 * 1024];
    size_t len = drain(access_[0], text, sizeof(text), 300);
    assert_int_equal(len % 100, 0);
    assert_int_equal(len / 100 + dropped_after - start, 2300); /* none lost in the resize */
    assert_int_equal(dropped_after, dropped);          /* the bigger buffer took them all */
}

static void test_stop_gives_up_on_a_stuck_descriptor(void **state)
{
    assert_int_equal(fc_log_writer_start(FC_LOG_BUFFER_MIN), 0);
    char line[101];
    memset(line, 'y', 99);
    line[99] = '\n';
    /* Twice, so that the thread has filled the pipe and blocks on it, with a full buffer. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2000; i++)
            fc_log_writer_put(FC_LOG_ACCESS, line, 100);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    int64_t t0 = now_ms();
    fc_log_writer_stop(200);
    int64_t took = now_ms() - t0;
    if (took < 150 || took >= 1500)
        fail_msg("the stop took %lld ms", (long long)took);
    /* Stopped on a stuck descriptor: lines are dropped, not written (which could block). */
    uint64_t before = fc_log_writer_dropped(FC_LOG_ACCESS);
    fc_log_writer_put(FC_LOG_ACCESS, line, 100);
    assert_int_equal(fc_log_writer_dropped(FC_LOG_ACCESS), before + 1);
}

static void test_after_a_clean_stop_lines_go_out_directly(void **state)
{
    assert_int_equal(fc_log_writer_start(FC_LOG_BUFFER_MIN), 0);
    fc_log_writer_put(FC_LOG_ERRORS, "before\n", 7);
    fc_log_writer_stop(1000);
    fc_log_writer_put(FC_LOG_ERRORS, "after\n", 6); /* written at once, by this thread */
    char text[64];
    ssize_t n = read(errors[0], text, sizeof(text) - 1);
    assert_true(n > 0);
    text[n] = '\0';
    assert_string_equal(text, "before\nafter\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_stuck_pipe_never_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_that_fit_are_all_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resize_keeps_waiting_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_gives_up_on_a_stuck_descriptor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_after_a_clean_stop_lines_go_out_directly, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
