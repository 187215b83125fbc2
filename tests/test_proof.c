/*
 * test_proof.c - Hypercore's proofs (engine/proof.c) against the golden
 * vectors in tests/data/hypercore/proofs.json and wire-messages.json, which
 * the real JavaScript hypercore 11.37.1 produced and accepted.
 *
 * What this proves: for every case of proofs.json (a core of 11 blocks,
 * seed 32 x 0x06), the request encodes to the vector's bytes and decodes
 * back to its fields; the proof built here from an in-memory tree of the
 * 11 blocks, signed here, encodes byte for byte to the data message JS
 * sent; the vector's data message decodes to the vector's fields; and it
 * verifies as the receiver the case names (empty, at 4, at 11 holding only
 * roots), giving the length JS reached, the true roots and only true nodes.
 * Every request and data message of wire-messages.json round-trips.
 *
 * Against tampering: a flipped bit in any node hash, a changed node size or
 * index, the value, the signature, the block index, the upgrade's start or
 * length, the fork, an extra node: verify fails; so does every single-bit
 * flip of every vector message, except in the request id (which nothing
 * signs), either in the decoder or in verify.
 *
 * Self-check: trees of 1..300 random blocks, default and compat cores,
 * random block, hash and upgrade requests from random receiver lengths:
 * whatever the builder accepts encodes, decodes to the same bytes and
 * verifies for the receiver it was asked by, landing on the sender's true
 * roots; whatever it refuses is a request hypercore refuses too.
 *
 * Refused: invalid requests (upgrades out of range, blocks past the length,
 * paths out of bounds, blocks an upgrade cannot carry, seeks, another
 * fork) leave the output untouched; every truncation, trailing byte,
 * oversized list, value or signature, unknown flag and out-of-range
 * integer is KL_ECORRUPT with a reason.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hc.h"
#include "engine/proof.h"
#include "engine/util.h"

#define MAX_BLOCKS      300u
#define MAX_BLOCK_BYTES 64u
#define MSG_MAX         (64u * 1024u)
#define VALUE_MAX       4096u /* the decoders' value limit in these tests */

static unsigned long checks;

/* ---- JSON ---- */

static void expect_bytes(const uint8_t *p, size_t n, const char *hex) {
    static uint8_t want[MSG_MAX];
    size_t m = tu_unhex(hex, want, sizeof want);
    assert_int_equal(n, m);
    assert_memory_equal(p, want, n);
    checks++;
}

/* ---- an in-memory tree, identities, signatures ---- */

typedef struct tt_tree {
    size_t nblocks;
    uint8_t data[MAX_BLOCKS][MAX_BLOCK_BYTES];
    size_t len[MAX_BLOCKS];
    kl_node node[2 * MAX_BLOCKS]; /* by flat-tree index, every node of the whole tree */
} tt_tree;

static void tree_finish(tt_tree *t) {
    for (size_t i = 0; i < t->nblocks; i++)
        kl_hc_leaf(i, t->data[i], t->len[i], &t->node[2 * i]);
    for (uint64_t d = 1; (1ull << d) <= t->nblocks; d++)
        for (uint64_t o = 0;; o++) {
            uint64_t i = kl_ft_index(d, o);
            if (kl_ft_right_span(i) >= 2 * t->nblocks)
                break;
            uint64_t half = 1ull << (d - 1);
            kl_hc_parent(&t->node[i - half], &t->node[i + half], &t->node[i]);
        }
}

static int in_tree(uint64_t index, uint64_t length) {
    return index < 2 * MAX_BLOCKS && kl_ft_right_span(index) < 2 * length;
}

typedef struct tt_view {
    const tt_tree *t;
    uint64_t length; /* the nodes of the tree of this many blocks */
    int fail_with;   /* a getter error to return instead, when non-zero */
} tt_view;

static int tt_get(void *ctx, uint64_t index, kl_node *out) {
    const tt_view *v = ctx;
    if (v->fail_with)
        return v->fail_with;
    if (!in_tree(index, v->length))
        return KL_ENOTFOUND;
    *out = v->t->node[index];
    return 0;
}

static size_t roots_at(const tt_tree *t, uint64_t length, kl_node roots[KL_MAX_ROOTS]) {
    uint64_t idx[KL_MAX_ROOTS];
    size_t n = kl_ft_full_roots(length, idx);
    for (size_t i = 0; i < n; i++)
        roots[i] = t->node[idx[i]];
    return n;
}

typedef struct tt_id {
    uint8_t pk[KL_PK_BYTES], sk[KL_SK_BYTES];
    uint8_t key[2][KL_HASH_BYTES]; /* by kl_core_kind */
    uint8_t manifest[KL_MANIFEST_MAX];
    size_t manifest_len;
} tt_id;

static void id_from_seed(tt_id *id, uint8_t fill) {
    uint8_t seed[KL_SEED_BYTES];
    memset(seed, fill, sizeof seed);
    kl_hc_keypair(seed, id->pk, id->sk);
    kl_hc_core_key(KL_CORE_DEFAULT, id->pk, id->key[KL_CORE_DEFAULT]);
    kl_hc_core_key(KL_CORE_COMPAT, id->pk, id->key[KL_CORE_COMPAT]);
    id->manifest_len = kl_hc_manifest_default(id->pk, id->manifest);
}

typedef struct tt_sig {
    uint8_t b[KL_STORED_SIG_MAX];
    size_t n;
} tt_sig;

static void sign_at(const tt_tree *t, const tt_id *id, kl_core_kind kind, uint64_t length,
                    uint64_t fork, tt_sig *s) {
    kl_node roots[KL_MAX_ROOTS];
    size_t n = roots_at(t, length, roots);
    uint8_t th[KL_HASH_BYTES];
    kl_hc_tree_hash(roots, n, th);
    kl_hc_sign(kind, id->sk, id->key[kind], th, length, fork, s->b, &s->n);
}

/* The source of a sender at `length` (fork 0) over t. */
static void source_at(kl_proof_source *src, tt_view *view, const tt_tree *t, const tt_id *id,
                      kl_core_kind kind, uint64_t length, const tt_sig *sig) {
    *view = (tt_view){.t = t, .length = length, .fail_with = 0};
    *src = (kl_proof_source){.length = length,
                             .fork = 0,
                             .signature = sig->b,
                             .signature_len = sig->n,
                             .manifest = kind == KL_CORE_COMPAT ? NULL : id->manifest,
                             .manifest_len = kind == KL_CORE_COMPAT ? 0 : id->manifest_len,
                             .get = tt_get,
                             .ctx = view};
}

/* A receiver at `length` (fork 0) over t, holding the whole tree at that length (or roots only). */
typedef struct tt_rx {
    kl_proof_receiver rx;
    kl_node roots[KL_MAX_ROOTS];
    tt_view view;
} tt_rx;

static void receiver_at(tt_rx *r, const tt_tree *t, const tt_id *id, kl_core_kind kind,
                        uint64_t length, int know_pk, int roots_only) {
    r->view = (tt_view){.t = t, .length = length, .fail_with = 0};
    size_t n = roots_at(t, length, r->roots);
    r->rx = (kl_proof_receiver){.kind = kind,
                                .key = id->key[kind],
                                .pk = know_pk ? id->pk : NULL,
                                .length = length,
                                .fork = 0,
                                .roots = r->roots,
                                .nroots = n,
                                .get = roots_only ? NULL : tt_get,
                                .ctx = &r->view};
}

/* Set the block value of a built proof from the tree, as the engine would. */
static void fill_value(kl_proof *p, const tt_tree *t) {
    if (p->flags & KL_PROOF_BLOCK) {
        p->block.value = t->data[p->block.index];
        p->block.value_len = t->len[p->block.index];
    }
}

static size_t encode(const kl_proof *p, uint8_t *out) {
    size_t n = 0;
    int rc = kl_proof_encode(p, NULL, 0, &n);
    assert_int_equal(rc, n ? KL_ETOOSMALL : 0);
    size_t m = 0;
    assert_int_equal(kl_proof_encode(p, out, MSG_MAX, &m), 0);
    assert_int_equal(m, n);
    return m;
}

/* Every node the result trusts is the true node of its index; the roots are the true roots. */
static void expect_true_result(const kl_proof_result *res, const tt_tree *t) {
    for (size_t i = 0; i < res->nnodes; i++) {
        const kl_node *n = &res->nodes[i];
        assert_true(in_tree(n->index, t->nblocks));
        assert_int_equal(n->size, t->node[n->index].size);
        assert_memory_equal(n->hash, t->node[n->index].hash, KL_HASH_BYTES);
    }
    kl_node roots[KL_MAX_ROOTS];
    size_t n = roots_at(t, res->length, roots);
    assert_int_equal(res->nroots, n);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(res->roots[i].index, roots[i].index);
        assert_memory_equal(res->roots[i].hash, roots[i].hash, KL_HASH_BYTES);
        bytes += roots[i].size;
    }
    assert_int_equal(res->byte_length, bytes);
    checks++;
}

/* ---- the vectors' fixture ---- */

typedef struct tt_vec {
    json_t *root, *cases;
    tt_tree tree;
    tt_id id;
} tt_vec;

static tt_vec *vec_load(void) {
    tt_vec *v = calloc(1, sizeof *v);
    assert_non_null(v);
    v->root = tu_vector("proofs.json");
    json_t *blocks = tu_json_get(v->root, "blocks");
    v->tree.nblocks = json_array_size(blocks);
    assert_int_equal(v->tree.nblocks, 11);
    for (size_t i = 0; i < v->tree.nblocks; i++)
        v->tree.len[i] = tu_unhex(tu_json_str(json_array_get(blocks, i), "hex"), v->tree.data[i],
                                  MAX_BLOCK_BYTES);
    tree_finish(&v->tree);
    id_from_seed(&v->id, 0x06);
    expect_bytes(v->id.key[KL_CORE_DEFAULT], KL_HASH_BYTES, tu_json_str(v->root, "key"));
    expect_bytes(v->id.manifest, v->id.manifest_len, tu_json_str(v->root, "manifest"));
    v->cases = tu_json_get(v->root, "cases");
    assert_true(json_array_size(v->cases) >= 17);
    return v;
}

static void vec_free(tt_vec *v) {
    json_decref(v->root);
    free(v);
}

static void expect_same_request(const kl_proof_request *a, const kl_proof_request *b) {
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->id, b->id);
    assert_int_equal(a->fork, b->fork);
    assert_int_equal(a->block.index, b->block.index);
    assert_int_equal(a->block.nodes, b->block.nodes);
    assert_int_equal(a->hash.index, b->hash.index);
    assert_int_equal(a->hash.nodes, b->hash.nodes);
    assert_int_equal(a->seek.bytes, b->seek.bytes);
    assert_int_equal(a->seek.padding, b->seek.padding);
    assert_int_equal(a->upgrade.start, b->upgrade.start);
    assert_int_equal(a->upgrade.length, b->upgrade.length);
    assert_int_equal(a->priority, b->priority);
    checks++;
}

static void expect_nodes(const kl_proof_nodes *l, const json_t *arr) {
    assert_int_equal(l->n, json_array_size(arr));
    for (size_t i = 0; i < l->n; i++) {
        const json_t *j = json_array_get(arr, i);
        assert_int_equal(l->node[i].index, tu_json_u64(j, "index"));
        assert_int_equal(l->node[i].size, tu_json_u64(j, "size"));
        expect_bytes(l->node[i].hash, KL_HASH_BYTES, tu_json_str(j, "hash"));
    }
}

/* A decoded (or built) data message has exactly the vector's fields. */
static void expect_data_fields(const kl_proof *p, const json_t *d, const uint8_t *manifest,
                               size_t manifest_len) {
    assert_int_equal(p->request, tu_json_u64(d, "request"));
    assert_int_equal(p->fork, tu_json_u64(d, "fork"));
    const json_t *b = tu_json_get(d, "block"), *h = tu_json_get(d, "hash"),
                 *u = tu_json_get(d, "upgrade");
    assert_true(json_is_null(tu_json_get(d, "seek")));
    assert_int_equal(!!(p->flags & KL_PROOF_BLOCK), !json_is_null(b));
    assert_int_equal(!!(p->flags & KL_PROOF_HASH), !json_is_null(h));
    assert_int_equal(!!(p->flags & KL_PROOF_UPGRADE), !json_is_null(u));
    assert_int_equal(!!(p->flags & KL_PROOF_MANIFEST), !json_is_null(tu_json_get(d, "manifest")));
    assert_false(p->flags & KL_PROOF_SEEK);
    if (!json_is_null(b)) {
        assert_int_equal(p->block.index, tu_json_u64(b, "index"));
        expect_bytes(p->block.value, p->block.value_len, tu_json_str(b, "value"));
        expect_nodes(&p->block.nodes, tu_json_get(b, "nodes"));
    }
    if (!json_is_null(h)) {
        assert_int_equal(p->hash.index, tu_json_u64(h, "index"));
        expect_nodes(&p->hash.nodes, tu_json_get(h, "nodes"));
    }
    if (!json_is_null(u)) {
        assert_int_equal(p->upgrade.start, tu_json_u64(u, "start"));
        assert_int_equal(p->upgrade.length, tu_json_u64(u, "length"));
        expect_nodes(&p->upgrade.nodes, tu_json_get(u, "nodes"));
        expect_nodes(&p->upgrade.additional, tu_json_get(u, "additionalNodes"));
        expect_bytes(p->upgrade.signature, p->upgrade.signature_len, tu_json_str(u, "signature"));
    }
    if (p->flags & KL_PROOF_MANIFEST) {
        assert_int_equal(p->manifest_len, manifest_len);
        assert_memory_equal(p->manifest, manifest, manifest_len);
    }
    checks++;
}

/* The receiver a case names, as check-vectors.mjs reads it. */
static void vec_receiver(tt_rx *r, const tt_vec *v, const json_t *c) {
    const char *who = tu_json_str(c, "receiver");
    uint64_t len = strstr(who, "length 4") ? 4 : strstr(who, "length 11") ? 11 : 0;
    int know_pk = strstr(who, "no manifest") == NULL;
    /* "holding only the tree roots": no node beyond them */
    int roots_only = strstr(who, "only the tree roots") != NULL;
    receiver_at(r, &v->tree, &v->id, KL_CORE_DEFAULT, len, know_pk, roots_only);
}

/* Build the case's proof as the sender; returns the encoded length in out. */
static size_t vec_build(const tt_vec *v, const json_t *c, kl_proof *p, uint8_t *out) {
    uint64_t len = tu_json_u64(c, "sender_length");
    tt_sig sig;
    sign_at(&v->tree, &v->id, KL_CORE_DEFAULT, len, 0, &sig);
    kl_proof_source src;
    tt_view view;
    source_at(&src, &view, &v->tree, &v->id, KL_CORE_DEFAULT, len, &sig);
    kl_proof_request req;
    tu_request_from_json(tu_json_get(c, "request"), &req);
    assert_int_equal(kl_proof_build(&src, &req, p), 0);
    fill_value(p, &v->tree);
    size_t n = encode(p, out);
    /* out holds the signature now; p's pointer into `sig` goes stale with this frame */
    p->upgrade.signature = NULL;
    p->upgrade.signature_len = 0;
    return n;
}

static kl_proof proof_a, proof_b;
static kl_proof_result result;
static uint8_t msg_a[MSG_MAX], msg_b[MSG_MAX];

/* ---- vectors ---- */

static void test_vector_requests_encode_and_decode_as_hypercore(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    json_t *wire = tu_vector("wire-messages.json");
    json_t *lists[] = {v->cases, tu_json_get(tu_json_get(wire, "encodings"), "request")};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < json_array_size(lists[l]); i++) {
            const json_t *c = json_array_get(lists[l], i);
            int is_case = l == 0;
            kl_proof_request req, back;
            tu_request_from_json(tu_json_get(c, is_case ? "request" : "message"), &req);
            const char *hex = tu_json_str(c, is_case ? "request_bytes" : "hex");
            size_t n = 0;
            assert_int_equal(kl_proof_request_encode(&req, msg_a, MSG_MAX, &n), 0);
            expect_bytes(msg_a, n, hex);
            assert_int_equal(kl_proof_request_decode(msg_a, n, &back), 0);
            expect_same_request(&req, &back);
        }
    }
    json_decref(wire);
    vec_free(v);
}

static void test_vector_proofs_are_built_byte_for_byte(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    for (size_t i = 0; i < json_array_size(v->cases); i++) {
        const json_t *c = json_array_get(v->cases, i);
        uint64_t len = tu_json_u64(c, "sender_length");
        tt_sig sig;
        sign_at(&v->tree, &v->id, KL_CORE_DEFAULT, len, 0, &sig);
        const json_t *u = tu_json_get(tu_json_get(c, "data"), "upgrade");
        if (!json_is_null(u))
            expect_bytes(sig.b, sig.n, tu_json_str(u, "signature"));
        size_t n = vec_build(v, c, &proof_a, msg_a);
        if (n * 2 != strlen(tu_json_str(c, "data_bytes")))
            fail_msg("case '%s': %zu bytes, JS sent %zu", tu_json_str(c, "name"), n,
                     strlen(tu_json_str(c, "data_bytes")) / 2);
        expect_bytes(msg_a, n, tu_json_str(c, "data_bytes"));
    }
    vec_free(v);
}

static void test_vector_data_messages_decode_to_their_fields(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    for (size_t i = 0; i < json_array_size(v->cases); i++) {
        const json_t *c = json_array_get(v->cases, i);
        size_t n = tu_unhex(tu_json_str(c, "data_bytes"), msg_a, MSG_MAX);
        assert_int_equal(kl_proof_decode(msg_a, n, VALUE_MAX, &proof_a), 0);
        expect_data_fields(&proof_a, tu_json_get(c, "data"), v->id.manifest, v->id.manifest_len);
        size_t m = encode(&proof_a, msg_b);
        assert_int_equal(m, n);
        assert_memory_equal(msg_a, msg_b, n);
    }
    /* wire-messages.json: decoded, re-encoded to the same bytes */
    json_t *wire = tu_vector("wire-messages.json");
    json_t *data = tu_json_get(tu_json_get(wire, "encodings"), "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        const json_t *e = json_array_get(data, i);
        size_t n = tu_unhex(tu_json_str(e, "hex"), msg_a, MSG_MAX);
        assert_int_equal(kl_proof_decode(msg_a, n, VALUE_MAX, &proof_a), 0);
        const json_t *m = tu_json_get(tu_json_get(e, "message"), "manifest");
        uint8_t pk[KL_PK_BYTES], man[KL_MANIFEST_MAX];
        size_t man_len = 0;
        if (!json_is_null(m)) {
            const json_t *signer = json_array_get(tu_json_get(m, "signers"), 0);
            tu_unhex(tu_json_str(signer, "publicKey"), pk, sizeof pk);
            man_len = kl_hc_manifest_default(pk, man);
        }
        expect_data_fields(&proof_a, tu_json_get(e, "message"), man, man_len);
        size_t k = encode(&proof_a, msg_b);
        assert_int_equal(k, n);
        assert_memory_equal(msg_a, msg_b, n);
    }
    json_decref(wire);
    vec_free(v);
}

static void test_vector_data_messages_verify_as_their_receivers(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    for (size_t i = 0; i < json_array_size(v->cases); i++) {
        const json_t *c = json_array_get(v->cases, i);
        assert_true(json_is_true(tu_json_get(c, "receiver_accepts")));
        size_t n = tu_unhex(tu_json_str(c, "data_bytes"), msg_a, MSG_MAX);
        assert_int_equal(kl_proof_decode(msg_a, n, VALUE_MAX, &proof_a), 0);
        tt_rx r;
        vec_receiver(&r, v, c);
        kl_err_clear();
        int rc = kl_proof_verify(&r.rx, &proof_a, &result);
        if (rc)
            fail_msg("case '%s': %s", tu_json_str(c, "name"), kl_err_thread());
        const json_t *after = tu_json_get(c, "receiver_after");
        assert_int_equal(result.length, tu_json_u64(after, "length"));
        expect_true_result(&result, &v->tree);
        const json_t *d = tu_json_get(c, "data");
        if (!json_is_null(tu_json_get(d, "block"))) {
            assert_true(result.flags & KL_PROOF_BLOCK);
            assert_int_equal(result.nodes[0].index,
                             2 * tu_json_u64(tu_json_get(d, "block"), "index"));
        }
        if (!json_is_null(tu_json_get(d, "upgrade"))) {
            assert_true(result.flags & KL_PROOF_UPGRADE);
            expect_bytes(result.signature, result.signature_len,
                         tu_json_str(tu_json_get(d, "upgrade"), "signature"));
            assert_int_equal(result.learned_pk, r.rx.pk == NULL);
            assert_memory_equal(result.pk, v->id.pk, KL_PK_BYTES);
        } else {
            assert_int_equal(result.signature_len, 0);
        }
    }
    vec_free(v);
}

/* The decoded vector of case c in proof_a (from msg_a), and its receiver. */
static void vec_decoded(const tt_vec *v, const json_t *c, tt_rx *r) {
    size_t n = tu_unhex(tu_json_str(c, "data_bytes"), msg_a, MSG_MAX);
    assert_int_equal(kl_proof_decode(msg_a, n, VALUE_MAX, &proof_a), 0);
    vec_receiver(r, v, c);
    assert_int_equal(kl_proof_verify(&r->rx, &proof_a, &result), 0);
}

static void expect_refused(const tt_rx *r, const kl_proof *p, const char *what) {
    kl_err_clear();
    int rc = kl_proof_verify(&r->rx, p, &result);
    if (rc == 0)
        fail_msg("verify accepted a proof with %s", what);
    assert_true(rc == KL_EVERIFY || rc == KL_ECORRUPT);
    assert_true(kl_err_thread()[0] != '\0');
    assert_int_equal(result.nnodes, 0);
    checks++;
}

static void tamper_nodes(const tt_rx *r, kl_proof_nodes *l, const char *list) {
    char what[96];
    for (size_t i = 0; i < l->n; i++) {
        kl_node keep = l->node[i];
        l->node[i].hash[i % KL_HASH_BYTES] ^= 0x10;
        snprintf(what, sizeof what, "a flipped bit in the hash of %s[%zu]", list, i);
        expect_refused(r, &proof_a, what);
        l->node[i] = keep;
        l->node[i].size++;
        snprintf(what, sizeof what, "a changed size of %s[%zu]", list, i);
        expect_refused(r, &proof_a, what);
        l->node[i] = keep;
        l->node[i].index += 2;
        snprintf(what, sizeof what, "a changed index of %s[%zu]", list, i);
        expect_refused(r, &proof_a, what);
        l->node[i] = keep;
    }
    kl_node extra;
    memset(&extra, 0, sizeof extra);
    if (l->n)
        extra = l->node[0];
    l->node[l->n] = extra;
    l->n++;
    snprintf(what, sizeof what, "an extra node in %s", list);
    expect_refused(r, &proof_a, what);
    l->n--;
}

static void test_vector_proofs_fail_when_tampered_with(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    static uint8_t copy[MSG_MAX];
    for (size_t i = 0; i < json_array_size(v->cases); i++) {
        const json_t *c = json_array_get(v->cases, i);
        tt_rx r;
        vec_decoded(v, c, &r);
        if (proof_a.flags & KL_PROOF_BLOCK)
            tamper_nodes(&r, &proof_a.block.nodes, "block.nodes");
        if (proof_a.flags & KL_PROOF_HASH)
            tamper_nodes(&r, &proof_a.hash.nodes, "hash.nodes");
        if (proof_a.flags & KL_PROOF_UPGRADE) {
            tamper_nodes(&r, &proof_a.upgrade.nodes, "upgrade.nodes");
            tamper_nodes(&r, &proof_a.upgrade.additional, "upgrade.additionalNodes");
        }
        if (proof_a.flags & KL_PROOF_BLOCK) {
            const uint8_t *keep = proof_a.block.value;
            memcpy(copy, keep, proof_a.block.value_len);
            copy[0] ^= 0x01;
            proof_a.block.value = copy;
            expect_refused(&r, &proof_a, "a flipped bit in the value");
            proof_a.block.value_len--;
            expect_refused(&r, &proof_a, "a shorter value");
            proof_a.block.value_len++;
            proof_a.block.value = keep;
            proof_a.block.index++;
            expect_refused(&r, &proof_a, "the next block index");
            proof_a.block.index--;
        }
        if (proof_a.flags & KL_PROOF_HASH) {
            proof_a.hash.index += 2;
            expect_refused(&r, &proof_a, "another hash index");
            proof_a.hash.index -= 2;
        }
        if (proof_a.flags & KL_PROOF_UPGRADE) {
            const uint8_t *keep = proof_a.upgrade.signature;
            memcpy(copy, keep, proof_a.upgrade.signature_len);
            for (size_t b = 0; b < proof_a.upgrade.signature_len; b += 7) {
                copy[b] ^= 0x04;
                proof_a.upgrade.signature = copy;
                expect_refused(&r, &proof_a, "a flipped bit in the signature");
                copy[b] ^= 0x04;
            }
            proof_a.upgrade.signature = keep;
            proof_a.upgrade.length++;
            expect_refused(&r, &proof_a, "a longer upgrade");
            proof_a.upgrade.length -= 2;
            expect_refused(&r, &proof_a, "a shorter upgrade");
            proof_a.upgrade.length++;
            proof_a.upgrade.start++;
            expect_refused(&r, &proof_a, "another upgrade start");
            proof_a.upgrade.start--;
        }
        proof_a.fork++;
        expect_refused(&r, &proof_a, "another fork");
        proof_a.fork--;
        /* the untouched proof still verifies: every refusal above was the tampering */
        assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), 0);
    }
    vec_free(v);
}

/*
 * Every single-bit flip of the encoded message is refused by the decoder or
 * by verify, except in the request id, which nothing signs.
 */
static void test_every_flipped_bit_of_a_vector_message_is_refused(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    for (size_t i = 0; i < json_array_size(v->cases); i++) {
        const json_t *c = json_array_get(v->cases, i);
        tt_rx r;
        vec_receiver(&r, v, c);
        size_t n = tu_unhex(tu_json_str(c, "data_bytes"), msg_b, MSG_MAX);
        uint8_t scratch[KL_CE_UINT_MAX];
        size_t id_bytes = kl_ce_uint(scratch, tu_json_u64(tu_json_get(c, "data"), "request"));
        for (size_t at = 0; at < n; at++) {
            if (at >= 1 && at < 1 + id_bytes)
                continue; /* the request id (after a one-byte flags field) */
            for (int bit = 0; bit < 8; bit++) {
                memcpy(msg_a, msg_b, n);
                msg_a[at] ^= (uint8_t)(1u << bit);
                if (kl_proof_decode(msg_a, n, VALUE_MAX, &proof_a) != 0) {
                    checks++;
                    continue;
                }
                int rc = kl_proof_verify(&r.rx, &proof_a, &result);
                if (rc == 0)
                    fail_msg("case '%s': byte %zu bit %d flipped still verifies",
                             tu_json_str(c, "name"), at, bit);
                checks++;
            }
        }
    }
    vec_free(v);
}

static void test_verify_names_what_is_wrong(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    const json_t *up47 = NULL, *b9 = NULL, *up011 = NULL, *blk5 = NULL;
    for (size_t i = 0; i < json_array_size(v->cases); i++) {
        const json_t *c = json_array_get(v->cases, i);
        const char *name = tu_json_str(c, "name");
        if (strcmp(name, "upgrade 4+7") == 0)
            up47 = c;
        if (strcmp(name, "block 9 + upgrade 4+7") == 0)
            b9 = c;
        if (strcmp(name, "upgrade 0+11 with manifest") == 0)
            up011 = c;
        if (strcmp(name, "block 5 nodes=3") == 0)
            blk5 = c;
    }
    assert_non_null(up47);
    assert_non_null(b9);
    assert_non_null(up011);
    assert_non_null(blk5);
    tt_rx r;
    /* a receiver with no public key and a message with no manifest */
    vec_decoded(v, up47, &r);
    r.rx.pk = NULL;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "no public key"));
    /* the upgrade must start where the receiver is */
    receiver_at(&r, &v->tree, &v->id, KL_CORE_DEFAULT, 3, 1, 0);
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "starts at 4"));
    /* another core's key */
    tt_id other;
    id_from_seed(&other, 0x07);
    receiver_at(&r, &v->tree, &other, KL_CORE_DEFAULT, 4, 1, 0);
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    /* the same key as a compat core: the signature is the wrong kind */
    receiver_at(&r, &v->tree, &v->id, KL_CORE_COMPAT, 4, 1, 0);
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    /* another fork */
    receiver_at(&r, &v->tree, &v->id, KL_CORE_DEFAULT, 4, 1, 0);
    r.rx.fork = 1;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "fork"));
    /* an upgrade node out of place */
    r.rx.fork = 0;
    proof_a.upgrade.nodes.node[0].index = 13;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "upgrade.nodes: node 0 is 13, expected 11"));
    /* a receiver whose roots are not those of its length is the caller's bug */
    r.rx.nroots = 2;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EINVAL);
    r.rx.nroots = 1;
    r.roots[0].index = 1;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EINVAL);
    assert_non_null(strstr(kl_err_thread(), "root 0 is node 1, expected 3"));

    /* a block path with a wrong sibling, and one that reaches a node not held */
    vec_decoded(v, b9, &r);
    proof_a.block.nodes.node[0].index = 14;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "block 9 proof: node 0 is 14, expected 16"));
    vec_decoded(v, blk5, &r);
    receiver_at(&r, &v->tree, &v->id, KL_CORE_DEFAULT, 4, 1, 1); /* holds roots 3 only */
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "does not hold"));
    receiver_at(&r, &v->tree, &v->id, KL_CORE_DEFAULT, 11, 1, 0);
    r.view.fail_with = KL_EIO; /* the receiver's store fails: not a verdict on the proof */
    r.rx.roots = NULL;
    r.rx.nroots = 0;
    r.rx.length = 0;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EIO);

    /* a manifest that is not this core's */
    vec_decoded(v, up011, &r);
    uint8_t man[KL_MANIFEST_MAX];
    size_t n = kl_hc_manifest_default(other.pk, man);
    proof_a.manifest = man;
    proof_a.manifest_len = n;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "manifest"));
    /* an upgrade without its signature */
    vec_decoded(v, up011, &r);
    proof_a.upgrade.signature = NULL;
    proof_a.upgrade.signature_len = 0;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "no signature"));
    /* a seek part, and a block and a hash together */
    vec_decoded(v, up011, &r);
    proof_a.flags |= KL_PROOF_SEEK;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    assert_non_null(strstr(kl_err_thread(), "seek"));
    vec_decoded(v, b9, &r);
    proof_a.flags |= KL_PROOF_HASH;
    assert_int_equal(kl_proof_verify(&r.rx, &proof_a, &result), KL_EVERIFY);
    vec_free(v);
}

/* ---- the builder refuses what hypercore refuses ---- */

static void expect_build(const kl_proof_source *src, const kl_proof_request *req, int want,
                         const char *why) {
    memset(&proof_b, 0xa5, sizeof proof_b);
    memcpy(&proof_a, &proof_b, sizeof proof_a);
    kl_err_clear();
    int rc = kl_proof_build(src, req, &proof_b);
    if (rc != want)
        fail_msg("build returned %d, expected %d (%s)", rc, want, kl_err_thread());
    if (rc == KL_EINVAL || rc == KL_ECONFLICT)
        assert_memory_equal(&proof_a, &proof_b, sizeof proof_a); /* untouched */
    if (why && !strstr(kl_err_thread(), why))
        fail_msg("reason '%s' does not mention '%s'", kl_err_thread(), why);
    checks++;
}

static kl_proof_request req_of(uint32_t flags, uint64_t index, uint64_t nodes, uint64_t start,
                               uint64_t length) {
    kl_proof_request r;
    memset(&r, 0, sizeof r);
    r.flags = flags;
    r.id = 7;
    if (flags & KL_PROOF_BLOCK) {
        r.block.index = index;
        r.block.nodes = nodes;
    }
    if (flags & KL_PROOF_HASH) {
        r.hash.index = index;
        r.hash.nodes = nodes;
    }
    r.upgrade.start = start;
    r.upgrade.length = length;
    return r;
}

static void test_invalid_requests_are_refused_and_change_nothing(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    tt_sig sig;
    sign_at(&v->tree, &v->id, KL_CORE_DEFAULT, 11, 0, &sig);
    kl_proof_source src;
    tt_view view;
    source_at(&src, &view, &v->tree, &v->id, KL_CORE_DEFAULT, 11, &sig);
    const uint32_t B = KL_PROOF_BLOCK, H = KL_PROOF_HASH, U = KL_PROOF_UPGRADE;
    kl_proof_request r;
    r = req_of(U, 0, 0, 0, 12);
    expect_build(&src, &r, KL_EINVAL, "invalid upgrade 0+12");
    r = req_of(U, 0, 0, 11, 1);
    expect_build(&src, &r, KL_EINVAL, "invalid upgrade");
    r = req_of(U, 0, 0, 3, 0);
    expect_build(&src, &r, KL_EINVAL, "invalid upgrade");
    r = req_of(U, 0, 0, 3, KL_PROOF_MAX_U53);
    expect_build(&src, &r, KL_EINVAL, "invalid upgrade");
    r = req_of(B, 11, 0, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "past the length");
    r = req_of(B, 0, 3, 0, 0);
    expect_build(&src, &r, 0, NULL);
    r = req_of(B, 0, 4, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "out of bounds");
    r = req_of(B, 0, UINT64_MAX, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "out of bounds");
    r = req_of(B, 10, 1, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "out of bounds");
    r = req_of(B, 8, 2, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "out of bounds");
    /* case A with an upgrade is bounded by the upgrade's end, not the sender's length */
    r = req_of(B | U, 0, 2, 4, 2);
    expect_build(&src, &r, 0, NULL);
    r = req_of(B | U, 0, 3, 4, 2);
    expect_build(&src, &r, KL_EINVAL, "out of bounds");
    r = req_of(H, 15, 0, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "outside the tree");
    r = req_of(H, 7, 1, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "out of bounds");
    r = req_of(H, 1ull << 60, 0, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "outside the tree");
    /* case B: the block or node must lie inside what the upgrade carries */
    r = req_of(B | U, 9, 0, 4, 2);
    expect_build(&src, &r, KL_EINVAL, "not inside upgrade 4+2");
    r = req_of(H | U, 7, 0, 4, 7);
    expect_build(&src, &r, KL_EINVAL, "not inside upgrade");
    r = req_of(H | U, 15, 0, 0, 11);
    expect_build(&src, &r, KL_EINVAL, "outside the tree");
    r = req_of(H | U, 11, 0, 4, 7);
    expect_build(&src, &r, 0, NULL);
    assert_int_equal(proof_b.hash.nodes.n, 1); /* node 11 itself stands in for upgrade node 11 */
    r = req_of(U | KL_PROOF_SEEK, 0, 0, 0, 11);
    expect_build(&src, &r, KL_EINVAL, "seek");
    r = req_of(0x40, 0, 0, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "flag");
    r = req_of(U, 0, 0, 0, 11);
    r.fork = 1;
    expect_build(&src, &r, KL_ECONFLICT, "fork 1");
    /* nothing asked: an empty proof, as hypercore sends */
    r = req_of(0, 0, 0, 0, 0);
    expect_build(&src, &r, 0, NULL);
    assert_int_equal(proof_b.flags, 0);
    /* the manifest only when asked for, never for compat */
    r = req_of(U | KL_PROOF_MANIFEST, 0, 0, 0, 11);
    expect_build(&src, &r, 0, NULL);
    assert_true(proof_b.flags & KL_PROOF_MANIFEST);
    src.manifest = NULL;
    expect_build(&src, &r, 0, NULL);
    assert_false(proof_b.flags & KL_PROOF_MANIFEST);
    /* a failing store fails the build with its own error */
    view.fail_with = KL_EIO;
    expect_build(&src, &r, KL_EIO, NULL);
    view.fail_with = 0;
    /* an upgrade needs a signature; an empty core has nothing to prove */
    src.signature = NULL;
    src.signature_len = 0;
    expect_build(&src, &r, KL_EINVAL, "signature");
    src.length = 0;
    r = req_of(U, 0, 0, 0, 1);
    expect_build(&src, &r, KL_EINVAL, "invalid upgrade");
    r = req_of(B, 0, 0, 0, 0);
    expect_build(&src, &r, KL_EINVAL, "past the length");
    vec_free(v);
}

/* ---- the decoders refuse what is not a message ---- */

static void expect_corrupt_data(const uint8_t *p, size_t n, size_t max_value, const char *why) {
    memset(&proof_a, 0xa5, sizeof proof_a);
    kl_err_clear();
    int rc = kl_proof_decode(p, n, max_value, &proof_a);
    if (rc != KL_ECORRUPT)
        fail_msg("decode of %zu bytes returned %d, expected KL_ECORRUPT", n, rc);
    if (why && !strstr(kl_err_thread(), why))
        fail_msg("reason '%s' does not mention '%s'", kl_err_thread(), why);
    static const kl_proof zero;
    assert_memory_equal(&proof_a, &zero, sizeof zero);
    checks++;
}

static void expect_corrupt_request(const uint8_t *p, size_t n, const char *why) {
    kl_proof_request r;
    memset(&r, 0xa5, sizeof r);
    kl_err_clear();
    assert_int_equal(kl_proof_request_decode(p, n, &r), KL_ECORRUPT);
    if (why && !strstr(kl_err_thread(), why))
        fail_msg("reason '%s' does not mention '%s'", kl_err_thread(), why);
    static const kl_proof_request zero;
    assert_memory_equal(&r, &zero, sizeof zero);
    checks++;
}

static void test_truncated_and_padded_messages_are_refused(void **state) {
    (void)state;
    tt_vec *v = vec_load();
    for (size_t i = 0; i < json_array_size(v->cases); i++) {
        const json_t *c = json_array_get(v->cases, i);
        size_t n = tu_unhex(tu_json_str(c, "data_bytes"), msg_b, MSG_MAX);
        for (size_t cut = 0; cut < n; cut++) {
            /* a buffer of exactly `cut` bytes, so ASan sees any read past it */
            uint8_t *buf = malloc(cut ? cut : 1);
            assert_non_null(buf);
            memcpy(buf, msg_b, cut);
            expect_corrupt_data(cut ? buf : NULL, cut, VALUE_MAX, NULL);
            free(buf);
        }
        memcpy(msg_a, msg_b, n);
        msg_a[n] = 0;
        const json_t *d = tu_json_get(c, "data");
        /* after a manifest the extra byte is the manifest's trailing garbage */
        expect_corrupt_data(msg_a, n + 1, VALUE_MAX, "trailing garbage");
        if (!json_is_null(tu_json_get(d, "block"))) {
            size_t len = strlen(tu_json_str(tu_json_get(d, "block"), "value")) / 2;
            expect_corrupt_data(msg_b, n, len - 1, "block.value of");
            assert_int_equal(kl_proof_decode(msg_b, n, len, &proof_a), 0);
        }
        size_t rn = tu_unhex(tu_json_str(c, "request_bytes"), msg_b, MSG_MAX);
        for (size_t cut = 0; cut < rn; cut++) {
            uint8_t *buf = malloc(cut ? cut : 1);
            assert_non_null(buf);
            memcpy(buf, msg_b, cut);
            expect_corrupt_request(cut ? buf : NULL, cut, NULL);
            free(buf);
        }
        msg_b[rn] = 0;
        expect_corrupt_request(msg_b, rn + 1, "trailing garbage");
    }
    vec_free(v);
}

static void test_garbage_messages_are_refused_with_reasons(void **state) {
    (void)state;
    /* flags, request, fork, block index 0, empty value, 129 nodes */
    static const uint8_t many[] = {0x01, 0x01, 0x00, 0x00, 0x00, 0x81};
    expect_corrupt_data(many, sizeof many, VALUE_MAX, "129 nodes, more than 128");
    /* 128 nodes announced, none there */
    static const uint8_t short_nodes[] = {0x01, 0x01, 0x00, 0x00, 0x00, 0x80, 0x02, 0x06};
    expect_corrupt_data(short_nodes, sizeof short_nodes, VALUE_MAX, "cut short");
    /* a value of 5 bytes where 4 are allowed */
    static const uint8_t big_value[] = {0x01, 0x01, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0x00};
    expect_corrupt_data(big_value, sizeof big_value, 4, "block.value of 5 bytes");
    assert_int_equal(kl_proof_decode(big_value, sizeof big_value, 5, &proof_a), 0);
    /* unknown flag bits (a data message has no priority) */
    static const uint8_t flags[] = {0x20, 0x01, 0x00};
    expect_corrupt_data(flags, sizeof flags, VALUE_MAX, "unknown flag bits 0x20");
    /* a fork of 2^53: JS cannot hold it, so no peer sends it */
    static const uint8_t big[] = {0x00, 0x01, 0xff, 0, 0, 0, 0, 0, 0, 0x20, 0};
    expect_corrupt_data(big, sizeof big, VALUE_MAX, "fork at byte 2");
    /* a signature longer than any stored form */
    static uint8_t sig[16 + KL_PROOF_MAX_SIG_BYTES + 1];
    size_t at = 0;
    sig[at++] = KL_PROOF_UPGRADE;
    sig[at++] = 1;
    sig[at++] = 0;
    sig[at++] = 0; /* start */
    sig[at++] = 1; /* length */
    sig[at++] = 0; /* nodes */
    sig[at++] = 0; /* additional */
    at += kl_ce_uint(sig + at, KL_PROOF_MAX_SIG_BYTES + 1);
    expect_corrupt_data(sig, sizeof sig, VALUE_MAX, "upgrade.signature of 1025 bytes");
    /* the manifest flag with no manifest, and with a bad one */
    static const uint8_t no_man[] = {0x10, 0x01, 0x00};
    expect_corrupt_data(no_man, sizeof no_man, VALUE_MAX, "manifest of 0 bytes");
    static const uint8_t bad_man[] = {0x10, 0x01, 0x00, 0x09, 0x00};
    expect_corrupt_data(bad_man, sizeof bad_man, VALUE_MAX, "manifest");
    /* requests: an unknown flag, an integer too big, trailing bytes */
    static const uint8_t rflags[] = {0x40, 0x01, 0x00};
    expect_corrupt_request(rflags, sizeof rflags, "unknown flag bits 0x40");
    static const uint8_t rbig[] = {0x01, 0x01, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0x20, 0, 0};
    expect_corrupt_request(rbig, sizeof rbig, "block.index at byte 3");
    expect_corrupt_request(NULL, 0, "flags");
    /* encoding into a short buffer says how much it needs */
    kl_proof_request r = req_of(KL_PROOF_BLOCK | KL_PROOF_UPGRADE, 1000, 2, 5, 70000);
    size_t n = 0;
    uint8_t out[4];
    assert_int_equal(kl_proof_request_encode(&r, out, sizeof out, &n), KL_ETOOSMALL);
    assert_int_equal(n, 1 + 1 + 1 + 3 + 1 + 1 + 5);
    r.flags |= 0x80;
    assert_int_equal(kl_proof_request_encode(&r, NULL, 0, &n), KL_EINVAL);
    memset(&proof_a, 0, sizeof proof_a);
    proof_a.flags = KL_PROOF_PRIORITY;
    assert_int_equal(kl_proof_encode(&proof_a, NULL, 0, &n), KL_EINVAL);
    proof_a.flags = KL_PROOF_BLOCK;
    proof_a.block.nodes.n = KL_PROOF_MAX_NODES + 1;
    assert_int_equal(kl_proof_encode(&proof_a, NULL, 0, &n), KL_EINVAL);
    checks += 4;
}

/* ---- the self-check on random trees ---- */

/* Levels from leaf `index` up to the root of the tree of `length` blocks that holds it. */
static uint64_t levels_to_root(uint64_t index, uint64_t length) {
    uint64_t roots[KL_MAX_ROOTS];
    size_t n = kl_ft_full_roots(length, roots);
    for (size_t i = 0; i < n; i++)
        if (kl_ft_contains(roots[i], index))
            return kl_ft_depth(roots[i]) - kl_ft_depth(index);
    fail_msg("node %llu is not in a tree of %llu blocks", (unsigned long long)index,
             (unsigned long long)length);
    return 0;
}

/* A random node of the tree of `length` blocks. */
static uint64_t random_node(uint64_t *rng, uint64_t length) {
    uint64_t i = 2 * (tu_rand(rng) % length);
    for (uint64_t up = tu_rand(rng) % 8; up > 0; up--) {
        uint64_t p = kl_ft_parent(i);
        if (kl_ft_right_span(p) >= 2 * length)
            break;
        i = p;
    }
    return i;
}

typedef struct tt_case {
    uint64_t L, s; /* sender's length, receiver's */
    kl_proof_request req;
    int levels_ok;  /* `nodes` stays within the receiver's tree */
    int must_build; /* 1: hypercore answers it, 0: refuses it, -1: either */
} tt_case;

static void random_case(uint64_t *rng, uint64_t L, tt_case *c) {
    memset(c, 0, sizeof *c);
    c->L = L;
    kl_proof_request *r = &c->req;
    r->id = 1 + tu_rand(rng) % 1000;
    int upgrade = tu_rand(rng) % 3 != 0;
    c->s = upgrade ? tu_rand(rng) % L : L;
    uint64_t t = L;
    if (upgrade) {
        r->flags |= KL_PROOF_UPGRADE;
        r->upgrade.start = c->s;
        r->upgrade.length = 1 + tu_rand(rng) % (L - c->s);
        t = c->s + r->upgrade.length;
        if (tu_rand(rng) % 2)
            r->flags |= KL_PROOF_MANIFEST;
    }
    c->must_build = 1;
    c->levels_ok = 1;
    uint64_t kind = tu_rand(rng) % 3, index;
    if (kind == 0)
        return; /* an upgrade alone, or nothing */
    if (kind == 1) {
        r->flags |= KL_PROOF_BLOCK;
        r->block.index = tu_rand(rng) % L;
        index = 2 * r->block.index;
    } else {
        r->flags |= KL_PROOF_HASH;
        r->hash.index = index = random_node(rng, L);
    }
    uint64_t last = kl_ft_right_span(index) / 2;
    if (!upgrade || last < c->s) {
        /* Case A: the receiver holds the tree at s; up to its root is all it can check. */
        uint64_t most = levels_to_root(index, c->s);
        uint64_t k = tu_rand(rng) % (most + 1);
        if (tu_rand(rng) % 8 == 0) {
            k = most + 1 + tu_rand(rng) % 3;
            c->levels_ok = 0;
            /* without an upgrade the root's parent leaves the tree; with one it may not */
            c->must_build = upgrade ? -1 : 0;
        }
        if (kind == 1)
            r->block.nodes = k;
        else
            r->hash.nodes = k;
    } else {
        /* Case B: hypercore answers when the upgrade carries the node. */
        uint64_t first = kl_ft_left_span(index) / 2;
        c->must_build = first >= c->s && last < t;
        if (kind == 2 && c->must_build)
            c->must_build = -1; /* a node may still straddle two upgrade nodes: either way */
    }
}

static void run_case(const tt_tree *t, const tt_id *id, kl_core_kind kind, const tt_sig *sig,
                     const tt_case *c, uint64_t *rng) {
    kl_proof_source src;
    tt_view view;
    source_at(&src, &view, t, id, kind, c->L, sig);
    kl_err_clear();
    int rc = kl_proof_build(&src, &c->req, &proof_a);
    if (c->must_build == 1 && rc != 0)
        fail_msg("L=%llu s=%llu: a valid request refused: %s", (unsigned long long)c->L,
                 (unsigned long long)c->s, kl_err_thread());
    if (c->must_build == 0 && rc == 0)
        fail_msg("L=%llu s=%llu: an invalid request built", (unsigned long long)c->L,
                 (unsigned long long)c->s);
    if (rc) {
        assert_int_equal(rc, KL_EINVAL);
        checks++;
        return;
    }
    fill_value(&proof_a, t);
    size_t n = encode(&proof_a, msg_a);
    assert_int_equal(kl_proof_decode(msg_a, n, MAX_BLOCK_BYTES, &proof_b), 0);
    assert_int_equal(encode(&proof_b, msg_b), n);
    assert_memory_equal(msg_a, msg_b, n);
    tt_rx r;
    int know_pk = !(c->req.flags & KL_PROOF_MANIFEST) || kind == KL_CORE_COMPAT;
    receiver_at(&r, t, id, kind, c->s, know_pk, 0);
    kl_err_clear();
    rc = kl_proof_verify(&r.rx, &proof_b, &result);
    if (!c->levels_ok) {
        /* a path past the receiver's root ends at a node it does not hold */
        assert_int_equal(rc, KL_EVERIFY);
        assert_non_null(strstr(kl_err_thread(), "does not hold"));
        checks++;
        return;
    }
    if (rc)
        fail_msg("L=%llu s=%llu: %s", (unsigned long long)c->L, (unsigned long long)c->s,
                 kl_err_thread());
    /* an upgrade always lands on the sender's length: the signature covers only that */
    assert_int_equal(result.length, c->req.flags & KL_PROOF_UPGRADE ? c->L : c->s);
    expect_true_result(&result, t);
    /* one random bit flipped outside the request id: refused */
    size_t at;
    do
        at = tu_rand(rng) % n;
    while (at == 1 || (at == 2 && c->req.id > 0xfc) || (at == 3 && c->req.id > 0xfc));
    msg_b[at] ^= (uint8_t)(1u << (tu_rand(rng) % 8));
    if (kl_proof_decode(msg_b, n, MAX_BLOCK_BYTES, &proof_b) == 0)
        assert_int_not_equal(kl_proof_verify(&r.rx, &proof_b, &result), 0);
    checks++;
}

static void test_random_trees_build_encode_decode_and_verify(void **state) {
    (void)state;
    tt_tree *t = calloc(1, sizeof *t);
    assert_non_null(t);
    uint64_t rng = 0x70726f6f66ull;
    t->nblocks = MAX_BLOCKS;
    for (size_t i = 0; i < MAX_BLOCKS; i++) {
        t->len[i] = tu_rand(&rng) % (MAX_BLOCK_BYTES + 1);
        for (size_t j = 0; j < t->len[i]; j++)
            t->data[i][j] = (uint8_t)tu_rand(&rng);
    }
    tree_finish(t);
    tt_id id;
    id_from_seed(&id, 0x2a);
    for (uint64_t L = 1; L <= MAX_BLOCKS; L++) {
        kl_core_kind kind = L % 3 == 0 ? KL_CORE_COMPAT : KL_CORE_DEFAULT;
        tt_sig sig;
        sign_at(t, &id, kind, L, 0, &sig);
        for (int i = 0; i < 12; i++) {
            tt_case c;
            random_case(&rng, L, &c);
            run_case(t, &id, kind, &sig, &c, &rng);
        }
    }
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_requests_encode_and_decode_as_hypercore),
        cmocka_unit_test(test_vector_proofs_are_built_byte_for_byte),
        cmocka_unit_test(test_vector_data_messages_decode_to_their_fields),
        cmocka_unit_test(test_vector_data_messages_verify_as_their_receivers),
        cmocka_unit_test(test_vector_proofs_fail_when_tampered_with),
        cmocka_unit_test(test_every_flipped_bit_of_a_vector_message_is_refused),
        cmocka_unit_test(test_verify_names_what_is_wrong),
        cmocka_unit_test(test_invalid_requests_are_refused_and_change_nothing),
        cmocka_unit_test(test_truncated_and_padded_messages_are_refused),
        cmocka_unit_test(test_garbage_messages_are_refused_with_reasons),
        cmocka_unit_test(test_random_trees_build_encode_decode_and_verify),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_proof: %lu values checked or refused as they must be\n", checks);
    return failed;
}
