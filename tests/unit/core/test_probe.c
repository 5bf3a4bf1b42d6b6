/*
 * Tests of core/probe.c, the probe service behind fc_host.probe_connect(),
 * through the host table a health plugin gets (core/plugin_host.c), against
 * sockets the test owns on 127.0.0.1 (see probe_harness.h). The probes are
 * the test's own: its callbacks stand for a plugin's, and the backend is a
 * listening socket that on_connected() accepts from, so that the test knows
 * exactly what the backend has sent when, and what it received.
 */
#include "plugins/health/probe_harness.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Any health plugin will do: its instance only carries the host table under test. */
#define CARRIER FC_PLUGIN_BUILD_DIR "/tcp.so"

/* The backend and the callbacks of one test, and what the callbacks saw. */
struct script {
    int listen_fd;      /* the backend, listening; -1 until backend_listens() */
    int peer_fd;        /* the connection on_connected() accepted */
    const char *answer; /* what the backend sends once connected (NULL: nothing) */
    size_t answer_len;
    int hang_up;                  /* and then it shuts its side down */
    int connected_step;           /* what on_connected() returns, */
    const char *connected_reason; /* with this reason (NULL: none) */
    size_t pass_at;               /* on_data() passes once this many bytes are in (0: never) */

    int connected_calls;
    int early_errno; /* errno of a peek at the backend's side inside on_connected() */
    int data_calls, eof_calls;
    size_t last_len, max_len;
    int not_from_first;    /* data did not start at the answer's first byte */
    int eof_brought_bytes; /* the eof call had bytes that no call before had */
};

static struct script S;

static int script_connected(void *arg, char *reason, size_t reason_len)
{
    struct script *s = arg;
    s->connected_calls++;
    /* The client's connect is complete, so the backend's accept() returns at once. */
    s->peer_fd = accept(s->listen_fd, NULL, NULL);
    assert_true(s->peer_fd >= 0);
    char byte;
    s->early_errno = recv(s->peer_fd, &byte, 1, MSG_DONTWAIT) < 0 ? errno : 0;
    if (s->answer != NULL)
        assert_int_equal(write(s->peer_fd, s->answer, s->answer_len), (ssize_t)s->answer_len);
    if (s->hang_up)
        shutdown(s->peer_fd, SHUT_WR);
    snprintf(reason, reason_len, "%s", s->connected_reason != NULL ? s->connected_reason : "");
    return s->connected_step;
}

static int script_data(void *arg, const char *data, size_t len, int eof, char *reason,
                       size_t reason_len)
{
    struct script *s = arg;
    s->data_calls++;
    if (len > s->max_len)
        s->max_len = len;
    if (len > 0 && (len > s->answer_len || memcmp(data, s->answer, len) != 0))
        s->not_from_first = 1;
    if (eof) {
        s->eof_calls++;
        s->eof_brought_bytes |= len != s->last_len;
    }
    s->last_len = len;
    if (s->pass_at > 0 && len >= s->pass_at) {
        snprintf(reason, reason_len, "%zu bytes", len);
        return FC_PROBE_PASS;
    }
    if (eof) {
        snprintf(reason, reason_len, "eof after %zu bytes", len);
        return FC_PROBE_FAIL;
    }
    return FC_PROBE_MORE;
}

/* Points backend i at a listening socket that on_connected() accepts from. */
static void backend_listens(uint32_t i)
{
    S.listen_fd = bound_socket();
    assert_int_equal(listen(S.listen_fd, 16), 0);
    set_backend(i, local_port(S.listen_fd));
}

/* The backend's side sends `text` once connected. */
static void backend_answers(const char *text, size_t len, int hang_up)
{
    S.answer = text;
    S.answer_len = len;
    S.hang_up = hang_up;
}

/* A probe of backend i with both callbacks of the script, sending nothing. */
static struct fc_probe_args script_args(uint32_t i, uint32_t timeout_ms)
{
    return (struct fc_probe_args){
        .size = sizeof(struct fc_probe_args),
        .backend = &H.views[i],
        .timeout_ms = timeout_ms,
        .on_connected = script_connected,
        .on_data = script_data,
        .arg = &S,
    };
}

/* The probe handle of backend i: the address of its result, as probe_harness.h wants. */
static struct fc_probe *handle(uint32_t i)
{
    return (struct fc_probe *)(void *)&H.results[i];
}

/* Starts a probe through the host table; its verdict lands in H.results[i]. */
static int start(uint32_t i, const struct fc_probe_args *args)
{
    memset(&H.results[i], 0, sizeof(H.results[i]));
    uv_update_time(&H.loop.uv);
    H.results[i].started_ms = now_ms();
    H.in_probe = 1;
    int rc = H.inst.host.probe_connect(&H.inst.host, handle(i), args);
    H.in_probe = 0;
    assert_false(H.early_done); /* never a verdict before probe_connect() returns */
    return rc;
}

/* Runs the probe to its verdict, which must come once, with no handle of it left on the loop. */
static struct probe_result *run(uint32_t i, const struct fc_probe_args *args)
{
    assert_int_equal(start(i, args), 0);
    struct probe_result *r = wait_for(i);
    assert_int_equal(fc_prober_in_flight(&H.inst.prober), 0);
    return r;
}

/* Reads what the backend received until the probe's side closed. */
static const char *backend_received(void)
{
    static char buf[256];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(S.peer_fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    return buf;
}

static int setup(void **unused)
{
    memset(&S, 0, sizeof(S));
    S.listen_fd = S.peer_fd = -1;
    S.connected_step = FC_PROBE_MORE;
    if (harness_setup(CARRIER, 2) < 0)
        return -1;
    return create_instance("") == 0 ? 0 : -1;
}

static int teardown(void **unused)
{
    int rc = harness_teardown(NULL);
    if (S.peer_fd >= 0)
        close(S.peer_fd);
    if (S.listen_fd >= 0)
        close(S.listen_fd);
    return rc;
}

/* ------------------------------------------------------------------------ */

static void test_pass_reported_after_close(void **unused)
{
    backend_listens(0);
    backend_answers("HELLO\r\n", 7, 0);
    S.pass_at = 7;
    struct fc_probe_args args = script_args(0, 1000);
    assert_int_equal(start(0, &args), 0);
    assert_int_equal(fc_prober_in_flight(&H.inst.prober), 1);
    /* wait_for() checks that no handle of the probe was on the loop when the verdict came. */
    struct probe_result *r = wait_for(0);
    assert_true(r->ok);
    assert_string_equal(r->reason, "7 bytes");
    assert_int_equal(S.connected_calls, 1);
    assert_int_equal(S.not_from_first, 0);
    assert_int_equal(fc_prober_in_flight(&H.inst.prober), 0);
}

static void test_on_connected_decides(void **unused)
{
    backend_listens(0);
    S.connected_step = FC_PROBE_PASS;
    S.connected_reason = "up";
    struct fc_probe_args args = script_args(0, 1000);
    args.send = "PING\r\n";
    args.send_len = 6;
    struct probe_result *r = run(0, &args);
    assert_true(r->ok);
    assert_string_equal(r->reason, "up");
    /* A verdict at connect: nothing was sent, nothing read. */
    assert_string_equal(backend_received(), "");
    assert_int_equal(S.data_calls, 0);
}

static void test_sends_a_copy_after_on_connected(void **unused)
{
    backend_listens(0);
    backend_answers("+PONG\r\n", 7, 0);
    S.pass_at = 7;
    char request[] = "PING\r\n";
    struct fc_probe_args args = script_args(0, 1000);
    args.send = request;
    args.send_len = strlen(request);
    assert_int_equal(start(0, &args), 0);
    memcpy(request, "XXXX", 4); /* the service sends its own copy */
    struct probe_result *r = wait_for(0);
    assert_true(r->ok);
    /* When on_connected() ran, the backend had received nothing yet. */
    assert_int_equal(S.early_errno, EAGAIN);
    assert_string_equal(backend_received(), "PING\r\n");
}

static void test_on_data_sees_everything_then_eof(void **unused)
{
    backend_listens(0);
    backend_answers("abc", 3, 1);
    struct fc_probe_args args = script_args(0, 1000);
    struct probe_result *r = run(0, &args);
    assert_false(r->ok);
    assert_string_equal(r->reason, "eof after 3 bytes");
    assert_true(S.data_calls >= 2);
    assert_int_equal(S.eof_calls, 1);
    assert_int_equal(S.last_len, 3);
    assert_int_equal(S.not_from_first, 0);
    /* The eof call comes on its own, after every byte was handed over without it. */
    assert_int_equal(S.eof_brought_bytes, 0);

    /* A backend that closes without a byte: one call, empty, with eof. */
    close(S.peer_fd);
    S.peer_fd = -1;
    memset(&S.data_calls, 0, sizeof(S) - offsetof(struct script, data_calls));
    backend_answers(NULL, 0, 1);
    r = run(0, &args);
    assert_string_equal(r->reason, "eof after 0 bytes");
    assert_int_equal(S.data_calls, 1);
    assert_int_equal(S.eof_calls, 1);
}

static void test_recv_max_is_capped(void **unused)
{
    static char answer[10000];
    for (size_t i = 0; i < sizeof(answer); i++)
        answer[i] = (char)('a' + i % 26);
    static const struct {
        size_t recv_max, kept;
    } cases[] = {
        {0, FC_PROBE_RECV_MAX},
        {1 << 20, FC_PROBE_RECV_MAX},
        {10, 10},
    };
    backend_listens(0);
    backend_answers(answer, sizeof(answer), 0);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        memset(&S.data_calls, 0, sizeof(S) - offsetof(struct script, data_calls));
        struct fc_probe_args args = script_args(0, 1000);
        args.recv_max = cases[k].recv_max;
        struct probe_result *r = run(0, &args);
        /* on_data() never judged: with the buffer full, that is a failure. */
        assert_false(r->ok);
        assert_string_equal(r->reason, "no verdict");
        if (S.max_len != cases[k].kept)
            fail_msg("recv_max %zu: on_data saw up to %zu bytes, expected %zu", cases[k].recv_max,
                     S.max_len, cases[k].kept);
        assert_int_equal(S.not_from_first, 0);
        assert_int_equal(S.eof_calls, 0);
        close(S.peer_fd);
        S.peer_fd = -1;
    }
}

static void test_timeout(void **unused)
{
    backend_listens(0); /* accepts, reads, never answers */
    struct fc_probe_args args = script_args(0, 200);
    assert_int_equal(start(0, &args), 0);
    test_loop_arm_reference(&H.loop, 200);
    struct probe_result *r = wait_for(0);
    assert_false(r->ok);
    assert_string_equal(r->reason, "timeout after 200 ms");
    test_loop_assert_in_time(&H.loop, "the probe ended", r->started_ms, r->ended_ms, 200, 1);
    assert_int_equal(S.data_calls, 0);
}

static void test_connect_failures(void **unused)
{
    /* Backend 1 points at the bound port nobody listens on. */
    struct fc_probe_args args = script_args(1, 1000);
    struct probe_result *r = run(1, &args);
    assert_false(r->ok);
    assert_string_equal(r->reason, "connect: connection refused");

    /* Refused by uv_tcp_connect() itself: still reported later, from the loop (see start()). */
    set_backend_unix(1);
    r = run(1, &args);
    assert_false(r->ok);
    assert_string_equal(r->reason, "connect: invalid argument");
    assert_int_equal(S.connected_calls, 0);
}

static void test_destroy_inside_report(void **unused)
{
    backend_listens(0);
    S.connected_step = FC_PROBE_PASS;
    H.destroy_in_done = 1;
    struct fc_probe_args args = script_args(0, 1000);
    assert_true(run(0, &args)->ok);
    assert_false(H.have_inst);
    assert_int_equal(plugin_handles(), 0);
}

static void test_one_probe_per_handle(void **unused)
{
    backend_listens(0);
    S.connected_step = FC_PROBE_PASS;
    struct fc_probe_args args = script_args(0, 1000);
    assert_int_equal(start(0, &args), 0);

    /* The same handle again is refused, and so is probe_done() for it: the service ends it. */
    assert_int_equal(H.inst.host.probe_connect(&H.inst.host, handle(0), &args), FC_EINVAL);
    char line[128];
    snprintf(line, sizeof(line), "pool web: health tcp: backend %s: a probe is already in flight",
             H.addresses[0]);
    assert_logged(line);
    H.inst.host.probe_done(&H.inst.host, handle(0), 0, "too early");
    assert_logged("pool web: health tcp: probe_done() called for a probe that probe_connect() "
                  "runs");
    assert_int_equal(H.results[0].done, 0);

    /* Another handle is another probe. */
    struct fc_probe_args other = script_args(1, 1000);
    other.on_connected = NULL;
    assert_int_equal(start(1, &other), 0);
    finish_two_probes("connect: connection refused");
}

static void test_default_reasons(void **unused)
{
    static const struct {
        int step;
        int data; /* with on_data() */
        int ok;
        const char *reason;
    } cases[] = {
        {FC_PROBE_PASS, 1, 1, "passed"},
        {FC_PROBE_FAIL, 1, 0, "failed"},
        {7, 1, 0, "failed"}, /* not a step: a failure */
        {FC_PROBE_MORE, 0, 0, "no verdict"},
    };
    backend_listens(0);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        S.connected_step = cases[k].step;
        struct fc_probe_args args = script_args(0, 1000);
        if (!cases[k].data)
            args.on_data = NULL;
        struct probe_result *r = run(0, &args);
        assert_int_equal(r->ok, cases[k].ok);
        assert_string_equal(r->reason, cases[k].reason);
        close(S.peer_fd);
        S.peer_fd = -1;
    }
}

static void test_invalid_args(void **unused)
{
    struct fc_probe_args args = script_args(0, 1000);
    args.size = 8;
    assert_int_equal(start(0, &args), FC_EINVAL);
    char line[128];
    snprintf(line, sizeof(line),
             "pool web: health tcp: probe_connect(): args too small (ABI 1.1 has %zu bytes)",
             sizeof(struct fc_probe_args));
    assert_logged(line);
    assert_int_equal(start(0, NULL), FC_EINVAL);

    args = script_args(0, 1000);
    args.backend = NULL;
    assert_int_equal(start(0, &args), FC_EINVAL);
    assert_logged("pool web: health tcp: probe_connect(): no backend address");

    args = script_args(0, 1000);
    args.on_connected = NULL;
    args.on_data = NULL;
    assert_int_equal(start(0, &args), FC_EINVAL);
    assert_logged("pool web: health tcp: probe_connect(): neither on_connected nor on_data: "
                  "nothing would judge the backend");

    args = script_args(0, 1000);
    args.send_len = 4;
    assert_int_equal(start(0, &args), FC_EINVAL);
    assert_logged("pool web: health tcp: probe_connect(): send is NULL but send_len is not 0");

    /* More to send than memory can hold: refused before any allocation. */
    args.send = "x";
    args.send_len = SIZE_MAX;
    assert_int_equal(start(0, &args), FC_ENOMEM);

    /* An instance without a main loop and probe_done hook (a strategy's, `fulcrum -t`'s). */
    struct fc_instance bare;
    assert_int_equal(fc_instance_create(&bare, H.plugin, NULL, NULL, NULL, &H.pool, NULL, "bare"),
                     0);
    args = script_args(0, 1000);
    assert_int_equal(bare.host.probe_connect(&bare.host, handle(0), &args), FC_EINVAL);
    assert_logged("bare: probe_connect() called, but this instance runs no probes");
    fc_instance_destroy(&bare);

    /* None of them started anything. */
    assert_int_equal(plugin_handles(), 0);
    assert_int_equal(fc_prober_in_flight(&H.inst.prober), 0);
    uv_run(&H.loop.uv, UV_RUN_NOWAIT);
    assert_int_equal(H.results[0].done, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_pass_reported_after_close),
        T(test_on_connected_decides),
        T(test_sends_a_copy_after_on_connected),
        T(test_on_data_sees_everything_then_eof),
        T(test_recv_max_is_capped),
        T(test_timeout),
        T(test_connect_failures),
        T(test_destroy_inside_report),
        T(test_one_probe_per_handle),
        T(test_default_reasons),
        T(test_invalid_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
