/*
 * test_corrupt.c - damage in every kind of file: flipped bytes and cut
 * files in segments, indexes and header slots. Every damage is either
 * reported (KL_ECORRUPT naming the blocks) or repaired from redundant data
 * (an index rebuilt from its segment, the other header slot used); a block
 * that is served is always the right one.
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/frame.h"
#include "engine/header.h"
#include "engine/segment.h"
#include "engine/tree.h"
#include "index/offset_index.h"

#define SEED    0xc022u
#define MAX_REC 300u
#define RECORDS 3000u

typedef struct fixture {
    char *root;
    char *dir;
    uint64_t *firsts; /* segment first indexes */
    size_t nsegs;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_new_log("corrupt", KL_FSYNC_ALWAYS);
    f->root = strndup(f->dir, (size_t)(strrchr(f->dir, '/') - f->dir));
    kl_log *log = tu_open(f->dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, RECORDS, 10), 0);
    f->nsegs = log->nsegs;
    f->firsts = calloc(f->nsegs, sizeof *f->firsts);
    for (size_t i = 0; i < f->nsegs; i++)
        f->firsts[i] = log->segs[i]->first;
    assert_int_equal(kl_log_close(log), 0);
    assert_true(f->nsegs >= 4);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rm_log(f->dir);
    free(f->root);
    free(f->firsts);
    free(f);
    return 0;
}

/*
 * Read every block by get and by iteration. Served blocks must be right.
 * Returns how many reads reported KL_ECORRUPT; each report must name blocks.
 */
static unsigned read_all(kl_log *log, uint64_t expect_len) {
    unsigned bad = 0;
    uint8_t got[MAX_REC + 8], want[MAX_REC + 8];
    assert_int_equal(kl_log_length(log), expect_len);
    for (uint64_t i = 0; i < expect_len; i++) {
        size_t n = 0;
        int rc = kl_log_get(log, i, got, sizeof got, &n);
        if (rc == KL_ECORRUPT) {
            assert_non_null(strstr(kl_log_last_error(log), "block"));
            bad++;
            continue;
        }
        assert_int_equal(rc, 0);
        size_t wn = tu_record(SEED, i, MAX_REC, want);
        assert_int_equal(n, wn);
        assert_memory_equal(got, want, wn);
    }
    kl_iter *it = NULL;
    assert_int_equal(kl_iter_open(log, 0, UINT64_MAX, &it), 0);
    kl_record rec;
    int rc;
    while ((rc = kl_iter_next(it, &rec)) != 0) {
        if (rc == KL_ECORRUPT) {
            assert_non_null(strstr(kl_log_last_error(log), "block"));
            bad++;
            continue;
        }
        assert_int_equal(rc, 1);
        size_t wn = tu_record(SEED, rec.index, MAX_REC, want);
        assert_int_equal(rec.size, wn);
        assert_memory_equal(rec.data, want, wn);
    }
    kl_iter_close(it);
    return bad;
}

/* Flipping the same bit twice restores the byte. */
static void flip_and_undo(const char *path, uint64_t off, uint8_t mask) {
    tu_flip(path, off, mask);
}

static void test_flipped_bytes_in_a_sealed_segment_are_reported_never_served(void **state) {
    fixture *f = *state;
    char seg[4096];
    tu_seg_path(seg, sizeof seg, f->dir, f->firsts[1], "log");
    uint64_t size = tu_file_size(seg);
    uint64_t st = 7;
    for (int s = 0; s < 60; s++) {
        uint64_t off = tu_rand(&st) % size;
        uint8_t mask = (uint8_t)(1u << (tu_rand(&st) % 8));
        flip_and_undo(seg, off, mask);
        kl_log *log = tu_open(f->dir);
        unsigned bad = read_all(log, RECORDS);
        assert_int_equal(kl_log_close(log), 0);
        if (bad == 0)
            fail_msg("a flip at offset %llu of a sealed segment was served silently",
                     (unsigned long long)off);
        flip_and_undo(seg, off, mask);
    }
    kl_log *log = tu_open(f->dir);
    assert_int_equal(read_all(log, RECORDS), 0);
    assert_int_equal(kl_log_close(log), 0);
}

static void test_flipped_bytes_in_the_active_segment_are_reported_or_cut(void **state) {
    fixture *f = *state;
    char seg[4096];
    uint64_t active = f->firsts[f->nsegs - 1];
    tu_seg_path(seg, sizeof seg, f->dir, active, "log");
    uint64_t size = tu_file_size(seg);
    uint64_t st = 8;
    for (int s = 0; s < 40; s++) {
        /* Read-only opens: damage in the newest commit would be cut by a writable open
           (it cannot be told from a torn write); here it must be reported instead. */
        uint64_t off = tu_rand(&st) % size;
        uint8_t mask = (uint8_t)(1u << (tu_rand(&st) % 8));
        flip_and_undo(seg, off, mask);
        kl_log *log = tu_open_ro(f->dir);
        uint64_t len = kl_log_length(log);
        unsigned bad = read_all(log, len);
        assert_int_equal(kl_log_close(log), 0);
        if (bad == 0 && len == RECORDS)
            fail_msg("a flip at offset %llu of the active segment was served silently",
                     (unsigned long long)off);
        flip_and_undo(seg, off, mask);
    }
}

/*
 * After a close the last commit is durable like every other: damage there is
 * reported. A commit past the last checkpoint (a writer that died: its slot
 * and nodes may never have reached the disk) is taken back from its batch
 * only if the batch checks out: damage there cannot be told from a torn
 * write, and the commit is cut.
 */
static void test_damage_in_the_newest_commit_is_reported_or_cut(void **state) {
    fixture *f = *state;
    char seg[4096];
    uint64_t active = f->firsts[f->nsegs - 1];
    tu_seg_path(seg, sizeof seg, f->dir, active, "log");
    uint64_t size = tu_file_size(seg);
    tu_flip(seg, size - 3, 0x10); /* inside the last batch */
    kl_log *log = tu_open(f->dir);
    unsigned bad = read_all(log, RECORDS);
    assert_true(bad > 0);
    assert_int_equal(kl_log_close(log), 0);
    tu_flip(seg, size - 3, 0x10);

    tu_append_and_die(f->dir, SEED, MAX_REC, RECORDS, RECORDS + 10, 10);
    assert_true(tu_file_size(seg) > size); /* the same segment: no roll, no checkpoint */
    log = tu_open_ro(f->dir);
    uint64_t end = atomic_load(&log->segs[log->nsegs - 1]->end);
    assert_int_equal(log->segs[log->nsegs - 1]->first, active);
    assert_int_equal(kl_log_close(log), 0);
    tu_flip(seg, end - 3, 0x10); /* inside the dead writer's batch */
    log = tu_open(f->dir);
    assert_int_equal(read_all(log, RECORDS), 0);
    assert_int_equal(kl_log_close(log), 0);
}

static void test_damaged_or_missing_indexes_are_rebuilt(void **state) {
    fixture *f = *state;
    uint64_t st = 9;
    for (size_t i = 0; i < f->nsegs; i++) {
        char idx[4096];
        tu_seg_path(idx, sizeof idx, f->dir, f->firsts[i], "idx");
        uint64_t size = tu_file_size(idx);
        switch (i % 4) {
        case 0:
            unlink(idx);
            break;
        case 1:
            tu_truncate(idx, size / 2);
            break;
        case 2:
            for (int k = 0; k < 8; k++)
                tu_flip(idx, tu_rand(&st) % size, 0xff);
            break;
        default:
            tu_truncate(idx, 0);
        }
    }
    kl_log *log = tu_open(f->dir);
    assert_int_equal(read_all(log, RECORDS), 0);
    assert_int_equal(kl_log_close(log), 0);
    /* Rebuilt on disk: every sealed index maps as a complete sealed index again. */
    kl_io *io = tu_io();
    for (size_t i = 0; i + 1 < f->nsegs; i++) {
        char idx[4096];
        tu_seg_path(idx, sizeof idx, f->dir, f->firsts[i], "idx");
        kl_oidx x;
        uint64_t end = 0;
        int rc = kl_oidx_map_sealed(&x, io, idx, f->firsts[i], &end);
        if (rc != 0)
            fail_msg("index of segment %llu not rebuilt: %s", (unsigned long long)f->firsts[i],
                     kl_last_error());
        kl_oidx_free(&x, io);
    }
    kl_io_destroy(io);
    log = tu_open(f->dir);
    assert_int_equal(read_all(log, RECORDS), 0);
    assert_int_equal(kl_log_close(log), 0);
}

static void test_a_damaged_header_slot_is_replaced_by_the_other(void **state) {
    fixture *f = *state;
    char hdr[4096];
    snprintf(hdr, sizeof hdr, "%s/header", f->dir);
    for (int slot = 0; slot < 2; slot++) {
        for (uint64_t off = 0; off < KL_HDR_SLOT_BYTES; off += 509) {
            uint64_t at = (uint64_t)slot * KL_HDR_SLOT_BYTES + off;
            tu_flip(hdr, at, 0x04);
            kl_log *log = tu_open_ro(f->dir);
            uint64_t len = kl_log_length(log);
            assert_true(len == RECORDS || len == RECORDS - 10);
            assert_int_equal(read_all(log, len), 0);
            assert_int_equal(kl_log_close(log), 0);
            tu_flip(hdr, at, 0x04);
        }
    }
    tu_flip(hdr, 100, 1);
    tu_flip(hdr, KL_HDR_SLOT_BYTES + 100, 1);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(f->dir, NULL, tu_io(), &log), KL_ECORRUPT);
    assert_non_null(strstr(kl_last_error(), "both header slots are damaged"));
    tu_flip(hdr, 100, 1);
    tu_truncate(hdr, KL_HDR_SLOT_BYTES); /* slot B cut off: slot A still serves */
    log = tu_open_ro(f->dir);
    assert_int_equal(read_all(log, kl_log_length(log)), 0);
    assert_int_equal(kl_log_close(log), 0);
}

static void test_a_cut_segment_is_reported_with_its_blocks(void **state) {
    fixture *f = *state;
    char seg[4096];
    /* a sealed segment cut in half: its tail is reported, everything else served */
    tu_seg_path(seg, sizeof seg, f->dir, f->firsts[1], "log");
    tu_truncate(seg, tu_file_size(seg) / 2);
    kl_log *log = tu_open(f->dir);
    unsigned bad = read_all(log, RECORDS);
    assert_true(bad > 0);
    assert_int_equal(kl_log_close(log), 0);
    /* The active segment cut below its committed end, deeper than the newest commit (which
       recovery would cut as a torn write): a writer refuses, naming blocks. */
    char *dir2 = NULL;
    assert_true(asprintf(&dir2, "%s/log2", f->root) > 0);
    tu_create(dir2, NULL);
    log = tu_open(dir2);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, 100, 10), 0);
    assert_int_equal(kl_log_close(log), 0);
    tu_seg_path(seg, sizeof seg, dir2, 0, "log");
    tu_truncate(seg, tu_file_size(seg) - 4000);
    log = NULL;
    assert_int_equal(kl_log_open_io(dir2, NULL, tu_io(), &log), KL_ECORRUPT);
    assert_non_null(strstr(kl_last_error(), "are committed"));
    /* a reader still serves what is intact, and reports the rest */
    log = tu_open_ro(dir2);
    uint8_t buf[MAX_REC];
    size_t n;
    assert_int_equal(kl_log_get(log, 0, buf, sizeof buf, &n), 0);
    assert_int_equal(kl_log_get(log, kl_log_length(log) - 1, buf, sizeof buf, &n), KL_ECORRUPT);
    assert_int_equal(kl_log_close(log), 0);
    free(dir2);
}

static void test_a_missing_segment_file_is_reported_with_its_blocks(void **state) {
    fixture *f = *state;
    char seg[4096];
    tu_seg_path(seg, sizeof seg, f->dir, f->firsts[2], "log");
    assert_int_equal(unlink(seg), 0);
    kl_log *log = tu_open(f->dir);
    uint8_t buf[MAX_REC];
    size_t n;
    assert_int_equal(kl_log_get(log, f->firsts[2], buf, sizeof buf, &n), KL_ECORRUPT);
    char want[128];
    snprintf(want, sizeof want, "blocks %llu..%llu", (unsigned long long)f->firsts[2],
             (unsigned long long)(f->firsts[3] - 1));
    if (!strstr(kl_log_last_error(log), want))
        fail_msg("expected '%s' in '%s'", want, kl_log_last_error(log));
    assert_int_equal(kl_log_get(log, f->firsts[3], buf, sizeof buf, &n), 0);
    assert_int_equal(kl_log_close(log), 0);
}

/* ---- damage under a checkpoint, found by an open after a crash ---- */

/* Block i of the checkpoint tests: `size` bytes derived from i. */
static void ck_fill(uint64_t i, uint8_t *buf, size_t size) {
    for (size_t j = 0; j < size; j++)
        buf[j] = (uint8_t)(i * 131u + j * 7u + (j >> 8));
}

/* A new log under f->root (64 KiB segments, `always`); free() the path. */
static char *ck_log(fixture *f, const char *name) {
    char *dir = NULL;
    assert_true(asprintf(&dir, "%s/%s", f->root, name) > 0);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.segment_bytes = KL_MIN_SEGMENT_BYTES;
    cfg.fsync_mode = KL_FSYNC_ALWAYS;
    tu_create(dir, &cfg);
    return dir;
}

/* Append blocks of `size` bytes, one a commit, until the log has `segs` segments. */
static void ck_append_until(kl_log *log, size_t size, size_t segs) {
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    while (log->nsegs < segs) {
        ck_fill(kl_log_length(log), buf, size);
        kl_block b = {buf, size};
        assert_int_equal(kl_log_append(log, &b, 1, NULL), 0);
    }
    free(buf);
}

/*
 * A writer that dies right after the append that rolled the log into its
 * `segs`-th segment (that commit is a checkpoint): a child appends as
 * ck_append_until and exits without closing.
 */
static void ck_die_after_roll(const char *dir, size_t size, size_t segs) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kl_log *log = NULL;
        if (kl_log_open_io(dir, NULL, tu_io(), &log) != 0)
            _exit(2);
        ck_append_until(log, size, segs);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/*
 * The crash window of a checkpoint's second slot (commit.c, write_twin): if
 * both slots hold the checkpoint `len`, the newer one goes back to `old`
 * (a slot of the state before), as if its write never reached the disk.
 */
static void ck_lose_twin(const char *dir, uint64_t len, const uint8_t *old) {
    uint8_t buf[KL_HDR_FILE_BYTES];
    kl_slot s[2];
    tu_read_slots(dir, buf, s);
    if (s[0].length != len || s[1].length != len)
        return;
    int newer = s[1].seq > s[0].seq;
    char path[4096];
    snprintf(path, sizeof path, "%s/header", dir);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, old, KL_HDR_SLOT_BYTES, (off_t)newer * KL_HDR_SLOT_BYTES),
                     (ssize_t)KL_HDR_SLOT_BYTES);
    close(fd);
}

/* Flip a bit in the data of block `index`, in segment `first` of one-block batches of `size`. */
static void ck_damage(const char *dir, uint64_t first, uint64_t index, size_t size) {
    char seg[4096];
    tu_seg_path(seg, sizeof seg, dir, first, "log");
    uint64_t frame = kl_batch_plain_bytes(1, size);
    tu_flip(seg, KL_SEG_HEADER_BYTES + (index - first) * frame + frame - size / 2, 0x08);
}

/* Every block of [0, len) reads back right, except `bad`, which reports KL_ECORRUPT. */
static void ck_expect_blocks(kl_log *log, uint64_t len, size_t size, uint64_t bad) {
    uint8_t *got = malloc(size), *want = malloc(size);
    assert_true(got && want);
    assert_int_equal(kl_log_length(log), len);
    for (uint64_t i = 0; i < len; i++) {
        size_t n = 0;
        int rc = kl_log_get(log, i, got, size, &n);
        if (i == bad) {
            assert_int_equal(rc, KL_ECORRUPT);
            assert_non_null(strstr(kl_log_last_error(log), "block"));
            continue;
        }
        if (rc != 0)
            fail_msg("block %llu: %d %s", (unsigned long long)i, rc, kl_log_last_error(log));
        ck_fill(i, want, size);
        assert_int_equal(n, size);
        assert_memory_equal(got, want, size);
    }
    uint64_t first_bad = 0;
    assert_int_not_equal(kl_log_verify(log, NULL, NULL, &first_bad), 0);
    assert_int_equal(first_bad, bad);
    free(got);
    free(want);
}

/*
 * A writer dies right after the checkpoint of a segment roll (r4 of the
 * review: seven blocks of 10,000 bytes, the seventh rolls). Both header
 * slots hold that checkpoint, so damage in a block it covers is reported
 * on read, and nothing is cut. Before, the other slot still held the state
 * before (length 0): the open re-read the span, found the damage, fell back
 * and cut the log to 2 blocks, deleting segment 6.
 */
static void test_damage_under_a_roll_checkpoint_is_reported_after_a_crash(void **state) {
    fixture *f = *state;
    enum { SIZE = 10000 };
    char *dir = ck_log(f, "roll");
    ck_die_after_roll(dir, SIZE, 2);
    uint8_t buf[KL_HDR_FILE_BYTES];
    kl_slot s[2];
    tu_read_slots(dir, buf, s);
    assert_int_equal(s[0].length, 7);
    assert_int_equal(s[1].length, 7);
    assert_int_equal(s[0].active_segment, 6);
    assert_int_equal(s[1].active_segment, 6);
    ck_damage(dir, 0, 2, SIZE);
    kl_log *log = tu_open(dir);
    ck_expect_blocks(log, 7, SIZE, 2);
    assert_int_equal(log->nsegs, 2);
    assert_int_equal(kl_log_close(log), 0);
    free(dir);
}

/*
 * The same crash just before the checkpoint's second slot reached the disk:
 * the other slot holds the checkpoint before (the close after block 60).
 * Returns the log; *k2 is the newest checkpoint's length, *first1 the first
 * block of segment 1, and *bad the block in it the tests below damage.
 */
static char *ck_lost_twin_log(fixture *f, const char *name, size_t size, uint64_t *first1,
                              uint64_t *k2, uint64_t *bad) {
    char *dir = ck_log(f, name);
    kl_log *log = tu_open(dir);
    ck_append_until(log, size, 2);
    *first1 = log->segs[1]->first;
    assert_int_equal(kl_log_close(log), 0);
    uint8_t before[KL_HDR_FILE_BYTES];
    kl_slot s[2];
    tu_read_slots(dir, before, s);
    uint64_t k1 = s[0].length;
    assert_int_equal(k1, *first1 + 1);
    ck_die_after_roll(dir, size, 3);
    tu_read_slots(dir, (uint8_t[KL_HDR_FILE_BYTES]){0}, s);
    *k2 = s[0].length > s[1].length ? s[0].length : s[1].length;
    ck_lose_twin(dir, *k2, before);
    *bad = *first1 + 40;
    assert_true(*bad / 16 * 16 > k1 && (*bad / 16 + 1) * 16 <= *k2); /* a group the tree stores */
    return dir;
}

/* Blocks [0, k2) read back but `bad`, the note names bad..bad, the other slot is rewritten. */
static void ck_expect_twin_kept(const char *dir, uint64_t k2, size_t size, uint64_t bad) {
    kl_log *log = tu_open(dir);
    ck_expect_blocks(log, k2, size, bad);
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    char want[64];
    snprintf(want, sizeof want, "blocks %llu..%llu ", (unsigned long long)bad,
             (unsigned long long)bad);
    if (!strstr(info.recovery, want))
        fail_msg("expected '%s' in the recovery note '%s'", want, info.recovery);
    assert_int_equal(kl_log_close(log), 0);
    kl_slot s[2];
    tu_read_slots(dir, (uint8_t[KL_HDR_FILE_BYTES]){0}, s); /* the other slot was rewritten */
    assert_int_equal(s[0].length, k2);
    assert_int_equal(s[1].length, k2);
    log = tu_open(dir);
    ck_expect_blocks(log, k2, size, bad);
    assert_int_equal(kl_log_close(log), 0);
}

/*
 * The damage in block `bad` lies in a segment before the newest slot's, so
 * it was synced before that slot was written: it is damage, not a torn
 * write. The newest checkpoint is checked with the stored tree node over
 * blocks 96..111 standing in for the damaged block, kept, and the damage
 * reported.
 */
static void test_damage_under_a_checkpoint_whose_twin_was_lost_is_reported(void **state) {
    enum { SIZE = 1000 };
    uint64_t first1, k2, bad;
    char *dir = ck_lost_twin_log(*state, "twin", SIZE, &first1, &k2, &bad);
    ck_damage(dir, first1, bad, SIZE);
    ck_expect_twin_kept(dir, k2, SIZE, bad);
    free(dir);
}

/*
 * As above with the damaged block's batch header flipped, so where its batch
 * ends is not known: the check of the newest checkpoint finds the next batch
 * (kl_batch_resync) and only that batch's group is stood in for. Before, it
 * took the rest of the segment as damaged (blocks 100..119), whose last
 * group ends past the newest checkpoint (121 blocks), so no stored node could
 * stand in for it and a writable open refused.
 */
static void test_a_damaged_batch_header_under_a_lost_twin_costs_only_its_batch(void **state) {
    enum { SIZE = 1000 };
    uint64_t first1, k2, bad;
    char *dir = ck_lost_twin_log(*state, "twin-header", SIZE, &first1, &k2, &bad);
    char seg[4096];
    tu_seg_path(seg, sizeof seg, dir, first1, "log");
    uint64_t frame = kl_batch_plain_bytes(1, SIZE);
    tu_flip(seg, KL_SEG_HEADER_BYTES + (bad - first1) * frame + 20, 0x08); /* its stored_len */
    ck_expect_twin_kept(dir, k2, SIZE, bad);
    free(dir);
}

/*
 * The review's r4 with the second slot lost: damage in block 2 of 7, too
 * few blocks for a stored tree node. The last group, partial at the newest
 * checkpoint's length, lies under that checkpoint's own roots, signed with
 * it: the root over blocks 0..3 stands in for the damaged block, and blocks
 * 4..6 must make the other two. The checkpoint is kept and block 2
 * reported. Before, a writable open refused here.
 */
static void test_damage_in_the_last_group_under_a_lost_twin_is_checked_by_its_roots(void **state) {
    fixture *f = *state;
    enum { SIZE = 10000 };
    char *dir = ck_log(f, "roots");
    uint8_t created[KL_HDR_FILE_BYTES];
    kl_slot s[2];
    tu_read_slots(dir, created, s);
    ck_die_after_roll(dir, SIZE, 2);
    ck_lose_twin(dir, 7, created + KL_HDR_SLOT_BYTES);
    ck_damage(dir, 0, 2, SIZE);
    ck_expect_twin_kept(dir, 7, SIZE, 2);
    free(dir);
}

/*
 * As above with the older checkpoint inside that last group (5 blocks, then
 * the crash after the roll at 7): damage in block 5, whose root in the
 * newest checkpoint (blocks 4..5) also covers block 4, a root of the older.
 */
static void
test_damage_past_an_older_checkpoint_in_the_last_group_is_checked_by_its_roots(void **state) {
    fixture *f = *state;
    enum { SIZE = 10000 };
    char *dir = ck_log(f, "roots-mid");
    kl_log *log = tu_open(dir);
    static uint8_t buf[SIZE];
    for (uint64_t i = 0; i < 5; i++) {
        ck_fill(i, buf, SIZE);
        kl_block b = {buf, SIZE};
        assert_int_equal(kl_log_append(log, &b, 1, NULL), 0);
    }
    assert_int_equal(kl_log_close(log), 0);
    uint8_t before[KL_HDR_FILE_BYTES];
    kl_slot s[2];
    tu_read_slots(dir, before, s);
    assert_int_equal(s[0].length, 5);
    ck_die_after_roll(dir, SIZE, 2);
    tu_read_slots(dir, (uint8_t[KL_HDR_FILE_BYTES]){0}, s);
    assert_int_equal(s[0].length, 7);
    assert_int_equal(s[1].length, 7);
    ck_lose_twin(dir, 7, before);
    ck_damage(dir, 0, 5, SIZE);
    ck_expect_twin_kept(dir, 7, SIZE, 5);
    free(dir);
}

/*
 * Damage that runs from a full group into the last, partial one: batches of
 * six blocks of 3,000 bytes, the fourth rolls (24 blocks, segment 0 holds
 * 0..17), the second slot lost, and block 13 damaged: recovery's check of
 * the checkpoint cannot hash the batch of blocks 12..17. The stored node
 * over blocks 0..15 stands in for the first part and the checkpoint's root
 * over 16..23 for the rest. The checkpoint is kept, block 13 reported (the
 * other blocks of its batch pass their own chunks' checksums). Before, a
 * writable open refused here.
 */
static void test_damage_from_a_full_group_into_the_last_is_checked_by_node_and_roots(void **state) {
    fixture *f = *state;
    enum { SIZE = 3000, BATCH = 6, LEN = 24, BAD = 13 };
    char *dir = ck_log(f, "roots-span");
    uint8_t created[KL_HDR_FILE_BYTES];
    kl_slot s[2];
    tu_read_slots(dir, created, s);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a writer of 6-block batches that dies after the roll's checkpoint */
        kl_log *log = NULL;
        if (kl_log_open_io(dir, NULL, tu_io(), &log) != 0)
            _exit(2);
        static uint8_t buf[BATCH][SIZE];
        while (log->nsegs < 2) {
            kl_block b[BATCH];
            for (int k = 0; k < BATCH; k++) {
                ck_fill(kl_log_length(log) + (uint64_t)k, buf[k], SIZE);
                b[k] = (kl_block){buf[k], SIZE};
            }
            if (kl_log_append(log, b, BATCH, NULL) != 0)
                _exit(3);
        }
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    tu_read_slots(dir, (uint8_t[KL_HDR_FILE_BYTES]){0}, s);
    assert_int_equal(s[0].length, LEN);
    assert_int_equal(s[1].length, LEN);
    assert_int_equal(s[0].active_segment, 18);
    ck_lose_twin(dir, LEN, created + KL_HDR_SLOT_BYTES);
    char seg[4096];
    tu_seg_path(seg, sizeof seg, dir, 0, "log");
    uint64_t frame = kl_batch_plain_bytes(BATCH, BATCH * SIZE);
    /* the middle of block 13, the second of the batch of 12..17 (its body ends the frame) */
    tu_flip(seg, KL_SEG_HEADER_BYTES + 3 * frame - (BATCH - 1) * SIZE + SIZE / 2, 0x08);
    /* with the stored node over blocks 0..15 flipped too, nothing can check them: refused */
    char *copy = NULL, tree[4096];
    assert_true(asprintf(&copy, "%s-node", dir) > 0);
    tu_copy_dir(dir, copy);
    snprintf(tree, sizeof tree, "%s/tree", copy);
    tu_flip(tree, kl_tree_off(kl_tree_spos(15, 4)) + 3, 0x20);
    uint8_t d0[KL_HASH_BYTES], d1[KL_HASH_BYTES];
    tu_dir_digest(copy, d0);
    kl_log *refused = NULL;
    assert_int_equal(kl_log_open_io(copy, NULL, tu_io(), &refused), KL_ECORRUPT);
    if (!strstr(kl_last_error(), "blocks 12..17 (segment 00000000000000000000) fail their checks"))
        fail_msg("unexpected error: %s", kl_last_error());
    tu_dir_digest(copy, d1);
    assert_memory_equal(d0, d1, KL_HASH_BYTES);
    tu_rmrf(copy);
    free(copy);
    for (int round = 0; round < 2; round++) { /* the second open finds both slots rewritten */
        kl_log *log = tu_open(dir);
        assert_int_equal(kl_log_length(log), LEN);
        uint8_t got[SIZE], want[SIZE];
        for (uint64_t i = 0; i < LEN; i++) {
            size_t n = 0;
            int rc = kl_log_get(log, i, got, SIZE, &n);
            if (i == BAD) {
                assert_int_equal(rc, KL_ECORRUPT);
                continue;
            }
            if (rc != 0)
                fail_msg("block %llu: %d %s", (unsigned long long)i, rc, kl_log_last_error(log));
            ck_fill(i, want, SIZE);
            assert_memory_equal(got, want, SIZE);
        }
        uint64_t first_bad = 0;
        assert_int_not_equal(kl_log_verify(log, NULL, NULL, &first_bad), 0);
        assert_int_equal(first_bad, BAD);
        kl_info info;
        assert_int_equal(kl_log_info(log, &info), 0);
        if (round == 0 && (!info.recovery || !strstr(info.recovery, "blocks 12..17 ")))
            fail_msg("recovery note '%s'", info.recovery ? info.recovery : "(none)");
        assert_int_equal(kl_log_close(log), 0);
        tu_read_slots(dir, (uint8_t[KL_HDR_FILE_BYTES]){0}, s);
        assert_int_equal(s[0].length, LEN);
        assert_int_equal(s[1].length, LEN);
    }
    free(dir);
}

/*
 * A writable open of dir refuses with KL_ECORRUPT, its message holding `want`
 * and `also` (NULL: not asked), and changes no byte of the directory; a
 * read-only open then serves `ro_length` blocks (the older slot's).
 */
static void ck_expect_refused(const char *dir, const char *want, const char *also,
                              uint64_t ro_length) {
    uint8_t d0[KL_HASH_BYTES], d1[KL_HASH_BYTES];
    tu_dir_digest(dir, d0);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(dir, NULL, tu_io(), &log), KL_ECORRUPT);
    if (!strstr(kl_last_error(), want) || (also && !strstr(kl_last_error(), also)))
        fail_msg("unexpected error: %s", kl_last_error());
    tu_dir_digest(dir, d1);
    assert_memory_equal(d0, d1, KL_HASH_BYTES);
    log = tu_open_ro(dir);
    assert_int_equal(kl_log_length(log), ro_length);
    assert_int_equal(kl_log_close(log), 0);
}

/*
 * Checkpoints inside one segment (r1 of the review): a log of 10 blocks of
 * 1,000 bytes closed, then a writer appends blocks 10..39 one a commit
 * (each acknowledged after its segment's sync) and, if `sync`, makes a
 * checkpoint with kl_log_sync; then it dies. *before gets the header as the
 * close left it.
 */
static char *ck_mid_segment_log(fixture *f, const char *name, int sync,
                                uint8_t before[KL_HDR_FILE_BYTES]) {
    enum { SIZE = 1000 };
    char *dir = ck_log(f, name);
    kl_log *log = tu_open(dir);
    static uint8_t buf[SIZE];
    for (uint64_t i = 0; i < 10; i++) {
        ck_fill(i, buf, SIZE);
        kl_block b = {buf, SIZE};
        assert_int_equal(kl_log_append(log, &b, 1, NULL), 0);
    }
    assert_int_equal(kl_log_close(log), 0);
    kl_slot s[2];
    tu_read_slots(dir, before, s);
    assert_int_equal(s[0].length, 10);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (kl_log_open_io(dir, NULL, tu_io(), &log) != 0)
            _exit(2);
        for (uint64_t i = 10; i < 40; i++) {
            ck_fill(i, buf, SIZE);
            kl_block b = {buf, SIZE};
            if (kl_log_append(log, &b, 1, NULL) != 0)
                _exit(3);
        }
        if (sync && kl_log_sync(log) != 0)
            _exit(4);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    tu_read_slots(dir, (uint8_t[KL_HDR_FILE_BYTES]){0}, s);
    assert_int_equal(s[0].length > s[1].length ? s[0].length : s[1].length, 40);
    assert_int_equal(s[0].active_segment, 0);
    assert_int_equal(s[1].active_segment, 0);
    return dir;
}

/*
 * Block 20 of ck_mid_segment_log's log damaged, with a checkpoint by
 * kl_log_sync whose second slot was lost (`sync`), or with none: block 20
 * lies before the newest slot's synced_end, so it is damage, not a torn
 * write. The newest slot is kept and block 20 reported.
 */
static void ck_mid_segment_damage_is_reported(void **state, const char *name, int sync) {
    uint8_t before[KL_HDR_FILE_BYTES];
    char *dir = ck_mid_segment_log(*state, name, sync, before);
    if (sync) { /* the other slot goes back to the close's state */
        ck_lose_twin(dir, 40, before);
        kl_slot s[2];
        tu_read_slots(dir, (uint8_t[KL_HDR_FILE_BYTES]){0}, s);
        assert_int_equal(s[0].length < s[1].length ? s[0].length : s[1].length, 10);
    }
    ck_damage(dir, 0, 20, 1000);
    ck_expect_twin_kept(dir, 40, 1000, 20);
    free(dir);
}

/*
 * The checkpoint of kl_log_sync whose second slot was lost: the other slot
 * holds the close's state (10 blocks), so recovery checks blocks 10..39,
 * all in the segment the newest slot ends in. The newest slot says which
 * bytes of that segment were durable before its commit began (synced_end),
 * and the damaged block 20 lies there. Before, recovery took it for a torn
 * write, fell back to the older slot and cut blocks 20..39, all
 * acknowledged.
 */
static void
test_damage_before_a_mid_segment_checkpoint_under_a_lost_twin_is_reported(void **state) {
    ck_mid_segment_damage_is_reported(state, "mid-twin", 1);
}

/*
 * The same with no checkpoint at all: the writer died after its acknowledged
 * commits, and the working slot (40 blocks, written by the commit of block
 * 39 and not synced, but in the page cache) is the newest. Before, the open
 * fell back to the close's state and the synced tail stopped at block 20,
 * so blocks 21..39, acknowledged, were cut.
 */
static void test_damage_before_the_working_slot_of_a_dead_writer_is_reported(void **state) {
    ck_mid_segment_damage_is_reported(state, "mid-dead", 0);
}

/*
 * The same log with the segment cut inside block 20 (a file system that lost
 * bytes a sync had made durable): the newest slot's synced_end says blocks
 * 20..38 were durable, so this is damage, and past it nothing can be
 * checked. A writable open refuses, naming the blocks, and changes nothing
 * (before, it cut them like a torn write); a read-only open serves the
 * older slot.
 */
static void test_a_segment_cut_before_the_working_slot_synced_end_is_refused(void **state) {
    uint8_t before[KL_HDR_FILE_BYTES];
    char *dir = ck_mid_segment_log(*state, "mid-cut", 0, before);
    char seg[4096];
    tu_seg_path(seg, sizeof seg, dir, 0, "log");
    tu_truncate(seg, KL_SEG_HEADER_BYTES + 20 * kl_batch_plain_bytes(1, 1000) + 100);
    ck_expect_refused(dir, "blocks 20..39 (segment 00000000000000000000) fail their checks", NULL,
                      10);
    free(dir);
}

/*
 * Damage before the newest slot's synced_end and, on top of it, the newest
 * commit's own batch failing too (r1 of the second review: a torn write, or
 * more damage). That commit can only be cut by going back to the older
 * slot, which would cut the acknowledged blocks after the damage as well;
 * no state between the two is signed. A writable open refuses, naming both,
 * and changes nothing; a read-only open serves the older slot.
 */
static void test_damage_and_a_failing_newest_commit_are_refused_naming_both(void **state) {
    uint8_t before[KL_HDR_FILE_BYTES];
    char *dir = ck_mid_segment_log(*state, "mid-both", 0, before);
    ck_damage(dir, 0, 20, 1000);
    ck_damage(dir, 0, 39, 1000);
    ck_expect_refused(dir, "blocks 20..20 (segment 00000000000000000000) fail their",
                      "from block 39 on, the newest commit's own batches fail as well", 10);
    free(dir);
}

/*
 * Damage in the newest commit's own batch cannot be told from a torn write of
 * that commit: it is cut, as before, with the blocks before it kept.
 */
static void test_damage_in_the_newest_commit_of_a_dead_writer_is_cut(void **state) {
    uint8_t before[KL_HDR_FILE_BYTES];
    char *dir = ck_mid_segment_log(*state, "mid-last", 0, before);
    ck_damage(dir, 0, 39, 1000);
    kl_log *log = tu_open(dir);
    assert_int_equal(kl_log_length(log), 39);
    uint8_t got[1000], want[1000];
    for (uint64_t i = 0; i < 39; i++) {
        size_t n = 0;
        assert_int_equal(kl_log_get(log, i, got, sizeof got, &n), 0);
        ck_fill(i, want, sizeof want);
        assert_memory_equal(got, want, sizeof want);
    }
    tu_expect_verified(log, "a log cut before a damaged last commit");
    assert_int_equal(kl_log_close(log), 0);
    free(dir);
}

/*
 * Damage that cannot be checked: block `bad` under the lost twin, as in the
 * tests above, and the stored tree node over its group flipped too. Falling
 * back would cut what the newest checkpoint covers: a writable open
 * refuses, naming the block, and changes nothing; a read-only open, which
 * cuts nothing, serves the older slot's blocks.
 */
static void test_unverifiable_damage_under_a_checkpoint_is_refused_not_cut(void **state) {
    enum { SIZE = 1000, LOW = 4 /* the tree file stores nodes over 16 blocks and up */ };
    uint64_t first1, k2, bad;
    char *dir = ck_lost_twin_log(*state, "refuse", SIZE, &first1, &k2, &bad);
    ck_damage(dir, first1, bad, SIZE);
    char tree[4096];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    uint64_t g = bad / 16 * 16;
    tu_flip(tree, kl_tree_off(kl_tree_spos(2 * g + 15, LOW)) + 3, 0x20);
    uint8_t d0[KL_HASH_BYTES], d1[KL_HASH_BYTES];
    tu_dir_digest(dir, d0);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(dir, NULL, tu_io(), &log), KL_ECORRUPT);
    char want[96];
    snprintf(want, sizeof want, "blocks %llu..%llu (segment %020llu) fail their checks",
             (unsigned long long)bad, (unsigned long long)bad, (unsigned long long)first1);
    if (!strstr(kl_last_error(), want))
        fail_msg("expected '%s' in: %s", want, kl_last_error());
    tu_dir_digest(dir, d1);
    assert_memory_equal(d0, d1, KL_HASH_BYTES);
    log = tu_open_ro(dir);
    assert_int_equal(kl_log_length(log), first1 + 1); /* the older slot's checkpoint */
    assert_int_equal(kl_log_close(log), 0);
    tu_dir_digest(dir, d1);
    assert_memory_equal(d0, d1, KL_HASH_BYTES);
    free(dir);
}

/* A log of 40 blocks closed, then 10 more by a writer that died (r5 of the review). */
static char *ck_tree_log(fixture *f, const char *name) {
    char *dir = ck_log(f, name);
    kl_log *log = tu_open(dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, 40, 1), 0);
    assert_int_equal(kl_log_close(log), 0);
    tu_append_and_die(dir, SEED, MAX_REC, 40, 50, 1);
    return dir;
}

/*
 * A writable open of dir recovers all `len` records of the SEED series: the
 * recovery note holds `note` and `also` (NULL: not asked), every record
 * reads back and verify passes (`what` names the case), and the tree file
 * holds exactly their nodes.
 */
static void ck_expect_recovered(const char *dir, uint64_t len, const char *note, const char *also,
                                const char *what) {
    kl_log *log = tu_open(dir);
    assert_int_equal(kl_log_length(log), len);
    char tree[4096];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    assert_int_equal(tu_file_size(tree), kl_tree_bytes(len, log->tree_low));
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    if (!info.recovery || !strstr(info.recovery, note) || (also && !strstr(info.recovery, also)))
        fail_msg("%s: recovery note '%s'", what, info.recovery ? info.recovery : "(none)");
    tu_expect_records(log, SEED, MAX_REC, len);
    tu_expect_verified(log, what);
    assert_int_equal(kl_log_close(log), 0);
}

/*
 * A tree file cut short, found by an open after a writer died. The nodes
 * are derived from the blocks: a writable open rebuilds the missing ones,
 * from the last group whose nodes are all in the file, once the blocks are
 * found to make the signed roots, and says so. Before, it refused (and
 * earlier still, wrote past the end and left a hole of zeros that passed
 * for nodes). Every cut length from the header on, each on a copy.
 */
static void test_a_cut_tree_file_is_rebuilt_from_the_blocks(void **state) {
    fixture *f = *state;
    char *dir = ck_tree_log(f, "tree"), *work = NULL;
    assert_true(asprintf(&work, "%s/tree-work", f->root) > 0);
    char tree[4096];
    snprintf(tree, sizeof tree, "%s/tree", work);
    uint64_t full = 0, cuts = 0;
    for (uint64_t cut = KL_TREE_HEADER_BYTES;; cut += 13) {
        tu_copy_dir(dir, work);
        full = tu_file_size(tree);
        if (cut >= full)
            break;
        tu_truncate(tree, cut);
        kl_log *log = tu_open(work);
        assert_int_equal(kl_log_length(log), 50);
        assert_int_equal(tu_file_size(tree), kl_tree_bytes(50, log->tree_low));
        kl_info info;
        assert_int_equal(kl_log_info(log, &info), 0);
        /* cut past the closed state's nodes, recovery's check of the newer one writes the rest */
        if (cut < kl_tree_bytes(40, log->tree_low) &&
            (!info.recovery || !strstr(info.recovery, "was cut short")))
            fail_msg("cut at %llu: recovery note '%s'", (unsigned long long)cut,
                     info.recovery ? info.recovery : "(none)");
        tu_expect_records(log, SEED, MAX_REC, 50);
        tu_expect_verified(log, "a rebuilt tree file");
        assert_int_equal(kl_log_close(log), 0);
        tu_rmrf(work);
        cuts++;
    }
    assert_true(cuts >= 10);
    tu_rmrf(work);
    free(work);
    free(dir);
}

/*
 * A tree file cut short whose last kept node is wrong as well: the rebuild
 * from that node cannot make the signed roots, so it starts again from
 * block 0 and replaces every node (before, the open refused).
 */
static void test_a_cut_tree_file_with_a_wrong_kept_node_is_rebuilt_whole(void **state) {
    enum { LOW = 4 /* the tree file stores nodes over 16 blocks and up */ };
    fixture *f = *state;
    char *dir = ck_log(f, "tree-node");
    kl_log *log = tu_open(dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, 50, 1), 0);
    assert_int_equal(kl_log_close(log), 0);
    char tree[4096];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    tu_truncate(tree, kl_tree_bytes(32, LOW)); /* the nodes of blocks 0..31 are kept */
    tu_flip(tree, kl_tree_off(kl_tree_spos(31, LOW)) + 3, 0x20); /* the root over them */
    ck_expect_recovered(dir, 50, "the nodes of blocks 0..49 were rebuilt",
                        "the nodes the file still held did not",
                        "a tree file rebuilt from block 0");
    free(dir);
}

/*
 * A tree file whose header is torn and whose newest nodes are missing (r7 of
 * the review): the writer that died had not synced them, so the newer
 * slot's roots lie past the file's end at either depth, while the older
 * slot's stored root is found at depth 4. The older slot tells the depth;
 * the newer one, telling nothing, no longer vetoes it (before, every open
 * refused). The header is written again and the missing nodes rebuilt.
 */
static void test_a_torn_tree_header_is_told_by_the_older_slot(void **state) {
    fixture *f = *state;
    char *dir = ck_tree_log(f, "tree-head");
    char tree[4096];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    tu_truncate(tree, kl_tree_bytes(40, 4));
    tu_flip(tree, 20, 0x01);
    ck_expect_recovered(dir, 50, "header was damaged", "depth 4",
                        "a tree file whose header was written again");
    free(dir);
}

/* The same with a block the rebuild needs damaged: refused, and nothing is written. */
static void test_a_cut_tree_file_over_damaged_blocks_is_refused(void **state) {
    fixture *f = *state;
    char *dir = ck_tree_log(f, "tree-bad");
    char tree[4096], seg[4096];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    tu_truncate(tree, KL_TREE_HEADER_BYTES);
    tu_seg_path(seg, sizeof seg, dir, 0, "log");
    tu_flip(seg, KL_SEG_HEADER_BYTES + 500, 0x08);
    uint8_t d0[KL_HASH_BYTES], d1[KL_HASH_BYTES];
    tu_dir_digest(dir, d0);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(dir, NULL, tu_io(), &log), KL_ECORRUPT);
    if (!strstr(kl_last_error(), "do not make its signed roots again (nothing was written)"))
        fail_msg("unexpected error: %s", kl_last_error());
    tu_dir_digest(dir, d1);
    assert_memory_equal(d0, d1, KL_HASH_BYTES);
    free(dir);
}

/*
 * The commit point of a truncation is the rename of its redo record to
 * `truncate.redo` (engine/truncate.c). Both backends rename with rename(3),
 * so this definition sees it, and when asked copies the log just after it,
 * as test_truncate.c does: what a crash right there leaves.
 */
static const char *snap_after;

int rename(const char *from, const char *to) {
    static const char tail[] = "/truncate.redo";
    size_t n = strlen(to), k = sizeof tail - 1;
    char *dir = n > k && strcmp(to + n - k, tail) == 0 ? strndup(to, n - k) : NULL;
    int rc = renameat(AT_FDCWD, from, AT_FDCWD, to);
    if (dir && rc == 0 && snap_after)
        tu_copy_dir(dir, snap_after);
    free(dir);
    return rc;
}

/*
 * A log of 100 records cut to 50 by kl_truncate, copied just after the
 * commit point of the truncation (the rename hook above): what a crash
 * there leaves, with the record to finish. Returns the copy; free() it.
 */
static char *ck_crashed_truncation(fixture *f, const char *name) {
    char *dir = ck_log(f, name), *snap = NULL;
    assert_true(asprintf(&snap, "%s/%s-crashed", f->root, name) > 0);
    kl_log *log = tu_open(dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, 100, 5), 0);
    assert_int_equal(kl_log_close(log), 0);
    snap_after = snap;
    assert_int_equal(kl_truncate(dir, 50, NULL), 0);
    snap_after = NULL;
    free(dir);
    return snap;
}

/*
 * The same in a truncation a crash interrupted. Finishing it used to cut the
 * tree file "to" the new length with ftruncate, which makes a shorter file
 * longer, all zeros; then it refused. Now the truncation is finished with
 * the file left as it is, and the open rebuilds the missing nodes from the
 * blocks, as for any cut tree file: the truncated log, whole and verified.
 */
static void test_a_cut_tree_file_under_an_unfinished_truncation_is_rebuilt(void **state) {
    char *snap = ck_crashed_truncation(*state, "trunc");
    char tree[4096], redo[4096];
    snprintf(tree, sizeof tree, "%s/tree", snap);
    snprintf(redo, sizeof redo, "%s/truncate.redo", snap);
    assert_int_equal(access(redo, F_OK), 0);
    tu_truncate(tree, KL_TREE_HEADER_BYTES);
    ck_expect_recovered(snap, 50, "the nodes of blocks 0..49 were rebuilt", NULL,
                        "a truncated log whose tree file was rebuilt");
    assert_int_equal(access(redo, F_OK), -1);
    tu_rmrf(snap);
    free(snap);
}

/* The same over a damaged block: the truncation is finished, the open refuses, nothing is served.
 */
static void
test_a_cut_tree_file_under_an_unfinished_truncation_over_damage_is_refused(void **state) {
    char *snap = ck_crashed_truncation(*state, "trunc-bad");
    char tree[4096], seg[4096];
    snprintf(tree, sizeof tree, "%s/tree", snap);
    tu_truncate(tree, KL_TREE_HEADER_BYTES);
    tu_seg_path(seg, sizeof seg, snap, 0, "log");
    tu_flip(seg, KL_SEG_HEADER_BYTES + 300, 0x08);
    kl_log *log = NULL;
    for (int round = 0; round < 2; round++) { /* again: the finished truncation changes nothing */
        assert_int_equal(kl_log_open_io(snap, NULL, tu_io(), &log), KL_ECORRUPT);
        if (!strstr(kl_last_error(), "do not make its signed roots again (nothing was written)"))
            fail_msg("unexpected error: %s", kl_last_error());
        assert_int_equal(tu_file_size(tree), KL_TREE_HEADER_BYTES);
    }
    log = tu_open_ro(snap);
    assert_int_equal(kl_log_length(log), 50);
    assert_int_equal(kl_log_close(log), 0);
    tu_rmrf(snap);
    free(snap);
}

/*
 * A truncation a crash interrupted, over a segment cut short: the segment
 * that ends the truncated log lacks bytes the record keeps. Reported as
 * damage naming its blocks, before any step is applied (before, it removed
 * the later segments and then failed with an I/O error on every open); the
 * record stays and nothing changes.
 */
static void test_an_unfinished_truncation_over_a_cut_segment_is_reported(void **state) {
    char *snap = ck_crashed_truncation(*state, "trunc-seg");
    char seg[4096];
    tu_seg_path(seg, sizeof seg, snap, 0, "log");
    tu_truncate(seg, 2000);
    uint8_t d0[KL_HASH_BYTES], d1[KL_HASH_BYTES];
    tu_dir_digest(snap, d0);
    kl_log *log = NULL;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(kl_log_open_io(snap, NULL, tu_io(), &log), KL_ECORRUPT);
        if (!strstr(kl_last_error(), "is 2000 bytes but the truncated log keeps its first") ||
            !strstr(kl_last_error(), "(blocks 0..") ||
            !strstr(kl_last_error(), "the file was cut short (nothing was changed)"))
            fail_msg("unexpected error: %s", kl_last_error());
        tu_dir_digest(snap, d1);
        assert_memory_equal(d0, d1, KL_HASH_BYTES);
    }
    tu_rmrf(snap);
    free(snap);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_flipped_bytes_in_a_sealed_segment_are_reported_never_served, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_flipped_bytes_in_the_active_segment_are_reported_or_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_in_the_newest_commit_is_reported_or_cut, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damaged_or_missing_indexes_are_rebuilt, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_damaged_header_slot_is_replaced_by_the_other, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_cut_segment_is_reported_with_its_blocks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_missing_segment_file_is_reported_with_its_blocks,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_under_a_roll_checkpoint_is_reported_after_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_under_a_checkpoint_whose_twin_was_lost_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_damaged_batch_header_under_a_lost_twin_costs_only_its_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_in_the_last_group_under_a_lost_twin_is_checked_by_its_roots, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_past_an_older_checkpoint_in_the_last_group_is_checked_by_its_roots, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_from_a_full_group_into_the_last_is_checked_by_node_and_roots, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_before_a_mid_segment_checkpoint_under_a_lost_twin_is_reported, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_before_the_working_slot_of_a_dead_writer_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_segment_cut_before_the_working_slot_synced_end_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_damage_and_a_failing_newest_commit_are_refused_naming_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_in_the_newest_commit_of_a_dead_writer_is_cut,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_unverifiable_damage_under_a_checkpoint_is_refused_not_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_cut_tree_file_is_rebuilt_from_the_blocks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_cut_tree_file_with_a_wrong_kept_node_is_rebuilt_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_torn_tree_header_is_told_by_the_older_slot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_cut_tree_file_over_damaged_blocks_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_cut_tree_file_under_an_unfinished_truncation_is_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_unfinished_truncation_over_a_cut_segment_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_cut_tree_file_under_an_unfinished_truncation_over_damage_is_refused, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
