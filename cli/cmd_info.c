/*
 * cmd_info.c - `kappalog info DIR [--json]`: the facts of kl_log_info, as
 * aligned "key: value" lines or as one JSON object.
 *
 * The JSON key names are a stable interface (scripts and tests read them):
 * length, byte_length, fork, segments, disk_bytes, fsync, segment_bytes,
 * compression, io_backend, io_fallback (only when io_uring was refused),
 * format_version, created_ms, created, last_commit_ms, last_commit.
 * Add keys; never rename one.
 *
 * The one thing a reader would get wrong: info opens the log read-only, so
 * it works beside a writer, reports the io backend of its own handle, and
 * runs no recovery (it shows what is committed).
 */
#define _POSIX_C_SOURCE 200809L

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "util.h"

/* Room for the longest value: a reason for an io_uring fallback, an RFC 3339 time, a number. */
#define INFO_VALUE_BYTES 160
#define INFO_MAX_FIELDS  32

typedef enum { FIELD_NUMBER, FIELD_STRING, FIELD_BOOL } field_kind;

typedef struct info_field {
    const char *key;
    field_kind kind;
    int json_only; /* a number the human form shows as the time next to it */
    char value[INFO_VALUE_BYTES];
} info_field;

typedef struct info_fields {
    info_field f[INFO_MAX_FIELDS];
    int n;
} info_fields;

static info_field *add(info_fields *fs, const char *key, field_kind kind) {
    assert(fs->n < INFO_MAX_FIELDS);
    info_field *f = &fs->f[fs->n++];
    f->key = key;
    f->kind = kind;
    f->json_only = 0;
    return f;
}

static void add_number(info_fields *fs, const char *key, uint64_t v) {
    snprintf(add(fs, key, FIELD_NUMBER)->value, INFO_VALUE_BYTES, "%" PRIu64, v);
}

static void add_string(info_fields *fs, const char *key, const char *v) {
    snprintf(add(fs, key, FIELD_STRING)->value, INFO_VALUE_BYTES, "%s", v);
}

/* "created_ms" (JSON only) and "created" (RFC 3339). */
static void add_time(info_fields *fs, const char *key, const char *key_ms, uint64_t ms) {
    add_number(fs, key_ms, ms);
    fs->f[fs->n - 1].json_only = 1;
    cli_rfc3339(ms, add(fs, key, FIELD_STRING)->value);
}

static void fsync_text(const kl_config *c, char *out, size_t cap) {
    if (c->fsync_mode == KL_FSYNC_INTERVAL)
        snprintf(out, cap, "interval:%u", c->fsync_interval_ms);
    else
        snprintf(out, cap, "%s", c->fsync_mode == KL_FSYNC_NEVER ? "never" : "always");
}

static void codec_text(const kl_config *c, char *out, size_t cap) {
    if (c->codec == KL_CODEC_NONE)
        snprintf(out, cap, "none");
    else if (c->codec_level == 0)
        snprintf(out, cap, "zstd");
    else
        snprintf(out, cap, "zstd:%d", c->codec_level);
}

/* Bytes as lowercase hex. */
static void add_hex(info_fields *fs, const char *key, const unsigned char *p, size_t n) {
    char *out = add(fs, key, FIELD_STRING)->value;
    for (size_t i = 0; i < n && 2 * i + 2 < INFO_VALUE_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static void collect(const kl_info *in, info_fields *fs) {
    fs->n = 0;
    add_number(fs, "length", in->length);
    add_number(fs, "byte_length", in->byte_length);
    add_number(fs, "fork", in->fork);
    add_hex(fs, "key", in->key, sizeof in->key);
    add_hex(fs, "discovery_key", in->discovery_key, sizeof in->discovery_key);
    add_hex(fs, "public_key", in->public_key, sizeof in->public_key);
    add_hex(fs, "tree_hash", in->tree_hash, sizeof in->tree_hash);
    if (in->signature_len > 0)
        add_hex(fs, "signature", in->signature, in->signature_len);
    else /* a read-only look at a log whose writer stopped before signing its last commit */
        snprintf(add(fs, "signature", FIELD_NUMBER)->value, INFO_VALUE_BYTES, "null");
    add_string(fs, "core", in->compat ? "compat" : "default");
    add_string(fs, "writable", in->writable ? "yes" : "no (no usable secret key)");
    if (in->secret_unsafe)
        add_string(fs, "warning", "the secret key file is readable by other users (chmod 600 it)");
    add_number(fs, "segments", in->segments);
    add_number(fs, "disk_bytes", in->disk_bytes);
    fsync_text(&in->config, add(fs, "fsync", FIELD_STRING)->value, INFO_VALUE_BYTES);
    add_number(fs, "segment_bytes", in->config.segment_bytes);
    codec_text(&in->config, add(fs, "compression", FIELD_STRING)->value, INFO_VALUE_BYTES);
    add_string(fs, "io_backend", in->io_backend ? in->io_backend : "unknown");
    if (in->io_fallback && *in->io_fallback) /* io_uring refused: say why, once, here */
        add_string(fs, "io_fallback", in->io_fallback);
    add_number(fs, "format_version", in->format_version);
    add_time(fs, "created", "created_ms", in->created_ms);
    add_time(fs, "last_commit", "last_commit_ms", in->last_commit_ms);
}

static void print_human(const info_fields *fs) {
    int width = 0;
    for (int i = 0; i < fs->n; i++)
        if (!fs->f[i].json_only && (int)strlen(fs->f[i].key) > width)
            width = (int)strlen(fs->f[i].key);
    for (int i = 0; i < fs->n; i++) {
        const info_field *f = &fs->f[i];
        if (f->json_only)
            continue;
        const char *v = f->kind != FIELD_BOOL ? f->value : f->value[0] == 't' ? "yes" : "no";
        printf("%s:%*s %s\n", f->key, width - (int)strlen(f->key), "", v);
    }
}

/* One object on one line. 0 or -1 (errno set). */
static int print_json(const info_fields *fs) {
    for (int i = 0; i < fs->n; i++) {
        const info_field *f = &fs->f[i];
        const char *quote = f->kind == FIELD_STRING ? "\"" : "";
        if (printf("%s\"%s\":%s", i ? "," : "{", f->key, quote) < 0 ||
            cli_json_escape((const uint8_t *)f->value, strlen(f->value)) < 0 ||
            cli_write(quote, strlen(quote)) < 0)
            return -1;
    }
    return cli_write("}\n", 2);
}

static int run_info(const cli_command *cmd, const cli_args *a) {
    (void)cmd;
    kl_log *log = NULL;
    int rc = cli_open_readonly("info", a->pos[0], &log);
    if (rc != 0)
        return rc;
    kl_info info;
    int kr = kl_log_info(log, &info);
    if (kr < 0) {
        rc = cli_kl_error("info", kr, log);
    } else {
        info_fields fs;
        collect(&info, &fs); /* before close: io_backend points into the handle */
        if (a->val[0])
            rc = print_json(&fs);
        else
            print_human(&fs);
        if (rc < 0 || cli_flush() < 0)
            rc = cli_write_failed("info");
    }
    kl_log_close(log);
    return rc;
}

static const cli_flag info_flags[] = {
    {"--json", NULL},
    {NULL, NULL},
};

const cli_command cli_cmd_info = {
    .name = "info",
    .summary = "show the facts of a log",
    .usage = "info DIR [--json]\n"
             "\n"
             "Show the length, byte length, fork, the core's key, discovery key, public key,\n"
             "tree hash and signature, its kind (core) and whether this log can append\n"
             "(writable), segments, bytes on disk, settings (fsync, segment size,\n"
             "compression), I/O backend, format version, and the creation and last\n"
             "commit times (UTC).\n"
             "\n"
             "  --json  one JSON object, with created_ms and last_commit_ms in Unix ms\n",
    .flags = info_flags,
    .arg_names = {"DIR"},
    .min_args = 1,
    .max_args = 1,
    .run = run_info,
};
