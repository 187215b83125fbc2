/*
 * test_log.c - the log's public behaviour: create, open, append, get,
 * iterate, reopen, settings, and the errors of bad calls.
 */
#include "testutil.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_append_get_and_reopen(void **state) {
    (void)state;
    char *dir = tu_tmpdir("log");
    char *sub = NULL;
    assert_true(asprintf(&sub, "%s/l", dir) > 0);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.segment_bytes = KL_MIN_SEGMENT_BYTES;
    tu_create(sub, &cfg);
    kl_log *log = tu_open(sub);
    assert_int_equal(tu_append_range(log, 7, 300, 0, 5000, 37), 0);
    tu_expect_records(log, 7, 300, 5000);
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(sub);
    tu_expect_records(log, 7, 300, 5000);
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    assert_true(info.segments > 1);
    assert_int_equal(kl_log_close(log), 0);
    tu_rmrf(dir);
    free(sub);
    free(dir);
}

/* Records of (seed, i) packed back to back in buf: the blocks of one batch. */
static uint64_t pack(uint64_t seed, uint64_t first, size_t n, size_t max, uint8_t *buf,
                     kl_block *blocks) {
    uint64_t off = 0;
    for (size_t k = 0; k < n; k++) {
        blocks[k].data = buf + off;
        blocks[k].size = tu_record(seed, first + k, max, buf + off);
        off += blocks[k].size;
    }
    return off;
}

/* Big batches packed in the caller's memory are written from there (not copied). */
static void test_packed_batches_are_written_in_place_and_read_back(void **state) {
    (void)state;
    char *dir = tu_tmpdir("packed");
    char *sub = NULL;
    assert_true(asprintf(&sub, "%s/l", dir) > 0);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.segment_bytes = 256 * 1024; /* several rolls */
    tu_create(sub, &cfg);
    kl_log *log = tu_open(sub);
    enum { MAX = 3000, PER = 40 };
    uint8_t *buf = malloc((size_t)MAX * PER + 8);
    kl_block blocks[PER];
    uint64_t len = 0;
    for (int b = 0; b < 60; b++) {
        size_t n = 1 + (size_t)b % PER;
        pack(11, len, n, MAX, buf, blocks);
        uint64_t first = 0;
        assert_int_equal(kl_log_append(log, blocks, n, &first), 0);
        assert_int_equal(first, len);
        len += n;
    }
    tu_expect_records(log, 11, MAX, len);
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(sub);
    tu_expect_records(log, 11, MAX, len);
    kl_iter *it = NULL;
    kl_record rec;
    uint64_t seen = 0;
    assert_int_equal(kl_iter_open(log, 0, UINT64_MAX, &it), 0);
    while (kl_iter_next(it, &rec) == 1)
        seen++;
    kl_iter_close(it);
    assert_int_equal(seen, len);
    assert_int_equal(kl_log_close(log), 0);
    free(buf);
    tu_rmrf(dir);
    free(sub);
    free(dir);
}

/*
 * Under `always` a lone appender's big commit hashes its leaves four at a
 * time and builds its tree as complete subtrees while its segment syncs:
 * the signed tree must be the oracle's, record for record, across batches
 * of 256 blocks and more.
 */
/*
 * kl_log_tree_hash at every length up to 300 (low nodes hashed from
 * blocks, stored ones read), and at lengths up to 3300, is the tree hash
 * the test's own tree builder makes of the same records; past the end is
 * refused.
 */
static void test_tree_hash_at_any_length(void **state) {
    (void)state;
    char *dir = tu_new_log("treehash", KL_FSYNC_NEVER);
    kl_log *log = tu_open(dir);
    enum { MAX = 150, N = 3300 };
    assert_int_equal(tu_append_range(log, 29, MAX, 0, N, 97), 0);
    tu_tree t;
    tu_tree_init(&t);
    uint8_t want[KL_HASH_BYTES], got[KL_HASH_BYTES];
    for (uint64_t n = 0; n <= N; n += n < 300 ? 1 : 61) {
        tu_tree_grow(&t, 29, MAX, n);
        tu_tree_hash(&t, want);
        assert_int_equal(kl_log_tree_hash(log, n, got), 0);
        if (memcmp(got, want, sizeof got) != 0)
            fail_msg("tree hash at length %llu differs", (unsigned long long)n);
    }
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    assert_int_equal(kl_log_tree_hash(log, N, got), 0);
    assert_memory_equal(got, info.tree_hash, sizeof got);
    assert_int_equal(kl_log_tree_hash(log, N + 1, got), KL_EINVAL);
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(dir);
}

static void test_big_always_commits_sign_the_right_tree(void **state) {
    (void)state;
    char *dir = tu_tmpdir("bigalways");
    char *sub = NULL;
    assert_true(asprintf(&sub, "%s/l", dir) > 0);
    kl_config cfg;
    kl_config_default(&cfg);
    assert_int_equal(cfg.fsync_mode, KL_FSYNC_ALWAYS);
    tu_create(sub, &cfg);
    kl_log *log = tu_open(sub);
    enum { MAX = 150 };
    assert_int_equal(tu_append_range(log, 23, MAX, 0, 3000, 1000), 0);
    assert_int_equal(tu_append_range(log, 23, MAX, 3000, 3257, 257), 0);
    assert_int_equal(tu_append_range(log, 23, MAX, 3257, 3300, 43), 0);
    tu_tree t;
    tu_tree_init(&t);
    tu_tree_grow(&t, 23, MAX, 3300);
    uint8_t want[KL_HASH_BYTES];
    tu_tree_hash(&t, want);
    tu_expect_signed(log, NULL, 0, want, "after big always commits");
    tu_expect_verified(log, "after big always commits");
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(sub);
    tu_expect_records(log, 23, MAX, 3300);
    tu_expect_signed(log, NULL, 0, want, "reopened");
    assert_int_equal(kl_log_close(log), 0);
    tu_rmrf(dir);
    free(sub);
    free(dir);
}

typedef struct packer {
    kl_log *log;
    int id;
} packer;

/* Each thread appends 40 batches of 10 packed 4 KiB records, tagged with its id. */
static void *packer_main(void *arg) {
    packer *p = arg;
    uint8_t *buf = malloc(10 * 4096);
    kl_block blocks[10];
    for (int b = 0; b < 40; b++) {
        for (int k = 0; k < 10; k++) {
            memset(buf + k * 4096, p->id, 4096);
            memcpy(buf + k * 4096, &b, sizeof b);
            blocks[k] = (kl_block){buf + k * 4096, 4096};
        }
        assert_int_equal(kl_log_append(p->log, blocks, 10, NULL), 0);
    }
    free(buf);
    return NULL;
}

/* Many appenders lending their buffers to shared commits (more pieces than one commit takes). */
static void test_concurrent_packed_batches_share_commits(void **state) {
    (void)state;
    char *dir = tu_tmpdir("lend");
    char *sub = NULL;
    assert_true(asprintf(&sub, "%s/l", dir) > 0);
    tu_create(sub, NULL);
    kl_log *log = tu_open(sub);
    enum { THREADS = 24 };
    pthread_t th[THREADS];
    packer p[THREADS];
    for (int t = 0; t < THREADS; t++) {
        p[t] = (packer){log, t + 1};
        assert_int_equal(pthread_create(&th[t], NULL, packer_main, &p[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(kl_log_length(log), THREADS * 40 * 10);
    int next[THREADS + 1] = {0};
    uint8_t got[4096];
    for (uint64_t i = 0; i < kl_log_length(log); i += 10) {
        size_t n = 0;
        assert_int_equal(kl_log_get(log, i, got, sizeof got, &n), 0);
        assert_int_equal(n, 4096);
        int id = got[4095], b = 0;
        memcpy(&b, got, sizeof b);
        assert_true(id >= 1 && id <= THREADS);
        assert_int_equal(b, next[id]++); /* each thread's batches, whole and in order */
        for (int k = 1; k < 10; k++) {
            assert_int_equal(kl_log_get(log, i + (uint64_t)k, got, sizeof got, &n), 0);
            assert_int_equal(got[4095], id);
        }
    }
    assert_int_equal(kl_log_close(log), 0);
    tu_rmrf(dir);
    free(sub);
    free(dir);
}

typedef struct roller {
    kl_log *log;
    _Atomic int done;
} roller;

/* Single 100-byte records, one a commit, each tagged with its index. */
static void *roller_main(void *arg) {
    roller *r = arg;
    uint8_t rec[100];
    for (uint32_t i = 0; i < 3000; i++) {
        memset(rec, (int)(i & 0xff), sizeof rec);
        memcpy(rec, &i, sizeof i);
        kl_block b = {rec, sizeof rec};
        assert_int_equal(kl_log_append(r->log, &b, 1, NULL), 0);
    }
    atomic_store(&r->done, 1);
    return NULL;
}

/*
 * kl_log_sync beside appends that roll segments under `always`: the sync's
 * pre-flush runs without the log's lock, and a roll closes the descriptor
 * of the segment it seals. It synced that descriptor (EBADF failed the
 * handle for good); now it syncs a duplicate of its own. The window is
 * narrow: with a 20 ms sleep put in it by hand, this test failed with
 * EBADF before the change and passes after it; as it is, it runs the two
 * side by side over about 8 rolls as a guard.
 */
static void test_syncs_beside_appends_that_roll_keep_the_handle(void **state) {
    (void)state;
    char *sub = tu_new_log("sync-roll", KL_FSYNC_ALWAYS);
    kl_log *log = tu_open(sub);
    roller r = {log, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, roller_main, &r), 0);
    unsigned syncs = 0;
    while (!atomic_load(&r.done)) {
        int rc = kl_log_sync(log);
        if (rc != 0)
            fail_msg("sync %u: %d %s", syncs, rc, kl_log_last_error(log));
        syncs++;
    }
    pthread_join(th, NULL);
    assert_true(syncs > 0);
    assert_int_equal(kl_log_length(log), 3000);
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    assert_true(info.segments >= 5);
    uint8_t got[100];
    for (uint32_t i = 0; i < 3000; i += 7) {
        size_t n = 0;
        uint32_t tag = 0;
        assert_int_equal(kl_log_get(log, i, got, sizeof got, &n), 0);
        memcpy(&tag, got, sizeof tag);
        assert_int_equal(tag, i);
    }
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(sub);
}

/* Descriptors this process has open. */
static unsigned open_fds(void) {
    unsigned n = 0;
    for (int fd = 0; fd < 4096; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

/*
 * A writer under `never` that rolls many segments between syncs: it keeps a
 * descriptor for only the newest few of them (commit.c, UNSYNCED_FDS), so
 * the limit on open files does not stop it (before, each sealed segment kept
 * its own until the next sync, and a writer of 64 KiB segments failed after
 * about as many segments as the limit allows). The sync then reaches the
 * others through their paths: after it, a power loss keeps every record.
 */
static void test_a_never_writer_rolls_past_the_descriptor_limit_and_syncs_all(void **state) {
    (void)state;
    enum { MAX_SIZE = 2000, N = 6000, HEADROOM = 24 };
    char *sub = tu_new_log("fd-cap", KL_FSYNC_NEVER); /* about 6 MB: some 90 segments */
    kl_fault_plan plan = {.track_power = 1, .skip_real_sync = 1, .shared = 1};
    kl_io *io = tu_fault_io(&plan);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = open_fds() + HEADROOM;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    kl_log *log = NULL;
    int rc = kl_log_open_io(sub, NULL, io, &log);
    if (rc == 0)
        rc = tu_append_range(log, 77, MAX_SIZE, 0, N, 20);
    char why[512] = "";
    if (rc != 0)
        snprintf(why, sizeof why, "%s", log ? kl_log_last_error(log) : kl_last_error());
    kl_info info = {0};
    if (rc == 0)
        rc = kl_log_info(log, &info);
    if (rc == 0)
        rc = kl_log_sync(log);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    if (rc != 0)
        fail_msg("with %llu descriptors: %d %s", (unsigned long long)low.rlim_cur, rc, why);
    assert_true(info.segments > 3 * HEADROOM);
    kl_io_fault_crash_now(io); /* power lost right after the sync */
    kl_log_close(log);
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_io_fault_free(io);
    log = tu_open(sub);
    tu_expect_records(log, 77, MAX_SIZE, N);
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(sub);
}

/* Lines of /proc/self/maps: the mappings this process holds. */
static unsigned mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    unsigned n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

/*
 * A handle that reads every block of a log of many small segments holds one
 * mapping per segment, its data's: the index files of small segments are read
 * onto the heap (index/entry_array.c). With a mapping for each index too, a
 * verify of 33,000 segments of 64 KiB ran out of the kernel's
 * vm.max_map_count (65,530) and failed.
 */
static void test_reading_many_small_segments_maps_each_once(void **state) {
    (void)state;
    enum { MAX_SIZE = 1500, N = 8000 };
    char *sub = tu_new_log("maps", KL_FSYNC_NEVER);
    kl_log *log = tu_open(sub);
    assert_int_equal(tu_append_range(log, 78, MAX_SIZE, 0, N, 25), 0);
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open_ro(sub);
    kl_info info;
    assert_int_equal(kl_log_info(log, &info), 0);
    assert_true(info.segments > 50);
    unsigned before = mappings();
    tu_expect_records(log, 78, MAX_SIZE, N); /* reads every block: maps every segment */
    unsigned added = mappings() - before;
    if (added > info.segments + 8)
        fail_msg("reading %llu segments added %u mappings", (unsigned long long)info.segments,
                 added);
    assert_int_equal(kl_log_close(log), 0);
    tu_rm_log(sub);
}

/* Make io_uring_setup fail with EPERM in this process, as a locked-down sandbox does. */
static int refuse_io_uring(void) {
#if defined(__x86_64__)
    const unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned arch = AUDIT_ARCH_AARCH64;
#else
    return -1;
#endif
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* In the child: the automatic choice falls back to posix and works; forcing io_uring fails. */
static int fallback_child(const char *dir) {
    unsetenv("KL_IO");
    setenv("KL_QUIET", "1", 1);
    if (refuse_io_uring() != 0)
        return 77;
    if (kl_log_create(dir, NULL) != 0)
        return 10;
    kl_log *log = NULL;
    if (kl_log_open(dir, NULL, &log) != 0)
        return 11;
    kl_info info;
    kl_log_info(log, &info);
    if (strcmp(info.io_backend, "posix") != 0)
        return 12;
    kl_block b = {"hello", 5};
    char got[8];
    size_t n = 0;
    if (kl_log_append(log, &b, 1, NULL) != 0 || kl_log_get(log, 0, got, sizeof got, &n) != 0 ||
        n != 5 || memcmp(got, "hello", 5) != 0)
        return 13;
    kl_log_close(log);
    kl_open_options o;
    kl_open_options_default(&o);
    o.io = KL_IO_URING;
    if (kl_log_open(dir, &o, &log) != KL_EIO)
        return 14;
    return 0;
}

static void test_refused_io_uring_falls_back_to_posix(void **state) {
    (void)state;
    char *dir = tu_tmpdir("fallback");
    char *sub = NULL;
    assert_true(asprintf(&sub, "%s/l", dir) > 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fallback_child(sub));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
    tu_rmrf(dir);
    free(sub);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_get_and_reopen),
        cmocka_unit_test(test_refused_io_uring_falls_back_to_posix),
        cmocka_unit_test(test_packed_batches_are_written_in_place_and_read_back),
        cmocka_unit_test(test_big_always_commits_sign_the_right_tree),
        cmocka_unit_test(test_tree_hash_at_any_length),
        cmocka_unit_test(test_concurrent_packed_batches_share_commits),
        cmocka_unit_test(test_syncs_beside_appends_that_roll_keep_the_handle),
        cmocka_unit_test(test_a_never_writer_rolls_past_the_descriptor_limit_and_syncs_all),
        cmocka_unit_test(test_reading_many_small_segments_maps_each_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
