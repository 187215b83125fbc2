/*
 * hypercore.c - the JavaScript peer: hypercore 11.37.1 appending the same
 * shape of records (100 bytes, batches of 1000, one core.append() per
 * batch) in the same run, so kappalog's append can be given as a multiple
 * of it. bench/hypercore_append.mjs does the appending and prints one JSON
 * line; this file finds Node.js and the package, runs the script once per
 * repetition (just before the kappalog append it is compared with) and
 * turns the line into a result. Finding them and running a script are
 * shared with the other JavaScript peer, bench/hypercore_clone.mjs
 * (replication.c): hc_peer_prepare, hc_peer_run.
 *
 * Where hypercore comes from, first that applies:
 *   --hypercore-modules DIR   a node_modules holding it (NODE_PATH=DIR)
 *   $NODE_PATH                as set by the caller
 *   BUILD/hc-js/node_modules  the install tests/test_hc_live.sh makes:
 *                             tests/js/package.json and package-lock.json
 *                             (exact versions) installed with `npm ci`, kept
 *                             while the lock file is unchanged; made here the
 *                             same way (same marker, same lock file) if it
 *                             is missing, before anything is timed.
 * Missing Node.js, npm, network or package is never a silent skip: the
 * result says "not measured" and why, and so do the ratio and the summary.
 *
 * What a reader would get wrong: the script's seconds time its appends
 * only (its records are made before its clock starts, as the C pool's are;
 * starting Node and closing the core are outside), so the figures compare
 * the two appenders, not the two processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#ifndef KL_BENCH_SOURCE_DIR
#define KL_BENCH_SOURCE_DIR "."
#endif
#ifndef KL_BENCH_BUILD_DIR
#define KL_BENCH_BUILD_DIR "."
#endif

#define HC_VERSION     "11.37.1" /* tests/js/package.json pins it; the targets name it */
#define HC_SCRIPT_DIR  KL_BENCH_SOURCE_DIR "/bench"
#define HC_SCRIPT      "hypercore_append.mjs"
#define HC_JS_DIR      KL_BENCH_SOURCE_DIR "/tests/js"
#define HC_INSTALL     KL_BENCH_BUILD_DIR "/hc-js"
#define NODE_MIN_MAJOR 18
#define OUT_CAP        4096  /* the script prints one short line */
#define NPM_TIMEOUT_S  600.0 /* npm ci of 64 small packages: seconds on a good day */
/* A run may take this long: startup, plus 100 s per million records (10 x the slowest seen). */
#define RUN_TIMEOUT_S(records) (60.0 + (double)(records) / 10000.0)

static char node_path[4096]; /* NODE_PATH for the script, "" to leave it as it is */

void name_hypercore(char *out, size_t cap) {
    snprintf(out, cap, "hypercore append rec=%dB batch=%d", HASH_RECORD_BYTES, HASH_BATCH);
}

/* Start argv (in cwd if not NULL): stdout to the pipe's write end, stderr to err_path. */
static pid_t start_child(char *const argv[], const char *cwd, int out_fd, const char *err_path) {
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (err < 0 || dup2(out_fd, 1) < 0 || dup2(err, 2) < 0 || (cwd && chdir(cwd) < 0))
            _exit(126);
        if (node_path[0])
            setenv("NODE_PATH", node_path, 1);
        setenv("KL_BUILD_DIR", KL_BENCH_BUILD_DIR, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Read fd to its end or the deadline into out (cap - 1 bytes kept); 1 if the deadline came. */
static int read_until(int fd, uint64_t deadline, char *out, size_t cap) {
    size_t n = 0;
    int late = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) {
            late = 1;
            break;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, (int)((deadline - now) / 1000000u) + 1) < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        char buf[1024];
        ssize_t got = pf.revents ? read(fd, buf, sizeof buf) : 0;
        if (got < 0 && errno == EINTR)
            continue;
        if (pf.revents && got <= 0)
            break; /* end of its output */
        size_t keep = got > 0 ? (size_t)got : 0;
        keep = keep < cap - 1 - n ? keep : cap - 1 - n; /* the rest is read and dropped */
        memcpy(out + n, buf, keep);
        n += keep;
    }
    out[n] = '\0';
    return late;
}

/* Wait for our child; past the deadline (or if late already) it is killed. 1 if it was. */
static int reap(pid_t pid, uint64_t deadline, int late, int *status) {
    if (late)
        kill(pid, SIGKILL);
    for (;;) { /* it may linger after closing its output: the deadline still holds */
        pid_t w = waitpid(pid, status, late ? 0 : WNOHANG);
        if (w < 0 && errno != EINTR)
            die("waitpid: %s", strerror(errno));
        if (w == pid)
            return late;
        if (w == 0 && now_ns() >= deadline) {
            late = 1;
            kill(pid, SIGKILL);
        } else if (w == 0) {
            usleep(10000);
        }
    }
}

/*
 * Run argv (in cwd if not NULL, with NODE_PATH = node_path if not empty):
 * its stdout into out (NUL-terminated, at most cap - 1 bytes kept), its
 * stderr into err_path. Returns its exit status, or -1 with *why set if it
 * could not be started, was killed, or ran past timeout_s (then it is
 * killed: it is our child).
 */
static int run_child(char *const argv[], const char *cwd, double timeout_s, char *out, size_t cap,
                     const char *err_path, char *why, size_t why_cap) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    pid_t pid = start_child(argv, cwd, fds[1], err_path);
    close(fds[1]);
    int late = read_until(fds[0], deadline, out, cap);
    close(fds[0]);
    int status = 0;
    if (reap(pid, deadline, late, &status)) {
        snprintf(why, why_cap, "%s ran for more than %.0f s and was stopped", argv[0], timeout_s);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        snprintf(why, why_cap, "%s was killed by signal %d", argv[0], WTERMSIG(status));
        return -1;
    }
    if (WEXITSTATUS(status) == 127 || WEXITSTATUS(status) == 126) {
        snprintf(why, why_cap, "%s cannot be run (not on PATH, or not executable)", argv[0]);
        return -1;
    }
    return WEXITSTATUS(status);
}

/* The first line of a file, for an error message ("" if none). */
static void first_line(const char *path, char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(out, (int)cap, f))
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* Does Node.js run, and is it recent enough? "" if so, else why not into why. */
static void check_node(const bench_opts *o, char *why, size_t cap) {
    char out[OUT_CAP], err_path[4096];
    path_join(err_path, sizeof err_path, o->dir, "hypercore.err");
    char *argv[] = {(char *)o->node, "--version", NULL};
    int rc = run_child(argv, NULL, 30.0, out, sizeof out, err_path, why, cap);
    unlink(err_path);
    if (rc < 0) {
        snprintf(why + strlen(why), cap - strlen(why),
                 ": the JavaScript peer needs Node.js >= %d and npm (scripts/deps.sh test "
                 "installs them; --node PATH names another binary)",
                 NODE_MIN_MAJOR);
        return;
    }
    if (rc != 0 || out[0] != 'v' || atoi(out + 1) < NODE_MIN_MAJOR)
        snprintf(why, cap, "%s --version says '%.*s': Node.js >= %d is needed", o->node,
                 (int)strcspn(out, "\n"), out, NODE_MIN_MAJOR);
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[8192];
    size_t n;
    int ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* The install of tests/js in HC_INSTALL is complete and of the current lock file. */
static int install_ok(void) {
    struct stat st;
    return stat(HC_INSTALL "/node_modules/hypercore/package.json", &st) == 0 &&
           same_file(HC_INSTALL "/node_modules/.kl-package-lock.json",
                     HC_JS_DIR "/package-lock.json") &&
           same_file(HC_INSTALL "/package.json", HC_JS_DIR "/package.json");
}

/* npm ci of tests/js into HC_INSTALL, as tests/test_hc_live.sh does it; why set on failure. */
static void install(char *why, size_t cap) {
    if (mkdir_p(HC_INSTALL) < 0) {
        snprintf(why, cap, "cannot create %s: %s", HC_INSTALL, strerror(errno));
        return;
    }
    int lock = open(HC_INSTALL "/.install.lock", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || flock(lock, LOCK_EX) < 0) /* shared with test_hc_live.sh */
        die("%s/.install.lock: %s", HC_INSTALL, strerror(errno));
    if (!install_ok()) {
        progress("hypercore: npm ci of tests/js (hypercore %s) into %s", HC_VERSION, HC_INSTALL);
        rm_rf(HC_INSTALL "/node_modules");
        char out[OUT_CAP];
        char *argv[] = {"npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", NULL};
        int rc = -1;
        if (copy_file(HC_JS_DIR "/package.json", HC_INSTALL "/package.json") < 0 ||
            copy_file(HC_JS_DIR "/package-lock.json", HC_INSTALL "/package-lock.json") < 0)
            snprintf(why, cap, "cannot copy %s/package*.json to %s", HC_JS_DIR, HC_INSTALL);
        else if ((rc = run_child(argv, HC_INSTALL, NPM_TIMEOUT_S, out, sizeof out,
                                 HC_INSTALL "/npm-ci.log", why, cap)) > 0)
            snprintf(why, cap, "npm ci in %s failed (exit %d; network? registry?): see %s",
                     HC_INSTALL, rc, HC_INSTALL "/npm-ci.log");
        if (rc == 0 && copy_file(HC_JS_DIR "/package-lock.json",
                                 HC_INSTALL "/node_modules/.kl-package-lock.json") < 0)
            snprintf(why, cap, "cannot write %s/node_modules/.kl-package-lock.json", HC_INSTALL);
    }
    flock(lock, LOCK_UN);
    close(lock);
}

/* Where the script will find hypercore: sets node_path, or why not. */
static void find_modules(const bench_opts *o, char *why, size_t cap) {
    struct stat st;
    const char *env = getenv("NODE_PATH");
    if (o->hypercore_modules) {
        snprintf(node_path, sizeof node_path, "%s", o->hypercore_modules);
        char pkg[4200];
        snprintf(pkg, sizeof pkg, "%s/hypercore/package.json", o->hypercore_modules);
        if (stat(pkg, &st) < 0)
            snprintf(why, cap, "--hypercore-modules %.150s holds no hypercore/package.json",
                     o->hypercore_modules);
    } else if (env && env[0]) {
        node_path[0] = '\0'; /* the script resolves through the caller's NODE_PATH */
    } else {
        install(why, cap);
        snprintf(node_path, sizeof node_path, "%s", HC_INSTALL "/node_modules");
    }
}

/*
 * Can the JavaScript peer bench/SCRIPT run? Node.js and hypercore are looked
 * for (and installed, see the top of this file) once, for every script. 0 if
 * so, else -1 and why not into why.
 */
int hc_peer_prepare(const bench_opts *o, const char *script, char *why, size_t cap) {
    static int checked;
    static char env_why[256];
    if (!checked) {
        check_node(o, env_why, sizeof env_why);
        if (!env_why[0])
            find_modules(o, env_why, sizeof env_why);
        checked = 1;
    }
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", HC_SCRIPT_DIR, script);
    if (stat(path, &st) < 0)
        snprintf(why, cap, "%s is missing", path);
    else
        snprintf(why, cap, "%s", env_why);
    return why[0] ? -1 : 0;
}

/*
 * Run bench/SCRIPT with args (NULL-terminated) under Node.js, stopped past
 * timeout_s: its line into out. 0 if it exited 0 with hypercore HC_VERSION
 * in its line; else -1 and why into why (with the first line of its stderr).
 */
int hc_peer_run(const bench_opts *o, const char *script, char *const args[], double timeout_s,
                char *out, size_t cap, char *why, size_t why_cap) {
    char path[4096], err_path[4096], err[200], version[32];
    char *argv[32] = {(char *)o->node, path};
    size_t n = 2;
    for (; args[n - 2]; n++) {
        if (n + 1 >= sizeof argv / sizeof *argv)
            die("bench/%s: too many arguments", script);
        argv[n] = args[n - 2];
    }
    argv[n] = NULL;
    snprintf(path, sizeof path, "%s/%s", HC_SCRIPT_DIR, script);
    path_join(err_path, sizeof err_path, o->dir, "hypercore.err");
    why[0] = '\0';
    int rc = run_child(argv, NULL, timeout_s, out, cap, err_path, why, why_cap);
    first_line(err_path, err, sizeof err);
    unlink(err_path);
    hc_json_string(out, "hypercore", version, sizeof version);
    if (rc > 0)
        snprintf(why, why_cap, "bench/%s exited with %d: %s", script, rc,
                 err[0] ? err : "(nothing on stderr)");
    else if (rc < 0 && err[0])
        snprintf(why + strlen(why), why_cap - strlen(why), ": %s", err);
    else if (rc == 0 && strcmp(version, HC_VERSION) != 0)
        snprintf(why, why_cap,
                 "found hypercore %s, the comparison is with %s (tests/js/package.json)",
                 version[0] ? version : "of unknown version", HC_VERSION);
    return why[0] ? -1 : 0;
}

/* The number after "key": in a JSON line, or -1. */
double hc_json_number(const char *s, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(s, k);
    return p ? strtod(p + strlen(k), NULL) : -1.0;
}

/* The string after "key": in a JSON line, into out ("" if absent). */
void hc_json_string(const char *s, const char *key, char *out, size_t cap) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":\"", key);
    const char *p = strstr(s, k);
    out[0] = '\0';
    if (p)
        snprintf(out, cap, "%.*s", (int)strcspn(p + strlen(k), "\""), p + strlen(k));
}

static bench_result *hypercore_result(void) {
    char name[128];
    name_hypercore(name, sizeof name);
    bench_result *r = result_get("hypercore", "hypercore_append", name);
    r->record_bytes = HASH_RECORD_BYTES;
    r->batch = HASH_BATCH;
    r->threads = 1;
    snprintf(r->fsync, sizeof r->fsync, "never");
    return r;
}

void hypercore_prepare(const bench_opts *o) {
    char name[128];
    name_hypercore(name, sizeof name);
    if (!want_scenario(o, name))
        return;
    bench_result *r = hypercore_result();
    if (hc_peer_prepare(o, HC_SCRIPT, r->missing, sizeof r->missing) < 0)
        progress("%s: not measured: %s", name, r->missing);
}

/* Turn the script's line into a run, or set r->missing. */
static void take_line(const bench_opts *o, bench_result *r, const char *out, bench_run *run) {
    double blocks = hc_json_number(out, "blocks"), secs = hc_json_number(out, "seconds");
    char node[32];
    hc_json_string(out, "node", node, sizeof node);
    if (blocks != (double)o->hypercore_records || secs <= 0) {
        snprintf(r->missing, sizeof r->missing, "bench/%s printed no usable result: '%.120s'",
                 HC_SCRIPT, out);
        return;
    }
    run->records = (uint64_t)blocks;
    run->ops = (run->records + HASH_BATCH - 1) / HASH_BATCH;
    run->bytes = run->records * HASH_RECORD_BYTES;
    run->seconds = secs;
    snprintf(r->note, sizeof r->note,
             "hypercore %s on Node.js %s: a fresh default core (tree, one Ed25519 signature per "
             "append, RocksDB storage) in --dir, %llu records per run; the appends are timed, "
             "not starting Node or closing the core (last close %.3f s); no per-call latency",
             HC_VERSION, node, (unsigned long long)o->hypercore_records,
             hc_json_number(out, "close_seconds"));
}

void hypercore_run(const bench_opts *o) {
    char name[128];
    name_hypercore(name, sizeof name);
    if (!want_scenario(o, name))
        return;
    bench_result *r = hypercore_result();
    if (r->missing[0])
        return; /* said once by hypercore_prepare or the first failed run */
    progress("%s: run %d", name, r->nruns + 1);
    char records[32], rec[16], batch[16], out[OUT_CAP];
    snprintf(records, sizeof records, "%llu", (unsigned long long)o->hypercore_records);
    snprintf(rec, sizeof rec, "%d", HASH_RECORD_BYTES);
    snprintf(batch, sizeof batch, "%d", HASH_BATCH);
    char *args[] = {"--records", records, "--record-bytes", rec, "--batch",
                    batch,       "--dir", (char *)o->dir,   NULL};
    bench_run run = {0};
    cpu_mark cpu;
    cpu_mark_now(&cpu);
    if (hc_peer_run(o, HC_SCRIPT, args, RUN_TIMEOUT_S(o->hypercore_records), out, sizeof out,
                    r->missing, sizeof r->missing) == 0)
        take_line(o, r, out, &run);
    run.other_cpu_s = cpu_other_s(&cpu); /* the child's CPU is ours (cpu.c) */
    settle(o->dir);
    if (r->missing[0]) {
        progress("%s: not measured: %s", name, r->missing);
        return;
    }
    result_add_run(r, &run, NULL);
}
