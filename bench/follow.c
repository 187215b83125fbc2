/*
 * follow.c - append-to-visible latency: how long after an append starts a
 * follower sees the new block, under fsync=never (issue 5: in-process p99
 * under 100 us, cross-process p99 under 1 ms).
 *
 * - in-process: a thread waits in kl_log_wait on the writer's own handle
 *   (woken by the commit path's futex);
 * - cross-process: a forked child holds a read-only handle and waits in
 *   kl_log_wait (inotify on the header, then a refresh).
 *
 * The appender stamps each append's start (CLOCK_MONOTONIC, the same clock
 * in both processes) into a shared array before it calls kl_log_append,
 * then paces itself, so each append is a separate event to notice; the
 * follower, each time it wakes, takes the latency of every block that
 * became visible. One record per append, 100 bytes.
 *
 * What a reader would get wrong: the latency includes the append's own
 * commit up to its publication (framing, hashing, the write system calls),
 * since that is what "visible" waits for; it is not only the wake-up. The
 * signature is not in it: under `never` a commit is published with an
 * unsigned header slot and signed right after (docs/DURABILITY.md).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define FOLLOW_RECORD_BYTES  100
#define TARGET_INPROC_P99_US 100.0
#define TARGET_CROSS_P99_US  1000.0
#define FOLLOW_GAP_US        300 /* between appends: each one a separate event */

/* Shared between the appender and the follower (a MAP_SHARED mapping: also across fork). */
typedef struct follow_shared {
    _Atomic uint64_t ready; /* the follower is waiting */
    uint64_t n;             /* appends planned */
    bench_hist hist;        /* filled by the follower */
    uint64_t seen;          /* blocks the follower saw */
    int failed;             /* the follower hit an error */
    uint64_t start_ns[];    /* per block: when its append started */
} follow_shared;

static follow_shared *shared_new(uint64_t n) {
    size_t len = sizeof(follow_shared) + n * sizeof(uint64_t);
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap of %zu bytes: %s", len, strerror(errno));
    follow_shared *s = m;
    s->n = n;
    hist_reset(&s->hist);
    return s;
}

static void shared_free(follow_shared *s) {
    munmap(s, sizeof(follow_shared) + s->n * sizeof(uint64_t));
}

/* Wait for every block, adding each one's latency as it becomes visible. */
static void follow_all(kl_log *log, follow_shared *s) {
    uint64_t seen = kl_log_length(log);
    atomic_store(&s->ready, 1);
    while (seen < s->n) {
        int rc = kl_log_wait(log, seen, 10000);
        /* the length first: every block below it was stamped before `now` is read */
        uint64_t len = kl_log_length(log);
        uint64_t now = now_ns();
        if (rc <= 0) {
            s->failed = 1;
            break;
        }
        for (uint64_t i = seen; i < len && i < s->n; i++)
            hist_add(&s->hist, now - s->start_ns[i]);
        seen = len;
    }
    s->seen = seen;
}

static void pause_us(long us) {
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

/* Append s->n single records, stamping each start, after the follower is ready. */
static void append_paced(kl_log *log, follow_shared *s, const bench_pool *p) {
    while (!atomic_load(&s->ready))
        pause_us(100);
    pause_us(20000); /* let the follower reach its first wait */
    for (uint64_t i = 0; i < s->n; i++) {
        s->start_ns[i] = now_ns();
        int rc = kl_log_append(log, pool_batch_blocks(p, (unsigned)i), 1, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
        pause_us(FOLLOW_GAP_US);
    }
}

typedef struct inproc_arg {
    kl_log *log;
    follow_shared *s;
} inproc_arg;

static void *inproc_main(void *arg) {
    inproc_arg *a = arg;
    follow_all(a->log, a->s);
    return NULL;
}

static void record(bench_result *r, follow_shared *s, uint64_t t0, uint64_t t1) {
    if (s->failed || s->seen != s->n)
        die("follower saw %llu of %llu blocks", (unsigned long long)s->seen,
            (unsigned long long)s->n);
    bench_run run = {.ops = s->n, .records = s->n, .seconds = (double)(t1 - t0) / 1e9};
    run.bytes = s->n * FOLLOW_RECORD_BYTES;
    result_add_run(r, &run, &s->hist);
}

static void run_inproc(const bench_opts *o, bench_result *r, const bench_pool *p, uint64_t n) {
    char path[4096];
    path_join(path, sizeof path, o->dir, "follow-log");
    kl_log *log = bench_log_fresh(o, path, KL_FSYNC_NEVER);
    settle(o->dir); /* the writeback of earlier groups' gigabytes would stall these writes */
    follow_shared *s = shared_new(n);
    inproc_arg a = {log, s};
    pthread_t t;
    if (pthread_create(&t, NULL, inproc_main, &a) != 0)
        die("cannot start the follower thread");
    uint64_t t0 = now_ns();
    append_paced(log, s, p);
    pthread_join(t, NULL);
    record(r, s, t0, now_ns());
    shared_free(s);
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
}

static void run_cross(const bench_opts *o, bench_result *r, const bench_pool *p, uint64_t n) {
    char path[4096];
    path_join(path, sizeof path, o->dir, "follow-log");
    kl_log *log = bench_log_fresh(o, path, KL_FSYNC_NEVER);
    settle(o->dir);
    follow_shared *s = shared_new(n);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        kl_open_options opts;
        kl_open_options_default(&opts);
        opts.flags |= KL_OPEN_READONLY;
        opts.io = o->io;
        kl_log *ro = NULL;
        if (kl_log_open(path, &opts, &ro) < 0)
            _exit(2);
        follow_all(ro, s);
        kl_log_close(ro);
        _exit(s->failed ? 3 : 0);
    }
    uint64_t t0 = now_ns();
    append_paced(log, s, p);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("the follower process failed (status %d)", status);
    record(r, s, t0, now_ns());
    shared_free(s);
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
}

typedef void (*follow_run_fn)(const bench_opts *o, bench_result *r, const bench_pool *p,
                              uint64_t n);

/* One scenario: its runs, then its p99 target. */
static void scenario(const bench_opts *o, const bench_pool *p, const char *kind, const char *name,
                     follow_run_fn run, double target_us) {
    if (!want_scenario(o, name))
        return;
    uint64_t n = o->quick ? 2000 : 10000;
    int reps = o->quick ? 1 : 3;
    bench_result *r = result_get("follow", kind, name);
    r->record_bytes = FOLLOW_RECORD_BYTES;
    r->batch = 1;
    snprintf(r->fsync, sizeof r->fsync, "never");
    for (int i = 0; i < reps; i++) {
        progress("follow: %s, run %d of %d", kind, i + 1, reps);
        run(o, r, p, n);
    }
    result_finish(r);
    result_target(r, TARGET_P99_MAX_US, target_us);
    result_print(r);
}

void bench_follow(const bench_opts *o) {
    bench_pool p;
    pool_init(&p, FOLLOW_RECORD_BYTES, 1, 23);
    scenario(o, &p, "follow_inproc", "append-to-visible, in-process follower, fsync=never",
             run_inproc, TARGET_INPROC_P99_US);
    scenario(o, &p, "follow_cross", "append-to-visible, follower in another process, fsync=never",
             run_cross, TARGET_CROSS_P99_US);
    pool_free(&p);
}
