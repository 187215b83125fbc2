/*
 * fuzz_batch.c - libFuzzer target for the batch decoders (engine/frame.c,
 * docs/FORMAT.md "Batch").
 *
 * Input: a batch as it would sit in a segment, [64-byte header][8-byte
 * checksum per 1 KiB chunk of the stored body][stored body], possibly
 * followed by more bytes. Each input is decoded twice: as given, where the
 * XXH3 checksums must refuse nearly everything, and "resealed": the chunk
 * checksums, the sums checksum and the header checksum recomputed over the
 * input's own bytes, so the field checks, the range and block lookups, the
 * block table and the zstd decompressor see arbitrary content that a
 * checksum would otherwise hide from the fuzzer. The reseal leaves the
 * input's own checksum for chunk i when bit (i % 63) of the header's
 * timestamp is set (the timestamp is the one field no check constrains), and
 * the input's own sums checksum when bit 63 is, so batches with some good
 * and some bad chunks are reached too. A third pass checks the encoder: the
 * input cut into blocks (its payload tiled up to 128 times, at most 64 KiB,
 * so batches span many chunks), framed and (if it shrinks) compressed, must decode back to
 * those blocks, and one flipped byte must fail kl_batch_verify.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash): a
 * decoded header has count >= 1, raw_len = 4 * count + data_bytes, stored =
 * raw for codec none, 1 <= stored <= raw for zstd, no first_index overflow,
 * carries FORMAT.md's header checksum and re-encodes to the same 64 bytes;
 * the frame length is FORMAT.md's;
 * kl_batch_verify passes exactly when the sums checksum and every chunk
 * checksum match a recomputation from FORMAT.md; kl_batch_verify_range
 * passes exactly when the chunks the range touches match; a located block
 * lies inside the data area; kl_batch_block_checked (every block of a batch
 * of up to 512, a sample of a larger one) serves block k exactly
 * when the chunks of its table entries (k-1, k) and of its bytes match and
 * the lookup is in bounds, and then the same bytes kl_batch_block finds;
 * when the table verifies, every block is found, back to back, summing to
 * data_bytes; a zstd body that decompresses declares raw_len as its content
 * size and has a table that verifies.
 * Every frame is read from a heap copy of exactly its length, so ASan
 * catches a read past it.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few valid batches into DIR
 * and exit (scripts/fuzz.sh uses them as the starting corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "engine/frame.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The largest raw body decompressed for one input: keeps each run fast. */
#define FUZZ_MAX_RAW (1u << 20)
/* Batches of up to this many blocks have every block looked up with its checksums; larger
 * ones a sample (each lookup hashes a chunk or two: every block of 3000 halved the speed). */
#define FUZZ_MAX_LOOKUPS 512u
/* The largest batch the encoder pass frames (the payload is tiled up to this). */
#define FUZZ_MAX_TILED (1u << 16)

/* FORMAT.md's layout, written out here rather than taken from frame.c. */
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

static uint64_t spec_chunk_sum(const uint8_t *body, uint64_t stored_len, uint64_t first,
                               uint64_t i) {
    uint64_t off = i * SPEC_CHUNK;
    size_t len = (size_t)KL_MIN((uint64_t)SPEC_CHUNK, stored_len - off);
    return XXH3_64bits_withSeed(body + off, len, first ^ (i << 40) ^ (i >> 24));
}

/* A heap copy of exactly n bytes, so ASan catches any read past the end. */
static uint8_t *exact_copy(const uint8_t *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    KL_ASSERT(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

/* Which chunks of a frame match their checksums, recomputed from FORMAT.md. */
typedef struct chunk_map {
    uint64_t n;
    uint8_t *ok; /* ok[i]: chunk i matches its checksum */
    int sums_ok; /* the checksum array matches the header's sums_checksum */
} chunk_map;

static chunk_map map_chunks(const kl_batch_hdr *h, const uint8_t *frame) {
    chunk_map m;
    m.n = spec_chunks(h->stored_len);
    m.ok = malloc(m.n ? m.n : 1);
    KL_ASSERT(m.ok != NULL);
    const uint8_t *sums = frame + SPEC_HDR, *body = sums + SPEC_SUM * m.n;
    for (uint64_t i = 0; i < m.n; i++)
        m.ok[i] = kl_load64(sums + SPEC_SUM * i) ==
                  spec_chunk_sum(body, h->stored_len, h->first_index, i);
    m.sums_ok = XXH3_64bits(sums, (size_t)(SPEC_SUM * m.n)) == h->sums_checksum;
    return m;
}

/* Do the chunks holding stored bytes [off, off + len) all match? */
static int span_ok(const chunk_map *m, uint64_t off, uint64_t len) {
    if (len == 0)
        return 1;
    for (uint64_t i = off / SPEC_CHUNK; i <= (off + len - 1) / SPEC_CHUNK; i++)
        if (!m->ok[i])
            return 0;
    return 1;
}

/* kl_batch_verify_range on a few ranges, against the chunk map. */
static void check_ranges(const kl_batch_hdr *h, const uint8_t *frame, const chunk_map *m,
                         uint64_t pick) {
    uint64_t s = h->stored_len;
    uint64_t off = pick % (s + 1), len = (pick >> 32) % (s - off + 1);
    uint64_t last = (m->n - 1) * SPEC_CHUNK;
    const uint64_t ranges[][2] = {
        {0, s},     {0, 0},           {s - 1, 1},          {s / 2, 0},
        {off, len}, {last, s - last}, {SPEC_CHUNK - 1, 2}, {SPEC_CHUNK, SPEC_CHUNK},
        {1, s - 1},
    };
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        if (ranges[r][0] > s || ranges[r][1] > s - ranges[r][0])
            continue; /* a range past the body is the caller's bug, asserted in frame.c */
        int rc = kl_batch_verify_range(h, frame, ranges[r][0], ranges[r][1]);
        KL_ASSERT(rc == 0 || rc == KL_ECORRUPT);
        KL_ASSERT((rc == 0) == span_ok(m, ranges[r][0], ranges[r][1]));
    }
}

/* Every block of a raw body: bounds always, and the table's promises when it verifies. */
static void walk_blocks(const kl_batch_hdr *h, const uint8_t *raw) {
    int table_ok = kl_batch_table_verify(h, raw) == 0;
    const uint8_t *lo = raw + (size_t)SPEC_ENTRY * h->count;
    const uint8_t *hi = raw + h->raw_len;
    const uint8_t *next = lo;
    uint64_t sum = 0;
    for (uint32_t k = 0; k < h->count; k++) {
        const uint8_t *d = NULL;
        size_t n = 0;
        if (kl_batch_block(h, raw, k, &d, &n) != 0) {
            KL_ASSERT(!table_ok);
            continue;
        }
        KL_ASSERT(d >= lo && d <= hi && n <= (size_t)(hi - d));
        uint64_t end = kl_load32(raw + (size_t)SPEC_ENTRY * k);
        KL_ASSERT(d + n == lo + end);
        if (table_ok) {
            KL_ASSERT(d == next);
            next = d + n;
            sum += n;
        }
    }
    if (table_ok)
        KL_ASSERT(sum == h->data_bytes && next == hi);
}

/* kl_batch_block_checked for block k, against the chunk map and kl_batch_block. */
static void check_block(const kl_batch_hdr *h, const uint8_t *frame, const chunk_map *m,
                        uint32_t k) {
    const uint8_t *raw = kl_batch_stored(h, frame);
    const uint8_t *d = NULL, *dc = NULL;
    size_t n = 0, nc = 0;
    int found = kl_batch_block(h, raw, k, &d, &n) == 0;
    int want = span_ok(m, (uint64_t)SPEC_ENTRY * (k ? k - 1 : 0), SPEC_ENTRY * (k ? 2u : 1u)) &&
               found && span_ok(m, (uint64_t)(d - raw), n);
    int rc = kl_batch_block_checked(h, frame, k, &dc, &nc);
    KL_ASSERT(rc == 0 || rc == KL_ECORRUPT);
    KL_ASSERT((rc == 0) == want);
    if (rc == 0)
        KL_ASSERT(dc == d && nc == n);
}

static void drive(const uint8_t *p, size_t size, uint64_t pick) {
    kl_batch_hdr h;
    if (kl_batch_hdr_decode(p, size, &h) != 0)
        return;
    KL_ASSERT(size >= SPEC_HDR);
    KL_ASSERT(h.count >= 1 && h.count <= KL_MAX_APPEND_BLOCKS);
    KL_ASSERT(h.data_bytes <= KL_MAX_APPEND_BYTES);
    KL_ASSERT((uint64_t)h.raw_len == (uint64_t)SPEC_ENTRY * h.count + h.data_bytes);
    KL_ASSERT(h.codec == KL_CODEC_NONE || h.codec == KL_CODEC_ZSTD);
    KL_ASSERT(h.codec == KL_CODEC_NONE ? h.stored_len == h.raw_len
                                       : h.stored_len >= 1 && h.stored_len <= h.raw_len);
    KL_ASSERT(h.first_index <= UINT64_MAX - h.count);
    KL_ASSERT(kl_load64(p + 56) == XXH3_64bits(p, 56)); /* FORMAT.md's header checksum */
    uint8_t re[KL_BATCH_HEADER_BYTES];
    kl_batch_hdr_encode(re, &h);
    KL_ASSERT(memcmp(re, p, KL_BATCH_HEADER_BYTES) == 0);

    uint64_t flen = kl_batch_frame_len(&h);
    KL_ASSERT(flen == spec_frame_bytes(h.stored_len));
    if (flen > size)
        return; /* the caller (read.c, recover.c) refuses a batch running past its limit */
    uint8_t *frame = exact_copy(p, (size_t)flen);
    const uint8_t *stored = kl_batch_stored(&h, frame);
    KL_ASSERT(stored == frame + SPEC_HDR + SPEC_SUM * spec_chunks(h.stored_len));
    chunk_map m = map_chunks(&h, frame);
    int all_ok = m.sums_ok && span_ok(&m, 0, h.stored_len);
    int rc = kl_batch_verify(&h, frame);
    KL_ASSERT(rc == 0 || rc == KL_ECORRUPT);
    KL_ASSERT((rc == 0) == all_ok);
    check_ranges(&h, frame, &m, pick);
    if (h.codec == KL_CODEC_NONE) {
        walk_blocks(&h, stored);
        /* Every block; or, in a larger batch, an even sample, the last block, and the
         * blocks whose table entries k-1 and k straddle a chunk boundary. */
        uint32_t step = h.count <= FUZZ_MAX_LOOKUPS ? 1 : h.count / (FUZZ_MAX_LOOKUPS / 2);
        for (uint32_t k = 0; k < h.count; k += step)
            check_block(&h, frame, &m, k);
        check_block(&h, frame, &m, h.count - 1);
        for (uint64_t e = SPEC_CHUNK / SPEC_ENTRY; step > 1 && e < h.count;
             e += SPEC_CHUNK / SPEC_ENTRY) {
            check_block(&h, frame, &m, (uint32_t)e - 1);
            check_block(&h, frame, &m, (uint32_t)e);
            if (e + 1 < h.count)
                check_block(&h, frame, &m, (uint32_t)e + 1);
        }
    } else if (h.raw_len <= FUZZ_MAX_RAW) {
        uint8_t *raw = malloc(h.raw_len);
        ZSTD_DCtx *dctx = ZSTD_createDCtx();
        KL_ASSERT(raw != NULL && dctx != NULL);
        if (kl_batch_decompress(dctx, &h, stored, raw) == 0) {
            KL_ASSERT(ZSTD_getFrameContentSize(stored, h.stored_len) == h.raw_len);
            KL_ASSERT(kl_batch_table_verify(&h, raw) == 0);
            walk_blocks(&h, raw);
        }
        ZSTD_freeDCtx(dctx);
        free(raw);
    }
    free(m.ok);
    free(frame);
}

/*
 * The input with its checksums made right: chunk checksums (except where
 * bit i % 63 of the timestamp says keep the input's), the sums checksum
 * (unless bit 63 says keep it), then the header checksum.
 */
static void drive_resealed(const uint8_t *data, size_t size, uint64_t pick) {
    if (size < SPEC_HDR)
        return;
    uint8_t *b = exact_copy(data, size);
    uint64_t stored_len = kl_load32(b + 20), first = kl_load64(b + 8), keep = kl_load64(b + 32);
    if (spec_frame_bytes(stored_len) <= size) {
        uint64_t n = spec_chunks(stored_len);
        uint8_t *sums = b + SPEC_HDR, *body = sums + SPEC_SUM * n;
        for (uint64_t i = 0; i < n; i++)
            if (!((keep >> (i % 63)) & 1))
                kl_store64(sums + SPEC_SUM * i, spec_chunk_sum(body, stored_len, first, i));
        if (!(keep >> 63))
            kl_store64(b + 48, XXH3_64bits(sums, (size_t)(SPEC_SUM * n)));
    }
    kl_store64(b + 56, XXH3_64bits(b, 56));
    drive(b, size, pick);
    free(b);
}

/* The encoder pass's contexts, made once: creating a ZSTD_DCtx per input dominated the run
 * time. The decoder pass (drive) still uses a fresh ZSTD_DCtx for each input. */
static ZSTD_CCtx *cctx;
static ZSTD_DCtx *dctx_enc;

/* The encoder: the input cut into blocks must frame and decode back to them. */
static void drive_encoder(const uint8_t *data, size_t size) {
    if (size < 2)
        return;
    size_t count = 1 + data[0] % 16;
    unsigned shift = data[0] >> 5; /* the payload tiled 2^shift times */
    if (size < 1 + count)
        return;
    size_t plen = size - 1 - count;
    size_t total = KL_MIN(plen << shift, (size_t)FUZZ_MAX_TILED);
    uint8_t *tiled = malloc(total ? total : 1);
    KL_ASSERT(tiled != NULL);
    for (size_t at = 0; at < total; at += plen)
        memcpy(tiled + at, data + 1 + count, KL_MIN(plen, total - at));
    kl_block blocks[16];
    const uint8_t *payload = tiled;
    size_t left = total;
    uint64_t data_bytes = 0;
    for (size_t k = 0; k < count; k++) {
        size_t n = ((size_t)data[1 + k] << (shift + 3)) % (left + 1);
        blocks[k].data = payload;
        blocks[k].size = n;
        payload += n;
        left -= n;
        data_bytes += n;
    }
    uint64_t first = size >= 9 ? kl_load64(data + size - 8) : 0;
    if (first > UINT64_MAX - count)
        first = UINT64_MAX - count;
    size_t len = (size_t)kl_batch_plain_bytes(count, data_bytes);
    KL_ASSERT(len == spec_frame_bytes((uint64_t)SPEC_ENTRY * count + data_bytes));
    uint8_t *framed = malloc(len);
    KL_ASSERT(framed != NULL);
    KL_ASSERT(kl_batch_frame(framed, first, blocks, count, data_bytes, 1) == len);
    kl_batch_hdr h;
    KL_ASSERT(kl_batch_hdr_decode(framed, len, &h) == 0);
    KL_ASSERT(h.count == count && h.first_index == first && h.data_bytes == data_bytes);
    KL_ASSERT(kl_batch_frame_len(&h) == len);
    KL_ASSERT(kl_load64(framed + 56) == XXH3_64bits(framed, 56));
    chunk_map m = map_chunks(&h, framed);
    KL_ASSERT(m.sums_ok && span_ok(&m, 0, h.stored_len));
    free(m.ok);
    KL_ASSERT(kl_batch_verify(&h, framed) == 0);
    const uint8_t *raw = kl_batch_stored(&h, framed);
    KL_ASSERT(kl_batch_table_verify(&h, raw) == 0);
    for (uint32_t k = 0; k < count; k++) {
        const uint8_t *d, *dc;
        size_t n, nc;
        KL_ASSERT(kl_batch_block(&h, raw, k, &d, &n) == 0);
        KL_ASSERT(n == blocks[k].size && (n == 0 || memcmp(d, blocks[k].data, n) == 0));
        KL_ASSERT(kl_batch_block_checked(&h, framed, k, &dc, &nc) == 0);
        KL_ASSERT(dc == d && nc == n);
    }
    /* Any one flipped byte past the header fails the whole-frame check. */
    size_t at = SPEC_HDR + (size_t)(first % (len - SPEC_HDR));
    framed[at] ^= (uint8_t)(1u << (first >> 61));
    KL_ASSERT(kl_batch_verify(&h, framed) == KL_ECORRUPT);
    framed[at] ^= (uint8_t)(1u << (first >> 61));

    /* Compression happens exactly when zstd's frame makes the batch smaller. */
    size_t cap = kl_batch_zstd_bound(h.raw_len);
    KL_ASSERT(cap >= spec_frame_bytes(ZSTD_compressBound(h.raw_len)));
    uint8_t *z = malloc(cap), *ref = malloc(ZSTD_compressBound(h.raw_len));
    KL_ASSERT(z != NULL && ref != NULL);
    size_t zlen = kl_batch_compress(cctx, 1, framed, z, cap);
    size_t rn = ZSTD_compressCCtx(cctx, ref, ZSTD_compressBound(h.raw_len), raw, h.raw_len, 1);
    KL_ASSERT(!ZSTD_isError(rn));
    KL_ASSERT(zlen == (spec_frame_bytes(rn) < len ? spec_frame_bytes(rn) : 0));
    if (zlen) {
        kl_batch_hdr zh;
        KL_ASSERT(zlen < len);
        KL_ASSERT(kl_batch_hdr_decode(z, zlen, &zh) == 0);
        KL_ASSERT(zh.codec == KL_CODEC_ZSTD && zh.raw_len == h.raw_len && zh.count == h.count);
        KL_ASSERT(zh.first_index == first && zh.data_bytes == data_bytes);
        KL_ASSERT(zh.stored_len == rn && kl_batch_frame_len(&zh) == zlen);
        KL_ASSERT(kl_load64(z + 56) == XXH3_64bits(z, 56));
        KL_ASSERT(memcmp(kl_batch_stored(&zh, z), ref, rn) == 0);
        m = map_chunks(&zh, z);
        KL_ASSERT(m.sums_ok && span_ok(&m, 0, zh.stored_len));
        free(m.ok);
        KL_ASSERT(kl_batch_verify(&zh, z) == 0);
        uint8_t *back = malloc(zh.raw_len);
        KL_ASSERT(back != NULL);
        KL_ASSERT(kl_batch_decompress(dctx_enc, &zh, kl_batch_stored(&zh, z), back) == 0);
        KL_ASSERT(memcmp(back, raw, zh.raw_len) == 0);
        free(back);
        at = SPEC_HDR + (size_t)(first % (zlen - SPEC_HDR));
        z[at] ^= 0x20;
        KL_ASSERT(kl_batch_verify(&zh, z) == KL_ECORRUPT);
    }
    free(ref);
    free(z);
    free(framed);
    free(tiled);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Which ranges to check: from the input's last bytes, which the fuzzer can steer. */
    uint64_t pick = 0;
    if (size >= 8)
        pick = kl_load64(data + size - 8);
    drive(data, size, pick);
    drive_resealed(data, size, pick);
    drive_encoder(data, size);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

/* Frame `count` blocks of sizes[k] bytes from `src`; write it, and its zstd frame if any. */
static void write_batch(const char *dir, const char *name, uint64_t first, const size_t *sizes,
                        size_t count, const uint8_t *src, uint64_t timestamp_ms) {
    kl_block *blocks = calloc(count, sizeof *blocks);
    KL_ASSERT(blocks != NULL);
    uint64_t data_bytes = 0;
    for (size_t k = 0; k < count; k++) {
        blocks[k] = (kl_block){.data = src + data_bytes, .size = sizes[k]};
        data_bytes += sizes[k];
    }
    size_t len = (size_t)kl_batch_plain_bytes(count, data_bytes);
    uint8_t *framed = malloc(len);
    KL_ASSERT(framed != NULL);
    KL_ASSERT(kl_batch_frame(framed, first, blocks, count, data_bytes, timestamp_ms) == len);
    write_seed(dir, name, framed, len);
    size_t cap = kl_batch_zstd_bound(kl_batch_raw_len(count, data_bytes));
    uint8_t *z = malloc(cap);
    KL_ASSERT(z != NULL);
    size_t zn = kl_batch_compress(cctx, 3, framed, z, cap);
    if (zn) {
        char zname[256];
        snprintf(zname, sizeof zname, "%s-zstd", name);
        write_seed(dir, zname, z, zn);
    }
    free(z);
    free(framed);
    free(blocks);
}

static void write_seeds(const char *dir) {
    /* Source bytes: text (compresses well), then hex digits (about half), then noise. */
    enum { SRC = 3 * 16384 };
    uint8_t *src = malloc(SRC);
    KL_ASSERT(src != NULL);
    uint64_t st = 0x6b6170706161ull;
    for (size_t i = 0; i < SRC; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        src[i] = i < 16384   ? (uint8_t)("kappa log event "[i % 16])
                 : i < 32768 ? (uint8_t)("0123456789abcdef"[st >> 60])
                             : (uint8_t)(st >> 56);
    }
    const uint8_t *text = src, *hex = src + 16384, *noise = src + 32768;
    /* The small shapes of before (timestamp with no low bits: every chunk resealed). */
    const uint64_t ts = 1700000000000ull;
    size_t sz[1100];
    for (size_t k = 0; k < 8; k++)
        sz[k] = 12;
    write_batch(dir, "one-block", 0, sz, 1, text, ts);
    for (size_t k = 0; k < 8; k++)
        sz[k] = 0;
    write_batch(dir, "empty-blocks", 7, sz, 4, text, ts);
    for (size_t k = 0; k < 8; k++)
        sz[k] = 40;
    write_batch(dir, "many-blocks", 1000, sz, 8, text, ts);
    for (size_t k = 0; k < 8; k++)
        sz[k] = 5;
    write_batch(dir, "high-index", UINT64_MAX - 2, sz, 2, text, ts);
    /* Several chunks: a block across two boundaries, zero-byte blocks at a boundary and at
     * the end of the body (stored offsets 2C+100, 3C, 3C, 3C+1, 3C+1, 4C, 4C). */
    const uint64_t ends[7] = {2 * SPEC_CHUNK + 100, 3 * SPEC_CHUNK,     3 * SPEC_CHUNK,
                              3 * SPEC_CHUNK + 1,   3 * SPEC_CHUNK + 1, 4 * SPEC_CHUNK,
                              4 * SPEC_CHUNK};
    uint64_t prev = SPEC_ENTRY * 7;
    for (size_t k = 0; k < 7; k++) {
        sz[k] = (size_t)(ends[k] - prev);
        prev = ends[k];
    }
    write_batch(dir, "chunk-boundaries", 1ull << 40, sz, 7, noise, 0);
    write_batch(dir, "chunk-boundaries-hex", 1ull << 40, sz, 7, hex, 0);
    /* Timestamp bit 1 and bit 63: the reseal keeps the input's chunk 1 and sums checksum. */
    write_batch(dir, "chunk-boundaries-keep", 5, sz, 7, noise, 2 | 1ull << 63);
    /* A table that spans chunks: 1100 blocks of 0..5 bytes. */
    for (size_t k = 0; k < 1100; k++)
        sz[k] = k % 6;
    write_batch(dir, "long-table", 300, sz, 1100, noise, 0);
    /* A zstd body of several chunks. */
    for (size_t k = 0; k < 12; k++)
        sz[k] = 1000;
    write_batch(dir, "hex-blocks", 90, sz, 12, hex, 0);
    /* A batch followed by the start of the next one, and a torn one. */
    sz[0] = 20;
    size_t n = (size_t)kl_batch_plain_bytes(1, 20);
    uint8_t framed[256];
    kl_block b = {.data = text, .size = 20};
    KL_ASSERT(kl_batch_frame(framed, 3, &b, 1, 20, 1) == n);
    memcpy(framed + n, framed, 40);
    write_seed(dir, "batch-then-more", framed, n + 40);
    write_seed(dir, "torn", framed, n / 2);
    free(src);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    cctx = ZSTD_createCCtx();
    dctx_enc = ZSTD_createDCtx();
    KL_ASSERT(cctx != NULL && dctx_enc != NULL);
    const char *dir = getenv("KL_FUZZ_SEEDS");
    if (dir && *dir) {
        write_seeds(dir);
        ZSTD_freeCCtx(cctx);
        ZSTD_freeDCtx(dctx_enc);
        exit(0);
    }
    return 0;
}
