/*
 * fuzz_len32.c - libFuzzer target for the len32 stream parser of `kappalog
 * append` (cli/len32.c), driven as the command drives it: a window that
 * grows by chunks of arbitrary sizes and slides past each record taken.
 *
 * Input layout: byte 0 picks the largest record accepted (small limits make
 * "oversized" reachable), bytes 1..2 seed the chunk sizes, the rest is the
 * stream. Every window is handed over in a heap buffer of exactly its size,
 * so AddressSanitizer catches a read one byte past it.
 *
 * Invariants checked: each record is [4-byte LE length][bytes] at the
 * stream offset where the previous one ended, and its bytes are the
 * input's; STREAM_MORE asks for more than the window holds and never more
 * than 4 + the limit; records taken + bytes left over == the input; the
 * end is clean exactly when nothing is left, else the error names the
 * offset where the leftover starts; once failed, the parser stays failed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../cli/len32.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* The largest record accepted, from a control byte: tiny limits, or the real one. */
static uint32_t pick_limit(uint8_t b) {
    return b < 128 ? (uint32_t)b : b < 192 ? (uint32_t)b * 97u : UINT32_MAX;
}

/* xorshift32: chunk sizes from the seed, 1..64 bytes (sometimes the rest at once). */
static size_t next_chunk(uint32_t *state, size_t left) {
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    size_t n = (x & 0x3f) == 0 ? left : 1 + (x >> 8) % 64;
    return n < left ? n : left;
}

/* A heap copy of exactly n bytes (NULL for none), so reads past it are caught. */
static uint8_t *exact_copy(const uint8_t *p, size_t n) {
    if (n == 0)
        return NULL;
    uint8_t *c = malloc(n);
    CHECK(c);
    memcpy(c, p, n);
    return c;
}

/* One record returned for the window starting at stream offset `at`: is it the input's? */
static void check_record(const uint8_t *stream, uint64_t at, const uint8_t *window, size_t n,
                         const stream_record *rec, uint32_t limit) {
    CHECK(rec->used == LEN32_PREFIX_BYTES + rec->size && rec->used <= n);
    CHECK(rec->size <= limit);
    CHECK(rec->data == window + LEN32_PREFIX_BYTES);
    CHECK(load_le32(stream + at) == rec->size);
    CHECK(rec->size == 0 || memcmp(rec->data, stream + at + LEN32_PREFIX_BYTES, rec->size) == 0);
}

/* The harness's own count of what the records took, to check the parser's against. */
typedef struct taken {
    uint64_t bytes, records;
} taken;

/* Take every record the window holds. Returns the last status. */
static stream_status drain(stream_parser *p, const uint8_t *stream, size_t delivered, taken *t) {
    for (;;) {
        uint64_t at = t->bytes;
        CHECK(p->offset == at && p->records == t->records);
        size_t n = delivered - (size_t)at;
        uint8_t *window = exact_copy(stream + at, n);
        stream_record rec;
        stream_status st = len32_next(p, window, n, &rec);
        if (st == STREAM_RECORD) {
            check_record(stream, at, window, n, &rec, p->max_size);
            t->bytes += rec.used;
            t->records++;
            CHECK(p->offset == t->bytes);
        } else if (st == STREAM_MORE) {
            CHECK(p->offset == at && rec.need > n);
            CHECK(rec.need <= LEN32_PREFIX_BYTES + (size_t)p->max_size);
        } else {
            CHECK(st == STREAM_BAD && p->failed && p->bad_offset == at && p->why[0]);
            CHECK(n >= LEN32_PREFIX_BYTES && load_le32(window) > p->max_size);
        }
        free(window);
        if (st != STREAM_RECORD)
            return st;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    stream_parser p;
    len32_init(&p, pick_limit(data[0]));
    uint32_t seed = ((uint32_t)data[1] << 8 | data[2]) + 1u; /* never 0 for xorshift */
    const uint8_t *stream = data + 3;
    size_t len = size - 3, delivered = 0;
    taken t = {0, 0};
    stream_status st = STREAM_MORE;
    while (delivered < len && st != STREAM_BAD) {
        delivered += next_chunk(&seed, len - delivered);
        st = drain(&p, stream, delivered, &t);
    }
    uint64_t records = t.records, offset = t.bytes;
    CHECK(p.records == records && p.offset == offset && offset <= len);
    size_t left = len - (size_t)offset; /* records taken + left over == the input */
    if (st != STREAM_BAD) {
        uint8_t *rest = exact_copy(stream + offset, left);
        stream_record rec;
        st = len32_end(&p, rest, left, &rec);
        free(rest);
        CHECK(st == (left == 0 ? STREAM_END : STREAM_BAD));
    }
    CHECK(st == STREAM_END || (p.failed && p.bad_offset == offset));
    /* Failed stays failed, and nothing moves. */
    stream_record rec;
    CHECK(st == STREAM_END || len32_next(&p, NULL, 0, &rec) == STREAM_BAD);
    CHECK(p.records == records && p.offset == offset);
    return 0;
}
