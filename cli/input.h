/*
 * input.h - a growable window over an input file descriptor (stdin), read
 * in big chunks, that the stream parsers (stream.h) frame records in.
 */
#ifndef KL_CLI_INPUT_H
#define KL_CLI_INPUT_H

#include <stddef.h>
#include <stdint.h>

/* The first buffer size: big reads, few syscalls. */
#define INPUT_INITIAL_BYTES (1u << 20)

/* Move the window to the buffer's start once less than this is free at its end. */
#define INPUT_MIN_READ_BYTES (64u * 1024u)

typedef struct cli_input {
    int fd;
    uint8_t *buf;
    size_t cap;     /* bytes allocated */
    size_t max_cap; /* bound on cap: the longest record plus its framing */
    size_t start;   /* buf offset of the window: the first byte no record has taken */
    size_t end;     /* buf offset of the end of the bytes read */
    int eof;        /* read returned 0 */
} cli_input;

/* A window over fd with an initial buffer of min(INPUT_INITIAL_BYTES, max_cap). 0 or -ENOMEM. */
int input_init(cli_input *in, int fd, size_t max_cap);
void input_free(cli_input *in);

static inline const uint8_t *input_window(const cli_input *in) {
    return in->buf + in->start;
}
static inline size_t input_window_size(const cli_input *in) {
    return in->end - in->start;
}

/* Slide the window past n bytes a record took. Their bytes stay where they are. */
void input_consume(cli_input *in, size_t n);

/* Can a read return without blocking (data, end of file or an error is waiting)? */
int input_ready(const cli_input *in);

/*
 * Must input_make_room run before the next read, for the window to reach
 * `need` bytes or for the read to be a big one?
 */
int input_wants_room(const cli_input *in, size_t need);

/*
 * Move the window to the start of the buffer and grow the buffer to hold
 * at least `need` window bytes (need <= max_cap). This moves bytes: every
 * pointer into the buffer (records not yet appended) is invalid afterwards.
 * 0 or -ENOMEM.
 */
int input_make_room(cli_input *in, size_t need);

/* Read once into the free space, waiting for data. Bytes read (0 at end of file) or -errno. */
long input_read(cli_input *in);

#endif
