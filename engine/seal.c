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
 * The same thread shares the Merkle work: under these policies hashing the
 * blocks is most of an append's cost, and with one appender the second core
 * would be idle. An appender with company takes half of its big append's
 * leaf hashes off to it (kl_hash_leaves): it posts the second half, hashes
 * the first, then takes the second back if the sealer has not started it
 * (so a busy or sleeping sealer never makes an append wait longer than
 * hashing it alone would). A lone appender leaves its leaves to its
 * commit, whose tree the committer and the sealer build in chunks while
 * the committer writes the batches (kl_tree_grow). And once commits pause,
 * the sealer signs the newest state if it is still owed (wait_work).
 *
 * Under `always` there is no sealer: a commit's sync needs the kernel's
 * threads (the io_uring worker, the journal) on a core while the commit
 * hashes on the other, and with four, eight or sixteen hashes at a time (b2b4.h)
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
#include <time.h>
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

/* Leaf-hash job states (log->leaf_state). */
enum { LEAF_FREE, LEAF_POSTED, LEAF_TAKEN, LEAF_DONE, LEAF_SETUP };

static int has_work(kl_log *log) {
    return atomic_load(&log->sealer_job) || atomic_load(&log->leaf_state) == LEAF_POSTED ||
           atomic_load(&log->grow_state) == LEAF_POSTED || atomic_load(&log->sealer_quit);
}

/* sealer_sleeping: awake, or asleep without a timeout, or until an idle check is due */
enum { AWAKE, ASLEEP, ASLEEP_TIMED };

/*
 * A writer under `interval` or `never` leaves the signature of its newest
 * state to later while appends keep coming (commit.c, sign_or_owe); the
 * sealer signs it once no commit has been made for about this long after
 * its spin (or the commit role signs it, SIGN_LAG_NS after the last one).
 */
#define IDLE_SIGN_NS 100000u

static void wait_until(kl_log *log, uint64_t ns) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* sealer_cv's clock */
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec = (time_t)(t / 1000000000u);
    ts.tv_nsec = (long)(t % 1000000000u);
    pthread_cond_timedwait(&log->sealer_cv, &log->sealer_mu, &ts);
}

/* Wait for a job, spinning first, then sleeping; sign an owed state when idle. 0: quit. */
static int wait_work(kl_log *log) {
    uint64_t until = kl_mono_ns() + SPIN_NS;
    for (unsigned i = 0; !has_work(log); i++) {
        if ((i & 63) == 63 && kl_mono_ns() > until)
            break;
        cpu_relax();
    }
    pthread_mutex_lock(&log->sealer_mu);
    while (!has_work(log)) {
        uint64_t leads = atomic_load(&log->leads);
        int owed = atomic_load(&log->sign_owed);
        /* set, then re-check: a poster (or an owing commit) that saw it wakes us */
        atomic_store(&log->sealer_sleeping, owed ? ASLEEP_TIMED : ASLEEP);
        if (!has_work(log) && (owed || !atomic_load(&log->sign_owed))) {
            if (owed)
                wait_until(log, IDLE_SIGN_NS);
            else
                pthread_cond_wait(&log->sealer_cv, &log->sealer_mu);
        }
        atomic_store(&log->sealer_sleeping, AWAKE);
        if (owed && !has_work(log) && atomic_load(&log->leads) == leads) {
            pthread_mutex_unlock(&log->sealer_mu); /* the commit role's mu comes first */
            kl_commit_sign_idle(log);
            pthread_mutex_lock(&log->sealer_mu);
        }
    }
    pthread_mutex_unlock(&log->sealer_mu);
    return !atomic_load(&log->sealer_quit);
}

static void wake_sealer(kl_log *log) {
    if (atomic_load(&log->sealer_sleeping) != AWAKE) {
        pthread_mutex_lock(&log->sealer_mu);
        pthread_cond_broadcast(&log->sealer_cv);
        pthread_mutex_unlock(&log->sealer_mu);
    }
}

void kl_sealer_owe_sign(kl_log *log) {
    if (log->sealer_on && atomic_load(&log->sealer_sleeping) == ASLEEP) {
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
 * The tree of a commit's blocks: after the leaves, the parents are the
 * other half of the Merkle work. Made by the committer alone they were 15%
 * of a profile's samples for batches of 1,000 x 100 B under `never`, while
 * the sealer spun idle beside them (27%). A run of at least GROW_SPLIT_MIN
 * blocks is cut into chunks on multiples of a power of two (GROW_CHUNK_MIN
 * blocks or more, at most GROW_CHUNKS_WANTED of them), so that every chunk
 * keeps big spans; the committer and the sealer take the chunks one at a
 * time, each building its chunk's spans (and leaves, if still to hash),
 * and the committer joins all their spans to the roots in order. Where a
 * run is cut changes no node (tree.h).
 *
 * Taking chunks rather than halves balances the two threads whatever each
 * has to do besides: the committer writes a commit's lent batches first
 * (`beside`), and the sealer seals them, while with halves the sealer spun
 * idle for about 60% of its samples. A sealer that is busy or asleep only
 * means the committer takes more chunks; the committer waits at most for
 * the one chunk the sealer is in. The spans of each chunk cost the
 * committer a join (a parent hashed alone), so more chunks balance better
 * but join more: for 1,000 x 100 B, 8 chunks beside the write made
 * 11.4-12.1M records/s against 10.0-10.6M with halves of the leaves, then
 * of the spans, then the write (interleaved runs, every commit signed in
 * both); 16 chunks were slower than 8 (6.3 against 3.9 us of joins).
 */
#define GROW_SPLIT_MIN     256u
#define GROW_CHUNK_MIN     64u
#define GROW_CHUNKS_WANTED 8u

static void grow_chunk(kl_grow_job *g, unsigned k) {
    uint64_t from = k == 0 ? g->a : (g->a / g->chunk + k) * g->chunk;
    uint64_t to = KL_MIN(g->e, (g->a / g->chunk + k + 1) * g->chunk);
    size_t off = (size_t)(from - g->a);
    uint8_t *hashes = g->hashes + KL_HASH_BYTES * off;
    if (g->hash_leaves)
        kl_tree_hash_leaves(g->blocks + off, (size_t)(to - from), hashes);
    g->ntops[k] = kl_tree_build_spans(g->blocks + off, hashes, from, to, g->low, g->base, g->nodes,
                                      g->scratch + off, g->tops[k]);
}

static void grow_work(kl_grow_job *g) {
    for (unsigned k; (k = atomic_fetch_add(&g->next, 1)) < g->nchunks;)
        grow_chunk(g, k);
}

void kl_beside_run(kl_beside *beside) {
    if (beside && !beside->ran) {
        beside->ran = 1;
        beside->rc = beside->fn(beside->arg);
    }
}

void kl_tree_grow(kl_log *log, const kl_block *blocks, uint8_t *hashes, int hash_leaves,
                  size_t count, uint64_t base, uint8_t *nodes, kl_node *scratch,
                  kl_beside *beside) {
    uint64_t a = log->tb.length, e = a + count;
    int state = LEAF_FREE;
    if (!log->sealer_on || !log->grow.tops || count < GROW_SPLIT_MIN ||
        !atomic_compare_exchange_strong(&log->grow_state, &state, LEAF_SETUP)) {
        kl_beside_run(beside);
        kl_node tops[KL_TREE_MAX_SPANS];
        if (hash_leaves)
            kl_tree_hash_leaves(blocks, count, hashes);
        size_t n =
            kl_tree_build_spans(blocks, hashes, a, e, log->tree_low, base, nodes, scratch, tops);
        kl_treeb_join(&log->tb, tops, n, base, nodes);
        return;
    }
    kl_grow_job *g = &log->grow;
    uint64_t chunk = GROW_CHUNK_MIN;
    while (count / chunk > GROW_CHUNKS_WANTED)
        chunk *= 2;
    g->blocks = blocks;
    g->hashes = hashes;
    g->hash_leaves = hash_leaves;
    g->a = a;
    g->e = e;
    g->chunk = chunk;
    g->base = base;
    g->low = log->tree_low;
    g->nchunks = (unsigned)((e - 1) / chunk - a / chunk + 1); /* <= count / chunk + 2 */
    g->nodes = nodes;
    g->scratch = scratch;
    KL_ASSERT(g->nchunks <= KL_GROW_MAX_CHUNKS);
    atomic_store(&g->next, 0);
    atomic_store(&log->grow_state, LEAF_POSTED);
    wake_sealer(log);
    kl_beside_run(beside);
    grow_work(g);
    state = LEAF_POSTED;
    if (!atomic_compare_exchange_strong(&log->grow_state, &state, LEAF_FREE)) {
        await_done(&log->grow_state); /* the sealer's last chunk */
        atomic_store(&log->grow_state, LEAF_FREE);
    }
    for (unsigned k = 0; k < g->nchunks; k++)
        kl_treeb_join(&log->tb, g->tops[k], g->ntops[k], base, nodes);
}

static void *sealer_main(void *arg) {
    kl_log *log = arg;
    while (wait_work(log)) {
        int state = LEAF_POSTED;
        if (atomic_compare_exchange_strong(&log->leaf_state, &state, LEAF_TAKEN)) {
            kl_tree_hash_leaves(log->leaf_blocks, log->leaf_count, log->leaf_out);
            atomic_store(&log->leaf_state, LEAF_DONE);
        }
        kl_commit_buf *b = atomic_load(&log->sealer_job);
        if (b) { /* first: the committer waits for it after its part of the tree */
            kl_seal_run(b);
            atomic_store(&log->sealer_job, NULL);
            atomic_store(&log->sealer_done, 1);
            if (atomic_load(&log->poster_sleeping)) {
                pthread_mutex_lock(&log->sealer_mu);
                pthread_cond_broadcast(&log->sealer_cv);
                pthread_mutex_unlock(&log->sealer_mu);
            }
        }
        state = LEAF_POSTED;
        if (atomic_compare_exchange_strong(&log->grow_state, &state, LEAF_TAKEN)) {
            grow_work(&log->grow);
            atomic_store(&log->grow_state, LEAF_DONE);
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
    log->grow.tops = malloc(KL_GROW_MAX_CHUNKS * sizeof *log->grow.tops);
    if (!log->grow.tops)
        return 0; /* not fatal: batches are then sealed inline, trees built alone */
    if (pthread_create(&log->sealer, NULL, sealer_main, log) != 0) {
        free(log->grow.tops);
        log->grow.tops = NULL;
        return 0;
    }
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
    free(log->grow.tops);
    log->grow.tops = NULL;
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
