/*
 * frame.h - batch framing (docs/FORMAT.md, "Batch"): the 64-byte batch header,
 * the body's table of block end offsets and per-block checks, and zstd.
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
#define KL_BATCH_ENTRY_BYTES  8u
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
    uint64_t body_checksum;
} kl_batch_hdr;

/* Bytes a batch of `count` blocks with `data_bytes` of data takes uncompressed. */
static inline uint64_t kl_batch_raw_len(uint64_t count, uint64_t data_bytes) {
    return KL_BATCH_ENTRY_BYTES * count + data_bytes;
}

/*
 * Decode the header at p (avail bytes readable there): magic, version,
 * checksum and the consistency of every field. 0 or KL_ECORRUPT with the
 * reason in the thread's error context.
 */
int kl_batch_hdr_decode(const uint8_t *p, size_t avail, kl_batch_hdr *h);

/* Encode h into 64 bytes at p, with its header checksum. */
void kl_batch_hdr_encode(uint8_t *p, const kl_batch_hdr *h);

/* Check the stored body (stored_len bytes) against the header's body checksum. */
int kl_batch_body_verify(const kl_batch_hdr *h, const uint8_t *stored);

/*
 * Locate block k in a raw (uncompressed, raw_len bytes) body, checking the
 * table entries it uses. *data and *size receive the block. It does not
 * check the block's own check value: kl_batch_block_verify does.
 */
int kl_batch_block(const kl_batch_hdr *h, const uint8_t *raw, uint32_t k, const uint8_t **data,
                   size_t *size);

/* Check block k's 32-bit check value (seeded with its index). */
int kl_batch_block_verify(const kl_batch_hdr *h, const uint8_t *raw, uint32_t k,
                          const uint8_t *data, size_t size);

/* Check a whole raw body's table: ends non-decreasing, the last = data_bytes. */
int kl_batch_table_verify(const kl_batch_hdr *h, const uint8_t *raw);

/* The 32-bit check of a block (FORMAT.md). */
uint32_t kl_block_check(const void *data, size_t size, uint64_t index);

/*
 * Frame `count` blocks as an uncompressed batch at out (which has room for
 * 64 + kl_batch_raw_len bytes). Returns the bytes written.
 */
size_t kl_batch_frame(uint8_t *out, uint64_t first_index, const kl_block *blocks, size_t count,
                      uint64_t data_bytes, uint64_t timestamp_ms);

/*
 * Compress the raw body of an already framed uncompressed batch at `framed`
 * into out (room for 64 + kl_batch_zstd_bound bytes) with zstd. Returns the
 * bytes written, or 0 if compression does not make it smaller (keep the
 * uncompressed frame then).
 */
size_t kl_batch_compress(void *zstd_cctx, int level, const uint8_t *framed, uint8_t *out,
                         size_t out_cap);
size_t kl_batch_zstd_bound(uint64_t raw_len);

/* Decompress a verified zstd body into raw (h->raw_len bytes). */
int kl_batch_decompress(void *zstd_dctx, const kl_batch_hdr *h, const uint8_t *stored,
                        uint8_t *raw);

#endif
