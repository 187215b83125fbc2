/*
 * test_header.c - the header slots (engine/header.c, docs/FORMAT.md "header")
 * and the settings they carry.
 *
 * What this proves: every field of a slot survives encode/decode and sits at
 * the offset FORMAT.md gives; every single-bit flip of a 4096-byte slot is
 * refused (so a torn or rotted slot is never a candidate); a slot with a
 * non-zero reserved byte or an out-of-range setting is refused even when its
 * checksum is right (the field check is what refuses); and kl_config_check,
 * kl_config_parse_fsync and kl_config_parse_codec accept exactly the
 * documented forms and leave the config alone when they refuse.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/header.h"
#include "engine/segment.h"
#include "engine/util.h"

#define CHECKSUM_AT (KL_HDR_SLOT_BYTES - 8u)
#define SYNCED_AT   (CHECKSUM_AT - 8u) /* synced_end, version 3 */

static void reseal(uint8_t *p) {
    kl_store64(p + CHECKSUM_AT, XXH3_64bits(p, CHECKSUM_AT));
}

/* Offsets of the signed tree (FORMAT.md). */
#define KIND_AT  116u
#define PK_AT    120u
#define SIG_AT   152u
#define ROOTS_AT 224u

/* Give s a tree consistent with its length and byte length: the roots' count and sizes. */
static void fill_tree(kl_slot *s) {
    s->kind = KL_CORE_DEFAULT;
    for (int i = 0; i < 32; i++)
        s->public_key[i] = (uint8_t)(0x40 + i);
    s->sig_len = KL_STORED_SIG_V1;
    for (unsigned i = 0; i < s->sig_len; i++)
        s->sig[i] = (uint8_t)(0x80 + i);
    uint64_t idx[KL_MAX_ROOTS];
    s->nroots = (uint32_t)kl_ft_full_roots(s->length, idx);
    if (s->length == 0)
        s->byte_length = 0;
    for (uint32_t i = 0; i < s->nroots; i++) {
        s->roots[i].index = idx[i];
        s->roots[i].size = i == 0 ? s->byte_length : 0;
        memset(s->roots[i].hash, (int)(0x10 + i), KL_HASH_BYTES);
    }
}

/* A slot with a distinct value in every field. */
static kl_slot sample_slot(void) {
    kl_slot s;
    memset(&s, 0, sizeof s);
    s.seq = 0x0102030405060708ull;
    s.length = 0x1112131415161718ull;
    s.byte_length = 0x2122232425262728ull;
    s.fork = 0x3132333435363738ull;
    s.active_segment = 0x0000000415161700ull;
    s.active_end = 0x0000000051525354ull;
    s.synced_end = KL_SEG_HEADER_BYTES;
    s.commit_ms = 0x6162636465666768ull;
    s.created_ms = 0x7172737475767778ull;
    s.cfg.fsync_mode = KL_FSYNC_INTERVAL;
    s.cfg.fsync_interval_ms = 3599999;
    s.cfg.segment_bytes = KL_MAX_SEGMENT_BYTES - 1;
    s.cfg.codec = KL_CODEC_ZSTD;
    s.cfg.codec_level = 19;
    s.flags = KL_SLOT_ORDERED;
    for (int i = 0; i < 16; i++)
        s.boot_id[i] = (uint8_t)(0xa0 + i);
    fill_tree(&s);
    return s;
}

static void expect_slot_equal(const kl_slot *a, const kl_slot *b) {
    assert_int_equal(a->flags, b->flags);
    assert_memory_equal(a->boot_id, b->boot_id, 16);
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->length, b->length);
    assert_int_equal(a->byte_length, b->byte_length);
    assert_int_equal(a->fork, b->fork);
    assert_int_equal(a->active_segment, b->active_segment);
    assert_int_equal(a->active_end, b->active_end);
    assert_int_equal(a->synced_end, b->synced_end);
    assert_int_equal(a->commit_ms, b->commit_ms);
    assert_int_equal(a->created_ms, b->created_ms);
    assert_int_equal(a->cfg.fsync_mode, b->cfg.fsync_mode);
    assert_int_equal(a->cfg.fsync_interval_ms, b->cfg.fsync_interval_ms);
    assert_int_equal(a->cfg.segment_bytes, b->cfg.segment_bytes);
    assert_int_equal(a->cfg.codec, b->cfg.codec);
    assert_int_equal(a->cfg.codec_level, b->cfg.codec_level);
    assert_int_equal(a->kind, b->kind);
    assert_memory_equal(a->public_key, b->public_key, 32);
    assert_int_equal(a->sig_len, b->sig_len);
    assert_memory_equal(a->sig, b->sig, a->sig_len);
    assert_int_equal(a->nroots, b->nroots);
    for (uint32_t i = 0; i < a->nroots; i++) {
        assert_int_equal(a->roots[i].index, b->roots[i].index);
        assert_int_equal(a->roots[i].size, b->roots[i].size);
        assert_memory_equal(a->roots[i].hash, b->roots[i].hash, KL_HASH_BYTES);
    }
}

static void test_slot_round_trips_every_field(void **state) {
    (void)state;
    uint8_t *p = malloc(KL_HDR_SLOT_BYTES);
    assert_non_null(p);
    kl_slot s = sample_slot(), d;
    kl_slot_encode(p, &s);
    /* The offsets of FORMAT.md. */
    assert_memory_equal(p, "KAPPALOG", 8);
    assert_int_equal(kl_load32(p + 8), 3);
    assert_int_equal(kl_load32(p + 12), 4096);
    assert_int_equal(kl_load64(p + 16), s.seq);
    assert_int_equal(kl_load64(p + 24), s.length);
    assert_int_equal(kl_load64(p + 32), s.byte_length);
    assert_int_equal(kl_load64(p + 40), s.fork);
    assert_int_equal(kl_load64(p + 48), s.active_segment);
    assert_int_equal(kl_load64(p + 56), s.active_end);
    assert_int_equal(kl_load64(p + 64), s.commit_ms);
    assert_int_equal(p[72], 1);
    assert_int_equal(p[73], 1);
    assert_int_equal(p[74], 19);
    assert_int_equal(p[75], 0);
    assert_int_equal(kl_load32(p + 76), s.cfg.fsync_interval_ms);
    assert_int_equal(kl_load64(p + 80), s.cfg.segment_bytes);
    assert_int_equal(kl_load64(p + 88), s.created_ms);
    assert_memory_equal(p + 96, s.boot_id, 16);
    assert_int_equal(kl_load32(p + 112), s.flags);
    assert_int_equal(p[KIND_AT], 0);
    assert_memory_equal(p + PK_AT, s.public_key, 32);
    assert_int_equal(kl_load32(p + SIG_AT), 68);
    assert_memory_equal(p + SIG_AT + 4, s.sig, 68);
    assert_int_equal(kl_load32(p + ROOTS_AT), s.nroots);
    for (uint32_t i = 0; i < s.nroots; i++) {
        assert_memory_equal(p + ROOTS_AT + 8 + 40 * i, s.roots[i].hash, 32);
        assert_int_equal(kl_load64(p + ROOTS_AT + 8 + 40 * i + 32), s.roots[i].size);
    }
    for (unsigned i = ROOTS_AT + 8 + 40 * s.nroots; i < SYNCED_AT; i++)
        assert_int_equal(p[i], 0);
    assert_int_equal(kl_load64(p + SYNCED_AT), s.synced_end);
    assert_int_equal(kl_load64(p + CHECKSUM_AT), XXH3_64bits(p, CHECKSUM_AT));
    assert_int_equal(kl_slot_decode(p, &d), 0);
    expect_slot_equal(&s, &d);

    /* Other settings and the extremes of the positions. */
    kl_slot t = s;
    t.cfg.fsync_mode = KL_FSYNC_NEVER;
    t.cfg.codec = KL_CODEC_NONE;
    t.cfg.codec_level = 0;
    t.cfg.segment_bytes = KL_MIN_SEGMENT_BYTES;
    t.length = UINT64_MAX;
    t.active_segment = UINT64_MAX;
    t.active_end = KL_SEG_HEADER_BYTES;
    t.synced_end = 0;
    t.seq = UINT64_MAX;
    fill_tree(&t);
    kl_slot_encode(p, &t);
    assert_int_equal(kl_slot_decode(p, &d), 0);
    expect_slot_equal(&t, &d);
    t.cfg.fsync_mode = KL_FSYNC_ALWAYS;
    t.length = 0;
    t.active_segment = 0;
    t.seq = 0;
    t.cfg.segment_bytes = KL_MAX_SEGMENT_BYTES;
    fill_tree(&t);
    kl_slot_encode(p, &t);
    assert_int_equal(kl_slot_decode(p, &d), 0);
    expect_slot_equal(&t, &d);

    /* Decoding the re-encoded slot gives the same 4096 bytes. */
    uint8_t *q = malloc(KL_HDR_SLOT_BYTES);
    assert_non_null(q);
    kl_slot_encode(q, &d);
    assert_memory_equal(p, q, KL_HDR_SLOT_BYTES);
    free(q);
    free(p);
}

static void test_every_bit_flip_of_a_slot_is_refused(void **state) {
    (void)state;
    uint8_t *p = malloc(KL_HDR_SLOT_BYTES);
    assert_non_null(p);
    kl_slot s = sample_slot(), d;
    kl_slot_encode(p, &s);
    for (unsigned bit = 0; bit < 8 * KL_HDR_SLOT_BYTES; bit++) {
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (kl_slot_decode(p, &d) != KL_ECORRUPT)
            fail_msg("flip of slot bit %u was accepted", bit);
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(kl_slot_decode(p, &d), 0);
    free(p);
}

static void test_torn_slot_is_refused(void **state) {
    (void)state;
    /* A slot write torn at any 512-byte sector boundary: new sectors, then old ones. */
    uint8_t *old = malloc(KL_HDR_SLOT_BYTES), *nw = malloc(KL_HDR_SLOT_BYTES);
    uint8_t *t = malloc(KL_HDR_SLOT_BYTES);
    assert_true(old && nw && t);
    kl_slot s = sample_slot(), d;
    kl_slot_encode(old, &s);
    s.seq += 2;
    s.length += 10;
    fill_tree(&s);
    kl_slot_encode(nw, &s);
    for (unsigned sectors = 0; sectors < 1u << 8; sectors++) {
        for (unsigned k = 0; k < 8; k++)
            memcpy(t + 512 * k, (((sectors >> k) & 1) ? nw : old) + 512 * k, 512);
        int rc = kl_slot_decode(t, &d);
        if (sectors == 0 || sectors == 0xff)
            assert_int_equal(rc, 0);
        else if (memcmp(t, old, KL_HDR_SLOT_BYTES) != 0 && memcmp(t, nw, KL_HDR_SLOT_BYTES) != 0)
            assert_int_equal(rc, KL_ECORRUPT);
    }
    free(old);
    free(nw);
    free(t);
}

static void expect_refused_resealed(uint8_t *p, const char *what) {
    reseal(p);
    kl_slot d;
    kl_err_clear();
    int rc = kl_slot_decode(p, &d);
    if (rc != KL_ECORRUPT)
        fail_msg("%s: decode returned %d, expected KL_ECORRUPT", what, rc);
    if (strstr(kl_last_error(), "checksum"))
        fail_msg("%s: refused for the wrong reason: %s", what, kl_last_error());
}

static void expect_accepted_resealed(uint8_t *p, const char *what) {
    reseal(p);
    kl_slot d;
    int rc = kl_slot_decode(p, &d);
    if (rc != 0)
        fail_msg("%s: decode returned %d (%s), expected 0", what, rc, kl_last_error());
}

static void test_nonzero_reserved_bytes_are_refused(void **state) {
    (void)state;
    uint8_t *good = malloc(KL_HDR_SLOT_BYTES), *p = malloc(KL_HDR_SLOT_BYTES);
    assert_true(good && p);
    kl_slot s = sample_slot();
    kl_slot_encode(good, &s);
    memcpy(p, good, KL_HDR_SLOT_BYTES);
    expect_accepted_resealed(p, "control");
    char what[64];
    /* Byte 75, the flag bits past `ordered` (bytes 112..115), the kind and its padding,
       the signature length, the root count and its padding, and every byte of the
       reserved area past the roots, with each bit pattern class. The key, signature
       and root bytes are data (any value decodes; kl_slot_verify judges them). */
    static const uint8_t vals[] = {0x02, 0x80, 0xfe};
    unsigned roots_end = ROOTS_AT + 8 + 40 * s.nroots;
    for (unsigned i = 75; i < SYNCED_AT; i = (i == 75) ? 112 : i + 1) {
        if ((i >= PK_AT && i < SIG_AT) || (i >= SIG_AT + 4 && i < ROOTS_AT) ||
            (i >= ROOTS_AT + 8 && i < roots_end))
            continue;
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(p, good, KL_HDR_SLOT_BYTES);
            p[i] = vals[v];
            snprintf(what, sizeof what, "reserved byte %u = 0x%02x", i, vals[v]);
            expect_refused_resealed(p, what);
        }
    }
    free(good);
    free(p);
}

/* Encode the sample, apply one raw change at an offset, reseal, expect the verdict. */
static void check_field(unsigned off, unsigned width, uint64_t value, int accept,
                        const char *what) {
    uint8_t *p = malloc(KL_HDR_SLOT_BYTES);
    assert_non_null(p);
    kl_slot s = sample_slot();
    s.cfg.fsync_mode = KL_FSYNC_INTERVAL;
    kl_slot_encode(p, &s);
    if (width == 1)
        p[off] = (uint8_t)value;
    else if (width == 4)
        kl_store32(p + off, (uint32_t)value);
    else
        kl_store64(p + off, value);
    if (accept)
        expect_accepted_resealed(p, what);
    else
        expect_refused_resealed(p, what);
    free(p);
}

static void test_out_of_range_settings_are_refused(void **state) {
    (void)state;
    kl_slot s = sample_slot();
    /* Format fields. */
    check_field(8, 4, 1, 0, "version 1 (before the signed tree)");
    check_field(8, 4, 2, 0, "version 2 with a synced_end (reserved there)");
    check_field(8, 4, 4, 0, "version 4");
    check_field(8, 4, 0, 0, "version 0");
    check_field(12, 4, 8192, 0, "slot_size 8192");
    check_field(12, 4, 4095, 0, "slot_size 4095");
    /* fsync policy. */
    check_field(72, 1, 0, 1, "fsync always");
    check_field(72, 1, 2, 1, "fsync never");
    check_field(72, 1, 3, 0, "fsync mode 3");
    check_field(72, 1, 255, 0, "fsync mode 255");
    check_field(76, 4, 0, 0, "interval 0 ms");
    check_field(76, 4, 1, 1, "interval 1 ms");
    check_field(76, 4, 3600000, 1, "interval 3600000 ms");
    check_field(76, 4, 3600001, 0, "interval 3600001 ms");
    check_field(76, 4, UINT32_MAX, 0, "interval UINT32_MAX ms");
    /* Segment size. */
    check_field(80, 8, KL_MIN_SEGMENT_BYTES, 1, "segment_bytes min");
    check_field(80, 8, KL_MIN_SEGMENT_BYTES - 1, 0, "segment_bytes min - 1");
    check_field(80, 8, KL_MAX_SEGMENT_BYTES, 1, "segment_bytes max");
    check_field(80, 8, KL_MAX_SEGMENT_BYTES + 1ull, 0, "segment_bytes max + 1");
    check_field(80, 8, 0, 0, "segment_bytes 0");
    check_field(80, 8, UINT64_MAX, 0, "segment_bytes UINT64_MAX");
    check_field(80, 8, (1ull << 32) + KL_MIN_SEGMENT_BYTES, 0, "segment_bytes past 32 bits");
    /* Codec. */
    check_field(73, 1, 0, 1, "codec none");
    check_field(73, 1, 2, 0, "codec 2");
    check_field(73, 1, 255, 0, "codec 255");
    check_field(74, 1, 0, 1, "level 0");
    check_field(74, 1, 1, 1, "level 1");
    check_field(74, 1, 20, 0, "level 20");
    check_field(74, 1, 0xff, 0, "level -1");
    check_field(74, 1, 0x80, 0, "level -128");
    check_field(74, 1, 127, 0, "level 127");
    /* Positions: active_segment <= length, active_end >= the segment header. */
    check_field(48, 8, s.length, 1, "active_segment = length");
    check_field(48, 8, s.length + 1, 0, "active_segment > length");
    check_field(48, 8, UINT64_MAX, 0, "active_segment UINT64_MAX");
    check_field(56, 8, KL_SEG_HEADER_BYTES, 1, "active_end 64");
    check_field(56, 8, KL_SEG_HEADER_BYTES - 1, 0, "active_end 63");
    check_field(56, 8, 0, 0, "active_end 0");
    check_field(56, 8, UINT64_MAX, 0, "active_end UINT64_MAX");
    check_field(56, 8, UINT64_C(1) << 48, 1, "active_end 2^48");
    check_field(56, 8, (UINT64_C(1) << 48) + 1, 0, "active_end past 2^48");
    /* synced_end <= active_end */
    check_field(SYNCED_AT, 8, 0, 1, "synced_end 0 (not known)");
    check_field(SYNCED_AT, 8, s.active_end, 1, "synced_end = active_end");
    check_field(SYNCED_AT, 8, s.active_end + 1, 0, "synced_end > active_end");
    check_field(SYNCED_AT, 8, UINT64_MAX, 0, "synced_end UINT64_MAX");
}

/* A version 2 slot (before synced_end) is read, with synced_end 0 (not known). */
static void test_a_version_2_slot_is_read_without_synced_end(void **state) {
    (void)state;
    uint8_t *p = malloc(KL_HDR_SLOT_BYTES);
    assert_non_null(p);
    kl_slot s = sample_slot(), d;
    s.synced_end = 0;
    kl_slot_encode(p, &s);
    kl_store32(p + 8, 2);
    reseal(p);
    assert_int_equal(kl_slot_decode(p, &d), 0);
    expect_slot_equal(&s, &d);
    /* version 2 kept those bytes reserved: a non-zero one there is refused */
    p[SYNCED_AT + 3] = 0x01;
    reseal(p);
    assert_int_equal(kl_slot_decode(p, &d), KL_ECORRUPT);
    free(p);
}

static void test_config_check_accepts_exactly_the_valid_range(void **state) {
    (void)state;
    kl_config c;
    kl_config_default(&c);
    assert_int_equal(kl_config_check(&c), 0);
    assert_int_equal(c.fsync_mode, KL_FSYNC_ALWAYS);
    assert_int_equal(c.codec, KL_CODEC_NONE);
    assert_int_equal(c.segment_bytes, KL_DEFAULT_SEGMENT_BYTES);

    struct {
        int mode;
        uint32_t interval;
        uint64_t seg;
        int codec, level;
        int ok;
    } cases[] = {
        {KL_FSYNC_ALWAYS, 0, KL_MIN_SEGMENT_BYTES, KL_CODEC_NONE, 0, 1},
        {KL_FSYNC_NEVER, 0, KL_MAX_SEGMENT_BYTES, KL_CODEC_ZSTD, 19, 1},
        {KL_FSYNC_INTERVAL, 1, KL_MIN_SEGMENT_BYTES, KL_CODEC_ZSTD, 1, 1},
        {KL_FSYNC_INTERVAL, 3600000, KL_MAX_SEGMENT_BYTES, KL_CODEC_ZSTD, 0, 1},
        {KL_FSYNC_INTERVAL, 0, KL_MIN_SEGMENT_BYTES, KL_CODEC_NONE, 0, 0},
        {KL_FSYNC_INTERVAL, 3600001, KL_MIN_SEGMENT_BYTES, KL_CODEC_NONE, 0, 0},
        {3, 1000, KL_MIN_SEGMENT_BYTES, KL_CODEC_NONE, 0, 0},
        {-1, 1000, KL_MIN_SEGMENT_BYTES, KL_CODEC_NONE, 0, 0},
        {KL_FSYNC_ALWAYS, 0, KL_MIN_SEGMENT_BYTES - 1, KL_CODEC_NONE, 0, 0},
        {KL_FSYNC_ALWAYS, 0, KL_MAX_SEGMENT_BYTES + 1ull, KL_CODEC_NONE, 0, 0},
        {KL_FSYNC_ALWAYS, 0, 0, KL_CODEC_NONE, 0, 0},
        {KL_FSYNC_ALWAYS, 0, KL_MIN_SEGMENT_BYTES, 2, 0, 0},
        {KL_FSYNC_ALWAYS, 0, KL_MIN_SEGMENT_BYTES, -1, 0, 0},
        {KL_FSYNC_ALWAYS, 0, KL_MIN_SEGMENT_BYTES, KL_CODEC_ZSTD, 20, 0},
        {KL_FSYNC_ALWAYS, 0, KL_MIN_SEGMENT_BYTES, KL_CODEC_ZSTD, -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_config_default(&c);
        c.fsync_mode = (kl_fsync_mode)cases[i].mode;
        c.fsync_interval_ms = cases[i].interval;
        c.segment_bytes = cases[i].seg;
        c.codec = (kl_codec)cases[i].codec;
        c.codec_level = cases[i].level;
        int rc = kl_config_check(&c);
        if (rc != (cases[i].ok ? 0 : KL_EINVAL))
            fail_msg("config case %zu: kl_config_check = %d, expected %s", i, rc,
                     cases[i].ok ? "0" : "KL_EINVAL");
    }
}

/* A config filled with a recognisable pattern, to see that a refusal leaves it alone. */
static kl_config marked_config(void) {
    kl_config c;
    memset(&c, 0x5c, sizeof c);
    return c;
}

static void test_parse_fsync_accepts_exactly_the_documented_forms(void **state) {
    (void)state;
    struct {
        const char *text;
        int mode;
        uint32_t interval;
    } good[] = {
        {"always", KL_FSYNC_ALWAYS, 0},
        {"never", KL_FSYNC_NEVER, 0},
        {"interval:1", KL_FSYNC_INTERVAL, 1},
        {"interval:250", KL_FSYNC_INTERVAL, 250},
        {"interval:3600000", KL_FSYNC_INTERVAL, 3600000},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kl_config c;
        kl_config_default(&c);
        if (kl_config_parse_fsync(&c, good[i].text) != 0)
            fail_msg("'%s' refused: %s", good[i].text, kl_last_error());
        assert_int_equal(c.fsync_mode, good[i].mode);
        if (good[i].mode == KL_FSYNC_INTERVAL)
            assert_int_equal(c.fsync_interval_ms, good[i].interval);
        assert_int_equal(kl_config_check(&c), 0);
    }
    static const char *bad[] = {
        "",
        "interval:0",
        "interval:",
        "interval:abc",
        "interval:-1",
        "interval:3600001",
        "interval:+5",
        "interval:1x",
        "interval: 5",
        "interval:5 ",
        "interval",
        "interval:99999999999999999999",
        "Always",
        "always ",
        " always",
        "ALWAYS",
        "never!",
        "nev",
        "alwaysnever",
        "interval:1:2",
        "interval=5",
        "garbage",
        "zstd",
        "interval:0x10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kl_config c = marked_config(), before = c;
        int rc = kl_config_parse_fsync(&c, bad[i]);
        if (rc != KL_EINVAL)
            fail_msg("'%s' gave %d, expected KL_EINVAL", bad[i], rc);
        assert_memory_equal(&c, &before, sizeof c); /* refused: config untouched */
    }
    kl_config c = marked_config();
    assert_int_equal(kl_config_parse_fsync(&c, NULL), KL_EINVAL);
    assert_int_equal(kl_config_parse_fsync(NULL, "always"), KL_EINVAL);
}

static void test_parse_codec_accepts_exactly_the_documented_forms(void **state) {
    (void)state;
    struct {
        const char *text;
        int codec, level;
    } good[] = {
        {"none", KL_CODEC_NONE, 0},   {"zstd", KL_CODEC_ZSTD, 0},     {"zstd:1", KL_CODEC_ZSTD, 1},
        {"zstd:3", KL_CODEC_ZSTD, 3}, {"zstd:19", KL_CODEC_ZSTD, 19},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kl_config c;
        kl_config_default(&c);
        c.codec_level = 7; /* "none" and "zstd" must reset it */
        if (kl_config_parse_codec(&c, good[i].text) != 0)
            fail_msg("'%s' refused: %s", good[i].text, kl_last_error());
        assert_int_equal(c.codec, good[i].codec);
        assert_int_equal(c.codec_level, good[i].level);
        assert_int_equal(kl_config_check(&c), 0);
    }
    static const char *bad[] = {
        "",         "zstd:0",  "zstd:20",
        "zstd:",    "zstd:-1", "zstd:abc",
        "zstd:1x",  "zstd: 3", "zstd:+3",
        "ZSTD",     "zstd ",   " none",
        "None",     "lz4",     "gzip",
        "zstd:100", "zstd=3",  "garbage",
        "zst",      "nonee",   "zstd:99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kl_config c = marked_config(), before = c;
        int rc = kl_config_parse_codec(&c, bad[i]);
        if (rc != KL_EINVAL)
            fail_msg("'%s' gave %d, expected KL_EINVAL", bad[i], rc);
        assert_memory_equal(&c, &before, sizeof c);
    }
    kl_config c = marked_config();
    assert_int_equal(kl_config_parse_codec(&c, NULL), KL_EINVAL);
    assert_int_equal(kl_config_parse_codec(NULL, "none"), KL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_round_trips_every_field),
        cmocka_unit_test(test_every_bit_flip_of_a_slot_is_refused),
        cmocka_unit_test(test_torn_slot_is_refused),
        cmocka_unit_test(test_nonzero_reserved_bytes_are_refused),
        cmocka_unit_test(test_out_of_range_settings_are_refused),
        cmocka_unit_test(test_a_version_2_slot_is_read_without_synced_end),
        cmocka_unit_test(test_config_check_accepts_exactly_the_valid_range),
        cmocka_unit_test(test_parse_fsync_accepts_exactly_the_documented_forms),
        cmocka_unit_test(test_parse_codec_accepts_exactly_the_documented_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
