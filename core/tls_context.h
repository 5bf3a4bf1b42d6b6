/*
 * TLS contexts (OpenSSL 3): what a TLS listener hands its handshakes (its
 * certificates, picked by SNI, and its protocol settings), and what a pool
 * with `tls` connects to its backends with.
 *
 * A context is built while the configuration loads (config_tls.c), on the
 * main thread: certificate and key files are read then, so that `fulcrum -t`
 * and a reload check them, and a reload that cannot read them keeps the old
 * configuration and its contexts. Once built a context is immutable and
 * shared by every worker (OpenSSL's SSL_CTX may be used by many threads at
 * once); it lives as long as the configuration, and each connection holds
 * its SSL_CTX (SSL_new takes a reference), so a connection made before a
 * reload keeps the certificate it was made with.
 */
#ifndef FC_TLS_CONTEXT_H
#define FC_TLS_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ssl_ctx_st SSL_CTX;

/** The protocol settings of a TLS listener (`tls` of a listener, less its certificates). */
struct fc_tls_server_settings {
    int min_version;           /**< TLS1_2_VERSION or TLS1_3_VERSION */
    const char *ciphers;       /**< TLS 1.2 cipher list; NULL: the default (Mozilla intermediate) */
    const char *ciphersuites;  /**< TLS 1.3 suites; NULL: OpenSSL's default */
    const unsigned char *alpn; /**< ALPN protocols in wire format (length-prefixed) */
    size_t alpn_len;
    int session_tickets; /**< 1: stateless resumption with tickets; 0: a session cache */
    const char *id;      /**< the listener's address: the session cache's context */
};

struct fc_tls_server;

/** Room for the reason of a failure: a sentence naming the file. */
#define FC_TLS_WHY 512

/**
 * An empty server context with these settings. NULL on failure, with `why`
 * and `*bad_key` ("ciphers", "ciphersuites") set.
 */
struct fc_tls_server *fc_tls_server_new(const struct fc_tls_server_settings *s, char *why,
                                        size_t cap, const char **bad_key);

/**
 * Adds a certificate (a PEM chain: the certificate first, then its
 * intermediates) and its private key. The first one added is the default;
 * SNI picks another by the names it holds (subjectAltName DNS names, or its
 * common name when it has none; `*.example.com` matches one label).
 * Returns 0, or FC_EINVAL with `why` and `*bad_key` set to "cert" or "key"
 * (the setting at fault). A certificate past its notAfter date (or before
 * its notBefore) is accepted with a warning written to `warn` (empty when
 * none).
 */
int fc_tls_server_add(struct fc_tls_server *srv, const char *cert_file, const char *key_file,
                      char *why, size_t cap, const char **bad_key, char *warn, size_t warn_cap);

/** Frees a server context; connections that hold its SSL_CTXs keep them. NULL is accepted. */
void fc_tls_server_free(struct fc_tls_server *srv);

/** The SSL_CTX new connections start their handshake with (the default certificate's). */
SSL_CTX *fc_tls_server_ctx(const struct fc_tls_server *srv);

/** The number of certificates added. */
uint32_t fc_tls_server_count(const struct fc_tls_server *srv);

/** What the metrics and the status say of a certificate. */
struct fc_tls_certificate_info {
    const char *file;  /**< the `cert` file, as configured */
    const char *names; /**< the names SNI picks it by: "a.example, *.b.example" */
    int64_t not_after; /**< the end of its validity, Unix time (0: unreadable) */
};

/** Certificate i (< fc_tls_server_count()), in the order added. */
void fc_tls_server_certificate(const struct fc_tls_server *srv, uint32_t i,
                               struct fc_tls_certificate_info *out);

/** The settings of a pool's `tls` group. */
struct fc_tls_client_settings {
    int verify;              /**< 1 (default): the backend's certificate is verified */
    const char *ca_file;     /**< NULL: the system's store */
    const char *server_name; /**< SNI and the name verified; NULL: the backend's address */
};

struct fc_tls_client;

/** A client context. NULL with `why` (naming the CA file at fault) on failure. */
struct fc_tls_client *fc_tls_client_new(const struct fc_tls_client_settings *s, char *why,
                                        size_t cap, const char **bad_key);

void fc_tls_client_free(struct fc_tls_client *cl);

SSL_CTX *fc_tls_client_ctx(const struct fc_tls_client *cl);

/** `server_name`, or NULL. */
const char *fc_tls_client_server_name(const struct fc_tls_client *cl);

/**
 * A number no other client context has had in this process: what an idle
 * connection (and a kept session) remembers of the context it was made with,
 * so that one made under other settings is not reused after a reload.
 */
uint64_t fc_tls_client_serial(const struct fc_tls_client *cl);

/** Whether certificates are verified. */
int fc_tls_client_verifies(const struct fc_tls_client *cl);

/**
 * Parses "TLSv1.2" or "TLSv1.3" into OpenSSL's version number. Returns 0
 * when it is neither (older versions are not offered).
 */
int fc_tls_parse_version(const char *text);

#endif
