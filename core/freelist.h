/*
 * Per-worker free lists: blocks of one size kept for reuse, so that the hot
 * path allocates nothing once they are warm. A list belongs to one worker
 * thread and is touched by that thread only, so it needs no lock. The rooms
 * of the request path (client.c, upstream.c, txn.c) each keep their own.
 */
#ifndef FC_FREELIST_H
#define FC_FREELIST_H

#include <stdint.h>
#include <stdlib.h>

/* A list keeps at most this many blocks; beyond, memory goes back to malloc. */
#define FC_FREELIST_MAX 4096

struct fc_free_block {
    struct fc_free_block *next;
};

struct fc_freelist {
    struct fc_free_block *head;
    uint32_t count;
};

/** A block of `size` bytes: a kept one, or a new one. NULL when out of memory. */
static inline void *fc_freelist_get(struct fc_freelist *l, size_t size)
{
    struct fc_free_block *b = l->head;
    if (b != NULL) {
        l->head = b->next;
        l->count--;
        return b;
    }
    return malloc(size < sizeof(*b) ? sizeof(*b) : size);
}

/** Gives a block (of the list's size) back. */
static inline void fc_freelist_put(struct fc_freelist *l, void *p)
{
    if (l->count >= FC_FREELIST_MAX) {
        free(p);
        return;
    }
    struct fc_free_block *b = p;
    b->next = l->head;
    l->head = b;
    l->count++;
}

/** Frees every kept block. */
static inline void fc_freelist_clear(struct fc_freelist *l)
{
    while (l->head != NULL) {
        struct fc_free_block *b = l->head;
        l->head = b->next;
        free(b);
    }
    l->count = 0;
}

#endif
