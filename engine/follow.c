/*
 * follow.c - following a log as it grows: kl_log_refresh (a read-only
 * handle catches up with another process's commits) and kl_log_wait (block
 * until the length passes a given value, without polling).
 *
 * How a waiter is woken:
 * - a writable handle's commit path bumps `len_word` after it publishes a
 *   new length and wakes the futex if anyone waits (kl_follow_notify);
 * - a read-only handle watches the `header` file with inotify: every commit
 *   writes a header slot, so a change of the file is the signal to refresh.
 *
 * A refresh reads both header slots and takes the newest one that decodes,
 * whose signature holds (or that is not signed yet: under `interval` and
 * `never` the writer publishes a commit with an unsigned slot and signs it
 * right after) and that checks out as a read-only open checks its newer
 * slot: its segments are there, its active segment's file holds its
 * committed bytes, and, unless it is an `ordered` slot of this boot, the
 * batches since the handle's state check out and hash to its roots. A slot
 * that does not decode may be torn by the writer writing it right now: the
 * refresh reads it again for up to 20 ms, as an open does, so that a refresh
 * just after a commit sees it (the other slot can be far older), unless
 * its bytes are those a refresh before already waited out (damage that
 * stays). A slot that does not check out is left alone, not an error, and
 * looked at again by every later refresh: left stale beside the one the
 * open took (a power loss under `always`), it is passed over for the other
 * slot, and a writer's open overwrites it. Then the refresh walks the new
 * batch headers to extend the active segment's sparse index, adds the
 * segments that appeared since, and only then publishes the new length
 * (release order, as the commit path does).
 *
 * What a reader would get wrong: the mapping of the active segment is
 * longer than the file, and a read in it past the file's last page is a
 * SIGBUS; a slot is checked with pread, and the walk through the mapping
 * stays below the file's size. And a truncation by another process (the
 * fork changed) cannot be followed in place, since blocks this handle
 * served may no longer exist; the refresh reports KL_EFORK and the caller
 * reopens.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "frame.h"
#include "log_internal.h"
#include "segment.h"
#include "util.h"

void kl_follow_notify(kl_log *log) {
    atomic_fetch_add_explicit(&log->len_word, 1, memory_order_release);
    if (atomic_load_explicit(&log->len_waiters, memory_order_acquire) > 0)
        syscall(SYS_futex, (uint32_t *)&log->len_word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/*
 * The header slots a refresh may take: those that decode, whose signature
 * holds (or that are not signed yet) and that are newer than the handle's
 * state, newest first, in c (*n of them). KL_ECORRUPT if no slot decodes.
 */
/*
 * The slot candidates of one read of the header: newest first. *torn is set
 * if a slot does not decode and its bytes are not those a refresh before
 * already waited out (log->slot_damage).
 */
static int candidates_once(kl_log *log, kl_slot c[2], int *n, int *torn, uint64_t sums[2]) {
    uint8_t *buf = NULL;
    size_t got = 0;
    sums[0] = sums[1] = 0; /* also when the header cannot be read */
    *torn = 0;
    int rc = kl_header_read(log, &buf, &got);
    if (rc < 0)
        return rc;
    int found = 0;
    *n = 0;
    *torn = 0;
    for (int i = 0; i < 2; i++) {
        kl_slot s;
        const uint8_t *p = buf + (size_t)i * KL_HDR_SLOT_BYTES;
        sums[i] = 0;
        if (got < (size_t)(i + 1) * KL_HDR_SLOT_BYTES)
            continue;
        if (kl_slot_decode(p, &s) < 0) {
            sums[i] = XXH3_64bits(p, KL_HDR_SLOT_BYTES) | 1; /* never 0, which means none */
            *torn |= sums[i] != log->slot_damage[i];
            continue;
        }
        if (s.seq != log->last.seq && !kl_slot_trusted(&s))
            continue;
        found = 1;
        if (s.seq > log->last.seq)
            c[(*n)++] = s;
    }
    free(buf);
    kl_err_clear();
    if (*n == 2 && c[1].seq > c[0].seq) {
        kl_slot t = c[0];
        c[0] = c[1];
        c[1] = t;
    }
    KL_ASSERT(*n < 2 || c[0].seq > c[1].seq);
    return found ? 0 : kl_errf(KL_ECORRUPT, "%s: no header slot checks out", log->hdr_path);
}

/*
 * The candidates a refresh looks at. The writer rewrites its working slot in
 * place at every commit and again to sign it, and the other slot can be far
 * older than this handle's state: a refresh that caught the working slot half
 * written found nothing new right after a commit (test_follow, about one run
 * in five under ASan). So a slot that does not decode is read again, as an
 * open does (KL_TORN_WAIT_MS), unless its bytes are the very ones a refresh
 * before waited out in vain: damage that stays costs one wait, not one per
 * refresh.
 */
static int read_candidates(kl_log *log, kl_slot c[2], int *n) {
    uint64_t until = kl_mono_ns() + KL_TORN_WAIT_MS * UINT64_C(1000000);
    uint64_t sums[2];
    int torn = 0;
    /* the write in flight ends within microseconds: a follower's latency is at stake */
    for (long retry_us = 10;; retry_us = KL_MIN(2 * retry_us, (long)KL_TORN_RETRY_US)) {
        int rc = candidates_once(log, c, n, &torn, sums);
        if (rc < 0 && rc != KL_ECORRUPT)
            return rc;
        if (!torn || kl_mono_ns() > until) {
            for (int i = 0; i < 2; i++)
                log->slot_damage[i] = sums[i];
            return rc;
        }
        struct timespec ts = {0, retry_us * 1000L};
        nanosleep(&ts, NULL);
    }
}

/* Are these full roots of a tree of `length` blocks those of slot c? */
static int roots_equal(const kl_node *roots, size_t nroots, uint64_t length, const kl_slot *c) {
    if (nroots != c->nroots || length != c->length)
        return 0;
    for (size_t i = 0; i < nroots; i++)
        if (roots[i].index != c->roots[i].index || roots[i].size != c->roots[i].size ||
            memcmp(roots[i].hash, c->roots[i].hash, KL_HASH_BYTES) != 0)
            return 0;
    return 1;
}

/* Is c the state a again (signed since, or written again by a writer's recovery)? */
static int same_state(const kl_slot *a, const kl_slot *c) {
    return c->fork == a->fork && c->byte_length == a->byte_length &&
           c->active_segment == a->active_segment && c->active_end == a->active_end &&
           roots_equal(a->roots, a->nroots, a->length, c);
}

/* An `ordered` slot written during this boot: its batches were written before it. */
static int ordered_this_boot(const kl_slot *st) {
    uint8_t boot[16];
    kl_boot_id(boot);
    return (st->flags & KL_SLOT_ORDERED) && kl_boot_id_known(boot) &&
           memcmp(st->boot_id, boot, sizeof boot) == 0;
}

/*
 * Batches of a span read with pread (kl_seg_reader), never through a
 * segment's mapping: a slot that does not check out may name bytes its
 * file does not have. A zstd batch's body is decompressed into raw.
 */
typedef struct span_reader {
    kl_seg_reader seg; /* the segment file open (seg.fd < 0: none yet) */
    void *dctx;
    uint8_t *raw;
    size_t raw_cap;
} span_reader;

/* Open segment `first` of a's fork at most: 0, KL_ECORRUPT, or an I/O error. */
static int span_open(span_reader *r, const kl_slot *a, uint64_t first) {
    kl_log *log = r->seg.log;
    kl_seg_reader_close(&r->seg);
    return kl_seg_reader_open(log, &r->seg, first, a->fork);
}

/* Hash the blocks of the checked batch in r->seg.buf into t. */
static int span_hash(span_reader *r, const kl_batch_hdr *h, kl_treeb *t) {
    const uint8_t *raw = NULL;
    int rc = kl_batch_body(h, r->seg.buf, &r->dctx, &r->raw, &r->raw_cap, &raw);
    uint8_t nodes[KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES]; /* the tree file's: a reader keeps none */
    for (uint32_t k = 0; rc == 0 && k < h->count; k++) {
        const uint8_t *data;
        size_t size;
        rc = kl_batch_block(h, raw, k, &data, &size);
        if (rc == 0)
            kl_treeb_add_block(t, data, size, nodes);
    }
    return rc;
}

static size_t find_first(const uint64_t *firsts, size_t n, uint64_t first) {
    size_t i = 0;
    while (i < n && firsts[i] != first)
        i++;
    return i;
}

/*
 * Walk the batches from a's end to st's (segments firsts[0..n), or none if
 * st's active segment is a's): each read and checked, the indexes
 * contiguous, and st's byte count, end and roots what they add up to.
 * 0, KL_ECORRUPT (the span does not check out), or an I/O error.
 */
static int span_walk(span_reader *r, const uint64_t *firsts, size_t n, const kl_slot *a,
                     const kl_slot *st) {
    kl_treeb t;
    kl_treeb_init(&t, a->roots, a->nroots, a->length, r->seg.log->tree_low);
    size_t si = find_first(firsts, n, a->active_segment);
    uint64_t pos = a->active_end, index = a->length, bytes = a->byte_length;
    int rc = span_open(r, a, a->active_segment);
    while (rc == 0 && index < st->length) {
        if (si + 1 < n && firsts[si + 1] == index && firsts[si] < st->active_segment) {
            rc = span_open(r, a, firsts[++si]);
            pos = KL_SEG_HEADER_BYTES;
            continue;
        }
        kl_batch_hdr h;
        rc = kl_seg_reader_batch(
            &r->seg, pos, r->seg.first == st->active_segment ? st->active_end : UINT64_MAX, 1, &h);
        if (rc == 0 && (h.first_index != index || index + h.count > st->length))
            rc = kl_errf(KL_ECORRUPT, "batch at offset %llu holds blocks from %llu, not %llu",
                         (unsigned long long)pos, (unsigned long long)h.first_index,
                         (unsigned long long)index);
        if (rc == 0)
            rc = span_hash(r, &h, &t);
        if (rc < 0)
            break;
        pos += kl_batch_frame_len(&h);
        index += h.count;
        bytes += h.data_bytes;
    }
    if (rc == 0 && (r->seg.first != st->active_segment || pos != st->active_end ||
                    bytes != st->byte_length || !roots_equal(t.roots, t.n, t.length, st)))
        rc = kl_errf(KL_ECORRUPT, "the batches do not add up to the slot");
    return rc;
}

/*
 * Does st, newer than the handle's state a, check out as a read-only open
 * checks the newer slot (recover.c, choose_slot, span_checks_out)? Its
 * segments are there, its active segment's file holds st->active_end bytes,
 * and, unless it is an `ordered` slot of this boot, the batches from a's
 * end to st's check out and their blocks hash to st's roots. 1 if so, 0 if
 * not (a verdict: the slot is left for a later refresh), or an I/O error.
 */
static int slot_checks_out(kl_log *log, const kl_slot *a, const kl_slot *st) {
    if (st->length <= a->length || st->byte_length < a->byte_length ||
        st->active_segment < a->active_segment || st->kind != a->kind ||
        memcmp(st->public_key, a->public_key, KL_PK_BYTES) != 0)
        return 0;
    uint64_t *firsts = NULL;
    size_t n = 0;
    int rc = 0;
    if (st->active_segment != a->active_segment) {
        rc = kl_seg_list(log->seg_dir, &firsts, &n);
        if (rc == 0 && (find_first(firsts, n, a->active_segment) == n ||
                        find_first(firsts, n, st->active_segment) == n))
            rc = kl_errf(KL_ECORRUPT, "a segment the slot names is missing");
    }
    span_reader r = {.seg = {.log = log, .fd = -1}};
    if (rc == 0)
        rc = span_open(&r, a, st->active_segment);
    if (rc == 0 && r.seg.fsize < st->active_end)
        rc = kl_errf(KL_ECORRUPT, "the active segment is %llu bytes, the slot says %llu",
                     (unsigned long long)r.seg.fsize, (unsigned long long)st->active_end);
    if (rc == 0 && !ordered_this_boot(st))
        rc = span_walk(&r, firsts, n, a, st);
    kl_seg_reader_close(&r.seg);
    free(r.raw);
    ZSTD_freeDCtx(r.dctx);
    free(firsts);
    if (rc == KL_ECORRUPT) {
        kl_err_clear();
        return 0;
    }
    return rc < 0 ? rc : 1;
}

/*
 * Index the batches of s from its committed end on, up to block `next`,
 * within `limit` bytes: the bytes commits added since. With `exact`, the
 * batches must end exactly at `limit` (the committed end of the active
 * segment); otherwise (a segment that was active and is now finished) its
 * end is where block `next` begins. Reads stay below `size`, the file's
 * size (the mapping of an active segment is longer than the file). Past a
 * batch header that does not check out the walk goes on at the batch after
 * it (kl_batch_resync), as recovery does; if that cannot be found, the
 * blocks from it on are marked unreadable.
 */
static void index_tail(kl_seg *s, uint64_t limit, uint64_t size, uint64_t next, int exact) {
    uint64_t pos = atomic_load(&s->end), index = atomic_load(&s->next);
    uint64_t bound = KL_MIN(limit, size);
    KL_ASSERT(limit <= s->map_len);
    if (pos < KL_SEG_HEADER_BYTES)
        pos = KL_SEG_HEADER_BYTES;
    while (pos < limit && index < next && s->bad_from == UINT64_MAX) {
        kl_batch_hdr h;
        if (pos + KL_BATCH_HEADER_BYTES > bound ||
            kl_batch_hdr_decode(s->map + pos, (size_t)(bound - pos), &h) < 0 ||
            h.first_index != index || pos + kl_batch_frame_len(&h) > bound) {
            if (kl_seg_resync(s, pos, index, exact ? limit : UINT64_MAX, next, bound, &pos,
                              &index) == 1)
                continue;
            kl_seg_mark_bad(s, index, pos);
            break;
        }
        kl_seg_note(s, index - s->first, pos, h.timestamp_ms); /* offset and time index */
        pos += kl_batch_frame_len(&h);
        index += h.count;
    }
    if (s->bad_from == UINT64_MAX && (index != next || (exact && pos != limit)))
        kl_seg_mark_bad(s, index, pos);
    kl_err_clear();
    atomic_store_explicit(&s->end, exact ? limit : pos, memory_order_release);
    atomic_store_explicit(&s->next, next, memory_order_release);
}

/* The size of segment s's file now. */
static int seg_file_size(kl_log *log, const kl_seg *s, uint64_t *size) {
    char path[4096];
    int fd = -1;
    kl_seg_file(log, path, sizeof path, s->first, "log");
    int rc = kl_io_open(log->io, path, O_RDONLY, 0, &fd);
    if (rc == 0)
        rc = log->io->v->size(log->io, fd, size);
    kl_io_close(log->io, fd);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    return 0;
}

/* Extend the active segment `s` to (end, next); it must be mapped for its whole size. */
static int grow_active(kl_log *log, kl_seg *s, uint64_t end, uint64_t next) {
    uint64_t size = 0;
    int rc = seg_file_size(log, s, &size); /* before anything is read through the mapping */
    if (rc == 0)
        rc = kl_seg_ensure_map(log, s);
    if (rc < 0)
        return rc;
    KL_ASSERT(!atomic_load(&s->sealed) && atomic_load(&s->idx_ready));
    if (end > s->map_len)
        return kl_errf(KL_ECORRUPT, "segment %020llu.log: committed end %llu is past its mapping",
                       (unsigned long long)s->first, (unsigned long long)end);
    index_tail(s, end, size, next, 1);
    return 0;
}

/* A segment that appeared since the last refresh: the new active one, or sealed. */
static int add_segment(kl_log *log, uint64_t first, uint64_t next, int active) {
    kl_seg *s = kl_seg_new(first);
    if (!s)
        return kl_errf(KL_ENOMEM, "segment table");
    atomic_store(&s->next, active ? first : next);
    atomic_store(&s->end, 0);
    int rc = 0;
    if (active)
        rc = kl_seg_index_init(s, log->cfg.segment_bytes + KL_SEG_MAP_SLACK);
    if (rc == 0 && active)
        atomic_store(&s->idx_ready, 1);
    else
        atomic_store(&s->sealed, 1);
    if (rc == 0)
        rc = kl_seg_add(log, s);
    if (rc < 0)
        kl_seg_free(log, s);
    return rc;
}

/*
 * The segments of st that this handle lacks: the old active one is
 * finished (its end found by walking to the next segment's first block),
 * the ones between are added sealed, and st's active one is indexed.
 */
static int roll_to(kl_log *log, const kl_slot *st) {
    uint64_t *firsts = NULL;
    size_t n = 0;
    int rc = kl_seg_list(log->seg_dir, &firsts, &n);
    if (rc < 0)
        return rc;
    kl_seg *old = log->segs[log->nsegs - 1];
    size_t i = 0;
    while (i < n && firsts[i] <= old->first)
        i++;
    size_t a = i;
    while (a < n && firsts[a] < st->active_segment)
        a++;
    if (i == n || a == n || firsts[a] != st->active_segment) {
        char blocks[64];
        rc = kl_errf(KL_ECORRUPT, "segment %020llu.log is missing (%s)",
                     (unsigned long long)st->active_segment,
                     kl_seg_blocks(blocks, sizeof blocks, st->active_segment, st->length));
        goto out;
    }
    uint64_t size = 0;
    rc = kl_seg_ensure_map(log, old);
    if (rc == 0)
        rc = seg_file_size(log, old, &size);
    if (rc < 0)
        goto out;
    index_tail(old, KL_MIN(size, old->map_len), size, firsts[i], 0);
    for (; rc == 0 && i < n && firsts[i] <= st->active_segment; i++) {
        int active = firsts[i] == st->active_segment;
        rc = add_segment(log, firsts[i], active ? st->length : firsts[i + 1], active);
    }
    if (rc == 0)
        rc = grow_active(log, log->segs[log->nsegs - 1], st->active_end, st->length);
out:
    free(firsts);
    return rc;
}

/* Make st the handle's state (its batches indexed), then wake the waiters. */
static void publish(kl_log *log, const kl_slot *st) {
    pthread_mutex_lock(&log->mu);
    log->last = *st;
    pthread_mutex_unlock(&log->mu);
    atomic_store_explicit(&log->byte_length, st->byte_length, memory_order_release);
    atomic_store_explicit(&log->last_commit_ms, st->commit_ms, memory_order_release);
    atomic_store_explicit(&log->length, st->length, memory_order_release);
    kl_follow_notify(log);
}

/*
 * Take slot st, newer than the handle's state: 1 if the log grew to it, 2
 * if it is that state again (now signed, or written again by a writer's
 * recovery), 0 if it is not taken (behind, or it does not check out yet:
 * the stale slot a power loss left beside the one the open took, say), or
 * an error.
 */
static int take_slot(kl_log *log, const kl_slot *st) {
    const kl_slot *a = &log->last; /* only a refresh changes it on a read-only handle */
    KL_ASSERT(st->seq > a->seq && log->nsegs > 0);
    if (st->fork != a->fork)
        return kl_errf(KL_EFORK, "%s was truncated (fork %llu, now %llu): reopen it", log->dir,
                       (unsigned long long)a->fork, (unsigned long long)st->fork);
    if (st->length <= a->length) {
        if (!same_state(a, st))
            return 0;
        pthread_mutex_lock(&log->mu);
        log->last = *st;
        pthread_mutex_unlock(&log->mu);
        return 2;
    }
    int rc = slot_checks_out(log, a, st);
    if (rc <= 0)
        return rc;
    kl_seg *active = log->segs[log->nsegs - 1]; /* past a's if a roll failed half way */
    if (st->active_segment == active->first)
        rc = grow_active(log, active, st->active_end, st->length);
    else if (st->active_segment > active->first)
        rc = roll_to(log, st);
    else
        rc = kl_errf(KL_ECORRUPT, "%s: the newest header slot names an older active segment",
                     log->hdr_path);
    if (rc < 0)
        return rc;
    publish(log, st);
    return 1;
}

int kl_log_refresh(kl_log *log) {
    if (!log)
        return kl_errf(KL_EINVAL, "kl_log_refresh: NULL log");
    if (!log->readonly)
        return 0; /* a writable handle makes the commits: it is always current */
    pthread_mutex_lock(&log->refresh_mu);
    kl_slot c[2];
    int n = 0, taken = 0;
    int rc = read_candidates(log, c, &n);
    for (int i = 0; rc == 0 && taken == 0 && i < n; i++) { /* newest first; the other if refused */
        int t = take_slot(log, &c[i]);
        if (t < 0)
            rc = t;
        else
            taken = t;
    }
    pthread_mutex_unlock(&log->refresh_mu);
    if (rc < 0)
        return kl_log_err(log, rc);
    return taken == 1;
}

/* Milliseconds left until deadline_ns (-1: none). */
static int ms_left(uint64_t deadline_ns) {
    if (deadline_ns == UINT64_MAX)
        return -1;
    uint64_t now = kl_mono_ns();
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/*
 * Sleep on len_word until it moves past `seen` or `left_ms` pass (-1: no
 * limit): the commit path (writable handle) or a refresh (read-only handle)
 * bumps it.
 */
static void sleep_on_len(kl_log *log, uint32_t seen, int left_ms) {
    struct timespec ts = {left_ms / 1000, (long)(left_ms % 1000) * 1000000L};
    atomic_fetch_add(&log->len_waiters, 1);
    syscall(SYS_futex, (uint32_t *)&log->len_word, FUTEX_WAIT_PRIVATE, seen,
            left_ms < 0 ? NULL : &ts, NULL, 0);
    atomic_fetch_sub(&log->len_waiters, 1);
}

/* Why a wait must end now: KL_EIO (failed handle), KL_ECLOSED (closing), or 0. */
static int wait_stopped(kl_log *log) {
    if (atomic_load(&log->failed))
        return kl_errf(KL_EIO, "waiting for %s to grow: the handle failed", log->dir);
    if (atomic_load(&log->follow_closing))
        return kl_errf(KL_ECLOSED, "waiting for %s to grow: the handle is closing", log->dir);
    return 0;
}

/* A writable handle: sleep on len_word until the commit path bumps it. */
static int wait_local(kl_log *log, uint64_t length, uint64_t deadline_ns) {
    for (;;) {
        uint32_t seen = atomic_load_explicit(&log->len_word, memory_order_acquire);
        if (atomic_load_explicit(&log->length, memory_order_acquire) > length)
            return 1;
        int rc = wait_stopped(log);
        int left = ms_left(deadline_ns);
        if (rc < 0 || left == 0)
            return rc;
        sleep_on_len(log, seen, left);
    }
}

/*
 * The handle's inotify watch on the header, made once and kept until close:
 * closing an inotify descriptor waits for the kernel to retire its marks
 * (an RCU grace period, about 10 ms here), far too slow to pay per wait.
 * A watch the kernel dropped (IN_IGNORED: the file was replaced) is made again.
 */
static int watch_header(kl_log *log) {
    if (log->ino_fd < 0) {
        log->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (log->ino_fd < 0)
            return kl_errf(KL_EIO, "inotify: %s", strerror(errno));
        log->ino_wd = -1;
    }
    if (log->ino_wd < 0) {
        log->ino_wd = inotify_add_watch(log->ino_fd, log->hdr_path,
                                        IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
        if (log->ino_wd < 0)
            return kl_errf(KL_EIO, "watching %s: %s", log->hdr_path, strerror(errno));
    }
    return 0;
}

/* Read the watch's pending events; forget the watch if the kernel dropped it. */
static void drain(kl_log *log) {
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(log->ino_fd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *e = (const void *)(buf + off);
            if (e->mask & IN_IGNORED)
                log->ino_wd = -1;
            off += (ssize_t)sizeof *e + e->len;
        }
    }
}

/*
 * The watcher: holds watch_mu, waits for one change of the header (or
 * left_ms), and refreshes, which wakes the other waiters if the log grew.
 */
static int watch_once(kl_log *log, int left_ms) {
    int rc = watch_header(log);
    if (rc == 0)
        rc = kl_log_refresh(log); /* after the watch is in place: no change is missed */
    if (rc == 0) {
        struct pollfd p = {.fd = log->ino_fd, .events = POLLIN};
        if (poll(&p, 1, left_ms) < 0 && errno != EINTR)
            rc = kl_errf(KL_EIO, "waiting on %s: %s", log->hdr_path, strerror(errno));
        drain(log);
    }
    if (rc == 0)
        rc = kl_log_refresh(log);
    return rc < 0 ? rc : 0;
}

/*
 * A read-only handle: one thread at a time (the watcher) waits on the
 * header's inotify watch and refreshes; the others sleep on len_word, which
 * a refresh that finds new commits bumps, as does the watcher when it
 * leaves, so one of them takes its place.
 */
static int wait_remote(kl_log *log, uint64_t length, uint64_t deadline_ns) {
    for (;;) {
        uint32_t seen = atomic_load_explicit(&log->len_word, memory_order_acquire);
        int rc = kl_log_refresh(log);
        if (rc < 0)
            return rc;
        if (atomic_load_explicit(&log->length, memory_order_acquire) > length)
            return 1;
        rc = wait_stopped(log);
        int left = ms_left(deadline_ns);
        if (rc < 0 || left == 0)
            return rc < 0 ? kl_log_err(log, rc) : 0;
        if (pthread_mutex_trylock(&log->watch_mu) != 0) {
            sleep_on_len(log, seen, left);
            continue;
        }
        rc = watch_once(log, left);
        pthread_mutex_unlock(&log->watch_mu);
        kl_follow_notify(log); /* another waiter may take the watch */
        if (rc < 0)
            return kl_log_err(log, rc);
    }
}

int kl_log_wait(kl_log *log, uint64_t length, int timeout_ms) {
    if (!log)
        return kl_errf(KL_EINVAL, "kl_log_wait: NULL log");
    uint64_t deadline =
        timeout_ms < 0 ? UINT64_MAX : kl_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    if (log->readonly)
        return wait_remote(log, length, deadline);
    return wait_local(log, length, deadline);
}
