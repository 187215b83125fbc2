/*
 * opentime.c - how long a writable open (recovery included) plus close
 * takes for a small log and a large one that end the same way: the issue's
 * target is that the large one opens within 2x of the small one, because
 * open time should depend on the unindexed tail, never on the log's size.
 *
 * The two logs (bench/README.md has the why):
 *   small: one segment of `active` bytes of 1 KiB records in batches of 100;
 *   large: `total - active` bytes of 4 KiB records in batches of 256 (1 MiB
 *          appends), padded so that its last sealed segment is exactly full,
 *          then the very same `active` bytes, which land in a fresh segment.
 * So both active segments are byte-for-byte the same size with batches at
 * the same positions. Before every timed open the active segment's .idx is
 * cut (ftruncate) to the entries below `size - tail` in both logs: the same
 * unindexed tail, which recovery indexes again (and rewrites the .idx, so
 * the cut is repeated before each open). Nothing is dropped from the page
 * cache; one untimed open of each log comes first.
 *
 * What a reader would get wrong: the padding relies on the batch framing of
 * docs/FORMAT.md (64-byte batch header, 8 bytes of checksum per 1 KiB chunk
 * of body, 4 bytes per block), and on a segment rolling when the next batch
 * would not fit; the build checks the result (both active segments the same
 * size) and stops if it is not so.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define BULK_RECORD_BYTES   4096
#define BULK_BATCH          256
#define ACTIVE_RECORD_BYTES 1024
#define ACTIVE_BATCH        100
#define BATCH_HEADER_BYTES  64   /* docs/FORMAT.md, "Batch header" */
#define BATCH_ENTRY_BYTES   4    /* docs/FORMAT.md, the body's table entry per block */
#define BATCH_CHUNK_BYTES   1024 /* docs/FORMAT.md, the body is checksummed per chunk */
#define BATCH_SUM_BYTES     8    /* one chunk checksum */
#define IDX_HEADER_BYTES    64   /* docs/FORMAT.md, "segments/<first>.idx" */
#define IDX_ENTRY_BYTES     8
#define TARGET_OPEN_RATIO   2.0
#define MAX_OPEN_RUNS       (BENCH_MAX_RUNS - 1)

typedef struct open_log {
    char path[4096], seg_path[4400], idx_path[4400];
    uint64_t total_bytes, records, active_size, idx_entries, idx_kept;
    bench_result *r;
    double open_ms[BENCH_MAX_RUNS];
} open_log;

/* The last segment of the log at dir: its .log and .idx paths. */
static void active_segment(open_log *l) {
    char segdir[4112];
    snprintf(segdir, sizeof segdir, "%s/segments", l->path);
    DIR *d = opendir(segdir);
    if (!d)
        die("%s: %s", segdir, strerror(errno));
    char best[256] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".log") == 0 && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", de->d_name);
    }
    closedir(d);
    if (!best[0])
        die("%s: no segment", segdir);
    snprintf(l->seg_path, sizeof l->seg_path, "%s/%s", segdir, best);
    memcpy(l->idx_path, l->seg_path, sizeof l->idx_path);
    memcpy(l->idx_path + strlen(l->idx_path) - 3, "idx", 3);
    struct stat st;
    if (stat(l->seg_path, &st) < 0)
        die("%s: %s", l->seg_path, strerror(errno));
    l->active_size = (uint64_t)st.st_size;
}

static void append_or_die(kl_log *log, const kl_block *b, size_t n) {
    int rc = kl_log_append(log, b, n, NULL);
    if (rc < 0)
        die_kl("kl_log_append", rc);
}

/* Bytes a batch of one block of `size` bytes takes in a segment (docs/FORMAT.md). */
static uint64_t one_block_frame(uint64_t size) {
    uint64_t body = BATCH_ENTRY_BYTES + size;
    uint64_t chunks = (body + BATCH_CHUNK_BYTES - 1) / BATCH_CHUNK_BYTES;
    return BATCH_HEADER_BYTES + BATCH_SUM_BYTES * chunks + body;
}

/* The largest block whose one-block batch fits in `left` bytes (left >= one_block_frame(0)). */
static uint64_t largest_fit(uint64_t left) {
    uint64_t lo = 0, hi = left < KL_MAX_BLOCK_BYTES ? left : KL_MAX_BLOCK_BYTES;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        if (one_block_frame(mid) <= left)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Fill the active segment to within a batch of segment_bytes, so the next append rolls. */
static void pad_segment(const bench_opts *o, kl_log *log, open_log *l) {
    active_segment(l);
    uint64_t left = o->segment_bytes - l->active_size;
    uint8_t *zero = calloc(1, KL_MAX_BLOCK_BYTES);
    if (!zero)
        die("out of memory");
    while (left >= one_block_frame(0)) {
        kl_block b = {zero, (size_t)largest_fit(left)};
        append_or_die(log, &b, 1);
        left -= one_block_frame(b.size);
    }
    free(zero);
}

/* Append `bytes` of records from the pool, one batch per call. */
static void append_bytes(kl_log *log, const bench_pool *p, uint64_t bytes) {
    uint64_t per = p->record_bytes * p->batch;
    for (uint64_t done = 0, v = 0; done < bytes; done += per, v++)
        append_or_die(log, pool_batch_blocks(p, (unsigned)v), p->batch);
}

static void build_log(const bench_opts *o, open_log *l) {
    progress("building %s (%llu bytes)", l->path, (unsigned long long)l->total_bytes);
    kl_log *log = bench_log_fresh(o, l->path, KL_FSYNC_NEVER);
    bench_pool p;
    if (l->total_bytes > o->open_small_bytes) {
        pool_init(&p, BULK_RECORD_BYTES, BULK_BATCH, 5);
        append_bytes(log, &p, l->total_bytes - o->open_small_bytes);
        pool_free(&p);
        pad_segment(o, log, l);
    }
    pool_init(&p, ACTIVE_RECORD_BYTES, ACTIVE_BATCH, 6);
    append_bytes(log, &p, o->open_small_bytes);
    pool_free(&p);
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
}

static void marker_text(const bench_opts *o, const open_log *l, char *out, size_t cap) {
    snprintf(out, cap,
             "kappalog-bench open log v2 total=%llu active=%llu segment=%llu bulk=%dx%d "
             "active=%dx%d\n",
             (unsigned long long)l->total_bytes, (unsigned long long)o->open_small_bytes,
             (unsigned long long)o->segment_bytes, BULK_RECORD_BYTES, BULK_BATCH,
             ACTIVE_RECORD_BYTES, ACTIVE_BATCH);
}

/* Reuse a log built by an earlier run (kept with --keep) if its marker matches. */
static int reuse_or_build(const bench_opts *o, open_log *l) {
    char marker[4200], want[512], have[512] = "";
    snprintf(marker, sizeof marker, "%s.built", l->path);
    marker_text(o, l, want, sizeof want);
    FILE *f = fopen(marker, "r");
    if (f) {
        if (!fgets(have, sizeof have, f))
            have[0] = '\0';
        fclose(f);
    }
    int reuse = strcmp(have, want) == 0;
    if (!reuse) {
        unlink(marker);
        build_log(o, l);
        f = fopen(marker, "w");
        if (!f || fputs(want, f) < 0 || fclose(f) != 0)
            die("%s: cannot write", marker);
    }
    active_segment(l);
    return reuse;
}

/* Cut the active .idx to the entries below size - tail; returns entries kept. */
static void cut_index(const bench_opts *o, open_log *l) {
    int fd = open(l->idx_path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("%s: %s", l->idx_path, strerror(errno));
    if (st.st_size < IDX_HEADER_BYTES)
        die("%s: no index header", l->idx_path);
    uint64_t n = ((uint64_t)st.st_size - IDX_HEADER_BYTES) / IDX_ENTRY_BYTES, kept = 0;
    uint64_t limit = l->active_size > o->open_tail_bytes ? l->active_size - o->open_tail_bytes : 0;
    uint8_t e[IDX_ENTRY_BYTES];
    for (; kept < n; kept++) {
        if (pread(fd, e, sizeof e, (off_t)(IDX_HEADER_BYTES + kept * IDX_ENTRY_BYTES)) !=
            (ssize_t)sizeof e)
            die("%s: short read", l->idx_path);
        uint32_t pos =
            (uint32_t)e[4] | (uint32_t)e[5] << 8 | (uint32_t)e[6] << 16 | (uint32_t)e[7] << 24;
        if (pos >= limit)
            break;
    }
    if (ftruncate(fd, (off_t)(IDX_HEADER_BYTES + kept * IDX_ENTRY_BYTES)) < 0)
        die("%s: %s", l->idx_path, strerror(errno));
    close(fd);
    l->idx_entries = n > l->idx_entries ? n : l->idx_entries;
    l->idx_kept = kept;
}

/* One timed open + close; run < 0 is the untimed warm-up. */
static void open_once(const bench_opts *o, open_log *l, int run) {
    cut_index(o, l);
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t t0 = now_ns();
    kl_log *log = bench_log_open(o, l->path, KL_FSYNC_NEVER);
    uint64_t t1 = now_ns();
    uint64_t len = kl_log_length(log);
    int rc = kl_log_close(log);
    uint64_t t2 = now_ns();
    if (rc < 0)
        die_kl("kl_log_close", rc);
    if (l->records && len != l->records)
        die("%s: length %llu after open, %llu before", l->path, (unsigned long long)len,
            (unsigned long long)l->records);
    l->records = len;
    if (run < 0)
        return;
    bench_hist h;
    hist_reset(&h);
    hist_add(&h, t2 - t0);
    bench_run one = {.ops = 1,
                     .records = 1,
                     .seconds = (double)(t2 - t0) / 1e9,
                     .other_cpu_s = cpu_other_s(&cpu)};
    result_add_run(l->r, &one, &h);
    l->open_ms[run] = (double)(t1 - t0) / 1e6;
}

static void open_name(const bench_opts *o, char *out, size_t cap, uint64_t total) {
    char t[32], a[32], tail[32];
    fmt_bytes(t, sizeof t, total);
    fmt_bytes(a, sizeof a, o->open_small_bytes);
    fmt_bytes(tail, sizeof tail, o->open_tail_bytes);
    snprintf(out, cap, "open log=%s active=%s tail=%s", t, a, tail);
}

static void setup(const bench_opts *o, open_log *l, const char *tag, uint64_t total) {
    char name[128], sub[64], sz[32];
    fmt_bytes(sz, sizeof sz, total);
    snprintf(sub, sizeof sub, "open-%s-%s", tag, sz);
    path_join(l->path, sizeof l->path, o->dir, sub);
    l->total_bytes = total;
    open_name(o, name, sizeof name, total);
    l->r = result_get("open", "open_close", name);
    l->r->log_bytes = total;
    l->r->write_bytes = o->open_tail_bytes;
    int reused = reuse_or_build(o, l);
    progress("%s: %s", name, reused ? "reusing the log built earlier" : "built");
}

static int enough_disk(const bench_opts *o) {
    uint64_t need = (o->open_big_bytes + o->open_small_bytes) / 100 * 105 + (1ull << 30);
    uint64_t have = disk_free_bytes(o->dir);
    if (have >= need)
        return 1;
    progress("open: skipped, %llu bytes free in %s, %llu needed", (unsigned long long)have, o->dir,
             (unsigned long long)need);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void note(const open_log *l, int runs) {
    double v[BENCH_MAX_RUNS];
    memcpy(v, l->open_ms, sizeof(double) * (size_t)runs);
    qsort(v, (size_t)runs, sizeof *v, cmp_double);
    snprintf(l->r->note, sizeof l->r->note,
             "open alone: median %.2f ms; active segment %llu bytes, its .idx cut from %llu to "
             "%llu entries before each open; %llu records",
             v[runs / 2], (unsigned long long)l->active_size, (unsigned long long)l->idx_entries,
             (unsigned long long)l->idx_kept, (unsigned long long)l->records);
}

void bench_open(const bench_opts *o) {
    if (o->open_small_bytes + o->open_small_bytes / 50 >= o->segment_bytes)
        die("open: the active part (%llu bytes) must fit in one segment",
            (unsigned long long)o->open_small_bytes);
    if (!enough_disk(o))
        return;
    static open_log small, big;
    setup(o, &small, "small", o->open_small_bytes);
    setup(o, &big, "large", o->open_big_bytes);
    settle(o->dir); /* the build's write-back must not land in the timed opens */
    if (small.active_size != big.active_size)
        die("open: the active segments differ (%llu and %llu bytes)",
            (unsigned long long)small.active_size, (unsigned long long)big.active_size);
    int runs = o->open_runs < MAX_OPEN_RUNS ? o->open_runs : MAX_OPEN_RUNS;
    for (int run = -1; run < runs; run++) {
        progress("open: run %d of %d", run + 1, runs);
        open_once(o, &small, run);
        open_once(o, &big, run);
    }
    note(&small, runs);
    note(&big, runs);
    result_print(small.r);
    result_ratio(big.r, small.r->name, "of", TARGET_RATIO_MAX, TARGET_OPEN_RATIO);
    result_print(big.r);
    if (!o->keep) {
        for (int i = 0; i < 2; i++) {
            open_log *l = i ? &big : &small;
            char marker[4200];
            snprintf(marker, sizeof marker, "%s.built", l->path);
            unlink(marker);
            rm_rf(l->path);
        }
    }
}
