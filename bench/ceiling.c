/*
 * ceiling.c - this disk's ceilings, measured with plain C loops in the same
 * directory as the logs, on the same record bytes and batch sizes:
 *
 *   write(2) no-sync    one write(2) per batch of records packed back to back
 *   write(2)+fdatasync  the same, plus fdatasync(2) after every write
 *   write(2) 64 KiB     100-byte records in 64 KiB writes, no sync (the
 *                       reference figure of the issue, ~14 M records/s)
 *   kappalog pattern    the system calls and bytes of one kappalog commit
 *                       under `never`, with none of its work: per batch, one
 *                       writev of the framing overhead plus the records, a
 *                       4 KiB header-slot write to a second file, and the
 *                       sparse-index entries to a third (docs/FORMAT.md). It
 *                       is the floor of what the engine can reach on this
 *                       kernel; the difference to it is the engine's own CPU.
 *
 * Each run appends to a new file and removes it afterwards; the loops
 * without sync run once untimed first (ceiling_write_file says why); the timing
 * (one clock read per write, as for kappalog) is the same as the append
 * scenarios', so the ratios compare like with like. append.c runs each
 * ceiling right before the matching append, repetition by repetition, so
 * a ratio pairs runs made a few seconds apart.
 *
 * The write(2) loop itself (ceiling_write_file) is also the ceiling peer
 * of `kappalog-bench compare` (compare/peer_ceiling.c): one loop, so the
 * two benchmarks' ceilings cannot drift apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"

#define REF_WRITE_BYTES (64u * 1024u)

void name_ceiling(char *out, size_t cap, int sync, size_t record_bytes, size_t batch) {
    snprintf(out, cap, "ceiling %s rec=%zuB batch=%zu",
             sync ? "write(2)+fdatasync" : "write(2) no-sync", record_bytes, batch);
}

void name_ceiling_bytes(char *out, size_t cap, size_t record_bytes, size_t write_bytes) {
    char b[32];
    fmt_bytes(b, sizeof b, write_bytes);
    snprintf(out, cap, "ceiling write(2) no-sync rec=%zuB write=%s", record_bytes, b);
}

/* All n bytes, or -1 (errno set; ENOSPC for a write that wrote nothing). */
static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w == 0)
            errno = ENOSPC;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Write batches from the pool for `seconds` or up to cap_bytes: into run, and
 * each write's time into h (NULL: untimed). The failing call's name, or NULL.
 */
static const char *write_loop(int fd, const bench_pool *p, size_t write_bytes, int sync,
                              double seconds, uint64_t cap_bytes, bench_run *run, bench_hist *h) {
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(seconds * 1e9);
    for (unsigned v = 0; t < end && run->bytes < cap_bytes; v++) {
        if (write_all(fd, pool_batch_bytes(p, v), write_bytes) < 0)
            return "write";
        if (sync && fdatasync(fd) < 0)
            return "fdatasync";
        uint64_t t1 = now_ns();
        if (h)
            hist_add(h, t1 - t);
        t = t1;
        run->ops++;
        run->bytes += write_bytes;
    }
    run->seconds = (double)(t - start) / 1e9;
    return NULL;
}

static int open_new(const char *path) {
    unlink(path);
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

int ceiling_write_file(const char *path, const bench_pool *p, size_t write_bytes, int sync,
                       double seconds, uint64_t cap_bytes, bench_run *run, bench_hist *h, char *why,
                       size_t why_cap) {
    if (write_bytes > p->record_bytes * p->batch) {
        snprintf(why, why_cap, "%zu bytes per write, the pool's batches hold %zu", write_bytes,
                 p->record_bytes * p->batch);
        return -1;
    }
    *run = (bench_run){0};
    const char *failed = NULL;
    int fd = open_new(path);
    if (fd >= 0 && !sync) {
        /*
         * A no-sync loop runs at memory speed, and on the virtual machines
         * this was measured on, memory the kernel hands out for the first
         * time in a while costs several times more to write: 1 GiB in 1 MiB
         * writes took 1.5-2.2 s right after a run of 100 KB writes and
         * 0.15 s when a run of the same writes had just freed its pages
         * (bench/ANALYSIS.md, "The write(2) ceilings"). So the loop runs
         * once untimed into a file that is then removed, and the timed run
         * writes into the pages that one freed.
         */
        bench_run warm = {0};
        failed = write_loop(fd, p, write_bytes, 0, seconds, cap_bytes, &warm, NULL);
        close(fd);
        fd = failed ? -1 : open_new(path);
    }
    if (fd < 0 && !failed) {
        snprintf(why, why_cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    if (!failed)
        failed = write_loop(fd, p, write_bytes, sync, seconds, cap_bytes, run, h);
    if (failed)
        snprintf(why, why_cap, "%s %s: %s", failed, path, strerror(errno));
    run->records = run->bytes / p->record_bytes;
    run->other_cpu_s = cpu_other_s(&cpu);
    if (fd >= 0)
        close(fd);
    unlink(path);
    return failed ? -1 : 0;
}

/* One run of the main benchmark: write `write_bytes` per op from the pool, into r. */
static void ceiling_run(const bench_opts *o, bench_result *r, const bench_pool *p,
                        size_t write_bytes, int sync, double seconds) {
    char path[4096], why[4200];
    path_join(path, sizeof path, o->dir, "ceiling.dat");
    bench_hist *h = malloc(sizeof *h);
    if (!h)
        die("out of memory");
    hist_reset(h);
    bench_run run;
    if (ceiling_write_file(path, p, write_bytes, sync, seconds, o->run_cap_bytes, &run, h, why,
                           sizeof why) < 0)
        die("ceiling: %s", why);
    settle(o->dir);
    result_add_run(r, &run, h);
    free(h);
}

void ceiling_one(const bench_opts *o, size_t rec, size_t batch, int sync) {
    char name[128];
    name_ceiling(name, sizeof name, sync, rec, batch);
    if (!want_scenario(o, name))
        return;
    bench_result *r = result_get("ceilings", sync ? "write_fdatasync" : "write_nosync", name);
    r->record_bytes = rec;
    r->batch = batch;
    r->write_bytes = rec * batch;
    snprintf(r->fsync, sizeof r->fsync, "%s", sync ? "always" : "never");
    bench_pool p;
    pool_init(&p, rec, batch, 42 + rec * 7 + batch);
    progress("%s: run %d", name, r->nruns + 1);
    ceiling_run(o, r, &p, rec * batch, sync, sync ? o->sync_s : o->ceil_s);
    pool_free(&p);
}

/* 100-byte records in 64 KiB writes: the reference of ~14 M records/s. */
void ceiling_reference(const bench_opts *o) {
    char name[128];
    name_ceiling_bytes(name, sizeof name, 100, REF_WRITE_BYTES);
    if (!want_scenario(o, name))
        return;
    bench_result *r = result_get("ceilings", "write_nosync", name);
    r->record_bytes = 100;
    r->batch = 0;
    r->write_bytes = REF_WRITE_BYTES;
    snprintf(r->fsync, sizeof r->fsync, "never");
    bench_pool p;
    pool_init(&p, 100, REF_WRITE_BYTES / 100 + 1, 4242);
    progress("%s: run %d", name, r->nruns + 1);
    ceiling_run(o, r, &p, REF_WRITE_BYTES, 0, o->ceil_s);
    pool_free(&p);
}

void name_pattern(char *out, size_t cap, size_t record_bytes, size_t batch) {
    snprintf(out, cap, "ceiling kappalog write pattern rec=%zuB batch=%zu", record_bytes, batch);
}

/* Bytes of framing around a batch (docs/FORMAT.md): header, chunk checksums, table. */
static size_t pattern_overhead(size_t rec, size_t batch) {
    size_t body = 4 * batch + rec * batch;
    return 64 + 8 * ((body + 1023) / 1024) + 4 * batch;
}

static int open_pattern_file(const bench_opts *o, const char *name, char *path, size_t cap) {
    path_join(path, cap, o->dir, name);
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    return fd;
}

/*
 * One pass of the pattern (see the file comment) into new files, removed
 * afterwards: into run, and each commit's time into h (NULL: untimed).
 */
static void pattern_pass(const bench_opts *o, const bench_pool *p, const uint8_t *side, size_t meta,
                         bench_run *run, bench_hist *h) {
    char seg[4096], hdr[4096], idx[4096];
    int fd = open_pattern_file(o, "pattern.log", seg, sizeof seg);
    int hfd = open_pattern_file(o, "pattern.hdr", hdr, sizeof hdr);
    int ifd = open_pattern_file(o, "pattern.idx", idx, sizeof idx);
    size_t data = p->record_bytes * p->batch;
    size_t idx_bytes = 8 * (data / 4096 + 1);
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(o->ceil_s * 1e9);
    for (unsigned v = 0; t < end && run->bytes < o->run_cap_bytes; v++) {
        struct iovec iov[2] = {{(void *)side, meta}, {(void *)pool_batch_bytes(p, v), data}};
        if (writev(fd, iov, 2) != (ssize_t)(meta + data) ||
            pwrite(hfd, side, 4096, (off_t)(v & 1) * 4096) != 4096 ||
            write(ifd, side, idx_bytes) != (ssize_t)idx_bytes)
            die("pattern write: %s", strerror(errno));
        uint64_t t1 = now_ns();
        if (h)
            hist_add(h, t1 - t);
        t = t1;
        run->ops++;
        run->bytes += data;
    }
    run->records = run->bytes / p->record_bytes;
    run->seconds = (double)(t - start) / 1e9;
    run->other_cpu_s = cpu_other_s(&cpu);
    close(fd);
    close(hfd);
    close(ifd);
    unlink(seg);
    unlink(hdr);
    unlink(idx);
}

/* One run of the pattern, after an untimed pass as ceiling_write_file's. */
static void pattern_run(const bench_opts *o, bench_result *r, const bench_pool *p) {
    size_t meta = pattern_overhead(p->record_bytes, p->batch);
    uint8_t *side = calloc(1, meta > 4096 ? meta : 4096);
    bench_hist *h = malloc(sizeof *h);
    if (!side || !h)
        die("out of memory");
    hist_reset(h);
    bench_run warm = {0}, run = {0};
    pattern_pass(o, p, side, meta, &warm, NULL);
    pattern_pass(o, p, side, meta, &run, h);
    settle(o->dir);
    result_add_run(r, &run, h);
    free(h);
    free(side);
}

void ceiling_pattern(const bench_opts *o, size_t rec, size_t batch) {
    char name[128];
    name_pattern(name, sizeof name, rec, batch);
    if (!want_scenario(o, name))
        return;
    bench_result *r = result_get("ceilings", "write_pattern", name);
    r->record_bytes = rec;
    r->batch = batch;
    r->write_bytes = rec * batch;
    snprintf(r->fsync, sizeof r->fsync, "never");
    bench_pool p;
    pool_init(&p, rec, batch, 42 + rec * 7 + batch);
    progress("%s: run %d", name, r->nruns + 1);
    pattern_run(o, r, &p);
    pool_free(&p);
}

void ceilings_print(void) {
    for (size_t i = 0; i < result_count(); i++)
        if (strcmp(result_at(i)->group, "ceilings") == 0)
            result_print(result_at(i));
}
