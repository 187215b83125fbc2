/*
 * fuzz_view_meta.c - libFuzzer target for the view.meta decoder
 * (consumers/view_store.c: vs_meta_decode, which vs_meta_read calls on the
 * bytes it read; docs/FORMAT.md "views/<name>/", "view.meta").
 *
 * Input: the bytes of a view.meta file. The decoder reads them three
 * times: as given (in a buffer of exactly their length), then padded with
 * zeros or cut to 1024 bytes and "resealed" (the checksum recomputed), and
 * once more with the magic and version made right as well, so the checks
 * behind the checksum see arbitrary kinds, versions, lengths and padding.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash),
 * against a reference written from FORMAT.md: the file is accepted exactly
 * when it is 1024 bytes with magic `KLVIEWMT`, version 1, kind 1..3, live
 * version >= 1, key path length 1..255, value path length 0..255 and 0
 * unless the kind is sum, every zero field and all padding zero, no NUL
 * byte inside either path, and the XXH3-64 of bytes 0..1015 at 1016. A
 * refused file gives KL_ECORRUPT and leaves the output untouched. An
 * accepted one decodes to the stored kind, versions, time and paths, and
 * encoding that gives back the same 1024 bytes (the format is canonical).
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few valid view.meta files into
 * DIR and exit (scripts/fuzz.sh uses them as the starting corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "consumers/view_store.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define META_BYTES 1024 /* FORMAT.md: the whole file */
#define SUM_KIND   3

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* A path field of FORMAT.md: `len` bytes with no NUL, then zeros to the field's end. */
static int path_ok(const uint8_t *field, size_t len, size_t field_bytes) {
    return len <= 255 && memchr(field, 0, len) == NULL && all_zero(field + len, field_bytes - len);
}

/* The view.meta rules of FORMAT.md, written out independently of the decoder. */
static int meta_ok(const uint8_t *b, size_t n) {
    if (n != META_BYTES || memcmp(b, "KLVIEWMT", 8) != 0 || kl_load32(b + 8) != 1)
        return 0;
    uint32_t kind = kl_load32(b + 12);
    size_t kn = kl_load16(b + 32), vn = kl_load16(b + 34);
    return kind >= 1 && kind <= 3 && kl_load64(b + 16) >= 1 && kn >= 1 &&
           (vn == 0 || kind == SUM_KIND) && all_zero(b + 36, 28) && path_ok(b + 64, kn, 256) &&
           path_ok(b + 320, vn, 256) && all_zero(b + 576, 440) &&
           kl_load64(b + 1016) == XXH3_64bits(b, 1016);
}

static void check(const uint8_t *b, size_t n) {
    vs_meta m, untouched;
    memset(&m, 0xa5, sizeof m);
    untouched = m;
    int rc = vs_meta_decode(b, n, &m, "fuzz");
    if (!meta_ok(b, n)) {
        KL_ASSERT(rc == KL_ECORRUPT);
        KL_ASSERT(memcmp(&m, &untouched, sizeof m) == 0);
        return;
    }
    KL_ASSERT(rc == 0);
    KL_ASSERT((uint32_t)m.kind == kl_load32(b + 12) && m.live == kl_load64(b + 16));
    KL_ASSERT(m.created_ms == kl_load64(b + 24));
    size_t kn = kl_load16(b + 32), vn = kl_load16(b + 34);
    KL_ASSERT(strlen(m.key_path) == kn && memcmp(m.key_path, b + 64, kn) == 0);
    KL_ASSERT(strlen(m.value_path) == vn && memcmp(m.value_path, b + 320, vn) == 0);
    uint8_t again[VS_META_BYTES];
    vs_meta_encode(again, &m);
    KL_ASSERT(memcmp(again, b, META_BYTES) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
    if (!b)
        return 0;
    memcpy(b, data, size);
    check(b, size);
    free(b);
    uint8_t *r = calloc(1, META_BYTES); /* padded with zeros or cut, then resealed */
    if (!r)
        return 0;
    memcpy(r, data, size < META_BYTES ? size : META_BYTES);
    kl_store64(r + 1016, XXH3_64bits(r, 1016));
    check(r, META_BYTES);
    memcpy(r, "KLVIEWMT", 8);
    kl_store32(r + 8, 1);
    kl_store64(r + 1016, XXH3_64bits(r, 1016));
    check(r, META_BYTES);
    free(r);
    return 0;
}

static void make_seed(const char *dir, const char *name, kl_view_kind kind, const char *key,
                      const char *value) {
    vs_meta m = {.kind = kind, .live = 1, .created_ms = 1764072000000ull};
    snprintf(m.key_path, sizeof m.key_path, "%s", key);
    snprintf(m.value_path, sizeof m.value_path, "%s", value);
    uint8_t b[VS_META_BYTES];
    vs_meta_encode(b, &m);
    write_seed(dir, name, b, sizeof b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    KL_ASSERT(VS_META_BYTES == META_BYTES);
    const char *dir = getenv("KL_FUZZ_SEEDS");
    if (!dir)
        return 0;
    char longest[KL_VIEW_PATH_MAX + 1];
    memset(longest, 'k', KL_VIEW_PATH_MAX);
    longest[KL_VIEW_PATH_MAX] = '\0';
    make_seed(dir, "kv-user", KL_VIEW_KV, "user", "");
    make_seed(dir, "count-nested", KL_VIEW_COUNT, "ctx.user.id", "");
    make_seed(dir, "sum-amount", KL_VIEW_SUM, "user", "amount");
    make_seed(dir, "sum-longest", KL_VIEW_SUM, longest, longest);
    exit(0);
}
