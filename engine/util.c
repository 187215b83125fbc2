/*
 * util.c - assertion failure, the thread-local error context, clocks and the
 * error names of kl_strerror().
 *
 * The context is a fixed buffer per thread: formatting an error never
 * allocates, so it works when memory is what ran out.
 */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define KL_ERR_BUF_BYTES 512

static _Thread_local char err_buf[KL_ERR_BUF_BYTES];

void kl_assert_fail(const char *what, const char *file, int line) {
    fprintf(stderr, "kappalog: internal assertion failed: %s (%s:%d)\n", what, file, line);
    abort();
}

int kl_errf(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return code;
}

int kl_err_prefix(int code, const char *fmt, ...) {
    char old[KL_ERR_BUF_BYTES];
    memcpy(old, err_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof err_buf)
        return code;
    const char *rest = old[0] ? old : kl_strerror(code);
    size_t room = sizeof err_buf - (size_t)n;
    size_t len = strlen(rest);
    if (len >= room)
        len = room - 1;
    memcpy(err_buf + n, rest, len);
    err_buf[(size_t)n + len] = '\0';
    return code;
}

const char *kl_err_thread(void) {
    return err_buf;
}

void kl_err_clear(void) {
    err_buf[0] = '\0';
}

const char *kl_last_error(void) {
    return err_buf;
}

int kl_err_from_errno(int err) {
    switch (err) {
    case ENOSPC:
    case EDQUOT:
        return KL_ENOSPC;
    case ENOMEM:
        return KL_ENOMEM;
    case ENOENT:
    case ENOTDIR:
        return KL_ENOTFOUND;
    case EEXIST:
    case ENOTEMPTY:
        return KL_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS:
        return KL_EREADONLY;
    case EWOULDBLOCK:
        return KL_EBUSY;
    default:
        return KL_EIO;
    }
}

/* The clock kl_test_set_clock installs (tests only), or NULL for the wall clock. */
static _Atomic(kl_clock_fn) test_clock;

void kl_test_set_clock(kl_clock_fn fn) {
    atomic_store_explicit(&test_clock, fn, memory_order_release);
}

uint64_t kl_now_ms(void) {
    kl_clock_fn fn = atomic_load_explicit(&test_clock, memory_order_acquire);
    if (__builtin_expect(fn != NULL, 0))
        return fn();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t kl_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint8_t boot_id[16];
static pthread_once_t boot_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t boot_bumps;

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void read_boot_id(void) {
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    char text[64] = {0};
    if (!f)
        return;
    if (!fgets(text, sizeof text, f))
        text[0] = '\0';
    fclose(f);
    uint8_t id[16];
    int n = 0, hi = -1;
    for (const char *p = text; *p && n < 16; p++) {
        int v = hexval(*p);
        if (v < 0)
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            id[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (n == 16)
        memcpy(boot_id, id, 16);
}

void kl_boot_id(uint8_t out[16]) {
    pthread_once(&boot_once, read_boot_id);
    memcpy(out, boot_id, 16);
    if (!kl_boot_id_known(out))
        return;
    uint64_t bumps = atomic_load(&boot_bumps), tail;
    memcpy(&tail, out + 8, 8);
    tail ^= bumps * 0x9e3779b97f4a7c15ull;
    memcpy(out + 8, &tail, 8);
}

void kl_boot_id_bump(void) {
    atomic_fetch_add(&boot_bumps, 1);
}

int kl_boot_id_known(const uint8_t id[16]) {
    for (int i = 0; i < 16; i++)
        if (id[i])
            return 1;
    return 0;
}

const char *kl_strerror(int code) {
    switch (code) {
    case KL_OK:
        return "success";
    case KL_EINVAL:
        return "invalid argument";
    case KL_EIO:
        return "I/O error";
    case KL_ENOSPC:
        return "no space left on device";
    case KL_ENOMEM:
        return "out of memory";
    case KL_ECORRUPT:
        return "corrupt data";
    case KL_ENOTFOUND:
        return "not found";
    case KL_ECLOSED:
        return "handle closed";
    case KL_EVERIFY:
        return "verification failed";
    case KL_EBUSY:
        return "log is open for writing by another process";
    case KL_EEXIST:
        return "already exists";
    case KL_ETOOSMALL:
        return "buffer too small";
    case KL_EREADONLY:
        return "read-only";
    case KL_ECONFLICT:
        return "length conflict";
    case KL_ETOOBIG:
        return "too big";
    case KL_EFORK:
        return "the log was truncated (fork changed)";
    case KL_EPEER:
        return "the peer broke the protocol";
    default:
        return "unknown error";
    }
}

const char *kl_version(void) {
    return KL_VERSION_STRING;
}

int kl_remove_tree(int at, const char *path, int depth) {
    if (unlinkat(at, path, 0) == 0 || errno == ENOENT)
        return 0;
    if ((errno != EISDIR && errno != EPERM) || depth == 0)
        return kl_errf(KL_EIO, "removing %s: %s", path, strerror(errno));
    int fd = openat(at, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return errno == ENOENT ? 0 : kl_errf(KL_EIO, "removing %s: %s", path, strerror(errno));
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rc = kl_remove_tree(dirfd(d), de->d_name, depth - 1);
    closedir(d);
    if (rc == 0 && unlinkat(at, path, AT_REMOVEDIR) != 0 && errno != ENOENT)
        rc = kl_errf(KL_EIO, "removing %s: %s", path, strerror(errno));
    return rc;
}
