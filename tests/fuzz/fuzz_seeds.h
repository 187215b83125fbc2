/*
 * fuzz_seeds.h - what the fuzz targets share: writing the seed corpus that
 * scripts/fuzz.sh asks for with KL_FUZZ_SEEDS=DIR (each target then writes a
 * few valid inputs of its own format into DIR and exits without fuzzing),
 * and comparing decoded Hypercore requests field by field.
 */
#ifndef KL_FUZZ_SEEDS_H
#define KL_FUZZ_SEEDS_H

#include <stdio.h>
#include <stdlib.h>

#include "engine/proof.h"
#include "engine/util.h"

/* Write n bytes at p as DIR/name. */
static inline void write_seed(const char *dir, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    KL_ASSERT(f != NULL);
    KL_ASSERT(fwrite(p, 1, n, f) == n);
    KL_ASSERT(fclose(f) == 0);
}

/* With KL_FUZZ_SEEDS=DIR set: write the target's seeds into DIR (fn) and exit. */
static inline void seeds_then_exit(void (*fn)(const char *dir)) {
    const char *dir = getenv("KL_FUZZ_SEEDS");
    if (dir && *dir) {
        fn(dir);
        exit(0);
    }
}

/* Do two decoded requests have the same fields? */
static inline int fz_same_request(const kl_proof_request *a, const kl_proof_request *b) {
    return a->flags == b->flags && a->id == b->id && a->fork == b->fork &&
           a->block.index == b->block.index && a->block.nodes == b->block.nodes &&
           a->hash.index == b->hash.index && a->hash.nodes == b->hash.nodes &&
           a->seek.bytes == b->seek.bytes && a->seek.padding == b->seek.padding &&
           a->upgrade.start == b->upgrade.start && a->upgrade.length == b->upgrade.length &&
           a->priority == b->priority;
}

#endif
