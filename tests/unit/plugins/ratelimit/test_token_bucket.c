/*
 * Tests of plugins/ratelimit/token_bucket.c, loaded through the real loader
 * and created through the real host from a `rate_limit` group parsed as the
 * config loader hands it over, with the host's clock replaced by one the
 * tests move (struct fc_instance_hooks.now_ns).
 */
#include "plugin_fixture.h"

#include <pthread.h>
#include <unistd.h>

#define TOKEN_BUCKET FC_PLUGIN_BUILD_DIR "/token_bucket.so"
#define CONFIG_FILE "test.conf"

#define MS UINT64_C(1000000)
#define SEC UINT64_C(1000000000)

/* The keys the core reads from a `rate_limit` group itself. */
static const char *const ratelimit_core_keys[] = {"key", NULL};

/* The clock the plugin sees; threads read it, so it is accessed atomically. */
static uint64_t clock_ns;

static uint64_t test_clock(void *owner)
{
    return __atomic_load_n(&clock_ns, __ATOMIC_RELAXED);
}

static void advance(uint64_t ns)
{
    __atomic_fetch_add(&clock_ns, ns, __ATOMIC_RELAXED);
}

struct fixture {
    struct fc_plugin *plugin;
    struct fc_instance inst;
    int have_inst;
    struct parsed_group group;
    int have_group;
};
static struct fixture fx;

/* Number of captured log lines that contain `part`. */
static int logged_containing(const char *part)
{
    int n = 0;
    for (int i = 0; i < n_log_lines; i++)
        n += strstr(log_lines[i], part) != NULL;
    return n;
}

static int setup(void **unused)
{
    memset(&fx, 0, sizeof(fx));
    log_capture_start();
    clock_ns = 1000 * SEC;
    return load_plugin(TOKEN_BUCKET, FC_PLUGIN_RATELIMIT, &fx.plugin);
}

static void drop_instance(void)
{
    if (fx.have_inst)
        fc_instance_destroy(&fx.inst);
    fx.have_inst = 0;
    if (fx.have_group)
        config_destroy(&fx.group.lc);
    fx.have_group = 0;
}

static int teardown(void **unused)
{
    drop_instance();
    fc_plugin_unload(fx.plugin);
    fx.plugin = NULL;
    log_capture_stop();
    return 0;
}

/*
 * Creates the instance from a rate_limit group whose own lines are `body`
 * (replacing any earlier one); its first key sits on line 5 of CONFIG_FILE
 * (see parse_pool_group()).
 */
static int create(const char *body)
{
    drop_instance();
    fx.have_group = 1;
    parse_pool_group(&fx.group, "rate_limit", "token_bucket", body);
    struct fc_instance_hooks hooks = {.worker_count = 4, .now_ns = test_clock};
    int rc =
        fc_instance_create(&fx.inst, fx.plugin, &fx.group.conf, CONFIG_FILE, ratelimit_core_keys,
                           NULL, &hooks, "pool web: ratelimit token_bucket");
    fx.have_inst = rc == 0;
    return rc;
}

static void must_create(const char *body)
{
    int rc = create(body);
    if (rc != 0)
        dump_log();
    assert_int_equal(rc, 0);
}

/* One check of key[0 .. len); returns the verdict, and the retry-after of a denial. */
static int check_len(const char *key, size_t len, uint64_t *retry_ms)
{
    struct fc_ratelimit_args args = {.size = sizeof(args), .key = key, .key_len = len};
    uint64_t retry = UINT64_MAX;
    int v = fx.plugin->desc->ratelimit->check(fx.inst.state, &args, &retry);
    assert_true(v == FC_RATELIMIT_ALLOW || v == FC_RATELIMIT_DENY);
    if (v == FC_RATELIMIT_DENY)
        assert_true(retry >= 1 && retry != UINT64_MAX);
    if (retry_ms != NULL)
        *retry_ms = v == FC_RATELIMIT_DENY ? retry : 0;
    return v;
}

static int check(const char *key)
{
    return check_len(key, strlen(key), NULL);
}

/* Retry-after of a check that must be denied. */
static uint64_t denied(const char *key)
{
    uint64_t retry;
    assert_int_equal(check_len(key, strlen(key), &retry), FC_RATELIMIT_DENY);
    return retry;
}

/* Checks key n times; returns how many passed. */
static int allowed_of(const char *key, int n)
{
    int passed = 0;
    for (int i = 0; i < n; i++)
        passed += check(key) == FC_RATELIMIT_ALLOW;
    return passed;
}

/* ---- the descriptor ---------------------------------------------------- */

static void test_descriptor(void **unused)
{
    const struct fc_plugin_descriptor *d = fx.plugin->desc;
    assert_string_equal(d->name, "token_bucket");
    assert_int_equal(d->kind, FC_PLUGIN_RATELIMIT);
    assert_non_null(d->ratelimit);
    assert_null(d->strategy);
    assert_null(d->health);
    assert_non_null(d->ratelimit->destroy);
    /* Nothing per worker: the verdict is always immediate. */
    assert_null(d->ratelimit->worker_start);
    assert_null(d->ratelimit->worker_stop);
}

/* ---- arithmetic -------------------------------------------------------- */

static void test_burst_then_deny(void **unused)
{
    must_create("rate = 1.0; burst = 5;");
    for (int i = 0; i < 5; i++)
        assert_int_equal(check("10.0.0.1"), FC_RATELIMIT_ALLOW);
    /* Five tokens taken at once: the next one is whole in one second. */
    assert_int_equal(denied("10.0.0.1"), 1000);
    /* A denial takes nothing: still one second, and again. */
    assert_int_equal(denied("10.0.0.1"), 1000);
    advance(999 * MS);
    assert_int_equal(denied("10.0.0.1"), 1);
    advance(1 * MS);
    assert_int_equal(check("10.0.0.1"), FC_RATELIMIT_ALLOW);
    assert_int_equal(denied("10.0.0.1"), 1000);
    assert_int_equal(n_log_lines, 0);
}

static void test_retry_after_rounding(void **unused)
{
    /* rate 2 (burst 2 by default): a token every 500 ms. */
    must_create("rate = 2.0;");
    assert_int_equal(allowed_of("a", 2), 2);
    assert_int_equal(denied("a"), 500);
    advance(200 * MS);
    assert_int_equal(denied("a"), 300);
    /* 299.999999 ms left: rounded up, never down to an early retry. */
    advance(200 * MS + 1);
    assert_int_equal(denied("a"), 100);
    advance(100 * MS - 2);
    assert_int_equal(denied("a"), 1); /* 1 ns left is still 1 ms, never 0 */
    advance(1);
    assert_int_equal(check("a"), FC_RATELIMIT_ALLOW);

    /* rate 0.5 (burst 1): a token every 2 s. */
    must_create("rate = 0.5;");
    assert_int_equal(check("a"), FC_RATELIMIT_ALLOW);
    assert_int_equal(denied("a"), 2000);

    /* rate 3 (burst 3): 333.33 ms, rounded up to 334. */
    must_create("rate = 3.0;");
    assert_int_equal(allowed_of("a", 3), 3);
    assert_int_equal(denied("a"), 334);

    /* An integer is a number too. */
    must_create("rate = 4; burst = 1;");
    assert_int_equal(check("a"), FC_RATELIMIT_ALLOW);
    assert_int_equal(denied("a"), 250);
}

static void test_default_burst(void **unused)
{
    /* burst defaults to ceil(rate), at least 1. */
    static const struct {
        const char *body;
        int burst;
    } cases[] = {
        {"rate = 0.01;", 1}, {"rate = 0.5;", 1},   {"rate = 1.0;", 1},
        {"rate = 2.5;", 3},  {"rate = 10.0;", 10}, {"rate = 100;", 100},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        must_create(cases[i].body);
        assert_int_equal(allowed_of("k", cases[i].burst + 50), cases[i].burst);
    }
}

static void test_refill(void **unused)
{
    must_create("rate = 10.0;");
    assert_int_equal(allowed_of("k", 20), 10);
    advance(1 * SEC);
    assert_int_equal(allowed_of("k", 20), 10);
    /* 100 ms is one token. */
    advance(100 * MS);
    assert_int_equal(allowed_of("k", 5), 1);
    /* A bucket never holds more than burst, however long it waits. */
    advance(3600 * SEC);
    assert_int_equal(allowed_of("k", 50), 10);
}

static void test_fractional_rate(void **unused)
{
    /* rate 0.5: one token every 2 s, whatever the checks in between. */
    must_create("rate = 0.5;");
    int passed = 0;
    for (int s = 0; s < 100; s++) {
        passed += check("k") == FC_RATELIMIT_ALLOW;
        advance(1 * SEC);
    }
    assert_int_equal(passed, 50);

    /* rate 0.5, burst 3, hammered every 100 ms for 60 s: 3 + 60 * 0.5 pass. */
    must_create("rate = 0.5; burst = 3;");
    passed = 0;
    for (int t = 0; t <= 600; t++) {
        passed += allowed_of("k", 3);
        advance(100 * MS);
    }
    assert_int_equal(passed, 33);

    /* rate 0.3: a token every 3.333 s; tenths accumulate over 100 s to exactly 30. */
    must_create("rate = 0.3; burst = 1;");
    passed = 0;
    for (int t = 0; t < 1000; t++) {
        passed += check("k") == FC_RATELIMIT_ALLOW;
        advance(100 * MS);
    }
    assert_int_equal(passed, 30);
}

/*
 * Over a long run, hammered at random moments, exactly burst + elapsed * rate
 * requests pass, and a client that waits what Retry-After said always passes.
 */
static void test_long_run_and_retry_is_enough(void **unused)
{
    static const struct {
        const char *body;
        double rate;
        int burst;
    } cases[] = {
        {"rate = 0.3; burst = 2;", 0.3, 2},
        {"rate = 7.0; burst = 4;", 7.0, 4},
        {"rate = 1000.0; burst = 50;", 1000.0, 50},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        must_create(cases[c].body);
        uint64_t start = clock_ns, x = 88172645463325252ull;
        uint64_t span = (uint64_t)(200.0 / cases[c].rate * SEC); /* 200 tokens' worth */
        int passed = 0;
        while (clock_ns - start < span) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            uint64_t retry;
            if (check_len("k", 1, &retry) == FC_RATELIMIT_ALLOW) {
                passed++;
            } else if (x % 4 == 0) {
                advance(retry * MS);
                assert_int_equal(check("k"), FC_RATELIMIT_ALLOW);
                passed++;
            }
            /* A quarter of a token's time on average: the bucket never idles full. */
            advance(x % (uint64_t)(0.5 / cases[c].rate * SEC));
        }
        double expected = cases[c].burst + (double)(clock_ns - start) / SEC * cases[c].rate;
        if (passed > expected + 1 || passed < expected - 2)
            fail_msg("%s: %d passed, expected %.2f", cases[c].body, passed, expected);
    }
}

/* ---- keys -------------------------------------------------------------- */

static void test_separate_keys(void **unused)
{
    must_create("rate = 1.0; burst = 2;");
    assert_int_equal(allowed_of("10.0.0.1", 5), 2);
    assert_int_equal(allowed_of("10.0.0.10", 5), 2);
    assert_int_equal(allowed_of("10.0.0.2", 5), 2);
    assert_int_equal(allowed_of("::1", 5), 2);
    assert_int_equal(allowed_of("", 5), 2);

    /* Only key_len bytes count, and all of them do. */
    assert_int_equal(check_len("abX", 2, NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(check_len("abY", 2, NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(check_len("abZ", 2, NULL), FC_RATELIMIT_DENY);
    assert_int_equal(check_len("abZ", 3, NULL), FC_RATELIMIT_ALLOW);
    char with_nul[] = {'a', '\0', 'b'};
    assert_int_equal(check_len(with_nul, 3, NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(check_len(with_nul, 1, NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(check_len(with_nul, 1, NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(check_len(with_nul, 1, NULL), FC_RATELIMIT_DENY);

    /* A long key (a header value) is a key like any other. */
    char big[8192];
    memset(big, 'x', sizeof(big));
    assert_int_equal(check_len(big, sizeof(big), NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(check_len(big, sizeof(big), NULL), FC_RATELIMIT_ALLOW);
    assert_int_equal(check_len(big, sizeof(big), NULL), FC_RATELIMIT_DENY);
    big[4000] = 'y';
    assert_int_equal(check_len(big, sizeof(big), NULL), FC_RATELIMIT_ALLOW);

    /* The first key's bucket was not touched by the others. */
    advance(1 * SEC);
    assert_int_equal(allowed_of("10.0.0.1", 5), 1);
}

/* ---- memory: forgetting full buckets, max_keys ------------------------- */

/* Resident memory of this process, in bytes. */
static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld %ld", &pages, &resident), 2);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/*
 * A million distinct keys, one per millisecond, each idle after its request:
 * their buckets are full again a second later and forgotten, so memory stays
 * flat although max_keys leaves room for all of them. Then a million keys at
 * one instant against max_keys = 1000: the cap holds memory down, and no new
 * key is ever refused.
 */
static void test_million_keys(void **unused)
{
    char key[32];
    must_create("rate = 1.0; burst = 1; max_keys = 1000000;");
    long before = rss_bytes();
    for (int i = 0; i < 1000000; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        if (check_len(key, (size_t)n, NULL) != FC_RATELIMIT_ALLOW)
            fail_msg("new key %s refused", key);
        advance(1 * MS);
    }
    long grown = rss_bytes() - before;
    print_message("1,000,000 keys over 1,000 s, max_keys 1,000,000: RSS grew %ld KiB\n",
                  grown / 1024);
    /*
     * The hash chains' heads, 8 bytes per max_keys rounded up to a power of
     * two (8 MiB here), are touched at random; remembering every key would
     * add 48 MB of buckets to them.
     */
    assert_true(grown < 16L << 20);
    /* The first keys, long forgotten, behave as new ones. */
    assert_int_equal(allowed_of("k0", 3), 1);
    assert_int_equal(allowed_of("k1", 3), 1);

    must_create("rate = 1.0; burst = 1; max_keys = 1000;");
    before = rss_bytes();
    for (int i = 0; i < 1000000; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        if (check_len(key, (size_t)n, NULL) != FC_RATELIMIT_ALLOW)
            fail_msg("new key %s refused at max_keys", key);
    }
    grown = rss_bytes() - before;
    print_message("1,000,000 keys at once, max_keys 1,000: RSS grew %ld KiB\n", grown / 1024);
    assert_true(grown < 8L << 20);
    /* A fresh key still passes, and the most recent keys are still limited. */
    assert_int_equal(check("fresh"), FC_RATELIMIT_ALLOW);
    assert_int_equal(check("k999999"), FC_RATELIMIT_DENY);
}

/*
 * A new key in a full table takes the room of a bucket that is full again
 * before that of one still in debt, even one used less recently. max_keys
 * under 32 makes one shard, so all keys meet in it.
 */
static void test_full_buckets_go_first(void **unused)
{
    must_create("rate = 1.0; burst = 3; max_keys = 4;");
    assert_int_equal(allowed_of("A", 3), 3); /* A: empty, refills by +3 s */
    assert_int_equal(check("B"), FC_RATELIMIT_ALLOW);
    assert_int_equal(check("C"), FC_RATELIMIT_ALLOW);
    assert_int_equal(check("D"), FC_RATELIMIT_ALLOW);
    /* One second on, B, C and D are full again; A holds one token. */
    advance(1 * SEC);
    assert_int_equal(check("E"), FC_RATELIMIT_ALLOW);
    assert_int_equal(check("F"), FC_RATELIMIT_ALLOW);
    assert_int_equal(check("G"), FC_RATELIMIT_ALLOW);
    /* A was kept: one token, not three. */
    assert_int_equal(allowed_of("A", 3), 1);
    assert_int_equal(logged_containing("max_keys"), 0);
}

/*
 * With more keys in debt than max_keys, a new key takes the room of the least
 * recently used one, which then starts again from a full bucket; the first
 * time, a warning names max_keys.
 */
static void test_max_keys_evicts_least_recent(void **unused)
{
    must_create("rate = 1.0; burst = 2; max_keys = 2;");
    assert_int_equal(allowed_of("A", 3), 2);
    assert_int_equal(allowed_of("B", 3), 2);
    /* Room for two, both in debt: C forgets A, the least recently used. */
    assert_int_equal(allowed_of("C", 3), 2);
    assert_int_equal(logged_containing("max_keys (2) reached"), 1);
    /* B is still limited; A starts over, forgetting C, which B's check left least recent. */
    assert_int_equal(allowed_of("B", 1), 0);
    assert_int_equal(allowed_of("A", 3), 2);
    assert_int_equal(allowed_of("B", 1), 0);
    /* The warning came once only. */
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "x%d", i);
        assert_int_equal(check(key), FC_RATELIMIT_ALLOW);
    }
    assert_int_equal(logged_containing("max_keys"), 1);

    /* max_keys = 1: every new key is still let in. */
    must_create("rate = 1.0; burst = 1; max_keys = 1;");
    assert_int_equal(allowed_of("A", 2), 1);
    assert_int_equal(allowed_of("B", 2), 1);
    assert_int_equal(allowed_of("A", 2), 1);
}

/* ---- configuration ----------------------------------------------------- */

static void test_config_ok(void **unused)
{
    /* `key` is the core's: accepted, and not the plugin's business. */
    must_create("key = \"header:X-Api-Key\"; rate = 0.5; burst = 10; max_keys = 50;");
    assert_int_equal(allowed_of("k", 20), 10);
    assert_int_equal(n_log_lines, 0);
}

static void expect_refused(const char *body, const char *line)
{
    n_log_lines = 0;
    assert_true(create(body) < 0);
    assert_logged(line);
}

static void test_config_errors(void **unused)
{
    expect_refused("burst = 5;",
                   "test.conf:3: pool \"web\": rate_limit.rate: required: tokens per second, a "
                   "number > 0");
    expect_refused("rate = 0.0;", "test.conf:5: pool \"web\": rate_limit.rate: expected tokens "
                                  "per second, > 0 and <= 1000000 (got 0)");
    expect_refused("rate = -1;", "test.conf:5: pool \"web\": rate_limit.rate: expected tokens "
                                 "per second, > 0 and <= 1000000 (got -1)");
    expect_refused("rate = 2e9;", "test.conf:5: pool \"web\": rate_limit.rate: expected tokens "
                                  "per second, > 0 and <= 1000000 (got 2e+09)");
    expect_refused("rate = \"fast\";", "test.conf:5: pool \"web\": rate_limit.rate: expected a "
                                       "number for ratelimit plugin \"token_bucket\"");
    expect_refused("rate = 1.0;\n    burst = 0;",
                   "test.conf:6: pool \"web\": rate_limit.burst: expected an integer >= 1 (got 0)");
    expect_refused("rate = 1.0;\n    burst = -3;", "test.conf:6: pool \"web\": rate_limit.burst: "
                                                   "expected an integer >= 1 (got -3)");
    expect_refused("rate = 1.0;\n    burst = 2.5;", "test.conf:6: pool \"web\": rate_limit.burst: "
                                                    "expected an integer for ratelimit plugin "
                                                    "\"token_bucket\"");
    expect_refused("rate = 1.0;\n    burst = \"5\";", "test.conf:6: pool \"web\": "
                                                      "rate_limit.burst: expected an integer for "
                                                      "ratelimit plugin \"token_bucket\"");
    expect_refused("rate = 0.001;\n    burst = 2000000000000L;",
                   "test.conf:6: pool \"web\": rate_limit.burst: burst / rate, the time to "
                   "refill a bucket, is 2e+15 s; at most 1000000000 s");
    expect_refused("rate = 1e-10;",
                   "test.conf:5: pool \"web\": rate_limit.rate: burst / rate, "
                   "the time to refill a bucket, is 1e+10 s; at most 1000000000 s");
    expect_refused("rate = 1.0;\n    max_keys = 0;",
                   "test.conf:6: pool \"web\": rate_limit.max_keys: expected an integer from 1 "
                   "to 100000000 (got 0)");
    expect_refused("rate = 1.0;\n    max_keys = 1000000000;",
                   "test.conf:6: pool \"web\": rate_limit.max_keys: expected an integer from 1 "
                   "to 100000000 (got 1000000000)");
    expect_refused("rate = 1.0;\n    max_keys = true;",
                   "test.conf:6: pool \"web\": rate_limit.max_keys: expected an integer for "
                   "ratelimit plugin \"token_bucket\"");
    /* A typo is caught; so is idle_ms, which this plugin has no use for. */
    expect_refused("rate = 1.0;\n    brust = 5;", "test.conf:6: pool \"web\": rate_limit.brust: "
                                                  "unknown key for ratelimit plugin "
                                                  "\"token_bucket\"");
    expect_refused("rate = 1.0;\n    idle_ms = 5000;",
                   "test.conf:6: pool \"web\": rate_limit.idle_ms: unknown key for ratelimit "
                   "plugin \"token_bucket\"");

    /* Several mistakes at once are all reported. */
    n_log_lines = 0;
    assert_true(create("rate = 0.0;\n    burst = 0;\n    max_keys = -1;") < 0);
    assert_int_equal(logged_containing("rate_limit.rate:"), 1);
    assert_int_equal(logged_containing("rate_limit.burst:"), 1);
    assert_int_equal(logged_containing("rate_limit.max_keys:"), 1);
}

/* ---- threads ----------------------------------------------------------- */

#define THREADS 4

struct hammer {
    pthread_t thread;
    int keys;       /* hammers keys k0 .. k<keys-1> in turn */
    int iterations; /* checks in all */
    int allowed;
    int bad; /* verdicts that were neither ALLOW nor DENY with a retry */
};

static pthread_barrier_t start_line;

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    char key[16];
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < h->iterations; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i % h->keys);
        struct fc_ratelimit_args args = {.size = sizeof(args), .key = key, .key_len = (size_t)n};
        uint64_t retry = 0;
        int v = fx.plugin->desc->ratelimit->check(fx.inst.state, &args, &retry);
        if (v == FC_RATELIMIT_ALLOW)
            h->allowed++;
        else if (v != FC_RATELIMIT_DENY || retry < 1)
            h->bad++;
    }
    return NULL;
}

/* Runs THREADS threads at once over `keys` shared keys; returns the total allowed. */
static int hammer_all(int keys, int iterations)
{
    struct hammer h[THREADS];
    pthread_barrier_init(&start_line, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        h[t] = (struct hammer){.keys = keys, .iterations = iterations};
        assert_int_equal(pthread_create(&h[t].thread, NULL, hammer_run, &h[t]), 0);
    }
    int allowed = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(h[t].thread, NULL);
        allowed += h[t].allowed;
        assert_int_equal(h[t].bad, 0);
    }
    pthread_barrier_destroy(&start_line);
    return allowed;
}

/*
 * One limit for the whole process: four threads hammering one key with the
 * clock frozen get exactly burst between them, not four times burst, and not
 * one more or less for a lost update.
 */
static void test_threads_share_one_limit(void **unused)
{
    must_create("rate = 1.0; burst = 1000;");
    assert_int_equal(hammer_all(1, 100000), 1000);
    /* 256 keys spread over every shard: 256 * burst in all. */
    must_create("rate = 1.0; burst = 10;");
    assert_int_equal(hammer_all(256, 20000), 2560);
    /* Then the clock moves five seconds: 5 more per key. */
    advance(5 * SEC);
    assert_int_equal(hammer_all(256, 20000), 256 * 5);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_burst_then_deny),
        T(test_retry_after_rounding),
        T(test_default_burst),
        T(test_refill),
        T(test_fractional_rate),
        T(test_long_run_and_retry_is_enough),
        T(test_separate_keys),
        T(test_million_keys),
        T(test_full_buckets_go_first),
        T(test_max_keys_evicts_least_recent),
        T(test_config_ok),
        T(test_config_errors),
        T(test_threads_share_one_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
