/*
 * libFuzzer target: a response head as the proxy takes it from a backend:
 * parsed with llhttp (strict), recorded with the head functions of
 * http_rewrite.c, and rewritten into the head sent to the client with the
 * Connection flags the first input byte picks.
 */
#include "http_rewrite.h"

#include <llhttp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct fc_request head;
static int head_done;

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    fc_head_on_span(&head.reason, at, len);
    return 0;
}
static int on_field(llhttp_t *p, const char *at, size_t len)
{
    return head_done ? 0 : fc_head_on_field(&head, at, len);
}
static int on_value(llhttp_t *p, const char *at, size_t len)
{
    return head_done ? 0 : fc_head_on_value(&head, at, len);
}
static int on_value_complete(llhttp_t *p)
{
    return head_done ? 0 : (fc_head_on_value_complete(&head) == 0 ? 0 : -1);
}
static int on_headers_complete(llhttp_t *p)
{
    head_done = 1;
    return HPE_PAUSED;
}

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
    llhttp_settings_init(&s);
    s.on_status = on_status;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    s.on_header_value_complete = on_value_complete;
    s.on_headers_complete = on_headers_complete;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    fc_head_reset(&head);
    head_done = 0;
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
