/*
 * The harness checked against the demo backend alone, without fulcrum: when
 * these pass and a proxy test fails, the proxy is at fault, not the client
 * or the backend. They also pin down the demo backend behaviour that the
 * proxy tests build on.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

IT_TEST(backend_root)
{
    int port = it_backend_start(env, "alpha");
    struct it_response r;
    it_get(env, port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "x-backend"), "alpha");
    assert_string_equal(r.body, "alpha\n");
    it_response_free(&r);
}

IT_TEST(backend_bytes_framings)
{
    int port = it_backend_start(env, "a");
    struct it_response r;

    it_get(env, port, "test", "/bytes?n=300000", &r);
    assert_int_equal(r.status, 200);
    assert_false(r.chunked);
    assert_int_equal(r.body_len, 300000);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), r.body_len);
    it_response_free(&r);

    it_get(env, port, "test", "/bytes?n=300000&chunked=1", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_int_equal(r.body_len, 300000);
    assert_int_equal(it_pattern_mismatch(r.body, r.body_len), r.body_len);
    it_response_free(&r);

    it_get(env, port, "test", "/nolength?n=5000", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.close_delimited);
    assert_int_equal(r.body_len, 5000);
    it_response_free(&r);
}

IT_TEST(backend_sum_both_framings)
{
    int port = it_backend_start(env, "a");
    size_t len = 100003;
    char *body = malloc(len);
    it_pattern_fill(body, 11, len);

    struct it_conn *c = it_connect(env, port);
    it_send_sum(env, c, body, len);
    it_expect_sum(env, c, body, len);

    /* Same connection, chunked this time, in uneven pieces. */
    it_send_str(c, "POST /sum HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
    size_t off = 0, sizes[] = {1, 4095, 17, 65536, 29999};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && off < len; i++) {
        size_t n = sizes[i] < len - off ? sizes[i] : len - off;
        it_send_str(c, it_strf(env, "%zx\r\n", n));
        it_send(c, body + off, n);
        it_send_str(c, "\r\n");
        off += n;
    }
    it_send_str(c, "0\r\n\r\n");
    it_expect_sum(env, c, body, off);
    free(body);
}

IT_TEST(backend_pipelined_and_no_body)
{
    int port = it_backend_start(env, "a");
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, "HEAD /bytes?n=100 HTTP/1.1\r\nHost: test\r\n\r\n"
                   "GET /status/204 HTTP/1.1\r\nHost: test\r\n\r\n"
                   "GET /status/304 HTTP/1.1\r\nHost: test\r\n\r\n"
                   "GET /bytes?n=3 HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "HEAD", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "content-length"), "100");
    assert_int_equal(r.body_len, 0);
    it_response_free(&r);

    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    it_response_free(&r);

    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    it_response_free(&r);

    it_expect_pattern(c, 3);
    assert_int_equal(it_conn_buffered(c), 0);
    assert_false(it_conn_wait_closed(c, 100));
}

IT_TEST(backend_expect_continue)
{
    int port = it_backend_start(env, "a");
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
                   "Expect: 100-continue\r\n\r\n");
    assert_true(it_conn_wait_data(c, 2000));
    it_send_str(c, "hello");
    struct it_response r;
    it_expect_response(c, "POST", &r);
    assert_int_equal(r.interim, 1);
    assert_int_equal(r.interim_status, 100);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, it_sum_line(env, "hello", 5));
    it_response_free(&r);
}

IT_TEST(backend_close_and_drop)
{
    int port = it_backend_start(env, "a");
    struct it_conn *c = it_connect(env, port);
    it_send_str(c, "GET /close HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_true(it_conn_wait_closed(c, 2000));
    it_response_free(&r);

    c = it_connect(env, port);
    it_send_str(c, "GET /drop HTTP/1.1\r\nHost: test\r\n\r\n");
    int rc = it_recv_response(c, "GET", &r);
    assert_true(rc == -EPIPE || rc == -ECONNRESET);
}

IT_TEST(backend_slow_and_timeouts)
{
    int port = it_backend_start(env, "a");
    struct it_conn *c = it_connect(env, port);
    it_conn_set_timeout(c, 200);
    it_send_str(c, "GET /slow?ms=1000 HTTP/1.1\r\nHost: test\r\n\r\n");
    struct it_response r;
    int64_t t0 = it_now_ms();
    assert_int_equal(it_recv_response(c, "GET", &r), -ETIMEDOUT);
    assert_in_range(it_now_ms() - t0, 150, 900);

    it_conn_set_timeout(c, IT_IO_TIMEOUT_MS);
    it_expect_response(c, "GET", &r);
    assert_int_equal(r.status, 200);
    assert_in_range(it_now_ms() - t0, 900, 5000);
    it_response_free(&r);
}

/* The hop-by-hop test relies on /headers echoing every header it got. */
IT_TEST(backend_echoes_headers)
{
    int port = it_backend_start(env, "a");
    struct it_response r;
    it_fetch(env, port, "GET",
             "GET /headers HTTP/1.1\r\nHost: h.test\r\nConnection: keep-alive, X-Foo\r\n"
             "Keep-Alive: 5\r\nX-Foo: 1\r\nTE: trailers\r\nUpgrade: something\r\n\r\n",
             &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /headers HTTP/1.1\n"
                                "Host: h.test\n"
                                "Connection: keep-alive, X-Foo\n"
                                "Keep-Alive: 5\n"
                                "X-Foo: 1\n"
                                "TE: trailers\n"
                                "Upgrade: something\n");
    it_response_free(&r);
}

IT_TEST(free_and_dead_ports_refuse)
{
    int err = 0;
    assert_null(it_connect_raw(env, it_free_port(), &err));
    assert_int_equal(err, -ECONNREFUSED);
    int dead = it_dead_port(env);
    assert_null(it_connect_raw(env, dead, &err));
    assert_int_equal(err, -ECONNREFUSED);
    assert_int_not_equal(it_dead_port(env), dead);
}

IT_TEST(processes)
{
    const char *const argv[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    struct it_run_result res;
    it_run(env, argv, 5000, &res);
    assert_int_equal(res.exit_code, 3);
    assert_string_equal(res.out, "out\n");
    assert_string_equal(res.err, "err\n");

    int port = it_backend_start(env, "a");
    struct it_proc *p = it_backend_proc(env, "a");
    it_proc_signal(p, SIGTERM);
    int status = 0;
    assert_int_equal(it_proc_wait(p, 5000, &status), 0);
    assert_true(WIFEXITED(status) || WIFSIGNALED(status));

    /* Nothing answers on its port any more. */
    int err = 0;
    assert_null(it_connect_raw(env, port, &err));
    assert_int_equal(err, -ECONNREFUSED);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(backend_root),
    IT_CASE(backend_bytes_framings),
    IT_CASE(backend_sum_both_framings),
    IT_CASE(backend_pipelined_and_no_body),
    IT_CASE(backend_expect_continue),
    IT_CASE(backend_close_and_drop),
    IT_CASE(backend_slow_and_timeouts),
    IT_CASE(backend_echoes_headers),
    IT_CASE(free_and_dead_ports_refuse),
    IT_CASE(processes),
};

IT_MAIN(tests)
