/*
 * io_posix.c - the portable backend: pwritev and fdatasync, one op after the
 * other. Used where io_uring is refused, when KL_IO=posix, and as the base
 * of the fault-injecting backend.
 *
 * Chains run in order; after a failed op the rest of its chain reports
 * -ECANCELED, exactly as io_uring reports a broken link. A short write is
 * continued until it completes or the kernel returns an error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util.h"

/* The most iovecs one write takes (the commit path uses one or two). */
#define KL_IOV_MAX 64

size_t kl_iov_bytes(const struct iovec *iov, int iovcnt) {
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++)
        n += iov[i].iov_len;
    return n;
}

int kl_posix_open(const char *path, int flags, int mode, int *fd) {
    int f;
    do {
        f = open(path, flags | O_CLOEXEC, mode);
    } while (f < 0 && errno == EINTR);
    if (f < 0)
        return -errno;
    *fd = f;
    return 0;
}

/* Write every byte of iov at offset; *written gets what was written. */
int kl_posix_pwritev_all(int fd, const struct iovec *iov, int iovcnt, uint64_t offset,
                         int64_t *written) {
    struct iovec local[KL_IOV_MAX];
    KL_ASSERT(iovcnt >= 0 && iovcnt <= (int)(sizeof local / sizeof local[0]));
    memcpy(local, iov, sizeof(struct iovec) * (size_t)iovcnt);
    struct iovec *cur = local;
    int left = iovcnt;
    *written = 0;
    while (left > 0) {
        if (cur->iov_len == 0) {
            cur++;
            left--;
            continue;
        }
        ssize_t n = pwritev(fd, cur, left, (off_t)(offset + (uint64_t)*written));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        *written += n;
        size_t adv = (size_t)n;
        while (left > 0 && adv >= cur->iov_len) {
            adv -= cur->iov_len;
            cur++;
            left--;
        }
        if (left > 0) {
            cur->iov_base = (uint8_t *)cur->iov_base + adv;
            cur->iov_len -= adv;
        }
    }
    return 0;
}

int kl_posix_run_op(kl_io_op *op) {
    int rc;
    switch (op->kind) {
    case KL_IO_OP_WRITE: {
        int64_t w = 0;
        rc = kl_posix_pwritev_all(op->fd, op->iov, op->iovcnt, op->offset, &w);
        op->res = rc < 0 ? rc : w;
        return rc;
    }
    case KL_IO_OP_DATASYNC:
        rc = fdatasync(op->fd) < 0 ? -errno : 0;
        op->res = rc;
        return rc;
    case KL_IO_OP_FULLSYNC:
        rc = fsync(op->fd) < 0 ? -errno : 0;
        op->res = rc;
        return rc;
    case KL_IO_OP_WRITEBACK:
        rc =
            sync_file_range(op->fd, (off_t)op->offset, (off_t)op->nbytes, SYNC_FILE_RANGE_WRITE) < 0
                ? -errno
                : 0;
        op->res = rc;
        return rc;
    default:
        KL_ASSERT(!"unknown io op");
    }
    return -EINVAL;
}

int kl_posix_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *got) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return 0;
}

int kl_posix_truncate(int fd, uint64_t size) {
    int rc;
    do {
        rc = ftruncate(fd, (off_t)size);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

int kl_posix_size(int fd, uint64_t *size) {
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int kl_posix_map(int fd, size_t len, const void **addr) {
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
}

void kl_posix_unmap(const void *addr, size_t len) {
    if (addr)
        munmap((void *)addr, len);
}

/* The vtable of the plain posix backend. */

static int px_open(kl_io *io, const char *path, int flags, int mode, int *fd) {
    (void)io;
    return kl_posix_open(path, flags, mode, fd);
}

static void px_close(kl_io *io, int fd) {
    (void)io;
    close(fd);
}

static int px_pread(kl_io *io, int fd, void *buf, size_t len, uint64_t off, size_t *got) {
    (void)io;
    return kl_posix_pread(fd, buf, len, off, got);
}

int kl_run_chains(kl_io_op *ops, int n, int (*run)(void *ctx, kl_io_op *op), void *ctx) {
    int first_err = 0;
    int chain_failed = 0;
    for (int i = 0; i < n; i++) {
        if (chain_failed) {
            ops[i].res = -ECANCELED;
        } else {
            int rc = run(ctx, &ops[i]);
            if (rc < 0) {
                chain_failed = 1;
                if (!first_err)
                    first_err = rc;
            }
        }
        if (!ops[i].link)
            chain_failed = 0;
    }
    return first_err;
}

static int run_posix(void *ctx, kl_io_op *op) {
    (void)ctx;
    return kl_posix_run_op(op);
}

static int px_submit(kl_io *io, kl_io_op *ops, int n) {
    (void)io;
    return kl_run_chains(ops, n, run_posix, NULL);
}

static int px_truncate(kl_io *io, int fd, uint64_t size) {
    (void)io;
    return kl_posix_truncate(fd, size);
}

static int px_size(kl_io *io, int fd, uint64_t *size) {
    (void)io;
    return kl_posix_size(fd, size);
}

static int px_unlink(kl_io *io, const char *path) {
    (void)io;
    return unlink(path) < 0 ? -errno : 0;
}

static int px_rename(kl_io *io, const char *from, const char *to) {
    (void)io;
    return rename(from, to) < 0 ? -errno : 0;
}

static int px_mkdir(kl_io *io, const char *path, int mode) {
    (void)io;
    return mkdir(path, (mode_t)mode) < 0 ? -errno : 0;
}

static int px_map(kl_io *io, int fd, size_t len, const void **addr) {
    (void)io;
    return kl_posix_map(fd, len, addr);
}

static void px_unmap(kl_io *io, const void *addr, size_t len) {
    (void)io;
    kl_posix_unmap(addr, len);
}

static void px_destroy(kl_io *io) {
    free(io);
}

static const struct kl_io_vtbl posix_vtbl = {
    .open = px_open,
    .close = px_close,
    .pread = px_pread,
    .submit = px_submit,
    .truncate = px_truncate,
    .size = px_size,
    .unlink = px_unlink,
    .rename = px_rename,
    .mkdir = px_mkdir,
    .map = px_map,
    .unmap = px_unmap,
    .destroy = px_destroy,
};

const struct kl_io_vtbl *kl_io_posix_vtbl(void) {
    return &posix_vtbl;
}

int kl_io_posix_new(kl_io **out) {
    kl_io *io = calloc(1, sizeof *io);
    if (!io)
        return KL_ENOMEM;
    io->v = &posix_vtbl;
    io->name = "posix";
    io->thread_safe = 1;
    *out = io;
    return 0;
}
