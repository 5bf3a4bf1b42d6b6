/*
 * The integration test harness: runs the real `fulcrum` binary and real demo
 * backends as child processes on 127.0.0.1, and talks HTTP/1.1 to them with a
 * small blocking client that sees exactly the bytes a user would see.
 *
 * Plain POSIX (plus prctl(PR_SET_PDEATHSIG) on Linux); it links none of the
 * daemon's code, so a bug in the proxy cannot hide a bug in the test. Each
 * section below names the file that implements it; what those files share,
 * and the tests do not see, is in harness_internal.h.
 *
 * Lifetime. Every test runs inside an environment (struct it_env) made by the
 * cmocka setup function it_setup() and destroyed by it_teardown(), which cmocka
 * runs even after a failed assertion has longjmp'd out of the test body.  The
 * environment owns everything a test creates through it: a private temporary
 * directory, the child processes, the client connections and the strings the
 * harness hands out.  Teardown closes the connections, stops the children
 * (SIGTERM, a deadline, then SIGKILL, always by PID) and removes the directory.
 * If the test did not finish, teardown first prints every child's stderr.
 * Every fulcrum started with it_fulcrum_start() must also exit with status 0
 * on SIGTERM at teardown, so a crash anywhere during a test fails that test.
 *
 * A child outlives nothing: children die with the test process
 * (PR_SET_PDEATHSIG), an atexit() hook kills what is left, and SIGINT, SIGTERM
 * and SIGHUP kill the children before the test process dies.
 *
 * Failures. Functions that set things up (it_backend_start(), it_connect(),
 * ...) fail the running test themselves, with a message saying what went
 * wrong.  Functions whose failure a test may want to observe
 * (it_recv_response(), it_connect_raw()) return 0 or a negative errno value and
 * print the reason to stderr.
 */
#ifndef FULCRUM_TESTS_INTEGRATION_HARNESS_H
#define FULCRUM_TESTS_INTEGRATION_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

/* Default deadlines, in milliseconds. */
#define IT_START_TIMEOUT_MS 10000 /* a child to bind its port */
#define IT_IO_TIMEOUT_MS 10000    /* one blocking send or receive */
#define IT_STOP_TIMEOUT_MS 6000   /* a child to exit after SIGTERM at teardown */

/* ---- environment and test registration (harness.c) --------------------- */

struct it_env;

/*
 * IT_TEST(name) { ... } defines a test whose body sees `struct it_env *env`.
 * The wrapper marks the test finished when the body returns, which is how
 * teardown knows whether to print the children's logs.
 */
#define IT_TEST(name)                                                                              \
    static void name##_body(struct it_env *env);                                                   \
    static void name(void **state)                                                                 \
    {                                                                                              \
        name##_body(*state);                                                                       \
        it_env_mark_finished(*state);                                                              \
    }                                                                                              \
    static void name##_body(struct it_env *env)

/* The cmocka entry for a test defined with IT_TEST(). */
#define IT_CASE(name) cmocka_unit_test_setup_teardown(name, it_setup, it_teardown)

/*
 * IT_MAIN(tests) defines main(). With no argument it runs every test of the
 * file; with one argument it runs only the test of that exact name (CTest runs
 * each test as its own case that way), and fails if there is none.
 */
#define IT_MAIN(tests)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return it_main(argc, argv, #tests, tests, sizeof(tests) / sizeof(tests[0]));               \
    }

int it_setup(void **state);
int it_teardown(void **state);
void it_env_mark_finished(struct it_env *env);
int it_main(int argc, char **argv, const char *group, const struct CMUnitTest *tests, size_t n);

/* The environment's private directory (absolute, no trailing slash). */
const char *it_env_dir(const struct it_env *env);

/* "<env dir>/<name>", owned by the environment. */
const char *it_path(struct it_env *env, const char *name);

/* Writes `text` to "<env dir>/<name>"; returns the path, owned by the environment. */
const char *it_write_file(struct it_env *env, const char *name, const char *text);

/* printf into a string owned by the environment (freed at teardown). */
char *it_strf(struct it_env *env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Number of times `needle` occurs in `text`, not overlapping. */
size_t it_count(const char *text, const char *needle);

/* Zeroed memory owned by the env, freed at teardown (after the raw backends stop). */
void *it_zalloc(struct it_env *env, size_t size);

/* ---- time (harness.c) -------------------------------------------------- */

/* Monotonic milliseconds. */
int64_t it_now_ms(void);
void it_sleep_ms(int ms);

/* ---- ports (sockets.c) ------------------------------------------------- */

/*
 * A port on 127.0.0.1 that was free a moment ago: bound with port 0, read
 * back, closed, so that a child can bind it. Another process may take it
 * meanwhile; it_fulcrum_start() copes with that.
 */
int it_free_port(void);

/*
 * A port on 127.0.0.1 that refuses connections until teardown: it stays bound
 * by a socket that never listens, so no other process (a backend of a test
 * running in parallel) can take it. A dead backend.
 */
int it_dead_port(struct it_env *env);

/* ---- child processes (processes.c) ------------------------------------- */

struct it_proc;

pid_t it_proc_pid(const struct it_proc *proc);
void it_proc_signal(struct it_proc *proc, int sig);

/*
 * Waits up to timeout_ms for the child to exit and reaps it. Returns 0 and
 * stores the waitpid() status in *status, or -ETIMEDOUT. Calling it again
 * after the child has been reaped returns the same status.
 */
int it_proc_wait(struct it_proc *proc, int timeout_ms, int *status);

/* Everything the child wrote to stderr (or stdout) so far, owned by the env. */
const char *it_proc_stderr(struct it_env *env, const struct it_proc *proc);
const char *it_proc_stdout(struct it_env *env, const struct it_proc *proc);

/* Prints a child's stderr to our stderr, with a header line. */
void it_proc_dump(struct it_env *env, const struct it_proc *proc);

/* What a short-lived command did; see it_run(). Strings owned by the env. */
struct it_run_result {
    int status;    /* raw waitpid() status */
    int exit_code; /* WEXITSTATUS, or -1 if it did not exit normally */
    const char *out;
    const char *err;
};

/*
 * Runs argv (argv[0] is a path, argv NULL-terminated) to completion, with
 * stdin from /dev/null and stdout/stderr captured. Fails the test if it runs
 * longer than timeout_ms (the child is killed).
 */
void it_run(struct it_env *env, const char *const *argv, int timeout_ms,
            struct it_run_result *result);

/*
 * Starts argv (as for it_run()) without waiting for it: stdin from
 * /dev/null, stdout and stderr captured (it_proc_stdout(), it_proc_stderr()).
 * The test waits for it with it_proc_wait(); teardown stops it if it still
 * runs (SIGTERM, then SIGKILL, by PID). `label` names it in what a failed
 * test prints.
 */
struct it_proc *it_start(struct it_env *env, const char *label, const char *const *argv);

/*
 * Waits up to timeout_ms until the child has printed `text` on stdout; fails
 * the test, printing its stderr, when it does not.
 */
void it_proc_wait_output(struct it_env *env, struct it_proc *proc, const char *text,
                         int timeout_ms);
/* The resident memory of process pid in KiB (VmRSS), or -1 when it cannot be read. */
long it_rss_kib(pid_t pid);
/*
 * For a test that measures a fulcrum's RSS, around the it_fulcrum_start() of
 * that fulcrum. Under AddressSanitizer (the whole tree is built with it or
 * without it), memory that fulcrum frees does not come back at once, and some
 * the sanitizer itself takes is never given back: freed blocks wait in a
 * quarantine (256 MB by default), the allocation stack of every block is kept
 * for good in a depot, and the globals of each loaded module are registered
 * in lists that dlclose() does not shrink. All of that would show as growth.
 * it_rss_asan_begin() sets ASAN_OPTIONS for the children started next to run
 * without them (leak detection stays on: a leak still makes fulcrum exit
 * non-zero, without the allocation stacks) and returns the previous value (a
 * copy owned by the env, NULL if unset); it_rss_asan_end() puts it back, so
 * that every later child keeps the full checks. Without ASan, both do nothing.
 */
const char *it_rss_asan_begin(struct it_env *env);
void it_rss_asan_end(const char *old);
/*
 * Makes the test certificates with make-certs.sh (real openssl) in
 * "<env dir>/certs" and returns that folder: a test CA (ca.pem) and one
 * other (other-ca.pem); site.pem for "site.test" and "www.site.test",
 * site2.pem for the same names, api.pem for "api.test", wild.pem for
 * "*.wild.test", backend.pem for "backend.test" and 127.0.0.1, an expired
 * expired.pem, each with its NAME.key (ECDSA P-256), and mismatch.key, which
 * matches none of them. Fails the test if openssl does.
 */
const char *it_make_certs(struct it_env *env);
/*
 * One entry of a listener's `tls.certificates` for certificate NAME of
 * it_make_certs()'s folder dir: { cert = "DIR/NAME.pem"; key = "DIR/NAME.key"; }.
 */
const char *it_tls_certificate(struct it_env *env, const char *dir, const char *name);
/* ---- demo backends (backends.c) ---------------------------------------- */

/*
 * Starts `demo_backend --name NAME --listen 127.0.0.1:0` and waits for its
 * "listening on 127.0.0.1:PORT" line. Returns PORT. The process is found again
 * with it_backend_proc().
 */
int it_backend_start(struct it_env *env, const char *name);
struct it_proc *it_backend_proc(struct it_env *env, const char *name);

/*
 * it_backend_start() with more demo_backend options after the usual ones:
 * `extra` is a NULL-terminated list such as {"--delay-ms", "200", NULL}, or
 * NULL for none. The strings are only read during the call.
 */
int it_backend_start_args(struct it_env *env, const char *name, const char *const *extra);

/*
 * it_backend_start() listening on `listen` instead of 127.0.0.1:0: a
 * loopback address with a port, "[::1]:9001" or "127.0.0.1:0" (port 0: a
 * free one). Returns the port it listens on.
 */
int it_backend_start_on(struct it_env *env, const char *name, const char *listen);

/* ---- raw backends (raw_backend.c) -------------------------------------- */

/*
 * A backend scripted byte by byte, for responses the demo backend cannot
 * give (interim floods, EOF-delimited bodies, answers before the request...).
 *
 * It runs in threads of the test process: one accepts on 127.0.0.1:0, and
 * each accepted connection gets its own thread that calls handler(fd, arg).
 * The handler reads the request itself with it_raw_read() and friends (what
 * they read is recorded for the test, see it_raw_backend_received()) and
 * writes whatever bytes it likes with it_raw_write(). When it returns, the
 * harness shuts the connection down for writing (the peer sees EOF), drains
 * what the peer still sends for up to a second so that the close sends no
 * reset, and closes it. The handler must not close fd itself; it may call
 * shutdown(fd, SHUT_WR).
 *
 * The handler runs on its own thread: it must not use cmocka's assertions or
 * any harness function that fails the test, only the it_raw_*() functions
 * below (which return errors instead) and plain POSIX calls. `arg` must stay
 * valid until teardown (static, or memory from it_zalloc()), since a failed
 * test leaves its stack frame while the handlers still run. Several
 * connections may run the handler at once.
 *
 * Teardown, after closing the test's client connections and before stopping
 * the child processes, stops accepting, shuts every open connection down
 * (which wakes a handler blocked reading or writing, and makes the
 * it_raw_*() calls fail with -ECANCELED from then on) and joins every thread.
 */
typedef void (*it_raw_handler)(int fd, void *arg);

/* Starts a raw backend; returns its port. Fails the test if it cannot. */
int it_raw_backend_start(struct it_env *env, it_raw_handler handler, void *arg);

/* Number of connections the raw backend on `port` has accepted so far. */
size_t it_raw_backend_conns(struct it_env *env, int port);

/*
 * What the handler of connection `i` (in the order accepted) of the raw
 * backend on `port` has read so far through it_raw_read() and the functions
 * built on it, as a NUL-terminated copy owned by the env (*len, if not NULL,
 * gets the length without the NUL). NULL if there is no such connection.
 */
const char *it_raw_backend_received(struct it_env *env, int port, size_t i, size_t *len);

/* The same for every connection, concatenated in the order accepted ("" if none). */
const char *it_raw_backend_received_all(struct it_env *env, int port, size_t *len);

/*
 * For handlers. One recv() of at most cap bytes, waiting up to timeout_ms for
 * something to arrive; what it reads is recorded. Returns the number of bytes,
 * 0 at end of stream, or a negative errno (-ETIMEDOUT, -ECANCELED once the
 * raw backend is stopping, ...).
 */
ssize_t it_raw_read(int fd, void *buf, size_t cap, int timeout_ms);

/*
 * For handlers. Reads into buf, which holds *len bytes already (of at most
 * cap), until they contain `needle`; returns the offset just past its first
 * occurrence, or a negative errno: -EPIPE at end of stream, -ENOBUFS if buf
 * fills up first, -ETIMEDOUT when timeout_ms pass in all. Bytes after the
 * needle stay in buf (*len counts them).
 */
ssize_t it_raw_read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle,
                          int timeout_ms);

/* For handlers. Reads until buf holds at least `want` bytes; 0 or a negative errno. */
int it_raw_read_len(int fd, char *buf, size_t cap, size_t *len, size_t want, int timeout_ms);

/* For handlers. Drops the first n of the *len bytes of buf. */
void it_raw_consume(char *buf, size_t *len, size_t n);

/*
 * For handlers. The value of the Content-Length header in the message head
 * `head` (head_len bytes), or -1 if it has none (or a malformed one).
 */
long it_raw_content_length(const char *head, size_t head_len);

/* For handlers. Writes all bytes (waiting at most IT_IO_TIMEOUT_MS); 0 or a negative errno. */
int it_raw_write(int fd, const void *data, size_t len);
int it_raw_write_str(int fd, const char *s);

/* For handlers. Sleeps; false (early) if the raw backend is stopping. */
bool it_raw_sleep_ms(int ms);

/* ---- redis-server (redis.c) -------------------------------------------- */

/*
 * Starts `redis-server` (found on PATH) on 127.0.0.1:port, or on a free port
 * when port is 0, without persistence (--save '' --appendonly no), and waits
 * until it answers PING. Returns the port, and the process in *proc if proc
 * is not NULL: a test kills it with it_proc_signal(proc, SIGKILL) and
 * it_proc_wait(), and may start a new one on the same port; teardown stops
 * whatever still runs. Fails the test if redis-server is not installed or
 * does not answer within IT_START_TIMEOUT_MS: tests that need Redis never
 * skip.
 */
int it_redis_start(struct it_env *env, int port, struct it_proc **proc);

/* ---- a DNS server (dns.c) --------------------------------------------- */

/*
 * Starts tests/integration/dns_server.py (python3-dnslib) on UDP and TCP of
 * one free port of 127.0.0.1, answering from `zone_json`, written as the
 * env's zone file. The zone is JSON:
 *   {"names": {"web.test.": {"ttl": 30, "A": ["127.0.0.1"], "AAAA": ["::1"],
 *                            "SRV": [[PRIORITY, WEIGHT, PORT, "target.test."]]}}}
 * a name that is not in it gets NXDOMAIN, one without records of the asked
 * type an empty NOERROR; a name with "rcode": "SERVFAIL" (or "REFUSED") gets
 * that, one with "malformed": true an answer cut short, one with
 * "drop": true no answer at all. Returns the port, and the process in *proc
 * if proc is not NULL: a test kills it (it_proc_signal(), SIGKILL) to make
 * DNS fail; teardown stops it if it still runs. Fails the test if the server
 * does not listen within IT_START_TIMEOUT_MS.
 */
int it_dns_start(struct it_env *env, const char *zone_json, struct it_proc **proc);

/*
 * Replaces the env's zone (renamed into place, so the server reads the whole
 * of the old or of the new one); the server answers from it from its next
 * query on.
 */
void it_dns_zone(struct it_env *env, const char *zone_json);

/*
 * Number of queries for `name` ("web.test", with or without the final dot,
 * in the case it was asked in) of `type` ("A", "AAAA", "SRV"; NULL: any) that
 * the server proc has answered or dropped so far.
 */
size_t it_dns_queries(struct it_env *env, const struct it_proc *proc, const char *name,
                      const char *type);

/* ---- fulcrum (fulcrum.c) ----------------------------------------------- */

#define IT_MAX_POOLS 4
#define IT_MAX_POOL_BACKENDS 8

struct it_pool_config {
    const char *name;
    const char *strategy; /* plugin name; "round_robin" if NULL */
    /* More keys of the strategy group, as libconfig text (`key = "header:X";`), or NULL. */
    const char *strategy_options;
    int retries;
    int ports[IT_MAX_POOL_BACKENDS]; /* backends, all on 127.0.0.1 */
    size_t nports;
    /*
     * The keys of the pool's `health` group, as libconfig text without the
     * braces (`plugin = "http"; path = "/hc"; interval_ms = 100;`), or NULL
     * for a pool without a checker.
     */
    const char *health;
    /* More keys of the pool itself, as libconfig text (`max_fails = 2;`), or NULL. */
    const char *pool_options;
    /*
     * The body of the pool's `backends` list as libconfig text
     * (`{ address = "web.test:8080"; resolve = true; }`), written instead of
     * the entries for `ports`; NULL: those entries.
     */
    const char *backends_text;
};

/*
 * A whole fulcrum configuration. it_config_init() fills in the defaults that
 * the tests share (short timeouts where waiting costs test time, long ones
 * elsewhere); a test changes the fields it cares about.
 */
struct it_config {
    int workers;
    int connect_ms, client_header_ms, idle_ms, upstream_ms, shutdown_ms;
    int tunnel_ms; /* timeouts.tunnel_ms; 0: not set (fulcrum's default) */
    long max_header_bytes, max_body_bytes;
    long max_connections; /* limits.max_connections; 0: not set (fulcrum's default) */
    int nofile;           /* RLIMIT_NOFILE of fulcrum (it runs under prlimit); 0: inherited */
    const char *log_level;
    const char *access_log; /* log.access; NULL: "off" */
    long log_buffer_bytes;  /* log.buffer_bytes; 0: not set */
    /*
     * fulcrum's stdout is opened from this path (a FIFO that the test holds
     * open, say) instead of a file of the env; NULL: the file.
     */
    const char *stdout_path;
    const char *listener_pool; /* default: the first pool */
    /*
     * The keys of the listener's `tls` group, as libconfig text without the
     * braces (`certificates = ( { cert = "a.pem"; key = "a.key"; } );`), or
     * NULL for a plain listener.
     */
    const char *listener_tls;
    const char *listener_extra; /* more keys of the listener (`defer_accept = false;`), or NULL */
    struct it_pool_config pools[IT_MAX_POOLS];
    size_t npools;
    const char *routes; /* libconfig list body for `routes = ( ... );`, or NULL */
    /*
     * The keys of the `admin` group, as libconfig text without the braces
     * (`address = "127.0.0.1:9901"; token_file = "admin.token";`), written as
     * the file's last line; NULL: no admin listener.
     */
    const char *admin;
    /*
     * More top-level keys, as libconfig text (`state_file = "/tmp/x/state.json";`),
     * written after the pools; NULL: none.
     */
    const char *top;
};

void it_config_init(struct it_config *cfg);

/* Adds a pool of `n` backends (ports follow) and returns it for further edits. */
struct it_pool_config *it_config_add_pool(struct it_config *cfg, const char *name, int retries,
                                          size_t n, ...);

/*
 * The configuration most tests start from: it_config_init(cfg) and one pool
 * "web" (1 retry) of n demo backends, started here with it_backend_start()
 * and named "a", "b", "c", ... in pool order. Returns the pool, for further
 * edits; its ports are the backends'.
 */
struct it_pool_config *it_config_demo_pool(struct it_env *env, struct it_config *cfg, size_t n);

/* The libconfig text for cfg with its listener on listen_port, owned by the env. */
const char *it_config_render(struct it_env *env, const struct it_config *cfg, int listen_port);

struct it_fulcrum {
    struct it_proc *proc;
    int port;                /* the listener, on 127.0.0.1 */
    const char *config_path; /* owned by the env */
};

/*
 * Writes cfg with a fresh listener port, starts `fulcrum -c FILE` and waits
 * until the listener accepts connections. Fails the test, printing fulcrum's
 * stderr, if fulcrum exits or does not listen within IT_START_TIMEOUT_MS.
 * The result is owned by the env.
 */
struct it_fulcrum *it_fulcrum_start(struct it_env *env, const struct it_config *cfg);

/* it_fulcrum_start() with it_config_demo_pool() of one backend, "a", unchanged. */
struct it_fulcrum *it_fulcrum_start_one(struct it_env *env);

/* Number of times `needle` occurs in what fulcrum has logged (its stderr) so far. */
size_t it_fulcrum_log_count(struct it_env *env, const struct it_fulcrum *f, const char *needle);

/*
 * Waits up to timeout_ms until fulcrum has logged `needle` at least n times
 * (lines reach its stderr through its log writer's thread, a moment after
 * the event). Returns whether it did.
 */
bool it_fulcrum_wait_log(struct it_env *env, const struct it_fulcrum *f, const char *needle,
                         size_t n, int timeout_ms);

/*
 * What fulcrum has logged, once its stderr has stopped growing for 50 ms
 * (at most 2 s): for a test that checks a line was NOT logged.
 */
const char *it_fulcrum_log_settled(struct it_env *env, const struct it_fulcrum *f);

/*
 * Waits up to timeout_ms for fulcrum, sent SIGTERM by the test, to exit, and
 * fails the test, printing fulcrum's stderr, unless it exited with status 0.
 */
void it_fulcrum_expect_clean_exit(struct it_env *env, struct it_fulcrum *f, int timeout_ms);

/*
 * Reloads a running fulcrum with cfg: rewrites f->config_path with cfg (the
 * listener stays on f->port), sends SIGHUP and waits until fulcrum logs the
 * outcome. Returns 0 when it logged "reload done", -EINVAL when it logged
 * "reload failed" (the old configuration stays in force). Fails the test if
 * fulcrum exits or logs neither within IT_START_TIMEOUT_MS.
 */
int it_fulcrum_reload(struct it_env *env, struct it_fulcrum *f, const struct it_config *cfg);

/*
 * it_fulcrum_reload() with the whole file given as `text`, written as it is
 * (so it may name other listeners, or be broken on purpose), renamed over
 * f->config_path; or, with text NULL, the file left as it is (a test that
 * changed a plugin file on disk). Then SIGHUP and the same wait and return
 * values as it_fulcrum_reload().
 */
int it_fulcrum_reload_text(struct it_env *env, struct it_fulcrum *f, const char *text);

/* ---- HTTP client (http_client.c) --------------------------------------- */

struct it_conn;

/* Connects to 127.0.0.1:port (fails the test if it cannot). Owned by the env. */
struct it_conn *it_connect(struct it_env *env, int port);

/* Same, but returns NULL and sets *err to a negative errno on failure. */
struct it_conn *it_connect_raw(struct it_env *env, int port, int *err);

/*
 * Connects to 127.0.0.1:port from `source`, another loopback address such as
 * "127.0.0.5" (any of 127.0.0.0/8 works on Linux without setup), so that the
 * proxy sees that client address. Fails the test if it cannot. Owned by the env.
 */
struct it_conn *it_connect_from(struct it_env *env, int port, const char *source);

/*
 * it_connect() with SO_RCVBUF set to `rcvbuf` bytes before connecting, so
 * that the window the client advertises stays small: a slow reader whose
 * peer's writes back up.
 */
struct it_conn *it_connect_rcvbuf(struct it_env *env, int port, int rcvbuf);

/* The connection's socket, for tests that need a raw call (setsockopt, shutdown). */
int it_conn_fd(const struct it_conn *conn);

/* Closes and frees the connection now rather than at teardown. */
void it_conn_close(struct it_conn *conn);

/* Receive timeout for every later blocking read (default IT_IO_TIMEOUT_MS). */
void it_conn_set_timeout(struct it_conn *conn, int timeout_ms);

/* Sends all bytes or fails the test. */
void it_send(struct it_conn *conn, const void *data, size_t len);
void it_send_str(struct it_conn *conn, const char *s);

/* Sends all bytes; returns 0 or a negative errno (e.g. -EPIPE). */
int it_send_raw(struct it_conn *conn, const void *data, size_t len);

struct it_header {
    char *name;
    char *value;
};

struct it_response {
    int version_minor; /* the x of HTTP/1.x */
    int status;
    char *reason;
    struct it_header *headers;
    size_t nheaders;
    char *body; /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
    bool chunked;         /* the body arrived with chunked framing */
    bool close_delimited; /* the body ended with the connection */
    int interim;          /* 1xx responses skipped before this one */
    int interim_status;   /* status of the last one of those, or 0 */
};

/*
 * Reads one complete response from the connection. `method` is the request
 * method it answers (a HEAD response has no body). 1xx responses are skipped
 * and counted. The body is framed by chunked encoding, Content-Length, or the
 * end of the connection, in that order of precedence (RFC 9112 6.3).
 * Leftover bytes stay buffered for the next call, so pipelined responses are
 * read one call each. Returns 0, or a negative errno: -ETIMEDOUT,
 * -ECONNRESET, -EPIPE (connection ended before the response did), -EPROTO
 * (unparseable response). Failures print what had arrived.
 */
int it_recv_response(struct it_conn *conn, const char *method, struct it_response *resp);

/* it_recv_response() that fails the test unless it returns 0. */
void it_expect_response(struct it_conn *conn, const char *method, struct it_response *resp);

void it_response_free(struct it_response *resp);

/* The value of the first header named `name` (case-insensitive), or NULL. */
const char *it_header(const struct it_response *resp, const char *name);

/* Number of headers named `name`. */
size_t it_header_count(const struct it_response *resp, const char *name);

/*
 * Waits up to timeout_ms for the peer to close the connection. Returns true
 * on EOF or reset with nothing else pending, false if the connection is still
 * open at the deadline or more bytes arrived (they stay buffered).
 */
bool it_conn_wait_closed(struct it_conn *conn, int timeout_ms);

/*
 * Waits up to timeout_ms for unread bytes (true if some are buffered or
 * arrive; they stay buffered for it_recv_response()).
 */
bool it_conn_wait_data(struct it_conn *conn, int timeout_ms);

/* Bytes received but not consumed by it_recv_response(). */
size_t it_conn_buffered(const struct it_conn *conn);

/*
 * One request on a fresh connection: connects, sends `request`, reads the
 * response to `method`, closes. Fails the test on any transport error.
 */
void it_fetch(struct it_env *env, int port, const char *method, const char *request,
              struct it_response *resp);

/*
 * A request of the admin API on a fresh connection: `body` (may be "") as
 * its Content-Length body, with `Authorization: Bearer <token>` unless
 * token is NULL. Returns the status; the answer's body, owned by the env,
 * in *answer when answer is not NULL.
 */
int it_admin_send(struct it_env *env, int port, const char *method, const char *path,
                  const char *token, const char *body, const char **answer);

/* "GET <path> HTTP/1.1" with Host: <host> on a fresh connection. */
void it_get(struct it_env *env, int port, const char *host, const char *path,
            struct it_response *resp);
/*
 * The value of one series (`name{labels}` exactly as fulcrum writes it) in
 * the /metrics of the admin listener on admin_port, or -1 when it is absent.
 */
long it_metric(struct it_env *env, int admin_port, const char *series);

/* ---- plain sockets (sockets.c) ----------------------------------------- */

/*
 * For clients that the it_conn functions do not fit: threads of the test and
 * forked children (which must not fail the test from where they run), and
 * clients that misbehave on purpose. None of these fails the test.
 */

/*
 * A blocking socket connected to 127.0.0.1:port, with TCP_NODELAY and send
 * and receive timeouts of timeout_s seconds. Returns it, or -errno (and
 * errno is set).
 */
int it_socket_connect(int port, int timeout_s);

/* Sends all len bytes (without SIGPIPE). Returns 0, or -1 with errno set. */
int it_send_all(int fd, const void *data, size_t len);

/*
 * Copies the value of header `name` (case-insensitive), without leading
 * spaces, from a response head (NUL-terminated CRLF lines, the status line
 * first) into out, truncated to cap - 1 bytes. False if the head has none.
 */
bool it_head_value(const char *head, const char *name, char *out, size_t cap);

/*
 * Reads one response with a Content-Length body from fd (blocking, for a
 * load thread of its own): 0 with its status and X-Backend (empty when it
 * has none) and the body read past, or -1 with the reason in why.
 */
int it_read_backend_response(int fd, int *status, char *backend, size_t bcap, char *why,
                             size_t wcap);

/* ---- body checks (backends.c) ------------------------------------------ */

#define IT_FNV1A64_INIT UINT64_C(0xcbf29ce484222325)

uint64_t it_fnv1a64_update(uint64_t h, const void *data, size_t len);
uint64_t it_fnv1a64(const void *data, size_t len);

/* The demo backend's /bytes pattern: byte i is (uint8_t)(i * 131 + 7). */
static inline uint8_t it_pattern_byte(size_t i)
{
    return (uint8_t)(i * 131 + 7);
}

/* Fills buf with pattern bytes offset .. offset+len-1. */
void it_pattern_fill(void *buf, size_t offset, size_t len);

/* Index of the first byte that differs from the pattern, or len if none. */
size_t it_pattern_mismatch(const void *buf, size_t len);

/* The line the demo backend's POST /sum answers for this body. */
const char *it_sum_line(struct it_env *env, const void *body, size_t len);

/* Sends "POST /sum" with a Content-Length of len, then the len bytes of body. */
void it_send_sum(struct it_env *env, struct it_conn *conn, const void *body, size_t len);

/*
 * Reads the next response on conn, to a POST /sum of these len bytes of
 * body, and fails the test unless it is 200 with it_sum_line() for them.
 */
void it_expect_sum(struct it_env *env, struct it_conn *conn, const void *body, size_t len);

/*
 * Reads the next response on conn, to a GET /bytes?n=N, and fails the test
 * unless it is 200 with exactly n bytes of the pattern.
 */
void it_expect_pattern(struct it_conn *conn, size_t n);

#endif
