/*
 * tree.h - the `tree` file of a log and the incremental tree builder.
 *
 * The file holds the nodes of the Merkle tree of depth `low` and up (the
 * file's header says which low; version 1 files have low 0, every node):
 * node i is the 40 bytes (hash, u64 size) at kl_tree_off(kl_tree_spos(i, low)), in
 * the order nodes are made, so one commit writes one contiguous run at the
 * end and a stored node is one read away (docs/FORMAT.md, "tree"). A node
 * below low covers at most 2^(low-1) blocks and is hashed from them when
 * asked for (read.c). Nodes are derived data: all of them can be
 * recomputed from the blocks, and the signed roots in the header slot say
 * which tree is the right one.
 */
#ifndef KL_TREE_H
#define KL_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "hc.h"
#include "io/io.h"

#define KL_TREE_HEADER_BYTES 64u
#define KL_TREE_NODE_BYTES   40u
#define KL_TREE_MAGIC        "KLTREE01"
#define KL_TREE_VERSION      2u
/*
 * The low of new logs: nodes over 16 blocks and up are stored, 5 bytes a
 * block where every node took 80. A commit's flush costs in proportion to
 * the bytes it sends on the disks measured (bench/compare/ANALYSIS.md), and
 * a node below is at most 8 blocks away from being hashed again.
 */
#define KL_TREE_LOW     4u
#define KL_TREE_LOW_MAX 8u

/* Byte offset of the node stored at position pos. */
static inline uint64_t kl_tree_off(uint64_t pos) {
    return KL_TREE_HEADER_BYTES + KL_TREE_NODE_BYTES * pos;
}

/* Is node i kept in a tree file of this low? */
static inline int kl_tree_stored(uint64_t i, unsigned low) {
    return (~i & ((UINT64_C(1) << low) - 1)) == 0; /* depth(i) >= low */
}

/*
 * Where a stored node is: the nodes of depth low and up form the tree whose
 * leaves are the depth-low nodes, node i being its node (i + 1) / 2^low - 1.
 */
static inline uint64_t kl_tree_spos(uint64_t i, unsigned low) {
    return kl_tree_pos(((i + 1) >> low) - 1);
}

/* Nodes a tree file of this low holds for `length` blocks. */
static inline uint64_t kl_tree_count(uint64_t length, unsigned low) {
    return kl_tree_nodes(length >> low);
}

/* Bytes of a tree file of this low holding the tree of `length` blocks. */
static inline uint64_t kl_tree_bytes(uint64_t length, unsigned low) {
    return kl_tree_off(kl_tree_count(length, low));
}

void kl_tree_header_encode(uint8_t p[KL_TREE_HEADER_BYTES], unsigned low);
/* 0 and the file's low, or KL_ECORRUPT with the reason. */
int kl_tree_header_check(const uint8_t *p, size_t n, unsigned *low);
/* Read and check the header of the tree file fd: 0 and its low, or a kl_error. */
/* torn (may be NULL): on an error, whether the header is cut short, without its magic or
   failing its checksum, rather than of a version or layout this build does not know. */
int kl_tree_header_read(kl_io *io, int fd, unsigned *low, int *torn);
/* 32 zero bytes: never a BLAKE2b output, so a node lost or not written yet. */
int kl_hash_is_zero(const uint8_t hash[KL_HASH_BYTES]);

void kl_tree_node_encode(uint8_t p[KL_TREE_NODE_BYTES], const kl_node *n);
void kl_tree_node_decode(const uint8_t p[KL_TREE_NODE_BYTES], uint64_t index, kl_node *n);

/* Read stored node `index` of the tree file fd of this low. 0, or a kl_error with the reason. */
int kl_tree_read(kl_io *io, int fd, unsigned low, uint64_t index, kl_node *out);

/*
 * The full roots of a tree as blocks are added to it. Adding the leaf of
 * the next block yields the nodes it completes that a file of t->low
 * stores, in file order (the leaf, then each new parent up).
 */
typedef struct kl_treeb {
    kl_node roots[KL_MAX_ROOTS];
    size_t n;
    uint64_t length;
    unsigned low;
} kl_treeb;

void kl_treeb_init(kl_treeb *t, const kl_node *roots, size_t n, uint64_t length, unsigned low);

/* Most nodes one leaf can complete: itself and a parent per level. */
#define KL_TREEB_MAX_NEW (KL_MAX_ROOTS + 1u)

/* Add the next block's leaf; its new stored nodes go encoded to out. Returns how many. */
size_t kl_treeb_add(kl_treeb *t, const uint8_t hash[KL_HASH_BYTES], uint64_t size, uint8_t *out);

/*
 * Building the nodes of many blocks at once. Blocks [a, e) split into
 * complete subtrees ("spans"), each aligned to its size and as big as that
 * allows, so nothing in one joins a node left of it: its parents can be
 * made a row at a time, sixteen, eight or four hashes per step (kl_hc_parent_row),
 * rather than one leaf's chain after another. kl_treeb_join then puts the spans'
 * tops on the roots, making the few parents that join them. Every stored
 * node lands where kl_treeb_add puts it: `nodes` holds file positions from
 * `base` on (kl_tree_spos(node, low) - base).
 */
#define KL_TREE_MAX_SPANS 128u

/* Blocks of the biggest complete subtree that starts at block a and ends by e (a < e). */
uint64_t kl_tree_span_at(uint64_t a, uint64_t e);

/*
 * The spans of blocks [a, e) (leaf hashes and blocks from block a on): every
 * node in them of depth low and up goes encoded to
 * nodes + 40 * (kl_tree_spos(node, low) - base), their tops to tops.
 * scratch holds e - a nodes. Returns how many spans.
 */
size_t kl_tree_build_spans(const kl_block *blocks, const uint8_t *hashes, uint64_t a, uint64_t e,
                           unsigned low, uint64_t base, uint8_t *nodes, kl_node *scratch,
                           kl_node tops[KL_TREE_MAX_SPANS]);

/*
 * Add the n spans kl_tree_build_spans made (t->length must be their first
 * block) to t: the stored parents that join them go encoded to their places
 * in nodes. Returns how many parents were made.
 */
size_t kl_treeb_join(kl_treeb *t, const kl_node *tops, size_t n, uint64_t base, uint8_t *nodes);

/* As kl_treeb_add with the block's bytes: hashes the leaf first. */
size_t kl_treeb_add_block(kl_treeb *t, const uint8_t *data, size_t len, uint8_t *out);

/* Leaf hashes of `count` blocks (hash only; sizes are the blocks'). */
void kl_tree_hash_leaves(const kl_block *blocks, size_t count, uint8_t *hashes);

#endif
