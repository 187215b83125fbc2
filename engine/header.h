/*
 * header.h - the two checksummed slots of the `header` file, the log's
 * commit point (docs/FORMAT.md, "header"; docs/DURABILITY.md for how the
 * slots alternate).
 */
#ifndef KL_HEADER_H
#define KL_HEADER_H

#include <stdint.h>

#include "hc.h"
#include "kappalog.h"

#define KL_HDR_SLOT_BYTES 4096u
#define KL_HDR_FILE_BYTES (2u * KL_HDR_SLOT_BYTES)
#define KL_HDR_VERSION    3u /* version 2 (read too) had no synced_end */
#define KL_HDR_MAGIC      "KAPPALOG"

typedef struct kl_slot {
    uint64_t seq;
    uint64_t length;
    uint64_t byte_length;
    uint64_t fork;
    uint64_t active_segment; /* first index of the last segment */
    uint64_t active_end;     /* committed bytes of the last segment */
    /* bytes of the last segment durable before this state's commit began (0: not known; a
       batch below it failing its checks is damage, not a torn write) */
    uint64_t synced_end;
    uint64_t commit_ms;
    uint64_t created_ms;
    kl_config cfg;
    uint32_t flags;      /* KL_SLOT_* */
    uint8_t boot_id[16]; /* the kernel boot that wrote it (all zero: unknown) */
    /* the signed Merkle tree at `length` (Hypercore) */
    uint8_t kind; /* kl_core_kind */
    uint8_t public_key[KL_PK_BYTES];
    uint32_t nroots; /* the full roots of `length`, left to right (indexes implied) */
    kl_node roots[KL_MAX_ROOTS];
    /* the stored signature: 68 bytes (default) or 64 (compat); 0: not signed
       yet (a commit under `interval` or `never`, signed right after: commit.c) */
    uint32_t sig_len;
    uint8_t sig[KL_STORED_SIG_MAX];
} kl_slot;

/* The slot was written only after every batch it covers was completely written. */
#define KL_SLOT_ORDERED 0x1u

/* Encode s into KL_HDR_SLOT_BYTES at p. */
void kl_slot_encode(uint8_t *p, const kl_slot *s);

/*
 * Decode and check one slot: checksum, ranges, and that its roots are the
 * full roots of its length summing to its byte length. The signature is
 * not checked here (kl_slot_verify). 0 or KL_ECORRUPT with the reason.
 */
int kl_slot_decode(const uint8_t *p, kl_slot *s);

/* The tree hash of a slot's roots. */
void kl_slot_tree_hash(const kl_slot *s, uint8_t out[KL_HASH_BYTES]);

/* Check a slot's signature over its tree: 0 or KL_EVERIFY (also if it has none). */
int kl_slot_verify(const kl_slot *s);

/* Is the slot acceptable as the log's state: unsigned, or its signature holds? */
static inline int kl_slot_trusted(const kl_slot *s) {
    return s->sig_len == 0 || kl_slot_verify(s) == 0;
}

/* Check the settings a slot carries (also used by kl_log_create). */
int kl_config_check(const kl_config *cfg);

#endif
