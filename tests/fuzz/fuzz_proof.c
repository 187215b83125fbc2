/*
 * fuzz_proof.c - libFuzzer target for the proof messages (engine/proof.c):
 * the `data` and `request` decoders, and what is built and checked from
 * whatever decodes, against a fixed core of 11 blocks "block0".."block10"
 * (seed 32 x 0x06, the core of tests/data/hypercore/proofs.json), signed
 * here at every length 1..11.
 *
 * Each input is decoded both as a data message and as a request.
 *
 * A data message that decodes re-encodes to bytes that decode to the same
 * encoding again (long-form integers become short ones, nothing else
 * changes, and never grow), and is verified by receivers at lengths 0, 4,
 * 11 and the upgrade's start, with and without the public key. Whatever
 * verifies must be true: the new length is one that was signed, the roots
 * are the core's roots at that length, every node it trusts is the core's
 * node of that index and the block value is the core's block.
 *
 * A request that decodes re-encodes and decodes to the same fields, and is
 * answered by senders at lengths 11 and 5. A proof the builder makes must
 * encode, decode to the same bytes and verify for the receiver that would
 * have asked (at the upgrade's start, else the sender's length, holding the
 * core's nodes), landing on the sender's roots; a refused request is
 * KL_EINVAL or KL_ECONFLICT, nothing else.
 *
 * KL_FUZZ_SEEDS=DIR writes the data messages and requests of proofs.json
 * (built here with the library's own builder; tests/test_proof.c checks they
 * are JS's bytes exactly) into DIR and exits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hc.h"
#include "engine/proof.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BLOCKS    11u
#define MSG_MAX   (64u * 1024u)
#define VALUE_MAX 64u

static struct {
    uint8_t data[BLOCKS][8];
    size_t len[BLOCKS];
    kl_node node[2 * BLOCKS];
    uint8_t pk[KL_PK_BYTES], sk[KL_SK_BYTES], key[KL_HASH_BYTES];
    uint8_t manifest[KL_MANIFEST_MAX];
    size_t manifest_len;
    uint8_t sig[BLOCKS + 1][KL_STORED_SIG_MAX];
    size_t sig_len[BLOCKS + 1];
    int ready;
} core;

/* Scratch too big for the stack of every fuzzing thread. */
static kl_proof proof, again;
static kl_proof_result result;
static uint8_t msg[MSG_MAX], msg2[MSG_MAX];

static size_t roots_at(uint64_t length, kl_node roots[KL_MAX_ROOTS]) {
    uint64_t idx[KL_MAX_ROOTS];
    size_t n = kl_ft_full_roots(length, idx);
    for (size_t i = 0; i < n; i++)
        roots[i] = core.node[idx[i]];
    return n;
}

static void core_init(void) {
    if (core.ready)
        return;
    for (size_t i = 0; i < BLOCKS; i++) {
        core.len[i] = (size_t)snprintf((char *)core.data[i], sizeof core.data[i], "block%zu", i);
        kl_hc_leaf(i, core.data[i], core.len[i], &core.node[2 * i]);
    }
    for (uint64_t d = 1; (1ull << d) <= BLOCKS; d++)
        for (uint64_t o = 0; kl_ft_right_span(kl_ft_index(d, o)) < 2 * BLOCKS; o++) {
            uint64_t i = kl_ft_index(d, o), half = 1ull << (d - 1);
            kl_hc_parent(&core.node[i - half], &core.node[i + half], &core.node[i]);
        }
    uint8_t seed[KL_SEED_BYTES];
    memset(seed, 0x06, sizeof seed);
    kl_hc_keypair(seed, core.pk, core.sk);
    kl_hc_core_key(KL_CORE_DEFAULT, core.pk, core.key);
    core.manifest_len = kl_hc_manifest_default(core.pk, core.manifest);
    for (uint64_t len = 1; len <= BLOCKS; len++) {
        kl_node roots[KL_MAX_ROOTS];
        uint8_t th[KL_HASH_BYTES];
        kl_hc_tree_hash(roots, roots_at(len, roots), th);
        kl_hc_sign(KL_CORE_DEFAULT, core.sk, core.key, th, len, 0, core.sig[len],
                   &core.sig_len[len]);
    }
    core.ready = 1;
}

/* The core's nodes in a tree of `length` blocks. */
static int get_node(void *ctx, uint64_t index, kl_node *out) {
    uint64_t length = (uint64_t)(uintptr_t)ctx;
    if (index >= 2 * BLOCKS || kl_ft_right_span(index) >= 2 * length)
        return KL_ENOTFOUND;
    *out = core.node[index];
    return 0;
}

/* What verified is the core's truth. */
static void check_true(const kl_proof *p, const kl_proof_result *r) {
    KL_ASSERT(r->length <= BLOCKS);
    for (size_t i = 0; i < r->nnodes; i++) {
        const kl_node *n = &r->nodes[i];
        KL_ASSERT(n->index < 2 * BLOCKS && kl_ft_right_span(n->index) < 2 * BLOCKS);
        KL_ASSERT(n->size == core.node[n->index].size);
        KL_ASSERT(memcmp(n->hash, core.node[n->index].hash, KL_HASH_BYTES) == 0);
    }
    kl_node roots[KL_MAX_ROOTS];
    size_t n = roots_at(r->length, roots);
    KL_ASSERT(r->nroots == n);
    for (size_t i = 0; i < n; i++)
        KL_ASSERT(r->roots[i].index == roots[i].index &&
                  memcmp(r->roots[i].hash, roots[i].hash, KL_HASH_BYTES) == 0);
    if (r->flags & KL_PROOF_UPGRADE)
        KL_ASSERT(r->length >= 1 && r->signature_len == core.sig_len[r->length] &&
                  memcmp(r->signature, core.sig[r->length], r->signature_len) == 0);
    if (r->flags & KL_PROOF_BLOCK) {
        KL_ASSERT(p->block.index < BLOCKS && r->nodes[0].index == 2 * p->block.index);
        KL_ASSERT(p->block.value_len == core.len[p->block.index] &&
                  memcmp(p->block.value, core.data[p->block.index], p->block.value_len) == 0);
    }
}

static int verify_at(const kl_proof *p, uint64_t length, int know_pk) {
    kl_node roots[KL_MAX_ROOTS];
    size_t n = roots_at(length, roots);
    kl_proof_receiver rx = {.kind = KL_CORE_DEFAULT,
                            .key = core.key,
                            .pk = know_pk ? core.pk : NULL,
                            .length = length,
                            .fork = 0,
                            .roots = roots,
                            .nroots = n,
                            .get = get_node,
                            .ctx = (void *)(uintptr_t)length};
    int rc = kl_proof_verify(&rx, p, &result);
    if (rc == 0) {
        check_true(p, &result);
        KL_ASSERT(result.length >= length);
    } else {
        KL_ASSERT(rc == KL_EVERIFY || rc == KL_ECORRUPT);
        KL_ASSERT(result.nnodes == 0 && result.length == 0);
    }
    return rc;
}

static void drive_data(const uint8_t *data, size_t size) {
    if (kl_proof_decode(data, size, VALUE_MAX, &proof) != 0)
        return;
    size_t n = 0, m = 0;
    KL_ASSERT(kl_proof_encode(&proof, msg, sizeof msg, &n) == 0);
    KL_ASSERT(n <= size);
    KL_ASSERT(kl_proof_decode(msg, n, VALUE_MAX, &again) == 0);
    KL_ASSERT(kl_proof_encode(&again, msg2, sizeof msg2, &m) == 0);
    KL_ASSERT(m == n && memcmp(msg, msg2, n) == 0);
    static const uint64_t lengths[] = {0, 4, BLOCKS};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
        for (int know = 0; know < 2; know++)
            verify_at(&proof, lengths[i], know);
    if ((proof.flags & KL_PROOF_UPGRADE) && proof.upgrade.start <= BLOCKS)
        verify_at(&proof, proof.upgrade.start, 1);
}

static void answer(const kl_proof_request *req, uint64_t length) {
    kl_proof_source src = {.length = length,
                           .fork = 0,
                           .signature = core.sig[length],
                           .signature_len = core.sig_len[length],
                           .manifest = core.manifest,
                           .manifest_len = core.manifest_len,
                           .get = get_node,
                           .ctx = (void *)(uintptr_t)length};
    int rc = kl_proof_build(&src, req, &proof);
    if (rc) {
        KL_ASSERT(rc == KL_EINVAL || rc == KL_ECONFLICT);
        return;
    }
    if (proof.flags & KL_PROOF_BLOCK) {
        KL_ASSERT(proof.block.index < length);
        proof.block.value = core.data[proof.block.index];
        proof.block.value_len = core.len[proof.block.index];
    }
    size_t n = 0, m = 0;
    KL_ASSERT(kl_proof_encode(&proof, msg, sizeof msg, &n) == 0);
    KL_ASSERT(kl_proof_decode(msg, n, VALUE_MAX, &again) == 0);
    KL_ASSERT(kl_proof_encode(&again, msg2, sizeof msg2, &m) == 0);
    KL_ASSERT(m == n && memcmp(msg, msg2, n) == 0);
    int up = (req->flags & KL_PROOF_UPGRADE) != 0;
    uint64_t s = up ? req->upgrade.start : length;
    kl_node roots[KL_MAX_ROOTS];
    size_t nroots = roots_at(s, roots);
    /* The receiver holds the core's nodes (so a path of any valid height ends at one it has). */
    kl_proof_receiver rx = {.kind = KL_CORE_DEFAULT,
                            .key = core.key,
                            .pk = core.pk,
                            .length = s,
                            .fork = 0,
                            .roots = roots,
                            .nroots = nroots,
                            .get = get_node,
                            .ctx = (void *)(uintptr_t)length};
    rc = kl_proof_verify(&rx, &again, &result);
    if (rc != 0) {
        fprintf(stderr, "built proof refused: %s\n", kl_last_error());
        abort();
    }
    check_true(&again, &result);
    KL_ASSERT(result.length == length);
}

static void drive_request(const uint8_t *data, size_t size) {
    kl_proof_request req, back;
    if (kl_proof_request_decode(data, size, &req) != 0)
        return;
    size_t n = 0;
    KL_ASSERT(kl_proof_request_encode(&req, msg, sizeof msg, &n) == 0);
    KL_ASSERT(n <= size);
    KL_ASSERT(kl_proof_request_decode(msg, n, &back) == 0);
    KL_ASSERT(fz_same_request(&req, &back));
    answer(&req, BLOCKS);
    answer(&req, 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    core_init();
    /* an exact-size copy, so ASan sees any read past the end */
    uint8_t *p = malloc(size ? size : 1);
    KL_ASSERT(p != NULL);
    memcpy(p, data, size);
    drive_data(size ? p : NULL, size);
    drive_request(size ? p : NULL, size);
    free(p);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR): the requests and answers of proofs.json ---- */

static const struct {
    uint64_t sender, id;
    uint32_t flags;
    uint64_t index, nodes, start, length;
} seeds[] = {
    {4, 1, KL_PROOF_UPGRADE | KL_PROOF_MANIFEST, 0, 0, 0, 4},
    {11, 1, KL_PROOF_UPGRADE | KL_PROOF_MANIFEST, 0, 0, 0, 11},
    {11, 1, KL_PROOF_BLOCK | KL_PROOF_UPGRADE | KL_PROOF_MANIFEST, 3, 0, 0, 11},
    {11, 1, KL_PROOF_BLOCK | KL_PROOF_UPGRADE | KL_PROOF_MANIFEST, 10, 0, 0, 11},
    {11, 2, KL_PROOF_BLOCK, 0, 3, 0, 0},
    {11, 7, KL_PROOF_BLOCK, 5, 3, 0, 0},
    {11, 11, KL_PROOF_BLOCK, 9, 1, 0, 0},
    {11, 12, KL_PROOF_BLOCK, 10, 0, 0, 0},
    {11, 2, KL_PROOF_UPGRADE, 0, 0, 4, 7},
    {11, 2, KL_PROOF_BLOCK | KL_PROOF_UPGRADE, 9, 0, 4, 7},
    {11, 2, KL_PROOF_BLOCK | KL_PROOF_UPGRADE, 5, 0, 4, 7},
    {11, 1, KL_PROOF_UPGRADE | KL_PROOF_MANIFEST, 0, 0, 0, 5},
    {11, 3, KL_PROOF_UPGRADE, 0, 0, 4, 2},
    {11, 1, KL_PROOF_HASH | KL_PROOF_UPGRADE | KL_PROOF_MANIFEST, 6, 0, 0, 11},
};

static void write_seeds(const char *dir) {
    core_init();
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        kl_proof_request req;
        memset(&req, 0, sizeof req);
        req.flags = seeds[i].flags;
        req.id = seeds[i].id;
        req.block.index = req.hash.index = seeds[i].index;
        req.block.nodes = req.hash.nodes = seeds[i].nodes;
        req.upgrade.start = seeds[i].start;
        req.upgrade.length = seeds[i].length;
        char name[32];
        size_t n = 0;
        KL_ASSERT(kl_proof_request_encode(&req, msg, sizeof msg, &n) == 0);
        snprintf(name, sizeof name, "request-%zu", i);
        write_seed(dir, name, msg, n);
        uint64_t len = seeds[i].sender;
        kl_proof_source src = {.length = len,
                               .signature = core.sig[len],
                               .signature_len = core.sig_len[len],
                               .manifest = core.manifest,
                               .manifest_len = core.manifest_len,
                               .get = get_node,
                               .ctx = (void *)(uintptr_t)len};
        KL_ASSERT(kl_proof_build(&src, &req, &proof) == 0);
        if (proof.flags & KL_PROOF_BLOCK) {
            proof.block.value = core.data[proof.block.index];
            proof.block.value_len = core.len[proof.block.index];
        }
        KL_ASSERT(kl_proof_encode(&proof, msg, sizeof msg, &n) == 0);
        snprintf(name, sizeof name, "data-%zu", i);
        write_seed(dir, name, msg, n);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
