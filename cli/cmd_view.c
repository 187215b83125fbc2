/*
 * cmd_view.c - `kappalog view ACTION DIR ...`: the materialized views of a
 * log (create, update, get, scan, list, drop, rebuild), over the public
 * kl_view_* calls (docs/VIEWS.md).
 *
 * The action is the first positional argument; each action declares how
 * many more it takes and which of the command's flags it accepts, so
 * `view get --json` is a usage error (exit 2) like an unknown flag.
 * `view get` of an absent key prints nothing at all and exits 1, so a
 * script can tell "absent" from a value without parsing stderr.
 *
 * The one thing a reader would get wrong: `view update --follow` runs
 * until SIGINT or SIGTERM, which only set a flag the library looks at
 * between batches; it then commits what it applied, prints the summary
 * (with --progress or on a terminal) and exits 0. A SIGKILL instead loses
 * at most the open transaction, which the next update applies again.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"
#include "util.h"

enum { F_KIND, F_KEY, F_VALUE, F_FOLLOW, F_MAX, F_PROGRESS, F_PREFIX, F_LIMIT, F_JSON, F_SHADOW };

static const cli_flag view_flags[] = {
    [F_KIND] = {"--kind", "kv|count|sum"},
    [F_KEY] = {"--key", "FIELD"},
    [F_VALUE] = {"--value", "FIELD"},
    [F_FOLLOW] = {"--follow", NULL},
    [F_MAX] = {"--max", "N"},
    [F_PROGRESS] = {"--progress", NULL},
    [F_PREFIX] = {"--prefix", "P"},
    [F_LIMIT] = {"--limit", "N"},
    [F_JSON] = {"--json", NULL},
    [F_SHADOW] = {"--shadow", NULL},
    {NULL, NULL},
};

#define FLAG(f)             (1u << (f))
#define PROGRESS_INTERVAL_S 0.25
#define PROGRESS_LINE_BYTES 200
#define VIEW_WHAT_BYTES     32 /* "view rebuild" */

typedef struct view_action {
    const char *name;
    const char *args; /* after DIR, for messages */
    int nargs;        /* positional arguments after the action */
    unsigned flags;   /* FLAG() of each flag it accepts */
    int (*run)(const cli_command *cmd, const cli_args *a, const char *what);
} view_action;

/* ---- progress of update and rebuild -------------------------------------------------------- */

typedef struct view_progress {
    const char *name;
    enum { PROGRESS_OFF, PROGRESS_LINES, PROGRESS_TERMINAL } mode;
    double started_s, next_s;
    uint64_t done;
} view_progress;

static void progress_init(view_progress *p, const char *name, int forced) {
    p->name = name;
    p->mode = isatty(STDERR_FILENO) ? PROGRESS_TERMINAL : forced ? PROGRESS_LINES : PROGRESS_OFF;
    p->started_s = cli_now_s();
    p->next_s = p->started_s + PROGRESS_INTERVAL_S;
    p->done = 0;
}

static double rate(const view_progress *p) {
    double secs = cli_now_s() - p->started_s;
    return secs > 0 ? (double)p->done / secs : 0.0;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total) {
    view_progress *p = ctx;
    p->done = done;
    double now = cli_now_s();
    if (p->mode == PROGRESS_OFF || now < p->next_s)
        return;
    p->next_s = now + PROGRESS_INTERVAL_S;
    char line[PROGRESS_LINE_BYTES];
    snprintf(line, sizeof line,
             "view %s: %" PRIu64 " of %" PRIu64 " records (%.0f%%), %.0f records/s", p->name, done,
             total, total ? 100.0 * (double)done / (double)total : 100.0, rate(p));
    if (p->mode == PROGRESS_TERMINAL) {
        cli_status_line(line);
    } else {
        cli_status_clear();
        fprintf(stderr, "%s\n", line);
    }
}

/* The last line: what was done and how fast, then where the view stands. */
static void progress_summary(view_progress *p, const char *dir, const char *verb) {
    if (p->mode == PROGRESS_OFF)
        return;
    cli_status_clear();
    double secs = cli_now_s() - p->started_s;
    kl_view_info vi;
    uint64_t skipped = 0;
    int have = kl_view_stat(dir, p->name, &vi) == 0;
    for (int i = 0; have && i < KL_VIEW_SKIPS; i++)
        skipped += vi.skipped[i];
    fprintf(stderr, "view %s: %s %" PRIu64 " records in %.3f s: %.0f records/s", p->name, verb,
            p->done, secs, rate(p));
    if (have)
        fprintf(stderr,
                "; version %" PRIu64 " at block %" PRIu64 " of %" PRIu64 ", %" PRIu64
                " keys, %" PRIu64 " records skipped",
                vi.version, vi.position, vi.log_length, vi.entries, skipped);
    fputc('\n', stderr);
}

/* ---- create, update, rebuild, drop ------------------------------------------------------- */

static int parse_kind(const char *text, kl_view_kind *kind) {
    static const kl_view_kind kinds[] = {KL_VIEW_KV, KL_VIEW_COUNT, KL_VIEW_SUM};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(text, kl_view_kind_name(kinds[i])) == 0) {
            *kind = kinds[i];
            return 0;
        }
    return -1;
}

static int run_create(const cli_command *cmd, const cli_args *a, const char *what) {
    kl_view_kind kind;
    if (!a->val[F_KIND])
        return cli_usage_error(cmd, "needs --kind kv|count|sum");
    if (parse_kind(a->val[F_KIND], &kind) < 0)
        return cli_usage_error(cmd, "--kind '%s' is not kv, count or sum", a->val[F_KIND]);
    if (!a->val[F_KEY])
        return cli_usage_error(cmd, "needs --key FIELD");
    if (kind == KL_VIEW_SUM && !a->val[F_VALUE])
        return cli_usage_error(cmd, "a sum view needs --value FIELD");
    if (kind != KL_VIEW_SUM && a->val[F_VALUE])
        return cli_usage_error(cmd, "--value is only for a sum view");
    int rc = kl_view_create(a->pos[1], a->pos[2], kind, a->val[F_KEY], a->val[F_VALUE]);
    return rc < 0 ? cli_kl_error(what, rc, NULL) : CLI_EXIT_OK;
}

static volatile int stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

/* --follow: SIGINT and SIGTERM end the run cleanly (the library checks the flag). */
static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int run_update(const cli_command *cmd, const cli_args *a, const char *what) {
    kl_run_options o;
    memset(&o, 0, sizeof o);
    if (a->val[F_MAX] &&
        cli_flag_number(cmd, "--max", a->val[F_MAX], 0, 1, UINT64_MAX, &o.max_records) != 0)
        return CLI_EXIT_USAGE;
    view_progress p;
    progress_init(&p, a->pos[2], a->val[F_PROGRESS] != NULL);
    o.follow = a->val[F_FOLLOW] != NULL;
    o.stop = &stop_flag;
    o.progress = on_progress;
    o.progress_ctx = &p;
    if (o.follow)
        catch_stop_signals();
    uint64_t applied = 0;
    int rc = kl_view_update(a->pos[1], a->pos[2], &o, &applied);
    p.done = applied;
    if (rc < 0)
        return cli_kl_error(what, rc, NULL);
    progress_summary(&p, a->pos[1], "applied");
    return CLI_EXIT_OK;
}

static int run_rebuild(const cli_command *cmd, const cli_args *a, const char *what) {
    (void)cmd;
    kl_run_options o;
    memset(&o, 0, sizeof o);
    view_progress p;
    progress_init(&p, a->pos[2], a->val[F_PROGRESS] != NULL);
    o.progress = on_progress;
    o.progress_ctx = &p;
    unsigned flags = a->val[F_SHADOW] ? KL_REBUILD_SHADOW : 0;
    int rc = kl_view_rebuild(a->pos[1], a->pos[2], flags, &o);
    if (rc < 0)
        return cli_kl_error(what, rc, NULL);
    progress_summary(&p, a->pos[1], flags ? "rebuilt (shadow, switched)" : "rebuilt");
    return CLI_EXIT_OK;
}

static int run_drop(const cli_command *cmd, const cli_args *a, const char *what) {
    (void)cmd;
    int rc = kl_view_drop(a->pos[1], a->pos[2]);
    return rc < 0 ? cli_kl_error(what, rc, NULL) : CLI_EXIT_OK;
}

/* ---- get, scan ------------------------------------------------------------------------- */

static int run_get(const cli_command *cmd, const cli_args *a, const char *what) {
    (void)cmd;
    char *value = NULL;
    size_t n = 0;
    int rc = kl_view_get(a->pos[1], a->pos[2], a->pos[3], strlen(a->pos[3]), &value, &n);
    if (rc < 0)
        return cli_kl_error(what, rc, NULL);
    if (rc == 0)
        return CLI_EXIT_RUNTIME; /* absent: no output at all */
    cli_stdout_init();
    int w = cli_write(value, n) < 0 || cli_write("\n", 1) < 0 || cli_flush() < 0;
    free(value);
    return w ? cli_write_failed(what) : CLI_EXIT_OK;
}

typedef struct scan_out {
    kl_view_kind kind;
    int json;
    uint64_t count;
    int failed; /* a write to stdout failed (errno set) */
} scan_out;

/* Write a C string to stdout. 0 or -1 (errno set). */
static int put(const char *text) {
    return cli_write(text, strlen(text));
}

/* A JSON string, or for bytes that are not UTF-8 a "key_base64" member. 0 or -1. */
static int json_key(const void *key, size_t n) {
    const uint8_t *k = key;
    int utf8 = cli_utf8_valid(k, n);
    if (put(utf8 ? "\"key\":\"" : "\"key_base64\":\"") < 0)
        return -1;
    if ((utf8 ? cli_json_escape(k, n) : cli_json_base64(k, n)) < 0)
        return -1;
    return put("\"");
}

/* A value as JSON: the record of a kv view as it is (one JSON object), numbers bare. */
static int json_value(const scan_out *s, const char *v, size_t n) {
    int number_ok = n > 0 && strspn(v, "0123456789+-.e") == n; /* not inf or nan */
    if (s->kind == KL_VIEW_KV || number_ok)
        return put("\"value\":") < 0 ? -1 : cli_write(v, n);
    return printf("\"value\":\"%.*s\"", (int)n, v) < 0 ? -1 : 0;
}

static int scan_entry(void *ctx, const void *key, size_t key_len, const void *val, size_t n) {
    scan_out *s = ctx;
    int failed;
    if (s->json)
        failed = put(s->count ? ",\n{" : "\n{") < 0 || json_key(key, key_len) < 0 || put(",") < 0 ||
                 json_value(s, val, n) < 0 || put("}") < 0;
    else
        failed =
            cli_write(key, key_len) < 0 || put("\t") < 0 || cli_write(val, n) < 0 || put("\n") < 0;
    s->count++;
    s->failed = failed;
    return failed;
}

static int run_scan(const cli_command *cmd, const cli_args *a, const char *what) {
    uint64_t limit = 0;
    if (a->val[F_LIMIT] &&
        cli_flag_number(cmd, "--limit", a->val[F_LIMIT], 0, 1, UINT64_MAX, &limit) != 0)
        return CLI_EXIT_USAGE;
    kl_view_info vi;
    int rc = kl_view_stat(a->pos[1], a->pos[2], &vi);
    if (rc < 0)
        return cli_kl_error(what, rc, NULL);
    const char *prefix = a->val[F_PREFIX] ? a->val[F_PREFIX] : "";
    scan_out s = {.kind = vi.kind, .json = a->val[F_JSON] != NULL};
    cli_stdout_init();
    if (s.json && put("[") < 0)
        return cli_write_failed(what);
    rc = kl_view_scan(a->pos[1], a->pos[2], prefix, strlen(prefix), limit, scan_entry, &s);
    if (s.failed)
        return cli_write_failed(what);
    if (rc < 0)
        return cli_kl_error(what, rc, NULL);
    if ((s.json && put(s.count ? "\n]\n" : "]\n") < 0) || cli_flush() < 0)
        return cli_write_failed(what);
    return CLI_EXIT_OK;
}

/* ---- list ------------------------------------------------------------------------------ */

static uint64_t skipped_total(const kl_view_info *v) {
    uint64_t n = 0;
    for (int i = 0; i < KL_VIEW_SKIPS; i++)
        n += v->skipped[i];
    return n;
}

static uint64_t lag(const kl_view_info *v) {
    return v->log_length > v->position ? v->log_length - v->position : 0;
}

static void print_list(const kl_view_info *vs, size_t n) {
    printf("%-20s %-5s %7s %12s %12s %10s %10s  %s\n", "NAME", "KIND", "VERSION", "POSITION", "LAG",
           "ENTRIES", "SKIPPED", "SHADOW");
    for (size_t i = 0; i < n; i++) {
        const kl_view_info *v = &vs[i];
        if (v->damaged) {
            printf("%-20s damaged: it cannot be read; 'view drop' removes it\n", v->name);
            continue;
        }
        char shadow[96] = "-";
        if (v->shadow_version)
            snprintf(shadow, sizeof shadow, "v%" PRIu64 " at %" PRIu64 "%s", v->shadow_version,
                     v->shadow_position, v->rebuilding ? " (rebuilding)" : " (interrupted)");
        const char *note =
            v->fork != v->log_fork && v->position > 0
                ? "  fork changed: the log was truncated since; 'view rebuild' makes it again"
            : v->diverged ? "  diverged: the log lost blocks it applied, and others took their "
                            "places; 'view rebuild' makes it again"
            : v->position > v->log_length
                ? "  past the log's end: the log lost blocks it applied; 'view rebuild' makes "
                  "it again"
                : "";
        printf("%-20s %-5s %7" PRIu64 " %12" PRIu64 " %12" PRIu64 " %10" PRIu64 " %10" PRIu64
               "  %s%s\n",
               v->name, kl_view_kind_name(v->kind), v->version, v->position, lag(v), v->entries,
               skipped_total(v), shadow, note);
    }
}

/* ,"name":"escaped s" (without the comma first). 0 or -1. */
static int json_str(const char *name, const char *s, int comma) {
    if (printf("%s\"%s\":\"", comma ? "," : "", name) < 0 ||
        cli_json_escape((const uint8_t *)s, strlen(s)) < 0)
        return -1;
    return put("\"");
}

static int print_list_json_one(const kl_view_info *v) {
    if (v->damaged)
        return json_str("name", v->name, 0) || put(",\"damaged\":true") < 0 ? -1 : 0;
    if (json_str("name", v->name, 0) || json_str("kind", kl_view_kind_name(v->kind), 1) ||
        json_str("key", v->key_path, 1) || json_str("value", v->value_path, 1))
        return -1;
    if (printf(",\"version\":%" PRIu64 ",\"position\":%" PRIu64 ",\"length\":%" PRIu64
               ",\"lag\":%" PRIu64 ",\"fork\":%" PRIu64 ",\"log_fork\":%" PRIu64
               ",\"diverged\":%s,\"entries\":%" PRIu64 ",\"skipped\":{",
               v->version, v->position, v->log_length, lag(v), v->fork, v->log_fork,
               v->diverged ? "true" : "false", v->entries) < 0)
        return -1;
    for (int k = 0; k < KL_VIEW_SKIPS; k++)
        if (printf("%s\"%s\":%" PRIu64, k ? "," : "", kl_view_skip_name((kl_view_skip)k),
                   v->skipped[k]) < 0)
            return -1;
    int w;
    if (v->shadow_version)
        w = printf("},\"shadow\":{\"version\":%" PRIu64 ",\"position\":%" PRIu64
                   ",\"rebuilding\":%s}",
                   v->shadow_version, v->shadow_position, v->rebuilding ? "true" : "false");
    else
        w = printf("},\"shadow\":null");
    return w < 0 ? -1 : 0;
}

static int print_list_json(const kl_view_info *vs, size_t n) {
    if (put("[") < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (put(i ? ",\n{" : "\n{") < 0 || print_list_json_one(&vs[i]) < 0 || put("}") < 0)
            return -1;
    return put(n ? "\n]\n" : "]\n");
}

static int run_list(const cli_command *cmd, const cli_args *a, const char *what) {
    (void)cmd;
    kl_view_info *vs = NULL;
    size_t n = 0;
    int rc = kl_view_list(a->pos[1], &vs, &n);
    if (rc < 0)
        return cli_kl_error(what, rc, NULL);
    cli_stdout_init();
    int w = 0;
    if (a->val[F_JSON])
        w = print_list_json(vs, n);
    else
        print_list(vs, n);
    free(vs);
    return w < 0 || cli_flush() < 0 ? cli_write_failed(what) : CLI_EXIT_OK;
}

/* ---- the command ------------------------------------------------------------------------- */

static const view_action actions[] = {
    {"create", "NAME", 2, FLAG(F_KIND) | FLAG(F_KEY) | FLAG(F_VALUE), run_create},
    {"update", "NAME", 2, FLAG(F_FOLLOW) | FLAG(F_MAX) | FLAG(F_PROGRESS), run_update},
    {"get", "NAME KEY", 3, 0, run_get},
    {"scan", "NAME", 2, FLAG(F_PREFIX) | FLAG(F_LIMIT) | FLAG(F_JSON), run_scan},
    {"list", "", 1, FLAG(F_JSON), run_list},
    {"drop", "NAME", 2, 0, run_drop},
    {"rebuild", "NAME", 2, FLAG(F_SHADOW) | FLAG(F_PROGRESS), run_rebuild},
};

#define NACTIONS (sizeof actions / sizeof actions[0])

static int run_view(const cli_command *cmd, const cli_args *a) {
    const view_action *act = NULL;
    for (size_t i = 0; i < NACTIONS && !act; i++)
        if (strcmp(actions[i].name, a->pos[0]) == 0)
            act = &actions[i];
    if (!act)
        return cli_usage_error(cmd,
                               "unknown action '%s' (create, update, get, scan, list, drop, "
                               "rebuild)",
                               a->pos[0]);
    /* errors name the action: "kappalog: view get: ..." (see 'kappalog view get --help') */
    char what[VIEW_WHAT_BYTES];
    snprintf(what, sizeof what, "view %s", act->name);
    cli_command sub = *cmd;
    sub.name = what;
    if (a->npos - 1 != act->nargs)
        return cli_usage_error(&sub, "takes DIR%s%s", *act->args ? " " : "", act->args);
    for (int f = 0; view_flags[f].name; f++)
        if (a->val[f] && !(act->flags & FLAG(f)))
            return cli_usage_error(&sub, "takes no %s", view_flags[f].name);
    return act->run(&sub, a, what);
}

const cli_command cli_cmd_view = {
    .name = "view",
    .summary = "materialized views of JSON records (kv, count, sum) in LMDB",
    .usage = "view ACTION DIR [NAME [KEY]] [flags]\n"
             "\n"
             "  view create DIR NAME --kind kv|count|sum --key FIELD [--value FIELD]\n"
             "  view update DIR NAME [--follow] [--max N] [--progress]\n"
             "  view get DIR NAME KEY\n"
             "  view scan DIR NAME [--prefix P] [--limit N] [--json]\n"
             "  view list DIR [--json]\n"
             "  view drop DIR NAME\n"
             "  view rebuild DIR NAME [--shadow] [--progress]\n"
             "\n"
             "A view folds the JSON records of the log in DIR into LMDB, under DIR/views/NAME:\n"
             "kv keeps the latest record of each key, count the number of records per key,\n"
             "sum the sum of the number at --value per key (exact while every value is an\n"
             "integer and the sum fits in 64 bits; a double from then on). FIELD is a dotted\n"
             "path (user, ctx.user.id). A record that is not a\n"
             "JSON object, lacks a field or has no number is skipped and counted, never an\n"
             "error. An update applies every record exactly once, even if it is killed: its\n"
             "position in the log is committed with the view's changes.\n"
             "\n"
             "  update    apply the records appended since the last update; --follow keeps\n"
             "            applying new ones until SIGINT/SIGTERM; --max stops after N records\n"
             "  get       print the value of KEY: the record (kv) or the number; exit 1 and\n"
             "            print nothing if KEY is absent\n"
             "  scan      print KEY<tab>VALUE lines in key order, or a JSON array (--json)\n"
             "  list      name, kind, version, position, lag, keys, skipped records, and a\n"
             "            rebuild in progress\n"
             "  rebuild   replay the log from block 0 into a new version: at once (readers see\n"
             "            it refill), or --shadow: beside the live version, which keeps serving\n"
             "            reads, switched in atomically once it has caught up\n"
             "  --progress  progress on stderr (the default when it is a terminal), and the rate\n",
    .flags = view_flags,
    .arg_names = {"ACTION", "DIR", "NAME", "KEY"},
    .min_args = 1,
    .max_args = 4,
    .run = run_view,
};
