/*
 * seek_time.c - the time index in the engine: each segment's .tix kept as a
 * shadow of its .idx (docs/FORMAT.md, "segments/<first>.tix"), and
 * kl_log_seek_time, the first block of the first batch committed at or
 * after a given time.
 *
 * Invariants: time entry i and offset entry i describe the same batch, and
 * the time index never has more entries than the offset index (an offset
 * entry is published before its time entry, and a time entry is only added
 * while the two are aligned; after damage the time index may stay shorter,
 * never misaligned). Batch timestamps do not decrease along a log (commit.c
 * frames each batch at the later of the clock and the previous batch's
 * time), so "the first batch at or after T" is a binary search.
 *
 * Cost of a lookup: a binary search over the segments, reading each probed
 * segment's first batch header; a binary search over one segment's time
 * entries; then a walk over at most about KL_IDX_INTERVAL_BYTES of batch
 * headers. No body is read.
 *
 * The one thing a reader would get wrong: a time entry is never trusted on
 * its own. The entry a search lands on is checked against the offset entry
 * and the batch header it names, the answer always comes from a real batch
 * header, and where the bytes are damaged the answer errs early (the first
 * block that cannot be read), never late: a consumer "from T" may be told
 * of damage, but it never silently misses a block appended at or after T.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "log_internal.h"
#include "segment.h"
#include "util.h"

/* Entries tried below a landing entry that fails its check, before the segment's start. */
#define ENTRY_RETRIES 4

int kl_seg_index_init(kl_seg *s, uint64_t max_bytes) {
    int rc = kl_oidx_init(&s->idx, s->first, max_bytes);
    if (rc == 0)
        rc = kl_tidx_init(&s->tix, s->first, max_bytes);
    if (rc == 0)
        atomic_store_explicit(&s->tix_ready, 1, memory_order_release);
    return rc; /* on failure kl_seg_free releases whichever was made */
}

void kl_seg_note(kl_seg *s, uint64_t rel, uint64_t pos, uint64_t ts_ms) {
    if (!kl_oidx_note(&s->idx, rel, pos))
        return;
    uint64_t n = atomic_load_explicit(&s->idx.count, memory_order_relaxed);
    /* only while aligned: a time index cut short by damage stays a prefix */
    if (s->tix.anon && kl_tidx_count(&s->tix) + 1 == n)
        kl_tidx_note(&s->tix, rel, ts_ms);
    KL_ASSERT(kl_tidx_count(&s->tix) <= n);
}

/* The header of the batch at pos of s, wholly below limit, whose first block is s->first + rel. */
static int batch_at(const kl_seg *s, uint64_t pos, uint64_t limit, uint64_t rel, kl_batch_hdr *h) {
    if (pos < KL_SEG_HEADER_BYTES || pos + KL_BATCH_HEADER_BYTES > limit ||
        kl_batch_hdr_decode(s->map + pos, (size_t)(limit - pos), h) < 0)
        return -1;
    return h->first_index == s->first + rel && pos + kl_batch_frame_len(h) <= limit ? 0 : -1;
}

/* Does time entry i agree with offset entry i and the batch header that one points at? */
static int entry_checks(const kl_seg *s, uint64_t i, uint64_t limit) {
    uint64_t ts, rel, irel, pos;
    kl_batch_hdr h;
    KL_ASSERT(i < kl_tidx_count(&s->tix) && i < atomic_load(&s->idx.count));
    kl_tidx_entry(&s->tix, i, &ts, &rel);
    kl_oidx_entry(&s->idx, i, &irel, &pos);
    return rel == irel && batch_at(s, pos, limit, rel, &h) == 0 && h.timestamp_ms == ts;
}

/* Is a mapped sealed .tix the shadow of s's offset index, with ends that match the batches? */
static int sealed_tix_matches(const kl_seg *s, uint64_t limit) {
    uint64_t n = kl_tidx_count(&s->tix);
    if (n != atomic_load(&s->idx.count))
        return 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t ts, rel, irel, pos;
        kl_tidx_entry(&s->tix, i, &ts, &rel);
        kl_oidx_entry(&s->idx, i, &irel, &pos);
        if (rel != irel)
            return 0;
    }
    return n == 0 || (entry_checks(s, 0, limit) && entry_checks(s, n - 1, limit));
}

/* Make the time entries of the offset entries the time index lacks, from their batch headers. */
static void tix_fill(kl_seg *s, uint64_t limit) {
    uint64_t n = KL_MIN(atomic_load(&s->idx.count), s->tix.cap);
    for (uint64_t i = kl_tidx_count(&s->tix); i < n; i++) {
        uint64_t rel, pos;
        kl_batch_hdr h;
        kl_oidx_entry(&s->idx, i, &rel, &pos);
        if (batch_at(s, pos, limit, rel, &h) < 0)
            break; /* damaged: the time index stops here, lookups past it walk */
        kl_tidx_note(&s->tix, rel, h.timestamp_ms);
    }
}

/* A sealed segment's .tix, mapped if it checks out, else rebuilt (s->mu held, s indexed). */
static void tix_sealed(kl_log *log, kl_seg *s) {
    KL_ASSERT(atomic_load(&s->map_ready) && atomic_load(&s->idx_ready));
    char path[4096];
    kl_seg_file(log, path, sizeof path, s->first, "tix");
    uint64_t end = atomic_load(&s->end);
    if (kl_tidx_map_sealed(&s->tix, log->io, path, s->first, end) == 0 &&
        sealed_tix_matches(s, end)) {
        kl_err_clear();
        return;
    }
    kl_tidx_free(&s->tix, log->io);
    if (kl_tidx_init(&s->tix, s->first, s->map_len + KL_IDX_INTERVAL_BYTES) == 0) {
        tix_fill(s, end);
        if (!log->readonly && s->bad_from == UINT64_MAX &&
            kl_tidx_count(&s->tix) == atomic_load(&s->idx.count))
            (void)kl_tidx_write_sealed(&s->tix, log->io, path, end); /* derived; best effort */
    }
    kl_err_clear(); /* without a time index, lookups in s walk its batch headers */
}

/*
 * The time index of s, usable: an active segment's is (its indexes were
 * made together); a sealed one's is loaded once, under s->mu. A segment
 * made without one (count 0) is searched by walking its batch headers.
 */
static void ensure_tix(kl_log *log, kl_seg *s) {
    if (atomic_load_explicit(&s->tix_ready, memory_order_acquire) || !atomic_load(&s->sealed))
        return;
    pthread_mutex_lock(&s->mu);
    if (!atomic_load(&s->tix_ready)) {
        tix_sealed(log, s);
        atomic_store_explicit(&s->tix_ready, 1, memory_order_release);
    }
    pthread_mutex_unlock(&s->mu);
}

/* How many of s's time entries name batches below block `next` (committed ones). */
static uint64_t entries_below(const kl_seg *s, uint64_t next) {
    uint64_t lo = 0, hi = kl_tidx_count(&s->tix); /* the first entry at or past next: in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2, ts, rel;
        kl_tidx_entry(&s->tix, mid, &ts, &rel);
        if (s->first + rel < next)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * The timestamp of s's first batch into *ts: 1, or 0 if its header cannot
 * be read (the search then treats s as too recent, which errs early), or a
 * negative error.
 */
static int first_ts(kl_log *log, kl_seg *s, uint64_t *ts) {
    int rc = kl_seg_ensure_map(log, s);
    if (rc < 0)
        return rc == KL_ECORRUPT ? 0 : rc;
    kl_batch_hdr h;
    if (batch_at(s, KL_SEG_HEADER_BYTES, atomic_load_explicit(&s->end, memory_order_acquire), 0,
                 &h) < 0)
        return 0;
    *ts = h.timestamp_ms;
    return 1;
}

/* The last of the first nseg segments whose first batch is older than time_ms: *k, or -1. */
static int find_segment(kl_log *log, size_t nseg, uint64_t time_ms, int64_t *k) {
    size_t lo = 0, hi = nseg; /* the first segment not older: in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t ts = 0;
        int rc = first_ts(log, log->segs[mid], &ts);
        if (rc < 0)
            return rc;
        if (rc == 1 && ts < time_ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    *k = (int64_t)lo - 1;
    return 0;
}

/* Where the walk in s starts: the checked entry the search lands on, or the segment's start. */
static void walk_start(const kl_seg *s, uint64_t next, uint64_t limit, uint64_t time_ms,
                       uint64_t *pos, uint64_t *at) {
    int64_t e = kl_tidx_find(&s->tix, entries_below(s, next), time_ms);
    *pos = KL_SEG_HEADER_BYTES;
    *at = s->first;
    for (int tries = 0; e >= 0 && tries < ENTRY_RETRIES; tries++, e--) {
        uint64_t ts, rel, p;
        kl_tidx_entry(&s->tix, (uint64_t)e, &ts, &rel);
        if (ts < time_ms && entry_checks(s, (uint64_t)e, limit)) {
            kl_oidx_entry(&s->idx, (uint64_t)e, &rel, &p);
            *pos = p;
            *at = s->first + rel;
            return;
        }
    }
}

/* The first block of the first batch of s (below `len`) at or after time_ms, else s's end. */
static int seek_in(kl_log *log, kl_seg *s, uint64_t len, uint64_t time_ms, uint64_t *out) {
    int rc = kl_seg_ensure_map(log, s);
    if (rc == 0)
        rc = kl_seg_ensure_idx(log, s);
    if (rc < 0)
        return rc;
    ensure_tix(log, s);
    uint64_t limit = atomic_load_explicit(&s->end, memory_order_acquire);
    uint64_t next = KL_MIN(atomic_load_explicit(&s->next, memory_order_acquire), len);
    uint64_t pos, at;
    walk_start(s, next, limit, time_ms, &pos, &at);
    while (at < next && at < s->bad_from) {
        kl_batch_hdr h;
        if (batch_at(s, pos, limit, at - s->first, &h) < 0 || h.timestamp_ms >= time_ms)
            break; /* a damaged header is the answer: its blocks may be that recent */
        pos += kl_batch_frame_len(&h);
        at += h.count;
    }
    *out = KL_MIN(at, next);
    KL_ASSERT(*out >= s->first && *out <= len);
    return 0;
}

int kl_log_seek_time(kl_log *log, uint64_t time_ms, uint64_t *index) {
    if (!log || !index)
        return kl_errf(KL_EINVAL, "kl_log_seek_time: NULL argument");
    kl_err_clear();
    uint64_t len = atomic_load_explicit(&log->length, memory_order_acquire), ans = 0;
    pthread_rwlock_rdlock(&log->segs_lock);
    size_t nseg = log->nsegs; /* the segments holding committed blocks */
    while (nseg > 0 && log->segs[nseg - 1]->first >= len)
        nseg--;
    int64_t k = -1;
    int rc = find_segment(log, nseg, time_ms, &k);
    if (rc == 0 && k >= 0)
        rc = seek_in(log, log->segs[k], len, time_ms, &ans);
    else if (rc == 0 && nseg > 0)
        ans = log->segs[0]->first;
    pthread_rwlock_unlock(&log->segs_lock);
    if (rc < 0)
        return kl_log_err(log, rc);
    kl_err_clear(); /* damage met on the way is not this call's failure */
    KL_ASSERT(ans <= len);
    *index = ans;
    return 0;
}
