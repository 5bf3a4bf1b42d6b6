/*
 * Reading the parsed head of a request. The parser that fills struct
 * fc_request lives here too once written; fc_request_header() only reads.
 */
#include "http_request.h"

#include <string.h>
#include <strings.h>

const char *fc_request_header(const struct fc_request *req, const char *name, size_t *len)
{
    size_t n = strlen(name);
    uint32_t count = req->n_headers < FC_MAX_HEADERS ? req->n_headers : FC_MAX_HEADERS;

    /* Header names are case-insensitive (RFC 9110, 5.1); the first match wins. */
    for (uint32_t i = 0; i < count; i++) {
        const struct fc_header *h = &req->headers[i];
        if (h->name.len == n && strncasecmp(h->name.p, name, n) == 0) {
            *len = h->value.len;
            return h->value.p;
        }
    }
    return NULL;
}
