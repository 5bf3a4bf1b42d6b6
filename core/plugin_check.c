/*
 * `fulcrum plugin-check`; see plugin_check.h. Top to bottom: the report's
 * lines and the failure, the keys given as a configuration group, the
 * descriptor's report, leak accounting, then fc_plugin_check_main().
 *
 * Leak accounting: the kind's exercise runs RUNS times over the same
 * loaded plugin, creating and destroying its instances each time. The
 * first run is the one reported; the later ones are the same work, smaller
 * and quiet, so that the memory in use and the descriptors open after each
 * of them must be the same: a plugin that leaks shows as growth from each
 * quiet run to the next. The first run is left out of the comparison: what
 * a library sets up once (OpenSSL's tables, say) is not a leak. Memory in
 * use is glibc's count (mallinfo2()) or, in a sanitizer build, the
 * sanitizer's; the exercise allocates what it needs up front, so that the
 * same work leaves the same count. glibc's per-thread cache (tcache) keeps
 * up to 7 freed chunks of each size, which mallinfo2() counts as in use,
 * and threads that come and go leave chunks in it: plugin-check runs with
 * that cache off, executing itself once more with
 * GLIBC_TUNABLES=glibc.malloc.tcache_count=0 (see without_tcache()).
 */
#define _GNU_SOURCE
#include "plugin_check.h"

#include "log.h"
#include "plugin_check_run.h"
#include "plugin_loader.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <getopt.h>
#include <libconfig.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define FC_CHECK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FC_CHECK_ASAN 1
#endif
#endif
#ifdef FC_CHECK_ASAN
/* The sanitizer runtime's count (sanitizer/allocator_interface.h, which gcc does not ship). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#ifndef FC_PLUGIN_INSTALL_DIR
#define FC_PLUGIN_INSTALL_DIR "/usr/lib/fulcrum/plugins"
#endif

/* One reported run and three quiet ones, each a tenth of the work. */
#define RUNS 4
#define QUIET_SCALE 10

/* What messages about the keys name as their file: "key=value:2:" is the second pair. */
#define CONF_FILE "key=value"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fulcrum plugin-check [--kind KIND] FILE.so [KEY=VALUE ...]\n"
            "\n"
            "Loads a plugin as fulcrum does, reports its descriptor and ABI, creates it\n"
            "with the keys given over a simulated pool of %d backends, and exercises it:\n"
            "  strategy   100,000 picks a phase: all backends up, one down, one drained,\n"
            "             all down; synthetic latencies reach outcome()\n"
            "  ratelimit  checks from 4 threads at once; verdicts and Retry-After\n"
            "  health     probes of local listeners: one that passes, one answering 503,\n"
            "             one refusing connections, one that never answers\n"
            "  cache      each op against the ABI, then stores, hits and removes from 4\n"
            "             threads at once, every body read back checked\n"
            "It fails on what the plugin ABI forbids and on leaked memory or descriptors.\n"
            "\n"
            "  FILE.so      the plugin; a bare NAME is " FC_PLUGIN_INSTALL_DIR "/NAME.so\n"
            "  KEY=VALUE    a key of the plugin's group, VALUE as in fulcrum.conf (42, 1.5,\n"
            "               true, \"text\", (\"a\", \"b\")); anything else is a string\n"
            "  --kind KIND  fail unless it is a KIND plugin: strategy, health, ratelimit, cache\n"
            "  -h, --help   print this help\n"
            "\n"
            "Exit status: 0 passed, 1 failed (the last line says why), 2 a wrong command line.\n",
            FC_CHECK_BACKENDS);
}

/* ------------------------------------------------------------------------ */
/* The report and the failure                                                */
/* ------------------------------------------------------------------------ */

void fc_check_say(struct fc_check *c, const char *fmt, ...)
{
    if (!c->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

void fc_check_warn(struct fc_check *c, const char *fmt, ...)
{
    if (!c->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("  warning: ", stdout);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

int fc_check_fail(struct fc_check *c, const char *fmt, ...)
{
    uv_mutex_lock(&c->lock);
    if (!c->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->failure, sizeof(c->failure), fmt, ap);
        va_end(ap);
        c->failed = 1;
    }
    uv_mutex_unlock(&c->lock);
    return FC_ERROR;
}

int fc_check_failed(struct fc_check *c)
{
    uv_mutex_lock(&c->lock);
    int failed = c->failed;
    uv_mutex_unlock(&c->lock);
    return failed;
}

/*
 * The log: the plugin's lines and the host's go to stderr, on the reported
 * run only, and the first error line is kept for the failure of a create().
 */
static struct {
    uv_mutex_t lock;
    int quiet;
    int keep_error;
    char first_error[512];
} log_state;

static void log_sink(void *arg, enum fc_log_level level, const char *line)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    uv_mutex_lock(&log_state.lock);
    if (!log_state.quiet)
        fprintf(stderr, "  %s: %s\n", names[level], line);
    if (level == FC_LOG_ERROR && log_state.keep_error && log_state.first_error[0] == '\0')
        snprintf(log_state.first_error, sizeof(log_state.first_error), "%s", line);
    uv_mutex_unlock(&log_state.lock);
}

int fc_check_create(struct fc_check *c, struct fc_instance *inst, const struct fc_pool_view *pool,
                    const struct fc_instance_hooks *hooks, const char *label)
{
    uv_mutex_lock(&log_state.lock);
    log_state.keep_error = 1;
    log_state.first_error[0] = '\0';
    uv_mutex_unlock(&log_state.lock);

    int rc = fc_instance_create(inst, c->plugin, c->conf, c->conf_file, c->core_keys, pool, hooks,
                                label);

    uv_mutex_lock(&log_state.lock);
    log_state.keep_error = 0;
    uv_mutex_unlock(&log_state.lock);
    if (rc == 0)
        return 0;
    if (log_state.first_error[0] != '\0')
        return fc_check_fail(c, "create() failed: %s", log_state.first_error);
    return fc_check_fail(c, "create() failed (returned %d) without logging why", rc);
}

const char *fc_check_address(uint32_t i)
{
    static const char *const addresses[FC_CHECK_BACKENDS] = {"192.0.2.1:8080", "192.0.2.2:8080",
                                                             "192.0.2.3:8080", "192.0.2.4:8080"};
    return addresses[i];
}

void fc_check_sockaddr(uint32_t i, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(8080);
    sin->sin_addr.s_addr = htonl(0xc0000201u + i); /* 192.0.2.1 + i */
    *len = sizeof(*sin);
}

/* ------------------------------------------------------------------------ */
/* The keys given, as a configuration group                                  */
/* ------------------------------------------------------------------------ */

/* The group a plugin of `kind` is configured in, and the keys the core reads from it. */
static const char *group_name(uint32_t kind)
{
    switch (kind) {
    case FC_PLUGIN_HEALTH:
        return "health";
    case FC_PLUGIN_RATELIMIT:
        return "rate_limit";
    case FC_PLUGIN_CACHE:
        return "cache";
    default:
        return "strategy";
    }
}

static const char *const *core_keys(uint32_t kind)
{
    static const char *const health[] = {"interval_ms", "timeout_ms", "rise",
                                         "fall",        "initial",    NULL};
    static const char *const ratelimit[] = {"key", NULL};
    switch (kind) {
    case FC_PLUGIN_HEALTH:
        return health;
    case FC_PLUGIN_RATELIMIT:
        return ratelimit;
    default:
        return NULL;
    }
}

/* A libconfig setting name: a letter or '*', then letters, digits, '_', '-' and '*'. */
static int valid_key(const char *k, size_t n)
{
    if (n == 0 || !((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '*'))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char ch = k[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '*'))
            return 0;
    }
    return 1;
}

/* Whether `value` reads as one libconfig value: a number, a boolean, a string, a list... */
static int is_config_value(const char *value)
{
    size_t n = strlen(value) + sizeof("v = ;");
    char *text = malloc(n);
    if (text == NULL)
        return 0;
    snprintf(text, n, "v = %s;", value);
    config_t lc;
    config_init(&lc);
    /* Exactly one setting: "1; other = 2" must not smuggle in a second key. */
    int ok = config_read_string(&lc, text) == CONFIG_TRUE &&
             config_setting_length(config_root_setting(&lc)) == 1;
    config_destroy(&lc);
    free(text);
    return ok;
}

/* Appends `s` to the growing text *buf (of *len bytes used, *cap allocated). -1 out of memory. */
static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t want = (*len + n + 1) * 2;
        char *p = realloc(*buf, want);
        if (p == NULL)
            return -1;
        *buf = p;
        *cap = want;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* Appends `value` as a quoted libconfig string. */
static int append_quoted(char **buf, size_t *len, size_t *cap, const char *value)
{
    int rc = append(buf, len, cap, "\"", 1);
    for (const char *p = value; rc == 0 && *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        char esc[8];
        if (ch == '"' || ch == '\\')
            snprintf(esc, sizeof(esc), "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            snprintf(esc, sizeof(esc), "\\x%02x", ch);
        else
            snprintf(esc, sizeof(esc), "%c", ch);
        rc = append(buf, len, cap, esc, strlen(esc));
    }
    return rc == 0 ? append(buf, len, cap, "\"", 1) : rc;
}

/*
 * The text of a pool "check" whose group for the plugin holds the pairs,
 * pair i (from 1) on line i, so that the host's "key=value:LINE:" names it.
 * Returns it (malloc'd), or NULL after printing why to stderr.
 */
static char *group_text(uint32_t kind, const char *name, char **pairs, int n_pairs)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char head[256];
    snprintf(head, sizeof(head), "pools = ( { name = \"check\"; %s = { plugin = \"%s\"; ",
             group_name(kind), name);
    int rc = append(&buf, &len, &cap, head, strlen(head));
    for (int i = 0; rc == 0 && i < n_pairs; i++) {
        const char *eq = strchr(pairs[i], '=');
        size_t klen = eq != NULL ? (size_t)(eq - pairs[i]) : 0;
        if (eq == NULL || !valid_key(pairs[i], klen)) {
            fprintf(stderr,
                    "fulcrum plugin-check: \"%s\": expected KEY=VALUE, KEY a setting name\n",
                    pairs[i]);
            free(buf);
            return NULL;
        }
        if (klen == strlen("plugin") && strncmp(pairs[i], "plugin", klen) == 0) {
            fprintf(stderr, "fulcrum plugin-check: \"%s\": the plugin is the file given\n",
                    pairs[i]);
            free(buf);
            return NULL;
        }
        const char *value = eq + 1;
        rc = append(&buf, &len, &cap, pairs[i], klen);
        rc = rc == 0 ? append(&buf, &len, &cap, " = ", 3) : rc;
        if (rc == 0)
            rc = is_config_value(value) ? append(&buf, &len, &cap, value, strlen(value))
                                        : append_quoted(&buf, &len, &cap, value);
        rc = rc == 0 ? append(&buf, &len, &cap, ";\n", 2) : rc;
    }
    rc = rc == 0 ? append(&buf, &len, &cap, "}; } );\n", 8) : rc;
    if (rc != 0) {
        fprintf(stderr, "fulcrum plugin-check: out of memory\n");
        free(buf);
        return NULL;
    }
    return buf;
}

/* ------------------------------------------------------------------------ */
/* The descriptor                                                            */
/* ------------------------------------------------------------------------ */

/* The optional ops the plugin has, for the report: "destroy outcome". */
static void optional_ops(const struct fc_plugin_descriptor *d, char *buf, size_t len)
{
    struct {
        const char *name;
        int present;
    } ops[4] = {{NULL, 0}};
    switch (d->kind) {
    case FC_PLUGIN_STRATEGY:
        ops[0].name = "destroy", ops[0].present = d->strategy->destroy != NULL;
        ops[1].name = "outcome", ops[1].present = d->strategy->outcome != NULL;
        break;
    case FC_PLUGIN_HEALTH:
        ops[0].name = "destroy", ops[0].present = d->health->destroy != NULL;
        break;
    case FC_PLUGIN_RATELIMIT:
        ops[0].name = "destroy", ops[0].present = d->ratelimit->destroy != NULL;
        ops[1].name = "worker_start", ops[1].present = d->ratelimit->worker_start != NULL;
        ops[2].name = "worker_stop", ops[2].present = d->ratelimit->worker_stop != NULL;
        break;
    case FC_PLUGIN_CACHE:
        ops[0].name = "destroy", ops[0].present = d->cache->destroy != NULL;
        break;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < 4 && ops[i].name != NULL; i++)
        if (ops[i].present && used < len)
            used += (size_t)snprintf(buf + used, len - used, "%s%s()", used > 0 ? ", " : "",
                                     ops[i].name);
    if (used == 0)
        snprintf(buf, len, "none");
}

static void report_descriptor(const struct fc_plugin *p, const char *path)
{
    const struct fc_plugin_descriptor *d = p->desc;
    char ops[128];
    optional_ops(d, ops, sizeof(ops));
    printf("plugin      %s\n", path);
    printf("name        %s %s\n", d->name, d->version != NULL ? d->version : "(no version)");
    printf("description %s\n", d->description != NULL ? d->description : "(none)");
    printf("kind        %s\n", fc_plugin_kind_name((int)d->kind));
    printf("ABI         built against %u.%u; this fulcrum provides %d.%d%s\n", d->abi_major,
           d->abi_minor, FC_ABI_MAJOR, FC_ABI_MINOR,
           d->abi_minor < FC_ABI_MINOR ? " (it sees only what its minor has)" : "");
    printf("optional    %s\n", ops);
}

/* ------------------------------------------------------------------------ */
/* Leak accounting                                                           */
/* ------------------------------------------------------------------------ */

static size_t bytes_in_use(void)
{
#ifdef FC_CHECK_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

static int open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    int n = 0;
    while (readdir(dir) != NULL)
        n++;
    closedir(dir);
    return n - 3; /* ".", ".." and the directory's own */
}

/*
 * Executes the command again with glibc's tcache off, once (the marker in
 * the environment says it was done). Returns only when it cannot, or in the
 * sanitizer build, whose count has no such cache; the check then goes on.
 */
static void without_tcache(int argc, char **argv)
{
#ifndef FC_CHECK_ASAN
    static const char marker[] = "FC_PLUGIN_CHECK_NO_TCACHE";
    static const char tunable[] = "glibc.malloc.tcache_count=0";
    if (getenv(marker) != NULL)
        return;
    const char *old = getenv("GLIBC_TUNABLES");
    size_t n = (old != NULL ? strlen(old) + 1 : 0) + sizeof(tunable);
    char *value = malloc(n);
    char **args = calloc((size_t)argc + 2, sizeof(*args));
    if (value != NULL && args != NULL) {
        snprintf(value, n, "%s%s%s", old != NULL ? old : "", old != NULL ? ":" : "", tunable);
        args[0] = "fulcrum";
        for (int i = 0; i < argc; i++)
            args[i + 1] = argv[i];
        if (setenv("GLIBC_TUNABLES", value, 1) == 0 && setenv(marker, "1", 1) == 0)
            execv("/proc/self/exe", args);
    }
    free(value);
    free(args);
#endif
}

static int run_exercise(struct fc_check *c)
{
    switch (c->plugin->desc->kind) {
    case FC_PLUGIN_STRATEGY:
        return fc_check_strategy(c);
    case FC_PLUGIN_HEALTH:
        return fc_check_health(c);
    case FC_PLUGIN_CACHE:
        return fc_check_cache(c);
    default:
        return fc_check_ratelimit(c);
    }
}

/* Runs the exercise RUNS times and compares what each quiet run left. 0 or FC_ERROR. */
static int run_all(struct fc_check *c)
{
    size_t bytes[RUNS];
    int fds[RUNS];
    for (int run = 0; run < RUNS; run++) {
        c->verbose = run == 0;
        c->scale = run == 0 ? 100 : QUIET_SCALE;
        log_state.quiet = run > 0;
        if (run == 1)
            fc_check_say(c, "%s", "");
        int rc = run_exercise(c);
        log_state.quiet = 0;
        if (rc != 0 || fc_check_failed(c))
            return FC_ERROR;
        bytes[run] = bytes_in_use();
        fds[run] = open_fds();
    }
    c->verbose = 1;
    fc_check_say(c,
                 "leaks: %d more runs of the same exercise, a tenth as long each, then "
                 "compared:",
                 RUNS - 1);
    fc_check_say(c, "  memory in use after each: %zu, %zu, %zu bytes (%s)", bytes[1], bytes[2],
                 bytes[3],
#ifdef FC_CHECK_ASAN
                 "the sanitizer's count"
#else
                 "glibc's mallinfo2()"
#endif
    );
    fc_check_say(c, "  descriptors open after each: %d, %d, %d", fds[1], fds[2], fds[3]);
    if (bytes[2] > bytes[1] && bytes[3] > bytes[2])
        return fc_check_fail(c,
                             "leaks memory: %zu more bytes in use after each run of the exercise "
                             "(%zu after the first quiet run, %zu after the third)",
                             (bytes[3] - bytes[1]) / 2, bytes[1], bytes[3]);
    if (fds[3] > fds[1])
        return fc_check_fail(c,
                             "leaks file descriptors: %d open after the first quiet run, %d "
                             "after the third",
                             fds[1], fds[3]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The command                                                               */
/* ------------------------------------------------------------------------ */

static int parse_kind(const char *name)
{
    if (strcmp(name, "strategy") == 0)
        return FC_PLUGIN_STRATEGY;
    if (strcmp(name, "health") == 0)
        return FC_PLUGIN_HEALTH;
    if (strcmp(name, "ratelimit") == 0 || strcmp(name, "rate_limit") == 0)
        return FC_PLUGIN_RATELIMIT;
    if (strcmp(name, "cache") == 0)
        return FC_PLUGIN_CACHE;
    return -1;
}

/* The file to load: as given, or for a bare NAME that is no file here, the installed NAME.so. */
static char *plugin_path(const char *arg)
{
    struct stat st;
    if (strchr(arg, '/') != NULL || stat(arg, &st) == 0)
        return strdup(arg);
    size_t n = strlen(FC_PLUGIN_INSTALL_DIR) + strlen(arg) + sizeof("/.so");
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s.so", FC_PLUGIN_INSTALL_DIR, arg);
    return p;
}

/*
 * The group's `timeout_ms` for a health checker's probes, else the core's
 * default, 1000. 0, or -1 after printing why the value is wrong.
 */
static int read_timeout(const config_setting_t *group, uint32_t *out)
{
    *out = 1000;
    const config_setting_t *s = config_setting_get_member(group, "timeout_ms");
    if (s == NULL)
        return 0;
    if (config_setting_type(s) != CONFIG_TYPE_INT || config_setting_get_int(s) < 1 ||
        config_setting_get_int(s) > 60000) {
        fprintf(stderr,
                "fulcrum plugin-check: %s:%d: timeout_ms: expected milliseconds from 1 to "
                "60000\n",
                CONF_FILE, config_setting_source_line(s));
        return -1;
    }
    *out = (uint32_t)config_setting_get_int(s);
    return 0;
}

static int finish(struct fc_check *c, int rc)
{
    fflush(stdout);
    if (rc == FC_PLUGIN_CHECK_FAILED)
        fprintf(stderr, "fulcrum plugin-check: %s: %s\n", c->file, c->failure);
    else if (rc == FC_PLUGIN_CHECK_PASSED)
        printf("\n%s: passed\n", c->file);
    return rc;
}

int fc_plugin_check_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    without_tcache(argc, argv);
    int kind = FC_PLUGIN_ANY_KIND;
    int opt;
    optind = 1;
    /* '+': KEY=VALUE pairs after the file are never taken for options. */
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            kind = parse_kind(optarg);
            if (kind < 0) {
                fprintf(stderr,
                        "fulcrum plugin-check: --kind: expected strategy, health, ratelimit "
                        "or cache, not \"%s\"\n",
                        optarg);
                return FC_PLUGIN_CHECK_USAGE;
            }
            break;
        case 'h':
            usage(stdout);
            return FC_PLUGIN_CHECK_PASSED;
        default:
            usage(stderr);
            return FC_PLUGIN_CHECK_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return FC_PLUGIN_CHECK_USAGE;
    }

    struct fc_check c = {.file = argv[optind], .conf_file = CONF_FILE};
    uv_mutex_init(&c.lock);
    uv_mutex_init(&log_state.lock);
    fc_log_set_sink(log_sink, NULL);
    fc_log_set_level(FC_LOG_INFO);

    int rc = FC_PLUGIN_CHECK_FAILED;
    char *path = plugin_path(argv[optind]);
    char *text = NULL;
    struct fc_plugin *plugin = NULL;
    config_t lc;
    config_init(&lc);
    char err[512];
    if (path == NULL) {
        fc_check_fail(&c, "out of memory");
        goto out;
    }
    if (fc_plugin_load(path, (enum fc_plugin_kind)kind, &plugin, err, sizeof(err)) != 0) {
        /* The loader's reason names the file itself. */
        const char *reason = strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':'
                                 ? err + strlen(path) + 2
                                 : err;
        fc_check_fail(&c, "%s", reason);
        goto out;
    }
    c.plugin = plugin;
    report_descriptor(plugin, path);

    uint32_t k = plugin->desc->kind;
    text = group_text(k, plugin->desc->name, argv + optind + 1, argc - optind - 1);
    if (text == NULL) {
        rc = FC_PLUGIN_CHECK_USAGE;
        goto out;
    }
    if (config_read_string(&lc, text) != CONFIG_TRUE) {
        fprintf(stderr, "fulcrum plugin-check: %s:%d: %s\n", CONF_FILE, config_error_line(&lc),
                config_error_text(&lc));
        rc = FC_PLUGIN_CHECK_USAGE;
        goto out;
    }
    char setting[64];
    snprintf(setting, sizeof(setting), "pools.[0].%s", group_name(k));
    const config_setting_t *group = config_lookup(&lc, setting);
    struct fc_conf_plugin conf = {
        .name = (char *)plugin->desc->name, .path = path, .group = group, .line = 1};
    if (group == NULL || (k == FC_PLUGIN_HEALTH && read_timeout(group, &c.timeout_ms) != 0)) {
        rc = FC_PLUGIN_CHECK_USAGE;
        goto out;
    }
    c.conf = &conf;
    c.core_keys = core_keys(k);
    fputs("keys       ", stdout);
    for (int i = optind + 1; i < argc; i++)
        printf(" %s", argv[i]);
    puts(optind + 1 < argc ? "\n" : " none: the plugin's defaults\n");

    rc = run_all(&c) == 0 ? FC_PLUGIN_CHECK_PASSED : FC_PLUGIN_CHECK_FAILED;

out:
    config_destroy(&lc);
    free(text);
    fc_plugin_unload(plugin);
    rc = finish(&c, rc);
    free(path);
    fc_log_set_sink(NULL, NULL);
    uv_mutex_destroy(&c.lock);
    uv_mutex_destroy(&log_state.lock);
    return rc;
}
