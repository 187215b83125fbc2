/*
 * fuzz_tix.c - libFuzzer target for the time index loader
 * (index/time_index.c, docs/FORMAT.md "segments/<first>.tix").
 *
 * Input: the bytes of a .tix file. kl_tidx_parse reads them into an index of
 * small fixed capacity (so "more entries than fit" is reachable), with an
 * entry limit taken from the input (the offset index's count, in the
 * engine), and kl_tidx_check_sealed judges them as a sealed file; both
 * twice: as given, and "resealed", with the entries checksum (over the
 * entries the header claims) and the header checksum recomputed, so the
 * sealed path and the entry rules see arbitrary values. The segment's first
 * index and end are taken from the header itself (the end perturbed by the
 * input's length on the raw pass), so a matching header is easy to reach.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash),
 * against a reference written from FORMAT.md: the kept entries are exactly
 * the longest in-order prefix (first rel 0, then rel strictly increasing
 * and timestamps non-decreasing), capped by the capacity and the limit, or
 * none when the header fails its check; kl_tidx_check_sealed accepts
 * exactly a sealed header whose file is header + entries, whose end is the
 * segment's and whose entries checksum holds, and then reports the count;
 * kl_tidx_find agrees with a linear scan; kl_tidx_cut keeps exactly the
 * first n; kl_tidx_note then appends; kl_tidx_pending names exactly the
 * entries not yet written.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few valid .tix files into DIR
 * and exit (scripts/fuzz.sh uses them as the starting corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/util.h"
#include "index/offset_index.h"
#include "index/time_index.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Room for a 64 KiB segment: 64 KiB / 4096 + 2 = 18 entries, so inputs can exceed it. */
#define FUZZ_SEGMENT_BYTES (16u * KL_IDX_INTERVAL_BYTES)
#define ENT                KL_TIX_ENTRY_BYTES

/* The header check of FORMAT.md, written out independently of the loader. */
static int header_ok(const uint8_t *p, size_t len, uint64_t first_index) {
    return len >= KL_TIX_HEADER_BYTES && memcmp(p, "KLTIMEX1", 8) == 0 && kl_load32(p + 8) == 1 &&
           kl_load32(p + 12) == 12 && kl_load64(p + 16) == first_index &&
           kl_load32(p + 24) == 4096 && kl_load64(p + 56) == XXH3_64bits(p, 56);
}

/* The sealed rule of FORMAT.md: 1 and *n if the file is a complete sealed .tix. */
static int sealed_ref(const uint8_t *p, size_t len, uint64_t first_index, uint64_t end,
                      uint64_t *n) {
    if (!header_ok(p, len, first_index) || !(kl_load32(p + 28) & 1))
        return 0;
    uint64_t cnt = kl_load64(p + 32), have = (len - KL_TIX_HEADER_BYTES) / ENT;
    if (cnt != have || len != KL_TIX_HEADER_BYTES + have * ENT || kl_load64(p + 48) != end ||
        XXH3_64bits(p + KL_TIX_HEADER_BYTES, (size_t)(have * ENT)) != kl_load64(p + 40))
        return 0;
    *n = cnt;
    return 1;
}

/* How many entries parse must keep. */
static uint64_t kept_ref(const uint8_t *p, size_t len, uint64_t first_index, uint64_t most) {
    if (!header_ok(p, len, first_index))
        return 0;
    uint64_t have = (len - KL_TIX_HEADER_BYTES) / ENT, k = 0, pts = 0, prel = 0;
    for (; k < have && k < most; k++) {
        const uint8_t *e = p + KL_TIX_HEADER_BYTES + ENT * k;
        uint64_t ts = kl_load64(e), rel = kl_load32(e + 8);
        if (k == 0 ? rel != 0 : rel <= prel || ts < pts)
            break;
        pts = ts;
        prel = rel;
    }
    return k;
}

/* find, against a linear scan over the first n entries, for times around each. */
static void check_find(const kl_tidx *x, uint64_t n) {
    uint64_t queries[3 + 3 * 20];
    size_t nq = 0;
    queries[nq++] = 0;
    queries[nq++] = 1;
    queries[nq++] = UINT64_MAX;
    for (uint64_t i = 0; i < n && nq + 3 <= sizeof queries / sizeof queries[0]; i++) {
        uint64_t ts, rel;
        kl_tidx_entry(x, i, &ts, &rel);
        queries[nq++] = ts;
        queries[nq++] = ts + 1;
        queries[nq++] = ts - 1;
    }
    for (size_t k = 0; k < nq; k++) {
        int64_t ref = -1;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t ts, rel;
            kl_tidx_entry(x, i, &ts, &rel);
            if (ts < queries[k])
                ref = (int64_t)i;
        }
        KL_ASSERT(kl_tidx_find(x, n, queries[k]) == ref);
    }
}

/* cut to a count from the input, note one more, and what is pending to write. */
static void check_cut_note(kl_tidx *x, const uint8_t *p, size_t len) {
    uint64_t n = kl_tidx_count(x);
    uint64_t keep = len >= 2 ? p[len - 2] % 24 : 0;
    kl_tidx_cut(x, keep);
    uint64_t m = kl_tidx_count(x);
    KL_ASSERT(m == (keep < n ? keep : n));
    uint64_t ts = 0, rel = 0;
    if (m)
        kl_tidx_entry(x, m - 1, &ts, &rel);
    if (m < x->cap && rel < UINT32_MAX) {
        kl_tidx_note(x, rel + 1, ts + 7);
        KL_ASSERT(kl_tidx_count(x) == m + 1);
        uint64_t ts2, rel2;
        kl_tidx_entry(x, m, &ts2, &rel2);
        KL_ASSERT(ts2 == ts + 7 && rel2 == rel + 1);
        m++;
    }
    uint64_t done = len >= 3 ? p[len - 3] % (m + 1) : 0, off = 0;
    struct iovec iov;
    kl_tidx_written(x, done);
    int pending = kl_tidx_pending(x, m, &iov, &off);
    KL_ASSERT(pending == (done < m));
    if (pending)
        KL_ASSERT(iov.iov_len == (m - done) * ENT && off == KL_TIX_HEADER_BYTES + done * ENT &&
                  iov.iov_base == (void *)(x->ent + done * ENT));
}

static void drive(const uint8_t *p, size_t len, uint64_t first_index, uint64_t end) {
    kl_tidx x;
    KL_ASSERT(kl_tidx_init(&x, first_index, FUZZ_SEGMENT_BYTES) == 0);
    uint64_t limit = len >= 1 ? p[len - 1] % 32 : UINT64_MAX; /* the .idx's count */
    kl_tidx_parse(&x, p, len, limit);
    uint64_t n = kl_tidx_count(&x);
    KL_ASSERT(n <= x.cap && n <= limit);
    KL_ASSERT(n == kept_ref(p, len, first_index, limit < x.cap ? limit : x.cap));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t ts, rel;
        kl_tidx_entry(&x, i, &ts, &rel);
        KL_ASSERT(ts == kl_load64(p + KL_TIX_HEADER_BYTES + ENT * i));
        KL_ASSERT(rel == kl_load32(p + KL_TIX_HEADER_BYTES + ENT * i + 8));
    }
    uint64_t sn = UINT64_MAX, rn = UINT64_MAX;
    int sealed = kl_tidx_check_sealed(p, len, first_index, end, &sn) == 0;
    KL_ASSERT(sealed == sealed_ref(p, len, first_index, end, &rn));
    KL_ASSERT(!sealed || sn == rn);
    check_find(&x, n);
    check_cut_note(&x, p, len);
    kl_tidx_free(&x, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t first = size >= 24 ? kl_load64(data + 16) : 0;
    uint64_t end = size >= 56 ? kl_load64(data + 48) : UINT64_MAX;
    /* As given; the end nudged by the length so "end differs" is reached too. */
    drive(data, size, first, (size & 1) ? end : end + (size & 6));
    if (size < KL_TIX_HEADER_BYTES)
        return 0;
    /* Resealed: the entries checksum over the claimed entries, then the header checksum. */
    uint8_t *b = malloc(size);
    KL_ASSERT(b != NULL);
    memcpy(b, data, size);
    uint64_t claimed = kl_load64(b + 32), present = (size - KL_TIX_HEADER_BYTES) / ENT;
    uint64_t over = claimed < present ? claimed : present;
    kl_store64(b + 40, XXH3_64bits(b + KL_TIX_HEADER_BYTES, (size_t)(ENT * over)));
    kl_store64(b + 56, XXH3_64bits(b, 56));
    drive(b, size, first, end);
    free(b);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

static void write_seeds(const char *dir) {
    static const uint32_t counts[] = {1, 3, 12, 30};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        kl_tidx x;
        KL_ASSERT(kl_tidx_init(&x, 52113 * c, 64u * KL_IDX_INTERVAL_BYTES) == 0);
        for (uint32_t i = 0; i < counts[c]; i++)
            kl_tidx_note(&x, (uint64_t)i * 7, 1764756000000ull + 3 * (i / 2));
        uint8_t buf[KL_TIX_HEADER_BYTES + ENT * 64];
        size_t len = KL_TIX_HEADER_BYTES + ENT * (size_t)counts[c];
        for (int sealed = 0; sealed <= 1; sealed++) {
            kl_tidx_header(buf, &x, sealed, 4096u * counts[c]);
            memcpy(buf + KL_TIX_HEADER_BYTES, x.ent, ENT * (size_t)counts[c]);
            char name[64];
            snprintf(name, sizeof name, "%s-%u", sealed ? "sealed" : "active", counts[c]);
            write_seed(dir, name, buf, len);
        }
        kl_tidx_free(&x, NULL);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
