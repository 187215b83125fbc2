/*
 * lines.c - framing of the lines input format (a record per line, without
 * its '\n'), incremental and zero-copy (stream.h).
 *
 * Invariants: window[0] is always the first byte of a line; a record never
 * contains '\n'; p->scanned bytes at the start of the window are known to
 * hold no '\n', so a long line arriving in many small reads is searched
 * once, not once per read (that would be quadratic in its length).
 *
 * The one thing a reader would get wrong: no '\r' is stripped and no
 * encoding is assumed; a record is exactly the bytes between two '\n'.
 * A line of exactly max_size bytes is valid; one byte more is malformed.
 */
#include "lines.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void lines_init(stream_parser *p, uint32_t max_size) {
    memset(p, 0, sizeof *p);
    p->max_size = max_size;
}

static stream_status too_long(stream_parser *p) {
    if (!p->failed) {
        p->failed = 1;
        p->bad_offset = p->offset;
        snprintf(p->why, sizeof p->why, "line longer than the %u-byte block limit", p->max_size);
    }
    return STREAM_BAD;
}

static stream_status take(stream_parser *p, const uint8_t *window, size_t size, size_t used,
                          stream_record *rec) {
    rec->data = window;
    rec->size = size;
    rec->used = used;
    p->offset += used;
    p->records++;
    p->scanned = 0;
    return STREAM_RECORD;
}

stream_status lines_next(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec) {
    assert(window || n == 0);
    assert(p->scanned <= n);
    if (p->failed)
        return STREAM_BAD;
    memset(rec, 0, sizeof *rec);
    /* A line may have max_size bytes, so its '\n' is among the first max_size + 1. */
    size_t limit = n < (size_t)p->max_size + 1 ? n : (size_t)p->max_size + 1;
    const uint8_t *nl =
        p->scanned < limit ? memchr(window + p->scanned, '\n', limit - p->scanned) : NULL;
    if (nl)
        return take(p, window, (size_t)(nl - window), (size_t)(nl - window) + 1, rec);
    p->scanned = limit;
    if (limit > p->max_size)
        return too_long(p);
    rec->need = n + 1;
    return STREAM_MORE;
}

stream_status lines_end(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec) {
    assert(window || n == 0);
    if (p->failed)
        return STREAM_BAD;
    memset(rec, 0, sizeof *rec);
    if (n == 0)
        return STREAM_END;
    assert(!memchr(window, '\n', n)); /* else lines_next would have taken a line */
    if (n > p->max_size)
        return too_long(p);
    return take(p, window, n, n, rec);
}
