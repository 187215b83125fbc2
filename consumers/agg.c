/*
 * agg.c - the per-transaction aggregation table of the built-in views
 * (agg.h): open addressing with linear probing over XXH3 hashes, the
 * entries in the slots themselves (64 bytes each, the hash's high bits as a
 * tag and short keys inline), long keys and kv records in one arena
 * addressed by offsets (so the arena can be reallocated without fixing
 * pointers).
 *
 * Why this shape: with 100,000 distinct keys in a transaction the table is
 * far bigger than the CPU caches, so each record's lookup costs the cache
 * misses it takes. A slot that holds the tag, the key and the value costs
 * one; a slot pointing to an entry pointing to a key cost three, and was
 * the largest item in the profile of a count view.
 *
 * Invariants: nentries <= nslots / 2 (a probe always ends at an empty
 * slot), nentries <= AGG_MAX_ENTRIES, arena_len <= AGG_MAX_ARENA_BYTES.
 *
 * The one thing a reader would get wrong: a kv entry's record is replaced
 * in place only when the new one fits the old one's room; otherwise it
 * takes new arena bytes and the old ones are wasted until agg_clear. The
 * arena bound (agg_room) therefore counts every record set, not just the
 * distinct keys, and a stream of updates to one key still flushes in time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "agg.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../engine/util.h"

#define AGG_FIRST_SLOTS 8192u
#define AGG_FIRST_ARENA (1u << 20)

_Static_assert(sizeof(agg_entry) == 64, "a slot is one cache line");

static uint64_t hash_of(const void *key, size_t n) {
    return XXH3_64bits(key, n);
}

/* The slot where key (hash h) is, or the empty slot where it would go. */
static agg_entry *probe(const agg_table *t, const void *key, size_t n, uint64_t h) {
    uint32_t mask = t->nslots - 1, tag = (uint32_t)(h >> 32);
    for (uint32_t s = (uint32_t)h & mask;; s = (s + 1) & mask) {
        agg_entry *e = &t->slots[s];
        if (e->key_len == 0 ||
            (e->tag == tag && e->key_len == n && memcmp(agg_key(t, e), key, n) == 0))
            return e;
    }
}

/* Twice the slots, every entry moved to its place in the new table. */
static int grow_slots(agg_table *t) {
    uint32_t n = t->nslots ? t->nslots * 2 : AGG_FIRST_SLOTS;
    KL_ASSERT(n <= 2 * AGG_MAX_ENTRIES);
    agg_entry *old = t->slots, *slots = calloc(n, sizeof *slots);
    if (!slots)
        return kl_errf(KL_ENOMEM, "view aggregation: %u slots", n);
    uint32_t old_n = t->nslots;
    t->slots = slots;
    t->nslots = n;
    for (uint32_t i = 0; i < old_n; i++) {
        if (old[i].key_len == 0)
            continue;
        uint64_t h = hash_of(agg_key(t, &old[i]), old[i].key_len);
        *probe(t, agg_key(t, &old[i]), old[i].key_len, h) = old[i];
    }
    free(old);
    return 0;
}

int agg_init(agg_table *t) {
    memset(t, 0, sizeof *t);
    t->arena = malloc(AGG_FIRST_ARENA);
    if (!t->arena)
        return kl_errf(KL_ENOMEM, "view aggregation arena");
    t->arena_cap = AGG_FIRST_ARENA;
    int rc = grow_slots(t);
    if (rc < 0)
        agg_free(t);
    return rc;
}

void agg_free(agg_table *t) {
    free(t->slots);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

void agg_clear(agg_table *t) {
    if (t->nentries)
        memset(t->slots, 0, (size_t)t->nslots * sizeof *t->slots);
    t->nentries = 0;
    t->arena_len = 0;
}

int agg_room(const agg_table *t, size_t key_len, size_t rec_len) {
    return t->nentries < AGG_MAX_ENTRIES && key_len + rec_len <= AGG_MAX_ARENA_BYTES &&
           t->arena_len + key_len + rec_len <= AGG_MAX_ARENA_BYTES;
}

/* n bytes of arena; the offset in *off. The caller checked agg_room. */
static int arena_take(agg_table *t, size_t n, uint32_t *off) {
    KL_ASSERT(t->arena_len + n <= AGG_MAX_ARENA_BYTES);
    if (t->arena_len + n > t->arena_cap) {
        size_t cap = t->arena_cap;
        while (cap < t->arena_len + n)
            cap *= 2;
        cap = KL_MIN(cap, (size_t)AGG_MAX_ARENA_BYTES);
        uint8_t *a = realloc(t->arena, cap);
        if (!a)
            return kl_errf(KL_ENOMEM, "view aggregation arena of %zu bytes", cap);
        t->arena = a;
        t->arena_cap = cap;
    }
    *off = (uint32_t)t->arena_len;
    t->arena_len += n;
    return 0;
}

/* Fill the empty slot e with key. */
static int add_entry(agg_table *t, agg_entry *e, const void *key, size_t n, uint64_t h) {
    KL_ASSERT(e->key_len == 0 && n > 0 && n <= UINT16_MAX);
    memset(e, 0, sizeof *e);
    if (n <= AGG_INLINE_KEY) {
        memcpy(e->key, key, n);
    } else {
        int rc = arena_take(t, n, &e->key_off);
        if (rc < 0)
            return rc;
        memcpy(t->arena + e->key_off, key, n);
    }
    e->tag = (uint32_t)(h >> 32);
    e->key_len = (uint16_t)n;
    t->nentries++;
    return 2;
}

uint64_t agg_hash(const void *key, size_t key_len) {
    return hash_of(key, key_len);
}

int agg_find(agg_table *t, const void *key, size_t key_len, int add, agg_entry **out) {
    return agg_find_hashed(t, key, key_len, hash_of(key, key_len), add, out);
}

int agg_find_hashed(agg_table *t, const void *key, size_t key_len, uint64_t h, int add,
                    agg_entry **out) {
    KL_ASSERT(t->nslots > 0 && t->nentries * 2 <= t->nslots);
    agg_entry *e = probe(t, key, key_len, h);
    if (e->key_len) {
        *out = e;
        return 1;
    }
    if (!add)
        return 0;
    KL_ASSERT(agg_room(t, key_len, 0));
    if ((t->nentries + 1) * 2 > t->nslots) {
        int rc = grow_slots(t);
        if (rc < 0)
            return rc;
        e = probe(t, key, key_len, h);
    }
    *out = e;
    return add_entry(t, e, key, key_len, h);
}

int agg_set_record(agg_table *t, agg_entry *e, const void *rec, size_t n) {
    if (n > e->rec_cap) {
        uint32_t off = 0; /* set by arena_take when it succeeds */
        int rc = arena_take(t, n, &off);
        if (rc < 0)
            return rc;
        e->rec_off = off;
        e->rec_cap = (uint32_t)n;
    }
    if (n)
        memcpy(t->arena + e->rec_off, rec, n);
    e->rec_len = (uint32_t)n;
    return 0;
}

static int cmp_keys(const void *a, const void *b, void *ctx) {
    const agg_table *t = ctx;
    const agg_entry *x = &t->slots[*(const uint32_t *)a];
    const agg_entry *y = &t->slots[*(const uint32_t *)b];
    int c = memcmp(agg_key(t, x), agg_key(t, y), KL_MIN(x->key_len, y->key_len));
    if (c)
        return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

int agg_sorted(const agg_table *t, uint32_t **order) {
    uint32_t *o = malloc(((size_t)t->nentries + 1) * sizeof *o);
    if (!o)
        return kl_errf(KL_ENOMEM, "sorting %u view keys", t->nentries);
    uint32_t n = 0;
    for (uint32_t s = 0; s < t->nslots; s++)
        if (t->slots[s].key_len)
            o[n++] = s;
    KL_ASSERT(n == t->nentries);
    qsort_r(o, n, sizeof *o, cmp_keys, (void *)t);
    *order = o;
    return 0;
}

void agg_num_add(agg_num *n, int v_is_int, int64_t vi, double vd) {
    int64_t r;
    if (!n->is_double && v_is_int && !__builtin_add_overflow(n->i, vi, &r)) {
        n->i = r;
        return;
    }
    if (!n->is_double) { /* from here on the sum is a double, as the fold's would be */
        double d = (double)n->i;
        n->d = d;
        n->is_double = 1;
    }
    n->d += v_is_int ? (double)vi : vd;
}
