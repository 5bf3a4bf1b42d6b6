/*
 * The core of the integration test harness: the environment (struct it_env)
 * that each test runs in, from it_setup() to it_teardown(), and it_main(),
 * which runs one test or all of a file. The environment owns a private
 * temporary directory and every string and block of memory the harness hands
 * out; teardown has the other pieces release what they started, in an order
 * that matters (see it_teardown()). Here too are the helpers that every piece
 * shares: failing the test, allocating, files and the clock.
 *
 * See harness.h for the contract, and harness_internal.h for what the pieces
 * share. Everything but the raw backends is blocking and single-threaded: a
 * test is a straight line of "start this, send that, expect this back", and
 * the deadlines live in poll() calls so that a silent peer fails a test
 * instead of hanging it.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- failure and memory ------------------------------------------------- */

void it_fail(const char *fmt, ...)
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

void *it_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fputs("harness: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *it_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fputs("harness: out of memory\n", stderr);
        abort();
    }
    return p;
}

/* ---- environment -------------------------------------------------------- */

/* One allocation owned by the env; the payload is aligned for any type. */
struct it_str {
    struct it_str *next;
    max_align_t data[];
};

void *it_zalloc(struct it_env *env, size_t size)
{
    struct it_str *node = it_xmalloc(sizeof(*node) + size);
    memset(node->data, 0, size);
    node->next = env->strings;
    env->strings = node;
    return node->data;
}

char *it_env_strdup_len(struct it_env *env, const char *s, size_t len)
{
    char *copy = it_zalloc(env, len + 1);
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
    char *s = it_zalloc(env, (size_t)n + 1);
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

size_t it_count(const char *text, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + len, needle))
        n++;
    return n;
}

int it_setup(void **state)
{
    it_install_process_hooks();

    struct it_env *env = it_xmalloc(sizeof(*env));
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

/* ---- files -------------------------------------------------------------- */

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

char *it_read_file(const char *path, size_t tail, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) == 0 && tail > 0 && (size_t)st.st_size > tail)
        lseek(fd, st.st_size - (off_t)tail, SEEK_SET);
    size_t len = 0, cap = 4096;
    char *buf = it_xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = it_xrealloc(buf, cap);
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

/* ---- time --------------------------------------------------------------- */

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

/* ---- teardown and main -------------------------------------------------- */

int it_teardown(void **state)
{
    struct it_env *env = *state;

    /*
     * The order matters. The test's connections close first, then the raw
     * backends stop (their handlers are woken and joined), so that fulcrum,
     * asked to stop next, is not left waiting on a handler; then the
     * children stop. Their stderr is printed before the directory that
     * holds it is removed, and the env's strings go last, since everything
     * before may still use them.
     */
    while (env->conns != NULL)
        it_conn_close(env->conns);
    for (size_t i = 0; i < env->ndead; i++)
        close(env->dead_fds[i]);
    it_raw_backends_stop(env);

    int rc = it_procs_stop(env);
    if (!env->finished || rc != 0)
        it_procs_dump_unreported(env);

    const char *keep = getenv("FC_IT_KEEP");
    if (keep != NULL && keep[0] != '\0' && strcmp(keep, "0") != 0)
        fprintf(stderr, "harness: kept %s\n", env->dir);
    else
        nftw(env->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

    it_procs_free(env);
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
