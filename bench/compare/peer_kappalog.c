/*
 * peer_kappalog.c - kappalog itself as a peer of the compare run, through
 * the public C API as the main benchmark drives it (append.c, reads.c):
 * one kl_log_append call per batch of 1, 64, 100 or 1,000 prepared
 * records, on a fresh log opened with the fsync policy matched to the
 * peer's durability (interval:1000 against Redis everysec and SQLite WAL
 * NORMAL, always against Redis always and SQLite FULL); kl_iter over the
 * whole read store, and kl_log_get of random indexes into a buffer.
 *
 * What a reader would get wrong: closing the log (which syncs what the
 * interval policy left pending) is not timed, as Redis's shutdown and
 * SQLite's close are not; its time is in the note. The read store is
 * written under never and synced by its close, then opened again, so reads
 * go through a fresh handle over page-cached files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"

#define INTERVAL_MS 1000u

static kl_log *read_log;
static char read_path[4096];

static kl_log *open_log(const cmp_ctx *c, const char *path, kl_fsync_mode mode, int fresh) {
    if (fresh) {
        kl_config cfg;
        kl_config_default(&cfg);
        cfg.segment_bytes = c->o->segment_bytes;
        int rc = kl_log_create(path, &cfg);
        if (rc < 0)
            die_kl("kl_log_create", rc);
    }
    kl_open_options opts;
    kl_open_options_default(&opts);
    opts.io = c->o->io;
    opts.fsync_override = 1;
    opts.fsync_mode = mode;
    opts.fsync_interval_ms = INTERVAL_MS;
    kl_log *log = NULL;
    int rc = kl_log_open(path, &opts, &log);
    if (rc < 0)
        die_kl("kl_log_open", rc);
    return log;
}

static int kl_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    (void)why;
    (void)cap;
    return 0;
}

static int kl_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char path[4096];
    cmp_scratch(c, "kappalog-append", path, sizeof path);
    kl_fsync_mode mode = k->dur == CMP_DUR_EVERY ? KL_FSYNC_ALWAYS : KL_FSYNC_INTERVAL;
    kl_log *log = open_log(c, path, mode, 1);
    const bench_pool *p = k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(c->append_s * 1e9);
    for (unsigned v = 0; t < end && out->run.bytes < c->run_cap_bytes; v++) {
        int rc = kl_log_append(log, pool_batch_blocks(p, v), p->batch, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
        cmp_op_done(out, &t, p->batch, batch_bytes);
    }
    out->run.seconds = (double)(t - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
    if (kl_log_length(log) != out->run.records)
        die("kappalog: the log has %llu records, %llu were appended",
            (unsigned long long)kl_log_length(log), (unsigned long long)out->run.records);
    kl_info info;
    int rc = kl_log_info(log, &info);
    if (rc < 0)
        die_kl("kl_log_info", rc);
    uint64_t c0 = now_ns();
    rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    snprintf(out->note, sizeof out->note,
             "kappalog %s, io %s, fsync %s, one kl_log_append per batch on a fresh log; "
             "close after the last run (not timed): %.3f s",
             kl_version(), info.io_backend, k->setting, (double)(now_ns() - c0) / 1e9);
    rm_rf(path);
    return 0;
}

static int kl_load(const cmp_ctx *c, const cmp_case *k, char *why, size_t cap) {
    (void)why;
    (void)cap;
    cmp_scratch(c, "kappalog-read", read_path, sizeof read_path);
    kl_log *log = open_log(c, read_path, KL_FSYNC_NEVER, 1);
    for (uint64_t i = 0; i < k->records; i += CMP_LOAD_BATCH) {
        int rc = kl_log_append(log, cmp_record(k, i), CMP_LOAD_BATCH, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
    }
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    read_log = open_log(c, read_path, KL_FSYNC_NEVER, 0);
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    for (unsigned i = 0; i < CMP_CHECKS; i++) {
        uint64_t at = k->idx[i % k->nidx];
        size_t size = 0;
        rc = kl_log_get(read_log, at, buf, k->record_bytes, &size);
        if (rc < 0)
            die_kl("kl_log_get", rc);
        const kl_block *b = cmp_record(k, at);
        if (size != b->size || memcmp(buf, b->data, size) != 0)
            die("kappalog: kl_log_get(%llu) returned other bytes than were appended",
                (unsigned long long)at);
    }
    free(buf);
    return 0;
}

static int kl_read(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    (void)c;
    kl_iter *it = NULL;
    kl_record rec;
    uint64_t sink = 0;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns();
    int rc = kl_iter_open(read_log, 0, UINT64_MAX, &it);
    if (rc < 0)
        die_kl("kl_iter_open", rc);
    while ((rc = kl_iter_next(it, &rec)) == 1) {
        out->run.bytes += rec.size;
        sink += ((const uint8_t *)rec.data)[rec.size - 1];
        out->run.records++;
    }
    if (rc < 0)
        die_kl("kl_iter_next", rc);
    kl_iter_close(it);
    out->run.seconds = (double)(now_ns() - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
    out->run.ops = out->run.records;
    if (out->run.records != k->records)
        die("kappalog: read %llu records of %llu", (unsigned long long)out->run.records,
            (unsigned long long)k->records);
    snprintf(out->note, sizeof out->note,
             "kl_iter over the whole log on a fresh handle, page-cached (sink %llu)",
             (unsigned long long)(sink & 0xff));
    return 0;
}

static int kl_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(c->get_s * 1e9);
    for (uint64_t i = 0; t < end; i++) {
        size_t size = 0;
        int rc = kl_log_get(read_log, k->idx[i & (k->nidx - 1)], buf, k->record_bytes, &size);
        if (rc < 0)
            die_kl("kl_log_get", rc);
        cmp_op_done(out, &t, 1, size);
    }
    out->run.seconds = (double)(t - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
    snprintf(out->note, sizeof out->note,
             "kl_log_get of uniformly random indexes into a buffer, one thread, page-cached");
    free(buf);
    return 0;
}

static void kl_unload(const cmp_ctx *c) {
    (void)c;
    if (read_log) {
        int rc = kl_log_close(read_log);
        if (rc < 0)
            die_kl("kl_log_close", rc);
        read_log = NULL;
    }
    if (read_path[0])
        rm_rf(read_path);
    read_path[0] = '\0';
}

static void kl_teardown(const cmp_ctx *c) {
    kl_unload(c);
}

const cmp_peer cmp_peer_kappalog = {
    .name = "kappalog",
    .append_verb = "append",
    .batch_word = "batch",
    .setting_word = "fsync",
    .read_verb = "read sequential",
    .get_verb = "get random",
    .setting = {[CMP_DUR_INTERVAL] = "interval:1000", [CMP_DUR_EVERY] = "always"},
    .batches = {1, 64, 100, 1000},
    .setup = kl_setup,
    .append = kl_append,
    .load = kl_load,
    .read = kl_read,
    .get = kl_get,
    .unload = kl_unload,
    .teardown = kl_teardown,
};
