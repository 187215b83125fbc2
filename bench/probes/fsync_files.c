/*
 * fsync_files.c - kappalog-fsync-files: what a commit's syncs cost on this
 * disk, in plain C with no engine: how many `write + fdatasync` rounds per
 * second one file makes, against three files written and synced in
 * parallel (one thread each, joined after every round: the shape of a
 * kappalog commit under `always`, which syncs its segment, its tree file
 * and its header slot in one round) and the same three one after the
 * other. Every file is written with zeros and synced first, so each round
 * overwrites allocated blocks and no sync has to change the file's size.
 *
 *   kappalog-fsync-files DIR [ROUNDS]     (default 3000 rounds per case)
 *
 * What a reader would get wrong: the point is the ratio between the cases
 * on the same disk, not the rates: if the parallel round costs as much as
 * two or three single syncs, the device serializes its cache flushes, and
 * a commit costs as many flushes as it syncs files (bench/compare/ANALYSIS.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NFILES      3
#define FILE_BYTES  (16u << 20)
#define ROUND_BYTES 100u /* one 100-byte record per round */

static int fds[NFILES];
static unsigned rounds = 3000;
static pthread_barrier_t go;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "kappalog-fsync-files: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int make_file(const char *dir, int i) {
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync-files-%d.dat", dir, i);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die(path);
    unlink(path); /* removed when closed */
    static const char zero[1 << 16];
    for (unsigned off = 0; off < FILE_BYTES; off += sizeof zero)
        if (pwrite(fd, zero, sizeof zero, off) != (ssize_t)sizeof zero)
            die("writing zeros");
    if (fdatasync(fd) < 0)
        die("fdatasync");
    return fd;
}

static void round_one(int fd, unsigned r) {
    static const char rec[ROUND_BYTES] = {1};
    off_t off = (off_t)((r * ROUND_BYTES) % (FILE_BYTES - ROUND_BYTES));
    if (pwrite(fd, rec, sizeof rec, off) != (ssize_t)sizeof rec)
        die("pwrite");
    if (fdatasync(fd) < 0)
        die("fdatasync");
}

static void *syncer(void *arg) {
    int fd = fds[(long)arg];
    for (unsigned r = 0; r < rounds; r++) {
        pthread_barrier_wait(&go);
        round_one(fd, r);
        pthread_barrier_wait(&go);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: kappalog-fsync-files DIR [ROUNDS]\n");
        return 2;
    }
    if (argc == 3) {
        char *end = NULL;
        errno = 0;
        unsigned long r = strtoul(argv[2], &end, 10);
        if (errno || end == argv[2] || *end || r == 0 || r > 1000000) {
            fprintf(stderr,
                    "kappalog-fsync-files: ROUNDS: '%s' is not a number from 1 to 1000000\n",
                    argv[2]);
            return 2;
        }
        rounds = (unsigned)r;
    }
    for (int i = 0; i < NFILES; i++)
        fds[i] = make_file(argv[1], i);
    double t = now_s();
    for (unsigned r = 0; r < rounds; r++)
        round_one(fds[0], r);
    double one = rounds / (now_s() - t);
    pthread_barrier_init(&go, NULL, NFILES + 1);
    pthread_t th[NFILES];
    for (long i = 0; i < NFILES; i++)
        if (pthread_create(&th[i], NULL, syncer, (void *)i) != 0)
            die("pthread_create");
    t = now_s();
    for (unsigned r = 0; r < rounds; r++) {
        pthread_barrier_wait(&go);
        pthread_barrier_wait(&go);
    }
    double parallel = rounds / (now_s() - t);
    for (int i = 0; i < NFILES; i++)
        pthread_join(th[i], NULL);
    t = now_s();
    for (unsigned r = 0; r < rounds; r++)
        for (int i = 0; i < NFILES; i++)
            round_one(fds[i], r);
    double serial = rounds / (now_s() - t);
    printf("1 file, write + fdatasync:                  %8.0f rounds/s (%.0f us)\n", one,
           1e6 / one);
    printf("%d files in parallel, write + fdatasync each: %8.0f rounds/s (%.0f us, %.2f x one)\n",
           NFILES, parallel, 1e6 / parallel, one / parallel);
    printf("%d files one after the other:                %8.0f rounds/s (%.0f us, %.2f x one)\n",
           NFILES, serial, 1e6 / serial, one / serial);
    return 0;
}
