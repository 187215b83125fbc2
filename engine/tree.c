/*
 * tree.c - the tree file's encoding and the incremental builder (tree.h).
 */
#include "tree.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "util.h"

#define HDR_CHECKSUM_AT 56u

void kl_tree_header_encode(uint8_t p[KL_TREE_HEADER_BYTES], unsigned low) {
    KL_ASSERT(low <= KL_TREE_LOW_MAX);
    memset(p, 0, KL_TREE_HEADER_BYTES);
    memcpy(p, KL_TREE_MAGIC, 8);
    kl_store32(p + 8, low == 0 ? 1 : KL_TREE_VERSION); /* version 1 stores every node */
    kl_store32(p + 12, KL_TREE_NODE_BYTES);
    kl_store32(p + 16, low);
    kl_store64(p + HDR_CHECKSUM_AT, XXH3_64bits(p, HDR_CHECKSUM_AT));
}

int kl_tree_header_check(const uint8_t *p, size_t n, unsigned *low) {
    if (n < KL_TREE_HEADER_BYTES)
        return kl_errf(KL_ECORRUPT, "tree file header is cut short (%zu bytes)", n);
    if (memcmp(p, KL_TREE_MAGIC, 8) != 0)
        return kl_errf(KL_ECORRUPT, "tree file has no tree magic");
    if (kl_load64(p + HDR_CHECKSUM_AT) != XXH3_64bits(p, HDR_CHECKSUM_AT))
        return kl_errf(KL_ECORRUPT, "tree file header checksum mismatch");
    uint32_t version = kl_load32(p + 8);
    if ((version != 1 && version != KL_TREE_VERSION) || kl_load32(p + 12) != KL_TREE_NODE_BYTES)
        return kl_errf(KL_ECORRUPT, "tree file version %u with %u-byte nodes is not supported",
                       version, kl_load32(p + 12));
    /* version 1 stored every node; version 2 says from which depth up */
    uint32_t l = version == 1 ? 0 : kl_load32(p + 16);
    if (l > KL_TREE_LOW_MAX)
        return kl_errf(KL_ECORRUPT, "tree file stores nodes from depth %u (at most %u is known)", l,
                       KL_TREE_LOW_MAX);
    for (unsigned i = version == 1 ? 16 : 20; i < HDR_CHECKSUM_AT; i++)
        if (p[i] != 0)
            return kl_errf(KL_ECORRUPT, "tree file header reserved bytes are not zero");
    *low = l;
    return 0;
}

int kl_tree_header_read(kl_io *io, int fd, unsigned *low, int *torn) {
    uint8_t h[KL_TREE_HEADER_BYTES];
    size_t got = 0;
    if (torn)
        *torn = 0;
    int rc = kl_io_pread(io, fd, h, sizeof h, 0, &got);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "reading the tree file header: %s", strerror(-rc));
    rc = kl_tree_header_check(h, got, low);
    if (rc < 0 && torn) /* cut short, no magic or a failing checksum; not merely unknown */
        *torn = got < KL_TREE_HEADER_BYTES || memcmp(h, KL_TREE_MAGIC, 8) != 0 ||
                kl_load64(h + HDR_CHECKSUM_AT) != XXH3_64bits(h, HDR_CHECKSUM_AT);
    return rc;
}

int kl_hash_is_zero(const uint8_t hash[KL_HASH_BYTES]) {
    static const uint8_t zero[KL_HASH_BYTES];
    return memcmp(hash, zero, KL_HASH_BYTES) == 0;
}

void kl_tree_node_encode(uint8_t p[KL_TREE_NODE_BYTES], const kl_node *n) {
    memcpy(p, n->hash, KL_HASH_BYTES);
    kl_store64(p + KL_HASH_BYTES, n->size);
}

void kl_tree_node_decode(const uint8_t p[KL_TREE_NODE_BYTES], uint64_t index, kl_node *n) {
    n->index = index;
    memcpy(n->hash, p, KL_HASH_BYTES);
    n->size = kl_load64(p + KL_HASH_BYTES);
}

int kl_tree_read(kl_io *io, int fd, unsigned low, uint64_t index, kl_node *out) {
    KL_ASSERT(kl_tree_stored(index, low));
    uint8_t b[KL_TREE_NODE_BYTES];
    size_t got = 0;
    uint64_t off = kl_tree_off(kl_tree_spos(index, low));
    int rc = kl_io_pread(io, fd, b, sizeof b, off, &got);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "reading tree node %llu: %s",
                       (unsigned long long)index, strerror(-rc));
    if (got != sizeof b)
        return kl_errf(KL_ECORRUPT, "tree node %llu is missing (the tree file is cut short)",
                       (unsigned long long)index);
    kl_tree_node_decode(b, index, out);
    return 0;
}

void kl_treeb_init(kl_treeb *t, const kl_node *roots, size_t n, uint64_t length, unsigned low) {
    KL_ASSERT(n <= KL_MAX_ROOTS);
    if (n)
        memcpy(t->roots, roots, n * sizeof *roots);
    t->n = n;
    t->length = length;
    t->low = low;
}

/* Put the complete subtree cur on the roots, joining it to its left siblings: the
   parents that makes go to made, lowest first. Returns how many. */
static size_t treeb_push(kl_treeb *t, kl_node cur, kl_node made[KL_MAX_ROOTS]) {
    size_t k = 0;
    /* the last root is cur's left sibling exactly when they have the same depth */
    while (t->n > 0 && t->roots[t->n - 1].index == kl_ft_sibling(cur.index) &&
           t->roots[t->n - 1].index < cur.index) {
        kl_node p;
        kl_hc_parent(&t->roots[t->n - 1], &cur, &p);
        t->n--;
        cur = p;
        made[k++] = cur;
    }
    KL_ASSERT(t->n < KL_MAX_ROOTS);
    t->roots[t->n++] = cur;
    return k;
}

size_t kl_treeb_add(kl_treeb *t, const uint8_t hash[KL_HASH_BYTES], uint64_t size, uint8_t *out) {
    kl_node leaf, made[KL_MAX_ROOTS];
    leaf.index = 2 * t->length;
    leaf.size = size;
    memcpy(leaf.hash, hash, KL_HASH_BYTES);
    size_t k = 0;
    if (kl_tree_stored(leaf.index, t->low))
        kl_tree_node_encode(out + KL_TREE_NODE_BYTES * k++, &leaf);
    size_t m = treeb_push(t, leaf, made);
    /* the chain is made bottom up, so its stored nodes are its last ones */
    for (size_t j = 0; j < m; j++)
        if (kl_tree_stored(made[j].index, t->low))
            kl_tree_node_encode(out + KL_TREE_NODE_BYTES * k++, &made[j]);
    t->length++;
    return k;
}

uint64_t kl_tree_span_at(uint64_t a, uint64_t e) {
    KL_ASSERT(a < e);
    uint64_t span = a ? (a & (~a + 1)) : UINT64_C(1) << 63;
    while (span > e - a)
        span >>= 1;
    return span;
}

/* Encode node n at its place in nodes (positions from base on) if a file of low stores it. */
static void put_stored(const kl_node *n, unsigned low, uint64_t base, uint8_t *nodes) {
    if (kl_tree_stored(n->index, low))
        kl_tree_node_encode(nodes + KL_TREE_NODE_BYTES * (kl_tree_spos(n->index, low) - base), n);
}

size_t kl_tree_build_spans(const kl_block *blocks, const uint8_t *hashes, uint64_t a, uint64_t e,
                           unsigned low, uint64_t base, uint8_t *nodes, kl_node *scratch,
                           kl_node tops[KL_TREE_MAX_SPANS]) {
    size_t n = 0, i = 0;
    while (a < e) {
        uint64_t span = kl_tree_span_at(a, e);
        for (uint64_t j = 0; j < span; j++) {
            kl_node *leaf = &scratch[j];
            leaf->index = 2 * (a + j);
            leaf->size = blocks[i + j].size;
            memcpy(leaf->hash, hashes + KL_HASH_BYTES * (i + j), KL_HASH_BYTES);
            put_stored(leaf, low, base, nodes);
        }
        /* a span is aligned to its size: its parents, a row at a time, stay inside it */
        unsigned depth = 0;
        for (uint64_t width = span / 2; width > 0; width /= 2) {
            kl_hc_parent_row(scratch, (size_t)width, scratch);
            if (++depth >= low)
                for (uint64_t j = 0; j < width; j++)
                    put_stored(&scratch[j], low, base, nodes);
        }
        KL_ASSERT(n < KL_TREE_MAX_SPANS);
        tops[n++] = scratch[0];
        a += span;
        i += (size_t)span;
    }
    return n;
}

size_t kl_treeb_join(kl_treeb *t, const kl_node *tops, size_t n, uint64_t base, uint8_t *nodes) {
    size_t made = 0;
    for (size_t s = 0; s < n; s++) {
        uint64_t left = kl_ft_left_span(tops[s].index), right = kl_ft_right_span(tops[s].index);
        KL_ASSERT(left == 2 * t->length);
        kl_node up[KL_MAX_ROOTS];
        size_t k = treeb_push(t, tops[s], up);
        for (size_t j = 0; j < k; j++)
            put_stored(&up[j], t->low, base, nodes);
        made += k;
        t->length += (right - left) / 2 + 1;
    }
    return made;
}

size_t kl_treeb_add_block(kl_treeb *t, const uint8_t *data, size_t len, uint8_t *out) {
    kl_node leaf;
    kl_hc_leaf(t->length, data, len, &leaf);
    return kl_treeb_add(t, leaf.hash, len, out);
}

void kl_tree_hash_leaves(const kl_block *blocks, size_t count, uint8_t *hashes) {
    kl_hc_leaf_hashes(blocks, count, hashes);
}
