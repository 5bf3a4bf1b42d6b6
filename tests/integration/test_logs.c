/*
 * Logs never hold up traffic: with the access log on a pipe that nobody
 * reads (a container runtime that stopped reading stdout), requests are
 * answered as usual, the lines that do not fit in the log's buffer are
 * dropped and counted, the error log says how many once the pipe moves
 * again, and SIGTERM stops the daemon in time.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Lines of about 170 bytes: 3,000 of them are several times what the pipe
 * (64 KiB), the log's buffer (64 KiB) and the workers' batches hold. */
#define REQUESTS 3000

/* A FIFO held open for reading (never read unless the test drains it). */
static int open_fifo(struct it_env *env, const char **path)
{
    *path = it_path(env, "stdout.fifo");
    if (mkfifo(*path, 0600) != 0)
        fail_msg("mkfifo %s: %s", *path, strerror(errno));
    int fd = open(*path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        fail_msg("open %s: %s", *path, strerror(errno));
    return fd;
}

static int admin_port;

static struct it_fulcrum *start_logging_to(struct it_env *env, const char *fifo)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    admin_port = it_free_port();
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", admin_port);
    cfg.access_log = "stdout";
    cfg.log_buffer_bytes = 65536;
    cfg.stdout_path = fifo;
    return it_fulcrum_start(env, &cfg);
}

/* REQUESTS requests on one keep-alive connection, each answered within the usual timeout. */
static void send_requests(struct it_env *env, struct it_fulcrum *f, int n)
{
    struct it_conn *c = it_connect(env, f->port);
    char path[128];
    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    const char *req = it_strf(env, "GET /%s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    for (int i = 0; i < n; i++) {
        it_send_str(c, req);
        struct it_response r;
        int rc = it_recv_response(c, "GET", &r);
        if (rc != 0)
            fail_msg("request %d of %d: no response (%s): a worker waits for the log", i + 1, n,
                    strerror(-rc));
        assert_int_equal(r.status, 200);
        it_response_free(&r);
    }
    it_conn_close(c);
}

/* Reads the FIFO until nothing came for quiet_ms; returns the lines, checking each is whole. */
static size_t drain_lines(int fd, int quiet_ms)
{
    size_t lines = 0;
    char buf[65536], partial[1024];
    size_t plen = 0;
    int64_t last = it_now_ms();
    while (it_now_ms() - last < quiet_ms) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            it_sleep_ms(5);
            continue;
        }
        last = it_now_ms();
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (plen < sizeof(partial) - 1)
                    partial[plen++] = buf[i];
                continue;
            }
            partial[plen] = '\0';
            /* 2026-12-02T10:00:00Z 127.0.0.1 "GET /ppp... HTTP/1.1" 200 2 127.0.0.1:PORT 0.1ms */
            if (strncmp(partial, "20", 2) != 0 || strstr(partial, " HTTP/1.1\" 200 ") == NULL ||
                strstr(partial, "ms") == NULL)
                fail_msg("a broken access log line: \"%s\"", partial);
            lines++;
            plen = 0;
        }
    }
    if (plen != 0)
        fail_msg("the access log ends in half a line");
    return lines;
}

IT_TEST(access_log_pipe_nobody_reads)
{
    const char *fifo;
    int fd = open_fifo(env, &fifo);
    struct it_fulcrum *f = start_logging_to(env, fifo);

    int64_t t0 = it_now_ms();
    send_requests(env, f, REQUESTS);
    fprintf(stderr, "%d requests answered in %lld ms with the log stuck\n", REQUESTS,
            (long long)(it_now_ms() - t0));

    /* The pipe moves again: what the buffer kept arrives, and the loss is told. */
    size_t written = drain_lines(fd, 500);
    assert_true(written > 0 && written < REQUESTS);
    const char *told = "access log: ";
    if (!it_fulcrum_wait_log(env, f, "lines dropped", 1, 5000))
        fail_msg("fulcrum did not say that it dropped access log lines");
    /* Every line was either written whole or counted as dropped, and the count told in a
     * line or two (when the log had caught up, which it may have done for a moment while
     * the lines came). */
    const char *err = it_proc_stderr(env, f->proc);
    unsigned long long dropped = 0;
    for (const char *at = err; (at = strstr(at, told)) != NULL; at++)
        dropped += strtoull(at + strlen(told), NULL, 10);
    assert_int_equal(dropped + written, REQUESTS);
    size_t notices = it_fulcrum_log_count(env, f, "lines dropped");
    assert_true(notices >= 1 && notices <= 3);

    /* The metrics count them too. */
    /* (the admin listener is on: see start_logging_to()) */
    {
        struct it_conn *a = it_connect(env, admin_port);
        it_send_str(a, "GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
        struct it_response r;
        it_expect_response(a, "GET", &r);
        assert_int_equal(r.status, 200);
        const char *want = it_strf(env, "fulcrum_log_dropped_lines_total{log=\"access\"} %llu\n",
                                   (unsigned long long)dropped);
        if (strstr(r.body, want) == NULL)
            fail_msg("no \"%s\" in /metrics", want);
        it_response_free(&r);
        it_conn_close(a);
    }

    /* And the log flows again. */
    send_requests(env, f, 10);
    assert_int_equal(drain_lines(fd, 500), 10);

    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 5000);
    close(fd);
}

IT_TEST(sigterm_with_the_log_stuck)
{
    const char *fifo;
    int fd = open_fifo(env, &fifo);
    struct it_fulcrum *f = start_logging_to(env, fifo);
    send_requests(env, f, REQUESTS);

    /* The writer is blocked on the full pipe: the stop gives it a second, then goes on. */
    int64_t t0 = it_now_ms();
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 5000);
    int64_t took = it_now_ms() - t0;
    fprintf(stderr, "stopped %lld ms after SIGTERM\n", (long long)took);
    assert_true(took < 3000);
    close(fd);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(access_log_pipe_nobody_reads),
    IT_CASE(sigterm_with_the_log_stuck),
};

IT_MAIN(tests)
