/*
 * hashing.c - the hashing ceiling: what one core of this machine can do of
 * the Hypercore tree's hashing alone, measured with a plain C loop on the
 * same 100-byte records the appends write, in batches of 1000.
 *
 * Per record, exactly the hashes a Hypercore core computes (docs/FORMAT.md,
 * "Hypercore"), with libsodium's BLAKE2b-256 called directly:
 *
 *   leaf    H(0x00 || u64le(len) || data)
 *   parent  H(0x01 || u64le(size_l + size_r) || hash_l || hash_r), for each
 *           pair of equal subtrees the record completes (a stack of the
 *           full roots, as any incremental Merkle builder keeps)
 *
 * so n records cost n leaves and n - popcount(n) parents. One tree over the
 * whole run, started empty, as each append run starts a fresh log. No
 * signature and no tree hash per batch (the engine signs once per commit:
 * that is part of what the ratio measures), no I/O, no copy.
 *
 * The loop is independent of the engine's code on purpose: a ceiling made
 * of the engine's own functions would move with them. Before it is timed,
 * hashing_check() appends the same records to a scratch log and requires
 * kappalog's signed tree hash to be the one this loop's roots give, so the
 * ceiling cannot be fast by hashing something else.
 *
 * What a reader would get wrong: this is one core's ceiling for hashing one
 * message at a time, as libsodium's API does; an engine that spreads the
 * hashing over both cores, or hashes four to sixteen messages per step as
 * kappalog's does (its many-lane BLAKE2b, engine/b2b4.h), beats it (ratio
 * above 1).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define HASH_BYTES  32u
#define MAX_DEPTH   64u /* a tree of < 2^64 records has at most 64 full roots */
#define CHECK_BATCH 10u /* batches the check appends to its scratch log */

/* The domain bytes of Hypercore's hashes (docs/FORMAT.md, "Hypercore"). */
#define TYPE_LEAF   0x00
#define TYPE_PARENT 0x01
#define TYPE_TREE   0x02

typedef struct hnode {
    uint64_t size;  /* bytes of the records under it */
    unsigned depth; /* 0 for a leaf */
    uint8_t hash[HASH_BYTES];
} hnode;

/* The full roots of the tree so far, left to right. */
typedef struct htree {
    hnode root[MAX_DEPTH];
    unsigned n;
    uint64_t length;
} htree;

static void put64le(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void hash_leaf(const uint8_t *data, size_t len, hnode *out) {
    uint8_t pre[9];
    pre[0] = TYPE_LEAF;
    put64le(pre + 1, len);
    crypto_generichash_blake2b_state st;
    crypto_generichash_blake2b_init(&st, NULL, 0, HASH_BYTES);
    crypto_generichash_blake2b_update(&st, pre, sizeof pre);
    crypto_generichash_blake2b_update(&st, data, len);
    crypto_generichash_blake2b_final(&st, out->hash, HASH_BYTES);
    out->size = len;
    out->depth = 0;
}

static void hash_parent(const hnode *l, const hnode *r, hnode *out) {
    uint8_t in[9 + 2 * HASH_BYTES];
    in[0] = TYPE_PARENT;
    put64le(in + 1, l->size + r->size);
    memcpy(in + 9, l->hash, HASH_BYTES);
    memcpy(in + 9 + HASH_BYTES, r->hash, HASH_BYTES);
    crypto_generichash_blake2b(out->hash, HASH_BYTES, in, sizeof in, NULL, 0);
    out->size = l->size + r->size;
    out->depth = l->depth + 1;
}

/* Add one record: its leaf, then a parent for every pair of equal roots it completes. */
static void tree_add(htree *t, const uint8_t *data, size_t len) {
    hnode cur;
    hash_leaf(data, len, &cur);
    while (t->n > 0 && t->root[t->n - 1].depth == cur.depth) {
        hnode p;
        hash_parent(&t->root[t->n - 1], &cur, &p);
        t->n--;
        cur = p;
    }
    if (t->n == MAX_DEPTH)
        die("hashing: more than %u roots", MAX_DEPTH);
    t->root[t->n++] = cur;
    t->length++;
}

/*
 * Hypercore's tree hash of the roots: H(0x02 || per root: hash || u64le(flat
 * index) || u64le(size)). A root of depth d over records [a, a + 2^d) has
 * the flat-tree index 2a + 2^d - 1. Used only by the check, never timed.
 */
static void tree_hash(const htree *t, uint8_t out[HASH_BYTES]) {
    uint8_t type = TYPE_TREE;
    crypto_generichash_blake2b_state st;
    crypto_generichash_blake2b_init(&st, NULL, 0, HASH_BYTES);
    crypto_generichash_blake2b_update(&st, &type, 1);
    uint64_t first = 0;
    for (unsigned i = 0; i < t->n; i++) {
        uint64_t span = 1ull << t->root[i].depth;
        uint8_t tail[16];
        put64le(tail, 2 * first + span - 1);
        put64le(tail + 8, t->root[i].size);
        crypto_generichash_blake2b_update(&st, t->root[i].hash, HASH_BYTES);
        crypto_generichash_blake2b_update(&st, tail, sizeof tail);
        first += span;
    }
    crypto_generichash_blake2b_final(&st, out, HASH_BYTES);
}

void name_hashing(char *out, size_t cap) {
    snprintf(out, cap, "ceiling hashing leaf+parent rec=%dB batch=%d", HASH_RECORD_BYTES,
             HASH_BATCH);
}

/* The pool of the append it is compared with (append.c uses the same seed). */
static void hashing_pool(bench_pool *p) {
    pool_init(p, HASH_RECORD_BYTES, HASH_BATCH, 42 + HASH_RECORD_BYTES * 7 + HASH_BATCH);
}

void hashing_check(const bench_opts *o) {
    char name[128];
    name_hashing(name, sizeof name);
    if (!want_scenario(o, name))
        return;
    if (sodium_init() < 0) /* picks the fastest BLAKE2b for this CPU, as the engine's does */
        die("sodium_init failed");
    bench_pool p;
    hashing_pool(&p);
    char path[4096];
    path_join(path, sizeof path, o->dir, "hashcheck-log");
    kl_log *log = bench_log_fresh(o, path, KL_FSYNC_NEVER);
    htree t = {.n = 0};
    for (unsigned v = 0; v < CHECK_BATCH; v++) {
        int rc = kl_log_append(log, pool_batch_blocks(&p, v), HASH_BATCH, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
        const uint8_t *bytes = pool_batch_bytes(&p, v);
        for (unsigned i = 0; i < HASH_BATCH; i++)
            tree_add(&t, bytes + (size_t)i * HASH_RECORD_BYTES, HASH_RECORD_BYTES);
    }
    kl_info info;
    int rc = kl_log_info(log, &info);
    if (rc < 0)
        die_kl("kl_log_info", rc);
    uint8_t mine[HASH_BYTES];
    tree_hash(&t, mine);
    if (info.length != t.length || memcmp(info.tree_hash, mine, HASH_BYTES) != 0)
        die("hashing: the ceiling's tree hash over %llu records is not kappalog's: the ceiling "
            "would not measure the engine's hashing",
            (unsigned long long)t.length);
    rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    rm_rf(path);
    pool_free(&p);
}

/* One run: hash prepared batches for ceil_s seconds (or up to the byte cap). */
static void hashing_run(const bench_opts *o, bench_result *r, const bench_pool *p) {
    bench_hist *h = malloc(sizeof *h);
    htree *t = calloc(1, sizeof *t);
    if (!h || !t)
        die("out of memory");
    hist_reset(h);
    bench_run run = {0};
    size_t batch_bytes = (size_t)HASH_BATCH * HASH_RECORD_BYTES;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), ts = start, end = start + (uint64_t)(o->ceil_s * 1e9);
    for (unsigned v = 0; ts < end && run.bytes < o->run_cap_bytes; v++) {
        const uint8_t *bytes = pool_batch_bytes(p, v);
        for (unsigned i = 0; i < HASH_BATCH; i++)
            tree_add(t, bytes + (size_t)i * HASH_RECORD_BYTES, HASH_RECORD_BYTES);
        uint64_t t1 = now_ns();
        hist_add(h, t1 - ts);
        ts = t1;
        run.ops++;
        run.records += HASH_BATCH;
        run.bytes += batch_bytes;
    }
    run.seconds = (double)(ts - start) / 1e9;
    run.other_cpu_s = cpu_other_s(&cpu);
    if (t->length != run.records)
        die("hashing: %llu records in the tree, %llu hashed", (unsigned long long)t->length,
            (unsigned long long)run.records);
    result_add_run(r, &run, h);
    free(t);
    free(h);
}

void hashing_ceiling(const bench_opts *o) {
    char name[128];
    name_hashing(name, sizeof name);
    if (!want_scenario(o, name))
        return;
    bench_result *r = result_get("hashing", "hash_tree", name);
    r->record_bytes = HASH_RECORD_BYTES;
    r->batch = HASH_BATCH;
    r->threads = 1;
    snprintf(r->note, sizeof r->note,
             "one core, libsodium %s crypto_generichash_blake2b: a leaf per record and a parent "
             "per pair of equal roots, no signature; its tree hash checked equal to kappalog's",
             sodium_version_string());
    bench_pool p;
    hashing_pool(&p);
    progress("%s: run %d", name, r->nruns + 1);
    hashing_run(o, r, &p);
    pool_free(&p);
}
