/*
 * read.c - finding and reading blocks: the segment table, the lazy mapping
 * and indexing of segments, kl_log_get and the iterator.
 *
 * get(i): binary search of the segment table, binary search of that
 * segment's sparse index, then a walk over at most about
 * KL_IDX_INTERVAL_BYTES of batch headers in the mapped file. A random get of
 * an uncompressed batch checks the 64-byte header and the block's own
 * 32-bit check, not the whole batch body; the iterator checks every body.
 *
 * Nothing is served that failed a check. A damaged batch header makes its
 * own blocks unreadable (KL_ECORRUPT names that range): the batches after
 * it are found again (kl_batch_resync, resync.c). Where they cannot be
 * (damage wider than one header), the blocks from it up to the next index
 * entry are reported instead. Every other block stays readable.
 *
 * What a reader would get wrong: the mapping of the active segment is
 * larger than the file (it covers the biggest the segment can become), so
 * every access is bounded by the segment's committed `end`, never by the
 * mapping's length; and no block at or past the segment's `bad_from` is read
 * in place, since there `end` may lie past the file (an active segment cut
 * short keeps its slot's end on a read-only open) and a read past the file's
 * last page is a SIGBUS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "frame.h"
#include "log_internal.h"
#include "segment.h"
#include "util.h"

/* Entries tried before falling back to the start of the segment. */
#define ENTRY_RETRIES 4

struct kl_iter {
    kl_log *log;
    uint64_t next;      /* the next block to return */
    uint64_t to;        /* exclusive end, or UINT64_MAX */
    kl_seg *seg;        /* the segment of the current batch */
    uint64_t pos;       /* the current batch's position */
    kl_batch_hdr h;     /* the current batch (valid if have) */
    const uint8_t *raw; /* its raw body */
    int have;
    uint8_t *zraw; /* decompressed body of a zstd batch */
    size_t zcap;
    void *zdctx;
};

void kl_seg_file(const kl_log *log, char *out, size_t cap, uint64_t first, const char *ext) {
    kl_seg_path(out, cap, log->seg_dir, first, ext);
}

kl_seg *kl_seg_new(uint64_t first) {
    kl_seg *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->first = first;
    s->bad_from = UINT64_MAX;
    s->wfd = -1;
    s->ifd = -1;
    s->tfd = -1;
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

void kl_seg_free(kl_log *log, kl_seg *s) {
    if (!s)
        return;
    if (s->map)
        log->io->v->unmap(log->io, s->map, s->map_len);
    kl_oidx_free(&s->idx, log->io);
    kl_tidx_free(&s->tix, log->io);
    kl_io_close(log->io, s->wfd);
    kl_io_close(log->io, s->ifd);
    kl_io_close(log->io, s->tfd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int kl_seg_add(kl_log *log, kl_seg *s) {
    pthread_rwlock_wrlock(&log->segs_lock);
    int rc = 0;
    KL_ASSERT(log->nsegs == 0 || log->segs[log->nsegs - 1]->first < s->first);
    if (log->nsegs == log->capsegs) {
        size_t cap = log->capsegs ? log->capsegs * 2 : 16;
        kl_seg **v = realloc(log->segs, cap * sizeof *v);
        if (!v) {
            rc = kl_errf(KL_ENOMEM, "segment table");
        } else {
            log->segs = v;
            log->capsegs = cap;
        }
    }
    if (rc == 0)
        log->segs[log->nsegs++] = s;
    pthread_rwlock_unlock(&log->segs_lock);
    return rc;
}

kl_seg *kl_seg_find(kl_log *log, uint64_t index) {
    size_t lo = 0, hi = log->nsegs;
    if (hi == 0 || log->segs[0]->first > index)
        return NULL;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (log->segs[mid]->first <= index)
            lo = mid;
        else
            hi = mid;
    }
    return log->segs[lo];
}

void kl_read_free(kl_log *log) {
    for (size_t i = 0; i < log->nsegs; i++)
        kl_seg_free(log, log->segs[i]);
    free(log->segs);
    log->segs = NULL;
    log->nsegs = log->capsegs = 0;
    free(log->zraw);
    ZSTD_freeDCtx(log->zdctx);
}

static int seg_error(const kl_seg *s, uint64_t pos, uint64_t from, uint64_t to) {
    char why[256];
    snprintf(why, sizeof why, "%s", kl_err_thread());
    if (to > from + 1)
        return kl_errf(KL_ECORRUPT, "segment %020llu.log, offset %llu: %s (blocks %llu..%llu)",
                       (unsigned long long)s->first, (unsigned long long)pos, why,
                       (unsigned long long)from, (unsigned long long)(to - 1));
    return kl_errf(KL_ECORRUPT, "segment %020llu.log, offset %llu: %s (block %llu)",
                   (unsigned long long)s->first, (unsigned long long)pos, why,
                   (unsigned long long)from);
}

int kl_seg_ensure_map(kl_log *log, kl_seg *s) {
    if (atomic_load_explicit(&s->map_ready, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&s->mu);
    int rc = 0, fd = -1;
    if (atomic_load(&s->map_ready))
        goto out;
    char path[4096];
    kl_seg_file(log, path, sizeof path, s->first, "log");
    rc = kl_io_open(log->io, path, O_RDONLY, 0, &fd);
    uint64_t size = 0;
    if (rc == 0)
        rc = log->io->v->size(log->io, fd, &size);
    if (rc < 0) {
        rc = kl_errf(rc == -ENOENT ? KL_ECORRUPT : kl_err_from_errno(-rc), "%s: %s", path,
                     strerror(-rc));
        goto out;
    }
    int sealed = atomic_load(&s->sealed);
    size_t len = sealed ? (size_t)size : (size_t)(log->cfg.segment_bytes + KL_SEG_MAP_SLACK);
    if (len < KL_SEG_HEADER_BYTES) {
        rc = kl_errf(KL_ECORRUPT, "%s is only %llu bytes", path, (unsigned long long)size);
        goto out;
    }
    const void *m = NULL;
    rc = log->io->v->map(log->io, fd, len, &m);
    if (rc < 0) {
        rc = kl_errf(kl_err_from_errno(-rc), "mapping %s: %s%s", path, strerror(-rc),
                     rc == -ENOMEM ? " (a handle maps every segment it reads, one mapping each: "
                                     "with many small segments the kernel's vm.max_map_count "
                                     "may be the limit; raise it, or use bigger segments)"
                                   : "");
        goto out;
    }
    s->map = m;
    s->map_len = len;
    if (size < KL_SEG_HEADER_BYTES || kl_seg_header_decode(s->map, (size_t)size, s->first) < 0) {
        rc = kl_err_prefix(KL_ECORRUPT, "%s: ", path);
        log->io->v->unmap(log->io, s->map, s->map_len);
        s->map = NULL;
        goto out;
    }
    if (kl_seg_header_fork(s->map) > log->fork) { /* rewritten by a later truncation */
        rc = kl_errf(KL_ECORRUPT,
                     "%s was rewritten by a truncation (fork %llu) after this handle opened the "
                     "log at fork %llu: reopen the log",
                     path, (unsigned long long)kl_seg_header_fork(s->map),
                     (unsigned long long)log->fork);
        log->io->v->unmap(log->io, s->map, s->map_len);
        s->map = NULL;
        goto out;
    }
    if (sealed && atomic_load(&s->end) == 0)
        atomic_store(&s->end, size); /* until the index says where the batches end */
    atomic_store_explicit(&s->map_ready, 1, memory_order_release);
out:
    kl_io_close(log->io, fd);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The batch header at pos, wholly below limit. */
static int map_batch(const kl_seg *s, uint64_t pos, uint64_t limit, kl_batch_hdr *h) {
    if (pos + KL_BATCH_HEADER_BYTES > limit)
        return kl_errf(KL_ECORRUPT, "batch header past the end of the segment");
    int rc = kl_batch_hdr_decode(s->map + pos, (size_t)(limit - pos), h);
    if (rc < 0)
        return rc;
    if (pos + kl_batch_frame_len(h) > limit)
        return kl_errf(KL_ECORRUPT, "batch runs past the end of the segment");
    return 0;
}

static int map_src_header(void *ctx, uint64_t pos, uint64_t limit, kl_batch_hdr *h) {
    return map_batch(ctx, pos, limit, h);
}

static int map_src_view(void *ctx, uint64_t pos, size_t n, const uint8_t **out, size_t *got) {
    const kl_seg *s = ctx;
    *out = s->map + pos; /* kl_batch_resync views only below its limit, in the file */
    *got = n;
    return 0;
}

int kl_seg_resync(kl_seg *s, uint64_t pos, uint64_t at, uint64_t to_pos, uint64_t to_index,
                  uint64_t limit, uint64_t *pos_out, uint64_t *at_out) {
    kl_batch_src src = {map_src_header, map_src_view, s};
    return kl_batch_resync(&src, pos, at, to_pos, to_index, limit, pos_out, at_out);
}

/*
 * Walk a sealed segment's batches from (pos, index) to block `next`, noting
 * index entries; *end receives where the batches end. Past a damaged header
 * the walk goes on at the batch after it (kl_batch_resync); if that cannot
 * be found, *bad gets the first block that cannot be reached.
 */
static void walk_sealed(kl_seg *s, uint64_t pos, uint64_t index, uint64_t limit, uint64_t *end,
                        uint64_t *bad) {
    uint64_t next = atomic_load(&s->next);
    *bad = UINT64_MAX;
    while (index < next) {
        kl_batch_hdr h;
        if (map_batch(s, pos, limit, &h) < 0 || h.first_index != index || index + h.count > next) {
            /* over a mapping the search has no I/O to fail and allocates nothing */
            if (kl_seg_resync(s, pos, index, UINT64_MAX, next, limit, &pos, &index) == 1)
                continue; /* only the damaged batch's blocks are left out of the index */
            *bad = index;
            break;
        }
        kl_seg_note(s, index - s->first, pos, h.timestamp_ms);
        pos += kl_batch_frame_len(&h);
        index += h.count;
    }
    *end = pos;
}

/* Does the saved sealed index end exactly where the batches do? */
static int sealed_index_consistent(kl_seg *s, uint64_t end, uint64_t limit) {
    uint64_t n = atomic_load(&s->idx.count);
    uint64_t rel, pos;
    kl_oidx_entry(&s->idx, n - 1, &rel, &pos);
    uint64_t index = s->first + rel, next = atomic_load(&s->next);
    if (end > limit)
        return 0;
    while (index < next) {
        kl_batch_hdr h;
        if (map_batch(s, pos, end, &h) < 0 || h.first_index != index)
            return 0;
        pos += kl_batch_frame_len(&h);
        index += h.count;
    }
    return index == next && pos == end;
}

static int build_sealed_index(kl_log *log, kl_seg *s, const char *path, uint64_t fsize) {
    int rc = kl_oidx_init(&s->idx, s->first, fsize + KL_IDX_INTERVAL_BYTES);
    if (rc < 0)
        return rc;
    int sealed_ok;
    kl_oidx_load(&s->idx, log->io, path, fsize, &sealed_ok);
    uint64_t pos = KL_SEG_HEADER_BYTES, index = s->first;
    uint64_t n = atomic_load(&s->idx.count);
    if (n > 0) { /* trust the saved entries up to the last that checks out */
        uint64_t rel, p;
        kl_oidx_entry(&s->idx, n - 1, &rel, &p);
        kl_batch_hdr h;
        if (map_batch(s, p, fsize, &h) == 0 && h.first_index == s->first + rel) {
            pos = p;
            index = s->first + rel;
        }
        kl_oidx_cut(&s->idx, index == s->first ? 0 : pos + 1);
    }
    uint64_t end, bad;
    walk_sealed(s, pos, index, fsize, &end, &bad);
    kl_seg_mark_bad(s, bad, end);
    atomic_store(&s->end, bad == UINT64_MAX ? end : fsize);
    if (bad == UINT64_MAX && !log->readonly)
        (void)kl_oidx_write_sealed(&s->idx, log->io, path, end); /* derived; best effort */
    return 0;
}

/* A sealed segment's index: the saved one if it checks out, else rebuilt. */
int kl_seg_ensure_idx(kl_log *log, kl_seg *s) {
    if (atomic_load_explicit(&s->idx_ready, memory_order_acquire))
        return 0;
    int rc = kl_seg_ensure_map(log, s);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->idx_ready))
        goto out;
    char path[4096];
    kl_seg_file(log, path, sizeof path, s->first, "idx");
    uint64_t fsize = s->map_len, end = 0;
    if (kl_oidx_map_sealed(&s->idx, log->io, path, s->first, &end) == 0) {
        if (sealed_index_consistent(s, end, fsize)) {
            atomic_store(&s->end, end);
            goto ready;
        }
        kl_oidx_free(&s->idx, log->io);
    }
    rc = build_sealed_index(log, s, path, fsize);
    if (rc < 0)
        goto out;
ready:
    atomic_store_explicit(&s->idx_ready, 1, memory_order_release);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The first index entry past `pos` below block `next`: 1 and its place, or 0 if none. */
static int next_entry(const kl_seg *s, uint64_t pos, uint64_t next, uint64_t *to_pos,
                      uint64_t *to_index) {
    uint64_t n = atomic_load_explicit(&s->idx.count, memory_order_acquire);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t rel, p;
        kl_oidx_entry(&s->idx, i, &rel, &p);
        if (p > pos && s->first + rel < next) {
            *to_pos = p;
            *to_index = s->first + rel;
            return 1;
        }
    }
    return 0;
}

/*
 * kl_seg_resync for a lookup, remembered: every lookup of a block inside a
 * damaged batch meets the same damage, and the search reads up to the whole
 * batch (tens of MiB for a big one), so the last answer is kept with s.
 */
static int lookup_resync(kl_seg *s, uint64_t pos, uint64_t at, uint64_t to_pos, uint64_t to,
                         uint64_t limit, uint64_t *rpos, uint64_t *rat) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->rs_from == pos && s->rs_to == to && s->rs_to != 0) {
        rc = s->rs_at != 0;
    } else {
        rc = kl_seg_resync(s, pos, at, to_pos, to, limit, &s->rs_pos, &s->rs_at);
        if (rc == 0)
            s->rs_at = 0;
        s->rs_from = pos;
        s->rs_to = rc < 0 ? 0 : to;
    }
    *rpos = s->rs_pos;
    *rat = s->rs_at;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/*
 * A lookup of block `index` met a batch at *pos (block *at) that does not
 * check out. If the batches past it can be found (kl_batch_resync) up to a
 * point already known (the next index entry; else block `next`, or, if the
 * walk that indexed the segment stopped short, where it stopped) and
 * `index` is past the damaged batch's blocks, move (*pos, *at) to the batch
 * after them: 1. Otherwise the error, naming the blocks that cannot be
 * read: exactly the damaged batch's, or up to that known point when nothing
 * after it was found.
 */
static int past_damage(kl_seg *s, uint64_t *pos, uint64_t *at, uint64_t index, uint64_t limit,
                       uint64_t next) {
    char why[256];
    snprintf(why, sizeof why, "%s", kl_err_thread());
    uint64_t to_pos = UINT64_MAX, to = next, rpos = 0, rat = 0; /* block next, below limit */
    if (!next_entry(s, *pos, next, &to_pos, &to) && s->bad_from != UINT64_MAX) {
        to_pos = s->bad_pos;
        to = s->bad_from;
    }
    int rc = lookup_resync(s, *pos, *at, to_pos, to, limit, &rpos, &rat);
    if (rc < 0)
        return rc;
    if (rc == 1 && index >= rat) {
        *pos = rpos;
        *at = rat;
        return 1;
    }
    if (rc == 1)
        to = rat;
    kl_errf(KL_ECORRUPT, "%s", why);
    return seg_error(s, *pos, *at, to);
}

/* Find the batch of s holding `index` (which is committed): *pos and *h. */
static int locate(kl_seg *s, uint64_t index, uint64_t *pos_out, kl_batch_hdr *h) {
    /* next first: a commit or a refresh stores end, then next, so the batches up to next
       lie below this end (a later commit's end may have come too) */
    uint64_t next = atomic_load_explicit(&s->next, memory_order_acquire);
    uint64_t limit = atomic_load_explicit(&s->end, memory_order_acquire);
    if (index >= s->bad_from)
        return kl_errf(KL_ECORRUPT,
                       "segment %020llu.log: a damaged batch makes blocks %llu..%llu unreadable",
                       (unsigned long long)s->first, (unsigned long long)s->bad_from,
                       (unsigned long long)(next - 1));
    int64_t e = kl_oidx_find(&s->idx, index - s->first);
    uint64_t pos = KL_SEG_HEADER_BYTES, at = s->first;
    for (int tries = 0; e >= 0 && tries < ENTRY_RETRIES; tries++, e--) {
        uint64_t rel, p;
        kl_oidx_entry(&s->idx, (uint64_t)e, &rel, &p);
        if (map_batch(s, p, limit, h) == 0 && h->first_index == s->first + rel &&
            s->first + rel <= index) {
            pos = p;
            at = s->first + rel;
            break;
        }
    }
    for (;;) {
        int rc = map_batch(s, pos, limit, h);
        if (rc == 0 && h->first_index != at)
            rc = kl_errf(KL_ECORRUPT, "batch says block %llu, expected %llu",
                         (unsigned long long)h->first_index, (unsigned long long)at);
        if (rc < 0 && (rc = past_damage(s, &pos, &at, index, limit, next)) == 1)
            continue;
        if (rc < 0)
            return rc;
        if (index < at + h->count) {
            *pos_out = pos;
            return 0;
        }
        pos += kl_batch_frame_len(h);
        at += h->count;
    }
}

/* The segment holding a committed block, mapped and indexed (segs_lock held). */
static int seg_for(kl_log *log, uint64_t index, kl_seg **out) {
    kl_seg *s = kl_seg_find(log, index);
    if (!s || index >= atomic_load_explicit(&s->next, memory_order_acquire)) {
        uint64_t to = atomic_load(&log->length);
        for (size_t i = 0; i < log->nsegs; i++)
            if (log->segs[i]->first > index) {
                to = log->segs[i]->first;
                break;
            }
        return kl_errf(KL_ECORRUPT, "no segment file holds blocks %llu..%llu",
                       (unsigned long long)index, (unsigned long long)(to - 1));
    }
    int rc = kl_seg_ensure_map(log, s);
    if (rc == 0)
        rc = kl_seg_ensure_idx(log, s);
    *out = s;
    return rc;
}

/* Most blocks under a node the tree file does not keep. */
#define LOW_SPAN_MAX (1u << (KL_TREE_LOW_MAX - 1))

int kl_log_get_grow(kl_log *log, uint64_t index, uint8_t **buf, size_t *cap, size_t *size) {
    int rc = kl_log_get(log, index, *buf, *cap, size);
    if (rc != KL_ETOOSMALL)
        return rc;
    uint8_t *nb = realloc(*buf, *size);
    if (!nb)
        return kl_errf(KL_ENOMEM, "block of %zu bytes", *size);
    *buf = nb;
    *cap = *size;
    return kl_log_get(log, index, *buf, *cap, size);
}

/* The leaves of a complete subtree (n, a power of two) folded into its top, row[0]. */
static void fold_row(kl_node *row, size_t n) {
    for (size_t w = n / 2; w > 0; w /= 2)
        kl_hc_parent_row(row, w, row);
}

/*
 * Node `index` when the tree file does not keep it (its depth is below
 * log->tree_low): hashed from the at most 2^(low-1) blocks under it, each
 * read and checked as kl_log_get reads it. 0, or a kl_error.
 */
static int node_from_blocks(kl_log *log, uint64_t index, kl_node *out) {
    uint64_t a = kl_ft_left_span(index) / 2;
    size_t n = (size_t)(kl_ft_right_span(index) / 2 - a + 1);
    KL_ASSERT(n <= LOW_SPAN_MAX);
    uint64_t fork = log->fork;
    /*
     * The group: the blocks under one node of depth tree_low (a stored one),
     * which holds every unstored root of a tree whose length is in it.
     */
    uint64_t base = a & ~(((uint64_t)1 << log->tree_low) - 1);
    KL_ASSERT(a - base + n <= KL_LEAF_CACHE);
    kl_node row[LOW_SPAN_MAX];
    size_t cap = 4096, size = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return kl_errf(KL_ENOMEM, "hashing tree node %llu", (unsigned long long)index);
    int rc = 0;
    pthread_mutex_lock(&log->leaf_mu);
    if (log->leaf_fork != fork || log->leaf_base != base) {
        log->leaf_fork = fork;
        log->leaf_base = base;
        memset(log->leaf_known, 0, sizeof log->leaf_known);
    }
    for (size_t j = 0; rc == 0 && j < n; j++) {
        size_t k = (size_t)(a - base) + j;
        uint64_t bit = (uint64_t)1 << (k % 64);
        _Static_assert(KL_LEAF_CACHE % 64 == 0, "leaf_known: whole words");
        if (!(log->leaf_known[k / 64] & bit)) {
            if ((rc = kl_log_get_grow(log, a + j, &buf, &cap, &size)) < 0)
                break;
            kl_hc_leaf(a + j, buf, size, &log->leaf[k]);
            log->leaf_known[k / 64] |= bit;
        }
        row[j] = log->leaf[k];
    }
    pthread_mutex_unlock(&log->leaf_mu);
    free(buf);
    if (rc < 0)
        return kl_err_prefix(rc,
                             "hashing tree node %llu from its blocks: ", (unsigned long long)index);
    fold_row(row, n);
    *out = row[0];
    return 0;
}

int kl_node_src_get(void *ctx, uint64_t index, kl_node *out) {
    const kl_node_src *s = ctx;
    if (kl_tree_pos(index) >= kl_tree_nodes(s->length))
        return kl_errf(KL_ENOTFOUND, "tree node %llu is not in the tree of %llu blocks",
                       (unsigned long long)index, (unsigned long long)s->length);
    if (!kl_tree_stored(index, s->log->tree_low))
        return node_from_blocks(s->log, index, out);
    int rc = kl_tree_read(s->log->io, s->log->tree_fd, s->log->tree_low, index, out);
    if (rc < 0)
        return rc;
    /* No BLAKE2b output is 32 zero bytes: this node was lost (zeroed by a disk or a file
       system's repair), or is not there yet (a read-only handle after a crash, before a
       writable open recovered it; one older than a truncation, reading the space its writer
       keeps zeroed ahead). Hashing it into a proof or a tree hash would hand out a wrong
       tree; say which node it is. */
    if (kl_hash_is_zero(out->hash))
        return kl_errf(KL_ECORRUPT,
                       "tree node %llu (over blocks %llu..%llu) in %s is all zeros: lost, or not "
                       "written yet (damage: 'kappalog verify --repair' rebuilds it from the "
                       "blocks; after a crash, a writable open recovers it)",
                       (unsigned long long)index, (unsigned long long)(kl_ft_left_span(index) / 2),
                       (unsigned long long)(kl_ft_right_span(index) / 2), s->log->tree_path);
    return 0;
}

int kl_log_node(kl_log *log, uint64_t index, kl_node *out) {
    kl_node_src s = {log, atomic_load_explicit(&log->length, memory_order_acquire)};
    return kl_node_src_get(&s, index, out);
}

int kl_log_tree_hash(kl_log *log, uint64_t length, unsigned char out[32]) {
    if (!log || !out)
        return kl_errf(KL_EINVAL, "kl_log_tree_hash: NULL argument");
    kl_node_src s = {log, atomic_load_explicit(&log->length, memory_order_acquire)};
    if (length > s.length)
        return kl_log_err(log, kl_errf(KL_EINVAL, "tree hash at %llu: past the end (length %llu)",
                                       (unsigned long long)length, (unsigned long long)s.length));
    uint64_t idx[KL_MAX_ROOTS];
    kl_node roots[KL_MAX_ROOTS];
    size_t n = kl_ft_full_roots(length, idx);
    for (size_t i = 0; i < n; i++) {
        int rc = kl_node_src_get(&s, idx[i], &roots[i]);
        if (rc < 0)
            return kl_log_err(log,
                              kl_err_prefix(rc, "tree hash at %llu: ", (unsigned long long)length));
    }
    kl_hc_tree_hash(roots, n, out);
    return 0;
}

int kl_batch_at(kl_log *log, uint64_t index, uint64_t *seg_first, uint64_t *pos, kl_batch_hdr *h) {
    pthread_rwlock_rdlock(&log->segs_lock);
    kl_seg *s = NULL;
    int rc = seg_for(log, index, &s);
    if (rc == 0)
        rc = locate(s, index, pos, h);
    if (rc == 0)
        *seg_first = s->first;
    pthread_rwlock_unlock(&log->segs_lock);
    return rc;
}

/* Block of a zstd batch through the handle's one-batch cache (zmu held). */
static int zstd_block(kl_log *log, kl_seg *s, uint64_t pos, const kl_batch_hdr *h,
                      const uint8_t **raw) {
    if (log->zseg == s && log->zpos == pos) {
        *raw = log->zraw;
        return 0;
    }
    const uint8_t *frame = s->map + pos;
    int rc = kl_batch_verify(h, frame);
    if (rc < 0)
        return rc;
    if (!log->zdctx && !(log->zdctx = ZSTD_createDCtx()))
        return kl_errf(KL_ENOMEM, "zstd context");
    if (log->zraw_cap < h->raw_len) {
        uint8_t *z = realloc(log->zraw, h->raw_len);
        if (!z)
            return kl_errf(KL_ENOMEM, "batch of %u bytes", h->raw_len);
        log->zraw = z;
        log->zraw_cap = h->raw_len;
    }
    log->zseg = NULL;
    rc = kl_batch_decompress(log->zdctx, h, kl_batch_stored(h, frame), log->zraw);
    if (rc < 0)
        return rc;
    log->zseg = s;
    log->zpos = pos;
    *raw = log->zraw;
    return 0;
}

/*
 * Copy block `index` out. An uncompressed batch (raw == NULL) is read in
 * place, checking only the chunks that hold the block and its table entries;
 * a zstd batch comes decompressed (raw) from a whole-batch check.
 */
/*
 * The leaf of block j, its bytes read without their chunk checks (the
 * caller checks the leaves against the tree); segs_lock held. 0, or
 * KL_ECORRUPT.
 */
static int unchecked_leaf(kl_log *log, uint64_t j, kl_node *leaf) {
    kl_seg *s = NULL;
    uint64_t pos = 0;
    kl_batch_hdr h;
    const uint8_t *data;
    size_t n;
    if (seg_for(log, j, &s) < 0 || locate(s, j, &pos, &h) < 0)
        return KL_ECORRUPT;
    uint32_t k = (uint32_t)(j - h.first_index);
    if (h.codec == KL_CODEC_NONE) {
        if (kl_batch_block(&h, kl_batch_stored(&h, s->map + pos), k, &data, &n) < 0)
            return KL_ECORRUPT;
        kl_hc_leaf(j, data, n, leaf);
        return 0;
    }
    const uint8_t *raw = NULL;
    pthread_mutex_lock(&log->zmu);
    int rc = zstd_block(log, s, pos, &h, &raw) < 0 || kl_batch_block(&h, raw, k, &data, &n) < 0
                 ? KL_ECORRUPT
                 : 0;
    if (rc == 0)
        kl_hc_leaf(j, data, n, leaf);
    pthread_mutex_unlock(&log->zmu);
    return rc;
}

/*
 * Block k of an uncompressed batch whose chunk checksums refuse it: its
 * bytes are still served if, with the blocks beside it, they hash to the
 * stored tree node of depth low over them (a 1 KiB chunk holds several
 * small blocks; damage to one of them must not take the whole chunk down
 * when the neighbours are intact). A block under no stored node yet (the
 * last 2^low - 1 blocks at most) is not served this way. 0, or KL_ECORRUPT.
 */
static int block_by_tree(kl_log *log, const kl_seg *s, uint64_t pos, const kl_batch_hdr *h,
                         uint64_t index, const uint8_t **data, size_t *n) {
    const uint8_t *raw = kl_batch_stored(h, s->map + pos);
    if (kl_batch_block(h, raw, (uint32_t)(index - h->first_index), data, n) < 0)
        return KL_ECORRUPT;
    unsigned low = log->tree_low;
    uint64_t top = kl_ft_index(low, index >> low); /* the block's lowest stored ancestor */
    uint64_t a = kl_ft_left_span(top) / 2, count = UINT64_C(1) << low;
    kl_node stored, row[2 * LOW_SPAN_MAX];
    if (a + count > atomic_load_explicit(&log->length, memory_order_acquire) ||
        kl_tree_read(log->io, log->tree_fd, low, top, &stored) < 0)
        return KL_ECORRUPT;
    for (uint64_t j = 0; j < count; j++) {
        if (a + j == index)
            kl_hc_leaf(index, *data, *n, &row[j]);
        else if (unchecked_leaf(log, a + j, &row[j]) < 0)
            return KL_ECORRUPT;
    }
    fold_row(row, (size_t)count);
    return row[0].index == stored.index && row[0].size == stored.size &&
                   memcmp(row[0].hash, stored.hash, KL_HASH_BYTES) == 0
               ? 0
               : KL_ECORRUPT;
}

static int copy_block(kl_log *log, kl_seg *s, uint64_t pos, const kl_batch_hdr *h,
                      const uint8_t *raw, uint64_t index, void *buf, size_t cap, size_t *size) {
    const uint8_t *data;
    size_t n;
    uint32_t k = (uint32_t)(index - h->first_index);
    int rc = raw ? kl_batch_block(h, raw, k, &data, &n)
                 : kl_batch_block_checked(h, s->map + pos, k, &data, &n);
    if (rc < 0 && !raw) {
        char why[256]; /* the block's own check failed: that is what an error says */
        snprintf(why, sizeof why, "%s", kl_err_thread());
        if (block_by_tree(log, s, pos, h, index, &data, &n) == 0)
            rc = 0;
        else
            kl_errf(KL_ECORRUPT, "%s", why);
    }
    if (rc < 0)
        return seg_error(s, pos, index, index + 1);
    *size = n;
    if (n > cap)
        return kl_errf(KL_ETOOSMALL, "block %llu is %zu bytes, the buffer %zu",
                       (unsigned long long)index, n, cap);
    if (n)
        memcpy(buf, data, n);
    return 0;
}

int kl_log_get(kl_log *log, uint64_t index, void *buf, size_t buf_size, size_t *size) {
    if (!log || !size || (!buf && buf_size))
        return kl_errf(KL_EINVAL, "kl_log_get: NULL argument");
    uint64_t len = atomic_load_explicit(&log->length, memory_order_acquire);
    if (index >= len)
        return kl_log_err(log, kl_errf(KL_ENOTFOUND, "block %llu is past the end (length %llu)",
                                       (unsigned long long)index, (unsigned long long)len));
    pthread_rwlock_rdlock(&log->segs_lock);
    kl_seg *s = NULL;
    uint64_t pos = 0;
    kl_batch_hdr h;
    int rc = seg_for(log, index, &s);
    if (rc == 0)
        rc = locate(s, index, &pos, &h);
    if (rc == 0 && h.codec == KL_CODEC_NONE) {
        rc = copy_block(log, s, pos, &h, NULL, index, buf, buf_size, size);
    } else if (rc == 0) {
        const uint8_t *raw = NULL;
        pthread_mutex_lock(&log->zmu);
        rc = zstd_block(log, s, pos, &h, &raw);
        if (rc < 0)
            rc = seg_error(s, pos, h.first_index, h.first_index + h.count);
        else
            rc = copy_block(log, s, pos, &h, raw, index, buf, buf_size, size);
        pthread_mutex_unlock(&log->zmu);
    }
    pthread_rwlock_unlock(&log->segs_lock);
    return rc < 0 ? kl_log_err(log, rc) : 0;
}

int kl_iter_open(kl_log *log, uint64_t from, uint64_t to, kl_iter **out) {
    if (!log || !out || to < from)
        return kl_errf(KL_EINVAL, "kl_iter_open: bad arguments");
    kl_iter *it = calloc(1, sizeof *it);
    if (!it)
        return kl_log_err(log, kl_errf(KL_ENOMEM, "iterator"));
    it->log = log;
    it->next = from;
    it->to = to;
    *out = it;
    return 0;
}

void kl_iter_close(kl_iter *it) {
    if (!it)
        return;
    free(it->zraw);
    ZSTD_freeDCtx(it->zdctx);
    free(it);
}

/* Check (and decompress) the body of the batch at it->pos. */
static int iter_body(kl_iter *it) {
    kl_seg *s = it->seg;
    const uint8_t *stored = kl_batch_stored(&it->h, s->map + it->pos);
    int rc = kl_batch_verify(&it->h, s->map + it->pos);
    if (rc == 0 && it->h.codec == KL_CODEC_NONE) {
        it->raw = stored;
        rc = kl_batch_table_verify(&it->h, it->raw);
    } else if (rc == 0) {
        if (!it->zdctx && !(it->zdctx = ZSTD_createDCtx()))
            return kl_errf(KL_ENOMEM, "zstd context");
        if (it->zcap < it->h.raw_len) {
            uint8_t *z = realloc(it->zraw, it->h.raw_len);
            if (!z)
                return kl_errf(KL_ENOMEM, "batch of %u bytes", it->h.raw_len);
            it->zraw = z;
            it->zcap = it->h.raw_len;
        }
        rc = kl_batch_decompress(it->zdctx, &it->h, stored, it->zraw);
        it->raw = it->zraw;
    }
    if (rc < 0)
        return seg_error(s, it->pos, it->h.first_index, it->h.first_index + it->h.count);
    return 0;
}

/*
 * Move to the batch holding it->next: the following batch if it is next, else a lookup.
 * The following batch is read in place only below the segment's bad_from: past a
 * damaged or missing batch `end` may lie beyond the file (a read-only open of a cut
 * active segment keeps the slot's end), and a read there, in the mapping that is
 * longer than the file, is a SIGBUS. Below bad_from every batch was found whole in
 * the file when it was indexed; from it on the lookup names the damage, as get does.
 */
static int iter_advance(kl_iter *it) {
    kl_log *log = it->log;
    pthread_rwlock_rdlock(&log->segs_lock);
    int sequential = it->have && it->next == it->h.first_index + it->h.count &&
                     it->next < atomic_load_explicit(&it->seg->next, memory_order_acquire) &&
                     it->next < it->seg->bad_from;
    if (sequential) {
        uint64_t pos = it->pos + kl_batch_frame_len(&it->h);
        uint64_t end = atomic_load_explicit(&it->seg->end, memory_order_acquire);
        kl_batch_hdr h;
        sequential = map_batch(it->seg, pos, end, &h) == 0 && h.first_index == it->next;
        if (sequential) {
            it->pos = pos;
            it->h = h;
        }
    }
    it->have = 0;
    int rc = 0;
    if (!sequential) { /* a lookup also names the damage, if that is what stopped us */
        rc = seg_for(log, it->next, &it->seg);
        if (rc == 0)
            rc = locate(it->seg, it->next, &it->pos, &it->h);
    }
    if (rc == 0)
        rc = iter_body(it);
    it->have = rc == 0;
    pthread_rwlock_unlock(&log->segs_lock);
    return rc;
}

/* After an error: skip past the damaged range the context names, if any. */
static void iter_skip_damage(kl_iter *it) {
    const char *m = strstr(kl_err_thread(), "(blocks ");
    unsigned long long a, b;
    const char *d = strstr(kl_err_thread(), "makes blocks "); /* locate: past bad_from */
    if (m && sscanf(m, "(blocks %llu..%llu)", &a, &b) == 2 && b >= it->next)
        it->next = b + 1;
    else if (d && sscanf(d, "makes blocks %llu..%llu", &a, &b) == 2 && b >= it->next)
        it->next = b + 1;
    else
        it->next++;
}

int kl_iter_next(kl_iter *it, kl_record *rec) {
    if (!it || !rec)
        return kl_errf(KL_EINVAL, "kl_iter_next: NULL argument");
    uint64_t len = atomic_load_explicit(&it->log->length, memory_order_acquire);
    uint64_t limit = KL_MIN(len, it->to);
    if (it->next >= limit)
        return 0;
    if (!it->have || it->next < it->h.first_index || it->next >= it->h.first_index + it->h.count) {
        int rc = iter_advance(it);
        if (rc < 0) {
            iter_skip_damage(it);
            return kl_log_err(it->log, rc);
        }
    }
    uint32_t k = (uint32_t)(it->next - it->h.first_index);
    const uint8_t *data;
    size_t n;
    int rc = kl_batch_block(&it->h, it->raw, k, &data, &n);
    KL_ASSERT(rc == 0); /* the whole table was checked with the body */
    rec->index = it->next;
    rec->data = data;
    rec->size = n;
    rec->timestamp_ms = it->h.timestamp_ms;
    it->next++;
    return 1;
}
