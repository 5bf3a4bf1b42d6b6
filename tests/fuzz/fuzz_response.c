/*
 * libFuzzer target: a response head as the proxy takes it from a backend:
 * parsed with llhttp (strict), recorded with the head functions of
 * http_rewrite.c, and rewritten into the head sent to the client with the
 * Connection flags the first input byte picks.
 */
#include "head_parser.h"
#include "http_rewrite.h"

#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *buf = malloc(size);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    llhttp_settings_t s;
    llhttp_t p;
    head_parser_init(&p, &s, HTTP_RESPONSE);
    enum llhttp_errno e = llhttp_execute(&p, buf, size - 1);
    if (e == HPE_PAUSED && head_done) {
        head.status = p.status_code;
        head.http_major = p.http_major;
        head.http_minor = p.http_minor;
        static char out[32768];
        int n = fc_rewrite_response(&head, data[0] & 7u, out, sizeof(out));
        if (n > (int)sizeof(out))
            abort();
    }
    free(buf);
    return 0;
}
