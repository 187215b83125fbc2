/*
 * replication.c - how fast a log replicates over the Hypercore wire
 * protocol (docs/REPLICATION.md): kl_clone downloading a log that kl_serve
 * serves, both in this process (the server on a thread of its own), over
 * TCP on 127.0.0.1, each clone into a fresh replica under fsync=never.
 * Two comparisons, in blocks/s of 100-byte blocks:
 *
 *   - one kl_clone of a log of 1,000,000 blocks (200,000 with --quick), from
 *     the call to its return, compared with the JavaScript hypercore 11.37.1
 *     cloning a core of the same shape, server and client in two Node.js
 *     processes (bench/hypercore_clone.mjs, run through hypercore.c).
 *     Target: at least 5 times hypercore's rate;
 *   - 100 kl_clone calls at once, one thread each, from the same server
 *     (one thread for all of them), of a log of 100,000 blocks (10,000 with
 *     --quick): all the blocks over the time from their release to the last
 *     return, compared with one clone of the same log made next to it.
 *     Target: at least 0.5 of the single clone's rate (within 2x).
 *
 * The source logs are written once with kl_log_append (not timed) and
 * served read-only for the whole group; every replica is checked against
 * its source (length and tree hash) after its clone, outside the clock, and
 * removed. The kappalog clones run once per repetition; the hypercore clone
 * and the 100 clones take minutes each at full size, so they run once, in
 * the first repetition, right after the clone they are compared with, and
 * their ratios are to the median of that one's runs.
 *
 * A clone that fails makes its figure "not measured", with kl_clone's
 * error, and the run goes on; a replica that differs from its source stops
 * the benchmark.
 *
 * What a reader would get wrong: both ends run on this machine and share
 * its cores, and neither end syncs per write (the replicas are cloned under
 * never, and hypercore's RocksDB does not sync its writes), so these are
 * CPU and protocol figures, not network or disk ones.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"

#define REPL_RECORD_BYTES   100
#define REPL_BATCH          1000 /* blocks per append of the source logs */
#define REPL_PEERS          100  /* clones at once */
#define TARGET_VS_HYPERCORE 5.0  /* kappalog's clone, times hypercore's */
#define TARGET_PEERS        0.5  /* 100 clones' aggregate, of one clone's rate */
#define HC_CLONE_SCRIPT     "hypercore_clone.mjs"
#define HC_OUT_CAP          4096
/* The JavaScript clone may take this long: startup and build, plus 1 ms per block. */
#define HC_CLONE_TIMEOUT_S(blocks) (60.0 + (double)(blocks) / 1000.0)

/* kl_serve on its own thread, until stop. */
typedef struct server {
    pthread_t tid;
    const char *dirs[2];
    volatile int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 starting, 1 listening, 2 returned */
    int rc;
    char address[64];
    char error[256];
} server;

/* One clone of many: its replica, when it returned, how it went. */
typedef struct peer {
    pthread_t tid;
    server *srv;
    const unsigned char *key;
    pthread_barrier_t *go;
    char dir[4096];
    uint64_t end_ns;
    int rc;           /* kl_clone's */
    char error[1024]; /* why, if rc < 0 */
} peer;

/* A source log: where, how many blocks, and what a replica must end up with. */
typedef struct source {
    char dir[4096];
    uint64_t blocks;
    unsigned char key[32], tree_hash[32];
} source;

/* "clone WHO blocks=N rec=100B", and for the smaller log " single" or " concurrent=100". */
/*
 * How long a clone or the server waits for a silent peer here: 100 clone
 * threads and the server share 2 cores, and a server starved of CPU for
 * more than the default 10 s made some clones give up (their handshake or
 * their next answer late) in runs of 2026-12-03, with and without that
 * day's changes. The figures measure throughput; stall detection has its
 * own tests (test_hostile.sh).
 */
#define BENCH_STALL_MS 120000u

static void name_clone(char *out, size_t cap, const char *who, uint64_t blocks, int peers) {
    int n = snprintf(out, cap, "clone %s blocks=%llu rec=%dB", who, (unsigned long long)blocks,
                     REPL_RECORD_BYTES);
    if (peers == 1)
        snprintf(out + n, cap - (size_t)n, " single");
    else if (peers > 1)
        snprintf(out + n, cap - (size_t)n, " concurrent=%d", peers);
}

static bench_result *clone_result(const char *kind, const char *name, uint64_t blocks,
                                  int threads) {
    bench_result *r = result_get("replication", kind, name);
    r->record_bytes = REPL_RECORD_BYTES;
    r->threads = (uint64_t)threads;
    r->log_bytes = blocks * REPL_RECORD_BYTES;
    snprintf(r->fsync, sizeof r->fsync, "never");
    return r;
}

/* Sockets and log files of 100 clones: as many descriptors as the hard limit allows. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit: %s", strerror(errno));
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit RLIMIT_NOFILE %llu: %s", (unsigned long long)rl.rlim_max, strerror(errno));
}

/* The source log of `blocks` 100-byte blocks (not timed), and its key and tree hash. */
static void build_source(const bench_opts *o, source *s) {
    bench_pool p;
    pool_init(&p, REPL_RECORD_BYTES, REPL_BATCH, 4242 + s->blocks);
    kl_log *log = bench_log_fresh(o, s->dir, KL_FSYNC_NEVER);
    for (uint64_t i = 0; i < s->blocks; i += REPL_BATCH) {
        size_t n = s->blocks - i < REPL_BATCH ? (size_t)(s->blocks - i) : REPL_BATCH;
        int rc = kl_log_append(log, pool_batch_blocks(&p, (unsigned)(i / REPL_BATCH)), n, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
    }
    kl_info info;
    int rc = kl_log_info(log, &info);
    if (rc < 0)
        die_kl("kl_log_info", rc);
    if (info.length != s->blocks)
        die("%s: %llu blocks after appending %llu", s->dir, (unsigned long long)info.length,
            (unsigned long long)s->blocks);
    memcpy(s->key, info.key, sizeof s->key);
    memcpy(s->tree_hash, info.tree_hash, sizeof s->tree_hash);
    rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    pool_free(&p);
}

/* A replica holds its source's blocks under the same signed tree, or the benchmark stops. */
static void check_replica(const char *dir, const source *s) {
    kl_open_options oo;
    kl_open_options_default(&oo);
    oo.flags = KL_OPEN_READONLY;
    kl_log *log = NULL;
    int rc = kl_log_open(dir, &oo, &log);
    if (rc < 0)
        die_kl("kl_log_open of a replica", rc);
    kl_info info;
    rc = kl_log_info(log, &info);
    if (rc < 0)
        die_kl("kl_log_info of a replica", rc);
    if (info.length != s->blocks || memcmp(info.tree_hash, s->tree_hash, sizeof s->tree_hash) != 0)
        die("%s: the replica has %llu blocks%s, its source %llu", dir,
            (unsigned long long)info.length,
            info.length == s->blocks ? " under another tree hash" : "",
            (unsigned long long)s->blocks);
    kl_log_close(log);
}

static void on_listening(void *ctx, const char *address) {
    server *s = ctx;
    pthread_mutex_lock(&s->mu);
    snprintf(s->address, sizeof s->address, "%s", address);
    s->state = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *serve_main(void *arg) {
    server *s = arg;
    kl_serve_options so;
    kl_serve_options_default(&so);
    so.quiet = 1;
    so.stall_ms = BENCH_STALL_MS;
    so.stop = &s->stop;
    so.on_listening = on_listening;
    so.ctx = s;
    int rc = kl_serve(s->dirs, 2, "127.0.0.1:0", &so);
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    if (rc < 0)
        snprintf(s->error, sizeof s->error, "%s (%s)", kl_strerror(rc), kl_last_error());
    s->state = 2;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Serve both source logs on 127.0.0.1, a port the kernel picks; returns once listening. */
static void serve_start(server *s, const source *big, const source *small) {
    s->dirs[0] = big->dir;
    s->dirs[1] = small->dir;
    if (pthread_mutex_init(&s->mu, NULL) != 0 || pthread_cond_init(&s->cv, NULL) != 0 ||
        pthread_create(&s->tid, NULL, serve_main, s) != 0)
        die("cannot start the server thread");
    pthread_mutex_lock(&s->mu);
    while (s->state == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->state != 1)
        die("kl_serve 127.0.0.1:0 returned %d before listening: %s", s->rc, s->error);
}

static void serve_stop(server *s) {
    s->stop = 1;
    pthread_join(s->tid, NULL);
    if (s->rc < 0)
        die("kl_serve %s returned %d: %s", s->address, s->rc, s->error);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

/* Has kl_serve returned (so a clone had nobody to talk to)? */
static int serve_gone(server *s) {
    pthread_mutex_lock(&s->mu);
    int gone = s->state == 2;
    pthread_mutex_unlock(&s->mu);
    return gone;
}

/* One kl_clone into a fresh dir under never: its return code, and why into error if < 0. */
static int clone_into(server *srv, const unsigned char key[32], const char *dir, char *error,
                      size_t cap) {
    kl_clone_options co;
    kl_clone_options_default(&co);
    co.fsync_set = 1;
    co.fsync_mode = KL_FSYNC_NEVER;
    co.stall_ms = BENCH_STALL_MS;
    int rc = kl_clone(srv->address, key, dir, &co);
    const char *leaf = strrchr(dir, '/');
    if (rc < 0)
        snprintf(error, cap, "kl_clone into %.60s returned %d, %s: %.300s%s", leaf ? leaf + 1 : dir,
                 rc, kl_strerror(rc), kl_last_error(),
                 serve_gone(srv) ? " (kl_serve had returned)" : "");
    return rc;
}

/* A clone failed: the figure is not measured, and says why. */
static void clone_failed(bench_result *r, const char *why) {
    snprintf(r->missing, sizeof r->missing, "%.255s", why);
    progress("%s: not measured: %s", r->name, r->missing);
}

/* One timed clone of s into DIR/replication/replica, checked and removed. */
static void clone_single(const bench_opts *o, server *srv, const source *s, const char *root,
                         bench_result *r) {
    if (r->missing[0])
        return; /* a clone failed already */
    char dir[4096];
    path_join(dir, sizeof dir, root, "replica");
    rm_rf(dir);
    progress("%s: run %d", r->name, r->nruns + 1);
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    hist_reset(h);
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    char error[1024];
    uint64_t t0 = now_ns();
    int rc = clone_into(srv, s->key, dir, error, sizeof error);
    uint64_t t1 = now_ns();
    if (rc < 0) {
        clone_failed(r, error);
        rm_rf(dir);
        free(h);
        return;
    }
    bench_run run = {.ops = 1, .records = s->blocks, .bytes = s->blocks * REPL_RECORD_BYTES};
    run.seconds = (double)(t1 - t0) / 1e9;
    run.other_cpu_s = cpu_other_s(&cpu);
    hist_add(h, t1 - t0);
    check_replica(dir, s);
    rm_rf(dir);
    settle(o->dir);
    result_add_run(r, &run, h);
    free(h);
}

static void single_note(bench_result *r) {
    result_finish(r);
    snprintf(r->note, sizeof r->note,
             "kl_clone from the call to its return, into a fresh replica (fsync=never), from "
             "kl_serve on another thread of this process over 127.0.0.1; the source log written "
             "with kl_log_append in batches of %d (not timed); each replica checked against it "
             "afterwards (length, tree hash), outside the clock",
             REPL_BATCH);
}

static void *peer_main(void *arg) {
    peer *p = arg;
    pthread_barrier_wait(p->go);
    p->rc = clone_into(p->srv, p->key, p->dir, p->error, sizeof p->error);
    p->end_ns = now_ns();
    return NULL;
}

/* REPL_PEERS clones of s at once, each on its own thread into its own replica. */
static void clone_many(const bench_opts *o, server *srv, const source *s, const char *root,
                       bench_result *r) {
    if (r->missing[0])
        return; /* a clone failed already */
    peer *ps = calloc(REPL_PEERS, sizeof *ps);
    bench_hist *h = malloc(sizeof *h);
    pthread_barrier_t go;
    if (!ps || !h || pthread_barrier_init(&go, NULL, REPL_PEERS + 1) != 0)
        die("out of memory for %d clones", REPL_PEERS);
    hist_reset(h);
    progress("%s: run %d", r->name, r->nruns + 1);
    for (int i = 0; i < REPL_PEERS; i++) {
        char leaf[32];
        snprintf(leaf, sizeof leaf, "replica-%03d", i);
        ps[i].srv = srv;
        ps[i].key = s->key;
        ps[i].go = &go;
        path_join(ps[i].dir, sizeof ps[i].dir, root, leaf);
        rm_rf(ps[i].dir);
        if (pthread_create(&ps[i].tid, NULL, peer_main, &ps[i]) != 0)
            die("cannot start clone thread %d", i);
    }
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), last = start;
    pthread_barrier_wait(&go);
    int failed = 0, first = -1;
    for (int i = 0; i < REPL_PEERS; i++) {
        pthread_join(ps[i].tid, NULL);
        hist_add(h, ps[i].end_ns - start);
        last = ps[i].end_ns > last ? ps[i].end_ns : last;
        if (ps[i].rc < 0 && failed++ == 0)
            first = i;
    }
    char why[sizeof r->missing] = "";
    if (failed)
        snprintf(why, sizeof why, "%d of the %d clones failed, among them %.200s", failed,
                 REPL_PEERS, ps[first].error);
    bench_run run = {.ops = REPL_PEERS, .records = s->blocks * REPL_PEERS};
    run.bytes = run.records * REPL_RECORD_BYTES;
    run.seconds = (double)(last - start) / 1e9;
    run.other_cpu_s = cpu_other_s(&cpu);
    for (int i = 0; i < REPL_PEERS; i++) {
        if (!failed)
            check_replica(ps[i].dir, s);
        rm_rf(ps[i].dir);
    }
    settle(o->dir);
    if (failed) {
        clone_failed(r, why);
    } else {
        result_add_run(r, &run, h);
        snprintf(r->note, sizeof r->note,
                 "%d kl_clone calls at once, one thread each, released together, from one kl_serve "
                 "thread over 127.0.0.1; the time runs from their release to the last return; "
                 "latency is each clone's time from the release (the first back after %.3f s, the "
                 "last after %.3f s); fsync=never on every replica",
                 REPL_PEERS, (double)h->min_ns / 1e9, (double)h->max_ns / 1e9);
    }
    pthread_barrier_destroy(&go);
    free(ps);
    free(h);
}

/* hypercore's clone of a core of `blocks` blocks: one run of bench/hypercore_clone.mjs. */
static void clone_hypercore(const bench_opts *o, const char *root, uint64_t blocks,
                            bench_result *r) {
    if (r->missing[0])
        return; /* said once already */
    progress("%s: run %d", r->name, r->nruns + 1);
    char nblocks[32], rec[16], batch[16], work[4096], out[HC_OUT_CAP];
    snprintf(nblocks, sizeof nblocks, "%llu", (unsigned long long)blocks);
    snprintf(rec, sizeof rec, "%d", REPL_RECORD_BYTES);
    snprintf(batch, sizeof batch, "%d", REPL_BATCH);
    path_join(work, sizeof work, root, "hypercore");
    char *args[] = {"--blocks", nblocks, "--record-bytes", rec, "--batch", batch, "--work",
                    work,       NULL};
    bench_run run = {.ops = 1, .records = blocks, .bytes = blocks * REPL_RECORD_BYTES};
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    int rc = hc_peer_run(o, HC_CLONE_SCRIPT, args, HC_CLONE_TIMEOUT_S(blocks), out, sizeof out,
                         r->missing, sizeof r->missing);
    run.other_cpu_s = cpu_other_s(&cpu); /* the children's CPU is ours (cpu.c) */
    run.seconds = hc_json_number(out, "seconds");
    rm_rf(work); /* the script removes it, unless it was stopped */
    settle(o->dir);
    if (rc == 0 && (hc_json_number(out, "blocks") != (double)blocks || run.seconds <= 0))
        snprintf(r->missing, sizeof r->missing, "bench/%s printed no usable result: '%.120s'",
                 HC_CLONE_SCRIPT, out);
    if (r->missing[0]) {
        progress("%s: not measured: %s", r->name, r->missing);
        return;
    }
    char node[32], version[32];
    hc_json_string(out, "node", node, sizeof node);
    hc_json_string(out, "hypercore", version, sizeof version);
    snprintf(r->note, sizeof r->note,
             "hypercore %s on Node.js %s: one process appends the source core (%.1f s, not "
             "timed) and serves it on 127.0.0.1, a second one clones it; timed from opening the "
             "empty core (with connecting: %.3f s) until all blocks are stored; RocksDB storage "
             "on both, no sync per write; no per-call latency",
             version, node, hc_json_number(out, "build_seconds"),
             hc_json_number(out, "open_seconds"));
    result_add_run(r, &run, NULL);
}

void bench_replication(const bench_opts *o) {
    uint64_t big_blocks = o->quick ? 200000u : 1000000u;
    uint64_t small_blocks = o->quick ? 10000u : 100000u;
    char root[4096], kname[128], hname[128], sname[128], pname[128];
    name_clone(kname, sizeof kname, "kappalog", big_blocks, 0);
    name_clone(hname, sizeof hname, "hypercore", big_blocks, 0);
    name_clone(sname, sizeof sname, "kappalog", small_blocks, 1);
    name_clone(pname, sizeof pname, "kappalog", small_blocks, REPL_PEERS);
    int want_k = want_scenario(o, kname), want_h = want_scenario(o, hname);
    int want_s = want_scenario(o, sname), want_p = want_scenario(o, pname);
    if (!want_k && !want_h && !want_s && !want_p)
        return;
    raise_fd_limit();
    path_join(root, sizeof root, o->dir, "replication");
    rm_rf(root);
    if (mkdir_p(root) < 0)
        die("cannot create %s", root);
    bench_result *k = want_k ? clone_result("kappalog_clone", kname, big_blocks, 1) : NULL;
    bench_result *h = want_h ? clone_result("hypercore_clone", hname, big_blocks, 1) : NULL;
    bench_result *s = want_s ? clone_result("kappalog_clone", sname, small_blocks, 1) : NULL;
    bench_result *p =
        want_p ? clone_result("kappalog_clone_peers", pname, small_blocks, REPL_PEERS) : NULL;
    if (h && hc_peer_prepare(o, HC_CLONE_SCRIPT, h->missing, sizeof h->missing) < 0)
        progress("%s: not measured: %s", hname, h->missing);

    source big = {.blocks = big_blocks}, small = {.blocks = small_blocks};
    path_join(big.dir, sizeof big.dir, root, "source-big");
    path_join(small.dir, sizeof small.dir, root, "source-small");
    progress("replication: writing the source logs (%llu and %llu blocks)",
             (unsigned long long)big_blocks, (unsigned long long)small_blocks);
    build_source(o, &big);
    build_source(o, &small);
    settle(o->dir);
    server srv = {0};
    serve_start(&srv, &big, &small);

    for (int rep = 0; rep < o->reps; rep++) {
        if (k)
            clone_single(o, &srv, &big, root, k);
        if (h && rep == 0) /* minutes at full size: once, next to the first kappalog clone */
            clone_hypercore(o, root, big_blocks, h);
        if (s)
            clone_single(o, &srv, &small, root, s);
        if (p && rep == 0) /* as long: once, next to the first single clone */
            clone_many(o, &srv, &small, root, p);
    }
    serve_stop(&srv);

    if (h) {
        result_finish(h);
        result_print(h);
    }
    if (k) {
        single_note(k);
        result_ratio(k, hname, "x", TARGET_RATIO_MIN, TARGET_VS_HYPERCORE);
        result_print(k);
    }
    if (s) {
        single_note(s);
        result_print(s);
    }
    if (p) {
        result_finish(p);
        result_ratio(p, sname, "of", TARGET_RATIO_MIN, TARGET_PEERS);
        result_print(p);
    }
    if (!o->keep)
        rm_rf(root);
}
