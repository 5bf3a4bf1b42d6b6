/*
 * What the backend receives: hop-by-hop headers removed (the RFC 9110 7.6.1
 * list and whatever the client's Connection header names), X-Forwarded-For
 * appended, X-Forwarded-Proto set, everything else (Host included) intact.
 * The demo backend's /headers echoes the request it got, one line each.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The echoed request: line 0 is the request line, then "Name: value" lines. */
struct echo {
    char *lines[128];
    size_t n;
};

static void parse_echo(struct it_env *env, const struct it_response *r, struct echo *e)
{
    assert_int_equal(r->status, 200);
    e->n = 0;
    char *copy = it_strf(env, "%s", r->body);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\r\n", &save); line != NULL && e->n < 128;
         line = strtok_r(NULL, "\r\n", &save))
        e->lines[e->n++] = line;
    assert_true(e->n >= 1);
}

/* The value of the only header `name`, or NULL if absent; fails if repeated. */
static const char *echo_header(const struct echo *e, const char *name)
{
    const char *found = NULL;
    size_t len = strlen(name);
    for (size_t i = 1; i < e->n; i++) {
        if (strncasecmp(e->lines[i], name, len) == 0 && e->lines[i][len] == ':') {
            if (found != NULL)
                fail_msg("header %s reached the backend more than once", name);
            found = e->lines[i] + len + 1;
            while (*found == ' ')
                found++;
        }
    }
    return found;
}

IT_TEST(hop_by_hop_removed)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    struct it_response r;
    it_fetch(env, f->port, "GET",
             "GET /headers HTTP/1.1\r\n"
             "Host: www.example.test\r\n"
             "Connection: keep-alive, X-Foo\r\n"
             "Keep-Alive: 5\r\n"
             "X-Foo: 1\r\n"
             "TE: trailers\r\n"
             "Upgrade: something\r\n"
             "Proxy-Connection: keep-alive\r\n"
             "X-Kept: yes\r\n"
             "\r\n",
             &r);
    struct echo e;
    parse_echo(env, &r, &e);
    assert_string_equal(e.lines[0], "GET /headers HTTP/1.1");
    assert_null(echo_header(&e, "Keep-Alive"));
    assert_null(echo_header(&e, "X-Foo"));
    assert_null(echo_header(&e, "TE"));
    assert_null(echo_header(&e, "Upgrade"));
    assert_null(echo_header(&e, "Proxy-Connection"));
    /* The proxy may speak for its own upstream connection, nothing more. */
    const char *conn = echo_header(&e, "Connection");
    if (conn != NULL && strcasecmp(conn, "keep-alive") != 0 && strcasecmp(conn, "close") != 0)
        fail_msg("the backend got \"Connection: %s\"", conn);
    assert_string_equal(echo_header(&e, "Host"), "www.example.test");
    assert_string_equal(echo_header(&e, "X-Kept"), "yes");
    assert_string_equal(echo_header(&e, "X-Forwarded-For"), "127.0.0.1");
    assert_string_equal(echo_header(&e, "X-Forwarded-Proto"), "http");
    it_response_free(&r);
}

IT_TEST(forwarded_for_appended)
{
    struct it_fulcrum *f = it_fulcrum_start_one(env);
    struct it_response r;
    it_fetch(env, f->port, "GET",
             "GET /headers HTTP/1.1\r\n"
             "Host: api.example.test:8080\r\n"
             "X-Forwarded-For: 10.1.2.3\r\n"
             "X-Forwarded-Proto: https\r\n"
             "\r\n",
             &r);
    struct echo e;
    parse_echo(env, &r, &e);
    assert_string_equal(echo_header(&e, "Host"), "api.example.test:8080");
    assert_string_equal(echo_header(&e, "X-Forwarded-For"), "10.1.2.3, 127.0.0.1");
    /* Set, not appended: the client does not get to claim https. */
    assert_string_equal(echo_header(&e, "X-Forwarded-Proto"), "http");
    it_response_free(&r);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(hop_by_hop_removed),
    IT_CASE(forwarded_for_appended),
};

IT_MAIN(tests)
