/*
 * entry_array.c - the entry storage of a segment index (see the header).
 *
 * Invariants: the writable array is an anonymous mapping of cap entries
 * made once (MAP_NORESERVE: the kernel only backs the pages that hold
 * entries), so it never moves while readers search it; `count` only grows
 * by kl_earr_append, after the entry's bytes are in place.
 *
 * The one thing a reader would get wrong: a file is written without a sync
 * and a sealed one replaces the old by rename only. A crash can leave any
 * prefix of either; the index's checks on load, not this code, make that
 * safe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "entry_array.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../engine/util.h"

/*
 * Arrays up to this size live on the heap, not in a mapping of their own:
 * a process has at most vm.max_map_count mappings (65,530 by default), and
 * with small segments (64 KiB: an index of a few hundred bytes) the two
 * indexes of every segment a handle touched used two of them. A verify of a
 * log of 33,000 such segments ran out of them; with the indexes on the heap
 * a segment costs one mapping, its data's, and only once it is read.
 */
#define EARR_HEAP_BYTES (64u * 1024u)

int kl_earr_init(kl_earr *a, uint64_t cap, uint32_t entry_bytes, uint32_t header_bytes) {
    KL_ASSERT(cap > 0 && entry_bytes > 0);
    memset(a, 0, sizeof *a);
    size_t len = (size_t)(cap * entry_bytes);
    void *m = NULL;
    if (len <= EARR_HEAP_BYTES) {
        m = calloc(1, len);
        if (!m)
            return kl_errf(KL_ENOMEM, "an index of %zu bytes", len);
        a->on_heap = 1;
    } else {
        m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                 0);
        if (m == MAP_FAILED)
            return kl_errf(KL_ENOMEM, "%s", strerror(errno));
    }
    a->anon = m;
    a->ent = m;
    a->cap = cap;
    a->entry_bytes = entry_bytes;
    a->header_bytes = header_bytes;
    atomic_init(&a->count, 0);
    return 0;
}

void kl_earr_free(kl_earr *a, kl_io *io) {
    if (a->on_heap) {
        free(a->anon);
        free((void *)a->file_map);
    } else {
        if (a->anon)
            munmap(a->anon, (size_t)(a->cap * a->entry_bytes));
        if (a->file_map)
            io->v->unmap(io, a->file_map, a->file_map_len);
    }
    memset(a, 0, sizeof *a);
}

void kl_earr_append(kl_earr *a, const uint8_t *e) {
    uint64_t n = atomic_load_explicit(&a->count, memory_order_relaxed);
    KL_ASSERT(a->anon != NULL && n < a->cap);
    memcpy(a->anon + (size_t)n * a->entry_bytes, e, a->entry_bytes);
    atomic_store_explicit(&a->count, n + 1, memory_order_release);
}

void kl_earr_cut(kl_earr *a, uint64_t n) {
    KL_ASSERT(a->anon != NULL);
    if (n < atomic_load_explicit(&a->count, memory_order_relaxed))
        atomic_store_explicit(&a->count, n, memory_order_release);
    if (a->written > n)
        a->written = n;
    KL_ASSERT(atomic_load_explicit(&a->count, memory_order_relaxed) <= n && a->written <= n);
}

int kl_earr_pending(const kl_earr *a, uint64_t upto, struct iovec *iov, uint64_t *offset) {
    if (upto <= a->written)
        return 0;
    KL_ASSERT(upto <= kl_earr_count(a));
    iov->iov_base = (void *)(a->ent + a->written * a->entry_bytes);
    iov->iov_len = (size_t)((upto - a->written) * a->entry_bytes);
    *offset = a->header_bytes + a->written * a->entry_bytes;
    return 1;
}

void kl_earr_written(kl_earr *a, uint64_t upto) {
    if (upto > a->written)
        a->written = upto;
}

/* Header and the first n entries as the whole file at path; *fd_out keeps it open if not NULL. */
static int write_file(const kl_earr *a, kl_io *io, const char *path, const uint8_t *hdr, uint64_t n,
                      int *fd_out) {
    int fd = -1;
    int rc = kl_io_open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0644, &fd);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    struct iovec iov[2] = {{(void *)hdr, a->header_bytes},
                           {(void *)a->ent, (size_t)(n * a->entry_bytes)}};
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

int kl_earr_write_sealed(kl_earr *a, kl_io *io, const char *path, const uint8_t *hdr) {
    char tmp[4096];
    int len = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    KL_ASSERT(len > 0 && (size_t)len < sizeof tmp);
    uint64_t n = kl_earr_count(a);
    int rc = write_file(a, io, tmp, hdr, n, NULL);
    if (rc < 0)
        return rc;
    rc = io->v->rename(io, tmp, path);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "renaming %s: %s", tmp, strerror(-rc));
    a->written = n;
    return 0;
}

int kl_earr_write_active(kl_earr *a, kl_io *io, const char *path, const uint8_t *hdr, int *fd_out) {
    KL_ASSERT(fd_out != NULL);
    uint64_t n = kl_earr_count(a);
    int rc = write_file(a, io, path, hdr, n, fd_out);
    if (rc == 0)
        a->written = n;
    return rc;
}

int kl_earr_map_file(kl_earr *a, kl_io *io, const char *path, uint32_t entry_bytes,
                     uint32_t header_bytes) {
    memset(a, 0, sizeof *a);
    int fd = -1;
    uint64_t size = 0;
    const void *map = NULL;
    int rc = kl_io_open(io, path, O_RDONLY, 0, &fd);
    if (rc < 0)
        return kl_errf(KL_ECORRUPT, "%s: %s", path, strerror(-rc));
    rc = io->v->size(io, fd, &size);
    int heap = rc == 0 && size >= header_bytes && size <= EARR_HEAP_BYTES;
    if (heap) { /* a copy on the heap (EARR_HEAP_BYTES says why) */
        uint8_t *buf = malloc((size_t)size);
        size_t got = 0;
        rc = buf ? kl_io_pread(io, fd, buf, (size_t)size, 0, &got) : -ENOMEM;
        if (rc == 0 && got != size)
            rc = -EIO; /* cut since its size was read */
        if (rc < 0)
            free(buf);
        else
            map = buf;
    } else if (rc == 0 && size >= header_bytes) {
        rc = io->v->map(io, fd, (size_t)size, &map);
    }
    kl_io_close(io, fd);
    if (rc < 0 || size < header_bytes)
        return kl_errf(KL_ECORRUPT, "%s: cannot %s", path, heap ? "read" : "map");
    a->on_heap = heap;
    a->file_map = map;
    a->file_map_len = (size_t)size;
    a->entry_bytes = entry_bytes;
    a->header_bytes = header_bytes;
    a->ent = (const uint8_t *)map + header_bytes;
    atomic_init(&a->count, 0);
    return 0;
}

void kl_earr_map_accept(kl_earr *a, uint64_t n) {
    KL_ASSERT(a->file_map != NULL && a->anon == NULL);
    KL_ASSERT(a->header_bytes + n * a->entry_bytes == a->file_map_len);
    atomic_init(&a->count, n);
}
