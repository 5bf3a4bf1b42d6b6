/*
 * Warnings about requests, summarised: what a request's failure logs goes
 * through fc_txn_warn() (see txn_state.h), so that an outage writes a few
 * lines a second, each saying how many like it were not written.
 */
#include "txn_state.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void fc_txn_warn(struct fc_txn *t, const char *what, const char *fmt, ...)
{
    struct fc_worker *w = t->c->w;
    struct fc_txn_cache *cache = w->txns;
    const void *pool = t->pool->conf;
    uint64_t now = uv_now(&w->loop);
    struct fc_txn_warning *slot = &cache->warnings[0];
    for (int i = 0; i < FC_TXN_WARNINGS; i++) {
        struct fc_txn_warning *x = &cache->warnings[i];
        if (x->pool == pool && x->what == what) {
            slot = x;
            break;
        }
        if (x->window < slot->window)
            slot = x; /* the stalest is taken over if this kind has none */
    }
    if (slot->pool != pool || slot->what != what)
        *slot = (struct fc_txn_warning){.pool = pool, .what = what, .window = now};
    if (now - slot->window >= 1000) {
        slot->window = now;
        slot->in_window = 0;
    }
    if (slot->in_window >= FC_TXN_WARNINGS_PER_SECOND) {
        slot->suppressed++;
        return;
    }
    slot->in_window++;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (slot->suppressed > 0)
        fc_log_warn("pool %s: %s; %llu more like it were not logged", t->pool->conf->name, msg,
                    (unsigned long long)slot->suppressed);
    else
        fc_log_warn("pool %s: %s", t->pool->conf->name, msg);
    slot->suppressed = 0;
}
