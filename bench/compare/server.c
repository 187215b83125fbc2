/*
 * server.c - the server processes the compare run measures against
 * (redis-server for peer_redis.c, nats-server for peer_nats.c): finding
 * Debian's binary (and installing its package with apt-get when it is
 * missing and the bench runs as root: install_as_root), and starting and
 * stopping instances of it.
 *
 * Every instance is the bench's own child: bound to 127.0.0.1 on a port
 * that was free a moment before (a bind to port 0; if another process
 * takes it first, the start is tried again on a new one), working in a
 * directory of its own under the scratch dir, its log there, and stopped by
 * its pid: SIGTERM (Redis syncs its AOF, NATS its stream files, and each
 * exits), a wait, SIGKILL after STOP_WAIT_S. The instances still running
 * are stopped at exit (so after die(), too), on SIGINT and SIGTERM, and, as
 * PR_SET_PDEATHSIG asks the kernel, when the bench itself is killed. One
 * implementation for both servers: server_start and cmp_server_stop; the
 * redis_ and nats_ functions only say how to call and how to ask each one.
 *
 * What a reader would get wrong: nothing here needs a client library: a
 * server is known to be up when it answers on a plain socket (Redis a PING
 * with +PONG; NATS greets every connection with INFO, and only once
 * JetStream is enabled, as the server opens its client port last), so the
 * bench says why a server was not measured even when it was built without
 * hiredis or libnats.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compare.h"

#define MAX_SERVERS  4
#define MAX_ARGS     64
#define START_WAIT_S 10.0 /* a fresh, empty server answers in milliseconds */
#define STOP_WAIT_S  30.0 /* SIGTERM: the server syncs its files and exits */
#define START_TRIES  3    /* a new port each time */

static volatile pid_t running[MAX_SERVERS];

static void stop_all(void) {
    for (int i = 0; i < MAX_SERVERS; i++) {
        pid_t pid = running[i];
        if (pid <= 0)
            continue;
        kill(pid, SIGTERM);
        int status;
        uint64_t end = now_ns() + (uint64_t)(STOP_WAIT_S * 1e9);
        while (waitpid(pid, &status, WNOHANG) == 0 && now_ns() < end)
            usleep(10000);
        if (now_ns() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        running[i] = 0;
    }
}

/*
 * SIGINT, SIGTERM: stop our servers and reap them (kill and waitpid are
 * async-signal-safe), then die of the signal. The scratch dir is left.
 */
static void on_signal(int sig) {
    for (int i = 0; i < MAX_SERVERS; i++)
        if (running[i] > 0)
            kill(running[i], SIGTERM);
    for (int i = 0; i < MAX_SERVERS; i++)
        if (running[i] > 0)
            waitpid(running[i], NULL, 0);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void track(pid_t pid) {
    static int registered;
    if (!registered) {
        atexit(stop_all);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        registered = 1;
    }
    for (int i = 0; i < MAX_SERVERS; i++)
        if (running[i] == 0) {
            running[i] = pid;
            return;
        }
    die("more than %d servers at once", MAX_SERVERS);
}

static void untrack(pid_t pid) {
    for (int i = 0; i < MAX_SERVERS; i++)
        if (running[i] == pid)
            running[i] = 0;
}

/* An executable `name` on PATH (or in /usr/bin, /usr/sbin): its path, or "". */
static void which(const char *name, char *out, size_t cap) {
    const char *env = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/bin:/usr/sbin:/usr/local/bin", env ? env : "");
    out[0] = '\0';
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", d, name);
        if (access(out, X_OK) == 0)
            return;
    }
    out[0] = '\0';
}

/* Run argv to its end, its output to stderr (progress); its exit status, or -1. */
static int run_wait(char *const argv[]) {
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(2, 1);
        setenv("DEBIAN_FRONTEND", "noninteractive", 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * The one place the bench installs software: Debian's package of a server
 * or tool with apt-get, only when it is missing and the bench runs as root
 * (README.md says so). 0 if it is installed now, else -1 and why.
 */
static int install_as_root(const char *package, char *why, size_t cap) {
    if (geteuid() != 0) {
        snprintf(why, cap,
                 "%s is not installed (apt-get install %s, or scripts/deps.sh test; the bench "
                 "installs it itself only when run as root)",
                 package, package);
        return -1;
    }
    progress("compare: %s is missing; installing it: apt-get install -y %s", package, package);
    char *install[] = {"apt-get", "install", "-y", (char *)package, NULL};
    char *update[] = {"apt-get", "update", NULL};
    if (run_wait(install) == 0)
        return 0;
    if (run_wait(update) == 0 && run_wait(install) == 0)
        return 0;
    snprintf(why, cap, "%s is not installed and apt-get install -y %s failed", package, package);
    return -1;
}

int cmp_program_find(const char *name, char *path, size_t cap, char *line, size_t lcap, char *why,
                     size_t why_cap) {
    which(name, path, cap);
    if (!path[0] && install_as_root(name, why, why_cap) < 0)
        return -1;
    if (!path[0])
        which(name, path, cap);
    if (!path[0]) {
        snprintf(why, why_cap, "%s not found on PATH after installing it", name);
        return -1;
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --version 2>&1", path);
    FILE *f = popen(cmd, "r");
    line[0] = '\0';
    if (!f || !fgets(line, (int)lcap, f)) {
        if (f)
            pclose(f);
        snprintf(why, why_cap, "%s --version printed nothing", path);
        return -1;
    }
    pclose(f);
    return 0;
}

/* The version in a --version line: the word after `mark`, or -1 and why. */
static int version_after(const char *line, const char *mark, const char *path, char *version,
                         size_t vcap, char *why, size_t why_cap) {
    const char *v = strstr(line, mark);
    if (v)
        v += strlen(mark);
    snprintf(version, vcap, "%.*s", v ? (int)strcspn(v, " \n") : 0, v ? v : "");
    if (!version[0]) {
        snprintf(why, why_cap, "%s --version says '%.100s'", path, line);
        return -1;
    }
    return 0;
}

int redis_server_find(char *path, size_t cap, char *version, size_t vcap, char *why,
                      size_t why_cap) {
    char line[256];
    if (cmp_program_find("redis-server", path, cap, line, sizeof line, why, why_cap) < 0)
        return -1;
    /* "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=..." */
    return version_after(line, "v=", path, version, vcap, why, why_cap);
}

int nats_server_find(char *path, size_t cap, char *version, size_t vcap, char *why,
                     size_t why_cap) {
    char line[256];
    if (cmp_program_find("nats-server", path, cap, line, sizeof line, why, why_cap) < 0)
        return -1;
    /* "nats-server: v2.9.10" */
    return version_after(line, "nats-server: v", path, version, vcap, why, why_cap);
}

/* A TCP port on 127.0.0.1 that is free now (the kernel's choice), or -1. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Does a server on 127.0.0.1:port, sent `send` (if any), answer with `expect` first? */
static int answers(int port, const char *send, const char *expect) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t len = strlen(expect);
    int ok = 0;
    char buf[16] = "";
    if (len >= sizeof buf)
        die("answers: '%s' is longer than its buffer", expect);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        (!send || write(fd, send, strlen(send)) == (ssize_t)strlen(send))) {
        struct timeval tv = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ok = read(fd, buf, len) == (ssize_t)len && memcmp(buf, expect, len) == 0;
    }
    if (fd >= 0)
        close(fd);
    return ok;
}

static int redis_ready(int port) {
    return answers(port, "PING\r\n", "+PONG");
}

static int nats_ready(int port) {
    return answers(port, NULL, "INFO ");
}

/* The last non-empty line of a file, for an error message. */
void cmp_last_line(const char *path, char *out, size_t cap) {
    char line[512];
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (line[0] != '\n' && line[0] != '\0')
            snprintf(out, cap, "%.*s", (int)strcspn(line, "\n"), line);
    if (f)
        fclose(f);
}

/* Fork and exec argv (each CMP_SERVER_PORT in it replaced by s->port) in s->dir. */
static pid_t spawn(const cmp_server *s, char *const argv_in[]) {
    char port[16], *argv[MAX_ARGS];
    snprintf(port, sizeof port, "%d", s->port);
    size_t n = 0;
    for (; argv_in[n]; n++) {
        if (n + 1 >= MAX_ARGS)
            die("%s: more than %d arguments", s->name, MAX_ARGS - 1);
        argv[n] = strcmp(argv_in[n], CMP_SERVER_PORT) == 0 ? port : argv_in[n];
    }
    argv[n] = NULL;
    if (n == 0)
        die("%s: no program to start", s->name);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the bench killed: the server goes too */
        int log = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 || chdir(s->dir) < 0)
            _exit(126);
        close_range(3, ~0u, 0); /* not the bench's client sockets: their closes must be seen */
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/*
 * Start argv (argv[0] a path) as server `name` in dir, its output to
 * dir/<log_name>, on a free port, and wait until ready(port); 0, or -1
 * and why (the server stopped again).
 */
static int server_start(cmp_server *s, const char *name, const char *log_name, const char *dir,
                        char *const argv[], int (*ready)(int port), char *why, size_t cap) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->log, sizeof s->log, "%s/%s", dir, log_name);
    if (mkdir_p(dir) < 0) {
        snprintf(why, cap, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        s->port = free_port();
        if (s->port < 0) {
            snprintf(why, cap, "no free TCP port on 127.0.0.1: %s", strerror(errno));
            return -1;
        }
        pid_t pid = spawn(s, argv);
        track(pid);
        uint64_t end = now_ns() + (uint64_t)(START_WAIT_S * 1e9);
        int status = 0, exited = 0;
        while (now_ns() < end) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                exited = 1;
                break;
            }
            if (ready(s->port)) {
                s->pid = pid;
                return 0;
            }
            usleep(5000);
        }
        if (!exited) {
            s->pid = pid;
            cmp_server_stop(s);
            snprintf(why, cap, "%s did not answer within %.0f s (see %s)", name, START_WAIT_S,
                     s->log);
            return -1;
        }
        untrack(pid);
        char line[300];
        cmp_last_line(s->log, line, sizeof line);
        snprintf(why, cap, "%s exited at start (status %d): %s", name, status, line);
        if (!strstr(line, "in use"))
            return -1; /* not a port taken meanwhile: trying again will not help */
    }
    return -1;
}

int redis_server_start(cmp_server *s, const char *path, const char *dir, char *const extra[],
                       char *why, size_t cap) {
    char *argv[MAX_ARGS] = {
        (char *)path, "--port", CMP_SERVER_PORT, "--bind", "127.0.0.1", "--dir", (char *)dir,
        "--save",     "",       "--daemonize",   "no",     "--logfile", "",      "--protected-mode",
        "yes"};
    size_t n = 15;
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n + 1 >= MAX_ARGS)
            die("redis-server: too many options");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    return server_start(s, "redis-server", "redis.log", dir, argv, redis_ready, why, cap);
}

int nats_server_start(cmp_server *s, const char *path, const char *dir, char *const extra[],
                      char *why, size_t cap) {
    char *argv[MAX_ARGS] = {(char *)path,    "-a",          "127.0.0.1", "-p",
                            CMP_SERVER_PORT, "--jetstream", "-sd",       (char *)dir};
    size_t n = 8;
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n + 1 >= MAX_ARGS)
            die("nats-server: too many options");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    return server_start(s, "nats-server", "nats.log", dir, argv, nats_ready, why, cap);
}

void cmp_server_stop(cmp_server *s) {
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    int status;
    uint64_t end = now_ns() + (uint64_t)(STOP_WAIT_S * 1e9);
    pid_t w;
    while ((w = waitpid(s->pid, &status, WNOHANG)) == 0 && now_ns() < end)
        usleep(5000);
    if (w == 0) {
        progress("%s %d did not stop within %.0f s: SIGKILL", s->name, s->pid, STOP_WAIT_S);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
    }
    untrack(s->pid);
    s->pid = 0;
}

void redis_server_stop(cmp_server *s) {
    cmp_server_stop(s);
}

void cmp_cpu_start(cmp_cpu *m, int server_pid) {
    m->pid = server_pid;
    cpu_mark_now(&m->mark);
    m->server0 = server_pid > 0 ? proc_cpu_s(server_pid) : 0.0;
}

void cmp_cpu_stop(const cmp_cpu *m, cmp_out *out) {
    out->server_cpu_s = m->pid > 0 ? proc_cpu_s(m->pid) - m->server0 : 0.0;
    out->run.other_cpu_s = cpu_other_s(&m->mark) - out->server_cpu_s;
    if (out->run.other_cpu_s < 0)
        out->run.other_cpu_s = 0;
}

double proc_cpu_s(int pid) {
    char id[24];
    snprintf(id, sizeof id, "%d", pid);
    unsigned long flags = 0;
    unsigned long long ut = 0, st = 0;
    if (proc_stat(id, &flags, &ut, &st) < 0)
        return 0.0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}
