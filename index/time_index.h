/*
 * time_index.h - the time index of one segment (docs/FORMAT.md,
 * "segments/<first>.tix"): entries (batch timestamp in Unix ms, block index
 * relative to the segment), made at the same moments as the segment's
 * offset-index entries, so entry i of the .tix and entry i of the .idx
 * describe the same batch.
 *
 * The entries are stored as kl_oidx's are, by entry_array.h: the mapped
 * .tix file (a sealed segment whose file checked out) or a fixed-capacity
 * array the log's writer appends to, which never moves and whose `count` is
 * published with release order, so readers search it without a lock.
 *
 * This module only stores, searches, reads and writes entries; whether an
 * entry agrees with the .idx and with the batch header it names is checked
 * by the engine (engine/seek_time.c) before the entry is trusted.
 */
#ifndef KL_TIME_INDEX_H
#define KL_TIME_INDEX_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "../engine/io/io.h"
#include "entry_array.h"

#define KL_TIX_HEADER_BYTES 64u
#define KL_TIX_ENTRY_BYTES  12u /* timestamp_ms (u64), rel_index (u32) */
#define KL_TIX_VERSION      1u
#define KL_TIX_MAGIC        "KLTIMEX1"
#define KL_TIX_FLAG_SEALED  1u

typedef struct kl_tidx {
    uint64_t first_index; /* the segment's first block */
    KL_EARR_EMBED(arr);   /* ent, count, cap, anon, written...: entry_array.h */
} kl_tidx;

/* A writable, empty index with room for the entries of a segment of up to max_bytes. */
int kl_tidx_init(kl_tidx *x, uint64_t first_index, uint64_t max_bytes);
void kl_tidx_free(kl_tidx *x, kl_io *io);

/* Append the entry of the batch whose first block is rel (the caller decides when). */
void kl_tidx_note(kl_tidx *x, uint64_t rel, uint64_t ts_ms);

/* Keep only the first n entries (writer side). */
void kl_tidx_cut(kl_tidx *x, uint64_t n);

static inline uint64_t kl_tidx_count(const kl_tidx *x) {
    return kl_earr_count(&x->arr);
}

/* Entry i: timestamp and relative index. */
static inline void kl_tidx_entry(const kl_tidx *x, uint64_t i, uint64_t *ts_ms, uint64_t *rel) {
    const uint8_t *e = x->ent + (size_t)i * KL_TIX_ENTRY_BYTES;
    uint64_t t;
    uint32_t r;
    memcpy(&t, e, 8);
    memcpy(&r, e + 8, 4);
    *ts_ms = t;
    *rel = r;
}

/*
 * Among the first n entries (n <= count), the last whose timestamp is below
 * time_ms: its number, or -1 if there is none. Entries out of order make
 * the search land on some entry; the caller's check of that entry and its
 * walk over real batch headers keep the answer right.
 */
int64_t kl_tidx_find(const kl_tidx *x, uint64_t n, uint64_t time_ms);

/*
 * Load the entries of a .tix file (len bytes at buf) into the writable
 * array x: the in-order prefix (first rel 0, then rel strictly increasing
 * and timestamps non-decreasing), at most max_entries and the capacity. A
 * missing or damaged file gives zero entries, never an error: the index is
 * derived data.
 */
void kl_tidx_parse(kl_tidx *x, const uint8_t *buf, size_t len, uint64_t max_entries);

/* kl_tidx_parse on the file at path. */
void kl_tidx_load(kl_tidx *x, kl_io *io, const char *path, uint64_t max_entries);

/*
 * Do len bytes at p form a complete sealed .tix of a segment starting at
 * first_index and ending at segment_end (header, size, entries checksum)?
 * 0 with *n its entries, or KL_ECORRUPT.
 */
int kl_tidx_check_sealed(const uint8_t *p, size_t len, uint64_t first_index, uint64_t segment_end,
                         uint64_t *n);

/*
 * Map a sealed .tix file for reading without copying it (x is then
 * read-only). 0, or KL_ECORRUPT if it is missing or fails
 * kl_tidx_check_sealed.
 */
int kl_tidx_map_sealed(kl_tidx *x, kl_io *io, const char *path, uint64_t first_index,
                       uint64_t segment_end);

/*
 * The bytes of the entries not yet in the file, up to entry `upto`: *iov to
 * write at *offset. 0 if none. Call kl_tidx_written(x, upto) once they are.
 */
int kl_tidx_pending(const kl_tidx *x, uint64_t upto, struct iovec *iov, uint64_t *offset);
void kl_tidx_written(kl_tidx *x, uint64_t upto);

/* The 64-byte file header of an active (unsealed) or sealed index. */
void kl_tidx_header(uint8_t *p, const kl_tidx *x, int sealed, uint64_t segment_end);

/* Write the whole index as a sealed file (temporary file, then rename; no sync: derived data). */
int kl_tidx_write_sealed(kl_tidx *x, kl_io *io, const char *path, uint64_t segment_end);

/* Rewrite the file as an active index holding the current entries; *fd_out stays open. */
int kl_tidx_write_active(kl_tidx *x, kl_io *io, const char *path, int *fd_out);

#endif
