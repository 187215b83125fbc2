/*
 * seal.c - computing the header, chunk checksums and table of lent batches
 * (written from the caller's memory) at commit time, and the sealer thread
 * that does it beside the write of their bytes.
 *
 * Why: under `interval` and `never` a big batch costs the kernel's copy of
 * its bytes into the page cache plus our hashing of every one of them; on
 * one core these add up, on two they overlap. The committer writes the lent
 * bytes while the sealer hashes them, then writes the batch headers and
 * checksums, then the header slot: the slot still follows every byte it
 * covers, which is all the ordering recovery relies on.
 *
 * The same thread takes half of a big append's leaf hashes (kl_hash_leaves):
 * under these policies hashing the blocks for the Merkle tree is most of an
 * append's cost, and with one appender the second core would be idle. The
 * appender posts the second half, hashes the first, then takes the second
 * back if the sealer has not started it (so a busy or sleeping sealer never
 * makes an append wait longer than hashing it alone would). In the same way
 * it builds the later half of a big append's subtrees at commit time
 * (kl_tree_grow).
 *
 * Under `always` there is no sealer: a commit's sync needs the kernel's
 * threads (the io_uring worker, the journal) on a core while the commit
 * hashes on the other, and with four or eight hashes at a time (b2b4.h)
 * one core keeps up. Measured with a sealer taking half of a commit's
 * leaves, against none: 1.26-1.32M against 1.31-1.35M records/s for batches
 * of 1,000 records of 100 bytes, 359-370k against 402-406k for 1 KiB
 * records.
 *
 * The one thing a reader would get wrong: the sealer writes into the commit
 * buffer's own bytes (the meta of each lent batch) while the committer
 * writes only lent pieces, which live in the callers' memory; the
 * committer touches the buffer's bytes again only after kl_sealer_wait.
 */
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "frame.h"
#include "log_internal.h"
#include "util.h"

void kl_seal_run(kl_commit_buf *b) {
    for (int i = 0; i < b->njobs; i++) {
        const kl_seal_job *j = &b->jobs[i];
        kl_batch_frame_split(b->data + j->meta_off, j->first_index, j->blocks, j->count, j->data,
                             j->data_bytes, j->timestamp_ms);
    }
    b->njobs = 0;
}

/*
 * Under steady load the next job comes within tens of microseconds, so both
 * sides spin this long before sleeping: a sleeping thread costs a futex wake
 * per commit, about as much as the hashing it was meant to hide.
 */
#define SPIN_NS 100000u

/* Appends of fewer blocks hash all their leaves themselves. */
#define LEAF_SPLIT_MIN 64u

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin until *flag or the spin time is up; returns whether it was seen. */
static int spin_for(_Atomic int *flag) {
    uint64_t until = kl_mono_ns() + SPIN_NS;
    for (unsigned i = 0;; i++) {
        if (atomic_load(flag))
            return 1;
        if ((i & 63) == 63 && kl_mono_ns() > until)
            return 0;
        cpu_relax();
    }
}

/* The sealer's next job, spinning first, then sleeping (NULL: quit). */
/* Leaf-hash job states (log->leaf_state). */
enum { LEAF_FREE, LEAF_POSTED, LEAF_TAKEN, LEAF_DONE, LEAF_SETUP };

static int has_work(kl_log *log) {
    return atomic_load(&log->sealer_job) || atomic_load(&log->leaf_state) == LEAF_POSTED ||
           atomic_load(&log->span_state) == LEAF_POSTED || atomic_load(&log->sealer_quit);
}

/* Wait for a job, spinning first, then sleeping. 0: quit. */
static int wait_work(kl_log *log) {
    uint64_t until = kl_mono_ns() + SPIN_NS;
    for (unsigned i = 0; !has_work(log); i++) {
        if ((i & 63) == 63 && kl_mono_ns() > until)
            break;
        cpu_relax();
    }
    pthread_mutex_lock(&log->sealer_mu);
    atomic_store(&log->sealer_sleeping, 1); /* then re-check: a poster that saw it wakes us */
    while (!has_work(log))
        pthread_cond_wait(&log->sealer_cv, &log->sealer_mu);
    atomic_store(&log->sealer_sleeping, 0);
    pthread_mutex_unlock(&log->sealer_mu);
    return !atomic_load(&log->sealer_quit);
}

static void wake_sealer(kl_log *log) {
    if (atomic_load(&log->sealer_sleeping)) {
        pthread_mutex_lock(&log->sealer_mu);
        pthread_cond_broadcast(&log->sealer_cv);
        pthread_mutex_unlock(&log->sealer_mu);
    }
}

/*
 * Post the second half of these leaves to the sealer if it can take them.
 * Returns the number of leading blocks left to the caller (all of them when
 * nothing was posted), which it passes to leaves_finish.
 */
static size_t leaves_post(kl_log *log, const kl_block *blocks, size_t count, uint8_t *hashes) {
    int state = LEAF_FREE;
    if (!log->sealer_on || count < LEAF_SPLIT_MIN ||
        !atomic_compare_exchange_strong(&log->leaf_state, &state, LEAF_SETUP))
        return count;
    size_t half = count / 2;
    log->leaf_blocks = blocks + half;
    log->leaf_count = count - half;
    log->leaf_out = hashes + KL_HASH_BYTES * half;
    atomic_store(&log->leaf_state, LEAF_POSTED);
    wake_sealer(log);
    return half;
}

/* Wait for the sealer to finish a job it took (*state LEAF_TAKEN). */
static void await_done(_Atomic int *state) {
    for (unsigned i = 0; atomic_load(state) != LEAF_DONE; i++) {
        if (i < 100000)
            cpu_relax();
        else
            sched_yield();
    }
}

/*
 * Hash the caller's part, then take the posted part back if the sealer has
 * not started it, or wait for it.
 */
static void leaves_finish(kl_log *log, const kl_block *blocks, size_t count, uint8_t *hashes,
                          size_t mine) {
    kl_tree_hash_leaves(blocks, mine, hashes);
    if (mine == count)
        return;
    int state = LEAF_POSTED;
    if (atomic_compare_exchange_strong(&log->leaf_state, &state, LEAF_FREE)) {
        kl_tree_hash_leaves(blocks + mine, count - mine, hashes + KL_HASH_BYTES * mine);
        return; /* taken back: the sealer never started it */
    }
    await_done(&log->leaf_state);
    atomic_store(&log->leaf_state, LEAF_FREE);
}

void kl_hash_leaves(kl_log *log, const kl_block *blocks, size_t count, uint8_t *hashes) {
    leaves_finish(log, blocks, count, hashes, leaves_post(log, blocks, count, hashes));
}

/*
 * The spans of a commit's blocks: after the leaves, the parents are the
 * other half of the Merkle work. Made by the committer alone they were 15%
 * of a profile's samples for batches of 1,000 x 100 B under `never`, while
 * the sealer spun idle beside them (27%). A run of at least SPAN_SPLIT_MIN
 * blocks is cut near its middle, on a multiple of SPAN_ALIGN blocks so that
 * both parts keep big spans; the sealer builds the later part's spans while
 * the committer builds the first, and the committer joins both to the roots
 * in order. Where a run is cut changes no node (tree.h). As with the
 * leaves, a part the sealer has not started is taken back.
 */
#define SPAN_SPLIT_MIN 256u
#define SPAN_ALIGN     64u

static void span_run(kl_span_job *j) {
    if (j->hash_leaves)
        kl_tree_hash_leaves(j->blocks, (size_t)(j->e - j->a), j->hashes);
    j->ntops = kl_tree_build_spans(j->blocks, j->hashes, j->a, j->e, j->low, j->base, j->nodes,
                                   j->scratch, j->tops);
}

void kl_tree_grow(kl_log *log, const kl_block *blocks, uint8_t *hashes, int hash_leaves,
                  size_t count, uint64_t base, uint8_t *nodes, kl_node *scratch) {
    uint64_t a = log->tb.length, e = a + count;
    kl_node tops[KL_TREE_MAX_SPANS];
    kl_span_job mine = {.blocks = blocks,
                        .hashes = hashes,
                        .hash_leaves = hash_leaves,
                        .a = a,
                        .e = e,
                        .base = base,
                        .low = log->tree_low,
                        .nodes = nodes,
                        .scratch = scratch,
                        .tops = tops};
    int state = LEAF_FREE;
    if (log->sealer_on && count >= SPAN_SPLIT_MIN &&
        atomic_compare_exchange_strong(&log->span_state, &state, LEAF_SETUP)) {
        /* a < m < e, as count / 2 > SPAN_ALIGN */
        uint64_t m = (a + count / 2) / SPAN_ALIGN * SPAN_ALIGN;
        size_t off = (size_t)(m - a);
        kl_span_job *theirs = &log->span;
        *theirs = mine;
        theirs->blocks += off;
        theirs->hashes += KL_HASH_BYTES * off;
        theirs->scratch += off;
        theirs->tops = log->span_tops;
        theirs->a = mine.e = m;
        atomic_store(&log->span_state, LEAF_POSTED);
        wake_sealer(log);
    }
    span_run(&mine);
    kl_treeb_join(&log->tb, mine.tops, mine.ntops, base, nodes);
    if (mine.e == e)
        return;
    state = LEAF_POSTED;
    if (atomic_compare_exchange_strong(&log->span_state, &state, LEAF_TAKEN))
        span_run(&log->span); /* taken back: the sealer never started it */
    else
        await_done(&log->span_state);
    kl_treeb_join(&log->tb, log->span.tops, log->span.ntops, base, nodes);
    atomic_store(&log->span_state, LEAF_FREE);
}

static void *sealer_main(void *arg) {
    kl_log *log = arg;
    while (wait_work(log)) {
        int state = LEAF_POSTED;
        if (atomic_compare_exchange_strong(&log->leaf_state, &state, LEAF_TAKEN)) {
            kl_tree_hash_leaves(log->leaf_blocks, log->leaf_count, log->leaf_out);
            atomic_store(&log->leaf_state, LEAF_DONE);
        }
        state = LEAF_POSTED;
        if (atomic_compare_exchange_strong(&log->span_state, &state, LEAF_TAKEN)) {
            span_run(&log->span);
            atomic_store(&log->span_state, LEAF_DONE);
        }
        kl_commit_buf *b = atomic_load(&log->sealer_job);
        if (!b)
            continue;
        kl_seal_run(b);
        atomic_store(&log->sealer_job, NULL);
        atomic_store(&log->sealer_done, 1);
        if (atomic_load(&log->poster_sleeping)) {
            pthread_mutex_lock(&log->sealer_mu);
            pthread_cond_broadcast(&log->sealer_cv);
            pthread_mutex_unlock(&log->sealer_mu);
        }
    }
    return NULL;
}

int kl_sealer_start(kl_log *log) {
    log->sealer_on = 0;
    if (log->readonly || sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return 0; /* nothing to overlap with: the single core dominates */
    if (log->cfg.fsync_mode == KL_FSYNC_ALWAYS)
        return 0; /* the sync's kernel work needs the other core (above) */
    if (pthread_create(&log->sealer, NULL, sealer_main, log) != 0)
        return 0; /* not fatal: batches are then sealed inline */
    log->sealer_on = 1;
    return 0;
}

void kl_sealer_stop(kl_log *log) {
    if (log->sealer_on) {
        pthread_mutex_lock(&log->sealer_mu);
        atomic_store(&log->sealer_quit, 1);
        pthread_cond_broadcast(&log->sealer_cv);
        pthread_mutex_unlock(&log->sealer_mu);
        pthread_join(log->sealer, NULL);
        log->sealer_on = 0;
    }
}

void kl_sealer_post(kl_log *log, kl_commit_buf *b) {
    KL_ASSERT(log->sealer_on && b->njobs > 0);
    KL_ASSERT(atomic_load(&log->sealer_job) == NULL);
    atomic_store(&log->sealer_done, 0);
    atomic_store(&log->sealer_job, b);
    wake_sealer(log);
}

void kl_sealer_wait(kl_log *log) {
    if (spin_for(&log->sealer_done))
        return;
    pthread_mutex_lock(&log->sealer_mu);
    atomic_store(&log->poster_sleeping, 1); /* then re-check, as next_job does */
    while (!atomic_load(&log->sealer_done))
        pthread_cond_wait(&log->sealer_cv, &log->sealer_mu);
    atomic_store(&log->poster_sleeping, 0);
    pthread_mutex_unlock(&log->sealer_mu);
}
