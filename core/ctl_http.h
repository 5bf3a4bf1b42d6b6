/*
 * The HTTP client of `fulcrum ctl` (ctl.h): one request at a time to the
 * admin listener, over TCP or a unix socket, each on a fresh connection
 * ("Connection: close"). Blocking, with one deadline for the whole exchange:
 * the command is short-lived and does nothing else meanwhile, so there is no
 * event loop to keep free. Not used by the daemon.
 */
#ifndef FC_CTL_HTTP_H
#define FC_CTL_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

/** Where the admin listener is. */
struct fc_ctl_endpoint {
    char *display; /**< as given ("127.0.0.1:9901", "unix:/run/fulcrum/admin.sock"); owned */
    char *host;    /**< the Host header: the TCP address as given, "localhost" for a socket */
    struct sockaddr_storage addr; /**< a sockaddr_in, sockaddr_in6 or sockaddr_un */
    socklen_t addr_len;
};

/** One request. Strings are borrowed for the call. */
struct fc_ctl_request {
    const char *method; /**< "GET", "POST", "PATCH", "DELETE" */
    const char *path;   /**< already percent-encoded, starting with '/' */
    const char *token;  /**< sent as "Authorization: Bearer TOKEN"; NULL: none */
    const char *body;   /**< a JSON document, or NULL for none */
    int timeout_ms;     /**< for the whole exchange: connect, send, receive */
};

/** What came back. The body is NUL-terminated (not counted in body_len); owned. */
struct fc_ctl_response {
    int status;
    char *body;
    size_t body_len;
};

/** What fc_ctl_http_request() returns besides 0. */
enum {
    FC_CTL_HTTP_UNREACHABLE = -1, /**< no connection, or it broke before a response came */
    FC_CTL_HTTP_BROKEN = -2,      /**< the answer was no HTTP/1.x response, or too large */
    FC_CTL_HTTP_NOMEM = -3,
};

/**
 * Parses "IPv4:PORT", "[IPv6]:PORT", "HOST:PORT" (resolved now, first
 * result) or "unix:PATH" into *out. Returns 0, or FC_EINVAL with a reason in
 * *why (a static string, or one that stays valid until the next call), or
 * FC_ENOMEM. Free with fc_ctl_endpoint_free().
 */
int fc_ctl_endpoint_parse(const char *text, struct fc_ctl_endpoint *out, const char **why);

/** Frees what fc_ctl_endpoint_parse() stored; the endpoint is zeroed. */
void fc_ctl_endpoint_free(struct fc_ctl_endpoint *ep);

/**
 * Sends req to ep and reads the response. Returns 0 with *resp filled in
 * (whatever its status), or one of the FC_CTL_HTTP_* codes above with a
 * sentence saying what went wrong in err (cap bytes).
 */
int fc_ctl_http_request(const struct fc_ctl_endpoint *ep, const struct fc_ctl_request *req,
                        struct fc_ctl_response *resp, char *err, size_t cap);

/** Frees the body; NULL-safe, and the response is zeroed. */
void fc_ctl_response_free(struct fc_ctl_response *resp);

/**
 * A path segment percent-encoded: every byte but the unreserved ones of RFC
 * 3986 (ALPHA, DIGIT, '-', '.', '_', '~') becomes %XX, so that "[::1]:9004"
 * is "%5B%3A%3A1%5D%3A9004" and a '/' in a name stays inside its segment.
 * Returns a malloc'd string, or NULL when out of memory.
 */
char *fc_ctl_path_escape(const char *segment);

#endif
