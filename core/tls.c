/*
 * TLS over a libuv stream; see tls.h.
 */
#include "tls.h"

#include "log.h"
#include "stats.h"

#include <fulcrum/plugin.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The read buffer holds one largest record (16 KiB of plaintext plus its
 * header, padding and tag): input kept for a reader that stopped is never
 * more than that.
 */
#define READ_BUF_SIZE (16 * 1024 + 512)

const char *const fc_tls_failure_names[FC_TLS_FAILURES] = {
    [FC_TLS_FAIL_PLAINTEXT] = "plaintext_http",
    [FC_TLS_FAIL_VERSION] = "protocol_version",
    [FC_TLS_FAIL_CIPHER] = "no_shared_cipher",
    [FC_TLS_FAIL_TIMEOUT] = "timeout",
    [FC_TLS_FAIL_CLOSED] = "closed",
    [FC_TLS_FAIL_CERTIFICATE] = "certificate",
    [FC_TLS_FAIL_BAD_RECORD] = "bad_record",
    [FC_TLS_FAIL_OTHER] = "other",
};

_Static_assert(FC_TLS_FAILURES == FC_STATS_TLS_FAILURES, "one counter per failure reason");

struct fc_tls_worker {
    char *rbuf; /* [READ_BUF_SIZE]: ciphertext, during a read callback */
    char *out;  /* what OpenSSL wrote during the current call */
    size_t out_len, out_cap;
    uv_loop_t *loop;
    uv_idle_t idle; /* runs the resume queue; made at the first resume */
    int idle_ready;
    struct fc_tls_io queue; /* sentinel of the resume queue (resume_prev/next only) */
};

/* A write request with its bytes: what the socket did not take at once. */
struct chunk {
    uv_write_t req;
    struct fc_tls_io *io;
    int tell; /* on_written when it ends */
    char data[];
};

/* ------------------------------------------------------------------------ */
/* The BIO: input from io->in, output to the worker's buffer                 */
/* ------------------------------------------------------------------------ */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
    struct fc_tls_io *io = BIO_get_data(b);
    struct fc_tls_worker *tw = io->tw;
    size_t need = tw->out_len + (size_t)len;
    if (need > tw->out_cap) {
        size_t cap = tw->out_cap ? tw->out_cap : 32 * 1024;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(tw->out, cap);
        if (grown == NULL)
            return -1; /* OpenSSL reports the write as failed */
        tw->out = grown;
        tw->out_cap = cap;
    }
    memcpy(tw->out + tw->out_len, data, (size_t)len);
    tw->out_len = need;
    return len;
}

static int bio_read(BIO *b, char *out, int len)
{
    struct fc_tls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (io->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = io->in_len < (size_t)len ? io->in_len : (size_t)len;
    memcpy(out, io->in, n);
    io->in += n;
    io->in_len -= n;
    if (io->in_len == 0 && io->kept != NULL) {
        free(io->kept);
        io->kept = NULL;
        io->in = NULL;
    }
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fulcrum");
    if (m == NULL)
        return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* ------------------------------------------------------------------------ */
/* The worker's part                                                         */
/* ------------------------------------------------------------------------ */

static void unlink_io(struct fc_tls_io *io)
{
    io->resume_prev->resume_next = io->resume_next;
    io->resume_next->resume_prev = io->resume_prev;
    io->resume_prev = io->resume_next = NULL;
    io->queued = 0;
}

/*
 * Resumes every connection queued when the round began; one queued again by
 * its own resume waits for the next round (a sentinel of the round keeps the
 * walk safe when a resume closes another queued connection).
 */
static void idle_cb(uv_idle_t *h)
{
    struct fc_tls_worker *tw = h->data;
    struct fc_tls_io round = {0};
    struct fc_tls_io *q = &tw->queue;
    if (q->resume_next == q) {
        uv_idle_stop(h);
        return;
    }
    /* Move the queue to the round's sentinel. */
    round.resume_next = q->resume_next;
    round.resume_prev = q->resume_prev;
    round.resume_next->resume_prev = &round;
    round.resume_prev->resume_next = &round;
    q->resume_next = q->resume_prev = q;
    while (round.resume_next != &round) {
        struct fc_tls_io *io = round.resume_next;
        unlink_io(io);
        io->on_resume(io);
    }
    if (q->resume_next == q)
        uv_idle_stop(h);
}

struct fc_tls_worker *fc_tls_worker_new(uv_loop_t *loop)
{
    pthread_once(&bio_once, make_method);
    if (bio_method == NULL)
        return NULL;
    struct fc_tls_worker *tw = calloc(1, sizeof(*tw));
    if (tw == NULL || (tw->rbuf = malloc(READ_BUF_SIZE)) == NULL) {
        free(tw);
        return NULL;
    }
    tw->queue.resume_next = tw->queue.resume_prev = &tw->queue;
    tw->loop = loop;
    return tw;
}

void fc_tls_worker_free(struct fc_tls_worker *tw)
{
    if (tw == NULL)
        return;
    free(tw->rbuf);
    free(tw->out);
    free(tw);
}

void fc_tls_read_buffer(struct fc_tls_worker *tw, uv_buf_t *buf)
{
    buf->base = tw->rbuf;
    buf->len = READ_BUF_SIZE;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

struct fc_tls_io *fc_tls_io_new(struct fc_tls_worker *tw, SSL_CTX *ctx, int server,
                                uv_stream_t *stream, void *owner, fc_tls_written_cb on_written,
                                fc_tls_resume_cb on_resume)
{
    struct fc_tls_io *io = calloc(1, sizeof(*io));
    if (io == NULL)
        return NULL;
    io->ssl = SSL_new(ctx);
    BIO *bio = io->ssl != NULL ? BIO_new(bio_method) : NULL;
    if (bio == NULL) {
        SSL_free(io->ssl);
        free(io);
        return NULL;
    }
    BIO_set_data(bio, io);
    SSL_set_bio(io->ssl, bio, bio);
    SSL_set_app_data(io->ssl, io);
    if (server)
        SSL_set_accept_state(io->ssl);
    else
        SSL_set_connect_state(io->ssl);
    io->tw = tw;
    io->stream = stream;
    io->owner = owner;
    io->on_written = on_written;
    io->on_resume = on_resume;
    return io;
}

void fc_tls_io_free(struct fc_tls_io *io)
{
    if (io == NULL)
        return;
    if (io->queued)
        unlink_io(io);
    SSL_free(io->ssl);
    free(io->kept);
    free(io);
}

void fc_tls_io_input(struct fc_tls_io *io, const char *p, size_t n)
{
    io->in = p;
    io->in_len = n;
    io->got_bytes = 1;
}

int fc_tls_io_keep(struct fc_tls_io *io)
{
    if (io->in_len == 0 || io->kept != NULL)
        return 0;
    char *copy = malloc(io->in_len);
    if (copy == NULL)
        return FC_ENOMEM;
    memcpy(copy, io->in, io->in_len);
    io->kept = copy;
    io->in = copy;
    return 0;
}

int fc_tls_io_pending(const struct fc_tls_io *io)
{
    /*
     * SSL_pending(), not SSL_has_pending(): the latter counts a record that
     * is only partly in, which waits for the socket, not for a resume.
     */
    return io->in_len > 0 || SSL_pending(io->ssl) > 0;
}

void fc_tls_io_schedule(struct fc_tls_io *io)
{
    if (io->queued)
        return;
    struct fc_tls_worker *tw = io->tw;
    io->resume_prev = tw->queue.resume_prev;
    io->resume_next = &tw->queue;
    tw->queue.resume_prev->resume_next = io;
    tw->queue.resume_prev = io;
    io->queued = 1;
    if (!tw->idle_ready) {
        uv_idle_init(tw->loop, &tw->idle);
        tw->idle.data = tw;
        tw->idle_ready = 1;
    }
    uv_idle_start(&tw->idle, idle_cb);
}

static void chunk_done(uv_write_t *req, int status)
{
    struct chunk *ch = req->data;
    struct fc_tls_io *io = ch->io;
    int tell = ch->tell;
    free(ch);
    io->writes--;
    if (tell && status != UV_ECANCELED)
        io->on_written(io, status);
}

/*
 * Writes what OpenSSL wrote into the worker's buffer during the last call.
 * Returns 1 (all out), 0 (queued; with `tell`, on_written follows) or a
 * negative libuv error.
 */
static int flush(struct fc_tls_io *io, int tell)
{
    struct fc_tls_worker *tw = io->tw;
    size_t len = tw->out_len;
    if (len == 0)
        return 1;
    tw->out_len = 0;
    const char *p = tw->out;
    if (io->writes == 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
        int n = uv_try_write(io->stream, &b, 1);
        if (n >= 0 && (size_t)n == len)
            return 1;
        if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS)
            return n;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    struct chunk *ch = malloc(sizeof(*ch) + len);
    if (ch == NULL)
        return UV_ENOMEM;
    memcpy(ch->data, p, len);
    ch->io = io;
    ch->tell = tell;
    ch->req.data = ch;
    uv_buf_t b = uv_buf_init(ch->data, (unsigned)len);
    int rc = uv_write(&ch->req, io->stream, &b, 1, chunk_done);
    if (rc < 0) {
        free(ch);
        return rc;
    }
    io->writes++;
    return 0;
}

/* Why the last call failed, from OpenSSL's error queue (which it empties). */
static enum fc_tls_failure classify(struct fc_tls_io *io, int handshake)
{
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    io->err = e;
    if (e == 0)
        return handshake ? FC_TLS_FAIL_OTHER : FC_TLS_FAIL_BAD_RECORD;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return FC_TLS_FAIL_PLAINTEXT;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return FC_TLS_FAIL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
        return handshake ? FC_TLS_FAIL_CIPHER : FC_TLS_FAIL_BAD_RECORD;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return FC_TLS_FAIL_CERTIFICATE;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_DATA_LENGTH_TOO_LONG:
        return FC_TLS_FAIL_BAD_RECORD;
    default:
        return handshake ? FC_TLS_FAIL_OTHER : FC_TLS_FAIL_BAD_RECORD;
    }
}

int fc_tls_io_handshake(struct fc_tls_io *io)
{
    if (io->handshaken)
        return 1;
    ERR_clear_error();
    int rc = SSL_do_handshake(io->ssl);
    int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(io->ssl, rc);
    /* The alert of a failed handshake goes out too, so the peer learns why. */
    int w = flush(io, 0);
    if (rc == 1) {
        io->handshaken = 1;
        return w < 0 ? -1 : 1;
    }
    if (err == SSL_ERROR_WANT_READ && w >= 0)
        return 0;
    io->failed = 1;
    io->failure = (uint8_t)classify(io, 1);
    return -1;
}

int fc_tls_io_read(struct fc_tls_io *io, char *buf, size_t cap)
{
    size_t n = 0;
    ERR_clear_error();
    int rc = SSL_read_ex(io->ssl, buf, cap, &n);
    int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(io->ssl, rc);
    /* Reading may write: a key update's answer, a session ticket's. */
    if (flush(io, 0) < 0) {
        io->failed = 1;
        io->failure = FC_TLS_FAIL_OTHER;
        return FC_TLS_ERROR;
    }
    if (rc == 1)
        return (int)n;
    if (err == SSL_ERROR_WANT_READ)
        return FC_TLS_WANT;
    if (err == SSL_ERROR_ZERO_RETURN)
        return FC_TLS_CLOSED;
    io->failed = 1;
    io->failure = (uint8_t)classify(io, 0);
    return FC_TLS_ERROR;
}

int fc_tls_io_write(struct fc_tls_io *io, const uv_buf_t *bufs, unsigned n)
{
    ERR_clear_error();
    for (unsigned i = 0; i < n; i++) {
        /* With SSL_MODE_ENABLE_PARTIAL_WRITE a write may stop at a record's end: on to the rest. */
        for (size_t off = 0; off < bufs[i].len;) {
            size_t done = 0;
            if (SSL_write_ex(io->ssl, bufs[i].base + off, bufs[i].len - off, &done) != 1 ||
                done == 0) {
                ERR_clear_error();
                io->tw->out_len = 0; /* a part of a record is worth nothing */
                return UV_EPROTO;
            }
            off += done;
        }
    }
    return flush(io, 1);
}

void fc_tls_io_shutdown(struct fc_tls_io *io, int wait)
{
    if (!io->handshaken || io->failed)
        return;
    ERR_clear_error();
    if (SSL_shutdown(io->ssl) < 0)
        ERR_clear_error();
    io->failed = 1; /* nothing is sent after close_notify */
    if (wait) {
        flush(io, 0);
        return;
    }
    struct fc_tls_worker *tw = io->tw;
    if (tw->out_len > 0 && io->writes == 0) {
        uv_buf_t b = uv_buf_init(tw->out, (unsigned)tw->out_len);
        uv_try_write(io->stream, &b, 1);
    }
    tw->out_len = 0;
}

const char *fc_tls_io_version(const struct fc_tls_io *io)
{
    return SSL_get_version(io->ssl);
}

int fc_tls_io_set_peer(struct fc_tls_io *io, const char *name, int verify, void *session)
{
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (!is_ip && SSL_set_tlsext_host_name(io->ssl, name) != 1)
        return FC_ENOMEM;
    if (verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(io->ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
                       : X509_VERIFY_PARAM_set1_host(param, name, 0);
        if (ok != 1)
            return FC_ENOMEM;
    }
    if (session != NULL)
        SSL_set_session(io->ssl, session);
    return 0;
}

void fc_tls_io_strerror(const struct fc_tls_io *io, char *buf, size_t cap)
{
    long v = SSL_get_verify_result(io->ssl);
    if (io->failure == FC_TLS_FAIL_CERTIFICATE && v != X509_V_OK) {
        snprintf(buf, cap, "TLS handshake: certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
        return;
    }
    const char *r = io->err ? ERR_reason_error_string(io->err) : NULL;
    snprintf(buf, cap, "TLS handshake: %s", r ? r : fc_tls_failure_names[io->failure]);
}

int fc_tls_new_session_cb(SSL *ssl, void *session)
{
    struct fc_tls_io *io = SSL_get_app_data(ssl);
    if (io == NULL || io->on_session == NULL)
        return 0; /* OpenSSL keeps its reference and frees it */
    io->on_session(io, session);
    return 1;
}

void fc_tls_session_free(void *session)
{
    SSL_SESSION_free(session);
}
