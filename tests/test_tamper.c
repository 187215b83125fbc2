/*
 * test_tamper.c - one flipped bit anywhere in a signed log is found by
 * kl_log_verify, which names the first block the damage touches, and no
 * read serves a damaged block's bytes.
 *
 * The log: a few thousand blocks in batches of 1..40 over several 64 KiB
 * segments, made from a known key seed. Each case copies it, damages one
 * thing, opens the copy read-only (as `kappalog verify` does: a writable
 * open would cut or rewrite what it cannot trust) and checks
 *   - kl_log_verify returns KL_ECORRUPT or KL_EVERIFY and *bad_block is
 *     the block whose bytes are bad (or, when a damaged 1 KiB chunk also
 *     holds some of the 15 other blocks under its lowest stored tree node,
 *     the first of those: none of them can be checked apart), the first
 *     block under a bad tree node or under the lowest stored node over a
 *     forged block, or UINT64_MAX for a header slot;
 *   - kl_log_get and iteration never serve wrong bytes: a block whose
 *     stored bytes are damaged is reported, every block outside the damaged
 *     batch is served as appended;
 *   - `kappalog verify` exits 1 naming the same first bad block (exit 0 on
 *     the intact log).
 * The damage: a block's bytes in a sealed and in the active segment; the
 * same with the batch's checksums recomputed (a forger's edit only the tree
 * can catch); the hash and the size of nodes of the lowest stored depth
 * (over 16 blocks) and two higher nodes in the tree file;
 * a root and the signature in the accepted header slot (its checksum then
 * fails), the same with the slot checksum recomputed (only the signature
 * can catch it), in both slots at once, and in the older slot.
 *
 * Offsets come from docs/FORMAT.md ("header", "tree", "Batch"), not from the
 * engine's code.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#define SEED      0x7a3e7u
#define MAX_REC   300u
#define RECORDS   3000u
#define MAX_BATCH 40u
#define KEY_BYTE  0x7au

/* docs/FORMAT.md, "header": where a slot keeps its signature, roots and checksum. */
#define SLOT_SIG_AT      156u /* the stored signature (after its u32 length at 152) */
#define SLOT_ROOTS_AT    232u /* 40 bytes per root: hash (32), size (u64) */
#define SLOT_CHECKSUM_AT 4088u
/* docs/FORMAT.md, "Batch". */
#define BATCH_HDR   64u
#define BATCH_CHUNK 1024u

typedef struct fixture {
    tu_cases cs;      /* the intact log (pristine) and this case's copy (dir) */
    uint64_t *firsts; /* first block of each segment */
    size_t nsegs;
    uint64_t *batches; /* first block of each batch, and RECORDS at the end */
    size_t nbatches;
} fixture;

static fixture fx;

static int group_setup(void **state) {
    tu_cases_init(&fx.cs, "tamper");
    *state = &fx.cs;
    uint8_t seed[KL_SEED_BYTES];
    kl_config cfg;
    tu_config_small_signed(&cfg, seed, KEY_BYTE);
    tu_create(fx.cs.pristine, &cfg);
    kl_log *log = tu_open(fx.cs.pristine);
    fx.batches = calloc(RECORDS + 1, sizeof *fx.batches);
    assert_non_null(fx.batches);
    uint64_t rng = 41;
    for (uint64_t i = 0; i < RECORDS;) {
        uint64_t n = 1 + tu_rand(&rng) % MAX_BATCH;
        n = n < RECORDS - i ? n : RECORDS - i;
        fx.batches[fx.nbatches++] = i;
        assert_int_equal(tu_append_range(log, SEED, MAX_REC, i, i + n, (size_t)n), 0);
        i += n;
    }
    fx.batches[fx.nbatches] = RECORDS;
    fx.nsegs = log->nsegs;
    fx.firsts = calloc(fx.nsegs, sizeof *fx.firsts);
    assert_non_null(fx.firsts);
    for (size_t i = 0; i < fx.nsegs; i++)
        fx.firsts[i] = log->segs[i]->first;
    assert_int_equal(kl_log_close(log), 0);
    assert_true(fx.nsegs >= 4);
    assert_true(fx.nbatches >= 100);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    tu_cases_free(&fx.cs);
    free(fx.firsts);
    free(fx.batches);
    return 0;
}

/* The batch holding block i: [first, end). */
static void batch_of(uint64_t i, uint64_t *first, uint64_t *end) {
    size_t k = 0;
    while (fx.batches[k + 1] <= i)
        k++;
    *first = fx.batches[k];
    *end = fx.batches[k + 1];
}

static uint64_t seg_of(uint64_t i) {
    size_t k = 0;
    while (k + 1 < fx.nsegs && fx.firsts[k + 1] <= i)
        k++;
    return fx.firsts[k];
}

/* A block at least `min` bytes long at or after block `from` (so a flip has bytes to hit). */
static uint64_t sizable_block(uint64_t from, size_t min) {
    uint8_t buf[MAX_REC + 8];
    for (uint64_t i = from; i < RECORDS; i++)
        if (tu_record(SEED, i, MAX_REC, buf) >= min)
            return i;
    fail_msg("no block of %zu bytes after %llu", min, (unsigned long long)from);
    return 0;
}

/* Byte offset of block i's bytes in its segment file (found by its content: records are random). */
static uint64_t block_offset(const char *dir, uint64_t i) {
    char seg[4096];
    tu_seg_path(seg, sizeof seg, dir, seg_of(i), "log");
    uint8_t want[MAX_REC + 8];
    size_t wn = tu_record(SEED, i, MAX_REC, want), len = 0;
    assert_true(wn >= 16);
    uint8_t *file = tu_read_file(seg, &len);
    const uint8_t *at = memmem(file, len, want, wn);
    assert_non_null(at);
    assert_null(memmem(at + 1, len - (size_t)(at - file) - 1, want, wn)); /* only once */
    uint64_t off = (uint64_t)(at - file);
    free(file);
    return off;
}

/* ---- running `kappalog verify` ---- */

/* `kappalog verify dir`: its exit status; what it printed (both streams) into out. */
/* `kappalog verify DIR [flag]` (flag may be NULL): its exit status, its output into out. */
static int cli_verify(const char *dir, const char *flag, char *out, size_t cap) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execl(tu_cli_bin(), "kappalog", "verify", dir, flag, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* ---- what must hold after a damage ---- */

typedef struct expect {
    const char *what;
    int code;              /* KL_ECORRUPT or KL_EVERIFY from kl_log_verify */
    uint64_t bad_block;    /* what verify must name (UINT64_MAX: a header slot) */
    uint64_t bad_earliest; /* with `group`: verify may name a block from here to bad_block */
    int group;
    const char *says; /* in verify's context */
    uint64_t length;  /* the read-only open's length */
    /* blocks whose stored bytes are damaged: [bad_from, bad_to) must not be served;
       blocks in [may_from, may_to) may be refused too (they share checksummed chunks) */
    uint64_t bad_from, bad_to, may_from, may_to;
} expect;

/* Every block by get and by iteration: right bytes, or refused where allowed. */
static void check_reads(kl_log *log, const expect *e) {
    uint8_t got[MAX_REC + 8], want[MAX_REC + 8];
    unsigned refused = 0;
    for (uint64_t i = 0; i < e->length; i++) {
        size_t n = 0;
        int rc = kl_log_get(log, i, got, sizeof got, &n);
        int must_fail = i >= e->bad_from && i < e->bad_to;
        int may_fail = must_fail || (i >= e->may_from && i < e->may_to);
        if (rc != 0) {
            if (!may_fail || (rc != KL_ECORRUPT && rc != KL_EVERIFY))
                fail_msg("%s: get(%llu) = %d: %s", e->what, (unsigned long long)i, rc,
                         kl_log_last_error(log));
            refused++;
            continue;
        }
        if (must_fail)
            fail_msg("%s: get(%llu) served a damaged block", e->what, (unsigned long long)i);
        size_t wn = tu_record(SEED, i, MAX_REC, want);
        assert_int_equal(n, wn);
        assert_memory_equal(got, want, wn);
    }
    kl_iter *it = NULL;
    assert_int_equal(kl_iter_open(log, 0, UINT64_MAX, &it), 0);
    kl_record rec;
    int rc;
    uint64_t served = 0, expect_next = 0, errors = 0;
    while ((rc = kl_iter_next(it, &rec)) != 0) {
        if (rc < 0) {
            if (rc != KL_ECORRUPT && rc != KL_EVERIFY)
                fail_msg("%s: iteration: %d %s", e->what, rc, kl_log_last_error(log));
            errors++;
            assert_true(errors < e->length); /* the iterator moves on past damage */
            continue;
        }
        if (rec.index >= e->bad_from && rec.index < e->bad_to)
            fail_msg("%s: iteration served damaged block %llu", e->what,
                     (unsigned long long)rec.index);
        /* nothing outside the damaged range is skipped */
        for (; expect_next < rec.index; expect_next++)
            if (!((expect_next >= e->bad_from && expect_next < e->bad_to) ||
                  (expect_next >= e->may_from && expect_next < e->may_to)))
                fail_msg("%s: iteration skipped block %llu", e->what,
                         (unsigned long long)expect_next);
        expect_next = rec.index + 1;
        size_t wn = tu_record(SEED, rec.index, MAX_REC, want);
        assert_int_equal(rec.size, wn);
        assert_memory_equal(rec.data, want, wn);
        served++;
    }
    kl_iter_close(it);
    for (; expect_next < e->length; expect_next++)
        if (!((expect_next >= e->bad_from && expect_next < e->bad_to) ||
              (expect_next >= e->may_from && expect_next < e->may_to)))
            fail_msg("%s: iteration stopped before block %llu", e->what,
                     (unsigned long long)expect_next);
    assert_true(served + (e->bad_to - e->bad_from) <= e->length);
    if (e->bad_to > e->bad_from) { /* the damage was reported, by both */
        assert_true(refused >= e->bad_to - e->bad_from);
        assert_true(errors >= 1);
    }
}

static void expect_damage_found(const expect *e) {
    kl_log *log = tu_open_ro(fx.cs.dir);
    assert_int_equal(kl_log_length(log), e->length);
    uint64_t bad = 0;
    int rc = kl_log_verify(log, NULL, NULL, &bad);
    char ctx[512];
    snprintf(ctx, sizeof ctx, "%s", kl_log_last_error(log));
    if (rc != e->code)
        fail_msg("%s: verify = %d, expected %d (%s)", e->what, rc, e->code, ctx);
    if (e->says && !strstr(ctx, e->says))
        fail_msg("%s: verify said '%s', expected it to mention '%s'", e->what, ctx, e->says);
    check_reads(log, e);
    assert_int_equal(kl_log_close(log), 0);
    /* the command line names the block verify names */
    char out[4096];
    assert_int_equal(cli_verify(fx.cs.dir, NULL, out, sizeof out), 1);
    char want[96];
    if (bad != UINT64_MAX) {
        snprintf(want, sizeof want, "first bad block %llu:", (unsigned long long)bad);
        if (!strstr(out, want))
            fail_msg("%s: kappalog verify printed '%s', expected '%s'", e->what, out, want);
    } else if (strstr(out, "first bad block")) {
        fail_msg("%s: kappalog verify named a block for a header slot: %s", e->what, out);
    }
    /* last, so that everything above is checked even where this is wrong */
    if (e->group ? bad < e->bad_earliest || bad > e->bad_block : bad != e->bad_block)
        fail_msg("%s: verify named first bad block %lld, expected %lld (%s)", e->what,
                 (long long)bad, (long long)e->bad_block, ctx);
}

/* ---- the intact log ---- */

static void test_the_intact_log_verifies(void **state) {
    (void)state;
    kl_log *log = tu_open_ro(fx.cs.dir);
    tu_expect_verified(log, "intact");
    tu_tree t;
    tu_tree_init(&t);
    tu_tree_grow(&t, SEED, MAX_REC, RECORDS);
    uint8_t th[KL_HASH_BYTES], seed[KL_SEED_BYTES];
    tu_tree_hash(&t, th);
    tu_seed(seed, KEY_BYTE);
    tu_expect_signed(log, seed, 0, th, "intact");
    expect e = {.what = "intact", .length = RECORDS};
    check_reads(log, &e);
    assert_int_equal(kl_log_close(log), 0);
    char out[4096];
    assert_int_equal(cli_verify(fx.cs.dir, NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "3000 blocks"));
}

/* ---- block bytes ---- */

static void flip_block(uint64_t j, const char *what) {
    char seg[4096];
    tu_seg_path(seg, sizeof seg, fx.cs.dir, seg_of(j), "log");
    size_t n = tu_record(SEED, j, MAX_REC, (uint8_t[MAX_REC + 8]){0});
    tu_flip(seg, block_offset(fx.cs.dir, j) + n / 2, 0x20);
    uint64_t bf, be;
    batch_of(j, &bf, &be);
    /* the blocks of j's damaged chunk under its lowest stored node may stand or fall with it */
    uint64_t group = j - j % (1u << KL_TREE_LOW);
    expect e = {.what = what,
                .code = KL_ECORRUPT,
                .bad_block = j,
                .bad_earliest = group > bf ? group : bf,
                .group = 1,
                .length = RECORDS,
                .bad_from = j,
                .bad_to = j + 1,
                .may_from = bf,
                .may_to = be};
    expect_damage_found(&e);
}

/* A block in the middle of a batch: verify must name it, not the batch's first block. */
static uint64_t mid_batch_block(uint64_t from) {
    for (uint64_t j = sizable_block(from, 32);; j = sizable_block(j + 1, 32)) {
        uint64_t bf, be;
        batch_of(j, &bf, &be);
        if (j > bf + 2 && j + 1 < be)
            return j;
    }
}

static void test_a_flipped_bit_in_a_sealed_segment_names_its_block(void **state) {
    (void)state;
    uint64_t j = mid_batch_block(fx.firsts[1] + 5);
    assert_true(j < fx.firsts[2]);
    flip_block(j, "block bytes, sealed segment");
}

static void test_a_flipped_bit_in_the_active_segment_names_its_block(void **state) {
    (void)state;
    /* not in the newest batch: a read-only open reports that one too, but it is the one
       damage a writable open may cut as a torn write */
    uint64_t j = mid_batch_block(fx.firsts[fx.nsegs - 1] + 3);
    assert_true(j < fx.batches[fx.nbatches - 1]);
    flip_block(j, "block bytes, active segment");
}

/* The first block a flip can touch is the batch's: verify may not name one before it. */
static void test_a_flipped_bit_in_the_first_block_of_a_batch_names_it(void **state) {
    (void)state;
    uint64_t j = 0;
    for (size_t k = 10; k < fx.nbatches; k++) {
        uint8_t buf[MAX_REC + 8];
        j = fx.batches[k];
        if (fx.batches[k + 1] > j + 1 && tu_record(SEED, j, MAX_REC, buf) >= 32)
            break;
    }
    flip_block(j, "block bytes, first of its batch");
}

/*
 * A forger's edit: block j's bytes changed and every checksum of its batch
 * recomputed (chunk, chunk sums, header; docs/FORMAT.md, "Batch"). The
 * batch checks out; only its leaf in the signed tree can tell.
 */
static void forge_block(const char *dir, uint64_t j) {
    char seg[4096];
    tu_seg_path(seg, sizeof seg, dir, seg_of(j), "log");
    size_t len = 0;
    uint8_t *f = tu_read_file(seg, &len);
    uint64_t pos = 64; /* past the segment file header */
    for (;;) {
        assert_true(pos + BATCH_HDR <= len);
        uint64_t first, stored;
        uint32_t count, st32;
        memcpy(&first, f + pos + 8, 8);
        memcpy(&count, f + pos + 16, 4);
        memcpy(&st32, f + pos + 20, 4);
        stored = st32;
        uint64_t chunks = (stored + BATCH_CHUNK - 1) / BATCH_CHUNK;
        if (j >= first + count) {
            pos += BATCH_HDR + 8 * chunks + stored;
            continue;
        }
        assert_int_equal(f[pos + 6], 0); /* uncompressed */
        uint8_t *body = f + pos + BATCH_HDR + 8 * chunks;
        uint32_t k = (uint32_t)(j - first), start = 0, end;
        if (k > 0)
            memcpy(&start, body + 4 * (k - 1), 4);
        memcpy(&end, body + 4 * k, 4);
        assert_true(end - start >= 16);
        uint64_t at = 4ull * count + start + (end - start) / 2; /* in the body */
        body[at] ^= 0x08;
        uint64_t c = at / BATCH_CHUNK;
        uint64_t clen =
            stored - c * BATCH_CHUNK < BATCH_CHUNK ? stored - c * BATCH_CHUNK : BATCH_CHUNK;
        uint64_t sum = XXH3_64bits_withSeed(body + c * BATCH_CHUNK, (size_t)clen,
                                            first ^ (c << 40) ^ (c >> 24));
        memcpy(f + pos + BATCH_HDR + 8 * c, &sum, 8);
        uint64_t sums = XXH3_64bits(f + pos + BATCH_HDR, (size_t)(8 * chunks));
        memcpy(f + pos + 48, &sums, 8);
        uint64_t hsum = XXH3_64bits(f + pos, 56);
        memcpy(f + pos + 56, &hsum, 8);
        tu_write_at(seg, pos, f + pos, (size_t)(BATCH_HDR + 8 * chunks + stored));
        break;
    }
    free(f);
}

static void test_a_block_forged_with_its_checksums_is_caught_by_the_tree(void **state) {
    (void)state;
    uint64_t j = mid_batch_block(fx.firsts[2] + 7);
    forge_block(fx.cs.dir, j);
    kl_log *log = tu_open_ro(fx.cs.dir);
    uint64_t bad = 0;
    int rc = kl_log_verify(log, NULL, NULL, &bad);
    /* the tree names the blocks under the lowest stored node over j: its first one */
    uint64_t group = j - j % (1u << KL_TREE_LOW);
    if (rc != KL_EVERIFY || bad != group)
        fail_msg("forged block %llu: verify = %d, first bad block %lld: %s", (unsigned long long)j,
                 rc, (long long)bad, kl_log_last_error(log));
    assert_non_null(strstr(kl_log_last_error(log), "do not match the tree"));
    /* Reads check checksums, not the tree (docs/FORMAT.md, "Who checks what"): what they
       serve of the other blocks must still be right. */
    uint8_t got[MAX_REC + 8], want[MAX_REC + 8];
    for (uint64_t i = 0; i < RECORDS; i += 1 + (i % 7)) {
        size_t n = 0;
        if (i == j || kl_log_get(log, i, got, sizeof got, &n) != 0)
            continue;
        size_t wn = tu_record(SEED, i, MAX_REC, want);
        assert_int_equal(n, wn);
        assert_memory_equal(got, want, wn);
    }
    assert_int_equal(kl_log_close(log), 0);
    char out[4096], w[64];
    assert_int_equal(cli_verify(fx.cs.dir, NULL, out, sizeof out), 1);
    snprintf(w, sizeof w, "first bad block %llu:", (unsigned long long)group);
    if (!strstr(out, w))
        fail_msg("kappalog verify printed '%s', expected '%s'", out, w);
}

/* ---- the tree file ---- */

/*
 * A node is redundant (the blocks make it): after the damage is found,
 * `kappalog verify --repair` writes that one node back, and the tree file
 * is the intact one again, byte for byte.
 */
static void flip_node(uint64_t index, uint64_t byte, const char *what) {
    char tree[4096], intact[4096];
    snprintf(tree, sizeof tree, "%s/tree", fx.cs.dir);
    snprintf(intact, sizeof intact, "%s/tree", fx.cs.pristine);
    tu_flip(tree, kl_tree_off(kl_tree_spos(index, KL_TREE_LOW)) + byte, 0x01);
    expect e = {.what = what,
                .code = KL_EVERIFY,
                .bad_block = kl_ft_left_span(index) / 2,
                .says = "tree",
                .length = RECORDS,
                .bad_from = 1,
                .bad_to = 1};
    expect_damage_found(&e);
    char out[4096];
    if (cli_verify(fx.cs.dir, "--repair", out, sizeof out) != 0 ||
        !strstr(out, "rebuilt 1 tree node from the blocks") || !strstr(out, "signature hold"))
        fail_msg("%s: kappalog verify --repair printed '%s'", what, out);
    size_t n = 0, m = 0;
    uint8_t *got = tu_read_file(tree, &n), *want = tu_read_file(intact, &m);
    assert_int_equal(n, m);
    assert_memory_equal(got, want, n);
    free(got);
    free(want);
}

/* The lowest stored node over block j: depth KL_TREE_LOW, 16 blocks. */
static uint64_t lowest_stored(uint64_t j) {
    return kl_ft_index(KL_TREE_LOW, j >> KL_TREE_LOW);
}

static void test_a_flipped_lowest_node_hash_names_its_first_block(void **state) {
    (void)state;
    flip_node(lowest_stored(1234), 7, "hash of the lowest node over block 1234");
}

static void test_a_flipped_lowest_node_size_names_its_first_block(void **state) {
    (void)state;
    /* the last node of the lowest stored depth: blocks 2976..2991 (2992.. are under none) */
    uint64_t index = lowest_stored(2991);
    assert_int_equal(kl_ft_left_span(index) / 2, 2976);
    flip_node(index, 32, "size of the last lowest node");
}

static void test_a_flipped_parent_names_the_first_block_under_it(void **state) {
    (void)state;
    /* depth 6 (64 blocks) in the middle: blocks 2176..2239 */
    uint64_t index = kl_ft_index(6, 2208 / 64);
    assert_int_equal(kl_ft_left_span(index) / 2, 2176);
    flip_node(index, 19, "parent over blocks 2176..2239");
}

static void test_a_flipped_full_root_in_the_tree_file_names_its_first_block(void **state) {
    (void)state;
    /* the roots of 3000 blocks: 2048 + 512 + 256 + 128 + 32 + 16 + 8; take the second */
    uint64_t roots[KL_MAX_ROOTS];
    assert_int_equal(kl_ft_full_roots(RECORDS, roots), 7);
    assert_int_equal(kl_ft_left_span(roots[1]) / 2, 2048);
    flip_node(roots[1], 0, "root node over blocks 2048..2559 in the tree file");
}

/*
 * A repair trusts the blocks only once they make the signed roots. A forged
 * block makes other roots, so nothing is written, not even a zeroed node
 * elsewhere that the blocks alone would have rebuilt right.
 */
static void test_a_forged_block_stops_a_repair_of_the_tree(void **state) {
    (void)state;
    uint64_t j = mid_batch_block(fx.firsts[2] + 7);
    forge_block(fx.cs.dir, j);
    char tree[4096];
    snprintf(tree, sizeof tree, "%s/tree", fx.cs.dir);
    static const uint8_t zero[KL_TREE_NODE_BYTES];
    tu_write_at(tree, kl_tree_off(kl_tree_spos(lowest_stored(100), KL_TREE_LOW)), zero,
                sizeof zero);
    size_t n = 0, m = 0;
    uint8_t *before = tu_read_file(tree, &n);
    kl_log *log = tu_open(fx.cs.dir);
    uint64_t rebuilt = 7;
    assert_int_equal(kl_log_repair_tree(log, NULL, NULL, &rebuilt), KL_EVERIFY);
    assert_int_equal(rebuilt, 0);
    assert_non_null(strstr(kl_log_last_error(log), "cannot be rebuilt from the blocks"));
    assert_int_equal(kl_log_close(log), 0);
    char out[4096];
    if (cli_verify(fx.cs.dir, "--repair", out, sizeof out) != 1 ||
        !strstr(out, "cannot be rebuilt from the blocks"))
        fail_msg("kappalog verify --repair printed '%s'", out);
    uint8_t *after = tu_read_file(tree, &m);
    assert_int_equal(n, m);
    assert_memory_equal(before, after, n);
    free(before);
    free(after);
}

/* ---- the header slots ---- */

typedef struct slots {
    kl_slot s[2];
    int valid[2];
    int newer; /* the slot with the higher seq */
} slots;

static void read_slots(const char *dir, slots *out) {
    char hdr[4096];
    snprintf(hdr, sizeof hdr, "%s/header", dir);
    size_t len = 0;
    uint8_t *p = tu_read_file(hdr, &len);
    assert_int_equal(len, KL_HDR_FILE_BYTES);
    for (int i = 0; i < 2; i++)
        out->valid[i] = kl_slot_decode(p + i * KL_HDR_SLOT_BYTES, &out->s[i]) == 0;
    assert_true(out->valid[0] && out->valid[1]);
    out->newer = out->s[1].seq > out->s[0].seq;
    free(p);
}

/* Flip a bit of slot i at off; with `reseal`, recompute its checksum (FORMAT.md: XXH3-64 of
   bytes 0..4087, stored at 4088) so that only the signature can catch the change. */
static void damage_slot(int i, uint64_t off, int reseal) {
    char hdr[4096];
    snprintf(hdr, sizeof hdr, "%s/header", fx.cs.dir);
    uint64_t base = (uint64_t)i * KL_HDR_SLOT_BYTES;
    tu_flip(hdr, base + off, 0x40);
    if (!reseal)
        return;
    size_t len = 0;
    uint8_t *p = tu_read_file(hdr, &len);
    uint64_t sum = XXH3_64bits(p + base, SLOT_CHECKSUM_AT);
    tu_write_at(hdr, base + SLOT_CHECKSUM_AT, &sum, 8);
    free(p);
}

/* The accepted (newer) slot damaged: the older one serves; verify reports the slot. */
static void slot_case(uint64_t off, int reseal, const char *says, const char *what) {
    slots sl;
    read_slots(fx.cs.dir, &sl);
    assert_int_equal(sl.s[sl.newer].length, RECORDS);
    damage_slot(sl.newer, off, reseal);
    if (reseal) { /* it still decodes: only its signature is wrong */
        char hdr[4096];
        snprintf(hdr, sizeof hdr, "%s/header", fx.cs.dir);
        size_t len = 0;
        uint8_t *p = tu_read_file(hdr, &len);
        kl_slot s;
        assert_int_equal(kl_slot_decode(p + sl.newer * KL_HDR_SLOT_BYTES, &s), 0);
        assert_int_equal(kl_slot_verify(&s), KL_EVERIFY);
        free(p);
    }
    expect e = {.what = what,
                .code = KL_ECORRUPT,
                .bad_block = UINT64_MAX,
                .says = says,
                .length = sl.s[1 - sl.newer].length,
                .bad_from = 1,
                .bad_to = 1};
    expect_damage_found(&e);
}

static void test_a_flipped_root_in_the_accepted_slot_is_reported(void **state) {
    (void)state;
    slot_case(SLOT_ROOTS_AT + 40 * 2 + 11, 0, "checksum", "root, slot checksum fails");
}

static void test_a_flipped_signature_in_the_accepted_slot_is_reported(void **state) {
    (void)state;
    slot_case(SLOT_SIG_AT + 30, 0, "checksum", "signature, slot checksum fails");
}

static void test_a_root_changed_under_a_good_checksum_fails_the_signature(void **state) {
    (void)state;
    slot_case(SLOT_ROOTS_AT + 5, 1, "signature", "root with the slot checksum recomputed");
}

static void test_a_signature_changed_under_a_good_checksum_fails_it(void **state) {
    (void)state;
    slot_case(SLOT_SIG_AT + 2 + 40, 1, "signature", "signature with the slot checksum recomputed");
}

static void test_a_damaged_older_slot_is_reported(void **state) {
    (void)state;
    slots sl;
    read_slots(fx.cs.dir, &sl);
    damage_slot(1 - sl.newer, SLOT_ROOTS_AT + 3, 1);
    expect e = {.what = "root of the older slot, checksum recomputed",
                .code = KL_ECORRUPT,
                .bad_block = UINT64_MAX,
                .says = "slot",
                .length = RECORDS,
                .bad_from = 1,
                .bad_to = 1};
    expect_damage_found(&e);
}

static void test_both_slots_unsigned_refuse_to_open(void **state) {
    (void)state;
    damage_slot(0, SLOT_ROOTS_AT + 9, 1);
    damage_slot(1, SLOT_ROOTS_AT + 9, 1);
    kl_open_options o;
    kl_open_options_default(&o);
    o.flags = KL_OPEN_READONLY;
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(fx.cs.dir, &o, tu_io(), &log), KL_ECORRUPT);
    assert_non_null(strstr(kl_last_error(), "both header slots"));
    assert_int_equal(kl_log_open_io(fx.cs.dir, NULL, tu_io(), &log), KL_ECORRUPT);
    char out[4096];
    assert_int_equal(cli_verify(fx.cs.dir, NULL, out, sizeof out), 1);
    assert_non_null(strstr(out, "both header slots"));
}

/* Block i of the cut-segment case: CUT_BLOCK bytes derived from i. */
#define CUT_BLOCK   10000u
#define CUT_BATCHES 5u
#define CUT_PER     2u /* blocks per batch */
#define CUT_PAGE    4096u

static void cut_block(uint64_t i, uint8_t *buf) {
    for (size_t j = 0; j < CUT_BLOCK; j++)
        buf[j] = (uint8_t)(i * 97 + j * 13 + (j >> 8));
}

/*
 * A read-only open of a log whose active segment was cut inside its last
 * batch serves what is intact (DURABILITY.md) and reports the rest. get did;
 * the iterator went on from the batch before it to the cut one, bounded by
 * the slot's end rather than the file, and hashed a body that runs past the
 * file in the mapping of the active segment, which is longer than the file:
 * with the file cut on a page boundary, SIGBUS. It must report the blocks
 * of the cut batch as get does, naming them, and end.
 */
static void test_an_iterator_over_a_cut_active_segment_reports_the_cut(void **state) {
    (void)state;
    char *root = tu_tmpdir("tamper-cut"), *dir = NULL;
    assert_true(asprintf(&dir, "%s/log", root) > 0);
    tu_create(dir, NULL);
    kl_log *log = tu_open(dir);
    static uint8_t bytes[CUT_PER][CUT_BLOCK], want[CUT_BLOCK], got[CUT_BLOCK];
    for (uint64_t b = 0; b < CUT_BATCHES; b++) {
        kl_block blocks[CUT_PER];
        for (uint64_t k = 0; k < CUT_PER; k++) {
            cut_block(b * CUT_PER + k, bytes[k]);
            blocks[k] = (kl_block){bytes[k], CUT_BLOCK};
        }
        uint64_t first = 0;
        assert_int_equal(kl_log_append(log, blocks, CUT_PER, &first), 0);
        assert_int_equal(first, b * CUT_PER);
    }
    assert_int_equal(kl_log_close(log), 0);
    /* docs/FORMAT.md: a 64-byte segment header, then the batches back to back, all of one
       size here: the last starts at 64 + 4 frames. Cut on the first page boundary past its
       header, so the header reads and the body runs past the file. */
    char seg[4096];
    tu_seg_path(seg, sizeof seg, dir, 0, "log");
    uint64_t size = tu_file_size(seg);
    assert_int_equal((size - 64) % CUT_BATCHES, 0);
    uint64_t last = 64 + (CUT_BATCHES - 1) * ((size - 64) / CUT_BATCHES);
    uint64_t cut = (last + BATCH_HDR + CUT_PAGE - 1) / CUT_PAGE * CUT_PAGE;
    assert_true(cut < size);
    tu_truncate(seg, cut);

    log = tu_open_ro(dir);
    const uint64_t n = CUT_BATCHES * CUT_PER, bad = n - CUT_PER;
    assert_int_equal(kl_log_length(log), n);
    for (uint64_t i = 0; i < n; i++) {
        size_t gn = 0;
        int rc = kl_log_get(log, i, got, sizeof got, &gn);
        if (i < bad) {
            assert_int_equal(rc, 0);
            cut_block(i, want);
            assert_int_equal(gn, CUT_BLOCK);
            assert_memory_equal(got, want, CUT_BLOCK);
        } else {
            assert_int_equal(rc, KL_ECORRUPT);
            assert_non_null(strstr(kl_log_last_error(log), "blocks 8..9"));
        }
    }
    for (uint64_t from = 0; from <= bad; from += bad) { /* the batch before it, and the cut one */
        kl_iter *it = NULL;
        kl_record rec;
        assert_int_equal(kl_iter_open(log, from, UINT64_MAX, &it), 0);
        for (uint64_t i = from; i < bad; i++) {
            assert_int_equal(kl_iter_next(it, &rec), 1);
            cut_block(i, want);
            assert_int_equal(rec.index, i);
            assert_int_equal(rec.size, CUT_BLOCK);
            assert_memory_equal(rec.data, want, CUT_BLOCK);
        }
        assert_int_equal(kl_iter_next(it, &rec), KL_ECORRUPT);
        assert_non_null(strstr(kl_log_last_error(log), "segment 00000000000000000000.log"));
        assert_non_null(strstr(kl_log_last_error(log), "blocks 8..9 unreadable"));
        assert_int_equal(kl_iter_next(it, &rec), 0); /* the whole range is skipped: the end */
        kl_iter_close(it);
    }
    assert_int_equal(kl_log_close(log), 0);
    tu_rmrf(root);
    free(root);
    free(dir);
}

int main(void) {
    tu_cli_bin(); /* skip (77) here if the binary is not there */
#define T(f)                                                                                       \
    cmocka_unit_test_setup_teardown(f, tu_case_setup, tu_case_teardown) /* a fresh copy            \
                                                                         */
    const struct CMUnitTest tests[] = {
        T(test_the_intact_log_verifies),
        T(test_a_flipped_bit_in_a_sealed_segment_names_its_block),
        T(test_a_flipped_bit_in_the_active_segment_names_its_block),
        T(test_a_flipped_bit_in_the_first_block_of_a_batch_names_it),
        T(test_a_block_forged_with_its_checksums_is_caught_by_the_tree),
        T(test_a_flipped_lowest_node_hash_names_its_first_block),
        T(test_a_flipped_lowest_node_size_names_its_first_block),
        T(test_a_flipped_parent_names_the_first_block_under_it),
        T(test_a_flipped_full_root_in_the_tree_file_names_its_first_block),
        T(test_a_forged_block_stops_a_repair_of_the_tree),
        T(test_a_flipped_root_in_the_accepted_slot_is_reported),
        T(test_a_flipped_signature_in_the_accepted_slot_is_reported),
        T(test_a_root_changed_under_a_good_checksum_fails_the_signature),
        T(test_a_signature_changed_under_a_good_checksum_fails_it),
        T(test_a_damaged_older_slot_is_reported),
        T(test_both_slots_unsigned_refuse_to_open),
        cmocka_unit_test(test_an_iterator_over_a_cut_active_segment_reports_the_cut),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
