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

/*
 * A list keeps at most this many blocks, and at most this many bytes of them;
 * beyond, memory goes back to malloc. The byte bound matters for large blocks
 * (request memory follows max_header_bytes): after a spike a worker keeps
 * some megabytes, not thousands of blocks of that size.
 */
#define FC_FREELIST_MAX 4096
#define FC_FREELIST_MAX_BYTES (16u << 20)

struct fc_free_block {
    struct fc_free_block *next;
};

struct fc_freelist {
    struct fc_free_block *head;
    uint32_t count;
    size_t bytes; /* of the blocks kept */
};

/** Block sizes as the list counts them: what malloc was asked for. */
static inline size_t fc_freelist_block_size(size_t size)
{
    return size < sizeof(struct fc_free_block) ? sizeof(struct fc_free_block) : size;
}

/**
 * A block of `size` bytes: a kept one, or a new one. NULL when out of
 * memory. Every block of one list has the same size.
 */
static inline void *fc_freelist_get(struct fc_freelist *l, size_t size)
{
    struct fc_free_block *b = l->head;
    if (b != NULL) {
        l->head = b->next;
        l->count--;
        l->bytes -= fc_freelist_block_size(size);
        return b;
    }
    return malloc(fc_freelist_block_size(size));
}

/** Gives back a block of `size` bytes (the list's size): kept, or freed. */
static inline void fc_freelist_put(struct fc_freelist *l, void *p, size_t size)
{
    size = fc_freelist_block_size(size);
    if (l->count >= FC_FREELIST_MAX || l->bytes + size > FC_FREELIST_MAX_BYTES) {
        free(p);
        return;
    }
    struct fc_free_block *b = p;
    b->next = l->head;
    l->head = b;
    l->count++;
    l->bytes += size;
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
    l->bytes = 0;
}

#endif
