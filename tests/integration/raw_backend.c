/*
 * The scripted raw backends: a listener on 127.0.0.1 that runs a test's
 * handler on every connection it accepts, for the responses the demo backend
 * cannot give, and records what each handler read so that a test can check
 * exactly what fulcrum sent upstream. The it_raw_*() functions are the ones a
 * handler may call: they return errors instead of failing the test, since a
 * handler runs on a thread of its own.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Threads, unlike the rest of the harness: an accept thread per raw backend
 * and a thread per connection. What they share with the test thread (the
 * list of connections, their recordings, their fds) is guarded by the
 * backend's lock; `stopping` is read and written atomically.
 */
struct it_raw_conn {
    struct it_raw_conn *next; /* in the order accepted */
    struct it_raw_backend *rb;
    pthread_t thread;
    bool started; /* its thread runs (or ran): teardown joins it */
    int fd;       /* -1 once closed; under rb->lock */
    char *data;   /* what the handler read; under rb->lock */
    size_t len, cap;
};

struct it_raw_backend {
    struct it_raw_backend *next;
    int port;
    int listen_fd;
    int wake[2]; /* a byte written to wake[1] stops the accept thread */
    pthread_t thread;
    it_raw_handler handler;
    void *arg;
    pthread_mutex_t lock;
    struct it_raw_conn *conns, **tail;
    size_t nconns;
    int stopping;
};

/* The connection the calling handler thread serves (NULL on other threads). */
static __thread struct it_raw_conn *raw_current;

static bool raw_stopping(const struct it_raw_backend *rb)
{
    return __atomic_load_n(&rb->stopping, __ATOMIC_ACQUIRE) != 0;
}

static void raw_record(struct it_raw_conn *rc, const void *data, size_t len)
{
    pthread_mutex_lock(&rc->rb->lock);
    if (rc->len + len > rc->cap) {
        while (rc->len + len > rc->cap)
            rc->cap = rc->cap ? rc->cap * 2 : 4096;
        rc->data = it_xrealloc(rc->data, rc->cap);
    }
    memcpy(rc->data + rc->len, data, len);
    rc->len += len;
    pthread_mutex_unlock(&rc->rb->lock);
}

ssize_t it_raw_read(int fd, void *buf, size_t cap, int timeout_ms)
{
    struct it_raw_conn *rc = raw_current;
    if (rc != NULL && raw_stopping(rc->rb))
        return -ECANCELED;
    int r = it_wait_fd(fd, POLLIN, timeout_ms);
    if (r != 0)
        return r;
    for (;;) {
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
        if (n > 0) {
            if (rc != NULL && rc->fd == fd)
                raw_record(rc, buf, (size_t)n);
            return n;
        }
        if (n == 0)
            return rc != NULL && raw_stopping(rc->rb) ? -ECANCELED : 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* poll() said readable and it was not (a spurious wake-up): wait again. */
            r = it_wait_fd(fd, POLLIN, timeout_ms);
            if (r != 0)
                return r;
            continue;
        }
        return -errno;
    }
}

/* Milliseconds left until `deadline`, at least 0. */
static int ms_left(int64_t deadline)
{
    int64_t left = deadline - it_now_ms();
    return left > 0 ? (int)left : 0;
}

ssize_t it_raw_read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle,
                          int timeout_ms)
{
    size_t nlen = strlen(needle);
    int64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        const char *at = memmem(buf, *len, needle, nlen);
        if (at != NULL)
            return (ssize_t)(at - buf) + (ssize_t)nlen;
        if (*len == cap)
            return -ENOBUFS;
        ssize_t n = it_raw_read(fd, buf + *len, cap - *len, ms_left(deadline));
        if (n == 0)
            return -EPIPE;
        if (n < 0)
            return n;
        *len += (size_t)n;
    }
}

int it_raw_read_len(int fd, char *buf, size_t cap, size_t *len, size_t want, int timeout_ms)
{
    if (want > cap)
        return -ENOBUFS;
    int64_t deadline = it_now_ms() + timeout_ms;
    while (*len < want) {
        ssize_t n = it_raw_read(fd, buf + *len, cap - *len, ms_left(deadline));
        if (n == 0)
            return -EPIPE;
        if (n < 0)
            return (int)n;
        *len += (size_t)n;
    }
    return 0;
}

void it_raw_consume(char *buf, size_t *len, size_t n)
{
    if (n > *len)
        n = *len;
    memmove(buf, buf + n, *len - n);
    *len -= n;
}

long it_raw_content_length(const char *head, size_t head_len)
{
    static const char name[] = "\r\ncontent-length:";
    size_t nlen = sizeof(name) - 1;
    for (size_t i = 0; i + nlen <= head_len; i++) {
        if (strncasecmp(head + i, name, nlen) != 0)
            continue;
        const char *p = head + i + nlen;
        const char *end = head + head_len;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end || !isdigit((unsigned char)*p))
            return -1;
        long v = 0;
        while (p < end && isdigit((unsigned char)*p) && v < LONG_MAX / 10)
            v = v * 10 + (*p++ - '0');
        return v;
    }
    return -1;
}

int it_raw_write(int fd, const void *data, size_t len)
{
    struct it_raw_conn *rc = raw_current;
    const char *p = data;
    int64_t deadline = it_now_ms() + IT_IO_TIMEOUT_MS;
    while (len > 0) {
        if (rc != NULL && raw_stopping(rc->rb))
            return -ECANCELED;
        int r = it_send_some(fd, &p, &len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r == -EAGAIN)
            r = it_wait_fd(fd, POLLOUT, ms_left(deadline));
        if (r != 0)
            return r;
    }
    return 0;
}

int it_raw_write_str(int fd, const char *s)
{
    return it_raw_write(fd, s, strlen(s));
}

bool it_raw_sleep_ms(int ms)
{
    struct it_raw_conn *rc = raw_current;
    int64_t deadline = it_now_ms() + ms;
    for (;;) {
        if (rc != NULL && raw_stopping(rc->rb))
            return false;
        int left = ms_left(deadline);
        if (left == 0)
            return true;
        it_sleep_ms(left < 10 ? left : 10);
    }
}

static void *raw_conn_main(void *p)
{
    struct it_raw_conn *rc = p;
    struct it_raw_backend *rb = rc->rb;
    raw_current = rc;
    if (!raw_stopping(rb))
        rb->handler(rc->fd, rb->arg);
    raw_current = NULL;

    /*
     * Our end first, then whatever the peer still sends is read and dropped
     * (for a second at most): closing with unread input would send a reset,
     * which may destroy the end of what the handler wrote.
     */
    shutdown(rc->fd, SHUT_WR);
    int64_t deadline = it_now_ms() + 1000;
    char sink[4096];
    while (!raw_stopping(rb) && it_wait_fd(rc->fd, POLLIN, ms_left(deadline)) == 0) {
        ssize_t n = recv(rc->fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            break;
    }
    pthread_mutex_lock(&rb->lock);
    close(rc->fd);
    rc->fd = -1;
    pthread_mutex_unlock(&rb->lock);
    return NULL;
}

static void *raw_accept_main(void *p)
{
    struct it_raw_backend *rb = p;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = rb->listen_fd, .events = POLLIN},
                                {.fd = rb->wake[0], .events = POLLIN}};
        int r = poll(pfd, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || pfd[1].revents != 0 || raw_stopping(rb))
            break;
        int fd = accept4(rb->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* EAGAIN after a connection reset before accept, EMFILE... */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct it_raw_conn *rc = it_xmalloc(sizeof(*rc));
        memset(rc, 0, sizeof(*rc));
        rc->rb = rb;
        rc->fd = fd;
        /* Listed before its thread runs: what the handler records is visible at once. */
        pthread_mutex_lock(&rb->lock);
        *rb->tail = rc;
        rb->tail = &rc->next;
        rb->nconns++;
        pthread_mutex_unlock(&rb->lock);
        if (pthread_create(&rc->thread, NULL, raw_conn_main, rc) != 0) {
            fprintf(stderr, "harness: raw backend %d: cannot start a connection thread\n",
                    rb->port);
            pthread_mutex_lock(&rb->lock);
            close(fd);
            rc->fd = -1;
            pthread_mutex_unlock(&rb->lock);
            continue;
        }
        rc->started = true;
    }
    return NULL;
}

int it_raw_backend_start(struct it_env *env, it_raw_handler handler, void *arg)
{
    struct it_raw_backend *rb = it_xmalloc(sizeof(*rb));
    memset(rb, 0, sizeof(*rb));
    rb->handler = handler;
    rb->arg = arg;
    rb->tail = &rb->conns;
    rb->listen_fd = it_bind_any_port(&rb->port);
    if (listen(rb->listen_fd, 128) != 0 || pipe2(rb->wake, O_CLOEXEC) != 0) {
        int e = errno;
        close(rb->listen_fd);
        free(rb);
        it_fail("raw backend: listen or pipe: %s", strerror(e));
    }
    pthread_mutex_init(&rb->lock, NULL);
    if (pthread_create(&rb->thread, NULL, raw_accept_main, rb) != 0) {
        close(rb->listen_fd);
        close(rb->wake[0]);
        close(rb->wake[1]);
        pthread_mutex_destroy(&rb->lock);
        free(rb);
        it_fail("raw backend: cannot start its thread");
    }
    rb->next = env->raw_backends;
    env->raw_backends = rb;
    return rb->port;
}

static struct it_raw_backend *raw_find(struct it_env *env, int port)
{
    for (struct it_raw_backend *rb = env->raw_backends; rb != NULL; rb = rb->next)
        if (rb->port == port)
            return rb;
    it_fail("no raw backend on port %d", port);
    return NULL;
}

size_t it_raw_backend_conns(struct it_env *env, int port)
{
    struct it_raw_backend *rb = raw_find(env, port);
    pthread_mutex_lock(&rb->lock);
    size_t n = rb->nconns;
    pthread_mutex_unlock(&rb->lock);
    return n;
}

const char *it_raw_backend_received(struct it_env *env, int port, size_t i, size_t *len)
{
    struct it_raw_backend *rb = raw_find(env, port);
    const char *copy = NULL;
    pthread_mutex_lock(&rb->lock);
    struct it_raw_conn *rc = rb->conns;
    for (size_t k = 0; rc != NULL && k < i; k++)
        rc = rc->next;
    if (rc != NULL) {
        copy = it_env_strdup_len(env, rc->data ? rc->data : "", rc->len);
        if (len != NULL)
            *len = rc->len;
    }
    pthread_mutex_unlock(&rb->lock);
    return copy;
}

const char *it_raw_backend_received_all(struct it_env *env, int port, size_t *len)
{
    struct it_raw_backend *rb = raw_find(env, port);
    pthread_mutex_lock(&rb->lock);
    size_t total = 0;
    for (struct it_raw_conn *rc = rb->conns; rc != NULL; rc = rc->next)
        total += rc->len;
    char *copy = it_zalloc(env, total + 1);
    size_t off = 0;
    for (struct it_raw_conn *rc = rb->conns; rc != NULL; rc = rc->next) {
        if (rc->len > 0)
            memcpy(copy + off, rc->data, rc->len);
        off += rc->len;
    }
    pthread_mutex_unlock(&rb->lock);
    if (len != NULL)
        *len = total;
    return copy;
}

void it_raw_backends_stop(struct it_env *env)
{
    while (env->raw_backends != NULL) {
        struct it_raw_backend *rb = env->raw_backends;
        env->raw_backends = rb->next;
        __atomic_store_n(&rb->stopping, 1, __ATOMIC_RELEASE);
        ssize_t w;
        do {
            w = write(rb->wake[1], "x", 1);
        } while (w < 0 && errno == EINTR);
        pthread_join(rb->thread, NULL);
        close(rb->listen_fd);
        close(rb->wake[0]);
        close(rb->wake[1]);
        /* No new connection now; shutting the open ones down wakes their handlers. */
        pthread_mutex_lock(&rb->lock);
        for (struct it_raw_conn *rc = rb->conns; rc != NULL; rc = rc->next)
            if (rc->fd >= 0)
                shutdown(rc->fd, SHUT_RDWR);
        pthread_mutex_unlock(&rb->lock);
        while (rb->conns != NULL) {
            struct it_raw_conn *rc = rb->conns;
            rb->conns = rc->next;
            if (rc->started)
                pthread_join(rc->thread, NULL);
            free(rc->data);
            free(rc);
        }
        pthread_mutex_destroy(&rb->lock);
        free(rb);
    }
}
