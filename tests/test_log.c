/*
 * test_log.c - the log's public behaviour: create, open, append, get,
 * iterate, reopen, settings, and the errors of bad calls.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_get_and_reopen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
