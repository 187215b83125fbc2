/*
 * cpu.c - how disturbed a run was: the CPU time that other processes used
 * while it ran, plus the time the hypervisor stole, in seconds.
 *
 * other = the machine's user + nice + system time (/proc/stat)
 *       - this process's own time (getrusage, all its threads, io_uring's
 *         workers included, and its children once reaped: the Node.js of
 *         the hypercore peer)
 *       - the kernel threads' time (/proc/PID/stat with PF_KTHREAD: their
 *         work, such as write-back of our own pages, is part of what we
 *         measure)
 *       + stolen time.
 * Counting the machine's total (rather than adding up other processes) also
 * counts processes that start and end within the run. Clock ticks (10 ms),
 * so small values are noise.
 *
 * What a reader would get wrong: this is a warning light for the figures,
 * not a measurement of anything; scanning /proc happens outside the timed
 * region.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

#define PF_KTHREAD 0x00200000u /* include/linux/sched.h */

int proc_stat(const char *pid, unsigned long *flags, unsigned long long *utime_ticks,
              unsigned long long *stime_ticks) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces and parens */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %lu %*u %*u %*u %*u %llu %llu", flags,
                     utime_ticks, stime_ticks) != 3)
        return -1;
    return 0;
}

/* utime + stime of a kernel thread, in ticks; 0 for anything else. */
static uint64_t kthread_ticks(const char *pid) {
    unsigned long flags = 0;
    unsigned long long ut = 0, st = 0;
    if (proc_stat(pid, &flags, &ut, &st) < 0)
        return 0;
    return (flags & PF_KTHREAD) ? ut + st : 0;
}

static double kthreads_s(void) {
    uint64_t ticks = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (isdigit((unsigned char)de->d_name[0]))
            ticks += kthread_ticks(de->d_name);
    if (d)
        closedir(d);
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

/* user + nice + system, and steal, of the whole machine in seconds. */
static void machine_s(double *busy, double *steal) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *busy = *steal = 0;
    if (!f)
        return;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return;
    double hz = (double)sysconf(_SC_CLK_TCK);
    *busy = (double)(v[0] + v[1] + v[2]) / hz;
    *steal = (double)v[7] / hz;
}

static double rusage_s(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double self_s(void) {
    return rusage_s(RUSAGE_SELF) + rusage_s(RUSAGE_CHILDREN);
}

void cpu_mark_now(cpu_mark *m) {
    machine_s(&m->busy_s, &m->steal_s);
    m->self_s = self_s();
    m->kthreads_s = kthreads_s();
}

double cpu_other_s(const cpu_mark *start) {
    cpu_mark now;
    cpu_mark_now(&now);
    double other = (now.busy_s - start->busy_s) - (now.self_s - start->self_s) -
                   (now.kthreads_s - start->kthreads_s) + (now.steal_s - start->steal_s);
    return other > 0 ? other : 0.0;
}
