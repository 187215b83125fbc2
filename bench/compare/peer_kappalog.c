/*
 * peer_kappalog.c - kappalog itself as a peer of the compare run, through
 * the public C API as the main benchmark drives it (append.c, reads.c):
 * one kl_log_append call per batch of 1, 64, 100 or 1,000 prepared
 * records, on a fresh log opened with the fsync policy matched to the
 * peer's durability (interval:1000 against Redis everysec and SQLite WAL
 * NORMAL, always against Redis always and SQLite FULL); kl_iter over the
 * whole read store, and kl_log_get of random indexes into a buffer.
 *
 * never is the "none" class (against Redis appendfsync no and SQLite
 * synchronous=OFF). With k->producers > 1, that many threads append to one
 * handle: the log's group commit lets one fdatasync acknowledge the batches
 * of many of them. The visible run has a writer thread appending single
 * records at a steady pace and a reader thread blocked in kl_log_wait on
 * the same handle, which then reads each new record with kl_log_get.
 *
 * What a reader would get wrong: closing the log (which syncs what the
 * interval policy left pending) is not timed, as Redis's shutdown and
 * SQLite's close are not; its time is in the note. The read store is
 * written under never and synced by its close, then opened again, so reads
 * go through a fresh handle over page-cached files.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compare.h"

#define INTERVAL_MS     1000u
#define WAIT_SLICE_MS   100 /* the visible reader's kl_log_wait timeout: it checks for the end */
#define VISIBLE_DRAIN_S 5.0 /* the reader gives up this long after the writer's last append */

static kl_log *read_log;
static char read_path[4096];

static kl_log *open_log(const cmp_ctx *c, const char *path, kl_fsync_mode mode, int fresh) {
    if (fresh) {
        kl_config cfg;
        kl_config_default(&cfg);
        cfg.segment_bytes = c->o->segment_bytes;
        int rc = kl_log_create(path, &cfg);
        if (rc < 0)
            die_kl("kl_log_create", rc);
    }
    kl_open_options opts;
    kl_open_options_default(&opts);
    opts.io = c->o->io;
    opts.fsync_override = 1;
    opts.fsync_mode = mode;
    opts.fsync_interval_ms = INTERVAL_MS;
    kl_log *log = NULL;
    int rc = kl_log_open(path, &opts, &log);
    if (rc < 0)
        die_kl("kl_log_open", rc);
    return log;
}

static int kl_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    (void)why;
    (void)cap;
    return 0;
}

static kl_fsync_mode mode_of(cmp_durability dur) {
    return dur == CMP_DUR_EVERY  ? KL_FSYNC_ALWAYS
           : dur == CMP_DUR_NONE ? KL_FSYNC_NEVER
                                 : KL_FSYNC_INTERVAL;
}

/* The producers of one append run: threads sharing one handle. */
typedef struct kl_producers {
    kl_log *log;
    const cmp_ctx *c;
    const cmp_case *k;
} kl_producers;

static int kl_produce(void *arg, int i, uint64_t end, cmp_out *o) {
    const kl_producers *w = arg;
    const bench_pool *p = w->k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    uint64_t cap = w->c->run_cap_bytes / (uint64_t)w->k->producers;
    uint64_t start = now_ns(), t = start;
    for (unsigned v = (unsigned)i; t < end && o->run.bytes < cap; v++) {
        int rc = kl_log_append(w->log, pool_batch_blocks(p, v), p->batch, NULL);
        if (rc < 0) {
            snprintf(o->why, sizeof o->why, "kl_log_append: %s", kl_strerror(rc));
            return -1;
        }
        cmp_op_done(o, &t, p->batch, batch_bytes);
    }
    o->run.seconds = (double)(t - start) / 1e9;
    return 0;
}

/* The single-producer append loop, as the main benchmark's (append.c). */
static void append_single(const cmp_ctx *c, const cmp_case *k, kl_log *log, cmp_out *out) {
    const bench_pool *p = k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns(), t = start, end = start + (uint64_t)(c->append_s * 1e9);
    for (unsigned v = 0; t < end && out->run.bytes < c->run_cap_bytes; v++) {
        int rc = kl_log_append(log, pool_batch_blocks(p, v), p->batch, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
        cmp_op_done(out, &t, p->batch, batch_bytes);
    }
    out->run.seconds = (double)(t - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
}

static int kl_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char path[4096];
    cmp_scratch(c, "kappalog-append", path, sizeof path);
    kl_log *log = open_log(c, path, mode_of(k->dur), 1);
    if (k->producers > 1) {
        kl_producers w = {.log = log, .c = c, .k = k};
        cpu_mark cpu;
        cpu_mark_now(&cpu);
        int rc = cmp_run_producers(k, c->append_s, kl_produce, &w, out);
        out->run.other_cpu_s = cpu_other_s(&cpu);
        if (rc < 0) {
            kl_log_close(log);
            rm_rf(path);
            return -1;
        }
    } else {
        append_single(c, k, log, out);
    }
    if (kl_log_length(log) != out->run.records)
        die("kappalog: the log has %llu records, %llu were appended",
            (unsigned long long)kl_log_length(log), (unsigned long long)out->run.records);
    kl_info info;
    int rc = kl_log_info(log, &info);
    if (rc < 0)
        die_kl("kl_log_info", rc);
    uint64_t c0 = now_ns();
    rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    char how[96] = "";
    if (k->producers > 1)
        snprintf(how, sizeof how, ", %d threads appending to one handle (group commit)",
                 k->producers);
    snprintf(out->note, sizeof out->note,
             "kappalog %s, io %s, fsync %s, one kl_log_append per batch on a fresh log%s; "
             "close after the last run (not timed): %.3f s",
             kl_version(), info.io_backend, k->setting, how, (double)(now_ns() - c0) / 1e9);
    rm_rf(path);
    return 0;
}

/*
 * The visible run's shared state. The writer stores start_ns[i] (release)
 * before it appends record i; the reader loads it (acquire) once it has
 * seen record i, so 0 there would mean a record seen before it was sent.
 */
typedef struct kl_visible {
    cmp_visible v; /* what cmp_visible_run shares with the reader */
    kl_log *log;
} kl_visible;

/* Record i as the reader got it, checked against what was appended; 0 or -1 and why. */
static int visible_check(kl_visible *s, uint64_t i, uint8_t *buf) {
    cmp_visible *v = &s->v;
    size_t size = 0;
    int rc = kl_log_get(s->log, i, buf, v->k->record_bytes, &size);
    if (rc < 0) {
        snprintf(v->why, sizeof v->why, "reader: kl_log_get(%llu): %s", (unsigned long long)i,
                 kl_strerror(rc));
        return -1;
    }
    const kl_block *b = pool_batch_blocks(v->k->pool, (unsigned)i);
    if (size != b->size || memcmp(buf, b->data, size) != 0) {
        snprintf(v->why, sizeof v->why, "reader: record %llu holds other bytes than appended",
                 (unsigned long long)i);
        return -1;
    }
    return 0;
}

static void *visible_reader(void *arg) {
    kl_visible *s = arg;
    cmp_visible *v = &s->v;
    uint8_t *buf = malloc(v->k->record_bytes);
    if (!buf)
        die("out of memory");
    uint64_t drain_end = 0;
    for (;;) {
        int done = atomic_load_explicit(&v->done, memory_order_acquire);
        uint64_t written = atomic_load_explicit(&v->written, memory_order_acquire);
        if (done && v->seen >= written)
            break;
        int rc = kl_log_wait(s->log, v->seen, WAIT_SLICE_MS);
        if (rc < 0) {
            snprintf(v->why, sizeof v->why, "reader: kl_log_wait: %s", kl_strerror(rc));
            break;
        }
        if (rc == 0) {
            if (done && drain_end == 0)
                drain_end = now_ns() + (uint64_t)(VISIBLE_DRAIN_S * 1e9);
            if (drain_end && now_ns() > drain_end) {
                snprintf(v->why, sizeof v->why,
                         "reader: %llu of %llu appended records not visible %.0f s after the "
                         "last append",
                         (unsigned long long)(written - v->seen), (unsigned long long)written,
                         VISIBLE_DRAIN_S);
                break;
            }
            continue;
        }
        for (uint64_t len = kl_log_length(s->log); v->seen < len; v->seen++) {
            if (visible_check(s, v->seen, buf) < 0)
                goto out;
            uint64_t t0 = atomic_load_explicit(&v->start_ns[v->seen], memory_order_acquire);
            v->last_ns = now_ns();
            if (t0 == 0 || t0 > v->last_ns) {
                snprintf(v->why, sizeof v->why, "reader: saw record %llu before it was appended",
                         (unsigned long long)v->seen);
                goto out;
            }
            hist_add(v->hist, v->last_ns - t0);
        }
    }
out:
    free(buf);
    return NULL;
}

/* The writer: one record every pace; late slots are not made up. 0 or -1 and why. */
static int visible_append(void *arg, uint64_t i, char *why, size_t why_cap) {
    kl_visible *s = arg;
    int rc = kl_log_append(s->log, pool_batch_blocks(s->v.k->pool, (unsigned)i), 1, NULL);
    if (rc < 0)
        snprintf(why, why_cap, "writer: kl_log_append: %s", kl_strerror(rc));
    return rc < 0 ? -1 : 0;
}

static int kl_visible_run(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char path[4096];
    cmp_scratch(c, "kappalog-append", path, sizeof path);
    kl_visible v = {.v = {.k = k, .hist = out->hist}};
    v.log = open_log(c, path, mode_of(k->dur), 1);
    uint64_t late = 0;
    int rc =
        cmp_visible_run(c, &v.v, visible_reader, &v, visible_append, &v, 0, "records", &late, out);
    int crc = kl_log_close(v.log);
    if (crc < 0 && rc == 0) {
        snprintf(out->why, sizeof out->why, "kl_log_close: %s", kl_strerror(crc));
        rc = -1;
    }
    rm_rf(path);
    snprintf(out->note, sizeof out->note,
             "kappalog %s, fsync %s, a writer thread appending one %zu-byte record every %.0f us "
             "(clock_nanosleep to an absolute slot; %llu late slots not made up), a reader "
             "thread on the same handle in kl_log_wait, then kl_log_get of each new record; "
             "latency = its get returned - its append started",
             kl_version(), k->setting, k->record_bytes, k->pace_us, (unsigned long long)late);
    return rc;
}

static int kl_load(const cmp_ctx *c, const cmp_case *k, char *why, size_t cap) {
    (void)why;
    (void)cap;
    cmp_scratch(c, "kappalog-read", read_path, sizeof read_path);
    kl_log *log = open_log(c, read_path, KL_FSYNC_NEVER, 1);
    for (uint64_t i = 0; i < k->records; i += CMP_LOAD_BATCH) {
        int rc = kl_log_append(log, cmp_record(k, i), CMP_LOAD_BATCH, NULL);
        if (rc < 0)
            die_kl("kl_log_append", rc);
    }
    int rc = kl_log_close(log);
    if (rc < 0)
        die_kl("kl_log_close", rc);
    read_log = open_log(c, read_path, KL_FSYNC_NEVER, 0);
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    for (unsigned i = 0; i < CMP_CHECKS; i++) {
        uint64_t at = k->idx[i % k->nidx];
        size_t size = 0;
        rc = kl_log_get(read_log, at, buf, k->record_bytes, &size);
        if (rc < 0)
            die_kl("kl_log_get", rc);
        const kl_block *b = cmp_record(k, at);
        if (size != b->size || memcmp(buf, b->data, size) != 0)
            die("kappalog: kl_log_get(%llu) returned other bytes than were appended",
                (unsigned long long)at);
    }
    free(buf);
    return 0;
}

static int kl_read(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    (void)c;
    kl_iter *it = NULL;
    kl_record rec;
    uint64_t sink = 0;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    uint64_t start = now_ns();
    int rc = kl_iter_open(read_log, 0, UINT64_MAX, &it);
    if (rc < 0)
        die_kl("kl_iter_open", rc);
    while ((rc = kl_iter_next(it, &rec)) == 1) {
        out->run.bytes += rec.size;
        sink += ((const uint8_t *)rec.data)[rec.size - 1];
        out->run.records++;
    }
    if (rc < 0)
        die_kl("kl_iter_next", rc);
    kl_iter_close(it);
    out->run.seconds = (double)(now_ns() - start) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu);
    out->run.ops = out->run.records;
    if (out->run.records != k->records)
        die("kappalog: read %llu records of %llu", (unsigned long long)out->run.records,
            (unsigned long long)k->records);
    snprintf(out->note, sizeof out->note,
             "kl_iter over the whole log on a fresh handle, page-cached (sink %llu)",
             (unsigned long long)(sink & 0xff));
    return 0;
}

static long get_one(void *arg, uint64_t i, uint8_t *buf, size_t cap, char *why, size_t why_cap) {
    const cmp_case *k = arg;
    size_t size = 0;
    int rc = kl_log_get(read_log, k->idx[i & (k->nidx - 1)], buf, cap, &size);
    if (rc < 0) {
        snprintf(why, why_cap, "kl_log_get: %s", kl_strerror(rc));
        return -1;
    }
    return (long)size;
}

static int kl_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    int rc = cmp_get_loop(c, k, get_one, (void *)k, out);
    out->run.other_cpu_s = cpu_other_s(&cpu);
    snprintf(out->note, sizeof out->note,
             "kl_log_get of uniformly random indexes into a buffer, one thread, page-cached");
    return rc;
}

/* The read store's directory: its segments, index and header files as closed and reopened. */
static uint64_t kl_storage(const cmp_ctx *c) {
    (void)c;
    return cmp_disk_bytes(read_path);
}

static void kl_unload(const cmp_ctx *c) {
    (void)c;
    if (read_log) {
        int rc = kl_log_close(read_log);
        if (rc < 0)
            die_kl("kl_log_close", rc);
        read_log = NULL;
    }
    if (read_path[0])
        rm_rf(read_path);
    read_path[0] = '\0';
}

static void kl_teardown(const cmp_ctx *c) {
    kl_unload(c);
}

const cmp_peer cmp_peer_kappalog = {
    .name = "kappalog",
    .append_verb = "append",
    .batch_word = "batch",
    .setting_word = "fsync",
    .read_verb = "read sequential",
    .get_verb = "get random",
    .setting = {[CMP_DUR_NONE] = "never",
                [CMP_DUR_INTERVAL] = "interval:1000",
                [CMP_DUR_EVERY] = "always"},
    .batches = {1, 64, 100, 1000},
    .producers = 1,
    .setup = kl_setup,
    .append = kl_append,
    .visible = kl_visible_run,
    .load = kl_load,
    .storage = kl_storage,
    .read = kl_read,
    .get = kl_get,
    .unload = kl_unload,
    .teardown = kl_teardown,
};
