/*
 * Child processes: starting them (fork and exec, stdin from /dev/null, stdout
 * and stderr into files of the environment's directory, which is how a test
 * reads what a child wrote without a pipe to drain), signalling them, reaping
 * them with deadlines, printing their stderr when a test fails, running
 * short-lived commands to completion, and stopping them all at teardown.
 *
 * A child outlives nothing. It asks the kernel to kill it when the test
 * process dies (PR_SET_PDEATHSIG), and every PID not yet reaped is kept in a
 * registry that an atexit() hook and the SIGINT, SIGTERM and SIGHUP handlers
 * kill, so that a test that crashes or is interrupted leaves no fulcrum or
 * backend running behind it.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define DUMP_TAIL_BYTES (16 * 1024)

/* ---- child registry: what the last-resort cleanup kills ----------------- */

/*
 * PIDs of children not yet reaped. A plain array because the signal handler
 * reads it; a slot is written only outside the handler, and pid_t stores are
 * atomic on every platform we build on.
 */
#define MAX_LIVE 64
static volatile pid_t live_pids[MAX_LIVE];

static int live_add(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live_pids[i] == 0) {
            live_pids[i] = pid;
            return i;
        }
    }
    return -1;
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live_pids[i] == pid)
            live_pids[i] = 0;
}

/* Async-signal-safe: kill() only, by PID. */
static void live_kill_all(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        pid_t pid = live_pids[i];
        if (pid > 0)
            kill(pid, SIGKILL);
    }
}

static void cleanup_at_exit(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        pid_t pid = live_pids[i];
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            live_pids[i] = 0;
        }
    }
}

static void on_fatal_signal(int sig)
{
    live_kill_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

void it_install_process_hooks(void)
{
    static bool installed;
    if (installed)
        return;
    installed = true;

    /* A proxy closing on us must show up as EPIPE, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    atexit(cleanup_at_exit);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* ---- child processes ---------------------------------------------------- */

struct it_proc *it_spawn(struct it_env *env, const char *label, const char *const *argv)
{
    return it_spawn_out(env, label, argv, NULL);
}

struct it_proc *it_spawn_out(struct it_env *env, const char *label, const char *const *argv,
                             const char *out_path)
{
    unsigned seq = ++env->seq;
    struct it_proc *proc = it_xmalloc(sizeof(*proc));
    memset(proc, 0, sizeof(*proc));
    proc->label = it_strf(env, "%s", label);
    proc->out_path = out_path != NULL ? it_strf(env, "%s", out_path)
                                      : it_strf(env, "%s/%02u-%s.stdout", env->dir, seq, label);
    proc->err_path = it_strf(env, "%s/%02u-%s.stderr", env->dir, seq, label);

    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(proc);
        it_fail("fork: %s", strerror(errno));
    }
    if (pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
#else
        (void)parent;
#endif
        int in = open("/dev/null", O_RDONLY);
        int out = out_path != NULL ? open(out_path, O_WRONLY)
                                   : open(proc->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(proc->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        /* Ignored signals stay ignored across exec; give the child the defaults. */
        signal(SIGPIPE, SIG_DFL);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }

    proc->pid = pid;
    if (live_add(pid) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        free(proc);
        it_fail("too many child processes");
    }
    proc->next = env->procs;
    env->procs = proc;
    return proc;
}

pid_t it_proc_pid(const struct it_proc *proc)
{
    return proc->pid;
}

void it_proc_signal(struct it_proc *proc, int sig)
{
    if (!proc->reaped)
        kill(proc->pid, sig);
}

bool it_proc_poll(struct it_proc *proc)
{
    if (proc->reaped)
        return true;
    int status;
    pid_t r = waitpid(proc->pid, &status, WNOHANG);
    if (r == proc->pid) {
        proc->reaped = true;
        proc->status = status;
        live_remove(proc->pid);
        return true;
    }
    return false;
}

int it_proc_wait(struct it_proc *proc, int timeout_ms, int *status)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    while (!it_proc_poll(proc)) {
        if (it_now_ms() >= deadline)
            return -ETIMEDOUT;
        it_sleep_ms(5);
    }
    if (status != NULL)
        *status = proc->status;
    return 0;
}

const char *it_describe_status(struct it_env *env, int status)
{
    if (WIFEXITED(status))
        return it_strf(env, "exited with status %d", WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return it_strf(env, "killed by signal %d (%s)", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
    return it_strf(env, "wait status 0x%x", status);
}

static const char *env_read_file(struct it_env *env, const char *path)
{
    size_t len = 0;
    char *text = it_read_file(path, 0, &len);
    if (text == NULL)
        return "";
    char *copy = it_env_strdup_len(env, text, len);
    free(text);
    return copy;
}

const char *it_proc_stderr(struct it_env *env, const struct it_proc *proc)
{
    return env_read_file(env, proc->err_path);
}

const char *it_proc_stdout(struct it_env *env, const struct it_proc *proc)
{
    return env_read_file(env, proc->out_path);
}

void it_proc_wait_output(struct it_env *env, struct it_proc *proc, const char *text, int timeout_ms)
{
    int64_t deadline = it_now_ms() + timeout_ms;
    while (strstr(it_proc_stdout(env, proc), text) == NULL) {
        if (it_now_ms() > deadline)
            fail_msg("%s printed no \"%s\" within %d ms; its stderr:\n%s", proc->label, text,
                     timeout_ms, it_proc_stderr(env, proc));
        it_sleep_ms(20);
    }
}

long it_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

#if defined(__SANITIZE_ADDRESS__)
#define IT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IT_ASAN 1
#endif
#endif

const char *it_rss_asan_begin(struct it_env *env)
{
#ifdef IT_ASAN
    const char *old = getenv("ASAN_OPTIONS");
    old = old != NULL ? it_strf(env, "%s", old) : NULL;
    setenv("ASAN_OPTIONS",
           it_strf(env, "%s%squarantine_size_mb=0:malloc_context_size=0:report_globals=0",
                   old ? old : "", old && *old ? ":" : ""),
           1);
    return old;
#else
    (void)env;
    return NULL;
#endif
}

void it_rss_asan_end(const char *old)
{
#ifdef IT_ASAN
    if (old != NULL)
        setenv("ASAN_OPTIONS", old, 1);
    else
        unsetenv("ASAN_OPTIONS");
#else
    (void)old;
#endif
}

const char *it_make_certs(struct it_env *env)
{
    const char *dir = it_path(env, "certs");
    const char *argv[] = {"/bin/bash", FC_IT_MAKE_CERTS, dir, NULL};
    struct it_run_result r;
    it_run(env, argv, 30000, &r);
    if (r.exit_code != 0)
        fail_msg("make-certs.sh failed (%d): %s", r.exit_code, r.err);
    return dir;
}

const char *it_tls_certificate(struct it_env *env, const char *dir, const char *name)
{
    return it_strf(env, "{ cert = \"%s/%s.pem\"; key = \"%s/%s.key\"; }", dir, name, dir, name);
}

/* Prints the tail of a file between marker lines; false if it is empty. */
static bool dump_file(const char *what, const char *path)
{
    size_t len = 0;
    char *text = it_read_file(path, DUMP_TAIL_BYTES, &len);
    if (text == NULL || len == 0) {
        free(text);
        return false;
    }
    fprintf(stderr, "---- %s (%s) ----\n", what, path);
    fwrite(text, 1, len, stderr);
    if (text[len - 1] != '\n')
        fputc('\n', stderr);
    fprintf(stderr, "---- end of %s ----\n", what);
    free(text);
    return true;
}

void it_proc_dump(struct it_env *env, const struct it_proc *proc)
{
    const char *what = it_strf(env, "%s (pid %d) stderr", proc->label, (int)proc->pid);
    if (!dump_file(what, proc->err_path))
        fprintf(stderr, "---- %s: empty ----\n", what);
    fflush(stderr);
}

void it_proc_report(struct it_env *env, struct it_proc *proc)
{
    it_proc_dump(env, proc);
    proc->dumped = true;
    /* The failure is being reported; teardown need not report its exit too. */
    proc->must_exit_cleanly = false;
}

void it_run(struct it_env *env, const char *const *argv, int timeout_ms,
            struct it_run_result *result)
{
    const char *base = strrchr(argv[0], '/');
    struct it_proc *proc = it_spawn(env, base ? base + 1 : argv[0], argv);
    int status = 0;
    if (it_proc_wait(proc, timeout_ms, &status) != 0) {
        kill(proc->pid, SIGKILL);
        it_proc_wait(proc, IT_STOP_TIMEOUT_MS, NULL);
        it_proc_report(env, proc);
        it_fail("%s did not finish within %d ms", argv[0], timeout_ms);
    }
    result->status = status;
    result->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result->out = it_proc_stdout(env, proc);
    result->err = it_proc_stderr(env, proc);
}

struct it_proc *it_start(struct it_env *env, const char *label, const char *const *argv)
{
    return it_spawn(env, label, argv);
}

/* ---- teardown ----------------------------------------------------------- */

int it_procs_stop(struct it_env *env)
{
    int rc = 0;

    /*
     * A child the test reaped itself was the test's business. One that exited
     * on its own meanwhile died during the test: for fulcrum, a failure. The
     * rest are asked to stop.
     */
    for (struct it_proc *p = env->procs; p != NULL; p = p->next) {
        if (p->reaped)
            continue;
        if (it_proc_poll(p)) {
            if (p->must_exit_cleanly) {
                fprintf(stderr, "harness: %s (pid %d) %s during the test\n", p->label, (int)p->pid,
                        it_describe_status(env, p->status));
                rc = -1;
            }
            continue;
        }
        kill(p->pid, SIGTERM);
    }
    int64_t deadline = it_now_ms() + IT_STOP_TIMEOUT_MS;
    for (struct it_proc *p = env->procs; p != NULL; p = p->next) {
        if (p->reaped)
            continue;
        int left = (int)(deadline - it_now_ms());
        if (it_proc_wait(p, left > 0 ? left : 0, NULL) != 0) {
            fprintf(stderr, "harness: %s (pid %d) still running %d ms after SIGTERM; SIGKILL\n",
                    p->label, (int)p->pid, IT_STOP_TIMEOUT_MS);
            kill(p->pid, SIGKILL);
            it_proc_wait(p, IT_STOP_TIMEOUT_MS, NULL);
            if (p->must_exit_cleanly)
                rc = -1;
        } else if (p->must_exit_cleanly && !(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0)) {
            fprintf(stderr, "harness: %s (pid %d) %s after SIGTERM; it must exit 0\n", p->label,
                    (int)p->pid, it_describe_status(env, p->status));
            rc = -1;
        }
    }
    return rc;
}

void it_procs_dump_unreported(struct it_env *env)
{
    size_t n = 0;
    for (struct it_proc *p = env->procs; p != NULL; p = p->next)
        n++;
    /* Oldest first reads better; the list is newest first. */
    for (size_t i = n; i > 0; i--) {
        struct it_proc *p = env->procs;
        for (size_t j = 1; j < i; j++)
            p = p->next;
        if (!p->dumped)
            it_proc_dump(env, p);
    }
}

void it_procs_free(struct it_env *env)
{
    while (env->procs != NULL) {
        struct it_proc *p = env->procs;
        env->procs = p->next;
        free(p);
    }
}
