/*
 * fulcrum plugin SDK — the whole ABI between the fulcrum daemon and its plugins.
 *
 * A plugin is a shared object that exports exactly one symbol, FC_PLUGIN_SYMBOL
 * ("fc_plugin"), a const struct fc_plugin_descriptor, most easily written with
 * FC_PLUGIN_DESCRIPTOR(). It includes this header and nothing of the daemon: it
 * resolves no symbol from the executable. Everything the host offers reaches the
 * plugin through the struct fc_host table handed to each instance.
 *
 * Four kinds of plugin exist:
 *   - strategy:  picks the backend of a pool for each request (one instance per
 *                worker thread and pool);
 *   - health:    probes backends of a pool, on the main thread's loop, most
 *                simply through the core's probe service (probe_connect());
 *   - ratelimit: decides whether a request may pass, possibly asynchronously
 *                (one instance per pool, shared by every worker thread);
 *   - cache:     stores the responses the core's HTTP cache decided to keep
 *                (ABI 1.3; one instance per pool, shared by every worker).
 *
 * Versioning. FC_ABI_MAJOR changes when an existing declaration changes meaning
 * or layout; the host refuses a plugin built for another major. FC_ABI_MINOR
 * grows when something is appended (a host function at the end of struct
 * fc_host, an optional op at the end of an ops table, a field at the end of
 * an argument struct, a new declaration); the host refuses a plugin built
 * against a newer minor than its own, and accepts older ones. Tables and
 * argument structs carry their own size so that each side can tell which
 * fields the other one knows: a plugin built against 1.0 sees only the
 * fields of 1.0 and keeps working unchanged in a 1.1 host. Since a host
 * never loads a plugin built against a newer minor, a plugin may use every
 * declaration of the header it was built against without checking
 * fc_host.abi_minor first.
 *
 * ABI changelog:
 *   1.0  First release: descriptor, host table, strategy, health and
 *        ratelimit ops.
 *        Header-only helpers added since, within 1.0 (static inline: they
 *        compile into the plugin, add no symbol and change no layout, so
 *        the version stays 1.0): fc_load_cmp(), fc_backend_load_cmp().
 *   1.1  The health probe service: fc_host.probe_connect() (appended to
 *        struct fc_host), struct fc_probe_args, enum fc_probe_step and
 *        FC_PROBE_RECV_MAX. The core connects, sends, receives, keeps the
 *        deadline and closes before it reports, so a health plugin only
 *        says what to send and how to judge the answer, and needs no libuv.
 *        Health plugins built against 1.0, which do their own I/O on
 *        main_loop() and call probe_done(), keep working unchanged.
 *   1.2  Strategies that answer with the response: fc_host.response_header_add()
 *        (appended to struct fc_host), callable from pick(), e.g. for a
 *        Set-Cookie; fc_pick_args.flags (appended) with FC_PICK_TLS. A 1.2
 *        host calls outcome() for every request sent to a backend, also
 *        when it failed before a response head (status 0: connect failure,
 *        reset, timeout), as the op's comment always said; 1.0 and 1.1 hosts
 *        called it at response heads only. fc_host.request_target().
 *        Header-only: fc_cookie_value(), fc_pick_least_loaded(),
 *        fc_is_tchar().
 *   1.3  Cache stores: FC_PLUGIN_CACHE, struct fc_cache_ops and the
 *        descriptor's `cache` member (appended), FC_E2BIG. The core keeps
 *        the HTTP semantics (what may be stored, for how long, Vary,
 *        validation); a store keeps bytes under keys, LRU or otherwise.
 *
 * Conventions used on every declaration below:
 *   - "borrowed" pointers are valid for the duration of the call only;
 *   - functions returning int return 0 (or a documented non-negative value) on
 *     success and a negative FC_E* code on failure;
 *   - a plugin never calls exit() or abort(): it reports errors and returns.
 */
#ifndef FULCRUM_PLUGIN_H
#define FULCRUM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI this header describes. */
#define FC_ABI_MAJOR 1
#define FC_ABI_MINOR 3

/** First field of every descriptor: guards against a symbol that only shares the name. */
#define FC_PLUGIN_MAGIC 0x66634c42u /* "fcLB" */

/** The name of the one symbol a plugin exports. */
#define FC_PLUGIN_SYMBOL "fc_plugin"

/** Marks the descriptor as exported even when the plugin builds with -fvisibility=hidden. */
#define FC_PLUGIN_EXPORT __attribute__((visibility("default")))

/** Error codes returned across the ABI (always negative). */
enum fc_error {
    FC_OK = 0,
    FC_ERROR = -1,      /**< unspecified failure; the plugin logged why */
    FC_ENOMEM = -2,     /**< out of memory */
    FC_EINVAL = -3,     /**< an argument or a configuration value is invalid */
    FC_ENOENT = -4,     /**< a configuration key is absent */
    FC_ENOBACKEND = -5, /**< strategy: no backend can take the request (the client gets 503) */
    FC_E2BIG = -6,      /**< cache: the object is larger than the store takes (ABI 1.3) */
};

/** Plugin kinds. */
enum fc_plugin_kind {
    FC_PLUGIN_STRATEGY = 1,
    FC_PLUGIN_HEALTH = 2,
    FC_PLUGIN_RATELIMIT = 3,
    FC_PLUGIN_CACHE = 4, /**< ABI 1.3 */
};

/** Log levels, in increasing severity. */
enum fc_log_level {
    FC_LOG_DEBUG = 0,
    FC_LOG_INFO = 1,
    FC_LOG_WARN = 2,
    FC_LOG_ERROR = 3,
};

/* ------------------------------------------------------------------------ */
/* Read-only views of the host's pools and backends                          */
/* ------------------------------------------------------------------------ */

/**
 * Live state of one backend, shared by every worker thread and kept by the core
 * across configuration reloads. The core updates these fields atomically from
 * any thread; plugins only read them, through fc_backend_is_up() and
 * fc_backend_inflight(), which load them atomically.
 */
struct fc_backend_state {
    uint32_t up;       /**< 1 when the backend may receive traffic, 0 when it is down */
    uint32_t inflight; /**< requests in progress on it, counted over all worker threads */
};

/**
 * One backend as a plugin sees it. Owned by the host; valid, and unchanged, for
 * the whole life of the plugin instance that received it.
 */
struct fc_backend_view {
    uint32_t index;                       /**< position in its pool, 0 .. n_backends-1 */
    uint32_t weight;                      /**< configured weight, >= 1 */
    const char *address;                  /**< "127.0.0.1:9001" or "[::1]:9001", as configured */
    const struct sockaddr *sockaddr;      /**< resolved address */
    socklen_t sockaddr_len;               /**< length of *sockaddr */
    const struct fc_backend_state *state; /**< live state; read with the accessors below */
};

/**
 * A pool as a plugin sees it: its name and backends, in configuration order.
 * Owned by the host; valid and unchanged for the life of the instance.
 */
struct fc_pool_view {
    const char *name;
    uint32_t n_backends;
    const struct fc_backend_view *backends; /**< n_backends entries */
};

/** True when the backend may receive traffic. Safe on any thread. */
static inline int fc_backend_is_up(const struct fc_backend_view *b)
{
    return __atomic_load_n(&b->state->up, __ATOMIC_RELAXED) != 0;
}

/** Requests in progress on the backend over all worker threads. Safe on any thread. */
static inline uint32_t fc_backend_inflight(const struct fc_backend_view *b)
{
    return __atomic_load_n(&b->state->inflight, __ATOMIC_RELAXED);
}

/**
 * Compares two loads, each measured as requests in flight per unit of weight:
 * inflight_a / weight_a against inflight_b / weight_b. Returns a negative
 * value when a is the less loaded, 0 when both are equally loaded, a positive
 * value when b is the less loaded. The quotients are compared by
 * cross-multiplication in 64 bits (inflight_a * weight_b against
 * inflight_b * weight_a), which is exact for any 32-bit operands: no
 * division, no floating point, no rounding that would make 1/3 and 2/6
 * differ. Use it on values read once (a snapshot) when a scan compares one
 * backend with many; fc_backend_load_cmp() reads them itself. Header-only
 * helper (ABI 1.0); pure arithmetic, safe on any thread.
 */
static inline int fc_load_cmp(uint32_t inflight_a, uint32_t weight_a, uint32_t inflight_b,
                              uint32_t weight_b)
{
    uint64_t a = (uint64_t)inflight_a * weight_b;
    uint64_t b = (uint64_t)inflight_b * weight_a;
    return (a > b) - (a < b);
}

/**
 * fc_load_cmp() of two backends, with their configured weights and their
 * in-flight counts over all worker threads (each read once, atomically).
 * The counts move while other workers run, so the answer describes the
 * moment of the call. Header-only helper (ABI 1.0); safe on any thread.
 */
static inline int fc_backend_load_cmp(const struct fc_backend_view *a,
                                      const struct fc_backend_view *b)
{
    return fc_load_cmp(fc_backend_inflight(a), a->weight, fc_backend_inflight(b), b->weight);
}

/* ------------------------------------------------------------------------ */
/* The host table                                                            */
/* ------------------------------------------------------------------------ */

/** An HTTP request, opaque to plugins; read it with fc_host.request_header(). */
struct fc_request;

/**
 * A health probe in progress, opaque to plugins; finished with
 * fc_host.probe_done(), or handed to fc_host.probe_connect() (ABI 1.1), which
 * then finishes it.
 */
struct fc_probe;

/** What fc_host.probe_connect() is asked to do; defined with the health checker plugins. */
struct fc_probe_args;

/** A rate-limit decision in progress, opaque; finished with fc_host.ratelimit_done(). */
struct fc_ratelimit_pending;

/**
 * What the host offers one plugin instance. The host creates one table per
 * instance and keeps it valid, unchanged, until after the instance's destroy()
 * returned; the functions identify the instance by the table, so pass the same
 * pointer back. Unless said otherwise a function may be called on any thread.
 */
struct fc_host {
    /** sizeof(struct fc_host) as the host was built; fields past it are absent. */
    uint32_t size;
    /** The ABI minor the host implements. */
    uint32_t abi_minor;

    /**
     * Writes one line to the daemon's log, prefixed with the plugin's kind,
     * name and pool. The format is printf's; a trailing newline is not needed.
     */
    void (*log)(const struct fc_host *host, enum fc_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /**
     * Configuration: the plugin's own keys, i.e. the other keys of the group
     * that named it (`strategy = { plugin = "x"; key = ...; }`). Each getter
     * stores the value and returns 0, returns FC_ENOENT when the key is absent
     * (the output is left alone, so preset it with the default), or logs
     * "file:line: key: expected ..." and returns FC_EINVAL when the value has
     * the wrong type. Strings are owned by the host and live as long as the
     * instance. Only valid during create(): a key that create() did not read is
     * reported to the user as unknown, which catches typos.
     */
    int (*config_string)(const struct fc_host *host, const char *key, const char **out);
    int (*config_int)(const struct fc_host *host, const char *key, int64_t *out);
    int (*config_double)(const struct fc_host *host, const char *key, double *out);
    int (*config_bool)(const struct fc_host *host, const char *key, int *out);

    /**
     * Reports a configuration value the plugin rejects, as
     * "file:line: key: <message>", and makes create() fail. Only during create().
     */
    void (*config_error)(const struct fc_host *host, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /** Monotonic clock in nanoseconds. */
    uint64_t (*now_ns)(const struct fc_host *host);

    /**
     * The libuv loop (a uv_loop_t *) of the main thread, on which health
     * checkers run. Plugins may start their own handles on it from health ops
     * only; libuv 1.x is ABI-stable. A health plugin that lets the core do
     * its I/O (probe_connect(), ABI 1.1) needs no loop; plugins built against
     * 1.0 use this one. Strategy and ratelimit instances get their worker's
     * loop in the arguments of their ops instead.
     */
    void *(*main_loop)(const struct fc_host *host);

    /** Number of worker threads; worker indexes run from 0 to this minus 1. */
    uint32_t (*worker_count)(const struct fc_host *host);

    /**
     * Looks up a request header by case-insensitive name. Returns a pointer to
     * the value (not NUL-terminated, surrounding whitespace removed) and
     * stores its length, or returns NULL when the header is absent. The value
     * is borrowed for the duration of the op that received the request.
     * Called on the worker thread that runs that op.
     */
    const char *(*request_header)(const struct fc_host *host, const struct fc_request *req,
                                  const char *name, size_t *len);

    /**
     * Health: completes a probe started by fc_health_ops.probe(). Call it
     * exactly once per probe, on the main thread, with ok = 1 for a passing
     * check, 0 for a failing one, and a short reason for the log
     * ("HTTP 503", "connect: connection refused", "timeout"). The reason is
     * copied. The probe handle is invalid after the call. Not for a probe
     * handed to probe_connect(): the core finishes that one itself.
     */
    void (*probe_done)(const struct fc_host *host, struct fc_probe *probe, int ok,
                       const char *reason);

    /**
     * Ratelimit: delivers a verdict that fc_ratelimit_ops.check() left
     * pending (see FC_RATELIMIT_PENDING). Call it exactly once per pending
     * check, on the worker thread and loop that ran check(). retry_after_ms is
     * used for FC_RATELIMIT_DENY only. The handle is invalid after the call.
     */
    void (*ratelimit_done)(const struct fc_host *host, struct fc_ratelimit_pending *pending,
                           int verdict, uint64_t retry_after_ms);

    /**
     * The name of the pool the instance serves, e.g. to keep the state of
     * two pools apart in a store they share. Owned by the host, valid for the
     * instance's life. Any thread.
     */
    const char *(*pool_name)(const struct fc_host *host);

    /* ---- ABI 1.1 ---- */

    /**
     * Health: the probe service. Runs `probe`, the handle that
     * fc_health_ops.probe() received, for the plugin: connects to
     * args->backend, calls args->on_connected, writes args->send, and hands
     * args->on_data the bytes that come back, until a callback returns
     * FC_PROBE_PASS or FC_PROBE_FAIL, all within one deadline of
     * args->timeout_ms. Then the core closes the connection and its timer,
     * and only once they are closed finishes the probe as probe_done()
     * would, with the callback's reason or one of its own:
     * "connect: <libuv's error>" (e.g. "connect: connection refused"),
     * "timeout after N ms", "write: <error>", "read: <error>".
     *
     * The verdict never comes before probe_connect() returns, not even when
     * the connect fails at once: it comes later, from the loop. The host may
     * destroy the instance inside that verdict, so once it is in, the core
     * calls none of the callbacks again and touches neither args->arg nor
     * anything else of the plugin. The plugin never calls probe_done() for
     * a probe it handed over, and starts at most one probe per handle.
     *
     * args is borrowed for the duration of the call (args->send is copied);
     * args->arg must stay valid until the probe's verdict is in. Returns 0,
     * or, when the probe could not start, a negative code after logging why
     * (FC_EINVAL: invalid args, an instance that runs no probes, a probe
     * already running on this handle; FC_ENOMEM; FC_ERROR: no socket): no
     * verdict follows then, and probe() should return that code. Main
     * thread only, from health ops or from a probe's callbacks.
     */
    int (*probe_connect)(const struct fc_host *host, struct fc_probe *probe,
                         const struct fc_probe_args *args);

    /* ---- ABI 1.2 ---- */

    /**
     * Strategy: adds the header `name: value` to the response the client gets
     * for `req`, the request of the pick() that calls it (e.g. a Set-Cookie
     * that keeps the client on the backend picked). Only from pick(), on its
     * worker. The name must be a token (RFC 9110: letters, digits and
     * !#$%&'*+-.^_`|~), the value free of control characters other than tab;
     * both are copied. What a pick added is dropped when the request goes to
     * another backend after all (a retry after a failed connect, with a pick
     * of its own) and when the proxy answers itself (502, 503, 504). Room is
     * bounded: FC_RESPONSE_HEADERS_MAX bytes for all the lines of one
     * request ("Name: value" and CRLF each). Returns 0, FC_EINVAL for a bad
     * name or value or a call outside pick(), FC_ENOMEM when there is no
     * room left.
     */
    int (*response_header_add)(const struct fc_host *host, const struct fc_request *req,
                               const char *name, const char *value);

    /**
     * The request's target as the backend gets it: origin-form, path and
     * query ("/a/b?x=1"; an absolute-form target's path, "*" for OPTIONS *).
     * Not NUL-terminated; stores its length. Borrowed for the duration of
     * the op that received the request, on its worker.
     */
    const char *(*request_target)(const struct fc_host *host, const struct fc_request *req,
                                  size_t *len);
};

/** The room response_header_add() has for one request's headers, in bytes. */
#define FC_RESPONSE_HEADERS_MAX 1024

/* ------------------------------------------------------------------------ */
/* Strategy plugins                                                          */
/* ------------------------------------------------------------------------ */

/** Arguments of one pick. Borrowed for the duration of the call. */
struct fc_pick_args {
    uint32_t size;                    /**< sizeof(struct fc_pick_args) as the host knows it */
    uint32_t worker;                  /**< index of the calling worker thread */
    const struct fc_request *request; /**< the request; read with fc_host.request_header() */
    const struct sockaddr *client;    /**< the client's address */
    socklen_t client_len;
    /**
     * NULL, or pool->n_backends flags: a non-zero flag marks a backend this
     * request already failed to connect to. Skip it; fc_backend_eligible()
     * does both checks a strategy needs.
     */
    const uint8_t *tried;
    /* ---- ABI 1.2 ---- */
    uint32_t flags; /**< FC_PICK_* */
};

/**
 * Whether c may stand in a token (RFC 9110 5.6.2): a header name, a cookie
 * name, a method. Letters, digits and !#$%&'*+-.^_`|~. Header-only (ABI 1.2).
 */
static inline int fc_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}

/** fc_pick_args.flags: the client's connection speaks TLS (a listener with `tls`). */
#define FC_PICK_TLS (1u << 0)

/**
 * Finds cookie `name` in the value of a Cookie header (`a=1; b="2"`,
 * RFC 6265 5.4): returns its value, without the quotes of a quoted one, and
 * stores its length, or returns NULL when there is none. Borrowed from
 * `header`. The first of several of that name wins, as browsers send the
 * most specific first. Header-only (ABI 1.2).
 */
static inline const char *fc_cookie_value(const char *header, size_t len, const char *name,
                                          size_t *value_len)
{
    size_t n = 0;
    while (name[n] != '\0')
        n++;
    size_t i = 0;
    while (header != NULL && i < len) {
        while (i < len && (header[i] == ' ' || header[i] == '\t' || header[i] == ';'))
            i++;
        size_t start = i;
        while (i < len && header[i] != '=' && header[i] != ';')
            i++;
        size_t key_end = i;
        while (key_end > start && (header[key_end - 1] == ' ' || header[key_end - 1] == '\t'))
            key_end--;
        if (i == len || header[i] == ';')
            continue; /* a pair without '=' names no value */
        i++;          /* '=' */
        while (i < len && (header[i] == ' ' || header[i] == '\t'))
            i++;
        size_t v = i;
        while (i < len && header[i] != ';')
            i++;
        size_t v_end = i;
        while (v_end > v && (header[v_end - 1] == ' ' || header[v_end - 1] == '\t'))
            v_end--;
        if (v_end - v >= 2 && header[v] == '"' && header[v_end - 1] == '"') {
            v++;
            v_end--;
        }
        if (key_end - start != n)
            continue;
        size_t k = 0;
        while (k < n && header[start + k] == name[k])
            k++;
        if (k == n) {
            *value_len = v_end - v;
            return header + v;
        }
    }
    return NULL;
}

/** True when b is up and not already tried for this request. */
static inline int fc_backend_eligible(const struct fc_pick_args *args,
                                      const struct fc_backend_view *b)
{
    return fc_backend_is_up(b) && !(args->tried && args->tried[b->index]);
}

/**
 * The eligible backend of `pool` with the fewest requests in flight per unit
 * of weight (fc_load_cmp()), scanning from *next and keeping the first of
 * equal load, so that ties take turns; *next then points past the backend
 * picked. FC_ENOBACKEND when none is eligible. least_conn's pick, for
 * strategies that fall back to it. Header-only (ABI 1.2); *next is the
 * caller's, per instance.
 */
static inline int fc_pick_least_loaded(const struct fc_pool_view *pool,
                                       const struct fc_pick_args *args, uint32_t *next)
{
    uint32_t n = pool->n_backends, i = *next < n ? *next : 0;
    int best = FC_ENOBACKEND;
    uint32_t best_inflight = 0, best_weight = 1;
    for (uint32_t scanned = 0; scanned < n; scanned++) {
        const struct fc_backend_view *b = &pool->backends[i];
        if (fc_backend_eligible(args, b)) {
            uint32_t inflight = fc_backend_inflight(b);
            /* Strictly less: on a tie the earlier one in rotation order stays. */
            if (best < 0 || fc_load_cmp(inflight, b->weight, best_inflight, best_weight) < 0) {
                best = (int)i;
                best_inflight = inflight;
                best_weight = b->weight;
            }
        }
        i = i + 1 < n ? i + 1 : 0;
    }
    if (best >= 0)
        *next = (uint32_t)best + 1 < n ? (uint32_t)best + 1 : 0;
    return best;
}

/**
 * A balancing strategy. The host creates one instance per worker thread and
 * pool, so the ops of one instance never run concurrently with themselves;
 * create() and destroy() run on the main thread, pick() and outcome() on the
 * instance's worker thread. Instances of one pool may share nothing but what
 * the view exposes (fc_backend_state is already shared by the host).
 */
struct fc_strategy_ops {
    uint32_t size; /**< sizeof(struct fc_strategy_ops) as the plugin was built */

    /**
     * Required. Creates an instance for `pool` (borrowed for the instance's
     * life) and stores its private state in *state. Reads its configuration
     * through host. Returns 0, or a negative code after logging or calling
     * config_error (the configuration is then refused).
     */
    int (*create)(const struct fc_host *host, const struct fc_pool_view *pool, void **state);

    /** Optional. Frees what create() allocated. */
    void (*destroy)(void *state);

    /**
     * Required. Returns the index of the backend for this request, or
     * FC_ENOBACKEND when none is eligible (the client gets 503). Must not block.
     */
    int (*pick)(void *state, const struct fc_pick_args *args);

    /**
     * Optional. Told the outcome of each request sent to backend `index`,
     * once per pick that led to it: the response status, or 0 when the
     * backend failed before a response head (the connect failed or timed
     * out, the connection was reset or closed, no head came within
     * upstream_ms), and the time from the start of the request to the end
     * of the response head (or to the failure), in microseconds. A request
     * retried on another backend tells both. Not called for a request the
     * client abandoned before its head came. (Hosts before 1.2 called it at
     * response heads only.)
     */
    void (*outcome)(void *state, uint32_t index, int status, uint64_t latency_us);
};

/* ------------------------------------------------------------------------ */
/* Health checker plugins                                                    */
/* ------------------------------------------------------------------------ */

/**
 * A health checker. One instance per pool, on the main thread: every op runs
 * there. The host schedules the probes: every `interval_ms` it calls probe()
 * for each backend that has no probe in flight, so a hanging backend never
 * piles probes up, and it applies the rise/fall counts to the results. The
 * host reads `interval_ms`, `timeout_ms`, `rise` and `fall` from the group
 * itself; the plugin reads its own keys (path, expected status, ...).
 */
struct fc_health_ops {
    uint32_t size; /**< sizeof(struct fc_health_ops) as the plugin was built */

    /** Required. As fc_strategy_ops.create(). */
    int (*create)(const struct fc_host *host, const struct fc_pool_view *pool, void **state);

    /**
     * Optional. Called once no probe is in flight any more and before the
     * instance's handles must be gone; frees what create() allocated. Handles
     * the plugin started on the main loop must already be closed (uv_close
     * callbacks run) when it returns — so close them when the probe ends.
     */
    void (*destroy)(void *state);

    /**
     * Required. Starts one probe of `backend` (borrowed for the instance's
     * life) that must end within timeout_ms, on the main loop, and end with
     * exactly one host->probe_done(probe, ...) — possibly before probe()
     * returns — or hands it to host->probe_connect() (ABI 1.1), which ends
     * it. Returns 0, or a negative code when it could not even start
     * (counted as a failed check; probe_done must then not be called).
     */
    int (*probe)(void *state, const struct fc_backend_view *backend, uint32_t timeout_ms,
                 struct fc_probe *probe);
};

/** What a probe callback (struct fc_probe_args) returns (ABI 1.1). */
enum fc_probe_step {
    FC_PROBE_MORE = 0, /**< no verdict yet: read on */
    FC_PROBE_PASS = 1, /**< the backend passes; the probe ends */
    FC_PROBE_FAIL = 2, /**< the backend fails; the probe ends */
};

/**
 * The most bytes of an answer that the probe service keeps for on_data()
 * (ABI 1.1); every 1.x host keeps exactly min(recv_max, FC_PROBE_RECV_MAX).
 */
#define FC_PROBE_RECV_MAX 4096

/**
 * One probe for fc_host.probe_connect() (ABI 1.1). Borrowed for the duration
 * of that call; the core copies what it needs. Fields the plugin leaves out
 * of a designated initializer are zero, which means "none" for each of them.
 *
 * Both callbacks run on the main thread, from the loop, with `reason` a
 * buffer of reason_len bytes (at least 64) holding "": a callback that
 * returns FC_PROBE_PASS or FC_PROBE_FAIL writes its reason for the log there
 * ("HTTP 200", "connected"), NUL-terminated, e.g. with snprintf(); left
 * empty, the core says "passed" or "failed". Any other return value than the
 * three steps counts as FC_PROBE_FAIL. A callback that returns FC_PROBE_MORE
 * where nothing more can come (at the end of the answer, with the buffer
 * full, or from on_connected() without an on_data()) fails the probe, with
 * its reason or "no verdict". Neither callback may call probe_done().
 */
struct fc_probe_args {
    /** sizeof(struct fc_probe_args) as the plugin was built. */
    uint32_t size;
    const struct fc_backend_view *backend; /**< where to connect: its sockaddr (no DNS runs) */
    uint32_t timeout_ms;                   /**< one deadline for connect, send and receive */
    /** Written once connected (and on_connected() said FC_PROBE_MORE); may be empty. Copied. */
    const void *send;
    size_t send_len;
    /**
     * Bytes of the answer kept for on_data(): 0 or more than
     * FC_PROBE_RECV_MAX means FC_PROBE_RECV_MAX.
     */
    size_t recv_max;
    /**
     * Optional. Called once connected, before anything is sent or read;
     * returns a step. A check that only needs the connection (`tcp`) passes
     * here.
     */
    int (*on_connected)(void *arg, char *reason, size_t reason_len);
    /**
     * Called after each read with every byte received so far, from the
     * first (data, len; borrowed for the call), and once more with eof = 1
     * and no new bytes when the peer closed. Must return a verdict when eof
     * is set or len has reached the recv_max kept (nothing more is read).
     * Required unless on_connected() always decides; the core reads the
     * answer only when it is set.
     */
    int (*on_data)(void *arg, const char *data, size_t len, int eof, char *reason,
                   size_t reason_len);
    /** Passed to the callbacks; must stay valid until the verdict is in. */
    void *arg;
};

/* ------------------------------------------------------------------------ */
/* Rate limiter plugins                                                      */
/* ------------------------------------------------------------------------ */

/** Verdicts of a rate limiter. */
enum fc_ratelimit_verdict {
    FC_RATELIMIT_ALLOW = 0,   /**< forward the request */
    FC_RATELIMIT_DENY = 1,    /**< answer 429 with Retry-After */
    FC_RATELIMIT_PENDING = 2, /**< verdict follows through fc_host.ratelimit_done() */
};

/** Arguments of one check. Borrowed for the duration of the call. */
struct fc_ratelimit_args {
    uint32_t size;   /**< sizeof(struct fc_ratelimit_args) as the host knows it */
    uint32_t worker; /**< index of the calling worker thread */
    void *loop;      /**< the worker's libuv loop (uv_loop_t *) */
    /** The key to count against: the client address, or the configured header's value. */
    const char *key;
    size_t key_len;
    const struct fc_request *request;
    /** Where to send a pending verdict; used only if check() returns FC_RATELIMIT_PENDING. */
    struct fc_ratelimit_pending *pending;
};

/**
 * A rate limiter. One instance per pool, shared by all worker threads: check()
 * runs concurrently on several workers and must be thread-safe, and must never
 * block. create() and destroy() run on the main thread. The host reads `key`
 * from the group itself and hands check() the resulting key.
 */
struct fc_ratelimit_ops {
    uint32_t size; /**< sizeof(struct fc_ratelimit_ops) as the plugin was built */

    /** Required. As fc_strategy_ops.create(), with no pool. */
    int (*create)(const struct fc_host *host, void **state);

    /** Optional. Frees what create() allocated; after every worker_stop(). */
    void (*destroy)(void *state);

    /**
     * Required. Returns FC_RATELIMIT_ALLOW or FC_RATELIMIT_DENY (with
     * *retry_after_ms set), or FC_RATELIMIT_PENDING after arranging for exactly
     * one host->ratelimit_done(args->pending, ...) later, on the same worker
     * thread; the host keeps the request waiting until then, so the plugin must
     * bound that time itself.
     */
    int (*check)(void *state, const struct fc_ratelimit_args *args, uint64_t *retry_after_ms);

    /**
     * Optional. Called on each worker thread (with its loop) before its first
     * check(), and again on that thread when the instance is retired there,
     * for per-worker resources such as connections. worker_stop() must end
     * every pending check of that worker (calling ratelimit_done) and close
     * the worker's handles.
     */
    int (*worker_start)(void *state, uint32_t worker, void *loop);
    void (*worker_stop)(void *state, uint32_t worker, void *loop);
};

/* ------------------------------------------------------------------------ */
/* Cache stores (ABI 1.3)                                                    */
/* ------------------------------------------------------------------------ */

/** An entry a reader holds, opaque: from lookup(), given back with release(). */
struct fc_cache_entry;

/** A store in progress, opaque: from store_begin(), ended by store_commit() or store_abort(). */
struct fc_cache_store;

/** Bytes of an entry, borrowed from the store for as long as the entry is held. */
struct fc_cache_span {
    const void *data;
    size_t len;
};

/** What lookup() says of the entry it found. */
struct fc_cache_hit {
    uint32_t size;             /**< sizeof(struct fc_cache_hit) as the host knows it */
    struct fc_cache_span meta; /**< the core's bytes as given to store_begin() or update_meta() */
    uint64_t body_len;         /**< bytes of body stored */
};

/** What usage() reports. */
struct fc_cache_usage {
    uint32_t size;      /**< sizeof(struct fc_cache_usage) as the host knows it */
    uint64_t bytes;     /**< every byte held for the entries: keys, metas, bodies, bookkeeping */
    uint64_t max_bytes; /**< the store's limit on bytes, 0 for none */
    uint64_t entries;   /**< entries a lookup can find */
};

/** store_begin()'s body_len when the response has no Content-Length. */
#define FC_CACHE_LEN_UNKNOWN UINT64_MAX

/**
 * A cache store: keeps the responses the core decided to cache, as opaque
 * bytes under opaque keys. The core builds the keys (the pool's requests
 * told apart by target, host and the headers a Vary names) and the meta (its
 * serialised response head and freshness); the store keeps them exactly and
 * may drop any entry at any time (to stay within its size, say). Nothing of
 * HTTP is the store's business.
 *
 * One instance per pool, shared by every worker thread: create() and
 * destroy() run on the main thread; every other op may run on any thread,
 * concurrently with any op but those two, and must never block (a mutex
 * held for a few instructions is fine; I/O is not). The host reads the keys
 * it needs from the group itself; the plugin reads its own (max_bytes...).
 */
struct fc_cache_ops {
    uint32_t size; /**< sizeof(struct fc_cache_ops) as the plugin was built */

    /** Required. As fc_ratelimit_ops.create(). */
    int (*create)(const struct fc_host *host, void **state);

    /**
     * Optional. Frees what create() allocated; called once no entry is held
     * and no store is in progress.
     */
    void (*destroy)(void *state);

    /**
     * Required. Finds the entry of `key` (borrowed). Returns 1 with the
     * entry held in *entry and *hit filled (meta borrowed while held), or 0
     * when there is none. A held entry stays readable, unchanged, until
     * release(), even if it is replaced or removed meanwhile.
     */
    int (*lookup)(void *state, const void *key, size_t key_len, struct fc_cache_entry **entry,
                  struct fc_cache_hit *hit);

    /**
     * Required. The body of a held entry from byte `offset` on: fills up to
     * max_spans spans in order (the store's own memory, valid until
     * release()) and returns how many it filled, 0 at the end of the body.
     */
    int (*read)(void *state, struct fc_cache_entry *entry, uint64_t offset,
                struct fc_cache_span *spans, int max_spans);

    /** Required. Gives back an entry from lookup(); exactly once, on any thread. */
    void (*release)(void *state, struct fc_cache_entry *entry);

    /**
     * Required. Begins storing the response of `key` with the core's meta
     * (both copied). body_len is the body's length when known, else
     * FC_CACHE_LEN_UNKNOWN. Returns 0 with the store in *store, FC_E2BIG
     * when the store would not take an object that large, FC_ENOMEM. The
     * entry is not found by lookup() before store_commit(). One store is used
     * by one thread at a time (the core keeps it on the worker that began it).
     */
    int (*store_begin)(void *state, const void *key, size_t key_len, const void *meta,
                       size_t meta_len, uint64_t body_len, struct fc_cache_store **store);

    /**
     * Required. Appends body bytes (copied). Returns 0, FC_E2BIG once the
     * body grew past what the store takes, FC_ENOMEM; after an error the core
     * calls store_abort().
     */
    int (*store_append)(void *state, struct fc_cache_store *store, const void *data, size_t len);

    /**
     * Required. Makes the entry found by lookup(), replacing the key's
     * previous entry (whose readers keep theirs until they release it); the
     * store may evict others to make room. Ends the store, whatever it
     * returns: 0, or a negative code when it kept nothing.
     */
    int (*store_commit)(void *state, struct fc_cache_store *store);

    /** Required. Ends the store, keeping nothing. */
    void (*store_abort)(void *state, struct fc_cache_store *store);

    /**
     * Required. Replaces the meta of a held entry (after a revalidation
     * said the body is still good) for later lookups of its key, keeping
     * the body; the held entry itself is unchanged. Returns 0, or FC_ENOENT
     * when the key no longer leads to this entry (replaced or removed).
     */
    int (*update_meta)(void *state, struct fc_cache_entry *entry, const void *meta,
                       size_t meta_len);

    /**
     * Required. Removes every entry whose key starts with the prefix_len
     * bytes of `prefix` (every entry for 0). Held entries stay readable
     * until released. Returns how many it removed.
     */
    int64_t (*remove)(void *state, const void *prefix, size_t prefix_len);

    /** Required. Fills *usage (its size field set by the host). */
    void (*usage)(void *state, struct fc_cache_usage *usage);
};

/* ------------------------------------------------------------------------ */
/* The descriptor                                                            */
/* ------------------------------------------------------------------------ */

/**
 * The one exported symbol of a plugin. Static, const data: the host reads it
 * right after loading the file and checks it before calling any op. (Loading
 * runs the object's ELF constructors, if it has any, before that: a plugin
 * should have none.)
 */
struct fc_plugin_descriptor {
    uint32_t magic;          /**< FC_PLUGIN_MAGIC */
    uint16_t abi_major;      /**< FC_ABI_MAJOR the plugin was built against */
    uint16_t abi_minor;      /**< FC_ABI_MINOR the plugin was built against */
    uint32_t size;           /**< sizeof(struct fc_plugin_descriptor) */
    uint32_t kind;           /**< enum fc_plugin_kind */
    const char *name;        /**< short name, e.g. "round_robin" */
    const char *version;     /**< the plugin's own version, e.g. "1.0.0" */
    const char *description; /**< one line for `fulcrum -t` and logs */
    /** Exactly one of these, matching kind; the others NULL. */
    const struct fc_strategy_ops *strategy;
    const struct fc_health_ops *health;
    const struct fc_ratelimit_ops *ratelimit;
    /* ---- ABI 1.3 ---- */
    const struct fc_cache_ops *cache;
};

/**
 * Defines the exported descriptor. Use once per plugin, e.g.
 *
 *   FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "mine",
 *                        .version = "1.0.0", .description = "...",
 *                        .strategy = &mine_ops);
 */
#define FC_PLUGIN_DESCRIPTOR(...)                                                                  \
    FC_PLUGIN_EXPORT const struct fc_plugin_descriptor fc_plugin = {                               \
        .magic = FC_PLUGIN_MAGIC,                                                                  \
        .abi_major = FC_ABI_MAJOR,                                                                 \
        .abi_minor = FC_ABI_MINOR,                                                                 \
        .size = sizeof(struct fc_plugin_descriptor),                                               \
        __VA_ARGS__}

#ifdef __cplusplus
}
#endif

#endif /* FULCRUM_PLUGIN_H */
