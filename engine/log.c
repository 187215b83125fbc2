/*
 * log.c - the kl_log handle: creating a log, opening and closing it, its
 * settings, facts and error context. Recovery is in recover.c, appends in
 * commit.c, reads in read.c.
 *
 * A writable handle holds an exclusive flock on `header` for its lifetime:
 * one writer per log, any number of read-only handles beside it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <zstd.h>

#include "../index/offset_index.h"
#include "frame.h"
#include "log_internal.h"
#include "segment.h"
#include "util.h"

void kl_config_default(kl_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->fsync_mode = KL_FSYNC_ALWAYS;
    cfg->fsync_interval_ms = 1000;
    cfg->segment_bytes = KL_DEFAULT_SEGMENT_BYTES;
    cfg->codec = KL_CODEC_NONE;
    cfg->codec_level = 0;
}

/* A decimal number in [lo, hi] filling all of text. */
static int parse_range(const char *text, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!text || !*text)
        return -1;
    uint64_t v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int kl_config_parse_fsync(kl_config *cfg, const char *text) {
    uint64_t ms;
    if (!cfg || !text)
        return kl_errf(KL_EINVAL, "no fsync policy given");
    if (strcmp(text, "always") == 0) {
        cfg->fsync_mode = KL_FSYNC_ALWAYS;
    } else if (strcmp(text, "never") == 0) {
        cfg->fsync_mode = KL_FSYNC_NEVER;
    } else if (strncmp(text, "interval:", 9) == 0 && parse_range(text + 9, 1, 3600000, &ms) == 0) {
        cfg->fsync_mode = KL_FSYNC_INTERVAL;
        cfg->fsync_interval_ms = (uint32_t)ms;
    } else {
        return kl_errf(KL_EINVAL,
                       "'%s' is not a fsync policy (always, never or interval:MS with MS in "
                       "1..3600000)",
                       text);
    }
    return 0;
}

int kl_config_parse_codec(kl_config *cfg, const char *text) {
    uint64_t level;
    if (!cfg || !text)
        return kl_errf(KL_EINVAL, "no compression given");
    if (strcmp(text, "none") == 0) {
        cfg->codec = KL_CODEC_NONE;
        cfg->codec_level = 0;
    } else if (strcmp(text, "zstd") == 0) {
        cfg->codec = KL_CODEC_ZSTD;
        cfg->codec_level = 0;
    } else if (strncmp(text, "zstd:", 5) == 0 && parse_range(text + 5, 1, 19, &level) == 0) {
        cfg->codec = KL_CODEC_ZSTD;
        cfg->codec_level = (int)level;
    } else {
        return kl_errf(KL_EINVAL, "'%s' is not a compression (none, zstd or zstd:LEVEL, 1..19)",
                       text);
    }
    return 0;
}

void kl_open_options_default(kl_open_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->io = KL_IO_AUTO;
    opts->fsync_interval_ms = 1000;
    opts->lock_wait_ms = 1000;
}

int kl_log_err(kl_log *log, int rc) {
    if (rc >= 0 || !log)
        return rc;
    pthread_mutex_lock(&log->errmu);
    const char *m = kl_err_thread();
    snprintf(log->err, sizeof log->err, "%s", *m ? m : kl_strerror(rc));
    pthread_mutex_unlock(&log->errmu);
    return rc;
}

const char *kl_log_last_error(kl_log *log) {
    return log ? log->err : "";
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Is dir an empty directory (or absent)? */
static int dir_is_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    int empty = 1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            empty = 0;
    closedir(d);
    return empty;
}

/* fsync the directory that contains path. */
static int sync_parent(kl_io *io, const char *path) {
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    int rc = kl_io_sync_dir(io, dirname(copy));
    free(copy);
    return rc;
}

/* Write a new file of n bytes and make it durable (its directory entry is synced later). */
static int write_new_file(kl_io *io, const char *path, const void *p, size_t n, int mode) {
    int fd = -1;
    int rc = kl_io_open(io, path, O_RDWR | O_CREAT | O_EXCL, mode, &fd);
    if (rc == 0 && mode == 0600)
        rc = fchmod(fd, 0600) < 0 ? -errno : 0; /* whatever the umask */
    if (rc == 0)
        rc = kl_io_write_sync(io, fd, p, n, 0, 1);
    kl_io_close(io, fd);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    return 0;
}

/*
 * The key pair (from cfg->seed or random) and the signed empty tree: the
 * secret goes to DIR/secret, the rest into the slot. A replica (replica_pk)
 * gets the peer's public key and no secret; its empty tree stays unsigned.
 */
static int create_keys(kl_io *io, const char *dir, const kl_config *cfg, const uint8_t *replica_pk,
                       kl_slot *st) {
    if (replica_pk) {
        st->kind = cfg->compat ? KL_CORE_COMPAT : KL_CORE_DEFAULT;
        memcpy(st->public_key, replica_pk, KL_PK_BYTES);
        st->sig_len = 0;
        return 0;
    }
    uint8_t seed[KL_SEED_BYTES], sk[KL_SK_BYTES], key[KL_HASH_BYTES], th[KL_HASH_BYTES];
    if (cfg->seed)
        memcpy(seed, cfg->seed, KL_SEED_BYTES);
    else
        randombytes_buf(seed, sizeof seed);
    kl_hc_keypair(seed, st->public_key, sk);
    sodium_memzero(seed, sizeof seed);
    st->kind = cfg->compat ? KL_CORE_COMPAT : KL_CORE_DEFAULT;
    kl_hc_core_key((kl_core_kind)st->kind, st->public_key, key);
    kl_slot_tree_hash(st, th);
    size_t sig_len = 0;
    kl_hc_sign((kl_core_kind)st->kind, sk, key, th, 0, 0, st->sig, &sig_len);
    st->sig_len = (uint32_t)sig_len;
    char *path = join(dir, "secret");
    int rc = path ? write_new_file(io, path, sk, sizeof sk, 0600) : kl_errf(KL_ENOMEM, "paths");
    sodium_memzero(sk, sizeof sk);
    free(path);
    return rc;
}

/* The files of an empty log: segment 0, its index, the tree, the secret, then the header last. */
static int create_files(kl_io *io, const char *dir, const char *seg_dir, const kl_config *cfg,
                        const uint8_t *replica_pk) {
    char path[4096];
    uint8_t seg_hdr[KL_SEG_HEADER_BYTES];
    uint64_t now = kl_now_ms();
    int fd = -1;
    kl_seg_path(path, sizeof path, seg_dir, 0, "log");
    kl_seg_header_encode(seg_hdr, 0, now);
    int rc = kl_io_open(io, path, O_RDWR | O_CREAT | O_EXCL, 0644, &fd);
    if (rc == 0)
        rc = kl_io_write_sync(io, fd, seg_hdr, sizeof seg_hdr, 0, 1);
    kl_io_close(io, fd);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));

    kl_oidx idx;
    if ((rc = kl_oidx_init(&idx, 0, KL_IDX_INTERVAL_BYTES)) < 0)
        return rc;
    kl_seg_path(path, sizeof path, seg_dir, 0, "idx");
    fd = -1;
    rc = kl_oidx_write_active(&idx, io, path, &fd);
    kl_io_close(io, fd);
    kl_oidx_free(&idx, io);
    if (rc < 0)
        return rc;
    if ((rc = kl_io_sync_dir(io, seg_dir)) < 0)
        return kl_errf(kl_err_from_errno(-rc), "syncing %s: %s", seg_dir, strerror(-rc));

    uint8_t tree_hdr[KL_TREE_HEADER_BYTES];
    kl_tree_header_encode(tree_hdr, KL_TREE_LOW);
    char *tree = join(dir, "tree");
    rc = tree ? write_new_file(io, tree, tree_hdr, sizeof tree_hdr, 0644)
              : kl_errf(KL_ENOMEM, "paths");
    free(tree);
    if (rc < 0)
        return rc;

    kl_slot st = {.seq = 1,
                  .active_end = KL_SEG_HEADER_BYTES,
                  .commit_ms = now,
                  .created_ms = now,
                  .cfg = *cfg};
    st.cfg.seed = NULL;
    if ((rc = create_keys(io, dir, cfg, replica_pk, &st)) < 0)
        return rc;
    uint8_t *buf = calloc(1, KL_HDR_FILE_BYTES);
    if (!buf)
        return kl_errf(KL_ENOMEM, "header");
    kl_slot_encode(buf, &st);
    st.seq = 2;
    kl_slot_encode(buf + KL_HDR_SLOT_BYTES, &st);
    char *hdr = join(dir, "header");
    fd = -1;
    rc = hdr ? kl_io_open(io, hdr, O_RDWR | O_CREAT | O_EXCL, 0644, &fd) : -ENOMEM;
    if (rc == 0)
        rc = kl_io_write_sync(io, fd, buf, KL_HDR_FILE_BYTES, 0, 1);
    kl_io_close(io, fd);
    free(buf);
    free(hdr);
    if (rc == 0)
        rc = kl_io_sync_dir(io, dir);
    if (rc == 0)
        rc = sync_parent(io, dir);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "writing the header of %s: %s", dir, strerror(-rc));
    return 0;
}

static int create_log(const char *dir, const kl_config *cfg_in, const uint8_t *replica_pk,
                      kl_io *io) {
    kl_config cfg;
    if (!dir || !*dir)
        return kl_errf(KL_EINVAL, "no directory given");
    if (cfg_in)
        cfg = *cfg_in;
    else
        kl_config_default(&cfg);
    int rc = kl_config_check(&cfg);
    if (rc < 0)
        return rc;
    char *hdr = join(dir, "header");
    char *seg_dir = join(dir, "segments");
    if (!hdr || !seg_dir) {
        rc = kl_errf(KL_ENOMEM, "paths");
        goto out;
    }
    if (access(hdr, F_OK) == 0) {
        rc = kl_errf(KL_EEXIST, "%s is already a kappalog log", dir);
        goto out;
    }
    if (!dir_is_empty(dir)) {
        struct stat st;
        rc =
            kl_errf(KL_EEXIST,
                    stat(dir, &st) == 0 && !S_ISDIR(st.st_mode) ? "%s exists and is not a directory"
                                                                : "%s is not empty",
                    dir);
        goto out;
    }
    rc = io->v->mkdir(io, dir, 0755);
    if (rc < 0 && rc != -EEXIST) {
        rc = kl_errf(kl_err_from_errno(-rc), "creating %s: %s", dir, strerror(-rc));
        goto out;
    }
    rc = io->v->mkdir(io, seg_dir, 0755);
    if (rc < 0) {
        rc = kl_errf(kl_err_from_errno(-rc), "creating %s: %s", seg_dir, strerror(-rc));
        goto out;
    }
    rc = create_files(io, dir, seg_dir, &cfg, replica_pk);
out:
    free(hdr);
    free(seg_dir);
    return rc;
}

int kl_log_create_io(const char *dir, const kl_config *cfg, kl_io *io) {
    return create_log(dir, cfg, NULL, io);
}

int kl_replica_create_io(const char *dir, const kl_config *cfg, const uint8_t pk[KL_PK_BYTES],
                         kl_io *io) {
    if (cfg && cfg->seed)
        return kl_errf(KL_EINVAL, "a replica has no key pair of its own: no seed");
    return create_log(dir, cfg, pk, io);
}

int kl_log_create(const char *dir, const kl_config *cfg) {
    kl_err_clear();
    if (sodium_init() < 0)
        return kl_errf(KL_EIO, "libsodium failed to initialize");
    kl_io *io = NULL;
    int rc = kl_io_new(KL_IO_AUTO, &io);
    if (rc < 0)
        return rc;
    rc = kl_log_create_io(dir, cfg, io);
    kl_io_destroy(io);
    return rc;
}

static kl_log *log_alloc(const char *dir, kl_io *io) {
    kl_log *log = calloc(1, sizeof *log);
    if (!log)
        return NULL;
    log->io = io;
    log->hdr_fd = -1;
    log->segdir_fd = -1;
    log->tree_fd = -1;
    log->dir = strdup(dir);
    log->hdr_path = join(dir, "header");
    log->seg_dir = join(dir, "segments");
    log->tree_path = join(dir, "tree");
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->cv, NULL);
    pthread_cond_init(&log->cv_lead, NULL);
    pthread_mutex_init(&log->zmu, NULL);
    pthread_mutex_init(&log->errmu, NULL);
    pthread_mutex_init(&log->sync_mu, NULL);
    pthread_mutex_init(&log->sealer_mu, NULL);
    pthread_cond_init(&log->sealer_cv, NULL);
    pthread_rwlock_init(&log->segs_lock, NULL);
    pthread_mutex_init(&log->refresh_mu, NULL);
    pthread_mutex_init(&log->leaf_mu, NULL);
    pthread_mutex_init(&log->watch_mu, NULL);
    log->ino_fd = -1;
    log->ino_wd = -1;
    if (!log->dir || !log->hdr_path || !log->seg_dir || !log->tree_path) {
        free(log->dir);
        free(log->hdr_path);
        free(log->seg_dir);
        free(log->tree_path);
        free(log);
        return NULL;
    }
    return log;
}

static void log_free(kl_log *log) {
    kl_commit_free(log); /* first: it closes descriptors of segments kl_read_free frees;
                            safe on a handle whose commit state was never set up */
    kl_read_free(log);
    kl_io_close(log->io, log->hdr_fd);
    kl_io_close(log->io, log->tree_fd);
    sodium_memzero(log->sk, sizeof log->sk);
    kl_io_destroy(log->io);
    pthread_mutex_destroy(&log->mu);
    pthread_cond_destroy(&log->cv);
    pthread_cond_destroy(&log->cv_lead);
    pthread_mutex_destroy(&log->zmu);
    pthread_mutex_destroy(&log->errmu);
    pthread_mutex_destroy(&log->sync_mu);
    pthread_mutex_destroy(&log->sealer_mu);
    pthread_cond_destroy(&log->sealer_cv);
    pthread_rwlock_destroy(&log->segs_lock);
    pthread_mutex_destroy(&log->refresh_mu);
    pthread_mutex_destroy(&log->leaf_mu);
    pthread_mutex_destroy(&log->watch_mu);
    if (log->ino_fd >= 0)
        close(log->ino_fd); /* the inotify watch of kl_log_wait (follow.c) */
    free(log->dir);
    free(log->hdr_path);
    free(log->seg_dir);
    free(log->tree_path);
    free(log);
}

/* The writer's lock, waiting up to wait_ms for a holder that is going away. */
static int lock_writer(kl_log *log, uint32_t wait_ms) {
    uint64_t deadline = kl_mono_ns() + (uint64_t)wait_ms * 1000000u;
    for (;;) {
        if (flock(log->hdr_fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK)
            return kl_errf(KL_EIO, "locking %s: %s", log->hdr_path, strerror(errno));
        if (kl_mono_ns() >= deadline)
            return kl_errf(KL_EBUSY, "%s is open for writing by another process", log->dir);
        struct timespec ts = {0, 2000000}; /* 2 ms */
        nanosleep(&ts, NULL);
    }
}

/* Open `header`, and take the writer's lock. */
static int open_header(kl_log *log, uint32_t lock_wait_ms) {
    int rc = kl_io_open(log->io, log->hdr_path, log->readonly ? O_RDONLY : O_RDWR, 0, &log->hdr_fd);
    if (rc == -ENOENT) {
        struct stat st;
        if (stat(log->dir, &st) < 0)
            return kl_errf(KL_ENOTFOUND, "%s: no such directory", log->dir);
        return kl_errf(KL_ENOTFOUND, "%s is not a kappalog log (no header file)", log->dir);
    }
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", log->hdr_path, strerror(-rc));
    return log->readonly ? 0 : lock_writer(log, lock_wait_ms);
}

int kl_log_open_io(const char *dir, const kl_open_options *opts_in, kl_io *io, kl_log **out) {
    kl_open_options opts;
    if (opts_in)
        opts = *opts_in;
    else
        kl_open_options_default(&opts);
    if (!dir || !*dir || !out) {
        kl_io_destroy(io);
        return kl_errf(KL_EINVAL, "kl_log_open: no directory given");
    }
    kl_log *log = log_alloc(dir, io);
    if (!log) {
        kl_io_destroy(io);
        return kl_errf(KL_ENOMEM, "opening %s", dir);
    }
    log->readonly = (opts.flags & KL_OPEN_READONLY) != 0;
    int rc = open_header(log, opts.lock_wait_ms);
    if (rc == 0)
        rc = kl_recover(log);
    if (rc == 0 && !log->has_sk) /* a writable recovery may have loaded it already */
        rc = kl_keys_load(log);
    if (rc == 0)
        rc = kl_recover_sign(log);
    if (rc == 0 && opts.fsync_override) {
        kl_config c = log->cfg;
        c.fsync_mode = opts.fsync_mode;
        c.fsync_interval_ms = opts.fsync_interval_ms;
        rc = kl_config_check(&c);
        if (rc == 0)
            log->cfg = c;
    }
    if (rc == 0 && !log->readonly)
        rc = kl_commit_init(log);
    if (rc == 0)
        rc = kl_flusher_start(log);
    if (rc < 0) {
        kl_flusher_stop(log);
        log_free(log);
        return rc;
    }
    *out = log;
    return 0;
}

int kl_log_open(const char *dir, const kl_open_options *opts, kl_log **out) {
    kl_err_clear();
    if (sodium_init() < 0)
        return kl_errf(KL_EIO, "libsodium failed to initialize");
    kl_io *io = NULL;
    int rc = kl_io_new(opts ? opts->io : KL_IO_AUTO, &io);
    if (rc < 0)
        return rc;
    rc = kl_log_open_io(dir, opts, io, out);
    if (rc < 0 && dir && !strstr(kl_err_thread(), dir)) /* name the log, once */
        kl_err_prefix(rc, "opening %s: ", dir);
    return rc;
}

int kl_log_close(kl_log *log) {
    if (!log)
        return 0;
    int rc = 0;
    /* threads in kl_log_wait on this handle return KL_ECLOSED before it goes away */
    atomic_store(&log->follow_closing, 1);
    while (atomic_load(&log->len_waiters) > 0) {
        kl_follow_notify(log);
        sched_yield();
    }
    kl_flusher_stop(log);
    if (!log->readonly) {
        rc = kl_commit_sync(log, 1);
        if (rc == 0)
            rc = kl_commit_trim(log);
    }
    log_free(log);
    return rc;
}

uint64_t kl_log_length(kl_log *log) {
    return log ? atomic_load_explicit(&log->length, memory_order_acquire) : 0;
}

uint64_t kl_log_byte_length(kl_log *log) {
    return log ? atomic_load_explicit(&log->byte_length, memory_order_acquire) : 0;
}

/* Bytes on disk of the header and every file under segments/. */
static uint64_t disk_bytes(const kl_log *log, uint64_t *segments) {
    struct stat st;
    uint64_t total = 0;
    *segments = 0;
    if (stat(log->hdr_path, &st) == 0)
        total += (uint64_t)st.st_blocks * 512u;
    if (stat(log->tree_path, &st) == 0)
        total += (uint64_t)st.st_blocks * 512u;
    DIR *d = opendir(log->seg_dir);
    if (!d)
        return total;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, 0) == 0)
            total += (uint64_t)st.st_blocks * 512u;
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".log") == 0)
            (*segments)++;
    }
    closedir(d);
    return total;
}

int kl_log_info(kl_log *log, kl_info *info) {
    if (!log || !info)
        return kl_errf(KL_EINVAL, "kl_log_info: NULL argument");
    memset(info, 0, sizeof *info);
    kl_slot *last = malloc(sizeof *last);
    if (last)
        kl_commit_last(log, last); /* the last commit's state, all of one commit */
    if (!last)
        return kl_errf(KL_ENOMEM, "kl_log_info");
    info->length = last->length;
    info->byte_length = last->byte_length;
    info->fork = last->fork;
    info->compat = last->kind == KL_CORE_COMPAT;
    memcpy(info->key, log->key, sizeof info->key);
    memcpy(info->discovery_key, log->dkey, sizeof info->discovery_key);
    memcpy(info->public_key, log->public_key, sizeof info->public_key);
    kl_slot_tree_hash(last, info->tree_hash);
    memcpy(info->signature, last->sig, last->sig_len);
    info->signature_len = last->sig_len;
    info->writable = log->has_sk;
    info->secret_unsafe = log->secret_unsafe;
    info->recovery = log->recovery_note;
    free(last);
    info->disk_bytes = disk_bytes(log, &info->segments);
    info->created_ms = log->stored.created_ms;
    info->last_commit_ms = atomic_load(&log->last_commit_ms);
    info->config = log->cfg;
    info->io_backend = log->io->name;
    info->io_fallback = strcmp(log->io->name, "posix") == 0 ? kl_io_fallback_reason() : "";
    info->format_version = KL_HDR_VERSION;
    info->readonly = log->readonly;
    return 0;
}
