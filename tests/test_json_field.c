/*
 * test_json_field.c - the views' JSON field extraction (consumers/json_field.c;
 * the rules are in json_field.h, the choice of yajl in docs/JSON.md).
 *
 * What this proves: a key field comes back as a string's unescaped bytes
 * (\u00e9, surrogate pairs, \u0000, escaped member names) or a number's or
 * bool's text as written, and a value field as a number with is_int exactly
 * for integer literals that fit int64; dotted paths find nested members and
 * only them, a missing part or a path through a non-object is MISSING, and
 * the last of repeated members counts; null/object/array keys and keys over
 * 4096 bytes are BAD_KEY, non-numbers and numbers past double's range are
 * NOT_NUMBER; every kind of invalid record measured in docs/JSON.md is
 * INVALID (truncation, trailing bytes, non-object top level, bad UTF-8, lone
 * surrogate escapes, raw control bytes, NaN, comments...), nesting deeper
 * than 64 is refused without recursion even at a million levels; the parser
 * is reused across good and bad records, including ones that push yajl past
 * its arena; and on seeded random and mutated records it agrees with jansson.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumers/json_field.h"
#include "engine/util.h"

static kl_jparser *P;

static int setup(void **state) {
    (void)state;
    return kl_jparser_new(&P);
}

static int teardown(void **state) {
    (void)state;
    kl_jparser_free(P);
    P = NULL;
    return 0;
}

static kl_jpath path(const char *dotted) {
    kl_jpath p;
    assert_int_equal(kl_jpath_compile(&p, dotted), 0);
    return p;
}

/* The n bytes copied to a buffer of exactly n bytes (a sanitizer build catches any overread). */
static kl_jstatus ex_n(const void *rec, size_t n, const char *key, const char *value,
                       kl_jresult *r) {
    kl_jpath kp = path(key), vp;
    if (value)
        vp = path(value);
    void *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, rec, n);
    memset(r, 0, sizeof *r);
    kl_jstatus st = kl_json_extract(P, copy, n, &kp, value ? &vp : NULL, r);
    free(copy); /* the key must not point into the record */
    return st;
}

static kl_jstatus ex(const char *rec, const char *key, const char *value, kl_jresult *r) {
    return ex_n(rec, strlen(rec), key, value, r);
}

/* The record gives exactly this key (len bytes). */
static void expect_key(const char *rec, const char *key, const char *want, size_t len) {
    kl_jresult r;
    assert_int_equal(ex(rec, key, NULL, &r), KL_JSON_OK);
    assert_int_equal(r.key_len, len);
    assert_memory_equal(r.key, want, len);
}

static void expect_status(const char *rec, const char *key, const char *value, kl_jstatus want) {
    kl_jresult r;
    kl_jstatus st = ex(rec, key, value, &r);
    if (st != want)
        fail_msg("%s (key %s, value %s): %s, want %s", rec, key, value ? value : "-",
                 kl_jstatus_name(st), kl_jstatus_name(want));
}

/* The record's "v" as a number: is_int, inum and num as given. */
static void expect_number(const char *v, int is_int, int64_t inum, double num) {
    char rec[256];
    snprintf(rec, sizeof rec, "{\"k\":\"x\",\"v\":%s}", v);
    kl_jresult r;
    assert_int_equal(ex(rec, "k", "v", &r), KL_JSON_OK);
    if (r.is_int != is_int || (is_int && r.inum != inum) || r.num != num)
        fail_msg("%s: is_int %d inum %lld num %.17g", v, r.is_int, (long long)r.inum, r.num);
}

static void test_a_demo_record_gives_its_user_and_amount(void **state) {
    (void)state;
    const char *rec =
        "{\"seq\":12,\"ts\":1764072000036,\"user\":\"user-0042\",\"type\":\"purchase\","
        "\"amount\":137}";
    kl_jresult r;
    assert_int_equal(ex(rec, "user", "amount", &r), KL_JSON_OK);
    assert_int_equal(r.key_len, 9);
    assert_memory_equal(r.key, "user-0042", 9);
    assert_true(r.is_int);
    assert_int_equal(r.inum, 137);
    assert_true(r.num == 137.0);
    /* Without a value path only the key is read; whitespace anywhere between tokens is fine. */
    expect_key(" \t\r\n{ \"user\" : \"u\" , \"amount\" : [ ] }\n ", "user", "u", 1);
}

static void test_escapes_are_unescaped(void **state) {
    (void)state;
    expect_key("{\"k\":\"caf\\u00e9\"}", "k", "caf\xc3\xa9", 5);
    expect_key("{\"k\":\"caf\xc3\xa9\"}", "k", "caf\xc3\xa9", 5);
    expect_key("{\"k\":\"\\ud83d\\ude00!\"}", "k", "\xf0\x9f\x98\x80!", 5); /* a surrogate pair */
    expect_key("{\"k\":\"\\uD834\\uDD1E\"}", "k", "\xf0\x9d\x84\x9e", 4);
    expect_key("{\"k\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", "k", "\"\\/\b\f\n\r\t", 8);
    expect_key("{\"k\":\"a\\u0000b\"}", "k", "a\0b", 3);
    /* A backslash run just before a closing quote, then an escape: the raw scan must not lose its
     * place. */
    expect_key("{\"k\":\"x\\\\\",\"j\":\"\\\\\\\"\\u00e9\"}", "j", "\\\"\xc3\xa9", 4);
    expect_key("{\"k\":\"x\\\\\",\"j\":\"\\\\\\\"\\u00e9\"}", "k", "x\\", 2);
    /* Member names are compared unescaped. */
    expect_key("{\"\\u0075ser\":\"u1\"}", "user", "u1", 2);
    expect_key("{\"caf\\u00e9\":{\"n\\u00e9\":\"v\"}}", "caf\xc3\xa9.n\xc3\xa9", "v", 1);
}

static void test_numbers_ints_floats_negative_exponent_huge(void **state) {
    (void)state;
    expect_number("0", 1, 0, 0.0);
    expect_number("-0", 1, 0, 0.0);
    expect_number("42", 1, 42, 42.0);
    expect_number("-17", 1, -17, -17.0);
    expect_number("9223372036854775807", 1, INT64_MAX, 9223372036854775807.0);
    expect_number("-9223372036854775808", 1, INT64_MIN, -9223372036854775808.0);
    expect_number("9223372036854775808", 0, 0, 9223372036854775808.0); /* past int64 */
    expect_number("-9223372036854775809", 0, 0, -9223372036854775809.0);
    expect_number("1.5", 0, 0, 1.5);
    expect_number("-0.25", 0, 0, -0.25);
    expect_number("1.0", 0, 0, 1.0); /* integrality is read from the text, not the value */
    expect_number("1e3", 0, 0, 1000.0);
    expect_number("1E+3", 0, 0, 1000.0);
    expect_number("25e-2", 0, 0, 0.25);
    expect_number("0.1", 0, 0, 0.1);
    expect_number("1e308", 0, 0, 1e308);
    expect_number("1e-400", 0, 0, 0.0); /* underflow is a number: zero */
    expect_number("123456789012345678901234567890", 0, 0, 123456789012345678901234567890.0);
    /* Past double's range there is nothing to sum. */
    expect_status("{\"k\":\"x\",\"v\":1e400}", "k", "v", KL_JSON_NOT_NUMBER);
    expect_status("{\"k\":\"x\",\"v\":-1e400}", "k", "v", KL_JSON_NOT_NUMBER);
    /* A number written with more than KL_JSON_NUMBER_MAX bytes is not read as a value. */
    char rec[KL_JSON_NUMBER_MAX + 64];
    int at = snprintf(rec, sizeof rec, "{\"k\":\"x\",\"v\":0.");
    memset(rec + at, '1', KL_JSON_NUMBER_MAX);
    strcpy(rec + at + KL_JSON_NUMBER_MAX, "}");
    expect_status(rec, "k", "v", KL_JSON_NOT_NUMBER);
    rec[at + KL_JSON_NUMBER_MAX - 3] = '}';
    rec[at + KL_JSON_NUMBER_MAX - 2] = 0;
    expect_status(rec, "k", "v", KL_JSON_OK);
}

static void test_a_number_or_bool_key_is_its_text_as_written(void **state) {
    (void)state;
    expect_key("{\"k\":1e3}", "k", "1e3", 3);
    expect_key("{\"k\":-0.50}", "k", "-0.50", 5);
    expect_key("{\"k\":12345678901234567890123}", "k", "12345678901234567890123", 23);
    expect_key("{\"k\":true}", "k", "true", 4);
    expect_key("{\"k\":false}", "k", "false", 5);
    expect_key("{\"k\":\"\"}", "k", "", 0); /* the empty string is a key, of length 0 */
}

static void test_nested_paths_find_only_their_member(void **state) {
    (void)state;
    const char *rec = "{\"user\":\"top\",\"ctx\":{\"user\":\"inner\",\"n\":{\"user\":\"deep\"}},"
                      "\"list\":[{\"user\":\"in-array\"}],\"amount\":3}";
    expect_key(rec, "user", "top", 3);
    expect_key(rec, "ctx.user", "inner", 5);
    expect_key(rec, "ctx.n.user", "deep", 4);
    expect_status(rec, "list.user", NULL, KL_JSON_MISSING); /* paths do not enter arrays */
    expect_status(rec, "n.user", NULL, KL_JSON_MISSING);    /* nor skip levels */
    /* A member of the same name before, after and beside the path does not confuse it. */
    expect_key("{\"b\":0,\"a\":{\"x\":{\"b\":1},\"b\":{\"c\":\"yes\"},\"c\":2},\"c\":3}", "a.b.c",
               "yes", 3);
    expect_key("{\"a\":{\"b\":[1,{\"c\":\"no\"}]},\"c\":\"top\"}", "c", "top", 3);
    /* Sixteen parts. */
    char deep[512] = "", want[] = "at16";
    const char *p16 = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p";
    size_t at = 0;
    for (int i = 0; i < 16; i++)
        at += (size_t)snprintf(deep + at, sizeof deep - at, "{\"%c\":", 'a' + i);
    at += (size_t)snprintf(deep + at, sizeof deep - at, "\"%s\"", want);
    for (int i = 0; i < 16; i++)
        deep[at++] = '}';
    deep[at] = 0;
    expect_key(deep, p16, want, 4);
    kl_jresult r;
    assert_int_equal(ex(deep, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o", NULL, &r), KL_JSON_BAD_KEY);
}

static void test_missing_parts_are_missing(void **state) {
    (void)state;
    expect_status("{}", "user", NULL, KL_JSON_MISSING);
    expect_status("{\"users\":\"u\",\"use\":\"u\"}", "user", NULL, KL_JSON_MISSING);
    expect_status("{\"ctx\":{}}", "ctx.user", NULL, KL_JSON_MISSING);
    expect_status("{\"user\":\"u\"}", "ctx.user", NULL, KL_JSON_MISSING);
    expect_status("{\"ctx\":{\"a\":{\"user\":\"u\"}}}", "ctx.user", NULL, KL_JSON_MISSING);
    expect_status("{\"user\":\"u\"}", "user", "amount", KL_JSON_MISSING);
    expect_status("{\"user\":\"u\",\"amount\":{}}", "user", "amount.x", KL_JSON_MISSING);
    /* The first problem wins: key missing before a bad value, a bad key before a missing value. */
    expect_status("{\"amount\":\"x\"}", "user", "amount", KL_JSON_MISSING);
    expect_status("{\"user\":null}", "user", "amount", KL_JSON_BAD_KEY);
}

static void test_a_path_through_a_non_object_is_missing(void **state) {
    (void)state;
    const char *recs[] = {"{\"ctx\":\"user\"}", "{\"ctx\":[{\"user\":\"u\"}]}",
                          "{\"ctx\":null}",     "{\"ctx\":5}",
                          "{\"ctx\":true}",     "{\"ctx\":[]}"};
    for (size_t i = 0; i < sizeof recs / sizeof recs[0]; i++) {
        expect_status(recs[i], "ctx.user", NULL, KL_JSON_MISSING);
        char rec[64];
        snprintf(rec, sizeof rec, "{\"k\":\"x\",\"v\":%s}", strchr(recs[i], ':') + 1);
        rec[strlen(rec) - 1] = 0; /* drop one of the two closing braces */
        expect_status(rec, "k", "v.n", KL_JSON_MISSING);
    }
}

static void test_bad_keys_and_values_that_are_not_numbers(void **state) {
    (void)state;
    expect_status("{\"user\":null}", "user", NULL, KL_JSON_BAD_KEY);
    expect_status("{\"user\":{\"a\":1}}", "user", NULL, KL_JSON_BAD_KEY);
    expect_status("{\"user\":[]}", "user", NULL, KL_JSON_BAD_KEY);
    expect_status("{\"user\":\"u\",\"amount\":\"12\"}", "user", "amount", KL_JSON_NOT_NUMBER);
    expect_status("{\"user\":\"u\",\"amount\":true}", "user", "amount", KL_JSON_NOT_NUMBER);
    expect_status("{\"user\":\"u\",\"amount\":null}", "user", "amount", KL_JSON_NOT_NUMBER);
    expect_status("{\"user\":\"u\",\"amount\":{\"n\":1}}", "user", "amount", KL_JSON_NOT_NUMBER);
    expect_status("{\"user\":\"u\",\"amount\":[1]}", "user", "amount", KL_JSON_NOT_NUMBER);
    /* Key text: 4096 bytes are a key, 4097 are not (also when escapes make up the length). */
    static char rec[2 * KL_JSON_KEY_MAX + 64];
    for (int extra = 0; extra <= 1; extra++) {
        int at = snprintf(rec, sizeof rec, "{\"user\":\"");
        memset(rec + at, 'k', KL_JSON_KEY_MAX + (size_t)extra);
        strcpy(rec + at + KL_JSON_KEY_MAX + extra, "\"}");
        expect_status(rec, "user", NULL, extra ? KL_JSON_BAD_KEY : KL_JSON_OK);
        at = snprintf(rec, sizeof rec, "{\"user\":\"\\u00e9");
        memset(rec + at, 'k', KL_JSON_KEY_MAX - 2 + (size_t)extra);
        strcpy(rec + at + KL_JSON_KEY_MAX - 2 + extra, "\"}");
        expect_status(rec, "user", NULL, extra ? KL_JSON_BAD_KEY : KL_JSON_OK);
    }
}

static void test_the_last_of_repeated_members_counts(void **state) {
    (void)state;
    expect_key("{\"user\":\"first\",\"user\":\"second\"}", "user", "second", 6);
    expect_key("{\"user\":{\"x\":1},\"user\":\"c\"}", "user", "c", 1);
    expect_status("{\"user\":\"c\",\"user\":{}}", "user", NULL, KL_JSON_BAD_KEY);
    expect_status("{\"ctx\":{\"user\":\"a\"},\"ctx\":{\"x\":1}}", "ctx.user", NULL,
                  KL_JSON_MISSING);
    expect_status("{\"ctx\":{\"user\":\"a\"},\"ctx\":7}", "ctx.user", NULL, KL_JSON_MISSING);
    expect_key("{\"ctx\":{\"x\":1},\"ctx\":{\"user\":\"b\"}}", "ctx.user", "b", 1);
    expect_key("{\"ctx\":{\"user\":\"a\",\"user\":\"b\"}}", "ctx.user", "b", 1);
    kl_jresult r;
    assert_int_equal(ex("{\"k\":\"x\",\"v\":1,\"v\":2.5}", "k", "v", &r), KL_JSON_OK);
    assert_false(r.is_int);
    assert_true(r.num == 2.5);
    assert_int_equal(ex("{\"k\":\"x\",\"v\":1.5,\"v\":2}", "k", "v", &r), KL_JSON_OK);
    assert_true(r.is_int && r.inum == 2);
    expect_status("{\"k\":\"x\",\"v\":1,\"v\":\"2\"}", "k", "v", KL_JSON_NOT_NUMBER);
}

/* Every kind of invalid record of docs/JSON.md's table (and a few more). */
static void test_invalid_json_of_each_kind_is_refused(void **state) {
    (void)state;
    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
    } bad[] = {
        {"{\"seq\":1,\"user\":\"user-1\",\"amount\":", 0}, /* truncated */
        {"{\"seq\":1,\"user\":\"us", 0},
        {"{\"user\":\"u\"", 0},
        {"{\"user\"", 0},
        {"{", 0},
        {"", 0},
        {" \n", 0},
        {"}", 0},
        {"{\"user\":\"u\"} x", 0}, /* trailing bytes */
        {"{\"user\":\"u\"}{\"user\":\"v\"}", 0},
        {"{\"user\":\"u\"} {}", 0},
        {"{\"user\":\"u\"}}", 0},
        {"{\"user\":\"u\"} \"abc", 0}, /* a token cut short after the object */
        {"{\"user\":\"u\"}\"", 0},
        {"{\"user\":\"u\"} 12", 0},
        {"{\"user\":\"u\"}-", 0},
        {"{\"user\":\"u\"} t", 0},
        {"{\"user\":\"u\"}\n{", 0},
        {"{\"user\":\v\"u\"}", 0}, /* not JSON's whitespace (yajl's) */
        {"{\"user\":\"u\"}\f", 0},
        {"\f{\"user\":\"u\"}", 0},
        {"{\"user\":\"u\"}\0", 13},
        {"\0{\"user\":\"u\"}", 13},
        {"[{\"user\":\"u\"}]", 0}, /* not an object */
        {"\"user\"", 0},
        {"42", 0},
        {"null", 0},
        {"true", 0},
        {"{\"user\":\"\xff\"}", 0}, /* bad UTF-8 */
        {"{\"user\":\"\xc0\xaf\"}", 0},
        {"{\"user\":\"\xe0\x80\xaf\"}", 0},
        {"{\"user\":\"\xed\xa0\x80\"}", 0},
        {"{\"user\":\"\xf4\x90\x80\x80\"}", 0},
        {"{\"user\":\"\xf8\x88\x80\x80\x80\"}", 0},
        {"{\"user\":\"\xe2\x82\"}", 0},
        {"{\"user\":\"\x80\"}", 0},
        {"{\"\xff\":\"u\"}", 0},
        {"{\"user\":\"u\",\"x\":\"\xc3\"}", 0},
        {"{\"user\":\"\\ud800\"}", 0}, /* surrogate escapes that are not a pair */
        {"{\"user\":\"\\udc00\"}", 0},
        {"{\"user\":\"\\ud800\\u0041\"}", 0},
        {"{\"user\":\"\\ud800\\ud800\"}", 0},
        {"{\"user\":\"\\ud800x\"}", 0},
        {"{\"user\":\"\\udc00\\ud800\"}", 0},
        {"{\"\\ud800\":\"u\"}", 0},
        {"{\"user\":\"\\u12\"}", 0}, /* other bad escapes */
        {"{\"user\":\"\\x41\"}", 0},
        {"{\"user\":\"\\\"}", 0},
        {"{\"user\":\"a\0b\"}", 12}, /* raw control bytes */
        {"{\"user\":\"a\tb\"}", 0},
        {"{\"user\":\"a\nb\"}", 0},
        {"{\"user\":\"u\",}", 0}, /* not JSON's grammar */
        {"{'user':'u'}", 0},
        {"{user:\"u\"}", 0},
        {"{\"user\":\"u\"/*c*/}", 0},
        {"{\"user\":\"u\"}//c", 0},
        {"{\"user\":\"u\",\"v\":01}", 0},
        {"{\"user\":\"u\",\"v\":NaN}", 0},
        {"{\"user\":\"u\",\"v\":Infinity}", 0},
        {"{\"user\":\"u\",\"v\":-}", 0},
        {"{\"user\":\"u\",\"v\":1.}", 0},
        {"{\"user\":\"u\",\"v\":.5}", 0},
        {"{\"user\":\"u\",\"v\":+1}", 0},
        {"{\"user\":\"u\",\"v\":0x10}", 0},
        {"{\"user\":\"u\",\"v\":1e}", 0},
        {"{\"user\":\"u\",\"v\":tru}", 0},
        {"{\"user\":\"u\" \"v\":1}", 0},
        {"{\"user\" \"u\"}", 0},
        {"{\"user\":\"u\",,\"v\":1}", 0},
        {"{\"user\":[1,]}", 0},
        {"{\"user\":[1 2]}", 0},
        {"\xef\xbb\xbf{\"user\":\"u\"}", 0}, /* a byte order mark is not JSON */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = bad[i].len ? bad[i].len : strlen(bad[i].text);
        kl_jresult r;
        kl_jstatus st = ex_n(bad[i].text, n, "user", "v", &r);
        if (st != KL_JSON_INVALID)
            fail_msg("case %zu (%.*s): %s, want not JSON", i, (int)n, bad[i].text,
                     kl_jstatus_name(st));
        /* The parser is still good for the next record. */
        expect_key("{\"user\":\"ok\"}", "user", "ok", 2);
    }
}

/* n levels of arrays (or objects) under "x", closed or not: a record of about 2n bytes. */
static char *nested(size_t n, int objects, int closed, size_t *len) {
    char *s = malloc(n * 6 + 64);
    assert_non_null(s);
    size_t at = (size_t)sprintf(s, "{\"user\":\"u\",\"x\":");
    for (size_t i = 0; i < n; i++)
        at += (size_t)sprintf(s + at, "%s", objects ? "{\"a\":" : "[");
    if (objects)
        s[at++] = '1';
    for (size_t i = 0; closed && i < n; i++)
        s[at++] = objects ? '}' : ']';
    if (closed)
        s[at++] = '}';
    *len = at;
    return s;
}

static void test_nesting_past_64_is_refused_without_recursion(void **state) {
    (void)state;
    /* The top-level object is level 1: 63 more fit, 64 more do not. */
    static const struct {
        size_t n;
        kl_jstatus want;
    } cases[] = {{62, KL_JSON_OK},
                 {63, KL_JSON_OK},
                 {64, KL_JSON_INVALID},
                 {10000, KL_JSON_INVALID},
                 {1000000, KL_JSON_INVALID}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int objects = 0; objects <= 1; objects++)
            for (int closed = 0; closed <= 1; closed++) {
                size_t len;
                char *s = nested(cases[i].n, objects, closed, &len);
                kl_jresult r;
                kl_jstatus want = closed ? cases[i].want : KL_JSON_INVALID;
                kl_jstatus st = ex_n(s, len, "user", NULL, &r);
                if (st != want)
                    fail_msg("depth %zu objects %d closed %d: %s", cases[i].n, objects, closed,
                             kl_jstatus_name(st));
                free(s);
            }
    /* A path may end inside the deepest level allowed. */
    size_t len;
    char *s = nested(63, 1, 1, &len);
    char p[200] = "x";
    for (int i = 1; i < 16; i++)
        strcat(p, ".a");
    kl_jresult r;
    assert_int_equal(ex_n(s, len, p, NULL, &r), KL_JSON_BAD_KEY); /* an object at level 17 */
    free(s);
}

/* Records past the parser's arena: long escaped strings and long cut tokens go to the heap. */
static void test_big_records_and_bad_ones_leave_the_parser_reusable(void **state) {
    (void)state;
    size_t big = 200000;
    char *s = malloc(big + 64);
    assert_non_null(s);
    for (int round = 0; round < 3; round++) {
        /* A long string with escapes beside the key. */
        int at = sprintf(s, "{\"user\":\"u%d\",\"blob\":\"", round);
        for (size_t i = 0; i < big / 6; i++)
            at += sprintf(s + at, "\\u00e9");
        strcpy(s + at, "\"}");
        expect_key(s, "user", round == 0 ? "u0" : round == 1 ? "u1" : "u2", 2);
        /* The same string as the key: too long. */
        memcpy(s, "{\"user\":\"xx\",\"user\":", 20);
        expect_status(s, "user", NULL, KL_JSON_BAD_KEY);
        /* Cut in the middle of the long string: yajl buffers the token, then it is refused. */
        kl_jresult r;
        assert_int_equal(ex_n(s, (size_t)at / 2, "user", NULL, &r), KL_JSON_INVALID);
        expect_key("{\"user\":\"small\"}", "user", "small", 5);
    }
    free(s);
}

static void test_paths_compile_from_1_to_16_parts_of_1_to_63_bytes(void **state) {
    (void)state;
    kl_jpath p = path("ctx.user");
    assert_int_equal(p.depth, 2);
    assert_string_equal(p.parts[0], "ctx");
    assert_int_equal(p.part_len[1], 4);
    assert_string_equal(p.parts[1], "user");
    char part63[64], part64[65];
    memset(part63, 'p', 63);
    part63[63] = 0;
    memset(part64, 'p', 64);
    part64[64] = 0;
    assert_int_equal(path(part63).part_len[0], 63);
    assert_int_equal(path("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p").depth, 16);
    assert_int_equal(path("caf\xc3\xa9 au lait.-").depth, 2); /* any byte but '.' */
    const char *bad[] = {"", ".", "a.", ".a", "a..b", part64, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kl_jpath q = path("keep.me");
        assert_int_equal(kl_jpath_compile(&q, bad[i]), KL_EINVAL);
        assert_int_equal(q.depth, 2); /* unchanged */
        assert_string_equal(q.parts[1], "me");
        assert_non_null(strstr(kl_err_thread(), "JSON path"));
    }
    assert_int_equal(kl_jpath_compile(&p, NULL), KL_EINVAL);
    assert_int_equal(kl_jpath_compile(NULL, "a"), KL_EINVAL);
}

static void test_status_names(void **state) {
    (void)state;
    assert_string_equal(kl_jstatus_name(KL_JSON_OK), "ok");
    assert_string_equal(kl_jstatus_name(KL_JSON_INVALID), "not JSON");
    assert_string_equal(kl_jstatus_name(KL_JSON_MISSING), "missing field");
    assert_string_equal(kl_jstatus_name(KL_JSON_NOT_NUMBER), "not a number");
    assert_string_equal(kl_jstatus_name(KL_JSON_BAD_KEY), "bad key");
    assert_string_equal(kl_jstatus_name((kl_jstatus)99), "unknown status");
}

/* ---- agreement with jansson on seeded random and mutated records ---- */

static const char *const NAMES[] = {"user", "ctx", "amount", "a", "\\u0075ser", "caf\\u00e9"};
static const char *const STRINGS[] = {
    "u",         "",        "caf\\u00e9", "\\ud83d\\ude00",  "\xc3\xa9",
    "\\\"q\\\\", "\\u0000", "user-0042",  "\xf0\x9f\x98\x80"};
static const char *const NUMBERS[] = {
    "0", "-1", "137", "1.5", "-2.5e3", "1e3", "0.1", "9223372036854775807", "-0"};

static void gen_value(char *s, size_t cap, size_t *at, uint64_t *seed, int depth);

static void gen_object(char *s, size_t cap, size_t *at, uint64_t *seed, int depth) {
    int members = (int)(tu_rand(seed) % 5);
    *at += (size_t)snprintf(s + *at, cap - *at, "{");
    for (int i = 0; i < members && *at + 200 < cap; i++) {
        *at += (size_t)snprintf(s + *at, cap - *at, "%s\"%s\":", i ? "," : "",
                                NAMES[tu_rand(seed) % 6]);
        gen_value(s, cap, at, seed, depth + 1);
    }
    *at += (size_t)snprintf(s + *at, cap - *at, "}");
}

static void gen_value(char *s, size_t cap, size_t *at, uint64_t *seed, int depth) {
    uint64_t kind = tu_rand(seed) % (depth > 4 ? 4 : 7);
    if (*at + 200 >= cap)
        kind = 3;
    if (kind == 0)
        *at += (size_t)snprintf(s + *at, cap - *at, "\"%s\"", STRINGS[tu_rand(seed) % 9]);
    else if (kind == 1)
        *at += (size_t)snprintf(s + *at, cap - *at, "%s", NUMBERS[tu_rand(seed) % 9]);
    else if (kind == 2)
        *at += (size_t)snprintf(s + *at, cap - *at, "%s",
                                (const char *[]){"true", "false", "null"}[tu_rand(seed) % 3]);
    else if (kind == 3)
        *at += (size_t)snprintf(s + *at, cap - *at, "\"s\"");
    else if (kind <= 5)
        gen_object(s, cap, at, seed, depth);
    else {
        *at += (size_t)snprintf(s + *at, cap - *at, "[");
        gen_value(s, cap, at, seed, depth + 1);
        *at += (size_t)snprintf(s + *at, cap - *at, "]");
    }
}

/* jansson's reading of a path: objects only, last member wins (as json_object_get gives). */
static json_t *jansson_path(json_t *v, const kl_jpath *p) {
    for (int i = 0; v && i < p->depth; i++)
        v = json_is_object(v) ? json_object_get(v, p->parts[i]) : NULL;
    return v;
}

/* What jansson says the record gives; -1 where the two rules differ by design. */
static int jansson_status(const char *s, size_t n, const kl_jpath *kp, const kl_jpath *vp,
                          json_t **root) {
    json_error_t err;
    *root = json_loadb(s, n, JSON_ALLOW_NUL, &err);
    if (!*root)
        return strstr(err.text, "too big") || strstr(err.text, "overflow") ||
                       strstr(err.text, "NUL")
                   ? -1 /* numbers past its range, NUL in member names: not JSON errors */
                   : KL_JSON_INVALID;
    if (!json_is_object(*root))
        return KL_JSON_INVALID;
    json_t *k = jansson_path(*root, kp), *v = jansson_path(*root, vp);
    if (!k)
        return KL_JSON_MISSING;
    if (!json_is_string(k) && !json_is_number(k) && !json_is_boolean(k))
        return KL_JSON_BAD_KEY;
    if (!v)
        return KL_JSON_MISSING;
    return json_is_number(v) ? KL_JSON_OK : KL_JSON_NOT_NUMBER;
}

static void agree(const char *s, size_t n, const kl_jpath *kp, const kl_jpath *vp) {
    json_t *root = NULL;
    int want = jansson_status(s, n, kp, vp, &root);
    kl_jresult r;
    kl_jstatus st = kl_json_extract(P, s, n, kp, vp, &r);
    if (want >= 0 && (int)st != want)
        fail_msg("%.*s: %s, jansson says %s", (int)n, s, kl_jstatus_name(st),
                 kl_jstatus_name((kl_jstatus)want));
    if (want == KL_JSON_OK) {
        json_t *k = jansson_path(root, kp), *v = jansson_path(root, vp);
        if (json_is_string(k)) {
            assert_int_equal(r.key_len, json_string_length(k));
            assert_memory_equal(r.key, json_string_value(k), r.key_len);
        }
        if (json_is_integer(v))
            assert_true(r.is_int && r.inum == json_integer_value(v));
        else
            assert_true(!r.is_int && r.num == json_real_value(v));
    }
    json_decref(root);
}

static void test_random_and_mutated_records_agree_with_jansson(void **state) {
    (void)state;
    static const char *const paths[][2] = {
        {"user", "amount"}, {"ctx.user", "amount"}, {"a", "a"}, {"ctx.a.user", "ctx.amount"}};
    uint64_t seed = 20261125;
    char s[2048];
    for (int i = 0; i < 4000; i++) {
        size_t n = 0;
        gen_object(s, sizeof s, &n, &seed, 0);
        const char *const *pp = paths[tu_rand(&seed) % 4];
        kl_jpath kp = path(pp[0]), vp = path(pp[1]);
        agree(s, n, &kp, &vp);
        for (int m = 0; m < 3 && n > 0; m++) { /* replace, drop or insert a byte */
            size_t at = tu_rand(&seed) % n;
            uint64_t op = tu_rand(&seed) % 3;
            const char pool[] = "{}[]\",:\\u0 e.-1\x80\xc3\xff";
            char c = pool[tu_rand(&seed) % (sizeof pool - 1)];
            if (op == 0)
                s[at] = c;
            else if (op == 1)
                memmove(s + at, s + at + 1, --n - at);
            else if (n + 1 < sizeof s) {
                memmove(s + at + 1, s + at, n++ - at);
                s[at] = c;
            }
            agree(s, n, &kp, &vp);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_demo_record_gives_its_user_and_amount),
        cmocka_unit_test(test_escapes_are_unescaped),
        cmocka_unit_test(test_numbers_ints_floats_negative_exponent_huge),
        cmocka_unit_test(test_a_number_or_bool_key_is_its_text_as_written),
        cmocka_unit_test(test_nested_paths_find_only_their_member),
        cmocka_unit_test(test_missing_parts_are_missing),
        cmocka_unit_test(test_a_path_through_a_non_object_is_missing),
        cmocka_unit_test(test_bad_keys_and_values_that_are_not_numbers),
        cmocka_unit_test(test_the_last_of_repeated_members_counts),
        cmocka_unit_test(test_invalid_json_of_each_kind_is_refused),
        cmocka_unit_test(test_nesting_past_64_is_refused_without_recursion),
        cmocka_unit_test(test_big_records_and_bad_ones_leave_the_parser_reusable),
        cmocka_unit_test(test_paths_compile_from_1_to_16_parts_of_1_to_63_bytes),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_random_and_mutated_records_agree_with_jansson),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
