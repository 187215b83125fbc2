/*
 * test_time_index.c - the time index (index/time_index.c, engine/seek_time.c,
 * docs/FORMAT.md "segments/<first>.tix") and kl_log_seek_time.
 *
 * What this proves: batch timestamps never go backwards, whatever the clock
 * does (plain, zstd and lent batches, across a reopen and a truncation);
 * kl_log_seek_time gives the first block of the first batch at or after a
 * time, equal to a scan of the records' timestamps, for times before,
 * equal to, between and after the batches' over dozens of segments, on
 * writable and read-only handles and after a reopen; every segment has a
 * .tix; a .tix deleted, torn, with flipped bytes, a wrong magic or garbage
 * gives the same answers and is rebuilt byte for byte as it was; a time
 * entry whose timestamp was changed but stays in order is caught when a
 * search lands on it; kl_tidx_find agrees with a linear scan and a sealed
 * file fails its check after any flipped bit.
 *
 * The clock is the test's own (kl_test_set_clock), so timestamps are exact.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/segment.h"
#include "engine/util.h"
#include "index/time_index.h"

#define BASE_MS  1764756000000ull /* 2025-12-03T10:00:00Z */
#define NBATCH   1500
#define MAX_SIZE 700
#define SEED     77

static _Atomic uint64_t fake_ms;

static uint64_t fake_clock(void) {
    return atomic_load(&fake_ms);
}

static int setup(void **state) {
    (void)state;
    kl_test_set_clock(fake_clock);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    kl_test_set_clock(NULL);
    return 0;
}

/* The clock for batch i: forward in steps, repeating a time, now and then stepping back. */
static uint64_t clock_of(uint64_t i) {
    uint64_t t = BASE_MS + 5 * i - (i % 5 == 4 ? 5 : 0); /* every 5th repeats the previous */
    return i % 13 == 12 ? t - 100 : t;                   /* every 13th is 100 ms back */
}

/* Append one batch of `count` records from `first` with the clock at ms. */
static void append_at(kl_log *log, uint64_t ms, uint64_t first, size_t count) {
    static uint8_t buf[8 * (MAX_SIZE + 8)];
    kl_block blocks[8];
    size_t off = 0;
    assert_true(count <= 8);
    for (size_t k = 0; k < count; k++) {
        size_t n = tu_record(SEED, first + k, MAX_SIZE, buf + off);
        blocks[k] = (kl_block){buf + off, n};
        off += n;
    }
    atomic_store(&fake_ms, ms);
    uint64_t at = 0;
    assert_int_equal(kl_log_append(log, blocks, count, &at), 0);
    assert_int_equal(at, first);
}

/* The timestamp of every block of log (*ts malloc'ed, kl_log_length entries). */
static uint64_t *timestamps(kl_log *log) {
    uint64_t n = kl_log_length(log);
    uint64_t *ts = malloc((n + 1) * sizeof *ts);
    assert_non_null(ts);
    kl_iter *it = NULL;
    assert_int_equal(kl_iter_open(log, 0, n, &it), 0);
    kl_record rec;
    for (uint64_t i = 0; i < n; i++) {
        assert_int_equal(kl_iter_next(it, &rec), 1);
        assert_int_equal(rec.index, i);
        ts[i] = rec.timestamp_ms;
    }
    kl_iter_close(it);
    return ts;
}

/* The answer a scan gives: the first block whose timestamp is >= t, else n (ts is sorted). */
static uint64_t scan(const uint64_t *ts, uint64_t n, uint64_t t) {
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (ts[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* kl_log_seek_time equals the scan for every time around every block's, and the extremes. */
static void expect_seeks(kl_log *log, const uint64_t *ts, uint64_t n, const char *what) {
    assert_int_equal(kl_log_length(log), n);
    uint64_t probes[] = {0, 1, BASE_MS - 1, BASE_MS, UINT64_MAX};
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        uint64_t got = 12345;
        assert_int_equal(kl_log_seek_time(log, probes[k], &got), 0);
        if (got != scan(ts, n, probes[k]))
            fail_msg("%s: seek(%llu) = %llu, want %llu", what, (unsigned long long)probes[k],
                     (unsigned long long)got, (unsigned long long)scan(ts, n, probes[k]));
    }
    for (uint64_t i = 0; i < n; i++) {
        if (i > 0 && ts[i] == ts[i - 1])
            continue;
        for (uint64_t t = ts[i] - 1; t <= ts[i] + 1; t++) {
            uint64_t want = scan(ts, n, t), got = 12345;
            assert_int_equal(kl_log_seek_time(log, t, &got), 0);
            if (got != want)
                fail_msg("%s: seek(%llu) = %llu, want %llu", what, (unsigned long long)t,
                         (unsigned long long)got, (unsigned long long)want);
        }
    }
}

/* A log of NBATCH batches of 1..4 records on the stepping clock, over many segments. */
static char *make_log(uint64_t *n_out) {
    char *dir = tu_new_log("tix", KL_FSYNC_NEVER);
    kl_log *log = tu_open(dir);
    uint64_t n = 0;
    for (uint64_t i = 0; i < NBATCH; i++) {
        size_t count = 1 + (size_t)(i % 4);
        append_at(log, clock_of(i), n, count);
        n += count;
    }
    assert_int_equal(kl_log_close(log), 0);
    *n_out = n;
    return dir;
}

/* The segments' first indexes, from the .log files (*n of them; free the array). */
static uint64_t *segments(const char *dir, size_t *n) {
    uint64_t *firsts = NULL;
    char segdir[4096];
    snprintf(segdir, sizeof segdir, "%s/segments", dir);
    assert_int_equal(kl_seg_list(segdir, &firsts, n), 0);
    return firsts;
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_timestamps_never_go_backwards(void **state) {
    (void)state;
    char *dir = tu_new_log("tixclock", KL_FSYNC_NEVER);
    kl_log *log = tu_open(dir);
    static uint8_t big[32 * 1024]; /* at least LEND_MIN_BYTES: written from the caller's memory */
    kl_block one = {"x", 1}, lent = {big, sizeof big};
    uint64_t clock[] = {1000, 2000, 500, 1500, 3000}, want[] = {1000, 2000, 2000, 2000, 3000};
    for (int i = 0; i < 5; i++) {
        atomic_store(&fake_ms, clock[i]);
        assert_int_equal(kl_log_append(log, i == 3 ? &lent : &one, 1, NULL), 0);
    }
    uint64_t *ts = timestamps(log);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ts[i], want[i]);
    free(ts);
    uint64_t at = 99;
    assert_int_equal(kl_log_seek_time(log, 2000, &at), 0);
    assert_int_equal(at, 1);
    assert_int_equal(kl_log_seek_time(log, 2001, &at), 0);
    assert_int_equal(at, 4);
    assert_int_equal(kl_log_seek_time(log, 3001, &at), 0);
    assert_int_equal(at, 5);
    assert_int_equal(kl_log_close(log), 0);

    /* After a reopen the floor is the last batch's time, read back from its header. */
    log = tu_open(dir);
    atomic_store(&fake_ms, 100);
    assert_int_equal(kl_log_append(log, &one, 1, NULL), 0);
    ts = timestamps(log);
    assert_int_equal(ts[5], 3000);
    free(ts);
    assert_int_equal(kl_log_close(log), 0);

    /* After a truncation the floor is the new last batch's time. */
    assert_int_equal(kl_truncate(dir, 2, NULL), 0);
    log = tu_open(dir);
    atomic_store(&fake_ms, 10);
    assert_int_equal(kl_log_append(log, &one, 1, NULL), 0);
    ts = timestamps(log);
    assert_int_equal(ts[2], 2000);
    free(ts);
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(dir);
}

static void test_zstd_batches_are_stamped_the_same_way(void **state) {
    (void)state;
    char *root = tu_tmpdir("tixzstd"), *dir = NULL;
    assert_true(asprintf(&dir, "%s/log", root) > 0);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.fsync_mode = KL_FSYNC_NEVER;
    cfg.codec = KL_CODEC_ZSTD;
    tu_create(dir, &cfg);
    kl_log *log = tu_open(dir);
    static uint8_t zeros[8192]; /* compresses: stored as zstd */
    kl_block b = {zeros, sizeof zeros};
    uint64_t clock[] = {7000, 6000, 9000};
    for (int i = 0; i < 3; i++) {
        atomic_store(&fake_ms, clock[i]);
        assert_int_equal(kl_log_append(log, &b, 1, NULL), 0);
    }
    uint64_t *ts = timestamps(log), at = 0;
    assert_int_equal(ts[1], 7000);
    assert_int_equal(ts[2], 9000);
    assert_int_equal(kl_log_seek_time(log, 7001, &at), 0);
    assert_int_equal(at, 2);
    free(ts);
    assert_int_equal(kl_log_close(log), 0);
    tu_rmrf(root);
    free(root);
    free(dir);
}

static void test_empty_log_seeks_to_zero(void **state) {
    (void)state;
    char *dir = tu_new_log("tixempty", KL_FSYNC_NEVER);
    kl_log *log = tu_open(dir);
    uint64_t at = 99;
    assert_int_equal(kl_log_seek_time(log, 0, &at), 0);
    assert_int_equal(at, 0);
    assert_int_equal(kl_log_seek_time(log, UINT64_MAX, &at), 0);
    assert_int_equal(at, 0);
    assert_int_equal(kl_log_seek_time(NULL, 0, &at), KL_EINVAL);
    assert_int_equal(kl_log_seek_time(log, 0, NULL), KL_EINVAL);
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(dir);
}

static void test_seek_equals_a_scan_across_segments(void **state) {
    (void)state;
    uint64_t n = 0;
    char *dir = make_log(&n);
    size_t nseg = 0;
    uint64_t *firsts = segments(dir, &nseg);
    assert_true(nseg >= 10); /* the search over segments is exercised */
    for (size_t i = 0; i < nseg; i++) {
        char path[4096];
        tu_seg_path(path, sizeof path, dir, firsts[i], "tix");
        assert_true(tu_file_size(path) > KL_TIX_HEADER_BYTES);
    }
    free(firsts);
    kl_log *log = tu_open(dir);
    uint64_t *ts = timestamps(log);
    for (uint64_t i = 1; i < n; i++) /* the clock stepped back; the stamps did not */
        assert_true(ts[i] >= ts[i - 1]);
    expect_seeks(log, ts, n, "writable");
    kl_log *ro = tu_open_ro(dir);
    expect_seeks(ro, ts, n, "read-only beside the writer");
    kl_log_close(ro);
    /* grow, and the new batches are found on both the writer and a new reader */
    append_at(log, BASE_MS + 5 * NBATCH + 1000, n, 3);
    free(ts);
    ts = timestamps(log);
    expect_seeks(log, ts, n + 3, "writable, grown");
    assert_int_equal(kl_log_close(log), 0);
    ro = tu_open_ro(dir);
    expect_seeks(ro, ts, n + 3, "read-only after a reopen");
    kl_log_close(ro);
    free(ts);
    tu_rm_log(dir);
}

typedef enum { DELETE, TORN, FLIP_ENTRY, WRONG_MAGIC, GARBAGE, NDAMAGE } damage;
static const char *damage_names[] = {"deleted", "torn", "flipped", "wrong magic", "garbage"};

/* Damage one .tix file in the given way. */
static void damage_file(const char *path, damage d, uint64_t seed) {
    size_t len = 0;
    uint8_t *b = slurp(path, &len);
    assert_true(len >= KL_TIX_HEADER_BYTES + 2 * KL_TIX_ENTRY_BYTES);
    size_t entries = (len - KL_TIX_HEADER_BYTES) / KL_TIX_ENTRY_BYTES;
    size_t e = KL_TIX_HEADER_BYTES + (size_t)(seed % entries) * KL_TIX_ENTRY_BYTES;
    switch (d) {
    case DELETE:
        assert_int_equal(unlink(path), 0);
        free(b);
        return;
    case TORN: /* cut inside an entry */
        len = e + 5;
        break;
    case FLIP_ENTRY: /* the rel_index of one entry: out of step with the .idx */
        b[e + 8] ^= 0x10;
        break;
    case WRONG_MAGIC:
        b[3] ^= 0x01;
        break;
    default:
        for (size_t i = 0; i < len; i++)
            b[i] = (uint8_t)tu_rand(&seed);
        break;
    }
    spit(path, b, len);
    free(b);
}

static void test_damaged_time_index_is_rebuilt_with_the_same_answers(void **state) {
    (void)state;
    uint64_t n = 0;
    char *dir = make_log(&n);
    kl_log *log = tu_open_ro(dir);
    uint64_t *ts = timestamps(log);
    kl_log_close(log);
    size_t nseg = 0;
    uint64_t *firsts = segments(dir, &nseg);
    uint8_t **orig = calloc(nseg, sizeof *orig);
    size_t *orig_len = calloc(nseg, sizeof *orig_len);
    assert_non_null(orig);
    assert_non_null(orig_len);
    char path[4096];
    for (size_t i = 0; i < nseg; i++) {
        tu_seg_path(path, sizeof path, dir, firsts[i], "tix");
        orig[i] = slurp(path, &orig_len[i]);
    }
    for (int d = 0; d < NDAMAGE; d++) {
        for (size_t i = 0; i < nseg; i++) {
            tu_seg_path(path, sizeof path, dir, firsts[i], "tix");
            damage_file(path, (damage)d, 1000 * (uint64_t)d + i);
        }
        log = tu_open_ro(dir);
        expect_seeks(log, ts, n, damage_names[d]);
        kl_log_close(log);
        log = tu_open(dir); /* a writable handle writes what it rebuilds */
        expect_seeks(log, ts, n, damage_names[d]);
        assert_int_equal(kl_log_close(log), 0);
        for (size_t i = 0; i < nseg; i++) {
            tu_seg_path(path, sizeof path, dir, firsts[i], "tix");
            size_t len = 0;
            uint8_t *b = slurp(path, &len);
            if (len != orig_len[i] || memcmp(b, orig[i], len) != 0)
                fail_msg("%s: %s is not rebuilt as it was", damage_names[d], path);
            free(b);
        }
    }
    for (size_t i = 0; i < nseg; i++)
        free(orig[i]);
    free(orig);
    free(orig_len);
    free(firsts);
    free(ts);
    tu_rm_log(dir);
}

/*
 * Time entries moved earlier but still in order, in a sealed file whose
 * checksums were made to hold again, pass every check of the file (its
 * first and last entries are right); the search that lands on one checks it
 * against its batch and falls back.
 */
static void test_a_wrong_time_entry_is_caught_where_the_search_lands(void **state) {
    (void)state;
    uint64_t n = 0;
    char *dir = make_log(&n);
    kl_log *log = tu_open_ro(dir);
    uint64_t *ts = timestamps(log);
    kl_log_close(log);
    size_t nseg = 0;
    uint64_t *firsts = segments(dir, &nseg);
    char path[4096];
    tu_seg_path(path, sizeof path, dir, firsts[1], "tix"); /* a sealed segment */
    size_t len = 0;
    uint8_t *b = slurp(path, &len);
    size_t entries = (len - KL_TIX_HEADER_BYTES) / KL_TIX_ENTRY_BYTES;
    assert_true(entries >= 4);
    for (size_t i = 1; i + 1 < entries; i++) { /* each middle entry: its predecessor's time */
        uint8_t *e = b + KL_TIX_HEADER_BYTES + i * KL_TIX_ENTRY_BYTES;
        memcpy(e, e - KL_TIX_ENTRY_BYTES, 8);
    }
    kl_store64(b + 40, XXH3_64bits(b + KL_TIX_HEADER_BYTES, len - KL_TIX_HEADER_BYTES));
    kl_store64(b + 56, XXH3_64bits(b, 56));
    spit(path, b, len);
    free(b);
    log = tu_open_ro(dir);
    expect_seeks(log, ts, n, "entries moved earlier");
    kl_log_close(log);
    free(firsts);
    free(ts);
    tu_rm_log(dir);
}

static void test_truncation_leaves_no_stale_time_index(void **state) {
    (void)state;
    uint64_t n = 0;
    char *dir = make_log(&n);
    size_t nseg = 0;
    uint64_t *firsts = segments(dir, &nseg);
    uint64_t cut = firsts[nseg / 2] + 2; /* inside a segment: its batch is re-framed */
    free(firsts);
    assert_int_equal(kl_truncate(dir, cut, NULL), 0);
    kl_log *log = tu_open(dir);
    uint64_t *ts = timestamps(log);
    expect_seeks(log, ts, cut, "truncated");
    /* grow again with the clock far back: the stamps go on from the last batch */
    append_at(log, BASE_MS, cut, 2);
    free(ts);
    ts = timestamps(log);
    assert_true(ts[cut] >= ts[cut - 1]);
    expect_seeks(log, ts, cut + 2, "truncated, grown");
    assert_int_equal(kl_log_close(log), 0);
    firsts = segments(dir, &nseg);
    assert_true(firsts[nseg - 1] <= cut);
    free(firsts);
    char path[4096];
    snprintf(path, sizeof path, "%s/segments", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) { /* every .tix belongs to a segment that is there */
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".tix") == 0)
            assert_true(strtoull(de->d_name, NULL, 10) < cut);
    }
    closedir(d);
    free(ts);
    tu_rm_log(dir);
}

/* ---- the module alone ---- */

static void test_find_is_the_last_entry_before_the_time(void **state) {
    (void)state;
    uint64_t seed = 5;
    for (int round = 0; round < 200; round++) {
        kl_tidx x;
        assert_int_equal(kl_tidx_init(&x, 0, 64u * KL_IDX_INTERVAL_BYTES), 0);
        uint64_t n = tu_rand(&seed) % 40, t = tu_rand(&seed) % 3, tss[64];
        for (uint64_t i = 0; i < n; i++) {
            tss[i] = t;
            kl_tidx_note(&x, i * 3, t);
            t += tu_rand(&seed) % 3; /* equal times are common */
        }
        for (uint64_t q = 0; q <= t + 1; q++) {
            int64_t want = -1;
            for (uint64_t i = 0; i < n; i++)
                if (tss[i] < q)
                    want = (int64_t)i;
            assert_int_equal(kl_tidx_find(&x, n, q), want);
        }
        kl_tidx_free(&x, NULL);
    }
}

static void test_sealed_file_fails_its_check_after_any_flipped_bit(void **state) {
    (void)state;
    kl_tidx x;
    assert_int_equal(kl_tidx_init(&x, 4096, 16u * KL_IDX_INTERVAL_BYTES), 0);
    for (uint64_t i = 0; i < 5; i++)
        kl_tidx_note(&x, i * 10, 1000 + i);
    uint8_t b[KL_TIX_HEADER_BYTES + 5 * KL_TIX_ENTRY_BYTES];
    kl_tidx_header(b, &x, 1, 77777);
    memcpy(b + KL_TIX_HEADER_BYTES, x.ent, 5 * KL_TIX_ENTRY_BYTES);
    uint64_t n = 0;
    assert_int_equal(kl_tidx_check_sealed(b, sizeof b, 4096, 77777, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(kl_tidx_check_sealed(b, sizeof b, 4097, 77777, &n), KL_ECORRUPT);
    assert_int_equal(kl_tidx_check_sealed(b, sizeof b, 4096, 77776, &n), KL_ECORRUPT);
    assert_int_equal(kl_tidx_check_sealed(b, sizeof b - 1, 4096, 77777, &n), KL_ECORRUPT);
    for (size_t bit = 0; bit < 8 * sizeof b; bit++) {
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(kl_tidx_check_sealed(b, sizeof b, 4096, 77777, &n), KL_ECORRUPT);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* the same bytes load as five in-order entries; an active header loads them too */
    kl_tidx y;
    assert_int_equal(kl_tidx_init(&y, 4096, 16u * KL_IDX_INTERVAL_BYTES), 0);
    kl_tidx_parse(&y, b, sizeof b, UINT64_MAX);
    assert_int_equal(kl_tidx_count(&y), 5);
    kl_tidx_parse(&y, b, sizeof b, 3);
    assert_int_equal(kl_tidx_count(&y), 3);
    b[KL_TIX_HEADER_BYTES + 2 * KL_TIX_ENTRY_BYTES] = 0; /* entry 2's time below entry 1's */
    kl_tidx_parse(&y, b, sizeof b, UINT64_MAX);
    assert_int_equal(kl_tidx_count(&y), 2);
    kl_tidx_free(&y, NULL);
    kl_tidx_free(&x, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamps_never_go_backwards),
        cmocka_unit_test(test_zstd_batches_are_stamped_the_same_way),
        cmocka_unit_test(test_empty_log_seeks_to_zero),
        cmocka_unit_test(test_seek_equals_a_scan_across_segments),
        cmocka_unit_test(test_damaged_time_index_is_rebuilt_with_the_same_answers),
        cmocka_unit_test(test_a_wrong_time_entry_is_caught_where_the_search_lands),
        cmocka_unit_test(test_truncation_leaves_no_stale_time_index),
        cmocka_unit_test(test_find_is_the_last_entry_before_the_time),
        cmocka_unit_test(test_sealed_file_fails_its_check_after_any_flipped_bit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
