/*
 * machine.c - the facts a figure needs to be read: host, kernel, CPU,
 * cores, memory, the filesystem and device under --dir, the date, and the
 * source commit of the tree the benchmark was built from.
 *
 * What a reader would get wrong: the filesystem and device are those of the
 * mount that holds --dir (matched by device number in
 * /proc/self/mountinfo), not of the current directory.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifndef KL_BENCH_SOURCE_DIR
#define KL_BENCH_SOURCE_DIR "."
#endif

static void trim(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* The value after "key<spaces>:" in a /proc text file, or "" if absent. */
static void proc_field(const char *file, const char *key, char *out, size_t cap) {
    FILE *f = fopen(file, "r");
    char line[1024];
    out[0] = '\0';
    if (!f)
        return;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) != 0)
            continue;
        const char *c = strchr(line, ':');
        if (!c)
            continue;
        for (c++; *c == ' ' || *c == '\t'; c++)
            ;
        snprintf(out, cap, "%s", c);
        trim(out);
        break;
    }
    fclose(f);
}

uint64_t meminfo_bytes(const char *key) {
    char v[64];
    proc_field("/proc/meminfo", key, v, sizeof v); /* "NNN kB" */
    return (uint64_t)strtoull(v, NULL, 10) * 1024u;
}

/* The mount holding dir: filesystem type, source device and mount point. */
static void probe_mount(bench_machine *m, const char *dir) {
    struct stat st;
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f || stat(dir, &st) < 0) {
        if (f)
            fclose(f);
        return;
    }
    char line[4096], want[32];
    snprintf(want, sizeof want, "%u:%u", major(st.st_dev), minor(st.st_dev));
    while (fgets(line, sizeof line, f)) {
        char devno[32], mnt[1024], fstype[64], source[256], super[512];
        if (sscanf(line, "%*s %*s %31s %*s %1023s", devno, mnt) != 2 || strcmp(devno, want))
            continue;
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(dash + 3, "%63s %255s %511s", fstype, source, super) != 3)
            continue;
        snprintf(m->mount_options, sizeof m->mount_options, "%s", super);
        snprintf(m->fs_type, sizeof m->fs_type, "%s", fstype);
        snprintf(m->device, sizeof m->device, "%s", source);
        snprintf(m->mount_point, sizeof m->mount_point, "%s", mnt);
        break;
    }
    fclose(f);
}

/* Has the ext3/ext4 filesystem on the device a journal (a jbd2 entry)? */
static void probe_journal(bench_machine *m, const char *dev) {
    snprintf(m->journal, sizeof m->journal, "%s", "n/a");
    if (strncmp(m->fs_type, "ext", 3) != 0)
        return;
    snprintf(m->journal, sizeof m->journal, "%s", "none");
    DIR *d = opendir("/proc/fs/jbd2");
    struct dirent *de;
    size_t n = strlen(dev);
    while (d && (de = readdir(d)) != NULL)
        if (strncmp(de->d_name, dev, n) == 0 && de->d_name[n] == '-')
            snprintf(m->journal, sizeof m->journal, "%s", "jbd2");
    if (d)
        closedir(d);
}

/* The device's volatile write cache ("write back" or "write through"). */
static void probe_cache(bench_machine *m, const char *dev) {
    char path[512];
    const char *tries[] = {"/sys/class/block/%s/queue/write_cache",
                           "/sys/class/block/%s/../queue/write_cache"};
    for (int i = 0; i < 2 && !m->write_cache[0]; i++) {
        snprintf(path, sizeof path, tries[i], dev);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(m->write_cache, sizeof m->write_cache, f))
            m->write_cache[0] = '\0';
        fclose(f);
        trim(m->write_cache);
    }
}

static void probe_commit(bench_machine *m) {
    FILE *p = popen("git -C '" KL_BENCH_SOURCE_DIR "' describe --always --dirty --abbrev=12 "
                    "2>/dev/null",
                    "r");
    m->source_commit[0] = '\0';
    if (!p)
        return;
    if (!fgets(m->source_commit, sizeof m->source_commit, p))
        m->source_commit[0] = '\0';
    pclose(p);
    trim(m->source_commit);
}

void machine_loadavg(char *out, size_t cap) {
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (!f)
        return;
    if (!fgets(out, (int)cap, f))
        out[0] = '\0';
    fclose(f);
    trim(out);
}

void machine_probe(bench_machine *m, const char *dir) {
    memset(m, 0, sizeof *m);
    gethostname(m->hostname, sizeof m->hostname - 1);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof m->kernel, "%s %s %s %s", u.sysname, u.release, u.version,
                 u.machine);
    proc_field("/proc/cpuinfo", "model name", m->cpu, sizeof m->cpu);
    m->cores = sysconf(_SC_NPROCESSORS_ONLN);
    m->ram_bytes = meminfo_bytes("MemTotal");
    probe_mount(m, dir);
    const char *dev = strrchr(m->device, '/') ? strrchr(m->device, '/') + 1 : m->device;
    probe_journal(m, dev);
    probe_cache(m, dev);
    m->disk_free_bytes = disk_free_bytes(dir);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    probe_commit(m);
    m->timer_overhead_ns = timer_overhead_ns();
    machine_loadavg(m->loadavg_start, sizeof m->loadavg_start);
}
