/*
 * agg.h - the in-memory aggregation of one view transaction: a hash table
 * from key to the key's current value (a number, or the latest record), so
 * a transaction of a million records writes one LMDB entry per distinct key
 * instead of one per record.
 *
 * Bounded: at most AGG_MAX_ENTRIES keys and AGG_MAX_ARENA_BYTES of long
 * keys and records; agg_room() says when the caller must flush (write every
 * entry into the transaction) and agg_clear() before adding more.
 */
#ifndef KL_AGG_H
#define KL_AGG_H

#include <stddef.h>
#include <stdint.h>

/* Keys held at once before a flush (the table has twice as many slots of 64 bytes). */
#define AGG_MAX_ENTRIES (1u << 19)
/* Bytes of long keys and records held at once before a flush. */
#define AGG_MAX_ARENA_BYTES (64u * 1024u * 1024u)
/* Keys up to this long live in their slot: a lookup then touches one cache line. */
#define AGG_INLINE_KEY 24u

/* A count or a sum: exact int64 until a double value or an overflow makes it a double. */
typedef struct agg_num {
    union {
        int64_t i;
        double d;
    };
    uint8_t is_double;
} agg_num;

/* One slot of the table (64 bytes: one cache line). key_len 0: empty. */
typedef struct agg_entry {
    uint32_t tag;     /* the hash's high 32 bits, compared before the key */
    uint16_t key_len; /* 1..KL_TXN_MAX_KEY_BYTES */
    uint16_t reserved;
    agg_num num;                        /* count and sum */
    uint32_t rec_off, rec_len, rec_cap; /* kv: the latest record, in the arena */
    uint32_t key_off;                   /* a key longer than AGG_INLINE_KEY, in the arena */
    uint8_t key[AGG_INLINE_KEY];
} agg_entry;

typedef struct agg_table {
    agg_entry *slots; /* open addressing, linear probing; nslots a power of two */
    uint32_t nslots, nentries;
    uint8_t *arena;
    size_t arena_len, arena_cap;
} agg_table;

int agg_init(agg_table *t);
void agg_free(agg_table *t);
void agg_clear(agg_table *t);

/* Can an entry with key_len + rec_len more bytes be added without a flush? */
int agg_room(const agg_table *t, size_t key_len, size_t rec_len);

/*
 * Find key's entry: 1 and *out set, or 0 if absent. With `add` an absent
 * key is added (the caller checked agg_room) with a zero number and no
 * record, and 2 returned; KL_ENOMEM if the table cannot grow. *out is valid
 * until the next agg_find that adds.
 */
int agg_find(agg_table *t, const void *key, size_t key_len, int add, agg_entry **out);

/*
 * The same in two steps, for a batch: hash every key and prefetch its slot
 * first, then look them up, so the cache misses of a batch overlap.
 */
uint64_t agg_hash(const void *key, size_t key_len);
static inline void agg_prefetch(const agg_table *t, uint64_t h) {
    __builtin_prefetch(&t->slots[(uint32_t)h & (t->nslots - 1)], 1);
}
int agg_find_hashed(agg_table *t, const void *key, size_t key_len, uint64_t h, int add,
                    agg_entry **out);

/*
 * Set e's record to the n bytes at rec (the caller checked agg_room for n).
 * KL_ENOMEM if the arena cannot grow.
 */
int agg_set_record(agg_table *t, agg_entry *e, const void *rec, size_t n);

static inline const uint8_t *agg_key(const agg_table *t, const agg_entry *e) {
    return e->key_len <= AGG_INLINE_KEY ? e->key : t->arena + e->key_off;
}
static inline const uint8_t *agg_record(const agg_table *t, const agg_entry *e) {
    return t->arena + e->rec_off;
}

/* The slot numbers of the entries sorted by key (LMDB's order): *order malloc'ed, nentries. */
int agg_sorted(const agg_table *t, uint32_t **order);

/* Add v to n in log order: stays int64 while both are integers and the sum fits. */
void agg_num_add(agg_num *n, int v_is_int, int64_t vi, double vd);

#endif
