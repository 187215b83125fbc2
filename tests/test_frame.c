/*
 * test_frame.c - batch framing (engine/frame.c, docs/FORMAT.md "Batch").
 *
 * A frame is [64-byte header][8-byte XXH3 checksum per 1 KiB chunk of the
 * stored body][stored body]; the header covers the array of chunk checksums
 * (sums_checksum, offset 48) and itself (offset 56); chunk i is hashed with
 * seed first_index ^ (i << 40) ^ (i >> 24); the raw body is a table of
 * `count` u32 end offsets, then the data. This file writes that layout out
 * itself (spec_*) rather than trusting frame.c's, so a change to the format
 * in frame.c alone fails here. The shapes of the test batches (chunk
 * boundaries, blocks across them) are written in terms of SPEC_CHUNK, so they
 * keep their meaning if FORMAT.md changes the chunk size.
 *
 * What this proves: a framed batch decodes back to exactly its blocks (empty,
 * single, many, big; batches of one and of many chunks, blocks spanning chunk
 * boundaries, zero-byte blocks at a boundary and at the very end); the
 * header checksum refuses every single-bit flip of the header; every
 * single-bit flip of the chunk checksums or of the body makes kl_batch_verify
 * refuse (all bits of a small batch, a sample of a large one), naming the
 * chunk; kl_batch_verify_range refuses exactly when the damage lies in a
 * chunk the range touches; kl_batch_block_checked refuses a block whose data
 * or table entries (k-1 and k) are damaged and serves, byte for byte, every
 * block whose chunks are intact while another chunk is damaged; a chunk moved
 * to another position or another batch fails (the seed); a damaged table
 * can make a lookup fail but never point outside the body, even when its
 * chunk checksums are recomputed; each consistency check of the header
 * refuses on its own, for the reason it names (the header is resealed, so it
 * is the field check, not the checksum, that says no); zstd round-trips with
 * the chunks covering the compressed body, and a flip there is caught by
 * kl_batch_verify before any decompression; kl_batch_compress keeps the
 * zstd frame exactly when it makes the batch smaller (zstd output of raw_len
 * bytes stays uncompressed, of raw_len - 1 is kept), so an incompressible
 * batch stays uncompressed; a bad zstd body with correct checksums (cut,
 * junk, no content size, wrong size, a table that does not verify) is
 * refused by kl_batch_decompress; a torn or truncated header is refused.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "engine/frame.h"
#include "engine/util.h"

#define TS_MS 1700000000123ull

/* FORMAT.md's sizes, written out so a change in frame.h alone fails the tests. */
#define SPEC_HDR   64u
#define SPEC_CHUNK 1024u
#define SPEC_SUM   8u
#define SPEC_ENTRY 4u

static uint64_t spec_chunks(uint64_t stored_len) {
    return (stored_len + SPEC_CHUNK - 1) / SPEC_CHUNK;
}

static uint64_t spec_frame_bytes(uint64_t stored_len) {
    return SPEC_HDR + SPEC_SUM * spec_chunks(stored_len) + stored_len;
}

/* The checksum of chunk i (len bytes) of a batch whose first block is `first`. */
static uint64_t spec_chunk_sum(const uint8_t *chunk, size_t len, uint64_t first, uint64_t i) {
    return XXH3_64bits_withSeed(chunk, len, first ^ (i << 40) ^ (i >> 24));
}

/* Where the parts of a frame lie, from its header's own bytes. */
typedef struct layout {
    uint64_t first, stored, chunks;
    uint8_t *sums, *body;
} layout;

static layout layout_of(uint8_t *frame) {
    layout l;
    l.first = kl_load64(frame + 8);
    l.stored = kl_load32(frame + 20);
    l.chunks = spec_chunks(l.stored);
    l.sums = frame + SPEC_HDR;
    l.body = l.sums + SPEC_SUM * l.chunks;
    return l;
}

static size_t chunk_len(const layout *l, uint64_t i) {
    return (size_t)KL_MIN((uint64_t)SPEC_CHUNK, l->stored - i * SPEC_CHUNK);
}

/* Does chunk i match its checksum in the frame? */
static int spec_chunk_ok(uint8_t *frame, uint64_t i) {
    layout l = layout_of(frame);
    return kl_load64(l.sums + SPEC_SUM * i) ==
           spec_chunk_sum(l.body + i * SPEC_CHUNK, chunk_len(&l, i), l.first, i);
}

/* Recompute the header checksum after a deliberate change to a field. */
static void reseal(uint8_t *p) {
    kl_store64(p + 56, XXH3_64bits(p, 56));
}

/* Recompute the sums checksum and the header checksum (after changing a chunk checksum). */
static void reseal_sums(uint8_t *p) {
    layout l = layout_of(p);
    kl_store64(p + 48, XXH3_64bits(l.sums, (size_t)(SPEC_SUM * l.chunks)));
    reseal(p);
}

/* Recompute every chunk checksum, the sums checksum and the header checksum. */
static void reseal_frame(uint8_t *p) {
    layout l = layout_of(p);
    for (uint64_t i = 0; i < l.chunks; i++)
        kl_store64(l.sums + SPEC_SUM * i,
                   spec_chunk_sum(l.body + i * SPEC_CHUNK, chunk_len(&l, i), l.first, i));
    reseal_sums(p);
}

/* The frame's checksums are exactly FORMAT.md's. */
static void expect_spec_sums(uint8_t *frame) {
    layout l = layout_of(frame);
    for (uint64_t i = 0; i < l.chunks; i++)
        if (!spec_chunk_ok(frame, i))
            fail_msg("chunk %llu checksum is not FORMAT.md's", (unsigned long long)i);
    assert_int_equal(kl_load64(frame + 48), XXH3_64bits(l.sums, (size_t)(SPEC_SUM * l.chunks)));
    assert_int_equal(kl_load64(frame + 56), XXH3_64bits(frame, 56));
}

/* A framed batch in a heap buffer of exactly its size (so ASan sees overreads). */
typedef struct built {
    uint8_t *buf;
    size_t len;
    kl_block *blocks;
    uint8_t *data; /* backing store of the blocks */
    size_t count;
    uint64_t data_bytes;
} built;

/* Frame `count` blocks whose sizes are sizes[k] with seeded content. */
static built build(uint64_t first, const size_t *sizes, size_t count, uint64_t seed) {
    built b = {0};
    b.count = count;
    for (size_t k = 0; k < count; k++)
        b.data_bytes += sizes[k];
    b.data = malloc(b.data_bytes ? b.data_bytes : 1);
    b.blocks = calloc(count, sizeof *b.blocks);
    assert_non_null(b.data);
    assert_non_null(b.blocks);
    uint64_t st = seed;
    for (uint64_t i = 0; i < b.data_bytes; i++)
        b.data[i] = (uint8_t)tu_rand(&st);
    uint64_t at = 0;
    for (size_t k = 0; k < count; k++) {
        b.blocks[k].data = b.data + at;
        b.blocks[k].size = sizes[k];
        at += sizes[k];
    }
    b.len = (size_t)spec_frame_bytes(SPEC_ENTRY * count + b.data_bytes);
    assert_int_equal(kl_batch_plain_bytes(count, b.data_bytes), b.len);
    b.buf = malloc(b.len);
    assert_non_null(b.buf);
    size_t n = kl_batch_frame(b.buf, first, b.blocks, count, b.data_bytes, TS_MS);
    assert_int_equal(n, b.len);
    return b;
}

/* Frame b's blocks again (after its data was rewritten in place). */
static void reframe(built *b, uint64_t first) {
    assert_int_equal(kl_batch_frame(b->buf, first, b->blocks, b->count, b->data_bytes, TS_MS),
                     b->len);
}

static void unbuild(built *b) {
    free(b->buf);
    free(b->blocks);
    free(b->data);
    memset(b, 0, sizeof *b);
}

static kl_batch_hdr decode_ok(const uint8_t *frame, size_t len) {
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(frame, len, &h), 0);
    assert_int_equal(kl_batch_frame_len(&h), len);
    return h;
}

/* Decode, verify and read back every block of a framed batch; compare to b. */
static void expect_round_trip(const built *b, uint64_t first) {
    kl_batch_hdr h = decode_ok(b->buf, b->len);
    assert_int_equal(h.codec, KL_CODEC_NONE);
    assert_int_equal(h.first_index, first);
    assert_int_equal(h.count, b->count);
    assert_int_equal(h.data_bytes, b->data_bytes);
    assert_int_equal(h.raw_len, SPEC_ENTRY * b->count + b->data_bytes);
    assert_int_equal(h.stored_len, h.raw_len);
    assert_int_equal(h.timestamp_ms, TS_MS);
    layout l = layout_of(b->buf);
    assert_ptr_equal(kl_batch_stored(&h, b->buf), l.body);
    assert_int_equal(kl_batch_chunks(h.stored_len), l.chunks);
    expect_spec_sums(b->buf);
    const uint8_t *raw = l.body;
    assert_int_equal(kl_batch_verify(&h, b->buf), 0);
    assert_int_equal(kl_batch_verify_range(&h, b->buf, 0, h.stored_len), 0);
    assert_int_equal(kl_batch_table_verify(&h, raw), 0);
    uint64_t end = 0;
    for (uint32_t k = 0; k < h.count; k++) {
        end += b->blocks[k].size;
        assert_int_equal(kl_load32(raw + SPEC_ENTRY * k), end);
        const uint8_t *d = NULL, *dc = NULL;
        size_t n = 0, nc = 0;
        assert_int_equal(kl_batch_block(&h, raw, k, &d, &n), 0);
        assert_int_equal(n, b->blocks[k].size);
        assert_ptr_equal(d, raw + SPEC_ENTRY * h.count + end - n);
        if (n)
            assert_memory_equal(d, b->blocks[k].data, n);
        assert_int_equal(kl_batch_block_checked(&h, b->buf, k, &dc, &nc), 0);
        assert_ptr_equal(dc, d);
        assert_int_equal(nc, n);
    }
    /* The header re-encodes to the same 64 bytes. */
    uint8_t re[KL_BATCH_HEADER_BYTES];
    kl_batch_hdr_encode(re, &h);
    assert_memory_equal(re, b->buf, KL_BATCH_HEADER_BYTES);
}

static void test_zero_byte_blocks_round_trip(void **state) {
    (void)state;
    size_t sizes[7] = {0, 0, 0, 0, 0, 0, 0};
    built b = build(12, sizes, 7, 1);
    assert_int_equal(b.len, 64 + 8 + 7 * 4);
    expect_round_trip(&b, 12);
    unbuild(&b);
    size_t one[1] = {0};
    b = build(0, one, 1, 2);
    assert_int_equal(b.len, 64 + 8 + 4);
    expect_round_trip(&b, 0);
    unbuild(&b);
}

static void test_one_block_round_trips(void **state) {
    (void)state;
    /* frame.h agrees with FORMAT.md's sizes. */
    assert_int_equal(KL_BATCH_HEADER_BYTES, SPEC_HDR);
    assert_int_equal(KL_BATCH_CHUNK_BYTES, SPEC_CHUNK);
    assert_int_equal(KL_BATCH_SUM_BYTES, SPEC_SUM);
    assert_int_equal(KL_BATCH_ENTRY_BYTES, SPEC_ENTRY);
    size_t sizes[1] = {1000}; /* 1004 bytes of body: one chunk */
    built b = build(99, sizes, 1, 3);
    assert_int_equal(b.len, 64 + 8 + 4 + 1000);
    /* The layout of FORMAT.md, byte by byte. */
    assert_int_equal(kl_load32(b.buf), 0x31424c4bu);
    assert_memory_equal(b.buf, "KLB1", 4);
    assert_int_equal(kl_load16(b.buf + 4), 1);
    assert_int_equal(b.buf[6], 0);
    assert_int_equal(b.buf[7], 0);
    assert_int_equal(kl_load64(b.buf + 8), 99);
    assert_int_equal(kl_load32(b.buf + 16), 1);
    assert_int_equal(kl_load32(b.buf + 20), 4 + 1000);
    assert_int_equal(kl_load32(b.buf + 24), 4 + 1000);
    assert_int_equal(kl_load32(b.buf + 28), 0);
    assert_int_equal(kl_load64(b.buf + 32), TS_MS);
    assert_int_equal(kl_load64(b.buf + 40), 1000);
    assert_int_equal(kl_load64(b.buf + 48), XXH3_64bits(b.buf + 64, 8));
    assert_int_equal(kl_load64(b.buf + 56), XXH3_64bits(b.buf, 56));
    /* One chunk, seed = first_index ^ 0. */
    assert_int_equal(kl_load64(b.buf + 64), XXH3_64bits_withSeed(b.buf + 72, 4 + 1000, 99));
    assert_int_equal(kl_load32(b.buf + 72), 1000);
    assert_memory_equal(b.buf + 76, b.blocks[0].data, 1000);
    expect_round_trip(&b, 99);
    unbuild(&b);
    /* Two blocks, three chunks: chunk i is seeded first_index ^ (i << 40). */
    size_t two[2] = {SPEC_CHUNK, SPEC_CHUNK}; /* body: 8 + 2 chunks of data */
    b = build(99, two, 2, 3);
    uint8_t *sums = b.buf + 64, *body = b.buf + 64 + 3 * 8;
    assert_int_equal(b.len, 64 + 3 * 8 + 8 + 2 * SPEC_CHUNK);
    assert_int_equal(kl_load64(b.buf + 48), XXH3_64bits(sums, 3 * 8));
    assert_int_equal(kl_load64(sums), XXH3_64bits_withSeed(body, SPEC_CHUNK, 99));
    assert_int_equal(kl_load64(sums + 8),
                     XXH3_64bits_withSeed(body + SPEC_CHUNK, SPEC_CHUNK, 99 ^ (1ull << 40)));
    assert_int_equal(kl_load64(sums + 16),
                     XXH3_64bits_withSeed(body + 2 * SPEC_CHUNK, 8, 99 ^ (2ull << 40)));
    assert_int_equal(kl_load32(body), SPEC_CHUNK);
    assert_int_equal(kl_load32(body + 4), 2 * SPEC_CHUNK);
    expect_round_trip(&b, 99);
    unbuild(&b);
}

static void test_many_blocks_round_trip(void **state) {
    (void)state;
    enum { N = 5000 };
    size_t *sizes = malloc(N * sizeof *sizes);
    assert_non_null(sizes);
    uint64_t st = 77;
    for (size_t k = 0; k < N; k++)
        sizes[k] = (k % 7 == 0) ? 0 : (size_t)(tu_rand(&st) % 300);
    /* 640 KiB: blocks cross chunk boundaries, the table (20000 bytes) spans several chunks. */
    built b = build(1000000, sizes, N, 4);
    assert_true(layout_of(b.buf).chunks > 100);
    expect_round_trip(&b, 1000000);
    unbuild(&b);
    /* The highest first index whose last block still fits in a uint64. */
    b = build(UINT64_MAX - 10, sizes, 10, 5);
    expect_round_trip(&b, UINT64_MAX - 10);
    unbuild(&b);
    /* First indexes with the bits the chunk number is mixed into. */
    b = build(1ull << 40, sizes, 100, 5);
    expect_round_trip(&b, 1ull << 40);
    unbuild(&b);
    free(sizes);
}

static void test_big_block_round_trips(void **state) {
    (void)state;
    size_t sizes[3] = {5u * 1024 * 1024 + 3, 1, 65537};
    built b = build(7, sizes, 3, 6);
    expect_round_trip(&b, 7);
    unbuild(&b);
}

static void test_chunk_count_follows_the_stored_length(void **state) {
    (void)state;
    /* One block of d bytes: raw = 4 + d. Raw lengths on both sides of chunk boundaries. */
    const uint64_t C = SPEC_CHUNK;
    const struct {
        size_t data;
        uint64_t chunks;
    } cases[] = {
        {0, 1},         {C - 4, 1},         {C - 3, 2},     {2 * C - 4, 2},
        {2 * C - 3, 3}, {3 * C - 4 + 1, 4}, {5 * C + 7, 6},
    };
    assert_int_equal(kl_batch_chunks(0), 0);
    assert_int_equal(kl_batch_chunks(1), 1);
    assert_int_equal(kl_batch_chunks(C), 1);
    assert_int_equal(kl_batch_chunks(C + 1), 2);
    assert_int_equal(kl_batch_chunks(UINT32_MAX), (UINT32_MAX + C - 1) / C);
    assert_int_equal(kl_batch_frame_bytes(C), 64 + 8 + C);
    assert_int_equal(kl_batch_frame_bytes(C + 1), 64 + 16 + C + 1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t sizes[1] = {cases[c].data};
        built b = build(3, sizes, 1, 30 + c);
        layout l = layout_of(b.buf);
        assert_int_equal(l.chunks, cases[c].chunks);
        assert_int_equal(b.len, 64 + 8 * cases[c].chunks + 4 + cases[c].data);
        expect_round_trip(&b, 3);
        /* The last chunk is hashed over its real length: its last byte is covered... */
        kl_batch_hdr h = decode_ok(b.buf, b.len);
        b.buf[b.len - 1] ^= 0x01;
        assert_int_equal(kl_batch_verify(&h, b.buf), KL_ECORRUPT);
        assert_int_equal(kl_batch_verify_range(&h, b.buf, h.stored_len - 1, 1), KL_ECORRUPT);
        b.buf[b.len - 1] ^= 0x01;
        /* ...and so is the first byte of every chunk. */
        for (uint64_t i = 0; i < l.chunks; i++) {
            l.body[i * SPEC_CHUNK] ^= 0x80;
            assert_int_equal(kl_batch_verify(&h, b.buf), KL_ECORRUPT);
            l.body[i * SPEC_CHUNK] ^= 0x80;
        }
        assert_int_equal(kl_batch_verify(&h, b.buf), 0);
        unbuild(&b);
    }
}

static void test_every_header_bit_flip_is_refused(void **state) {
    (void)state;
    size_t sizes[3] = {10, 0, 33};
    built b = build(5, sizes, 3, 7);
    kl_batch_hdr h;
    for (unsigned bit = 0; bit < 8 * KL_BATCH_HEADER_BYTES; bit++) {
        b.buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (kl_batch_hdr_decode(b.buf, b.len, &h) != KL_ECORRUPT)
            fail_msg("flip of header bit %u was accepted", bit);
        b.buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(kl_batch_hdr_decode(b.buf, b.len, &h), 0);
    unbuild(&b);
}

static void test_torn_batch_header_is_refused(void **state) {
    (void)state;
    size_t sizes[2] = {100, 200};
    built b = build(5, sizes, 2, 8);
    kl_batch_hdr h;
    /* Any tear at a 1..63-byte boundary (new bytes, then zeros or old junk) is refused. */
    for (unsigned cut = 1; cut < KL_BATCH_HEADER_BYTES; cut++) {
        uint8_t t[KL_BATCH_HEADER_BYTES];
        memcpy(t, b.buf, cut);
        static const uint8_t fills[] = {0x00, 0xa5, 0xff};
        for (size_t f = 0; f < sizeof fills; f++) {
            memset(t + cut, fills[f], sizeof t - cut);
            if (memcmp(t, b.buf, sizeof t) == 0)
                continue; /* the tear happened to leave the same bytes */
            assert_int_equal(kl_batch_hdr_decode(t, sizeof t, &h), KL_ECORRUPT);
        }
    }
    unbuild(&b);
}

static void test_truncated_header_is_refused(void **state) {
    (void)state;
    size_t sizes[1] = {4};
    built b = build(0, sizes, 1, 9);
    kl_batch_hdr h;
    for (size_t avail = 0; avail < KL_BATCH_HEADER_BYTES; avail++) {
        /* A heap copy of exactly `avail` bytes: reading past it would trip ASan. */
        uint8_t *p = malloc(avail ? avail : 1);
        assert_non_null(p);
        memcpy(p, b.buf, avail);
        assert_int_equal(kl_batch_hdr_decode(p, avail, &h), KL_ECORRUPT);
        free(p);
    }
    uint8_t *p = malloc(KL_BATCH_HEADER_BYTES);
    assert_non_null(p);
    memcpy(p, b.buf, KL_BATCH_HEADER_BYTES);
    assert_int_equal(kl_batch_hdr_decode(p, KL_BATCH_HEADER_BYTES, &h), 0);
    free(p);
    unbuild(&b);
}

/*
 * Flip bit `bit` of the frame past its header and expect kl_batch_verify to
 * refuse it, for the right reason: a flip in the chunk checksums fails the
 * sums checksum, a flip in the body fails the checksum of its own chunk.
 */
static void expect_flip_refused(const kl_batch_hdr *h, uint8_t *frame, uint64_t bit) {
    layout l = layout_of(frame);
    uint64_t byte = bit / 8;
    uint8_t *at = l.sums + byte;
    at[0] ^= (uint8_t)(1u << (bit % 8));
    kl_err_clear();
    int rc = kl_batch_verify(h, frame);
    char want[64];
    if (byte < SPEC_SUM * l.chunks)
        snprintf(want, sizeof want, "chunk checksums fail");
    else
        snprintf(want, sizeof want, "chunk %llu fails",
                 (unsigned long long)((byte - SPEC_SUM * l.chunks) / SPEC_CHUNK));
    if (rc != KL_ECORRUPT || !strstr(kl_last_error(), want))
        fail_msg("flip of bit %llu past the header: verify returned %d (%s), expected \"%s\"",
                 (unsigned long long)bit, rc, kl_last_error(), want);
    at[0] ^= (uint8_t)(1u << (bit % 8));
}

static void test_every_bit_flip_past_the_header_fails_verify(void **state) {
    (void)state;
    /* Three chunks, the last one partial; blocks cross both boundaries. */
    const size_t C = SPEC_CHUNK;
    size_t sizes[5] = {C * 3 / 4, 0, C, C * 3 / 8, 17};
    built b = build(1, sizes, 5, 10);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    layout l = layout_of(b.buf);
    assert_int_equal(l.chunks, 3);
    assert_true(h.stored_len % C != 0);
    uint64_t bits = 8 * (b.len - SPEC_HDR);
    for (uint64_t bit = 0; bit < bits; bit++)
        expect_flip_refused(&h, b.buf, bit);
    assert_int_equal(kl_batch_verify(&h, b.buf), 0);
    unbuild(&b);
}

static void test_sampled_bit_flips_fail_verify_in_a_large_batch(void **state) {
    (void)state;
    size_t sizes[4] = {300000, 0, 700001, 50000};
    built b = build(1u << 20, sizes, 4, 17);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    layout l = layout_of(b.buf);
    assert_true(l.chunks > 250);
    uint64_t sums_bits = 8 * SPEC_SUM * l.chunks;
    /* Every chunk checksum's first and last bit, every chunk's first and last byte... */
    for (uint64_t i = 0; i < l.chunks; i++) {
        expect_flip_refused(&h, b.buf, 64 * i);
        expect_flip_refused(&h, b.buf, 64 * i + 63);
        uint64_t first_bit = sums_bits + 8 * SPEC_CHUNK * i;
        expect_flip_refused(&h, b.buf, first_bit + i % 8);
        expect_flip_refused(&h, b.buf, first_bit + 8 * (chunk_len(&l, i) - 1) + (i + 3) % 8);
    }
    /* ...and 2000 seeded random bits anywhere past the header. */
    uint64_t st = 99, bits = 8 * (b.len - SPEC_HDR);
    for (int s = 0; s < 2000; s++)
        expect_flip_refused(&h, b.buf, tu_rand(&st) % bits);
    assert_int_equal(kl_batch_verify(&h, b.buf), 0);
    unbuild(&b);
}

static void test_sums_checksum_covers_the_chunk_checksums(void **state) {
    (void)state;
    size_t sizes[2] = {5000, 6000};
    built b = build(8, sizes, 2, 18);
    /* A header whose sums checksum is wrong but whose own checksum is right. */
    kl_store64(b.buf + 48, kl_load64(b.buf + 48) + 1);
    reseal(b.buf);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    assert_int_equal(kl_batch_verify(&h, b.buf), KL_ECORRUPT);
    /* A chunk checksum changed while its chunk is not: the sums checksum refuses it. */
    reseal_sums(b.buf);
    h = decode_ok(b.buf, b.len);
    assert_int_equal(kl_batch_verify(&h, b.buf), 0);
    layout l = layout_of(b.buf);
    uint8_t saved[SPEC_SUM];
    memcpy(saved, l.sums + SPEC_SUM, SPEC_SUM);
    kl_store64(l.sums + SPEC_SUM, ~kl_load64(saved));
    assert_int_equal(kl_batch_verify(&h, b.buf), KL_ECORRUPT);
    memcpy(l.sums + SPEC_SUM, saved, SPEC_SUM);
    assert_int_equal(kl_batch_verify(&h, b.buf), 0);
    unbuild(&b);
}

/* Chunks [from, to) that byte range [off, off + len) of the stored body touches. */
static void chunk_span(uint64_t off, uint64_t len, uint64_t *from, uint64_t *to) {
    *from = off / SPEC_CHUNK;
    *to = len ? (off + len - 1) / SPEC_CHUNK + 1 : *from;
}

static void test_verify_range_checks_exactly_the_chunks_it_touches(void **state) {
    (void)state;
    /* Five chunks, the last one half full. */
    const uint64_t C = SPEC_CHUNK;
    size_t sizes[3] = {C * 3 / 2, 0, C * 3};
    built b = build(21, sizes, 3, 19);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    layout l = layout_of(b.buf);
    assert_int_equal(l.chunks, 5);
    uint64_t S = h.stored_len;
    const uint64_t points[] = {0,     1,         2,     C - 1,     C,     C + 1, 2 * C - 1,
                               2 * C, 3 * C - 1, 3 * C, 4 * C - 1, 4 * C, S - 1, S};
    const size_t np = sizeof points / sizeof points[0];
    /* Damage: the first, a middle and the last byte of each chunk, and a byte of each checksum. */
    for (uint64_t c = 0; c < l.chunks; c++) {
        uint8_t *where[4] = {
            l.body + c * SPEC_CHUNK, l.body + c * SPEC_CHUNK + chunk_len(&l, c) / 2,
            l.body + c * SPEC_CHUNK + chunk_len(&l, c) - 1, l.sums + SPEC_SUM * c + c % SPEC_SUM};
        for (int w = 0; w < 4; w++) {
            *where[w] ^= 0x10;
            assert_int_equal(kl_batch_verify(&h, b.buf), KL_ECORRUPT);
            for (size_t i = 0; i < np; i++) {
                for (size_t j = i; j < np; j++) {
                    uint64_t off = points[i], len = points[j] - points[i], from, to;
                    chunk_span(off, len, &from, &to);
                    int touched = c >= from && c < to;
                    int rc = kl_batch_verify_range(&h, b.buf, off, len);
                    if (rc != (touched ? KL_ECORRUPT : 0))
                        fail_msg("damage in chunk %llu, range [%llu, +%llu): got %d",
                                 (unsigned long long)c, (unsigned long long)off,
                                 (unsigned long long)len, rc);
                }
            }
            *where[w] ^= 0x10;
        }
    }
    /* Undamaged: every range passes. */
    for (size_t i = 0; i < np; i++)
        for (size_t j = i; j < np; j++)
            assert_int_equal(kl_batch_verify_range(&h, b.buf, points[i], points[j] - points[i]), 0);
    unbuild(&b);
}

/* The chunks kl_batch_block_checked(k) must check: its table entries' and its data's. */
static int block_touches(const kl_batch_hdr *h, const built *b, const uint64_t *starts, uint32_t k,
                         uint64_t chunk) {
    uint64_t from, to;
    chunk_span(SPEC_ENTRY * (k ? k - 1 : 0), SPEC_ENTRY * (k ? 2 : 1), &from, &to);
    if (chunk >= from && chunk < to)
        return 1;
    chunk_span(SPEC_ENTRY * h->count + starts[k], b->blocks[k].size, &from, &to);
    return chunk >= from && chunk < to;
}

/* Every block either refused (its chunks are damaged) or served intact. */
static void expect_blocks_after_damage(const kl_batch_hdr *h, const built *b, uint64_t chunk,
                                       const uint64_t *starts) {
    for (uint32_t k = 0; k < h->count; k++) {
        const uint8_t *d = NULL;
        size_t n = 0;
        int rc = kl_batch_block_checked(h, b->buf, k, &d, &n);
        if (block_touches(h, b, starts, k, chunk)) {
            if (rc != KL_ECORRUPT)
                fail_msg("block %u served with chunk %llu damaged", k, (unsigned long long)chunk);
            continue;
        }
        if (rc != 0)
            fail_msg("block %u refused, but only chunk %llu is damaged", k,
                     (unsigned long long)chunk);
        assert_ptr_equal(d, layout_of(b->buf).body + SPEC_ENTRY * h->count + starts[k]);
        assert_int_equal(n, b->blocks[k].size);
        if (n)
            assert_memory_equal(d, b->blocks[k].data, n);
    }
}

/* 1500 blocks: the table (6000 bytes) spans chunks, some blocks span several chunks. */
static built build_mixed(uint64_t first, uint64_t seed, uint64_t **starts) {
    enum { COUNT = 1500 };
    size_t sizes[COUNT];
    uint64_t st = seed;
    for (size_t k = 0; k < COUNT; k++)
        sizes[k] = k % 97 == 5 ? 5000 + (size_t)(tu_rand(&st) % 5000) : (size_t)(tu_rand(&st) % 9);
    built b = build(first, sizes, COUNT, seed);
    *starts = malloc(COUNT * sizeof **starts);
    assert_non_null(*starts);
    uint64_t at = 0;
    for (size_t k = 0; k < COUNT; k++) {
        (*starts)[k] = at;
        at += sizes[k];
    }
    return b;
}

static void test_block_checked_serves_intact_blocks_around_a_damaged_chunk(void **state) {
    (void)state;
    uint64_t *starts;
    built b = build_mixed(4000, 20, &starts);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    layout l = layout_of(b.buf);
    assert_true(l.chunks >= 8);
    assert_true(SPEC_ENTRY * h.count > SPEC_CHUNK); /* the table crosses a chunk boundary */
    for (uint64_t c = 0; c < l.chunks; c++) {
        uint8_t *where[4] = {
            l.body + c * SPEC_CHUNK, l.body + c * SPEC_CHUNK + chunk_len(&l, c) / 3,
            l.body + c * SPEC_CHUNK + chunk_len(&l, c) - 1, l.sums + SPEC_SUM * c + 7};
        for (int w = 0; w < 4; w++) {
            *where[w] ^= 0x04;
            expect_blocks_after_damage(&h, &b, c, starts);
            *where[w] ^= 0x04;
        }
    }
    expect_round_trip(&b, 4000);
    free(starts);
    unbuild(&b);
}

static void test_block_checked_refuses_damaged_data_or_table_entries(void **state) {
    (void)state;
    uint64_t *starts;
    built b = build_mixed(60, 21, &starts);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    layout l = layout_of(b.buf);
    const uint8_t *data = l.body + SPEC_ENTRY * h.count;
    /* Blocks on both sides of the table's first chunk boundary (entries kb-1 | kb),
     * blocks spanning chunks (k % 97 == 5), the last one. */
    const uint32_t kb = SPEC_CHUNK / SPEC_ENTRY;
    uint32_t ks[] = {0, 1, 2, 5, 102, 500, kb - 1, kb, kb + 1, kb + 5, 1499};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        uint32_t k = ks[i];
        const uint8_t *d;
        size_t n;
        /* Every bit of entries k-1 and k. */
        uint64_t e_from = SPEC_ENTRY * (k ? k - 1 : 0), e_to = SPEC_ENTRY * (k + 1);
        for (uint64_t byte = e_from; byte < e_to; byte++) {
            for (unsigned bit = 0; bit < 8; bit++) {
                l.body[byte] ^= (uint8_t)(1u << bit);
                if (kl_batch_block_checked(&h, b.buf, k, &d, &n) != KL_ECORRUPT)
                    fail_msg("block %u served with table byte %llu damaged", k,
                             (unsigned long long)byte);
                l.body[byte] ^= (uint8_t)(1u << bit);
            }
        }
        /* The first, middle and last byte of its data. */
        size_t size = b.blocks[k].size;
        if (size) {
            uint64_t at[3] = {starts[k], starts[k] + size / 2, starts[k] + size - 1};
            for (int a = 0; a < 3; a++) {
                uint8_t *p = (uint8_t *)data + at[a];
                *p ^= 0x40;
                assert_int_equal(kl_batch_block_checked(&h, b.buf, k, &d, &n), KL_ECORRUPT);
                *p ^= 0x40;
            }
        }
        assert_int_equal(kl_batch_block_checked(&h, b.buf, k, &d, &n), 0);
        assert_int_equal(n, size);
    }
    /* Entry kb-1 is in chunk 0 while block kb's entry and data lie in later chunks:
     * only checking entry k-1 as well as entry k catches damage there. */
    assert_int_equal(SPEC_ENTRY * (kb - 1) / SPEC_CHUNK, 0);
    assert_int_equal(SPEC_ENTRY * kb / SPEC_CHUNK, 1);
    assert_true((SPEC_ENTRY * h.count + starts[kb]) / SPEC_CHUNK > 0);
    assert_true(kb + 5 < h.count);
    free(starts);
    unbuild(&b);
}

static void test_block_spanning_chunks_and_zero_byte_blocks_at_boundaries(void **state) {
    (void)state;
    /* Where each block ends in the stored body (7 entries = 28 bytes of table first). */
    enum { COUNT = 7 };
    const uint64_t C = SPEC_CHUNK;
    const uint64_t ends[COUNT] = {
        2 * C + 100, /* spans the boundaries at C and 2C */
        3 * C,       /* ends exactly at a boundary */
        3 * C,       /* zero bytes, exactly at a boundary */
        3 * C + 1,   /* starts exactly at a boundary */
        3 * C + 1,   /* zero bytes, one past a boundary */
        4 * C,       /* ends exactly at the end of the body, a boundary */
        4 * C,       /* zero bytes at the very end of the body */
    };
    size_t sizes[COUNT];
    uint64_t prev = SPEC_ENTRY * COUNT, starts[COUNT];
    for (int k = 0; k < COUNT; k++) {
        sizes[k] = (size_t)(ends[k] - prev);
        starts[k] = prev - SPEC_ENTRY * COUNT;
        prev = ends[k];
    }
    built b = build(777, sizes, COUNT, 22);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    layout l = layout_of(b.buf);
    assert_int_equal(h.stored_len, 4 * C);
    assert_int_equal(l.chunks, 4);
    expect_round_trip(&b, 777);
    const uint8_t *d;
    size_t n;
    assert_int_equal(kl_batch_block_checked(&h, b.buf, 6, &d, &n), 0);
    assert_ptr_equal(d, l.body + 4 * C);
    assert_int_equal(n, 0);
    /* Damage each chunk in turn, at its first and its last byte. */
    for (uint64_t c = 0; c < l.chunks; c++) {
        for (int end = 0; end < 2; end++) {
            uint8_t *p = l.body + c * SPEC_CHUNK + (end ? SPEC_CHUNK - 1 : 0);
            *p ^= 0x01;
            expect_blocks_after_damage(&h, &b, c, starts);
            *p ^= 0x01;
        }
    }
    /* Spelled out: with chunks 2 and 3 (all of the data around 3C) damaged, the
     * zero-byte blocks 2, 4 and 6 are still served: they hold no bytes to damage. */
    l.body[2 * SPEC_CHUNK + 5] ^= 0x01;
    l.body[3 * SPEC_CHUNK + 5] ^= 0x01;
    for (uint32_t k = 0; k < COUNT; k++) {
        int rc = kl_batch_block_checked(&h, b.buf, k, &d, &n);
        assert_int_equal(rc, sizes[k] == 0 ? 0 : KL_ECORRUPT);
    }
    unbuild(&b);
}

static void test_chunk_moved_to_another_position_or_batch_fails(void **state) {
    (void)state;
    /* One block of identical bytes: chunks 1, 2 and 3 are byte for byte the same. */
    size_t sizes[1] = {4 * SPEC_CHUNK - 4};
    built b = build(300, sizes, 1, 23);
    memset(b.data, 0x6b, b.data_bytes);
    reframe(&b, 300);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    layout l = layout_of(b.buf);
    assert_int_equal(l.chunks, 4);
    assert_memory_equal(l.body + SPEC_CHUNK, l.body + 2 * SPEC_CHUNK, SPEC_CHUNK);
    for (uint64_t i = 1; i < 4; i++)
        for (uint64_t j = i + 1; j < 4; j++)
            assert_true(kl_load64(l.sums + 8 * i) != kl_load64(l.sums + 8 * j));
    /* Identical bytes under another chunk's checksum (chunks swapped), resealed: refused. */
    for (uint64_t i = 1; i < 4; i++) {
        for (uint64_t j = 1; j < 4; j++) {
            if (i == j)
                continue;
            uint8_t saved[8];
            memcpy(saved, l.sums + 8 * j, 8);
            memcpy(l.sums + 8 * j, l.sums + 8 * i, 8);
            reseal_sums(b.buf);
            h = decode_ok(b.buf, b.len);
            assert_int_equal(kl_batch_verify(&h, b.buf), KL_ECORRUPT);
            assert_int_equal(kl_batch_verify_range(&h, b.buf, j * SPEC_CHUNK, 1), KL_ECORRUPT);
            assert_int_equal(kl_batch_verify_range(&h, b.buf, i * SPEC_CHUNK, 1), 0);
            memcpy(l.sums + 8 * j, saved, 8);
            reseal_sums(b.buf);
        }
    }
    h = decode_ok(b.buf, b.len);
    assert_int_equal(kl_batch_verify(&h, b.buf), 0);
    unbuild(&b);

    /* Two batches with the same blocks at different first indexes: the same body bytes,
     * no checksum in common; one's chunks under the other's header are refused. */
    size_t more[3] = {3000, 9000, 20};
    static const uint64_t other[] = {2001, 1000 + (1ull << 39), UINT64_MAX - 3};
    built a = build(1000, more, 3, 24);
    kl_batch_hdr ha = decode_ok(a.buf, a.len);
    layout la = layout_of(a.buf);
    for (size_t o = 0; o < sizeof other / sizeof other[0]; o++) {
        built c = build(other[o], more, 3, 24);
        layout lc = layout_of(c.buf);
        assert_memory_equal(la.body, lc.body, ha.stored_len);
        for (uint64_t i = 0; i < la.chunks; i++)
            assert_true(kl_load64(la.sums + 8 * i) != kl_load64(lc.sums + 8 * i));
        memcpy(lc.sums, la.sums, SPEC_SUM * la.chunks);
        reseal_sums(c.buf);
        kl_batch_hdr hc = decode_ok(c.buf, c.len);
        assert_int_equal(kl_batch_verify(&hc, c.buf), KL_ECORRUPT);
        for (uint64_t i = 0; i < la.chunks; i++)
            assert_int_equal(kl_batch_verify_range(&hc, c.buf, i * SPEC_CHUNK, 1), KL_ECORRUPT);
        for (uint32_t k = 0; k < hc.count; k++) {
            const uint8_t *d;
            size_t n;
            assert_int_equal(kl_batch_block_checked(&hc, c.buf, k, &d, &n), KL_ECORRUPT);
        }
        unbuild(&c);
    }
    unbuild(&a);
}

/* Change the header with `edit`, reseal it, and expect the field check to refuse it. */
typedef void (*edit_fn)(uint8_t *p);

static void expect_field_refused(const uint8_t *hdr, edit_fn edit, const char *why,
                                 const char *what) {
    uint8_t t[KL_BATCH_HEADER_BYTES];
    memcpy(t, hdr, sizeof t);
    edit(t);
    reseal(t);
    kl_batch_hdr h;
    kl_err_clear();
    int rc = kl_batch_hdr_decode(t, sizeof t, &h);
    if (rc != KL_ECORRUPT)
        fail_msg("%s: decode returned %d, expected KL_ECORRUPT", what, rc);
    /* The checksum is right, so the reason must be the field, and the one named. */
    if (!strstr(kl_last_error(), why))
        fail_msg("%s: refused for the wrong reason: \"%s\", expected \"%s\"", what, kl_last_error(),
                 why);
}

static void e_nothing(uint8_t *p) {
    (void)p;
}
static void e_count0(uint8_t *p) {
    kl_store32(p + 16, 0);
}
static void e_count0_consistent(uint8_t *p) {
    /* count 0 with raw_len = stored_len = 4 * 0 + data_bytes: only the count is wrong. */
    kl_store32(p + 16, 0);
    kl_store32(p + 20, (uint32_t)kl_load64(p + 40));
    kl_store32(p + 24, (uint32_t)kl_load64(p + 40));
}
static void e_count_too_big(uint8_t *p) {
    kl_store32(p + 16, KL_MAX_APPEND_BLOCKS + 1);
}
static void e_count_too_big_consistent(uint8_t *p) {
    uint32_t raw = (uint32_t)(4ull * (KL_MAX_APPEND_BLOCKS + 1ull) + kl_load64(p + 40));
    kl_store32(p + 16, KL_MAX_APPEND_BLOCKS + 1);
    kl_store32(p + 20, raw);
    kl_store32(p + 24, raw);
}
static void e_raw_plus1(uint8_t *p) {
    kl_store32(p + 24, kl_load32(p + 24) + 1);
}
static void e_raw_minus1(uint8_t *p) {
    kl_store32(p + 24, kl_load32(p + 24) - 1);
}
static void e_raw_plus1_stored_too(uint8_t *p) {
    /* raw = stored, both one too big: only the raw = 4 * count + data rule is broken. */
    kl_store32(p + 20, kl_load32(p + 24) + 1);
    kl_store32(p + 24, kl_load32(p + 24) + 1);
}
static void e_raw_old_entry_size(uint8_t *p) {
    /* The previous format's 8-byte entries: raw = 8 * count + data_bytes. */
    uint32_t raw = (uint32_t)(8ull * kl_load32(p + 16) + kl_load64(p + 40));
    kl_store32(p + 20, raw);
    kl_store32(p + 24, raw);
}
static void e_data_plus1(uint8_t *p) {
    kl_store64(p + 40, kl_load64(p + 40) + 1);
}
static void e_data_huge(uint8_t *p) {
    /* 4 GiB more data than the header's blocks hold: a 32-bit truncation would hide it. */
    uint64_t data = (1ull << 32) + kl_load64(p + 40);
    kl_store64(p + 40, data);
}
static void e_data_past_limit_consistent(uint8_t *p) {
    /* One byte past KL_MAX_APPEND_BYTES, with raw_len and stored_len agreeing. */
    uint64_t data = KL_MAX_APPEND_BYTES + 1ull;
    uint32_t raw = (uint32_t)(4ull * kl_load32(p + 16) + data);
    kl_store64(p + 40, data);
    kl_store32(p + 20, raw);
    kl_store32(p + 24, raw);
}
static void e_count_plus1_keeps_raw(uint8_t *p) {
    kl_store32(p + 16, kl_load32(p + 16) + 1);
}
static void e_stored_minus1(uint8_t *p) {
    kl_store32(p + 20, kl_load32(p + 20) - 1);
}
static void e_stored_plus1(uint8_t *p) {
    kl_store32(p + 20, kl_load32(p + 20) + 1);
}
static void e_stored0(uint8_t *p) {
    kl_store32(p + 20, 0);
}
static void e_stored_max(uint8_t *p) {
    kl_store32(p + 20, UINT32_MAX);
}
static void e_codec2(uint8_t *p) {
    p[6] = 2;
}
static void e_codec255(uint8_t *p) {
    p[6] = 255;
}
static void e_flags(uint8_t *p) {
    p[7] = 1;
}
static void e_flags_high(uint8_t *p) {
    p[7] = 0x80;
}
static void e_reserved(uint8_t *p) {
    p[28] = 1;
}
static void e_reserved_high(uint8_t *p) {
    p[31] = 0x80;
}
static void e_first_overflow(uint8_t *p) {
    kl_store64(p + 8, UINT64_MAX - kl_load32(p + 16) + 1);
}
static void e_first_max(uint8_t *p) {
    kl_store64(p + 8, UINT64_MAX);
}
static void e_version2(uint8_t *p) {
    kl_store16(p + 4, 2);
}
static void e_version0(uint8_t *p) {
    kl_store16(p + 4, 0);
}

static void test_field_checks_refuse_a_resealed_header(void **state) {
    (void)state;
    size_t sizes[3] = {5, 6, 7};
    built b = build(40, sizes, 3, 11);
    /* Control: resealing an unchanged header keeps it valid, so the helper is sound. */
    uint8_t t[KL_BATCH_HEADER_BYTES];
    memcpy(t, b.buf, sizeof t);
    e_nothing(t);
    reseal(t);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(t, sizeof t, &h), 0);

    const char *range = "out of range", *lens = "lengths disagree", *fit = "does not fit";
    const char *codec = "unknown codec or flags", *over = "first index overflows";
    const char *version = "unknown batch version";
    expect_field_refused(b.buf, e_count0, range, "count 0");
    expect_field_refused(b.buf, e_count0_consistent, range, "count 0, lengths consistent");
    expect_field_refused(b.buf, e_count_too_big, range, "count above KL_MAX_APPEND_BLOCKS");
    expect_field_refused(b.buf, e_count_too_big_consistent, range,
                         "count above KL_MAX_APPEND_BLOCKS, lengths consistent");
    expect_field_refused(b.buf, e_raw_plus1, lens, "raw_len one too big");
    expect_field_refused(b.buf, e_raw_minus1, lens, "raw_len one too small");
    expect_field_refused(b.buf, e_raw_plus1_stored_too, lens, "raw = stored, one too big");
    expect_field_refused(b.buf, e_raw_old_entry_size, lens, "raw_len with 8-byte entries");
    expect_field_refused(b.buf, e_data_plus1, lens, "data_bytes disagrees with raw_len");
    expect_field_refused(b.buf, e_data_huge, lens, "data_bytes past the limit");
    expect_field_refused(b.buf, e_data_past_limit_consistent, lens,
                         "data_bytes past the limit, consistent");
    expect_field_refused(b.buf, e_count_plus1_keeps_raw, lens, "count disagrees with raw_len");
    expect_field_refused(b.buf, e_stored_minus1, fit, "stored < raw for codec none");
    expect_field_refused(b.buf, e_stored_plus1, fit, "stored > raw for codec none");
    expect_field_refused(b.buf, e_codec2, codec, "codec 2");
    expect_field_refused(b.buf, e_codec255, codec, "codec 255");
    expect_field_refused(b.buf, e_flags, codec, "flags 1");
    expect_field_refused(b.buf, e_flags_high, codec, "flags 0x80");
    expect_field_refused(b.buf, e_reserved, codec, "reserved byte 28");
    expect_field_refused(b.buf, e_reserved_high, codec, "reserved byte 31");
    expect_field_refused(b.buf, e_first_overflow, over, "first_index + count overflows");
    expect_field_refused(b.buf, e_first_max, over, "first_index UINT64_MAX");
    expect_field_refused(b.buf, e_version2, version, "version 2");
    expect_field_refused(b.buf, e_version0, version, "version 0");

    /* A zstd header: stored_len must be 1..raw_len. */
    kl_batch_hdr z = {.codec = KL_CODEC_ZSTD,
                      .first_index = 3,
                      .count = 2,
                      .stored_len = 9,
                      .raw_len = 8 + 100,
                      .timestamp_ms = 1,
                      .data_bytes = 100,
                      .sums_checksum = 42};
    uint8_t zp[KL_BATCH_HEADER_BYTES];
    kl_batch_hdr_encode(zp, &z);
    assert_int_equal(kl_batch_hdr_decode(zp, sizeof zp, &h), 0);
    expect_field_refused(zp, e_stored0, fit, "zstd with stored 0");
    expect_field_refused(zp, e_stored_max, fit, "zstd with stored UINT32_MAX");
    expect_field_refused(zp, e_raw_minus1, lens, "zstd raw_len one too small");
    expect_field_refused(zp, e_codec2, codec, "codec 2 over a zstd header");
    z.stored_len = z.raw_len + 1;
    kl_batch_hdr_encode(zp, &z);
    expect_field_refused(zp, e_nothing, fit, "zstd with stored = raw + 1");
    unbuild(&b);
}

static void test_zstd_header_with_stored_up_to_raw_is_accepted(void **state) {
    (void)state;
    /* The stored = raw check is for codec none only: a zstd header may say 1..raw_len. */
    const uint32_t stored[] = {1, 9, 107, 108};
    for (size_t i = 0; i < sizeof stored / sizeof stored[0]; i++) {
        kl_batch_hdr h = {.codec = KL_CODEC_ZSTD,
                          .first_index = 3,
                          .count = 2,
                          .stored_len = stored[i],
                          .raw_len = 8 + 100,
                          .timestamp_ms = 1,
                          .data_bytes = 100,
                          .sums_checksum = 42};
        uint8_t p[KL_BATCH_HEADER_BYTES];
        kl_batch_hdr_encode(p, &h);
        kl_batch_hdr d;
        assert_int_equal(kl_batch_hdr_decode(p, sizeof p, &d), 0);
        assert_int_equal(d.codec, KL_CODEC_ZSTD);
        assert_int_equal(d.stored_len, stored[i]);
        assert_int_equal(d.raw_len, 108);
        assert_int_equal(d.sums_checksum, 42);
        assert_int_equal(kl_load64(p + 48), 42);
        assert_int_equal(kl_batch_frame_len(&d), spec_frame_bytes(stored[i]));
    }
}

/* Reference rule of FORMAT.md for a table: ends non-decreasing, all <= data, last = data. */
static int table_ok_ref(const uint32_t *ends, uint32_t count, uint64_t data_bytes) {
    uint64_t prev = 0;
    for (uint32_t k = 0; k < count; k++) {
        if (ends[k] < prev || ends[k] > data_bytes)
            return 0;
        prev = ends[k];
    }
    return prev == data_bytes;
}

/*
 * Look block k up in a frame whose table may be damaged: kl_batch_block must
 * stay inside the data area, and kl_batch_block_checked must agree with it
 * (checksums recomputed) or refuse (checksums stale). Returns the lookup's rc.
 */
static int lookup_within_bounds(const kl_batch_hdr *h, uint8_t *frame, uint32_t k,
                                const uint32_t *ends, int sealed) {
    const uint8_t *raw = kl_batch_stored(h, frame);
    const uint8_t *data_lo = raw + SPEC_ENTRY * h->count, *data_hi = raw + h->raw_len;
    const uint8_t *d = NULL, *dc = NULL;
    size_t n = 0, nc = 0;
    int rc = kl_batch_block(h, raw, k, &d, &n);
    if (rc == 0) {
        /* Whatever the table says, a found block lies inside the data area. */
        assert_true(d >= data_lo && d <= data_hi);
        assert_true(n <= (size_t)(data_hi - d));
        uint64_t start = k ? ends[k - 1] : 0;
        assert_true(start <= ends[k] && ends[k] <= h->data_bytes);
        assert_true(d == data_lo + start && n == ends[k] - start);
    } else {
        assert_int_equal(rc, KL_ECORRUPT);
    }
    int rcc = kl_batch_block_checked(h, frame, k, &dc, &nc);
    if (sealed) {
        assert_int_equal(rcc, rc);
        if (rc == 0)
            assert_true(dc == d && nc == n);
    }
    return rc;
}

static void test_damaged_table_never_points_outside_the_body(void **state) {
    (void)state;
    enum { COUNT = 4 };
    size_t sizes[COUNT] = {5, 12, 0, 23};
    built b = build(0, sizes, COUNT, 12);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    uint8_t *raw = layout_of(b.buf).body;
    uint8_t *orig = malloc(b.len);
    assert_non_null(orig);
    memcpy(orig, b.buf, b.len);
    const uint32_t vals[] = {0, 4, 5, 17, 39, 40, 41, 0x7fffffffu, 0xffffffffu};
    const size_t nv = sizeof vals / sizeof vals[0];
    size_t combos = 1;
    for (int i = 0; i < COUNT; i++)
        combos *= nv;
    size_t accepted_tables = 0, refused_lookups = 0;
    for (size_t c = 0; c < combos; c++) {
        uint32_t ends[COUNT];
        size_t x = c;
        int same = 1;
        for (int k = 0; k < COUNT; k++, x /= nv) {
            ends[k] = vals[x % nv];
            kl_store32(raw + SPEC_ENTRY * k, ends[k]);
            same &= ends[k] == kl_load32(orig + (raw - b.buf) + SPEC_ENTRY * k);
        }
        int ok = kl_batch_table_verify(&h, raw) == 0;
        assert_int_equal(ok, table_ok_ref(ends, COUNT, h.data_bytes));
        accepted_tables += (size_t)ok;
        /* Stale checksums: the damaged table's chunk fails, so no checked lookup succeeds. */
        for (uint32_t k = 0; k < COUNT; k++) {
            const uint8_t *d;
            size_t n;
            assert_int_equal(kl_batch_block_checked(&h, b.buf, k, &d, &n), same ? 0 : KL_ECORRUPT);
        }
        /* Checksums recomputed over the damaged table: only the bounds stand in the way. */
        reseal_frame(b.buf);
        for (uint32_t k = 0; k < COUNT; k++) {
            if (lookup_within_bounds(&h, b.buf, k, ends, 1) != 0) {
                refused_lookups++;
                assert_false(ok); /* a table that verifies lets every block be found */
            }
        }
        memcpy(b.buf, orig, b.len);
    }
    assert_true(accepted_tables > 0);
    assert_true(refused_lookups > 0);
    free(orig);
    unbuild(&b);
}

static void test_damaged_multi_chunk_table_never_points_outside_the_body(void **state) {
    (void)state;
    uint64_t *starts;
    built b = build_mixed(5, 25, &starts);
    kl_batch_hdr h = decode_ok(b.buf, b.len);
    uint8_t *raw = layout_of(b.buf).body;
    uint32_t *ends = malloc(h.count * sizeof *ends);
    assert_non_null(ends);
    for (uint32_t k = 0; k < h.count; k++)
        ends[k] = kl_load32(raw + SPEC_ENTRY * k);
    uint64_t st = 26;
    size_t refused = 0;
    for (int round = 0; round < 300; round++) {
        /* Damage one to three entries, with values near, at and far past the bounds. */
        int edits = 1 + (int)(tu_rand(&st) % 3);
        uint32_t ks[3];
        for (int e = 0; e < edits; e++) {
            uint32_t k = (uint32_t)(tu_rand(&st) % h.count);
            uint64_t r = tu_rand(&st);
            uint32_t v;
            switch (r % 4) {
            case 0:
                v = (uint32_t)(h.data_bytes + r % 3); /* at, 1 past, 2 past the end */
                break;
            case 1:
                v = (uint32_t)(r >> 8);
                break;
            case 2:
                v = ends[k] + (uint32_t)(r >> 60) - 8u;
                break;
            default:
                v = (uint32_t)((r >> 8) % (h.data_bytes + 1));
                break;
            }
            ks[e] = k;
            ends[k] = v;
            kl_store32(raw + SPEC_ENTRY * k, v);
        }
        int ok = kl_batch_table_verify(&h, raw) == 0;
        assert_int_equal(ok, table_ok_ref(ends, h.count, h.data_bytes));
        reseal_frame(b.buf);
        for (int e = 0; e < edits; e++) {
            for (uint32_t k = ks[e] ? ks[e] - 1 : 0; k <= ks[e] + 1 && k < h.count; k++)
                refused += lookup_within_bounds(&h, b.buf, k, ends, 1) != 0;
        }
        /* Restore the table, then check the frame is whole again. */
        uint64_t at = 0;
        for (uint32_t k = 0; k < h.count; k++) {
            at += b.blocks[k].size;
            ends[k] = (uint32_t)at;
            kl_store32(raw + SPEC_ENTRY * k, ends[k]);
        }
        reseal_frame(b.buf);
    }
    assert_true(refused > 0);
    expect_round_trip(&b, 5);
    free(ends);
    free(starts);
    unbuild(&b);
}

/* Compress a framed batch into a heap buffer of exactly kl_batch_zstd_bound (caller frees). */
static uint8_t *compress_batch(const built *b, size_t *out_len) {
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    kl_batch_hdr h = decode_ok(b->buf, b->len);
    size_t cap = kl_batch_zstd_bound(h.raw_len);
    assert_true(cap >= spec_frame_bytes(ZSTD_compressBound(h.raw_len)));
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    *out_len = kl_batch_compress(cctx, 3, b->buf, out, cap);
    ZSTD_freeCCtx(cctx);
    return out;
}

/* A batch of text-like, compressible blocks. */
static built build_compressible(uint64_t first, size_t count) {
    size_t *sizes = malloc(count * sizeof *sizes);
    assert_non_null(sizes);
    for (size_t k = 0; k < count; k++)
        sizes[k] = 20 + k % 50;
    built b = build(first, sizes, count, 14);
    free(sizes);
    for (uint64_t i = 0; i < b.data_bytes; i++)
        b.data[i] = (uint8_t)("kappa log event "[i % 16]);
    reframe(&b, first);
    return b;
}

/* About 4 bits of entropy a byte: zstd roughly halves it, so ~50 KiB stores in many chunks. */
static built build_half_compressible(uint64_t first, size_t count, size_t size) {
    size_t *sizes = malloc(count * sizeof *sizes);
    assert_non_null(sizes);
    for (size_t k = 0; k < count; k++)
        sizes[k] = k % 5 == 3 ? 0 : size;
    built b = build(first, sizes, count, 27);
    free(sizes);
    uint64_t st = 28;
    for (uint64_t i = 0; i < b.data_bytes; i++)
        b.data[i] = (uint8_t)("0123456789abcdef"[tu_rand(&st) & 15]);
    reframe(&b, first);
    return b;
}

/* Check a compressed frame of b and decompress it back to b's raw body, block by block. */
static void expect_zstd_round_trip(const built *b, const uint8_t *z, size_t zlen, uint64_t first) {
    kl_batch_hdr h = decode_ok(z, zlen);
    assert_int_equal(h.codec, KL_CODEC_ZSTD);
    assert_int_equal(h.first_index, first);
    assert_int_equal(h.count, b->count);
    assert_int_equal(h.data_bytes, b->data_bytes);
    assert_int_equal(h.raw_len, SPEC_ENTRY * b->count + b->data_bytes);
    assert_true(h.stored_len >= 1 && h.stored_len < h.raw_len);
    assert_int_equal(zlen, spec_frame_bytes(h.stored_len));
    assert_true(zlen < b->len);
    assert_int_equal(h.timestamp_ms, TS_MS);
    /* The chunks cover the compressed bytes, laid out as FORMAT.md says. */
    expect_spec_sums((uint8_t *)z);
    const uint8_t *stored = kl_batch_stored(&h, z);
    assert_ptr_equal(stored, layout_of((uint8_t *)z).body);
    assert_int_equal(kl_batch_verify(&h, z), 0);
    assert_int_equal(kl_batch_verify_range(&h, z, 0, h.stored_len), 0);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    assert_non_null(dctx);
    uint8_t *raw = malloc(h.raw_len);
    assert_non_null(raw);
    assert_int_equal(kl_batch_decompress(dctx, &h, stored, raw), 0);
    assert_memory_equal(raw, layout_of(b->buf).body, h.raw_len);
    for (uint32_t k = 0; k < h.count; k++) {
        const uint8_t *d;
        size_t n;
        assert_int_equal(kl_batch_block(&h, raw, k, &d, &n), 0);
        assert_int_equal(n, b->blocks[k].size);
        if (n)
            assert_memory_equal(d, b->blocks[k].data, n);
    }
    ZSTD_freeDCtx(dctx);
    free(raw);
}

static void test_zstd_round_trip(void **state) {
    (void)state;
    built b = build_compressible(77, 300);
    size_t zlen = 0;
    uint8_t *z = compress_batch(&b, &zlen);
    assert_true(zlen > KL_BATCH_HEADER_BYTES);
    expect_zstd_round_trip(&b, z, zlen, 77);
    free(z);
    unbuild(&b);
    /* A compressed body of several chunks. */
    b = build_half_compressible(1ull << 41, 64, 1024);
    z = compress_batch(&b, &zlen);
    assert_true(zlen > 0);
    assert_true(layout_of(z).chunks >= 4);
    assert_true(layout_of(z).chunks < layout_of(b.buf).chunks);
    expect_zstd_round_trip(&b, z, zlen, 1ull << 41);
    free(z);
    unbuild(&b);
}

static void test_zstd_flip_is_caught_before_decompression(void **state) {
    (void)state;
    /* A small compressed body: every bit past the header. */
    built b = build_compressible(5, 200);
    size_t zlen = 0;
    uint8_t *z = compress_batch(&b, &zlen);
    assert_true(zlen > 0);
    kl_batch_hdr h = decode_ok(z, zlen);
    for (uint64_t bit = 0; bit < 8 * (zlen - SPEC_HDR); bit++)
        expect_flip_refused(&h, z, bit);
    assert_int_equal(kl_batch_verify(&h, z), 0);
    free(z);
    unbuild(&b);
    /* A compressed body of several chunks: each chunk's ends, each checksum, 1000 random bits. */
    b = build_half_compressible(9, 64, 1024);
    z = compress_batch(&b, &zlen);
    assert_true(zlen > 0);
    h = decode_ok(z, zlen);
    layout l = layout_of(z);
    uint64_t sums_bits = 8 * SPEC_SUM * l.chunks;
    for (uint64_t i = 0; i < l.chunks; i++) {
        expect_flip_refused(&h, z, 64 * i + i % 64);
        expect_flip_refused(&h, z, sums_bits + 8 * SPEC_CHUNK * i);
        expect_flip_refused(&h, z, sums_bits + 8 * (SPEC_CHUNK * i + chunk_len(&l, i)) - 1);
    }
    uint64_t st = 29;
    for (int s = 0; s < 1000; s++)
        expect_flip_refused(&h, z, tu_rand(&st) % (8 * (zlen - SPEC_HDR)));
    assert_int_equal(kl_batch_verify(&h, z), 0);
    free(z);
    unbuild(&b);
}

static void test_incompressible_batch_stays_uncompressed(void **state) {
    (void)state;
    size_t sizes[2] = {4000, 3000}; /* seeded random bytes */
    built b = build(0, sizes, 2, 15);
    size_t zlen = 1;
    uint8_t *z = compress_batch(&b, &zlen);
    assert_int_equal(zlen, 0);
    free(z);
    unbuild(&b);
    /* Several chunks of random bytes, and a single byte. */
    size_t big[3] = {20000, 0, 13}, one[1] = {1};
    b = build(0, big, 3, 16);
    zlen = 1;
    z = compress_batch(&b, &zlen);
    assert_int_equal(zlen, 0);
    free(z);
    unbuild(&b);
    b = build(0, one, 1, 16);
    zlen = 1;
    z = compress_batch(&b, &zlen);
    assert_int_equal(zlen, 0);
    free(z);
    unbuild(&b);
}

static void test_compression_is_kept_only_when_the_frame_shrinks(void **state) {
    (void)state;
    /* Small bodies of k zero bytes then noise: zstd's output crosses raw_len one byte at a
     * time, so the boundary (n = raw_len: keep the plain frame; n = raw_len - 1: compress)
     * is met exactly. kl_batch_compress must agree with zstd's own answer every time. */
    ZSTD_CCtx *ref = ZSTD_createCCtx();
    assert_non_null(ref);
    int seen_equal = 0, seen_one_less = 0;
    for (size_t size = 40; size < 160 && !(seen_equal && seen_one_less); size += 3) {
        size_t sizes[1] = {size};
        built b = build(size, sizes, 1, 31);
        for (size_t k = 0; k <= size; k++) {
            memset(b.data, 0, k);
            reframe(&b, size);
            const uint8_t *raw = layout_of(b.buf).body;
            uint32_t raw_len = (uint32_t)(SPEC_ENTRY + size);
            uint8_t out[512];
            assert_true(ZSTD_compressBound(raw_len) <= sizeof out);
            size_t n = ZSTD_compressCCtx(ref, out, sizeof out, raw, raw_len, 3);
            assert_false(ZSTD_isError(n));
            seen_equal |= n == raw_len;
            seen_one_less |= n + 1 == raw_len;
            size_t zlen = 0;
            uint8_t *z = compress_batch(&b, &zlen);
            size_t want = spec_frame_bytes(n) < b.len ? (size_t)spec_frame_bytes(n) : 0;
            if (zlen != want)
                fail_msg("%zu-byte block, %zu zeros: zstd makes %zu of %u bytes, compress "
                         "returned %zu, expected %zu",
                         size, k, n, raw_len, zlen, want);
            if (zlen)
                assert_memory_equal(layout_of(z).body, out, n);
            free(z);
        }
        unbuild(&b);
    }
    assert_true(seen_equal && seen_one_less);
    ZSTD_freeCCtx(ref);
}

/*
 * A zstd frame of h0's blocks whose stored body is `body` (body_len bytes),
 * raw_len claimed as given, every checksum correct: the decompressor is what
 * must refuse a bad body. Returns kl_batch_decompress's result.
 */
static int decompress_with_body(const kl_batch_hdr *h0, const uint8_t *body, uint32_t body_len,
                                uint32_t raw_len_claim) {
    kl_batch_hdr h = *h0;
    h.stored_len = body_len;
    h.raw_len = raw_len_claim;
    h.data_bytes = raw_len_claim - SPEC_ENTRY * (uint64_t)h.count;
    size_t len = (size_t)spec_frame_bytes(body_len);
    uint8_t *frame = malloc(len);
    assert_non_null(frame);
    kl_batch_hdr_encode(frame, &h);
    memcpy(layout_of(frame).body, body, body_len);
    reseal_frame(frame);
    kl_batch_hdr d = decode_ok(frame, len);
    /* The checksums hold. */
    assert_int_equal(kl_batch_verify(&d, frame), 0);
    uint8_t *raw = malloc(d.raw_len);
    assert_non_null(raw);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    assert_non_null(dctx);
    int rc = kl_batch_decompress(dctx, &d, kl_batch_stored(&d, frame), raw);
    if (rc == 0) /* what decompresses has a table that verifies */
        assert_int_equal(kl_batch_table_verify(&d, raw), 0);
    ZSTD_freeDCtx(dctx);
    free(raw);
    free(frame);
    return rc;
}

/* A zstd frame of raw (raw_len bytes), with or without the content size in its header. */
static size_t zstd_of(const uint8_t *raw, size_t raw_len, uint8_t **out, int content_size) {
    size_t cap = ZSTD_compressBound(raw_len);
    *out = malloc(cap);
    assert_non_null(*out);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    assert_non_null(c);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, content_size)));
    size_t n = ZSTD_compress2(c, *out, cap, raw, raw_len);
    assert_false(ZSTD_isError(n));
    ZSTD_freeCCtx(c);
    return n;
}

static void test_bad_zstd_body_is_refused(void **state) {
    (void)state;
    built b = build_compressible(10, 200);
    size_t zlen = 0;
    uint8_t *z = compress_batch(&b, &zlen);
    assert_true(zlen > KL_BATCH_HEADER_BYTES);
    kl_batch_hdr h = decode_ok(z, zlen);
    uint8_t *body = layout_of(z).body;
    uint32_t blen = h.stored_len;
    const uint8_t *plain = layout_of(b.buf).body;

    /* Control: the real body, resealed the same way, decompresses. */
    assert_int_equal(decompress_with_body(&h, body, blen, h.raw_len), 0);
    /* Garbage that is not a zstd frame. */
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof junk);
    assert_int_equal(decompress_with_body(&h, junk, sizeof junk, h.raw_len), KL_ECORRUPT);
    /* An empty body never gets that far: the header refuses a zstd stored_len of 0. */
    {
        kl_batch_hdr e = h, d;
        e.stored_len = 0;
        uint8_t hb[KL_BATCH_HEADER_BYTES];
        kl_batch_hdr_encode(hb, &e);
        assert_int_equal(kl_batch_hdr_decode(hb, sizeof hb, &d), KL_ECORRUPT);
    }
    /* The frame cut short, at every length. */
    for (uint32_t cut = 1; cut < blen; cut++)
        assert_int_equal(decompress_with_body(&h, body, cut, h.raw_len), KL_ECORRUPT);
    /* A valid frame whose content size disagrees with the header's raw_len. */
    assert_int_equal(decompress_with_body(&h, body, blen, h.raw_len + 4), KL_ECORRUPT);
    assert_int_equal(decompress_with_body(&h, body, blen, h.raw_len - 4), KL_ECORRUPT);
    assert_int_equal(decompress_with_body(&h, body, blen, h.raw_len + 1), KL_ECORRUPT);
    /* The uncompressed body itself, stored as if it were zstd (stored = raw). */
    assert_int_equal(decompress_with_body(&h, plain, h.raw_len, h.raw_len), KL_ECORRUPT);
    /* A valid frame of the right raw body but without a content size in its header. */
    {
        uint8_t *zz;
        size_t n = zstd_of(plain, h.raw_len, &zz, 0);
        assert_int_equal(decompress_with_body(&h, zz, (uint32_t)n, h.raw_len), KL_ECORRUPT);
        free(zz);
        n = zstd_of(plain, h.raw_len, &zz, 1); /* control */
        assert_int_equal(decompress_with_body(&h, zz, (uint32_t)n, h.raw_len), 0);
        free(zz);
    }
    /* A valid frame of a raw body whose table is wrong. */
    {
        uint8_t *raw = malloc(h.raw_len);
        assert_non_null(raw);
        const uint32_t last = SPEC_ENTRY * (h.count - 1);
        const uint32_t bad[][2] = {
            {last, (uint32_t)h.data_bytes - 1}, /* last end != data_bytes */
            {last, (uint32_t)h.data_bytes + 1}, /* past the data */
            {0, (uint32_t)h.data_bytes},        /* then decreasing */
            {SPEC_ENTRY * 7, 0xffffffffu},      /* far outside */
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            memcpy(raw, plain, h.raw_len);
            kl_store32(raw + bad[i][0], bad[i][1]);
            uint8_t *zz;
            size_t n = zstd_of(raw, h.raw_len, &zz, 1);
            assert_int_equal(decompress_with_body(&h, zz, (uint32_t)n, h.raw_len), KL_ECORRUPT);
            free(zz);
        }
        free(raw);
    }
    /* Every byte of the frame damaged in turn, resealed: never a crash, mostly refused. */
    size_t refused = 0;
    for (uint32_t i = 0; i < blen; i++) {
        body[i] ^= 0xff;
        refused += decompress_with_body(&h, body, blen, h.raw_len) == KL_ECORRUPT;
        body[i] ^= 0xff;
    }
    assert_true(refused > blen / 2);
    free(z);
    unbuild(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_byte_blocks_round_trip),
        cmocka_unit_test(test_one_block_round_trips),
        cmocka_unit_test(test_many_blocks_round_trip),
        cmocka_unit_test(test_big_block_round_trips),
        cmocka_unit_test(test_chunk_count_follows_the_stored_length),
        cmocka_unit_test(test_every_header_bit_flip_is_refused),
        cmocka_unit_test(test_torn_batch_header_is_refused),
        cmocka_unit_test(test_truncated_header_is_refused),
        cmocka_unit_test(test_every_bit_flip_past_the_header_fails_verify),
        cmocka_unit_test(test_sampled_bit_flips_fail_verify_in_a_large_batch),
        cmocka_unit_test(test_sums_checksum_covers_the_chunk_checksums),
        cmocka_unit_test(test_verify_range_checks_exactly_the_chunks_it_touches),
        cmocka_unit_test(test_block_checked_serves_intact_blocks_around_a_damaged_chunk),
        cmocka_unit_test(test_block_checked_refuses_damaged_data_or_table_entries),
        cmocka_unit_test(test_block_spanning_chunks_and_zero_byte_blocks_at_boundaries),
        cmocka_unit_test(test_chunk_moved_to_another_position_or_batch_fails),
        cmocka_unit_test(test_field_checks_refuse_a_resealed_header),
        cmocka_unit_test(test_zstd_header_with_stored_up_to_raw_is_accepted),
        cmocka_unit_test(test_damaged_table_never_points_outside_the_body),
        cmocka_unit_test(test_damaged_multi_chunk_table_never_points_outside_the_body),
        cmocka_unit_test(test_zstd_round_trip),
        cmocka_unit_test(test_zstd_flip_is_caught_before_decompression),
        cmocka_unit_test(test_incompressible_batch_stays_uncompressed),
        cmocka_unit_test(test_compression_is_kept_only_when_the_frame_shrinks),
        cmocka_unit_test(test_bad_zstd_body_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
