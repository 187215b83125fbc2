/*
 * peer_nats.c - NATS JetStream as an append-only log, through the NATS C
 * client (Debian's libnats, 3.4): Debian's nats-server (2.9.10 in Debian
 * 12), started by the bench (server.c) with JetStream on, and one stream
 * LOG on the subject `log`, file storage, one replica, no limits.
 *
 * Appends: batch 1 is js_Publish, which waits for the stream's PubAck;
 * larger batches are `batch` js_PublishAsync calls then
 * js_PublishAsyncComplete (all PubAcks in): one timed op. Each append run
 * gets a fresh server with an empty store, as kappalog's gets a fresh log;
 * with k->producers > 1 each producer has a connection of its own, all
 * publishing to the one stream. Visible: one writer publishing single
 * records (js_Publish) at a steady pace, each carrying its number, and a
 * JetStream push consumer (ephemeral, AckNone) on a connection of its own
 * that takes the arrival time of each. Reads, from one server loaded with
 * the records (stream sequence = index + 1): a pull consumer (ephemeral,
 * AckNone) fetching pages of READ_PAGE messages, and direct gets
 * (js_DirectGetMsg, the stream has AllowDirect) of random sequences.
 *
 * Durability: nats-server 2.9.10 has no setting of it, so NATS has only
 * the class "none", its "default". Its file store (server/filestore.go,
 * stream.go at v2.9.10) writes each message to the stream's block file
 * with write(2) before it sends the PubAck (stream.go sets AsyncFlush =
 * false: "flush in place"), and fsyncs the block files only from a timer,
 * every 2 minutes (stream.go sets SyncInterval = 2 * time.Minute; the
 * option `sync_interval`, and `sync_interval: always`, came in v2.10.0);
 * not when a block file is full, nor at shutdown (fileStore.Stop writes
 * what is pending and closes the files without a sync). strace of the
 * server during an append run and its stop: pwrite64s, no fsync or
 * fdatasync. So a PubAck means "in the page cache", as kappalog's
 * fsync=never append does, never "on stable storage".
 *
 * What a reader would get wrong: the visible reader is a JetStream
 * consumer, not a core subscription on `log`: a core subscriber gets the
 * message as it passes through the server, before it is stored; a
 * consumer gets it from the stream, once stored, which is what "visible
 * in the log" means. And, as for Redis, the server's CPU competes with the
 * client's on the same machine; it is given in the note.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef KL_BENCH_NATS
#include <nats/nats.h>
#endif

#include "compare.h"

#define STREAM       "LOG"
#define SUBJECT      "log"
#define READ_PAGE    1000  /* messages per fetch of the sequential read */
#define API_WAIT_MS  10000 /* API calls, PubAcks: a fresh local server answers in ms */
#define ASYNC_MAX    4096  /* async publishes in flight: more than the largest batch (1000) */
#define VISIBLE_TAIL 5.0   /* s the visible reader waits for the last records, at most */

#ifdef KL_BENCH_NATS

/* One connection and its JetStream context. */
typedef struct client {
    natsConnection *nc;
    jsCtx *js;
    atomic_int async_errors; /* PubAcks of async publishes that were errors */
    char async_why[128];     /* the first of them */
} client;

static char server_path[4096], server_version[32];
static int lib_open;
static cmp_server read_server;
static client read_cl;

/* why = "what: status text (last error, JetStream code)". */
static void nats_why(char *why, size_t cap, const char *what, natsStatus s, jsErrCode jerr) {
    const char *detail = nats_GetLastError(NULL);
    snprintf(why, cap, "nats: %s: %s%s%.120s (JetStream error %d)", what, natsStatus_GetText(s),
             detail ? ": " : "", detail ? detail : "", (int)jerr);
}

static int nt_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    if (nats_server_find(server_path, sizeof server_path, server_version, sizeof server_version,
                         why, cap) < 0)
        return -1;
    natsStatus s = nats_Open(-1);
    if (s != NATS_OK) {
        nats_why(why, cap, "nats_Open", s, 0);
        return -1;
    }
    lib_open = 1;
    return 0;
}

/* Called by the library's thread for each async publish whose PubAck is an error. */
static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure) {
    (void)js;
    client *cl = closure;
    if (atomic_fetch_add(&cl->async_errors, 1) == 0)
        snprintf(cl->async_why, sizeof cl->async_why, "%s (JetStream error %d)",
                 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err), (int)pae->ErrCode);
}

static void client_close(client *cl) {
    jsCtx_Destroy(cl->js);
    natsConnection_Destroy(cl->nc);
    cl->js = NULL;
    cl->nc = NULL;
}

/* Connect to the server on 127.0.0.1:port, no reconnects (a dead server is an error). */
static int client_open(client *cl, int port, char *why, size_t cap) {
    memset(cl, 0, sizeof *cl);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK)
        s = natsConnection_Connect(&cl->nc, o);
    natsOptions_Destroy(o);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = API_WAIT_MS;
    jo.PublishAsync.MaxPending = ASYNC_MAX;
    jo.PublishAsync.ErrHandler = on_pub_error;
    jo.PublishAsync.ErrHandlerClosure = cl;
    if (s == NATS_OK)
        s = natsConnection_JetStream(&cl->js, cl->nc, &jo);
    if (s != NATS_OK) {
        nats_why(why, cap, url, s, 0);
        client_close(cl);
        return -1;
    }
    return 0;
}

static int stream_create(client *cl, char *why, size_t cap) {
    const char *subjects[] = {SUBJECT};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = 1;
    cfg.AllowDirect = true; /* js_DirectGetMsg: the point reads */
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, cl->js, &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        nats_why(why, cap, "js_AddStream " STREAM, s, jerr);
        return -1;
    }
    return 0;
}

/* Messages in the stream, or -1 and why. */
static long long stream_msgs(client *cl, char *why, size_t cap) {
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, cl->js, STREAM, NULL, &jerr);
    if (s != NATS_OK) {
        nats_why(why, cap, "js_GetStreamInfo " STREAM, s, jerr);
        return -1;
    }
    long long n = (long long)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/*
 * A fresh server in scratch/name with the stream LOG, and n clients
 * connected to it; 0, or -1 and why (nothing left running).
 */
static int start(const cmp_ctx *c, const char *name, cmp_server *srv, client *cls, int n, char *why,
                 size_t cap) {
    char dir[4096];
    cmp_scratch(c, name, dir, sizeof dir);
    if (nats_server_start(srv, server_path, dir, NULL, why, cap) < 0)
        return -1;
    int opened = 0;
    while (opened < n && client_open(&cls[opened], srv->port, why, cap) == 0)
        opened++;
    if (opened == n && stream_create(&cls[0], why, cap) == 0)
        return 0;
    while (opened > 0)
        client_close(&cls[--opened]);
    cmp_server_stop(srv);
    rm_rf(srv->dir);
    return -1;
}

static void stop(cmp_server *srv, client *cls, int n) {
    for (int i = 0; i < n; i++)
        client_close(&cls[i]);
    cmp_server_stop(srv);
    if (srv->dir[0])
        rm_rf(srv->dir);
}

/* Publish n records and wait for their PubAcks: js_Publish for one, async for more. */
static int publish(client *cl, const kl_block *b, size_t n, char *why, size_t cap) {
    jsErrCode jerr = 0;
    natsStatus s = NATS_OK;
    if (n == 1) {
        s = js_Publish(NULL, cl->js, SUBJECT, b->data, (int)b->size, NULL, &jerr);
        if (s != NATS_OK)
            nats_why(why, cap, "js_Publish", s, jerr);
        return s == NATS_OK ? 0 : -1;
    }
    for (size_t i = 0; i < n && s == NATS_OK; i++)
        s = js_PublishAsync(cl->js, SUBJECT, b[i].data, (int)b[i].size, NULL);
    if (s != NATS_OK) {
        nats_why(why, cap, "js_PublishAsync", s, 0);
        return -1;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = API_WAIT_MS;
    s = js_PublishAsyncComplete(cl->js, &po);
    if (s != NATS_OK) {
        nats_why(why, cap, "js_PublishAsyncComplete", s, 0);
        return -1;
    }
    if (atomic_load(&cl->async_errors) > 0) {
        snprintf(why, cap, "nats: %d async publishes failed: %s", atomic_load(&cl->async_errors),
                 cl->async_why);
        return -1;
    }
    return 0;
}

typedef struct append_arg {
    const cmp_ctx *c;
    const cmp_case *k;
    client *cls; /* one per producer */
} append_arg;

/* Producer i: publish batches on its own connection until end_ns (cmp_run_producers). */
static int produce(void *arg, int i, uint64_t end_ns, cmp_out *o) {
    const append_arg *a = arg;
    const bench_pool *p = a->k->pool;
    size_t batch_bytes = p->batch * p->record_bytes;
    uint64_t cap_bytes = a->c->run_cap_bytes / (uint64_t)a->k->producers;
    int rc = 0;
    uint64_t start_ns = now_ns(), t = start_ns;
    for (unsigned v = (unsigned)i; t < end_ns && o->run.bytes < cap_bytes && rc == 0; v++) {
        rc = publish(&a->cls[i], pool_batch_blocks(p, v), p->batch, o->why, sizeof o->why);
        if (rc == 0)
            cmp_op_done(o, &t, p->batch, batch_bytes);
    }
    o->run.seconds = (double)(t - start_ns) / 1e9;
    return rc;
}

static int nt_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    int n = k->producers < 1 ? 1 : k->producers;
    client *cls = calloc((size_t)n, sizeof *cls);
    if (!cls)
        die("out of memory");
    cmp_server srv;
    if (start(c, "nats-append", &srv, cls, n, out->why, sizeof out->why) < 0) {
        free(cls);
        return -1;
    }
    append_arg a = {c, k, cls};
    cmp_cpu cpu;
    cmp_cpu_start(&cpu, srv.pid);
    int rc = cmp_run_producers(k, c->append_s, produce, &a, out);
    cmp_cpu_stop(&cpu, out);
    long long msgs = rc == 0 ? stream_msgs(&cls[0], out->why, sizeof out->why) : -1;
    if (rc == 0 && msgs != (long long)out->run.records) {
        if (msgs >= 0)
            snprintf(out->why, sizeof out->why,
                     "nats: stream " STREAM " holds %lld, %llu were acked", msgs,
                     (unsigned long long)out->run.records);
        rc = -1;
    }
    uint64_t c0 = now_ns();
    stop(&srv, cls, n);
    free(cls);
    snprintf(out->note, sizeof out->note,
             "nats-server %s, JetStream file storage, stream " STREAM " (1 replica), sync: the "
             "server's only behaviour (write(2) before the PubAck, fsync every 2 min, not at stop; "
             "no option before 2.10), fresh server per run, %s over loopback (libnats %s), %d "
             "connection(s); the server used %.2f CPU-s in the last run; its stop (not timed): "
             "%.3f s",
             server_version,
             k->batch == 1 ? "js_Publish waiting for each PubAck"
                           : "js_PublishAsync of the batch, then js_PublishAsyncComplete",
             nats_GetVersion(), n, out->server_cpu_s, (double)(now_ns() - c0) / 1e9);
    return rc;
}

/* ---- append-to-visible ---- */

typedef struct visible_run {
    client *reader;
    natsSubscription *sub;
    uint64_t n;                 /* records the writer publishes */
    _Atomic uint64_t *start_ns; /* per record: when its publish started */
    atomic_int writer_done;     /* the writer has published all it will */
    bench_hist *hist;           /* the reader's alone */
    uint64_t seen;              /* records the reader got, in order */
    char why[256];              /* the reader's failure */
} visible_run;

/* The reader: each record's arrival, in order, until all n are in or the tail wait ends. */
static void *visible_reader(void *arg) {
    visible_run *v = arg;
    uint64_t tail_end = 0;
    while (v->seen < v->n) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, v->sub, 100);
        uint64_t now = now_ns();
        if (s == NATS_TIMEOUT) {
            if (atomic_load(&v->writer_done) && !tail_end)
                tail_end = now + (uint64_t)(VISIBLE_TAIL * 1e9);
            if (tail_end && now > tail_end)
                break;
            continue;
        }
        if (s != NATS_OK) {
            nats_why(v->why, sizeof v->why, "natsSubscription_NextMsg", s, 0);
            break;
        }
        uint64_t i = UINT64_MAX;
        if (natsMsg_GetDataLength(m) >= (int)sizeof i)
            memcpy(&i, natsMsg_GetData(m), sizeof i);
        natsMsg_Destroy(m);
        if (i != v->seen) {
            snprintf(v->why, sizeof v->why, "nats: the consumer got record %llu, expected %llu",
                     (unsigned long long)i, (unsigned long long)v->seen);
            break;
        }
        hist_add(v->hist, now - atomic_load_explicit(&v->start_ns[i], memory_order_acquire));
        v->seen++;
    }
    return NULL;
}

/* The writer: v->n records, record i carrying i in its first 8 bytes, one every pace_us. */
static int visible_write(client *w, const cmp_case *k, visible_run *v, char *why, size_t cap) {
    uint8_t rec[4096];
    if (k->record_bytes < sizeof(uint64_t) || k->record_bytes > sizeof rec)
        die("nats visible: records of %zu bytes", k->record_bytes);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < v->n; i++) {
        cmp_sleep_until(t0 + (uint64_t)((double)i * k->pace_us * 1e3));
        memcpy(rec, pool_batch_blocks(k->pool, (unsigned)i)->data, k->record_bytes);
        memcpy(rec, &i, sizeof i);
        kl_block b = {.data = rec, .size = k->record_bytes};
        atomic_store_explicit(&v->start_ns[i], now_ns(), memory_order_release);
        if (publish(w, &b, 1, why, cap) < 0)
            return -1;
    }
    return 0;
}

/* The reader's consumer: ephemeral, push, AckNone, from the (empty) stream's start. */
static int visible_subscribe(visible_run *v, char *why, size_t cap) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&v->sub, v->reader->js, SUBJECT, NULL, &so, &jerr);
    if (s != NATS_OK)
        nats_why(why, cap, "js_SubscribeSync (push consumer)", s, jerr);
    return s == NATS_OK ? 0 : -1;
}

static int nt_visible(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    client cls[2]; /* the writer's connection, the reader's */
    cmp_server srv;
    if (start(c, "nats-visible", &srv, cls, 2, out->why, sizeof out->why) < 0)
        return -1;
    visible_run v = {.reader = &cls[1], .hist = out->hist};
    v.n = (uint64_t)(c->append_s * 1e6 / k->pace_us);
    v.start_ns = calloc(v.n ? v.n : 1, sizeof *v.start_ns);
    if (!v.start_ns)
        die("out of memory");
    pthread_t t;
    int rc = visible_subscribe(&v, out->why, sizeof out->why);
    if (rc == 0 && pthread_create(&t, NULL, visible_reader, &v) != 0)
        die("cannot start the visible reader thread");
    uint64_t t0 = now_ns();
    if (rc == 0) {
        rc = visible_write(&cls[0], k, &v, out->why, sizeof out->why);
        atomic_store(&v.writer_done, 1);
        pthread_join(t, NULL);
    }
    out->run.seconds = (double)(now_ns() - t0) / 1e9;
    out->run.ops = out->run.records = v.seen;
    out->run.bytes = v.seen * k->record_bytes;
    if (rc == 0 && v.seen != v.n) {
        snprintf(out->why, sizeof out->why, "%.180s (the consumer saw %llu of %llu records)",
                 v.why[0] ? v.why : "nats: records went missing", (unsigned long long)v.seen,
                 (unsigned long long)v.n);
        rc = -1;
    }
    natsSubscription_Unsubscribe(v.sub);
    natsSubscription_Destroy(v.sub);
    free(v.start_ns);
    stop(&srv, cls, 2);
    snprintf(out->note, sizeof out->note,
             "nats-server %s, JetStream file storage; one writer (js_Publish, one record every "
             "%.0f us) and a JetStream push consumer (ephemeral, AckNone) on a connection of its "
             "own; latency = arrival at the consumer - start of the publish",
             server_version, k->pace_us);
    return rc;
}

/* ---- the read store ---- */

/* Direct get of sequence seq into buf; its size, or -1 and why. */
static long direct_get(client *cl, uint64_t seq, uint8_t *buf, size_t cap, char *why,
                       size_t why_cap) {
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.Sequence = seq;
    natsMsg *m = NULL;
    natsStatus s = js_DirectGetMsg(&m, cl->js, STREAM, NULL, &dg);
    if (s != NATS_OK) {
        nats_why(why, why_cap, "js_DirectGetMsg", s, 0);
        return -1;
    }
    int len = natsMsg_GetDataLength(m);
    long n = len >= 0 && (size_t)len <= cap ? (long)len : -1;
    if (n >= 0)
        memcpy(buf, natsMsg_GetData(m), (size_t)n);
    else
        snprintf(why, why_cap, "nats: message %llu is %d bytes, more than %zu",
                 (unsigned long long)seq, len, cap);
    natsMsg_Destroy(m);
    return n;
}

static int nt_load(const cmp_ctx *c, const cmp_case *k, char *why, size_t cap) {
    if (start(c, "nats-read", &read_server, &read_cl, 1, why, cap) < 0)
        return -1;
    for (uint64_t i = 0; i < k->records; i += CMP_LOAD_BATCH)
        if (publish(&read_cl, cmp_record(k, i), CMP_LOAD_BATCH, why, cap) < 0)
            return -1;
    long long msgs = stream_msgs(&read_cl, why, cap);
    if (msgs != (long long)k->records) {
        if (msgs >= 0)
            snprintf(why, cap,
                     "nats: stream " STREAM " holds %lld messages, not the %llu published", msgs,
                     (unsigned long long)k->records);
        return -1;
    }
    uint8_t *buf = malloc(k->record_bytes);
    if (!buf)
        die("out of memory");
    for (unsigned i = 0; i < CMP_CHECKS; i++) {
        uint64_t at = k->idx[i % k->nidx];
        long n = direct_get(&read_cl, at + 1, buf, k->record_bytes, why, cap);
        const kl_block *b = cmp_record(k, at);
        if (n < 0 || (size_t)n != b->size || memcmp(buf, b->data, b->size) != 0)
            die("nats: message %llu holds other bytes than were published (%s)",
                (unsigned long long)at + 1, n < 0 ? why : "compared");
    }
    free(buf);
    return 0;
}

static uint64_t nt_storage(const cmp_ctx *c) {
    (void)c;
    char path[4200];
    snprintf(path, sizeof path, "%s/jetstream", read_server.dir);
    return cmp_disk_bytes(path);
}

/* A pull consumer (ephemeral, AckNone) on the whole stream; made before the timer starts. */
static int pull_subscribe(natsSubscription **sub, char *why, size_t cap) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(sub, read_cl.js, SUBJECT, NULL, NULL, &so, &jerr);
    if (s != NATS_OK)
        nats_why(why, cap, "js_PullSubscribe", s, jerr);
    return s == NATS_OK ? 0 : -1;
}

static int nt_read(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    (void)c;
    natsSubscription *sub = NULL;
    if (pull_subscribe(&sub, out->why, sizeof out->why) < 0)
        return -1;
    uint64_t sink = 0;
    int rc = 0;
    cmp_cpu cpu;
    cmp_cpu_start(&cpu, read_server.pid);
    uint64_t start_ns = now_ns();
    while (out->run.records < k->records) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, READ_PAGE, API_WAIT_MS, &jerr);
        if (s != NATS_OK) {
            nats_why(out->why, sizeof out->why, "natsSubscription_Fetch", s, jerr);
            rc = -1;
            break;
        }
        for (int i = 0; i < list.Count; i++) {
            int len = natsMsg_GetDataLength(list.Msgs[i]);
            if (len <= 0)
                die("nats: fetch gave a message without a record");
            out->run.bytes += (uint64_t)len;
            sink += (uint8_t)natsMsg_GetData(list.Msgs[i])[len - 1];
        }
        out->run.records += (uint64_t)list.Count;
        out->run.ops++;
        natsMsgList_Destroy(&list);
    }
    out->run.seconds = (double)(now_ns() - start_ns) / 1e9;
    cmp_cpu_stop(&cpu, out);
    natsSubscription_Unsubscribe(sub); /* deletes the consumer (not timed) */
    natsSubscription_Destroy(sub);
    if (rc == 0 && out->run.records != k->records)
        die("nats: read %llu messages of %llu", (unsigned long long)out->run.records,
            (unsigned long long)k->records);
    snprintf(out->note, sizeof out->note,
             "nats-server %s, a pull consumer (ephemeral, AckNone, made before the timer) "
             "fetching %d messages at a time over loopback (libnats %s); the server used %.2f "
             "CPU-s in the last run (sink %llu)",
             server_version, READ_PAGE, nats_GetVersion(), out->server_cpu_s,
             (unsigned long long)(sink & 0xff));
    return rc;
}

static long get_one(void *arg, uint64_t i, uint8_t *buf, size_t cap, char *why, size_t why_cap) {
    const cmp_case *k = arg;
    return direct_get(&read_cl, k->idx[i & (k->nidx - 1)] + 1, buf, cap, why, why_cap);
}

static int nt_get(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    cmp_cpu cpu;
    cmp_cpu_start(&cpu, read_server.pid);
    int rc = cmp_get_loop(c, k, get_one, (void *)k, out);
    cmp_cpu_stop(&cpu, out);
    snprintf(out->note, sizeof out->note,
             "nats-server %s, js_DirectGetMsg of random sequences (stream AllowDirect), one "
             "round trip each over loopback (libnats %s), the record copied into a buffer; the "
             "server used %.2f CPU-s in the last run",
             server_version, nats_GetVersion(), out->server_cpu_s);
    return rc;
}

static void nt_unload(const cmp_ctx *c) {
    (void)c;
    stop(&read_server, &read_cl, 1);
}

static void nt_teardown(const cmp_ctx *c) {
    nt_unload(c);
    if (lib_open)
        nats_Close();
    lib_open = 0;
}

#else /* built without the NATS C client: every figure says so */

static int nt_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    snprintf(why, cap,
             "built without the NATS C client (libnats-dev; install it, then configure the "
             "build again)");
    return -1;
}

#define nt_append   NULL
#define nt_visible  NULL
#define nt_load     NULL
#define nt_storage  NULL
#define nt_read     NULL
#define nt_get      NULL
#define nt_unload   NULL
#define nt_teardown NULL

#endif

const cmp_peer cmp_peer_nats = {
    .name = "nats",
    .append_verb = "publish",
    .batch_word = "batch",
    .setting_word = "sync",
    .read_verb = "fetch sequential",
    .get_verb = "direct get",
    .setting = {[CMP_DUR_NONE] = "default"},
    .batches = {1, 100, 1000},
    .producers = 1,
    .setup = nt_setup,
    .append = nt_append,
    .visible = nt_visible,
    .load = nt_load,
    .storage = nt_storage,
    .read = nt_read,
    .get = nt_get,
    .unload = nt_unload,
    .teardown = nt_teardown,
};
