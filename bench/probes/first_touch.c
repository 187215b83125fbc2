/*
 * first_touch.c - kappalog-first-touch: what writing to memory costs the
 * first time the guest touches a page, against the same memory written
 * again. In plain C with no engine: ROUNDS times, map SIZE_MIB of anonymous
 * memory (no huge pages), write every byte once (first touch: the page
 * fault, the kernel's zeroing of the page and whatever the hypervisor does
 * to back it), then once more (the pages are there), and unmap it.
 *
 *   kappalog-first-touch [SIZE_MIB] [ROUNDS]     (default 4096 MiB, 3 rounds)
 *
 * What a reader would get wrong: the page cache is memory like any other.
 * On a machine where first touch is slow (measured at 0.36 GB/s against
 * 21 GB/s on the virtual machines the benchmarks ran on), a log that grows
 * into free memory pays it for every new page of its files until memory is
 * full and the kernel recycles pages; a file rewritten in place (SQLite's
 * WAL, for instance) does not. The growth benchmark fills the page cache
 * before it measures for that reason (bench/compare/growth.c).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* argv[i] as a whole number in 1..max, or def if absent; 0 if it is not one. */
static unsigned long arg_num(int argc, char **argv, int i, unsigned long def, unsigned long max) {
    if (argc <= i)
        return def;
    char *end = NULL;
    unsigned long v = strtoul(argv[i], &end, 10);
    return end != argv[i] && *end == '\0' && argv[i][0] != '-' && v <= max ? v : 0;
}

int main(int argc, char **argv) {
    unsigned long mib = arg_num(argc, argv, 1, 4096, 1ul << 20);
    int rounds = (int)arg_num(argc, argv, 2, 3, 1000);
    if (argc > 3 || mib == 0 || rounds == 0) {
        fprintf(stderr, "usage: kappalog-first-touch [SIZE_MIB] [ROUNDS]   (whole numbers: "
                        "1..1048576 MiB, 1..1000 rounds; default 4096 and 3)\n");
        return 2;
    }
    size_t n = (size_t)mib << 20;
    printf("first touch of %lu MiB of anonymous memory, then the same memory again, %d rounds\n",
           mib, rounds);
    for (int r = 0; r < rounds; r++) {
        char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("kappalog-first-touch: mmap");
            return 1;
        }
        madvise(p, n, MADV_NOHUGEPAGE);
        double t0 = now_s();
        memset(p, 1, n);
        double t1 = now_s();
        memset(p, 2, n);
        double t2 = now_s();
        printf(
            "round %d: first touch %.2f GB/s (%.2f us per 4 KiB page), written again %.2f GB/s\n",
            r + 1, (double)n / (t1 - t0) / 1e9, (t1 - t0) * 1e6 / (double)(n / 4096),
            (double)n / (t2 - t1) / 1e9);
        munmap(p, n);
    }
    return 0;
}
