/*
 * TLS contexts; see tls_context.h.
 *
 * A listener with several certificates has one SSL_CTX per certificate, all
 * with the same settings, as nginx keeps one per server block: a handshake
 * starts on the first (the default), and the SNI callback moves it to the
 * context whose certificate holds the name the client asked for
 * (SSL_set_SSL_CTX). Session tickets and the session cache stay those of the
 * first context, so resumption works whichever certificate was picked.
 *
 * Ticket keys are OpenSSL's own, made at random for each context: a reload
 * builds new contexts, so the keys rotate with every reload (old tickets
 * then fall back to a full handshake).
 */
#include "tls_context.h"

#include "log.h"
#include "tls.h"

#include <fulcrum/plugin.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Mozilla's "intermediate" choice for TLS 1.2 (ECDHE with AES-GCM or
 * ChaCha20-Poly1305, then DHE for old clients); TLS 1.3 keeps OpenSSL's
 * suites, which are the same three Mozilla lists.
 */
#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"       \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

struct sni_name {
    char *name;     /**< lower case; "*.example.com" for a wildcard */
    uint32_t index; /**< its certificate */
};

struct fc_tls_server {
    struct fc_tls_server_settings s;
    unsigned char *alpn; /* the settings' copy */
    char *ciphers, *ciphersuites, *id;
    SSL_CTX **ctx;      /* [n]: one per certificate; ctx[0] is the default */
    char **names;       /* [n]: each certificate's names, joined for the logs */
    char **files;       /* [n]: each certificate's file, as configured */
    int64_t *not_after; /* [n]: the end of each certificate's validity, Unix time */
    uint32_t n;
    struct sni_name *sni;
    uint32_t n_sni;
};

struct fc_tls_client {
    SSL_CTX *ctx;
    char *server_name;
    int verify;
    uint64_t serial;
};

/* The last OpenSSL error, in words, or `fallback`; the queue is emptied. */
static const char *ssl_reason(char *buf, size_t cap, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (e == 0)
        return fallback;
    const char *r = ERR_reason_error_string(e);
    if (r == NULL) {
        ERR_error_string_n(e, buf, cap);
        return buf;
    }
    snprintf(buf, cap, "%s", r);
    return buf;
}

int fc_tls_parse_version(const char *text)
{
    if (strcmp(text, "TLSv1.2") == 0)
        return TLS1_2_VERSION;
    if (strcmp(text, "TLSv1.3") == 0)
        return TLS1_3_VERSION;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Listeners                                                                 */
/* ------------------------------------------------------------------------ */

static int name_matches(const char *pattern, const char *host)
{
    if (pattern[0] != '*')
        return strcmp(pattern, host) == 0;
    /* "*.example.com" stands for exactly one label: "a.example.com", not "example.com". */
    const char *dot = strchr(host, '.');
    return dot != NULL && dot != host && strcmp(dot, pattern + 1) == 0;
}

/*
 * Picks the certificate for the name the client sent: an exact name first,
 * then a wildcard, each in the order the certificates are configured; a
 * name none holds keeps the default.
 */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct fc_tls_server *srv = arg;
    const char *sent = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sent == NULL || srv->n < 2)
        return SSL_TLSEXT_ERR_OK;
    char host[256];
    size_t len = strlen(sent);
    if (len == 0 || len >= sizeof(host))
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i <= len; i++)
        host[i] = (char)tolower((unsigned char)sent[i]);
    if (host[len - 1] == '.')
        host[len - 1] = '\0'; /* an absolute name: "example.com." */
    int found = -1;
    for (int pass = 0; pass < 2 && found < 0; pass++)
        for (uint32_t i = 0; i < srv->n_sni && found < 0; i++)
            if ((srv->sni[i].name[0] == '*') == pass && name_matches(srv->sni[i].name, host))
                found = (int)srv->sni[i].index;
    if (found > 0)
        SSL_set_SSL_CTX(ssl, srv->ctx[found]);
    return SSL_TLSEXT_ERR_OK;
}

/* The first of the server's protocols that the client offers; none: no ALPN answer. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const struct fc_tls_server *srv = arg;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, srv->alpn, (unsigned)srv->s.alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

static char *dup_or_null(const char *s, int *nomem)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *nomem = 1;
    return d;
}

struct fc_tls_server *fc_tls_server_new(const struct fc_tls_server_settings *s, char *why,
                                        size_t cap, const char **bad_key)
{
    *bad_key = "ciphers";
    struct fc_tls_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    int nomem = 0;
    srv->s = *s;
    srv->ciphers = dup_or_null(s->ciphers, &nomem);
    srv->ciphersuites = dup_or_null(s->ciphersuites, &nomem);
    srv->id = dup_or_null(s->id, &nomem);
    srv->alpn = malloc(s->alpn_len ? s->alpn_len : 1);
    if (srv->alpn == NULL)
        nomem = 1;
    else
        memcpy(srv->alpn, s->alpn, s->alpn_len);
    srv->s.ciphers = srv->ciphers;
    srv->s.ciphersuites = srv->ciphersuites;
    srv->s.id = srv->id;
    srv->s.alpn = srv->alpn;
    if (nomem) {
        snprintf(why, cap, "out of memory");
        fc_tls_server_free(srv);
        return NULL;
    }
    /* Check the cipher lists now, once, rather than at the first certificate. */
    SSL_CTX *probe = SSL_CTX_new(TLS_server_method());
    if (probe == NULL) {
        snprintf(why, cap, "cannot create a TLS context");
        fc_tls_server_free(srv);
        return NULL;
    }
    int ok = 1;
    char buf[256];
    if (SSL_CTX_set_cipher_list(probe, srv->ciphers ? srv->ciphers : DEFAULT_CIPHERS) != 1) {
        snprintf(why, cap, "%s", ssl_reason(buf, sizeof(buf), "no cipher matches"));
        ok = 0;
    } else if (srv->ciphersuites != NULL &&
               SSL_CTX_set_ciphersuites(probe, srv->ciphersuites) != 1) {
        *bad_key = "ciphersuites";
        snprintf(why, cap, "%s", ssl_reason(buf, sizeof(buf), "no ciphersuite matches"));
        ok = 0;
    }
    SSL_CTX_free(probe);
    if (!ok) {
        fc_tls_server_free(srv);
        return NULL;
    }
    return srv;
}

/* A server SSL_CTX with the listener's settings, before its certificate. */
static SSL_CTX *server_ctx_new(struct fc_tls_server *srv)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, srv->s.min_version);
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
    if (!srv->s.session_tickets)
        opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(ctx, opts);
    /* Buffers are given back while a connection is idle: a keep-alive connection stays small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_cipher_list(ctx, srv->ciphers ? srv->ciphers : DEFAULT_CIPHERS);
    if (srv->ciphersuites != NULL)
        SSL_CTX_set_ciphersuites(ctx, srv->ciphersuites);
    SSL_CTX_set_dh_auto(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (srv->id != NULL) {
        size_t len = strlen(srv->id);
        if (len > SSL_MAX_SID_CTX_LENGTH)
            len = SSL_MAX_SID_CTX_LENGTH;
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)srv->id, (unsigned)len);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, srv);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, srv);
    return ctx;
}

/* Whether `path` can be opened for reading; else `why` says why, naming it. */
static int readable(const char *path, const char *what, char *why, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, cap, "cannot read %s file \"%s\": %s", what, path, strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

/* Appends a lower-cased name of certificate `index` to the SNI table. */
static int add_name(struct fc_tls_server *srv, const char *name, size_t len, uint32_t index)
{
    if (len == 0 || memchr(name, '\0', len) != NULL)
        return 0; /* an embedded NUL: not a name anyone can match */
    struct sni_name *grown = realloc(srv->sni, (srv->n_sni + 1) * sizeof(*grown));
    if (grown == NULL)
        return FC_ENOMEM;
    srv->sni = grown;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return FC_ENOMEM;
    for (size_t i = 0; i < len; i++)
        copy[i] = (char)tolower((unsigned char)name[i]);
    copy[len] = '\0';
    srv->sni[srv->n_sni++] = (struct sni_name){copy, index};
    return 0;
}

/* The DNS names of x (or its common name when it has none) into the SNI table. */
static int collect_names(struct fc_tls_server *srv, X509 *x, uint32_t index)
{
    uint32_t before = srv->n_sni;
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS)
            continue;
        rc = add_name(srv, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                      (size_t)ASN1_STRING_length(g->d.dNSName), index);
    }
    GENERAL_NAMES_free(sans);
    if (rc == 0 && srv->n_sni == before) {
        const X509_NAME *subject = X509_get_subject_name(x);
        int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
        if (at >= 0) {
            const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
            rc = add_name(srv, (const char *)ASN1_STRING_get0_data(cn),
                          (size_t)ASN1_STRING_length(cn), index);
        }
    }
    if (rc != 0)
        return rc;
    /* The names joined, for the logs and `fulcrum -t`. */
    size_t total = 1;
    for (uint32_t i = before; i < srv->n_sni; i++)
        total += strlen(srv->sni[i].name) + 2;
    char *joined = malloc(total);
    if (joined == NULL)
        return FC_ENOMEM;
    joined[0] = '\0';
    for (uint32_t i = before; i < srv->n_sni; i++) {
        if (i > before)
            strcat(joined, ", ");
        strcat(joined, srv->sni[i].name);
    }
    srv->names[index] = joined;
    return 0;
}

/* A warning when x is outside its validity period. */
static void check_dates(X509 *x, const char *cert_file, char *warn, size_t warn_cap)
{
    warn[0] = '\0';
    const ASN1_TIME *after = X509_get0_notAfter(x);
    const ASN1_TIME *before = X509_get0_notBefore(x);
    int when;
    const ASN1_TIME *at;
    if (X509_cmp_current_time(after) < 0) {
        at = after;
        when = 1;
    } else if (X509_cmp_current_time(before) > 0) {
        at = before;
        when = 0;
    } else {
        return;
    }
    struct tm tm;
    char date[32] = "?";
    if (ASN1_TIME_to_tm(at, &tm) == 1)
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", &tm);
    snprintf(warn, warn_cap, "certificate \"%s\" %s %s", cert_file,
             when ? "expired on" : "is not valid before", date);
}

int fc_tls_server_add(struct fc_tls_server *srv, const char *cert_file, const char *key_file,
                      char *why, size_t cap, const char **bad_key, char *warn, size_t warn_cap)
{
    char buf[256];
    warn[0] = '\0';
    *bad_key = "cert";
    if (!readable(cert_file, "certificate", why, cap))
        return FC_EINVAL;
    *bad_key = "key";
    if (!readable(key_file, "key", why, cap))
        return FC_EINVAL;
    SSL_CTX **ctxs = realloc(srv->ctx, (srv->n + 1) * sizeof(*ctxs));
    if (ctxs == NULL)
        goto nomem;
    srv->ctx = ctxs;
    char **names = realloc(srv->names, (srv->n + 1) * sizeof(*names));
    if (names == NULL)
        goto nomem;
    srv->names = names;
    srv->names[srv->n] = NULL;
    char **files = realloc(srv->files, (srv->n + 1) * sizeof(*files));
    if (files == NULL)
        goto nomem;
    srv->files = files;
    srv->files[srv->n] = NULL;
    int64_t *not_after = realloc(srv->not_after, (srv->n + 1) * sizeof(*not_after));
    if (not_after == NULL)
        goto nomem;
    srv->not_after = not_after;
    SSL_CTX *ctx = server_ctx_new(srv);
    if (ctx == NULL)
        goto nomem;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        *bad_key = "cert";
        snprintf(why, cap, "certificate file \"%s\": %s", cert_file,
                 ssl_reason(buf, sizeof(buf), "no certificate in it"));
        SSL_CTX_free(ctx);
        return FC_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        *bad_key = "key";
        /* A key that is valid but another certificate's fails here too, as a mismatch. */
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
            ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH) {
            ERR_clear_error();
            snprintf(why, cap, "key file \"%s\" does not match certificate \"%s\"", key_file,
                     cert_file);
        } else {
            snprintf(why, cap, "key file \"%s\": %s", key_file,
                     ssl_reason(buf, sizeof(buf), "no private key in it"));
        }
        SSL_CTX_free(ctx);
        return FC_EINVAL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *bad_key = "key";
        ERR_clear_error();
        snprintf(why, cap, "key file \"%s\" does not match certificate \"%s\"", key_file,
                 cert_file);
        SSL_CTX_free(ctx);
        return FC_EINVAL;
    }
    X509 *x = SSL_CTX_get0_certificate(ctx);
    srv->ctx[srv->n] = ctx;
    uint32_t index = srv->n++;
    struct tm tm;
    srv->not_after[index] =
        ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1 ? (int64_t)timegm(&tm) : 0;
    if ((srv->files[index] = strdup(cert_file)) == NULL || collect_names(srv, x, index) != 0)
        goto nomem;
    check_dates(x, cert_file, warn, warn_cap);
    return 0;
nomem:
    snprintf(why, cap, "out of memory");
    *bad_key = "cert";
    return FC_ENOMEM;
}

void fc_tls_server_free(struct fc_tls_server *srv)
{
    if (srv == NULL)
        return;
    for (uint32_t i = 0; i < srv->n; i++) {
        SSL_CTX_free(srv->ctx[i]);
        free(srv->names[i]);
        free(srv->files[i]);
    }
    for (uint32_t i = 0; i < srv->n_sni; i++)
        free(srv->sni[i].name);
    free(srv->sni);
    free(srv->ctx);
    free(srv->names);
    free(srv->files);
    free(srv->not_after);
    free(srv->alpn);
    free(srv->ciphers);
    free(srv->ciphersuites);
    free(srv->id);
    free(srv);
}

SSL_CTX *fc_tls_server_ctx(const struct fc_tls_server *srv)
{
    return srv->ctx[0];
}

uint32_t fc_tls_server_count(const struct fc_tls_server *srv)
{
    return srv->n;
}

void fc_tls_server_certificate(const struct fc_tls_server *srv, uint32_t i,
                               struct fc_tls_certificate_info *out)
{
    out->file = srv->files[i];
    out->names = srv->names[i] != NULL ? srv->names[i] : "";
    out->not_after = srv->not_after[i];
}

/* ------------------------------------------------------------------------ */
/* Pools                                                                     */
/* ------------------------------------------------------------------------ */

/* OpenSSL's callback type takes an SSL_SESSION *; the transports keep it as a void *. */
static int new_session(SSL *ssl, SSL_SESSION *session)
{
    return fc_tls_new_session_cb(ssl, session);
}

static uint64_t client_serial; /* atomic: the last serial given */

struct fc_tls_client *fc_tls_client_new(const struct fc_tls_client_settings *s, char *why,
                                        size_t cap, const char **bad_key)
{
    char buf[256];
    *bad_key = "ca";
    if (s->ca_file != NULL && !readable(s->ca_file, "CA", why, cap))
        return NULL;
    struct fc_tls_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL || (cl->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        free(cl);
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    cl->verify = s->verify;
    cl->serial = __atomic_add_fetch(&client_serial, 1, __ATOMIC_RELAXED);
    if (s->server_name != NULL && (cl->server_name = strdup(s->server_name)) == NULL) {
        snprintf(why, cap, "out of memory");
        fc_tls_client_free(cl);
        return NULL;
    }
    SSL_CTX *ctx = cl->ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Sessions are kept by the upstream transport, per worker and backend, not here. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
    SSL_CTX_set_verify(ctx, s->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    ERR_clear_error();
    if (s->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, s->ca_file, NULL) != 1) {
            snprintf(why, cap, "CA file \"%s\": %s", s->ca_file,
                     ssl_reason(buf, sizeof(buf), "no certificate in it"));
            fc_tls_client_free(cl);
            return NULL;
        }
    } else if (s->verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        *bad_key = "verify";
        snprintf(why, cap, "the system's certificate store: %s",
                 ssl_reason(buf, sizeof(buf), "cannot be loaded"));
        fc_tls_client_free(cl);
        return NULL;
    }
    return cl;
}

void fc_tls_client_free(struct fc_tls_client *cl)
{
    if (cl == NULL)
        return;
    SSL_CTX_free(cl->ctx);
    free(cl->server_name);
    free(cl);
}

SSL_CTX *fc_tls_client_ctx(const struct fc_tls_client *cl)
{
    return cl->ctx;
}

const char *fc_tls_client_server_name(const struct fc_tls_client *cl)
{
    return cl->server_name;
}

int fc_tls_client_verifies(const struct fc_tls_client *cl)
{
    return cl->verify;
}

uint64_t fc_tls_client_serial(const struct fc_tls_client *cl)
{
    return cl->serial;
}
