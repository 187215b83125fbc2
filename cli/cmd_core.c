/*
 * cmd_core.c - the commands about the log as a Hypercore core:
 * `kappalog verify DIR` (re-hash everything against the signed tree) and
 * `kappalog truncate DIR LENGTH` (cut it as Hypercore's truncate does).
 *
 * verify opens the log read-only, so it runs beside a writer and changes
 * nothing; its exit status is 0 only if every block, node, root and the
 * signature hold. `verify --repair` is a writer instead (it takes the lock):
 * it first rebuilds the tree file's nodes from the blocks where they differ
 * (kl_log_repair_tree), then verifies as above. truncate takes the writer's
 * lock like any writer.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

typedef struct verify_progress {
    const char *what;
    int terminal;
    double started_s, next_s;
} verify_progress;

static void on_progress(void *ctx, uint64_t done, uint64_t total) {
    verify_progress *p = ctx;
    double now = cli_now_s();
    if (!p->terminal || (now < p->next_s && done < total))
        return;
    p->next_s = now + 0.25;
    char line[160];
    double secs = now - p->started_s;
    snprintf(line, sizeof line, "%s: %" PRIu64 " of %" PRIu64 " blocks (%.0f%%), %.0f blocks/s",
             p->what, done, total, total ? 100.0 * (double)done / (double)total : 100.0,
             secs > 0 ? (double)done / secs : 0.0);
    cli_status_line(line);
}

/* verify --repair: open as the writer and rebuild the tree file's nodes that differ. */
static int repair_tree(const char *dir, kl_log **out) {
    int rc = kl_log_open(dir, NULL, out);
    if (rc < 0)
        return cli_kl_error("verify", rc, NULL);
    kl_info facts;
    if (kl_log_info(*out, &facts) == 0 && facts.recovery && facts.recovery[0])
        printf("%s: opening it repaired: %s\n", dir, facts.recovery);
    verify_progress p = {"repair", isatty(STDERR_FILENO), cli_now_s(), 0};
    uint64_t rebuilt = 0;
    rc = kl_log_repair_tree(*out, on_progress, &p, &rebuilt);
    cli_status_clear();
    if (rc < 0) {
        cli_error("verify", "%s: %s", dir, kl_log_last_error(*out));
        kl_log_close(*out);
        *out = NULL;
        return cli_exit_status(rc);
    }
    if (rebuilt)
        printf("%s: rebuilt %" PRIu64 " tree node%s from the blocks, which make the signed tree\n",
               dir, rebuilt, rebuilt == 1 ? "" : "s");
    else
        printf("%s: the tree file held; nothing to rebuild\n", dir);
    return 0;
}

static int run_verify(const cli_command *cmd, const cli_args *a) {
    (void)cmd;
    kl_log *log = NULL;
    int rc =
        a->val[0] ? repair_tree(a->pos[0], &log) : cli_open_readonly("verify", a->pos[0], &log);
    if (rc != 0)
        return rc;
    verify_progress p = {"verify", isatty(STDERR_FILENO), cli_now_s(), 0};
    uint64_t bad = UINT64_MAX;
    int kr = kl_log_verify(log, on_progress, &p, &bad);
    cli_status_clear();
    if (kr < 0) {
        if (bad != UINT64_MAX)
            cli_error("verify", "%s: first bad block %" PRIu64 ": %s", a->pos[0], bad,
                      kl_log_last_error(log));
        else
            cli_error("verify", "%s: %s", a->pos[0], kl_log_last_error(log));
        kl_log_close(log);
        return CLI_EXIT_RUNTIME;
    }
    kl_info info;
    kl_log_info(log, &info);
    char hash[65];
    for (int i = 0; i < 32; i++)
        snprintf(hash + 2 * i, 3, "%02x", info.tree_hash[i]);
    printf("%s: %" PRIu64 " blocks (%" PRIu64 " bytes), fork %" PRIu64
           ": every block, tree node and the signature hold (tree hash %s)\n",
           a->pos[0], info.length, info.byte_length, info.fork, hash);
    kl_log_close(log);
    return cli_flush() < 0 ? cli_write_failed("verify") : CLI_EXIT_OK;
}

static const cli_flag verify_flags[] = {{"--repair", NULL}, {NULL, NULL}};
static const cli_flag no_flags[] = {{NULL, NULL}};

const cli_command cli_cmd_verify = {
    .name = "verify",
    .summary = "check every block against the signed tree",
    .usage = "verify DIR [--repair]\n"
             "\n"
             "Re-hash every block of the log in DIR and check it, every node of the tree\n"
             "file, the roots and the signature in the header, and both header slots.\n"
             "Reads only (works beside a writer); shows progress on a terminal. Exit 0 if\n"
             "all of it holds, else 1, naming the first bad block (or the damaged header slot).\n"
             "\n"
             "  --repair  first rebuild the tree file's nodes from the blocks where they\n"
             "            differ (damaged or zeroed bytes in DIR/tree), then verify. The\n"
             "            blocks are hashed twice: nothing is written unless they pass\n"
             "            their checksums and make the signed roots (damage in the blocks\n"
             "            cannot be repaired from them: exit 1, the tree file unchanged).\n"
             "            A writer's open: it takes the writer's lock (no other process\n"
             "            may append meanwhile) and runs recovery first, which also\n"
             "            rewrites a damaged header slot from the other one and a torn\n"
             "            tree file header (docs/FORMAT.md), and rebuilds a tree file\n"
             "            cut short from the blocks (refused, writing nothing, if a\n"
             "            block it needs is damaged).\n",
    .flags = verify_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_verify,
};

static int run_truncate(const cli_command *cmd, const cli_args *a) {
    uint64_t length = 0;
    if (cli_parse_u64(a->pos[1], &length) < 0)
        return cli_usage_error(cmd, "LENGTH '%s' is not a number of blocks", a->pos[1]);
    int rc = kl_truncate(a->pos[0], length, NULL);
    if (rc < 0)
        return cli_kl_error("truncate", rc, NULL);
    return CLI_EXIT_OK;
}

const cli_command cli_cmd_truncate = {
    .name = "truncate",
    .summary = "cut the log to its first LENGTH blocks (a new fork)",
    .usage = "truncate DIR LENGTH\n"
             "\n"
             "Cut the log in DIR to its first LENGTH blocks, as Hypercore's truncate: the\n"
             "fork id increments and the tree at LENGTH is signed (LENGTH may be the current\n"
             "length: that only starts a new fork). The blocks past LENGTH are gone. Needs\n"
             "the secret key; crash-safe (an interrupted truncation is finished or undone\n"
             "by the next open).\n",
    .flags = no_flags,
    .arg_names = {"DIR", "LENGTH"},
    .min_args = 2,
    .max_args = 2,
    .run = run_truncate,
};

enum { P_BLOCK, P_NODES, P_UPGRADE, P_MANIFEST };

static const cli_flag proof_flags[] = {
    [P_BLOCK] = {"--block", "I"},
    [P_NODES] = {"--nodes", "K"},
    [P_UPGRADE] = {"--upgrade", "START:LENGTH"},
    [P_MANIFEST] = {"--manifest", NULL},
    {NULL, NULL},
};

/* "START:LENGTH" into two numbers; -1 on anything else. */
static int parse_range(const char *text, uint64_t *start, uint64_t *length) {
    const char *colon = strchr(text, ':');
    if (!colon || colon == text || colon - text >= 32)
        return -1;
    char head[32];
    memcpy(head, text, (size_t)(colon - text));
    head[colon - text] = 0;
    return cli_parse_u64(head, start) < 0 || cli_parse_u64(colon + 1, length) < 0 ? -1 : 0;
}

static int run_proof(const cli_command *cmd, const cli_args *a) {
    kl_proof_ask ask;
    memset(&ask, 0, sizeof ask);
    if (a->val[P_BLOCK]) {
        ask.block = 1;
        if (cli_parse_u64(a->val[P_BLOCK], &ask.block_index) < 0)
            return cli_usage_error(cmd, "--block: '%s' is not a block index", a->val[P_BLOCK]);
    }
    if (a->val[P_NODES]) {
        if (!ask.block)
            return cli_usage_error(cmd, "--nodes needs --block");
        if (cli_parse_u64(a->val[P_NODES], &ask.block_nodes) < 0)
            return cli_usage_error(cmd, "--nodes: '%s' is not a number", a->val[P_NODES]);
    }
    if (a->val[P_UPGRADE]) {
        ask.upgrade = 1;
        if (parse_range(a->val[P_UPGRADE], &ask.upgrade_start, &ask.upgrade_length) < 0)
            return cli_usage_error(cmd, "--upgrade: '%s' is not START:LENGTH", a->val[P_UPGRADE]);
    }
    ask.manifest = a->val[P_MANIFEST] != NULL;
    if (!ask.block && !ask.upgrade)
        return cli_usage_error(cmd, "ask for a --block, an --upgrade, or both");
    kl_log *log = NULL;
    int rc = cli_open_readonly("proof", a->pos[0], &log);
    if (rc != 0)
        return rc;
    unsigned char *msg = NULL;
    size_t n = 0;
    int kr = kl_log_proof(log, &ask, 0, &msg, &n);
    if (kr < 0) {
        rc = cli_kl_error("proof", kr, log);
    } else {
        for (size_t i = 0; i < n && rc == 0; i++)
            if (printf("%02x", msg[i]) < 0)
                rc = -1;
        if (rc == 0 && printf("\n") < 0)
            rc = -1;
        if (rc < 0 || cli_flush() < 0)
            rc = cli_write_failed("proof");
    }
    free(msg);
    kl_log_close(log);
    return rc;
}

const cli_command cli_cmd_proof = {
    .name = "proof",
    .summary = "print the Hypercore proof a peer would get",
    .usage = "proof DIR [--block I [--nodes K]] [--upgrade START:LENGTH] [--manifest]\n"
             "\n"
             "Print, as one line of hex, the Hypercore `data` message (request id 0) that\n"
             "answers this request at the log's length: block I with the K levels of its\n"
             "Merkle path the asker lacks, the upgrade from the asker's length START over\n"
             "LENGTH blocks with the signature, and the manifest (never for a compat core).\n"
             "At least one of --block and --upgrade is required.\n"
             "Byte for byte what hypercore 11.37.1 sends; for testing interop.\n",
    .flags = proof_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_proof,
};
