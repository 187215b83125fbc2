/*
 * header.c - encoding and checking header slots (docs/FORMAT.md, "header").
 *
 * A slot that fails any check is simply not a candidate: the engine then
 * uses the other slot. Which slot wins, and when a slot may be overwritten,
 * is decided by the commit pipeline and recovery, not here.
 */
#include "header.h"

#include <xxhash.h>

#include "segment.h"
#include "util.h"

#define SLOT_CHECKSUM_AT (KL_HDR_SLOT_BYTES - 8u)
/* The signed tree (FORMAT.md, "header"). */
#define SLOT_KIND_AT    116u
#define SLOT_PK_AT      120u
#define SLOT_SIG_AT     152u /* u32 length, then KL_STORED_SIG_MAX bytes */
#define SLOT_ROOTS_AT   224u /* u32 count, u32 zero, then the roots */
#define SLOT_ROOT_BYTES 40u  /* hash, u64 size */
#define SLOT_USED_END   (SLOT_ROOTS_AT + 8u + KL_MAX_ROOTS * SLOT_ROOT_BYTES)
#define SLOT_SYNCED_AT  (SLOT_CHECKSUM_AT - 8u) /* u64 synced_end (version 3) */
_Static_assert(SLOT_USED_END <= SLOT_SYNCED_AT, "the slot holds 64 roots");

void kl_slot_encode(uint8_t *p, const kl_slot *s) {
    KL_ASSERT(s->active_segment <= s->length);
    KL_ASSERT(s->active_end >= KL_SEG_HEADER_BYTES);
    KL_ASSERT(s->synced_end <= s->active_end);
    memset(p, 0, KL_HDR_SLOT_BYTES);
    memcpy(p, KL_HDR_MAGIC, 8);
    kl_store32(p + 8, KL_HDR_VERSION);
    kl_store32(p + 12, KL_HDR_SLOT_BYTES);
    kl_store64(p + 16, s->seq);
    kl_store64(p + 24, s->length);
    kl_store64(p + 32, s->byte_length);
    kl_store64(p + 40, s->fork);
    kl_store64(p + 48, s->active_segment);
    kl_store64(p + 56, s->active_end);
    kl_store64(p + 64, s->commit_ms);
    p[72] = (uint8_t)s->cfg.fsync_mode;
    p[73] = (uint8_t)s->cfg.codec;
    p[74] = (uint8_t)(int8_t)s->cfg.codec_level;
    kl_store32(p + 76, s->cfg.fsync_interval_ms);
    kl_store64(p + 80, s->cfg.segment_bytes);
    kl_store64(p + 88, s->created_ms);
    memcpy(p + 96, s->boot_id, 16);
    kl_store32(p + 112, s->flags);
    p[SLOT_KIND_AT] = s->kind;
    memcpy(p + SLOT_PK_AT, s->public_key, KL_PK_BYTES);
    kl_store32(p + SLOT_SIG_AT, s->sig_len);
    memcpy(p + SLOT_SIG_AT + 4, s->sig, s->sig_len);
    kl_store32(p + SLOT_ROOTS_AT, s->nroots);
    for (uint32_t i = 0; i < s->nroots; i++) {
        uint8_t *r = p + SLOT_ROOTS_AT + 8 + i * SLOT_ROOT_BYTES;
        memcpy(r, s->roots[i].hash, KL_HASH_BYTES);
        kl_store64(r + KL_HASH_BYTES, s->roots[i].size);
    }
    kl_store64(p + SLOT_SYNCED_AT, s->synced_end);
    kl_store64(p + SLOT_CHECKSUM_AT, XXH3_64bits(p, SLOT_CHECKSUM_AT));
}

int kl_config_check(const kl_config *cfg) {
    if ((unsigned)cfg->fsync_mode > KL_FSYNC_NEVER)
        return kl_errf(KL_EINVAL, "unknown fsync policy %d", (int)cfg->fsync_mode);
    if (cfg->fsync_mode == KL_FSYNC_INTERVAL &&
        (cfg->fsync_interval_ms < 1 || cfg->fsync_interval_ms > 3600000))
        return kl_errf(KL_EINVAL, "fsync interval %u ms is outside 1..3600000",
                       cfg->fsync_interval_ms);
    if (cfg->segment_bytes < KL_MIN_SEGMENT_BYTES || cfg->segment_bytes > KL_MAX_SEGMENT_BYTES)
        return kl_errf(KL_EINVAL, "segment size %llu is outside %u..%u bytes",
                       (unsigned long long)cfg->segment_bytes, KL_MIN_SEGMENT_BYTES,
                       KL_MAX_SEGMENT_BYTES);
    if ((unsigned)cfg->codec > KL_CODEC_ZSTD)
        return kl_errf(KL_EINVAL, "unknown codec %d", (int)cfg->codec);
    if (cfg->codec_level < 0 || cfg->codec_level > 19)
        return kl_errf(KL_EINVAL, "zstd level %d is outside 0..19", cfg->codec_level);
    return 0;
}

int kl_slot_decode(const uint8_t *p, kl_slot *s) {
    if (memcmp(p, KL_HDR_MAGIC, 8) != 0)
        return kl_errf(KL_ECORRUPT, "no header magic");
    uint32_t version = kl_load32(p + 8);
    if (version != KL_HDR_VERSION && version != 2)
        return kl_errf(KL_ECORRUPT, "unknown header version %u", version);
    if (kl_load32(p + 12) != KL_HDR_SLOT_BYTES)
        return kl_errf(KL_ECORRUPT, "header slot size %u", kl_load32(p + 12));
    if (kl_load64(p + SLOT_CHECKSUM_AT) != XXH3_64bits(p, SLOT_CHECKSUM_AT))
        return kl_errf(KL_ECORRUPT, "header slot checksum mismatch");
    memset(s, 0, sizeof *s);
    s->seq = kl_load64(p + 16);
    s->length = kl_load64(p + 24);
    s->byte_length = kl_load64(p + 32);
    s->fork = kl_load64(p + 40);
    s->active_segment = kl_load64(p + 48);
    s->active_end = kl_load64(p + 56);
    s->commit_ms = kl_load64(p + 64);
    s->cfg.fsync_mode = (kl_fsync_mode)p[72];
    s->cfg.codec = (kl_codec)p[73];
    s->cfg.codec_level = (int8_t)p[74];
    s->cfg.fsync_interval_ms = kl_load32(p + 76);
    s->cfg.segment_bytes = kl_load64(p + 80);
    s->created_ms = kl_load64(p + 88);
    memcpy(s->boot_id, p + 96, 16);
    s->flags = kl_load32(p + 112);
    if (p[75] != 0 || (s->flags & ~KL_SLOT_ORDERED) != 0)
        return kl_errf(KL_ECORRUPT, "header slot reserved bits set");
    s->kind = p[SLOT_KIND_AT];
    s->cfg.compat = s->kind == KL_CORE_COMPAT;
    memcpy(s->public_key, p + SLOT_PK_AT, KL_PK_BYTES);
    s->sig_len = kl_load32(p + SLOT_SIG_AT);
    s->nroots = kl_load32(p + SLOT_ROOTS_AT);
    if (s->kind > KL_CORE_COMPAT || p[117] || p[118] || p[119])
        return kl_errf(KL_ECORRUPT, "header slot: unknown core kind %u", s->kind);
    if (s->sig_len != 0 &&
        s->sig_len != (s->kind == KL_CORE_COMPAT ? KL_STORED_SIG_COMPAT : KL_STORED_SIG_V1))
        return kl_errf(KL_ECORRUPT, "header slot: signature of %u bytes", s->sig_len);
    memcpy(s->sig, p + SLOT_SIG_AT + 4, s->sig_len);
    uint64_t idx[KL_MAX_ROOTS];
    size_t want = kl_ft_full_roots(s->length, idx);
    if (s->nroots != want || kl_load32(p + SLOT_ROOTS_AT + 4) != 0)
        return kl_errf(KL_ECORRUPT, "header slot: %u roots for length %llu", s->nroots,
                       (unsigned long long)s->length);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < s->nroots; i++) {
        const uint8_t *r = p + SLOT_ROOTS_AT + 8 + i * SLOT_ROOT_BYTES;
        s->roots[i].index = idx[i];
        memcpy(s->roots[i].hash, r, KL_HASH_BYTES);
        s->roots[i].size = kl_load64(r + KL_HASH_BYTES);
        if (s->roots[i].size > UINT64_MAX - sum)
            return kl_errf(KL_ECORRUPT, "header slot: root sizes overflow");
        sum += s->roots[i].size;
    }
    if (sum != s->byte_length)
        return kl_errf(KL_ECORRUPT, "header slot: roots cover %llu bytes, byte length is %llu",
                       (unsigned long long)sum, (unsigned long long)s->byte_length);
    for (unsigned i = SLOT_SIG_AT + 4 + s->sig_len; i < SLOT_ROOTS_AT; i++)
        if (p[i] != 0)
            return kl_errf(KL_ECORRUPT, "header slot reserved area not zero");
    unsigned reserved_end = version == 2 ? SLOT_CHECKSUM_AT : SLOT_SYNCED_AT;
    for (unsigned i = SLOT_ROOTS_AT + 8 + s->nroots * SLOT_ROOT_BYTES; i < reserved_end; i++)
        if (p[i] != 0)
            return kl_errf(KL_ECORRUPT, "header slot reserved area not zero");
    s->synced_end = version == 2 ? 0 : kl_load64(p + SLOT_SYNCED_AT);
    if (s->active_segment > s->length || s->active_end < KL_SEG_HEADER_BYTES ||
        s->active_end > (UINT64_C(1) << 48) || s->synced_end > s->active_end)
        return kl_errf(KL_ECORRUPT, "header slot positions out of range");
    if (kl_config_check(&s->cfg) < 0)
        return kl_errf(KL_ECORRUPT, "header slot settings out of range");
    return 0;
}

void kl_slot_tree_hash(const kl_slot *s, uint8_t out[KL_HASH_BYTES]) {
    kl_hc_tree_hash(s->roots, s->nroots, out);
}

int kl_slot_verify(const kl_slot *s) {
    if (s->sig_len == 0)
        return kl_errf(KL_EVERIFY,
                       "the state at length %llu is not signed: its writer stopped between a "
                       "commit and its signature (its next writable open signs it), or it is a "
                       "replica between two lengths its peer signed",
                       (unsigned long long)s->length);
    uint8_t th[KL_HASH_BYTES], key[KL_HASH_BYTES];
    kl_slot_tree_hash(s, th);
    kl_hc_core_key((kl_core_kind)s->kind, s->public_key, key);
    return kl_hc_verify((kl_core_kind)s->kind, s->public_key, key, th, s->length, s->fork, s->sig,
                        s->sig_len);
}
