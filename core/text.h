/*
 * A growing text: the bodies the admin listener answers and what the metrics
 * and the status are rendered into. Main thread (any thread that owns it).
 */
#ifndef FC_TEXT_H
#define FC_TEXT_H

#include <stdarg.h>
#include <stddef.h>

/** Empty when zeroed. `oom` once an append failed: the text is then incomplete. */
struct fc_text {
    char *p;
    size_t len, cap;
    int oom;
};

void fc_text_append(struct fc_text *t, const char *data, size_t len);
void fc_text_printf(struct fc_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fc_text_vprintf(struct fc_text *t, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/** Frees the memory; t is empty (and no longer oom) after it. */
void fc_text_free(struct fc_text *t);

#endif
