/*
 * test_view.c - processors and the built-in views (consumers/): kv, count
 * and sum views equal a fold computed without the library (view_oracle.h)
 * over a stream with every kind of bad record, updated in steps of random
 * size with appends between them; a processor over several logs; a fork
 * change, a replaced log and a position past the end are reported and
 * change nothing; a map that fills grows (and one that may not grow fails
 * with nothing committed); a shadow rebuild serves the old version until
 * it switches, and an interrupted one leaves the old version live and is
 * resumed; a plain rebuild; names and definitions that are refused; sums
 * printed with a decimal point under a locale whose decimal point is a
 * comma; a stored tree hash the log does not have is refused and listed
 * as diverged, and a source record of an older build (no hash) is read.
 */
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "consumers/processor_internal.h"
#include "engine/util.h"
#include "testutil.h"
#include "view_oracle.h"

#define SEED 0x5eedu

/* A log holding records [0, n) of the stream. */
static char *log_with(uint64_t n) {
    char *dir = tu_new_log("view", KL_FSYNC_NEVER);
    kl_log *w = tu_open(dir);
    assert_int_equal(vo_append(w, SEED, 0, n, 97), 0);
    assert_int_equal(kl_log_close(w), 0);
    return dir;
}

static void append_more(const char *dir, uint64_t from, uint64_t to) {
    kl_log *w = tu_open(dir);
    assert_int_equal(kl_log_length(w), from);
    assert_int_equal(vo_append(w, SEED, from, to, 131), 0);
    assert_int_equal(kl_log_close(w), 0);
}

static void create_views(const char *dir) {
    for (int v = 0; v < NVIEWS; v++)
        if (kl_view_create(dir, VIEWS[v].name, VIEWS[v].kind, "user", VIEWS[v].value) != 0)
            fail_msg("create %s: %s", VIEWS[v].name, kl_last_error());
}

static void update(const char *dir, const char *name, uint64_t max) {
    kl_run_options o = {.max_records = max};
    if (kl_view_update(dir, name, &o, NULL) != 0)
        fail_msg("update %s: %s", name, kl_last_error());
}

static uint64_t position(const char *dir, const char *name) {
    kl_view_info vi;
    assert_int_equal(kl_view_stat(dir, name, &vi), 0);
    return vi.position;
}

static void test_views_equal_an_independent_fold(void **st) {
    (void)st;
    setenv("KL_VIEW_TXN_RECORDS", "613", 1); /* many transactions, boundaries anywhere */
    char *dir = log_with(6000);
    create_views(dir);
    vo_fold f;
    uint64_t rng = 42;
    for (int round = 0; round < 4; round++) {
        for (int v = 0; v < NVIEWS; v++) { /* in steps of random size, then the rest */
            update(dir, VIEWS[v].name, 1 + tu_rand(&rng) % 2500);
            update(dir, VIEWS[v].name, 0);
        }
        vo_init(&f, SEED);
        vo_fold_to(&f, 6000 + (uint64_t)round * 1500);
        for (int v = 0; v < NVIEWS; v++) {
            vo_expect_view(&f, dir, VIEWS[v].name, VIEWS[v].kind);
            vo_expect_gets(&f, dir, VIEWS[v].name, VIEWS[v].kind);
        }
        append_more(dir, f.length, f.length + 1500);
    }
    unsetenv("KL_VIEW_TXN_RECORDS");
    tu_rm_log(dir);
}

typedef struct scan_seen {
    char last[64];
    uint64_t n, total;
} scan_seen;

/* Keys come in ascending order; sums up the counts. */
static int scan_count(void *ctx, const void *k, size_t kn, const void *v, size_t vn) {
    scan_seen *s = ctx;
    char key[64], val[32];
    assert_true(kn < sizeof key && vn < sizeof val);
    memcpy(key, k, kn);
    key[kn] = '\0';
    memcpy(val, v, vn);
    val[vn] = '\0';
    if (s->n)
        assert_true(strcmp(s->last, key) < 0);
    strcpy(s->last, key);
    s->n++;
    s->total += strtoull(val, NULL, 10);
    return 0;
}

static void test_scan_lists_every_entry_in_key_order(void **st) {
    (void)st;
    char *dir = log_with(3000);
    create_views(dir);
    update(dir, "count", 0);
    vo_fold f;
    vo_init(&f, SEED);
    vo_fold_to(&f, 3000);
    scan_seen s = {"", 0, 0};
    assert_int_equal(kl_view_scan(dir, "count", "", 0, 0, scan_count, &s), 0);
    uint64_t keys = 0, total = 0;
    for (int k = 0; k < VO_KEYS; k++) {
        keys += f.count[k] > 0;
        total += f.count[k];
    }
    assert_int_equal(s.n, keys);
    assert_int_equal(s.total, total);
    memset(&s, 0, sizeof s);
    assert_int_equal(kl_view_scan(dir, "count", "u1", 2, 5, scan_count, &s), 0);
    assert_int_equal(s.n, 5); /* u1, u10, u100, u101, u102 */
    assert_string_equal(s.last, "u102");
    tu_rm_log(dir);
}

/* ---- a processor of its own over several logs ------------------------------------------- */

/* Counts records per (source, key) with kl_txn_get / kl_txn_put. */
static int count_apply(void *ctx, kl_txn *txn, size_t source, const kl_record *recs, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        char key[16];
        int kn = snprintf(key, sizeof key, "%zu:%u", source, (unsigned)recs[i].size % 7);
        const void *v;
        size_t vn;
        uint64_t c = 0;
        int rc = kl_txn_get(txn, key, (size_t)kn, &v, &vn);
        if (rc < 0)
            return rc;
        if (rc == 1)
            memcpy(&c, v, sizeof c);
        c++;
        if ((rc = kl_txn_put(txn, key, (size_t)kn, &c, sizeof c)) < 0)
            return rc;
    }
    return 0;
}

static uint64_t stored(kl_processor *p, size_t source, unsigned bucket) {
    kl_txn *t = NULL;
    assert_int_equal(kl_processor_read(p, &t), 0);
    char key[16];
    int kn = snprintf(key, sizeof key, "%zu:%u", source, bucket);
    const void *v;
    size_t vn;
    uint64_t c = 0;
    int rc = kl_txn_get(t, key, (size_t)kn, &v, &vn);
    assert_true(rc == 0 || (rc == 1 && vn == sizeof c));
    if (rc == 1)
        memcpy(&c, v, sizeof c);
    assert_int_equal(kl_txn_put(t, key, (size_t)kn, &c, sizeof c), KL_EREADONLY);
    kl_txn_end(t);
    return c;
}

static void expect_counts(kl_processor *p, size_t nlogs, const uint64_t *len) {
    for (size_t s = 0; s < nlogs; s++) {
        uint64_t want[7] = {0};
        for (uint64_t i = 0; i < len[s]; i++) {
            char buf[VO_REC_BYTES];
            vo_event e;
            want[vo_record(SEED + s, i, buf, &e) % 7]++;
        }
        for (unsigned b = 0; b < 7; b++)
            assert_int_equal(stored(p, s, b), want[b]);
        assert_int_equal(kl_processor_position(p, s), len[s]);
    }
}

static void test_a_processor_reads_several_logs(void **st) {
    (void)st;
    char *dirs[3];
    kl_log *logs[3];
    uint64_t len[3] = {500, 1700, 0};
    for (int s = 0; s < 3; s++) {
        dirs[s] = tu_new_log("view-multi", KL_FSYNC_NEVER);
        logs[s] = tu_open(dirs[s]);
        assert_int_equal(vo_append(logs[s], SEED + (uint64_t)s, 0, len[s], 50), 0);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s.view", dirs[0]);
    kl_processor_def def;
    kl_processor_def_default(&def);
    def.name = "bucket counts v1";
    def.apply = count_apply;
    def.txn_records = 300;
    kl_processor *p = NULL;
    assert_int_equal(kl_processor_open(path, logs, 3, &def, &p), 0);
    uint64_t applied = 0;
    assert_int_equal(kl_processor_run(p, NULL, &applied), 0);
    assert_int_equal(applied, 2200);
    expect_counts(p, 3, len);
    for (int s = 0; s < 3; s++) { /* more on every log, then a second run and a reopen */
        assert_int_equal(vo_append(logs[s], SEED + (uint64_t)s, len[s], len[s] + 333, 40), 0);
        len[s] += 333;
    }
    assert_int_equal(kl_processor_run(p, NULL, &applied), 0);
    assert_int_equal(applied, 999);
    kl_processor_close(p);
    assert_int_equal(kl_processor_open(path, logs, 3, &def, &p), 0);
    expect_counts(p, 3, len);
    kl_processor_close(p);
    /* the same view with another fold or other logs is refused */
    def.name = "bucket counts v2";
    assert_int_equal(kl_processor_open(path, logs, 3, &def, &p), KL_EINVAL);
    def.name = "bucket counts v1";
    assert_int_equal(kl_processor_open(path, logs, 2, &def, &p), KL_EINVAL);
    kl_log *swapped[3] = {logs[1], logs[0], logs[2]};
    assert_int_equal(kl_processor_open(path, swapped, 3, &def, &p), KL_EFORK);
    assert_non_null(strstr(kl_last_error(), "not the log"));
    for (int s = 0; s < 3; s++) { /* dirs[0]'s temporary directory holds the view too */
        assert_int_equal(kl_log_close(logs[s]), 0);
        tu_rm_log(dirs[s]);
    }
}

typedef struct follow_feed {
    kl_log *logs[2];
    uint64_t stop_at;
    volatile int stop;
} follow_feed;

/* Another thread appends to both logs a while after the processor started following. */
static void *append_later(void *arg) {
    follow_feed *ff = arg;
    for (int round = 0; round < 3; round++) {
        usleep(30000);
        for (uint64_t s = 0; s < 2; s++) {
            uint64_t len = kl_log_length(ff->logs[s]);
            if (vo_append(ff->logs[s], SEED + s, len, len + 100, 25) != 0) {
                ff->stop = 1; /* end the follower now: assert_null(trc) then names this */
                return (void *)1;
            }
        }
    }
    return NULL;
}

static void stop_when_done(void *ctx, uint64_t done, uint64_t total) {
    follow_feed *ff = ctx;
    assert_true(done <= total);
    if (done >= ff->stop_at)
        ff->stop = 1;
}

/* A case that failed before its alarm(0) must not leave the alarm to kill a later one. */
static int no_alarm(void **st) {
    (void)st;
    alarm(0);
    return 0;
}

static void test_a_processor_follows_several_logs(void **st) {
    (void)st;
    alarm(60); /* a follower that never wakes fails the test instead of hanging it */
    char *dirs[2];
    follow_feed ff = {.stop_at = 600};
    for (int s = 0; s < 2; s++) {
        dirs[s] = tu_new_log("view-follow", KL_FSYNC_NEVER);
        ff.logs[s] = tu_open(dirs[s]);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s.view", dirs[0]);
    kl_processor_def def;
    kl_processor_def_default(&def);
    def.name = "bucket counts v1";
    def.apply = count_apply;
    kl_processor *p = NULL;
    assert_int_equal(kl_processor_open(path, ff.logs, 2, &def, &p), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_later, &ff), 0);
    kl_run_options o = {
        .follow = 1, .stop = &ff.stop, .progress = stop_when_done, .progress_ctx = &ff};
    uint64_t applied = 0;
    assert_int_equal(kl_processor_run(p, &o, &applied), 0);
    void *trc = NULL;
    assert_int_equal(pthread_join(t, &trc), 0);
    assert_null(trc);
    assert_int_equal(applied, 600);
    uint64_t len[2] = {300, 300};
    expect_counts(p, 2, len);
    kl_processor_close(p);
    alarm(0);
    for (int s = 0; s < 2; s++) {
        assert_int_equal(kl_log_close(ff.logs[s]), 0);
        tu_rm_log(dirs[s]);
    }
}

static int failing_apply(void *ctx, kl_txn *txn, size_t source, const kl_record *recs, size_t n) {
    uint64_t *fail_at = ctx;
    for (size_t i = 0; i < n; i++)
        if (recs[i].index == *fail_at)
            return KL_ECORRUPT;
    return count_apply(NULL, txn, source, recs, n);
}

static void test_a_failing_apply_commits_nothing_of_its_transaction(void **st) {
    (void)st;
    char *dir = log_with(1000);
    kl_log *log = tu_open_ro(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/views-own", dir);
    uint64_t fail_at = 730;
    kl_processor_def def;
    kl_processor_def_default(&def);
    def.name = "fails at 730";
    def.apply = failing_apply;
    def.ctx = &fail_at;
    def.txn_records = 250;
    kl_processor *p = NULL;
    assert_int_equal(kl_processor_open(path, &log, 1, &def, &p), 0);
    assert_int_equal(kl_processor_run(p, NULL, NULL), KL_ECORRUPT);
    assert_non_null(strstr(kl_last_error(), "applying blocks"));
    /* transactions of 250: [0,250) [250,500) committed; the one holding 730 is not */
    assert_int_equal(kl_processor_position(p, 0), 500);
    fail_at = UINT64_MAX;
    assert_int_equal(kl_processor_run(p, NULL, NULL), 0);
    kl_processor_close(p);
    def.name = "fails at 730";
    assert_int_equal(kl_processor_open(path, &log, 1, &def, &p), 0);
    for (unsigned b = 0; b < 7; b++) { /* every record counted once, none twice */
        uint64_t want = 0;
        for (uint64_t i = 0; i < 1000; i++) {
            char buf[VO_REC_BYTES];
            vo_event e;
            want += vo_record(SEED, i, buf, &e) % 7 == b;
        }
        char key[16];
        int kn = snprintf(key, sizeof key, "0:%u", b);
        kl_txn *t = NULL;
        const void *v;
        size_t vn;
        uint64_t c = 0;
        assert_int_equal(kl_processor_read(p, &t), 0);
        if (kl_txn_get(t, key, (size_t)kn, &v, &vn) == 1)
            memcpy(&c, v, sizeof c);
        kl_txn_end(t);
        assert_int_equal(c, want);
    }
    kl_processor_close(p);
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(dir);
}

/* ---- a log that changed under the view ------------------------------------------------------ */

static void test_a_truncated_log_is_reported_and_changes_nothing(void **st) {
    (void)st;
    char *dir = log_with(2000);
    create_views(dir);
    update(dir, "count", 0);
    assert_int_equal(kl_truncate(dir, 1500, NULL), 0);
    assert_int_equal(kl_view_update(dir, "count", NULL, NULL), KL_EFORK);
    const char *why = kl_last_error();
    assert_non_null(strstr(why, "fork 1"));
    assert_non_null(strstr(why, "fork 0"));
    assert_non_null(strstr(why, "rebuild"));
    assert_int_equal(position(dir, "count"), 2000); /* nothing changed */
    /* a view that had applied nothing takes the new fork quietly */
    update(dir, "kv", 0);
    assert_int_equal(position(dir, "kv"), 1500);
    /* a rebuild replays the log as it is now */
    assert_int_equal(kl_view_rebuild(dir, "count", 0, NULL), 0);
    vo_fold f;
    vo_init(&f, SEED);
    vo_fold_to(&f, 1500);
    vo_expect_view(&f, dir, "count", KL_VIEW_COUNT);
    tu_rm_log(dir);
}

/*
 * A processor's read-only handle opened before a truncation and new
 * appends: the tree hash at its position differs through it, and reopening
 * the processor says the log was truncated, not that a crash lost blocks.
 */
/*
 * A read-only handle opened before a truncation still has the old length.
 * The view is at 600: after a truncation to 200 and appends to 700 the
 * handle sees another tree hash at 600; after one to 100 and appends to 300
 * (a review's find) it reads past the new tree there (beyond the tree
 * file's end), which reads as damage. Both times the truncation is named.
 */
static void test_a_stale_handle_reports_the_truncation_not_a_crash(void **st) {
    (void)st;
    static const uint64_t cut[][2] = {{200, 700}, {100, 300}}; /* truncate to, append up to */
    for (size_t k = 0; k < 2; k++) {
        char *dir = log_with(600);
        kl_log *log = tu_open_ro(dir);
        char path[4200];
        snprintf(path, sizeof path, "%s/views-own", dir);
        kl_processor_def def;
        kl_processor_def_default(&def);
        def.name = "counts";
        def.apply = count_apply;
        kl_processor *p = NULL;
        assert_int_equal(kl_processor_open(path, &log, 1, &def, &p), 0);
        assert_int_equal(kl_processor_run(p, NULL, NULL), 0);
        assert_int_equal(kl_processor_position(p, 0), 600);
        kl_processor_close(p);
        assert_int_equal(kl_truncate(dir, cut[k][0], NULL), 0);
        kl_log *w = tu_open(dir);
        assert_int_equal(vo_append(w, SEED + 1, cut[k][0], cut[k][1], 97), 0);
        assert_int_equal(kl_log_close(w), 0);
        int rc = kl_processor_open(path, &log, 1, &def, &p);
        if (rc != KL_EFORK || !strstr(kl_last_error(), "truncated") ||
            strstr(kl_last_error(), "crash"))
            fail_msg("truncated to %llu, then %llu blocks: open = %d (%s)",
                     (unsigned long long)cut[k][0], (unsigned long long)cut[k][1], rc,
                     kl_last_error());
        assert_int_equal(kl_log_close(log), 0);
        tu_rm_log(dir);
    }
}

/* Move views/ out of dir, remove the log, make a new one with seed byte `seed`, put views/ back. */
static void replace_log(const char *dir, int seed, uint64_t n) {
    char views[4200], keep[4200];
    snprintf(views, sizeof views, "%s/views", dir);
    snprintf(keep, sizeof keep, "%s.views", dir);
    assert_int_equal(rename(views, keep), 0);
    tu_rmrf(dir);
    kl_config cfg;
    kl_config_default(&cfg);
    uint8_t s[KL_SEED_BYTES];
    tu_seed(s, (uint8_t)seed);
    cfg.seed = seed ? s : NULL;
    cfg.fsync_mode = KL_FSYNC_NEVER;
    tu_create(dir, &cfg);
    kl_log *w = tu_open(dir);
    assert_int_equal(vo_append(w, SEED, 0, n, 100), 0);
    assert_int_equal(kl_log_close(w), 0);
    assert_int_equal(rename(keep, views), 0);
}

static void test_a_replaced_log_is_reported_and_changes_nothing(void **st) {
    (void)st;
    char *root = tu_tmpdir("view-replaced"), dir[4200];
    snprintf(dir, sizeof dir, "%s/log", root);
    kl_config cfg;
    kl_config_default(&cfg);
    uint8_t s[KL_SEED_BYTES];
    tu_seed(s, 7);
    cfg.seed = s;
    tu_create(dir, &cfg);
    kl_log *w = tu_open(dir);
    assert_int_equal(vo_append(w, SEED, 0, 800, 100), 0);
    assert_int_equal(kl_log_close(w), 0);
    create_views(dir);
    update(dir, "sum", 0);
    /* the same key, shorter: the view's position is past the end */
    replace_log(dir, 7, 300);
    int urc = kl_view_update(dir, "sum", NULL, NULL);
    if (urc != KL_ENOTFOUND)
        fail_msg("update: %d %s", urc, kl_last_error());
    assert_non_null(strstr(kl_last_error(), "block 800"));
    assert_non_null(strstr(kl_last_error(), "300 blocks"));
    assert_int_equal(position(dir, "sum"), 800);
    /* another key: not the log the view was built from */
    replace_log(dir, 9, 900);
    assert_int_equal(kl_view_update(dir, "sum", NULL, NULL), KL_EFORK);
    assert_non_null(strstr(kl_last_error(), "not the log"));
    assert_int_equal(position(dir, "sum"), 800);
    assert_int_equal(kl_view_rebuild(dir, "sum", KL_REBUILD_SHADOW, NULL), 0);
    vo_fold f;
    vo_init(&f, SEED);
    vo_fold_to(&f, 900);
    vo_expect_view(&f, dir, "sum", KL_VIEW_SUM);
    tu_rmrf(root);
    free(root);
}

/* ---- the LMDB map -------------------------------------------------------------------- */

static int big_apply(void *ctx, kl_txn *txn, size_t source, const kl_record *recs, size_t n) {
    (void)ctx;
    (void)source;
    static uint8_t blob[3000];
    for (size_t i = 0; i < n; i++) {
        char key[24];
        int kn = snprintf(key, sizeof key, "k%" PRIu64, recs[i].index);
        memset(blob, (int)(recs[i].index & 0xff), sizeof blob);
        int rc = kl_txn_put(txn, key, (size_t)kn, blob, sizeof blob);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void test_a_full_map_grows_or_fails_with_nothing_committed(void **st) {
    (void)st;
    char *dir = log_with(2000);
    kl_log *log = tu_open_ro(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/views-map", dir);
    kl_processor_def def;
    kl_processor_def_default(&def);
    def.name = "blobs";
    def.apply = big_apply;
    def.map_bytes = 256 * 1024; /* 2000 blobs of 3000 bytes need ~8 MB */
    def.max_map_bytes = 256 * 1024;
    kl_processor *p = NULL;
    assert_int_equal(kl_processor_open(path, &log, 1, &def, &p), 0);
    assert_int_equal(kl_processor_run(p, NULL, NULL), KL_ENOSPC);
    assert_non_null(strstr(kl_last_error(), "map is full"));
    assert_int_equal(kl_processor_position(p, 0), 0);
    kl_txn *t = NULL;
    const void *v;
    size_t vn;
    assert_int_equal(kl_processor_read(p, &t), 0);
    assert_int_equal(kl_txn_get(t, "k0", 2, &v, &vn), 0); /* nothing committed */
    kl_txn_end(t);
    kl_processor_close(p);
    def.max_map_bytes = 0; /* the default: the map grows */
    assert_int_equal(kl_processor_open(path, &log, 1, &def, &p), 0);
    assert_int_equal(kl_processor_run(p, NULL, NULL), 0);
    assert_int_equal(kl_processor_position(p, 0), 2000);
    assert_int_equal(kl_processor_read(p, &t), 0);
    assert_int_equal(kl_txn_get(t, "k1999", 5, &v, &vn), 1);
    assert_int_equal(vn, 3000);
    assert_int_equal(((const uint8_t *)v)[0], 1999 & 0xff);
    kl_txn_end(t);
    kl_processor_close(p);
    /* the built-in views too: a tiny first map, then a kv view of every record */
    proc_test_set_map_bytes(64 * 1024);
    create_views(dir);
    update(dir, "kv", 0);
    proc_test_set_map_bytes(0);
    vo_fold f;
    vo_init(&f, SEED);
    vo_fold_to(&f, 2000);
    vo_expect_view(&f, dir, "kv", KL_VIEW_KV);
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(dir);
}

/* ---- rebuilds ------------------------------------------------------------------------- */

typedef struct shadow_watch {
    const char *dir;
    const vo_fold *old;
    uint64_t calls;
    uint64_t stop_after; /* set *stop once this many records are done (0: never) */
    volatile int stop;
} shadow_watch;

/* During a shadow rebuild: readers still get the old version's values. */
static void watch_progress(void *ctx, uint64_t done, uint64_t total) {
    shadow_watch *w = ctx;
    assert_true(done <= total);
    if (w->calls++ % 3 == 0) {
        kl_view_info vi;
        assert_int_equal(kl_view_stat(w->dir, "count", &vi), 0);
        assert_int_equal(vi.version, 1);
        assert_int_equal(vi.position, w->old->length);
        assert_int_equal(vi.shadow_version, 2);
        assert_true(vi.rebuilding);
        for (int k = 0; k < VO_KEYS; k += 17) {
            char key[32], *val = NULL;
            size_t n;
            vo_key_text(k, key, sizeof key);
            int rc = kl_view_get(w->dir, "count", key, strlen(key), &val, &n);
            assert_int_equal(rc, vo_has(w->old, KL_VIEW_COUNT, k));
            if (rc == 1)
                vo_expect_value(w->old, KL_VIEW_COUNT, k, val, "old version during a rebuild");
            free(val);
        }
    }
    if (w->stop_after && done >= w->stop_after)
        w->stop = 1;
}

static void test_a_shadow_rebuild_serves_the_old_version_until_the_switch(void **st) {
    (void)st;
    setenv("KL_VIEW_TXN_RECORDS", "500", 1);
    char *dir = log_with(6000);
    create_views(dir);
    update(dir, "count", 2500); /* the old version stops at 2500: its answers differ */
    vo_fold old, full;
    vo_init(&old, SEED);
    vo_fold_to(&old, 2500);
    vo_init(&full, SEED);
    vo_fold_to(&full, 6000);
    /* interrupted (as a crash would): the old version stays live, intact */
    shadow_watch w = {.dir = dir, .old = &old, .stop_after = 3000};
    kl_run_options o = {.progress = watch_progress, .progress_ctx = &w, .stop = &w.stop};
    assert_int_equal(kl_view_rebuild(dir, "count", KL_REBUILD_SHADOW, &o), KL_ECLOSED);
    assert_true(w.calls > 3);
    vo_expect_view(&old, dir, "count", KL_VIEW_COUNT);
    kl_view_info vi;
    assert_int_equal(kl_view_stat(dir, "count", &vi), 0);
    assert_int_equal(vi.version, 1);
    assert_int_equal(vi.shadow_version, 2);
    assert_true(vi.shadow_position >= 3000);
    assert_false(vi.rebuilding);
    /* the next shadow rebuild resumes the half-built version, then switches */
    shadow_watch w2 = {.dir = dir, .old = &old};
    kl_run_options o2 = {.progress = watch_progress, .progress_ctx = &w2};
    assert_int_equal(kl_view_rebuild(dir, "count", KL_REBUILD_SHADOW, &o2), 0);
    assert_int_equal(kl_view_stat(dir, "count", &vi), 0);
    assert_int_equal(vi.version, 2);
    assert_int_equal(vi.shadow_version, 0);
    vo_expect_view(&full, dir, "count", KL_VIEW_COUNT);
    char v1[4200];
    snprintf(v1, sizeof v1, "%s/views/count/v1", dir);
    assert_int_not_equal(access(v1, F_OK), 0); /* the old version is gone */
    unsetenv("KL_VIEW_TXN_RECORDS");
    tu_rm_log(dir);
}

typedef struct stopper {
    uint64_t done, stop_at; /* set stop once stop_at records are done (0: never) */
    volatile int stop;
} stopper;

static void stop_progress(void *ctx, uint64_t done, uint64_t total) {
    stopper *s = ctx;
    assert_true(done <= total);
    s->done = done;
    if (s->stop_at && done >= s->stop_at)
        s->stop = 1;
}

static void test_a_resumed_shadow_rebuild_applies_only_the_rest(void **st) {
    (void)st;
    setenv("KL_VIEW_TXN_RECORDS", "400", 1);
    char *dir = log_with(5000);
    create_views(dir);
    update(dir, "sum", 0);
    vo_fold f;
    vo_init(&f, SEED);
    vo_fold_to(&f, 5000);
    stopper s = {.stop_at = 1200};
    kl_run_options o = {.stop = &s.stop, .progress = stop_progress, .progress_ctx = &s};
    assert_int_equal(kl_view_rebuild(dir, "sum", KL_REBUILD_SHADOW, &o), KL_ECLOSED);
    kl_view_info vi;
    assert_int_equal(kl_view_stat(dir, "sum", &vi), 0);
    assert_int_equal(vi.version, 1);
    assert_int_equal(vi.shadow_version, 2);
    assert_int_equal(vi.shadow_position, 1200);  /* stopped between transactions of 400 */
    vo_expect_view(&f, dir, "sum", KL_VIEW_SUM); /* the live version is untouched */
    stopper rest = {0};
    o = (kl_run_options){.stop = &rest.stop, .progress = stop_progress, .progress_ctx = &rest};
    assert_int_equal(kl_view_rebuild(dir, "sum", KL_REBUILD_SHADOW, &o), 0);
    assert_int_equal(rest.done, 5000 - 1200); /* resumed, not started over */
    assert_int_equal(kl_view_stat(dir, "sum", &vi), 0);
    assert_int_equal(vi.version, 2);
    vo_expect_view(&f, dir, "sum", KL_VIEW_SUM);
    /* a plain rebuild starts over from block 0, as a new version */
    rest.done = 0;
    assert_int_equal(kl_view_rebuild(dir, "sum", 0, &o), 0);
    assert_int_equal(rest.done, 5000);
    assert_int_equal(kl_view_stat(dir, "sum", &vi), 0);
    assert_int_equal(vi.version, 3);
    vo_expect_view(&f, dir, "sum", KL_VIEW_SUM);
    unsetenv("KL_VIEW_TXN_RECORDS");
    tu_rm_log(dir);
}

/* ---- numbers whatever the locale -------------------------------------------------------- */

/* A view's value as kl_view_get prints it (NUL-terminated; free it). */
static char *get_value(const char *dir, const char *name, const char *key) {
    char *val = NULL;
    size_t n = 0;
    if (kl_view_get(dir, name, key, strlen(key), &val, &n) != 1)
        fail_msg("view get %s %s: %s", name, key, kl_last_error());
    assert_int_equal(strlen(val), n);
    return val;
}

/*
 * A library caller that set a locale with a decimal comma (de_DE) still
 * gets sums printed as docs/VIEWS.md says: '.' as the decimal point (a
 * comma would not be JSON, and "1,5" is no number to read back). The
 * locale is built into a temporary directory with localedef (from Debian's
 * `locales`: scripts/deps.sh installs it) and found through LOCPATH; that it
 * is really there and formats with a comma is checked first, not assumed.
 */
static void test_a_sum_prints_a_decimal_point_under_a_comma_locale(void **st) {
    (void)st;
    char *root = tu_tmpdir("locale"), cmd[4400], probe[16];
    snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 '%s/de_DE.UTF-8'", root);
    if (system(cmd) != 0)
        fail_msg("%s failed: is Debian's locales package installed?", cmd);
    assert_int_equal(setenv("LOCPATH", root, 1), 0);
    assert_non_null(setlocale(LC_ALL, "de_DE.UTF-8"));
    /* setlocale(LC_ALL) has loaded every category (mapped): the files may go now, so a failure
       below leaves none of them behind */
    tu_rmrf(root);
    free(root);
    snprintf(probe, sizeof probe, "%.1f", 1.5);
    assert_string_equal(probe, "1,5"); /* the locale is in force, with its comma */

    char *dir = tu_new_log("view-locale", KL_FSYNC_NEVER);
    kl_log *w = tu_open(dir);
    static const char *const recs[] = {
        "{\"user\":\"a\",\"n\":1.25}",   "{\"user\":\"a\",\"n\":0.25}",
        "{\"user\":\"b\",\"n\":0.5}",    "{\"user\":\"b\",\"n\":1.5}",
        "{\"user\":\"c\",\"n\":2.5e-7}",
    };
    kl_block blocks[5];
    for (size_t i = 0; i < 5; i++)
        blocks[i] = (kl_block){recs[i], strlen(recs[i])};
    assert_int_equal(kl_log_append(w, blocks, 5, NULL), 0);
    assert_int_equal(kl_log_close(w), 0);
    assert_int_equal(kl_view_create(dir, "s", KL_VIEW_SUM, "user", "n"), 0);
    update(dir, "s", 0);
    static const char *const want[][2] = {{"a", "1.5"}, {"b", "2.0"}, {"c", "2.5e-07"}};
    for (size_t i = 0; i < 3; i++) {
        char *got = get_value(dir, "s", want[i][0]);
        assert_string_equal(got, want[i][1]);
        free(got);
    }
    snprintf(probe, sizeof probe, "%.1f", 1.5);
    assert_string_equal(probe, "1,5"); /* and the library left the caller's locale as it was */

    assert_non_null(setlocale(LC_ALL, "C"));
    unsetenv("LOCPATH");
    tu_rm_log(dir);
}

/* ---- names and definitions -------------------------------------------------------------- */

static void test_names_and_definitions_are_checked(void **st) {
    (void)st;
    char *dir = log_with(100);
    static const char *const bad[] = {"",
                                      ".hidden",
                                      "a/b",
                                      "a b",
                                      "../x",
                                      "ünï",
                                      "x\n",
                                      ("0123456789012345678901234567890123456789"
                                       "012345678901234567890123456789")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kl_view_create(dir, bad[i], KL_VIEW_COUNT, "user", NULL), KL_EINVAL);
        assert_int_equal(kl_view_drop(dir, bad[i]), KL_EINVAL);
    }
    assert_int_equal(kl_view_create(dir, "s", KL_VIEW_SUM, "user", NULL), KL_EINVAL);
    assert_int_equal(kl_view_create(dir, "c", KL_VIEW_COUNT, "user", "n"), KL_EINVAL);
    assert_int_equal(kl_view_create(dir, "c", KL_VIEW_COUNT, "a..b", NULL), KL_EINVAL);
    assert_int_equal(kl_view_create(dir, "c", KL_VIEW_COUNT, ".a", NULL), KL_EINVAL);
    assert_int_equal(kl_view_create(dir, "c", (kl_view_kind)9, "user", NULL), KL_EINVAL);
    kl_view_info *list = NULL;
    size_t n = 9;
    assert_int_equal(kl_view_list(dir, &list, &n), 0);
    assert_int_equal(n, 0); /* nothing refused left anything behind */
    free(list);
    assert_int_equal(kl_view_create(dir, "b.c_d-9", KL_VIEW_COUNT, "ctx.user", NULL), 0);
    assert_int_equal(kl_view_create(dir, "b.c_d-9", KL_VIEW_KV, "user", NULL), KL_EEXIST);
    assert_int_equal(kl_view_create(dir, "a", KL_VIEW_KV, "user", NULL), 0);
    assert_int_equal(kl_view_list(dir, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "a");
    assert_string_equal(list[1].name, "b.c_d-9");
    assert_int_equal(list[1].kind, KL_VIEW_COUNT);
    assert_string_equal(list[1].key_path, "ctx.user");
    assert_int_equal(list[1].log_length, 100);
    free(list);
    char *val = NULL;
    size_t vn;
    assert_int_equal(kl_view_get(dir, "nope", "u1", 2, &val, &vn), KL_ENOTFOUND);
    assert_int_equal(kl_view_update(dir, "nope", NULL, NULL), KL_ENOTFOUND);
    assert_int_equal(kl_view_rebuild(dir, "nope", 0, NULL), KL_ENOTFOUND);
    assert_int_equal(kl_view_drop(dir, "nope"), KL_ENOTFOUND);
    assert_int_equal(kl_view_drop(dir, "a"), 0);
    assert_int_equal(kl_view_get(dir, "a", "u1", 2, &val, &vn), KL_ENOTFOUND);
    assert_int_equal(kl_view_drop(dir, "a"), KL_ENOTFOUND);
    assert_int_equal(kl_view_create(dir, "a", KL_VIEW_COUNT, "user", NULL), 0); /* again */
    update(dir, "a", 0);
    assert_int_equal(kl_view_get(dir, "a", "", 0, &val, &vn), 0); /* no empty key */
    char views[4200];
    snprintf(views, sizeof views, "%s/views", dir);
    struct stat sb;
    assert_int_equal(stat(views, &sb), 0);
    assert_int_equal(kl_view_create("/nonexistent/log", "a", KL_VIEW_KV, "user", NULL),
                     KL_ENOTFOUND);
    tu_rm_log(dir);
}

/*
 * The `state` record `key` of version 1 of view `name`, read with LMDB
 * itself into buf (*n its size); if put is not NULL, first replaced by
 * put_n bytes.
 */
static void state_record(const char *dir, const char *name, const char *key, const uint8_t *put,
                         size_t put_n, uint8_t buf[128], size_t *n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/views/%s/v1", dir, name);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "state", 0, &dbi), 0);
    MDB_val k = {strlen(key), (void *)key}, v;
    if (put) {
        v.mv_size = put_n;
        v.mv_data = (void *)put;
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    assert_true(v.mv_size <= 128);
    memcpy(buf, v.mv_data, v.mv_size);
    *n = v.mv_size;
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void source_record(const char *dir, const char *name, const uint8_t *put, size_t put_n,
                          uint8_t buf[128], size_t *n) {
    state_record(dir, name, "source.0", put, put_n, buf, n);
}

static int diverged(const char *dir, const char *name) {
    kl_view_info vi;
    assert_int_equal(kl_view_stat(dir, name, &vi), 0);
    return vi.diverged;
}

/*
 * A view's source record keeps the log's tree hash at its position (80
 * bytes): one that does not match the log is refused and listed as
 * diverged, and changes nothing; a 48-byte record of a view written before
 * the hash was kept is read, and the next commit writes the hash.
 */
static void test_the_stored_tree_hash_is_checked_and_an_old_record_read(void **st) {
    (void)st;
    char *dir = log_with(500);
    create_views(dir);
    update(dir, "sum", 0);
    uint8_t rec[128], bad[128];
    size_t n = 0;
    source_record(dir, "sum", NULL, 0, rec, &n);
    assert_int_equal(n, 80);
    uint8_t th[32];
    kl_log *r = tu_open_ro(dir);
    assert_int_equal(kl_log_tree_hash(r, 500, th), 0);
    assert_int_equal(kl_log_close(r), 0);
    assert_memory_equal(rec + 48, th, 32);
    assert_false(diverged(dir, "sum"));

    source_record(dir, "sum", rec, 48, bad, &n); /* as an older build wrote it */
    assert_int_equal(n, 48);
    uint8_t fmt[128];
    state_record(dir, "sum", "format", NULL, 0, fmt, &n);
    assert_int_equal(n, 16);
    assert_int_equal(kl_load32(fmt + 8), 2);
    kl_store32(fmt + 8, 1);
    state_record(dir, "sum", "format", fmt, 16, fmt, &n);
    append_more(dir, 500, 700);
    update(dir, "sum", 0);
    source_record(dir, "sum", NULL, 0, rec, &n);
    assert_int_equal(n, 80);
    state_record(dir, "sum", "format", NULL, 0, fmt, &n);
    assert_int_equal(kl_load32(fmt + 8), 2); /* upgraded: older builds see a newer format */
    assert_int_equal(position(dir, "sum"), 700);
    vo_fold f;
    vo_init(&f, SEED);
    vo_fold_to(&f, 700);
    vo_expect_view(&f, dir, "sum", KL_VIEW_SUM);

    memcpy(bad, rec, 80);
    bad[48 + 31] ^= 0x40; /* a tree hash the log does not have at 700 */
    source_record(dir, "sum", bad, 80, bad, &n);
    append_more(dir, 700, 750);
    assert_int_equal(kl_view_update(dir, "sum", NULL, NULL), KL_EFORK);
    assert_non_null(strstr(kl_last_error(), "their tree hash differs"));
    assert_true(diverged(dir, "sum"));
    assert_int_equal(position(dir, "sum"), 700);
    vo_expect_view(&f, dir, "sum", KL_VIEW_SUM); /* unchanged */
    assert_int_equal(kl_view_rebuild(dir, "sum", 0, NULL), 0);
    assert_false(diverged(dir, "sum"));
    vo_fold_to(&f, 750);
    vo_expect_view(&f, dir, "sum", KL_VIEW_SUM);
    tu_rm_log(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_equal_an_independent_fold),
        cmocka_unit_test(test_scan_lists_every_entry_in_key_order),
        cmocka_unit_test(test_a_processor_reads_several_logs),
        cmocka_unit_test_teardown(test_a_processor_follows_several_logs, no_alarm),
        cmocka_unit_test(test_a_failing_apply_commits_nothing_of_its_transaction),
        cmocka_unit_test(test_a_truncated_log_is_reported_and_changes_nothing),
        cmocka_unit_test(test_a_stale_handle_reports_the_truncation_not_a_crash),
        cmocka_unit_test(test_a_replaced_log_is_reported_and_changes_nothing),
        cmocka_unit_test(test_a_full_map_grows_or_fails_with_nothing_committed),
        cmocka_unit_test(test_a_shadow_rebuild_serves_the_old_version_until_the_switch),
        cmocka_unit_test(test_a_resumed_shadow_rebuild_applies_only_the_rest),
        cmocka_unit_test(test_names_and_definitions_are_checked),
        cmocka_unit_test(test_a_sum_prints_a_decimal_point_under_a_comma_locale),
        cmocka_unit_test(test_the_stored_tree_hash_is_checked_and_an_old_record_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
