/*
 * input.c - the read buffer of `kappalog append`: one buffer, read into in
 * big chunks, holding a window of the stream that the parsers frame
 * records in without copying them.
 *
 * Invariants: start <= end <= cap <= max_cap; buf[start, end) is the
 * window: the bytes read that no record has taken. Bytes before start
 * belong to records the caller may still point at (the batch being built),
 * so they only move in input_make_room, which the caller calls after its
 * batch was appended.
 *
 * The one thing a reader would get wrong: the buffer grows only when one
 * record does not fit (up to max_cap, one block plus its framing), never
 * to hold more records; a batch is bounded by the buffer, not the buffer by
 * the batch.
 */
#define _POSIX_C_SOURCE 200809L

#include "input.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int input_init(cli_input *in, int fd, size_t max_cap) {
    memset(in, 0, sizeof *in);
    in->fd = fd;
    in->max_cap = max_cap;
    in->cap = max_cap < INPUT_INITIAL_BYTES ? max_cap : INPUT_INITIAL_BYTES;
    in->buf = malloc(in->cap);
    return in->buf ? 0 : -ENOMEM;
}

void input_free(cli_input *in) {
    free(in->buf);
    in->buf = NULL;
}

void input_consume(cli_input *in, size_t n) {
    assert(n <= in->end - in->start);
    in->start += n;
}

int input_ready(const cli_input *in) {
    struct pollfd pfd = {.fd = in->fd, .events = POLLIN};
    int rc;
    do {
        rc = poll(&pfd, 1, 0);
    } while (rc < 0 && errno == EINTR);
    return rc != 0; /* an error of poll itself: let read() report it */
}

int input_wants_room(const cli_input *in, size_t need) {
    if (in->start + need > in->cap || in->end == in->cap)
        return 1;
    return in->start > 0 && in->cap - in->end < INPUT_MIN_READ_BYTES;
}

int input_make_room(cli_input *in, size_t need) {
    assert(need <= in->max_cap);
    size_t n = in->end - in->start;
    memmove(in->buf, in->buf + in->start, n);
    in->start = 0;
    in->end = n;
    if (need <= in->cap && n < in->cap)
        return 0;
    size_t cap = in->cap;
    while (cap < need || cap <= n)
        cap = cap > in->max_cap / 2 ? in->max_cap : cap * 2;
    uint8_t *buf = realloc(in->buf, cap);
    if (!buf)
        return -ENOMEM;
    in->buf = buf;
    in->cap = cap;
    assert(in->end < in->cap);
    return 0;
}

/* Wait until fd is readable (stdin may have been left non-blocking by someone else). */
static void wait_readable(int fd) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
}

long input_read(cli_input *in) {
    assert(in->end < in->cap);
    for (;;) {
        ssize_t r = read(in->fd, in->buf + in->end, in->cap - in->end);
        if (r > 0) {
            in->end += (size_t)r;
            return (long)r;
        }
        if (r == 0) {
            in->eof = 1;
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            wait_readable(in->fd);
        else if (errno != EINTR)
            return -errno;
    }
}
