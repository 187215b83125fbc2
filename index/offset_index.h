/*
 * offset_index.h - the sparse offset index of one segment (docs/FORMAT.md,
 * "segments/<first>.idx"): entries (block index relative to the segment,
 * byte position of the batch holding it), one per batch or per
 * KL_IDX_INTERVAL_BYTES of segment.
 *
 * The entries are stored by entry_array.h: the mapped .idx file (a sealed
 * segment whose index checked out) or a fixed-capacity array the log's
 * writer appends to, which never moves and whose `count` is published with
 * release order, so readers search it without a lock.
 *
 * This module only stores and searches entries and reads/writes the file;
 * whether an entry really points at the batch it claims is checked by the
 * log against the segment before the entry is trusted.
 */
#ifndef KL_OFFSET_INDEX_H
#define KL_OFFSET_INDEX_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "../engine/io/io.h"
#include "entry_array.h"

#define KL_IDX_HEADER_BYTES   64u
#define KL_IDX_ENTRY_BYTES    8u
#define KL_IDX_INTERVAL_BYTES 4096u
#define KL_IDX_VERSION        1u
#define KL_IDX_MAGIC          "KLINDEX1"
#define KL_IDX_FLAG_SEALED    1u

typedef struct kl_oidx {
    uint64_t first_index; /* the segment's first block */
    KL_EARR_EMBED(arr);   /* ent, count, cap, anon, written...: entry_array.h */
    uint64_t last_pos;    /* position of the last entry (writer side) */
} kl_oidx;

/* A writable, empty index with room for a segment of up to max_bytes. */
int kl_oidx_init(kl_oidx *x, uint64_t first_index, uint64_t max_bytes);
void kl_oidx_free(kl_oidx *x, kl_io *io);

/*
 * Record the batch at `pos` whose first block is rel (relative index) if the
 * interval rule asks for it. Returns 1 if an entry was added.
 */
int kl_oidx_note(kl_oidx *x, uint64_t rel, uint64_t pos);

/* Drop every entry at or past byte position `pos` (writer side). */
void kl_oidx_cut(kl_oidx *x, uint64_t pos);

/* Entry i: relative index and position. */
static inline void kl_oidx_entry(const kl_oidx *x, uint64_t i, uint64_t *rel, uint64_t *pos) {
    const uint8_t *e = x->ent + (size_t)i * KL_IDX_ENTRY_BYTES;
    uint32_t r, p;
    memcpy(&r, e, 4);
    memcpy(&p, e + 4, 4);
    *rel = r;
    *pos = p;
}

/*
 * The last entry whose relative index is <= rel: its number in *i. -1 if
 * there is none (count 0). Entries that are out of order make the search
 * land on some entry; the caller's check of that entry catches it.
 */
int64_t kl_oidx_find(const kl_oidx *x, uint64_t rel);

/*
 * Load the entries of an .idx file into the writable array x: only those
 * that are in order and below `end` (the committed end of the segment).
 * *sealed_ok is set if the file is a sealed index that checks out in full
 * (header, entries checksum, segment_end == end). A missing or damaged file
 * gives zero entries, never an error: the index is derived data.
 */
void kl_oidx_load(kl_oidx *x, kl_io *io, const char *path, uint64_t end, int *sealed_ok);

/* kl_oidx_load on bytes already read (len bytes of an .idx file). */
void kl_oidx_parse(kl_oidx *x, const uint8_t *buf, size_t len, uint64_t end, int *sealed_ok);

/*
 * Map a sealed .idx file for reading without copying it. 0 on success (x is
 * then read-only), KL_ECORRUPT if it is missing or fails a check, and
 * *segment_end receives the end it records.
 */
int kl_oidx_map_sealed(kl_oidx *x, kl_io *io, const char *path, uint64_t first_index,
                       uint64_t *segment_end);

/*
 * The bytes of the entries not yet in the file: *iov to write at *offset.
 * 0 if none. Call kl_oidx_written(x, n) when they are.
 */
int kl_oidx_pending(const kl_oidx *x, uint64_t upto, struct iovec *iov, uint64_t *offset);
void kl_oidx_written(kl_oidx *x, uint64_t upto);

/* The 64-byte file header of an active (unsealed) or sealed index. */
void kl_oidx_header(uint8_t *p, const kl_oidx *x, int sealed, uint64_t segment_end);

/*
 * Write the whole index as a sealed file (temporary file, then rename; no
 * sync: the index is derived data).
 */
int kl_oidx_write_sealed(kl_oidx *x, kl_io *io, const char *path, uint64_t segment_end);

/*
 * Rewrite the file as an active index holding the current entries (after
 * recovery changed them).
 */
int kl_oidx_write_active(kl_oidx *x, kl_io *io, const char *path, int *fd_out);

#endif
