/*
 * jsonlibs.c - kappalog-jsonlibs: the measurement behind the choice of JSON
 * library for the materialized views (docs/JSON.md). Standalone: it is not
 * part of kappalog-bench and links the four Debian JSON libraries directly,
 * plus the views' own extraction module (consumers/json_field.c); the json-c
 * wrapper is in jsonlibs_jsonc.c.
 *
 * What it does, on one core: generates N events shaped like the demo's
 * (scripts/demo.sh), flat ({"user":...}) and nested ({"ctx":{"user":...}}),
 * and for each library fully parses every record, checks it is an object,
 * and extracts a dotted-path string (the view key) and a numeric field (the
 * summed value); the module is also run for the key alone, as the count and
 * kv views call it. It reports records/s of thread CPU time (median of R
 * runs; wall time beside it), allocations per record and peak heap (a malloc
 * interposer counts them, in a child process per library), and then each
 * library's answer to a table of bad inputs, each run in its own child so a
 * crash is reported instead of ending the run.
 *
 * What a reader would get wrong: every library gets the same (pointer,
 * length) with no NUL after it, as records come from a log; a library that
 * needs a NUL-terminated string pays for the copy here, as it would in the
 * views. The wrappers add only what the library lacks to reject a record that
 * is not one JSON object (a top-level type check for all; a trailing-bytes
 * check for cJSON and json-c; a NUL check for yajl's tree, whose input is a
 * C string); docs/JSON.md lists which.
 *
 * Usage: kappalog-jsonlibs [-n RECORDS] [-r RUNS] [--cpu K] [--only NAME]
 *                          [--no-speed] [--no-mem] [--no-bad]
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <jansson.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>
#include <yajl/yajl_version.h>

#include "consumers/json_field.h"
#include "jsonlibs.h"

#define KEY_COPY_MAX 64 /* the harness keeps this much of each key (to check it) */
#define MAX_RUNS     15 /* bound on -r */
#define DEEP_SMALL   10000u
#define DEEP_HUGE    1000000u
#define YAJL_ERR_MAX 128 /* yajl_tree_parse's error text buffer */

/* ---- counting allocator (not under a sanitizer, which owns malloc) ---- */

#if defined(__SANITIZE_ADDRESS__)
#define JL_NO_INTERPOSE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define JL_NO_INTERPOSE 1
#endif
#endif

static struct {
    int on;
    uint64_t calls;
    int64_t live, peak;
} g_alloc;

#ifndef JL_NO_INTERPOSE
/* glibc exports its allocator under these names; every library's calls land here. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t k, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static void alloc_note(int64_t delta, int is_call) {
    if (!g_alloc.on)
        return;
    g_alloc.calls += (uint64_t)is_call;
    g_alloc.live += delta;
    if (g_alloc.live > g_alloc.peak)
        g_alloc.peak = g_alloc.live;
}
void *malloc(size_t n) {
    void *p = __libc_malloc(n);
    if (p)
        alloc_note((int64_t)malloc_usable_size(p), 1);
    return p;
}
void *calloc(size_t k, size_t n) {
    void *p = __libc_calloc(k, n);
    if (p)
        alloc_note((int64_t)malloc_usable_size(p), 1);
    return p;
}
void *realloc(void *old, size_t n) {
    int64_t before = old ? (int64_t)malloc_usable_size(old) : 0;
    void *p = __libc_realloc(old, n);
    if (p)
        alloc_note((int64_t)malloc_usable_size(p) - before, 1);
    return p;
}
void free(void *p) {
    if (p)
        alloc_note(-(int64_t)malloc_usable_size(p), 0);
    __libc_free(p);
}
#endif

/* ---- the records ---- */

typedef struct corpus {
    char *buf;   /* records, each followed by '\n' (not part of it) */
    size_t *off; /* record i is buf[off[i] .. off[i+1]-1) */
    size_t n;
} corpus;

static uint64_t rng_next(uint64_t *s) {
    *s += 0x9e3779b97f4a7c15u; /* splitmix64 */
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* The demo's event (scripts/demo.sh) plus a "ref" field to bring it to ~100 bytes. */
static int event(char *out, size_t cap, uint64_t i, int nested, uint64_t *rng) {
    static const char *const kinds[] = {"click", "view", "purchase", "signup"};
    const char *k = kinds[rng_next(rng) % 4];
    unsigned user = (unsigned)(rng_next(rng) % 5000);
    unsigned amount = strcmp(k, "purchase") == 0 ? 1 + (unsigned)(rng_next(rng) % 200) : 0;
    unsigned ref = (unsigned)rng_next(rng);
    unsigned long long ts = 1764072000000ull + i * 3;
    if (nested)
        return snprintf(out, cap,
                        "{\"seq\":%" PRIu64 ",\"ts\":%llu,\"ctx\":{\"user\":\"user-%04u\"},"
                        "\"type\":\"%s\",\"amount\":%u,\"ref\":\"%08x\"}",
                        i, ts, user, k, amount, ref);
    return snprintf(out, cap,
                    "{\"seq\":%" PRIu64 ",\"ts\":%llu,\"user\":\"user-%04u\",\"type\":\"%s\","
                    "\"amount\":%u,\"ref\":\"%08x\"}",
                    i, ts, user, k, amount, ref);
}

static void corpus_make(corpus *c, size_t n, int nested) {
    enum { REC_MAX = 160 };
    c->n = n;
    c->buf = malloc(n * REC_MAX);
    c->off = malloc((n + 1) * sizeof *c->off);
    if (!c->buf || !c->off) {
        fprintf(stderr, "jsonlibs: out of memory for %zu records\n", n);
        exit(1);
    }
    uint64_t rng = 7;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        c->off[i] = at;
        int len = event(c->buf + at, REC_MAX, 100000 + i, nested, &rng);
        if (len <= 0 || len >= REC_MAX - 1)
            abort();
        at += (size_t)len;
        c->buf[at++] = '\n';
    }
    c->off[n] = at;
}

static size_t corpus_len(const corpus *c, size_t i) {
    return c->off[i + 1] - c->off[i] - 1;
}

/* ---- what every wrapper returns ---- */

typedef struct query {
    const char *key_dotted, *value_dotted;
    const char *key[KL_JPATH_MAX_DEPTH + 1]; /* NULL-terminated parts (yajl_tree's form) */
    const char *value[KL_JPATH_MAX_DEPTH + 1];
    char store[2][KL_JPATH_MAX_DEPTH * 64];
    kl_jpath kp, vp; /* the module's compiled paths */
} query;

typedef struct xout {
    char key[KEY_COPY_MAX];
    size_t key_len;
    double num;
} xout;

static void split_path(const char *dotted, char *store, const char **parts) {
    size_t n = strlen(dotted);
    if (n >= KL_JPATH_MAX_DEPTH * 64)
        abort();
    memcpy(store, dotted, n + 1);
    int d = 0;
    parts[d++] = store;
    for (char *s = store; *s; s++)
        if (*s == '.') {
            *s = 0;
            parts[d++] = s + 1;
        }
    parts[d] = NULL;
}

static void query_make(query *q, const char *key, const char *value) {
    q->key_dotted = key;
    q->value_dotted = value;
    split_path(key, q->store[0], q->key);
    split_path(value, q->store[1], q->value);
    if (kl_jpath_compile(&q->kp, key) != 0 || kl_jpath_compile(&q->vp, value) != 0)
        abort();
}

static void out_key(xout *o, const char *s, size_t n) {
    o->key_len = n;
    memcpy(o->key, s, n < KEY_COPY_MAX ? n : KEY_COPY_MAX);
}

static int only_space(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
    return 1;
}

/* ---- jansson: json_loadb (checks trailing bytes itself), json_object_get ---- */

static kl_jstatus x_jansson(const char *rec, size_t n, const query *q, xout *o) {
    json_error_t err;
    json_t *root = json_loadb(rec, n, 0, &err);
    if (!root)
        return KL_JSON_INVALID;
    kl_jstatus st = KL_JSON_INVALID;
    if (!json_is_object(root))
        goto out;
    json_t *v = root;
    st = KL_JSON_MISSING;
    for (int i = 0; q->key[i]; i++)
        if (!json_is_object(v) || !(v = json_object_get(v, q->key[i])))
            goto out;
    st = KL_JSON_BAD_KEY;
    if (json_is_string(v))
        out_key(o, json_string_value(v), json_string_length(v));
    else
        goto out;
    json_t *a = root;
    st = KL_JSON_MISSING;
    for (int i = 0; q->value[i]; i++)
        if (!json_is_object(a) || !(a = json_object_get(a, q->value[i])))
            goto out;
    st = json_is_number(a) ? KL_JSON_OK : KL_JSON_NOT_NUMBER;
    o->num = json_number_value(a);
out:
    json_decref(root);
    return st;
}

/* ---- json-c: in jsonlibs_jsonc.c (its names clash with jansson's) ---- */

static kl_jstatus x_jsonc(const char *rec, size_t n, const query *q, xout *o) {
    return jl_jsonc_extract(rec, n, q->key, q->value, o->key, KEY_COPY_MAX, &o->key_len, &o->num);
}

/* ---- cJSON: length-bounded parse; trailing bytes checked here ---- */

static kl_jstatus x_cjson(const char *rec, size_t n, const query *q, xout *o) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(rec, n, &end, 0);
    if (!root)
        return KL_JSON_INVALID;
    kl_jstatus st = KL_JSON_INVALID;
    if (!end || !only_space(end, rec + n) || !cJSON_IsObject(root))
        goto out;
    const cJSON *v = root;
    st = KL_JSON_MISSING;
    for (int i = 0; q->key[i]; i++)
        if (!cJSON_IsObject(v) || !(v = cJSON_GetObjectItemCaseSensitive(v, q->key[i])))
            goto out;
    st = KL_JSON_BAD_KEY;
    if (!cJSON_IsString(v))
        goto out;
    out_key(o, v->valuestring, strlen(v->valuestring));
    const cJSON *a = root;
    st = KL_JSON_MISSING;
    for (int i = 0; q->value[i]; i++)
        if (!cJSON_IsObject(a) || !(a = cJSON_GetObjectItemCaseSensitive(a, q->value[i])))
            goto out;
    st = cJSON_IsNumber(a) ? KL_JSON_OK : KL_JSON_NOT_NUMBER;
    o->num = a->valuedouble;
out:
    cJSON_Delete(root);
    return st;
}

/* ---- yajl_tree: the DOM; needs a NUL-terminated copy ---- */

static char *g_copy;
static size_t g_copy_cap;

static const char *nul_copy(const char *rec, size_t n) {
    if (n + 1 > g_copy_cap) {
        free(g_copy);
        g_copy_cap = n + 1 > 4096 ? n + 1 : 4096;
        g_copy = malloc(g_copy_cap);
        if (!g_copy)
            abort();
    }
    memcpy(g_copy, rec, n);
    g_copy[n] = 0;
    return g_copy;
}

static kl_jstatus x_yajl_tree(const char *rec, size_t n, const query *q, xout *o) {
    if (memchr(rec, 0, n)) /* a NUL would end the copy early and hide the rest */
        return KL_JSON_INVALID;
    char err[YAJL_ERR_MAX];
    yajl_val root = yajl_tree_parse(nul_copy(rec, n), err, sizeof err);
    if (!root)
        return KL_JSON_INVALID;
    kl_jstatus st = KL_JSON_INVALID;
    if (!YAJL_IS_OBJECT(root))
        goto out;
    yajl_val v = yajl_tree_get(root, (const char **)q->key, yajl_t_any);
    st = !v ? KL_JSON_MISSING : YAJL_IS_STRING(v) ? KL_JSON_OK : KL_JSON_BAD_KEY;
    if (st != KL_JSON_OK)
        goto out;
    const char *k = YAJL_GET_STRING(v);
    out_key(o, k, k ? strlen(k) : 0);
    yajl_val a = yajl_tree_get(root, (const char **)q->value, yajl_t_any);
    st = !a ? KL_JSON_MISSING : YAJL_IS_DOUBLE(a) ? KL_JSON_OK : KL_JSON_NOT_NUMBER;
    if (st == KL_JSON_OK)
        o->num = YAJL_GET_DOUBLE(a);
out:
    yajl_tree_free(root);
    return st;
}

/* ---- yajl's stream parser with no callbacks: the lexer+parser alone (a ceiling) ---- */

static kl_jstatus x_yajl_validate(const char *rec, size_t n, const query *q, xout *o) {
    (void)q;
    (void)o;
    yajl_handle h = yajl_alloc(NULL, NULL, NULL);
    if (!h)
        abort();
    yajl_status s = yajl_parse(h, (const unsigned char *)rec, n);
    if (s == yajl_status_ok)
        s = yajl_complete_parse(h);
    yajl_free(h);
    return s == yajl_status_ok ? KL_JSON_OK : KL_JSON_INVALID;
}

/* ---- the views' module: yajl's stream parser + path matching, no allocation ---- */

static kl_jparser *g_kl;

static void kl_setup(void) {
    if (kl_jparser_new(&g_kl) != 0)
        abort();
}

static void kl_teardown(void) {
    kl_jparser_free(g_kl);
    g_kl = NULL;
}

static kl_jstatus x_module(const char *rec, size_t n, const query *q, xout *o) {
    kl_jresult r;
    kl_jstatus st = kl_json_extract(g_kl, rec, n, &q->kp, &q->vp, &r);
    if (st == KL_JSON_OK) {
        out_key(o, r.key, r.key_len);
        o->num = r.num;
    }
    return st;
}

/* The key only, as the count and kv views ask for it (no value path). */
static kl_jstatus x_module_key(const char *rec, size_t n, const query *q, xout *o) {
    kl_jresult r;
    kl_jstatus st = kl_json_extract(g_kl, rec, n, &q->kp, NULL, &r);
    if (st == KL_JSON_OK)
        out_key(o, r.key, r.key_len);
    return st;
}

typedef struct jlib {
    const char *name;
    void (*setup)(void);
    void (*teardown)(void);
    kl_jstatus (*extract)(const char *rec, size_t n, const query *q, xout *o);
    int extracts; /* 0: no checksum against the others (validation only, or key only) */
    int bad_table;
} jlib;

static const jlib g_libs[] = {
    {"jansson", NULL, NULL, x_jansson, 1, 1},
    {"json-c", jl_jsonc_setup, jl_jsonc_teardown, x_jsonc, 1, 1},
    {"cJSON", NULL, NULL, x_cjson, 1, 1},
    {"yajl-tree", NULL, NULL, x_yajl_tree, 1, 1},
    {"yajl-validate", NULL, NULL, x_yajl_validate, 0, 1},
    {"kl_json_extract", kl_setup, kl_teardown, x_module, 1, 1},
    {"kl_json_key_only", kl_setup, kl_teardown, x_module_key, 0, 0},
};
#define NLIBS (sizeof g_libs / sizeof g_libs[0])

/* ---- speed ---- */

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n && i < KEY_COPY_MAX; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

/*
 * One pass over the corpus; the checksum proves every library extracted the
 * same things. Returns the thread's CPU seconds (what the records cost, even
 * on a machine other work shares) and sets *wall.
 */
static double run_once(const jlib *l, const corpus *c, const query *q, uint64_t *sum, size_t *bad,
                       double *wall) {
    uint64_t h = 0;
    size_t nbad = 0;
    double w0 = clock_s(CLOCK_MONOTONIC), t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (size_t i = 0; i < c->n; i++) {
        xout o = {{0}, 0, 0};
        kl_jstatus st = l->extract(c->buf + c->off[i], corpus_len(c, i), q, &o);
        nbad += st != KL_JSON_OK;
        h += fnv(o.key, o.key_len) ^ (uint64_t)o.num;
    }
    double t = clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
    *wall = clock_s(CLOCK_MONOTONIC) - w0;
    *sum = h;
    *bad = nbad;
    return t;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One library's runs: rates sorted, and whether it extracted what the first library did. */
typedef struct speedrow {
    double rate[MAX_RUNS], wrate[MAX_RUNS];
    uint64_t sum;
    size_t bad;
} speedrow;

static void speed_print(const jlib *l, speedrow *s, const corpus *c, int runs, uint64_t *want) {
    qsort(s->rate, (size_t)runs, sizeof s->rate[0], cmp_double);
    qsort(s->wrate, (size_t)runs, sizeof s->wrate[0], cmp_double);
    const char *check = "";
    if (s->bad)
        check = "  RECORDS REFUSED";
    else if (l->extracts && *want && s->sum != *want)
        check = "  CHECKSUM DIFFERS";
    if (l->extracts && !*want && !s->bad)
        *want = s->sum;
    double med = s->rate[runs / 2];
    printf("  %-16s %9.0f rec/s  %5.0f ns/rec  %6.1f MB/s  (runs %.0f..%.0f; wall %.0f rec/s)%s\n",
           l->name, med, 1e9 / med, med * (double)(c->off[c->n] - c->n) / (double)c->n / 1e6,
           s->rate[0], s->rate[runs - 1], s->wrate[runs / 2], check);
}

/*
 * Run r of every library, then run r + 1 of every library: a burst of load
 * from elsewhere on the machine then falls on all of them alike, not on
 * whichever library happened to be running.
 */
static void speed(const jlib *const *libs, size_t nl, const corpus *c, const query *q, int runs) {
    speedrow *rows = calloc(nl, sizeof *rows);
    if (!rows)
        abort();
    for (int r = 0; r < runs; r++)
        for (size_t k = 0; k < nl; k++) {
            if (libs[k]->setup)
                libs[k]->setup();
            double wall;
            rows[k].rate[r] =
                (double)c->n / run_once(libs[k], c, q, &rows[k].sum, &rows[k].bad, &wall);
            rows[k].wrate[r] = (double)c->n / wall;
            if (libs[k]->teardown)
                libs[k]->teardown();
        }
    uint64_t want = 0;
    for (size_t k = 0; k < nl; k++)
        speed_print(libs[k], &rows[k], c, runs, &want);
    free(rows);
}

/* ---- memory: in a child per library, so each starts from the same heap ---- */

static long statm_rss_kib(void) {
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void memory(const jlib *l, const corpus *c, const query *q) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (l->setup)
            l->setup();
        uint64_t sum;
        size_t bad;
        double wall;
        corpus warm = {c->buf, c->off, c->n < 1000 ? c->n : 1000};
        run_once(l, &warm, q, &sum, &bad, &wall); /* lazy first-use allocations */
        long rss0 = statm_rss_kib();
        g_alloc.calls = 0;
        g_alloc.live = g_alloc.peak = 0;
        g_alloc.on = 1;
        run_once(l, c, q, &sum, &bad, &wall);
        g_alloc.on = 0;
        long rss1 = statm_rss_kib();
        printf("  %-16s %8.2f allocs/rec  heap peak %8" PRId64 " B  heap after %6" PRId64
               " B  RSS growth %6ld KiB\n",
               l->name, (double)g_alloc.calls / (double)c->n, g_alloc.peak, g_alloc.live,
               rss1 - rss0);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
}

/* ---- bad input ---- */

typedef struct badcase {
    const char *name;
    const char *text; /* NULL: built by make_deep */
    size_t len;       /* 0: strlen(text) */
    int valid;        /* 1: valid JSON (the row says what each library makes of it) */
} badcase;

#define S(name, text, valid)                                                                       \
    { name, text, sizeof(text) - 1, valid }
static const badcase g_bad[] = {
    S("truncated", "{\"seq\":1,\"user\":\"user-1\",\"amount\":", 0),
    S("truncated in string", "{\"seq\":1,\"user\":\"us", 0),
    S("empty record", "", 0),
    S("trailing garbage", "{\"user\":\"u\",\"amount\":1} x", 0),
    S("trailing cut token", "{\"user\":\"u\",\"amount\":1} \"abc", 0),
    S("trailing number", "{\"user\":\"u\",\"amount\":1} 12", 0),
    S("two objects", "{\"user\":\"u\",\"amount\":1}{\"user\":\"v\"}", 0),
    S("NUL after object", "{\"user\":\"u\",\"amount\":1}\0", 0),
    S("vertical tab as blank", "{\"user\":\v\"u\",\"amount\":1}", 0),
    S("trailing whitespace", "{\"user\":\"u\",\"amount\":1} \n", 1),
    S("top-level array", "[{\"user\":\"u\",\"amount\":1}]", 0),
    S("top-level string", "\"user\"", 0),
    S("top-level number", "42", 0),
    S("UTF-8 bad byte FF", "{\"user\":\"\xff\",\"amount\":1}", 0),
    S("UTF-8 overlong C0 AF", "{\"user\":\"\xc0\xaf\",\"amount\":1}", 0),
    S("UTF-8 surrogate ED A0 80", "{\"user\":\"\xed\xa0\x80\",\"amount\":1}", 0),
    S("UTF-8 above U+10FFFF", "{\"user\":\"\xf4\x90\x80\x80\",\"amount\":1}", 0),
    S("UTF-8 cut sequence", "{\"user\":\"\xe2\x82\",\"amount\":1}", 0),
    S("escape lone \\ud800", "{\"user\":\"\\ud800\",\"amount\":1}", 0),
    S("escape \\ud800\\u0041", "{\"user\":\"\\ud800\\u0041\",\"amount\":1}", 0),
    S("escape \\u0000 (valid)", "{\"user\":\"a\\u0000b\",\"amount\":1}", 1),
    S("raw NUL in string", "{\"user\":\"a\0b\",\"amount\":1}", 0),
    S("raw tab in string", "{\"user\":\"a\tb\",\"amount\":1}", 0),
    S("duplicate key", "{\"user\":\"first\",\"user\":\"second\",\"amount\":1}", 1),
    S("trailing comma", "{\"user\":\"u\",\"amount\":1,}", 0),
    S("single quotes", "{'user':'u','amount':1}", 0),
    S("comment", "{\"user\":\"u\"/*c*/,\"amount\":1}", 0),
    S("leading zero", "{\"user\":\"u\",\"amount\":01}", 0),
    S("NaN", "{\"user\":\"u\",\"amount\":NaN}", 0),
    S("number 1e400", "{\"user\":\"u\",\"amount\":1e400}", 1),
    S("number 70 digits",
      "{\"user\":\"u\",\"amount\":"
      "1234567890123456789012345678901234567890123456789012345678901234567890}",
      1),
    {"depth 10k objects", NULL, DEEP_SMALL, 1},
    {"depth 10k arrays", NULL, DEEP_SMALL + 1, 1},
    {"depth 1M arrays", NULL, DEEP_HUGE + 1, 1},
    {"depth 100k unclosed", NULL, 100000 + 2, 0},
};
#undef S
#define NBAD (sizeof g_bad / sizeof g_bad[0])

/* Nesting cases: len encodes the shape (even: objects, odd: arrays, +2: left open). */
static char *make_deep(const badcase *b, size_t *n) {
    size_t depth = b->len & ~(size_t)3, cap = depth * 6 + 64, at = 0;
    int arrays = (b->len & 1) != 0, closed = (b->len & 2) == 0;
    char *s = malloc(cap);
    if (!s)
        abort();
    at += (size_t)sprintf(s, "{\"user\":\"u\",\"amount\":1,\"x\":");
    for (size_t i = 0; i < depth; i++)
        at += (size_t)sprintf(s + at, "%s", arrays ? "[" : "{\"a\":");
    if (!arrays)
        s[at++] = '1';
    for (size_t i = 0; closed && i < depth; i++)
        s[at++] = arrays ? ']' : '}';
    if (closed)
        s[at++] = '}';
    *n = at;
    return s;
}

static void show_key(char *out, size_t cap, const xout *o) {
    size_t at = 0;
    for (size_t i = 0; i < o->key_len && i < KEY_COPY_MAX && at + 5 < cap; i++) {
        unsigned char ch = (unsigned char)o->key[i];
        at += (size_t)(ch >= 0x20 && ch < 0x7f ? snprintf(out + at, cap - at, "%c", ch)
                                               : snprintf(out + at, cap - at, "\\x%02x", ch));
    }
    out[at] = 0;
}

/* One library on one case, in a child: prints what it answered, or how it died. */
static void bad_one(const jlib *l, const badcase *b, const query *q) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        size_t n = b->len;
        char *heap = b->text ? NULL : make_deep(b, &n);
        const char *text = b->text ? b->text : heap;
        char *exact = malloc(n ? n : 1); /* exactly n bytes, nothing after them */
        memcpy(exact, text, n);
        if (l->setup)
            l->setup();
        xout o = {{0}, 0, 0};
        kl_jstatus st = l->extract(exact, n, q, &o);
        char key[4 * KEY_COPY_MAX + 8];
        show_key(key, sizeof key, &o);
        if (st == KL_JSON_OK && l->extracts)
            printf(" %-20.20s", key);
        else if (st == KL_JSON_OK)
            printf(" %-20s", "accepted");
        else
            printf(" %-20s", st == KL_JSON_INVALID ? "refused" : kl_jstatus_name(st));
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        printf(" %-20s", WTERMSIG(status) == 11 ? "CRASH (SIGSEGV)" : "CRASH (signal)");
    else if (WEXITSTATUS(status) != 0)
        printf(" %-20s", "exit != 0");
}

static void bad_inputs(const jlib *const *libs, size_t nl, const query *q) {
    printf("\nbad input (the key \"user\" as extracted, or the status; each case in a child)\n");
    printf("%-26s", "case");
    for (size_t k = 0; k < nl; k++)
        printf(" %-20s", libs[k]->name);
    printf("\n");
    for (size_t i = 0; i < NBAD; i++) {
        printf("%-26s", g_bad[i].name);
        for (size_t k = 0; k < nl; k++)
            bad_one(libs[k], &g_bad[i], q);
        printf("\n");
    }
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr, "usage: kappalog-jsonlibs [-n RECORDS] [-r RUNS] [--cpu K] [--only NAME]"
                    " [--no-speed] [--no-mem] [--no-bad]\n");
    exit(2);
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        fprintf(stderr, "jsonlibs: cannot pin to cpu %d: %s\n", cpu, strerror(errno));
}

int main(int argc, char **argv) {
    size_t n = 1000000;
    int runs = 5, cpu = -1, do_speed = 1, do_mem = 1, do_bad = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cpu") == 0 && i + 1 < argc)
            cpu = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--no-speed") == 0)
            do_speed = 0;
        else if (strcmp(argv[i], "--no-mem") == 0)
            do_mem = 0;
        else if (strcmp(argv[i], "--no-bad") == 0)
            do_bad = 0;
        else
            usage();
    }
    if (n == 0 || runs < 1 || runs > MAX_RUNS)
        usage();
    pin(cpu >= 0 ? cpu : sched_getcpu());

    const jlib *libs[NLIBS];
    size_t nl = 0;
    for (size_t k = 0; k < NLIBS; k++)
        if (!only || strcmp(only, g_libs[k].name) == 0)
            libs[nl++] = &g_libs[k];
    if (nl == 0)
        usage();

    printf(
        "kappalog-jsonlibs: %zu records, median of %d interleaved runs (rates by thread CPU time),"
        " one thread on cpu %d\n",
        n, runs, sched_getcpu());
    printf("libraries: jansson %s, json-c %s, cJSON %d.%d.%d, yajl %d\n", JANSSON_VERSION,
           jl_jsonc_version(), CJSON_VERSION_MAJOR, CJSON_VERSION_MINOR, CJSON_VERSION_PATCH,
           yajl_version());
#ifdef JL_NO_INTERPOSE
    do_mem = 0;
    printf("(sanitizer build: allocation counts not measured)\n");
#endif
    static const char *const variants[][3] = {{"flat", "user", "amount"},
                                              {"nested", "ctx.user", "amount"}};
    for (int v = 0; v < 2 && (do_speed || do_mem); v++) {
        corpus c;
        corpus_make(&c, n, v == 1);
        query q;
        query_make(&q, variants[v][1], variants[v][2]);
        printf("\n%s records (key %s, value %s), mean %.1f bytes, e.g.\n  %.*s\n", variants[v][0],
               variants[v][1], variants[v][2], (double)(c.off[n] - n) / (double)n,
               (int)corpus_len(&c, 0), c.buf);
        if (do_speed)
            speed(libs, nl, &c, &q, runs);
        for (size_t k = 0; do_mem && k < nl; k++)
            memory(libs[k], &c, &q);
        free(c.buf);
        free(c.off);
    }
    if (do_bad) {
        query q;
        query_make(&q, "user", "amount");
        size_t nb = 0;
        for (size_t k = 0; k < nl; k++)
            if (libs[k]->bad_table)
                libs[nb++] = libs[k];
        bad_inputs(libs, nb, &q);
    }
    return 0;
}
