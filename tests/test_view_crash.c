/*
 * test_view_crash.c - exactly-once views under SIGKILL, with real processes.
 *
 * A child process keeps appending the JSON event stream of view_oracle.h
 * (malformed records included) to the log, in batches of random size. The
 * test meanwhile starts `kappalog view update DIR V` (now and then with
 * --follow, now and then two at once) and `kappalog view rebuild DIR V
 * --shadow` (sometimes beside an update), each with a random number of
 * records per LMDB transaction (KL_VIEW_TXN_RECORDS), and kills them with
 * SIGKILL after a random delay: at least KL_VIEW_KILLS (100 by default, a
 * third of that under the sanitizers' KL_TEST_SWEEP_STRIDE=3) kills that
 * found an update running, and a fifth as many that found a rebuild running.
 *
 * After every round the live version of every view must equal the fold,
 * computed by the test without the library's JSON code, of exactly the
 * records before its position (every key, every value, nothing else, the
 * skip counters): a batch applied twice, or skipped, would show. After a
 * kill during a shadow rebuild the live version must be the one before
 * (or, if the kill came after the switch, the new one, caught up), intact.
 * At the end the appender stops, one more update runs to completion, and
 * every view equals the fold of the whole log.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "view_oracle.h"

#define SEED 0xc0ffeeu

static volatile sig_atomic_t appender_stop;

static void on_term(int sig) {
    (void)sig;
    appender_stop = 1;
}

/*
 * In a child: be sent sig when the test process dies, so that a failed
 * test leaves no appender or `view update --follow` running (the mark
 * survives exec). A parent already gone is caught by the ppid check.
 */
static void die_with_parent(pid_t parent, int sig) {
    if (prctl(PR_SET_PDEATHSIG, sig) != 0 || getppid() != parent)
        _exit(125);
}

static void sleep_ms(uint64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The appender: the stream's next records until SIGTERM; exits 0, or 1 on an error. */
static void append_forever(const char *dir, pid_t parent) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    die_with_parent(parent, SIGTERM);
    kl_log *log = NULL;
    if (kl_log_open(dir, NULL, &log) != 0)
        _exit(1);
    uint64_t rng = 99, next = kl_log_length(log);
    static char bufs[200][VO_REC_BYTES];
    kl_block blocks[200];
    while (!appender_stop) {
        size_t n = 1 + (size_t)(tu_rand(&rng) % 200);
        for (size_t i = 0; i < n; i++) {
            vo_event e;
            blocks[i].size = vo_record(SEED, next + i, bufs[i], &e);
            blocks[i].data = bufs[i];
        }
        if (kl_log_append(log, blocks, n, NULL) != 0)
            _exit(1);
        next += n;
        sleep_ms(tu_rand(&rng) % 3);
    }
    _exit(kl_log_close(log) == 0 ? 0 : 1);
}

/* Start `kappalog view ACTION DIR NAME [FLAG]`, stderr to errfile. */
static pid_t spawn(const char *action, const char *dir, const char *name, const char *flag,
                   unsigned txn_records, const char *errfile) {
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        die_with_parent(parent, SIGKILL);
        char n[16];
        snprintf(n, sizeof n, "%u", txn_records);
        setenv("KL_VIEW_TXN_RECORDS", n, 1);
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        if (fd < 0 || null < 0)
            _exit(126);
        dup2(null, 1);
        dup2(fd, 2);
        execl(tu_cli_bin(), "kappalog", "view", action, dir, name, flag, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Kill pid; 1 if the kill found it running. A process that ended by itself must have succeeded. */
static int kill_and_reap(pid_t pid, const char *errfile) {
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return 1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char why[600] = "";
        FILE *f = fopen(errfile, "r");
        if (f) {
            size_t r = fread(why, 1, sizeof why - 1, f);
            why[r] = '\0';
            fclose(f);
        }
        fail_msg("kappalog view exited with status %d: %s", status, why);
    }
    return 0;
}

typedef struct crash_state {
    const char *dir;
    char errfile[2][4200];
    vo_fold folds[NVIEWS];
    uint64_t rng;
    int update_kills, rebuild_kills, rounds;
} crash_state;

/* Every view's live version equals the fold of the records before its position. */
static void check_views(crash_state *cs) {
    for (int v = 0; v < NVIEWS; v++) {
        kl_view_info vi;
        if (kl_view_stat(cs->dir, VIEWS[v].name, &vi) != 0)
            fail_msg("stat %s: %s", VIEWS[v].name, kl_last_error());
        vo_fold *f = &cs->folds[v];
        if (vi.position < f->length) /* only after a switch; rebuild the fold */
            vo_init(f, SEED);
        vo_fold_to(f, vi.position);
        vo_expect_view(f, cs->dir, VIEWS[v].name, VIEWS[v].kind);
    }
}

/* One round: one or two processes on a random view, killed after a random delay. */
static void round_(crash_state *cs) {
    int v = (int)(tu_rand(&cs->rng) % NVIEWS);
    uint64_t kind = tu_rand(&cs->rng) % 10;
    unsigned txn = 20 + (unsigned)(tu_rand(&cs->rng) % 3000);
    int rebuild = kind >= 8, both = kind == 9, follow = kind < 4, two_updates = kind == 4;
    kl_view_info before;
    assert_int_equal(kl_view_stat(cs->dir, VIEWS[v].name, &before), 0);
    pid_t a = spawn(rebuild ? "rebuild" : "update", cs->dir, VIEWS[v].name,
                    rebuild  ? "--shadow"
                    : follow ? "--follow"
                             : NULL,
                    txn, cs->errfile[0]);
    pid_t b = -1;
    if (both || two_updates)
        b = spawn("update", cs->dir, VIEWS[v].name, tu_rand(&cs->rng) % 2 ? "--follow" : NULL,
                  txn / 2 + 1, cs->errfile[1]);
    sleep_ms(1 + tu_rand(&cs->rng) % 60);
    int killed_a = kill_and_reap(a, cs->errfile[0]);
    int killed_b = b > 0 ? kill_and_reap(b, cs->errfile[1]) : 0;
    if (rebuild)
        cs->rebuild_kills += killed_a;
    else
        cs->update_kills += killed_a;
    cs->update_kills += killed_b;
    if (rebuild) { /* the old version stays live until a switch that comes only when caught up */
        kl_view_info after;
        assert_int_equal(kl_view_stat(cs->dir, VIEWS[v].name, &after), 0);
        assert_true(after.version >= before.version);
        if (!killed_a)
            assert_true(after.version > before.version);
    }
    cs->rounds++;
    check_views(cs);
}

static void test_views_are_exactly_once_under_sigkill(void **st) {
    (void)st;
    tu_cli_bin();
    const char *env = getenv("KL_VIEW_KILLS");
    /* under the sanitizers a sampled sweep (testutil.h): a third of the kills */
    int kills = env && atoi(env) > 0 ? atoi(env) : 100 / (int)tu_sweep_stride();
    char *dir = tu_new_log("view-crash", KL_FSYNC_NEVER);
    for (int v = 0; v < NVIEWS; v++)
        assert_int_equal(kl_view_create(dir, VIEWS[v].name, VIEWS[v].kind, "user", VIEWS[v].value),
                         0);
    pid_t parent = getpid();
    pid_t app = fork();
    assert_true(app >= 0);
    if (app == 0)
        append_forever(dir, parent);
    crash_state cs;
    memset(&cs, 0, sizeof cs);
    cs.dir = dir;
    cs.rng = 2024;
    snprintf(cs.errfile[0], sizeof cs.errfile[0], "%s.err0", dir);
    snprintf(cs.errfile[1], sizeof cs.errfile[1], "%s.err1", dir);
    for (int v = 0; v < NVIEWS; v++)
        vo_init(&cs.folds[v], SEED);
    sleep_ms(100); /* a backlog to begin with */
    while (cs.update_kills < kills || cs.rebuild_kills < kills / 5) {
        if (cs.rounds > 20 * kills) /* kills keep missing: say so rather than spin */
            fail_msg("%d rounds, only %d update and %d rebuild kills found a process running",
                     cs.rounds, cs.update_kills, cs.rebuild_kills);
        round_(&cs);
    }
    kill(app, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(app, &status, 0), app);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kl_log *log = tu_open_ro(dir);
    uint64_t length = kl_log_length(log);
    assert_int_equal(kl_log_close(log), 0);
    for (int v = 0; v < NVIEWS; v++) { /* a last update, not killed: the whole log */
        pid_t p = spawn("update", dir, VIEWS[v].name, NULL, 5000, cs.errfile[0]);
        int reaped = 0;
        assert_int_equal(waitpid(p, &reaped, 0), p);
        assert_true(WIFEXITED(reaped) && WEXITSTATUS(reaped) == 0);
        vo_fold f;
        vo_init(&f, SEED);
        vo_fold_to(&f, length);
        vo_expect_view(&f, dir, VIEWS[v].name, VIEWS[v].kind);
        vo_expect_gets(&f, dir, VIEWS[v].name, VIEWS[v].kind);
    }
    printf("view crash: %d rounds, %d kills of view update, %d of view rebuild --shadow, "
           "%" PRIu64 " records\n",
           cs.rounds, cs.update_kills, cs.rebuild_kills, length);
    unlink(cs.errfile[0]);
    unlink(cs.errfile[1]);
    tu_rm_log(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_are_exactly_once_under_sigkill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
