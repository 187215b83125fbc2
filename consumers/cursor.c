/*
 * cursor.c - named durable consumer cursors (docs/FORMAT.md,
 * "consumers/<name>.cursor"): the next block a consumer will read and the
 * fork of the log it was committed at.
 *
 * A cursor file is two fixed slots, as the header is: a commit writes the
 * slot that is not the newest, with the next sequence number, and
 * fdatasyncs it; on open the valid slot with the highest sequence number
 * wins, so a write torn by a crash leaves the previous position. A new
 * cursor is written whole to a temporary file, synced and linked into
 * place (create_file), so it either exists with a valid slot or not at all.
 *
 * One consumer per cursor: kl_cursor_open takes an exclusive flock on the
 * file (KL_EBUSY if another process or handle holds it), so two consumers
 * never race one position.
 *
 * What a reader would get wrong: the fork check is strict. A cursor
 * committed at another fork than the log's now reports KL_EFORK even when
 * the truncation cut nothing it had read, because the log keeps no record
 * of where past truncations cut; the consumer decides and commits a
 * position at the new fork (kl_cursor_commit, `kappalog cursor --reset`).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../engine/log_internal.h"
#include "../engine/util.h"
#include "cursor.h"

#define CUR_MAGIC       "KLCURSOR"
#define CUR_VERSION     2u  /* 1: no tree hash; read, never written */
#define CUR_V1_CHECK_AT 56u /* version 1: XXH3-64 of bytes [0, 56) */
#define CUR_HASH_AT     56u /* version 2: the tree hash at the position, 32 bytes */
#define CUR_CHECKSUM_AT 88u /* version 2: XXH3-64 of bytes [0, 88) */
#define CUR_FLAG_HASH   1u  /* version 2 flags: the tree hash is present */
#define CUR_NAME_MAX    64u
#define CUR_DIR         "consumers"
#define CUR_EXT         ".cursor"

struct kl_cursor {
    kl_log *log;
    kl_io *io;     /* the log's backend if it is thread-safe, else our own posix one */
    int own_io;    /* io is ours to destroy */
    int fd;        /* the cursor file, flocked */
    cur_slot last; /* the newest valid slot */
    int last_slot; /* which slot (0/1) holds it */
    char name[CUR_NAME_MAX + 1];
    uint8_t buf[CUR_SLOT_BYTES];
};

static int name_ok(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > CUR_NAME_MAX || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

static int check_name(const char *name) {
    if (name_ok(name))
        return 0;
    return kl_errf(KL_EINVAL,
                   "cursor name '%.80s' is not 1..64 characters of A-Z a-z 0-9 . _ - (not "
                   "starting with '.')",
                   name ? name : "");
}

static void cur_path(const kl_log *log, const char *name, const char *ext, char *out, size_t cap) {
    snprintf(out, cap, "%s/" CUR_DIR "/%s%s", log->dir, name, ext);
}

void kl_cur_slot_encode(uint8_t *p, const cur_slot *s) {
    memset(p, 0, CUR_SLOT_BYTES);
    memcpy(p, CUR_MAGIC, 8);
    kl_store32(p + 8, CUR_VERSION);
    kl_store32(p + 12, s->has_hash ? CUR_FLAG_HASH : 0);
    kl_store64(p + 16, s->seq);
    kl_store64(p + 24, s->position);
    kl_store64(p + 32, s->fork);
    kl_store64(p + 40, s->commit_ms);
    if (s->has_hash)
        memcpy(p + CUR_HASH_AT, s->tree_hash, 32);
    kl_store64(p + CUR_CHECKSUM_AT, XXH3_64bits(p, CUR_CHECKSUM_AT));
}

/*
 * 0 if the slot at p checks out (magic, a known version, reserved bytes
 * zero, checksum): version 2, or a version 1 slot written before the tree
 * hash was kept (read as having none).
 */
static int slot_decode(const uint8_t *p, cur_slot *s) {
    KL_ASSERT(p != NULL);
    if (memcmp(p, CUR_MAGIC, 8) != 0)
        return -1;
    uint32_t version = kl_load32(p + 8), flags = kl_load32(p + 12);
    size_t check_at = version == 1 ? CUR_V1_CHECK_AT : CUR_CHECKSUM_AT;
    if (version != 1 && version != CUR_VERSION)
        return -1;
    if ((version == 1 ? flags != 0 : (flags & ~CUR_FLAG_HASH) != 0) || kl_load64(p + 48) != 0)
        return -1;
    if (version == CUR_VERSION && !(flags & CUR_FLAG_HASH))
        for (size_t i = CUR_HASH_AT; i < CUR_HASH_AT + 32; i++)
            if (p[i]) /* no tree hash: its bytes are zero */
                return -1;
    if (kl_load64(p + check_at) != XXH3_64bits(p, check_at))
        return -1;
    s->seq = kl_load64(p + 16);
    s->position = kl_load64(p + 24);
    s->fork = kl_load64(p + 32);
    s->commit_ms = kl_load64(p + 40);
    s->has_hash = (flags & CUR_FLAG_HASH) != 0;
    memset(s->tree_hash, 0, sizeof s->tree_hash);
    if (s->has_hash)
        memcpy(s->tree_hash, p + CUR_HASH_AT, 32);
    return s->seq == 0 ? -1 : 0;
}

int kl_cur_decode(const uint8_t *b, size_t got, cur_slot *out, int *which) {
    int found = 0;
    for (int i = 0; i < 2; i++) {
        cur_slot s;
        if (got < (size_t)(i + 1) * CUR_SLOT_BYTES || slot_decode(b + i * CUR_SLOT_BYTES, &s) < 0)
            continue;
        if (!found || s.seq > out->seq) {
            *out = s;
            *which = i;
            found = 1;
        }
    }
    KL_ASSERT(!found || (*which == 0 || *which == 1));
    return found ? 0 : -1;
}

/* Read a cursor file's newest valid slot: 0, or KL_ECORRUPT naming the file. */
static int read_file(kl_io *io, int fd, const char *path, cur_slot *out, int *which) {
    uint8_t b[CUR_FILE_BYTES];
    size_t got = 0;
    int rc = kl_io_pread(io, fd, b, sizeof b, 0, &got);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    if (kl_cur_decode(b, got, out, which) < 0)
        return kl_errf(KL_ECORRUPT,
                       "%s: neither slot checks out (damaged cursor file; a reset or a delete "
                       "rewrites or removes it)",
                       path);
    return 0;
}

static uint64_t log_fork(kl_log *log) {
    pthread_mutex_lock(&log->mu);
    uint64_t f = log->last.fork;
    pthread_mutex_unlock(&log->mu);
    return f;
}

/*
 * Write a new cursor file at position 0 of the log's fork: a temporary file
 * of this creator's own, synced, then linked into place, which never
 * replaces a file (two consumers creating the same cursor at once: the
 * second finds the first's and opens it; a rename would have replaced a
 * file the first had already locked and committed to), then the directory
 * synced.
 */
static int create_file(kl_io *io, kl_log *log, const char *name) {
    static _Atomic unsigned serial;
    char dir[4096], tmp[4300], path[4200];
    snprintf(dir, sizeof dir, "%s/" CUR_DIR, log->dir);
    int rc = io->v->mkdir(io, dir, 0755);
    if (rc < 0 && rc != -EEXIST)
        return kl_errf(kl_err_from_errno(-rc), "creating %s: %s", dir, strerror(-rc));
    cur_path(log, name, CUR_EXT, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&serial, 1u));
    uint8_t b[CUR_FILE_BYTES] = {0};
    cur_slot s = {.seq = 1, .position = 0, .fork = log_fork(log), .commit_ms = kl_now_ms()};
    kl_cur_slot_encode(b, &s);
    int fd = -1;
    rc = kl_io_open(io, tmp, O_WRONLY | O_CREAT | O_EXCL, 0644, &fd);
    if (rc == 0)
        rc = kl_io_write_sync(io, fd, b, sizeof b, 0, 1);
    kl_io_close(io, fd);
    if (rc == 0 && link(tmp, path) < 0 && errno != EEXIST)
        rc = -errno;
    if (fd >= 0)
        io->v->unlink(io, tmp);
    if (rc == 0)
        rc = kl_io_sync_dir(io, dir);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "creating cursor %s: %s", path, strerror(-rc));
    return 0;
}

/*
 * Open and flock the cursor file at `path`. The lock must be on the file
 * the path names once it is held: a delete (which unlinks under the lock)
 * may come between the open and the flock, and a consumer holding the
 * lock of an unlinked file would commit to nothing. So the file locked is
 * compared with the path's, and the open tried again if they differ.
 */
static int lock_file(kl_cursor *c, const char *path) {
    for (int attempt = 0; attempt < 16; attempt++) {
        int rc = kl_io_open(c->io, path, O_RDWR, 0, &c->fd);
        if (rc == -ENOENT)
            return kl_errf(KL_ENOTFOUND, "no cursor '%s' in %s", c->name, c->log->dir);
        if (rc < 0)
            return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
        if (flock(c->fd, LOCK_EX | LOCK_NB) < 0)
            return kl_errf(errno == EWOULDBLOCK ? KL_EBUSY : KL_EIO, "cursor '%s' is %s", c->name,
                           errno == EWOULDBLOCK ? "in use by another consumer" : strerror(errno));
        struct stat held, named;
        if (fstat(c->fd, &held) < 0)
            return kl_errf(KL_EIO, "%s: %s", path, strerror(errno));
        if (stat(path, &named) == 0 && named.st_dev == held.st_dev && named.st_ino == held.st_ino)
            return 0;
        kl_io_close(c->io, c->fd); /* deleted or replaced meanwhile: look again */
        c->fd = -1;
    }
    return kl_errf(KL_EBUSY, "cursor '%s' keeps being replaced while it is opened", c->name);
}

static int open_locked(kl_cursor *c, const char *path) {
    int rc = lock_file(c, path);
    return rc < 0 ? rc : read_file(c->io, c->fd, path, &c->last, &c->last_slot);
}

static kl_cursor *cursor_alloc(kl_log *log, const char *name) {
    kl_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->log = log;
    c->fd = -1;
    snprintf(c->name, sizeof c->name, "%s", name);
    if (log->io->thread_safe) {
        c->io = log->io;
    } else if (kl_io_posix_new(&c->io) == 0) {
        c->own_io = 1;
    } else {
        free(c);
        return NULL;
    }
    return c;
}

/* The cursor was committed at another fork than the log's: KL_EFORK. */
static int fork_changed(const kl_cursor *c, uint64_t fork) {
    return kl_errf(KL_EFORK,
                   "cursor '%s' is at block %llu of fork %llu, but the log is at fork %llu: it "
                   "was truncated since",
                   c->name, (unsigned long long)c->last.position, (unsigned long long)c->last.fork,
                   (unsigned long long)fork);
}

/*
 * Is the log still the one the cursor read? Same fork; the position within
 * the log; and, if the slot keeps the tree hash, the log's tree hash at the
 * position the one the commit saw. Under fsync `interval` or `never` a
 * crash can lose appends the cursor had already read and committed (its
 * own file is synced): the log comes back shorter, and new appends may
 * take the lost blocks' places. A read-only handle is refreshed first if
 * it looks older than the cursor, and before a differing tree hash is
 * blamed on a crash (a handle opened before a truncation sees the new
 * fork's tree through the old one's length). 0, or KL_EFORK saying which.
 */
static int check_log(kl_cursor *c) {
    const unsigned long long pos = c->last.position;
    if (c->last.fork != log_fork(c->log) || pos > kl_log_length(c->log)) {
        int rc = kl_log_refresh(c->log); /* another process may have appended */
        if (rc < 0)
            return rc;
    }
    uint64_t fork = log_fork(c->log);
    if (c->last.fork != fork)
        return fork_changed(c, fork);
    unsigned long long len = kl_log_length(c->log);
    if (pos > len)
        return kl_errf(KL_EFORK,
                       "cursor '%s' is at block %llu, but the log has %llu blocks: it lost "
                       "blocks the cursor had read (a crash under fsync interval or never loses "
                       "the appends not yet synced)",
                       c->name, pos, len);
    if (!c->last.has_hash)
        return 0; /* written by a version that did not keep it */
    uint8_t th[32];
    int rc = kl_log_tree_hash(c->log, pos, th);
    if (rc == 0 && memcmp(th, c->last.tree_hash, sizeof th) == 0)
        return 0;
    if (rc < 0 && rc != KL_ECORRUPT)
        return rc;
    /* a stale handle reads the new fork's tree, or the zeroed space its writer keeps ahead,
       through the old length: what looks like divergence or damage may be a truncation */
    const int damaged = rc == KL_ECORRUPT;
    if ((rc = kl_log_refresh(c->log)) < 0) /* KL_EFORK if truncated under this handle */
        return rc;
    if ((fork = log_fork(c->log)) != c->last.fork)
        return fork_changed(c, fork);
    if (damaged) {
        kl_err_clear(); /* damage below the position: reported to whoever reads it */
        return 0;
    }
    return kl_errf(KL_EFORK,
                   "cursor '%s' is at block %llu, but the log's first %llu blocks are not the "
                   "ones it read (their tree hash differs): a crash under fsync interval or "
                   "never lost blocks the cursor had read, and others were appended in their "
                   "place",
                   c->name, pos, pos);
}

int kl_cursor_open(kl_log *log, const char *name, unsigned flags, kl_cursor **out) {
    kl_err_clear();
    if (!log || !out)
        return kl_errf(KL_EINVAL, "kl_cursor_open: NULL argument");
    *out = NULL;
    int rc = check_name(name);
    if (rc < 0)
        return kl_log_err(log, rc);
    kl_cursor *c = cursor_alloc(log, name);
    if (!c)
        return kl_log_err(log, kl_errf(KL_ENOMEM, "cursor '%s'", name));
    char path[4200];
    cur_path(log, name, CUR_EXT, path, sizeof path);
    if ((flags & KL_CURSOR_CREATE) && access(path, F_OK) != 0 && errno == ENOENT)
        rc = create_file(c->io, log, name);
    if (rc == 0)
        rc = open_locked(c, path);
    if (rc < 0) {
        kl_cursor_close(c);
        return kl_log_err(log, rc);
    }
    *out = c;
    rc = check_log(c);
    return rc < 0 ? kl_log_err(log, rc) : 0;
}

void kl_cursor_close(kl_cursor *c) {
    if (!c)
        return;
    if (c->fd >= 0)
        kl_io_close(c->io, c->fd); /* drops the flock */
    if (c->own_io)
        kl_io_destroy(c->io);
    free(c);
}

uint64_t kl_cursor_position(const kl_cursor *c) {
    return c ? c->last.position : 0;
}

uint64_t kl_cursor_fork(const kl_cursor *c) {
    return c ? c->last.fork : 0;
}

int kl_cursor_commit(kl_cursor *c, uint64_t position) {
    kl_err_clear();
    if (!c)
        return kl_errf(KL_EINVAL, "kl_cursor_commit: NULL cursor");
    uint64_t len = kl_log_length(c->log);
    if (position > len)
        return kl_log_err(
            c->log, kl_errf(KL_EINVAL, "cursor '%s': position %llu is past the log's length %llu",
                            c->name, (unsigned long long)position, (unsigned long long)len));
    cur_slot s = {.seq = c->last.seq + 1,
                  .position = position,
                  .fork = log_fork(c->log),
                  .commit_ms = kl_now_ms()};
    /* the tree hash that lets a later open see the log diverge below position (check_log) */
    int hrc = kl_log_tree_hash(c->log, position, s.tree_hash);
    if (hrc == KL_ECORRUPT)
        kl_err_clear(); /* a damaged block under it: commit without (nothing to compare later) */
    else if (hrc < 0)
        return kl_log_err(c->log, kl_err_prefix(hrc, "committing cursor '%s': ", c->name));
    s.has_hash = hrc == 0;
    int slot = 1 - c->last_slot;
    kl_cur_slot_encode(c->buf, &s);
    int rc =
        kl_io_write_sync(c->io, c->fd, c->buf, CUR_SLOT_BYTES, (uint64_t)slot * CUR_SLOT_BYTES, 1);
    if (rc < 0)
        return kl_log_err(c->log, kl_errf(kl_err_from_errno(-rc), "committing cursor '%s': %s",
                                          c->name, strerror(-rc)));
    c->last = s;
    c->last_slot = slot;
    KL_ASSERT(c->last.position == position);
    return 0;
}

int kl_cursor_delete(kl_log *log, const char *name) {
    kl_err_clear();
    if (!log)
        return kl_errf(KL_EINVAL, "kl_cursor_delete: NULL log");
    int rc = check_name(name);
    if (rc < 0)
        return kl_log_err(log, rc);
    kl_cursor *c = cursor_alloc(log, name);
    if (!c)
        return kl_log_err(log, kl_errf(KL_ENOMEM, "cursor '%s'", name));
    char path[4200], dir[4096];
    cur_path(log, name, CUR_EXT, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/" CUR_DIR, log->dir);
    /* the lock only, not the slots: a damaged cursor can be deleted, as can one of another fork */
    rc = lock_file(c, path);
    if (rc == 0) {
        rc = c->io->v->unlink(c->io, path); /* while we hold the lock: no consumer is using it */
        if (rc == 0)
            rc = kl_io_sync_dir(c->io, dir);
        if (rc < 0)
            rc = kl_errf(kl_err_from_errno(-rc), "removing %s: %s", path, strerror(-rc));
    }
    kl_cursor_close(c);
    return rc < 0 ? kl_log_err(log, rc) : 0;
}

static int info_cmp(const void *a, const void *b) {
    return strcmp(((const kl_cursor_info *)a)->name, ((const kl_cursor_info *)b)->name);
}

/* One entry of the list: the file's newest slot, read without the lock. */
static void list_one(kl_log *log, const char *name, kl_cursor_info *ci) {
    memset(ci, 0, sizeof *ci);
    snprintf(ci->name, sizeof ci->name, "%s", name);
    char path[4200];
    cur_path(log, name, CUR_EXT, path, sizeof path);
    int fd = -1, which;
    cur_slot s;
    kl_io *io = NULL;
    if (kl_io_posix_new(&io) < 0 || kl_io_open(io, path, O_RDONLY, 0, &fd) < 0 ||
        read_file(io, fd, path, &s, &which) < 0) {
        ci->damaged = 1;
    } else {
        ci->position = s.position;
        ci->fork = s.fork;
        uint8_t th[32];
        ci->diverged = s.has_hash && s.fork == log_fork(log) && s.position <= kl_log_length(log) &&
                       kl_log_tree_hash(log, s.position, th) == 0 &&
                       memcmp(th, s.tree_hash, sizeof th) != 0;
    }
    if (io) {
        kl_io_close(io, fd);
        kl_io_destroy(io);
    }
    kl_err_clear();
}

int kl_cursor_list(kl_log *log, kl_cursor_info **out, size_t *n) {
    kl_err_clear();
    if (!log || !out || !n)
        return kl_errf(KL_EINVAL, "kl_cursor_list: NULL argument");
    *out = NULL;
    *n = 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/" CUR_DIR, log->dir);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0
                               : kl_log_err(log, kl_errf(KL_EIO, "%s: %s", dir, strerror(errno)));
    kl_cursor_info *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), el = strlen(CUR_EXT);
        if (len <= el || strcmp(e->d_name + len - el, CUR_EXT) != 0)
            continue;
        char name[CUR_NAME_MAX + 1];
        if (len - el > CUR_NAME_MAX)
            continue;
        memcpy(name, e->d_name, len - el);
        name[len - el] = 0;
        if (!name_ok(name))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            kl_cursor_info *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = kl_errf(KL_ENOMEM, "cursor list");
                break;
            }
            v = nv;
        }
        list_one(log, name, &v[cnt++]);
    }
    closedir(d);
    if (rc < 0) {
        free(v);
        return kl_log_err(log, rc);
    }
    if (cnt)
        qsort(v, cnt, sizeof *v, info_cmp);
    *out = v;
    *n = cnt;
    return 0;
}
