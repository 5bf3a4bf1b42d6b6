/*
 * Request memory: one block per request in progress, from the worker's free
 * list; see txn_state.h.
 */
#include "txn_state.h"

#include "txn.h"
#include "upstream.h"

#include <fulcrum/plugin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Output buffer room beyond the input buffer: forwarding headers, Connection, status line. */
#define OUT_EXTRA 2048

int fc_txn_worker_init(struct fc_worker *w)
{
    w->txns = calloc(1, sizeof(*w->txns));
    return w->txns != NULL ? 0 : FC_ENOMEM;
}

void fc_txn_worker_free(struct fc_worker *w)
{
    if (w->txns == NULL)
        return;
    fc_freelist_clear(&w->txns->free);
    fc_freelist_clear(&w->txns->free_bulk);
    free(w->txns);
    w->txns = NULL;
}

struct fc_txn *fc_txn_acquire(struct fc_client *c)
{
    struct fc_worker *w = c->w;
    uint32_t in_cap = w->gen->cfg->limits.max_header_bytes;
    uint32_t out_cap = (in_cap > FC_UPSTREAM_BUF_SIZE ? in_cap : FC_UPSTREAM_BUF_SIZE) + OUT_EXTRA;
    size_t size = sizeof(struct fc_txn) + in_cap + out_cap;
    struct fc_txn_cache *cache = w->txns;
    if (cache->size != size) {
        /* The limit changed with a new generation: drop blocks of the old size. */
        fc_freelist_clear(&cache->free);
        cache->size = size;
    }
    struct fc_txn *t = fc_freelist_get(&cache->free, size);
    if (t == NULL)
        return NULL;
    memset(t, 0, offsetof(struct fc_txn, req));
    t->c = c;
    t->in = (char *)(t + 1);
    t->out = t->in + in_cap;
    t->in_cap = in_cap;
    t->out_cap = out_cap;
    t->phase = FC_TXN_IDLE;
    t->keep_alive = 1;
    t->backend = -1;
    t->rl_pending.t = t;
    t->req.added = &t->added;
    fc_txn_request_parser_init(t);
    c->txn = t;
    return t;
}

void fc_txn_in_bulk(struct fc_txn *t)
{
    if (fc_txn_in_is_bulk(t) || t->in_off != t->in_len)
        return;
    char *bulk = fc_freelist_get(&t->c->w->txns->free_bulk, FC_TXN_BULK_SIZE);
    if (bulk == NULL)
        return; /* the request memory's own buffer does */
    t->in = bulk;
    t->in_cap = FC_TXN_BULK_SIZE;
    t->in_off = t->in_len = 0;
}

void fc_txn_in_small(struct fc_txn *t)
{
    if (!fc_txn_in_is_bulk(t) || t->in_off != t->in_len)
        return;
    fc_freelist_put(&t->c->w->txns->free_bulk, t->in, FC_TXN_BULK_SIZE);
    t->in = (char *)(t + 1);
    t->in_cap = (uint32_t)(t->out - t->in);
    t->in_off = t->in_len = 0;
}

void fc_txn_free(struct fc_client *c)
{
    struct fc_txn *t = c->txn;
    if (t == NULL)
        return;
    if (fc_txn_in_is_bulk(t))
        fc_freelist_put(&c->w->txns->free_bulk, t->in, FC_TXN_BULK_SIZE);
    size_t size = sizeof(*t) + (size_t)(t->out - (char *)(t + 1)) + t->out_cap;
    if (size == c->w->txns->size)
        fc_freelist_put(&c->w->txns->free, t, size);
    else
        free(t);
    c->txn = NULL;
}
