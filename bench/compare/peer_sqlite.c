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
 * synchronous=OFF is the "none" class (matched with kappalog's never).
 * With k->producers > 1, each producer is a thread with a connection of its
 * own to one WAL database, its transactions BEGIN IMMEDIATE (the write lock
 * taken up front, so two writers never deadlock upgrading a read lock) and
 * a busy timeout; only committed rows count. The visible run has a writer
 * inserting single rows at a steady pace and a reader thread on a second
 * connection polling `SELECT max(id)`, then reading each new row.
 *
 * What a reader would get wrong: the rows are bound with SQLITE_STATIC from
 * the same prepared pool as kappalog's blocks, so neither side copies its
 * records before the call; closing the database (its final checkpoint) is
 * not timed, as kappalog's close is not. synchronous is a setting of each
 * connection, not of the database: every connection sets it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef KL_BENCH_SQLITE
#include <sqlite3.h>
#endif

#include "compare.h"

#ifdef KL_BENCH_SQLITE

#define BUSY_TIMEOUT_MS 10000 /* a producer waits this long for the write lock (not counted) */
#define POLL_NS         50000 /* the visible reader's sleep between two polls (50 us) */
#define VISIBLE_DRAIN_S 5.0   /* the reader gives up this long after the writer's last insert */

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
    /* the visible run's reader, on a connection of its own, can hold a lock a moment (its
       first read of the WAL index): without a timeout an insert then fails with "database
       is locked" (bench_compare_quick failed so once in CI) */
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
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

/* The single-producer append loop: one connection, BEGIN..COMMIT per transaction. */
static void append_single(const cmp_ctx *c, const cmp_case *k, sqlite3 *db, cmp_out *out) {
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
    sqlite3_finalize(ins);
}

static int append_producers(const cmp_ctx *c, const cmp_case *k, const char *dir, cmp_out *out,
                            uint64_t *busy);

static int sq_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char dir[4096], how[160] = "";
    sqlite3 *db = open_db(c, "sqlite-append", k->setting, dir, sizeof dir);
    uint64_t busy = 0;
    if (k->producers > 1) {
        /* db stays open: the producers' connections come and go beside it */
        if (append_producers(c, k, dir, out, &busy) < 0) {
            sqlite3_close(db);
            rm_rf(dir);
            return -1;
        }
        snprintf(how, sizeof how,
                 "; %d threads with a connection each, BEGIN IMMEDIATE, busy_timeout %d ms, "
                 "%llu transactions busy past it (not counted)",
                 k->producers, BUSY_TIMEOUT_MS, (unsigned long long)busy);
    } else {
        append_single(c, k, db, out);
    }
    sqlite3_stmt *count = prepare(db, "SELECT count(*) FROM log");
    if (sqlite3_step(count) != SQLITE_ROW ||
        (uint64_t)sqlite3_column_int64(count, 0) != out->run.records)
        die("sqlite: the table does not hold the %llu rows inserted",
            (unsigned long long)out->run.records);
    sqlite3_finalize(count);
    uint64_t c0 = now_ns();
    if (sqlite3_close(db) != SQLITE_OK)
        die("sqlite: close failed");
    snprintf(out->note, sizeof out->note,
             "SQLite %s, WAL, synchronous=%s, a prepared INSERT per row, BEGIN..COMMIT per "
             "transaction of %zu rows, fresh database%s; close after the last run (not timed): "
             "%.3f s",
             sqlite3_libversion(), k->setting, k->pool->batch, how, (double)(now_ns() - c0) / 1e9);
    rm_rf(dir);
    return 0;
}

/* sql on db, 0 or -1 and why (for the threads, which return their failures). */
static int sql_try(sqlite3 *db, const char *sql, char *why, size_t cap) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK)
        return 0;
    snprintf(why, cap, "sqlite: %s: %.150s", sql, err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    return -1;
}

/* One more connection to the database at path (a thread's own), synchronous=sync. */
static sqlite3 *connect_db(const char *path, const char *sync, char *why, size_t cap) {
    sqlite3 *db = NULL;
    char sql[64];
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(why, cap, "sqlite: cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", sync);
    if (sql_try(db, sql, why, cap) < 0) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* The producers of one append run: a connection and a thread each, one database. */
typedef struct sq_producers {
    const cmp_ctx *c;
    const cmp_case *k;
    char path[4200];
    atomic_uint_fast64_t busy; /* transactions that found the write lock busy past the timeout */
} sq_producers;

typedef struct sq_txn {
    sqlite3 *db;
    sqlite3_stmt *begin, *ins, *commit, *rollback;
} sq_txn;

/* One statement without rows: SQLITE_DONE, or its error code (the statement reset). */
static int step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

/*
 * n rows in one BEGIN IMMEDIATE..COMMIT: SQLITE_DONE when committed,
 * SQLITE_BUSY when the write lock stayed busy past the busy timeout
 * (nothing committed), else -1 and why.
 */
static int txn_rows(sq_txn *x, const kl_block *b, size_t n, char *why, size_t cap) {
    int rc = step_done(x->begin);
    if (rc == SQLITE_BUSY)
        return SQLITE_BUSY;
    for (size_t i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_bind_blob(x->ins, 1, b[i].data, (int)b[i].size, SQLITE_STATIC);
        rc = step_done(x->ins);
    }
    if (rc == SQLITE_DONE)
        rc = step_done(x->commit);
    if (rc == SQLITE_DONE)
        return SQLITE_DONE;
    snprintf(why, cap, "sqlite: transaction: %s", sqlite3_errmsg(x->db));
    if (!sqlite3_get_autocommit(x->db))
        step_done(x->rollback);
    return rc == SQLITE_BUSY ? SQLITE_BUSY : -1;
}

static int sq_produce(void *arg, int i, uint64_t end, cmp_out *o) {
    sq_producers *w = arg;
    const bench_pool *p = w->k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    uint64_t cap = w->c->run_cap_bytes / (uint64_t)w->k->producers, busy = 0;
    sq_txn x = {.db = connect_db(w->path, w->k->setting, o->why, sizeof o->why)};
    if (!x.db)
        return -1;
    x.begin = prepare(x.db, "BEGIN IMMEDIATE");
    x.ins = prepare(x.db, "INSERT INTO log(data) VALUES (?1)");
    x.commit = prepare(x.db, "COMMIT");
    x.rollback = prepare(x.db, "ROLLBACK");
    int rc = SQLITE_DONE;
    uint64_t start = now_ns(), t = start;
    for (unsigned v = (unsigned)i; t < end && o->run.bytes < cap; v++) {
        rc = txn_rows(&x, pool_batch_blocks(p, v), p->batch, o->why, sizeof o->why);
        if (rc == SQLITE_DONE)
            cmp_op_done(o, &t, p->batch, batch_bytes);
        else if (rc == SQLITE_BUSY)
            busy++, t = now_ns(); /* not committed, not counted */
        else
            break;
    }
    o->run.seconds = (double)(t - start) / 1e9;
    atomic_fetch_add(&w->busy, busy);
    sqlite3_finalize(x.begin);
    sqlite3_finalize(x.ins);
    sqlite3_finalize(x.commit);
    sqlite3_finalize(x.rollback);
    sqlite3_close(x.db);
    if (rc == SQLITE_BUSY)
        o->why[0] = '\0';
    return rc == -1 ? -1 : 0;
}

/* k->producers threads with a connection each inserting into the database db holds open. */
static int append_producers(const cmp_ctx *c, const cmp_case *k, const char *dir, cmp_out *out,
                            uint64_t *busy) {
    sq_producers w = {.c = c, .k = k};
    snprintf(w.path, sizeof w.path, "%s/log.db", dir);
    atomic_init(&w.busy, 0);
    if (!sqlite3_threadsafe()) {
        snprintf(out->why, sizeof out->why, "sqlite: the library is built single-threaded");
        return -1;
    }
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    int rc = cmp_run_producers(k, c->append_s, sq_produce, &w, out);
    out->run.other_cpu_s = cpu_other_s(&cpu);
    *busy = atomic_load(&w.busy);
    return rc;
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

/*
 * The visible run's shared state. The writer stores start_ns[i] (release)
 * before it inserts row i + 1; the reader loads it (acquire) once it has
 * seen that row, so 0 there would mean a row seen before it was inserted.
 */
typedef struct sq_visible {
    cmp_visible v; /* what cmp_visible_run shares with the reader */
    char path[4200];
    uint64_t polls; /* the reader's */
} sq_visible;

/* The largest id committed, as a fresh read transaction sees it; -1 and why on errors. */
static int64_t max_id(sqlite3 *db, sqlite3_stmt *st, char *why, size_t cap) {
    int rc = sqlite3_step(st);
    int64_t id = rc == SQLITE_ROW ? (int64_t)sqlite3_column_int64(st, 0) : -1; /* NULL: 0 */
    if (id < 0)
        snprintf(why, cap, "reader: SELECT max(id): %s", sqlite3_errmsg(db));
    sqlite3_reset(st);
    return id;
}

/* Row i + 1 as the reader got it, checked against what was inserted; 0 or -1 and why. */
static int visible_check(cmp_visible *v, sqlite3 *db, sqlite3_stmt *sel, uint64_t i) {
    const kl_block *b = pool_batch_blocks(v->k->pool, (unsigned)i);
    sqlite3_bind_int64(sel, 1, (sqlite3_int64)i + 1);
    int rc = sqlite3_step(sel);
    int ok = rc == SQLITE_ROW && (size_t)sqlite3_column_bytes(sel, 0) == b->size &&
             memcmp(sqlite3_column_blob(sel, 0), b->data, b->size) == 0;
    if (!ok)
        snprintf(v->why, sizeof v->why, "reader: row %llu: %s", (unsigned long long)i + 1,
                 rc == SQLITE_ROW ? "other bytes than inserted" : sqlite3_errmsg(db));
    sqlite3_reset(sel);
    return ok ? 0 : -1;
}

/* Poll max(id) until the writer is done and every row it inserted was seen. */
static void visible_poll(sq_visible *s, sqlite3 *db, sqlite3_stmt *top, sqlite3_stmt *sel) {
    cmp_visible *v = &s->v;
    const struct timespec nap = {.tv_nsec = POLL_NS};
    uint64_t drain_end = 0;
    for (;;) {
        int done = atomic_load_explicit(&v->done, memory_order_acquire);
        uint64_t written = atomic_load_explicit(&v->written, memory_order_acquire);
        if (done && v->seen >= written)
            return;
        int64_t top_id = max_id(db, top, v->why, sizeof v->why);
        s->polls++;
        if (top_id < 0)
            return;
        for (; v->seen < (uint64_t)top_id; v->seen++) {
            if (visible_check(v, db, sel, v->seen) < 0)
                return;
            uint64_t t0 = atomic_load_explicit(&v->start_ns[v->seen], memory_order_acquire);
            v->last_ns = now_ns();
            if (t0 == 0 || t0 > v->last_ns) {
                snprintf(v->why, sizeof v->why, "reader: saw row %llu before it was inserted",
                         (unsigned long long)v->seen + 1);
                return;
            }
            hist_add(v->hist, v->last_ns - t0);
        }
        if (done && drain_end == 0)
            drain_end = now_ns() + (uint64_t)(VISIBLE_DRAIN_S * 1e9);
        if (drain_end && now_ns() > drain_end) {
            snprintf(v->why, sizeof v->why,
                     "reader: %llu of %llu inserted rows not visible %.0f s after the last insert",
                     (unsigned long long)(written - v->seen), (unsigned long long)written,
                     VISIBLE_DRAIN_S);
            return;
        }
        nanosleep(&nap, NULL);
    }
}

static void *visible_reader(void *arg) {
    sq_visible *s = arg;
    cmp_visible *v = &s->v;
    sqlite3 *db = connect_db(s->path, v->k->setting, v->why, sizeof v->why);
    if (!db)
        return NULL;
    sqlite3_stmt *top = prepare(db, "SELECT max(id) FROM log");
    sqlite3_stmt *sel = prepare(db, "SELECT data FROM log WHERE id = ?1");
    visible_poll(s, db, top, sel);
    sqlite3_finalize(top);
    sqlite3_finalize(sel);
    sqlite3_close(db);
    return NULL;
}

/* The writer: one row per transaction, every pace; late slots are not made up. */
typedef struct sq_writer {
    sqlite3 *db;
    sqlite3_stmt *ins;
    const cmp_case *k;
} sq_writer;

/* Record i of the visible run: one row in a transaction of its own (insert_rows dies on errors). */
static int visible_append(void *arg, uint64_t i, char *why, size_t why_cap) {
    (void)why;
    (void)why_cap;
    const sq_writer *w = arg;
    insert_rows(w->db, w->ins, pool_batch_blocks(w->k->pool, (unsigned)i), 1);
    return 0;
}

static int sq_visible_run(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char dir[4096];
    sqlite3 *db = open_db(c, "sqlite-append", k->setting, dir, sizeof dir);
    sq_visible v = {.v = {.k = k, .hist = out->hist}};
    snprintf(v.path, sizeof v.path, "%s/log.db", dir);
    sq_writer w = {db, prepare(db, "INSERT INTO log(data) VALUES (?1)"), k};
    uint64_t late = 0;
    int rc =
        cmp_visible_run(c, &v.v, visible_reader, &v, visible_append, &w, 0, "rows", &late, out);
    sqlite3_finalize(w.ins);
    if (sqlite3_close(db) != SQLITE_OK)
        die("sqlite: close failed");
    rm_rf(dir);
    snprintf(out->note, sizeof out->note,
             "SQLite %s, WAL, synchronous=%s, a writer inserting one %zu-byte row per "
             "transaction every %.0f us (clock_nanosleep to an absolute slot; %llu late slots "
             "not made up); a reader thread on a second connection polling SELECT max(id) "
             "(%llu polls, %d us sleep between them), then SELECT data of each new row; latency "
             "= its row read - its insert started",
             sqlite3_libversion(), k->setting, k->record_bytes, k->pace_us,
             (unsigned long long)late, (unsigned long long)v.polls, POLL_NS / 1000);
    return rc;
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

typedef struct sq_get_arg {
    sqlite3_stmt *sel;
    const cmp_case *k;
} sq_get_arg;

static long get_one(void *arg, uint64_t i, uint8_t *buf, size_t cap, char *why, size_t why_cap) {
    (void)why;
    (void)why_cap;
    const sq_get_arg *g = arg;
    return (long)point_read(g->sel, g->k->idx[i & (g->k->nidx - 1)] + 1, buf, cap);
}

static int sq_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    sq_get_arg g = {prepare(read_db, "SELECT data FROM log WHERE id = ?1"), k};
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    int rc = cmp_get_loop(c, k, get_one, &g, out);
    out->run.other_cpu_s = cpu_other_s(&cpu);
    snprintf(out->note, sizeof out->note,
             "SQLite %s, a prepared SELECT data FROM log WHERE id = ? per read, the blob copied "
             "into a buffer, page-cached",
             sqlite3_libversion());
    sqlite3_finalize(g.sel);
    return rc;
}

/*
 * The read store's directory: log.db, its -wal (emptied by the checkpoint
 * after the load) and its -shm (32 KiB, the WAL index).
 */
static uint64_t sq_storage(const cmp_ctx *c) {
    (void)c;
    return cmp_disk_bytes(read_path);
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

#define sq_append      NULL
#define sq_visible_run NULL
#define sq_load        NULL
#define sq_storage     NULL
#define sq_read        NULL
#define sq_get         NULL
#define sq_unload      NULL
#define sq_teardown    NULL

#endif

const cmp_peer cmp_peer_sqlite = {
    .name = "sqlite",
    .append_verb = "insert",
    .batch_word = "txn",
    .setting_word = "synchronous",
    .read_verb = "select sequential",
    .get_verb = "select point",
    .setting = {[CMP_DUR_NONE] = "OFF", [CMP_DUR_INTERVAL] = "NORMAL", [CMP_DUR_EVERY] = "FULL"},
    .batches = {1, 100, 1000},
    .producers = 1,
    .setup = sq_setup,
    .append = sq_append,
    .visible = sq_visible_run,
    .load = sq_load,
    .storage = sq_storage,
    .read = sq_read,
    .get = sq_get,
    .unload = sq_unload,
    .teardown = sq_teardown,
};
