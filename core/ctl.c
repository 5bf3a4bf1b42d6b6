/*
 * `fulcrum ctl`; see ctl.h. Top to bottom: messages and usage, where the
 * admin listener is and which token it wants (the command line, else the
 * configuration file), one request and its errors, the tables people read,
 * then the commands and fc_ctl_main().
 *
 * Every answer is a JSON document, read with jansson. A field that the
 * server leaves out (an older daemon, say) shows as unknown rather than
 * failing the command: `source` is "config" when absent, as it was before
 * runtime changes existed.
 */
#include "ctl.h"

#include "config.h"
#include "ctl_http.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/fulcrum/fulcrum.conf"

/* One request's deadline, connect to last byte; a reload loads plugins and may resolve names. */
#define TIMEOUT_MS 10000
#define RELOAD_TIMEOUT_MS 60000

/* `backends` computes requests/s from two status documents this far apart. */
#define SAMPLE_INTERVAL_MS 1000

/* The largest token file, as the daemon reads it (config.c). */
#define MAX_TOKEN_BYTES 4096

/* How reals are printed: enough digits for every value, without 0.41999999999999998. */
#define JSON_OUT_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* What every command works with. */
struct ctl {
    struct fc_ctl_endpoint ep;
    char *token;       /* NULL: none known, no Authorization header */
    int json;          /* --json: documents for scripts instead of text */
    json_int_t weight; /* of add and weight: checked with the command line, -1 unless given */
};

/* ---- messages ----------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr in the form every error of the command takes. */
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fulcrum ctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The configuration loader's errors, which name the file and the line, said the same way. */
static void log_sink(void *arg, enum fc_log_level level, const char *line)
{
    say("%s", line);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fulcrum ctl [-c FILE | -a ADDRESS] [--token-file FILE] [--json] COMMAND\n"
            "\n"
            "Commands:\n"
            "  status                     version, generation, reloads, listeners and pools\n"
            "  backends [POOL]            each backend of each pool (or of POOL) with its state\n"
            "                             and requests/s, measured over one second\n"
            "  add POOL ADDRESS [WEIGHT]  add a backend (weight 1, or the file's, unless given)\n"
            "  drain POOL ADDRESS         no new requests; those in flight finish\n"
            "  maint POOL ADDRESS         as drain, and health checks stop\n"
            "  ready POOL ADDRESS         back in rotation (if healthy)\n"
            "  weight POOL ADDRESS N      set a backend's weight\n"
            "  remove POOL ADDRESS        remove a backend; requests in flight finish first\n"
            "  purge POOL PATH            drop PATH from the pool's response cache (every\n"
            "                             host and variant); /prefix* every path under it,\n"
            "                             * everything\n"
            "  reload                     reload the configuration file, as SIGHUP does\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE      read admin.address and the token from FILE\n"
            "                         (default " DEFAULT_CONFIG ")\n"
            "  -a, --address ADDRESS  the admin listener: 127.0.0.1:9901, [::1]:9901 or\n"
            "                         unix:PATH; no file is read\n"
            "      --token-file FILE  the bearer token, read from FILE (instead of the\n"
            "                         configuration's admin.token_file)\n"
            "      --json             print the server's JSON documents instead of text\n"
            "  -h, --help             print this help\n"
            "\n"
            "Exit status: 0 done, 1 the server refused or failed, 2 bad usage or\n"
            "configuration, 3 the admin listener cannot be reached.\n");
}

/* A usage error: what is wrong, then the usage, on stderr. */
static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fulcrum ctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    usage(stderr);
    return FC_CTL_EXIT_USAGE;
}

/* ---- where the admin listener is, and its token ------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/*
 * --token-file: read as the daemon reads admin.token_file (a regular file,
 * surrounding whitespace trimmed, one word of visible ASCII), so that a file
 * the daemon takes works here too. Returns 0 with a malloc'd token, or an
 * exit status after saying why.
 */
static int read_token_file(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        say("cannot read the token file %s: %s", path, strerror(errno));
        return FC_CTL_EXIT_USAGE;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        say("the token file %s is not a regular file", path);
        return FC_CTL_EXIT_USAGE;
    }
    char buf[MAX_TOKEN_BYTES + 1];
    size_t n = 0;
    ssize_t got = 0;
    while (n < sizeof(buf) && (got = read(fd, buf + n, sizeof(buf) - n)) != 0) {
        if (got < 0 && errno != EINTR)
            break;
        if (got > 0)
            n += (size_t)got;
    }
    int err = got < 0 ? errno : 0;
    close(fd);
    int rc = FC_CTL_EXIT_USAGE;
    size_t start = 0, end = n;
    while (start < end && is_space(buf[start]))
        start++;
    while (end > start && is_space(buf[end - 1]))
        end--;
    size_t bad = start;
    while (bad < end && buf[bad] >= 0x21 && buf[bad] <= 0x7e)
        bad++;
    if (err != 0)
        say("cannot read the token file %s: %s", path, strerror(err));
    else if (n > MAX_TOKEN_BYTES)
        say("the token file %s is longer than %d bytes", path, MAX_TOKEN_BYTES);
    else if (start == end)
        say("the token file %s is empty", path);
    else if (bad < end)
        say("the token file %s: the token must be one word of visible ASCII characters", path);
    else if ((*out = strndup(buf + start, end - start)) == NULL)
        say("out of memory");
    else
        rc = 0;
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

static int parse_endpoint(struct ctl *c, const char *text)
{
    const char *why = NULL;
    int rc = fc_ctl_endpoint_parse(text, &c->ep, &why);
    if (rc == FC_ENOMEM) {
        say("out of memory");
        return FC_CTL_EXIT_SERVER;
    }
    if (rc != 0) {
        say("invalid admin address \"%s\": %s", text, why);
        return FC_CTL_EXIT_USAGE;
    }
    return 0;
}

/*
 * The admin address and token of a configuration file, loaded and checked
 * as the daemon loads it (plugins aside). Its errors are said as they are
 * found: a file the daemon would refuse cannot be trusted to name its admin
 * listener either, and -a reaches the daemon all the same.
 */
static int load_config(struct ctl *c, const char *path)
{
    fc_log_set_sink(log_sink, NULL);
    fc_log_set_level(FC_LOG_ERROR);
    struct fc_config *cfg;
    if (fc_config_load(path, &cfg) != 0) {
        say("%s does not load (errors above): fix it, or give the admin listener with -a", path);
        return FC_CTL_EXIT_USAGE;
    }
    int rc = 0;
    if (!cfg->has_admin) {
        say("%s has no admin group: add admin = { address = ...; } or use -a", path);
        rc = FC_CTL_EXIT_USAGE;
    } else if (cfg->admin.unix_path != NULL) {
        /* The path resolved against the file's folder, not the one written. */
        size_t len = strlen(cfg->admin.unix_path) + 6;
        char *text = malloc(len);
        if (text == NULL) {
            say("out of memory");
            rc = FC_CTL_EXIT_SERVER;
        } else {
            snprintf(text, len, "unix:%s", cfg->admin.unix_path);
            rc = parse_endpoint(c, text);
            free(text);
        }
    } else {
        rc = parse_endpoint(c, cfg->admin.address);
    }
    if (rc == 0 && cfg->admin.token != NULL && (c->token = strdup(cfg->admin.token)) == NULL) {
        say("out of memory");
        rc = FC_CTL_EXIT_SERVER;
    }
    fc_config_free(cfg);
    return rc;
}

/* ---- one request -------------------------------------------------------- */

/* A string member, or `absent`. */
static const char *str_of(const json_t *o, const char *key, const char *absent)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : absent;
}

/* A number member (integer or real), or `absent`. */
static double num_of(const json_t *o, const char *key, double absent)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : absent;
}

/*
 * What a refusal says: each of "errors" (a failed reload, every line of it),
 * else "error", else the status and the start of the body. A 401 also says
 * where the token comes from.
 */
static void say_refusal(int status, const json_t *doc, const char *body)
{
    const json_t *errors = json_object_get(doc, "errors");
    const char *error = str_of(doc, "error", NULL);
    size_t said = 0;
    for (size_t i = 0; i < json_array_size(errors); i++) {
        const char *line = json_string_value(json_array_get(errors, i));
        if (line != NULL) {
            say("%s", line);
            said++;
        }
    }
    if (said == 0 && error != NULL) {
        say("%s", error);
    } else if (said == 0) {
        size_t n = strcspn(body, "\r\n");
        say("the admin listener answered %d%s%.*s", status, n > 0 ? ": " : "",
            (int)(n < 200 ? n : 200), body);
    }
    if (status == 401)
        say("give the token with --token-file FILE, or -c the daemon's file (admin.token_file)");
}

/*
 * Sends one request (body: a JSON document, or NULL) and reads the answer.
 * A 2xx with a JSON document returns 0 and the document in *doc, the
 * caller's; anything else is said and returns the exit status.
 */
static int call(struct ctl *c, const char *method, const char *path, const json_t *body,
                int timeout_ms, json_t **doc)
{
    *doc = NULL;
    char *text = NULL;
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
        say("out of memory");
        return FC_CTL_EXIT_SERVER;
    }
    struct fc_ctl_request req = {
        .method = method, .path = path, .token = c->token, .body = text, .timeout_ms = timeout_ms};
    struct fc_ctl_response resp;
    char err[512];
    int rc = fc_ctl_http_request(&c->ep, &req, &resp, err, sizeof(err));
    free(text);
    if (rc != 0) {
        say("%s", err);
        return rc == FC_CTL_HTTP_UNREACHABLE ? FC_CTL_EXIT_UNREACHABLE : FC_CTL_EXIT_SERVER;
    }
    json_error_t jerr;
    json_t *j = json_loadb(resp.body, resp.body_len, 0, &jerr);
    rc = 0;
    if (resp.status < 200 || resp.status > 299) {
        say_refusal(resp.status, j, resp.body);
        rc = FC_CTL_EXIT_SERVER;
    } else if (j == NULL) {
        say("the admin listener answered %s %s with %d but no JSON document: %s", method, path,
            resp.status, jerr.text);
        rc = FC_CTL_EXIT_SERVER;
    }
    fc_ctl_response_free(&resp);
    if (rc != 0) {
        json_decref(j);
        return rc;
    }
    *doc = j;
    return 0;
}

/* A document for scripts, on stdout. */
static int print_json(const json_t *doc)
{
    char *text = json_dumps(doc, JSON_OUT_FLAGS);
    if (text == NULL) {
        say("out of memory");
        return FC_CTL_EXIT_SERVER;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

/* ---- tables ------------------------------------------------------------- */

#define MAX_COLUMNS 8

/* Rows of text cells, printed with each column as wide as its widest cell. */
struct table {
    size_t ncols;
    const char *head[MAX_COLUMNS];
    int right[MAX_COLUMNS]; /* numbers align right */
    char **cells;           /* rows * ncols, malloc'd each; NULL: out of memory */
    size_t rows, cap;
    int oom;
};

static void table_add(struct table *t, char *const row[])
{
    if (t->oom)
        goto drop;
    if (t->rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **cells = realloc(t->cells, cap * t->ncols * sizeof(*cells));
        if (cells == NULL) {
            t->oom = 1;
            goto drop;
        }
        t->cells = cells;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        t->oom |= row[i] == NULL;
        t->cells[t->rows * t->ncols + i] = row[i];
    }
    t->rows++;
    return;
drop:
    for (size_t i = 0; i < t->ncols; i++)
        free(row[i]);
}

static void print_row(const struct table *t, const size_t *width, const char *const cells[])
{
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = cells[i] != NULL ? cells[i] : "";
        const char *sep = i + 1 < t->ncols ? "  " : "\n";
        if (t->right[i])
            printf("%*s%s", (int)width[i], s, sep);
        else if (i + 1 < t->ncols)
            printf("%-*s%s", (int)width[i], s, sep);
        else
            printf("%s%s", s, sep); /* no trailing blanks */
    }
}

static void table_print(const struct table *t)
{
    size_t width[MAX_COLUMNS];
    for (size_t i = 0; i < t->ncols; i++) {
        width[i] = strlen(t->head[i]);
        for (size_t r = 0; r < t->rows; r++) {
            const char *s = t->cells[r * t->ncols + i];
            if (s != NULL && strlen(s) > width[i])
                width[i] = strlen(s);
        }
    }
    print_row(t, width, t->head);
    for (size_t r = 0; r < t->rows; r++)
        print_row(t, width, (const char *const *)&t->cells[r * t->ncols]);
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->rows = t->cap = 0;
}

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* printf into a malloc'd string, NULL when out of memory. */
static char *strf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s != NULL) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ---- status ------------------------------------------------------------- */

/* "3d 4h 5m 6s", leading zero units left out. */
static void format_uptime(double seconds, char *out, size_t cap)
{
    long long s = seconds > 0 ? (long long)seconds : 0;
    long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
    if (d > 0)
        snprintf(out, cap, "%lldd %lldh %lldm %llds", d, h, m, s % 60);
    else if (h > 0)
        snprintf(out, cap, "%lldh %lldm %llds", h, m, s % 60);
    else if (m > 0)
        snprintf(out, cap, "%lldm %llds", m, s % 60);
    else
        snprintf(out, cap, "%llds", s);
}

/* The name of a pool's plugin ({"plugin", "version"}), or NULL when it has none. */
static const char *plugin_of(const json_t *pool, const char *key)
{
    return str_of(json_object_get(pool, key), "plugin", NULL);
}

static void print_pool_line(const json_t *pool)
{
    const json_t *backends = json_object_get(pool, "backends");
    size_t up = 0;
    for (size_t i = 0; i < json_array_size(backends); i++)
        up += strcmp(str_of(json_array_get(backends, i), "state", ""), "up") == 0;
    const json_t *strategy = json_object_get(pool, "strategy");
    printf("pool        %s: %s %s", str_of(pool, "name", "?"), str_of(strategy, "plugin", "?"),
           str_of(strategy, "version", ""));
    if (plugin_of(pool, "health") != NULL)
        printf(", health %s", plugin_of(pool, "health"));
    if (plugin_of(pool, "rate_limit") != NULL)
        printf(", rate limit %s", plugin_of(pool, "rate_limit"));
    printf(", %zu/%zu backends up\n", up, json_array_size(backends));
}

static void print_status(const json_t *st)
{
    char uptime[64];
    format_uptime(num_of(st, "uptime_s", 0), uptime, sizeof(uptime));
    const json_t *reloads = json_object_get(st, "reloads");
    printf("version     %s (plugin ABI %s)\n", str_of(st, "version", "?"), str_of(st, "abi", "?"));
    printf("pid         %.0f\n", num_of(st, "pid", 0));
    printf("uptime      %s\n", uptime);
    printf("generation  %.0f\n", num_of(st, "generation", 0));
    printf("workers     %.0f\n", num_of(st, "workers", 0));
    printf("reloads     %.0f done, %.0f failed\n", num_of(reloads, "done", 0),
           num_of(reloads, "failed", 0));
    const char *last_error = str_of(reloads, "last_error", "");
    if (last_error[0] != '\0')
        printf("last error  %s\n", last_error);
    const json_t *listeners = json_object_get(st, "listeners");
    for (size_t i = 0; i < json_array_size(listeners); i++) {
        const json_t *l = json_array_get(listeners, i);
        printf("listener    %s -> %s, %.0f connections%s\n", str_of(l, "address", "?"),
               str_of(l, "pool", "?"), num_of(l, "connections", 0),
               json_is_true(json_object_get(l, "tls")) ? ", tls" : "");
    }
    const json_t *pools = json_object_get(st, "pools");
    for (size_t i = 0; i < json_array_size(pools); i++)
        print_pool_line(json_array_get(pools, i));
}

static int cmd_status(struct ctl *c, char **args)
{
    json_t *doc;
    int rc = call(c, "GET", "/api/status", NULL, TIMEOUT_MS, &doc);
    if (rc != 0)
        return rc;
    if (c->json)
        rc = print_json(doc);
    else
        print_status(doc);
    json_decref(doc);
    return rc;
}

/* ---- backends ----------------------------------------------------------- */

static const json_t *find_pool(const json_t *status, const char *name)
{
    const json_t *pools = json_object_get(status, "pools");
    for (size_t i = 0; i < json_array_size(pools); i++)
        if (strcmp(str_of(json_array_get(pools, i), "name", ""), name) == 0)
            return json_array_get(pools, i);
    return NULL;
}

static const json_t *find_backend(const json_t *pool, const char *address)
{
    const json_t *backends = json_object_get(pool, "backends");
    for (size_t i = 0; i < json_array_size(backends); i++)
        if (strcmp(str_of(json_array_get(backends, i), "address", ""), address) == 0)
            return json_array_get(backends, i);
    return NULL;
}

/* The status document and when it was taken: halfway between sending and the answer. */
static int sample(struct ctl *c, json_t **doc, double *at_s)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = call(c, "GET", "/api/status", NULL, TIMEOUT_MS, doc);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *at_s = ((double)t0.tv_sec + (double)t1.tv_sec) / 2 +
            ((double)t0.tv_nsec + (double)t1.tv_nsec) / 2e9;
    return rc;
}

/*
 * Adds `requests_per_s` to every backend of `now`: the growth of its
 * `requests` since `before`, per second. null where it cannot be known: a
 * backend that was not there before, or whose count went down (removed and
 * added again in between).
 */
static void add_rates(json_t *now, const json_t *before, double elapsed_s)
{
    json_t *pools = json_object_get(now, "pools");
    for (size_t p = 0; p < json_array_size(pools); p++) {
        json_t *pool = json_array_get(pools, p);
        const json_t *old_pool = find_pool(before, str_of(pool, "name", ""));
        json_t *backends = json_object_get(pool, "backends");
        for (size_t b = 0; b < json_array_size(backends); b++) {
            json_t *be = json_array_get(backends, b);
            const json_t *old = find_backend(old_pool, str_of(be, "address", ""));
            double n1 = num_of(be, "requests", -1), n0 = num_of(old, "requests", -1);
            json_t *rate = json_null();
            if (old != NULL && n0 >= 0 && n1 >= n0 && elapsed_s > 0)
                rate = json_real((double)(long long)((n1 - n0) / elapsed_s * 1000 + 0.5) / 1000);
            json_object_set_new(be, "requests_per_s", rate);
        }
    }
}

/* One pool's backends as a table; false when out of memory. */
static int print_backends(const json_t *pool)
{
    struct table t = {
        .ncols = 8,
        .head = {"ADDRESS", "WEIGHT", "STATE", "SOURCE", "INFLIGHT", "REQ/S", "ERRORS", "P99"},
        .right = {0, 1, 0, 0, 1, 1, 1, 1}};
    const json_t *backends = json_object_get(pool, "backends");
    for (size_t i = 0; i < json_array_size(backends); i++) {
        const json_t *b = json_array_get(backends, i);
        const json_t *rate = json_object_get(b, "requests_per_s");
        const json_t *latency = json_object_get(b, "latency_ms");
        /* `failures` counts the failed connects and the 5xx answers (status.c). */
        char *row[] = {
            strf("%s", str_of(b, "address", "?")),
            strf("%.0f", num_of(b, "weight", 0)),
            strf("%s", str_of(b, "state", "?")),
            strf("%s", str_of(b, "source", "config")),
            strf("%.0f", num_of(b, "inflight", 0)),
            json_is_number(rate) ? strf("%.1f", json_number_value(rate)) : strf("-"),
            strf("%.0f", num_of(b, "failures", 0)),
            /* No latency without a response yet (the histogram is empty). */
            json_is_number(json_object_get(latency, "p99")) && num_of(b, "requests", 0) > 0
                ? strf("%.2fms", num_of(latency, "p99", 0))
                : strf("-"),
        };
        table_add(&t, row);
    }
    int ok = !t.oom;
    if (ok) {
        const json_t *strategy = json_object_get(pool, "strategy");
        printf("pool %s (%s)\n", str_of(pool, "name", "?"), str_of(strategy, "plugin", "?"));
        table_print(&t);
    }
    table_free(&t);
    return ok;
}

static int cmd_backends(struct ctl *c, char **args)
{
    const char *name = args[0];
    json_t *before = NULL, *now = NULL;
    double t0, t1;
    int rc = sample(c, &before, &t0);
    if (rc == 0 && name != NULL && find_pool(before, name) == NULL) {
        say("no such pool: %s", name);
        rc = FC_CTL_EXIT_SERVER;
    }
    if (rc == 0) {
        usleep(SAMPLE_INTERVAL_MS * 1000);
        rc = sample(c, &now, &t1);
    }
    if (rc == 0 && name != NULL && find_pool(now, name) == NULL) {
        say("no such pool: %s (a reload removed it)", name);
        rc = FC_CTL_EXIT_SERVER;
    }
    if (rc == 0) {
        add_rates(now, before, t1 - t0);
        json_t *pools = json_object_get(now, "pools");
        json_t *shown = json_array();
        for (size_t i = 0; shown != NULL && i < json_array_size(pools); i++) {
            json_t *pool = json_array_get(pools, i);
            if (name == NULL || strcmp(str_of(pool, "name", ""), name) == 0)
                json_array_append(shown, pool);
        }
        for (size_t i = 0; !c->json && shown != NULL && i < json_array_size(shown); i++) {
            if (i > 0)
                printf("\n");
            if (!print_backends(json_array_get(shown, i)))
                rc = FC_CTL_EXIT_SERVER;
        }
        if (shown == NULL || rc != 0) /* an array or a table that could not grow */
            say("out of memory");
        else if (c->json)
            rc = print_json(shown);
        json_decref(shown);
    }
    json_decref(before);
    json_decref(now);
    return rc;
}

/* ---- runtime changes ---------------------------------------------------- */

/* "/api/pools/{pool}/backends" or ".../backends/{address}", each segment percent-encoded. */
static char *backends_path(const char *pool, const char *address)
{
    char *p = fc_ctl_path_escape(pool);
    char *a = address != NULL ? fc_ctl_path_escape(address) : NULL;
    char *path = NULL;
    if (p != NULL && (address == NULL || a != NULL))
        path = address != NULL ? strf("/api/pools/%s/backends/%s", p, a)
                               : strf("/api/pools/%s/backends", p);
    free(p);
    free(a);
    return path;
}

/* "web: 127.0.0.1:9004 drain (weight 1, runtime)", from the answer {"pool", "backend"}. */
static void print_backend_change(const json_t *doc, const char *pool, const char *address)
{
    const json_t *b = json_object_get(doc, "backend");
    printf("%s: %s %s (weight %.0f, %s)\n", str_of(doc, "pool", pool),
           str_of(b, "address", address), str_of(b, "state", "?"), num_of(b, "weight", 0),
           str_of(b, "source", "runtime"));
}

/*
 * A change to one backend (method on its path, with body), printed as the
 * server tells the backend now is. `address` NULL: the pool's collection.
 */
static int change(struct ctl *c, const char *method, const char *pool, const char *address,
                  const char *shown_address, json_t *body)
{
    char *path = backends_path(pool, address);
    if (path == NULL || (body == NULL && strcmp(method, "DELETE") != 0)) {
        free(path);
        json_decref(body);
        say("out of memory");
        return FC_CTL_EXIT_SERVER;
    }
    json_t *doc;
    int rc = call(c, method, path, body, TIMEOUT_MS, &doc);
    free(path);
    json_decref(body);
    if (rc != 0)
        return rc;
    if (c->json) {
        rc = print_json(doc);
    } else if (strcmp(method, "DELETE") == 0) {
        double inflight = num_of(doc, "inflight", 0);
        printf("%s: %s removed", str_of(doc, "pool", pool), str_of(doc, "address", shown_address));
        if (inflight > 0)
            printf(" (%.0f requests in flight finish first)", inflight);
        printf("\n");
    } else {
        print_backend_change(doc, pool, shown_address);
    }
    json_decref(doc);
    return rc;
}

/* A weight on the command line: a whole number; its range is the server's to check. */
static int parse_weight(const char *text, json_int_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0)
        return bad_usage("invalid weight \"%s\": expected a whole number", text);
    *out = (json_int_t)v;
    return 0;
}

static int cmd_add(struct ctl *c, char **args)
{
    /* Without WEIGHT the server decides: 1, or the file's for a backend of the file. */
    json_t *body = c->weight < 0 ? json_pack("{s:s}", "address", args[1])
                                 : json_pack("{s:s, s:I}", "address", args[1], "weight", c->weight);
    return change(c, "POST", args[0], NULL, args[1], body);
}

/* drain, maint and ready: the command's name is the state asked for. */
static int cmd_state(struct ctl *c, char **args)
{
    return change(c, "PATCH", args[0], args[1], args[1], json_pack("{s:s}", "state", args[-1]));
}

static int cmd_weight(struct ctl *c, char **args)
{
    return change(c, "PATCH", args[0], args[1], args[1], json_pack("{s:I}", "weight", c->weight));
}

static int cmd_remove(struct ctl *c, char **args)
{
    return change(c, "DELETE", args[0], args[1], args[1], NULL);
}

/*
 * purge POOL PATH: that target's entries (every host and variant); a PATH
 * ending in '*' every target that starts with what is before it; "*" all.
 */
static int cmd_purge(struct ctl *c, char **args)
{
    const char *pattern = args[1];
    size_t n = strlen(pattern);
    int prefix = n > 0 && pattern[n - 1] == '*';
    if (strcmp(pattern, "*") != 0 && pattern[0] != '/')
        return bad_usage("invalid PATH \"%s\": expected /path, /prefix* or *", pattern);
    char *pool = fc_ctl_path_escape(args[0]);
    char *value = NULL, *path = NULL;
    if (strcmp(pattern, "*") == 0) {
        path = pool != NULL ? strf("/api/pools/%s/cache?all=1", pool) : NULL;
    } else {
        char *bare = strdup(pattern);
        if (bare != NULL && prefix)
            bare[n - 1] = '\0';
        value = bare != NULL ? fc_ctl_path_escape(bare) : NULL;
        free(bare);
        if (pool != NULL && value != NULL)
            path = strf("/api/pools/%s/cache?%s=%s", pool, prefix ? "prefix" : "path", value);
    }
    free(pool);
    free(value);
    if (path == NULL) {
        say("out of memory");
        return FC_CTL_EXIT_SERVER;
    }
    json_t *doc;
    int rc = call(c, "DELETE", path, NULL, TIMEOUT_MS, &doc);
    free(path);
    if (rc != 0)
        return rc;
    if (c->json)
        rc = print_json(doc);
    else {
        double removed = num_of(doc, "removed", 0);
        printf("%s: purged %s: %.0f %s\n", str_of(doc, "pool", args[0]), pattern, removed,
               removed == 1 ? "entry" : "entries");
    }
    json_decref(doc);
    return rc;
}

static int cmd_reload(struct ctl *c, char **args)
{
    json_t *doc;
    int rc = call(c, "POST", "/api/reload", NULL, RELOAD_TIMEOUT_MS, &doc);
    if (rc != 0)
        return rc;
    if (c->json)
        rc = print_json(doc);
    else
        printf("reloaded: generation %.0f\n", num_of(doc, "generation", 0));
    json_decref(doc);
    return rc;
}

/* ---- the command line --------------------------------------------------- */

struct command {
    const char *name;
    int min_args, max_args;
    /* args[0..n-1] are the command's arguments, args[n] is NULL, args[-1] the command. */
    int (*run)(struct ctl *c, char **args);
    const char *synopsis;
    int weight_arg; /* the index of a WEIGHT or N argument, checked before anything is read */
};

static const struct command commands[] = {
    {"status", 0, 0, cmd_status, "status", -1},
    {"backends", 0, 1, cmd_backends, "backends [POOL]", -1},
    {"add", 2, 3, cmd_add, "add POOL ADDRESS [WEIGHT]", 2},
    {"drain", 2, 2, cmd_state, "drain POOL ADDRESS", -1},
    {"maint", 2, 2, cmd_state, "maint POOL ADDRESS", -1},
    {"ready", 2, 2, cmd_state, "ready POOL ADDRESS", -1},
    {"weight", 3, 3, cmd_weight, "weight POOL ADDRESS N", 2},
    {"remove", 2, 2, cmd_remove, "remove POOL ADDRESS", -1},
    {"purge", 2, 2, cmd_purge, "purge POOL PATH", -1},
    {"reload", 0, 0, cmd_reload, "reload", -1},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

struct options {
    const char *config;     /* -c */
    const char *address;    /* -a */
    const char *token_file; /* --token-file */
    int json;
    int help;
    json_int_t weight; /* the command's WEIGHT or N; -1 unless given */
};

enum { OPT_TOKEN_FILE = 256, OPT_JSON };

/* Options may come before or after the command (getopt permutes); "--" ends them. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"address", required_argument, NULL, 'a'},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0; /* getopt would name the program "ctl"; the errors are said here */
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, ":c:a:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o->config = optarg;
            break;
        case 'a':
            o->address = optarg;
            break;
        case OPT_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case 'h':
            o->help = 1;
            break;
        case ':':
            return bad_usage("%s needs a value", argv[optind - 1]);
        default: /* optopt: the letter of a short option, 0 for a long one */
            if (optopt != 0)
                return bad_usage("unknown option -%c", optopt);
            return bad_usage("unknown option %s", argv[optind - 1]);
        }
    }
    if (o->config != NULL && o->address != NULL)
        return bad_usage("-c and -a exclude each other: -a reads no file");
    return 0;
}

static int run(const struct options *o, const struct command *cmd, char **args)
{
    struct ctl c = {.json = o->json, .weight = o->weight};
    int rc = o->address != NULL ? parse_endpoint(&c, o->address)
                                : load_config(&c, o->config != NULL ? o->config : DEFAULT_CONFIG);
    if (rc == 0 && o->token_file != NULL) {
        if (c.token != NULL)
            explicit_bzero(c.token, strlen(c.token));
        free(c.token);
        c.token = NULL;
        rc = read_token_file(o->token_file, &c.token);
    }
    if (rc == 0)
        rc = cmd->run(&c, args);
    fflush(stdout);
    if (c.token != NULL)
        explicit_bzero(c.token, strlen(c.token));
    free(c.token);
    fc_ctl_endpoint_free(&c.ep);
    return rc;
}

int fc_ctl_main(int argc, char **argv)
{
    struct options o = {.weight = -1}; /* -1: not given */
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.help) {
        usage(stdout);
        return FC_CTL_EXIT_OK;
    }
    if (optind >= argc)
        return bad_usage("a command is needed");
    const struct command *cmd = find_command(argv[optind]);
    if (cmd == NULL)
        return bad_usage("unknown command \"%s\"", argv[optind]);
    int n = argc - optind - 1;
    if (n < cmd->min_args || n > cmd->max_args)
        return bad_usage("expected fulcrum ctl %s", cmd->synopsis);
    char **args = argv + optind + 1;
    if (cmd->weight_arg >= 0 && args[cmd->weight_arg] != NULL &&
        (rc = parse_weight(args[cmd->weight_arg], &o.weight)) != 0)
        return rc;
    return run(&o, cmd, args);
}
