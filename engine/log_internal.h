/*
 * log_internal.h - the kl_log handle and what its files (log.c, recover.c,
 * commit.c, read.c) share. Private to the library; tests include it to
 * reach kl_log_open_io (a log on a chosen I/O backend, e.g. the fault one).
 *
 * Concurrency, in one place:
 * - `mu` guards the framing state, the commit buffers, the commit role
 *   (`committing`), `failed`, and the slot bookkeeping. The thread holding
 *   the commit role does the I/O *without* `mu`; everyone else frames the
 *   next batch into the open buffer meanwhile (group commit).
 * - `segs_lock` (rwlock) guards the segment table; readers hold it shared
 *   for a whole lookup, the committer takes it exclusive only to add a
 *   segment.
 * - Readers see a block only below `length` (acquire). Everything a reader
 *   touches below that (segment table entry, index entries, mapped bytes,
 *   the segment's `end`) was published before `length` was (release).
 */
#ifndef KL_LOG_INTERNAL_H
#define KL_LOG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../index/offset_index.h"
#include "../index/time_index.h"
#include "header.h"
#include "io/io.h"
#include "tree.h"
#include "kappalog.h"

/* A commit buffer never grows past this unless one batch needs more. */
#define KL_COMMIT_BUF_BYTES (4u * 1024u * 1024u)
/* A mapping of the active segment covers the largest it can become. */
#define KL_SEG_MAP_SLACK ((uint64_t)KL_MAX_APPEND_BYTES + 8ull * KL_MAX_APPEND_BLOCKS + 4096u)

typedef struct kl_seg {
    uint64_t first;        /* first block index (the name) */
    _Atomic uint64_t end;  /* committed bytes of the file */
    _Atomic uint64_t next; /* first block index after the committed ones */
    _Atomic int sealed;

    /* read side: mapped lazily, under mu */
    pthread_mutex_t mu;
    _Atomic int map_ready;
    const uint8_t *map;
    size_t map_len;
    _Atomic int idx_ready;
    kl_oidx idx;
    _Atomic int tix_ready; /* tix is usable (a sealed one is loaded on the first seek) */
    kl_tidx tix;           /* the time index: entry i is the batch of idx entry i */
    uint64_t bad_from; /* blocks >= this are beyond a damaged batch header; UINT64_MAX if none */
    uint64_t bad_pos;  /* where the walk that set bad_from stopped (its batches end there) */
    /* the last search past a damaged header a lookup made (read.c, past_damage; under mu) */
    uint64_t rs_from, rs_to; /* the damaged batch's offset and the known point's block */
    uint64_t rs_pos, rs_at;  /* what it found: the next batch, or rs_at 0 if nothing */

    /* write side (the active segment of a writable handle) */
    int wfd;            /* the .log file */
    uint64_t file_size; /* bytes in the .log file: committed, plus zeroed space ahead (always) */
    int ifd;            /* the .idx file */
    int tfd;            /* the .tix file */
    /* a sealed segment no sync covered yet whose wfd was closed (commit.c, UNSYNCED_FDS):
       a sync's pre-flush synced it through its path (mu) */
    int path_synced;
} kl_seg;

/* Iovecs one commit writes at most; past that, batches are copied into the buffer. */
#define KL_COMMIT_PIECES 32

/* Part of a commit buffer: bytes [off, off + len) of its data, or len bytes at ext. */
typedef struct kl_piece {
    const uint8_t *ext;
    uint64_t off, len;
} kl_piece;

/*
 * A lent batch (zero-copy) whose header, chunk checksums and table are
 * computed at commit time, into `meta_off` of its buffer's data (seal.c).
 */
typedef struct kl_seal_job {
    uint64_t meta_off;
    const kl_block *blocks; /* the caller's: valid until its commit completes */
    size_t count;
    const uint8_t *data; /* where the blocks' bytes lie back to back */
    uint64_t data_bytes, first_index, timestamp_ms;
} kl_seal_job;

/*
 * The leaf hashes of one framed append: computed by its caller before
 * framing, or (`deferred`) by the committer while the commit's segment
 * syncs (commit.c, tree_step).
 */
typedef struct kl_leaf_job {
    uint8_t *hashes; /* count x 32 bytes, the caller's: valid until its commit completes */
    const kl_block *blocks;
    size_t count;
    int deferred; /* hashes is still to be filled in */
} kl_leaf_job;

/*
 * A big run of a commit's blocks cut into chunks on multiples of `chunk`
 * blocks, which the committer and the sealer take one at a time (seal.c,
 * kl_tree_grow): the arguments of kl_tree_build_spans for the run, and each
 * chunk's spans.
 */
#define KL_GROW_MAX_CHUNKS 32u
typedef struct kl_grow_job {
    const kl_block *blocks;
    uint8_t *hashes; /* leaf hashes of blocks [a, e), filled in first if hash_leaves */
    int hash_leaves;
    uint64_t a, e, chunk, base;
    unsigned low, nchunks;
    uint8_t *nodes;
    kl_node *scratch;      /* e - a nodes */
    _Atomic unsigned next; /* the next chunk to take */
    size_t ntops[KL_GROW_MAX_CHUNKS];
    kl_node (*tops)[KL_TREE_MAX_SPANS]; /* KL_GROW_MAX_CHUNKS rows, one per chunk */
} kl_grow_job;

/*
 * Work the committer does while the sealer starts on its part of a commit's
 * tree (commit.c: the write of lent batches). kl_tree_grow runs it once.
 */
typedef struct kl_beside {
    int (*fn)(void *arg);
    void *arg;
    int ran, rc;
} kl_beside;

/* Run beside->fn if beside is not NULL and it has not run yet (seal.c). */
void kl_beside_run(kl_beside *beside);

typedef struct kl_commit_buf {
    uint8_t *data;    /* the bytes framed here (headers, checksums, tables, copied blocks) */
    size_t ilen, cap; /* bytes used and allocated in data */
    uint64_t len;     /* bytes of file this buffer writes: its pieces in order */
    kl_piece pieces[KL_COMMIT_PIECES];
    int npieces;
    kl_seal_job jobs[KL_COMMIT_PIECES / 2];
    int njobs;
    uint64_t lent_bytes; /* bytes of the pieces lent by callers */
    uint64_t seq;        /* the commit ticket of this buffer */
    struct kl_seg *seg;  /* the segment it is written to */
    struct kl_seg *prev; /* on a roll: the segment to seal */
    uint64_t pos;        /* file position of data[0] */
    int new_segment;     /* data[0..64) is a new segment's file header */
    uint64_t end_index;  /* length once committed */
    uint64_t end_bytes;  /* byte_length once committed */
    uint64_t idx_upto;   /* index entries of seg_first to write with it */
    uint64_t zero_from;  /* zeroed space added ahead of the batches (zero_to > zero_from) */
    uint64_t zero_to;
    uint32_t frames;
    uint64_t start_index; /* length before it */
    kl_leaf_job *leaves;  /* one per framed append, in order */
    size_t nleaves, capleaves;
} kl_commit_buf;

/*
 * A signed state from a peer (a verified upgrade): the length, fork and full
 * roots of its tree and the signer's stored signature over them. A replica
 * commits the blocks below it unsigned, and the commit that reaches
 * `length` carries this signature, once its own roots equal these.
 */
typedef struct kl_signed_state {
    uint64_t length, fork;
    size_t nroots;
    kl_node roots[KL_MAX_ROOTS];
    uint8_t sig[KL_STORED_SIG_MAX];
    size_t sig_len;
} kl_signed_state;

/* Leaves one group of the leaf cache holds: the blocks under a depth-tree_low node. */
#define KL_LEAF_CACHE (1u << KL_TREE_LOW_MAX)

struct kl_log {
    char *dir;
    char *hdr_path;
    char *seg_dir;
    kl_io *io;
    int readonly;
    int hdr_fd;
    kl_config cfg;  /* with the open override applied */
    kl_slot stored; /* the accepted slot's settings and created time */

    /* published to readers */
    _Atomic uint64_t length;
    _Atomic uint64_t byte_length;
    _Atomic uint64_t last_commit_ms;

    /* segments */
    pthread_rwlock_t segs_lock;
    kl_seg **segs;
    size_t nsegs, capsegs;

    /* commit pipeline (mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* the commit role was released (framers, syncers wait) */
    _Atomic uint32_t done_word[2]; /* futex: bumped when a commit of ticket parity t ends */
    pthread_cond_t cv_lead;        /* the first appender of a buffer waits here to commit it */
    kl_commit_buf bufs[2];
    kl_commit_buf *open_buf;        /* frames go here */
    int committing;                 /* someone holds the commit role */
    _Atomic uint64_t committed_seq; /* buffers up to this ticket are acknowledged */
    _Atomic int failed;             /* fail-stop: a commit's write or sync failed */
    _Atomic uint32_t appenders;     /* threads inside kl_log_append (commit.c: deferred leaves) */
    uint64_t wake_owed;             /* commit role: a done commit's ticket + 1, not yet woken */
    int fail_code;
    /* framing state: where the next batch lands */
    uint64_t f_index, f_bytes, f_seg, f_pos;
    uint64_t f_ts;  /* the timestamp of the last batch framed: the next is never earlier */
    kl_seg *f_segp; /* the segment f_seg */
    kl_seg *c_segp; /* the segment of the last commit */
    char fail_msg[256];
    uint8_t *slotbuf; /* the header slot being written (commit role) */
    int segdir_fd;
    /* header slots */
    uint64_t seq;      /* the last slot sequence number written */
    int anchor;        /* the slot (0/1) whose state is fully durable */
    int dirty;         /* commits since the last sync (not durable yet) */
    uint64_t ckpt_lag; /* segment bytes synced by one-file commits since the anchor was */
    uint64_t last_sync_ns;
    /* sealed segments whose data no sync has covered yet (interval, never): their
       write descriptors stay open until the next sync */
    kl_seg **unsynced;
    size_t nunsynced, capunsynced;
    int dir_dirty;           /* a segment file was created since the last sync */
    pthread_mutex_t sync_mu; /* one sync at a time */
    kl_io *sync_io;          /* thread-safe backend for the sync's pre-flush (no commit role) */
    kl_slot last;            /* the state of the last commit (mu) */
    /* last.fork, set by recovery before any other thread starts and never changed: a
       truncation works on the directory, and other handles then reopen (read without mu) */
    uint64_t fork;
    uint64_t signed_ns;    /* when the commit role last signed a state (sign_last) */
    _Atomic int sign_owed; /* last is a writer's state left unsigned for now (commit.c) */
    _Atomic uint64_t
        leads;        /* times the commit role was taken to commit (the sealer's idle check) */
    void *zcctx;      /* zstd compression context (framing, under mu) */
    uint8_t *scratch; /* uncompressed framing for zstd, under mu */
    size_t scratch_cap;

    /* the sealer thread (seal.c): checksums of lent batches beside their write */
    pthread_t sealer;
    int sealer_on;
    _Atomic int sealer_quit, sealer_done, sealer_sleeping, poster_sleeping;
    kl_commit_buf *_Atomic sealer_job;
    _Atomic int leaf_state; /* seal.c: half an append's leaves, posted to the sealer */
    const kl_block *leaf_blocks;
    size_t leaf_count;
    uint8_t *leaf_out;
    _Atomic int grow_state; /* seal.c: a big run of a commit's tree, in chunks (kl_tree_grow) */
    kl_grow_job grow;
    pthread_mutex_t sealer_mu;
    pthread_cond_t sealer_cv;

    /* interval flusher */
    pthread_t flusher;
    pthread_cond_t flush_cv;
    int flusher_on;
    int closing;

    /* decompression cache for get() on zstd batches */
    pthread_mutex_t zmu;
    void *zdctx;
    uint8_t *zraw;
    size_t zraw_cap;
    const kl_seg *zseg;
    uint64_t zpos;

    /* the signed Merkle tree (tree.h, hc.h) */
    char *tree_path;
    int tree_fd;
    unsigned tree_low; /* the tree file stores nodes of this depth and up (tree.h) */
    kl_core_kind kind;
    uint8_t public_key[KL_PK_BYTES];
    uint8_t key[KL_HASH_BYTES];  /* the core key */
    uint8_t dkey[KL_HASH_BYTES]; /* the discovery key */
    uint8_t sk[KL_SK_BYTES];     /* the secret key, if has_sk (wiped on close) */
    int has_sk;
    int secret_unsafe;         /* the secret file is readable by group or others */
    char sk_problem[4400];     /* why there is no usable secret key */
    char slot_problem[2][512]; /* why a header slot was not a candidate, "" if it was */
    int slot_v2;               /* a header slot on disk is of format version 2 (header.h) */
    char tree_problem[512];    /* a read-only open: what is wrong with `tree`, "" if nothing */
    char recovery_note[1024];  /* what this open's recovery cut or repaired, "" if nothing */
    /* a replica (no secret key): the signed state its appends grow towards (commit.c) */
    int has_target;
    kl_signed_state target;
    kl_treeb tb;             /* the tree of the last commit (commit role) */
    uint64_t tree_file_size; /* bytes of the tree file: nodes, plus zeroed space ahead (always) */
    uint64_t tree_wb_from;   /* tree bytes from here on may be dirty: not yet sent to disk */
    uint8_t *treebuf;        /* the nodes one commit writes (commit role) */
    size_t treebuf_cap;
    kl_node *tree_rows; /* kl_tree_build_spans' scratch (commit role) */
    size_t tree_rows_cap;

    /* following (follow.c) */
    _Atomic uint32_t len_word;    /* futex: bumped after every new length is published */
    _Atomic uint32_t len_waiters; /* threads in kl_log_wait on len_word */
    _Atomic int follow_closing;   /* kl_log_close began: waiters return KL_ECLOSED */
    pthread_mutex_t refresh_mu;   /* one kl_log_refresh at a time (read-only handles) */
    uint64_t slot_damage[2];      /* XXH3 of a slot's bytes a refresh waited out in vain; 0: none */

    /*
     * Leaf hashes of one group of blocks under a node the tree file does
     * not keep (read.c, node_from_blocks), so that consumers asking the
     * tree hash at each new position (kl_log_tree_hash) hash each block of
     * that group once, not once per ask. Blocks of a fork never change.
     */
    pthread_mutex_t leaf_mu;
    uint64_t leaf_fork, leaf_base;           /* the group: its fork and first block */
    uint64_t leaf_known[KL_LEAF_CACHE / 64]; /* bit j: leaf[j] holds block leaf_base + j */
    kl_node leaf[KL_LEAF_CACHE];
    pthread_mutex_t watch_mu; /* the one waiter on the header's inotify watch (read-only) */
    int ino_fd, ino_wd;       /* that watch, made on the first wait, closed with the handle */

    /* errors */
    pthread_mutex_t errmu;
    char err[512];
};

/* Open with a given backend (takes ownership of io, also on failure). */
int kl_log_open_io(const char *dir, const kl_open_options *opts, kl_io *io, kl_log **out);

/* kl_log_create on a given backend (does not take io). */
int kl_log_create_io(const char *dir, const kl_config *cfg, kl_io *io);

/* Copy this thread's error context into the handle; returns rc. */
int kl_log_err(kl_log *log, int rc);

/* keys.c: load the secret key of a writable log (absent: a read-only replica). */
int kl_keys_load(kl_log *log);
/* Fill key and discovery key from the kind and public key. */
void kl_keys_derive(kl_log *log);

/* resync.c: where batches are read from, for kl_batch_resync. */
struct kl_batch_hdr;
typedef struct kl_batch_src {
    /* the header of the batch at pos, its frame wholly below limit: 0, KL_ECORRUPT or an I/O error
     */
    int (*header)(void *ctx, uint64_t pos, uint64_t limit, struct kl_batch_hdr *h);
    /* the n bytes at pos: *out, valid until the next view (*got of them, fewer only at the
       file's end); 0 or an I/O error */
    int (*view)(void *ctx, uint64_t pos, size_t n, const uint8_t **out, size_t *got);
    void *ctx;
} kl_batch_src;

/*
 * Past the batch at `pos` (first block `at`) whose header does not check
 * out: the first batch after it whose header does and from which the
 * batches follow each other up to a known point, block to_index starting at
 * byte to_pos (UINT64_MAX: anywhere), all below limit (resync.c says why).
 * 1 and *pos_out, *at_out if one does, 0 if none, or an I/O error.
 */
int kl_batch_resync(const kl_batch_src *src, uint64_t pos, uint64_t at, uint64_t to_pos,
                    uint64_t to_index, uint64_t limit, uint64_t *pos_out, uint64_t *at_out);
/* Mark the blocks of s from `index` on unreadable: a walk of its batches stopped at `pos`. */
static inline void kl_seg_mark_bad(kl_seg *s, uint64_t index, uint64_t pos) {
    s->bad_from = index;
    s->bad_pos = pos;
}

/* read.c: kl_batch_resync over segment s's mapping (limit must lie within its file). */
int kl_seg_resync(kl_seg *s, uint64_t pos, uint64_t at, uint64_t to_pos, uint64_t to_index,
                  uint64_t limit, uint64_t *pos_out, uint64_t *at_out);

/* recover.c: read the header, choose the slot, cut the tail, load segments. */
/* The bytes of the header file (*got of KL_HDR_FILE_BYTES; *out malloc'ed, free it). */
int kl_header_read(kl_log *log, uint8_t **out, size_t *got);
/*
 * A reader beside the writer can catch its working slot half written (the
 * writer rewrites it in place): a slot that does not check out is read again
 * every KL_TORN_RETRY_US for up to KL_TORN_WAIT_MS (the 4 KiB write ends
 * within microseconds) before the other slot is settled for.
 */
#define KL_TORN_WAIT_MS  20u
#define KL_TORN_RETRY_US 200u
int kl_recover(kl_log *log);
/* After the keys are loaded: sign an accepted state its writer left unsigned (writable). */
int kl_recover_sign(kl_log *log);

/* Replicas (log.c, commit.c): logs copied from a peer, without the secret key. */
/* Create an empty replica in dir of the core whose signer's key is pk (kind: cfg->compat). */
int kl_replica_create_io(const char *dir, const kl_config *cfg, const uint8_t pk[KL_PK_BYTES],
                         kl_io *io);
/*
 * Let a writable replica append up to t->length blocks; the commit that
 * reaches it stores t's signature (its roots must be t's). If the log is
 * already at t->length, its unsigned state is signed with t now.
 * KL_EINVAL for a t shorter than what is framed, KL_EFORK for another fork,
 * KL_EVERIFY for roots that are not ours at an equal length.
 */
int kl_replica_target(kl_log *log, const kl_signed_state *t);
/*
 * Cut the replica in dir to `length` blocks at `fork` (its peer's, after the
 * peer truncated), crash-safe as kl_truncate; the new state is unsigned
 * until the replica reaches a signed length of that fork again.
 */
int kl_replica_truncate(const char *dir, uint64_t length, uint64_t fork);

/* commit.c */
int kl_commit_init(kl_log *log);
void kl_commit_free(kl_log *log);
int kl_commit_sync(kl_log *log, int final);
/*
 * The last commit's state into *out, signed: on a writable handle, waits
 * out the moment between a commit under `interval` or `never` and its
 * signature (commit.c, sign_last). A read-only handle's may be unsigned
 * (sig_len 0) if its writer was stopped in that moment.
 */
void kl_commit_last(kl_log *log, kl_slot *out);
/* Sign st's tree (its roots, length and fork) with the log's secret key. */
void kl_commit_sign(const kl_log *log, kl_slot *st);
int kl_commit_trim(kl_log *log);
/* Write (and if sync, fdatasync) n bytes at off of the tree file, holding the commit role. */
int kl_commit_tree_write(kl_log *log, const void *p, size_t n, uint64_t off, int sync);
int kl_flusher_start(kl_log *log);
void kl_flusher_stop(kl_log *log);

/* seal.c */
void kl_seal_run(kl_commit_buf *b);
int kl_sealer_start(kl_log *log);
void kl_sealer_stop(kl_log *log);
void kl_sealer_post(kl_log *log, kl_commit_buf *b);
void kl_sealer_wait(kl_log *log);
/* A signature is owed (commit.c, mu held): wake a sealer that sleeps without a timeout. */
void kl_sealer_owe_sign(kl_log *log);
/* commit.c: sign the last state if it is owed and the commit role is free (the sealer, idle). */
void kl_commit_sign_idle(kl_log *log);
/* The leaf hashes of an append's blocks, half of a big one on the sealer thread. */
void kl_hash_leaves(kl_log *log, const kl_block *blocks, size_t count, uint8_t *hashes);
/*
 * Add blocks [log->tb.length, + count) to log->tb as kl_tree_build_spans and
 * kl_treeb_join do (commit role), hashing their leaves first if
 * hash_leaves; a big run is built in chunks by this thread and the sealer
 * together. scratch holds count nodes. beside (NULL: none), if it has not
 * run yet, runs once the sealer can start on the run.
 */
void kl_tree_grow(kl_log *log, const kl_block *blocks, uint8_t *hashes, int hash_leaves,
                  size_t count, uint64_t base, uint8_t *nodes, kl_node *scratch, kl_beside *beside);

/* read.c */
kl_seg *kl_seg_new(uint64_t first);
void kl_seg_free(kl_log *log, kl_seg *s);
int kl_seg_add(kl_log *log, kl_seg *s);
kl_seg *kl_seg_find(kl_log *log, uint64_t index); /* segs_lock held */
int kl_seg_ensure_map(kl_log *log, kl_seg *s);
int kl_seg_ensure_idx(kl_log *log, kl_seg *s);
void kl_seg_file(const kl_log *log, char *out, size_t cap, uint64_t first, const char *ext);
struct kl_batch_hdr;
/*
 * Reading the batches of one segment file with pread, never through a
 * mapping (recover.c): what recovery and a follower's refresh check may
 * name bytes the file does not have, and a read in a mapping past the
 * file's last page is a SIGBUS.
 */
typedef struct kl_seg_reader {
    kl_log *log;
    uint64_t first;
    int fd;
    uint64_t fsize; /* the file's size when opened */
    uint8_t *buf;   /* the whole frame of the batch read last (want_body) */
    size_t cap;
    uint8_t *view; /* the bytes of its last kl_batch_src view (recover.c, reader_resync) */
    size_t view_cap;
} kl_seg_reader;
/* Open segment `first`, its file header checked (its fork at most max_fork). */
int kl_seg_reader_open(kl_log *log, kl_seg_reader *r, uint64_t first, uint64_t max_fork);
void kl_seg_reader_close(kl_seg_reader *r);
/* The batch at pos: header into *h and, with want_body, its frame in r->buf, checked;
   KL_ECORRUPT if it runs past `limit` or the file's end. */
int kl_seg_reader_batch(kl_seg_reader *r, uint64_t pos, uint64_t limit, int want_body,
                        struct kl_batch_hdr *h);
void kl_read_free(kl_log *log);
/* The batch holding committed block `index`: its segment, position and header. */
struct kl_batch_hdr;
int kl_batch_at(kl_log *log, uint64_t index, uint64_t *seg_first, uint64_t *pos,
                struct kl_batch_hdr *h);

/*
 * seek_time.c: the segments' time indexes. kl_seg_index_init makes both
 * (empty, writable) indexes of an active segment, the time index ready;
 * kl_seg_note records a batch in both, the time entry exactly when the
 * offset index takes one (every caller that indexes a batch goes through
 * it). A sealed segment's .tix is mapped or rebuilt by the first seek that
 * needs it.
 */
int kl_seg_index_init(kl_seg *s, uint64_t max_bytes);
void kl_seg_note(kl_seg *s, uint64_t rel, uint64_t pos, uint64_t ts_ms);

/* Node `index` of the committed tree (tree.c's file, read with pread). */
int kl_log_node(kl_log *log, uint64_t index, kl_node *out);
/* kl_log_get into *buf (malloc'ed, *cap bytes), grown to the block's size if it must be. */
int kl_log_get_grow(kl_log *log, uint64_t index, uint8_t **buf, size_t *cap, size_t *size);

/* The nodes of the tree of `length` blocks, as a proof's node getter (ctx: a kl_node_src). */
typedef struct kl_node_src {
    kl_log *log;
    uint64_t length;
} kl_node_src;
int kl_node_src_get(void *ctx, uint64_t index, kl_node *out);

/* follow.c: wake kl_log_wait callers after a new length was published. */
void kl_follow_notify(kl_log *log);

/* truncate.c: finish a truncation a crash interrupted (recovery, writable opens). */
int kl_truncate_redo(kl_log *log);

#endif
