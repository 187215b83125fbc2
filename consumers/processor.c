/*
 * processor.c - the processor runtime (kappalog.h, "Processors and
 * materialized views"): an LMDB environment holding a `data` database (the
 * view, changed only through kl_txn) and a `state` database (the format,
 * the processor's name and, per source log, the position, fork and key),
 * and the loop that reads batches from the sources, calls apply and
 * commits.
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
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../engine/log_internal.h"
#include "../engine/util.h"
#include "lmdb_env.h"
#include "processor_internal.h"

#define PROC_MAGIC          "KLVIEWST" /* docs/FORMAT.md, "views/": the state database */
#define PROC_FORMAT_VERSION 1u
#define PROC_FORMAT_BYTES   16u /* magic, version, number of sources */
#define PROC_SOURCE_BYTES   48u /* position, fork, the log's key */
#define PROC_BATCH_RECORDS  4096u
#define PROC_BATCH_BYTES    (4u << 20) /* a batch stops growing past this many record bytes */
#define PROC_WAIT_MS        200        /* the longest a follower sleeps before checking stop */
#define PROC_MAX_RETRIES    64         /* abandoned transactions in a row before giving up */
#define PROC_RETRY          1          /* run_txn: abandoned, run it again */
#define PROC_PATH_MAX       4000u      /* an environment's directory, so its files' paths fit */

typedef struct proc_source {
    kl_log *log;
    kl_iter *it;
    uint64_t it_next; /* the block it returns next; UINT64_MAX: reopen it */
    uint64_t fork;    /* the log's fork and key, as the handle sees them */
    uint8_t key[32];
    uint64_t pos;    /* committed position */
    uint64_t txpos;  /* position inside the open write transaction */
    uint64_t target; /* this run applies up to here */
} proc_source;

struct kl_txn {
    MDB_txn *txn;
    lenv *env; /* lenv_end after the txn ends */
    MDB_dbi data, state;
    int rdonly;
    int owned;    /* a kl_processor_read txn: kl_txn_end frees it */
    int map_full; /* an LMDB call hit MDB_MAP_FULL: grow the map and retry */
    int txn_full; /* MDB_TXN_FULL: retry with fewer records */
};

struct kl_processor {
    lenv *env;
    char *path;
    char *name;
    kl_processor_def def; /* defaults filled in; def.name is `name` */
    size_t nsrc;
    proc_source *src;
    uint8_t *arena; /* the records of the batch being applied */
    size_t arena_cap;
    kl_record *recs; /* PROC_BATCH_RECORDS */
    uint64_t txn_records;
    kl_txn wtx;
};

typedef struct run_state {
    const kl_run_options *o;
    uint64_t done;    /* records committed by this run */
    uint64_t total;   /* records due: positions to targets, as known */
    uint64_t applied; /* records applied in the open transaction */
    size_t rr;        /* the source a follower waits on next */
} run_state;

static uint64_t test_map_bytes;

void proc_test_set_map_bytes(uint64_t bytes) {
    test_map_bytes = bytes;
}

static int txn_fail(kl_txn *t, int rc, const char *what) {
    if (rc == MDB_MAP_FULL)
        t->map_full = 1;
    else if (rc == MDB_TXN_FULL)
        t->txn_full = 1;
    return lenv_err(rc, "view %s", what);
}

/* ---- kl_txn ---------------------------------------------------------------------------- */

static int key_ok(kl_txn *t, const void *key, size_t key_len) {
    return t && t->txn && key && key_len > 0 && key_len <= KL_TXN_MAX_KEY_BYTES;
}

int kl_txn_get(kl_txn *t, const void *key, size_t key_len, const void **val, size_t *val_len) {
    if (!key_ok(t, key, key_len) || !val || !val_len)
        return kl_errf(KL_EINVAL, "kl_txn_get: bad arguments (keys are 1..%u bytes)",
                       KL_TXN_MAX_KEY_BYTES);
    MDB_val k = {key_len, (void *)key}, v;
    int rc = mdb_get(t->txn, t->data, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return txn_fail(t, rc, "get");
    *val = v.mv_data;
    *val_len = v.mv_size;
    return 1;
}

int kl_txn_put(kl_txn *t, const void *key, size_t key_len, const void *val, size_t val_len) {
    if (!key_ok(t, key, key_len) || (!val && val_len) || val_len > KL_MAX_BLOCK_BYTES)
        return kl_errf(KL_EINVAL, "kl_txn_put: bad arguments (keys are 1..%u bytes)",
                       KL_TXN_MAX_KEY_BYTES);
    if (t->rdonly)
        return kl_errf(KL_EREADONLY, "kl_txn_put: a read-only transaction");
    MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)(val ? val : "")};
    int rc = mdb_put(t->txn, t->data, &k, &v, 0);
    return rc == 0 ? 0 : txn_fail(t, rc, "put");
}

int kl_txn_del(kl_txn *t, const void *key, size_t key_len) {
    if (!key_ok(t, key, key_len))
        return kl_errf(KL_EINVAL, "kl_txn_del: bad arguments");
    if (t->rdonly)
        return kl_errf(KL_EREADONLY, "kl_txn_del: a read-only transaction");
    MDB_val k = {key_len, (void *)key};
    int rc = mdb_del(t->txn, t->data, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == 0 ? 1 : txn_fail(t, rc, "delete");
}

static int has_prefix(const MDB_val *k, const void *prefix, size_t n) {
    return k->mv_size >= n && (n == 0 || memcmp(k->mv_data, prefix, n) == 0);
}

int kl_txn_scan(kl_txn *t, const void *prefix, size_t prefix_len, kl_scan_fn fn, void *ctx) {
    if (!t || !t->txn || !fn || (prefix_len && !prefix) || prefix_len > KL_TXN_MAX_KEY_BYTES)
        return kl_errf(KL_EINVAL, "kl_txn_scan: bad arguments");
    MDB_cursor *c = NULL;
    int rc = mdb_cursor_open(t->txn, t->data, &c);
    if (rc != 0)
        return txn_fail(t, rc, "scan");
    MDB_val k = {prefix_len, (void *)prefix}, v;
    rc = mdb_cursor_get(c, &k, &v, prefix_len ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && has_prefix(&k, prefix, prefix_len)) {
        if (fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size) != 0)
            break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : txn_fail(t, rc, "scan");
}

void kl_txn_end(kl_txn *t) {
    if (!t)
        return;
    KL_ASSERT(t->owned); /* the runtime's write txn is never ended by its user */
    mdb_txn_abort(t->txn);
    lenv_end(t->env);
    free(t);
}

int proc_state_get(kl_txn *t, const char *name, void *buf, size_t cap, size_t *n) {
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(t->txn, t->state, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return txn_fail(t, rc, "reading its state");
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
    return rc == 0 ? 0 : txn_fail(t, rc, "writing its state");
}

uint64_t proc_entries(kl_txn *t) {
    MDB_stat st;
    return mdb_stat(t->txn, t->data, &st) == 0 ? (uint64_t)st.ms_entries : 0;
}

static void source_name(size_t i, char out[32]) {
    snprintf(out, 32, "source.%zu", i);
}

int proc_source_get(kl_txn *t, size_t i, uint64_t *position, uint64_t *fork) {
    char name[32];
    uint8_t b[PROC_SOURCE_BYTES];
    size_t n = 0;
    source_name(i, name);
    int rc = proc_state_get(t, name, b, sizeof b, &n);
    if (rc == 1 && n != PROC_SOURCE_BYTES)
        return kl_errf(KL_ECORRUPT, "view state record '%s' has %zu bytes, not %u", name, n,
                       PROC_SOURCE_BYTES);
    if (rc == 1) {
        *position = kl_load64(b);
        *fork = kl_load64(b + 8);
    }
    return rc;
}

/* ---- opening: the state database ------------------------------------------------------- */

static int put_source(kl_txn *t, size_t i, uint64_t position, const proc_source *s) {
    char name[32];
    uint8_t b[PROC_SOURCE_BYTES];
    source_name(i, name);
    kl_store64(b, position);
    kl_store64(b + 8, s->fork);
    memcpy(b + 16, s->key, 32);
    return proc_state_put(t, name, b, sizeof b);
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
        rc = put_source(t, i, 0, &p->src[i]);
    return rc;
}

/* An existing environment: same format, same number of sources, same name. */
static int check_state(kl_processor *p, kl_txn *t, const uint8_t *f, size_t n) {
    if (n != PROC_FORMAT_BYTES || memcmp(f, PROC_MAGIC, 8) != 0)
        return kl_errf(KL_ECORRUPT, "%s: not a kappalog view (bad format record)", p->path);
    if (kl_load32(f + 8) != PROC_FORMAT_VERSION)
        return kl_errf(KL_ECORRUPT, "%s: view format version %u (this build reads %u)", p->path,
                       kl_load32(f + 8), PROC_FORMAT_VERSION);
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
    return rc;
}

static void hex8(const uint8_t *key, char out[17]) {
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", key[i]);
}

/*
 * Read source i's stored state in t and check it against the log: the same
 * key, the same fork (unless nothing was applied yet), not past its end.
 * Sets s->txpos.
 */
static int load_source(kl_processor *p, kl_txn *t, size_t i) {
    proc_source *s = &p->src[i];
    char name[32];
    uint8_t b[PROC_SOURCE_BYTES];
    size_t n = 0;
    source_name(i, name);
    int rc = proc_state_get(t, name, b, sizeof b, &n);
    if (rc == 0 || (rc == 1 && n != PROC_SOURCE_BYTES))
        return kl_errf(KL_ECORRUPT, "%s: view state record '%s' is missing or damaged", p->path,
                       name);
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
                           "%" PRIu64 " blocks (was it replaced?): rebuild the view",
                           pos, s->log->dir, i, kl_log_length(s->log));
    }
    s->txpos = pos;
    KL_ASSERT(s->txpos <= kl_log_length(s->log));
    return 0;
}

/* Start the processor's write transaction p->wtx. An LMDB code. */
static int begin_write(kl_processor *p) {
    kl_txn *t = &p->wtx;
    memset(t, 0, sizeof *t);
    t->env = p->env;
    t->data = p->env->data;
    t->state = p->env->state;
    int rc = lenv_begin(p->env, 0, &t->txn);
    if (rc != 0)
        t->txn = NULL;
    return rc;
}

/* End p->wtx: commit (1) or abort (0). An LMDB code. */
static int end_write(kl_processor *p, int commit) {
    kl_txn *t = &p->wtx;
    KL_ASSERT(t->txn != NULL);
    int rc = 0;
    if (commit)
        rc = mdb_txn_commit(t->txn); /* frees the transaction whatever it returns */
    else
        mdb_txn_abort(t->txn);
    t->txn = NULL;
    lenv_end(p->env);
    return rc;
}

/* Initialise or check the state, and read the committed positions (one write txn). */
static int open_state(kl_processor *p, unsigned flags) {
    kl_txn *t = &p->wtx;
    int rc = begin_write(p);
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
        rc = load_source(p, t, i);
    int crc = end_write(p, rc == 0);
    if (rc == 0 && crc != 0)
        rc = lenv_err(crc, "%s: committing its state", p->path);
    for (size_t i = 0; rc == 0 && i < p->nsrc; i++)
        p->src[i].pos = p->src[i].txpos;
    return rc;
}

/* ---- opening and closing ----------------------------------------------------------------- */

void kl_processor_def_default(kl_processor_def *def) {
    memset(def, 0, sizeof *def);
    def->txn_records = KL_PROCESSOR_TXN_RECORDS;
    def->txn_ms = KL_PROCESSOR_TXN_MS;
    def->map_bytes = KL_PROCESSOR_MAP_BYTES;
    def->max_map_bytes = KL_PROCESSOR_MAX_MAP_BYTES;
}

static int check_args(const char *path, kl_log *const *logs, size_t nlogs,
                      const kl_processor_def *def, kl_processor **out) {
    if (!path || !*path || !logs || !def || !out || !def->apply || !def->name)
        return kl_errf(KL_EINVAL, "kl_processor_open: a NULL argument");
    if (nlogs == 0 || nlogs > KL_PROCESSOR_MAX_SOURCES)
        return kl_errf(KL_EINVAL, "kl_processor_open: %zu logs (1..%u)", nlogs,
                       KL_PROCESSOR_MAX_SOURCES);
    if (strlen(path) > PROC_PATH_MAX)
        return kl_errf(KL_EINVAL, "kl_processor_open: a path longer than %u bytes", PROC_PATH_MAX);
    size_t n = strlen(def->name);
    if (n == 0 || n > KL_PROCESSOR_NAME_MAX)
        return kl_errf(KL_EINVAL, "kl_processor_open: a name of %zu bytes (1..%u)", n,
                       KL_PROCESSOR_NAME_MAX);
    for (size_t i = 0; i < nlogs; i++)
        if (!logs[i])
            return kl_errf(KL_EINVAL, "kl_processor_open: log %zu is NULL", i);
    if (def->max_map_bytes && def->map_bytes > def->max_map_bytes)
        return kl_errf(KL_EINVAL, "kl_processor_open: map_bytes above max_map_bytes");
    return 0;
}

/* The definition with defaults for the zero fields. */
static void fill_def(kl_processor *p, const kl_processor_def *def) {
    kl_processor_def d;
    kl_processor_def_default(&d);
    p->def = *def;
    p->def.name = p->name;
    if (!p->def.txn_records)
        p->def.txn_records = d.txn_records;
    if (!p->def.txn_ms)
        p->def.txn_ms = d.txn_ms;
    if (!p->def.map_bytes)
        p->def.map_bytes = d.map_bytes;
    if (test_map_bytes)
        p->def.map_bytes = test_map_bytes;
    if (!p->def.max_map_bytes)
        p->def.max_map_bytes = d.max_map_bytes;
    p->def.max_map_bytes = KL_MAX(p->def.max_map_bytes, p->def.map_bytes);
    p->txn_records = p->def.txn_records;
}

static int alloc_processor(const char *path, size_t nlogs, const kl_processor_def *def,
                           kl_processor **out) {
    kl_processor *p = calloc(1, sizeof *p);
    if (!p)
        return kl_errf(KL_ENOMEM, "opening %s", path);
    p->path = strdup(path);
    p->name = strdup(def->name);
    p->src = calloc(nlogs, sizeof *p->src);
    p->recs = calloc(PROC_BATCH_RECORDS, sizeof *p->recs);
    p->arena_cap = PROC_BATCH_BYTES;
    p->arena = malloc(p->arena_cap);
    p->nsrc = nlogs;
    *out = p;
    if (!p->path || !p->name || !p->src || !p->recs || !p->arena)
        return kl_errf(KL_ENOMEM, "opening %s", path);
    fill_def(p, def);
    return 0;
}

static int init_sources(kl_processor *p, kl_log *const *logs) {
    kl_info info;
    for (size_t i = 0; i < p->nsrc; i++) {
        int rc = kl_log_info(logs[i], &info);
        if (rc < 0)
            return rc;
        p->src[i].log = logs[i];
        p->src[i].fork = info.fork;
        memcpy(p->src[i].key, info.key, 32);
        p->src[i].it_next = UINT64_MAX;
    }
    return 0;
}

int proc_open(const char *path, kl_log *const *logs, size_t nlogs, const kl_processor_def *def,
              unsigned flags, kl_processor **out) {
    int rc = check_args(path, logs, nlogs, def, out);
    if (rc < 0)
        return rc;
    kl_processor *p = NULL;
    rc = alloc_processor(path, nlogs, def, &p);
    if (rc == 0)
        rc = init_sources(p, logs);
    if (rc == 0 && !(flags & PROC_MUST_EXIST) && mkdir(path, 0755) != 0 && errno != EEXIST)
        rc = kl_errf(kl_err_from_errno(errno), "creating %s: %s", path, strerror(errno));
    if (rc == 0)
        rc = lenv_acquire(path, flags & PROC_MUST_EXIST ? 0 : LENV_CREATE, p->def.map_bytes,
                          &p->env);
    if (rc == 0)
        rc = open_state(p, flags);
    if (rc < 0) {
        kl_processor_close(p);
        return rc;
    }
    *out = p;
    return 0;
}

int kl_processor_open(const char *path, kl_log *const *logs, size_t nlogs,
                      const kl_processor_def *def, kl_processor **out) {
    return proc_open(path, logs, nlogs, def, 0, out);
}

void kl_processor_close(kl_processor *p) {
    if (!p)
        return;
    KL_ASSERT(p->wtx.txn == NULL); /* every run ends its transaction */
    for (size_t i = 0; p->src && i < p->nsrc; i++)
        kl_iter_close(p->src[i].it);
    lenv_release(p->env);
    free(p->src);
    free(p->recs);
    free(p->arena);
    free(p->name);
    free(p->path);
    free(p);
}

uint64_t kl_processor_position(const kl_processor *p, size_t source) {
    return p && source < p->nsrc ? p->src[source].pos : UINT64_MAX;
}

int proc_sync(kl_processor *p) {
    int rc = mdb_env_sync(p->env->env, 1);
    return rc == 0 ? 0 : lenv_err(rc, "%s: syncing", p->path);
}

int kl_processor_read(kl_processor *p, kl_txn **out) {
    if (!p || !out)
        return kl_errf(KL_EINVAL, "kl_processor_read: a NULL argument");
    kl_txn *t = calloc(1, sizeof *t);
    if (!t)
        return kl_errf(KL_ENOMEM, "kl_processor_read");
    int rc = lenv_begin(p->env, MDB_RDONLY, &t->txn);
    if (rc != 0) {
        free(t);
        return lenv_err(rc, "%s: starting a read transaction", p->path);
    }
    t->env = p->env;
    t->data = p->env->data;
    t->state = p->env->state;
    t->rdonly = 1;
    t->owned = 1;
    *out = t;
    return 0;
}

/* ---- running ----------------------------------------------------------------------------- */

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
        rc = put_source(t, i, p->src[i].txpos, &p->src[i]);
    if (rc < 0)
        return rc;
    rc = end_write(p, 1);
    return rc == 0 ? 0 : txn_fail(t, rc, "commit");
}

/* Drop the open transaction (if any) and whatever apply kept in memory for it. */
static void abandon(kl_processor *p, run_state *rs) {
    if (p->wtx.txn)
        end_write(p, 0);
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
    int rc = begin_write(p);
    if (rc != 0)
        return lenv_err(rc, "%s: starting a transaction", p->path);
    for (size_t i = 0; rc == 0 && i < p->nsrc; i++)
        rc = load_source(p, t, i);
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

/* ---- reading another process's view -------------------------------------------------------- */

struct proc_reader {
    lenv *env;
    kl_txn txn;
};

int proc_reader_open(const char *path, proc_reader **out) {
    proc_reader *r = calloc(1, sizeof *r);
    if (!r)
        return kl_errf(KL_ENOMEM, "opening %s", path);
    int rc = lenv_acquire(path, 0, 0, &r->env);
    if (rc == 0 && (rc = lenv_begin(r->env, MDB_RDONLY, &r->txn.txn)) != 0) {
        r->txn.txn = NULL;
        rc = lenv_err(rc, "%s: starting a read transaction", path);
    }
    if (rc < 0) {
        proc_reader_close(r);
        return rc;
    }
    r->txn.env = r->env;
    r->txn.data = r->env->data;
    r->txn.state = r->env->state;
    r->txn.rdonly = 1;
    *out = r;
    return 0;
}

kl_txn *proc_reader_txn(proc_reader *r) {
    return &r->txn;
}

void proc_reader_close(proc_reader *r) {
    if (!r)
        return;
    if (r->txn.txn) {
        mdb_txn_abort(r->txn.txn);
        lenv_end(r->env);
    }
    lenv_release(r->env);
    free(r);
}
