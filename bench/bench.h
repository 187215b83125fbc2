/*
 * bench.h - what the files of kappalog-bench share: the options, the latency
 * histogram, the results table, the record pool, and one entry point per
 * scenario group. The benchmark uses only the public header kappalog.h.
 *
 * Units, always in the name: *_ns, *_s (seconds), *_bytes. A "record" is
 * one kappalog block; an "op" is one timed call (one append of a batch, one
 * write(2) of a batch, one get, one open).
 */
#ifndef KL_BENCH_H
#define KL_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "kappalog.h"

/* ---- options (main.c) ---- */

typedef struct bench_opts {
    int quick;              /* smaller sizes, shorter runs, one repetition */
    int keep;               /* keep the logs under dir at exit */
    const char *dir;        /* where the logs and ceiling files go */
    const char *json;       /* results file */
    const char *only;       /* comma list of groups, NULL = all */
    const char *match;      /* run only scenarios whose name contains this */
    kl_io_kind io;          /* backend of every log opened */
    const char *io_name;    /* "auto", "uring" or "posix" */
    int reps;               /* repetitions of every throughput scenario */
    double ceil_s;          /* duration of a no-sync ceiling run */
    double sync_s;          /* duration of a run that syncs (ceiling or always) */
    double never_s;         /* duration of an append run under never */
    double conc_s;          /* duration of a concurrency run */
    double get_s;           /* duration of a random get run */
    uint64_t run_cap_bytes; /* no run writes more than this */
    uint64_t segment_bytes; /* segment size of the logs appended to */
    uint64_t read_records;  /* records in the read log */
    uint64_t open_small_bytes, open_big_bytes, open_tail_bytes;
    int open_runs;                 /* timed opens of each log */
    uint64_t verify_bytes;         /* payload bytes of the log that verify checks */
    uint64_t hypercore_records;    /* records the JavaScript peer appends per run */
    const char *hypercore_modules; /* a node_modules holding hypercore, or NULL */
    const char *node;              /* the Node.js binary (default "node", from PATH) */
    char cmdline[1024];
} bench_opts;

/* ---- latency histogram (hist.c): log-linear, no allocation per op ---- */

#define HIST_SUB_BITS 5 /* 32 buckets per power of two: at most ~3% error */
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_SUB)

typedef struct bench_hist {
    uint64_t count, sum_ns, min_ns, max_ns;
    uint64_t bucket[HIST_BUCKETS];
} bench_hist;

void hist_reset(bench_hist *h);
void hist_add(bench_hist *h, uint64_t ns);
void hist_merge(bench_hist *dst, const bench_hist *src);
uint64_t hist_percentile_ns(const bench_hist *h, double pct);
double hist_avg_ns(const bench_hist *h);
void hist_over(const bench_hist *h, uint64_t ns, uint64_t *count, double *total_ns);

/* ---- results (result.c) ---- */

typedef enum target_kind {
    TARGET_NONE = 0,
    TARGET_RATIO_MIN, /* ratio >= target */
    TARGET_RATIO_MAX, /* ratio <= target */
    TARGET_RATE_MIN,  /* median rate >= target (per second) */
    TARGET_P99_MAX_US /* 99th percentile latency <= target (microseconds) */
} target_kind;

#define BENCH_MAX_RUNS 32

/*
 * One comparison of a result with a reference result of the same run:
 * ratio = this / reference (see result_ratio), with a target and verdict.
 */
typedef struct bench_cmp {
    char of[128];     /* the reference's name */
    const char *what; /* how the ratio reads: "of", "x" */
    double ratio;     /* < 0 if not computed */
    int paired;       /* median of run-by-run ratios (else ratio of the medians) */
    target_kind tkind;
    double target;
    int has_verdict, pass;
} bench_cmp;

/* Further comparisons of one result (result_also): compare has 6 peers. */
#define BENCH_MAX_ALSO 6

typedef struct bench_run {
    uint64_t ops, records, bytes;
    double seconds;
    double other_cpu_s; /* CPU used by other processes meanwhile (util.c, cpu_other_s) */
} bench_run;

typedef struct bench_result {
    char name[128]; /* "append rec=100B batch=1000 fsync=never" */
    char group[24]; /* ceilings, append, concurrency, read, get, open */
    char kind[32];  /* e.g. "write_nosync", "kappalog_append", "open_close" */
    uint64_t record_bytes, batch, threads, write_bytes, log_bytes;
    uint64_t disk_bytes; /* compare reads: the store's bytes on disk (0: not known) */
    char fsync[16];      /* never / always / "" */
    char durability[12]; /* compare: the class of fsync, "none", "interval", "every" ("" else) */
    int nruns;
    bench_run runs[BENCH_MAX_RUNS];
    bench_hist *hist; /* latency per op, merged over the runs */
    double rate;      /* median records (or ops) per second over the runs */
    double value_ms;  /* open: the median time of one open + close */
    char ratio_of[128];
    const char *ratio_what; /* how the ratio reads, "of write(2) no-sync ceiling" */
    double ratio;           /* < 0 if not computed */
    int ratio_paired;       /* median of run-by-run ratios (else ratio of the medians) */
    int unpaired; /* its runs were not made next to its references' (ratio of the medians) */
    target_kind tkind;
    double target;
    int has_verdict, pass;
    int nalso;
    bench_cmp also[BENCH_MAX_ALSO]; /* the same figure against further references */
    char missing[256];              /* why it was not measured ("" if it was) */
    char note[512];
} bench_result;

bench_result *result_get(const char *group, const char *kind, const char *name);
bench_result *result_find(const char *name);
void result_add_run(bench_result *r, const bench_run *run, const bench_hist *h);
void result_finish(bench_result *r);
void result_ratio(bench_result *r, const char *ref_name, const char *what, target_kind tk,
                  double target);
/* Also compare r with ref_name (a second or third reference; printed under the first). */
void result_also(bench_result *r, const char *ref_name, const char *what, target_kind tk,
                 double target);
void result_target(bench_result *r, target_kind tk, double target);
void result_print(const bench_result *r);
size_t result_count(void);
bench_result *result_at(size_t i);
void results_free(void);
/* Every target of the run, one line each (PASS, MISS or n/a with the reason), and the counts. */
void results_summary(void);

/* ---- machine facts and JSON (machine.c, json.c) ---- */

typedef struct bench_machine {
    char hostname[256], kernel[512], cpu[256], fs_type[64], device[256], mount_point[1024];
    long cores;
    uint64_t ram_bytes, disk_free_bytes;
    char date[64], source_commit[128], io_backend[32];
    char loadavg_start[64], loadavg_end[64]; /* /proc/loadavg before and after the run */
    char mount_options[512], journal[16], write_cache[32];
    double timer_overhead_ns;
} bench_machine;

void machine_probe(bench_machine *m, const char *dir);
void machine_loadavg(char *out, size_t cap);
int json_write(const char *path, const bench_opts *o, const bench_machine *m);

/* ---- shared helpers (util.c) ---- */

uint64_t now_ns(void);
double timer_overhead_ns(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void die_kl(const char *what, int rc);
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int path_join(char *out, size_t cap, const char *a, const char *b);
int rm_rf(const char *path);
int mkdir_p(const char *path);
uint64_t disk_free_bytes(const char *dir);
/* A /proc/meminfo field ("MemTotal", "MemFree", ...) in bytes; 0 if unreadable. */
uint64_t meminfo_bytes(const char *key);
void settle(const char *dir);
void sleep_seconds(double s); /* the whole of it, through signals */

/* CPU used by other processes during a run (cpu.c). */
typedef struct cpu_mark {
    double busy_s, self_s, kthreads_s, steal_s;
} cpu_mark;

void cpu_mark_now(cpu_mark *m);
double cpu_other_s(const cpu_mark *start);
/* Fields of /proc/PID/stat: flags, utime and stime (ticks). 0, or -1 if unreadable. */
int proc_stat(const char *pid, unsigned long *flags, unsigned long long *utime_ticks,
              unsigned long long *stime_ticks);
uint64_t rng_next(uint64_t *state);
int want_group(const bench_opts *o, const char *group);
int want_scenario(const bench_opts *o, const char *name);
void fmt_bytes(char *out, size_t cap, uint64_t bytes);
/* Command lines: the value after option argv[*i] (or die), --io's value, the line for the JSON. */
const char *bench_arg_value(int argc, char **argv, int *i);
void bench_parse_io(bench_opts *o, const char *v);
void bench_save_cmdline(bench_opts *o, const char *prefix, int argc, char **argv);
/* Open and remove a scratch log `name` under o->dir: the directory works; m gets its backend. */
void bench_probe_backend(const bench_opts *o, bench_machine *m, const char *name);

/*
 * The records: one pool of pseudo-random bytes made up front, and for each
 * of a few variants a ready kl_block array of `batch` consecutive records,
 * so the timed loop only cycles through prepared batches. Variant v's bytes
 * are contiguous, so the ceiling loops write exactly the same bytes.
 */
#define POOL_VARIANTS 8

typedef struct bench_pool {
    uint8_t *bytes;
    size_t record_bytes, batch;
    kl_block *blocks; /* POOL_VARIANTS * batch */
} bench_pool;

void pool_init(bench_pool *p, size_t record_bytes, size_t batch, uint64_t seed);
void pool_free(bench_pool *p);
const uint8_t *pool_batch_bytes(const bench_pool *p, unsigned variant);
const kl_block *pool_batch_blocks(const bench_pool *p, unsigned variant);

/* Create a fresh log at path (removing what was there) and open it. */
kl_log *bench_log_fresh(const bench_opts *o, const char *path, kl_fsync_mode mode);
kl_log *bench_log_open(const bench_opts *o, const char *path, kl_fsync_mode mode);

/* ---- scenario groups ---- */

void ceiling_one(const bench_opts *o, size_t record_bytes, size_t batch, int sync);
/*
 * The ceilings' timed loop (ceiling.c), also compare's ceiling peer: a fresh
 * file at path, one write(2) of write_bytes (<= a pool batch) per op from
 * the pool's batches in turn, fdatasync after each if sync, one clock read
 * per op into h; until `seconds` have passed or cap_bytes are written; the
 * file removed. run is set; 0, or -1 and why (the run up to the failure).
 */
int ceiling_write_file(const char *path, const bench_pool *p, size_t write_bytes, int sync,
                       double seconds, uint64_t cap_bytes, bench_run *run, bench_hist *h, char *why,
                       size_t why_cap);
void ceiling_reference(const bench_opts *o); /* 100 B records in 64 KiB writes */
/* The system calls and bytes of kappalog's commit under never, without its work. */
void ceiling_pattern(const bench_opts *o, size_t record_bytes, size_t batch);
void name_pattern(char *out, size_t cap, size_t record_bytes, size_t batch);
void ceilings_print(void);
void bench_append(const bench_opts *o); /* the ceilings and the appends, paired */
void bench_concurrency(const bench_opts *o);
/*
 * n threads call `append` (one single record of the pool, 0 or -1 to stop)
 * as fast as it returns, for o->conc_s: their total and latencies into run
 * and h (concurrency.c; group.c's ceiling uses it too).
 */
typedef int (*conc_append_fn)(void *target, const bench_pool *p, unsigned variant);
void conc_threads(const bench_opts *o, const bench_pool *p, int n, conc_append_fn append,
                  void *target, bench_run *run, bench_hist *h);
/* The group commit ceiling at this many threads (group.c), or NULL if not wanted. */
bench_result *ceiling_group(const bench_opts *o, const bench_pool *p, int threads);
void name_ceiling_group(char *out, size_t cap, int threads, size_t record_bytes);
void bench_reads(const bench_opts *o); /* sequential read and random get */
void bench_open(const bench_opts *o);
void bench_follow(const bench_opts *o);      /* append-to-visible latency of followers */
void bench_views(const bench_opts *o);       /* count view build rate, against SQLite */
void bench_replication(const bench_opts *o); /* kl_clone from kl_serve, against hypercore */
/* `kappalog-bench compare ...` (bench/compare/compare.c): argv[0] is "compare". */
int bench_compare(int argc, char **argv);

/*
 * The Hypercore tree's cost (hashing.c, hypercore.c, verify.c): 100-byte
 * records in batches of 1000, the batch of the append they are compared with.
 */
#define HASH_RECORD_BYTES 100
#define HASH_BATCH        1000
void name_hashing(char *out, size_t cap);
void name_hypercore(char *out, size_t cap);
void hashing_check(const bench_opts *o); /* the ceiling's hashes are kappalog's, or die */
void hashing_ceiling(const bench_opts *o);
void hypercore_prepare(const bench_opts *o); /* find or install hypercore (not timed) */
void hypercore_run(const bench_opts *o);
/*
 * The JavaScript peers (hypercore.c): bench/SCRIPT run by Node.js with
 * hypercore 11.37.1, printing one JSON line. 0, or -1 and why not.
 */
int hc_peer_prepare(const bench_opts *o, const char *script, char *why, size_t cap);
int hc_peer_run(const bench_opts *o, const char *script, char *const args[], double timeout_s,
                char *out, size_t cap, char *why, size_t why_cap);
double hc_json_number(const char *line, const char *key);
void hc_json_string(const char *line, const char *key, char *out, size_t cap);
void verify_prepare(const bench_opts *o); /* build or reuse the verify log (not timed) */
void verify_run(const bench_opts *o);
void verify_finish(const bench_opts *o); /* its ratio, its line, its log removed */

/* The names the ratios refer to. */
void name_ceiling(char *out, size_t cap, int sync, size_t record_bytes, size_t batch);
void name_ceiling_bytes(char *out, size_t cap, size_t record_bytes, size_t write_bytes);
void name_append(char *out, size_t cap, size_t record_bytes, size_t batch, const char *fsync);

#endif
