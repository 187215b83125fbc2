/*
 * peer_hypercore.c - hypercore 11.37.1 as a peer of the compare run,
 * through Node.js: every call runs bench/hypercore_compare.mjs once, in
 * one of its modes (append, visible, load, read, get), with
 * hc_peer_prepare / hc_peer_run of bench/hypercore.c (Node and the package
 * found, or installed, the same way as for the main benchmark's hypercore
 * group). The records are the C pool's bytes, written to a file the script
 * reads before its clock starts; its per-op latencies come back in a file
 * of float64 nanoseconds, added to the run's histogram here.
 *
 * Durability: one class only, "default" (CMP_DUR_NONE). hypercore and
 * hypercore-storage have no sync option; rocksdb-native 3.18.1 passes no
 * write options (binding.cc: rocksdb_write(..., nullptr, ...)) and
 * librocksdb writes every batch with a default-constructed WriteOptions
 * (sync = false): the WAL is written, never fsynced per append.
 *
 * The read store lives across calls on disk: load writes the core (and
 * checks CMP_CHECKS point reads byte for byte, then times hypercore's own
 * re-hash of it, Core.audit), read and get open it again in a new Node
 * process (opening not timed). append and visible make and remove their
 * own cores.
 *
 * What a reader would get wrong: the figures time the script's loops
 * only, not starting Node, opening or closing the core (in the notes); and
 * the visible reader is a replica in another thread of the same Node
 * process, replicating over TCP on 127.0.0.1, not a second session of the
 * writer's core (which would only time an in-process event).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compare.h"

#define HC_COMPARE_SCRIPT "hypercore_compare.mjs"
#define HC_LINE_CAP       4096 /* the script prints one short JSON line */
#define HC_LAT_CHUNK      4096 /* latencies read back this many at a time */
/* A run past this is stopped: startup, 3 x its seconds, 1 ms a record (~10 x the slowest read). */
#define HC_TIMEOUT_S(seconds, records) (60.0 + 3.0 * (seconds) + (double)(records) / 1000.0)

static bench_opts node_opts; /* the run's options with the Node binary named */
static char files_dir[4096]; /* pool, indexes, latencies */
static char read_dir[4096];  /* the loaded core */
static char read_note[200];  /* the load's re-hash figures, for the read's note */

/* compare's options name no Node binary: "node" from PATH, as the main benchmark's default. */
static const bench_opts *opts_of(const cmp_ctx *c) {
    node_opts = *c->o;
    if (!node_opts.node)
        node_opts.node = "node";
    return &node_opts;
}

static int write_file(const char *path, const void *data, size_t n, char *why, size_t cap) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        snprintf(why, cap, "cannot write %.200s: %s", path, strerror(errno));
    return ok ? 0 : -1;
}

/* The pool's bytes (all its variants, back to back) into files_dir/name. */
static int write_pool(const bench_pool *p, const char *name, char *path, size_t pcap, char *why,
                      size_t cap) {
    path_join(path, pcap, files_dir, name);
    return write_file(path, pool_batch_bytes(p, 0), POOL_VARIANTS * p->batch * p->record_bytes, why,
                      cap);
}

/* The random indexes, uint64 little-endian, into files_dir/idx.bin. */
static int write_idx(const cmp_case *k, char *path, size_t pcap, char *why, size_t cap) {
    path_join(path, pcap, files_dir, "idx.bin");
    uint8_t *b = malloc(k->nidx * 8);
    if (!b)
        die("out of memory");
    for (size_t i = 0; i < k->nidx; i++)
        for (int j = 0; j < 8; j++)
            b[i * 8 + (size_t)j] = (uint8_t)(k->idx[i] >> (8 * j));
    int rc = write_file(path, b, k->nidx * 8, why, cap);
    free(b);
    return rc;
}

/* The latencies the script wrote (float64 ns) into out->hist: exactly `ops` of them. */
static int take_latencies(const char *path, uint64_t ops, cmp_out *out) {
    FILE *f = fopen(path, "rb");
    uint64_t n = 0;
    double ns[HC_LAT_CHUNK];
    size_t got;
    if (!f) {
        snprintf(out->why, sizeof out->why, "the script wrote no latencies to %.200s", path);
        return -1;
    }
    while ((got = fread(ns, sizeof *ns, HC_LAT_CHUNK, f)) > 0)
        for (size_t i = 0; i < got; i++, n++)
            hist_add(out->hist, ns[i] > 0 ? (uint64_t)ns[i] : 0);
    fclose(f);
    unlink(path);
    if (n != ops) {
        snprintf(out->why, sizeof out->why, "the script wrote %llu latencies for %llu ops",
                 (unsigned long long)n, (unsigned long long)ops);
        return -1;
    }
    return 0;
}

/*
 * bench/hypercore_compare.mjs MODE with args (NULL-terminated): its line
 * into line, its counts into out->run (and its latencies into out->hist
 * if lat is not NULL). 0, or -1 and why into out->why.
 */
static int run_mode(const cmp_ctx *c, char *const args[], const char *lat, double timeout_s,
                    char *line, size_t cap, cmp_out *out) {
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    if (hc_peer_run(opts_of(c), HC_COMPARE_SCRIPT, args, timeout_s, line, cap, out->why,
                    sizeof out->why) < 0)
        return -1;
    out->run.other_cpu_s = cpu_other_s(&cpu); /* the child's CPU is ours (cpu.c) */
    double ops = hc_json_number(line, "ops"), records = hc_json_number(line, "records");
    double bytes = hc_json_number(line, "bytes"), secs = hc_json_number(line, "seconds");
    if (ops < 0 || records < 0 || bytes < 0 || secs < 0) {
        snprintf(out->why, sizeof out->why, "bench/%s printed no usable result: '%.120s'",
                 HC_COMPARE_SCRIPT, line);
        return -1;
    }
    out->run.ops = (uint64_t)ops;
    out->run.records = (uint64_t)records;
    out->run.bytes = (uint64_t)bytes;
    out->run.seconds = secs;
    return lat ? take_latencies(lat, out->run.ops, out) : 0;
}

static int hc_setup(const cmp_ctx *c, char *why, size_t cap) {
    if (hc_peer_prepare(opts_of(c), HC_COMPARE_SCRIPT, why, cap) < 0)
        return -1;
    cmp_scratch(c, "hypercore-files", files_dir, sizeof files_dir);
    if (mkdir_p(files_dir) < 0) {
        snprintf(why, cap, "cannot create %.200s: %s", files_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int hc_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char dir[4096], pool[4200], lat[4200], line[HC_LINE_CAP], node[32];
    char rec[24], batch[24], secs[32], capb[32];
    cmp_scratch(c, "hypercore-append", dir, sizeof dir);
    if (write_pool(k->pool, "pool-append.bin", pool, sizeof pool, out->why, sizeof out->why) < 0)
        return -1;
    path_join(lat, sizeof lat, files_dir, "lat-append.bin");
    snprintf(rec, sizeof rec, "%zu", k->record_bytes);
    snprintf(batch, sizeof batch, "%zu", k->batch);
    snprintf(secs, sizeof secs, "%.3f", c->append_s);
    snprintf(capb, sizeof capb, "%llu", (unsigned long long)c->run_cap_bytes);
    char *args[] = {"append", "--dir",   dir,   "--pool",    pool, "--record-bytes",
                    rec,      "--batch", batch, "--seconds", secs, "--cap-bytes",
                    capb,     "--lat",   lat,   NULL};
    int rc = run_mode(c, args, lat, HC_TIMEOUT_S(c->append_s, 0), line, sizeof line, out);
    rm_rf(dir);
    if (rc < 0)
        return -1;
    hc_json_string(line, "node", node, sizeof node);
    snprintf(out->note, sizeof out->note,
             "hypercore 11.37.1 on Node.js %s: one await core.append(array of %zu) per op on a "
             "fresh default core (Merkle tree, an Ed25519 signature per append, RocksDB "
             "storage); RocksDB writes with default WriteOptions (sync=false): never fsynced; "
             "the C pool's bytes; Node start and close not timed (close %.3f s)",
             node, k->batch, hc_json_number(line, "close_seconds"));
    return 0;
}

static int hc_visible(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char dir[4096], pool[4200], lat[4200], line[HC_LINE_CAP], rec[24], secs[32], pace[32];
    cmp_scratch(c, "hypercore-visible", dir, sizeof dir);
    if (write_pool(k->pool, "pool-visible.bin", pool, sizeof pool, out->why, sizeof out->why) < 0)
        return -1;
    path_join(lat, sizeof lat, files_dir, "lat-visible.bin");
    snprintf(rec, sizeof rec, "%zu", k->record_bytes);
    snprintf(secs, sizeof secs, "%.3f", c->append_s);
    snprintf(pace, sizeof pace, "%.1f", k->pace_us);
    char *args[] = {"visible", "--dir",   dir, "--pool",    pool, "--record-bytes",
                    rec,       "--batch", "1", "--seconds", secs, "--pace-us",
                    pace,      "--lat",   lat, NULL};
    int rc = run_mode(c, args, lat, HC_TIMEOUT_S(c->append_s, 0), line, sizeof line, out);
    rm_rf(dir);
    if (rc < 0)
        return -1;
    snprintf(out->note, sizeof out->note,
             "hypercore 11.37.1: the writer core appends one record every %.0f us; the reader is "
             "a replica in a worker thread of the same Node process, replicating over TCP on "
             "127.0.0.1 (no Nagle), downloading live and reading with a live createReadStream; "
             "latency = block read by the replica - append started (one warm-up record "
             "before the clock); writes never fsynced (RocksDB default WriteOptions)",
             k->pace_us);
    return 0;
}

static int hc_load(const cmp_ctx *c, const cmp_case *k, char *why, size_t cap) {
    char pool[4200], idx[4200], line[HC_LINE_CAP], rec[24], batch[24], records[32], checks[24];
    cmp_scratch(c, "hypercore-read", read_dir, sizeof read_dir);
    if (write_pool(k->pool, "pool-read.bin", pool, sizeof pool, why, cap) < 0 ||
        write_idx(k, idx, sizeof idx, why, cap) < 0)
        return -1;
    snprintf(rec, sizeof rec, "%zu", k->record_bytes);
    snprintf(batch, sizeof batch, "%zu", k->pool->batch);
    snprintf(records, sizeof records, "%llu", (unsigned long long)k->records);
    snprintf(checks, sizeof checks, "%u", CMP_CHECKS);
    char *args[] = {"load", "--dir",    read_dir, "--pool",    pool,    "--record-bytes",
                    rec,    "--batch",  batch,    "--records", records, "--idx",
                    idx,    "--checks", checks,   NULL};
    cmp_out *out = calloc(1, sizeof *out);
    if (!out)
        die("out of memory");
    int rc = run_mode(c, args, NULL, HC_TIMEOUT_S(0, 2 * k->records), line, sizeof line, out);
    if (rc < 0)
        snprintf(why, cap, "%s", out->why);
    else if (out->run.records != k->records) {
        snprintf(why, cap, "the script loaded %llu records of %llu",
                 (unsigned long long)out->run.records, (unsigned long long)k->records);
        rc = -1;
    }
    free(out);
    if (rc < 0)
        return -1;
    double audit_s = hc_json_number(line, "audit_seconds");
    snprintf(read_note, sizeof read_note,
             "re-hash of the loaded core (Core.audit dryRun, internal API: %.0f blocks and %.0f "
             "tree nodes hashed and compared): %.3f s, %.0f blocks/s",
             hc_json_number(line, "audit_blocks"), hc_json_number(line, "audit_tree_nodes"),
             audit_s, audit_s > 0 ? (double)k->records / audit_s : 0.0);
    progress("compare hypercore: loaded in %.1f s, %s", hc_json_number(line, "load_seconds"),
             read_note);
    return 0;
}

static uint64_t hc_storage(const cmp_ctx *c) {
    (void)c;
    return cmp_disk_bytes(read_dir);
}

static int hc_read(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char pool[4200], line[HC_LINE_CAP], rec[24], batch[24], records[32];
    path_join(pool, sizeof pool, files_dir, "pool-read.bin");
    snprintf(rec, sizeof rec, "%zu", k->record_bytes);
    snprintf(batch, sizeof batch, "%zu", k->pool->batch);
    snprintf(records, sizeof records, "%llu", (unsigned long long)k->records);
    char *args[] = {"read", "--dir",   read_dir, "--pool",    pool,    "--record-bytes",
                    rec,    "--batch", batch,    "--records", records, NULL};
    if (run_mode(c, args, NULL, HC_TIMEOUT_S(0, k->records), line, sizeof line, out) < 0)
        return -1;
    if (out->run.records != k->records) {
        snprintf(out->why, sizeof out->why, "read %llu blocks of %llu",
                 (unsigned long long)out->run.records, (unsigned long long)k->records);
        return -1;
    }
    snprintf(out->note, sizeof out->note,
             "hypercore 11.37.1: createReadStream over every block (an awaited core.get per "
             "block), opened fresh (%.3f s, not timed), page-cached (sink %.0f); %s",
             hc_json_number(line, "open_seconds"), hc_json_number(line, "sink"), read_note);
    return 0;
}

static int hc_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char pool[4200], idx[4200], lat[4200], line[HC_LINE_CAP], rec[24], batch[24], secs[32];
    path_join(pool, sizeof pool, files_dir, "pool-read.bin");
    path_join(idx, sizeof idx, files_dir, "idx.bin");
    path_join(lat, sizeof lat, files_dir, "lat-get.bin");
    snprintf(rec, sizeof rec, "%zu", k->record_bytes);
    snprintf(batch, sizeof batch, "%zu", k->pool->batch);
    snprintf(secs, sizeof secs, "%.3f", c->get_s);
    char *args[] = {"get", "--dir", read_dir, "--pool",    pool, "--record-bytes", rec, "--batch",
                    batch, "--idx", idx,      "--seconds", secs, "--lat",          lat, NULL};
    if (run_mode(c, args, lat, HC_TIMEOUT_S(c->get_s, 0), line, sizeof line, out) < 0)
        return -1;
    snprintf(out->note, sizeof out->note,
             "hypercore 11.37.1: an awaited core.get(i) of uniformly random indexes, one at a "
             "time, opened fresh (%.3f s, not timed), page-cached",
             hc_json_number(line, "open_seconds"));
    return 0;
}

static void hc_unload(const cmp_ctx *c) {
    (void)c;
    if (read_dir[0])
        rm_rf(read_dir);
    read_dir[0] = '\0';
    read_note[0] = '\0';
}

static void hc_teardown(const cmp_ctx *c) {
    hc_unload(c);
    if (files_dir[0])
        rm_rf(files_dir);
    files_dir[0] = '\0';
}

const cmp_peer cmp_peer_hypercore = {
    .name = "hypercore",
    .append_verb = "append",
    .batch_word = "batch",
    .setting_word = "sync",
    .read_verb = "read sequential",
    .get_verb = "get random",
    .setting = {[CMP_DUR_NONE] = "default"},
    .batches = {1, 100, 1000},
    .producers = 0,             /* one writer per core is hypercore's model */
    .read_records_max = 200000, /* its reads and load-time audit run at ~10k records/s */
    .setup = hc_setup,
    .append = hc_append,
    .visible = hc_visible,
    .load = hc_load,
    .storage = hc_storage,
    .read = hc_read,
    .get = hc_get,
    .unload = hc_unload,
    .teardown = hc_teardown,
};
