/*
 * cursor.h - the cursor file's slots (docs/FORMAT.md, "consumers/<name>.cursor"),
 * private to the library; the public API is kl_cursor_* in kappalog.h. The
 * fuzzer (tests/fuzz/fuzz_cursor.c) drives the decoder through here.
 */
#ifndef KL_CURSOR_H
#define KL_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#define CUR_SLOT_BYTES 512u /* a sector: a torn write of one slot never touches the other */
#define CUR_FILE_BYTES (2u * CUR_SLOT_BYTES)

typedef struct cur_slot {
    uint64_t seq, position, fork, commit_ms;
    int has_hash;          /* tree_hash holds the log's tree hash at position (version 2) */
    uint8_t tree_hash[32]; /* kl_log_tree_hash(log, position) when committed */
} cur_slot;

/* Encode s into CUR_SLOT_BYTES at p. */
void kl_cur_slot_encode(uint8_t *p, const cur_slot *s);

/*
 * The newest slot that checks out among the `got` bytes of a cursor file at
 * b: 0 with *out and *which (0 or 1) set, or -1 if neither does.
 */
int kl_cur_decode(const uint8_t *b, size_t got, cur_slot *out, int *which);

#endif
