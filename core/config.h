/*
 * The configuration file (libconfig syntax, schema v1) loaded into a validated,
 * immutable structure. A struct fc_config owns everything it points to,
 * including the parsed libconfig tree, which plugin instances read their own
 * keys from while they are created.
 */
#ifndef FC_CONFIG_H
#define FC_CONFIG_H

#include <libconfig.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

struct fc_tls_server; /* tls_context.h */
struct fc_tls_client;

/** A `strategy`, `health`, `rate_limit` or `cache` group: which plugin, and its own keys. */
struct fc_conf_plugin {
    char *name; /**< value of `plugin`; NULL when the group is absent */
    char *path; /**< resolved file: <plugin_dir>/<name>.so, or name if it has a '/' */
    const config_setting_t *group; /**< the group, owned by fc_config.lc */
    int line;                      /**< line of the group */
};

/** How a backend entry of the file finds its addresses. */
enum fc_discover {
    FC_DISCOVER_NONE = 0, /**< one backend: `addr`, resolved once when the file loads */
    FC_DISCOVER_HOST = 1, /**< `resolve = true`: every A/AAAA answer for dns_name, at `port` */
    FC_DISCOVER_SRV = 2,  /**< "srv:NAME": the SRV records of dns_name (targets, ports, weights) */
};

struct fc_conf_backend {
    char *address; /**< as written: "127.0.0.1:9001", "[::1]:9001", "localhost:9001", "srv:..." */
    struct sockaddr_storage addr; /**< FC_DISCOVER_NONE only */
    socklen_t addr_len;
    uint32_t weight; /**< default 1, 1..1000; each answer's, for FC_DISCOVER_HOST */
    int line;
    uint8_t discover; /**< enum fc_discover */
    char *dns_name;   /**< the name queried (discover != NONE), owned */
    uint16_t port;    /**< FC_DISCOVER_HOST: the port of every address */
};

/** The keys of a `health` group that the core reads itself (the scheduler and rise/fall). */
struct fc_conf_health {
    uint32_t interval_ms; /**< default 2000: time between two probes of a backend */
    uint32_t timeout_ms;  /**< default 1000: a probe still running then has failed */
    uint32_t rise;        /**< default 2: consecutive passes that bring a backend up */
    uint32_t fall;        /**< default 3: consecutive failures that take it down */
    int initial_up;       /**< `initial`: "up" (default) or "down", for a backend new to the pool */
};

/** The key of a `rate_limit` group that the core reads itself. */
struct fc_conf_ratelimit {
    char *header; /**< `key = "header:NAME"`: NAME; NULL: the client address (the default) */
};

/** What a pool's `retry_on` retries on another backend (bits of fc_conf_pool.retry_on). */
enum fc_retry_on {
    FC_RETRY_CONNECT =
        1u << 0, /**< the connect failed or timed out (any request: nothing was sent) */
    FC_RETRY_RESET = 1u << 1, /**< the connection ended before a response head */
    FC_RETRY_502 = 1u << 2,   /**< the backend answered 502 */
    FC_RETRY_503 = 1u << 3,   /**< the backend answered 503 */
    FC_RETRY_504 = 1u << 4,   /**< 504, or no response head within upstream_ms */
};

struct fc_conf_pool {
    char *name;
    int line;
    struct fc_conf_plugin strategy;           /**< required */
    struct fc_conf_plugin health;             /**< optional: name == NULL when absent */
    struct fc_conf_health health_conf;        /**< valid when health.name != NULL */
    struct fc_conf_plugin rate_limit;         /**< optional: name == NULL when absent */
    struct fc_conf_ratelimit rate_limit_conf; /**< valid when rate_limit.name != NULL */
    struct fc_conf_plugin cache;              /**< optional: name == NULL when absent */
    uint32_t retries;                         /**< default 1 */
    unsigned retry_on;  /**< enum fc_retry_on bits; default FC_RETRY_CONNECT */
    uint32_t max_fails; /**< default 3: consecutive failures that mark a backend down; 0 off */
    uint32_t fail_timeout_ms; /**< default 10000: how long a passively marked backend stays down */
    struct fc_conf_backend *backends;
    uint32_t n_backends;          /**< at least 1 */
    uint32_t n_discover;          /**< entries of `backends` that DNS fills (discover != NONE) */
    uint32_t resolve_interval_ms; /**< default 5000: how often those are queried again */
    struct fc_tls_client *tls;    /**< `tls`: TLS to the backends, owned; NULL: plain TCP */
};

struct fc_conf_listener {
    char *address; /**< as written */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint32_t pool; /**< index into fc_config.pools */
    int line;
    struct fc_tls_server *tls; /**< `tls`: certificates and settings, owned; NULL: plain TCP */
    int defer_accept;          /**< `defer_accept` (default true): TCP_DEFER_ACCEPT */
};

struct fc_conf_route {
    char *host;        /**< NULL: any host; matched case-insensitively, port ignored */
    char *path_prefix; /**< NULL: any path */
    uint32_t pool;     /**< index into fc_config.pools */
    int line;
};

/**
 * The `admin` group: where the admin listener (admin.h) listens, and the
 * bearer token its requests must carry.
 */
struct fc_conf_admin {
    char *address; /**< as written: "127.0.0.1:9901", "[::1]:9901" or "unix:/run/admin.sock" */
    struct sockaddr_storage addr; /**< a TCP address; unset for a unix socket */
    socklen_t addr_len;           /**< 0 for a unix socket */
    char *unix_path;              /**< the socket's file for "unix:PATH" (resolved), else NULL */
    char *token_file;             /**< `token_file`, resolved; NULL when absent */
    char *token;                  /**< its content without surrounding whitespace; NULL: no token */
    int line;                     /**< line of `address` */
    int token_line;               /**< line of `token_file`; 0 when absent */
};

enum fc_access_log_kind {
    FC_ACCESS_LOG_OFF = 0,
    FC_ACCESS_LOG_STDOUT = 1,
    FC_ACCESS_LOG_FILE = 2,
};

struct fc_config {
    char *path;  /**< the file as given */
    char *dir;   /**< its folder, against which relative paths resolve */
    config_t lc; /**< parsed tree, kept for plugin keys */

    uint32_t workers; /**< resolved: 0 in the file becomes the number of CPUs */
    char *plugin_dir; /**< resolved; default "plugins" next to the file */
    int log_level;    /**< enum fc_log_level; default info */
    enum fc_access_log_kind access_log;
    char *access_log_path;     /**< for FC_ACCESS_LOG_FILE, resolved */
    uint32_t log_buffer_bytes; /**< the access log's buffer in the log writer */
    int access_log_json;       /**< log.access_format = "json" (else "text") */

    struct {
        uint32_t connect_ms;       /**< default 2000 */
        uint32_t client_header_ms; /**< default 10000 */
        uint32_t idle_ms;          /**< default 60000 */
        uint32_t upstream_ms;      /**< default 30000 */
        uint32_t shutdown_ms;      /**< default 10000: how long SIGTERM waits for requests */
        uint32_t half_close_ms;    /**< default 100: a client's close this soon after its
                                        request is a half-close (answered), later an abort */
        uint32_t tunnel_ms;        /**< default 3600000: idle limit of a WebSocket tunnel */
    } timeouts;

    struct {
        uint32_t max_header_bytes; /**< default 16384, 1024..1048576: larger heads get 431 */
        uint64_t max_body_bytes;   /**< default 0 = unlimited: larger bodies get 413 */
        /**
         * Open client connections over all workers; at the limit, listeners
         * pause and new connections wait in the kernel's backlog. Default
         * (and 0): fc_config_default_max_connections().
         */
        uint32_t max_connections;
    } limits;

    struct fc_conf_listener *listeners;
    uint32_t n_listeners; /**< at least 1 */
    struct fc_conf_route *routes;
    uint32_t n_routes;
    struct fc_conf_pool *pools;
    uint32_t n_pools; /**< at least 1 */

    int has_admin; /**< the file has an `admin` group: `admin` is valid; else no admin listener */
    struct fc_conf_admin admin;

    /**
     * `resolvers`: the DNS servers every lookup asks, as c-ares takes them
     * ("127.0.0.1:8600,[::1]:53"); NULL: those of /etc/resolv.conf.
     */
    char *resolvers;
    char *state_file; /**< `state_file`, resolved: where runtime changes are kept; NULL: not kept */
    int state_file_line; /**< its line; 0 when absent */

    uint32_t refs; /**< generations built on it (a runtime change reuses the file's config) */
};

/**
 * Loads and validates `path`. On success stores a new config in *out and
 * returns 0. On failure logs every error found, each as
 * "FILE:LINE: KEY: what is wrong" through fc_log(FC_LOG_ERROR), and returns
 * FC_EINVAL (or FC_ENOMEM). Plugins are not loaded here; the admin token
 * file is read here, so that `fulcrum -t` and a reload check it.
 */
int fc_config_load(const char *path, struct fc_config **out);

/**
 * The default of limits.max_connections: half the descriptors RLIMIT_NOFILE
 * allows once 128 are set aside (logs, plugins, listeners, health checks),
 * since each client connection may hold an upstream connection too; at
 * least 16.
 */
uint32_t fc_config_default_max_connections(void);

/** Takes one more reference to a loaded config (fc_config_load() returns it with one). */
void fc_config_acquire(struct fc_config *cfg);

/** Drops a reference to a config; the last frees it. NULL is accepted. */
void fc_config_free(struct fc_config *cfg);

/**
 * Parses "IPv4:port", "[IPv6]:port" or "name:port". A name is resolved
 * through c-ares (fc_dns_lookup(): the first IPv4 address, else the first
 * IPv6 one), waiting for the answer: never call it on a loop that serves.
 * Returns 0 or FC_EINVAL with a reason in `why`.
 */
int fc_config_parse_address(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                            const char **why);

/** As fc_config_parse_address(), asking `servers` (the `resolvers` key; NULL: the system's). */
int fc_config_parse_address_with(const char *text, const char *servers,
                                 struct sockaddr_storage *addr, socklen_t *len, const char **why);

/**
 * Splits "host:port" (or "[IPv6]:port", or "IPv4:port") without resolving
 * anything: the host into name (cap bytes), the port. 0 or FC_EINVAL (why).
 */
int fc_config_split_host(const char *text, char *name, size_t cap, uint16_t *port,
                         const char **why);

/** 1 when `name` is an IPv4 or IPv6 address literal (no brackets, no port). */
int fc_config_is_ip(const char *name);

/**
 * As fc_config_parse_address(), but only an IP address is taken: no name is
 * resolved (the runtime API, on the main loop, must not wait for DNS).
 */
int fc_config_parse_ip_address(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                               const char **why);

/** Writes an address the one way it is shown: "127.0.0.1:9004", "[::1]:9004". */
void fc_config_format_address(const struct sockaddr_storage *addr, char *out, size_t cap);

#endif
