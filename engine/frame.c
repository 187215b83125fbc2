/*
 * frame.c - encoding and checking batches (docs/FORMAT.md, "Batch").
 *
 * Invariants a decoded header guarantees to its user: count >= 1,
 * raw_len = 4 * count + data_bytes, stored_len = raw_len for codec none,
 * first_index + count does not overflow. The table inside a body is checked
 * entry by entry as it is used, so a damaged entry can only make a lookup
 * fail, never read outside the body.
 *
 * The stored body is checksummed in 1 KiB chunks (each chunk's XXH3-64 is
 * seeded with the batch's first index and the chunk's number, so a chunk
 * moved elsewhere fails), and the array of chunk checksums is covered by the
 * header. Appending hashes every byte once; a random read hashes only the
 * chunks it reads. The one thing a reader would get wrong: a damaged chunk
 * checksum is not detected on its own, only as a mismatch with its chunk, so
 * it can make a read fail but never makes bad bytes pass.
 */
#include "frame.h"

#include <stdlib.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "util.h"

static uint64_t hdr_checksum(const uint8_t *p) {
    return XXH3_64bits(p, 56);
}

static uint64_t chunk_sum(const uint8_t *chunk, size_t len, uint64_t first_index, uint64_t i) {
    return XXH3_64bits_withSeed(chunk, len, first_index ^ (i << 40) ^ (i >> 24));
}

/* Write the chunk checksums of the stored body and the header (the body is in place). */
static void seal_frame(uint8_t *out, kl_batch_hdr *h) {
    uint64_t n = kl_batch_chunks(h->stored_len);
    uint8_t *sums = out + KL_BATCH_HEADER_BYTES;
    const uint8_t *body = sums + KL_BATCH_SUM_BYTES * n;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t off = i * KL_BATCH_CHUNK_BYTES;
        size_t len = (size_t)KL_MIN((uint64_t)KL_BATCH_CHUNK_BYTES, h->stored_len - off);
        kl_store64(sums + KL_BATCH_SUM_BYTES * i, chunk_sum(body + off, len, h->first_index, i));
    }
    h->sums_checksum = XXH3_64bits(sums, (size_t)(KL_BATCH_SUM_BYTES * n));
    kl_batch_hdr_encode(out, h);
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
    kl_store64(p + 48, h->sums_checksum);
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
    h->sums_checksum = kl_load64(p + 48);
    if (h->codec > KL_CODEC_ZSTD || p[7] != 0 || kl_load32(p + 28) != 0)
        return kl_errf(KL_ECORRUPT, "batch header has unknown codec or flags");
    if (h->count == 0 || h->count > KL_MAX_APPEND_BLOCKS)
        return kl_errf(KL_ECORRUPT, "batch block count %u out of range", h->count);
    if (h->data_bytes > KL_MAX_APPEND_BYTES ||
        (uint64_t)h->raw_len != kl_batch_raw_len(h->count, h->data_bytes))
        return kl_errf(KL_ECORRUPT, "batch lengths disagree (raw %u, %u blocks, %llu data bytes)",
                       h->raw_len, h->count, (unsigned long long)h->data_bytes);
    if (h->codec == KL_CODEC_NONE ? h->stored_len != h->raw_len
                                  : h->stored_len == 0 || h->stored_len > h->raw_len)
        return kl_errf(KL_ECORRUPT, "batch stored length %u does not fit raw length %u",
                       h->stored_len, h->raw_len);
    if (h->first_index > UINT64_MAX - h->count)
        return kl_errf(KL_ECORRUPT, "batch first index overflows");
    return 0;
}

/* Check chunks [from, to) of the stored body. */
static int verify_chunks(const kl_batch_hdr *h, const uint8_t *frame, uint64_t from, uint64_t to) {
    const uint8_t *sums = frame + KL_BATCH_HEADER_BYTES;
    const uint8_t *body = kl_batch_stored(h, frame);
    for (uint64_t i = from; i < to; i++) {
        uint64_t off = i * KL_BATCH_CHUNK_BYTES;
        size_t len = (size_t)KL_MIN((uint64_t)KL_BATCH_CHUNK_BYTES, h->stored_len - off);
        if (chunk_sum(body + off, len, h->first_index, i) !=
            kl_load64(sums + KL_BATCH_SUM_BYTES * i))
            return kl_errf(KL_ECORRUPT, "batch body chunk %llu fails its checksum",
                           (unsigned long long)i);
    }
    return 0;
}

uint64_t kl_batch_chunk_sum(const uint8_t *chunk, size_t len, uint64_t first_index, uint64_t i) {
    return chunk_sum(chunk, len, first_index, i);
}

int kl_batch_stored_for_frame(uint64_t frame_len, uint32_t *stored) {
    if (frame_len <= KL_BATCH_HEADER_BYTES || frame_len > kl_batch_frame_bytes(KL_BATCH_MAX_RAW))
        return 0;
    uint64_t f = frame_len - KL_BATCH_HEADER_BYTES; /* = 8 chunks(L) + L */
    uint64_t c = f / (KL_BATCH_CHUNK_BYTES + KL_BATCH_SUM_BYTES);
    for (uint64_t k = c; k <= c + 1; k++) {
        if (KL_BATCH_SUM_BYTES * k >= f)
            break;
        uint64_t len = f - KL_BATCH_SUM_BYTES * k;
        if (kl_batch_chunks(len) == k && len <= KL_BATCH_MAX_RAW) {
            *stored = (uint32_t)len;
            return 1;
        }
    }
    return 0;
}

int kl_batch_verify(const kl_batch_hdr *h, const uint8_t *frame) {
    uint64_t n = kl_batch_chunks(h->stored_len);
    if (XXH3_64bits(frame + KL_BATCH_HEADER_BYTES, (size_t)(KL_BATCH_SUM_BYTES * n)) !=
        h->sums_checksum)
        return kl_errf(KL_ECORRUPT, "batch chunk checksums fail their checksum");
    return verify_chunks(h, frame, 0, n);
}

int kl_batch_verify_range(const kl_batch_hdr *h, const uint8_t *frame, uint64_t off, uint64_t len) {
    KL_ASSERT(off + len <= h->stored_len);
    if (len == 0)
        return 0;
    return verify_chunks(h, frame, off / KL_BATCH_CHUNK_BYTES,
                         (off + len - 1) / KL_BATCH_CHUNK_BYTES + 1);
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

int kl_batch_block_checked(const kl_batch_hdr *h, const uint8_t *frame, uint32_t k,
                           const uint8_t **data, size_t *size) {
    KL_ASSERT(h->codec == KL_CODEC_NONE && k < h->count);
    const uint8_t *raw = kl_batch_stored(h, frame);
    uint64_t entries_off = (uint64_t)KL_BATCH_ENTRY_BYTES * (k ? k - 1 : 0);
    uint64_t entries_len = (uint64_t)KL_BATCH_ENTRY_BYTES * (k ? 2 : 1);
    int rc = kl_batch_verify_range(h, frame, entries_off, entries_len);
    if (rc == 0)
        rc = kl_batch_block(h, raw, k, data, size);
    if (rc == 0)
        rc = kl_batch_verify_range(h, frame, (uint64_t)(*data - raw), *size);
    return rc;
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

/* The header of an uncompressed batch (its sums checksum still to fill). */
static kl_batch_hdr plain_hdr(uint64_t first_index, size_t count, uint64_t data_bytes,
                              uint64_t timestamp_ms) {
    uint64_t raw_len = kl_batch_raw_len(count, data_bytes);
    KL_ASSERT(raw_len <= UINT32_MAX);
    return (kl_batch_hdr){
        .codec = KL_CODEC_NONE,
        .first_index = first_index,
        .count = (uint32_t)count,
        .stored_len = (uint32_t)raw_len,
        .raw_len = (uint32_t)raw_len,
        .timestamp_ms = timestamp_ms,
        .data_bytes = data_bytes,
    };
}

size_t kl_batch_frame(uint8_t *out, uint64_t first_index, const kl_block *blocks, size_t count,
                      uint64_t data_bytes, uint64_t timestamp_ms) {
    KL_ASSERT(count >= 1 && count <= KL_MAX_APPEND_BLOCKS && data_bytes <= KL_MAX_APPEND_BYTES);
    uint64_t raw_len = kl_batch_raw_len(count, data_bytes);
    uint8_t *table = out + KL_BATCH_HEADER_BYTES + KL_BATCH_SUM_BYTES * kl_batch_chunks(raw_len);
    uint8_t *data = table + KL_BATCH_ENTRY_BYTES * count;
    uint64_t end = 0, run_at = 0;
    const uint8_t *run = NULL; /* blocks adjacent in the caller's memory are copied at once */
    for (size_t k = 0; k < count; k++) {
        const uint8_t *p = blocks[k].data;
        size_t n = blocks[k].size;
        if (n && (!run || p != run + (end - run_at))) {
            if (run)
                memcpy(data + run_at, run, (size_t)(end - run_at));
            run = p;
            run_at = end;
        }
        end += n;
        kl_store32(table + KL_BATCH_ENTRY_BYTES * k, (uint32_t)end);
    }
    if (run)
        memcpy(data + run_at, run, (size_t)(end - run_at));
    KL_ASSERT(end == data_bytes);
    kl_batch_hdr h = plain_hdr(first_index, count, data_bytes, timestamp_ms);
    seal_frame(out, &h);
    return (size_t)kl_batch_frame_bytes(raw_len);
}

/* The checksum of chunk i of a body that is `table` (tlen bytes) then `data`. */
static uint64_t split_chunk_sum(const uint8_t *table, uint64_t tlen, const uint8_t *data,
                                uint64_t body_len, uint64_t first_index, uint64_t i) {
    uint64_t off = i * KL_BATCH_CHUNK_BYTES;
    uint64_t len = KL_MIN((uint64_t)KL_BATCH_CHUNK_BYTES, body_len - off);
    if (off + len <= tlen)
        return chunk_sum(table + off, (size_t)len, first_index, i);
    if (off >= tlen)
        return chunk_sum(data + (off - tlen), (size_t)len, first_index, i);
    XXH3_state_t st; /* the one chunk that straddles the table and the data */
    XXH3_64bits_reset_withSeed(&st, first_index ^ (i << 40) ^ (i >> 24));
    XXH3_64bits_update(&st, table + off, (size_t)(tlen - off));
    XXH3_64bits_update(&st, data, (size_t)(off + len - tlen));
    return XXH3_64bits_digest(&st);
}

size_t kl_batch_frame_split(uint8_t *meta, uint64_t first_index, const kl_block *blocks,
                            size_t count, const uint8_t *data, uint64_t data_bytes,
                            uint64_t timestamp_ms) {
    KL_ASSERT(count >= 1 && count <= KL_MAX_APPEND_BLOCKS && data_bytes <= KL_MAX_APPEND_BYTES);
    uint64_t raw_len = kl_batch_raw_len(count, data_bytes);
    uint64_t n = kl_batch_chunks(raw_len);
    uint8_t *sums = meta + KL_BATCH_HEADER_BYTES;
    uint8_t *table = sums + KL_BATCH_SUM_BYTES * n;
    uint64_t end = 0, tlen = KL_BATCH_ENTRY_BYTES * count;
    for (size_t k = 0; k < count; k++) {
        end += blocks[k].size;
        kl_store32(table + KL_BATCH_ENTRY_BYTES * k, (uint32_t)end);
    }
    KL_ASSERT(end == data_bytes);
    for (uint64_t i = 0; i < n; i++)
        kl_store64(sums + KL_BATCH_SUM_BYTES * i,
                   split_chunk_sum(table, tlen, data, raw_len, first_index, i));
    kl_batch_hdr h = plain_hdr(first_index, count, data_bytes, timestamp_ms);
    h.sums_checksum = XXH3_64bits(sums, (size_t)(KL_BATCH_SUM_BYTES * n));
    kl_batch_hdr_encode(meta, &h);
    return (size_t)(KL_BATCH_HEADER_BYTES + KL_BATCH_SUM_BYTES * n + tlen);
}

size_t kl_batch_zstd_bound(uint64_t raw_len) {
    return (size_t)kl_batch_frame_bytes(ZSTD_compressBound((size_t)raw_len));
}

size_t kl_batch_compress(void *zstd_cctx, int level, const uint8_t *framed, uint8_t *out,
                         size_t out_cap) {
    kl_batch_hdr h = {0};
    KL_ASSERT(kl_batch_hdr_decode(framed, KL_BATCH_HEADER_BYTES, &h) == 0);
    KL_ASSERT(h.codec == KL_CODEC_NONE); /* it compresses the raw body of a plain frame */
    size_t bound = ZSTD_compressBound(h.raw_len);
    uint64_t room = kl_batch_frame_bytes(bound);
    KL_ASSERT(out_cap >= room);
    /* Compress to where the body goes if the checksums take as many chunks as the bound's. */
    uint8_t *body = out + (room - bound);
    size_t n =
        ZSTD_compressCCtx(zstd_cctx, body, bound, kl_batch_stored(&h, framed), h.raw_len, level);
    if (ZSTD_isError(n) || kl_batch_frame_bytes(n) >= kl_batch_frame_len(&h))
        return 0;
    uint8_t *dest = out + KL_BATCH_HEADER_BYTES + KL_BATCH_SUM_BYTES * kl_batch_chunks(n);
    memmove(dest, body, n);
    h.codec = KL_CODEC_ZSTD;
    h.stored_len = (uint32_t)n;
    seal_frame(out, &h);
    return (size_t)kl_batch_frame_bytes(n);
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

int kl_batch_body(const kl_batch_hdr *h, const uint8_t *frame, void **zstd_dctx, uint8_t **buf,
                  size_t *cap, const uint8_t **raw) {
    const uint8_t *stored = kl_batch_stored(h, frame);
    *raw = stored;
    if (h->codec != KL_CODEC_ZSTD)
        return kl_batch_table_verify(h, stored);
    if (!*zstd_dctx && !(*zstd_dctx = ZSTD_createDCtx()))
        return kl_errf(KL_ENOMEM, "zstd context");
    if (*cap < h->raw_len) {
        uint8_t *nb = realloc(*buf, h->raw_len);
        if (!nb)
            return kl_errf(KL_ENOMEM, "batch of %u bytes", h->raw_len);
        *buf = nb;
        *cap = h->raw_len;
    }
    *raw = *buf;
    return kl_batch_decompress(*zstd_dctx, h, stored, *buf);
}
