/*
 * test_index.c - the sparse offset index of a segment (index/offset_index.c,
 * docs/FORMAT.md "segments/<first>.idx").
 *
 * What this proves: kl_oidx_note indexes the first batch always and then a
 * batch only when it starts at least 4096 bytes past the previous entry (so
 * a lookup walks at most about 4096 bytes of batch headers); kl_oidx_find
 * returns the last entry at or below the wanted block on every shape of
 * index (empty, one entry, before the first, exact hits, between, after the
 * last); kl_oidx_cut drops exactly the entries at or past a position and the
 * interval rule restarts from the last one kept; kl_oidx_parse keeps exactly
 * the in-order prefix of entries below the committed end and reports
 * sealed_ok only for a complete, checksummed, sealed file (every bit of a
 * small sealed file flipped in turn never crashes it and always clears
 * sealed_ok); a sealed index written to a real file maps back to the same
 * entries; an active index written and appended to loads back.
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/util.h"
#include "index/offset_index.h"

#define FIRST_BATCH 64u /* a segment's first batch follows its 64-byte file header */

/* The KL_IO backend, or posix where io_uring is refused (the index does not care). */
static kl_io *test_io(void) {
    kl_io *io = NULL;
    if (kl_io_new(KL_IO_AUTO, &io) != 0)
        assert_int_equal(kl_io_posix_new(&io), 0);
    return io;
}

static uint64_t count_of(const kl_oidx *x) {
    return atomic_load(&x->count);
}

/* n entries with seeded gaps: rels strictly increasing, positions >= 4096 apart. */
static void gen(uint64_t n, uint64_t first_rel, uint64_t seed, uint64_t *rels, uint64_t *poss) {
    uint64_t rel = first_rel, pos = FIRST_BATCH;
    for (uint64_t i = 0; i < n; i++) {
        rels[i] = rel;
        poss[i] = pos;
        rel += 1 + tu_rand(&seed) % 100;
        pos += KL_IDX_INTERVAL_BYTES + tu_rand(&seed) % 5000;
    }
}

/* Note the n entries of gen(); every one must be taken. */
static void fill(kl_oidx *x, uint64_t n, uint64_t first_rel, uint64_t seed, uint64_t *rels,
                 uint64_t *poss) {
    gen(n, first_rel, seed, rels, poss);
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(kl_oidx_note(x, rels[i], poss[i]), 1);
    assert_int_equal(count_of(x), n);
}

static void expect_entries(const kl_oidx *x, const uint64_t *rels, const uint64_t *poss,
                           uint64_t n) {
    assert_int_equal(count_of(x), n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r, p;
        kl_oidx_entry(x, i, &r, &p);
        assert_int_equal(r, rels[i]);
        assert_int_equal(p, poss[i]);
    }
}

static void test_first_batch_is_always_indexed_then_one_entry_per_4096_bytes(void **state) {
    (void)state;
    kl_oidx x;
    assert_int_equal(kl_oidx_init(&x, 100, 1u << 20), 0);
    assert_int_equal(x.first_index, 100);
    assert_int_equal(kl_oidx_find(&x, 0), -1);
    assert_int_equal(kl_oidx_note(&x, 0, FIRST_BATCH), 1);
    assert_int_equal(kl_oidx_note(&x, 1, FIRST_BATCH + 1), 0);
    assert_int_equal(kl_oidx_note(&x, 2, FIRST_BATCH + 4095), 0);
    assert_int_equal(kl_oidx_note(&x, 3, FIRST_BATCH + 4096), 1); /* exactly 4096 past */
    assert_int_equal(kl_oidx_note(&x, 4, FIRST_BATCH + 4096 + 4095), 0);
    assert_int_equal(kl_oidx_note(&x, 5, FIRST_BATCH + 3 * 4096), 1);
    assert_int_equal(count_of(&x), 3);
    uint64_t r, p;
    kl_oidx_entry(&x, 1, &r, &p);
    assert_int_equal(r, 3);
    assert_int_equal(p, FIRST_BATCH + 4096);
    kl_oidx_free(&x, NULL);

    /* A stream of batches of seeded sizes against the rule written out plainly. */
    for (uint64_t seed = 1; seed <= 20; seed++) {
        assert_int_equal(kl_oidx_init(&x, 0, 64u << 20), 0);
        uint64_t st = seed, pos = FIRST_BATCH, rel = 0, last = 0, n = 0;
        uint64_t max_walk = 0, since = 0;
        while (pos < (8u << 20)) {
            uint64_t size = 64 + tu_rand(&st) % (seed % 2 ? 700 : 9000);
            int want = n == 0 || pos >= last + KL_IDX_INTERVAL_BYTES;
            assert_int_equal(kl_oidx_note(&x, rel, pos), want);
            if (want) {
                last = pos;
                n++;
                since = 0;
            }
            since += size;
            if (since > max_walk)
                max_walk = since;
            rel += 1 + tu_rand(&st) % 5;
            pos += size;
        }
        assert_int_equal(count_of(&x), n);
        /* Between two entries lie less than 4096 bytes plus one batch. */
        assert_true(max_walk < KL_IDX_INTERVAL_BYTES + 9064);
        for (uint64_t i = 1; i < n; i++) {
            uint64_t r0, p0, r1, p1;
            kl_oidx_entry(&x, i - 1, &r0, &p0);
            kl_oidx_entry(&x, i, &r1, &p1);
            assert_true(r1 > r0);
            assert_true(p1 >= p0 + KL_IDX_INTERVAL_BYTES);
        }
        kl_oidx_free(&x, NULL);
    }
}

/* The answer kl_oidx_find must give: the last entry with rel <= q, or -1. */
static int64_t find_ref(const uint64_t *rels, uint64_t n, uint64_t q) {
    int64_t ans = -1;
    for (uint64_t i = 0; i < n; i++)
        if (rels[i] <= q)
            ans = (int64_t)i;
    return ans;
}

static void test_find_returns_the_last_entry_at_or_below(void **state) {
    (void)state;
    static const uint64_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 1000};
    uint64_t *rels = malloc(2000 * sizeof *rels), *poss = malloc(2000 * sizeof *poss);
    uint64_t *qs = malloc(8000 * sizeof *qs);
    assert_true(rels && poss && qs);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (uint64_t first_rel = 0; first_rel <= 10; first_rel += 10) {
            uint64_t n = sizes[s];
            kl_oidx x;
            assert_int_equal(kl_oidx_init(&x, 0, (n + 2) * (KL_IDX_INTERVAL_BYTES + 5000)), 0);
            fill(&x, n, first_rel, 1000 + n, rels, poss);
            /* Before the first, each entry, one below and above it, the far end. */
            size_t nq = 0;
            qs[nq++] = 0;
            qs[nq++] = UINT32_MAX;
            qs[nq++] = (uint64_t)UINT32_MAX + 1;
            qs[nq++] = UINT64_MAX;
            for (uint64_t i = 0; i < n; i++) {
                qs[nq++] = rels[i];
                qs[nq++] = rels[i] + 1;
                if (rels[i] > 0)
                    qs[nq++] = rels[i] - 1;
                if (i + 1 < n)
                    qs[nq++] = rels[i] + (rels[i + 1] - rels[i]) / 2;
            }
            for (size_t k = 0; k < nq; k++) {
                int64_t got = kl_oidx_find(&x, qs[k]);
                int64_t want = find_ref(rels, n, qs[k]);
                if (got != want)
                    fail_msg("n=%llu first_rel=%llu find(%llu) = %lld, expected %lld",
                             (unsigned long long)n, (unsigned long long)first_rel,
                             (unsigned long long)qs[k], (long long)got, (long long)want);
            }
            kl_oidx_free(&x, NULL);
        }
    }
    free(rels);
    free(poss);
    free(qs);
}

static void test_cut_drops_entries_at_or_past_a_position(void **state) {
    (void)state;
    kl_oidx x;
    uint64_t rels[10], poss[10];
    assert_int_equal(kl_oidx_init(&x, 0, 1u << 20), 0);
    fill(&x, 10, 0, 5, rels, poss);
    kl_oidx_cut(&x, poss[9] + 1); /* keeps the entry at poss[9] */
    expect_entries(&x, rels, poss, 10);
    kl_oidx_cut(&x, UINT64_MAX);
    expect_entries(&x, rels, poss, 10);
    kl_oidx_cut(&x, poss[7]); /* drops entries 7, 8, 9 */
    expect_entries(&x, rels, poss, 7);
    kl_oidx_cut(&x, poss[6] + 1);
    expect_entries(&x, rels, poss, 7);
    /* The interval rule now counts from entry 6. */
    assert_int_equal(kl_oidx_note(&x, rels[6] + 1, poss[6] + KL_IDX_INTERVAL_BYTES - 1), 0);
    assert_int_equal(kl_oidx_note(&x, rels[6] + 1, poss[6] + KL_IDX_INTERVAL_BYTES), 1);
    assert_int_equal(count_of(&x), 8);
    assert_int_equal(kl_oidx_find(&x, UINT64_MAX), 7);
    /* Cut between two entries. */
    kl_oidx_cut(&x, poss[3] + 10);
    expect_entries(&x, rels, poss, 4);
    /* Cut everything: the next batch is indexed whatever its position. */
    kl_oidx_cut(&x, FIRST_BATCH);
    assert_int_equal(count_of(&x), 0);
    assert_int_equal(kl_oidx_find(&x, 5), -1);
    assert_int_equal(kl_oidx_note(&x, 0, FIRST_BATCH), 1);
    assert_int_equal(count_of(&x), 1);
    kl_oidx_cut(&x, 0);
    assert_int_equal(count_of(&x), 0);
    kl_oidx_free(&x, NULL);
}

/* Bytes of an index file: a header for x's first_index, then raw entries. */
static uint8_t *file_bytes(uint64_t first_index, int sealed, uint64_t seg_end, const uint64_t *rels,
                           const uint64_t *poss, uint64_t n, size_t extra, size_t *len) {
    kl_oidx t;
    assert_int_equal(kl_oidx_init(&t, first_index, (n + 2) * KL_IDX_INTERVAL_BYTES), 0);
    /* Write entries directly (they may break the rules on purpose). */
    for (uint64_t i = 0; i < n; i++) {
        kl_store32(t.anon + 8 * i, (uint32_t)rels[i]);
        kl_store32(t.anon + 8 * i + 4, (uint32_t)poss[i]);
    }
    atomic_store(&t.count, n);
    *len = KL_IDX_HEADER_BYTES + 8 * n + extra;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    kl_oidx_header(b, &t, sealed, seg_end);
    memcpy(b + KL_IDX_HEADER_BYTES, t.anon, 8 * n);
    memset(b + KL_IDX_HEADER_BYTES + 8 * n, 0x77, extra);
    kl_oidx_free(&t, NULL);
    return b;
}

/* The entries kl_oidx_parse must keep: the in-order prefix below end. */
static uint64_t kept_ref(const uint64_t *rels, const uint64_t *poss, uint64_t n, uint64_t end,
                         uint64_t cap) {
    uint64_t k = 0;
    for (; k < n && k < cap; k++) {
        int ok = k == 0 ? rels[0] == 0 && poss[0] == FIRST_BATCH
                        : rels[k] > rels[k - 1] && poss[k] > poss[k - 1];
        if (!ok || poss[k] >= end)
            break;
    }
    return k;
}

static void expect_parse(const uint8_t *buf, size_t len, uint64_t first_index, uint64_t end,
                         const uint64_t *rels, const uint64_t *poss, uint64_t want_kept,
                         int want_sealed) {
    kl_oidx x;
    assert_int_equal(kl_oidx_init(&x, first_index, 1u << 20), 0);
    /* Start from a non-empty index: parse must replace, not append. */
    assert_int_equal(kl_oidx_note(&x, 9, 9999), 1);
    int sealed_ok = -1;
    kl_oidx_parse(&x, buf, len, end, &sealed_ok);
    if (sealed_ok != want_sealed)
        fail_msg("parse of %zu bytes with end %llu: sealed_ok %d, expected %d", len,
                 (unsigned long long)end, sealed_ok, want_sealed);
    expect_entries(&x, rels, poss, want_kept);
    /* The interval rule continues from the last entry kept. */
    if (want_kept > 0) {
        uint64_t lp = poss[want_kept - 1];
        assert_int_equal(kl_oidx_note(&x, rels[want_kept - 1] + 1, lp + 4095), 0);
    }
    kl_oidx_free(&x, NULL);
}

static void test_parse_keeps_the_in_order_prefix_below_end(void **state) {
    (void)state;
    enum { N = 8 };
    uint64_t rels[N] = {0, 3, 9, 10, 40, 41, 100, 200};
    uint64_t poss[N] = {64, 5000, 9100, 13300, 20000, 24100, 30000, 40000};
    size_t len;
    uint8_t *b;
    /* Active (unsealed) file: every in-order entry below end, never sealed_ok. */
    b = file_bytes(7, 0, 0, rels, poss, N, 0, &len);
    expect_parse(b, len, 7, 1u << 20, rels, poss, N, 0);
    expect_parse(b, len, 7, 40001, rels, poss, N, 0);
    expect_parse(b, len, 7, 40000, rels, poss, 7, 0); /* an entry at end is not below it */
    expect_parse(b, len, 7, 9100, rels, poss, 2, 0);
    expect_parse(b, len, 7, 65, rels, poss, 1, 0);
    expect_parse(b, len, 7, 64, rels, poss, 0, 0);
    expect_parse(b, len, 8, 1u << 20, rels, poss, 0, 0); /* another segment's index */
    /* Truncated at every length: the whole entries that remain. */
    for (size_t cut = 0; cut < len; cut++) {
        uint64_t whole = cut < KL_IDX_HEADER_BYTES ? 0 : (cut - KL_IDX_HEADER_BYTES) / 8;
        expect_parse(b, cut, 7, 1u << 20, rels, poss, whole, 0);
    }
    free(b);

    /* Entries out of order: the prefix before the first break. */
    for (int at = 0; at < N; at++) {
        for (int how = 0; how < 4; how++) {
            uint64_t r2[N], p2[N];
            memcpy(r2, rels, sizeof r2);
            memcpy(p2, poss, sizeof p2);
            if (how == 0)
                r2[at] = at ? r2[at - 1] : 1; /* rel not increasing / first not 0 */
            else if (how == 1)
                p2[at] = at ? p2[at - 1] : 65; /* pos not increasing / first not 64 */
            else if (how == 2)
                r2[at] = at ? (r2[at - 1] ? r2[at - 1] - 1 : 0) : 2; /* rel going back */
            else
                p2[at] = at ? 63 : 0;
            b = file_bytes(7, 0, 0, r2, p2, N, 0, &len);
            uint64_t want = kept_ref(r2, p2, N, 1u << 20, 1u << 20);
            assert_true(want <= (uint64_t)at);
            expect_parse(b, len, 7, 1u << 20, r2, p2, want, 0);
            free(b);
        }
    }
}

static void test_sealed_ok_only_for_a_complete_checksummed_sealed_file(void **state) {
    (void)state;
    enum { N = 6 };
    uint64_t rels[N] = {0, 1, 5, 6, 30, 31};
    uint64_t poss[N] = {64, 4200, 8300, 12400, 16500, 20600};
    const uint64_t end = 24000;
    size_t len;
    uint8_t *b = file_bytes(500, 1, end, rels, poss, N, 0, &len);
    expect_parse(b, len, 500, end, rels, poss, N, 1);
    /* The same file against another committed end. */
    expect_parse(b, len, 500, end + 1, rels, poss, N, 0);
    expect_parse(b, len, 500, end - 1, rels, poss, N, 0);
    expect_parse(b, len, 500, poss[5], rels, poss, 5, 0);
    /* Cut short, at every length. */
    for (size_t cut = 0; cut < len; cut++) {
        uint64_t whole = cut < KL_IDX_HEADER_BYTES ? 0 : (cut - KL_IDX_HEADER_BYTES) / 8;
        expect_parse(b, cut, 500, end, rels, poss, whole, 0);
    }
    free(b);
    /* Longer than the header says: one more entry after the sealed ones, or junk. */
    uint64_t r7[N + 1], p7[N + 1];
    memcpy(r7, rels, sizeof rels);
    memcpy(p7, poss, sizeof poss);
    r7[N] = 40;
    p7[N] = 23000;
    b = file_bytes(500, 1, end, rels, poss, N, 8, &len);
    kl_store32(b + KL_IDX_HEADER_BYTES + 8 * N, (uint32_t)r7[N]);
    kl_store32(b + KL_IDX_HEADER_BYTES + 8 * N + 4, (uint32_t)p7[N]);
    expect_parse(b, len, 500, end, r7, p7, N + 1, 0);
    free(b);
    b = file_bytes(500, 1, end, rels, poss, N, 3, &len);
    expect_parse(b, len, 500, end, rels, poss, N, 0);
    free(b);

    /* Sealed and checksummed, but holding an entry that breaks the order or lies at or
     * past the end: the in-order prefix is kept and the file is not sealed_ok. */
    for (int at = 1; at < N; at++) {
        for (int how = 0; how < 2; how++) {
            uint64_t r2[N], p2[N];
            memcpy(r2, rels, sizeof r2);
            memcpy(p2, poss, sizeof p2);
            if (how == 0)
                r2[at] = r2[at - 1];
            else
                p2[at] = end + (uint64_t)at;
            b = file_bytes(500, 1, end, r2, p2, N, 0, &len);
            expect_parse(b, len, 500, end, r2, p2, (uint64_t)at, 0);
            free(b);
        }
    }

    /* Every bit of the file flipped in turn: no crash, never sealed_ok, and the
     * entries kept are an in-order prefix of what the file holds. */
    b = file_bytes(500, 1, end, rels, poss, N, 0, &len);
    for (size_t bit = 0; bit < 8 * len; bit++) {
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        kl_oidx x;
        assert_int_equal(kl_oidx_init(&x, 500, 1u << 20), 0);
        int sealed_ok = -1;
        kl_oidx_parse(&x, b, len, end, &sealed_ok);
        if (sealed_ok != 0)
            fail_msg("flip of index file bit %zu left sealed_ok = %d", bit, sealed_ok);
        uint64_t n = count_of(&x);
        assert_true(n <= N);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t r, p;
            kl_oidx_entry(&x, i, &r, &p);
            assert_int_equal(r, kl_load32(b + KL_IDX_HEADER_BYTES + 8 * i));
            assert_int_equal(p, kl_load32(b + KL_IDX_HEADER_BYTES + 8 * i + 4));
            assert_true(p < end);
            if (i == 0) {
                assert_true(r == 0 && p == FIRST_BATCH);
            } else {
                uint64_t r0, p0;
                kl_oidx_entry(&x, i - 1, &r0, &p0);
                assert_true(r > r0 && p > p0);
            }
        }
        /* A flipped header byte fails the header check: nothing is kept. */
        if (bit / 8 < KL_IDX_HEADER_BYTES)
            assert_int_equal(n, 0);
        kl_oidx_free(&x, NULL);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    expect_parse(b, len, 500, end, rels, poss, N, 1);
    free(b);
}

static void test_parse_never_keeps_more_than_capacity(void **state) {
    (void)state;
    enum { N = 40 };
    uint64_t rels[N], poss[N];
    for (int i = 0; i < N; i++) {
        rels[i] = (uint64_t)i * 3;
        poss[i] = FIRST_BATCH + (uint64_t)i * KL_IDX_INTERVAL_BYTES;
    }
    size_t len;
    uint8_t *b = file_bytes(0, 1, 1u << 30, rels, poss, N, 0, &len);
    kl_oidx x;
    assert_int_equal(kl_oidx_init(&x, 0, 10 * KL_IDX_INTERVAL_BYTES), 0);
    assert_int_equal(x.cap, 12);
    int sealed_ok = -1;
    kl_oidx_parse(&x, b, len, 1u << 30, &sealed_ok);
    assert_int_equal(sealed_ok, 0);
    expect_entries(&x, rels, poss, 12);
    kl_oidx_free(&x, NULL);
    free(b);
}

static char *join(const char *dir, const char *name) {
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static void test_write_sealed_then_map_sealed_round_trips(void **state) {
    (void)state;
    kl_io *io = test_io();
    char *dir = tu_tmpdir("idxseal");
    char *path = join(dir, "00000000000000005000.idx");
    char *tmp = join(dir, "00000000000000005000.idx.tmp");
    enum { N = 300 };
    uint64_t rels[N], poss[N];
    kl_oidx x;
    assert_int_equal(kl_oidx_init(&x, 5000, (uint64_t)N * 10000), 0);
    fill(&x, N, 0, 42, rels, poss);
    uint64_t end = poss[N - 1] + 777;
    assert_int_equal(kl_oidx_write_sealed(&x, io, path, end), 0);
    assert_int_equal(tu_file_size(path), KL_IDX_HEADER_BYTES + 8 * N);
    assert_int_equal(access(tmp, F_OK), -1); /* the temporary file was renamed away */

    kl_oidx y;
    uint64_t got_end = 0;
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), 0);
    assert_int_equal(got_end, end);
    assert_null(y.anon);
    assert_non_null(y.file_map);
    expect_entries(&y, rels, poss, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(kl_oidx_find(&y, rels[i]), i);
    kl_oidx_free(&y, io);

    /* kl_oidx_load reads the same file as a complete sealed index. */
    kl_oidx z;
    int sealed_ok = -1;
    assert_int_equal(kl_oidx_init(&z, 5000, (uint64_t)N * 10000), 0);
    kl_oidx_load(&z, io, path, end, &sealed_ok);
    assert_int_equal(sealed_ok, 1);
    expect_entries(&z, rels, poss, N);
    kl_oidx_load(&z, io, path, end + 1, &sealed_ok);
    assert_int_equal(sealed_ok, 0);
    expect_entries(&z, rels, poss, N);
    kl_oidx_free(&z, io);

    /* Another segment's name. */
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5001, &got_end), KL_ECORRUPT);
    /* One entry byte damaged. */
    tu_flip(path, KL_IDX_HEADER_BYTES + 8 * 100 + 5, 0x10);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
    tu_flip(path, KL_IDX_HEADER_BYTES + 8 * 100 + 5, 0x10);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), 0);
    kl_oidx_free(&y, io);
    /* The header damaged. */
    tu_flip(path, 33, 0x01);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
    tu_flip(path, 33, 0x01);
    /* An entry count that wraps when multiplied by 8 (N + 2^61: 8 * count is the
       file's entry bytes again), its header checksum made to match: refused. */
    {
        uint8_t hdr[KL_IDX_HEADER_BYTES];
        int hfd = open(path, O_RDWR);
        assert_true(hfd >= 0);
        assert_int_equal(pread(hfd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
        uint8_t keep[KL_IDX_HEADER_BYTES];
        memcpy(keep, hdr, sizeof hdr);
        kl_store64(hdr + 32, (uint64_t)N + (1ull << 61));
        kl_store64(hdr + 56, XXH3_64bits(hdr, 56));
        assert_int_equal(pwrite(hfd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
        assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
        assert_int_equal(pwrite(hfd, keep, sizeof keep, 0), (ssize_t)sizeof keep);
        close(hfd);
        assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), 0);
        kl_oidx_free(&y, io);
    }
    /* Cut short by one byte, or one byte too long. */
    tu_truncate(path, KL_IDX_HEADER_BYTES + 8 * N - 1);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
    tu_truncate(path, KL_IDX_HEADER_BYTES + 8 * N + 1);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
    tu_truncate(path, 10);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
    /* Missing. */
    unlink(path);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
    /* An active (unsealed) index is not a sealed one. */
    int fd = -1;
    assert_int_equal(kl_oidx_write_active(&x, io, path, &fd), 0);
    kl_io_close(io, fd);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);
    /* A sealed index of no entries is refused by the mapper. */
    kl_oidx_cut(&x, 0);
    assert_int_equal(kl_oidx_write_sealed(&x, io, path, 64), 0);
    assert_int_equal(kl_oidx_map_sealed(&y, io, path, 5000, &got_end), KL_ECORRUPT);

    kl_oidx_free(&x, io);
    kl_io_destroy(io);
    tu_rmrf(dir);
    free(path);
    free(tmp);
    free(dir);
}

static void test_write_active_then_append_and_load(void **state) {
    (void)state;
    kl_io *io = test_io();
    char *dir = tu_tmpdir("idxactive");
    char *path = join(dir, "00000000000000000000.idx");
    enum { N = 50 };
    uint64_t rels[N], poss[N];
    kl_oidx x;
    assert_int_equal(kl_oidx_init(&x, 0, (uint64_t)N * 10000), 0);
    gen(N, 0, 9, rels, poss);
    for (int i = 0; i < 20; i++)
        assert_int_equal(kl_oidx_note(&x, rels[i], poss[i]), 1);
    int fd = -1;
    assert_int_equal(kl_oidx_write_active(&x, io, path, &fd), 0);
    assert_true(fd >= 0);
    assert_int_equal(tu_file_size(path), KL_IDX_HEADER_BYTES + 8 * 20);
    struct iovec iov;
    uint64_t off;
    assert_int_equal(kl_oidx_pending(&x, 20, &iov, &off), 0); /* all written */

    /* More entries, written as the commit pipeline does: pending, write, written. */
    for (int i = 20; i < N; i++)
        assert_int_equal(kl_oidx_note(&x, rels[i], poss[i]), 1);
    assert_int_equal(kl_oidx_pending(&x, N, &iov, &off), 1);
    assert_int_equal(off, KL_IDX_HEADER_BYTES + 8 * 20);
    assert_int_equal(iov.iov_len, 8 * (N - 20));
    kl_io_op op = {.kind = KL_IO_OP_WRITE, .fd = fd, .iov = &iov, .iovcnt = 1, .offset = off};
    assert_int_equal(kl_io_submit(io, &op, 1), 0);
    kl_oidx_written(&x, N);
    assert_int_equal(kl_oidx_pending(&x, N, &iov, &off), 0);
    kl_io_close(io, fd);

    kl_oidx y;
    int sealed_ok = -1;
    assert_int_equal(kl_oidx_init(&y, 0, (uint64_t)N * 10000), 0);
    kl_oidx_load(&y, io, path, UINT32_MAX, &sealed_ok);
    assert_int_equal(sealed_ok, 0);
    expect_entries(&y, rels, poss, N);
    /* Only what lies below the committed end. */
    kl_oidx_load(&y, io, path, poss[30], &sealed_ok);
    expect_entries(&y, rels, poss, 30);

    /* After a cut, rewriting shrinks the file and the pending window restarts. */
    kl_oidx_cut(&x, poss[10]);
    assert_int_equal(kl_oidx_pending(&x, 10, &iov, &off), 0);
    assert_int_equal(kl_oidx_note(&x, rels[10], poss[10]), 1);
    assert_int_equal(kl_oidx_pending(&x, 11, &iov, &off), 1);
    assert_int_equal(off, KL_IDX_HEADER_BYTES + 8 * 10);
    fd = -1;
    assert_int_equal(kl_oidx_write_active(&x, io, path, &fd), 0);
    kl_io_close(io, fd);
    assert_int_equal(tu_file_size(path), KL_IDX_HEADER_BYTES + 8 * 11);
    kl_oidx_load(&y, io, path, UINT32_MAX, &sealed_ok);
    expect_entries(&y, rels, poss, 11);

    /* A missing or tiny file gives no entries and no error. */
    unlink(path);
    kl_oidx_load(&y, io, path, UINT32_MAX, &sealed_ok);
    assert_int_equal(count_of(&y), 0);
    assert_int_equal(sealed_ok, 0);
    int f = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(f >= 0);
    assert_int_equal(write(f, "KLINDEX1", 8), 8);
    close(f);
    kl_oidx_load(&y, io, path, UINT32_MAX, &sealed_ok);
    assert_int_equal(count_of(&y), 0);
    assert_int_equal(sealed_ok, 0);

    kl_oidx_free(&y, io);
    kl_oidx_free(&x, io);
    kl_io_destroy(io);
    tu_rmrf(dir);
    free(path);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_batch_is_always_indexed_then_one_entry_per_4096_bytes),
        cmocka_unit_test(test_find_returns_the_last_entry_at_or_below),
        cmocka_unit_test(test_cut_drops_entries_at_or_past_a_position),
        cmocka_unit_test(test_parse_keeps_the_in_order_prefix_below_end),
        cmocka_unit_test(test_sealed_ok_only_for_a_complete_checksummed_sealed_file),
        cmocka_unit_test(test_parse_never_keeps_more_than_capacity),
        cmocka_unit_test(test_write_sealed_then_map_sealed_round_trips),
        cmocka_unit_test(test_write_active_then_append_and_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
