/*
 * The log writer: no thread that serves traffic ever waits for a log.
 *
 * Lines of the error log and of the access log are copied into a bounded
 * buffer of their log, and one thread per log writes them to its descriptor.
 * A pipe that nobody reads (a container runtime, a stuck journal) or a slow
 * disk then stalls only that thread: when its buffer is full, the lines that
 * do not fit are dropped and counted, and the error log says how many were
 * lost once the log has caught up (and every minute while the loss goes on).
 *
 * Before fc_log_writer_start(), and after an fc_log_writer_stop() that wrote
 * everything out, lines are written directly (`fulcrum -t`, start-up errors,
 * the unit tests). After a stop that had to give up on a stuck descriptor,
 * lines are dropped.
 */
#ifndef FC_LOG_WRITER_H
#define FC_LOG_WRITER_H

#include <stddef.h>
#include <stdint.h>

enum fc_log_stream {
    FC_LOG_ERRORS, /**< the daemon's log (fc_log()); stderr */
    FC_LOG_ACCESS, /**< the access log */
    FC_LOG_STREAMS
};

/** Buffer of the error log, in bytes. */
#define FC_LOG_ERRORS_BUFFER (256 * 1024)
/** Default and bounds of the access log's buffer (`log.buffer_bytes`). */
#define FC_LOG_ACCESS_BUFFER (4 * 1024 * 1024)
#define FC_LOG_BUFFER_MIN (64 * 1024)
#define FC_LOG_BUFFER_MAX (1024 * 1024 * 1024)

/**
 * The descriptor a log is written to (default: stderr for both). The
 * descriptor stays the caller's; it may be pointed elsewhere with dup2() at
 * any time. Main thread, before fc_log_writer_start().
 */
void fc_log_writer_set_fd(enum fc_log_stream s, int fd);

/**
 * Starts the writer threads with an access-log buffer of `access_bytes`.
 * Main thread, once. Returns 0 or a negative errno (lines then keep being
 * written directly).
 */
int fc_log_writer_start(size_t access_bytes);

/**
 * Resizes a log's buffer (a reload that changed `log.buffer_bytes`). Lines
 * waiting in it are kept as far as they fit; the rest are counted as
 * dropped. Main thread.
 */
void fc_log_writer_resize(enum fc_log_stream s, size_t bytes);

/**
 * Gives the threads up to `wait_ms` to write what is buffered, then stops
 * them (a thread still blocked on its descriptor is cancelled). Main thread,
 * after the workers stopped; a second call does nothing.
 */
void fc_log_writer_stop(unsigned wait_ms);

/**
 * Hands whole lines (each ending in '\n') to log s. Never blocks on the
 * descriptor: the lines that do not fit are dropped and counted. Any thread.
 */
void fc_log_writer_put(enum fc_log_stream s, const char *text, size_t len);

/**
 * Writes the start of an error-log line, "2026-12-02T10:00:00.123Z [warn] ",
 * into buf; returns its length.
 */
size_t fc_log_line_prefix(char *buf, size_t cap, const char *level);

/** Lines of log s dropped since the start. Any thread. */
uint64_t fc_log_writer_dropped(enum fc_log_stream s);

#endif
