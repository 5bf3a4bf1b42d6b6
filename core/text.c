/*
 * A growing text; see text.h. The buffer doubles, from 256 bytes.
 */
#include "text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct fc_text *t, size_t more)
{
    if (t->oom)
        return -1;
    if (t->len + more <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 256;
    while (cap < t->len + more)
        cap *= 2;
    char *p = realloc(t->p, cap);
    if (p == NULL) {
        t->oom = 1;
        return -1;
    }
    t->p = p;
    t->cap = cap;
    return 0;
}

void fc_text_append(struct fc_text *t, const char *data, size_t len)
{
    if (len == 0 || reserve(t, len) != 0)
        return;
    memcpy(t->p + t->len, data, len);
    t->len += len;
}

void fc_text_vprintf(struct fc_text *t, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n < 0)
        t->oom = 1;
    else if (n > 0 && reserve(t, (size_t)n + 1) == 0) {
        vsnprintf(t->p + t->len, (size_t)n + 1, fmt, again);
        t->len += (size_t)n;
    }
    va_end(again);
}

void fc_text_printf(struct fc_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fc_text_vprintf(t, fmt, ap);
    va_end(ap);
}

void fc_text_free(struct fc_text *t)
{
    free(t->p);
    t->p = NULL;
    t->len = t->cap = 0;
    t->oom = 0;
}
