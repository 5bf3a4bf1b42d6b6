/*
 * What the fuzz targets share: llhttp (strict) callbacks that record a head
 * with the head functions of http_rewrite.c, as txn_parser.c does for the
 * proxy, pausing at the end of the head. Included by one target each;
 * everything is static.
 */
#ifndef FC_FUZZ_HEAD_PARSER_H
#define FC_FUZZ_HEAD_PARSER_H

#include "http_rewrite.h"

#include <llhttp.h>
#include <stddef.h>

static struct fc_request head;
static int head_done;

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    fc_head_on_span(&head.method, at, len);
    return 0;
}
static int on_url(llhttp_t *p, const char *at, size_t len)
{
    fc_head_on_span(&head.target, at, len);
    return 0;
}
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

/* A parser of `type` whose callbacks record into `head`, which starts empty. */
static void head_parser_init(llhttp_t *p, llhttp_settings_t *s, llhttp_type_t type)
{
    llhttp_settings_init(s);
    s->on_method = on_method;
    s->on_url = on_url;
    s->on_status = on_status;
    s->on_header_field = on_field;
    s->on_header_value = on_value;
    s->on_header_value_complete = on_value_complete;
    s->on_headers_complete = on_headers_complete;
    llhttp_init(p, type, s);
    fc_head_reset(&head);
    head_done = 0;
}

#endif
