/*
 * flush_bytes.c - kappalog-flush-bytes: what one durable commit of a batch
 * of 1,000 records of 100 bytes waits for on this disk, in plain C with no
 * engine, and what the bytes around it add. Each case is a serial loop of
 * rounds; a round appends SEG_BYTES to one file and fdatasyncs it (the
 * C ceiling's round), and the cases add, one at a time, what a kappalog
 * commit under `always` has besides:
 *
 *   seg           the round alone
 *   seg+side      also TREE_BYTES a round appended to a second file, page
 *                 cache only, its write-back started every 1 MiB
 *                 (sync_file_range), as the tree file's nodes are
 *   seg+side/rnd  the same, its write-back started every round
 *   seg180        SEG_BYTES + TREE_BYTES appended to the one file and synced
 *   seg+busy      the round while a second thread keeps the other core busy
 *                 (a loop over 64 KiB of memory), as the commit's hashing does
 *
 *   kappalog-flush-bytes DIR [ROUNDS]     (default 2000 rounds per case)
 *
 * The cases alternate, ROUNDS / 250 passes of 250 rounds each, so a slow
 * minute of a shared disk falls on all of them. What a reader would get
 * wrong: the point is the ratio between the cases on the same disk, not the
 * rates (bench/compare/ANALYSIS.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEG_BYTES  104000u /* 1,000 records of 100 bytes and their framing */
#define TREE_BYTES 80000u  /* their 1,000 tree entries of 80 bytes */
#define WB_EVERY   (1u << 20)
#define PASS       250u
#define NCASES     5

static const char *const case_names[NCASES] = {"seg", "seg+side", "seg+side/rnd", "seg180",
                                               "seg+busy"};

static uint8_t buf[SEG_BYTES + TREE_BYTES];
static atomic_int busy_on, busy_quit;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static const char *scratch_dir; /* DIR, where the probe's files are */

static void file_path(char *p, size_t n, int k, const char *kind) {
    snprintf(p, n, "%s/flush-bytes-%d.%s", scratch_dir, k, kind);
}

/* Remove every file the probe makes (those not made yet are no error). */
static void remove_files(void) {
    char p[4096];
    for (int k = 0; k < NCASES; k++) {
        file_path(p, sizeof p, k, "seg");
        unlink(p);
        file_path(p, sizeof p, k, "side");
        unlink(p);
    }
}

/* Report what failed, leave DIR as it was, exit 1. */
static void fail(const char *what) {
    int e = errno;
    fprintf(stderr, "kappalog-flush-bytes: %s: %s\n", what, strerror(e));
    remove_files();
    exit(1);
}

static void write_all(int fd, const void *p, size_t n) {
    if (write(fd, p, n) != (ssize_t)n)
        fail("write");
}

/* The other core's load: read and write 64 KiB over and over while busy_on. */
static void *busy_main(void *arg) {
    (void)arg;
    static uint64_t mem[8192];
    uint64_t x = 1;
    while (!atomic_load(&busy_quit)) {
        if (!atomic_load_explicit(&busy_on, memory_order_relaxed)) {
            usleep(1000);
            continue;
        }
        for (size_t i = 0; i < 8192; i++) {
            x = x * 6364136223846793005u + mem[i];
            mem[i] = x;
        }
    }
    return NULL;
}

typedef struct {
    int seg, side;
    uint64_t side_len, side_wb;
} files;

static int open_file(int k, const char *kind) {
    char p[4096];
    file_path(p, sizeof p, k, kind);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        fail(p);
    return fd;
}

static void open_files(files *f, int k) {
    f->seg = open_file(k, "seg");
    f->side = open_file(k, "side");
    f->side_len = f->side_wb = 0;
}

/* One round of case k; its latency in ns. */
static uint64_t one_round(files *f, int k) {
    uint64_t t0 = now_ns();
    write_all(f->seg, buf, k == 3 ? SEG_BYTES + TREE_BYTES : SEG_BYTES);
    if (k == 1 || k == 2) {
        write_all(f->side, buf + SEG_BYTES, TREE_BYTES);
        f->side_len += TREE_BYTES;
        if (k == 2 || f->side_len - f->side_wb >= WB_EVERY) {
            if (sync_file_range(f->side, (off_t)f->side_wb, (off_t)(f->side_len - f->side_wb),
                                SYNC_FILE_RANGE_WRITE) < 0)
                fail("sync_file_range");
            f->side_wb = f->side_len;
        }
    }
    if (fdatasync(f->seg) < 0)
        fail("fdatasync");
    return now_ns() - t0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: kappalog-flush-bytes DIR [ROUNDS]\n");
        return 2;
    }
    unsigned rounds = 2000;
    if (argc == 3) {
        char *end;
        unsigned long v = strtoul(argv[2], &end, 10);
        if (*end || v < PASS || v > 1000000) {
            fprintf(stderr, "usage: kappalog-flush-bytes DIR [ROUNDS] (ROUNDS %u..1000000)\n",
                    PASS);
            return 2;
        }
        rounds = (unsigned)v;
    }
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131u + 7u);
    scratch_dir = argv[1];
    unsigned passes = rounds / PASS; /* rounded down to whole passes; the output says how many */
    uint64_t *lat[NCASES];
    files f[NCASES];
    for (int k = 0; k < NCASES; k++) {
        lat[k] = malloc(sizeof(uint64_t) * passes * PASS);
        if (!lat[k])
            fail("malloc");
        open_files(&f[k], k);
    }
    pthread_t busy;
    if (pthread_create(&busy, NULL, busy_main, NULL) != 0)
        fail("pthread_create");
    for (unsigned p = 0; p < passes; p++)
        for (int k = 0; k < NCASES; k++) {
            atomic_store(&busy_on, k == 4);
            for (unsigned r = 0; r < PASS; r++)
                lat[k][p * PASS + r] = one_round(&f[k], k);
        }
    atomic_store(&busy_quit, 1);
    pthread_join(busy, NULL);
    printf("kappalog-flush-bytes: %u rounds per case in %u alternating passes; %u bytes a round "
           "(+%u on the side)\n",
           passes * PASS, passes, SEG_BYTES, TREE_BYTES);
    uint64_t base = 0;
    for (int k = 0; k < NCASES; k++) {
        size_t n = (size_t)passes * PASS;
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += (double)lat[k][i];
        qsort(lat[k], n, sizeof *lat[k], cmp_u64);
        uint64_t p50 = lat[k][n / 2];
        if (k == 0)
            base = p50;
        printf("  %-13s p50 %6.0f us  avg %6.0f us  p99 %6.0f us  %5.2f x seg's p50\n",
               case_names[k], (double)p50 / 1e3, sum / (double)n / 1e3,
               (double)lat[k][n * 99 / 100] / 1e3, (double)p50 / (double)base);
        close(f[k].seg);
        close(f[k].side);
        free(lat[k]);
    }
    remove_files();
    return 0;
}
