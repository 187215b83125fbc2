/*
 * test_io.c - the I/O backends (engine/io/): posix, io_uring, and the
 * fault-injecting backend the durability tests stand on.
 *
 * What this proves, on posix, io_uring (skipped with a message where the
 * kernel refuses it) and the fault backend without faults: writes land at
 * their offsets from many iovecs; within a chain an op after a failed one
 * reports -ECANCELED and has no effect while a separate chain still runs;
 * datasync and fullsync succeed; pread stops short at end of file; a mapping
 * shows the file. For the fault backend: fail_at=N fails exactly the Nth
 * counted op with the chosen errno and nothing else; a short write puts its
 * first half then fails; after crash_after every op fails with EIO and
 * changes nothing; power loss (DROP) leaves exactly what a completed sync
 * made durable, and exactly the directory entries a directory fsync made
 * durable (a never-synced new file vanishes, an unsynced unlink is undone);
 * TORN leaves, per 512-byte sector, the old or the new bytes and nothing
 * else; KEEP changes nothing. And kl_io_new honours KL_IO.
 *
 * If these fail, every power-loss and fault test of the engine proves
 * nothing, which is why the fault backend is tested against plain files.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io/io.h"
#include "engine/io/io_fault.h"

#define SECTOR 512u

/* ---- plain-file helpers (outside every backend) ---- */

static char *join(const char *dir, const char *name) {
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static void put_file(const char *path, const void *buf, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* The whole file (malloc'ed, *len set), or NULL if it does not exist. */
static uint8_t *get_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        assert_int_equal(errno, ENOENT);
        *len = 0;
        return NULL;
    }
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    assert_non_null(b);
    assert_int_equal(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static int exists(const char *path) {
    return access(path, F_OK) == 0;
}

static void expect_file(const char *path, const void *want, size_t want_len) {
    size_t len = 0;
    uint8_t *b = get_file(path, &len);
    if (!b)
        fail_msg("%s does not exist", path);
    if (len != want_len)
        fail_msg("%s has %zu bytes, expected %zu", path, len, want_len);
    assert_memory_equal(b, want, want_len);
    free(b);
}

static void fill(uint8_t *b, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)tu_rand(&seed);
}

/* ---- backends ---- */

enum { B_POSIX, B_URING, B_FAULT, B_COUNT };
static const char *const backend_names[B_COUNT] = {"posix", "io_uring", "fault"};

/* A backend, or NULL (with a message) if the kernel refuses io_uring. */
static kl_io *make_backend(int which) {
    kl_io *io = NULL;
    if (which == B_POSIX) {
        assert_int_equal(kl_io_posix_new(&io), 0);
    } else if (which == B_URING) {
        if (kl_io_uring_new(&io) != 0) {
            print_message("skipped io_uring part: the kernel refuses it (%s)\n", kl_last_error());
            return NULL;
        }
    } else {
        kl_fault_plan plan = {0};
        io = tu_fault_io(&plan);
    }
    assert_string_equal(io->name, backend_names[which]);
    return io;
}

static kl_io *fault_backend(uint64_t fail_at, int err, int kind, uint64_t crash_after,
                            int track_power, uint64_t seed) {
    kl_fault_plan plan = {.fail_at = fail_at,
                          .fail_errno = err,
                          .fail_kind = kind,
                          .crash_after = crash_after,
                          .track_power = track_power,
                          .seed = seed};
    return tu_fault_io(&plan);
}

static int io_open(kl_io *io, const char *path, int flags) {
    int fd = -1;
    int rc = kl_io_open(io, path, flags, 0644, &fd);
    if (rc != 0)
        fail_msg("%s: open %s = %d", io->name, path, rc);
    return fd;
}

static kl_io_op write_op(int fd, const struct iovec *iov, int iovcnt, uint64_t off, int link) {
    return (kl_io_op){.kind = KL_IO_OP_WRITE,
                      .link = (uint8_t)link,
                      .fd = fd,
                      .iov = iov,
                      .iovcnt = iovcnt,
                      .offset = off,
                      .res = 12345};
}

static kl_io_op sync_op(int kind, int fd, int link) {
    return (kl_io_op){.kind = (uint8_t)kind, .link = (uint8_t)link, .fd = fd, .res = 12345};
}

/* ---- every backend ---- */

static void writes_land_at_their_offsets(kl_io *io, const char *dir) {
    char *path = join(dir, "w");
    int fd = io_open(io, path, O_RDWR | O_CREAT | O_TRUNC);
    enum { NIOV = 64 };
    static uint8_t src[NIOV * 700 + 5000];
    fill(src, sizeof src, 1);
    uint8_t *model = calloc(1, 1u << 20);
    assert_non_null(model);
    /* Three iovecs (one empty) at an odd offset. */
    struct iovec a[3] = {{src, 6}, {src + 6, 0}, {src + 100, 5}};
    /* The most iovecs a write takes, of varied sizes (some empty). */
    struct iovec b[NIOV];
    size_t btotal = 0, at = 0;
    for (int k = 0; k < NIOV; k++) {
        size_t n = (k % 5 == 0) ? 0 : (size_t)(k * 37 % 700);
        b[k] = (struct iovec){src + at, n};
        at += n;
        btotal += n;
    }
    kl_io_op ops[3] = {write_op(fd, a, 3, 1001, 0), write_op(fd, b, NIOV, 70000, 0),
                       write_op(fd, a, 1, 0, 0)};
    assert_int_equal(kl_io_submit(io, ops, 3), 0);
    assert_int_equal(ops[0].res, 11);
    assert_int_equal(ops[1].res, (int64_t)btotal);
    assert_int_equal(ops[2].res, 6);
    memcpy(model + 1001, src, 6);
    memcpy(model + 1007, src + 100, 5);
    memcpy(model + 70000, src, btotal);
    memcpy(model + 0, src, 6);
    /* An overwrite that straddles earlier data. */
    struct iovec c[2] = {{src + 4000, 3000}, {src + 9000, 1}};
    kl_io_op op = write_op(fd, c, 2, 1003, 0);
    assert_int_equal(kl_io_submit(io, &op, 1), 0);
    assert_int_equal(op.res, 3001);
    memcpy(model + 1003, src + 4000, 3000);
    memcpy(model + 4003, src + 9000, 1);
    uint64_t size = 0;
    assert_int_equal(io->v->size(io, fd, &size), 0);
    assert_int_equal(size, 70000 + btotal);
    kl_io_close(io, fd);
    expect_file(path, model, (size_t)size);
    free(model);
    free(path);
}

static void a_failed_op_cancels_the_rest_of_its_chain_only(kl_io *io, const char *dir) {
    char *good = join(dir, "good"), *ro = join(dir, "ro");
    put_file(ro, "read only", 9);
    int fd = io_open(io, good, O_RDWR | O_CREAT | O_TRUNC);
    int rfd = io_open(io, ro, O_RDONLY); /* a write to it fails with EBADF */
    struct iovec A = {"AAAA", 4}, B = {"BBBB", 4}, C = {"CCCC", 4}, D = {"DDDD", 4};
    kl_io_op ops[8] = {
        /* chain 1: fails at its first op */
        write_op(rfd, &A, 1, 0, 1),
        write_op(fd, &A, 1, 0, 1),
        sync_op(KL_IO_OP_DATASYNC, fd, 0),
        /* chain 2: runs in full */
        write_op(fd, &B, 1, 100, 1),
        sync_op(KL_IO_OP_DATASYNC, fd, 0),
        /* chain 3: fails in the middle */
        write_op(fd, &C, 1, 200, 1),
        write_op(rfd, &C, 1, 0, 1),
        write_op(fd, &D, 1, 300, 0),
    };
    int rc = kl_io_submit(io, ops, 8);
    assert_int_equal(rc, -EBADF);
    assert_int_equal(ops[0].res, -EBADF);
    assert_int_equal(ops[1].res, -ECANCELED);
    assert_int_equal(ops[2].res, -ECANCELED);
    assert_int_equal(ops[3].res, 4);
    assert_int_equal(ops[4].res, 0);
    assert_int_equal(ops[5].res, 4);
    assert_int_equal(ops[6].res, -EBADF);
    assert_int_equal(ops[7].res, -ECANCELED);
    /* A failure as the last op of a chain does not touch the next chain. */
    kl_io_op ops2[3] = {write_op(fd, &A, 1, 400, 1), write_op(rfd, &A, 1, 0, 0),
                        write_op(fd, &D, 1, 500, 0)};
    assert_int_equal(kl_io_submit(io, ops2, 3), -EBADF);
    assert_int_equal(ops2[0].res, 4);
    assert_int_equal(ops2[1].res, -EBADF);
    assert_int_equal(ops2[2].res, 4);
    kl_io_close(io, fd);
    kl_io_close(io, rfd);
    size_t len;
    uint8_t *b = get_file(good, &len);
    assert_non_null(b);
    assert_int_equal(len, 504);
    assert_memory_equal(b + 0, "\0\0\0\0", 4); /* the cancelled write never ran */
    assert_memory_equal(b + 100, "BBBB", 4);
    assert_memory_equal(b + 200, "CCCC", 4);
    assert_memory_equal(b + 300, "\0\0\0\0", 4);
    assert_memory_equal(b + 400, "AAAA", 4);
    assert_memory_equal(b + 500, "DDDD", 4);
    free(b);
    expect_file(ro, "read only", 9);
    free(good);
    free(ro);
}

static void syncs_succeed(kl_io *io, const char *dir) {
    char *path = join(dir, "s");
    int fd = io_open(io, path, O_RDWR | O_CREAT | O_TRUNC);
    struct iovec v = {"synced", 6};
    kl_io_op ops[3] = {write_op(fd, &v, 1, 0, 1), sync_op(KL_IO_OP_DATASYNC, fd, 1),
                       sync_op(KL_IO_OP_FULLSYNC, fd, 0)};
    assert_int_equal(kl_io_submit(io, ops, 3), 0);
    assert_int_equal(ops[0].res, 6);
    assert_int_equal(ops[1].res, 0);
    assert_int_equal(ops[2].res, 0);
    assert_int_equal(kl_io_write_sync(io, fd, "again", 5, 6, 1), 0);
    assert_int_equal(kl_io_write_sync(io, fd, "!", 1, 11, 0), 0);
    kl_io_close(io, fd);
    expect_file(path, "syncedagain!", 12);
    /* A directory: fullsync through a descriptor, and the helper. */
    int dfd = io_open(io, dir, O_RDONLY | O_DIRECTORY);
    kl_io_op d = sync_op(KL_IO_OP_FULLSYNC, dfd, 0);
    assert_int_equal(kl_io_submit(io, &d, 1), 0);
    assert_int_equal(d.res, 0);
    kl_io_close(io, dfd);
    assert_int_equal(kl_io_sync_dir(io, dir), 0);
    char *missing = join(dir, "no-such-dir");
    assert_int_equal(kl_io_sync_dir(io, missing), -ENOENT);
    free(missing);
    free(path);
}

static void pread_stops_short_at_end_of_file(kl_io *io, const char *dir) {
    char *path = join(dir, "r");
    uint8_t src[100];
    fill(src, sizeof src, 3);
    put_file(path, src, sizeof src);
    int fd = io_open(io, path, O_RDONLY);
    uint8_t buf[300];
    size_t got = 999;
    assert_int_equal(kl_io_pread(io, fd, buf, 200, 0, &got), 0);
    assert_int_equal(got, 100);
    assert_memory_equal(buf, src, 100);
    assert_int_equal(kl_io_pread(io, fd, buf, 50, 80, &got), 0);
    assert_int_equal(got, 20);
    assert_memory_equal(buf, src + 80, 20);
    assert_int_equal(kl_io_pread(io, fd, buf, 100, 0, &got), 0);
    assert_int_equal(got, 100);
    assert_int_equal(kl_io_pread(io, fd, buf, 10, 100, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(kl_io_pread(io, fd, buf, 10, 1u << 30, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(kl_io_pread(io, fd, buf, 0, 5, &got), 0);
    assert_int_equal(got, 0);
    kl_io_close(io, fd);
    free(path);
}

static void map_shows_the_file(kl_io *io, const char *dir) {
    char *path = join(dir, "m");
    static uint8_t src[10000];
    fill(src, sizeof src, 4);
    put_file(path, src, sizeof src);
    int fd = io_open(io, path, O_RDWR);
    const void *m = NULL;
    assert_int_equal(io->v->map(io, fd, 3 * 4096 + 4096, &m), 0); /* longer than the file */
    assert_non_null(m);
    assert_memory_equal(m, src, sizeof src);
    /* A shared mapping sees later writes through the backend (how readers see appends). */
    struct iovec v = {"fresh", 5};
    kl_io_op op = write_op(fd, &v, 1, 9000, 0);
    assert_int_equal(kl_io_submit(io, &op, 1), 0);
    assert_memory_equal((const uint8_t *)m + 9000, "fresh", 5);
    io->v->unmap(io, m, 4 * 4096);
    kl_io_close(io, fd);
    free(path);
}

static void metadata_ops_work(kl_io *io, const char *dir) {
    char *a = join(dir, "a"), *b = join(dir, "b"), *sub = join(dir, "sub");
    int fd = -1;
    assert_int_equal(kl_io_open(io, a, O_RDWR, 0, &fd), -ENOENT);
    fd = io_open(io, a, O_RDWR | O_CREAT | O_EXCL);
    assert_int_equal(io->v->truncate(io, fd, 12345), 0);
    uint64_t size = 0;
    assert_int_equal(io->v->size(io, fd, &size), 0);
    assert_int_equal(size, 12345);
    assert_int_equal(io->v->truncate(io, fd, 7), 0);
    assert_int_equal(io->v->size(io, fd, &size), 0);
    assert_int_equal(size, 7);
    kl_io_close(io, fd);
    assert_int_equal(io->v->rename(io, a, b), 0);
    assert_false(exists(a));
    assert_true(exists(b));
    assert_int_equal(io->v->rename(io, a, b), -ENOENT);
    assert_int_equal(io->v->mkdir(io, sub, 0755), 0);
    assert_int_equal(io->v->mkdir(io, sub, 0755), -EEXIST);
    assert_int_equal(io->v->unlink(io, b), 0);
    assert_int_equal(io->v->unlink(io, b), -ENOENT);
    assert_false(exists(b));
    free(a);
    free(b);
    free(sub);
}

/* Groups started one by one run while the caller goes on; one finish reports them all. */
static void started_groups_finish_together(kl_io *io, const char *dir) {
    char *good = join(dir, "good"), *ro = join(dir, "ro");
    put_file(ro, "read only", 9);
    int fd = io_open(io, good, O_RDWR | O_CREAT | O_TRUNC);
    int rfd = io_open(io, ro, O_RDONLY); /* a write to it fails with EBADF */
    struct iovec A = {"AAAA", 4}, B = {"BBBB", 4}, C = {"CCCC", 4};
    kl_io_op a[2] = {write_op(fd, &A, 1, 0, 1), sync_op(KL_IO_OP_DATASYNC, fd, 0)};
    kl_io_op b[1] = {write_op(fd, &B, 1, 100, 0)}; /* writes only: the ring runs them inline */
    assert_int_equal(kl_io_start(io, a, 2), 0);
    assert_int_equal(kl_io_start(io, b, 1), 0);
    assert_int_equal(kl_io_finish(io), 0);
    assert_int_equal(a[0].res, 4);
    assert_int_equal(a[1].res, 0);
    assert_int_equal(b[0].res, 4);

    /* A failure in a later group is the finish's error; earlier groups still ran in full. */
    kl_io_op c[2] = {write_op(fd, &C, 1, 200, 1), sync_op(KL_IO_OP_DATASYNC, fd, 0)};
    kl_io_op d[3] = {write_op(rfd, &A, 1, 0, 1),
                     write_op(fd, &B, 1, 300, 0),
                     {.kind = KL_IO_OP_WRITEBACK, .fd = fd, .offset = 0, .nbytes = 4096}};
    assert_int_equal(kl_io_start(io, c, 2), 0);
    int rc = kl_io_start(io, d, 3); /* known at once only where the ops ran inline */
    assert_true(rc == 0 || rc == -EBADF);
    assert_int_equal(kl_io_finish(io), -EBADF);
    assert_int_equal(c[0].res, 4);
    assert_int_equal(c[1].res, 0);
    assert_int_equal(d[0].res, -EBADF);
    assert_int_equal(d[1].res, -ECANCELED);
    assert_int_equal(d[2].res, 0); /* another chain */

    /* The error was handed over once: the next round starts clean. */
    kl_io_op e[1] = {{.kind = KL_IO_OP_WRITEBACK, .fd = rfd, .offset = 0, .nbytes = 9}};
    assert_int_equal(kl_io_start(io, e, 1), 0);
    assert_int_equal(kl_io_finish(io), 0); /* writeback of a read-only descriptor is allowed */
    assert_int_equal(e[0].res, 0);
    kl_io_close(io, fd);
    kl_io_close(io, rfd);
    size_t len;
    uint8_t *got = get_file(good, &len);
    assert_non_null(got);
    assert_int_equal(len, 204);
    assert_memory_equal(got + 0, "AAAA", 4);
    assert_memory_equal(got + 100, "BBBB", 4);
    assert_memory_equal(got + 200, "CCCC", 4);
    free(got);
    free(good);
    free(ro);
}

typedef void (*io_case)(kl_io *io, const char *dir);

static void on_every_backend(io_case fn, const char *tag) {
    for (int w = 0; w < B_COUNT; w++) {
        kl_io *io = make_backend(w);
        if (!io)
            continue;
        char *dir = tu_tmpdir(tag);
        fn(io, dir);
        kl_io_destroy(io);
        tu_rmrf(dir);
        free(dir);
    }
}

static void test_writes_land_at_their_offsets_from_many_iovecs(void **state) {
    (void)state;
    on_every_backend(writes_land_at_their_offsets, "iow");
}

static void test_failed_op_cancels_the_rest_of_its_chain_only(void **state) {
    (void)state;
    on_every_backend(a_failed_op_cancels_the_rest_of_its_chain_only, "iochain");
}

static void test_started_groups_finish_together(void **state) {
    (void)state;
    on_every_backend(started_groups_finish_together, "iostart");
}

static void test_datasync_and_fullsync_succeed(void **state) {
    (void)state;
    on_every_backend(syncs_succeed, "iosync");
}

static void test_pread_at_end_of_file_returns_a_short_count(void **state) {
    (void)state;
    on_every_backend(pread_stops_short_at_end_of_file, "iopread");
}

static void test_map_shows_the_file_and_later_writes(void **state) {
    (void)state;
    on_every_backend(map_shows_the_file, "iomap");
}

static void test_metadata_ops_work_and_report_errno(void **state) {
    (void)state;
    on_every_backend(metadata_ops_work, "iometa");
}

/* ---- the fault backend: failing one op ---- */

/*
 * A fixed script of counted ops on files made beforehand. Each step's return
 * goes into rc[step]. Steps (1-based, as the backend counts them):
 *  1 open f   2 write "aaaa"@0   3 write "bbbb"@10 (same submit)   4 datasync
 *  5 pread    6 size   7 truncate to 100   8 mkdir sub   9 rename r1 -> r2
 *  10 unlink u   11 map   12 open f2 (create)
 */
#define SCRIPT_OPS 12

static void run_script(kl_io *io, const char *dir, int rc[SCRIPT_OPS + 1]) {
    char *f = join(dir, "f"), *sub = join(dir, "sub"), *r1 = join(dir, "r1"), *r2 = join(dir, "r2"),
         *u = join(dir, "u"), *f2 = join(dir, "f2");
    int fd = -1;
    rc[1] = kl_io_open(io, f, O_RDWR, 0, &fd);
    if (rc[1] != 0)
        fd = open(f, O_RDWR); /* carry on outside the backend */
    assert_true(fd >= 0);
    struct iovec a = {"aaaa", 4}, b = {"bbbb", 4};
    kl_io_op ops[2] = {write_op(fd, &a, 1, 0, 0), write_op(fd, &b, 1, 10, 0)};
    int src = kl_io_submit(io, ops, 2);
    rc[2] = (int)ops[0].res == 4 ? 0 : (int)ops[0].res;
    rc[3] = (int)ops[1].res == 4 ? 0 : (int)ops[1].res;
    assert_int_equal(src, rc[2] ? rc[2] : rc[3]);
    kl_io_op s = sync_op(KL_IO_OP_DATASYNC, fd, 0);
    rc[4] = kl_io_submit(io, &s, 1);
    assert_int_equal(s.res, rc[4]);
    uint8_t buf[4];
    size_t got = 0;
    rc[5] = kl_io_pread(io, fd, buf, 4, 0, &got);
    uint64_t size;
    rc[6] = io->v->size(io, fd, &size);
    rc[7] = io->v->truncate(io, fd, 100);
    rc[8] = io->v->mkdir(io, sub, 0755);
    rc[9] = io->v->rename(io, r1, r2);
    rc[10] = io->v->unlink(io, u);
    const void *m = NULL;
    rc[11] = io->v->map(io, fd, 100, &m);
    if (rc[11] == 0)
        io->v->unmap(io, m, 100);
    int fd2 = -1;
    rc[12] = kl_io_open(io, f2, O_RDWR | O_CREAT, 0644, &fd2);
    kl_io_close(io, fd2);
    if (rc[1] != 0)
        close(fd);
    else
        kl_io_close(io, fd);
    free(f);
    free(sub);
    free(r1);
    free(r2);
    free(u);
    free(f2);
}

static void prepare_script_dir(const char *dir) {
    char *f = join(dir, "f"), *r1 = join(dir, "r1"), *u = join(dir, "u");
    put_file(f, "0123456789012345", 16);
    put_file(r1, "r", 1);
    put_file(u, "u", 1);
    free(f);
    free(r1);
    free(u);
}

/* The file system after the script, with step `failed` (0 = none) having had no effect. */
static void expect_script_effects(const char *dir, int failed) {
    char *f = join(dir, "f"), *sub = join(dir, "sub"), *r1 = join(dir, "r1"), *r2 = join(dir, "r2"),
         *u = join(dir, "u"), *f2 = join(dir, "f2");
    uint8_t want[100] = "0123456789012345";
    size_t want_len = failed == 7 ? 16 : 100;
    if (failed != 2)
        memcpy(want, "aaaa", 4);
    if (failed != 3)
        memcpy(want + 10, "bbbb", 4);
    expect_file(f, want, want_len);
    assert_int_equal(exists(sub), failed != 8);
    assert_int_equal(exists(r1), failed == 9);
    assert_int_equal(exists(r2), failed != 9);
    assert_int_equal(exists(u), failed == 10);
    assert_int_equal(exists(f2), failed != 12);
    free(f);
    free(sub);
    free(r1);
    free(r2);
    free(u);
    free(f2);
}

static void test_fail_at_fails_exactly_the_nth_op(void **state) {
    (void)state;
    static const int errs[] = {EIO, ENOSPC, 0 /* default: EIO */};
    for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
        for (int n = 0; n <= SCRIPT_OPS + 1; n++) {
            char *dir = tu_tmpdir("iofail");
            prepare_script_dir(dir);
            kl_io *io = fault_backend((uint64_t)n, errs[e], KL_FAULT_ERROR, 0, 0, 0);
            int rc[SCRIPT_OPS + 1];
            run_script(io, dir, rc);
            int want_err = -(errs[e] ? errs[e] : EIO);
            for (int k = 1; k <= SCRIPT_OPS; k++) {
                int want = k == n ? want_err : 0;
                if (rc[k] != want)
                    fail_msg("fail_at=%d errno=%d: op %d returned %d, expected %d", n, errs[e], k,
                             rc[k], want);
            }
            assert_int_equal(kl_io_fault_ops(io), SCRIPT_OPS);
            assert_false(kl_io_fault_crashed(io));
            kl_io_destroy(io);
            expect_script_effects(dir, n <= SCRIPT_OPS ? n : 0);
            tu_rmrf(dir);
            free(dir);
        }
    }
}

static void test_short_write_puts_its_first_half_then_fails(void **state) {
    (void)state;
    char *dir = tu_tmpdir("ioshort");
    char *path = join(dir, "f");
    static uint8_t old[2000], src[1001];
    memset(old, 0xee, sizeof old);
    fill(src, sizeof src, 5);
    const size_t totals[] = {1000, 1001, 2, 1};
    for (size_t t = 0; t < sizeof totals / sizeof totals[0]; t++) {
        put_file(path, old, sizeof old);
        /* op 1 is the open, op 2 the write. */
        kl_io *io = fault_backend(2, ENOSPC, KL_FAULT_SHORT, 0, 0, 0);
        int fd = io_open(io, path, O_RDWR);
        size_t total = totals[t], first = total * 3 / 10;
        struct iovec v[2] = {{src, first}, {src + first, total - first}};
        kl_io_op ops[3] = {write_op(fd, v, 2, 50, 1), sync_op(KL_IO_OP_DATASYNC, fd, 0),
                           write_op(fd, v, 1, 1500, 0)};
        assert_int_equal(kl_io_submit(io, ops, 3), -ENOSPC);
        assert_int_equal(ops[0].res, -ENOSPC);
        assert_int_equal(ops[1].res, -ECANCELED);
        assert_int_equal(ops[2].res, (int64_t)first);
        kl_io_close(io, fd);
        kl_io_destroy(io);
        uint8_t want[2000];
        memcpy(want, old, sizeof want);
        memcpy(want + 50, src, total / 2);
        memcpy(want + 1500, src, first);
        expect_file(path, want, sizeof want);
    }
    /* "Short" on an op that is not a write: it simply fails. */
    kl_io *io = fault_backend(2, EIO, KL_FAULT_SHORT, 0, 0, 0);
    int fd = io_open(io, path, O_RDWR);
    kl_io_op s = sync_op(KL_IO_OP_DATASYNC, fd, 0);
    assert_int_equal(kl_io_submit(io, &s, 1), -EIO);
    assert_int_equal(s.res, -EIO);
    kl_io_close(io, fd);
    kl_io_destroy(io);
    tu_rmrf(dir);
    free(path);
    free(dir);
}

static void test_after_the_crash_point_every_op_fails_and_changes_nothing(void **state) {
    (void)state;
    char *dir = tu_tmpdir("iocrash");
    char *f = join(dir, "f"), *g = join(dir, "g"), *h = join(dir, "h"), *sub = join(dir, "sub");
    static uint8_t old[4096], src[4096];
    fill(old, sizeof old, 6);
    fill(src, sizeof src, 7);
    put_file(f, old, sizeof old);
    put_file(g, "g", 1);
    kl_io *io = fault_backend(0, 0, 0, 3, 0, 0);
    int fd = io_open(io, f, O_RDWR);                               /* op 1 */
    assert_int_equal(kl_io_write_sync(io, fd, src, 100, 0, 1), 0); /* ops 2, 3 */
    assert_false(kl_io_fault_crashed(io));
    uint8_t want[4096];
    memcpy(want, old, sizeof want);
    memcpy(want, src, 100);
    /* Everything from op 4 on. */
    struct iovec v = {src, sizeof src};
    kl_io_op ops[3] = {write_op(fd, &v, 1, 0, 0), write_op(fd, &v, 1, 4096, 0),
                       sync_op(KL_IO_OP_DATASYNC, fd, 0)};
    for (int round = 0; round < 20; round++) {
        assert_int_equal(kl_io_submit(io, ops, 3), -EIO);
        for (int k = 0; k < 3; k++)
            assert_int_equal(ops[k].res, -EIO); /* unlinked: each fails on its own */
        assert_true(kl_io_fault_crashed(io));
        uint8_t buf[16];
        size_t got;
        uint64_t size;
        const void *m;
        int fd2 = -1;
        assert_int_equal(kl_io_pread(io, fd, buf, sizeof buf, 0, &got), -EIO);
        assert_int_equal(io->v->size(io, fd, &size), -EIO);
        assert_int_equal(io->v->truncate(io, fd, 0), -EIO);
        assert_int_equal(io->v->map(io, fd, 4096, &m), -EIO);
        assert_int_equal(io->v->unlink(io, g), -EIO);
        assert_int_equal(io->v->rename(io, g, h), -EIO);
        assert_int_equal(io->v->mkdir(io, sub, 0755), -EIO);
        assert_int_equal(kl_io_open(io, h, O_RDWR | O_CREAT, 0644, &fd2), -EIO);
        assert_int_equal(kl_io_write_sync(io, fd, src, 10, 0, 1), -EIO);
    }
    assert_int_equal(kl_io_fault_ops(io), 3 + 20 * (3 + 8 + 1));
    kl_io_close(io, fd);
    kl_io_destroy(io);
    expect_file(f, want, sizeof want);
    expect_file(g, "g", 1);
    assert_false(exists(h));
    assert_false(exists(sub));
    tu_rmrf(dir);
    free(f);
    free(g);
    free(h);
    free(sub);
    free(dir);
}

/* ---- the fault backend: power loss ---- */

static kl_io *power_backend(uint64_t seed) {
    return fault_backend(0, 0, 0, 0, 1, seed);
}

static void write_at(kl_io *io, int fd, const void *buf, size_t len, uint64_t off, int sync) {
    assert_int_equal(kl_io_write_sync(io, fd, buf, len, off, sync), 0);
}

static void test_power_loss_drop_restores_the_last_synced_content(void **state) {
    (void)state;
    char *dir = tu_tmpdir("iodrop");
    char *f = join(dir, "f");
    static uint8_t a[5000], b[3000], c[2000];
    fill(a, sizeof a, 8);
    fill(b, sizeof b, 9);
    fill(c, sizeof c, 10);
    kl_io *io = power_backend(1);
    int fd = io_open(io, f, O_RDWR | O_CREAT);
    assert_int_equal(kl_io_sync_dir(io, dir), 0);
    write_at(io, fd, a, sizeof a, 0, 1);    /* durable */
    write_at(io, fd, b, sizeof b, 2000, 0); /* overwrite, not synced */
    write_at(io, fd, c, sizeof c, 9000, 0); /* extension, not synced */
    assert_int_equal(io->v->truncate(io, fd, 7000), 0);
    kl_io_close(io, fd);
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_io_destroy(io);
    expect_file(f, a, sizeof a);

    /* Two syncs: the second one's state is what survives. */
    io = power_backend(2);
    fd = io_open(io, f, O_RDWR);
    write_at(io, fd, b, sizeof b, 4000, 1);
    write_at(io, fd, c, sizeof c, 100, 0);
    kl_io_close(io, fd);
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_io_destroy(io);
    uint8_t want[7000];
    memcpy(want, a, sizeof a);
    memcpy(want + 4000, b, sizeof b);
    expect_file(f, want, sizeof want);

    /* Writeback sends bytes to disk but makes nothing durable. */
    io = power_backend(4);
    fd = io_open(io, f, O_RDWR);
    write_at(io, fd, c, sizeof c, 100, 0);
    kl_io_op wb = {.kind = KL_IO_OP_WRITEBACK, .fd = fd, .offset = 0, .nbytes = 7000};
    assert_int_equal(kl_io_submit(io, &wb, 1), 0);
    kl_io_close(io, fd);
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_io_destroy(io);
    expect_file(f, want, sizeof want);

    /* A truncation that was never synced is undone; an O_TRUNC open too. */
    io = power_backend(3);
    fd = io_open(io, f, O_RDWR | O_TRUNC);
    write_at(io, fd, "x", 1, 0, 0);
    kl_io_close(io, fd);
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_io_destroy(io);
    expect_file(f, want, sizeof want);
    tu_rmrf(dir);
    free(f);
    free(dir);
}

static void test_power_loss_honours_directory_fsync(void **state) {
    (void)state;
    char *dir = tu_tmpdir("iodirsync");
    char *never = join(dir, "never"), *synced = join(dir, "synced"), *gone = join(dir, "gone"),
         *back = join(dir, "back"), *empty = join(dir, "empty"), *newdir = join(dir, "newdir"),
         *inner = join(dir, "newdir/inner");
    put_file(back, "durable before", 14);
    put_file(gone, "to be removed", 13);
    kl_io *io = power_backend(4);
    /* Unlinked, then the directory synced: it stays gone. */
    assert_int_equal(io->v->unlink(io, gone), 0);
    /* Created, data and directory synced: it survives with its synced data. */
    int fd = io_open(io, synced, O_RDWR | O_CREAT);
    write_at(io, fd, "kept", 4, 0, 1);
    write_at(io, fd, "lost", 4, 4, 0);
    kl_io_close(io, fd);
    /* Created, directory synced, data never synced: it survives, empty. */
    fd = io_open(io, empty, O_RDWR | O_CREAT);
    write_at(io, fd, "lost", 4, 0, 0);
    kl_io_close(io, fd);
    assert_int_equal(kl_io_sync_dir(io, dir), 0);
    /* From here on the directory is never synced again. */
    /* Created and data-synced, but its directory entry never synced: it vanishes. */
    fd = io_open(io, never, O_RDWR | O_CREAT);
    write_at(io, fd, "data", 4, 0, 1);
    kl_io_close(io, fd);
    /* Durable, then unlinked without a directory sync: it comes back with its durable bytes. */
    fd = io_open(io, back, O_RDWR);
    write_at(io, fd, "DURABLE", 7, 0, 1);
    write_at(io, fd, "lost", 4, 0, 0);
    kl_io_close(io, fd);
    assert_int_equal(io->v->unlink(io, back), 0);
    assert_false(exists(back));
    /* A new directory whose parent was not synced after it vanishes with what it holds,
     * even though its own entries were synced. */
    assert_int_equal(io->v->mkdir(io, newdir, 0755), 0);
    fd = io_open(io, inner, O_RDWR | O_CREAT);
    write_at(io, fd, "in", 2, 0, 1);
    kl_io_close(io, fd);
    assert_int_equal(kl_io_sync_dir(io, newdir), 0);
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
    kl_io_destroy(io);
    assert_false(exists(never));
    assert_false(exists(gone));
    expect_file(synced, "kept", 4);
    expect_file(empty, "", 0);
    expect_file(back, "DURABLE before", 14);
    assert_false(exists(newdir));
    tu_rmrf(dir);
    free(never);
    free(synced);
    free(gone);
    free(back);
    free(empty);
    free(newdir);
    free(inner);
    free(dir);
}

static void test_power_loss_undoes_an_unsynced_rename_over_a_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir("iorename");
    char *tmp = join(dir, "t.tmp"), *target = join(dir, "t");
    for (int sync_dir = 0; sync_dir <= 1; sync_dir++) {
        put_file(target, "old", 3);
        kl_io *io = power_backend(5);
        int fd = io_open(io, tmp, O_RDWR | O_CREAT | O_TRUNC);
        write_at(io, fd, "new!", 4, 0, 1);
        kl_io_close(io, fd);
        assert_int_equal(io->v->rename(io, tmp, target), 0);
        if (sync_dir)
            assert_int_equal(kl_io_sync_dir(io, dir), 0);
        assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_DROP), 0);
        kl_io_destroy(io);
        if (sync_dir)
            expect_file(target, "new!", 4);
        else
            expect_file(target, "old", 3);
        assert_false(exists(tmp));
    }
    tu_rmrf(dir);
    free(tmp);
    free(target);
    free(dir);
}

/* Check every sector of got: old's or new's bytes (zeros where old had none). */
static void expect_sectors_old_or_new(const uint8_t *got, size_t len, const uint8_t *old,
                                      size_t old_len, const uint8_t *nw, size_t new_len,
                                      size_t *n_old, size_t *n_new, uint64_t seed) {
    static const uint8_t zeros[SECTOR];
    for (size_t lo = 0; lo < len; lo += SECTOR) {
        size_t n = len - lo < SECTOR ? len - lo : SECTOR;
        int is_new = lo + n <= new_len && memcmp(got + lo, nw + lo, n) == 0;
        int is_old = lo + n <= old_len ? memcmp(got + lo, old + lo, n) == 0
                     : lo >= old_len   ? memcmp(got + lo, zeros, n) == 0
                                       : memcmp(got + lo, old + lo, old_len - lo) == 0 &&
                                           memcmp(got + old_len, zeros, lo + n - old_len) == 0;
        if (!is_new && !is_old)
            fail_msg("seed %llu: sector at %zu is neither the old nor the new bytes",
                     (unsigned long long)seed, lo);
        *n_old += is_old && !is_new;
        *n_new += is_new && !is_old;
    }
}

static void test_power_loss_torn_keeps_old_or_new_bytes_per_sector(void **state) {
    (void)state;
    char *dir = tu_tmpdir("iotorn");
    char *f = join(dir, "f");
    enum { OLD_LEN = 8 * SECTOR + 100, NEW_LEN = 14 * SECTOR + 7 };
    static uint8_t old[OLD_LEN], patch[NEW_LEN], cur[NEW_LEN], first_run[NEW_LEN];
    fill(old, sizeof old, 11);
    fill(patch, sizeof patch, 12);
    size_t n_old = 0, n_new = 0, short_files = 0, long_files = 0, first_len = 0;
    int differs = 0;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        put_file(f, old, sizeof old); /* durable before the backend starts */
        kl_io *io = power_backend(seed);
        int fd = io_open(io, f, O_RDWR);
        /* Unaligned overwrites inside the old bytes, and an extension past them. */
        write_at(io, fd, patch + 300, 1500, 300, 0);
        write_at(io, fd, patch + 2100, 900, 2100, 0);
        write_at(io, fd, patch + OLD_LEN - 50, NEW_LEN - (OLD_LEN - 50), OLD_LEN - 50, 0);
        kl_io_close(io, fd);
        size_t cl;
        uint8_t *c = get_file(f, &cl);
        assert_int_equal(cl, NEW_LEN);
        memcpy(cur, c, cl);
        free(c);
        assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_TORN), 0);
        kl_io_destroy(io);
        size_t len;
        uint8_t *got = get_file(f, &len);
        assert_non_null(got); /* it was durable before: it cannot vanish */
        assert_true(len == OLD_LEN || len == NEW_LEN);
        short_files += len == OLD_LEN;
        long_files += len == NEW_LEN;
        expect_sectors_old_or_new(got, len, old, OLD_LEN, cur, NEW_LEN, &n_old, &n_new, seed);
        if (seed == 1) {
            memcpy(first_run, got, len);
            first_len = len;
        } else if (len != first_len || memcmp(got, first_run, len) != 0) {
            differs = 1;
        }
        free(got);
    }
    /* Tearing really happens, both ways, and depends on the seed. */
    assert_true(n_old > 0 && n_new > 0);
    assert_true(short_files > 0 && long_files > 0);
    assert_true(differs);

    /* The same seed tears the same way. */
    uint8_t *runs[2];
    size_t lens[2];
    for (int r = 0; r < 2; r++) {
        put_file(f, old, sizeof old);
        kl_io *io = power_backend(77);
        int fd = io_open(io, f, O_RDWR);
        write_at(io, fd, patch, NEW_LEN, 0, 0);
        kl_io_close(io, fd);
        assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_TORN), 0);
        kl_io_destroy(io);
        runs[r] = get_file(f, &lens[r]);
    }
    assert_int_equal(lens[0], lens[1]);
    assert_memory_equal(runs[0], runs[1], lens[0]);
    free(runs[0]);
    free(runs[1]);

    /* Synced bytes are never torn. */
    for (uint64_t seed = 1; seed <= 50; seed++) {
        put_file(f, old, sizeof old);
        kl_io *io = power_backend(seed);
        int fd = io_open(io, f, O_RDWR);
        write_at(io, fd, patch, NEW_LEN, 0, 1);
        kl_io_close(io, fd);
        assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_TORN), 0);
        kl_io_destroy(io);
        expect_file(f, patch, NEW_LEN);
    }
    tu_rmrf(dir);
    free(f);
    free(dir);
}

static void test_power_loss_keep_changes_nothing(void **state) {
    (void)state;
    char *dir = tu_tmpdir("iokeep");
    char *f = join(dir, "f"), *g = join(dir, "g"), *h = join(dir, "h"), *sub = join(dir, "sub");
    put_file(f, "durable", 7);
    put_file(h, "doomed", 6);
    kl_io *io = power_backend(6);
    int fd = io_open(io, f, O_RDWR);
    write_at(io, fd, "UNSYNCED", 8, 3, 0);
    kl_io_close(io, fd);
    fd = io_open(io, g, O_RDWR | O_CREAT);
    write_at(io, fd, "new file", 8, 0, 0);
    kl_io_close(io, fd);
    assert_int_equal(io->v->unlink(io, h), 0);
    assert_int_equal(io->v->mkdir(io, sub, 0755), 0);
    assert_int_equal(kl_io_fault_power_loss(io, KL_POWER_KEEP), 0);
    kl_io_destroy(io);
    expect_file(f, "durUNSYNCED", 11);
    expect_file(g, "new file", 8);
    assert_false(exists(h));
    assert_true(exists(sub));
    tu_rmrf(dir);
    free(f);
    free(g);
    free(h);
    free(sub);
    free(dir);
}

/* ---- choosing a backend ---- */

static void test_kl_io_new_honours_kl_io(void **state) {
    (void)state;
    const char *saved = getenv("KL_IO");
    char *keep = saved ? strdup(saved) : NULL;
    kl_io *io = NULL;

    setenv("KL_IO", "posix", 1);
    assert_int_equal(kl_io_new(KL_IO_AUTO, &io), 0);
    assert_string_equal(io->name, "posix");
    kl_io_destroy(io);

    kl_io *probe = NULL;
    int have_uring = kl_io_uring_new(&probe) == 0;
    kl_io_destroy(have_uring ? probe : NULL);
    if (!have_uring)
        print_message("io_uring refused here: checking only that KL_IO=uring fails\n");
    static const char *const uring_names[] = {"uring", "io_uring"};
    for (int i = 0; i < 2; i++) {
        setenv("KL_IO", uring_names[i], 1);
        io = NULL;
        int rc = kl_io_new(KL_IO_AUTO, &io);
        if (have_uring) {
            assert_int_equal(rc, 0);
            assert_string_equal(io->name, "io_uring");
            kl_io_destroy(io);
        } else {
            assert_int_equal(rc, KL_EIO);
        }
    }
    /* An explicit kind is not overridden by the environment. */
    setenv("KL_IO", "uring", 1);
    assert_int_equal(kl_io_new(KL_IO_POSIX, &io), 0);
    assert_string_equal(io->name, "posix");
    kl_io_destroy(io);
    /* auto, empty or unset: io_uring where it works, else posix. */
    static const char *const autos[] = {"auto", ""};
    for (int i = 0; i < 3; i++) {
        if (i < 2)
            setenv("KL_IO", autos[i], 1);
        else
            unsetenv("KL_IO");
        assert_int_equal(kl_io_new(KL_IO_AUTO, &io), 0);
        assert_string_equal(io->name, have_uring ? "io_uring" : "posix");
        kl_io_destroy(io);
    }
    /* Anything else is refused, and *out is left alone. */
    setenv("KL_IO", "bogus", 1);
    io = (kl_io *)&keep;
    assert_int_equal(kl_io_new(KL_IO_AUTO, &io), KL_EINVAL);
    assert_ptr_equal(io, (kl_io *)&keep);

    if (keep)
        setenv("KL_IO", keep, 1);
    else
        unsetenv("KL_IO");
    free(keep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writes_land_at_their_offsets_from_many_iovecs),
        cmocka_unit_test(test_failed_op_cancels_the_rest_of_its_chain_only),
        cmocka_unit_test(test_started_groups_finish_together),
        cmocka_unit_test(test_datasync_and_fullsync_succeed),
        cmocka_unit_test(test_pread_at_end_of_file_returns_a_short_count),
        cmocka_unit_test(test_map_shows_the_file_and_later_writes),
        cmocka_unit_test(test_metadata_ops_work_and_report_errno),
        cmocka_unit_test(test_fail_at_fails_exactly_the_nth_op),
        cmocka_unit_test(test_short_write_puts_its_first_half_then_fails),
        cmocka_unit_test(test_after_the_crash_point_every_op_fails_and_changes_nothing),
        cmocka_unit_test(test_power_loss_drop_restores_the_last_synced_content),
        cmocka_unit_test(test_power_loss_honours_directory_fsync),
        cmocka_unit_test(test_power_loss_undoes_an_unsynced_rename_over_a_file),
        cmocka_unit_test(test_power_loss_torn_keeps_old_or_new_bytes_per_sector),
        cmocka_unit_test(test_power_loss_keep_changes_nothing),
        cmocka_unit_test(test_kl_io_new_honours_kl_io),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
