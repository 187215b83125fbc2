/*
 * fuzz_index.c - libFuzzer target for the sparse offset index parser
 * (index/offset_index.c, docs/FORMAT.md "segments/<first>.idx").
 *
 * Input: the bytes of an .idx file. kl_oidx_parse reads them into an index
 * of small fixed capacity (so "more entries than fit" is reachable) twice:
 * as given, and "resealed", with the entries checksum (over the entries the
 * header claims) and the header checksum recomputed, so the sealed path and
 * the entry rules see arbitrary values. The segment's first index and
 * committed end are taken from the header itself (the end perturbed by the
 * input's length on the raw pass), so a matching header is easy to reach.
 * The resealed bytes also go, as a file, through the sealed mapper
 * (kl_oidx_map_sealed, map_sealed below).
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash),
 * against a reference written from FORMAT.md: the kept entries are exactly
 * the longest in-order prefix below `end` (first (0, 64), then both fields
 * strictly increasing), capped by the capacity, or none when the header
 * fails its check; sealed_ok holds exactly when the header says sealed, its
 * count equals the entries kept and the file's entries, the file is
 * exactly header + entries, the recorded end is `end` and the entries
 * checksum holds; kl_oidx_find agrees with a linear scan; kl_oidx_cut keeps
 * exactly the entries before the cut; kl_oidx_note follows the 4096-byte
 * rule from the last entry kept.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few valid index files into
 * DIR and exit (scripts/fuzz.sh uses them as the starting corpus).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/io/io.h"
#include "engine/util.h"
#include "index/offset_index.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Room for a 64 KiB segment: 64 KiB / 4096 + 2 = 18 entries, so inputs can exceed it. */
#define FUZZ_SEGMENT_BYTES (16u * KL_IDX_INTERVAL_BYTES)
#define FIRST_BATCH        64u

/* The header check of FORMAT.md, written out independently of the parser. */
static int header_ok(const uint8_t *p, size_t len, uint64_t first_index) {
    return len >= KL_IDX_HEADER_BYTES && memcmp(p, KL_IDX_MAGIC, 8) == 0 &&
           kl_load32(p + 8) == KL_IDX_VERSION && kl_load32(p + 12) == KL_IDX_ENTRY_BYTES &&
           kl_load64(p + 16) == first_index && kl_load32(p + 24) == KL_IDX_INTERVAL_BYTES &&
           kl_load64(p + 56) == XXH3_64bits(p, 56);
}

static void drive(const uint8_t *p, size_t len, uint64_t first_index, uint64_t end) {
    kl_oidx x;
    KL_ASSERT(kl_oidx_init(&x, first_index, FUZZ_SEGMENT_BYTES) == 0);
    int sealed_ok = -1;
    kl_oidx_parse(&x, p, len, end, &sealed_ok);
    uint64_t n = atomic_load(&x.count);
    KL_ASSERT(sealed_ok == 0 || sealed_ok == 1);
    KL_ASSERT(n <= x.cap);

    /* The reference: what FORMAT.md says must be kept. */
    int hok = header_ok(p, len, first_index);
    uint64_t file_entries = len >= KL_IDX_HEADER_BYTES ? (len - KL_IDX_HEADER_BYTES) / 8 : 0;
    uint64_t want = 0, prev_rel = 0, prev_pos = 0;
    for (; hok && want < file_entries && want < x.cap; want++) {
        const uint8_t *e = p + KL_IDX_HEADER_BYTES + 8 * want;
        uint64_t rel = kl_load32(e), pos = kl_load32(e + 4);
        int in_order =
            want == 0 ? rel == 0 && pos == FIRST_BATCH : rel > prev_rel && pos > prev_pos;
        if (!in_order || pos >= end)
            break;
        prev_rel = rel;
        prev_pos = pos;
    }
    KL_ASSERT(n == want);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r, q;
        kl_oidx_entry(&x, i, &r, &q);
        KL_ASSERT(r == kl_load32(p + KL_IDX_HEADER_BYTES + 8 * i));
        KL_ASSERT(q == kl_load32(p + KL_IDX_HEADER_BYTES + 8 * i + 4));
    }
    KL_ASSERT(x.last_pos == (n ? prev_pos : 0));
    int want_sealed = hok && (kl_load32(p + 28) & KL_IDX_FLAG_SEALED) && kl_load64(p + 32) == n &&
                      n == file_entries && len == KL_IDX_HEADER_BYTES + 8 * n &&
                      kl_load64(p + 48) == end &&
                      XXH3_64bits(p + KL_IDX_HEADER_BYTES, (size_t)(8 * n)) == kl_load64(p + 40);
    KL_ASSERT(sealed_ok == want_sealed);

    /* Lookups agree with a linear scan (the kept entries are in order). */
    uint64_t queries[4 + 3 * 20];
    size_t nq = 0;
    queries[nq++] = 0;
    queries[nq++] = UINT32_MAX;
    queries[nq++] = UINT64_MAX;
    queries[nq++] = end;
    for (uint64_t i = 0; i < n && nq + 3 <= sizeof queries / sizeof queries[0]; i++) {
        uint64_t r, q;
        kl_oidx_entry(&x, i, &r, &q);
        queries[nq++] = r;
        queries[nq++] = r + 1;
        queries[nq++] = r - 1;
    }
    for (size_t k = 0; k < nq; k++) {
        int64_t ref = -1;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t r, q;
            kl_oidx_entry(&x, i, &r, &q);
            if (r <= queries[k])
                ref = (int64_t)i;
        }
        KL_ASSERT(kl_oidx_find(&x, queries[k]) == ref);
    }

    /* Cut at a position taken from the input; then the interval rule from what is left. */
    uint64_t cut = len >= 4 ? kl_load32(p + len - 4) : 0;
    uint64_t below = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r, q;
        kl_oidx_entry(&x, i, &r, &q);
        below += q < cut;
    }
    kl_oidx_cut(&x, cut);
    n = atomic_load(&x.count);
    KL_ASSERT(n == below);
    uint64_t last_rel = 0, last_pos = 0;
    if (n) {
        kl_oidx_entry(&x, n - 1, &last_rel, &last_pos);
        KL_ASSERT(x.last_pos == last_pos);
    }
    if (n < x.cap && last_rel < UINT32_MAX && last_pos + KL_IDX_INTERVAL_BYTES <= UINT32_MAX) {
        if (n > 0)
            KL_ASSERT(kl_oidx_note(&x, last_rel + 1, last_pos + KL_IDX_INTERVAL_BYTES - 1) == 0);
        KL_ASSERT(kl_oidx_note(&x, last_rel + 1, last_pos + KL_IDX_INTERVAL_BYTES) == 1);
        KL_ASSERT(atomic_load(&x.count) == n + 1);
    }
    kl_oidx_free(&x, NULL);
}

/*
 * The sealed mapper (kl_oidx_map_sealed) on the same bytes as a file: it
 * accepts exactly a sealed header whose count n is at least 1, the file
 * exactly header + 8n bytes and the entries checksum over them; then every
 * entry reads back as the file holds it. A count that wraps 8n must not
 * pass (it would send the readers past the mapping).
 */
static void map_sealed(const uint8_t *p, size_t len, uint64_t first_index) {
    static kl_io *io;
    static char path[64];
    if (!io) {
        KL_ASSERT(kl_io_posix_new(&io) == 0);
        snprintf(path, sizeof path, "/tmp/fuzz_index.%ld.idx", (long)getpid());
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    KL_ASSERT(fd >= 0);
    KL_ASSERT(write(fd, p, len) == (ssize_t)len);
    close(fd);
    uint64_t n = kl_load64(p + 32);
    int want = header_ok(p, len, first_index) && (kl_load32(p + 28) & KL_IDX_FLAG_SEALED) &&
               n >= 1 && n <= (len - KL_IDX_HEADER_BYTES) / 8 &&
               len == KL_IDX_HEADER_BYTES + 8 * n &&
               XXH3_64bits(p + KL_IDX_HEADER_BYTES, (size_t)(8 * n)) == kl_load64(p + 40);
    kl_oidx x;
    uint64_t seg_end = 0;
    int rc = kl_oidx_map_sealed(&x, io, path, first_index, &seg_end);
    KL_ASSERT(rc == 0 || rc == KL_ECORRUPT);
    KL_ASSERT((rc == 0) == want);
    if (rc == 0) {
        KL_ASSERT(atomic_load(&x.count) == n && seg_end == kl_load64(p + 48));
        for (uint64_t i = 0; i < n; i++) {
            uint64_t r, q;
            kl_oidx_entry(&x, i, &r, &q);
            KL_ASSERT(r == kl_load32(p + KL_IDX_HEADER_BYTES + 8 * i));
            KL_ASSERT(q == kl_load32(p + KL_IDX_HEADER_BYTES + 8 * i + 4));
        }
        kl_oidx_free(&x, io);
    }
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t first = size >= 24 ? kl_load64(data + 16) : 0;
    uint64_t end = size >= 56 ? kl_load64(data + 48) : UINT64_MAX;
    /* As given; the end nudged by the length so "end differs" is reached too. */
    drive(data, size, first, (size & 1) ? end : end + (size & 6));
    if (size < KL_IDX_HEADER_BYTES)
        return 0;
    /* Resealed: the entries checksum over the claimed entries, then the header checksum. */
    uint8_t *b = malloc(size);
    KL_ASSERT(b != NULL);
    memcpy(b, data, size);
    uint64_t claimed = kl_load64(b + 32);
    uint64_t present = (size - KL_IDX_HEADER_BYTES) / 8;
    uint64_t over = claimed < present ? claimed : present;
    kl_store64(b + 40, XXH3_64bits(b + KL_IDX_HEADER_BYTES, (size_t)(8 * over)));
    kl_store64(b + 56, XXH3_64bits(b, 56));
    drive(b, size, first, end);
    map_sealed(b, size, first);
    free(b);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

static void write_seeds(const char *dir) {
    static const uint32_t counts[] = {1, 3, 12, 30};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        kl_oidx x;
        KL_ASSERT(kl_oidx_init(&x, 52113 * c, 64u * KL_IDX_INTERVAL_BYTES) == 0);
        uint64_t pos = FIRST_BATCH;
        for (uint32_t i = 0; i < counts[c]; i++) {
            KL_ASSERT(kl_oidx_note(&x, (uint64_t)i * 7, pos) == 1);
            pos += KL_IDX_INTERVAL_BYTES + 100 * i;
        }
        uint8_t buf[KL_IDX_HEADER_BYTES + 8 * 64];
        size_t len = KL_IDX_HEADER_BYTES + 8 * (size_t)counts[c];
        for (int sealed = 0; sealed <= 1; sealed++) {
            kl_oidx_header(buf, &x, sealed, pos);
            memcpy(buf + KL_IDX_HEADER_BYTES, x.ent, 8 * (size_t)counts[c]);
            char name[64];
            snprintf(name, sizeof name, "%s-%u", sealed ? "sealed" : "active", counts[c]);
            write_seed(dir, name, buf, len);
        }
        kl_oidx_free(&x, NULL);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
