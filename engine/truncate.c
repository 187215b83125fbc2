/*
 * truncate.c - kl_truncate: cutting a log to a shorter length as
 * Hypercore's truncate does (the fork id increments, the tree at the new
 * length is signed with it).
 *
 * A truncation rewrites committed state (the batch that holds the new end
 * is cut in two, segments past it go), so the two header slots alone cannot
 * make it atomic. A redo record does: `truncate.redo` holds the whole new
 * state (the new header slot, signed; the segment and offset where the log
 * now ends; the re-framed head of the batch that was cut) behind a checksum.
 * It is written and made durable before any file changes; then it is
 * applied, every step idempotent (cut, write, sync, both slots); then it is
 * removed. A writable open that finds a complete record applies it first,
 * so a crash anywhere leaves either the old log (the record never became
 * complete) or the truncated one. A read-only open refuses to guess.
 *
 * The tree needs no rewriting: the stored nodes of the first n blocks are
 * exactly the first kl_tree_count(n, low) in the tree file, and the roots
 * of n are among them or hashed from the blocks under them (tree.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "frame.h"
#include "log_internal.h"
#include "proof.h"
#include "segment.h"
#include "util.h"

#define REDO_MAGIC   "KLREDO01"
#define REDO_HEAD    40u /* magic, version, zero, segment, cut, batch length */
#define REDO_VERSION 1u

/* The redo record: head, the new slot, the batch, then an XXH3-64 of all that. */
static size_t redo_len(uint64_t batch_len) {
    return REDO_HEAD + KL_HDR_SLOT_BYTES + (size_t)batch_len + 8;
}

static char *redo_path(const char *dir, const char *suffix) {
    size_t n = strlen(dir) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/truncate.redo%s", dir, suffix);
    return p;
}

/* Read the blocks [from, to) of the log and frame them as one batch (*out malloc'ed). */
static int reframe(kl_log *log, uint64_t from, uint64_t to, uint64_t timestamp_ms, uint8_t **out,
                   size_t *len) {
    size_t count = (size_t)(to - from);
    kl_block *blocks = calloc(count, sizeof *blocks);
    uint8_t **copies = calloc(count, sizeof *copies);
    uint64_t data_bytes = 0;
    int rc = blocks && copies ? 0 : kl_errf(KL_ENOMEM, "truncating");
    for (size_t i = 0; rc == 0 && i < count; i++) {
        size_t size = 0;
        rc = kl_log_get(log, from + i, NULL, 0, &size);
        if (rc == KL_ETOOSMALL || (rc == 0 && size == 0)) {
            copies[i] = malloc(size ? size : 1);
            rc = copies[i] ? kl_log_get(log, from + i, copies[i], size, &size)
                           : kl_errf(KL_ENOMEM, "truncating");
        }
        blocks[i] = (kl_block){copies[i], size};
        data_bytes += size;
    }
    if (rc == 0) {
        *len = (size_t)kl_batch_plain_bytes(count, data_bytes);
        *out = malloc(*len);
        if (*out)
            kl_batch_frame(*out, from, blocks, count, data_bytes, timestamp_ms);
        else
            rc = kl_errf(KL_ENOMEM, "truncating");
    }
    for (size_t i = 0; copies && i < count; i++)
        free(copies[i]);
    free(copies);
    free(blocks);
    return rc;
}

/*
 * The roots of n come from the tree file, which nothing signed directly:
 * check them the way a peer would, as the start of an upgrade proof from n
 * to the signed length. A damaged tree file then stops the truncation
 * instead of being signed.
 */
static int check_roots(kl_log *log, const kl_slot *cur, const kl_node *roots, size_t nroots,
                       uint64_t n) {
    if (n == cur->length)
        return 0;
    kl_node_src ts = {log, cur->length};
    kl_proof_source src = {.length = cur->length,
                           .fork = cur->fork,
                           .signature = cur->sig,
                           .signature_len = cur->sig_len,
                           .get = kl_node_src_get,
                           .ctx = &ts};
    kl_proof_request req;
    memset(&req, 0, sizeof req);
    req.flags = KL_PROOF_UPGRADE;
    req.fork = cur->fork;
    req.upgrade.start = n;
    req.upgrade.length = cur->length - n;
    kl_proof *p = malloc(sizeof *p);
    kl_proof_result *res = malloc(sizeof *res);
    int rc = p && res ? kl_proof_build(&src, &req, p) : kl_errf(KL_ENOMEM, "truncating");
    if (rc == 0) {
        kl_proof_receiver rx = {.kind = log->kind,
                                .key = log->key,
                                .pk = log->public_key,
                                .length = n,
                                .fork = cur->fork,
                                .roots = roots,
                                .nroots = nroots};
        rc = kl_proof_verify(&rx, p, res);
    }
    free(p);
    free(res);
    return rc < 0 ? kl_err_prefix(KL_ECORRUPT,
                                  "the tree file does not match the signed tree (run kappalog "
                                  "verify): ")
                  : 0;
}

/*
 * The state after truncating to n at `fork`, and where the data now ends:
 * signed with the log's key, or for a replica (no key) left unsigned until
 * it reaches its peer's signed length again.
 */
static int plan(kl_log *log, uint64_t n, uint64_t fork, kl_slot *s1, uint64_t *seg_first,
                uint64_t *cut, uint8_t **batch, size_t *batch_len) {
    *s1 = log->last;
    *batch = NULL;
    *batch_len = 0;
    uint64_t idx[KL_MAX_ROOTS];
    s1->nroots = (uint32_t)kl_ft_full_roots(n, idx);
    s1->byte_length = 0;
    for (uint32_t i = 0; i < s1->nroots; i++) {
        int rc = kl_log_node(log, idx[i], &s1->roots[i]);
        if (rc < 0)
            return rc;
        s1->byte_length += s1->roots[i].size;
    }
    int crc = check_roots(log, &log->last, s1->roots, s1->nroots, n);
    if (crc < 0)
        return crc;
    s1->length = n;
    s1->fork = fork;
    s1->flags = 0;
    s1->synced_end = 0; /* its segment is rewritten */
    s1->commit_ms = kl_now_ms();
    s1->sig_len = 0;
    if (log->has_sk)
        kl_commit_sign(log, s1);
    *seg_first = log->last.active_segment;
    *cut = log->last.active_end;
    if (n == log->last.length)
        return 0;
    kl_batch_hdr h;
    uint64_t pos = 0;
    int rc = kl_batch_at(log, n, seg_first, &pos, &h);
    if (rc < 0)
        return rc;
    *cut = pos;
    if (h.first_index < n)
        rc = reframe(log, h.first_index, n, h.timestamp_ms, batch, batch_len);
    s1->active_segment = *seg_first;
    s1->active_end = pos + *batch_len;
    return rc;
}

/* Write the redo record durably: a temporary file, synced, renamed, directory synced. */
static int write_redo(kl_log *log, const kl_slot *s1, uint64_t seg_first, uint64_t cut,
                      const uint8_t *batch, size_t batch_len) {
    size_t n = redo_len(batch_len);
    uint8_t *p = calloc(1, n);
    char *tmp = redo_path(log->dir, ".tmp"), *path = redo_path(log->dir, "");
    int rc = p && tmp && path ? 0 : -ENOMEM;
    if (rc == 0) {
        memcpy(p, REDO_MAGIC, 8);
        kl_store32(p + 8, REDO_VERSION);
        kl_store64(p + 16, seg_first);
        kl_store64(p + 24, cut);
        kl_store64(p + 32, batch_len);
        kl_slot_encode(p + REDO_HEAD, s1);
        if (batch_len)
            memcpy(p + REDO_HEAD + KL_HDR_SLOT_BYTES, batch, batch_len);
        kl_store64(p + n - 8, XXH3_64bits(p, n - 8));
        rc = kl_io_replace_file(log->io, tmp, path, log->dir, p, n);
    }
    free(p);
    free(tmp);
    free(path);
    return rc < 0 ? kl_errf(kl_err_from_errno(-rc), "writing %s/truncate.redo: %s", log->dir,
                            strerror(-rc))
                  : 0;
}

/* kl_truncate, and kl_replica_truncate for a replica (fork given: its peer's new one). */
static int truncate_log(const char *dir, uint64_t length, int replica, uint64_t fork,
                        const kl_open_options *opts) {
    kl_err_clear();
    kl_log *log = NULL;
    int rc = kl_log_open(dir, opts, &log);
    if (rc < 0)
        return rc;
    uint64_t have = kl_log_length(log);
    if (!replica && !log->has_sk)
        rc = kl_errf(KL_EREADONLY, "cannot truncate %s: %s", dir, log->sk_problem);
    else if (replica && (log->has_sk || log->readonly))
        rc = kl_errf(KL_EINVAL, "%s is not a writable replica", dir);
    else if (replica && fork <= log->last.fork)
        rc = kl_errf(KL_EFORK, "%s is at fork %llu: no truncation to fork %llu", dir,
                     (unsigned long long)log->last.fork, (unsigned long long)fork);
    else if (length > have)
        rc = kl_errf(KL_EINVAL, "cannot truncate %s to %llu blocks: it has %llu", dir,
                     (unsigned long long)length, (unsigned long long)have);
    if (rc == 0)
        rc = kl_log_sync(log);
    kl_slot *s1 = malloc(sizeof *s1);
    uint8_t *batch = NULL;
    size_t batch_len = 0;
    uint64_t seg_first = 0, cut = 0;
    if (rc == 0 && !s1)
        rc = kl_errf(KL_ENOMEM, "truncating");
    if (rc == 0)
        rc = plan(log, length, replica ? fork : log->last.fork + 1, s1, &seg_first, &cut, &batch,
                  &batch_len);
    if (rc == 0)
        rc = write_redo(log, s1, seg_first, cut, batch, batch_len);
    free(batch);
    free(s1);
    /* From here the truncation is decided: the next writable open applies it. */
    int crc = kl_log_close(log);
    if (rc == 0 && crc < 0)
        rc = crc;
    if (rc < 0)
        return rc;
    rc = kl_log_open(dir, opts, &log);
    if (rc == 0)
        rc = kl_log_close(log);
    return rc;
}

int kl_truncate(const char *dir, uint64_t length, const kl_open_options *opts) {
    return truncate_log(dir, length, 0, 0, opts);
}

int kl_replica_truncate(const char *dir, uint64_t length, uint64_t fork) {
    return truncate_log(dir, length, 1, fork, NULL);
}

/* Remove the files of segments after `first`. */
static int drop_segments_after(kl_log *log, uint64_t first) {
    uint64_t *firsts = NULL;
    size_t n = 0;
    int rc = kl_seg_list(log->seg_dir, &firsts, &n);
    if (rc < 0)
        return rc;
    char path[4096];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (firsts[i] <= first)
            continue;
        const char *exts[] = {"log", "idx", "idx.tmp", "tix", "tix.tmp"};
        for (int k = 0; rc == 0 && k < 5; k++) {
            kl_seg_file(log, path, sizeof path, firsts[i], exts[k]);
            int u = log->io->v->unlink(log->io, path);
            if (u < 0 && u != -ENOENT)
                rc = kl_errf(kl_err_from_errno(-u), "removing %s: %s", path, strerror(-u));
        }
    }
    free(firsts);
    return rc;
}

#define COPY_CHUNK_BYTES (1u << 20)

/* Copy bytes [0, n) of file `from` to `to` (from's header gets the new fork). */
static int copy_prefix(kl_log *log, int from, int to, uint64_t n, uint64_t fork) {
    uint8_t *buf = malloc(COPY_CHUNK_BYTES);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t off = 0; rc == 0 && off < n;) {
        size_t want = (size_t)KL_MIN((uint64_t)COPY_CHUNK_BYTES, n - off), got = 0;
        rc = kl_io_pread(log->io, from, buf, want, off, &got);
        if (rc == 0 && got != want)
            rc = -EIO; /* the segment is shorter than the state that names it */
        if (rc == 0 && off == 0) {
            if (got < KL_SEG_HEADER_BYTES)
                rc = -EIO;
            else
                kl_seg_header_set_fork(buf, fork);
        }
        if (rc == 0)
            rc = kl_io_write_sync(log->io, to, buf, want, off, 0);
        off += want;
    }
    free(buf);
    return rc;
}

/*
 * The segment that now ends the log: a new file (the kept prefix, then the
 * re-framed batch, its header carrying the new fork), synced, renamed over
 * the old one. Never cut in place: a reader that has the old file mapped
 * keeps reading the old bytes (never a SIGBUS, never the new fork's bytes
 * as the old fork's), and one that maps it later sees the new fork and
 * refuses it.
 */
static int rewrite_end(kl_log *log, uint64_t first, uint64_t cut, uint64_t fork,
                       const uint8_t *batch, size_t batch_len) {
    char path[4096], tmp[4100];
    kl_seg_file(log, path, sizeof path, first, "idx"); /* rebuilt by recovery */
    int rc = log->io->v->unlink(log->io, path);
    if (rc == -ENOENT)
        rc = 0;
    kl_seg_file(log, path, sizeof path, first, "tix"); /* so is the time index */
    int trc = log->io->v->unlink(log->io, path);
    if (rc == 0 && trc < 0 && trc != -ENOENT)
        rc = trc;
    kl_seg_file(log, path, sizeof path, first, "log");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = -1, nfd = -1;
    if (rc == 0)
        rc = kl_io_open(log->io, path, O_RDONLY, 0, &fd);
    if (rc == 0)
        rc = kl_io_open(log->io, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644, &nfd);
    if (rc == 0)
        rc = copy_prefix(log, fd, nfd, cut, fork);
    if (rc == 0)
        rc = kl_io_write_sync(log->io, nfd, batch, batch_len, cut, 1);
    kl_io_close(log->io, fd);
    kl_io_close(log->io, nfd);
    if (rc == 0)
        rc = log->io->v->rename(log->io, tmp, path);
    return rc < 0 ? kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc)) : 0;
}

/* Both header slots get the new state, numbered after whatever is there. */
static int write_slots(kl_log *log, kl_slot *s1) {
    uint8_t *buf = malloc(KL_HDR_FILE_BYTES);
    if (!buf)
        return kl_errf(KL_ENOMEM, "header");
    size_t got = 0;
    int rc = kl_io_pread(log->io, log->hdr_fd, buf, KL_HDR_FILE_BYTES, 0, &got);
    uint64_t seq = s1->seq;
    for (int i = 0; rc == 0 && i < 2; i++) {
        kl_slot s;
        if (got >= (size_t)(i + 1) * KL_HDR_SLOT_BYTES &&
            kl_slot_decode(buf + i * KL_HDR_SLOT_BYTES, &s) == 0)
            seq = KL_MAX(seq, s.seq);
    }
    for (int i = 0; rc == 0 && i < 2; i++) {
        s1->seq = seq + 1 + (uint64_t)i;
        kl_slot_encode(buf + i * KL_HDR_SLOT_BYTES, s1);
    }
    if (rc == 0)
        rc = kl_io_write_sync(log->io, log->hdr_fd, buf, KL_HDR_FILE_BYTES, 0, 1);
    free(buf);
    return rc < 0 ? kl_errf(kl_err_from_errno(-rc), "%s: %s", log->hdr_path, strerror(-rc)) : 0;
}

/*
 * The tree file of a truncation being finished: open (*fd), its header
 * checked, and *want the bytes it keeps: those of the new length, or all it
 * has if it is shorter. The log was synced before the record was written, so
 * the file held the nodes of the old, longer log; a shorter one was cut by
 * something else, and ftruncate "to" the new length would make it longer,
 * all zeros, which would pass for nodes. It is left as it is: once the
 * truncation is finished, recovery rebuilds the missing nodes from the
 * blocks if they make the new signed roots, and refuses the log otherwise
 * (recover.c, regrow_tree), as for any tree file cut short.
 */
static int redo_tree(kl_log *log, uint64_t length, int *fd, uint64_t *want) {
    int e = kl_io_open(log->io, log->tree_path, O_RDWR, 0, fd);
    if (e < 0)
        return kl_errf(kl_err_from_errno(-e), "%s: %s", log->tree_path, strerror(-e));
    unsigned low = 0;
    int rc = kl_tree_header_read(log->io, *fd, &low, NULL);
    if (rc < 0)
        return kl_err_prefix(rc, "%s: ", log->tree_path);
    uint64_t size = 0;
    if ((e = log->io->v->size(log->io, *fd, &size)) < 0)
        return kl_errf(kl_err_from_errno(-e), "%s: %s", log->tree_path, strerror(-e));
    *want = KL_MIN(size, kl_tree_bytes(length, low));
    return 0;
}

/*
 * The segment that ends the truncated log holds the `cut` bytes the record
 * keeps (or, renamed already, those and the re-framed batch): checked before
 * any step, so a file cut short is reported as damage with its blocks and
 * nothing is changed.
 */
static int redo_segment(kl_log *log, uint64_t first, uint64_t cut, uint64_t length) {
    char path[4096], blocks[64];
    kl_seg_file(log, path, sizeof path, first, "log");
    kl_seg_blocks(blocks, sizeof blocks, first, length);
    int fd = -1;
    int e = kl_io_open(log->io, path, O_RDONLY, 0, &fd);
    uint64_t size = 0;
    if (e == 0) {
        e = log->io->v->size(log->io, fd, &size);
        kl_io_close(log->io, fd);
    }
    if (e == -ENOENT)
        return kl_errf(KL_ECORRUPT, "%s is missing (the truncated log keeps %s there)", path,
                       blocks);
    if (e < 0)
        return kl_errf(kl_err_from_errno(-e), "%s: %s", path, strerror(-e));
    if (size < cut)
        return kl_errf(KL_ECORRUPT,
                       "%s is %llu bytes but the truncated log keeps its first %llu (%s): the "
                       "file was cut short (nothing was changed)",
                       path, (unsigned long long)size, (unsigned long long)cut, blocks);
    return 0;
}

int kl_truncate_redo(kl_log *log) {
    char *path = redo_path(log->dir, ""), *tmp = redo_path(log->dir, ".tmp");
    if (!path || !tmp) {
        free(path);
        free(tmp);
        return kl_errf(KL_ENOMEM, "paths");
    }
    if (!log->readonly) /* a record a crash left half-written, before it counted */
        (void)log->io->v->unlink(log->io, tmp);
    free(tmp);
    int fd = -1;
    int rc = kl_io_open(log->io, path, O_RDONLY, 0, &fd);
    if (rc == -ENOENT) {
        free(path);
        return 0;
    }
    if (log->readonly) {
        kl_io_close(log->io, fd);
        free(path);
        return kl_errf(KL_EBUSY,
                       "a truncation of %s is unfinished: open it for writing once to finish it",
                       log->dir);
    }
    uint64_t size = 0;
    uint8_t *p = NULL;
    if (rc == 0)
        rc = log->io->v->size(log->io, fd, &size);
    if (rc == 0 && size >= redo_len(0) && size <= redo_len(KL_BATCH_MAX_RAW)) {
        p = malloc((size_t)size);
        size_t got = 0;
        rc = p ? kl_io_pread(log->io, fd, p, (size_t)size, 0, &got) : -ENOMEM;
        if (rc == 0 && got != size)
            rc = -EIO;
    }
    kl_io_close(log->io, fd);
    if (rc < 0) {
        free(p);
        free(path);
        return kl_errf(kl_err_from_errno(-rc), "reading %s: %s", log->dir, strerror(-rc));
    }
    kl_slot s1;
    int complete = p && memcmp(p, REDO_MAGIC, 8) == 0 && kl_load32(p + 8) == REDO_VERSION &&
                   kl_load64(p + 32) <= KL_BATCH_MAX_RAW && redo_len(kl_load64(p + 32)) == size &&
                   kl_load64(p + size - 8) == XXH3_64bits(p, (size_t)size - 8) &&
                   kl_slot_decode(p + REDO_HEAD, &s1) == 0;
    if (complete && !kl_slot_trusted(&s1)) { /* whole, yet not ours: keep it, apply nothing */
        rc = kl_errf(KL_ECORRUPT, "%s: its new header slot's signature does not verify", path);
        complete = 0;
    }
    if (complete) { /* apply it; every step can be repeated after a crash */
        uint64_t first = kl_load64(p + 16), cut = kl_load64(p + 24), tree_want = 0;
        int tfd = -1;
        rc = redo_tree(log, s1.length, &tfd, &tree_want);
        if (rc == 0)
            rc = redo_segment(log, first, cut, s1.length);
        if (rc == 0)
            rc = drop_segments_after(log, first);
        if (rc == 0)
            rc = rewrite_end(log, first, cut, s1.fork, p + REDO_HEAD + KL_HDR_SLOT_BYTES,
                             (size_t)kl_load64(p + 32));
        if (rc == 0) {
            int e = log->io->v->truncate(log->io, tfd, tree_want);
            if (e == 0) {
                kl_io_op op = {.kind = KL_IO_OP_DATASYNC, .fd = tfd};
                e = kl_io_submit(log->io, &op, 1);
            }
            if (e < 0)
                rc = kl_errf(kl_err_from_errno(-e), "%s: %s", log->tree_path, strerror(-e));
        }
        kl_io_close(log->io, tfd);
        if (rc == 0) {
            int e = kl_io_sync_dir(log->io, log->seg_dir);
            rc = e < 0
                     ? kl_errf(kl_err_from_errno(-e), "syncing %s: %s", log->seg_dir, strerror(-e))
                     : 0;
        }
        if (rc == 0)
            rc = write_slots(log, &s1);
    }
    free(p);
    if (rc == 0) { /* done, or torn before anything changed: either way it goes */
        int e = log->io->v->unlink(log->io, path);
        if (e == 0)
            e = kl_io_sync_dir(log->io, log->dir);
        if (e < 0 && e != -ENOENT)
            rc = kl_errf(kl_err_from_errno(-e), "removing %s: %s", path, strerror(-e));
    }
    free(path);
    return rc < 0 ? kl_err_prefix(rc, "finishing the truncation of %s: ", log->dir) : 0;
}
