/*
 * The dashboard's three routes; see dashboard.h. Each answer is a copy of a
 * file built into the binary (the admin listener owns and frees the bodies
 * it sends), with the security headers below.
 */
#include "dashboard.h"

#include "admin.h"

#include <errno.h>
#include <string.h>

static const char security_headers[] = "Content-Security-Policy: " FC_DASHBOARD_CSP "\r\n"
                                       "X-Frame-Options: DENY\r\n"
                                       "Referrer-Policy: no-referrer\r\n";

struct page {
    const char *path;
    const char *file; /* in core/dashboard/ */
    const char *content_type;
    const struct fc_embedded_file *found;
};

static struct page pages[] = {
    {"/", "index.html", "text/html; charset=utf-8", NULL},
    {"/dashboard.js", "app.js", "text/javascript; charset=utf-8", NULL},
    {"/dashboard.css", "app.css", "text/css; charset=utf-8", NULL},
};

static void page_get(void *arg, const struct fc_admin_request *req, struct fc_admin_response *resp)
{
    const struct page *p = arg;
    resp->status = 200;
    resp->content_type = p->content_type;
    resp->headers = security_headers;
    fc_admin_body_append(resp, (const char *)p->found->data, p->found->len);
}

static const struct fc_embedded_file *find_file(const char *name)
{
    for (size_t i = 0; i < fc_dashboard_files_count; i++)
        if (strcmp(fc_dashboard_files[i].name, name) == 0)
            return &fc_dashboard_files[i];
    return NULL;
}

int fc_dashboard_register(struct fc_admin *a)
{
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        struct page *p = &pages[i];
        /* -ENOENT: this table names a file that core/CMakeLists.txt does not embed. */
        p->found = find_file(p->file);
        if (p->found == NULL)
            return -ENOENT;
        int err = fc_admin_route(a, "GET", p->path, FC_ADMIN_PUBLIC, page_get, p);
        if (err != 0)
            return err;
    }
    return 0;
}
