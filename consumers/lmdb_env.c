/*
 * lmdb_env.c - a process-wide table of open LMDB environments
 * (lmdb_env.h), keyed by the device and inode of their data file.
 *
 * Why: LMDB forbids opening one environment twice in a process. A second
 * MDB_env on the same files takes the same POSIX record locks, believes it
 * is the only user and re-initialises the lock file under the first (whose
 * held mutexes and reader slots it wipes), and closing it drops the first's
 * locks. A kl_view_get in one thread while kl_view_update runs in another
 * would do exactly that; so every opener shares one MDB_env.
 *
 * Invariants: an entry is in the table while refs > 0 and its data file is
 * open, so its inode cannot be reused by another file; the table's mutex is
 * held while an environment is opened, so two threads never open the same
 * one; the map is resized only under the entry's resize lock taken
 * exclusively, while every transaction holds it shared.
 *
 * The one thing a reader would get wrong: the resize lock is a
 * reader-preferring rwlock on purpose. A thread inside a write transaction
 * (holding it shared) may begin a read transaction on the same environment
 * (a progress callback reading the view); with writer preference that
 * second shared lock could wait behind a resizer waiting for the first.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lmdb_env.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../engine/util.h"

#define LENV_DBS        2 /* state, data */
#define LENV_PATH_BYTES 4096

typedef struct lenv_entry {
    lenv pub;
    dev_t dev;
    ino_t ino;
    int refs;
    pthread_rwlock_t resize;
    char path[LENV_PATH_BYTES];
    struct lenv_entry *next;
} lenv_entry;

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static lenv_entry *table;

static int lmdb_code(int rc) {
    switch (rc) {
    case MDB_MAP_FULL:
    case ENOSPC:
        return KL_ENOSPC;
    case ENOMEM:
        return KL_ENOMEM;
    case ENOENT:
    case MDB_NOTFOUND:
        return KL_ENOTFOUND;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return KL_ECORRUPT;
    default:
        return KL_EIO;
    }
}

int lenv_err(int rc, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kl_errf(lmdb_code(rc), "%s: %s", what, mdb_strerror(rc));
}

static lenv_entry *entry_of(lenv *e) {
    return (lenv_entry *)((char *)e - offsetof(lenv_entry, pub));
}

/* The open entry of the data file at path, or NULL. Under table_mu. */
static lenv_entry *find(const char *path, int *exists) {
    char data[LENV_PATH_BYTES + 16];
    snprintf(data, sizeof data, "%s/data.mdb", path);
    struct stat st;
    *exists = stat(data, &st) == 0;
    for (lenv_entry *e = table; *exists && e; e = e->next)
        if (e->dev == st.st_dev && e->ino == st.st_ino)
            return e;
    return NULL;
}

/* Open the two databases; with create, make them (a write transaction) if absent. */
static int open_dbs(lenv_entry *e, unsigned flags) {
    for (int attempt = 0; attempt < 2; attempt++) {
        int write = attempt == 1;
        MDB_txn *t = NULL;
        int rc = mdb_txn_begin(e->pub.env, NULL, write ? 0 : MDB_RDONLY, &t);
        if (rc == 0)
            rc = mdb_dbi_open(t, "state", write ? MDB_CREATE : 0, &e->pub.state);
        if (rc == 0)
            rc = mdb_dbi_open(t, "data", write ? MDB_CREATE : 0, &e->pub.data);
        if (rc == 0)
            rc = mdb_txn_commit(t);
        else if (t)
            mdb_txn_abort(t);
        if (rc == 0)
            return 0;
        if (rc != MDB_NOTFOUND || write)
            return lenv_err(rc, "%s: opening the view's databases", e->path);
        if (!(flags & LENV_CREATE))
            return kl_errf(KL_ENOTFOUND, "%s: the view was never initialised", e->path);
    }
    return 0;
}

static int open_entry(const char *path, unsigned flags, uint64_t map_bytes, lenv_entry **out) {
    lenv_entry *e = calloc(1, sizeof *e);
    if (!e)
        return kl_errf(KL_ENOMEM, "opening %s", path);
    snprintf(e->path, sizeof e->path, "%s", path);
    e->pub.path = e->path;
    int rc = mdb_env_create(&e->pub.env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(e->pub.env, LENV_DBS);
    if (rc == 0 && map_bytes)
        rc = mdb_env_set_mapsize(e->pub.env, (size_t)map_bytes);
    if (rc == 0)
        rc = mdb_env_open(e->pub.env, path, MDB_NOTLS, 0644);
    rc = rc ? lenv_err(rc, "opening the view environment %s", path) : 0;
    int fd = -1, dead = 0;
    struct stat st;
    if (rc == 0 && (mdb_env_get_fd(e->pub.env, &fd) != 0 || fstat(fd, &st) != 0))
        rc = kl_errf(KL_EIO, "%s: cannot stat the data file", path);
    if (rc == 0) {
        e->dev = st.st_dev;
        e->ino = st.st_ino;
        mdb_reader_check(e->pub.env, &dead); /* slots of killed readers would pin old pages */
        rc = open_dbs(e, flags);
    }
    if (rc < 0) {
        if (e->pub.env)
            mdb_env_close(e->pub.env);
        free(e);
        return rc;
    }
    pthread_rwlock_init(&e->resize, NULL); /* the default: readers preferred (see above) */
    *out = e;
    return 0;
}

int lenv_acquire(const char *path, unsigned flags, uint64_t map_bytes, lenv **out) {
    if (strlen(path) >= LENV_PATH_BYTES - 16)
        return kl_errf(KL_EINVAL, "a view path longer than %d bytes", LENV_PATH_BYTES - 16);
    pthread_mutex_lock(&table_mu);
    int exists = 0, rc = 0;
    lenv_entry *e = find(path, &exists);
    if (e) {
        e->refs++;
    } else if (!exists && !(flags & LENV_CREATE)) { /* never let LMDB create a vanished version */
        rc = kl_errf(KL_ENOTFOUND, "%s: no view there", path);
    } else if ((rc = open_entry(path, flags, map_bytes, &e)) == 0) {
        e->refs = 1;
        e->next = table;
        table = e;
    }
    pthread_mutex_unlock(&table_mu);
    if (rc == 0)
        *out = &e->pub;
    return rc;
}

void lenv_release(lenv *pub) {
    if (!pub)
        return;
    lenv_entry *e = entry_of(pub);
    pthread_mutex_lock(&table_mu);
    KL_ASSERT(e->refs > 0);
    int last = --e->refs == 0;
    if (last) {
        lenv_entry **pp = &table;
        while (*pp != e)
            pp = &(*pp)->next;
        *pp = e->next;
        mdb_env_close(e->pub.env); /* under the mutex: no one reopens it meanwhile */
    }
    pthread_mutex_unlock(&table_mu);
    if (last) {
        pthread_rwlock_destroy(&e->resize);
        free(e);
    }
}

int lenv_begin(lenv *pub, unsigned flags, MDB_txn **out) {
    lenv_entry *e = entry_of(pub);
    for (int i = 0; i < 3; i++) {
        pthread_rwlock_rdlock(&e->resize);
        int rc = mdb_txn_begin(pub->env, NULL, flags, out);
        if (rc == 0)
            return 0; /* the lock stays shared until lenv_end */
        pthread_rwlock_unlock(&e->resize);
        if (rc != MDB_MAP_RESIZED)
            return rc;
        pthread_rwlock_wrlock(&e->resize); /* another process grew the map: adopt its size */
        rc = mdb_env_set_mapsize(pub->env, 0);
        pthread_rwlock_unlock(&e->resize);
        if (rc != 0)
            return rc;
    }
    return MDB_MAP_RESIZED;
}

void lenv_end(lenv *pub) {
    pthread_rwlock_unlock(&entry_of(pub)->resize);
}

uint64_t lenv_map_bytes(lenv *pub) {
    MDB_envinfo info;
    mdb_env_info(pub->env, &info);
    return info.me_mapsize;
}

int lenv_grow(lenv *pub, uint64_t max_bytes) {
    lenv_entry *e = entry_of(pub);
    pthread_rwlock_wrlock(&e->resize);
    uint64_t cur = lenv_map_bytes(pub);
    int rc = 0;
    if (cur >= max_bytes)
        rc = kl_errf(KL_ENOSPC,
                     "%s: the view's LMDB map is full at %llu bytes, the most it may grow to "
                     "(max_map_bytes); nothing of the transaction was committed",
                     pub->path, (unsigned long long)cur);
    uint64_t next = KL_MIN(cur * 2, max_bytes);
    if (rc == 0 && (rc = mdb_env_set_mapsize(pub->env, (size_t)next)) != 0)
        rc = lenv_err(rc, "%s: growing the map to %llu bytes", pub->path, (unsigned long long)next);
    pthread_rwlock_unlock(&e->resize);
    KL_ASSERT(rc <= 0);
    return rc;
}
