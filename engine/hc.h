/*
 * hc.h - Hypercore's rules as pure functions: flat-tree node numbering,
 * BLAKE2b-256 leaf, parent and tree hashes, compact-encoding, the default
 * single-signer manifest, key and discovery key derivation, the signable
 * and the stored signature encodings. Byte-compatible with the JavaScript
 * `hypercore` package 11.37.1 (docs/FORMAT.md, "Hypercore"; tests/data/hypercore/ has
 * the golden vectors the unit tests check).
 *
 * Nothing here touches a file or the log: engine/tree.c keeps the nodes of
 * a log, engine/proof.c builds and checks proofs, both from these rules.
 */
#ifndef KL_HC_H
#define KL_HC_H

#include <stddef.h>
#include <stdint.h>

#include "kappalog.h"

#define KL_HASH_BYTES   32u
#define KL_PK_BYTES     32u
#define KL_SK_BYTES     64u /* seed || public key, as libsodium */
#define KL_SEED_BYTES   32u
#define KL_SIG_BYTES    64u /* a raw Ed25519 signature */
#define KL_MAX_ROOTS    64u /* a tree of < 2^64 blocks has at most 64 full roots */
#define KL_MANIFEST_MAX 256u
/* The stored signature: raw (compat) or the one-signer multisig encoding. */
#define KL_STORED_SIG_MAX    68u
#define KL_STORED_SIG_V1     68u
#define KL_STORED_SIG_COMPAT 64u

/* A Merkle tree node: flat-tree index, bytes of the blocks under it, hash. */
typedef struct kl_node {
    uint64_t index;
    uint64_t size;
    uint8_t hash[KL_HASH_BYTES];
} kl_node;

/* ---- flat tree (leaf of block i = node 2i) ---- */
uint64_t kl_ft_depth(uint64_t i);
uint64_t kl_ft_offset(uint64_t i);
uint64_t kl_ft_index(uint64_t depth, uint64_t offset);
uint64_t kl_ft_parent(uint64_t i);
uint64_t kl_ft_sibling(uint64_t i);
uint64_t kl_ft_left_span(uint64_t i);
uint64_t kl_ft_right_span(uint64_t i);
/* Does node i cover node j (j under i, or i itself)? */
int kl_ft_contains(uint64_t i, uint64_t j);
/* The full roots of a tree of `length` blocks, left to right; returns how many. */
size_t kl_ft_full_roots(uint64_t length, uint64_t out[KL_MAX_ROOTS]);

/*
 * Node i's place among the nodes of a tree in the order they are made
 * (post-order: a parent right after its right child), so the nodes that
 * blocks [a, b) complete are one contiguous run [kl_tree_pos(2a),
 * kl_tree_nodes(b)). A tree file that stores every node (low 0) keeps them
 * so; one that stores depth low and up applies it to the smaller tree whose
 * leaves are the depth-low nodes (tree.h, kl_tree_spos).
 */
uint64_t kl_tree_pos(uint64_t i);
/* Nodes in a tree of `length` blocks (leaves and completed parents). */
uint64_t kl_tree_nodes(uint64_t length);

/* ---- hashes ---- */
/* The leaf of block `block` holding `len` bytes. */
void kl_hc_leaf(uint64_t block, const uint8_t *data, size_t len, kl_node *out);
/*
 * The leaf hashes of count blocks (32 bytes each, to hashes); small blocks
 * sixteen, eight or four at a time (b2b4.h).
 */
void kl_hc_leaf_hashes(const kl_block *blocks, size_t count, uint8_t *hashes);
/*
 * out[j] = the parent of children[2j] (left) and children[2j + 1] (right),
 * for j < n, sixteen, eight or four at a time (b2b4.h). out may be children itself.
 */
void kl_hc_parent_row(const kl_node *children, size_t n, kl_node *out);
/* The parent of two sibling nodes (either order). */
void kl_hc_parent(const kl_node *a, const kl_node *b, kl_node *out);
/* The tree hash of full roots r[0..n). n = 0 is the empty tree. */
void kl_hc_tree_hash(const kl_node *r, size_t n, uint8_t out[KL_HASH_BYTES]);

/* ---- compact-encoding (hc_keys.c) ---- */
#define KL_CE_UINT_MAX 9u
/* Encode v as a compact uint at out; returns its length (1, 3, 5 or 9). */
size_t kl_ce_uint(uint8_t *out, uint64_t v);

/* A reader over untrusted bytes: every read checks bounds; `err` sticks. */
typedef struct kl_cd {
    const uint8_t *p;
    size_t at, len;
    int err; /* 0, or set by the first read that ran past the end or was malformed */
} kl_cd;
uint64_t kl_cd_uint(kl_cd *d);
/* n raw bytes (a pointer into the input), NULL past the end. */
const uint8_t *kl_cd_fixed(kl_cd *d, size_t n);
/* A length-prefixed buffer: its bytes and *n, NULL on error (n > max is an error). */
const uint8_t *kl_cd_buffer(kl_cd *d, size_t *n, size_t max);

/* ---- keys, manifests, signatures (hc_keys.c) ---- */
typedef enum kl_core_kind {
    KL_CORE_DEFAULT = 0, /* a version-1 single-signer manifest; key = its hash */
    KL_CORE_COMPAT = 1   /* key = the public key, raw signatures */
} kl_core_kind;

/* libsodium's crypto_sign_seed_keypair. */
void kl_hc_keypair(const uint8_t seed[KL_SEED_BYTES], uint8_t pk[KL_PK_BYTES],
                   uint8_t sk[KL_SK_BYTES]);

/* The default single-signer manifest of pk, encoded (70 bytes); returns its length. */
size_t kl_hc_manifest_default(const uint8_t pk[KL_PK_BYTES], uint8_t out[KL_MANIFEST_MAX]);

/*
 * Decode a manifest received from a peer (versions 1..3, as hypercore's
 * `manifest` encoding; version 0 and > 3 are refused). 0 or KL_ECORRUPT with
 * the reason. Only the fields kappalog acts on are kept.
 */
typedef struct kl_manifest {
    uint32_t version, flags, hash, quorum;
    uint32_t nsigners;
    uint32_t sig_type;         /* of signer 0 */
    uint8_t ns[KL_HASH_BYTES]; /* of signer 0 */
    uint8_t pk[KL_PK_BYTES];   /* of signer 0 */
} kl_manifest;
int kl_hc_manifest_decode(const uint8_t *p, size_t n, kl_manifest *m);

/* The core key: the manifest's hash (default) or pk itself (compat). */
void kl_hc_core_key(kl_core_kind kind, const uint8_t pk[KL_PK_BYTES], uint8_t key[KL_HASH_BYTES]);
/* The discovery key of a core key. */
void kl_hc_discovery_key(const uint8_t key[KL_HASH_BYTES], uint8_t out[KL_HASH_BYTES]);

/* The bytes a signature covers (112 default, 80 compat); returns the length. */
size_t kl_hc_signable(kl_core_kind kind, const uint8_t key[KL_HASH_BYTES],
                      const uint8_t tree_hash[KL_HASH_BYTES], uint64_t length, uint64_t fork,
                      uint8_t out[112]);

/* Sign the tree: *n gets the stored signature's length (68 default, 64 compat). */
void kl_hc_sign(kl_core_kind kind, const uint8_t sk[KL_SK_BYTES], const uint8_t key[KL_HASH_BYTES],
                const uint8_t tree_hash[KL_HASH_BYTES], uint64_t length, uint64_t fork,
                uint8_t sig[KL_STORED_SIG_MAX], size_t *n);

/* Check a stored signature; 0, or KL_EVERIFY with the reason. */
int kl_hc_verify(kl_core_kind kind, const uint8_t pk[KL_PK_BYTES], const uint8_t key[KL_HASH_BYTES],
                 const uint8_t tree_hash[KL_HASH_BYTES], uint64_t length, uint64_t fork,
                 const uint8_t *sig, size_t n);

#endif
