/*
 * cmd_clone.c - `kappalog clone HOST:PORT KEY DIR [--follow]`: copy a core
 * from a Hypercore peer (a JavaScript hypercore or `kappalog serve`) into a
 * replica in DIR, verifying every block and signature (kl_clone).
 *
 * Progress: on a terminal one line rewritten in place, else nothing until
 * the summary (blocks, the signed length, the rate). With --follow it keeps
 * up with the peer until SIGINT or SIGTERM, which only set a flag the
 * library looks at, so the replica is closed cleanly. Running it again on
 * the same DIR resumes from what the replica holds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

enum { C_FOLLOW, C_FSYNC, C_STALL };

static const cli_flag clone_flags[] = {
    [C_FOLLOW] = {"--follow", NULL},
    [C_FSYNC] = {"--fsync", "always|interval:MS|never"},
    [C_STALL] = {"--stall-ms", "MS"},
    {NULL, NULL},
};

static volatile int stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

typedef struct clone_progress {
    int tty;
    double started_s, next_s;
    uint64_t done, total;
} clone_progress;

static void progress(void *ctx, uint64_t done, uint64_t total) {
    clone_progress *p = ctx;
    p->done = done;
    p->total = total;
    if (!p->tty || cli_now_s() < p->next_s)
        return;
    p->next_s = cli_now_s() + 0.2;
    double s = cli_now_s() - p->started_s;
    fprintf(stderr, "\rclone: %llu of %llu blocks (%.0f blocks/s)   ", (unsigned long long)done,
            (unsigned long long)total, s > 0 ? (double)done / s : 0.0);
}

/* 64 hex digits into 32 bytes; -1 on anything else. */
static int parse_key(const char *text, unsigned char out[32]) {
    if (strlen(text) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        if (sscanf(text + 2 * i, "%2x", &v) != 1 ||
            !strchr("0123456789abcdefABCDEF", text[2 * i]) ||
            !strchr("0123456789abcdefABCDEF", text[2 * i + 1]))
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

static int run_clone(const cli_command *cmd, const cli_args *a) {
    unsigned char key[32];
    if (parse_key(a->pos[1], key) < 0)
        return cli_usage_error(cmd, "KEY: '%s' is not 64 hex digits (32 bytes)", a->pos[1]);
    kl_clone_options o;
    kl_clone_options_default(&o);
    o.follow = a->val[C_FOLLOW] != NULL;
    if (a->val[C_FSYNC]) {
        kl_config cfg;
        kl_config_default(&cfg);
        if (kl_config_parse_fsync(&cfg, a->val[C_FSYNC]) < 0)
            return cli_usage_error(cmd, "--fsync: %s", kl_last_error());
        o.fsync_set = 1;
        o.fsync_mode = cfg.fsync_mode;
    }
    if (a->val[C_STALL]) {
        uint64_t ms = 0;
        if (cli_flag_number(cmd, "--stall-ms", a->val[C_STALL], 0, 100, 3600000, &ms) != 0)
            return CLI_EXIT_USAGE;
        o.stall_ms = (uint32_t)ms;
    }
    clone_progress p = {.tty = isatty(STDERR_FILENO), .started_s = cli_now_s()};
    o.progress = progress;
    o.ctx = &p;
    o.stop = &stop_flag;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = kl_clone(a->pos[0], key, a->pos[2], &o);
    if (p.tty)
        fprintf(stderr, "\r\033[K");
    if (rc < 0)
        return cli_kl_error("clone", rc, NULL);
    double s = cli_now_s() - p.started_s;
    /* what the replica holds (a resumed clone's progress counts only what it fetched) */
    kl_open_options ro;
    kl_open_options_default(&ro);
    ro.flags |= KL_OPEN_READONLY;
    kl_log *log = NULL;
    if (kl_log_open(a->pos[2], &ro, &log) == 0) {
        fprintf(stderr, "clone: %s holds %llu blocks (%.1f s)\n", a->pos[2],
                (unsigned long long)kl_log_length(log), s);
        kl_log_close(log);
    } else {
        fprintf(stderr, "clone: %s: done (%.1f s)\n", a->pos[2], s);
    }
    return CLI_EXIT_OK;
}

const cli_command cli_cmd_clone = {
    .name = "clone",
    .summary = "copy a core from a Hypercore peer into a replica",
    .usage = "clone HOST:PORT KEY DIR [--follow] [--fsync always|interval:MS|never]\n"
             "              [--stall-ms MS]\n"
             "\n"
             "Download the core KEY (64 hex digits) from the Hypercore peer at HOST:PORT\n"
             "(a JavaScript hypercore, or `kappalog serve`) into a replica in DIR: a log\n"
             "without a secret key. Every block and every signature is verified before it\n"
             "is stored; run it again on the same DIR to resume.\n"
             "\n"
             "  --follow         keep up with the peer's new appends until interrupted\n"
             "  --fsync P        the new replica's fsync policy (default always)\n"
             "  --stall-ms MS    give up on a peer that sends nothing for MS ms (default 10000;\n"
             "                   a live peer sends a keepalive every 5 s), or on an address\n"
             "                   that does not take the connection within MS ms\n",
    .flags = clone_flags,
    .arg_names = {"HOST:PORT", "KEY", "DIR"},
    .min_args = 3,
    .max_args = 3,
    .run = run_clone,
};
