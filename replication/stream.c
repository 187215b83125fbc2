/*
 * stream.c - frames and the secret stream of stream.h (notes 8.2, 8.4, 8.6):
 * the incremental reader of `u24_le(len) || payload` frames, the header
 * frame exchange, one crypto_secretstream_xchacha20poly1305 message per
 * frame, and the two values keyed with the handshake hash (stream ids and
 * the hypercore capability).
 *
 * Invariants of the frame reader: it holds at most one frame in progress
 * (hdr_have <= 3 prefix bytes, then have < need <= max payload bytes); a
 * length above the maximum is refused the moment its third byte arrives,
 * so no byte of such a frame is ever buffered; the buffer grows only with
 * bytes that arrived, never past the frame's length, and a buffer grown
 * past KL_FRAMES_KEEP is freed once the reader is between frames, so an
 * idle connection holds little. Every byte pushed is either in a frame
 * returned, in the frame in progress, or (after an error) refused.
 *
 * Of the secret stream: the send side is ready from kl_ss_init, the
 * receive side only after the remote's header frame checks out; a receive
 * error fails receiving for good (the connection is to be closed) and
 * wipes its key material.
 *
 * The one thing a reader would get wrong: a frame whose bytes all arrived
 * in one push is returned pointing into the caller's bytes, not copied; only
 * a frame split across pushes is assembled in the reader's buffer. Either
 * way it is valid only until the next call.
 */
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include "engine/util.h"

/* The first size of a frame buffer; it doubles from there up to the frame's length. */
#define FRAMES_MIN_CAP 4096u

_Static_assert(KL_SS_HEADER_BYTES == crypto_secretstream_xchacha20poly1305_HEADERBYTES,
               "secretstream header size");
_Static_assert(KL_SS_OVERHEAD == crypto_secretstream_xchacha20poly1305_ABYTES,
               "secretstream overhead");
_Static_assert(KL_NOISE_KEY_BYTES == crypto_secretstream_xchacha20poly1305_KEYBYTES,
               "secretstream key size");
_Static_assert(KL_SS_HELLO_BYTES == KL_SS_ID_BYTES + KL_SS_HEADER_BYTES, "header frame layout");
_Static_assert(KL_FRAME_WIRE_MAX <= KL_FRAME_MAX_PAYLOAD, "the wire bound fits a u24");

/*
 * namespace("hyperswarm/secret-stream", 3)[0..1] and namespace("hypercore",
 * 6)[1..2] (notes section 2): ns[i] = H(H(utf8 name) || u8(i)).
 * tests/test_noise.c derives them from the rule and checks the stream ids
 * and capabilities these produce against the vectors.
 */
static const uint8_t NS_INITIATOR[32] = {
    0xa9, 0x31, 0xa0, 0x15, 0x5b, 0x5c, 0x09, 0xe6, 0xd2, 0x86, 0x28, 0x23, 0x6a, 0xf8, 0x3c, 0x4b,
    0x8a, 0x6a, 0xf9, 0xaf, 0x60, 0x98, 0x6e, 0xde, 0xed, 0xe9, 0xdc, 0x5d, 0x63, 0x19, 0x2b, 0xf7};
static const uint8_t NS_RESPONDER[32] = {
    0x74, 0x2c, 0x9d, 0x83, 0x3d, 0x43, 0x0a, 0xf4, 0xc4, 0x8a, 0x87, 0x05, 0xe9, 0x16, 0x31, 0xee,
    0xcf, 0x29, 0x54, 0x42, 0xbb, 0xca, 0x18, 0x99, 0x6e, 0x59, 0x70, 0x97, 0x72, 0x3b, 0x10, 0x61};
static const uint8_t NS_REPLICATE_INITIATOR[32] = {
    0x51, 0x81, 0x2a, 0x2a, 0x35, 0x9b, 0x50, 0x36, 0x95, 0x36, 0x77, 0x5d, 0xf8, 0x9e, 0x18, 0xe4,
    0x77, 0x40, 0xf3, 0xdb, 0x72, 0xac, 0x0a, 0xe7, 0x0b, 0x29, 0x59, 0x4c, 0x19, 0x4d, 0xc3, 0x16};
static const uint8_t NS_REPLICATE_RESPONDER[32] = {
    0x04, 0x38, 0x49, 0x2d, 0x02, 0x97, 0x0c, 0xc1, 0x35, 0x28, 0xac, 0x02, 0x62, 0xbc, 0xa0, 0x07,
    0x4e, 0x09, 0x26, 0x26, 0x02, 0x56, 0x86, 0x5a, 0xcc, 0xc0, 0xbf, 0x15, 0xbd, 0x79, 0x12, 0x7d};

/* ---------------------------------------------------------------- frames */

void kl_frame_header(uint8_t out[KL_FRAME_HDR_BYTES], size_t len) {
    KL_ASSERT(len <= KL_FRAME_MAX_PAYLOAD);
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)(len >> 16);
}

int kl_frames_init(kl_frames *r, size_t max_payload) {
    if (max_payload == 0 || max_payload > KL_FRAME_MAX_PAYLOAD)
        return kl_errf(KL_EINVAL, "frames: a maximum of %zu bytes, outside 1..%u", max_payload,
                       KL_FRAME_MAX_PAYLOAD);
    memset(r, 0, sizeof *r);
    r->max = max_payload;
    return 0;
}

void kl_frames_free(kl_frames *r) {
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}

size_t kl_frames_pending(const kl_frames *r) {
    return r->hdr_have + r->have;
}

uint8_t *kl_frames_held(kl_frames *r) {
    return r->held ? r->buf : NULL;
}

void kl_frames_trim(kl_frames *r) {
    if (r->hdr_have == 0 && r->cap > KL_FRAMES_KEEP)
        kl_frames_free(r);
}

static int frames_fail(kl_frames *r, int code) {
    KL_ASSERT(code < 0);
    kl_frames_free(r);
    r->have = r->need = r->hdr_have = 0;
    r->err = code;
    return code;
}

/* Room for `want` payload bytes of the current frame (want <= need <= max). */
static int frames_reserve(kl_frames *r, size_t want) {
    KL_ASSERT(want <= r->need && r->need <= r->max);
    if (want <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : FRAMES_MIN_CAP;
    while (cap < want)
        cap *= 2; /* cap < 2 * KL_FRAME_MAX_PAYLOAD: no overflow */
    if (cap > r->need)
        cap = r->need;
    uint8_t *p = realloc(r->buf, cap);
    if (!p)
        return frames_fail(
            r, kl_errf(KL_ENOMEM, "frames: no memory for a frame of %zu bytes", r->need));
    r->buf = p;
    r->cap = cap;
    KL_ASSERT(r->cap >= want && r->cap <= r->max);
    return 0;
}

/* Take length-prefix bytes from in[*at..n); 1 once the prefix is whole and within the maximum. */
static int frames_take_header(kl_frames *r, const uint8_t *in, size_t n, size_t *at) {
    while (r->hdr_have < KL_FRAME_HDR_BYTES) {
        if (*at == n)
            return 0;
        r->hdr[r->hdr_have++] = in[(*at)++];
    }
    r->need = (size_t)r->hdr[0] | (size_t)r->hdr[1] << 8 | (size_t)r->hdr[2] << 16;
    if (r->need > r->max)
        return frames_fail(r, kl_errf(KL_ECORRUPT,
                                      "frames: a frame of %zu bytes, more than the "
                                      "%zu allowed",
                                      r->need, r->max));
    return 1;
}

int kl_frames_next(kl_frames *r, const uint8_t *in, size_t n, size_t *used, const uint8_t **frame,
                   size_t *len) {
    size_t at = 0;
    *used = 0;
    *frame = NULL;
    *len = 0;
    r->held = 0;
    if (r->err)
        return kl_errf(r->err, "frames: the stream failed earlier");
    kl_frames_trim(r); /* between frames: let a big buffer go */
    int rc = frames_take_header(r, in, n, &at);
    *used = at;
    if (rc <= 0)
        return rc;
    size_t avail = n - at;
    if (r->have == 0 && avail >= r->need) {
        *frame = in + at; /* whole in this push: no copy */
        at += r->need;
    } else {
        size_t take = KL_MIN(r->need - r->have, avail);
        if (take > 0) {
            if ((rc = frames_reserve(r, r->have + take)) != 0)
                return rc;
            memcpy(r->buf + r->have, in + at, take);
            r->have += take;
            at += take;
        }
        *used = at;
        if (r->have < r->need)
            return 0;
        *frame = r->buf;
        r->held = 1;
    }
    *len = r->need;
    *used = at;
    r->hdr_have = r->have = r->need = 0;
    KL_ASSERT(*len <= r->max && at <= n);
    return 1;
}

/* ---------------------------------------------------------------- keyed values */

void kl_ss_stream_id(const uint8_t hash[KL_NOISE_HASH_BYTES], kl_noise_role role,
                     uint8_t out[KL_SS_ID_BYTES]) {
    const uint8_t *ns = role == KL_NOISE_INITIATOR ? NS_INITIATOR : NS_RESPONDER;
    crypto_generichash(out, KL_SS_ID_BYTES, ns, 32, hash, KL_NOISE_HASH_BYTES);
}

void kl_ss_capability(const uint8_t hash[KL_NOISE_HASH_BYTES], kl_noise_role role,
                      const uint8_t key[KL_HASH_BYTES], uint8_t out[KL_HASH_BYTES]) {
    uint8_t msg[32 + KL_HASH_BYTES];
    memcpy(msg, role == KL_NOISE_INITIATOR ? NS_REPLICATE_INITIATOR : NS_REPLICATE_RESPONDER, 32);
    memcpy(msg + 32, key, KL_HASH_BYTES);
    crypto_generichash(out, KL_HASH_BYTES, msg, sizeof msg, hash, KL_NOISE_HASH_BYTES);
}

/* ---------------------------------------------------------------- the secret stream */

void kl_ss_init(kl_ss *s, const kl_noise_keys *keys, const uint8_t *tx_header,
                uint8_t hello[KL_SS_HELLO_BYTES]) {
    KL_ASSERT(keys->role == KL_NOISE_INITIATOR || keys->role == KL_NOISE_RESPONDER);
    KL_ASSERT(sodium_init() >= 0); /* idempotent; init_push draws a random header */
    memset(s, 0, sizeof *s);
    s->role = keys->role;
    kl_noise_role remote = s->role == KL_NOISE_INITIATOR ? KL_NOISE_RESPONDER : KL_NOISE_INITIATOR;
    kl_ss_stream_id(keys->hash, s->role, hello);
    kl_ss_stream_id(keys->hash, remote, s->remote_id);
    uint8_t *header = hello + KL_SS_ID_BYTES;
    if (tx_header) {
        /* init_pull derives from (key, header) exactly the state init_push makes for it. */
        memcpy(header, tx_header, KL_SS_HEADER_BYTES);
        crypto_secretstream_xchacha20poly1305_init_pull(&s->tx, header, keys->tx);
    } else {
        crypto_secretstream_xchacha20poly1305_init_push(&s->tx, header, keys->tx);
    }
    memcpy(s->rx_key, keys->rx, KL_NOISE_KEY_BYTES);
    KL_ASSERT(!s->rx_ready && s->err == 0);
}

static int ss_fail(kl_ss *s, int code) {
    KL_ASSERT(code < 0);
    sodium_memzero(&s->rx, sizeof s->rx);
    sodium_memzero(s->rx_key, sizeof s->rx_key);
    s->rx_ready = 0;
    s->err = code;
    return code;
}

int kl_ss_accept(kl_ss *s, const uint8_t *payload, size_t len) {
    if (s->err)
        return kl_errf(s->err, "secret stream: receiving failed earlier");
    if (s->rx_ready)
        return kl_errf(KL_EINVAL, "secret stream: the remote's header was already accepted");
    if (len != KL_SS_HELLO_BYTES)
        return ss_fail(s, kl_errf(KL_ECORRUPT,
                                  "secret stream: the header frame is %zu bytes, "
                                  "expected %u",
                                  len, KL_SS_HELLO_BYTES));
    if (sodium_memcmp(payload, s->remote_id, KL_SS_ID_BYTES) != 0)
        return ss_fail(s, kl_errf(KL_EVERIFY,
                                  "secret stream: the header frame carries the wrong "
                                  "stream id (not this handshake's, or not the %s's)",
                                  s->role == KL_NOISE_INITIATOR ? "responder" : "initiator"));
    crypto_secretstream_xchacha20poly1305_init_pull(&s->rx, payload + KL_SS_ID_BYTES, s->rx_key);
    sodium_memzero(s->rx_key, sizeof s->rx_key);
    s->rx_ready = 1;
    return 0;
}

int kl_ss_encrypt(kl_ss *s, const uint8_t *plain, size_t n, uint8_t *out, size_t cap,
                  size_t *out_len) {
    *out_len = 0;
    if (n > KL_SS_PLAIN_MAX)
        return kl_errf(KL_ETOOBIG, "secret stream: a message of %zu bytes, more than %u", n,
                       KL_SS_PLAIN_MAX);
    size_t need = KL_SS_FRAME_BYTES(n);
    if (cap < need) {
        *out_len = need;
        return kl_errf(KL_ETOOSMALL, "secret stream: the frame needs %zu bytes, the buffer has %zu",
                       need, cap);
    }
    unsigned long long clen = 0;
    kl_frame_header(out, n + KL_SS_OVERHEAD);
    crypto_secretstream_xchacha20poly1305_push(&s->tx, out + KL_FRAME_HDR_BYTES, &clen, plain, n,
                                               NULL, 0,
                                               crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    KL_ASSERT(clen == n + KL_SS_OVERHEAD);
    *out_len = need;
    return 0;
}

int kl_ss_decrypt(kl_ss *s, const uint8_t *payload, size_t len, uint8_t *out, size_t cap,
                  size_t *out_len) {
    *out_len = 0;
    if (s->err)
        return kl_errf(s->err, "secret stream: receiving failed earlier");
    if (!s->rx_ready)
        return kl_errf(KL_EINVAL, "secret stream: a message before the remote's header");
    if (len < KL_SS_OVERHEAD)
        return ss_fail(s, kl_errf(KL_ECORRUPT,
                                  "secret stream: a message of %zu bytes, less than "
                                  "the %u every message carries",
                                  len, KL_SS_OVERHEAD));
    size_t plain = len - KL_SS_OVERHEAD;
    if (cap < plain) {
        *out_len = plain;
        return kl_errf(KL_ETOOSMALL,
                       "secret stream: the message needs %zu bytes, the buffer has "
                       "%zu",
                       plain, cap);
    }
    uint8_t spare, tag = 0;
    unsigned long long mlen = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&s->rx, out ? out : &spare, &mlen, &tag, payload,
                                                   len, NULL, 0) != 0)
        return ss_fail(s, kl_errf(KL_EVERIFY,
                                  "secret stream: a message of %zu bytes does not "
                                  "authenticate",
                                  len));
    /* JS only ever sends TAG_MESSAGE; REKEY or FINAL would change or end the stream. */
    if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        return ss_fail(s, kl_errf(KL_ECORRUPT, "secret stream: a message with tag %u, expected 0",
                                  (unsigned)tag));
    KL_ASSERT(mlen == plain);
    *out_len = plain;
    return 0;
}

void kl_ss_wipe(kl_ss *s) {
    sodium_memzero(s, sizeof *s);
}
