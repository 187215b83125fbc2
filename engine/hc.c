/*
 * hc.c - flat-tree numbering and the Merkle hashes (hc.h). The rules are
 * Hypercore's (docs/FORMAT.md); the vectors in tests/data/hypercore/
 * pin them.
 */
#include "hc.h"

#include <pthread.h>
#include <sodium.h>

#include "b2b4.h"
#include "util.h"

uint64_t kl_ft_depth(uint64_t i) {
    return (uint64_t)__builtin_ctzll(~i);
}

uint64_t kl_ft_offset(uint64_t i) {
    uint64_t d = kl_ft_depth(i);
    return d >= 63 ? 0 : ((i + 1) >> d) >> 1;
}

uint64_t kl_ft_index(uint64_t depth, uint64_t offset) {
    return ((offset << 1) + 1) * (1ull << depth) - 1;
}

uint64_t kl_ft_parent(uint64_t i) {
    uint64_t d = kl_ft_depth(i);
    return kl_ft_index(d + 1, kl_ft_offset(i) >> 1);
}

uint64_t kl_ft_sibling(uint64_t i) {
    uint64_t d = kl_ft_depth(i);
    return kl_ft_index(d, kl_ft_offset(i) ^ 1);
}

uint64_t kl_ft_left_span(uint64_t i) {
    return i + 1 - (1ull << kl_ft_depth(i));
}

uint64_t kl_ft_right_span(uint64_t i) {
    return i + (1ull << kl_ft_depth(i)) - 1;
}

int kl_ft_contains(uint64_t i, uint64_t j) {
    return kl_ft_left_span(i) <= j && j <= kl_ft_right_span(i);
}

size_t kl_ft_full_roots(uint64_t length, uint64_t out[KL_MAX_ROOTS]) {
    size_t n = 0;
    uint64_t start = 0; /* first block of the next root */
    for (int d = 63; d >= 0; d--) {
        uint64_t part = 1ull << d;
        if (!(length & part))
            continue;
        out[n++] = 2 * start + part - 1;
        start += part;
    }
    return n;
}

uint64_t kl_tree_pos(uint64_t i) {
    uint64_t r = kl_ft_right_span(i) / 2; /* the last block under i */
    return 2 * r - (uint64_t)__builtin_popcountll(r) + kl_ft_depth(i);
}

uint64_t kl_tree_nodes(uint64_t length) {
    return 2 * length - (uint64_t)__builtin_popcountll(length);
}

/*
 * A BLAKE2b-256 state just initialised: copying it is cheaper than
 * initialising one per hash, and hashing is most of an append's CPU.
 */
static crypto_generichash_blake2b_state fresh_state;
static pthread_once_t fresh_once = PTHREAD_ONCE_INIT;

static void make_fresh_state(void) {
    KL_ASSERT(crypto_generichash_blake2b_init(&fresh_state, NULL, 0, KL_HASH_BYTES) == 0);
}

static void fresh(crypto_generichash_blake2b_state *st) {
    pthread_once(&fresh_once, make_fresh_state);
    memcpy(st, &fresh_state, sizeof *st);
}

void kl_hc_leaf(uint64_t block, const uint8_t *data, size_t len, kl_node *out) {
    uint8_t pre[9];
    pre[0] = 0;
    kl_store64(pre + 1, (uint64_t)len);
    crypto_generichash_blake2b_state st;
    fresh(&st);
    crypto_generichash_blake2b_update(&st, pre, sizeof pre);
    if (len)
        crypto_generichash_blake2b_update(&st, data, len);
    crypto_generichash_blake2b_final(&st, out->hash, KL_HASH_BYTES);
    out->index = 2 * block;
    out->size = len;
}

/* A leaf's message: type 0, the block's length (u64 LE), its bytes. */
#define LEAF_PREFIX_BYTES 9u
#define LEAF_X4_MAX       (KL_B2B4_MAX_BYTES - LEAF_PREFIX_BYTES)

static void leaf_message(const kl_block *b, uint8_t m[KL_B2B4_MAX_BYTES], uint64_t *len) {
    m[0] = 0;
    kl_store64(m + 1, (uint64_t)b->size);
    if (b->size)
        memcpy(m + LEAF_PREFIX_BYTES, b->data, b->size);
    memset(m + LEAF_PREFIX_BYTES + b->size, 0, LEAF_X4_MAX - b->size);
    *len = LEAF_PREFIX_BYTES + b->size;
}

/* How many of the n blocks from b on fit one BLAKE2b block each (up to the first that does not). */
static size_t small_run(const kl_block *b, size_t n) {
    size_t k = 0;
    while (k < n && b[k].size <= LEAF_X4_MAX)
        k++;
    return k;
}

/* Hash `lanes` (4, 8 or 16) one-block messages at once. */
static void hash_lanes(size_t lanes, const uint8_t m[16][KL_B2B4_MAX_BYTES], const uint64_t len[16],
                       uint8_t h[16][32]) {
    if (lanes == 16)
        kl_b2b16(m, len, h);
    else if (lanes == 8)
        kl_b2b8(m, len, h);
    else
        kl_b2b4(m, len, h);
}

/* The most lanes (16, 8 or 4) for `avail` messages in a row, at least 4. */
static size_t lanes_for(size_t avail) {
    return avail >= 16 ? 16 : avail >= 8 ? 8 : 4;
}

/*
 * Fewest blocks in a row, of as many BLAKE2b blocks each, that are hashed
 * eight lanes at once (the lanes left over repeat the first message);
 * below it, one at a time through libsodium costs less.
 */
#define LONG_RUN_MIN 3u

/*
 * The leaves of the blocks from b on (up to n <= 8) that take as many
 * BLAKE2b blocks as b[0], eight lanes at once, into hashes. Returns how
 * many, or 0 if fewer than LONG_RUN_MIN do.
 */
static size_t long_leaves(const kl_block *b, size_t n, uint8_t *hashes) {
    uint64_t nb = kl_b2b_blocks(LEAF_PREFIX_BYTES + b[0].size);
    size_t run = 1;
    while (run < n && kl_b2b_blocks(LEAF_PREFIX_BYTES + b[run].size) == nb)
        run++;
    if (run < LONG_RUN_MIN)
        return 0;
    uint8_t pre[8][LEAF_PREFIX_BYTES], h[8][32];
    const uint8_t *pp[8], *data[8];
    uint64_t size[8];
    for (size_t k = 0; k < 8; k++) {
        const kl_block *x = &b[k < run ? k : 0];
        pre[k][0] = 0;
        kl_store64(pre[k] + 1, (uint64_t)x->size);
        pp[k] = pre[k];
        data[k] = x->data;
        size[k] = x->size;
    }
    kl_b2b8_long(pp, LEAF_PREFIX_BYTES, data, size, h);
    memcpy(hashes, h, KL_HASH_BYTES * run);
    return run;
}

void kl_hc_leaf_hashes(const kl_block *blocks, size_t count, uint8_t *hashes) {
    size_t i = 0;
    while (i + 4 <= count) {
        const kl_block *b = blocks + i;
        size_t small = small_run(b, KL_MIN(count - i, (size_t)16));
        if (small == 0 && kl_b2b8_vector()) {
            size_t n = long_leaves(b, KL_MIN(count - i, (size_t)8), hashes + KL_HASH_BYTES * i);
            if (n) {
                i += n;
                continue;
            }
        }
        if (small < 4) {
            kl_node leaf;
            kl_hc_leaf(0, b[0].data, b[0].size, &leaf);
            memcpy(hashes + KL_HASH_BYTES * i, leaf.hash, KL_HASH_BYTES);
            i++;
            continue;
        }
        uint8_t m[16][KL_B2B4_MAX_BYTES], h[16][32];
        uint64_t len[16];
        size_t lanes = lanes_for(small);
        for (size_t k = 0; k < lanes; k++)
            leaf_message(&b[k], m[k], &len[k]);
        hash_lanes(lanes, (const uint8_t(*)[KL_B2B4_MAX_BYTES])m, len, h);
        memcpy(hashes + KL_HASH_BYTES * i, h, KL_HASH_BYTES * lanes);
        i += lanes;
    }
    for (; i < count; i++) {
        kl_node leaf;
        kl_hc_leaf(0, blocks[i].data, blocks[i].size, &leaf);
        memcpy(hashes + KL_HASH_BYTES * i, leaf.hash, KL_HASH_BYTES);
    }
}

void kl_hc_parent(const kl_node *a, const kl_node *b, kl_node *out) {
    if (a->index > b->index) {
        const kl_node *t = a;
        a = b;
        b = t;
    }
    uint8_t in[9 + 2 * KL_HASH_BYTES];
    in[0] = 1;
    kl_store64(in + 1, a->size + b->size);
    memcpy(in + 9, a->hash, KL_HASH_BYTES);
    memcpy(in + 9 + KL_HASH_BYTES, b->hash, KL_HASH_BYTES);
    uint64_t index = kl_ft_parent(a->index);
    out->size = a->size + b->size;
    out->index = index;
    crypto_generichash_blake2b_state st;
    fresh(&st);
    crypto_generichash_blake2b_update(&st, in, sizeof in);
    crypto_generichash_blake2b_final(&st, out->hash, KL_HASH_BYTES);
}

/* A parent's message: type 1, the sum of the sizes (u64 LE), the left hash, the right hash. */
#define PARENT_MSG_BYTES (9u + 2u * KL_HASH_BYTES)

void kl_hc_parent_row(const kl_node *children, size_t n, kl_node *out) {
    size_t j = 0;
    while (j + 4 <= n) {
        size_t lanes = lanes_for(n - j);
        uint8_t m[16][KL_B2B4_MAX_BYTES], h[16][32];
        uint64_t len[16], index[16], size[16];
        for (size_t k = 0; k < lanes; k++) {
            const kl_node *l = &children[2 * (j + k)], *r = l + 1;
            index[k] = kl_ft_parent(l->index);
            size[k] = l->size + r->size;
            m[k][0] = 1;
            kl_store64(m[k] + 1, size[k]);
            memcpy(m[k] + 9, l->hash, KL_HASH_BYTES);
            memcpy(m[k] + 9 + KL_HASH_BYTES, r->hash, KL_HASH_BYTES);
            memset(m[k] + PARENT_MSG_BYTES, 0, KL_B2B4_MAX_BYTES - PARENT_MSG_BYTES);
            len[k] = PARENT_MSG_BYTES;
        }
        /* every child is read: out may now overwrite them */
        hash_lanes(lanes, (const uint8_t(*)[KL_B2B4_MAX_BYTES])m, len, h);
        for (size_t k = 0; k < lanes; k++) {
            out[j + k].index = index[k];
            out[j + k].size = size[k];
            memcpy(out[j + k].hash, h[k], KL_HASH_BYTES);
        }
        j += lanes;
    }
    for (; j < n; j++)
        kl_hc_parent(&children[2 * j], &children[2 * j + 1], &out[j]);
}

void kl_hc_tree_hash(const kl_node *r, size_t n, uint8_t out[KL_HASH_BYTES]) {
    uint8_t pre = 2;
    crypto_generichash_blake2b_state st;
    fresh(&st);
    crypto_generichash_blake2b_update(&st, &pre, 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t tail[16];
        kl_store64(tail, r[i].index);
        kl_store64(tail + 8, r[i].size);
        crypto_generichash_blake2b_update(&st, r[i].hash, KL_HASH_BYTES);
        crypto_generichash_blake2b_update(&st, tail, sizeof tail);
    }
    crypto_generichash_blake2b_final(&st, out, KL_HASH_BYTES);
}
