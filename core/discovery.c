/*
 * Service discovery on the main loop (see discovery.h).
 *
 * One c-ares channel, driven by the loop: c-ares tells through its socket
 * state callback which sockets to watch (one uv_poll_t each), and
 * ares_timeout() when to wake it for its retries (one timer). A target runs
 * one query at a time: an A/AAAA lookup (ares_getaddrinfo), or an SRV query
 * followed by one lookup per target name of the lowest priority value. The
 * query's callbacks count down `pending`; the last one settles the query:
 * it counts the result, swaps in the new set when it differs, and sets the
 * target's timer for the next query.
 *
 * The host hears of changes and of a prepare's end through a zero timer,
 * never from inside a c-ares callback: what it does then (build a
 * generation, commit a config) may drop targets, which must not happen
 * while c-ares is calling back into them.
 */
#include "discovery.h"

#include "log.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A streak of failures is told again at most this often. */
#define SUMMARY_MS 60000

struct sock_watch {
    uv_poll_t poll;
    ares_socket_t fd;
    struct fc_discovery *d;
    struct sock_watch *next;
};

struct pool_counts {
    char *pool;
    uint64_t results[FC_DNS_RESULTS];
    struct pool_counts *next;
};

struct target {
    struct fc_discovery *d;
    struct target *next;
    char *pool;
    char *name;
    uint8_t kind; /* enum fc_discover */
    uint16_t port;
    uint32_t interval_ms;
    uv_timer_t timer;
    int timer_open;
    uint32_t pending; /* callbacks still due for the query in progress */
    int gone;         /* no config in force has it: freed once pending is 0 and the timer closed */
    int fresh;        /* new with the prepare in progress, not answered yet */
    int held;         /* its query waits for the servers to change (set_servers()) */

    struct fc_discovered *set; /* the last good answer, sorted */
    uint32_t n;
    int have_set;

    /* The query in progress. */
    struct fc_discovered *got;
    uint32_t n_got;
    int status;         /* the SRV query's; the A/AAAA lookups' for FC_DISCOVER_HOST */
    int failed;         /* a lookup failed otherwise than "no such name" or "no record" */
    int nxdomain;       /* a lookup found no such name */
    int oversized;      /* more than FC_DISCOVERY_MAX_ADDRS */
    int64_t ttl_s;      /* the least TTL of the answers */
    uint32_t srv_hosts; /* SRV: target names looked up */

    /* Failures, for the log. */
    uint64_t streak;      /* failed queries in a row */
    uint64_t told_streak; /* the streak when last told */
    uint64_t told_ms;     /* when */
};

/* One A or AAAA lookup of a query: the port and weight its addresses take. */
struct lookup {
    struct target *t;
    uint16_t port;
    uint32_t weight;
};

struct fc_discovery {
    uv_loop_t *loop;
    struct fc_discovery_host host;
    ares_channel ch;
    char *servers; /* the channel's `resolvers` (NULL: the system's) */
    /*
     * Servers to change to (want_servers, NULL: the system's): c-ares 1.18
     * changes them only while no query runs, so new queries wait (held)
     * until those running have ended.
     */
    int servers_due;
    char *want_servers;
    uint32_t queries; /* targets with a query running */
    uint64_t version; /* grows with each set that changed (fc_discovery_version()) */
    uv_timer_t ares_timer;
    uv_timer_t notify;
    int changed;   /* a set changed: host.changed() on the notify timer */
    int ready_due; /* every fresh target answered: ready() on the notify timer */
    void (*ready)(void *arg);
    void *ready_arg;
    uint32_t waiting; /* fresh targets not answered yet */
    struct sock_watch *socks;
    struct target *targets;
    struct target *retired; /* gone, waiting for their query or timer to end (through ->next) */
    struct pool_counts *counts;
    uint32_t open; /* handles whose close callbacks are to come, the two timers included */
    int destroying;
};

/* ------------------------------------------------------------------------ */
/* The channel on the loop                                                   */
/* ------------------------------------------------------------------------ */

static void discovery_free_if_done(struct fc_discovery *d)
{
    if (!d->destroying || d->open > 0)
        return;
    for (struct pool_counts *c = d->counts, *next; c != NULL; c = next) {
        next = c->next;
        free(c->pool);
        free(c);
    }
    free(d->servers);
    free(d->want_servers);
    free(d);
}

static void handle_closed(uv_handle_t *h)
{
    struct fc_discovery *d = h->data;
    d->open--;
    discovery_free_if_done(d);
}

static void watch_closed(uv_handle_t *h)
{
    struct sock_watch *w = (struct sock_watch *)h;
    struct fc_discovery *d = w->d;
    free(w);
    d->open--;
    discovery_free_if_done(d);
}

static void ares_timer_cb(uv_timer_t *timer);

/* Wakes c-ares when its next retry or timeout is due. */
static void rearm(struct fc_discovery *d)
{
    if (d->destroying)
        return;
    struct timeval tv;
    if (ares_timeout(d->ch, NULL, &tv) == NULL) {
        uv_timer_stop(&d->ares_timer);
        return;
    }
    uint64_t ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
    uv_timer_start(&d->ares_timer, ares_timer_cb, ms, 0);
}

static void ares_timer_cb(uv_timer_t *timer)
{
    struct fc_discovery *d = timer->data;
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(d);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct sock_watch *w = (struct sock_watch *)h;
    struct fc_discovery *d = w->d;
    ares_socket_t fd = w->fd;
    /* An error on the socket: c-ares reads it and gives up on that server. */
    ares_socket_t r = status < 0 || (events & UV_READABLE) ? fd : ARES_SOCKET_BAD;
    ares_socket_t wr = status < 0 || (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD;
    ares_process_fd(d->ch, r, wr); /* may close w (sock_state_cb) */
    rearm(d);
}

/* c-ares opens, watches and closes its sockets: each gets a poll handle for its life. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct fc_discovery *d = data;
    struct sock_watch **link = &d->socks;
    while (*link != NULL && (*link)->fd != fd)
        link = &(*link)->next;
    struct sock_watch *w = *link;
    if (!readable && !writable) {
        if (w != NULL) {
            *link = w->next;
            uv_poll_stop(&w->poll);
            uv_close((uv_handle_t *)&w->poll, watch_closed);
        }
        return;
    }
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL || uv_poll_init_socket(d->loop, &w->poll, fd) != 0) {
            /* Unwatched, the query ends at its timeout. */
            free(w);
            fc_log_error("DNS: cannot watch a socket of c-ares: out of memory");
            return;
        }
        w->fd = fd;
        w->d = d;
        w->next = d->socks;
        d->socks = w;
        d->open++;
    }
    uv_poll_start(&w->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), poll_cb);
}

static void query_start(struct target *t);

/* Sets the channel's servers: want_servers, or those of /etc/resolv.conf. No query may run. */
static void apply_servers(struct fc_discovery *d)
{
    const char *servers = d->want_servers;
    int rc;
    if (servers != NULL) {
        rc = ares_set_servers_ports_csv(d->ch, servers);
    } else {
        /* c-ares reads the system's servers only at init: a channel lends them. */
        ares_channel sys;
        struct ares_addr_port_node *list = NULL;
        rc = ares_init(&sys);
        if (rc == ARES_SUCCESS) {
            rc = ares_get_servers_ports(sys, &list);
            if (rc == ARES_SUCCESS)
                rc = ares_set_servers_ports(d->ch, list);
            ares_free_data(list);
            ares_destroy(sys);
        }
    }
    if (rc != ARES_SUCCESS) {
        fc_log_error("DNS: cannot use the servers %s: %s: the previous ones stay",
                     servers ? servers : "of /etc/resolv.conf", ares_strerror(rc));
    } else {
        free(d->servers);
        d->servers = d->want_servers;
        d->want_servers = NULL;
    }
    free(d->want_servers); /* when they could not be used */
    d->want_servers = NULL;
    d->servers_due = 0;
    for (struct target *t = d->targets; t != NULL; t = t->next)
        if (t->held) {
            t->held = 0;
            query_start(t);
        }
}

/*
 * Asks for cfg's `resolvers` (NULL: the system's). Done at once when no
 * query runs, else once the running ones have ended (from the notify
 * timer), new queries waiting meanwhile.
 */
static int same_servers(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static void want_servers(struct fc_discovery *d, const char *servers)
{
    if (same_servers(servers, d->servers_due ? d->want_servers : d->servers))
        return;
    free(d->want_servers);
    d->want_servers = NULL;
    d->servers_due = 0;
    if (same_servers(servers, d->servers))
        return; /* back to what the channel has: nothing to change after all */
    if (servers != NULL && (d->want_servers = strdup(servers)) == NULL) {
        fc_log_error("DNS: out of memory: the servers stay %s", d->servers ? d->servers : "");
        return;
    }
    d->servers_due = 1;
    if (d->queries == 0)
        apply_servers(d);
}

/* ------------------------------------------------------------------------ */
/* Telling the host                                                          */
/* ------------------------------------------------------------------------ */

static void notify_cb(uv_timer_t *timer)
{
    struct fc_discovery *d = timer->data;
    if (d->servers_due && d->queries == 0)
        apply_servers(d);
    if (d->ready_due) {
        d->ready_due = 0;
        void (*ready)(void *) = d->ready;
        d->ready = NULL;
        if (ready != NULL)
            ready(d->ready_arg);
    }
    if (d->changed) {
        d->changed = 0;
        d->host.changed(d->host.arg);
    }
}

static void notify(struct fc_discovery *d)
{
    if (!d->destroying)
        uv_timer_start(&d->notify, notify_cb, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* Targets                                                                   */
/* ------------------------------------------------------------------------ */

static struct pool_counts *counts_of(const struct fc_discovery *d, const char *pool)
{
    for (struct pool_counts *c = d->counts; c != NULL; c = c->next)
        if (strcmp(c->pool, pool) == 0)
            return c;
    return NULL;
}

static void target_free(struct target *t)
{
    if (t->gone) {
        struct target **link = &t->d->retired;
        while (*link != NULL && *link != t)
            link = &(*link)->next;
        if (*link == t)
            *link = t->next;
    }
    free(t->set);
    free(t->got);
    free(t->pool);
    free(t->name);
    free(t);
}

static void target_timer_closed(uv_handle_t *h)
{
    struct target *t = h->data;
    struct fc_discovery *d = t->d;
    t->timer_open = 0;
    if (t->pending == 0)
        target_free(t);
    d->open--;
    discovery_free_if_done(d);
}

/* A target of the prepare in progress is done with (answered, or retired): the last one readies it.
 */
static void fresh_done(struct target *t)
{
    struct fc_discovery *d = t->d;
    if (t->fresh && d->waiting > 0 && --d->waiting == 0) {
        d->ready_due = 1;
        notify(d);
    }
    t->fresh = 0;
}

/* Takes t off the list; it is freed once its query and its timer are done. */
static void target_retire(struct target *t)
{
    struct fc_discovery *d = t->d;
    struct target **link = &d->targets;
    while (*link != t)
        link = &(*link)->next;
    *link = t->next;
    t->gone = 1;
    t->next = d->retired;
    d->retired = t;
    t->held = 0;
    fresh_done(t);
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, target_timer_closed);
}

/* The text of a target in the log: "web.test:8080" or "srv:_http._tcp.api.test". */
static void target_label(const struct target *t, char *out, size_t cap)
{
    if (t->kind == FC_DISCOVER_SRV)
        snprintf(out, cap, "srv:%s", t->name);
    else
        snprintf(out, cap, "%s:%u", t->name, t->port);
}

static int same_key(const struct target *t, const char *pool, const struct fc_conf_backend *b)
{
    return t->kind == b->discover && t->port == (b->discover == FC_DISCOVER_HOST ? b->port : 0) &&
           strcmp(t->name, b->dns_name) == 0 && strcmp(t->pool, pool) == 0;
}

static struct target *target_find(const struct fc_discovery *d, const char *pool,
                                  const struct fc_conf_backend *b)
{
    for (struct target *t = d->targets; t != NULL; t = t->next)
        if (same_key(t, pool, b))
            return t;
    return NULL;
}

static void query_timer_cb(uv_timer_t *timer)
{
    query_start(timer->data);
}

/* Addresses compare as bytes: family, address, port. */
static int addr_cmp(const void *a, const void *b)
{
    const struct fc_discovered *x = a, *y = b;
    if (x->addr.ss_family != y->addr.ss_family)
        return x->addr.ss_family < y->addr.ss_family ? -1 : 1;
    if (x->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *p = (const void *)&x->addr, *q = (const void *)&y->addr;
        int c = memcmp(&p->sin6_addr, &q->sin6_addr, sizeof(p->sin6_addr));
        return c != 0 ? c : (int)ntohs(p->sin6_port) - (int)ntohs(q->sin6_port);
    }
    const struct sockaddr_in *p = (const void *)&x->addr, *q = (const void *)&y->addr;
    int c = memcmp(&p->sin_addr, &q->sin_addr, sizeof(p->sin_addr));
    return c != 0 ? c : (int)ntohs(p->sin_port) - (int)ntohs(q->sin_port);
}

static int same_set(const struct fc_discovered *a, uint32_t na, const struct fc_discovered *b,
                    uint32_t nb)
{
    if (na != nb)
        return 0;
    for (uint32_t i = 0; i < na; i++)
        if (addr_cmp(&a[i], &b[i]) != 0 || a[i].weight != b[i].weight)
            return 0;
    return 1;
}

/* The set in the log: "127.0.0.1:9001, [::1]:9001" (cut short past cap). */
static void set_text(const struct fc_discovered *set, uint32_t n, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < n && used + 64 < cap; i++) {
        char a[INET6_ADDRSTRLEN + 8];
        fc_config_format_address(&set[i].addr, a, sizeof(a));
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? ", " : "", a);
    }
    if (n > 0 && used + 64 >= cap)
        snprintf(out + used, cap - used, ", ...");
}

/* A good answer: a changed set replaces the last one and the host is told. */
static void settle_ok(struct target *t, const char *label)
{
    struct fc_discovery *d = t->d;
    qsort(t->got, t->n_got, sizeof(*t->got), addr_cmp);
    if (t->streak > 0)
        fc_log_info("pool %s: %s resolves again after %llu failed queries", t->pool, label,
                    (unsigned long long)t->streak);
    t->streak = 0;
    t->told_streak = 0;
    if (t->have_set && same_set(t->set, t->n, t->got, t->n_got)) {
        free(t->got);
    } else {
        char text[512];
        set_text(t->got, t->n_got, text, sizeof(text));
        uint32_t kept = 0;
        for (uint32_t i = 0; i < t->n_got; i++)
            kept +=
                t->have_set && bsearch(&t->got[i], t->set, t->n, sizeof(*t->set), addr_cmp) != NULL;
        fc_log_info("pool %s: %s: %u address%s (%u new, %u gone): %s", t->pool, label, t->n_got,
                    t->n_got == 1 ? "" : "es", t->n_got - kept, t->n - kept, text);
        free(t->set);
        t->set = t->got;
        t->n = t->n_got;
        t->have_set = 1;
        d->changed = 1;
        d->version++;
        notify(d);
    }
    t->got = NULL;
    t->n_got = 0;
}

/* A failed query: the last good set stays; the log hears of the streak, not of each query. */
static void settle_failed(struct target *t, const char *label, const char *reason)
{
    uint64_t now = uv_now(t->d->loop);
    t->streak++;
    if (t->streak == 1) {
        if (t->have_set)
            fc_log_warn("pool %s: %s: cannot resolve (%s): keeping its last %u address%s", t->pool,
                        label, reason, t->n, t->n == 1 ? "" : "es");
        else
            fc_log_warn("pool %s: %s: cannot resolve (%s): the pool has none of its backends "
                        "until DNS answers (asking every %u ms)",
                        t->pool, label, reason, t->interval_ms);
        t->told_ms = now;
        t->told_streak = 1;
    } else if (now - t->told_ms >= SUMMARY_MS) {
        fc_log_warn("pool %s: %s: still cannot resolve: %llu more failed queries (last: %s)",
                    t->pool, label, (unsigned long long)(t->streak - t->told_streak), reason);
        t->told_ms = now;
        t->told_streak = t->streak;
    }
    free(t->got);
    t->got = NULL;
    t->n_got = 0;
}

/* The query's last callback came: its result is counted and acted on, the next one set. */
static void query_settle(struct target *t)
{
    struct fc_discovery *d = t->d;
    d->queries--;
    if (d->servers_due && d->queries == 0)
        notify(d); /* the servers change from the notify timer, out of c-ares's callbacks */
    if (t->gone) {
        if (!t->timer_open)
            target_free(t);
        return;
    }
    char label[300];
    target_label(t, label, sizeof(label));
    if (t->kind == FC_DISCOVER_HOST)
        t->status = t->failed      ? t->failed
                    : t->n_got > 0 ? ARES_SUCCESS
                    : t->nxdomain  ? ARES_ENOTFOUND
                                   : ARES_ENODATA;
    else if (t->status == ARES_SUCCESS && t->failed != 0)
        t->status = t->failed; /* a target's lookup failed: its addresses are not known */
    enum fc_dns_result result = fc_dns_result_of(t->status);
    char reason[128];
    snprintf(reason, sizeof(reason), "%s", ares_strerror(t->status));
    if (result == FC_DNS_OK && t->oversized) {
        result = FC_DNS_OVERSIZED;
        snprintf(reason, sizeof(reason), "an answer of more than %u addresses",
                 FC_DISCOVERY_MAX_ADDRS);
    } else if (result == FC_DNS_OK && t->n_got == 0) {
        result = FC_DNS_EMPTY;
        snprintf(reason, sizeof(reason), "%s",
                 t->kind == FC_DISCOVER_SRV && t->srv_hosts > 0
                     ? "no target of its SRV records resolves"
                     : "no address in the answer");
    }
    struct pool_counts *c = counts_of(d, t->pool);
    if (c != NULL)
        c->results[result]++;
    if (result == FC_DNS_OK)
        settle_ok(t, label);
    else
        settle_failed(t, label, reason);

    uint64_t next = t->interval_ms;
    if (result == FC_DNS_OK && t->ttl_s < INT_MAX) {
        uint64_t ttl_ms = (uint64_t)(t->ttl_s > 0 ? t->ttl_s : 0) * 1000;
        if (ttl_ms < FC_DISCOVERY_MIN_TTL_MS)
            ttl_ms = FC_DISCOVERY_MIN_TTL_MS;
        if (ttl_ms < next)
            next = ttl_ms;
    }
    uv_timer_start(&t->timer, query_timer_cb, next, 0);
    fresh_done(t);
}

/*
 * Adds one address to the query's set. One given twice (two SRV records
 * of one target and port) is one backend, with the larger weight, so that
 * the order of the records cannot change the set.
 */
static void got_add(struct target *t, const struct ares_addrinfo_node *n, uint16_t port,
                    uint32_t weight)
{
    if ((size_t)n->ai_addrlen > sizeof(struct sockaddr_storage) ||
        (n->ai_family != AF_INET && n->ai_family != AF_INET6))
        return;
    struct fc_discovered a = {.len = (socklen_t)n->ai_addrlen, .weight = weight};
    memcpy(&a.addr, n->ai_addr, n->ai_addrlen);
    if (a.addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a.addr)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&a.addr)->sin_port = htons(port);
    if (n->ai_ttl < t->ttl_s)
        t->ttl_s = n->ai_ttl;
    for (uint32_t i = 0; i < t->n_got; i++)
        if (addr_cmp(&t->got[i], &a) == 0) {
            if (weight > t->got[i].weight)
                t->got[i].weight = weight;
            return;
        }
    if (t->n_got == FC_DISCOVERY_MAX_ADDRS) {
        t->oversized = 1;
        return;
    }
    if (t->got == NULL && (t->got = malloc(sizeof(*t->got) * FC_DISCOVERY_MAX_ADDRS)) == NULL) {
        t->failed = ARES_ENOMEM;
        return;
    }
    t->got[t->n_got++] = a;
}

/*
 * One family's answer for one name. "No such name" and "no record of that
 * family" are answers; any other failure (a timeout, SERVFAIL, a malformed
 * answer) fails the whole query, so that a lossy network cannot take a
 * family or a target out of the set for a round: the last good set stays.
 */
static void lookup_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct lookup *l = arg;
    struct target *t = l->t;
    uint16_t port = l->port;
    uint32_t weight = l->weight;
    free(l);
    (void)timeouts;
    /*
     * The channel is being destroyed (ARES_EDESTRUCTION, or an answer that
     * c-ares completes on the way): the target is freed with it, not here.
     */
    if (status == ARES_EDESTRUCTION || t->d->destroying) {
        if (res != NULL)
            ares_freeaddrinfo(res);
        return;
    }
    if (status == ARES_ENOTFOUND || status == ARES_ENONAME)
        t->nxdomain = 1;
    else if (status != ARES_SUCCESS && status != ARES_ENODATA && t->failed == 0)
        t->failed = status;
    for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n != NULL; n = n->ai_next)
        got_add(t, n, port, weight);
    if (res != NULL)
        ares_freeaddrinfo(res);
    if (--t->pending == 0)
        query_settle(t);
}

/* Looks up `name`'s A and AAAA records apart, so that each one's failure is seen. */
static void lookup_start(struct target *t, const char *name, uint16_t port, uint32_t weight)
{
    static const int families[] = {AF_INET, AF_INET6};
    for (int f = 0; f < 2; f++) {
        struct lookup *l = malloc(sizeof(*l));
        if (l == NULL) {
            t->failed = ARES_ENOMEM;
            return;
        }
        *l = (struct lookup){.t = t, .port = port, .weight = weight};
        struct ares_addrinfo_hints hints = {.ai_family = families[f], .ai_socktype = SOCK_STREAM};
        t->pending++;
        ares_getaddrinfo(t->d->ch, name, NULL, &hints, lookup_done, l); /* may call back at once */
    }
}

/*
 * SRV weights (0..65535) as backend weights (1..1000): scaled down when the
 * largest is over 1000, and 0 (RFC 2782: "a very small chance") as 1.
 */
static uint32_t srv_weight(unsigned w, unsigned max)
{
    uint64_t v = max > 1000 ? (uint64_t)w * 1000 / max : w;
    return v < 1 ? 1 : (uint32_t)v;
}

static void srv_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct target *t = arg;
    (void)timeouts;
    if (status == ARES_EDESTRUCTION || t->d->destroying)
        return;
    struct ares_srv_reply *srv = NULL;
    if (status == ARES_SUCCESS)
        status = ares_parse_srv_reply(abuf, alen, &srv);
    t->status = status;
    if (status == ARES_SUCCESS && !t->gone) {
        int64_t ttl = fc_dns_srv_ttl(abuf, alen);
        if (ttl >= 0 && ttl < t->ttl_s)
            t->ttl_s = ttl;
        unsigned lowest = UINT_MAX, max_weight = 0, records = 0;
        for (const struct ares_srv_reply *r = srv; r != NULL; r = r->next) {
            records++;
            if (r->priority < lowest)
                lowest = r->priority;
        }
        for (const struct ares_srv_reply *r = srv; r != NULL; r = r->next)
            if (r->priority == lowest && r->weight > max_weight)
                max_weight = r->weight;
        if (records > FC_DISCOVERY_MAX_ADDRS)
            t->oversized = 1;
        /* "." as the target: the service is decidedly not available (RFC 2782). */
        for (const struct ares_srv_reply *r = srv; r != NULL && !t->oversized; r = r->next)
            if (r->priority == lowest && strcmp(r->host, ".") != 0 && r->host[0] != '\0') {
                t->srv_hosts++;
                lookup_start(t, r->host, r->port, srv_weight(r->weight, max_weight));
            }
    }
    if (srv != NULL)
        ares_free_data(srv);
    if (--t->pending == 0)
        query_settle(t);
}

static void query_start(struct target *t)
{
    struct fc_discovery *d = t->d;
    if (t->gone || t->pending > 0 || d->destroying)
        return;
    if (d->servers_due) {
        t->held = 1; /* started once the servers have changed */
        return;
    }
    t->status = ARES_SUCCESS;
    t->failed = 0;
    t->nxdomain = 0;
    t->oversized = 0;
    t->ttl_s = INT_MAX;
    t->srv_hosts = 0;
    t->n_got = 0;
    d->queries++;
    t->pending = 1; /* this call's own, so that no early callback settles the query */
    if (t->kind == FC_DISCOVER_SRV) {
        t->pending++;
        ares_query(d->ch, t->name, ns_c_in, ns_t_srv, srv_done, t);
    } else {
        lookup_start(t, t->name, t->port, 0);
    }
    rearm(d);
    if (--t->pending == 0)
        query_settle(t);
}

/* ------------------------------------------------------------------------ */
/* The host's calls                                                          */
/* ------------------------------------------------------------------------ */

struct fc_discovery *fc_discovery_create(uv_loop_t *loop, const struct fc_discovery_host *host)
{
    struct fc_discovery *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->loop = loop;
    d->host = *host;
    struct ares_options opts = {.sock_state_cb = sock_state_cb, .sock_state_cb_data = d};
    const char *why = NULL;
    if (fc_dns_channel(&d->ch, NULL, ARES_OPT_SOCK_STATE_CB, &opts, &why) != 0) {
        fc_log_error("DNS: cannot start c-ares: %s", why);
        free(d);
        return NULL;
    }
    uv_timer_init(loop, &d->ares_timer);
    uv_timer_init(loop, &d->notify);
    d->ares_timer.data = d;
    d->notify.data = d;
    d->open = 2;
    return d;
}

int fc_discovery_prepare(struct fc_discovery *d, const struct fc_config *cfg,
                         void (*ready)(void *arg), void *arg)
{
    want_servers(d, cfg->resolvers);
    /* A prepare that did not end (its reload was dropped) leaves nothing waiting. */
    for (struct target *t = d->targets; t != NULL; t = t->next)
        t->fresh = 0;
    d->waiting = 0;
    d->ready = ready;
    d->ready_arg = arg;
    d->ready_due = 0;
    for (uint32_t p = 0; p < cfg->n_pools; p++) {
        const struct fc_conf_pool *pool = &cfg->pools[p];
        if (pool->n_discover > 0 && counts_of(d, pool->name) == NULL) {
            struct pool_counts *c = calloc(1, sizeof(*c));
            if (c == NULL || (c->pool = strdup(pool->name)) == NULL) {
                free(c);
                fc_log_error("pool %s: DNS: out of memory", pool->name);
                continue;
            }
            c->next = d->counts;
            d->counts = c;
        }
        for (uint32_t b = 0; b < pool->n_backends; b++) {
            const struct fc_conf_backend *cb = &pool->backends[b];
            if (cb->discover == FC_DISCOVER_NONE)
                continue;
            struct target *t = target_find(d, pool->name, cb);
            if (t != NULL)
                continue; /* its interval follows cfg once cfg is in force (commit) */
            t = calloc(1, sizeof(*t));
            if (t == NULL || (t->pool = strdup(pool->name)) == NULL ||
                (t->name = strdup(cb->dns_name)) == NULL) {
                if (t != NULL) {
                    free(t->pool);
                    free(t);
                }
                fc_log_error("pool %s: %s: out of memory: not resolved", pool->name, cb->address);
                continue;
            }
            t->d = d;
            t->kind = cb->discover;
            t->port = cb->discover == FC_DISCOVER_HOST ? cb->port : 0;
            t->interval_ms = pool->resolve_interval_ms;
            uv_timer_init(d->loop, &t->timer);
            t->timer.data = t;
            t->timer_open = 1;
            d->open++;
            t->fresh = 1;
            d->waiting++;
            t->next = d->targets;
            d->targets = t;
        }
    }
    if (d->waiting == 0) {
        d->ready = NULL;
        return 1;
    }
    /* Queried once all are listed: an answer at once must not end the wait early. */
    for (struct target *t = d->targets, *next; t != NULL; t = next) {
        next = t->next;
        if (t->fresh)
            query_start(t);
    }
    return 0;
}

void fc_discovery_commit(struct fc_discovery *d, const struct fc_config *cfg)
{
    want_servers(d, cfg->resolvers); /* cfg's again, after a reload that failed */
    for (struct target *t = d->targets, *next; t != NULL; t = next) {
        next = t->next;
        const struct fc_conf_pool *kept = NULL;
        for (uint32_t p = 0; p < cfg->n_pools && kept == NULL; p++) {
            const struct fc_conf_pool *pool = &cfg->pools[p];
            for (uint32_t b = 0; b < pool->n_backends && kept == NULL; b++)
                if (pool->backends[b].discover != FC_DISCOVER_NONE &&
                    same_key(t, pool->name, &pool->backends[b]))
                    kept = pool;
        }
        if (kept == NULL) {
            target_retire(t);
            continue;
        }
        t->interval_ms = kept->resolve_interval_ms;
        /* A shorter interval is in force now, not once the longer one has run out. */
        if (uv_is_active((uv_handle_t *)&t->timer) &&
            uv_timer_get_due_in(&t->timer) > t->interval_ms)
            uv_timer_start(&t->timer, query_timer_cb, t->interval_ms, 0);
    }
    struct pool_counts **link = &d->counts;
    while (*link != NULL) {
        struct pool_counts *c = *link;
        int kept = 0;
        for (uint32_t p = 0; p < cfg->n_pools; p++)
            kept |= cfg->pools[p].n_discover > 0 && strcmp(cfg->pools[p].name, c->pool) == 0;
        if (kept) {
            link = &c->next;
        } else {
            *link = c->next;
            free(c->pool);
            free(c);
        }
    }
}

uint64_t fc_discovery_version(const struct fc_discovery *d)
{
    return d != NULL ? d->version : 0;
}

const struct fc_discovered *fc_discovery_find(const struct fc_discovery *d, const char *pool,
                                              const struct fc_conf_backend *b, uint32_t *n)
{
    *n = 0;
    const struct target *t = d != NULL ? target_find(d, pool, b) : NULL;
    if (t == NULL || !t->have_set)
        return NULL;
    *n = t->n;
    return t->set;
}

void fc_discovery_counts(const struct fc_discovery *d, const char *pool,
                         uint64_t out[FC_DNS_RESULTS])
{
    const struct pool_counts *c = d != NULL ? counts_of(d, pool) : NULL;
    for (int i = 0; i < FC_DNS_RESULTS; i++)
        out[i] = c != NULL ? c->results[i] : 0;
}

void fc_discovery_destroy(struct fc_discovery *d)
{
    if (d == NULL)
        return;
    d->destroying = 1;
    /* Every query still running calls back with ARES_EDESTRUCTION, touching no target. */
    ares_destroy(d->ch);
    for (struct target *t = d->targets, *next; t != NULL; t = next) {
        next = t->next;
        t->gone = 1;
        t->pending = 0;
        uv_timer_stop(&t->timer);
        uv_close((uv_handle_t *)&t->timer, target_timer_closed);
    }
    d->targets = NULL;
    /* Those retired with a query running: the query ended with the channel. */
    for (struct target *t = d->retired, *next; t != NULL; t = next) {
        next = t->next;
        t->pending = 0;
        if (!t->timer_open) {
            t->gone = 0; /* not to be looked for on the list that goes now */
            target_free(t);
        }
    }
    d->retired = NULL;
    /* c-ares closed its sockets through sock_state_cb; any watch left goes now. */
    for (struct sock_watch *w = d->socks, *next; w != NULL; w = next) {
        next = w->next;
        uv_poll_stop(&w->poll);
        uv_close((uv_handle_t *)&w->poll, watch_closed);
    }
    d->socks = NULL;
    uv_close((uv_handle_t *)&d->ares_timer, handle_closed);
    uv_close((uv_handle_t *)&d->notify, handle_closed);
}
