/*
 * cpu.c - how disturbed a run was: the CPU time that other user processes
 * used while it ran, plus the time the hypervisor stole, in seconds.
 *
 * Other processes: every /proc/PID/stat but ours and the kernel threads'
 * (their work, such as write-back of our own pages, is part of what we
 * measure), utime + stime + cutime + cstime, so that short-lived children
 * reaped by a parent still alive at the end (a compiler under make) count.
 * A process that appears during the run counts in full; one that ends
 * unreaped is missed. Clock ticks (10 ms), so small values are noise.
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
#include <unistd.h>

#include "bench.h"

#define PF_KTHREAD 0x00200000u /* include/linux/sched.h */

/* utime + stime + cutime + cstime of a user process, or -1 (gone, kernel thread). */
static int64_t proc_ticks(const char *pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces and parens */
    unsigned long flags;
    unsigned long long ut, st, cut, cst;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %lu %*u %*u %*u %*u %llu %llu %llu %llu",
                     &flags, &ut, &st, &cut, &cst) != 5)
        return -1;
    if (flags & PF_KTHREAD)
        return -1;
    return (int64_t)(ut + st + cut + cst);
}

static double steal_s(void) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    return n == 8 ? (double)v[7] / (double)sysconf(_SC_CLK_TCK) : 0.0;
}

void cpu_mark_now(cpu_mark *m) {
    size_t cap = 256;
    m->n = 0;
    m->procs = malloc(cap * sizeof *m->procs);
    DIR *d = opendir("/proc");
    struct dirent *de;
    int self = (int)getpid();
    while (m->procs && d && (de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]) || atoi(de->d_name) == self)
            continue;
        int64_t t = proc_ticks(de->d_name);
        if (t < 0)
            continue;
        if (m->n == cap) {
            cpu_proc *p = realloc(m->procs, 2 * cap * sizeof *p);
            if (!p)
                break;
            m->procs = p;
            cap *= 2;
        }
        m->procs[m->n++] = (cpu_proc){atoi(de->d_name), (uint64_t)t};
    }
    if (d)
        closedir(d);
    m->steal_s = steal_s();
}

static uint64_t ticks_at_start(const cpu_mark *m, int pid) {
    for (size_t i = 0; i < m->n; i++)
        if (m->procs[i].pid == pid)
            return m->procs[i].ticks;
    return 0;
}

double cpu_other_s(cpu_mark *start) {
    cpu_mark now;
    cpu_mark_now(&now);
    uint64_t ticks = 0;
    for (size_t i = 0; i < now.n; i++) {
        uint64_t before = ticks_at_start(start, now.procs[i].pid);
        if (now.procs[i].ticks > before)
            ticks += now.procs[i].ticks - before;
    }
    double other = (double)ticks / (double)sysconf(_SC_CLK_TCK) + (now.steal_s - start->steal_s);
    free(now.procs);
    free(start->procs);
    start->procs = NULL;
    return other > 0 ? other : 0.0;
}
