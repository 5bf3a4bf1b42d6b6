/*
 * Writing to a libuv stream the way both transports do: try at once, queue
 * only what the socket did not take.
 */
#ifndef FC_STREAM_H
#define FC_STREAM_H

#include <uv.h>

/**
 * Writes what it can synchronously (uv_try_write) and queues the rest with
 * req and cb. Returns 1 when everything went out (cb will not run), 0 when a
 * write is pending (cb runs when it ends), or a negative libuv error. bufs
 * may be modified: the written part is skipped.
 */
static inline int fc_stream_write(uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n,
                                  uv_write_cb cb)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    int done = uv_try_write(s, bufs, n);
    if (done == UV_EAGAIN || done == UV_ENOSYS)
        done = 0;
    if (done < 0)
        return done;
    if ((size_t)done == total)
        return 1;
    /* Skip what was written. */
    size_t skip = (size_t)done;
    unsigned first = 0;
    while (skip >= bufs[first].len) {
        skip -= bufs[first].len;
        first++;
    }
    bufs[first].base += skip;
    bufs[first].len -= skip;
    int rc = uv_write(req, s, bufs + first, n - first, cb);
    return rc < 0 ? rc : 0;
}

#endif
