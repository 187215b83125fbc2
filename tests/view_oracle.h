/*
 * view_oracle.h - the JSON event stream the view tests fold, and the fold
 * computed independently of the library (no JSON parser: every record's
 * key, value and fate are known from how it was generated).
 *
 * Record i of a stream with `seed` is a function of (seed, i) alone, so a
 * test that appends from another process, or kills processes at random,
 * can still fold exactly the records [0, length) of the log afterwards.
 * The stream holds valid events (string and number keys, integer,
 * fractional, exponent and huge values, nested objects, repeated members)
 * and each kind of bad record a view must count and skip: not JSON, no key
 * field, a null/object/array key, an empty key, a value that is a string,
 * no value field.
 *
 * The views fold field "user" (key) and "n" (value, for sum).
 */
#ifndef KL_VIEW_ORACLE_H
#define KL_VIEW_ORACLE_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* The three built-in views the tests keep over the stream: name, kind, value field. */
static const struct {
    const char *name;
    kl_view_kind kind;
    const char *value;
} VIEWS[] = {{"kv", KL_VIEW_KV, NULL}, {"count", KL_VIEW_COUNT, NULL}, {"sum", KL_VIEW_SUM, "n"}};
#define NVIEWS 3

#define VO_KEYS      256 /* key ids: 0..199 "u<id>", 200..255 the JSON number 1000 + id - 200 */
#define VO_REC_BYTES 256 /* the longest record */

typedef enum vo_fate {
    VO_OK = 0,
    VO_NOT_JSON,
    VO_NO_KEY,
    VO_BAD_KEY,
    VO_EMPTY_KEY,
    VO_NO_VALUE,  /* fine for kv and count */
    VO_NOT_NUMBER /* fine for kv and count */
} vo_fate;

typedef struct vo_event {
    vo_fate fate;
    int key; /* key id when the record has a usable key */
    int v_is_int;
    int64_t vi;
    double vd;
} vo_event;

typedef struct vo_sum {
    int touched, is_double;
    int64_t i;
    double d;
} vo_sum;

typedef struct vo_fold {
    uint64_t seed, length;
    uint64_t count[VO_KEYS];
    uint64_t latest[VO_KEYS]; /* kv: 1 + index of the key's latest record, 0 if none */
    vo_sum sum[VO_KEYS];
    uint64_t skips_kc[KL_VIEW_SKIPS]; /* skips of the kv and count views */
    uint64_t skips_sum[KL_VIEW_SKIPS];
} vo_fold;

static inline void vo_key_text(int key, char *out, size_t cap) {
    if (key < 200)
        snprintf(out, cap, "u%d", key);
    else
        snprintf(out, cap, "%d", 1000 + key - 200);
}

/* The key as it appears in JSON: a string or a number. */
static inline void vo_key_json(int key, char *out, size_t cap) {
    if (key < 200)
        snprintf(out, cap, "\"u%d\"", key);
    else
        snprintf(out, cap, "%d", 1000 + key - 200);
}

/* A value and its JSON text. */
static inline void vo_value(uint64_t *r, vo_event *e, char *text, size_t cap) {
    uint64_t x = tu_rand(r) % 100;
    int64_t k = (int64_t)(tu_rand(r) % 2001) - 1000;
    if (x < 70) {
        e->v_is_int = 1;
        e->vi = k;
        snprintf(text, cap, "%" PRId64, k);
    } else if (x < 85) { /* quarters: exact in binary, any order of adding is exact too */
        e->vd = (double)k + 0.25 * (double)(tu_rand(r) % 4);
        snprintf(text, cap, "%.2f", e->vd);
        if (e->vd == (double)(int64_t)e->vd) /* "3.00" is still a fraction in JSON */
            snprintf(text, cap, "%" PRId64 ".0", (int64_t)e->vd);
    } else if (x < 95) {
        e->vd = (double)k * 10.0;
        snprintf(text, cap, "%" PRId64 "e1", k);
    } else { /* near INT64_MAX: the next integer pushes the sum to a double */
        e->v_is_int = 1;
        e->vi = INT64_C(9000000000000000000) + k;
        snprintf(text, cap, "%" PRId64, e->vi);
    }
}

/* Record i of the stream into buf (VO_REC_BYTES); its fate in *e. Returns its size. */
static inline size_t vo_record(uint64_t seed, uint64_t i, char *buf, vo_event *e) {
    uint64_t r = seed * 0x9e3779b97f4a7c15ull ^ (i + 1) * 0xbf58476d1ce4e5b9ull;
    memset(e, 0, sizeof *e);
    uint64_t kind = tu_rand(&r) % 100;
    e->key = (int)(tu_rand(&r) % VO_KEYS);
    char key[32], val[48];
    vo_key_json(e->key, key, sizeof key);
    vo_value(&r, e, val, sizeof val);
    int n;
    if (kind < 55) {
        n = snprintf(buf, VO_REC_BYTES, "{\"seq\":%" PRIu64 ",\"user\":%s,\"n\":%s}", i, key, val);
    } else if (kind < 60) {
        e->fate = VO_NOT_JSON;
        n = snprintf(buf, VO_REC_BYTES,
                     kind & 1 ? "garbage %" PRIu64 : "{\"user\":\"u%" PRIu64 "\"", i);
    } else if (kind < 64) {
        e->fate = VO_NO_KEY;
        n = snprintf(buf, VO_REC_BYTES, "{\"seq\":%" PRIu64 ",\"n\":%s}", i, val);
    } else if (kind < 68) {
        static const char *const bad[] = {"null", "{\"id\":1}", "[1,2]", "null"};
        e->fate = VO_BAD_KEY;
        n = snprintf(buf, VO_REC_BYTES, "{\"user\":%s,\"n\":%s}", bad[kind - 64], val);
    } else if (kind < 70) {
        e->fate = VO_EMPTY_KEY;
        n = snprintf(buf, VO_REC_BYTES, "{\"user\":\"\",\"n\":%s}", val);
    } else if (kind < 75) {
        e->fate = VO_NOT_NUMBER;
        n = snprintf(buf, VO_REC_BYTES, "{\"user\":%s,\"n\":\"%s\"}", key, val);
    } else if (kind < 80) {
        e->fate = VO_NO_VALUE;
        n = snprintf(buf, VO_REC_BYTES, "{\"user\":%s,\"m\":%s}", key, val);
    } else if (kind < 90) {
        n = snprintf(buf, VO_REC_BYTES,
                     "{\"a\":{\"b\":[1,{\"user\":\"x\"},null]},\"user\":%s,\"n\":%s,\"z\":true}",
                     key, val);
    } else { /* repeated members: the last one counts */
        n = snprintf(buf, VO_REC_BYTES, "{\"user\":\"u1\",\"n\":\"x\",\"user\":%s,\"n\":%s}", key,
                     val);
    }
    assert_true(n > 0 && n < VO_REC_BYTES);
    return (size_t)n;
}

static inline void vo_init(vo_fold *f, uint64_t seed) {
    memset(f, 0, sizeof *f);
    f->seed = seed;
}

static inline void vo_sum_add(vo_sum *s, const vo_event *e) {
    s->touched = 1;
    int64_t r;
    if (!s->is_double && e->v_is_int && !__builtin_add_overflow(s->i, e->vi, &r)) {
        s->i = r;
        return;
    }
    if (!s->is_double) {
        s->is_double = 1;
        s->d = (double)s->i;
    }
    s->d += e->v_is_int ? (double)e->vi : e->vd;
}

/* Fold records [f->length, to). */
static inline void vo_fold_to(vo_fold *f, uint64_t to) {
    static const int kc[] = {
        [VO_NOT_JSON] = KL_VIEW_SKIP_NOT_JSON, [VO_NO_KEY] = KL_VIEW_SKIP_MISSING,
        [VO_BAD_KEY] = KL_VIEW_SKIP_BAD_KEY,   [VO_EMPTY_KEY] = KL_VIEW_SKIP_KEY_SIZE,
        [VO_NO_VALUE] = KL_VIEW_SKIP_MISSING,  [VO_NOT_NUMBER] = KL_VIEW_SKIP_NOT_NUMBER};
    char buf[VO_REC_BYTES];
    for (; f->length < to; f->length++) {
        vo_event e;
        vo_record(f->seed, f->length, buf, &e);
        int key_ok = e.fate == VO_OK || e.fate == VO_NO_VALUE || e.fate == VO_NOT_NUMBER;
        if (key_ok) {
            f->count[e.key]++;
            f->latest[e.key] = f->length + 1;
        } else {
            f->skips_kc[kc[e.fate]]++;
        }
        if (e.fate == VO_OK)
            vo_sum_add(&f->sum[e.key], &e);
        else
            f->skips_sum[kc[e.fate]]++;
    }
}

/* Append records [from, to) of the stream to log in batches of `batch`. */
static inline int vo_append(kl_log *log, uint64_t seed, uint64_t from, uint64_t to, size_t batch) {
    char(*bufs)[VO_REC_BYTES] = malloc(batch * VO_REC_BYTES);
    kl_block *blocks = malloc(batch * sizeof *blocks);
    assert_non_null(bufs);
    assert_non_null(blocks);
    int rc = 0;
    for (uint64_t i = from; rc == 0 && i < to;) {
        size_t n = 0;
        for (; n < batch && i + n < to; n++) {
            vo_event e;
            blocks[n].size = vo_record(seed, i + n, bufs[n], &e);
            blocks[n].data = bufs[n];
        }
        rc = kl_log_append(log, blocks, n, NULL);
        i += n;
    }
    free(bufs);
    free(blocks);
    return rc;
}

/* A view's value of key `key` is what the fold says (fails the test if not). */
static inline void vo_expect_value(const vo_fold *f, kl_view_kind kind, int key, const char *got,
                                   const char *what) {
    char want[VO_REC_BYTES];
    if (kind == KL_VIEW_COUNT) {
        snprintf(want, sizeof want, "%" PRIu64, f->count[key]);
    } else if (kind == KL_VIEW_KV) {
        vo_event e;
        size_t n = vo_record(f->seed, f->latest[key] - 1, want, &e);
        want[n] = '\0';
    } else if (!f->sum[key].is_double) {
        snprintf(want, sizeof want, "%" PRId64, f->sum[key].i);
    } else {
        if (strtod(got, NULL) != f->sum[key].d || !strpbrk(got, ".ein"))
            fail_msg("%s: key %d: sum %s, expected the double %.17g", what, key, got,
                     f->sum[key].d);
        return;
    }
    if (strcmp(got, want) != 0)
        fail_msg("%s: key %d: got '%s', expected '%s'", what, key, got, want);
}

/* Does the fold hold key in a view of this kind? */
static inline int vo_has(const vo_fold *f, kl_view_kind kind, int key) {
    return kind == KL_VIEW_SUM ? f->sum[key].touched : f->count[key] > 0;
}

/* The key id of a key's text, or -1 if the stream never makes that key. */
static inline int vo_key_id(const char *key, size_t n) {
    char text[32];
    if (n == 0 || n >= sizeof text)
        return -1;
    memcpy(text, key, n);
    text[n] = '\0';
    char *end = NULL;
    long v = strtol(text + (text[0] == 'u'), &end, 10);
    if (*end || end == text + (text[0] == 'u'))
        return -1;
    int id = text[0] == 'u' ? (int)v : (int)v - 1000 + 200;
    char again[32];
    if (id < 0 || id >= VO_KEYS)
        return -1;
    vo_key_text(id, again, sizeof again);
    return strcmp(again, text) == 0 ? id : -1;
}

typedef struct vo_scan {
    const vo_fold *f;
    kl_view_kind kind;
    const char *name;
    uint64_t seen;
    uint8_t present[VO_KEYS];
} vo_scan;

static inline int vo_scan_entry(void *ctx, const void *key, size_t kn, const void *val, size_t vn) {
    vo_scan *s = ctx;
    int id = vo_key_id(key, kn);
    if (id < 0 || s->present[id])
        fail_msg("view %s: a key the fold never made: '%.*s'", s->name, (int)kn, (const char *)key);
    if (!vo_has(s->f, s->kind, id))
        fail_msg("view %s: key '%.*s' is present, the fold says absent", s->name, (int)kn,
                 (const char *)key);
    char *got = malloc(vn + 1);
    assert_non_null(got);
    memcpy(got, val, vn);
    got[vn] = '\0';
    vo_expect_value(s->f, s->kind, id, got, s->name);
    free(got);
    s->present[id] = 1;
    s->seen++;
    return 0;
}

/*
 * View `name` (of `kind`) in dir equals the fold up to f->length: every
 * key, every value, nothing else, the skip counters and the position.
 */
static inline void vo_expect_view(const vo_fold *f, const char *dir, const char *name,
                                  kl_view_kind kind) {
    kl_view_info vi;
    if (kl_view_stat(dir, name, &vi) != 0)
        fail_msg("stat %s: %s", name, kl_last_error());
    if (vi.position != f->length)
        fail_msg("view %s is at %" PRIu64 ", the fold at %" PRIu64, name, vi.position, f->length);
    vo_scan s;
    memset(&s, 0, sizeof s);
    s.f = f;
    s.kind = kind;
    s.name = name;
    if (kl_view_scan(dir, name, "", 0, 0, vo_scan_entry, &s) != 0)
        fail_msg("scan %s: %s", name, kl_last_error());
    uint64_t keys = 0;
    for (int k = 0; k < VO_KEYS; k++)
        keys += (uint64_t)vo_has(f, kind, k);
    if (s.seen != keys || vi.entries != keys)
        fail_msg("view %s: %" PRIu64 " keys scanned, %" PRIu64 " counted, the fold has %" PRIu64,
                 name, s.seen, vi.entries, keys);
    const uint64_t *skips = kind == KL_VIEW_SUM ? f->skips_sum : f->skips_kc;
    for (int k = 0; k < KL_VIEW_SKIPS; k++)
        if (vi.skipped[k] != skips[k])
            fail_msg("view %s: %" PRIu64 " records skipped as %s, the fold says %" PRIu64, name,
                     vi.skipped[k], kl_view_skip_name((kl_view_skip)k), skips[k]);
}

/* Every key of the view through kl_view_get too (the path `view get` takes). */
static inline void vo_expect_gets(const vo_fold *f, const char *dir, const char *name,
                                  kl_view_kind kind) {
    for (int k = 0; k < VO_KEYS; k++) {
        char key[32], *val = NULL;
        size_t n = 0;
        vo_key_text(k, key, sizeof key);
        int rc = kl_view_get(dir, name, key, strlen(key), &val, &n);
        if (rc < 0 || rc != vo_has(f, kind, k))
            fail_msg("get %s %s: %d (%s)", name, key, rc, rc < 0 ? kl_last_error() : "");
        if (rc == 1)
            vo_expect_value(f, kind, k, val, name);
        free(val);
    }
}

#endif
