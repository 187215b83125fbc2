/*
 * peer_redis.c - Redis Streams as an append-only log, through a small C
 * client on hiredis: Debian's redis-server, started by the bench
 * (server.c) with its AOF on (`appendonly yes`, no RDB snapshots)
 * and `appendfsync everysec` (matched with kappalog's interval:1000) or
 * `always` (matched with always).
 *
 * Appends: XADD log * d <record>, pipelined: `batch` commands written with
 * redisAppendCommandArgv, then their `batch` replies read with
 * redisGetReply, one timed op per round (depth 64 and 1). Each append run
 * gets a fresh server with an empty directory, as kappalog's gets a fresh
 * log. Reads, from one server loaded with the records under explicit ids
 * 0-1, 0-2, ...: XRANGE in pages of READ_PAGE entries (the next page
 * starting after the last id, exclusive), and `XRANGE log ID ID` of random
 * ids, one round trip each.
 *
 * `appendfsync no` (AOF on, never fsynced by Redis) is the "none" class,
 * matched with kappalog's never. With k->producers > 1, each producer is a
 * thread with a hiredis context of its own (a context is not thread-safe)
 * on one fresh server. The visible run has a writer XADDing single records
 * at a steady pace (explicit ids 0-1, 0-2, ...) and a reader thread on a
 * second connection in XREAD BLOCK after the last id it saw.
 *
 * What a reader would get wrong: the server is a separate process on the
 * same machine, so its CPU competes with the client's; it is kept out of
 * the "other processes" warning (it is part of what is measured) and given
 * in the note. Stopping the server (which syncs its AOF) is not timed, as
 * kappalog's close is not. The storage figure is of the read store's AOF
 * after a BGREWRITEAOF (see rd_storage), not of the AOF as it was loaded.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef KL_BENCH_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include "compare.h"

#define READ_PAGE       1000  /* entries per XRANGE of the sequential read */
#define ID_CAP          24    /* "0-" and a 64-bit number */
#define READ_BLOCK_MS   "100" /* the visible reader's XREAD BLOCK: it checks for the end */
#define VISIBLE_DRAIN_S 5.0   /* the reader gives up this long after the writer's last XADD */
#define REWRITE_WAIT_S  300.0 /* BGREWRITEAOF of the read store (2,000,000 records: seconds) */

#ifdef KL_BENCH_HIREDIS

static char server_path[4096], server_version[32];
static cmp_server read_server;
static redisContext *read_ctx;

static int rd_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    return redis_server_find(server_path, sizeof server_path, server_version, sizeof server_version,
                             why, cap);
}

/* A fresh server in scratch/name with this appendfsync, and a client connected to it. */
static int start(const cmp_ctx *c, const char *name, const char *fsync, cmp_server *s,
                 redisContext **ctx, char *why, size_t cap) {
    char dir[4096];
    cmp_scratch(c, name, dir, sizeof dir);
    char *extra[] = {"--appendonly", "yes", "--appendfsync", (char *)fsync, NULL};
    if (redis_server_start(s, server_path, dir, extra, why, cap) < 0)
        return -1;
    *ctx = redisConnect("127.0.0.1", s->port);
    if (!*ctx || (*ctx)->err) {
        snprintf(why, cap, "hiredis: cannot connect to 127.0.0.1:%d: %s", s->port,
                 *ctx ? (*ctx)->errstr : "out of memory");
        redisFree(*ctx);
        *ctx = NULL;
        redis_server_stop(s);
        return -1;
    }
    return 0;
}

static void stop(cmp_server *s, redisContext **ctx) {
    if (*ctx)
        redisFree(*ctx);
    *ctx = NULL;
    redis_server_stop(s);
    rm_rf(s->dir);
}

/* One command's reply: 0 and *out if it is not an error, else -1 and why. */
static int reply(redisContext *ctx, redisReply **out, char *why, size_t cap) {
    void *r = NULL;
    if (redisGetReply(ctx, &r) != REDIS_OK || !r) {
        snprintf(why, cap, "hiredis: %s", ctx->errstr[0] ? ctx->errstr : "no reply");
        return -1;
    }
    *out = r;
    if ((*out)->type == REDIS_REPLY_ERROR) {
        snprintf(why, cap, "redis: %.200s", (*out)->str);
        freeReplyObject(*out);
        return -1;
    }
    return 0;
}

/* Send n XADDs of blocks b (with ids[i], or "*"), then read the n replies. */
static int xadd_round(redisContext *ctx, const kl_block *b, size_t n, char (*ids)[ID_CAP],
                      char *why, size_t cap) {
    for (size_t i = 0; i < n; i++) {
        const char *argv[5] = {"XADD", "log", ids ? ids[i] : "*", "d", b[i].data};
        size_t lens[5] = {4, 3, strlen(argv[2]), 1, b[i].size};
        if (redisAppendCommandArgv(ctx, 5, argv, lens) != REDIS_OK) {
            snprintf(why, cap, "hiredis: %s", ctx->errstr);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        if (reply(ctx, &r, why, cap) < 0)
            return -1;
        int ok = r->type == REDIS_REPLY_STRING;
        freeReplyObject(r);
        if (!ok) {
            snprintf(why, cap, "redis: XADD did not reply with an id");
            return -1;
        }
    }
    return 0;
}

static long long xlen(redisContext *ctx) {
    redisReply *r = redisCommand(ctx, "XLEN log");
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

/* The record of an XRANGE entry [id, [field, value]], or NULL. */
static const redisReply *entry_value(const redisReply *e) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements != 2)
        return NULL;
    return e->element[1]->element[1];
}

/* The single-producer append loop: one connection, `batch` XADDs per round trip. */
static int append_single(const cmp_ctx *c, const cmp_case *k, redisContext *ctx, cmp_out *out) {
    const bench_pool *p = k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    int rc = 0;
    uint64_t start_ns = now_ns(), t = start_ns, end = start_ns + (uint64_t)(c->append_s * 1e9);
    for (unsigned v = 0; t < end && out->run.bytes < c->run_cap_bytes && rc == 0; v++) {
        rc = xadd_round(ctx, pool_batch_blocks(p, v), p->batch, NULL, out->why, sizeof out->why);
        if (rc == 0)
            cmp_op_done(out, &t, p->batch, batch_bytes);
    }
    out->run.seconds = (double)(t - start_ns) / 1e9;
    return rc;
}

/* The producers of one append run: a thread and a connection each, one server. */
typedef struct rd_producers {
    const cmp_ctx *c;
    const cmp_case *k;
    int port;
} rd_producers;

/* A client of the server on port (a thread's own); NULL and why. */
static redisContext *connect_to(int port, char *why, size_t cap) {
    redisContext *ctx = redisConnect("127.0.0.1", port);
    if (!ctx || ctx->err) {
        snprintf(why, cap, "hiredis: cannot connect to 127.0.0.1:%d: %s", port,
                 ctx ? ctx->errstr : "out of memory");
        redisFree(ctx);
        return NULL;
    }
    return ctx;
}

static int rd_produce(void *arg, int i, uint64_t end, cmp_out *o) {
    const rd_producers *w = arg;
    const bench_pool *p = w->k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    uint64_t cap = w->c->run_cap_bytes / (uint64_t)w->k->producers;
    redisContext *ctx = connect_to(w->port, o->why, sizeof o->why);
    if (!ctx)
        return -1;
    int rc = 0;
    uint64_t start_ns = now_ns(), t = start_ns;
    for (unsigned v = (unsigned)i; t < end && o->run.bytes < cap && rc == 0; v++) {
        rc = xadd_round(ctx, pool_batch_blocks(p, v), p->batch, NULL, o->why, sizeof o->why);
        if (rc == 0)
            cmp_op_done(o, &t, p->batch, batch_bytes);
    }
    o->run.seconds = (double)(t - start_ns) / 1e9;
    redisFree(ctx);
    return rc;
}

static int rd_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    cmp_server s;
    redisContext *ctx = NULL;
    if (start(c, "redis-append", k->setting, &s, &ctx, out->why, sizeof out->why) < 0)
        return -1;
    cmp_cpu cpu;
    cmp_cpu_start(&cpu, s.pid);
    int rc;
    char how[96] = "";
    if (k->producers > 1) {
        rd_producers w = {.c = c, .k = k, .port = s.port};
        rc = cmp_run_producers(k, c->append_s, rd_produce, &w, out);
        snprintf(how, sizeof how, ", %d threads with a connection each", k->producers);
    } else {
        rc = append_single(c, k, ctx, out);
    }
    cmp_cpu_stop(&cpu, out);
    long long n = rc == 0 ? xlen(ctx) : -1;
    if (rc == 0 && n != (long long)out->run.records) {
        snprintf(out->why, sizeof out->why, "redis: XLEN is %lld, %llu were added", n,
                 (unsigned long long)out->run.records);
        rc = -1;
    }
    uint64_t c0 = now_ns();
    stop(&s, &ctx);
    snprintf(out->note, sizeof out->note,
             "redis-server %s, appendonly yes, appendfsync %s, no RDB, fresh server per run, "
             "XADD pipelined %zu deep over loopback (hiredis)%s; the server used %.2f CPU-s in "
             "the last run; its stop after the last run (not timed): %.3f s",
             server_version, k->setting, k->pool->batch, how, out->server_cpu_s,
             (double)(now_ns() - c0) / 1e9);
    return rc;
}

/*
 * The visible run's shared state. The writer stores start_ns[i] (release)
 * before it sends the XADD of entry 0-(i+1); the reader loads it (acquire)
 * once it has read that entry, so 0 there would mean an entry seen before
 * it was sent.
 */
typedef struct rd_visible {
    cmp_visible v; /* what cmp_visible_run shares with the reader */
    int port;
} rd_visible;

/* The entries of one XREAD reply ([[key, [entry...]]]): each checked and timed; 0 or -1. */
static int visible_entries(cmp_visible *v, const redisReply *r, char *last, size_t cap) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
        r->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
        snprintf(v->why, sizeof v->why, "reader: XREAD gave no [key, entries] array");
        return -1;
    }
    const redisReply *es = r->element[0]->element[1];
    for (size_t j = 0; j < es->elements; j++) {
        const redisReply *e = es->element[j], *val = entry_value(e);
        char want[ID_CAP];
        snprintf(want, sizeof want, "0-%llu", (unsigned long long)v->seen + 1);
        const kl_block *b = pool_batch_blocks(v->k->pool, (unsigned)v->seen);
        if (!val || val->type != REDIS_REPLY_STRING || val->len != b->size ||
            memcmp(val->str, b->data, b->size) != 0 || strcmp(e->element[0]->str, want) != 0) {
            snprintf(v->why, sizeof v->why, "reader: entry %s is not the record added as it", want);
            return -1;
        }
        uint64_t t0 = atomic_load_explicit(&v->start_ns[v->seen], memory_order_acquire);
        v->last_ns = now_ns();
        if (t0 == 0 || t0 > v->last_ns) {
            snprintf(v->why, sizeof v->why, "reader: saw entry %s before it was added", want);
            return -1;
        }
        hist_add(v->hist, v->last_ns - t0);
        v->seen++;
        snprintf(last, cap, "%s", want);
    }
    return 0;
}

static void *visible_reader(void *arg) {
    rd_visible *s = arg;
    cmp_visible *v = &s->v;
    redisContext *ctx = connect_to(s->port, v->why, sizeof v->why);
    if (!ctx)
        return NULL;
    char last[ID_CAP] = "0-0";
    uint64_t drain_end = 0;
    for (;;) {
        int done = atomic_load_explicit(&v->done, memory_order_acquire);
        uint64_t written = atomic_load_explicit(&v->written, memory_order_acquire);
        if (done && v->seen >= written)
            break;
        const char *argv[6] = {"XREAD", "BLOCK", READ_BLOCK_MS, "STREAMS", "log", last};
        size_t lens[6] = {5, 5, strlen(READ_BLOCK_MS), 7, 3, strlen(last)};
        redisReply *r = redisCommandArgv(ctx, 6, argv, lens);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(v->why, sizeof v->why, "reader: XREAD: %.200s", r ? r->str : ctx->errstr);
            if (r)
                freeReplyObject(r);
            break;
        }
        int rc = r->type == REDIS_REPLY_NIL ? 0 : visible_entries(v, r, last, sizeof last);
        int timed_out = r->type == REDIS_REPLY_NIL;
        freeReplyObject(r);
        if (rc < 0)
            break;
        if (timed_out && done && drain_end == 0)
            drain_end = now_ns() + (uint64_t)(VISIBLE_DRAIN_S * 1e9);
        if (drain_end && now_ns() > drain_end) {
            snprintf(v->why, sizeof v->why,
                     "reader: %llu of %llu added entries not visible %.0f s after the last XADD",
                     (unsigned long long)(written - v->seen), (unsigned long long)written,
                     VISIBLE_DRAIN_S);
            break;
        }
    }
    redisFree(ctx);
    return NULL;
}

typedef struct rd_writer {
    redisContext *ctx;
    const cmp_case *k;
} rd_writer;

/* Record i of the visible run: one XADD with the explicit id 0-(i+1). */
static int visible_append(void *arg, uint64_t i, char *why, size_t why_cap) {
    const rd_writer *w = arg;
    char id[1][ID_CAP];
    snprintf(id[0], ID_CAP, "0-%llu", (unsigned long long)i + 1);
    return xadd_round(w->ctx, pool_batch_blocks(w->k->pool, (unsigned)i), 1, id, why, why_cap);
}

static int rd_visible_run(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    cmp_server s;
    redisContext *ctx = NULL;
    if (start(c, "redis-append", k->setting, &s, &ctx, out->why, sizeof out->why) < 0)
        return -1;
    rd_visible v = {.v = {.k = k, .hist = out->hist}, .port = s.port};
    rd_writer w = {ctx, k};
    uint64_t late = 0;
    int rc = cmp_visible_run(c, &v.v, visible_reader, &v, visible_append, &w, s.pid, "entries",
                             &late, out);
    stop(&s, &ctx);
    snprintf(out->note, sizeof out->note,
             "redis-server %s, appendonly yes, appendfsync %s, a writer XADDing one %zu-byte "
             "record every %.0f us (clock_nanosleep to an absolute slot; %llu late slots not "
             "made up), a reader thread on a second connection in XREAD BLOCK %s after the last "
             "id seen; latency = its entry read - its XADD sent; the server used %.2f CPU-s",
             server_version, k->setting, k->record_bytes, k->pace_us, (unsigned long long)late,
             READ_BLOCK_MS, out->server_cpu_s);
    return rc;
}

/* XRANGE log id id into buf; its size, or -1 and why. */
static long point_read(redisContext *ctx, const char *id, uint8_t *buf, size_t cap, char *why,
                       size_t why_cap) {
    const char *argv[4] = {"XRANGE", "log", id, id};
    size_t idlen = strlen(id), lens[4] = {6, 3, idlen, idlen};
    redisReply *r = redisCommandArgv(ctx, 4, argv, lens);
    if (!r) {
        snprintf(why, why_cap, "hiredis: %s", ctx->errstr);
        return -1;
    }
    const redisReply *v =
        r->type == REDIS_REPLY_ARRAY && r->elements == 1 ? entry_value(r->element[0]) : NULL;
    long n = v && v->type == REDIS_REPLY_STRING && v->len <= cap ? (long)v->len : -1;
    if (n >= 0)
        memcpy(buf, v->str, (size_t)n);
    else
        snprintf(why, why_cap, "redis: XRANGE log %s %s gave no entry of at most %zu bytes", id, id,
                 cap);
    freeReplyObject(r);
    return n;
}

static int rd_load(const cmp_ctx *c, const cmp_case *k, char *why, size_t cap) {
    if (start(c, "redis-read", "everysec", &read_server, &read_ctx, why, cap) < 0)
        return -1;
    static char ids[CMP_LOAD_BATCH][ID_CAP];
    for (uint64_t i = 0; i < k->records; i += CMP_LOAD_BATCH) {
        for (unsigned j = 0; j < CMP_LOAD_BATCH; j++)
            snprintf(ids[j], ID_CAP, "0-%llu", (unsigned long long)(i + j + 1));
        if (xadd_round(read_ctx, cmp_record(k, i), CMP_LOAD_BATCH, ids, why, cap) < 0)
            return -1;
    }
    if (xlen(read_ctx) != (long long)k->records) {
        snprintf(why, cap, "redis: XLEN is not the %llu records added",
                 (unsigned long long)k->records);
        return -1;
    }
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    for (unsigned i = 0; i < CMP_CHECKS; i++) {
        uint64_t at = k->idx[i % k->nidx];
        char id[ID_CAP];
        snprintf(id, sizeof id, "0-%llu", (unsigned long long)at + 1);
        long n = point_read(read_ctx, id, buf, k->record_bytes, why, cap);
        const kl_block *b = cmp_record(k, at);
        if (n < 0 || (size_t)n != b->size || memcmp(buf, b->data, b->size) != 0)
            die("redis: entry %s holds other bytes than were added (%s)", id, why);
    }
    free(buf);
    return 0;
}

static int rd_read(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    (void)c;
    char from[ID_CAP + 1] = "-", count[16];
    snprintf(count, sizeof count, "%d", READ_PAGE);
    uint64_t sink = 0;
    cmp_cpu cpu;
    cmp_cpu_start(&cpu, read_server.pid);
    uint64_t start_ns = now_ns();
    for (;;) {
        const char *argv[6] = {"XRANGE", "log", from, "+", "COUNT", count};
        size_t lens[6] = {6, 3, strlen(from), 1, 5, strlen(count)};
        redisReply *r = redisCommandArgv(read_ctx, 6, argv, lens);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            snprintf(out->why, sizeof out->why, "redis: XRANGE %s: %s", from,
                     r ? "not an array" : read_ctx->errstr);
            if (r)
                freeReplyObject(r);
            return -1;
        }
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            const redisReply *v = entry_value(r->element[i]);
            if (!v || v->type != REDIS_REPLY_STRING || v->len == 0)
                die("redis: XRANGE gave an entry without a record");
            out->run.bytes += v->len;
            sink += (uint8_t)v->str[v->len - 1];
        }
        out->run.records += n;
        out->run.ops++;
        if (n > 0)
            snprintf(from, sizeof from, "(%.*s", ID_CAP - 1, r->element[n - 1]->element[0]->str);
        freeReplyObject(r);
        if (n < READ_PAGE)
            break;
    }
    out->run.seconds = (double)(now_ns() - start_ns) / 1e9;
    cmp_cpu_stop(&cpu, out);
    if (out->run.records != k->records)
        die("redis: read %llu entries of %llu", (unsigned long long)out->run.records,
            (unsigned long long)k->records);
    snprintf(out->note, sizeof out->note,
             "redis-server %s, XRANGE in pages of %d entries over loopback (hiredis), the "
             "server used %.2f CPU-s in the last run (sink %llu)",
             server_version, READ_PAGE, out->server_cpu_s, (unsigned long long)(sink & 0xff));
    return 0;
}

typedef struct rd_get_arg {
    char (*ids)[ID_CAP]; /* made before the clock starts */
    size_t mask;
} rd_get_arg;

static long get_one(void *arg, uint64_t i, uint8_t *buf, size_t cap, char *why, size_t why_cap) {
    const rd_get_arg *g = arg;
    return point_read(read_ctx, g->ids[i & g->mask], buf, cap, why, why_cap);
}

static int rd_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    rd_get_arg g = {malloc(k->nidx * sizeof *g.ids), k->nidx - 1};
    if (!g.ids)
        die("out of memory");
    for (size_t i = 0; i < k->nidx; i++)
        snprintf(g.ids[i], ID_CAP, "0-%llu", (unsigned long long)k->idx[i] + 1);
    cmp_cpu cpu;
    cmp_cpu_start(&cpu, read_server.pid);
    int rc = cmp_get_loop(c, k, get_one, &g, out);
    cmp_cpu_stop(&cpu, out);
    snprintf(out->note, sizeof out->note,
             "redis-server %s, XRANGE log ID ID of random ids, one round trip each over "
             "loopback (hiredis), the record copied into a buffer; the server used %.2f CPU-s "
             "in the last run",
             server_version, out->server_cpu_s);
    free(g.ids);
    return rc;
}

/* INFO persistence's field name (as "name:"), or -1 if it is not there. */
static long info_field(const char *info, const char *name) {
    const char *at = strstr(info, name);
    return at ? strtol(at + strlen(name), NULL, 10) : -1;
}

/* Files in dir whose names contain part (-1 if dir cannot be read). */
static int count_named(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* BGREWRITEAOF of the read store, and its wait until done; 0 or -1 and why. */
static int rewrite_aof(char *why, size_t cap) {
    redisReply *r = redisCommand(read_ctx, "BGREWRITEAOF");
    if (!r || (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "already in progress"))) {
        snprintf(why, cap, "BGREWRITEAOF: %.200s", r ? r->str : read_ctx->errstr);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    uint64_t end = now_ns() + (uint64_t)(REWRITE_WAIT_S * 1e9);
    for (;;) {
        r = redisCommand(read_ctx, "INFO persistence");
        if (!r || r->type != REDIS_REPLY_STRING) {
            snprintf(why, cap, "INFO persistence: %s", r ? "not a string" : read_ctx->errstr);
            if (r)
                freeReplyObject(r);
            return -1;
        }
        long busy = info_field(r->str, "aof_rewrite_in_progress:") +
                    info_field(r->str, "aof_rewrite_scheduled:");
        int ok = strstr(r->str, "aof_last_bgrewrite_status:ok") != NULL;
        freeReplyObject(r);
        if (busy == 0 && ok)
            return 0;
        if (busy == 0 || busy < 0 || now_ns() > end) {
            snprintf(why, cap, "BGREWRITEAOF %s",
                     busy == 0  ? "failed (see redis.log)"
                     : busy < 0 ? "gave no status in INFO"
                                : "did not finish in time");
            return -1;
        }
        usleep(10000);
    }
}

/*
 * What is measured: the read store lives in the server's memory; what it
 * keeps on disk is its AOF, the directory appendonlydir (Redis 7's
 * multi-part AOF: a manifest, a base file, an incr file), not redis.log.
 * As loaded, the AOF is the XADD commands themselves (RESP text) and
 * whatever automatic rewrites made of them on the way (the full run's load
 * passes auto-aof-rewrite-min-size), and with everysec its last writes may
 * still be pending. So the figure is of the AOF after a BGREWRITEAOF: an
 * RDB preamble (aof-use-rdb-preamble yes, Redis's default) holding the
 * stream as listpacks, and an empty incr file; Redis's most compact form
 * of the store, which it reaches by itself at the next automatic rewrite.
 * The as-loaded size is printed too. 0 (and why printed) if it fails: the
 * interface has no other way to say so.
 */
static uint64_t rd_storage(const cmp_ctx *c) {
    (void)c;
    char dir[4200], why[256];
    redisReply *r = redisCommand(read_ctx, "CONFIG GET appenddirname");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
    snprintf(dir, sizeof dir, "%s/%s", read_server.dir, ok ? r->element[1]->str : "appendonlydir");
    if (r)
        freeReplyObject(r);
    uint64_t loaded = cmp_disk_bytes(dir);
    if (rewrite_aof(why, sizeof why) < 0) {
        progress("compare redis: storage not measured: %s", why);
        return 0;
    }
    /* the old base and incr files are unlinked in the background after the rewrite */
    uint64_t end = now_ns() + 5000000000u;
    while (!(count_named(dir, ".base.") == 1 && count_named(dir, ".incr.") == 1)) {
        if (now_ns() > end) {
            progress("compare redis: storage not measured: %s still holds the files of "
                     "before the rewrite 5 s after it",
                     dir);
            return 0;
        }
        usleep(10000);
    }
    uint64_t rewritten = cmp_disk_bytes(dir);
    progress("compare redis: read store's AOF %llu bytes as loaded, %llu after BGREWRITEAOF "
             "(the figure)",
             (unsigned long long)loaded, (unsigned long long)rewritten);
    return rewritten;
}

static void rd_unload(const cmp_ctx *c) {
    (void)c;
    stop(&read_server, &read_ctx);
}

static void rd_teardown(const cmp_ctx *c) {
    rd_unload(c);
}

#else /* built without hiredis: every figure says so */

static int rd_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    snprintf(why, cap,
             "built without hiredis (libhiredis-dev; scripts/deps.sh test installs it, then "
             "configure the build again)");
    return -1;
}

#define rd_append      NULL
#define rd_visible_run NULL
#define rd_load        NULL
#define rd_storage     NULL
#define rd_read        NULL
#define rd_get         NULL
#define rd_unload      NULL
#define rd_teardown    NULL

#endif

const cmp_peer cmp_peer_redis = {
    .name = "redis",
    .append_verb = "xadd",
    .batch_word = "pipeline",
    .setting_word = "appendfsync",
    .read_verb = "xrange sequential",
    .get_verb = "xrange point",
    .setting = {[CMP_DUR_NONE] = "no", [CMP_DUR_INTERVAL] = "everysec", [CMP_DUR_EVERY] = "always"},
    .batches = {1, 64, 100, 1000},
    .producers = 1,
    .setup = rd_setup,
    .append = rd_append,
    .visible = rd_visible_run,
    .load = rd_load,
    .storage = rd_storage,
    .read = rd_read,
    .get = rd_get,
    .unload = rd_unload,
    .teardown = rd_teardown,
};
