/*
 * compare.h - what the files of `kappalog-bench compare` share: the run's
 * settings, the workloads (cases), what one timed run gives back, and the
 * peer interface every compared system implements (kappalog, the C-loop
 * and fio ceilings, SQLite, Redis Streams, NATS JetStream, hypercore).
 *
 * A peer is a small module: a table of names and settings, and functions
 * the driver (compare.c) calls in this order:
 *   setup                once, before anything is timed; -1 and why: every
 *                        figure of the peer is then "not measured", with why
 *   append               one timed append run on a fresh store of the peer's
 *                        own (it makes it, times the loop, removes it)
 *   visible              (optional) append-to-visible latency: one writer
 *                        appends single records at a steady pace, a
 *                        reader of its own (thread, connection, process)
 *                        waits for each; latency = seen - append started
 *   load, storage,       the read store: `records` records written untimed
 *   read, get, unload    (and a sample read back and checked), its bytes on
 *                        disk, then timed sequential reads of everything
 *                        and random point reads, then removed
 *   teardown             once, at the end (and it must be safe to call
 *                        after a failed setup)
 *
 * Durability is matched by class, not by name: each peer says which of its
 * settings gives "interval ~1 s" and which "every batch" (kappalog's
 * interval:1000 and always, Redis's everysec and always, SQLite WAL's
 * NORMAL and FULL).
 *
 * What a reader would get wrong: "batch" is what one timed op carries:
 * records per kl_log_append call, XADDs per pipeline round trip, rows per
 * SQLite transaction. Latency is per op, so per batch.
 */
#ifndef KL_BENCH_COMPARE_H
#define KL_BENCH_COMPARE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"

typedef enum cmp_op { CMP_APPEND = 0, CMP_READ, CMP_GET, CMP_VISIBLE } cmp_op;

/*
 * A peer without a setting of some class leaves it NULL: its figures of
 * that class are "not measured" with the reason.
 */
typedef enum cmp_durability {
    CMP_DUR_NONE = 0, /* never synced by the peer: the OS writes back when it likes */
    CMP_DUR_INTERVAL, /* synced about once a second */
    CMP_DUR_EVERY,    /* every batch is on stable storage when acknowledged */
    CMP_DUR_N
} cmp_durability;

#define CMP_MAX_BATCHES 8
#define CMP_LOAD_BATCH  1000u /* records per write while a read store is loaded */
#define CMP_CHECKS      1000u /* point reads compared byte for byte after a load */

/* The settings of one compare run (compare.c fills it from the options). */
typedef struct cmp_ctx {
    const bench_opts *o;     /* quick, dir (scratch, on the disk measured), io, reps */
    double append_s;         /* one append run */
    double get_s;            /* one random point-read run */
    uint64_t run_cap_bytes;  /* no append run writes more payload than this */
    uint64_t read_records;   /* records in each read store, before the byte cap */
    uint64_t read_cap_bytes; /* payload bytes of a read store at most */
} cmp_ctx;

/* One workload as a peer sees it. */
typedef struct cmp_case {
    cmp_op op;
    size_t record_bytes;
    size_t batch;           /* CMP_APPEND: records per op; reads: CMP_LOAD_BATCH */
    cmp_durability dur;     /* CMP_APPEND only */
    const char *setting;    /* the peer's own name of dur: "interval:1000", "everysec", "FULL" */
    const bench_pool *pool; /* the records, made up front: batches of `batch` records */
    int producers;          /* CMP_APPEND: concurrent producers (threads, connections), 1+ */
    double pace_us;         /* CMP_VISIBLE: one record every pace_us microseconds */
    uint64_t records;       /* CMP_READ, CMP_GET: records in the read store */
    const uint64_t *idx;    /* CMP_GET: random indexes < records, drawn up front */
    size_t nidx;            /* a power of two: the loops mask */
} cmp_case;

/* What one timed run gives back. */
typedef struct cmp_out {
    bench_run run;
    bench_hist *hist;    /* latency per op (reset by the driver); may stay empty */
    double server_cpu_s; /* CPU of the peer's own server process during the timed loop */
    char note[512];      /* how the peer ran it: versions, settings, untimed costs */
    char why[256];       /* set when the run fails (returns -1) */
} cmp_out;

typedef struct cmp_peer {
    const char *name;                /* second word of its results' names: "redis" */
    const char *append_verb;         /* "append", "xadd", "insert" */
    const char *batch_word;          /* "batch", "pipeline", "txn" */
    const char *setting_word;        /* "fsync", "appendfsync", "synchronous" */
    const char *read_verb;           /* "read sequential", "xrange sequential" */
    const char *get_verb;            /* "get random", "xrange point" */
    const char *setting[CMP_DUR_N];  /* its setting of each durability class */
    size_t batches[CMP_MAX_BATCHES]; /* append batches, 0-terminated */
    int producers;                   /* its append runs k->producers > 1 (4 and 16, batches[0]) */
    uint64_t read_records_max; /* its read store holds at most this many records (0: no cap) */
    int (*setup)(const cmp_ctx *c, char *why, size_t cap);
    int (*append)(const cmp_ctx *c, const cmp_case *k, cmp_out *out);
    int (*visible)(const cmp_ctx *c, const cmp_case *k, cmp_out *out); /* NULL: none */
    int (*load)(const cmp_ctx *c, const cmp_case *k, char *why, size_t cap);
    uint64_t (*storage)(const cmp_ctx *c); /* bytes on disk of the loaded read store */
    int (*read)(const cmp_ctx *c, const cmp_case *k, cmp_out *out);
    int (*get)(const cmp_ctx *c, const cmp_case *k, cmp_out *out);
    void (*unload)(const cmp_ctx *c);
    void (*teardown)(const cmp_ctx *c);
} cmp_peer;

extern const cmp_peer cmp_peer_kappalog;  /* peer_kappalog.c */
extern const cmp_peer cmp_peer_ceiling;   /* peer_ceiling.c: the plain C write(2) loop */
extern const cmp_peer cmp_peer_fio;       /* peer_fio.c: the disk ceiling */
extern const cmp_peer cmp_peer_sqlite;    /* peer_sqlite.c */
extern const cmp_peer cmp_peer_redis;     /* peer_redis.c */
extern const cmp_peer cmp_peer_nats;      /* peer_nats.c: NATS JetStream */
extern const cmp_peer cmp_peer_hypercore; /* peer_hypercore.c: hypercore@11.37.1 via Node */

/* Record i of a read store: the pool's records over and over (compare.c). */
const kl_block *cmp_record(const cmp_case *k, uint64_t i);
/* A fresh directory name under the scratch dir (removed first). */
void cmp_scratch(const cmp_ctx *c, const char *name, char *out, size_t cap);
/* Add one op's latency and its records; t is updated to now. */
void cmp_op_done(cmp_out *out, uint64_t *t, size_t records, size_t bytes);
/*
 * Random point reads for c->get_s seconds: read_one(arg, i, buf, cap, why,
 * why_cap) reads op i's record (k->idx[i & (k->nidx - 1)], as the peer
 * names it) into buf and returns its size, or -1 and why. Sets out->run's
 * counts and seconds; 0, or -1 with why in out->why.
 */
typedef long (*cmp_read_fn)(void *arg, uint64_t i, uint8_t *buf, size_t cap, char *why,
                            size_t why_cap);
int cmp_get_loop(const cmp_ctx *c, const cmp_case *k, cmp_read_fn read_one, void *arg,
                 cmp_out *out);
/* Bytes a file or directory tree takes on disk (allocated blocks), 0 if it is gone. */
uint64_t cmp_disk_bytes(const char *path);

/*
 * k->producers threads, started together, each running fn(arg, i, end, o)
 * with a cmp_out of its own until now_ns() >= end (end = start +
 * seconds); their runs are summed into out (seconds: the longest, the
 * latencies merged). 0, or -1 with the first failure's why in out->why.
 */
typedef int (*cmp_producer_fn)(void *arg, int i, uint64_t end_ns, cmp_out *o);
int cmp_run_producers(const cmp_case *k, double seconds, cmp_producer_fn fn, void *arg,
                      cmp_out *out);

/* kappalog's append rate and open time as its log grows to 20 GiB (growth.c). */
void cmp_growth(const cmp_ctx *c);

/*
 * The peers' server processes (server.c): redis-server and nats-server,
 * started by the bench on 127.0.0.1 on a free port, in a directory of
 * their own, stopped by their pid (SIGTERM, then wait) at the end, on
 * errors (atexit) and on SIGINT or SIGTERM; the child also gets SIGTERM if
 * the bench dies (PR_SET_PDEATHSIG). One spawn/stop implementation for all.
 */
typedef struct cmp_server {
    int pid; /* 0 if not running */
    int port;
    char dir[4096];
    char log[4200];
    char name[32]; /* "redis-server", "nats-server": for messages */
} cmp_server;

/* The argument of a server's argv that server.c replaces with the port it chose. */
#define CMP_SERVER_PORT "@PORT@"

/* The redis-server binary, installed with apt-get when missing and root; 0, or -1 and why. */
int redis_server_find(char *path, size_t cap, char *version, size_t vcap, char *why,
                      size_t why_cap);
/* Start redis-server from `path` in dir with these extra "--name value" pairs; 0 or -1, why. */
int redis_server_start(cmp_server *s, const char *path, const char *dir, char *const extra[],
                       char *why, size_t cap);
void redis_server_stop(cmp_server *s); /* cmp_server_stop */
/* The nats-server binary ("2.9.10"), installed as redis-server is; 0, or -1 and why. */
int nats_server_find(char *path, size_t cap, char *version, size_t vcap, char *why, size_t why_cap);
/* Start nats-server with JetStream on, its store in dir, these extra options; 0 or -1, why. */
int nats_server_start(cmp_server *s, const char *path, const char *dir, char *const extra[],
                      char *why, size_t cap);
/* Stop a server started above (SIGTERM, wait, SIGKILL after 30 s); s->pid is then 0. */
void cmp_server_stop(cmp_server *s);
/*
 * The program `name` of Debian's package of the same name (redis-server,
 * nats-server, fio), installed with apt-get when missing and the bench runs
 * as root, and the first line of `name --version`; 0, or -1 and why.
 */
int cmp_program_find(const char *name, char *path, size_t cap, char *line, size_t lcap, char *why,
                     size_t why_cap);
/* The last non-empty line of a file (a child's log), for an error message. */
void cmp_last_line(const char *path, char *out, size_t cap);
/* Sleep until now_ns() reaches at_ns (the paced writers of the visible runs). */
void cmp_sleep_until(uint64_t at_ns);
/*
 * An append-to-visible run, the part every peer shares. The peer's state
 * starts with a cmp_visible (k and hist set); its reader thread, given that
 * state, waits for each new record, checks it and adds its latency
 * (now - start_ns[i]) to hist, counting `seen` and noting `last_ns`, until
 * `done` is set and it has seen `written` records (or sets why and stops).
 * cmp_visible_run starts the reader, then writes record i (0, 1, ...) with
 * append_one(writer, i, why, why_cap) at the slot start + i * k->pace_us
 * until c->append_s has passed: start_ns[i] is stored (release) just before
 * record i's write, `written` after it; a slot missed because a write ran
 * long is not made up (*late counts them). Then it stops the reader and
 * fills out->run and, on failure, out->why (the writer's reason, else the
 * reader's, else "the reader saw N <things> of M written"). server_pid > 0:
 * that server's CPU is counted apart (cmp_cpu). 0, or -1.
 */
typedef struct cmp_visible {
    const cmp_case *k;
    _Atomic uint64_t *start_ns;   /* when the write of record i started */
    atomic_uint_fast64_t written; /* writes returned */
    atomic_int done;              /* the writer has stopped: written is final */
    uint64_t seen, last_ns;       /* the reader's: records seen, when it saw the last */
    bench_hist *hist;
    char why[256];
} cmp_visible;
typedef int (*cmp_append_fn)(void *arg, uint64_t i, char *why, size_t why_cap);
int cmp_visible_run(const cmp_ctx *c, cmp_visible *v, void *(*reader)(void *), void *state,
                    cmp_append_fn append_one, void *writer, int server_pid, const char *things,
                    uint64_t *late, cmp_out *out);
/*
 * The CPU of a timed loop that talks to a server of its own: at the stop,
 * out->server_cpu_s is the server's CPU since the start, and
 * out->run.other_cpu_s every other process's, the server's left out (it is
 * part of what is measured, not a disturbance).
 */
typedef struct cmp_cpu {
    cpu_mark mark;
    double server0;
    int pid;
} cmp_cpu;
void cmp_cpu_start(cmp_cpu *m, int server_pid);
void cmp_cpu_stop(const cmp_cpu *m, cmp_out *out);
/* utime + stime of a process in seconds (0 if gone). */
double proc_cpu_s(int pid);

#endif
