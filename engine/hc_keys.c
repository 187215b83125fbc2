/*
 * hc_keys.c - the byte-level half of hc.h: compact-encoding, the default
 * single-signer manifest and the manifest decoder, the core key and the
 * discovery key, the signable and the stored signature (Hypercore notes,
 * sections 1, 2, 5 and 6; hypercore 11.37.1 lib/messages.js and lib/caps.js).
 *
 * Invariants: every read of untrusted bytes goes through a kl_cd, which
 * checks bounds before it touches a byte, does not move on a failed read
 * and, once it has failed, fails every later read; a decoder that refuses its input leaves its
 * output untouched. Every count read from the input is bounded twice: by
 * compact-encoding's array limit and by the bytes that are left.
 *
 * The one thing a reader would get wrong: the 68-byte stored signature of a
 * default core is not a signature plus padding but a one-entry multisig
 * encoding (`01 00 <sig> 00 00`: one proof, signer 0, patch 0, no patch
 * nodes). kl_hc_verify decodes it as that structure and accepts only the
 * canonical 68-byte form kl_hc_sign writes; the raw 64 bytes are signed over
 * the signable, never over the envelope.
 */
#include "hc.h"

#include <sodium.h>
#include <stdatomic.h>

#include "util.h"

/* compact-encoding's uint prefixes (notes section 1). */
#define CE_U16 0xfdu
#define CE_U32 0xfeu
#define CE_U64 0xffu
/* compact-encoding decodes uints into JS numbers and refuses anything above 2^53 - 1. */
#define CE_SAFE_MAX ((1ull << 53) - 1)
/* compact-encoding's c.array refuses longer arrays (index.js, "Array is too big"). */
#define CE_ARRAY_MAX 0x100000u

/* The default manifest: version, flags, hash, quorum, signer count, signature type, ns, pk. */
#define MANIFEST_DEFAULT_BYTES (6u + KL_HASH_BYTES + KL_PK_BYTES)
#define MANIFEST_VERSION_MAX   3u /* hypercore: "Unknown version" above 3 */
/* lib/messages.js MANIFEST_* flags: which optional fields follow the signers. */
#define MANIFEST_PATCH     0x1u
#define MANIFEST_PROLOGUE  0x2u
#define MANIFEST_LINKED    0x4u
#define MANIFEST_USER_DATA 0x8u
/* A signer is at least: signature type (1 byte), namespace, public key. */
#define SIGNER_MIN_BYTES (1u + KL_HASH_BYTES + KL_PK_BYTES)

#define SIGNABLE_DEFAULT_BYTES 112u /* TREE, key, tree hash, u64 length, u64 fork */
#define SIGNABLE_COMPAT_BYTES  80u  /* TREE, tree hash, u64 length, u64 fork */

/*
 * namespace("hypercore", 6) of lib/caps.js: ns[i] = H(H("hypercore") || u8(i)).
 * Kept as constants (notes section 2 lists them); tests/test_hc.c derives
 * them from the rule and checks the bytes these produce (signable prefix,
 * manifest namespace, core key).
 */
static const uint8_t NS_TREE[KL_HASH_BYTES] = {
    0x9f, 0xac, 0x70, 0xb5, 0x0c, 0xa1, 0x4e, 0xfc, 0x4e, 0x91, 0xc8, 0x33, 0xb2, 0x04, 0xe7, 0x5b,
    0x8b, 0x5a, 0xad, 0x8b, 0x58, 0x81, 0xbf, 0xc0, 0xad, 0xb5, 0xef, 0x38, 0xa3, 0x27, 0x5b, 0x9c};
static const uint8_t NS_MANIFEST[KL_HASH_BYTES] = {
    0xe6, 0x4b, 0x71, 0x08, 0xea, 0xcc, 0xe4, 0x7c, 0xfc, 0x61, 0xac, 0x85, 0x05, 0x68, 0xf5, 0x5f,
    0x8b, 0x15, 0xb8, 0x2e, 0xc5, 0xed, 0x78, 0xc4, 0xec, 0x59, 0x7b, 0x03, 0x6e, 0x2a, 0x14, 0x98};
static const uint8_t NS_DEFAULT[KL_HASH_BYTES] = {
    0x41, 0x44, 0xee, 0xa5, 0x31, 0xe4, 0x83, 0xd5, 0x4e, 0x0c, 0x14, 0xf4, 0xca, 0x68, 0xe0, 0x64,
    0x4f, 0x35, 0x53, 0x43, 0xff, 0x6f, 0xcb, 0x0f, 0x00, 0x52, 0x00, 0xe1, 0x2c, 0xd7, 0x47, 0xcb};

/* The message the discovery key hashes (hypercore-crypto discoveryKey). */
static const uint8_t DISCOVERY_MSG[] = {'h', 'y', 'p', 'e', 'r', 'c', 'o', 'r', 'e'};

/*
 * libsodium asks for sodium_init() before use; it is idempotent and
 * thread-safe, the flag only spares the lock it takes on every call.
 */
static void hc_sodium_ready(void) {
    static atomic_int ready;
    if (atomic_load_explicit(&ready, memory_order_acquire))
        return;
    KL_ASSERT(sodium_init() >= 0);
    atomic_store_explicit(&ready, 1, memory_order_release);
}

/* ---- compact-encoding ---- */

size_t kl_ce_uint(uint8_t *out, uint64_t v) {
    if (v <= 0xfc) {
        out[0] = (uint8_t)v;
        return 1;
    }
    if (v <= 0xffff) {
        out[0] = CE_U16;
        kl_store16(out + 1, (uint16_t)v);
        return 3;
    }
    if (v <= 0xffffffffu) {
        out[0] = CE_U32;
        kl_store32(out + 1, (uint32_t)v);
        return 5;
    }
    out[0] = CE_U64;
    kl_store64(out + 1, v);
    return 9;
}

static int cd_fail(kl_cd *d) {
    if (!d->err)
        d->err = KL_ECORRUPT;
    return d->err;
}

/* Are n more bytes there? Fails the reader if not. */
static int cd_has(kl_cd *d, size_t n) {
    KL_ASSERT(d->at <= d->len && (d->p != NULL || d->len == 0));
    if (d->err)
        return 0;
    if (n > d->len - d->at) {
        cd_fail(d);
        return 0;
    }
    return 1;
}

uint64_t kl_cd_uint(kl_cd *d) {
    if (!cd_has(d, 1))
        return 0;
    uint8_t a = d->p[d->at];
    size_t width = a == CE_U16 ? 2 : a == CE_U32 ? 4 : a == CE_U64 ? 8 : 0;
    if (!cd_has(d, 1 + width))
        return 0;
    const uint8_t *q = d->p + d->at + 1;
    uint64_t v = width == 0   ? a
                 : width == 2 ? kl_load16(q)
                 : width == 4 ? kl_load32(q)
                              : kl_load64(q);
    if (v > CE_SAFE_MAX) {
        cd_fail(d);
        return 0;
    }
    d->at += 1 + width;
    KL_ASSERT(d->at <= d->len);
    return v;
}

const uint8_t *kl_cd_fixed(kl_cd *d, size_t n) {
    static const uint8_t empty[1];
    if (!cd_has(d, n))
        return NULL;
    /* A zero-length read of an empty input (p may be NULL) still succeeds. */
    const uint8_t *q = d->p ? d->p + d->at : empty;
    d->at += n;
    KL_ASSERT(d->at <= d->len);
    return q;
}

const uint8_t *kl_cd_buffer(kl_cd *d, size_t *n, size_t max) {
    size_t at = d->at;
    *n = 0;
    uint64_t len = kl_cd_uint(d);
    if (!d->err && len > max)
        cd_fail(d);
    const uint8_t *q = kl_cd_fixed(d, (size_t)len);
    if (!q) {
        d->at = at; /* like every failed read, a failed buffer does not move the reader */
        return NULL;
    }
    *n = (size_t)len;
    return q;
}

/* ---- key pairs and manifests ---- */

void kl_hc_keypair(const uint8_t seed[KL_SEED_BYTES], uint8_t pk[KL_PK_BYTES],
                   uint8_t sk[KL_SK_BYTES]) {
    hc_sodium_ready();
    int rc = crypto_sign_seed_keypair(pk, sk, seed);
    KL_ASSERT(rc == 0);
    KL_ASSERT(memcmp(sk + KL_SEED_BYTES, pk, KL_PK_BYTES) == 0);
}

size_t kl_hc_manifest_default(const uint8_t pk[KL_PK_BYTES], uint8_t out[KL_MANIFEST_MAX]) {
    size_t at = 0;
    at += kl_ce_uint(out + at, 1); /* version */
    at += kl_ce_uint(out + at, 0); /* flags: no patch, prologue, linked or user data */
    at += kl_ce_uint(out + at, 0); /* hash: blake2b */
    at += kl_ce_uint(out + at, 1); /* quorum */
    at += kl_ce_uint(out + at, 1); /* one signer */
    at += kl_ce_uint(out + at, 0); /* its signature type: ed25519 */
    memcpy(out + at, NS_DEFAULT, KL_HASH_BYTES);
    at += KL_HASH_BYTES;
    memcpy(out + at, pk, KL_PK_BYTES);
    at += KL_PK_BYTES;
    KL_ASSERT(at == MANIFEST_DEFAULT_BYTES && at <= KL_MANIFEST_MAX);
    return at;
}

/* A uint that kl_manifest keeps in 32 bits; refuses (sets err) above that. */
static uint32_t cd_u32(kl_cd *d) {
    size_t at = d->at;
    uint64_t v = kl_cd_uint(d);
    if (v > UINT32_MAX) {
        d->at = at;
        cd_fail(d);
        return 0;
    }
    return (uint32_t)v;
}

/* A count of items of at least `item_bytes` each, bounded by the array limit and the input. */
static int cd_count(kl_cd *d, size_t item_bytes, const char *what, uint64_t *count) {
    KL_ASSERT(item_bytes > 0);
    uint64_t c = kl_cd_uint(d);
    if (d->err)
        return kl_errf(KL_ECORRUPT, "manifest: %s count cut short or out of range at byte %zu",
                       what, d->at);
    if (c > CE_ARRAY_MAX)
        return kl_errf(KL_ECORRUPT, "manifest: %llu %s, more than the %u an array may hold",
                       (unsigned long long)c, what, CE_ARRAY_MAX);
    if (c > (d->len - d->at) / item_bytes)
        return kl_errf(KL_ECORRUPT, "manifest: %llu %s do not fit in the %zu bytes left",
                       (unsigned long long)c, what, d->len - d->at);
    *count = c;
    return 0;
}

static int manifest_signers(kl_cd *d, kl_manifest *m) {
    uint64_t count;
    int rc = cd_count(d, SIGNER_MIN_BYTES, "signers", &count);
    if (rc)
        return rc;
    m->nsigners = (uint32_t)count;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t type = kl_cd_uint(d);
        const uint8_t *ns = kl_cd_fixed(d, KL_HASH_BYTES);
        const uint8_t *pk = kl_cd_fixed(d, KL_PK_BYTES);
        if (d->err)
            return kl_errf(KL_ECORRUPT, "manifest: signer %llu runs past the end",
                           (unsigned long long)i);
        if (type != 0)
            return kl_errf(KL_ECORRUPT, "manifest: signer %llu has unknown signature type %llu",
                           (unsigned long long)i, (unsigned long long)type);
        if (i == 0) {
            m->sig_type = (uint32_t)type;
            memcpy(m->ns, ns, KL_HASH_BYTES);
            memcpy(m->pk, pk, KL_PK_BYTES);
        }
    }
    return 0;
}

/*
 * The optional fields after the signers, in the order their flags name them
 * (MANIFEST_PATCH only allows patches; no field of its own follows).
 */
static int manifest_tail(kl_cd *d, uint32_t flags) {
    if (flags & MANIFEST_PROLOGUE) {
        kl_cd_fixed(d, KL_HASH_BYTES);
        kl_cd_uint(d);
        if (d->err)
            return kl_errf(KL_ECORRUPT, "manifest: prologue runs past the end");
    }
    if (flags & MANIFEST_LINKED) {
        uint64_t count;
        int rc = cd_count(d, KL_HASH_BYTES, "linked cores", &count);
        if (rc)
            return rc;
        kl_cd_fixed(d, (size_t)count * KL_HASH_BYTES);
        KL_ASSERT(!d->err); /* cd_count made sure they fit */
    }
    if (flags & MANIFEST_USER_DATA) {
        size_t n;
        if (!kl_cd_buffer(d, &n, d->len))
            return kl_errf(KL_ECORRUPT, "manifest: user data runs past the end");
    }
    return 0;
}

int kl_hc_manifest_decode(const uint8_t *p, size_t n, kl_manifest *m) {
    KL_ASSERT(p != NULL || n == 0);
    kl_cd d = {.p = p, .at = 0, .len = n, .err = 0};
    kl_manifest t;
    memset(&t, 0, sizeof t);
    uint64_t version = kl_cd_uint(&d);
    if (d.err)
        return kl_errf(KL_ECORRUPT, "manifest: version cut short or out of range (%zu bytes)", n);
    if (version == 0)
        return kl_errf(KL_ECORRUPT, "manifest: version 0 (the old layout) is not supported");
    if (version > MANIFEST_VERSION_MAX)
        return kl_errf(KL_ECORRUPT, "manifest: unknown version %llu", (unsigned long long)version);
    t.version = (uint32_t)version;
    /* Unknown flag bits are kept and ignored, as hypercore does; they are part of the key. */
    t.flags = cd_u32(&d);
    uint64_t hash = kl_cd_uint(&d);
    t.quorum = cd_u32(&d);
    if (d.err)
        return kl_errf(KL_ECORRUPT, "manifest: header fields cut short or out of range");
    if (hash != 0)
        return kl_errf(KL_ECORRUPT, "manifest: unknown hash id %llu", (unsigned long long)hash);
    t.hash = 0;
    int rc = manifest_signers(&d, &t);
    if (rc == 0)
        rc = manifest_tail(&d, t.flags);
    if (rc)
        return rc;
    KL_ASSERT(!d.err && d.at <= n);
    if (d.at != n)
        return kl_errf(KL_ECORRUPT, "manifest: %zu bytes of trailing garbage after %zu", n - d.at,
                       d.at);
    *m = t;
    return 0;
}

/* ---- keys ---- */

void kl_hc_core_key(kl_core_kind kind, const uint8_t pk[KL_PK_BYTES], uint8_t key[KL_HASH_BYTES]) {
    KL_ASSERT(kind == KL_CORE_DEFAULT || kind == KL_CORE_COMPAT);
    if (kind == KL_CORE_COMPAT) {
        memmove(key, pk, KL_PK_BYTES);
        return;
    }
    uint8_t man[KL_MANIFEST_MAX];
    size_t n = kl_hc_manifest_default(pk, man);
    crypto_generichash_blake2b_state st;
    crypto_generichash_blake2b_init(&st, NULL, 0, KL_HASH_BYTES);
    crypto_generichash_blake2b_update(&st, NS_MANIFEST, KL_HASH_BYTES);
    crypto_generichash_blake2b_update(&st, man, n);
    crypto_generichash_blake2b_final(&st, key, KL_HASH_BYTES);
}

void kl_hc_discovery_key(const uint8_t key[KL_HASH_BYTES], uint8_t out[KL_HASH_BYTES]) {
    int rc = crypto_generichash_blake2b(out, KL_HASH_BYTES, DISCOVERY_MSG, sizeof DISCOVERY_MSG,
                                        key, KL_HASH_BYTES);
    KL_ASSERT(rc == 0);
}

/* ---- signatures ---- */

size_t kl_hc_signable(kl_core_kind kind, const uint8_t key[KL_HASH_BYTES],
                      const uint8_t tree_hash[KL_HASH_BYTES], uint64_t length, uint64_t fork,
                      uint8_t out[112]) {
    KL_ASSERT(kind == KL_CORE_DEFAULT || kind == KL_CORE_COMPAT);
    size_t at = 0;
    memcpy(out, NS_TREE, KL_HASH_BYTES);
    at += KL_HASH_BYTES;
    /* A default core signs its key (the manifest hash) too; compat signs no key. */
    if (kind == KL_CORE_DEFAULT) {
        memcpy(out + at, key, KL_HASH_BYTES);
        at += KL_HASH_BYTES;
    }
    memcpy(out + at, tree_hash, KL_HASH_BYTES);
    at += KL_HASH_BYTES;
    kl_store64(out + at, length);
    kl_store64(out + at + 8, fork);
    at += 16;
    KL_ASSERT(at == (kind == KL_CORE_DEFAULT ? SIGNABLE_DEFAULT_BYTES : SIGNABLE_COMPAT_BYTES));
    return at;
}

void kl_hc_sign(kl_core_kind kind, const uint8_t sk[KL_SK_BYTES], const uint8_t key[KL_HASH_BYTES],
                const uint8_t tree_hash[KL_HASH_BYTES], uint64_t length, uint64_t fork,
                uint8_t sig[KL_STORED_SIG_MAX], size_t *n) {
    hc_sodium_ready();
    uint8_t msg[SIGNABLE_DEFAULT_BYTES];
    size_t mlen = kl_hc_signable(kind, key, tree_hash, length, fork, msg);
    if (kind == KL_CORE_COMPAT) {
        int rc = crypto_sign_detached(sig, NULL, msg, mlen, sk);
        KL_ASSERT(rc == 0);
        *n = KL_STORED_SIG_COMPAT;
        return;
    }
    /* multiSignature: proofs [ {signer 0, signature, patch 0} ], patch nodes [] */
    size_t at = 0;
    at += kl_ce_uint(sig + at, 1);
    at += kl_ce_uint(sig + at, 0);
    int rc = crypto_sign_detached(sig + at, NULL, msg, mlen, sk);
    KL_ASSERT(rc == 0);
    at += KL_SIG_BYTES;
    at += kl_ce_uint(sig + at, 0);
    at += kl_ce_uint(sig + at, 0);
    KL_ASSERT(at == KL_STORED_SIG_V1);
    *n = at;
}

/* The raw signature inside a default core's stored form, decoded strictly. */
static int stored_sig_raw(const uint8_t *sig, size_t n, const uint8_t **raw) {
    kl_cd d = {.p = sig, .at = 0, .len = n, .err = 0};
    uint64_t proofs = kl_cd_uint(&d);
    uint64_t signer = kl_cd_uint(&d);
    const uint8_t *r = kl_cd_fixed(&d, KL_SIG_BYTES);
    uint64_t patch = kl_cd_uint(&d);
    uint64_t nodes = kl_cd_uint(&d);
    if (d.err)
        return kl_errf(KL_EVERIFY, "stored signature: %zu bytes do not decode", n);
    if (proofs != 1)
        return kl_errf(KL_EVERIFY, "stored signature: %llu proofs, a one-signer core has 1",
                       (unsigned long long)proofs);
    if (signer != 0 || patch != 0 || nodes != 0)
        return kl_errf(KL_EVERIFY,
                       "stored signature: signer %llu, patch %llu, %llu patch nodes;"
                       " expected 0, 0, 0",
                       (unsigned long long)signer, (unsigned long long)patch,
                       (unsigned long long)nodes);
    if (d.at != n || n != KL_STORED_SIG_V1)
        return kl_errf(KL_EVERIFY, "stored signature: %zu bytes, not the canonical %u", n,
                       KL_STORED_SIG_V1);
    *raw = r;
    return 0;
}

int kl_hc_verify(kl_core_kind kind, const uint8_t pk[KL_PK_BYTES], const uint8_t key[KL_HASH_BYTES],
                 const uint8_t tree_hash[KL_HASH_BYTES], uint64_t length, uint64_t fork,
                 const uint8_t *sig, size_t n) {
    KL_ASSERT(kind == KL_CORE_DEFAULT || kind == KL_CORE_COMPAT);
    KL_ASSERT(sig != NULL || n == 0);
    hc_sodium_ready();
    const uint8_t *raw = sig;
    if (kind == KL_CORE_COMPAT) {
        if (n != KL_STORED_SIG_COMPAT)
            return kl_errf(KL_EVERIFY, "signature: %zu bytes, a compat core's is %u", n,
                           KL_STORED_SIG_COMPAT);
    } else {
        int rc = stored_sig_raw(sig, n, &raw);
        if (rc)
            return rc;
    }
    uint8_t msg[SIGNABLE_DEFAULT_BYTES];
    size_t mlen = kl_hc_signable(kind, key, tree_hash, length, fork, msg);
    if (crypto_sign_verify_detached(raw, msg, mlen, pk) != 0)
        return kl_errf(KL_EVERIFY, "signature does not verify for length %llu, fork %llu",
                       (unsigned long long)length, (unsigned long long)fork);
    return 0;
}
