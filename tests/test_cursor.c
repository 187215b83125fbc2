/*
 * test_cursor.c - named durable consumer cursors (consumers/cursor.c):
 * positions survive reopening, a torn or damaged slot falls back to the
 * other one, a failed write or a power loss at any point leaves the old or
 * the new position (never another), a truncation of the log is reported as
 * a fork change, a log that lost blocks a cursor read (a power loss under
 * `never`) is reported (past the end, then by its tree hash), one consumer
 * per cursor, bad names and positions past the end are refused without
 * changing anything, and a version 1 slot is still read.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmocka.h>

#include "engine/io/io_fault.h"
#include "engine/log_internal.h"
#include "engine/util.h"
#include "testutil.h"

#define SEED     5
#define MAX_SIZE 100

static char *log_with(uint64_t n) {
    char *dir = tu_new_log("cursor", KL_FSYNC_NEVER);
    kl_log *w = tu_open(dir);
    assert_int_equal(tu_append_range(w, SEED, MAX_SIZE, 0, n, 10), 0);
    assert_int_equal(kl_log_close(w), 0);
    return dir;
}

static void cursor_file(const char *dir, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/consumers/%s.cursor", dir, name);
}

/* The position of cursor `name`, through a fresh read-only handle. */
static uint64_t position_of(const char *dir, const char *name) {
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(r, name, 0, &c), 0);
    uint64_t p = kl_cursor_position(c);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    return p;
}

static void test_a_cursor_keeps_its_position_across_reopens(void **st) {
    (void)st;
    char *dir = log_with(100);
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(r, "views.main", 0, &c), KL_ENOTFOUND);
    assert_null(c);
    assert_int_equal(kl_cursor_open(r, "views.main", KL_CURSOR_CREATE, &c), 0);
    assert_int_equal(kl_cursor_position(c), 0);
    assert_int_equal(kl_cursor_fork(c), 0);
    for (uint64_t p = 1; p <= 100; p += 7)
        assert_int_equal(kl_cursor_commit(c, p), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    assert_int_equal(position_of(dir, "views.main"), 99);
    tu_rm_log(dir);
}

static void test_bad_names_and_positions_past_the_end_change_nothing(void **st) {
    (void)st;
    char *dir = log_with(10);
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    const char *bad[] = {"",
                         ".hidden",
                         "a/b",
                         "../x",
                         "sp ace",
                         "n\nl",
                         "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kl_cursor_open(r, bad[i], KL_CURSOR_CREATE, &c), KL_EINVAL);
        assert_null(c);
    }
    assert_int_equal(kl_cursor_open(r, "ok-name_1.x", KL_CURSOR_CREATE, &c), 0);
    assert_int_equal(kl_cursor_commit(c, 4), 0);
    assert_int_equal(kl_cursor_commit(c, 11), KL_EINVAL);
    assert_non_null(strstr(kl_log_last_error(r), "past the log's length 10"));
    assert_int_equal(kl_cursor_position(c), 4);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    assert_int_equal(position_of(dir, "ok-name_1.x"), 4);
    kl_cursor_info *v = NULL;
    size_t n = 0;
    r = tu_open_ro(dir);
    assert_int_equal(kl_cursor_list(r, &v, &n), 0);
    assert_int_equal(n, 1); /* the refused names left no files behind */
    free(v);
    assert_int_equal(kl_log_close(r), 0);
    tu_rm_log(dir);
}

static void test_one_consumer_per_cursor(void **st) {
    (void)st;
    char *dir = log_with(10);
    kl_log *r = tu_open_ro(dir);
    kl_cursor *a = NULL, *b = NULL;
    assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &a), 0);
    assert_int_equal(kl_cursor_open(r, "c", 0, &b), KL_EBUSY);
    assert_null(b);
    assert_int_equal(kl_cursor_delete(r, "c"), KL_EBUSY);
    kl_cursor_close(a);
    assert_int_equal(kl_cursor_open(r, "c", 0, &b), 0);
    kl_cursor_close(b);
    assert_int_equal(kl_cursor_delete(r, "c"), 0);
    assert_int_equal(kl_cursor_delete(r, "c"), KL_ENOTFOUND);
    assert_int_equal(kl_log_close(r), 0);
    tu_rm_log(dir);
}

static void test_a_damaged_slot_falls_back_and_two_are_reported(void **st) {
    (void)st;
    char *dir = log_with(50);
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &c), 0);
    assert_int_equal(kl_cursor_commit(c, 20), 0); /* slot 1 */
    assert_int_equal(kl_cursor_commit(c, 30), 0); /* slot 0 */
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    char path[4096];
    cursor_file(dir, "c", path, sizeof path);
    tu_flip(path, 24, 0x01); /* slot 0's position: its checksum fails */
    assert_int_equal(position_of(dir, "c"), 20);
    tu_flip(path, 512 + 3, 0x80); /* slot 1's magic */
    r = tu_open_ro(dir);
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), KL_ECORRUPT);
    assert_non_null(strstr(kl_log_last_error(r), "neither slot checks out"));
    kl_cursor_info *v = NULL;
    size_t n = 0;
    assert_int_equal(kl_cursor_list(r, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_true(v[0].damaged);
    free(v);
    assert_int_equal(kl_log_close(r), 0);
    tu_truncate(path, 100); /* torn short: still damaged, never a crash */
    r = tu_open_ro(dir);
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), KL_ECORRUPT);
    /* a damaged cursor can be deleted (under its lock, without reading its slots) */
    assert_int_equal(kl_cursor_delete(r, "c"), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), KL_ENOTFOUND);
    assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &c), 0);
    assert_int_equal(kl_cursor_position(c), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    tu_rm_log(dir);
}

/* Consumers racing to create one new cursor: see the test below. */
typedef struct creator {
    kl_log *log;
    const char *name;
    pthread_barrier_t *start, *done;
    int rc;
    uint64_t position; /* what the one that got it committed */
} creator;

static void *create_one(void *arg) {
    creator *k = arg;
    kl_cursor *c = NULL;
    pthread_barrier_wait(k->start);
    k->rc = kl_cursor_open(k->log, k->name, KL_CURSOR_CREATE, &c);
    if (k->rc == 0) {
        k->rc = kl_cursor_commit(c, k->position);
        if (k->rc == 0)
            k->rc = 1; /* this one holds the cursor */
    }
    pthread_barrier_wait(k->done); /* the holder keeps it until every other open returned */
    kl_cursor_close(c);
    return NULL;
}

static void test_consumers_creating_one_cursor_at_once_get_it_once(void **st) {
    (void)st;
    char *dir = log_with(100);
    enum { THREADS = 4, ROUNDS = 40 };
    kl_log *logs[THREADS];
    for (int t = 0; t < THREADS; t++)
        logs[t] = tu_open_ro(dir);
    for (int round = 0; round < ROUNDS; round++) {
        char name[32];
        snprintf(name, sizeof name, "new%d", round);
        pthread_barrier_t start, done;
        pthread_barrier_init(&start, NULL, THREADS);
        pthread_barrier_init(&done, NULL, THREADS);
        creator k[THREADS];
        pthread_t th[THREADS];
        for (int t = 0; t < THREADS; t++) {
            k[t] = (creator){logs[t], name, &start, &done, 0, (uint64_t)(10 + t)};
            assert_int_equal(pthread_create(&th[t], NULL, create_one, &k[t]), 0);
        }
        int holders = 0;
        uint64_t held = 0;
        for (int t = 0; t < THREADS; t++) {
            pthread_join(th[t], NULL);
            if (k[t].rc == 1) {
                holders++;
                held = k[t].position;
            } else {
                /* the others are told it is in use: never a missing file or another error */
                assert_int_equal(k[t].rc, KL_EBUSY);
            }
        }
        pthread_barrier_destroy(&start);
        pthread_barrier_destroy(&done);
        assert_int_equal(holders, 1);
        /* the holder's commit is in the file the name leads to (no late create replaced it) */
        assert_int_equal(position_of(dir, name), held);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(kl_log_close(logs[t]), 0);
    /* no temporary file of a creator is left behind */
    char cdir[4096];
    snprintf(cdir, sizeof cdir, "%s/consumers", dir);
    DIR *d = opendir(cdir);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') {
            assert_null(strstr(e->d_name, ".tmp"));
            files++;
        }
    closedir(d);
    assert_int_equal(files, ROUNDS);
    tu_rm_log(dir);
}

static void test_a_truncation_is_reported_as_a_fork_change(void **st) {
    (void)st;
    char *dir = log_with(100);
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &c), 0);
    assert_int_equal(kl_cursor_commit(c, 80), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    assert_int_equal(kl_truncate(dir, 60, NULL), 0);
    r = tu_open_ro(dir);
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), KL_EFORK);
    assert_non_null(c); /* it opens, to report and to be moved */
    assert_non_null(strstr(kl_log_last_error(r), "block 80 of fork 0"));
    assert_int_equal(kl_cursor_position(c), 80);
    assert_int_equal(kl_cursor_fork(c), 0);
    assert_int_equal(kl_cursor_commit(c, 60), 0);
    assert_int_equal(kl_cursor_fork(c), 1);
    kl_cursor_close(c);
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), 0);
    assert_int_equal(kl_cursor_position(c), 60);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    tu_rm_log(dir);
}

/*
 * A read-only handle opened before a truncation and new appends: the
 * cursor's tree hash differs through it, and the open says the log was
 * truncated (what happened), not that a crash lost blocks.
 */
static void test_a_stale_handle_reports_the_truncation_not_a_crash(void **st) {
    (void)st;
    char *dir = log_with(100);
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &c), 0);
    assert_int_equal(kl_cursor_commit(c, 90), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_truncate(dir, 50, NULL), 0);
    kl_log *w = tu_open(dir);
    assert_int_equal(tu_append_range(w, SEED + 1, MAX_SIZE, 50, 110, 10), 0);
    assert_int_equal(kl_log_close(w), 0);
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), KL_EFORK);
    assert_non_null(strstr(kl_log_last_error(r), "truncated"));
    assert_null(strstr(kl_log_last_error(r), "crash"));
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    tu_rm_log(dir);
}

/*
 * The same with the cursor past the truncated log's new length (a review's
 * find): through the stale handle's old length, the tree hash at the cursor
 * reads past the new tree (beyond the tree file's end once the writer
 * closed; while it is open, maybe the space it keeps zeroed ahead), which
 * reads as damage, not as another tree. The refresh must still find the
 * truncation, with the writer closed and with it still open.
 */
static void test_a_stale_handle_past_the_new_length_reports_the_truncation(void **st) {
    (void)st;
    for (int live = 0; live < 2; live++) {
        char *dir = log_with(3200);
        kl_log *r = tu_open_ro(dir);
        kl_cursor *c = NULL;
        assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &c), 0);
        assert_int_equal(kl_cursor_commit(c, 3200), 0);
        kl_cursor_close(c);
        assert_int_equal(kl_truncate(dir, 100, NULL), 0);
        kl_log *w = tu_open(dir);
        assert_int_equal(tu_append_range(w, SEED + 1, MAX_SIZE, 100, 420, 40), 0);
        if (!live)
            assert_int_equal(kl_log_close(w), 0);
        int rc = kl_cursor_open(r, "c", 0, &c);
        if (rc != KL_EFORK || !strstr(kl_log_last_error(r), "truncated"))
            fail_msg("writer %s: cursor open = %d (%s), expected the truncation",
                     live ? "open" : "closed", rc, kl_log_last_error(r));
        kl_cursor_close(c);
        if (live)
            assert_int_equal(kl_log_close(w), 0);
        assert_int_equal(kl_log_close(r), 0);
        tu_rm_log(dir);
    }
}

/* Commit 10 then 20 on a fault backend failing (or crashing at) op k; the cursor is 10 or 20. */
static int commit_with_fault(const char *dir, uint64_t k, int power, uint64_t *pos) {
    kl_fault_plan plan = {.fail_at = power ? 0 : k,
                          .crash_after = power ? k : 0,
                          .track_power = power,
                          .shared = 1,
                          .seed = k};
    kl_io *io = tu_fault_io(&plan);
    kl_open_options opts;
    kl_open_options_default(&opts);
    opts.flags |= KL_OPEN_READONLY;
    kl_log *r = NULL;
    int rc = kl_log_open_io(dir, &opts, io, &r);
    kl_cursor *c = NULL;
    if (rc == 0)
        rc = kl_cursor_open(r, "c", 0, &c);
    if (rc == 0)
        rc = kl_cursor_commit(c, 10);
    if (rc == 0)
        rc = kl_cursor_commit(c, 20);
    kl_cursor_close(c);
    kl_log_close(r);
    uint64_t ops = kl_io_fault_ops(io);
    if (power)
        assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_TORN), 0);
    kl_io_fault_free(io);
    *pos = position_of(dir, "c");
    return ops > k ? 1 : 0; /* more ops to try */
}

static void test_a_failed_write_or_power_loss_leaves_the_old_or_new_position(void **st) {
    (void)st;
    char *dir = log_with(30);
    for (int power = 0; power <= 1; power++) {
        int more = 1;
        for (uint64_t k = 1; more && k < 200; k++) {
            kl_log *r = tu_open_ro(dir);
            kl_cursor *c = NULL;
            assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &c), 0);
            assert_int_equal(kl_cursor_commit(c, 5), 0);
            kl_cursor_close(c);
            assert_int_equal(kl_log_close(r), 0);
            uint64_t pos = 0;
            more = commit_with_fault(dir, k, power, &pos);
            if (pos != 5 && pos != 10 && pos != 20)
                fail_msg("fault at op %llu (power %d) left position %llu", (unsigned long long)k,
                         power, (unsigned long long)pos);
        }
        assert_false(more); /* every op of the sequence was failed once */
    }
    tu_rm_log(dir);
}

/* A cursor's open on dir: its return code, and the log's error text in err. */
static int open_cursor(const char *dir, char *err, size_t cap) {
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    int rc = kl_cursor_open(r, "c", 0, &c);
    snprintf(err, cap, "%s", kl_log_last_error(r));
    if (rc == 0 || rc == KL_EFORK)
        assert_int_equal(kl_cursor_position(c), 40); /* it opens, to report and to be moved */
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    return rc;
}

static int cursor_diverged(const char *dir) {
    kl_log *r = tu_open_ro(dir);
    kl_cursor_info *v = NULL;
    size_t n = 0;
    assert_int_equal(kl_cursor_list(r, &v, &n), 0);
    assert_int_equal(n, 1);
    int d = v[0].diverged;
    assert_false(v[0].damaged);
    free(v);
    assert_int_equal(kl_log_close(r), 0);
    return d;
}

/*
 * Under `never` the cursor reads and commits (synced) past what the log
 * has synced; a power loss takes the log back to 20 blocks. The cursor is
 * reported past the end; once other records fill blocks 20..39 it is
 * reported as diverged (tree hash); the same records appended again are
 * what it read, and it goes on.
 */
static void test_a_log_that_lost_what_a_cursor_read_is_reported(void **st) {
    (void)st;
    char *dir = log_with(20);
    kl_log *w = NULL, *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(r, "c", KL_CURSOR_CREATE, &c), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);

    kl_fault_plan plan = {.track_power = 1, .skip_real_sync = 1, .shared = 1};
    kl_io *io = tu_fault_io(&plan);
    kl_open_options opts;
    kl_open_options_default(&opts);
    assert_int_equal(kl_log_open_io(dir, &opts, io, &w), 0);
    assert_int_equal(tu_append_range(w, SEED, MAX_SIZE, 20, 40, 10), 0);
    assert_int_equal(kl_cursor_open(w, "c", 0, &c), 0);
    assert_int_equal(kl_cursor_commit(c, 40), 0); /* the cursor's commit is synced */
    kl_cursor_close(c);
    kl_io_fault_crash_now(io);
    kl_log_close(w); /* fails: the machine is gone */
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_io_fault_free(io);

    w = tu_open(dir); /* recovery */
    assert_int_equal(kl_log_length(w), 20);
    assert_int_equal(kl_log_close(w), 0);
    char err[512];
    assert_int_equal(open_cursor(dir, err, sizeof err), KL_EFORK);
    assert_non_null(strstr(err, "cursor 'c' is at block 40, but the log has 20 blocks"));

    char *tmp = tu_tmpdir("cursor-same"), same[4200];
    snprintf(same, sizeof same, "%s/log", tmp);
    tu_copy_dir(dir, same);
    w = tu_open(same); /* the same records again: what the cursor read */
    assert_int_equal(tu_append_range(w, SEED, MAX_SIZE, 20, 40, 10), 0);
    assert_int_equal(kl_log_close(w), 0);
    assert_int_equal(open_cursor(same, err, sizeof err), 0);
    assert_false(cursor_diverged(same));
    tu_rmrf(tmp);
    free(tmp);

    w = tu_open(dir); /* other records in blocks 20..39 */
    assert_int_equal(tu_append_range(w, SEED + 1, MAX_SIZE, 20, 40, 10), 0);
    assert_int_equal(kl_log_close(w), 0);
    assert_int_equal(open_cursor(dir, err, sizeof err), KL_EFORK);
    assert_non_null(strstr(err, "the log's first 40 blocks are not the ones it read"));
    assert_true(cursor_diverged(dir));
    r = tu_open_ro(dir); /* a commit moves it, and it opens again */
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), KL_EFORK);
    assert_int_equal(kl_cursor_commit(c, 40), 0);
    kl_cursor_close(c);
    assert_int_equal(kl_log_close(r), 0);
    assert_int_equal(open_cursor(dir, err, sizeof err), 0);
    assert_false(cursor_diverged(dir));
    tu_rm_log(dir);
}

/* A slot of version 1 (before the tree hash) is read, without that check. */
static void test_a_version_1_cursor_is_read(void **st) {
    (void)st;
    char *dir = log_with(50);
    uint8_t b[1024] = {0};
    memcpy(b, "KLCURSOR", 8);
    kl_store32(b + 8, 1);
    kl_store64(b + 16, 3);  /* sequence */
    kl_store64(b + 24, 40); /* position */
    kl_store64(b + 56, XXH3_64bits(b, 56));
    char path[4200];
    snprintf(path, sizeof path, "%s/consumers", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    cursor_file(dir, "c", path, sizeof path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, sizeof b, f), sizeof b);
    assert_int_equal(fclose(f), 0);
    char err[512];
    assert_int_equal(open_cursor(dir, err, sizeof err), 0);
    assert_false(cursor_diverged(dir));
    b[24] ^= 1; /* a version 1 slot's checksum still counts */
    f = fopen(path, "wb");
    assert_int_equal(fwrite(b, 1, sizeof b, f), sizeof b);
    assert_int_equal(fclose(f), 0);
    kl_log *r = tu_open_ro(dir);
    kl_cursor *c = NULL;
    assert_int_equal(kl_cursor_open(r, "c", 0, &c), KL_ECORRUPT);
    assert_int_equal(kl_log_close(r), 0);
    tu_rm_log(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_cursor_keeps_its_position_across_reopens),
        cmocka_unit_test(test_bad_names_and_positions_past_the_end_change_nothing),
        cmocka_unit_test(test_one_consumer_per_cursor),
        cmocka_unit_test(test_a_damaged_slot_falls_back_and_two_are_reported),
        cmocka_unit_test(test_consumers_creating_one_cursor_at_once_get_it_once),
        cmocka_unit_test(test_a_truncation_is_reported_as_a_fork_change),
        cmocka_unit_test(test_a_stale_handle_reports_the_truncation_not_a_crash),
        cmocka_unit_test(test_a_stale_handle_past_the_new_length_reports_the_truncation),
        cmocka_unit_test(test_a_failed_write_or_power_loss_leaves_the_old_or_new_position),
        cmocka_unit_test(test_a_log_that_lost_what_a_cursor_read_is_reported),
        cmocka_unit_test(test_a_version_1_cursor_is_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
