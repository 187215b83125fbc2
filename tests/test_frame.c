/*
 * test_frame.c - batch framing (engine/frame.c, docs/FORMAT.md "Batch").
 *
 * What this proves: a framed batch decodes back to exactly its blocks, for
 * empty, single, many and big blocks; the header checksum refuses every
 * single-bit flip of the 64-byte header; the body checksum refuses flips in
 * the body; each consistency check of the header refuses on its own (the
 * damaged header is re-sealed with a correct checksum, so it is the field
 * check, not the checksum, that says no); a damaged block table can make a
 * lookup fail but never point outside the body; the per-block check catches
 * a flipped data byte and a table entry that points at another block (it is
 * seeded with the block's index, so even identical bytes fail); zstd
 * round-trips and a bad zstd body is refused; a truncated header is refused.
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
    b.len = KL_BATCH_HEADER_BYTES + kl_batch_raw_len(count, b.data_bytes);
    b.buf = malloc(b.len);
    assert_non_null(b.buf);
    size_t n = kl_batch_frame(b.buf, first, b.blocks, count, b.data_bytes, TS_MS);
    assert_int_equal(n, b.len);
    return b;
}

static void unbuild(built *b) {
    free(b->buf);
    free(b->blocks);
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Recompute the header checksum after a deliberate change to a field. */
static void reseal(uint8_t *p) {
    kl_store64(p + 56, XXH3_64bits(p, 56));
}

/* Decode, verify and read back every block of a framed batch; compare to b. */
static void expect_round_trip(const built *b, uint64_t first) {
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(b->buf, b->len, &h), 0);
    assert_int_equal(h.codec, KL_CODEC_NONE);
    assert_int_equal(h.first_index, first);
    assert_int_equal(h.count, b->count);
    assert_int_equal(h.data_bytes, b->data_bytes);
    assert_int_equal(h.raw_len, kl_batch_raw_len(b->count, b->data_bytes));
    assert_int_equal(h.stored_len, h.raw_len);
    assert_int_equal(h.timestamp_ms, TS_MS);
    const uint8_t *raw = b->buf + KL_BATCH_HEADER_BYTES;
    assert_int_equal(kl_batch_body_verify(&h, raw), 0);
    assert_int_equal(kl_batch_table_verify(&h, raw), 0);
    for (uint32_t k = 0; k < h.count; k++) {
        const uint8_t *d = NULL;
        size_t n = 0;
        assert_int_equal(kl_batch_block(&h, raw, k, &d, &n), 0);
        assert_int_equal(n, b->blocks[k].size);
        if (n)
            assert_memory_equal(d, b->blocks[k].data, n);
        assert_int_equal(kl_batch_block_verify(&h, raw, k, d, n), 0);
        assert_int_equal(kl_load32(raw + 8u * k + 4), kl_block_check(d, n, first + k));
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
    assert_int_equal(b.len, 64 + 7 * 8);
    expect_round_trip(&b, 12);
    unbuild(&b);
    size_t one[1] = {0};
    b = build(0, one, 1, 2);
    expect_round_trip(&b, 0);
    unbuild(&b);
}

static void test_one_block_round_trips(void **state) {
    (void)state;
    size_t sizes[1] = {1234};
    built b = build(99, sizes, 1, 3);
    assert_int_equal(b.len, 64 + 8 + 1234);
    /* The layout of FORMAT.md, byte by byte. */
    assert_int_equal(kl_load32(b.buf), 0x31424c4bu);
    assert_memory_equal(b.buf, "KLB1", 4);
    assert_int_equal(kl_load16(b.buf + 4), 1);
    assert_int_equal(b.buf[6], 0);
    assert_int_equal(b.buf[7], 0);
    assert_int_equal(kl_load64(b.buf + 8), 99);
    assert_int_equal(kl_load32(b.buf + 16), 1);
    assert_int_equal(kl_load32(b.buf + 20), 8 + 1234);
    assert_int_equal(kl_load32(b.buf + 24), 8 + 1234);
    assert_int_equal(kl_load32(b.buf + 28), 0);
    assert_int_equal(kl_load64(b.buf + 32), TS_MS);
    assert_int_equal(kl_load64(b.buf + 40), 1234);
    assert_int_equal(kl_load64(b.buf + 48), XXH3_64bits(b.buf + 64, 8 + 1234));
    assert_int_equal(kl_load64(b.buf + 56), XXH3_64bits(b.buf, 56));
    assert_int_equal(kl_load32(b.buf + 64), 1234);
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
    built b = build(1000000, sizes, N, 4);
    expect_round_trip(&b, 1000000);
    unbuild(&b);
    /* The highest first index whose last block still fits in a uint64. */
    b = build(UINT64_MAX - 10, sizes, 10, 5);
    expect_round_trip(&b, UINT64_MAX - 10);
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

static void test_body_bit_flips_fail_the_body_checksum(void **state) {
    (void)state;
    size_t sizes[4] = {3, 0, 40, 17};
    built b = build(1, sizes, 4, 10);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(b.buf, b.len, &h), 0);
    uint8_t *body = b.buf + KL_BATCH_HEADER_BYTES;
    for (unsigned bit = 0; bit < 8 * h.stored_len; bit++) {
        body[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (kl_batch_body_verify(&h, body) != KL_ECORRUPT)
            fail_msg("flip of body bit %u was accepted", bit);
        body[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(kl_batch_body_verify(&h, body), 0);
    unbuild(&b);
}

/* Change the header with `edit`, reseal it, and expect the field check to refuse it. */
typedef void (*edit_fn)(uint8_t *p);

static void expect_field_refused(const built *b, edit_fn edit, const char *what) {
    uint8_t t[KL_BATCH_HEADER_BYTES];
    memcpy(t, b->buf, sizeof t);
    edit(t);
    reseal(t);
    kl_batch_hdr h;
    kl_err_clear();
    int rc = kl_batch_hdr_decode(t, sizeof t, &h);
    if (rc != KL_ECORRUPT)
        fail_msg("%s: decode returned %d, expected KL_ECORRUPT", what, rc);
    /* The checksum is right, so the reason must be the field, not the checksum. */
    if (strstr(kl_last_error(), "checksum") || strstr(kl_last_error(), "magic"))
        fail_msg("%s: refused for the wrong reason: %s", what, kl_last_error());
}

static void e_nothing(uint8_t *p) {
    (void)p;
}
static void e_count0(uint8_t *p) {
    kl_store32(p + 16, 0);
}
static void e_count0_consistent(uint8_t *p) {
    /* count 0 with raw_len = stored_len = 8 * 0 + data_bytes: only the count is wrong. */
    kl_store32(p + 16, 0);
    kl_store32(p + 20, (uint32_t)kl_load64(p + 40));
    kl_store32(p + 24, (uint32_t)kl_load64(p + 40));
}
static void e_count_too_big(uint8_t *p) {
    kl_store32(p + 16, KL_MAX_APPEND_BLOCKS + 1);
}
static void e_count_too_big_consistent(uint8_t *p) {
    uint32_t raw = (uint32_t)kl_batch_raw_len(KL_MAX_APPEND_BLOCKS + 1ull, kl_load64(p + 40));
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
    uint32_t raw = (uint32_t)kl_batch_raw_len(kl_load32(p + 16), data);
    kl_store64(p + 40, data);
    kl_store32(p + 20, raw);
    kl_store32(p + 24, raw);
}
static void e_count_plus1_keeps_raw(uint8_t *p) {
    kl_store32(p + 16, kl_load32(p + 16) + 1);
}
static void e_stored_ne_raw(uint8_t *p) {
    kl_store32(p + 20, kl_load32(p + 20) - 1);
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

    expect_field_refused(&b, e_count0, "count 0");
    expect_field_refused(&b, e_count0_consistent, "count 0, lengths consistent");
    expect_field_refused(&b, e_count_too_big, "count above KL_MAX_APPEND_BLOCKS");
    expect_field_refused(&b, e_count_too_big_consistent,
                         "count above KL_MAX_APPEND_BLOCKS, lengths consistent");
    expect_field_refused(&b, e_raw_plus1, "raw_len one too big");
    expect_field_refused(&b, e_raw_minus1, "raw_len one too small");
    expect_field_refused(&b, e_data_plus1, "data_bytes disagrees with raw_len");
    expect_field_refused(&b, e_data_huge, "data_bytes past the limit");
    expect_field_refused(&b, e_data_past_limit_consistent, "data_bytes past the limit, consistent");
    expect_field_refused(&b, e_count_plus1_keeps_raw, "count disagrees with raw_len");
    expect_field_refused(&b, e_stored_ne_raw, "stored != raw for codec none");
    expect_field_refused(&b, e_codec2, "codec 2");
    expect_field_refused(&b, e_codec255, "codec 255");
    expect_field_refused(&b, e_flags, "flags 1");
    expect_field_refused(&b, e_flags_high, "flags 0x80");
    expect_field_refused(&b, e_reserved, "reserved byte 28");
    expect_field_refused(&b, e_reserved_high, "reserved byte 31");
    expect_field_refused(&b, e_first_overflow, "first_index + count overflows");
    expect_field_refused(&b, e_first_max, "first_index UINT64_MAX");
    expect_field_refused(&b, e_version2, "version 2");
    expect_field_refused(&b, e_version0, "version 0");
    unbuild(&b);
}

static void test_zstd_header_with_stored_below_raw_is_accepted(void **state) {
    (void)state;
    /* The stored != raw check is for codec none only: a zstd header may say less. */
    kl_batch_hdr h = {.codec = KL_CODEC_ZSTD,
                      .first_index = 3,
                      .count = 2,
                      .stored_len = 9,
                      .raw_len = 16 + 100,
                      .timestamp_ms = 1,
                      .data_bytes = 100,
                      .body_checksum = 42};
    uint8_t p[KL_BATCH_HEADER_BYTES];
    kl_batch_hdr_encode(p, &h);
    kl_batch_hdr d;
    assert_int_equal(kl_batch_hdr_decode(p, sizeof p, &d), 0);
    assert_int_equal(d.codec, KL_CODEC_ZSTD);
    assert_int_equal(d.stored_len, 9);
    assert_int_equal(d.raw_len, 116);
    assert_int_equal(d.body_checksum, 42);
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

static void test_damaged_table_never_points_outside_the_body(void **state) {
    (void)state;
    enum { COUNT = 4 };
    size_t sizes[COUNT] = {5, 12, 0, 23};
    built b = build(0, sizes, COUNT, 12);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(b.buf, b.len, &h), 0);
    uint8_t *raw = b.buf + KL_BATCH_HEADER_BYTES;
    const uint8_t *data_lo = raw + 8u * COUNT, *data_hi = raw + h.raw_len;
    const uint32_t vals[] = {0, 4, 5, 17, 39, 40, 41, 0x7fffffffu, 0xffffffffu};
    const size_t nv = sizeof vals / sizeof vals[0];
    size_t combos = 1;
    for (int i = 0; i < COUNT; i++)
        combos *= nv;
    size_t accepted_tables = 0, refused_lookups = 0;
    for (size_t c = 0; c < combos; c++) {
        uint32_t ends[COUNT];
        size_t x = c;
        for (int k = 0; k < COUNT; k++, x /= nv) {
            ends[k] = vals[x % nv];
            kl_store32(raw + 8u * k, ends[k]);
        }
        int ok = kl_batch_table_verify(&h, raw) == 0;
        assert_int_equal(ok, table_ok_ref(ends, COUNT, h.data_bytes));
        accepted_tables += (size_t)ok;
        for (uint32_t k = 0; k < COUNT; k++) {
            const uint8_t *d = NULL;
            size_t n = 0;
            if (kl_batch_block(&h, raw, k, &d, &n) != 0) {
                refused_lookups++;
                assert_false(ok); /* a table that verifies lets every block be found */
                continue;
            }
            /* Whatever the table says, a found block lies inside the data area. */
            assert_true(d >= data_lo && d <= data_hi);
            assert_true(n <= (size_t)(data_hi - d));
            uint64_t start = k ? ends[k - 1] : 0;
            assert_true(start <= ends[k] && ends[k] <= h.data_bytes);
            assert_true(d == data_lo + start && n == ends[k] - start);
            (void)kl_batch_block_verify(&h, raw, k, d, n); /* must not crash */
        }
    }
    assert_true(accepted_tables > 0);
    assert_true(refused_lookups > 0);
    unbuild(&b);
}

static void test_block_check_catches_a_flipped_data_byte(void **state) {
    (void)state;
    size_t sizes[3] = {30, 1, 50};
    built b = build(100, sizes, 3, 13);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(b.buf, b.len, &h), 0);
    uint8_t *raw = b.buf + KL_BATCH_HEADER_BYTES;
    uint8_t *data = raw + 8u * h.count;
    for (uint64_t i = 0; i < h.data_bytes; i++) {
        uint32_t owner = i < 30 ? 0 : i < 31 ? 1 : 2;
        for (unsigned bit = 0; bit < 8; bit++) {
            data[i] ^= (uint8_t)(1u << bit);
            for (uint32_t k = 0; k < h.count; k++) {
                const uint8_t *d;
                size_t n;
                assert_int_equal(kl_batch_block(&h, raw, k, &d, &n), 0);
                int rc = kl_batch_block_verify(&h, raw, k, d, n);
                /* Only the block holding the flipped byte fails. */
                assert_int_equal(rc, k == owner ? KL_ECORRUPT : 0);
            }
            data[i] ^= (uint8_t)(1u << bit);
        }
    }
    unbuild(&b);
}

static void test_block_check_catches_an_entry_pointing_at_another_block(void **state) {
    (void)state;
    /* Four blocks with identical bytes: only the index seed tells them apart. */
    enum { COUNT = 4, SIZE = 16 };
    kl_block blocks[COUNT];
    static const uint8_t same[SIZE] = "identical bytes";
    for (int k = 0; k < COUNT; k++)
        blocks[k] = (kl_block){.data = same, .size = SIZE};
    size_t len = KL_BATCH_HEADER_BYTES + kl_batch_raw_len(COUNT, COUNT * SIZE);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(kl_batch_frame(buf, 500, blocks, COUNT, COUNT * SIZE, 1), len);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(buf, len, &h), 0);
    uint8_t *raw = buf + KL_BATCH_HEADER_BYTES;
    for (uint32_t k = 0; k < COUNT; k++) {
        const uint8_t *dk;
        size_t nk;
        assert_int_equal(kl_batch_block(&h, raw, k, &dk, &nk), 0);
        assert_int_equal(kl_batch_block_verify(&h, raw, k, dk, nk), 0);
        for (uint32_t j = 0; j < COUNT; j++) {
            if (j == k)
                continue;
            /* Entry k carrying block j's check value (a whole entry copied from
             * another block, over identical bytes): refused thanks to the seed. */
            uint8_t saved[4];
            memcpy(saved, raw + 8u * k + 4, 4);
            memcpy(raw + 8u * k + 4, raw + 8u * j + 4, 4);
            assert_int_equal(kl_batch_block_verify(&h, raw, k, dk, nk), KL_ECORRUPT);
            memcpy(raw + 8u * k + 4, saved, 4);
        }
    }
    /* Distinct blocks: entry k leading to block j's bytes is refused. */
    {
        size_t sizes[COUNT] = {SIZE, SIZE, SIZE, SIZE};
        built b = build(900, sizes, COUNT, 16);
        kl_batch_hdr hb;
        assert_int_equal(kl_batch_hdr_decode(b.buf, b.len, &hb), 0);
        const uint8_t *rb = b.buf + KL_BATCH_HEADER_BYTES;
        for (uint32_t k = 0; k < COUNT; k++) {
            for (uint32_t j = 0; j < COUNT; j++) {
                const uint8_t *dj;
                size_t nj;
                assert_int_equal(kl_batch_block(&hb, rb, j, &dj, &nj), 0);
                assert_int_equal(kl_batch_block_verify(&hb, rb, k, dj, nj),
                                 j == k ? 0 : KL_ECORRUPT);
            }
        }
        unbuild(&b);
    }
    /* A table whose entry k spans block k+1's range (shifted ends): refused. */
    kl_store32(raw + 0, 2 * SIZE); /* block 0 now covers blocks 0 and 1 */
    const uint8_t *d;
    size_t n;
    assert_int_equal(kl_batch_block(&h, raw, 1, &d, &n), 0);
    assert_int_equal(n, 0u);
    assert_int_equal(kl_batch_block_verify(&h, raw, 1, d, n), KL_ECORRUPT);
    assert_int_equal(kl_batch_block(&h, raw, 0, &d, &n), 0);
    assert_int_equal(kl_batch_block_verify(&h, raw, 0, d, n), KL_ECORRUPT);
    free(buf);
}

/* Frame compressible blocks, compress; returns the compressed batch (caller frees). */
static uint8_t *compress_batch(const built *b, size_t *out_len) {
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(b->buf, b->len, &h), 0);
    size_t cap = KL_BATCH_HEADER_BYTES + kl_batch_zstd_bound(h.raw_len);
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
    size_t n = kl_batch_frame(b.buf, first, b.blocks, b.count, b.data_bytes, TS_MS);
    assert_int_equal(n, b.len);
    return b;
}

static void test_zstd_round_trip(void **state) {
    (void)state;
    built b = build_compressible(77, 300);
    size_t zlen = 0;
    uint8_t *z = compress_batch(&b, &zlen);
    assert_true(zlen > KL_BATCH_HEADER_BYTES && zlen < b.len);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(z, zlen, &h), 0);
    assert_int_equal(h.codec, KL_CODEC_ZSTD);
    assert_int_equal(h.first_index, 77);
    assert_int_equal(h.count, 300);
    assert_int_equal(h.data_bytes, b.data_bytes);
    assert_int_equal(h.raw_len, kl_batch_raw_len(300, b.data_bytes));
    assert_int_equal(h.stored_len, zlen - KL_BATCH_HEADER_BYTES);
    assert_int_equal(h.timestamp_ms, TS_MS);
    assert_int_equal(kl_batch_body_verify(&h, z + KL_BATCH_HEADER_BYTES), 0);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    assert_non_null(dctx);
    uint8_t *raw = malloc(h.raw_len);
    assert_non_null(raw);
    assert_int_equal(kl_batch_decompress(dctx, &h, z + KL_BATCH_HEADER_BYTES, raw), 0);
    assert_memory_equal(raw, b.buf + KL_BATCH_HEADER_BYTES, h.raw_len);
    for (uint32_t k = 0; k < h.count; k++) {
        const uint8_t *d;
        size_t n;
        assert_int_equal(kl_batch_block(&h, raw, k, &d, &n), 0);
        assert_int_equal(n, b.blocks[k].size);
        assert_memory_equal(d, b.blocks[k].data, n);
        assert_int_equal(kl_batch_block_verify(&h, raw, k, d, n), 0);
    }
    ZSTD_freeDCtx(dctx);
    free(raw);
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
}

/* Decompress a zstd batch whose stored body was replaced by `body` (resealed). */
static int decompress_with_body(const kl_batch_hdr *h0, const uint8_t *body, uint32_t body_len,
                                uint32_t raw_len_claim) {
    kl_batch_hdr h = *h0;
    h.stored_len = body_len;
    h.body_checksum = XXH3_64bits(body, body_len);
    h.raw_len = raw_len_claim;
    h.data_bytes = raw_len_claim - 8ull * h.count;
    uint8_t hb[KL_BATCH_HEADER_BYTES];
    kl_batch_hdr_encode(hb, &h);
    kl_batch_hdr d;
    assert_int_equal(kl_batch_hdr_decode(hb, sizeof hb, &d), 0);
    /* The body checksum holds: the decompressor is what must refuse. */
    assert_int_equal(kl_batch_body_verify(&d, body), 0);
    uint8_t *raw = malloc(d.raw_len);
    assert_non_null(raw);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    assert_non_null(dctx);
    int rc = kl_batch_decompress(dctx, &d, body, raw);
    ZSTD_freeDCtx(dctx);
    free(raw);
    return rc;
}

static void test_bad_zstd_body_is_refused(void **state) {
    (void)state;
    built b = build_compressible(10, 200);
    size_t zlen = 0;
    uint8_t *z = compress_batch(&b, &zlen);
    assert_true(zlen > KL_BATCH_HEADER_BYTES);
    kl_batch_hdr h;
    assert_int_equal(kl_batch_hdr_decode(z, zlen, &h), 0);
    uint8_t *body = z + KL_BATCH_HEADER_BYTES;
    uint32_t blen = h.stored_len;

    /* Control: the real body, resealed the same way, decompresses. */
    assert_int_equal(decompress_with_body(&h, body, blen, h.raw_len), 0);
    /* Garbage that is not a zstd frame. */
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof junk);
    assert_int_equal(decompress_with_body(&h, junk, sizeof junk, h.raw_len), KL_ECORRUPT);
    /* An empty body. */
    assert_int_equal(decompress_with_body(&h, junk, 0, h.raw_len), KL_ECORRUPT);
    /* The frame cut short, at every length. */
    for (uint32_t cut = 0; cut < blen; cut++)
        assert_int_equal(decompress_with_body(&h, body, cut, h.raw_len), KL_ECORRUPT);
    /* A valid frame whose content size disagrees with the header's raw_len. */
    assert_int_equal(decompress_with_body(&h, body, blen, h.raw_len + 8), KL_ECORRUPT);
    assert_int_equal(decompress_with_body(&h, body, blen, h.raw_len - 8), KL_ECORRUPT);
    /* A valid frame of a raw body whose table is wrong (last end != data_bytes). */
    {
        uint8_t *raw = malloc(h.raw_len);
        assert_non_null(raw);
        memcpy(raw, b.buf + KL_BATCH_HEADER_BYTES, h.raw_len);
        kl_store32(raw + 8u * (h.count - 1), (uint32_t)h.data_bytes - 1);
        size_t cap = ZSTD_compressBound(h.raw_len);
        uint8_t *zz = malloc(cap);
        assert_non_null(zz);
        size_t n = ZSTD_compress(zz, cap, raw, h.raw_len, 1);
        assert_false(ZSTD_isError(n));
        assert_int_equal(decompress_with_body(&h, zz, (uint32_t)n, h.raw_len), KL_ECORRUPT);
        free(zz);
        free(raw);
    }
    /* Every byte of the frame damaged in turn: never a crash, and mostly refused. */
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
        cmocka_unit_test(test_every_header_bit_flip_is_refused),
        cmocka_unit_test(test_torn_batch_header_is_refused),
        cmocka_unit_test(test_truncated_header_is_refused),
        cmocka_unit_test(test_body_bit_flips_fail_the_body_checksum),
        cmocka_unit_test(test_field_checks_refuse_a_resealed_header),
        cmocka_unit_test(test_zstd_header_with_stored_below_raw_is_accepted),
        cmocka_unit_test(test_damaged_table_never_points_outside_the_body),
        cmocka_unit_test(test_block_check_catches_a_flipped_data_byte),
        cmocka_unit_test(test_block_check_catches_an_entry_pointing_at_another_block),
        cmocka_unit_test(test_zstd_round_trip),
        cmocka_unit_test(test_incompressible_batch_stays_uncompressed),
        cmocka_unit_test(test_bad_zstd_body_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
