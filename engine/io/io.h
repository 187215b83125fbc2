/*
 * io.h - the I/O backend interface. Every file operation of the library goes
 * through a kl_io: io_uring (io_uring.c), the posix fallback (io_posix.c), or
 * the fault-injecting backend of the tests (io_fault.c).
 *
 * The commit pipeline hands a whole commit to submit() at once: writes and
 * syncs grouped in chains. Within a chain an op runs only after the previous
 * one succeeded (io_uring's IOSQE_IO_LINK); separate chains may run in
 * parallel. With io_uring one commit is one submission.
 *
 * What a reader would get wrong: submit() returns success only if *every* op
 * succeeded in full. A short write that cannot be completed is an error, and
 * an op after a failed one in its chain reports -ECANCELED. The caller never
 * retries a failed sync: it fails the handle (fail-stop).
 */
#ifndef KL_IO_H
#define KL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kappalog.h"

typedef struct kl_io kl_io;

enum kl_io_op_kind {
    KL_IO_OP_WRITE = 1,    /* pwritev of iov[0..iovcnt) at offset */
    KL_IO_OP_DATASYNC = 2, /* fdatasync(fd) */
    KL_IO_OP_FULLSYNC = 3, /* fsync(fd): for directories */
    KL_IO_OP_WRITEBACK = 4 /* start writing nbytes at offset to disk; makes nothing durable */
};

/* The most ops one submit() takes (a commit uses about ten). */
#define KL_IO_MAX_OPS 40

typedef struct kl_io_op {
    uint8_t kind; /* enum kl_io_op_kind */
    uint8_t link; /* the next op belongs to the same chain */
    int fd;
    const struct iovec *iov; /* writes: the bytes, valid until submit returns */
    int iovcnt;
    uint64_t offset; /* writes, writeback: byte position in the file */
    uint64_t nbytes; /* writeback: how many bytes */
    int64_t res;     /* out: bytes written, 0 for a sync, or -errno */
} kl_io_op;

struct kl_io_vtbl {
    /* open(2) of a path; *fd receives the descriptor. */
    int (*open)(kl_io *io, const char *path, int flags, int mode, int *fd);
    void (*close)(kl_io *io, int fd);
    /* pread until len bytes or end of file; *got receives the count. */
    int (*pread)(kl_io *io, int fd, void *buf, size_t len, uint64_t offset, size_t *got);
    /* Run ops (chains as described above). 0 if all succeeded in full. */
    int (*submit)(kl_io *io, kl_io_op *ops, int n);
    /*
     * Optional: start ops without waiting for them (see kl_io_start). ops
     * must stay valid until finish returns. start returns an error it
     * already knows (the ops it did not hand over never run); finish waits
     * for every op started since the last finish and returns the first
     * error of all of them, as submit does.
     */
    int (*start)(kl_io *io, kl_io_op *ops, int n);
    int (*finish)(kl_io *io);
    int (*truncate)(kl_io *io, int fd, uint64_t size);
    int (*size)(kl_io *io, int fd, uint64_t *size);
    int (*unlink)(kl_io *io, const char *path);
    int (*rename)(kl_io *io, const char *from, const char *to);
    int (*mkdir)(kl_io *io, const char *path, int mode);
    /* Map `len` bytes of fd read-only and shared; len may exceed the file's size. */
    int (*map)(kl_io *io, int fd, size_t len, const void **addr);
    void (*unmap)(kl_io *io, const void *addr, size_t len);
    void (*destroy)(kl_io *io);
};

struct kl_io {
    const struct kl_io_vtbl *v;
    const char *name; /* "io_uring", "posix", "fault" */
    int thread_safe;  /* submit() may be called from several threads at once */
    int started_rc;   /* kl_io_start without a backend start(): the first error so far */
};

/*
 * A backend for `kind`: KL_IO_AUTO tries io_uring and falls back to posix if
 * the kernel refuses it (ENOSYS, EPERM), noting why; the
 * environment variable KL_IO=posix|uring overrides AUTO.
 */
int kl_io_new(kl_io_kind kind, kl_io **out);

int kl_io_posix_new(kl_io **out);

/* Why KL_IO_AUTO last fell back to posix in this process, or "". */
const char *kl_io_fallback_reason(void);
int kl_io_uring_new(kl_io **out); /* -ENOSYS / -EPERM style refusals map to KL_EIO */

/* Shared helpers of the posix-style backends (io_posix.c). */
const struct kl_io_vtbl *kl_io_posix_vtbl(void);
int kl_posix_open(const char *path, int flags, int mode, int *fd);
int kl_posix_pwritev_all(int fd, const struct iovec *iov, int iovcnt, uint64_t offset,
                         int64_t *written);
int kl_posix_run_op(kl_io_op *op);
/*
 * Run ops in order with the chain semantics of submit(): after a failed op
 * the rest of its chain reports -ECANCELED. Returns the first error or 0.
 */
int kl_run_chains(kl_io_op *ops, int n, int (*run)(void *ctx, kl_io_op *op), void *ctx);
int kl_posix_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *got);
int kl_posix_truncate(int fd, uint64_t size);
int kl_posix_size(int fd, uint64_t *size);
int kl_posix_map(int fd, size_t len, const void **addr);
void kl_posix_unmap(const void *addr, size_t len);
size_t kl_iov_bytes(const struct iovec *iov, int iovcnt);

/* Convenience wrappers. */
static inline int kl_io_open(kl_io *io, const char *path, int flags, int mode, int *fd) {
    return io->v->open(io, path, flags, mode, fd);
}
static inline void kl_io_close(kl_io *io, int fd) {
    if (fd >= 0)
        io->v->close(io, fd);
}
static inline int kl_io_pread(kl_io *io, int fd, void *buf, size_t len, uint64_t off, size_t *got) {
    return io->v->pread(io, fd, buf, len, off, got);
}
static inline int kl_io_submit(kl_io *io, kl_io_op *ops, int n) {
    return io->v->submit(io, ops, n);
}

/*
 * Start ops and return while they run, so the caller can compute beside
 * them (the commit hashes and signs while its segment syncs). Any number of
 * starts, then exactly one kl_io_finish, which waits for all of them and
 * returns the first error as submit would. A backend without start() runs
 * the ops here and keeps their error for kl_io_finish. A negative return
 * means an error is already known: start nothing more that depends on
 * these ops, but still call kl_io_finish.
 */
static inline int kl_io_start(kl_io *io, kl_io_op *ops, int n) {
    if (io->v->start)
        return io->v->start(io, ops, n);
    int rc = io->v->submit(io, ops, n);
    if (rc < 0 && !io->started_rc)
        io->started_rc = rc;
    return rc;
}

/* Whether kl_io_start returns while its ops run (else it runs them before it returns). */
static inline int kl_io_async(const kl_io *io) {
    return io->v->start != NULL;
}

static inline int kl_io_finish(kl_io *io) {
    if (io->v->finish)
        return io->v->finish(io);
    int rc = io->started_rc;
    io->started_rc = 0;
    return rc;
}
static inline void kl_io_destroy(kl_io *io) {
    if (io)
        io->v->destroy(io);
}

/* Write buf at offset and (if sync) fdatasync, as one chain. */
int kl_io_write_sync(kl_io *io, int fd, const void *buf, size_t len, uint64_t offset, int sync);

/* fsync a directory (make its entries durable). */
int kl_io_sync_dir(kl_io *io, const char *path);

/*
 * Put a whole new file at `path` durably, replacing any old one: write the
 * n bytes to `tmp` (in the same directory `dir`), fdatasync, rename over
 * `path`, fsync `dir`. A crash leaves the old file or the new one, never a
 * mix; a failure removes `tmp`. 0 or -errno.
 */
int kl_io_replace_file(kl_io *io, const char *tmp, const char *path, const char *dir, const void *p,
                       size_t n);

#endif
