/*
 * io.c - choosing a backend, and the few helpers built on the interface.
 *
 * io_uring is the default. A kernel or sandbox that refuses it (ENOSYS when
 * it is not built in, EPERM under seccomp or io_uring_disabled) gets the
 * posix backend with the same semantics; the library prints nothing, but
 * kl_info's io_fallback says why (the CLI's `info` shows it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"

/* Why AUTO fell back to posix in this process ("" if it did not): kl_info reports it. */
static char fallback_reason[256];
static pthread_mutex_t fallback_mu = PTHREAD_MUTEX_INITIALIZER;

const char *kl_io_fallback_reason(void) {
    return fallback_reason;
}

#ifndef KL_HAVE_URING
int kl_io_uring_new(kl_io **out) {
    (void)out;
    return kl_errf(KL_EIO, "this build of kappalog has no io_uring backend");
}
#endif

int kl_io_new(kl_io_kind kind, kl_io **out) {
    const char *env = getenv("KL_IO");
    if (kind == KL_IO_AUTO && env && *env) {
        if (strcmp(env, "posix") == 0)
            kind = KL_IO_POSIX;
        else if (strcmp(env, "uring") == 0 || strcmp(env, "io_uring") == 0)
            kind = KL_IO_URING;
        else if (strcmp(env, "auto") != 0)
            return kl_errf(KL_EINVAL, "KL_IO=%s: expected posix, uring or auto", env);
    }
    if (kind == KL_IO_POSIX)
        return kl_io_posix_new(out);
    int rc = kl_io_uring_new(out);
    if (rc == 0 || kind == KL_IO_URING)
        return rc;
    pthread_mutex_lock(&fallback_mu);
    snprintf(fallback_reason, sizeof fallback_reason, "%s", kl_err_thread());
    pthread_mutex_unlock(&fallback_mu);
    kl_err_clear();
    return kl_io_posix_new(out);
}

int kl_io_write_sync(kl_io *io, int fd, const void *buf, size_t len, uint64_t offset, int sync) {
    if (len == 0) {
        /* nothing to write: only the sync. A zero-length write linked to a sync was seen
           once never to complete on io_uring (a CI run of test_truncate, truncate(0)) */
        kl_io_op op = {.kind = KL_IO_OP_DATASYNC, .fd = fd};
        return sync ? kl_io_submit(io, &op, 1) : 0;
    }
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    kl_io_op ops[2] = {
        {.kind = KL_IO_OP_WRITE,
         .link = (uint8_t)(sync != 0),
         .fd = fd,
         .iov = &iov,
         .iovcnt = 1,
         .offset = offset},
        {.kind = KL_IO_OP_DATASYNC, .fd = fd},
    };
    return kl_io_submit(io, ops, sync ? 2 : 1);
}

int kl_io_replace_file(kl_io *io, const char *tmp, const char *path, const char *dir, const void *p,
                       size_t n) {
    int fd = -1;
    int rc = kl_io_open(io, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fd);
    if (rc == 0)
        rc = kl_io_write_sync(io, fd, p, n, 0, 1);
    kl_io_close(io, fd);
    if (rc == 0)
        rc = io->v->rename(io, tmp, path);
    if (rc == 0)
        rc = kl_io_sync_dir(io, dir);
    if (rc < 0)
        io->v->unlink(io, tmp);
    return rc;
}

int kl_io_sync_dir(kl_io *io, const char *path) {
    int fd = -1;
    int rc = kl_io_open(io, path, O_RDONLY | O_DIRECTORY, 0, &fd);
    if (rc < 0)
        return rc;
    kl_io_op op = {.kind = KL_IO_OP_FULLSYNC, .fd = fd};
    rc = kl_io_submit(io, &op, 1);
    kl_io_close(io, fd);
    return rc;
}
