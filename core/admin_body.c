/*
 * The bodies of the admin listener's responses: appending, formatting, and
 * the JSON of an error, with strings escaped so that any message (one that
 * quotes a client's path, say) stays valid JSON. See admin.h.
 */
#include "admin.h"

#include <jansson.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fc_admin_body_append(struct fc_admin_response *r, const char *data, size_t len)
{
    fc_text_append(&r->body, data, len);
}

void fc_admin_body_printf(struct fc_admin_response *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fc_text_vprintf(&r->body, fmt, ap);
    va_end(ap);
}

/* The length of the valid UTF-8 sequence of two to four bytes at p, or 0. */
static size_t utf8_sequence(const unsigned char *p)
{
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n;
    uint32_t cp;
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) /* the terminating NUL stops here too */
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void fc_admin_body_json_string(struct fc_admin_response *r, const char *s)
{
    fc_admin_body_append(r, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t n = *p >= 0x80 ? utf8_sequence(p) : 0;
        if (n > 0) {
            fc_admin_body_append(r, (const char *)p, n);
            p += n;
            continue;
        }
        unsigned char ch = *p++;
        if (ch == '"')
            fc_admin_body_append(r, "\\\"", 2);
        else if (ch == '\\')
            fc_admin_body_append(r, "\\\\", 2);
        else if (ch == '\n')
            fc_admin_body_append(r, "\\n", 2);
        else if (ch == '\r')
            fc_admin_body_append(r, "\\r", 2);
        else if (ch == '\t')
            fc_admin_body_append(r, "\\t", 2);
        else if (ch < 0x20 || ch == 0x7f)
            fc_text_printf(&r->body, "\\u%04x", ch);
        else if (ch >= 0x80)
            fc_admin_body_append(r, "\\ufffd", 6);
        else
            fc_admin_body_append(r, (const char *)&ch, 1);
    }
    fc_admin_body_append(r, "\"", 1);
}

void fc_admin_error(struct fc_admin_response *r, int status, const char *message)
{
    r->status = status;
    r->content_type = "application/json";
    r->body.len = 0;
    fc_admin_body_append(r, "{\"error\": ", 10);
    fc_admin_body_json_string(r, message);
    fc_admin_body_append(r, "}\n", 2);
}

void fc_admin_json(struct fc_admin_response *r, int status, json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL) {
        fc_admin_error(r, 500, "out of memory");
        return;
    }
    r->status = status;
    fc_admin_body_append(r, text, strlen(text));
    fc_admin_body_append(r, "\n", 1);
    free(text);
}

json_t *fc_admin_json_lines(const char *text)
{
    json_t *list = json_array();
    for (const char *line = text, *nl; list != NULL && *line && (nl = strchr(line, '\n')) != NULL;
         line = nl + 1)
        json_array_append_new(list, json_stringn(line, (size_t)(nl - line)));
    return list;
}
