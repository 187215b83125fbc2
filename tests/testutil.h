/*
 * testutil.h - what the tests share: temporary directories, seeded
 * deterministic records, and a backend chosen by KL_IO (uring or posix), so
 * the same test proves the same promise on both backends.
 */
#ifndef KL_TESTUTIL_H
#define KL_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine/io/io.h"
#include "engine/io/io_fault.h"
#include "engine/log_internal.h"
#include "engine/proof.h"
#include "kappalog.h"

/* A new empty directory under $TMPDIR (or /tmp); free() the path, tu_rmrf the tree. */
char *tu_tmpdir(const char *tag);
void tu_rmrf(const char *path);

/* splitmix64 */
uint64_t tu_rand(uint64_t *state);

/*
 * The deterministic content of record `index` of a stream with `seed`:
 * size in [0, max_size], bytes derived from (seed, index). Returns the size.
 */
size_t tu_record(uint64_t seed, uint64_t index, size_t max_size, uint8_t *buf);

/* Does log hold exactly records [0, n) of (seed, max_size)? Fails the test if not. */
void tu_expect_records(kl_log *log, uint64_t seed, size_t max_size, uint64_t n);

/* The backend KL_IO asks for; exits 77 (skip) if that is io_uring and the kernel refuses it. */
kl_io *tu_io(void);

/* A fault backend with the given plan. */
kl_io *tu_fault_io(const kl_fault_plan *plan);

/* Create a log in dir with cfg (NULL: defaults) on the real backend; asserts success. */
void tu_create(const char *dir, const kl_config *cfg);

/*
 * A log at "<new temp dir>/log" created with `mode` and the smallest segments (so tests roll
 * them). Returns its path (free it); tu_rm_log removes the temp dir around it.
 */
char *tu_new_log(const char *tag, kl_fsync_mode mode);
void tu_rm_log(char *log_path);

/*
 * The log at dir holds records [0, from) of (seed, max_size): append [from, to) in batches,
 * close, reopen, and check that all of [0, to) is there.
 */
void tu_grow_and_check(const char *dir, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                       size_t batch);

/* Open on the KL_IO backend; asserts success. */
kl_log *tu_open(const char *dir);
/* The same, read-only. */
kl_log *tu_open_ro(const char *dir);

/* Append records [from, to) of (seed, max_size) in batches of `batch`; returns the first error. */
int tu_append_range(kl_log *log, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                    size_t batch);

/*
 * A writer that dies: a child process opens dir, appends records [from, to)
 * as tu_append_range does and exits without closing the log. Its commits
 * are acknowledged, but what a close would make durable (under `always`
 * the anchor slot and tree nodes of a checkpoint) is not.
 */
void tu_append_and_die(const char *dir, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                       size_t batch);

/* Flip one bit of a file at offset (or truncate it to size with tu_truncate). */
void tu_flip(const char *path, uint64_t offset, uint8_t mask);
void tu_truncate(const char *path, uint64_t size);
uint64_t tu_file_size(const char *path);
/*
 * Cases that each damage a fresh copy of one log: under root (a temporary
 * directory), pristine is the log the group set-up makes once, dir each
 * case's copy. The group set-up calls tu_cases_init and sets *state to the
 * tu_cases (cmocka hands it to every case's set-up); tu_case_setup copies
 * pristine to dir, tu_case_teardown removes dir; tu_cases_free removes root.
 */
typedef struct tu_cases {
    char *root, *pristine, *dir;
} tu_cases;
void tu_cases_init(tu_cases *c, const char *tag);
void tu_cases_free(tu_cases *c);
int tu_case_setup(void **state);
int tu_case_teardown(void **state);

/* The whole file (malloc'd; *len its size), or n bytes written at off; fail the test on error. */
uint8_t *tu_read_file(const char *path, size_t *len);
void tu_write_at(const char *path, uint64_t off, const void *p, size_t n);

/* "dir/segments/<first>.<ext>" into a static buffer of the caller's. */
void tu_seg_path(char *out, size_t cap, const char *dir, uint64_t first, const char *ext);
/* The header file of the log at dir (hdr) and its two slots decoded (each must check out). */
void tu_read_slots(const char *dir, uint8_t hdr[KL_HDR_FILE_BYTES], kl_slot s[2]);

/* ---- the signed tree (Hypercore), checked against the tests' own oracle ---- */

/*
 * The Merkle tree of a record stream grown leaf by leaf with hc.h's hashes
 * (which test_hc.c pins to Hypercore's golden vectors): what the signed
 * roots of a log holding these records must be, computed without the
 * engine's tree builder, tree file or header.
 */
typedef struct tu_tree {
    kl_node roots[KL_MAX_ROOTS];
    size_t n;
    uint64_t length;
} tu_tree;

void tu_tree_init(tu_tree *t);
/* Add the next block's bytes. */
void tu_tree_add(tu_tree *t, const void *data, size_t len);
/* Add records [t->length, to) of (seed, max_size). */
void tu_tree_grow(tu_tree *t, uint64_t seed, size_t max_size, uint64_t to);
/* The tree hash of t's roots. */
void tu_tree_hash(const tu_tree *t, uint8_t out[KL_HASH_BYTES]);

/* A 32-byte key seed of one repeated byte (tests sign with known keys). */
void tu_seed(uint8_t seed[KL_SEED_BYTES], uint8_t byte);
/* The defaults, the smallest segments (many of them in a small log), and the key made from
   seed byte `byte` (into the caller's seed, which must outlive cfg). */
void tu_config_small_signed(kl_config *cfg, uint8_t seed[KL_SEED_BYTES], uint8_t byte);

/* kl_log_verify passes; fails the test with the first bad block and the context if not. */
void tu_expect_verified(kl_log *log, const char *what);

/*
 * The log's signed state is the expected one: its public key is the one
 * `seed` makes (NULL: not checked), its core key and discovery key follow
 * from it, its fork is `fork`, its tree hash is `tree_hash` and the stored
 * signature over (tree_hash, length, fork) verifies with that public key.
 */
void tu_expect_signed(kl_log *log, const uint8_t *seed, uint64_t fork,
                      const uint8_t tree_hash[KL_HASH_BYTES], const char *what);

/*
 * Every header slot of the log in dir that decodes (checksum and fields)
 * carries a signature that verifies over its roots, or none yet (a commit
 * under `interval` or `never` is signed just after it is published; a crash
 * between the two leaves it unsigned, and the next writable open signs it).
 * No state a crash can leave has a slot that checks out but is signed
 * wrongly. Returns how many slots decode; adds the unsigned ones to
 * *unsigned_seen (if not NULL).
 */
int tu_expect_slots_trusted(const char *dir, const char *what, uint64_t *unsigned_seen);

/*
 * How sparsely the crash-point sweeps (test_power_loss, test_truncate) take
 * their points: KL_TEST_SWEEP_STRIDE, default 1 (every point). The build
 * under AddressSanitizer sets 3 (tests/CMakeLists.txt): the normal build
 * covers every point, the sanitizers check memory on a third of them.
 */
uint64_t tu_sweep_stride(void);
/*
 * The stride of a sweep whose crashes and failures happen on the fault
 * backend (test_power_loss, test_faults, test_truncate's crash sweeps):
 * tu_sweep_stride() times KL_TEST_FAULT_SPARSE (default 1). That backend's
 * operations are the same whatever KL_IO says; only the reopens that check
 * each point go through KL_IO's backend. So the io_uring runs take every
 * point of their build and the posix runs, with KL_TEST_FAULT_SPARSE=3, a
 * third of them (tests/CMakeLists.txt).
 */
uint64_t tu_fault_sweep_stride(void);

/* ---- the golden vectors of tests/data/hypercore/ (found through KL_TEST_DATA) ---- */

/* The parsed vector file NAME (json_decref it); fails the test if it cannot be read. */
json_t *tu_vector(const char *name);
/* o[key], failing the test if it is absent; as a string; as a non-negative integer. */
json_t *tu_json_get(const json_t *o, const char *key);
const char *tu_json_str(const json_t *o, const char *key);
uint64_t tu_json_u64(const json_t *o, const char *key);
/* Lowercase hex into bytes (at most cap; fails the test on bad hex); returns the count. */
size_t tu_unhex(const char *hex, uint8_t *out, size_t cap);
/* n bytes as lowercase hex into out (room for 2n + 1). */
void tu_hex(const uint8_t *p, size_t n, char *out);

/* Copy the directory tree `from` to `to` (which must not exist); files keep their modes. */
void tu_copy_dir(const char *from, const char *to);

/* A BLAKE2b-256 over every file under dir (relative names, sorted, and bytes). */
void tu_dir_digest(const char *dir, uint8_t out[KL_HASH_BYTES]);

/* The kappalog binary ($KL_TEST_BIN) for tests that run it; exits 77 (skip) if there is none. */
const char *tu_cli_bin(void);

/* A request of the golden vectors (wire-messages.json, proofs.json) as the struct. */
void tu_request_from_json(const json_t *j, kl_proof_request *r);

/* A TCP connection to "IPV4:PORT" (test tools); the fd, or -1. */
int tu_dial(const char *hostport);

#endif
