/*
 * wire.h - the plaintext layer of the Hypercore wire protocol: a bounded
 * compact-encoding reader and writer, Protomux frames (notes 8.5), the
 * hypercore channel's handshake (8.6) and its messages (8.7). Byte-compatible
 * with protomux 3.12.1 and hypercore 11.37.1 (lib/messages.js `wire.*`);
 * tests/data/hypercore/wire-messages.json pins every byte.
 *
 * Nothing here keeps state between frames: which channels are open, which
 * requests are outstanding and what a message means is the channel layer's.
 * A decoded value points into the bytes it was decoded from (payloads,
 * names, ids, bitfield words): they must outlive it.
 *
 * Policies, in one place (the .c file says why):
 * - Integers above 2^53 - 1 are refused, as kl_cd_uint and engine/proof.c do.
 * - Unknown flag bits are refused (KL_ECORRUPT), as engine/proof.c does.
 * - Trailing bytes after a message are ignored, as JS does; request and
 *   data (engine/proof.h) are the exception: proof.c refuses them.
 * - A batch inside a batch is refused; an open with channel id 0 is refused.
 * - Every length and count has a cap below; a decoder never allocates.
 */
#ifndef KL_WIRE_H
#define KL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/hc.h"
#include "engine/proof.h"
#include "kappalog.h"

/* ------------------------------------------------ compact-encoding (notes 1) */

/* compact-encoding's array(T) refuses counts above this ("Array is too big"). */
#define KL_CE_ARRAY_MAX 0x100000u

/*
 * A reader over untrusted bytes. Every read checks bounds first; the first
 * failure sticks (later reads return 0 or NULL and do not move) and keeps
 * its reason, which kl_ce_read_done reports.
 */
typedef struct kl_ce_reader {
    kl_cd d;       /* bounds, position and the sticky error (engine/hc.h) */
    char why[160]; /* the first failure, "" while none */
} kl_ce_reader;

void kl_ce_reader_init(kl_ce_reader *r, const uint8_t *p, size_t len);
/* Mark the reader failed with a reason (only the first reason is kept). */
void kl_ce_fail(kl_ce_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Bytes not read yet (0 after a failure). */
size_t kl_ce_left(const kl_ce_reader *r);
/* A uint (1, 3, 5 or 9 bytes; long forms of small values accepted), at most 2^53 - 1. */
uint64_t kl_ce_read_uint(kl_ce_reader *r, const char *field);
/* A uint of flag bits; a bit outside `known` fails the reader. */
uint32_t kl_ce_read_flags(kl_ce_reader *r, uint32_t known, const char *field);
/*
 * A uint of flag bits, keeping only the `known` ones: what JS does with the
 * flags of the channel handshake, sync, noData, want/unwant and range, so a
 * newer peer that sets a bit this version does not know is not refused.
 */
uint32_t kl_ce_read_flags_lenient(kl_ce_reader *r, uint32_t known, const char *field);
/* n raw bytes (fixed32 and friends), NULL on failure. */
const uint8_t *kl_ce_read_fixed(kl_ce_reader *r, size_t n, const char *field);
/* buffer / string: uint length (at most max) then the bytes; empty is non-NULL with *n = 0. */
const uint8_t *kl_ce_read_buffer(kl_ce_reader *r, size_t max, size_t *n, const char *field);
/* optionalBuffer: as buffer, but length 0 is "absent" and gives NULL (not a failure). */
const uint8_t *kl_ce_read_optional(kl_ce_reader *r, size_t max, size_t *n, const char *field);
/* uint32array: a count of words (at most max_words) then 4 bytes each, little-endian. */
const uint8_t *kl_ce_read_u32array(kl_ce_reader *r, size_t max_words, size_t *count,
                                   const char *field);
/*
 * The count of an array(T): at most KL_CE_ARRAY_MAX, at most max, and no
 * more items than the bytes left can hold at min_item_bytes each.
 */
size_t kl_ce_read_count(kl_ce_reader *r, size_t max, size_t min_item_bytes, const char *field);
/* raw: everything left (non-NULL, possibly empty), NULL after a failure. */
const uint8_t *kl_ce_read_rest(kl_ce_reader *r, size_t *n);
/* 0, or KL_ECORRUPT "<what>: <reason>" (kl_errf) if any read failed. */
int kl_ce_read_done(const kl_ce_reader *r, const char *what);

/*
 * A writer that counts: bytes land only while they fit in cap, so one pass
 * gives the encoding or the size it needs. A uint above 2^53 - 1 (which no
 * JS peer can read) marks it invalid.
 */
typedef struct kl_ce_writer {
    uint8_t *p;
    size_t at, cap;
    int bad; /* a value that must not be sent was written */
} kl_ce_writer;

void kl_ce_writer_init(kl_ce_writer *w, uint8_t *out, size_t cap);
void kl_ce_write_uint(kl_ce_writer *w, uint64_t v);
void kl_ce_write_fixed(kl_ce_writer *w, const uint8_t *p, size_t n);
/* buffer / string (and optionalBuffer: p NULL or n 0 writes the empty form 00). */
void kl_ce_write_buffer(kl_ce_writer *w, const uint8_t *p, size_t n);
void kl_ce_write_u32(kl_ce_writer *w, uint32_t v);
/* 0 and *n = the length; KL_EINVAL if invalid; KL_ETOOSMALL with *n = the size needed. */
int kl_ce_write_done(const kl_ce_writer *w, const char *what, size_t *n);

/* ------------------------------------------------------ Protomux (notes 8.5) */

/*
 * The largest plaintext one secretstream message can carry (notes 8.4:
 * 2^24 - 1 frame bytes less 17 of tag and MAC). Decoders refuse longer
 * input, encoders never make it.
 */
#define KL_MUX_FRAME_MAX 16777198u
/* Longest protocol name and channel id an open may carry (hypercore: 15 and 32). */
#define KL_MUX_NAME_MAX 1024u

typedef enum kl_mux_kind {
    KL_MUX_IGNORE = 0,     /* an empty frame (JS's keepalive) */
    KL_MUX_MESSAGE,        /* a channel message: msg */
    KL_MUX_BATCH,          /* a batch: iterate batch with kl_mux_batch_next */
    KL_MUX_OPEN,           /* open */
    KL_MUX_REJECT,         /* reject: remote_id */
    KL_MUX_CLOSE,          /* close: local_id */
    KL_MUX_CONTROL_UNKNOWN /* a control type above 3: JS ignores it; msg.type, msg.payload */
} kl_mux_kind;

typedef struct kl_mux_msg {
    uint64_t channel;       /* the sender's local id of the channel (>= 1) */
    uint64_t type;          /* the message type (hypercore: KL_MSG_*) */
    const uint8_t *payload; /* the message, up to the frame's (or batch item's) end */
    size_t len;
} kl_mux_msg;

typedef struct kl_mux_open {
    uint64_t local_id; /* the sender's id for the channel (>= 1) */
    const uint8_t *protocol;
    size_t protocol_len;
    const uint8_t *id; /* NULL: absent */
    size_t id_len;
    const uint8_t *handshake; /* the protocol's handshake: the rest of the frame */
    size_t handshake_len;
} kl_mux_open;

/* A batch's items, walked one at a time (no allocation, no recursion). */
typedef struct kl_mux_batch {
    const uint8_t *p; /* from the first item's length to the frame's end */
    size_t at, len;
    uint64_t channel; /* the channel of the next item (changed by a switch) */
} kl_mux_batch;

typedef struct kl_mux_frame {
    kl_mux_kind kind;
    kl_mux_msg msg;     /* MESSAGE; CONTROL_UNKNOWN: channel 0, the control type, the rest */
    kl_mux_open open;   /* OPEN */
    uint64_t remote_id; /* REJECT: the id of the open it refuses */
    uint64_t local_id;  /* CLOSE: the sender's id of the channel */
    kl_mux_batch batch; /* BATCH */
} kl_mux_frame;

/*
 * Decode one frame (the plaintext of one secretstream message). 0, or
 * KL_ECORRUPT with the reason (*f zeroed). A batch is checked whole here,
 * every item and channel switch, so kl_mux_batch_next on it never fails.
 */
int kl_mux_decode(const uint8_t *p, size_t len, kl_mux_frame *f);
/*
 * The next item of a batch, as a MESSAGE, OPEN, REJECT, CLOSE or
 * CONTROL_UNKNOWN frame: 1 and *item, 0 at the end, or KL_ECORRUPT (only
 * for an iterator kl_mux_decode did not check; it then ends).
 */
int kl_mux_batch_next(kl_mux_batch *b, kl_mux_frame *item);

/*
 * Encoders write into out[0..cap): 0 and *n; KL_ETOOSMALL with *n = the
 * size needed (out may be NULL when cap is 0); KL_EINVAL for a channel or
 * local id of 0, a name or id over KL_MUX_NAME_MAX, a value over 2^53 - 1,
 * an empty batch; KL_ETOOBIG past KL_MUX_FRAME_MAX.
 */
int kl_mux_open_encode(const kl_mux_open *o, uint8_t *out, size_t cap, size_t *n);
int kl_mux_reject_encode(uint64_t remote_id, uint8_t *out, size_t cap, size_t *n);
int kl_mux_close_encode(uint64_t local_id, uint8_t *out, size_t cap, size_t *n);
int kl_mux_message_encode(const kl_mux_msg *m, uint8_t *out, size_t cap, size_t *n);
/* One batch frame of m[0..count), a channel switch wherever the channel changes (as JS). */
int kl_mux_batch_encode(const kl_mux_msg *m, size_t count, uint8_t *out, size_t cap, size_t *n);

/* --------------------------------------------- the hypercore channel (8.6) */

#define KL_WIRE_PROTOCOL     "hypercore/alpha"
#define KL_WIRE_PROTOCOL_LEN 15u

#define KL_WIRE_HS_SEEKS 0x01u /* JS always sets it */
#define KL_WIRE_HS_FLAGS 0x01u

/* The open's handshake: flags, then the capability (notes 8.6). */
typedef struct kl_wire_handshake {
    uint32_t flags;
    uint8_t capability[KL_HASH_BYTES];
} kl_wire_handshake;

int kl_wire_handshake_encode(const kl_wire_handshake *h, uint8_t *out, size_t cap, size_t *n);
int kl_wire_handshake_decode(const uint8_t *p, size_t len, kl_wire_handshake *h);

/* -------------------------------------------- hypercore messages (notes 8.7) */

typedef enum kl_msg_type {
    KL_MSG_SYNC = 0,
    KL_MSG_REQUEST = 1, /* engine/proof.h kl_proof_request */
    KL_MSG_CANCEL = 2,
    KL_MSG_DATA = 3, /* engine/proof.h kl_proof */
    KL_MSG_NO_DATA = 4,
    KL_MSG_WANT = 5,
    KL_MSG_UNWANT = 6,
    KL_MSG_BITFIELD = 7,
    KL_MSG_RANGE = 8,
    KL_MSG_EXTENSION = 9,
    KL_MSG_TYPES = 10 /* JS ignores types from here on */
} kl_msg_type;

#define KL_WIRE_SYNC_CAN_UPGRADE  0x01u
#define KL_WIRE_SYNC_UPLOADING    0x02u
#define KL_WIRE_SYNC_DOWNLOADING  0x04u
#define KL_WIRE_SYNC_HAS_MANIFEST 0x08u
#define KL_WIRE_SYNC_ALLOW_PUSH   0x10u
#define KL_WIRE_SYNC_FLAGS        0x1fu

typedef struct kl_wire_sync {
    uint32_t flags; /* KL_WIRE_SYNC_* */
    uint64_t fork, length, remote_length;
} kl_wire_sync;

typedef struct kl_wire_cancel {
    uint64_t request;
} kl_wire_cancel;

#define KL_WIRE_NO_DATA_REASON         0x01u /* wire flag: a reason follows */
#define KL_WIRE_REASON_NOT_AVAILABLE   1u
#define KL_WIRE_REASON_INVALID_REQUEST 2u

typedef struct kl_wire_no_data {
    uint64_t request;
    uint64_t reason; /* 0: none given (then no reason is written) */
} kl_wire_no_data;

#define KL_WIRE_WANT_ANY   0x01u
#define KL_WIRE_WANT_FLAGS 0x01u

/* want and unwant share this layout. */
typedef struct kl_wire_want {
    uint64_t start, length;
    uint32_t flags; /* KL_WIRE_WANT_ANY; written only when not 0 */
} kl_wire_want;

/* One JS bitfield segment: 2^21 blocks (lib/bitfield.js BITS_PER_SEGMENT / 32). */
#define KL_WIRE_BITFIELD_MAX_WORDS 65536u

typedef struct kl_wire_bitfield {
    uint64_t start;       /* block of bit 0 of word 0 */
    const uint8_t *words; /* nwords x u32 LE, bit j of word w = block start + 32w + j */
    size_t nwords;
} kl_wire_bitfield;

/* Word i of a bitfield (the words may be unaligned). */
uint32_t kl_wire_bitfield_word(const kl_wire_bitfield *b, size_t i);

#define KL_WIRE_RANGE_DROP  0x01u
#define KL_WIRE_RANGE_ONE   0x02u /* wire only: length is 1 and not written */
#define KL_WIRE_RANGE_FLAGS 0x03u

typedef struct kl_wire_range {
    uint32_t flags; /* KL_WIRE_RANGE_DROP (the ONE bit is the encoder's business) */
    uint64_t start, length;
} kl_wire_range;

/* Longest extension name accepted (hypercore's are short words). */
#define KL_WIRE_NAME_MAX 1024u

typedef struct kl_wire_extension {
    const uint8_t *name; /* "" means the last name received */
    size_t name_len;
    const uint8_t *message; /* the rest */
    size_t message_len;
} kl_wire_extension;

/*
 * Each message's encoder and decoder. Encoders: 0 and *n, KL_ETOOSMALL
 * with *n = the size needed, KL_EINVAL for unknown flag bits, a value
 * above 2^53 - 1 or a length over its cap. Decoders take untrusted bytes:
 * 0, or KL_ECORRUPT with the reason (output zeroed).
 */
int kl_wire_sync_encode(const kl_wire_sync *m, uint8_t *out, size_t cap, size_t *n);
int kl_wire_sync_decode(const uint8_t *p, size_t len, kl_wire_sync *m);
int kl_wire_cancel_encode(const kl_wire_cancel *m, uint8_t *out, size_t cap, size_t *n);
int kl_wire_cancel_decode(const uint8_t *p, size_t len, kl_wire_cancel *m);
int kl_wire_no_data_encode(const kl_wire_no_data *m, uint8_t *out, size_t cap, size_t *n);
int kl_wire_no_data_decode(const uint8_t *p, size_t len, kl_wire_no_data *m);
int kl_wire_want_encode(const kl_wire_want *m, uint8_t *out, size_t cap, size_t *n);
int kl_wire_want_decode(const uint8_t *p, size_t len, kl_wire_want *m);
int kl_wire_bitfield_encode(const kl_wire_bitfield *m, uint8_t *out, size_t cap, size_t *n);
int kl_wire_bitfield_decode(const uint8_t *p, size_t len, kl_wire_bitfield *m);
int kl_wire_range_encode(const kl_wire_range *m, uint8_t *out, size_t cap, size_t *n);
int kl_wire_range_decode(const uint8_t *p, size_t len, kl_wire_range *m);
int kl_wire_extension_encode(const kl_wire_extension *m, uint8_t *out, size_t cap, size_t *n);
int kl_wire_extension_decode(const uint8_t *p, size_t len, kl_wire_extension *m);

/* Any of the ten, by type (request and data through engine/proof.h). */
typedef struct kl_wire_message {
    kl_msg_type type;
    union {
        kl_wire_sync sync;
        kl_proof_request request;
        kl_wire_cancel cancel;
        kl_proof data;
        kl_wire_no_data no_data;
        kl_wire_want want; /* want and unwant */
        kl_wire_bitfield bitfield;
        kl_wire_range range;
        kl_wire_extension extension;
    } u;
} kl_wire_message;

/*
 * Decode the payload of a message of `type` (max_value bounds a data
 * message's block, as kl_proof_decode). 0, KL_ECORRUPT, or KL_ENOTFOUND
 * for a type of KL_MSG_TYPES or more, which the channel must ignore.
 */
int kl_wire_message_decode(uint64_t type, const uint8_t *p, size_t len, size_t max_value,
                           kl_wire_message *m);
/* Encode m's payload by m->type (KL_EINVAL for an unknown type). */
int kl_wire_message_encode(const kl_wire_message *m, uint8_t *out, size_t cap, size_t *n);

/* What a request asks kl_log_proof for (its block, upgrade and manifest parts). */
void kl_wire_ask_from_request(const kl_proof_request *r, kl_proof_ask *ask);

#endif
