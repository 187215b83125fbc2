/*
 * fuzz_cursor.c - libFuzzer target for the cursor file decoder
 * (consumers/cursor.c, docs/FORMAT.md "consumers/<name>.cursor").
 *
 * Input: the bytes of a cursor file. kl_cur_decode reads them twice: as
 * given, and with both slots "resealed" (magic, version and checksum made
 * right, the rest as given), so the rule that picks between two valid slots
 * sees arbitrary sequence numbers.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash),
 * against a reference written from FORMAT.md: a slot counts exactly when
 * its magic, version, zero fields and checksum hold and its sequence number
 * is not 0; the answer is the counting slot with the higher sequence number
 * (slot 0 on a tie), its fields as stored; re-encoding that answer gives
 * back the slot's first 64 bytes.
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

/* The slot rule of FORMAT.md, written out independently of the decoder. */
static int slot_ok(const uint8_t *p) {
    for (int i = 48; i < 56; i++)
        if (p[i])
            return 0;
    return memcmp(p, "KLCURSOR", 8) == 0 && kl_load32(p + 8) == 1 && kl_load32(p + 12) == 0 &&
           kl_load64(p + 16) != 0 && kl_load64(p + 56) == XXH3_64bits(p, 56);
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
    uint8_t again[CUR_SLOT_BYTES];
    kl_cur_slot_encode(again, &s);
    KL_ASSERT(memcmp(again, p, 64) == 0);
}

/* Make slot p pass the magic, version, zero-field and checksum rules. */
static void reseal(uint8_t *p) {
    memcpy(p, "KLCURSOR", 8);
    kl_store32(p + 8, 1);
    kl_store32(p + 12, 0);
    memset(p + 48, 0, 8);
    kl_store64(p + 56, XXH3_64bits(p, 56));
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

static void make_seed(const char *dir, const char *name, uint64_t s0, uint64_t s1) {
    uint8_t b[CUR_FILE_BYTES] = {0};
    cur_slot a = {.seq = s0, .position = 10, .fork = 0, .commit_ms = 1764072000000ull};
    cur_slot c = {.seq = s1, .position = 20, .fork = 1, .commit_ms = 1764072000100ull};
    kl_cur_slot_encode(b, &a);
    kl_cur_slot_encode(b + CUR_SLOT_BYTES, &c);
    write_seed(dir, name, b, sizeof b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = getenv("KL_FUZZ_SEEDS");
    if (!dir)
        return 0;
    make_seed(dir, "two-slots", 1, 2);
    make_seed(dir, "older-second", 5, 4);
    make_seed(dir, "new-file", 1, 0);
    exit(0);
}
