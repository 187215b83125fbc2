/*
 * test_recovery.c - what opening a log does to what it finds: torn and
 * garbage tails cut, a newer header slot refused when its data is not
 * there (and overwritten), stray segment files removed, read-only opens
 * that change nothing, the writer's lock, and an open whose cost does not
 * grow with the log.
 */
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/frame.h"
#include "engine/header.h"
#include "engine/segment.h"
#include "engine/util.h"

#define SEED    0x2ec0u
#define MAX_REC 700u

typedef struct fixture {
    char *root;
    char *dir;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_new_log("recovery", KL_FSYNC_ALWAYS);
    f->root = strndup(f->dir, (size_t)(strrchr(f->dir, '/') - f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rm_log(f->dir);
    free(f->root);
    free(f);
    return 0;
}

/* Fill with n records in batches of 5, close; returns the active segment's first index. */
static uint64_t fill(const char *dir, uint64_t n) {
    kl_log *log = tu_open(dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, kl_log_length(log), n, 5), 0);
    uint64_t active = log->segs[log->nsegs - 1]->first;
    assert_int_equal(kl_log_close(log), 0);
    return active;
}

static void append_bytes(const char *path, const void *buf, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    close(fd);
}

static void read_slots(const char *dir, kl_slot s[2], int valid[2]) {
    char path[4096];
    snprintf(path, sizeof path, "%s/header", dir);
    uint8_t buf[KL_HDR_FILE_BYTES];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, sizeof buf, 0), (ssize_t)sizeof buf);
    close(fd);
    for (int i = 0; i < 2; i++)
        valid[i] = kl_slot_decode(buf + i * KL_HDR_SLOT_BYTES, &s[i]) == 0;
}

static void test_garbage_after_the_committed_end_is_cut(void **state) {
    fixture *f = *state;
    uint64_t active = fill(f->dir, 300);
    char seg[4096];
    tu_seg_path(seg, sizeof seg, f->dir, active, "log");
    uint64_t size = tu_file_size(seg);
    uint8_t junk[3000];
    uint64_t st = 5;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)tu_rand(&st);
    append_bytes(seg, junk, sizeof junk);
    kl_log *log = tu_open(f->dir);
    assert_int_equal(tu_file_size(seg), size);
    assert_int_equal(kl_log_close(log), 0);
    tu_grow_and_check(f->dir, SEED, MAX_REC, 300, 320, 3);
}

static void test_a_torn_batch_at_the_tail_is_cut(void **state) {
    fixture *f = *state;
    uint64_t active = fill(f->dir, 50);
    char seg[4096];
    tu_seg_path(seg, sizeof seg, f->dir, active, "log");
    uint64_t size = tu_file_size(seg);
    /* A well-formed batch for block 50, of which only the first half reached the disk. */
    uint8_t frame[64 + 8 + 4 + 400];
    uint8_t data[400];
    memset(data, 'x', sizeof data);
    kl_block b = {data, sizeof data};
    size_t n = kl_batch_frame(frame, 50, &b, 1, sizeof data, 1);
    append_bytes(seg, frame, n / 2);
    kl_log *log = tu_open(f->dir);
    assert_int_equal(kl_log_length(log), 50);
    assert_int_equal(tu_file_size(seg), size);
    tu_expect_records(log, SEED, MAX_REC, 50);
    assert_int_equal(kl_log_close(log), 0);
}

static void test_a_newer_slot_whose_data_is_missing_is_refused_and_overwritten(void **state) {
    fixture *f = *state;
    fill(f->dir, 35);                                    /* closed: both slots say 35 */
    tu_append_and_die(f->dir, SEED, MAX_REC, 35, 40, 5); /* one more commit, then a crash */
    kl_log *probe = tu_open_ro(f->dir);
    uint64_t active = probe->segs[probe->nsegs - 1]->first;
    assert_int_equal(kl_log_close(probe), 0);
    kl_slot s[2];
    int valid[2];
    read_slots(f->dir, s, valid);
    assert_true(valid[0] && valid[1]);
    int newer = s[1].seq > s[0].seq;
    assert_int_equal(s[newer].length, 40);
    assert_int_equal(s[1 - newer].length, 35);
    /* The last commit's batch never reached the disk: cut it off the segment. */
    char seg[4096];
    tu_seg_path(seg, sizeof seg, f->dir, active, "log");
    tu_truncate(seg, s[1 - newer].active_end + 10);
    kl_log *log = tu_open(f->dir);
    assert_int_equal(kl_log_length(log), 35);
    tu_expect_records(log, SEED, MAX_REC, 35);
    assert_int_equal(kl_log_close(log), 0);
    /* Both slots now say 35: the refused one can never be taken again. */
    read_slots(f->dir, s, valid);
    assert_true(valid[0] && valid[1]);
    assert_int_equal(s[0].length, 35);
    assert_int_equal(s[1].length, 35);
    assert_int_equal(tu_file_size(seg), s[0].active_end);
}

static void test_segment_files_past_the_committed_state_are_removed(void **state) {
    fixture *f = *state;
    uint64_t active = fill(f->dir, 60);
    char stray[4096];
    tu_seg_path(stray, sizeof stray, f->dir, 60, "log");
    uint8_t hdr[KL_SEG_HEADER_BYTES];
    kl_seg_header_encode(hdr, 60, 1);
    int fd = open(stray, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, hdr, sizeof hdr), (ssize_t)sizeof hdr);
    close(fd);
    assert_true(active < 60);
    kl_log *log = tu_open(f->dir);
    assert_int_equal(access(stray, F_OK), -1);
    assert_int_equal(kl_log_close(log), 0);
    tu_grow_and_check(f->dir, SEED, MAX_REC, 60, 200, 7);
}

/* The header's slots as format version 2 wrote them: version 2, no synced_end, resealed. */
static void make_header_v2(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/header", dir);
    uint8_t buf[KL_HDR_FILE_BYTES];
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, sizeof buf, 0), (ssize_t)sizeof buf);
    for (int i = 0; i < 2; i++) {
        uint8_t *p = buf + i * KL_HDR_SLOT_BYTES;
        kl_store32(p + 8, 2);
        memset(p + KL_HDR_SLOT_BYTES - 16, 0, 8);
        kl_store64(p + KL_HDR_SLOT_BYTES - 8, XXH3_64bits(p, KL_HDR_SLOT_BYTES - 8));
    }
    assert_int_equal(pwrite(fd, buf, sizeof buf, 0), (ssize_t)sizeof buf);
    close(fd);
}

static unsigned slot_versions_v2(const char *dir) {
    uint8_t buf[KL_HDR_FILE_BYTES];
    kl_slot s[2];
    tu_read_slots(dir, buf, s);
    return (kl_load32(buf + 8) == 2) + (kl_load32(buf + KL_HDR_SLOT_BYTES + 8) == 2);
}

/*
 * A log whose header slots are of format version 2 (before synced_end) is
 * read as it is; a writable open rewrites the other slot as version 3 at
 * once, and the next commit the last one. So a build before version 3
 * never finds a version 3 slot beside an older version 2 state, which it
 * would take for a damaged slot and fall back to: it finds the same state
 * in both, or refuses the version by name.
 */
static void test_a_version_2_header_is_read_and_rewritten(void **state) {
    fixture *f = *state;
    fill(f->dir, 30);
    make_header_v2(f->dir);
    assert_int_equal(slot_versions_v2(f->dir), 2);
    kl_log *log = tu_open_ro(f->dir);
    tu_expect_records(log, SEED, MAX_REC, 30);
    assert_int_equal(kl_log_close(log), 0);
    assert_int_equal(slot_versions_v2(f->dir), 2);
    log = tu_open(f->dir);
    assert_int_equal(slot_versions_v2(f->dir), 1);
    kl_slot s[2];
    int valid[2];
    read_slots(f->dir, s, valid);
    assert_true(valid[0] && valid[1]);
    assert_int_equal(s[0].length, 30);
    assert_int_equal(s[1].length, 30);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 30, 31, 1), 0);
    assert_int_equal(slot_versions_v2(f->dir), 0);
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(f->dir);
    tu_expect_records(log, SEED, MAX_REC, 31);
    tu_expect_verified(log, "a log whose header was of version 2");
    assert_int_equal(kl_log_close(log), 0);
}

static void test_a_readonly_open_changes_nothing(void **state) {
    fixture *f = *state;
    uint64_t active = fill(f->dir, 30);
    char seg[4096];
    tu_seg_path(seg, sizeof seg, f->dir, active, "log");
    append_bytes(seg, "garbage", 7);
    uint64_t size = tu_file_size(seg);
    kl_open_options o;
    kl_open_options_default(&o);
    o.flags = KL_OPEN_READONLY;
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(f->dir, &o, tu_io(), &log), 0);
    tu_expect_records(log, SEED, MAX_REC, 30);
    uint8_t b = 0;
    kl_block blk = {&b, 1};
    assert_int_equal(kl_log_append(log, &blk, 1, NULL), KL_EREADONLY);
    assert_int_equal(kl_log_close(log), 0);
    assert_int_equal(tu_file_size(seg), size);
}

/*
 * A crash between a commit under `never` and its signature (commit.c,
 * sign_last) leaves the newest slot unsigned. A reader takes it as the
 * log's state but says it is not signed (info, verify, upgrade proofs);
 * the next writable open signs it: the same signature the writer would
 * have made.
 */
static void test_an_unsigned_last_commit_is_served_and_signed_by_the_next_writer(void **state) {
    fixture *f = *state;
    fill(f->dir, 30);
    kl_slot s[2];
    int valid[2];
    read_slots(f->dir, s, valid);
    assert_true(valid[0] && valid[1]);
    int n = s[1].seq > s[0].seq;
    kl_slot u = s[n];
    u.seq++;
    u.flags = KL_SLOT_ORDERED;
    u.sig_len = 0;
    memset(u.sig, 0, sizeof u.sig);
    uint8_t buf[KL_HDR_SLOT_BYTES];
    kl_slot_encode(buf, &u);
    char path[4096];
    snprintf(path, sizeof path, "%s/header", f->dir);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, sizeof buf, (off_t)(1 - n) * KL_HDR_SLOT_BYTES),
                     (ssize_t)sizeof buf);
    close(fd);

    kl_log *ro = tu_open_ro(f->dir);
    tu_expect_records(ro, SEED, MAX_REC, 30);
    kl_info info;
    assert_int_equal(kl_log_info(ro, &info), 0);
    assert_int_equal(info.signature_len, 0);
    assert_int_equal(kl_log_verify(ro, NULL, NULL, NULL), KL_EVERIFY);
    assert_non_null(strstr(kl_last_error(), "not signed"));
    kl_proof_ask ask = {.upgrade = 1, .upgrade_start = 0, .upgrade_length = 30};
    unsigned char *msg = NULL;
    size_t len = 0;
    assert_int_equal(kl_log_proof(ro, &ask, 1, &msg, &len), KL_EBUSY);
    kl_proof_ask block_only = {.block = 1, .block_index = 7, .block_nodes = 0};
    assert_int_equal(kl_log_proof(ro, &block_only, 2, &msg, &len), 0);
    free(msg);

    kl_log *log = tu_open(f->dir);
    assert_int_equal(kl_log_info(log, &info), 0);
    assert_int_equal(info.signature_len, s[n].sig_len);
    assert_memory_equal(info.signature, s[n].sig, s[n].sig_len);
    assert_non_null(info.recovery);
    assert_non_null(strstr(info.recovery, "not been signed"));
    assert_int_equal(kl_log_verify(log, NULL, NULL, NULL), 0);
    assert_int_equal(kl_log_close(log), 0);
    /* the reader, still open, sees the signature once it refreshes (same length) */
    assert_int_equal(kl_log_refresh(ro), 0);
    assert_int_equal(kl_log_info(ro, &info), 0);
    assert_int_equal(info.length, 30);
    assert_int_equal(info.signature_len, s[n].sig_len);
    assert_int_equal(kl_log_verify(ro, NULL, NULL, NULL), 0);
    assert_int_equal(kl_log_close(ro), 0);
    read_slots(f->dir, s, valid); /* the signed state is the newest; the unsigned one, older */
    assert_true(valid[0] && valid[1]);
    n = s[1].seq > s[0].seq;
    assert_int_equal(kl_slot_verify(&s[n]), 0);
    assert_int_equal(s[n].length, 30);
}

/*
 * Under `always` a writer's commits between checkpoints sync only their
 * segment; after a power loss the header can be back where it was, and only
 * an open with the secret key can take those acknowledged batches back (it
 * signs their state again). An open without the key (the secret moved away:
 * the log is read-only) serves the older state and leaves the batches where
 * they are. Before, it cut them, and the data was gone when the key came
 * back (r6 of the review).
 */
static void test_an_open_without_the_secret_key_leaves_the_synced_tail(void **state) {
    fixture *f = *state;
    char hdr[4096], secret[4096], moved[4096], seg[4096];
    snprintf(hdr, sizeof hdr, "%s/header", f->dir);
    snprintf(secret, sizeof secret, "%s/secret", f->dir);
    snprintf(moved, sizeof moved, "%s/secret.away", f->root);
    tu_seg_path(seg, sizeof seg, f->dir, 0, "log");
    uint8_t created[KL_HDR_FILE_BYTES];
    int fd = open(hdr, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, created, sizeof created, 0), (ssize_t)sizeof created);
    close(fd);
    tu_append_and_die(f->dir, SEED, MAX_REC, 0, 10, 1); /* ten acknowledged commits */
    fd = open(hdr, O_WRONLY); /* the power loss took the slot writes, never synced */
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, created, sizeof created, 0), (ssize_t)sizeof created);
    close(fd);
    uint64_t size = tu_file_size(seg);
    assert_int_equal(rename(secret, moved), 0);

    kl_log *log = tu_open(f->dir);
    assert_int_equal(kl_log_length(log), 0);
    uint8_t b = 0;
    kl_block blk = {&b, 1};
    assert_int_equal(kl_log_append(log, &blk, 1, NULL), KL_EREADONLY);
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    if (!strstr(info.recovery, "blocks from 0 on, past the last checkpoint, were left in place"))
        fail_msg("recovery note: '%s'", info.recovery);
    assert_int_equal(kl_log_close(log), 0);
    assert_int_equal(tu_file_size(seg), size);

    assert_int_equal(rename(moved, secret), 0);
    log = tu_open(f->dir);
    tu_expect_records(log, SEED, MAX_REC, 10);
    assert_int_equal(kl_log_info(log, &info), 0);
    assert_non_null(strstr(info.recovery, "blocks 0..9, synced past the last checkpoint"));
    tu_expect_verified(log, "the tail taken back with the key");
    assert_int_equal(kl_log_close(log), 0);
}

static void test_a_second_writer_is_refused_but_readers_are_not(void **state) {
    fixture *f = *state;
    fill(f->dir, 10);
    kl_log *w = tu_open(f->dir);
    kl_log *w2 = NULL;
    kl_open_options nowait;
    kl_open_options_default(&nowait);
    nowait.lock_wait_ms = 0;
    assert_int_equal(kl_log_open_io(f->dir, &nowait, tu_io(), &w2), KL_EBUSY);
    assert_non_null(strstr(kl_last_error(), "open for writing by another process"));
    kl_open_options o;
    kl_open_options_default(&o);
    o.flags = KL_OPEN_READONLY;
    kl_log *r = NULL;
    assert_int_equal(kl_log_open_io(f->dir, &o, tu_io(), &r), 0);
    tu_expect_records(r, SEED, MAX_REC, 10);
    assert_int_equal(kl_log_close(r), 0);
    assert_int_equal(kl_log_close(w), 0);
}

/* I/O operations that an open of the log in dir issues. */
static uint64_t open_ops(const char *dir) {
    kl_fault_plan plan = {.shared = 1};
    kl_io *io = tu_fault_io(&plan);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(dir, NULL, io, &log), 0);
    uint64_t ops = kl_io_fault_ops(io);
    assert_int_equal(kl_log_close(log), 0);
    kl_io_fault_free(io);
    return ops;
}

static void test_open_cost_does_not_grow_with_the_log(void **state) {
    fixture *f = *state;
    fill(f->dir, 200);
    uint64_t small = open_ops(f->dir);
    fill(f->dir, 6000); /* many more sealed segments */
    kl_log *log = tu_open(f->dir);
    assert_true(log->nsegs > 20);
    assert_int_equal(kl_log_close(log), 0);
    uint64_t big = open_ops(f->dir);
    print_message("I/O operations of an open: %llu at 200 records, %llu at 6000\n",
                  (unsigned long long)small, (unsigned long long)big);
    assert_true(big <= small + 4);
}

/* Under `never` too: a clean close leaves both header slots at the final state, so an open
   syncs (and, after a reboot, checks) only the active segment. */
static void test_open_cost_does_not_grow_with_the_log_under_never(void **state) {
    fixture *f = *state;
    char *dir = NULL;
    assert_true(asprintf(&dir, "%s/never", f->root) > 0);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.segment_bytes = KL_MIN_SEGMENT_BYTES;
    cfg.fsync_mode = KL_FSYNC_NEVER;
    tu_create(dir, &cfg);
    fill(dir, 200);
    uint64_t small = open_ops(dir);
    fill(dir, 6000);
    uint64_t big = open_ops(dir);
    print_message("never: I/O operations of an open: %llu at 200 records, %llu at 6000\n",
                  (unsigned long long)small, (unsigned long long)big);
    assert_true(big <= small + 4);
    free(dir);
}

typedef struct appender {
    kl_log *log;
    int id;
    int n;
} appender;

static void *append_thread(void *arg) {
    appender *a = arg;
    for (int i = 0; i < a->n; i++) {
        char rec[32];
        int len = snprintf(rec, sizeof rec, "t%02d-%05d", a->id, i);
        kl_block b = {rec, (size_t)len};
        assert_int_equal(kl_log_append(a->log, &b, 1, NULL), 0);
    }
    return NULL;
}

static void test_concurrent_appenders_share_commits_and_lose_nothing(void **state) {
    fixture *f = *state;
    enum { THREADS = 16, EACH = 150 };
    kl_fault_plan plan = {.shared = 1};
    kl_io *io = tu_fault_io(&plan);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(f->dir, NULL, io, &log), 0);
    uint64_t ops0 = kl_io_fault_ops(io);
    pthread_t th[THREADS];
    appender a[THREADS];
    for (int t = 0; t < THREADS; t++) {
        a[t] = (appender){log, t, EACH};
        pthread_create(&th[t], NULL, append_thread, &a[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    uint64_t ops = kl_io_fault_ops(io) - ops0;
    assert_int_equal(kl_log_length(log), THREADS * EACH);
    /* every record once, each thread's in its own order */
    int next[THREADS] = {0};
    for (uint64_t i = 0; i < THREADS * EACH; i++) {
        char got[32];
        size_t n = 0;
        assert_int_equal(kl_log_get(log, i, got, sizeof got, &n), 0);
        int t = -1, k = -1;
        assert_int_equal(sscanf(got, "t%02d-%05d", &t, &k), 2);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(k, next[t]);
        next[t]++;
    }
    assert_int_equal(kl_log_close(log), 0);
    kl_io_fault_free(io);
    /* A commit costs at least 4 operations (write, sync, write header, sync). */
    print_message("%d appends took %llu I/O operations\n", THREADS * EACH, (unsigned long long)ops);
    assert_true(ops < 4u * THREADS * EACH);
}

static void test_interval_policy_syncs_without_further_appends(void **state) {
    fixture *f = *state;
    kl_fault_plan plan = {.shared = 1, .track_power = 1};
    kl_io *io = tu_fault_io(&plan);
    kl_open_options o;
    kl_open_options_default(&o);
    o.fsync_override = 1;
    o.fsync_mode = KL_FSYNC_INTERVAL;
    o.fsync_interval_ms = 30;
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(f->dir, &o, io, &log), 0);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, 10, 10), 0);
    usleep(300 * 1000); /* the flusher syncs within 30 ms */
    /* Lose power before closing. Closing afterwards only syncs (it writes nothing), so
       what the loss dropped stays dropped. */
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_log_close(log);
    kl_io_fault_free(io);
    kl_log *back = tu_open(f->dir);
    tu_expect_records(back, SEED, MAX_REC, 10);
    assert_int_equal(kl_log_close(back), 0);
}

static void test_expected_length_conflict_appends_nothing(void **state) {
    fixture *f = *state;
    kl_log *log = tu_open(f->dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, 3, 3), 0);
    uint8_t x = 1;
    kl_block b = {&x, 1};
    uint64_t first = 0;
    assert_int_equal(kl_log_append_expect(log, &b, 1, 2, &first), KL_ECONFLICT);
    assert_non_null(strstr(kl_log_last_error(log), "expected length 2, the log has 3"));
    assert_int_equal(kl_log_length(log), 3);
    assert_int_equal(kl_log_append_expect(log, &b, 1, 3, &first), 0);
    assert_int_equal(first, 3);
    assert_int_equal(kl_log_close(log), 0);
}

static void test_limits_are_refused_before_anything_is_written(void **state) {
    fixture *f = *state;
    kl_log *log = tu_open(f->dir);
    static uint8_t one;
    kl_block big = {&one, (size_t)KL_MAX_BLOCK_BYTES + 1};
    assert_int_equal(kl_log_append(log, &big, 1, NULL), KL_ETOOBIG);
    kl_block none = {NULL, 5};
    assert_int_equal(kl_log_append(log, &none, 1, NULL), KL_EINVAL);
    assert_int_equal(kl_log_length(log), 0);
    assert_int_equal(kl_log_append(log, NULL, 0, NULL), 0);
    uint8_t buf[4];
    size_t n;
    assert_int_equal(kl_log_get(log, 0, buf, sizeof buf, &n), KL_ENOTFOUND);
    assert_int_equal(kl_log_close(log), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_garbage_after_the_committed_end_is_cut, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_torn_batch_at_the_tail_is_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_newer_slot_whose_data_is_missing_is_refused_and_overwritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_files_past_the_committed_state_are_removed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_readonly_open_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_version_2_header_is_read_and_rewritten, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_an_unsigned_last_commit_is_served_and_signed_by_the_next_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_open_without_the_secret_key_leaves_the_synced_tail,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_second_writer_is_refused_but_readers_are_not, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_cost_does_not_grow_with_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_cost_does_not_grow_with_the_log_under_never,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appenders_share_commits_and_lose_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_interval_policy_syncs_without_further_appends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expected_length_conflict_appends_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_limits_are_refused_before_anything_is_written, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
