/*
 * Tests core/config.c: loading valid files (every key, and the defaults) and
 * the exact "FILE:LINE: KEY: message" reported for each kind of error.
 *
 * Each test gets a fresh temporary folder, writes its config there and loads
 * it; log lines are captured with fc_log_set_sink() so that the errors can be
 * checked word for word.
 */
#define _XOPEN_SOURCE 700 /* nftw() */
#define _DEFAULT_SOURCE
/* cmocka needs these four first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Fixtures: a temporary folder and a captured log                          */
/* ------------------------------------------------------------------------ */

#define MAX_LINES 64

static char tmpdir[64];
static char conf_path[128];
static char *lines[MAX_LINES];
static int n_lines;

static void capture(void *arg, enum fc_log_level level, const char *line)
{
    (void)arg;
    (void)level;
    if (n_lines < MAX_LINES)
        lines[n_lines++] = strdup(line);
}

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/fc-test-config-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(conf_path, sizeof(conf_path), "%s/fulcrum.conf", tmpdir);
    n_lines = 0;
    fc_log_set_sink(capture, NULL);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    fc_log_set_sink(NULL, NULL);
    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    n_lines = 0;
    return nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes `text` to `name` inside the test's folder. */
static void write_file(const char *name, const char *text)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Writes `text` as fulcrum.conf and loads it. */
static int load(const char *text, struct fc_config **cfg)
{
    write_file("fulcrum.conf", text);
    return fc_config_load(conf_path, cfg);
}

/* The 1-based line of `text` on which `needle` first appears. */
static int line_of(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    assert_non_null(p);
    int line = 1;
    for (const char *q = text; q < p; q++)
        line += *q == '\n';
    return line;
}

static void dump_lines(void)
{
    for (int i = 0; i < n_lines; i++)
        print_message("  logged: %s\n", lines[i]);
}

/* Asserts that a line starting with exactly "FILE:LINE: KEY: MESSAGE" was logged. */
static void assert_error_in(const char *file, int line, const char *key, const char *message)
{
    char want[PATH_MAX + 1024];
    int n = snprintf(want, sizeof(want), "%s:%d: %s: %s", file, line, key, message);
    assert_true(n > 0 && (size_t)n < sizeof(want));
    for (int i = 0; i < n_lines; i++)
        if (strncmp(lines[i], want, strlen(want)) == 0)
            return;
    print_message("expected a line starting with: %s\n", want);
    dump_lines();
    fail();
}

static void assert_error(int line, const char *key, const char *message)
{
    assert_error_in(conf_path, line, key, message);
}

/* Asserts that loading fails with FC_EINVAL and exactly `count` lines were logged. */
static void assert_fails(const char *text, int count)
{
    struct fc_config *cfg = (struct fc_config *)0x1;
    int rc = load(text, &cfg);
    assert_int_equal(rc, FC_EINVAL);
    assert_null(cfg);
    if (n_lines != count) {
        print_message("expected %d error lines, got %d\n", count, n_lines);
        dump_lines();
        fail();
    }
}

static uint32_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > 256 ? 256 : (uint32_t)n;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    assert_int_equal(ss->ss_family, AF_INET6);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void assert_ipv4(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                        uint16_t port)
{
    assert_int_equal(ss->ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, sizeof(buf));
    assert_string_equal(buf, ip);
    assert_int_equal(port_of(ss), port);
}

static char *in_dir(const char *rel)
{
    static char buf[PATH_MAX];
    int n = snprintf(buf, sizeof(buf), "%s/%s", tmpdir, rel);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return buf;
}

/* The smallest valid file, used as a base by several tests. */
static const char minimal[] =
    "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
    "pools = ( { name = \"web\";\n"
    "            strategy = { plugin = \"round_robin\"; };\n"
    "            backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n";

/* ------------------------------------------------------------------------ */
/* Valid files                                                               */
/* ------------------------------------------------------------------------ */

static const char full[] =
    "# every key of the schema\n"
    "workers = 0;\n"
    "plugin_dir = \"lib/plugins\";\n"
    "log = { level = \"debug\"; access = \"logs/access.log\"; buffer_bytes = 65536; };\n"
    "timeouts = { connect_ms = 1; client_header_ms = 2; idle_ms = 3; upstream_ms = 4;\n"
    "             shutdown_ms = 86400000; half_close_ms = 0; };\n"
    "limits = { max_header_bytes = 1024; max_body_bytes = 10000000000L; };\n"
    "listeners = (\n"
    "  { address = \"127.0.0.1:8080\"; pool = \"web\"; },\n"
    "  { address = \"[::1]:8443\"; pool = \"api\"; defer_accept = false; }\n"
    ");\n"
    "routes = (\n"
    "  { host = \"api.example.com\"; path_prefix = \"/v1/\"; pool = \"api\"; },\n"
    "  { host = \"static.example.com\"; pool = \"web\"; },\n"
    "  { path_prefix = \"/api/\"; pool = \"api\"; }\n"
    ");\n"
    "pools = (\n"
    "  { name = \"web\";\n"
    "    strategy = { plugin = \"round_robin\"; };\n"
    "    health = { plugin = \"custom/http.so\"; path = \"/hc\"; interval_ms = 1000; };\n"
    "    rate_limit = { plugin = \"/opt/fc/token_bucket.so\"; rate = 100.0; burst = 200; };\n"
    "    retries = 0;\n"
    "    backends = (\n"
    "      { address = \"127.0.0.1:9001\"; weight = 1; },\n"
    "      { address = \"127.0.0.1:9002\"; weight = 1000; }\n"
    "    );\n"
    "  },\n"
    "  { name = \"api\";\n"
    "    strategy = { plugin = \"least_conn\"; unknown_to_core = true; };\n"
    "    retries = 16;\n"
    "    backends = ( { address = \"localhost:9003\"; } );\n"
    "  }\n"
    ");\n";

static void test_full(void **state)
{
    (void)state;
    struct fc_config *cfg = NULL;
    assert_int_equal(load(full, &cfg), 0);
    assert_int_equal(n_lines, 0);
    assert_non_null(cfg);

    assert_string_equal(cfg->path, conf_path);
    assert_string_equal(cfg->dir, tmpdir);
    assert_int_equal(cfg->workers, online_cpus());
    assert_string_equal(cfg->plugin_dir, in_dir("lib/plugins"));
    assert_int_equal(cfg->log_level, FC_LOG_DEBUG);
    assert_int_equal(cfg->access_log, FC_ACCESS_LOG_FILE);
    assert_string_equal(cfg->access_log_path, in_dir("logs/access.log"));

    assert_int_equal(cfg->timeouts.connect_ms, 1);
    assert_int_equal(cfg->timeouts.client_header_ms, 2);
    assert_int_equal(cfg->timeouts.idle_ms, 3);
    assert_int_equal(cfg->timeouts.upstream_ms, 4);
    assert_int_equal(cfg->timeouts.shutdown_ms, 86400000);
    assert_int_equal(cfg->timeouts.half_close_ms, 0);
    assert_int_equal(cfg->log_buffer_bytes, 65536);
    assert_int_equal(cfg->limits.max_header_bytes, 1024);
    assert_true(cfg->limits.max_body_bytes == 10000000000ULL);

    assert_int_equal(cfg->n_listeners, 2);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1:8080");
    assert_ipv4(&cfg->listeners[0].addr, cfg->listeners[0].addr_len, "127.0.0.1", 8080);
    assert_int_equal(cfg->listeners[0].pool, 0);
    assert_int_equal(cfg->listeners[0].line, line_of(full, "127.0.0.1:8080"));
    assert_string_equal(cfg->listeners[1].address, "[::1]:8443");
    assert_int_equal(cfg->listeners[1].addr.ss_family, AF_INET6);
    assert_int_equal(cfg->listeners[1].addr_len, sizeof(struct sockaddr_in6));
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&cfg->listeners[1].addr;
    assert_int_equal(memcmp(&v6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback)), 0);
    assert_int_equal(port_of(&cfg->listeners[1].addr), 8443);
    assert_int_equal(cfg->listeners[1].pool, 1);
    assert_true(cfg->listeners[0].defer_accept); /* the default */
    assert_false(cfg->listeners[1].defer_accept);

    assert_int_equal(cfg->n_routes, 3);
    assert_string_equal(cfg->routes[0].host, "api.example.com");
    assert_string_equal(cfg->routes[0].path_prefix, "/v1/");
    assert_int_equal(cfg->routes[0].pool, 1);
    assert_int_equal(cfg->routes[0].line, line_of(full, "api.example.com"));
    assert_string_equal(cfg->routes[1].host, "static.example.com");
    assert_null(cfg->routes[1].path_prefix);
    assert_int_equal(cfg->routes[1].pool, 0);
    assert_null(cfg->routes[2].host);
    assert_string_equal(cfg->routes[2].path_prefix, "/api/");
    assert_int_equal(cfg->routes[2].pool, 1);

    assert_int_equal(cfg->n_pools, 2);
    const struct fc_conf_pool *web = &cfg->pools[0];
    assert_string_equal(web->name, "web");
    assert_int_equal(web->line, line_of(full, "name = \"web\""));
    assert_string_equal(web->strategy.name, "round_robin");
    assert_string_equal(web->strategy.path, in_dir("lib/plugins/round_robin.so"));
    assert_int_equal(web->strategy.line, line_of(full, "\"round_robin\""));
    assert_non_null(web->strategy.group);
    assert_string_equal(config_setting_name(web->strategy.group), "strategy");
    /* A path with a '/' is a path; a relative one is relative to the file's folder. */
    assert_string_equal(web->health.name, "custom/http.so");
    assert_string_equal(web->health.path, in_dir("custom/http.so"));
    assert_int_equal(web->health.line, line_of(full, "custom/http.so"));
    /* The plugin's own keys stay in the tree for the plugin to read. */
    const char *hc = NULL;
    assert_int_equal(config_setting_lookup_string(web->health.group, "path", &hc), CONFIG_TRUE);
    assert_string_equal(hc, "/hc");
    assert_string_equal(web->rate_limit.name, "/opt/fc/token_bucket.so");
    assert_string_equal(web->rate_limit.path, "/opt/fc/token_bucket.so");
    assert_non_null(web->rate_limit.group);
    assert_int_equal(web->retries, 0);
    assert_int_equal(web->n_backends, 2);
    assert_string_equal(web->backends[0].address, "127.0.0.1:9001");
    assert_ipv4(&web->backends[0].addr, web->backends[0].addr_len, "127.0.0.1", 9001);
    assert_int_equal(web->backends[0].weight, 1);
    assert_int_equal(web->backends[0].line, line_of(full, "127.0.0.1:9001"));
    assert_ipv4(&web->backends[1].addr, web->backends[1].addr_len, "127.0.0.1", 9002);
    assert_int_equal(web->backends[1].weight, 1000);
    assert_int_equal(web->backends[1].line, line_of(full, "127.0.0.1:9002"));

    const struct fc_conf_pool *api = &cfg->pools[1];
    assert_string_equal(api->name, "api");
    assert_string_equal(api->strategy.path, in_dir("lib/plugins/least_conn.so"));
    assert_null(api->health.name);
    assert_null(api->health.path);
    assert_null(api->health.group);
    assert_null(api->rate_limit.name);
    assert_int_equal(api->retries, 16);
    assert_int_equal(api->n_backends, 1);
    assert_string_equal(api->backends[0].address, "localhost:9003");
    assert_true(api->backends[0].addr.ss_family == AF_INET ||
                api->backends[0].addr.ss_family == AF_INET6);
    assert_int_equal(port_of(&api->backends[0].addr), 9003);
    assert_int_equal(api->backends[0].weight, 1);

    fc_config_free(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct fc_config *cfg = NULL;
    assert_int_equal(load(minimal, &cfg), 0);
    assert_int_equal(n_lines, 0);

    assert_int_equal(cfg->workers, online_cpus());
    assert_string_equal(cfg->plugin_dir, in_dir("plugins"));
    assert_int_equal(cfg->log_level, FC_LOG_INFO);
    assert_int_equal(cfg->access_log, FC_ACCESS_LOG_STDOUT);
    assert_null(cfg->access_log_path);
    assert_int_equal(cfg->timeouts.connect_ms, 2000);
    assert_int_equal(cfg->timeouts.client_header_ms, 10000);
    assert_int_equal(cfg->timeouts.idle_ms, 60000);
    assert_int_equal(cfg->timeouts.upstream_ms, 30000);
    assert_int_equal(cfg->timeouts.shutdown_ms, 10000);
    assert_int_equal(cfg->timeouts.half_close_ms, 100);
    assert_int_equal(cfg->log_buffer_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg->limits.max_header_bytes, 16384);
    assert_true(cfg->limits.max_body_bytes == 0);
    assert_int_equal(cfg->n_routes, 0);
    assert_null(cfg->routes);
    assert_int_equal(cfg->n_listeners, 1);
    assert_int_equal(cfg->n_pools, 1);
    assert_int_equal(cfg->pools[0].retries, 1);
    assert_string_equal(cfg->pools[0].strategy.path, in_dir("plugins/round_robin.so"));
    assert_null(cfg->pools[0].health.name);
    assert_null(cfg->pools[0].rate_limit.name);
    assert_int_equal(cfg->pools[0].n_backends, 1);
    assert_int_equal(cfg->pools[0].backends[0].weight, 1);
    fc_config_free(cfg);
}

static void test_access_off_and_explicit_values(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof(text),
             "workers = 3;\nplugin_dir = \"/usr/lib/fc\";\n"
             "log = { level = \"error\"; access = \"off\"; };\n%s",
             minimal);
    struct fc_config *cfg = NULL;
    assert_int_equal(load(text, &cfg), 0);
    assert_int_equal(cfg->workers, 3);
    assert_string_equal(cfg->plugin_dir, "/usr/lib/fc");
    assert_string_equal(cfg->pools[0].strategy.path, "/usr/lib/fc/round_robin.so");
    assert_int_equal(cfg->log_level, FC_LOG_ERROR);
    assert_int_equal(cfg->access_log, FC_ACCESS_LOG_OFF);
    assert_null(cfg->access_log_path);
    fc_config_free(cfg);

    snprintf(text, sizeof(text), "log = { access = \"stdout\"; };\n%s", minimal);
    assert_int_equal(load(text, &cfg), 0);
    assert_int_equal(cfg->access_log, FC_ACCESS_LOG_STDOUT);
    assert_null(cfg->access_log_path);
    fc_config_free(cfg);

    snprintf(text, sizeof(text), "log = { access = \"/var/log/fc.log\"; };\n%s", minimal);
    assert_int_equal(load(text, &cfg), 0);
    assert_int_equal(cfg->access_log, FC_ACCESS_LOG_FILE);
    assert_string_equal(cfg->access_log_path, "/var/log/fc.log");
    fc_config_free(cfg);
    assert_int_equal(n_lines, 0);
}

/* A file named without a folder resolves against ".", the working folder. */
static void test_relative_config_path(void **state)
{
    (void)state;
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    write_file("fulcrum.conf", minimal);
    assert_int_equal(chdir(tmpdir), 0);
    struct fc_config *cfg = NULL;
    int rc = fc_config_load("fulcrum.conf", &cfg);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->dir, ".");
    assert_string_equal(cfg->plugin_dir, "./plugins");
    assert_string_equal(cfg->pools[0].strategy.path, "./plugins/round_robin.so");
    fc_config_free(cfg);
}

/* @include reads files next to the config, whatever the working folder. */
static void test_include(void **state)
{
    (void)state;
    write_file("pools.inc", "pools = ( { name = \"web\";\n"
                            "  strategy = { plugin = \"round_robin\"; };\n"
                            "  backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n");
    struct fc_config *cfg = NULL;
    assert_int_equal(load("listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
                          "@include \"pools.inc\"\n",
                          &cfg),
                     0);
    assert_int_equal(cfg->n_pools, 1);
    assert_string_equal(cfg->pools[0].name, "web");
    fc_config_free(cfg);

    /* An error inside the included file names that file and its line. */
    write_file("pools.inc",
               "pools = ( { name = \"web\";\n"
               "  strategy = { plugin = \"round_robin\"; };\n"
               "  backends = ( { address = \"127.0.0.1:9001\"; weight = 0; } ); } );\n");
    assert_fails("listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
                 "@include \"pools.inc\"\n",
                 1);
    assert_error_in(in_dir("pools.inc"), 3, "pool \"web\": backends[0].weight",
                    "must be between 1 and 1000 (got 0)");

    /* So does a syntax error inside it. */
    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    n_lines = 0;
    write_file("pools.inc", "pools = (\n  { name = ; } );\n");
    assert_fails("listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
                 "@include \"pools.inc\"\n",
                 1);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof(want), "%s:2: syntax error: ", in_dir("pools.inc"));
    if (strncmp(lines[0], want, strlen(want)) != 0) {
        print_message("expected a line starting with: %s\n", want);
        dump_lines();
        fail();
    }
}

/*
 * An @include of a folder made libconfig's scanner exit the process: it is
 * refused first, with FILE:LINE, and the process goes on (this test does).
 */
static void test_include_folder_refused(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/conf.d", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_fails("workers = 1;\n@include \"conf.d\"\n", 1);
    assert_error(2, "@include \"conf.d\"", "is a folder, not a file");
    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    n_lines = 0;

    /* Nested: the included file's own include is checked too, and named by its file. */
    write_file("pools.inc", "# pools\n@include \"conf.d\"\n");
    assert_fails("workers = 1;\n@include \"pools.inc\"\n", 1);
    assert_error_in(in_dir("pools.inc"), 2, "@include \"conf.d\"", "is a folder, not a file");
    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    n_lines = 0;

    /* Commented out, it is not an include: the file loads. */
    write_file("pools.inc", "pools = ( { name = \"web\";\n"
                            "  strategy = { plugin = \"round_robin\"; };\n"
                            "  backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n");
    struct fc_config *cfg = NULL;
    assert_int_equal(load("listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
                          "# @include \"conf.d\"\n"
                          "/*\n@include \"conf.d\"\n*/\n"
                          "@include \"pools.inc\"\n",
                          &cfg),
                     0);
    assert_int_equal(cfg->n_pools, 1);
    fc_config_free(cfg);
    rmdir(dir);
    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    n_lines = 0;

    /*
     * A NUL byte (found by the config fuzz target): libconfig read
     * "@include \"/\0tmp\"" as an include of "/" and exited. The file is refused.
     */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/fulcrum.conf", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static const char nul_include[] = "workers = 1;\n@include \"/\0tmp\"\n";
    assert_int_equal(fwrite(nul_include, 1, sizeof(nul_include) - 1, f), sizeof(nul_include) - 1);
    assert_int_equal(fclose(f), 0);
    cfg = (struct fc_config *)0x1;
    assert_int_equal(fc_config_load(conf_path, &cfg), FC_EINVAL);
    assert_null(cfg);
    assert_error_in(conf_path, 2, "a NUL byte", "not a text file");
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

static void test_syntax_error(void **state)
{
    (void)state;
    assert_fails("workers = 2;\n\nlisteners = ( { address = ; } );\n", 1);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof(want), "%s:3: syntax error: ", conf_path);
    assert_int_equal(strncmp(lines[0], want, strlen(want)), 0);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct fc_config *cfg = (struct fc_config *)0x1;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    assert_int_equal(fc_config_load(path, &cfg), FC_EINVAL);
    assert_null(cfg);
    assert_int_equal(n_lines, 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(ENOENT));
    assert_string_equal(lines[0], want);
}

static void test_directory_is_not_a_file(void **state)
{
    (void)state;
    struct fc_config *cfg = (struct fc_config *)0x1;
    assert_int_equal(fc_config_load(tmpdir, &cfg), FC_EINVAL);
    assert_null(cfg);
    assert_int_equal(n_lines, 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s: cannot read: %s", tmpdir, strerror(EISDIR));
    assert_string_equal(lines[0], want);
}

static void test_unknown_top_level_key(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof(text), "%sworkerz = 2;\n", minimal);
    assert_fails(text, 1);
    assert_error(5, "workerz", "unknown key");
}

static void test_unknown_pool_key(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = ( { name = \"web\";\n"
        "            strategy = { plugin = \"round_robin\"; };\n"
        "            retry = 2;\n"
        "            backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n";
    assert_fails(text, 1);
    assert_error(4, "pool \"web\": retry", "unknown key");
}

/* Unknown keys in every checked group, all reported in one load. */
static void test_defer_accept_is_a_boolean(void **state)
{
    (void)state;
    const char *text =
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; defer_accept = 1; } );\n"
        "pools = ( { name = \"web\"; strategy = { plugin = \"round_robin\"; };\n"
        "            backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n";
    assert_fails(text, 1);
    assert_error(1, "listeners[0].defer_accept", "expected true or false");
}

static void test_unknown_keys_everywhere(void **state)
{
    (void)state;
    static const char text[] =
        "log = { level = \"info\"; acess = \"off\"; };\n"
        "timeouts = { idle = 5; };\n"
        "limits = { max_headers = 5; };\n"
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; port = 1; } );\n"
        "routes = ( { host = \"a\"; pool = \"web\"; hots = \"b\"; } );\n"
        "pools = ( { name = \"web\";\n"
        "            strategy = { plugin = \"round_robin\"; anything = 1; };\n"
        "            backends = ( { address = \"127.0.0.1:9001\"; wieght = 2; } ); } );\n";
    assert_fails(text, 6);
    assert_error(1, "log.acess", "unknown key");
    assert_error(2, "timeouts.idle", "unknown key");
    assert_error(3, "limits.max_headers", "unknown key");
    assert_error(4, "listeners[0].port", "unknown key");
    assert_error(5, "routes[0].hots", "unknown key");
    assert_error(8, "pool \"web\": backends[0].wieght", "unknown key");
}

static void test_wrong_types(void **state)
{
    (void)state;
    static const char text[] =
        "workers = \"two\";\n"
        "plugin_dir = 3;\n"
        "log = \"info\";\n"
        "timeouts = { idle_ms = 1.5; connect_ms = true; };\n"
        "limits = { max_body_bytes = \"1G\"; };\n"
        "listeners = ( { address = 8080; pool = \"web\"; } );\n"
        "routes = { host = \"x\"; };\n"
        "pools = ( { name = \"web\";\n"
        "            strategy = \"round_robin\";\n"
        "            health = { plugin = 1; };\n"
        "            retries = \"1\";\n"
        "            backends = ( { address = \"127.0.0.1:9001\"; weight = 1.0; },\n"
        "                         \"127.0.0.1:9002\" ); } );\n";
    assert_fails(text, 13);
    assert_error(1, "workers", "expected an integer");
    assert_error(2, "plugin_dir", "expected a string");
    assert_error(3, "log", "expected a group");
    assert_error(4, "timeouts.idle_ms", "expected an integer");
    assert_error(4, "timeouts.connect_ms", "expected an integer");
    assert_error(5, "limits.max_body_bytes", "expected an integer");
    assert_error(6, "listeners[0].address", "expected a string");
    assert_error(7, "routes", "expected a list");
    assert_error(9, "pool \"web\": strategy", "expected a group");
    assert_error(10, "pool \"web\": health.plugin", "expected a string");
    assert_error(11, "pool \"web\": retries", "expected an integer");
    assert_error(12, "pool \"web\": backends[0].weight", "expected an integer");
    assert_error(13, "pool \"web\": backends[1]", "expected a group");
}

static void test_listener_unknown_pool(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = (\n"
        "  { address = \"127.0.0.1:8080\"; pool = \"web\"; },\n"
        "  { address = \"127.0.0.1:8081\";\n"
        "    pool = \"nope\"; }\n"
        ");\n"
        "pools = ( { name = \"web\";\n"
        "            strategy = { plugin = \"round_robin\"; };\n"
        "            backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n";
    assert_fails(text, 1);
    assert_error(4, "listeners[1].pool", "unknown pool \"nope\"");
}

static void test_listener_missing_keys(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = (\n"
        "  { }\n"
        ");\n"
        "pools = ( { name = \"web\";\n"
        "            strategy = { plugin = \"round_robin\"; };\n"
        "            backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n";
    assert_fails(text, 2);
    assert_error(2, "listeners[0].address", "missing required key");
    assert_error(2, "listeners[0].pool", "missing required key");
}

static void test_duplicate_listener(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = (\n"
        "  { address = \"127.0.0.1:8080\"; pool = \"web\"; },\n"
        "  { address = \"127.0.0.1:8080\"; pool = \"web\"; }\n"
        ");\n"
        "pools = ( { name = \"web\";\n"
        "            strategy = { plugin = \"round_robin\"; };\n"
        "            backends = ( { address = \"127.0.0.1:9001\"; } ); } );\n";
    assert_fails(text, 1);
    assert_error(3, "listeners[1].address",
                 "duplicate listener address (same as listeners[0] on line 2)");
}

static void test_route_errors(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof(text),
             "%sroutes = (\n"
             "  { host = \"a.example\"; pool = \"api\"; },\n"
             "  { pool = \"web\"; },\n"
             "  { path_prefix = \"v1/\"; pool = \"web\"; },\n"
             "  { host = \"\"; path_prefix = \"/\"; pool = \"web\"; },\n"
             "  { host = \"b.example\"; }\n"
             ");\n",
             minimal);
    assert_fails(text, 5);
    assert_error(6, "routes[0].pool", "unknown pool \"api\"");
    assert_error(7, "routes[1]", "needs host, path_prefix or both");
    assert_error(8, "routes[2].path_prefix", "must start with '/' (got \"v1/\")");
    assert_error(9, "routes[3].host", "must not be empty");
    assert_error(10, "routes[4].pool", "missing required key");
}

static void test_duplicate_pool_name(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = (\n"
        "  { name = \"web\";\n"
        "    strategy = { plugin = \"round_robin\"; };\n"
        "    backends = ( { address = \"127.0.0.1:9001\"; } ); },\n"
        "  { name = \"web\";\n"
        "    strategy = { plugin = \"round_robin\"; };\n"
        "    backends = ( { address = \"127.0.0.1:9002\"; weight = 0; } ); }\n"
        ");\n";
    assert_fails(text, 2);
    assert_error(6, "pools[1].name", "duplicate pool name \"web\" (first defined on line 3)");
    /* The duplicate's own errors are keyed by its index, not by the name it shares. */
    assert_error(8, "pools[1].backends[0].weight", "must be between 1 and 1000 (got 0)");
}

static void test_pool_name_errors(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = (\n"
        "  { name = \"web\";\n"
        "    strategy = { plugin = \"round_robin\"; };\n"
        "    backends = ( { address = \"127.0.0.1:9001\"; } ); },\n"
        "  { strategy = { plugin = \"round_robin\"; };\n"
        "    backends = ( { address = \"127.0.0.1:9002\"; } ); },\n"
        "  { name = \"\"; strategy = { plugin = \"round_robin\"; };\n"
        "    backends = ( { address = \"127.0.0.1:9002\"; } ); },\n"
        "  \"api\" );\n";
    assert_fails(text, 3);
    assert_error(6, "pools[1].name", "missing required key");
    assert_error(8, "pools[2].name", "must not be empty");
    assert_error(10, "pools[3]", "expected a group");
}

static void test_duplicate_backend(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = ( { name = \"web\";\n"
        "  strategy = { plugin = \"round_robin\"; };\n"
        "  backends = (\n"
        "    { address = \"127.0.0.1:9001\"; },\n"
        "    { address = \"127.0.0.1:9002\"; },\n"
        "    { address = \"127.0.0.1:9001\"; weight = 2; }\n"
        "  ); } );\n";
    assert_fails(text, 1);
    assert_error(7, "pool \"web\": backends[2].address",
                 "duplicate backend address (same as backends[0] on line 5)");
}

/* Service discovery's keys: what they read into, and what they refuse. */
static void test_dns_entries(void **state)
{
    (void)state;
    static const char text[] =
        "resolvers = ( \"127.0.0.1:8600\", \"::1\", \"10.0.0.2\" );\n"
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = ( { name = \"web\"; resolve_interval_ms = 250;\n"
        "  strategy = { plugin = \"round_robin\"; };\n"
        "  backends = (\n"
        "    { address = \"127.0.0.1:9001\"; },\n"
        "    { address = \"Web.Service.Consul.:8080\"; resolve = true; weight = 3; },\n"
        "    { address = \"srv:_http._tcp.api.service.consul\"; },\n"
        "    { address = \"127.0.0.1:9002\"; resolve = false; }\n"
        "  ); },\n"
        "  { name = \"api\"; strategy = { plugin = \"round_robin\"; };\n"
        "    backends = ( { address = \"127.0.0.1:9003\"; } ); } );\n";
    struct fc_config *cfg = NULL;
    assert_int_equal(load(text, &cfg), 0);
    assert_string_equal(cfg->resolvers, "127.0.0.1:8600,[::1]:53,10.0.0.2:53");
    const struct fc_conf_pool *web = &cfg->pools[0];
    assert_int_equal(web->resolve_interval_ms, 250);
    assert_int_equal(web->n_backends, 4);
    assert_int_equal(web->n_discover, 2);
    assert_int_equal(web->backends[0].discover, FC_DISCOVER_NONE);
    assert_int_equal(web->backends[1].discover, FC_DISCOVER_HOST);
    /* Compared as DNS compares names: lowercase, no final dot. */
    assert_string_equal(web->backends[1].dns_name, "web.service.consul");
    assert_int_equal(web->backends[1].port, 8080);
    assert_int_equal(web->backends[1].weight, 3);
    assert_string_equal(web->backends[1].address, "Web.Service.Consul.:8080");
    assert_int_equal(web->backends[2].discover, FC_DISCOVER_SRV);
    assert_string_equal(web->backends[2].dns_name, "_http._tcp.api.service.consul");
    assert_int_equal(web->backends[3].discover, FC_DISCOVER_NONE);
    assert_int_equal(port_of(&web->backends[3].addr), 9002);
    assert_int_equal(cfg->pools[1].resolve_interval_ms, 5000); /* the default */
    assert_int_equal(cfg->pools[1].n_discover, 0);
    fc_config_free(cfg);
}

static void test_dns_entry_errors(void **state)
{
    (void)state;
    static const char text[] =
        "resolvers = ( \"dns.example:53\" );\n"
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = ( { name = \"web\"; resolve_interval_ms = 10;\n"
        "  strategy = { plugin = \"round_robin\"; };\n"
        "  backends = (\n"
        "    { address = \"127.0.0.1:9001\"; resolve = true; },\n"
        "    { address = \"srv:_http._tcp.x\"; weight = 2; },\n"
        "    { address = \"srv:_http._tcp.y\"; resolve = false; },\n"
        "    { address = \"srv:bad name\"; },\n"
        "    { address = \"web.test\"; resolve = true; },\n"
        "    { address = \"web.test:80\"; resolve = \"yes\"; },\n"
        "    { address = \"web.test:80\"; resolve = true; },\n"
        "    { address = \"WEB.test:80\"; resolve = true; }\n"
        "  ); } );\n";
    assert_fails(text, 9);
    assert_error(1, "resolvers", "invalid DNS server \"dns.example:53\"");
    assert_error(3, "pool \"web\": resolve_interval_ms", "");
    assert_error(6, "pool \"web\": backends[0].resolve",
                 "\"127.0.0.1:9001\" is an IP address: `resolve = true` needs a host name");
    assert_error(7, "pool \"web\": backends[1].weight",
                 "the weights of an \"srv:\" address come from its SRV records");
    assert_error(8, "pool \"web\": backends[2].resolve", "an \"srv:\" address is always resolved");
    assert_error(9, "pool \"web\": backends[3].address", "invalid SRV name \"srv:bad name\"");
    assert_error(10, "pool \"web\": backends[4].address",
                 "invalid address \"web.test\": missing port");
    assert_error(11, "pool \"web\": backends[5].resolve", "expected true or false");
    assert_error(13, "pool \"web\": backends[7].address",
                 "duplicate backend address (same as backends[6] on line 12)");
}

static void test_pool_without_backends(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = (\n"
        "  { name = \"web\";\n"
        "    strategy = { plugin = \"round_robin\"; }; },\n"
        "  { name = \"api\";\n"
        "    strategy = { plugin = \"round_robin\"; };\n"
        "    backends = ( ); }\n"
        ");\n";
    assert_fails(text, 2);
    assert_error(3, "pool \"web\": backends", "missing required key");
    assert_error(7, "pool \"api\": backends", "at least one backend is required");
}

static void test_pool_without_strategy(void **state)
{
    (void)state;
    static const char text[] =
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = (\n"
        "  { name = \"web\";\n"
        "    backends = ( { address = \"127.0.0.1:9001\"; } ); },\n"
        "  { name = \"api\";\n"
        "    strategy = {\n"
        "      weights = 1; };\n"
        "    health = { plugin = \"\"; };\n"
        "    backends = ( { address = \"127.0.0.1:9001\"; } ); }\n"
        ");\n";
    assert_fails(text, 3);
    assert_error(3, "pool \"web\": strategy", "missing required key");
    assert_error(6, "pool \"api\": strategy.plugin", "missing required key");
    assert_error(8, "pool \"api\": health.plugin", "must not be empty");
}

static void test_invalid_backend_address(void **state)
{
    (void)state;
    static const char text[] = "listeners = ( { address = \"127.0.0.1\"; pool = \"web\"; } );\n"
                               "pools = ( { name = \"web\";\n"
                               "  strategy = { plugin = \"round_robin\"; };\n"
                               "  backends = (\n"
                               "    { address = \"127.0.0.1:99999\"; },\n"
                               "    { address = \"127.0.0.1:0\"; },\n"
                               "    { address = \"[::1:9001\"; },\n"
                               "    { address = \":9001\"; },\n"
                               "    { address = \"no-such-host.invalid:9001\"; },\n"
                               "    { weight = 1; }\n"
                               "  ); } );\n";
    assert_fails(text, 7);
    assert_error(1, "listeners[0].address", "invalid address \"127.0.0.1\": missing port");
    assert_error(5, "pool \"web\": backends[0].address",
                 "invalid address \"127.0.0.1:99999\": invalid port");
    assert_error(6, "pool \"web\": backends[1].address",
                 "invalid address \"127.0.0.1:0\": invalid port");
    assert_error(7, "pool \"web\": backends[2].address",
                 "invalid address \"[::1:9001\": missing ']'");
    assert_error(8, "pool \"web\": backends[3].address", "invalid address \":9001\": empty host");
    assert_error(9, "pool \"web\": backends[4].address",
                 "invalid address \"no-such-host.invalid:9001\": cannot resolve host");
    assert_error(10, "pool \"web\": backends[5].address", "missing required key");
}

static void test_out_of_range(void **state)
{
    (void)state;
    static const char text[] =
        "workers = 257;\n"
        "log = { level = \"verbose\"; };\n"
        "timeouts = { connect_ms = 0; upstream_ms = 86400001; };\n"
        "limits = { max_header_bytes = 1023; max_body_bytes = -1; };\n"
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"web\"; } );\n"
        "pools = ( { name = \"web\";\n"
        "  strategy = { plugin = \"round_robin\"; };\n"
        "  retries = 17;\n"
        "  backends = (\n"
        "    { address = \"127.0.0.1:9001\"; weight = 0; },\n"
        "    { address = \"127.0.0.1:9002\"; weight = 1001; }\n"
        "  ); } );\n";
    assert_fails(text, 9);
    assert_error(1, "workers", "must be between 0 and 256 (got 257)");
    assert_error(2, "log.level", "must be one of debug, info, warn, error (got \"verbose\")");
    assert_error(3, "timeouts.connect_ms", "must be between 1 and 86400000 (got 0)");
    assert_error(3, "timeouts.upstream_ms", "must be between 1 and 86400000 (got 86400001)");
    assert_error(4, "limits.max_header_bytes", "must be between 1024 and 1048576 (got 1023)");
    assert_error(4, "limits.max_body_bytes", "must be at least 0 (got -1)");
    assert_error(8, "pool \"web\": retries", "must be between 0 and 16 (got 17)");
    assert_error(10, "pool \"web\": backends[0].weight", "must be between 1 and 1000 (got 0)");
    assert_error(11, "pool \"web\": backends[1].weight", "must be between 1 and 1000 (got 1001)");
}

static void test_missing_sections(void **state)
{
    (void)state;
    /* A missing top-level key has no group line of its own: it is reported at line 1. */
    assert_fails("workers = 1;\n", 2);
    assert_error(1, "listeners", "missing required key");
    assert_error(1, "pools", "missing required key");

    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    n_lines = 0;
    assert_fails("workers = 1;\nlisteners = ( );\npools = ( );\n", 2);
    assert_error(2, "listeners", "at least one listener is required");
    assert_error(3, "pools", "at least one pool is required");
}

/* Every error of a file comes out of one load, each on its own line. */
static void test_several_errors_in_one_load(void **state)
{
    (void)state;
    static const char text[] =
        "colour = \"blue\";\n"                                                       /* 1 */
        "listeners = ( { address = \"127.0.0.1:8080\"; pool = \"nope\"; } );\n"      /* 2 */
        "routes = ( { pool = \"web\"; } );\n"                                        /* 3 */
        "pools = ( { name = \"web\";\n"                                              /* 4 */
        "  backends = ( { address = \"127.0.0.1:http\"; weight = 5000; } ); } );\n"; /* 5 */
    assert_fails(text, 6);
    assert_error(1, "colour", "unknown key");
    assert_error(2, "listeners[0].pool", "unknown pool \"nope\"");
    assert_error(3, "routes[0]", "needs host, path_prefix or both");
    assert_error(4, "pool \"web\": strategy", "missing required key");
    assert_error(5, "pool \"web\": backends[0].weight", "must be between 1 and 1000 (got 5000)");
    assert_error(5, "pool \"web\": backends[0].address",
                 "invalid address \"127.0.0.1:http\": invalid port");
}

/* ------------------------------------------------------------------------ */
/* fc_config_parse_address                                                  */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* The admin group                                                           */
/* ------------------------------------------------------------------------ */

/* Forgets the lines logged so far, for the next load of a test. */
static void clear_lines(void)
{
    for (int i = 0; i < n_lines; i++)
        free(lines[i]);
    n_lines = 0;
}

/* minimal with `extra` (an admin group) after it. */
static char *with_admin(const char *extra)
{
    static char buf[4096];
    int n = snprintf(buf, sizeof(buf), "%s%s", minimal, extra);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return buf;
}

static void test_admin_absent(void **state)
{
    (void)state;
    struct fc_config *cfg = NULL;
    assert_int_equal(load(minimal, &cfg), 0);
    assert_int_equal(cfg->has_admin, 0);
    assert_null(cfg->admin.address);
    assert_null(cfg->admin.token);
    fc_config_free(cfg);
}

static void test_admin_loopback_without_token(void **state)
{
    (void)state;
    const char *text = with_admin("admin = {\n  address = \"127.0.0.1:9901\";\n};\n");
    struct fc_config *cfg = NULL;
    assert_int_equal(load(text, &cfg), 0);
    assert_int_equal(n_lines, 0);
    assert_int_equal(cfg->has_admin, 1);
    assert_string_equal(cfg->admin.address, "127.0.0.1:9901");
    assert_ipv4(&cfg->admin.addr, cfg->admin.addr_len, "127.0.0.1", 9901);
    assert_null(cfg->admin.unix_path);
    assert_null(cfg->admin.token);
    assert_null(cfg->admin.token_file);
    assert_int_equal(cfg->admin.line, line_of(text, "address = \"127.0.0.1:9901"));
    assert_int_equal(cfg->admin.token_line, 0);
    fc_config_free(cfg);

    /* All of 127.0.0.0/8 and ::1 are loopback. */
    assert_int_equal(load(with_admin("admin = { address = \"127.3.4.5:9901\"; };\n"), &cfg), 0);
    fc_config_free(cfg);
    assert_int_equal(load(with_admin("admin = { address = \"[::1]:9901\"; };\n"), &cfg), 0);
    assert_int_equal(cfg->admin.addr.ss_family, AF_INET6);
    assert_int_equal(port_of(&cfg->admin.addr), 9901);
    fc_config_free(cfg);
    assert_int_equal(n_lines, 0);
}

static void test_admin_token_file(void **state)
{
    (void)state;
    /* Relative to the file's folder; surrounding whitespace and the newline go. */
    write_file("admin.token", "  s3cr3t-T0ken_~+/=\r\n\n");
    const char *text = with_admin("admin = {\n"
                                  "  address = \"0.0.0.0:9901\";\n"
                                  "  token_file = \"admin.token\";\n"
                                  "};\n");
    struct fc_config *cfg = NULL;
    assert_int_equal(load(text, &cfg), 0);
    assert_int_equal(n_lines, 0);
    assert_string_equal(cfg->admin.token, "s3cr3t-T0ken_~+/=");
    assert_string_equal(cfg->admin.token_file, in_dir("admin.token"));
    assert_int_equal(cfg->admin.token_line, line_of(text, "token_file"));
    assert_ipv4(&cfg->admin.addr, cfg->admin.addr_len, "0.0.0.0", 9901);
    fc_config_free(cfg);

    /* An absolute path is taken as it is. */
    char abs_text[1024];
    snprintf(abs_text, sizeof(abs_text),
             "admin = { address = \"127.0.0.1:9901\"; token_file = \"%s\"; };\n",
             in_dir("admin.token"));
    assert_int_equal(load(with_admin(abs_text), &cfg), 0);
    assert_string_equal(cfg->admin.token, "s3cr3t-T0ken_~+/=");
    fc_config_free(cfg);
}

static void test_admin_unix_socket(void **state)
{
    (void)state;
    struct fc_config *cfg = NULL;
    /* A unix socket needs no token; a relative path is resolved like every other. */
    assert_int_equal(load(with_admin("admin = { address = \"unix:run/admin.sock\"; };\n"), &cfg),
                     0);
    assert_int_equal(n_lines, 0);
    assert_string_equal(cfg->admin.address, "unix:run/admin.sock");
    assert_string_equal(cfg->admin.unix_path, in_dir("run/admin.sock"));
    assert_int_equal(cfg->admin.addr_len, 0);
    fc_config_free(cfg);

    assert_int_equal(
        load(with_admin("admin = { address = \"unix:/run/fc/admin.sock\"; };\n"), &cfg), 0);
    assert_string_equal(cfg->admin.unix_path, "/run/fc/admin.sock");
    fc_config_free(cfg);
}

static void test_admin_non_loopback_needs_token(void **state)
{
    (void)state;
    const char *text = with_admin("admin = {\n"
                                  "  address = \"0.0.0.0:9901\";\n"
                                  "};\n");
    assert_fails(text, 1);
    assert_error(line_of(text, "address = \"0.0.0.0"), "admin.address",
                 "a non-loopback admin address needs admin.token_file");

    clear_lines();
    text = with_admin("admin = { address = \"[::]:9901\"; };\n");
    assert_fails(text, 1);
    assert_error(line_of(text, "admin ="), "admin.address",
                 "a non-loopback admin address needs admin.token_file");
}

static void test_admin_token_file_errors(void **state)
{
    (void)state;
    /* Missing. */
    const char *text = with_admin("admin = {\n"
                                  "  address = \"127.0.0.1:9901\";\n"
                                  "  token_file = \"nope.token\";\n"
                                  "};\n");
    assert_fails(text, 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "cannot read \"%s\": No such file or directory",
             in_dir("nope.token"));
    assert_error(line_of(text, "token_file"), "admin.token_file", want);

    /* Empty, or only whitespace. */
    clear_lines();
    write_file("empty.token", " \n\t\n");
    text = with_admin("admin = { address = \"127.0.0.1:9901\";\n"
                      "          token_file = \"empty.token\"; };\n");
    assert_fails(text, 1);
    snprintf(want, sizeof(want), "\"%s\" is empty", in_dir("empty.token"));
    assert_error(line_of(text, "token_file"), "admin.token_file", want);

    /* A folder. */
    clear_lines();
    assert_int_equal(mkdir(in_dir("tokens"), 0700), 0);
    text = with_admin("admin = { address = \"127.0.0.1:9901\"; token_file = \"tokens\"; };\n");
    assert_fails(text, 1);
    snprintf(want, sizeof(want), "\"%s\" is not a regular file", in_dir("tokens"));
    assert_error(line_of(text, "token_file"), "admin.token_file", want);

    /* Two words: no client could send that as one bearer token. */
    clear_lines();
    write_file("two.token", "two words\n");
    text = with_admin("admin = { address = \"127.0.0.1:9901\"; token_file = \"two.token\"; };\n");
    assert_fails(text, 1);
    snprintf(want, sizeof(want), "\"%s\": the token must be one word of visible ASCII characters",
             in_dir("two.token"));
    assert_error(line_of(text, "token_file"), "admin.token_file", want);

    /* Too long. */
    clear_lines();
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_file("big.token", big);
    text = with_admin("admin = { address = \"127.0.0.1:9901\"; token_file = \"big.token\"; };\n");
    assert_fails(text, 1);
    snprintf(want, sizeof(want), "\"%s\" is longer than 4096 bytes", in_dir("big.token"));
    assert_error(line_of(text, "token_file"), "admin.token_file", want);

    /* Unreadable (root reads anything: only checked as another user). */
    if (geteuid() != 0) {
        clear_lines();
        write_file("locked.token", "secret\n");
        assert_int_equal(chmod(in_dir("locked.token"), 0), 0);
        text = with_admin(
            "admin = { address = \"127.0.0.1:9901\"; token_file = \"locked.token\"; };\n");
        assert_fails(text, 1);
        snprintf(want, sizeof(want), "cannot read \"%s\": Permission denied",
                 in_dir("locked.token"));
        assert_error(line_of(text, "token_file"), "admin.token_file", want);
    }
}

static void test_admin_errors(void **state)
{
    (void)state;
    /* Unknown keys, a missing address, a wrong type. */
    const char *text = with_admin("admin = {\n"
                                  "  adress = \"127.0.0.1:9901\";\n"
                                  "  token = \"inline\";\n"
                                  "};\n");
    assert_fails(text, 3);
    assert_error(line_of(text, "adress"), "admin.adress", "unknown key");
    assert_error(line_of(text, "token ="), "admin.token", "unknown key");
    assert_error(line_of(text, "admin ="), "admin.address", "missing required key");

    clear_lines();
    text = with_admin("admin = \"127.0.0.1:9901\";\n");
    assert_fails(text, 1);
    assert_error(line_of(text, "admin ="), "admin", "expected a group ({ ... })");

    clear_lines();
    text = with_admin("admin = { address = 9901; };\n");
    assert_fails(text, 1);
    assert_error(line_of(text, "admin ="), "admin.address", "expected a string");

    /* Invalid addresses. */
    clear_lines();
    text = with_admin("admin = { address = \"127.0.0.1\"; };\n");
    assert_fails(text, 1);
    assert_error(line_of(text, "admin ="), "admin.address",
                 "invalid address \"127.0.0.1\": missing port");

    clear_lines();
    text = with_admin("admin = { address = \"unix:\"; };\n");
    assert_fails(text, 1);
    assert_error(line_of(text, "admin ="), "admin.address",
                 "invalid address \"unix:\": expected a path after \"unix:\"");

    clear_lines();
    char long_text[512];
    char path[200];
    memset(path, 'p', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    snprintf(long_text, sizeof(long_text), "admin = { address = \"unix:%s\"; };\n", path);
    text = with_admin(long_text);
    assert_fails(text, 1);
    char want[512];
    snprintf(want, sizeof(want),
             "invalid address \"unix:%s\": the socket's path \"%s\" is longer than 107 bytes", path,
             path);
    assert_error(line_of(text, "admin ="), "admin.address", want);

    /* The address of a listener. */
    clear_lines();
    text = with_admin("admin = { address = \"127.0.0.1:8080\"; };\n");
    assert_fails(text, 1);
    assert_error(line_of(text, "admin ="), "admin.address",
                 "the same address as listeners[0] on line 1");
}

static void test_parse_address_valid(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const char *why = NULL;

    assert_int_equal(fc_config_parse_address("10.1.2.3:80", &ss, &len, &why), 0);
    assert_ipv4(&ss, len, "10.1.2.3", 80);
    assert_int_equal(fc_config_parse_address("0.0.0.0:65535", &ss, &len, &why), 0);
    assert_ipv4(&ss, len, "0.0.0.0", 65535);

    assert_int_equal(fc_config_parse_address("[2001:db8::1]:443", &ss, &len, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, sizeof(buf));
    assert_string_equal(buf, "2001:db8::1");
    assert_int_equal(port_of(&ss), 443);

    assert_int_equal(fc_config_parse_address("localhost:8080", &ss, &len, &why), 0);
    assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
    assert_int_equal(port_of(&ss), 8080);
}

static void check_invalid(const char *text, const char *reason)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const char *why = NULL;
    assert_int_equal(fc_config_parse_address(text, &ss, &len, &why), FC_EINVAL);
    assert_non_null(why);
    if (strcmp(why, reason) != 0) {
        print_message("\"%s\": expected \"%s\", got \"%s\"\n", text, reason, why);
        fail();
    }
}

static void test_parse_address_invalid(void **state)
{
    (void)state;
    check_invalid("", "empty address");
    check_invalid("127.0.0.1", "missing port");
    check_invalid("127.0.0.1:", "missing port");
    check_invalid("[::1]", "missing port");
    check_invalid("[::1]:", "missing port");
    check_invalid("127.0.0.1:0", "invalid port");
    check_invalid("127.0.0.1:65536", "invalid port");
    check_invalid("127.0.0.1:8o", "invalid port");
    check_invalid("127.0.0.1:-1", "invalid port");
    check_invalid("127.0.0.1:+80", "invalid port");
    check_invalid("127.0.0.1: 80", "invalid port");
    check_invalid("127.0.0.1:123456", "invalid port");
    check_invalid(":80", "empty host");
    check_invalid("[]:80", "empty host");
    check_invalid("[::1:80", "missing ']'");
    check_invalid("[::1]80", "expected ':' after ']'");
    check_invalid("::1:80", "IPv6 address needs brackets, as in [::1]:80");
    check_invalid("[1.2.3.4]:80", "invalid IPv6 address");
    check_invalid("[example.com]:80", "invalid IPv6 address");
    check_invalid("host]:80", "unexpected bracket");
    /* The name's lookup fails through c-ares, with its reason after the name. */
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const char *why = NULL;
    assert_int_equal(fc_config_parse_address("no-such-host.invalid:80", &ss, &len, &why),
                     FC_EINVAL);
    static const char prefix[] = "cannot resolve host \"no-such-host.invalid\": ";
    assert_non_null(why);
    assert_int_equal(strncmp(why, prefix, sizeof(prefix) - 1), 0);
    assert_true(strlen(why) > sizeof(prefix) - 1);
}

static void test_free_null(void **state)
{
    (void)state;
    fc_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_off_and_explicit_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_config_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_folder_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_is_not_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_top_level_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_pool_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_accept_is_a_boolean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_unknown_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_missing_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_listener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_pool_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_name_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_entry_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_without_backends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_without_strategy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_backend_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_errors_in_one_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_loopback_without_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_token_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_non_loopback_needs_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_token_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_errors, setup, teardown),
        cmocka_unit_test(test_parse_address_valid),
        cmocka_unit_test(test_parse_address_invalid),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
