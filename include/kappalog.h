/*
 * kappalog.h - the public interface of kappalog, an append-only log engine.
 *
 * A log is a directory holding an ordered sequence of blocks (opaque byte
 * strings, 0 bytes and up). Blocks are numbered from 0; block `i` never
 * changes once acknowledged. Appends are atomic per call (all the blocks of
 * one kl_log_append() call become visible together, or none do) and durable
 * as the log's fsync policy promises (docs/DURABILITY.md).
 *
 * Conventions:
 * - Every function that can fail returns an int: KL_OK (0) or a negative
 *   kl_error code. kl_strerror() names the code; kl_log_last_error() and
 *   kl_last_error() give the context (which file, which offset, what was
 *   expected).
 * - A call that fails with KL_EINVAL changed nothing.
 * - After a failed write or fdatasync on the commit path the handle is
 *   failed for good: every later call that would write returns KL_EIO.
 *   Close it and open the log again; opening runs recovery.
 * - "index" is a block number; "offset" and "position" are byte counts.
 * - A kl_log handle may be shared by threads: appends from many threads are
 *   group-committed (one fdatasync acknowledges many callers); reads may run
 *   beside appends. An iterator belongs to one thread at a time.
 * - One process at a time may open a log for writing (an advisory lock on the
 *   header file); any number may open it read-only.
 */
#ifndef KAPPALOG_H
#define KAPPALOG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KL_VERSION_MAJOR  0
#define KL_VERSION_MINOR  1
#define KL_VERSION_PATCH  0
#define KL_VERSION_STRING "0.1.0"

#if defined(KL_BUILDING_LIBRARY) && defined(__GNUC__)
#define KL_API __attribute__((visibility("default")))
#else
#define KL_API
#endif

/* Error codes. Every public call returns 0 or one of these. */
typedef enum kl_error {
    KL_OK = 0,
    KL_EINVAL = -1,     /* bad argument or flag; nothing was changed */
    KL_EIO = -2,        /* an I/O call failed, or the handle failed earlier */
    KL_ENOSPC = -3,     /* the disk is full; on the commit path the handle failed */
    KL_ENOMEM = -4,     /* out of memory */
    KL_ECORRUPT = -5,   /* bytes on disk failed a check; the context names where */
    KL_ENOTFOUND = -6,  /* no such log, or a block index past the end */
    KL_ECLOSED = -7,    /* the handle is closing */
    KL_EVERIFY = -8,    /* a signature or proof does not verify */
    KL_EBUSY = -9,      /* another process holds the log open for writing */
    KL_EEXIST = -10,    /* a log already exists there */
    KL_ETOOSMALL = -11, /* the caller's buffer is too small; the size needed is returned */
    KL_EREADONLY = -12, /* the handle was opened read-only */
    KL_ECONFLICT = -13, /* an expected length did not match */
    KL_ETOOBIG = -14,   /* a block or batch exceeds the engine's limits */
    KL_EFORK = -15,     /* the log was truncated (its fork changed) under a handle or cursor */
    KL_EPEER = -16      /* a replication peer broke the protocol (sent what was not asked for) */
} kl_error;

/* Fsync policies (docs/DURABILITY.md says exactly what each one promises). */
typedef enum kl_fsync_mode {
    KL_FSYNC_ALWAYS = 0,   /* acknowledged = on stable storage */
    KL_FSYNC_INTERVAL = 1, /* synced at least every fsync_interval_ms */
    KL_FSYNC_NEVER = 2     /* the OS decides; synced only by kl_log_sync and close */
} kl_fsync_mode;

/* Block codecs: how a batch's payload is stored. */
typedef enum kl_codec { KL_CODEC_NONE = 0, KL_CODEC_ZSTD = 1 } kl_codec;

/* Limits, checked with KL_ETOOBIG. */
#define KL_MAX_BLOCK_BYTES       (64u * 1024u * 1024u)   /* one block */
#define KL_MAX_APPEND_BYTES      (256u * 1024u * 1024u)  /* one kl_log_append call */
#define KL_MAX_APPEND_BLOCKS     (1u << 24)              /* one kl_log_append call */
#define KL_MIN_SEGMENT_BYTES     (64u * 1024u)           /* --segment-bytes lower bound */
#define KL_MAX_SEGMENT_BYTES     (1024u * 1024u * 1024u) /* --segment-bytes upper bound */
#define KL_DEFAULT_SEGMENT_BYTES (256u * 1024u * 1024u)

/* Settings chosen when the log is created and stored in its header. */
typedef struct kl_config {
    kl_fsync_mode fsync_mode;   /* default KL_FSYNC_ALWAYS */
    uint32_t fsync_interval_ms; /* for KL_FSYNC_INTERVAL; 1..3600000 */
    uint64_t segment_bytes;     /* roll size; KL_MIN_SEGMENT_BYTES..KL_MAX_SEGMENT_BYTES */
    kl_codec codec;             /* default KL_CODEC_NONE */
    int codec_level;            /* zstd level 1..19 (0 = zstd's default, 3) */
    /*
     * The log is a Hypercore core signed with an Ed25519 key pair made from
     * these 32 bytes (as libsodium's crypto_sign_seed_keypair, and so as
     * hypercore-crypto's keyPair(seed)); NULL: a random key pair. Only
     * kl_log_create reads it; it is not stored (the secret key is, in
     * DIR/secret, mode 0600).
     */
    const unsigned char *seed;
    /* Nonzero: a compat-mode core (key = public key, raw signatures), as
       `new Hypercore(dir, { compat: true })`. Stored. */
    int compat;
} kl_config;

/* Fill cfg with the defaults: always, 256 MiB segments, no compression. */
KL_API void kl_config_default(kl_config *cfg);

/*
 * Parse a policy as the CLI writes it: "always", "never", "interval:MS".
 * Returns KL_EINVAL (and leaves cfg alone) on anything else.
 */
KL_API int kl_config_parse_fsync(kl_config *cfg, const char *text);

/* Parse "none", "zstd" or "zstd:LEVEL" into cfg. KL_EINVAL otherwise. */
KL_API int kl_config_parse_codec(kl_config *cfg, const char *text);

/*
 * Create an empty log in `dir`, which must not exist or be an empty
 * directory. The new log is durable when this returns. KL_EEXIST if a log
 * (or anything else) is already there.
 */
KL_API int kl_log_create(const char *dir, const kl_config *cfg);

/* Flags for kl_open_options.flags. */
#define KL_OPEN_READONLY 0x1u /* no writes, no recovery cut; sees what is committed */

/* Which I/O backend a handle uses. */
typedef enum kl_io_kind {
    KL_IO_AUTO = 0,  /* io_uring, or posix where the kernel refuses io_uring; KL_IO env overrides */
    KL_IO_URING = 1, /* io_uring only; KL_EIO if refused */
    KL_IO_POSIX = 2  /* pwritev/fdatasync */
} kl_io_kind;

typedef struct kl_open_options {
    uint32_t flags;     /* KL_OPEN_* */
    kl_io_kind io;      /* default KL_IO_AUTO */
    int fsync_override; /* nonzero: use fsync_mode/interval below instead of the stored policy */
    kl_fsync_mode fsync_mode;
    uint32_t fsync_interval_ms;
    /*
     * How long a writable open waits for the writer's lock before KL_EBUSY
     * (default 1000 ms): a writer that was just killed can hold it a moment
     * longer, while the kernel tears down its io_uring.
     */
    uint32_t lock_wait_ms;
} kl_open_options;

KL_API void kl_open_options_default(kl_open_options *opts);

typedef struct kl_log kl_log;

/*
 * Open the log in `dir` (opts may be NULL for the defaults). A writable open
 * runs recovery: whatever lies past the committed length is cut, a torn tail
 * is detected by its checksum and dropped, and the recovered state is made
 * durable before this returns. Its cost depends on the unindexed tail, not on
 * the size of the log.
 */
KL_API int kl_log_open(const char *dir, const kl_open_options *opts, kl_log **out);

/* Sync what is pending (whatever the policy), release everything. NULL is fine. */
KL_API int kl_log_close(kl_log *log);

/* One block to append: `size` bytes at `data` (data may be NULL if size is 0). */
typedef struct kl_block {
    const void *data;
    size_t size;
} kl_block;

/*
 * Append `count` blocks as one atomic batch. Returns once the batch is
 * acknowledged under the fsync policy; *first_index (if not NULL) receives
 * the index of its first block. count may be 0 (a no-op that returns the
 * current length). KL_ETOOBIG past the KL_MAX_* limits, KL_EREADONLY on a
 * read-only handle, KL_EIO / KL_ENOSPC if the commit failed (the handle is
 * then failed).
 */
KL_API int kl_log_append(kl_log *log, const kl_block *blocks, size_t count, uint64_t *first_index);

/*
 * As kl_log_append, but only if the log's length is `expected_length` when
 * the batch commits; otherwise KL_ECONFLICT and nothing is appended
 * (optimistic concurrency for event sourcing).
 */
KL_API int kl_log_append_expect(kl_log *log, const kl_block *blocks, size_t count,
                                uint64_t expected_length, uint64_t *first_index);

/* Make every acknowledged append durable now, whatever the policy. */
KL_API int kl_log_sync(kl_log *log);

/*
 * Copy block `index` into buf. *size receives the block's size. KL_ETOOSMALL
 * if buf_size is smaller (nothing copied; call again with a buffer of *size
 * bytes), KL_ENOTFOUND if index >= length, KL_ECORRUPT if its bytes fail
 * their check (the context names the block range affected).
 */
KL_API int kl_log_get(kl_log *log, uint64_t index, void *buf, size_t buf_size, size_t *size);

/* The committed length (number of blocks) and byte length (sum of sizes). */
KL_API uint64_t kl_log_length(kl_log *log);
KL_API uint64_t kl_log_byte_length(kl_log *log);

/*
 * The Hypercore tree hash of the log's first `length` blocks (hypercore's
 * treeHash(length)): BLAKE2b-256 over the roots of that tree. It names
 * those blocks exactly: two logs of one key share it at `length` only if
 * their first `length` blocks are the same. Consumers store it with a
 * position to find out that the log below that position changed (a crash
 * under `interval` or `never` lost blocks they had read, and others were
 * appended in their place). Reads the tree's stored nodes and at most 15
 * blocks. KL_EINVAL past the length, KL_ECORRUPT if a block it must hash
 * fails its check.
 */
KL_API int kl_log_tree_hash(kl_log *log, uint64_t length, unsigned char out[32]);

/* Facts about a log, for `kappalog info`. */
typedef struct kl_info {
    uint64_t length;         /* blocks committed */
    uint64_t byte_length;    /* sum of their sizes */
    uint64_t fork;           /* fork id (0 until the log is truncated) */
    uint64_t segments;       /* segment files */
    uint64_t disk_bytes;     /* bytes on disk of every file of the log */
    uint64_t created_ms;     /* Unix time in ms of kl_log_create */
    uint64_t last_commit_ms; /* Unix time in ms of the last commit */
    kl_config config;        /* the stored settings, with the open override applied */
    const char *io_backend;  /* "io_uring", "posix" or "fault" */
    const char *io_fallback; /* why io_uring was refused and posix is used, or "" */
    uint32_t format_version; /* header format version */
    int readonly;            /* opened read-only */
    /* The signed tree, as Hypercore has it (byte strings, hex them to print). */
    int compat;                      /* a compat-mode core */
    unsigned char key[32];           /* the core key */
    unsigned char discovery_key[32]; /* what peers look the core up by */
    unsigned char public_key[32];    /* the signer's Ed25519 public key */
    unsigned char tree_hash[32];     /* of the tree at `length` */
    unsigned char signature[68];     /* as Hypercore stores it: signature_len bytes */
    size_t signature_len;            /* 68, or 64 for a compat core; 0 on a read-only
                                        handle whose writer has not signed its newest
                                        state yet (under interval and never it signs at
                                        most every 2 ms while appends keep coming, and
                                        soon after they pause) or stopped before signing
                                        it (its next writable open signs it) */
    int writable;                    /* a usable secret key is present (appends possible) */
    int secret_unsafe;               /* the secret file is readable by group or others */
    const char *recovery;            /* what opening this handle cut or repaired ("" if nothing) */
} kl_info;

KL_API int kl_log_info(kl_log *log, kl_info *info);

/* Progress of long work: `done` of `total` units (blocks) so far. */
typedef void (*kl_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/*
 * Check the whole log against its signed tree: every block's checksums and
 * leaf hash, every node the tree file stores, the roots and their signature, and
 * both header slots. 0 if all of it holds. Otherwise KL_ECORRUPT (bytes fail
 * a check) or KL_EVERIFY (the tree or signature does not match), the context
 * naming what failed, and *bad_block (if not NULL) the first block the damage
 * touches (UINT64_MAX if it is not in a block's data or tree: a header slot).
 * A block changed together with its checksums is named as the first block
 * under the lowest stored tree node over it (within 16 blocks of it).
 * `progress` (may be NULL) is called every few thousand blocks. Reads only.
 */
KL_API int kl_log_verify(kl_log *log, kl_progress_fn progress, void *ctx, uint64_t *bad_block);

/*
 * Rebuild the tree file's stored nodes from the blocks, where they differ
 * (flipped or zeroed bytes in `tree`; proofs and tree hashes read them).
 * The nodes are redundant: every block is hashed, and only if the blocks
 * pass their checksums and make the signed roots is anything written, each
 * differing node replaced by the one the blocks make, then the file synced.
 * *rebuilt (if not NULL) receives how many nodes were rewritten (0: the
 * file held). Otherwise nothing is written: KL_ECORRUPT or KL_EVERIFY as
 * kl_log_verify reports them (damage in the blocks cannot be repaired from
 * them). Needs a writable handle (KL_EREADONLY); appends on it wait while a
 * node is written. Takes two passes over the log; `progress` (may be NULL)
 * counts both (total: twice the length). A failed write or sync fails the
 * handle, as on the commit path. Damage to the header slots is not this
 * call's business (a writable open uses the other slot).
 */
KL_API int kl_log_repair_tree(kl_log *log, kl_progress_fn progress, void *ctx, uint64_t *rebuilt);

/*
 * Cut the log in `dir` to its first `length` blocks, as Hypercore's
 * truncate(length): the fork id increments and the tree at `length` is
 * signed with the new fork (even when `length` is the current length). The
 * log must not be open for writing elsewhere (KL_EBUSY after
 * opts->lock_wait_ms); opts may be NULL. KL_EINVAL past the length,
 * KL_EREADONLY without the secret key. Crash-safe: once this returns, the
 * truncation is durable; if it is interrupted, the next writable open either
 * finishes it or finds the log as it was.
 */
KL_API int kl_truncate(const char *dir, uint64_t length, const kl_open_options *opts);

/* ---- replication: cloning a core from a Hypercore peer ---- */

typedef struct kl_clone_options {
    int follow;        /* nonzero: keep up with the peer's new appends until *stop is set */
    uint32_t stall_ms; /* give up when the peer sends nothing this long (default 10000) */
    int fsync_set;     /* nonzero: a new replica gets fsync_mode (default: always) */
    kl_fsync_mode fsync_mode;
    kl_progress_fn progress; /* called as blocks are stored (done, total); may be NULL */
    void *ctx;
    volatile int *stop; /* if not NULL, the clone returns 0 soon after *stop becomes nonzero */
} kl_clone_options;

KL_API void kl_clone_options_default(kl_clone_options *opts);

/*
 * Download the core `key` (its Hypercore key, 32 bytes) from the peer at
 * host_port ("HOST:PORT") over the Hypercore wire protocol into the replica
 * in `dir`: created (without a secret key) on the first verified upgrade,
 * or resumed if dir already holds a replica of this core. Every upgrade and
 * every block is verified against the signed tree before it is stored;
 * blocks go through the normal commit pipeline, so a crash leaves a
 * committed prefix that the next call resumes. Returns 0 once the replica
 * holds everything the peer has and signed (with `follow`, once *stop is
 * set); KL_EVERIFY for a proof or signature that does not hold, KL_EPEER
 * for a message nobody asked for, KL_ENOTFOUND if the peer does not serve
 * the core, KL_EFORK if the peer's fork changed, KL_EIO for a lost or
 * stalled connection. opts may be NULL.
 */
KL_API int kl_clone(const char *host_port, const unsigned char key[32], const char *dir,
                    const kl_clone_options *opts);

typedef struct kl_serve_options {
    uint32_t stall_ms;  /* drop a peer that sends nothing this long (default 30000) */
    int quiet;          /* nonzero: no line on stderr per connection */
    volatile int *stop; /* if not NULL, kl_serve returns 0 soon after *stop becomes nonzero */
    /* called once listening, with the address ("HOST:PORT", the port chosen if 0 was asked) */
    void (*on_listening)(void *ctx, const char *address);
    void *ctx;
    /*
     * Peers connected at once; a connection past them is accepted and
     * closed. 0 (the default): 1024, or fewer if the file descriptors
     * RLIMIT_NOFILE leaves allow fewer. Another value is taken as it is
     * (above 1024 too: each peer may hold 8 MiB), but lowered to what the
     * descriptors allow; the line kl_serve logs at the start says so.
     */
    uint32_t max_peers;
} kl_serve_options;

KL_API void kl_serve_options_default(kl_serve_options *opts);

/*
 * Serve the logs in dirs[0..ndirs) (opened read-only: a writer may append
 * to them meanwhile) to Hypercore peers on host_port, over the Hypercore
 * wire protocol, until *opts->stop is set: any number of peers on one
 * thread; requests answered with blocks and proofs from each log's tree;
 * every new signed length announced to connected peers as it lands. A peer
 * that breaks the protocol or stalls is dropped with the reason on stderr;
 * the others are unaffected.
 */
KL_API int kl_serve(const char *const *dirs, size_t ndirs, const char *host_port,
                    const kl_serve_options *opts);

/*
 * What a Hypercore peer asks a proof for (the parts of its `request`):
 * a block with the `block_nodes` levels of its path the asker lacks, an
 * upgrade from the asker's length `upgrade_start` over `upgrade_length`
 * blocks, and the manifest (never sent for a compat core).
 */
typedef struct kl_proof_ask {
    int block;
    uint64_t block_index, block_nodes;
    int upgrade;
    uint64_t upgrade_start, upgrade_length;
    int manifest;
} kl_proof_ask;

/*
 * The Hypercore `data` message that answers `ask` at the log's committed
 * length (the wire encoding, byte for byte what hypercore 11.37.1 sends;
 * `request_id` echoed): the block, its Merkle path, the upgrade's nodes and
 * signature. *out is malloc'ed (*n bytes; free it). KL_EINVAL for a
 * request Hypercore refuses (past the length, an upgrade out of range,
 * more path levels than the block has).
 */
KL_API int kl_log_proof(kl_log *log, const kl_proof_ask *ask, uint64_t request_id,
                        unsigned char **out, size_t *n);

/* Iterating over a range of blocks in order. */
typedef struct kl_record {
    uint64_t index;   /* block index */
    const void *data; /* valid until the next kl_iter_next or kl_iter_close */
    size_t size;
    uint64_t timestamp_ms; /* Unix ms when the block's batch was committed */
} kl_record;

typedef struct kl_iter kl_iter;

/*
 * Iterate blocks [from, to). `to` may be UINT64_MAX: the iterator then stops
 * at whatever the committed length is when it gets there (later calls see
 * blocks committed in the meantime).
 */
KL_API int kl_iter_open(kl_log *log, uint64_t from, uint64_t to, kl_iter **out);

/* 1 and *rec filled, 0 at the end, or a negative kl_error. */
KL_API int kl_iter_next(kl_iter *it, kl_record *rec);

KL_API void kl_iter_close(kl_iter *it);

/*
 * Following a log as it grows (live tail).
 *
 * kl_log_refresh brings a read-only handle up to the newest commit another
 * process made (a writable handle is always current): 1 if the length grew,
 * 0 if not, KL_EFORK if the log was truncated since the handle opened
 * (reopen it), or another negative kl_error.
 *
 * kl_log_wait blocks until the committed length is greater than `length`,
 * the timeout passes (timeout_ms < 0: no timeout) or the handle is closed:
 * 1 if the length is greater, 0 on timeout, or a negative kl_error. It does
 * not poll: a writable handle is woken by its own commit path; a read-only
 * handle waits for the header file to change (inotify) and refreshes.
 */
KL_API int kl_log_refresh(kl_log *log);
KL_API int kl_log_wait(kl_log *log, uint64_t length, int timeout_ms);

/*
 * The first block of the first batch committed at or after `time_ms` (Unix
 * milliseconds), found through the time index without a scan: *index is the
 * log's length if every batch is older. Batch timestamps never go backwards
 * in a log (a commit takes the later of the clock and the previous commit's
 * time), so this is also where a consumer "from 10:00" starts.
 */
KL_API int kl_log_seek_time(kl_log *log, uint64_t time_ms, uint64_t *index);

/*
 * Named durable consumer cursors (consumers/<name>.cursor in the log's
 * directory): the next block to consume and the fork it belongs to, written
 * crash-safely (two checksummed slots, as the header). Names are 1..64
 * characters of [A-Za-z0-9._-], not starting with '.'.
 */
typedef struct kl_cursor kl_cursor;

#define KL_CURSOR_CREATE 0x1u /* create the cursor at position 0 if it does not exist */

/*
 * Open cursor `name` of `log` (KL_ENOTFOUND if absent and not created;
 * KL_EBUSY if another consumer has it open: one consumer per cursor).
 * KL_EFORK if the log is no longer the one the cursor read: it was
 * committed at another fork than the log's (the log was truncated since;
 * the check is strict, since the log does not record where past
 * truncations cut), or the log lost blocks the cursor had read (a crash
 * under fsync `interval` or `never`): its position is past the log's end,
 * or the log's tree hash at the position is not the one the cursor's
 * commit stored (kl_log_tree_hash: others were appended in the lost
 * blocks' places). The cursor still opens (*out is set) and reports its
 * old position and fork; kl_cursor_commit moves it. A damaged cursor
 * file (neither slot checks out) is KL_ECORRUPT.
 */
KL_API int kl_cursor_open(kl_log *log, const char *name, unsigned flags, kl_cursor **out);
KL_API void kl_cursor_close(kl_cursor *c);

/* The next block index to consume, and the fork it was committed at. */
KL_API uint64_t kl_cursor_position(const kl_cursor *c);
KL_API uint64_t kl_cursor_fork(const kl_cursor *c);

/*
 * Durably move the cursor to `position` (<= the log's length) at the log's
 * current fork. Returns once it is on disk (fdatasync).
 */
KL_API int kl_cursor_commit(kl_cursor *c, uint64_t position);

/* Remove cursor `name` of the log (KL_ENOTFOUND if absent, KL_EBUSY if in use). */
KL_API int kl_cursor_delete(kl_log *log, const char *name);

/* The cursors of a log: name, position and fork. */
typedef struct kl_cursor_info {
    char name[65];
    uint64_t position;
    uint64_t fork;
    int damaged;  /* neither slot checks out: position and fork are 0 */
    int diverged; /* same fork, but the log's tree hash at position is not the one the
                     cursor committed: the log lost blocks it had read (kl_cursor_open) */
} kl_cursor_info;

/* *out is malloc'ed (*n entries, sorted by name; free it). */
KL_API int kl_cursor_list(kl_log *log, kl_cursor_info **out, size_t *n);

/* ======================================================================
 * Processors and materialized views (docs/VIEWS.md)
 *
 * A processor folds one or more logs (its sources, one position each) into
 * a view kept in an LMDB environment: it reads records from each source's
 * position, hands them in batches to an apply callback that changes the
 * view through a kl_txn, and stores every source's new position in the
 * same LMDB transaction as the changes. A crash therefore never applies a
 * record twice or skips one: a transaction either commits with its
 * positions or leaves no trace, and the next run starts where the last
 * commit left off. One transaction covers many batches (up to
 * txn_records records or txn_ms milliseconds); the LMDB map grows when it
 * fills (the transaction is then run again from its start).
 *
 * A kl_processor belongs to one thread at a time. Views may be read from any
 * thread, also while this process updates or rebuilds them: every opener of
 * one LMDB environment in a process shares it, as LMDB requires.
 * ====================================================================== */

typedef struct kl_processor kl_processor;

/* A transaction on a view's data: the only way apply and flush change it. */
typedef struct kl_txn kl_txn;

/* The longest key of a view's data (LMDB's limit). Values may be up to KL_MAX_BLOCK_BYTES. */
#define KL_TXN_MAX_KEY_BYTES 511u

/* The most logs one processor reads. */
#define KL_PROCESSOR_MAX_SOURCES 64u

/* Bounds of the processor's name (below). */
#define KL_PROCESSOR_NAME_MAX 1024u

/* Defaults of kl_processor_def (kl_processor_def_default). */
#define KL_PROCESSOR_TXN_RECORDS   1000000u                /* records per transaction */
#define KL_PROCESSOR_TXN_MS        1000u                   /* ms per transaction */
#define KL_PROCESSOR_MAP_BYTES     (64ull * 1024u * 1024u) /* first LMDB map size */
#define KL_PROCESSOR_MAX_MAP_BYTES (1ull << 40)            /* the map never grows past 1 TiB */

/*
 * Apply records recs[0..n) of source `source` (the index into the logs
 * given to kl_processor_open), consecutive blocks in order. Return 0, or a
 * negative kl_error: the transaction is then abandoned (nothing of it is
 * committed) and kl_processor_run fails with that code. apply may see the
 * same records again when a transaction is abandoned and retried (the map
 * had to grow): keep the view's state in the txn, or in memory that
 * `discard` forgets. recs[i].data is valid until apply returns.
 */
typedef int (*kl_apply_fn)(void *ctx, kl_txn *txn, size_t source, const kl_record *recs, size_t n);

typedef struct kl_processor_def {
    /*
     * What the view holds (e.g. "orders-by-customer v2"): stored with the
     * view and compared on every open (KL_EINVAL if it differs), so a view is
     * never continued by a different fold. 1..KL_PROCESSOR_NAME_MAX bytes.
     */
    const char *name;
    kl_apply_fn apply;
    /* Optional: called once before each commit, to write what apply kept in memory. */
    int (*flush)(void *ctx, kl_txn *txn);
    /* Optional: the transaction was abandoned; forget what apply kept in memory. */
    void (*discard)(void *ctx);
    void *ctx;
    uint64_t txn_records;   /* most records in one transaction; 0: the default */
    uint32_t txn_ms;        /* most milliseconds of one transaction; 0: the default */
    uint64_t map_bytes;     /* the LMDB map size a new view starts with; 0: the default */
    uint64_t max_map_bytes; /* the map doubles when full, up to this (then KL_ENOSPC); 0: default */
} kl_processor_def;

KL_API void kl_processor_def_default(kl_processor_def *def);

/*
 * Open (or create) the processor whose LMDB environment is the directory
 * `path` (created if absent; its parent must exist), reading `nlogs` logs
 * (1..KL_PROCESSOR_MAX_SOURCES; handles read-only or writable, owned by the
 * caller and open until kl_processor_close). A new view starts every
 * source at block 0. Reopening checks that the view was built over the same
 * logs, in the same order, by the same fold:
 * - KL_EINVAL if def->name or the number of logs differs;
 * - KL_EFORK if a log is not the one the view was built from (another
 *   key), or was truncated since (its fork changed) while the view had
 *   applied records of it, or its tree hash at the view's position is not
 *   the one stored with it (a crash under fsync `interval` or `never` lost
 *   blocks the view had applied, and others took their places); the
 *   context names both and says to rebuild;
 * - KL_ENOTFOUND if the view's position in a log is past that log's length
 *   (a crash lost blocks the view had applied, or the log was replaced by
 *   a shorter one); the context names both.
 * kl_processor_run checks the same at the start of every transaction.
 */
KL_API int kl_processor_open(const char *path, kl_log *const *logs, size_t nlogs,
                             const kl_processor_def *def, kl_processor **out);

/* Close; nothing uncommitted remains (every run ends with a commit). NULL is fine. */
KL_API void kl_processor_close(kl_processor *p);

/* How kl_processor_run (and kl_view_update / kl_view_rebuild) run. Zero means the defaults. */
typedef struct kl_run_options {
    uint64_t max_records; /* stop after this many records; 0: no limit */
    int follow;           /* when caught up, wait for more (kl_log_wait) instead of returning */
    /* Non-NULL: return 0 soon (within ~200 ms) after *stop becomes nonzero (a signal handler). */
    const volatile int *stop;
    /* Called after every batch: records done so far in this run, of `total` known to be due. */
    kl_progress_fn progress;
    void *progress_ctx;
} kl_run_options;

/*
 * Apply every source from its position up to the length it has when the
 * run starts (a read-only handle is refreshed first), in transactions of
 * many batches, then return 0; with opts->follow, keep waiting for and
 * applying new records until *opts->stop. opts may be NULL. *applied (if
 * not NULL) receives the records committed by this run. On an error
 * nothing of the failed transaction is committed; earlier transactions
 * are. A block that fails its checksum ends the run with KL_ECORRUPT after
 * committing the records before it.
 */
KL_API int kl_processor_run(kl_processor *p, const kl_run_options *opts, uint64_t *applied);

/* The committed position (next block) in source `source`; UINT64_MAX if there is none. */
KL_API uint64_t kl_processor_position(const kl_processor *p, size_t source);

/*
 * A read-only transaction on the view's data, for kl_txn_get and
 * kl_txn_scan: a consistent snapshot of the last commit. End it with
 * kl_txn_end; do not keep it open across kl_processor_run.
 */
KL_API int kl_processor_read(kl_processor *p, kl_txn **out);
KL_API void kl_txn_end(kl_txn *txn);

/*
 * Look up `key`: 1 with *val / *val_len set (valid until the next
 * kl_txn_put or kl_txn_del in this txn, or its end), 0 if absent, or a
 * negative kl_error. Keys are 1..KL_TXN_MAX_KEY_BYTES bytes (KL_EINVAL
 * otherwise) and sort as bytes (memcmp, the shorter first).
 */
KL_API int kl_txn_get(kl_txn *txn, const void *key, size_t key_len, const void **val,
                      size_t *val_len);

/* Set key to the val_len bytes at val. KL_EREADONLY in a read txn; KL_ENOSPC if the map is full. */
KL_API int kl_txn_put(kl_txn *txn, const void *key, size_t key_len, const void *val,
                      size_t val_len);

/* Remove key: 1 if it was there, 0 if not. */
KL_API int kl_txn_del(kl_txn *txn, const void *key, size_t key_len);

/* Called for each entry of a scan, in key order; return nonzero to stop. */
typedef int (*kl_scan_fn)(void *ctx, const void *key, size_t key_len, const void *val,
                          size_t val_len);

/* Every entry whose key starts with prefix (prefix_len may be 0: all), in key order. */
KL_API int kl_txn_scan(kl_txn *txn, const void *prefix, size_t prefix_len, kl_scan_fn fn,
                       void *ctx);

/*
 * Built-in views over JSON records, kept in the log's directory under
 * views/<name>/ (docs/FORMAT.md). A record that is not one JSON object, or
 * lacks a field, or whose value is not a number (sum) is counted as skipped
 * (by reason) and otherwise ignored; it is never an error. Names are
 * 1..KL_VIEW_NAME_MAX characters of [A-Za-z0-9._-], not starting with '.';
 * fields are dotted paths ("user", "ctx.user.id").
 *
 * - KL_VIEW_KV: the latest record of each key;
 * - KL_VIEW_COUNT: how many records each key has;
 * - KL_VIEW_SUM: the sum of the number at `value` per key: an exact int64
 *   while every value is an integer and the sum fits, otherwise a double
 *   (the values added in log order, as a program folding the log would).
 */
typedef enum kl_view_kind { KL_VIEW_KV = 1, KL_VIEW_COUNT = 2, KL_VIEW_SUM = 3 } kl_view_kind;

/* Why a record was skipped (kl_view_info.skipped[reason]). */
typedef enum kl_view_skip {
    KL_VIEW_SKIP_NOT_JSON = 0,   /* not exactly one JSON object */
    KL_VIEW_SKIP_MISSING = 1,    /* the key field (or, for sum, the value field) is absent */
    KL_VIEW_SKIP_NOT_NUMBER = 2, /* sum: the value field is not a finite number */
    KL_VIEW_SKIP_BAD_KEY = 3,    /* the key field is null, an object, an array, or too long */
    KL_VIEW_SKIP_KEY_SIZE = 4    /* the key is empty or longer than KL_TXN_MAX_KEY_BYTES */
} kl_view_skip;
#define KL_VIEW_SKIPS 5

#define KL_VIEW_NAME_MAX 64u
#define KL_VIEW_PATH_MAX 255u /* bytes of a dotted field path */

/* "kv", "count", "sum"; and the short name of a skip reason ("not_json", ...). */
KL_API const char *kl_view_kind_name(kl_view_kind kind);
KL_API const char *kl_view_skip_name(kl_view_skip reason);

/*
 * Create view `name` of the log in `dir`, empty at position 0.
 * value_path is required for KL_VIEW_SUM and refused (KL_EINVAL) for the
 * others. KL_EEXIST if the view exists, KL_ENOTFOUND if dir holds no log.
 */
KL_API int kl_view_create(const char *dir, const char *name, kl_view_kind kind,
                          const char *key_path, const char *value_path);

/* Remove a view and its data (KL_ENOTFOUND if absent; KL_EBUSY while it is being rebuilt). */
KL_API int kl_view_drop(const char *dir, const char *name);

/*
 * Bring the view up to the log (kl_processor_run semantics, opts may be
 * NULL). Runs beside an appender and beside other updates of the same view
 * (their transactions take turns). With follow, it also moves on to a new
 * version switched in by a rebuild.
 */
KL_API int kl_view_update(const char *dir, const char *name, const kl_run_options *opts,
                          uint64_t *applied);

#define KL_REBUILD_SHADOW 0x1u

/*
 * Rebuild the view by replaying the log from block 0 into a new version.
 * Plain: the new, empty version is switched in at once (readers then see
 * it grow from nothing) and filled. KL_REBUILD_SHADOW: the new version is
 * built beside the live one, which keeps serving reads and updates, and
 * switched in atomically once it has caught up with the log; a crash
 * before the switch leaves the old version live and intact, and the next
 * shadow rebuild resumes the half-built version. KL_EBUSY if a rebuild of
 * the view is already running.
 */
KL_API int kl_view_rebuild(const char *dir, const char *name, unsigned flags,
                           const kl_run_options *opts);

/*
 * The value of `key` in the live version: 1 with *out malloc'ed (free it)
 * holding *out_len bytes plus a terminating NUL: the record for kv, the
 * number in decimal for count and sum (a double sum with ".0" when it is
 * whole, so it never reads as an integer); 0 if the key is absent.
 */
KL_API int kl_view_get(const char *dir, const char *name, const void *key, size_t key_len,
                       char **out, size_t *out_len);

/* Called for each entry of kl_view_scan: the value formatted as kl_view_get does. */
typedef kl_scan_fn kl_view_scan_fn;

/*
 * The entries of the live version whose key starts with prefix, in key
 * order, at most `limit` of them (0: all): fn(ctx, key, key_len, value,
 * value_len) as kl_view_get formats values; fn returns nonzero to stop.
 */
KL_API int kl_view_scan(const char *dir, const char *name, const void *prefix, size_t prefix_len,
                        uint64_t limit, kl_view_scan_fn fn, void *ctx);

typedef struct kl_view_info {
    char name[KL_VIEW_NAME_MAX + 1];
    kl_view_kind kind;
    char key_path[KL_VIEW_PATH_MAX + 1];
    char value_path[KL_VIEW_PATH_MAX + 1]; /* "" unless sum */
    uint64_t version;                      /* the live version (1 at create, +1 per rebuild) */
    uint64_t position;                     /* the next block the view will apply */
    uint64_t fork;                         /* the log's fork the view was applied at */
    uint64_t log_length;                   /* the log's length now: lag = log_length - position */
    uint64_t log_fork;                     /* the log's fork now: another than fork once the
                                              view applied blocks means it was truncated since */
    uint64_t entries;                      /* keys in the view */
    uint64_t skipped[KL_VIEW_SKIPS];       /* records skipped, by reason */
    uint64_t shadow_version;  /* a newer version being (or left half) built; 0 if none */
    uint64_t shadow_position; /* its position */
    int rebuilding;           /* a rebuild holds the view's lock right now */
    int damaged;              /* kl_view_list only: its metadata or live version cannot be read
                                 (KL_ECORRUPT); only name is set. kl_view_drop still removes it */
    int diverged; /* same fork, but the log's tree hash at position is not the one the view
                     stored: a crash lost blocks it had applied and others took their places;
                     an update refuses (KL_EFORK) until it is rebuilt */
} kl_view_info;

/* Facts about one view (KL_ENOTFOUND if absent). */
KL_API int kl_view_stat(const char *dir, const char *name, kl_view_info *info);

/* Every view of the log in dir, sorted by name: *out malloc'ed (*n entries; free it). */
KL_API int kl_view_list(const char *dir, kl_view_info **out, size_t *n);

/* The name of an error code ("corrupt data", ...). Never NULL. */
KL_API const char *kl_strerror(int code);

/*
 * The context of the last error on this handle ("segment 00000000000000000000.log:
 * bad batch checksum at offset 4160 (blocks 12..19)"). Never NULL; "" if none.
 * With several threads on one handle it describes the latest failure of any.
 */
KL_API const char *kl_log_last_error(kl_log *log);

/* The context of the last error of any kappalog call on this thread. */
KL_API const char *kl_last_error(void);

/* The library version, KL_VERSION_STRING of the build. */
KL_API const char *kl_version(void);

#ifdef __cplusplus
}
#endif

#endif /* KAPPALOG_H */
