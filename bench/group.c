/*
 * group.c - the group commit ceiling: THREADS threads append single 100-byte
 * records to one file in plain C, each returning only once an fdatasync(2)
 * has covered its record, with the least a group commit needs and nothing
 * of kappalog's (no framing, checksums, tree or index):
 *
 *   - an append copies its record into the open group under one mutex;
 *   - a thread that finds no group being written takes the open group,
 *     writes it after the last one with pwrite(2) over zeroed space and
 *     fdatasyncs it, outside the mutex, then goes on with the next group
 *     for as long as one has filled meanwhile: under load that thread
 *     commits and the others only append and sleep;
 *   - the others sleep on a futex word of their group's ticket and are all
 *     woken by one FUTEX_WAKE when it is durable, and return without
 *     taking the mutex again.
 *
 * With one thread it is a pwrite(2) + fdatasync loop of single records over
 * zeroed space (kappalog's commits under `always` also write over zeroed
 * space, so neither pays for allocating blocks in its fdatasync).
 * Its figure at 64 threads, beside kappalog's in the same run, says what the
 * machine allows a group commit of single records from 64 threads: each
 * acknowledged append costs its thread a sleep and a wake-up whatever the
 * engine, and on a 2-core guest that cost, not the disk, sets the rate.
 *
 * What a reader would get wrong: this is the least work, not a better
 * design: it keeps nothing but the records' bytes (no framing, index,
 * header or tree, nothing to find a record or to recover by), and the
 * thread that commits under load may not return until the load stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

#define GROUP_WORDS 8u /* tickets asleep at once: the group syncing and the open one */

typedef struct group_buf {
    uint8_t *data;
    size_t len, cap;
} group_buf;

typedef struct group_log {
    pthread_mutex_t mu;
    int fd;
    uint64_t pos;    /* where the next group goes (the thread writing) */
    uint64_t zeroed; /* the file is zeroed and synced up to here (the thread writing) */
    group_buf bufs[2];
    group_buf *open;       /* records go here (mu) */
    uint64_t open_seq;     /* the ticket of the open group (mu) */
    int writing;           /* a thread writes and syncs a group (mu) */
    _Atomic uint64_t done; /* groups below this ticket are durable */
    _Atomic uint32_t word[GROUP_WORDS];
    _Atomic int failed; /* errno of a failed write or sync, 0 if none */
    const char *failed_what;
} group_log;

static void futex_wake_all(_Atomic uint32_t *w) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void futex_wait(_Atomic uint32_t *w, uint32_t seen) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void buf_put(group_buf *b, const uint8_t *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64 * 1024;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d)
            die("out of memory for a group of %zu bytes", b->len + n);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/*
 * Zero and sync ZERO_AHEAD more bytes of the file, as kappalog keeps zeroed
 * space ahead of its batches: an fdatasync of data written over them then
 * has no block to allocate and no file size to journal.
 */
#define ZERO_AHEAD (64u << 20)

static int zero_ahead(group_log *g) {
    static const uint8_t zeros[1 << 16];
    for (uint64_t end = g->zeroed + ZERO_AHEAD; g->zeroed < end;) {
        ssize_t w = pwrite(g->fd, zeros, sizeof zeros, (off_t)g->zeroed);
        if (w <= 0 && !(w < 0 && errno == EINTR))
            return -1;
        g->zeroed += w > 0 ? (uint64_t)w : 0;
    }
    return fdatasync(g->fd);
}

/* Write and sync the open group, and the next ones while any fill (mu held on entry and return). */
static void group_commit(group_log *g) {
    g->writing = 1;
    while (g->open->len > 0 && !g->failed) {
        group_buf *b = g->open;
        uint64_t seq = g->open_seq++;
        g->open = b == &g->bufs[0] ? &g->bufs[1] : &g->bufs[0];
        pthread_mutex_unlock(&g->mu);
        const char *what = NULL;
        if (g->pos + b->len > g->zeroed && zero_ahead(g) < 0)
            what = "write";
        for (size_t off = 0; off < b->len && !what;) {
            ssize_t w = pwrite(g->fd, b->data + off, b->len - off, (off_t)(g->pos + off));
            if (w > 0)
                off += (size_t)w;
            else if (w == 0 || errno != EINTR)
                what = "write";
        }
        g->pos += b->len;
        if (!what && fdatasync(g->fd) < 0)
            what = "fdatasync";
        int err = errno;
        b->len = 0;
        pthread_mutex_lock(&g->mu);
        if (what) {
            g->failed_what = what;
            atomic_store(&g->failed, err ? err : EIO);
            for (unsigned i = 0; i < GROUP_WORDS; i++) {
                atomic_fetch_add(&g->word[i], 1);
                futex_wake_all(&g->word[i]);
            }
            break;
        }
        atomic_store(&g->done, seq + 1);
        atomic_fetch_add(&g->word[seq % GROUP_WORDS], 1);
        futex_wake_all(&g->word[seq % GROUP_WORDS]);
    }
    g->writing = 0;
}

/* Append one record and return once it is durable; 0, or -1 if a write or sync failed. */
static int group_append(group_log *g, const uint8_t *rec, size_t n) {
    pthread_mutex_lock(&g->mu);
    buf_put(g->open, rec, n);
    uint64_t seq = g->open_seq;
    _Atomic uint32_t *w = &g->word[seq % GROUP_WORDS];
    while (atomic_load(&g->done) <= seq && !g->failed) {
        if (!g->writing) {
            group_commit(g);
            continue;
        }
        uint32_t seen = atomic_load(w);
        pthread_mutex_unlock(&g->mu);
        futex_wait(w, seen);
        if (atomic_load(&g->done) > seq)
            return 0; /* woken for its own group: not back through the mutex */
        pthread_mutex_lock(&g->mu);
    }
    int rc = atomic_load(&g->done) > seq ? 0 : -1;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static int group_append_one(void *target, const bench_pool *p, unsigned variant) {
    return group_append(target, pool_batch_bytes(p, variant), p->record_bytes);
}

void name_ceiling_group(char *out, size_t cap, int threads, size_t record_bytes) {
    snprintf(out, cap, "ceiling group commit threads=%d rec=%zuB batch=1 pwrite+fdatasync", threads,
             record_bytes);
}

static void group_run(const bench_opts *o, bench_result *r, const bench_pool *p, int n) {
    char path[4096];
    path_join(path, sizeof path, o->dir, "group-commit.dat");
    unlink(path);
    group_log g = {.open = NULL};
    g.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (g.fd < 0)
        die("%s: %s", path, strerror(errno));
    pthread_mutex_init(&g.mu, NULL);
    g.open = &g.bufs[0];
    if (zero_ahead(&g) < 0)
        die("zeroing %s: %s", path, strerror(errno));
    bench_run run;
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    conc_threads(o, p, n, group_append_one, &g, &run, h);
    if (g.failed)
        die("%s: %s %s: %s", r->name, g.failed_what, path, strerror(g.failed));
    if (g.pos != run.ops * p->record_bytes)
        die("%s: %llu bytes written, %llu records of %zu acknowledged", r->name,
            (unsigned long long)g.pos, (unsigned long long)run.ops, p->record_bytes);
    close(g.fd);
    unlink(path);
    pthread_mutex_destroy(&g.mu);
    free(g.bufs[0].data);
    free(g.bufs[1].data);
    settle(o->dir);
    result_add_run(r, &run, h);
    free(h);
}

bench_result *ceiling_group(const bench_opts *o, const bench_pool *p, int threads) {
    char name[128];
    name_ceiling_group(name, sizeof name, threads, p->record_bytes);
    if (!want_scenario(o, name))
        return NULL;
    bench_result *r = result_get("concurrency", "group_commit_c", name);
    r->record_bytes = p->record_bytes;
    r->batch = 1;
    r->threads = (uint64_t)threads;
    snprintf(r->fsync, sizeof r->fsync, "always");
    progress("%s: run %d", name, r->nruns + 1);
    group_run(o, r, p, threads);
    return r;
}
