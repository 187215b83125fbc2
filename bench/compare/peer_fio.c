/*
 * peer_fio.c - the disk ceiling as fio measures it, a peer of the compare
 * run: for each append case one fio process (Debian's fio, installed with
 * apt-get when missing and the bench runs as root), one job writing
 * sequentially to a fresh file in the scratch dir, bs = the batch's bytes
 * (1, 64, 100 or 1,000 records), --fallocate=none so the file grows as a
 * log does, one write in flight (--iodepth=1), "none" never synced and
 * "fdatasync=1" synced after every write (paired with kappalog's always).
 * A run stops at c->append_s (--runtime) or at c->run_cap_bytes (--size,
 * without --time_based, so fio never wraps around and writes more), the
 * first to come. fio's JSON report is read with yajl's tree API.
 *
 * Two engines, one peer: the interface has one setting per durability
 * class and fixed names, so the figures of the peer are fio's psync engine
 * (pwrite(2), the same system calls as the ceiling peer's write(2) loop:
 * fio checks that loop), and each case runs a second fio with io_uring
 * right after, its rate and latencies in the note (the last repetition's).
 *
 * What a reader would get wrong: fio reports latency percentiles, not
 * samples, so the latency histogram stays empty; the note has fio's write
 * completion latency (clat) p50/p99 and, under fdatasync=1, the sync's.
 * The seconds are fio's own (its write runtime, in ms): fio's start and
 * exit are not timed, as kappalog's open and close are not.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef KL_BENCH_YAJL
#include <yajl/yajl_tree.h>
#endif

#include "compare.h"

#ifdef KL_BENCH_YAJL

#define FIO_GRACE_S   60.0 /* past --runtime: fio's start, and a last slow fdatasync */
#define FIO_STOP_S    5.0  /* after SIGTERM, before SIGKILL */
#define FIO_POLL_US   10000u
#define FIO_JSON_MAX  (1u << 20) /* one job's report is ~7 KiB */
#define FIO_ARGS      24
#define FIO_NO_FIGURE (-1.0)

static char fio_bin[4096], fio_version[128]; /* the whole --version line read below */
static volatile pid_t fio_pid;               /* the running fio, for on_signal; 0 if none */
static struct sigaction old_int, old_term;

/* What one fio run reported. */
typedef struct fio_report {
    uint64_t io_bytes, ios;
    double seconds, cpu_s;
    double clat_p50_us, clat_p99_us; /* FIO_NO_FIGURE if fio gave none */
    double sync_p50_us, sync_p99_us; /* FIO_NO_FIGURE without --fdatasync */
} fio_report;

/* ---- finding fio ---- */

static int fio_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    char line[128] = "";
    int got = cmp_program_find("fio", fio_bin, sizeof fio_bin, line, sizeof line, why, cap) == 0;
    if (!got)
        return -1;
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "fio-3.", 6) != 0) { /* the JSON read here is fio 3's */
        snprintf(why, cap, "%s --version says '%.60s', not fio 3", fio_bin, line);
        return -1;
    }
    snprintf(fio_version, sizeof fio_version, "%s", line);
    return 0;
}

/* ---- one fio process ---- */

/*
 * SIGINT, SIGTERM while fio runs: stop it and reap it (kill and waitpid are
 * async-signal-safe), then the handler that was there before, or death.
 */
static void on_signal(int sig) {
    pid_t pid = fio_pid;
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        fio_pid = 0;
    }
    sigaction(sig, sig == SIGINT ? &old_int : &old_term, NULL);
    raise(sig);
}

static pid_t fio_spawn(char *const argv[], const char *log) {
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (old_int.sa_handler == SIG_IGN) /* ignored (a background job): left so */
        sigaction(SIGINT, &old_int, NULL);
    if (old_term.sa_handler == SIG_IGN)
        sigaction(SIGTERM, &old_term, NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the bench killed: fio goes too */
        if (getppid() != parent)
            _exit(125);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    fio_pid = pid;
    return pid;
}

/*
 * Reap fio, stopping it (SIGTERM, then SIGKILL) if it runs past timeout_s.
 * 0 if it exited with 0, else -1 and how it ended in why.
 */
static int fio_reap(pid_t pid, double timeout_s, char *why, size_t cap) {
    int status = 0, timed_out = 0;
    pid_t w = 0;
    uint64_t end = now_ns() + (uint64_t)(timeout_s * 1e9);
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 || (w < 0 && errno == EINTR)) {
        if (now_ns() >= end && !timed_out) {
            timed_out = 1;
            kill(pid, SIGTERM);
            end = now_ns() + (uint64_t)(FIO_STOP_S * 1e9);
        } else if (now_ns() >= end) {
            kill(pid, SIGKILL);
        }
        usleep(FIO_POLL_US);
    }
    fio_pid = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (w < 0)
        snprintf(why, cap, "waitpid %d: %s", (int)pid, strerror(errno));
    else if (timed_out)
        snprintf(why, cap, "ran %.0f s past its runtime and was stopped", FIO_GRACE_S);
    else if (WIFSIGNALED(status))
        snprintf(why, cap, "killed by signal %d", WTERMSIG(status));
    else if (WEXITSTATUS(status) != 0)
        snprintf(why, cap, "exit status %d", WEXITSTATUS(status));
    else
        return 0;
    return -1;
}

/* ---- its report ---- */

static char *read_text(const char *path, char *why, size_t cap) {
    FILE *f = fopen(path, "r");
    char *buf = malloc(FIO_JSON_MAX + 1);
    if (!buf)
        die("out of memory");
    size_t n = f ? fread(buf, 1, FIO_JSON_MAX, f) : 0;
    int full = f && !feof(f);
    if (f)
        fclose(f);
    if (n == 0 || full) {
        snprintf(why, cap, "fio's report %.200s is %s", path,
                 n == 0 ? "empty or missing" : "too big");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The number at path under v, or FIO_NO_FIGURE. */
static double num_at(yajl_val v, const char **path) {
    yajl_val n = yajl_tree_get(v, path, yajl_t_number);
    return YAJL_IS_DOUBLE(n) ? YAJL_GET_DOUBLE(n) : FIO_NO_FIGURE;
}

static double pct_us(yajl_val job, const char *section, const char *lat, const char *pct) {
    const char *path[] = {section, lat, "percentile", pct, NULL};
    double ns = num_at(job, path);
    return ns < 0 ? FIO_NO_FIGURE : ns / 1e3;
}

/* jobs[0] of fio's JSON report into r; 0, or -1 and why. */
static int parse_report(const char *json, fio_report *r, char *why, size_t cap) {
    char err[256] = "";
    yajl_val root = yajl_tree_parse(json, err, sizeof err);
    if (!root) {
        snprintf(why, cap, "fio's report is not JSON: %.200s", err);
        return -1;
    }
    const char *jobs_path[] = {"jobs", NULL};
    yajl_val jobs = yajl_tree_get(root, jobs_path, yajl_t_array);
    yajl_val job = YAJL_IS_ARRAY(jobs) && YAJL_GET_ARRAY(jobs)->len == 1
                       ? YAJL_GET_ARRAY(jobs)->values[0]
                       : NULL;
    const char *p_err[] = {"error", NULL}, *p_bytes[] = {"write", "io_bytes", NULL},
               *p_ios[] = {"write", "total_ios", NULL}, *p_ms[] = {"write", "runtime", NULL},
               *p_usr[] = {"usr_cpu", NULL}, *p_sys[] = {"sys_cpu", NULL},
               *p_job_ms[] = {"job_runtime", NULL}, *p_syncs[] = {"sync", "lat_ns", "N", NULL};
    yajl_val bytes = job ? yajl_tree_get(job, p_bytes, yajl_t_number) : NULL;
    yajl_val ios = job ? yajl_tree_get(job, p_ios, yajl_t_number) : NULL;
    int rc = -1;
    if (!job || !YAJL_IS_INTEGER(bytes) || !YAJL_IS_INTEGER(ios) || num_at(job, p_ms) <= 0) {
        snprintf(why, cap, "fio's report has no jobs[0].write.io_bytes, total_ios, runtime");
        goto out;
    }
    if (num_at(job, p_err) != 0) {
        snprintf(why, cap, "fio's job failed: error %.0f", num_at(job, p_err));
        goto out;
    }
    r->io_bytes = (uint64_t)YAJL_GET_INTEGER(bytes);
    r->ios = (uint64_t)YAJL_GET_INTEGER(ios);
    r->seconds = num_at(job, p_ms) / 1e3;
    r->cpu_s = (num_at(job, p_usr) + num_at(job, p_sys)) / 100.0 * num_at(job, p_job_ms) / 1e3;
    r->clat_p50_us = pct_us(job, "write", "clat_ns", "50.000000");
    r->clat_p99_us = pct_us(job, "write", "clat_ns", "99.000000");
    int synced = num_at(job, p_syncs) > 0;
    r->sync_p50_us = synced ? pct_us(job, "sync", "lat_ns", "50.000000") : FIO_NO_FIGURE;
    r->sync_p99_us = synced ? pct_us(job, "sync", "lat_ns", "99.000000") : FIO_NO_FIGURE;
    rc = 0;
out:
    yajl_tree_free(root);
    return rc;
}

/* ---- the runs ---- */

/*
 * One fio job: `engine` writing bs-byte blocks to dir/write.dat, synced
 * after each if sync; r, and 0, or -1 and why. The file is checked (its
 * size is what fio says it wrote) and removed.
 */
static int fio_run(const cmp_ctx *c, const char *dir, const char *engine, size_t bs, int sync,
                   fio_report *r, char *why, size_t cap) {
    char file[4200], json[4200], log[4200];
    if (strchr(dir, ':')) { /* fio's --filename takes ':' as a list separator */
        snprintf(why, cap, "fio cannot write under %.200s: ':' in the path", dir);
        return -1;
    }
    snprintf(file, sizeof file, "%s/write.dat", dir);
    snprintf(json, sizeof json, "%s/fio.json", dir);
    snprintf(log, sizeof log, "%s/fio.log", dir);
    unlink(file);
    unlink(json);
    uint64_t size = c->run_cap_bytes / bs * bs; /* whole blocks: never more than the cap */
    char a_file[4300], a_json[4300], a_bs[48], a_size[48], a_runtime[48], a_engine[64];
    snprintf(a_file, sizeof a_file, "--filename=%s", file);
    snprintf(a_json, sizeof a_json, "--output=%s", json);
    snprintf(a_bs, sizeof a_bs, "--bs=%zu", bs);
    snprintf(a_size, sizeof a_size, "--size=%llu", (unsigned long long)size);
    snprintf(a_runtime, sizeof a_runtime, "--runtime=%.0fms", c->append_s * 1e3);
    snprintf(a_engine, sizeof a_engine, "--ioengine=%s", engine);
    char *argv[FIO_ARGS] = {fio_bin,
                            "--name=ceiling",
                            a_file,
                            "--rw=write",
                            a_bs,
                            a_size,
                            a_runtime,
                            a_engine,
                            "--iodepth=1",
                            "--thread",
                            "--fallocate=none",
                            "--eta=never",
                            "--output-format=json",
                            a_json,
                            sync ? "--fdatasync=1" : NULL,
                            NULL};
    char how[128];
    if (fio_reap(fio_spawn(argv, log), c->append_s + FIO_GRACE_S, how, sizeof how) < 0) {
        char line[200];
        cmp_last_line(log, line, sizeof line);
        snprintf(why, cap, "fio %s: %.100s: %.100s", engine, how, line[0] ? line : "(no output)");
        unlink(file);
        return -1;
    }
    char *text = read_text(json, why, cap);
    int rc = text ? parse_report(text, r, why, cap) : -1;
    free(text);
    struct stat st = {0};
    if (rc == 0 && (stat(file, &st) != 0 || (uint64_t)st.st_size != r->io_bytes ||
                    r->io_bytes != r->ios * bs)) {
        snprintf(why, cap, "fio %s says %llu writes, %llu bytes; the file has %lld bytes", engine,
                 (unsigned long long)r->ios, (unsigned long long)r->io_bytes,
                 (long long)st.st_size);
        rc = -1;
    }
    unlink(file);
    return rc;
}

/* " p50 X us, p99 Y us" of fio's write clat, and of the fdatasync when there is one. */
static void lat_text(char *out, size_t cap, const fio_report *r) {
    int n =
        snprintf(out, cap, "write clat p50 %.3g us, p99 %.3g us", r->clat_p50_us, r->clat_p99_us);
    if (r->sync_p50_us >= 0 && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, "; fdatasync p50 %.3g us, p99 %.3g us", r->sync_p50_us,
                 r->sync_p99_us);
}

static int fio_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    if (k->producers > 1 || k->batch == 0) {
        snprintf(out->why, sizeof out->why, "fio: one job writing whole batches only");
        return -1;
    }
    char dir[4096];
    cmp_scratch(c, "fio-append", dir, sizeof dir);
    if (mkdir_p(dir) < 0)
        die("cannot create %s", dir);
    size_t bs = k->batch * k->record_bytes;
    int sync = k->dur == CMP_DUR_EVERY;
    fio_report ps = {0}, ur = {0};
    cpu_mark cpu;
    cpu_mark_now(&cpu); /* fio is our child: its CPU, once reaped, is not "other" */
    uint64_t t0 = now_ns();
    if (fio_run(c, dir, "psync", bs, sync, &ps, out->why, sizeof out->why) < 0) {
        rm_rf(dir);
        return -1;
    }
    /* measured over fio's whole life; scaled to its timed part, as if spread evenly */
    double wall_s = (double)(now_ns() - t0) / 1e9;
    out->run.other_cpu_s = cpu_other_s(&cpu) * (wall_s > ps.seconds ? ps.seconds / wall_s : 1.0);
    out->run.ops = ps.ios;
    out->run.bytes = ps.io_bytes;
    out->run.records = ps.io_bytes / k->record_bytes;
    out->run.seconds = ps.seconds;
    out->server_cpu_s = ps.cpu_s;
    settle(c->o->dir); /* io_uring's run starts as clean as psync's */
    char uring_why[256] = "", ps_lat[100], ur_text[160];
    int ur_ok = fio_run(c, dir, "io_uring", bs, sync, &ur, uring_why, sizeof uring_why) == 0;
    rm_rf(dir);
    lat_text(ps_lat, sizeof ps_lat, &ps);
    if (ur_ok) {
        char ur_lat[100];
        lat_text(ur_lat, sizeof ur_lat, &ur);
        snprintf(ur_text, sizeof ur_text, "%.0f records/s, %.99s",
                 (double)ur.io_bytes / (double)k->record_bytes / ur.seconds, ur_lat);
    } else {
        snprintf(ur_text, sizeof ur_text, "not measured: %.140s", uring_why);
    }
    snprintf(out->note, sizeof out->note,
             "%.20s, psync, --rw=write --bs=%zu --iodepth=1 --fallocate=none%s, fresh file; %.99s; "
             "fio CPU %.2f s. io_uring (iodepth 1): %.159s",
             fio_version, bs, sync ? " --fdatasync=1" : "", ps_lat, ps.cpu_s, ur_text);
    return 0;
}

#else /* built without yajl: fio's report cannot be read */

static int fio_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    snprintf(why, cap, "built without yajl (libyajl-dev), which reads fio's JSON report");
    return -1;
}

#define fio_append NULL

#endif

const cmp_peer cmp_peer_fio = {
    .name = "fio",
    .append_verb = "psync write",
    .batch_word = "batch",
    .setting_word = "sync",
    .setting = {[CMP_DUR_NONE] = "none", [CMP_DUR_EVERY] = "fdatasync=1"},
    .batches = {1, 64, 100, 1000},
    .producers = 0,
    .setup = fio_setup,
    .append = fio_append,
    .visible = NULL, /* fio has no reader of what it wrote */
    .load = NULL,    /* no reads: the ceiling is of writes */
    .read = NULL,
    .get = NULL,
};
