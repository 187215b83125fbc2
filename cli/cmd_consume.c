/*
 * cmd_consume.c - named consumer cursors on the command line:
 *   kappalog consume DIR --cursor NAME [--max N] [--format F] [--follow]
 *   kappalog cursors DIR [--json]
 *   kappalog cursor DIR NAME --reset INDEX | --delete
 *
 * `consume` is at-least-once to stdout: it writes a chunk of records,
 * flushes stdout (the bytes are handed to the kernel: to a file, a pipe or
 * a terminal), and only then commits the cursor past them, durably. A crash
 * (kill -9) between the two prints those records again next time; a crash
 * can never move the cursor past records that were not written out.
 *
 * The one thing a reader would get wrong: a chunk ends at CHUNK_RECORDS
 * records, CHUNK_BYTES bytes, or the log's current end, whichever comes
 * first, so a slow reader of stdout holds at most one chunk of records that
 * are written but not yet acknowledged by the cursor.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "records.h"
#include "util.h"

/* A chunk: the records written between two cursor commits. */
#define CHUNK_RECORDS 4096u
#define CHUNK_BYTES   (4u * 1024u * 1024u)

enum { C_CURSOR, C_MAX, C_FORMAT, C_FOLLOW };

static const cli_flag consume_flags[] = {
    [C_CURSOR] = {"--cursor", "NAME"},
    [C_MAX] = {"--max", "N"},
    [C_FORMAT] = {"--format", "lines|len32|json"},
    [C_FOLLOW] = {"--follow", NULL},
    {NULL, NULL},
};

/* Report a cursor whose log changed under it (truncated, or lost blocks), and how to go on. */
static int fork_error(const char *what, const char *dir, const char *name, kl_log *log) {
    cli_error(what,
              "%s; check what changed, then move the cursor with "
              "'kappalog cursor %s %s --reset INDEX'",
              kl_log_last_error(log), dir, name);
    return CLI_EXIT_RUNTIME;
}

/*
 * Write one chunk from *pos (at most `left` records), flush, commit the
 * cursor past it. Returns an exit status; *pos and *left advance.
 */
static int consume_chunk(kl_log *log, kl_cursor *c, cli_record_fn emit, uint64_t *pos,
                         uint64_t *left) {
    uint64_t length = kl_log_length(log);
    uint64_t n = length - *pos;
    if (n > *left)
        n = *left;
    if (n > CHUNK_RECORDS)
        n = CHUNK_RECORDS;
    kl_iter *it = NULL;
    int rc = kl_iter_open(log, *pos, *pos + n, &it);
    if (rc < 0)
        return cli_kl_error("consume", rc, log);
    kl_record rec;
    uint64_t bytes = 0, next = *pos;
    while (bytes < CHUNK_BYTES && (rc = kl_iter_next(it, &rec)) == 1) {
        if (emit(&rec) < 0) {
            kl_iter_close(it);
            return cli_write_failed("consume");
        }
        bytes += rec.size;
        next = rec.index + 1;
    }
    kl_iter_close(it);
    if (cli_flush() < 0)
        return cli_write_failed("consume");
    if (rc < 0) /* damaged blocks: the cursor stays before them */
        return cli_kl_error("consume", rc, log);
    rc = kl_cursor_commit(c, next); /* only now: the records are written out */
    if (rc < 0)
        return cli_kl_error("consume", rc, log);
    *left -= next - *pos;
    *pos = next;
    return 0;
}

static int consume_loop(kl_log *log, kl_cursor *c, cli_record_fn emit, uint64_t max, int follow) {
    uint64_t pos = kl_cursor_position(c), left = max;
    while (left > 0) {
        if (pos < kl_log_length(log)) {
            int rc = consume_chunk(log, c, emit, &pos, &left);
            if (rc != 0)
                return rc;
            continue;
        }
        if (!follow)
            break;
        int rc = kl_log_wait(log, pos, -1);
        if (rc < 0)
            return cli_kl_error("consume", rc, log);
    }
    return 0;
}

static int run_consume(const cli_command *cmd, const cli_args *a) {
    const char *name = a->val[C_CURSOR];
    if (!name)
        return cli_usage_error(cmd, "--cursor NAME is required");
    const char *format = a->val[C_FORMAT] ? a->val[C_FORMAT] : "lines";
    cli_record_fn emit = cli_record_writer(format);
    if (!emit)
        return cli_usage_error(cmd, "--format '%s' is not lines, len32 or json", format);
    uint64_t max = UINT64_MAX;
    if (a->val[C_MAX] && cli_flag_number(cmd, "--max", a->val[C_MAX], 0, 1, UINT64_MAX, &max))
        return CLI_EXIT_USAGE;
    kl_log *log = NULL;
    int rc = cli_open_readonly("consume", a->pos[0], &log);
    if (rc != 0)
        return rc;
    kl_cursor *c = NULL;
    rc = kl_cursor_open(log, name, KL_CURSOR_CREATE, &c);
    if (rc == KL_EFORK) {
        rc = fork_error("consume", a->pos[0], name, log);
    } else if (rc < 0) {
        rc = cli_kl_error("consume", rc, log);
    } else {
        cli_stdout_init();
        rc = consume_loop(log, c, emit, max, a->val[C_FOLLOW] != NULL);
    }
    kl_cursor_close(c);
    kl_log_close(log);
    return rc;
}

enum { L_JSON };

static const cli_flag cursors_flags[] = {
    [L_JSON] = {"--json", NULL},
    {NULL, NULL},
};

static int print_cursors(const kl_cursor_info *v, size_t n, uint64_t length, uint64_t fork,
                         int json) {
    if (json)
        printf("[");
    else if (n > 0)
        printf("%-24s %14s %6s %14s\n", "NAME", "POSITION", "FORK", "LAG");
    for (size_t i = 0; i < n; i++) {
        const kl_cursor_info *ci = &v[i];
        /* lag: blocks still to consume; for a cursor of another fork, unknown */
        int known = !ci->damaged && !ci->diverged && ci->fork == fork && ci->position <= length;
        uint64_t lag = known ? length - ci->position : 0;
        if (json) {
            if (ci->damaged) /* neither slot checks out: no position or fork is known */
                printf("%s{\"name\":\"%s\",\"position\":null,\"fork\":null", i ? "," : "",
                       ci->name);
            else
                printf("%s{\"name\":\"%s\",\"position\":%" PRIu64 ",\"fork\":%" PRIu64,
                       i ? "," : "", ci->name, ci->position, ci->fork);
            printf(known ? ",\"lag\":%" PRIu64 : ",\"lag\":null", lag);
            printf(",\"state\":\"%s\"}", ci->damaged             ? "damaged"
                                         : ci->fork != fork      ? "fork changed"
                                         : ci->position > length ? "past the end"
                                         : ci->diverged          ? "diverged"
                                                                 : "ok");
        } else if (ci->damaged) {
            printf("%-24s %14s %6s %14s  damaged: neither slot checks out\n", ci->name, "-", "-",
                   "-");
        } else {
            char lagbuf[32];
            snprintf(lagbuf, sizeof lagbuf, known ? "%" PRIu64 : "-", lag);
            printf("%-24s %14" PRIu64 " %6" PRIu64 " %14s%s\n", ci->name, ci->position, ci->fork,
                   lagbuf,
                   ci->fork != fork        ? "  the log was truncated since (fork changed)"
                   : ci->position > length ? "  past the end of the log"
                   : ci->diverged ? "  the log lost blocks it had read, and others took their place"
                                  : "");
        }
    }
    if (json)
        printf("]\n");
    else if (n == 0)
        printf("no cursors\n");
    return cli_flush() < 0 ? cli_write_failed("cursors") : 0;
}

static int run_cursors(const cli_command *cmd, const cli_args *a) {
    (void)cmd;
    kl_log *log = NULL;
    int rc = cli_open_readonly("cursors", a->pos[0], &log);
    if (rc != 0)
        return rc;
    kl_cursor_info *v = NULL;
    size_t n = 0;
    kl_info info;
    rc = kl_log_info(log, &info);
    if (rc == 0)
        rc = kl_cursor_list(log, &v, &n);
    if (rc < 0)
        rc = cli_kl_error("cursors", rc, log);
    else
        rc = print_cursors(v, n, info.length, info.fork, a->val[L_JSON] != NULL);
    free(v);
    kl_log_close(log);
    return rc;
}

enum { K_RESET, K_DELETE };

static const cli_flag cursor_flags[] = {
    [K_RESET] = {"--reset", "INDEX"},
    [K_DELETE] = {"--delete", NULL},
    {NULL, NULL},
};

static int run_cursor(const cli_command *cmd, const cli_args *a) {
    int reset = a->val[K_RESET] != NULL, del = a->val[K_DELETE] != NULL;
    if (reset == del)
        return cli_usage_error(cmd, "give exactly one of --reset INDEX and --delete");
    uint64_t index = 0;
    if (reset && cli_flag_number(cmd, "--reset", a->val[K_RESET], 0, 0, UINT64_MAX, &index))
        return CLI_EXIT_USAGE;
    kl_log *log = NULL;
    int rc = cli_open_readonly("cursor", a->pos[0], &log);
    if (rc != 0)
        return rc;
    const char *name = a->pos[1];
    if (del) {
        rc = kl_cursor_delete(log, name);
    } else if (index > kl_log_length(log)) {
        cli_error("cursor", "--reset %" PRIu64 " is past the end of the log (length %" PRIu64 ")",
                  index, kl_log_length(log));
        kl_log_close(log);
        return CLI_EXIT_RUNTIME;
    } else {
        kl_cursor *c = NULL;
        rc = kl_cursor_open(log, name, KL_CURSOR_CREATE, &c);
        if (rc == KL_ECORRUPT) { /* a reset is also how a damaged cursor is rewritten */
            fprintf(stderr, "kappalog: warning: cursor: %s; writing it again at %" PRIu64 "\n",
                    kl_log_last_error(log), index);
            kl_cursor_close(c);
            c = NULL;
            rc = kl_cursor_delete(log, name);
            if (rc == 0)
                rc = kl_cursor_open(log, name, KL_CURSOR_CREATE, &c);
        }
        if (rc == 0 || rc == KL_EFORK) /* a reset is how a cursor takes the new fork */
            rc = kl_cursor_commit(c, index);
        kl_cursor_close(c);
    }
    if (rc < 0)
        rc = cli_kl_error("cursor", rc, log);
    kl_log_close(log);
    return rc;
}

const cli_command cli_cmd_consume = {
    .name = "consume",
    .summary = "write records from a named cursor to stdout, advancing it",
    .usage =
        "consume DIR --cursor NAME [--max N] [--format lines|len32|json] [--follow]\n"
        "\n"
        "Write the records from the cursor's position on to stdout, and move the\n"
        "cursor past them, durably, once they were written out: at-least-once (a\n"
        "crash may print the last chunk again; it never skips one). The cursor is\n"
        "created at block 0 if it does not exist. NAME: 1..64 of A-Z a-z 0-9 . _ -,\n"
        "not starting with '.'\n"
        "\n"
        "  --max N         stop after N records\n"
        "  --follow        at the end, wait for new commits and go on\n" CLI_RECORD_FORMATS_HELP
        "\n"
        "A cursor whose log changed under it is reported, not followed: the log was\n"
        "truncated since (its fork changed), or a crash under fsync interval or\n"
        "never lost blocks the cursor had read (it is past the end, or the log's\n"
        "tree hash at its position is not the one it committed). Move it with\n"
        "'kappalog cursor DIR NAME --reset I'.\n",
    .flags = consume_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_consume,
};

const cli_command cli_cmd_cursors = {
    .name = "cursors",
    .summary = "list the consumer cursors of a log",
    .usage = "cursors DIR [--json]\n"
             "\n"
             "List each cursor: its name, position (the next block it will consume), the\n"
             "fork it was committed at, and its lag (blocks still to consume).\n"
             "\n"
             "  --json  one JSON array of {name, position, fork, lag, state} (position,\n"
             "          fork and lag null where they are not known)\n",
    .flags = cursors_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_cursors,
};

const cli_command cli_cmd_cursor = {
    .name = "cursor",
    .summary = "move (--reset) or delete a consumer cursor",
    .usage = "cursor DIR NAME --reset INDEX | --delete\n"
             "\n"
             "  --reset INDEX  set the cursor to block INDEX (0..length) at the log's\n"
             "                 current fork, creating it if needed\n"
             "  --delete       remove the cursor\n",
    .flags = cursor_flags,
    .arg_names = {"DIR", "NAME"},
    .min_args = 2,
    .max_args = 2,
    .run = run_cursor,
};
