#include "log.h"

#include "log_writer.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static enum fc_log_level min_level = FC_LOG_INFO;
static fc_log_sink_fn sink;
static void *sink_arg;

static __thread char *capture_buf;
static __thread size_t capture_len;

void fc_log_capture_errors(char *buf, size_t len)
{
    capture_buf = buf;
    capture_len = len;
}

static __thread char *collect_buf;
static __thread size_t collect_len;

void fc_log_collect_errors(char *buf, size_t len)
{
    collect_buf = buf;
    collect_len = len;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fc_log_set_level(enum fc_log_level level)
{
    __atomic_store_n(&min_level, level, __ATOMIC_RELAXED);
}

enum fc_log_level fc_log_get_level(void)
{
    return __atomic_load_n(&min_level, __ATOMIC_RELAXED);
}

void fc_log_set_sink(fc_log_sink_fn fn, void *arg)
{
    sink = fn;
    sink_arg = arg;
}

int fc_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void fc_logv(enum fc_log_level level, const char *fmt, va_list ap)
{
    if (level < fc_log_get_level())
        return;

    char line[2048];
    int off = 0;
    if (sink == NULL)
        off = (int)fc_log_line_prefix(line, sizeof(line), level_names[level]);
    int n = vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap);
    if (n < 0)
        return;
    if (capture_buf != NULL && level == FC_LOG_ERROR)
        snprintf(capture_buf, capture_len, "%s", line + off);
    if (collect_buf != NULL && level == FC_LOG_ERROR) {
        size_t used = strlen(collect_buf);
        if (used + (size_t)n + 2 <= collect_len) /* whole lines only */
            snprintf(collect_buf + used, collect_len - used, "%s\n", line + off);
    }
    off += n;
    if (off > (int)sizeof(line) - 2)
        off = (int)sizeof(line) - 2;

    if (sink != NULL) {
        line[off] = '\0';
        sink(sink_arg, level, line);
        return;
    }
    line[off++] = '\n';
    fc_log_writer_put(FC_LOG_ERRORS, line, (size_t)off);
}

void fc_log(enum fc_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fc_logv(level, fmt, ap);
    va_end(ap);
}
