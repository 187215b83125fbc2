/*
 * peer_sqlite.c - SQLite as an append-only log: a table of blobs,
 * `CREATE TABLE log(id INTEGER PRIMARY KEY, data BLOB)`, in WAL mode with
 * synchronous=NORMAL (synced at checkpoints: matched with kappalog's
 * interval:1000) and FULL (the WAL synced at every commit: matched with
 * always). Appends are prepared INSERTs of the records, transactions of 1,
 * 100 and 1,000 rows, one timed op per transaction (BEGIN to COMMIT); the
 * reads are `SELECT data FROM log ORDER BY id` over everything and
 * `SELECT data FROM log WHERE id = ?` of random ids, the blob copied out
 * as kl_log_get copies its record.
 *
 * SQLite's defaults otherwise (page size, cache, wal_autocheckpoint of
 * 1,000 pages): the figures are of SQLite as an application would open it.
 *
 * What a reader would get wrong: the rows are bound with SQLITE_STATIC from
 * the same prepared pool as kappalog's blocks, so neither side copies its
 * records before the call; closing the database (its final checkpoint) is
 * not timed, as kappalog's close is not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KL_BENCH_SQLITE
#include <sqlite3.h>
#endif

#include "compare.h"

#ifdef KL_BENCH_SQLITE

static sqlite3 *read_db;
static char read_path[4096];

static void sql_exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        die("sqlite: %s: %s", sql, err ? err : "?");
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        die("sqlite: %s: %s", sql, sqlite3_errmsg(db));
    return st;
}

/* A fresh database in its own directory (the -wal and -shm files go beside it). */
static sqlite3 *open_db(const cmp_ctx *c, const char *name, const char *sync, char *dir,
                        size_t cap) {
    cmp_scratch(c, name, dir, cap);
    if (mkdir_p(dir) < 0)
        die("cannot create %s", dir);
    char path[4200], sql[128];
    snprintf(path, sizeof path, "%s/log.db", dir);
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("sqlite: cannot open %s", path);
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;", sync);
    sql_exec(db, sql);
    sql_exec(db, "CREATE TABLE log(id INTEGER PRIMARY KEY, data BLOB)");
    return db;
}

static int sq_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    (void)why;
    (void)cap;
    return 0;
}

static void insert_rows(sqlite3 *db, sqlite3_stmt *ins, const kl_block *b, size_t n) {
    sql_exec(db, "BEGIN");
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_blob(ins, 1, b[i].data, (int)b[i].size, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die("sqlite: insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(ins);
    }
    sql_exec(db, "COMMIT");
}

static int sq_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char dir[4096];
    sqlite3 *db = open_db(c, "sqlite-append", k->setting, dir, sizeof dir);
    sqlite3_stmt *ins = prepare(db, "INSERT INTO log(data) VALUES (?1)");
    const bench_pool *p = k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(c->append_s * 1e9);
    for (unsigned v = 0; t < end && out->run.bytes < c->run_cap_bytes; v++) {
        insert_rows(db, ins, pool_batch_blocks(p, v), p->batch);
        cmp_op_done(out, &t, p->batch, batch_bytes);
    }
    out->run.seconds = (double)(t - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
    sqlite3_stmt *count = prepare(db, "SELECT count(*) FROM log");
    if (sqlite3_step(count) != SQLITE_ROW ||
        (uint64_t)sqlite3_column_int64(count, 0) != out->run.records)
        die("sqlite: the table does not hold the %llu rows inserted",
            (unsigned long long)out->run.records);
    sqlite3_finalize(count);
    sqlite3_finalize(ins);
    uint64_t c0 = now_ns();
    if (sqlite3_close(db) != SQLITE_OK)
        die("sqlite: close failed");
    snprintf(out->note, sizeof out->note,
             "SQLite %s, WAL, synchronous=%s, a prepared INSERT per row, BEGIN..COMMIT per "
             "transaction of %zu rows, fresh database; close after the last run (not timed): "
             "%.3f s",
             sqlite3_libversion(), k->setting, p->batch, (double)(now_ns() - c0) / 1e9);
    rm_rf(dir);
    return 0;
}

/* The blob of row id (1-based) into buf; its size. */
static size_t point_read(sqlite3_stmt *sel, uint64_t id, uint8_t *buf, size_t cap) {
    sqlite3_bind_int64(sel, 1, (sqlite3_int64)id);
    if (sqlite3_step(sel) != SQLITE_ROW)
        die("sqlite: no row %llu", (unsigned long long)id);
    size_t n = (size_t)sqlite3_column_bytes(sel, 0);
    const void *data = sqlite3_column_blob(sel, 0);
    if (n > cap)
        die("sqlite: row %llu has %zu bytes", (unsigned long long)id, n);
    memcpy(buf, data, n);
    sqlite3_reset(sel);
    return n;
}

static int sq_load(const cmp_ctx *c, const cmp_case *k, char *why, size_t cap) {
    (void)why;
    (void)cap;
    read_db = open_db(c, "sqlite-read", "NORMAL", read_path, sizeof read_path);
    sqlite3_stmt *ins = prepare(read_db, "INSERT INTO log(data) VALUES (?1)");
    for (uint64_t i = 0; i < k->records; i += CMP_LOAD_BATCH)
        insert_rows(read_db, ins, cmp_record(k, i), CMP_LOAD_BATCH);
    sqlite3_finalize(ins);
    sql_exec(read_db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_stmt *sel = prepare(read_db, "SELECT data FROM log WHERE id = ?1");
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    for (unsigned i = 0; i < CMP_CHECKS; i++) {
        uint64_t at = k->idx[i % k->nidx];
        size_t n = point_read(sel, at + 1, buf, k->record_bytes);
        const kl_block *b = cmp_record(k, at);
        if (n != b->size || memcmp(buf, b->data, n) != 0)
            die("sqlite: row %llu holds other bytes than were inserted",
                (unsigned long long)at + 1);
    }
    free(buf);
    sqlite3_finalize(sel);
    return 0;
}

static int sq_read(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    (void)c;
    uint64_t sink = 0;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns();
    sqlite3_stmt *sel = prepare(read_db, "SELECT data FROM log ORDER BY id");
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(sel, 0);
        const uint8_t *data = sqlite3_column_blob(sel, 0);
        out->run.bytes += n;
        sink += data[n - 1];
        out->run.records++;
    }
    if (rc != SQLITE_DONE)
        die("sqlite: select: %s", sqlite3_errmsg(read_db));
    sqlite3_finalize(sel);
    out->run.seconds = (double)(now_ns() - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
    out->run.ops = out->run.records;
    if (out->run.records != k->records)
        die("sqlite: read %llu rows of %llu", (unsigned long long)out->run.records,
            (unsigned long long)k->records);
    snprintf(out->note, sizeof out->note,
             "SQLite %s, SELECT data FROM log ORDER BY id (prepared in the timed region), "
             "page-cached (sink %llu)",
             sqlite3_libversion(), (unsigned long long)(sink & 0xff));
    return 0;
}

static int sq_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    sqlite3_stmt *sel = prepare(read_db, "SELECT data FROM log WHERE id = ?1");
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(c->get_s * 1e9);
    for (uint64_t i = 0; t < end; i++) {
        size_t n = point_read(sel, k->idx[i & (k->nidx - 1)] + 1, buf, k->record_bytes);
        cmp_op_done(out, &t, 1, n);
    }
    out->run.seconds = (double)(t - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
    snprintf(out->note, sizeof out->note,
             "SQLite %s, a prepared SELECT data FROM log WHERE id = ? per read, the blob copied "
             "into a buffer, page-cached",
             sqlite3_libversion());
    free(buf);
    sqlite3_finalize(sel);
    return 0;
}

static void sq_unload(const cmp_ctx *c) {
    (void)c;
    if (read_db)
        sqlite3_close(read_db);
    read_db = NULL;
    if (read_path[0])
        rm_rf(read_path);
    read_path[0] = '\0';
}

static void sq_teardown(const cmp_ctx *c) {
    sq_unload(c);
}

#else /* built without SQLite: every figure says so */

static int sq_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    snprintf(why, cap, "built without SQLite (libsqlite3-dev)");
    return -1;
}

#define sq_append   NULL
#define sq_load     NULL
#define sq_read     NULL
#define sq_get      NULL
#define sq_unload   NULL
#define sq_teardown NULL

#endif

const cmp_peer cmp_peer_sqlite = {
    .name = "sqlite",
    .append_verb = "insert",
    .batch_word = "txn",
    .setting_word = "synchronous",
    .read_verb = "select sequential",
    .get_verb = "select point",
    .setting = {[CMP_DUR_INTERVAL] = "NORMAL", [CMP_DUR_EVERY] = "FULL"},
    .batches = {1, 100, 1000},
    .setup = sq_setup,
    .append = sq_append,
    .load = sq_load,
    .read = sq_read,
    .get = sq_get,
    .unload = sq_unload,
    .teardown = sq_teardown,
};
