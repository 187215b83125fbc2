/*
 * util.c - the small helpers every scenario uses: the clock, fatal errors,
 * progress on stderr, paths, removing a tree, free disk space, a seeded
 * random generator and the --only / --match filters.
 *
 * What a reader would get wrong: now_ns() is CLOCK_MONOTONIC through the
 * vDSO; its own cost (timer_overhead_ns, in the JSON) is inside every
 * latency and rate, for kappalog and the ceilings alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double timer_overhead_ns(void) {
    enum { N = 1000000 };
    uint64_t t0 = now_ns(), sink = 0;
    for (int i = 0; i < N; i++)
        sink += now_ns();
    uint64_t t1 = now_ns();
    return sink ? (double)(t1 - t0) / N : 0.0;
}

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("kappalog-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void die_kl(const char *what, int rc) {
    die("%s: %s (%s)", what, kl_strerror(rc), kl_last_error());
}

void progress(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int path_join(char *out, size_t cap, const char *a, const char *b) {
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        die("path too long: %s/%s", a, b);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/*
 * Let the disk settle between runs: write back what is dirty and commit the
 * journal (with the discards of the files just removed, on a filesystem
 * mounted with -o discard), so no run pays for the one before it.
 */
void settle(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        die("%s: %s", dir, strerror(errno));
    if (syncfs(fd) < 0)
        die("syncfs %s: %s", dir, strerror(errno));
    close(fd);
}

void sleep_seconds(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

uint64_t disk_free_bytes(const char *dir) {
    struct statvfs sv;
    if (statvfs(dir, &sv) < 0)
        return 0;
    return (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
}

/* splitmix64: small, seeded, good enough for payload bytes and indexes. */
uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Is `word` one of the comma-separated items of `list`? */
static int in_list(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0)
            return 1;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

int want_group(const bench_opts *o, const char *group) {
    return !o->only || in_list(o->only, group);
}

/* Does name contain one of the comma-separated texts of --match? */
int want_scenario(const bench_opts *o, const char *name) {
    if (!o->match)
        return 1;
    char text[256];
    for (const char *p = o->match; *p;) {
        size_t len = strcspn(p, ",");
        snprintf(text, sizeof text, "%.*s", (int)len, p);
        if (len > 0 && strstr(name, text))
            return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

void fmt_bytes(char *out, size_t cap, uint64_t bytes) {
    if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0)
        snprintf(out, cap, "%lluGiB", (unsigned long long)(bytes >> 30));
    else if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0)
        snprintf(out, cap, "%lluMiB", (unsigned long long)(bytes >> 20));
    else if (bytes >= 1024 && bytes % 1024 == 0)
        snprintf(out, cap, "%lluKiB", (unsigned long long)(bytes >> 10));
    else
        snprintf(out, cap, "%lluB", (unsigned long long)bytes);
}

const char *bench_arg_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc)
        die("%s needs a value (--help)", argv[*i]);
    return argv[++*i];
}

void bench_parse_io(bench_opts *o, const char *v) {
    if (strcmp(v, "uring") == 0)
        o->io = KL_IO_URING;
    else if (strcmp(v, "posix") == 0)
        o->io = KL_IO_POSIX;
    else if (strcmp(v, "auto") == 0)
        o->io = KL_IO_AUTO;
    else
        die("--io: '%s' is not auto, uring or posix", v);
    o->io_name = v;
}

void bench_save_cmdline(bench_opts *o, const char *prefix, int argc, char **argv) {
    size_t n = 0;
    if (prefix) {
        int w = snprintf(o->cmdline, sizeof o->cmdline, "%s", prefix);
        n = w > 0 ? (size_t)w : 0;
    }
    for (int i = 0; i < argc && n < sizeof o->cmdline; i++) {
        int w = snprintf(o->cmdline + n, sizeof o->cmdline - n, n ? " %s" : "%s", argv[i]);
        n += w > 0 ? (size_t)w : 0;
    }
}

void bench_probe_backend(const bench_opts *o, bench_machine *m, const char *name) {
    char path[4096];
    path_join(path, sizeof path, o->dir, name);
    kl_log *log = bench_log_fresh(o, path, KL_FSYNC_NEVER);
    kl_info info;
    int rc = kl_log_info(log, &info);
    if (rc < 0)
        die_kl("kl_log_info", rc);
    snprintf(m->io_backend, sizeof m->io_backend, "%s", info.io_backend);
    kl_log_close(log);
    rm_rf(path);
}
