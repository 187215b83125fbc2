/*
 * frame.h - batch framing (docs/FORMAT.md, "Batch"): the 64-byte batch
 * header, the checksums of the body's 1 KiB chunks, the table of block end
 * offsets, and zstd.
 *
 * Decoding never trusts a field before its checksum and its consistency with
 * the other fields have been checked; every accessor bounds-checks against
 * the bytes actually available. These functions are what the fuzzers drive.
 */
#ifndef KL_FRAME_H
#define KL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "kappalog.h"

#define KL_BATCH_HEADER_BYTES 64u
#define KL_BATCH_ENTRY_BYTES  4u          /* a table entry: the block's end offset */
#define KL_BATCH_CHUNK_BYTES  1024u       /* the stored body is checksummed per chunk */
#define KL_BATCH_SUM_BYTES    8u          /* one chunk checksum */
#define KL_BATCH_MAGIC        0x31424c4bu /* "KLB1" */
#define KL_BATCH_VERSION      1u
/* The largest raw body one batch may have (FORMAT.md, "Limits"). */
#define KL_BATCH_MAX_RAW                                                                           \
    ((uint64_t)KL_MAX_APPEND_BYTES + (uint64_t)KL_BATCH_ENTRY_BYTES * KL_MAX_APPEND_BLOCKS)

typedef struct kl_batch_hdr {
    uint8_t codec;
    uint64_t first_index;
    uint32_t count;
    uint32_t stored_len;
    uint32_t raw_len;
    uint64_t timestamp_ms;
    uint64_t data_bytes;
    uint64_t sums_checksum; /* XXH3-64 of the chunk checksums */
} kl_batch_hdr;

/* Bytes a batch of `count` blocks with `data_bytes` of data takes uncompressed. */
static inline uint64_t kl_batch_raw_len(uint64_t count, uint64_t data_bytes) {
    return KL_BATCH_ENTRY_BYTES * count + data_bytes;
}

/* Chunks of a stored body of `stored_len` bytes. */
static inline uint64_t kl_batch_chunks(uint64_t stored_len) {
    return (stored_len + KL_BATCH_CHUNK_BYTES - 1) / KL_BATCH_CHUNK_BYTES;
}

/* Bytes of a whole frame (header, chunk checksums, stored body) with this stored body. */
static inline uint64_t kl_batch_frame_bytes(uint64_t stored_len) {
    return KL_BATCH_HEADER_BYTES + KL_BATCH_SUM_BYTES * kl_batch_chunks(stored_len) + stored_len;
}

static inline uint64_t kl_batch_frame_len(const kl_batch_hdr *h) {
    return kl_batch_frame_bytes(h->stored_len);
}

/* The stored body inside a frame that starts at `frame`. */
static inline const uint8_t *kl_batch_stored(const kl_batch_hdr *h, const uint8_t *frame) {
    return frame + KL_BATCH_HEADER_BYTES + KL_BATCH_SUM_BYTES * kl_batch_chunks(h->stored_len);
}

/*
 * Decode the header at p (avail bytes readable there): magic, version,
 * checksum and the consistency of every field. 0 or KL_ECORRUPT with the
 * reason in the thread's error context.
 */
int kl_batch_hdr_decode(const uint8_t *p, size_t avail, kl_batch_hdr *h);

/* Encode h into 64 bytes at p, with its header checksum. */
void kl_batch_hdr_encode(uint8_t *p, const kl_batch_hdr *h);

/*
 * Check a whole frame (kl_batch_frame_len bytes at `frame`): the chunk
 * checksums against the header, and every chunk against its checksum.
 */
int kl_batch_verify(const kl_batch_hdr *h, const uint8_t *frame);

/* The checksum of chunk i of a stored body of a batch of block first_index. */
uint64_t kl_batch_chunk_sum(const uint8_t *chunk, size_t len, uint64_t first_index, uint64_t i);

/* The stored body length that makes a frame frame_len bytes: 1 and *stored, or 0 if none does. */
int kl_batch_stored_for_frame(uint64_t frame_len, uint32_t *stored);

/* Check only the chunks holding stored-body bytes [off, off + len). */
int kl_batch_verify_range(const kl_batch_hdr *h, const uint8_t *frame, uint64_t off, uint64_t len);

/*
 * Locate block k in a raw (uncompressed, raw_len bytes) body, checking the
 * table entries it uses against the body's bounds. It checks no checksum.
 */
int kl_batch_block(const kl_batch_hdr *h, const uint8_t *raw, uint32_t k, const uint8_t **data,
                   size_t *size);

/*
 * Block k of an uncompressed frame, checking the chunks that hold it and its
 * table entries (a random read verifies a few KiB, not the whole batch).
 */
int kl_batch_block_checked(const kl_batch_hdr *h, const uint8_t *frame, uint32_t k,
                           const uint8_t **data, size_t *size);

/* Check a whole raw body's table: ends non-decreasing, the last = data_bytes. */
int kl_batch_table_verify(const kl_batch_hdr *h, const uint8_t *raw);

/* Bytes kl_batch_frame writes for these blocks. */
static inline uint64_t kl_batch_plain_bytes(uint64_t count, uint64_t data_bytes) {
    return kl_batch_frame_bytes(kl_batch_raw_len(count, data_bytes));
}

/*
 * Frame `count` blocks as an uncompressed batch at out (which has room for
 * kl_batch_plain_bytes). Returns the bytes written.
 */
size_t kl_batch_frame(uint8_t *out, uint64_t first_index, const kl_block *blocks, size_t count,
                      uint64_t data_bytes, uint64_t timestamp_ms);

/* Bytes of a frame that precede its data: header, chunk checksums, table. */
static inline uint64_t kl_batch_meta_bytes(uint64_t count, uint64_t data_bytes) {
    return kl_batch_plain_bytes(count, data_bytes) - data_bytes;
}

/*
 * Frame `count` blocks whose data_bytes bytes lie back to back at `data` (the
 * caller has checked that they do), without copying them: the header, chunk checksums and table go
 * to `meta` (kl_batch_meta_bytes), and the frame is `meta` followed by `data`. Returns the meta
 * bytes written.
 */
size_t kl_batch_frame_split(uint8_t *meta, uint64_t first_index, const kl_block *blocks,
                            size_t count, const uint8_t *data, uint64_t data_bytes,
                            uint64_t timestamp_ms);

/*
 * Compress the raw body of an already framed uncompressed batch at `framed`
 * into a zstd frame at out (room for kl_batch_zstd_bound bytes). Returns the
 * bytes written, or 0 if compression does not make it smaller (keep the
 * uncompressed frame then).
 */
size_t kl_batch_compress(void *zstd_cctx, int level, const uint8_t *framed, uint8_t *out,
                         size_t out_cap);
size_t kl_batch_zstd_bound(uint64_t raw_len);

/* Decompress a verified zstd body into raw (h->raw_len bytes) and check its table. */
int kl_batch_decompress(void *zstd_dctx, const kl_batch_hdr *h, const uint8_t *stored,
                        uint8_t *raw);

/*
 * The raw body of a verified batch frame, its table checked: the stored
 * bytes, or for zstd the body decompressed into *buf (grown as needed;
 * *zstd_dctx made on first use). *raw points at it. 0 or a kl_error.
 */
int kl_batch_body(const kl_batch_hdr *h, const uint8_t *frame, void **zstd_dctx, uint8_t **buf,
                  size_t *cap, const uint8_t **raw);

#endif
