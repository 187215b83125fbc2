/*
 * recover.c - opening a log: choose the header slot, cut what is past it,
 * rebuild the active segment's index, and make the result durable.
 *
 * The rule (docs/DURABILITY.md): one slot (the anchor) always describes a
 * state that is entirely on disk; the other (the working slot) may describe
 * a newer commit whose bytes were still in flight. So the newest valid slot
 * is accepted only if every batch between the older slot's end and its own
 * end is there and checks out (header, body checksum, contiguous indexes,
 * byte counts); otherwise the older slot is. Nothing past the accepted state
 * survives a writable open.
 *
 * What a reader would get wrong: a rejected newer slot is overwritten during
 * recovery (after the accepted state is made durable), or a later commit
 * that happened to re-create batches of the same shape could make that stale
 * slot "check out" on a later open.
 *
 * Under `always` a writer's commits between checkpoints sync only their
 * segment, so the accepted slot may end before batches that were
 * acknowledged: a writable open with the secret key then takes back every
 * batch past it that checks out and continues the log, hashes it into the
 * tree and signs the state again (extend_tail). An open without the key
 * cannot, and leaves those batches where they are (cut_active).
 *
 * A failed check is not always a torn write: under `always`, a batch in a
 * segment before the newer slot's active one was synced before that slot
 * was written, so a failure there is damage (span_damage), and falling back
 * would cut what a durable checkpoint covers (damaged_span).
 *
 * Cost: the batches of the newest commit span (usually one commit), plus the
 * active segment's unindexed tail, plus (after a power loss under `always`)
 * at most one checkpoint's worth of synced tail. Never the whole log.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "frame.h"
#include "log_internal.h"
#include "segment.h"
#include "util.h"

/* Give up trusting a saved index after this many bad trailing entries. */
#define IDX_MAX_POPS 64

int kl_seg_reader_open(kl_log *log, kl_seg_reader *r, uint64_t first, uint64_t max_fork) {
    char path[4096];
    kl_seg_file(log, path, sizeof path, first, "log");
    memset(r, 0, sizeof *r);
    r->log = log;
    r->first = first;
    r->fd = -1;
    int rc = kl_io_open(log->io, path, O_RDONLY, 0, &r->fd);
    if (rc < 0)
        return kl_errf(rc == -ENOENT ? KL_ECORRUPT : kl_err_from_errno(-rc), "%s: %s", path,
                       strerror(-rc));
    rc = log->io->v->size(log->io, r->fd, &r->fsize);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    uint8_t h[KL_SEG_HEADER_BYTES];
    size_t got = 0;
    rc = kl_io_pread(log->io, r->fd, h, sizeof h, 0, &got);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    rc = kl_seg_header_decode(h, got, first);
    if (rc < 0)
        return kl_err_prefix(rc, "%s: ", path);
    if (kl_seg_header_fork(h) > max_fork)
        return kl_errf(KL_ECORRUPT, "%s: a segment of a later fork", path);
    return 0;
}

void kl_seg_reader_close(kl_seg_reader *r) {
    kl_io_close(r->log->io, r->fd);
    free(r->buf);
    free(r->view);
    r->fd = -1;
    r->buf = NULL;
    r->view = NULL;
}

int kl_seg_reader_batch(kl_seg_reader *r, uint64_t pos, uint64_t limit, int want_body,
                        kl_batch_hdr *h) {
    uint8_t hb[KL_BATCH_HEADER_BYTES];
    size_t got = 0;
    if (limit > r->fsize)
        limit = r->fsize;
    if (pos + KL_BATCH_HEADER_BYTES > limit)
        return kl_errf(KL_ECORRUPT, "no batch header at offset %llu", (unsigned long long)pos);
    int rc = kl_io_pread(r->log->io, r->fd, hb, sizeof hb, pos, &got);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "reading offset %llu: %s", (unsigned long long)pos,
                       strerror(-rc));
    rc = kl_batch_hdr_decode(hb, got, h);
    if (rc < 0)
        return kl_err_prefix(rc, "offset %llu: ", (unsigned long long)pos);
    uint64_t len = kl_batch_frame_len(h);
    if (pos + len > limit)
        return kl_errf(KL_ECORRUPT, "batch at offset %llu runs past the end",
                       (unsigned long long)pos);
    if (!want_body)
        return 0;
    if (len > r->cap) {
        uint8_t *nb = realloc(r->buf, (size_t)len);
        if (!nb)
            return kl_errf(KL_ENOMEM, "batch of %llu bytes", (unsigned long long)len);
        r->buf = nb;
        r->cap = (size_t)len;
    }
    rc = kl_io_pread(r->log->io, r->fd, r->buf, (size_t)len, pos, &got);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "reading offset %llu: %s", (unsigned long long)pos,
                       strerror(-rc));
    if (got != len || memcmp(r->buf, hb, sizeof hb) != 0)
        return kl_errf(KL_ECORRUPT, "batch at offset %llu is cut short", (unsigned long long)pos);
    rc = kl_batch_verify(h, r->buf);
    if (rc < 0)
        return kl_err_prefix(rc, "offset %llu: ", (unsigned long long)pos);
    return 0;
}

static int reader_src_header(void *ctx, uint64_t pos, uint64_t limit, kl_batch_hdr *h) {
    return kl_seg_reader_batch(ctx, pos, limit, 0, h);
}

static int reader_src_view(void *ctx, uint64_t pos, size_t n, const uint8_t **out, size_t *got) {
    kl_seg_reader *r = ctx;
    if (n > r->view_cap) {
        uint8_t *v = realloc(r->view, n);
        if (!v)
            return kl_errf(KL_ENOMEM, "searching past a damaged batch");
        r->view = v;
        r->view_cap = n;
    }
    int rc = kl_io_pread(r->log->io, r->fd, r->view, n, pos, got);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "reading offset %llu: %s", (unsigned long long)pos,
                       strerror(-rc));
    *out = r->view;
    return 0;
}

/* kl_batch_resync over a segment read with pread: up to block to_index at to_pos
   (UINT64_MAX: anywhere), below limit. */
static int reader_resync(kl_seg_reader *r, uint64_t pos, uint64_t at, uint64_t to_pos,
                         uint64_t to_index, uint64_t limit, uint64_t *pos_out, uint64_t *at_out) {
    kl_batch_src src = {reader_src_header, reader_src_view, r};
    return kl_batch_resync(&src, pos, at, to_pos, to_index, limit, pos_out, at_out);
}

__attribute__((format(printf, 2, 3))) static void note_recovery(kl_log *log, const char *fmt, ...);

/* What the nodes at the positions depth `low` gives say of a slot's roots. */
enum { ROOTS_NONE = 0, ROOTS_ZERO = 1, ROOTS_MATCH = 2, ROOTS_DIFFER = 3 };

/*
 * ROOTS_NONE: no root of the slot is of depth low or more (none stored);
 * ROOTS_MATCH: each stored one is there, and at least one is not zeroed;
 * ROOTS_ZERO: each stored one reads as zeros (lost); ROOTS_DIFFER: some
 * position holds another node, or lies past the file's end. Or an I/O error.
 */
static int roots_stored_at(kl_log *log, const kl_slot *s, unsigned low) {
    int stored = 0, matched = 0;
    for (uint32_t i = 0; i < s->nroots; i++) {
        const kl_node *r = &s->roots[i];
        if (!kl_tree_stored(r->index, low))
            continue;
        stored = 1;
        kl_node n;
        int rc = kl_tree_read(log->io, log->tree_fd, low, r->index, &n);
        if (rc == KL_ECORRUPT) /* the file is too short for this depth */
            return ROOTS_DIFFER;
        if (rc < 0)
            return rc;
        if (n.size == r->size && memcmp(n.hash, r->hash, KL_HASH_BYTES) == 0)
            matched = 1;
        else if (!kl_hash_is_zero(n.hash))
            return ROOTS_DIFFER;
    }
    return !stored ? ROOTS_NONE : matched ? ROOTS_MATCH : ROOTS_ZERO;
}

/*
 * The tree file's header is cut short or torn (no magic, or its checksum
 * fails; why: that error). Its one fact of its own is the depth of the
 * lowest stored nodes, and this engine writes two: 0 (version 1 files) and
 * KL_TREE_LOW. Each is weighed against the roots each valid header slot
 * signed, at the positions it gives: a depth where a root is found wins
 * unless the other has one too; failing that, the one depth where no
 * position contradicts the roots (they are zeroed, or none is stored, as
 * in a log of fewer than 16 blocks). A slot that tells neither (the newer
 * one's nodes may never have reached the disk) leaves it to the other; two
 * that tell different depths are an error. A writable open then writes the
 * header again; a read-only one reads on with it, and verify names the
 * header. If no slot tells, the error.
 */
static int depth_told(const int seen[2]) {
    if ((seen[0] == ROOTS_MATCH) != (seen[1] == ROOTS_MATCH))
        return seen[0] == ROOTS_MATCH ? 0 : 1;
    if (seen[0] != ROOTS_MATCH && (seen[0] == ROOTS_DIFFER) != (seen[1] == ROOTS_DIFFER))
        return seen[0] == ROOTS_DIFFER ? 1 : 0;
    return seen[0] == ROOTS_NONE && seen[1] == ROOTS_NONE ? -2 : -1; /* -2: nothing stored */
}

static int mend_tree_header(kl_log *log, const kl_slot s[2], const int valid[2]) {
    char err[512];
    snprintf(err, sizeof err, "%s", kl_err_thread());
    static const unsigned depths[2] = {0, KL_TREE_LOW};
    int pick = -1, conflict = 0, none = 0;
    for (int i = 0; i < 2; i++) {
        if (!valid[i])
            continue;
        int seen[2]; /* per depth: ROOTS_* of this slot's roots */
        for (int d = 0; d < 2; d++)
            if ((seen[d] = roots_stored_at(log, &s[i], depths[d])) < 0)
                return seen[d];
        int told = depth_told(seen);
        if (told >= 0 && pick >= 0 && told != pick)
            conflict = 1;
        if (told >= 0)
            pick = told;
        none |= told == -2;
    }
    if (pick < 0 && none)
        pick = 1; /* no nodes stored either way (an empty log): the layout of new logs */
    if (pick < 0 || conflict)
        return kl_errf(KL_ECORRUPT,
                       "%s: %s, and the depth of its stored nodes cannot be told from where the "
                       "signed roots are (%s)",
                       log->tree_path, err,
                       conflict ? "the two header slots' roots tell different depths"
                                : "the nodes are damaged too");
    unsigned found = depths[pick];
    log->tree_low = found;
    if (log->readonly) {
        snprintf(log->tree_problem, sizeof log->tree_problem,
                 "its header is damaged (%.300s); its nodes are read from depth %u, as the "
                 "signed roots show, until a writable open writes the header again",
                 err, found);
        return 0;
    }
    uint8_t h[KL_TREE_HEADER_BYTES];
    kl_tree_header_encode(h, found);
    int rc = kl_io_write_sync(log->io, log->tree_fd, h, sizeof h, 0, 1);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "rewriting the header of %s: %s", log->tree_path,
                       strerror(-rc));
    note_recovery(log,
                  "the tree file's header was damaged (%.300s) and was written again (nodes "
                  "from depth %u, as the signed roots show)",
                  err, found);
    return 0;
}

/*
 * Open the tree file (its header checked, or mended if torn) before the
 * span check may write to it. A header that checks out but is not one this
 * build knows (a newer version) is refused, never rewritten.
 */
static int open_tree(kl_log *log, const kl_slot s[2], const int valid[2]) {
    int rc =
        kl_io_open(log->io, log->tree_path, log->readonly ? O_RDONLY : O_RDWR, 0, &log->tree_fd);
    if (rc < 0)
        return kl_errf(rc == -ENOENT ? KL_ECORRUPT : kl_err_from_errno(-rc), "%s: %s",
                       log->tree_path, strerror(-rc));
    int torn = 0;
    rc = kl_tree_header_read(log->io, log->tree_fd, &log->tree_low, &torn);
    if (rc == KL_ECORRUPT && torn)
        return mend_tree_header(log, s, valid);
    return rc < 0 ? kl_err_prefix(rc, "%s: ", log->tree_path) : 0;
}

/* Cut the nodes past the accepted length; refuse if committed nodes are missing. */
static int cut_tree(kl_log *log, const kl_slot *s) {
    uint64_t size = 0, want = kl_tree_bytes(s->length, log->tree_low);
    int rc = log->io->v->size(log->io, log->tree_fd, &size);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", log->tree_path, strerror(-rc));
    if (size < want)
        return kl_errf(KL_ECORRUPT, "%s is %llu bytes but the tree of %llu blocks needs %llu",
                       log->tree_path, (unsigned long long)size, (unsigned long long)s->length,
                       (unsigned long long)want);
    if (size > want && (rc = log->io->v->truncate(log->io, log->tree_fd, want)) < 0)
        return kl_errf(kl_err_from_errno(-rc), "cutting %s: %s", log->tree_path, strerror(-rc));
    log->tree_file_size = want;
    return 0;
}

int kl_header_read(kl_log *log, uint8_t **out, size_t *got) {
    uint8_t *buf = malloc(KL_HDR_FILE_BYTES);
    if (!buf)
        return kl_errf(KL_ENOMEM, "reading the header");
    *got = 0;
    int rc = kl_io_pread(log->io, log->hdr_fd, buf, KL_HDR_FILE_BYTES, 0, got);
    if (rc < 0) {
        free(buf);
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", log->hdr_path, strerror(-rc));
    }
    *out = buf;
    return 0;
}

/*
 * A read-only open runs beside the writer, which rewrites its working slot
 * in place at every commit: a read can catch that slot half written, while
 * the other slot (the anchor) may be far older; under `never` it can still
 * be the state the log was created with, length 0. So a read-only open
 * reads a slot that does not check out again, every KL_TORN_RETRY_US for up
 * to KL_TORN_WAIT_MS (the writer's 4 KiB write ends within microseconds),
 * before it settles for the other one. Found by test_view_crash: a view
 * update opened beside the appender saw a log of 0 blocks, about one open
 * in 3,000.
 */
static int read_slots(kl_log *log, kl_slot s[2], int valid[2]) {
    char why[2][400];
    uint64_t until = kl_mono_ns() + KL_TORN_WAIT_MS * UINT64_C(1000000);
    for (;;) {
        uint8_t *buf = NULL;
        size_t got = 0;
        int rc = kl_header_read(log, &buf, &got);
        if (rc < 0)
            return rc;
        /* a slot is a candidate if it decodes and its signature (if it has one yet) holds */
        log->slot_v2 = 0;
        for (int i = 0; i < 2; i++) {
            if (got >= (size_t)(i + 1) * KL_HDR_SLOT_BYTES &&
                kl_load32(buf + i * KL_HDR_SLOT_BYTES + 8) == 2)
                log->slot_v2 = 1;
            valid[i] = got >= (size_t)(i + 1) * KL_HDR_SLOT_BYTES &&
                       kl_slot_decode(buf + i * KL_HDR_SLOT_BYTES, &s[i]) == 0 &&
                       kl_slot_trusted(&s[i]);
            snprintf(why[i], sizeof why[i], "%s",
                     valid[i]                                    ? ""
                     : got < (size_t)(i + 1) * KL_HDR_SLOT_BYTES ? "missing"
                                                                 : kl_err_thread());
        }
        free(buf);
        if ((valid[0] && valid[1]) || !log->readonly || kl_mono_ns() > until)
            break;
        struct timespec ts = {0, KL_TORN_RETRY_US * 1000L};
        nanosleep(&ts, NULL);
    }
    kl_err_clear();
    for (int i = 0; i < 2; i++)
        snprintf(log->slot_problem[i], sizeof log->slot_problem[i], "%.400s", why[i]);
    if (!valid[0] && !valid[1])
        return kl_errf(KL_ECORRUPT, "%s: both header slots are damaged (slot 0: %s; slot 1: %s)",
                       log->hdr_path, why[0], why[1]);
    if (valid[0] && valid[1] &&
        (s[0].kind != s[1].kind || memcmp(s[0].public_key, s[1].public_key, KL_PK_BYTES) != 0))
        return kl_errf(KL_ECORRUPT, "%s: the two header slots name different keys", log->hdr_path);
    return 0;
}

static size_t find_first(const uint64_t *firsts, size_t n, uint64_t first) {
    for (size_t i = 0; i < n; i++)
        if (firsts[i] == first)
            return i;
    return n;
}

/* Is rc a verdict on the bytes (KL_ECORRUPT), as opposed to a failure to read them? */
static int is_verdict(int rc) {
    return rc == KL_ECORRUPT;
}

/*
 * Is the tree file long enough to hold the nodes of `length` blocks, those of
 * a state that is durable? Checked before any node is written past them: a
 * write at that position in a shorter file would leave a hole that reads as
 * zero nodes, and the size check of cut_tree would then pass.
 */
static int tree_holds(kl_log *log, uint64_t length) {
    uint64_t size = 0, want = kl_tree_bytes(length, log->tree_low);
    int rc = log->io->v->size(log->io, log->tree_fd, &size);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", log->tree_path, strerror(-rc));
    if (size < want)
        return kl_errf(KL_ECORRUPT,
                       "%s is %llu bytes but the tree of %llu blocks, which is durable, needs "
                       "%llu: its nodes were cut off (nothing was written to it)",
                       log->tree_path, (unsigned long long)size, (unsigned long long)length,
                       (unsigned long long)want);
    return 0;
}

/*
 * The tree over a span of blocks, grown from the older slot's roots: its
 * new nodes are written to the tree file as they come (a writable open),
 * past the older slot's nodes, so a refused span leaves nothing that counts.
 *
 * Tolerant (a span with proven damage, span_checks_out): the blocks of a
 * damaged batch cannot be hashed, so the stored nodes of depth `low` over
 * them (one per group of 2^low blocks) stand in for them; `snap` is the tree
 * at the last group boundary, and no stored node is made inside a group, so
 * going back to it drops nothing written. Blocks below skip_until are under
 * nodes taken from the file.
 */
typedef struct span_tree {
    kl_treeb tb;
    uint8_t *buf; /* encoded nodes not yet written */
    size_t len, cap;
    uint64_t pos; /* tree-file position of buf[0] */
    int write;
    int tolerant;
    kl_treeb snap;
    uint64_t skip_until;
    void *dctx;
    uint8_t *raw;
    size_t raw_cap;
} span_tree;

/* The nodes a span makes wait in t->buf, written out when it holds
   SPAN_FLUSH_BYTES; it starts at SPAN_FIRST_BYTES (most opens make a few
   nodes, and a check that does not write them needs no more) and doubles. */
#define SPAN_FLUSH_BYTES (1u << 20)
#define SPAN_FIRST_BYTES (16u << 10)

static int span_flush(kl_log *log, span_tree *t) {
    if (!t->write || t->len == 0) {
        t->pos += t->len / KL_TREE_NODE_BYTES;
        t->len = 0;
        return 0;
    }
    int rc = kl_io_write_sync(log->io, log->tree_fd, t->buf, t->len, kl_tree_off(t->pos), 0);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "writing %s: %s", log->tree_path, strerror(-rc));
    t->pos += t->len / KL_TREE_NODE_BYTES;
    t->len = 0;
    return 0;
}

/* Room in t->buf for the nodes one more leaf or stored node can make. */
static int span_room(kl_log *log, span_tree *t) {
    if (t->cap - t->len >= KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES)
        return 0;
    if (t->cap == 0 || (t->write && t->cap < SPAN_FLUSH_BYTES)) {
        size_t cap = t->cap == 0 ? SPAN_FIRST_BYTES : KL_MIN(2 * t->cap, SPAN_FLUSH_BYTES);
        uint8_t *nb = realloc(t->buf, cap);
        if (!nb)
            return kl_errf(KL_ENOMEM, "recovery: %zu bytes for tree nodes", cap);
        t->buf = nb;
        t->cap = cap;
        return 0;
    }
    return span_flush(log, t);
}

/* Add the blocks of one checked batch (its frame in r->buf) to the tree. */
static int span_add_batch(kl_log *log, span_tree *t, const kl_batch_hdr *h, const uint8_t *frame) {
    const uint8_t *raw = NULL;
    int rc = kl_batch_body(h, frame, &t->dctx, &t->raw, &t->raw_cap, &raw);
    if (rc < 0)
        return rc;
    uint64_t group = UINT64_C(1) << log->tree_low;
    for (uint32_t k = 0; k < h->count; k++) {
        const uint8_t *data;
        size_t size;
        rc = kl_batch_block(h, raw, k, &data, &size);
        if (rc < 0)
            return rc;
        if (h->first_index + k < t->skip_until)
            continue; /* under a stored node that stands in for damaged blocks */
        KL_ASSERT(t->tb.length == h->first_index + k);
        if ((rc = span_room(log, t)) < 0)
            return rc;
        t->len += KL_TREE_NODE_BYTES * kl_treeb_add_block(&t->tb, data, size, t->buf + t->len);
        if (t->tolerant && t->tb.length % group == 0)
            t->snap = t->tb;
    }
    return 0;
}

/*
 * Read the batch at pos (frame below limit), which must hold block `index`
 * and end by block `end`, and add its blocks to the tree: 0, KL_ECORRUPT
 * (a verdict on the bytes) or an I/O error. *h gets its header.
 */
static int span_take_batch(kl_log *log, span_tree *t, kl_seg_reader *r, uint64_t pos,
                           uint64_t limit, uint64_t index, uint64_t end, kl_batch_hdr *h) {
    int rc = kl_seg_reader_batch(r, pos, limit, 1, h);
    if (rc == 0 && (h->first_index != index || index + h->count > end))
        rc = kl_errf(KL_ECORRUPT, "batch at offset %llu is not block %llu's",
                     (unsigned long long)pos, (unsigned long long)index);
    return rc == 0 ? span_add_batch(log, t, h, r->buf) : rc;
}

/*
 * Tolerant, blocks [from, to) damaged inside the last group, which c's
 * length leaves partial: no stored node covers them, but c's own roots
 * smaller than a group do (they are signed with c). Put the ones over the
 * blocks from the tree's length up to `to` in place of the nodes built over
 * their blocks so far; nothing there is stored, so nothing is written. 1 if
 * done; 0 if the tree has not reached that group yet (the damage began in a
 * full one).
 */
static int span_skip_by_roots(span_tree *t, uint64_t to, const kl_slot *c, uint64_t group) {
    uint64_t last_group = c->length / group * group, at = t->tb.length;
    if (at >= to)
        return 1;
    if (at < last_group || to > c->length)
        return 0;
    size_t i = 0;
    while (i < c->nroots && kl_ft_right_span(c->roots[i].index) / 2 < at)
        i++; /* c's root over block `at` */
    KL_ASSERT(i < c->nroots);
    uint64_t start = kl_ft_left_span(c->roots[i].index) / 2;
    while (t->tb.n > 0 && kl_ft_left_span(t->tb.roots[t->tb.n - 1].index) / 2 >= start)
        t->tb.n--; /* nodes over blocks under that root: it stands in for them */
    uint64_t end = start;
    for (; i < c->nroots && end < to; i++) {
        KL_ASSERT(t->tb.n < KL_MAX_ROOTS);
        t->tb.roots[t->tb.n++] = c->roots[i];
        end = kl_ft_right_span(c->roots[i].index) / 2 + 1;
    }
    t->tb.length = end;
    t->skip_until = KL_MAX(t->skip_until, end);
    return 1;
}

/*
 * Tolerant: blocks [from, to) are damaged. Put the stored nodes of the groups
 * over them on the tree, from the last group boundary on (in the last group,
 * partial at c's length, c's own roots: span_skip_by_roots; damage that runs
 * from a full group into it takes both). 1 if done; 0 if
 * they cannot stand in (the group began before the older slot's length, or
 * its node is missing), so the roots cannot be checked; or an I/O error.
 */
static int span_skip(kl_log *log, span_tree *t, uint64_t from, uint64_t to, const kl_slot *c) {
    uint64_t group = UINT64_C(1) << log->tree_low, c_len = c->length;
    KL_ASSERT(t->tolerant && from < to);
    if ((to + group - 1) / group * group > c_len) { /* it runs into the last, partial group */
        uint64_t last = c_len / group * group;
        if (from >= last || t->tb.length >= last)
            return span_skip_by_roots(t, to, c, group);
        int rc = span_skip(log, t, from, last, c); /* the full groups: their stored nodes */
        return rc <= 0 ? rc : span_skip_by_roots(t, to, c, group);
    }
    if (t->snap.length <= from)
        t->tb = t->snap; /* the damaged group's leaves added so far go */
    else if (t->tb.length != t->snap.length)
        return 0;
    uint64_t end = KL_MAX((to + group - 1) / group * group, t->tb.length);
    if (t->tb.length % group != 0 || end > c_len)
        return 0;
    while (t->tb.length < end) {
        uint64_t g = t->tb.length;
        kl_node top;
        int rc = kl_tree_read(log->io, log->tree_fd, log->tree_low, 2 * g + group - 1, &top);
        if (rc < 0)
            return is_verdict(rc) ? 0 : rc;
        if ((rc = span_room(log, t)) < 0)
            return rc;
        uint64_t at = kl_tree_spos(top.index, log->tree_low);
        KL_ASSERT(at == t->pos + t->len / KL_TREE_NODE_BYTES);
        kl_tree_node_encode(t->buf + t->len, &top);
        size_t made = kl_treeb_join(&t->tb, &top, 1, at, t->buf + t->len);
        t->len += KL_TREE_NODE_BYTES * (1 + made);
    }
    KL_ASSERT(t->tb.length == end);
    t->snap = t->tb;
    t->skip_until = KL_MAX(t->skip_until, end);
    return 1;
}

/* Do the rebuilt roots equal c's, and does c's signature (if any) hold over them? */
static int span_tree_matches(const span_tree *t, const kl_slot *c) {
    if (t->tb.n != c->nroots || t->tb.length != c->length)
        return 0;
    for (size_t i = 0; i < t->tb.n; i++)
        if (t->tb.roots[i].index != c->roots[i].index || t->tb.roots[i].size != c->roots[i].size ||
            memcmp(t->tb.roots[i].hash, c->roots[i].hash, KL_HASH_BYTES) != 0)
            return 0;
    return kl_slot_trusted(c);
}

/*
 * Damage a span check found: a batch (or a segment header) that fails in a
 * segment before the newer slot's active segment. Under `always` (the newer
 * slot is not `ordered`) every commit there was synced before the commit of
 * that slot began (commits run one at a time, and a commit's batches lie in
 * one segment), so it is not a torn write. Blocks [from, to) of segment
 * `segment` are the first such range; `ranges` counts them.
 */
typedef struct span_damage {
    uint64_t from, to, segment;
    unsigned ranges;
    /* after such damage, a failure in c's own commit (which may be a torn write) stopped the
       check at block own_from (own: 1) */
    int own;
    uint64_t own_from;
} span_damage;

/*
 * Is a failure at block `index` of segment firsts[si], in the batch at `pos`
 * (UINT64_MAX: the segment's header), proven damage (span_damage)? In c's
 * active segment, if the batch lies before c's synced_end: the bytes there
 * were durable before c's commit began (header.h).
 */
static int is_damage(const uint64_t *firsts, size_t n, size_t si, uint64_t index, uint64_t pos,
                     const kl_slot *c) {
    if (firsts[si] == c->active_segment)
        return pos != UINT64_MAX && pos < c->synced_end;
    return !(c->flags & KL_SLOT_ORDERED) && si + 1 < n && firsts[si] < c->active_segment &&
           index < firsts[si + 1] && firsts[si + 1] <= c->active_segment;
}

/*
 * The blocks of the failed batch at pos (block index, segment firsts[si]: a
 * sealed one, its roll cut it to its end, with block seg_next after its last;
 * or the active one, which ends with block seg_next at byte end): *to is the
 * block after them, *next_pos where the next batch is, and *bytes their data
 * bytes. If its header is damaged, the next batch is searched for
 * (kl_batch_resync, up to the segment's end) and *bytes is UINT64_MAX
 * (unknown); if none is found, the rest of the segment (*next_pos
 * UINT64_MAX).
 */
static int damaged_batch(kl_seg_reader *r, uint64_t pos, uint64_t index, uint64_t seg_next,
                         uint64_t end, uint64_t *to, uint64_t *next_pos, uint64_t *bytes) {
    kl_batch_hdr h;
    int rc = kl_seg_reader_batch(r, pos, end, 0, &h);
    if (rc < 0 && !is_verdict(rc))
        return rc;
    kl_err_clear();
    if (rc == 0 && h.first_index == index && h.count > 0 && index + h.count <= seg_next) {
        *to = index + h.count;
        *next_pos = pos + kl_batch_frame_len(&h);
        *bytes = h.data_bytes;
        return 0;
    }
    uint64_t rpos = 0, rat = 0, limit = end == UINT64_MAX ? r->fsize : end;
    rc = reader_resync(r, pos, index, end, seg_next, limit, &rpos, &rat);
    if (rc < 0)
        return rc;
    *to = rc == 1 ? rat : seg_next;
    *next_pos = rc == 1 ? rpos : UINT64_MAX;
    *bytes = UINT64_MAX;
    return 0;
}

/*
 * Do the batches from a's end to c's end exist and check out, and do their
 * blocks hash to the tree c signed? The newer slot c is only trusted if so:
 * 1 if they do, 0 if they do not, or a negative error if they could not be
 * read (then nothing may be decided). When the first failure is proven
 * damage (span_damage), *d says where (d->ranges > 0). Tolerant: go past
 * damaged batches (stored nodes stand in for their blocks, span_skip) and
 * answer whether the rest checks out and the roots are c's.
 */
static int span_checks_out(kl_log *log, const uint64_t *firsts, size_t n, const kl_slot *a,
                           const kl_slot *c, int tolerant, int write, span_damage *d) {
    memset(d, 0, sizeof *d);
    if (c->length < a->length || c->byte_length < a->byte_length ||
        c->active_segment < a->active_segment || c->fork != a->fork)
        return 0;
    size_t si = find_first(firsts, n, a->active_segment);
    if (si == n)
        return 0;
    if (c->kind != a->kind || memcmp(c->public_key, a->public_key, KL_PK_BYTES) != 0)
        return 0;
    int rc = write ? tree_holds(log, a->length) : 0;
    if (rc < 0)
        return rc;
    span_tree t = {
        .pos = kl_tree_count(a->length, log->tree_low), .write = write, .tolerant = tolerant};
    kl_treeb_init(&t.tb, a->roots, a->nroots, a->length, log->tree_low);
    t.snap = t.tb;
    kl_seg_reader r;
    rc = kl_seg_reader_open(log, &r, firsts[si], UINT64_MAX);
    uint64_t pos = a->active_end, index = a->length, bytes = a->byte_length;
    int bytes_known = 1;
    while (rc == 0) {
        if (index == c->length) {
            rc = firsts[si] == c->active_segment && pos == c->active_end &&
                 (!bytes_known || bytes == c->byte_length) && span_tree_matches(&t, c);
            if (rc == 1) {
                int frc = span_flush(log, &t);
                rc = frc < 0 ? frc : 1;
            }
            break;
        }
        if (si + 1 < n && firsts[si + 1] == index && firsts[si] < c->active_segment) {
            kl_seg_reader_close(&r);
            si++;
            rc = kl_seg_reader_open(log, &r, firsts[si], UINT64_MAX);
            pos = KL_SEG_HEADER_BYTES;
            if (is_verdict(rc) && is_damage(firsts, n, si, index, UINT64_MAX, c)) {
                pos = UINT64_MAX; /* a damaged segment header: the whole segment */
                rc = 0;
            } else {
                continue;
            }
        }
        kl_batch_hdr h;
        if (pos != UINT64_MAX) {
            rc = span_take_batch(log, &t, &r, pos, UINT64_MAX, index, c->length, &h);
            if (rc == 0) {
                pos += kl_batch_frame_len(&h);
                index += h.count;
                bytes += h.data_bytes;
                continue;
            }
            if (!is_verdict(rc) || !is_damage(firsts, n, si, index, pos, c)) {
                if (is_verdict(rc) && d->ranges > 0 && firsts[si] == c->active_segment) {
                    d->own = 1;
                    d->own_from = index;
                }
                break;
            }
        }
        /* proven damage at block index: note it, and go past it if tolerant */
        int active = firsts[si] == c->active_segment;
        uint64_t to = active ? c->length : firsts[si + 1], next_pos = UINT64_MAX, got = UINT64_MAX;
        rc = pos == UINT64_MAX
                 ? 0
                 : damaged_batch(&r, pos, index, to, active ? c->active_end : UINT64_MAX, &to,
                                 &next_pos, &got);
        if (rc < 0)
            break;
        if (d->ranges++ == 0) {
            d->from = index;
            d->to = to;
            d->segment = firsts[si];
        }
        if (active && next_pos > c->synced_end) {
            rc = 0; /* it runs into c's own commit, which may be a torn write: no telling */
            d->own = 1;
            d->own_from = index;
            break;
        }
        if (!tolerant || (rc = span_skip(log, &t, index, to, c)) <= 0)
            break;
        rc = 0;
        index = to;
        pos = next_pos;
        bytes_known = bytes_known && got != UINT64_MAX;
        bytes += bytes_known ? got : 0;
        /* no batch found past a damaged header: go on at the next segment */
        KL_ASSERT(next_pos != UINT64_MAX || firsts[si + 1] == index);
    }
    kl_seg_reader_close(&r);
    free(t.buf);
    free(t.raw);
    ZSTD_freeDCtx(t.dctx);
    if (rc < 0 && is_verdict(rc))
        return 0;
    return rc;
}

/* Remove segment files (and their indexes) past the accepted state, and stray temp files. */
static int cut_segments(kl_log *log, const uint64_t *firsts, size_t n, const kl_slot *s) {
    char path[4096];
    for (size_t i = 0; i < n; i++) {
        if (firsts[i] <= s->active_segment)
            continue;
        const char *exts[] = {"log", "idx", "idx.tmp", "tix", "tix.tmp"};
        for (int k = 0; k < 5; k++) {
            kl_seg_file(log, path, sizeof path, firsts[i], exts[k]);
            int rc = log->io->v->unlink(log->io, path);
            if (rc < 0 && rc != -ENOENT)
                return kl_errf(kl_err_from_errno(-rc), "removing %s: %s", path, strerror(-rc));
        }
    }
    return 0;
}

/*
 * The active segment's time index, for the offset entries kept so far: the
 * saved time entries that agree with them (their rel_index, and the last
 * one's batch header), then the missing ones from batch headers. A header
 * that does not read leaves the time index shorter (a prefix), not wrong.
 */
static int index_active_tix(kl_log *log, kl_seg *seg, kl_seg_reader *r, uint64_t end) {
    char path[4096];
    kl_seg_file(log, path, sizeof path, seg->first, "tix");
    uint64_t n = atomic_load(&seg->idx.count), k = 0;
    kl_tidx_load(&seg->tix, log->io, path, n);
    for (uint64_t m = kl_tidx_count(&seg->tix); k < m; k++) {
        uint64_t ts, rel, irel, pos;
        kl_tidx_entry(&seg->tix, k, &ts, &rel);
        kl_oidx_entry(&seg->idx, k, &irel, &pos);
        if (rel != irel)
            break;
    }
    if (k > 0) { /* the last kept entry against its batch; if it disagrees, trust none */
        uint64_t ts, rel, irel, pos;
        kl_batch_hdr h;
        kl_tidx_entry(&seg->tix, k - 1, &ts, &rel);
        kl_oidx_entry(&seg->idx, k - 1, &irel, &pos);
        int rc = kl_seg_reader_batch(r, pos, end, 0, &h);
        if (rc < 0 && !is_verdict(rc))
            return rc;
        if (rc < 0 || h.timestamp_ms != ts || h.first_index != seg->first + rel)
            k = 0;
    }
    kl_tidx_cut(&seg->tix, k);
    for (; k < n; k++) {
        uint64_t rel, pos;
        kl_batch_hdr h;
        kl_oidx_entry(&seg->idx, k, &rel, &pos);
        int rc = kl_seg_reader_batch(r, pos, end, 0, &h);
        if (rc < 0 && !is_verdict(rc))
            return rc;
        if (rc < 0 || h.first_index != seg->first + rel)
            break;
        kl_tidx_note(&seg->tix, rel, h.timestamp_ms);
    }
    kl_err_clear();
    return 0;
}

/*
 * The active segment's index: keep the saved entries that check out below
 * the committed end, then index the rest by walking batch headers (past a
 * damaged one at the batch after it, if it can be found).
 */
static int index_active(kl_log *log, kl_seg *seg, const kl_slot *s) {
    char path[4096];
    kl_seg_file(log, path, sizeof path, seg->first, "idx");
    int rc = kl_seg_index_init(seg, log->cfg.segment_bytes + KL_SEG_MAP_SLACK);
    if (rc < 0)
        return rc;
    int sealed_ok;
    kl_oidx_load(&seg->idx, log->io, path, s->active_end, &sealed_ok);
    kl_seg_reader r;
    rc = kl_seg_reader_open(log, &r, seg->first, UINT64_MAX);
    if (rc < 0) {
        kl_seg_reader_close(&r);
        return kl_err_prefix(rc, "active segment: ");
    }
    uint64_t pos = KL_SEG_HEADER_BYTES, index = seg->first;
    for (int pops = 0;; pops++) {
        uint64_t n = atomic_load(&seg->idx.count);
        if (n == 0)
            break;
        uint64_t rel, p;
        kl_oidx_entry(&seg->idx, n - 1, &rel, &p);
        kl_batch_hdr h;
        rc = pops < IDX_MAX_POPS ? kl_seg_reader_batch(&r, p, s->active_end, 0, &h) : KL_ECORRUPT;
        if (rc < 0 && !is_verdict(rc))
            goto out;
        if (rc == 0 && h.first_index == seg->first + rel) {
            pos = p;
            index = h.first_index;
            break;
        }
        kl_oidx_cut(&seg->idx, pops < IDX_MAX_POPS ? p : 0);
    }
    kl_oidx_cut(&seg->idx, pos + 1);
    rc = index_active_tix(log, seg, &r, s->active_end);
    if (rc < 0)
        goto out;
    while (pos < s->active_end && index < s->length) {
        kl_batch_hdr h;
        rc = kl_seg_reader_batch(&r, pos, s->active_end, 0, &h);
        if (rc < 0 && !is_verdict(rc))
            goto out;
        if (rc < 0 || h.first_index != index) {
            uint64_t rpos = 0, rat = 0;
            rc =
                reader_resync(&r, pos, index, s->active_end, s->length, s->active_end, &rpos, &rat);
            if (rc < 0)
                goto out;
            if (rc == 1) { /* only the damaged batch's blocks are unreadable */
                pos = rpos;
                index = rat;
                continue;
            }
            kl_seg_mark_bad(seg, index, pos); /* reads of blocks from here on report the damage */
            break;
        }
        kl_seg_note(seg, index - seg->first, pos, h.timestamp_ms);
        pos += kl_batch_frame_len(&h);
        index += h.count;
    }
    if (seg->bad_from == UINT64_MAX && (pos != s->active_end || index != s->length))
        kl_seg_mark_bad(seg, index, pos);
    rc = 0;
out:
    kl_seg_reader_close(&r);
    return rc;
}

/* Add a sentence to what this open's recovery reports (kl_info.recovery). */
__attribute__((format(printf, 2, 3))) static void note_recovery(kl_log *log, const char *fmt, ...) {
    size_t n = strlen(log->recovery_note);
    if (n + 3 >= sizeof log->recovery_note)
        return;
    if (n)
        n += (size_t)snprintf(log->recovery_note + n, sizeof log->recovery_note - n, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(log->recovery_note + n, sizeof log->recovery_note - n, fmt, ap);
    va_end(ap);
}

/*
 * One pass of regrow_tree: hash blocks [from, s->length) onto the roots at
 * `from` (the segments from the one holding block `from` on), the new nodes
 * written only if `write`. 1 if they make s's roots, 0 if they do not, 2 if
 * a block fails its checks (the reason in this thread's error context), or
 * an I/O error.
 */
static int regrow_pass(kl_log *log, const uint64_t *firsts, size_t n, const kl_slot *s,
                       uint64_t from, const kl_node *roots, size_t nroots, int write) {
    span_tree t = {.pos = kl_tree_count(from, log->tree_low), .write = write, .skip_until = from};
    kl_treeb_init(&t.tb, roots, nroots, from, log->tree_low);
    size_t si = 0;
    while (si + 1 < n && firsts[si + 1] <= from)
        si++;
    uint64_t index = n ? firsts[si] : 0;
    int rc = n && index <= from
                 ? 0
                 : kl_errf(KL_ECORRUPT, "no segment holds block %llu", (unsigned long long)from);
    while (rc == 0 && index < s->length) {
        kl_seg_reader r;
        rc = kl_seg_reader_open(log, &r, firsts[si], UINT64_MAX);
        uint64_t pos = KL_SEG_HEADER_BYTES, next = si + 1 < n ? firsts[si + 1] : UINT64_MAX;
        uint64_t limit = firsts[si] == s->active_segment ? s->active_end : UINT64_MAX;
        while (rc == 0 && index < s->length && index < next) {
            kl_batch_hdr h;
            rc = span_take_batch(log, &t, &r, pos, limit, index, KL_MIN(next, s->length), &h);
            if (rc == 0) {
                pos += kl_batch_frame_len(&h);
                index += h.count;
            }
        }
        kl_seg_reader_close(&r);
        if (rc == 0 && index < s->length && (++si >= n || firsts[si] != index))
            rc = kl_errf(KL_ECORRUPT, "no segment starts at block %llu", (unsigned long long)index);
        if (is_verdict(rc))
            kl_err_prefix(rc, "segment %020llu: ", (unsigned long long)firsts[KL_MIN(si, n - 1)]);
    }
    if (rc == 0)
        rc = span_tree_matches(&t, s);
    if (rc == 1 && (rc = span_flush(log, &t)) == 0)
        rc = 1;
    free(t.buf);
    free(t.raw);
    ZSTD_freeDCtx(t.dctx);
    return is_verdict(rc) ? 2 : rc;
}

/*
 * A writable open finds the tree file shorter than state s's nodes need (cut
 * by a file system or by hand; the nodes are derived from the blocks):
 * rebuild the missing ones from the blocks, from the last group whose nodes
 * are all in the file, and write them only once a first pass has found that
 * the blocks make s's signed roots. If they do not, a node the file kept may
 * be wrong too (nodes carry no checksum of their own): try again with every
 * node, from block 0. 0 if the file holds s's nodes (now or
 * already, or its header is cut too: open_tree's case), KL_ECORRUPT if they
 * cannot be rebuilt (nothing is written), or an I/O error.
 */
static int regrow_tree(kl_log *log, const uint64_t *firsts, size_t n, const kl_slot *s) {
    uint64_t size = 0, want = kl_tree_bytes(s->length, log->tree_low);
    int rc = log->io->v->size(log->io, log->tree_fd, &size);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", log->tree_path, strerror(-rc));
    if (size >= want || size < KL_TREE_HEADER_BYTES)
        return 0;
    uint64_t have = (size - KL_TREE_HEADER_BYTES) / KL_TREE_NODE_BYTES;
    uint64_t lo = 0, hi = s->length >> log->tree_low; /* groups of blocks whose nodes are all in */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (kl_tree_nodes(mid) <= have)
            lo = mid;
        else
            hi = mid - 1;
    }
    uint64_t from = lo << log->tree_low, idx[KL_MAX_ROOTS];
    kl_node roots[KL_MAX_ROOTS];
    size_t nroots = kl_ft_full_roots(from, idx);
    for (size_t i = 0; i < nroots && rc == 0; i++)
        rc = kl_tree_read(log->io, log->tree_fd, log->tree_low, idx[i], &roots[i]);
    if (rc == 0)
        rc = regrow_pass(log, firsts, n, s, from, roots, nroots, 0);
    int redone = 0; /* the nodes kept were wrong too: every node is rebuilt */
    if (rc == 0 && from > 0) {
        from = 0;
        nroots = 0;
        redone = 1;
        rc = regrow_pass(log, firsts, n, s, from, roots, nroots, 0);
    }
    char why[300] = "";
    if (rc == 2) { /* a block the nodes need fails its checks: no try from block 0 helps */
        snprintf(why, sizeof why, ": %s", kl_err_thread());
        rc = 0;
    }
    if (rc == 1)
        rc = regrow_pass(log, firsts, n, s, from, roots, nroots, 1);
    if (rc == 1) {
        kl_io_op op = {.kind = KL_IO_OP_DATASYNC, .fd = log->tree_fd};
        rc = kl_io_submit(log->io, &op, 1);
        if (rc < 0)
            return kl_errf(kl_err_from_errno(-rc), "syncing %s: %s", log->tree_path, strerror(-rc));
        note_recovery(log,
                      "%s was cut short (%llu of %llu bytes): the nodes of blocks %llu..%llu "
                      "were rebuilt from the blocks, which make the signed roots%s",
                      log->tree_path, (unsigned long long)size, (unsigned long long)want,
                      (unsigned long long)from, (unsigned long long)s->length - 1,
                      redone ? " (the nodes the file still held did not)" : "");
        return 0;
    }
    if (rc < 0 && !is_verdict(rc))
        return rc;
    kl_err_clear();
    return kl_errf(KL_ECORRUPT,
                   "%s is %llu bytes but the tree of %llu blocks needs %llu, and the blocks "
                   "from %llu on do not make its signed roots again (nothing was written)%s",
                   log->tree_path, (unsigned long long)size, (unsigned long long)s->length,
                   (unsigned long long)want, (unsigned long long)from, why);
}

/*
 * A writer's commit under `always` syncs only its segment (commit.c), so the
 * accepted slot may end before batches that were acknowledged: their tree
 * nodes and slot were written but perhaps never reached the disk. Take every
 * batch past acc's end in its segment that checks out and continues the
 * log (the first that does not ends the scan: a torn or unsynced write, or
 * the zeroed space ahead), hash its blocks into the tree (nodes written past
 * acc's), and give *acc their state, signed. *grown: how many blocks came.
 * A replica cannot sign, and its commits sync all three files: it keeps acc.
 */
static int extend_tail(kl_log *log, kl_slot *acc, uint64_t *grown) {
    *grown = 0;
    if (log->readonly || !log->has_sk)
        return 0; /* without the key, cut_active leaves the tail where it is */
    int rc = tree_holds(log, acc->length);
    if (rc < 0)
        return rc;
    span_tree t = {.pos = kl_tree_count(acc->length, log->tree_low), .write = 1};
    kl_treeb_init(&t.tb, acc->roots, acc->nroots, acc->length, log->tree_low);
    kl_seg_reader r;
    rc = kl_seg_reader_open(log, &r, acc->active_segment, UINT64_MAX);
    uint64_t pos = acc->active_end, index = acc->length, bytes = acc->byte_length, ms = 0;
    while (rc == 0) {
        kl_batch_hdr h;
        rc = kl_seg_reader_batch(&r, pos, UINT64_MAX, 1, &h);
        if (rc == 0 && (h.first_index != index || h.count == 0))
            break;
        if (rc == 0)
            rc = span_add_batch(log, &t, &h, r.buf);
        if (rc < 0) {
            if (is_verdict(rc))
                rc = 0; /* the end of what was synced */
            break;
        }
        pos += kl_batch_frame_len(&h);
        index += h.count;
        bytes += h.data_bytes;
        ms = h.timestamp_ms;
    }
    if (rc == 0 && index > acc->length)
        rc = span_flush(log, &t);
    kl_seg_reader_close(&r);
    free(t.buf);
    free(t.raw);
    ZSTD_freeDCtx(t.dctx);
    if (rc < 0 || index == acc->length)
        return rc < 0 ? kl_err_prefix(rc, "recovering the synced tail: ") : 0;
    *grown = index - acc->length;
    note_recovery(log,
                  "blocks %llu..%llu, synced past the last checkpoint, were recovered from "
                  "their segment (tree and header slot rebuilt)",
                  (unsigned long long)acc->length, (unsigned long long)index - 1);
    acc->length = index;
    acc->byte_length = bytes;
    acc->active_end = pos;
    acc->commit_ms = KL_MAX(acc->commit_ms, ms);
    acc->flags = 0;
    acc->nroots = (uint32_t)t.tb.n;
    memcpy(acc->roots, t.tb.roots, t.tb.n * sizeof *t.tb.roots);
    kl_commit_sign(log, acc);
    return 0;
}

/*
 * Does a batch that checks out (header and body) and continues the log lie
 * at s's end of its active segment? What extend_tail would take back first.
 */
static int tail_continues(kl_log *log, const kl_slot *s, int *yes) {
    kl_seg_reader r;
    kl_batch_hdr h;
    *yes = 0;
    int rc = kl_seg_reader_open(log, &r, s->active_segment, UINT64_MAX);
    if (rc == 0)
        rc = kl_seg_reader_batch(&r, s->active_end, UINT64_MAX, 1, &h);
    kl_seg_reader_close(&r);
    if (rc < 0 && !is_verdict(rc))
        return kl_err_prefix(rc, "reading past the last checkpoint: ");
    kl_err_clear();
    *yes = rc == 0 && h.first_index == s->length && h.count > 0;
    return 0;
}

/*
 * Cut the active segment to the committed end; refuse if committed bytes are
 * missing. An open without the secret key cuts nothing that extend_tail
 * would take back: under `always` those are batches a writer synced (and
 * acknowledged) past its last checkpoint, which only the key can sign again.
 * They stay where they are, past the end this open serves, for the next
 * open with the key; file_size says the log's end, so closing this handle
 * does not cut them either (kl_commit_trim), and a replica's appends write
 * over them (its commits are checkpoints, so its tail never holds one that
 * was acknowledged).
 */
static int cut_active(kl_log *log, kl_seg *seg, const kl_slot *s) {
    char path[4096];
    kl_seg_file(log, path, sizeof path, seg->first, "log");
    int rc = kl_io_open(log->io, path, O_RDWR, 0, &seg->wfd);
    char blocks[64];
    kl_seg_blocks(blocks, sizeof blocks, s->active_segment, s->length);
    if (rc < 0)
        return kl_errf(rc == -ENOENT ? KL_ECORRUPT : kl_err_from_errno(-rc),
                       "%s: %s (the log's active segment, %s committed there)", path, strerror(-rc),
                       blocks);
    uint64_t size = 0;
    rc = log->io->v->size(log->io, seg->wfd, &size);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "%s: %s", path, strerror(-rc));
    if (size < s->active_end)
        return kl_errf(KL_ECORRUPT,
                       "%s is %llu bytes but %llu are committed: the end of the segment's "
                       "%s is cut off",
                       path, (unsigned long long)size, (unsigned long long)s->active_end, blocks);
    int keep = 0;
    if (size > s->active_end && !log->has_sk && (rc = tail_continues(log, s, &keep)) < 0)
        return rc;
    if (keep)
        note_recovery(log,
                      "blocks from %llu on, past the last checkpoint, were left in place: "
                      "this open cannot sign them again (%.300s); an open with the secret key "
                      "takes them back",
                      (unsigned long long)s->length, log->sk_problem);
    if (size > s->active_end && !keep) {
        /* zeroed space ahead is routine; a whole batch there is a commit that did not count */
        uint8_t hb[KL_BATCH_HEADER_BYTES];
        size_t got = 0;
        kl_batch_hdr h;
        if (kl_io_pread(log->io, seg->wfd, hb, sizeof hb, s->active_end, &got) == 0 &&
            kl_batch_hdr_decode(hb, got, &h) == 0 && h.first_index == s->length)
            note_recovery(log,
                          "blocks from %llu on, written past the last commit that counts "
                          "(a commit cut short, or a damaged newer header slot), were cut",
                          (unsigned long long)s->length);
        rc = log->io->v->truncate(log->io, seg->wfd, s->active_end);
        if (rc < 0)
            return kl_errf(kl_err_from_errno(-rc), "cutting %s: %s", path, strerror(-rc));
    }
    seg->file_size = s->active_end;
    return 0;
}

/* Build the segment table from the files up to the accepted state. */
static int load_table(kl_log *log, const uint64_t *firsts, size_t n, const kl_slot *s,
                      kl_seg **active) {
    size_t si = find_first(firsts, n, s->active_segment);
    char blocks[64];
    if (si == n)
        return kl_errf(KL_ECORRUPT, "segment %020llu.log is missing (%s)",
                       (unsigned long long)s->active_segment,
                       kl_seg_blocks(blocks, sizeof blocks, s->active_segment, s->length));
    for (size_t i = 0; i <= si; i++) {
        kl_seg *seg = kl_seg_new(firsts[i]);
        if (!seg)
            return kl_errf(KL_ENOMEM, "segment table");
        int sealed = i < si;
        atomic_store(&seg->sealed, sealed);
        atomic_store(&seg->next, sealed ? firsts[i + 1] : s->length);
        atomic_store(&seg->end, sealed ? 0 : s->active_end);
        int rc = kl_seg_add(log, seg);
        if (rc < 0) {
            kl_seg_free(log, seg);
            return rc;
        }
        *active = seg;
    }
    return 0;
}

/*
 * The span from a to the newer slot c failed with proven damage (d): falling
 * back to a would cut blocks that c, written after them, covers; the older
 * slot still holding the checkpoint before c (a crash before c's second
 * slot was written, commit.c write_twin) must not cost them. So check the
 * span again past the damage: if the rest checks out and the roots come out
 * as c's (stored tree nodes standing in for the damaged blocks), c is
 * accepted (1) and reads report the damaged blocks; else a writable open
 * refuses (KL_ECORRUPT naming them) and changes nothing, and a read-only
 * open, which cuts nothing, falls back to a (0).
 */
static int damaged_span(kl_log *log, const uint64_t *firsts, size_t n, const kl_slot *a,
                        const kl_slot *c, const span_damage *first) {
    span_damage d;
    int ok = span_checks_out(log, firsts, n, a, c, 1, 0, &d);
    if (ok == 1 && !log->readonly) /* checked: now write the nodes it made */
        ok = span_checks_out(log, firsts, n, a, c, 1, 1, &d);
    if (ok < 0)
        return ok;
    if (ok == 1) {
        note_recovery(log,
                      "blocks %llu..%llu (segment %020llu) fail their checks%s; a later commit "
                      "that covers them was kept (length %llu), and reading them reports it",
                      (unsigned long long)d.from, (unsigned long long)d.to - 1,
                      (unsigned long long)d.segment, d.ranges > 1 ? ", and more ranges after" : "",
                      (unsigned long long)c->length);
        return 1;
    }
    if (log->readonly)
        return 0;
    char own[200] = "the rest of that commit could not be checked without them";
    if (d.own)
        snprintf(own, sizeof own,
                 "past them, from block %llu on, the newest commit's own batches fail as well "
                 "(a write a crash tore, or damage), so that slot cannot be checked",
                 (unsigned long long)d.own_from);
    return kl_errf(KL_ECORRUPT,
                   "blocks %llu..%llu (segment %020llu) fail their checks, and the newest header "
                   "slot (length %llu) was written after they were synced: that is damage, not "
                   "a torn write; %s; no block was cut and no header slot changed (a "
                   "read-only open serves the older slot's %llu blocks)",
                   (unsigned long long)first->from, (unsigned long long)first->to - 1,
                   (unsigned long long)first->segment, (unsigned long long)c->length, own,
                   (unsigned long long)a->length);
}

/*
 * Choose the slot to trust: *pick is its number, *rejected whether a newer
 * one was refused, *retwin whether the other slot must be rewritten with the
 * chosen state though it was valid (a newer slot kept over damage).
 */
static int choose_slot(kl_log *log, const uint64_t *firsts, size_t n, const kl_slot s[2],
                       const int valid[2], int *pick, int *rejected, int *retwin) {
    *rejected = 0;
    *retwin = 0;
    *pick = valid[0] ? 0 : 1;
    if (!valid[0] || !valid[1])
        return 0;
    int newer = s[1].seq > s[0].seq;
    uint8_t boot[16];
    kl_boot_id(boot);
    int ok;
    span_damage d = {0};
    if ((s[newer].flags & KL_SLOT_ORDERED) && kl_boot_id_known(boot) &&
        memcmp(s[newer].boot_id, boot, 16) == 0)
        ok = 1; /* written after its batches and nodes, in this boot: the kernel holds them */
    else
        ok = span_checks_out(log, firsts, n, &s[1 - newer], &s[newer], 0, !log->readonly, &d);
    if (ok == 0 && d.ranges > 0) {
        ok = damaged_span(log, firsts, n, &s[1 - newer], &s[newer], &d);
        *retwin = ok == 1;
    }
    if (ok < 0)
        return kl_err_prefix(ok, "checking the newest commit: ");
    *pick = ok ? newer : 1 - newer;
    *rejected = !ok;
    return 0;
}

/* fdatasync every segment from first `from` on (the accepted state may span several). */
static int sync_segments_from(kl_log *log, uint64_t from, kl_seg *active) {
    for (size_t i = 0; i < log->nsegs; i++) {
        kl_seg *seg = log->segs[i];
        if (seg->first < from || seg == active)
            continue;
        char path[4096];
        int fd = -1;
        kl_seg_file(log, path, sizeof path, seg->first, "log");
        int rc = kl_io_open(log->io, path, O_RDONLY, 0, &fd);
        if (rc == 0) {
            kl_io_op op = {.kind = KL_IO_OP_DATASYNC, .fd = fd};
            rc = kl_io_submit(log->io, &op, 1);
        }
        kl_io_close(log->io, fd);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * Make the accepted state durable (it may still be only in the page cache, after
 * a process crash under `interval` or `never`), then overwrite a refused newer slot.
 */
static int make_durable(kl_log *log, kl_seg *active, const kl_slot s[2], const int valid[2],
                        int pick, int rejected, int retwin, const kl_slot *grown) {
    uint64_t from = s[pick].active_segment;
    for (int i = 0; i < 2; i++)
        if (valid[i] && s[i].active_segment < from)
            from = s[i].active_segment;
    kl_io_op ops[3] = {
        {.kind = KL_IO_OP_DATASYNC, .fd = active->wfd},
        {.kind = KL_IO_OP_DATASYNC, .fd = log->tree_fd},
        {.kind = KL_IO_OP_DATASYNC, .fd = log->hdr_fd},
    };
    int rc = sync_segments_from(log, from, active);
    if (rc == 0)
        rc = kl_io_submit(log->io, ops, 3);
    if (rc == 0)
        rc = kl_io_sync_dir(log->io, log->seg_dir);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "syncing the recovered state: %s", strerror(-rc));
    log->anchor = pick;
    /* else the other slot is refused, damaged or behind, or a slot is of version 2: rewrite it,
       so that the next commit leaves none (builds before version 3 then refuse the log by name,
       rather than take a version 3 slot for a damaged one and fall back to an older state) */
    if (!grown && !rejected && !retwin && valid[1 - pick] && !log->slot_v2)
        return 0;
    uint8_t *slot = malloc(KL_HDR_SLOT_BYTES);
    if (!slot)
        return kl_errf(KL_ENOMEM, "header slot");
    kl_slot fresh = grown ? *grown : s[pick]; /* grown: numbered by the caller */
    if (!grown)
        fresh.seq = ++log->seq;
    fresh.synced_end = fresh.active_end; /* synced above */
    kl_slot_encode(slot, &fresh);
    rc = kl_io_write_sync(log->io, log->hdr_fd, slot, KL_HDR_SLOT_BYTES,
                          (uint64_t)(1 - pick) * KL_HDR_SLOT_BYTES, 1);
    free(slot);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "rewriting header slot: %s", strerror(-rc));
    log->anchor = 1 - pick;
    if (log->slot_problem[1 - pick][0] && !grown)
        note_recovery(log, "header slot %d was damaged (%s) and was rewritten from slot %d",
                      1 - pick, log->slot_problem[1 - pick], pick);
    log->slot_problem[1 - pick][0] = 0;
    return 0;
}

int kl_recover_sign(kl_log *log) {
    if (log->readonly || !log->has_sk || log->last.sig_len != 0)
        return 0;
    kl_slot st = log->last;
    st.seq = ++log->seq;
    kl_commit_sign(log, &st);
    uint8_t *slot = malloc(KL_HDR_SLOT_BYTES);
    if (!slot)
        return kl_errf(KL_ENOMEM, "header slot");
    kl_slot_encode(slot, &st);
    int to = 1 - log->anchor; /* the accepted slot stays until this one is durable */
    int rc = kl_io_write_sync(log->io, log->hdr_fd, slot, KL_HDR_SLOT_BYTES,
                              (uint64_t)to * KL_HDR_SLOT_BYTES, 1);
    free(slot);
    if (rc < 0)
        return kl_errf(kl_err_from_errno(-rc), "writing the signed header slot: %s", strerror(-rc));
    log->anchor = to;
    log->last = st;
    log->stored = st;
    note_recovery(log, "the last commit (length %llu) had not been signed yet; it is now",
                  (unsigned long long)st.length);
    return 0;
}

int kl_recover(kl_log *log) {
    kl_slot s[2];
    int valid[2] = {0, 0};
    int rc = kl_truncate_redo(log); /* a truncation a crash interrupted: finish it first */
    if (rc == 0)
        rc = read_slots(log, s, valid);
    if (rc == 0)
        rc = open_tree(log, s, valid);
    if (rc < 0)
        return rc;
    uint64_t *firsts = NULL;
    size_t n = 0;
    rc = kl_seg_list(log->seg_dir, &firsts, &n);
    if (rc < 0)
        return rc;
    int pick = 0, rejected = 0, retwin = 0;
    if (!log->readonly) { /* a tree file cut short: first the nodes of the older slot's state */
        int older = valid[0] && valid[1] ? s[1].seq < s[0].seq : !valid[0];
        rc = regrow_tree(log, firsts, n, &s[older]);
    }
    if (rc == 0)
        rc = choose_slot(log, firsts, n, s, valid, &pick, &rejected, &retwin);
    if (rc == 0 && !log->readonly)
        rc = regrow_tree(log, firsts, n, &s[pick]);
    if (rc < 0) {
        free(firsts);
        return rc;
    }
    kl_slot ext = s[pick];
    const kl_slot *acc = &s[pick];
    log->kind = (kl_core_kind)acc->kind;
    memcpy(log->public_key, acc->public_key, KL_PK_BYTES);
    kl_keys_derive(log);
    uint64_t grown = 0;
    if (!log->readonly && find_first(firsts, n, acc->active_segment) < n) {
        rc = kl_keys_load(log); /* a writer can sign the synced tail again */
        if (rc == 0)
            rc = extend_tail(log, &ext, &grown);
    }
    if (grown)
        acc = &ext;
    kl_treeb_init(&log->tb, acc->roots, acc->nroots, acc->length, log->tree_low);
    if (rc == 0 && !log->readonly)
        rc = cut_tree(log, acc);
    if (rc < 0) {
        free(firsts);
        return rc;
    }
    log->seq = KL_MAX(valid[0] ? s[0].seq : 0, valid[1] ? s[1].seq : 0);
    if (grown)
        ext.seq = ++log->seq;
    log->stored = *acc;
    log->last = *acc;
    log->fork = acc->fork;
    log->cfg = acc->cfg;
    kl_seg *active = NULL;
    if (!log->readonly)
        rc = cut_segments(log, firsts, n, acc);
    if (rc == 0)
        rc = load_table(log, firsts, n, acc, &active);
    free(firsts);
    if (rc == 0 && !log->readonly)
        rc = cut_active(log, active, acc);
    if (rc == 0)
        rc = index_active(log, active, acc);
    if (rc == 0 && !log->readonly) {
        char path[4096];
        kl_seg_file(log, path, sizeof path, active->first, "idx");
        rc = kl_oidx_write_active(&active->idx, log->io, path, &active->ifd);
        kl_seg_file(log, path, sizeof path, active->first, "tix");
        if (rc == 0)
            rc = kl_tidx_write_active(&active->tix, log->io, path, &active->tfd);
    }
    if (rc == 0)
        atomic_store(&active->idx_ready, 1);
    if (rc == 0 && !log->readonly)
        rc = make_durable(log, active, s, valid, pick, rejected, retwin, grown ? &ext : NULL);
    if (rc < 0)
        return rc;
    atomic_store(&log->length, acc->length);
    atomic_store(&log->byte_length, acc->byte_length);
    atomic_store(&log->last_commit_ms, acc->commit_ms);
    return 0;
}
