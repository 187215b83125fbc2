/*
 * test_segment.c - segment names, file headers and listing (engine/segment.c,
 * docs/FORMAT.md "segments/<first>.log").
 *
 * What this proves: a segment is named by its first block index in exactly
 * 20 zero-padded digits (so names sort in block order); the 64-byte file
 * header round-trips and sits where FORMAT.md says; a header with the wrong
 * first index, magic, version, size or checksum, or any single-bit flip, or
 * a truncated one, is refused (a file copied to the wrong name is never read
 * as someone else's blocks); kl_seg_list returns exactly the segment files of
 * a directory, sorted numerically, ignoring every other name.
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/segment.h"
#include "engine/util.h"

static void test_seg_path_has_20_zero_padded_digits(void **state) {
    (void)state;
    char out[256];
    kl_seg_path(out, sizeof out, "/d/segments", 0, "log");
    assert_string_equal(out, "/d/segments/00000000000000000000.log");
    kl_seg_path(out, sizeof out, "seg", 1, "idx");
    assert_string_equal(out, "seg/00000000000000000001.idx");
    kl_seg_path(out, sizeof out, "s", 52113, "log");
    assert_string_equal(out, "s/00000000000000052113.log");
    kl_seg_path(out, sizeof out, "s", UINT64_MAX, "log");
    assert_string_equal(out, "s/18446744073709551615.log");
    kl_seg_path(out, sizeof out, "s", 10000000000000000000ull, "tix");
    assert_string_equal(out, "s/10000000000000000000.tix");
    /* Exactly the room it needs is enough. */
    char tight[sizeof "s/00000000000000000042.log"];
    kl_seg_path(tight, sizeof tight, "s", 42, "log");
    assert_string_equal(tight, "s/00000000000000000042.log");
    /* Names sort in block order: compare the names of increasing indexes. */
    char prev[64], cur[64];
    uint64_t st = 3;
    kl_seg_path(prev, sizeof prev, "s", 0, "log");
    uint64_t v = 0;
    for (int i = 0; i < 1000; i++) {
        v += 1 + tu_rand(&st) % (1ull << (i % 60));
        kl_seg_path(cur, sizeof cur, "s", v, "log");
        assert_int_equal(strlen(cur), strlen("s/") + KL_SEG_NAME_DIGITS + strlen(".log"));
        assert_true(strcmp(prev, cur) < 0);
        memcpy(prev, cur, sizeof cur);
        if (v > UINT64_MAX / 2)
            break;
    }
}

static void test_seg_header_round_trips(void **state) {
    (void)state;
    uint8_t *p = malloc(KL_SEG_HEADER_BYTES); /* exactly 64 bytes: ASan sees overreads */
    assert_non_null(p);
    const uint64_t firsts[] = {0, 1, 52113, UINT64_MAX};
    for (size_t i = 0; i < sizeof firsts / sizeof firsts[0]; i++) {
        kl_seg_header_encode(p, firsts[i], 1700000000000ull + i);
        assert_memory_equal(p, "KLSEGMNT", 8);
        assert_int_equal(kl_load32(p + 8), 1);
        assert_int_equal(kl_load32(p + 12), 64);
        assert_int_equal(kl_load64(p + 16), firsts[i]);
        assert_int_equal(kl_load64(p + 24), 1700000000000ull + i);
        for (int k = 32; k < 56; k++)
            assert_int_equal(p[k], 0);
        assert_int_equal(kl_load64(p + 56), XXH3_64bits(p, 56));
        assert_int_equal(kl_seg_header_decode(p, KL_SEG_HEADER_BYTES, firsts[i]), 0);
        /* More bytes available (the batches that follow) changes nothing. */
        assert_int_equal(kl_seg_header_decode(p, 1u << 20, firsts[i]), 0);
    }
    free(p);
}

static void test_seg_header_with_wrong_first_index_is_refused(void **state) {
    (void)state;
    uint8_t p[KL_SEG_HEADER_BYTES];
    kl_seg_header_encode(p, 1000, 5);
    const uint64_t wrong[] = {0, 999, 1001, 1000 + (1ull << 32), UINT64_MAX};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        assert_int_equal(kl_seg_header_decode(p, sizeof p, wrong[i]), KL_ECORRUPT);
    assert_int_equal(kl_seg_header_decode(p, sizeof p, 1000), 0);
}

static void reseal(uint8_t *p) {
    kl_store64(p + 56, XXH3_64bits(p, 56));
}

static void test_seg_header_with_wrong_magic_version_or_size_is_refused(void **state) {
    (void)state;
    uint8_t good[KL_SEG_HEADER_BYTES], p[KL_SEG_HEADER_BYTES];
    kl_seg_header_encode(good, 7, 8);
    /* Each change is resealed, so the field check is what refuses. */
    memcpy(p, good, sizeof p);
    memcpy(p, "KLSEGMNX", 8);
    reseal(p);
    assert_int_equal(kl_seg_header_decode(p, sizeof p, 7), KL_ECORRUPT);
    memcpy(p, good, sizeof p);
    memcpy(p, "KAPPALOG", 8); /* a header file is not a segment */
    reseal(p);
    assert_int_equal(kl_seg_header_decode(p, sizeof p, 7), KL_ECORRUPT);
    const uint32_t versions[] = {0, 2, 0x100, UINT32_MAX};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        memcpy(p, good, sizeof p);
        kl_store32(p + 8, versions[i]);
        reseal(p);
        assert_int_equal(kl_seg_header_decode(p, sizeof p, 7), KL_ECORRUPT);
    }
    const uint32_t sizes[] = {0, 63, 65, 128};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memcpy(p, good, sizeof p);
        kl_store32(p + 12, sizes[i]);
        reseal(p);
        assert_int_equal(kl_seg_header_decode(p, sizeof p, 7), KL_ECORRUPT);
    }
    /* Control: resealing the unchanged header keeps it valid. */
    memcpy(p, good, sizeof p);
    reseal(p);
    assert_int_equal(kl_seg_header_decode(p, sizeof p, 7), 0);
}

static void test_every_bit_flip_of_a_seg_header_is_refused(void **state) {
    (void)state;
    uint8_t p[KL_SEG_HEADER_BYTES];
    kl_seg_header_encode(p, 123456789, 987654321);
    for (unsigned bit = 0; bit < 8 * KL_SEG_HEADER_BYTES; bit++) {
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (kl_seg_header_decode(p, sizeof p, 123456789) != KL_ECORRUPT)
            fail_msg("flip of segment header bit %u was accepted", bit);
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(kl_seg_header_decode(p, sizeof p, 123456789), 0);
}

static void test_truncated_seg_header_is_refused(void **state) {
    (void)state;
    uint8_t good[KL_SEG_HEADER_BYTES];
    kl_seg_header_encode(good, 0, 0);
    for (size_t avail = 0; avail < KL_SEG_HEADER_BYTES; avail++) {
        uint8_t *p = malloc(avail ? avail : 1);
        assert_non_null(p);
        memcpy(p, good, avail);
        assert_int_equal(kl_seg_header_decode(p, avail, 0), KL_ECORRUPT);
        free(p);
    }
}

static void touch(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    close(fd);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_seg_list_sorts_and_ignores_other_names(void **state) {
    (void)state;
    char *dir = tu_tmpdir("seglist");
    /* Valid segments, created in scrambled order, more than the initial capacity. */
    enum { N = 150 };
    uint64_t want[N + 3];
    size_t nwant = 0;
    uint64_t st = 99;
    for (int i = 0; i < N + 3; i++) {
        /* The extremes and the name FORMAT.md shows, then seeded values of every magnitude. */
        uint64_t v = i == 0   ? 0
                     : i == 1 ? UINT64_MAX
                     : i == 2 ? 52113
                              : tu_rand(&st) >> (tu_rand(&st) % 64);
        int dup = 0;
        for (size_t k = 0; k < nwant; k++)
            dup |= want[k] == v;
        if (dup)
            continue;
        want[nwant++] = v;
    }
    char name[64];
    for (size_t i = 0; i < nwant; i++) {
        snprintf(name, sizeof name, "%020llu.log", (unsigned long long)want[i]);
        touch(dir, name);
    }
    /* Names that are not segments. */
    static const char *junk[] = {
        "0000000000000000007.log",   /* 19 digits */
        "000000000000000000007.log", /* 21 digits */
        "0000000000000000000a.log",  /* not a digit */
        "-0000000000000000007.log",  /* sign */
        "+0000000000000000007.log",
        " 0000000000000000007.log",
        "00000000000000000008.idx", /* the index beside it */
        "00000000000000000007.tix",
        "00000000000000000007.log.tmp",
        "00000000000000000007.LOG",
        "00000000000000000007.loG", /* same length as a segment name, one letter off */
        "00000000000000000007.lox",
        "00000000000000000007xlog",
        "00000000000000000007.idx",
        "00000000000000000007.lo",
        "00000000000000000007log",
        "00000000000000000007.logx",
        "18446744073709551616.log", /* UINT64_MAX + 1 */
        "99999999999999999999.log", /* overflows */
        ".00000000000000000007.log",
        "header",
        "secret",
        "x.log",
        ".log",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        touch(dir, junk[i]);
    uint64_t *got = NULL;
    size_t n = 0;
    assert_int_equal(kl_seg_list(dir, &got, &n), 0);
    qsort(want, nwant, sizeof want[0], cmp_u64);
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i])
            fail_msg("entry %zu: got %llu, want %llu", i, (unsigned long long)got[i],
                     (unsigned long long)want[i]);
    }
    free(got);
    tu_rmrf(dir);
    free(dir);
}

static void test_seg_list_of_an_empty_dir_is_empty(void **state) {
    (void)state;
    char *dir = tu_tmpdir("segempty");
    touch(dir, "not-a-segment");
    uint64_t *got = NULL;
    size_t n = 99;
    assert_int_equal(kl_seg_list(dir, &got, &n), 0);
    assert_int_equal(n, 0);
    free(got);
    tu_rmrf(dir);
    free(dir);
}

static void test_seg_list_of_a_missing_dir_fails(void **state) {
    (void)state;
    char *dir = tu_tmpdir("segmissing");
    char path[4096];
    snprintf(path, sizeof path, "%s/nope", dir);
    uint64_t *got = (uint64_t *)&path; /* must not be touched or freed on failure */
    size_t n = 42;
    assert_int_equal(kl_seg_list(path, &got, &n), KL_ENOTFOUND);
    assert_ptr_equal(got, (uint64_t *)&path);
    assert_int_equal(n, 42);
    tu_rmrf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seg_path_has_20_zero_padded_digits),
        cmocka_unit_test(test_seg_header_round_trips),
        cmocka_unit_test(test_seg_header_with_wrong_first_index_is_refused),
        cmocka_unit_test(test_seg_header_with_wrong_magic_version_or_size_is_refused),
        cmocka_unit_test(test_every_bit_flip_of_a_seg_header_is_refused),
        cmocka_unit_test(test_truncated_seg_header_is_refused),
        cmocka_unit_test(test_seg_list_sorts_and_ignores_other_names),
        cmocka_unit_test(test_seg_list_of_an_empty_dir_is_empty),
        cmocka_unit_test(test_seg_list_of_a_missing_dir_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
