/*
 * offset_index.c - the sparse offset index of a segment (see the header).
 *
 * The writable array is an anonymous mapping sized for the largest segment
 * the log can make, so it never moves while readers search it; the kernel
 * only backs the pages that hold entries.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "offset_index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "../engine/util.h"

/* Where a segment's first batch starts: right after its 64-byte file header. */
#define KL_SEG_FIRST_BATCH 64u

int kl_oidx_init(kl_oidx *x, uint64_t first_index, uint64_t max_bytes) {
    memset(x, 0, sizeof *x);
    x->first_index = first_index;
    x->cap = max_bytes / KL_IDX_INTERVAL_BYTES + 2;
    size_t len = (size_t)(x->cap * KL_IDX_ENTRY_BYTES);
    void *m =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return kl_errf(KL_ENOMEM, "index of segment %llu: %s", (unsigned long long)first_index,
                       strerror(errno));
    x->anon = m;
    x->ent = m;
    atomic_init(&x->count, 0);
    return 0;
}

void kl_oidx_free(kl_oidx *x, kl_io *io) {
    if (x->anon)
        munmap(x->anon, (size_t)(x->cap * KL_IDX_ENTRY_BYTES));
    if (x->file_map)
        io->v->unmap(io, x->file_map, x->file_map_len);
    memset(x, 0, sizeof *x);
}

int kl_oidx_note(kl_oidx *x, uint64_t rel, uint64_t pos) {
    uint64_t n = atomic_load_explicit(&x->count, memory_order_relaxed);
    KL_ASSERT(x->anon != NULL);
    if (n > 0 && pos < x->last_pos + KL_IDX_INTERVAL_BYTES)
        return 0;
    KL_ASSERT(n < x->cap);
    KL_ASSERT(rel <= UINT32_MAX && pos <= UINT32_MAX);
    uint8_t *e = x->anon + (size_t)n * KL_IDX_ENTRY_BYTES;
    kl_store32(e, (uint32_t)rel);
    kl_store32(e + 4, (uint32_t)pos);
    x->last_pos = pos;
    atomic_store_explicit(&x->count, n + 1, memory_order_release);
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
    atomic_store_explicit(&x->count, n, memory_order_release);
    if (n > 0) {
        uint64_t r;
        kl_oidx_entry(x, n - 1, &r, &x->last_pos);
    } else {
        x->last_pos = 0;
    }
    if (x->written > n)
        x->written = n;
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
    atomic_store_explicit(&x->count, 0, memory_order_release);
    x->last_pos = 0;
    x->written = 0; /* the caller rewrites the file's header anyway */
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
        memcpy(x->anon + kept * KL_IDX_ENTRY_BYTES, e + i * KL_IDX_ENTRY_BYTES, KL_IDX_ENTRY_BYTES);
        kept++;
        prev_rel = rel;
        prev_pos = pos;
    }
    x->last_pos = kept ? prev_pos : 0;
    atomic_store_explicit(&x->count, kept, memory_order_release);
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
    int fd = -1;
    uint64_t size = 0;
    const void *map = NULL;
    int rc = kl_io_open(io, path, O_RDONLY, 0, &fd);
    if (rc < 0)
        return kl_errf(KL_ECORRUPT, "%s: %s", path, strerror(-rc));
    rc = io->v->size(io, fd, &size);
    if (rc == 0 && size >= KL_IDX_HEADER_BYTES)
        rc = io->v->map(io, fd, (size_t)size, &map);
    kl_io_close(io, fd);
    if (rc < 0 || size < KL_IDX_HEADER_BYTES)
        return kl_errf(KL_ECORRUPT, "%s: cannot map", path);
    int sealed = 0;
    uint64_t n = 0, sum = 0, end = 0;
    const uint8_t *p = map;
    if (header_check(p, first_index, &sealed, &n, &sum, &end) < 0 || !sealed ||
        size != KL_IDX_HEADER_BYTES + n * KL_IDX_ENTRY_BYTES || n == 0 ||
        XXH3_64bits(p + KL_IDX_HEADER_BYTES, (size_t)(n * KL_IDX_ENTRY_BYTES)) != sum) {
        io->v->unmap(io, map, (size_t)size);
        return kl_errf(KL_ECORRUPT, "%s: not a complete sealed index", path);
    }
    x->file_map = map;
    x->file_map_len = (size_t)size;
    x->ent = p + KL_IDX_HEADER_BYTES;
    atomic_init(&x->count, n);
    *segment_end = end;
    return 0;
}

int kl_oidx_pending(const kl_oidx *x, uint64_t upto, struct iovec *iov, uint64_t *offset) {
    if (upto <= x->written)
        return 0;
    iov->iov_base = (void *)(x->ent + x->written * KL_IDX_ENTRY_BYTES);
    iov->iov_len = (size_t)((upto - x->written) * KL_IDX_ENTRY_BYTES);
    *offset = KL_IDX_HEADER_BYTES + x->written * KL_IDX_ENTRY_BYTES;
    return 1;
}

void kl_oidx_written(kl_oidx *x, uint64_t upto) {
    if (upto > x->written)
        x->written = upto;
}

static int write_file(kl_io *io, const char *path, const uint8_t *hdr, const kl_oidx *x, uint64_t n,
                      int keep_fd, int *fd_out) {
    int fd = -1;
    int rc = kl_io_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0644, &fd);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    struct iovec iov[2] = {{(void *)hdr, KL_IDX_HEADER_BYTES},
                           {(void *)x->ent, (size_t)(n * KL_IDX_ENTRY_BYTES)}};
    kl_io_op op = {.kind = KL_IO_OP_WRITE, .fd = fd, .iov = iov, .iovcnt = n ? 2 : 1};
    rc = kl_io_submit(io, &op, 1);
    if (rc < 0 || !keep_fd) {
        kl_io_close(io, fd);
        fd = -1;
    }
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "writing %s: %s", path, strerror(-rc));
    if (fd_out)
        *fd_out = fd;
    return 0;
}

int kl_oidx_write_sealed(kl_oidx *x, kl_io *io, const char *path, uint64_t segment_end) {
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    KL_ASSERT(n > 0 && (size_t)n < sizeof tmp);
    uint8_t hdr[KL_IDX_HEADER_BYTES];
    kl_oidx_header(hdr, x, 1, segment_end);
    uint64_t cnt = atomic_load_explicit(&x->count, memory_order_acquire);
    int rc = write_file(io, tmp, hdr, x, cnt, 0, NULL);
    if (rc < 0)
        return rc;
    rc = io->v->rename(io, tmp, path);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "renaming %s: %s", tmp, strerror(-rc));
    x->written = cnt;
    return 0;
}

int kl_oidx_write_active(kl_oidx *x, kl_io *io, const char *path, int *fd_out) {
    uint8_t hdr[KL_IDX_HEADER_BYTES];
    kl_oidx_header(hdr, x, 0, 0);
    uint64_t cnt = atomic_load_explicit(&x->count, memory_order_acquire);
    int rc = write_file(io, path, hdr, x, cnt, 1, fd_out);
    if (rc == 0)
        x->written = cnt;
    return rc;
}
