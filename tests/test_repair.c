/*
 * test_repair.c - a tree file whose stored nodes were zeroed (what a file
 * system can leave of a file's blocks after a crash it repaired, or a disk
 * that lost them), and kl_log_repair_tree, which rebuilds them from the
 * blocks (`kappalog verify --repair`).
 *
 * The log: RECORDS blocks of a known stream over several segments, signed
 * with a known key. Each case copies it and zeroes stored nodes. What must
 * hold:
 *   - a reader that needs a zeroed node reports KL_ECORRUPT naming it and
 *     the repair, never a wrong tree: kl_log_tree_hash, a proof's upgrade;
 *     blocks are still served; a consumer cursor does not take the damage
 *     for a log that lost the blocks it read (KL_EFORK);
 *   - kl_log_repair_tree rewrites exactly the zeroed nodes: the tree file is
 *     the intact one byte for byte, verify passes, a second repair finds
 *     nothing to do; a read-only handle gets KL_EREADONLY; a block that
 *     fails its checksum stops the repair with the tree file untouched
 *     (test_tamper.c has the forged block);
 *   - appends on the same handle from another thread during a repair land,
 *     and the longer log verifies;
 *   - every I/O operation of a repair failed in turn (EIO, ENOSPC, a short
 *     write): the repair reports the error and the handle refuses appends
 *     (fail-stop); reopened, every block is there, and a repair on a
 *     healthy backend finishes the job;
 *   - a zeroed tree file header: the depth it names is told from where the
 *     signed roots are (a read-only open reads on and verify names the
 *     header; a writable open writes it again), also with the first page
 *     zeroed (the repair does the nodes), also in logs too small to store
 *     a root, and with every node zeroed; with garbage in the whole file,
 *     every open refuses and changes nothing; a header of a newer version
 *     is refused, never rewritten.
 */
#include "testutil.h"

#include "engine/tree.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SEED     0x2e9a1u
#define MAX_REC  200u
#define RECORDS  5000u
#define KEY_BYTE 0x2eu

static struct {
    tu_cases cs;   /* the intact log (pristine) and this case's copy (dir) */
    uint8_t *tree; /* the intact tree file */
    size_t tree_len;
    uint8_t tree_hash[KL_HASH_BYTES];
} fx;

static void tree_path(char *out, size_t cap, const char *dir) {
    snprintf(out, cap, "%s/tree", dir);
}

static int group_setup(void **state) {
    tu_cases_init(&fx.cs, "repair");
    *state = &fx.cs;
    uint8_t seed[KL_SEED_BYTES];
    kl_config cfg;
    tu_config_small_signed(&cfg, seed, KEY_BYTE);
    tu_create(fx.cs.pristine, &cfg);
    kl_log *log = tu_open(fx.cs.pristine);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, RECORDS, 97), 0);
    assert_int_equal(kl_log_close(log), 0);
    char tree[4096];
    tree_path(tree, sizeof tree, fx.cs.pristine);
    fx.tree = tu_read_file(tree, &fx.tree_len);
    assert_true(fx.tree_len == kl_tree_bytes(RECORDS, KL_TREE_LOW));
    tu_tree t;
    tu_tree_init(&t);
    tu_tree_grow(&t, SEED, MAX_REC, RECORDS);
    tu_tree_hash(&t, fx.tree_hash);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    tu_cases_free(&fx.cs);
    free(fx.tree);
    return 0;
}

/* Zero the stored nodes at positions [from, to) of dir's tree file. */
static void zero_nodes(const char *dir, uint64_t from, uint64_t to) {
    char tree[4096];
    tree_path(tree, sizeof tree, dir);
    size_t n = (size_t)(to - from) * KL_TREE_NODE_BYTES;
    uint8_t *zero = calloc(1, n);
    assert_non_null(zero);
    tu_write_at(tree, kl_tree_off(from), zero, n);
    free(zero);
}

/* Every stored node of the log: positions [0, all). */
static uint64_t all_nodes(void) {
    return kl_tree_count(RECORDS, KL_TREE_LOW);
}

static void expect_intact_tree(const char *dir, const char *what) {
    char tree[4096];
    tree_path(tree, sizeof tree, dir);
    size_t n = 0;
    uint8_t *got = tu_read_file(tree, &n);
    if (n != fx.tree_len || memcmp(got, fx.tree, n) != 0)
        fail_msg("%s: the tree file (%zu bytes) is not the intact one (%zu bytes)", what, n,
                 fx.tree_len);
    free(got);
}

static void expect_blocks(kl_log *log, uint64_t n) {
    for (uint64_t i = 0; i < n; i += 1 + i % 13) {
        uint8_t got[MAX_REC + 8], want[MAX_REC + 8];
        size_t size = 0;
        if (kl_log_get(log, i, got, sizeof got, &size) != 0)
            fail_msg("get %llu: %s", (unsigned long long)i, kl_log_last_error(log));
        size_t wn = tu_record(SEED, i, MAX_REC, want);
        assert_int_equal(size, wn);
        assert_memory_equal(got, want, wn);
    }
}

static void test_zeroed_nodes_are_reported_not_used(void **state) {
    (void)state;
    zero_nodes(fx.cs.dir, 0, all_nodes());
    kl_log *log = tu_open_ro(fx.cs.dir);
    uint8_t th[KL_HASH_BYTES];
    assert_int_equal(kl_log_tree_hash(log, RECORDS, th), KL_ECORRUPT);
    const char *err = kl_log_last_error(log);
    if (!strstr(err, "is all zeros") || !strstr(err, "verify --repair"))
        fail_msg("tree hash: %s", err);
    /* below the lowest stored depth the nodes come from the blocks: no damage there */
    assert_int_equal(kl_log_tree_hash(log, 11, th), 0);
    kl_proof_ask ask = {.upgrade = 1, .upgrade_start = 0, .upgrade_length = RECORDS};
    unsigned char *msg = NULL;
    size_t n = 0;
    assert_int_equal(kl_log_proof(log, &ask, 1, &msg, &n), KL_ECORRUPT);
    assert_null(msg);
    assert_non_null(strstr(kl_log_last_error(log), "is all zeros"));
    expect_blocks(log, RECORDS);
    uint64_t bad = 0;
    assert_int_equal(kl_log_verify(log, NULL, NULL, &bad), KL_EVERIFY);
    assert_int_equal(bad, 0);
    uint64_t rebuilt = 5;
    assert_int_equal(kl_log_repair_tree(log, NULL, NULL, &rebuilt), KL_EREADONLY);
    assert_int_equal(rebuilt, 0);
    assert_int_equal(kl_log_close(log), 0);
}

/* A cursor whose position's tree hash cannot be read goes on: damage is not divergence. */
static void test_a_cursor_does_not_take_the_damage_for_a_lost_tail(void **state) {
    (void)state;
    kl_log *log = tu_open(fx.cs.dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(log, "reader", KL_CURSOR_CREATE, &c), 0);
    assert_int_equal(kl_cursor_commit(c, 3000), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(log), 0);
    zero_nodes(fx.cs.dir, 0, all_nodes());
    log = tu_open(fx.cs.dir);
    int rc = kl_cursor_open(log, "reader", 0, &c);
    if (rc != 0)
        fail_msg("cursor open over a zeroed tree: %d %s", rc, kl_log_last_error(log));
    assert_int_equal(kl_cursor_position(c), 3000);
    kl_cursor_close(c);
    uint64_t rebuilt = 0;
    assert_int_equal(kl_log_repair_tree(log, NULL, NULL, &rebuilt), 0);
    assert_int_equal(rebuilt, all_nodes());
    assert_int_equal(kl_cursor_open(log, "reader", 0, &c), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(log), 0);
}

typedef struct progress_seen {
    uint64_t calls, last, total;
    int backwards;
} progress_seen;

static void on_progress(void *ctx, uint64_t done, uint64_t total) {
    progress_seen *p = ctx;
    p->backwards |= done < p->last || done > total;
    p->calls++;
    p->last = done;
    p->total = total;
}

static void test_the_repair_rewrites_exactly_the_zeroed_nodes(void **state) {
    (void)state;
    /* three runs of them: the first node, a run in the middle, the last two */
    uint64_t all = all_nodes();
    zero_nodes(fx.cs.dir, 0, 1);
    zero_nodes(fx.cs.dir, all / 2, all / 2 + 17);
    zero_nodes(fx.cs.dir, all - 2, all);
    kl_log *log = tu_open(fx.cs.dir);
    uint64_t rebuilt = 0;
    progress_seen p = {0};
    assert_int_equal(kl_log_repair_tree(log, on_progress, &p, &rebuilt), 0);
    assert_int_equal(rebuilt, 1 + 17 + 2);
    assert_false(p.backwards);
    assert_int_equal(p.last, 2 * RECORDS);
    assert_int_equal(p.total, 2 * RECORDS);
    tu_expect_verified(log, "repaired");
    uint8_t th[KL_HASH_BYTES];
    assert_int_equal(kl_log_tree_hash(log, RECORDS, th), 0);
    assert_memory_equal(th, fx.tree_hash, KL_HASH_BYTES);
    /* nothing left to do */
    assert_int_equal(kl_log_repair_tree(log, NULL, NULL, &rebuilt), 0);
    assert_int_equal(rebuilt, 0);
    assert_int_equal(kl_log_close(log), 0);
    expect_intact_tree(fx.cs.dir, "after the repair");
}

static void test_a_damaged_block_stops_the_repair(void **state) {
    (void)state;
    zero_nodes(fx.cs.dir, 10, 20);
    char tree[4096], seg[4096];
    tree_path(tree, sizeof tree, fx.cs.dir);
    size_t before_len = 0, after_len = 0;
    uint8_t *before = tu_read_file(tree, &before_len);
    /* a bit of the first segment's bytes, past its header and its first batch's */
    tu_seg_path(seg, sizeof seg, fx.cs.dir, 0, "log");
    tu_flip(seg, 3000, 0x10);
    kl_log *log = tu_open(fx.cs.dir);
    uint64_t rebuilt = 3;
    assert_int_equal(kl_log_repair_tree(log, NULL, NULL, &rebuilt), KL_ECORRUPT);
    assert_int_equal(rebuilt, 0);
    const char *err = kl_log_last_error(log);
    if (!strstr(err, "cannot be rebuilt from the blocks") || !strstr(err, "checksum"))
        fail_msg("repair over a damaged block: %s", err);
    assert_int_equal(kl_log_close(log), 0);
    uint8_t *after = tu_read_file(tree, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    free(before);
    free(after);
}

typedef struct appender {
    kl_log *log;
    uint64_t upto;
    int rc;
} appender;

static void *append_meanwhile(void *arg) {
    appender *a = arg;
    a->rc = tu_append_range(a->log, SEED, MAX_REC, RECORDS, a->upto, 7);
    return NULL;
}

static void test_appends_go_on_during_a_repair(void **state) {
    (void)state;
    zero_nodes(fx.cs.dir, 0, all_nodes());
    kl_log *log = tu_open(fx.cs.dir);
    appender a = {log, RECORDS + 3000, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_meanwhile, &a), 0);
    uint64_t rebuilt = 0;
    int rc = kl_log_repair_tree(log, NULL, NULL, &rebuilt);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (rc != 0)
        fail_msg("repair beside appends: %s", kl_log_last_error(log));
    assert_int_equal(a.rc, 0);
    assert_int_equal(rebuilt, all_nodes());
    assert_int_equal(kl_log_length(log), RECORDS + 3000);
    tu_expect_verified(log, "repaired beside appends");
    assert_int_equal(kl_log_close(log), 0);
    tu_grow_and_check(fx.cs.dir, SEED, MAX_REC, RECORDS + 3000, RECORDS + 3010, 5);
}

/*
 * The repair of a zeroed tree on the fault backend, with operation `target`
 * (counted from the end of the open) failing as plan says. Returns the ops
 * the repair issued.
 */
static uint64_t repair_with_fault(uint64_t target, int err, int kind, int *reported) {
    kl_fault_plan plan = {.shared = 1};
    kl_io *io = tu_fault_io(&plan);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(fx.cs.dir, NULL, io, &log), 0);
    uint64_t opened = kl_io_fault_ops(io);
    assert_int_equal(kl_log_close(log), 0);
    kl_io_fault_free(io);
    /* the same open again, now with the fault placed after it */
    plan = (kl_fault_plan){
        .shared = 1, .fail_at = target ? opened + target : 0, .fail_errno = err, .fail_kind = kind};
    io = tu_fault_io(&plan);
    assert_int_equal(kl_log_open_io(fx.cs.dir, NULL, io, &log), 0);
    assert_int_equal(kl_io_fault_ops(io), opened);
    uint64_t rebuilt = 0;
    int rc = kl_log_repair_tree(log, NULL, NULL, &rebuilt);
    uint64_t ops = kl_io_fault_ops(io) - opened;
    /* the failed op may be one a fallback covers (an index file that fails to open is
       rebuilt from its segment): then the repair must have done it all */
    if (target && target <= ops && rc != 0) {
        int want = err == ENOSPC ? KL_ENOSPC : KL_EIO;
        if (rc != want)
            fail_msg("repair with op %llu failing: %d (%s), expected %d",
                     (unsigned long long)target, rc, kl_log_last_error(log), want);
        assert_int_equal(rebuilt, 0);
        *reported = 1;
        /* a failed write or sync of the tree file fails the handle; a failed read does not
           need to, but either way nothing is appended wrong */
        kl_block b = {"x", 1};
        if (kl_log_append(log, &b, 1, NULL) == 0)
            assert_int_equal(kl_log_length(log), RECORDS + 1);
    } else {
        assert_int_equal(rc, 0);
        assert_int_equal(rebuilt, all_nodes());
    }
    kl_log_close(log);
    kl_io_fault_free(io);
    return ops;
}

static void check_after_fault(const char *what) {
    kl_log *log = tu_open(fx.cs.dir);
    uint64_t len = kl_log_length(log);
    assert_true(len == RECORDS || len == RECORDS + 1);
    expect_blocks(log, RECORDS);
    uint64_t rebuilt = 0;
    if (kl_log_repair_tree(log, NULL, NULL, &rebuilt) != 0)
        fail_msg("%s: the repair after it: %s", what, kl_log_last_error(log));
    tu_expect_verified(log, what);
    assert_int_equal(kl_log_close(log), 0);
    if (len == RECORDS)
        expect_intact_tree(fx.cs.dir, what);
}

static void test_every_io_of_a_repair_failing_in_turn(void **state) {
    (void)state;
    static const struct {
        int err, kind;
        const char *name;
    } faults[] = {{EIO, KL_FAULT_ERROR, "EIO"},
                  {ENOSPC, KL_FAULT_ERROR, "ENOSPC"},
                  {EIO, KL_FAULT_SHORT, "a short write"}};
    zero_nodes(fx.cs.dir, 0, all_nodes());
    char *zeroed = NULL; /* where every case starts from */
    assert_true(asprintf(&zeroed, "%s/zeroed", fx.cs.root) > 0);
    tu_copy_dir(fx.cs.dir, zeroed);
    int reported = 0;
    uint64_t ops = repair_with_fault(0, 0, 0, &reported);
    assert_true(ops >= 3); /* reads of the nodes, a write per run of them, the sync */
    /* under the sanitizers every third op per fault, each sweep other ones (testutil.h):
       every op still fails once */
    uint64_t cases = 0, failed = 0, stride = tu_sweep_stride();
    for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++)
        for (uint64_t target = 1 + f % stride; target <= ops; target += stride) {
            tu_rmrf(fx.cs.dir);
            tu_copy_dir(zeroed, fx.cs.dir);
            reported = 0;
            repair_with_fault(target, faults[f].err, faults[f].kind, &reported);
            failed += (uint64_t)reported;
            char what[128];
            snprintf(what, sizeof what, "op %llu of %llu failing with %s",
                     (unsigned long long)target, (unsigned long long)ops, faults[f].name);
            check_after_fault(what);
            cases++;
        }
    assert_true(cases >= ops);
    printf("a repair issued %llu I/O operations after the open; of the %llu cases, %llu "
           "reported the failure, the others were covered by a fallback\n",
           (unsigned long long)ops, (unsigned long long)cases, (unsigned long long)failed);
    assert_true(failed >= 3 * 7 / stride); /* at least the tree's read, writes and sync */
    tu_rmrf(zeroed);
    free(zeroed);
}

/* Zero n bytes of dir's tree file from offset 0: its header, and the first nodes if n > 64. */
static void zero_tree_start(const char *dir, size_t n) {
    char tree[4096];
    tree_path(tree, sizeof tree, dir);
    uint8_t *zero = calloc(1, n);
    assert_non_null(zero);
    tu_write_at(tree, 0, zero, n);
    free(zero);
}

/*
 * The tree file's header holds one fact of its own, the depth of the lowest
 * stored nodes, and the signed roots show it: a read-only open reads on
 * (verify names the header), a writable open writes the header again.
 */
static void test_a_zeroed_tree_header_is_told_from_the_signed_roots(void **state) {
    (void)state;
    zero_tree_start(fx.cs.dir, KL_TREE_HEADER_BYTES);
    kl_log *log = tu_open_ro(fx.cs.dir);
    expect_blocks(log, RECORDS);
    uint8_t th[KL_HASH_BYTES];
    assert_int_equal(kl_log_tree_hash(log, RECORDS, th), 0);
    assert_memory_equal(th, fx.tree_hash, KL_HASH_BYTES);
    assert_int_equal(kl_log_verify(log, NULL, NULL, NULL), KL_ECORRUPT);
    assert_non_null(strstr(kl_log_last_error(log), "its header is damaged"));
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(fx.cs.dir);
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    if (!info.recovery || !strstr(info.recovery, "tree file's header was damaged"))
        fail_msg("recovery note: '%s'", info.recovery ? info.recovery : "(none)");
    tu_expect_verified(log, "header written again");
    assert_int_equal(kl_log_close(log), 0);
    expect_intact_tree(fx.cs.dir, "header written again");
}

/* A zeroed first page: the header is written again on open, its nodes by the repair. */
static void test_a_zeroed_first_page_of_the_tree_is_mended_and_repaired(void **state) {
    (void)state;
    zero_tree_start(fx.cs.dir, 4096);
    kl_log *log = tu_open(fx.cs.dir);
    uint64_t rebuilt = 0;
    assert_int_equal(kl_log_repair_tree(log, NULL, NULL, &rebuilt), 0);
    /* the nodes the page held, whole or in part */
    assert_int_equal(rebuilt,
                     (4096 - KL_TREE_HEADER_BYTES + KL_TREE_NODE_BYTES - 1) / KL_TREE_NODE_BYTES);
    tu_expect_verified(log, "first page repaired");
    assert_int_equal(kl_log_close(log), 0);
    expect_intact_tree(fx.cs.dir, "first page repaired");
}

/*
 * Every node zeroed as well: depth 4 contradicts no root (they all read as
 * lost), depth 0 puts them past the file's end, so the header is written
 * again and the repair rebuilds every node.
 */
static void test_a_zeroed_tree_file_is_mended_and_repaired(void **state) {
    (void)state;
    zero_nodes(fx.cs.dir, 0, all_nodes());
    zero_tree_start(fx.cs.dir, KL_TREE_HEADER_BYTES);
    kl_log *log = tu_open(fx.cs.dir);
    uint64_t rebuilt = 0;
    assert_int_equal(kl_log_repair_tree(log, NULL, NULL, &rebuilt), 0);
    assert_int_equal(rebuilt, all_nodes());
    assert_int_equal(kl_log_close(log), 0);
    expect_intact_tree(fx.cs.dir, "a zeroed tree file");
}

/* Garbage everywhere: both depths are contradicted, every open refuses, changing nothing. */
static void test_a_tree_header_nothing_explains_is_refused(void **state) {
    (void)state;
    uint8_t *junk = malloc(fx.tree_len);
    assert_non_null(junk);
    uint64_t rng = 5;
    for (size_t i = 0; i < fx.tree_len; i++)
        junk[i] = (uint8_t)(tu_rand(&rng) | 1); /* never a zero byte */
    char tree[4096];
    tree_path(tree, sizeof tree, fx.cs.dir);
    tu_write_at(tree, 0, junk, fx.tree_len);
    free(junk);
    uint8_t before[KL_HASH_BYTES], after[KL_HASH_BYTES];
    tu_dir_digest(fx.cs.dir, before);
    for (int ro = 0; ro < 2; ro++) {
        kl_open_options o;
        kl_open_options_default(&o);
        o.flags = ro ? KL_OPEN_READONLY : 0;
        kl_log *log = NULL;
        assert_int_equal(kl_log_open(fx.cs.dir, &o, &log), KL_ECORRUPT);
        if (!strstr(kl_last_error(), "cannot be told from where the signed roots are"))
            fail_msg("open: %s", kl_last_error());
    }
    tu_dir_digest(fx.cs.dir, after);
    assert_memory_equal(before, after, KL_HASH_BYTES);
}

/*
 * Small logs (a review's find): with no root stored at depth 4 (under 16
 * blocks, or none at all), or every root stored in the zeroed first page
 * (500 blocks), the depth is the one whose positions contradict no root.
 */
static void test_small_logs_with_a_zeroed_first_page_are_mended(void **state) {
    (void)state;
    static const uint64_t lengths[] = {0, 10, 500};
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        char *dir = tu_new_log("repair-small", KL_FSYNC_ALWAYS);
        kl_log *log = tu_open(dir);
        assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, lengths[k], 7), 0);
        assert_int_equal(kl_log_close(log), 0);
        char tree[4096];
        tree_path(tree, sizeof tree, dir);
        size_t n = 0;
        uint8_t *intact = tu_read_file(tree, &n);
        zero_tree_start(dir, n < 4096 ? n : 4096);
        log = tu_open(dir);
        uint64_t rebuilt = 0;
        if (kl_log_repair_tree(log, NULL, NULL, &rebuilt) != 0)
            fail_msg("%llu blocks: %s", (unsigned long long)lengths[k], kl_log_last_error(log));
        tu_expect_verified(log, "a small log mended");
        assert_int_equal(kl_log_close(log), 0);
        size_t m = 0;
        uint8_t *now = tu_read_file(tree, &m);
        assert_int_equal(m, n);
        assert_memory_equal(now, intact, n);
        free(now);
        free(intact);
        tu_rm_log(dir);
    }
}

/* A header that checks out but names a version this build does not know is never rewritten. */
static void test_a_newer_tree_header_is_refused_not_rewritten(void **state) {
    (void)state;
    char tree[4096];
    tree_path(tree, sizeof tree, fx.cs.dir);
    uint8_t h[KL_TREE_HEADER_BYTES];
    memcpy(h, fx.tree, sizeof h);
    h[8] = 3; /* version (u32 little-endian at 8; docs/FORMAT.md) */
    uint64_t sum = XXH3_64bits(h, 56);
    memcpy(h + 56, &sum, 8);
    tu_write_at(tree, 0, h, sizeof h);
    uint8_t before[KL_HASH_BYTES], after[KL_HASH_BYTES];
    tu_dir_digest(fx.cs.dir, before);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open(fx.cs.dir, NULL, &log), KL_ECORRUPT);
    assert_non_null(strstr(kl_last_error(), "version 3"));
    tu_dir_digest(fx.cs.dir, after);
    assert_memory_equal(before, after, KL_HASH_BYTES);
}

int main(void) {
#define T(f)                                                                                       \
    cmocka_unit_test_setup_teardown(f, tu_case_setup, tu_case_teardown) /* a fresh copy            \
                                                                         */
    const struct CMUnitTest tests[] = {
        T(test_zeroed_nodes_are_reported_not_used),
        T(test_a_cursor_does_not_take_the_damage_for_a_lost_tail),
        T(test_the_repair_rewrites_exactly_the_zeroed_nodes),
        T(test_a_damaged_block_stops_the_repair),
        T(test_appends_go_on_during_a_repair),
        T(test_every_io_of_a_repair_failing_in_turn),
        T(test_a_zeroed_tree_header_is_told_from_the_signed_roots),
        T(test_a_zeroed_first_page_of_the_tree_is_mended_and_repaired),
        T(test_a_zeroed_tree_file_is_mended_and_repaired),
        T(test_a_tree_header_nothing_explains_is_refused),
        T(test_small_logs_with_a_zeroed_first_page_are_mended),
        T(test_a_newer_tree_header_is_refused_not_rewritten),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
