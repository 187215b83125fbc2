/*
 * view_fold.h - the fold of the built-in views (kv, count, sum) as a
 * processor definition: apply extracts the key (and value) of each JSON
 * record and aggregates in memory, flush writes one entry per distinct key
 * and the skip counters into the transaction.
 */
#ifndef KL_VIEW_FOLD_H
#define KL_VIEW_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "kappalog.h"
#include "view_store.h"

/* Bytes of a formatted count or sum (view_format's buffer). */
#define VIEW_NUMBER_BYTES 48

typedef struct view_fold view_fold;

/* A fold for the view m describes. KL_EINVAL if its paths do not compile. */
int view_fold_new(const vs_meta *m, view_fold **out);
void view_fold_free(view_fold *f);

/* def filled for kl_processor_open / proc_open (valid while f lives). */
void view_fold_def(view_fold *f, kl_processor_def *def);

/* Check a definition as kl_view_create gets it: 0 or KL_EINVAL naming what is wrong. */
int view_def_check(kl_view_kind kind, const char *key_path, const char *value_path);

/*
 * A stored value as kl_view_get prints it: for kv the record itself
 * (*text points into val), for count and sum the number, formatted into
 * buf, in the "C" locale whatever the caller's (a double's decimal point
 * is '.'). KL_ECORRUPT if the stored bytes are not a value of that kind.
 */
int view_format(kl_view_kind kind, const void *val, size_t n, char buf[VIEW_NUMBER_BYTES],
                const char **text, size_t *len);

/* The skip counters committed in txn (zero if none yet). */
int view_skips_read(kl_txn *txn, uint64_t skips[KL_VIEW_SKIPS]);

#endif
