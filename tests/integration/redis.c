/*
 * redis-server run as a child process, for the tests of the redis rate
 * limiter (two fulcrums sharing one Redis, a Redis that dies and comes back).
 * It is found on PATH, and a test that needs it fails rather than skips when
 * it is missing, so that a machine without Redis cannot pass those tests
 * unnoticed.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    struct sockaddr_in sin = it_loopback(port);
    bool ok = false;
    char buf[64];
    size_t len = 0;
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
        int64_t deadline = it_now_ms() + timeout_ms;
        while (len < 7 && it_wait_fd(fd, POLLIN, (int)(deadline - it_now_ms())) == 0) {
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
        struct it_proc *proc = it_spawn(env, "redis", argv);
        int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
        for (;;) {
            if (redis_pongs(p, 500)) {
                if (proc_out != NULL)
                    *proc_out = proc;
                return p;
            }
            if (it_proc_poll(proc)) {
                /* A port of ours that lingers after a SIGKILL frees within moments. */
                if (attempt < 5) {
                    proc->dumped = true; /* not worth a dump at teardown */
                    it_sleep_ms(port != 0 ? 200 : 0);
                    break;
                }
                it_proc_report(env, proc);
                it_fail("redis-server on 127.0.0.1:%d %s before it answered PING", p,
                        it_describe_status(env, proc->status));
            }
            if (it_now_ms() >= deadline) {
                it_proc_report(env, proc);
                it_fail("redis-server on 127.0.0.1:%d did not answer PING within %d ms", p,
                        IT_START_TIMEOUT_MS);
            }
            it_sleep_ms(10);
        }
    }
}
