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
#include "len32.h"
#include "util.h"

/* The first buffer of `get`; it grows to the block's size when that is larger. */
#define GET_INITIAL_BYTES (64u * 1024u)

/* Room for the JSON fields before the data of a record. */
#define JSON_PREFIX_BYTES 128

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

typedef int (*write_fn)(const kl_record *rec);

static int write_lines(const kl_record *rec) {
    if (cli_write(rec->data, rec->size) < 0)
        return -1;
    return cli_write("\n", 1);
}

static int write_len32(const kl_record *rec) {
    uint8_t prefix[LEN32_PREFIX_BYTES];
    uint32_t n = (uint32_t)rec->size; /* a block is at most KL_MAX_BLOCK_BYTES */
    assert(rec->size <= KL_MAX_BLOCK_BYTES);
    prefix[0] = (uint8_t)n;
    prefix[1] = (uint8_t)(n >> 8);
    prefix[2] = (uint8_t)(n >> 16);
    prefix[3] = (uint8_t)(n >> 24);
    if (cli_write(prefix, sizeof prefix) < 0)
        return -1;
    return cli_write(rec->data, rec->size);
}

/* Append the literal string lit (a char array) at p. */
#define PUT_LITERAL(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/* {"index":N,"timestamp_ms":T,"size":S,"data":"..."} or "data_base64" if not UTF-8. */
static int write_json(const kl_record *rec) {
    char head[JSON_PREFIX_BYTES];
    const uint8_t *data = rec->data;
    int utf8 = cli_utf8_valid(data, rec->size);
    char *p = PUT_LITERAL(head, "{\"index\":");
    p = cli_put_u64(p, rec->index);
    p = PUT_LITERAL(p, ",\"timestamp_ms\":");
    p = cli_put_u64(p, rec->timestamp_ms);
    p = PUT_LITERAL(p, ",\"size\":");
    p = cli_put_u64(p, rec->size);
    p = utf8 ? PUT_LITERAL(p, ",\"data\":\"") : PUT_LITERAL(p, ",\"data_base64\":\"");
    assert((size_t)(p - head) <= sizeof head);
    if (cli_write(head, (size_t)(p - head)) < 0)
        return -1;
    if ((utf8 ? cli_json_escape(data, rec->size) : cli_json_base64(data, rec->size)) < 0)
        return -1;
    return cli_write("\"}\n", 3);
}

enum { R_FROM, R_TO, R_FORMAT };

static const cli_flag read_flags[] = {
    [R_FROM] = {"--from", "I"},
    [R_TO] = {"--to", "J"},
    [R_FORMAT] = {"--format", "lines|len32|json"},
    {NULL, NULL},
};

/* The flags of read: the range asked for and the writer. Returns 0 or an exit status. */
static int read_options(const cli_command *cmd, const cli_args *a, uint64_t *from, uint64_t *to,
                        write_fn *emit) {
    const char *format = a->val[R_FORMAT] ? a->val[R_FORMAT] : "lines";
    if (strcmp(format, "lines") == 0)
        *emit = write_lines;
    else if (strcmp(format, "len32") == 0)
        *emit = write_len32;
    else if (strcmp(format, "json") == 0)
        *emit = write_json;
    else
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

/* Write blocks [from, to) of log. Returns an exit status. */
static int read_range(kl_log *log, uint64_t from, uint64_t to, write_fn emit) {
    kl_iter *it = NULL;
    int rc = kl_iter_open(log, from, to, &it);
    if (rc < 0)
        return cli_kl_error("read", rc, log);
    kl_record rec;
    while ((rc = kl_iter_next(it, &rec)) == 1) {
        if (emit(&rec) < 0) {
            kl_iter_close(it);
            return cli_write_failed("read");
        }
    }
    kl_iter_close(it);
    if (rc < 0)
        return cli_kl_error("read", rc, log); /* flushes what came before the damage first */
    return cli_flush() < 0 ? cli_write_failed("read") : 0;
}

static int run_read(const cli_command *cmd, const cli_args *a) {
    uint64_t from, to;
    write_fn emit = NULL;
    int rc = read_options(cmd, a, &from, &to, &emit);
    if (rc != 0)
        return rc;
    kl_log *log = NULL;
    if ((rc = cli_open_readonly("read", a->pos[0], &log)) != 0)
        return rc;
    uint64_t length = kl_log_length(log);
    if (from > length) {
        cli_error("read", "--from %" PRIu64 " is past the end (length %" PRIu64 ")", from, length);
        rc = CLI_EXIT_RUNTIME;
    } else {
        cli_stdout_init();
        rc = read_range(log, from, to < length ? to : length, emit);
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
    .usage = "read DIR [--from I] [--to J] [--format lines|len32|json]\n"
             "\n"
             "Write blocks I (default 0) up to but not including J (default: the length)\n"
             "to stdout. A J past the length is cut to the length.\n"
             "\n"
             "  --format lines  each block, then a newline (default)\n"
             "  --format len32  each block as a 4-byte little-endian length, then its bytes\n"
             "  --format json   one object per line: {\"index\":N,\"timestamp_ms\":T,\"size\":S,\n"
             "                  \"data\":\"...\"}, or \"data_base64\" if the block is not UTF-8\n",
    .flags = read_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_read,
};
