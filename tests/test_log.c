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
#include <sys/prctl.h>
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
