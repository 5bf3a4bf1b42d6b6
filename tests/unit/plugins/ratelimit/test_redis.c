/*
 * Tests of plugins/ratelimit/redis.c: the real .so, loaded through the real
 * loader and created through the real host from a `rate_limit` group, against
 * a real redis-server that the test starts on a free 127.0.0.1 port (and
 * kills, restarts, or replaces with a socket that never answers). The test
 * plays the core: it calls worker_start() and worker_stop() for two workers,
 * both on one libuv loop that it runs itself, and records every verdict that
 * comes back through ratelimit_done().
 *
 * redis-server must be installed (tests/run.sh installs it): a missing one
 * fails the tests, it does not skip them.
 */
#include "plugin_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define REDIS_PLUGIN FC_PLUGIN_BUILD_DIR "/redis.so"
#define CONFIG_FILE "test.conf"
#define N_WORKERS 2
#define N_LIMITERS 2
/* How long redis-server may take to answer PING after it was started. */
#define REDIS_START_MS 5000

/* The keys the core reads from a `rate_limit` group itself. */
static const char *const ratelimit_core_keys[] = {"key", NULL};

/* One check's outcome. The pending handle the test passes is its address. */
struct verdict {
    int rc;   /* what check() returned */
    int done; /* times ratelimit_done came for it: must end at 0 or 1 */
    int verdict;
    uint64_t retry_ms;
    uint64_t started_ms, ended_ms;
};

struct limiter {
    struct fc_instance inst;
    int have_inst;
    int started[N_WORKERS]; /* worker_start() called, worker_stop() not yet */
    struct parsed_group group;
    int have_group;
    const char *pool; /* the pool it serves (fc_host.pool_name); NULL: none */
};

static struct {
    struct test_loop loop;
    int in_check;   /* inside the plugin's check(): ratelimit_done must not come now */
    int early_done; /* it did */
    struct fc_plugin *plugin;
    struct limiter lim[N_LIMITERS];
    pid_t redis_pid; /* 0 when none runs */
    int redis_port;
    int silent_fd;        /* listens, never accepts: a Redis that never answers */
    int busy_fd;          /* a connection whose command keeps Redis busy */
    char redis_sock[108]; /* the Unix socket redis-server also listens on */
    char redis_log[108];  /* its log */
} T;

/* ------------------------------------------------------------------------ */
/* redis-server                                                              */
/* ------------------------------------------------------------------------ */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return sin;
}

/* A port on 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = loopback(0);
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/*
 * Sends one inline command to the Redis on `port` and reads its reply (a
 * simple string, error, integer or bulk string) into out. Blocking, with a
 * one-second deadline: the test's own side channel, not the plugin's.
 * Returns 0, or -1 when Redis could not be reached or did not answer.
 */
static int redis_cmd(int port, const char *cmd, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sin = loopback(port);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char line[512];
    int n = snprintf(line, sizeof(line), "%s\r\n", cmd);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    int rc = -1;
    while (len + 1 < cap) {
        ssize_t got = recv(fd, out + len, cap - 1 - len, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
        out[len] = '\0';
        char *eol = strstr(out, "\r\n");
        if (eol == NULL)
            continue;
        if (out[0] != '$') {
            rc = 0;
            break;
        }
        long want = atol(out + 1);
        if (want < 0 || len >= (size_t)(eol + 2 - out) + (size_t)want + 2) {
            rc = 0;
            break;
        }
    }
    close(fd);
    return rc;
}

/* The integer reply of `cmd` (":123"), or fails the test. */
static long long redis_int(const char *cmd)
{
    char reply[128];
    assert_int_equal(redis_cmd(T.redis_port, cmd, reply, sizeof(reply)), 0);
    if (reply[0] != ':')
        fail_msg("%s: expected an integer reply, got %s", cmd, reply);
    return atoll(reply + 1);
}

static void redis_ok(const char *cmd)
{
    char reply[128];
    assert_int_equal(redis_cmd(T.redis_port, cmd, reply, sizeof(reply)), 0);
    if (strncmp(reply, "+OK", 3) != 0)
        fail_msg("%s: expected +OK, got %s", cmd, reply);
}

/* Kills the test's redis-server (by its PID) and reaps it. */
static void redis_kill(void)
{
    if (T.redis_pid <= 0)
        return;
    kill(T.redis_pid, SIGKILL);
    waitpid(T.redis_pid, NULL, 0);
    T.redis_pid = 0;
    unlink(T.redis_sock); /* a killed Redis leaves it behind */
    unlink(T.redis_log);
}

/* Prints what redis-server logged, for a failure to start it. */
static void redis_print_log(void)
{
    FILE *f = fopen(T.redis_log, "r");
    char line[512];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        fprintf(stderr, "redis-server: %s", line);
    if (f != NULL)
        fclose(f);
}

/*
 * Starts redis-server on `port` and waits until it answers PING. Returns 0,
 * or -1 if it exited (most likely, the port was taken meanwhile) or did not
 * answer in time (it is killed then).
 */
static int redis_try_start(int port)
{
    char port_text[16];
    snprintf(port_text, sizeof(port_text), "%d", port);
    snprintf(T.redis_sock, sizeof(T.redis_sock), "/tmp/fulcrum-test-redis-%d-%d.sock",
             (int)getpid(), port);
    snprintf(T.redis_log, sizeof(T.redis_log), "/tmp/fulcrum-test-redis-%d-%d.log", (int)getpid(),
             port);
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Dies with the test, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDONLY);
        int log = open(T.redis_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (null >= 0)
            dup2(null, 0);
        if (log >= 0)
            dup2(log, 1);
        execlp("redis-server", "redis-server", "--port", port_text, "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
               "--unixsocket", T.redis_sock, (char *)NULL);
        fprintf(stderr, "test_redis: exec redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    T.redis_pid = pid;
    T.redis_port = port;

    uint64_t deadline = now_ms() + REDIS_START_MS;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            T.redis_pid = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                fail_msg("redis-server could not be run: install it (apt-get install "
                         "redis-server); these tests need a real Redis");
            redis_print_log();
            unlink(T.redis_log);
            return -1;
        }
        char reply[64];
        if (redis_cmd(port, "PING", reply, sizeof(reply)) == 0 && strncmp(reply, "+PONG", 5) == 0)
            return 0;
        if (now_ms() > deadline) {
            fprintf(stderr, "redis-server on port %d did not answer PING within %d ms\n", port,
                    REDIS_START_MS);
            redis_print_log();
            redis_kill();
            return -1;
        }
        usleep(10000);
    }
}

/* Starts redis-server on a free port (port 0) or on `port`. */
static void redis_start(int port)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        if (redis_try_start(port != 0 ? port : free_port()) == 0)
            return;
        if (port != 0)
            usleep(100000); /* the old one's socket may linger a moment */
    }
    fail_msg("redis-server would not start on 127.0.0.1");
}

/*
 * Keeps the test's Redis busy for about ms milliseconds, from now: sends it a
 * script that spins that long, on a connection of its own, without waiting.
 */
static void redis_busy(unsigned ms)
{
    T.busy_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(T.busy_fd >= 0);
    struct sockaddr_in sin = loopback(T.redis_port);
    assert_int_equal(connect(T.busy_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    char cmd[256];
    int n = snprintf(cmd, sizeof(cmd),
                     "EVAL \"local function us() local t = redis.call('TIME') "
                     "return t[1] * 1000000 + t[2] end "
                     "local start = us() repeat until us() - start > %u return 1\" 0\r\n",
                     ms * 1000);
    assert_int_equal(send(T.busy_fd, cmd, (size_t)n, MSG_NOSIGNAL), n);

    /* Busy for sure once a PING on another connection goes unanswered for 50 ms. */
    uint64_t deadline = now_ms() + 2000;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        assert_int_equal(send(fd, "PING\r\n", 6, MSG_NOSIGNAL), 6);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int answered = poll(&pfd, 1, 50);
        close(fd);
        if (answered == 0)
            return;
        if (now_ms() > deadline)
            fail_msg("Redis never got busy with the script");
        usleep(5000);
    }
}

/* A socket on 127.0.0.1 that accepts connections (in its backlog) and never reads. */
static int silent_server(void)
{
    T.silent_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(T.silent_fd >= 0);
    struct sockaddr_in sin = loopback(0);
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(T.silent_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(T.silent_fd, 64), 0);
    assert_int_equal(getsockname(T.silent_fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* ------------------------------------------------------------------------ */
/* The plugin, driven as the core drives it                                  */
/* ------------------------------------------------------------------------ */

static void on_ratelimit_done(void *owner, struct fc_ratelimit_pending *pending, int verdict,
                              uint64_t retry_after_ms)
{
    struct verdict *v = (struct verdict *)(void *)pending;
    if (T.in_check)
        T.early_done = 1;
    v->done++;
    v->verdict = verdict;
    v->retry_ms = retry_after_ms;
    v->ended_ms = now_ms();
}

static int setup(void **unused)
{
    memset(&T, 0, sizeof(T));
    T.silent_fd = -1;
    T.busy_fd = -1;
    log_capture_start();
    if (test_loop_init(&T.loop) != 0)
        return -1;
    return load_plugin(REDIS_PLUGIN, FC_PLUGIN_RATELIMIT, &T.plugin);
}

/*
 * As the core retires an instance: worker_stop() on each started worker,
 * destroy() (before the loop has run the close callbacks: the plugin's
 * handles must not need the instance any more), then the loop runs until
 * nothing is left on it and must close. Redis is killed by its PID.
 */
static int teardown(void **unused)
{
    for (int i = 0; i < N_LIMITERS; i++) {
        struct limiter *l = &T.lim[i];
        for (uint32_t w = 0; w < N_WORKERS; w++)
            if (l->have_inst && l->started[w])
                T.plugin->desc->ratelimit->worker_stop(l->inst.state, w, &T.loop.uv);
        if (l->have_inst)
            fc_instance_destroy(&l->inst);
        l->have_inst = 0;
        if (l->have_group)
            config_destroy(&l->group.lc);
        l->have_group = 0;
    }
    int rc = test_loop_close(&T.loop);
    /* Only now: a handle left open would call back into the plugin's code. */
    fc_plugin_unload(T.plugin);
    T.plugin = NULL;
    redis_kill();
    if (T.silent_fd >= 0)
        close(T.silent_fd);
    if (T.busy_fd >= 0)
        close(T.busy_fd);
    log_capture_stop();
    return rc;
}

/*
 * Creates limiter i from a rate_limit group whose own lines are `body`; its
 * group sits on line 3 of CONFIG_FILE and its first key on line 5 (see
 * parse_pool_group()).
 */
static int create_limiter(int i, const char *body)
{
    struct limiter *l = &T.lim[i];
    if (l->have_group)
        config_destroy(&l->group.lc);
    l->have_group = 1;
    parse_pool_group(&l->group, "rate_limit", "redis", body);
    struct fc_instance_hooks hooks = {.owner = l,
                                      .worker_count = N_WORKERS,
                                      .ratelimit_done = on_ratelimit_done,
                                      .pool_name = l->pool};
    int rc = fc_instance_create(&l->inst, T.plugin, &l->group.conf, CONFIG_FILE,
                                ratelimit_core_keys, NULL, &hooks, "pool web: rate_limit redis");
    l->have_inst = rc == 0;
    return rc;
}

static void start_worker(int i, uint32_t w)
{
    struct limiter *l = &T.lim[i];
    assert_int_equal(T.plugin->desc->ratelimit->worker_start(l->inst.state, w, &T.loop.uv), 0);
    l->started[w] = 1;
}

static void stop_worker(int i, uint32_t w)
{
    struct limiter *l = &T.lim[i];
    T.plugin->desc->ratelimit->worker_stop(l->inst.state, w, &T.loop.uv);
    l->started[w] = 0;
}

/* Creates limiter i and starts both its workers. */
static void limiter(int i, const char *body)
{
    assert_int_equal(create_limiter(i, body), 0);
    for (uint32_t w = 0; w < N_WORKERS; w++)
        start_worker(i, w);
}

/* Starts a check of `key` on worker w of limiter i; its outcome lands in *v. */
static int start_check(int i, uint32_t w, const char *key, struct verdict *v)
{
    struct limiter *l = &T.lim[i];
    memset(v, 0, sizeof(*v));
    uv_update_time(&T.loop.uv);
    v->started_ms = now_ms();
    struct fc_ratelimit_args args = {
        .size = sizeof(args),
        .worker = w,
        .loop = &T.loop.uv,
        .key = key,
        .key_len = strlen(key),
        .pending = (struct fc_ratelimit_pending *)(void *)v,
    };
    uint64_t retry = 0;
    T.in_check = 1;
    v->rc = T.plugin->desc->ratelimit->check(l->inst.state, &args, &retry);
    T.in_check = 0;
    assert_false(T.early_done);
    if (v->rc != FC_RATELIMIT_PENDING) {
        assert_true(v->rc == FC_RATELIMIT_ALLOW || v->rc == FC_RATELIMIT_DENY);
        v->verdict = v->rc;
        v->retry_ms = retry;
        v->ended_ms = v->started_ms;
    }
    return v->rc;
}

/*
 * Starts the reference timer for checks just started with a timeout of ms:
 * call it right after start_check(), with no uv_update_time() in between, so
 * that both are due at the same loop time.
 */
static void arm_reference(unsigned ms)
{
    test_loop_arm_reference(&T.loop, ms);
}

/*
 * Fails unless *v (waited for) came within TIMEOUT_SLACK_MS of the reference
 * timer (or before it) and, if `at_least`, no earlier than timeout_ms after
 * check().
 */
static void assert_in_time(const struct verdict *v, unsigned timeout_ms, int at_least)
{
    test_loop_assert_in_time(&T.loop, "the verdict came", v->started_ms, v->ended_ms, timeout_ms,
                             at_least);
}

static int has_verdict(const void *v)
{
    return ((const struct verdict *)v)->done > 0;
}

/* Runs the loop until *v has its verdict, or fails after GUARD_MS. */
static void wait_verdict(struct verdict *v)
{
    if (v->rc != FC_RATELIMIT_PENDING)
        return;
    test_loop_run_until(&T.loop, has_verdict, v);
    assert_int_equal(v->done, 1);
}

/* One check, waited for; returns the verdict (and the retry delay for a deny). */
static int check(int i, uint32_t w, const char *key, uint64_t *retry_ms)
{
    struct verdict v;
    start_check(i, w, key, &v);
    wait_verdict(&v);
    if (retry_ms != NULL)
        *retry_ms = v.retry_ms;
    return v.verdict;
}

/* Runs the loop for about ms milliseconds. */
static void run_for(unsigned ms)
{
    test_loop_run_for(&T.loop, ms);
}

/* Handles on the loop that are not the test's: the plugin's, closing or not. */
static int plugin_handles(void)
{
    return test_loop_foreign_handles(&T.loop, NULL);
}

static const char *verdict_name(int v)
{
    return v == FC_RATELIMIT_ALLOW ? "allow" : v == FC_RATELIMIT_DENY ? "deny" : "pending";
}

#define assert_verdict(got, want)                                                                  \
    do {                                                                                           \
        int g_ = (got), w_ = (want);                                                               \
        if (g_ != w_)                                                                              \
            fail_msg("verdict %s, expected %s", verdict_name(g_), verdict_name(w_));               \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

static void test_descriptor(void **unused)
{
    assert_string_equal(T.plugin->desc->name, "redis");
    assert_int_equal(T.plugin->desc->kind, FC_PLUGIN_RATELIMIT);
    assert_non_null(T.plugin->desc->ratelimit->worker_start);
    assert_non_null(T.plugin->desc->ratelimit->worker_stop);
}

static void test_burst_then_deny(void **unused)
{
    redis_start(0);
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 10.0; burst = 5; timeout_ms = 1000; address = \"127.0.0.1:%d\"; "
             "key = \"address\";",
             T.redis_port);
    limiter(0, body);

    /* The burst passes, from both workers alike, then the sixth is refused. */
    uint64_t first = now_ms();
    for (int i = 0; i < 5; i++) {
        struct verdict v;
        /* Every check waits for Redis: nothing is decided locally. */
        assert_int_equal(start_check(0, (uint32_t)i % N_WORKERS, "192.0.2.1", &v),
                         FC_RATELIMIT_PENDING);
        wait_verdict(&v);
        assert_verdict(v.verdict, FC_RATELIMIT_ALLOW);
    }
    uint64_t retry = 0;
    assert_verdict(check(0, 1, "192.0.2.1", &retry), FC_RATELIMIT_DENY);
    /* One token comes back every 100 ms, counted from the first check. */
    uint64_t elapsed = now_ms() - first;
    if (retry < 1 || retry > 100 || retry + elapsed < 95)
        fail_msg("retry after %llu ms, %llu ms after the first check; expected about 100 ms",
                 (unsigned long long)retry, (unsigned long long)elapsed);

    /* Keys are independent. */
    assert_verdict(check(0, 0, "192.0.2.2", NULL), FC_RATELIMIT_ALLOW);

    /* The key lives in Redis under the prefix, and expires when the bucket is full again. */
    long long pttl = redis_int("PTTL fulcrum:rl:192.0.2.1");
    if (pttl <= 0 || pttl > 500)
        fail_msg("PTTL of the key: %lld ms, expected 1 to 500", pttl);

    /* After the advertised wait, one more passes, and only one. */
    run_for((unsigned)retry + 20);
    assert_verdict(check(0, 0, "192.0.2.1", NULL), FC_RATELIMIT_ALLOW);
    assert_verdict(check(0, 1, "192.0.2.1", NULL), FC_RATELIMIT_DENY);
}

static void test_two_instances_share_one_limit(void **unused)
{
    redis_start(0);
    char body[256];
    /* One token a minute: nothing refills while the test runs. */
    snprintf(body, sizeof(body),
             "rate = 0.016; burst = 4; timeout_ms = 1000; key_prefix = \"shared:\"; "
             "address = \"127.0.0.1:%d\";",
             T.redis_port);
    limiter(0, body); /* two fulcrum processes, as far as Redis can tell */
    limiter(1, body);

    int allowed = 0;
    for (int i = 0; i < 12; i++) {
        uint64_t retry = 0;
        int v = check(i % N_LIMITERS, (uint32_t)(i / 2) % N_WORKERS, "client", &retry);
        if (v == FC_RATELIMIT_ALLOW) {
            allowed++;
        } else {
            assert_verdict(v, FC_RATELIMIT_DENY);
            assert_true(retry > 50000 && retry <= 62500);
        }
    }
    assert_int_equal(allowed, 4);
    assert_true(redis_int("EXISTS shared:client") == 1);
    assert_true(redis_int("EXISTS fulcrum:rl:client") == 0);

    /* Concurrent checks, all in flight at once, still share out exactly the burst. */
    struct verdict v[16];
    for (int i = 0; i < 16; i++)
        start_check(i % N_LIMITERS, (uint32_t)(i / 2) % N_WORKERS, "crowd", &v[i]);
    allowed = 0;
    for (int i = 0; i < 16; i++) {
        wait_verdict(&v[i]);
        allowed += v[i].verdict == FC_RATELIMIT_ALLOW;
    }
    assert_int_equal(allowed, 4);
}

/*
 * Two pools on one Redis, each with the default key_prefix: the prefix names
 * the pool, so a client's requests to one pool do not spend its tokens in the
 * other.
 */
static void test_pools_keep_apart_by_default(void **unused)
{
    redis_start(0);
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 0.016; burst = 2; timeout_ms = 1000; "
             "address = \"127.0.0.1:%d\";",
             T.redis_port);
    T.lim[0].pool = "web";
    T.lim[1].pool = "api";
    limiter(0, body);
    limiter(1, body);
    for (int i = 0; i < N_LIMITERS; i++) {
        uint64_t retry = 0;
        assert_verdict(check(i, 0, "client", &retry), FC_RATELIMIT_ALLOW);
        assert_verdict(check(i, 1, "client", &retry), FC_RATELIMIT_ALLOW);
        assert_verdict(check(i, 0, "client", &retry), FC_RATELIMIT_DENY);
    }
    assert_true(redis_int("EXISTS fulcrum:rl:web:client") == 1);
    assert_true(redis_int("EXISTS fulcrum:rl:api:client") == 1);
    T.lim[0].pool = T.lim[1].pool = NULL;
}

/*
 * password and db: AUTH and SELECT go out when a connection opens. A SELECT
 * Redis refuses (database 20 of 16) makes checks fail, which shows it is
 * sent; with the password and a valid database, the limit works.
 */
static void test_auth_and_select(void **unused)
{
    redis_start(0);
    redis_ok("CONFIG SET requirepass s3cret");
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 0.016; burst = 1; timeout_ms = 1000; on_error = "
             "\"deny\"; password = \"s3cret\"; db = 20; "
             "address = \"127.0.0.1:%d\";",
             T.redis_port);
    limiter(0, body);
    uint64_t retry = 0;
    assert_verdict(check(0, 0, "client", &retry), FC_RATELIMIT_DENY);
    assert_int_equal(retry, 1000); /* Redis failed: on_error's verdict */

    snprintf(body, sizeof(body),
             "rate = 0.016; burst = 1; timeout_ms = 1000; on_error = "
             "\"deny\"; password = \"s3cret\"; db = 1; "
             "address = \"127.0.0.1:%d\";",
             T.redis_port);
    limiter(1, body);
    assert_verdict(check(1, 0, "client", &retry), FC_RATELIMIT_ALLOW);
    assert_verdict(check(1, 1, "client", &retry), FC_RATELIMIT_DENY);
    assert_true(retry > 50000); /* the bucket's answer, not the error one */
}

/* Without the password Redis refuses every command: on_error decides. */
static void test_auth_missing(void **unused)
{
    redis_start(0);
    redis_ok("CONFIG SET requirepass s3cret");
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 0.016; burst = 5; timeout_ms = 1000; on_error = "
             "\"deny\"; address = \"127.0.0.1:%d\";",
             T.redis_port);
    limiter(0, body);
    uint64_t retry = 0;
    assert_verdict(check(0, 0, "client", &retry), FC_RATELIMIT_DENY);
    assert_int_equal(retry, 1000);
}

static void test_noscript_after_script_flush(void **unused)
{
    redis_start(0);
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 1.0; burst = 2; timeout_ms = 1000; address = \"127.0.0.1:%d\";", T.redis_port);
    limiter(0, body);
    assert_verdict(check(0, 0, "k", NULL), FC_RATELIMIT_ALLOW);
    /* By now SCRIPT LOAD has answered (it was sent first): checks go by EVALSHA. */
    redis_ok("SCRIPT FLUSH");
    redis_ok("CONFIG RESETSTAT");
    assert_verdict(check(0, 0, "k", NULL), FC_RATELIMIT_ALLOW);
    uint64_t retry = 0;
    assert_verdict(check(0, 0, "k", &retry), FC_RATELIMIT_DENY);
    assert_true(retry > 500 && retry <= 1000);

    /* The first EVALSHA failed with NOSCRIPT and was sent again with EVAL. */
    char info[4096];
    assert_int_equal(redis_cmd(T.redis_port, "INFO commandstats", info, sizeof(info)), 0);
    if (strstr(info, "cmdstat_eval:calls=") == NULL || strstr(info, "cmdstat_evalsha:") == NULL)
        fail_msg("expected both EVALSHA and EVAL in:\n%s", info);
}

/*
 * Redis dies (SIGKILL) under a working limiter: from then on every check gets
 * the on_error verdict, each within about timeout_ms (most at once, since
 * the connection's end is seen), and none hangs.
 */
static void killed_redis(const char *on_error, int expect, uint64_t expect_retry)
{
    redis_start(0);
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 1.0; burst = 1; timeout_ms = 50; on_error = \"%s\"; "
             "address = \"127.0.0.1:%d\";",
             on_error, T.redis_port);
    limiter(0, body);
    assert_verdict(check(0, 0, "k", NULL), FC_RATELIMIT_ALLOW);
    assert_verdict(check(0, 1, "k", NULL), FC_RATELIMIT_DENY); /* Redis decides */

    redis_kill();
    int at_once = 0;
    for (int i = 0; i < 20; i++) {
        struct verdict v;
        start_check(0, (uint32_t)i % N_WORKERS, "k", &v);
        arm_reference(50);
        wait_verdict(&v);
        assert_verdict(v.verdict, expect);
        assert_int_equal(v.retry_ms, expect_retry);
        assert_in_time(&v, 50, 0);
        at_once += v.rc != FC_RATELIMIT_PENDING;
        run_for(15);
    }
    /* While reconnecting waits out its backoff, checks do not wait at all. */
    assert_true(at_once > 10);
}

static void test_killed_redis_allows(void **unused)
{
    killed_redis("allow", FC_RATELIMIT_ALLOW, 0);
    assert_true(n_log_lines > 0); /* the outage was reported */
}

static void test_killed_redis_denies(void **unused)
{
    killed_redis("deny", FC_RATELIMIT_DENY, 1000);
}

static void test_restarted_redis_resumes(void **unused)
{
    redis_start(0);
    int port = T.redis_port;
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 1.0; burst = 1; timeout_ms = 200; address = \"127.0.0.1:%d\";", port);
    limiter(0, body);
    assert_verdict(check(0, 0, "k", NULL), FC_RATELIMIT_ALLOW);
    assert_verdict(check(0, 1, "k", NULL), FC_RATELIMIT_DENY);

    redis_kill();
    for (int i = 0; i < 3; i++)
        assert_verdict(check(0, (uint32_t)i % N_WORKERS, "k", NULL), FC_RATELIMIT_ALLOW);
    run_for(300); /* a few reconnects fail meanwhile: the backoff grows */

    /* A fresh Redis on the same port, empty and with no script loaded. */
    redis_start(port);
    uint64_t deadline = now_ms() + 4000;
    int resumed[N_WORKERS] = {0, 0};
    while (!(resumed[0] && resumed[1]) && now_ms() < deadline) {
        for (uint32_t w = 0; w < N_WORKERS; w++) {
            char key[16];
            snprintf(key, sizeof(key), "fresh%u", (unsigned)w);
            uint64_t retry = 0;
            if (!resumed[w] && check(0, w, key, NULL) == FC_RATELIMIT_ALLOW &&
                check(0, w, key, &retry) == FC_RATELIMIT_DENY) {
                /* Only Redis denies here: on_error is "allow". */
                assert_true(retry > 500 && retry <= 1000);
                resumed[w] = 1;
            }
        }
        run_for(50);
    }
    if (!resumed[0] || !resumed[1])
        fail_msg("limiting did not resume within 4 s of the restart (workers: %d %d)", resumed[0],
                 resumed[1]);
    char line[128];
    snprintf(line, sizeof(line),
             "pool web: rate_limit redis: worker 0: redis 127.0.0.1:%d answers again", port);
    assert_logged(line);
}

/*
 * A live Redis that is slower than timeout_ms (busy with a long script): the
 * checks get the on_error verdict on time, its late answers are never taken
 * for verdicts, and once it is quick again limiting resumes.
 */
static void test_slow_redis(void **unused)
{
    redis_start(0);
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 1.0; burst = 1; timeout_ms = 50; on_error = \"deny\"; "
             "address = \"127.0.0.1:%d\";",
             T.redis_port);
    limiter(0, body);
    assert_verdict(check(0, 0, "k", NULL), FC_RATELIMIT_ALLOW);

    uint64_t busy_since = now_ms();
    redis_busy(600);
    struct verdict v[N_WORKERS];
    for (uint32_t w = 0; w < N_WORKERS; w++)
        assert_int_equal(start_check(0, w, "fresh", &v[w]), FC_RATELIMIT_PENDING);
    arm_reference(50);
    for (uint32_t w = 0; w < N_WORKERS; w++) {
        wait_verdict(&v[w]);
        assert_verdict(v[w].verdict, FC_RATELIMIT_DENY); /* on_error: "fresh" would pass */
        assert_int_equal(v[w].retry_ms, 1000);
        assert_in_time(&v[w], 50, 1);
    }

    /* Once it is done, a new connection answers, and its verdicts are Redis's again. */
    uint64_t deadline = busy_since + 4000;
    int resumed = 0;
    while (!resumed && now_ms() < deadline) {
        run_for(50);
        resumed = check(0, 0, "later", NULL) == FC_RATELIMIT_ALLOW;
    }
    assert_true(resumed);
    assert_true(now_ms() - busy_since >= 590);
    uint64_t retry = 0;
    assert_verdict(check(0, 0, "later", &retry), FC_RATELIMIT_DENY);
    assert_true(retry > 500 && retry <= 1000);
    /* Nothing arrived twice, nor late. */
    for (uint32_t w = 0; w < N_WORKERS; w++)
        assert_int_equal(v[w].done, 1);
}

/* The same limit over a Unix socket. */
static void test_unix_socket(void **unused)
{
    redis_start(0);
    char body[256];
    snprintf(body, sizeof(body), "rate = 1.0; burst = 2; timeout_ms = 1000; address = \"unix:%s\";",
             T.redis_sock);
    limiter(0, body);
    assert_verdict(check(0, 0, "k", NULL), FC_RATELIMIT_ALLOW);
    assert_verdict(check(0, 1, "k", NULL), FC_RATELIMIT_ALLOW);
    assert_verdict(check(0, 0, "k", NULL), FC_RATELIMIT_DENY);
    assert_true(redis_int("EXISTS fulcrum:rl:k") == 1);
}

/*
 * A server that accepts connections and never answers: each check waits
 * timeout_ms, not less and not much more, then gets the on_error verdict;
 * the stalled connection is dropped, so the next checks are answered at
 * once until the reconnect, after which they wait timeout_ms again.
 */
static void test_silent_server_times_out(void **unused)
{
    int port = silent_server();
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 5.0; burst = 5; timeout_ms = 100; on_error = \"deny\"; "
             "address = \"127.0.0.1:%d\";",
             port);
    limiter(0, body);

    struct verdict v[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(start_check(0, 0, "k", &v[i]), FC_RATELIMIT_PENDING);
    arm_reference(100); /* due with the last check's deadline */
    for (int i = 0; i < 3; i++) {
        wait_verdict(&v[i]);
        assert_verdict(v[i].verdict, FC_RATELIMIT_DENY);
        assert_int_equal(v[i].retry_ms, 1000);
        assert_in_time(&v[i], 100, 1);
    }
    /* Dropped and waiting to reconnect: no waiting. */
    struct verdict now;
    assert_int_equal(start_check(0, 0, "k", &now), FC_RATELIMIT_DENY);
    assert_int_equal(now.retry_ms, 1000);

    /* Worker 1 has its own connection, just as stuck. */
    struct verdict other;
    assert_int_equal(start_check(0, 1, "k", &other), FC_RATELIMIT_PENDING);
    arm_reference(100);
    wait_verdict(&other);
    assert_verdict(other.verdict, FC_RATELIMIT_DENY);
    assert_in_time(&other, 100, 1);

    /* After the backoff, a new connection, and the wait again. */
    run_for(150);
    struct verdict again;
    assert_int_equal(start_check(0, 0, "k", &again), FC_RATELIMIT_PENDING);
    arm_reference(100);
    wait_verdict(&again);
    assert_verdict(again.verdict, FC_RATELIMIT_DENY);
    assert_in_time(&again, 100, 1);
}

static void test_silent_server_default_allows(void **unused)
{
    int port = silent_server();
    char body[128];
    snprintf(body, sizeof(body), "rate = 5.0; address = \"127.0.0.1:%d\";", port);
    limiter(0, body);
    struct verdict v;
    assert_int_equal(start_check(0, 0, "k", &v), FC_RATELIMIT_PENDING);
    arm_reference(50); /* timeout_ms defaults to 50 */
    wait_verdict(&v);
    assert_verdict(v.verdict, FC_RATELIMIT_ALLOW); /* on_error defaults to allow */
    assert_in_time(&v, 50, 1);
}

static void test_unreachable_at_start(void **unused)
{
    /* Nothing listens there: refused at once, checks do not wait. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = loopback(0);
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    char body[128];
    snprintf(body, sizeof(body), "rate = 5.0; on_error = \"deny\"; address = \"127.0.0.1:%d\";",
             ntohs(sin.sin_port));
    limiter(0, body);
    run_for(20);
    for (int i = 0; i < 5; i++) {
        struct verdict v;
        start_check(0, 0, "k", &v);
        arm_reference(50);
        wait_verdict(&v);
        assert_verdict(v.verdict, FC_RATELIMIT_DENY);
        assert_in_time(&v, 50, 0);
    }
    close(fd);
    char line[256];
    snprintf(line, sizeof(line),
             "pool web: rate_limit redis: worker 0: redis 127.0.0.1:%d: Connection refused; checks "
             "get on_error = \"deny\" until it answers again (reconnecting every 100 to 2000 ms)",
             ntohs(sin.sin_port));
    assert_logged(line);
}

static void test_lazy_start_in_check(void **unused)
{
    redis_start(0);
    char body[128];
    snprintf(body, sizeof(body),
             "rate = 1.0; burst = 1; timeout_ms = 1000; address = \"127.0.0.1:%d\";", T.redis_port);
    assert_int_equal(create_limiter(0, body), 0);
    /* No worker_start(): the first check opens the worker's connection. */
    T.lim[0].started[1] = 1; /* teardown stops it */
    assert_verdict(check(0, 1, "k", NULL), FC_RATELIMIT_ALLOW);
    assert_verdict(check(0, 1, "k", NULL), FC_RATELIMIT_DENY);
}

/* worker_stop() ends the worker's waiting checks, and only that worker's. */
static void test_worker_stop_ends_pending_checks(void **unused)
{
    int port = silent_server();
    char body[128];
    snprintf(body, sizeof(body),
             "rate = 5.0; timeout_ms = 10000; on_error = \"deny\"; address = \"127.0.0.1:%d\";",
             port);
    limiter(0, body);
    struct verdict a, b, c;
    assert_int_equal(start_check(0, 0, "k", &a), FC_RATELIMIT_PENDING);
    assert_int_equal(start_check(0, 0, "k2", &b), FC_RATELIMIT_PENDING);
    assert_int_equal(start_check(0, 1, "k", &c), FC_RATELIMIT_PENDING);
    run_for(20);
    assert_int_equal(a.done + b.done + c.done, 0);

    stop_worker(0, 0);
    assert_int_equal(a.done, 1);
    assert_int_equal(b.done, 1);
    assert_verdict(a.verdict, FC_RATELIMIT_DENY);
    assert_int_equal(c.done, 0);
    stop_worker(0, 1);
    assert_int_equal(c.done, 1);

    /* Nothing comes twice; teardown checks the loop closes with nothing left on it. */
    run_for(20);
    assert_int_equal(a.done + b.done + c.done, 3);
}

/* The same with a live Redis whose answers are on the way: they are dropped with the connection. */
static void test_worker_stop_before_the_answer(void **unused)
{
    redis_start(0);
    char body[128];
    snprintf(body, sizeof(body), "rate = 5.0; timeout_ms = 1000; address = \"127.0.0.1:%d\";",
             T.redis_port);
    limiter(0, body);
    assert_verdict(check(0, 0, "warm", NULL), FC_RATELIMIT_ALLOW);
    assert_verdict(check(0, 1, "warm", NULL), FC_RATELIMIT_ALLOW);
    int both_workers = plugin_handles();
    struct verdict v[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(start_check(0, 0, "k", &v[i]), FC_RATELIMIT_PENDING);
    stop_worker(0, 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(v[i].done, 1);
        assert_verdict(v[i].verdict, FC_RATELIMIT_ALLOW); /* on_error */
    }
    run_for(50);
    for (int i = 0; i < 8; i++)
        assert_int_equal(v[i].done, 1);
    /* Worker 0's handles are gone from the loop; worker 1's are still there. */
    assert_int_equal(plugin_handles() * 2, both_workers);

    /* A stopped worker does not reconnect behind the host's back: no waiting, on_error. */
    struct verdict late;
    assert_int_equal(start_check(0, 0, "k", &late), FC_RATELIMIT_ALLOW);
    assert_int_equal(plugin_handles() * 2, both_workers);

    /* Started again (a later generation keeps the instance), it works again. */
    start_worker(0, 0);
    assert_verdict(check(0, 0, "again", NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(plugin_handles(), both_workers);
}

/* Log lines that contain `text`. */
static int log_lines_with(const char *text)
{
    int n = 0;
    for (int i = 0; i < n_log_lines; i++)
        n += strstr(log_lines[i], text) != NULL;
    return n;
}

/*
 * A host name, "localhost" (in /etc/hosts, which c-ares reads before asking
 * DNS): each worker looks it up as it connects, and the limit works as with
 * 127.0.0.1. With on_error "deny" the two kinds of deny tell apart: the
 * bucket's says about a minute, the error's 1000 ms (a worker still
 * connecting, say to an ::1 that localhost may also have and Redis does not
 * listen on).
 */
static void test_host_name(void **unused)
{
    redis_start(0);
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 0.016; burst = 2; timeout_ms = 1000; on_error = \"deny\"; "
             "address = \"localhost:%d\";",
             T.redis_port);
    limiter(0, body);
    int allowed = 0;
    uint64_t deadline = now_ms() + 3000;
    while (allowed < N_WORKERS && now_ms() < deadline) {
        uint64_t retry = 0;
        if (check(0, (uint32_t)allowed, "k", &retry) == FC_RATELIMIT_ALLOW) {
            allowed++;
        } else {
            assert_int_equal(retry, 1000);
            run_for(20);
        }
    }
    assert_int_equal(allowed, N_WORKERS); /* the burst, one token from each worker */
    for (uint32_t w = 0; w < N_WORKERS; w++) {
        uint64_t retry = 0;
        assert_verdict(check(0, w, "k", &retry), FC_RATELIMIT_DENY);
        assert_true(retry > 50000);
    }
    assert_true(redis_int("EXISTS fulcrum:rl:k") == 1);
    assert_int_equal(log_lines_with("cannot resolve"), 0);
}

/*
 * A name that never resolves (.invalid, RFC 6761): create() takes it, as a
 * Redis that is down is no configuration error; checks get the on_error
 * verdict at once, on both workers, while each looks the name up again at
 * the reconnect backoff; the failure is logged once, with c-ares's reason.
 * A worker stopped with its lookup in flight leaves nothing on the loop.
 */
static void test_unresolvable_name(void **unused)
{
    char body[256];
    snprintf(body, sizeof(body),
             "rate = 5.0; on_error = \"deny\"; address = \"nosuch.invalid:%d\";", free_port());
    assert_int_equal(create_limiter(0, body), 0);
    assert_int_equal(n_log_lines, 0);
    for (uint32_t w = 0; w < N_WORKERS; w++)
        start_worker(0, w);

    /* Within 10 s even with no name server to ask: 2 tries of 1 s and 2 s, per search domain. */
    const char *line = "pool web: rate_limit redis: redis: cannot resolve \"nosuch.invalid\": ";
    uint64_t logged_at = 0, deadline = now_ms() + 10000;
    int checks = 0;
    while (logged_at == 0 ? now_ms() < deadline : now_ms() < logged_at + 1000) {
        struct verdict v;
        assert_int_equal(start_check(0, (uint32_t)checks++ % N_WORKERS, "k", &v),
                         FC_RATELIMIT_DENY);
        assert_int_equal(v.retry_ms, 1000);
        run_for(20);
        if (logged_at == 0 && log_lines_with(line) > 0)
            logged_at = now_ms();
    }
    if (logged_at == 0) {
        dump_log();
        fail_msg("no \"%s...\" within 10 s", line);
    }
    /* A second of retries since, and still the one line. */
    if (log_lines_with("nosuch.invalid") != 1) {
        dump_log();
        fail_msg("expected one line naming nosuch.invalid");
    }
    assert_true(checks > 40);

    stop_worker(0, 0);
    start_worker(0, 0); /* its lookup goes out now, and is in flight when... */
    stop_worker(0, 0);  /* ...it ends here */
    stop_worker(0, 1);
    run_for(20);
    assert_int_equal(plugin_handles(), 0);
}

static void bad(const char *body, const char *line)
{
    n_log_lines = 0;
    assert_int_equal(create_limiter(0, body), FC_EINVAL);
    assert_logged(line);
}

static void test_bad_options(void **unused)
{
    bad("burst = 5;", "test.conf:3: pool \"web\": rate_limit.rate: required: tokens per second, "
                      "a number > 0");
    bad("rate = 0.0;", "test.conf:5: pool \"web\": rate_limit.rate: expected tokens per second, "
                       "> 0 and <= 1000000 (got 0)");
    bad("rate = -3;", "test.conf:5: pool \"web\": rate_limit.rate: expected tokens per second, "
                      "> 0 and <= 1000000 (got -3)");
    bad("rate = \"fast\";", "test.conf:5: pool \"web\": rate_limit.rate: expected a number for "
                            "ratelimit plugin \"redis\"");
    bad("rate = 1.0; burst = 0;",
        "test.conf:5: pool \"web\": rate_limit.burst: expected an integer >= 1 (got 0)");
    bad("rate = 0.001; burst = 2000000000;",
        "test.conf:5: pool \"web\": rate_limit.burst: burst / rate, the time to refill a "
        "bucket, is 2e+12 s; at most 1000000000 s");
    bad("rate = 1.0; burst = 2.5;", "test.conf:5: pool \"web\": rate_limit.burst: expected an "
                                    "integer for ratelimit plugin \"redis\"");
    bad("rate = 1.0; timeout_ms = 0;",
        "test.conf:5: pool \"web\": rate_limit.timeout_ms: expected milliseconds from 1 to 60000 "
        "(got 0)");
    bad("rate = 1.0; db = -1;",
        "test.conf:5: pool \"web\": rate_limit.db: expected a database number from 0 (got -1)");
    bad("rate = 1.0; username = \"u\";",
        "test.conf:5: pool \"web\": rate_limit.username: needs a password");
    bad("rate = 1.0; on_error = \"maybe\";", "test.conf:5: pool \"web\": rate_limit.on_error: "
                                             "expected \"allow\" or \"deny\" (got \"maybe\")");
    bad("rate = 1.0; address = \"127.0.0.1:99999\";",
        "test.conf:5: pool \"web\": rate_limit.address: expected \"host:port\", \"[IPv6]:port\" or "
        "\"unix:/path\" (got \"127.0.0.1:99999\")");
    bad("rate = 1.0; address = \"::1:6379\";",
        "test.conf:5: pool \"web\": rate_limit.address: expected \"host:port\", \"[IPv6]:port\" or "
        "\"unix:/path\" (got \"::1:6379\")");
    bad("rate = 1.0; address = \"[::1:6379\";",
        "test.conf:5: pool \"web\": rate_limit.address: expected \"host:port\", \"[IPv6]:port\" or "
        "\"unix:/path\" (got \"[::1:6379\")");
    bad("rate = 1.0; address = \"redis.internal:0\";",
        "test.conf:5: pool \"web\": rate_limit.address: expected \"host:port\", \"[IPv6]:port\" or "
        "\"unix:/path\" (got \"redis.internal:0\")");
    bad("rate = 1.0; address = \"unix:redis.sock\";",
        "test.conf:5: pool \"web\": rate_limit.address: expected \"unix:\" followed by an absolute "
        "path shorter than 108 bytes (got \"unix:redis.sock\")");
    bad("rate = 1.0; colour = \"red\";", "test.conf:5: pool \"web\": rate_limit.colour: unknown "
                                         "key for ratelimit plugin \"redis\"");
    /* Two mistakes, two messages. */
    bad("rate = 0.0; on_error = \"never\";",
        "test.conf:5: pool \"web\": rate_limit.on_error: expected \"allow\" or \"deny\" (got "
        "\"never\")");
    assert_logged("test.conf:5: pool \"web\": rate_limit.rate: expected tokens per second, "
                  "> 0 and <= 1000000 (got 0)");

    /* The core's own key is not the plugin's business; good values pass. */
    n_log_lines = 0;
    assert_int_equal(create_limiter(0, "rate = 2; key = \"header:X-Api-Key\"; "
                                       "address = \"[::1]:6380\"; key_prefix = \"\";"),
                     0);
    fc_instance_destroy(&T.lim[0].inst);
    T.lim[0].have_inst = 0;
    assert_int_equal(create_limiter(0, "rate = 2.5; address = \"unix:/run/redis.sock\";"), 0);
    fc_instance_destroy(&T.lim[0].inst);
    T.lim[0].have_inst = 0;
    /* A name is looked up by the workers, later: whether it resolves is no concern of create(). */
    assert_int_equal(create_limiter(0, "rate = 2.5; address = \"nosuch.invalid:6379\";"), 0);
    fc_instance_destroy(&T.lim[0].inst);
    T.lim[0].have_inst = 0;
    assert_int_equal(n_log_lines, 0);
}

int main(void)
{
    /* Writes to a connection Redis closed must not kill the test. */
    signal(SIGPIPE, SIG_IGN);
#define TC(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        TC(test_descriptor),
        TC(test_burst_then_deny),
        TC(test_two_instances_share_one_limit),
        TC(test_pools_keep_apart_by_default),
        TC(test_auth_and_select),
        TC(test_auth_missing),
        TC(test_noscript_after_script_flush),
        TC(test_killed_redis_allows),
        TC(test_killed_redis_denies),
        TC(test_restarted_redis_resumes),
        TC(test_slow_redis),
        TC(test_unix_socket),
        TC(test_silent_server_times_out),
        TC(test_silent_server_default_allows),
        TC(test_unreachable_at_start),
        TC(test_lazy_start_in_check),
        TC(test_worker_stop_ends_pending_checks),
        TC(test_worker_stop_before_the_answer),
        TC(test_host_name),
        TC(test_unresolvable_name),
        TC(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
