/*
 * io_fault.c - the fault-injecting backend of the tests (see io_fault.h).
 *
 * It performs the real operations with the posix helpers and keeps, for
 * every path the engine touched, a model of what stable storage holds: the
 * durable bytes of each file (updated when an fdatasync completes) and
 * whether its directory entry is durable (updated when an fsync of the
 * directory completes). The bytes written since the last sync are tracked as
 * dirty ranges; the newest bytes stay in the real file.
 *
 * What a reader would get wrong: the model is per *path*, not per inode. A
 * rename carries the durable bytes to the new name but leaves the old name's
 * durable binding in place until the directory is synced, which is what a
 * journaling file system does to a rename that was never made durable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "io_fault.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util.h"

#define SECTOR_BYTES 512u
#define FD_SLOTS     4096

typedef struct range {
    uint64_t off, len;
} range;

typedef struct fentry {
    char *path;
    char *parent;
    int is_dir;
    int exists_now;    /* the real file system has it */
    int bound_durable; /* the directory entry survives a power loss */
    uint8_t *dur;      /* durable content (files) */
    uint64_t dur_len;
    int has_fallback; /* renamed over a durable file: until the dir sync, */
    uint8_t *fb;      /* a power loss shows that file's durable content */
    uint64_t fb_len;
    range *dirty;
    size_t ndirty, capdirty;
} fentry;

typedef struct fault_io {
    kl_io base;
    kl_fault_plan plan;
    uint64_t ops;
    int crashed;
    uint64_t crash_ns;
    int trace; /* KL_FAULT_TRACE=1: print every counted op on stderr */
    pthread_mutex_t mu;
    fentry **files;
    size_t nfiles, capfiles;
    char *fd_path[FD_SLOTS];
    uint64_t rng;
} fault_io;

static uint64_t rng_next(fault_io *f) {
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Count one op; returns 0 to run it, or -errno to fail it (*short_write: a short write). */
static int count_op_named(fault_io *f, int *short_write, const char *what, const char *path) {
    f->ops++;
    if (f->trace)
        fprintf(stderr, "fault-io op %llu: %s %s\n", (unsigned long long)f->ops, what,
                path ? path : "");
    *short_write = 0;
    if (f->crashed)
        return -EIO;
    if (f->plan.crash_after && f->ops > f->plan.crash_after) {
        f->crashed = 1;
        f->crash_ns = kl_mono_ns();
        return -EIO;
    }
    if (f->plan.fail_at && f->ops == f->plan.fail_at) {
        *short_write = f->plan.fail_kind == KL_FAULT_SHORT;
        return -(f->plan.fail_errno ? f->plan.fail_errno : EIO);
    }
    return 0;
}

static int read_whole(const char *path, uint8_t **buf, uint64_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t size = 0;
    int rc = kl_posix_size(fd, &size);
    uint8_t *b = NULL;
    if (rc == 0 && size > 0) {
        b = malloc(size);
        size_t got = 0;
        rc = b ? kl_posix_pread(fd, b, size, 0, &got) : -ENOMEM;
        if (rc == 0 && got != size)
            rc = -EIO;
    }
    close(fd);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = size;
    return 0;
}

static fentry *find_entry(fault_io *f, const char *path) {
    for (size_t i = 0; i < f->nfiles; i++)
        if (strcmp(f->files[i]->path, path) == 0)
            return f->files[i];
    return NULL;
}

/* The entry of path, created from the real file system's state if new. */
static fentry *entry_of(fault_io *f, const char *path) {
    fentry *e = find_entry(f, path);
    if (e)
        return e;
    e = calloc(1, sizeof *e);
    KL_ASSERT(e != NULL);
    e->path = strdup(path);
    char *slash = strrchr(e->path, '/');
    e->parent = slash ? strndup(e->path, (size_t)(slash - e->path)) : strdup(".");
    KL_ASSERT(e->path && e->parent);
    struct stat st;
    if (stat(path, &st) == 0) {
        e->exists_now = 1;
        e->bound_durable = 1; /* what existed before the backend started is durable */
        e->is_dir = S_ISDIR(st.st_mode);
        if (!e->is_dir)
            KL_ASSERT(read_whole(path, &e->dur, &e->dur_len) == 0);
    }
    if (f->nfiles == f->capfiles) {
        f->capfiles = f->capfiles ? f->capfiles * 2 : 64;
        f->files = realloc(f->files, f->capfiles * sizeof *f->files);
        KL_ASSERT(f->files != NULL);
    }
    f->files[f->nfiles++] = e;
    return e;
}

static void mark_dirty(fentry *e, uint64_t off, uint64_t len) {
    if (len == 0)
        return;
    if (e->ndirty > 0) {
        range *last = &e->dirty[e->ndirty - 1];
        if (off == last->off + last->len) {
            last->len += len;
            return;
        }
    }
    if (e->ndirty == e->capdirty) {
        e->capdirty = e->capdirty ? e->capdirty * 2 : 16;
        e->dirty = realloc(e->dirty, e->capdirty * sizeof *e->dirty);
        KL_ASSERT(e->dirty != NULL);
    }
    e->dirty[e->ndirty++] = (range){off, len};
}

/* A completed data sync: the file's current bytes become durable. */
static void file_synced(fentry *e) {
    free(e->dur);
    e->dur = NULL;
    e->dur_len = 0;
    if (e->exists_now)
        KL_ASSERT(read_whole(e->path, &e->dur, &e->dur_len) == 0);
    e->ndirty = 0;
}

/* A completed directory sync: the names in it are durable as they stand. */
static void dir_synced(fault_io *f, const char *dir) {
    for (size_t i = 0; i < f->nfiles; i++) {
        fentry *e = f->files[i];
        if (strcmp(e->parent, dir) != 0)
            continue;
        e->bound_durable = e->exists_now;
        e->has_fallback = 0;
        free(e->fb);
        e->fb = NULL;
        e->fb_len = 0;
    }
}

static const char *path_of_fd(fault_io *f, int fd) {
    return (fd >= 0 && fd < FD_SLOTS) ? f->fd_path[fd] : NULL;
}

static int ft_open(kl_io *io, const char *path, int flags, int mode, int *fd) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    int rc = count_op_named(f, &sw, "open", path);
    if (rc == 0) {
        fentry *e = f->plan.track_power ? entry_of(f, path) : NULL;
        uint64_t old_size = 0;
        struct stat st;
        if (stat(path, &st) == 0)
            old_size = (uint64_t)st.st_size;
        rc = kl_posix_open(path, flags, mode, fd);
        if (rc == 0 && *fd < FD_SLOTS) {
            free(f->fd_path[*fd]);
            f->fd_path[*fd] = strdup(path);
        }
        if (rc == 0 && e) {
            if (!e->exists_now) {
                e->exists_now = 1;
                e->is_dir = (flags & O_DIRECTORY) != 0;
            }
            if (flags & O_TRUNC)
                mark_dirty(e, 0, old_size);
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void ft_close(kl_io *io, int fd) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    if (fd >= 0 && fd < FD_SLOTS) {
        free(f->fd_path[fd]);
        f->fd_path[fd] = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    close(fd);
}

static int ft_pread(kl_io *io, int fd, void *buf, size_t len, uint64_t off, size_t *got) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    int rc = count_op_named(f, &sw, "pread", path_of_fd(f, fd));
    pthread_mutex_unlock(&f->mu);
    return rc < 0 ? rc : kl_posix_pread(fd, buf, len, off, got);
}

/* A write that puts its first half and then fails. */
static int short_write(kl_io_op *op, int err) {
    size_t total = kl_iov_bytes(op->iov, op->iovcnt);
    size_t want = total / 2;
    struct iovec part[64];
    int cnt = 0;
    for (int k = 0; k < op->iovcnt && want > 0 && cnt < 64; k++) {
        size_t n = KL_MIN(want, op->iov[k].iov_len);
        part[cnt].iov_base = op->iov[k].iov_base;
        part[cnt].iov_len = n;
        want -= n;
        cnt++;
    }
    int64_t w = 0;
    kl_posix_pwritev_all(op->fd, part, cnt, op->offset, &w);
    op->res = err;
    return err;
}

static int run_one(fault_io *f, kl_io_op *op) {
    int sw;
    const char *path = path_of_fd(f, op->fd);
    static const char *const names[] = {"?", "write", "datasync", "fullsync", "writeback"};
    int rc = count_op_named(f, &sw, names[op->kind <= 4 ? op->kind : 0], path);
    fentry *e = (f->plan.track_power && path) ? entry_of(f, path) : NULL;
    if (op->kind == KL_IO_OP_WRITE && e && (rc == 0 || sw))
        mark_dirty(e, op->offset, kl_iov_bytes(op->iov, op->iovcnt));
    if (rc < 0) {
        if (sw && op->kind == KL_IO_OP_WRITE)
            return short_write(op, rc);
        op->res = rc;
        return rc;
    }
    if (op->kind != KL_IO_OP_WRITE && f->plan.skip_real_sync)
        op->res = rc = 0;
    else
        rc = kl_posix_run_op(op);
    if (rc == 0 && e && op->kind != KL_IO_OP_WRITE && op->kind != KL_IO_OP_WRITEBACK) {
        if (e->is_dir)
            dir_synced(f, e->path);
        else
            file_synced(e);
    }
    return rc;
}

static int run_fault(void *ctx, kl_io_op *op) {
    return run_one((fault_io *)ctx, op);
}

static int ft_submit(kl_io *io, kl_io_op *ops, int n) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int rc = kl_run_chains(ops, n, run_fault, f);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ft_truncate(kl_io *io, int fd, uint64_t size) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    const char *path = path_of_fd(f, fd);
    int rc = count_op_named(f, &sw, "truncate", path);
    if (rc == 0) {
        uint64_t cur = 0;
        kl_posix_size(fd, &cur);
        if (f->plan.track_power && path) {
            fentry *e = entry_of(f, path);
            uint64_t lo = KL_MIN(cur, size), hi = KL_MAX(cur, size);
            mark_dirty(e, lo, hi - lo);
        }
        rc = kl_posix_truncate(fd, size);
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ft_size(kl_io *io, int fd, uint64_t *size) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    int rc = count_op_named(f, &sw, "size", path_of_fd(f, fd));
    pthread_mutex_unlock(&f->mu);
    return rc < 0 ? rc : kl_posix_size(fd, size);
}

static int ft_unlink(kl_io *io, const char *path) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    int rc = count_op_named(f, &sw, "unlink", path);
    if (rc == 0) {
        fentry *e = f->plan.track_power ? entry_of(f, path) : NULL;
        rc = unlink(path) < 0 ? -errno : 0;
        if (rc == 0 && e)
            e->exists_now = 0;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ft_rename(kl_io *io, const char *from, const char *to) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    int rc = count_op_named(f, &sw, "rename", to);
    if (rc == 0) {
        fentry *ef = f->plan.track_power ? entry_of(f, from) : NULL;
        fentry *et = f->plan.track_power ? entry_of(f, to) : NULL;
        rc = rename(from, to) < 0 ? -errno : 0;
        if (rc == 0 && ef && et) {
            if (et->bound_durable && !et->has_fallback) {
                et->has_fallback = 1;
                et->fb = et->dur;
                et->fb_len = et->dur_len;
                et->dur = NULL;
            } else {
                free(et->dur);
            }
            et->dur = ef->dur_len ? malloc(ef->dur_len) : NULL;
            if (ef->dur_len)
                memcpy(et->dur, ef->dur, ef->dur_len);
            et->dur_len = ef->dur_len;
            et->ndirty = 0;
            for (size_t i = 0; i < ef->ndirty; i++)
                mark_dirty(et, ef->dirty[i].off, ef->dirty[i].len);
            et->exists_now = 1;
            et->bound_durable = 0;
            ef->exists_now = 0;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ft_mkdir(kl_io *io, const char *path, int mode) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    int rc = count_op_named(f, &sw, "mkdir", path);
    if (rc == 0) {
        fentry *e = f->plan.track_power ? entry_of(f, path) : NULL;
        rc = mkdir(path, (mode_t)mode) < 0 ? -errno : 0;
        if (rc == 0 && e) {
            e->exists_now = 1;
            e->is_dir = 1;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ft_map(kl_io *io, int fd, size_t len, const void **addr) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int sw;
    int rc = count_op_named(f, &sw, "map", path_of_fd(f, fd));
    pthread_mutex_unlock(&f->mu);
    return rc < 0 ? rc : kl_posix_map(fd, len, addr);
}

static void ft_unmap(kl_io *io, const void *addr, size_t len) {
    (void)io;
    kl_posix_unmap(addr, len);
}

static void free_entry(fentry *e) {
    free(e->path);
    free(e->parent);
    free(e->dur);
    free(e->fb);
    free(e->dirty);
    free(e);
}

static void fault_free(fault_io *f) {
    for (size_t i = 0; i < f->nfiles; i++)
        free_entry(f->files[i]);
    free(f->files);
    for (int i = 0; i < FD_SLOTS; i++)
        free(f->fd_path[i]);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static void ft_destroy(kl_io *io) {
    fault_io *f = (fault_io *)io;
    if (!f->plan.shared)
        fault_free(f);
}

void kl_io_fault_free(kl_io *io) {
    if (io)
        fault_free((fault_io *)io);
}

static const struct kl_io_vtbl fault_vtbl = {
    .open = ft_open,
    .close = ft_close,
    .pread = ft_pread,
    .submit = ft_submit,
    .truncate = ft_truncate,
    .size = ft_size,
    .unlink = ft_unlink,
    .rename = ft_rename,
    .mkdir = ft_mkdir,
    .map = ft_map,
    .unmap = ft_unmap,
    .destroy = ft_destroy,
};

int kl_io_fault_new(const kl_fault_plan *plan, kl_io **out) {
    fault_io *f = calloc(1, sizeof *f);
    if (!f)
        return KL_ENOMEM;
    f->base.v = &fault_vtbl;
    f->base.name = "fault";
    f->base.thread_safe = 1;
    f->plan = *plan;
    f->rng = plan->seed ^ 0x6b6c6661756c74ull;
    const char *trace = getenv("KL_FAULT_TRACE");
    f->trace = trace && *trace == '1';
    pthread_mutex_init(&f->mu, NULL);
    *out = &f->base;
    return 0;
}

uint64_t kl_io_fault_crash_ns(kl_io *io) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    uint64_t t = f->crash_ns;
    pthread_mutex_unlock(&f->mu);
    return t;
}

uint64_t kl_io_fault_ops(kl_io *io) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    uint64_t n = f->ops;
    pthread_mutex_unlock(&f->mu);
    return n;
}

void kl_io_fault_crash_now(kl_io *io) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    if (!f->crashed) {
        f->crashed = 1;
        f->crash_ns = kl_mono_ns();
    }
    pthread_mutex_unlock(&f->mu);
}

int kl_io_fault_crashed(kl_io *io) {
    fault_io *f = (fault_io *)io;
    pthread_mutex_lock(&f->mu);
    int c = f->crashed;
    pthread_mutex_unlock(&f->mu);
    return c;
}

/* What a power loss leaves of one file: durable bytes, and torn sectors. */
static int torn_content(fault_io *f, fentry *e, int torn, uint8_t **out, uint64_t *out_len) {
    uint8_t *cur = NULL;
    uint64_t cur_len = 0;
    if (e->exists_now && read_whole(e->path, &cur, &cur_len) < 0)
        cur_len = 0;
    uint64_t len = e->dur_len;
    if (torn && e->exists_now && (rng_next(f) & 1))
        len = cur_len;
    uint8_t *b = calloc(1, len ? len : 1);
    KL_ASSERT(b != NULL);
    if (e->dur) /* NULL when nothing was ever synced: memcpy must not see it */
        memcpy(b, e->dur, KL_MIN(len, e->dur_len));
    for (size_t i = 0; torn && i < e->ndirty; i++) {
        uint64_t first = e->dirty[i].off / SECTOR_BYTES;
        uint64_t last = (e->dirty[i].off + e->dirty[i].len + SECTOR_BYTES - 1) / SECTOR_BYTES;
        for (uint64_t s = first; s < last; s++) {
            if (!(rng_next(f) & 1))
                continue; /* this sector keeps its old bytes */
            uint64_t lo = s * SECTOR_BYTES, hi = KL_MIN(lo + SECTOR_BYTES, len);
            for (uint64_t p = lo; p < hi; p++)
                b[p] = p < cur_len ? cur[p] : 0;
        }
    }
    free(cur);
    *out = b;
    *out_len = len;
    return 0;
}

static int write_file(const char *path, const uint8_t *buf, uint64_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    int64_t w;
    int rc = kl_posix_pwritev_all(fd, &iov, 1, 0, &w);
    close(fd);
    return rc;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int kl_io_fault_power_loss(kl_io *io, enum kl_power_mode mode) {
    fault_io *f = (fault_io *)io;
    KL_ASSERT(f->plan.track_power);
    if (mode == KL_POWER_KEEP)
        return 0;
    kl_boot_id_bump(); /* what the page cache held is gone, as after a reboot */
    int torn = mode == KL_POWER_TORN;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    for (size_t i = 0; i < f->nfiles && rc == 0; i++) {
        fentry *e = f->files[i];
        if (e->is_dir)
            continue;
        int keep_new = e->bound_durable || (torn && e->exists_now && (rng_next(f) & 1));
        if (keep_new && (e->exists_now || e->bound_durable)) {
            uint8_t *b;
            uint64_t len;
            torn_content(f, e, torn && e->exists_now, &b, &len);
            rc = write_file(e->path, b, len);
            free(b);
        } else if (e->has_fallback) {
            rc = write_file(e->path, e->fb, e->fb_len);
        } else if (e->exists_now) {
            rc = unlink(e->path) < 0 ? -errno : 0;
        }
    }
    for (size_t i = 0; i < f->nfiles && rc == 0; i++) {
        fentry *e = f->files[i];
        if (e->is_dir && e->exists_now && !e->bound_durable && !(torn && (rng_next(f) & 1)))
            rc = nftw(e->path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}
