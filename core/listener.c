/*
 * Listening sockets; see listener.h.
 */
#include "listener.h"

#include "config.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The accept queue of each socket. */
#define BACKLOG 1024

/*
 * A bound TCP socket for addr, listening when `shared`: shared sockets carry
 * SO_REUSEPORT, so that each worker binds its own to the same address and
 * the kernel spreads connections over them.
 */
static int bound_socket(const struct sockaddr *addr, socklen_t len, int shared)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0))
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

int fc_listen_socket(const struct sockaddr *addr, socklen_t len)
{
    return bound_socket(addr, len, 1);
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

void fc_listener_release(struct fc_listener *l)
{
    if (--l->conns == 0 && l->closed)
        free(l); /* its handle closed earlier; the last connection frees it */
}

static void listener_on_close(uv_handle_t *h)
{
    struct fc_listener *l = h->data;
    l->closed = 1;
    if (l->conns == 0)
        free(l);
    /* else: the last of its connections frees it */
}

/* Stops accepting on l; its open connections keep it allocated until they end. */
static void listener_close(struct fc_listener *l)
{
    free(l->address);
    l->address = NULL;
    l->conf_index = -1;
    uv_close((uv_handle_t *)&l->tcp, listener_on_close);
}

void fc_listeners_close(struct fc_worker *w)
{
    for (uint32_t i = 0; i < w->n_listeners; i++)
        listener_close(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->n_listeners = 0;
}

struct fc_listener *fc_listener_open(struct fc_worker *w, const char *address, int32_t conf_index,
                                     int fd, uv_connection_cb on_connection)
{
    struct fc_listener *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->address = strdup(address)) == NULL) {
        free(l);
        close(fd);
        return NULL;
    }
    l->worker = w;
    l->conf_index = conf_index;
    uv_tcp_init(&w->loop, &l->tcp);
    l->tcp.data = l;
    int rc = uv_tcp_open(&l->tcp, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, BACKLOG, on_connection);
    if (rc != 0) {
        fc_log_error("listener %s: %s", address, uv_strerror(rc));
        listener_close(l);
        return NULL;
    }
    return l;
}

void fc_listeners_update(struct fc_worker *w, const struct fc_config *cfg,
                         uv_connection_cb on_connection,
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
        int fd = fc_listen_socket((const struct sockaddr *)&cl->addr, cl->addr_len);
        if (fd < 0) {
            fc_log_error("listener %s: worker %u: %s", cl->address, w->index, strerror(-fd));
            continue;
        }
        struct fc_listener *l = fc_listener_open(w, cl->address, (int32_t)k, fd, on_connection);
        if (l != NULL)
            next[n++] = l;
    }
    free(w->listeners);
    w->listeners = next;
    w->n_listeners = n;
}
