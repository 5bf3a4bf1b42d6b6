/*
 * Tests of plugins/health/http.c, loaded through the real loader and host,
 * probing small HTTP servers that run on the test's own loop on 127.0.0.1:
 * they answer a chosen status, answer raw bytes, never answer, or close at
 * once, and record the request they got. A bound port nobody listens on
 * stands for a backend that is down.
 */
#include "probe_harness.h"

#include <stdlib.h>

#define HTTP_PLUGIN FC_PLUGIN_BUILD_DIR "/http.so"

enum server_mode {
    ANSWER_STATUS, /* "HTTP/1.1 <status> ..." once the request head is in, then close */
    ANSWER_RAW,    /* `raw` once the request head is in, then close */
    NEVER_ANSWER,  /* read the request, then keep quiet and keep the connection open */
    CLOSE_AT_ONCE, /* close each connection as soon as it is accepted */
};

struct server;

struct conn {
    struct server *srv;
    int in_use;
    uv_tcp_t tcp;
    uv_write_t write;
    char buf[2048];
    size_t len;
    char reply[1024];
};

struct server {
    uv_tcp_t listener;
    uint16_t port;
    enum server_mode mode;
    int status;
    const char *raw;
    int accepted;
    char request[2048]; /* the last complete request head received */
    int n_requests;
    struct conn conns[8];
};

static struct server servers[2];

static int test_owns(const uv_handle_t *h)
{
    const char *p = (const char *)h;
    return p >= (const char *)servers && p < (const char *)(servers + 2);
}

static void on_conn_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->in_use = 0;
}

static void conn_close(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void on_reply_written(uv_write_t *req, int status)
{
    conn_close(req->data);
}

static void on_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    size_t room = sizeof(c->buf) - 1 - c->len;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)room);
}

static void reply(struct conn *c, const char *text)
{
    snprintf(c->reply, sizeof(c->reply), "%s", text);
    uv_buf_t buf = uv_buf_init(c->reply, (unsigned)strlen(c->reply));
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_reply_written) < 0)
        conn_close(c);
}

static void on_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct server *srv = c->srv;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    size_t before = c->len;
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL || (size_t)(end - c->buf) + 4 <= before)
        return; /* head not complete yet, or already handled */
    end[4] = '\0';
    snprintf(srv->request, sizeof(srv->request), "%s", c->buf);
    srv->n_requests++;

    char text[256];
    switch (srv->mode) {
    case ANSWER_STATUS:
        snprintf(text, sizeof(text),
                 "HTTP/1.1 %d Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
                 srv->status);
        reply(c, text);
        break;
    case ANSWER_RAW:
        reply(c, srv->raw);
        break;
    default:
        break;
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *srv = listener->data;
    assert_int_equal(status, 0);
    struct conn *c = NULL;
    for (size_t i = 0; i < sizeof(srv->conns) / sizeof(srv->conns[0]); i++)
        if (!srv->conns[i].in_use) {
            c = &srv->conns[i];
            break;
        }
    assert_non_null(c);
    memset(c, 0, sizeof(*c));
    c->srv = srv;
    c->in_use = 1;
    uv_tcp_init(listener->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&c->tcp), 0);
    srv->accepted++;
    if (srv->mode == CLOSE_AT_ONCE)
        conn_close(c);
    else
        uv_read_start((uv_stream_t *)&c->tcp, on_conn_alloc, on_conn_read);
}

/* Starts server k on a kernel-chosen port and points backend k at it. */
static struct server *start_server(uint32_t k, enum server_mode mode, int status)
{
    struct server *srv = &servers[k];
    memset(srv, 0, sizeof(*srv));
    srv->mode = mode;
    srv->status = status;
    assert_int_equal(uv_tcp_init(&H.loop.uv, &srv->listener), 0);
    srv->listener.data = srv;
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", 0, &sin);
    assert_int_equal(uv_tcp_bind(&srv->listener, (struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 16, on_connection), 0);
    int namelen = sizeof(sin);
    assert_int_equal(uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&sin, &namelen), 0);
    srv->port = ntohs(sin.sin_port);
    set_backend(k, srv->port);
    return srv;
}

static void close_servers(void)
{
    for (int k = 0; k < 2; k++) {
        struct server *srv = &servers[k];
        if (srv->listener.loop == NULL)
            continue;
        uv_close((uv_handle_t *)&srv->listener, NULL);
        for (size_t i = 0; i < sizeof(srv->conns) / sizeof(srv->conns[0]); i++)
            if (srv->conns[i].in_use)
                conn_close(&srv->conns[i]);
    }
}

static int setup(void **unused)
{
    memset(servers, 0, sizeof(servers));
    if (harness_setup(HTTP_PLUGIN, 2) < 0)
        return -1;
    H.test_owns = test_owns;
    return 0;
}

static int teardown(void **unused)
{
    return harness_teardown(close_servers);
}

/* ------------------------------------------------------------------------ */

static void test_descriptor(void **unused)
{
    assert_string_equal(H.plugin->desc->name, "http");
    assert_int_equal(H.plugin->desc->kind, FC_PLUGIN_HEALTH);
}

static void test_200_passes(void **unused)
{
    start_server(0, ANSWER_STATUS, 200);
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_true(r->ok);
    assert_string_equal(r->reason, "HTTP 200");
}

static void test_503_fails(void **unused)
{
    start_server(0, ANSWER_STATUS, 503);
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_false(r->ok);
    assert_string_equal(r->reason, "HTTP 503");
}

static void test_default_expect_range(void **unused)
{
    /* "200-399" by default: a redirect passes, 199 and 400 do not. */
    struct server *srv = start_server(0, ANSWER_STATUS, 301);
    assert_int_equal(create_instance(""), 0);
    assert_true(probe_one(0, 1000)->ok);
    srv->status = 399;
    assert_true(probe_one(0, 1000)->ok);
    srv->status = 400;
    assert_false(probe_one(0, 1000)->ok);
    srv->status = 199;
    assert_false(probe_one(0, 1000)->ok);
}

static void test_expect_list(void **unused)
{
    struct server *srv = start_server(0, ANSWER_STATUS, 204);
    assert_int_equal(create_instance("    expect = \"200,204\";"), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_true(r->ok);
    assert_string_equal(r->reason, "HTTP 204");

    srv->status = 301;
    r = probe_one(0, 1000);
    assert_false(r->ok);
    assert_string_equal(r->reason, "HTTP 301");

    srv->status = 200;
    assert_true(probe_one(0, 1000)->ok);
    assert_int_equal(srv->n_requests, 3);
}

static void test_expect_single_and_mixed(void **unused)
{
    struct server *srv = start_server(0, ANSWER_STATUS, 200);
    assert_int_equal(create_instance("    expect = \" 200 , 300 - 302,418\";"), 0);
    static const struct {
        int status, ok;
    } cases[] = {{200, 1}, {201, 0}, {299, 0}, {300, 1}, {302, 1}, {303, 0}, {418, 1}, {500, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        srv->status = cases[i].status;
        struct probe_result *r = probe_one(0, 1000);
        if (r->ok != cases[i].ok)
            fail_msg("status %d: ok %d, expected %d", cases[i].status, r->ok, cases[i].ok);
    }
}

static void test_request_sent_default(void **unused)
{
    struct server *srv = start_server(0, ANSWER_STATUS, 200);
    assert_int_equal(create_instance(""), 0);
    assert_true(probe_one(0, 1000)->ok);
    char expected[256];
    snprintf(expected, sizeof(expected),
             "GET / HTTP/1.1\r\n"
             "Host: 127.0.0.1:%u\r\n"
             "Connection: close\r\n"
             "User-Agent: fulcrum-health\r\n"
             "\r\n",
             (unsigned)srv->port);
    assert_string_equal(srv->request, expected);
}

static void test_request_sent_configured(void **unused)
{
    struct server *srv = start_server(0, ANSWER_STATUS, 200);
    /* The core's own keys sit in the same group and are not reported as unknown. */
    assert_int_equal(
        create_instance("    path = \"/hc?full=1\";\n"
                        "    host = \"api.example.com\";\n"
                        "    interval_ms = 1000; timeout_ms = 500; rise = 2; fall = 3;\n"
                        "    initial = \"down\";"),
        0);
    assert_true(probe_one(0, 1000)->ok);
    assert_string_equal(srv->request, "GET /hc?full=1 HTTP/1.1\r\n"
                                      "Host: api.example.com\r\n"
                                      "Connection: close\r\n"
                                      "User-Agent: fulcrum-health\r\n"
                                      "\r\n");
    assert_int_equal(n_log_lines, 0);
}

static void test_never_answers_times_out(void **unused)
{
    struct server *srv = start_server(0, NEVER_ANSWER, 0);
    assert_int_equal(create_instance(""), 0);
    probe_expecting_timeout(0, 300);
    /* It was connected and had sent its request: only the answer was missing. */
    assert_int_equal(srv->accepted, 1);
    assert_int_equal(srv->n_requests, 1);
}

static void test_refused(void **unused)
{
    /* Backend 0 points at the bound port nobody listens on. */
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_false(r->ok);
    assert_string_equal(r->reason, "connect: connection refused");
}

static void test_closed_before_status_line(void **unused)
{
    struct server *srv = start_server(0, CLOSE_AT_ONCE, 0);
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_false(r->ok);
    /* The close may beat the request (EOF) or come after it (a reset): both fail at once. */
    if (strcmp(r->reason, "connection closed before the status line") != 0 &&
        strcmp(r->reason, "read: connection reset by peer") != 0 &&
        strcmp(r->reason, "write: broken pipe") != 0 &&
        strcmp(r->reason, "write: connection reset by peer") != 0)
        fail_msg("unexpected reason \"%s\"", r->reason);
    assert_int_equal(srv->accepted, 1);

    /* Half a status line, then the end of the connection. */
    srv->mode = ANSWER_RAW;
    srv->raw = "HTTP/1.1 20";
    r = probe_one(0, 1000);
    assert_false(r->ok);
    assert_string_equal(r->reason, "connection closed before the status line");
}

static void test_invalid_responses(void **unused)
{
    struct server *srv = start_server(0, ANSWER_RAW, 0);
    assert_int_equal(create_instance(""), 0);
    static const char *const garbage[] = {
        "SSH-2.0-OpenSSH_9.2\r\n", "HTTP/2 200\r\n\r\n",       "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 20\r\n\r\n",     "HTTP/1.1 2000 OK\r\n\r\n", "http/1.1 200 OK\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        srv->raw = garbage[i];
        struct probe_result *r = probe_one(0, 1000);
        assert_false(r->ok);
        if (strcmp(r->reason, "invalid response") != 0)
            fail_msg("\"%s\": reason \"%s\"", garbage[i], r->reason);
    }

    /* Lenient but well-formed: no reason phrase, a bare LF, HTTP/1.0. */
    static const char *const fine[] = {"HTTP/1.1 200\r\n\r\n", "HTTP/1.1 200 OK\n\n",
                                       "HTTP/1.0 204 No Content\r\n\r\n"};
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        srv->raw = fine[i];
        struct probe_result *r = probe_one(0, 1000);
        if (!r->ok)
            fail_msg("\"%s\": reason \"%s\"", fine[i], r->reason);
    }
}

static void test_long_status_line(void **unused)
{
    /* A reason phrase longer than the plugin reads: judged on the code. */
    static char raw[1024];
    memcpy(raw, "HTTP/1.1 200 ", 13);
    memset(raw + 13, 'x', 900);
    memcpy(raw + 913, "\r\n\r\n", 5);
    struct server *srv = start_server(0, ANSWER_RAW, 0);
    srv->raw = raw;
    assert_int_equal(create_instance(""), 0);
    struct probe_result *r = probe_one(0, 1000);
    assert_true(r->ok);
    assert_string_equal(r->reason, "HTTP 200");
}

static void test_two_backends_at_once(void **unused)
{
    start_server(0, ANSWER_STATUS, 200);
    start_server(1, ANSWER_STATUS, 503);
    assert_int_equal(create_instance(""), 0);
    assert_int_equal(start_probe(0, 1000), 0);
    assert_int_equal(start_probe(1, 1000), 0);
    /* One probe per backend at a time: a second one for backend 0 is refused. */
    assert_int_equal(start_probe(0, 1000) < 0, 1);
    H.results[0] = (struct probe_result){0};
    finish_two_probes("HTTP 503");
}

static void test_connect_fails_synchronously(void **unused)
{
    expect_connect_fails_synchronously();
}

static void test_destroy_inside_probe_done(void **unused)
{
    /*
     * The host may destroy the instance inside the last probe_done: the
     * plugin must not touch its state afterwards (ASan would see it).
     */
    start_server(0, ANSWER_STATUS, 200);
    assert_int_equal(create_instance(""), 0);
    H.destroy_in_done = 1;
    struct probe_result *r = probe_one(0, 1000);
    assert_true(r->ok);
    assert_false(H.have_inst);
    assert_int_equal(plugin_handles(), 0);
}

static void test_bad_options(void **unused)
{
    static const struct {
        const char *body;
        const char *line;
    } cases[] = {
        {"    expect = \"abc\";",
         "test.conf:5: pool \"web\": health.expect: expected a status code (100-599), a range "
         "\"200-399\" or a comma list of them such as \"200,204,300-302\" (got \"abc\")"},
        {"    expect = \"200,\";", NULL},
        {"    expect = \"399-200\";", NULL},
        {"    expect = \"600\";", NULL},
        {"    expect = \"20\";", NULL},
        {"    expect = \"200-\";", NULL},
        {"    expect = \"\";", NULL},
        {"    path = \"nope\";",
         "test.conf:5: pool \"web\": health.path: expected a path starting with '/', without "
         "spaces or control characters (got \"nope\")"},
        {"    path = \"/a b\";", NULL},
        {"    host = \"a\\r\\nX-Evil: 1\";",
         "test.conf:5: pool \"web\": health.host: expected a host name, without spaces or "
         "control characters (got \"a\r\nX-Evil: 1\")"},
        {"    expect = 200;",
         "test.conf:5: pool \"web\": health.expect: expected a string for health plugin "
         "\"http\""},
        {"    pth = \"/\";", "test.conf:5: pool \"web\": health.pth: unknown key for health "
                             "plugin \"http\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n_log_lines = 0;
        if (create_instance(cases[i].body) == 0)
            fail_msg("accepted: %s", cases[i].body);
        config_destroy(&H.group.lc);
        H.have_group = 0;
        if (cases[i].line != NULL)
            assert_logged(cases[i].line);
        /* Every refusal names the file and the line of the key. */
        assert_true(n_log_lines > 0);
        assert_non_null(strstr(log_lines[0], "test.conf:5: "));
    }
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_200_passes),
        T(test_503_fails),
        T(test_default_expect_range),
        T(test_expect_list),
        T(test_expect_single_and_mixed),
        T(test_request_sent_default),
        T(test_request_sent_configured),
        T(test_never_answers_times_out),
        T(test_refused),
        T(test_closed_before_status_line),
        T(test_invalid_responses),
        T(test_long_status_line),
        T(test_two_backends_at_once),
        T(test_connect_fails_synchronously),
        T(test_destroy_inside_probe_done),
        T(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
