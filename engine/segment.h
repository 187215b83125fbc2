/*
 * segment.h - segment files (docs/FORMAT.md, "segments/<first>.log"): their
 * names, their 64-byte file header, and listing them.
 */
#ifndef KL_SEGMENT_H
#define KL_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#define KL_SEG_HEADER_BYTES 64u
#define KL_SEG_VERSION      1u
#define KL_SEG_MAGIC        "KLSEGMNT"
#define KL_SEG_NAME_DIGITS  20

/* "<segdir>/<20-digit first>.<ext>" into out (cap bytes). */
void kl_seg_path(char *out, size_t cap, const char *segdir, uint64_t first, const char *ext);

/* "blocks F..E-1" (the blocks [first, end) of a message) or "no blocks yet" into out. */
const char *kl_seg_blocks(char *out, size_t cap, uint64_t first, uint64_t end);

void kl_seg_header_encode(uint8_t *p, uint64_t first_index, uint64_t created_ms);

/* Check a segment file header; its first index must be expect_first. */
int kl_seg_header_decode(const uint8_t *p, size_t avail, uint64_t expect_first);

/*
 * The first indexes of every "<20 digits>.log" in segdir, sorted. Other
 * names are ignored. *out is malloc'ed (free it); *n may be 0.
 */
/*
 * The fork a segment file was written in (header bytes 32..39, zero before
 * the first truncation). A truncation that rewrites a segment gives the new
 * file the new fork, so a reader opened before it never maps the rewritten
 * file as its own (read.c).
 */
void kl_seg_header_set_fork(uint8_t *p, uint64_t fork);
uint64_t kl_seg_header_fork(const uint8_t *p);

int kl_seg_list(const char *segdir, uint64_t **out, size_t *n);

#endif
