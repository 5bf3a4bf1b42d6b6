/*
 * libFuzzer target: the DNS answers that service discovery reads, on
 * arbitrary bytes: c-ares's SRV parser, which discovery.c trusts, and
 * fc_dns_srv_ttl(), which walks the same answer for the records' TTL.
 */
#include "dns.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65535)
        return 0; /* the largest DNS message */
    struct ares_srv_reply *srv = NULL;
    if (ares_parse_srv_reply(data, (int)size, &srv) == ARES_SUCCESS)
        ares_free_data(srv);
    int64_t ttl = fc_dns_srv_ttl(data, (int)size);
    if (ttl < -1 || ttl > UINT32_MAX)
        abort();
    return 0;
}
