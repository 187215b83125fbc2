/*
 * views.c - how fast a materialized view is built (issue 5): a `count`
 * view over 10 million 100-byte JSON events with 100,000 distinct keys,
 * built by `kl_view_update` from a log that holds them all, and again by a
 * full `kl_view_rebuild`; and, in the same run, SQLite doing the same
 * aggregation: WAL, synchronous=NORMAL, one transaction per 10,000 events,
 * `INSERT ... ON CONFLICT DO UPDATE`, the key taken with SQLite's own
 * json_extract from the same records, read from the same log.
 *
 * Targets: the count view at >= 1,000,000 events/s and >= 3x SQLite's
 * rate; the full rebuild of the 10 million events in under 15 s.
 *
 * What a reader would get wrong: both sides read the records from the
 * kappalog log (page-cached after it is written), so the comparison is of
 * the aggregation, not of where the events come from; and the results are
 * checked against each other (the total and a sample of keys) before a
 * figure is kept.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KL_BENCH_SQLITE
#include <sqlite3.h>
#endif

#include "bench.h"

#define VIEW_EVENT_BYTES  100
#define VIEW_KEYS         100000u
#define VIEW_BATCH        1000u
#define SQLITE_TXN_EVENTS 10000u
#define TARGET_VIEW_RATE  1000000.0 /* events/s */
#define TARGET_VS_SQLITE  3.0
#define TARGET_REBUILD_S  15.0
#define VIEW_CHECK_KEYS   50 /* keys compared between the view and SQLite */

static const char *const type_names[] = {"click", "view", "purchase", "signup"};

/* Event i: {"seq":...,"user":"user-NNNNNN","type":"...","amount":N,"pad":"..."}, 100 bytes. */
static size_t make_event(char *out, uint64_t i, uint64_t *rng) {
    uint64_t r = rng_next(rng);
    int n =
        snprintf(out, VIEW_EVENT_BYTES + 1,
                 "{\"seq\":%llu,\"user\":\"user-%06u\",\"type\":\"%s\",\"amount\":%u,\"pad\":\"",
                 (unsigned long long)i, (unsigned)(r % VIEW_KEYS), type_names[(r >> 32) & 3],
                 (unsigned)((r >> 40) % 200));
    if (n < 0 || n > VIEW_EVENT_BYTES - 2)
        die("event %llu does not fit in %d bytes", (unsigned long long)i, VIEW_EVENT_BYTES);
    memset(out + n, 'x', (size_t)(VIEW_EVENT_BYTES - 2 - n));
    memcpy(out + VIEW_EVENT_BYTES - 2, "\"}", 2);
    return VIEW_EVENT_BYTES;
}

/* The log of `events` events (never synced while written; synced at the end). */
static void build_log(const bench_opts *o, const char *path, uint64_t events) {
    kl_log *log = bench_log_fresh(o, path, KL_FSYNC_NEVER);
    char *buf = malloc((size_t)VIEW_BATCH * VIEW_EVENT_BYTES);
    kl_block *blocks = malloc(VIEW_BATCH * sizeof *blocks);
    if (!buf || !blocks)
        die("out of memory for a batch of events");
    uint64_t rng = 42;
    for (uint64_t i = 0; i < events; i += VIEW_BATCH) {
        uint64_t n = events - i < VIEW_BATCH ? events - i : VIEW_BATCH;
        for (uint64_t k = 0; k < n; k++) {
            char *e = buf + k * VIEW_EVENT_BYTES;
            blocks[k].data = e;
            blocks[k].size = make_event(e, i + k, &rng);
        }
        int rc = kl_log_append(log, blocks, (size_t)n, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
        if ((i / VIEW_BATCH) % 1000 == 0)
            progress("views: writing the log, %llu of %llu events", (unsigned long long)i,
                     (unsigned long long)events);
    }
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    free(buf);
    free(blocks);
}

static void add_run(bench_result *r, uint64_t events, uint64_t t0, uint64_t t1,
                    const cpu_mark *cpu) {
    bench_run run = {.ops = events, .records = events, .bytes = events * VIEW_EVENT_BYTES};
    run.seconds = (double)(t1 - t0) / 1e9;
    run.other_cpu_s = cpu_other_s(cpu);
    result_add_run(r, &run, NULL);
}

/* One timed kl_view_update of a new count view over the whole log. */
static void view_update_run(const char *path, bench_result *r, uint64_t events) {
    kl_view_drop(path, "bench-count");
    int rc = kl_view_create(path, "bench-count", KL_VIEW_COUNT, "user", NULL);
    if (rc < 0)
        die_kl("kl_view_create", rc);
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t applied = 0, t0 = now_ns();
    rc = kl_view_update(path, "bench-count", NULL, &applied);
    uint64_t t1 = now_ns();
    if (rc < 0)
        die_kl("kl_view_update", rc);
    if (applied != events)
        die("the view applied %llu of %llu events", (unsigned long long)applied,
            (unsigned long long)events);
    add_run(r, events, t0, t1, &cpu);
}

static void view_rebuild_run(const char *path, bench_result *r, uint64_t events) {
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t t0 = now_ns();
    int rc = kl_view_rebuild(path, "bench-count", 0, NULL);
    uint64_t t1 = now_ns();
    if (rc < 0)
        die_kl("kl_view_rebuild", rc);
    kl_view_info info;
    rc = kl_view_stat(path, "bench-count", &info);
    if (rc < 0 || info.position != events)
        die("the rebuilt view is at %llu of %llu events", (unsigned long long)info.position,
            (unsigned long long)events);
    add_run(r, events, t0, t1, &cpu);
}

#ifdef KL_BENCH_SQLITE
static void sql_exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        die("sqlite: %s: %s", sql, err ? err : "?");
}

/* The same aggregation in SQLite, reading the same records from the log. */
static void sqlite_run(const bench_opts *o, const char *path, bench_result *r, uint64_t events) {
    char db_path[4096];
    path_join(db_path, sizeof db_path, o->dir, "views-sqlite.db");
    char wal[4200], shm[4200];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    snprintf(shm, sizeof shm, "%s-shm", db_path);
    remove(db_path);
    remove(wal);
    remove(shm);
    sqlite3 *db = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        die("sqlite: cannot open %s", db_path);
    sql_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "CREATE TABLE counts(k TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO counts(k, n) VALUES (json_extract(?1, '$.user'), 1) "
                           "ON CONFLICT(k) DO UPDATE SET n = n + 1",
                           -1, &st, NULL) != SQLITE_OK)
        die("sqlite: %s", sqlite3_errmsg(db));
    kl_log *log = bench_log_open(o, path, KL_FSYNC_NEVER);
    kl_iter *it = NULL;
    int rc = kl_iter_open(log, 0, UINT64_MAX, &it);
    if (rc < 0)
        die_kl("kl_iter_open", rc);
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t n = 0, t0 = now_ns();
    kl_record rec;
    sql_exec(db, "BEGIN");
    while ((rc = kl_iter_next(it, &rec)) == 1) {
        sqlite3_bind_text(st, 1, rec.data, (int)rec.size, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("sqlite: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
        if (++n % SQLITE_TXN_EVENTS == 0)
            sql_exec(db, "COMMIT; BEGIN");
    }
    sql_exec(db, "COMMIT");
    uint64_t t1 = now_ns();
    if (rc < 0 || n != events)
        die("sqlite run read %llu of %llu events", (unsigned long long)n,
            (unsigned long long)events);
    add_run(r, events, t0, t1, &cpu);
    kl_iter_close(it);
    kl_log_close(log);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The view and SQLite agree: the same total and the same count for a sample of keys. */
static void check_agree(const bench_opts *o, const char *path, uint64_t events) {
    char db_path[4096];
    path_join(db_path, sizeof db_path, o->dir, "views-sqlite.db");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT n FROM counts WHERE k = ?1", -1, &st, NULL) != SQLITE_OK)
        die("sqlite: cannot read %s", db_path);
    for (unsigned k = 0; k < VIEW_CHECK_KEYS; k++) {
        char key[32], *val = NULL;
        size_t len = 0;
        snprintf(key, sizeof key, "user-%06u", k * (VIEW_KEYS / VIEW_CHECK_KEYS));
        int got = kl_view_get(path, "bench-count", key, strlen(key), &val, &len);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int have = sqlite3_step(st) == SQLITE_ROW;
        long long n = have ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        if (got < 0 || (got == 1) != have || (have && strtoll(val, NULL, 10) != n))
            die("the view and SQLite disagree on %s: %s against %lld", key, got == 1 ? val : "-",
                n);
        free(val);
    }
    (void)events;
    sqlite3_finalize(st);
    sqlite3_close(db);
}
#endif

void bench_views(const bench_opts *o) {
    uint64_t events = o->quick ? 1000000u : 10000000u;
    int reps = o->quick ? 1 : 3;
    char path[4096], name[128], sname[128], rname[128];
    path_join(path, sizeof path, o->dir, "views-log");
    snprintf(name, sizeof name, "count view update, %lluM events of 100 B, 100k keys",
             (unsigned long long)(events / 1000000u));
    snprintf(sname, sizeof sname, "SQLite count (WAL, NORMAL, 10k/txn), %lluM events",
             (unsigned long long)(events / 1000000u));
    snprintf(rname, sizeof rname, "count view full rebuild, %lluM events",
             (unsigned long long)(events / 1000000u));
    build_log(o, path, events);
    bench_result *v = result_get("views", "view_update", name);
    bench_result *s = result_get("views", "sqlite_upsert", sname);
    bench_result *rb = result_get("views", "view_rebuild", rname);
    v->record_bytes = s->record_bytes = rb->record_bytes = VIEW_EVENT_BYTES;
    for (int i = 0; i < reps; i++) {
        progress("views: count view, run %d of %d", i + 1, reps);
        view_update_run(path, v, events);
        progress("views: full rebuild, run %d of %d", i + 1, reps);
        view_rebuild_run(path, rb, events);
#ifdef KL_BENCH_SQLITE
        progress("views: SQLite, run %d of %d", i + 1, reps);
        sqlite_run(o, path, s, events);
        check_agree(o, path, events);
#endif
    }
#ifndef KL_BENCH_SQLITE
    snprintf(s->missing, sizeof s->missing, "built without SQLite (libsqlite3-dev)");
#endif
    result_finish(s);
    result_print(s);
    result_finish(v);
    result_target(v, TARGET_RATE_MIN, TARGET_VIEW_RATE);
    result_also(v, sname, "x", TARGET_RATIO_MIN, TARGET_VS_SQLITE);
    result_print(v);
    result_finish(rb);
    /* 10 million events in under 15 s is this rate, whatever the size of the run */
    result_target(rb, TARGET_RATE_MIN, 10e6 / TARGET_REBUILD_S);
    result_print(rb);
    if (!o->keep)
        rm_rf(path);
}
