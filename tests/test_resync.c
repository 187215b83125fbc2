/*
 * test_resync.c - a damaged batch header costs only its own blocks
 * (engine/resync.c). Every reader that walks batches goes on at the batch
 * after the damaged one: a lookup (get and the iterator), the rebuild of a
 * sealed segment's index, recovery's walk of the active segment, and the
 * refresh of a read-only handle. Each case checks that exactly the damaged
 * batch's blocks report KL_ECORRUPT naming that range, that every other
 * block comes back right, and that a block holding a whole batch of its own
 * is never taken for the real one.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/frame.h"
#include "engine/segment.h"

#define SEED    0x5e5eu
#define MAX_REC 100u
#define RECORDS 3000u
#define BATCH   3u

typedef struct batch_pos {
    uint64_t pos, first;
    uint32_t count;
} batch_pos;

/* The batches of a segment file in order: how many (at most cap). */
static size_t seg_batches(const char *path, batch_pos *out, size_t cap) {
    size_t len = 0, n = 0;
    uint8_t *b = tu_read_file(path, &len);
    for (uint64_t pos = KL_SEG_HEADER_BYTES; n < cap && pos + KL_BATCH_HEADER_BYTES <= len;) {
        kl_batch_hdr h;
        if (kl_batch_hdr_decode(b + pos, len - pos, &h) < 0)
            break;
        out[n++] = (batch_pos){pos, h.first_index, h.count};
        pos += kl_batch_frame_len(&h);
    }
    free(b);
    return n;
}

/*
 * What reading the log must show. Blocks in [bad_from, bad_to) and in
 * [bad2_from, bad2_to) report KL_ECORRUPT; those in [bad_to, may_to) may
 * too (damage that is not bridged is reported up to a known point); every
 * other block comes back as tu_record made it, or as `special` for block
 * special_at. With `exact`, each report names [bad_from, bad_to) exactly,
 * the iterator reports it once and verify names its first block.
 */
typedef struct expect {
    uint64_t len;
    uint64_t bad_from, bad_to;
    int exact;
    uint64_t bad2_from, bad2_to;
    uint64_t may_to;
    uint64_t special_at; /* UINT64_MAX: none */
    const uint8_t *special;
    size_t special_len;
} expect;

/* Exactly the blocks of one damaged batch, [from, to), every other right. */
static expect only(uint64_t len, uint64_t from, uint64_t to) {
    return (expect){len, from, to, 1, 0, 0, 0, UINT64_MAX, NULL, 0};
}

static size_t want_block(const expect *e, uint64_t i, uint8_t *buf) {
    if (i == e->special_at) {
        memcpy(buf, e->special, e->special_len);
        return e->special_len;
    }
    return tu_record(SEED, i, MAX_REC, buf);
}

static int names(const char *err, const char *range, const char *rest) {
    return strstr(err, range) || strstr(err, rest);
}

/*
 * Read every block by get, then by an iterator, as e says. The iterator
 * serves exactly the blocks get served.
 */
static void expect_blocks(kl_log *log, const expect *e) {
    char range[96],
        rest[96]; /* a lookup names the range; past the last batch, the segment's rest */
    if (e->bad_to - e->bad_from > 1)
        snprintf(range, sizeof range, "(blocks %llu..%llu)", (unsigned long long)e->bad_from,
                 (unsigned long long)(e->bad_to - 1));
    else
        snprintf(range, sizeof range, "(block %llu)", (unsigned long long)e->bad_from);
    snprintf(rest, sizeof rest, "makes blocks %llu..%llu unreadable",
             (unsigned long long)e->bad_from, (unsigned long long)(e->bad_to - 1));
    static uint8_t got[4096], want[4096];
    assert_int_equal(kl_log_length(log), e->len);
    uint64_t get_bad = 0;
    for (uint64_t i = 0; i < e->len; i++) {
        size_t n = 0;
        int rc = kl_log_get(log, i, got, sizeof got, &n);
        int must = (i >= e->bad_from && i < e->bad_to) || (i >= e->bad2_from && i < e->bad2_to);
        int may = i >= e->bad_to && i < e->may_to;
        if (rc == KL_ECORRUPT && (must || may)) {
            if (e->exact && !names(kl_log_last_error(log), range, rest))
                fail_msg("block %llu: \"%s\"; expected it to name %s", (unsigned long long)i,
                         kl_log_last_error(log), range);
            get_bad++;
            continue;
        }
        if (must || rc != 0)
            fail_msg("block %llu: %d %s (expected %s)", (unsigned long long)i, rc,
                     rc ? kl_log_last_error(log) : "", must ? "KL_ECORRUPT" : "it");
        size_t wn = want_block(e, i, want);
        assert_int_equal(n, wn);
        assert_memory_equal(got, want, wn);
    }
    kl_iter *it = NULL;
    assert_int_equal(kl_iter_open(log, 0, UINT64_MAX, &it), 0);
    kl_record rec;
    uint64_t served = 0;
    int rc, errors = 0;
    while ((rc = kl_iter_next(it, &rec)) != 0) {
        if (rc == KL_ECORRUPT) {
            assert_true(!e->exact || names(kl_log_last_error(log), range, rest));
            errors++;
            continue;
        }
        assert_int_equal(rc, 1);
        assert_false(rec.index >= e->bad_from && rec.index < e->bad_to);
        assert_false(rec.index >= e->bad2_from && rec.index < e->bad2_to);
        size_t wn = want_block(e, rec.index, want);
        assert_int_equal(rec.size, wn);
        assert_memory_equal(rec.data, want, wn);
        served++;
    }
    kl_iter_close(it);
    assert_int_equal(served, e->len - get_bad);
    if (!e->exact)
        return;
    assert_int_equal(errors, 1);
    uint64_t first_bad = 0;
    assert_int_not_equal(kl_log_verify(log, NULL, NULL, &first_bad), 0);
    if (first_bad != e->bad_from)
        fail_msg("verify names block %llu (%s), not %llu", (unsigned long long)first_bad,
                 kl_log_last_error(log), (unsigned long long)e->bad_from);
}

typedef struct fixture {
    char *dir;
    uint64_t firsts[64]; /* segment first blocks */
    size_t nsegs;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_new_log("resync", KL_FSYNC_NEVER);
    kl_log *log = tu_open(f->dir);
    assert_int_equal(tu_append_range(log, SEED, MAX_REC, 0, RECORDS, BATCH), 0);
    f->nsegs = log->nsegs;
    assert_true(f->nsegs >= 3 && f->nsegs <= 64);
    for (size_t i = 0; i < f->nsegs; i++)
        f->firsts[i] = log->segs[i]->first;
    assert_int_equal(kl_log_close(log), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_rm_log(f->dir);
    free(f);
    return 0;
}

/* Segment i's .log and .idx paths (4200 bytes each), and its batches (up to 4096): how many. */
static size_t seg_files(const fixture *f, size_t i, char *path, char *idx, batch_pos *b) {
    tu_seg_path(path, 4200, f->dir, f->firsts[i], "log");
    tu_seg_path(idx, 4200, f->dir, f->firsts[i], "idx");
    return seg_batches(path, b, 4096);
}

/* Zero (or flip a bit of) the header of batch b of the segment at path; *saved gets its bytes. */
static void damage_header(const char *path, const batch_pos *b, int zero,
                          uint8_t saved[KL_BATCH_HEADER_BYTES]) {
    size_t len = 0;
    uint8_t *all = tu_read_file(path, &len);
    memcpy(saved, all + b->pos, KL_BATCH_HEADER_BYTES);
    free(all);
    if (zero)
        tu_write_at(path, b->pos, (uint8_t[KL_BATCH_HEADER_BYTES]){0}, KL_BATCH_HEADER_BYTES);
    else
        tu_flip(path, b->pos + 17, 0x10); /* the count */
}

static void damaged_case(fixture *f, size_t seg, int drop_index, int readonly) {
    char path[4200], idx[4200];
    static batch_pos b[4096];
    size_t n = seg_files(f, seg, path, idx, b);
    assert_true(n > 40);
    /* in the middle, then the first and the last of the segment, zeroed or flipped */
    size_t picks[] = {n / 2, n / 3 + 1, 0, n - 1};
    for (size_t k = 0; k < sizeof picks / sizeof picks[0]; k++) {
        uint8_t saved[KL_BATCH_HEADER_BYTES];
        const batch_pos *d = &b[picks[k]];
        damage_header(path, d, k % 2 == 0, saved);
        if (drop_index)
            unlink(idx);
        kl_log *log = readonly ? tu_open_ro(f->dir) : tu_open(f->dir);
        expect e = only(RECORDS, d->first, d->first + d->count);
        expect_blocks(log, &e);
        assert_int_equal(kl_log_close(log), 0);
        tu_write_at(path, d->pos, saved, sizeof saved);
    }
    kl_log *log = tu_open_ro(f->dir);
    tu_expect_records(log, SEED, MAX_REC, RECORDS);
    assert_int_equal(kl_log_close(log), 0);
}

static void test_a_damaged_header_in_a_sealed_segment_costs_only_its_blocks(void **state) {
    fixture *f = *state;
    for (int ro = 0; ro < 2; ro++) {
        damaged_case(f, 1, 0, ro); /* the saved index: a lookup goes past the damage */
        damaged_case(f, 1, 1, ro); /* no index: its rebuild does */
    }
}

static void test_a_damaged_header_in_the_active_segment_costs_only_its_blocks(void **state) {
    fixture *f = *state;
    for (int ro = 0; ro < 2; ro++) {
        damaged_case(f, f->nsegs - 1, 0, ro);
        damaged_case(f, f->nsegs - 1, 1, ro); /* recovery walks the whole segment */
    }
}

/*
 * Every other batch of a sealed segment in turn (every sixth under the
 * sanitizers), its index gone: one zeroed header never costs another
 * batch's blocks.
 */
static void test_each_header_of_a_segment_in_turn(void **state) {
    fixture *f = *state;
    char path[4200], idx[4200];
    static batch_pos b[4096];
    size_t n = seg_files(f, 1, path, idx, b);
    for (size_t i = 0; i < n; i += 2 * tu_sweep_stride()) {
        uint8_t saved[KL_BATCH_HEADER_BYTES];
        damage_header(path, &b[i], 1, saved);
        unlink(idx);
        kl_log *log = tu_open_ro(f->dir);
        expect e = only(RECORDS, b[i].first, b[i].first + b[i].count);
        expect_blocks(log, &e);
        assert_int_equal(kl_log_close(log), 0);
        tu_write_at(path, b[i].pos, saved, sizeof saved);
    }
}

/*
 * A reader refreshes to batches a writer added since its open, one of
 * which has a damaged header: the refresh indexes past it.
 */
static void test_a_refresh_goes_past_a_damaged_header(void **state) {
    fixture *f = *state;
    kl_log *ro = tu_open_ro(f->dir);
    kl_log *w = tu_open(f->dir);
    uint64_t to = RECORDS + 60 * BATCH;
    assert_int_equal(tu_append_range(w, SEED, MAX_REC, RECORDS, to, BATCH), 0);
    assert_int_equal(w->nsegs, f->nsegs); /* no roll: the reader walks the active segment */
    kl_info info;
    assert_int_equal(kl_log_info(w, &info), 0); /* signs the newest state: verify needs it */
    char path[4200];
    tu_seg_path(path, sizeof path, f->dir, f->firsts[f->nsegs - 1], "log");
    static batch_pos b[4096];
    size_t n = seg_batches(path, b, 4096);
    const batch_pos *d = NULL;
    for (size_t i = 0; i < n && !d; i++)
        if (b[i].first >= RECORDS + 30 * BATCH)
            d = &b[i];
    assert_non_null(d);
    uint8_t saved[KL_BATCH_HEADER_BYTES];
    damage_header(path, d, 1, saved);
    assert_int_equal(kl_log_refresh(ro), 1);
    expect e = only(to, d->first, d->first + d->count);
    expect_blocks(ro, &e);
    tu_write_at(path, d->pos, saved, sizeof saved);
    assert_int_equal(kl_log_close(w), 0);
    assert_int_equal(kl_log_close(ro), 0);
}

/*
 * The last block of a batch holds a whole batch of its own, framed as the
 * engine frames one, naming the block it stands in for and ending exactly
 * where the real next batch begins. With the real batch's header damaged,
 * that block is never served as the block it names: the chunk checksums
 * of the damaged batch do not line up with a body ending there.
 */
static void test_a_block_holding_a_batch_is_not_taken_for_one(void **state) {
    fixture *f = *state;
    kl_log *w = tu_open(f->dir);
    uint64_t at = kl_log_length(w);
    static uint8_t fake[512], rec0[MAX_REC], rec1[MAX_REC];
    const char *lie = "not the block that was appended";
    kl_block inner = {lie, strlen(lie)};
    size_t flen = kl_batch_frame(fake, at + 2, &inner, 1, inner.size, 1234);
    assert_true(flen < sizeof fake);
    kl_block blocks[3] = {{rec0, tu_record(SEED, at, MAX_REC, rec0)},
                          {rec1, tu_record(SEED, at + 1, MAX_REC, rec1)},
                          {fake, flen}};
    uint64_t first = 0;
    assert_int_equal(kl_log_append(w, blocks, 3, &first), 0);
    assert_int_equal(first, at);
    uint64_t to = at + 3 + 10 * BATCH;
    assert_int_equal(tu_append_range(w, SEED, MAX_REC, at + 3, to, BATCH), 0);
    assert_int_equal(kl_log_close(w), 0);

    char path[4200], idx[4200];
    static batch_pos b[4096];
    size_t n = seg_files(f, f->nsegs - 1, path, idx, b);
    const batch_pos *d = NULL;
    for (size_t i = 0; i < n && !d; i++)
        if (b[i].first == at)
            d = &b[i];
    assert_non_null(d);
    assert_int_equal(d->count, 3);
    for (int drop = 0; drop < 2; drop++) {
        uint8_t saved[KL_BATCH_HEADER_BYTES];
        damage_header(path, d, 1, saved);
        if (drop)
            unlink(idx);
        kl_log *ro = tu_open_ro(f->dir);
        /* the tail from the damaged batch on is unindexed when the index is gone */
        expect e = only(to, at, at + 3);
        e.special_at = at + 2;
        e.special = fake;
        e.special_len = flen;
        expect_blocks(ro, &e);
        assert_int_equal(kl_log_close(ro), 0);
        tu_write_at(path, d->pos, saved, sizeof saved);
    }
    kl_log *ro = tu_open_ro(f->dir);
    uint8_t got[512];
    size_t gn = 0;
    assert_int_equal(kl_log_get(ro, at + 2, got, sizeof got, &gn), 0);
    assert_int_equal(gn, flen);
    assert_memory_equal(got, fake, flen);
    assert_int_equal(kl_log_close(ro), 0);
}

/*
 * Two headers in a row damaged (a lost page can take several): not bridged.
 * Their blocks, and those up to the next index entry, report the damage;
 * every block served is still the right one.
 */
static void test_two_damaged_headers_in_a_row_are_reported_never_served_wrong(void **state) {
    fixture *f = *state;
    char path[4200];
    tu_seg_path(path, sizeof path, f->dir, f->firsts[1], "log");
    static batch_pos b[4096];
    size_t n = seg_batches(path, b, 4096);
    size_t i = n / 2;
    uint8_t saved[2][KL_BATCH_HEADER_BYTES];
    damage_header(path, &b[i], 1, saved[0]);
    damage_header(path, &b[i + 1], 1, saved[1]);
    kl_log *log = tu_open_ro(f->dir);
    expect e = {
        RECORDS, b[i].first, b[i + 1].first + b[i + 1].count, 0, 0, 0, f->firsts[2], UINT64_MAX,
        NULL,    0};
    expect_blocks(log, &e);
    assert_int_equal(kl_log_close(log), 0);
    tu_write_at(path, b[i].pos, saved[0], KL_BATCH_HEADER_BYTES);
    tu_write_at(path, b[i + 1].pos, saved[1], KL_BATCH_HEADER_BYTES);
}

/*
 * A bridged damaged header, then, six batches on, two damaged in a row
 * that cannot be bridged: the index rebuild goes past the first and stops
 * at the pair. The batches between stay readable, by get and by the
 * iterator (a lookup there uses where the rebuild stopped as its known
 * point); from the pair on the blocks are reported.
 */
static void test_a_bridged_header_before_one_that_is_not(void **state) {
    fixture *f = *state;
    char path[4200], idx[4200];
    static batch_pos b[4096];
    size_t n = seg_files(f, 1, path, idx, b);
    size_t i = n / 3;
    assert_true(i + 8 < n);
    uint8_t saved[3][KL_BATCH_HEADER_BYTES];
    size_t at[3] = {i, i + 6, i + 7};
    for (int k = 0; k < 3; k++)
        damage_header(path, &b[at[k]], 1, saved[k]);
    unlink(idx);
    kl_log *log = tu_open_ro(f->dir);
    expect e = {RECORDS,      b[i].first, b[i + 1].first, 0,    b[i + 6].first,
                f->firsts[2], 0,          UINT64_MAX,     NULL, 0};
    expect_blocks(log, &e);
    assert_int_equal(kl_log_close(log), 0);
    for (int k = 0; k < 3; k++)
        tu_write_at(path, b[at[k]].pos, saved[k], KL_BATCH_HEADER_BYTES);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_damaged_header_in_a_sealed_segment_costs_only_its_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_damaged_header_in_the_active_segment_costs_only_its_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_header_of_a_segment_in_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_refresh_goes_past_a_damaged_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_block_holding_a_batch_is_not_taken_for_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_bridged_header_before_one_that_is_not, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_two_damaged_headers_in_a_row_are_reported_never_served_wrong, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
