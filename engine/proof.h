/*
 * proof.h - Hypercore's Merkle proofs: the `request` a downloader sends,
 * the `data` message that answers it, how a sender builds the proof
 * (hypercore 11.37.1 `generateProof`) and how a receiver checks it
 * (`verifyTree` / `verifyUpgrade`). Notes sections 7 and 8.7; the golden
 * vectors in tests/data/hypercore/proofs.json pin every byte.
 *
 * Messages are the payloads of wire messages 1 (request) and 3 (data),
 * without the Protomux channel id or message type in front. A decoded
 * kl_proof points into the bytes it was decoded from (the block value, the
 * signature, the manifest): they must outlive it.
 */
#ifndef KL_PROOF_H
#define KL_PROOF_H

#include <stddef.h>
#include <stdint.h>

#include "hc.h"
#include "kappalog.h"

/*
 * The flag bits of both messages, as on the wire. A request uses all six;
 * a data message the first five (its manifest bit means "the manifest
 * follows", not "send me the manifest").
 */
#define KL_PROOF_BLOCK         0x01u
#define KL_PROOF_HASH          0x02u
#define KL_PROOF_SEEK          0x04u
#define KL_PROOF_UPGRADE       0x08u
#define KL_PROOF_MANIFEST      0x10u
#define KL_PROOF_PRIORITY      0x20u /* request only */
#define KL_PROOF_REQUEST_FLAGS 0x3fu
#define KL_PROOF_DATA_FLAGS    0x1fu

/*
 * Most nodes in one list of a data message. A block or hash path has at
 * most one node per level (< 64). An upgrade list can hold twice that:
 * the right-hand siblings that complete the receiver's last root (one per
 * level of the new root) and then every smaller root after it, so a tree
 * of 2^k - 1 blocks grown from 1 needs 2(k - 1). 128 covers any tree.
 */
#define KL_PROOF_MAX_NODES 128u

/*
 * compact-encoding reads integers as JS numbers and refuses any above
 * 2^53 - 1 (kl_cd_uint does the same), so no peer can name a block, a
 * length or a node index past this. Lengths and indexes are held to it,
 * which also keeps every flat-tree computation far from overflow.
 */
#define KL_PROOF_MAX_U53 ((1ull << 53) - 1)

/* Longest upgrade signature a data message may carry (a stored signature is 64 or 68). */
#define KL_PROOF_MAX_SIG_BYTES 1024u

/* A node getter: 0 and *out filled, or a negative kl_error (KL_ENOTFOUND: not held). */
typedef int (*kl_proof_get_fn)(void *ctx, uint64_t index, kl_node *out);

/* ---- the request message (type 1) ---- */

typedef struct kl_proof_request {
    uint32_t flags; /* KL_PROOF_* bits: which of the parts below are present */
    uint64_t id;    /* chosen by the requester, echoed in the data message */
    uint64_t fork;  /* the fork the requester believes the sender is at */
    struct {
        uint64_t index; /* block number (block) or flat-tree index (hash) */
        uint64_t nodes; /* levels the requester lacks above it (notes 7.3) */
    } block, hash;
    struct {
        uint64_t bytes, padding;
    } seek;
    struct {
        uint64_t start, length; /* from the requester's length, over `length` blocks */
    } upgrade;
    uint64_t priority; /* on the wire only with KL_PROOF_PRIORITY */
} kl_proof_request;

/* ---- the data message (type 3) ---- */

typedef struct kl_proof_nodes {
    size_t n;
    kl_node node[KL_PROOF_MAX_NODES];
} kl_proof_nodes;

typedef struct kl_proof {
    uint32_t flags;   /* KL_PROOF_BLOCK, _HASH, _SEEK, _UPGRADE, _MANIFEST */
    uint64_t request; /* the request id this answers */
    uint64_t fork;    /* the sender's fork; an upgrade's signature covers it */
    struct {
        uint64_t index;
        const uint8_t *value; /* the block's bytes (the builder leaves it to the caller) */
        size_t value_len;
        kl_proof_nodes nodes; /* siblings from the leaf up */
    } block;
    struct {
        uint64_t index;
        kl_proof_nodes nodes; /* the node itself, then siblings up */
    } hash;
    struct {
        uint64_t bytes;
        kl_proof_nodes nodes;
    } seek;
    struct {
        uint64_t start, length;
        kl_proof_nodes nodes;      /* from the receiver's length to start + length */
        kl_proof_nodes additional; /* from start + length to the sender's length */
        const uint8_t *signature;  /* the sender's stored signature (NULL: none) */
        size_t signature_len;
    } upgrade;
    const uint8_t *manifest; /* the manifest encoding, the message's last field */
    size_t manifest_len;
} kl_proof;

/* ---- building (the sender) ---- */

typedef struct kl_proof_source {
    uint64_t length; /* L: the sender's length, the one `signature` signs */
    uint64_t fork;
    const uint8_t *signature; /* the stored signature for (L, fork) */
    size_t signature_len;
    const uint8_t *manifest; /* sent when asked for; NULL for a compat core (never sent) */
    size_t manifest_len;
    kl_proof_get_fn get; /* the sender's tree nodes */
    void *ctx;
} kl_proof_source;

/*
 * Build the proof that answers req: exactly the nodes hypercore's
 * generateProof puts in (notes 7.1). block.value is left NULL: the caller
 * reads the block and sets value/value_len before encoding. Signature and
 * manifest point at the source's bytes.
 *
 * KL_EINVAL (out untouched) for a request hypercore refuses (an upgrade out
 * of range, a block past the length, a block or hash path leaving the
 * tree, a block or hash an upgrade cannot carry) and for seek requests,
 * which kappalog does not serve; KL_ECONFLICT if req->fork is not ours
 * (hypercore answers both with noData). A getter error is returned as is.
 */
int kl_proof_build(const kl_proof_source *src, const kl_proof_request *req, kl_proof *out);

/* ---- checking (the receiver) ---- */

typedef struct kl_proof_receiver {
    kl_core_kind kind;
    const uint8_t *key; /* the core key */
    const uint8_t *pk;  /* the signer's public key; NULL: learn it from data.manifest */
    uint64_t length;    /* s: the receiver's signed length */
    uint64_t fork;
    const kl_node *roots; /* the full roots at s, left to right */
    size_t nroots;
    kl_proof_get_fn get; /* nodes the receiver holds; NULL: only its roots */
    void *ctx;
} kl_proof_receiver;

/*
 * Every node one proof can make trusted: a block path (the leaf, <= 128
 * siblings and as many parents), both upgrade lists (<= 256 nodes) and the
 * parents they complete (fewer than the 64 old roots + 256 nodes pushed).
 */
#define KL_PROOF_MAX_TRUSTED 1024u

typedef struct kl_proof_result {
    uint32_t flags; /* KL_PROOF_BLOCK / _HASH / _UPGRADE: what was verified */
    /*
     * Nodes to store, each now proven: for a block the leaf first, then each
     * sibling and parent up its path; then the upgrade's nodes and every
     * parent they completed. Never one of the receiver's old roots.
     */
    size_t nnodes;
    kl_node nodes[KL_PROOF_MAX_TRUSTED];
    /* The signed state: the new one after an upgrade, else the receiver's. */
    uint64_t length, byte_length;
    size_t nroots;
    kl_node roots[KL_MAX_ROOTS];
    uint8_t tree_hash[KL_HASH_BYTES]; /* only with KL_PROOF_UPGRADE */
    uint8_t signature[KL_STORED_SIG_MAX];
    size_t signature_len;    /* 0 without an upgrade */
    int learned_pk;          /* pk came from data.manifest (the receiver had none) */
    uint8_t pk[KL_PK_BYTES]; /* the signer's key, when known (zero otherwise) */
} kl_proof_result;

/*
 * Check p as the receiver rx (notes 7.2): the block or hash path, the
 * upgrade (roots rebuilt from rx's roots, the tree hash, the signature over
 * the final length and p->fork), the additional nodes, and a path the
 * upgrade did not use against the node rx holds at its top.
 *
 * 0 and *out filled, or KL_EVERIFY with the reason naming what failed (out
 * is then zeroed). KL_EINVAL if rx itself is inconsistent (roots that are
 * not the full roots of its length) or p breaks the struct's bounds. A
 * getter error other than KL_ENOTFOUND is returned as is.
 */
int kl_proof_verify(const kl_proof_receiver *rx, const kl_proof *p, kl_proof_result *out);

/* ---- encodings ---- */

/*
 * Encode into out[0..cap). 0 and *n = the length; KL_ETOOSMALL with *n =
 * the length needed when cap is short; KL_EINVAL for flags outside the
 * message's set or a list longer than KL_PROOF_MAX_NODES. out may be NULL
 * when cap is 0 (to ask for the size).
 */
int kl_proof_encode(const kl_proof *p, uint8_t *out, size_t cap, size_t *n);
int kl_proof_request_encode(const kl_proof_request *r, uint8_t *out, size_t cap, size_t *n);

/*
 * Decode untrusted bytes. 0, or KL_ECORRUPT with the reason: a read past
 * the end, trailing bytes, an integer above 2^53 - 1, an unknown flag bit,
 * more than KL_PROOF_MAX_NODES nodes in a list, a value longer than
 * max_value bytes, a signature longer than KL_PROOF_MAX_SIG_BYTES, a
 * manifest kl_hc_manifest_decode refuses. On failure *p is zeroed.
 */
int kl_proof_decode(const uint8_t *in, size_t len, size_t max_value, kl_proof *p);
int kl_proof_request_decode(const uint8_t *in, size_t len, kl_proof_request *r);

/*
 * kl_log_proof for a request as it came off the wire: block, hash, upgrade
 * and manifest parts (log_proof.c). Its fork is taken as the log's; the
 * caller answers a request of another fork itself. Seek is not answered.
 */
int kl_log_proof_request(kl_log *log, const kl_proof_request *req, unsigned char **out, size_t *n);

#endif
