/*
 * growth.c - kappalog's cost as the log grows: one appender writes
 * 100-byte records in batches of 1,000 under interval:1000 into one log
 * until it holds GROWTH_FULL_BYTES of records (GROWTH_QUICK_BYTES with
 * --quick), and the rate of every window of `step` bytes is a result of
 * its own ("compare kappalog growth rec=100B batch=1000
 * fsync=interval:1000 at=7GiB" is the window that ends at 7 GiB). At a few
 * marks the log is closed (not timed) and opened again (timed: "compare
 * kappalog open at=5GiB"), so open time is followed as the log grows too.
 * The target: the window that ends at the last mark appends at no less
 * than 0.9 of the one that ends at the first GiB.
 *
 * What a reader would get wrong: the records take more room on disk than
 * their bytes: each block also has its 80-byte Merkle tree entry (the
 * Hypercore tree) and its share of the batch framing and the sparse index,
 * so a 20 GiB log of 100-byte records is about 37 GiB on disk, and the run
 * needs that much free space (checked before it starts). interval:1000
 * (the default of the "interval ~1 s" class) keeps write-back going all
 * the time, so the first windows do not enjoy an empty page cache that
 * the later ones lack: every window pays the disk.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "compare.h"

#define GROWTH_FULL_BYTES  (20ull << 30)
#define GROWTH_QUICK_BYTES (512ull << 20)
#define GROWTH_RECORD      100u
#define GROWTH_BATCH       1000u
#define GROWTH_MIN_RATIO   0.9
/* On-disk bytes per record byte, with room to spare: (100 + 80 tree + ~2 framing/index) / 100. */
#define GROWTH_DISK_FACTOR 1.9

static void window_name(char *out, size_t cap, uint64_t at_bytes) {
    if (at_bytes % (1ull << 30) == 0)
        snprintf(out, cap,
                 "compare kappalog growth rec=%uB batch=%u fsync=interval:1000 at=%lluGiB",
                 GROWTH_RECORD, GROWTH_BATCH, (unsigned long long)(at_bytes >> 30));
    else
        snprintf(out, cap,
                 "compare kappalog growth rec=%uB batch=%u fsync=interval:1000 at=%lluMiB",
                 GROWTH_RECORD, GROWTH_BATCH, (unsigned long long)(at_bytes >> 20));
}

static kl_log *open_timed(const cmp_ctx *c, const char *path, uint64_t at_bytes) {
    kl_open_options o;
    kl_open_options_default(&o);
    o.io = c->o->io;
    o.fsync_override = 1;
    o.fsync_mode = KL_FSYNC_INTERVAL;
    o.fsync_interval_ms = 1000;
    kl_log *log = NULL;
    uint64_t t0 = now_ns();
    int rc = kl_log_open(path, &o, &log);
    if (rc < 0)
        die_kl("kl_log_open", rc);
    if (at_bytes == 0)
        return log;
    char name[128];
    if (at_bytes % (1ull << 30) == 0)
        snprintf(name, sizeof name, "compare kappalog open at=%lluGiB",
                 (unsigned long long)(at_bytes >> 30));
    else
        snprintf(name, sizeof name, "compare kappalog open at=%lluMiB",
                 (unsigned long long)(at_bytes >> 20));
    bench_result *r = result_get("compare", "kappalog_open", name);
    r->record_bytes = GROWTH_RECORD;
    r->log_bytes = at_bytes;
    bench_run run = {.ops = 1, .seconds = (double)(now_ns() - t0) / 1e9};
    result_add_run(r, &run, NULL);
    snprintf(r->note, sizeof r->note,
             "kl_log_open of the growing log after a clean close, page cache as the appends "
             "left it; the same tail is unindexed at every mark");
    return log;
}

/* Is `at` one of the marks where the log is closed and opened again? */
static int is_mark(uint64_t at, uint64_t total) {
    if (at == total)
        return 1;
    if (total < (4ull << 30))
        return at == total / 2;
    return at == (1ull << 30) || at == (5ull << 30) || at == (10ull << 30);
}

void cmp_growth(const cmp_ctx *c) {
    uint64_t total = c->o->quick ? GROWTH_QUICK_BYTES : GROWTH_FULL_BYTES;
    uint64_t step = c->o->quick ? (64ull << 20) : (1ull << 30);
    char first[128], last[128];
    window_name(first, sizeof first, step);
    window_name(last, sizeof last, total);
    if (!want_group(c->o, "kappalog") || !want_scenario(c->o, last))
        return;
    char path[4096];
    cmp_scratch(c, "kappalog-growth", path, sizeof path);
    struct statvfs sv;
    double need = (double)total * GROWTH_DISK_FACTOR;
    if (statvfs(c->o->dir, &sv) == 0 && (double)sv.f_bavail * (double)sv.f_frsize < need) {
        bench_result *r = result_get("compare", "kappalog_growth", last);
        snprintf(r->missing, sizeof r->missing,
                 "needs about %.1f GiB free in %s for a log of %.0f GiB of records; %.1f GiB free",
                 need / (1 << 30), c->o->dir, (double)total / (1 << 30),
                 (double)sv.f_bavail * (double)sv.f_frsize / (1 << 30));
        progress("%s: not measured: %s", last, r->missing);
        return;
    }
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.segment_bytes = c->o->segment_bytes;
    int rc = kl_log_create(path, &cfg);
    if (rc < 0)
        die_kl("kl_log_create", rc);
    kl_log *log = open_timed(c, path, 0);
    bench_pool pool;
    pool_init(&pool, GROWTH_RECORD, GROWTH_BATCH, 4242 + 20);
    const uint64_t batch_bytes = (uint64_t)GROWTH_RECORD * GROWTH_BATCH;
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    uint64_t written = 0; /* record bytes in the log */
    unsigned v = 0;
    progress("compare kappalog growth: appending to %.0f GiB of %u-byte records, a result every "
             "%.0f MiB",
             (double)total / (1 << 30), GROWTH_RECORD, (double)step / (1 << 20));
    for (uint64_t at = step; at <= total; at += step) { /* the window that ends at `at` */
        hist_reset(h);
        bench_run run = {0};
        cpu_mark cpu;
        cpu_mark_now(&cpu);
        uint64_t start = now_ns(), t = start;
        while (written + run.bytes < at) {
            rc = kl_log_append(log, pool_batch_blocks(&pool, v++), GROWTH_BATCH, NULL);
            if (rc < 0)
                die_kl("kl_log_append", rc);
            uint64_t t1 = now_ns();
            hist_add(h, t1 - t);
            t = t1;
            run.ops++;
            run.records += GROWTH_BATCH;
            run.bytes += batch_bytes;
        }
        run.seconds = (double)(t - start) / 1e9;
        run.other_cpu_s = cpu_other_s(&cpu);
        written += run.bytes;
        char name[128];
        window_name(name, sizeof name, at);
        bench_result *r = result_get("compare", "kappalog_growth", name);
        r->record_bytes = GROWTH_RECORD;
        r->batch = GROWTH_BATCH;
        r->threads = 1;
        r->log_bytes = written;
        snprintf(r->fsync, sizeof r->fsync, "interval:1000");
        snprintf(r->durability, sizeof r->durability, "interval");
        result_add_run(r, &run, h);
        progress("%s: %.0f records/s", name, r->rate);
        if (is_mark(at, total)) {
            rc = kl_log_close(log);
            if (rc < 0)
                die_kl("kl_log_close", rc);
            r->disk_bytes = cmp_disk_bytes(path);
            log = open_timed(c, path, at);
        }
    }
    rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    bench_result *r = result_find(last);
    if (r && result_find(first) && r != result_find(first))
        result_ratio(r, first, "of the rate at the first window", TARGET_RATIO_MIN,
                     GROWTH_MIN_RATIO);
    free(h);
    pool_free(&pool);
    rm_rf(path);
}
