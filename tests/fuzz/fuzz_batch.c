/*
 * fuzz_batch.c - libFuzzer target for the batch decoders (engine/frame.c,
 * docs/FORMAT.md "Batch").
 *
 * Input: a batch as it would sit in a segment, [64-byte header][body...].
 * Each input is decoded twice: as given, where the two XXH3 checksums must
 * refuse nearly everything, and "resealed", with the body checksum and then
 * the header checksum recomputed over the input's own bytes, so the field
 * checks, the block table, the per-block checks and the zstd decompressor
 * see arbitrary content that a checksum would otherwise hide from the
 * fuzzer. A third pass checks the encoder: the input cut into blocks,
 * framed and (if it shrinks) compressed, must decode back to those blocks.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash):
 * a decoded header has count >= 1, raw_len = 8 * count + data_bytes,
 * stored = raw for codec none, no first_index overflow, and re-encodes to
 * the same 64 bytes; kl_batch_body_verify agrees with XXH3 over the stored
 * bytes; a located block lies inside the data area; when the table
 * verifies, every block is found, back to back, summing to data_bytes; a
 * zstd body that decompresses has a table that verifies.
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

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The largest raw body decompressed for one input: keeps each run fast. */
#define FUZZ_MAX_RAW (1u << 20)

/* A heap copy of exactly n bytes, so ASan catches any read past the end. */
static uint8_t *exact_copy(const uint8_t *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    KL_ASSERT(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

/* Every block of a raw body: bounds always, and the table's promises when it verifies. */
static void walk_blocks(const kl_batch_hdr *h, const uint8_t *raw) {
    int table_ok = kl_batch_table_verify(h, raw) == 0;
    const uint8_t *lo = raw + (size_t)KL_BATCH_ENTRY_BYTES * h->count;
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
        if (table_ok) {
            KL_ASSERT(d == next);
            next = d + n;
            sum += n;
        }
        int ok = kl_batch_block_verify(h, raw, k, d, n) == 0;
        uint32_t want = kl_load32(raw + (size_t)KL_BATCH_ENTRY_BYTES * k + 4);
        KL_ASSERT(ok == (kl_block_check(d, n, h->first_index + k) == want));
    }
    if (table_ok)
        KL_ASSERT(sum == h->data_bytes && next == hi);
}

static void drive(const uint8_t *p, size_t size) {
    kl_batch_hdr h;
    if (kl_batch_hdr_decode(p, size, &h) != 0)
        return;
    KL_ASSERT(size >= KL_BATCH_HEADER_BYTES);
    KL_ASSERT(h.count >= 1 && h.count <= KL_MAX_APPEND_BLOCKS);
    KL_ASSERT(h.data_bytes <= KL_MAX_APPEND_BYTES);
    KL_ASSERT((uint64_t)h.raw_len == kl_batch_raw_len(h.count, h.data_bytes));
    KL_ASSERT(h.codec == KL_CODEC_NONE || h.codec == KL_CODEC_ZSTD);
    KL_ASSERT(h.codec != KL_CODEC_NONE || h.stored_len == h.raw_len);
    KL_ASSERT(h.first_index <= UINT64_MAX - h.count);
    uint8_t re[KL_BATCH_HEADER_BYTES];
    kl_batch_hdr_encode(re, &h);
    KL_ASSERT(memcmp(re, p, KL_BATCH_HEADER_BYTES) == 0);

    if (h.stored_len > size - KL_BATCH_HEADER_BYTES)
        return; /* the caller (read.c, recover.c) refuses a batch running past its limit */
    uint8_t *stored = exact_copy(p + KL_BATCH_HEADER_BYTES, h.stored_len);
    int body_ok = kl_batch_body_verify(&h, stored) == 0;
    KL_ASSERT(body_ok == (XXH3_64bits(stored, h.stored_len) == h.body_checksum));
    if (h.codec == KL_CODEC_NONE) {
        walk_blocks(&h, stored);
    } else if (h.raw_len <= FUZZ_MAX_RAW) {
        uint8_t *raw = malloc(h.raw_len);
        ZSTD_DCtx *dctx = ZSTD_createDCtx();
        KL_ASSERT(raw != NULL && dctx != NULL);
        if (kl_batch_decompress(dctx, &h, stored, raw) == 0) {
            KL_ASSERT(kl_batch_table_verify(&h, raw) == 0);
            walk_blocks(&h, raw);
        }
        ZSTD_freeDCtx(dctx);
        free(raw);
    }
    free(stored);
}

/* The input with its body checksum and header checksum made right. */
static void drive_resealed(const uint8_t *data, size_t size) {
    if (size < KL_BATCH_HEADER_BYTES)
        return;
    uint8_t *b = exact_copy(data, size);
    uint64_t stored_len = kl_load32(b + 20);
    if (stored_len <= size - KL_BATCH_HEADER_BYTES)
        kl_store64(b + 48, XXH3_64bits(b + KL_BATCH_HEADER_BYTES, (size_t)stored_len));
    kl_store64(b + 56, XXH3_64bits(b, 56));
    drive(b, size);
    free(b);
}

static ZSTD_CCtx *cctx;

/* The encoder: the input cut into blocks must frame and decode back to them. */
static void drive_encoder(const uint8_t *data, size_t size) {
    if (size < 2)
        return;
    size_t count = 1 + data[0] % 16;
    if (size < 1 + count)
        return;
    const uint8_t *payload = data + 1 + count;
    size_t left = size - 1 - count;
    kl_block blocks[16];
    uint64_t data_bytes = 0;
    for (size_t k = 0; k < count; k++) {
        size_t n = data[1 + k] % (left + 1);
        blocks[k].data = payload;
        blocks[k].size = n;
        payload += n;
        left -= n;
        data_bytes += n;
    }
    uint64_t first = size >= 9 ? kl_load64(data + size - 8) : 0;
    if (first > UINT64_MAX - count)
        first = UINT64_MAX - count;
    size_t len = KL_BATCH_HEADER_BYTES + (size_t)kl_batch_raw_len(count, data_bytes);
    uint8_t *framed = malloc(len);
    KL_ASSERT(framed != NULL);
    KL_ASSERT(kl_batch_frame(framed, first, blocks, count, data_bytes, 1) == len);
    kl_batch_hdr h;
    KL_ASSERT(kl_batch_hdr_decode(framed, len, &h) == 0);
    KL_ASSERT(h.count == count && h.first_index == first && h.data_bytes == data_bytes);
    const uint8_t *raw = framed + KL_BATCH_HEADER_BYTES;
    KL_ASSERT(kl_batch_body_verify(&h, raw) == 0);
    KL_ASSERT(kl_batch_table_verify(&h, raw) == 0);
    for (uint32_t k = 0; k < count; k++) {
        const uint8_t *d;
        size_t n;
        KL_ASSERT(kl_batch_block(&h, raw, k, &d, &n) == 0);
        KL_ASSERT(n == blocks[k].size && (n == 0 || memcmp(d, blocks[k].data, n) == 0));
        KL_ASSERT(kl_batch_block_verify(&h, raw, k, d, n) == 0);
    }
    size_t cap = KL_BATCH_HEADER_BYTES + kl_batch_zstd_bound(h.raw_len);
    uint8_t *z = malloc(cap);
    KL_ASSERT(z != NULL);
    size_t zlen = kl_batch_compress(cctx, 1, framed, z, cap);
    if (zlen) {
        kl_batch_hdr zh;
        KL_ASSERT(zlen < len);
        KL_ASSERT(kl_batch_hdr_decode(z, zlen, &zh) == 0);
        KL_ASSERT(zh.codec == KL_CODEC_ZSTD && zh.raw_len == h.raw_len);
        KL_ASSERT(zh.stored_len == zlen - KL_BATCH_HEADER_BYTES);
        KL_ASSERT(kl_batch_body_verify(&zh, z + KL_BATCH_HEADER_BYTES) == 0);
        uint8_t *back = malloc(zh.raw_len);
        ZSTD_DCtx *dctx = ZSTD_createDCtx();
        KL_ASSERT(back != NULL && dctx != NULL);
        KL_ASSERT(kl_batch_decompress(dctx, &zh, z + KL_BATCH_HEADER_BYTES, back) == 0);
        KL_ASSERT(memcmp(back, raw, zh.raw_len) == 0);
        ZSTD_freeDCtx(dctx);
        free(back);
    }
    free(z);
    free(framed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    drive(data, size);
    drive_resealed(data, size);
    drive_encoder(data, size);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

static void write_seed(const char *dir, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    KL_ASSERT(f != NULL);
    KL_ASSERT(fwrite(p, 1, n, f) == n);
    KL_ASSERT(fclose(f) == 0);
}

static void write_seeds(const char *dir) {
    static const char text[] = "kappa log event kappa log event kappa log event";
    kl_block blocks[8];
    uint8_t framed[1024], z[1024];
    struct {
        const char *name;
        size_t count;
        size_t size;
        uint64_t first;
    } shapes[] = {
        {"one-block", 1, 12, 0},
        {"empty-blocks", 4, 0, 7},
        {"many-blocks", 8, 40, 1000},
        {"high-index", 2, 5, UINT64_MAX - 2},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (size_t k = 0; k < shapes[s].count; k++)
            blocks[k] = (kl_block){.data = text + k, .size = shapes[s].size};
        uint64_t data_bytes = (uint64_t)shapes[s].count * shapes[s].size;
        size_t n = kl_batch_frame(framed, shapes[s].first, blocks, shapes[s].count, data_bytes,
                                  1700000000000ull);
        write_seed(dir, shapes[s].name, framed, n);
        size_t zn = kl_batch_compress(cctx, 3, framed, z, sizeof z);
        if (zn) {
            char name[64];
            snprintf(name, sizeof name, "%s-zstd", shapes[s].name);
            write_seed(dir, name, z, zn);
        }
    }
    /* A batch followed by the start of the next one, and a torn one. */
    blocks[0] = (kl_block){.data = text, .size = 20};
    size_t n = kl_batch_frame(framed, 3, blocks, 1, 20, 1);
    memcpy(framed + n, framed, 40);
    write_seed(dir, "batch-then-more", framed, n + 40);
    write_seed(dir, "torn", framed, n / 2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    cctx = ZSTD_createCCtx();
    KL_ASSERT(cctx != NULL);
    const char *dir = getenv("KL_FUZZ_SEEDS");
    if (dir && *dir) {
        write_seeds(dir);
        ZSTD_freeCCtx(cctx);
        exit(0);
    }
    return 0;
}
