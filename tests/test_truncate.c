/*
 * test_truncate.c - kl_truncate: Hypercore's truncate on a log, and its
 * crash safety.
 *
 *   - The steps of tests/data/hypercore/fork.json (append 5, truncate(3),
 *     append 2, truncate(1), append, truncate(0), append), done on a log
 *     made from the vector's seed, give the very keys, lengths, byte
 *     lengths, forks, tree hashes and signatures the JavaScript hypercore
 *     gave.
 *   - A log of several segments and many batches cut to every length from
 *     0 to its own length (mid-batch, at batch boundaries, at segment
 *     starts): the blocks below the cut as appended, none past it, the
 *     tree file cut to the nodes of the new length, fork 1, the signature
 *     over the tree of exactly those blocks, kl_log_verify clean; then
 *     appends go on (fork 1), and a second truncation moves to fork 2. The
 *     same with zstd batches (the cut batch is re-framed) in a compat core.
 *   - Refusals change nothing (every file byte for byte): past the length
 *     (KL_EINVAL), without a usable secret key (KL_EREADONLY).
 *   - Crashes: the truncation's commit point is the rename of its redo
 *     record. Interposing rename(2) (below) copies the log just before and
 *     just after it, which are the states a crash in kl_truncate's first
 *     half can leave. Then the application of the record (the next writable
 *     open's recovery) runs on the fault backend with every one of its I/O
 *     operations failed in turn (EIO, ENOSPC, short write) and with a crash
 *     after every one (the process gone, and a power loss dropping or
 *     tearing what was not synced). After each, a reopen must show exactly
 *     the old log or exactly the truncated one (length, fork, signature,
 *     every block), kl_log_verify must pass, and appends must go on.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEED      0x7c07u /* the log's records */
#define SEED_NEW  0x7c08u /* records appended after a truncation: stale bytes would show */
#define MAX_REC   900u
#define RECORDS   600u
#define MAX_BATCH 25u
#define KEY_BYTE  0x3cu

/* ---- record streams ---- */

typedef size_t (*rec_fn)(uint64_t index, uint8_t *buf);

static size_t rec_old(uint64_t i, uint8_t *buf) {
    return tu_record(SEED, i, MAX_REC, buf);
}

static size_t rec_new(uint64_t i, uint8_t *buf) {
    return tu_record(SEED_NEW, i, MAX_REC, buf);
}

/* Records that compress by about a third (so zstd batches are stored compressed): text, then
   random bytes. */
static size_t rec_text(uint64_t i, uint8_t *buf) {
    size_t n = tu_record(SEED, i, MAX_REC, buf);
    char word[32];
    int w = snprintf(word, sizeof word, "block %llu, ", (unsigned long long)i);
    for (size_t k = 0; k < n / 3; k++)
        buf[k] = (uint8_t)word[k % (size_t)w];
    return n;
}

/* Append [from, to) of fn in batches of 1..MAX_BATCH drawn from rng; returns batch firsts. */
static void append_stream(kl_log *log, rec_fn fn, uint64_t from, uint64_t to, uint64_t *rng,
                          uint64_t *firsts, size_t *nfirsts) {
    static uint8_t buf[MAX_BATCH][MAX_REC + 8];
    kl_block blocks[MAX_BATCH];
    for (uint64_t i = from; i < to;) {
        size_t n = 1 + (size_t)(tu_rand(rng) % MAX_BATCH);
        n = n < to - i ? n : (size_t)(to - i);
        for (size_t k = 0; k < n; k++) {
            blocks[k].data = buf[k];
            blocks[k].size = fn(i + k, buf[k]);
        }
        uint64_t first = 0;
        int rc = kl_log_append(log, blocks, n, &first);
        if (rc != 0)
            fail_msg("append at %llu: %d %s", (unsigned long long)i, rc, kl_log_last_error(log));
        assert_int_equal(first, i);
        if (firsts)
            firsts[(*nfirsts)++] = i;
        i += n;
    }
}

/* Blocks [from, to) of log are fn's; none past `to` if to is the length. */
static void expect_blocks(kl_log *log, rec_fn fn, uint64_t from, uint64_t to, const char *what) {
    uint8_t got[MAX_REC + 8], want[MAX_REC + 8];
    for (uint64_t i = from; i < to; i++) {
        size_t n = 0, wn = fn(i, want);
        int rc = kl_log_get(log, i, got, sizeof got, &n);
        if (rc != 0)
            fail_msg("%s: get(%llu) = %d %s", what, (unsigned long long)i, rc,
                     kl_log_last_error(log));
        if (n != wn || memcmp(got, want, wn) != 0)
            fail_msg("%s: block %llu is not the one appended", what, (unsigned long long)i);
    }
    if (to == kl_log_length(log)) {
        size_t n = 0;
        assert_int_equal(kl_log_get(log, to, got, sizeof got, &n), KL_ENOTFOUND);
    }
}

static void tree_add(tu_tree *t, rec_fn fn, uint64_t to) {
    uint8_t buf[MAX_REC + 8];
    while (t->length < to) {
        size_t n = fn(t->length, buf);
        tu_tree_add(t, buf, n);
    }
}

/* ---- the signed state of a log ---- */

typedef struct signed_state {
    uint64_t length, byte_length, fork;
    uint8_t tree_hash[KL_HASH_BYTES];
    uint8_t sig[KL_STORED_SIG_MAX];
    size_t sig_len;
} signed_state;

static void state_of(kl_log *log, signed_state *s) {
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    memset(s, 0, sizeof *s);
    s->length = info.length;
    s->byte_length = info.byte_length;
    s->fork = info.fork;
    memcpy(s->tree_hash, info.tree_hash, KL_HASH_BYTES);
    memcpy(s->sig, info.signature, info.signature_len);
    s->sig_len = info.signature_len;
}

static int same_state(const signed_state *a, const signed_state *b) {
    return a->length == b->length && a->byte_length == b->byte_length && a->fork == b->fork &&
           memcmp(a->tree_hash, b->tree_hash, KL_HASH_BYTES) == 0 && a->sig_len == b->sig_len &&
           memcmp(a->sig, b->sig, a->sig_len) == 0;
}

static char *path_in(const char *dir, const char *name) {
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static int exists(const char *dir, const char *name) {
    char *p = path_in(dir, name);
    int e = access(p, F_OK) == 0;
    free(p);
    return e;
}

/* Segment files (.log) of dir; their first indexes go to firsts (up to cap). */
static size_t seg_files(const char *dir, uint64_t *firsts, size_t cap) {
    char *sd = path_in(dir, "segments");
    DIR *d = opendir(sd);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len == 24 && strcmp(de->d_name + 20, ".log") == 0) {
            assert_true(n < cap);
            firsts[n++] = strtoull(de->d_name, NULL, 10);
        }
    }
    closedir(d);
    free(sd);
    return n;
}

/* ---- fork.json ---- */

static void expect_hex(const uint8_t *p, size_t n, const char *want, const char *what) {
    char got[2 * KL_STORED_SIG_MAX + 1];
    assert_true(n <= KL_STORED_SIG_MAX);
    tu_hex(p, n, got);
    if (strcmp(got, want) != 0)
        fail_msg("%s: %s, hypercore has %s", what, got, want);
}

static void test_truncation_steps_match_hypercore(void **state) {
    (void)state;
    json_t *v = tu_vector("fork.json");
    uint8_t seed[KL_SEED_BYTES];
    assert_int_equal(tu_unhex(tu_json_str(v, "seed"), seed, sizeof seed), KL_SEED_BYTES);
    char *root = tu_tmpdir("truncate-fork"), *dir = path_in(root, "log");
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.seed = seed;
    tu_create(dir, &cfg);
    /* the secret file is the vector's secret key */
    char *sp = path_in(dir, "secret");
    uint8_t sk[KL_SK_BYTES + 1];
    FILE *f = fopen(sp, "rb");
    assert_non_null(f);
    assert_int_equal(fread(sk, 1, sizeof sk, f), KL_SK_BYTES);
    fclose(f);
    free(sp);
    expect_hex(sk, KL_SK_BYTES, tu_json_str(v, "secret_key"), "the secret file");

    char words[16][32];
    size_t nwords = 0;
    json_t *steps = tu_json_get(v, "steps");
    assert_int_equal(json_array_size(steps), 7);
    for (size_t k = 0; k < json_array_size(steps); k++) {
        json_t *step = json_array_get(steps, k);
        const char *op = tu_json_str(step, "op");
        if (strncmp(op, "append ", 7) == 0) {
            /* "append a,b,c": one append call of the comma-separated words */
            kl_block blocks[16];
            size_t n = 0;
            for (const char *p = op + 7; *p; n++) {
                size_t w = strcspn(p, ",");
                assert_true(w < sizeof words[0] && nwords < 16);
                memcpy(words[nwords], p, w);
                words[nwords][w] = '\0';
                blocks[n] = (kl_block){words[nwords], w};
                nwords++;
                p += w + (p[w] == ',');
            }
            kl_log *log = tu_open(dir);
            uint64_t first = 0;
            assert_int_equal(kl_log_append(log, blocks, n, &first), 0);
            assert_int_equal(first, nwords - n);
            assert_int_equal(kl_log_close(log), 0);
        } else {
            unsigned long cut = 0;
            assert_int_equal(sscanf(op, "truncate(%lu)", &cut), 1);
            int rc = kl_truncate(dir, cut, NULL);
            if (rc != 0)
                fail_msg("%s: %d %s", op, rc, kl_last_error());
            nwords = cut;
        }
        json_t *s = tu_json_get(step, "state");
        kl_log *log = tu_open_ro(dir);
        kl_info info;
        assert_int_equal(kl_log_info(log, &info), 0);
        if (info.length != tu_json_u64(s, "length") ||
            info.byte_length != tu_json_u64(s, "byte_length") ||
            info.fork != tu_json_u64(s, "fork"))
            fail_msg("after %s: length %llu, byte length %llu, fork %llu; hypercore has %llu, "
                     "%llu, %llu",
                     op, (unsigned long long)info.length, (unsigned long long)info.byte_length,
                     (unsigned long long)info.fork, (unsigned long long)tu_json_u64(s, "length"),
                     (unsigned long long)tu_json_u64(s, "byte_length"),
                     (unsigned long long)tu_json_u64(s, "fork"));
        expect_hex(info.public_key, KL_PK_BYTES, tu_json_str(v, "public_key"), op);
        expect_hex(info.key, KL_HASH_BYTES, tu_json_str(v, "key"), op);
        expect_hex(info.discovery_key, KL_HASH_BYTES, tu_json_str(v, "discovery_key"), op);
        expect_hex(info.tree_hash, KL_HASH_BYTES, tu_json_str(s, "tree_hash"), op);
        assert_int_equal(info.signature_len, KL_STORED_SIG_V1);
        expect_hex(info.signature, info.signature_len, tu_json_str(s, "signature"), op);
        tu_expect_verified(log, op);
        for (size_t i = 0; i < nwords; i++) {
            char got[32];
            size_t n = 0;
            assert_int_equal(kl_log_get(log, i, got, sizeof got, &n), 0);
            assert_int_equal(n, strlen(words[i]));
            assert_memory_equal(got, words[i], n);
        }
        assert_int_equal(kl_log_close(log), 0);
    }
    json_decref(v);
    tu_rmrf(root);
    free(root);
    free(dir);
}

/* ---- every length ---- */

typedef struct base {
    char *root, *dir;
    rec_fn fn;
    uint64_t batches[RECORDS + 1]; /* first block of each batch, then RECORDS */
    size_t nbatches;
    uint64_t segs[64]; /* first block of each segment */
    size_t nsegs;
    uint64_t ts[RECORDS]; /* each block's batch timestamp */
} base;

/* The batch timestamps of blocks [0, n) of log into ts, or compared with ts (check). */
static void timestamps(kl_log *log, uint64_t n, uint64_t *ts, int check, const char *what) {
    kl_iter *it = NULL;
    assert_int_equal(kl_iter_open(log, 0, n, &it), 0);
    kl_record rec;
    uint64_t i = 0;
    for (int rc; (rc = kl_iter_next(it, &rec)) != 0; i++) {
        assert_int_equal(rc, 1);
        assert_int_equal(rec.index, i);
        if (!check)
            ts[i] = rec.timestamp_ms;
        else if (ts[i] != rec.timestamp_ms)
            fail_msg("%s: block %llu has timestamp %llu, it was appended at %llu", what,
                     (unsigned long long)i, (unsigned long long)rec.timestamp_ms,
                     (unsigned long long)ts[i]);
    }
    kl_iter_close(it);
    assert_int_equal(i, n);
}

/* A log of RECORDS blocks of fn in random batches over several 64 KiB segments. */
static void make_base(base *b, const char *tag, rec_fn fn, kl_codec codec, int compat,
                      kl_fsync_mode mode) {
    memset(b, 0, sizeof *b);
    b->root = tu_tmpdir(tag);
    b->dir = path_in(b->root, "base");
    b->fn = fn;
    uint8_t seed[KL_SEED_BYTES];
    kl_config cfg;
    tu_config_small_signed(&cfg, seed, KEY_BYTE);
    cfg.codec = codec;
    cfg.compat = compat;
    cfg.fsync_mode = mode;
    tu_create(b->dir, &cfg);
    kl_log *log = tu_open(b->dir);
    uint64_t rng = 77;
    append_stream(log, fn, 0, RECORDS, &rng, b->batches, &b->nbatches);
    b->batches[b->nbatches] = RECORDS;
    timestamps(log, RECORDS, b->ts, 0, tag);
    assert_int_equal(kl_log_close(log), 0);
    b->nsegs = seg_files(b->dir, b->segs, 64);
    for (size_t i = 0; i < b->nsegs; i++) /* sorted */
        for (size_t k = i + 1; k < b->nsegs; k++)
            if (b->segs[k] < b->segs[i]) {
                uint64_t t = b->segs[i];
                b->segs[i] = b->segs[k];
                b->segs[k] = t;
            }
    assert_true(b->nsegs >= 3);
}

/* Batches of dir stored with zstd (walking the batch headers of docs/FORMAT.md, "Batch"). */
static unsigned zstd_batches(const char *dir, const base *b) {
    unsigned z = 0;
    for (size_t i = 0; i < b->nsegs; i++) {
        char seg[4096];
        tu_seg_path(seg, sizeof seg, dir, b->segs[i], "log");
        FILE *f = fopen(seg, "rb");
        assert_non_null(f);
        uint8_t h[64];
        for (long pos = 64; fseek(f, pos, SEEK_SET) == 0 && fread(h, 1, 64, f) == 64;) {
            uint32_t stored;
            memcpy(&stored, h + 20, 4);
            z += h[6] == KL_CODEC_ZSTD;
            pos += 64 + 8 * (long)((stored + 1023) / 1024) + (long)stored;
        }
        fclose(f);
    }
    return z;
}

static void free_base(base *b) {
    tu_rmrf(b->root);
    free(b->root);
    free(b->dir);
}

static int is_in(const uint64_t *list, size_t n, uint64_t v) {
    for (size_t i = 0; i < n; i++)
        if (list[i] == v)
            return 1;
    return 0;
}

/* After truncating to n (fork `fork`), blocks [0, n) of b->fn: check it all. */
static void expect_truncated(const base *b, const char *dir, uint64_t n, uint64_t fork,
                             const tu_tree *t, const char *what) {
    char *tp = path_in(dir, "tree");
    assert_int_equal(tu_file_size(tp), kl_tree_bytes(n, KL_TREE_LOW));
    free(tp);
    assert_false(exists(dir, "truncate.redo"));
    uint64_t segs[64];
    size_t ns = seg_files(dir, segs, 64);
    for (size_t i = 0; i < ns; i++)
        if (segs[i] > n || !is_in(b->segs, b->nsegs, segs[i]))
            fail_msg("%s: segment %llu is still there", what, (unsigned long long)segs[i]);
    kl_log *log = tu_open(dir);
    assert_int_equal(kl_log_length(log), n);
    expect_blocks(log, b->fn, 0, n, what);
    timestamps(log, n, (uint64_t *)b->ts, 1, what); /* a re-framed batch keeps its time */
    tu_expect_verified(log, what);
    uint8_t th[KL_HASH_BYTES], seed[KL_SEED_BYTES];
    tu_tree_hash(t, th);
    tu_seed(seed, KEY_BYTE);
    tu_expect_signed(log, seed, fork, th, what);
    assert_int_equal(kl_log_close(log), 0);
}

typedef struct kinds {
    unsigned mid_batch, batch_start, seg_start, zero, whole;
} kinds;

/* Truncate copies of one log to every length (stride 1), or to every stride-th length and
   every length next to a batch boundary. */
static void truncate_to_every_length(rec_fn fn, kl_codec codec, int compat, kl_fsync_mode mode,
                                     uint64_t stride, const char *tag) {
    static base b;
    stride *= tu_sweep_stride();
    make_base(&b, tag, fn, codec, compat, mode);
    unsigned zb = zstd_batches(b.dir, &b);
    if (codec == KL_CODEC_ZSTD && zb * 2 < b.nbatches)
        fail_msg("%s: only %u of %zu batches are stored compressed", tag, zb, b.nbatches);
    char *work = path_in(b.root, "work");
    tu_tree t;
    tu_tree_init(&t);
    kinds k = {0};
    unsigned tried = 0;
    for (uint64_t n = 0; n <= RECORDS; n++) {
        int near = is_in(b.batches, b.nbatches + 1, n) || is_in(b.batches, b.nbatches + 1, n + 1) ||
                   (n > 0 && is_in(b.batches, b.nbatches + 1, n - 1));
        if (n % stride != 0 && !near)
            continue;
        tried++;
        char what[64];
        snprintf(what, sizeof what, "%s: truncate(%llu)", tag, (unsigned long long)n);
        tree_add(&t, fn, n);
        tu_copy_dir(b.dir, work);
        int rc = kl_truncate(work, n, NULL);
        if (rc != 0)
            fail_msg("%s: %d %s", what, rc, kl_last_error());
        expect_truncated(&b, work, n, 1, &t, what);
        /* appends go on, in the new fork: fresh bytes where the old blocks were */
        kl_log *log = tu_open(work);
        uint64_t rng = n;
        append_stream(log, rec_new, n, n + 6, &rng, NULL, NULL);
        assert_int_equal(kl_log_close(log), 0);
        log = tu_open(work);
        expect_blocks(log, fn, 0, n, what);
        expect_blocks(log, rec_new, n, n + 6, what);
        tu_expect_verified(log, what);
        tu_tree grown = t;
        tree_add(&grown, rec_new, n + 6);
        uint8_t th[KL_HASH_BYTES], seed[KL_SEED_BYTES];
        tu_tree_hash(&grown, th);
        tu_seed(seed, KEY_BYTE);
        tu_expect_signed(log, seed, 1, th, what);
        assert_int_equal(kl_log_close(log), 0);
        if (n % 37 == 0) { /* and a second truncation, into the appended blocks' batch */
            uint64_t m = n + 3;
            tu_tree again = t;
            tree_add(&again, rec_new, m);
            assert_int_equal(kl_truncate(work, m, NULL), 0);
            log = tu_open(work);
            assert_int_equal(kl_log_length(log), m);
            expect_blocks(log, rec_new, n, m, what);
            tu_expect_verified(log, what);
            tu_tree_hash(&again, th);
            tu_expect_signed(log, seed, 2, th, what);
            assert_int_equal(kl_log_close(log), 0);
        }
        tu_rmrf(work);
        int bstart = is_in(b.batches, b.nbatches + 1, n);
        k.mid_batch += !bstart;
        k.batch_start += bstart && n > 0 && n < RECORDS && !is_in(b.segs, b.nsegs, n);
        k.seg_start += n > 0 && is_in(b.segs, b.nsegs, n);
        k.zero += n == 0;
        k.whole += n == RECORDS;
    }
    print_message("%s: %u lengths: %u mid-batch, %u at a batch start, %u at a segment start, "
                  "0, and the whole log (%zu batches, %u of them zstd, %zu segments)\n",
                  tag, tried, k.mid_batch, k.batch_start, k.seg_start, b.nbatches, zb, b.nsegs);
    assert_true(k.mid_batch > 100 && k.batch_start > 10 && k.seg_start >= 2);
    assert_true(k.zero == 1 && k.whole == 1);
    free(work);
    free_base(&b);
}

static void test_truncation_to_every_length_keeps_exactly_the_prefix(void **state) {
    (void)state;
    truncate_to_every_length(rec_old, KL_CODEC_NONE, 0, KL_FSYNC_ALWAYS, 1, "truncate-plain");
}

static void test_truncation_of_zstd_batches_in_a_compat_core_under_never(void **state) {
    (void)state;
    /* under `never`: kl_truncate must make the log durable before it plans the cut */
    truncate_to_every_length(rec_text, KL_CODEC_ZSTD, 1, KL_FSYNC_NEVER, 3, "truncate-zstd");
}

/* ---- refusals ---- */

static void expect_refused(const char *dir, uint64_t length, int code, const char *what) {
    uint8_t before[KL_HASH_BYTES], after[KL_HASH_BYTES];
    tu_dir_digest(dir, before);
    int rc = kl_truncate(dir, length, NULL);
    if (rc != code)
        fail_msg("%s: truncate(%llu) = %d, expected %d (%s)", what, (unsigned long long)length, rc,
                 code, kl_last_error());
    if (!*kl_last_error())
        fail_msg("%s: the refusal gives no reason", what);
    tu_dir_digest(dir, after);
    if (memcmp(before, after, KL_HASH_BYTES) != 0)
        fail_msg("%s: a refused truncate(%llu) changed the log's files", what,
                 (unsigned long long)length);
}

static void test_a_refused_truncation_changes_nothing(void **state) {
    (void)state;
    base *b = calloc(1, sizeof *b);
    assert_non_null(b);
    make_base(b, "truncate-refused", rec_old, KL_CODEC_NONE, 0, KL_FSYNC_ALWAYS);
    kl_log *log = tu_open_ro(b->dir);
    signed_state old;
    state_of(log, &old);
    assert_int_equal(kl_log_close(log), 0);
    expect_refused(b->dir, RECORDS + 1, KL_EINVAL, "past the length");
    expect_refused(b->dir, UINT64_MAX, KL_EINVAL, "to UINT64_MAX");
    /* a writer holds the log */
    kl_log *w = tu_open(b->dir);
    uint8_t d0[KL_HASH_BYTES], d1[KL_HASH_BYTES];
    tu_dir_digest(b->dir, d0);
    kl_open_options o;
    kl_open_options_default(&o);
    o.lock_wait_ms = 50;
    assert_int_equal(kl_truncate(b->dir, 5, &o), KL_EBUSY);
    tu_dir_digest(b->dir, d1);
    assert_memory_equal(d0, d1, KL_HASH_BYTES);
    assert_int_equal(kl_log_length(w), RECORDS);
    assert_int_equal(kl_log_close(w), 0);
    /* no usable secret key: missing, the wrong size, another log's */
    char *sp = path_in(b->dir, "secret"), *keep = path_in(b->root, "secret.keep");
    assert_int_equal(rename(sp, keep), 0);
    for (uint64_t len = 0; len <= RECORDS; len += RECORDS / 2)
        expect_refused(b->dir, len, KL_EREADONLY, "no secret file");
    assert_non_null(strstr(kl_last_error(), "secret"));
    FILE *f = fopen(sp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("0123456789", 1, 10, f), 10);
    fclose(f);
    chmod(sp, 0600);
    expect_refused(b->dir, 5, KL_EREADONLY, "a 10-byte secret file");
    uint8_t other_seed[KL_SEED_BYTES], pk[KL_PK_BYTES], sk[KL_SK_BYTES];
    tu_seed(other_seed, KEY_BYTE + 1);
    kl_hc_keypair(other_seed, pk, sk);
    f = fopen(sp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(sk, 1, sizeof sk, f), sizeof sk);
    fclose(f);
    expect_refused(b->dir, 5, KL_EREADONLY, "another key's secret");
    assert_int_equal(rename(keep, sp), 0);
    log = tu_open_ro(b->dir);
    signed_state now;
    state_of(log, &now);
    assert_true(same_state(&old, &now));
    expect_blocks(log, rec_old, 0, RECORDS, "after the refusals");
    assert_int_equal(kl_log_close(log), 0);
    free(sp);
    free(keep);
    free_base(b);
    free(b);
}

/* ---- a reader beside a truncation ---- */

/*
 * In a child process (a SIGBUS must not take the test down): read every
 * block of log by get and by iteration. A block is served only as the
 * handle's own state has it (the old fork's bytes) or refused with an
 * error. Exits 0 if so, 1 if any read served other bytes.
 */
static int reader_child(kl_log *log, const char *when) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGBUS, SIG_DFL); /* die of it: cmocka's handler would run the next tests here */
        signal(SIGSEGV, SIG_DFL);
        uint8_t got[MAX_REC + 8], want[MAX_REC + 8];
        unsigned served = 0, refused = 0, wrong = 0;
        uint64_t first_wrong = UINT64_MAX;
        for (uint64_t i = 0; i < kl_log_length(log); i++) {
            size_t n = 0;
            if (kl_log_get(log, i, got, sizeof got, &n) != 0) {
                refused++;
                continue;
            }
            size_t wn = rec_old(i, want);
            if (n == wn && memcmp(got, want, wn) == 0) {
                served++;
            } else if (wrong++ == 0) {
                first_wrong = i;
            }
        }
        kl_iter *it = NULL;
        kl_record rec;
        int rc;
        if (kl_iter_open(log, 0, UINT64_MAX, &it) == 0) {
            while ((rc = kl_iter_next(it, &rec)) != 0) {
                if (rc < 0)
                    continue;
                size_t wn = rec_old(rec.index, want);
                if (rec.size != wn || memcmp(rec.data, want, wn) != 0)
                    wrong++;
            }
            kl_iter_close(it);
        }
        if (wrong)
            fprintf(stderr,
                    "reader %s: %u blocks served as they were, %u refused, %u reads "
                    "served other bytes (first: block %llu)\n",
                    when, served, refused, wrong, (unsigned long long)first_wrong);
        _exit(wrong ? 1 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/*
 * A read-only handle may be open when another process truncates the log
 * (kl_truncate only excludes writers). Its reads must neither crash (the
 * cut segment is mapped past its new end) nor, once the log has grown again
 * in the new fork, serve the new fork's blocks as its own.
 */
static void test_a_reader_open_across_a_truncation_never_crashes_or_mixes_forks(void **state) {
    (void)state;
    base *b = calloc(1, sizeof *b);
    assert_non_null(b);
    make_base(b, "truncate-reader", rec_old, KL_CODEC_NONE, 0, KL_FSYNC_ALWAYS);
    kl_log *reader = tu_open_ro(b->dir);
    uint8_t buf[MAX_REC + 8];
    size_t n;
    for (uint64_t i = 0; i < RECORDS; i++) /* every segment mapped */
        assert_int_equal(kl_log_get(reader, i, buf, sizeof buf, &n), 0);
    uint64_t cut = b->segs[1] + 2;
    assert_int_equal(kl_truncate(b->dir, cut, NULL), 0);
    int after_cut = reader_child(reader, "after the truncation");
    kl_log *w = tu_open(b->dir);
    uint64_t rng = 3;
    append_stream(w, rec_new, cut, RECORDS - 10, &rng, NULL, NULL);
    assert_int_equal(kl_log_close(w), 0);
    int after_growth = reader_child(reader, "after the new fork grew");
    assert_int_equal(kl_log_close(reader), 0);
    free_base(b);
    free(b);
    if (after_cut != 0 || after_growth != 0)
        fail_msg("a reader open across truncate(%llu): %s after the cut, %s after new appends",
                 (unsigned long long)cut,
                 after_cut > 128 ? "killed by a signal"
                 : after_cut     ? "wrong bytes"
                                 : "fine",
                 after_growth > 128 ? "killed by a signal"
                 : after_growth     ? "the new fork's bytes served as its own"
                                    : "fine");
}

/* ---- crashes ---- */

/*
 * The commit point of a truncation is the rename of `truncate.redo.tmp` to
 * `truncate.redo` (engine/truncate.c). Both backends rename with rename(3),
 * so this definition, in the test program, sees it: when asked, it copies
 * the log just before and just after, which is what a crash there leaves
 * (everything else was synced before). Any other rename passes through.
 */
static const char *snap_before, *snap_after;

int rename(const char *from, const char *to) {
    static const char tail[] = "/truncate.redo";
    size_t n = strlen(to), k = sizeof tail - 1;
    char *dir = n > k && strcmp(to + n - k, tail) == 0 ? strndup(to, n - k) : NULL;
    if (dir && snap_before)
        tu_copy_dir(dir, snap_before);
    int rc = renameat(AT_FDCWD, from, AT_FDCWD, to);
    if (dir && rc == 0 && snap_after)
        tu_copy_dir(dir, snap_after);
    free(dir);
    return rc;
}

typedef struct crash_case {
    base b;
    char *before, *after, *work;
    uint64_t n;            /* truncating to n */
    signed_state old, cut; /* the log before and after */
    tu_tree old_tree, cut_tree;
    unsigned saw_old, saw_cut;
} crash_case;

/* The log in dir is exactly cc's old or truncated one (verified, every block); appends go on. */
static void expect_old_or_cut(crash_case *cc, const char *dir, const char *what) {
    kl_log *log = NULL;
    int rc = kl_log_open_io(dir, NULL, tu_io(), &log);
    if (rc != 0)
        fail_msg("%s: reopen: %d %s", what, rc, kl_last_error());
    signed_state s;
    state_of(log, &s);
    int is_old = same_state(&s, &cc->old), is_cut = same_state(&s, &cc->cut);
    if (!is_old && !is_cut)
        fail_msg("%s: length %llu, fork %llu is neither the old log (%llu, fork %llu) nor the "
                 "truncated one (%llu, fork %llu), or its signature is neither's",
                 what, (unsigned long long)s.length, (unsigned long long)s.fork,
                 (unsigned long long)cc->old.length, (unsigned long long)cc->old.fork,
                 (unsigned long long)cc->cut.length, (unsigned long long)cc->cut.fork);
    cc->saw_old += is_old;
    cc->saw_cut += is_cut;
    assert_false(exists(dir, "truncate.redo"));
    expect_blocks(log, rec_old, 0, s.length, what);
    tu_expect_verified(log, what);
    uint8_t seed[KL_SEED_BYTES], th[KL_HASH_BYTES];
    tu_seed(seed, KEY_BYTE);
    tu_tree_hash(is_old ? &cc->old_tree : &cc->cut_tree, th);
    tu_expect_signed(log, seed, s.fork, th, what);
    uint64_t rng = 5;
    append_stream(log, rec_new, s.length, s.length + 3, &rng, NULL, NULL);
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(dir);
    expect_blocks(log, rec_new, s.length, s.length + 3, what);
    tu_expect_verified(log, what);
    assert_int_equal(kl_log_close(log), 0);
}

static void crash_case_init(crash_case *cc, uint64_t n, const char *tag) {
    memset(cc, 0, sizeof *cc);
    make_base(&cc->b, tag, rec_old, KL_CODEC_NONE, 0, KL_FSYNC_ALWAYS);
    cc->n = n;
    cc->before = path_in(cc->b.root, "at-rename-before");
    cc->after = path_in(cc->b.root, "at-rename-after");
    cc->work = path_in(cc->b.root, "work");
    kl_log *log = tu_open_ro(cc->b.dir);
    state_of(log, &cc->old);
    assert_int_equal(kl_log_close(log), 0);
    tu_tree_init(&cc->old_tree);
    tree_add(&cc->old_tree, rec_old, RECORDS);
    tu_tree_init(&cc->cut_tree);
    tree_add(&cc->cut_tree, rec_old, n);
    /* the truncation done once, with the log copied at its commit point */
    tu_copy_dir(cc->b.dir, cc->work);
    snap_before = cc->before;
    snap_after = cc->after;
    int rc = kl_truncate(cc->work, n, NULL);
    snap_before = snap_after = NULL;
    assert_int_equal(rc, 0);
    assert_true(exists(cc->before, "truncate.redo.tmp") && !exists(cc->before, "truncate.redo"));
    assert_true(exists(cc->after, "truncate.redo") && !exists(cc->after, "truncate.redo.tmp"));
    /* a reader does not guess: it refuses an unfinished truncation, and changes nothing */
    uint8_t d0[KL_HASH_BYTES], d1[KL_HASH_BYTES];
    tu_dir_digest(cc->after, d0);
    kl_open_options o;
    kl_open_options_default(&o);
    o.flags = KL_OPEN_READONLY;
    assert_int_equal(kl_log_open_io(cc->after, &o, tu_io(), &log), KL_EBUSY);
    assert_non_null(strstr(kl_last_error(), "unfinished"));
    tu_dir_digest(cc->after, d1);
    assert_memory_equal(d0, d1, KL_HASH_BYTES);
    log = tu_open_ro(cc->work);
    state_of(log, &cc->cut);
    assert_int_equal(kl_log_close(log), 0);
    assert_int_equal(cc->cut.length, n);
    assert_int_equal(cc->cut.fork, cc->old.fork + 1);
    tu_rmrf(cc->work);
}

static void crash_case_free(crash_case *cc) {
    free(cc->before);
    free(cc->after);
    free(cc->work);
    free_base(&cc->b);
}

/* A crash before the commit point: the old log, whatever of the record's temp file is there. */
static void crash_before_commit_point(crash_case *cc) {
    char *tmp = path_in(cc->before, "truncate.redo.tmp");
    uint64_t size = tu_file_size(tmp);
    free(tmp);
    const uint64_t cuts[] = {UINT64_MAX, 0, 1, 40, 4136, size / 2, size - 8, size - 1, size};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "crash before the rename, temp record of %lld bytes",
                 (long long)cuts[i]);
        tu_copy_dir(cc->before, cc->work);
        tmp = path_in(cc->work, "truncate.redo.tmp");
        if (cuts[i] == UINT64_MAX)
            unlink(tmp);
        else
            tu_truncate(tmp, cuts[i]);
        free(tmp);
        unsigned olds = cc->saw_old;
        expect_old_or_cut(cc, cc->work, what);
        if (cc->saw_old == olds)
            fail_msg("%s: the truncation happened without its record", what);
        tu_rmrf(cc->work);
    }
}

/* A record torn or damaged (it never became complete): it is discarded, the log is the old one. */
static void torn_record(crash_case *cc) {
    char *rp = path_in(cc->after, "truncate.redo");
    uint64_t size = tu_file_size(rp);
    free(rp);
    uint64_t cuts[64];
    size_t nc = 0;
    for (uint64_t c = 0; c < size && nc < 60; c += 512)
        cuts[nc++] = c;
    cuts[nc++] = size - 8;
    cuts[nc++] = size - 1;
    for (size_t i = 0; i <= nc; i++) {
        char what[96];
        tu_copy_dir(cc->after, cc->work);
        rp = path_in(cc->work, "truncate.redo");
        if (i < nc) {
            snprintf(what, sizeof what, "record cut to %llu of %llu bytes",
                     (unsigned long long)cuts[i], (unsigned long long)size);
            tu_truncate(rp, cuts[i]);
        } else {
            snprintf(what, sizeof what, "record with a flipped bit");
            tu_flip(rp, size / 2, 0x10);
        }
        free(rp);
        unsigned olds = cc->saw_old;
        expect_old_or_cut(cc, cc->work, what);
        if (cc->saw_old == olds)
            fail_msg("%s: an incomplete record was applied", what);
        tu_rmrf(cc->work);
    }
}

/* The ops of applying the record: a writable open of the log at its commit point, and close. */
static uint64_t apply_ops(crash_case *cc) {
    tu_copy_dir(cc->after, cc->work);
    kl_fault_plan plan = {.shared = 1};
    kl_io *io = tu_fault_io(&plan);
    kl_log *log = NULL;
    assert_int_equal(kl_log_open_io(cc->work, NULL, io, &log), 0);
    signed_state s;
    state_of(log, &s);
    assert_true(same_state(&s, &cc->cut));
    assert_int_equal(kl_log_close(log), 0);
    uint64_t ops = kl_io_fault_ops(io);
    kl_io_fault_free(io);
    tu_rmrf(cc->work);
    return ops;
}

/* Apply the record on a fault backend with `plan`; then power loss `mode` if it tracks power. */
static void apply_with(crash_case *cc, const kl_fault_plan *plan, int mode, const char *what) {
    tu_copy_dir(cc->after, cc->work);
    kl_io *io = tu_fault_io(plan);
    kl_log *log = NULL;
    int rc = kl_log_open_io(cc->work, NULL, io, &log);
    if (rc == 0) { /* the open absorbed the fault: then it finished the truncation */
        signed_state s;
        state_of(log, &s);
        if (!same_state(&s, &cc->cut))
            fail_msg("%s: an open that succeeded shows length %llu fork %llu", what,
                     (unsigned long long)s.length, (unsigned long long)s.fork);
        kl_log_close(log);
    }
    if (plan->track_power)
        assert_int_equal(kl_io_fault_power_loss(io, (enum kl_power_mode)mode), 0);
    kl_io_fault_free(io);
    expect_old_or_cut(cc, cc->work, what);
    tu_rmrf(cc->work);
}

/*
 * Two crashes: the application cut short after op `first` (power lost, unsynced writes
 * dropped), then the next open's application cut short after op `second` (torn): every
 * step of the application must be repeatable from wherever the last one stopped.
 */
static void crash_twice(crash_case *cc, uint64_t first, uint64_t second, const char *what) {
    tu_copy_dir(cc->after, cc->work);
    for (int round = 0; round < 2; round++) {
        kl_fault_plan plan = {.crash_after = round == 0 ? first : second,
                              .track_power = 1,
                              .skip_real_sync = 1,
                              .shared = 1,
                              .seed = first * 131u + second};
        kl_io *io = tu_fault_io(&plan);
        kl_log *log = NULL;
        if (kl_log_open_io(cc->work, NULL, io, &log) == 0)
            kl_log_close(log);
        assert_int_equal(kl_io_fault_power_loss(io, round == 0 ? KL_POWER_DROP : KL_POWER_TORN), 0);
        kl_io_fault_free(io);
    }
    expect_old_or_cut(cc, cc->work, what);
    tu_rmrf(cc->work);
}

static void crash_during_apply(crash_case *cc, uint64_t *points) {
    uint64_t total = apply_ops(cc);
    const int errs[] = {EIO, ENOSPC, EIO};
    const int kinds_[] = {KL_FAULT_ERROR, KL_FAULT_ERROR, KL_FAULT_SHORT};
    uint64_t stride = tu_fault_sweep_stride();
    for (uint64_t op = 1; op <= total;
         op = op + stride > total && op < total ? total : op + stride) {
        char what[128];
        for (int f = 0; f < 3; f++) {
            kl_fault_plan plan = {.fail_at = op,
                                  .fail_errno = errs[f],
                                  .fail_kind = kinds_[f],
                                  .skip_real_sync = 1,
                                  .shared = 1};
            snprintf(what, sizeof what, "truncate(%llu): op %llu of the apply fails (%d/%d)",
                     (unsigned long long)cc->n, (unsigned long long)op, errs[f], kinds_[f]);
            apply_with(cc, &plan, 0, what);
            (*points)++;
        }
        const enum kl_power_mode modes[] = {KL_POWER_KEEP, KL_POWER_DROP, KL_POWER_TORN};
        for (int m = 0; m < 3; m++) {
            kl_fault_plan plan = {.crash_after = op,
                                  .track_power = 1,
                                  .skip_real_sync = 1,
                                  .shared = 1,
                                  .seed = op * 31u + (uint64_t)m};
            snprintf(what, sizeof what,
                     "truncate(%llu): crash after op %llu of the apply, "
                     "power mode %d",
                     (unsigned long long)cc->n, (unsigned long long)op, (int)modes[m]);
            apply_with(cc, &plan, modes[m], what);
            (*points)++;
        }
        for (uint64_t again = 1 + op % 6; again <= total; again += 6) {
            snprintf(what, sizeof what,
                     "truncate(%llu): crash after op %llu of the apply, "
                     "then after op %llu of the next",
                     (unsigned long long)cc->n, (unsigned long long)op, (unsigned long long)again);
            crash_twice(cc, op, again, what);
            (*points)++;
        }
    }
    print_message("truncate(%llu) of %u blocks: %llu operations in its application\n",
                  (unsigned long long)cc->n, RECORDS, (unsigned long long)total);
}

static void crash_test(uint64_t n, const char *tag) {
    crash_case *cc = calloc(1, sizeof *cc);
    assert_non_null(cc);
    crash_case_init(cc, n, tag);
    crash_before_commit_point(cc);
    unsigned old_before = cc->saw_old;
    torn_record(cc);
    unsigned old_torn = cc->saw_old - old_before;
    unsigned cut_so_far = cc->saw_cut;
    uint64_t points = 0;
    crash_during_apply(cc, &points);
    /* the record was complete and durable before its application began: every crash in
       the application must end in the truncated log, never the old one */
    unsigned applied = cc->saw_cut - cut_so_far;
    print_message("truncate(%llu): %u crashes before the commit point and %u torn records "
                  "left the old log; %llu faults and crashes while applying it all ended in "
                  "the truncated log (%u)\n",
                  (unsigned long long)n, old_before, old_torn, (unsigned long long)points, applied);
    assert_int_equal(applied, points);
    crash_case_free(cc);
    free(cc);
}

static void test_a_crash_anywhere_in_a_mid_batch_truncation_leaves_old_or_new(void **state) {
    (void)state;
    /* mid-batch, in the second segment: later segments go, the batch is re-framed */
    base probe;
    make_base(&probe, "truncate-probe", rec_old, KL_CODEC_NONE, 0, KL_FSYNC_ALWAYS);
    uint64_t n = probe.segs[1] + 2;
    while (is_in(probe.batches, probe.nbatches + 1, n))
        n++;
    free_base(&probe);
    crash_test(n, "truncate-crash-mid");
}

static void test_a_crash_anywhere_in_a_truncation_to_zero_leaves_old_or_new(void **state) {
    (void)state;
    crash_test(0, "truncate-crash-zero");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncation_steps_match_hypercore),
        cmocka_unit_test(test_truncation_to_every_length_keeps_exactly_the_prefix),
        cmocka_unit_test(test_truncation_of_zstd_batches_in_a_compat_core_under_never),
        cmocka_unit_test(test_a_refused_truncation_changes_nothing),
        cmocka_unit_test(test_a_reader_open_across_a_truncation_never_crashes_or_mixes_forks),
        cmocka_unit_test(test_a_crash_anywhere_in_a_mid_batch_truncation_leaves_old_or_new),
        cmocka_unit_test(test_a_crash_anywhere_in_a_truncation_to_zero_leaves_old_or_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
