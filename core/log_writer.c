/*
 * The log writer; see log_writer.h.
 *
 * Each log is a ring of bytes under a mutex. Putting copies whole lines in
 * and wakes the log's thread when the ring was empty (a busy thread looks
 * again before it sleeps). The thread copies up to a chunk out under the
 * mutex and writes it with the mutex released, so the ring is only ever
 * touched under the mutex and can be resized at any time.
 *
 * A thread blocked on its descriptor at stop is cancelled: cancellation is
 * enabled only around write() and poll(), where the thread holds nothing.
 */
#define _GNU_SOURCE /* memrchr */
#include "log_writer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define NOTICE_EVERY_NS (60ull * 1000000000ull)

enum state { DIRECT, RUNNING, STOPPED_STUCK };

struct log {
    const char *name;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* lines to write, or stop */
    pthread_cond_t idle; /* the thread wrote everything, or ended */
    char *ring;
    size_t cap, head, len;
    int fd;
    int stopping, ended, abandon;
    size_t writing;      /* bytes of chunk the thread is writing */
    uint64_t dropped;    /* lines; written under the lock, read with an atomic load */
    uint64_t reported;   /* dropped lines the error log has told of */
    uint64_t first_lost; /* CLOCK_MONOTONIC ns of the first drop not told of yet */
    char chunk[CHUNK];   /* what the thread is writing */
    pthread_t thread;
};

static struct log logs[FC_LOG_STREAMS] = {
    [FC_LOG_ERRORS] = {.name = "error log", .lock = PTHREAD_MUTEX_INITIALIZER, .fd = 2},
    [FC_LOG_ACCESS] = {.name = "access log", .lock = PTHREAD_MUTEX_INITIALIZER, .fd = 2},
};
static int state; /* atomic: enum state */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    for (const char *end = p + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        lines++;
    return lines;
}

/*
 * Writes n bytes, waiting for the descriptor as long as it takes (a
 * non-blocking one is polled). Returns the bytes not written after an error.
 */
static size_t write_all(int fd, const char *p, size_t n, int cancellable)
{
    int old;
    if (cancellable)
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, -1);
        } else {
            break; /* a log that cannot be written must not stop anything else */
        }
    }
    if (cancellable)
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    return n;
}

/* Counts lines lost. Under l->lock. */
static void lost(struct log *l, uint64_t lines)
{
    if (lines == 0)
        return;
    if (l->dropped == l->reported)
        l->first_lost = now_ns();
    __atomic_store_n(&l->dropped, l->dropped + lines, __ATOMIC_RELAXED);
}

/* Copies the whole lines of text that fit into l's ring; counts the rest. Under l->lock. */
static void ring_put(struct log *l, const char *text, size_t len)
{
    size_t room = l->cap - l->len, take = len;
    if (take > room) {
        const char *nl = room ? memrchr(text, '\n', room) : NULL;
        take = nl != NULL ? (size_t)(nl - text) + 1 : 0;
        lost(l, count_lines(text + take, len - take));
    }
    size_t tail = (l->head + l->len) % l->cap;
    size_t first = take < l->cap - tail ? take : l->cap - tail;
    memcpy(l->ring + tail, text, first);
    memcpy(l->ring, text + first, take - first);
    l->len += take;
}

/* Copies up to `cap` bytes from the front of l's ring to out and removes them. Under l->lock. */
static size_t ring_take(struct log *l, char *out, size_t cap)
{
    size_t n = l->len < cap ? l->len : cap;
    size_t first = n < l->cap - l->head ? n : l->cap - l->head;
    memcpy(out, l->ring + l->head, first);
    memcpy(out + first, l->ring, n - first);
    l->head = (l->head + n) % l->cap;
    l->len -= n;
    return n;
}

/* Lines waiting in l's ring. Under l->lock. */
static uint64_t ring_lines(const struct log *l)
{
    size_t first = l->len < l->cap - l->head ? l->len : l->cap - l->head;
    return count_lines(l->ring + l->head, first) + count_lines(l->ring, l->len - first);
}

size_t fc_log_line_prefix(char *buf, size_t cap, const char *level)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t off = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(buf + off, cap - off, ".%03ldZ [%s] ", ts.tv_nsec / 1000000, level);
    return n > 0 && off + (size_t)n < cap ? off + (size_t)n : off;
}

/*
 * After a write: tells the error log of the lines dropped since it last did,
 * when the ring has been written out (the loss is over) or, while it goes
 * on, a minute after the first of them. Under l->lock, which it releases
 * around the put.
 */
static void notice_drops(struct log *l)
{
    uint64_t n = l->dropped - l->reported;
    if (n == 0 || (l->len > 0 && now_ns() - l->first_lost < NOTICE_EVERY_NS))
        return;
    l->reported = l->dropped;
    uint64_t total = l->dropped;
    pthread_mutex_unlock(&l->lock);
    char line[256];
    size_t off = fc_log_line_prefix(line, sizeof(line), "warn");
    int w = snprintf(line + off, sizeof(line) - off,
                     "%s: %llu lines dropped (%llu since the start): its output did not take "
                     "them as fast as they came, and no thread waits for a log\n",
                     l->name, (unsigned long long)n, (unsigned long long)total);
    if (w > 0 && off + (size_t)w < sizeof(line))
        fc_log_writer_put(FC_LOG_ERRORS, line, off + (size_t)w);
    pthread_mutex_lock(&l->lock);
}

static void *writer_main(void *arg)
{
    struct log *l = arg;
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    pthread_mutex_lock(&l->lock);
    for (;;) {
        if (l->abandon)
            break; /* stopped before it could write everything */
        if (l->len == 0) {
            pthread_cond_broadcast(&l->idle);
            if (l->stopping)
                break;
            pthread_cond_wait(&l->wake, &l->lock);
            continue;
        }
        size_t n = ring_take(l, l->chunk, sizeof(l->chunk));
        l->writing = n;
        pthread_mutex_unlock(&l->lock);
        size_t left = write_all(l->fd, l->chunk, n, 1);
        pthread_mutex_lock(&l->lock);
        l->writing = 0;
        lost(l, count_lines(l->chunk + (n - left), left));
        notice_drops(l);
    }
    l->ended = 1;
    pthread_cond_broadcast(&l->idle);
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

void fc_log_writer_set_fd(enum fc_log_stream s, int fd)
{
    logs[s].fd = fd;
}

/* Asks l's thread to end once it has written everything. */
static void ask_stop(struct log *l)
{
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

/*
 * Ends l's thread: once it has written everything, or at the deadline, when
 * it is told to leave what is left and, if it is blocked on its descriptor,
 * cancelled there. Returns 1 if it wrote everything.
 */
static int stop_one(struct log *l, uint64_t deadline_ns)
{
    ask_stop(l);
    pthread_mutex_lock(&l->lock);
    struct timespec until = {.tv_sec = (time_t)(deadline_ns / 1000000000ull),
                             .tv_nsec = (long)(deadline_ns % 1000000000ull)};
    while (!l->ended)
        if (pthread_cond_timedwait(&l->idle, &l->lock, &until) == ETIMEDOUT)
            break;
    int ended = l->ended, blocked = !ended && l->writing > 0;
    l->abandon = 1;
    pthread_mutex_unlock(&l->lock);
    if (blocked)
        pthread_cancel(l->thread);
    pthread_join(l->thread, NULL);
    pthread_mutex_lock(&l->lock);
    if (!ended)
        lost(l, ring_lines(l) + (blocked ? count_lines(l->chunk, l->writing) : 0));
    free(l->ring);
    l->ring = NULL; /* from here on, lines put are dropped */
    l->cap = l->head = l->len = 0;
    l->writing = 0;
    pthread_mutex_unlock(&l->lock);
    pthread_cond_destroy(&l->wake);
    pthread_cond_destroy(&l->idle);
    return ended;
}

int fc_log_writer_start(size_t access_bytes)
{
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == RUNNING)
        return 0;
    size_t sizes[FC_LOG_STREAMS] = {
        [FC_LOG_ERRORS] = FC_LOG_ERRORS_BUFFER, [FC_LOG_ACCESS] = access_bytes};
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    unsigned started = 0;
    int rc = 0;
    for (; started < FC_LOG_STREAMS; started++) {
        struct log *l = &logs[started];
        pthread_mutex_lock(&l->lock);
        l->ring = malloc(sizes[started]);
        l->cap = sizes[started];
        l->head = l->len = l->writing = 0;
        l->stopping = l->ended = l->abandon = 0;
        pthread_mutex_unlock(&l->lock);
        if (l->ring == NULL) {
            rc = -ENOMEM;
            break;
        }
        pthread_cond_init(&l->wake, NULL);
        pthread_cond_init(&l->idle, &attr);
        /* No signal is for these threads: a write is never cut short by one. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int err = pthread_create(&l->thread, NULL, writer_main, l);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err != 0) {
            pthread_cond_destroy(&l->wake);
            pthread_cond_destroy(&l->idle);
            pthread_mutex_lock(&l->lock);
            free(l->ring);
            l->ring = NULL;
            pthread_mutex_unlock(&l->lock);
            rc = -err;
            break;
        }
    }
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        for (unsigned i = 0; i < started; i++)
            stop_one(&logs[i], now_ns());
        return rc;
    }
    __atomic_store_n(&state, RUNNING, __ATOMIC_RELEASE);
    return 0;
}

void fc_log_writer_resize(enum fc_log_stream s, size_t bytes)
{
    struct log *l = &logs[s];
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != RUNNING || bytes == l->cap)
        return;
    char *ring = malloc(bytes);
    if (ring == NULL)
        return; /* the old buffer stays */
    pthread_mutex_lock(&l->lock);
    char *old = l->ring;
    size_t old_cap = l->cap, old_head = l->head, old_len = l->len;
    l->ring = ring;
    l->cap = bytes;
    l->head = l->len = 0;
    /* The waiting lines move over in their two pieces; what no longer fits is dropped. */
    size_t first = old_len < old_cap - old_head ? old_len : old_cap - old_head;
    ring_put(l, old + old_head, first);
    if (first == old_len || l->len == first)
        ring_put(l, old, old_len - first);
    else
        lost(l, count_lines(old, old_len - first));
    pthread_mutex_unlock(&l->lock);
    free(old);
}

void fc_log_writer_stop(unsigned wait_ms)
{
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != RUNNING)
        return;
    uint64_t deadline = now_ns() + (uint64_t)wait_ms * 1000000ull;
    ask_stop(&logs[FC_LOG_ERRORS]); /* both write out at once */
    /* The access log first: its thread may still tell the error log of drops. */
    int clean = stop_one(&logs[FC_LOG_ACCESS], deadline);
    clean &= stop_one(&logs[FC_LOG_ERRORS], deadline);
    __atomic_store_n(&state, clean ? DIRECT : STOPPED_STUCK, __ATOMIC_RELEASE);
}

void fc_log_writer_put(enum fc_log_stream s, const char *text, size_t len)
{
    struct log *l = &logs[s];
    switch (__atomic_load_n(&state, __ATOMIC_ACQUIRE)) {
    case DIRECT:
        write_all(l->fd, text, len, 0);
        return;
    case STOPPED_STUCK:
        pthread_mutex_lock(&l->lock);
        lost(l, count_lines(text, len));
        pthread_mutex_unlock(&l->lock);
        return;
    }
    pthread_mutex_lock(&l->lock);
    if (l->ring == NULL) {
        lost(l, count_lines(text, len)); /* the log is stopping: it would not be written */
    } else {
        int was_empty = l->len == 0;
        ring_put(l, text, len);
        if (was_empty && l->len > 0)
            pthread_cond_signal(&l->wake);
    }
    pthread_mutex_unlock(&l->lock);
}

uint64_t fc_log_writer_dropped(enum fc_log_stream s)
{
    return __atomic_load_n(&logs[s].dropped, __ATOMIC_RELAXED);
}
