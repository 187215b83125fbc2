/*
 * lmdb_env.h - the LMDB environments of views, one per process: every
 * opener of the same environment in a process (a processor, a reader, a
 * second thread) shares one MDB_env, as LMDB requires, and the map is only
 * resized while no transaction of this process uses it.
 */
#ifndef KL_LMDB_ENV_H
#define KL_LMDB_ENV_H

#include <lmdb.h>
#include <stdint.h>

typedef struct lenv {
    MDB_env *env;
    MDB_dbi state, data; /* the view's two databases (processor.c says what they hold) */
    const char *path;
} lenv;

#define LENV_CREATE 0x1u /* create the directory's environment and databases if absent */

/*
 * The environment in directory path, shared with this process's other
 * openers. Without LENV_CREATE: KL_ENOTFOUND if it has no data file or no
 * databases (never creates either). map_bytes is the map size if this call
 * opens it (0: the size the file records).
 */
int lenv_acquire(const char *path, unsigned flags, uint64_t map_bytes, lenv **out);
void lenv_release(lenv *e);

/*
 * mdb_txn_begin, holding the environment's resize lock shared until
 * lenv_end (after the commit or abort), and adopting a map another process
 * grew. Returns an LMDB code.
 */
int lenv_begin(lenv *e, unsigned flags, MDB_txn **out);
void lenv_end(lenv *e);

/* Double the map (up to max_bytes) while no transaction of this process runs. */
int lenv_grow(lenv *e, uint64_t max_bytes);

/* The map size now. */
uint64_t lenv_map_bytes(lenv *e);

/* LMDB code -> kl_error, with this thread's context "WHAT: mdb_strerror". */
int lenv_err(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
