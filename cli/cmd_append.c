/*
 * cmd_append.c - `kappalog append DIR`: blocks from stdin (lines or len32)
 * appended in batches, each batch one atomic kl_log_append call.
 *
 * Invariants: blocks of the batch being built point into the input buffer
 * (input.c), never into copies, so the buffer is only moved or grown after
 * the batch was appended; a batch is appended when it has --batch records,
 * when stdin has nothing more ready (so a pipe or a terminal never waits for
 * a full batch), before the buffer is moved, and at the end of the input.
 * An --acks line is printed only after kl_log_append returned 0 for it.
 *
 * The one thing a reader would get wrong: malformed input is found while
 * complete records before it are still in the batch being built. They are
 * appended first, then the error is reported, so "N records appended before
 * it" is exact and committed data is never touched.
 */
#define _POSIX_C_SOURCE 200809L

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "input.h"
#include "len32.h"
#include "lines.h"
#include "util.h"

#define APPEND_DEFAULT_BATCH 1000
#define PROGRESS_INTERVAL_S  0.5

/*
 * --expect-length reads all of stdin before appending: at most
 * KL_MAX_APPEND_BYTES of input, plus one byte to see that there is more
 * (slurp).
 */
#define EXPECT_INPUT_CAP ((size_t)KL_MAX_APPEND_BYTES + 1)

/* A batch never holds more than the input buffer, which holds at most one block and its framing. */
_Static_assert(KL_MAX_BLOCK_BYTES + LEN32_PREFIX_BYTES <= KL_MAX_APPEND_BYTES,
               "a full input buffer must fit in one kl_log_append call");

enum { F_FORMAT, F_BATCH, F_ACKS, F_PROGRESS, F_EXPECT };

static const cli_flag append_flags[] = {
    [F_FORMAT] = {"--format", "lines|len32"},
    [F_BATCH] = {"--batch", "N"},
    [F_ACKS] = {"--acks", NULL},
    [F_PROGRESS] = {"--progress", NULL},
    [F_EXPECT] = {"--expect-length", "N"},
    {NULL, NULL},
};

typedef stream_status (*stream_fn)(stream_parser *, const uint8_t *, size_t, stream_record *);

typedef struct appender {
    kl_log *log;
    cli_input in;
    stream_parser parser;
    const char *format; /* "lines" or "len32", for messages */
    stream_fn next, end;
    kl_block *blocks; /* the batch being built: batch_max entries, pointing into in.buf */
    size_t count, batch_max;
    uint64_t records, bytes; /* appended (acknowledged) so far */
    int acks;
    int expect;          /* --expect-length: the whole input is one batch, or nothing */
    uint64_t expect_len; /* the length the log must have when it commits */
    size_t cap_blocks;   /* entries allocated in blocks (--expect-length grows it) */
    enum { PROGRESS_OFF, PROGRESS_LINES, PROGRESS_TERMINAL } progress;
    double started_s, progress_s;
} appender;

/* Room for one progress or summary line. */
#define PROGRESS_LINE_BYTES 160

/* Progress (an updated line on a terminal, else a line each time) or the final summary. */
static void print_progress(appender *ap, int final) {
    char line[PROGRESS_LINE_BYTES];
    double elapsed = cli_now_s() - ap->started_s;
    double rate = elapsed > 0 ? (double)ap->records / elapsed : 0;
    double mb = (double)ap->bytes / 1e6;
    if (final)
        snprintf(line, sizeof line,
                 "appended %" PRIu64 " records (%" PRIu64 " bytes) in %.3f s: %.0f records/s, "
                 "%.1f MB/s",
                 ap->records, ap->bytes, elapsed, rate, elapsed > 0 ? mb / elapsed : 0);
    else
        snprintf(line, sizeof line, "%" PRIu64 " records, %.1f MB, %.0f records/s", ap->records, mb,
                 rate);
    if (ap->progress == PROGRESS_TERMINAL && !final) {
        cli_status_line(line);
    } else {
        cli_status_clear();
        fprintf(stderr, "%s\n", line);
    }
}

/* Print the new length after a commit; stdout is flushed so a reader sees it now. */
static int print_ack(uint64_t length) {
    char line[32];
    int n = snprintf(line, sizeof line, "%" PRIu64 "\n", length);
    assert(n > 0 && (size_t)n < sizeof line);
    if (cli_write(line, (size_t)n) < 0 || cli_flush() < 0)
        return cli_write_failed("append");
    return 0;
}

/* Append the batch being built. Returns 0 or an exit status. */
static int flush_batch(appender *ap) {
    if (ap->count == 0)
        return 0;
    uint64_t first = 0, bytes = 0;
    int rc = kl_log_append(ap->log, ap->blocks, ap->count, &first);
    if (rc < 0)
        return cli_kl_error("append", rc, ap->log);
    for (size_t i = 0; i < ap->count; i++)
        bytes += ap->blocks[i].size;
    uint64_t length = first + ap->count;
    ap->records += ap->count;
    ap->bytes += bytes;
    ap->count = 0;
    if (ap->progress && cli_now_s() >= ap->progress_s) {
        print_progress(ap, 0);
        ap->progress_s = cli_now_s() + PROGRESS_INTERVAL_S;
    }
    return ap->acks ? print_ack(length) : 0;
}

/* Add a record to the batch, appending it when full. Returns 0 or an exit status. */
static int add_record(appender *ap, const stream_record *rec) {
    assert(ap->count < ap->batch_max);
    ap->blocks[ap->count].data = rec->data;
    ap->blocks[ap->count].size = rec->size;
    ap->count++;
    input_consume(&ap->in, rec->used);
    return ap->count == ap->batch_max ? flush_batch(ap) : 0;
}

/* Malformed input: append what came before it, then report it. Returns an exit status. */
static int malformed(appender *ap) {
    int rc = flush_batch(ap);
    if (rc != 0)
        return rc;
    assert(ap->parser.failed && ap->records == ap->parser.records);
    cli_error("append",
              "malformed %s input at byte %" PRIu64 ": %s (%" PRIu64 " records appended before it)",
              ap->format, ap->parser.bad_offset, ap->parser.why, ap->records);
    return CLI_EXIT_RUNTIME;
}

/* The input ended: its last record (lines without a final '\n'), the batch, or an error. */
static int finish_input(appender *ap) {
    stream_record rec;
    stream_status st =
        ap->end(&ap->parser, input_window(&ap->in), input_window_size(&ap->in), &rec);
    if (st == STREAM_BAD)
        return malformed(ap);
    if (st == STREAM_RECORD) {
        int rc = add_record(ap, &rec);
        if (rc != 0)
            return rc;
    }
    return flush_batch(ap);
}

/* The window ends inside a record: read more, appending the batch first when we must. */
static int read_more(appender *ap, size_t need) {
    int rc = 0;
    if (ap->count > 0 && !input_ready(&ap->in))
        rc = flush_batch(ap); /* nothing more is ready: do not hold records back */
    if (rc == 0 && input_wants_room(&ap->in, need)) {
        rc = flush_batch(ap); /* the batch points into the buffer about to move */
        if (rc == 0 && input_make_room(&ap->in, need) < 0) {
            cli_error("append", "no memory for a read buffer of %zu bytes", need);
            rc = CLI_EXIT_RUNTIME;
        }
    }
    if (rc != 0)
        return rc;
    long r = input_read(&ap->in);
    if (r < 0) { /* as for malformed input: the complete records before it are appended */
        rc = flush_batch(ap);
        if (rc != 0)
            return rc;
        cli_error("append", "reading stdin: %s (%" PRIu64 " records appended before it)",
                  strerror((int)-r), ap->records);
        return CLI_EXIT_RUNTIME;
    }
    return 0;
}

/* Frame and append every record of stdin. Returns an exit status. */
static int append_stream(appender *ap) {
    for (;;) {
        stream_record rec;
        stream_status st =
            ap->next(&ap->parser, input_window(&ap->in), input_window_size(&ap->in), &rec);
        int rc;
        if (st == STREAM_RECORD)
            rc = add_record(ap, &rec);
        else if (st == STREAM_BAD)
            return malformed(ap);
        else if (ap->in.eof)
            return finish_input(ap);
        else
            rc = read_more(ap, rec.need);
        if (rc != 0)
            return rc;
    }
}

/*
 * --expect-length: all of stdin into the buffer (one atomic batch at most
 * KL_MAX_APPEND_BYTES). The buffer may grow to one byte more than that
 * (EXPECT_INPUT_CAP): a read sees the end of the input only while there is
 * room to read into, so an input of exactly the maximum needs that byte to
 * be told from a longer one.
 */
static int slurp(appender *ap) {
    assert(ap->in.max_cap == EXPECT_INPUT_CAP);
    while (!ap->in.eof) {
        if (ap->in.end == ap->in.cap) {
            if (ap->in.cap == ap->in.max_cap) {
                assert(ap->in.end > KL_MAX_APPEND_BYTES);
                cli_error("append",
                          "--expect-length: the input is larger than one atomic append can be "
                          "(%u bytes); nothing was appended",
                          KL_MAX_APPEND_BYTES);
                return CLI_EXIT_RUNTIME;
            }
            if (input_make_room(&ap->in, ap->in.cap + 1) < 0) {
                cli_error("append", "no memory to hold the input (%zu bytes)", ap->in.cap);
                return CLI_EXIT_RUNTIME;
            }
        }
        long r = input_read(&ap->in);
        if (r < 0) {
            cli_error("append", "reading stdin: %s", strerror((int)-r));
            return CLI_EXIT_RUNTIME;
        }
    }
    assert(ap->in.end <= KL_MAX_APPEND_BYTES);
    return 0;
}

/* --expect-length: one more block for the single batch. Returns 0 or an exit status. */
static int keep_record(appender *ap, const stream_record *rec) {
    if (ap->count == ap->cap_blocks) {
        size_t cap = ap->cap_blocks * 2;
        kl_block *b = cap <= KL_MAX_APPEND_BLOCKS ? realloc(ap->blocks, cap * sizeof *b) : NULL;
        if (!b) {
            cli_error("append", "--expect-length: more than %zu blocks in one atomic append",
                      ap->cap_blocks);
            return CLI_EXIT_RUNTIME;
        }
        ap->blocks = b;
        ap->cap_blocks = cap;
    }
    ap->blocks[ap->count].data = rec->data;
    ap->blocks[ap->count].size = rec->size;
    ap->count++;
    input_consume(&ap->in, rec->used);
    return 0;
}

/*
 * --expect-length N: every record of stdin as one atomic batch, appended
 * only if the log's length is N when it commits (optimistic concurrency).
 * All or nothing: malformed input, or a length that is not N, appends none.
 */
static int append_expect(appender *ap) {
    int rc = slurp(ap);
    for (int done = 0; rc == 0 && !done;) {
        stream_record rec;
        stream_status st =
            ap->next(&ap->parser, input_window(&ap->in), input_window_size(&ap->in), &rec);
        if (st == STREAM_MORE) {
            st = ap->end(&ap->parser, input_window(&ap->in), input_window_size(&ap->in), &rec);
            done = 1;
        }
        if (st == STREAM_RECORD)
            rc = keep_record(ap, &rec);
        else if (st == STREAM_END)
            done = 1;
        if (st == STREAM_BAD) {
            cli_error("append",
                      "malformed %s input at byte %" PRIu64 ": %s (--expect-length: nothing "
                      "was appended)",
                      ap->format, ap->parser.bad_offset, ap->parser.why);
            rc = CLI_EXIT_RUNTIME;
        }
    }
    if (rc != 0)
        return rc;
    uint64_t first = 0, bytes = 0;
    int kr = kl_log_append_expect(ap->log, ap->blocks, ap->count, ap->expect_len, &first);
    if (kr < 0)
        return cli_kl_error("append", kr, ap->log); /* KL_ECONFLICT: exit status 3 */
    for (size_t i = 0; i < ap->count; i++)
        bytes += ap->blocks[i].size;
    ap->records = ap->count;
    ap->bytes = bytes;
    return ap->acks ? print_ack(first + ap->count) : 0;
}

/* Set up ap from the flags. Returns 0 or an exit status. */
static int configure(appender *ap, const cli_command *cmd, const cli_args *a) {
    uint64_t batch = APPEND_DEFAULT_BATCH;
    const char *format = a->val[F_FORMAT] ? a->val[F_FORMAT] : "lines";
    if (strcmp(format, "lines") == 0) {
        lines_init(&ap->parser, KL_MAX_BLOCK_BYTES);
        ap->next = lines_next;
        ap->end = lines_end;
    } else if (strcmp(format, "len32") == 0) {
        len32_init(&ap->parser, KL_MAX_BLOCK_BYTES);
        ap->next = len32_next;
        ap->end = len32_end;
    } else {
        return cli_usage_error(cmd, "--format '%s' is not lines or len32", format);
    }
    ap->format = format;
    if (a->val[F_BATCH] &&
        cli_flag_number(cmd, "--batch", a->val[F_BATCH], 0, 1, KL_MAX_APPEND_BLOCKS, &batch) != 0)
        return CLI_EXIT_USAGE;
    ap->batch_max = (size_t)batch;
    ap->acks = a->val[F_ACKS] != NULL;
    ap->expect = a->val[F_EXPECT] != NULL;
    if (ap->expect && a->val[F_BATCH])
        return cli_usage_error(cmd, "--expect-length appends all of stdin as one batch: drop "
                                    "--batch");
    if (ap->expect && cli_flag_number(cmd, "--expect-length", a->val[F_EXPECT], 0, 0, UINT64_MAX,
                                      &ap->expect_len) != 0)
        return CLI_EXIT_USAGE;
    ap->progress = isatty(STDERR_FILENO) ? PROGRESS_TERMINAL
                   : a->val[F_PROGRESS]  ? PROGRESS_LINES
                                         : PROGRESS_OFF;
    return 0;
}

static int run_append(const cli_command *cmd, const cli_args *a) {
    appender ap;
    memset(&ap, 0, sizeof ap);
    int rc = configure(&ap, cmd, a);
    if (rc != 0)
        return rc;
    ap.cap_blocks = ap.expect ? 64 : ap.batch_max;
    size_t in_cap = ap.expect ? EXPECT_INPUT_CAP : KL_MAX_BLOCK_BYTES + LEN32_PREFIX_BYTES;
    ap.blocks = malloc(ap.cap_blocks * sizeof *ap.blocks);
    if (!ap.blocks || input_init(&ap.in, STDIN_FILENO, in_cap)) {
        free(ap.blocks);
        cli_error("append", "no memory for a batch of %zu blocks", ap.batch_max);
        return CLI_EXIT_RUNTIME;
    }
    int kr = kl_log_open(a->pos[0], NULL, &ap.log);
    if (kr < 0) {
        rc = cli_kl_error("append", kr, NULL);
        goto out;
    }
    kl_info facts;
    if (kl_log_info(ap.log, &facts) < 0)
        memset(&facts, 0, sizeof facts);
    if (facts.recovery && facts.recovery[0])
        cli_error("warning", "opening %s: %s", a->pos[0], facts.recovery);
    if (facts.secret_unsafe)
        cli_error("warning",
                  "%s/secret is readable by other users: anyone who can read it can "
                  "sign as this log (chmod 600 it)",
                  a->pos[0]);
    ap.started_s = cli_now_s();
    ap.progress_s = ap.started_s + PROGRESS_INTERVAL_S;
    rc = ap.expect ? append_expect(&ap) : append_stream(&ap);
    kr = kl_log_close(ap.log);
    if (kr < 0 && rc == 0)
        rc = cli_kl_error("append", kr, NULL);
    if (rc == 0 && ap.progress)
        print_progress(&ap, 1);
    cli_status_clear(); /* after a quiet failure (EPIPE on --acks), leave no half line */
out:
    input_free(&ap.in);
    free(ap.blocks);
    return rc;
}

const cli_command cli_cmd_append = {
    .name = "append",
    .summary = "append blocks read from stdin",
    .usage = "append DIR [--format lines|len32] [--batch N | --expect-length N] [--acks]\n"
             "       [--progress] < input\n"
             "\n"
             "Append the blocks read from stdin to the log in DIR.\n"
             "\n"
             "  --format lines  each line without its newline is one block (default); empty\n"
             "                  lines are empty blocks, a last line without newline is a block\n"
             "  --format len32  each block is a 4-byte little-endian length, then its bytes\n"
             "  --batch N       up to N blocks per atomic commit (default 1000); a smaller\n"
             "                  batch is committed as soon as stdin has nothing more ready\n"
             "  --acks          after each commit, print the new length of the log on stdout\n"
             "  --progress      report progress on stderr (the default when it is a terminal)\n"
             "  --expect-length N\n"
             "                  append all of stdin as one atomic batch, only if the log's\n"
             "                  length is N when it commits (optimistic concurrency); if it\n"
             "                  is not, nothing is appended and the exit status is 3\n"
             "\n"
             "Malformed input: every complete block before it is appended, then the command\n"
             "fails (exit 1) naming the byte offset; committed blocks are never touched.\n"
             "With --expect-length, nothing is appended.\n",
    .flags = append_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_append,
};
