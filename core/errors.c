#include "errors.h"

#include <inttypes.h>
#include <stdio.h>

const char *fc_status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

int fc_error_response(int status, int close, uint64_t retry_after_s, char *out, size_t cap)
{
    const char *reason = fc_status_reason(status);
    char retry[48] = "";
    if (retry_after_s > 0)
        snprintf(retry, sizeof(retry), "Retry-After: %" PRIu64 "\r\n", retry_after_s);
    /* Body: "502 Bad Gateway\n" — its length is the status (3), a space, the reason, a newline. */
    int body_len = 3 + 1 + (int)snprintf(NULL, 0, "%s", reason) + 1;
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %d\r\n"
                     "%s%s"
                     "\r\n"
                     "%d %s\n",
                     status, reason, body_len, retry, close ? "Connection: close\r\n" : "", status,
                     reason);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}
