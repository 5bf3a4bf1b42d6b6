/* wrk-tls-shim.c - LD_PRELOAD library for wrk, used by proxy-bench.sh with TLS=1.
 *
 * Wraps libssl's SSL_connect() inside wrk to
 *   - count the TLS handshakes wrk starts and completes, and how many of them
 *     resumed a session (SSL_session_reused), printed at exit on stderr as
 *     "TLSHANDSHAKES started=N done=N resumed=N full=N";
 *   - unless WRK_TLS_RESUME=1, drop the session wrk kept from the connection's
 *     previous TLS connection before each new handshake, so that every
 *     connection does a full handshake. (wrk reuses one SSL object per
 *     connection slot: ssl_close() calls SSL_shutdown() + SSL_clear(), which keep
 *     the session, so the next SSL_connect() offers it - with "Connection: close"
 *     wrk would otherwise resume on every reconnect the server allows.)
 *
 * No OpenSSL headers needed: the few functions used are declared here and
 * resolved at run time in the libssl that wrk already loaded.
 *   cc -O2 -shared -fPIC -o wrk-tls-shim.so wrk-tls-shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *s, SSL_SESSION *session);
int SSL_session_reused(const SSL *s);
int SSL_in_before(const SSL *s);

static unsigned long n_started, n_done, n_resumed;
static int (*real_connect)(SSL *);
static int drop_session = -1;

int SSL_connect(SSL *s)
{
    if (real_connect == NULL) {
        real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
        if (real_connect == NULL) {
            fprintf(stderr, "wrk-tls-shim: no SSL_connect in the process\n");
            abort();
        }
    }
    if (__atomic_load_n(&drop_session, __ATOMIC_RELAXED) < 0) {
        const char *e = getenv("WRK_TLS_RESUME");
        __atomic_store_n(&drop_session, !(e != NULL && e[0] == '1'), __ATOMIC_RELAXED);
    }
    if (SSL_in_before(s)) { /* first call for this handshake (wrk calls again on WANT_READ) */
        __atomic_add_fetch(&n_started, 1, __ATOMIC_RELAXED);
        if (drop_session)
            SSL_set_session(s, NULL);
    }
    int r = real_connect(s);
    if (r == 1) {
        __atomic_add_fetch(&n_done, 1, __ATOMIC_RELAXED);
        if (SSL_session_reused(s))
            __atomic_add_fetch(&n_resumed, 1, __ATOMIC_RELAXED);
    }
    return r;
}

__attribute__((destructor)) static void report(void)
{
    unsigned long d = __atomic_load_n(&n_done, __ATOMIC_RELAXED);
    unsigned long r = __atomic_load_n(&n_resumed, __ATOMIC_RELAXED);
    fprintf(stderr, "TLSHANDSHAKES started=%lu done=%lu resumed=%lu full=%lu\n",
            __atomic_load_n(&n_started, __ATOMIC_RELAXED), d, r, d - r);
}
