/*
 * redis_server.c - the Redis server the compare run measures against:
 * finding Debian's redis-server (and installing it with apt-get when it is
 * missing and the bench runs as root: install_redis_server_as_root), and
 * starting and stopping instances of it.
 *
 * Every instance is the bench's own child: bound to 127.0.0.1 on a port
 * that was free a moment before (a bind to port 0; if another process
 * takes it first, the start is tried again on a new one), working in a
 * directory of its own under the scratch dir, its log there, and stopped by
 * its pid: SIGTERM (Redis then syncs its AOF and exits), a wait, SIGKILL
 * after STOP_WAIT_S. The instances still running are stopped at exit (so
 * after die(), too), on SIGINT and SIGTERM, and, as PR_SET_PDEATHSIG asks
 * the kernel, when the bench itself is killed.
 *
 * What a reader would get wrong: nothing here needs hiredis: the server is
 * known to be up when it answers a PING on a plain socket, so the bench
 * says why Redis was not measured even when it was built without hiredis.
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
#define START_WAIT_S 10.0 /* a fresh, empty server answers in milliseconds */
#define STOP_WAIT_S  30.0 /* SIGTERM: Redis syncs its AOF and exits */
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
 * The one place the bench installs software: Debian's redis-server with
 * apt-get, only when it is missing and the bench runs as root (README.md
 * says so). 0 if it is installed now, else -1 and why.
 */
static int install_redis_server_as_root(char *why, size_t cap) {
    if (geteuid() != 0) {
        snprintf(why, cap,
                 "redis-server is not installed (apt-get install redis-server, or "
                 "scripts/deps.sh test; the bench installs it itself only when run as root)");
        return -1;
    }
    progress("compare: redis-server is missing; installing it: apt-get install -y redis-server");
    char *install[] = {"apt-get", "install", "-y", "redis-server", NULL};
    char *update[] = {"apt-get", "update", NULL};
    if (run_wait(install) == 0)
        return 0;
    if (run_wait(update) == 0 && run_wait(install) == 0)
        return 0;
    snprintf(why, cap, "redis-server is not installed and apt-get install -y redis-server failed");
    return -1;
}

int redis_server_find(char *path, size_t cap, char *version, size_t vcap, char *why,
                      size_t why_cap) {
    which("redis-server", path, cap);
    if (!path[0] && install_redis_server_as_root(why, why_cap) < 0)
        return -1;
    if (!path[0])
        which("redis-server", path, cap);
    if (!path[0]) {
        snprintf(why, why_cap, "redis-server not found on PATH after installing it");
        return -1;
    }
    /* "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=..." */
    char cmd[4200], line[256] = "";
    snprintf(cmd, sizeof cmd, "'%s' --version 2>&1", path);
    FILE *f = popen(cmd, "r");
    if (!f || !fgets(line, sizeof line, f)) {
        if (f)
            pclose(f);
        snprintf(why, why_cap, "%s --version printed nothing", path);
        return -1;
    }
    pclose(f);
    const char *v = strstr(line, "v=");
    snprintf(version, vcap, "%.*s", v ? (int)strcspn(v + 2, " \n") : 0, v ? v + 2 : "");
    if (!version[0]) {
        snprintf(why, why_cap, "%s --version says '%.100s'", path, line);
        return -1;
    }
    return 0;
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

/* Does a server on 127.0.0.1:port answer PING with +PONG? */
static int answers_ping(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = 0;
    char buf[16] = "";
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        write(fd, "PING\r\n", 6) == 6) {
        struct timeval tv = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ok = read(fd, buf, sizeof buf - 1) >= 5 && strncmp(buf, "+PONG", 5) == 0;
    }
    if (fd >= 0)
        close(fd);
    return ok;
}

/* The last non-empty line of a file, for an error message. */
static void last_line(const char *path, char *out, size_t cap) {
    char line[512];
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (line[0] != '\n' && line[0] != '\0')
            snprintf(out, cap, "%.*s", (int)strcspn(line, "\n"), line);
    if (f)
        fclose(f);
}

static pid_t spawn(const cmp_server *s, const char *path, char *const extra[]) {
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    char *argv[64] = {
        (char *)path, "--port", port,          "--bind", "127.0.0.1", "--dir", (char *)s->dir,
        "--save",     "",       "--daemonize", "no",     "--logfile", "",      "--protected-mode",
        "yes"};
    size_t n = 15;
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n + 1 >= sizeof argv / sizeof *argv)
            die("redis-server: too many options");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the bench killed: the server goes too */
        int log = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 || chdir(s->dir) < 0)
            _exit(126);
        execv(path, argv);
        _exit(127);
    }
    return pid;
}

int redis_server_start(cmp_server *s, const char *path, const char *dir, char *const extra[],
                       char *why, size_t cap) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->log, sizeof s->log, "%s/redis.log", dir);
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
        pid_t pid = spawn(s, path, extra);
        track(pid);
        uint64_t end = now_ns() + (uint64_t)(START_WAIT_S * 1e9);
        int status = 0, exited = 0;
        while (now_ns() < end) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                exited = 1;
                break;
            }
            if (answers_ping(s->port)) {
                s->pid = pid;
                return 0;
            }
            usleep(5000);
        }
        if (!exited) {
            s->pid = pid;
            redis_server_stop(s);
            snprintf(why, cap, "redis-server did not answer PING within %.0f s (see %s)",
                     START_WAIT_S, s->log);
            return -1;
        }
        untrack(pid);
        char line[300];
        last_line(s->log, line, sizeof line);
        snprintf(why, cap, "redis-server exited at start (status %d): %s", status, line);
        if (!strstr(line, "in use"))
            return -1; /* not a port taken meanwhile: trying again will not help */
    }
    return -1;
}

void redis_server_stop(cmp_server *s) {
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    int status;
    uint64_t end = now_ns() + (uint64_t)(STOP_WAIT_S * 1e9);
    pid_t w;
    while ((w = waitpid(s->pid, &status, WNOHANG)) == 0 && now_ns() < end)
        usleep(5000);
    if (w == 0) {
        progress("redis-server %d did not stop within %.0f s: SIGKILL", s->pid, STOP_WAIT_S);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
    }
    untrack(s->pid);
    s->pid = 0;
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
