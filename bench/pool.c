/*
 * pool.c - the records and the logs the scenarios write to.
 *
 * Records are made once, before any timing: a pool of pseudo-random bytes
 * holding POOL_VARIANTS batches of `batch` records back to back, and a ready
 * kl_block array per batch. The timed loops only cycle through them, and
 * the ceiling loops write the very same contiguous bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void pool_init(bench_pool *p, size_t record_bytes, size_t batch, uint64_t seed) {
    size_t per = record_bytes * batch;
    size_t total = per * POOL_VARIANTS;
    memset(p, 0, sizeof *p);
    p->record_bytes = record_bytes;
    p->batch = batch;
    p->bytes = malloc(total + 8);
    p->blocks = malloc(sizeof *p->blocks * batch * POOL_VARIANTS);
    if (!p->bytes || !p->blocks)
        die("out of memory for a pool of %zu bytes", total);
    uint64_t st = seed;
    for (size_t i = 0; i < total; i += 8) {
        uint64_t v = rng_next(&st);
        memcpy(p->bytes + i, &v, 8);
    }
    for (size_t i = 0; i < batch * POOL_VARIANTS; i++) {
        p->blocks[i].data = p->bytes + i * record_bytes;
        p->blocks[i].size = record_bytes;
    }
}

void pool_free(bench_pool *p) {
    free(p->bytes);
    free(p->blocks);
    memset(p, 0, sizeof *p);
}

const uint8_t *pool_batch_bytes(const bench_pool *p, unsigned variant) {
    return p->bytes + (size_t)(variant % POOL_VARIANTS) * p->batch * p->record_bytes;
}

const kl_block *pool_batch_blocks(const bench_pool *p, unsigned variant) {
    return p->blocks + (size_t)(variant % POOL_VARIANTS) * p->batch;
}

kl_log *bench_log_open(const bench_opts *o, const char *path, kl_fsync_mode mode) {
    kl_open_options opts;
    kl_open_options_default(&opts);
    opts.io = o->io;
    opts.fsync_override = 1;
    opts.fsync_mode = mode;
    kl_log *log = NULL;
    int rc = kl_log_open(path, &opts, &log);
    if (rc < 0)
        die_kl("kl_log_open", rc);
    return log;
}

kl_log *bench_log_fresh(const bench_opts *o, const char *path, kl_fsync_mode mode) {
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.segment_bytes = o->segment_bytes;
    if (rm_rf(path) < 0)
        die("cannot remove %s", path);
    int rc = kl_log_create(path, &cfg);
    if (rc < 0)
        die_kl("kl_log_create", rc);
    return bench_log_open(o, path, mode);
}
