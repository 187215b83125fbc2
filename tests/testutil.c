/*
 * testutil.c - shared helpers of the tests (see testutil.h).
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tu_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/kltest-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0)
        abort();
    if (!mkdtemp(p))
        abort();
    return p;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void tu_rmrf(const char *path) {
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t tu_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t tu_record(uint64_t seed, uint64_t index, size_t max_size, uint8_t *buf) {
    uint64_t st = seed * 0x100000001b3ull ^ index;
    size_t n = max_size ? (size_t)(tu_rand(&st) % (max_size + 1)) : 0;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = tu_rand(&st);
        memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
    }
    return n;
}

void tu_expect_records(kl_log *log, uint64_t seed, size_t max_size, uint64_t n) {
    assert_int_equal(kl_log_length(log), n);
    uint8_t *want = malloc(max_size + 8), *got = malloc(max_size + 8);
    assert_non_null(want);
    assert_non_null(got);
    for (uint64_t i = 0; i < n; i++) {
        size_t wn = tu_record(seed, i, max_size, want), gn = 0;
        int rc = kl_log_get(log, i, got, max_size + 8, &gn);
        if (rc != 0)
            fail_msg("get(%llu) = %d: %s", (unsigned long long)i, rc, kl_log_last_error(log));
        assert_int_equal(gn, wn);
        assert_memory_equal(got, want, wn);
    }
    free(want);
    free(got);
}

kl_io *tu_io(void) {
    const char *env = getenv("KL_IO");
    kl_io *io = NULL;
    int rc;
    if (env && strcmp(env, "posix") == 0) {
        rc = kl_io_posix_new(&io);
    } else {
        rc = kl_io_uring_new(&io);
        if (rc < 0) {
            fprintf(stderr, "skipped: io_uring is refused here (%s)\n", kl_last_error());
            exit(77);
        }
    }
    assert_int_equal(rc, 0);
    return io;
}

kl_io *tu_fault_io(const kl_fault_plan *plan) {
    kl_io *io = NULL;
    assert_int_equal(kl_io_fault_new(plan, &io), 0);
    return io;
}

void tu_create(const char *dir, const kl_config *cfg) {
    kl_io *io = tu_io();
    int rc = kl_log_create_io(dir, cfg, io);
    if (rc != 0)
        fail_msg("create %s: %s", dir, kl_last_error());
    kl_io_destroy(io);
}

kl_log *tu_open(const char *dir) {
    kl_log *log = NULL;
    int rc = kl_log_open_io(dir, NULL, tu_io(), &log);
    if (rc != 0)
        fail_msg("open %s: %d %s", dir, rc, kl_last_error());
    return log;
}

int tu_append_range(kl_log *log, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                    size_t batch) {
    uint8_t *buf = malloc((max_size + 8) * batch);
    kl_block *blocks = malloc(sizeof *blocks * batch);
    assert_non_null(buf);
    assert_non_null(blocks);
    int rc = 0;
    for (uint64_t i = from; i < to && rc == 0;) {
        size_t n = 0;
        for (; n < batch && i + n < to; n++) {
            uint8_t *p = buf + n * (max_size + 8);
            blocks[n].data = p;
            blocks[n].size = tu_record(seed, i + n, max_size, p);
        }
        uint64_t first = 0;
        rc = kl_log_append(log, blocks, n, &first);
        if (rc == 0)
            assert_int_equal(first, i);
        i += n;
    }
    free(buf);
    free(blocks);
    return rc;
}

void tu_flip(const char *path, uint64_t offset, uint8_t mask) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, (off_t)offset), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)offset), 1);
    close(fd);
}

void tu_truncate(const char *path, uint64_t size) {
    assert_int_equal(truncate(path, (off_t)size), 0);
}

uint64_t tu_file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    return (uint64_t)st.st_size;
}

void tu_seg_path(char *out, size_t cap, const char *dir, uint64_t first, const char *ext) {
    snprintf(out, cap, "%s/segments/%020llu.%s", dir, (unsigned long long)first, ext);
}

char *tu_new_log(const char *tag, kl_fsync_mode mode) {
    char *root = tu_tmpdir(tag), *dir = NULL;
    assert_true(asprintf(&dir, "%s/log", root) > 0);
    free(root);
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.fsync_mode = mode;
    cfg.segment_bytes = KL_MIN_SEGMENT_BYTES;
    tu_create(dir, &cfg);
    return dir;
}

void tu_rm_log(char *log_path) {
    char *parent = strndup(log_path, (size_t)(strrchr(log_path, '/') - log_path));
    assert_non_null(parent);
    tu_rmrf(parent);
    free(parent);
    free(log_path);
}

void tu_grow_and_check(const char *dir, uint64_t seed, size_t max_size, uint64_t from, uint64_t to,
                       size_t batch) {
    kl_log *log = tu_open(dir);
    tu_expect_records(log, seed, max_size, from);
    assert_int_equal(tu_append_range(log, seed, max_size, from, to, batch), 0);
    assert_int_equal(kl_log_close(log), 0);
    log = tu_open(dir);
    tu_expect_records(log, seed, max_size, to);
    assert_int_equal(kl_log_close(log), 0);
}
