/*
 * proc_run.c - kl_processor_run: one LMDB write transaction after another,
 * each reading every source's position inside it, reading batches of
 * records from there (round robin over the sources), calling apply on
 * each, then flush, writing the new positions and committing; with
 * `follow`, waiting for the sources to grow until *stop.
 *
 * The invariant everything rests on: a source's position is written in the
 * same LMDB write transaction as the changes apply made for the records
 * before it, and read back inside the next write transaction before any
 * record is read. LMDB commits are atomic (two meta pages, as our header),
 * so after any crash the data and the positions agree: no record is applied
 * twice or skipped. Two processes updating one view take turns (LMDB's
 * writer lock) and each continues from the position the other committed.
 *
 * Durability: LMDB's default (the data and then the meta page synced at
 * each commit). A transaction covers up to txn_records records or txn_ms
 * milliseconds, so the two syncs cost nothing measurable at a million
 * records a second; a follower committing small trickles pays them per
 * trickle. Un-synced commits (MDB_NOSYNC) would still be exactly-once after
 * a power loss, since positions roll back with the data, but LMDB does not
 * promise the database survives a power loss without its syncs.
 *
 * The one thing a reader would get wrong: a transaction can be abandoned
 * after apply has run (the map filled: it is grown and the transaction run
 * again from the stored positions; LMDB's dirty-page limit: the next try
 * takes fewer records). The records are then read and applied again, so
 * apply must keep its effects in the txn, or in memory that `discard`
 * forgets. The iterators are repositioned from the stored positions.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/log_internal.h"
#include "../engine/util.h"
#include "proc.h"

#define PROC_WAIT_MS     200 /* the longest a follower sleeps before checking stop */
#define PROC_MAX_RETRIES 64  /* abandoned transactions in a row before giving up */
#define PROC_RETRY       1   /* run_txn: abandoned, run it again */

typedef struct run_state {
    const kl_run_options *o;
    uint64_t done;    /* records committed by this run */
    uint64_t total;   /* records due: positions to targets, as known */
    uint64_t applied; /* records applied in the open transaction */
    size_t rr;        /* the source a follower waits on next */
} run_state;

static int stopped(const kl_run_options *o) {
    return o->stop && *o->stop;
}

/* Records this run may still apply in the open transaction (UINT64_MAX: no limit). */
static uint64_t budget(const kl_processor *p, const run_state *rs) {
    uint64_t left = p->txn_records > rs->applied ? p->txn_records - rs->applied : 0;
    if (rs->o->max_records) {
        uint64_t used = rs->done + rs->applied;
        left = KL_MIN(left, rs->o->max_records > used ? rs->o->max_records - used : 0);
    }
    return left;
}

/* The arena holds at least need bytes (records are addressed by offset until the batch is full). */
static int arena_reserve(kl_processor *p, size_t need) {
    if (need <= p->arena_cap)
        return 0;
    size_t cap = KL_MAX(need, p->arena_cap * 2);
    uint8_t *a = realloc(p->arena, cap);
    if (!a)
        return kl_errf(KL_ENOMEM, "a batch of %zu bytes", cap);
    p->arena = a;
    p->arena_cap = cap;
    return 0;
}

/* Position source s's iterator at s->txpos (a retried transaction goes back). */
static int iter_at(proc_source *s) {
    if (s->it && s->it_next == s->txpos)
        return 0;
    kl_iter_close(s->it);
    s->it = NULL;
    s->it_next = UINT64_MAX;
    int rc = kl_iter_open(s->log, s->txpos, UINT64_MAX, &s->it);
    if (rc == 0)
        s->it_next = s->txpos;
    return rc;
}

/*
 * Read up to `want` records of s from s->txpos into p->recs (copied into
 * the arena: an iterator's record is valid only until its next call).
 * *got receives the count; an error after some records still returns them.
 */
static int read_batch(kl_processor *p, proc_source *s, size_t want, size_t *got) {
    *got = 0;
    int rc = iter_at(s);
    size_t n = 0, used = 0;
    while (rc == 0 && n < want && used < PROC_BATCH_BYTES) {
        kl_record r;
        rc = kl_iter_next(s->it, &r);
        if (rc <= 0) {
            if (rc < 0)
                s->it_next = UINT64_MAX;
            break;
        }
        KL_ASSERT(r.index == s->txpos + n);
        rc = arena_reserve(p, used + r.size);
        if (rc < 0)
            break;
        if (r.size)
            memcpy(p->arena + used, r.data, r.size);
        p->recs[n] = r;
        p->recs[n].data = (const void *)(uintptr_t)used; /* an offset until the arena is final */
        used += r.size;
        n++;
        s->it_next++;
    }
    for (size_t i = 0; i < n; i++)
        p->recs[i].data = p->arena + (uintptr_t)p->recs[i].data;
    if (rc == 0 && n == 0 && want > 0)
        rc = kl_errf(KL_EIO, "%s ended at block %" PRIu64 ", before its length %" PRIu64,
                     s->log->dir, s->txpos, s->target);
    *got = n;
    return rc < 0 ? rc : 0;
}

/* Apply n records of source i; their effects are in the open transaction. */
static int apply_batch(kl_processor *p, run_state *rs, size_t i, size_t n) {
    proc_source *s = &p->src[i];
    KL_ASSERT(n > 0 && n <= PROC_BATCH_RECORDS && p->recs[0].index == s->txpos);
    KL_ASSERT(p->recs[n - 1].index == s->txpos + n - 1); /* consecutive blocks, in order */
    kl_err_clear();
    int rc = p->def.apply(p->def.ctx, &p->wtx, i, p->recs, n);
    if (rc < 0)
        return kl_err_prefix(rc, "%s: applying blocks %" PRIu64 "..%" PRIu64 " of %s: ", p->path,
                             s->txpos, s->txpos + n - 1, s->log->dir);
    s->txpos += n;
    rs->applied += n;
    if (rs->o->progress)
        rs->o->progress(rs->o->progress_ctx, rs->done + rs->applied, rs->total);
    return 0;
}

/* One round over the sources: a batch of each that is behind. *more: a batch was applied. */
static int apply_round(kl_processor *p, run_state *rs, int *more, int *read_err) {
    *more = 0;
    for (size_t i = 0; i < p->nsrc; i++) {
        proc_source *s = &p->src[i];
        uint64_t want = KL_MIN(budget(p, rs), s->target > s->txpos ? s->target - s->txpos : 0);
        if (want == 0)
            continue;
        size_t n = 0;
        int rc = read_batch(p, s, (size_t)KL_MIN(want, PROC_BATCH_RECORDS), &n);
        int arc = n ? apply_batch(p, rs, i, n) : 0;
        if (arc < 0)
            return arc;
        if (rc < 0) { /* commit what came before the damage, then report it */
            *read_err = rc;
            return 0;
        }
        *more = 1;
    }
    return 0;
}

/* Write the positions, commit. LMDB frees the transaction either way. */
static int commit(kl_processor *p) {
    kl_txn *t = &p->wtx;
    KL_ASSERT(t->txn != NULL && !t->rdonly);
    int rc = p->def.flush ? p->def.flush(p->def.ctx, t) : 0;
    for (size_t i = 0; rc == 0 && i < p->nsrc; i++)
        rc = proc_source_put(t, i, p->src[i].txpos, &p->src[i]);
    if (rc < 0)
        return rc;
    rc = proc_write_end(p, 1);
    return rc == 0 ? 0 : proc_txn_fail(t, rc, "commit");
}

/* Drop the open transaction (if any) and whatever apply kept in memory for it. */
static void abandon(kl_processor *p, run_state *rs) {
    if (p->wtx.txn)
        proc_write_end(p, 0);
    if (p->def.discard)
        p->def.discard(p->def.ctx);
    for (size_t i = 0; i < p->nsrc; i++)
        p->src[i].txpos = p->src[i].pos;
    rs->applied = 0;
}

/* After an abandoned transaction: a bigger map, or fewer records. PROC_RETRY or an error. */
static int prepare_retry(kl_processor *p, int map_full, int txn_full) {
    if (txn_full && p->txn_records > 1) {
        p->txn_records = KL_MAX(p->txn_records / 2, 1);
        return PROC_RETRY;
    }
    if (!map_full)
        return kl_errf(KL_EIO, "%s: the transaction could not be committed", p->path);
    int rc = lenv_grow(p->env, p->def.max_map_bytes);
    return rc < 0 ? rc : PROC_RETRY;
}

/* Time left in the transaction started at start_ns? */
static int in_time(const kl_processor *p, uint64_t start_ns) {
    return kl_mono_ns() - start_ns < (uint64_t)p->def.txn_ms * 1000000u;
}

/* One write transaction: 0, PROC_RETRY (abandoned, run it again) or an error. */
static int run_txn(kl_processor *p, run_state *rs) {
    kl_txn *t = &p->wtx;
    KL_ASSERT(t->txn == NULL && rs->applied == 0);
    int rc = proc_write_begin(p);
    if (rc != 0)
        return lenv_err(rc, "%s: starting a transaction", p->path);
    for (size_t i = 0; rc == 0 && i < p->nsrc; i++)
        rc = proc_source_load(p, t, i);
    uint64_t start = kl_mono_ns();
    int more = 1, read_err = 0;
    while (rc == 0 && more && !read_err && budget(p, rs) > 0 && in_time(p, start) &&
           !stopped(rs->o))
        rc = apply_round(p, rs, &more, &read_err);
    if (rc == 0 && !t->map_full && !t->txn_full)
        rc = commit(p);
    if (rc < 0 || t->map_full || t->txn_full) {
        int map_full = t->map_full, txn_full = t->txn_full;
        abandon(p, rs);
        return map_full || txn_full ? prepare_retry(p, map_full, txn_full) : rc;
    }
    for (size_t i = 0; i < p->nsrc; i++)
        p->src[i].pos = p->src[i].txpos;
    rs->done += rs->applied;
    rs->applied = 0;
    return read_err;
}

/* Bring each source's target up to its log's length (refreshing a read-only handle). */
static int set_targets(kl_processor *p, run_state *rs, int *grew) {
    *grew = 0;
    for (size_t i = 0; i < p->nsrc; i++) {
        proc_source *s = &p->src[i];
        int rc = kl_log_refresh(s->log);
        if (rc < 0)
            return kl_err_prefix(rc, "%s: ", p->path);
        uint64_t len = kl_log_length(s->log);
        uint64_t from = KL_MAX(s->target, s->pos);
        if (len > from) {
            rs->total += len - from;
            *grew = 1;
        }
        s->target = KL_MAX(len, s->pos);
    }
    return 0;
}

static int caught_up(const kl_processor *p) {
    for (size_t i = 0; i < p->nsrc; i++)
        if (p->src[i].pos < p->src[i].target)
            return 0;
    return 1;
}

/* Follow: wait until a source grows (1), *stop (0), or an error. */
static int wait_more(kl_processor *p, run_state *rs) {
    int wait_ms = p->nsrc == 1 ? PROC_WAIT_MS : PROC_WAIT_MS / (int)p->nsrc + 1;
    for (;;) {
        int grew = 0;
        int rc = set_targets(p, rs, &grew);
        if (rc < 0 || grew)
            return rc < 0 ? rc : 1;
        if (stopped(rs->o))
            return 0;
        proc_source *s = &p->src[rs->rr++ % p->nsrc];
        rc = kl_log_wait(s->log, s->target, wait_ms);
        if (rc < 0)
            return kl_err_prefix(rc, "%s: ", p->path);
    }
}

int kl_processor_run(kl_processor *p, const kl_run_options *opts, uint64_t *applied) {
    const kl_run_options none = {0};
    if (applied)
        *applied = 0;
    if (!p)
        return kl_errf(KL_EINVAL, "kl_processor_run: NULL processor");
    run_state rs = {.o = opts ? opts : &none};
    for (size_t i = 0; i < p->nsrc; i++)
        p->src[i].target = p->src[i].pos;
    int grew = 0, retries = 0;
    int rc = set_targets(p, &rs, &grew);
    while (rc >= 0 && !stopped(rs.o) && !(rs.o->max_records && rs.done >= rs.o->max_records)) {
        if (caught_up(p)) {
            if (!rs.o->follow || (rc = wait_more(p, &rs)) <= 0)
                break;
        }
        rc = run_txn(p, &rs);
        if (rc == PROC_RETRY && ++retries > PROC_MAX_RETRIES)
            rc = kl_errf(KL_EIO, "%s: %d transactions in a row were abandoned", p->path, retries);
        else if (rc == 0)
            retries = 0;
    }
    KL_ASSERT(p->wtx.txn == NULL);
    if (applied)
        *applied = rs.done;
    return rc < 0 ? rc : 0;
}
