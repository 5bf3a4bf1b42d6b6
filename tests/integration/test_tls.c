/*
 * TLS listeners as clients meet them: real curl, openssl and Python's ssl
 * module against fulcrum, with certificates made at test time by
 * make-certs.sh (a test CA; "site.test" and "www.site.test"; "api.test";
 * "*.wild.test"; an expired one; a key that matches nothing).
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define CURL "/usr/bin/curl"
#define OPENSSL "/usr/bin/openssl"
#define TLS_CLIENT FC_IT_SOURCE_DIR "/tests/integration/tls_client.py"
#define TLS_BACKEND FC_IT_SOURCE_DIR "/tests/integration/tls_backend.py"

/* A config with one demo backend and an admin listener; the listener's tls is the caller's. */
static int tls_config(struct it_env *env, struct it_config *cfg, const char *tls)
{
    it_config_init(cfg);
    it_config_demo_pool(env, cfg, 1);
    cfg->listener_tls = tls;
    int admin = it_free_port();
    cfg->admin = it_strf(env, "address = \"127.0.0.1:%d\";", admin);
    return admin;
}

/* The SHA-256 fingerprint of the first certificate of a PEM file. */
static const char *fingerprint(struct it_env *env, const char *pem)
{
    const char *argv[] = {PYTHON, TLS_CLIENT, "fingerprint", pem, NULL};
    struct it_run_result r;
    it_run(env, argv, 10000, &r);
    if (r.exit_code != 0)
        fail_msg("fingerprint of %s: %s", pem, r.err);
    return it_strf(env, "%.64s", r.out);
}

/* One request through Python's ssl with SNI `name`: its output line, or NULL when it failed. */
static const char *py_get(struct it_env *env, int port, const char *name, const char *ca)
{
    const char *argv[] = {PYTHON, TLS_CLIENT, "get", it_strf(env, "%d", port), name, ca, "/", NULL};
    struct it_run_result r;
    it_run(env, argv, 15000, &r);
    return r.exit_code == 0 ? r.out : NULL;
}

/* curl https://NAME:PORT/PATH resolved to 127.0.0.1, verified against ca: the run. */
static void curl_get(struct it_env *env, int port, const char *name, const char *ca,
                     const char *path, struct it_run_result *r)
{
    const char *argv[] = {CURL,
                          "-sS",
                          "--max-time",
                          "10",
                          "--cacert",
                          ca,
                          "--resolve",
                          it_strf(env, "%s:%d:127.0.0.1", name, port),
                          "-w",
                          "\nstatus=%{http_code} http=%{http_version}",
                          it_strf(env, "https://%s:%d%s", name, port, path),
                          NULL};
    it_run(env, argv, 15000, r);
}

static const char *failures(struct it_env *env, int port, const char *reason)
{
    return it_strf(env,
                   "fulcrum_tls_handshake_failures_total{listener=\"127.0.0.1:%d\",reason=\"%s\"}",
                   port, reason);
}

static void open_gate(const char *gate)
{
    FILE *g = fopen(gate, "w");
    assert_non_null(g);
    fclose(g);
}

/*
 * Whether the peer closes the connection within timeout_ms, whatever it
 * sends first (a TLS alert, say).
 */
static bool closed_after_any(struct it_conn *c, int timeout_ms)
{
    int64_t end = it_now_ms() + timeout_ms;
    char buf[512];
    for (;;) {
        int left = (int)(end - it_now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = it_conn_fd(c), .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(p.fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return false;
    }
}

IT_TEST(sni_picks_the_certificate_by_name)
{
    const char *dir = it_make_certs(env);
    const char *ca = it_strf(env, "%s/ca.pem", dir);
    struct it_config cfg;
    tls_config(env, &cfg,
               it_strf(env, "certificates = ( %s, %s, %s );", it_tls_certificate(env, dir, "site"),
                       it_tls_certificate(env, dir, "api"), it_tls_certificate(env, dir, "wild")));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* curl verifies the name against the certificate it got: a 200 is the right one. */
    const char *names[] = {"site.test", "www.site.test", "api.test", "a.wild.test",
                           "WWW.Site.Test"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct it_run_result r;
        curl_get(env, f->port, names[i], ca, "/headers", &r);
        if (r.exit_code != 0 || strstr(r.out, "status=200 http=1.1") == NULL)
            fail_msg("curl https://%s/ (exit %d): %s %s", names[i], r.exit_code, r.out, r.err);
        if (strstr(r.out, "X-Forwarded-Proto: https\n") == NULL)
            fail_msg("the backend was not told https for %s: %s", names[i], r.out);
    }
    /* A wildcard stands for one label only: b.a.wild.test gets the default, which curl refuses. */
    struct it_run_result r;
    curl_get(env, f->port, "b.a.wild.test", ca, "/", &r);
    assert_int_equal(r.exit_code, 60); /* CURLE_PEER_FAILED_VERIFICATION */

    /* Which certificate exactly, and ALPN, through Python's ssl. */
    const char *site = fingerprint(env, it_strf(env, "%s/site.pem", dir));
    const char *api = fingerprint(env, it_strf(env, "%s/api.pem", dir));
    const char *out = py_get(env, f->port, "api.test", ca);
    assert_non_null(out);
    assert_non_null(strstr(out, it_strf(env, "status=200 cert=%s alpn=http/1.1", api)));
    /* A name no certificate holds gets the first, the default (and fails its check). */
    const char *argv[] = {
        OPENSSL,       "s_client",     "-connect", it_strf(env, "127.0.0.1:%d", f->port),
        "-servername", "unknown.test", NULL};
    it_run(env, argv, 10000, &r);
    assert_non_null(strstr(r.out, "subject=CN = site"));
    assert_non_null(site);
}

/* The notAfter of a PEM certificate as a Unix time, as openssl reads it. */
static long long not_after(struct it_env *env, const char *pem)
{
    const char *argv[] = {OPENSSL, "x509", "-noout", "-enddate", "-in", pem, NULL};
    struct it_run_result r;
    it_run(env, argv, 10000, &r);
    struct tm tm = {0};
    if (r.exit_code != 0 || strptime(r.out, "notAfter=%b %d %H:%M:%S %Y GMT", &tm) == NULL)
        fail_msg("openssl x509 -enddate %s: %s%s", pem, r.out, r.err);
    return (long long)timegm(&tm);
}

/* What operators watch: each certificate's file, names and end of validity. */
IT_TEST(certificates_are_in_the_status_and_the_metrics)
{
    const char *dir = it_make_certs(env);
    struct it_config cfg;
    int admin =
        tls_config(env, &cfg,
                   it_strf(env, "certificates = ( %s, %s );", it_tls_certificate(env, dir, "site"),
                           it_tls_certificate(env, dir, "wild")));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *site = it_strf(env, "%s/site.pem", dir), *wild = it_strf(env, "%s/wild.pem", dir);
    long long site_end = not_after(env, site), wild_end = not_after(env, wild);
    assert_true(site_end > (long long)time(NULL));

    struct it_response r;
    it_get(env, admin, "admin", "/api/status", &r);
    assert_int_equal(r.status, 200);
    const char *want = it_strf(env,
                               "\"tls\":true,\"certificates\":[{\"file\":\"%s\",\"names\":"
                               "\"site.test, www.site.test\",\"not_after\":%lld},{\"file\":\"%s\","
                               "\"names\":\"*.wild.test\",\"not_after\":%lld}]",
                               site, site_end, wild, wild_end);
    if (strstr(r.body, want) == NULL)
        fail_msg("no %s in the status: %s", want, r.body);
    it_response_free(&r);
    const char *series = "fulcrum_tls_certificate_not_after_seconds{listener=\"127.0.0.1:%d\","
                         "cert=\"%s\",names=\"%s\"}";
    assert_int_equal(
        it_metric(env, admin, it_strf(env, series, f->port, site, "site.test, www.site.test")),
        site_end);
    assert_int_equal(it_metric(env, admin, it_strf(env, series, f->port, wild, "*.wild.test")),
                     wild_end);
}

IT_TEST(pipelining_and_large_bodies_over_tls)
{
    const char *dir = it_make_certs(env);
    const char *ca = it_strf(env, "%s/ca.pem", dir);
    struct it_config cfg;
    tls_config(env, &cfg,
               it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "site")));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *argv[] = {PYTHON,      TLS_CLIENT, "bulk", it_strf(env, "%d", f->port),
                          "site.test", ca,         NULL};
    struct it_run_result r;
    it_run(env, argv, 60000, &r);
    if (r.exit_code != 0 || strstr(r.out, "bulk ok") == NULL)
        fail_msg("tls_client.py bulk (exit %d): %s%s", r.exit_code, r.out, r.err);
}

IT_TEST(old_versions_plaintext_and_garbage_are_refused_and_counted)
{
    const char *dir = it_make_certs(env);
    const char *ca = it_strf(env, "%s/ca.pem", dir);
    struct it_config cfg;
    int admin = tls_config(
        env, &cfg, it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "site")));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* TLS 1.0 and 1.1, offered by a client that allows them (security level 0). */
    const char *versions[] = {"-tls1", "-tls1_1"};
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {OPENSSL,
                              "s_client",
                              versions[i],
                              "-cipher",
                              "DEFAULT:@SECLEVEL=0",
                              "-connect",
                              it_strf(env, "127.0.0.1:%d", f->port),
                              NULL};
        struct it_run_result r;
        it_run(env, argv, 10000, &r);
        assert_int_not_equal(r.exit_code, 0);
        if (strstr(r.err, "alert protocol version") == NULL)
            fail_msg("%s: no protocol_version alert: %s", versions[i], r.err);
    }
    assert_int_equal(it_metric(env, admin, failures(env, f->port, "protocol_version")), 2);

    /* Plain HTTP to the TLS port: told so in plain HTTP, then closed. */
    struct it_conn *c = it_connect(env, f->port);
    it_send_str(c, "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n");
    struct it_response resp;
    it_expect_response(c, "GET", &resp);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(resp.body, "TLS"));
    assert_true(it_conn_wait_closed(c, 3000));
    it_response_free(&resp);
    it_conn_close(c);
    assert_int_equal(it_metric(env, admin, failures(env, f->port, "plaintext_http")), 1);

    /* A handshake record holding a ClientHello one byte long. */
    c = it_connect(env, f->port);
    static const char junk[] = "\x16\x03\x01\x00\x05"
                               "\x01\x00\x00\x01\x00";
    it_send(c, junk, sizeof(junk) - 1);
    assert_true(closed_after_any(c, 3000));
    it_conn_close(c);
    long other = it_metric(env, admin, failures(env, f->port, "other"));
    long bad = it_metric(env, admin, failures(env, f->port, "bad_record"));
    assert_int_equal(other + bad, 1);

    /* A connect and a close without a byte is no failure (a TCP health check). */
    c = it_connect(env, f->port);
    it_conn_close(c);

    /* And it still serves. */
    struct it_run_result r;
    curl_get(env, f->port, "site.test", ca, "/", &r);
    assert_non_null(strstr(r.out, "status=200"));
    assert_int_equal(it_metric(env, admin, failures(env, f->port, "closed")), 0);

    /* The real promtool finds nothing to say about the new family. */
    struct it_response m;
    it_get(env, admin, "admin", "/metrics", &m);
    assert_non_null(strstr(m.body, "# TYPE fulcrum_tls_handshake_failures_total counter"));
    const char *file = it_write_file(env, "metrics.txt", m.body);
    it_response_free(&m);
    const char *argv[] = {"/bin/sh", "-c", it_strf(env, "promtool check metrics < %s", file), NULL};
    it_run(env, argv, 20000, &r);
    if (r.exit_code != 0)
        fail_msg("promtool check metrics exited %d:\n%s%s", r.exit_code, r.out, r.err);
}

IT_TEST(handshake_is_bounded_by_client_header_ms)
{
    const char *dir = it_make_certs(env);
    struct it_config cfg;
    int admin = tls_config(
        env, &cfg, it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "site")));
    cfg.client_header_ms = 300;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    /* The start of a ClientHello, and then nothing. */
    struct it_conn *c = it_connect(env, f->port);
    it_send(c, "\x16\x03\x01\x02\x00\x01", 6);
    int64_t t0 = it_now_ms();
    assert_true(closed_after_any(c, 5000));
    int64_t took = it_now_ms() - t0;
    it_conn_close(c);
    if (took < 200 || took > 2500)
        fail_msg("closed after %lld ms, expected about 300", (long long)took);
    assert_int_equal(it_metric(env, admin, failures(env, f->port, "timeout")), 1);
}

/* Copies file `from` over `to` (a certificate renewed on disk). */
static void copy_file(struct it_env *env, const char *from, const char *to)
{
    const char *argv[] = {"/bin/cp", from, it_strf(env, "%s.tmp", to), NULL};
    struct it_run_result r;
    it_run(env, argv, 5000, &r);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(rename(it_strf(env, "%s.tmp", to), to), 0);
}

/*
 * A fulcrum whose one certificate is live_pem and live_key, copies of site's:
 * the files a test renews (or breaks) on disk before a reload.
 */
static struct it_fulcrum *start_live(struct it_env *env, struct it_config *cfg, const char *dir,
                                     const char *live_pem, const char *live_key)
{
    copy_file(env, it_strf(env, "%s/site.pem", dir), live_pem);
    copy_file(env, it_strf(env, "%s/site.key", dir), live_key);
    tls_config(
        env, cfg,
        it_strf(env, "certificates = ( { cert = \"%s\"; key = \"%s\"; } );", live_pem, live_key));
    return it_fulcrum_start(env, cfg);
}

IT_TEST(reload_swaps_certificates_and_open_connections_keep_theirs)
{
    const char *dir = it_make_certs(env);
    const char *ca = it_strf(env, "%s/ca.pem", dir);
    const char *live_pem = it_strf(env, "%s/live.pem", dir);
    const char *live_key = it_strf(env, "%s/live.key", dir);
    struct it_config cfg;
    struct it_fulcrum *f = start_live(env, &cfg, dir, live_pem, live_key);
    const char *old_fp = fingerprint(env, live_pem);

    /* A connection opened before the reload. */
    const char *gate = it_path(env, "gate");
    const char *argv[] = {PYTHON,      TLS_CLIENT, "hold", it_strf(env, "%d", f->port),
                          "site.test", ca,         gate,   NULL};
    struct it_proc *hold = it_start(env, "tls_client hold", argv);
    int64_t deadline = it_now_ms() + 10000;
    while (strstr(it_proc_stdout(env, hold), "first ") == NULL && it_now_ms() < deadline)
        it_sleep_ms(20);
    assert_non_null(
        strstr(it_proc_stdout(env, hold), it_strf(env, "first status=200 cert=%s", old_fp)));

    /* The certificate is renewed on disk, and fulcrum told. */
    copy_file(env, it_strf(env, "%s/site2.pem", dir), live_pem);
    copy_file(env, it_strf(env, "%s/site2.key", dir), live_key);
    const char *new_fp = fingerprint(env, live_pem);
    assert_string_not_equal(old_fp, new_fp);
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);

    /* New handshakes get the new certificate... */
    const char *out = py_get(env, f->port, "site.test", ca);
    assert_non_null(out);
    assert_non_null(strstr(out, it_strf(env, "status=200 cert=%s", new_fp)));
    /* ...and the open connection goes on, with the one it was made with. */
    open_gate(gate);
    int status = -1;
    assert_int_equal(it_proc_wait(hold, 10000, &status), 0);
    assert_non_null(
        strstr(it_proc_stdout(env, hold), it_strf(env, "second status=200 cert=%s", old_fp)));
}

IT_TEST(bad_certificate_on_reload_keeps_the_old)
{
    const char *dir = it_make_certs(env);
    const char *ca = it_strf(env, "%s/ca.pem", dir);
    const char *live_pem = it_strf(env, "%s/live.pem", dir);
    const char *live_key = it_strf(env, "%s/live.key", dir);
    struct it_config cfg;
    struct it_fulcrum *f = start_live(env, &cfg, dir, live_pem, live_key);
    const char *fp = fingerprint(env, live_pem);

    /* A key that is not the certificate's. */
    copy_file(env, it_strf(env, "%s/mismatch.key", dir), live_key);
    assert_int_not_equal(it_fulcrum_reload(env, f, &cfg), 0);
    assert_true(it_fulcrum_wait_log(
        env, f,
        it_strf(env, "key file \"%s\" does not match certificate \"%s\"", live_key, live_pem), 1,
        5000));
    const char *out = py_get(env, f->port, "site.test", ca);
    assert_non_null(out);
    assert_non_null(strstr(out, it_strf(env, "status=200 cert=%s", fp)));

    /* A certificate that is gone. */
    copy_file(env, it_strf(env, "%s/site.key", dir), live_key);
    assert_int_equal(unlink(live_pem), 0);
    assert_int_not_equal(it_fulcrum_reload(env, f, &cfg), 0);
    assert_true(it_fulcrum_wait_log(
        env, f, it_strf(env, "cannot read certificate file \"%s\": No such file", live_pem), 1,
        5000));
    out = py_get(env, f->port, "site.test", ca);
    assert_non_null(out);
    assert_non_null(strstr(out, it_strf(env, "status=200 cert=%s", fp)));
}

IT_TEST(check_reports_certificate_problems_by_file)
{
    const char *dir = it_make_certs(env);
    struct it_config cfg;
    /* A key of another certificate, and one certificate that expired (only a warning). */
    tls_config(env, &cfg,
               it_strf(env,
                       "certificates = ( { cert = \"%s/site.pem\"; key = \"%s/api.key\"; }, %s );",
                       dir, dir, it_tls_certificate(env, dir, "expired")));
    const char *path =
        it_write_file(env, "check.conf", it_config_render(env, &cfg, it_free_port()));
    const char *argv[] = {FC_BINARY, "-t", "-c", path, NULL};
    struct it_run_result r;
    it_run(env, argv, 10000, &r);
    assert_int_equal(r.exit_code, 1);
    if (strstr(r.err, it_strf(env,
                              "listeners[0].tls.certificates[0].key: key file \"%s/api.key\" "
                              "does not match certificate \"%s/site.pem\"",
                              dir, dir)) == NULL)
        fail_msg("no mismatch error: %s", r.err);
    if (strstr(r.err,
               it_strf(env, "certificates[1].cert: certificate \"%s/expired.pem\" expired on",
                       dir)) == NULL)
        fail_msg("no warning for the expired certificate: %s", r.err);

    /* The expired one alone passes the check, with its warning. */
    tls_config(env, &cfg,
               it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "expired")));
    path = it_write_file(env, "check2.conf", it_config_render(env, &cfg, it_free_port()));
    const char *argv2[] = {FC_BINARY, "-t", "-c", path, NULL};
    it_run(env, argv2, 10000, &r);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.err, "expired on"));

    /* Settings that are wrong: a version too old, a protocol not spoken, no certificate. */
    tls_config(env, &cfg,
               "certificates = ( ); min_version = \"TLSv1.1\"; alpn = ( \"h2\" ); "
               "session_tickets = 1;");
    path = it_write_file(env, "check3.conf", it_config_render(env, &cfg, it_free_port()));
    const char *argv3[] = {FC_BINARY, "-t", "-c", path, NULL};
    it_run(env, argv3, 10000, &r);
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err, "tls.min_version: \"TLSv1.1\": expected \"TLSv1.2\" or "
                                  "\"TLSv1.3\""));
    assert_non_null(strstr(r.err, "tls.alpn: only \"http/1.1\""));
    assert_non_null(strstr(r.err, "tls.session_tickets: expected true or false"));
    assert_non_null(strstr(r.err, "tls.certificates: at least one certificate is required"));
}

IT_TEST(sessions_resume_and_a_reload_rotates_the_keys)
{
    const char *dir = it_make_certs(env);
    const char *ca = it_strf(env, "%s/ca.pem", dir);
    struct it_config cfg;
    tls_config(env, &cfg,
               it_strf(env, "certificates = ( %s );", it_tls_certificate(env, dir, "site")));
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    const char *port = it_strf(env, "%d", f->port);

    /* Tickets (the default): the second connection resumes the first's session. */
    const char *argv[] = {PYTHON, TLS_CLIENT, "resume", port, "site.test", ca, NULL};
    struct it_run_result r;
    it_run(env, argv, 15000, &r);
    assert_non_null(strstr(r.out, "first reused=no second reused=yes version=TLSv1.3 status=200"));

    /* A ticket from before a reload is not taken after it: the keys are new. */
    const char *gate = it_path(env, "gate");
    const char *held[] = {PYTHON, TLS_CLIENT, "resume", port, "site.test", ca, gate, NULL};
    struct it_proc *p = it_start(env, "tls_client resume", held);
    it_proc_wait_output(env, p, "first done", 10000);
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    open_gate(gate);
    int status = -1;
    assert_int_equal(it_proc_wait(p, 15000, &status), 0);
    assert_non_null(strstr(it_proc_stdout(env, p), "second reused=no"));

    /* Without tickets, the session cache resumes; TLS 1.3 only refuses a TLS 1.2 client. */
    tls_config(env, &cfg,
               it_strf(env,
                       "certificates = ( %s ); session_tickets = false; min_version = "
                       "\"TLSv1.3\";",
                       it_tls_certificate(env, dir, "site")));
    cfg.admin = NULL;
    assert_int_equal(it_fulcrum_reload(env, f, &cfg), 0);
    it_run(env, argv, 15000, &r);
    assert_non_null(strstr(r.out, "second reused=yes version=TLSv1.3"));
    const char *tls12[] = {
        OPENSSL, "s_client", "-tls1_2", "-connect", it_strf(env, "127.0.0.1:%d", f->port), NULL};
    it_run(env, tls12, 10000, &r);
    assert_int_not_equal(r.exit_code, 0);
    assert_non_null(strstr(r.err, "alert protocol version"));
}

/* Starts tls_backend.py with the "backend.test" certificate; returns its port. */
static int tls_backend_start(struct it_env *env, const char *dir)
{
    int port = it_free_port();
    const char *argv[] = {PYTHON,
                          TLS_BACKEND,
                          it_strf(env, "%d", port),
                          it_strf(env, "%s/backend.pem", dir),
                          it_strf(env, "%s/backend.key", dir),
                          NULL};
    it_proc_wait_output(env, it_start(env, "tls_backend", argv), "listening", 10000);
    return port;
}

/* One GET on a connection of its own to fulcrum's plain listener; the response in *r. */
static void plain_get(struct it_env *env, int port, const char *path, struct it_response *r)
{
    it_get(env, port, "test", path, r);
}

IT_TEST(backend_tls_verifies_reuses_and_resumes)
{
    const char *dir = it_make_certs(env);
    int backend = tls_backend_start(env, dir);
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1; /* one worker: one keep-alive pool, one kept session */
    cfg.idle_ms = 400;
    struct it_pool_config *p = it_config_add_pool(&cfg, "secure", 0, 1, backend);
    p->pool_options = it_strf(env, "tls = { ca = \"%s/ca.pem\"; };", dir);
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    /* Verified against the pool's CA by the backend's IP address; no SNI for an address. */
    struct it_response r;
    plain_get(env, f->port, "/one", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "tls-backend\n");
    assert_string_equal(it_header(&r, "X-SNI"), "-");
    const char *first = it_strf(env, "%s", it_header(&r, "X-Connection"));
    assert_string_equal(it_header(&r, "X-Session-Reused"), "no");
    it_response_free(&r);

    /* The keep-alive pool keeps the TLS connection. */
    plain_get(env, f->port, "/two", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-Connection"), first);
    it_response_free(&r);

    /* Once it has been idle too long, a new connection resumes the session. */
    it_sleep_ms(700);
    plain_get(env, f->port, "/three", &r);
    assert_int_equal(r.status, 200);
    assert_string_not_equal(it_header(&r, "X-Connection"), first);
    assert_string_equal(it_header(&r, "X-Session-Reused"), "yes");
    it_response_free(&r);
}

IT_TEST(backend_tls_server_name_and_a_wrong_ca)
{
    const char *dir = it_make_certs(env);
    int backend = tls_backend_start(env, dir);
    struct it_config cfg;
    it_config_init(&cfg);
    struct it_pool_config *p = it_config_add_pool(&cfg, "named", 0, 1, backend);
    p->pool_options =
        it_strf(env, "tls = { ca = \"%s/ca.pem\"; server_name = \"backend.test\"; };", dir);
    p = it_config_add_pool(&cfg, "wrong", 0, 1, backend);
    p->pool_options = it_strf(env, "tls = { ca = \"%s/other-ca.pem\"; };", dir);
    p = it_config_add_pool(&cfg, "unchecked", 0, 1, backend);
    p->pool_options = "tls = { verify = false; server_name = \"elsewhere.test\"; };";
    cfg.routes = "{ path_prefix = \"/wrong/\"; pool = \"wrong\"; },\n"
                 "{ path_prefix = \"/unchecked/\"; pool = \"unchecked\"; }";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    struct it_response r;
    plain_get(env, f->port, "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-SNI"), "backend.test");
    it_response_free(&r);

    /* A certificate the pool's CA did not sign: a failed connect, and why. */
    plain_get(env, f->port, "/wrong/", &r);
    assert_int_equal(r.status, 502);
    it_response_free(&r);
    assert_true(it_fulcrum_wait_log(
        env, f,
        it_strf(env,
                "pool wrong: backend 127.0.0.1:%d: connect: TLS handshake: certificate verify "
                "failed: ",
                backend),
        1, 5000));

    /* verify = false takes any certificate, for any name. */
    plain_get(env, f->port, "/unchecked/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-SNI"), "elsewhere.test");
    it_response_free(&r);

    /* A CA file that is not there is the configuration's error, named. */
    const char *bad = it_strf(env, "%s/nope.pem", dir);
    struct it_config broken = cfg;
    broken.npools = 1;
    broken.routes = NULL;
    broken.pools[0].pool_options = it_strf(env, "tls = { ca = \"%s\"; };", bad);
    const char *path =
        it_write_file(env, "broken.conf", it_config_render(env, &broken, it_free_port()));
    const char *argv[] = {FC_BINARY, "-t", "-c", path, NULL};
    struct it_run_result res;
    it_run(env, argv, 10000, &res);
    assert_int_equal(res.exit_code, 1);
    assert_non_null(
        strstr(res.err, it_strf(env, "pool \"named\": tls.ca: cannot read CA file \"%s\"", bad)));
}

IT_TEST(health_checks_speak_tls_to_a_tls_pool)
{
    const char *dir = it_make_certs(env);
    int backend = tls_backend_start(env, dir);
    struct it_config cfg;
    it_config_init(&cfg);
    /* Down until a check passes: only a check over TLS can pass. */
    struct it_pool_config *p = it_config_add_pool(&cfg, "good", 0, 1, backend);
    p->pool_options = it_strf(env, "tls = { ca = \"%s/ca.pem\"; };", dir);
    p->health = "plugin = \"http\"; path = \"/hc\"; interval_ms = 100; timeout_ms = 1000; "
                "rise = 1; fall = 1; initial = \"down\";";
    p = it_config_add_pool(&cfg, "wrong", 0, 1, backend);
    p->pool_options = it_strf(env, "tls = { ca = \"%s/other-ca.pem\"; };", dir);
    p->health = "plugin = \"tcp\"; interval_ms = 100; timeout_ms = 1000; rise = 1; fall = 1;";
    cfg.routes = "{ path_prefix = \"/wrong/\"; pool = \"wrong\"; }";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);

    assert_true(it_fulcrum_wait_log(
        env, f, it_strf(env, "pool good: backend 127.0.0.1:%d UP", backend), 1, 5000));
    struct it_response r;
    plain_get(env, f->port, "/", &r);
    assert_int_equal(r.status, 200);
    it_response_free(&r);
    /* The tcp checker too goes through the handshake, and says why it failed. */
    assert_true(it_fulcrum_wait_log(
        env, f,
        it_strf(env,
                "pool wrong: backend 127.0.0.1:%d DOWN (TLS handshake: certificate verify failed",
                backend),
        1, 5000));
    plain_get(env, f->port, "/wrong/", &r);
    assert_int_equal(r.status, 503);
    it_response_free(&r);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(certificates_are_in_the_status_and_the_metrics),
    IT_CASE(pipelining_and_large_bodies_over_tls),
    IT_CASE(sessions_resume_and_a_reload_rotates_the_keys),
    IT_CASE(health_checks_speak_tls_to_a_tls_pool),
    IT_CASE(backend_tls_verifies_reuses_and_resumes),
    IT_CASE(backend_tls_server_name_and_a_wrong_ca),
    IT_CASE(sni_picks_the_certificate_by_name),
    IT_CASE(old_versions_plaintext_and_garbage_are_refused_and_counted),
    IT_CASE(handshake_is_bounded_by_client_header_ms),
    IT_CASE(reload_swaps_certificates_and_open_connections_keep_theirs),
    IT_CASE(bad_certificate_on_reload_keeps_the_old),
    IT_CASE(check_reports_certificate_problems_by_file),
};

IT_MAIN(tests)
