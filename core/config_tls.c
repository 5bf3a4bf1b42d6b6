/*
 * The `tls` groups of the configuration: a listener's (its certificates and
 * protocol settings) and a pool's (how fulcrum speaks TLS to its backends).
 * Both are read, and their TLS contexts built (tls_context.h), while the file
 * loads, so that a certificate that cannot be used is a configuration error
 * naming its file, seen by `fulcrum -t` and refused by a reload.
 */
#include "config_reader.h"

#include "log.h"
#include "tls_context.h"

#include <fulcrum/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * `alpn`: a list of protocol names into wire format (each prefixed with its
 * length). Only HTTP/1.1 is spoken, so only "http/1.1" may be offered.
 */
static void get_alpn(struct fc_cfg_loader *ld, const config_setting_t *g, const char *prefix,
                     unsigned char *out, size_t cap, size_t *len)
{
    static const char proto[] = "http/1.1";
    const config_setting_t *list;
    *len = 0;
    int got = fc_cfg_get_list(ld, g, prefix, "alpn", "expected a list of protocol names", &list);
    if (got == FC_CFG_INVALID)
        return;
    if (got == FC_CFG_ABSENT) {
        out[0] = (unsigned char)(sizeof(proto) - 1);
        memcpy(out + 1, proto, sizeof(proto) - 1);
        *len = sizeof(proto);
        return;
    }
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *v =
            config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
        if (v == NULL || strcmp(v, proto) != 0) {
            fc_cfg_report(ld, list, fc_cfg_line(list), prefix, "alpn",
                          "only \"http/1.1\" can be offered (HTTP/2 is not spoken yet)");
            return;
        }
        if (*len + sizeof(proto) > cap)
            continue; /* the same protocol twice: offered once */
        if (*len == 0) {
            out[0] = (unsigned char)(sizeof(proto) - 1);
            memcpy(out + 1, proto, sizeof(proto) - 1);
            *len = sizeof(proto);
        }
    }
    if (*len == 0)
        fc_cfg_report(ld, list, fc_cfg_line(list), prefix, "alpn", "must not be empty");
}

/* A file setting, resolved against the config's folder; NULL when absent or invalid. */
static char *get_path(struct fc_cfg_loader *ld, const config_setting_t *g, const char *prefix,
                      const char *name, int required)
{
    const char *v;
    if (fc_cfg_get_string(ld, g, prefix, name, required, &v) != FC_CFG_GOT)
        return NULL;
    return fc_cfg_resolve_path(ld, v);
}

void fc_cfg_load_listener_tls(struct fc_cfg_loader *ld, const config_setting_t *listener,
                              const char *lprefix, const char *address, struct fc_tls_server **out)
{
    static const char *const keys[] = {"certificates", "min_version",     "ciphers", "ciphersuites",
                                       "alpn",         "session_tickets", NULL};
    static const char *const cert_keys[] = {"cert", "key", NULL};
    *out = NULL;
    const config_setting_t *g;
    if (fc_cfg_get_compound(ld, listener, lprefix, "tls", CONFIG_TYPE_GROUP, 0, &g) != FC_CFG_GOT)
        return;
    char prefix[96];
    snprintf(prefix, sizeof(prefix), "%stls.", lprefix);
    fc_cfg_check_keys(ld, g, prefix, keys);

    unsigned errors = ld->errors;
    struct fc_tls_server_settings s = {.min_version = 0, .session_tickets = 1, .id = address};
    const char *v;
    s.min_version = fc_tls_parse_version("TLSv1.2");
    if (fc_cfg_get_string(ld, g, prefix, "min_version", 0, &v) == FC_CFG_GOT) {
        int version = fc_tls_parse_version(v);
        if (version == 0) {
            const config_setting_t *m = config_setting_get_member(g, "min_version");
            fc_cfg_report(ld, m, fc_cfg_line(m), prefix, "min_version",
                          "\"%s\": expected \"TLSv1.2\" or \"TLSv1.3\"", v);
        } else {
            s.min_version = version;
        }
    }
    fc_cfg_get_string(ld, g, prefix, "ciphers", 0, &s.ciphers);
    fc_cfg_get_string(ld, g, prefix, "ciphersuites", 0, &s.ciphersuites);
    unsigned char alpn[16];
    get_alpn(ld, g, prefix, alpn, sizeof(alpn), &s.alpn_len);
    s.alpn = alpn;
    fc_cfg_get_bool(ld, g, prefix, "session_tickets", &s.session_tickets);

    const config_setting_t *certs;
    if (fc_cfg_get_compound(ld, g, prefix, "certificates", CONFIG_TYPE_LIST, 1, &certs) !=
        FC_CFG_GOT)
        return;
    unsigned n = (unsigned)config_setting_length(certs);
    if (n == 0) {
        fc_cfg_report(ld, certs, fc_cfg_line(certs), prefix, "certificates",
                      "at least one certificate is required");
        return;
    }
    if (ld->errors != errors)
        return; /* settings that cannot build a context: the certificates wait for a fix */

    char why[FC_TLS_WHY];
    const char *bad;
    struct fc_tls_server *srv = fc_tls_server_new(&s, why, sizeof(why), &bad);
    if (srv == NULL) {
        const config_setting_t *at = config_setting_get_member(g, bad);
        fc_cfg_report(ld, at ? at : g, fc_cfg_line(at ? at : g), prefix, bad, "%s", why);
        return;
    }
    char key[128];
    snprintf(key, sizeof(key), "%scertificates", prefix);
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *cg = fc_cfg_list_group(ld, certs, i, key);
        if (cg == NULL)
            continue;
        char cprefix[128];
        snprintf(cprefix, sizeof(cprefix), "%scertificates[%u].", prefix, i);
        fc_cfg_check_keys(ld, cg, cprefix, cert_keys);
        char *cert = get_path(ld, cg, cprefix, "cert", 1);
        char *keyf = get_path(ld, cg, cprefix, "key", 1);
        if (cert != NULL && keyf != NULL) {
            char warn[FC_TLS_WHY];
            int rc = fc_tls_server_add(srv, cert, keyf, why, sizeof(why), &bad, warn, sizeof(warn));
            if (rc == FC_ENOMEM) {
                ld->nomem = 1;
            } else if (rc != 0) {
                const config_setting_t *at = config_setting_get_member(cg, bad);
                fc_cfg_report(ld, at, fc_cfg_line(at), cprefix, bad, "%s", why);
            } else if (warn[0] != '\0') {
                const config_setting_t *at = config_setting_get_member(cg, "cert");
                fc_log_warn("%s:%d: %scert: %s", ld->cfg->path, fc_cfg_line(at), cprefix, warn);
            }
        }
        free(cert);
        free(keyf);
    }
    if (ld->errors != errors || ld->nomem) {
        fc_tls_server_free(srv);
        return;
    }
    *out = srv;
}

void fc_cfg_load_pool_tls(struct fc_cfg_loader *ld, const config_setting_t *pool,
                          const char *pprefix, struct fc_tls_client **out)
{
    static const char *const keys[] = {"verify", "ca", "server_name", NULL};
    *out = NULL;
    const config_setting_t *g;
    if (fc_cfg_get_compound(ld, pool, pprefix, "tls", CONFIG_TYPE_GROUP, 0, &g) != FC_CFG_GOT)
        return;
    char prefix[320];
    snprintf(prefix, sizeof(prefix), "%stls.", pprefix);
    fc_cfg_check_keys(ld, g, prefix, keys);
    unsigned errors = ld->errors;
    struct fc_tls_client_settings s = {.verify = 1};
    fc_cfg_get_bool(ld, g, prefix, "verify", &s.verify);
    fc_cfg_get_string(ld, g, prefix, "server_name", 0, &s.server_name);
    char *ca = get_path(ld, g, prefix, "ca", 0);
    s.ca_file = ca;
    if (ld->errors == errors && !ld->nomem) {
        char why[FC_TLS_WHY];
        const char *bad;
        *out = fc_tls_client_new(&s, why, sizeof(why), &bad);
        if (*out == NULL) {
            const config_setting_t *at = config_setting_get_member(g, bad);
            fc_cfg_report(ld, at ? at : g, fc_cfg_line(at ? at : g), prefix, bad, "%s", why);
        }
    }
    free(ca);
}
