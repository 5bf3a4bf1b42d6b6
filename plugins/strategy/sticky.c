/*
 * sticky: session affinity by cookie, as HAProxy's `cookie SRV insert` and
 * nginx Plus's `sticky cookie` do. A client without the cookie goes to the
 * eligible backend with the fewest requests in flight per unit of weight
 * (least_conn's choice, ties in rotation) and gets
 *
 *   Set-Cookie: fcsrv=VALUE; Path=/; HttpOnly; SameSite=Lax[; Secure][; Max-Age=N]
 *
 * with the response (fc_host.response_header_add(), ABI 1.2). A client that
 * sends the cookie back goes to that backend while it is eligible. A cookie
 * that names no backend of the pool (removed, drained out of it, never there,
 * or tampered with) or one that is down or already failed for this request
 * is ignored: the request is picked afresh and the cookie set again.
 *
 * The value is opaque and stable: the first 16 hex digits of
 * HMAC-SHA256(secret, address) of the backend's configured address. It is the
 * same on every worker, every fulcrum instance with the same `secret`, and
 * after restarts and reloads, and it does not change when backends are added,
 * removed or reordered (an index would). Without a `secret` of its own the
 * key is a constant, so the value hides the address only from someone who
 * does not know the backends' addresses; set `secret` to hide it from
 * everyone else too.
 *
 * Keys: cookie (default "fcsrv", a cookie-name token), max_age_s (default 0:
 * a session cookie, else Max-Age), httponly (default true), samesite
 * ("Lax" by default, "Strict", "None", or "" for none), secure ("auto" by
 * default: on TLS listeners only; "true"; "false"), secret (default: the
 * constant above).
 *
 * One instance per worker thread and pool; the table of values is built at
 * create() and only read afterwards, so picks take no lock.
 */
#include <fulcrum/plugin.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALUE_LEN 16 /* hex digits of the HMAC kept in the cookie: 64 bits */
#define DEFAULT_SECRET "fulcrum sticky"

enum secure { SECURE_AUTO, SECURE_ALWAYS, SECURE_NEVER };

struct sticky {
    const struct fc_host *host;
    const struct fc_pool_view *pool;
    uint32_t next;                 /* where the next least-loaded scan starts */
    char (*values)[VALUE_LEN + 1]; /* [n_backends]: each backend's cookie value */
    const char *cookie;            /* the cookie's name */
    char attrs[128];               /* "; Path=/; HttpOnly; SameSite=Lax; Max-Age=N" */
    enum secure secure;
};

static uint32_t instances;

static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!fc_is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

/* The cookie value of `address`: 16 hex digits of HMAC-SHA256(secret, address). */
static int value_of(const char *secret, const char *address, char out[VALUE_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)address,
             strlen(address), md, &md_len) == NULL ||
        md_len * 2 < VALUE_LEN)
        return FC_ERROR;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < VALUE_LEN / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[VALUE_LEN] = '\0';
    return 0;
}

static int read_config(struct sticky *s, const char **secret)
{
    const struct fc_host *h = s->host;
    s->cookie = "fcsrv";
    int64_t max_age = 0;
    int httponly = 1;
    const char *samesite = "Lax", *secure = "auto";
    *secret = DEFAULT_SECRET;
    if (h->config_string(h, "cookie", &s->cookie) == FC_EINVAL ||
        h->config_int(h, "max_age_s", &max_age) == FC_EINVAL ||
        h->config_bool(h, "httponly", &httponly) == FC_EINVAL ||
        h->config_string(h, "samesite", &samesite) == FC_EINVAL ||
        h->config_string(h, "secure", &secure) == FC_EINVAL ||
        h->config_string(h, "secret", secret) == FC_EINVAL)
        return FC_EINVAL;
    int bad = 0;
    if (!is_token(s->cookie)) {
        h->config_error(h, "cookie", "must be a cookie name (letters, digits, !#$%%&'*+-.^_`|~)");
        bad = 1;
    }
    if (max_age < 0 || max_age > 400LL * 86400) {
        h->config_error(h, "max_age_s", "must be 0 (a session cookie) to 34560000 (400 days)");
        bad = 1;
    }
    if (strcmp(secure, "auto") == 0) {
        s->secure = SECURE_AUTO;
    } else if (strcmp(secure, "true") == 0) {
        s->secure = SECURE_ALWAYS;
    } else if (strcmp(secure, "false") == 0) {
        s->secure = SECURE_NEVER;
    } else {
        h->config_error(h, "secure", "must be \"auto\", \"true\" or \"false\" (got \"%s\")",
                        secure);
        bad = 1;
    }
    if (strcmp(samesite, "Lax") != 0 && strcmp(samesite, "Strict") != 0 &&
        strcmp(samesite, "None") != 0 && samesite[0] != '\0') {
        h->config_error(h, "samesite", "must be \"Lax\", \"Strict\", \"None\" or \"\" (got \"%s\")",
                        samesite);
        bad = 1;
    } else if (strcmp(samesite, "None") == 0 && s->secure == SECURE_NEVER) {
        /* Browsers drop a SameSite=None cookie that is not Secure. */
        h->config_error(h, "samesite", "\"None\" needs secure = \"true\" or \"auto\"");
        bad = 1;
    }
    if ((*secret)[0] == '\0') {
        h->config_error(h, "secret", "must not be empty");
        bad = 1;
    }
    if (bad)
        return FC_EINVAL;
    int n = snprintf(s->attrs, sizeof(s->attrs), "; Path=/%s%s%s", httponly ? "; HttpOnly" : "",
                     samesite[0] ? "; SameSite=" : "", samesite);
    if (max_age > 0)
        snprintf(s->attrs + n, sizeof(s->attrs) - (size_t)n, "; Max-Age=%lld", (long long)max_age);
    return 0;
}

static int sticky_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct sticky *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return FC_ENOMEM;
    s->host = host;
    s->pool = pool;
    const char *secret;
    int rc = read_config(s, &secret);
    if (rc == 0 && pool->n_backends > 0 &&
        (s->values = calloc(pool->n_backends, sizeof(*s->values))) == NULL)
        rc = FC_ENOMEM;
    for (uint32_t i = 0; rc == 0 && i < pool->n_backends; i++)
        if (value_of(secret, pool->backends[i].address, s->values[i]) != 0) {
            host->log(host, FC_LOG_ERROR, "HMAC-SHA256 failed for %s", pool->backends[i].address);
            rc = FC_ERROR;
        }
    if (rc != 0) {
        free(s->values);
        free(s);
        return rc;
    }
    uint32_t k = __atomic_fetch_add(&instances, 1, __ATOMIC_RELAXED);
    s->next = pool->n_backends > 0 ? k % pool->n_backends : 0;
    *state = s;
    return 0;
}

static void sticky_destroy(void *state)
{
    struct sticky *s = state;
    free(s->values);
    free(s);
}

/* The backend the request's cookie names, when it is eligible; else -1. */
static int from_cookie(const struct sticky *s, const struct fc_pick_args *args)
{
    size_t len, vlen;
    const char *hdr = s->host->request_header(s->host, args->request, "cookie", &len);
    const char *v = fc_cookie_value(hdr, len, s->cookie, &vlen);
    if (v == NULL || vlen != VALUE_LEN)
        return -1;
    for (uint32_t i = 0; i < s->pool->n_backends; i++)
        if (memcmp(s->values[i], v, VALUE_LEN) == 0)
            return fc_backend_eligible(args, &s->pool->backends[i]) ? (int)i : -1;
    return -1; /* no backend of this pool has that value */
}

static int sticky_pick(void *state, const struct fc_pick_args *args)
{
    struct sticky *s = state;
    int i = from_cookie(s, args);
    if (i >= 0)
        return i;
    i = fc_pick_least_loaded(s->pool, args, &s->next);
    if (i < 0)
        return i;
    int secure =
        s->secure == SECURE_ALWAYS || (s->secure == SECURE_AUTO && (args->flags & FC_PICK_TLS));
    char line[256];
    snprintf(line, sizeof(line), "%s=%s%s%s", s->cookie, s->values[i], s->attrs,
             secure ? "; Secure" : "");
    if (s->host->response_header_add(s->host, args->request, "Set-Cookie", line) != 0)
        s->host->log(s->host, FC_LOG_WARN, "no room for the Set-Cookie of %s",
                     s->pool->backends[i].address);
    return i;
}

static const struct fc_strategy_ops sticky_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = sticky_create,
    .destroy = sticky_destroy,
    .pick = sticky_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "sticky", .version = "1.0.0",
                     .description = "session affinity by cookie, new clients to the least loaded",
                     .strategy = &sticky_ops);
