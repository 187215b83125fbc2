/*
 * peer_redis.c - Redis Streams as an append-only log, through a small C
 * client on hiredis: Debian's redis-server, started by the bench
 * (redis_server.c) with its AOF on (`appendonly yes`, no RDB snapshots)
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
 * What a reader would get wrong: the server is a separate process on the
 * same machine, so its CPU competes with the client's; it is kept out of
 * the "other processes" warning (it is part of what is measured) and given
 * in the note. Stopping the server (which syncs its AOF) is not timed, as
 * kappalog's close is not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KL_BENCH_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include "compare.h"

#define READ_PAGE 1000 /* entries per XRANGE of the sequential read */
#define ID_CAP    24   /* "0-" and a 64-bit number */

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

static int rd_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    cmp_server s;
    redisContext *ctx = NULL;
    if (start(c, "redis-append", k->setting, &s, &ctx, out->why, sizeof out->why) < 0)
        return -1;
    const bench_pool *p = k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    double srv0 = proc_cpu_s(s.pid);
    int rc = 0;
    uint64_t start_ns = now_ns(), t = start_ns, end = start_ns + (uint64_t)(c->append_s * 1e9);
    for (unsigned v = 0; t < end && out->run.bytes < c->run_cap_bytes && rc == 0; v++) {
        rc = xadd_round(ctx, pool_batch_blocks(p, v), p->batch, NULL, out->why, sizeof out->why);
        if (rc == 0)
            cmp_op_done(out, &t, p->batch, batch_bytes);
    }
    out->run.seconds = (double)(t - start_ns) / 1e9;
    out->server_cpu_s = proc_cpu_s(s.pid) - srv0;
    out->run.other_cpu_s = cpu_other_s(&cpu) - out->server_cpu_s;
    if (out->run.other_cpu_s < 0)
        out->run.other_cpu_s = 0;
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
             "XADD pipelined %zu deep over loopback (hiredis); the server used %.2f CPU-s in the "
             "last run; its stop after the last run (not timed): %.3f s",
             server_version, k->setting, p->batch, out->server_cpu_s,
             (double)(now_ns() - c0) / 1e9);
    return rc;
}

/* The record of an XRANGE entry [id, [field, value]], or NULL. */
static const redisReply *entry_value(const redisReply *e) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements != 2)
        return NULL;
    return e->element[1]->element[1];
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
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    double srv0 = proc_cpu_s(read_server.pid);
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
    out->server_cpu_s = proc_cpu_s(read_server.pid) - srv0;
    out->run.other_cpu_s = cpu_other_s(&cpu) - out->server_cpu_s;
    if (out->run.other_cpu_s < 0)
        out->run.other_cpu_s = 0;
    if (out->run.records != k->records)
        die("redis: read %llu entries of %llu", (unsigned long long)out->run.records,
            (unsigned long long)k->records);
    snprintf(out->note, sizeof out->note,
             "redis-server %s, XRANGE in pages of %d entries over loopback (hiredis), the "
             "server used %.2f CPU-s in the last run (sink %llu)",
             server_version, READ_PAGE, out->server_cpu_s, (unsigned long long)(sink & 0xff));
    return 0;
}

static int rd_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    char(*ids)[ID_CAP] = malloc(k->nidx * sizeof *ids);
    uint8_t *buf = malloc(k->record_bytes);
    if (!ids || !buf)
        die("out of memory");
    for (size_t i = 0; i < k->nidx; i++)
        snprintf(ids[i], ID_CAP, "0-%llu", (unsigned long long)k->idx[i] + 1);
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    double srv0 = proc_cpu_s(read_server.pid);
    int rc = 0;
    uint64_t start_ns = now_ns(), t = start_ns, end = start_ns + (uint64_t)(c->get_s * 1e9);
    for (uint64_t i = 0; t < end; i++) {
        long n = point_read(read_ctx, ids[i & (k->nidx - 1)], buf, k->record_bytes, out->why,
                            sizeof out->why);
        if (n < 0) {
            rc = -1;
            break;
        }
        cmp_op_done(out, &t, 1, (size_t)n);
    }
    out->run.seconds = (double)(t - start_ns) / 1e9;
    out->server_cpu_s = proc_cpu_s(read_server.pid) - srv0;
    out->run.other_cpu_s = cpu_other_s(&cpu) - out->server_cpu_s;
    if (out->run.other_cpu_s < 0)
        out->run.other_cpu_s = 0;
    snprintf(out->note, sizeof out->note,
             "redis-server %s, XRANGE log ID ID of random ids, one round trip each over "
             "loopback (hiredis), the record copied into a buffer; the server used %.2f CPU-s "
             "in the last run",
             server_version, out->server_cpu_s);
    free(ids);
    free(buf);
    return rc;
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

#define rd_append   NULL
#define rd_load     NULL
#define rd_read     NULL
#define rd_get      NULL
#define rd_unload   NULL
#define rd_teardown NULL

#endif

const cmp_peer cmp_peer_redis = {
    .name = "redis",
    .append_verb = "xadd",
    .batch_word = "pipeline",
    .setting_word = "appendfsync",
    .read_verb = "xrange sequential",
    .get_verb = "xrange point",
    .setting = {[CMP_DUR_INTERVAL] = "everysec", [CMP_DUR_EVERY] = "always"},
    .batches = {1, 64},
    .setup = rd_setup,
    .append = rd_append,
    .load = rd_load,
    .read = rd_read,
    .get = rd_get,
    .unload = rd_unload,
    .teardown = rd_teardown,
};
