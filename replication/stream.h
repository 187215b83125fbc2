/*
 * stream.h - what carries bytes after (and around) the Noise handshake, as
 * @hyperswarm/secret-stream 6.9.2 does it on TCP (notes sections 8.2, 8.4):
 *
 *   - kl_frames: the reader of `u24_le(len) || payload` frames from a byte
 *     stream that arrives in pieces of any size. Every frame on a Hypercore
 *     connection has this shape: the three handshake messages, the header
 *     frame and every encrypted message.
 *   - kl_ss: the secret stream. Each side sends one 56-byte header frame
 *     (stream id || secretstream header), then every message is one
 *     crypto_secretstream_xchacha20poly1305 message in one frame.
 *   - kl_ss_stream_id and kl_ss_capability: the two values keyed with the
 *     handshake hash. The hypercore channel's capability (notes 8.6) lives
 *     here rather than with the channel because it is a function of the
 *     handshake, like the stream ids.
 *
 * Frame sizes are bounded twice: by the wire format (a u24, so at most
 * KL_FRAME_MAX_PAYLOAD) and by the maximum each reader is given (issue 6: 4 MiB).
 */
#ifndef KL_STREAM_H
#define KL_STREAM_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/hc.h"
#include "noise.h"

/* ---- frames ---- */

#define KL_FRAME_HDR_BYTES   3u         /* u24_le(len) */
#define KL_FRAME_MAX_PAYLOAD 0xffffffu  /* the most a u24 can say */
#define KL_FRAME_WIRE_MAX    (4u << 20) /* the bound issue 6 sets on a frame payload: 4 MiB */

/* Write the 3-byte length prefix of a frame of `len` bytes (len <= KL_FRAME_MAX_PAYLOAD). */
void kl_frame_header(uint8_t out[KL_FRAME_HDR_BYTES], size_t len);

/*
 * An incremental frame reader. It holds at most one partial frame: the length
 * prefix and the payload bytes received so far, in a buffer that grows with
 * the bytes that actually arrived (never past the frame's length, so never
 * past the maximum) and is let go once idle if it grew past KL_FRAMES_KEEP.
 */
#define KL_FRAMES_KEEP (64u << 10)

typedef struct kl_frames {
    size_t max; /* the largest payload accepted */
    uint8_t hdr[KL_FRAME_HDR_BYTES];
    size_t hdr_have; /* bytes of the current length prefix held, 0..3 */
    size_t need;     /* the current frame's payload length, once hdr_have == 3 */
    size_t have;     /* payload bytes held, < need */
    uint8_t *buf;
    size_t cap;
    int held; /* the last frame returned is in buf (kl_frames_held) */
    int err;  /* 0, or the error that failed the reader for good */
} kl_frames;

/* A reader of frames of at most max_payload bytes (1..KL_FRAME_MAX_PAYLOAD, else KL_EINVAL). */
int kl_frames_init(kl_frames *r, size_t max_payload);
void kl_frames_free(kl_frames *r);

/*
 * Push in[0..n) and take out at most one frame. Consumes *used bytes (all of
 * them, or up to the end of the frame returned). Returns 1 with the frame's
 * payload in *frame, *len (pointing into `in` or into the reader's buffer,
 * valid until the next call), 0 when every byte was taken and no frame is
 * complete yet, or KL_ECORRUPT for a length above the maximum, refused as
 * soon as its 3 bytes are in, before any payload is buffered (KL_ENOMEM if
 * the buffer cannot grow). An error fails the reader for good. Call it
 * again with the rest until it returns 0: every call with n > 0 consumes at
 * least one byte.
 */
int kl_frames_next(kl_frames *r, const uint8_t *in, size_t n, size_t *used, const uint8_t **frame,
                   size_t *len);

/* The bytes held of the frame in progress (length prefix and payload). */
size_t kl_frames_pending(const kl_frames *r);

/*
 * The frame kl_frames_next just returned, writable, if it was assembled in
 * the reader's buffer (NULL if it points into the caller's bytes): the
 * caller may decrypt it in place. Valid until the next call.
 */
uint8_t *kl_frames_held(kl_frames *r);

/* Let go of a buffer grown past KL_FRAMES_KEEP if no frame is in progress. */
void kl_frames_trim(kl_frames *r);

/* ---- the secret stream ---- */

#define KL_SS_ID_BYTES     32u /* a stream id: keyed BLAKE2b-256 */
#define KL_SS_HEADER_BYTES 24u /* crypto_secretstream_xchacha20poly1305_HEADERBYTES */
#define KL_SS_HELLO_BYTES  56u /* the header frame's payload: stream id || secretstream header */
#define KL_SS_OVERHEAD     17u /* per message: the encrypted tag byte and the 16-byte MAC */
/* The longest plaintext whose encrypted frame a u24 length can carry. */
#define KL_SS_PLAIN_MAX (KL_FRAME_MAX_PAYLOAD - KL_SS_OVERHEAD)
/* The wire size of the frame that carries a plaintext of n bytes. */
#define KL_SS_FRAME_BYTES(n) (KL_FRAME_HDR_BYTES + KL_SS_OVERHEAD + (size_t)(n))

typedef struct kl_ss {
    kl_noise_role role;
    int rx_ready;                       /* the remote's header frame was accepted */
    int err;                            /* 0, or the error that failed receiving for good */
    uint8_t remote_id[KL_SS_ID_BYTES];  /* the stream id the remote's header must carry */
    uint8_t rx_key[KL_NOISE_KEY_BYTES]; /* kept until that header arrives, then wiped */
    crypto_secretstream_xchacha20poly1305_state tx, rx;
} kl_ss;

/*
 * Start the secret stream of a completed handshake: write our header frame's
 * 56-byte payload into hello (to be framed and sent first) and get ready to
 * send. `tx_header` is NULL (a random secretstream header, as libsodium's
 * init_push makes it) except in tests, which pass a transcript's fixed
 * header to reproduce its frames byte for byte.
 */
void kl_ss_init(kl_ss *s, const kl_noise_keys *keys, const uint8_t *tx_header,
                uint8_t hello[KL_SS_HELLO_BYTES]);

/*
 * Accept the remote's header frame payload: exactly 56 bytes (else
 * KL_ECORRUPT) carrying the stream id of this handshake and the remote's
 * role (else KL_EVERIFY: the id is a MAC under the handshake hash); either
 * fails receiving for good. KL_EINVAL (nothing changes) if a header was
 * already accepted.
 */
int kl_ss_accept(kl_ss *s, const uint8_t *payload, size_t len);

/*
 * Encrypt plain[0..n) into one whole frame at out (KL_SS_FRAME_BYTES(n) bytes):
 * u24 length || secretstream push with TAG_MESSAGE. *out_len gets its size.
 * KL_ETOOBIG if n > KL_SS_PLAIN_MAX, KL_ETOOSMALL (with *out_len the size
 * needed) if cap is too small; neither changes the stream. An empty
 * plaintext is a keepalive. plain and out must not overlap.
 */
int kl_ss_encrypt(kl_ss *s, const uint8_t *plain, size_t n, uint8_t *out, size_t cap,
                  size_t *out_len);

/*
 * Decrypt one received frame payload into out (len - 17 bytes; *out_len gets
 * it, 0 for a keepalive). KL_ECORRUPT if it is shorter than 17 bytes or
 * carries a tag other than TAG_MESSAGE, KL_EVERIFY if it does not
 * authenticate: both fail receiving for good. KL_EINVAL before the remote's
 * header was accepted, KL_ETOOSMALL if cap < len - 17: nothing changes.
 * out may be payload + 1 (decrypted in place: the message starts one byte
 * into its frame, after the encrypted tag); otherwise they must not overlap.
 */
int kl_ss_decrypt(kl_ss *s, const uint8_t *payload, size_t len, uint8_t *out, size_t cap,
                  size_t *out_len);

/* Wipe the whole state (keys included). */
void kl_ss_wipe(kl_ss *s);

/* The stream id a side of `role` puts in its header: Hk(hash; NS_INITIATOR or NS_RESPONDER). */
void kl_ss_stream_id(const uint8_t hash[KL_NOISE_HASH_BYTES], kl_noise_role role,
                     uint8_t out[KL_SS_ID_BYTES]);

/*
 * The hypercore channel capability a side of `role` sends for the core `key`
 * (notes 8.6): Hk(hash; REPLICATE_INITIATOR or REPLICATE_RESPONDER || key).
 * Each side sends its own role's and checks the remote's against the other.
 */
void kl_ss_capability(const uint8_t hash[KL_NOISE_HASH_BYTES], kl_noise_role role,
                      const uint8_t key[KL_HASH_BYTES], uint8_t out[KL_HASH_BYTES]);

#endif
