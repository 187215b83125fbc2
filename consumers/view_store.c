/*
 * view_store.c - the directories and files of the built-in views
 * (docs/FORMAT.md, "views/"; docs/VIEWS.md): view.meta, the rebuild lock,
 * the version directories, creating and dropping a view.
 *
 * Invariants:
 * - A view exists exactly when views/<name>/view.meta does. It appears
 *   whole (made in a temporary directory, then renamed into place) and
 *   disappears whole (renamed out of the way, then removed).
 * - view.meta names the live version; it is only ever replaced by
 *   rename(2) after the new bytes were synced, and the directory is synced
 *   after the rename, so a crash leaves the old or the new file, never a mix.
 * - Versions below the live one are garbage (left by a crash between a
 *   switch and the removal); versions above it are a rebuild in progress
 *   (its holder has the lock) or abandoned by a crash (nobody has it).
 *
 * The one thing a reader would get wrong: the lock is not taken by
 * updates or reads. LMDB serialises writers of one version on its own;
 * the lock only keeps two rebuilds, or a rebuild and a drop, apart.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "view_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "../engine/io/io.h"
#include "../engine/util.h"

#define VS_DIR          "views"
#define VS_META         "view.meta"
#define VS_LOCK         "lock"
#define VS_MAGIC        "KLVIEWMT"
#define VS_VERSION      1u
#define VS_CHECKSUM_AT  1016u /* XXH3-64 of bytes [0, 1016) */
#define VS_ZERO_AT      36u   /* bytes [36, 64) are zero */
#define VS_KEY_AT       64u
#define VS_VALUE_AT     320u
#define VS_PATH_FIELD   256u /* each path field: up to KL_VIEW_PATH_MAX bytes, zero padded */
#define VS_TAIL_AT      576u /* bytes [576, 1016) are zero */
#define VS_REMOVE_DEPTH 3    /* a view directory, its version directories, their files */

int vs_name_check(const char *name) {
    size_t n = name ? strlen(name) : 0;
    int ok = n > 0 && n <= KL_VIEW_NAME_MAX && name[0] != '.';
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (ok)
        return 0;
    return kl_errf(KL_EINVAL,
                   "view name '%.80s' is not 1..%u characters of A-Z a-z 0-9 . _ - (not "
                   "starting with '.')",
                   name ? name : "", KL_VIEW_NAME_MAX);
}

int vs_check(const char *dir, const char *name) {
    if (!dir || !*dir || strlen(dir) > VS_DIR_MAX)
        return kl_errf(KL_EINVAL, "no log directory given, or a path longer than %u bytes",
                       VS_DIR_MAX);
    return vs_name_check(name);
}

void vs_path(char out[VS_PATH_BYTES], const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, VS_PATH_BYTES, fmt, ap);
    va_end(ap);
    KL_ASSERT(n >= 0 && n < VS_PATH_BYTES);
}

void vs_view_dir(char out[VS_PATH_BYTES], const char *dir, const char *name) {
    vs_path(out, "%s/" VS_DIR "/%s", dir, name);
}

void vs_version_dir(char out[VS_PATH_BYTES], const char *view_dir, uint64_t version) {
    vs_path(out, "%s/v%" PRIu64, view_dir, version);
}

void vs_meta_encode(uint8_t b[VS_META_BYTES], const vs_meta *m) {
    memset(b, 0, VS_META_BYTES);
    memcpy(b, VS_MAGIC, 8);
    kl_store32(b + 8, VS_VERSION);
    kl_store32(b + 12, (uint32_t)m->kind);
    kl_store64(b + 16, m->live);
    kl_store64(b + 24, m->created_ms);
    size_t kn = strlen(m->key_path), vn = strlen(m->value_path);
    KL_ASSERT(kn <= KL_VIEW_PATH_MAX && vn <= KL_VIEW_PATH_MAX);
    kl_store16(b + 32, (uint16_t)kn);
    kl_store16(b + 34, (uint16_t)vn);
    memcpy(b + VS_KEY_AT, m->key_path, kn);
    memcpy(b + VS_VALUE_AT, m->value_path, vn);
    kl_store64(b + VS_CHECKSUM_AT, XXH3_64bits(b, VS_CHECKSUM_AT));
}

/* Are the zero field (36..63), each path's padding and bytes 576..1015 zero? */
static int meta_zeros_ok(const uint8_t *b, size_t kn, size_t vn) {
    static const uint8_t zero[VS_META_BYTES];
    KL_ASSERT(kn <= KL_VIEW_PATH_MAX && vn <= KL_VIEW_PATH_MAX);
    return memcmp(b + VS_ZERO_AT, zero, VS_KEY_AT - VS_ZERO_AT) == 0 &&
           memcmp(b + VS_KEY_AT + kn, zero, VS_PATH_FIELD - kn) == 0 &&
           memcmp(b + VS_VALUE_AT + vn, zero, VS_PATH_FIELD - vn) == 0 &&
           memcmp(b + VS_TAIL_AT, zero, VS_CHECKSUM_AT - VS_TAIL_AT) == 0;
}

/* FORMAT.md's rules past the checksum and version: kind, versions, paths, zeros. */
static int meta_fields_ok(const uint8_t *b) {
    uint32_t kind = kl_load32(b + 12);
    uint16_t kn = kl_load16(b + 32), vn = kl_load16(b + 34);
    if (kind < KL_VIEW_KV || kind > KL_VIEW_SUM || kn == 0 || kn > KL_VIEW_PATH_MAX ||
        vn > KL_VIEW_PATH_MAX || (vn && kind != KL_VIEW_SUM) || kl_load64(b + 16) == 0)
        return 0;
    /* a NUL inside a path would cut it short: the decoded path would not be the stored one */
    return !memchr(b + VS_KEY_AT, 0, kn) && !memchr(b + VS_VALUE_AT, 0, vn) &&
           meta_zeros_ok(b, kn, vn);
}

int vs_meta_decode(const uint8_t *b, size_t n, vs_meta *m, const char *path) {
    if (n != VS_META_BYTES || memcmp(b, VS_MAGIC, 8) != 0 ||
        kl_load64(b + VS_CHECKSUM_AT) != XXH3_64bits(b, VS_CHECKSUM_AT))
        return kl_errf(KL_ECORRUPT, "%s: not a valid view.meta (size, magic or checksum)", path);
    if (kl_load32(b + 8) != VS_VERSION)
        return kl_errf(KL_ECORRUPT, "%s: view.meta version %u (this build reads %u)", path,
                       kl_load32(b + 8), VS_VERSION);
    if (!meta_fields_ok(b))
        return kl_errf(KL_ECORRUPT, "%s: view.meta has a bad kind, path, version or padding", path);
    uint16_t kn = kl_load16(b + 32), vn = kl_load16(b + 34);
    memset(m, 0, sizeof *m);
    m->kind = (kl_view_kind)kl_load32(b + 12);
    m->live = kl_load64(b + 16);
    m->created_ms = kl_load64(b + 24);
    memcpy(m->key_path, b + VS_KEY_AT, kn);
    memcpy(m->value_path, b + VS_VALUE_AT, vn);
    return 0;
}

int vs_meta_read(const char *dir, const char *name, vs_meta *m) {
    char vdir[VS_PATH_BYTES], path[VS_PATH_BYTES];
    vs_view_dir(vdir, dir, name);
    vs_path(path, "%s/" VS_META, vdir);
    kl_io *io = NULL;
    int fd = -1, rc = kl_io_posix_new(&io);
    if (rc == 0 && (rc = kl_io_open(io, path, O_RDONLY, 0, &fd)) < 0)
        rc = rc == -ENOENT ? kl_errf(KL_ENOTFOUND, "no view '%s' in %s", name, dir)
                           : kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    uint8_t b[VS_META_BYTES + 1];
    size_t got = 0;
    if (rc == 0 && (rc = kl_io_pread(io, fd, b, sizeof b, 0, &got)) < 0)
        rc = kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    if (rc == 0)
        rc = vs_meta_decode(b, got, m, path);
    if (io) {
        kl_io_close(io, fd);
        kl_io_destroy(io);
    }
    return rc;
}

int vs_meta_write(const char *view_dir, const vs_meta *m) {
    char path[VS_PATH_BYTES], tmp[VS_PATH_BYTES];
    vs_path(path, "%s/" VS_META, view_dir);
    vs_path(tmp, "%s/" VS_META ".tmp", view_dir);
    uint8_t b[VS_META_BYTES];
    vs_meta_encode(b, m);
    kl_io *io = NULL;
    int rc = kl_io_posix_new(&io);
    if (rc < 0)
        return rc;
    rc = kl_io_replace_file(io, tmp, path, view_dir, b, sizeof b);
    kl_io_destroy(io);
    KL_ASSERT(rc <= 0);
    return rc < 0 ? kl_errf(kl_err_from_errno(-rc), "writing %s: %s", path, strerror(-rc)) : 0;
}

int vs_lock(const char *view_dir, int *fd) {
    char path[VS_PATH_BYTES];
    vs_path(path, "%s/" VS_LOCK, view_dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return errno == ENOENT ? kl_errf(KL_ENOTFOUND, "%s: no such view", view_dir)
                               : kl_errf(kl_err_from_errno(errno), "%s: %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        close(f);
        return err == EWOULDBLOCK
                   ? kl_errf(KL_EBUSY, "%s is being rebuilt by another process", view_dir)
                   : kl_errf(KL_EIO, "locking %s: %s", path, strerror(err));
    }
    *fd = f;
    return 0;
}

void vs_unlock(int fd) {
    if (fd >= 0)
        close(fd); /* drops the flock */
}

int vs_locked(const char *view_dir) {
    char path[VS_PATH_BYTES];
    vs_path(path, "%s/" VS_LOCK, view_dir);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return 0;
    int held = flock(f, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(f);
    return held;
}

/* "v<digits>" -> version; 0 if name is anything else. */
static uint64_t parse_version(const char *name) {
    if (name[0] != 'v' || name[1] < '1' || name[1] > '9')
        return 0;
    uint64_t v = 0;
    for (const char *p = name + 1; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int vs_versions(const char *view_dir, uint64_t *out, size_t cap, size_t *n) {
    *n = 0;
    DIR *d = opendir(view_dir);
    if (!d)
        return errno == ENOENT ? kl_errf(KL_ENOTFOUND, "%s: no such view", view_dir)
                               : kl_errf(KL_EIO, "%s: %s", view_dir, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        uint64_t v = parse_version(de->d_name);
        if (v && *n == cap)
            rc = kl_errf(KL_ECORRUPT, "%s: more than %zu version directories", view_dir, cap);
        else if (v)
            out[(*n)++] = v;
    }
    closedir(d);
    qsort(out, *n, sizeof *out, cmp_u64);
    return rc;
}

int vs_version_remove(const char *view_dir, uint64_t version) {
    char vdir[VS_PATH_BYTES];
    vs_version_dir(vdir, view_dir, version);
    /* the data file first: a reader racing this finds no data.mdb and looks at view.meta again */
    char data[VS_PATH_BYTES];
    vs_path(data, "%s/data.mdb", vdir);
    if (unlink(data) != 0 && errno != ENOENT)
        return kl_errf(KL_EIO, "removing %s: %s", data, strerror(errno));
    return kl_remove_tree(AT_FDCWD, vdir, VS_REMOVE_DEPTH - 1);
}

/* views/.tmp-<pid>-... and views/.drop-<pid>-... of processes that are gone: remove them. */
static void sweep(const char *views) {
    DIR *d = opendir(views);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int pid = 0;
        if (sscanf(de->d_name, ".tmp-%d-", &pid) != 1 && sscanf(de->d_name, ".drop-%d-", &pid) != 1)
            continue;
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
            kl_remove_tree(dirfd(d), de->d_name, VS_REMOVE_DEPTH);
    }
    closedir(d);
}

static int sync_dir(const char *path) {
    kl_io *io = NULL;
    int rc = kl_io_posix_new(&io);
    if (rc == 0 && (rc = kl_io_sync_dir(io, path)) < 0)
        rc = kl_errf(kl_err_from_errno(-rc), "syncing %s: %s", path, strerror(-rc));
    kl_io_destroy(io);
    return rc;
}

/* A fresh name in views/ for a view on its way in or out: views/.<what>-<pid>-<ns>-<name>. */
static void side_dir(char out[VS_PATH_BYTES], const char *views, const char *what,
                     const char *name) {
    vs_path(out, "%s/.%s-%d-%" PRIu64 "-%s", views, what, (int)getpid(), kl_mono_ns(), name);
}

/* Fill the temporary directory tmp: view.meta, the lock file, the first version. */
static int fill_new_view(const char *tmp, const vs_meta *m,
                         int (*init)(void *ctx, const char *version_dir), void *ctx) {
    if (mkdir(tmp, 0755) != 0)
        return kl_errf(kl_err_from_errno(errno), "creating %s: %s", tmp, strerror(errno));
    int rc = vs_meta_write(tmp, m), fd = -1;
    if (rc == 0 && (rc = vs_lock(tmp, &fd)) == 0)
        vs_unlock(fd);
    char vdir[VS_PATH_BYTES];
    vs_version_dir(vdir, tmp, m->live);
    return rc == 0 ? init(ctx, vdir) : rc;
}

int vs_create(const char *dir, const char *name, const vs_meta *m,
              int (*init)(void *ctx, const char *version_dir), void *ctx) {
    KL_ASSERT(vs_name_check(name) == 0 && m->live >= 1);
    char views[VS_PATH_BYTES], final[VS_PATH_BYTES], tmp[VS_PATH_BYTES];
    vs_path(views, "%s/" VS_DIR, dir);
    if (mkdir(views, 0755) != 0 && errno != EEXIST)
        return kl_errf(kl_err_from_errno(errno), "creating %s: %s", views, strerror(errno));
    sweep(views);
    vs_view_dir(final, dir, name);
    if (access(final, F_OK) == 0)
        return kl_errf(KL_EEXIST, "view '%s' already exists in %s", name, dir);
    side_dir(tmp, views, "tmp", name);
    int rc = fill_new_view(tmp, m, init, ctx);
    if (rc == 0 && rename(tmp, final) != 0)
        rc = errno == EEXIST || errno == ENOTEMPTY
                 ? kl_errf(KL_EEXIST, "view '%s' already exists in %s", name, dir)
                 : kl_errf(kl_err_from_errno(errno), "renaming %s: %s", tmp, strerror(errno));
    if (rc == 0)
        rc = sync_dir(views);
    if (rc < 0)
        kl_remove_tree(AT_FDCWD, tmp, VS_REMOVE_DEPTH);
    return rc;
}

int vs_drop(const char *dir, const char *name) {
    vs_meta m;
    int rc = vs_meta_read(dir, name, &m), fd = -1;
    if (rc == KL_ECORRUPT) /* a damaged view can still be dropped: it needs only its lock */
        rc = 0;
    char views[VS_PATH_BYTES], vdir[VS_PATH_BYTES], gone[VS_PATH_BYTES];
    vs_path(views, "%s/" VS_DIR, dir);
    vs_view_dir(vdir, dir, name);
    if (rc == 0)
        rc = vs_lock(vdir, &fd);
    side_dir(gone, views, "drop", name);
    if (rc == 0 && rename(vdir, gone) != 0)
        rc = kl_errf(kl_err_from_errno(errno), "renaming %s: %s", vdir, strerror(errno));
    if (rc == 0)
        rc = sync_dir(views); /* the view is gone for good from here on */
    vs_unlock(fd);
    if (rc == 0)
        kl_remove_tree(AT_FDCWD, gone,
                       VS_REMOVE_DEPTH); /* what a crash leaves here, sweep removes */
    return rc;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(a, b);
}

int vs_list(const char *dir, char (**names)[KL_VIEW_NAME_MAX + 1], size_t *n) {
    *names = NULL;
    *n = 0;
    char views[VS_PATH_BYTES];
    vs_path(views, "%s/" VS_DIR, dir);
    DIR *d = opendir(views);
    if (!d)
        return errno == ENOENT ? 0 : kl_errf(KL_EIO, "%s: %s", views, strerror(errno));
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char meta[VS_PATH_BYTES];
        if (vs_name_check(de->d_name) < 0)
            continue;
        vs_path(meta, "%s/%s/" VS_META, views, de->d_name);
        if (access(meta, F_OK) != 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            void *p = realloc(*names, cap * sizeof **names);
            if (!p) {
                rc = kl_errf(KL_ENOMEM, "listing %s", views);
                break;
            }
            *names = p;
        }
        memcpy((*names)[(*n)++], de->d_name, strlen(de->d_name) + 1); /* checked: fits */
    }
    closedir(d);
    if (rc == 0 && *n)
        qsort(*names, *n, sizeof **names, cmp_names);
    return rc;
}
