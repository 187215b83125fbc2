/*
 * util.h - small helpers shared by every layer of the library: assertions
 * that stay on in release builds, little-endian loads and stores, time, and
 * the thread-local error context behind kl_last_error().
 *
 * The one thing to know: kl_errf() records *why* a call failed in this
 * thread's context and returns the code, so a failure path reads
 * `return kl_errf(KL_ECORRUPT, "...")`. The public entry points copy that
 * context into the handle (kl_log_last_error).
 */
#ifndef KL_UTIL_H
#define KL_UTIL_H

#include <stdint.h>
#include <string.h>

#include "kappalog.h"

/* Invariants whose failure would mean corruption: checked in every build. */
#define KL_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            kl_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

__attribute__((noreturn)) void kl_assert_fail(const char *what, const char *file, int line);

/* Record the context of a failure in this thread and return `code`. */
int kl_errf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Add a prefix ("opening DIR: ") to this thread's context, keep the code. */
int kl_err_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Map an errno value to a kl_error code (EIO -> KL_EIO, ENOSPC -> KL_ENOSPC...). */
int kl_err_from_errno(int err);

/* This thread's context buffer (what kl_last_error returns). */
const char *kl_err_thread(void);
void kl_err_clear(void);

static inline uint16_t kl_load16(const uint8_t *p) {
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static inline uint32_t kl_load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t kl_load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline void kl_store16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void kl_store32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}
static inline void kl_store64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kappalog's formats are little-endian; this build assumes a little-endian host"
#endif

/* Wall clock in Unix milliseconds, and a monotonic clock in nanoseconds. */
uint64_t kl_now_ms(void);
uint64_t kl_mono_ns(void);

/*
 * Tests only: make kl_now_ms return fn() (NULL: the wall clock again), so a
 * test controls batch timestamps (tests/test_time_index.c steps the clock
 * back to prove they stay monotonic). Process-wide; never called by the
 * library or the tool.
 */
typedef uint64_t (*kl_clock_fn)(void);
void kl_test_set_clock(kl_clock_fn fn);

/*
 * The kernel's boot id (/proc/sys/kernel/random/boot_id), all zero if it
 * cannot be read. A header slot written in the current boot can trust the
 * page cache (DURABILITY.md). The fault backend's simulated power loss calls
 * kl_boot_id_bump(), as a reboot would change the id.
 */
void kl_boot_id(uint8_t out[16]);
void kl_boot_id_bump(void);
int kl_boot_id_known(const uint8_t id[16]);

#define KL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KL_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * Remove path (relative to the directory fd `at`, or AT_FDCWD) and
 * everything under it, at most `depth` levels down. Missing is fine.
 */
int kl_remove_tree(int at, const char *path, int depth);

#endif
