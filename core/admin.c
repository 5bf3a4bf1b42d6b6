/*
 * The admin listener; see admin.h. This file holds its listening sockets,
 * its connections (accepting, reading, the timer, lingering, closing) and
 * the public functions; one request is admin_request.c's, an event stream
 * admin_stream.c's, a response body admin_body.c's.
 *
 * Bounds, so that no client holds more than a little of the main thread: a
 * head of FC_ADMIN_MAX_HEAD bytes (else 431), a body of FC_ADMIN_MAX_BODY
 * (else 413), FC_ADMIN_REQUEST_MS from a request's first byte to its end
 * (else 408), FC_ADMIN_IDLE_MS for a keep-alive connection without a
 * request or a response that the client does not take, MAX_CONNS
 * connections (more are closed at once), FC_ADMIN_MAX_STREAMS event streams
 * (more get 503), and FC_ADMIN_STREAM_BUFFER bytes queued on a stream (more
 * close it). A response that ends the connection (400, 408, 413, 431) is
 * followed by a lingering close, so that the client reads it before any
 * reset.
 *
 * Memory: a connection is freed in the close callback of its last handle,
 * after libuv has called back every write it still had; a listening socket
 * in its close callback; struct fc_admin after fc_admin_destroy(), once the
 * last of those has gone.
 */
#include "admin_conn.h"

#include "config.h"
#include "listener.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64
#define BACKLOG 64

/* A listening socket: TCP or unix. */
struct fc_admin_server {
    union fc_admin_handle h;
    struct fc_admin *a; /* NULL for a socket that failed to start */
    char *address;      /* as configured, for logs */
    struct sockaddr_storage addr;
    socklen_t addr_len; /* 0: a unix socket */
    char *unix_path;    /* removed when the socket closes */
};

/* A connection over the limit, or one that no memory could be found for: accepted to be closed. */
struct reject {
    union fc_admin_handle h;
};

static void maybe_free(struct fc_admin *a)
{
    if (a->destroyed && a->live == 0)
        free(a);
}

static void free_token(char *token)
{
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

void fc_admin_conn_read_stop(struct fc_admin_conn *c)
{
    if (c->reading)
        uv_read_stop(&c->h.stream);
    c->reading = 0;
}

static void on_shutdown(uv_shutdown_t *req, int status);

/* Our side shut down, the client's input thrown away: see admin_conn.h for why. */
void fc_admin_conn_linger(struct fc_admin_conn *c)
{
    fc_admin_conn_read_stop(c);
    c->state = FC_ADMIN_CONN_LINGERING;
    fc_admin_conn_timer_arm(c, FC_ADMIN_LINGER_MS);
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, &c->h.stream, on_shutdown) != 0)
        fc_admin_conn_close(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct fc_admin_conn *c = req->data;
    if (c->state == FC_ADMIN_CONN_CLOSING)
        return;
    if (status < 0) {
        fc_admin_conn_close(c);
        return;
    }
    fc_admin_conn_read_start(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char sink[4096]; /* input read only to be thrown away; main thread only */
    struct fc_admin_conn *c = h->data;
    if (c->state == FC_ADMIN_CONN_READING) {
        buf->base = c->in + c->in_len;
        buf->len = FC_ADMIN_IN_CAP - c->in_len;
    } else {
        buf->base = sink;
        buf->len = sizeof(sink);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct fc_admin_conn *c = st->data;
    if (n == 0 || c->state == FC_ADMIN_CONN_CLOSING)
        return;
    if (n < 0 || c->state != FC_ADMIN_CONN_READING) {
        if (n < 0) /* the client left (or broke the connection): nothing to answer */
            fc_admin_conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    fc_admin_request_process(c);
}

void fc_admin_conn_read_start(struct fc_admin_conn *c)
{
    if (c->reading)
        return;
    if (uv_read_start(&c->h.stream, on_alloc, on_read) != 0) {
        fc_admin_conn_close(c);
        return;
    }
    c->reading = 1;
}

static void on_timer(uv_timer_t *t)
{
    struct fc_admin_conn *c = t->data;
    if (c->state == FC_ADMIN_CONN_READING && c->in_request) {
        char msg[64];
        snprintf(msg, sizeof(msg), "request not complete within %d ms", FC_ADMIN_REQUEST_MS);
        fc_admin_conn_reply_error(c, 408, msg, NULL, 1);
        return;
    }
    fc_admin_conn_close(c); /* idle, a response not taken, or lingering long enough */
}

void fc_admin_conn_timer_arm(struct fc_admin_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void conn_closed(uv_handle_t *h)
{
    struct fc_admin_conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct fc_admin *a = c->a;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    a->n_conns--;
    if (c->stream != NULL)
        fc_admin_stream_end(c->stream);
    free(c->body);
    free(c->out);
    free(c);
    a->live--;
    maybe_free(a);
}

void fc_admin_conn_close(struct fc_admin_conn *c)
{
    if (c->state == FC_ADMIN_CONN_CLOSING)
        return;
    c->state = FC_ADMIN_CONN_CLOSING;
    if (c->stream != NULL)
        c->stream->closing = 1;
    if (c->later != NULL)
        fc_admin_later_orphan(c->later);
    uv_close(&c->h.handle, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void reject_closed(uv_handle_t *h)
{
    free(h->data);
}

/*
 * Accepts a connection only to close it: over MAX_CONNS, or without memory
 * for it. It must be accepted, or libuv stops watching the socket.
 */
static void reject(struct fc_admin_server *sv)
{
    struct reject *r = malloc(sizeof(*r));
    if (r == NULL) {
        fc_log_error("admin %s: out of memory: a connection waits", sv->address);
        return;
    }
    if (sv->addr_len != 0)
        uv_tcp_init(sv->h.handle.loop, &r->h.tcp);
    else
        uv_pipe_init(sv->h.handle.loop, &r->h.pipe, 0);
    r->h.handle.data = r;
    uv_accept(&sv->h.stream, &r->h.stream);
    uv_close(&r->h.handle, reject_closed);
}

static void on_connection(uv_stream_t *st, int status)
{
    struct fc_admin_server *sv = st->data;
    struct fc_admin *a = sv->a;
    if (status < 0) {
        fc_log_warn("admin %s: accept: %s", sv->address, uv_strerror(status));
        return;
    }
    struct fc_admin_conn *c = NULL;
    if (a->n_conns >= MAX_CONNS) {
        fc_log_debug("admin %s: %d connections open: one more closed", sv->address, MAX_CONNS);
        reject(sv);
        return;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        fc_log_error("admin %s: out of memory for a connection", sv->address);
        reject(sv);
        return;
    }
    c->a = a;
    if (sv->addr_len != 0)
        uv_tcp_init(a->loop, &c->h.tcp);
    else
        uv_pipe_init(a->loop, &c->h.pipe, 0);
    uv_timer_init(a->loop, &c->timer);
    c->h.handle.data = c->timer.data = c;
    c->handles = 2;
    c->next = a->conns;
    if (a->conns != NULL)
        a->conns->prev = c;
    a->conns = c;
    a->n_conns++;
    a->live++;
    fc_admin_request_init(c);
    c->state = FC_ADMIN_CONN_READING;
    if (uv_accept(st, &c->h.stream) != 0) {
        fc_admin_conn_close(c);
        return;
    }
    if (sv->addr_len != 0)
        uv_tcp_nodelay(&c->h.tcp, 1);
    fc_admin_conn_timer_arm(c, FC_ADMIN_IDLE_MS);
    fc_admin_conn_read_start(c);
}

/* ------------------------------------------------------------------------ */
/* Listening sockets                                                         */
/* ------------------------------------------------------------------------ */

static void server_closed(uv_handle_t *h)
{
    struct fc_admin_server *sv = h->data;
    struct fc_admin *a = sv->a;
    free(sv->address);
    free(sv->unix_path);
    free(sv);
    if (a != NULL) {
        a->live--;
        maybe_free(a);
    }
}

static void server_close(struct fc_admin_server *sv)
{
    /* Removed while the socket is still ours: nobody else can have bound the path since. */
    if (sv->unix_path != NULL)
        unlink(sv->unix_path);
    uv_close(&sv->h.handle, server_closed);
}

/* Binds and listens on cfg's admin address; logs why not with file:line. */
static int server_open(struct fc_admin *a, const struct fc_config *cfg,
                       struct fc_admin_server **out)
{
    const struct fc_conf_admin *ca = &cfg->admin;
    const char *why = NULL;
    int fd = ca->unix_path != NULL ? fc_listen_unix(ca->unix_path, BACKLOG, &why)
                                   : fc_listen_socket_exclusive((const struct sockaddr *)&ca->addr,
                                                                ca->addr_len, BACKLOG);
    if (fd < 0) {
        if (why == NULL && fd == -EADDRINUSE)
            why = "address already in use (another fulcrum, or another server, listens there)";
        fc_log_error("%s:%d: admin.address \"%s\": %s", cfg->path, ca->line, ca->address,
                     why != NULL ? why : strerror(-fd));
        return fd;
    }
    struct fc_admin_server *sv = calloc(1, sizeof(*sv));
    if (sv == NULL || (sv->address = strdup(ca->address)) == NULL ||
        (ca->unix_path != NULL && (sv->unix_path = strdup(ca->unix_path)) == NULL)) {
        if (sv != NULL) {
            free(sv->address);
            free(sv);
        }
        if (ca->unix_path != NULL)
            unlink(ca->unix_path);
        close(fd);
        fc_log_error("%s:%d: admin.address \"%s\": out of memory", cfg->path, ca->line,
                     ca->address);
        return -ENOMEM;
    }
    memcpy(&sv->addr, &ca->addr, sizeof(sv->addr));
    sv->addr_len = ca->unix_path != NULL ? 0 : ca->addr_len;
    int rc;
    if (sv->addr_len != 0) {
        uv_tcp_init(a->loop, &sv->h.tcp);
        rc = uv_tcp_open(&sv->h.tcp, fd);
    } else {
        uv_pipe_init(a->loop, &sv->h.pipe, 0);
        rc = uv_pipe_open(&sv->h.pipe, fd);
    }
    sv->h.handle.data = sv;
    if (rc == 0)
        rc = uv_listen(&sv->h.stream, BACKLOG, on_connection);
    if (rc != 0) {
        fc_log_error("%s:%d: admin.address \"%s\": %s", cfg->path, ca->line, ca->address,
                     uv_strerror(rc));
        if (uv_fileno(&sv->h.handle, &(uv_os_fd_t){0}) != 0)
            close(fd);    /* not taken by the handle */
        server_close(sv); /* sv->a is NULL: it counts for nobody */
        return rc;
    }
    sv->a = a;
    a->live++;
    *out = sv;
    return 0;
}

static int same_place(const struct fc_admin_server *sv, const struct fc_conf_admin *ca)
{
    if (ca->unix_path != NULL || sv->unix_path != NULL)
        return ca->unix_path != NULL && sv->unix_path != NULL &&
               strcmp(ca->unix_path, sv->unix_path) == 0;
    if (sv->addr.ss_family != ca->addr.ss_family)
        return 0;
    if (sv->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&sv->addr;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&ca->addr;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&sv->addr;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&ca->addr;
    return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* ------------------------------------------------------------------------ */
/* Public functions                                                          */
/* ------------------------------------------------------------------------ */

int fc_admin_create(uv_loop_t *loop, const struct fc_config *cfg, struct fc_admin **out)
{
    *out = NULL;
    struct fc_admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->loop = loop;
    if (cfg->has_admin) {
        if (cfg->admin.token != NULL) {
            if ((a->token = strdup(cfg->admin.token)) == NULL) {
                free(a);
                return -ENOMEM;
            }
            a->token_len = strlen(a->token);
        }
        int rc = server_open(a, cfg, &a->server);
        if (rc != 0) {
            free_token(a->token);
            free(a);
            return rc;
        }
        fc_log_info("admin listening on %s%s", cfg->admin.address,
                    a->token != NULL ? " (token required)" : "");
    }
    *out = a;
    return 0;
}

static int add_route(struct fc_admin *a, const char *method, const char *path, unsigned flags,
                     const struct fc_admin_route *proto)
{
    if (method == NULL || method[0] == '\0' || path == NULL || path[0] != '/')
        return -EINVAL;
    unsigned n_params = 0;
    for (const char *p = path; (p = strstr(p, "/{}")) != NULL; p += 3)
        n_params += p[3] == '/' || p[3] == '\0';
    if (n_params > FC_ADMIN_MAX_PARAMS)
        return -EINVAL;
    for (size_t i = 0; i < a->n_routes; i++)
        if (strcmp(a->routes[i].method, method) == 0 && strcmp(a->routes[i].path, path) == 0)
            return -EEXIST;
    struct fc_admin_route *routes = realloc(a->routes, (a->n_routes + 1) * sizeof(*routes));
    if (routes == NULL)
        return -ENOMEM;
    a->routes = routes;
    struct fc_admin_route *r = &routes[a->n_routes];
    *r = *proto;
    r->method = strdup(method);
    r->path = strdup(path);
    if (r->method == NULL || r->path == NULL) {
        free(r->method);
        free(r->path);
        return -ENOMEM;
    }
    r->path_len = strlen(path);
    r->n_params = n_params;
    r->flags = flags;
    a->n_routes++;
    return 0;
}

int fc_admin_route(struct fc_admin *a, const char *method, const char *path, unsigned flags,
                   fc_admin_handler fn, void *arg)
{
    if (fn == NULL)
        return -EINVAL;
    struct fc_admin_route proto = {.fn = fn, .arg = arg};
    return add_route(a, method, path, flags, &proto);
}

int fc_admin_stream_route(struct fc_admin *a, const char *path, unsigned flags,
                          fc_admin_stream_open open, fc_admin_stream_closed closed, void *arg)
{
    if (open == NULL || closed == NULL)
        return -EINVAL;
    struct fc_admin_route proto = {.open = open, .closed = closed, .arg = arg};
    return add_route(a, "GET", path, flags, &proto);
}

int fc_admin_apply(struct fc_admin *a, const struct fc_config *cfg)
{
    const struct fc_conf_admin *ca = cfg->has_admin ? &cfg->admin : NULL;
    char *token = NULL;
    if (ca != NULL && ca->token != NULL && (token = strdup(ca->token)) == NULL) {
        fc_log_error("%s:%d: admin.token_file: out of memory", cfg->path, ca->token_line);
        return -ENOMEM;
    }
    struct fc_admin_server *fresh = NULL;
    int move = ca != NULL && (a->server == NULL || !same_place(a->server, ca));
    if (move) {
        int rc = server_open(a, cfg, &fresh);
        if (rc != 0) {
            free_token(token);
            return rc;
        }
    }

    int token_changed =
        (a->token == NULL) != (token == NULL) || (token != NULL && strcmp(a->token, token) != 0);
    free_token(a->token);
    a->token = token;
    a->token_len = token != NULL ? strlen(token) : 0;

    if (move || ca == NULL) {
        if (a->server != NULL) {
            if (ca == NULL)
                fc_log_info("admin listener on %s closed", a->server->address);
            server_close(a->server);
        }
        a->server = fresh;
        if (fresh != NULL)
            fc_log_info("admin listening on %s%s", ca->address,
                        token != NULL ? " (token required)" : "");
    } else if (strcmp(a->server->address, ca->address) != 0) {
        char *text = strdup(ca->address); /* the same socket, written another way */
        if (text != NULL) {
            free(a->server->address);
            a->server->address = text;
        }
    }
    for (struct fc_admin_conn *c = a->conns; c != NULL; c = c->next) {
        if (ca == NULL)
            fc_admin_conn_close(c);
        else if (token_changed && token != NULL && c->stream != NULL && c->stream->needs_token)
            fc_admin_conn_close(c); /* let in with a token (or none) that no longer opens it */
    }
    return 0;
}

void fc_admin_destroy(struct fc_admin *a)
{
    if (a == NULL)
        return;
    a->destroyed = 1;
    if (a->server != NULL) {
        server_close(a->server);
        a->server = NULL;
    }
    for (struct fc_admin_conn *c = a->conns; c != NULL; c = c->next)
        fc_admin_conn_close(c);
    for (size_t i = 0; i < a->n_routes; i++) {
        free(a->routes[i].method);
        free(a->routes[i].path);
    }
    free(a->routes);
    a->routes = NULL;
    a->n_routes = 0;
    free_token(a->token);
    a->token = NULL;
    maybe_free(a);
}
