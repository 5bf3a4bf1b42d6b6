/*
 * The dashboard: `GET /` on the admin listener serves one page, with its
 * script and style sheet (`GET /dashboard.js`, `GET /dashboard.css`), that
 * shows the daemon live from `/api/events` (see monitor.h). The three files
 * are written by hand in core/dashboard/ and built into the binary
 * (cmake/EmbedFiles.cmake): fulcrum reads no file to serve them. They are
 * public (FC_ADMIN_PUBLIC), as they hold nothing but code; the page asks for
 * the token itself when /api/events answers 401. Every answer carries a
 * Content-Security-Policy that allows only these files and connections to
 * the admin listener itself. Main thread.
 */
#ifndef FC_DASHBOARD_H
#define FC_DASHBOARD_H

#include <stddef.h>

struct fc_admin;

/** A file built into the binary; see cmake/EmbedFiles.cmake. */
struct fc_embedded_file {
    const char *name;          /**< its file name, without the folder */
    const unsigned char *data; /**< len bytes, then a NUL */
    size_t len;
};

/** The dashboard's files (core/dashboard/), generated at build time. */
extern const struct fc_embedded_file fc_dashboard_files[];
extern const size_t fc_dashboard_files_count;

/** The Content-Security-Policy of the dashboard's answers. */
#define FC_DASHBOARD_CSP                                                                           \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

/**
 * Registers `GET /`, `GET /dashboard.js` and `GET /dashboard.css` on a, all
 * FC_ADMIN_PUBLIC. Returns 0 or what fc_admin_route() returned.
 */
int fc_dashboard_register(struct fc_admin *a);

#endif
