/*
 * TLS over a libuv stream: what the TLS variants of the client and upstream
 * transports (client.c, upstream.c) share. One struct fc_tls_io is one TLS
 * connection (an OpenSSL SSL object) over one TCP handle that the transport
 * owns and reads itself.
 *
 * OpenSSL never touches the socket. The transport reads ciphertext into the
 * worker's read buffer (fc_tls_read_buffer()) and hands it over with
 * fc_tls_io_input(); OpenSSL takes it from there through a BIO of ours, and
 * the plaintext comes out of fc_tls_io_read() into the caller's buffer. What
 * OpenSSL writes (records, alerts, close_notify) goes into the worker's write
 * buffer and is written to the socket at once, at the end of the call that
 * made it: synchronously when the socket takes it (uv_try_write), else
 * copied into a write request of its own. So an idle connection holds no
 * buffer of ours, and OpenSSL's own are released while idle
 * (SSL_MODE_RELEASE_BUFFERS).
 *
 * Ciphertext that the reader could not take (its buffer was full, or it
 * stopped reading) is copied into the connection (`kept`) and delivered when
 * reading starts again, from the loop (fc_tls_io_schedule()), never from
 * inside the call that starts it.
 *
 * Everything here runs on the connection's worker.
 */
#ifndef FC_TLS_H
#define FC_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

struct fc_tls_worker;

/** Why a handshake (or a connection, for a bad record) failed: a label of the failure metric. */
enum fc_tls_failure {
    FC_TLS_FAIL_PLAINTEXT = 0, /**< plain HTTP sent to a TLS port */
    FC_TLS_FAIL_VERSION,       /**< no protocol version in common (TLS 1.0 or 1.1 offered) */
    FC_TLS_FAIL_CIPHER,        /**< no cipher in common */
    FC_TLS_FAIL_TIMEOUT,       /**< not done within timeouts.client_header_ms */
    FC_TLS_FAIL_CLOSED,        /**< the peer closed before the handshake ended */
    FC_TLS_FAIL_CERTIFICATE,   /**< the peer's certificate was refused (backends) */
    FC_TLS_FAIL_BAD_RECORD,    /**< a malformed or undecryptable record */
    FC_TLS_FAIL_OTHER,         /**< any other handshake error */
    FC_TLS_FAILURES
};

/** The metric's label for each reason: "plaintext_http", "protocol_version", ... */
extern const char *const fc_tls_failure_names[FC_TLS_FAILURES];

struct fc_tls_io;

/** A write that fc_tls_io_write() left pending ended (status < 0: failed). */
typedef void (*fc_tls_written_cb)(struct fc_tls_io *io, int status);

/** Kept input waits and reading was started again (fc_tls_io_schedule()): deliver it. */
typedef void (*fc_tls_resume_cb)(struct fc_tls_io *io);

/**
 * A client connection got a session it may resume later (an SSL_SESSION *,
 * whose reference passes to the callee).
 */
typedef void (*fc_tls_session_cb)(struct fc_tls_io *io, void *session);

struct fc_tls_io {
    SSL *ssl;
    struct fc_tls_worker *tw;
    uv_stream_t *stream; /**< the transport's TCP handle */
    void *owner;         /**< the transport's connection */
    fc_tls_written_cb on_written;
    fc_tls_resume_cb on_resume;
    fc_tls_session_cb on_session; /**< clients: NULL, or where new sessions go */
    const char *in;               /**< ciphertext not handed to OpenSSL yet */
    size_t in_len;
    char *kept;      /**< owned copy of the input, while `in` points into it */
    uint32_t writes; /**< write requests of ours in flight */
    struct fc_tls_io *resume_prev, *resume_next; /**< on the worker's resume queue */
    uint8_t failure;                             /**< enum fc_tls_failure of the last failure */
    unsigned long err; /**< OpenSSL's error code of the last failure; 0: none */
    unsigned handshaken : 1, queued : 1, got_bytes : 1, failed : 1;
};

/**
 * The buffers and the resume queue that the TLS connections of one loop
 * share (a worker's w->tls; a health probe has one of its own). NULL when
 * out of memory. Its idle handle is made at the first resume, on `loop`, and
 * is closed with the loop's other handles (the loop's owner walks them).
 */
struct fc_tls_worker *fc_tls_worker_new(uv_loop_t *loop);

/** Frees it. Its connections are freed, and its loop's handles closed. NULL is accepted. */
void fc_tls_worker_free(struct fc_tls_worker *tw);

/** Where the transport reads ciphertext into, in its libuv alloc callback. */
void fc_tls_read_buffer(struct fc_tls_worker *tw, uv_buf_t *buf);

/**
 * A TLS connection over `stream`, as a server (server != 0) or a client of
 * ctx. Returns NULL when out of memory. `server_name` (clients only, may be
 * NULL) is sent as SNI.
 */
struct fc_tls_io *fc_tls_io_new(struct fc_tls_worker *tw, SSL_CTX *ctx, int server,
                                uv_stream_t *stream, void *owner, fc_tls_written_cb on_written,
                                fc_tls_resume_cb on_resume);

/** Frees io (after the stream's close callback: no write of ours is in flight). */
void fc_tls_io_free(struct fc_tls_io *io);

/** n bytes of ciphertext just read into the worker's read buffer. */
void fc_tls_io_input(struct fc_tls_io *io, const char *p, size_t n);

/**
 * Copies what is left of the input into the connection, so that the worker's
 * buffer can serve the next read. Returns 0 or FC_ENOMEM.
 */
int fc_tls_io_keep(struct fc_tls_io *io);

/**
 * Whether input waits that needs no socket read: kept ciphertext, or
 * plaintext OpenSSL decrypted already.
 */
int fc_tls_io_pending(const struct fc_tls_io *io);

/** Calls on_resume from the loop (soon, not from inside this call). */
void fc_tls_io_schedule(struct fc_tls_io *io);

/**
 * Takes the handshake as far as the input allows. Returns 1 when it is done,
 * 0 when it needs more input, or -1 when it failed (io->failure says why).
 */
int fc_tls_io_handshake(struct fc_tls_io *io);

/** What fc_tls_io_read() returns besides a byte count. */
#define FC_TLS_WANT 0      /**< the input is used up: read the socket */
#define FC_TLS_CLOSED (-1) /**< the peer sent close_notify */
#define FC_TLS_ERROR (-2)  /**< a bad record or a failed write (io->failure) */

/** Decrypts into buf (cap > 0). Returns the bytes, or one of the codes above. */
int fc_tls_io_read(struct fc_tls_io *io, char *buf, size_t cap);

/**
 * Encrypts bufs and writes them. Returns 1 when everything went out, 0 when
 * a write is pending (on_written follows), or a negative libuv error.
 */
int fc_tls_io_write(struct fc_tls_io *io, const uv_buf_t *bufs, unsigned n);

/**
 * Sends close_notify, when the handshake is done. With `wait`, what the
 * socket does not take at once is queued (a shutdown of the stream after it
 * waits for it); without, it is dropped (the connection closes now).
 */
void fc_tls_io_shutdown(struct fc_tls_io *io, int wait);

/** The negotiated version, "TLSv1.3", for the logs. */
const char *fc_tls_io_version(const struct fc_tls_io *io);

/**
 * A client's peer: `name` is sent as SNI (unless it is an IP address) and,
 * with `verify`, the certificate must hold it (a DNS name, or the IP
 * address). `session` (may be NULL) is resumed if the server still knows it.
 * Returns 0 or FC_ENOMEM.
 */
int fc_tls_io_set_peer(struct fc_tls_io *io, const char *name, int verify, void *session);

/**
 * Why the handshake of a client failed, in words for the log: the
 * certificate check's verdict ("certificate verify failed: unable to get
 * local issuer certificate") or OpenSSL's reason.
 */
void fc_tls_io_strerror(const struct fc_tls_io *io, char *buf, size_t cap);

/**
 * The callback a client SSL_CTX hands new sessions to (SSL_CTX_sess_set_new_cb):
 * passes them to the connection's on_session. Any worker.
 */
int fc_tls_new_session_cb(SSL *ssl, void *session);

/** Drops a session kept for resumption (from on_session). NULL is accepted. */
void fc_tls_session_free(void *session);

#endif
