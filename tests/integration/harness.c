/*
 * The integration test harness; see harness.h for the contract.
 *
 * Everything here is blocking and single-threaded: a test is a straight line
 * of "start this, send that, expect this back", and the deadlines live in
 * poll() calls so that a silent peer fails a test instead of hanging it.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#ifndef FC_BINARY
#error "FC_BINARY (path of the fulcrum binary) must be defined by the build"
#endif
#ifndef FC_DEMO_BACKEND
#error "FC_DEMO_BACKEND (path of the demo backend) must be defined by the build"
#endif
#ifndef FC_PLUGIN_BUILD_DIR
#error "FC_PLUGIN_BUILD_DIR (where the bundled plugins are built) must be defined by the build"
#endif

#define MAX_BACKENDS 16
#define MAX_DEAD_PORTS 8
#define MAX_HEAD_BYTES (256 * 1024)
#define MAX_HEADERS 256
#define DUMP_TAIL_BYTES (16 * 1024)

/* ---- failure ------------------------------------------------------------ */

/* Prints a message and fails the running cmocka test (longjmps out of it). */
static void it_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void it_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("harness: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    _fail(__FILE__, __LINE__);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fputs("harness: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fputs("harness: out of memory\n", stderr);
        abort();
    }
    return p;
}

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

static void install_process_hooks(void)
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

/* ---- environment -------------------------------------------------------- */

/* One allocation owned by the env; the payload is aligned for any type. */
struct it_str {
    struct it_str *next;
    max_align_t data[];
};

struct it_proc {
    struct it_proc *next;
    const char *label;
    const char *out_path;
    const char *err_path;
    pid_t pid;
    bool reaped;
    int status;
    /* fulcrum: must exit 0 on the SIGTERM that teardown sends. */
    bool must_exit_cleanly;
    /* Its stderr has been printed already (by a failing start). */
    bool dumped;
};

struct it_backend {
    const char *name;
    int port;
    struct it_proc *proc;
};

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

struct it_env {
    char dir[PATH_MAX];
    bool finished;
    unsigned seq;
    struct it_str *strings;
    struct it_proc *procs;
    struct it_conn *conns;
    struct it_backend backends[MAX_BACKENDS];
    size_t nbackends;
    int dead_fds[MAX_DEAD_PORTS]; /* see it_dead_port() */
    size_t ndead;
    struct it_raw_backend *raw_backends; /* see it_raw_backend_start() */
};

/* Zeroed memory freed at teardown. */
static void *env_alloc(struct it_env *env, size_t size)
{
    struct it_str *node = xmalloc(sizeof(*node) + size);
    memset(node->data, 0, size);
    node->next = env->strings;
    env->strings = node;
    return node->data;
}

static char *env_strdup_len(struct it_env *env, const char *s, size_t len)
{
    char *copy = env_alloc(env, len + 1);
    memcpy(copy, s, len);
    return copy;
}

static char *env_vstrf(struct it_env *env, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        it_fail("vsnprintf failed for \"%s\"", fmt);
    char *s = env_alloc(env, (size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *it_strf(struct it_env *env, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = env_vstrf(env, fmt, ap);
    va_end(ap);
    return s;
}

int it_setup(void **state)
{
    install_process_hooks();

    struct it_env *env = xmalloc(sizeof(*env));
    memset(env, 0, sizeof(*env));
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    snprintf(env->dir, sizeof(env->dir), "%s/fulcrum-it-XXXXXX", tmp);
    if (mkdtemp(env->dir) == NULL) {
        fprintf(stderr, "harness: mkdtemp(%s): %s\n", env->dir, strerror(errno));
        free(env);
        return -1;
    }
    *state = env;
    return 0;
}

void it_env_mark_finished(struct it_env *env)
{
    env->finished = true;
}

const char *it_env_dir(const struct it_env *env)
{
    return env->dir;
}

const char *it_path(struct it_env *env, const char *name)
{
    return it_strf(env, "%s/%s", env->dir, name);
}

static void write_all_fd(int fd, const char *data, size_t len, const char *path)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            it_fail("write %s: %s", path, strerror(e));
        }
        data += n;
        len -= (size_t)n;
    }
}

const char *it_write_file(struct it_env *env, const char *name, const char *text)
{
    const char *path = it_path(env, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        it_fail("open %s: %s", path, strerror(errno));
    write_all_fd(fd, text, strlen(text), path);
    close(fd);
    return path;
}

/* The whole file (or its last `tail` bytes if tail > 0), malloc'd; NULL if unreadable. */
static char *read_file(const char *path, size_t tail, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) == 0 && tail > 0 && (size_t)st.st_size > tail)
        lseek(fd, st.st_size - (off_t)tail, SEEK_SET);
    size_t len = 0, cap = 4096;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    if (len_out != NULL)
        *len_out = len;
    return buf;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "harness: remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* ---- time and ports ----------------------------------------------------- */

int64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void it_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

/* A socket bound to 127.0.0.1:0, not listening; its port in *port. */
static int bind_any_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        it_fail("socket: %s", strerror(errno));
    struct sockaddr_in sin = loopback(0);
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
        close(bind_any_port(&port));
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
    env->dead_fds[env->ndead++] = bind_any_port(&port);
    return port;
}

/* ---- child processes ---------------------------------------------------- */

/*
 * Starts argv with stdin from /dev/null and stdout/stderr going to files in
 * the env's directory named after `label`. The child dies with us.
 */
static struct it_proc *spawn(struct it_env *env, const char *label, const char *const *argv)
{
    unsigned seq = ++env->seq;
    struct it_proc *proc = xmalloc(sizeof(*proc));
    memset(proc, 0, sizeof(*proc));
    proc->label = it_strf(env, "%s", label);
    proc->out_path = it_strf(env, "%s/%02u-%s.stdout", env->dir, seq, label);
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
        int out = open(proc->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
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

/* Reaps the child if it has exited; true if it has (now or before). */
static bool proc_poll(struct it_proc *proc)
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
    while (!proc_poll(proc)) {
        if (it_now_ms() >= deadline)
            return -ETIMEDOUT;
        it_sleep_ms(5);
    }
    if (status != NULL)
        *status = proc->status;
    return 0;
}

static const char *describe_status(struct it_env *env, int status)
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
    char *text = read_file(path, 0, &len);
    if (text == NULL)
        return "";
    char *copy = env_strdup_len(env, text, len);
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

/* Prints the tail of a file between marker lines; false if it is empty. */
static bool dump_file(const char *what, const char *path)
{
    size_t len = 0;
    char *text = read_file(path, DUMP_TAIL_BYTES, &len);
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

/* Prints a child's stderr once, for a failure the harness reports itself. */
static void proc_report(struct it_env *env, struct it_proc *proc)
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
    struct it_proc *proc = spawn(env, base ? base + 1 : argv[0], argv);
    int status = 0;
    if (it_proc_wait(proc, timeout_ms, &status) != 0) {
        kill(proc->pid, SIGKILL);
        it_proc_wait(proc, IT_STOP_TIMEOUT_MS, NULL);
        proc_report(env, proc);
        it_fail("%s did not finish within %d ms", argv[0], timeout_ms);
    }
    result->status = status;
    result->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result->out = it_proc_stdout(env, proc);
    result->err = it_proc_stderr(env, proc);
}

/* ---- demo backends ------------------------------------------------------ */

int it_backend_start(struct it_env *env, const char *name)
{
    return it_backend_start_args(env, name, NULL);
}

#define MAX_EXTRA_ARGS 16

int it_backend_start_args(struct it_env *env, const char *name, const char *const *extra)
{
    if (env->nbackends == MAX_BACKENDS)
        it_fail("too many backends");
    const char *argv[5 + MAX_EXTRA_ARGS + 1] = {FC_DEMO_BACKEND, "--name", name, "--listen",
                                                "127.0.0.1:0"};
    size_t argc = 5;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (i == MAX_EXTRA_ARGS)
            it_fail("demo backend %s: more than %d extra arguments", name, MAX_EXTRA_ARGS);
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    struct it_proc *proc = spawn(env, it_strf(env, "backend-%s", name), argv);

    /* Its stdout is a file, so there is no pipe to drain or to break later. */
    static const char prefix[] = "listening on 127.0.0.1:";
    int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
    int port = -1;
    for (;;) {
        char *out = read_file(proc->out_path, 0, NULL);
        const char *at = out ? strstr(out, prefix) : NULL;
        if (at != NULL && strchr(at, '\n') != NULL) {
            port = atoi(at + sizeof(prefix) - 1);
            free(out);
            break;
        }
        free(out);
        if (proc_poll(proc)) {
            proc_report(env, proc);
            it_fail("demo backend %s %s before it listened", name,
                    describe_status(env, proc->status));
        }
        if (it_now_ms() >= deadline) {
            proc_report(env, proc);
            it_fail("demo backend %s printed no \"%s<port>\" line within %d ms", name, prefix,
                    IT_START_TIMEOUT_MS);
        }
        it_sleep_ms(5);
    }
    if (port <= 0 || port > 65535)
        it_fail("demo backend %s: bad port in its stdout", name);

    struct it_backend *b = &env->backends[env->nbackends++];
    b->name = it_strf(env, "%s", name);
    b->port = port;
    b->proc = proc;
    return port;
}

struct it_proc *it_backend_proc(struct it_env *env, const char *name)
{
    for (size_t i = 0; i < env->nbackends; i++)
        if (strcmp(env->backends[i].name, name) == 0)
            return env->backends[i].proc;
    it_fail("no backend named %s", name);
    return NULL;
}

/* ---- raw backends ------------------------------------------------------- */

/*
 * Threads, unlike everything else here: an accept thread per raw backend and
 * a thread per connection. What they share with the test thread (the list of
 * connections, their recordings, their fds) is guarded by the backend's lock;
 * `stopping` is read and written atomically.
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

static int wait_fd(int fd, short events, int timeout_ms);

/* The connection the calling handler thread serves (NULL on other threads). */
static __thread struct it_raw_conn *raw_current;

static bool raw_stopping(const struct it_raw_backend *rb)
{
    return __atomic_load_n(&rb->stopping, __ATOMIC_ACQUIRE) != 0;
}

void *it_zalloc(struct it_env *env, size_t size)
{
    return env_alloc(env, size);
}

static void raw_record(struct it_raw_conn *rc, const void *data, size_t len)
{
    pthread_mutex_lock(&rc->rb->lock);
    if (rc->len + len > rc->cap) {
        while (rc->len + len > rc->cap)
            rc->cap = rc->cap ? rc->cap * 2 : 4096;
        rc->data = xrealloc(rc->data, rc->cap);
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
    int r = wait_fd(fd, POLLIN, timeout_ms);
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
            r = wait_fd(fd, POLLIN, timeout_ms);
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
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, ms_left(deadline));
            if (r != 0)
                return r;
            continue;
        }
        return n < 0 ? -errno : -EPIPE;
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
    while (!raw_stopping(rb) && wait_fd(rc->fd, POLLIN, ms_left(deadline)) == 0) {
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
        struct it_raw_conn *rc = xmalloc(sizeof(*rc));
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
    struct it_raw_backend *rb = xmalloc(sizeof(*rb));
    memset(rb, 0, sizeof(*rb));
    rb->handler = handler;
    rb->arg = arg;
    rb->tail = &rb->conns;
    rb->listen_fd = bind_any_port(&rb->port);
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
        copy = env_strdup_len(env, rc->data ? rc->data : "", rc->len);
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
    char *copy = env_alloc(env, total + 1);
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

/* Teardown: stops accepting, wakes every handler, joins every thread, frees it all. */
static void raw_backends_stop(struct it_env *env)
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

/* ---- redis-server ------------------------------------------------------- */

/* The path of `name` on PATH, owned by the env, or NULL. */
static const char *find_on_path(struct it_env *env, const char *name)
{
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path != '\0') {
        size_t len = strcspn(path, ":");
        const char *candidate = it_strf(env, "%.*s/%s", (int)len, path, name);
        if (len > 0 && access(candidate, X_OK) == 0)
            return candidate;
        path += len;
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* True if a Redis on 127.0.0.1:port answers PING within timeout_ms. */
static bool redis_pongs(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sin = loopback(port);
    bool ok = false;
    char buf[64];
    size_t len = 0;
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
        int64_t deadline = it_now_ms() + timeout_ms;
        while (len < 7 && wait_fd(fd, POLLIN, (int)(deadline - it_now_ms())) == 0) {
            ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
            if (n <= 0)
                break;
            len += (size_t)n;
        }
        ok = len >= 7 && memcmp(buf, "+PONG\r\n", 7) == 0;
    }
    close(fd);
    return ok;
}

int it_redis_start(struct it_env *env, int port, struct it_proc **proc_out)
{
    const char *server = find_on_path(env, "redis-server");
    if (server == NULL)
        it_fail("redis-server is not installed (apt-get install redis-server): "
                "this test needs a real Redis");
    /* A free port may be taken before redis-server binds it: then try another. */
    for (int attempt = 1;; attempt++) {
        int p = port != 0 ? port : it_free_port();
        const char *port_text = it_strf(env, "%d", p);
        const char *const argv[] = {server,   "--port",     port_text,      "--bind", "127.0.0.1",
                                    "--save", "",           "--appendonly", "no",     "--daemonize",
                                    "no",     "--loglevel", "warning",      NULL};
        struct it_proc *proc = spawn(env, "redis", argv);
        int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
        for (;;) {
            if (redis_pongs(p, 500)) {
                if (proc_out != NULL)
                    *proc_out = proc;
                return p;
            }
            if (proc_poll(proc)) {
                /* A port of ours that lingers after a SIGKILL frees within moments. */
                if (attempt < 5) {
                    proc->dumped = true; /* not worth a dump at teardown */
                    it_sleep_ms(port != 0 ? 200 : 0);
                    break;
                }
                proc_report(env, proc);
                it_fail("redis-server on 127.0.0.1:%d %s before it answered PING", p,
                        describe_status(env, proc->status));
            }
            if (it_now_ms() >= deadline) {
                proc_report(env, proc);
                it_fail("redis-server on 127.0.0.1:%d did not answer PING within %d ms", p,
                        IT_START_TIMEOUT_MS);
            }
            it_sleep_ms(10);
        }
    }
}

/* ---- fulcrum ------------------------------------------------------------ */

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
        sb->data = xrealloc(sb->data, sb->cap);
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
    sb_printf(&sb, "log = { level = \"%s\"; access = \"off\"; };\n", cfg->log_level);
    sb_printf(&sb,
              "timeouts = { connect_ms = %d; client_header_ms = %d; idle_ms = %d; "
              "upstream_ms = %d; shutdown_ms = %d; };\n",
              cfg->connect_ms, cfg->client_header_ms, cfg->idle_ms, cfg->upstream_ms,
              cfg->shutdown_ms);
    sb_printf(&sb, "limits = { max_header_bytes = %ld; max_body_bytes = %ld; };\n",
              cfg->max_header_bytes, cfg->max_body_bytes);
    sb_printf(&sb, "listeners = ( { address = \"127.0.0.1:%d\"; pool = \"%s\"; } );\n", listen_port,
              cfg->listener_pool ? cfg->listener_pool : cfg->pools[0].name);
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
        for (size_t j = 0; j < p->nports; j++)
            sb_printf(&sb, "%s\n      { address = \"127.0.0.1:%d\"; }", j ? "," : "", p->ports[j]);
        sb_printf(&sb, "\n    );\n  }%s\n", i + 1 < cfg->npools ? "," : "");
    }
    sb_printf(&sb, ");\n");
    char *text = env_strdup_len(env, sb.data, sb.len);
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
        const char *const argv[] = {FC_BINARY, "-c", path, NULL};
        struct it_proc *proc = spawn(env, "fulcrum", argv);
        proc->must_exit_cleanly = true;

        int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
        for (;;) {
            if (proc_poll(proc)) {
                const char *err = it_proc_stderr(env, proc);
                if (attempt < 3 && strstr(err, "in use") != NULL) {
                    proc->must_exit_cleanly = false;
                    break;
                }
                proc_report(env, proc);
                it_fail("fulcrum -c %s %s before it listened on 127.0.0.1:%d; config:\n%s", path,
                        describe_status(env, proc->status), port, text);
            }
            if (port_accepts(env, port)) {
                struct it_fulcrum *f = env_alloc(env, sizeof(*f));
                f->proc = proc;
                f->port = port;
                f->config_path = path;
                return f;
            }
            if (it_now_ms() >= deadline) {
                proc_report(env, proc);
                it_fail("fulcrum did not accept connections on 127.0.0.1:%d within %d ms", port,
                        IT_START_TIMEOUT_MS);
            }
            it_sleep_ms(10);
        }
    }
}

size_t it_count(const char *text, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + len, needle))
        n++;
    return n;
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
        if (proc_poll(f->proc)) {
            proc_report(env, f->proc);
            it_fail("fulcrum %s while reloading %s", describe_status(env, f->proc->status),
                    f->config_path);
        }
        if (it_now_ms() >= deadline) {
            proc_report(env, f->proc);
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

/* ---- HTTP client -------------------------------------------------------- */

static int wait_fd(int fd, short events, int timeout_ms)
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

/*
 * Connects fd, a non-blocking TCP socket, to 127.0.0.1:port, waiting up to
 * IT_IO_TIMEOUT_MS. Returns 0 or a negative errno; fd stays open either way.
 */
static int connect_loopback(int fd, int port)
{
    struct sockaddr_in sin = loopback(port);
    int r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    if (r != 0 && errno == EINPROGRESS) {
        r = wait_fd(fd, POLLOUT, IT_IO_TIMEOUT_MS);
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

/* A client connection over fd, which it now owns; owned by env until it_conn_close(). */
static struct it_conn *conn_new(struct it_env *env, int fd)
{
    struct it_conn *conn = xmalloc(sizeof(*conn));
    memset(conn, 0, sizeof(*conn));
    conn->env = env;
    conn->fd = fd;
    conn->cap = 64 * 1024;
    conn->buf = xmalloc(conn->cap);
    conn->timeout_ms = IT_IO_TIMEOUT_MS;
    conn->next = env->conns;
    env->conns = conn;
    return conn;
}

struct it_conn *it_connect_raw(struct it_env *env, int port, int *err)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        it_fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Port 0: the kernel picks a source port on that address. */
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
        int e = errno;
        close(fd);
        it_fail("bind %s:0: %s", source, strerror(e));
    }
    int r = connect_loopback(fd, port);
    if (r != 0) {
        close(fd);
        it_fail("connect 127.0.0.1:%d from %s: %s", port, source, strerror(-r));
    }
    return conn_new(env, fd);
}

struct it_conn *it_connect_rcvbuf(struct it_env *env, int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        it_fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Before connect(), so that the window scale of the handshake fits it too. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0) {
        int e = errno;
        close(fd);
        it_fail("setsockopt SO_RCVBUF %d: %s", rcvbuf, strerror(e));
    }
    int r = connect_loopback(fd, port);
    if (r != 0) {
        close(fd);
        it_fail("connect 127.0.0.1:%d: %s", port, strerror(-r));
    }
    return conn_new(env, fd);
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
        ssize_t n = send(conn->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(conn->fd, POLLOUT, conn->timeout_ms);
            if (r != 0)
                return r;
            continue;
        }
        return n < 0 ? -errno : -EPIPE;
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
            conn->buf = xrealloc(conn->buf, conn->cap);
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
            int r = wait_fd(conn->fd, POLLIN, timeout_ms);
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
            *line = xmalloc(len);
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
        resp->body = xrealloc(resp->body, *cap);
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
            resp->headers = xrealloc(resp->headers, cap * sizeof(*resp->headers));
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

void it_get(struct it_env *env, int port, const char *host, const char *path,
            struct it_response *resp)
{
    const char *req = it_strf(env, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    it_fetch(env, port, "GET", req, resp);
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

/* ---- body checks -------------------------------------------------------- */

uint64_t it_fnv1a64_update(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

uint64_t it_fnv1a64(const void *data, size_t len)
{
    return it_fnv1a64_update(IT_FNV1A64_INIT, data, len);
}

void it_pattern_fill(void *buf, size_t offset, size_t len)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = it_pattern_byte(offset + i);
}

size_t it_pattern_mismatch(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != it_pattern_byte(i))
            return i;
    return len;
}

const char *it_sum_line(struct it_env *env, const void *body, size_t len)
{
    return it_strf(env, "len=%zu fnv=%016llx\n", len, (unsigned long long)it_fnv1a64(body, len));
}

void it_send_sum(struct it_env *env, struct it_conn *conn, const void *body, size_t len)
{
    it_send_str(
        conn, it_strf(env, "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: %zu\r\n\r\n", len));
    it_send(conn, body, len);
}

void it_expect_sum(struct it_env *env, struct it_conn *conn, const void *body, size_t len)
{
    const char *want = it_sum_line(env, body, len);
    struct it_response r;
    it_expect_response(conn, "POST", &r);
    const char *why = NULL;
    if (r.status != 200)
        why = it_strf(env, "status %d, expected 200", r.status);
    else if (strcmp(r.body, want) != 0)
        why = it_strf(env, "\"%s\", expected \"%s\"", r.body, want);
    it_response_free(&r);
    if (why != NULL)
        it_fail("POST /sum of %zu bytes: %s", len, why);
}

void it_expect_pattern(struct it_conn *conn, size_t n)
{
    struct it_response r;
    it_expect_response(conn, "GET", &r);
    int status = r.status;
    size_t got = r.body_len, good = it_pattern_mismatch(r.body, r.body_len);
    it_response_free(&r);
    if (status != 200 || got != n || good != n)
        it_fail("GET /bytes?n=%zu: status %d with %zu bytes, the first %zu of them the pattern; "
                "expected 200 with %zu pattern bytes",
                n, status, got, good, n);
}

/* ---- teardown and main -------------------------------------------------- */

int it_teardown(void **state)
{
    struct it_env *env = *state;
    int rc = 0;

    while (env->conns != NULL)
        it_conn_close(env->conns);
    for (size_t i = 0; i < env->ndead; i++)
        close(env->dead_fds[i]);
    raw_backends_stop(env);

    /*
     * A child the test reaped itself was the test's business. One that exited
     * on its own meanwhile died during the test: for fulcrum, a failure. The
     * rest are asked to stop.
     */
    size_t n = 0;
    for (struct it_proc *p = env->procs; p != NULL; p = p->next, n++) {
        if (p->reaped)
            continue;
        if (proc_poll(p)) {
            if (p->must_exit_cleanly) {
                fprintf(stderr, "harness: %s (pid %d) %s during the test\n", p->label, (int)p->pid,
                        describe_status(env, p->status));
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
                    (int)p->pid, describe_status(env, p->status));
            rc = -1;
        }
    }

    if (!env->finished || rc != 0) {
        /* Oldest first reads better; the list is newest first. */
        for (size_t i = n; i > 0; i--) {
            struct it_proc *p = env->procs;
            for (size_t j = 1; j < i; j++)
                p = p->next;
            if (!p->dumped)
                it_proc_dump(env, p);
        }
    }

    const char *keep = getenv("FC_IT_KEEP");
    if (keep != NULL && keep[0] != '\0' && strcmp(keep, "0") != 0)
        fprintf(stderr, "harness: kept %s\n", env->dir);
    else
        nftw(env->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

    while (env->procs != NULL) {
        struct it_proc *p = env->procs;
        env->procs = p->next;
        free(p);
    }
    while (env->strings != NULL) {
        struct it_str *s = env->strings;
        env->strings = s->next;
        free(s);
    }
    free(env);
    *state = NULL;
    return rc;
}

int it_main(int argc, char **argv, const char *group, const struct CMUnitTest *tests, size_t n)
{
    if (argc > 2) {
        fprintf(stderr, "usage: %s [TEST]\n", argv[0]);
        return 2;
    }
    if (argc == 2) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(tests[i].name, argv[1]) == 0;
        if (!found) {
            fprintf(stderr, "%s: no test named \"%s\"; tests:", argv[0], argv[1]);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %s", tests[i].name);
            fputc('\n', stderr);
            return 2;
        }
        cmocka_set_test_filter(argv[1]);
    }
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}
