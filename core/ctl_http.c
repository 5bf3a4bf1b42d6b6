/*
 * The blocking HTTP client of `fulcrum ctl`; see ctl_http.h. The socket is
 * non-blocking and every wait is a poll() bounded by the request's deadline,
 * so that neither a connect to a black hole nor a server that trickles bytes
 * can hold the command past it. The response is parsed with llhttp (as the
 * daemon parses requests), so any framing the admin listener may use,
 * Content-Length, chunked or the end of the connection, is read right.
 */
#include "ctl_http.h"

#include "config.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <fulcrum/plugin.h>
#include <llhttp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The largest response body accepted: a status document of thousands of backends fits. */
#define MAX_BODY_BYTES (64u * 1024 * 1024)

int fc_ctl_endpoint_parse(const char *text, struct fc_ctl_endpoint *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->addr;
        if (path[0] == '\0') {
            *why = "expected a path after \"unix:\"";
            return FC_EINVAL;
        }
        if (strlen(path) >= sizeof(sun->sun_path)) {
            *why = "the socket's path is too long";
            return FC_EINVAL;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, strlen(path) + 1);
        out->addr_len = (socklen_t)sizeof(*sun);
        out->host = strdup("localhost");
    } else {
        if (fc_config_parse_address(text, &out->addr, &out->addr_len, why) != 0)
            return FC_EINVAL;
        out->host = strdup(text);
    }
    out->display = strdup(text);
    if (out->display == NULL || out->host == NULL) {
        fc_ctl_endpoint_free(out);
        return FC_ENOMEM;
    }
    return 0;
}

void fc_ctl_endpoint_free(struct fc_ctl_endpoint *ep)
{
    free(ep->display);
    free(ep->host);
    memset(ep, 0, sizeof(*ep));
}

void fc_ctl_response_free(struct fc_ctl_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

char *fc_ctl_path_escape(const char *segment)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(segment);
    char *out = malloc(n * 3 + 1);
    if (out == NULL)
        return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)segment; *p; p++) {
        if (unreserved(*p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- one exchange ------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What one exchange carries from step to step. */
struct exchange {
    const struct fc_ctl_endpoint *ep;
    int fd;
    int64_t deadline_ms;
    char *err;
    size_t cap;
    /* The response as llhttp reports it. */
    llhttp_t parser;
    struct fc_text body;
    int complete;
    int too_large;
};

static int fail(struct exchange *x, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct exchange *x, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err, x->cap, fmt, ap);
    va_end(ap);
    return code;
}

/* Waits until fd is ready for `events`; 0, or -ETIMEDOUT at the deadline, or -errno. */
static int wait_for(struct exchange *x, short events)
{
    for (;;) {
        int64_t left = x->deadline_ms - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = x->fd, .events = events};
        int n = poll(&pfd, 1, (int)left);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int connect_endpoint(struct exchange *x)
{
    x->fd = socket(x->ep->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (x->fd < 0)
        return fail(x, FC_CTL_HTTP_UNREACHABLE, "cannot connect to %s: %s", x->ep->display,
                    strerror(errno));
    if (connect(x->fd, (const struct sockaddr *)&x->ep->addr, x->ep->addr_len) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return fail(x, FC_CTL_HTTP_UNREACHABLE, "cannot connect to %s: %s", x->ep->display,
                    strerror(errno));
    int rc = wait_for(x, POLLOUT);
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (rc == 0 && getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        rc = -errno;
    else if (rc == 0 && soerr != 0)
        rc = -soerr;
    if (rc == -ETIMEDOUT)
        return fail(x, FC_CTL_HTTP_UNREACHABLE,
                    "cannot connect to %s: no answer within the timeout", x->ep->display);
    if (rc != 0)
        return fail(x, FC_CTL_HTTP_UNREACHABLE, "cannot connect to %s: %s", x->ep->display,
                    strerror(-rc));
    return 0;
}

static int send_all(struct exchange *x, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(x->fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        int rc = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? wait_for(x, POLLOUT)
                 : n < 0                                            ? -errno
                                                                    : -EPIPE;
        if (rc != 0)
            return fail(x, FC_CTL_HTTP_UNREACHABLE, "cannot send the request to %s: %s",
                        x->ep->display, rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
    }
    return 0;
}

static int send_request(struct exchange *x, const struct fc_ctl_request *req)
{
    struct fc_text head = {0};
    size_t body_len = req->body != NULL ? strlen(req->body) : 0;
    fc_text_printf(&head,
                   "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fulcrum-ctl/%s\r\n"
                   "Accept: application/json\r\nConnection: close\r\n",
                   req->method, req->path, x->ep->host, FC_VERSION);
    if (req->token != NULL)
        fc_text_printf(&head, "Authorization: Bearer %s\r\n", req->token);
    if (req->body != NULL)
        fc_text_printf(&head, "Content-Type: application/json\r\n");
    /* Every request but a GET says how long its body is, an empty one too. */
    if (req->body != NULL || strcmp(req->method, "GET") != 0)
        fc_text_printf(&head, "Content-Length: %zu\r\n", body_len);
    fc_text_printf(&head, "\r\n");
    if (req->body != NULL)
        fc_text_append(&head, req->body, body_len);
    int rc = head.oom ? fail(x, FC_CTL_HTTP_NOMEM, "out of memory") : send_all(x, head.p, head.len);
    if (head.p != NULL && req->token != NULL)
        explicit_bzero(head.p, head.len); /* the token does not linger in freed memory */
    fc_text_free(&head);
    return rc;
}

static struct exchange *exchange_of(llhttp_t *p)
{
    return (struct exchange *)((char *)p - offsetof(struct exchange, parser));
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct exchange *x = exchange_of(p);
    if (x->body.len + len > MAX_BODY_BYTES) {
        x->too_large = 1;
        return HPE_USER;
    }
    fc_text_append(&x->body, at, len);
    return x->body.oom ? HPE_USER : HPE_OK;
}

/* A 1xx is no answer yet: only the final response completes the exchange. */
static int on_message_complete(llhttp_t *p)
{
    struct exchange *x = exchange_of(p);
    if (p->status_code >= 200)
        x->complete = 1;
    else
        x->body.len = 0;
    return HPE_OK;
}

static int parse_error(struct exchange *x, llhttp_errno_t e)
{
    if (x->too_large)
        return fail(x, FC_CTL_HTTP_BROKEN, "%s answered with more than %u bytes", x->ep->display,
                    MAX_BODY_BYTES);
    if (x->body.oom)
        return fail(x, FC_CTL_HTTP_NOMEM, "out of memory");
    return fail(x, FC_CTL_HTTP_BROKEN, "%s did not answer with HTTP/1.1: %s", x->ep->display,
                llhttp_errno_name(e));
}

/* Reads and parses until the response is complete, the connection ends, or the deadline. */
static int read_response(struct exchange *x)
{
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    llhttp_init(&x->parser, HTTP_RESPONSE, &settings);
    char buf[16384];
    int got_any = 0;
    while (!x->complete) {
        ssize_t n = recv(x->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_for(x, POLLIN);
            if (rc != 0)
                return fail(x, FC_CTL_HTTP_UNREACHABLE, "no answer from %s: %s", x->ep->display,
                            rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
            continue;
        }
        if (n < 0)
            return fail(x, FC_CTL_HTTP_UNREACHABLE, "no answer from %s: %s", x->ep->display,
                        strerror(errno));
        if (n == 0) {
            /* A body delimited by the close ends here; any other response was cut short. */
            llhttp_errno_t e = got_any ? llhttp_finish(&x->parser) : HPE_OK;
            if (e != HPE_OK)
                return parse_error(x, e);
            if (!x->complete)
                return fail(x, FC_CTL_HTTP_UNREACHABLE,
                            "%s closed the connection before its answer was complete",
                            x->ep->display);
            break;
        }
        got_any = 1;
        llhttp_errno_t e = llhttp_execute(&x->parser, buf, (size_t)n);
        if (e != HPE_OK)
            return parse_error(x, e);
    }
    return 0;
}

int fc_ctl_http_request(const struct fc_ctl_endpoint *ep, const struct fc_ctl_request *req,
                        struct fc_ctl_response *resp, char *err, size_t cap)
{
    memset(resp, 0, sizeof(*resp));
    struct exchange x = {
        .ep = ep, .fd = -1, .deadline_ms = now_ms() + req->timeout_ms, .err = err, .cap = cap};
    int rc = connect_endpoint(&x);
    if (rc == 0)
        rc = send_request(&x, req);
    if (rc == 0)
        rc = read_response(&x);
    if (x.fd >= 0)
        close(x.fd);
    if (rc == 0) {
        /* An empty body has no buffer yet; the NUL terminator is not counted. */
        fc_text_append(&x.body, "", 1);
        if (x.body.oom) {
            rc = fail(&x, FC_CTL_HTTP_NOMEM, "out of memory");
        } else {
            resp->status = x.parser.status_code;
            resp->body = x.body.p;
            resp->body_len = x.body.len - 1;
            return 0;
        }
    }
    fc_text_free(&x.body);
    return rc;
}
