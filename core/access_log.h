/*
 * The access log: one line per response, written by the worker that served
 * it. Lines are gathered in a per-worker buffer and handed to the log
 * writer (log_writer.h) after each loop iteration (fc_access_log_flush(),
 * from the worker's check handle), or when the buffer is full; the writer's
 * thread writes them, so a worker never waits for the log.
 *
 * Workers always write to one descriptor, which the main thread points at the
 * configured target with dup2() at start, on reload and on SIGUSR1, so the
 * workers never see it change. While the log is off it points at /dev/null
 * and no line is formatted at all.
 */
#ifndef FC_ACCESS_LOG_H
#define FC_ACCESS_LOG_H

#include "worker_types.h"

#include <stddef.h>
#include <stdint.h>

struct fc_config;

/** What one line says. Strings are borrowed for the call. */
struct fc_access_entry {
    const char *client_ip;
    const char *request_line; /**< "GET /path HTTP/1.1", or "" when the head never completed */
    int status;
    uint64_t bytes_sent;
    const char *backend; /**< address as configured, or NULL */
    const char *pool;    /**< the pool's name, or NULL (no request head) */
    uint64_t generation; /**< the generation the request ran on */
    uint64_t started_ns; /**< uv_hrtime() when the request's first byte arrived */
    uint64_t connect_ns; /**< getting its backend connection: 0 when an idle one was reused */
    uint64_t head_ns; /**< from started_ns to the backend's response head; 0: no backend answered */
};

/** Opens the log descriptor on /dev/null. Main thread, at start. Returns 0 or a negative errno. */
int fc_access_log_init(void);

/**
 * Points the log at what cfg asks for (a file, stdout, or off). A target that
 * cannot be opened keeps the previous one, and says so. Main thread.
 */
void fc_access_log_apply(const struct fc_config *cfg);

/** Closes the descriptor. Main thread, once every worker has stopped. */
void fc_access_log_shutdown(void);

/** True while lines are written. Any thread; a relaxed load. */
int fc_access_log_on(void);

/** The worker's line buffer (w->access_log). Returns 0 or FC_ENOMEM. */
int fc_access_log_worker_init(struct fc_worker *w);

/** Writes what is buffered and frees the buffer. The worker's loop has stopped. */
void fc_access_log_worker_free(struct fc_worker *w);

/** Appends one line for e (when the log is on). Worker thread. */
void fc_access_log_write(struct fc_worker *w, const struct fc_access_entry *e);

/** Hands the buffered lines to the log writer. Worker thread. */
void fc_access_log_flush(struct fc_worker *w);

#endif
