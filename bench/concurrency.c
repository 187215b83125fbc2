/*
 * concurrency.c - group commit: 1, 2, 4, 8, 16, 32 and 64 threads share one
 * log under fsync=always, each appending single 100-byte records as fast as
 * its appends are acknowledged. The figure is the aggregate of acknowledged
 * appends per second, and its ratio to the one-thread figure of the same
 * run (the target: at least 30x at 64 threads). At 1 and 64 threads
 * the group commit ceiling (group.c) runs right before, for a second ratio.
 *
 * What a reader would get wrong: the elapsed time runs from the moment all
 * threads are released to the moment the last one returns from its last
 * append, so appends still in flight when the clock stops are counted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const int thread_counts[] = {1, 2, 4, 8, 16, 32, 64};
#define MAX_THREADS       64
#define TARGET_64_THREADS 30.0 /* x the one-thread figure */
#define CONC_RECORD_BYTES 100

typedef struct worker {
    pthread_t tid;
    conc_append_fn append;
    void *target;
    const bench_pool *pool;
    pthread_barrier_t *go;
    atomic_int *stop;
    unsigned variant;
    uint64_t appends, end_ns;
    bench_hist hist;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    pthread_barrier_wait(w->go);
    uint64_t t = now_ns();
    while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
        if (w->append(w->target, w->pool, w->variant++) < 0)
            break;
        uint64_t t1 = now_ns();
        hist_add(&w->hist, t1 - t);
        t = t1;
        w->appends++;
    }
    w->end_ns = t;
    return NULL;
}

void conc_threads(const bench_opts *o, const bench_pool *p, int n, conc_append_fn append,
                  void *target, bench_run *run, bench_hist *h) {
    worker *ws = calloc((size_t)n, sizeof *ws);
    pthread_barrier_t go;
    atomic_int stop = 0;
    if (!ws || pthread_barrier_init(&go, NULL, (unsigned)n + 1) != 0)
        die("out of memory for %d threads", n);
    for (int i = 0; i < n; i++) {
        ws[i] = (worker){.append = append,
                         .target = target,
                         .pool = p,
                         .go = &go,
                         .stop = &stop,
                         .variant = (unsigned)i};
        hist_reset(&ws[i].hist);
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0)
            die("cannot start thread %d", i);
    }
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    pthread_barrier_wait(&go);
    uint64_t start = now_ns(), last = start;
    sleep_seconds(o->conc_s);
    atomic_store(&stop, 1);
    *run = (bench_run){0};
    hist_reset(h);
    for (int i = 0; i < n; i++) {
        pthread_join(ws[i].tid, NULL);
        run->ops += ws[i].appends;
        last = ws[i].end_ns > last ? ws[i].end_ns : last;
        hist_merge(h, &ws[i].hist);
    }
    run->records = run->ops;
    run->bytes = run->ops * p->record_bytes;
    run->seconds = (double)(last - start) / 1e9;
    run->other_cpu_s = cpu_other_s(&cpu);
    pthread_barrier_destroy(&go);
    free(ws);
}

static int log_append_one(void *target, const bench_pool *p, unsigned variant) {
    int rc = kl_log_append(target, pool_batch_blocks(p, variant), 1, NULL);
    if (rc < 0)
        die_kl("kl_log_append", rc);
    return 0;
}

static void conc_run(const bench_opts *o, bench_result *r, const bench_pool *p, int n) {
    char path[4096];
    path_join(path, sizeof path, o->dir, "concurrency-log");
    kl_log *log = bench_log_fresh(o, path, KL_FSYNC_ALWAYS);
    bench_run run;
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    conc_threads(o, p, n, log_append_one, log, &run, h);
    if (kl_log_length(log) != run.records)
        die("%s: the log has %llu records, %llu were acknowledged", r->name,
            (unsigned long long)kl_log_length(log), (unsigned long long)run.records);
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    rm_rf(path);
    settle(o->dir);
    result_add_run(r, &run, h);
    free(h);
}

static void conc_name(char *out, size_t cap, int n) {
    snprintf(out, cap, "concurrency threads=%d rec=%dB batch=1 fsync=always", n, CONC_RECORD_BYTES);
}

/* The plain C loop beside kappalog at these thread counts (group.c): one and the target's. */
static int has_ceiling(int threads) {
    return threads == 1 || threads == MAX_THREADS;
}

void bench_concurrency(const bench_opts *o) {
    bench_pool p;
    pool_init(&p, CONC_RECORD_BYTES, 1, 7);
    char name[128];
    for (int rep = 0; rep < o->reps; rep++)
        for (size_t i = 0; i < sizeof thread_counts / sizeof *thread_counts; i++) {
            int n = thread_counts[i];
            conc_name(name, sizeof name, n);
            if (!want_scenario(o, name))
                continue;
            if (has_ceiling(n)) /* right before: the ratio pairs runs a few seconds apart */
                ceiling_group(o, &p, n);
            bench_result *r = result_get("concurrency", "kappalog_append", name);
            r->record_bytes = CONC_RECORD_BYTES;
            r->batch = 1;
            r->threads = (uint64_t)n;
            snprintf(r->fsync, sizeof r->fsync, "always");
            progress("%s: run %d", name, r->nruns + 1);
            conc_run(o, r, &p, n);
        }
    pool_free(&p);
    char ref[128], cref[128], cname[128];
    conc_name(ref, sizeof ref, 1);
    name_ceiling_group(cref, sizeof cref, 1, CONC_RECORD_BYTES);
    for (size_t i = 0; i < result_count(); i++) {
        bench_result *r = result_at(i);
        if (strcmp(r->group, "concurrency") != 0)
            continue;
        if (strcmp(r->kind, "group_commit_c") == 0) {
            result_ratio(r, cref, "x", TARGET_NONE, 0);
        } else {
            result_ratio(r, ref, "x", r->threads == MAX_THREADS ? TARGET_RATIO_MIN : TARGET_NONE,
                         TARGET_64_THREADS);
            name_ceiling_group(cname, sizeof cname, (int)r->threads, CONC_RECORD_BYTES);
            if (has_ceiling((int)r->threads) && result_find(cname))
                result_also(r, cname, "of", TARGET_NONE, 0);
        }
        result_print(r);
    }
}
