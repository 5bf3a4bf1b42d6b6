#include "worker.h"

#include "log.h"
#include "proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fc_runtime fc_runtime = {.access_log_fd = -1};

#define LOG_BUF_SIZE (64 * 1024)
/* Free lists keep at most this many blocks each; beyond, memory goes back to malloc. */
#define FREE_LIST_MAX 4096

int fc_listen_socket(const struct sockaddr *addr, socklen_t len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* Each worker binds its own socket to the same address; the kernel spreads connections. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (addr->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
        goto fail;
    if (bind(fd, addr, len) != 0 || listen(fd, 1024) != 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

void *fc_worker_alloc(struct fc_worker *w, struct fc_free_block **list, uint32_t *count,
                      size_t size)
{
    (void)w;
    struct fc_free_block *b = *list;
    if (b != NULL) {
        *list = b->next;
        (*count)--;
        return b;
    }
    return malloc(size < sizeof(*b) ? sizeof(*b) : size);
}

void fc_worker_free(struct fc_worker *w, struct fc_free_block **list, uint32_t *count, void *p)
{
    (void)w;
    if (*count >= FREE_LIST_MAX) {
        free(p);
        return;
    }
    struct fc_free_block *b = p;
    b->next = *list;
    *list = b;
    (*count)++;
}

static void flush_access_log(struct fc_worker *w)
{
    size_t off = 0;
    while (off < w->log_len) {
        ssize_t n = write(fc_runtime.access_log_fd, w->log_buf + off, w->log_len - off);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break; /* a log that cannot be written must not stop the proxy */
        }
        off += (size_t)n;
    }
    w->log_len = 0;
}

void fc_worker_access_log(struct fc_worker *w, const char *line, size_t len)
{
    if (w->log_buf == NULL) {
        w->log_buf = malloc(LOG_BUF_SIZE);
        if (w->log_buf == NULL)
            return;
    }
    if (w->log_len + len + 1 > LOG_BUF_SIZE)
        flush_access_log(w);
    if (len + 1 > LOG_BUF_SIZE)
        return;
    memcpy(w->log_buf + w->log_len, line, len);
    w->log_len += len;
    w->log_buf[w->log_len++] = '\n';
}

/* After each loop iteration: the lines of this iteration go out in one write. */
static void flush_check_cb(uv_check_t *h)
{
    struct fc_worker *w = h->data;
    if (w->log_len > 0)
        flush_access_log(w);
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

static void close_listeners(struct fc_worker *w)
{
    for (uint32_t i = 0; i < w->n_listeners; i++)
        listener_close(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->n_listeners = 0;
}

/* A listener of this worker on an fd that is bound and listening already. */
static struct fc_listener *listener_open(struct fc_worker *w, const char *address, int32_t index,
                                         int fd)
{
    struct fc_listener *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->address = strdup(address)) == NULL) {
        free(l);
        close(fd);
        return NULL;
    }
    l->worker = w;
    l->conf_index = index;
    uv_tcp_init(&w->loop, &l->tcp);
    l->tcp.data = l;
    int rc = uv_tcp_open(&l->tcp, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 1024, fc_proxy_on_connection);
    if (rc != 0) {
        fc_log_error("listener %s: %s", address, uv_strerror(rc));
        listener_close(l);
        return NULL;
    }
    return l;
}

/*
 * Brings the worker's listeners in line with generation g: a listener whose
 * address stays keeps its socket (and its connections); a new address gets a
 * socket of this worker's own; a removed one stops accepting, and its
 * connections end after their current request.
 */
static void update_listeners(struct fc_worker *w, struct fc_generation *g)
{
    const struct fc_config *cfg = g->cfg;
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
        fc_proxy_listener_removed(w, l);
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
        struct fc_listener *l = listener_open(w, cl->address, (int32_t)k, fd);
        if (l != NULL)
            next[n++] = l;
    }
    free(w->listeners);
    w->listeners = next;
    w->n_listeners = n;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/*
 * Once draining has closed the last client connection, nothing keeps the loop
 * alive but idle upstream connections and the worker's own handles: close them
 * and let uv_run() return.
 */
void fc_worker_maybe_done(struct fc_worker *w)
{
    if (!w->draining || w->n_clients > 0)
        return;
    /* Last use of the current generation on this thread: rate limiters close their handles. */
    fc_generation_worker_leave(w->gen, w->index, &w->loop);
    fc_proxy_close_idle_upstreams(w);
    if (w->n_upstreams > 0)
        return;
    if (!uv_is_closing((uv_handle_t *)&w->wakeup)) {
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        uv_close((uv_handle_t *)&w->flush_check, NULL);
    }
}

/*
 * Retired generations are released in two steps, one loop iteration apart:
 * a retire can happen in any phase of an iteration (a timer, a write
 * callback, a read), and the handles a plugin's worker_stop() closed get
 * their close callbacks in that iteration's closing phase, which must run
 * while the plugin's code is still loaded. The idle handle (which also keeps
 * the loop from blocking meanwhile) moves `retired` to `ready` in one
 * iteration and releases `ready` in the next, so a whole closing phase always
 * lies between a worker_stop() and the release.
 */
static void release_idle_cb(uv_idle_t *h)
{
    struct fc_worker *w = h->data;
    for (uint32_t i = 0; i < w->n_ready; i++)
        fc_generation_release(w->ready[i]);
    w->n_ready = 0;
    struct fc_generation **swap = w->ready;
    uint32_t cap = w->cap_ready;
    w->ready = w->retired;
    w->cap_ready = w->cap_retired;
    w->n_ready = w->n_retired;
    w->retired = swap;
    w->cap_retired = cap;
    w->n_retired = 0;
    if (w->n_ready == 0)
        uv_idle_stop(h);
}

void fc_worker_retire(struct fc_worker *w, struct fc_generation *g)
{
    fc_generation_worker_leave(g, w->index, &w->loop);
    if (w->n_retired == w->cap_retired) {
        uint32_t cap = w->cap_retired ? 2 * w->cap_retired : 4;
        struct fc_generation **grown = realloc(w->retired, cap * sizeof(*grown));
        if (grown == NULL) {
            /* Cannot wait for the close callbacks: hold the generation for good rather
             * than unload code they may still run. Logged; a leak, not a crash. */
            fc_log_error("worker %u: out of memory: generation %llu kept", w->index,
                         (unsigned long long)g->id);
            return;
        }
        w->retired = grown;
        w->cap_retired = cap;
    }
    w->retired[w->n_retired++] = g;
    uv_idle_start(&w->release_idle, release_idle_cb);
}

static void switch_generation(struct fc_worker *w, struct fc_generation *g)
{
    struct fc_generation *old = w->gen;
    w->gen = g;
    fc_generation_worker_enter(g, w->index, &w->loop);
    if (!w->draining)
        update_listeners(w, g);
    if (old->workers[w->index].requests == 0)
        fc_worker_retire(w, old);
    /* else: its last request here releases it */
}

static void wakeup_cb(uv_async_t *h)
{
    struct fc_worker *w = h->data;
    struct fc_generation *g = __atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL);
    if (g != NULL)
        switch_generation(w, g);
    uint32_t stop = __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE);
    if (stop >= 1 && !w->draining) {
        w->draining = 1;
        close_listeners(w);
        fc_proxy_drain(w);
    }
    if (stop >= 2)
        fc_proxy_close_clients(w);
    if (stop >= 1)
        fc_worker_maybe_done(w);
}

int fc_worker_init(struct fc_worker *w, uint32_t index, struct fc_generation *gen, int *listen_fds,
                   uint32_t n_listen_fds)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    int rc = uv_loop_init(&w->loop);
    if (rc != 0)
        return rc;
    uv_async_init(&w->loop, &w->wakeup, wakeup_cb);
    w->wakeup.data = w;
    uv_idle_init(&w->loop, &w->release_idle);
    w->release_idle.data = w;
    uv_check_init(&w->loop, &w->flush_check);
    w->flush_check.data = w;
    uv_check_start(&w->flush_check, flush_check_cb);
    uv_unref((uv_handle_t *)&w->flush_check);

    fc_generation_acquire(gen);
    w->gen = gen;
    w->listeners = calloc(n_listen_fds, sizeof(*w->listeners));
    if (w->listeners == NULL && n_listen_fds > 0)
        return UV_ENOMEM;
    for (uint32_t i = 0; i < n_listen_fds; i++) {
        struct fc_listener *l =
            listener_open(w, gen->cfg->listeners[i].address, (int32_t)i, listen_fds[i]);
        if (l == NULL) {
            for (uint32_t k = i + 1; k < n_listen_fds; k++)
                close(listen_fds[k]);
            return UV_ENOMEM;
        }
        w->listeners[w->n_listeners++] = l;
    }
    return 0;
}

static void worker_main(void *arg)
{
    struct fc_worker *w = arg;
    fc_generation_worker_enter(w->gen, w->index, &w->loop);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    __atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
    if (fc_runtime.worker_exited != NULL)
        uv_async_send(fc_runtime.worker_exited);
}

int fc_worker_start(struct fc_worker *w)
{
    return uv_thread_create(&w->thread, worker_main, w);
}

void fc_worker_publish(struct fc_worker *w, struct fc_generation *g)
{
    fc_generation_acquire(g);
    struct fc_generation *prev = __atomic_exchange_n(&w->pending, g, __ATOMIC_ACQ_REL);
    if (prev != NULL)
        fc_generation_release(prev); /* never seen by the worker */
    uv_async_send(&w->wakeup);
}

void fc_worker_request_stop(struct fc_worker *w, uint32_t level)
{
    __atomic_store_n(&w->stop, level, __ATOMIC_RELEASE);
    uv_async_send(&w->wakeup);
}

void fc_worker_join(struct fc_worker *w)
{
    uv_thread_join(&w->thread);
    /* Close whatever is left (a stop before the loop ran), then let callbacks finish. */
    uv_walk(&w->loop, close_handle, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    struct fc_generation *g = __atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL);
    if (g != NULL)
        fc_generation_release(g);
    if (w->gen != NULL)
        fc_generation_release(w->gen);
    w->gen = NULL;
    for (uint32_t i = 0; i < w->n_retired; i++)
        fc_generation_release(w->retired[i]);
    for (uint32_t i = 0; i < w->n_ready; i++)
        fc_generation_release(w->ready[i]);
    free(w->retired);
    free(w->ready);
    w->retired = w->ready = NULL;
    w->n_retired = w->n_ready = 0;
    if (w->log_len > 0)
        flush_access_log(w);
    free(w->log_buf);
    fc_proxy_free_lists(w);
}
