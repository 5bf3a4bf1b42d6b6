/*
 * The demo backends (examples/demo_backend) that most tests put behind
 * fulcrum, run as child processes, and the checks of what they answer: the
 * /bytes pattern and the line of POST /sum. The checks live here because they
 * are the demo backend's contract and change when it does.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <stdlib.h>
#include <string.h>

#ifndef FC_DEMO_BACKEND
#error "FC_DEMO_BACKEND (path of the demo backend) must be defined by the build"
#endif

/* ---- demo backends ------------------------------------------------------ */

#define MAX_EXTRA_ARGS 16

/* `demo_backend --name NAME --listen LISTEN EXTRA...`, waited for; returns its port. */
static int start_backend(struct it_env *env, const char *name, const char *listen,
                         const char *const *extra)
{
    if (env->nbackends == MAX_BACKENDS)
        it_fail("too many backends");
    const char *argv[5 + MAX_EXTRA_ARGS + 1] = {FC_DEMO_BACKEND, "--name", name, "--listen",
                                                listen};
    size_t argc = 5;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (i == MAX_EXTRA_ARGS)
            it_fail("demo backend %s: more than %d extra arguments", name, MAX_EXTRA_ARGS);
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    struct it_proc *proc = it_spawn(env, it_strf(env, "backend-%s", name), argv);

    /*
     * Its stdout is a file, so there is no pipe to drain or to break later.
     * The line names the address it was given ("[::1]" stays bracketed), so
     * the port is what follows its last colon.
     */
    static const char prefix[] = "listening on ";
    int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
    int port = -1;
    for (;;) {
        char *out = it_read_file(proc->out_path, 0, NULL);
        const char *at = out ? strstr(out, prefix) : NULL;
        const char *eol = at ? strchr(at, '\n') : NULL;
        if (eol != NULL) {
            const char *colon = memrchr(at, ':', (size_t)(eol - at));
            port = colon != NULL ? atoi(colon + 1) : -1;
            free(out);
            break;
        }
        free(out);
        if (it_proc_poll(proc)) {
            it_proc_report(env, proc);
            it_fail("demo backend %s %s before it listened on %s", name,
                    it_describe_status(env, proc->status), listen);
        }
        if (it_now_ms() >= deadline) {
            it_proc_report(env, proc);
            it_fail("demo backend %s printed no \"%sADDR:PORT\" line within %d ms", name, prefix,
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

int it_backend_start(struct it_env *env, const char *name)
{
    return start_backend(env, name, "127.0.0.1:0", NULL);
}

int it_backend_start_args(struct it_env *env, const char *name, const char *const *extra)
{
    return start_backend(env, name, "127.0.0.1:0", extra);
}

int it_backend_start_on(struct it_env *env, const char *name, const char *listen)
{
    return start_backend(env, name, listen, NULL);
}

struct it_proc *it_backend_proc(struct it_env *env, const char *name)
{
    for (size_t i = 0; i < env->nbackends; i++)
        if (strcmp(env->backends[i].name, name) == 0)
            return env->backends[i].proc;
    it_fail("no backend named %s", name);
    return NULL;
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
