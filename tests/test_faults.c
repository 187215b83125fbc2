/*
 * test_faults.c - every I/O operation of open, append, roll, read and close
 * failed in turn: with EIO, with ENOSPC, and as a short write.
 *
 * A dry run counts the operations of the script (open a log that already
 * holds data, append batches across several segment rolls, one of them of
 * BIG_BATCH records, read some blocks, close). Then for each operation index
 * N the script runs with operation N failing. What must hold:
 *   - the call during which the failure happened either reports it (the
 *     injected code: KL_EIO or KL_ENOSPC) or, if it succeeded, lost nothing
 *     (the failed operation was on derived data, such as an index rewrite);
 *   - after a failed append the handle is failed for good: the next append
 *     fails too (fail-stop, never a retried sync);
 *   - reopening on a real backend shows exactly a committed prefix holding
 *     every acknowledged record, and appending goes on.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED      0xfa017u
#define MAX_REC   2000u
#define PREFILL   100u
#define APPENDS   30u
#define MAX_BATCH 16u
/* one append of the script is this big: a commit of 32 KiB and more, whose
   tree is built as complete subtrees (tree.h, kl_tree_build_spans) */
#define BIG_BATCH 300u

typedef struct outcome {
    uint64_t acked, attempted;
    int failed_call_reported; /* the call that hit the fault returned an error */
    int hit;                  /* the fault happened during a call */
    int code;                 /* what that call returned */
    int failstop_ok;          /* after a failed append, the next one failed too */
} outcome;

static char *make_log(void) {
    char *sub = tu_new_log("faults", KL_FSYNC_ALWAYS);
    kl_log *log = tu_open(sub);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, PREFILL, 10), 0);
    assert_int_equal(kl_log_close(log), 0);
    return sub;
}

/* Did op `target` happen between ops `before` and now? Record what the call said. */
static void note_call(kl_io *io, uint64_t target, uint64_t before, int rc, outcome *o) {
    uint64_t after = kl_io_fault_ops(io);
    if (o->hit || target <= before || target > after)
        return;
    o->hit = 1;
    o->code = rc;
    o->failed_call_reported = rc != 0;
}

/*
 * The script under `never` (test_..._under_never_...): twice the appends, so
 * that more segments are sealed between syncs than keep their descriptor
 * (commit.c, UNSYNCED_FDS), then a kl_log_sync, which reaches the others
 * through their paths, before the close.
 */
static int never_mode;

static void script(const char *dir, kl_io *io, uint64_t target, outcome *o) {
    memset(o, 0, sizeof *o);
    o->acked = o->attempted = PREFILL;
    o->failstop_ok = 1;
    kl_log *log = NULL;
    kl_open_options opts;
    kl_open_options_default(&opts);
    if (never_mode) {
        opts.fsync_override = 1;
        opts.fsync_mode = KL_FSYNC_NEVER;
    }
    unsigned appends = never_mode ? 4 * APPENDS : APPENDS;
    uint64_t before = kl_io_fault_ops(io);
    int rc = kl_log_open_io(dir, &opts, io, &log);
    note_call(io, target, before, rc, o);
    if (rc != 0)
        return;
    /* an open that succeeds must not have lost anything (records are a function of their
       index, so a lost tail appended again would look the same later) */
    if (kl_log_length(log) < o->acked)
        fail_msg("open with op %llu failing succeeded with length %llu < %llu",
                 (unsigned long long)target, (unsigned long long)kl_log_length(log),
                 (unsigned long long)o->acked);
    uint64_t rng = 99;
    static uint8_t buf[BIG_BATCH][MAX_REC];
    static kl_block blocks[BIG_BATCH];
    for (unsigned a = 0; a < appends; a++) {
        uint64_t first = kl_log_length(log);
        size_t n = 1 + (size_t)(tu_rand(&rng) % MAX_BATCH);
        if (a == appends / 2)
            n = BIG_BATCH;
        for (size_t k = 0; k < n; k++) {
            blocks[k].data = buf[k];
            blocks[k].size = tu_record(SEED, first + k, MAX_REC, buf[k]);
        }
        o->attempted = first + n;
        before = kl_io_fault_ops(io);
        rc = kl_log_append(log, blocks, n, NULL);
        note_call(io, target, before, rc, o);
        if (rc != 0) {
            /* fail-stop: the handle refuses further writes */
            o->failstop_ok = kl_log_append(log, blocks, 1, NULL) != 0;
            break;
        }
        o->acked = first + n;
    }
    if (never_mode && o->acked == o->attempted) {
        before = kl_io_fault_ops(io);
        rc = kl_log_sync(log);
        note_call(io, target, before, rc, o);
    }
    for (uint64_t i = 0; i < o->acked; i += 37) {
        uint8_t got[MAX_REC];
        size_t size = 0;
        before = kl_io_fault_ops(io);
        rc = kl_log_get(log, i, got, sizeof got, &size);
        int during = target > before && target <= kl_io_fault_ops(io);
        note_call(io, target, before, rc, o);
        if (rc != 0 && !during) /* a failed read leaves no lasting damage */
            fail_msg("get(%llu) failed after the fault at op %llu had passed: %s",
                     (unsigned long long)i, (unsigned long long)target, kl_last_error());
        if (rc == 0) { /* whatever it serves must be right */
            uint8_t want[MAX_REC];
            size_t wn = tu_record(SEED, i, MAX_REC, want);
            assert_int_equal(size, wn);
            assert_memory_equal(got, want, wn);
        }
    }
    before = kl_io_fault_ops(io);
    rc = kl_log_close(log);
    note_call(io, target, before, rc, o);
}

static void check_reopen(const char *dir, const outcome *o, const char *what) {
    kl_log *log = NULL;
    int rc = kl_log_open_io(dir, NULL, tu_io(), &log);
    if (rc != 0)
        fail_msg("%s: reopen failed: %s", what, kl_last_error());
    uint64_t len = kl_log_length(log);
    if (len < o->acked || len > o->attempted)
        fail_msg("%s: length %llu, acknowledged %llu, attempted %llu", what,
                 (unsigned long long)len, (unsigned long long)o->acked,
                 (unsigned long long)o->attempted);
    assert_int_equal(kl_log_close(log), 0);
    tu_grow_and_check(dir, SEED, MAX_REC, len, len + 4, 2);
}

static uint64_t count_ops(void) {
    char *dir = make_log();
    kl_fault_plan plan = {.shared = 1};
    kl_io *io = tu_fault_io(&plan);
    outcome o;
    script(dir, io, 0, &o);
    assert_int_equal(o.acked, o.attempted);
    uint64_t n = kl_io_fault_ops(io);
    kl_io_fault_free(io);
    tu_rm_log(dir);
    return n;
}

/*
 * Fail every operation in turn with this error (the sweep `which` of three).
 * A sampled sweep (stride 3: the sanitizers' KL_TEST_SWEEP_STRIDE, or the
 * posix run's KL_TEST_FAULT_SPARSE; testutil.h) takes every third
 * operation, the three sweeps different ones: every operation still fails
 * once, with one of the three errors.
 */
static void fail_each(int err, int kind, unsigned which) {
    uint64_t total = count_ops(), stride = tu_fault_sweep_stride();
    unsigned reported = 0, tolerated = 0, points = 0;
    for (uint64_t n = 1 + which % stride; n <= total; n += stride, points++) {
        char *dir = make_log();
        kl_fault_plan plan = {.fail_at = n, .fail_errno = err, .fail_kind = kind, .shared = 1};
        kl_io *io = tu_fault_io(&plan);
        outcome o;
        script(dir, io, n, &o);
        kl_io_fault_free(io);
        char what[96];
        snprintf(what, sizeof what, "errno %d kind %d at op %llu", err, kind,
                 (unsigned long long)n);
        if (o.failed_call_reported) {
            reported++;
            int want = err == ENOSPC ? KL_ENOSPC : KL_EIO;
            if (o.code != want && o.code != KL_ECORRUPT && o.code != KL_ENOTFOUND)
                fail_msg("%s: the call returned %d (%s), expected %d", what, o.code,
                         kl_last_error(), want);
        } else {
            tolerated++;
            if (getenv("KL_TEST_VERBOSE"))
                print_message("absorbed: op %llu\n", (unsigned long long)n);
        }
        if (!o.failstop_ok)
            fail_msg("%s: an append after a failed commit succeeded", what);
        check_reopen(dir, &o, what);
        tu_rm_log(dir);
    }
    print_message("errno %d kind %d: %u of %llu operations failed in turn, %u reported, "
                  "%u absorbed (derived data)\n",
                  err, kind, points, (unsigned long long)total, reported, tolerated);
    assert_true(points >= total / stride);
    assert_true(reported > points / 2);
}

static void test_every_operation_failing_with_eio_leaves_a_committed_prefix(void **state) {
    (void)state;
    fail_each(EIO, KL_FAULT_ERROR, 0);
}

static void test_every_operation_failing_with_enospc_leaves_a_committed_prefix(void **state) {
    (void)state;
    fail_each(ENOSPC, KL_FAULT_ERROR, 1);
}

static void test_every_short_write_leaves_a_committed_prefix(void **state) {
    (void)state;
    fail_each(EIO, KL_FAULT_SHORT, 2);
}

static void test_every_operation_failing_under_never_across_many_rolls(void **state) {
    (void)state;
    never_mode = 1;
    fail_each(EIO, KL_FAULT_ERROR, 0);
    never_mode = 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_operation_failing_with_eio_leaves_a_committed_prefix),
        cmocka_unit_test(test_every_operation_failing_with_enospc_leaves_a_committed_prefix),
        cmocka_unit_test(test_every_short_write_leaves_a_committed_prefix),
        cmocka_unit_test(test_every_operation_failing_under_never_across_many_rolls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
