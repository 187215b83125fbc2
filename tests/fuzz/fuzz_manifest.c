/*
 * fuzz_manifest.c - libFuzzer target for the Hypercore manifest decoder
 * (engine/hc_keys.c kl_hc_manifest_decode, Hypercore notes section 5), with
 * the compact-encoding reader beneath it and the stored-signature decoder of
 * kl_hc_verify beside it: all three read bytes a peer sends.
 *
 * Input: a manifest. It is decoded as given; the same bytes are then read
 * as a run of compact uints, as a run of length-prefixed buffers and as
 * fixed-size chunks; and their first four bytes become the envelope around
 * a real signature (`b0 b1 <64-byte signature> b2 b3`).
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash): a
 * manifest that decodes has version 1..3, hash 0, signature type 0 and a
 * signer count its bytes can hold; it decodes again to the same fields;
 * every proper prefix, and the input with a byte appended, is refused; a
 * decoded default-shaped manifest is exactly kl_hc_manifest_default of its
 * key when it is 70 bytes long. A refused manifest leaves the output alone
 * and names the manifest in its reason. The reader never moves past its
 * end, never moves on a failed read, stays failed, and every uint it
 * returns is at most 2^53 - 1 and re-encodes to no more bytes than it
 * took (to the same bytes when it took the shortest form). The signature
 * verifies exactly when the envelope is the canonical `01 00 .. 00 00`.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few valid manifests into DIR
 * and exit (scripts/fuzz.sh uses them as the starting corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hc.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEFAULT_MANIFEST_BYTES 70u
#define SIGNER_MIN_BYTES       65u /* type, namespace, public key */
#define CE_SAFE_MAX            ((1ull << 53) - 1)
#define FUZZ_INPUT_MAX         (1u << 16) /* inputs are copied to exact-size buffers */

/* A signed state made once, for the envelope check. */
static struct {
    int ready;
    uint8_t pk[KL_PK_BYTES], sk[KL_SK_BYTES], key[KL_HASH_BYTES], th[KL_HASH_BYTES];
    uint8_t sig[KL_STORED_SIG_MAX];
    uint8_t default_ns[KL_HASH_BYTES];
} g;

static void setup(void) {
    if (g.ready)
        return;
    uint8_t seed[KL_SEED_BYTES], man[KL_MANIFEST_MAX];
    memset(seed, 0x42, sizeof seed);
    kl_hc_keypair(seed, g.pk, g.sk);
    kl_hc_core_key(KL_CORE_DEFAULT, g.pk, g.key);
    memset(g.th, 0x17, sizeof g.th);
    size_t n;
    kl_hc_sign(KL_CORE_DEFAULT, g.sk, g.key, g.th, 5, 1, g.sig, &n);
    KL_ASSERT(n == KL_STORED_SIG_V1);
    KL_ASSERT(kl_hc_manifest_default(g.pk, man) == DEFAULT_MANIFEST_BYTES);
    memcpy(g.default_ns, man + 6, KL_HASH_BYTES);
    g.ready = 1;
}

static int same_manifest(const kl_manifest *a, const kl_manifest *b) {
    return a->version == b->version && a->flags == b->flags && a->hash == b->hash &&
           a->quorum == b->quorum && a->nsigners == b->nsigners && a->sig_type == b->sig_type &&
           memcmp(a->ns, b->ns, KL_HASH_BYTES) == 0 && memcmp(a->pk, b->pk, KL_PK_BYTES) == 0;
}

static void drive_manifest(const uint8_t *p, size_t size) {
    kl_manifest m, before;
    memset(&m, 0xa5, sizeof m);
    before = m;
    kl_err_clear();
    int rc = kl_hc_manifest_decode(p, size, &m);
    if (rc != 0) {
        KL_ASSERT(rc == KL_ECORRUPT);
        KL_ASSERT(memcmp(&m, &before, sizeof m) == 0);
        KL_ASSERT(strncmp(kl_err_thread(), "manifest: ", 10) == 0);
        return;
    }
    KL_ASSERT(m.version >= 1 && m.version <= 3);
    KL_ASSERT(m.hash == 0);
    KL_ASSERT(m.nsigners == 0 || m.sig_type == 0);
    KL_ASSERT((uint64_t)m.nsigners * SIGNER_MIN_BYTES <= size);

    kl_manifest again;
    KL_ASSERT(kl_hc_manifest_decode(p, size, &again) == 0);
    KL_ASSERT(same_manifest(&m, &again));

    /* The encoding delimits itself: no proper prefix is a manifest, nor a longer input. */
    size_t cuts[] = {0, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        KL_ASSERT(kl_hc_manifest_decode(p, cuts[i], &again) == KL_ECORRUPT);
    uint8_t *longer = malloc(size + 1);
    KL_ASSERT(longer != NULL);
    memcpy(longer, p, size);
    longer[size] = p[size - 1];
    KL_ASSERT(kl_hc_manifest_decode(longer, size + 1, &again) == KL_ECORRUPT);
    free(longer);

    /* A default-shaped manifest is the default manifest of its public key. */
    if (m.version == 1 && m.flags == 0 && m.quorum == 1 && m.nsigners == 1 &&
        memcmp(m.ns, g.default_ns, KL_HASH_BYTES) == 0) {
        uint8_t man[KL_MANIFEST_MAX];
        size_t n = kl_hc_manifest_default(m.pk, man);
        KL_ASSERT(n <= size); /* the input may use long forms, never a shorter one */
        KL_ASSERT(kl_hc_manifest_decode(man, n, &again) == 0 && same_manifest(&m, &again));
        if (size == DEFAULT_MANIFEST_BYTES)
            KL_ASSERT(memcmp(man, p, n) == 0);
    }
}

/* A failed reader stays failed and does not move. */
static void check_stuck(kl_cd *d) {
    size_t at = d->at, n = 1;
    int err = d->err;
    KL_ASSERT(err != 0);
    KL_ASSERT(kl_cd_uint(d) == 0);
    KL_ASSERT(kl_cd_fixed(d, 0) == NULL);
    KL_ASSERT(kl_cd_buffer(d, &n, SIZE_MAX) == NULL && n == 0);
    KL_ASSERT(d->at == at && d->err == err);
}

static void drive_uints(const uint8_t *p, size_t size) {
    kl_cd d = {.p = p, .at = 0, .len = size, .err = 0};
    for (;;) {
        size_t at = d.at;
        uint64_t v = kl_cd_uint(&d);
        if (d.err) {
            KL_ASSERT(v == 0 && d.at == at);
            break;
        }
        size_t took = d.at - at;
        KL_ASSERT(d.at <= size && v <= CE_SAFE_MAX);
        KL_ASSERT(took == 1 || took == 3 || took == 5 || took == 9);
        KL_ASSERT((took == 1) == (p[at] <= 0xfc));
        uint8_t re[KL_CE_UINT_MAX];
        size_t n = kl_ce_uint(re, v);
        KL_ASSERT(n <= took);
        if (n == took)
            KL_ASSERT(memcmp(re, p + at, n) == 0);
        kl_cd back = {.p = re, .at = 0, .len = n, .err = 0};
        KL_ASSERT(kl_cd_uint(&back) == v && back.at == n && back.err == 0);
    }
    check_stuck(&d);
}

static void drive_buffers(const uint8_t *p, size_t size) {
    size_t max = size ? p[0] : 0; /* the caller's limit, from the input */
    kl_cd d = {.p = p, .at = 0, .len = size, .err = 0};
    for (;;) {
        size_t at = d.at, n = 1;
        const uint8_t *b = kl_cd_buffer(&d, &n, max);
        if (!b) {
            KL_ASSERT(n == 0 && d.err != 0 && d.at == at);
            break;
        }
        KL_ASSERT(d.err == 0 && n <= max && d.at <= size);
        KL_ASSERT(b + n == p + d.at && b >= p + at);
    }
    check_stuck(&d);

    /* Fixed chunks whose sizes the input picks, until one runs past the end. */
    kl_cd f = {.p = p, .at = 0, .len = size, .err = 0};
    for (size_t i = 0;; i++) {
        size_t at = f.at, want = size ? p[i % size] % 23 : 1;
        const uint8_t *b = kl_cd_fixed(&f, want);
        if (!b) {
            KL_ASSERT(f.at == at && want > size - at);
            break;
        }
        KL_ASSERT(b == p + at && f.at == at + want && f.at <= size);
        if (want == 0 && i > size) /* zero-size reads forever: stop */
            return;
    }
    check_stuck(&f);
}

/* The input's first bytes as the envelope around a real signature. */
static void drive_envelope(const uint8_t *p, size_t size) {
    if (size < 4)
        return;
    uint8_t sig[KL_STORED_SIG_V1];
    memcpy(sig, g.sig, sizeof sig);
    sig[0] = p[0];
    sig[1] = p[1];
    sig[66] = p[2];
    sig[67] = p[3];
    int canonical = p[0] == 1 && p[1] == 0 && p[2] == 0 && p[3] == 0;
    int rc = kl_hc_verify(KL_CORE_DEFAULT, g.pk, g.key, g.th, 5, 1, sig, sizeof sig);
    KL_ASSERT(canonical ? rc == 0 : rc == KL_EVERIFY);
    /* The input itself, whole, as a stored signature: only the real one verifies. */
    if (size <= KL_STORED_SIG_MAX) {
        int real = size == KL_STORED_SIG_V1 && memcmp(p, g.sig, size) == 0;
        rc = kl_hc_verify(KL_CORE_DEFAULT, g.pk, g.key, g.th, 5, 1, p, size);
        KL_ASSERT(real ? rc == 0 : rc == KL_EVERIFY);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size > FUZZ_INPUT_MAX)
        size = FUZZ_INPUT_MAX;
    /* An exact-size copy, so ASan sees any read past the end. */
    uint8_t *p = malloc(size ? size : 1);
    KL_ASSERT(p != NULL);
    memcpy(p, data, size);
    drive_manifest(size ? p : NULL, size);
    drive_uints(p, size);
    drive_buffers(p, size);
    drive_envelope(p, size);
    free(p);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

/* Append a compact uint. */
static size_t put(uint8_t *p, size_t at, uint64_t v) {
    return at + kl_ce_uint(p + at, v);
}

static void write_seeds(const char *dir) {
    uint8_t seed[KL_SEED_BYTES], pk[KL_PK_BYTES], sk[KL_SK_BYTES], man[KL_MANIFEST_MAX];
    /* manifest.json's three manifests: the default manifests of seeds 01, 02 and 07. */
    static const uint8_t seeds[] = {0x01, 0x02, 0x07};
    for (size_t i = 0; i < sizeof seeds; i++) {
        memset(seed, seeds[i], sizeof seed);
        kl_hc_keypair(seed, pk, sk);
        size_t n = kl_hc_manifest_default(pk, man);
        char name[32];
        snprintf(name, sizeof name, "default-seed-%02x", seeds[i]);
        write_seed(dir, name, man, n);
    }
    size_t n = kl_hc_manifest_default(pk, man);

    /* Version 3, two signers, every optional field (prologue, linked, user data). */
    uint8_t full[512];
    size_t at = 0;
    at = put(full, at, 3);
    at = put(full, at, 0xf);
    at = put(full, at, 0);
    at = put(full, at, 2);
    at = put(full, at, 2);
    for (int s = 0; s < 2; s++) {
        at = put(full, at, 0);
        memcpy(full + at, man + 6, 2 * KL_HASH_BYTES);
        at += 2 * KL_HASH_BYTES;
    }
    memset(full + at, 0x77, KL_HASH_BYTES);
    at = put(full, at + KL_HASH_BYTES, 100000);
    at = put(full, at, 1);
    memset(full + at, 0x88, KL_HASH_BYTES);
    at = put(full, at + KL_HASH_BYTES, 5);
    memcpy(full + at, "hello", 5);
    at += 5;
    write_seed(dir, "v3-all-fields", full, at);

    /* Version 2 with no signers and a prologue only. */
    at = 0;
    at = put(full, at, 2);
    at = put(full, at, 0x2);
    at = put(full, at, 0);
    at = put(full, at, 0);
    at = put(full, at, 0);
    memset(full + at, 0x55, KL_HASH_BYTES);
    at = put(full, at + KL_HASH_BYTES, 3);
    write_seed(dir, "v2-prologue-only", full, at);

    /* The default manifest with a long-form version (fd 01 00). */
    full[0] = 0xfd;
    full[1] = 0x01;
    full[2] = 0x00;
    memcpy(full + 3, man + 1, n - 1);
    write_seed(dir, "default-long-version", full, n + 2);

    /* A stored signature envelope as this target reads it: 01 00 00 00. */
    static const uint8_t env[] = {0x01, 0x00, 0x00, 0x00};
    write_seed(dir, "envelope", env, sizeof env);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
