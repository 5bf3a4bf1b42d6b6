/*
 * fulcrum itself: a configuration (struct it_config) rendered to libconfig
 * text, fulcrum started on it as a child process and waited for until its
 * listener accepts connections, reloads (SIGHUP, then the log line that says
 * how it went), and the check that it exits 0 on SIGTERM. Teardown makes the
 * same check of every fulcrum a test leaves running (see it_procs_stop()).
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef FC_BINARY
#error "FC_BINARY (path of the fulcrum binary) must be defined by the build"
#endif
#ifndef FC_PLUGIN_BUILD_DIR
#error "FC_PLUGIN_BUILD_DIR (where the bundled plugins are built) must be defined by the build"
#endif

void it_config_init(struct it_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = 2;
    cfg->connect_ms = 2000;
    cfg->client_header_ms = 10000;
    cfg->idle_ms = 60000;
    cfg->upstream_ms = 30000;
    /* Teardown waits for the drain; keep it well inside IT_STOP_TIMEOUT_MS. */
    cfg->shutdown_ms = 3000;
    cfg->max_header_bytes = 16384;
    cfg->max_body_bytes = 0;
    cfg->log_level = "info";
}

struct it_pool_config *it_config_add_pool(struct it_config *cfg, const char *name, int retries,
                                          size_t n, ...)
{
    if (cfg->npools == IT_MAX_POOLS || n > IT_MAX_POOL_BACKENDS)
        it_fail("it_config_add_pool: too many pools or backends");
    struct it_pool_config *pool = &cfg->pools[cfg->npools++];
    memset(pool, 0, sizeof(*pool));
    pool->name = name;
    pool->retries = retries;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        pool->ports[i] = va_arg(ap, int);
    va_end(ap);
    pool->nports = n;
    return pool;
}

struct it_pool_config *it_config_demo_pool(struct it_env *env, struct it_config *cfg, size_t n)
{
    static const char *const names[IT_MAX_POOL_BACKENDS] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    if (n == 0 || n > IT_MAX_POOL_BACKENDS)
        it_fail("it_config_demo_pool: %zu backends", n);
    it_config_init(cfg);
    struct it_pool_config *pool = it_config_add_pool(cfg, "web", 1, 0);
    for (size_t i = 0; i < n; i++)
        pool->ports[i] = it_backend_start(env, names[i]);
    pool->nports = n;
    return pool;
}

/* A growable string for rendering text. */
struct strbuf {
    char *data;
    size_t len, cap;
};

static void sb_printf(struct strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (sb->len + (size_t)n + 1 > sb->cap) {
        sb->cap = (sb->len + (size_t)n + 1) * 2;
        sb->data = it_xrealloc(sb->data, sb->cap);
    }
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

const char *it_config_render(struct it_env *env, const struct it_config *cfg, int listen_port)
{
    if (cfg->npools == 0)
        it_fail("it_config_render: the config has no pool");
    struct strbuf sb = {0};
    sb_printf(&sb, "# written by the fulcrum integration test harness\n");
    sb_printf(&sb, "workers = %d;\n", cfg->workers);
    sb_printf(&sb, "plugin_dir = \"%s\";\n", FC_PLUGIN_BUILD_DIR);
    sb_printf(&sb, "log = { level = \"%s\"; access = \"%s\"; ", cfg->log_level,
              cfg->access_log ? cfg->access_log : "off");
    if (cfg->log_buffer_bytes > 0)
        sb_printf(&sb, "buffer_bytes = %ld; ", cfg->log_buffer_bytes);
    sb_printf(&sb, "};\n");
    sb_printf(&sb,
              "timeouts = { connect_ms = %d; client_header_ms = %d; idle_ms = %d; "
              "upstream_ms = %d; shutdown_ms = %d; ",
              cfg->connect_ms, cfg->client_header_ms, cfg->idle_ms, cfg->upstream_ms,
              cfg->shutdown_ms);
    if (cfg->tunnel_ms > 0)
        sb_printf(&sb, "tunnel_ms = %d; ", cfg->tunnel_ms);
    sb_printf(&sb, "};\n");
    sb_printf(&sb, "limits = { max_header_bytes = %ld; max_body_bytes = %ld; ",
              cfg->max_header_bytes, cfg->max_body_bytes);
    if (cfg->max_connections > 0)
        sb_printf(&sb, "max_connections = %ld; ", cfg->max_connections);
    sb_printf(&sb, "};\n");
    sb_printf(&sb, "listeners = ( { address = \"127.0.0.1:%d\"; pool = \"%s\";", listen_port,
              cfg->listener_pool ? cfg->listener_pool : cfg->pools[0].name);
    if (cfg->listener_tls != NULL)
        sb_printf(&sb, "\n    tls = { %s };\n ", cfg->listener_tls);
    if (cfg->listener_extra != NULL)
        sb_printf(&sb, " %s", cfg->listener_extra);
    sb_printf(&sb, " } );\n");
    if (cfg->routes != NULL)
        sb_printf(&sb, "routes = (\n%s\n);\n", cfg->routes);
    sb_printf(&sb, "pools = (\n");
    for (size_t i = 0; i < cfg->npools; i++) {
        const struct it_pool_config *p = &cfg->pools[i];
        sb_printf(&sb, "  { name = \"%s\";\n", p->name);
        sb_printf(&sb, "    strategy = { plugin = \"%s\";%s%s };\n",
                  p->strategy ? p->strategy : "round_robin", p->strategy_options ? " " : "",
                  p->strategy_options ? p->strategy_options : "");
        sb_printf(&sb, "    retries = %d;\n", p->retries);
        if (p->pool_options != NULL)
            sb_printf(&sb, "    %s\n", p->pool_options);
        if (p->health != NULL)
            sb_printf(&sb, "    health = { %s };\n", p->health);
        sb_printf(&sb, "    backends = (");
        if (p->backends_text != NULL)
            sb_printf(&sb, "\n      %s", p->backends_text);
        else
            for (size_t j = 0; j < p->nports; j++)
                sb_printf(&sb, "%s\n      { address = \"127.0.0.1:%d\"; }", j ? "," : "",
                          p->ports[j]);
        sb_printf(&sb, "\n    );\n  }%s\n", i + 1 < cfg->npools ? "," : "");
    }
    sb_printf(&sb, ");\n");
    if (cfg->top != NULL)
        sb_printf(&sb, "%s\n", cfg->top);
    if (cfg->admin != NULL)
        sb_printf(&sb, "admin = { %s };\n", cfg->admin);
    char *text = it_env_strdup_len(env, sb.data, sb.len);
    free(sb.data);
    return text;
}

/* True if something accepts TCP connections on 127.0.0.1:port right now. */
static bool port_accepts(struct it_env *env, int port)
{
    int err = 0;
    struct it_conn *conn = it_connect_raw(env, port, &err);
    if (conn == NULL)
        return false;
    it_conn_close(conn);
    return true;
}

struct it_fulcrum *it_fulcrum_start(struct it_env *env, const struct it_config *cfg)
{
    /*
     * The listener port is picked by binding port 0 and closing it, so another
     * process may take it before fulcrum binds it. Then fulcrum exits at once
     * complaining; try again with another port a few times.
     */
    for (int attempt = 1;; attempt++) {
        int port = it_free_port();
        const char *text = it_config_render(env, cfg, port);
        const char *path = it_write_file(env, it_strf(env, "fulcrum-%u.conf", env->seq + 1), text);
        /* With cfg->nofile, under prlimit, which execs fulcrum: the same process. */
        const char *nofile = it_strf(env, "--nofile=%d:%d", cfg->nofile, cfg->nofile);
        const char *const plain[] = {FC_BINARY, "-c", path, NULL};
        const char *const limited[] = {"/usr/bin/prlimit", nofile, FC_BINARY, "-c", path, NULL};
        struct it_proc *proc =
            it_spawn_out(env, "fulcrum", cfg->nofile > 0 ? limited : plain, cfg->stdout_path);
        proc->must_exit_cleanly = true;

        int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
        for (;;) {
            if (it_proc_poll(proc)) {
                const char *err = it_proc_stderr(env, proc);
                if (attempt < 3 && strstr(err, "in use") != NULL) {
                    proc->must_exit_cleanly = false;
                    break;
                }
                it_proc_report(env, proc);
                it_fail("fulcrum -c %s %s before it listened on 127.0.0.1:%d; config:\n%s", path,
                        it_describe_status(env, proc->status), port, text);
            }
            if (port_accepts(env, port)) {
                struct it_fulcrum *f = it_zalloc(env, sizeof(*f));
                f->proc = proc;
                f->port = port;
                f->config_path = path;
                return f;
            }
            if (it_now_ms() >= deadline) {
                it_proc_report(env, proc);
                it_fail("fulcrum did not accept connections on 127.0.0.1:%d within %d ms", port,
                        IT_START_TIMEOUT_MS);
            }
            it_sleep_ms(10);
        }
    }
}

int it_fulcrum_reload_text(struct it_env *env, struct it_fulcrum *f, const char *text)
{
    static const char done[] = "reload done: ";
    static const char failed[] = "reload failed: ";
    const char *before = it_proc_stderr(env, f->proc);
    size_t n_done = it_count(before, done);
    size_t n_failed = it_count(before, failed);

    if (text != NULL) {
        /* A new file renamed over the old one: fulcrum never reads half of it. */
        const char *tmp = it_write_file(env, it_strf(env, "reload-%u.conf.tmp", ++env->seq), text);
        if (rename(tmp, f->config_path) != 0)
            it_fail("rename %s to %s: %s", tmp, f->config_path, strerror(errno));
    }
    it_proc_signal(f->proc, SIGHUP);

    int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
    for (;;) {
        const char *err = it_proc_stderr(env, f->proc);
        if (it_count(err, done) > n_done)
            return 0;
        if (it_count(err, failed) > n_failed)
            return -EINVAL;
        if (it_proc_poll(f->proc)) {
            it_proc_report(env, f->proc);
            it_fail("fulcrum %s while reloading %s", it_describe_status(env, f->proc->status),
                    f->config_path);
        }
        if (it_now_ms() >= deadline) {
            it_proc_report(env, f->proc);
            it_fail("fulcrum logged neither \"%s\" nor \"%s\" within %d ms of SIGHUP", done, failed,
                    IT_START_TIMEOUT_MS);
        }
        it_sleep_ms(2);
    }
}

struct it_fulcrum *it_fulcrum_start_one(struct it_env *env)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1);
    return it_fulcrum_start(env, &cfg);
}

size_t it_fulcrum_log_count(struct it_env *env, const struct it_fulcrum *f, const char *needle)
{
    return it_count(it_proc_stderr(env, f->proc), needle);
}

bool it_fulcrum_wait_log(struct it_env *env, const struct it_fulcrum *f, const char *needle,
                         size_t n, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    while (it_fulcrum_log_count(env, f, needle) < n) {
        if (it_now_ms() >= deadline)
            return false;
        it_sleep_ms(5);
    }
    return true;
}

const char *it_fulcrum_log_settled(struct it_env *env, const struct it_fulcrum *f)
{
    int64_t deadline = it_now_ms() + 2000, quiet_since = it_now_ms();
    size_t len = strlen(it_proc_stderr(env, f->proc));
    while (it_now_ms() - quiet_since < 50 && it_now_ms() < deadline) {
        it_sleep_ms(5);
        size_t now = strlen(it_proc_stderr(env, f->proc));
        if (now != len) {
            len = now;
            quiet_since = it_now_ms();
        }
    }
    return it_proc_stderr(env, f->proc);
}

void it_fulcrum_expect_clean_exit(struct it_env *env, struct it_fulcrum *f, int timeout_ms)
{
    int status = 0;
    if (it_proc_wait(f->proc, timeout_ms, &status) != 0) {
        it_proc_dump(env, f->proc);
        it_fail("fulcrum still running %d ms after SIGTERM", timeout_ms);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        it_proc_dump(env, f->proc);
        it_fail("fulcrum did not exit 0 after SIGTERM (wait status 0x%x)", status);
    }
}

int it_fulcrum_reload(struct it_env *env, struct it_fulcrum *f, const struct it_config *cfg)
{
    return it_fulcrum_reload_text(env, f, it_config_render(env, cfg, f->port));
}
