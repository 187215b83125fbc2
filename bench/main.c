/*
 * main.c - kappalog-bench: options, the order of the scenario groups, the
 * summary of targets, the JSON file and the clean-up of what it wrote.
 *
 *   kappalog-bench [--quick] [--dir DIR] [--json FILE] [--only NAME[,NAME]]
 *                  [--match TEXT] [--io auto|uring|posix] [--reps N]
 *                  [--segment-bytes N] [--keep] [--node PATH]
 *                  [--hypercore-modules DIR] [--hypercore-records N]
 *   kappalog-bench compare ...   (the peer comparison: bench/compare/compare.c)
 *
 * Groups run in this order: follow, then ceilings, hashing, hypercore,
 * append and verify (paired, run by run: append.c), concurrency, read and
 * get, open, views, replication. A ratio's reference runs in the same
 * repetition, next to it.
 *
 * What a reader would get wrong: every file the benchmark makes lives under
 * --dir, which must be on the disk being measured (the ceilings and the
 * logs share it); only the names it creates there are removed at exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define GROUPS                                                                                     \
    "ceilings,hashing,hypercore,append,verify,concurrency,read,get,open,follow,views,replication"

static bench_opts opts;

static void usage(FILE *f) {
    fputs("usage: kappalog-bench [--quick] [--dir DIR] [--json FILE] [--only NAME[,NAME]]\n"
          "                      [--match TEXT] [--io auto|uring|posix] [--reps N]\n"
          "                      [--segment-bytes N] [--keep] [--node PATH]\n"
          "                      [--hypercore-modules DIR] [--hypercore-records N]\n"
          "  --quick        small sizes and short runs (the whole run in about 2 minutes)\n"
          "  --dir DIR      where logs and ceiling files go (default ./kappalog-bench-tmp);\n"
          "                 put it on the disk you want to measure\n"
          "  --json FILE    write every result as JSON (default ./kappalog-bench.json)\n"
          "  --only LIST    run only these groups: " GROUPS "\n"
          "  --match TEXT   run only the scenarios whose name contains TEXT (or one of\n"
          "                 several, comma-separated)\n"
          "  --io KIND      I/O backend of the logs (default auto: io_uring, else posix)\n"
          "  --reps N       repetitions of each scenario; figures are medians (default 3,\n"
          "                 1 with --quick)\n"
          "  --segment-bytes N  segment size of every log (default 268435456, the engine's\n"
          "                 default); for experiments\n"
          "  --keep         keep the logs under DIR at exit (the open-time logs are then\n"
          "                 reused by the next run with the same sizes)\n"
          "  --node PATH    the Node.js that runs the hypercore peer (default: node on PATH)\n"
          "  --hypercore-modules DIR  a node_modules with hypercore 11.37.1 (default:\n"
          "                 $NODE_PATH, else BUILD/hc-js, installed there with npm ci)\n"
          "  --hypercore-records N  records the hypercore peer appends per run (default\n"
          "                 1000000, 200000 with --quick)\n"
          "kappalog-bench compare --help: kappalog against its peers (bench/compare)\n"
          "See bench/README.md for what each scenario measures.\n",
          f);
}

static void defaults(bench_opts *o) {
    o->dir = "kappalog-bench-tmp";
    o->json = "kappalog-bench.json";
    o->io = KL_IO_AUTO;
    o->io_name = "auto";
    o->segment_bytes = KL_DEFAULT_SEGMENT_BYTES;
    o->reps = o->quick ? 1 : 3;
    o->ceil_s = o->quick ? 0.5 : 2.0;
    o->sync_s = o->quick ? 1.0 : 3.0;
    o->never_s = o->quick ? 0.5 : 2.0;
    o->conc_s = o->quick ? 1.0 : 3.0;
    o->get_s = o->quick ? 0.5 : 2.0;
    o->run_cap_bytes = o->quick ? (512ull << 20) : (1ull << 30);
    o->read_records = o->quick ? 2000000 : 10000000;
    o->open_small_bytes = o->quick ? (20ull << 20) : (100ull << 20);
    o->open_big_bytes = o->quick ? (1ull << 30) : (5ull << 30);
    o->open_tail_bytes = o->quick ? (2ull << 20) : (8ull << 20);
    o->open_runs = o->quick ? 5 : 9;
    o->verify_bytes = o->run_cap_bytes;
    o->hypercore_records = o->quick ? 200000 : 1000000;
    o->node = "node";
}

static void parse_args(bench_opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) /* --quick first: it sets the defaults */
        if (strcmp(argv[i], "--quick") == 0)
            o->quick = 1;
    defaults(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0)
            continue;
        else if (strcmp(a, "--keep") == 0)
            o->keep = 1;
        else if (strcmp(a, "--dir") == 0)
            o->dir = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--json") == 0)
            o->json = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--only") == 0)
            o->only = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--match") == 0)
            o->match = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--io") == 0)
            bench_parse_io(o, bench_arg_value(argc, argv, &i));
        else if (strcmp(a, "--reps") == 0)
            o->reps = atoi(bench_arg_value(argc, argv, &i));
        else if (strcmp(a, "--segment-bytes") == 0)
            o->segment_bytes = strtoull(bench_arg_value(argc, argv, &i), NULL, 10);
        else if (strcmp(a, "--node") == 0)
            o->node = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--hypercore-modules") == 0)
            o->hypercore_modules = bench_arg_value(argc, argv, &i);
        else if (strcmp(a, "--hypercore-records") == 0)
            o->hypercore_records = strtoull(bench_arg_value(argc, argv, &i), NULL, 10);
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            usage(stdout), exit(0);
        else
            usage(stderr), die("unknown option '%s'", a);
    }
    if (o->segment_bytes < KL_MIN_SEGMENT_BYTES || o->segment_bytes > KL_MAX_SEGMENT_BYTES)
        die("--segment-bytes must be %u..%u", KL_MIN_SEGMENT_BYTES, KL_MAX_SEGMENT_BYTES);
    if (o->reps < 1 || o->reps > BENCH_MAX_RUNS)
        die("--reps must be 1..%d", BENCH_MAX_RUNS);
    if (o->hypercore_records < 1000 || o->hypercore_records % 1000 != 0)
        die("--hypercore-records must be a positive multiple of 1000 (whole batches)");
    for (const char *p = o->only; p && *p;) {
        size_t len = strcspn(p, ",");
        char g[32];
        snprintf(g, sizeof g, "%.*s", (int)len, p);
        if (len == 0 || !strstr("," GROUPS ",", g) || len >= sizeof g)
            die("--only: '%s' is not one of " GROUPS, g);
        p += len + (p[len] == ',');
    }
    bench_save_cmdline(o, NULL, argc, argv);
}

static void cleanup(void) {
    static const char *names[] = {"append-log",  "concurrency-log", "read-log",      "probe-log",
                                  "ceiling.dat", "hashcheck-log",   "hypercore.err", "replication"};
    if (!opts.dir)
        return;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (opts.keep &&
            (strcmp(names[i], "read-log") == 0 || strcmp(names[i], "replication") == 0))
            continue;
        char path[4096];
        path_join(path, sizeof path, opts.dir, names[i]);
        rm_rf(path);
    }
    if (!opts.keep)
        rmdir(opts.dir); /* only if empty: it may be the user's */
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "compare") == 0) /* its own options: compare/compare.c */
        return bench_compare(argc - 1, argv + 1);
    parse_args(&opts, argc, argv);
    if (mkdir_p(opts.dir) < 0)
        die("cannot create %s", opts.dir);
    atexit(cleanup);
    bench_machine m;
    machine_probe(&m, opts.dir);
    bench_probe_backend(&opts, &m, "probe-log");
    settle(opts.dir);
    printf("kappalog-bench %s: %s, %ld cores, %s on %s (%s), io %s%s\n", kl_version(), m.cpu,
           m.cores, m.fs_type, m.device, opts.dir, m.io_backend, opts.quick ? ", quick" : "");
    /* first: the latency tail must not measure the writeback of later groups' gigabytes */
    if (want_group(&opts, "follow"))
        bench_follow(&opts);
    if (want_group(&opts, "ceilings") || want_group(&opts, "append") ||
        want_group(&opts, "hashing") || want_group(&opts, "hypercore") ||
        want_group(&opts, "verify"))
        bench_append(&opts);
    if (want_group(&opts, "concurrency"))
        bench_concurrency(&opts);
    if (want_group(&opts, "read") || want_group(&opts, "get"))
        bench_reads(&opts);
    if (want_group(&opts, "open"))
        bench_open(&opts);
    if (want_group(&opts, "views"))
        bench_views(&opts);
    if (want_group(&opts, "replication"))
        bench_replication(&opts);
    results_summary();
    machine_loadavg(m.loadavg_end, sizeof m.loadavg_end);
    if (json_write(opts.json, &opts, &m) < 0)
        die("cannot write %s", opts.json);
    printf("results: %s\n", opts.json);
    results_free();
    return 0;
}
