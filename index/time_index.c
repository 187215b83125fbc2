/*
 * time_index.c - the time index of a segment (see the header).
 *
 * Invariants: the writable array is an anonymous mapping sized like the
 * offset index's (one entry per KL_IDX_INTERVAL_BYTES of the largest
 * segment, plus two), so it never moves while readers search it; an entry
 * is complete before `count` covers it (release order).
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

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "../engine/util.h"
#include "offset_index.h"

int kl_tidx_init(kl_tidx *x, uint64_t first_index, uint64_t max_bytes) {
    memset(x, 0, sizeof *x);
    x->first_index = first_index;
    x->cap = max_bytes / KL_IDX_INTERVAL_BYTES + 2;
    size_t len = (size_t)(x->cap * KL_TIX_ENTRY_BYTES);
    void *m =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return kl_errf(KL_ENOMEM, "time index of segment %llu: %s", (unsigned long long)first_index,
                       strerror(errno));
    x->anon = m;
    x->ent = m;
    atomic_init(&x->count, 0);
    return 0;
}

void kl_tidx_free(kl_tidx *x, kl_io *io) {
    if (x->anon)
        munmap(x->anon, (size_t)(x->cap * KL_TIX_ENTRY_BYTES));
    if (x->file_map)
        io->v->unmap(io, x->file_map, x->file_map_len);
    memset(x, 0, sizeof *x);
}

void kl_tidx_note(kl_tidx *x, uint64_t rel, uint64_t ts_ms) {
    uint64_t n = atomic_load_explicit(&x->count, memory_order_relaxed);
    KL_ASSERT(x->anon != NULL && n < x->cap);
    KL_ASSERT(rel <= UINT32_MAX);
    uint8_t *e = x->anon + (size_t)n * KL_TIX_ENTRY_BYTES;
    kl_store64(e, ts_ms);
    kl_store32(e + 8, (uint32_t)rel);
    atomic_store_explicit(&x->count, n + 1, memory_order_release);
}

void kl_tidx_cut(kl_tidx *x, uint64_t n) {
    KL_ASSERT(x->anon != NULL);
    if (n >= atomic_load_explicit(&x->count, memory_order_relaxed))
        return;
    atomic_store_explicit(&x->count, n, memory_order_release);
    if (x->written > n)
        x->written = n;
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
    KL_ASSERT(x->anon != NULL);
    atomic_store_explicit(&x->count, 0, memory_order_release);
    x->written = 0; /* the caller rewrites the file anyway */
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
        memcpy(x->anon + kept * KL_TIX_ENTRY_BYTES, q, KL_TIX_ENTRY_BYTES);
        prev_ts = ts;
        prev_rel = rel;
    }
    atomic_store_explicit(&x->count, kept, memory_order_release);
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
    int fd = -1;
    uint64_t size = 0, n = 0;
    const void *map = NULL;
    int rc = kl_io_open(io, path, O_RDONLY, 0, &fd);
    if (rc < 0)
        return kl_errf(KL_ECORRUPT, "%s: %s", path, strerror(-rc));
    rc = io->v->size(io, fd, &size);
    if (rc == 0 && size >= KL_TIX_HEADER_BYTES)
        rc = io->v->map(io, fd, (size_t)size, &map);
    kl_io_close(io, fd);
    if (rc < 0 || size < KL_TIX_HEADER_BYTES)
        return kl_errf(KL_ECORRUPT, "%s: cannot map", path);
    if (kl_tidx_check_sealed(map, (size_t)size, first_index, segment_end, &n) < 0) {
        io->v->unmap(io, map, (size_t)size);
        return kl_err_prefix(KL_ECORRUPT, "%s: ", path);
    }
    x->file_map = map;
    x->file_map_len = (size_t)size;
    x->ent = (const uint8_t *)map + KL_TIX_HEADER_BYTES;
    atomic_init(&x->count, n);
    return 0;
}

int kl_tidx_pending(const kl_tidx *x, uint64_t upto, struct iovec *iov, uint64_t *offset) {
    if (upto <= x->written)
        return 0;
    KL_ASSERT(upto <= kl_tidx_count(x));
    iov->iov_base = (void *)(x->ent + x->written * KL_TIX_ENTRY_BYTES);
    iov->iov_len = (size_t)((upto - x->written) * KL_TIX_ENTRY_BYTES);
    *offset = KL_TIX_HEADER_BYTES + x->written * KL_TIX_ENTRY_BYTES;
    return 1;
}

void kl_tidx_written(kl_tidx *x, uint64_t upto) {
    if (upto > x->written)
        x->written = upto;
}

static int write_file(kl_io *io, const char *path, const uint8_t *hdr, const kl_tidx *x, uint64_t n,
                      int *fd_out) {
    int fd = -1;
    int rc = kl_io_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0644, &fd);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    struct iovec iov[2] = {{(void *)hdr, KL_TIX_HEADER_BYTES},
                           {(void *)x->ent, (size_t)(n * KL_TIX_ENTRY_BYTES)}};
    kl_io_op op = {.kind = KL_IO_OP_WRITE, .fd = fd, .iov = iov, .iovcnt = n ? 2 : 1};
    rc = kl_io_submit(io, &op, 1);
    if (rc < 0 || !fd_out) {
        kl_io_close(io, fd);
        fd = -1;
    }
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "writing %s: %s", path, strerror(-rc));
    if (fd_out)
        *fd_out = fd;
    return 0;
}

int kl_tidx_write_sealed(kl_tidx *x, kl_io *io, const char *path, uint64_t segment_end) {
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    KL_ASSERT(n > 0 && (size_t)n < sizeof tmp);
    uint8_t hdr[KL_TIX_HEADER_BYTES];
    kl_tidx_header(hdr, x, 1, segment_end);
    uint64_t cnt = kl_tidx_count(x);
    int rc = write_file(io, tmp, hdr, x, cnt, NULL);
    if (rc < 0)
        return rc;
    rc = io->v->rename(io, tmp, path);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "renaming %s: %s", tmp, strerror(-rc));
    x->written = cnt;
    return 0;
}

int kl_tidx_write_active(kl_tidx *x, kl_io *io, const char *path, int *fd_out) {
    KL_ASSERT(fd_out != NULL);
    uint8_t hdr[KL_TIX_HEADER_BYTES];
    kl_tidx_header(hdr, x, 0, 0);
    uint64_t cnt = kl_tidx_count(x);
    int rc = write_file(io, path, hdr, x, cnt, fd_out);
    if (rc == 0)
        x->written = cnt;
    return rc;
}
