/*
 * Ports and plain sockets: ports on 127.0.0.1 that are free or dead, waiting
 * for a descriptor with a deadline (which the HTTP client, the raw backends
 * and the Redis probe all use), one step of a non-blocking send (the HTTP
 * client's and the raw backends'), and the plain-socket helpers for the
 * clients that the it_conn functions do not fit, which must never fail the
 * test.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- ports -------------------------------------------------------------- */

struct sockaddr_in it_loopback(int port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

int it_bind_any_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        it_fail("socket: %s", strerror(errno));
    struct sockaddr_in sin = it_loopback(0);
    socklen_t len = sizeof(sin);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        int e = errno;
        close(fd);
        it_fail("bind 127.0.0.1:0: %s", strerror(e));
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

int it_free_port(void)
{
    /* Never the same port twice in one test process, or two children would clash. */
    static int handed_out[64];
    static size_t next;
    for (;;) {
        int port = 0;
        close(it_bind_any_port(&port));
        bool seen = false;
        for (size_t i = 0; i < 64 && !seen; i++)
            seen = handed_out[i] == port;
        if (!seen) {
            handed_out[next++ % 64] = port;
            return port;
        }
    }
}

int it_dead_port(struct it_env *env)
{
    if (env->ndead == MAX_DEAD_PORTS)
        it_fail("too many dead ports");
    int port = 0;
    env->dead_fds[env->ndead++] = it_bind_any_port(&port);
    return port;
}

/* ---- waiting and sending ------------------------------------------------ */

int it_wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - it_now_ms());
        if (left < 0)
            left = 0;
        int r = poll(&pfd, 1, left);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int it_send_some(int fd, const char **p, size_t *len, int flags)
{
    ssize_t n = send(fd, *p, *len, flags);
    if (n > 0) {
        *p += n;
        *len -= (size_t)n;
        return 0;
    }
    if (n < 0 && errno == EINTR)
        return 0;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -EAGAIN;
    return n < 0 ? -errno : -EPIPE;
}

/* ---- plain sockets ------------------------------------------------------ */

int it_socket_connect(int port, int timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = timeout_s};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -e;
    }
    return fd;
}

int it_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

bool it_head_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            if (len >= cap)
                len = cap - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

int it_read_backend_response(int fd, int *status, char *backend, size_t bcap, char *why,
                             size_t wcap)
{
    char buf[8192];
    size_t len = 0;
    char *end;
    while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
        if (len == sizeof(buf) - 1) {
            snprintf(why, wcap, "response head too large");
            return -1;
        }
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(why, wcap, "connection %s before the response head",
                     n == 0 ? "closed" : strerror(errno));
            return -1;
        }
        len += (size_t)n;
    }
    end[2] = '\0';
    size_t head_len = (size_t)(end - buf) + 4;
    char cl[32];
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1 ||
        !it_head_value(buf, "Content-Length", cl, sizeof(cl))) {
        snprintf(why, wcap, "bad response head: %.80s", buf);
        return -1;
    }
    if (!it_head_value(buf, "X-Backend", backend, bcap))
        backend[0] = '\0';
    size_t want = strtoul(cl, NULL, 10), have = len - head_len;
    if (have > want) {
        snprintf(why, wcap, "%zu bytes after the response", have - want);
        return -1;
    }
    while (have < want) {
        char sink[4096];
        size_t room = want - have < sizeof(sink) ? want - have : sizeof(sink);
        ssize_t n = recv(fd, sink, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(why, wcap, "connection %s in the body", n == 0 ? "closed" : strerror(errno));
            return -1;
        }
        have += (size_t)n;
    }
    return 0;
}
