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

#include "engine/io/io.h"
#include "engine/io/io_fault.h"
#include "engine/log_internal.h"
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

/* Append records [from, to) of (seed, max_size) in batches of `batch`; returns the first error. */
int tu_append_range(kl_log *log, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                    size_t batch);

/* Flip one bit of a file at offset (or truncate it to size with tu_truncate). */
void tu_flip(const char *path, uint64_t offset, uint8_t mask);
void tu_truncate(const char *path, uint64_t size);
uint64_t tu_file_size(const char *path);

/* "dir/segments/<first>.<ext>" into a static buffer of the caller's. */
void tu_seg_path(char *out, size_t cap, const char *dir, uint64_t first, const char *ext);

#endif
