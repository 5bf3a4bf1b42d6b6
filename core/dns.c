/*
 * c-ares channels with fulcrum's bounds, and the one lookup that waits: the
 * configuration loader's (see dns.h for where it runs).
 */
#include "dns.h"

#include <fulcrum/plugin.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>

const char *const fc_dns_result_names[FC_DNS_RESULTS] = {
    "ok", "nxdomain", "empty", "timeout", "malformed", "oversized", "error"};

enum fc_dns_result fc_dns_result_of(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return FC_DNS_OK;
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
        return FC_DNS_NXDOMAIN;
    case ARES_ENODATA:
        return FC_DNS_EMPTY;
    case ARES_ETIMEOUT:
        return FC_DNS_TIMEOUT;
    case ARES_EBADRESP:
    case ARES_EFORMERR:
        return FC_DNS_MALFORMED;
    default: /* SERVFAIL, REFUSED, a refused connection, out of memory... */
        return FC_DNS_ERROR;
    }
}

int fc_dns_library_init(void)
{
    return ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS ? 0 : FC_ERROR;
}

int fc_dns_channel(ares_channel *out, const char *servers, int optmask, struct ares_options *opts,
                   const char **why)
{
    struct ares_options o = {0};
    if (opts != NULL)
        o = *opts;
    o.timeout = FC_DNS_TIMEOUT_MS;
    o.tries = FC_DNS_TRIES;
    int rc = ares_init_options(out, &o, optmask | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        *why = ares_strerror(rc);
        return rc == ARES_ENOMEM ? FC_ENOMEM : FC_ERROR;
    }
    if (servers != NULL && (rc = ares_set_servers_ports_csv(*out, servers)) != ARES_SUCCESS) {
        *why = ares_strerror(rc);
        ares_destroy(*out);
        return rc == ARES_ENOMEM ? FC_ENOMEM : FC_EINVAL;
    }
    return 0;
}

struct lookup {
    int done;
    int status;
    struct sockaddr_storage addr;
    socklen_t len;
};

static void lookup_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct lookup *l = arg;
    l->done = 1;
    l->status = status;
    if (status == ARES_SUCCESS) {
        const struct ares_addrinfo_node *pick = NULL;
        for (const struct ares_addrinfo_node *n = res->nodes; n != NULL; n = n->ai_next) {
            if ((size_t)n->ai_addrlen > sizeof(l->addr))
                continue;
            if (pick == NULL || (n->ai_family == AF_INET && pick->ai_family != AF_INET))
                pick = n;
        }
        if (pick == NULL) {
            l->status = ARES_ENODATA;
        } else {
            memcpy(&l->addr, pick->ai_addr, pick->ai_addrlen);
            l->len = (socklen_t)pick->ai_addrlen;
        }
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
}

/* Runs the channel until the lookup has called back (bounded by the channel's timeouts). */
static void wait_for(ares_channel ch, const struct lookup *l)
{
    while (!l->done) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        /* The bits read as unsigned: c-ares's own macros shift a signed 1 into the sign bit. */
        unsigned bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        int n = 0;
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = (short)(((bits >> i) & 1u ? POLLIN : 0) |
                               ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u ? POLLOUT : 0));
            if (ev == 0)
                continue;
            pfd[n].fd = socks[i];
            pfd[n].events = ev;
            pfd[n].revents = 0;
            n++;
        }
        struct timeval tv, *tvp = ares_timeout(ch, NULL, &tv);
        int ms = tvp != NULL ? (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000) : 100;
        int ready = poll(pfd, (nfds_t)n, ms);
        if (ready <= 0) {
            ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* the timeouts */
            continue;
        }
        for (int i = 0; i < n; i++)
            ares_process_fd(
                ch, pfd[i].revents & (POLLIN | POLLERR | POLLHUP) ? pfd[i].fd : ARES_SOCKET_BAD,
                pfd[i].revents & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD);
    }
}

int fc_dns_lookup(const char *name, int family, uint16_t port, const char *servers,
                  struct sockaddr_storage *out, socklen_t *len, const char **why)
{
    /* An address literal needs no channel (nor a resolv.conf). */
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (family != AF_INET6 && inet_pton(AF_INET, name, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, name, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof(*a6);
        return 0;
    }
    if (family == AF_INET6) {
        *why = "invalid IPv6 address";
        return FC_EINVAL;
    }

    ares_channel ch;
    int rc = fc_dns_channel(&ch, servers, 0, NULL, why);
    if (rc != 0)
        return rc;
    struct lookup l = {0};
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    ares_getaddrinfo(ch, name, NULL, &hints, lookup_cb, &l);
    wait_for(ch, &l);
    ares_destroy(ch);
    if (l.status != ARES_SUCCESS) {
        *why = l.status == ARES_ENOMEM ? "out of memory" : ares_strerror(l.status);
        return l.status == ARES_ENOMEM ? FC_ENOMEM : FC_EINVAL;
    }
    *out = l.addr;
    *len = l.len;
    if (out->ss_family == AF_INET6)
        a6->sin6_port = htons(port);
    else
        a4->sin_port = htons(port);
    return 0;
}

/*
 * c-ares 1.18's ares_parse_srv_reply() keeps no TTL, so the answer
 * section is walked here: names skipped with ares_expand_name(), every
 * length checked against alen.
 */
int64_t fc_dns_srv_ttl(const unsigned char *abuf, int alen)
{
    if (alen < 12)
        return -1;
    unsigned qd = (unsigned)abuf[4] << 8 | abuf[5], an = (unsigned)abuf[6] << 8 | abuf[7];
    const unsigned char *p = abuf + 12, *end = abuf + alen;
    int64_t least = -1;
    for (unsigned i = 0; i < qd + an; i++) {
        char *name;
        long enclen;
        if (ares_expand_name(p, abuf, alen, &name, &enclen) != ARES_SUCCESS)
            return -1;
        ares_free_string(name);
        p += enclen;
        if (i < qd) { /* a question: type and class */
            if (end - p < 4)
                return -1;
            p += 4;
            continue;
        }
        if (end - p < 10)
            return -1;
        unsigned type = (unsigned)p[0] << 8 | p[1];
        int64_t ttl =
            (int64_t)((uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7]);
        if (ttl > INT32_MAX)
            ttl = 0; /* RFC 2181 8: a TTL with the top bit set counts as 0 */
        unsigned rdlen = (unsigned)p[8] << 8 | p[9];
        p += 10;
        if ((size_t)(end - p) < rdlen)
            return -1;
        p += rdlen;
        if (type == ns_t_srv && (least < 0 || ttl < least))
            least = ttl;
    }
    return least;
}
