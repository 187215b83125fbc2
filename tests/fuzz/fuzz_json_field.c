/*
 * fuzz_json_field.c - libFuzzer target for the views' JSON field extraction
 * (consumers/json_field.c; the rules are in json_field.h).
 *
 * Input: one byte choosing the key and value paths (from a small table of
 * one-, two- and three-part paths, with and without a value), then the
 * record. The record is copied to a buffer of exactly its length, so any
 * read past it is caught by AddressSanitizer.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash):
 * - the status is one of the five; on OK the key is at most KL_JSON_KEY_MAX
 *   bytes and readable, the number is finite and is_int implies num ==
 *   (double)inum;
 * - the same parser gives the same answer twice (reuse leaves nothing
 *   behind), and the same answer with whitespace appended; a record that is
 *   not INVALID becomes INVALID with a non-whitespace byte appended;
 * - against jansson (strict UTF-8, refuses lone surrogates, last duplicate
 *   wins, as json_field.h promises): the same status, and on OK the same
 *   key bytes for a string key and the same number. Skipped where the two
 *   differ by design: nesting deeper than 64 (jansson allows 2048; records
 *   with more than 64 '[' or '{' are not compared), numbers past int64 or
 *   double range (jansson refuses the whole record), NUL in member names.
 *   A raw NUL byte is INVALID by RFC 8259 (jansson with JSON_ALLOW_NUL takes
 *   one between tokens), so that is checked without jansson.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few records into DIR and exit.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers/json_field.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Member names the seeds use, so the fuzzer reaches every path often. */
static const char *const PATHS[][2] = {
    {"user", "amount"}, {"user", NULL}, {"ctx.user", "amount"}, {"a", "a"},
    {"a.b", "a.c"},     {"a.b.c", "v"}, {"v", "a.b"},           {"user", "ctx.amount"},
};
#define NPATHS (sizeof PATHS / sizeof PATHS[0])

static kl_jparser *g_parser;
static kl_jpath g_key[NPATHS], g_val[NPATHS];

typedef struct outcome {
    kl_jstatus st;
    kl_jresult r;
    uint8_t key[KL_JSON_KEY_MAX]; /* the key's bytes, copied before the next call */
} outcome;

static void run(const uint8_t *rec, size_t n, size_t which, outcome *o) {
    uint8_t *copy = malloc(n ? n : 1);
    KL_ASSERT(copy != NULL);
    memcpy(copy, rec, n);
    o->st = kl_json_extract(g_parser, copy, n, &g_key[which],
                            PATHS[which][1] ? &g_val[which] : NULL, &o->r);
    free(copy);
    KL_ASSERT(o->st >= KL_JSON_OK && o->st <= KL_JSON_BAD_KEY);
    if (o->st != KL_JSON_OK)
        return;
    KL_ASSERT(o->r.key != NULL && o->r.key_len <= KL_JSON_KEY_MAX);
    memcpy(o->key, o->r.key, o->r.key_len);
    if (PATHS[which][1]) {
        KL_ASSERT(isfinite(o->r.num));
        KL_ASSERT(!o->r.is_int || o->r.num == (double)o->r.inum);
    }
}

static int same(const outcome *a, const outcome *b) {
    if (a->st != b->st)
        return 0;
    if (a->st != KL_JSON_OK)
        return 1;
    return a->r.key_len == b->r.key_len && memcmp(a->key, b->key, a->r.key_len) == 0 &&
           a->r.is_int == b->r.is_int && a->r.inum == b->r.inum &&
           memcmp(&a->r.num, &b->r.num, sizeof a->r.num) == 0;
}

static json_t *jpath(json_t *v, const kl_jpath *p) {
    for (int i = 0; v && i < p->depth; i++)
        v = json_is_object(v) ? json_object_get(v, p->parts[i]) : NULL;
    return v;
}

/* jansson's answer under json_field.h's rules; -1 where they differ by design. */
static int reference(const uint8_t *rec, size_t n, size_t which, json_t **root) {
    size_t opens = 0;
    for (size_t i = 0; i < n; i++)
        opens += rec[i] == '[' || rec[i] == '{';
    if (opens > KL_JSON_MAX_NESTING)
        return -1;
    if (memchr(rec, 0, n))
        return KL_JSON_INVALID; /* never JSON (a raw control byte); jansson takes one as a blank */
    json_error_t err;
    *root = json_loadb((const char *)rec, n, JSON_ALLOW_NUL, &err);
    if (!*root)
        return strstr(err.text, "too big") || strstr(err.text, "overflow") ||
                       strstr(err.text, "NUL byte in object key")
                   ? -1
                   : KL_JSON_INVALID;
    if (!json_is_object(*root))
        return KL_JSON_INVALID;
    json_t *k = jpath(*root, &g_key[which]);
    if (!k)
        return KL_JSON_MISSING;
    if (!json_is_string(k) && !json_is_number(k) && !json_is_boolean(k))
        return KL_JSON_BAD_KEY;
    if (!PATHS[which][1])
        return KL_JSON_OK;
    json_t *v = jpath(*root, &g_val[which]);
    if (!v)
        return KL_JSON_MISSING;
    return json_is_number(v) ? KL_JSON_OK : KL_JSON_NOT_NUMBER;
}

static void compare(const uint8_t *rec, size_t n, size_t which, const outcome *o) {
    json_t *root = NULL;
    int want = reference(rec, n, which, &root);
    if (want >= 0)
        KL_ASSERT((int)o->st == want);
    if (want == KL_JSON_OK) {
        json_t *k = jpath(root, &g_key[which]);
        if (json_is_string(k))
            KL_ASSERT(o->r.key_len == json_string_length(k) &&
                      memcmp(o->key, json_string_value(k), o->r.key_len) == 0);
        json_t *v = PATHS[which][1] ? jpath(root, &g_val[which]) : NULL;
        if (json_is_integer(v))
            KL_ASSERT(o->r.is_int && o->r.inum == json_integer_value(v));
        else if (v)
            KL_ASSERT(!o->r.is_int && o->r.num == json_real_value(v));
    }
    json_decref(root);
}

static outcome g_a, g_b; /* 2 x 4 KiB: kept off the stack */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t which = data[0] % NPATHS, n = size - 1;
    const uint8_t *rec = data + 1;

    run(rec, n, which, &g_a);
    run(rec, n, which, &g_b);
    KL_ASSERT(same(&g_a, &g_b));
    compare(rec, n, which, &g_a);

    /* Whitespace after the record changes nothing; anything else after it makes it invalid. */
    uint8_t *more = malloc(n + 2);
    KL_ASSERT(more != NULL);
    memcpy(more, rec, n);
    memcpy(more + n, " \n", 2);
    run(more, n + 2, which, &g_b);
    KL_ASSERT(same(&g_a, &g_b));
    more[n] = 'x';
    run(more, n + 1, which, &g_b);
    KL_ASSERT(g_b.st == KL_JSON_INVALID);
    free(more);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

static void write_seeds(const char *dir) {
    static const char *const recs[] = {
        "\x00{\"seq\":12,\"ts\":1764072000036,\"user\":\"user-0042\",\"type\":\"click\",\"amount\":"
        "0}",
        "\x02{\"seq\":13,\"ctx\":{\"user\":\"user-0042\"},\"type\":\"purchase\",\"amount\":-1.5e3}",
        "\x04{\"a\":{\"b\":\"caf\\u00e9\",\"c\":12345678901234567890},\"a\":{\"b\":true,\"c\":0.1}"
        "}",
        "\x05{\"a\":{\"b\":{\"c\":\"\\ud83d\\ude00\\\"\\\\\"}},\"v\":[1,{\"x\":null}]}",
        "\x03{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"b\":[[[[]]]],\"c\":{}}",
        "\x07{\"user\":\"\",\"ctx\":{\"amount\":9223372036854775807}}",
        "\x06{\"v\":\"k\",\"a\":{\"b\":1e400}}",
        "\x01 {\"user\" : \"u\\u0000v\" } \n",
    };
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "record-%zu", i);
        write_seed(dir, name, recs[i], 1 + strlen(recs[i] + 1));
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    KL_ASSERT(kl_jparser_new(&g_parser) == 0);
    for (size_t i = 0; i < NPATHS; i++) {
        KL_ASSERT(kl_jpath_compile(&g_key[i], PATHS[i][0]) == 0);
        if (PATHS[i][1])
            KL_ASSERT(kl_jpath_compile(&g_val[i], PATHS[i][1]) == 0);
    }
    return 0;
}
