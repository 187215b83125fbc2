/*
 * json_field.c - the views' reading of a JSON record: validate it as one
 * object and pull out a key field and a value field named by dotted paths
 * (json_field.h states the rules). Built on yajl's stream parser: no tree is
 * built, so a record costs one pass of the lexer and a few compares, and
 * deep nesting costs no stack (yajl keeps its own, and we stop it at
 * KL_JSON_MAX_NESTING). docs/JSON.md has the measurements behind the choice.
 *
 * What it owns: the parser (kl_jparser), reused record after record. yajl
 * has no reset, so each record gets a fresh yajl handle whose memory comes
 * from an arena inside the parser, emptied per record: no malloc on the hot
 * path. Only a buffer yajl grows past the arena (a string with escapes, or a
 * token cut by the record's end, of more than a few KiB) goes to the heap,
 * and is freed before the call returns.
 *
 * Invariants: the containers that lie on a path are always the bottom of
 * the open-container stack (jmatch.on <= level, on <= depth); a member name
 * can only move a path forward when it is read in the deepest container on
 * that path; a callback that refuses the record returns STOP, which ends
 * yajl's parse at once (nothing after it is read).
 *
 * What a reader would get wrong: yajl alone is not strict enough. It checks
 * only the shape of UTF-8 sequences (it takes overlong forms, surrogates and
 * code points past U+10FFFF) and decodes a lone surrogate escape to '?', so
 * two different records could give the same view key; and it takes a record
 * followed by an unfinished token (`{} "abc`). Every string is checked again
 * here, strictly, a string that had escapes has its raw \u escapes checked
 * in the record itself (found through yajl's byte offset, which points just
 * past the token yajl reported), everything after the top-level object's
 * '}' must be whitespace, and \v and \f, which yajl takes as whitespace,
 * are refused.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "consumers/json_field.h"
#include "engine/util.h"

/*
 * yajl's handle, lexer, two buffer headers and state stack take well under
 * 1 KiB; its decode buffer starts at 2 KiB (YAJL_BUF_INIT_SIZE) and doubles.
 * 16 KiB holds all of it for any record whose escaped strings decode to less
 * than ~8 KiB.
 */
#define ARENA_BYTES 16384
#define ARENA_ALIGN 16

/* What a path's end holds. JK_UNFIT: text too long, or a number out of double's range. */
enum jkind { JK_NONE, JK_STRING, JK_NUMBER, JK_BOOL, JK_NULL, JK_OBJECT, JK_ARRAY, JK_UNFIT };

/* Where one path stands in the record being read. */
typedef struct jmatch {
    const kl_jpath *path; /* NULL: not asked for */
    int on;               /* containers open along the path (the bottom `on` levels) */
    int hit;              /* the member name just read, at level `on`, is parts[on - 1] */
    int kind;             /* what the path's last part holds (last occurrence): JK_* */
} jmatch;

struct kl_jparser {
    yajl_handle h; /* this record's handle, in the arena */
    yajl_alloc_funcs afs;
    const uint8_t *rec;
    size_t n;
    int level;       /* containers open */
    int root_done;   /* the top-level object has closed */
    size_t root_end; /* ... and this is the offset just past its '}' */
    jmatch key, val;
    size_t key_len;
    double num;
    int64_t inum;
    int is_int;
    locale_t c_locale; /* numbers are read in "C", whatever the application's locale */
    size_t arena_used;
    size_t heap_blocks; /* live blocks yajl has outside the arena */
    char keybuf[KL_JSON_KEY_MAX];
    char numbuf[KL_JSON_NUMBER_MAX + 1];
    _Alignas(ARENA_ALIGN) unsigned char arena[ARENA_BYTES];
};

/* ---- the arena yajl allocates from ---- */

typedef struct ablock {
    size_t size;
    size_t pad;
} ablock; /* header before each arena block: keeps blocks 16-aligned */

static size_t round16(size_t n) {
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static int in_arena(const kl_jparser *p, const void *ptr) {
    uintptr_t at = (uintptr_t)ptr, lo = (uintptr_t)p->arena;
    return at >= lo && at < lo + ARENA_BYTES;
}

static void *ar_malloc(void *ctx, size_t size) {
    kl_jparser *p = ctx;
    if (size <= ARENA_BYTES && sizeof(ablock) + round16(size) <= ARENA_BYTES - p->arena_used) {
        ablock *b = (ablock *)(void *)(p->arena + p->arena_used);
        b->size = size;
        p->arena_used += sizeof(ablock) + round16(size);
        return b + 1;
    }
    /* yajl dereferences what it gets without a check: out of memory must stop here. */
    void *m = malloc(size ? size : 1);
    KL_ASSERT(m != NULL);
    p->heap_blocks++;
    return m;
}

static int ar_is_last(const kl_jparser *p, const ablock *b) {
    return (const unsigned char *)(b + 1) + round16(b->size) == p->arena + p->arena_used;
}

static void ar_free(void *ctx, void *ptr) {
    kl_jparser *p = ctx;
    if (!ptr)
        return;
    if (!in_arena(p, ptr)) {
        KL_ASSERT(p->heap_blocks > 0);
        p->heap_blocks--;
        free(ptr);
        return;
    }
    ablock *b = (ablock *)ptr - 1;
    if (ar_is_last(p, b))
        p->arena_used = (size_t)((unsigned char *)b - p->arena);
}

static void *ar_realloc(void *ctx, void *ptr, size_t size) {
    kl_jparser *p = ctx;
    if (!ptr)
        return ar_malloc(ctx, size);
    if (!in_arena(p, ptr)) {
        void *m = realloc(ptr, size ? size : 1);
        KL_ASSERT(m != NULL);
        return m;
    }
    ablock *b = (ablock *)ptr - 1;
    size_t start = (size_t)((unsigned char *)ptr - p->arena);
    if (ar_is_last(p, b) && size <= ARENA_BYTES - start && round16(size) <= ARENA_BYTES - start) {
        b->size = size; /* the last block grows (or shrinks) in place */
        p->arena_used = start + round16(size);
        return ptr;
    }
    void *m = ar_malloc(ctx, size);
    memcpy(m, ptr, KL_MIN(b->size, size));
    ar_free(ctx, ptr);
    return m;
}

/* ---- strict text checks yajl leaves out ---- */

/* Well-formed UTF-8 (Unicode Table 3-7): no overlong form, no surrogate, nothing past U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = 0; /* C0, C1 and F5..FF never start a character */
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4;
        if (len == 0 || n - i < len)
            return 0;
        uint8_t lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        else if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

static int hexval(uint8_t c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c - 'A' + 10;
}

static unsigned u_escape(const uint8_t *s) { /* s points at the 4 hex digits yajl checked */
    return (unsigned)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

/* The raw body of a string (between its quotes): every \u escape a whole character. */
static int escapes_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\')
            continue;
        KL_ASSERT(i + 1 < n); /* yajl refused a string ending in a lone backslash */
        if (s[i + 1] != 'u') {
            i++;
            continue;
        }
        KL_ASSERT(n - i >= 6);
        unsigned cp = u_escape(s + i + 2);
        i += 5;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return 0; /* a low surrogate with no high one before it */
        if (cp < 0xd800 || cp > 0xdbff)
            continue;
        if (n - i < 7 || s[i + 1] != '\\' || s[i + 2] != 'u')
            return 0;
        unsigned lo = u_escape(s + i + 3);
        if (lo < 0xdc00 || lo > 0xdfff)
            return 0;
        i += 6;
    }
    return 1;
}

/*
 * A string yajl decoded (it had escapes): find its raw body in the record.
 * yajl's offset is just past the closing quote; the opening quote is the
 * nearest earlier '"' preceded by an even run of backslashes (inside a
 * string every other quote is escaped).
 */
static int raw_escapes_valid(const kl_jparser *p) {
    size_t end = yajl_get_bytes_consumed(p->h);
    KL_ASSERT(end >= 2 && end <= p->n && p->rec[end - 1] == '"');
    size_t q = end - 1;
    for (;;) {
        KL_ASSERT(q > 0);
        q--;
        if (p->rec[q] != '"')
            continue;
        size_t bs = 0;
        while (bs < q && p->rec[q - 1 - bs] == '\\')
            bs++;
        if (bs % 2 == 0)
            break;
    }
    return escapes_valid(p->rec + q + 1, end - 1 - (q + 1));
}

static int text_ok(const kl_jparser *p, const uint8_t *s, size_t n) {
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++)
        any |= s[i];
    if ((any & 0x80) && !utf8_valid(s, n))
        return 0;
    uintptr_t at = (uintptr_t)s, rec = (uintptr_t)p->rec;
    int decoded = at < rec || at >= rec + p->n; /* yajl's decode buffer, not the record */
    return !decoded || raw_escapes_valid(p);
}

/* ---- values at the end of a path ---- */

static int parse_int64(const char *s, size_t n, int64_t *out) {
    int neg = s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (size_t i = (size_t)neg; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (limit - d) / 10)
            return 0; /* a fraction or exponent, or too big */
        v = v * 10 + d;
    }
    *out = neg && v > 0 ? -(int64_t)(v - 1) - 1 : (int64_t)v;
    return 1;
}

static void take_number(kl_jparser *p, const char *s, size_t n) {
    KL_ASSERT(n > 0);
    if (n > KL_JSON_NUMBER_MAX) {
        p->val.kind = JK_UNFIT;
        return;
    }
    p->val.kind = JK_NUMBER;
    p->is_int = parse_int64(s, n, &p->inum);
    if (p->is_int) {
        p->num = (double)p->inum; /* exact integer: the nearest double, as strtod would give */
        return;
    }
    memcpy(p->numbuf, s, n);
    p->numbuf[n] = 0;
    char *end = NULL;
    p->num = strtod_l(p->numbuf, &end, p->c_locale);
    KL_ASSERT(end == p->numbuf + n); /* yajl passed a JSON number, which strtod reads whole */
    if (!isfinite(p->num))
        p->val.kind = JK_UNFIT; /* out of double's range: no value to sum */
}

static void take_key(kl_jparser *p, int kind, const void *s, size_t n) {
    p->key.kind = kind;
    if (kind != JK_STRING && kind != JK_NUMBER && kind != JK_BOOL)
        return;
    if (n > KL_JSON_KEY_MAX) {
        p->key.kind = JK_UNFIT;
        return;
    }
    memcpy(p->keybuf, s, n);
    p->key_len = n;
}

/* ---- following the paths as yajl reports the record ---- */

enum { MATCH_NO, MATCH_TARGET, MATCH_STEP };

/* A value begins at the current level: is it what m names, or a step on its way? */
static int match_value(jmatch *m, int level) {
    if (!m->path || !m->hit || m->on != level)
        return MATCH_NO;
    m->hit = 0;
    if (m->on == m->path->depth)
        return MATCH_TARGET;
    m->kind = JK_NONE; /* a repeated member replaces what the earlier one held */
    return MATCH_STEP;
}

/* What a callback returns to yajl: STOP ends the parse with yajl_status_client_canceled. */
enum { STOP = 0, GO = 1 };

static int on_scalar(kl_jparser *p, int kind, const void *s, size_t n) {
    if (p->level == 0)
        return STOP; /* the record is not an object */
    if (match_value(&p->key, p->level) == MATCH_TARGET)
        take_key(p, kind, s, n);
    if (match_value(&p->val, p->level) == MATCH_TARGET) {
        if (kind == JK_NUMBER)
            take_number(p, s, n);
        else
            p->val.kind = kind;
    }
    return GO;
}

static int on_open(kl_jparser *p, int kind) {
    if (p->level == 0) {
        if (kind != JK_OBJECT || p->root_done)
            return STOP;
        p->level = 1;
        p->key.on = 1; /* the top-level object is on every path */
        p->val.on = p->val.path ? 1 : 0;
        return GO;
    }
    if (p->level >= KL_JSON_MAX_NESTING)
        return STOP;
    jmatch *ms[2] = {&p->key, &p->val};
    for (int i = 0; i < 2; i++) {
        int r = match_value(ms[i], p->level);
        if (r == MATCH_TARGET)
            ms[i]->kind = kind;
        else if (r == MATCH_STEP && kind == JK_OBJECT)
            ms[i]->on = p->level + 1;
    }
    p->level++;
    return GO;
}

static int on_close(kl_jparser *p) {
    KL_ASSERT(p->level > 0);
    jmatch *ms[2] = {&p->key, &p->val};
    for (int i = 0; i < 2; i++) {
        if (ms[i]->path && ms[i]->on == p->level)
            ms[i]->on--;
        KL_ASSERT(ms[i]->on < p->level);
    }
    p->level--;
    if (p->level == 0) {
        p->root_done = 1;
        p->root_end = yajl_get_bytes_consumed(p->h);
        KL_ASSERT(p->root_end >= 2 && p->root_end <= p->n && p->rec[p->root_end - 1] == '}');
    }
    return GO;
}

static int on_member(kl_jparser *p, const uint8_t *s, size_t n) {
    if (!text_ok(p, s, n))
        return STOP;
    jmatch *ms[2] = {&p->key, &p->val};
    for (int i = 0; i < 2; i++) {
        jmatch *m = ms[i];
        if (!m->path || m->on != p->level)
            continue;
        KL_ASSERT(m->on >= 1 && m->on <= m->path->depth);
        int part = m->on - 1;
        m->hit = n == m->path->part_len[part] && memcmp(s, m->path->parts[part], n) == 0;
    }
    return GO;
}

static int cb_null(void *ctx) {
    return on_scalar(ctx, JK_NULL, NULL, 0);
}
static int cb_boolean(void *ctx, int b) {
    return on_scalar(ctx, JK_BOOL, b ? "true" : "false", b ? 4 : 5);
}
static int cb_number(void *ctx, const char *s, size_t n) {
    return on_scalar(ctx, JK_NUMBER, s, n);
}
static int cb_string(void *ctx, const unsigned char *s, size_t n) {
    kl_jparser *p = ctx;
    if (p->level == 0 || !text_ok(p, s, n))
        return STOP;
    return on_scalar(p, JK_STRING, s, n);
}
static int cb_start_map(void *ctx) {
    return on_open(ctx, JK_OBJECT);
}
static int cb_map_key(void *ctx, const unsigned char *s, size_t n) {
    return on_member(ctx, s, n);
}
static int cb_start_array(void *ctx) {
    return on_open(ctx, JK_ARRAY);
}
static int cb_end(void *ctx) {
    return on_close(ctx);
}

/* yajl_number is set, so yajl passes every number as its text and never converts one. */
static const yajl_callbacks callbacks = {
    cb_null,      cb_boolean, NULL,   NULL,           cb_number, cb_string,
    cb_start_map, cb_map_key, cb_end, cb_start_array, cb_end,
};

/* ---- the API ---- */

int kl_jpath_compile(kl_jpath *p, const char *dotted) {
    if (!p || !dotted)
        return kl_errf(KL_EINVAL, "JSON path: NULL argument");
    kl_jpath t;
    memset(&t, 0, sizeof t);
    const char *s = dotted;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        if (len == 0)
            return kl_errf(KL_EINVAL,
                           "JSON path \"%.200s\": empty part at byte %zu (a path is "
                           "names joined by single dots)",
                           dotted, (size_t)(s - dotted));
        if (len > KL_JPATH_PART_MAX)
            return kl_errf(KL_EINVAL, "JSON path \"%.200s\": part %d is %zu bytes, at most %d",
                           dotted, t.depth + 1, len, KL_JPATH_PART_MAX);
        if (t.depth == KL_JPATH_MAX_DEPTH)
            return kl_errf(KL_EINVAL, "JSON path \"%.200s\": more than %d parts", dotted,
                           KL_JPATH_MAX_DEPTH);
        memcpy(t.parts[t.depth], s, len);
        t.part_len[t.depth] = (uint8_t)len;
        t.depth++;
        if (!dot)
            break;
        s = dot + 1;
    }
    KL_ASSERT(t.depth >= 1 && t.depth <= KL_JPATH_MAX_DEPTH);
    *p = t;
    return 0;
}

int kl_jparser_new(kl_jparser **out) {
    KL_ASSERT(out != NULL);
    kl_jparser *p = calloc(1, sizeof *p);
    if (!p)
        return kl_errf(KL_ENOMEM, "JSON parser: out of memory (%zu bytes)", sizeof *p);
    p->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (p->c_locale == (locale_t)0) {
        free(p);
        return kl_errf(KL_ENOMEM, "JSON parser: cannot create the \"C\" locale: %s",
                       strerror(errno));
    }
    p->afs = (yajl_alloc_funcs){ar_malloc, ar_realloc, ar_free, p};
    *out = p;
    return 0;
}

void kl_jparser_free(kl_jparser *p) {
    if (!p)
        return;
    KL_ASSERT(p->h == NULL && p->heap_blocks == 0);
    freelocale(p->c_locale);
    free(p);
}

static void begin(kl_jparser *p, const void *rec, size_t n, const kl_jpath *key,
                  const kl_jpath *value) {
    p->rec = rec;
    p->n = n;
    p->level = 0;
    p->root_done = 0;
    p->key = (jmatch){key, 0, 0, JK_NONE};
    p->val = (jmatch){value, 0, 0, JK_NONE};
    p->key_len = 0;
    p->arena_used = 0;
    p->h = yajl_alloc(&callbacks, &p->afs, p);
    KL_ASSERT(p->h != NULL); /* NULL only for missing allocator functions */
}

/*
 * yajl's own trailing check lexes one more token and misses one the record
 * cuts short: `{} "abc`, `{} 12`, `{} t` pass it (the lexer waits for more).
 * And yajl takes \v and \f as whitespace, which JSON does not (RFC 8259 has
 * space, tab, LF, CR); inside a string they would have to be escaped, so a
 * raw \v or \f anywhere means the record is not JSON (checked by the caller
 * with memchr, once yajl has accepted the record).
 */
static int only_whitespace(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

/* Which status the record earns once yajl has read it all. */
static kl_jstatus verdict(const kl_jparser *p) {
    if (p->key.kind == JK_NONE)
        return KL_JSON_MISSING;
    if (p->key.kind != JK_STRING && p->key.kind != JK_NUMBER && p->key.kind != JK_BOOL)
        return KL_JSON_BAD_KEY;
    if (!p->val.path)
        return KL_JSON_OK;
    if (p->val.kind == JK_NONE)
        return KL_JSON_MISSING;
    return p->val.kind == JK_NUMBER ? KL_JSON_OK : KL_JSON_NOT_NUMBER;
}

kl_jstatus kl_json_extract(kl_jparser *p, const void *rec, size_t n, const kl_jpath *key,
                           const kl_jpath *value, kl_jresult *out) {
    KL_ASSERT(p != NULL && key != NULL && out != NULL && p->h == NULL);
    KL_ASSERT(rec != NULL || n == 0);
    KL_ASSERT(key->depth >= 1 && key->depth <= KL_JPATH_MAX_DEPTH);
    KL_ASSERT(!value || (value->depth >= 1 && value->depth <= KL_JPATH_MAX_DEPTH));
    if (n == 0)
        return KL_JSON_INVALID;
    begin(p, rec, n, key, value);
    yajl_status s = yajl_parse(p->h, rec, n);
    if (s == yajl_status_ok)
        s = yajl_complete_parse(p->h);
    yajl_free(p->h);
    p->h = NULL;
    KL_ASSERT(p->heap_blocks == 0); /* yajl gave back all it took */
    if (s != yajl_status_ok || !p->root_done ||
        !only_whitespace(p->rec + p->root_end, n - p->root_end) || memchr(rec, '\v', n) ||
        memchr(rec, '\f', n))
        return KL_JSON_INVALID;
    KL_ASSERT(p->level == 0);
    kl_jstatus st = verdict(p);
    if (st == KL_JSON_OK) {
        *out = (kl_jresult){p->keybuf, p->key_len, 0, 0, 0};
        if (value) {
            out->num = p->num;
            out->inum = p->is_int ? p->inum : 0;
            out->is_int = p->is_int;
        }
    }
    return st;
}

const char *kl_jstatus_name(kl_jstatus s) {
    switch (s) {
    case KL_JSON_OK:
        return "ok";
    case KL_JSON_INVALID:
        return "not JSON";
    case KL_JSON_MISSING:
        return "missing field";
    case KL_JSON_NOT_NUMBER:
        return "not a number";
    case KL_JSON_BAD_KEY:
        return "bad key";
    }
    return "unknown status";
}
