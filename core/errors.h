/*
 * Responses the proxy writes itself: short text bodies with a correct
 * Content-Length, as users of nginx and HAProxy expect.
 */
#ifndef FC_ERRORS_H
#define FC_ERRORS_H

#include <stddef.h>
#include <stdint.h>

/**
 * The reason phrase of the statuses the proxy and the admin listener produce
 * ("Bad Gateway"), or "Error".
 */
const char *fc_status_reason(int status);

/**
 * Writes a complete response for `status` into out. `close` adds
 * "Connection: close"; retry_after_s > 0 adds "Retry-After". Returns the length,
 * or -1 when cap is too small (256 bytes always suffice).
 */
int fc_error_response(int status, int close, uint64_t retry_after_s, char *out, size_t cap);

#endif
