/*
 * The access log; see access_log.h.
 *
 * Text lines (log.access_format = "text"):
 *   TIME CLIENT "REQUEST" STATUS BYTES BACKEND DURATION pool=P gen=G connect=C head=H
 * e.g.
 *   2026-11-21T10:00:00Z 127.0.0.1 "GET / HTTP/1.1" 200 14 127.0.0.1:9001 0.412ms pool=web
 *   gen=3 connect=0.000ms head=0.380ms
 * (one line) with "-" for what is unknown (no request line, no backend, no
 * response from one). JSON lines ("json") carry the same as one object a line:
 *   {"time":"…","client":"…","method":"GET","target":"/","version":"1.1","status":200,
 *    "bytes":14,"pool":"web","backend":"127.0.0.1:9001","generation":3,
 *    "connect_ms":0.000,"head_ms":0.380,"total_ms":0.412}
 * with null for what is unknown. Both are formatted into a stack buffer: no
 * allocation per line.
 */
#include "access_log.h"

#include "config.h"
#include "log.h"
#include "log_writer.h"

#include <errno.h>
#include <stdarg.h>
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
static uint32_t log_on;   /* atomic */
static uint32_t log_json; /* atomic: log.access_format = "json" */

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
    int fd =
        open(cfg->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
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
    __atomic_store_n(&log_json, (uint32_t)cfg->access_log_json, __ATOMIC_RELAXED);
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

/* Appends v as a JSON string (quotes included) to buf at *off, within cap. */
static void json_string(char *buf, size_t cap, size_t *off, const char *v, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = *off;
    if (o + 1 < cap)
        buf[o++] = '"';
    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            buf[o++] = '\\';
            buf[o++] = 'u';
            buf[o++] = '0';
            buf[o++] = '0';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        } else {
            buf[o++] = (char)ch;
        }
    }
    if (o + 1 < cap)
        buf[o++] = '"';
    *off = o;
}

static void json_nullable(char *buf, size_t cap, size_t *off, const char *v)
{
    if (v == NULL) {
        int n = snprintf(buf + *off, cap - *off, "null");
        *off += n > 0 && (size_t)n < cap - *off ? (size_t)n : 0;
    } else {
        json_string(buf, cap, off, v, strlen(v));
    }
}

/* Appends printf output at *off, within cap. */
static void put(char *buf, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *off, cap - *off, fmt, ap);
    va_end(ap);
    if (n > 0)
        *off += (size_t)n < cap - *off ? (size_t)n : cap - *off - 1;
}

static size_t format_json(char *line, size_t cap, const char *ts, double ms,
                          const struct fc_access_entry *e)
{
    size_t o = 0;
    put(line, cap, &o, "{\"time\":\"%s\",\"client\":", ts);
    json_string(line, cap, &o, e->client_ip, strlen(e->client_ip));
    /* "GET /path HTTP/1.1": the method, the target, the version. */
    const char *rl = e->request_line, *sp1 = strchr(rl, ' '), *sp2 = strrchr(rl, ' ');
    if (rl[0] != '\0' && sp1 != NULL && sp2 != sp1 && strncmp(sp2, " HTTP/", 6) == 0) {
        put(line, cap, &o, ",\"method\":");
        json_string(line, cap, &o, rl, (size_t)(sp1 - rl));
        put(line, cap, &o, ",\"target\":");
        json_string(line, cap, &o, sp1 + 1, (size_t)(sp2 - sp1 - 1));
        put(line, cap, &o, ",\"version\":");
        json_string(line, cap, &o, sp2 + 6, strlen(sp2 + 6));
    } else {
        put(line, cap, &o, ",\"method\":null,\"target\":null,\"version\":null");
    }
    put(line, cap, &o, ",\"status\":%d,\"bytes\":%llu,\"pool\":", e->status,
        (unsigned long long)e->bytes_sent);
    json_nullable(line, cap, &o, e->pool);
    put(line, cap, &o, ",\"backend\":");
    json_nullable(line, cap, &o, e->backend);
    put(line, cap, &o, ",\"generation\":%llu", (unsigned long long)e->generation);
    if (e->head_ns != 0)
        put(line, cap, &o, ",\"connect_ms\":%.3f,\"head_ms\":%.3f", (double)e->connect_ns / 1e6,
            (double)e->head_ns / 1e6);
    else
        put(line, cap, &o, ",\"connect_ms\":null,\"head_ms\":null");
    put(line, cap, &o, ",\"total_ms\":%.3f}", ms);
    return o;
}

static size_t format_text(char *line, size_t cap, const char *ts, double ms,
                          const struct fc_access_entry *e)
{
    size_t o = 0;
    put(line, cap, &o, "%s %s \"%s\" %d %llu %s %.3fms pool=%s gen=%llu", ts, e->client_ip,
        e->request_line[0] ? e->request_line : "-", e->status, (unsigned long long)e->bytes_sent,
        e->backend ? e->backend : "-", ms, e->pool ? e->pool : "-",
        (unsigned long long)e->generation);
    if (e->head_ns != 0)
        put(line, cap, &o, " connect=%.3fms head=%.3fms", (double)e->connect_ns / 1e6,
            (double)e->head_ns / 1e6);
    else
        put(line, cap, &o, " connect=- head=-");
    return o;
}

void fc_access_log_write(struct fc_worker *w, const struct fc_access_entry *e)
{
    if (!fc_access_log_on())
        return;
    char line[1024];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    double ms = (double)(uv_hrtime() - e->started_ns) / 1e6;
    size_t n = __atomic_load_n(&log_json, __ATOMIC_RELAXED)
                   ? format_json(line, sizeof(line), ts, ms, e)
                   : format_text(line, sizeof(line), ts, ms, e);
    if (n > 0)
        append(w->access_log, w, line, n);
}
