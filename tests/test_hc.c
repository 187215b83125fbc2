/*
 * test_hc.c - Hypercore's rules (engine/hc.c, engine/hc_keys.c) against the
 * golden vectors in tests/data/hypercore/, which the real JavaScript packages
 * produced (tests/data/hypercore/README.md).
 *
 * What this proves: BLAKE2b-256, both namespace lists (derived here from the
 * rule and compared with the vectors and with the bytes hc_keys.c emits:
 * signable prefix, manifest namespace, core key), compact uints and u64s,
 * leaf/parent/tree hashes, the six key pairs, an Ed25519 signature and the
 * discovery keys equal the vectors; every flat-tree function for nodes 0..80
 * and the full roots for lengths 0..40 equal flat-tree's; kl_tree_pos maps
 * the nodes of a tree of n blocks one-to-one onto 0..kl_tree_nodes(n)-1 for
 * every n up to 300; trees grown here block by block (a root stack of
 * kl_hc_leaf/kl_hc_parent) reproduce the roots, byte length, tree hash,
 * signable and stored signature of every checkpoint of tree-abc, tree-sizes,
 * tree-1000 (plus all its 1000 leaves and 1994 nodes), compat and fork (the
 * tree of a truncated core is the tree of its first n blocks); the default
 * manifest is byte-for-byte hypercore's and decodes back. Against bad input:
 * kl_hc_verify refuses any flipped bit in the signature, tree hash, length
 * or fork, a wrong key or public key, a cut or padded or non-canonical
 * stored form; the compact decoders and the manifest decoder refuse every
 * truncation, out-of-range values, unknown versions, hash ids and signature
 * types, oversized counts and trailing bytes, and leave their output alone.
 *
 * Not here: primitives.json's replication capability and secret-stream
 * stream ids (keyed by a Noise handshake hash) belong to the replication
 * work and are tested with it; proofs, wire messages and transcripts too.
 */
#include "testutil.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hc.h"
#include "engine/util.h"

#define HEX_MAX 2048u /* the longest hex string these tests compare, in bytes */

/* Values compared with a vector, printed at the end so a run shows its weight. */
static unsigned long checks;

/* ---- reading the vectors ---- */

/* Bytes of exactly the size of a fixed field (a key, a hash). */
static void unhex_exact(const char *hex, uint8_t *out, size_t n) {
    assert_int_equal(tu_unhex(hex, out, n), n);
}

static void expect_hex(const uint8_t *p, size_t n, const char *hex) {
    static char buf[2 * HEX_MAX + 1];
    assert_true(n <= HEX_MAX);
    for (size_t i = 0; i < n; i++)
        snprintf(buf + 2 * i, 3, "%02x", p[i]);
    buf[2 * n] = '\0';
    assert_string_equal(buf, hex);
    checks++;
}

static void expect_u64(uint64_t got, uint64_t want) {
    assert_int_equal(got, want);
    checks++;
}

static void blake2b(const uint8_t *p, size_t n, uint8_t out[KL_HASH_BYTES]) {
    crypto_generichash(out, KL_HASH_BYTES, p, n, NULL, 0);
}

/* namespace(name, count)[i] = H(H(utf8 name) || u8 i), notes section 2. */
static void namespace_of(const char *name, uint8_t i, uint8_t out[KL_HASH_BYTES]) {
    uint8_t in[KL_HASH_BYTES + 1];
    blake2b((const uint8_t *)name, strlen(name), in);
    in[KL_HASH_BYTES] = i;
    blake2b(in, sizeof in, out);
}

/* pattern(L, k): L bytes, byte j = (j + k) mod 251 (notes section 10). */
static uint8_t *pattern(size_t len, uint64_t k) {
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    for (size_t j = 0; j < len; j++)
        p[j] = (uint8_t)((j + k) % 251);
    return p;
}

/* ---- a tree grown block by block: the full roots as a stack ---- */

#define ALL_NODES_MAX 2048u

typedef struct tree {
    kl_node r[KL_MAX_ROOTS];
    size_t n;
    uint64_t length, byte_length;
    kl_node *all; /* optional: every node made, by flat-tree index */
} tree;

static void tree_append(tree *t, const uint8_t *data, size_t len) {
    kl_node node;
    kl_hc_leaf(t->length, data, len, &node);
    assert_int_equal(node.index, 2 * t->length);
    if (t->all && node.index < ALL_NODES_MAX)
        t->all[node.index] = node;
    /* The last root is the new node's sibling while both have the same depth. */
    while (t->n > 0 && kl_ft_depth(t->r[t->n - 1].index) == kl_ft_depth(node.index)) {
        kl_node up;
        assert_int_equal(kl_ft_sibling(node.index), t->r[t->n - 1].index);
        kl_hc_parent(&t->r[t->n - 1], &node, &up);
        assert_int_equal(up.index, kl_ft_parent(node.index));
        node = up;
        if (t->all && node.index < ALL_NODES_MAX)
            t->all[node.index] = node;
        t->n--;
    }
    t->r[t->n++] = node;
    t->length++;
    t->byte_length += len;
}

/* The roots the stack holds are the full roots of its length. */
static void tree_check_shape(const tree *t) {
    uint64_t idx[KL_MAX_ROOTS];
    size_t n = kl_ft_full_roots(t->length, idx);
    assert_int_equal(n, t->n);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(idx[i], t->r[i].index);
        bytes += t->r[i].size;
    }
    assert_int_equal(bytes, t->byte_length);
}

/* A core under test: its kind, keys, and the tree it signs. */
typedef struct core {
    kl_core_kind kind;
    uint8_t pk[KL_PK_BYTES], sk[KL_SK_BYTES], key[KL_HASH_BYTES];
} core;

static void core_from(const json_t *v, kl_core_kind kind, core *c) {
    uint8_t seed[KL_SEED_BYTES];
    unhex_exact(tu_json_str(v, "seed"), seed, sizeof seed);
    c->kind = kind;
    kl_hc_keypair(seed, c->pk, c->sk);
    expect_hex(c->pk, KL_PK_BYTES, tu_json_str(v, "public_key"));
    expect_hex(c->sk, KL_SK_BYTES, tu_json_str(v, "secret_key"));
    kl_hc_core_key(kind, c->pk, c->key);
    expect_hex(c->key, KL_HASH_BYTES, tu_json_str(v, "key"));
    uint8_t dk[KL_HASH_BYTES];
    kl_hc_discovery_key(c->key, dk);
    expect_hex(dk, KL_HASH_BYTES, tu_json_str(v, "discovery_key"));
    if (kind == KL_CORE_DEFAULT) {
        uint8_t man[KL_MANIFEST_MAX];
        size_t n = kl_hc_manifest_default(c->pk, man);
        expect_hex(man, n, tu_json_str(v, "manifest"));
    }
}

/*
 * A signed state of the vectors ({length, byte_length, fork, roots,
 * tree_hash, signable, signature, signature_raw}) against tree t at `fork`.
 */
static void check_state(const core *c, const tree *t, uint64_t fork, const json_t *s) {
    tree_check_shape(t);
    expect_u64(t->length, tu_json_u64(s, "length"));
    expect_u64(t->byte_length, tu_json_u64(s, "byte_length"));
    expect_u64(fork, tu_json_u64(s, "fork"));
    json_t *roots = tu_json_get(s, "roots");
    assert_int_equal(json_array_size(roots), t->n);
    for (size_t i = 0; i < t->n; i++) {
        json_t *r = json_array_get(roots, i);
        expect_u64(t->r[i].index, tu_json_u64(r, "index"));
        expect_u64(t->r[i].size, tu_json_u64(r, "size"));
        expect_hex(t->r[i].hash, KL_HASH_BYTES, tu_json_str(r, "hash"));
    }
    uint8_t th[KL_HASH_BYTES];
    kl_hc_tree_hash(t->r, t->n, th);
    expect_hex(th, KL_HASH_BYTES, tu_json_str(s, "tree_hash"));

    uint8_t msg[112];
    size_t mlen = kl_hc_signable(c->kind, c->key, th, t->length, fork, msg);
    assert_int_equal(mlen, c->kind == KL_CORE_DEFAULT ? 112 : 80);
    expect_hex(msg, mlen, tu_json_str(s, "signable"));

    uint8_t sig[KL_STORED_SIG_MAX];
    size_t n = 0;
    kl_hc_sign(c->kind, c->sk, c->key, th, t->length, fork, sig, &n);
    assert_int_equal(n, c->kind == KL_CORE_DEFAULT ? KL_STORED_SIG_V1 : KL_STORED_SIG_COMPAT);
    expect_hex(sig, n, tu_json_str(s, "signature"));
    expect_hex(sig + (n - KL_SIG_BYTES) - (c->kind == KL_CORE_DEFAULT ? 2 : 0), KL_SIG_BYTES,
               tu_json_str(s, "signature_raw"));

    /* The vector's own stored signature verifies, not just ours. */
    uint8_t want[KL_STORED_SIG_MAX];
    size_t wn = tu_unhex(tu_json_str(s, "signature"), want, sizeof want);
    assert_int_equal(kl_hc_verify(c->kind, c->pk, c->key, th, t->length, fork, want, wn), 0);
    checks++;
}

/* ---- primitives.json ---- */

static void test_blake2b_matches_the_vectors(void **state) {
    (void)state;
    json_t *v = tu_vector("primitives.json");
    json_t *list = tu_json_get(v, "blake2b256");
    assert_true(json_array_size(list) >= 3);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        uint8_t in[256], h[KL_HASH_BYTES];
        size_t n = tu_unhex(tu_json_str(e, "input"), in, sizeof in);
        blake2b(in, n, h);
        expect_hex(h, sizeof h, tu_json_str(e, "hash"));
    }
    json_decref(v);
}

static void test_namespaces_follow_the_rule_and_are_the_ones_hc_uses(void **state) {
    (void)state;
    json_t *v = tu_vector("primitives.json");
    json_t *ns = tu_json_get(v, "namespaces");
    static const char *const names[] = {"hypercore", "hyperswarm/secret-stream"};
    static const size_t counts[] = {6, 3};
    for (size_t k = 0; k < 2; k++) {
        json_t *list = tu_json_get(ns, names[k]);
        assert_int_equal(json_array_size(list), counts[k]);
        for (size_t i = 0; i < counts[k]; i++) {
            json_t *e = json_array_get(list, i);
            assert_int_equal(tu_json_u64(e, "id"), i);
            uint8_t h[KL_HASH_BYTES];
            namespace_of(names[k], (uint8_t)i, h);
            expect_hex(h, sizeof h, tu_json_str(e, "hash"));
        }
    }
    uint8_t tree_ns[KL_HASH_BYTES], manifest_ns[KL_HASH_BYTES], default_ns[KL_HASH_BYTES];
    namespace_of("hypercore", 0, tree_ns);
    namespace_of("hypercore", 3, manifest_ns);
    namespace_of("hypercore", 4, default_ns);

    /* hc_keys.c keeps them as constants: check the bytes that carry them. */
    uint8_t pk[KL_PK_BYTES], th[KL_HASH_BYTES], key[KL_HASH_BYTES], msg[112];
    memset(pk, 0x5a, sizeof pk);
    memset(th, 0xa5, sizeof th);
    for (int kind = KL_CORE_DEFAULT; kind <= KL_CORE_COMPAT; kind++) {
        kl_hc_signable((kl_core_kind)kind, pk, th, 7, 1, msg);
        assert_memory_equal(msg, tree_ns, KL_HASH_BYTES);
    }
    uint8_t man[KL_MANIFEST_MAX + KL_HASH_BYTES];
    memcpy(man, manifest_ns, KL_HASH_BYTES);
    size_t n = kl_hc_manifest_default(pk, man + KL_HASH_BYTES);
    assert_memory_equal(man + KL_HASH_BYTES + 6, default_ns, KL_HASH_BYTES);
    uint8_t want[KL_HASH_BYTES];
    blake2b(man, KL_HASH_BYTES + n, want);
    kl_hc_core_key(KL_CORE_DEFAULT, pk, key);
    assert_memory_equal(key, want, KL_HASH_BYTES);
    checks += 4;
    json_decref(v);
}

static void test_compact_uints_and_u64_match_the_vectors(void **state) {
    (void)state;
    json_t *v = tu_vector("primitives.json");
    json_t *list = tu_json_get(v, "compact_uint");
    assert_int_equal(json_array_size(list), 12);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        uint64_t value = tu_json_u64(e, "value");
        uint8_t out[KL_CE_UINT_MAX];
        size_t n = kl_ce_uint(out, value);
        expect_hex(out, n, tu_json_str(e, "hex"));
        kl_cd d = {.p = out, .at = 0, .len = n, .err = 0};
        expect_u64(kl_cd_uint(&d), value);
        assert_int_equal(d.err, 0);
        assert_int_equal(d.at, n);
    }
    list = tu_json_get(v, "u64le");
    assert_int_equal(json_array_size(list), 7);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        uint8_t out[8];
        kl_store64(out, tu_json_u64(e, "value"));
        expect_hex(out, 8, tu_json_str(e, "hex"));
    }
    json_decref(v);
}

static void test_compact_uint_encodes_at_the_width_boundaries(void **state) {
    (void)state;
    static const struct {
        uint64_t v;
        size_t n;
    } cases[] = {{0, 1},         {252, 1},         {253, 3},        {65535, 3},
                 {65536, 5},     {0xffffffffu, 5}, {1ull << 32, 9}, {(1ull << 53) - 1, 9},
                 {UINT64_MAX, 9}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[KL_CE_UINT_MAX + 1];
        memset(out, 0xee, sizeof out);
        assert_int_equal(kl_ce_uint(out, cases[i].v), cases[i].n);
        assert_int_equal(out[cases[i].n], 0xee); /* wrote nothing past its length */
        kl_cd d = {.p = out, .at = 0, .len = cases[i].n, .err = 0};
        uint64_t got = kl_cd_uint(&d);
        if (cases[i].v <= (1ull << 53) - 1) {
            assert_int_equal(got, cases[i].v);
            assert_int_equal(d.err, 0);
        } else {
            /* compact-encoding refuses what a JS number cannot hold */
            assert_int_not_equal(d.err, 0);
            assert_int_equal(d.at, 0);
        }
    }
}

static void test_compact_decoders_accept_long_forms(void **state) {
    (void)state;
    static const uint8_t in[] = {0xfd, 0x05, 0x00,                                     /* 5 */
                                 0xfe, 0x05, 0x00, 0x00, 0x00,                         /* 5 */
                                 0xff, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 5 */
                                 0xfd, 0x00, 0x00,                                     /* 0 */
                                 0xfe, 0x02, 0x00, 0x00, 0x00, 'h',  'i', /* buffer "hi" */
                                 0xfe, 0x00, 0x00, 0x00, 0x00};           /* empty buffer */
    kl_cd d = {.p = in, .at = 0, .len = sizeof in, .err = 0};
    assert_int_equal(kl_cd_uint(&d), 5);
    assert_int_equal(d.at, 3);
    assert_int_equal(kl_cd_uint(&d), 5);
    assert_int_equal(d.at, 8);
    assert_int_equal(kl_cd_uint(&d), 5);
    assert_int_equal(d.at, 17);
    assert_int_equal(kl_cd_uint(&d), 0);
    assert_int_equal(d.at, 20);
    size_t n = 99;
    const uint8_t *b = kl_cd_buffer(&d, &n, 2);
    assert_non_null(b);
    assert_int_equal(n, 2);
    assert_memory_equal(b, "hi", 2);
    b = kl_cd_buffer(&d, &n, 0);
    assert_non_null(b); /* an empty buffer is not an error */
    assert_int_equal(n, 0);
    assert_int_equal(d.at, sizeof in);
    assert_int_equal(d.err, 0);
}

static void test_compact_decoders_reject_truncated_input_and_stay_failed(void **state) {
    (void)state;
    /* Every cut of every multi-byte uint fails and does not move the reader. */
    static const uint64_t values[] = {253, 65535, 65536, 0xffffffffu, 1ull << 32, (1ull << 53) - 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        uint8_t out[KL_CE_UINT_MAX];
        size_t n = kl_ce_uint(out, values[i]);
        for (size_t cut = 0; cut < n; cut++) {
            kl_cd d = {.p = out, .at = 0, .len = cut, .err = 0};
            assert_int_equal(kl_cd_uint(&d), 0);
            assert_int_not_equal(d.err, 0);
            assert_int_equal(d.at, 0);
        }
    }
    /* An empty input, even with no pointer. */
    kl_cd e = {.p = NULL, .at = 0, .len = 0, .err = 0};
    assert_int_equal(kl_cd_uint(&e), 0);
    assert_int_not_equal(e.err, 0);

    /* fixed past the end; then the error sticks, even for reads that would fit. */
    static const uint8_t in[] = {0x03, 'a', 'b', 'c', 0x01};
    kl_cd d = {.p = in, .at = 0, .len = sizeof in, .err = 0};
    assert_null(kl_cd_fixed(&d, sizeof in + 1));
    assert_int_not_equal(d.err, 0);
    assert_int_equal(d.at, 0);
    int err = d.err;
    assert_null(kl_cd_fixed(&d, 1));
    assert_int_equal(kl_cd_uint(&d), 0);
    size_t n = 7;
    assert_null(kl_cd_buffer(&d, &n, 100));
    assert_int_equal(n, 0);
    assert_int_equal(d.at, 0);
    assert_int_equal(d.err, err);

    /* A buffer longer than the input, or than the caller's maximum. */
    for (size_t cut = 0; cut < 4; cut++) {
        kl_cd c = {.p = in, .at = 0, .len = cut, .err = 0};
        n = 7;
        assert_null(kl_cd_buffer(&c, &n, 100));
        assert_int_equal(n, 0);
        assert_int_not_equal(c.err, 0);
        assert_int_equal(c.at, 0); /* not even past the length it read */
    }
    kl_cd m = {.p = in, .at = 0, .len = sizeof in, .err = 0};
    assert_null(kl_cd_buffer(&m, &n, 2));
    assert_int_not_equal(m.err, 0);
    assert_int_equal(m.at, 0);
    kl_cd ok = {.p = in, .at = 0, .len = sizeof in, .err = 0};
    assert_non_null(kl_cd_buffer(&ok, &n, 3));
    assert_int_equal(n, 3);
    assert_int_equal(kl_cd_uint(&ok), 1);
    assert_int_equal(ok.at, sizeof in);
    assert_int_equal(ok.err, 0);
}

static void node_from(const json_t *o, kl_node *n) {
    n->index = tu_json_u64(o, "index");
    n->size = tu_json_u64(o, "size");
    unhex_exact(tu_json_str(o, "hash"), n->hash, KL_HASH_BYTES);
}

static void test_leaf_parent_and_tree_hashes_match_the_vectors(void **state) {
    (void)state;
    json_t *v = tu_vector("primitives.json");
    json_t *leaves = tu_json_get(v, "leaf_hashes");
    assert_int_equal(json_array_size(leaves), 5);
    for (size_t i = 0; i < json_array_size(leaves); i++) {
        json_t *e = json_array_get(leaves, i);
        uint8_t data[512];
        size_t n = tu_unhex(tu_json_str(e, "data"), data, sizeof data);
        kl_node leaf;
        kl_hc_leaf(i, data, n, &leaf);
        expect_u64(leaf.size, tu_json_u64(e, "size"));
        assert_int_equal(leaf.index, 2 * i);
        expect_hex(leaf.hash, KL_HASH_BYTES, tu_json_str(e, "hash"));
    }
    json_t *ph = tu_json_get(v, "parent_hash");
    kl_node l, r, p;
    node_from(tu_json_get(ph, "left"), &l);
    node_from(tu_json_get(ph, "right"), &r);
    json_t *want = tu_json_get(ph, "parent");
    kl_hc_parent(&l, &r, &p);
    expect_u64(p.index, tu_json_u64(want, "index"));
    expect_u64(p.size, tu_json_u64(want, "size"));
    expect_hex(p.hash, KL_HASH_BYTES, tu_json_str(want, "hash"));
    kl_hc_parent(&r, &l, &p); /* children in either order */
    expect_hex(p.hash, KL_HASH_BYTES, tu_json_str(want, "hash"));

    json_t *th = tu_json_get(v, "tree_hash");
    json_t *roots = tu_json_get(th, "roots");
    kl_node rs[2];
    assert_int_equal(json_array_size(roots), 2);
    node_from(json_array_get(roots, 0), &rs[0]);
    node_from(json_array_get(roots, 1), &rs[1]);
    uint8_t h[KL_HASH_BYTES];
    kl_hc_tree_hash(rs, 2, h);
    expect_hex(h, sizeof h, tu_json_str(th, "hash"));
    kl_hc_tree_hash(NULL, 0, h);
    expect_hex(h, sizeof h, tu_json_str(th, "empty_tree_hash"));
    json_decref(v);
}

static void test_key_pairs_and_an_ed25519_signature_match_the_vectors(void **state) {
    (void)state;
    json_t *v = tu_vector("primitives.json");
    json_t *list = tu_json_get(v, "key_pairs");
    assert_int_equal(json_array_size(list), 6);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        uint8_t seed[KL_SEED_BYTES], pk[KL_PK_BYTES], sk[KL_SK_BYTES];
        unhex_exact(tu_json_str(e, "seed"), seed, sizeof seed);
        kl_hc_keypair(seed, pk, sk);
        expect_hex(pk, sizeof pk, tu_json_str(e, "public_key"));
        expect_hex(sk, sizeof sk, tu_json_str(e, "secret_key"));
    }
    json_t *es = tu_json_get(v, "ed25519_signature");
    uint8_t seed[KL_SEED_BYTES], pk[KL_PK_BYTES], sk[KL_SK_BYTES], msg[64], sig[KL_SIG_BYTES];
    unhex_exact(tu_json_str(es, "seed"), seed, sizeof seed);
    kl_hc_keypair(seed, pk, sk);
    size_t n = tu_unhex(tu_json_str(es, "message"), msg, sizeof msg);
    crypto_sign_detached(sig, NULL, msg, n, sk);
    expect_hex(sig, sizeof sig, tu_json_str(es, "signature"));
    json_decref(v);
}

static void test_discovery_keys_match_the_vectors(void **state) {
    (void)state;
    json_t *v = tu_vector("primitives.json");
    json_t *list = tu_json_get(v, "discovery_keys");
    assert_int_equal(json_array_size(list), 3);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        uint8_t key[KL_HASH_BYTES], dk[KL_HASH_BYTES];
        unhex_exact(tu_json_str(e, "key"), key, sizeof key);
        kl_hc_discovery_key(key, dk);
        expect_hex(dk, sizeof dk, tu_json_str(e, "discovery_key"));
    }
    /* capability and stream_id: replication's, see the comment at the top. */
    json_decref(v);
}

/* ---- flat-tree.json ---- */

static void test_flat_tree_functions_match_flat_tree(void **state) {
    (void)state;
    json_t *v = tu_vector("flat-tree.json");
    json_t *nodes = tu_json_get(v, "nodes");
    assert_int_equal(json_array_size(nodes), 81);
    for (size_t k = 0; k < json_array_size(nodes); k++) {
        json_t *e = json_array_get(nodes, k);
        uint64_t i = tu_json_u64(e, "index");
        assert_int_equal(i, k);
        uint64_t d = kl_ft_depth(i);
        expect_u64(d, tu_json_u64(e, "depth"));
        expect_u64(kl_ft_offset(i), tu_json_u64(e, "offset"));
        expect_u64(kl_ft_index(d, kl_ft_offset(i)), i);
        expect_u64(kl_ft_parent(i), tu_json_u64(e, "parent"));
        expect_u64(kl_ft_sibling(i), tu_json_u64(e, "sibling"));
        uint64_t ls = kl_ft_left_span(i), rs = kl_ft_right_span(i);
        expect_u64(ls, tu_json_u64(e, "left_span"));
        expect_u64(rs, tu_json_u64(e, "right_span"));
        expect_u64(rs - ls + 1, tu_json_u64(e, "count"));
        expect_u64((rs - ls) / 2 + 1, tu_json_u64(e, "count_leaves"));
        json_t *ch = tu_json_get(e, "children");
        if (d == 0) {
            assert_true(json_is_null(ch));
        } else {
            /* hc.h has no children(): they are the nodes whose parent is i, i -/+ 2^(d-1). */
            uint64_t half = 1ull << (d - 1);
            assert_int_equal(json_array_size(ch), 2);
            expect_u64(i - half, (uint64_t)json_integer_value(json_array_get(ch, 0)));
            expect_u64(i + half, (uint64_t)json_integer_value(json_array_get(ch, 1)));
            assert_int_equal(kl_ft_parent(i - half), i);
            assert_int_equal(kl_ft_parent(i + half), i);
        }
        /* contains(i, j) exactly when i is j or one of j's ancestors. */
        for (uint64_t j = 0; j <= 2 * 80; j++) {
            int want = 0;
            for (uint64_t a = j; kl_ft_depth(a) <= d; a = kl_ft_parent(a))
                if (a == i)
                    want = 1;
            assert_int_equal(kl_ft_contains(i, j), want);
        }
    }
    json_t *idx = tu_json_get(v, "index");
    assert_int_equal(json_array_size(idx), 30);
    for (size_t k = 0; k < json_array_size(idx); k++) {
        json_t *e = json_array_get(idx, k);
        expect_u64(kl_ft_index(tu_json_u64(e, "depth"), tu_json_u64(e, "offset")),
                   tu_json_u64(e, "index"));
    }
    json_decref(v);
}

static void test_full_roots_match_flat_tree(void **state) {
    (void)state;
    json_t *v = tu_vector("flat-tree.json");
    json_t *list = tu_json_get(v, "full_roots");
    assert_int_equal(json_array_size(list), 41);
    for (size_t k = 0; k < json_array_size(list); k++) {
        json_t *e = json_array_get(list, k);
        uint64_t length = tu_json_u64(e, "length");
        assert_int_equal(length, k);
        uint64_t roots[KL_MAX_ROOTS];
        size_t n = kl_ft_full_roots(length, roots);
        json_t *want = tu_json_get(e, "roots");
        expect_u64(n, json_array_size(want));
        for (size_t i = 0; i < n; i++)
            expect_u64(roots[i], (uint64_t)json_integer_value(json_array_get(want, i)));
    }
    json_decref(v);
}

#define BIJECTION_MAX_BLOCKS 300u

static void test_tree_pos_is_a_bijection_onto_the_nodes_of_each_length(void **state) {
    (void)state;
    static uint8_t seen[2 * BIJECTION_MAX_BLOCKS];
    for (uint64_t n = 1; n <= BIJECTION_MAX_BLOCKS; n++) {
        uint64_t total = kl_tree_nodes(n);
        assert_true(total <= sizeof seen);
        memset(seen, 0, sizeof seen);
        uint64_t count = 0;
        /* The nodes of a tree of n blocks: every node whose last leaf is below leaf 2n. */
        for (uint64_t i = 0; i < 4 * n; i++) {
            if (kl_ft_right_span(i) >= 2 * n)
                continue;
            uint64_t pos = kl_tree_pos(i);
            assert_true(pos < total);
            assert_int_equal(seen[pos], 0);
            seen[pos] = 1;
            count++;
            /* Made in order: the blocks [0, b) fill exactly [0, kl_tree_nodes(b)). */
            uint64_t last = kl_ft_right_span(i) / 2;
            assert_true(pos >= kl_tree_nodes(last) && pos < kl_tree_nodes(last + 1));
            if (kl_ft_depth(i) > 0) /* a parent is stored right after its right child */
                assert_int_equal(pos, kl_tree_pos(i + (1ull << (kl_ft_depth(i) - 1))) + 1);
        }
        assert_int_equal(count, total);
        assert_int_equal(kl_tree_pos(2 * n), kl_tree_nodes(n));
    }
    checks += BIJECTION_MAX_BLOCKS;
}

/* ---- whole cores ---- */

static void check_blocks_meta(const json_t *b, const uint8_t *data, size_t len, uint64_t i) {
    expect_u64(len, tu_json_u64(b, "size"));
    uint8_t h[KL_HASH_BYTES];
    blake2b(data, len, h);
    expect_hex(h, sizeof h, tu_json_str(b, "content_blake2b256"));
    kl_node leaf;
    kl_hc_leaf(i, data, len, &leaf);
    expect_hex(leaf.hash, KL_HASH_BYTES, tu_json_str(b, "leaf_hash"));
}

/* A block of tree-abc / tree-sizes / compat: hex, or the pattern rule. */
static uint8_t *block_bytes(const json_t *b, size_t *len) {
    json_t *hex = json_object_get(b, "hex");
    if (hex) {
        const char *h = json_string_value(hex);
        uint8_t *p = malloc(strlen(h) / 2 + 1);
        assert_non_null(p);
        *len = tu_unhex(h, p, strlen(h) / 2);
        return p;
    }
    json_t *pat = tu_json_get(tu_json_get(b, "rule"), "pattern");
    *len = tu_json_u64(pat, "length");
    return pattern(*len, tu_json_u64(pat, "offset"));
}

/* Blocks appended one per call and a signed state after each (tree-abc, tree-sizes, compat). */
static void check_one_block_per_append(const char *file, kl_core_kind kind) {
    json_t *v = tu_vector(file);
    core c;
    core_from(v, kind, &c);
    json_t *blocks = tu_json_get(v, "blocks"), *states = tu_json_get(v, "states");
    assert_int_equal(json_array_size(blocks), json_array_size(states));
    assert_true(json_array_size(blocks) >= 3);
    kl_node all[ALL_NODES_MAX];
    tree t = {.all = all};
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        size_t len;
        uint8_t *data = block_bytes(json_array_get(blocks, i), &len);
        check_blocks_meta(json_array_get(blocks, i), data, len, i);
        tree_append(&t, data, len);
        free(data);
        check_state(&c, &t, 0, json_array_get(states, i));
    }
    json_t *nodes = json_object_get(v, "tree_nodes");
    for (size_t i = 0; nodes && i < json_array_size(nodes); i++) {
        kl_node want;
        node_from(json_array_get(nodes, i), &want);
        assert_true(want.index < ALL_NODES_MAX);
        expect_u64(all[want.index].size, want.size);
        assert_memory_equal(all[want.index].hash, want.hash, KL_HASH_BYTES);
    }
    json_decref(v);
}

static void test_tree_abc_matches_hypercore(void **state) {
    (void)state;
    check_one_block_per_append("tree-abc.json", KL_CORE_DEFAULT);
}

static void test_tree_sizes_with_empty_and_large_blocks_matches_hypercore(void **state) {
    (void)state;
    check_one_block_per_append("tree-sizes.json", KL_CORE_DEFAULT);
}

static void test_compat_core_matches_hypercore(void **state) {
    (void)state;
    check_one_block_per_append("compat.json", KL_CORE_COMPAT);
    /* A compat signature is not a default core's, and the reverse. */
    json_t *v = tu_vector("compat.json");
    core c;
    core_from(v, KL_CORE_COMPAT, &c);
    json_t *s = json_array_get(tu_json_get(v, "states"), 2);
    uint8_t th[KL_HASH_BYTES], sig[KL_STORED_SIG_MAX];
    unhex_exact(tu_json_str(s, "tree_hash"), th, sizeof th);
    size_t n = tu_unhex(tu_json_str(s, "signature"), sig, sizeof sig);
    assert_int_equal(n, KL_STORED_SIG_COMPAT);
    assert_int_equal(kl_hc_verify(KL_CORE_COMPAT, c.pk, c.key, th, 3, 0, sig, n), 0);
    assert_int_equal(kl_hc_verify(KL_CORE_DEFAULT, c.pk, c.key, th, 3, 0, sig, n), KL_EVERIFY);
    json_decref(v);
}

#define TREE1000_BLOCKS 1000u

static void test_tree_1000_matches_hypercore_at_every_checkpoint(void **state) {
    (void)state;
    json_t *v = tu_vector("tree-1000.json");
    core c;
    core_from(v, KL_CORE_DEFAULT, &c);
    json_t *leaves = tu_json_get(v, "leaf_hashes"), *states = tu_json_get(v, "states");
    assert_int_equal(json_array_size(leaves), TREE1000_BLOCKS);
    assert_int_equal(json_array_size(states), 26);
    kl_node *all = calloc(ALL_NODES_MAX, sizeof *all);
    assert_non_null(all);
    tree t = {.all = all};
    size_t next = 0; /* the next checkpoint */
    for (uint64_t i = 0; i < TREE1000_BLOCKS; i++) {
        size_t len = (size_t)(i % 61);
        uint8_t *data = pattern(len, i);
        tree_append(&t, data, len);
        free(data);
        expect_hex(all[2 * i].hash, KL_HASH_BYTES,
                   json_string_value(json_array_get(leaves, (size_t)i)));
        json_t *s = json_array_get(states, next);
        if (s && tu_json_u64(s, "length") == t.length) {
            check_state(&c, &t, 0, s);
            next++;
        }
    }
    assert_int_equal(next, 26); /* every checkpoint was met */
    json_t *nodes = tu_json_get(v, "tree_nodes");
    expect_u64(json_array_size(nodes), kl_tree_nodes(TREE1000_BLOCKS));
    for (size_t k = 0; k < json_array_size(nodes); k++) {
        json_t *e = json_array_get(nodes, k);
        uint64_t index = (uint64_t)json_integer_value(json_array_get(e, 0));
        assert_true(index < ALL_NODES_MAX);
        assert_true(kl_ft_right_span(index) < 2 * TREE1000_BLOCKS);
        expect_u64(all[index].index, index);
        expect_u64(all[index].size, (uint64_t)json_integer_value(json_array_get(e, 1)));
        expect_hex(all[index].hash, KL_HASH_BYTES, json_string_value(json_array_get(e, 2)));
    }
    free(all);
    json_decref(v);
}

/* ---- fork.json ---- */

#define FORK_MAX_BLOCKS 16u
#define FORK_BLOCK_MAX  32u

static void test_truncation_steps_match_hypercore(void **state) {
    (void)state;
    json_t *v = tu_vector("fork.json");
    core c;
    core_from(v, KL_CORE_DEFAULT, &c);
    char blocks[FORK_MAX_BLOCKS][FORK_BLOCK_MAX];
    size_t nblocks = 0;
    uint64_t fork = 0;
    json_t *steps = tu_json_get(v, "steps");
    assert_int_equal(json_array_size(steps), 7);
    for (size_t k = 0; k < json_array_size(steps); k++) {
        json_t *step = json_array_get(steps, k);
        const char *op = tu_json_str(step, "op");
        unsigned long cut;
        if (strncmp(op, "append ", 7) == 0) {
            /* "append a,b,c": the blocks are the comma-separated words */
            const char *p = op + 7;
            while (*p) {
                size_t w = strcspn(p, ",");
                assert_true(w < FORK_BLOCK_MAX && nblocks < FORK_MAX_BLOCKS);
                memcpy(blocks[nblocks], p, w);
                blocks[nblocks++][w] = '\0';
                p += w + (p[w] == ',');
            }
        } else {
            assert_int_equal(sscanf(op, "truncate(%lu)", &cut), 1);
            assert_true(cut <= nblocks);
            nblocks = cut;
            fork++; /* hypercore: truncate(n) moves to the next fork */
        }
        /* The tree of a truncated core is the tree of its first n blocks. */
        tree t = {0};
        for (size_t i = 0; i < nblocks; i++)
            tree_append(&t, (const uint8_t *)blocks[i], strlen(blocks[i]));
        check_state(&c, &t, fork, tu_json_get(step, "state"));
    }
    assert_int_equal(fork, 3);
    json_decref(v);
}

/* ---- manifest.json and the manifest decoder ---- */

static void test_default_manifests_match_hypercore_and_decode(void **state) {
    (void)state;
    json_t *v = tu_vector("manifest.json");
    json_t *cases = tu_json_get(v, "cases");
    assert_int_equal(json_array_size(cases), 3);
    for (size_t k = 0; k < json_array_size(cases); k++) {
        json_t *e = json_array_get(cases, k);
        core c;
        uint8_t seed[KL_SEED_BYTES];
        unhex_exact(tu_json_str(e, "seed"), seed, sizeof seed);
        kl_hc_keypair(seed, c.pk, c.sk);
        expect_hex(c.pk, KL_PK_BYTES, tu_json_str(e, "public_key"));
        uint8_t man[KL_MANIFEST_MAX];
        size_t n = kl_hc_manifest_default(c.pk, man);
        expect_u64(n, tu_json_u64(e, "encoded_length"));
        expect_hex(man, n, tu_json_str(e, "encoded"));
        json_t *fields = tu_json_get(e, "fields");
        assert_int_equal(json_array_size(fields), 8);
        for (size_t f = 0; f < json_array_size(fields); f++) {
            json_t *fe = json_array_get(fields, f);
            uint64_t off = tu_json_u64(fe, "offset"), len = tu_json_u64(fe, "length");
            assert_true(off + len <= n);
            expect_hex(man + off, (size_t)len, tu_json_str(fe, "hex"));
        }
        /* key = H(hash_input), hash_input = MANIFEST namespace || manifest */
        uint8_t in[KL_HASH_BYTES + KL_MANIFEST_MAX], want[KL_HASH_BYTES], ns[KL_HASH_BYTES];
        size_t in_len = tu_unhex(tu_json_str(e, "hash_input"), in, sizeof in);
        assert_int_equal(in_len, KL_HASH_BYTES + n);
        namespace_of("hypercore", 3, ns);
        assert_memory_equal(in, ns, KL_HASH_BYTES);
        assert_memory_equal(in + KL_HASH_BYTES, man, n);
        blake2b(in, in_len, want);
        expect_hex(want, KL_HASH_BYTES, tu_json_str(e, "key"));
        kl_hc_core_key(KL_CORE_DEFAULT, c.pk, c.key);
        expect_hex(c.key, KL_HASH_BYTES, tu_json_str(e, "key"));
        uint8_t dk[KL_HASH_BYTES];
        kl_hc_discovery_key(c.key, dk);
        expect_hex(dk, KL_HASH_BYTES, tu_json_str(e, "discovery_key"));

        kl_manifest m;
        memset(&m, 0xee, sizeof m);
        assert_int_equal(kl_hc_manifest_decode(man, n, &m), 0);
        json_t *mj = tu_json_get(e, "manifest");
        json_t *s0 = json_array_get(tu_json_get(mj, "signers"), 0);
        expect_u64(m.version, tu_json_u64(mj, "version"));
        expect_u64(m.quorum, tu_json_u64(mj, "quorum"));
        assert_int_equal(m.flags, 0);
        assert_int_equal(m.hash, 0); /* blake2b */
        assert_string_equal(tu_json_str(mj, "hash"), "blake2b");
        expect_u64(m.nsigners, json_array_size(tu_json_get(mj, "signers")));
        assert_int_equal(m.sig_type, 0); /* ed25519 */
        assert_string_equal(tu_json_str(s0, "signature"), "ed25519");
        expect_hex(m.ns, KL_HASH_BYTES, tu_json_str(s0, "namespace"));
        expect_hex(m.pk, KL_PK_BYTES, tu_json_str(s0, "publicKey"));
    }
    json_decref(v);
}

/* A manifest written field by field (versions 1..3, the optional tails). */
typedef struct mbuf {
    uint8_t b[1024];
    size_t n;
} mbuf;

static void put_uint(mbuf *m, uint64_t v) {
    assert_true(m->n + KL_CE_UINT_MAX <= sizeof m->b);
    m->n += kl_ce_uint(m->b + m->n, v);
}

static void put_bytes(mbuf *m, uint8_t fill, size_t n) {
    assert_true(m->n + n <= sizeof m->b);
    memset(m->b + m->n, fill, n);
    m->n += n;
}

static void put_signer(mbuf *m, uint64_t type, uint8_t ns, uint8_t pk) {
    put_uint(m, type);
    put_bytes(m, ns, KL_HASH_BYTES);
    put_bytes(m, pk, KL_PK_BYTES);
}

/* version, flags, hash 0, quorum, nsigners signers (signer i: ns 0x10+i, pk 0x20+i). */
static void put_head(mbuf *m, uint64_t version, uint64_t flags, uint64_t quorum, size_t nsigners) {
    m->n = 0;
    put_uint(m, version);
    put_uint(m, flags);
    put_uint(m, 0);
    put_uint(m, quorum);
    put_uint(m, nsigners);
    for (size_t i = 0; i < nsigners; i++)
        put_signer(m, 0, (uint8_t)(0x10 + i), (uint8_t)(0x20 + i));
}

/* A manifest with every optional field: prologue, 2 linked cores, 3 bytes of user data. */
static void put_full(mbuf *m, uint64_t version) {
    put_head(m, version, 0xf, 2, 2);
    put_bytes(m, 0x77, KL_HASH_BYTES); /* prologue hash */
    put_uint(m, 1000);                 /* prologue length */
    put_uint(m, 2);
    put_bytes(m, 0x88, 2 * KL_HASH_BYTES);
    put_uint(m, 3);
    put_bytes(m, 0x99, 3);
}

static void test_manifest_decoder_reads_versions_1_to_3_and_optional_fields(void **state) {
    (void)state;
    for (uint64_t version = 1; version <= 3; version++) {
        mbuf m;
        kl_manifest out;
        put_full(&m, version);
        assert_int_equal(kl_hc_manifest_decode(m.b, m.n, &out), 0);
        assert_int_equal(out.version, version);
        assert_int_equal(out.flags, 0xf);
        assert_int_equal(out.quorum, 2);
        assert_int_equal(out.nsigners, 2);
        uint8_t want[KL_HASH_BYTES];
        memset(want, 0x10, sizeof want); /* signer 0 is the one kept */
        assert_memory_equal(out.ns, want, KL_HASH_BYTES);
        memset(want, 0x20, sizeof want);
        assert_memory_equal(out.pk, want, KL_PK_BYTES);
    }
    /* Long forms of every uint, as compact-encoding decodes them. */
    mbuf m = {.n = 0};
    /* One field a line. */
    /* clang-format off */
    static const uint8_t longform[] = {
        0xfd, 0x01, 0x00,                                     /* version 1 */
        0xfe, 0x00, 0x00, 0x00, 0x00,                         /* flags 0 */
        0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* hash 0 */
        0xfd, 0x01, 0x00,                                     /* quorum 1 */
        0xfd, 0x01, 0x00,                                     /* 1 signer */
        0xfd, 0x00, 0x00};                                    /* its signature type 0 */
    /* clang-format on */
    memcpy(m.b, longform, sizeof longform);
    m.n = sizeof longform;
    put_bytes(&m, 0x41, KL_HASH_BYTES);
    put_bytes(&m, 0x42, KL_PK_BYTES);
    kl_manifest out;
    assert_int_equal(kl_hc_manifest_decode(m.b, m.n, &out), 0);
    assert_int_equal(out.version, 1);
    assert_int_equal(out.quorum, 1);
    assert_int_equal(out.nsigners, 1);
    assert_int_equal(out.pk[0], 0x42);
    /* No signers (a core fixed by its prologue); signer 0's fields stay zero. */
    put_head(&m, 1, 0x2, 0, 0);
    put_bytes(&m, 0x77, KL_HASH_BYTES);
    put_uint(&m, 5);
    assert_int_equal(kl_hc_manifest_decode(m.b, m.n, &out), 0);
    assert_int_equal(out.nsigners, 0);
    assert_int_equal(out.pk[0], 0);
    /* Flag bits hypercore does not know are kept and otherwise ignored, as it does. */
    put_head(&m, 2, 0x30, 1, 1);
    assert_int_equal(kl_hc_manifest_decode(m.b, m.n, &out), 0);
    assert_int_equal(out.flags, 0x30);
}

/* Decoding must fail, leave *m alone, and say why (naming the manifest). */
static void expect_refused(const uint8_t *p, size_t n, const char *why) {
    kl_manifest m, before;
    memset(&m, 0xab, sizeof m);
    before = m;
    kl_err_clear();
    assert_int_equal(kl_hc_manifest_decode(p, n, &m), KL_ECORRUPT);
    assert_memory_equal(&m, &before, sizeof m);
    const char *msg = kl_err_thread();
    if (!strstr(msg, "manifest") || !strstr(msg, why))
        fail_msg("reason '%s' does not mention '%s'", msg, why);
    checks++;
}

static void test_manifest_decoder_refuses_bad_manifests(void **state) {
    (void)state;
    uint8_t pk[KL_PK_BYTES], def[KL_MANIFEST_MAX];
    memset(pk, 0x33, sizeof pk);
    size_t dn = kl_hc_manifest_default(pk, def);
    mbuf m;

    put_head(&m, 0, 0, 1, 1);
    expect_refused(m.b, m.n, "version 0");
    put_head(&m, 4, 0, 1, 1);
    expect_refused(m.b, m.n, "unknown version 4");
    m.n = 0;
    put_uint(&m, 1ull << 53); /* beyond what compact-encoding decodes */
    expect_refused(m.b, m.n, "version");
    put_head(&m, 1, 1ull << 32, 1, 1);
    expect_refused(m.b, m.n, "out of range");
    put_head(&m, 1, 0, 1ull << 32, 1);
    expect_refused(m.b, m.n, "out of range");

    memcpy(m.b, def, dn);
    m.b[2] = 1; /* hash id */
    expect_refused(m.b, dn, "unknown hash id 1");
    memcpy(m.b, def, dn);
    m.b[5] = 1; /* signer 0's signature type */
    expect_refused(m.b, dn, "unknown signature type 1");
    put_head(&m, 1, 0, 2, 2);
    m.b[5 + 65] = 2; /* signer 1's */
    expect_refused(m.b, m.n, "signer 1");

    memcpy(m.b, def, dn);
    m.b[dn] = 0;
    expect_refused(m.b, dn + 1, "trailing");

    /* Counts: over the array limit, or more than the bytes left can hold. */
    m.n = 0;
    put_uint(&m, 1);
    put_uint(&m, 0);
    put_uint(&m, 0);
    put_uint(&m, 1);
    put_uint(&m, 0x100001);
    expect_refused(m.b, m.n, "more than");
    m.b[4] = 2;
    m.n = 5;
    put_signer(&m, 0, 1, 2);
    expect_refused(m.b, m.n, "do not fit");
    put_head(&m, 1, 0x4, 1, 1);
    put_uint(&m, 0x100001);
    expect_refused(m.b, m.n, "more than");
    put_head(&m, 1, 0x4, 1, 1);
    put_uint(&m, 3);
    put_bytes(&m, 0, 2 * KL_HASH_BYTES);
    expect_refused(m.b, m.n, "do not fit");
    put_head(&m, 1, 0x8, 1, 1);
    put_uint(&m, 4);
    put_bytes(&m, 0, 3);
    expect_refused(m.b, m.n, "user data");

    /* Every cut of the default manifest and of one with every optional field. */
    for (size_t cut = 0; cut < dn; cut++)
        expect_refused(def, cut, "");
    put_full(&m, 3);
    for (size_t cut = 0; cut < m.n; cut++)
        expect_refused(m.b, cut, "");
}

/* ---- signatures against damage ---- */

typedef struct signed_state {
    core c;
    uint8_t th[KL_HASH_BYTES];
    uint64_t length, fork;
    uint8_t sig[KL_STORED_SIG_MAX];
    size_t n;
} signed_state;

/* The last state of a vector file, with the signature from the vector. */
static void load_signed(const char *file, const char *list, kl_core_kind kind, signed_state *s) {
    json_t *v = tu_vector(file);
    core_from(v, kind, &s->c);
    json_t *states = tu_json_get(v, list);
    json_t *st = json_array_get(states, json_array_size(states) - 1);
    if (json_object_get(st, "state"))
        st = tu_json_get(st, "state");
    unhex_exact(tu_json_str(st, "tree_hash"), s->th, KL_HASH_BYTES);
    s->length = tu_json_u64(st, "length");
    s->fork = tu_json_u64(st, "fork");
    s->n = tu_unhex(tu_json_str(st, "signature"), s->sig, sizeof s->sig);
    json_decref(v);
    assert_int_equal(kl_hc_verify(kind, s->c.pk, s->c.key, s->th, s->length, s->fork, s->sig, s->n),
                     0);
}

static int verify(const signed_state *s, const uint8_t *th, uint64_t length, uint64_t fork,
                  const uint8_t *sig, size_t n) {
    return kl_hc_verify(s->c.kind, s->c.pk, s->c.key, th, length, fork, sig, n);
}

static void expect_flips_refused(const signed_state *s) {
    uint8_t sig[KL_STORED_SIG_MAX + 1], th[KL_HASH_BYTES];
    for (size_t bit = 0; bit < 8 * s->n; bit++) {
        memcpy(sig, s->sig, s->n);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(verify(s, s->th, s->length, s->fork, sig, s->n), KL_EVERIFY);
    }
    for (size_t bit = 0; bit < 8 * KL_HASH_BYTES; bit++) {
        memcpy(th, s->th, sizeof th);
        th[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(verify(s, th, s->length, s->fork, s->sig, s->n), KL_EVERIFY);
    }
    for (unsigned bit = 0; bit < 64; bit++) {
        assert_int_equal(verify(s, s->th, s->length ^ (1ull << bit), s->fork, s->sig, s->n),
                         KL_EVERIFY);
        assert_int_equal(verify(s, s->th, s->length, s->fork ^ (1ull << bit), s->sig, s->n),
                         KL_EVERIFY);
    }
    /* Cut, or padded with a byte. */
    for (size_t cut = 0; cut < s->n; cut++)
        assert_int_equal(verify(s, s->th, s->length, s->fork, s->sig, cut), KL_EVERIFY);
    memcpy(sig, s->sig, s->n);
    sig[s->n] = 0;
    assert_int_equal(verify(s, s->th, s->length, s->fork, sig, s->n + 1), KL_EVERIFY);
    /* Another public key; and, for a default core, another key signed over. */
    signed_state o = *s;
    o.c.pk[0] ^= 1;
    assert_int_equal(verify(&o, s->th, s->length, s->fork, s->sig, s->n), KL_EVERIFY);
    if (s->c.kind == KL_CORE_DEFAULT) {
        o = *s;
        o.c.key[31] ^= 0x80;
        assert_int_equal(verify(&o, s->th, s->length, s->fork, s->sig, s->n), KL_EVERIFY);
    }
    checks += 8 * s->n + 8 * KL_HASH_BYTES + 128 + s->n + 2;
}

static void test_verify_refuses_any_flipped_bit_default(void **state) {
    (void)state;
    signed_state s;
    load_signed("tree-abc.json", "states", KL_CORE_DEFAULT, &s);
    assert_int_equal(s.n, KL_STORED_SIG_V1);
    expect_flips_refused(&s);
    load_signed("fork.json", "steps", KL_CORE_DEFAULT, &s); /* fork 3 */
    assert_int_equal(s.fork, 3);
    expect_flips_refused(&s);
}

static void test_verify_refuses_any_flipped_bit_compat(void **state) {
    (void)state;
    signed_state s;
    load_signed("compat.json", "states", KL_CORE_COMPAT, &s);
    assert_int_equal(s.n, KL_STORED_SIG_COMPAT);
    expect_flips_refused(&s);
}

static void test_verify_refuses_a_non_canonical_stored_signature(void **state) {
    (void)state;
    signed_state s;
    load_signed("tree-abc.json", "states", KL_CORE_DEFAULT, &s);
    const uint8_t *raw = s.sig + 2;
    uint8_t sig[80];
    /* The same one-proof structure with a long-form count: decodable, not canonical. */
    sig[0] = 0xfd;
    sig[1] = 0x01;
    sig[2] = 0x00;
    sig[3] = 0x00;
    memcpy(sig + 4, raw, KL_SIG_BYTES);
    sig[68] = 0;
    sig[69] = 0;
    kl_err_clear();
    assert_int_equal(verify(&s, s.th, s.length, s.fork, sig, 70), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "canonical"));
    /* Two proofs; signer 1; a patch; patch nodes. */
    static const struct {
        size_t at;
        uint8_t v;
        const char *why;
    } bad[] = {{0, 2, "proofs"}, {1, 1, "signer 1"}, {66, 1, "patch 1"}, {67, 1, "1 patch nodes"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(sig, s.sig, s.n);
        sig[bad[i].at] = bad[i].v;
        kl_err_clear();
        assert_int_equal(verify(&s, s.th, s.length, s.fork, sig, s.n), KL_EVERIFY);
        if (!strstr(kl_err_thread(), bad[i].why))
            fail_msg("reason '%s' does not mention '%s'", kl_err_thread(), bad[i].why);
    }
    /* The raw 64 bytes are not a default core's stored form. */
    assert_int_equal(verify(&s, s.th, s.length, s.fork, raw, KL_SIG_BYTES), KL_EVERIFY);
    /* And a good one says nothing is wrong. */
    assert_int_equal(verify(&s, s.th, s.length, s.fork, s.sig, s.n), 0);
    kl_err_clear();
    assert_int_equal(verify(&s, s.th, s.length + 1, s.fork, s.sig, s.n), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "does not verify"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blake2b_matches_the_vectors),
        cmocka_unit_test(test_namespaces_follow_the_rule_and_are_the_ones_hc_uses),
        cmocka_unit_test(test_compact_uints_and_u64_match_the_vectors),
        cmocka_unit_test(test_compact_uint_encodes_at_the_width_boundaries),
        cmocka_unit_test(test_compact_decoders_accept_long_forms),
        cmocka_unit_test(test_compact_decoders_reject_truncated_input_and_stay_failed),
        cmocka_unit_test(test_leaf_parent_and_tree_hashes_match_the_vectors),
        cmocka_unit_test(test_key_pairs_and_an_ed25519_signature_match_the_vectors),
        cmocka_unit_test(test_discovery_keys_match_the_vectors),
        cmocka_unit_test(test_flat_tree_functions_match_flat_tree),
        cmocka_unit_test(test_full_roots_match_flat_tree),
        cmocka_unit_test(test_tree_pos_is_a_bijection_onto_the_nodes_of_each_length),
        cmocka_unit_test(test_tree_abc_matches_hypercore),
        cmocka_unit_test(test_tree_sizes_with_empty_and_large_blocks_matches_hypercore),
        cmocka_unit_test(test_compat_core_matches_hypercore),
        cmocka_unit_test(test_tree_1000_matches_hypercore_at_every_checkpoint),
        cmocka_unit_test(test_truncation_steps_match_hypercore),
        cmocka_unit_test(test_default_manifests_match_hypercore_and_decode),
        cmocka_unit_test(test_manifest_decoder_reads_versions_1_to_3_and_optional_fields),
        cmocka_unit_test(test_manifest_decoder_refuses_bad_manifests),
        cmocka_unit_test(test_verify_refuses_any_flipped_bit_default),
        cmocka_unit_test(test_verify_refuses_any_flipped_bit_compat),
        cmocka_unit_test(test_verify_refuses_a_non_canonical_stored_signature),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_hc: %lu values checked against the vectors or refused as they must be\n", checks);
    return failed;
}
