/*
 * view.c - the built-in views' life (kappalog.h, "Built-in views";
 * docs/VIEWS.md): create, update (once or following), get, scan, stat,
 * list, drop, and rebuild, plain or in the shadow of the live version.
 *
 * Each view is a processor (processor.c) with the fold of view_fold.c,
 * over the one log whose directory holds the view, in the environment of
 * its live version (view_store.c). Readers and updaters find the live
 * version through view.meta each time they open, so a switch takes effect
 * for everyone who opens after it; a handle opened before keeps reading
 * the version it opened (its files stay readable after they are removed).
 *
 * Invariants: only a holder of the view's lock creates, resumes or
 * removes versions above the live one, or replaces view.meta; the new
 * version is synced before view.meta names it; a version is removed only
 * after view.meta stopped naming it.
 *
 * The one thing a reader would get wrong: opening the live version can
 * race a switch (view.meta read, then the old version removed before its
 * files are opened). Opening never creates a version's files, so the race
 * shows as "not found"; view.meta is then read again and the new version
 * opened (a few tries, VIEW_OPEN_TRIES, since each try follows a switch).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/util.h"
#include "processor_internal.h"
#include "view_fold.h"
#include "view_store.h"

#define VIEW_OPEN_TRIES 8
#define VIEW_WAIT_MS    200 /* a follower looks at view.meta (a switch, a drop) this often */

/* An open view: its log, fold, processor, and which version it is. */
typedef struct view_handle {
    const char *dir, *name;
    kl_log *log;
    vs_meta meta;
    view_fold *fold;
    kl_processor *proc;
    uint64_t version;
    char vdir[VS_PATH_BYTES];
} view_handle;

static int open_log(const char *dir, kl_log **out) {
    kl_open_options o;
    kl_open_options_default(&o);
    o.flags |= KL_OPEN_READONLY; /* views are updated beside the appender */
    return kl_log_open(dir, &o, out);
}

/* Open version v of the view (must exist) as h->proc. */
static int open_version(view_handle *h, uint64_t v, unsigned flags) {
    char vdir[VS_PATH_BYTES];
    kl_processor_def def;
    vs_version_dir(vdir, h->vdir, v);
    view_fold_def(h->fold, &def);
    int rc = proc_open(vdir, &h->log, 1, &def, flags, &h->proc);
    if (rc == 0)
        h->version = v;
    return rc;
}

/* Do version v's files exist? (KL_ENOTFOUND from opening it may also be a position past the end.)
 */
static int version_exists(const view_handle *h, uint64_t v) {
    char vdir[VS_PATH_BYTES], data[VS_PATH_BYTES];
    vs_version_dir(vdir, h->vdir, v);
    vs_path(data, "%s/data.mdb", vdir);
    return access(data, F_OK) == 0;
}

/* Open the live version, following switches that race the open. */
static int open_live(view_handle *h) {
    int rc = KL_ENOTFOUND;
    for (int i = 0; i < VIEW_OPEN_TRIES && rc == KL_ENOTFOUND; i++) {
        uint64_t before = h->meta.live;
        rc = open_version(h, h->meta.live, PROC_MUST_EXIST);
        if (rc != KL_ENOTFOUND || version_exists(h, before))
            break;
        int mrc = vs_meta_read(h->dir, h->name, &h->meta);
        if (mrc < 0)
            return mrc;
        if (h->meta.live == before)
            return kl_errf(KL_ECORRUPT,
                           "view '%s': its live version %" PRIu64 " is missing; rebuild it",
                           h->name, before);
    }
    return rc;
}

static void view_close(view_handle *h) {
    kl_processor_close(h->proc);
    view_fold_free(h->fold);
    kl_log_close(h->log);
    memset(h, 0, sizeof *h);
}

/* Read the view's meta, open its log and make its fold (no version opened yet). */
static int view_prepare(view_handle *h, const char *dir, const char *name) {
    memset(h, 0, sizeof *h);
    h->dir = dir;
    h->name = name;
    int rc = vs_check(dir, name);
    if (rc == 0)
        rc = vs_meta_read(dir, name, &h->meta);
    if (rc == 0)
        rc = open_log(dir, &h->log);
    if (rc == 0)
        rc = view_fold_new(&h->meta, &h->fold);
    vs_view_dir(h->vdir, dir, name);
    return rc;
}

/* Remove the versions below the live one (a crash after a switch leaves them). */
static void remove_old_versions(const view_handle *h) {
    uint64_t vs[VS_MAX_VERSIONS];
    size_t n = 0;
    if (vs_versions(h->vdir, vs, VS_MAX_VERSIONS, &n) < 0)
        return;
    for (size_t i = 0; i < n && vs[i] < h->meta.live; i++)
        vs_version_remove(h->vdir, vs[i]);
}

/* ---- create, drop ---------------------------------------------------------------------- */

typedef struct create_ctx {
    kl_log *log;
    view_fold *fold;
} create_ctx;

static int init_version(void *ctx, const char *vdir) {
    create_ctx *c = ctx;
    kl_processor_def def;
    kl_processor *p = NULL;
    view_fold_def(c->fold, &def);
    int rc = proc_open(vdir, &c->log, 1, &def, 0, &p);
    if (rc == 0)
        rc = proc_sync(p);
    kl_processor_close(p);
    return rc;
}

int kl_view_create(const char *dir, const char *name, kl_view_kind kind, const char *key_path,
                   const char *value_path) {
    int rc = vs_check(dir, name);
    if (rc == 0)
        rc = view_def_check(kind, key_path, value_path);
    if (rc < 0)
        return rc;
    vs_meta m = {.kind = kind, .live = 1, .created_ms = kl_now_ms()};
    snprintf(m.key_path, sizeof m.key_path, "%s", key_path);
    snprintf(m.value_path, sizeof m.value_path, "%s", value_path ? value_path : "");
    create_ctx c = {0};
    rc = open_log(dir, &c.log);
    if (rc == 0)
        rc = view_fold_new(&m, &c.fold);
    if (rc == 0)
        rc = vs_create(dir, name, &m, init_version, &c);
    view_fold_free(c.fold);
    kl_log_close(c.log);
    return rc;
}

int kl_view_drop(const char *dir, const char *name) {
    int rc = vs_check(dir, name);
    return rc < 0 ? rc : vs_drop(dir, name);
}

/* ---- update ---------------------------------------------------------------------------- */

/* Progress of several processor runs as one: `base` records done before this run. */
typedef struct progress_sum {
    const kl_run_options *o;
    uint64_t base;
} progress_sum;

static void on_progress(void *ctx, uint64_t done, uint64_t total) {
    progress_sum *s = ctx;
    s->o->progress(s->o->progress_ctx, s->base + done, s->base + total);
}

/* One run of the open version, counted into *applied. */
static int run_once(view_handle *h, const kl_run_options *o, uint64_t *applied) {
    progress_sum ps = {o, *applied};
    kl_run_options ro = *o;
    ro.follow = 0;
    ro.progress = o->progress ? on_progress : NULL;
    ro.progress_ctx = &ps;
    if (o->max_records)
        ro.max_records = o->max_records - *applied;
    uint64_t n = 0;
    int rc = kl_processor_run(h->proc, &ro, &n);
    *applied += n;
    return rc;
}

/* A follower: was the view switched to a new version (reopen it) or dropped? */
static int follow_switch(view_handle *h) {
    vs_meta m;
    int rc = vs_meta_read(h->dir, h->name, &m);
    if (rc == KL_ENOTFOUND)
        return kl_errf(KL_ENOTFOUND, "view '%s' was dropped while it was followed", h->name);
    if (rc < 0)
        return rc;
    /* dropped and made again under the same name: its versions start at 1 again */
    if (m.created_ms != h->meta.created_ms || m.kind != h->meta.kind)
        return kl_errf(KL_ENOTFOUND,
                       "view '%s' was dropped and created again while it was followed: follow "
                       "the new one",
                       h->name);
    if (m.live == h->version)
        return 0;
    kl_processor_close(h->proc);
    h->proc = NULL;
    h->meta = m;
    return open_live(h);
}

static int follow(view_handle *h, const kl_run_options *o, uint64_t *applied) {
    for (;;) {
        int rc = run_once(h, o, applied);
        if (rc < 0 || (o->stop && *o->stop) || (o->max_records && *applied >= o->max_records))
            return rc;
        rc = follow_switch(h);
        if (rc < 0)
            return rc;
        rc = kl_log_wait(h->log, kl_processor_position(h->proc, 0), VIEW_WAIT_MS);
        if (rc < 0)
            return kl_err_prefix(rc, "view '%s': ", h->name);
    }
}

int kl_view_update(const char *dir, const char *name, const kl_run_options *opts,
                   uint64_t *applied) {
    const kl_run_options none = {0};
    const kl_run_options *o = opts ? opts : &none;
    uint64_t n = 0;
    view_handle h;
    int rc = view_prepare(&h, dir, name);
    if (rc == 0)
        rc = open_live(&h);
    if (rc == 0) {
        remove_old_versions(&h);
        rc = o->follow ? follow(&h, o, &n) : run_once(&h, o, &n);
    }
    view_close(&h);
    if (applied)
        *applied = n;
    return rc;
}

/* ---- rebuild --------------------------------------------------------------------------- */

/* Point view.meta at version v (synced before and after), then remove the old live version. */
static int switch_to(view_handle *h, uint64_t v) {
    KL_ASSERT(v > h->meta.live && h->version == v); /* versions only go up; v is the one open */
    int rc = proc_sync(h->proc);
    uint64_t old = h->meta.live;
    vs_meta m = h->meta;
    m.live = v;
    if (rc == 0)
        rc = vs_meta_write(h->vdir, &m);
    if (rc < 0)
        return rc;
    h->meta = m;
    vs_version_remove(h->vdir, old); /* a failure leaves garbage that the next update removes */
    return 0;
}

/*
 * The version a shadow rebuild builds: the newest one above the live
 * version if it still opens (a rebuild a crash interrupted: resumed), else
 * a new one. Every other version above the live one is removed.
 */
static int shadow_version(view_handle *h, const uint64_t *vs, size_t n) {
    uint64_t next = n ? vs[n - 1] + 1 : h->meta.live + 1;
    int rc = KL_ENOTFOUND;
    if (n && vs[n - 1] > h->meta.live)
        rc = open_version(h, vs[n - 1], PROC_MUST_EXIST);
    for (size_t i = 0; i < n; i++)
        if (vs[i] > h->meta.live && !(rc == 0 && vs[i] == h->version))
            vs_version_remove(h->vdir, vs[i]);
    if (rc == KL_ENOMEM)
        return rc;
    return rc == 0 ? 0 : open_version(h, KL_MAX(next, h->meta.live + 1), 0);
}

/* Build until a run ends with the version at the log's length, then switch. */
static int build_shadow(view_handle *h, const kl_run_options *o) {
    uint64_t applied = 0;
    for (;;) {
        int rc = run_once(h, o, &applied);
        if (rc < 0)
            return rc;
        if (o->stop && *o->stop)
            return kl_errf(KL_ECLOSED, "view '%s': the rebuild was stopped before the switch",
                           h->name);
        if ((rc = kl_log_refresh(h->log)) < 0)
            return rc;
        if (kl_processor_position(h->proc, 0) >= kl_log_length(h->log))
            return switch_to(h, h->version);
    }
}

static int rebuild_locked(view_handle *h, unsigned flags, const kl_run_options *o) {
    uint64_t vs[VS_MAX_VERSIONS];
    size_t n = 0;
    int rc = vs_versions(h->vdir, vs, VS_MAX_VERSIONS, &n);
    if (rc < 0)
        return rc;
    remove_old_versions(h);
    if (flags & KL_REBUILD_SHADOW) {
        rc = shadow_version(h, vs, n);
        return rc < 0 ? rc : build_shadow(h, o);
    }
    for (size_t i = 0; i < n; i++) /* a plain rebuild starts from nothing */
        if (vs[i] > h->meta.live)
            vs_version_remove(h->vdir, vs[i]);
    uint64_t v = KL_MAX(n ? vs[n - 1] + 1 : 0, h->meta.live + 1);
    rc = open_version(h, v, 0);
    if (rc == 0)
        rc = switch_to(h, v);
    uint64_t applied = 0;
    return rc < 0 ? rc : run_once(h, o, &applied);
}

int kl_view_rebuild(const char *dir, const char *name, unsigned flags, const kl_run_options *opts) {
    const kl_run_options none = {0};
    if (flags & ~KL_REBUILD_SHADOW)
        return kl_errf(KL_EINVAL, "kl_view_rebuild: unknown flags %#x", flags);
    view_handle h;
    int lock = -1;
    int rc = view_prepare(&h, dir, name);
    if (rc == 0)
        rc = vs_lock(h.vdir, &lock);
    if (rc == 0)
        rc = rebuild_locked(&h, flags, opts ? opts : &none);
    vs_unlock(lock);
    view_close(&h);
    return rc;
}

/* ---- reading --------------------------------------------------------------------------- */

/* A read transaction on the live version (following switches that race the open). */
static int open_reader(const char *dir, const char *name, vs_meta *m, proc_reader **r) {
    int rc = vs_check(dir, name);
    if (rc == 0)
        rc = vs_meta_read(dir, name, m);
    char vdir[VS_PATH_BYTES], path[VS_PATH_BYTES];
    if (rc < 0)
        return rc;
    vs_view_dir(vdir, dir, name);
    for (int i = 0; rc == 0 && i < VIEW_OPEN_TRIES; i++) {
        uint64_t before = m->live;
        vs_version_dir(path, vdir, m->live);
        rc = proc_reader_open(path, r);
        if (rc != KL_ENOTFOUND)
            return rc;
        rc = vs_meta_read(dir, name, m);
        if (rc == 0 && m->live == before)
            return kl_errf(KL_ECORRUPT, "view '%s': its live version %" PRIu64 " is missing", name,
                           before);
    }
    return rc < 0 ? rc : kl_errf(KL_EIO, "view '%s' kept switching versions", name);
}

int kl_view_get(const char *dir, const char *name, const void *key, size_t key_len, char **out,
                size_t *out_len) {
    if (!out || !out_len || (!key && key_len))
        return kl_errf(KL_EINVAL, "kl_view_get: a NULL argument");
    vs_meta m;
    proc_reader *r = NULL;
    int rc = open_reader(dir, name, &m, &r);
    if (rc < 0)
        return rc;
    const void *val = NULL;
    size_t n = 0;
    if (key_len > 0 && key_len <= KL_TXN_MAX_KEY_BYTES) /* no other key can be in a view */
        rc = kl_txn_get(proc_reader_txn(r), key, key_len, &val, &n);
    char num[VIEW_NUMBER_BYTES];
    const char *text = NULL;
    size_t len = 0;
    if (rc == 1)
        rc = view_format(m.kind, val, n, num, &text, &len);
    if (rc == 0 && text) {
        *out = malloc(len + 1);
        rc = *out ? 1 : kl_errf(KL_ENOMEM, "a value of %zu bytes", len);
        if (*out) {
            memcpy(*out, text, len);
            (*out)[len] = '\0';
            *out_len = len;
        }
    }
    proc_reader_close(r);
    return rc;
}

typedef struct scan_ctx {
    kl_view_kind kind;
    uint64_t limit, seen;
    kl_view_scan_fn fn;
    void *ctx;
    int rc;
} scan_ctx;

static int scan_one(void *ctx, const void *key, size_t key_len, const void *val, size_t n) {
    scan_ctx *s = ctx;
    char num[VIEW_NUMBER_BYTES];
    const char *text;
    size_t len;
    s->rc = view_format(s->kind, val, n, num, &text, &len);
    if (s->rc < 0)
        return 1;
    s->seen++;
    return s->fn(s->ctx, key, key_len, text, len) != 0 || (s->limit && s->seen >= s->limit);
}

int kl_view_scan(const char *dir, const char *name, const void *prefix, size_t prefix_len,
                 uint64_t limit, kl_view_scan_fn fn, void *ctx) {
    if (!fn || (!prefix && prefix_len))
        return kl_errf(KL_EINVAL, "kl_view_scan: a NULL argument");
    if (prefix_len > KL_TXN_MAX_KEY_BYTES)
        return 0; /* no key is that long */
    vs_meta m;
    proc_reader *r = NULL;
    int rc = open_reader(dir, name, &m, &r);
    if (rc < 0)
        return rc;
    scan_ctx s = {.kind = m.kind, .limit = limit, .fn = fn, .ctx = ctx};
    rc = kl_txn_scan(proc_reader_txn(r), prefix, prefix_len, scan_one, &s);
    proc_reader_close(r);
    return rc < 0 ? rc : s.rc;
}

/*
 * Does the log still hold the blocks a view at pos of `fork` applied? Not
 * if its tree hash there is another than the view stored (hash). Past the
 * end, or at another fork, the position and fork tell already.
 */
static int diverged(kl_log *log, uint64_t pos, uint64_t fork, const uint8_t hash[32]) {
    uint8_t th[32];
    kl_info li;
    if (kl_log_info(log, &li) < 0 || li.fork != fork || pos > li.length)
        return 0;
    int d = kl_log_tree_hash(log, pos, th) == 0 && memcmp(th, hash, sizeof th) != 0;
    kl_err_clear();
    return d;
}

/* Position, fork, entries and skips of the version at path (full), else its position only. */
static int stat_version(const char *path, kl_log *log, kl_view_info *info, int full) {
    proc_reader *r = NULL;
    int rc = proc_reader_open(path, &r);
    if (rc < 0)
        return rc;
    kl_txn *t = proc_reader_txn(r);
    uint64_t pos = 0, fork = 0;
    uint8_t hash[32];
    int has_hash = 0;
    rc = proc_source_get(t, 0, &pos, &fork, hash, &has_hash);
    if (rc >= 0 && full) {
        info->position = pos;
        info->fork = fork;
        info->diverged = has_hash && diverged(log, pos, fork, hash);
        info->entries = proc_entries(t);
        rc = view_skips_read(t, info->skipped);
    } else if (rc >= 0) {
        info->shadow_position = pos;
    }
    proc_reader_close(r);
    return rc < 0 ? rc : 0;
}

static int stat_one(const char *dir, const char *name, kl_log *log, kl_view_info *info) {
    memset(info, 0, sizeof *info);
    vs_meta m;
    proc_reader *r = NULL;
    int rc = open_reader(dir, name, &m, &r);
    if (rc < 0)
        return rc;
    proc_reader_close(r);
    snprintf(info->name, sizeof info->name, "%s", name);
    info->kind = m.kind;
    memcpy(info->key_path, m.key_path, sizeof info->key_path);
    memcpy(info->value_path, m.value_path, sizeof info->value_path);
    info->version = m.live;
    info->log_length = kl_log_length(log);
    kl_info li;
    info->log_fork = kl_log_info(log, &li) == 0 ? li.fork : 0;
    char vdir[VS_PATH_BYTES], path[VS_PATH_BYTES];
    vs_view_dir(vdir, dir, name);
    vs_version_dir(path, vdir, m.live);
    rc = stat_version(path, log, info, 1);
    uint64_t vs[VS_MAX_VERSIONS];
    size_t n = 0;
    if (rc == 0 && vs_versions(vdir, vs, VS_MAX_VERSIONS, &n) == 0 && n && vs[n - 1] > m.live) {
        info->shadow_version = vs[n - 1];
        vs_version_dir(path, vdir, vs[n - 1]);
        stat_version(path, log, info, 0); /* a version being created may not open yet */
    }
    info->rebuilding = vs_locked(vdir);
    return rc;
}

int kl_view_stat(const char *dir, const char *name, kl_view_info *info) {
    if (!info)
        return kl_errf(KL_EINVAL, "kl_view_stat: NULL info");
    kl_log *log = NULL;
    int rc = vs_check(dir, name);
    if (rc == 0)
        rc = open_log(dir, &log);
    if (rc == 0)
        rc = stat_one(dir, name, log, info);
    kl_log_close(log);
    return rc;
}

int kl_view_list(const char *dir, kl_view_info **out, size_t *n) {
    if (!dir || !out || !n)
        return kl_errf(KL_EINVAL, "kl_view_list: a NULL argument");
    *out = NULL;
    *n = 0;
    kl_log *log = NULL;
    char(*names)[KL_VIEW_NAME_MAX + 1] = NULL;
    size_t count = 0;
    int rc = open_log(dir, &log);
    if (rc == 0)
        rc = vs_list(dir, &names, &count);
    kl_view_info *info = count ? calloc(count, sizeof *info) : NULL;
    if (rc == 0 && count && !info)
        rc = kl_errf(KL_ENOMEM, "listing %zu views", count);
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        int src = stat_one(dir, names[i], log, &info[k]);
        if (src == KL_ECORRUPT) { /* listed as damaged: the others are still listed */
            memset(&info[k], 0, sizeof info[k]);
            snprintf(info[k].name, sizeof info[k].name, "%s", names[i]);
            info[k].damaged = 1;
            info[k].log_length = kl_log_length(log);
            src = 0;
        }
        if (src == 0)
            k++;
        else if (src != KL_ENOTFOUND) /* dropped while we listed: not there */
            rc = src;
    }
    free(names);
    kl_log_close(log);
    if (rc < 0) {
        free(info);
        return rc;
    }
    *out = info;
    *n = k;
    return 0;
}
