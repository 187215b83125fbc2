/*
 * commit.c - appending: framing, group commit, the commit I/O, syncs and
 * the interval flusher. The durability order is written here and nowhere
 * else (docs/DURABILITY.md explains why it is safe).
 *
 * Group commit: appenders frame their batch into the open buffer under `mu`
 * and wait for its ticket. Whoever finds no commit in flight takes the
 * commit role, swaps the buffers, and does the I/O without `mu`, while the
 * others frame the next buffer (their checksums and copies overlap the I/O
 * in flight). The I/O of one commit:
 *
 *   always, a writer:  write the batches (and wait: page cache only)
 *                      start [(write zeroed space ahead ->) fdatasync segment]
 *                      hash the leaves left to the commit, build the tree, sign
 *                      start [write tree nodes -> write header slot]  [write index]
 *                      (+ [start writeback of older tree nodes] every TREE_WB_BYTES)
 *                      wait for both
 *   always, at a checkpoint (every CKPT_BYTES, a roll, every commit of a replica):
 *                      write the batches, then
 *                      [fdatasync segment]
 *                      [write tree nodes -> fdatasync tree]
 *                      [write header slot -> fdatasync header]  [write index]
 *                      (+ [fsync segments/] [fdatasync old segment] on a roll);
 *                      then a writer's [write the other slot -> fdatasync header]
 *                      (the same state: write_twin);
 *                      a writer starts the first chain before its Merkle work,
 *                      as above; a replica checks its tree against its peer's
 *                      signature before it writes anything
 *   interval, never:   [write segment -> write tree nodes -> write header slot]
 *                      [write index], then, the length published: [write the
 *                      signed header slot]
 *
 * Under `always` a writer's commit is durable when its segment's sync
 * completes: its tree and slot are derived from the batches, and recovery
 * derives them again from a synced tail (recover.c). Its Merkle work runs
 * while that sync is in flight. A checkpoint's syncs run in parallel (one
 * round) and its slot becomes the anchor when they complete. Under the other
 * policies the slot is written only after its batches (marked `ordered`), so
 * a process killed mid-commit never leaves a slot that claims unwritten
 * bytes; a sync (the flusher every interval, kl_log_sync, close) later makes
 * the working slot the anchor. The header slot written is never the anchor.
 *
 * Fail-stop: any failed or short write or sync fails the handle for good.
 * A sync is never retried.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zstd.h>

#include "frame.h"
#include "log_internal.h"
#include "segment.h"
#include "util.h"

#define BUF_INITIAL_BYTES (1u << 20)
/* Appends of up to this many blocks keep their leaf hashes on the stack. */
#define LEAVES_ON_STACK 16

/*
 * A batch with at least this much data, lying back to back in the caller's
 * memory, is not copied into the commit buffer: its bytes are written from
 * where they are (the caller waits for the commit, so they stay put). Below
 * it an extra iovec costs more than the copy.
 */
#define LEND_MIN_BYTES (16u * 1024u)

/*
 * Under `always`, the active segment keeps this much zeroed, synced space
 * ahead of its batches: an fdatasync that only overwrites allocated,
 * initialized blocks changes no metadata and returns in about two thirds of
 * the time of one that grows the file (measured here: 95 vs 140-190 us), and
 * when many appenders share commits nearly every commit would grow it. The
 * space is added within a commit every PREALLOC_BYTES, cut away by recovery
 * and when the segment is sealed.
 */
#define PREALLOC_BYTES (1u << 20)
/*
 * A commit of at least this much data grows the file instead: the zeroed
 * space costs its bytes' flush once more, which for a small commit is far
 * less than a metadata update and for a big one far more (a commit of 1,000
 * records of 100 bytes waited about 650 us for its sync with the space added
 * every fifth commit, against about 320 us for the same bytes growing a file).
 */
#define PREALLOC_MAX_COMMIT (32u * 1024u)
#define ZERO_CHUNK_BYTES    (64u * 1024u)
/* The same for the tree file, which grows by 5 bytes a block (80 with low 0, tree.h). */
#define TREE_PREALLOC_BYTES (256u * 1024u)
static const uint8_t zero_chunk[ZERO_CHUNK_BYTES];

/*
 * A writer's commit under `always` syncs one file: its segment (after the
 * batches, the tree nodes and the working slot are written, in that order).
 * A device that serializes cache flushes makes the three syncs of a full
 * round cost 2.2-2.5 single ones (bench/probes/fsync_files.c). The tree and
 * the slot are derived from the batches: a power loss that takes them is
 * repaired by recovery, which re-reads the synced batches past the anchor,
 * hashes them into the tree and signs their state again (recover.c,
 * docs/DURABILITY.md). A full round (a checkpoint: segment, tree and slot
 * synced, the slot becomes the anchor; a writer's then goes into the other
 * slot too, write_twin) bounds that work: every CKPT_BYTES of segment, at
 * every roll, for a replica (it cannot sign again), and on close.
 */
#define CKPT_BYTES (32ull << 20)

/*
 * Between checkpoints the tree file's new nodes are sent to disk (not
 * synced) every TREE_WB_BYTES: a checkpoint's fdatasync of the tree then
 * finds little left to write. Without it the pages pile up, and when the
 * file stored every node (80 bytes a block) a checkpoint after 32 MiB of
 * small records flushed about 24 MiB of nodes at once: measured here, p99.9
 * of batch-1000 commits 22 ms with the pile, 2 ms without any checkpoint.
 */
#define TREE_WB_BYTES (1u << 20)

static int buf_reserve(kl_commit_buf *b, size_t need) {
    if (b->cap >= need)
        return 0;
    size_t cap = b->cap ? b->cap : BUF_INITIAL_BYTES;
    while (cap < need)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return kl_errf(KL_ENOMEM, "commit buffer of %zu bytes", cap);
    b->data = d;
    b->cap = cap;
    return 0;
}

/* Room for `n` more framed bytes in b->data; a pointer to them. NULL: no room for a piece. */
static uint8_t *buf_take(kl_commit_buf *b, size_t n) {
    kl_piece *last = b->npieces ? &b->pieces[b->npieces - 1] : NULL;
    if (last && !last->ext && last->off + last->len == b->ilen) {
        last->len += n;
    } else {
        if (b->npieces == KL_COMMIT_PIECES)
            return NULL;
        b->pieces[b->npieces++] = (kl_piece){NULL, b->ilen, n};
    }
    uint8_t *p = b->data + b->ilen;
    b->ilen += n;
    b->len += n;
    return p;
}

/* The caller's `n` bytes at ext, written in place (the caller waits for the commit). */
static void buf_lend(kl_commit_buf *b, const uint8_t *ext, size_t n) {
    KL_ASSERT(b->npieces < KL_COMMIT_PIECES);
    b->pieces[b->npieces++] = (kl_piece){ext, 0, n};
    b->len += n;
    b->lent_bytes += n;
}

/* Start the open buffer after the framing state. */
static void buf_reset(kl_log *log, kl_commit_buf *b, uint64_t seq) {
    b->len = 0;
    b->ilen = 0;
    b->npieces = 0;
    b->njobs = 0;
    b->lent_bytes = 0;
    b->frames = 0;
    b->seq = seq;
    b->seg = log->f_segp;
    b->prev = NULL;
    b->pos = log->f_pos;
    b->new_segment = 0;
    b->end_index = log->f_index;
    b->end_bytes = log->f_bytes;
    b->idx_upto = atomic_load(&log->f_segp->idx.count);
    b->start_index = log->f_index;
    b->nleaves = 0;
    if (b->cap > 4 * KL_COMMIT_BUF_BYTES) { /* give back what a huge batch took */
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

/*
 * The timestamp of the last committed batch (0 for an empty log): the
 * floor of the next one's. If that batch cannot be read, the last commit's
 * time, which was taken after the batch was framed.
 */
static uint64_t last_batch_ms(kl_log *log) {
    uint64_t len = atomic_load(&log->length), seg_first, pos;
    kl_batch_hdr h;
    if (len == 0)
        return 0;
    if (kl_batch_at(log, len - 1, &seg_first, &pos, &h) == 0)
        return h.timestamp_ms;
    kl_err_clear();
    return log->last.commit_ms;
}

int kl_commit_init(kl_log *log) {
    pthread_rwlock_rdlock(&log->segs_lock);
    log->f_segp = log->segs[log->nsegs - 1];
    log->c_segp = log->f_segp;
    log->f_seg = log->f_segp->first;
    pthread_rwlock_unlock(&log->segs_lock);
    log->f_index = atomic_load(&log->length);
    log->f_bytes = atomic_load(&log->byte_length);
    log->f_pos = atomic_load(&log->f_segp->end);
    log->f_ts = last_batch_ms(log);
    log->open_buf = &log->bufs[0];
    buf_reset(log, &log->bufs[0], 1);
    buf_reset(log, &log->bufs[1], 0);
    log->committed_seq = 0;
    log->last_sync_ns = kl_mono_ns();
    log->slotbuf = aligned_alloc(4096, KL_HDR_SLOT_BYTES);
    if (!log->slotbuf)
        return kl_errf(KL_ENOMEM, "header slot buffer");
    if (log->cfg.codec == KL_CODEC_ZSTD) {
        log->zcctx = ZSTD_createCCtx();
        if (!log->zcctx)
            return kl_errf(KL_ENOMEM, "zstd context");
    }
    kl_sealer_start(log);
    if (log->io->thread_safe) {
        log->sync_io = log->io;
    } else {
        int prc = kl_io_posix_new(&log->sync_io);
        if (prc < 0)
            return prc;
    }
    int rc = kl_io_open(log->io, log->seg_dir, O_RDONLY | O_DIRECTORY, 0, &log->segdir_fd);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", log->seg_dir, strerror(-rc));
    return 0;
}

void kl_commit_free(kl_log *log) {
    kl_sealer_stop(log);
    for (int i = 0; i < 2; i++) {
        free(log->bufs[i].data);
        free(log->bufs[i].leaves);
    }
    free(log->treebuf);
    free(log->tree_rows);
    free(log->scratch);
    free(log->slotbuf);
    ZSTD_freeCCtx(log->zcctx);
    kl_io_close(log->io, log->segdir_fd);
    log->segdir_fd = -1;
    for (size_t i = 0; i < log->nunsynced; i++) {
        kl_io_close(log->io, log->unsynced[i]->wfd);
        log->unsynced[i]->wfd = -1;
    }
    free(log->unsynced);
    log->unsynced = NULL;
    log->nunsynced = 0;
    if (log->sync_io && log->sync_io != log->io)
        kl_io_destroy(log->sync_io);
    log->sync_io = NULL;
}

/* Fail the handle for good (mu held). */
static void fail_handle(kl_log *log, int rc, const char *what) {
    if (log->failed)
        return;
    log->failed = 1;
    log->fail_code = rc == -ENOSPC ? KL_ENOSPC : KL_EIO;
    snprintf(log->fail_msg, sizeof log->fail_msg,
             "%s failed (%s); the log handle is closed to "
             "writes: reopen to recover",
             what, strerror(rc < 0 ? -rc : EIO));
    kl_follow_notify(log); /* followers stop waiting for commits that will not come */
}

/* A replica's blocks that do not make the tree its peer signed: fail-stop too. */
static void fail_verify(kl_log *log, const char *what) {
    if (log->failed)
        return;
    log->failed = 1;
    log->fail_code = KL_EVERIFY;
    snprintf(log->fail_msg, sizeof log->fail_msg,
             "%s: %s; the log handle is closed to writes: reopen to recover", what,
             kl_err_thread());
    kl_follow_notify(log);
}

static int failed_error(kl_log *log) {
    return kl_errf(log->fail_code, "%s", log->fail_msg);
}

/* Create the files of a new segment: the .log (its header is in the buffer) and the .idx. */
static int create_segment_files(kl_log *log, kl_seg *seg) {
    char path[4096];
    kl_seg_file(log, path, sizeof path, seg->first, "log");
    int rc = kl_io_open(log->io, path, O_RDWR | O_CREAT | O_TRUNC, 0644, &seg->wfd);
    if (rc < 0)
        return rc;
    kl_seg_file(log, path, sizeof path, seg->first, "idx");
    int krc = kl_oidx_write_active(&seg->idx, log->io, path, &seg->ifd);
    if (krc == 0) {
        kl_seg_file(log, path, sizeof path, seg->first, "tix");
        krc = kl_tidx_write_active(&seg->tix, log->io, path, &seg->tfd);
    }
    return krc == 0 ? 0 : krc == KL_ENOSPC ? -ENOSPC : -EIO;
}

/*
 * Seal the segment a roll left behind: its complete index, written once. Its
 * write descriptor is closed by commit_open, under mu, if its data is synced
 * (a sync's pre-flush reads and duplicates it under mu, without the commit
 * role), else kept for the next sync.
 */
static void seal_segment(kl_log *log, kl_seg *prev, uint64_t next_first) {
    char path[4096];
    kl_seg_file(log, path, sizeof path, prev->first, "idx");
    atomic_store(&prev->next, next_first);
    atomic_store(&prev->sealed, 1);
    kl_io_close(log->io, prev->ifd);
    prev->ifd = -1;
    kl_io_close(log->io, prev->tfd);
    prev->tfd = -1;
    /* Derived data: a failure here only costs a rebuild on a later open. */
    (void)kl_oidx_write_sealed(&prev->idx, log->io, path, atomic_load(&prev->end));
    kl_seg_file(log, path, sizeof path, prev->first, "tix");
    (void)kl_tidx_write_sealed(&prev->tix, log->io, path, atomic_load(&prev->end));
}

/*
 * Sealed segments no sync has covered yet keep their write descriptor, for
 * that sync, only while they are among the newest UNSYNCED_FDS: under
 * `never` they pile up until something syncs (with 64 KiB segments a writer
 * ran out of descriptors after 1,000 of them under a limit of 1,024, and
 * after 20,000 under 20,000). Older ones are closed, and the next sync opens
 * each by its path, syncs it and closes it, one at a time (sync_closed).
 */
#define UNSYNCED_FDS 8u

/* Remember a sealed segment no sync has covered yet (mu held). */
static int note_unsynced(kl_log *log, kl_seg *seg) {
    if (log->nunsynced == log->capunsynced) {
        size_t cap = log->capunsynced ? 2 * log->capunsynced : 8;
        kl_seg **v = realloc(log->unsynced, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        log->unsynced = v;
        log->capunsynced = cap;
    }
    log->unsynced[log->nunsynced++] = seg;
    log->dir_dirty = 1;
    if (log->nunsynced > UNSYNCED_FDS) { /* mu held: a pre-flush reads them under mu */
        kl_seg *old = log->unsynced[log->nunsynced - 1 - UNSYNCED_FDS];
        kl_io_close(log->io, old->wfd);
        old->wfd = -1;
    }
    return 0;
}

/*
 * Lent bytes at least this big are written beside their sealing (seal.c):
 * below it, waking the sealer costs more than the hashing it takes off.
 */
#define SEAL_BESIDE_BYTES (64u * 1024u)

/* Write the lent pieces of b, each in its place (the sealer computes their metas meanwhile). */
static int write_lent(kl_log *log, const kl_commit_buf *b, const kl_seg *seg) {
    kl_io_op ops[KL_COMMIT_PIECES];
    struct iovec iov[KL_COMMIT_PIECES];
    int n = 0;
    uint64_t off = b->pos;
    for (int i = 0; i < b->npieces; off += b->pieces[i].len, i++) {
        if (!b->pieces[i].ext)
            continue;
        iov[n] = (struct iovec){(void *)b->pieces[i].ext, (size_t)b->pieces[i].len};
        ops[n] = (kl_io_op){
            .kind = KL_IO_OP_WRITE, .fd = seg->wfd, .iov = &iov[n], .iovcnt = 1, .offset = off};
        n++;
    }
    KL_ASSERT(n > 0 && n <= KL_IO_MAX_OPS);
    return kl_io_submit(log->io, ops, n);
}

void kl_commit_sign(const kl_log *log, kl_slot *st) {
    uint8_t th[KL_HASH_BYTES];
    kl_slot_tree_hash(st, th);
    size_t sig_len = 0;
    kl_hc_sign(log->kind, log->sk, log->key, th, st->length, st->fork, st->sig, &sig_len);
    st->sig_len = (uint32_t)sig_len;
}

/*
 * A replica's commit: if st reaches the peer's signed length, take the
 * peer's signature, which holds only if our roots are the ones it signed.
 * 1: signed; 0: st is below that length (it stays unsigned); KL_EVERIFY.
 */
static int replica_sign(const kl_log *log, kl_slot *st) {
    const kl_signed_state *t = &log->target;
    if (!log->has_target || st->length != t->length)
        return 0;
    int same = st->nroots == t->nroots && st->fork == t->fork;
    for (size_t i = 0; same && i < t->nroots; i++)
        same = st->roots[i].index == t->roots[i].index && st->roots[i].size == t->roots[i].size &&
               memcmp(st->roots[i].hash, t->roots[i].hash, KL_HASH_BYTES) == 0;
    if (!same)
        return kl_errf(KL_EVERIFY,
                       "the blocks up to %llu do not hash to the tree the peer signed at that "
                       "length",
                       (unsigned long long)t->length);
    memcpy(st->sig, t->sig, t->sig_len);
    st->sig_len = (uint32_t)t->sig_len;
    return 1;
}

static void futex_wake_all(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void futex_wait(_Atomic uint32_t *word, uint32_t seen) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

/* Wake the appenders waiting for commits of this ticket's parity. */
static void wake_done(kl_log *log, uint64_t seq) {
    atomic_fetch_add_explicit(&log->done_word[seq & 1], 1, memory_order_release);
    futex_wake_all(&log->done_word[seq & 1]);
}

/*
 * Wake the appenders of the last commit, if not done yet (commit role).
 * When commits follow each other, the next one starts its segment's I/O
 * first: waking a group of threads costs tens of microseconds of the
 * committer's time, which is better spent while the disk works.
 */
static void pay_wake(kl_log *log) {
    if (log->wake_owed) {
        wake_done(log, log->wake_owed - 1);
        log->wake_owed = 0;
    }
}

/*
 * While a writer's segment syncs (tree_step beside kl_io_start), the Merkle
 * work gives its CPU up after about this many blocks. The kernel often
 * queues the io_uring worker that runs the sync on the committer's CPU, and
 * there it waits for the committer's time slice, so the sync and the hashing
 * ran one after the other (a commit of 1,000 x 100 B: about 330 us of sync
 * and 160 us of hashing took 495 us together, as long as the two in a row).
 * A sched_yield costs about a microsecond when nothing waits. Pieces of 64
 * did better than 16, 32, 256 or 1,024 (bench/compare/ANALYSIS.md).
 */
#define YIELD_BLOCKS 64u

/*
 * Add the buffer's leaves to the tree (commit role, without mu): the new
 * nodes go to log->treebuf, the new roots to st, and with `sign` their
 * signature too (else st is left unsigned, sig_len 0). The leaves left to
 * the commit are hashed here; with `yield` the CPU is given up on the way.
 * beside (or NULL) runs once, as soon as the sealer can start on the tree.
 */
static int build_tree(kl_log *log, kl_commit_buf *b, kl_slot *st, int sign, int yield,
                      kl_beside *beside, size_t *tree_bytes) {
    uint64_t base = kl_tree_count(b->start_index, log->tree_low);
    uint64_t nodes = kl_tree_count(b->end_index, log->tree_low) - base;
    size_t need = (size_t)nodes * KL_TREE_NODE_BYTES + KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES;
    if (log->treebuf_cap < need) {
        size_t cap = KL_MAX(need, 2 * log->treebuf_cap);
        uint8_t *t = realloc(log->treebuf, cap);
        if (!t)
            return -ENOMEM;
        log->treebuf = t;
        log->treebuf_cap = cap;
    }
    size_t rows = 0;
    for (size_t j = 0; j < b->nleaves; j++)
        rows = KL_MAX(rows, b->leaves[j].count);
    if (log->tree_rows_cap < rows) {
        size_t cap = KL_MAX(rows, 2 * log->tree_rows_cap);
        kl_node *r = realloc(log->tree_rows, cap * sizeof *r);
        if (!r)
            return -ENOMEM;
        log->tree_rows = r;
        log->tree_rows_cap = cap;
    }
    KL_ASSERT(log->tb.length == b->start_index);
    /*
     * Each append's blocks as complete subtrees, joined to the roots
     * (tree.h; kl_tree_grow builds the later half of a big append's
     * subtrees on the sealer thread); with `yield`, in pieces that end on
     * a multiple of YIELD_BLOCKS, the CPU given up between them. Where the blocks are
     * cut does not change a node: kl_treeb_join makes the parents that
     * join the pieces' spans, as it does for the appends of one commit.
     */
    uint64_t since_yield = 0;
    for (size_t j = 0; j < b->nleaves; j++) {
        kl_leaf_job *lj = &b->leaves[j];
        uint64_t first = log->tb.length, end = first + lj->count;
        for (uint64_t a = first; a < end;) {
            uint64_t e = yield ? KL_MIN(end, (a / YIELD_BLOCKS + 1) * YIELD_BLOCKS) : end;
            const kl_block *blocks = lj->blocks + (a - first);
            uint8_t *hashes = lj->hashes + (a - first) * KL_HASH_BYTES;
            kl_tree_grow(log, blocks, hashes, lj->deferred, (size_t)(e - a), base, log->treebuf,
                         log->tree_rows, beside);
            since_yield += e - a;
            if (yield && since_yield >= YIELD_BLOCKS) {
                sched_yield();
                since_yield = 0;
            }
            a = e;
        }
        lj->deferred = 0;
    }
    kl_beside_run(beside); /* if no kl_tree_grow ran it */
    KL_ASSERT(log->tb.length == b->end_index);
    *tree_bytes = (size_t)nodes * KL_TREE_NODE_BYTES;
    st->nroots = (uint32_t)log->tb.n;
    memcpy(st->roots, log->tb.roots, log->tb.n * sizeof *st->roots);
    st->sig_len = 0;
    memset(st->sig, 0, sizeof st->sig);
    if (sign) {
        if (yield && since_yield > 0)
            sched_yield();
        kl_commit_sign(log, st);
    }
    return 0;
}

/*
 * The commit's Merkle work (commit role, without mu): the leaves its
 * appenders left to it, the new nodes and roots, and the signature: a
 * writer's under `always`, or a replica's from its peer, which must match
 * (*bad_tree otherwise).
 */
static int tree_step(kl_log *log, kl_commit_buf *b, kl_slot *st, int sync, int yield,
                     kl_beside *beside, size_t *tree_bytes, int *bad_tree, const char **what) {
    *what = "building the tree";
    int rc = build_tree(log, b, st, sync && log->has_sk, yield, beside, tree_bytes);
    if (rc == 0 && !log->has_sk && replica_sign(log, st) < 0) {
        *bad_tree = 1;
        rc = KL_EVERIFY;
    }
    return rc;
}

/*
 * The I/O of one commit, and its tree_step. Returns 0 or -errno; *what
 * names the failing step, *bad_tree says a replica's roots were wrong.
 *
 * A writer's synced commit (`overlap`) starts its segment's write and sync
 * first and does the tree step while they run: only that sync makes the
 * commit durable, and the batch bytes do not depend on the tree. The nodes
 * and the slot follow in a second start. A writer's unsynced commit of big
 * lent batches (`beside`) writes them while the sealer seals them and
 * starts on the tree (seal.c), then takes its share of the tree. Any other
 * commit does the tree step first (a replica checks its peer's signature
 * before writing) and hands everything over in one submission.
 */
typedef struct lent_write {
    kl_log *log;
    const kl_commit_buf *b;
    const kl_seg *seg;
} lent_write;

static int write_lent_beside(void *arg) {
    const lent_write *w = arg;
    return write_lent(w->log, w->b, w->seg);
}

static int commit_io(kl_log *log, kl_commit_buf *b, kl_slot *st, int slot, int sync, int one_file,
                     int *bad_tree, const char **what) {
    kl_seg *seg = b->seg;
    int overlap = sync && log->has_sk;
    int beside = !sync && log->has_sk && log->sealer_on && b->njobs > 0 &&
                 b->lent_bytes >= SEAL_BESIDE_BYTES;
    size_t tree_bytes = 0;
    if (!overlap)
        pay_wake(log);
    int rc =
        overlap || beside ? 0 : tree_step(log, b, st, sync, 0, NULL, &tree_bytes, bad_tree, what);
    if (rc < 0)
        return rc;
    if (b->new_segment) {
        *what = "creating a segment";
        rc = create_segment_files(log, seg);
        if (rc < 0)
            return rc;
    }
    if (b->new_segment && b->prev->file_size > atomic_load(&b->prev->end)) {
        *what = "cutting the zeroed space of a sealed segment";
        rc = log->io->v->truncate(log->io, b->prev->wfd, atomic_load(&b->prev->end));
        if (rc < 0)
            return rc; /* the roll's sync of the old segment makes the cut durable */
    }
    int lent_first = 0; /* the lent pieces are already written */
    if (beside) {
        kl_sealer_post(log, b);
        lent_write w = {log, b, seg};
        kl_beside bs = {.fn = write_lent_beside, .arg = &w};
        rc = tree_step(log, b, st, sync, 0, &bs, &tree_bytes, bad_tree, what);
        kl_sealer_wait(log); /* even on error: the sealer reads the callers' bytes */
        if (rc < 0)
            return rc;
        if (bs.rc < 0) {
            *what = "writing a commit";
            return bs.rc;
        }
        lent_first = 1;
    } else if (b->njobs > 0) {
        if (!sync && log->sealer_on && b->lent_bytes >= SEAL_BESIDE_BYTES) {
            kl_sealer_post(log, b);
            *what = "writing a commit";
            rc = write_lent(log, b, seg);
            kl_sealer_wait(log); /* even on error: the sealer reads the callers' bytes */
            if (rc < 0)
                return rc;
            lent_first = 1;
        } else {
            kl_seal_run(b);
        }
    }
    struct iovec iov_seg[KL_COMMIT_PIECES];
    for (int i = 0; i < b->npieces; i++) {
        const kl_piece *pc = &b->pieces[i];
        iov_seg[i].iov_base = (void *)(pc->ext ? pc->ext : b->data + pc->off);
        iov_seg[i].iov_len = (size_t)pc->len;
    }
    struct iovec iov_zero[PREALLOC_BYTES / ZERO_CHUNK_BYTES];
    int nzero = 0;
    for (uint64_t z = b->zero_from; z < b->zero_to; z += ZERO_CHUNK_BYTES, nzero++)
        iov_zero[nzero] =
            (struct iovec){(void *)zero_chunk, (size_t)KL_MIN(ZERO_CHUNK_BYTES, b->zero_to - z)};
    kl_io_op seg_ops[KL_IO_MAX_OPS]; /* the segment's chain */
    int ns = 0;
    if (!lent_first) {
        seg_ops[ns++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                                   .link = 1,
                                   .fd = seg->wfd,
                                   .iov = iov_seg,
                                   .iovcnt = b->npieces,
                                   .offset = b->pos};
    } else { /* the buffer's own pieces, each in its place, before the slot */
        uint64_t off = b->pos;
        for (int i = 0; i < b->npieces; off += b->pieces[i].len, i++)
            if (!b->pieces[i].ext)
                seg_ops[ns++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                                           .link = 1,
                                           .fd = seg->wfd,
                                           .iov = &iov_seg[i],
                                           .iovcnt = 1,
                                           .offset = off};
    }
    if (sync) {
        /*
         * The batches go to the page cache first, here and whole: a slot is
         * written only after the bytes it names, so another process's
         * refresh (follow.c) always finds them. With io_uring this is an
         * inline pwritev; the sync after it is what takes the disk's time.
         */
        *what = "writing a commit's batches";
        seg_ops[ns - 1].link = 0;
        rc = kl_io_submit(log->io, seg_ops, ns);
        if (rc < 0)
            return rc;
        ns = 0;
    }
    if (nzero)
        seg_ops[ns++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                                   .link = 1,
                                   .fd = seg->wfd,
                                   .iov = iov_zero,
                                   .iovcnt = nzero,
                                   .offset = b->zero_from};
    if (sync)
        seg_ops[ns++] = (kl_io_op){.kind = KL_IO_OP_DATASYNC, .fd = seg->wfd};
    if (overlap) {
        *what = "syncing a commit's batches";
        rc = kl_io_start(log->io, seg_ops, ns);
        pay_wake(log);
        if (rc < 0)
            return kl_io_finish(log->io);
        rc = tree_step(log, b, st, sync, kl_io_async(log->io), NULL, &tree_bytes, bad_tree, what);
        if (rc < 0) {
            kl_io_finish(log->io); /* the batches' I/O is in flight: wait for it */
            return rc;
        }
    }

    kl_slot_encode(log->slotbuf, st);
    struct iovec iov_idx, iov_tix;
    struct iovec iov_hdr = {log->slotbuf, KL_HDR_SLOT_BYTES};
    struct iovec iov_tree = {log->treebuf, tree_bytes};
    uint64_t tree_end = kl_tree_bytes(b->end_index, log->tree_low);
    uint64_t tree_zero_from = KL_MAX(tree_end, log->tree_file_size), tree_zero_to = tree_zero_from;
    if (sync && !one_file && log->tree_file_size < tree_end + TREE_PREALLOC_BYTES / 2)
        tree_zero_to = tree_zero_from + TREE_PREALLOC_BYTES;
    struct iovec iov_tree_zero[TREE_PREALLOC_BYTES / ZERO_CHUNK_BYTES];
    int ntzero = 0;
    for (uint64_t z = tree_zero_from; z < tree_zero_to; z += ZERO_CHUNK_BYTES, ntzero++)
        iov_tree_zero[ntzero] = (struct iovec){(void *)zero_chunk, ZERO_CHUNK_BYTES};
    uint64_t idx_off = 0, tix_off = 0;
    /* without overlap the segment's chain comes first in the one submission */
    kl_io_op rest[KL_IO_MAX_OPS]; /* with overlap: the second start (seg_ops are in flight) */
    kl_io_op *ops = overlap ? rest : seg_ops;
    int n = overlap ? 0 : ns;
    if (n > 0 && !sync)
        ops[n - 1].link = 1; /* and the slot follows the batches in the same chain */
    if (tree_bytes)          /* most small commits complete no stored node (tree.h) */
        ops[n++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                              .link = 1,
                              .fd = log->tree_fd,
                              .iov = &iov_tree,
                              .iovcnt = 1,
                              .offset = kl_tree_bytes(b->start_index, log->tree_low)};
    if (sync && !one_file) { /* a full round: the nodes' and the slot's syncs in parallel */
        if (ntzero)          /* zeroed space ahead, so the sync below need not grow the file */
            ops[n++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                                  .link = 1,
                                  .fd = log->tree_fd,
                                  .iov = iov_tree_zero,
                                  .iovcnt = ntzero,
                                  .offset = tree_zero_from};
        ops[n++] = (kl_io_op){.kind = KL_IO_OP_DATASYNC, .fd = log->tree_fd};
    }
    /* the slot after the nodes it covers; synced only in a full round */
    ops[n++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                          .link = sync && !one_file,
                          .fd = log->hdr_fd,
                          .iov = &iov_hdr,
                          .iovcnt = 1,
                          .offset = (uint64_t)slot * KL_HDR_SLOT_BYTES};
    if (sync && !one_file) {
        ops[n++] = (kl_io_op){.kind = KL_IO_OP_DATASYNC, .fd = log->hdr_fd};
        if (b->new_segment) {
            ops[n++] = (kl_io_op){.kind = KL_IO_OP_FULLSYNC, .fd = log->segdir_fd};
            ops[n++] = (kl_io_op){.kind = KL_IO_OP_DATASYNC, .fd = b->prev->wfd};
        }
    }
    uint64_t wb_from = KL_MIN(log->tree_wb_from, tree_end);
    int writeback = one_file && tree_end - wb_from >= TREE_WB_BYTES;
    if (writeback) /* the nodes of earlier commits: this one's are written beside it */
        ops[n++] = (kl_io_op){.kind = KL_IO_OP_WRITEBACK,
                              .fd = log->tree_fd,
                              .offset = wb_from,
                              .nbytes = kl_tree_bytes(b->start_index, log->tree_low) - wb_from};
    if (kl_oidx_pending(&seg->idx, b->idx_upto, &iov_idx, &idx_off))
        ops[n++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                              .fd = seg->ifd,
                              .iov = &iov_idx,
                              .iovcnt = 1,
                              .offset = idx_off};
    uint64_t tix_upto = KL_MIN(b->idx_upto, kl_tidx_count(&seg->tix)); /* it may lag after damage */
    if (kl_tidx_pending(&seg->tix, tix_upto, &iov_tix, &tix_off))
        ops[n++] = (kl_io_op){.kind = KL_IO_OP_WRITE,
                              .fd = seg->tfd,
                              .iov = &iov_tix,
                              .iovcnt = 1,
                              .offset = tix_off};
    KL_ASSERT(n <= KL_IO_MAX_OPS);
    if (overlap) {
        *what =
            one_file ? "writing a commit and syncing its segment" : "writing and syncing a commit";
        kl_io_start(log->io, ops, n);
        rc = kl_io_finish(log->io);
    } else {
        *what = sync ? "writing and syncing a commit" : "writing a commit";
        rc = kl_io_submit(log->io, ops, n);
    }
    if (rc < 0)
        return rc;
    kl_oidx_written(&seg->idx, b->idx_upto);
    kl_tidx_written(&seg->tix, tix_upto);
    log->tree_file_size = KL_MAX(tree_zero_to, tree_end);
    if (writeback)
        log->tree_wb_from = kl_tree_bytes(b->start_index, log->tree_low);
    else if (sync && !one_file)
        log->tree_wb_from = tree_end; /* synced */
    if (b->new_segment)
        seal_segment(log, b->prev, seg->first);
    return 0;
}

/*
 * Give up the commit role (mu held). The first appender of each buffer is
 * that buffer's leader: it waits on cv_lead and commits the buffer when the
 * role is free. The others wait, without `mu`, on the futex word of their
 * ticket's parity, for their own commit only. So a finished commit wakes its
 * own appenders (who return without touching `mu`) and at most two leaders,
 * never the appenders of the next commit: on a busy machine those wake-ups
 * and the contention for `mu` cost more CPU than the commit's I/O.
 */
static void release_role(kl_log *log) {
    log->committing = 0;
    if (log->failed) {
        wake_done(log, 0);
        wake_done(log, 1);
    }
    /* the open buffer's leader, and a leader whose buffer someone else committed */
    pthread_cond_broadcast(&log->cv_lead);
    pthread_cond_broadcast(&log->cv);
}

/*
 * An appender that is not its buffer's leader waits for its ticket (mu held
 * on entry, released on return): outside `mu`, on the futex word.
 */
static int wait_done(kl_log *log, uint64_t seq) {
    _Atomic uint32_t *word = &log->done_word[seq & 1];
    uint32_t seen = atomic_load_explicit(word, memory_order_acquire);
    pthread_mutex_unlock(&log->mu);
    for (;;) {
        if (atomic_load_explicit(&log->committed_seq, memory_order_acquire) >= seq)
            return 0;
        if (atomic_load_explicit(&log->failed, memory_order_acquire)) {
            pthread_mutex_lock(&log->mu);
            int rc = failed_error(log);
            pthread_mutex_unlock(&log->mu);
            return rc;
        }
        futex_wait(word, seen);
        seen = atomic_load_explicit(word, memory_order_acquire);
    }
}

/* Decide the zeroed space this commit adds ahead of its batches (mu held). */
static void plan_prealloc(kl_log *log, kl_commit_buf *b, int sync) {
    uint64_t end = b->pos + b->len;
    uint64_t have = KL_MAX(end, b->seg->file_size);
    uint64_t want = KL_MIN(end + PREALLOC_BYTES / 2, log->cfg.segment_bytes);
    b->zero_from = b->zero_to = 0;
    if (!sync || have >= want || b->len >= PREALLOC_MAX_COMMIT)
        return;
    b->zero_from = have;
    b->zero_to = KL_MIN(have + PREALLOC_BYTES, log->cfg.segment_bytes);
}

/*
 * A writer's checkpoint, once its round completed: the same state, numbered
 * `seq`, written into the other slot (the old anchor) and synced, before its
 * callers are acknowledged, as kl_commit_sync does. Both slots then hold the
 * checkpoint, and recovery re-reads nothing before it. Without the twin the
 * other slot keeps the checkpoint before, and an open after a crash re-read
 * the span between the two (up to a segment or CKPT_BYTES): damage anywhere
 * in it refused the newer checkpoint, and data it covered was cut. The
 * twin's own write may be torn or lost: its checksum then fails or the slot
 * still holds the older checkpoint, and the checkpoint written before it is
 * durable (recover.c checks the span, and reports damage there, not cuts).
 */
static int write_twin(kl_log *log, const kl_slot *st, int slot, uint64_t seq) {
    KL_ASSERT(log->has_sk && seq > st->seq);
    kl_slot twin = *st;
    twin.seq = seq;
    twin.synced_end = twin.active_end; /* the round synced the segment */
    kl_slot_encode(log->slotbuf, &twin);
    return kl_io_write_sync(log->io, log->hdr_fd, log->slotbuf, KL_HDR_SLOT_BYTES,
                            (uint64_t)(1 - slot) * KL_HDR_SLOT_BYTES, 1);
}

/* Commit the open buffer, holding the commit role (mu held, returns with mu held). */
static void commit_open(kl_log *log) {
    kl_commit_buf *b = log->open_buf;
    KL_ASSERT(log->committing && b->frames > 0);
    log->open_buf = b == &log->bufs[0] ? &log->bufs[1] : &log->bufs[0];
    buf_reset(log, log->open_buf, b->seq + 1);
    int sync = log->cfg.fsync_mode == KL_FSYNC_ALWAYS;
    int one_file = sync && log->has_sk && !b->new_segment && log->ckpt_lag < CKPT_BYTES;
    plan_prealloc(log, b, sync);
    int slot = 1 - log->anchor;
    kl_slot st = log->last;
    st.seq = ++log->seq;
    /* not ORDERED under `always`, though a one-file commit writes the slot after its batches:
       recovery checks the newest span rather than trust the page cache, as for a full round */
    st.flags = sync ? 0 : KL_SLOT_ORDERED;
    kl_boot_id(st.boot_id);
    st.length = b->end_index;
    st.byte_length = b->end_bytes;
    st.active_segment = b->seg->first;
    st.active_end = b->pos + b->len;
    /* under `always` every commit before this one synced its segment, and a writable open
       synced the one it found: what lies before this commit's batches is durable */
    st.synced_end = sync && !b->new_segment ? b->pos : 0;
    st.commit_ms = kl_now_ms();
    int twin = sync && !one_file && log->has_sk; /* a writer's checkpoint: write_twin */
    uint64_t twin_seq = twin ? ++log->seq : 0;
    pthread_mutex_unlock(&log->mu);

    const char *what = "commit";
    int bad_tree = 0;
    int rc = commit_io(log, b, &st, slot, sync, one_file, &bad_tree, &what);
    if (rc == 0 && !bad_tree && twin) {
        what = "writing a checkpoint's second header slot";
        rc = write_twin(log, &st, slot, twin_seq);
    }

    pthread_mutex_lock(&log->mu);
    if (bad_tree) {
        fail_verify(log, "a replica's commit");
    } else if (rc < 0) {
        fail_handle(log, rc, what);
    } else {
        log->last = st;
        log->c_segp = b->seg;
        b->seg->file_size = KL_MAX(KL_MAX(b->seg->file_size, st.active_end), b->zero_to);
        if (one_file) { /* the batches are durable; the anchor stays until a full round */
            log->dirty = 1;
            log->ckpt_lag += b->len;
            log->last_sync_ns = kl_mono_ns();
        } else if (sync) {
            if (b->new_segment) { /* the old segment is synced and sealed (seal_segment) */
                kl_io_close(log->io, b->prev->wfd);
                b->prev->wfd = -1;
            }
            log->anchor = twin ? 1 - slot : slot; /* twin: both slots hold this state */
            log->dirty = 0;
            log->ckpt_lag = 0;
            log->last_sync_ns = kl_mono_ns();
        } else {
            log->dirty = 1;
            if (b->new_segment && note_unsynced(log, b->prev) < 0)
                fail_handle(log, -ENOMEM, "remembering an unsynced segment");
        }
        atomic_store_explicit(&b->seg->end, st.active_end, memory_order_release);
        atomic_store_explicit(&b->seg->next, st.length, memory_order_release);
        atomic_store_explicit(&log->byte_length, st.byte_length, memory_order_release);
        atomic_store_explicit(&log->last_commit_ms, st.commit_ms, memory_order_release);
        atomic_store_explicit(&log->length, st.length, memory_order_release);
        /* last: an appender that sees its ticket done returns and may read all of the above */
        atomic_store_explicit(&log->committed_seq, b->seq, memory_order_release);
        log->wake_owed = b->seq + 1; /* by the next commit of this lead, or when it ends */
        kl_follow_notify(log);
    }
}

/*
 * Sign the last commit's state and write it over the working slot, with the
 * next sequence number (commit role, mu held, returns with mu held). Under
 * `interval` and `never` a commit is published with an unsigned slot (the
 * signature is half of a small commit's cost) and signed here once the
 * commits in a row are done: the commit role is never given up with the last
 * slot unsigned, so a sync, an info or a proof always finds it signed. A
 * crash in between leaves an unsigned working slot, which is as safe as a
 * signed one (its checksum covers its roots; recovery checks them or their
 * batches as for any slot) and which the next writable open signs.
 */
static void sign_last(kl_log *log) {
    if (log->failed || log->last.sig_len != 0)
        return;
    kl_slot st = log->last;
    if (!log->has_sk) { /* a replica: signed only with the peer's signature at its length */
        int rc = replica_sign(log, &st);
        if (rc < 0)
            fail_verify(log, "a replica's last commit");
        if (rc <= 0)
            return;
    }
    st.seq = ++log->seq;
    int slot = 1 - log->anchor;
    pthread_mutex_unlock(&log->mu);
    /* A follower just woken may have been queued on this CPU: let it run before the signature */
    if (atomic_load_explicit(&log->len_waiters, memory_order_relaxed) > 0)
        sched_yield();
    if (log->has_sk)
        kl_commit_sign(log, &st);
    kl_slot_encode(log->slotbuf, &st);
    struct iovec iov = {log->slotbuf, KL_HDR_SLOT_BYTES};
    kl_io_op op = {.kind = KL_IO_OP_WRITE,
                   .fd = log->hdr_fd,
                   .iov = &iov,
                   .iovcnt = 1,
                   .offset = (uint64_t)slot * KL_HDR_SLOT_BYTES};
    int rc = kl_io_submit(log->io, &op, 1);
    pthread_mutex_lock(&log->mu);
    if (rc < 0) {
        fail_handle(log, rc, "writing the signed header slot");
        return;
    }
    log->last = st;
    log->signed_ns = kl_mono_ns();
    atomic_store(&log->sign_owed, 0);
}

/*
 * The signature of a writer's state under `interval` and `never` (commit
 * role, mu held). Signing is an Ed25519 signature and a second slot write,
 * about 25 us of CPU: a fifth of a commit of 1,000 x 100 B, and most of a
 * small one. Only the newest state's signature is ever used, so while
 * appends keep coming the commit role signs at most once per SIGN_LAG_NS
 * and leaves the rest owed: the sealer signs the newest state once the
 * commits pause (seal.c, IDLE_SIGN_NS), and anything that needs a signature
 * (kl_commit_last: info, proofs, verify, serving; a sync; close) signs it
 * first. A crash before that leaves the state unsigned, which recovery
 * accepts and signs (DURABILITY.md). Without a sealer, and for a replica
 * (whose signature is its peer's), every commit is signed at once.
 */
#define SIGN_LAG_NS (2u * 1000u * 1000u)

static void sign_or_owe(kl_log *log) {
    if (log->failed || log->last.sig_len != 0)
        return;
    if (!log->has_sk || !log->sealer_on || kl_mono_ns() - log->signed_ns >= SIGN_LAG_NS) {
        sign_last(log);
        return;
    }
    atomic_store(&log->sign_owed, 1);
    kl_sealer_owe_sign(log);
}

/* Whether a writable handle's last state waits for its signature (mu held). */
static int sign_wanted(const kl_log *log) {
    return !log->readonly && log->has_sk && !log->failed && log->last.sig_len == 0;
}

/* Sign the last state now if it waits for it and the role is free (mu held). */
static void sign_free(kl_log *log) {
    if (log->committing || !sign_wanted(log))
        return;
    log->committing = 1;
    sign_last(log);
    release_role(log);
}

void kl_commit_sign_idle(kl_log *log) {
    pthread_mutex_lock(&log->mu);
    sign_free(log);
    pthread_mutex_unlock(&log->mu);
}

int kl_replica_target(kl_log *log, const kl_signed_state *t) {
    if (log->readonly || log->has_sk)
        return kl_errf(KL_EINVAL, "%s is not a writable replica", log->dir);
    uint64_t idx[KL_MAX_ROOTS];
    size_t want = kl_ft_full_roots(t->length, idx);
    int ok = t->nroots == want &&
             t->sig_len == (log->kind == KL_CORE_COMPAT ? KL_STORED_SIG_COMPAT : KL_STORED_SIG_V1);
    for (size_t i = 0; ok && i < want; i++)
        ok = t->roots[i].index == idx[i];
    if (!ok)
        return kl_errf(KL_EINVAL,
                       "a signed state of length %llu with %zu roots, signature of %zu "
                       "bytes: not the shape of one",
                       (unsigned long long)t->length, t->nroots, t->sig_len);
    pthread_mutex_lock(&log->mu);
    while (log->committing) /* commit_open reads the target without mu */
        pthread_cond_wait(&log->cv, &log->mu);
    int rc = 0;
    if (log->failed)
        rc = failed_error(log);
    else if (t->fork != log->last.fork)
        rc = kl_errf(KL_EFORK, "the peer signed fork %llu; this replica is at fork %llu",
                     (unsigned long long)t->fork, (unsigned long long)log->last.fork);
    else if (t->length < log->f_index)
        rc = kl_errf(KL_EINVAL, "the peer signed length %llu; this replica already has %llu blocks",
                     (unsigned long long)t->length, (unsigned long long)log->f_index);
    if (rc == 0) {
        log->target = *t;
        log->has_target = 1;
        if (log->last.length == t->length && log->last.sig_len == 0) {
            log->committing = 1; /* already there: sign the state it has */
            sign_last(log);
            release_role(log);
            if (log->failed)
                rc = failed_error(log);
        }
    }
    pthread_mutex_unlock(&log->mu);
    return rc;
}

void kl_commit_last(kl_log *log, kl_slot *out) {
    pthread_mutex_lock(&log->mu);
    while (log->committing && log->last.sig_len == 0 && !log->failed)
        pthread_cond_wait(&log->cv, &log->mu);
    sign_free(log); /* an owed signature (sign_or_owe) */
    *out = log->last;
    pthread_mutex_unlock(&log->mu);
}

/*
 * Take the commit role and commit the open buffer (mu held, returns with mu
 * held). While the next buffer already holds frames, go on committing it
 * rather than waking its leader, which may wait a while for a CPU on a busy
 * machine: up to LEAD_EXTRA commits past the caller's own ticket. Then sign
 * the last of them (sign_last), and only then give up the role.
 */
#define LEAD_EXTRA 8

static void lead(kl_log *log, uint64_t my_seq) {
    KL_ASSERT(!log->committing);
    log->committing = 1;
    atomic_fetch_add(&log->leads, 1);
    int extra = 0;
    do {
        commit_open(log);
    } while (!log->failed && log->open_buf->frames > 0 &&
             (log->committed_seq < my_seq || extra++ < LEAD_EXTRA));
    pay_wake(log);
    sign_or_owe(log);
    release_role(log);
}

/* Begin a new segment at the framing position (mu held, open buffer empty). */
static int roll(kl_log *log) {
    kl_commit_buf *b = log->open_buf;
    KL_ASSERT(b->frames == 0 && b->len == 0);
    kl_seg *seg = kl_seg_new(log->f_index);
    if (!seg)
        return kl_errf(KL_ENOMEM, "new segment");
    int rc = kl_seg_index_init(seg, log->cfg.segment_bytes + KL_SEG_MAP_SLACK);
    if (rc == 0)
        rc = buf_reserve(b, KL_SEG_HEADER_BYTES);
    if (rc < 0) {
        kl_seg_free(log, seg);
        return rc;
    }
    atomic_store(&seg->end, KL_SEG_HEADER_BYTES);
    atomic_store(&seg->next, seg->first);
    atomic_store(&seg->idx_ready, 1);
    rc = kl_seg_add(log, seg);
    if (rc < 0) {
        kl_seg_free(log, seg);
        return rc;
    }
    uint8_t *hdr = buf_take(b, KL_SEG_HEADER_BYTES);
    kl_seg_header_encode(hdr, seg->first, kl_now_ms());
    kl_seg_header_set_fork(hdr, log->last.fork);
    b->new_segment = 1;
    b->prev = log->f_segp;
    b->seg = seg;
    b->pos = 0;
    b->idx_upto = 0;
    log->f_segp = seg;
    log->f_seg = seg->first;
    log->f_pos = KL_SEG_HEADER_BYTES;
    return 0;
}

/* Frame a zstd batch into the scratch area; *frame gets the bytes to store. */
static int frame_zstd(kl_log *log, const kl_block *blocks, size_t count, uint64_t data_bytes,
                      uint64_t ts_ms, const uint8_t **frame, size_t *len) {
    uint64_t raw = kl_batch_raw_len(count, data_bytes);
    size_t plain = (size_t)kl_batch_plain_bytes(count, data_bytes);
    size_t need = plain + kl_batch_zstd_bound(raw);
    if (log->scratch_cap < need) {
        uint8_t *s = realloc(log->scratch, need);
        if (!s)
            return kl_errf(KL_ENOMEM, "framing buffer of %zu bytes", need);
        log->scratch = s;
        log->scratch_cap = need;
    }
    kl_batch_frame(log->scratch, log->f_index, blocks, count, data_bytes, ts_ms);
    size_t z = kl_batch_compress(log->zcctx, log->cfg.codec_level, log->scratch,
                                 log->scratch + plain, need - plain);
    *frame = z ? log->scratch + plain : log->scratch;
    *len = z ? z : plain;
    return 0;
}

/* Room for one more leaf job in b. */
static int leaves_reserve(kl_commit_buf *b) {
    if (b->nleaves < b->capleaves)
        return 0;
    size_t cap = b->capleaves ? 2 * b->capleaves : 64;
    kl_leaf_job *v = realloc(b->leaves, cap * sizeof *v);
    if (!v)
        return kl_errf(KL_ENOMEM, "commit buffer's leaf list");
    b->leaves = v;
    b->capleaves = cap;
    return 0;
}

/* Frame one append into the open buffer (mu held). *seq receives its ticket. */
static int frame_append(kl_log *log, const kl_block *blocks, size_t count, uint64_t data_bytes,
                        const uint8_t *packed, uint8_t *hashes, int defer, const uint64_t *expect,
                        uint64_t *first, uint64_t *seq, int *leads) {
    const uint8_t *zframe = NULL;
    size_t n = (size_t)kl_batch_plain_bytes(count, data_bytes);
    /* Big batches whose bytes lie back to back are written from the caller's memory. */
    const uint8_t *lend =
        log->cfg.codec == KL_CODEC_NONE && data_bytes >= LEND_MIN_BYTES ? packed : NULL;
    for (;;) {
        if (log->failed)
            return failed_error(log);
        if (!log->has_sk && log->f_index + count > log->target.length)
            return kl_errf(KL_EINVAL,
                           "a replica appends only up to the length its peer signed (%llu); "
                           "%zu blocks at %llu go past it",
                           (unsigned long long)log->target.length, count,
                           (unsigned long long)log->f_index);
        if (expect && log->f_index != *expect)
            return kl_errf(KL_ECONFLICT, "expected length %llu, the log has %llu",
                           (unsigned long long)*expect, (unsigned long long)log->f_index);
        /* never before the previous batch: timestamps do not go backwards (FORMAT.md) */
        uint64_t ts = KL_MAX(kl_now_ms(), log->f_ts);
        if (log->cfg.codec == KL_CODEC_ZSTD && !zframe) {
            int rc = frame_zstd(log, blocks, count, data_bytes, ts, &zframe, &n);
            if (rc < 0)
                return rc;
        }
        kl_commit_buf *b = log->open_buf;
        int need_roll = log->f_pos > KL_SEG_HEADER_BYTES && log->f_pos + n > log->cfg.segment_bytes;
        int full = b->frames > 0 &&
                   (b->len + n > KL_COMMIT_BUF_BYTES || b->npieces > KL_COMMIT_PIECES - 3);
        if ((need_roll || full) && b->frames > 0) {
            if (!log->committing)
                lead(log, b->seq);
            else
                pthread_cond_wait(&log->cv, &log->mu);
            zframe = NULL; /* the framing index may have moved on: frame again */
            continue;
        }
        size_t meta = lend ? (size_t)kl_batch_meta_bytes(count, data_bytes) : n;
        int rc = need_roll ? roll(log) : 0;
        if (rc == 0)
            rc = buf_reserve(b, b->ilen + meta);
        if (rc == 0)
            rc = leaves_reserve(b);
        if (rc < 0)
            return rc;
        uint8_t *at = buf_take(b, meta);
        KL_ASSERT(at != NULL); /* `full` kept room for two pieces */
        if (zframe)
            memcpy(at, zframe, n);
        else if (lend) /* sealed at commit time: seal.c */
            b->jobs[b->njobs++] = (kl_seal_job){
                (uint64_t)(at - b->data), blocks, count, lend, data_bytes, log->f_index, ts};
        else
            kl_batch_frame(at, log->f_index, blocks, count, data_bytes, ts);
        if (lend)
            buf_lend(b, lend, (size_t)data_bytes);
        b->leaves[b->nleaves++] = (kl_leaf_job){hashes, blocks, count, defer};
        kl_seg_note(log->f_segp, log->f_index - log->f_seg, log->f_pos, ts);
        log->f_ts = ts;
        *first = log->f_index;
        *seq = b->seq;
        *leads = b->frames == 0; /* the buffer's first appender is its leader */
        b->frames++;
        log->f_pos += n;
        log->f_index += count;
        log->f_bytes += data_bytes;
        b->end_index = log->f_index;
        b->end_bytes = log->f_bytes;
        b->idx_upto = atomic_load(&log->f_segp->idx.count);
        return 0;
    }
}

/* The first block that breaks a limit, named precisely (the slow path of check_blocks). */
static int blocks_error(const kl_block *blocks, size_t count) {
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (blocks[i].size && !blocks[i].data)
            return kl_errf(KL_EINVAL, "block %zu has no data", i);
        if (blocks[i].size > KL_MAX_BLOCK_BYTES)
            return kl_errf(KL_ETOOBIG, "block %zu is %zu bytes (at most %u)", i, blocks[i].size,
                           KL_MAX_BLOCK_BYTES);
        total += blocks[i].size;
    }
    KL_ASSERT(total > KL_MAX_APPEND_BYTES);
    return kl_errf(KL_ETOOBIG, "one append of more than %u bytes", KL_MAX_APPEND_BYTES);
}

/*
 * Check the caller's blocks (limits, NULL data) and, in the same pass, find
 * whether their bytes lie back to back: *packed gets where they start, or
 * NULL. The pass only gathers facts (a big batch is a thousand blocks and
 * more); blocks_error names the culprit when one is wrong.
 */
static int check_blocks(const kl_block *blocks, size_t count, uint64_t *data_bytes,
                        const uint8_t **packed) {
    if (count > KL_MAX_APPEND_BLOCKS)
        return kl_errf(KL_ETOOBIG, "%zu blocks in one append (at most %u)", count,
                       KL_MAX_APPEND_BLOCKS);
    if (count && !blocks)
        return kl_errf(KL_EINVAL, "blocks is NULL");
    /* count <= 2^24 blocks of size < 2^64 / 2^24 cannot overflow a u64 sum that matters:
       a size above the block limit is caught by `largest` first */
    uint64_t total = 0, largest = 0;
    int nulls = 0, gaps = 0;
    const uint8_t *start = NULL, *next = NULL;
    for (size_t i = 0; i < count; i++) {
        size_t n = blocks[i].size;
        const uint8_t *p = blocks[i].data;
        total += n;
        largest = n > largest ? n : largest;
        nulls |= n && !p;
        if (n && p) { /* a NULL block is refused below; no pointer sums on it */
            gaps |= next && p != next;
            start = start ? start : p;
            next = p + n;
        }
    }
    if (nulls || largest > KL_MAX_BLOCK_BYTES || total > KL_MAX_APPEND_BYTES)
        return blocks_error(blocks, count);
    *data_bytes = total;
    *packed = gaps ? NULL : start;
    return 0;
}

static int append(kl_log *log, const kl_block *blocks, size_t count, const uint64_t *expect,
                  uint64_t *first_index) {
    if (!log)
        return kl_errf(KL_EINVAL, "log is NULL");
    kl_err_clear();
    if (log->readonly)
        return kl_log_err(log, kl_errf(KL_EREADONLY, "%s was opened read-only", log->dir));
    if (!log->has_sk && !log->has_target)
        return kl_log_err(
            log, kl_errf(KL_EREADONLY, "cannot append to %s: %s", log->dir, log->sk_problem));
    uint64_t data_bytes = 0;
    const uint8_t *packed = NULL;
    int rc = check_blocks(blocks, count, &data_bytes, &packed);
    if (rc < 0)
        return kl_log_err(log, rc);
    uint8_t small[KL_HASH_BYTES * LEAVES_ON_STACK];
    uint8_t *hashes = count <= LEAVES_ON_STACK ? small : malloc(KL_HASH_BYTES * count);
    if (!hashes)
        return kl_log_err(log, kl_errf(KL_ENOMEM, "leaf hashes of %zu blocks", count));
    /*
     * The leaves: with company, each appender hashes its own here, before
     * the group forms, in parallel with the others. A writer's appender
     * alone leaves them to its commit, which hashes them while the batches
     * sync under `always`, or with the sealer, chunk by chunk, beside their
     * write under the other policies (commit_io). Either is right whoever
     * commits.
     */
    uint32_t company = atomic_fetch_add_explicit(&log->appenders, 1, memory_order_relaxed);
    int defer =
        company == 0 && log->has_sk && (log->cfg.fsync_mode == KL_FSYNC_ALWAYS || log->sealer_on);
    if (!defer)
        kl_hash_leaves(log, blocks, count, hashes);
    uint64_t first = 0, seq = 0;
    int leads = 0;
    pthread_mutex_lock(&log->mu);
    if (count == 0) {
        rc = log->failed ? failed_error(log)
             : expect && *expect != log->f_index
                 ? kl_errf(KL_ECONFLICT, "expected length %llu, the log has %llu",
                           (unsigned long long)*expect, (unsigned long long)log->f_index)
                 : 0;
        first = log->f_index;
    } else {
        rc = frame_append(log, blocks, count, data_bytes, packed, hashes, defer, expect, &first,
                          &seq, &leads);
    }
    while (rc == 0 && count > 0 && log->committed_seq < seq) {
        if (log->failed)
            rc = failed_error(log);
        else if (!log->committing)
            lead(log, seq);
        else if (leads)
            pthread_cond_wait(&log->cv_lead, &log->mu);
        else
            break; /* wait_done below, without mu */
    }
    if (rc == 0 && count > 0 && log->committed_seq < seq)
        rc = wait_done(log, seq); /* releases mu */
    else
        pthread_mutex_unlock(&log->mu);
    atomic_fetch_sub_explicit(&log->appenders, 1, memory_order_relaxed);
    if (hashes != small)
        free(hashes);
    if (rc < 0)
        return kl_log_err(log, rc);
    if (first_index)
        *first_index = first;
    return 0;
}

int kl_log_append(kl_log *log, const kl_block *blocks, size_t count, uint64_t *first_index) {
    return append(log, blocks, count, NULL, first_index);
}

int kl_log_append_expect(kl_log *log, const kl_block *blocks, size_t count,
                         uint64_t expected_length, uint64_t *first_index) {
    return append(log, blocks, count, &expected_length, first_index);
}

/*
 * The sealed segments no sync covered whose descriptor was closed
 * (note_unsynced) and that no pre-flush synced through its path yet (mu
 * held): *out is malloc'ed (NULL if none), *n their number.
 */
static int closed_unsynced(kl_log *log, kl_seg ***out, size_t *n) {
    *out = NULL;
    *n = 0;
    size_t k = 0;
    for (size_t i = 0; i < log->nunsynced; i++)
        k += log->unsynced[i]->wfd < 0 && !log->unsynced[i]->path_synced;
    if (k == 0)
        return 0;
    kl_seg **v = malloc(k * sizeof *v);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < log->nunsynced; i++)
        if (log->unsynced[i]->wfd < 0 && !log->unsynced[i]->path_synced)
            v[(*n)++] = log->unsynced[i];
    *out = v;
    return 0;
}

/* Sync each of segs (closed_unsynced) through its path: opened, synced, closed. */
static int sync_closed(kl_log *log, kl_io *io, kl_seg *const *segs, size_t n) {
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char path[4096];
        int fd = -1;
        kl_seg_file(log, path, sizeof path, segs[i]->first, "log");
        rc = kl_io_open(io, path, O_RDONLY, 0, &fd);
        if (rc == 0) {
            kl_io_op op = {.kind = KL_IO_OP_DATASYNC, .fd = fd};
            rc = kl_io_submit(io, &op, 1);
        }
        kl_io_close(io, fd);
    }
    return rc;
}

/* fdatasync (and fsync for the directory) every fd, at most KL_IO_MAX_OPS per submission. */
static int sync_fds(kl_io *io, const int *fds, const uint8_t *full, size_t n) {
    kl_io_op ops[KL_IO_MAX_OPS];
    for (size_t i = 0; i < n;) {
        int k = 0;
        for (; k < KL_IO_MAX_OPS && i < n; k++, i++)
            ops[k] =
                (kl_io_op){.kind = full[i] ? KL_IO_OP_FULLSYNC : KL_IO_OP_DATASYNC, .fd = fds[i]};
        int rc = kl_io_submit(io, ops, k);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * What a sync must cover (mu held): the sealed segments no sync covered, the
 * last commit's segment, and (with_header) the header file and the segments
 * directory if a segment was made. *fds is malloc'ed.
 */
static int sync_targets(kl_log *log, int with_header, int **fds, uint8_t **full, size_t *n) {
    size_t cap = log->nunsynced + 4;
    *fds = malloc(cap * sizeof **fds);
    *full = calloc(cap, 1);
    if (!*fds || !*full) {
        free(*fds);
        free(*full);
        *fds = NULL;
        *full = NULL;
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < log->nunsynced; i++)
        if (log->unsynced[i]->wfd >= 0) /* the others: sync_closed */
            (*fds)[k++] = log->unsynced[i]->wfd;
    (*fds)[k++] = log->c_segp->wfd;
    (*fds)[k++] = log->tree_fd;
    if (with_header) {
        (*fds)[k++] = log->hdr_fd;
        if (log->dir_dirty) {
            (*full)[k] = 1;
            (*fds)[k++] = log->segdir_fd;
        }
    }
    *n = k;
    return 0;
}

/*
 * The pre-flush of a sync is repeated while appends wrote more than
 * PREFLUSH_SMALL during the last one, up to PREFLUSH_PASSES times: the final
 * round, which holds the commit role and so stops appends, then only syncs
 * what was written during a short flush. Under `interval` with a busy writer
 * one pre-flush of a second's data takes a few hundred milliseconds, and a
 * final round syncing what came in meanwhile stopped every append for 50 to
 * 80 ms of each second.
 */
#define PREFLUSH_SMALL  (4ull << 20)
#define PREFLUSH_PASSES 4

/*
 * Make every acknowledged append durable and the working slot the anchor.
 * First the data is flushed without the commit role (appends go on), then,
 * holding the role, one round syncs what was written meanwhile and the
 * header. The working slot was written after its batches, so once that
 * round completes it describes only durable bytes.
 */
int kl_commit_sync(kl_log *log, int final) {
    (void) final;
    pthread_mutex_lock(&log->sync_mu);
    pthread_mutex_lock(&log->mu);
    int rc = 0, *fds = NULL;
    uint8_t *full = NULL;
    size_t n = 0;
    if (log->failed) {
        rc = failed_error(log);
        goto out_locked;
    }
    if (!log->dirty)
        goto out_locked;
    for (int pass = 0; rc == 0 && !log->failed && pass < PREFLUSH_PASSES; pass++) {
        kl_seg **closed = NULL;
        size_t nclosed = 0;
        rc = closed_unsynced(log, &closed, &nclosed);
        if (rc == 0 && nclosed > 0) { /* sealed: nothing writes them any more */
            pthread_mutex_unlock(&log->mu);
            rc = sync_closed(log, log->sync_io, closed, nclosed);
            pthread_mutex_lock(&log->mu);
            for (size_t i = 0; rc == 0 && i < nclosed; i++)
                closed[i]->path_synced = 1;
        }
        free(closed);
        if (rc == 0)
            rc = sync_targets(log, 0, &fds, &full, &n);
        /* The pre-flush runs without mu, and a roll's commit meanwhile closes the descriptor
           of the segment it sealed (commit_open): it syncs duplicates of its own, made here
           under mu. Out of descriptors, it leaves the work to the final round. */
        size_t ndup = 0;
        while (rc == 0 && ndup < n && (fds[ndup] = fcntl(fds[ndup], F_DUPFD_CLOEXEC, 0)) >= 0)
            ndup++;
        int skip = rc == 0 && ndup < n;
        uint64_t from = atomic_load_explicit(&log->byte_length, memory_order_relaxed);
        pthread_mutex_unlock(&log->mu);
        if (rc == 0 && !skip) /* the pre-flush: its failure fails the handle like any sync's */
            rc = sync_fds(log->sync_io, fds, full, n);
        for (size_t i = 0; i < ndup; i++)
            close(fds[i]);
        free(fds);
        free(full);
        fds = NULL;
        full = NULL;
        pthread_mutex_lock(&log->mu);
        if (atomic_load_explicit(&log->byte_length, memory_order_relaxed) - from < PREFLUSH_SMALL)
            break;
    }
    for (;;) { /* the state synced is a signed one: sign an owed signature first */
        while (log->committing)
            pthread_cond_wait(&log->cv, &log->mu);
        if (rc < 0 || !sign_wanted(log))
            break;
        sign_free(log);
    }
    if (rc == 0 && log->failed)
        rc = -EIO;
    kl_seg **closed = NULL;
    size_t nclosed = 0;
    if (rc == 0)
        rc = sync_targets(log, 1, &fds, &full, &n);
    if (rc == 0)
        rc = closed_unsynced(log, &closed, &nclosed);
    if (rc < 0) {
        free(fds);
        free(full);
        goto fail;
    }
    log->committing = 1;
    int slot = 1 - log->anchor;
    size_t synced_segments = log->nunsynced;
    kl_slot twin = log->last;
    twin.seq = ++log->seq;
    twin.synced_end = twin.active_end; /* written once the sync below covered the segment */
    pthread_mutex_unlock(&log->mu);
    rc = sync_closed(log, log->io, closed, nclosed); /* before the header's sync */
    if (rc == 0)
        rc = sync_fds(log->io, fds, full, n);
    free(closed);
    free(fds);
    free(full);
    /* The working slot is durable now. Write the same state into the other slot too,
       so the two never drift apart (an old slot would make every open sync, and
       after a reboot re-check, every segment written since). */
    if (rc == 0) {
        kl_slot_encode(log->slotbuf, &twin);
        rc = kl_io_write_sync(log->io, log->hdr_fd, log->slotbuf, KL_HDR_SLOT_BYTES,
                              (uint64_t)(1 - slot) * KL_HDR_SLOT_BYTES, 1);
    }
    pthread_mutex_lock(&log->mu);
    if (rc < 0)
        fail_handle(log, rc, "syncing");
    release_role(log);
    if (rc < 0)
        goto fail;
    log->anchor = 1 - slot; /* the twin: both slots hold the same durable state */
    log->dirty = 0;
    log->ckpt_lag = 0;
    log->dir_dirty = 0;
    log->last_sync_ns = kl_mono_ns();
    KL_ASSERT(synced_segments == log->nunsynced); /* only commits add to it, and none ran */
    for (size_t i = 0; i < log->nunsynced; i++) {
        kl_io_close(log->io, log->unsynced[i]->wfd);
        log->unsynced[i]->wfd = -1;
        log->unsynced[i]->path_synced = 0;
    }
    log->nunsynced = 0;
    goto out_locked;
fail:
    if (!log->failed)
        fail_handle(log, rc, "syncing");
    rc = failed_error(log);
out_locked:
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->sync_mu);
    return rc;
}

/*
 * Write n bytes at off of the tree file outside any commit (kl_log_repair_tree),
 * and fdatasync it if sync: holding the commit role, so that no commit uses the
 * backend meanwhile (appends wait for it). A failure fails the handle, as one on
 * the commit path does: what the file holds after a failed write or sync is
 * not known, and a sync is never retried.
 */
int kl_commit_tree_write(kl_log *log, const void *p, size_t n, uint64_t off, int sync) {
    pthread_mutex_lock(&log->mu);
    while (log->committing)
        pthread_cond_wait(&log->cv, &log->mu);
    int rc = 0;
    if (log->failed) {
        rc = failed_error(log);
        pthread_mutex_unlock(&log->mu);
        return rc;
    }
    log->committing = 1;
    pthread_mutex_unlock(&log->mu);
    rc = kl_io_write_sync(log->io, log->tree_fd, p, n, off, sync);
    pthread_mutex_lock(&log->mu);
    if (rc < 0)
        fail_handle(log, rc, "rewriting the tree file");
    release_role(log);
    if (rc < 0)
        rc = failed_error(log);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

/* On close: cut the zeroed space ahead of the batches, so the files hold the log only. */
int kl_commit_trim(kl_log *log) {
    uint64_t tree_end = kl_tree_bytes(log->last.length, log->tree_low);
    if (!log->failed && log->tree_file_size > tree_end) {
        int rc = log->io->v->truncate(log->io, log->tree_fd, tree_end);
        if (rc == 0) {
            kl_io_op op = {.kind = KL_IO_OP_DATASYNC, .fd = log->tree_fd};
            rc = kl_io_submit(log->io, &op, 1);
        }
        if (rc < 0)
            return kl_errf(kl_err_from_errno(-rc), "cutting the zeroed space of %s: %s",
                           log->tree_path, strerror(-rc));
        log->tree_file_size = tree_end;
    }
    kl_seg *seg = log->c_segp;
    uint64_t end = atomic_load(&seg->end);
    if (log->failed || seg->wfd < 0 || seg->file_size <= end)
        return 0;
    int rc = log->io->v->truncate(log->io, seg->wfd, end);
    if (rc == 0) {
        kl_io_op op = {.kind = KL_IO_OP_DATASYNC, .fd = seg->wfd};
        rc = kl_io_submit(log->io, &op, 1);
    }
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "cutting the zeroed space of the active segment: %s",
                       strerror(-rc));
    seg->file_size = end;
    return 0;
}

int kl_log_sync(kl_log *log) {
    if (!log)
        return kl_errf(KL_EINVAL, "log is NULL");
    if (log->readonly)
        return 0;
    int rc = kl_commit_sync(log, 0);
    return rc < 0 ? kl_log_err(log, rc) : 0;
}

/* The interval policy's flusher: syncs when commits have waited interval_ms. */
static void *flusher_main(void *arg) {
    kl_log *log = arg;
    uint64_t interval_ns = (uint64_t)log->cfg.fsync_interval_ms * 1000000u;
    pthread_mutex_lock(&log->mu);
    while (!log->closing && !log->failed) {
        uint64_t now = kl_mono_ns();
        uint64_t due = log->last_sync_ns + interval_ns;
        if (log->dirty && now >= due) {
            pthread_mutex_unlock(&log->mu);
            kl_commit_sync(log, 0);
            pthread_mutex_lock(&log->mu);
            continue;
        }
        uint64_t wait_ns = log->dirty ? due - now : interval_ns;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + wait_ns;
        ts.tv_sec = (time_t)(t / 1000000000u);
        ts.tv_nsec = (long)(t % 1000000000u);
        pthread_cond_timedwait(&log->flush_cv, &log->mu, &ts);
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

int kl_flusher_start(kl_log *log) {
    if (log->readonly || log->cfg.fsync_mode != KL_FSYNC_INTERVAL)
        return 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log->flush_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&log->flusher, NULL, flusher_main, log) != 0)
        return kl_errf(KL_ENOMEM, "starting the interval flusher thread");
    log->flusher_on = 1;
    return 0;
}

void kl_flusher_stop(kl_log *log) {
    if (!log->flusher_on)
        return;
    pthread_mutex_lock(&log->mu);
    log->closing = 1;
    pthread_cond_broadcast(&log->flush_cv);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->flusher, NULL);
    pthread_cond_destroy(&log->flush_cv);
    log->flusher_on = 0;
}
