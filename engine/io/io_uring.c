/*
 * io_uring.c - the default backend: a commit's writes and syncs go to the
 * kernel as one submission of linked operations (IOSQE_IO_LINK within a
 * chain), so a single-appender commit costs one system call plus the wait.
 *
 * Everything that is not on the commit path (open, pread during recovery,
 * truncate, mmap) uses the plain posix calls: io_uring buys nothing there.
 *
 * A submission with a sync goes to the ring: that is where io_uring wins
 * (the syncs of a commit run in parallel, in one system call). A submission
 * of writes only (a commit under `interval` or `never`) runs inline with
 * pwritev: on file systems without non-blocking buffered writes (ext4) the
 * ring hands every such write to a kernel worker thread, and the two
 * context switches cost about a fifth of the throughput (measured:
 * docs/BENCHMARKS.md). KL_URING_WRITES=ring sends them to the ring anyway.
 *
 * A commit may also start its groups one by one (kl_io_start) and compute
 * while they run: the segment's write and sync go first, the tree nodes and
 * the slot follow once they are hashed and signed, and one finish waits for
 * all of them. The user data of a completion names its group and its op.
 *
 * The ring is used only by the thread that holds the log's commit role, so
 * it needs no lock of its own. A short write breaks its link; the rest of
 * that chain is finished synchronously so the caller still sees either full
 * success or the kernel's error.
 *
 * Waiting: the submission and the wait are two calls, and the wait is in
 * slices of URING_WAIT_SLICE_MS, each of which looks at the completion
 * queue again. A completion is never given up on (an operation in flight
 * must not be abandoned, and a sync is never retried), but a wake-up that
 * does not come cannot hang a commit. Rarely (twice in many CI runs, under
 * load) a test hung for ten minutes; once gdb showed the commit's thread
 * asleep in io_uring_submit_and_wait for completions the kernel had not
 * delivered, and the process had no io-wq worker thread left to run the
 * punted write and fdatasync. So after URING_KICK_SLICES empty slices the
 * wait submits a no-op forced to the worker pool (IOSQE_ASYNC): queueing
 * it makes the kernel start a worker, which also runs the stranded work.
 * The no-op has no effect of its own and its completion is skipped; with
 * slices, a completion posted without its wake-up is also found at the
 * next look. `stalled_slices` and `kicks` count, for a debugger;
 * KL_URING_TRACE=1 says each kick on stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "../util.h"

#define URING_ENTRIES   128 /* room for URING_GROUPS groups of KL_IO_MAX_OPS, and kicks */
#define URING_GROUPS    3   /* groups started and not yet finished (kl_io_start) */
#define URING_GROUP_OPS 256 /* a completion's user data: group * URING_GROUP_OPS + op */
_Static_assert(KL_IO_MAX_OPS < URING_GROUP_OPS && URING_GROUPS * KL_IO_MAX_OPS < URING_ENTRIES,
               "the ring holds every group in flight");
#ifndef URING_WAIT_SLICE_MS /* -D by a test build that wants the kicks exercised */
#define URING_WAIT_SLICE_MS 1000
#endif
#ifndef URING_KICK_SLICES
#define URING_KICK_SLICES 2
#endif
#define URING_KICK_DATA UINT64_MAX /* the user data of a kick's no-op */

typedef struct ur_group {
    kl_io_op *ops;
    int n;
    int taken; /* how many the kernel accepted */
} ur_group;

typedef struct uring_io {
    kl_io base;
    struct io_uring ring;
    ur_group groups[URING_GROUPS]; /* started since the last finish */
    int ngroups;
    int inflight;            /* completions still due */
    int start_err;           /* a refused submission: the first error for finish */
    int writes_via_ring;     /* KL_URING_WRITES=ring */
    uint64_t stalled_slices; /* wait slices that ended with no completion */
    uint64_t kicks;          /* no-ops sent to the worker pool to get stranded work run */
    int trace;               /* KL_URING_TRACE=1 */
} uring_io;

static void prep_op(struct io_uring_sqe *sqe, const kl_io_op *op, int i) {
    switch (op->kind) {
    case KL_IO_OP_WRITE:
        io_uring_prep_writev(sqe, op->fd, op->iov, (unsigned)op->iovcnt, op->offset);
        break;
    case KL_IO_OP_DATASYNC:
        io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
        break;
    case KL_IO_OP_FULLSYNC:
        io_uring_prep_fsync(sqe, op->fd, 0);
        break;
    case KL_IO_OP_WRITEBACK:
        io_uring_prep_sync_file_range(sqe, op->fd, (unsigned)op->nbytes, op->offset,
                                      SYNC_FILE_RANGE_WRITE);
        break;
    default:
        KL_ASSERT(!"unknown io op");
    }
    if (op->link)
        sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, (uint64_t)i);
}

/* Finish a short write and run the ops its broken link cancelled. */
static int finish_chain_sync(kl_io_op *ops, int n, int start) {
    int i = start;
    kl_io_op *w = &ops[i];
    size_t total = kl_iov_bytes(w->iov, w->iovcnt);
    KL_ASSERT(w->kind == KL_IO_OP_WRITE && w->res >= 0 && (size_t)w->res < total);
    /* Re-issue the remainder: build a trimmed iovec view. */
    struct iovec rest[64];
    int cnt = 0;
    size_t skip = (size_t)w->res;
    for (int k = 0; k < w->iovcnt; k++) {
        if (skip >= w->iov[k].iov_len) {
            skip -= w->iov[k].iov_len;
            continue;
        }
        rest[cnt].iov_base = (uint8_t *)w->iov[k].iov_base + skip;
        rest[cnt].iov_len = w->iov[k].iov_len - skip;
        skip = 0;
        cnt++;
    }
    int64_t more = 0;
    int rc = kl_posix_pwritev_all(w->fd, rest, cnt, w->offset + (uint64_t)w->res, &more);
    if (rc < 0) {
        w->res = rc;
        return rc;
    }
    w->res += more;
    while (ops[i].link && i + 1 < n) {
        i++;
        if (ops[i].res != -ECANCELED)
            continue;
        rc = kl_posix_run_op(&ops[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * A no-op through the worker pool, so the kernel starts a worker if it has
 * none: the work of a submission still waiting for one then runs too.
 */
static void kick(uring_io *u, int waiting) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe)
        return; /* the ring is full of kicks already: the next slice tries again */
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    io_uring_sqe_set_data64(sqe, URING_KICK_DATA);
    int rc;
    do {
        rc = io_uring_submit(&u->ring);
    } while (rc == -EINTR);
    u->kicks++;
    if (u->trace)
        fprintf(stderr, "kappalog: io_uring: %d completions late by %llu s; kick %llu (%s)\n",
                waiting, (unsigned long long)(u->stalled_slices * URING_WAIT_SLICE_MS / 1000),
                (unsigned long long)u->kicks, rc < 0 ? strerror(-rc) : "sent");
}

/* Whether ops go to the ring; a group of writes only runs inline (the comment on top). */
static int via_ring(const uring_io *u, const kl_io_op *ops, int n) {
    for (int i = 0; i < n; i++)
        if (ops[i].kind != KL_IO_OP_WRITE)
            return 1;
    return u->writes_via_ring;
}

/* Hand ops to the kernel as one more group in flight; see kl_io_start. */
static int ur_start(kl_io *io, kl_io_op *ops, int n) {
    uring_io *u = (uring_io *)io;
    KL_ASSERT(n > 0 && n <= KL_IO_MAX_OPS);
    if (u->start_err)
        return u->start_err; /* a group was refused: nothing more until finish */
    if (!via_ring(u, ops, n)) {
        int rc = kl_io_posix_vtbl()->submit(io, ops, n);
        if (rc < 0)
            u->start_err = rc;
        return rc;
    }
    KL_ASSERT(u->ngroups < URING_GROUPS && io_uring_sq_space_left(&u->ring) >= (unsigned)n);
    int g = u->ngroups;
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        KL_ASSERT(sqe != NULL);
        prep_op(sqe, &ops[i], g * URING_GROUP_OPS + i);
        ops[i].res = -ECANCELED;
    }
    int rc;
    do {
        rc = io_uring_submit(&u->ring);
    } while (rc == -EINTR);
    /*
     * The kernel may take fewer than n (it stops at an entry it refuses):
     * wait only for those, never for completions that cannot come. The
     * caller fails the handle on the error, so the entries left in the
     * ring are never submitted.
     */
    int taken = rc < 0 ? 0 : rc;
    u->groups[g] = (ur_group){ops, n, taken};
    u->ngroups++;
    u->inflight += taken;
    if (taken < n)
        u->start_err = rc < 0 ? rc : -EIO;
    return u->start_err;
}

/* Wait for every completion still due; 0 or the ring's own error. */
static int reap(uring_io *u) {
    int empty = 0;
    while (u->inflight > 0) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec slice = {.tv_sec = URING_WAIT_SLICE_MS / 1000,
                                          .tv_nsec = (URING_WAIT_SLICE_MS % 1000) * 1000000L};
        int rc = io_uring_wait_cqe_timeout(&u->ring, &cqe, &slice);
        if (rc == -ETIME) {
            u->stalled_slices++;
            if (++empty % URING_KICK_SLICES == 0)
                kick(u, u->inflight);
            continue;
        }
        if (rc == -EINTR)
            continue;
        if (rc < 0)
            return rc;
        uint64_t data = io_uring_cqe_get_data64(cqe);
        if (data == URING_KICK_DATA) { /* a kick's no-op */
            io_uring_cqe_seen(&u->ring, cqe);
            continue;
        }
        uint64_t g = data / URING_GROUP_OPS, i = data % URING_GROUP_OPS;
        KL_ASSERT(g < (uint64_t)u->ngroups && i < (uint64_t)u->groups[g].n);
        u->groups[g].ops[i].res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        u->inflight--;
    }
    return 0;
}

/* The first error of one group, finishing its short writes. */
static int group_result(kl_io_op *ops, int n) {
    int first_err = 0;
    for (int i = 0; i < n; i++) {
        if (ops[i].kind == KL_IO_OP_WRITE && ops[i].res >= 0 &&
            (size_t)ops[i].res < kl_iov_bytes(ops[i].iov, ops[i].iovcnt)) {
            int rc = finish_chain_sync(ops, n, i);
            if (rc < 0 && !first_err)
                first_err = rc;
        } else if (ops[i].res < 0 && ops[i].res != -ECANCELED && !first_err) {
            first_err = (int)ops[i].res;
        }
    }
    for (int i = 0; i < n && !first_err; i++)
        if (ops[i].res < 0)
            first_err = (int)ops[i].res;
    return first_err;
}

static int ur_finish(kl_io *io) {
    uring_io *u = (uring_io *)io;
    int first_err = reap(u);
    if (!first_err)
        first_err = u->start_err;
    for (int g = 0; g < u->ngroups && !first_err; g++)
        first_err = group_result(u->groups[g].ops, u->groups[g].n);
    u->ngroups = 0;
    u->start_err = 0;
    return first_err;
}

static int ur_submit(kl_io *io, kl_io_op *ops, int n) {
    uring_io *u = (uring_io *)io;
    KL_ASSERT(u->ngroups == 0 && u->inflight == 0);
    if (!via_ring(u, ops, n))
        return kl_io_posix_vtbl()->submit(io, ops, n);
    ur_start(io, ops, n);
    return ur_finish(io);
}

static void ur_destroy(kl_io *io) {
    uring_io *u = (uring_io *)io;
    io_uring_queue_exit(&u->ring);
    free(u);
}

/* The posix backend's ops, with submit and destroy replaced. */
static struct kl_io_vtbl uring_vtbl;
static pthread_once_t uring_vtbl_once = PTHREAD_ONCE_INIT;

static void init_vtbl(void) {
    uring_vtbl = *kl_io_posix_vtbl();
    uring_vtbl.submit = ur_submit;
    uring_vtbl.start = ur_start;
    uring_vtbl.finish = ur_finish;
    uring_vtbl.destroy = ur_destroy;
}

int kl_io_uring_new(kl_io **out) {
    uring_io *u = calloc(1, sizeof *u);
    if (!u)
        return KL_ENOMEM;
    int rc = io_uring_queue_init(URING_ENTRIES, &u->ring, 0);
    if (rc < 0) {
        free(u);
        return kl_errf(KL_EIO, "io_uring_queue_init: %s", strerror(-rc));
    }
    pthread_once(&uring_vtbl_once, init_vtbl);
    const char *w = getenv("KL_URING_WRITES");
    u->writes_via_ring = w && strcmp(w, "ring") == 0;
    const char *t = getenv("KL_URING_TRACE");
    u->trace = t && strcmp(t, "1") == 0;
    u->base.v = &uring_vtbl;
    u->base.name = "io_uring";
    *out = &u->base;
    return 0;
}
