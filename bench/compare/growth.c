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
 * than 0.9 of the one that ends at the first GiB. As every scenario, the
 * whole run is repeated (--reps, default 3; once with --quick) and each
 * window's figure is the median of its runs: one window is about 3 s of
 * appends, and the windows of one run scatter by about 6% (the runs of one
 * window, by up to 40% on a busy machine). The target compares the two
 * medians.
 *
 * What a reader would get wrong: the records take more room on disk than
 * their bytes: each block also has its share of the batch framing, the
 * sparse index and the tree file (5 bytes a block; 80 in a version-1 tree
 * file), so the run checks for GROWTH_DISK_FACTOR times 20 GiB free
 * before it starts. interval:1000 (the default of the "interval ~1 s"
 * class) keeps write-back going, but a window shorter than the interval
 * (the first, when appends outrun the disk) ends before any sync of the
 * log lands in it, while every later window shares the disk with the
 * syncs before it: once appends come faster than the disk takes
 * write-back, the later windows run at the disk's rate and the first at
 * the page cache's (bench/compare/ANALYSIS.md, "growth").
 *
 * The page cache is filled before the first window (the full run only): a
 * sparse file as big as the free memory less GROWTH_WARM_SPARE is read
 * through (its holes become page-cache pages without a byte on disk) and
 * kept until the run ends. Without it the windows measure how much memory
 * was still free: on the virtual machines this was tuned on, a page the
 * guest touches for the first time since it was last free costs about
 * 11 us (memory written at 0.36 GB/s on first touch against 21 GB/s after,
 * bench/compare/ANALYSIS.md), and appends that fill fresh page-cache pages
 * ran at 1.2-1.7M records/s until memory was full and the kernel began to
 * recycle pages, at about 12 GiB of records, then at 3M. A server's memory
 * is full of page cache in its steady state, and every window now starts
 * from that state.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "compare.h"

#define GROWTH_FULL_BYTES  (20ull << 30)
#define GROWTH_QUICK_BYTES (512ull << 20)
#define GROWTH_RECORD      100u
#define GROWTH_BATCH       1000u
#define GROWTH_MIN_RATIO   0.9
/* On-disk bytes per record byte, with room to spare: (100 + 5 tree + ~2 framing/index) / 100
   (a version-1 tree file, every node, took 80 a block: the room covers it). */
#define GROWTH_DISK_FACTOR 1.9
/* Free memory the page-cache fill leaves alone (the run's own buffers, the rest). */
#define GROWTH_WARM_SPARE (1ull << 30)

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

/*
 * Fill the free memory with page cache (see the top): a sparse file at
 * `path`, read through, kept until the caller removes it. Returns the bytes
 * read (0: nothing to fill, or it failed, said on stderr).
 */
static uint64_t warm_page_cache(const char *path) {
    uint64_t free_b = meminfo_bytes("MemFree");
    if (free_b <= GROWTH_WARM_SPARE * 2)
        return 0;
    uint64_t want = free_b - GROWTH_WARM_SPARE;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)want) != 0) {
        progress("compare kappalog growth: cannot make %s for the page-cache fill: %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return 0;
    }
    progress("compare kappalog growth: filling the page cache first: %.1f GiB of %.1f GiB free "
             "(a sparse file read through, kept until the run ends)",
             (double)want / (1 << 30), (double)free_b / (1 << 30));
    static char buf[1 << 20];
    uint64_t done = 0, t0 = now_ns();
    while (done < want) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            progress("compare kappalog growth: reading %s stopped after %.1f GiB: %s", path,
                     (double)done / (1 << 30), n < 0 ? strerror(errno) : "end of file");
            break;
        }
        done += (uint64_t)n;
    }
    close(fd);
    progress("compare kappalog growth: page cache filled in %.1f s (%.2f GB/s), %.1f GiB free now",
             (double)(now_ns() - t0) / 1e9, (double)done / ((double)(now_ns() - t0) + 1),
             (double)meminfo_bytes("MemFree") / (1 << 30));
    return done;
}

/* Is `at` one of the marks where the log is closed and opened again? */
static int is_mark(uint64_t at, uint64_t total) {
    if (at == total)
        return 1;
    if (total < (4ull << 30))
        return at == total / 2;
    return at == (1ull << 30) || at == (5ull << 30) || at == (10ull << 30);
}

static void growth_run(const cmp_ctx *c, const char *path, const char *warm, uint64_t total,
                       uint64_t step, int rep, int reps);

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
    char warm[4096];
    cmp_scratch(c, "kappalog-growth-warm", warm, sizeof warm);
    /* as every scenario: the median of the repetitions, here window by window */
    int reps = c->o->quick || c->o->reps < 1 ? 1 : c->o->reps;
    for (int rep = 1; rep <= reps; rep++)
        growth_run(c, path, warm, total, step, rep, reps);
    bench_result *r = result_find(last);
    if (r && result_find(first) && r != result_find(first)) {
        /*
         * The ratio of the two windows' medians. A run's first and last
         * windows are minutes apart, not side by side as a paired scenario's
         * runs are, so a run-by-run ratio would only divide two independent
         * samples (in one run of 2026-12-04 the three pairs gave 0.60, 1.38
         * and 0.89 around medians of 3.57M and 3.46M records/s).
         */
        r->unpaired = 1;
        result_ratio(r, first, "of the rate at the first window", TARGET_RATIO_MIN,
                     GROWTH_MIN_RATIO);
    }
    unlink(warm);
}

/*
 * One repetition: fill the page cache (the full run), make the log, append
 * window by window, close and reopen it at the marks, remove it.
 */
static void growth_run(const cmp_ctx *c, const char *path, const char *warm, uint64_t total,
                       uint64_t step, int rep, int reps) {
    uint64_t warmed = c->o->quick ? 0 : warm_page_cache(warm);
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
    progress("compare kappalog growth, run %d of %d: appending to %.0f GiB of %u-byte records, a "
             "result every %.0f MiB",
             rep, reps, (double)total / (1 << 30), GROWTH_RECORD, (double)step / (1 << 20));
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
        if (warmed)
            snprintf(r->note, sizeof r->note,
                     "page cache filled before the first window (%.1f GiB of sparse file read "
                     "through, kept to the end): every window writes into recycled pages",
                     (double)warmed / (1 << 30));
        snprintf(r->fsync, sizeof r->fsync, "interval:1000");
        snprintf(r->durability, sizeof r->durability, "interval");
        result_add_run(r, &run, h);
        progress("%s: %.0f records/s (run %d of %d)", name,
                 (double)run.records / (run.seconds > 0 ? run.seconds : 1), rep, reps);
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
    free(h);
    pool_free(&pool);
    rm_rf(path);
}
