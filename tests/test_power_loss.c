/*
 * test_power_loss.c - simulated power loss at every operation of a scripted
 * workload, with the fault-injecting backend.
 *
 * The script: open, ~40 appends of 1..12 records of 0..1500 bytes into
 * 64 KiB segments (so segments roll), close, open again (recovery), more
 * appends, close. A dry run counts its I/O operations; then for every
 * operation index N the script runs again with the machine "losing power"
 * after operation N: every write not covered by a completed fdatasync is
 * dropped (KL_POWER_DROP) or torn at sector granularity (KL_POWER_TORN),
 * and directory entries not covered by a directory fsync may vanish. The
 * log is then reopened on a real backend and must hold:
 *   - under `always`: every acknowledged record, byte for byte;
 *   - under every policy: exactly a prefix of what was appended (nothing
 *     else, nothing corrupt), and appending goes on afterwards;
 *   - under `never`, after a process crash (nothing lost from the page
 *     cache): every acknowledged record;
 *   - under `interval:MS`: every record acknowledged more than MS (plus a
 *     scheduling allowance) before the power loss.
 * Two more scripts append big batches packed in one buffer (written from the
 * caller's memory; under `never`, checksummed by the sealer thread beside
 * the write of their bytes).
 * KL_CRASH_POINTS_ALL=1 runs every point of the slow interval script too.
 *
 * The log is a signed Hypercore core (made from a known seed), and the
 * signed root must survive every crash point with the data: each header
 * slot the loss left that checks out carries a valid signature, and after
 * the reopen kl_log_verify passes and the signed tree hash is the tree of
 * exactly the records recovered (recomputed here with hc.h's hashes),
 * signed with the seed's key at fork 0.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEED          0x5eed0001u
#define MAX_REC       1500u
#define MAX_BATCH     12u
#define PHASE_APPENDS 40u
#define MAX_ACKS      4096u

typedef struct run {
    uint64_t acked;             /* length after the last acknowledged append */
    uint64_t attempted;         /* length if every started append had landed */
    uint64_t ack_len[MAX_ACKS]; /* acknowledged lengths, in order ... */
    uint64_t ack_ns[MAX_ACKS];  /* ... and when (kl_mono_ns) */
    size_t nacks;
} run;

typedef struct script {
    kl_fsync_mode mode;
    uint32_t interval_ms;
    unsigned phase_appends;
    unsigned sleep_us; /* between appends (interval script) */
    int packed;        /* big batches packed in one buffer: written in place, sealed beside */
} script;

/* Packed script: PACKED_RECS records of up to PACKED_MAX bytes per append, back to back. */
#define PACKED_RECS 24u
#define PACKED_MAX  6000u

/* The key the logs are made with. */
#define KEY_BYTE 0x9au

/*
 * The tree hashes of every prefix of a record stream (records of up to
 * max_rec bytes), computed once and grown on demand: hash[n] is the tree of
 * records [0, n).
 */
typedef struct prefixes {
    size_t max_rec;
    tu_tree tree;
    uint8_t (*hash)[KL_HASH_BYTES];
    uint64_t n; /* hashes known: hash[0 .. n) */
} prefixes;

static void prefix_hash(size_t max_rec, uint64_t len, uint8_t out[KL_HASH_BYTES]) {
    static prefixes cache[2];
    prefixes *p = cache[0].max_rec == max_rec || cache[0].max_rec == 0 ? &cache[0] : &cache[1];
    assert_true(p->max_rec == max_rec || p->max_rec == 0);
    if (p->max_rec == 0) {
        p->max_rec = max_rec;
        tu_tree_init(&p->tree);
    }
    if (len >= p->n) {
        p->hash = realloc(p->hash, (size_t)(len + 1) * sizeof *p->hash);
        assert_non_null(p->hash);
        for (; p->n <= len; p->n++) {
            tu_tree_grow(&p->tree, SEED, max_rec, p->n);
            tu_tree_hash(&p->tree, p->hash[p->n]);
        }
    }
    memcpy(out, p->hash[len], KL_HASH_BYTES);
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *make_log(const script *sc) {
    char *dir = tu_tmpdir("power");
    size_t len = strlen(dir) + sizeof "/log";
    char *sub = malloc(len);
    assert_non_null(sub);
    snprintf(sub, len, "%s/log", dir);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.fsync_mode = sc->mode;
    cfg.fsync_interval_ms = sc->interval_ms ? sc->interval_ms : 1000;
    cfg.segment_bytes = sc->packed ? 1024u * 1024u : KL_MIN_SEGMENT_BYTES;
    uint8_t seed[KL_SEED_BYTES];
    tu_seed(seed, KEY_BYTE);
    cfg.seed = seed;
    tu_create(sub, &cfg);
    free(dir);
    return sub;
}

/* One phase: open on io, append until an error, close. 0 if it ran to the end. */
static int phase(const char *dir, kl_io *io, const script *sc, uint64_t *rng, run *r) {
    kl_log *log = NULL;
    if (kl_log_open_io(dir, NULL, io, &log) != 0)
        return -1;
    static uint8_t buf[MAX_BATCH][MAX_REC];
    static uint8_t packed[PACKED_RECS * PACKED_MAX];
    kl_block blocks[PACKED_RECS > MAX_BATCH ? PACKED_RECS : MAX_BATCH];
    int rc = 0;
    for (unsigned a = 0; a < sc->phase_appends && rc == 0; a++) {
        uint64_t first = kl_log_length(log);
        size_t n = sc->packed ? PACKED_RECS : 1 + (size_t)(tu_rand(rng) % MAX_BATCH);
        for (size_t k = 0, off = 0; k < n; k++) {
            uint8_t *p = sc->packed ? packed + off : buf[k];
            blocks[k].data = p;
            blocks[k].size = tu_record(SEED, first + k, sc->packed ? PACKED_MAX : MAX_REC, p);
            off += blocks[k].size;
        }
        r->attempted = first + n;
        uint64_t got = 0;
        rc = kl_log_append(log, blocks, n, &got);
        if (rc == 0) {
            assert_int_equal(got, first);
            r->acked = first + n;
            if (r->nacks < MAX_ACKS) {
                r->ack_len[r->nacks] = r->acked;
                r->ack_ns[r->nacks++] = mono_ns();
            }
        }
        if (sc->sleep_us)
            usleep(sc->sleep_us);
    }
    int crc = kl_log_close(log);
    return rc != 0 ? rc : crc;
}

/* The whole script on one fault backend. Returns the ops it issued. */
static uint64_t run_script(const char *dir, const script *sc, kl_io *io, run *r) {
    uint64_t rng = 0xabcdef;
    memset(r, 0, sizeof *r);
    if (phase(dir, io, sc, &rng, r) == 0)
        phase(dir, io, sc, &rng, r);
    return kl_io_fault_ops(io);
}

/* Reopened logs that verified and whose signature was checked. */
static uint64_t signed_checked;
/* Header slots a crash left unsigned (a commit under interval or never, published
   before its signature: commit.c, sign_last); the reopen must sign them. */
static uint64_t unsigned_left;

/* After the loss: a prefix of what was appended, at least `must_have`, and appends go on. */
static void check_after(const char *dir, const run *r, uint64_t must_have, size_t max_rec,
                        const char *what) {
    tu_expect_slots_trusted(dir, what, &unsigned_left); /* as the loss left them */
    kl_log *log = NULL;
    int rc = kl_log_open_io(dir, NULL, tu_io(), &log);
    if (rc != 0)
        fail_msg("%s: reopen failed: %d %s", what, rc, kl_last_error());
    uint64_t len = kl_log_length(log);
    if (len < must_have || len > r->attempted)
        fail_msg("%s: recovered length %llu, acknowledged %llu (must keep %llu), attempted %llu",
                 what, (unsigned long long)len, (unsigned long long)r->acked,
                 (unsigned long long)must_have, (unsigned long long)r->attempted);
    /* the signed root came back with the data */
    tu_expect_verified(log, what);
    uint8_t seed[KL_SEED_BYTES], th[KL_HASH_BYTES];
    tu_seed(seed, KEY_BYTE);
    prefix_hash(max_rec, len, th);
    tu_expect_signed(log, seed, 0, th, what);
    signed_checked++;
    assert_int_equal(kl_log_close(log), 0);
    tu_grow_and_check(dir, SEED, max_rec, len, len + 5, 3);
}

static uint64_t count_ops(const script *sc) {
    char *dir = make_log(sc);
    kl_fault_plan plan = {.track_power = 1, .skip_real_sync = 1, .shared = 1};
    kl_io *io = tu_fault_io(&plan);
    run *r = calloc(1, sizeof *r);
    uint64_t ops = run_script(dir, sc, io, r);
    assert_int_equal(r->acked, r->attempted); /* the dry run commits everything */
    kl_io_fault_free(io);
    free(r);
    tu_rm_log(dir);
    return ops;
}

/* Crash after op n, lose power in `mode`, check. Returns 1 if the crash point was reached. */
static int crash_at(const script *sc, uint64_t n, enum kl_power_mode mode, uint64_t seed) {
    char *dir = make_log(sc);
    kl_fault_plan plan = {
        .crash_after = n, .track_power = 1, .skip_real_sync = 1, .shared = 1, .seed = seed};
    kl_io *io = tu_fault_io(&plan);
    run *r = calloc(1, sizeof *r);
    run_script(dir, sc, io, r);
    int crashed = kl_io_fault_crashed(io);
    uint64_t crash_ns = kl_io_fault_crash_ns(io);
    assert_int_equal(kl_io_fault_power_loss(io, mode), 0);
    kl_io_fault_free(io);

    uint64_t must = 0;
    if (sc->mode == KL_FSYNC_ALWAYS || mode == KL_POWER_KEEP) {
        must = r->acked;
    } else if (sc->mode == KL_FSYNC_INTERVAL && crashed) {
        /* acknowledged more than interval + allowance before the loss must survive */
        uint64_t allowance_ns = ((uint64_t)sc->interval_ms + 250u) * 1000000u;
        for (size_t i = 0; i < r->nacks; i++)
            if (r->ack_ns[i] + allowance_ns <= crash_ns)
                must = r->ack_len[i];
    }
    char what[96];
    snprintf(what, sizeof what, "policy %d, crash after op %llu, mode %d", (int)sc->mode,
             (unsigned long long)n, (int)mode);
    check_after(dir, r, must, sc->packed ? PACKED_MAX : MAX_REC, what);
    free(r);
    tu_rm_log(dir);
    return crashed;
}

static void every_point(const script *sc, const enum kl_power_mode *modes, int nmodes,
                        uint64_t stride) {
    stride *= tu_fault_sweep_stride();
    uint64_t total = count_ops(sc);
    uint64_t points = 0, checked_before = signed_checked, unsigned_before = unsigned_left;
    /* a sampled sweep (testutil.h) takes one loss mode per point, in turn */
    int one_mode = tu_fault_sweep_stride() > 1;
    for (uint64_t n = 1; n <= total; n += stride)
        for (int m = 0; m < nmodes; m++) {
            if (one_mode && m != (int)((n / stride) % (uint64_t)nmodes))
                continue;
            crash_at(sc, n, modes[m], n * 7919u + (uint64_t)m);
            points++;
        }
    uint64_t unsigned_here = unsigned_left - unsigned_before;
    print_message("policy %d: %llu operations, %llu crash points checked (each: data, "
                  "kl_log_verify, signature over the records' tree); %llu left an unsigned "
                  "slot, signed by the reopen\n",
                  (int)sc->mode, (unsigned long long)total, (unsigned long long)points,
                  (unsigned long long)unsigned_here);
    assert_true(points >= total / stride);
    assert_int_equal(signed_checked - checked_before, points);
    if (sc->mode == KL_FSYNC_ALWAYS)
        assert_int_equal(unsigned_here, 0); /* always signs before the slot is written */
    else if (sc->mode == KL_FSYNC_NEVER)
        assert_true(unsigned_here > 0); /* the moment before the signature was crashed in */
}

static void test_always_keeps_every_acknowledged_record_at_every_crash_point(void **state) {
    (void)state;
    script sc = {.mode = KL_FSYNC_ALWAYS, .phase_appends = PHASE_APPENDS};
    enum kl_power_mode modes[] = {KL_POWER_DROP, KL_POWER_TORN};
    every_point(&sc, modes, 2, 1);
}

static void test_never_recovers_a_prefix_and_loses_nothing_on_process_crash(void **state) {
    (void)state;
    script sc = {.mode = KL_FSYNC_NEVER, .phase_appends = PHASE_APPENDS};
    enum kl_power_mode modes[] = {KL_POWER_TORN, KL_POWER_KEEP};
    every_point(&sc, modes, 2, 1);
}

static void test_interval_bound_holds_on_power_loss(void **state) {
    (void)state;
    script sc = {
        .mode = KL_FSYNC_INTERVAL, .interval_ms = 20, .phase_appends = 30, .sleep_us = 3000};
    enum kl_power_mode modes[] = {KL_POWER_DROP};
    const char *all = getenv("KL_CRASH_POINTS_ALL");
    /* Real time passes in this script (the flusher's timer): sample the points. */
    every_point(&sc, modes, 1, all && *all == '1' ? 1 : 4);
}

static void test_never_with_packed_batches_keeps_order_at_every_crash_point(void **state) {
    (void)state;
    /* Each append is ~70 KB packed in one buffer: written from there while the sealer
       thread computes its checksums, then its header, then the slot (seal.c). */
    script sc = {.mode = KL_FSYNC_NEVER, .phase_appends = 12, .packed = 1};
    enum kl_power_mode modes[] = {KL_POWER_KEEP, KL_POWER_TORN};
    every_point(&sc, modes, 2, 1);
}

static void test_always_with_packed_batches_keeps_every_acknowledged_record(void **state) {
    (void)state;
    script sc = {.mode = KL_FSYNC_ALWAYS, .phase_appends = 12, .packed = 1};
    enum kl_power_mode modes[] = {KL_POWER_DROP, KL_POWER_TORN};
    every_point(&sc, modes, 2, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_always_keeps_every_acknowledged_record_at_every_crash_point),
        cmocka_unit_test(test_never_recovers_a_prefix_and_loses_nothing_on_process_crash),
        cmocka_unit_test(test_interval_bound_holds_on_power_loss),
        cmocka_unit_test(test_never_with_packed_batches_keeps_order_at_every_crash_point),
        cmocka_unit_test(test_always_with_packed_batches_keeps_every_acknowledged_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
