/*
 * Worker threads; see worker.h. This file is the thread's lifecycle only:
 * starting its loop, adopting new generations, draining and stopping. The
 * request path runs in the rooms below it (listener.c, client.c,
 * upstream.c, txn*.c, access_log.c), which report up through the two hooks
 * of struct fc_worker.
 */
#include "worker.h"

#include "access_log.h"
#include "client.h"
#include "generation.h"
#include "listener.h"
#include "tls.h"
#include "log.h"
#include "txn.h"
#include "upstream.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uv_async_t *exit_notify;

void fc_worker_notify_exit(uv_async_t *async)
{
    exit_notify = async;
}

/* After each loop iteration: the access log lines of this iteration go out in one write. */
static void flush_check_cb(uv_check_t *h)
{
    fc_access_log_flush(h->data);
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
 * and let uv_run() return. The rooms call it (through on_connection_closed)
 * whenever a connection closes.
 */
static void maybe_done(struct fc_worker *w)
{
    if (!w->draining || fc_clients_count(w) > 0)
        return;
    /* Last use of the current generation on this thread: rate limiters close their handles. */
    fc_generation_worker_leave(w->gen, w->index, &w->loop);
    fc_upstreams_close_idle(w);
    if (fc_upstreams_count(w) > 0)
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

/*
 * The worker is done with generation g: runs the rate limiters' worker_stop()
 * here, and drops the worker's reference a full loop iteration later, once
 * the close callbacks of handles the plugins closed have run (their code
 * must still be loaded then).
 */
static void retire(struct fc_worker *w, struct fc_generation *g)
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

/* A reload removed listener l: its idle connections close, the others after their request. */
static void listener_removed(struct fc_worker *w, struct fc_listener *l)
{
    fc_txn_wind_down(w, l);
}

static void switch_generation(struct fc_worker *w, struct fc_generation *g)
{
    struct fc_generation *old = w->gen;
    w->gen = g;
    __atomic_store_n(&w->adopted, g->id, __ATOMIC_RELEASE);
    fc_generation_worker_enter(g, w->index, &w->loop);
    /* Backends g drained or removed keep no idle connection here. */
    fc_upstreams_close_retiring(w, old);
    if (!w->draining)
        fc_listeners_update(w, g->cfg, fc_client_on_connection, listener_removed);
    if (fc_generation_requests(old, w->index) == 0)
        retire(w, old);
    /* else: its last request here releases it (on_generation_done) */
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
        fc_listeners_close(w);
        fc_txn_wind_down(w, NULL);
    }
    if (stop >= 2)
        fc_clients_close(w);
    if (stop >= 1)
        maybe_done(w);
}

int fc_worker_init(struct fc_worker *w, uint32_t index, struct fc_generation *gen, int *listen_fds,
                   uint32_t n_listen_fds)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->on_connection_closed = maybe_done;
    w->on_generation_done = retire;
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
    w->adopted = gen->id;
    w->tls = fc_tls_worker_new(&w->loop);
    if (w->tls == NULL || fc_client_worker_init(w) != 0 || fc_upstream_worker_init(w) != 0 ||
        fc_txn_worker_init(w) != 0 || fc_access_log_worker_init(w) != 0)
        return UV_ENOMEM;
    w->listeners = calloc(n_listen_fds, sizeof(*w->listeners));
    if (w->listeners == NULL && n_listen_fds > 0)
        return UV_ENOMEM;
    for (uint32_t i = 0; i < n_listen_fds; i++) {
        struct fc_listener *l = fc_listener_open(w, gen->cfg->listeners[i].address, (int32_t)i,
                                                 listen_fds[i], fc_client_on_connection);
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
    if (exit_notify != NULL)
        uv_async_send(exit_notify);
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
    free(w->listeners);
    w->listeners = NULL;
    fc_access_log_worker_free(w);
    fc_txn_worker_free(w);
    fc_upstream_worker_free(w);
    fc_client_worker_free(w);
    fc_tls_worker_free(w->tls);
    w->tls = NULL;
}
