/*
 * noise.h - the Noise XX handshake that opens every Hypercore connection,
 * `Noise_XX_Ed25519_ChaChaPoly_BLAKE2b` exactly as @hyperswarm/secret-stream
 * 6.9.2 (noise-handshake 4.2.0, noise-curve-ed 2.1.0) runs it: empty prologue,
 * empty payloads, "DH" on Ed25519 keys (notes section 8.3). The golden vectors
 * tests/data/hypercore/transcript*.json pin every byte (tests/test_noise.c).
 *
 * One kl_noise is one side of one handshake. The caller moves bytes; the
 * state only says what comes next:
 *
 *     kl_noise_init(&st, role, static_sk, NULL);
 *     while (kl_noise_status(&st, &size) is WRITE or READ)
 *         WRITE: kl_noise_write(&st, buf, sizeof buf, &n), frame and send n bytes
 *         READ:  receive one frame's payload, kl_noise_read(&st, payload, len)
 *     DONE:  kl_noise_keys_get(&st, &keys); kl_noise_wipe(&st)
 *
 * The three messages are 32, 96 and 64 bytes (KL_NOISE_MSG{1,2,3}_BYTES),
 * each the payload of one u24-length frame (stream.h). A received message of
 * any other size, one that fails authentication, or an Ed25519 point that is
 * invalid or of small order fails the handshake for good: every later call
 * returns the same error, and the secrets are wiped at once.
 *
 * The state holds secret keys in place (no allocation): the caller decides
 * where it lives and calls kl_noise_wipe when done with it.
 */
#ifndef KL_NOISE_H
#define KL_NOISE_H

#include <stddef.h>
#include <stdint.h>

#define KL_NOISE_HASH_BYTES 64u /* HASHLEN of BLAKE2b: h, ck and the handshake hash */
#define KL_NOISE_KEY_BYTES  32u /* a ChaCha20-Poly1305 key, and each split key */
#define KL_NOISE_PK_BYTES   32u /* an Ed25519 public key */
#define KL_NOISE_SK_BYTES                                                                          \
    64u /* an Ed25519 secret key as libsodium keeps it: seed || public key                         \
         */
#define KL_NOISE_DH_BYTES   32u
#define KL_NOISE_TAG_BYTES  16u /* the Poly1305 tag of every encrypted part */
#define KL_NOISE_MSG1_BYTES 32u /* -> e */
#define KL_NOISE_MSG2_BYTES                                                                        \
    96u /* <- e, ee, s, es: e (32) || enc(s) (48) || tag of the empty payload */
#define KL_NOISE_MSG3_BYTES 64u /* -> s, se: enc(s) (48) || tag of the empty payload */
#define KL_NOISE_MSG_MAX    96u /* a buffer this big holds any handshake message */

/* The side that connects is the initiator, the side that accepts the responder (notes 8.1). */
typedef enum kl_noise_role { KL_NOISE_INITIATOR = 0, KL_NOISE_RESPONDER = 1 } kl_noise_role;

/* What the handshake needs next. */
typedef enum kl_noise_next {
    KL_NOISE_WRITE = 0, /* write the next message (kl_noise_write) */
    KL_NOISE_READ = 1,  /* read the remote's next message (kl_noise_read) */
    KL_NOISE_DONE = 2,  /* complete: kl_noise_keys_get */
    KL_NOISE_FAILED = 3 /* failed for good */
} kl_noise_next;

/* What a completed handshake gives its side. */
typedef struct kl_noise_keys {
    kl_noise_role role;
    uint8_t hash[KL_NOISE_HASH_BYTES]; /* the handshake hash: keys stream ids and capabilities */
    uint8_t tx[KL_NOISE_KEY_BYTES];    /* our secretstream send key */
    uint8_t rx[KL_NOISE_KEY_BYTES];    /* our receive key (the remote's send key) */
    uint8_t
        remote_pk[KL_NOISE_PK_BYTES]; /* the remote's static key: its identity, unchecked here */
} kl_noise_keys;

/*
 * One side's state. The fields are the Noise symmetric state and the keys
 * of the handshake; tests read h, ck, k and n to compare them with the
 * vectors, nothing else should.
 */
typedef struct kl_noise {
    kl_noise_role role;
    unsigned done; /* messages written or read so far, 0..3 */
    int err;       /* 0, or the error that failed the handshake for good */
    int has_key;   /* k is set (after the first MixKey) */
    uint64_t n;    /* the nonce of the next EncryptAndHash / DecryptAndHash */
    uint8_t h[KL_NOISE_HASH_BYTES];
    uint8_t ck[KL_NOISE_HASH_BYTES];
    uint8_t k[KL_NOISE_KEY_BYTES];
    uint8_t s_sk[KL_NOISE_SK_BYTES],
        e_sk[KL_NOISE_SK_BYTES]; /* ours; the public keys are their tails */
    uint8_t re[KL_NOISE_PK_BYTES], rs[KL_NOISE_PK_BYTES]; /* the remote's ephemeral and static */
    kl_noise_keys keys;                                   /* filled when the handshake completes */
} kl_noise;

/*
 * Start one side with the static key pair `static_sk` (libsodium's 64-byte
 * secret key: seed || public key) and the ephemeral `ephemeral_sk` in the
 * same form, or NULL for a fresh one (crypto_sign_keypair; tests pass the
 * vectors' keys to reproduce a transcript). KL_EINVAL if a secret key's
 * public half is not the one its seed makes.
 */
int kl_noise_init(kl_noise *st, kl_noise_role role, const uint8_t static_sk[KL_NOISE_SK_BYTES],
                  const uint8_t *ephemeral_sk);

/* What comes next; *size (if not NULL) gets the next message's size, 0 when none. */
kl_noise_next kl_noise_status(const kl_noise *st, size_t *size);

/*
 * Write the next message into out[0..cap) and its size into *n. KL_EINVAL if
 * it is not this side's turn, KL_ETOOSMALL (with *n the size needed) if cap
 * is too small: both change nothing. The error of a failed handshake, or
 * KL_ECORRUPT if the remote's ephemeral key made the DH fail (then it fails).
 */
int kl_noise_write(kl_noise *st, uint8_t *out, size_t cap, size_t *n);

/*
 * Read the remote's next message (one frame's whole payload). KL_EINVAL if it
 * is not the remote's turn (nothing changes). KL_ECORRUPT if the size is not
 * exactly the message's or a key in it is not a valid Ed25519 point of the
 * main subgroup; KL_EVERIFY if a tag does not authenticate. Both fail the
 * handshake for good, with the reason in kl_last_error().
 */
int kl_noise_read(kl_noise *st, const uint8_t *msg, size_t len);

/* Copy out the keys of a completed handshake; KL_EINVAL if it is not complete. */
int kl_noise_keys_get(const kl_noise *st, kl_noise_keys *out);

/* Wipe the whole state (sodium_memzero); it must be initialised again to be used. */
void kl_noise_wipe(kl_noise *st);

/*
 * The handshake's DH (noise-curve-ed): crypto_scalarmult_ed25519_noclamp of
 * the clamped first half of SHA-512(local seed) with the remote public key.
 * KL_ECORRUPT if libsodium refuses the point (not canonical, not on the
 * curve or its main subgroup, small order) or the result is the identity.
 */
int kl_noise_dh(uint8_t out[KL_NOISE_DH_BYTES], const uint8_t local_sk[KL_NOISE_SK_BYTES],
                const uint8_t remote_pk[KL_NOISE_PK_BYTES]);

#endif
