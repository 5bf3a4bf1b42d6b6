/*
 * Listening sockets; see listener.h.
 */
#define _GNU_SOURCE /* accept4() */
#include "listener.h"

#include "config.h"
#include "generation.h"
#include "log.h"
#include "stats.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The accept queue of each socket. */
#define BACKLOG 1024

/*
 * A bound TCP socket for addr, listening when `shared`: shared sockets carry
 * SO_REUSEPORT, so that each worker binds its own to the same address and
 * the kernel spreads connections over them. TCP_NODELAY is set here because
 * Linux copies it to every connection accepted from the socket: one
 * setsockopt() per listener instead of one per connection.
 */
static int bound_socket(const struct sockaddr *addr, socklen_t len, int shared)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        goto fail;
    if (addr->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
        goto fail;
    if (bind(fd, addr, len) != 0 || (shared && listen(fd, BACKLOG) != 0))
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

int fc_listen_socket(const struct sockaddr *addr, socklen_t len, int defer_accept)
{
    int fd = bound_socket(addr, len, 1);
    if (fd >= 0)
        fc_listen_socket_defer(fd, defer_accept);
    return fd;
}

void fc_listen_socket_defer(int fd, int on)
{
    /*
     * The kernel completes the handshake but hands the connection over only
     * once its first bytes have come (or, for a silent one, after a second and
     * a retransmitted SYN-ACK): accept() and the first read() come in one
     * wake-up, and a connection that never speaks costs no accept at all.
     */
    int secs = on ? 1 : 0;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs));
}

int fc_listen_socket_exclusive(const struct sockaddr *addr, socklen_t len, int backlog)
{
    int fd = bound_socket(addr, len, 0);
    if (fd >= 0 && listen(fd, backlog) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int fc_listen_unix(const char *path, int backlog, const char **why)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    memcpy(sun.sun_path, path, strlen(path) + 1);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            *why = "the path exists and is not a socket";
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return -errno;
        int rc = connect(probe, (const struct sockaddr *)&sun, sizeof(sun));
        int err = rc == 0 ? 0 : errno;
        close(probe);
        if (rc == 0 || err == EAGAIN || err == EINPROGRESS) {
            *why = "address already in use (another fulcrum, or another server, listens there)";
            return -EADDRINUSE;
        }
        if (err != ECONNREFUSED)
            return -err;
        if (unlink(path) != 0 && errno != ENOENT) /* stale: nobody listens */
            return -errno;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (const struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (chmod(path, 0660) != 0 || listen(fd, backlog) != 0) {
        int err = errno;
        unlink(path);
        close(fd);
        return -err;
    }
    return fd;
}

int fc_listen_check_free(const struct sockaddr *addr, socklen_t len)
{
    /* Without SO_REUSEPORT, the bind fails on an address that any socket listens on. */
    int fd = bound_socket(addr, len, 0);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

/* Client connections open over all workers (atomic). */
static uint32_t open_conns;

/* Connections accepted per readiness event at most, so that one listener cannot starve the loop. */
#define ACCEPT_BATCH 64

uint32_t fc_listener_connections(void)
{
    return __atomic_load_n(&open_conns, __ATOMIC_RELAXED);
}

static void listener_free(struct fc_listener *l)
{
    fc_stats_release(l->stats);
    free(l);
}

void fc_listener_acquire(struct fc_listener *l)
{
    l->conns++;
    __atomic_add_fetch(&open_conns, 1, __ATOMIC_RELAXED);
    fc_stats_add(&fc_stats_listener(l->stats, l->worker->index)->accepted, 1);
}

void fc_listener_release(struct fc_listener *l)
{
    __atomic_sub_fetch(&open_conns, 1, __ATOMIC_RELAXED);
    fc_stats_add(&fc_stats_listener(l->stats, l->worker->index)->closed, 1);
    if (--l->conns == 0 && l->handles == 0)
        listener_free(l); /* its handles closed earlier; the last connection frees it */
}

static void listener_on_close(uv_handle_t *h)
{
    struct fc_listener *l = h->data;
    if (--l->handles == 0 && l->conns == 0)
        listener_free(l);
    /* else: the last of its connections frees it */
}

/* Stops accepting on l; its open connections keep it allocated until they end. */
static void listener_close(struct fc_listener *l)
{
    l->closing = 1;
    free(l->address);
    l->address = NULL;
    l->conf_index = -1;
    uv_close((uv_handle_t *)&l->poll, listener_on_close);
    uv_close((uv_handle_t *)&l->retry, listener_on_close);
    close(l->fd); /* the poll handle is off the loop: closing the socket is safe now */
    l->fd = -1;
}

void fc_listeners_close(struct fc_worker *w)
{
    for (uint32_t i = 0; i < w->n_listeners; i++)
        listener_close(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->n_listeners = 0;
}

static void accept_ready(uv_poll_t *h, int status, int events);

static void resume(uv_timer_t *t)
{
    struct fc_listener *l = t->data;
    if (l->closing)
        return;
    l->paused = 0;
    uv_poll_start(&l->poll, UV_READABLE, accept_ready);
}

/*
 * Stops accepting for FC_LISTENER_PAUSE_MS: nothing is lost, the kernel
 * keeps the connections in the backlog. Said in the log at most every 10 s,
 * with how many pauses there were since.
 */
static void pause_accepting(struct fc_listener *l, const char *why)
{
    struct fc_worker *w = l->worker;
    uv_poll_stop(&l->poll);
    l->paused = 1;
    l->pauses++;
    uint64_t now = uv_now(&w->loop);
    if (l->last_pause_log == 0 || now - l->last_pause_log >= 10000) {
        fc_log_warn("listener %s: worker %u: accepting paused: %s (%llu times since the last "
                    "such line); new connections wait in the backlog, retried every %u ms",
                    l->address, w->index, why, (unsigned long long)l->pauses, FC_LISTENER_PAUSE_MS);
        l->last_pause_log = now;
        l->pauses = 0;
    }
    uv_timer_start(&l->retry, resume, FC_LISTENER_PAUSE_MS, 0);
}

static void accept_ready(uv_poll_t *h, int status, int events)
{
    struct fc_listener *l = h->data;
    struct fc_worker *w = l->worker;
    if (status < 0) {
        fc_log_warn("listener %s: %s", l->address, uv_strerror(status));
        return;
    }
    uint32_t max = w->gen->cfg->limits.max_connections;
    for (int i = 0; i < ACCEPT_BATCH && !l->closing; i++) {
        if (fc_listener_connections() >= max) {
            pause_accepting(l, "limits.max_connections reached");
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            l->on_accept(l, fd, (const struct sockaddr *)&peer, len);
            continue;
        }
        switch (errno) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return; /* all accepted */
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue; /* that one is gone; the next may be there */
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            pause_accepting(l, strerror(errno));
            return;
        default:
            fc_log_warn("listener %s: accept: %s", l->address, strerror(errno));
            return;
        }
    }
}

struct fc_listener *fc_listener_open(struct fc_worker *w, const char *address, int32_t conf_index,
                                     int fd, fc_accept_cb on_accept)
{
    struct fc_listener *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->address = strdup(address)) == NULL ||
        (l->stats = fc_stats_acquire(FC_STATS_LISTENER, address, w->gen->n_workers)) == NULL) {
        if (l != NULL)
            free(l->address);
        free(l);
        close(fd);
        return NULL;
    }
    l->worker = w;
    l->conf_index = conf_index;
    l->on_accept = on_accept;
    l->fd = fd;
    int rc = uv_poll_init_socket(&w->loop, &l->poll, fd);
    if (rc != 0) {
        fc_log_error("listener %s: %s", address, uv_strerror(rc));
        free(l->address);
        listener_free(l);
        close(fd);
        return NULL;
    }
    uv_timer_init(&w->loop, &l->retry);
    l->poll.data = l->retry.data = l;
    l->handles = 2;
    rc = uv_poll_start(&l->poll, UV_READABLE, accept_ready);
    if (rc != 0) {
        fc_log_error("listener %s: %s", address, uv_strerror(rc));
        listener_close(l);
        return NULL;
    }
    return l;
}

void fc_listeners_update(struct fc_worker *w, const struct fc_config *cfg, fc_accept_cb on_accept,
                         void (*removed)(struct fc_worker *w, struct fc_listener *l))
{
    struct fc_listener **next = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*next));
    if (next == NULL) {
        fc_log_error("worker %u: out of memory updating listeners", w->index);
        return;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->n_listeners; i++) {
        struct fc_listener *l = w->listeners[i];
        l->conf_index = -1;
        for (uint32_t k = 0; k < cfg->n_listeners; k++)
            if (strcmp(cfg->listeners[k].address, l->address) == 0)
                l->conf_index = (int32_t)k;
        if (l->conf_index >= 0) {
            fc_listen_socket_defer(l->fd, cfg->listeners[l->conf_index].defer_accept);
            next[n++] = l;
            continue;
        }
        removed(w, l);
        listener_close(l);
    }
    for (uint32_t k = 0; k < cfg->n_listeners && !w->draining; k++) {
        int found = 0;
        for (uint32_t i = 0; i < n; i++)
            found |= next[i]->conf_index == (int32_t)k;
        if (found)
            continue;
        const struct fc_conf_listener *cl = &cfg->listeners[k];
        int fd =
            fc_listen_socket((const struct sockaddr *)&cl->addr, cl->addr_len, cl->defer_accept);
        if (fd < 0) {
            fc_log_error("listener %s: worker %u: %s", cl->address, w->index, strerror(-fd));
            continue;
        }
        struct fc_listener *l = fc_listener_open(w, cl->address, (int32_t)k, fd, on_accept);
        if (l != NULL)
            next[n++] = l;
    }
    free(w->listeners);
    w->listeners = next;
    w->n_listeners = n;
}
