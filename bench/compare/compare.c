/*
 * compare.c - `kappalog-bench compare`: kappalog and its peers on the same
 * workloads in one run, the ratios the issue sets as targets, and the raw
 * results as JSON (bench/json.c's format, group "compare").
 *
 *   kappalog-bench compare [--quick] [--out DIR] [--dir DIR] [--only PEERS]
 *                          [--match TEXT] [--reps N] [--io auto|uring|posix]
 *                          [--node PATH] [--hypercore-modules DIR]
 *
 * Workloads: 100-byte and 1 KiB records; appends in each peer's batches
 * under each durability class it has ("none", "interval ~1 s", "every
 * batch", see compare.h), each run time-bounded on a fresh store, and with
 * 4 and 16 producers; append-to-visible latency; then, per record size,
 * one read store per peer, its bytes on disk, read sequentially to the end
 * and by random point reads (the same indexes for every peer); last,
 * kappalog's log growing to 20 GiB (growth.c).
 *
 * Order: in every repetition, for each record size and durability class,
 * every peer runs its batches one after the other, so the runs a ratio
 * pairs (run i of kappalog with run i of the peer) are made within seconds
 * of each other. Records are made up front: one pool per record size and
 * batch, the same bytes (same seed) for every peer.
 *
 * Names: "compare PEER VERB rec=100B BATCHWORD=64 SETTINGWORD=SETTING" for
 * appends ("compare redis xadd rec=100B pipeline=64 appendfsync=everysec"),
 * "compare PEER VERB rec=100B" for reads. In the JSON, "kind" is
 * PEER_append, PEER_read or PEER_get, "params.fsync" the peer's own
 * durability setting, "params.batch" the records per op.
 *
 * What a reader would get wrong: a peer that cannot be run (not installed,
 * built without its library, failed to start) is never skipped: each of
 * its results is in the output as "not measured" with the reason, and so
 * are the ratios and targets that needed it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw's FTW_PHYS */
#endif
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compare.h"

#ifndef KL_BENCH_SOURCE_DIR
#define KL_BENCH_SOURCE_DIR "."
#endif

#define CMP_PEERS       "kappalog,ceiling,fio,sqlite,redis,nats,hypercore"
#define CMP_GET_INDEXES (1u << 18) /* a power of two: the loops mask */
#define CMP_SEED        4242

static const cmp_peer *const peers[] = {&cmp_peer_kappalog, &cmp_peer_ceiling, &cmp_peer_fio,
                                        &cmp_peer_sqlite,   &cmp_peer_redis,   &cmp_peer_nats,
                                        &cmp_peer_hypercore};
#define NPEERS (sizeof peers / sizeof *peers)

static const size_t rec_sizes[] = {100, 1024};

/* The targets: kappalog's figure over the peer's, 100-byte records. */
typedef struct cmp_target {
    cmp_op op;
    size_t record_bytes, batch; /* batch: appends only */
    cmp_durability dur;         /* appends only */
    const char *peer;
    double min_ratio;
} cmp_target;

static const cmp_target targets[] = {
    {CMP_APPEND, 100, 64, CMP_DUR_INTERVAL, "redis", 3.0},
    {CMP_APPEND, 100, 64, CMP_DUR_EVERY, "redis", 2.0},
    {CMP_APPEND, 100, 1000, CMP_DUR_INTERVAL, "sqlite", 2.0},
    {CMP_APPEND, 100, 1000, CMP_DUR_EVERY, "sqlite", 2.0},
    {CMP_GET, 100, 0, CMP_DUR_NONE, "redis", 3.0},
    {CMP_APPEND, 100, 1000, CMP_DUR_NONE, "hypercore", 12.0},
};

static bench_opts opts;
static const char *out_dir;
static int own_scratch;            /* the scratch dir is ours: removed at exit */
static char peer_why[NPEERS][256]; /* why a peer is not measured, "" if it is */
static char scratch_default[4096 + 32];
static char scratch_abs[8192 + 64];

static void usage(FILE *f) {
    fputs("usage: kappalog-bench compare [--quick] [--out DIR] [--dir DIR] [--only PEERS]\n"
          "                              [--match TEXT] [--reps N] [--io auto|uring|posix]\n"
          "                              [--node PATH] [--hypercore-modules DIR]\n"
          "  --quick        short runs and small stores (the whole run in under 2 minutes)\n"
          "  --out DIR      where the results go, as <UTC date>-<host>-compare.json\n"
          "                 (default: bench/results of the source tree)\n"
          "  --dir DIR      scratch dir for the logs, databases and servers (default\n"
          "                 OUT/compare-tmp); put it on the disk you want to measure\n"
          "  --only PEERS   run only these peers: " CMP_PEERS "\n"
          "  --match TEXT   run only the scenarios whose name contains TEXT (or one of\n"
          "                 several, comma-separated)\n"
          "  --reps N       repetitions of every scenario; figures are medians (default 3,\n"
          "                 1 with --quick)\n"
          "  --io KIND      I/O backend of kappalog's logs (default auto)\n"
          "  --node PATH    the Node.js that runs the hypercore peer (default: node on PATH)\n"
          "  --hypercore-modules DIR  a node_modules with hypercore 11.37.1 (default:\n"
          "                 $NODE_PATH, else BUILD/hc-js/node_modules, installed if missing)\n"
          "See bench/compare/README.md for what each scenario measures.\n",
          f);
}

static cmp_ctx ctx_defaults(int quick) {
    cmp_ctx c = {0};
    c.append_s = quick ? 0.5 : 3.0;
    c.get_s = quick ? 0.3 : 2.0;
    c.run_cap_bytes = quick ? (256ull << 20) : (1ull << 30);
    c.read_records = quick ? 100000 : 2000000;
    c.read_cap_bytes = quick ? (64ull << 20) : (512ull << 20);
    return c;
}

/* argv[0] is "compare". */
static void parse_args(bench_opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0)
            o->quick = 1;
    o->reps = o->quick ? 1 : 3;
    o->io = KL_IO_AUTO;
    o->io_name = "auto";
    o->segment_bytes = KL_DEFAULT_SEGMENT_BYTES;
    out_dir = KL_BENCH_SOURCE_DIR "/bench/results";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0)
            continue;
        else if (strcmp(a, "--out") == 0)
            out_dir = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--dir") == 0)
            o->dir = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--only") == 0)
            o->only = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--match") == 0)
            o->match = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--reps") == 0)
            o->reps = atoi(bench_arg_value(argc, argv, &i));
        else if (strcmp(a, "--io") == 0)
            bench_parse_io(o, bench_arg_value(argc, argv, &i));
        else if (strcmp(a, "--node") == 0)
            o->node = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--hypercore-modules") == 0)
            o->hypercore_modules = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            usage(stdout), exit(0);
        else
            usage(stderr), die("compare: unknown option '%s'", a);
    }
    if (o->reps < 1 || o->reps > BENCH_MAX_RUNS)
        die("--reps must be 1..%d", BENCH_MAX_RUNS);
    for (const char *p = o->only; p && *p;) {
        size_t len = strcspn(p, ",");
        char g[32];
        snprintf(g, sizeof g, "%.*s", (int)len, p);
        if (len == 0 || len >= sizeof g || !strstr("," CMP_PEERS ",", g))
            die("--only: '%s' is not one of " CMP_PEERS, g);
        p += len + (p[len] == ',');
    }
    if (!o->dir) {
        snprintf(scratch_default, sizeof scratch_default, "%s/compare-tmp", out_dir);
        o->dir = scratch_default;
    }
    /* absolute: a server runs in its own scratch dir and is told that dir by path (Redis's --dir,
       NATS's -sd); a relative one would name a dir under itself, which Redis refuses */
    if (o->dir[0] != '/') {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd))
            die("getcwd: %s", strerror(errno));
        if (snprintf(scratch_abs, sizeof scratch_abs, "%s/%s", cwd, o->dir) >=
            (int)sizeof scratch_abs)
            die("--dir %s: the path is too long", o->dir);
        o->dir = scratch_abs;
    }
    bench_save_cmdline(o, "kappalog-bench", argc, argv);
}

/* Only the names the peers create under the scratch dir, then the dir if it is empty. */
static void cleanup(void) {
    static const char *names[] = {"kappalog-append",      "kappalog-read",      "kappalog-probe",
                                  "kappalog-growth",      "ceiling-append.dat", "fio-append",
                                  "kappalog-growth-warm", "sqlite-append",      "sqlite-read",
                                  "redis-append",         "redis-read",         "hypercore-append",
                                  "hypercore-visible",    "hypercore-read",     "hypercore-files",
                                  "nats-append",          "nats-visible",       "nats-read"};
    if (!opts.dir)
        return;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[4096];
        path_join(path, sizeof path, opts.dir, names[i]);
        rm_rf(path);
    }
    if (own_scratch)
        rmdir(opts.dir);
}

/* ---- helpers for the peers (compare.h) ---- */

const kl_block *cmp_record(const cmp_case *k, uint64_t i) {
    const bench_pool *p = k->pool;
    return &pool_batch_blocks(p, (unsigned)(i / p->batch))[i % p->batch];
}

void cmp_scratch(const cmp_ctx *c, const char *name, char *out, size_t cap) {
    path_join(out, cap, c->o->dir, name);
    if (rm_rf(out) < 0)
        die("cannot remove %s", out);
}

void cmp_op_done(cmp_out *out, uint64_t *t, size_t records, size_t bytes) {
    uint64_t t1 = now_ns();
    hist_add(out->hist, t1 - *t);
    *t = t1;
    out->run.ops++;
    out->run.records += records;
    out->run.bytes += bytes;
}

int cmp_get_loop(const cmp_ctx *c, const cmp_case *k, cmp_read_fn read_one, void *arg,
                 cmp_out *out) {
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    int rc = 0;
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(c->get_s * 1e9);
    for (uint64_t i = 0; t < end; i++) {
        long n = read_one(arg, i, buf, k->record_bytes, out->why, sizeof out->why);
        if (n < 0) {
            rc = -1;
            break;
        }
        cmp_op_done(out, &t, 1, (size_t)n);
    }
    out->run.seconds = (double)(t - start) / 1e9;
    free(buf);
    return rc;
}

void cmp_sleep_until(uint64_t at_ns) {
    /* now_ns() reads CLOCK_MONOTONIC */
    struct timespec ts = {.tv_sec = (time_t)(at_ns / 1000000000u),
                          .tv_nsec = (long)(at_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* The paced writer of a visible run (cmp_visible_run); 0, or -1 with append_one's why. */
static int paced_write(const cmp_ctx *c, const cmp_case *k, uint64_t t0, uint64_t slots,
                       _Atomic uint64_t *start_ns, _Atomic uint64_t *written, uint64_t *late,
                       cmp_append_fn append_one, void *arg, char *why, size_t why_cap) {
    uint64_t pace_ns = (uint64_t)(k->pace_us * 1e3), end = t0 + (uint64_t)(c->append_s * 1e9);
    uint64_t slot = t0;
    for (uint64_t i = 0; i < slots; i++) {
        cmp_sleep_until(slot);
        uint64_t t = now_ns();
        if (t >= end)
            break;
        atomic_store_explicit(&start_ns[i], t, memory_order_release);
        if (append_one(arg, i, why, why_cap) < 0)
            return -1;
        atomic_store_explicit(written, i + 1, memory_order_release);
        slot += pace_ns;
        if (slot < now_ns()) {
            slot = now_ns();
            (*late)++;
        }
    }
    return 0;
}

int cmp_visible_run(const cmp_ctx *c, cmp_visible *v, void *(*reader)(void *), void *state,
                    cmp_append_fn append_one, void *writer, int server_pid, const char *things,
                    uint64_t *late, cmp_out *out) {
    const cmp_case *k = v->k;
    uint64_t slots = (uint64_t)(c->append_s * 1e6 / k->pace_us) + 2;
    *late = 0;
    v->start_ns = calloc(slots, sizeof *v->start_ns);
    if (!v->start_ns)
        die("out of memory");
    atomic_init(&v->written, 0);
    atomic_init(&v->done, 0);
    pthread_t th;
    if (pthread_create(&th, NULL, reader, state) != 0)
        die("pthread_create failed");
    cmp_cpu cpu;
    cmp_cpu_start(&cpu, server_pid);
    uint64_t t0 = now_ns();
    char wwhy[256] = "";
    int rc = paced_write(c, k, t0, slots, v->start_ns, &v->written, late, append_one, writer, wwhy,
                         sizeof wwhy);
    atomic_store_explicit(&v->done, 1, memory_order_release);
    pthread_join(th, NULL);
    cmp_cpu_stop(&cpu, out);
    uint64_t written = atomic_load(&v->written);
    if (rc == 0 && !v->why[0] && v->seen != written)
        snprintf(v->why, sizeof v->why, "the reader saw %llu %s of %llu written",
                 (unsigned long long)v->seen, things, (unsigned long long)written);
    if (rc < 0 || v->why[0]) {
        snprintf(out->why, sizeof out->why, "%s", rc < 0 ? wwhy : v->why);
        rc = -1;
    }
    out->run.records = out->run.ops = v->seen;
    out->run.bytes = v->seen * k->record_bytes;
    out->run.seconds = (double)((v->last_ns > t0 ? v->last_ns : now_ns()) - t0) / 1e9;
    free(v->start_ns);
    v->start_ns = NULL;
    return rc;
}

static uint64_t du_sum; /* nftw has no argument for its callback */

static int du_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)path;
    (void)type;
    (void)ftw;
    du_sum += (uint64_t)st->st_blocks * 512u;
    return 0;
}

uint64_t cmp_disk_bytes(const char *path) {
    du_sum = 0;
    if (nftw(path, du_one, 16, FTW_PHYS) != 0)
        return 0;
    return du_sum;
}

static cmp_out *out_new(void);
static void out_free(cmp_out *out);

typedef struct producer {
    pthread_t tid;
    int i, rc;
    uint64_t *end; /* set by the main thread between the two barrier waits */
    pthread_barrier_t *go;
    cmp_producer_fn fn;
    void *arg;
    cmp_out *out;
} producer;

static void *producer_main(void *v) {
    producer *w = v;
    pthread_barrier_wait(w->go); /* all started */
    pthread_barrier_wait(w->go); /* end is set */
    w->rc = w->fn(w->arg, w->i, *w->end, w->out);
    return NULL;
}

int cmp_run_producers(const cmp_case *k, double seconds, cmp_producer_fn fn, void *arg,
                      cmp_out *out) {
    int n = k->producers < 1 ? 1 : k->producers;
    producer *ws = calloc((size_t)n, sizeof *ws);
    pthread_barrier_t go;
    uint64_t end = 0;
    if (!ws || pthread_barrier_init(&go, NULL, (unsigned)n + 1) != 0)
        die("out of memory");
    for (int i = 0; i < n; i++) {
        ws[i] = (producer){.i = i, .end = &end, .go = &go, .fn = fn, .arg = arg, .out = out_new()};
        if (pthread_create(&ws[i].tid, NULL, producer_main, &ws[i]) != 0)
            die("pthread_create failed");
    }
    pthread_barrier_wait(&go);
    end = now_ns() + (uint64_t)(seconds * 1e9);
    pthread_barrier_wait(&go);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(ws[i].tid, NULL);
        cmp_out *o = ws[i].out;
        if (ws[i].rc < 0 && rc == 0) {
            rc = -1;
            snprintf(out->why, sizeof out->why, "producer %d: %.200s", i, o->why);
        }
        out->run.ops += o->run.ops;
        out->run.records += o->run.records;
        out->run.bytes += o->run.bytes;
        if (o->run.seconds > out->run.seconds)
            out->run.seconds = o->run.seconds;
        if (o->run.other_cpu_s > out->run.other_cpu_s)
            out->run.other_cpu_s = o->run.other_cpu_s;
        out->server_cpu_s += o->server_cpu_s;
        hist_merge(out->hist, o->hist);
        if (i == 0 && o->note[0])
            snprintf(out->note, sizeof out->note, "%s", o->note);
        out_free(o);
    }
    pthread_barrier_destroy(&go);
    free(ws);
    return rc;
}

/* ---- names and results ---- */

static void name_of(char *out, size_t cap, const cmp_peer *p, const cmp_case *k) {
    if (k->op == CMP_APPEND) {
        int n =
            snprintf(out, cap, "compare %s %s rec=%zuB %s=%zu %s=%s", p->name, p->append_verb,
                     k->record_bytes, p->batch_word, k->batch, p->setting_word, p->setting[k->dur]);
        if (k->producers > 1 && n > 0 && (size_t)n < cap)
            snprintf(out + n, cap - (size_t)n, " producers=%d", k->producers);
    } else if (k->op == CMP_VISIBLE) {
        snprintf(out, cap, "compare %s visible rec=%zuB %s=%s", p->name, k->record_bytes,
                 p->setting_word, p->setting[k->dur]);
    } else {
        snprintf(out, cap, "compare %s %s rec=%zuB", p->name,
                 k->op == CMP_READ ? p->read_verb : p->get_verb, k->record_bytes);
    }
}

static bench_result *result_of(const cmp_peer *p, const cmp_case *k) {
    static const char *const ops[] = {"append", "read", "get", "visible"};
    char name[128], kind[32];
    name_of(name, sizeof name, p, k);
    snprintf(kind, sizeof kind, "%s_%s", p->name, ops[k->op]);
    bench_result *r = result_get("compare", kind, name);
    r->record_bytes = k->record_bytes;
    r->batch = k->batch;
    r->threads = k->producers > 1 ? (uint64_t)k->producers : 1;
    static const char *const classes[CMP_DUR_N] = {"none", "interval", "every"};
    if (k->op == CMP_APPEND || k->op == CMP_VISIBLE) {
        snprintf(r->fsync, sizeof r->fsync, "%s", p->setting[k->dur]);
        snprintf(r->durability, sizeof r->durability, "%s", classes[k->dur]);
    }
    return r;
}

static int peer_index(const cmp_peer *p) {
    for (size_t i = 0; i < NPEERS; i++)
        if (peers[i] == p)
            return (int)i;
    return -1;
}

static int want_peer(const cmp_peer *p) {
    return want_group(&opts, p->name);
}

/* Take one run's out into r, or its failure. */
static void take(bench_result *r, const cmp_out *out, int rc) {
    if (rc < 0) {
        progress("%s: run failed: %s", r->name, out->why);
        if (r->nruns == 0)
            snprintf(r->missing, sizeof r->missing, "%s", out->why);
        else
            snprintf(r->note, sizeof r->note, "a run failed: %s", out->why);
        return;
    }
    r->missing[0] = '\0';
    if (out->note[0])
        snprintf(r->note, sizeof r->note, "%s", out->note);
    result_add_run(r, &out->run, out->hist);
}

static cmp_out *out_new(void) {
    cmp_out *out = calloc(1, sizeof *out);
    if (!out || !(out->hist = malloc(sizeof *out->hist)))
        die("out of memory");
    hist_reset(out->hist);
    return out;
}

static void out_free(cmp_out *out) {
    free(out->hist);
    free(out);
}

/* ---- the runs ---- */

/* Producers of the scaling runs: 100-byte records, the peer's first batch, every class. */
static const int producer_counts[] = {4, 16};

static void append_one(const cmp_ctx *c, const cmp_peer *p, size_t rec, size_t batch,
                       cmp_durability dur, int producers) {
    cmp_case k = {.op = CMP_APPEND,
                  .record_bytes = rec,
                  .batch = batch,
                  .dur = dur,
                  .producers = producers,
                  .setting = p->setting[dur]};
    char name[128];
    name_of(name, sizeof name, p, &k);
    if (!want_scenario(&opts, name))
        return;
    bench_result *r = result_of(p, &k);
    const char *why = peer_why[peer_index(p)];
    if (why[0]) {
        snprintf(r->missing, sizeof r->missing, "%.255s", why);
        return;
    }
    bench_pool pool;
    pool_init(&pool, rec, batch, CMP_SEED + rec * 7 + batch);
    k.pool = &pool;
    cmp_out *out = out_new();
    progress("%s: run %d", name, r->nruns + 1);
    take(r, out, p->append(c, &k, out));
    out_free(out);
    pool_free(&pool);
    settle(opts.dir);
}

static void appends(const cmp_ctx *c, size_t rec) {
    for (int dur = 0; dur < CMP_DUR_N; dur++)
        for (size_t i = 0; i < NPEERS; i++) {
            const cmp_peer *p = peers[i];
            if (!want_peer(p) || !p->append || !p->setting[dur])
                continue;
            for (size_t b = 0; b < CMP_MAX_BATCHES && p->batches[b]; b++)
                append_one(c, p, rec, p->batches[b], (cmp_durability)dur, 1);
            if (rec != 100 || !p->producers)
                continue;
            for (size_t n = 0; n < sizeof producer_counts / sizeof *producer_counts; n++)
                append_one(c, p, rec, p->batches[0], (cmp_durability)dur, producer_counts[n]);
        }
}

/*
 * Append-to-visible latency: 100-byte records, one every VISIBLE_PACE_US, in
 * the interval class (a peer without one: its first class).
 */
#define VISIBLE_PACE_US 1000.0

static void visibles(const cmp_ctx *c) {
    for (size_t i = 0; i < NPEERS; i++) {
        const cmp_peer *p = peers[i];
        /* the interval class, or else the first class the peer has */
        int dur = CMP_DUR_INTERVAL;
        for (int d = 0; !p->setting[dur] && d < CMP_DUR_N; d++)
            dur = d;
        if (!want_peer(p) || !p->visible || !p->setting[dur])
            continue;
        cmp_case k = {.op = CMP_VISIBLE,
                      .record_bytes = 100,
                      .batch = 1,
                      .dur = (cmp_durability)dur,
                      .producers = 1,
                      .pace_us = VISIBLE_PACE_US,
                      .setting = p->setting[dur]};
        char name[128];
        name_of(name, sizeof name, p, &k);
        if (!want_scenario(&opts, name))
            continue;
        bench_result *r = result_of(p, &k);
        if (peer_why[i][0]) {
            snprintf(r->missing, sizeof r->missing, "%.255s", peer_why[i]);
            continue;
        }
        bench_pool pool;
        pool_init(&pool, 100, 1, CMP_SEED + 99);
        k.pool = &pool;
        for (int rep = 0; rep < opts.reps; rep++) {
            cmp_out *out = out_new();
            progress("%s: run %d", name, rep + 1);
            take(r, out, p->visible(c, &k, out));
            out_free(out);
        }
        pool_free(&pool);
        settle(opts.dir);
    }
}

/* Read stores of every peer for this record size, each read by every repetition in turn. */
static void reads(const cmp_ctx *c, size_t rec) {
    uint64_t records = c->read_records;
    if (records > c->read_cap_bytes / rec)
        records = c->read_cap_bytes / rec;
    records -= records % CMP_LOAD_BATCH;
    bench_pool pool;
    pool_init(&pool, rec, CMP_LOAD_BATCH, CMP_SEED + rec);
    uint64_t *idx = malloc(CMP_GET_INDEXES * sizeof *idx), st = CMP_SEED + rec;
    uint64_t *idx_capped = malloc(CMP_GET_INDEXES * sizeof *idx_capped);
    if (!idx || !idx_capped)
        die("out of memory");
    for (unsigned i = 0; i < CMP_GET_INDEXES; i++)
        idx[i] = rng_next(&st) % records;
    cmp_case ks[NPEERS];
    int loaded[NPEERS] = {0};
    bench_result *rr[NPEERS] = {0}, *rg[NPEERS] = {0};
    for (size_t i = 0; i < NPEERS; i++) {
        const cmp_peer *p = peers[i];
        char rname[128], gname[128], why[256] = "";
        cmp_case *kp = &ks[i];
        *kp = (cmp_case){.record_bytes = rec,
                         .batch = CMP_LOAD_BATCH,
                         .pool = &pool,
                         .records = records,
                         .idx = idx,
                         .nidx = CMP_GET_INDEXES};
        if (p->read_records_max && p->read_records_max < records) {
            /* a slow peer's smaller store: the same draws, folded into it */
            kp->records = p->read_records_max - p->read_records_max % CMP_LOAD_BATCH;
            for (unsigned j = 0; j < CMP_GET_INDEXES; j++)
                idx_capped[j] = idx[j] % kp->records;
            kp->idx = idx_capped;
        }
        cmp_case k = *kp;
        if (!want_peer(p) || !p->load)
            continue;
        k.op = CMP_READ;
        name_of(rname, sizeof rname, p, &k);
        if (p->read && want_scenario(&opts, rname))
            rr[i] = result_of(p, &k);
        k.op = CMP_GET;
        name_of(gname, sizeof gname, p, &k);
        if (p->get && want_scenario(&opts, gname))
            rg[i] = result_of(p, &k);
        if (!rr[i] && !rg[i])
            continue;
        snprintf(why, sizeof why, "%.255s", peer_why[i]);
        if (!why[0]) {
            progress("compare %s: loading %llu records of %zu bytes (not timed)", p->name,
                     (unsigned long long)k.records, rec);
            if (p->load(c, &k, why, sizeof why) == 0)
                loaded[i] = 1;
            else if (p->unload)
                p->unload(c);
        }
        uint64_t disk = loaded[i] && p->storage ? p->storage(c) : 0;
        bench_result *both[2] = {rr[i], rg[i]};
        for (int j = 0; j < 2; j++) {
            if (!both[j])
                continue;
            both[j]->log_bytes = k.records * rec;
            both[j]->disk_bytes = disk;
            if (!loaded[i])
                snprintf(both[j]->missing, sizeof both[j]->missing, "%s", why);
        }
    }
    settle(opts.dir);
    for (int rep = 0; rep < opts.reps; rep++)
        for (size_t i = 0; i < NPEERS; i++) {
            if (!loaded[i])
                continue;
            const cmp_peer *p = peers[i];
            cmp_case k = ks[i];
            if (rr[i]) {
                k.op = CMP_READ;
                cmp_out *out = out_new();
                progress("%s: run %d", rr[i]->name, rep + 1);
                take(rr[i], out, p->read(c, &k, out));
                out_free(out);
            }
            if (rg[i]) {
                k.op = CMP_GET;
                cmp_out *out = out_new();
                progress("%s: run %d", rg[i]->name, rep + 1);
                take(rg[i], out, p->get(c, &k, out));
                out_free(out);
            }
        }
    for (size_t i = 0; i < NPEERS; i++)
        if (loaded[i])
            peers[i]->unload(c);
    free(idx);
    free(idx_capped);
    pool_free(&pool);
}

/* ---- ratios, printing, summary ---- */

static int has_batch(const cmp_peer *p, size_t batch) {
    for (size_t b = 0; b < CMP_MAX_BATCHES && p->batches[b]; b++)
        if (p->batches[b] == batch)
            return 1;
    return 0;
}

/* The target for kappalog's figure against peer p, or 0. */
static double target_for(const cmp_peer *p, const cmp_case *k) {
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        const cmp_target *t = &targets[i];
        if (t->op == k->op && t->record_bytes == k->record_bytes && strcmp(t->peer, p->name) == 0 &&
            (k->op != CMP_APPEND ||
             (t->batch == k->batch && t->dur == k->dur && k->producers == 1)))
            return t->min_ratio;
    }
    return 0;
}

/*
 * Each kappalog figure as a multiple of every peer's matching figure (same
 * op, record size, batch, durability class and producers; reads with
 * reads): the one with a target first (result_ratio), the others after
 * (result_also). Latencies (visible) have no ratio: the report sets them
 * side by side.
 */
static void one_ratio_set(bench_result *r, const cmp_case *k) {
    const cmp_peer *refs[NPEERS];
    double tg[NPEERS];
    size_t n = 0;
    for (size_t i = 0; i < NPEERS; i++) {
        const cmp_peer *p = peers[i];
        if (p == &cmp_peer_kappalog || (k->op == CMP_APPEND && !has_batch(p, k->batch)) ||
            (k->op == CMP_APPEND && !p->setting[k->dur]))
            continue;
        double t = target_for(p, k);
        size_t at = n++;
        if (t > 0) /* the targeted one first */
            for (; at > 0; at--) {
                refs[at] = refs[at - 1];
                tg[at] = tg[at - 1];
            }
        refs[at] = p;
        tg[at] = t;
    }
    int placed = 0;
    for (size_t i = 0; i < n && placed <= BENCH_MAX_ALSO; i++) {
        char ref[128];
        name_of(ref, sizeof ref, refs[i], k);
        if (!result_find(ref)) /* that peer was left out (--only, --match), or lacks it */
            continue;
        target_kind tk = tg[i] > 0 ? TARGET_RATIO_MIN : TARGET_NONE;
        if (placed++ == 0)
            result_ratio(r, ref, "x", tk, tg[i]);
        else
            result_also(r, ref, "x", tk, tg[i]);
    }
}

static void ratios(void) {
    for (size_t i = 0; i < result_count(); i++) {
        bench_result *r = result_at(i);
        if (strcmp(r->kind, "kappalog_append") != 0 && strcmp(r->kind, "kappalog_read") != 0 &&
            strcmp(r->kind, "kappalog_get") != 0) /* visible, growth and open have none */
            continue;
        cmp_case k = {.op = strcmp(r->kind, "kappalog_append") == 0 ? CMP_APPEND
                            : strcmp(r->kind, "kappalog_read") == 0 ? CMP_READ
                                                                    : CMP_GET,
                      .record_bytes = r->record_bytes,
                      .batch = r->batch,
                      .producers = (int)r->threads};
        for (int d = 0; d < CMP_DUR_N; d++)
            if (cmp_peer_kappalog.setting[d] && strcmp(cmp_peer_kappalog.setting[d], r->fsync) == 0)
                k.dur = (cmp_durability)d;
        one_ratio_set(r, &k);
    }
}

static const char *verb(const bench_result *r) {
    const char *op = strrchr(r->kind, '_');
    if (op && strcmp(op, "_read") == 0)
        return "records read";
    if (op && strcmp(op, "_get") == 0)
        return "records got";
    if (op && strcmp(op, "_visible") == 0)
        return "records seen";
    return "records written";
}

static void print_cmp(const char *what, const char *of, double ratio, target_kind tk, double target,
                      int pass) {
    if (ratio < 0) {
        const bench_result *ref = result_find(of);
        printf("    = n/a %s %s (%s%s)\n", what, of, ref && ref->missing[0] ? "not measured: " : "",
               ref && ref->missing[0] ? ref->missing : "not run");
        return;
    }
    printf("    = %.3f %s %s", ratio, what, of);
    if (tk == TARGET_RATIO_MIN)
        printf(" (target >= %.2f: %s)", target, pass ? "PASS" : "MISS");
    printf("\n");
}

static void print_result(const bench_result *r) {
    uint64_t records = 0;
    for (int i = 0; i < r->nruns; i++)
        records += r->runs[i].records;
    if (r->nruns == 0) {
        printf("%s: not measured: %s\n", r->name, r->missing[0] ? r->missing : "not run");
    } else if (strcmp(r->kind, "kappalog_open") == 0) {
        printf("%s: %.3f ms (open of a log of %.1f GiB of records)\n", r->name, r->value_ms,
               (double)r->log_bytes / (1 << 30));
    } else {
        printf("%s: %llu %s, %.1f records/sec (%.2f MB/sec)", r->name, (unsigned long long)records,
               verb(r), r->rate, r->rate * (double)r->record_bytes / (1024.0 * 1024.0));
        const bench_hist *h = r->hist;
        if (h->count)
            printf(", %.3g ms avg, %.3g ms p50, %.3g ms p99, %.3g ms p99.9, %.3g ms max latency",
                   hist_avg_ns(h) / 1e6, (double)hist_percentile_ns(h, 50) / 1e6,
                   (double)hist_percentile_ns(h, 99) / 1e6,
                   (double)hist_percentile_ns(h, 99.9) / 1e6, (double)h->max_ns / 1e6);
        printf(".");
        if (r->nruns > 1)
            printf(" [median of %d runs]", r->nruns);
        double other = 0, secs = 0;
        for (int i = 0; i < r->nruns; i++) {
            other += r->runs[i].other_cpu_s;
            secs += r->runs[i].seconds;
        }
        if (secs > 0 && other / secs > 0.1) /* as bench/result.c flags a disturbed result */
            printf(" [other processes used %.2f CPU-s in %.2f s]", other, secs);
        printf("\n");
    }
    if (r->ratio_what)
        print_cmp(r->ratio_what, r->ratio_of, r->ratio, r->tkind, r->target, r->pass);
    for (int i = 0; i < r->nalso; i++) {
        const bench_cmp *c = &r->also[i];
        print_cmp(c->what, c->of, c->ratio, c->tkind, c->target, c->pass);
    }
}

/* OUT/<UTC date>-<host>-compare.json */
static void json_path(char *out, size_t cap, const bench_machine *m) {
    char date[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    char host[64];
    snprintf(host, sizeof host, "%.63s", m->hostname[0] ? m->hostname : "host");
    for (char *p = host; *p; p++)
        if (*p == '/' || *p == ' ')
            *p = '_';
    snprintf(out, cap, "%s/%s-%s-compare.json", out_dir, date, host);
}

int bench_compare(int argc, char **argv) {
    parse_args(&opts, argc, argv);
    cmp_ctx c = ctx_defaults(opts.quick);
    c.o = &opts;
    if (mkdir_p(out_dir) < 0)
        die("cannot create %s", out_dir);
    own_scratch = access(opts.dir, F_OK) != 0;
    if (mkdir_p(opts.dir) < 0)
        die("cannot create %s", opts.dir);
    atexit(cleanup);
    /* the main benchmark's settings, as the JSON writes them */
    opts.sync_s = c.append_s;
    opts.get_s = c.get_s;
    opts.run_cap_bytes = c.run_cap_bytes;
    opts.read_records = c.read_records;
    bench_machine m;
    machine_probe(&m, opts.dir);
    char json[4200];
    json_path(json, sizeof json, &m);
    opts.json = json;
    bench_probe_backend(&opts, &m, "kappalog-probe");
    printf("kappalog-bench compare %s: %s, %ld cores, %s on %s (%s), io %s%s\n", kl_version(),
           m.cpu, m.cores, m.fs_type, m.device, opts.dir, m.io_backend,
           opts.quick ? ", quick" : "");
    for (size_t i = 0; i < NPEERS; i++) {
        if (!want_peer(peers[i]))
            continue;
        if (peers[i]->setup(&c, peer_why[i], sizeof peer_why[i]) < 0) {
            if (!peer_why[i][0])
                snprintf(peer_why[i], sizeof peer_why[i], "setup failed");
            progress("compare %s: not measured: %s", peers[i]->name, peer_why[i]);
        }
    }
    settle(opts.dir);
    uint64_t t0 = now_ns();
    for (int rep = 0; rep < opts.reps; rep++)
        for (size_t i = 0; i < sizeof rec_sizes / sizeof *rec_sizes; i++)
            appends(&c, rec_sizes[i]);
    visibles(&c);
    for (size_t i = 0; i < sizeof rec_sizes / sizeof *rec_sizes; i++)
        reads(&c, rec_sizes[i]);
    for (size_t i = 0; i < NPEERS; i++)
        if (want_peer(peers[i]) && !peer_why[i][0] && peers[i]->teardown)
            peers[i]->teardown(&c);
    cmp_growth(&c);
    ratios();
    printf("\n");
    for (size_t i = 0; i < result_count(); i++)
        print_result(result_at(i));
    results_summary();
    printf("compare took %.0f s\n", (double)(now_ns() - t0) / 1e9);
    machine_loadavg(m.loadavg_end, sizeof m.loadavg_end);
    if (json_write(opts.json, &opts, &m) < 0)
        die("cannot write %s", opts.json);
    printf("results: %s\n", opts.json);
    results_free();
    return 0;
}
