/*
 * libFuzzer target: a request head as the proxy takes it. The input is parsed
 * with llhttp in strict mode, as txn_parser.c does (fed in two pieces split
 * where the first byte says, since heads arrive in pieces), recorded with the
 * head functions of http_rewrite.c, checked with fc_head_check_request(),
 * routed with fc_route_pool() over a few routes, and rewritten into the head
 * sent upstream. Any crash, sanitizer report or broken invariant is a finding.
 */
#include "config.h"
#include "head_parser.h"
#include "http_rewrite.h"
#include "route.h"

#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The head must stay in one buffer while it is parsed, as in the proxy. */
    char *buf = malloc(size);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    size_t len = size - 1, split = len ? data[0] % (len + 1) : 0;

    llhttp_settings_t s;
    llhttp_t p;
    head_parser_init(&p, &s, HTTP_REQUEST);
    enum llhttp_errno e = llhttp_execute(&p, buf, split);
    if (e == HPE_OK)
        e = llhttp_execute(&p, buf + split, len - split);
    if (e == HPE_PAUSED && head_done) {
        head.http_major = p.http_major;
        head.http_minor = p.http_minor;
        const char *why = NULL;
        int status =
            fc_head_check_request(&head, (p.flags & F_CHUNKED) != 0, p.content_length, 1000, &why);
        if (status != 0 && why == NULL)
            abort(); /* every refusal says why */
        if (status == 0) {
            static struct fc_conf_route routes[3] = {
                {.host = "admin.example", .pool = 1},
                {.path_prefix = "/login", .pool = 2},
                {.host = "::1", .path_prefix = "/v1/", .pool = 3},
            };
            struct fc_config cfg = {.routes = routes, .n_routes = 3};
            uint32_t pool =
                fc_route_pool(&cfg, 0, head.host.p, head.host.len, head.target.p, head.target.len);
            if (pool > 3)
                abort();
            struct fc_forward_info fw = {.client_ip = "192.0.2.7",
                                         .client_ip_len = 9,
                                         .proto = "http",
                                         .default_host = "127.0.0.1:9001",
                                         .default_host_len = 14};
            static char out[65536];
            int n = fc_rewrite_request(&head, &fw, out, sizeof(out));
            if (n > (int)sizeof(out))
                abort();
        }
    }
    free(buf);
    return 0;
}
