/*
 * noise.c - the Noise XX handshake of noise.h: Noise_XX_Ed25519_ChaChaPoly_BLAKE2b
 * as noise-handshake 4.2.0 with noise-curve-ed 2.1.0 runs it for
 * @hyperswarm/secret-stream (notes section 8.3; tools/ref.mjs `NoiseState`).
 *
 *   -> e                 32 bytes
 *   <- e, ee, s, es      96 bytes: e || ChaChaPoly(s) || tag of the empty payload
 *   -> s, se             64 bytes: ChaChaPoly(s) || tag of the empty payload
 *
 * Invariants: `done` counts the messages behind us (0..3) and only grows;
 * odd messages are the initiator's, so whose turn it is follows from
 * (done, role). Once `err` is set it stays set and every secret is wiped.
 * Every received message is checked for its exact size before a byte of it
 * is read, and every remote key is checked as an Ed25519 point before it
 * enters a DH. The static and ephemeral secret keys are wiped as soon as
 * the last DH is done (or the handshake fails); ck and k, which give no
 * more than the split keys, stay until kl_noise_wipe (tests compare them).
 *
 * The one thing a reader would get wrong: this is not X25519. The "DH" is
 * an Ed25519 scalar multiplication (crypto_scalarmult_ed25519_noclamp) with
 * the clamped SHA-512 scalar of the secret seed, as Ed25519 signing derives
 * it, so the static keys are ordinary signing keys. And Noise hashes even
 * the empty payloads (MixHash("") or the 16-byte tag of an empty
 * ciphertext): leaving one out changes h and with it every later key.
 */
#include "noise.h"

#include <sodium.h>
#include <string.h>

#include "engine/util.h"

/* h starts as the protocol name zero-padded to HASHLEN (it is shorter than 64 bytes). */
static const char NOISE_PROTOCOL[] = "Noise_XX_Ed25519_ChaChaPoly_BLAKE2b";
/* BLAKE2b's block: HMAC pads its key to this (notes 8.3). */
#define NOISE_HMAC_BLOCK 128u
/* ChaCha20-Poly1305 IETF nonce: 4 zero bytes || u64_le(n). */
#define NOISE_NONCE_BYTES 12u
/* A libsodium secret key is seed || public key: the seed's size, and where the key starts. */
#define NOISE_SEED_BYTES 32u
#define NOISE_SK_PK_AT   NOISE_SEED_BYTES

_Static_assert(sizeof NOISE_PROTOCOL - 1 <= KL_NOISE_HASH_BYTES, "protocol name fits in h");
_Static_assert(KL_NOISE_HASH_BYTES == crypto_generichash_BYTES_MAX, "HASHLEN is BLAKE2b-512");
_Static_assert(KL_NOISE_KEY_BYTES == crypto_aead_chacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(NOISE_NONCE_BYTES == crypto_aead_chacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(KL_NOISE_TAG_BYTES == crypto_aead_chacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(KL_NOISE_SK_BYTES == crypto_sign_SECRETKEYBYTES, "Ed25519 secret key size");
_Static_assert(KL_NOISE_PK_BYTES == crypto_sign_PUBLICKEYBYTES, "Ed25519 public key size");
_Static_assert(KL_NOISE_DH_BYTES == crypto_scalarmult_ed25519_BYTES, "DH output size");
_Static_assert(KL_NOISE_MSG2_BYTES == 2 * KL_NOISE_PK_BYTES + 2 * KL_NOISE_TAG_BYTES, "msg 2");
_Static_assert(KL_NOISE_MSG3_BYTES == KL_NOISE_PK_BYTES + 2 * KL_NOISE_TAG_BYTES, "msg 3");

static const size_t MSG_BYTES[3] = {KL_NOISE_MSG1_BYTES, KL_NOISE_MSG2_BYTES, KL_NOISE_MSG3_BYTES};

/* ---------------------------------------------------------------- hashing */

/* H512(a || b). */
static void hash512(uint8_t out[KL_NOISE_HASH_BYTES], const uint8_t *a, size_t an, const uint8_t *b,
                    size_t bn) {
    crypto_generichash_state s;
    crypto_generichash_init(&s, NULL, 0, KL_NOISE_HASH_BYTES);
    crypto_generichash_update(&s, a, an);
    crypto_generichash_update(&s, b, bn);
    crypto_generichash_final(&s, out, KL_NOISE_HASH_BYTES);
    sodium_memzero(&s, sizeof s);
}

/* HMAC-BLAKE2b-512 of (m1 || m2) under a 64-byte key (shorter than the block: zero-padded). */
static void hmac(uint8_t out[KL_NOISE_HASH_BYTES], const uint8_t key[KL_NOISE_HASH_BYTES],
                 const uint8_t *m1, size_t n1, const uint8_t *m2, size_t n2) {
    uint8_t pad[NOISE_HMAC_BLOCK], inner[KL_NOISE_HASH_BYTES];
    crypto_generichash_state s;
    memset(pad, 0x36, sizeof pad);
    for (size_t i = 0; i < KL_NOISE_HASH_BYTES; i++)
        pad[i] ^= key[i];
    crypto_generichash_init(&s, NULL, 0, KL_NOISE_HASH_BYTES);
    crypto_generichash_update(&s, pad, sizeof pad);
    crypto_generichash_update(&s, m1, n1);
    crypto_generichash_update(&s, m2, n2);
    crypto_generichash_final(&s, inner, sizeof inner);
    memset(pad, 0x5c, sizeof pad);
    for (size_t i = 0; i < KL_NOISE_HASH_BYTES; i++)
        pad[i] ^= key[i];
    hash512(out, pad, sizeof pad, inner, sizeof inner);
    sodium_memzero(pad, sizeof pad);
    sodium_memzero(inner, sizeof inner);
    sodium_memzero(&s, sizeof s);
}

/* HKDF(ck, ikm) with two outputs: prk = HMAC(ck, ikm), o1 = HMAC(prk, 01), o2 = HMAC(prk, o1 ||
 * 02). */
static void hkdf(const uint8_t ck[KL_NOISE_HASH_BYTES], const uint8_t *ikm, size_t n,
                 uint8_t o1[KL_NOISE_HASH_BYTES], uint8_t o2[KL_NOISE_HASH_BYTES]) {
    static const uint8_t one = 1, two = 2;
    uint8_t prk[KL_NOISE_HASH_BYTES];
    hmac(prk, ck, ikm, n, NULL, 0);
    hmac(o1, prk, &one, 1, NULL, 0);
    hmac(o2, prk, o1, KL_NOISE_HASH_BYTES, &two, 1);
    sodium_memzero(prk, sizeof prk);
}

/* ---------------------------------------------------------------- symmetric state */

static void mix_hash(kl_noise *st, const uint8_t *p, size_t n) {
    uint8_t h[KL_NOISE_HASH_BYTES];
    hash512(h, st->h, sizeof st->h, p, n);
    memcpy(st->h, h, sizeof h);
}

static void mix_key(kl_noise *st, const uint8_t dh[KL_NOISE_DH_BYTES]) {
    uint8_t o1[KL_NOISE_HASH_BYTES], o2[KL_NOISE_HASH_BYTES];
    hkdf(st->ck, dh, KL_NOISE_DH_BYTES, o1, o2);
    memcpy(st->ck, o1, sizeof o1);
    memcpy(st->k, o2, KL_NOISE_KEY_BYTES);
    st->has_key = 1;
    st->n = 0;
    sodium_memzero(o1, sizeof o1);
    sodium_memzero(o2, sizeof o2);
}

static void nonce_of(uint64_t n, uint8_t nonce[NOISE_NONCE_BYTES]) {
    memset(nonce, 0, 4);
    kl_store64(nonce + 4, n);
}

/* c = ChaChaPoly(k, n, ad = h, p) (n + 16 bytes at out), n += 1, MixHash(c). Needs a key. */
static void encrypt_and_hash(kl_noise *st, const uint8_t *p, size_t n, uint8_t *out) {
    uint8_t nonce[NOISE_NONCE_BYTES];
    unsigned long long clen = 0;
    KL_ASSERT(st->has_key);
    nonce_of(st->n++, nonce);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, p, n, st->h, sizeof st->h, NULL, nonce,
                                              st->k);
    KL_ASSERT(clen == n + KL_NOISE_TAG_BYTES);
    mix_hash(st, out, (size_t)clen);
}

/* The inverse: 0 with c's plaintext (len - 16 bytes) at out, or -1 if the tag fails. */
static int decrypt_and_hash(kl_noise *st, const uint8_t *c, size_t len, uint8_t *out) {
    uint8_t nonce[NOISE_NONCE_BYTES];
    unsigned long long plen = 0;
    KL_ASSERT(st->has_key && len >= KL_NOISE_TAG_BYTES);
    nonce_of(st->n++, nonce);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &plen, NULL, c, len, st->h, sizeof st->h,
                                                  nonce, st->k) != 0)
        return -1;
    KL_ASSERT(plen == len - KL_NOISE_TAG_BYTES);
    mix_hash(st, c, len);
    return 0;
}

/* ---------------------------------------------------------------- DH */

int kl_noise_dh(uint8_t out[KL_NOISE_DH_BYTES], const uint8_t local_sk[KL_NOISE_SK_BYTES],
                const uint8_t remote_pk[KL_NOISE_PK_BYTES]) {
    uint8_t digest[crypto_hash_sha512_BYTES];
    crypto_hash_sha512(digest, local_sk, NOISE_SEED_BYTES);
    digest[0] &= 248;
    digest[31] &= 127;
    digest[31] |= 64;
    int rc = crypto_scalarmult_ed25519_noclamp(out, digest, remote_pk);
    sodium_memzero(digest, sizeof digest);
    if (rc != 0) {
        sodium_memzero(out, KL_NOISE_DH_BYTES);
        return kl_errf(KL_ECORRUPT, "not a usable Ed25519 point (invalid, small order or "
                                    "outside the main subgroup)");
    }
    return 0;
}

/* ---------------------------------------------------------------- the state machine */

static const uint8_t *e_pk(const kl_noise *st) {
    return st->e_sk + NOISE_SK_PK_AT;
}
static const uint8_t *s_pk(const kl_noise *st) {
    return st->s_sk + NOISE_SK_PK_AT;
}

/* The key pairs: needed only until the last DH. */
static void wipe_key_pairs(kl_noise *st) {
    sodium_memzero(st->s_sk, sizeof st->s_sk);
    sodium_memzero(st->e_sk, sizeof st->e_sk);
}

/* Fail for good with the reason already in the thread's context. */
static int fail(kl_noise *st, int code) {
    KL_ASSERT(code < 0);
    wipe_key_pairs(st);
    sodium_memzero(st->ck, sizeof st->ck);
    sodium_memzero(st->k, sizeof st->k);
    sodium_memzero(&st->keys, sizeof st->keys);
    st->has_key = 0;
    st->err = code;
    return code;
}

/* DH into a MixKey; a DH the remote's key makes fail fails the handshake. */
static int mix_dh(kl_noise *st, const uint8_t local_sk[KL_NOISE_SK_BYTES],
                  const uint8_t remote_pk[KL_NOISE_PK_BYTES], const char *what) {
    uint8_t dh[KL_NOISE_DH_BYTES];
    if (kl_noise_dh(dh, local_sk, remote_pk) != 0)
        return fail(st, kl_err_prefix(KL_ECORRUPT, "noise: %s: ", what));
    mix_key(st, dh);
    sodium_memzero(dh, sizeof dh);
    return 0;
}

/* A remote key is refused before any DH uses it (the same checks libsodium's DH makes). */
static int check_point(kl_noise *st, const uint8_t pk[KL_NOISE_PK_BYTES], const char *what) {
    if (!crypto_core_ed25519_is_valid_point(pk))
        return fail(st,
                    kl_errf(KL_ECORRUPT,
                            "noise: %s is not a valid Ed25519 point (or has small order)", what));
    return 0;
}

/* Split: (o1, o2) = HKDF(ck, ""); the initiator sends with o1, the responder with o2. */
static void split(kl_noise *st) {
    uint8_t o1[KL_NOISE_HASH_BYTES], o2[KL_NOISE_HASH_BYTES];
    KL_ASSERT(st->done == 3 && st->err == 0);
    hkdf(st->ck, NULL, 0, o1, o2);
    int ini = st->role == KL_NOISE_INITIATOR;
    st->keys.role = st->role;
    memcpy(st->keys.hash, st->h, KL_NOISE_HASH_BYTES);
    memcpy(st->keys.tx, ini ? o1 : o2, KL_NOISE_KEY_BYTES);
    memcpy(st->keys.rx, ini ? o2 : o1, KL_NOISE_KEY_BYTES);
    memcpy(st->keys.remote_pk, st->rs, KL_NOISE_PK_BYTES);
    sodium_memzero(o1, sizeof o1);
    sodium_memzero(o2, sizeof o2);
    /* ck and k stay until kl_noise_wipe: they give no more than the split keys beside them. */
    wipe_key_pairs(st);
}

static int check_sk(const uint8_t sk[KL_NOISE_SK_BYTES], const char *what) {
    uint8_t pk[KL_NOISE_PK_BYTES], sk2[KL_NOISE_SK_BYTES];
    crypto_sign_seed_keypair(pk, sk2, sk);
    int same = sodium_memcmp(sk2, sk, KL_NOISE_SK_BYTES) == 0;
    sodium_memzero(sk2, sizeof sk2);
    if (!same)
        return kl_errf(KL_EINVAL, "noise: the %s secret key's public half is not its seed's", what);
    return 0;
}

int kl_noise_init(kl_noise *st, kl_noise_role role, const uint8_t static_sk[KL_NOISE_SK_BYTES],
                  const uint8_t *ephemeral_sk) {
    if (role != KL_NOISE_INITIATOR && role != KL_NOISE_RESPONDER)
        return kl_errf(KL_EINVAL, "noise: unknown role %d", (int)role);
    /* Idempotent and cheap enough once per connection; picks libsodium's fastest code. */
    KL_ASSERT(sodium_init() >= 0);
    int rc = check_sk(static_sk, "static");
    if (rc == 0 && ephemeral_sk)
        rc = check_sk(ephemeral_sk, "ephemeral");
    if (rc)
        return rc;
    memset(st, 0, sizeof *st);
    st->role = role;
    memcpy(st->s_sk, static_sk, KL_NOISE_SK_BYTES);
    if (ephemeral_sk) {
        memcpy(st->e_sk, ephemeral_sk, KL_NOISE_SK_BYTES);
    } else {
        uint8_t pk[KL_NOISE_PK_BYTES];
        crypto_sign_keypair(pk, st->e_sk);
        KL_ASSERT(memcmp(pk, e_pk(st), KL_NOISE_PK_BYTES) == 0);
    }
    /* h = protocol name padded (it fits in HASHLEN), ck = h, then MixHash(prologue = ""). */
    memcpy(st->h, NOISE_PROTOCOL, sizeof NOISE_PROTOCOL - 1);
    memcpy(st->ck, st->h, sizeof st->h);
    mix_hash(st, NULL, 0);
    KL_ASSERT(st->done == 0 && !st->has_key);
    return 0;
}

/* Is message `done + 1` ours to write? Odd messages (done even) are the initiator's. */
static int our_turn(const kl_noise *st) {
    return (st->done % 2 == 0) == (st->role == KL_NOISE_INITIATOR);
}

kl_noise_next kl_noise_status(const kl_noise *st, size_t *size) {
    kl_noise_next next;
    size_t n = 0;
    if (st->err)
        next = KL_NOISE_FAILED;
    else if (st->done >= 3)
        next = KL_NOISE_DONE;
    else {
        next = our_turn(st) ? KL_NOISE_WRITE : KL_NOISE_READ;
        n = MSG_BYTES[st->done];
    }
    if (size)
        *size = n;
    return next;
}

/* Message 1, the initiator's: e. */
static void write_msg1(kl_noise *st, uint8_t *out) {
    memcpy(out, e_pk(st), KL_NOISE_PK_BYTES);
    mix_hash(st, out, KL_NOISE_PK_BYTES);
    mix_hash(st, NULL, 0); /* the empty payload, with no key yet */
}

/* Message 2, the responder's: e, ee, s, es. */
static int write_msg2(kl_noise *st, uint8_t *out) {
    memcpy(out, e_pk(st), KL_NOISE_PK_BYTES);
    mix_hash(st, out, KL_NOISE_PK_BYTES);
    int rc = mix_dh(st, st->e_sk, st->re, "ee with the initiator's ephemeral key");
    if (rc)
        return rc;
    encrypt_and_hash(st, s_pk(st), KL_NOISE_PK_BYTES, out + KL_NOISE_PK_BYTES);
    rc = mix_dh(st, st->s_sk, st->re, "es with the initiator's ephemeral key");
    if (rc)
        return rc;
    encrypt_and_hash(st, NULL, 0, out + 2 * KL_NOISE_PK_BYTES + KL_NOISE_TAG_BYTES);
    return 0;
}

/* Message 3, the initiator's: s, se. */
static int write_msg3(kl_noise *st, uint8_t *out) {
    encrypt_and_hash(st, s_pk(st), KL_NOISE_PK_BYTES, out);
    int rc = mix_dh(st, st->s_sk, st->re, "se with the responder's ephemeral key");
    if (rc)
        return rc;
    encrypt_and_hash(st, NULL, 0, out + KL_NOISE_PK_BYTES + KL_NOISE_TAG_BYTES);
    return 0;
}

int kl_noise_write(kl_noise *st, uint8_t *out, size_t cap, size_t *n) {
    size_t size = 0;
    kl_noise_next next = kl_noise_status(st, &size);
    *n = 0;
    if (next == KL_NOISE_FAILED)
        return kl_errf(st->err, "noise: the handshake failed earlier");
    if (next != KL_NOISE_WRITE)
        return kl_errf(KL_EINVAL, "noise: not this side's turn to write (after %u messages)",
                       st->done);
    if (cap < size) {
        *n = size;
        return kl_errf(KL_ETOOSMALL, "noise: message %u needs %zu bytes, the buffer has %zu",
                       st->done + 1, size, cap);
    }
    int rc = 0;
    switch (st->done) {
    case 0:
        write_msg1(st, out);
        break;
    case 1:
        rc = write_msg2(st, out);
        break;
    default:
        rc = write_msg3(st, out);
        break;
    }
    if (rc)
        return rc;
    st->done++;
    if (st->done == 3)
        split(st);
    *n = size;
    KL_ASSERT(st->err == 0 && st->done <= 3);
    return 0;
}

/* Message 1, at the responder. */
static int read_msg1(kl_noise *st, const uint8_t *msg) {
    int rc = check_point(st, msg, "message 1: the initiator's ephemeral key");
    if (rc)
        return rc;
    memcpy(st->re, msg, KL_NOISE_PK_BYTES);
    mix_hash(st, st->re, KL_NOISE_PK_BYTES);
    mix_hash(st, NULL, 0);
    return 0;
}

/* Message 2, at the initiator. */
static int read_msg2(kl_noise *st, const uint8_t *msg) {
    int rc = check_point(st, msg, "message 2: the responder's ephemeral key");
    if (rc)
        return rc;
    memcpy(st->re, msg, KL_NOISE_PK_BYTES);
    mix_hash(st, st->re, KL_NOISE_PK_BYTES);
    if ((rc = mix_dh(st, st->e_sk, st->re, "message 2: ee")) != 0)
        return rc;
    if (decrypt_and_hash(st, msg + KL_NOISE_PK_BYTES, KL_NOISE_PK_BYTES + KL_NOISE_TAG_BYTES,
                         st->rs) != 0)
        return fail(st, kl_errf(KL_EVERIFY, "noise: message 2: the responder's static key does "
                                            "not authenticate"));
    if ((rc = check_point(st, st->rs, "message 2: the responder's static key")) != 0)
        return rc;
    if ((rc = mix_dh(st, st->e_sk, st->rs, "message 2: es")) != 0)
        return rc;
    if (decrypt_and_hash(st, msg + 2 * KL_NOISE_PK_BYTES + KL_NOISE_TAG_BYTES, KL_NOISE_TAG_BYTES,
                         NULL) != 0)
        return fail(st, kl_errf(KL_EVERIFY, "noise: message 2: the payload tag does not "
                                            "authenticate"));
    return 0;
}

/* Message 3, at the responder. */
static int read_msg3(kl_noise *st, const uint8_t *msg) {
    int rc;
    if (decrypt_and_hash(st, msg, KL_NOISE_PK_BYTES + KL_NOISE_TAG_BYTES, st->rs) != 0)
        return fail(st, kl_errf(KL_EVERIFY, "noise: message 3: the initiator's static key does "
                                            "not authenticate"));
    if ((rc = check_point(st, st->rs, "message 3: the initiator's static key")) != 0)
        return rc;
    if ((rc = mix_dh(st, st->e_sk, st->rs, "message 3: se")) != 0)
        return rc;
    if (decrypt_and_hash(st, msg + KL_NOISE_PK_BYTES + KL_NOISE_TAG_BYTES, KL_NOISE_TAG_BYTES,
                         NULL) != 0)
        return fail(st, kl_errf(KL_EVERIFY, "noise: message 3: the payload tag does not "
                                            "authenticate"));
    return 0;
}

int kl_noise_read(kl_noise *st, const uint8_t *msg, size_t len) {
    size_t size = 0;
    kl_noise_next next = kl_noise_status(st, &size);
    if (next == KL_NOISE_FAILED)
        return kl_errf(st->err, "noise: the handshake failed earlier");
    if (next != KL_NOISE_READ)
        return kl_errf(KL_EINVAL, "noise: not the remote's turn to write (after %u messages)",
                       st->done);
    if (len != size)
        return fail(st, kl_errf(KL_ECORRUPT, "noise: message %u is %zu bytes, expected %zu",
                                st->done + 1, len, size));
    int rc;
    switch (st->done) {
    case 0:
        rc = read_msg1(st, msg);
        break;
    case 1:
        rc = read_msg2(st, msg);
        break;
    default:
        rc = read_msg3(st, msg);
        break;
    }
    if (rc)
        return rc;
    st->done++;
    if (st->done == 3)
        split(st);
    KL_ASSERT(st->err == 0 && st->done <= 3);
    return 0;
}

int kl_noise_keys_get(const kl_noise *st, kl_noise_keys *out) {
    if (kl_noise_status(st, NULL) != KL_NOISE_DONE)
        return kl_errf(KL_EINVAL, "noise: the handshake is not complete");
    *out = st->keys;
    return 0;
}

void kl_noise_wipe(kl_noise *st) {
    sodium_memzero(st, sizeof *st);
}
