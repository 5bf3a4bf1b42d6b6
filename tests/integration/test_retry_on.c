/*
 * A pool's `retry_on`: which failures of a backend send the request to
 * another one, as users of nginx's proxy_next_upstream and HAProxy's
 * retry-on expect. Only requests safe to repeat (an idempotent method, no
 * body) are retried, within `retries`, never twice to one backend, and
 * every retry is counted in fulcrum_pool_retries_total.
 */
#include "harness.h"

#include <string.h>

/* Answers every request with 503 (and counts them, through the harness's records). */
static void always_503(int fd, void *arg)
{
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t head = it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 3000);
        if (head < 0)
            return;
        long cl = it_raw_content_length(buf, (size_t)head);
        it_raw_consume(buf, &len, (size_t)head);
        if (cl > 0 && it_raw_read_len(fd, buf, sizeof(buf), &len, (size_t)cl, 3000) == 0)
            it_raw_consume(buf, &len, (size_t)cl);
        if (it_raw_write_str(
                fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n") != 0)
            return;
    }
}

/* Reads a request head and hangs up. */
static void hang_up(int fd, void *arg)
{
    char buf[4096];
    size_t len = 0;
    it_raw_read_until(fd, buf, sizeof(buf), &len, "\r\n\r\n", 3000);
}

static int requests_to(struct it_env *env, int port)
{
    size_t len = 0;
    const char *all = it_raw_backend_received_all(env, port, &len);
    return (int)it_count(all, " HTTP/1.1\r\n");
}

/* A pool of the raw backend first, then demo backend "a"; one worker: the first pick is the raw
 * one. */
static struct it_fulcrum *start(struct it_env *env, int raw, const char *retry_on, int *admin,
                                int *a)
{
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    *a = it_backend_start(env, "a");
    struct it_pool_config *p = it_config_add_pool(&cfg, "web", 1, 2, raw, *a);
    p->pool_options = retry_on;
    p->strategy = "round_robin";
    *admin = it_free_port();
    cfg.admin = it_strf(env, "address = \"127.0.0.1:%d\";", *admin);
    return it_fulcrum_start(env, &cfg);
}

static const char *retries_series = "fulcrum_pool_retries_total{pool=\"web\"}";

IT_TEST(a_503_is_retried_for_a_get_but_not_for_a_post)
{
    int raw = it_raw_backend_start(env, always_503, NULL);
    int admin, a;
    struct it_fulcrum *f = start(env, raw, "retry_on = ( \"connect\", \"503\" );", &admin, &a);
    struct it_response r;
    it_get(env, f->port, "test", "/", &r); /* round_robin's first pick: the 503 one */
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-Backend"), "a");
    it_response_free(&r);
    assert_int_equal(requests_to(env, raw), 1);
    assert_int_equal(it_metric(env, admin, retries_series), 1);

    /* POSTs with a body are not repeated: each one the 503 backend gets, its client gets. */
    int refused = 0;
    for (int i = 0; i < 4; i++) {
        it_fetch(env, f->port, "POST",
                 "POST /sum HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc", &r);
        if (r.status == 503) {
            assert_string_equal(r.body, "busy\n");
            refused++;
        } else {
            assert_int_equal(r.status, 200);
            assert_string_equal(it_header(&r, "X-Backend"), "a");
        }
        it_response_free(&r);
    }
    assert_true(refused >= 1);
    assert_int_equal(requests_to(env, raw), 1 + refused);
    assert_int_equal(it_metric(env, admin, retries_series), 1);
}

IT_TEST(without_retry_on_a_503_is_the_answer)
{
    int raw = it_raw_backend_start(env, always_503, NULL);
    int admin, a;
    struct it_fulcrum *f = start(env, raw, NULL, &admin, &a); /* default: ( "connect" ) */
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 503);
    it_response_free(&r);
    assert_int_equal(it_metric(env, admin, retries_series), 0);
}

IT_TEST(a_reset_before_the_head_is_retried_with_reset)
{
    int raw = it_raw_backend_start(env, hang_up, NULL);
    int admin, a;
    struct it_fulcrum *f = start(env, raw, "retry_on = ( \"reset\" );", &admin, &a);
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(it_header(&r, "X-Backend"), "a");
    it_response_free(&r);
    assert_int_equal(it_metric(env, admin, retries_series), 1);
    /* A POST, even without a body, is not repeated: the hang-up is its 502. */
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        it_fetch(env, f->port, "POST", "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
                 &r);
        failed += r.status == 502;
        it_response_free(&r);
    }
    assert_true(failed >= 1);
    assert_int_equal(it_metric(env, admin, retries_series), 1);
}

IT_TEST(never_twice_to_one_backend)
{
    int x = it_raw_backend_start(env, always_503, NULL);
    int y = it_raw_backend_start(env, always_503, NULL);
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 1;
    struct it_pool_config *p = it_config_add_pool(&cfg, "web", 5, 2, x, y);
    p->pool_options = "retry_on = ( \"502\", \"503\", \"504\" );";
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    struct it_response r;
    it_get(env, f->port, "test", "/", &r);
    /* Both tried once, then nothing is left: the last answer goes to the client. */
    assert_int_equal(r.status, 503);
    it_response_free(&r);
    assert_int_equal(requests_to(env, x), 1);
    assert_int_equal(requests_to(env, y), 1);
}

IT_TEST(a_bad_retry_on_is_refused)
{
    struct it_config cfg;
    it_config_demo_pool(env, &cfg, 1)->pool_options = "retry_on = ( \"connect\", \"500\" );";
    const char *path = it_write_file(env, "bad.conf", it_config_render(env, &cfg, it_free_port()));
    const char *argv[] = {FC_BINARY, "-t", "-c", path, NULL};
    struct it_run_result res;
    it_run(env, argv, 10000, &res);
    assert_int_not_equal(res.exit_code, 0);
    assert_non_null(strstr(res.err, "retry_on: \"500\" is none of"));
}

static const struct CMUnitTest tests[] = {
    IT_CASE(a_503_is_retried_for_a_get_but_not_for_a_post),
    IT_CASE(without_retry_on_a_503_is_the_answer),
    IT_CASE(a_reset_before_the_head_is_retried_with_reset),
    IT_CASE(never_twice_to_one_backend),
    IT_CASE(a_bad_retry_on_is_refused),
};

IT_MAIN(tests)
