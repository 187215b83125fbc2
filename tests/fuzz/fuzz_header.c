/*
 * fuzz_header.c - libFuzzer target for the header slot decoder
 * (engine/header.c, docs/FORMAT.md "header"), with the segment file header
 * and the settings parsers beside it, since all three read bytes or text a
 * user or a crash may have damaged.
 *
 * Input: one header slot, padded with zeros or cut to 4096 bytes. It is
 * decoded as given (the checksum refuses nearly everything) and "resealed"
 * with its checksum recomputed, so the field and range checks see arbitrary
 * values. The same bytes go to kl_seg_header_decode (as given and resealed),
 * and the first bytes, as a string, to kl_config_parse_fsync and
 * kl_config_parse_codec.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash): a slot
 * that decodes has active_segment <= length, active_end >= 64, synced_end <=
 * active_end and settings kl_config_check accepts, re-encodes to the same
 * 4096 bytes (a version 2 slot: with that version), and decodes
 * again to the same fields; a segment header that decodes re-encodes to the
 * same fields; a settings string that parses gives a config that
 * kl_config_check accepts, and one that is refused leaves the config alone.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few valid slots into DIR and
 * exit (scripts/fuzz.sh uses them as the starting corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/header.h"
#include "engine/segment.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SLOT_CHECKSUM_AT (KL_HDR_SLOT_BYTES - 8u)

static int same_cfg(const kl_config *a, const kl_config *b) {
    return a->fsync_mode == b->fsync_mode && a->fsync_interval_ms == b->fsync_interval_ms &&
           a->segment_bytes == b->segment_bytes && a->codec == b->codec &&
           a->codec_level == b->codec_level;
}

static int same_slot(const kl_slot *a, const kl_slot *b) {
    return a->seq == b->seq && a->length == b->length && a->byte_length == b->byte_length &&
           a->fork == b->fork && a->active_segment == b->active_segment &&
           a->active_end == b->active_end && a->synced_end == b->synced_end &&
           a->commit_ms == b->commit_ms && a->created_ms == b->created_ms &&
           same_cfg(&a->cfg, &b->cfg);
}

static void drive_slot(const uint8_t *slot) {
    kl_slot s;
    if (kl_slot_decode(slot, &s) != 0)
        return;
    KL_ASSERT(s.active_segment <= s.length);
    KL_ASSERT(s.active_end >= KL_SEG_HEADER_BYTES);
    KL_ASSERT(s.synced_end <= s.active_end);
    KL_ASSERT(kl_config_check(&s.cfg) == 0);
    uint8_t *re = malloc(KL_HDR_SLOT_BYTES);
    KL_ASSERT(re != NULL);
    kl_slot_encode(re, &s);
    if (kl_load32(slot + 8) == 2) { /* read as version 3 with synced_end 0: its bytes again */
        KL_ASSERT(s.synced_end == 0);
        kl_store32(re + 8, 2);
        kl_store64(re + SLOT_CHECKSUM_AT, XXH3_64bits(re, SLOT_CHECKSUM_AT));
    }
    KL_ASSERT(memcmp(re, slot, KL_HDR_SLOT_BYTES) == 0);
    kl_slot t;
    KL_ASSERT(kl_slot_decode(re, &t) == 0);
    KL_ASSERT(same_slot(&s, &t));
    free(re);
}

static void drive_segment_header(const uint8_t *p, size_t size) {
    uint64_t first = size >= 24 ? kl_load64(p + 16) : 0;
    if (kl_seg_header_decode(p, size, first) != 0)
        return;
    KL_ASSERT(size >= KL_SEG_HEADER_BYTES);
    uint8_t re[KL_SEG_HEADER_BYTES];
    kl_seg_header_encode(re, first, kl_load64(p + 24));
    /* Bytes 32..55 are reserved; the decoder does not look at them. */
    KL_ASSERT(memcmp(re, p, 32) == 0);
    KL_ASSERT(kl_seg_header_decode(re, sizeof re, first) == 0);
    KL_ASSERT(first == UINT64_MAX || kl_seg_header_decode(p, size, first + 1) != 0);
}

static void drive_parsers(const uint8_t *data, size_t size) {
    char text[40];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    kl_config c, before;
    kl_config_default(&c);
    before = c;
    if (kl_config_parse_fsync(&c, text) == 0) {
        KL_ASSERT(kl_config_check(&c) == 0);
        KL_ASSERT(strcmp(text, "always") == 0 || strcmp(text, "never") == 0 ||
                  strncmp(text, "interval:", 9) == 0);
    } else {
        KL_ASSERT(same_cfg(&c, &before));
    }
    kl_config_default(&c);
    before = c;
    if (kl_config_parse_codec(&c, text) == 0) {
        KL_ASSERT(kl_config_check(&c) == 0);
        KL_ASSERT(strcmp(text, "none") == 0 || strncmp(text, "zstd", 4) == 0);
    } else {
        KL_ASSERT(same_cfg(&c, &before));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *slot = calloc(1, KL_HDR_SLOT_BYTES);
    KL_ASSERT(slot != NULL);
    memcpy(slot, data, size < KL_HDR_SLOT_BYTES ? size : KL_HDR_SLOT_BYTES);
    drive_slot(slot);
    kl_store64(slot + SLOT_CHECKSUM_AT, XXH3_64bits(slot, SLOT_CHECKSUM_AT));
    drive_slot(slot);
    free(slot);

    drive_segment_header(data, size);
    if (size >= KL_SEG_HEADER_BYTES) {
        uint8_t *seg = malloc(size);
        KL_ASSERT(seg != NULL);
        memcpy(seg, data, size);
        kl_store64(seg + 56, XXH3_64bits(seg, 56));
        drive_segment_header(seg, size);
        free(seg);
    }
    drive_parsers(data, size);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

static void write_seeds(const char *dir) {
    uint8_t *p = malloc(KL_HDR_SLOT_BYTES);
    KL_ASSERT(p != NULL);
    kl_slot s;
    memset(&s, 0, sizeof s);
    kl_config_default(&s.cfg);
    s.active_end = KL_SEG_HEADER_BYTES;
    s.created_ms = s.commit_ms = 1700000000000ull;
    kl_slot_encode(p, &s);
    write_seed(dir, "slot-new-log", p, KL_HDR_SLOT_BYTES);
    write_seed(dir, "slot-new-log-short", p, 96); /* the zero tail is padded back */
    s.seq = 41;
    s.length = 100000;
    s.byte_length = 12345678;
    s.active_segment = 99000;
    s.active_end = 1 << 20;
    s.cfg.fsync_mode = KL_FSYNC_INTERVAL;
    s.cfg.fsync_interval_ms = 250;
    s.cfg.codec = KL_CODEC_ZSTD;
    s.cfg.codec_level = 19;
    s.cfg.segment_bytes = KL_MIN_SEGMENT_BYTES;
    kl_slot_encode(p, &s);
    write_seed(dir, "slot-busy-log", p, 96);
    s.synced_end = 1 << 19;
    kl_slot_encode(p, &s);
    write_seed(dir, "slot-synced-end", p, KL_HDR_SLOT_BYTES);
    s.synced_end = 0;
    kl_slot_encode(p, &s);
    kl_store32(p + 8, 2); /* before synced_end */
    kl_store64(p + SLOT_CHECKSUM_AT, XXH3_64bits(p, SLOT_CHECKSUM_AT));
    write_seed(dir, "slot-version-2", p, KL_HDR_SLOT_BYTES);
    uint8_t seg[KL_SEG_HEADER_BYTES];
    kl_seg_header_encode(seg, 52113, 1700000000000ull);
    write_seed(dir, "segment-header", seg, sizeof seg);
    static const char *const texts[] = {"always",  "never", "interval:1000",
                                        "zstd:19", "none",  "zstd"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "text-%zu", i);
        write_seed(dir, name, texts[i], strlen(texts[i]));
    }
    free(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
