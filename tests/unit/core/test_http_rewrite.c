/*
 * Header rewriting (core/http_rewrite.c) and the proxy's own responses
 * (core/errors.c): heads are parsed with the same llhttp settings shape the
 * proxy uses, rewritten, and compared byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "errors.h"
#include "http_rewrite.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fc_request head;

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    fc_head_on_span(&head.method, at, len);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    fc_head_on_span(&head.target, at, len);
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    fc_head_on_span(&head.reason, at, len);
    return 0;
}

static int on_field(llhttp_t *p, const char *at, size_t len)
{
    return fc_head_on_field(&head, at, len);
}

static int on_value(llhttp_t *p, const char *at, size_t len)
{
    return fc_head_on_value(&head, at, len);
}

static int on_value_complete(llhttp_t *p)
{
    return fc_head_on_value_complete(&head) == 0 ? 0 : -1;
}

static int on_headers_complete(llhttp_t *p)
{
    head.status = p->status_code;
    return HPE_PAUSED;
}

/*
 * Parses `text` as a request or response head. `pieces` > 1 feeds it in that
 * many parts, as the network may, to check that split fields and values join up.
 */
static enum llhttp_errno try_parse(const char *text, llhttp_type_t type, size_t pieces)
{
    static llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_method = on_method;
    s.on_url = on_url;
    s.on_status = on_status;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    s.on_header_value_complete = on_value_complete;
    s.on_headers_complete = on_headers_complete;
    llhttp_t p;
    llhttp_init(&p, type, &s);
    fc_head_reset(&head);
    size_t len = strlen(text), step = (len + pieces - 1) / pieces, off = 0;
    enum llhttp_errno e = HPE_OK;
    while (off < len && e == HPE_OK) {
        size_t n = len - off < step ? len - off : step;
        e = llhttp_execute(&p, text + off, n);
        off += n;
    }
    head.http_major = p.http_major;
    head.http_minor = p.http_minor;
    return e;
}

static void parse(const char *text, llhttp_type_t type, size_t pieces)
{
    assert_int_equal(try_parse(text, type, pieces), HPE_PAUSED);
}

static const struct fc_forward_info fw = {
    .client_ip = "192.0.2.7",
    .client_ip_len = 9,
    .proto = "http",
    .default_host = "127.0.0.1:9001",
    .default_host_len = 14,
};

static void assert_request_rewrite(const char *in, const char *want, size_t pieces)
{
    parse(in, HTTP_REQUEST, pieces);
    char out[4096];
    int n = fc_rewrite_request(&head, &fw, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_request_plain(void **state)
{
    assert_request_rewrite("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
                           "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                           "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n",
                           1);
}

static void test_request_hop_by_hop_removed(void **state)
{
    const char *in = "POST /x HTTP/1.1\r\n"
                     "Host: h\r\n"
                     "Connection: keep-alive, X-Secret, Content-Length\r\n"
                     "Keep-Alive: timeout=5\r\n"
                     "Proxy-Connection: keep-alive\r\n"
                     "TE: trailers\r\n"
                     "Trailer: X-Sum\r\n"
                     "Upgrade: websocket\r\n"
                     "X-Secret: 1\r\n"
                     "X-Kept: 2\r\n"
                     "Content-Length: 3\r\n"
                     "\r\n";
    /* Content-Length survives even though Connection names it: framing is never dropped. */
    const char *want = "POST /x HTTP/1.1\r\nHost: h\r\nX-Kept: 2\r\nContent-Length: 3\r\n"
                       "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n";
    assert_request_rewrite(in, want, 1);
    assert_request_rewrite(in, want, 7);          /* the same, split at odd places */
    assert_request_rewrite(in, want, strlen(in)); /* one byte at a time */
}

/* A WebSocket handshake (RFC 6455 4.1) is told apart, and its upgrade said again upstream. */
static void test_websocket_handshake(void **state)
{
    const char *in = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                     "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n";
    parse(in, HTTP_REQUEST, 3);
    assert_true(fc_head_wants_websocket(&head));
    struct fc_forward_info ws = fw;
    ws.websocket = 1;
    char out[1024];
    int n = fc_rewrite_request(&head, &ws, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, "GET /chat HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n"
                             "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                             "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    /* Tokens are case-insensitive and may share their header with others. */
    parse("GET / HTTP/1.1\r\nHost: h\r\nupgrade: h2c, WebSocket\r\nconnection: UPGRADE\r\n\r\n",
          HTTP_REQUEST, 1);
    assert_true(fc_head_wants_websocket(&head));

    /* Not a handshake: another method or version, another protocol, a half of the pair. */
    static const char *const not_ws[] = {
        "POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Content-Length: 0\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocketx\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(not_ws) / sizeof(not_ws[0]); i++) {
        assert_int_not_equal(try_parse(not_ws[i], HTTP_REQUEST, 1), HPE_USER);
        if (fc_head_wants_websocket(&head))
            fail_msg("taken for a WebSocket handshake: %s", not_ws[i]);
    }

    /* The backend's 101 goes back with the upgrade said again, its own hop headers dropped. */
    try_parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
              "Sec-WebSocket-Accept: a\r\n\r\n",
              HTTP_RESPONSE, 2);
    assert_true(head.upgrade_ws);
    n = fc_rewrite_response(&head, FC_RESP_UPGRADE, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n"
                             "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
}

static void test_request_forwarded_for_appended(void **state)
{
    assert_request_rewrite(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.1.2.3\r\n"
        "X-Forwarded-Proto: https\r\nX-Forwarded-For: 10.4.5.6, 10.7.8.9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n"
        "X-Forwarded-For: 10.1.2.3, 10.4.5.6, 10.7.8.9, 192.0.2.7\r\n"
        "X-Forwarded-Proto: http\r\n\r\n",
        1);
}

/* A client's Forwarded (RFC 7239) gets our element appended; without one, none is added. */
static void test_request_forwarded_element_appended(void **state)
{
    assert_request_rewrite(
        "GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=198.51.100.17;proto=https\r\n"
        "X-A: b\r\nforwarded: for=\"[2001:db8::9]\"\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n"
        "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
        "Forwarded: for=198.51.100.17;proto=https, for=\"[2001:db8::9]\", "
        "for=192.0.2.7;proto=http\r\n\r\n",
        1);
    /* An IPv6 client is quoted, in brackets. */
    const struct fc_forward_info fw6 = {.client_ip = "2001:db8::7",
                                        .client_ip_len = 11,
                                        .proto = "http",
                                        .default_host = "h",
                                        .default_host_len = 1};
    parse("GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=unknown\r\n\r\n", HTTP_REQUEST, 1);
    char out[1024];
    int n = fc_rewrite_request(&head, &fw6, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(
        strstr(out, "\r\nForwarded: for=unknown, for=\"[2001:db8::7]\";proto=http\r\n"));
}

static void test_request_http10_gets_host(void **state)
{
    assert_request_rewrite("GET / HTTP/1.0\r\nUser-Agent: t\r\n\r\n",
                           "GET / HTTP/1.1\r\nUser-Agent: t\r\nHost: 127.0.0.1:9001\r\n"
                           "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n",
                           1);
}

static void test_request_value_whitespace_trimmed(void **state)
{
    parse("GET / HTTP/1.1\r\nHost:   spaced.example  \r\nX-Empty:\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(head.n_headers, 2);
    assert_int_equal(head.host.len, strlen("spaced.example"));
    assert_memory_equal(head.host.p, "spaced.example", head.host.len);
    assert_int_equal(head.headers[1].value.len, 0);
}

static void test_request_does_not_fit(void **state)
{
    parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1);
    char out[40];
    assert_int_equal(fc_rewrite_request(&head, &fw, out, sizeof(out)), -1);
}

/* Heads that different parsers could read differently are refused, not forwarded. */
static void test_ambiguous_heads_refused(void **state)
{
    /* A folded value could hide a Transfer-Encoding from us and show it to a backend. */
    assert_int_equal(
        try_parse("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n"
                  "Content-Length: 5\r\n\r\n",
                  HTTP_REQUEST, 1),
        HPE_CB_HEADER_VALUE_COMPLETE);
    assert_int_equal(try_parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HTTP_REQUEST, 1),
                     HPE_CB_HEADER_VALUE_COMPLETE);
    /* More names in Connection than the proxy can strip. */
    char big[2048] = "GET / HTTP/1.1\r\nHost: h\r\nConnection: ";
    for (int i = 0; i < FC_MAX_CONN_TOKENS + 1; i++) {
        char tok[16];
        snprintf(tok, sizeof(tok), "X-%d, ", i);
        strcat(big, tok);
    }
    strcat(big, "\r\n\r\n");
    assert_int_equal(try_parse(big, HTTP_REQUEST, 1), HPE_CB_HEADER_VALUE_COMPLETE);
}

/* An absolute-form target is forwarded as origin-form; its authority replaces Host. */
static void test_absolute_form(void **state)
{
    parse("GET http://api.example.com:8080/v1/x?y=1 HTTP/1.1\r\nHost: other\r\nA: b\r\n\r\n",
          HTTP_REQUEST, 1);
    assert_int_equal(fc_head_request_complete(&head), 0);
    assert_int_equal(head.host.len, strlen("api.example.com:8080"));
    assert_memory_equal(head.host.p, "api.example.com:8080", head.host.len);
    char out[1024];
    int n = fc_rewrite_request(&head, &fw, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, "GET /v1/x?y=1 HTTP/1.1\r\nA: b\r\nHost: api.example.com:8080\r\n"
                             "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n");
    parse("GET http://h HTTP/1.1\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_request_complete(&head), 0);
    assert_int_equal(head.target.len, 1);
    assert_memory_equal(head.target.p, "/", 1);
    /* Only origin-form and http absolute-form are accepted. */
    parse("GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_request_complete(&head), -1);
    parse("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_request_complete(&head), -1);
    parse("GET /plain HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_request_complete(&head), 0);
    assert_int_equal(head.absolute_form, 0);
}

/* Request targets and authorities that RFC 9112 3.2 allows, and those it does not. */
static void test_target_and_host_forms(void **state)
{
    /* asterisk-form, for OPTIONS only; forwarded as it came. */
    parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_request_complete(&head), 0);
    char out[512];
    int n = fc_rewrite_request(&head, &fw, out, sizeof(out));
    assert_true(n > 0);
    assert_memory_equal(out, "OPTIONS * HTTP/1.1\r\n", 20);
    if (try_parse("GET * HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1) == HPE_PAUSED)
        assert_int_equal(fc_head_request_complete(&head), -1);
    /* Hosts: names, addresses, ports, an empty one (RFC 9112 3.2) pass. */
    const char *good[] = {"example.com",   "example.com:8080",      "127.0.0.1:80", "[::1]:8080",
                          "[2001:db8::7]", "xn--bcher-kva.example", "a-b_c~d.e",    ""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
        parse(text, HTTP_REQUEST, 1);
        if (fc_head_request_complete(&head) != 0)
            fail_msg("Host: %s refused", good[i]);
    }
    /* What an authority cannot hold, and would mean something else to the backend. */
    const char *bad[] = {"a b",  "a/b@c",          "a@b", "a?b", "a#b", "a\\b", "a\"b",
                         "a<b>", "%61dmin.example" /* decoded: admin.example */};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
        if (try_parse(text, HTTP_REQUEST, 1) != HPE_PAUSED)
            continue; /* llhttp refused it already */
        if (fc_head_request_complete(&head) != -1)
            fail_msg("Host: %s accepted", bad[i]);
    }
    /* Paths with one meaning only: the forms a backend may normalise into another path fail. */
    const char *paths_ok[] = {"/",     "/login",      "/a/b/", "/a.b/c..d/.e",  "/%2F",
                              "/%20x", "/a?x=//./..", "/..a",  "/.well-known/x"};
    for (size_t i = 0; i < sizeof(paths_ok) / sizeof(paths_ok[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", paths_ok[i]);
        parse(text, HTTP_REQUEST, 1);
        if (fc_head_request_complete(&head) != 0)
            fail_msg("path %s refused", paths_ok[i]);
    }
    const char *paths_bad[] = {"//login",  "/a//b", "/./login",  "/x/../login", "/x/..", "/x/.",
                               "/%6cogin", "/%7E",  "/%2e%2e/x", "/a%",         "/a%4",  "/a%zz"};
    for (size_t i = 0; i < sizeof(paths_bad) / sizeof(paths_bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", paths_bad[i]);
        if (try_parse(text, HTTP_REQUEST, 1) != HPE_PAUSED)
            continue; /* llhttp refused it already */
        if (fc_head_request_complete(&head) != -1)
            fail_msg("path %s accepted", paths_bad[i]);
    }
    parse("GET http://h//x HTTP/1.1\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_request_complete(&head), -1); /* absolute-form paths too */
    parse("GET http://a%20b/ HTTP/1.1\r\n\r\n", HTTP_REQUEST, 1);
    /* %-encoded: a valid reg-name, but no DNS name, and a backend may decode it. */
    assert_int_equal(fc_head_request_complete(&head), -1);
}

/* The head checks in the order the proxy applies them, each with its status. */
static void test_check_request(void **state)
{
    const char *why = NULL;
    parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_check_request(&head, 0, 0, 0, &why), 0);
    parse("GET / HTTP/1.0\r\n\r\n", HTTP_REQUEST, 1); /* HTTP/1.0 needs no Host */
    assert_int_equal(fc_head_check_request(&head, 0, 0, 0, &why), 0);
    parse("GET / HTTP/1.1\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_check_request(&head, 0, 0, 0, &why), 400);
    assert_string_equal(why, "HTTP/1.1 request without Host");
    if (try_parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1) == HPE_PAUSED)
        assert_int_equal(fc_head_check_request(&head, 0, 0, 0, &why), 505);
    parse("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_check_request(&head, 0, 0, 0, &why), 405);
    parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_check_request(&head, 0, 10, 9, &why), 413);
    assert_int_equal(fc_head_check_request(&head, 0, 10, 10, &why), 0);
    parse("GET //x HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_REQUEST, 1);
    assert_int_equal(fc_head_check_request(&head, 0, 0, 0, &why), 400);
}

static void test_too_many_headers(void **state)
{
    fc_head_reset(&head);
    char name[16];
    for (int i = 0; i < FC_MAX_HEADERS; i++) {
        snprintf(name, sizeof(name), "X-%d", i);
        assert_int_equal(fc_head_on_field(&head, name, strlen(name)), 0);
        assert_int_equal(fc_head_on_value(&head, "v", 1), 0);
        fc_head_on_value_complete(&head);
    }
    assert_int_equal(fc_head_on_field(&head, "X-Last", 6), -1);
}

/* fc_head_framing_check() of a request head with these headers; llhttp-chunked as given. */
static int framing(const char *headers, int chunked)
{
    char text[512];
    snprintf(text, sizeof(text), "POST / HTTP/1.1\r\nHost: a\r\n%s\r\n", headers);
    enum llhttp_errno e = try_parse(text, HTTP_REQUEST, 1);
    if (e != HPE_PAUSED)
        return 1; /* llhttp refused it itself: not for this check to decide */
    return fc_head_framing_check(&head, chunked);
}

static void test_framing_check(void **state)
{
    /* Valid: chunked last, alone or after other codings, in one header or several. */
    assert_int_equal(framing("Transfer-Encoding: chunked\r\n", 1), 0);
    assert_int_equal(framing("Transfer-Encoding: gzip, chunked\r\n", 1), 0);
    assert_int_equal(framing("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 1), 0);
    assert_int_equal(framing("Content-Length: 5\r\n", 0), 0);
    assert_int_equal(framing("X-A: b\r\n", 0), 0);
    /* Empty values, once or twice, with or without Content-Length (llhttp lets them by). */
    assert_int_equal(framing("Transfer-Encoding:\r\n", 0), -1);
    assert_int_equal(framing("Transfer-Encoding: \r\nTransfer-Encoding:\r\n", 0), -1);
    assert_int_equal(framing("Transfer-Encoding:\r\nContent-Length: 5\r\n", 0), -1);
    /* Empty elements, parameters, chunked twice or not last: refused wherever llhttp is not. */
    assert_int_not_equal(framing("Transfer-Encoding: , chunked\r\n", 1), 0);
    assert_int_not_equal(framing("Transfer-Encoding: chunked;q=1\r\n", 1), 0);
    assert_int_not_equal(framing("Transfer-Encoding: chunked, chunked\r\n", 1), 0);
    assert_int_not_equal(framing("Transfer-Encoding: chunked, gzip\r\n", 1), 0);
    assert_int_not_equal(framing("Transfer-Encoding: gzip\r\n", 0), 0);
    /* A chunked Transfer-Encoding the parser did not frame as chunked is refused too. */
    assert_int_equal(framing("Transfer-Encoding: chunked\r\n", 0), -1);
}

static void assert_response_rewrite(const char *in, unsigned flags, const char *want)
{
    parse(in, HTTP_RESPONSE, 1);
    char out[4096];
    int n = fc_rewrite_response(&head, flags, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_response_hop_by_hop_removed(void **state)
{
    assert_response_rewrite("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\n"
                            "Keep-Alive: timeout=4\r\nX-Internal: a\r\nContent-Length: 2\r\n\r\n",
                            0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
}

static void test_response_connection_flags(void **state)
{
    const char *in = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    assert_response_rewrite(
        in, FC_RESP_CLOSE,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_response_rewrite(
        in, FC_RESP_KEEPALIVE,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

static void test_response_dechunk_drops_transfer_encoding(void **state)
{
    const char *in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n";
    assert_response_rewrite(in, 0,
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n");
    assert_response_rewrite(in, FC_RESP_DECHUNK | FC_RESP_CLOSE,
                            "HTTP/1.1 200 OK\r\nX-A: b\r\nConnection: close\r\n\r\n");
}

/* A status line without a reason phrase (found by the response fuzz target: an empty span). */
static void test_response_without_reason(void **state)
{
    assert_response_rewrite("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0,
                            "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n");
}

static void test_response_http10_backend_status_line(void **state)
{
    /* Whatever the backend spoke, the client hears HTTP/1.1 with the same status and reason. */
    assert_response_rewrite("HTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n", 0,
                            "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
}

/* The proxy's own responses: the declared Content-Length is the body's real length. */
static void test_error_responses(void **state)
{
    const int statuses[] = {400, 405, 408, 413, 429, 431, 502, 503, 504};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        char out[256];
        int n = fc_error_response(statuses[i], 1, 0, out, sizeof(out));
        assert_true(n > 0);
        out[n] = '\0';
        char first[64];
        snprintf(first, sizeof(first), "HTTP/1.1 %d %s\r\n", statuses[i],
                 fc_status_reason(statuses[i]));
        assert_memory_equal(out, first, strlen(first));
        const char *body = strstr(out, "\r\n\r\n");
        assert_non_null(body);
        body += 4;
        const char *cl = strstr(out, "Content-Length: ");
        assert_non_null(cl);
        assert_int_equal(atoi(cl + 16), (int)strlen(body));
        assert_non_null(strstr(out, "Connection: close\r\n"));
        char want_body[64];
        snprintf(want_body, sizeof(want_body), "%d %s\n", statuses[i],
                 fc_status_reason(statuses[i]));
        assert_string_equal(body, want_body);
    }
    char out[256];
    int n = fc_error_response(429, 0, 3, out, sizeof(out));
    out[n] = '\0';
    assert_non_null(strstr(out, "Retry-After: 3\r\n"));
    assert_null(strstr(out, "Connection:"));
    assert_int_equal(fc_error_response(502, 0, 0, out, 20), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_plain),
        cmocka_unit_test(test_request_hop_by_hop_removed),
        cmocka_unit_test(test_websocket_handshake),
        cmocka_unit_test(test_request_forwarded_for_appended),
        cmocka_unit_test(test_request_forwarded_element_appended),
        cmocka_unit_test(test_request_http10_gets_host),
        cmocka_unit_test(test_request_value_whitespace_trimmed),
        cmocka_unit_test(test_request_does_not_fit),
        cmocka_unit_test(test_ambiguous_heads_refused),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_framing_check),
        cmocka_unit_test(test_target_and_host_forms),
        cmocka_unit_test(test_check_request),
        cmocka_unit_test(test_response_hop_by_hop_removed),
        cmocka_unit_test(test_response_connection_flags),
        cmocka_unit_test(test_response_dechunk_drops_transfer_encoding),
        cmocka_unit_test(test_response_http10_backend_status_line),
        cmocka_unit_test(test_response_without_reason),
        cmocka_unit_test(test_error_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
