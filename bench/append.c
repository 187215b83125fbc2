/*
 * append.c - appends through the C API: 100-byte and 1 KiB records in
 * batches of 1, 100 and 1000 (one kl_log_append call per batch), under the
 * fsync policies never and always, one appender, each run on a fresh log
 * opened with that policy (kl_open_options.fsync_override).
 *
 * Each result is reported as a ratio of the matching ceiling (same record
 * size, same batch): the no-sync write(2) ceiling for never, the
 * write(2)+fdatasync ceiling for always. The append of 100-byte records in
 * batches of 1000 under never is also reported as a ratio of the hashing
 * ceiling (hashing.c: every append hashes its blocks into the Hypercore
 * tree) and as a multiple of the JavaScript hypercore appending the same
 * shape of records (hypercore.c).
 *
 * This file also sets the order of everything that is paired, repetition
 * by repetition: for 100-byte records in batches of 1000 under never, the
 * hypercore run, the write(2) ceiling, the write-pattern floor, the append,
 * the hashing ceiling and the verify of a whole log follow each other, so
 * the append sits between its two ceilings and verify next to the hashing
 * ceiling.
 *
 * What a reader would get wrong: closing the log (which syncs what never
 * left unsynced) is outside the timed region, as the ceiling's loop has no
 * final sync either; the close time is recorded in the note.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const size_t rec_sizes[] = {100, 1024};
static const size_t batches[] = {1, 100, 1000};

/* The targets (bench/README.md). */
#define TARGET_NEVER_1000 0.8  /* of the no-sync ceiling, 100 B records, batches of 1000 */
#define TARGET_ALWAYS_1   0.4  /* of the fdatasync-per-write ceiling, single records */
#define TARGET_HASHING    0.8  /* the same append, of the one-core hashing ceiling */
#define TARGET_HYPERCORE  12.0 /* the same append, times hypercore 11.37.1's blocks/s */

void name_append(char *out, size_t cap, size_t record_bytes, size_t batch, const char *fsync) {
    snprintf(out, cap, "append rec=%zuB batch=%zu fsync=%s", record_bytes, batch, fsync);
}

/* One run: append prepared batches for `seconds` (or up to the byte cap). */
static void append_run(const bench_opts *o, bench_result *r, const bench_pool *p,
                       kl_fsync_mode mode, double seconds) {
    char path[4096];
    path_join(path, sizeof path, o->dir, "append-log");
    kl_log *log = bench_log_fresh(o, path, mode);
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    hist_reset(h);
    bench_run run = {0};
    size_t batch_bytes = p->batch * p->record_bytes;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(seconds * 1e9);
    for (unsigned v = 0; t < end && run.bytes < o->run_cap_bytes; v++) {
        int rc = kl_log_append(log, pool_batch_blocks(p, v), p->batch, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
        uint64_t t1 = now_ns();
        hist_add(h, t1 - t);
        t = t1;
        run.ops++;
        run.records += p->batch;
        run.bytes += batch_bytes;
    }
    run.seconds = (double)(t - start) / 1e9;
    run.other_cpu_s = cpu_other_s(&cpu);
    if (kl_log_length(log) != run.records)
        die("%s: the log has %llu records, %llu were appended", r->name,
            (unsigned long long)kl_log_length(log), (unsigned long long)run.records);
    uint64_t c0 = now_ns();
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    snprintf(r->note, sizeof r->note, "close after the last run (not timed): %.3f s",
             (double)(now_ns() - c0) / 1e9);
    rm_rf(path);
    settle(o->dir);
    result_add_run(r, &run, h);
    free(h);
}

static void append_one(const bench_opts *o, size_t rec, size_t batch, kl_fsync_mode mode) {
    const char *fs = mode == KL_FSYNC_NEVER ? "never" : "always";
    char name[128];
    name_append(name, sizeof name, rec, batch, fs);
    if (!want_scenario(o, name))
        return;
    bench_result *r = result_get("append", "kappalog_append", name);
    r->record_bytes = rec;
    r->batch = batch;
    r->threads = 1;
    snprintf(r->fsync, sizeof r->fsync, "%s", fs);
    bench_pool p;
    pool_init(&p, rec, batch, 42 + rec * 7 + batch);
    progress("%s: run %d", name, r->nruns + 1);
    append_run(o, r, &p, mode, mode == KL_FSYNC_NEVER ? o->never_s : o->sync_s);
    pool_free(&p);
}

/* How close the bare write pattern of a commit comes to the plain write(2) ceiling. */
static void pattern_ratios(void) {
    for (size_t i = 0; i < result_count(); i++) {
        bench_result *r = result_at(i);
        if (strcmp(r->kind, "write_pattern") != 0)
            continue;
        char ref[128];
        name_ceiling(ref, sizeof ref, 0, r->record_bytes, r->batch);
        result_ratio(r, ref, "of", TARGET_NONE, 0);
        if (r->ratio > 0)
            snprintf(r->note, sizeof r->note,
                     "kappalog's write pattern without its work reaches %.3f of %s: the floor "
                     "for the never appends of this size",
                     r->ratio, ref);
    }
}

/* Ratios to the matching ceilings, with the targets where it sets one. */
static void append_ratios(void) {
    for (size_t i = 0; i < result_count(); i++) {
        bench_result *r = result_at(i);
        if (strcmp(r->group, "append") != 0)
            continue;
        int sync = strcmp(r->fsync, "always") == 0;
        char ref[128];
        name_ceiling(ref, sizeof ref, sync, r->record_bytes, r->batch);
        target_kind tk = TARGET_NONE;
        double target = 0;
        if (!sync && r->record_bytes == 100 && r->batch == 1000) {
            tk = TARGET_RATIO_MIN;
            target = TARGET_NEVER_1000;
        } else if (sync && r->batch == 1) {
            tk = TARGET_RATIO_MIN;
            target = TARGET_ALWAYS_1;
        }
        result_ratio(r, ref, "of", tk, target);
        if (!sync && r->record_bytes == HASH_RECORD_BYTES && r->batch == HASH_BATCH) {
            name_hashing(ref, sizeof ref);
            result_also(r, ref, "of", TARGET_RATIO_MIN, TARGET_HASHING);
            name_hypercore(ref, sizeof ref);
            result_also(r, ref, "x", TARGET_RATIO_MIN, TARGET_HYPERCORE);
        }
        result_print(r);
    }
}

static void group_print(const char *group) {
    for (size_t i = 0; i < result_count(); i++)
        if (strcmp(result_at(i)->group, group) == 0)
            result_print(result_at(i));
}

/* One ceiling and the append compared with it, and around the hashed case its other peers. */
static void one_pair(const bench_opts *o, size_t rec, size_t batch, int sync) {
    int ceilings = want_group(o, "ceilings"), appends = want_group(o, "append");
    int hashed = !sync && rec == HASH_RECORD_BYTES && batch == HASH_BATCH;
    if (hashed && want_group(o, "hypercore"))
        hypercore_run(o);
    if (ceilings)
        ceiling_one(o, rec, batch, sync);
    if (ceilings && !sync && batch == 1000)
        ceiling_pattern(o, rec, batch);
    if (appends)
        append_one(o, rec, batch, sync ? KL_FSYNC_ALWAYS : KL_FSYNC_NEVER);
    if (hashed && want_group(o, "hashing"))
        hashing_ceiling(o);
    if (hashed && want_group(o, "verify"))
        verify_run(o);
}

/*
 * The ceilings and the appends, paired: in every repetition each ceiling
 * run is followed by the append run it is compared with, so slow drift of
 * the disk (or other load) touches both alike. What is not timed (the
 * hashing check, finding hypercore, building the verify log) comes first.
 */
void bench_append(const bench_opts *o) {
    if (want_group(o, "hashing"))
        hashing_check(o);
    if (want_group(o, "hypercore"))
        hypercore_prepare(o);
    if (want_group(o, "verify"))
        verify_prepare(o);
    for (int rep = 0; rep < o->reps; rep++) {
        if (want_group(o, "ceilings"))
            ceiling_reference(o);
        for (size_t i = 0; i < sizeof rec_sizes / sizeof *rec_sizes; i++)
            for (size_t j = 0; j < sizeof batches / sizeof *batches; j++)
                for (int sync = 0; sync <= 1; sync++)
                    one_pair(o, rec_sizes[i], batches[j], sync);
    }
    pattern_ratios();
    ceilings_print();
    group_print("hashing");
    group_print("hypercore");
    if (want_group(o, "append"))
        append_ratios();
    if (want_group(o, "verify"))
        verify_finish(o);
}
