/*
 * Writing to a libuv stream the way both transports do: try at once, queue
 * only what the socket did not take.
 */
#ifndef FC_STREAM_H
#define FC_STREAM_H

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <uv.h>

/*
 * uv_try_write() with MSG_MORE: the kernel holds a partial segment back for
 * the bytes that are known to follow (the rest of a body of known length),
 * so a relayed body goes out in full segments, as HAProxy sends it. Only on
 * a TCP stream with nothing queued. Returns the bytes written or a libuv error.
 */
static inline int fc_stream_try_write_more(uv_stream_t *s, const uv_buf_t *bufs, unsigned n)
{
    uv_os_fd_t fd;
    if (n > 16 || uv_stream_get_write_queue_size(s) != 0 || uv_fileno((uv_handle_t *)s, &fd) != 0)
        return uv_try_write(s, bufs, n);
    struct iovec iov[16];
    for (unsigned i = 0; i < n; i++)
        iov[i] = (struct iovec){.iov_base = bufs[i].base, .iov_len = bufs[i].len};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};
    ssize_t done;
    do
        done = sendmsg(fd, &m, MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
    while (done < 0 && errno == EINTR);
    if (done < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
    return (int)done;
}

/**
 * Writes what it can synchronously (uv_try_write; with `more`, MSG_MORE:
 * more of the same message follows) and queues the rest with req and cb.
 * Returns 1 when everything went out (cb will not run), 0 when a write is
 * pending (cb runs when it ends), or a negative libuv error. bufs may be
 * modified: the written part is skipped.
 */
static inline int fc_stream_write(uv_stream_t *s, uv_write_t *req, uv_buf_t *bufs, unsigned n,
                                  uv_write_cb cb, int more)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    int done = more ? fc_stream_try_write_more(s, bufs, n) : uv_try_write(s, bufs, n);
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
