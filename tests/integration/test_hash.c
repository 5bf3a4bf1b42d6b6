/*
 * The hash strategy with bounded loads under real load: 16 requests for one
 * hot URI, all in flight at once (the backends hold each answer 600 ms), over
 * 4 backends and 2 workers. With balance_factor 1.25 no backend may take a
 * request while it has ceil(1.25 * (in flight + 1) / 4) or more, so none gets
 * more than ceil(1.25 * 16 / 4) = 5 of them; without it, all 16 go to the
 * URI's own backend.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENTS 16

struct client {
    pthread_t thread;
    int port;
    char backend[16]; /* X-Backend of the answer; "" when none came */
};

static void *client_run(void *arg)
{
    struct client *c = arg;
    int fd = it_socket_connect(c->port, 10);
    if (fd < 0)
        return NULL;
    const char *req = "GET /hot/object HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    char buf[4096];
    size_t len = 0;
    if (it_send_all(fd, req, strlen(req)) == 0) {
        ssize_t n;
        while (len < sizeof(buf) - 1 && (n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
            len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd);
    it_head_value(buf, "X-Backend", c->backend, sizeof(c->backend));
    return NULL;
}

/* The number of the CLIENTS concurrent requests each backend answered, into count[4]. */
static void hot_key(struct it_env *env, const char *options, int *count)
{
    const char *const slow[] = {"--delay-ms", "600", NULL};
    static const char *const names[] = {"a", "b", "c", "d"};
    struct it_config cfg;
    it_config_init(&cfg);
    cfg.workers = 2;
    struct it_pool_config *p = it_config_add_pool(&cfg, "web", 0, 0);
    for (int i = 0; i < 4; i++)
        p->ports[p->nports++] = it_backend_start_args(env, names[i], slow);
    p->strategy = "hash";
    p->strategy_options = options;
    struct it_fulcrum *f = it_fulcrum_start(env, &cfg);
    static struct client clients[CLIENTS];
    memset(clients, 0, sizeof(clients));
    for (int i = 0; i < CLIENTS; i++) {
        clients[i].port = f->port;
        assert_int_equal(pthread_create(&clients[i].thread, NULL, client_run, &clients[i]), 0);
    }
    memset(count, 0, 4 * sizeof(*count));
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(clients[i].thread, NULL);
        if (clients[i].backend[0] < 'a' || clients[i].backend[0] > 'd')
            fail_msg("request %d got no answer from a backend", i);
        count[clients[i].backend[0] - 'a']++;
    }
    print_message("%s: a %d, b %d, c %d, d %d\n", options, count[0], count[1], count[2], count[3]);
    it_proc_signal(f->proc, SIGTERM);
    it_fulcrum_expect_clean_exit(env, f, 5000);
}

IT_TEST(a_hot_key_spills_over_within_the_bound)
{
    int count[4];
    hot_key(env, "key = \"uri\"; balance_factor = 1.25;", count);
    int used = 0;
    for (int i = 0; i < 4; i++) {
        assert_true(count[i] <= 5);
        used += count[i] > 0;
    }
    assert_true(used >= 4); /* 16 requests, at most 5 each: every backend took some */
}

IT_TEST(without_a_bound_the_hot_key_stays_home)
{
    int count[4];
    hot_key(env, "key = \"uri\";", count);
    int home = 0;
    for (int i = 0; i < 4; i++)
        if (count[i] == CLIENTS)
            home = 1;
    assert_true(home);
}

static const struct CMUnitTest tests[] = {
    IT_CASE(a_hot_key_spills_over_within_the_bound),
    IT_CASE(without_a_bound_the_hot_key_stays_home),
};

IT_MAIN(tests)
