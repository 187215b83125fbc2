/*
 * view_store.h - where the built-in views live in a log's directory
 * (docs/FORMAT.md, "views/"): views/<name>/view.meta (the definition and
 * the live version), views/<name>/lock (held by a rebuild), and one LMDB
 * environment per version in views/<name>/v<version>/.
 */
#ifndef KL_VIEW_STORE_H
#define KL_VIEW_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "kappalog.h"

#define VS_PATH_BYTES   4096
#define VS_MAX_VERSIONS 64 /* version directories looked at in one view (more is damage) */

typedef struct vs_meta {
    kl_view_kind kind;
    uint64_t live; /* the live version, >= 1 */
    uint64_t created_ms;
    char key_path[KL_VIEW_PATH_MAX + 1];
    char value_path[KL_VIEW_PATH_MAX + 1];
} vs_meta;

/* The longest log directory path a view lives under (its paths must fit VS_PATH_BYTES). */
#define VS_DIR_MAX 3072

/* 0, or KL_EINVAL naming what is wrong with the name. */
int vs_name_check(const char *name);

/* A log directory (non-NULL, at most VS_DIR_MAX bytes) and a view name: 0 or KL_EINVAL. */
int vs_check(const char *dir, const char *name);

/* snprintf into a VS_PATH_BYTES buffer; the arguments were checked, so it always fits. */
void vs_path(char out[VS_PATH_BYTES], const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* DIR/views/NAME, DIR/views/NAME/vVERSION. */
void vs_view_dir(char out[VS_PATH_BYTES], const char *dir, const char *name);
void vs_version_dir(char out[VS_PATH_BYTES], const char *view_dir, uint64_t version);

#define VS_META_BYTES 1024u /* view.meta is exactly this long (docs/FORMAT.md) */

/* The bytes of view.meta for m (whose paths fit KL_VIEW_PATH_MAX and hold no NUL). */
void vs_meta_encode(uint8_t b[VS_META_BYTES], const vs_meta *m);

/*
 * Decode the n bytes of a view.meta at b. 0, or KL_ECORRUPT naming path
 * (only used in the message) with *m untouched.
 */
int vs_meta_decode(const uint8_t *b, size_t n, vs_meta *m, const char *path);

/* Read view.meta. KL_ENOTFOUND (naming the view) if there is no such view. */
int vs_meta_read(const char *dir, const char *name, vs_meta *m);

/* Replace view.meta durably: a temporary file, synced, renamed over it, the directory synced. */
int vs_meta_write(const char *view_dir, const vs_meta *m);

/* Take the view's lock (held by rebuilds; drop needs it). KL_EBUSY if another holder has it. */
int vs_lock(const char *view_dir, int *fd);
void vs_unlock(int fd);
/* Is the lock held by someone right now? */
int vs_locked(const char *view_dir);

/* The versions present (v<N> directories), ascending. */
int vs_versions(const char *view_dir, uint64_t *out, size_t cap, size_t *n);

/* Remove version v's directory and its files. */
int vs_version_remove(const char *view_dir, uint64_t version);

/*
 * Create the view: a temporary directory under DIR/views with view.meta and
 * version m->live made by init(ctx, version_dir), renamed into place.
 * KL_EEXIST if the view exists.
 */
int vs_create(const char *dir, const char *name, const vs_meta *m,
              int (*init)(void *ctx, const char *version_dir), void *ctx);

/* Remove the view (renamed out of the way first, so it disappears at once). */
int vs_drop(const char *dir, const char *name);

/* The names of the views of DIR, sorted; *names malloc'ed (*n of them). */
int vs_list(const char *dir, char (**names)[KL_VIEW_NAME_MAX + 1], size_t *n);

#endif
