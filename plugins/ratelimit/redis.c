/*
 * redis: the token bucket of `token_bucket` (`rate` tokens per second, at
 * most `burst` of them saved up), kept in one Redis so that every fulcrum
 * process that points at it shares one limit per key.
 *
 * The bucket is stored the way the generic cell rate algorithm (GCRA, from
 * ATM networks; ITU-T I.371) stores it: one number per key, its theoretical
 * arrival time (TAT), the moment at which the bucket would be full again.
 * With the emission interval T = 1/rate, a request arriving at `now` is let
 * through when max(TAT, now) + T - now <= burst * T, i.e. when at least one
 * token is left, and the TAT then moves to max(TAT, now) + T; otherwise it is
 * denied, and could pass max(TAT, now) + T - burst * T - now later. So a key
 * new to the limiter (or idle long enough) has a TAT in the past and may send
 * `burst` requests at once, then one every T. Compared with storing a token
 * count and a refill timestamp, one number means one GET and one SET, and
 * the key can expire exactly when the bucket is full again (max(TAT, now) +
 * T - now from the last pass), which is when it carries no information.
 *
 * The whole decision runs in Redis as one Lua script (atomic, so concurrent
 * requests from any number of fulcrum processes cannot both take the last
 * token), on Redis's own clock (TIME inside the script), so that processes
 * whose clocks disagree still agree on the limit. The script is sent with
 * SCRIPT LOAD when a connection opens, and checks call it by its SHA1 with
 * EVALSHA; until the first SCRIPT LOAD has answered, and whenever Redis
 * answers NOSCRIPT (its script cache was flushed), a check sends the script
 * itself with EVAL, which also puts it back in the cache.
 *
 * Threads and connections. check() runs on every worker thread, so each
 * worker has its own slot in an array indexed by the worker number, touched
 * only by that worker's thread: one hiredis asynchronous connection attached
 * to the worker's libuv loop, a deadline timer, a reconnect timer, the
 * list of its checks waiting for Redis and, for a name, a c-ares channel.
 * Nothing is shared between workers but the options, which are read-only
 * after create(), and one atomic flag (see Names).
 *
 * Failures. A check waits for Redis at most `timeout_ms`; past it, or when
 * Redis answers with an error or cannot be reached, the request gets the
 * `on_error` verdict (allow by default: a rate limiter that is down should
 * not take the site down with it). A check that runs out of time means the
 * connection is stalled (Redis answers in order, so every later check would
 * wait longer still): the connection is dropped, which ends all of its
 * checks with the on_error verdict at once and means no late reply can ever
 * be mistaken for the answer to another check. A dropped or refused
 * connection is retried after a backoff that doubles from 100 ms to 2 s and
 * returns to 100 ms after the first good answer; meanwhile checks get the
 * on_error verdict on the spot, without waiting. Nothing ever blocks a
 * worker: connecting, writing and reading all go through the loop, and so
 * does looking up a host name.
 *
 * Names. An IP address, or a Unix socket, is used as it is. A host name is
 * looked up with c-ares (DNS, and /etc/hosts first) on the loop of the
 * worker that connects, each time it connects or reconnects, so that a Redis
 * whose address changes in DNS is followed at the next reconnect; hiredis
 * only ever gets a numeric address, since it would call the blocking
 * getaddrinfo() itself. Each worker has one c-ares channel, from its first
 * lookup to worker_stop(): uv_poll handles watch the channel's sockets and a
 * timer its timeouts (1 s a try, 2 tries). The name's addresses are tried in
 * the order c-ares sorts them until one connects. While the name is being
 * looked up, or could not be, the worker has no connection: checks get the
 * on_error verdict at once and the lookup is retried after the reconnect
 * backoff, as when Redis refuses. A failing name is logged once, with
 * c-ares's reason, and again only after it has resolved in between.
 *
 * Options, read and checked at create():
 *   rate        required   tokens per second, a number > 0 (at most 1e6);
 *   burst       ceil(rate) the bucket's size, an integer >= 1; burst / rate,
 *                          the time to refill it, at most 1e9 s;
 *   address     "127.0.0.1:6379"   "host:port", "[v6addr]:port", or
 *                          "unix:/path/to/redis.sock"; host is an IP
 *                          address or a name, looked up at each connect
 *                          (see Names above);
 *   key_prefix  "fulcrum:rl:POOL:" prepended to each key in Redis; the
 *                          default names the pool, so that pools sharing a
 *                          Redis keep apart; give two pools the same prefix
 *                          to make them share one limit;
 *   timeout_ms  50         how long a check may wait for Redis (1 to 60000);
 *   username, password     AUTH when the connection opens (password alone for
 *                          requirepass; both for a Redis 6 ACL user);
 *   db          0          SELECT this database when it is not 0;
 *   on_error    "allow"    verdict when Redis is unreachable, errs or is
 *                          slower than timeout_ms: "allow" or "deny" (a 429
 *                          with Retry-After: 1).
 */
#include <fulcrum/plugin.h>
#include <uv.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <ares.h>

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define DEFAULT_ADDRESS "127.0.0.1:6379"
#define DEFAULT_PORT 6379
#define DEFAULT_PREFIX "fulcrum:rl:"
#define DEFAULT_TIMEOUT_MS 50
#define TIMEOUT_MS_MAX 60000
/*
 * At most one token per microsecond: the script's unit. (Lua numbers are
 * doubles; a TAT near today's time in microseconds resolves 0.25 us, so a
 * finer interval would be lost in rounding.) As token_bucket's limits.
 */
#define RATE_MAX 1e6
#define REFILL_LIMIT_S 1e9
#define PREFIX_MAX 512
/* Reconnect backoff: doubles from the first to the last value. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* What a client denied because Redis failed is told to wait. */
#define ERROR_RETRY_AFTER_MS 1000
/* Free check records kept per worker for reuse, with key buffers up to this size. */
#define SPARE_CHECKS_MAX 1024
#define SPARE_KEY_MAX 256
/* At most one warning about failing replies per worker and this period. */
#define WARN_PERIOD_MS 10000
/* A lookup of a name waits this long for the name server per try, and gives up after so many. */
#define DNS_TIMEOUT_MS 1000
#define DNS_TRIES 2
/* The addresses of a name kept from a lookup, to try one after the other. */
#define ADDRS_MAX 4

/*
 * The GCRA decision. KEYS[1]: the key; ARGV[1]: the emission interval T in
 * microseconds (1e6 / rate); ARGV[2]: burst * T, how far the TAT may run
 * ahead of now. Returns {1, 0} when the request passes, {0, retry_after_ms}
 * when it is denied. Times are microseconds from Redis's TIME, held in Lua
 * numbers (doubles: exact to the microsecond for centuries), and the TAT is
 * stored with 17 significant digits so that reading it back loses nothing.
 * redis.replicate_commands() lets a script that read TIME write on Redis
 * 3.2 to 4 (replicating its effects, not the script); since Redis 5 that is
 * the default and the call does nothing.
 */
static const char gcra_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local tolerance = tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]))\n"
    "if tat == nil or tat < now then tat = now end\n"
    "if tat > now + tolerance then tat = now + tolerance end\n"
    "local new_tat = tat + interval\n"
    "local late = new_tat - now - tolerance\n"
    "if late > 0 then return {0, math.ceil(late / 1000)} end\n"
    "redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX',\n"
    "           math.max(1, math.ceil((new_tat - now) / 1000)))\n"
    "return {1, 0}\n";

struct redis_limiter;
struct redis_worker;
struct dns_poll;

/* One check waiting for Redis. */
struct redis_check {
    struct redis_check *prev, *next; /* in the worker's waiting list, by deadline */
    struct redis_worker *w;
    struct fc_ratelimit_pending *pending;
    uint64_t deadline; /* loop time (ms) past which the connection counts as stalled */
    char *key;         /* key_prefix + the request's key; not NUL-terminated */
    size_t key_len, key_cap;
};

/*
 * A worker's libuv handles, apart from the worker's slot: they are freed by
 * their own close callback, which may run after destroy() freed the slots.
 */
struct redis_handles {
    uv_timer_t deadline; /* due at the first waiting check's deadline */
    uv_timer_t retry;    /* reconnects after the backoff */
    uv_timer_t dns;      /* due at the c-ares channel's next timeout */
    int open;            /* handles whose close callback has not run */
};

/* One worker's state; only that worker's thread touches it. */
struct redis_worker {
    struct redis_limiter *rl;
    uint32_t index;
    int started; /* between worker_start() (or the first check()) and worker_stop() */
    int stopped; /* worker_stop() came, and no worker_start() since */
    uv_loop_t *loop;
    struct redis_handles *handles;
    redisAsyncContext *ac; /* NULL while disconnected (waiting to retry) */
    int healthy;           /* the last answer was good; cleared by a failure */
    int outage_logged;     /* an outage was reported; its end will be too */
    uint32_t backoff_ms;   /* the next reconnect delay */
    uint64_t last_warn_ms; /* loop time of the last throttled warning */
    int warned;
    char sha[41];                    /* the script's SHA1 once SCRIPT LOAD answered, else "" */
    struct redis_check *head, *tail; /* checks waiting for Redis, by deadline */
    struct redis_check *spare;       /* free records, through ->next */
    uint32_t n_spare;
    /* Looking up a name (rl->name); all unused for an IP address or a Unix socket. */
    ares_channel channel;   /* from the first lookup to worker_stop(); NULL outside */
    struct dns_poll *polls; /* the channel's sockets, watched on the loop */
    int resolving;          /* a lookup is in flight: on_resolved() will follow */
    char addrs[ADDRS_MAX][INET6_ADDRSTRLEN]; /* the last lookup's addresses, numeric */
    uint32_t n_addrs;
    uint32_t next_addr;         /* in addrs, the one to try when the current connect fails */
} __attribute__((aligned(64))); /* one cache line apart: workers write their own slots */

struct redis_limiter {
    const struct fc_host *host;
    char interval[32];  /* ARGV[1]: 1e6 / rate, in microseconds */
    char tolerance[32]; /* ARGV[2]: burst * interval */
    const char *address;
    const char *username; /* AUTH: NULL, or the ACL user (Redis 6+) */
    const char *password; /* AUTH: NULL for none */
    int64_t db;           /* SELECT when not 0 */
    char db_text[24];
    char ip[INET6_ADDRSTRLEN]; /* an IP address given as such, numeric; "" for a name */
    char name[256];            /* a host name, looked up by each worker; "" for an address */
    int port;
    const char *unix_path; /* non-NULL for "unix:/path" */
    int ares_ready;        /* ares_library_init() succeeded: destroy() cleans up */
    /*
     * Whether the name's last lookup (by any worker) failed and was logged:
     * the one thing workers share, so that a failing name is reported once
     * for the limiter, not once per worker and retry.
     */
    atomic_int dns_failing;
    const char *prefix;
    size_t prefix_len;
    char *default_prefix; /* owned: DEFAULT_PREFIX + pool name + ":" */
    uint32_t timeout_ms;
    int error_verdict;
    uint64_t error_retry_ms;
    uint32_t n_workers;
    struct redis_worker *workers; /* n_workers slots */
};

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Splits "host:port", "[v6]:port" or "host" (port 6379) and checks their
 * syntax. An IP address goes to rl->ip, numeric; anything else is a name,
 * for rl->name, which each worker looks up as it connects (see Names): no
 * lookup here, and a name that does not resolve is no configuration error
 * but a Redis that cannot be reached yet. Returns 0 or logs.
 */
static int parse_address(struct redis_limiter *rl, const char *text)
{
    const struct fc_host *host = rl->host;
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        if (path[0] != '/' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            host->config_error(host, "address",
                               "expected \"unix:\" followed by an absolute path shorter than "
                               "108 bytes (got \"%s\")",
                               text);
            return FC_EINVAL;
        }
        rl->unix_path = path;
        return 0;
    }

    char name[256];
    const char *port_text = NULL;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL || (size_t)(end - text - 1) >= sizeof(name) ||
            (end[1] != '\0' && end[1] != ':'))
            goto bad;
        memcpy(name, text + 1, (size_t)(end - text - 1));
        name[end - text - 1] = '\0';
        port_text = end[1] == ':' ? end + 2 : NULL;
    } else {
        const char *colon = strrchr(text, ':');
        size_t len = colon != NULL ? (size_t)(colon - text) : strlen(text);
        if (len >= sizeof(name) || (colon != NULL && strchr(text, ':') != colon))
            goto bad; /* a bare IPv6 address needs brackets */
        memcpy(name, text, len);
        name[len] = '\0';
        port_text = colon != NULL ? colon + 1 : NULL;
    }
    if (name[0] == '\0')
        goto bad;
    rl->port = DEFAULT_PORT;
    if (port_text != NULL) {
        char *end;
        long port = strtol(port_text, &end, 10);
        if (port_text[0] < '0' || port_text[0] > '9' || *end != '\0' || port < 1 || port > 65535)
            goto bad;
        rl->port = (int)port;
    }

    struct in6_addr addr; /* big enough for either family */
    int family = inet_pton(AF_INET, name, &addr) == 1    ? AF_INET
                 : inet_pton(AF_INET6, name, &addr) == 1 ? AF_INET6
                                                         : 0;
    if (family != 0)
        inet_ntop(family, &addr, rl->ip, sizeof(rl->ip)); /* cannot fail: it just parsed */
    else
        memcpy(rl->name, name, strlen(name) + 1);
    return 0;

bad:
    host->config_error(host, "address",
                       "expected \"host:port\", \"[IPv6]:port\" or \"unix:/path\" (got \"%s\")",
                       text);
    return FC_EINVAL;
}

static void redis_destroy(void *state)
{
    struct redis_limiter *rl = state;
    if (rl == NULL)
        return;
    for (uint32_t i = 0; i < rl->n_workers; i++) {
        struct redis_worker *w = &rl->workers[i];
        while (w->spare != NULL) {
            struct redis_check *c = w->spare;
            w->spare = c->next;
            free(c->key);
            free(c);
        }
    }
    free(rl->workers);
    free(rl->default_prefix);
    if (rl->ares_ready)
        ares_library_cleanup(); /* reference counted: the last one cleans up */
    free(rl);
}

static int redis_create(const struct fc_host *host, void **state)
{
    double rate = 0;
    int64_t burst = 0;
    int64_t timeout_ms = DEFAULT_TIMEOUT_MS;
    const char *address = DEFAULT_ADDRESS;
    const char *prefix = NULL; /* default: DEFAULT_PREFIX + pool name + ":" */
    const char *on_error = "allow";
    const char *username = NULL, *password = NULL;
    int64_t db = 0;
    int rc = 0;

    /* Every getter runs, so that each wrong key is reported, not only the first. */
    int rate_rc = host->config_double(host, "rate", &rate);
    int burst_rc = host->config_int(host, "burst", &burst);
    int more[] = {
        host->config_int(host, "timeout_ms", &timeout_ms),
        host->config_string(host, "address", &address),
        host->config_string(host, "key_prefix", &prefix),
        host->config_string(host, "on_error", &on_error),
        host->config_string(host, "username", &username),
        host->config_string(host, "password", &password),
        host->config_int(host, "db", &db),
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
        if (more[i] == FC_ENOMEM || (more[i] < 0 && more[i] != FC_ENOENT))
            rc = more[i] == FC_ENOMEM ? FC_ENOMEM : FC_EINVAL;
    if (rate_rc == FC_EINVAL || burst_rc == FC_EINVAL)
        rc = rc < 0 ? rc : FC_EINVAL;
    if (rc == FC_ENOMEM)
        return rc;

    if (rate_rc == FC_ENOENT) {
        host->config_error(host, "rate", "required: tokens per second, a number > 0");
        rc = FC_EINVAL;
    } else if (rate_rc == 0 && !(rate > 0 && rate <= RATE_MAX)) {
        host->config_error(host, "rate", "expected tokens per second, > 0 and <= %.0f (got %g)",
                           RATE_MAX, rate);
        rc = FC_EINVAL;
    }
    int rate_ok = rate_rc == 0 && rate > 0 && rate <= RATE_MAX;
    if (rate_ok && burst_rc == FC_ENOENT) {
        /* The default, as token_bucket's: ceil(rate), one second's worth, at least 1. */
        burst = (int64_t)rate;
        if ((double)burst < rate)
            burst++;
    }
    if (burst_rc == 0 && burst < 1) {
        host->config_error(host, "burst", "expected an integer >= 1 (got %lld)", (long long)burst);
        rc = FC_EINVAL;
    } else if (rate_ok && burst >= 1 && (double)burst / rate > REFILL_LIMIT_S) {
        host->config_error(host, burst_rc == 0 ? "burst" : "rate",
                           "burst / rate, the time to refill a bucket, is %g s; at most %.0f s",
                           (double)burst / rate, REFILL_LIMIT_S);
        rc = FC_EINVAL;
    }
    if (timeout_ms < 1 || timeout_ms > TIMEOUT_MS_MAX) {
        host->config_error(host, "timeout_ms", "expected milliseconds from 1 to %d (got %lld)",
                           TIMEOUT_MS_MAX, (long long)timeout_ms);
        rc = FC_EINVAL;
    }
    if (strcmp(on_error, "allow") != 0 && strcmp(on_error, "deny") != 0) {
        host->config_error(host, "on_error", "expected \"allow\" or \"deny\" (got \"%s\")",
                           on_error);
        rc = FC_EINVAL;
    }
    if (db < 0 || db > 100000) {
        host->config_error(host, "db", "expected a database number from 0 (got %lld)",
                           (long long)db);
        rc = FC_EINVAL;
    }
    if (username != NULL && password == NULL) {
        host->config_error(host, "username", "needs a password");
        rc = FC_EINVAL;
    }
    if (prefix != NULL && strlen(prefix) > PREFIX_MAX) {
        host->config_error(host, "key_prefix", "expected at most %d bytes (got %zu)", PREFIX_MAX,
                           strlen(prefix));
        rc = FC_EINVAL;
    }

    struct redis_limiter *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return FC_ENOMEM;
    rl->host = host;
    atomic_init(&rl->dns_failing, 0);
    if (parse_address(rl, address) < 0)
        rc = FC_EINVAL;
    if (rc < 0)
        goto fail;
    if (rl->name[0] != '\0') {
        /* Before any channel is made; on the main thread, as create() and destroy() run. */
        int ares_rc = ares_library_init(ARES_LIB_INIT_ALL);
        if (ares_rc != ARES_SUCCESS) {
            host->log(host, FC_LOG_ERROR, "c-ares: %s", ares_strerror(ares_rc));
            rc = ares_rc == ARES_ENOMEM ? FC_ENOMEM : FC_ERROR;
            goto fail;
        }
        rl->ares_ready = 1;
    }

    double interval_us = 1e6 / rate;
    snprintf(rl->interval, sizeof(rl->interval), "%.17g", interval_us);
    snprintf(rl->tolerance, sizeof(rl->tolerance), "%.17g", interval_us * (double)burst);
    rl->address = address;
    rl->username = username;
    rl->password = password;
    rl->db = db;
    snprintf(rl->db_text, sizeof(rl->db_text), "%lld", (long long)db);
    if (prefix == NULL && host->pool_name(host)[0] == '\0') {
        prefix = DEFAULT_PREFIX; /* no pool to name (a test harness) */
    } else if (prefix == NULL) {
        const char *pool = host->pool_name(host);
        size_t len = strlen(DEFAULT_PREFIX) + strlen(pool) + 2;
        rl->default_prefix = malloc(len);
        if (rl->default_prefix == NULL) {
            rc = FC_ENOMEM;
            goto fail;
        }
        snprintf(rl->default_prefix, len, "%s%s:", DEFAULT_PREFIX, pool);
        prefix = rl->default_prefix;
    }
    rl->prefix = prefix;
    rl->prefix_len = strlen(prefix);
    rl->timeout_ms = (uint32_t)timeout_ms;
    if (strcmp(on_error, "deny") == 0) {
        rl->error_verdict = FC_RATELIMIT_DENY;
        rl->error_retry_ms = ERROR_RETRY_AFTER_MS;
    } else {
        rl->error_verdict = FC_RATELIMIT_ALLOW;
    }

    /* A configuration check has no workers: then there is nothing to allocate. */
    rl->n_workers = host->worker_count(host);
    if (rl->n_workers > 0) {
        size_t size = (size_t)rl->n_workers * sizeof(struct redis_worker);
        rl->workers = aligned_alloc(_Alignof(struct redis_worker), size);
        if (rl->workers == NULL) {
            rc = FC_ENOMEM;
            goto fail;
        }
        memset(rl->workers, 0, size);
        for (uint32_t i = 0; i < rl->n_workers; i++) {
            rl->workers[i].rl = rl;
            rl->workers[i].index = i;
            rl->workers[i].backoff_ms = BACKOFF_MIN_MS;
        }
    }
    *state = rl;
    return 0;

fail:
    redis_destroy(rl);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

static struct redis_check *check_get(struct redis_worker *w)
{
    struct redis_check *c = w->spare;
    if (c != NULL) {
        w->spare = c->next;
        w->n_spare--;
    } else {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            return NULL;
    }
    c->w = w;
    c->prev = c->next = NULL;
    return c;
}

static void check_put(struct redis_worker *w, struct redis_check *c)
{
    if (w->started && w->n_spare < SPARE_CHECKS_MAX) {
        if (c->key_cap > SPARE_KEY_MAX) { /* a rare huge key: do not hoard its buffer */
            free(c->key);
            c->key = NULL;
            c->key_cap = 0;
        }
        c->next = w->spare;
        w->spare = c;
        w->n_spare++;
        return;
    }
    free(c->key);
    free(c);
}

/* Inserts c into the waiting list, which stays ordered by deadline. */
static void waiting_insert(struct redis_worker *w, struct redis_check *c)
{
    struct redis_check *after = w->tail;
    while (after != NULL && after->deadline > c->deadline)
        after = after->prev;
    c->prev = after;
    c->next = after != NULL ? after->next : w->head;
    if (c->next != NULL)
        c->next->prev = c;
    else
        w->tail = c;
    if (after != NULL)
        after->next = c;
    else
        w->head = c;
}

static void waiting_remove(struct redis_worker *w, struct redis_check *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        w->tail = c->prev;
    c->prev = c->next = NULL;
}

/*
 * Ends a waiting check with its verdict. The record is recycled before the
 * host hears the verdict, since the host may start new checks (even stop the
 * worker) from inside ratelimit_done().
 */
static void check_finish(struct redis_check *c, int verdict, uint64_t retry_after_ms)
{
    struct redis_worker *w = c->w;
    const struct fc_host *host = w->rl->host;
    struct fc_ratelimit_pending *pending = c->pending;
    waiting_remove(w, c);
    check_put(w, c);
    host->ratelimit_done(host, pending, verdict, retry_after_ms);
}

static void check_fail(struct redis_check *c)
{
    check_finish(c, c->w->rl->error_verdict, c->w->rl->error_retry_ms);
}

/* A warning about answers that failed, at most once per WARN_PERIOD_MS and worker. */
static void warn_throttled(struct redis_worker *w, const char *what, const char *detail)
{
    uint64_t now = uv_now(w->loop);
    if (w->warned && now - w->last_warn_ms < WARN_PERIOD_MS)
        return;
    w->warned = 1;
    w->last_warn_ms = now;
    w->rl->host->log(w->rl->host, FC_LOG_WARN, "worker %u: redis %s: %s: %s", w->index,
                     w->rl->address, what, detail);
}

static int send_check(struct redis_worker *w, struct redis_check *c, int by_sha);

/* A good answer: the connection works, so the next outage starts a fresh backoff. */
static void note_healthy(struct redis_worker *w)
{
    w->backoff_ms = BACKOFF_MIN_MS;
    if (w->healthy)
        return;
    w->healthy = 1;
    if (w->outage_logged) {
        w->outage_logged = 0;
        w->rl->host->log(w->rl->host, FC_LOG_INFO, "worker %u: redis %s answers again", w->index,
                         w->rl->address);
    }
}

static void schedule_retry(struct redis_worker *w, const char *why);

/*
 * The connection is gone or going: forget it (hiredis or the caller frees
 * it) and retry later. Checks made meanwhile get the on_error verdict at once.
 */
static void mark_down(struct redis_worker *w, const char *why)
{
    w->ac = NULL;
    if (w->started)
        schedule_retry(w, why);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_check *c = privdata;
    struct redis_worker *w = c->w;
    redisReply *reply = r;

    if (reply == NULL) {
        /* hiredis is freeing the connection: every waiting check ends here. */
        if (ac == w->ac)
            mark_down(w, ac->err != 0 ? ac->errstr : "connection closed");
        check_fail(c);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && ac == w->ac && send_check(w, c, 0) == 0) {
            /* Its script cache was flushed: EVAL puts the script back; same deadline. */
            return;
        }
        warn_throttled(w, "the rate limit script failed", reply->str);
        check_fail(c);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        warn_throttled(w, "the rate limit script failed", "unexpected reply");
        check_fail(c);
        return;
    }
    note_healthy(w);
    if (reply->element[0]->integer == 1) {
        check_finish(c, FC_RATELIMIT_ALLOW, 0);
    } else {
        long long retry = reply->element[1]->integer;
        check_finish(c, FC_RATELIMIT_DENY, retry > 0 ? (uint64_t)retry : 1);
    }
}

/*
 * Sends c's script call on w's connection: EVALSHA when by_sha and the SHA1 is
 * known, else EVAL with the whole script. Returns 0, or -1 when hiredis
 * refused it (then on_reply will not be called for it).
 */
static int send_check(struct redis_worker *w, struct redis_check *c, int by_sha)
{
    const struct redis_limiter *rl = w->rl;
    int sha = by_sha && w->sha[0] != '\0';
    const char *argv[6] = {sha ? "EVALSHA" : "EVAL",
                           sha ? w->sha : gcra_script,
                           "1",
                           c->key,
                           rl->interval,
                           rl->tolerance};
    size_t lens[6] = {strlen(argv[0]), strlen(argv[1]), 1,
                      c->key_len,      strlen(argv[4]), strlen(argv[5])};
    return redisAsyncCommandArgv(w->ac, on_reply, c, 6, argv, lens) == REDIS_OK ? 0 : -1;
}

/* The deadline timer: a check has waited timeout_ms, so the connection is stalled. */
static void on_deadline(uv_timer_t *timer)
{
    struct redis_worker *w = timer->data;
    if (w->head == NULL || w->ac == NULL)
        return;
    uint64_t now = uv_now(w->loop);
    if (w->head->deadline > now) {
        uv_timer_start(timer, on_deadline, w->head->deadline - now, 0);
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "no answer within %u ms", w->rl->timeout_ms);
    redisAsyncContext *ac = w->ac;
    mark_down(w, why);
    /* Runs on_reply(NULL) for each check on it: all of them end now. */
    redisAsyncFree(ac);
}

static int error_verdict(const struct redis_limiter *rl, uint64_t *retry_after_ms)
{
    *retry_after_ms = rl->error_retry_ms;
    return rl->error_verdict;
}

static int worker_begin(struct redis_limiter *rl, struct redis_worker *w, uv_loop_t *loop);

static int redis_check(void *state, const struct fc_ratelimit_args *args, uint64_t *retry_after_ms)
{
    struct redis_limiter *rl = state;
    if (args->worker >= rl->n_workers) {
        rl->host->log(rl->host, FC_LOG_ERROR, "check() on worker %u of %u", args->worker,
                      rl->n_workers);
        return error_verdict(rl, retry_after_ms);
    }
    struct redis_worker *w = &rl->workers[args->worker];
    /*
     * A worker the host never started starts with its first check; one it
     * stopped stays stopped (its loop may be closing), until worker_start().
     */
    if (!w->started && (w->stopped || worker_begin(rl, w, args->loop) < 0))
        return error_verdict(rl, retry_after_ms);
    if (w->ac == NULL)
        return error_verdict(rl, retry_after_ms); /* down: no waiting */

    struct redis_check *c = check_get(w);
    size_t need = rl->prefix_len + args->key_len;
    if (c != NULL && (c->key == NULL || c->key_cap < need)) {
        char *key = realloc(c->key, need > 0 ? need : 1);
        if (key == NULL) {
            check_put(w, c);
            c = NULL;
        } else {
            c->key = key;
            c->key_cap = need;
        }
    }
    if (c == NULL)
        return error_verdict(rl, retry_after_ms);
    memcpy(c->key, rl->prefix, rl->prefix_len);
    if (args->key_len > 0)
        memcpy(c->key + rl->prefix_len, args->key, args->key_len);
    c->key_len = need;
    c->pending = args->pending;
    c->deadline = uv_now(w->loop) + rl->timeout_ms;

    if (send_check(w, c, 1) < 0) {
        check_put(w, c);
        return error_verdict(rl, retry_after_ms);
    }
    waiting_insert(w, c);
    if (!uv_is_active((uv_handle_t *)&w->handles->deadline))
        uv_timer_start(&w->handles->deadline, on_deadline, rl->timeout_ms, 0);
    return FC_RATELIMIT_PENDING;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

static void on_script_loaded(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_worker *w = privdata;
    redisReply *reply = r;
    if (reply == NULL)
        return; /* the connection is going; on_reply() or on_disconnect() tell why */
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(w->sha, reply->str, 40);
        w->sha[40] = '\0';
        note_healthy(w);
    } else {
        warn_throttled(w, "SCRIPT LOAD failed",
                       reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    }
}

/*
 * AUTH and SELECT. A refused one makes the connection useless (checks would
 * fail, or worse, count in the wrong database): say why and drop it, so that
 * checks get the on_error verdict and a new attempt follows the backoff.
 */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_worker *w = ac->data;
    redisReply *reply = r;
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || ac != w->ac)
        return;
    warn_throttled(w, privdata, reply->str);
    mark_down(w, privdata);
    redisAsyncFree(ac); /* deferred by hiredis until this callback returns */
}

static void connect_next(struct redis_worker *w, const char *why);

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_worker *w = ac->data;
    /*
     * On failure hiredis frees the context after this returns, ending its
     * checks; meanwhile the name's next address, if any, is tried.
     */
    if (status != REDIS_OK && ac == w->ac) {
        w->ac = NULL;
        if (w->started)
            connect_next(w, ac->errstr);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_worker *w = ac->data;
    /* A context this worker dropped itself is no longer w->ac: nothing to do. */
    if (ac == w->ac)
        mark_down(w, status == REDIS_OK ? "connection closed" : ac->errstr);
}

/*
 * hiredis 0.14's libuv adapter ignores a poll callback with an error status,
 * yet libuv reports a refused connect or a reset connection exactly that way
 * (and stops the handle): the context would then hang, unnoticed, until a
 * check's deadline. These replace the adapter's event hooks, keeping its
 * state and cleanup, with a callback that hands errors to hiredis as read
 * and write events, as hiredis 1.0's adapter does; hiredis then reads the
 * socket's error and gives the connection up.
 */
static void on_poll(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;
    int ev = status != 0 ? p->events : events;
    if (p->context != NULL && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context != NULL && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void poll_update(redisLibuvEvents *p, int add, int del)
{
    p->events = (p->events | add) & ~del;
    if (p->events != 0)
        uv_poll_start(&p->handle, p->events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void poll_add_read(void *privdata)
{
    poll_update(privdata, UV_READABLE, 0);
}

static void poll_del_read(void *privdata)
{
    poll_update(privdata, 0, UV_READABLE);
}

static void poll_add_write(void *privdata)
{
    poll_update(privdata, UV_WRITABLE, 0);
}

static void poll_del_write(void *privdata)
{
    poll_update(privdata, 0, UV_WRITABLE);
}

/*
 * Opens the worker's connection to ip (numeric: hiredis looks it up, which
 * then needs no name server; unused for a Unix socket) and queues SCRIPT
 * LOAD on it; checks may be queued behind it at once, hiredis sends them
 * once connected. A failure here only moves on to the next address or
 * schedules the next attempt.
 */
static void connect_to(struct redis_worker *w, const char *ip)
{
    const struct redis_limiter *rl = w->rl;
    redisAsyncContext *ac = rl->unix_path != NULL ? redisAsyncConnectUnix(rl->unix_path)
                                                  : redisAsyncConnect(ip, rl->port);
    if (ac == NULL) {
        schedule_retry(w, "out of memory");
        return;
    }
    if (ac->err != 0) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        connect_next(w, why);
        return;
    }
    ac->data = w;
    if (redisLibuvAttach(ac, w->loop) != REDIS_OK) {
        /* The adapter may fail after installing its cleanup but before its state. */
        if (ac->ev.data == NULL)
            ac->ev.cleanup = NULL;
        redisAsyncFree(ac);
        schedule_retry(w, "cannot watch the socket");
        return;
    }
    ac->ev.addRead = poll_add_read; /* before anything starts the poll: see on_poll() */
    ac->ev.delRead = poll_del_read;
    ac->ev.addWrite = poll_add_write;
    ac->ev.delWrite = poll_del_write;
    /* Starts watching for the end of the connect. */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    w->ac = ac;
    /* Pipelined before the script: Redis answers them in order, before any check. */
    int queued = REDIS_OK;
    if (rl->password != NULL) {
        const char *auth[3] = {"AUTH", rl->username ? rl->username : rl->password, rl->password};
        size_t auth_lens[3] = {4, strlen(auth[1]), strlen(rl->password)};
        queued = redisAsyncCommandArgv(ac, on_setup_reply, (void *)"AUTH failed",
                                       rl->username ? 3 : 2, auth, auth_lens);
    }
    if (queued == REDIS_OK && rl->db != 0) {
        const char *sel[2] = {"SELECT", rl->db_text};
        size_t sel_lens[2] = {6, strlen(rl->db_text)};
        queued =
            redisAsyncCommandArgv(ac, on_setup_reply, (void *)"SELECT failed", 2, sel, sel_lens);
    }
    if (queued != REDIS_OK) {
        w->ac = NULL;
        redisAsyncFree(ac);
        schedule_retry(w, "cannot queue AUTH or SELECT");
        return;
    }
    const char *argv[3] = {"SCRIPT", "LOAD", gcra_script};
    size_t lens[3] = {6, 4, sizeof(gcra_script) - 1};
    if (redisAsyncCommandArgv(ac, on_script_loaded, w, 3, argv, lens) != REDIS_OK) {
        w->ac = NULL;
        redisAsyncFree(ac);
        schedule_retry(w, "cannot queue SCRIPT LOAD");
    }
}

/*
 * The connect in progress failed before it was up: the next address of the
 * name's last lookup, or, when none is left, another attempt (and lookup)
 * after the backoff.
 */
static void connect_next(struct redis_worker *w, const char *why)
{
    const struct redis_limiter *rl = w->rl;
    if (w->next_addr >= w->n_addrs) {
        schedule_retry(w, why);
        return;
    }
    rl->host->log(rl->host, FC_LOG_DEBUG, "worker %u: redis %s: %s: %s; trying %s", w->index,
                  rl->address, w->addrs[w->next_addr - 1], why, w->addrs[w->next_addr]);
    connect_to(w, w->addrs[w->next_addr++]);
}

static void connect_worker(struct redis_worker *w);

static void on_retry(uv_timer_t *timer)
{
    struct redis_worker *w = timer->data;
    if (w->started && w->ac == NULL)
        connect_worker(w);
}

static const char *on_error_name(const struct redis_limiter *rl)
{
    return rl->error_verdict == FC_RATELIMIT_DENY ? "deny" : "allow";
}

/* Connects again after the backoff, which doubles (up to its cap) for the next failure. */
static void retry_later(struct redis_worker *w)
{
    w->healthy = 0;
    uv_timer_start(&w->handles->retry, on_retry, w->backoff_ms, 0);
    w->backoff_ms = w->backoff_ms * 2 < BACKOFF_MAX_MS ? w->backoff_ms * 2 : BACKOFF_MAX_MS;
}

static void schedule_retry(struct redis_worker *w, const char *why)
{
    const struct redis_limiter *rl = w->rl;
    if (!w->outage_logged) {
        w->outage_logged = 1;
        rl->host->log(rl->host, FC_LOG_WARN,
                      "worker %u: redis %s: %s; checks get on_error = \"%s\" until it answers "
                      "again (reconnecting every %u to %u ms)",
                      w->index, rl->address, why, on_error_name(rl), BACKOFF_MIN_MS,
                      BACKOFF_MAX_MS);
    } else {
        rl->host->log(rl->host, FC_LOG_DEBUG, "worker %u: redis %s: %s; retrying in %u ms",
                      w->index, rl->address, why, w->backoff_ms);
    }
    retry_later(w);
}

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * A socket of a worker's c-ares channel, watched on the worker's loop. The
 * poll handle comes first, so that its close callback frees the whole.
 */
struct dns_poll {
    uv_poll_t poll; /* data: the worker */
    ares_socket_t fd;
    struct dns_poll *next; /* in the worker's list */
};

static void on_dns_poll_closed(uv_handle_t *handle)
{
    free((struct dns_poll *)(void *)handle);
}

static void on_dns_timer(uv_timer_t *timer);

/* After each call into the channel: the timer is due at its next timeout, if it awaits one. */
static void dns_arm(struct redis_worker *w)
{
    struct timeval tv;
    if (ares_timeout(w->channel, NULL, &tv) == NULL) {
        uv_timer_stop(&w->handles->dns);
        return;
    }
    uint64_t ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
    uv_timer_start(&w->handles->dns, on_dns_timer, ms, 0);
}

/* A try ran out of time: c-ares sends the next one, or ends the lookup. */
static void on_dns_timer(uv_timer_t *timer)
{
    struct redis_worker *w = timer->data;
    ares_process_fd(w->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_arm(w);
}

static void on_dns_poll(uv_poll_t *handle, int status, int events)
{
    struct dns_poll *p = (struct dns_poll *)(void *)handle;
    struct redis_worker *w = handle->data;
    /* An error (libuv stopped the handle): both ways, so that c-ares meets the error itself. */
    int readable = status < 0 || (events & UV_READABLE);
    int writable = status < 0 || (events & UV_WRITABLE);
    ares_process_fd(w->channel, readable ? p->fd : ARES_SOCKET_BAD,
                    writable ? p->fd : ARES_SOCKET_BAD);
    dns_arm(w);
}

/*
 * c-ares's socket callback (ARES_OPT_SOCK_STATE_CB), on the worker's thread
 * from inside a call into the channel: watch fd for what c-ares waits for,
 * or for nothing, before it closes fd. A socket that cannot be watched (out
 * of memory) is left to the timer: its lookup then ends at its timeout.
 */
static void on_dns_socket(void *data, ares_socket_t fd, int readable, int writable)
{
    struct redis_worker *w = data;
    struct dns_poll **link = &w->polls;
    while (*link != NULL && (*link)->fd != fd)
        link = &(*link)->next;
    struct dns_poll *p = *link;
    if (!readable && !writable) {
        if (p != NULL) {
            *link = p->next;
            uv_close((uv_handle_t *)&p->poll, on_dns_poll_closed);
        }
        return;
    }
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL)
            return;
        if (uv_poll_init_socket(w->loop, &p->poll, fd) != 0) {
            free(p);
            return;
        }
        p->poll.data = w;
        p->fd = fd;
        p->next = w->polls;
        w->polls = p;
    }
    uv_poll_start(&p->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                  on_dns_poll);
}

/* Creates w's channel, bounded as DNS_TIMEOUT_MS and DNS_TRIES say. Returns an ARES_ code. */
static int dns_open(struct redis_worker *w)
{
    struct ares_options opts = {
        .timeout = DNS_TIMEOUT_MS,
        .tries = DNS_TRIES,
        .sock_state_cb = on_dns_socket,
        .sock_state_cb_data = w,
    };
    int rc = ares_init_options(&w->channel, &opts,
                               ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
    if (rc != ARES_SUCCESS)
        w->channel = NULL;
    return rc;
}

/*
 * The name did not resolve: the worker stays without a connection, as when
 * Redis refuses, and looks it up again after the backoff. Reported for the
 * first failure since the name last resolved, whichever worker's it is.
 */
static void dns_failed(struct redis_worker *w, int status)
{
    struct redis_limiter *rl = w->rl;
    if (atomic_exchange(&rl->dns_failing, 1) == 0)
        rl->host->log(rl->host, FC_LOG_WARN,
                      "redis: cannot resolve \"%s\": %s; checks get on_error = \"%s\" until it "
                      "does (retrying every %u to %u ms)",
                      rl->name, ares_strerror(status), on_error_name(rl), BACKOFF_MIN_MS,
                      BACKOFF_MAX_MS);
    retry_later(w);
}

/*
 * A lookup's end (ares_getaddrinfo()'s callback), on the worker's thread,
 * maybe from inside ares_getaddrinfo() itself (an /etc/hosts entry), or
 * from ares_destroy() in worker_stop() (ARES_EDESTRUCTION): then the worker
 * is stopped and nothing follows.
 */
static void on_resolved(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct redis_worker *w = arg;
    struct redis_limiter *rl = w->rl;
    w->resolving = 0;
    w->n_addrs = 0;
    w->next_addr = 0;
    for (struct ares_addrinfo_node *n = res != NULL ? res->nodes : NULL;
         n != NULL && w->n_addrs < ADDRS_MAX; n = n->ai_next) {
        const void *addr =
            n->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)n->ai_addr)->sin6_addr
            : n->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)n->ai_addr)->sin_addr
                                      : NULL;
        if (addr != NULL &&
            inet_ntop(n->ai_family, addr, w->addrs[w->n_addrs], sizeof(w->addrs[0])) != NULL)
            w->n_addrs++;
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
    if (!w->started)
        return;
    if (w->n_addrs == 0) {
        dns_failed(w, status != ARES_SUCCESS ? status : ARES_ENODATA);
        return;
    }
    if (atomic_exchange(&rl->dns_failing, 0) != 0)
        rl->host->log(rl->host, FC_LOG_INFO, "redis: \"%s\" resolves again (to %s)", rl->name,
                      w->addrs[0]);
    w->next_addr = 1;
    connect_to(w, w->addrs[0]);
}

/*
 * Starts the worker's next connection: at once to an IP address or a Unix
 * socket, after a lookup for a name (one at a time).
 */
static void connect_worker(struct redis_worker *w)
{
    if (w->rl->name[0] == '\0') {
        connect_to(w, w->rl->ip);
        return;
    }
    if (w->resolving)
        return;
    if (w->channel == NULL) {
        int rc = dns_open(w);
        if (rc != ARES_SUCCESS) {
            dns_failed(w, rc);
            return;
        }
    }
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    w->resolving = 1;
    ares_getaddrinfo(w->channel, w->rl->name, NULL, &hints, on_resolved, w);
    dns_arm(w);
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct redis_handles *h = handle->data;
    if (--h->open == 0)
        free(h);
}

/* Sets up worker w on loop; its first connection attempt starts now. */
static int worker_begin(struct redis_limiter *rl, struct redis_worker *w, uv_loop_t *loop)
{
    if (loop == NULL)
        return FC_EINVAL;
    struct redis_handles *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return FC_ENOMEM;
    uv_timer_init(loop, &h->deadline); /* cannot fail */
    uv_timer_init(loop, &h->retry);
    uv_timer_init(loop, &h->dns);
    h->open = 3;
    h->deadline.data = w;
    h->retry.data = w;
    h->dns.data = w;
    w->handles = h;
    w->loop = loop;
    w->started = 1;
    w->stopped = 0;
    w->healthy = 0;
    w->outage_logged = 0;
    w->backoff_ms = BACKOFF_MIN_MS;
    w->n_addrs = 0;
    w->next_addr = 0;
    connect_worker(w);
    return 0;
}

static int redis_worker_start(void *state, uint32_t worker, void *loop)
{
    struct redis_limiter *rl = state;
    if (worker >= rl->n_workers)
        return FC_EINVAL;
    struct redis_worker *w = &rl->workers[worker];
    return w->started ? 0 : worker_begin(rl, w, loop);
}

/*
 * Ends the worker's checks with the on_error verdict (hiredis runs on_reply
 * with no reply for each as it frees the connection), ends its lookup and
 * its c-ares channel, and closes its handles; their close callbacks free
 * them, from the loop, later.
 */
static void redis_worker_stop(void *state, uint32_t worker, void *loop)
{
    struct redis_limiter *rl = state;
    if (worker >= rl->n_workers)
        return;
    struct redis_worker *w = &rl->workers[worker];
    if (!w->started)
        return;
    w->started = 0; /* no retry from here on, and finished records are freed */
    w->stopped = 1;
    redisAsyncContext *ac = w->ac;
    w->ac = NULL;
    if (ac != NULL)
        redisAsyncFree(ac);
    if (w->channel != NULL) {
        /*
         * Ends a lookup in flight (on_resolved() with ARES_EDESTRUCTION) and
         * closes the channel's sockets, telling on_dns_socket() first, which
         * closes their poll handles: w->polls is empty after it.
         */
        ares_destroy(w->channel);
        w->channel = NULL;
    }
    w->resolving = 0;
    /* Closed timers never fire: from here on they point at their block, not at w. */
    struct redis_handles *h = w->handles;
    h->deadline.data = h;
    h->retry.data = h;
    h->dns.data = h;
    uv_close((uv_handle_t *)&h->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&h->retry, on_handle_closed);
    uv_close((uv_handle_t *)&h->dns, on_handle_closed);
    w->handles = NULL;
    while (w->spare != NULL) {
        struct redis_check *c = w->spare;
        w->spare = c->next;
        free(c->key);
        free(c);
    }
    w->n_spare = 0;
}

static const struct fc_ratelimit_ops redis_ops = {
    .size = sizeof(struct fc_ratelimit_ops),
    .create = redis_create,
    .destroy = redis_destroy,
    .check = redis_check,
    .worker_start = redis_worker_start,
    .worker_stop = redis_worker_stop,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_RATELIMIT, .name = "redis", .version = "1.0.0",
                     .description = "GCRA token bucket shared through Redis (one Lua script)",
                     .ratelimit = &redis_ops);
