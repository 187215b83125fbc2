/*
 * json_field.h - what the materialized views need from a JSON record: is it
 * one JSON object, and what are its key field (text) and value field
 * (number), each named by a dotted path ("user", "ctx.user"). Private to
 * the library (consumers/); docs/JSON.md says why it is built on yajl's
 * stream parser and what it costs per record.
 *
 * Rules a view can rely on:
 * - A record is KL_JSON_INVALID unless it is exactly one JSON object (RFC
 *   8259), optionally surrounded by whitespace, in well-formed UTF-8, with
 *   \u escapes that form whole characters (a lone surrogate is refused), and
 *   nested no deeper than KL_JSON_MAX_NESTING objects and arrays.
 * - A path steps through objects only; a part that meets a non-object (a
 *   string, an array) is KL_JSON_MISSING, like an absent member.
 * - When a member name repeats, the last one counts (as in JavaScript, Python,
 *   jansson); an earlier value, or anything under it, is forgotten.
 * - The key: a string gives its bytes unescaped (possibly empty, possibly
 *   holding NUL bytes); a number, true or false gives its text as written;
 *   null, an object or an array is KL_JSON_BAD_KEY, as is text longer than
 *   KL_JSON_KEY_MAX bytes.
 * - The value: a JSON number. is_int is set when it is written as an integer
 *   (no fraction, no exponent) that fits int64_t, and then inum is exact;
 *   num is always the nearest double. 1e3 and 1.0 are not is_int. A number
 *   outside double's range (1e400), one written with more than
 *   KL_JSON_NUMBER_MAX bytes, and anything that is not a number is
 *   KL_JSON_NOT_NUMBER.
 * - When several things are wrong the first of INVALID, key MISSING,
 *   BAD_KEY, value MISSING, NOT_NUMBER is returned.
 */
#ifndef KL_JSON_FIELD_H
#define KL_JSON_FIELD_H

#include <stddef.h>
#include <stdint.h>

#define KL_JPATH_MAX_DEPTH  16   /* parts in a dotted path */
#define KL_JPATH_PART_MAX   63   /* bytes in one part (parts[i] holds it NUL-terminated) */
#define KL_JSON_MAX_NESTING 64   /* objects and arrays open at once; deeper is INVALID */
#define KL_JSON_KEY_MAX     4096 /* bytes of key text; longer is BAD_KEY */
#define KL_JSON_NUMBER_MAX  4096 /* bytes of a number's text read as the value */

/* A compiled dotted path, e.g. "ctx.user": depth parts, parts[i] of part_len[i] bytes. */
typedef struct kl_jpath {
    int depth;
    uint8_t part_len[KL_JPATH_MAX_DEPTH];
    char parts[KL_JPATH_MAX_DEPTH][KL_JPATH_PART_MAX + 1];
} kl_jpath;

/*
 * Compile "a.b.c": 1..16 parts, each 1..63 bytes, split at '.', no empty
 * part (so no leading, trailing or doubled dot). Any other byte is part of a
 * name. 0, or KL_EINVAL with kl_errf context and *p unchanged.
 */
int kl_jpath_compile(kl_jpath *p, const char *dotted);

typedef enum kl_jstatus {
    KL_JSON_OK = 0,
    KL_JSON_INVALID = 1,    /* not JSON, or not one object */
    KL_JSON_MISSING = 2,    /* a field is absent (or its path crosses a non-object) */
    KL_JSON_NOT_NUMBER = 3, /* the value field is not a (finite) number */
    KL_JSON_BAD_KEY = 4,    /* the key field is an object, array or null, or too long */
} kl_jstatus;
#define KL_JSON_NSTATUS 5 /* for arrays of counters indexed by kl_jstatus */

/* A parser reused record after record by one thread; no allocation per record. */
typedef struct kl_jparser kl_jparser;

/* 0, or KL_ENOMEM with kl_errf context. */
int kl_jparser_new(kl_jparser **out);
void kl_jparser_free(kl_jparser *p); /* NULL is fine */

typedef struct kl_jresult {
    const char *key; /* valid until the next call on this parser */
    size_t key_len;
    double num; /* the rest only when a value path was given */
    int64_t inum;
    int is_int;
} kl_jresult;

/*
 * Parse the n bytes at rec (any bytes; the caller bounds n) and extract the
 * field at `key` and, if value != NULL, the number at `value`. *out is
 * filled on KL_JSON_OK and unspecified otherwise.
 */
kl_jstatus kl_json_extract(kl_jparser *p, const void *rec, size_t n, const kl_jpath *key,
                           const kl_jpath *value, kl_jresult *out);

/* A short name for counters and messages: "ok", "not JSON", "missing field", ... */
const char *kl_jstatus_name(kl_jstatus s);

#endif
