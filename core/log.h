/*
 * Logging for the daemon: one line per event, to stderr by default. Safe to
 * call from any thread; never waits for stderr once the daemon runs (lines
 * go out through the log writer, log_writer.h).
 */
#ifndef FC_LOG_H
#define FC_LOG_H

#include <fulcrum/plugin.h>
#include <stdarg.h>

/** Receives each formatted line (no trailing newline). Used by tests to capture errors. */
typedef void (*fc_log_sink_fn)(void *arg, enum fc_log_level level, const char *line);

/** Lines below `level` are dropped. Default FC_LOG_INFO. */
void fc_log_set_level(enum fc_log_level level);
enum fc_log_level fc_log_get_level(void);

/** Sends lines to `fn` instead of stderr; NULL restores stderr. Not thread-safe: set at start-up.
 */
void fc_log_set_sink(fc_log_sink_fn fn, void *arg);

void fc_log(enum fc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fc_logv(enum fc_log_level level, const char *fmt, va_list ap);

/**
 * While buf is set, the calling thread's error lines are also copied into it
 * (the last one wins). NULL stops. Used to remember why a reload failed.
 */
void fc_log_capture_errors(char *buf, size_t len);

/**
 * While buf is set, the calling thread's error lines are also appended to it
 * (a string: empty, or what an earlier collection left), one a line (those
 * that no longer fit are left out). NULL stops. Used to answer POST
 * /api/reload with every error, collected on more than one thread.
 */
void fc_log_collect_errors(char *buf, size_t len);

/** Parses "debug", "info", "warn", "error"; returns the level or -1. */
int fc_log_level_parse(const char *name);

#define fc_log_debug(...) fc_log(FC_LOG_DEBUG, __VA_ARGS__)
#define fc_log_info(...) fc_log(FC_LOG_INFO, __VA_ARGS__)
#define fc_log_warn(...) fc_log(FC_LOG_WARN, __VA_ARGS__)
#define fc_log_error(...) fc_log(FC_LOG_ERROR, __VA_ARGS__)

#endif
