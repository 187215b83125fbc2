/*
 * cmd_serve.c - `kappalog serve DIR... --listen HOST:PORT`: serve logs to
 * Hypercore peers (JavaScript hypercore, or `kappalog clone`) until SIGINT
 * or SIGTERM (kl_serve). The logs are opened read-only, so a writer can go
 * on appending meanwhile; its commits are announced to connected peers as
 * they land. Prints "listening on HOST:PORT" and each log's key on stdout
 * once ready (the port is the one chosen when 0 was asked), and one line per
 * connection on stderr unless --quiet.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util.h"

enum { S_LISTEN, S_QUIET, S_STALL, S_MAX_PEERS };

static const cli_flag serve_flags[] = {
    [S_LISTEN] = {"--listen", "HOST:PORT"},
    [S_QUIET] = {"--quiet", NULL},
    [S_STALL] = {"--stall-ms", "MS"},
    [S_MAX_PEERS] = {"--max-peers", "N"},
    {NULL, NULL},
};

static volatile int stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void on_listening(void *ctx, const char *address) {
    const cli_args *a = ctx;
    printf("listening on %s\n", address);
    for (int i = 0; i < a->npos; i++) {
        kl_open_options o;
        kl_open_options_default(&o);
        o.flags = KL_OPEN_READONLY;
        kl_log *log = NULL;
        kl_info info;
        if (kl_log_open(a->pos[i], &o, &log) == 0 && kl_log_info(log, &info) == 0) {
            printf("key ");
            for (size_t k = 0; k < sizeof info.key; k++)
                printf("%02x", info.key[k]);
            printf(" %s\n", a->pos[i]);
        }
        if (log)
            kl_log_close(log);
    }
    fflush(stdout);
}

static int run_serve(const cli_command *cmd, const cli_args *a) {
    if (!a->val[S_LISTEN])
        return cli_usage_error(cmd, "--listen HOST:PORT is required");
    kl_serve_options o;
    kl_serve_options_default(&o);
    o.quiet = a->val[S_QUIET] != NULL;
    if (a->val[S_STALL]) {
        uint64_t ms = 0;
        if (cli_flag_number(cmd, "--stall-ms", a->val[S_STALL], 0, 100, 3600000, &ms) != 0)
            return CLI_EXIT_USAGE;
        o.stall_ms = (uint32_t)ms;
    }
    if (a->val[S_MAX_PEERS]) {
        uint64_t n = 0;
        if (cli_flag_number(cmd, "--max-peers", a->val[S_MAX_PEERS], 0, 1, UINT32_MAX, &n) != 0)
            return CLI_EXIT_USAGE;
        o.max_peers = (uint32_t)n;
    }
    o.stop = &stop_flag;
    o.on_listening = on_listening;
    o.ctx = (void *)a;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = kl_serve(a->pos, (size_t)a->npos, a->val[S_LISTEN], &o);
    return rc < 0 ? cli_kl_error("serve", rc, NULL) : CLI_EXIT_OK;
}

const cli_command cli_cmd_serve = {
    .name = "serve",
    .summary = "serve logs to Hypercore peers",
    .usage = "serve DIR... --listen HOST:PORT [--quiet] [--stall-ms MS] [--max-peers N]\n"
             "\n"
             "Serve the logs in DIR... (up to 16) over the Hypercore wire protocol to any\n"
             "number of peers (a JavaScript hypercore, or `kappalog clone`), until\n"
             "interrupted. The logs are opened read-only: a writer may append meanwhile,\n"
             "and its commits are announced to the connected peers as they land.\n"
             "\n"
             "  --listen HOST:PORT  where to listen (port 0: any free port; printed)\n"
             "  --quiet             no status lines on stderr (connections, refusals, the cap);\n"
             "                      errors still print\n"
             "  --stall-ms MS       drop a peer that sends nothing for MS ms (default 30000)\n"
             "  --max-peers N       peers connected at once, N >= 1; one more is accepted and\n"
             "                      closed (default 1024; either way at most what ulimit -n\n"
             "                      leaves, and the server says its cap when it starts\n"
             "                      unless --quiet)\n",
    .flags = serve_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 16,
    .run = run_serve,
};
