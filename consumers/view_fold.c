/*
 * view_fold.c - how the built-in views fold JSON records (view_fold.h),
 * and how their values are stored (docs/FORMAT.md, "views/") and printed.
 *
 * apply never writes per record: it extracts the key (and, for sum, the
 * value) with json_field, and updates the key's entry in the transaction's
 * aggregation table (agg.c). The first time a transaction touches a key,
 * the entry starts from the value stored in LMDB (for count and sum; kv
 * needs no old value); every later record of the key changes only memory.
 * flush writes the entries in key order, one put each, and adds the skip
 * counts to the `skips` state record. discard forgets both.
 *
 * The one thing a reader would get wrong: a sum is folded value by value
 * from the stored sum, in log order, exactly as a program folding the log
 * one record at a time would, rather than summing a transaction's values
 * first and adding that. With doubles the two differ in the last bits;
 * this way a view equals the straightforward fold bit for bit, whatever
 * the transaction boundaries were.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "view_fold.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/util.h"
#include "agg.h"
#include "json_field.h"
#include "processor_internal.h"

#define VIEW_COUNT_BYTES 8u /* u64 */
#define VIEW_SUM_BYTES   9u /* tag (0 int64, 1 double), then 8 bytes */
#define VIEW_SUM_INT     0u
#define VIEW_SUM_DOUBLE  1u
#define VIEW_SKIPS_KEY   "skips"
/* A kv record at least this big goes straight to LMDB instead of through the table. */
#define VIEW_BIG_RECORD (1u << 20)
/* Records whose keys are hashed and whose slots are prefetched before any is looked up. */
#define VIEW_CHUNK 32
/* "kappalog view kind=K key=PATH value=PATH": what proc_open checks on every open. */
#define VIEW_DEF_NAME_BYTES (64 + 2 * KL_VIEW_PATH_MAX)

/* A record of the chunk being folded: its key (copied), hash and value. */
typedef struct fold_item {
    const kl_record *rec;
    uint64_t hash;
    kl_jresult r; /* r.key points into view_fold.keys */
} fold_item;

struct view_fold {
    kl_view_kind kind;
    kl_jpath key, value;
    kl_jparser *jp;
    agg_table agg;
    uint64_t skips[KL_VIEW_SKIPS]; /* skipped in the open transaction */
    char name[VIEW_DEF_NAME_BYTES];
    fold_item items[VIEW_CHUNK];
    char keys[VIEW_CHUNK][KL_TXN_MAX_KEY_BYTES];
};

const char *kl_view_kind_name(kl_view_kind kind) {
    switch (kind) {
    case KL_VIEW_KV:
        return "kv";
    case KL_VIEW_COUNT:
        return "count";
    case KL_VIEW_SUM:
        return "sum";
    }
    return "unknown";
}

const char *kl_view_skip_name(kl_view_skip reason) {
    static const char *const names[KL_VIEW_SKIPS] = {"not_json", "missing_field", "not_number",
                                                     "bad_key", "key_size"};
    return (unsigned)reason < KL_VIEW_SKIPS ? names[reason] : "unknown";
}

int view_def_check(kl_view_kind kind, const char *key_path, const char *value_path) {
    kl_jpath p;
    if (kind != KL_VIEW_KV && kind != KL_VIEW_COUNT && kind != KL_VIEW_SUM)
        return kl_errf(KL_EINVAL, "unknown view kind %d (kv, count or sum)", (int)kind);
    int has_value = value_path && *value_path;
    if (kind == KL_VIEW_SUM && !has_value)
        return kl_errf(KL_EINVAL, "a sum view needs a value field");
    if (kind != KL_VIEW_SUM && has_value)
        return kl_errf(KL_EINVAL, "a %s view takes no value field", kl_view_kind_name(kind));
    const char *paths[2] = {key_path, has_value ? value_path : NULL};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && !paths[i])
            break;
        if (!paths[i] || strlen(paths[i]) > KL_VIEW_PATH_MAX)
            return kl_errf(KL_EINVAL, "the %s field path is missing or longer than %u bytes",
                           i ? "value" : "key", KL_VIEW_PATH_MAX);
        if (kl_jpath_compile(&p, paths[i]) < 0)
            return kl_err_prefix(KL_EINVAL, "the %s field '%.80s': ", i ? "value" : "key",
                                 paths[i]);
    }
    return 0;
}

int view_fold_new(const vs_meta *m, view_fold **out) {
    int rc = view_def_check(m->kind, m->key_path, m->value_path);
    if (rc < 0)
        return rc;
    view_fold *f = calloc(1, sizeof *f);
    if (!f)
        return kl_errf(KL_ENOMEM, "a view fold");
    f->kind = m->kind;
    kl_jpath_compile(&f->key, m->key_path);
    if (m->kind == KL_VIEW_SUM)
        kl_jpath_compile(&f->value, m->value_path);
    snprintf(f->name, sizeof f->name, "kappalog view kind=%s key=%s value=%s",
             kl_view_kind_name(m->kind), m->key_path, m->value_path);
    rc = kl_jparser_new(&f->jp);
    if (rc == 0)
        rc = agg_init(&f->agg);
    if (rc < 0) {
        view_fold_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void view_fold_free(view_fold *f) {
    if (!f)
        return;
    kl_jparser_free(f->jp);
    if (f->agg.nslots)
        agg_free(&f->agg);
    free(f);
}

/* ---- stored values --------------------------------------------------------------------- */

static int decode_num(kl_view_kind kind, const uint8_t *v, size_t n, agg_num *out) {
    memset(out, 0, sizeof *out);
    if (kind == KL_VIEW_COUNT && n == VIEW_COUNT_BYTES) {
        out->i = (int64_t)kl_load64(v);
        return 0;
    }
    if (kind == KL_VIEW_SUM && n == VIEW_SUM_BYTES && v[0] <= VIEW_SUM_DOUBLE) {
        uint64_t bits = kl_load64(v + 1);
        out->is_double = v[0] == VIEW_SUM_DOUBLE;
        if (out->is_double)
            memcpy(&out->d, &bits, sizeof out->d);
        else
            out->i = (int64_t)bits;
        return 0;
    }
    return kl_errf(KL_ECORRUPT, "a stored %s value of %zu bytes", kl_view_kind_name(kind), n);
}

/* The stored bytes of a count or sum; returns their size. */
static size_t encode_num(kl_view_kind kind, const agg_num *num, uint8_t *b) {
    if (kind == KL_VIEW_COUNT) {
        kl_store64(b, (uint64_t)num->i);
        return VIEW_COUNT_BYTES;
    }
    uint64_t bits = (uint64_t)num->i;
    if (num->is_double)
        memcpy(&bits, &num->d, sizeof bits);
    b[0] = num->is_double ? VIEW_SUM_DOUBLE : VIEW_SUM_INT;
    kl_store64(b + 1, bits);
    return VIEW_SUM_BYTES;
}

/*
 * The "C" locale, made once and kept for the life of the process: doubles
 * are printed and read back in it, not in the caller's LC_NUMERIC (under
 * de_DE, "%g" writes "1,5", which is not JSON). (locale_t)0 if newlocale
 * failed, with its errno in c_locale_errno.
 */
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;
static int c_locale_errno;

static void make_c_locale(void) {
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    c_locale_errno = c_locale == (locale_t)0 ? errno : 0;
}

/*
 * The shortest text that reads back as d; ".0" added to a whole number.
 * snprintf has no _l variant, so the thread's locale is "C" while it
 * formats (uselocale), then the one it had again. KL_ENOMEM if the "C"
 * locale cannot be made.
 */
static int format_double(double d, char buf[VIEW_NUMBER_BYTES]) {
    if (isnan(d) || isinf(d)) {
        snprintf(buf, VIEW_NUMBER_BYTES, "%s", isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
        return 0;
    }
    pthread_once(&c_locale_once, make_c_locale);
    if (c_locale == (locale_t)0)
        return kl_errf(KL_ENOMEM, "formatting a sum: cannot create the \"C\" locale: %s",
                       strerror(c_locale_errno));
    locale_t caller = uselocale(c_locale);
    KL_ASSERT(caller != (locale_t)0);
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, VIEW_NUMBER_BYTES, "%.*g", prec, d);
        if (strtod_l(buf, NULL, c_locale) == d)
            break;
    }
    uselocale(caller);
    if (!strpbrk(buf, ".e"))
        strcat(buf, ".0");
    KL_ASSERT(!strchr(buf, ','));
    return 0;
}

int view_format(kl_view_kind kind, const void *val, size_t n, char buf[VIEW_NUMBER_BYTES],
                const char **text, size_t *len) {
    if (kind == KL_VIEW_KV) {
        *text = val;
        *len = n;
        return 0;
    }
    agg_num num;
    int rc = decode_num(kind, val, n, &num);
    if (rc < 0)
        return rc;
    if (kind == KL_VIEW_COUNT)
        snprintf(buf, VIEW_NUMBER_BYTES, "%" PRIu64, (uint64_t)num.i);
    else if (!num.is_double)
        snprintf(buf, VIEW_NUMBER_BYTES, "%" PRId64, num.i);
    else if ((rc = format_double(num.d, buf)) < 0)
        return rc;
    *text = buf;
    *len = strlen(buf);
    return 0;
}

int view_skips_read(kl_txn *txn, uint64_t skips[KL_VIEW_SKIPS]) {
    uint8_t b[8 * KL_VIEW_SKIPS];
    size_t n = 0;
    memset(skips, 0, sizeof(uint64_t) * KL_VIEW_SKIPS);
    int rc = proc_state_get(txn, VIEW_SKIPS_KEY, b, sizeof b, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; rc == 1 && i < n / 8; i++)
        skips[i] = kl_load64(b + 8 * i);
    return 0;
}

/* ---- the fold ---------------------------------------------------------------------------- */

/* Write every entry of the table into txn (in key order) and empty it. */
static int flush_table(view_fold *f, kl_txn *txn) {
    agg_table *t = &f->agg;
    uint32_t *order = NULL;
    int rc = t->nentries ? agg_sorted(t, &order) : 0;
    for (uint32_t k = 0; rc == 0 && k < t->nentries; k++) {
        const agg_entry *e = &t->slots[order[k]];
        uint8_t b[VIEW_SUM_BYTES];
        if (f->kind == KL_VIEW_KV)
            rc = kl_txn_put(txn, agg_key(t, e), e->key_len, agg_record(t, e), e->rec_len);
        else
            rc = kl_txn_put(txn, agg_key(t, e), e->key_len, b, encode_num(f->kind, &e->num, b));
    }
    free(order);
    if (rc == 0)
        agg_clear(t);
    KL_ASSERT(rc < 0 || (t->nentries == 0 && t->arena_len == 0));
    return rc;
}

/* A key's entry, added (and started from its stored value) if this transaction had none. */
static int entry_for(view_fold *f, kl_txn *txn, const fold_item *it, size_t rec_len,
                     agg_entry **e) {
    const char *key = it->r.key;
    size_t key_len = it->r.key_len;
    int rc = agg_room(&f->agg, key_len, rec_len) ? 0 : flush_table(f, txn);
    if (rc == 0)
        rc = agg_find_hashed(&f->agg, key, key_len, it->hash, 1, e);
    if (rc != 2 || f->kind == KL_VIEW_KV)
        return rc < 0 ? rc : 0;
    const void *v;
    size_t n;
    rc = kl_txn_get(txn, key, key_len, &v, &n);
    if (rc == 1 && (rc = decode_num(f->kind, v, n, &(*e)->num)) < 0)
        return kl_err_prefix(rc, "key '%.*s': ", (int)KL_MIN(key_len, 80), key);
    return rc < 0 ? rc : 0;
}

/* Fold one record into the table. */
static int fold(view_fold *f, kl_txn *txn, const fold_item *it) {
    const kl_jresult *r = &it->r;
    const kl_record *rec = it->rec;
    if (f->kind == KL_VIEW_KV && rec->size >= VIEW_BIG_RECORD) {
        int rc = flush_table(f, txn); /* keeps the order of this key's records */
        return rc < 0 ? rc : kl_txn_put(txn, r->key, r->key_len, rec->data, rec->size);
    }
    agg_entry *e = NULL;
    int rc = entry_for(f, txn, it, f->kind == KL_VIEW_KV ? rec->size : 0, &e);
    if (rc < 0)
        return rc;
    KL_ASSERT(e != NULL);
    switch (f->kind) {
    case KL_VIEW_KV:
        return agg_set_record(&f->agg, e, rec->data, rec->size);
    case KL_VIEW_COUNT:
        e->num.i = (int64_t)((uint64_t)e->num.i + 1);
        return 0;
    case KL_VIEW_SUM:
        agg_num_add(&e->num, r->is_int, r->inum, r->num);
        return 0;
    }
    return kl_errf(KL_EINVAL, "unknown view kind");
}

static kl_view_skip skip_reason(kl_jstatus st) {
    switch (st) {
    case KL_JSON_MISSING:
        return KL_VIEW_SKIP_MISSING;
    case KL_JSON_NOT_NUMBER:
        return KL_VIEW_SKIP_NOT_NUMBER;
    case KL_JSON_BAD_KEY:
        return KL_VIEW_SKIP_BAD_KEY;
    default:
        return KL_VIEW_SKIP_NOT_JSON;
    }
}

/*
 * Extract the key (and value) of up to VIEW_CHUNK records, counting the
 * skipped ones; hash the others' keys and prefetch their slots. Returns
 * how many are in f->items.
 */
static size_t extract_chunk(view_fold *f, const kl_record *recs, size_t n) {
    KL_ASSERT(n <= VIEW_CHUNK);
    const kl_jpath *value = f->kind == KL_VIEW_SUM ? &f->value : NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        fold_item *it = &f->items[k];
        kl_jstatus st = kl_json_extract(f->jp, recs[i].data, recs[i].size, &f->key, value, &it->r);
        if (st != KL_JSON_OK) {
            f->skips[skip_reason(st)]++;
            continue;
        }
        if (it->r.key_len == 0 || it->r.key_len > KL_TXN_MAX_KEY_BYTES) {
            f->skips[KL_VIEW_SKIP_KEY_SIZE]++;
            continue;
        }
        memcpy(f->keys[k], it->r.key, it->r.key_len); /* valid only until the next extract */
        it->r.key = f->keys[k];
        it->rec = &recs[i];
        it->hash = agg_hash(it->r.key, it->r.key_len);
        agg_prefetch(&f->agg, it->hash);
        k++;
    }
    return k;
}

static int fold_apply(void *ctx, kl_txn *txn, size_t source, const kl_record *recs, size_t n) {
    view_fold *f = ctx;
    KL_ASSERT(source == 0); /* a built-in view reads the one log it lives in */
    for (size_t i = 0; i < n; i += VIEW_CHUNK) {
        size_t k = extract_chunk(f, recs + i, KL_MIN(n - i, (size_t)VIEW_CHUNK));
        for (size_t j = 0; j < k; j++) {
            int rc = fold(f, txn, &f->items[j]);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int fold_flush(void *ctx, kl_txn *txn) {
    view_fold *f = ctx;
    int rc = flush_table(f, txn);
    uint64_t total[KL_VIEW_SKIPS];
    if (rc == 0)
        rc = view_skips_read(txn, total);
    if (rc < 0)
        return rc;
    uint8_t b[8 * KL_VIEW_SKIPS];
    for (int i = 0; i < KL_VIEW_SKIPS; i++)
        kl_store64(b + 8 * i, total[i] + f->skips[i]);
    rc = proc_state_put(txn, VIEW_SKIPS_KEY, b, sizeof b);
    if (rc == 0)
        memset(f->skips, 0, sizeof f->skips);
    return rc;
}

static void fold_discard(void *ctx) {
    view_fold *f = ctx;
    agg_clear(&f->agg);
    memset(f->skips, 0, sizeof f->skips);
}

void view_fold_def(view_fold *f, kl_processor_def *def) {
    kl_processor_def_default(def);
    def->name = f->name;
    def->apply = fold_apply;
    def->flush = fold_flush;
    def->discard = fold_discard;
    def->ctx = f;
    const char *env = getenv("KL_VIEW_TXN_RECORDS"); /* tests: many small transactions */
    if (env && atoll(env) > 0)
        def->txn_records = (uint64_t)atoll(env);
}
