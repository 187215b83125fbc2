/*
 * test_tree.c - the tree file and the incremental builder (engine/tree.c),
 * and the signed tree of a real log, against tests/data/hypercore/tree-1000.json
 * (a 1000-block core made by hypercore 11.37.1; see that directory's README).
 *
 * What this proves: kl_treeb emits every node of the vector's tree that a
 * file of its low stores (every node at low 0, depth 4 and up at the
 * default) exactly once, with the vector's hash and size, in the order of
 * kl_tree_spos (one contiguous run per block); its roots and tree hash at
 * every checkpoint are the vector's; building many blocks at once makes the
 * same bytes at every low; a log fed the same blocks in the same batches
 * has, at every checkpoint, the vector's tree hash and signature, every
 * vector node reads back (kl_log_node: stored ones from the file, lower
 * ones hashed from the blocks) and the file is exactly its stored nodes; a
 * log whose tree file is version 1 (every node) opens, verifies, grows and
 * still verifies; verify goes a group of blocks at a time, with big blocks
 * cutting groups short, and names a damaged node after them; the tree file
 * header is refused when damaged.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/log_internal.h"
#include "engine/tree.h"
#include "engine/util.h"

static json_t *vec;

/* Block i of the vector's rule: length i mod 61, byte j = (i + j) mod 251. */
static size_t block(uint64_t i, uint8_t *buf) {
    size_t n = (size_t)(i % 61);
    for (size_t j = 0; j < n; j++)
        buf[j] = (uint8_t)((i + j) % 251);
    return n;
}

/* The vector's nodes, by flat-tree index. */
static kl_node *vector_nodes(size_t *count) {
    json_t *nodes = json_object_get(vec, "tree_nodes");
    size_t n = json_array_size(nodes);
    kl_node *v = calloc(2 * 1000, sizeof *v);
    assert_non_null(v);
    for (size_t k = 0; k < n; k++) {
        json_t *e = json_array_get(nodes, k);
        uint64_t index = (uint64_t)json_integer_value(json_array_get(e, 0));
        assert_true(index < 2000);
        v[index].index = index;
        v[index].size = (uint64_t)json_integer_value(json_array_get(e, 1));
        assert_int_equal(
            tu_unhex(json_string_value(json_array_get(e, 2)), v[index].hash, KL_HASH_BYTES),
            KL_HASH_BYTES);
    }
    *count = n;
    return v;
}

static void builder_makes_stored_nodes(unsigned low) {
    size_t count = 0;
    kl_node *want = vector_nodes(&count);
    assert_int_equal(count, kl_tree_nodes(1000));
    kl_treeb tb;
    kl_treeb_init(&tb, NULL, 0, 0, low);
    uint8_t buf[64], made[KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES];
    uint64_t pos = 0;
    json_t *states = json_object_get(vec, "states");
    size_t next_state = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        size_t k = kl_treeb_add_block(&tb, buf, block(i, buf), made);
        uint64_t index = 2 * i;
        for (unsigned d = 0; d < low; d++)
            index = kl_ft_parent(index);
        for (size_t j = 0; j < k; j++, index = kl_ft_parent(index)) {
            /* the j-th node stored is the leaf's (low + j)-th ancestor, at the next position */
            assert_true(kl_tree_stored(index, low));
            assert_int_equal(kl_tree_spos(index, low), pos + j);
            kl_node got;
            kl_tree_node_decode(made + j * KL_TREE_NODE_BYTES, index, &got);
            assert_int_equal(got.size, want[index].size);
            assert_memory_equal(got.hash, want[index].hash, KL_HASH_BYTES);
        }
        pos += k;
        assert_int_equal(pos, kl_tree_count(i + 1, low));
        json_t *st = json_array_get(states, next_state);
        if (st && tu_json_u64(st, "length") == i + 1) {
            uint8_t th[KL_HASH_BYTES], want_th[KL_HASH_BYTES];
            kl_hc_tree_hash(tb.roots, tb.n, th);
            assert_int_equal(tu_unhex(tu_json_str(st, "tree_hash"), want_th, KL_HASH_BYTES),
                             KL_HASH_BYTES);
            assert_memory_equal(th, want_th, KL_HASH_BYTES);
            assert_int_equal(tb.n, json_array_size(json_object_get(st, "roots")));
            next_state++;
        }
    }
    assert_int_equal(next_state, json_array_size(states));
    /* the stored nodes are those of depth low and up, all of them */
    uint64_t stored = 0;
    for (uint64_t index = 0; index < 2000; index++)
        stored += kl_ft_right_span(index) / 2 < 1000 && kl_tree_stored(index, low);
    assert_int_equal(stored, kl_tree_count(1000, low));
    free(want);
}

static void test_builder_makes_every_node_in_file_order(void **state) {
    (void)state;
    builder_makes_stored_nodes(0);
}

static void test_builder_makes_the_stored_nodes_at_every_low(void **state) {
    (void)state;
    for (unsigned low = 1; low <= KL_TREE_LOW_MAX; low++)
        builder_makes_stored_nodes(low);
}

/*
 * Building many blocks at once (kl_tree_build_spans, kl_treeb_join) makes the
 * same bytes and roots as kl_treeb_add one block at a time, for trees of every
 * shape: starting lengths 0, powers of two and their neighbours and random
 * ones, appends of 1..3000 blocks, some of them after a few blocks added one
 * at a time; files storing every node, and from depths 1, 4 and 8 up.
 */
static void test_spans_make_the_same_nodes(void **state) {
    (void)state;
    enum { MAX_N = 3000 };
    uint64_t rng = 0x7ee5u;
    uint8_t *hashes = malloc((size_t)MAX_N * KL_HASH_BYTES);
    kl_block *blocks = calloc(MAX_N, sizeof *blocks);
    kl_node *rows = malloc(MAX_N * sizeof *rows);
    size_t cap = (size_t)(2 * MAX_N + KL_TREEB_MAX_NEW) * KL_TREE_NODE_BYTES;
    uint8_t *one = malloc(cap), *two = malloc(cap);
    assert_true(hashes && blocks && rows && one && two);
    static const uint64_t starts[] = {0, 1, 2, 3, 7, 8, 9, 255, 256, 257, 1023, 1024, 4097};
    static const unsigned lows[] = {0, 1, KL_TREE_LOW, 8};
    unsigned cases = 0;
    for (unsigned round = 0; round < 400; round++) {
        unsigned low = lows[(round / 13) % 4];
        uint64_t start = round < 13 * 8 ? starts[round % 13] : tu_rand(&rng) % 70000;
        size_t n = 1 + (size_t)(tu_rand(&rng) % (round % 3 == 0 ? MAX_N : 600));
        size_t mine = round % 2 ? 0 : (size_t)(tu_rand(&rng) % n); /* added one at a time */
        /* the roots of a tree of `start` blocks (leaf hashes of a simple rule) */
        kl_treeb base_tb;
        kl_treeb_init(&base_tb, NULL, 0, 0, low);
        uint8_t spill[KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES];
        for (uint64_t i = 0; i < start; i++) {
            uint8_t h[KL_HASH_BYTES];
            memset(h, (int)(i % 251), sizeof h);
            memcpy(h, &i, sizeof i);
            kl_treeb_add(&base_tb, h, i % 97, spill);
        }
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < KL_HASH_BYTES; j++)
                hashes[KL_HASH_BYTES * i + j] = (uint8_t)tu_rand(&rng);
            blocks[i].size = (size_t)(tu_rand(&rng) % 5000);
        }
        uint64_t base = kl_tree_count(start, low), nodes = kl_tree_count(start + n, low) - base;
        kl_treeb a = base_tb, b = base_tb;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += kl_treeb_add(&a, hashes + KL_HASH_BYTES * i, blocks[i].size,
                              one + KL_TREE_NODE_BYTES * k);
        assert_int_equal(k, nodes);
        memset(two, 0xee, cap);
        size_t k2 = 0;
        for (size_t i = 0; i < mine; i++)
            k2 += kl_treeb_add(&b, hashes + KL_HASH_BYTES * i, blocks[i].size,
                               two + KL_TREE_NODE_BYTES * k2);
        assert_int_equal(k2, kl_tree_count(start + mine, low) - base);
        kl_node tops[KL_TREE_MAX_SPANS];
        size_t ntops = kl_tree_build_spans(blocks + mine, hashes + KL_HASH_BYTES * mine,
                                           start + mine, start + n, low, base, two, rows, tops);
        size_t joined = kl_treeb_join(&b, tops, ntops, base, two);
        /* every span's nodes plus the joining parents fill the rest (all of them stored) */
        if (low == 0)
            assert_int_equal(k2 + 2 * (n - mine) - ntops + joined, nodes);
        assert_memory_equal(one, two, (size_t)nodes * KL_TREE_NODE_BYTES);
        assert_int_equal(b.length, start + n);
        assert_int_equal(b.n, a.n);
        assert_memory_equal(b.roots, a.roots, a.n * sizeof *a.roots);
        cases++;
    }
    assert_int_equal(cases, 400);
    free(hashes);
    free(blocks);
    free(rows);
    free(one);
    free(two);
}

/*
 * The vector's blocks appended in its checkpoints' steps (1 to 486 blocks),
 * each step signed as hypercore signed it. Under `never` the appender hashes
 * its leaves; under `always` a lone appender leaves them to its commit, which
 * hashes them while its segment syncs, in pieces that end on multiples of 64
 * blocks (commit.c, YIELD_BLOCKS, on the io_uring backend): steps like
 * 256..500 and 513..999 start and end inside a piece.
 */
static void signs_every_checkpoint_like_hypercore(kl_fsync_mode mode) {
    size_t count = 0;
    kl_node *want = vector_nodes(&count);
    char *tmp = tu_tmpdir("tree");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/log", tmp);
    uint8_t seed[32];
    assert_int_equal(tu_unhex(tu_json_str(vec, "seed"), seed, 32), 32);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.fsync_mode = mode;
    cfg.segment_bytes = KL_MIN_SEGMENT_BYTES; /* several segments */
    cfg.seed = seed;
    assert_int_equal(kl_log_create(dir, &cfg), 0);
    kl_log *log = tu_open(dir);
    json_t *states = json_object_get(vec, "states");
    static uint8_t data[1000 * 61];
    kl_block blocks[1000];
    uint64_t at = 0;
    for (size_t s = 0; s < json_array_size(states); s++) {
        json_t *st = json_array_get(states, s);
        uint64_t len = tu_json_u64(st, "length");
        size_t n = 0, off = 0;
        for (; at + n < len; n++) {
            size_t sz = block(at + n, data + off);
            blocks[n] = (kl_block){data + off, sz};
            off += sz;
        }
        assert_int_equal(kl_log_append(log, blocks, n, NULL), 0);
        at = len;
        kl_info info;
        assert_int_equal(kl_log_info(log, &info), 0);
        uint8_t th[KL_HASH_BYTES], sig[68];
        assert_int_equal(tu_unhex(tu_json_str(st, "tree_hash"), th, KL_HASH_BYTES), KL_HASH_BYTES);
        assert_int_equal(tu_unhex(tu_json_str(st, "signature"), sig, 68), 68);
        assert_int_equal(info.length, len);
        assert_int_equal(info.byte_length, tu_json_u64(st, "byte_length"));
        assert_memory_equal(info.tree_hash, th, KL_HASH_BYTES);
        assert_int_equal(info.signature_len, 68);
        assert_memory_equal(info.signature, sig, 68);
    }
    assert_int_equal(at, 1000);
    /* every node reads back (stored or hashed from its blocks); none past the tree */
    for (uint64_t index = 0; index < 2000; index++) {
        kl_node got;
        int rc = kl_log_node(log, index, &got);
        if (kl_ft_right_span(index) / 2 >= 1000) {
            assert_int_equal(rc, KL_ENOTFOUND);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(got.size, want[index].size);
        assert_memory_equal(got.hash, want[index].hash, KL_HASH_BYTES);
    }
    assert_int_equal(kl_log_close(log), 0);
    char tree[4200];
    snprintf(tree, sizeof tree, "%s/tree", dir);
    assert_int_equal(tu_file_size(tree), kl_tree_bytes(1000, KL_TREE_LOW));
    /* reopened (recovery), it still verifies and still has the vector's signature */
    log = tu_open(dir);
    uint64_t bad = 0;
    assert_int_equal(kl_log_verify(log, NULL, NULL, &bad), 0);
    assert_int_equal(kl_log_close(log), 0);
    tu_rmrf(tmp);
    free(tmp);
    free(want);
}

static void test_log_signs_every_checkpoint_like_hypercore(void **state) {
    (void)state;
    signs_every_checkpoint_like_hypercore(KL_FSYNC_NEVER);
}

static void test_log_under_always_signs_every_checkpoint_like_hypercore(void **state) {
    (void)state;
    signs_every_checkpoint_like_hypercore(KL_FSYNC_ALWAYS);
}

/*
 * Under `never` an append of 256 blocks or more builds its subtrees in
 * chunks that this thread and the sealer take in turn (seal.c,
 * kl_tree_grow), and its leaves go eight at a time where the CPU has
 * AVX-512 (b2b4.c). Appends of 1 to 2,048 blocks from
 * unaligned starts, with blocks small enough for one BLAKE2b block and
 * bigger ones mixed, eight rounds: after each append the log's tree hash
 * is the one-leaf-at-a-time builder's, and at the end every node reads back
 * as the builder made it, and the log verifies after reopening (segments
 * of the least size, so appends also cross segment rolls).
 */
static void test_big_appends_build_their_tree_on_two_threads(void **state) {
    (void)state;
    static const size_t runs[] = {1, 300, 7, 1000, 513, 2048, 257, 256, 1500, 64, 1023, 999};
    enum { ROUNDS = 8, MAX_RUN = 2048, TOTAL = 7968 };
    uint8_t *data = malloc((size_t)MAX_RUN * 200);
    kl_block *blocks = malloc(MAX_RUN * sizeof *blocks);
    kl_node *want = calloc(2 * TOTAL, sizeof *want);
    uint8_t made[KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES];
    assert_non_null(data);
    assert_non_null(blocks);
    assert_non_null(want);
    uint64_t rng = 0x5ea1u;
    unsigned split_appends = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char *dir = tu_new_log("tree-split", KL_FSYNC_NEVER); /* segments of the least size */
        kl_log *log = tu_open(dir);
        kl_treeb tb; /* low 0: it hands out every node */
        kl_treeb_init(&tb, NULL, 0, 0, 0);
        uint64_t at = 0;
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            size_t n = runs[r];
            /* odd rounds: the blocks back to back, so a big append is written from them
               while the tree is built (commit.c, `beside`) */
            size_t packed_at = 0;
            for (size_t i = 0; i < n; i++) {
                /* mostly blocks of one BLAKE2b block (up to 119 bytes), some bigger */
                size_t cap = tu_rand(&rng) % 8 ? 120 : 200;
                size_t size = (size_t)(tu_rand(&rng) % cap);
                uint8_t *p = round % 2 ? data + packed_at : data + 200 * i;
                packed_at += size;
                for (size_t j = 0; j < size; j++)
                    p[j] = (uint8_t)tu_rand(&rng);
                blocks[i] = (kl_block){p, size};
                size_t k = kl_treeb_add_block(&tb, p, size, made);
                uint64_t index = 2 * (at + i);
                for (size_t j = 0; j < k; j++, index = kl_ft_parent(index))
                    kl_tree_node_decode(made + j * KL_TREE_NODE_BYTES, index, &want[index]);
            }
            assert_int_equal(kl_log_append(log, blocks, n, NULL), 0);
            at += n;
            split_appends += n >= 256;
            kl_info info;
            assert_int_equal(kl_log_info(log, &info), 0);
            assert_int_equal(info.length, at);
            uint8_t th[KL_HASH_BYTES];
            kl_hc_tree_hash(tb.roots, tb.n, th);
            if (memcmp(info.tree_hash, th, KL_HASH_BYTES) != 0)
                fail_msg("round %d: after an append of %zu blocks (length %llu) the tree hash "
                         "is not the builder's",
                         round, n, (unsigned long long)at);
        }
        assert_int_equal(at, TOTAL);
        for (uint64_t index = 0; index < 2 * TOTAL; index++) {
            if (kl_ft_right_span(index) / 2 >= TOTAL)
                continue;
            kl_node got;
            assert_int_equal(kl_log_node(log, index, &got), 0);
            assert_int_equal(got.size, want[index].size);
            if (memcmp(got.hash, want[index].hash, KL_HASH_BYTES) != 0)
                fail_msg("round %d: node %llu differs from the builder's", round,
                         (unsigned long long)index);
        }
        assert_int_equal(kl_log_close(log), 0);
        log = tu_open(dir);
        tu_expect_verified(log, "the reopened log");
        assert_int_equal(kl_log_close(log), 0);
        tu_rm_log(dir);
    }
    assert_int_equal(split_appends, ROUNDS * 9);
    free(data);
    free(blocks);
    free(want);
}

/* What kl_log_verify's progress calls said. */
typedef struct verify_seen {
    uint64_t calls, last, total;
    int backwards, saw_64k;
} verify_seen;

static void verify_progress(void *ctx, uint64_t done, uint64_t total) {
    verify_seen *v = ctx;
    v->backwards |= v->calls > 0 && done < v->last;
    v->saw_64k |= done == 65536;
    v->calls++;
    v->last = done;
    v->total = total;
}

/*
 * Verify checks blocks a group at a time (engine/verify.c): up to 1,024
 * blocks or about 4 MiB of them. A log of 70,000 small blocks, then six of
 * 1.5 MiB (which cut groups short, so the groups after them start off the
 * 1,024 grid), then 300 small ones verifies, its progress going forward to
 * the end; a node over blocks after the big ones, flipped, is named with
 * the blocks under it.
 */
static void test_verify_goes_by_groups_of_blocks(void **state) {
    (void)state;
    enum { SMALL = 70000, BIG = 6, TAIL = 300, BIG_BYTES = 3 << 19 };
    const uint64_t length = SMALL + BIG + TAIL;
    char *dir = tu_new_log("tree-verify", KL_FSYNC_NEVER);
    kl_log *log = tu_open(dir);
    uint8_t *data = malloc(BIG_BYTES);
    kl_block *blocks = malloc(1000 * sizeof *blocks);
    assert_non_null(data);
    assert_non_null(blocks);
    for (size_t j = 0; j < BIG_BYTES; j++)
        data[j] = (uint8_t)(j * 7 + 3);
    for (uint64_t at = 0; at < SMALL; at += 1000) {
        for (size_t i = 0; i < 1000; i++)
            blocks[i] = (kl_block){data + (at + i) % 4096, (size_t)((at + i) % 121)};
        assert_int_equal(kl_log_append(log, blocks, 1000, NULL), 0);
    }
    for (size_t i = 0; i < BIG; i++)
        blocks[i] = (kl_block){data, BIG_BYTES - i};
    assert_int_equal(kl_log_append(log, blocks, BIG, NULL), 0);
    for (size_t i = 0; i < TAIL; i++)
        blocks[i] = (kl_block){data + i, 100};
    assert_int_equal(kl_log_append(log, blocks, TAIL, NULL), 0);
    assert_int_equal(kl_log_close(log), 0);

    log = tu_open(dir);
    assert_int_equal(kl_log_length(log), length);
    verify_seen seen = {0};
    uint64_t bad = 0;
    assert_int_equal(kl_log_verify(log, verify_progress, &seen, &bad), 0);
    assert_int_equal(bad, UINT64_MAX);
    assert_true(seen.calls >= 2);
    assert_false(seen.backwards);
    assert_true(seen.saw_64k);
    assert_int_equal(seen.last, length);
    assert_int_equal(seen.total, length);
    unsigned low = log->tree_low;
    assert_int_equal(kl_log_close(log), 0);

    /* the stored node over the 16 blocks from 70,016 (low 4: the lowest stored) */
    assert_int_equal(low, 4);
    uint64_t first = SMALL + 16, index = kl_ft_index(low, first >> low);
    char *tree = NULL;
    assert_true(asprintf(&tree, "%s/tree", dir) > 0);
    tu_flip(tree, kl_tree_off(kl_tree_spos(index, low)) + 5, 0x01);
    log = tu_open(dir);
    assert_int_equal(kl_log_verify(log, NULL, NULL, &bad), KL_EVERIFY);
    assert_int_equal(bad, first);
    char want[64];
    snprintf(want, sizeof want, "blocks %llu..%llu", (unsigned long long)first,
             (unsigned long long)(first + 15));
    if (!strstr(kl_log_last_error(log), want))
        fail_msg("verify said '%s', expected it to name '%s'", kl_log_last_error(log), want);
    assert_int_equal(kl_log_close(log), 0);
    free(tree);
    free(blocks);
    free(data);
    tu_rm_log(dir);
}

/*
 * A log made before the tree file kept only the upper nodes: its tree file
 * (version 1, every node) is what test_log_signs... reads back, written
 * whole. It opens, verifies, takes more blocks (stored the version-1 way)
 * and verifies again; a torn header is written again as the version-1 one;
 * a damaged leaf in it is still named by verify.
 */
static void test_version1_tree_file_still_works(void **state) {
    (void)state;
    char *tmp = tu_tmpdir("tree1");
    char dir[4096], tree[4200];
    snprintf(dir, sizeof dir, "%s/log", tmp);
    snprintf(tree, sizeof tree, "%s/tree", dir);
    kl_config cfg;
    kl_config_default(&cfg);
    assert_int_equal(kl_log_create(dir, &cfg), 0);
    kl_log *log = tu_open(dir);
    static uint8_t data[300 * 61];
    kl_block blocks[300];
    size_t off = 0;
    for (uint64_t i = 0; i < 300; i++) {
        size_t sz = block(i, data + off);
        blocks[i] = (kl_block){data + off, sz};
        off += sz;
    }
    assert_int_equal(kl_log_append(log, blocks, 100, NULL), 0);
    /* the version-1 file: header, then every node in kl_tree_pos order */
    size_t len = (size_t)kl_tree_off(kl_tree_nodes(100));
    uint8_t *file = calloc(1, len);
    assert_non_null(file);
    memcpy(file, KL_TREE_MAGIC, 8);
    kl_store32(file + 8, 1);
    kl_store32(file + 12, KL_TREE_NODE_BYTES);
    kl_store64(file + 56, XXH3_64bits(file, 56));
    for (uint64_t index = 0; index < 200; index++) {
        kl_node n;
        if (kl_ft_right_span(index) / 2 >= 100)
            continue;
        assert_int_equal(kl_log_node(log, index, &n), 0);
        kl_tree_node_encode(file + kl_tree_off(kl_tree_pos(index)), &n);
    }
    assert_int_equal(kl_log_close(log), 0);
    FILE *f = fopen(tree, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(file, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    log = tu_open(dir);
    assert_int_equal(log->tree_low, 0);
    assert_int_equal(kl_log_verify(log, NULL, NULL, NULL), 0);
    assert_int_equal(kl_log_append(log, blocks + 100, 200, NULL), 0);
    assert_int_equal(kl_log_close(log), 0);
    assert_int_equal(tu_file_size(tree), kl_tree_off(kl_tree_nodes(300)));
    log = tu_open(dir);
    assert_int_equal(kl_log_verify(log, NULL, NULL, NULL), 0);
    assert_int_equal(kl_log_close(log), 0);
    /* a torn header: the signed roots show depth 0, and it is written again as version 1 */
    uint8_t zero[KL_TREE_HEADER_BYTES] = {0}, hdr[KL_TREE_HEADER_BYTES];
    tu_write_at(tree, 0, zero, sizeof zero);
    log = tu_open(dir);
    assert_int_equal(log->tree_low, 0);
    assert_int_equal(kl_log_verify(log, NULL, NULL, NULL), 0);
    assert_int_equal(kl_log_close(log), 0);
    FILE *h = fopen(tree, "rb");
    assert_non_null(h);
    assert_int_equal(fread(hdr, 1, sizeof hdr, h), sizeof hdr);
    fclose(h);
    assert_memory_equal(hdr, file, sizeof hdr);
    /* a flipped leaf is named as a leaf, as before */
    tu_flip(tree, kl_tree_off(kl_tree_pos(2 * 250)) + 3, 0x10);
    log = tu_open(dir);
    uint64_t bad = 0;
    assert_int_equal(kl_log_verify(log, NULL, NULL, &bad), KL_EVERIFY);
    assert_int_equal(bad, 250);
    assert_non_null(strstr(kl_log_last_error(log), "leaf"));
    assert_int_equal(kl_log_close(log), 0);
    free(file);
    tu_rmrf(tmp);
    free(tmp);
}

static void test_tree_header_is_checked(void **state) {
    (void)state;
    uint8_t h[KL_TREE_HEADER_BYTES];
    unsigned low = 99;
    kl_tree_header_encode(h, KL_TREE_LOW);
    assert_int_equal(kl_tree_header_check(h, sizeof h, &low), 0);
    assert_int_equal(low, KL_TREE_LOW);
    assert_int_equal(kl_tree_header_check(h, sizeof h - 1, &low), KL_ECORRUPT);
    for (unsigned bit = 0; bit < 8 * KL_TREE_HEADER_BYTES; bit++) {
        h[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (kl_tree_header_check(h, sizeof h, &low) != KL_ECORRUPT)
            fail_msg("flip of tree header bit %u was accepted", bit);
        h[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* a low past KL_TREE_LOW_MAX is refused even with a good checksum */
    kl_store32(h + 16, KL_TREE_LOW_MAX + 1);
    kl_store64(h + 56, XXH3_64bits(h, 56));
    assert_int_equal(kl_tree_header_check(h, sizeof h, &low), KL_ECORRUPT);
    /* version 1 means every node; its bytes 16.. must be zero */
    memset(h + 8, 0, 56);
    kl_store32(h + 8, 1);
    kl_store32(h + 12, KL_TREE_NODE_BYTES);
    kl_store64(h + 56, XXH3_64bits(h, 56));
    assert_int_equal(kl_tree_header_check(h, sizeof h, &low), 0);
    assert_int_equal(low, 0);
    kl_store32(h + 16, 4);
    kl_store64(h + 56, XXH3_64bits(h, 56));
    assert_int_equal(kl_tree_header_check(h, sizeof h, &low), KL_ECORRUPT);
}

int main(void) {
    vec = tu_vector("tree-1000.json");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_makes_every_node_in_file_order),
        cmocka_unit_test(test_builder_makes_the_stored_nodes_at_every_low),
        cmocka_unit_test(test_spans_make_the_same_nodes),
        cmocka_unit_test(test_log_signs_every_checkpoint_like_hypercore),
        cmocka_unit_test(test_log_under_always_signs_every_checkpoint_like_hypercore),
        cmocka_unit_test(test_big_appends_build_their_tree_on_two_threads),
        cmocka_unit_test(test_verify_goes_by_groups_of_blocks),
        cmocka_unit_test(test_version1_tree_file_still_works),
        cmocka_unit_test(test_tree_header_is_checked),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(vec);
    return rc;
}
