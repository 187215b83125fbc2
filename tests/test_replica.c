/*
 * test_replica.c - a replica: a log without the secret key that grows by
 * appending a peer's verified blocks towards the length the peer signed
 * (engine: kl_replica_create_io, kl_replica_target).
 *
 * The peer here is another kappalog log made from a known seed, appended in
 * several commits; its upgrade proof goes through the real wire encoding
 * (kl_log_proof, kl_proof_decode) and is checked as a receiver would check
 * it (kl_proof_verify, learning the public key from the manifest). Then:
 *   - the replica takes the blocks in pieces: every commit below the signed
 *     length is unsigned (info says so, verify refuses it), the commit that
 *     reaches it carries the peer's signature; key, tree hash, signature
 *     and every block then equal the peer's, and kl_log_verify passes on
 *     the replica, also after reopening;
 *   - it cannot append past the signed length, nor without a target, and
 *     a target of another fork or shorter than what it holds is refused;
 *   - the peer grows: a second upgrade from the replica's length takes it
 *     on (following); compat cores too;
 *   - a wrong block: the commit that reaches the signed length finds roots
 *     the peer did not sign, fails the handle, and nothing of it is kept
 *     (reopened, the replica is at its last good state);
 *   - crashes: every I/O operation of a replica's appends crashed in turn
 *     (fault backend): the reopened replica is a prefix of the peer, and
 *     a new target then brings it to the signed state.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hc.h"
#include "engine/log_internal.h"
#include "engine/proof.h"

#define SEED    0x7e91u
#define MAX_REC 300u
#define MSG_MAX (1u << 20)

typedef struct fixture {
    char *root;
    char peer[4096];
    char replica[4096];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->root = tu_tmpdir("replica");
    snprintf(f->peer, sizeof f->peer, "%s/peer", f->root);
    snprintf(f->replica, sizeof f->replica, "%s/replica", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rmrf(f->root);
    free(f->root);
    free(f);
    return 0;
}

/* A peer log of `n` records appended in batches of 7, from a fixed seed. */
static void make_peer(const char *dir, int compat, uint64_t n) {
    uint8_t seed[KL_SEED_BYTES];
    tu_seed(seed, 0x51);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.seed = seed;
    cfg.compat = compat;
    cfg.fsync_mode = KL_FSYNC_NEVER;
    tu_create(dir, &cfg);
    kl_log *log = tu_open(dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, n, 7), 0);
    assert_int_equal(kl_log_close(log), 0);
}

static void grow_peer(const char *dir, uint64_t to) {
    kl_log *log = tu_open(dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, kl_log_length(log), to, 5), 0);
    assert_int_equal(kl_log_close(log), 0);
}

/*
 * The peer's upgrade from `from` (the replica's length and roots) to its
 * length, through the wire encoding, verified as a receiver does: the
 * signed state, and the signer's public key (learned from the manifest).
 */
static void upgrade(const char *peer_dir, uint64_t from, const kl_node *roots, size_t nroots,
                    kl_signed_state *out, uint8_t pk[KL_PK_BYTES]) {
    kl_log *peer = tu_open_ro(peer_dir);
    uint64_t len = kl_log_length(peer);
    kl_info info;
    assert_int_equal(kl_log_info(peer, &info), 0);
    kl_proof_ask ask = {
        .upgrade = 1, .upgrade_start = from, .upgrade_length = len - from, .manifest = 1};
    unsigned char *msg = NULL;
    size_t n = 0;
    assert_int_equal(kl_log_proof(peer, &ask, 1, &msg, &n), 0);
    assert_int_equal(kl_log_close(peer), 0);
    kl_proof *p = calloc(1, sizeof *p);
    kl_proof_result *res = calloc(1, sizeof *res);
    assert_int_equal(kl_proof_decode(msg, n, MSG_MAX, p), 0);
    kl_proof_receiver rx = {.kind = info.compat ? KL_CORE_COMPAT : KL_CORE_DEFAULT,
                            .key = info.key,
                            .pk = from ? info.public_key : NULL,
                            .length = from,
                            .fork = info.fork,
                            .roots = roots,
                            .nroots = nroots};
    if (info.compat)
        rx.pk = info.public_key; /* a compat core's key is its public key: nothing to learn */
    int rc = kl_proof_verify(&rx, p, res);
    if (rc != 0)
        fail_msg("upgrade %llu..%llu does not verify: %s", (unsigned long long)from,
                 (unsigned long long)len, kl_last_error());
    assert_int_equal(res->length, len);
    out->length = res->length;
    out->fork = info.fork;
    out->nroots = res->nroots;
    memcpy(out->roots, res->roots, res->nroots * sizeof *res->roots);
    memcpy(out->sig, res->signature, res->signature_len);
    out->sig_len = res->signature_len;
    memcpy(pk, info.compat ? info.public_key : res->pk, KL_PK_BYTES);
    free(msg);
    free(p);
    free(res);
}

/* Copy the peer's records [from, to) into the replica, `step` per append. */
static int copy_blocks(kl_log *rep, uint64_t from, uint64_t to, uint64_t step) {
    uint8_t buf[16][MAX_REC];
    kl_block blocks[16];
    assert_true(step <= 16);
    for (uint64_t i = from; i < to;) {
        size_t k = 0;
        for (; k < step && i + k < to; k++) {
            blocks[k].data = buf[k];
            blocks[k].size = tu_record(SEED, i + k, MAX_REC, buf[k]);
        }
        int rc = kl_log_append(rep, blocks, k, NULL);
        if (rc != 0)
            return rc;
        i += k;
    }
    return 0;
}

static void expect_same_as_peer(const char *replica_dir, const char *peer_dir) {
    kl_log *peer = tu_open_ro(peer_dir);
    kl_log *rep = tu_open_ro(replica_dir);
    kl_info a, b;
    assert_int_equal(kl_log_info(peer, &a), 0);
    assert_int_equal(kl_log_info(rep, &b), 0);
    assert_int_equal(a.length, b.length);
    assert_int_equal(a.byte_length, b.byte_length);
    assert_memory_equal(a.key, b.key, sizeof a.key);
    assert_memory_equal(a.discovery_key, b.discovery_key, sizeof a.key);
    assert_memory_equal(a.tree_hash, b.tree_hash, sizeof a.tree_hash);
    assert_int_equal(a.signature_len, b.signature_len);
    assert_memory_equal(a.signature, b.signature, a.signature_len);
    assert_int_equal(b.writable, 0);
    tu_expect_records(rep, SEED, MAX_REC, b.length);
    assert_int_equal(kl_log_verify(rep, NULL, NULL, NULL), 0);
    assert_int_equal(kl_log_close(rep), 0);
    assert_int_equal(kl_log_close(peer), 0);
}

static int create_replica(const char *dir, const kl_config *cfg, const uint8_t pk[KL_PK_BYTES]) {
    kl_io *io = tu_io();
    int rc = kl_replica_create_io(dir, cfg, pk, io);
    kl_io_destroy(io);
    return rc;
}

static kl_log *new_replica(const char *dir, const uint8_t pk[KL_PK_BYTES], int compat) {
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.compat = compat;
    assert_int_equal(create_replica(dir, &cfg, pk), 0);
    return tu_open(dir);
}

static void clone_and_follow(fixture *f, int compat) {
    make_peer(f->peer, compat, 100);
    kl_signed_state t;
    uint8_t pk[KL_PK_BYTES];
    upgrade(f->peer, 0, NULL, 0, &t, pk);
    kl_log *rep = new_replica(f->replica, pk, compat);
    kl_info info;
    assert_int_equal(kl_log_info(rep, &info), 0);
    assert_int_equal(info.length, 0);
    assert_int_equal(info.signature_len, 0);
    assert_int_equal(info.writable, 0);

    /* no target yet: nothing can be appended */
    uint8_t b = 1;
    kl_block one = {&b, 1};
    assert_int_equal(kl_log_append(rep, &one, 1, NULL), KL_EREADONLY);

    assert_int_equal(kl_replica_target(rep, &t), 0);
    assert_int_equal(copy_blocks(rep, 0, 60, 16), 0);
    assert_int_equal(kl_log_info(rep, &info), 0);
    assert_int_equal(info.length, 60);
    assert_int_equal(info.signature_len, 0); /* below the signed length: unsigned */
    assert_int_equal(kl_log_verify(rep, NULL, NULL, NULL), KL_EVERIFY);
    assert_int_equal(copy_blocks(rep, 60, 100, 9), 0);
    /* past the signed length: refused, nothing appended */
    assert_int_equal(kl_log_append(rep, &one, 1, NULL), KL_EINVAL);
    assert_int_equal(kl_log_length(rep), 100);
    assert_int_equal(kl_log_close(rep), 0);
    expect_same_as_peer(f->replica, f->peer);

    /* the peer grows; the replica follows from its own signed state */
    grow_peer(f->peer, 173);
    rep = tu_open(f->replica);
    kl_slot last;
    kl_commit_last(rep, &last);
    upgrade(f->peer, last.length, last.roots, last.nroots, &t, pk);
    assert_int_equal(kl_replica_target(rep, &t), 0);
    assert_int_equal(copy_blocks(rep, 100, 173, 11), 0);
    assert_int_equal(kl_log_close(rep), 0);
    expect_same_as_peer(f->replica, f->peer);
}

static void test_a_replica_clones_and_follows_a_default_core(void **state) {
    clone_and_follow(*state, 0);
}

static void test_a_replica_clones_and_follows_a_compat_core(void **state) {
    clone_and_follow(*state, 1);
}

static void test_targets_that_do_not_fit_are_refused(void **state) {
    fixture *f = *state;
    make_peer(f->peer, 0, 40);
    kl_signed_state t;
    uint8_t pk[KL_PK_BYTES];
    upgrade(f->peer, 0, NULL, 0, &t, pk);
    kl_log *rep = new_replica(f->replica, pk, 0);
    kl_signed_state bad = t;
    bad.fork = 3;
    assert_int_equal(kl_replica_target(rep, &bad), KL_EFORK);
    bad = t;
    bad.nroots = t.nroots + 1; /* not the full roots of its length */
    assert_int_equal(kl_replica_target(rep, &bad), KL_EINVAL);
    bad = t;
    bad.sig_len = 64; /* a compat signature for a default core */
    assert_int_equal(kl_replica_target(rep, &bad), KL_EINVAL);
    assert_int_equal(kl_replica_target(rep, &t), 0);
    assert_int_equal(copy_blocks(rep, 0, 40, 8), 0);
    /* a state shorter than what the replica holds */
    kl_log *peer = tu_open_ro(f->peer);
    kl_signed_state shorter;
    memset(&shorter, 0, sizeof shorter);
    shorter.length = 8;
    shorter.fork = 0;
    uint64_t idx[KL_MAX_ROOTS];
    shorter.nroots = kl_ft_full_roots(8, idx);
    for (size_t i = 0; i < shorter.nroots; i++)
        assert_int_equal(kl_log_node(peer, idx[i], &shorter.roots[i]), 0);
    shorter.sig_len = t.sig_len;
    assert_int_equal(kl_log_close(peer), 0);
    assert_int_equal(kl_replica_target(rep, &shorter), KL_EINVAL);
    /* a writable log with its own key takes no target */
    kl_log *own = tu_open(f->peer);
    assert_int_equal(kl_replica_target(own, &t), KL_EINVAL);
    assert_int_equal(kl_log_close(own), 0);
    assert_int_equal(kl_log_close(rep), 0);
    expect_same_as_peer(f->replica, f->peer);
}

static void test_blocks_the_peer_did_not_sign_are_never_signed(void **state) {
    fixture *f = *state;
    make_peer(f->peer, 0, 30);
    kl_signed_state t;
    uint8_t pk[KL_PK_BYTES];
    upgrade(f->peer, 0, NULL, 0, &t, pk);
    kl_log *rep = new_replica(f->replica, pk, 0);
    assert_int_equal(kl_replica_target(rep, &t), 0);
    assert_int_equal(copy_blocks(rep, 0, 20, 10), 0);
    uint8_t buf[10][MAX_REC];
    kl_block blocks[10];
    for (size_t k = 0; k < 10; k++) {
        blocks[k].data = buf[k];
        blocks[k].size = tu_record(SEED, 20 + k, MAX_REC, buf[k]);
    }
    buf[9][0] ^= 1; /* the last block of the signed length is not the peer's */
    assert_int_equal(kl_log_append(rep, blocks, 10, NULL), KL_EVERIFY);
    assert_non_null(strstr(kl_last_error(), "do not hash to the tree the peer signed"));
    assert_int_equal(kl_log_append(rep, blocks, 1, NULL), KL_EVERIFY); /* failed for good */
    kl_log_close(rep);
    rep = tu_open_ro(f->replica);
    assert_int_equal(kl_log_length(rep), 20);
    tu_expect_records(rep, SEED, MAX_REC, 20);
    assert_int_equal(kl_log_close(rep), 0);
}

static void test_every_crash_of_a_replica_leaves_a_prefix_that_resumes(void **state) {
    fixture *f = *state;
    make_peer(f->peer, 0, 50);
    kl_signed_state t;
    uint8_t pk[KL_PK_BYTES];
    upgrade(f->peer, 0, NULL, 0, &t, pk);
    /* how many operations the whole copy takes */
    kl_fault_plan dry = {.track_power = 1, .skip_real_sync = 1, .shared = 1};
    kl_io *io = tu_fault_io(&dry);
    kl_config cfg;
    kl_config_default(&cfg);
    assert_int_equal(create_replica(f->replica, &cfg, pk), 0);
    kl_log *rep = NULL;
    assert_int_equal(kl_log_open_io(f->replica, NULL, io, &rep), 0);
    assert_int_equal(kl_replica_target(rep, &t), 0);
    assert_int_equal(copy_blocks(rep, 0, 50, 6), 0);
    assert_int_equal(kl_log_close(rep), 0);
    uint64_t total = kl_io_fault_ops(io);
    kl_io_fault_free(io);
    tu_rmrf(f->replica);
    unsigned resumed = 0;
    for (uint64_t n = 1; n <= total; n++) {
        kl_fault_plan plan = {
            .crash_after = n, .track_power = 1, .skip_real_sync = 1, .shared = 1, .seed = n};
        io = tu_fault_io(&plan);
        assert_int_equal(create_replica(f->replica, &cfg, pk), 0);
        rep = NULL;
        if (kl_log_open_io(f->replica, NULL, io, &rep) == 0) {
            if (kl_replica_target(rep, &t) == 0)
                copy_blocks(rep, 0, 50, 6);
            kl_log_close(rep);
        }
        assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_KEEP), 0);
        kl_io_fault_free(io);
        /* reopened: a prefix of the peer, signed only if complete */
        rep = tu_open(f->replica);
        uint64_t have = kl_log_length(rep);
        assert_true(have <= 50);
        tu_expect_records(rep, SEED, MAX_REC, have);
        kl_info info;
        assert_int_equal(kl_log_info(rep, &info), 0);
        assert_true(have == 50 ? info.signature_len == t.sig_len : info.signature_len == 0);
        /* and it resumes to the signed state */
        assert_int_equal(kl_replica_target(rep, &t), 0);
        assert_int_equal(copy_blocks(rep, have, 50, 6), 0);
        resumed += have > 0 && have < 50;
        assert_int_equal(kl_log_close(rep), 0);
        expect_same_as_peer(f->replica, f->peer);
        tu_rmrf(f->replica);
    }
    print_message("%llu crash points; %u left a partial replica that resumed\n",
                  (unsigned long long)total, resumed);
    assert_true(resumed > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_replica_clones_and_follows_a_default_core, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_replica_clones_and_follows_a_compat_core, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_targets_that_do_not_fit_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocks_the_peer_did_not_sign_are_never_signed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_every_crash_of_a_replica_leaves_a_prefix_that_resumes,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
