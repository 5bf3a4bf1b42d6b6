/*
 * fulcrum: the daemon. The main thread parses the command line, builds the
 * first generation, opens the admin listener, binds one SO_REUSEPORT socket
 * per listener and worker, starts the workers, and then runs the control
 * loop: signals (reload, stop, log reopening), the admin listener, and the
 * destruction of generations nobody uses any more.
 */
#include "access_log.h"
#include "admin.h"
#include "dashboard.h"
#include "discovery.h"
#include "dns.h"
#include "monitor.h"
#include "runtime.h"
#include "config.h"
#include "ctl.h"
#include "plugin_check.h"
#include "generation.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "log_writer.h"
#include "txn.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* How long the log writer gets at exit to write out what it holds. */
#define LOG_DRAIN_MS 1000
/* POST /api/reload requests that may wait for one reload; more get 503. */
#define MAX_RELOAD_WAITERS 16

struct daemon;

/*
 * A reload in progress. The file is read and checked, and the names it
 * holds resolved, on a thread of libuv's pool (reload_load()), so that the
 * main loop goes on with its checks, admin requests and DNS meanwhile;
 * the rest runs on the main loop: the first answers for new DNS entries,
 * then the build (reload_build()).
 */
struct reload_job {
    uv_work_t work;
    struct daemon *d;
    struct fc_config *cfg; /* loaded; NULL when loading failed */
    int rc;
    int resolving; /* waiting for the first DNS answers of cfg's new entries */
    char last_error[512];
    char errors[16384]; /* every error line, for the POST /api/reload answers */
    struct fc_admin_later *waiters[MAX_RELOAD_WAITERS];
    uint32_t n_waiters;
};

struct daemon {
    uv_loop_t *loop;
    const char *config_path;
    struct fc_generation *gen; /* current; one reference held */
    struct fc_worker *workers;
    uint32_t n_workers;
    struct fc_admin *admin;     /* NULL once stopping */
    struct fc_monitor *monitor; /* its metrics, status and events */
    struct fc_runtime *runtime; /* the runtime API's overlay and state file */
    struct fc_discovery *dns;   /* backends from DNS; NULL once stopping */
    uint64_t dns_in_force;      /* fc_discovery_version() when the generation in force was built */
    uv_timer_t dns_retry;       /* a generation for DNS's sets that could not be built, again */
    struct reload_job *reloading;                     /* the reload in progress, or NULL */
    int reload_again;                                 /* asked for while one was in progress */
    struct fc_admin_later *asked[MAX_RELOAD_WAITERS]; /* POSTs for the next reload */
    uint32_t n_asked;
    double start_unix;
    uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
    uv_async_t reap_async, exited_async;
    uv_timer_t shutdown_timer;
    uv_mutex_t reap_lock;
    struct fc_generation *dead; /* generations to destroy, under reap_lock */
    int stopping;
    /* Reload outcomes, kept for the metrics to come and reported in the log. */
    struct {
        uint64_t ok, failed;
        uint64_t last_ok_unix; /* 0: never */
        char last_error[512];  /* the last error line of the last failed reload */
    } reloads;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: fulcrum -c FILE [-t]\n"
                 "       fulcrum ctl [OPTIONS] COMMAND   (the admin listener's client: "
                 "fulcrum ctl --help)\n"
                 "       fulcrum plugin-check FILE.so [KEY=VALUE ...]   (checks a plugin: "
                 "fulcrum plugin-check --help)\n"
                 "\n"
                 "  -c, --config FILE  configuration file (libconfig syntax)\n"
                 "  -t, --test         check the configuration and load every plugin, then exit\n"
                 "  -v, --version      print the version and the plugin ABI, then exit\n"
                 "  -h, --help         print this help\n"
                 "\n"
                 "Signals: HUP reloads the configuration, TERM and INT stop after in-flight\n"
                 "requests (bounded by timeouts.shutdown_ms), USR1 reopens the access log.\n");
}

/* Generations whose last reference went, from any thread, reach the main loop here. */
static void reaper(void *arg, struct fc_generation *g)
{
    struct daemon *d = arg;
    uv_mutex_lock(&d->reap_lock);
    g->next_dead = d->dead;
    d->dead = g;
    uv_mutex_unlock(&d->reap_lock);
    uv_async_send(&d->reap_async);
}

static void reap(struct daemon *d)
{
    uv_mutex_lock(&d->reap_lock);
    struct fc_generation *g = d->dead;
    d->dead = NULL;
    uv_mutex_unlock(&d->reap_lock);
    while (g != NULL) {
        struct fc_generation *next = g->next_dead;
        fc_log_info("generation %llu released", (unsigned long long)g->id);
        fc_generation_destroy(g);
        g = next;
    }
}

static void reap_cb(uv_async_t *h)
{
    reap(h->data);
}

static void release_generation(void *arg)
{
    fc_generation_release(arg);
}

/*
 * A listener's address must be free before this daemon binds it: with
 * SO_REUSEPORT a second fulcrum (or anything else that sets it) could bind
 * the same address without error, and the kernel would split the traffic
 * between two daemons that may run different configurations.
 */
static int check_free(const struct fc_config *cfg, const struct fc_conf_listener *l)
{
    int rc = fc_listen_check_free((const struct sockaddr *)&l->addr, l->addr_len);
    if (rc == -EADDRINUSE)
        fc_log_error("%s:%d: listener %s: address already in use (another fulcrum, or another "
                     "server, listens there)",
                     cfg->path, l->line, l->address);
    else if (rc < 0)
        fc_log_error("%s:%d: listener %s: %s", cfg->path, l->line, l->address, strerror(-rc));
    return rc;
}

/*
 * Listeners the new file adds must be free before the reload is accepted;
 * each worker then binds its own socket when it adopts the generation.
 */
static int check_new_listeners(const struct fc_config *next, const struct fc_config *cur)
{
    int rc = 0;
    for (uint32_t i = 0; i < next->n_listeners; i++) {
        const struct fc_conf_listener *l = &next->listeners[i];
        int known = 0;
        for (uint32_t k = 0; k < cur->n_listeners; k++)
            known |= strcmp(cur->listeners[k].address, l->address) == 0;
        if (!known && check_free(next, l) != 0)
            rc = FC_ERROR;
    }
    return rc;
}

/*
 * g (its checkers started) replaces the generation in force: the workers
 * take it on their next turn, the old checkers finish their probes and stop.
 */
static void put_in_force(struct daemon *d, struct fc_generation *g, uint64_t dns_version)
{
    struct fc_generation *old = d->gen;
    d->dns_in_force = dns_version;
    fc_generation_mark_retiring(g, old);
    d->gen = g;
    for (uint32_t i = 0; i < d->n_workers; i++)
        fc_worker_publish(&d->workers[i], g);
    fc_health_stop(old, release_generation, old);
}

/*
 * Builds a generation from cfg (one reference taken) with `overlay`, and
 * starts its checkers (`at_once`: see fc_health_start()). NULL when either
 * failed, with the errors logged; nothing in force has changed then.
 */
static struct fc_generation *build_started(struct daemon *d, struct fc_config *cfg,
                                           const struct fc_overlay *overlay, int at_once,
                                           uint64_t *dns_version)
{
    *dns_version = fc_discovery_version(d->dns); /* the sets the build reads */
    struct fc_generation *g;
    if (fc_generation_build(cfg, overlay, d->dns, d->gen, d->n_workers, d->loop, &g) != 0)
        return NULL;
    if (fc_health_start(g, d->loop, at_once) != 0) {
        fc_log_error("%s: cannot start health checks: out of memory", d->config_path);
        fc_health_stop(g, release_generation, g);
        return NULL;
    }
    return g;
}

/* A runtime change: a generation over the running file's config with the new overlay. */
static uint64_t runtime_apply(void *arg, const struct fc_overlay *overlay)
{
    struct daemon *d = arg;
    fc_config_acquire(d->gen->cfg);
    uint64_t v;
    struct fc_generation *g = build_started(d, d->gen->cfg, overlay, 0, &v);
    if (g == NULL)
        return 0;
    put_in_force(d, g, v);
    return g->id;
}

/*
 * A DNS answer changed a set: a generation over the config in force with
 * the overlay and the sets as they are now, as a runtime change makes one.
 */
static void dns_retry_cb(uv_timer_t *t);

static void dns_changed(void *arg)
{
    struct daemon *d = arg;
    /* Before the first generation, which takes the sets; or the one in force has them. */
    if (d->stopping || d->gen == NULL || fc_discovery_version(d->dns) == d->dns_in_force)
        return;
    fc_config_acquire(d->gen->cfg);
    uint64_t v;
    struct fc_generation *g = build_started(d, d->gen->cfg, fc_runtime_overlay(d->runtime), 0, &v);
    if (g == NULL) {
        fc_log_error("DNS: the new backends are not in force: generation %llu stays (trying "
                     "again in 1 s)",
                     (unsigned long long)d->gen->id);
        uv_timer_start(&d->dns_retry, dns_retry_cb, 1000, 0);
        return;
    }
    put_in_force(d, g, v);
    fc_log_info("DNS: generation %llu in force", (unsigned long long)g->id);
}

static void dns_retry_cb(uv_timer_t *t)
{
    dns_changed(t->data);
}

static const struct fc_generation *runtime_generation(void *arg)
{
    struct daemon *d = arg;
    return d->gen;
}

static int runtime_adopted(void *arg, uint64_t id)
{
    struct daemon *d = arg;
    for (uint32_t i = 0; i < d->n_workers; i++)
        if (__atomic_load_n(&d->workers[i].adopted, __ATOMIC_ACQUIRE) < id &&
            !__atomic_load_n(&d->workers[i].exited, __ATOMIC_ACQUIRE))
            return 0;
    return 1;
}

static int runtime_stopping(void *arg)
{
    struct daemon *d = arg;
    return d->stopping;
}

static void runtime_changed(void *arg, const char *pool, const char *address, const char *state,
                            const char *reason)
{
    struct daemon *d = arg;
    fc_monitor_backend_set(d->monitor, pool, address, state, reason);
}

static void reload_begin(struct daemon *d);

/* Errors logged on this thread go to the job's buffers, or (NULL) no longer. */
static void capture_into(struct reload_job *job)
{
    fc_log_capture_errors(job ? job->last_error : NULL, job ? sizeof(job->last_error) : 0);
    fc_log_collect_errors(job ? job->errors : NULL, job ? sizeof(job->errors) : 0);
}

/*
 * The reload ended (`ok`, or failed, or dropped by a stop): counted, told,
 * and each POST /api/reload that waited for it answered. Then the next
 * one, if one was asked for meanwhile.
 */
static void reload_end(struct reload_job *job, int ok)
{
    struct daemon *d = job->d;
    capture_into(NULL);
    if (ok) {
        d->reloads.ok++;
        d->reloads.last_ok_unix = (uint64_t)time(NULL);
        fc_log_info("reload done: generation %llu in force (reloads: %llu done, %llu failed)",
                    (unsigned long long)d->gen->id, (unsigned long long)d->reloads.ok,
                    (unsigned long long)d->reloads.failed);
        fc_monitor_reloaded(d->monitor, d->gen->id, NULL);
    } else if (!d->stopping) {
        d->reloads.failed++;
        snprintf(d->reloads.last_error, sizeof(d->reloads.last_error), "%s", job->last_error);
        fc_log_error("reload failed: generation %llu stays in force (reloads: %llu done, %llu "
                     "failed)",
                     (unsigned long long)d->gen->id, (unsigned long long)d->reloads.ok,
                     (unsigned long long)d->reloads.failed);
        fc_monitor_reloaded(d->monitor, d->gen->id, d->reloads.last_error);
    }
    for (uint32_t i = 0; i < job->n_waiters; i++) {
        struct fc_admin_response *resp = fc_admin_later_response(job->waiters[i]);
        if (ok)
            fc_admin_json(resp, 200,
                          json_pack("{s:b, s:I}", "ok", 1, "generation", (json_int_t)d->gen->id));
        else if (d->stopping)
            fc_admin_error(resp, 503, "stopping: no reload now");
        else
            fc_admin_json(
                resp, 422,
                json_pack("{s:b, s:o}", "ok", 0, "errors", fc_admin_json_lines(job->errors)));
        fc_admin_later_send(job->waiters[i]);
    }
    fc_config_free(job->cfg);
    free(job);
    d->reloading = NULL;
    if (d->reload_again && !d->stopping) {
        d->reload_again = 0;
        reload_begin(d);
    }
}

/*
 * The file loaded and its new DNS entries had their first answers: a new
 * generation is built and published only if all of it succeeds; otherwise
 * the running one stays and the errors are logged.
 */
static void reload_build(void *arg)
{
    struct reload_job *job = arg;
    struct daemon *d = job->d;
    job->resolving = 0;
    capture_into(job);
    struct fc_config *cfg = job->cfg;
    job->cfg = NULL;                 /* the generation's, from here on */
    struct fc_overlay overlay = {0}; /* the runtime changes, fitted to the new file */
    if (fc_runtime_fit(d->runtime, cfg, &overlay) != 0) {
        fc_log_error("%s: out of memory", d->config_path);
        fc_config_free(cfg);
        goto failed;
    }
    /*
     * The new checkers take over at once (their first probes run on the next
     * turn of the loop, once g is published); the old ones finish their
     * probes first. Checkers that cannot start refuse the reload.
     */
    uint64_t v;
    struct fc_generation *g = build_started(d, cfg, &overlay, 1, &v);
    if (g == NULL)
        goto failed;
    /*
     * The last step that can fail, so that nothing else has changed when it
     * does (a new admin address in use): it changes nothing itself then.
     */
    if (d->admin != NULL && fc_admin_apply(d->admin, g->cfg) != 0) {
        fc_health_stop(g, release_generation, g);
        goto failed;
    }
    fc_log_set_level(g->cfg->log_level);
    put_in_force(d, g, v);
    if (d->dns != NULL)
        fc_discovery_commit(d->dns, g->cfg);
    fc_runtime_reloaded(d->runtime, &overlay, g->cfg);
    fc_access_log_apply(g->cfg);
    fc_log_writer_resize(FC_LOG_ACCESS, g->cfg->log_buffer_bytes);
    reload_end(job, 1);
    return;
failed:
    fc_overlay_free(&overlay); /* empty unless it was fitted */
    if (d->dns != NULL)
        fc_discovery_commit(d->dns, d->gen->cfg); /* the new file's entries go */
    reload_end(job, 0);
}

/* On a thread of libuv's pool: the file is read, checked, its names resolved. */
static void reload_load(uv_work_t *w)
{
    struct reload_job *job = w->data;
    capture_into(job);
    job->rc = fc_config_load(job->d->config_path, &job->cfg);
    capture_into(NULL);
}

/* Back on the main loop: checks against what runs, then the new DNS entries' first answers. */
static void reload_loaded(uv_work_t *w, int status)
{
    struct reload_job *job = w->data;
    struct daemon *d = job->d;
    capture_into(job);
    if (d->stopping || status != 0 || job->rc != 0) {
        reload_end(job, 0);
        return;
    }
    if (job->cfg->workers != d->n_workers) {
        fc_log_error("%s: workers: %u worker threads are running; changing their number "
                     "needs a restart",
                     d->config_path, d->n_workers);
        reload_end(job, 0);
        return;
    }
    if (check_new_listeners(job->cfg, d->gen->cfg) != 0) {
        reload_end(job, 0);
        return;
    }
    job->resolving = 1;
    if (d->dns != NULL && fc_discovery_prepare(d->dns, job->cfg, reload_build, job) == 0) {
        capture_into(NULL); /* until the answers come */
        return;
    }
    reload_build(job);
}

/*
 * SIGHUP and POST /api/reload start a reload, unless one is in progress:
 * then one more runs after it, so that the file as it is now is read.
 */
static void reload_begin(struct daemon *d)
{
    struct reload_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        fc_log_error("reload failed: out of memory");
        for (uint32_t i = 0; i < d->n_asked; i++) {
            fc_admin_error(fc_admin_later_response(d->asked[i]), 500, "out of memory");
            fc_admin_later_send(d->asked[i]);
        }
        d->n_asked = 0;
        return;
    }
    fc_log_info("reloading %s", d->config_path);
    job->d = d;
    job->work.data = job;
    memcpy(job->waiters, d->asked, sizeof(d->asked[0]) * d->n_asked);
    job->n_waiters = d->n_asked;
    d->n_asked = 0;
    d->reloading = job;
    uv_queue_work(d->loop, &job->work, reload_load, reload_loaded);
}

static void reload_ask(struct daemon *d)
{
    if (d->reloading != NULL)
        d->reload_again = 1;
    else
        reload_begin(d);
}

/*
 * POST /api/reload: the same reload as SIGHUP, answered with its outcome:
 * 200 {"ok": true, "generation": N}, or 422 {"ok": false, "errors": [...]}
 * with every error line the reload logged (file:line: ...).
 */
static void reload_post(void *arg, const struct fc_admin_request *req,
                        struct fc_admin_response *resp)
{
    struct daemon *d = arg;
    if (d->stopping) {
        fc_admin_error(resp, 503, "stopping: no reload now");
        return;
    }
    if (d->n_asked == MAX_RELOAD_WAITERS) {
        fc_admin_error(resp, 503, "too many reloads waiting: try again");
        return;
    }
    struct fc_admin_later *later = fc_admin_defer(resp);
    if (later == NULL) {
        fc_admin_error(resp, 500, "out of memory");
        return;
    }
    d->asked[d->n_asked++] = later;
    reload_ask(d);
}

/* What the monitor reads of the daemon (main thread). */
static const struct fc_generation *monitor_generation(void *arg)
{
    struct daemon *d = arg;
    return d->gen;
}

static void monitor_info(void *arg, struct fc_metrics_info *out)
{
    struct daemon *d = arg;
    out->reloads_done = d->reloads.ok;
    out->reloads_failed = d->reloads.failed;
    out->last_reload_success_unix =
        d->reloads.last_ok_unix ? d->reloads.last_ok_unix : (uint64_t)d->start_unix;
    out->start_time_unix = d->start_unix;
    out->last_error = d->reloads.last_error;
    out->dns = d->dns;
}

static void close_main_handles(struct daemon *d)
{
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_usr1, NULL);
    uv_close((uv_handle_t *)&d->exited_async, NULL);
    uv_close((uv_handle_t *)&d->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&d->dns_retry, NULL);
    /* reap_async stays open until the workers are joined. */
}

static void exited_cb(uv_async_t *h)
{
    struct daemon *d = h->data;
    for (uint32_t i = 0; i < d->n_workers; i++)
        if (!__atomic_load_n(&d->workers[i].exited, __ATOMIC_ACQUIRE))
            return;
    close_main_handles(d);
}

static void shutdown_timer_cb(uv_timer_t *t)
{
    struct daemon *d = t->data;
    fc_log_warn("shutdown: requests still running after %u ms, closing them",
                d->gen->cfg->timeouts.shutdown_ms);
    for (uint32_t i = 0; i < d->n_workers; i++)
        fc_worker_request_stop(&d->workers[i], 2);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    switch (signum) {
    case SIGHUP:
        if (!d->stopping)
            reload_ask(d);
        break;
    case SIGUSR1:
        fc_access_log_apply(d->gen->cfg);
        if (d->gen->cfg->access_log != FC_ACCESS_LOG_OFF)
            fc_log_info("access log reopened");
        break;
    case SIGTERM:
    case SIGINT:
        if (d->stopping)
            break;
        d->stopping = 1;
        fc_log_info("stopping: draining in-flight requests (up to %u ms)",
                    d->gen->cfg->timeouts.shutdown_ms);
        for (uint32_t i = 0; i < d->n_workers; i++)
            fc_worker_request_stop(&d->workers[i], 1);
        fc_health_stop(d->gen, NULL, NULL);
        fc_discovery_destroy(d->dns);
        d->dns = NULL;
        /* A reload waiting for DNS answers will not get them: it ends here. */
        if (d->reloading != NULL && d->reloading->resolving)
            reload_end(d->reloading, 0);
        for (uint32_t i = 0; i < d->n_asked; i++) {
            fc_admin_error(fc_admin_later_response(d->asked[i]), 503, "stopping: no reload now");
            fc_admin_later_send(d->asked[i]);
        }
        d->n_asked = 0;
        /* Its connections and streams close now: they must not hold the loop, or the exit. */
        fc_admin_destroy(d->admin);
        d->admin = NULL;
        uv_timer_start(&d->shutdown_timer, shutdown_timer_cb, d->gen->cfg->timeouts.shutdown_ms, 0);
        uv_unref((uv_handle_t *)&d->shutdown_timer);
        break;
    }
}

static int bind_listeners(const struct fc_config *cfg, uint32_t n_workers, int **fds_out)
{
    size_t n = (size_t)cfg->n_listeners * n_workers;
    int *fds = malloc(sizeof(*fds) * (n ? n : 1));
    if (fds == NULL)
        return FC_ENOMEM;
    for (size_t i = 0; i < n; i++)
        fds[i] = -1;
    int busy = 0;
    for (uint32_t l = 0; l < cfg->n_listeners; l++)
        busy |= check_free(cfg, &cfg->listeners[l]) != 0;
    if (busy) {
        free(fds);
        return FC_ERROR;
    }
    for (uint32_t w = 0; w < n_workers; w++)
        for (uint32_t l = 0; l < cfg->n_listeners; l++) {
            const struct fc_conf_listener *cl = &cfg->listeners[l];
            int fd = fc_listen_socket((const struct sockaddr *)&cl->addr, cl->addr_len,
                                      cl->defer_accept);
            if (fd < 0) {
                fc_log_error("%s:%d: listener %s: %s", cfg->path, cl->line, cl->address,
                             strerror(-fd));
                for (size_t i = 0; i < n; i++)
                    if (fds[i] >= 0)
                        close(fds[i]);
                free(fds);
                return FC_ERROR;
            }
            fds[(size_t)w * cfg->n_listeners + l] = fd;
        }
    *fds_out = fds;
    return 0;
}

/*
 * Start-up failed before any worker ran (a listener address in use, say):
 * what was built goes, so that the exit is as clean as a stop. Returns the
 * exit status, 1.
 */
static int start_failed(struct daemon *d)
{
    fc_discovery_destroy(d->dns);
    d->dns = NULL;
    fc_monitor_destroy(d->monitor);
    d->monitor = NULL;
    fc_runtime_destroy(d->runtime);
    d->runtime = NULL;
    fc_admin_destroy(d->admin);
    d->admin = NULL;
    uv_run(d->loop, UV_RUN_NOWAIT); /* the close callbacks free them */
    fc_generation_release(d->gen);
    d->gen = NULL;
    reap(d);
    fc_log_writer_stop(LOG_DRAIN_MS);
    fc_access_log_shutdown();
    return 1;
}

static void start_answered(void *arg)
{
    *(int *)arg = 1;
}

/* Whatever way the process ends, the lines buffered in the log writer go out first. */
static void stop_log_writer(void)
{
    fc_log_writer_stop(LOG_DRAIN_MS);
}

int main(int argc, char **argv)
{
    /* The admin listener's client shares the binary, not the daemon's start-up. */
    if (argc > 1 && strcmp(argv[1], "ctl") == 0)
        return fc_ctl_main(argc - 1, argv + 1);
    /* So does the plugin author's check, which loads a plugin as the daemon would. */
    if (argc > 1 && strcmp(argv[1], "plugin-check") == 0)
        return fc_plugin_check_main(argc - 1, argv + 1);

    /*
     * SIGHUP (a reload) and SIGUSR1 (logrotate) would end the process with
     * their default action while the configuration and plugins load: they
     * wait, blocked, until their handlers are in place, and one that came
     * meanwhile is handled then (a reload right after the start).
     */
    sigset_t early;
    sigemptyset(&early);
    sigaddset(&early, SIGHUP);
    sigaddset(&early, SIGUSR1);
    sigprocmask(SIG_BLOCK, &early, NULL);

    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    int test_only = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            printf("fulcrum %s (plugin ABI %d.%d, libuv %s)\n", FC_VERSION, FC_ABI_MAJOR,
                   FC_ABI_MINOR, uv_version_string());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (config_path == NULL || optind != argc) {
        usage(stderr);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    if (fc_dns_library_init() != 0) {
        fprintf(stderr, "fulcrum: cannot initialise c-ares\n");
        return 1;
    }
    fc_txn_init();
    fc_health_init();
    struct daemon d = {.config_path = config_path};
    struct timespec started;
    clock_gettime(CLOCK_REALTIME, &started);
    d.start_unix = (double)started.tv_sec + (double)started.tv_nsec / 1e9;
    d.loop = uv_default_loop();

    struct fc_config *cfg;
    if (fc_config_load(config_path, &cfg) != 0) {
        if (test_only)
            fprintf(stderr, "configuration test failed\n");
        return 1;
    }
    fc_log_set_level(cfg->log_level);
    uint32_t n_workers = cfg->workers;
    struct fc_runtime_host rt_host = {.generation = runtime_generation,
                                      .apply = runtime_apply,
                                      .adopted = runtime_adopted,
                                      .stopping = runtime_stopping,
                                      .changed = runtime_changed,
                                      .arg = &d};
    if ((d.runtime = fc_runtime_create(d.loop, &rt_host)) == NULL) {
        fc_config_free(cfg);
        return 1;
    }
    /* Runtime changes kept from the last run apply from the first generation on. */
    fc_runtime_load(d.runtime, cfg);
    /*
     * The DNS entries' first answers (or failures) come before the first
     * generation, so that the pools start with what DNS has. `-t` asks them
     * too and tells (warns) what does not resolve, but such an entry fails
     * no test, as it fails no start.
     */
    int discovers = 0;
    for (uint32_t p = 0; p < cfg->n_pools; p++)
        discovers |= cfg->pools[p].n_discover > 0;
    if (!test_only || discovers) {
        struct fc_discovery_host dns_host = {.changed = dns_changed, .arg = &d};
        int answered = 0;
        if ((d.dns = fc_discovery_create(d.loop, &dns_host)) == NULL) {
            if (test_only)
                fprintf(stderr, "configuration test failed\n");
            fc_config_free(cfg);
            fc_runtime_destroy(d.runtime);
            uv_run(d.loop, UV_RUN_DEFAULT);
            return 1;
        }
        if (fc_discovery_prepare(d.dns, cfg, start_answered, &answered) == 0)
            while (!answered)
                uv_run(d.loop, UV_RUN_ONCE);
    }
    if (fc_generation_build(cfg, fc_runtime_overlay(d.runtime), d.dns, NULL, n_workers, d.loop,
                            &d.gen) != 0) {
        if (test_only)
            fprintf(stderr, "configuration test failed\n");
        fc_discovery_destroy(d.dns);
        fc_runtime_destroy(d.runtime);
        uv_run(d.loop, UV_RUN_DEFAULT);
        return 1;
    }
    if (d.dns != NULL)
        fc_discovery_commit(d.dns, d.gen->cfg);
    d.dns_in_force = fc_discovery_version(d.dns);
    fc_generation_mark_retiring(d.gen, NULL); /* backends the state file drained */
    if (test_only) {
        fc_discovery_destroy(d.dns);
        d.dns = NULL;
        fc_runtime_destroy(d.runtime);
        fc_generation_release(d.gen);
        uv_run(d.loop, UV_RUN_DEFAULT);
        uv_loop_close(d.loop);
        printf("configuration OK\n");
        return 0;
    }

    uv_mutex_init(&d.reap_lock);
    uv_async_init(d.loop, &d.reap_async, reap_cb);
    d.reap_async.data = &d;
    uv_unref((uv_handle_t *)&d.reap_async); /* must not keep the loop alive at shutdown */
    fc_generation_set_reaper(reaper, &d);
    uv_async_init(d.loop, &d.exited_async, exited_cb);
    d.exited_async.data = &d;
    fc_worker_notify_exit(&d.exited_async);
    if (fc_access_log_init() != 0)
        return 1;
    fc_access_log_apply(d.gen->cfg);
    /* From here on, no thread waits for a log's descriptor. */
    if (fc_log_writer_start(d.gen->cfg->log_buffer_bytes) != 0)
        fc_log_warn("cannot start the log writer: logs are written directly");
    atexit(stop_log_writer);

    /*
     * Signals first: once a listener is bound, a client (or a test, or
     * systemd) may take the daemon for ready and signal it; the handlers run
     * when the loop starts, after the workers.
     */
    uv_timer_init(d.loop, &d.shutdown_timer);
    d.shutdown_timer.data = &d;
    uv_timer_init(d.loop, &d.dns_retry);
    d.dns_retry.data = &d;
    uv_signal_t *sigs[] = {&d.sig_hup, &d.sig_term, &d.sig_int, &d.sig_usr1};
    int signums[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(d.loop, sigs[i]);
        sigs[i]->data = &d;
        uv_signal_start(sigs[i], signal_cb, signums[i]);
    }
    sigprocmask(SIG_UNBLOCK, &early, NULL);

    /* Before the listeners, so that it answers once they do. A bind error stops start-up. */
    if (fc_admin_create(d.loop, d.gen->cfg, &d.admin) != 0)
        return start_failed(&d);
    struct fc_monitor_source src = {
        .generation = monitor_generation, .info = monitor_info, .workers = n_workers, .arg = &d};
    if ((d.monitor = fc_monitor_create(d.admin, d.loop, &src)) == NULL ||
        fc_dashboard_register(d.admin) != 0 ||
        fc_admin_route(d.admin, "POST", "/api/reload", 0, reload_post, &d) != 0 ||
        fc_runtime_routes(d.runtime, d.admin) != 0)
        return start_failed(&d);
    int *fds;
    if (bind_listeners(d.gen->cfg, n_workers, &fds) != 0)
        return start_failed(&d);
    d.workers = calloc(n_workers, sizeof(*d.workers));
    d.n_workers = n_workers;
    if (d.workers == NULL)
        return start_failed(&d);
    for (uint32_t w = 0; w < n_workers; w++)
        if (fc_worker_init(&d.workers[w], w, d.gen, fds + (size_t)w * d.gen->cfg->n_listeners,
                           d.gen->cfg->n_listeners) != 0)
            return 1;
    free(fds);

    for (uint32_t w = 0; w < n_workers; w++)
        if (fc_worker_start(&d.workers[w]) != 0) {
            fc_log_error("cannot start worker thread %u", w);
            return 1;
        }
    if (fc_health_start(d.gen, d.loop, 1) != 0)
        return 1;
    for (uint32_t l = 0; l < d.gen->cfg->n_listeners; l++)
        fc_log_info("listening on %s (%u workers)", d.gen->cfg->listeners[l].address, n_workers);

    uv_run(d.loop, UV_RUN_DEFAULT);

    fc_admin_destroy(d.admin); /* NULL after a stop: closed when it began */
    d.admin = NULL;
    for (uint32_t w = 0; w < n_workers; w++)
        fc_worker_join(&d.workers[w]);
    free(d.workers);
    fc_generation_release(d.gen);
    reap(&d);
    uv_close((uv_handle_t *)&d.reap_async, NULL);
    fc_monitor_destroy(d.monitor); /* its streams closed with the admin listener */
    d.monitor = NULL;
    fc_runtime_destroy(d.runtime); /* a state file being written is finished by this run */
    d.runtime = NULL;
    uv_run(d.loop, UV_RUN_DEFAULT);
    uv_loop_close(d.loop);
    uv_mutex_destroy(&d.reap_lock);
    fc_log_info("stopped");
    fc_log_writer_stop(LOG_DRAIN_MS);
    fc_access_log_shutdown();
    return 0;
}
