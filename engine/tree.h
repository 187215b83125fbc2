/*
 * tree.h - the `tree` file of a log and the incremental tree builder.
 *
 * The file holds every node of the Merkle tree (leaves and completed
 * parents) at a fixed place: node i is the 40 bytes (hash, u64 size) at
 * KL_TREE_HEADER_BYTES + 40 * kl_tree_pos(i), in the order nodes are made,
 * so one commit writes one contiguous run at the end and any node is one
 * read away (docs/FORMAT.md, "tree"). Nodes are derived data: all of them
 * can be recomputed from the blocks, and the signed roots in the header
 * slot say which tree is the right one.
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
#define KL_TREE_VERSION      1u

/* Byte offset of the node stored at position pos. */
static inline uint64_t kl_tree_off(uint64_t pos) {
    return KL_TREE_HEADER_BYTES + KL_TREE_NODE_BYTES * pos;
}

void kl_tree_header_encode(uint8_t p[KL_TREE_HEADER_BYTES]);
/* 0, or KL_ECORRUPT with the reason. */
int kl_tree_header_check(const uint8_t *p, size_t n);

void kl_tree_node_encode(uint8_t p[KL_TREE_NODE_BYTES], const kl_node *n);
void kl_tree_node_decode(const uint8_t p[KL_TREE_NODE_BYTES], uint64_t index, kl_node *n);

/* Read node `index` of the tree file fd. 0, or a kl_error with the reason. */
int kl_tree_read(kl_io *io, int fd, uint64_t index, kl_node *out);

/*
 * The full roots of a tree as blocks are added to it. Adding the leaf of
 * the next block yields the nodes it completes, in file order (the leaf,
 * then each new parent up).
 */
typedef struct kl_treeb {
    kl_node roots[KL_MAX_ROOTS];
    size_t n;
    uint64_t length;
} kl_treeb;

void kl_treeb_init(kl_treeb *t, const kl_node *roots, size_t n, uint64_t length);

/* Most nodes one leaf can complete: itself and a parent per level. */
#define KL_TREEB_MAX_NEW (KL_MAX_ROOTS + 1u)

/* Add the next block's leaf; its new nodes go encoded to out. Returns how many. */
size_t kl_treeb_add(kl_treeb *t, const uint8_t hash[KL_HASH_BYTES], uint64_t size, uint8_t *out);

/* As kl_treeb_add with the block's bytes: hashes the leaf first. */
size_t kl_treeb_add_block(kl_treeb *t, const uint8_t *data, size_t len, uint8_t *out);

/* Leaf hashes of `count` blocks (hash only; sizes are the blocks'). */
void kl_tree_hash_leaves(const kl_block *blocks, size_t count, uint8_t *hashes);

#endif
