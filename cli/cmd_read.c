/*
 * cmd_read.c - `kappalog get DIR INDEX` (one block, raw) and `kappalog read
 * DIR` (a range of blocks as lines, len32 or JSON) on stdout.
 *
 * Both open the log read-only, so they run beside a process appending to
 * it and see what was committed when they opened it. Output goes through
 * one big stdout buffer; when the reader of stdout goes away (EPIPE; SIGPIPE
 * is ignored in main.c) they stop quietly with status 141, as `head` users
 * expect, instead of printing an error.
 *
 * The one thing a reader would get wrong: `read --to` past the length is
 * cut to the length (the range is "up to J"), but `--from` past the length
 * is an error, because it names blocks that do not exist; --from equal to
 * the length is an empty range, not an error.
 */
#define _POSIX_C_SOURCE 200809L

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "records.h"
#include "util.h"

/* The first buffer of `get`; it grows to the block's size when that is larger. */
#define GET_INITIAL_BYTES (64u * 1024u)

/* Copy block index into *buf, growing it as kl_log_get asks. Returns 0 or an exit status. */
static int get_block(kl_log *log, uint64_t index, uint8_t **buf, size_t *cap, size_t *size) {
    for (;;) {
        int rc = kl_log_get(log, index, *buf, *cap, size);
        if (rc == 0)
            return 0;
        if (rc != KL_ETOOSMALL)
            return cli_kl_error("get", rc, log);
        assert(*size > *cap);
        uint8_t *bigger = realloc(*buf, *size);
        if (!bigger) {
            cli_error("get", "no memory for block %" PRIu64 " (%zu bytes)", index, *size);
            return CLI_EXIT_RUNTIME;
        }
        *buf = bigger;
        *cap = *size;
    }
}

static int run_get(const cli_command *cmd, const cli_args *a) {
    uint64_t index;
    if (cli_parse_u64(a->pos[1], &index) < 0)
        return cli_usage_error(cmd, "INDEX '%s' is not a block index (a non-negative number)",
                               a->pos[1]);
    kl_log *log = NULL;
    int rc = cli_open_readonly("get", a->pos[0], &log);
    if (rc != 0)
        return rc;
    size_t cap = GET_INITIAL_BYTES, size = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        cli_error("get", "no memory for a %zu-byte buffer", cap);
        rc = CLI_EXIT_RUNTIME;
    } else {
        rc = get_block(log, index, &buf, &cap, &size);
    }
    if (rc == 0 && (cli_write(buf, size) < 0 || cli_flush() < 0))
        rc = cli_write_failed("get");
    free(buf);
    kl_log_close(log);
    return rc;
}

enum { R_FROM, R_TO, R_FORMAT, R_FOLLOW, R_SINCE };

static const cli_flag read_flags[] = {
    [R_FROM] = {"--from", "I"},
    [R_TO] = {"--to", "J"},
    [R_FORMAT] = {"--format", "lines|len32|json"},
    [R_FOLLOW] = {"--follow", NULL},
    [R_SINCE] = {"--since", "TIME"},
    {NULL, NULL},
};

/* The flags of read: the range asked for and the writer. Returns 0 or an exit status. */
static int read_options(const cli_command *cmd, const cli_args *a, uint64_t *from, uint64_t *to,
                        cli_record_fn *emit) {
    const char *format = a->val[R_FORMAT] ? a->val[R_FORMAT] : "lines";
    *emit = cli_record_writer(format);
    if (!*emit)
        return cli_usage_error(cmd, "--format '%s' is not lines, len32 or json", format);
    *from = 0;
    *to = UINT64_MAX;
    if (a->val[R_FROM] &&
        cli_flag_number(cmd, "--from", a->val[R_FROM], 0, 0, UINT64_MAX, from) != 0)
        return CLI_EXIT_USAGE;
    if (a->val[R_TO] && cli_flag_number(cmd, "--to", a->val[R_TO], 0, 0, UINT64_MAX, to) != 0)
        return CLI_EXIT_USAGE;
    if (*from > *to)
        return cli_usage_error(cmd, "--from %" PRIu64 " is past --to %" PRIu64, *from, *to);
    return 0;
}

/* --since TIME (RFC 3339 or Unix ms), which sets the start as --from does. 0 or an exit status. */
static int since_option(const cli_command *cmd, const cli_args *a, uint64_t *since_ms) {
    char why[CLI_TIME_WHY_BYTES];
    if (!a->val[R_SINCE])
        return 0;
    if (a->val[R_FROM])
        return cli_usage_error(cmd, "--since and --from both set where to start: give one of them");
    if (cli_parse_time(a->val[R_SINCE], since_ms, why, sizeof why) < 0)
        return cli_usage_error(cmd, "--since: '%s' is not a time: %s", a->val[R_SINCE], why);
    return 0;
}

/*
 * --since: start at the first block appended at or after since_ms (the time
 * index finds it without a scan); the length if none is. Past --to, the
 * range is empty. Returns 0 or an exit status.
 */
static int since_seek(kl_log *log, uint64_t since_ms, uint64_t *from, uint64_t *to) {
    int rc = kl_log_seek_time(log, since_ms, from);
    if (rc < 0)
        return cli_kl_error("read", rc, log);
    if (*to < *from)
        *to = *from;
    return 0;
}

/* Write blocks [from, to) of log, *from advancing. Returns an exit status. */
static int read_range(kl_log *log, uint64_t *from, uint64_t to, cli_record_fn emit) {
    kl_iter *it = NULL;
    int rc = kl_iter_open(log, *from, to, &it);
    if (rc < 0)
        return cli_kl_error("read", rc, log);
    kl_record rec;
    while ((rc = kl_iter_next(it, &rec)) == 1) {
        if (emit(&rec) < 0) {
            kl_iter_close(it);
            return cli_write_failed("read");
        }
        *from = rec.index + 1;
    }
    kl_iter_close(it);
    if (rc < 0)
        return cli_kl_error("read", rc, log); /* flushes what came before the damage first */
    return cli_flush() < 0 ? cli_write_failed("read") : 0;
}

/*
 * --follow: after the committed blocks, wait for new commits (kl_log_wait:
 * inotify on the header, no polling) and write them as they come, until
 * block `to` is written or stdout's reader goes away.
 */
static int follow_range(kl_log *log, uint64_t from, uint64_t to, cli_record_fn emit) {
    for (;;) {
        uint64_t length = kl_log_length(log);
        int rc = read_range(log, &from, to < length ? to : length, emit);
        if (rc != 0 || from >= to)
            return rc;
        rc = kl_log_wait(log, from, -1);
        if (rc < 0)
            return cli_kl_error("read", rc, log);
    }
}

static int run_read(const cli_command *cmd, const cli_args *a) {
    uint64_t from, to;
    cli_record_fn emit = NULL;
    uint64_t since_ms = 0;
    int rc = read_options(cmd, a, &from, &to, &emit);
    if (rc == 0)
        rc = since_option(cmd, a, &since_ms);
    if (rc != 0)
        return rc;
    kl_log *log = NULL;
    if ((rc = cli_open_readonly("read", a->pos[0], &log)) != 0)
        return rc;
    uint64_t length = kl_log_length(log);
    if (a->val[R_SINCE] && (rc = since_seek(log, since_ms, &from, &to)) != 0) {
        /* reported */
    } else if (from > length) {
        cli_error("read", "--from %" PRIu64 " is past the end (length %" PRIu64 ")", from, length);
        rc = CLI_EXIT_RUNTIME;
    } else {
        cli_stdout_init();
        if (a->val[R_FOLLOW])
            rc = follow_range(log, from, to, emit);
        else
            rc = read_range(log, &from, to < length ? to : length, emit);
    }
    kl_log_close(log);
    return rc;
}

const cli_command cli_cmd_get = {
    .name = "get",
    .summary = "write one block to stdout",
    .usage = "get DIR INDEX\n"
             "\n"
             "Write the bytes of block INDEX (counted from 0) to stdout, exactly, with no\n"
             "newline added. Fails (exit 1) if INDEX is not below the log's length.\n",
    .flags = NULL,
    .arg_names = {"DIR", "INDEX"},
    .min_args = 2,
    .max_args = 2,
    .run = run_get,
};

const cli_command cli_cmd_read = {
    .name = "read",
    .summary = "write a range of blocks to stdout",
    .usage = "read DIR [--from I | --since TIME] [--to J] [--format lines|len32|json]\n"
             "              [--follow]\n"
             "\n"
             "Write blocks I (default 0) up to but not including J (default: the length)\n"
             "to stdout. A J past the length is cut to the length; an I past it fails\n"
             "(exit 1), also with --follow.\n"
             "\n"
             "  --since TIME    start at the first block appended at or after TIME, found\n"
             "                  through the time index (no scan): RFC 3339 with a zone\n"
             "                  (2026-12-03T10:00:00Z, 2026-12-03T10:00:00.123+01:00) or\n"
             "                  Unix milliseconds (digits only)\n"
             "  --follow        then wait for new commits (by any process) and write them\n"
             "                  as they come, until block J (default: until interrupted)\n"
             "\n" CLI_RECORD_FORMATS_HELP,
    .flags = read_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_read,
};
