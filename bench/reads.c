/*
 * reads.c - reading a page-cached log: kl_iter over every record in order
 * (records/s and MB/s), and kl_log_get of uniformly random indexes on one
 * thread (the target: at least 500,000 gets/s).
 *
 * The log: read_records 100-byte records in batches of 1000 (fsync never),
 * closed and opened again, so the reads go through a fresh handle over
 * files that are in the page cache. One untimed pass of the iterator maps
 * and faults in the pages first; nothing is dropped from the page cache.
 *
 * What a reader would get wrong: the random indexes are drawn before the
 * timed loop, and a sample of gets is compared byte for byte with the
 * records appended, before any timing, so a fast wrong answer cannot pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define READ_RECORD_BYTES 100
#define READ_BATCH        1000
#define GET_INDEXES       (1u << 20) /* a power of two: the loop masks */
#define GET_CHECKS        10000
#define TARGET_GETS_S     500000.0

static void build_read_log(const bench_opts *o, const char *path, const bench_pool *p) {
    kl_log *log = bench_log_fresh(o, path, KL_FSYNC_NEVER);
    for (uint64_t v = 0; v * READ_BATCH < o->read_records; v++) {
        int rc = kl_log_append(log, pool_batch_blocks(p, (unsigned)v), READ_BATCH, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
    }
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
}

/* One pass of the iterator over the whole log; returns records seen. */
static uint64_t iter_pass(kl_log *log, uint64_t *bytes, uint64_t *sink) {
    kl_iter *it = NULL;
    int rc = kl_iter_open(log, 0, UINT64_MAX, &it);
    if (rc < 0)
        die_kl("kl_iter_open", rc);
    kl_record rec;
    uint64_t n = 0;
    while ((rc = kl_iter_next(it, &rec)) == 1) {
        *bytes += rec.size;
        *sink += ((const uint8_t *)rec.data)[rec.size - 1];
        n++;
    }
    if (rc < 0)
        die_kl("kl_iter_next", rc);
    kl_iter_close(it);
    return n;
}

static void seq_read(const bench_opts *o, kl_log *log, uint64_t *sink) {
    char name[128];
    snprintf(name, sizeof name, "read sequential rec=%dB batch=%d", READ_RECORD_BYTES, READ_BATCH);
    if (!want_scenario(o, name))
        return;
    bench_result *r = result_get("read", "kappalog_iter", name);
    r->record_bytes = READ_RECORD_BYTES;
    r->batch = READ_BATCH;
    r->log_bytes = kl_log_byte_length(log);
    uint64_t bytes = 0;
    uint64_t t0 = now_ns();
    iter_pass(log, &bytes, sink);
    snprintf(r->note, sizeof r->note, "untimed first pass (maps the pages): %.3f s",
             (double)(now_ns() - t0) / 1e9);
    for (int rep = 0; rep < o->reps; rep++) {
        progress("%s: run %d", name, rep + 1);
        bench_run run = {0};
        cpu_mark cpu;
        cpu_mark_now(&cpu);
        uint64_t start = now_ns();
        run.records = iter_pass(log, &run.bytes, sink);
        run.seconds = (double)(now_ns() - start) / 1e9;
        run.other_cpu_s = cpu_other_s(&cpu);
        run.ops = run.records;
        if (run.records != kl_log_length(log))
            die("%s: read %llu records of %llu", name, (unsigned long long)run.records,
                (unsigned long long)kl_log_length(log));
        result_add_run(r, &run, NULL);
    }
}

/* Compare a sample of gets with the bytes appended (before any timing). */
static void check_gets(kl_log *log, const bench_pool *p, const uint64_t *idx) {
    uint8_t buf[READ_RECORD_BYTES];
    for (unsigned i = 0; i < GET_CHECKS; i++) {
        uint64_t k = idx[i];
        size_t size = 0;
        int rc = kl_log_get(log, k, buf, sizeof buf, &size);
        if (rc < 0)
            die_kl("kl_log_get", rc);
        const kl_block *b = &pool_batch_blocks(p, (unsigned)(k / READ_BATCH))[k % READ_BATCH];
        if (size != b->size || memcmp(buf, b->data, size) != 0)
            die("kl_log_get(%llu) returned other bytes than were appended", (unsigned long long)k);
    }
}

static void get_run(const bench_opts *o, kl_log *log, bench_result *r, const uint64_t *idx) {
    uint8_t buf[READ_RECORD_BYTES];
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    hist_reset(h);
    bench_run run = {0};
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(o->get_s * 1e9);
    for (uint64_t i = 0; t < end; i++) {
        size_t size = 0;
        int rc = kl_log_get(log, idx[i & (GET_INDEXES - 1)], buf, sizeof buf, &size);
        if (rc < 0)
            die_kl("kl_log_get", rc);
        uint64_t t1 = now_ns();
        hist_add(h, t1 - t);
        t = t1;
        run.ops++;
        run.bytes += size;
    }
    run.records = run.ops;
    run.seconds = (double)(t - start) / 1e9;
    run.other_cpu_s = cpu_other_s(&cpu);
    result_add_run(r, &run, h);
    free(h);
}

static void random_get(const bench_opts *o, kl_log *log, const bench_pool *p) {
    char name[128];
    snprintf(name, sizeof name, "get random rec=%dB batch=%d", READ_RECORD_BYTES, READ_BATCH);
    if (!want_scenario(o, name))
        return;
    bench_result *r = result_get("get", "kappalog_get", name);
    r->record_bytes = READ_RECORD_BYTES;
    r->batch = READ_BATCH;
    r->threads = 1;
    r->log_bytes = kl_log_byte_length(log);
    uint64_t *idx = malloc(GET_INDEXES * sizeof *idx);
    if (!idx)
        die("out of memory");
    uint64_t st = 99, len = kl_log_length(log);
    for (unsigned i = 0; i < GET_INDEXES; i++)
        idx[i] = rng_next(&st) % len;
    check_gets(log, p, idx);
    for (int rep = 0; rep < o->reps; rep++) {
        progress("%s: run %d", name, rep + 1);
        get_run(o, log, r, idx);
    }
    free(idx);
    result_target(r, TARGET_RATE_MIN, TARGET_GETS_S);
}

void bench_reads(const bench_opts *o) {
    char path[4096];
    path_join(path, sizeof path, o->dir, "read-log");
    bench_pool p;
    pool_init(&p, READ_RECORD_BYTES, READ_BATCH, 1234);
    progress("building the read log: %llu records of %d bytes", (unsigned long long)o->read_records,
             READ_RECORD_BYTES);
    build_read_log(o, path, &p);
    kl_log *log = bench_log_open(o, path, KL_FSYNC_NEVER);
    uint64_t sink = 0;
    if (want_group(o, "read"))
        seq_read(o, log, &sink);
    if (want_group(o, "get"))
        random_get(o, log, &p);
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    if (!o->keep)
        rm_rf(path);
    pool_free(&p);
    for (size_t i = 0; i < result_count(); i++) {
        bench_result *r = result_at(i);
        if (strcmp(r->group, "read") == 0 || strcmp(r->group, "get") == 0)
            result_print(r);
    }
    if (sink == 42) /* keeps the reads from being optimised away */
        progress("sink");
}
