/*
 * txn.c - kl_txn, one LMDB transaction over a view environment's `data`
 * database (kappalog.h: kl_txn_get / put / del / scan / end): the
 * processor's write transaction, begun and ended only by the runtime; a
 * read transaction of kl_processor_read, which its caller ends; and the
 * read transaction of a proc_reader on an environment another process
 * writes.
 *
 * Invariants: a key is 1..KL_TXN_MAX_KEY_BYTES bytes; a read-only txn
 * never writes; every LMDB failure goes through proc_txn_fail, which
 * records a full map or a full transaction so the run can retry it.
 *
 * The one thing a reader would get wrong: a value kl_txn_get returns
 * points into LMDB's map and is valid only until the next put or delete
 * in the txn, or its end. And apply cannot end the write txn: kl_txn_end
 * is only for the transactions kl_processor_read hands out.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "../engine/util.h"
#include "proc.h"
#include "processor_internal.h"

int proc_txn_fail(kl_txn *t, int rc, const char *what) {
    if (rc == MDB_MAP_FULL)
        t->map_full = 1;
    else if (rc == MDB_TXN_FULL)
        t->txn_full = 1;
    return lenv_err(rc, "view %s", what);
}

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
        return proc_txn_fail(t, rc, "get");
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
    return rc == 0 ? 0 : proc_txn_fail(t, rc, "put");
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
    return rc == 0 ? 1 : proc_txn_fail(t, rc, "delete");
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
        return proc_txn_fail(t, rc, "scan");
    MDB_val k = {prefix_len, (void *)prefix}, v;
    rc = mdb_cursor_get(c, &k, &v, prefix_len ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && has_prefix(&k, prefix, prefix_len)) {
        if (fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size) != 0)
            break;
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : proc_txn_fail(t, rc, "scan");
}

void kl_txn_end(kl_txn *t) {
    if (!t)
        return;
    KL_ASSERT(t->owned); /* the runtime's write txn is never ended by its user */
    mdb_txn_abort(t->txn);
    lenv_end(t->env);
    free(t);
}

uint64_t proc_entries(kl_txn *t) {
    MDB_stat st;
    return mdb_stat(t->txn, t->data, &st) == 0 ? (uint64_t)st.ms_entries : 0;
}

/* The write transaction's fields are reset here: its full flags belong to one attempt. */
int proc_write_begin(kl_processor *p) {
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

int proc_write_end(kl_processor *p, int commit) {
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

/* A read-only snapshot of the last commit, freed by kl_txn_end (owned). */
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

/* A read transaction on an environment another process writes (view get, scan, list). */
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
