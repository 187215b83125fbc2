/*
 * offset_index.c - the sparse offset index of a segment (see the header).
 *
 * Owns the .idx entry layout, its header and checks, the interval rule that
 * decides which batches get an entry, and cutting by byte position; the
 * entries' memory and the file I/O are entry_array.c's.
 * Invariants: the array has room for one entry per KL_IDX_INTERVAL_BYTES of
 * the largest segment plus two, so the rule can never overflow it; kept
 * entries are strictly increasing in both fields, the first at rel 0.
 *
 * The one thing a reader would get wrong: last_pos is the writer's copy of
 * the last entry's position, and every path that changes the count (note,
 * cut, parse) must set it, or the interval rule drifts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "offset_index.h"

#include <fcntl.h>
#include <stdlib.h>
#include <xxhash.h>

#include "../engine/util.h"

/* Where a segment's first batch starts: right after its 64-byte file header. */
#define KL_SEG_FIRST_BATCH 64u

int kl_oidx_init(kl_oidx *x, uint64_t first_index, uint64_t max_bytes) {
    memset(x, 0, sizeof *x);
    x->first_index = first_index;
    uint64_t cap = max_bytes / KL_IDX_INTERVAL_BYTES + 2;
    if (kl_earr_init(&x->arr, cap, KL_IDX_ENTRY_BYTES, KL_IDX_HEADER_BYTES) < 0)
        return kl_err_prefix(KL_ENOMEM, "index of segment %llu: ", (unsigned long long)first_index);
    return 0;
}

void kl_oidx_free(kl_oidx *x, kl_io *io) {
    kl_earr_free(&x->arr, io);
    memset(x, 0, sizeof *x);
}

int kl_oidx_note(kl_oidx *x, uint64_t rel, uint64_t pos) {
    uint64_t n = atomic_load_explicit(&x->count, memory_order_relaxed);
    KL_ASSERT(x->anon != NULL);
    if (n > 0 && pos < x->last_pos + KL_IDX_INTERVAL_BYTES)
        return 0;
    KL_ASSERT(rel <= UINT32_MAX && pos <= UINT32_MAX);
    uint8_t e[KL_IDX_ENTRY_BYTES];
    kl_store32(e, (uint32_t)rel);
    kl_store32(e + 4, (uint32_t)pos);
    x->last_pos = pos;
    kl_earr_append(&x->arr, e);
    return 1;
}

void kl_oidx_cut(kl_oidx *x, uint64_t pos) {
    KL_ASSERT(x->anon != NULL);
    uint64_t n = atomic_load_explicit(&x->count, memory_order_relaxed);
    while (n > 0) {
        uint64_t r, p;
        kl_oidx_entry(x, n - 1, &r, &p);
        if (p < pos)
            break;
        n--;
    }
    kl_earr_cut(&x->arr, n);
    if (n > 0) {
        uint64_t r;
        kl_oidx_entry(x, n - 1, &r, &x->last_pos);
    } else {
        x->last_pos = 0;
    }
}

int64_t kl_oidx_find(const kl_oidx *x, uint64_t rel) {
    uint64_t n = atomic_load_explicit(&x->count, memory_order_acquire);
    if (n == 0)
        return -1;
    uint64_t lo = 0, hi = n; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t r, p;
        kl_oidx_entry(x, mid, &r, &p);
        if (r <= rel)
            lo = mid;
        else
            hi = mid;
    }
    /* lo only moves onto entries <= rel; entry 0 was never compared. */
    uint64_t r0, p0;
    kl_oidx_entry(x, 0, &r0, &p0);
    if (lo == 0 && r0 > rel)
        return -1;
    return (int64_t)lo;
}

void kl_oidx_header(uint8_t *p, const kl_oidx *x, int sealed, uint64_t segment_end) {
    uint64_t n = atomic_load_explicit(&x->count, memory_order_acquire);
    memset(p, 0, KL_IDX_HEADER_BYTES);
    memcpy(p, KL_IDX_MAGIC, 8);
    kl_store32(p + 8, KL_IDX_VERSION);
    kl_store32(p + 12, KL_IDX_ENTRY_BYTES);
    kl_store64(p + 16, x->first_index);
    kl_store32(p + 24, KL_IDX_INTERVAL_BYTES);
    kl_store32(p + 28, sealed ? KL_IDX_FLAG_SEALED : 0);
    if (sealed) {
        kl_store64(p + 32, n);
        kl_store64(p + 40, XXH3_64bits(x->ent, (size_t)(n * KL_IDX_ENTRY_BYTES)));
        kl_store64(p + 48, segment_end);
    }
    kl_store64(p + 56, XXH3_64bits(p, 56));
}

/* Check an index file header; *sealed, *n, *sum and *end from it. */
static int header_check(const uint8_t *p, uint64_t first_index, int *sealed, uint64_t *n,
                        uint64_t *sum, uint64_t *end) {
    if (memcmp(p, KL_IDX_MAGIC, 8) != 0 || kl_load32(p + 8) != KL_IDX_VERSION ||
        kl_load32(p + 12) != KL_IDX_ENTRY_BYTES || kl_load64(p + 56) != XXH3_64bits(p, 56) ||
        kl_load64(p + 16) != first_index || kl_load32(p + 24) != KL_IDX_INTERVAL_BYTES)
        return kl_errf(KL_ECORRUPT, "index header fails its check");
    *sealed = (kl_load32(p + 28) & KL_IDX_FLAG_SEALED) != 0;
    *n = kl_load64(p + 32);
    *sum = kl_load64(p + 40);
    *end = kl_load64(p + 48);
    return 0;
}

void kl_oidx_parse(kl_oidx *x, const uint8_t *buf, size_t len, uint64_t end, int *sealed_ok) {
    *sealed_ok = 0;
    kl_earr_cut(&x->arr, 0); /* and written = 0: the caller rewrites the file's header anyway */
    x->last_pos = 0;
    int sealed = 0;
    uint64_t n = 0, sum = 0, seg_end = 0;
    if (len < KL_IDX_HEADER_BYTES ||
        header_check(buf, x->first_index, &sealed, &n, &sum, &seg_end) < 0)
        return;
    uint64_t file_entries = (len - KL_IDX_HEADER_BYTES) / KL_IDX_ENTRY_BYTES;
    if (file_entries > x->cap)
        file_entries = x->cap;
    const uint8_t *e = buf + KL_IDX_HEADER_BYTES;
    uint64_t prev_rel = 0, prev_pos = 0, kept = 0;
    for (uint64_t i = 0; i < file_entries; i++) {
        uint64_t rel = kl_load32(e + i * KL_IDX_ENTRY_BYTES);
        uint64_t pos = kl_load32(e + i * KL_IDX_ENTRY_BYTES + 4);
        int in_order =
            i == 0 ? rel == 0 && pos == KL_SEG_FIRST_BATCH : rel > prev_rel && pos > prev_pos;
        if (pos >= end || !in_order)
            break;
        kl_earr_append(&x->arr, e + i * KL_IDX_ENTRY_BYTES);
        kept++;
        prev_rel = rel;
        prev_pos = pos;
    }
    x->last_pos = kept ? prev_pos : 0;
    KL_ASSERT(atomic_load_explicit(&x->count, memory_order_relaxed) == kept);
    *sealed_ok = sealed && n == kept && n == file_entries &&
                 len == KL_IDX_HEADER_BYTES + n * KL_IDX_ENTRY_BYTES && seg_end == end &&
                 XXH3_64bits(e, (size_t)(n * KL_IDX_ENTRY_BYTES)) == sum;
}

void kl_oidx_load(kl_oidx *x, kl_io *io, const char *path, uint64_t end, int *sealed_ok) {
    int fd = -1;
    uint64_t size = 0;
    uint8_t *buf = NULL;
    kl_oidx_parse(x, NULL, 0, end, sealed_ok); /* unreadable = damaged: zero entries */
    if (kl_io_open(io, path, O_RDONLY, 0, &fd) < 0)
        return;
    if (io->v->size(io, fd, &size) < 0 || size < KL_IDX_HEADER_BYTES)
        goto out;
    uint64_t max = KL_IDX_HEADER_BYTES + x->cap * KL_IDX_ENTRY_BYTES;
    size_t len = (size_t)KL_MIN(size, max);
    buf = malloc(len);
    size_t got = 0;
    if (!buf || kl_io_pread(io, fd, buf, len, 0, &got) < 0)
        goto out;
    kl_oidx_parse(x, buf, got, end, sealed_ok);
out:
    free(buf);
    kl_io_close(io, fd);
}

int kl_oidx_map_sealed(kl_oidx *x, kl_io *io, const char *path, uint64_t first_index,
                       uint64_t *segment_end) {
    memset(x, 0, sizeof *x);
    x->first_index = first_index;
    int rc = kl_earr_map_file(&x->arr, io, path, KL_IDX_ENTRY_BYTES, KL_IDX_HEADER_BYTES);
    if (rc < 0)
        return rc;
    int sealed = 0;
    uint64_t n = 0, sum = 0, end = 0;
    const uint8_t *p = x->file_map;
    /* n is bounded by the file before it is multiplied: a count near 2^61 would wrap */
    if (header_check(p, first_index, &sealed, &n, &sum, &end) < 0 || !sealed || n == 0 ||
        n > (x->file_map_len - KL_IDX_HEADER_BYTES) / KL_IDX_ENTRY_BYTES ||
        x->file_map_len != KL_IDX_HEADER_BYTES + n * KL_IDX_ENTRY_BYTES ||
        XXH3_64bits(p + KL_IDX_HEADER_BYTES, (size_t)(n * KL_IDX_ENTRY_BYTES)) != sum) {
        kl_earr_free(&x->arr, io);
        return kl_errf(KL_ECORRUPT, "%s: not a complete sealed index", path);
    }
    kl_earr_map_accept(&x->arr, n);
    *segment_end = end;
    return 0;
}

int kl_oidx_pending(const kl_oidx *x, uint64_t upto, struct iovec *iov, uint64_t *offset) {
    return kl_earr_pending(&x->arr, upto, iov, offset);
}

void kl_oidx_written(kl_oidx *x, uint64_t upto) {
    kl_earr_written(&x->arr, upto);
}

int kl_oidx_write_sealed(kl_oidx *x, kl_io *io, const char *path, uint64_t segment_end) {
    uint8_t hdr[KL_IDX_HEADER_BYTES];
    kl_oidx_header(hdr, x, 1, segment_end);
    return kl_earr_write_sealed(&x->arr, io, path, hdr);
}

int kl_oidx_write_active(kl_oidx *x, kl_io *io, const char *path, int *fd_out) {
    uint8_t hdr[KL_IDX_HEADER_BYTES];
    kl_oidx_header(hdr, x, 0, 0);
    return kl_earr_write_active(&x->arr, io, path, hdr, fd_out);
}
