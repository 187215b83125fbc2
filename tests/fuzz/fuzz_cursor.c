/*
 * fuzz_cursor.c - libFuzzer target for the cursor file decoder
 * (consumers/cursor.c, docs/FORMAT.md "consumers/<name>.cursor").
 *
 * Input: the bytes of a cursor file. kl_cur_decode reads them twice: as
 * given, and with both slots "resealed" (magic, version and checksum made
 * right, the rest as given; version 1 or 2 by a bit of the input), so the
 * rule that picks between two valid slots sees arbitrary sequence numbers.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash),
 * against a reference written from FORMAT.md: a slot counts exactly when
 * its magic, version (1 or 2), flags, zero fields and checksum hold (for
 * version 2, the tree hash bytes zero unless its flag is set) and its
 * sequence number is not 0; the answer is the counting slot with the
 * higher sequence number (slot 0 on a tie), its fields as stored (a
 * version 1 slot has no tree hash); re-encoding a version 2 answer gives
 * back the slot's first 96 bytes.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few valid cursor files into
 * DIR and exit (scripts/fuzz.sh uses them as the starting corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "consumers/cursor.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* The slot rule of FORMAT.md, written out independently of the decoder. */
static int slot_ok(const uint8_t *p) {
    uint32_t version = kl_load32(p + 8), flags = kl_load32(p + 12);
    if (memcmp(p, "KLCURSOR", 8) != 0 || !all_zero(p + 48, 8) || kl_load64(p + 16) == 0)
        return 0;
    if (version == 1)
        return flags == 0 && kl_load64(p + 56) == XXH3_64bits(p, 56);
    if (version != 2 || flags > 1 || (flags == 0 && !all_zero(p + 56, 32)))
        return 0;
    return kl_load64(p + 88) == XXH3_64bits(p, 88);
}

static void check(const uint8_t *b, size_t n) {
    cur_slot s;
    int which = -1;
    int rc = kl_cur_decode(b, n, &s, &which);
    int ok0 = n >= CUR_SLOT_BYTES && slot_ok(b);
    int ok1 = n >= CUR_FILE_BYTES && slot_ok(b + CUR_SLOT_BYTES);
    if (!ok0 && !ok1) {
        KL_ASSERT(rc == -1);
        return;
    }
    int want = !ok0 ? 1 : !ok1 ? 0 : kl_load64(b + CUR_SLOT_BYTES + 16) > kl_load64(b + 16);
    const uint8_t *p = b + (size_t)want * CUR_SLOT_BYTES;
    KL_ASSERT(rc == 0 && which == want);
    KL_ASSERT(s.seq == kl_load64(p + 16) && s.position == kl_load64(p + 24));
    KL_ASSERT(s.fork == kl_load64(p + 32) && s.commit_ms == kl_load64(p + 40));
    int v2 = kl_load32(p + 8) == 2, hashed = v2 && kl_load32(p + 12) == 1;
    KL_ASSERT(s.has_hash == hashed);
    KL_ASSERT(!hashed || memcmp(s.tree_hash, p + 56, 32) == 0);
    uint8_t again[CUR_SLOT_BYTES];
    kl_cur_slot_encode(again, &s);
    KL_ASSERT(!v2 || memcmp(again, p, 96) == 0);
}

/*
 * Make slot p pass the magic, version, flag, zero-field and checksum rules:
 * version 1 if bit 0 of byte 8 was set, else version 2 with the tree hash
 * flag from bit 0 of byte 12 (its bytes zeroed without it).
 */
static void reseal(uint8_t *p) {
    int v1 = p[8] & 1, flag = p[12] & 1;
    memcpy(p, "KLCURSOR", 8);
    kl_store32(p + 8, v1 ? 1 : 2);
    kl_store32(p + 12, v1 ? 0 : (uint32_t)flag);
    memset(p + 48, 0, 8);
    if (v1) {
        kl_store64(p + 56, XXH3_64bits(p, 56));
        return;
    }
    if (!flag)
        memset(p + 56, 0, 32);
    kl_store64(p + 88, XXH3_64bits(p, 88));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
    if (!b)
        return 0;
    memcpy(b, data, size);
    check(b, size);
    for (size_t off = 0; off + CUR_SLOT_BYTES <= size && off < CUR_FILE_BYTES;
         off += CUR_SLOT_BYTES)
        reseal(b + off);
    check(b, size);
    free(b);
    return 0;
}

static void make_seed(const char *dir, const char *name, uint64_t s0, uint64_t s1, int hashed) {
    uint8_t b[CUR_FILE_BYTES] = {0};
    cur_slot a = {.seq = s0, .position = 10, .fork = 0, .commit_ms = 1764072000000ull};
    cur_slot c = {.seq = s1, .position = 20, .fork = 1, .commit_ms = 1764072000100ull};
    a.has_hash = c.has_hash = hashed;
    memset(a.tree_hash, 0xa5, sizeof a.tree_hash);
    memset(c.tree_hash, 0x5a, sizeof c.tree_hash);
    kl_cur_slot_encode(b, &a);
    kl_cur_slot_encode(b + CUR_SLOT_BYTES, &c);
    write_seed(dir, name, b, sizeof b);
}

/* A file of an older build: version 1 slots (no flags, no tree hash, checksum at 56). */
static void make_v1_seed(const char *dir, const char *name) {
    uint8_t b[CUR_FILE_BYTES] = {0};
    for (int i = 0; i < 2; i++) {
        uint8_t *p = b + i * CUR_SLOT_BYTES;
        memcpy(p, "KLCURSOR", 8);
        kl_store32(p + 8, 1);
        kl_store64(p + 16, 3u + (uint64_t)i);
        kl_store64(p + 24, 40u + (uint64_t)i);
        kl_store64(p + 56, XXH3_64bits(p, 56));
    }
    write_seed(dir, name, b, sizeof b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("KL_FUZZ_SEEDS");
    if (!dir)
        return 0;
    make_seed(dir, "two-slots", 1, 2, 1);
    make_seed(dir, "older-second", 5, 4, 1);
    make_seed(dir, "new-file", 1, 0, 1);
    make_seed(dir, "no-hash", 7, 8, 0);
    make_v1_seed(dir, "version-1");
    exit(0);
}
