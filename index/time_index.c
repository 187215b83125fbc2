/*
 * time_index.c - the time index of a segment (see the header).
 *
 * Owns the .tix entry layout, its header and sealed check, the search by
 * time, and loading the in-order prefix of a file; the entries' memory and
 * the file I/O are entry_array.c's.
 * Invariants: the writable array has the offset index's capacity (one entry
 * per KL_IDX_INTERVAL_BYTES of the largest segment, plus two), since entry
 * i is made exactly when .idx entry i is; kept entries have strictly
 * increasing rel and non-decreasing timestamps, the first at rel 0.
 *
 * The one thing a reader would get wrong: nothing here knows where a batch
 * is. The byte position of entry i's batch is entry i of the segment's
 * .idx, and a sealed file is only as good as the engine's check that its
 * rel_index column equals the .idx's and that its ends match the batches.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "time_index.h"

#include <fcntl.h>
#include <stdlib.h>
#include <xxhash.h>

#include "../engine/util.h"
#include "offset_index.h"

int kl_tidx_init(kl_tidx *x, uint64_t first_index, uint64_t max_bytes) {
    memset(x, 0, sizeof *x);
    x->first_index = first_index;
    uint64_t cap = max_bytes / KL_IDX_INTERVAL_BYTES + 2;
    if (kl_earr_init(&x->arr, cap, KL_TIX_ENTRY_BYTES, KL_TIX_HEADER_BYTES) < 0)
        return kl_err_prefix(KL_ENOMEM,
                             "time index of segment %llu: ", (unsigned long long)first_index);
    return 0;
}

void kl_tidx_free(kl_tidx *x, kl_io *io) {
    kl_earr_free(&x->arr, io);
    memset(x, 0, sizeof *x);
}

void kl_tidx_note(kl_tidx *x, uint64_t rel, uint64_t ts_ms) {
    KL_ASSERT(rel <= UINT32_MAX);
    uint8_t e[KL_TIX_ENTRY_BYTES];
    kl_store64(e, ts_ms);
    kl_store32(e + 8, (uint32_t)rel);
    kl_earr_append(&x->arr, e);
}

void kl_tidx_cut(kl_tidx *x, uint64_t n) {
    kl_earr_cut(&x->arr, n);
}

int64_t kl_tidx_find(const kl_tidx *x, uint64_t n, uint64_t time_ms) {
    KL_ASSERT(n <= kl_tidx_count(x));
    uint64_t lo = 0, hi = n; /* the first entry at or after time_ms is in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2, ts, rel;
        kl_tidx_entry(x, mid, &ts, &rel);
        if (ts < time_ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    KL_ASSERT(lo <= n);
    return (int64_t)lo - 1;
}

void kl_tidx_header(uint8_t *p, const kl_tidx *x, int sealed, uint64_t segment_end) {
    uint64_t n = kl_tidx_count(x);
    memset(p, 0, KL_TIX_HEADER_BYTES);
    memcpy(p, KL_TIX_MAGIC, 8);
    kl_store32(p + 8, KL_TIX_VERSION);
    kl_store32(p + 12, KL_TIX_ENTRY_BYTES);
    kl_store64(p + 16, x->first_index);
    kl_store32(p + 24, KL_IDX_INTERVAL_BYTES);
    kl_store32(p + 28, sealed ? KL_TIX_FLAG_SEALED : 0);
    if (sealed) {
        kl_store64(p + 32, n);
        kl_store64(p + 40, XXH3_64bits(x->ent, (size_t)(n * KL_TIX_ENTRY_BYTES)));
        kl_store64(p + 48, segment_end);
    }
    kl_store64(p + 56, XXH3_64bits(p, 56));
}

/* The fields every .tix header must hold, sealed or not. */
static int header_ok(const uint8_t *p, size_t len, uint64_t first_index) {
    return len >= KL_TIX_HEADER_BYTES && memcmp(p, KL_TIX_MAGIC, 8) == 0 &&
           kl_load32(p + 8) == KL_TIX_VERSION && kl_load32(p + 12) == KL_TIX_ENTRY_BYTES &&
           kl_load64(p + 16) == first_index && kl_load32(p + 24) == KL_IDX_INTERVAL_BYTES &&
           kl_load64(p + 56) == XXH3_64bits(p, 56);
}

void kl_tidx_parse(kl_tidx *x, const uint8_t *buf, size_t len, uint64_t max_entries) {
    kl_earr_cut(&x->arr, 0); /* and written = 0: the caller rewrites the file anyway */
    if (!buf || !header_ok(buf, len, x->first_index))
        return;
    uint64_t file_entries = (len - KL_TIX_HEADER_BYTES) / KL_TIX_ENTRY_BYTES;
    uint64_t most = KL_MIN(KL_MIN(file_entries, x->cap), max_entries);
    const uint8_t *e = buf + KL_TIX_HEADER_BYTES;
    uint64_t prev_ts = 0, prev_rel = 0, kept = 0;
    for (; kept < most; kept++) {
        const uint8_t *q = e + kept * KL_TIX_ENTRY_BYTES;
        uint64_t ts = kl_load64(q), rel = kl_load32(q + 8);
        int in_order = kept == 0 ? rel == 0 : rel > prev_rel && ts >= prev_ts;
        if (!in_order)
            break;
        kl_earr_append(&x->arr, q);
        prev_ts = ts;
        prev_rel = rel;
    }
    KL_ASSERT(kl_tidx_count(x) == kept);
}

void kl_tidx_load(kl_tidx *x, kl_io *io, const char *path, uint64_t max_entries) {
    int fd = -1;
    uint64_t size = 0;
    uint8_t *buf = NULL;
    kl_tidx_parse(x, NULL, 0, 0); /* unreadable = damaged: zero entries */
    if (kl_io_open(io, path, O_RDONLY, 0, &fd) < 0)
        return;
    if (io->v->size(io, fd, &size) < 0 || size < KL_TIX_HEADER_BYTES)
        goto out;
    uint64_t max = KL_TIX_HEADER_BYTES + KL_MIN(x->cap, max_entries) * KL_TIX_ENTRY_BYTES;
    size_t len = (size_t)KL_MIN(size, max), got = 0;
    buf = malloc(len);
    if (!buf || kl_io_pread(io, fd, buf, len, 0, &got) < 0)
        goto out;
    kl_tidx_parse(x, buf, got, max_entries);
out:
    free(buf);
    kl_io_close(io, fd);
}

int kl_tidx_check_sealed(const uint8_t *p, size_t len, uint64_t first_index, uint64_t segment_end,
                         uint64_t *n) {
    if (!header_ok(p, len, first_index) || !(kl_load32(p + 28) & KL_TIX_FLAG_SEALED))
        return kl_errf(KL_ECORRUPT, "time index header fails its check");
    uint64_t cnt = kl_load64(p + 32);
    if (cnt > (len - KL_TIX_HEADER_BYTES) / KL_TIX_ENTRY_BYTES ||
        len != KL_TIX_HEADER_BYTES + cnt * KL_TIX_ENTRY_BYTES)
        return kl_errf(KL_ECORRUPT, "time index is %zu bytes for %llu entries", len,
                       (unsigned long long)cnt);
    if (kl_load64(p + 48) != segment_end)
        return kl_errf(KL_ECORRUPT, "time index is of a segment ending at %llu, not %llu",
                       (unsigned long long)kl_load64(p + 48), (unsigned long long)segment_end);
    if (XXH3_64bits(p + KL_TIX_HEADER_BYTES, (size_t)(cnt * KL_TIX_ENTRY_BYTES)) !=
        kl_load64(p + 40))
        return kl_errf(KL_ECORRUPT, "time index entries fail their checksum");
    *n = cnt;
    return 0;
}

int kl_tidx_map_sealed(kl_tidx *x, kl_io *io, const char *path, uint64_t first_index,
                       uint64_t segment_end) {
    memset(x, 0, sizeof *x);
    x->first_index = first_index;
    uint64_t n = 0;
    int rc = kl_earr_map_file(&x->arr, io, path, KL_TIX_ENTRY_BYTES, KL_TIX_HEADER_BYTES);
    if (rc < 0)
        return rc;
    if (kl_tidx_check_sealed(x->file_map, x->file_map_len, first_index, segment_end, &n) < 0) {
        kl_earr_free(&x->arr, io);
        return kl_err_prefix(KL_ECORRUPT, "%s: ", path);
    }
    kl_earr_map_accept(&x->arr, n);
    return 0;
}

int kl_tidx_pending(const kl_tidx *x, uint64_t upto, struct iovec *iov, uint64_t *offset) {
    return kl_earr_pending(&x->arr, upto, iov, offset);
}

void kl_tidx_written(kl_tidx *x, uint64_t upto) {
    kl_earr_written(&x->arr, upto);
}

int kl_tidx_write_sealed(kl_tidx *x, kl_io *io, const char *path, uint64_t segment_end) {
    uint8_t hdr[KL_TIX_HEADER_BYTES];
    kl_tidx_header(hdr, x, 1, segment_end);
    return kl_earr_write_sealed(&x->arr, io, path, hdr);
}

int kl_tidx_write_active(kl_tidx *x, kl_io *io, const char *path, int *fd_out) {
    uint8_t hdr[KL_TIX_HEADER_BYTES];
    kl_tidx_header(hdr, x, 0, 0);
    return kl_earr_write_active(&x->arr, io, path, hdr, fd_out);
}
