/*
 * proc_state.c - a processor's `state` database (docs/FORMAT.md,
 * "views/<name>/", "A version's LMDB environment"): the `format` record
 * (magic, version, number of sources), the processor's `name`, and one
 * `source.<i>` record per source log (position, fork, the log's key, the
 * log's tree hash at the position),
 * plus the small records the built-in views keep there (`skips`).
 *
 * Invariants: an environment opened again has the same format version,
 * number of sources and name, or is refused; a source's stored key is its
 * log's key, and its fork the log's fork once any of it was applied, or
 * the view refuses to go on (KL_EFORK); a stored position is never past
 * the log's end; and the log's tree hash at that position is the one
 * stored with it (KL_EFORK otherwise: a crash under `interval` or `never`
 * lost blocks the view had applied, and others took their places).
 *
 * The one thing a reader would get wrong: the positions are read here
 * inside the write transaction that goes on to apply records, never from
 * an earlier read; that, and their being written in the transaction that
 * applied the records before them, is what makes a view exactly-once
 * (docs/VIEWS.md).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/log_internal.h"
#include "../engine/util.h"
#include "proc.h"
#include "processor_internal.h"

#define PROC_MAGIC          "KLVIEWST" /* docs/FORMAT.md, "views/": the state database */
#define PROC_FORMAT_VERSION 2u         /* 1: source records without the tree hash; read, upgraded */
#define PROC_FORMAT_BYTES   16u        /* magic, version, number of sources */
#define PROC_SOURCE_V1      48u        /* position, fork, the log's key */
#define PROC_SOURCE_BYTES   80u        /* ... and the log's tree hash at the position */

int proc_state_get(kl_txn *t, const char *name, void *buf, size_t cap, size_t *n) {
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(t->txn, t->state, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return proc_txn_fail(t, rc, "reading its state");
    if (v.mv_size > cap)
        return kl_errf(KL_ECORRUPT, "view state record '%s' has %zu bytes (at most %zu expected)",
                       name, v.mv_size, cap);
    memcpy(buf, v.mv_data, v.mv_size);
    *n = v.mv_size;
    return 1;
}

int proc_state_put(kl_txn *t, const char *name, const void *val, size_t n) {
    KL_ASSERT(!t->rdonly);
    MDB_val k = {strlen(name), (void *)name}, v = {n, (void *)val};
    int rc = mdb_put(t->txn, t->state, &k, &v, 0);
    return rc == 0 ? 0 : proc_txn_fail(t, rc, "writing its state");
}

static void source_name(size_t i, char out[32]) {
    snprintf(out, 32, "source.%zu", i);
}

/* Read source i's record into b: 1 (with *n 48 or 80), 0 absent, or < 0. */
static int source_read(kl_txn *t, size_t i, uint8_t b[PROC_SOURCE_BYTES], size_t *n) {
    char name[32];
    source_name(i, name);
    int rc = proc_state_get(t, name, b, PROC_SOURCE_BYTES, n);
    if (rc == 1 && *n != PROC_SOURCE_BYTES && *n != PROC_SOURCE_V1)
        return kl_errf(KL_ECORRUPT, "view state record '%s' has %zu bytes, not %u or %u", name, *n,
                       PROC_SOURCE_V1, PROC_SOURCE_BYTES);
    return rc;
}

int proc_source_get(kl_txn *t, size_t i, uint64_t *position, uint64_t *fork, uint8_t hash[32],
                    int *has_hash) {
    uint8_t b[PROC_SOURCE_BYTES];
    size_t n = 0;
    int rc = source_read(t, i, b, &n);
    if (rc == 1) {
        *position = kl_load64(b);
        *fork = kl_load64(b + 8);
        if (hash) {
            *has_hash = n == PROC_SOURCE_BYTES;
            memcpy(hash, b + 48, *has_hash ? 32 : 0);
        }
    }
    return rc;
}

/*
 * The log's tree hash at pos into s->hash (s->hashed: known), kept for the
 * next call at the same position. 0 (also when a block or node under pos
 * fails its check: then s->hashed is 0, nothing to compare), or an error
 * (KL_EFORK: the log was truncated under this handle).
 */
static int source_hash(proc_source *s, uint64_t pos) {
    if (s->hashed && s->hashed_pos == pos)
        return 0;
    s->hashed = 0;
    int rc = kl_log_tree_hash(s->log, pos, s->hash);
    if (rc == KL_ECORRUPT) {
        /* a handle older than a truncation can read the zeroed space its writer keeps
           ahead in the tree file through the old length: that is the truncation */
        if ((rc = kl_log_refresh(s->log)) < 0) /* KL_EFORK if truncated under this handle */
            return rc;
        kl_err_clear(); /* damage: reported to whoever reads the damaged block */
        return 0;
    }
    if (rc < 0)
        return rc;
    s->hashed = 1;
    s->hashed_pos = pos;
    return 0;
}

int proc_source_put(kl_txn *t, size_t i, uint64_t position, proc_source *s) {
    char name[32];
    uint8_t b[PROC_SOURCE_BYTES];
    source_name(i, name);
    int rc = source_hash(s, position);
    if (rc < 0)
        return rc;
    kl_store64(b, position);
    kl_store64(b + 8, s->fork);
    memcpy(b + 16, s->key, 32);
    memcpy(b + 48, s->hash, 32);
    return proc_state_put(t, name, b, s->hashed ? PROC_SOURCE_BYTES : PROC_SOURCE_V1);
}

/* A new environment: format, name, and every source at block 0. */
static int init_state(kl_processor *p, kl_txn *t) {
    uint8_t f[PROC_FORMAT_BYTES];
    memcpy(f, PROC_MAGIC, 8);
    kl_store32(f + 8, PROC_FORMAT_VERSION);
    kl_store32(f + 12, (uint32_t)p->nsrc);
    int rc = proc_state_put(t, "format", f, sizeof f);
    if (rc == 0)
        rc = proc_state_put(t, "name", p->name, strlen(p->name));
    for (size_t i = 0; rc == 0 && i < p->nsrc; i++)
        rc = proc_source_put(t, i, 0, &p->src[i]);
    return rc;
}

/* An existing environment: same format, same number of sources, same name. */
static int check_state(kl_processor *p, kl_txn *t, const uint8_t *f, size_t n) {
    if (n != PROC_FORMAT_BYTES || memcmp(f, PROC_MAGIC, 8) != 0)
        return kl_errf(KL_ECORRUPT, "%s: not a kappalog view (bad format record)", p->path);
    uint32_t version = kl_load32(f + 8);
    if (version != 1 && version != PROC_FORMAT_VERSION)
        return kl_errf(KL_ECORRUPT, "%s: view format version %u (this build reads 1 and %u)",
                       p->path, version, PROC_FORMAT_VERSION);
    if (kl_load32(f + 12) != p->nsrc)
        return kl_errf(KL_EINVAL, "%s: the view reads %u logs, opened with %zu", p->path,
                       kl_load32(f + 12), p->nsrc);
    char *name = malloc(KL_PROCESSOR_NAME_MAX + 1);
    size_t len = 0;
    if (!name)
        return kl_errf(KL_ENOMEM, "opening %s", p->path);
    int rc = proc_state_get(t, "name", name, KL_PROCESSOR_NAME_MAX, &len);
    if (rc >= 0) {
        name[rc == 1 ? len : 0] = '\0';
        rc = strcmp(name, p->name) == 0
                 ? 0
                 : kl_errf(KL_EINVAL, "%s: the view was built by '%s', not '%s'", p->path, name,
                           p->name);
    }
    free(name);
    if (rc == 0 && version != PROC_FORMAT_VERSION) {
        /* source records now get the tree hash: an older build must see a newer format,
           not records it takes for damage */
        uint8_t up[PROC_FORMAT_BYTES];
        memcpy(up, f, sizeof up);
        kl_store32(up + 8, PROC_FORMAT_VERSION);
        rc = proc_state_put(t, "format", up, sizeof up);
    }
    return rc;
}

static void hex8(const uint8_t *key, char out[17]) {
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", key[i]);
}

int proc_source_load(kl_processor *p, kl_txn *t, size_t i) {
    proc_source *s = &p->src[i];
    uint8_t b[PROC_SOURCE_BYTES];
    size_t n = 0;
    int rc = source_read(t, i, b, &n);
    if (rc == 0 || rc == KL_ECORRUPT)
        return kl_errf(KL_ECORRUPT, "%s: view state record 'source.%zu' is missing or damaged",
                       p->path, i);
    if (rc < 0)
        return rc;
    uint64_t pos = kl_load64(b), fork = kl_load64(b + 8);
    char have[17], want[17];
    if (memcmp(b + 16, s->key, 32) != 0) {
        hex8(b + 16, want);
        hex8(s->key, have);
        return kl_errf(KL_EFORK,
                       "%s (source %zu) is not the log the view was built from (key %s..., "
                       "the view's %s...): rebuild the view",
                       s->log->dir, i, have, want);
    }
    if (fork != s->fork && pos > 0) {
        rc = kl_log_refresh(s->log); /* a handle older than the view's last commit says so */
        if (rc >= 0)
            rc = kl_errf(KL_EFORK,
                         "%s (source %zu) is at fork %" PRIu64 " but the view applied %" PRIu64
                         " blocks of fork %" PRIu64 ": the log was truncated; rebuild the view",
                         s->log->dir, i, s->fork, pos, fork);
        return rc;
    }
    if (pos > kl_log_length(s->log)) { /* another process may have applied what we do not see */
        rc = kl_log_refresh(s->log);
        if (rc < 0)
            return rc;
        if (pos > kl_log_length(s->log))
            return kl_errf(KL_ENOTFOUND,
                           "the view is at block %" PRIu64 " of %s (source %zu) but the log has "
                           "%" PRIu64 " blocks: it lost blocks the view had applied (a crash "
                           "under fsync interval or never), or it was replaced: rebuild the view",
                           pos, s->log->dir, i, kl_log_length(s->log));
    }
    if (n == PROC_SOURCE_BYTES) { /* the blocks applied are still the log's first pos */
        if ((rc = source_hash(s, pos)) < 0)
            return rc;
        if (s->hashed && memcmp(s->hash, b + 48, 32) != 0 &&
            (rc = kl_log_refresh(s->log)) < 0) /* KL_EFORK if truncated under this handle */
            return rc;
        if (s->hashed && memcmp(s->hash, b + 48, 32) != 0)
            return kl_errf(KL_EFORK,
                           "the view applied %" PRIu64 " blocks of %s (source %zu), but the log's "
                           "first %" PRIu64 " blocks are not those (their tree hash differs): a "
                           "crash under fsync interval or never lost blocks the view had "
                           "applied, and others were appended in their place; rebuild the view",
                           pos, s->log->dir, i, pos);
    }
    s->txpos = pos;
    KL_ASSERT(s->txpos <= kl_log_length(s->log));
    return 0;
}

int proc_state_open(kl_processor *p, unsigned flags) {
    kl_txn *t = &p->wtx;
    int rc = proc_write_begin(p);
    if (rc != 0)
        return lenv_err(rc, "%s: starting a transaction", p->path);
    uint8_t f[PROC_FORMAT_BYTES + 1];
    size_t n = 0;
    int found = proc_state_get(t, "format", f, sizeof f, &n);
    if (found < 0)
        rc = found;
    else if (found == 0 && (flags & PROC_MUST_EXIST))
        rc = kl_errf(KL_ENOTFOUND, "%s: the view was never initialised", p->path);
    else
        rc = found ? check_state(p, t, f, n) : init_state(p, t);
    for (size_t i = 0; rc == 0 && i < p->nsrc; i++)
        rc = proc_source_load(p, t, i);
    int crc = proc_write_end(p, rc == 0);
    if (rc == 0 && crc != 0)
        rc = lenv_err(crc, "%s: committing its state", p->path);
    for (size_t i = 0; rc == 0 && i < p->nsrc; i++)
        p->src[i].pos = p->src[i].txpos;
    return rc;
}
