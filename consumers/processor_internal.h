/*
 * processor_internal.h - what the built-in views (view.c) use of the
 * processor runtime beyond the public API: opening a version that must
 * already exist, the private `state` database (skip counters live there,
 * in the same transaction as the data), read-only access to a view
 * environment another process writes, and a forced sync before a switch.
 */
#ifndef KL_PROCESSOR_INTERNAL_H
#define KL_PROCESSOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kappalog.h"

/* proc_open flags. */
#define PROC_MUST_EXIST 0x1u /* KL_ENOTFOUND unless the environment exists and is initialised */

int proc_open(const char *path, kl_log *const *logs, size_t nlogs, const kl_processor_def *def,
              unsigned flags, kl_processor **out);

/* Make every commit durable (mdb_env_sync, forced), whatever the sync settings. */
int proc_sync(kl_processor *p);

/* The state database: small records named by short ASCII keys. 1 found, 0 absent, or < 0. */
int proc_state_get(kl_txn *txn, const char *name, void *buf, size_t cap, size_t *n);
int proc_state_put(kl_txn *txn, const char *name, const void *val, size_t n);

/*
 * A source's stored position and fork, read in txn, and (if hash is not
 * NULL) the log's tree hash at the position, *has_hash 0 if the record
 * has none (written before it was kept). 1 found, 0 absent, or < 0.
 */
int proc_source_get(kl_txn *txn, size_t source, uint64_t *position, uint64_t *fork,
                    uint8_t hash[32], int *has_hash);

/* Keys in the data database. */
uint64_t proc_entries(kl_txn *txn);

/*
 * A read-only view of the environment at path, written by any process:
 * one read transaction on a snapshot of its last commit. KL_ENOTFOUND if
 * it does not exist or was never initialised.
 */
typedef struct proc_reader proc_reader;
int proc_reader_open(const char *path, proc_reader **out);
kl_txn *proc_reader_txn(proc_reader *r);
void proc_reader_close(proc_reader *r);

/* Tests: the LMDB map size a new environment starts with, overriding def->map_bytes (0: off). */
void proc_test_set_map_bytes(uint64_t bytes);

#endif
