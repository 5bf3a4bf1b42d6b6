/*
 * The access log; see access_log.h.
 *
 * Line format: `TIME CLIENT "REQUEST" STATUS BYTES BACKEND DURATION`, e.g.
 *   2026-11-21T10:00:00Z 127.0.0.1 "GET / HTTP/1.1" 200 14 127.0.0.1:9001 0.412ms
 * with "-" for what is unknown (no request line, no backend).
 */
#include "access_log.h"

#include "config.h"
#include "log.h"
#include "log_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <fulcrum/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF_SIZE (64 * 1024)

struct fc_access_log {
    char *buf; /* LOG_BUF_SIZE, allocated with the first line */
    size_t len;
};

/* Always open once started (on /dev/null while the log is off). */
static int log_fd = -1;
static uint32_t log_on; /* atomic */

int fc_access_log_on(void)
{
    return __atomic_load_n(&log_on, __ATOMIC_RELAXED) != 0;
}

int fc_access_log_init(void)
{
    log_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (log_fd < 0) {
        int err = -errno;
        fc_log_error("/dev/null: %s", strerror(errno));
        return err;
    }
    fc_log_writer_set_fd(FC_LOG_ACCESS, log_fd);
    return 0;
}

static int open_target(const struct fc_config *cfg)
{
    switch (cfg->access_log) {
    case FC_ACCESS_LOG_OFF:
        return -1;
    case FC_ACCESS_LOG_STDOUT:
        return dup(STDOUT_FILENO);
    case FC_ACCESS_LOG_FILE:
        break;
    }
    /*
     * Opened without waiting (a FIFO that nobody reads would block the open),
     * then written by the log writer's thread, which may wait.
     */
    int fd = open(cfg->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK,
                  0644);
    if (fd < 0) {
        fc_log_error("%s: access log %s: %s", cfg->path, cfg->access_log_path,
                     errno == ENXIO ? "a FIFO that nobody reads" : strerror(errno));
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

void fc_access_log_apply(const struct fc_config *cfg)
{
    if (cfg->access_log == FC_ACCESS_LOG_OFF) {
        __atomic_store_n(&log_on, 0, __ATOMIC_RELAXED);
        return;
    }
    int fd = open_target(cfg);
    if (fd < 0)
        return;
    if (dup2(fd, log_fd) < 0)
        fc_log_error("access log: dup2: %s", strerror(errno));
    else
        __atomic_store_n(&log_on, 1, __ATOMIC_RELAXED);
    close(fd);
}

void fc_access_log_shutdown(void)
{
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
}

int fc_access_log_worker_init(struct fc_worker *w)
{
    w->access_log = calloc(1, sizeof(*w->access_log));
    return w->access_log != NULL ? 0 : FC_ENOMEM;
}

void fc_access_log_flush(struct fc_worker *w)
{
    struct fc_access_log *al = w->access_log;
    if (al->len > 0)
        fc_log_writer_put(FC_LOG_ACCESS, al->buf, al->len);
    al->len = 0;
}

void fc_access_log_worker_free(struct fc_worker *w)
{
    if (w->access_log == NULL)
        return;
    if (w->access_log->len > 0)
        fc_access_log_flush(w);
    free(w->access_log->buf);
    free(w->access_log);
    w->access_log = NULL;
}

/* Appends one line (without its newline). */
static void append(struct fc_access_log *al, struct fc_worker *w, const char *line, size_t len)
{
    if (al->buf == NULL) {
        al->buf = malloc(LOG_BUF_SIZE);
        if (al->buf == NULL)
            return;
    }
    if (al->len + len + 1 > LOG_BUF_SIZE)
        fc_access_log_flush(w);
    if (len + 1 > LOG_BUF_SIZE)
        return;
    memcpy(al->buf + al->len, line, len);
    al->len += len;
    al->buf[al->len++] = '\n';
}

void fc_access_log_write(struct fc_worker *w, const struct fc_access_entry *e)
{
    if (!fc_access_log_on())
        return;
    char line[512];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    double ms = (double)(uv_hrtime() - e->started_ns) / 1e6;
    int n = snprintf(line, sizeof(line), "%s %s \"%s\" %d %llu %s %.3fms", ts, e->client_ip,
                     e->request_line[0] ? e->request_line : "-", e->status,
                     (unsigned long long)e->bytes_sent, e->backend ? e->backend : "-", ms);
    if (n > 0)
        append(w->access_log, w, line, (size_t)(n < (int)sizeof(line) ? n : (int)sizeof(line) - 1));
}
