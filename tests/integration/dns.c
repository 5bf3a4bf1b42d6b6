/*
 * A DNS server for the tests of service discovery: dns_server.py (on
 * python3-dnslib) run as a child process, answering over UDP and TCP on one
 * port of 127.0.0.1 from a JSON zone file in the environment's directory.
 * A test changes the answers by rewriting the zone (it_dns_zone()), which the
 * server reads again when the file changes, and makes DNS fail by killing the
 * server. What the server was asked is in its stdout, one line per query.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FC_IT_DNS_SERVER
#error "FC_IT_DNS_SERVER (path of dns_server.py) must be defined by the build"
#endif

#define DNS_ZONE "dns-zone.json"

void it_dns_zone(struct it_env *env, const char *zone_json)
{
    /* A new file renamed over the old one: the server never reads half of it. */
    const char *tmp =
        it_write_file(env, it_strf(env, "%s.%u.tmp", DNS_ZONE, ++env->seq), zone_json);
    const char *path = it_path(env, DNS_ZONE);
    if (rename(tmp, path) != 0)
        it_fail("rename %s to %s: %s", tmp, path, strerror(errno));
}

int it_dns_start(struct it_env *env, const char *zone_json, struct it_proc **proc_out)
{
    it_dns_zone(env, zone_json);
    const char *port_file = it_path(env, it_strf(env, "dns-port-%u", ++env->seq));
    const char *const argv[] = {"/usr/bin/python3", FC_IT_DNS_SERVER, it_path(env, DNS_ZONE),
                                port_file, NULL};
    struct it_proc *proc = it_spawn(env, "dns_server", argv);

    /* The server writes the port file (renamed into place) once UDP and TCP listen. */
    int64_t deadline = it_now_ms() + IT_START_TIMEOUT_MS;
    for (;;) {
        char *text = it_read_file(port_file, 0, NULL);
        int port = text != NULL ? atoi(text) : 0;
        free(text);
        if (port > 0 && port <= 65535) {
            if (proc_out != NULL)
                *proc_out = proc;
            return port;
        }
        if (it_proc_poll(proc)) {
            it_proc_report(env, proc);
            it_fail("dns_server.py %s before it listened (is python3-dnslib installed?)",
                    it_describe_status(env, proc->status));
        }
        if (it_now_ms() >= deadline) {
            it_proc_report(env, proc);
            it_fail("dns_server.py wrote no port to %s within %d ms", port_file,
                    IT_START_TIMEOUT_MS);
        }
        it_sleep_ms(10);
    }
}

size_t it_dns_queries(struct it_env *env, const struct it_proc *proc, const char *name,
                      const char *type)
{
    size_t len = strlen(name);
    const char *dot = len > 0 && name[len - 1] == '.' ? "" : ".";
    const char *needle = type != NULL ? it_strf(env, "query %s%s %s -> ", name, dot, type)
                                      : it_strf(env, "query %s%s ", name, dot);
    return it_count(it_proc_stdout(env, proc), needle);
}
