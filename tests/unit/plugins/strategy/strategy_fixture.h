/*
 * What the strategy tests share, on top of ../plugin_fixture.h: the
 * strategy's .so loaded through the real loader, a fresh copy for each test
 * (so that its first instance is instance 0), and one instance of it created
 * through the real host over a synthetic pool "web" whose weights and
 * backend states (up, in-flight count) the test sets, picked from as worker
 * 0 would pick. pick() does not count its own picks in flight (the core
 * does), so the counts stay what a test sets.
 *
 * Included by exactly one test program each; everything is static, and the
 * functions inline, as in ../plugin_fixture.h.
 */
#ifndef FC_TEST_STRATEGY_FIXTURE_H
#define FC_TEST_STRATEGY_FIXTURE_H

#include "plugin_fixture.h"

/* The most backends a test's pool has. */
#define MAX_BACKENDS 4

static struct fc_backend_state states[MAX_BACKENDS];
static struct fc_backend_view views[MAX_BACKENDS];
static struct fc_pool_view pool = {.name = "web", .n_backends = 0, .backends = views};

struct strategy_fixture {
    struct fc_plugin *plugin;
    struct fc_instance inst; /* over `pool`, made by use_pool() */
    int have_inst;
};
static struct strategy_fixture fx;

/* A cmocka test of the strategy at `path`, with a fresh copy of it loaded. */
#define STRATEGY_TEST(name, path)                                                                  \
    cmocka_unit_test_prestate_setup_teardown(name, strategy_setup, strategy_teardown,              \
                                             (void *)(path))

/*
 * The cmocka setup: loads the strategy whose path is *state (see
 * STRATEGY_TEST()). 0, or -1 after printing why.
 */
static inline int strategy_setup(void **state)
{
    memset(&fx, 0, sizeof(fx));
    return load_plugin(*state, FC_PLUGIN_STRATEGY, &fx.plugin);
}

/* The cmocka teardown: destroys the instance and unloads the strategy. */
static inline int strategy_teardown(void **state)
{
    if (fx.have_inst)
        fc_instance_destroy(&fx.inst);
    fc_plugin_unload(fx.plugin);
    memset(&fx, 0, sizeof(fx));
    return 0;
}

/*
 * (Re)creates the instance for a pool of the first n backends, with these
 * weights (NULL: all 1), all up and idle.
 */
static inline void use_pool(uint32_t n, const uint32_t *weights)
{
    static const char *const addresses[MAX_BACKENDS] = {"127.0.0.1:9001", "127.0.0.1:9002",
                                                        "127.0.0.1:9003", "127.0.0.1:9004"};
    if (fx.have_inst)
        fc_instance_destroy(&fx.inst);
    fx.have_inst = 0;
    for (uint32_t i = 0; i < MAX_BACKENDS; i++) {
        states[i] = (struct fc_backend_state){.up = 1, .inflight = 0};
        views[i] = (struct fc_backend_view){.index = i,
                                            .weight = weights != NULL && i < n ? weights[i] : 1,
                                            .address = addresses[i],
                                            .state = &states[i]};
    }
    pool.n_backends = n;
    char label[64];
    snprintf(label, sizeof(label), "pool web: strategy %s", fx.plugin->desc->name);
    assert_int_equal(fc_instance_create(&fx.inst, fx.plugin, NULL, NULL, NULL, &pool, NULL, label),
                     0);
    fx.have_inst = 1;
}

/* Sets the in-flight counts of backends 0 to 3. */
static inline void set_inflight(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    states[0].inflight = a;
    states[1].inflight = b;
    states[2].inflight = c;
    states[3].inflight = d;
}

/* Another instance over `pool`, as the next worker's or generation's. */
static inline void create_other(struct fc_instance *other)
{
    assert_int_equal(fc_instance_create(other, fx.plugin, NULL, NULL, NULL, &pool, NULL, "other"),
                     0);
}

/* A pick by `worker` from instance inst, skipping the backends flagged in tried (may be NULL). */
static inline int pick_from(const struct fc_instance *inst, uint32_t worker, const uint8_t *tried)
{
    struct fc_pick_args args = {.size = sizeof(args), .worker = worker, .tried = tried};
    return fx.plugin->desc->strategy->pick(inst->state, &args);
}

/* A pick from the fixture's instance, as worker 0. */
static inline int pick(const uint8_t *tried)
{
    return pick_from(&fx.inst, 0, tried);
}

/*
 * `picks` picks into count[0 .. pool.n_backends), which it zeroes first;
 * every one must be a backend of the pool.
 */
static inline void count_picks(int *count, int picks, const uint8_t *tried)
{
    memset(count, 0, pool.n_backends * sizeof(*count));
    for (int i = 0; i < picks; i++) {
        int b = pick(tried);
        if (b < 0 || b >= (int)pool.n_backends)
            fail_msg("pick %d returned %d", i, b);
        count[b]++;
    }
}

/*
 * Creates an instance of the fixture's plugin over `pool` from the keys in
 * `keys` (libconfig text inside its group: `decay_ms = 5;`), as read from
 * "test.conf". Returns what fc_instance_create() returned.
 */
static inline int create_with_keys(struct fc_instance *in, const char *keys,
                                   const struct fc_pool_view *over)
{
    struct parsed_group p;
    char text[512];
    snprintf(text, sizeof(text), "strategy = { plugin = \"%s\"; %s };", fx.plugin->desc->name,
             keys);
    parse_group(&p, text, "strategy", fx.plugin->desc->name);
    int rc = fc_instance_create(in, fx.plugin, &p.conf, "test.conf", NULL, over, NULL,
                                "pool web: strategy");
    config_destroy(&p.lc);
    return rc;
}

/* Fails unless each of the NULL-terminated `bad` key sets is refused, with a line logged. */
static inline void assert_keys_refused(const char *const *bad)
{
    for (size_t i = 0; bad[i] != NULL; i++) {
        struct fc_instance in;
        log_capture_start();
        int rc = create_with_keys(&in, bad[i], &pool);
        log_capture_stop();
        if (rc == 0) {
            fc_instance_destroy(&in);
            fail_msg("accepted: %s", bad[i]);
        }
        if (n_log_lines == 0)
            fail_msg("refused without a word: %s", bad[i]);
    }
}

#endif
