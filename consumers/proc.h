/*
 * proc.h - the processor runtime's own structures, shared by the files
 * that make it up (processor.c: opening and closing; txn.c: transactions;
 * proc_state.c: the state database; proc_run.c: the run loop). Nothing
 * outside the runtime includes it: view.c uses processor_internal.h, and
 * everyone else the public header.
 */
#ifndef KL_PROC_H
#define KL_PROC_H

#include <stddef.h>
#include <stdint.h>

#include "kappalog.h"
#include "lmdb_env.h"

#define PROC_BATCH_RECORDS 4096u
#define PROC_BATCH_BYTES   (4u << 20) /* a batch stops growing past this many record bytes */

typedef struct proc_source {
    kl_log *log;
    kl_iter *it;
    uint64_t it_next; /* the block it returns next; UINT64_MAX: reopen it */
    uint64_t fork;    /* the log's fork and key, as the handle sees them */
    uint8_t key[32];
    uint64_t pos;    /* committed position */
    uint64_t txpos;  /* position inside the open write transaction */
    uint64_t target; /* this run applies up to here */
    /* the log's tree hash at hashed_pos (hashed: known), so that a position
       stored or checked again costs no second hash (proc_state.c) */
    int hashed;
    uint64_t hashed_pos;
    uint8_t hash[32];
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

/*
 * An LMDB code from a call in t -> kl_error with context "view WHAT: ...";
 * notes MDB_MAP_FULL and MDB_TXN_FULL in t so the run grows the map or
 * takes fewer records and tries the transaction again.
 */
int proc_txn_fail(kl_txn *t, int rc, const char *what);

/* Start the processor's write transaction p->wtx; end it: commit (1) or abort (0). LMDB codes. */
int proc_write_begin(kl_processor *p);
int proc_write_end(kl_processor *p, int commit);

/* Initialise or check the state, and read the committed positions (one write txn). */
int proc_state_open(kl_processor *p, unsigned flags);

/*
 * Read source i's stored state in t and check it against the log: the same
 * key, the same fork (unless nothing was applied yet), not past its end,
 * the same tree hash at the position. Sets p->src[i].txpos.
 */
int proc_source_load(kl_processor *p, kl_txn *t, size_t i);

/*
 * Write source i's record: position, the fork and key of s, and the log's
 * tree hash at position (left out if a block under it fails its check).
 */
int proc_source_put(kl_txn *t, size_t i, uint64_t position, proc_source *s);

#endif
