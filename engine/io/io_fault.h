/*
 * io_fault.h - the fault-injecting backend, for tests only (not installed).
 *
 * It runs real file operations (on top of the posix backend) and can:
 * - fail the Nth operation with an errno (EIO, ENOSPC), or make the Nth
 *   write short: part of its bytes land, then it fails;
 * - "crash" after the Nth operation: every later operation fails with EIO
 *   and has no effect, as if the process were gone;
 * - simulate power loss: remember, per file, what a completed fdatasync made
 *   durable (and per directory, which names a completed fsync made durable),
 *   and on kl_io_fault_power_loss() rewrite the real files to what a machine
 *   could hold after losing power: unsynced writes dropped, or torn at
 *   512-byte sector granularity, files whose directory entry was never synced
 *   gone.
 *
 * Operations are counted in the order the engine issues them: every call of
 * the vtable but close, unmap and destroy, and every op inside a submit.
 */
#ifndef KL_IO_FAULT_H
#define KL_IO_FAULT_H

#include "io.h"

enum kl_fault_kind {
    KL_FAULT_ERROR = 0, /* the op has no effect and fails with fail_errno */
    KL_FAULT_SHORT = 1  /* a write puts its first half, then fails with fail_errno */
};

typedef struct kl_fault_plan {
    uint64_t fail_at;     /* 1-based number of the op to fail; 0 = none */
    int fail_errno;       /* EIO or ENOSPC (default EIO) */
    int fail_kind;        /* enum kl_fault_kind */
    uint64_t crash_after; /* ops numbered above this fail with EIO; 0 = never */
    int track_power;      /* remember durable state for kl_io_fault_power_loss */
    int skip_real_sync;   /* model syncs without calling fdatasync (fast; for power-loss
                             tests, where only the model's durability counts) */
    int shared;           /* destroy() by a log handle is a no-op: several handles in turn
                             can use this backend; the test frees it with kl_io_fault_free */
    uint64_t seed;        /* for the torn-write choices */
} kl_fault_plan;

enum kl_power_mode {
    KL_POWER_DROP = 0, /* every write not covered by a completed sync is lost */
    KL_POWER_TORN = 1, /* each unsynced sector keeps its old or its new bytes, at random;
                          each unsynced file size and directory entry likewise */
    KL_POWER_KEEP = 2  /* everything stays: a process crash, not a power loss */
};

int kl_io_fault_new(const kl_fault_plan *plan, kl_io **out);

/* Free a backend made with plan.shared set. */
void kl_io_fault_free(kl_io *io);

/* Operations issued so far. */
uint64_t kl_io_fault_ops(kl_io *io);

/* Whether the crash point was reached. */
int kl_io_fault_crashed(kl_io *io);

/* Crash now: this and every later op fails with EIO, as past crash_after. */
void kl_io_fault_crash_now(kl_io *io);

/* kl_mono_ns() when the crash point was reached (0 if not yet). */
uint64_t kl_io_fault_crash_ns(kl_io *io);

/*
 * Rewrite the real files to what a power loss could leave (needs
 * track_power). Call after the log handle using `io` is closed.
 */
int kl_io_fault_power_loss(kl_io *io, enum kl_power_mode mode);

#endif
