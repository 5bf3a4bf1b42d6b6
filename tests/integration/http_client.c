/*
 * The small blocking HTTP/1.1 client that the tests talk through (struct
 * it_conn): connecting to 127.0.0.1, sending bytes, and reading responses
 * as they arrive, framed by chunked encoding, Content-Length or the end of the
 * connection, 1xx responses skipped, pipelined responses one call each. It
 * parses strictly (CRLF line ends, token header names, one Content-Length) so
 * that a malformed response from fulcrum fails the test instead of passing.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (256 * 1024)
#define MAX_HEADERS 256

struct it_conn {
    struct it_conn *next;
    struct it_env *env;
    int fd;
    char *buf;
    size_t start, end, cap; /* unread bytes are buf[start, end) */
    bool eof;
    int err; /* sticky negative errno from recv */
    int timeout_ms;
};

/*
 * Connects fd, a non-blocking TCP socket, to 127.0.0.1:port, waiting up to
 * IT_IO_TIMEOUT_MS. Returns 0 or a negative errno; fd stays open either way.
 */
static int connect_loopback(int fd, int port)
{
    struct sockaddr_in sin = it_loopback(port);
    int r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    if (r != 0 && errno == EINPROGRESS) {
        r = it_wait_fd(fd, POLLOUT, IT_IO_TIMEOUT_MS);
        if (r == 0) {
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            r = soerr ? -soerr : 0;
        }
    } else if (r != 0) {
        r = -errno;
    }
    return r;
}

/* A non-blocking TCP socket with TCP_NODELAY, for a client; or a negative errno. */
static int client_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* A client connection over fd, which it now owns; owned by env until it_conn_close(). */
static struct it_conn *conn_new(struct it_env *env, int fd)
{
    struct it_conn *conn = it_xmalloc(sizeof(*conn));
    memset(conn, 0, sizeof(*conn));
    conn->env = env;
    conn->fd = fd;
    conn->cap = 64 * 1024;
    conn->buf = it_xmalloc(conn->cap);
    conn->timeout_ms = IT_IO_TIMEOUT_MS;
    conn->next = env->conns;
    env->conns = conn;
    return conn;
}

/*
 * Connects fd, a socket from client_socket() that the caller has set up, to
 * 127.0.0.1:port and makes it a connection; fails the test, closing fd, if it
 * cannot. `source` is the address fd is bound to, for the message, or NULL.
 */
static struct it_conn *conn_connect(struct it_env *env, int fd, int port, const char *source)
{
    int r = connect_loopback(fd, port);
    if (r != 0) {
        close(fd);
        if (source != NULL)
            it_fail("connect 127.0.0.1:%d from %s: %s", port, source, strerror(-r));
        else
            it_fail("connect 127.0.0.1:%d: %s", port, strerror(-r));
    }
    return conn_new(env, fd);
}

struct it_conn *it_connect_raw(struct it_env *env, int port, int *err)
{
    int fd = client_socket();
    if (fd < 0) {
        *err = fd;
        return NULL;
    }
    int r = connect_loopback(fd, port);
    if (r != 0) {
        close(fd);
        *err = r;
        return NULL;
    }
    *err = 0;
    return conn_new(env, fd);
}

struct it_conn *it_connect(struct it_env *env, int port)
{
    int err = 0;
    struct it_conn *conn = it_connect_raw(env, port, &err);
    if (conn == NULL)
        it_fail("connect 127.0.0.1:%d: %s", port, strerror(-err));
    return conn;
}

struct it_conn *it_connect_from(struct it_env *env, int port, const char *source)
{
    struct sockaddr_in src;
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    if (inet_pton(AF_INET, source, &src.sin_addr) != 1)
        it_fail("it_connect_from: \"%s\" is not an IPv4 address", source);

    int fd = client_socket();
    if (fd < 0)
        it_fail("socket: %s", strerror(-fd));
    /* Port 0: the kernel picks a source port on that address. */
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
        int e = errno;
        close(fd);
        it_fail("bind %s:0: %s", source, strerror(e));
    }
    return conn_connect(env, fd, port, source);
}

struct it_conn *it_connect_rcvbuf(struct it_env *env, int port, int rcvbuf)
{
    int fd = client_socket();
    if (fd < 0)
        it_fail("socket: %s", strerror(-fd));
    /* Before connect(), so that the window scale of the handshake fits it too. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0) {
        int e = errno;
        close(fd);
        it_fail("setsockopt SO_RCVBUF %d: %s", rcvbuf, strerror(e));
    }
    return conn_connect(env, fd, port, NULL);
}

int it_conn_fd(const struct it_conn *conn)
{
    return conn->fd;
}

void it_conn_close(struct it_conn *conn)
{
    if (conn == NULL)
        return;
    struct it_conn **pp = &conn->env->conns;
    while (*pp != NULL && *pp != conn)
        pp = &(*pp)->next;
    if (*pp == conn)
        *pp = conn->next;
    close(conn->fd);
    free(conn->buf);
    free(conn);
}

void it_conn_set_timeout(struct it_conn *conn, int timeout_ms)
{
    conn->timeout_ms = timeout_ms;
}

size_t it_conn_buffered(const struct it_conn *conn)
{
    return conn->end - conn->start;
}

int it_send_raw(struct it_conn *conn, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        int r = it_send_some(conn->fd, &p, &len, MSG_NOSIGNAL);
        if (r == -EAGAIN)
            r = it_wait_fd(conn->fd, POLLOUT, conn->timeout_ms);
        if (r != 0)
            return r;
    }
    return 0;
}

void it_send(struct it_conn *conn, const void *data, size_t len)
{
    int r = it_send_raw(conn, data, len);
    if (r != 0)
        it_fail("send %zu bytes: %s", len, strerror(-r));
}

void it_send_str(struct it_conn *conn, const char *s)
{
    it_send(conn, s, strlen(s));
}

/*
 * Reads more bytes into the buffer, waiting up to the connection's timeout.
 * Returns the number of bytes read, 0 at end of stream, or a negative errno.
 */
static ssize_t conn_fill(struct it_conn *conn, int timeout_ms)
{
    if (conn->err != 0)
        return conn->err;
    if (conn->eof)
        return 0;
    if (conn->start > 0 && conn->start == conn->end)
        conn->start = conn->end = 0;
    if (conn->end == conn->cap) {
        if (conn->start > conn->cap / 2) {
            memmove(conn->buf, conn->buf + conn->start, conn->end - conn->start);
            conn->end -= conn->start;
            conn->start = 0;
        } else {
            conn->cap *= 2;
            conn->buf = it_xrealloc(conn->buf, conn->cap);
        }
    }
    for (;;) {
        ssize_t n = recv(conn->fd, conn->buf + conn->end, conn->cap - conn->end, 0);
        if (n > 0) {
            conn->end += (size_t)n;
            return n;
        }
        if (n == 0) {
            conn->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int r = it_wait_fd(conn->fd, POLLIN, timeout_ms);
            if (r != 0)
                return r;
            continue;
        }
        conn->err = -errno;
        return conn->err;
    }
}

bool it_conn_wait_closed(struct it_conn *conn, int timeout_ms)
{
    if (conn->end > conn->start)
        return false;
    ssize_t n = conn_fill(conn, timeout_ms);
    if (n == 0 || n == -ECONNRESET)
        return true;
    return false;
}

bool it_conn_wait_data(struct it_conn *conn, int timeout_ms)
{
    if (conn->end > conn->start)
        return true;
    return conn_fill(conn, timeout_ms) > 0;
}

/* A printable excerpt of the unread bytes, for failure messages. */
static void dump_buffered(const struct it_conn *conn, const char *why)
{
    size_t len = conn->end - conn->start;
    fprintf(stderr, "harness: response: %s; %zu unread bytes%s%s\n", why, len,
            conn->eof ? ", connection closed" : "", len ? ":" : "");
    const unsigned char *p = (const unsigned char *)conn->buf + conn->start;
    size_t show = len < 512 ? len : 512;
    for (size_t i = 0; i < show; i++) {
        if (p[i] == '\n')
            fputs("\\n\n", stderr);
        else if (p[i] == '\r')
            fputs("\\r", stderr);
        else if (isprint(p[i]))
            fputc(p[i], stderr);
        else
            fprintf(stderr, "\\x%02x", p[i]);
    }
    if (show < len)
        fputs("...", stderr);
    if (show)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Makes sure `n` unread bytes are buffered. 0 or a negative errno. */
static int conn_need(struct it_conn *conn, size_t n)
{
    while (conn->end - conn->start < n) {
        ssize_t r = conn_fill(conn, conn->timeout_ms);
        if (r == 0)
            return -EPIPE;
        if (r < 0)
            return (int)r;
    }
    return 0;
}

/*
 * Takes one CRLF-terminated line off the buffer into a malloc'd string
 * without the CRLF. A bare LF is a protocol error: fulcrum must send CRLF.
 */
static int conn_line(struct it_conn *conn, char **line, size_t max)
{
    size_t scanned = 0;
    for (;;) {
        char *base = conn->buf + conn->start;
        size_t avail = conn->end - conn->start;
        char *lf = memchr(base + scanned, '\n', avail - scanned);
        if (lf != NULL) {
            size_t len = (size_t)(lf - base);
            if (len == 0 || base[len - 1] != '\r')
                return -EPROTO;
            *line = it_xmalloc(len);
            memcpy(*line, base, len - 1);
            (*line)[len - 1] = '\0';
            conn->start += len + 1;
            return 0;
        }
        scanned = avail;
        if (avail > max)
            return -EPROTO;
        ssize_t r = conn_fill(conn, conn->timeout_ms);
        if (r == 0)
            return -EPIPE;
        if (r < 0)
            return (int)r;
    }
}

static void body_append(struct it_response *resp, size_t *cap, const char *data, size_t len)
{
    if (resp->body_len + len + 1 > *cap) {
        while (resp->body_len + len + 1 > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        resp->body = it_xrealloc(resp->body, *cap);
    }
    memcpy(resp->body + resp->body_len, data, len);
    resp->body_len += len;
    resp->body[resp->body_len] = '\0';
}

static void headers_free(struct it_response *resp)
{
    for (size_t i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    resp->headers = NULL;
    resp->nheaders = 0;
    free(resp->reason);
    resp->reason = NULL;
}

void it_response_free(struct it_response *resp)
{
    headers_free(resp);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

const char *it_header(const struct it_response *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

size_t it_header_count(const struct it_response *resp, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            n++;
    return n;
}

static bool is_token_char(unsigned char c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Reads a status line and header fields into resp. */
static int read_head(struct it_conn *conn, struct it_response *resp)
{
    char *line = NULL;
    int r = conn_line(conn, &line, MAX_HEAD_BYTES);
    if (r != 0)
        return r;
    int minor = -1, status = -1, consumed = 0;
    if (sscanf(line, "HTTP/1.%1d %3d%n", &minor, &status, &consumed) != 2 || status < 100 ||
        status > 999 || (line[consumed] != ' ' && line[consumed] != '\0')) {
        fprintf(stderr, "harness: bad status line \"%s\"\n", line);
        free(line);
        return -EPROTO;
    }
    resp->version_minor = minor;
    resp->status = status;
    resp->reason = strdup(line[consumed] == ' ' ? line + consumed + 1 : "");
    free(line);

    size_t cap = 0;
    for (;;) {
        r = conn_line(conn, &line, MAX_HEAD_BYTES);
        if (r != 0)
            return r;
        if (line[0] == '\0') {
            free(line);
            return 0;
        }
        char *colon = strchr(line, ':');
        size_t name_len = colon ? (size_t)(colon - line) : 0;
        bool ok = name_len > 0;
        for (size_t i = 0; ok && i < name_len; i++)
            ok = is_token_char((unsigned char)line[i]);
        if (!ok || resp->nheaders == MAX_HEADERS) {
            fprintf(stderr, "harness: bad header line \"%s\"\n", line);
            free(line);
            return -EPROTO;
        }
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        size_t value_len = strlen(value);
        while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        if (resp->nheaders == cap) {
            cap = cap ? cap * 2 : 16;
            resp->headers = it_xrealloc(resp->headers, cap * sizeof(*resp->headers));
        }
        struct it_header *h = &resp->headers[resp->nheaders++];
        h->name = strndup(line, name_len);
        h->value = strndup(value, value_len);
        free(line);
    }
}

/* True if the comma-separated list `value` has `token` as its last element. */
static bool last_token_is(const char *value, const char *token)
{
    const char *last = strrchr(value, ',');
    last = last ? last + 1 : value;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strlen(token);
    if (strncasecmp(last, token, n) != 0)
        return false;
    for (last += n; *last == ' ' || *last == '\t'; last++) {
    }
    return *last == '\0';
}

static int read_chunked(struct it_conn *conn, struct it_response *resp, size_t *cap)
{
    for (;;) {
        char *line = NULL;
        int r = conn_line(conn, &line, 4096);
        if (r != 0)
            return r;
        char *end = NULL;
        errno = 0;
        unsigned long long size = strtoull(line, &end, 16);
        bool ok = end != line && errno == 0 && isxdigit((unsigned char)line[0]) &&
                  (*end == '\0' || *end == ';' || *end == ' ' || *end == '\t');
        if (!ok) {
            fprintf(stderr, "harness: bad chunk size line \"%s\"\n", line);
            free(line);
            return -EPROTO;
        }
        free(line);
        if (size == 0)
            break;
        if (size > (1ULL << 32))
            return -EPROTO;
        r = conn_need(conn, (size_t)size + 2);
        if (r != 0)
            return r;
        const char *data = conn->buf + conn->start;
        if (data[size] != '\r' || data[size + 1] != '\n') {
            fprintf(stderr, "harness: chunk of %llu bytes not followed by CRLF\n", size);
            return -EPROTO;
        }
        body_append(resp, cap, data, (size_t)size);
        conn->start += (size_t)size + 2;
    }
    /* Trailer fields, then the empty line. */
    for (;;) {
        char *line = NULL;
        int r = conn_line(conn, &line, MAX_HEAD_BYTES);
        if (r != 0)
            return r;
        bool empty = line[0] == '\0';
        free(line);
        if (empty)
            return 0;
    }
}

static int read_body(struct it_conn *conn, const char *method, struct it_response *resp)
{
    size_t cap = 0;
    body_append(resp, &cap, "", 0);
    if (strcmp(method, "HEAD") == 0 || resp->status < 200 || resp->status == 204 ||
        resp->status == 304)
        return 0;

    const char *te = it_header(resp, "Transfer-Encoding");
    if (te != NULL) {
        if (last_token_is(te, "chunked")) {
            resp->chunked = true;
            return read_chunked(conn, resp, &cap);
        }
    } else if (it_header(resp, "Content-Length") != NULL) {
        const char *cl = it_header(resp, "Content-Length");
        for (size_t i = 0; i < resp->nheaders; i++) {
            if (strcasecmp(resp->headers[i].name, "Content-Length") == 0 &&
                strcmp(resp->headers[i].value, cl) != 0) {
                fprintf(stderr, "harness: conflicting Content-Length headers\n");
                return -EPROTO;
            }
        }
        char *end = NULL;
        errno = 0;
        unsigned long long len = strtoull(cl, &end, 10);
        if (!isdigit((unsigned char)cl[0]) || *end != '\0' || errno != 0 || len > (1ULL << 34)) {
            fprintf(stderr, "harness: bad Content-Length \"%s\"\n", cl);
            return -EPROTO;
        }
        while (len > 0) {
            if (conn->end == conn->start) {
                ssize_t r = conn_fill(conn, conn->timeout_ms);
                if (r == 0)
                    return -EPIPE;
                if (r < 0)
                    return (int)r;
            }
            size_t take = conn->end - conn->start;
            if (take > len)
                take = (size_t)len;
            body_append(resp, &cap, conn->buf + conn->start, take);
            conn->start += take;
            len -= take;
        }
        return 0;
    }

    /* Neither: the body runs until the server closes the connection. */
    resp->close_delimited = true;
    for (;;) {
        body_append(resp, &cap, conn->buf + conn->start, conn->end - conn->start);
        conn->start = conn->end;
        ssize_t r = conn_fill(conn, conn->timeout_ms);
        if (r == 0)
            return 0;
        if (r < 0)
            return (int)r;
    }
}

int it_recv_response(struct it_conn *conn, const char *method, struct it_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    int r;
    for (;;) {
        r = read_head(conn, resp);
        if (r != 0)
            break;
        /* 1xx other than 101 are interim: the real response follows. */
        if (resp->status >= 100 && resp->status < 200 && resp->status != 101) {
            int interim = resp->interim + 1;
            int status = resp->status;
            headers_free(resp);
            memset(resp, 0, sizeof(*resp));
            resp->interim = interim;
            resp->interim_status = status;
            continue;
        }
        r = read_body(conn, method, resp);
        break;
    }
    if (r != 0) {
        dump_buffered(conn, strerror(-r));
        it_response_free(resp);
    }
    return r;
}

void it_expect_response(struct it_conn *conn, const char *method, struct it_response *resp)
{
    int r = it_recv_response(conn, method, resp);
    if (r != 0)
        it_fail("no complete response to %s: %s", method, strerror(-r));
}

void it_fetch(struct it_env *env, int port, const char *method, const char *request,
              struct it_response *resp)
{
    struct it_conn *conn = it_connect(env, port);
    it_send_str(conn, request);
    it_expect_response(conn, method, resp);
    it_conn_close(conn);
}

int it_admin_send(struct it_env *env, int port, const char *method, const char *path,
                  const char *token, const char *body, const char **answer)
{
    const char *auth = token != NULL ? it_strf(env, "Authorization: Bearer %s\r\n", token) : "";
    struct it_response r;
    it_fetch(env, port, method,
             it_strf(env, "%s %s HTTP/1.1\r\nHost: admin\r\n%sContent-Length: %zu\r\n\r\n%s",
                     method, path, auth, strlen(body), body),
             &r);
    int status = r.status;
    if (answer != NULL)
        *answer = it_strf(env, "%s", r.body);
    it_response_free(&r);
    return status;
}

void it_get(struct it_env *env, int port, const char *host, const char *path,
            struct it_response *resp)
{
    const char *req = it_strf(env, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    it_fetch(env, port, "GET", req, resp);
}

long it_metric(struct it_env *env, int admin_port, const char *series)
{
    struct it_response r;
    it_get(env, admin_port, "admin", "/metrics", &r);
    const char *at = strstr(r.body, it_strf(env, "\n%s ", series));
    long v = at ? strtol(at + strlen(series) + 2, NULL, 10) : -1;
    it_response_free(&r);
    return v;
}
