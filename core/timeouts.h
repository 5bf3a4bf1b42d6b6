/*
 * Timeout queues: one libuv timer per worker for every connection's
 * deadline, instead of one uv_timer_t (152 bytes) in each connection.
 *
 * Connections arm their deadlines with a handful of durations
 * (client_header_ms, idle_ms, the linger time): each duration gets a FIFO
 * queue. The loop's clock only moves forward, so a queue appended at its
 * tail stays ordered by expiry, and arming, re-arming and stopping are a few
 * pointer moves (nginx keeps an rbtree and HAProxy a wheel of ebtrees for the
 * same job; with few distinct durations the queues are cheaper than both).
 * The one timer waits for the earliest head of all queues.
 *
 * Every queue is kept in deadline order. When more durations are in use than
 * there are queues (reloads that keep changing timeouts while connections of
 * the old ones stay), a deadline joins the queue of the nearest duration, at
 * its place found from the tail: exact still, only slower to arm.
 *
 * A queue set belongs to one loop and is touched by its thread only.
 */
#ifndef FC_TIMEOUTS_H
#define FC_TIMEOUTS_H

#include <stdint.h>
#include <uv.h>

#define FC_TIMEOUT_QUEUES 8

/* One deadline, embedded in what it times. */
struct fc_timeout {
    struct fc_timeout *prev, *next;
    uint64_t deadline; /**< uv_now() at which it expires; 0: not armed */
    uint8_t queue;
};

/** Runs when t's deadline passed (t is no longer armed): it may arm t again, or free it. */
typedef void (*fc_timeout_cb)(struct fc_timeout *t);

struct fc_timeout_queue {
    uint32_t ms; /**< the duration its members were armed with; 0: unused */
    struct fc_timeout *head, *tail;
};

struct fc_timeouts {
    uv_timer_t timer;
    uint64_t timer_due; /**< uv_now() the timer waits for; 0: stopped */
    fc_timeout_cb cb;
    struct fc_timeout_queue q[FC_TIMEOUT_QUEUES];
};

/**
 * Sets up ts on loop, with cb for every expiry. The timer does not keep the
 * loop alive (what it times does). Close it with fc_timeouts_close().
 */
void fc_timeouts_init(struct fc_timeouts *ts, uv_loop_t *loop, fc_timeout_cb cb);

/** Closes the timer (ts must stay allocated until the loop ran its close callbacks). */
void fc_timeouts_close(struct fc_timeouts *ts);

/** t expires ms from now (at least 1 ms), whether it was armed before or not. */
void fc_timeout_arm(struct fc_timeouts *ts, struct fc_timeout *t, uint32_t ms);

/** t is not armed any more (fine when it was not). */
void fc_timeout_stop(struct fc_timeouts *ts, struct fc_timeout *t);

static inline int fc_timeout_armed(const struct fc_timeout *t)
{
    return t->deadline != 0;
}

/** Armed deadlines in ts (for the tests). */
uint32_t fc_timeouts_count(const struct fc_timeouts *ts);

#endif
