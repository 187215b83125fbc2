/*
 * processor.c - a processor's lifetime (kappalog.h, "Processors and
 * materialized views"): opening one over an LMDB environment (a directory)
 * and its source logs, with the definition's defaults filled in, and
 * closing it. A processor is an environment holding a `data` database
 * (the view, changed only through kl_txn: txn.c) and a `state` database
 * (the format, the name and the sources' positions: proc_state.c), and the
 * loop that reads batches from the sources, calls apply and commits
 * (proc_run.c).
 *
 * Invariants: an open processor has checked or initialised its state and
 * holds every source's committed position; the buffers a run needs (the
 * record array and the arena) are allocated here, once; a processor is
 * closed only with no transaction open.
 *
 * The one thing a reader would get wrong: the environment is shared with
 * every other opener of the same directory in this process (lmdb_env.c),
 * so closing a processor does not close its MDB_env while a reader or a
 * second processor still uses it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../engine/util.h"
#include "proc.h"
#include "processor_internal.h"

#define PROC_PATH_MAX 4000u /* an environment's directory, so its files' paths fit */

static uint64_t test_map_bytes;

void proc_test_set_map_bytes(uint64_t bytes) {
    test_map_bytes = bytes;
}

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
        rc = proc_state_open(p, flags);
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
