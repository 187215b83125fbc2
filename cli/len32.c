/*
 * len32.c - framing of the len32 input format (4-byte little-endian length,
 * then the bytes), incremental and zero-copy (stream.h).
 *
 * Invariants: p->offset is the sum of the `used` of every record returned,
 * so window[0] is always the first byte of a length prefix; a record is
 * returned only when all of its bytes are in the window; once STREAM_BAD is
 * returned every later call returns it again, with the same offset.
 *
 * The one thing a reader would get wrong: an oversized length is reported
 * as soon as its 4 prefix bytes are seen, without waiting for (or reading)
 * the payload, so a writer never buffers up to 4 GiB of a record it will
 * refuse; and a length of exactly max_size is still valid.
 */
#include "len32.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void len32_init(stream_parser *p, uint32_t max_size) {
    memset(p, 0, sizeof *p);
    p->max_size = max_size;
}

static stream_status fail(stream_parser *p, const char *why) {
    if (!p->failed) {
        p->failed = 1;
        p->bad_offset = p->offset;
        snprintf(p->why, sizeof p->why, "%s", why);
    }
    return STREAM_BAD;
}

static uint32_t load_le32(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

stream_status len32_next(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec) {
    assert(window || n == 0);
    if (p->failed)
        return STREAM_BAD;
    memset(rec, 0, sizeof *rec);
    if (n < LEN32_PREFIX_BYTES) {
        rec->need = LEN32_PREFIX_BYTES;
        return STREAM_MORE;
    }
    uint32_t size = load_le32(window);
    if (size > p->max_size) {
        char why[STREAM_WHY_BYTES];
        snprintf(why, sizeof why, "length %u exceeds the %u-byte block limit", size, p->max_size);
        return fail(p, why);
    }
    size_t total = LEN32_PREFIX_BYTES + (size_t)size;
    if (n < total) {
        rec->need = total;
        return STREAM_MORE;
    }
    rec->data = window + LEN32_PREFIX_BYTES;
    rec->size = size;
    rec->used = total;
    p->offset += total;
    p->records++;
    assert(rec->used <= n);
    return STREAM_RECORD;
}

stream_status len32_end(stream_parser *p, const uint8_t *window, size_t n, stream_record *rec) {
    assert(window || n == 0);
    (void)rec;
    if (p->failed)
        return STREAM_BAD;
    if (n == 0)
        return STREAM_END;
    char why[STREAM_WHY_BYTES];
    if (n < LEN32_PREFIX_BYTES) {
        snprintf(why, sizeof why, "truncated length prefix (%zu of %d bytes)", n,
                 LEN32_PREFIX_BYTES);
    } else {
        uint32_t size = load_le32(window);
        assert((size_t)size + LEN32_PREFIX_BYTES > n); /* else len32_next would take it */
        snprintf(why, sizeof why, "truncated record (length %u, %zu bytes present)", size,
                 n - LEN32_PREFIX_BYTES);
    }
    return fail(p, why);
}
