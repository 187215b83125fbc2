/*
 * frame.c - encoding and checking batches (docs/FORMAT.md, "Batch").
 *
 * Invariants a decoded header guarantees to its user: count >= 1,
 * raw_len = 8 * count + data_bytes, stored_len = raw_len for codec none,
 * first_index + count does not overflow, and stored_len fits in `avail`
 * when the caller asked for the body too. The table inside a body is
 * checked entry by entry as it is used, so a damaged entry can only make a
 * lookup fail, never read outside the body.
 */
#include "frame.h"

#include <xxhash.h>
#include <zstd.h>

#include "util.h"

static uint64_t hdr_checksum(const uint8_t *p) {
    return XXH3_64bits(p, 56);
}

void kl_batch_hdr_encode(uint8_t *p, const kl_batch_hdr *h) {
    KL_ASSERT(h->count >= 1);
    KL_ASSERT((uint64_t)h->raw_len == kl_batch_raw_len(h->count, h->data_bytes));
    kl_store32(p + 0, KL_BATCH_MAGIC);
    kl_store16(p + 4, KL_BATCH_VERSION);
    p[6] = h->codec;
    p[7] = 0;
    kl_store64(p + 8, h->first_index);
    kl_store32(p + 16, h->count);
    kl_store32(p + 20, h->stored_len);
    kl_store32(p + 24, h->raw_len);
    kl_store32(p + 28, 0);
    kl_store64(p + 32, h->timestamp_ms);
    kl_store64(p + 40, h->data_bytes);
    kl_store64(p + 48, h->body_checksum);
    kl_store64(p + 56, hdr_checksum(p));
}

int kl_batch_hdr_decode(const uint8_t *p, size_t avail, kl_batch_hdr *h) {
    if (avail < KL_BATCH_HEADER_BYTES)
        return kl_errf(KL_ECORRUPT, "truncated batch header (%zu of 64 bytes)", avail);
    if (kl_load32(p) != KL_BATCH_MAGIC)
        return kl_errf(KL_ECORRUPT, "no batch magic");
    if (kl_load16(p + 4) != KL_BATCH_VERSION)
        return kl_errf(KL_ECORRUPT, "unknown batch version %u", kl_load16(p + 4));
    if (kl_load64(p + 56) != hdr_checksum(p))
        return kl_errf(KL_ECORRUPT, "batch header checksum mismatch");
    h->codec = p[6];
    h->first_index = kl_load64(p + 8);
    h->count = kl_load32(p + 16);
    h->stored_len = kl_load32(p + 20);
    h->raw_len = kl_load32(p + 24);
    h->timestamp_ms = kl_load64(p + 32);
    h->data_bytes = kl_load64(p + 40);
    h->body_checksum = kl_load64(p + 48);
    if (h->codec > KL_CODEC_ZSTD || p[7] != 0 || kl_load32(p + 28) != 0)
        return kl_errf(KL_ECORRUPT, "batch header has unknown codec or flags");
    if (h->count == 0 || h->count > KL_MAX_APPEND_BLOCKS)
        return kl_errf(KL_ECORRUPT, "batch block count %u out of range", h->count);
    if (h->data_bytes > KL_MAX_APPEND_BYTES ||
        (uint64_t)h->raw_len != kl_batch_raw_len(h->count, h->data_bytes))
        return kl_errf(KL_ECORRUPT, "batch lengths disagree (raw %u, %u blocks, %llu data bytes)",
                       h->raw_len, h->count, (unsigned long long)h->data_bytes);
    if (h->codec == KL_CODEC_NONE && h->stored_len != h->raw_len)
        return kl_errf(KL_ECORRUPT, "uncompressed batch with stored %u != raw %u", h->stored_len,
                       h->raw_len);
    if (h->first_index > UINT64_MAX - h->count)
        return kl_errf(KL_ECORRUPT, "batch first index overflows");
    return 0;
}

int kl_batch_body_verify(const kl_batch_hdr *h, const uint8_t *stored) {
    if (XXH3_64bits(stored, h->stored_len) != h->body_checksum)
        return kl_errf(KL_ECORRUPT, "batch body checksum mismatch");
    return 0;
}

uint32_t kl_block_check(const void *data, size_t size, uint64_t index) {
    return (uint32_t)XXH3_64bits_withSeed(data, size, index);
}

int kl_batch_block(const kl_batch_hdr *h, const uint8_t *raw, uint32_t k, const uint8_t **data,
                   size_t *size) {
    KL_ASSERT(k < h->count);
    uint64_t start = k ? kl_load32(raw + (uint64_t)KL_BATCH_ENTRY_BYTES * (k - 1)) : 0;
    uint64_t end = kl_load32(raw + (uint64_t)KL_BATCH_ENTRY_BYTES * k);
    if (start > end || end > h->data_bytes)
        return kl_errf(KL_ECORRUPT, "batch table entry %u out of bounds", k);
    *data = raw + (uint64_t)KL_BATCH_ENTRY_BYTES * h->count + start;
    *size = (size_t)(end - start);
    return 0;
}

int kl_batch_block_verify(const kl_batch_hdr *h, const uint8_t *raw, uint32_t k,
                          const uint8_t *data, size_t size) {
    uint32_t want = kl_load32(raw + (uint64_t)KL_BATCH_ENTRY_BYTES * k + 4);
    if (kl_block_check(data, size, h->first_index + k) != want)
        return kl_errf(KL_ECORRUPT, "block %llu fails its check",
                       (unsigned long long)(h->first_index + k));
    return 0;
}

int kl_batch_table_verify(const kl_batch_hdr *h, const uint8_t *raw) {
    uint64_t prev = 0;
    for (uint32_t k = 0; k < h->count; k++) {
        uint64_t end = kl_load32(raw + (uint64_t)KL_BATCH_ENTRY_BYTES * k);
        if (end < prev || end > h->data_bytes)
            return kl_errf(KL_ECORRUPT, "batch table entry %u out of order", k);
        prev = end;
    }
    if (prev != h->data_bytes)
        return kl_errf(KL_ECORRUPT, "batch table ends at %llu, data is %llu bytes",
                       (unsigned long long)prev, (unsigned long long)h->data_bytes);
    return 0;
}

size_t kl_batch_frame(uint8_t *out, uint64_t first_index, const kl_block *blocks, size_t count,
                      uint64_t data_bytes, uint64_t timestamp_ms) {
    KL_ASSERT(count >= 1 && count <= KL_MAX_APPEND_BLOCKS && data_bytes <= KL_MAX_APPEND_BYTES);
    uint8_t *table = out + KL_BATCH_HEADER_BYTES;
    uint8_t *data = table + KL_BATCH_ENTRY_BYTES * count;
    uint64_t end = 0;
    for (size_t k = 0; k < count; k++) {
        size_t n = blocks[k].size;
        if (n)
            memcpy(data + end, blocks[k].data, n);
        end += n;
        kl_store32(table + KL_BATCH_ENTRY_BYTES * k, (uint32_t)end);
        kl_store32(table + KL_BATCH_ENTRY_BYTES * k + 4,
                   kl_block_check(data + end - n, n, first_index + k));
    }
    KL_ASSERT(end == data_bytes);
    uint64_t raw_len = kl_batch_raw_len(count, data_bytes);
    kl_batch_hdr h = {
        .codec = KL_CODEC_NONE,
        .first_index = first_index,
        .count = (uint32_t)count,
        .stored_len = (uint32_t)raw_len,
        .raw_len = (uint32_t)raw_len,
        .timestamp_ms = timestamp_ms,
        .data_bytes = data_bytes,
        .body_checksum = XXH3_64bits(table, raw_len),
    };
    kl_batch_hdr_encode(out, &h);
    return KL_BATCH_HEADER_BYTES + raw_len;
}

size_t kl_batch_zstd_bound(uint64_t raw_len) {
    return ZSTD_compressBound(raw_len);
}

size_t kl_batch_compress(void *zstd_cctx, int level, const uint8_t *framed, uint8_t *out,
                         size_t out_cap) {
    kl_batch_hdr h;
    KL_ASSERT(kl_batch_hdr_decode(framed, KL_BATCH_HEADER_BYTES, &h) == 0);
    KL_ASSERT(out_cap >= KL_BATCH_HEADER_BYTES);
    size_t n =
        ZSTD_compressCCtx(zstd_cctx, out + KL_BATCH_HEADER_BYTES, out_cap - KL_BATCH_HEADER_BYTES,
                          framed + KL_BATCH_HEADER_BYTES, h.raw_len, level);
    if (ZSTD_isError(n) || n >= h.raw_len)
        return 0;
    h.codec = KL_CODEC_ZSTD;
    h.stored_len = (uint32_t)n;
    h.body_checksum = XXH3_64bits(out + KL_BATCH_HEADER_BYTES, n);
    kl_batch_hdr_encode(out, &h);
    return KL_BATCH_HEADER_BYTES + n;
}

int kl_batch_decompress(void *zstd_dctx, const kl_batch_hdr *h, const uint8_t *stored,
                        uint8_t *raw) {
    KL_ASSERT(h->codec == KL_CODEC_ZSTD);
    unsigned long long want = ZSTD_getFrameContentSize(stored, h->stored_len);
    if (want != h->raw_len)
        return kl_errf(KL_ECORRUPT, "zstd frame size %llu, header says %u", want, h->raw_len);
    size_t n = ZSTD_decompressDCtx(zstd_dctx, raw, h->raw_len, stored, h->stored_len);
    if (ZSTD_isError(n) || n != h->raw_len)
        return kl_errf(KL_ECORRUPT, "zstd body does not decompress (%s)",
                       ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short");
    return kl_batch_table_verify(h, raw);
}
