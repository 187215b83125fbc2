/*
 * verify.c - kl_log_verify of a whole log: verify_bytes (1 GiB; 512 MiB
 * with --quick) of 100-byte records appended in batches of 1000, the same
 * records as the hashing ceiling's, so verify's blocks/s is reported as a
 * ratio of that ceiling (the target: at least 0.8).
 *
 * Verify re-reads every block (its batch checksums checked on the way),
 * hashes its leaf, rebuilds the tree and compares every node with the tree
 * file, then the roots with the signed ones: the ceiling's hashing plus
 * reading. The log is opened read-only for each run (not timed) and only
 * the kl_log_verify call is timed; a run that finds the log bad stops the
 * benchmark, so a fast wrong answer cannot pass.
 *
 * The log is built once under --dir as verify-log-SIZE, with a .built
 * marker holding its shape and kappalog's version; with --keep it stays and
 * the next run with the same shape reuses it (after opening it and checking
 * its length). Its files are read once before the first run, so every run
 * reads a page-cached log, as the read scenarios do.
 *
 * What a reader would get wrong: verify reads the tree file beside the
 * blocks, 5 bytes per block (the nodes over 16 blocks and up; 80 in a
 * version-1 tree file, which stores every node), so it reads about 1.1 GB
 * for the 1 GiB log.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define TARGET_VERIFY 0.8 /* of the hashing ceiling */

typedef struct verify_log {
    char name[128], path[4096], marker[4200];
    uint64_t records;
    int ready;         /* built or reused, and read once */
    char missing[256]; /* why not, if it could not be */
    char note[256];
    bench_result *r; /* made by the first run, so it follows the append in the results */
} verify_log;

static verify_log vl;

static void verify_name(const bench_opts *o, char *out, size_t cap) {
    char size[32];
    fmt_bytes(size, sizeof size, o->verify_bytes);
    snprintf(out, cap, "verify log=%s rec=%dB batch=%d", size, HASH_RECORD_BYTES, HASH_BATCH);
}

static int open_readonly(const bench_opts *o, kl_log **log) {
    kl_open_options opts;
    kl_open_options_default(&opts);
    opts.flags = KL_OPEN_READONLY;
    opts.io = o->io;
    *log = NULL;
    return kl_log_open(vl.path, &opts, log);
}

static void marker_text(const bench_opts *o, char *out, size_t cap) {
    snprintf(out, cap,
             "kappalog-bench verify log v1 records=%llu rec=%d batch=%d segment=%llu "
             "kappalog=%s\n",
             (unsigned long long)vl.records, HASH_RECORD_BYTES, HASH_BATCH,
             (unsigned long long)o->segment_bytes, kl_version());
}

/* A log left by an earlier run with this marker, which opens with the right length. */
static int reusable(const bench_opts *o) {
    char want[512], have[512] = "";
    marker_text(o, want, sizeof want);
    FILE *f = fopen(vl.marker, "r");
    if (!f)
        return 0;
    if (!fgets(have, sizeof have, f))
        have[0] = '\0';
    fclose(f);
    kl_log *log = NULL;
    if (strcmp(have, want) != 0 || open_readonly(o, &log) < 0)
        return 0;
    int ok = kl_log_length(log) == vl.records &&
             kl_log_byte_length(log) == vl.records * HASH_RECORD_BYTES;
    kl_log_close(log);
    return ok;
}

static void build(const bench_opts *o) {
    progress("building the verify log: %llu records of %d bytes in %s",
             (unsigned long long)vl.records, HASH_RECORD_BYTES, vl.path);
    unlink(vl.marker);
    bench_pool p;
    pool_init(&p, HASH_RECORD_BYTES, HASH_BATCH, 42 + HASH_RECORD_BYTES * 7 + HASH_BATCH);
    kl_log *log = bench_log_fresh(o, vl.path, KL_FSYNC_NEVER);
    for (uint64_t v = 0; v * HASH_BATCH < vl.records; v++) {
        int rc = kl_log_append(log, pool_batch_blocks(&p, (unsigned)v), HASH_BATCH, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
    }
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    pool_free(&p);
    char text[512];
    marker_text(o, text, sizeof text);
    FILE *f = fopen(vl.marker, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die("%s: cannot write", vl.marker);
}

static uint64_t warm_bytes;

/* Read one file of the log to the end (into the page cache). */
static int warm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (flag != FTW_F)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    static char buf[1 << 20];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        warm_bytes += (uint64_t)n;
    close(fd);
    return 0;
}

/* The result, made on first use with what verify_prepare found. */
static bench_result *verify_result(void) {
    if (vl.r)
        return vl.r;
    vl.r = result_get("verify", "kappalog_verify", vl.name);
    vl.r->record_bytes = HASH_RECORD_BYTES;
    vl.r->batch = HASH_BATCH;
    vl.r->threads = 1;
    vl.r->log_bytes = vl.records * HASH_RECORD_BYTES;
    snprintf(vl.r->missing, sizeof vl.r->missing, "%s", vl.missing);
    snprintf(vl.r->note, sizeof vl.r->note, "%s", vl.note);
    return vl.r;
}

void verify_prepare(const bench_opts *o) {
    char sub[64], size[32];
    verify_name(o, vl.name, sizeof vl.name);
    if (!want_scenario(o, vl.name)) {
        vl.name[0] = '\0';
        return;
    }
    fmt_bytes(size, sizeof size, o->verify_bytes);
    snprintf(sub, sizeof sub, "verify-log-%s", size);
    path_join(vl.path, sizeof vl.path, o->dir, sub);
    snprintf(vl.marker, sizeof vl.marker, "%s.built", vl.path);
    uint64_t per = (uint64_t)HASH_RECORD_BYTES * HASH_BATCH;
    vl.records = (o->verify_bytes + per - 1) / per * HASH_BATCH; /* whole batches, >= the size */
    int reused = reusable(o);
    if (!reused) {
        /* payload, tree (80 B per block), framing and index, and room to spare */
        uint64_t need = vl.records * (HASH_RECORD_BYTES + 100) + (1ull << 30);
        if (disk_free_bytes(o->dir) < need) {
            snprintf(vl.missing, sizeof vl.missing,
                     "%llu bytes free in %s, the verify log needs %llu",
                     (unsigned long long)disk_free_bytes(o->dir), o->dir, (unsigned long long)need);
            progress("%s: not measured: %s", vl.name, vl.missing);
            return;
        }
        build(o);
    }
    uint64_t t0 = now_ns();
    warm_bytes = 0;
    nftw(vl.path, warm_one, 16, FTW_PHYS);
    settle(o->dir); /* the build's write-back must not land in the timed runs */
    snprintf(vl.note, sizeof vl.note,
             "%s; %llu records; its %llu bytes of files read once before the first run "
             "(%.2f s, not timed); the log opened read-only for each run (not timed)",
             reused ? "log reused from an earlier run (--keep)" : "log built by this run",
             (unsigned long long)vl.records, (unsigned long long)warm_bytes,
             (double)(now_ns() - t0) / 1e9);
    vl.ready = 1;
}

void verify_run(const bench_opts *o) {
    if (!vl.name[0])
        return; /* not wanted */
    bench_result *r = verify_result();
    if (!vl.ready)
        return; /* not measured: r says why */
    progress("%s: run %d", r->name, r->nruns + 1);
    kl_log *log = NULL;
    int rc = open_readonly(o, &log);
    if (rc < 0)
        die_kl("kl_log_open (read-only)", rc);
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    hist_reset(h);
    bench_run run = {0};
    uint64_t bad = 0;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t t0 = now_ns();
    rc = kl_log_verify(log, NULL, NULL, &bad);
    uint64_t t1 = now_ns();
    run.other_cpu_s = cpu_other_s(&cpu);
    if (rc < 0)
        die("%s: kl_log_verify found block %llu bad: %s (%s)", r->name, (unsigned long long)bad,
            kl_strerror(rc), kl_last_error());
    hist_add(h, t1 - t0);
    run.ops = 1;
    run.records = kl_log_length(log);
    run.bytes = kl_log_byte_length(log);
    run.seconds = (double)(t1 - t0) / 1e9;
    rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    if (run.records != vl.records)
        die("%s: the log has %llu records, %llu expected", r->name, (unsigned long long)run.records,
            (unsigned long long)vl.records);
    result_add_run(r, &run, h);
    free(h);
}

void verify_finish(const bench_opts *o) {
    if (!vl.name[0])
        return;
    bench_result *r = verify_result();
    char ref[128];
    name_hashing(ref, sizeof ref);
    result_ratio(r, ref, "of", TARGET_RATIO_MIN, TARGET_VERIFY);
    result_print(r);
    if (!o->keep && vl.ready) {
        unlink(vl.marker);
        rm_rf(vl.path);
    }
}
