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

void kl_slot_encode(uint8_t *p, const kl_slot *s) {
    KL_ASSERT(s->active_segment <= s->length);
    KL_ASSERT(s->active_end >= KL_SEG_HEADER_BYTES);
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
    if (kl_load32(p + 8) != KL_HDR_VERSION)
        return kl_errf(KL_ECORRUPT, "unknown header version %u", kl_load32(p + 8));
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
    for (unsigned i = 116; i < SLOT_CHECKSUM_AT; i++)
        if (p[i] != 0)
            return kl_errf(KL_ECORRUPT, "header slot reserved area not zero");
    if (s->active_segment > s->length || s->active_end < KL_SEG_HEADER_BYTES)
        return kl_errf(KL_ECORRUPT, "header slot positions out of range");
    if (kl_config_check(&s->cfg) < 0)
        return kl_errf(KL_ECORRUPT, "header slot settings out of range");
    return 0;
}
