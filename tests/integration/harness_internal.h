/*
 * What the pieces of the integration test harness share and the tests do not
 * see: the layout of the environment and of a child process, and the helpers
 * that one piece of the harness offers the others. Tests include harness.h
 * only, which stays their whole API; everything here may change with the
 * harness.
 *
 * The pieces: harness.c (the environment, failure, memory, files, the clock,
 * teardown and main), processes.c, sockets.c, backends.c, raw_backend.c,
 * redis.c, dns.c, fulcrum.c and http_client.c. Each file opens with what it holds.
 */
#ifndef FULCRUM_TESTS_INTEGRATION_HARNESS_INTERNAL_H
#define FULCRUM_TESTS_INTEGRATION_HARNESS_INTERNAL_H

#include "harness.h"

#include <limits.h>
#include <netinet/in.h>

#define MAX_BACKENDS 16
#define MAX_DEAD_PORTS 8

/* ---- the environment and its children ----------------------------------- */

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

/* ---- failure, memory, files (harness.c) --------------------------------- */

/* Prints a message and fails the running cmocka test (longjmps out of it). */
void it_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* malloc() and realloc() that abort the process when memory runs out. */
void *it_xmalloc(size_t n);
void *it_xrealloc(void *p, size_t n);

/* A NUL-terminated copy of len bytes of s, owned by the env. */
char *it_env_strdup_len(struct it_env *env, const char *s, size_t len);

/* The whole file (or its last `tail` bytes if tail > 0), malloc'd; NULL if unreadable. */
char *it_read_file(const char *path, size_t tail, size_t *len_out);

/* ---- child processes (processes.c) -------------------------------------- */

/*
 * Ignores SIGPIPE and installs the last-resort cleanup (atexit() and the
 * SIGINT, SIGTERM and SIGHUP handlers) that kills every child not yet reaped.
 * Called by it_setup(); only the first call does anything.
 */
void it_install_process_hooks(void);

/*
 * Starts argv with stdin from /dev/null and stdout/stderr going to files in
 * the env's directory named after `label`. The child dies with us.
 */
struct it_proc *it_spawn(struct it_env *env, const char *label, const char *const *argv);

/* it_spawn() with stdout opened (for writing) from out_path instead. */
struct it_proc *it_spawn_out(struct it_env *env, const char *label, const char *const *argv,
                             const char *out_path);

/* Reaps the child if it has exited; true if it has (now or before). */
bool it_proc_poll(struct it_proc *proc);

/* "exited with status N", "killed by signal N (NAME)"..., owned by the env. */
const char *it_describe_status(struct it_env *env, int status);

/* Prints a child's stderr once, for a failure the harness reports itself. */
void it_proc_report(struct it_env *env, struct it_proc *proc);

/*
 * Teardown: stops every child the test left running (SIGTERM, then SIGKILL
 * past IT_STOP_TIMEOUT_MS). Returns -1 if a fulcrum died during the test, or
 * did not exit 0 after SIGTERM, else 0.
 */
int it_procs_stop(struct it_env *env);

/* Teardown of a failed test: prints every child's stderr not printed yet, oldest first. */
void it_procs_dump_unreported(struct it_env *env);

/* Teardown, last: frees the process records (their strings are the env's). */
void it_procs_free(struct it_env *env);

/* ---- sockets (sockets.c) ------------------------------------------------ */

/* 127.0.0.1:port. */
struct sockaddr_in it_loopback(int port);

/* A socket bound to 127.0.0.1:0, not listening; its port in *port. */
int it_bind_any_port(int *port);

/*
 * Waits up to timeout_ms for `events` (POLLIN, POLLOUT) on fd. Returns 0 when
 * they come (or an error or hang-up does), -ETIMEDOUT, or a negative errno.
 */
int it_wait_fd(int fd, short events, int timeout_ms);

/*
 * One send() of the *len bytes at *p, with `flags`; advances *p and *len past
 * what went out. Returns 0 when some bytes went out or the call was
 * interrupted (send again), -EAGAIN when the socket has no room (wait for
 * POLLOUT, then send again), or a negative errno (-EPIPE if send() wrote
 * nothing without an error).
 */
int it_send_some(int fd, const char **p, size_t *len, int flags);

/* ---- raw backends (raw_backend.c) --------------------------------------- */

/* Teardown: stops accepting, wakes every handler, joins every thread, frees it all. */
void it_raw_backends_stop(struct it_env *env);

#endif
