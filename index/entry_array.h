/*
 * entry_array.h - the storage both segment indexes share (docs/FORMAT.md,
 * "segments/<first>.idx" and "segments/<first>.tix"): an array of
 * fixed-size entries, either in an anonymous mapping of fixed capacity that
 * the log's writer appends to (the active segment, or an index rebuilt in
 * memory) or in the mapped file of a sealed segment, just past its header.
 * Arrays and files of up to 64 KiB are kept on the heap instead (a copy of
 * the file), so that small segments do not use up the process's mappings
 * (entry_array.c, EARR_HEAP_BYTES).
 *
 * Owns: that memory, `count` (the entries readers may use), `written` (the
 * entries already in the file), and writing and mapping the file.
 * Invariants: the array never moves once made, so readers search it without
 * a lock; an entry is complete before `count` covers it (release order);
 * after a cut, `written` is at most `count`.
 *
 * The one thing a reader would get wrong: this module knows no format. It
 * never builds or checks a header nor looks inside an entry; the index that
 * embeds it (offset_index.c, time_index.c) does, and hands it the header
 * bytes to write and the entry count a mapped file proved to hold.
 */
#ifndef KL_ENTRY_ARRAY_H
#define KL_ENTRY_ARRAY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../engine/io/io.h"

/*
 * The fields, spelled once. An index embeds them with KL_EARR_EMBED(arr):
 * its readers keep reading x->count, x->ent, x->cap (the engine does), and
 * &x->arr is what the kl_earr_* calls take. A union of a named and an
 * anonymous struct with the same members is the Linux kernel's
 * struct_group(); C11 6.5.2.3 lets either name reach the shared members.
 */
#define KL_EARR_FIELDS                                                                             \
    const uint8_t *ent;     /* entries, entry_bytes each: anon, or inside file_map */              \
    _Atomic uint64_t count; /* entries readers may use */                                          \
    uint64_t cap;           /* entries anon can hold (0 when ent is the mapped file) */            \
    uint8_t *anon;          /* the writable array, or NULL when ent is the mapped file */          \
    uint32_t entry_bytes;   /* one entry, as its format says */                                    \
    uint32_t header_bytes;  /* the file header before the entries, as its format says */           \
    const void *file_map;   /* the sealed file, mapped or copied, or NULL */                       \
    size_t file_map_len;                                                                           \
    int on_heap;      /* anon or file_map is a heap copy, not a mapping (small arrays) */          \
    uint64_t written; /* entries already written to the file (writer side) */

typedef struct kl_earr {
    KL_EARR_FIELDS
} kl_earr;

#define KL_EARR_EMBED(name)                                                                        \
    union {                                                                                        \
        kl_earr name;                                                                              \
        struct {                                                                                   \
            KL_EARR_FIELDS                                                                         \
        };                                                                                         \
    }

/* A writable, empty array of cap entries. KL_ENOMEM (the reason recorded) if it cannot be made. */
int kl_earr_init(kl_earr *a, uint64_t cap, uint32_t entry_bytes, uint32_t header_bytes);

/* Unmap whatever a holds and zero it. io may be NULL if no file is mapped. */
void kl_earr_free(kl_earr *a, kl_io *io);

static inline uint64_t kl_earr_count(const kl_earr *a) {
    return atomic_load_explicit(&a->count, memory_order_acquire);
}

/* Copy one entry (entry_bytes at e) to the end of the writable array, then publish it. */
void kl_earr_append(kl_earr *a, const uint8_t *e);

/* Keep only the first n entries (writer side); n past the count changes nothing. */
void kl_earr_cut(kl_earr *a, uint64_t n);

/*
 * The bytes of the entries not yet in the file, up to entry `upto` (<= the
 * count): *iov to write at *offset. 0 if none. Call kl_earr_written(a, upto)
 * once they are.
 */
int kl_earr_pending(const kl_earr *a, uint64_t upto, struct iovec *iov, uint64_t *offset);
void kl_earr_written(kl_earr *a, uint64_t upto);

/*
 * Write hdr (header_bytes) and every entry to path: through path.tmp and a
 * rename for a sealed file, in place with the descriptor left open in
 * *fd_out for an active one. No sync: an index is derived data.
 */
int kl_earr_write_sealed(kl_earr *a, kl_io *io, const char *path, const uint8_t *hdr);
int kl_earr_write_active(kl_earr *a, kl_io *io, const char *path, const uint8_t *hdr, int *fd_out);

/*
 * Map the file at path read-only into a zeroed a, with no entries yet:
 * a->file_map holds a->file_map_len >= header_bytes bytes for the index to
 * check. Then kl_earr_map_accept(a, n) if they hold n entries, or
 * kl_earr_free(a, io). KL_ECORRUPT if the file is missing or too short.
 */
int kl_earr_map_file(kl_earr *a, kl_io *io, const char *path, uint32_t entry_bytes,
                     uint32_t header_bytes);
void kl_earr_map_accept(kl_earr *a, uint64_t n);

#endif
