/*
 * Timeout queues; see timeouts.h.
 */
#include "timeouts.h"

#include <stddef.h>

static void timer_cb(uv_timer_t *h);

void fc_timeouts_init(struct fc_timeouts *ts, uv_loop_t *loop, fc_timeout_cb cb)
{
    *ts = (struct fc_timeouts){.cb = cb};
    uv_timer_init(loop, &ts->timer);
    ts->timer.data = ts;
    uv_unref((uv_handle_t *)&ts->timer);
}

void fc_timeouts_close(struct fc_timeouts *ts)
{
    if (!uv_is_closing((uv_handle_t *)&ts->timer))
        uv_close((uv_handle_t *)&ts->timer, NULL);
}

static void unlink_from(struct fc_timeout_queue *q, struct fc_timeout *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        q->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        q->tail = t->prev;
    t->prev = t->next = NULL;
}

void fc_timeout_stop(struct fc_timeouts *ts, struct fc_timeout *t)
{
    if (t->deadline == 0)
        return;
    unlink_from(&ts->q[t->queue], t);
    t->deadline = 0;
}

/* The queue for ms: its own, else an unused one, else the one of the nearest duration. */
static uint8_t queue_for(struct fc_timeouts *ts, uint32_t ms)
{
    int free_q = -1, near = -1;
    uint32_t near_gap = 0;
    for (int i = 0; i < FC_TIMEOUT_QUEUES; i++) {
        struct fc_timeout_queue *q = &ts->q[i];
        if (q->ms == ms)
            return (uint8_t)i;
        if (q->head == NULL) {
            if (free_q < 0)
                free_q = i;
            continue;
        }
        uint32_t gap = q->ms > ms ? q->ms - ms : ms - q->ms;
        if (near < 0 || gap < near_gap) {
            near = i;
            near_gap = gap;
        }
    }
    if (free_q >= 0) {
        ts->q[free_q].ms = ms;
        return (uint8_t)free_q;
    }
    return (uint8_t)near;
}

static void timer_wait(struct fc_timeouts *ts, uint64_t due)
{
    uint64_t now = uv_now(ts->timer.loop);
    ts->timer_due = due;
    uv_timer_start(&ts->timer, timer_cb, due > now ? due - now : 0, 0);
}

void fc_timeout_arm(struct fc_timeouts *ts, struct fc_timeout *t, uint32_t ms)
{
    if (ms == 0)
        ms = 1;
    uint64_t deadline = uv_now(ts->timer.loop) + ms;
    uint8_t qi = queue_for(ts, ms);
    struct fc_timeout_queue *q = &ts->q[qi];
    if (t->deadline != 0) {
        if (t->queue == qi && q->tail == t && (t->prev == NULL || t->prev->deadline <= deadline)) {
            /* Already last in its queue, and stays there: only the time moves. */
            t->deadline = deadline;
            return;
        }
        unlink_from(&ts->q[t->queue], t);
    }
    t->queue = qi;
    t->deadline = deadline;
    /* Its place from the tail: the tail itself, unless the queue is another duration's. */
    struct fc_timeout *after = q->tail;
    while (after != NULL && after->deadline > deadline)
        after = after->prev;
    t->prev = after;
    t->next = after != NULL ? after->next : q->head;
    if (t->next != NULL)
        t->next->prev = t;
    else
        q->tail = t;
    if (after != NULL)
        after->next = t;
    else
        q->head = t;
    if (ts->timer_due == 0 || deadline < ts->timer_due)
        timer_wait(ts, deadline);
}

static void timer_cb(uv_timer_t *h)
{
    struct fc_timeouts *ts = h->data;
    uint64_t now = uv_now(h->loop);
    ts->timer_due = 0;
    for (int i = 0; i < FC_TIMEOUT_QUEUES; i++) {
        struct fc_timeout_queue *q = &ts->q[i];
        /* An expiry may arm, stop or free others: the head is read again each time. */
        struct fc_timeout *t;
        while ((t = q->head) != NULL && t->deadline <= now) {
            unlink_from(q, t);
            t->deadline = 0;
            ts->cb(t);
        }
    }
    /* The earliest head left: what the timer waits for next. */
    uint64_t next = 0;
    for (int i = 0; i < FC_TIMEOUT_QUEUES; i++) {
        struct fc_timeout *t = ts->q[i].head;
        if (t != NULL && (next == 0 || t->deadline < next))
            next = t->deadline;
    }
    if (next != 0 && (ts->timer_due == 0 || next < ts->timer_due))
        timer_wait(ts, next);
}

uint32_t fc_timeouts_count(const struct fc_timeouts *ts)
{
    uint32_t n = 0;
    for (int i = 0; i < FC_TIMEOUT_QUEUES; i++)
        for (const struct fc_timeout *t = ts->q[i].head; t != NULL; t = t->next)
            n++;
    return n;
}
