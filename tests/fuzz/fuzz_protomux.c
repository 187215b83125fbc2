/*
 * fuzz_protomux.c - libFuzzer target for the Protomux frame decoder
 * (replication/wire.c): kl_mux_decode, kl_mux_batch_next, the frame
 * encoders, and the hypercore channel handshake inside an open.
 *
 * Each input is one frame (the plaintext of one secretstream message), in a
 * buffer of exactly its length so ASan sees any read past the end.
 *
 * A frame that decodes is re-encoded from its fields, the result decodes to
 * the same fields, and it is no longer than the input (canonical uints are
 * the shortest; trailing bytes after a close or reject are dropped).
 * Every pointer a frame hands out lies inside the input. A batch that
 * decodes iterates without an error to its end (kl_mux_decode checked it
 * whole) and never yields a batch; its channel messages, re-encoded as one
 * batch, iterate to the same list; each control item, re-encoded as a frame
 * of its own, decodes to the same fields. An open of "hypercore/alpha"
 * whose handshake decodes re-encodes to the handshake's first 1 + 32
 * bytes or fewer. A refused frame is KL_ECORRUPT and leaves the output zeroed.
 *
 * KL_FUZZ_SEEDS=DIR writes the frames of wire-messages.json (built here
 * with the library's encoders; tests/test_wire.c checks they are JS's bytes)
 * and batches with channel switches and control items into DIR and exits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util.h"
#include "fuzz_seeds.h"
#include "replication/wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bigger than any input libFuzzer hands us by default (max_len 4096) can grow to. */
#define OUT_MAX   (64u * 1024u)
#define ITEMS_MAX 4096u

static uint8_t out[OUT_MAX], out2[OUT_MAX];
static kl_mux_msg items[ITEMS_MAX];

static const uint8_t *in_lo, *in_hi; /* the input, for pointer checks */

static void check_inside(const uint8_t *p, size_t n) {
    if (n == 0)
        return;
    KL_ASSERT(p != NULL && p >= in_lo && n <= (size_t)(in_hi - p));
}

static void check_same_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    KL_ASSERT(an == bn);
    KL_ASSERT(an == 0 || memcmp(a, b, an) == 0);
}

static void check_same_msg(const kl_mux_msg *a, const kl_mux_msg *b) {
    KL_ASSERT(a->channel == b->channel && a->type == b->type);
    check_same_bytes(a->payload, a->len, b->payload, b->len);
}

/* An open of the hypercore channel: its handshake, if it decodes, round-trips. */
static void check_handshake(const kl_mux_open *o) {
    if (o->protocol_len != KL_WIRE_PROTOCOL_LEN ||
        memcmp(o->protocol, KL_WIRE_PROTOCOL, KL_WIRE_PROTOCOL_LEN) != 0)
        return;
    kl_wire_handshake h, back;
    int rc = kl_wire_handshake_decode(o->handshake, o->handshake_len, &h);
    if (rc) {
        KL_ASSERT(rc == KL_ECORRUPT);
        return;
    }
    size_t n = 0;
    KL_ASSERT(kl_wire_handshake_encode(&h, out2, sizeof out2, &n) == 0);
    KL_ASSERT(n <= o->handshake_len && n >= 1 + KL_HASH_BYTES);
    KL_ASSERT(kl_wire_handshake_decode(out2, n, &back) == 0);
    KL_ASSERT(back.flags == h.flags && memcmp(back.capability, h.capability, KL_HASH_BYTES) == 0);
}

/* Encode a single (non-batch) frame from its fields; 0 and *n, or the encoder's refusal. */
static int encode_single(const kl_mux_frame *f, size_t *n) {
    switch (f->kind) {
    case KL_MUX_MESSAGE:
        return kl_mux_message_encode(&f->msg, out, sizeof out, n);
    case KL_MUX_OPEN:
        return kl_mux_open_encode(&f->open, out, sizeof out, n);
    case KL_MUX_REJECT:
        return kl_mux_reject_encode(f->remote_id, out, sizeof out, n);
    case KL_MUX_CLOSE:
        return kl_mux_close_encode(f->local_id, out, sizeof out, n);
    default:
        KL_ASSERT(0 && "not a single frame");
        return KL_EINVAL;
    }
}

static void check_same_frame(const kl_mux_frame *a, const kl_mux_frame *b) {
    KL_ASSERT(a->kind == b->kind);
    switch (a->kind) {
    case KL_MUX_MESSAGE:
    case KL_MUX_CONTROL_UNKNOWN:
        check_same_msg(&a->msg, &b->msg);
        break;
    case KL_MUX_OPEN:
        KL_ASSERT(a->open.local_id == b->open.local_id);
        check_same_bytes(a->open.protocol, a->open.protocol_len, b->open.protocol,
                         b->open.protocol_len);
        KL_ASSERT((a->open.id == NULL) == (b->open.id == NULL));
        check_same_bytes(a->open.id, a->open.id_len, b->open.id, b->open.id_len);
        check_same_bytes(a->open.handshake, a->open.handshake_len, b->open.handshake,
                         b->open.handshake_len);
        break;
    case KL_MUX_REJECT:
        KL_ASSERT(a->remote_id == b->remote_id);
        break;
    case KL_MUX_CLOSE:
        KL_ASSERT(a->local_id == b->local_id);
        break;
    default:
        KL_ASSERT(0 && "not comparable");
    }
}

/*
 * One decoded single frame (or batch item): its pointers, then a round trip
 * to at most max_len bytes.
 */
static void check_single(const kl_mux_frame *f, size_t max_len) {
    size_t n = 0;
    kl_mux_frame back;
    switch (f->kind) {
    case KL_MUX_MESSAGE:
        KL_ASSERT(f->msg.channel != 0);
        check_inside(f->msg.payload, f->msg.len);
        break;
    case KL_MUX_CONTROL_UNKNOWN:
        KL_ASSERT(f->msg.channel == 0 && f->msg.type > 3);
        check_inside(f->msg.payload, f->msg.len);
        return; /* nothing encodes an unknown control frame */
    case KL_MUX_OPEN:
        KL_ASSERT(f->open.local_id != 0 && f->open.protocol_len <= KL_MUX_NAME_MAX &&
                  f->open.id_len <= KL_MUX_NAME_MAX);
        KL_ASSERT(f->open.id == NULL || f->open.id_len > 0);
        check_inside(f->open.protocol, f->open.protocol_len);
        check_inside(f->open.id, f->open.id_len);
        check_inside(f->open.handshake, f->open.handshake_len);
        check_handshake(&f->open);
        break;
    case KL_MUX_REJECT:
    case KL_MUX_CLOSE:
        if ((f->kind == KL_MUX_REJECT ? f->remote_id : f->local_id) == 0) {
            /* JS ignores close 0; reject 0 is the channel's to refuse: we never send either */
            KL_ASSERT(encode_single(f, &n) == KL_EINVAL);
            return;
        }
        break;
    default:
        KL_ASSERT(0 && "not a single frame");
    }
    KL_ASSERT(encode_single(f, &n) == 0);
    KL_ASSERT(n <= max_len);
    KL_ASSERT(kl_mux_decode(out, n, &back) == 0);
    check_same_frame(f, &back);
}

static void drive_batch(kl_mux_frame *f) {
    check_inside(f->batch.p, f->batch.len);
    kl_mux_frame item;
    size_t nmsg = 0;
    int rc;
    while ((rc = kl_mux_batch_next(&f->batch, &item)) == 1) {
        KL_ASSERT(item.kind != KL_MUX_BATCH && item.kind != KL_MUX_IGNORE);
        if (item.kind == KL_MUX_MESSAGE && nmsg < ITEMS_MAX)
            items[nmsg++] = item.msg;
        /* as a frame of its own, an item gains its channel id (or the 00 of control) */
        check_single(&item, f->batch.len + KL_CE_UINT_MAX);
    }
    KL_ASSERT(rc == 0 && f->batch.at == f->batch.len);
    if (nmsg == 0)
        return;
    /* the channel messages as one batch of their own: the same list comes back */
    size_t n = 0;
    KL_ASSERT(kl_mux_batch_encode(items, nmsg, out, sizeof out, &n) == 0);
    kl_mux_frame again;
    KL_ASSERT(kl_mux_decode(out, n, &again) == 0 && again.kind == KL_MUX_BATCH);
    for (size_t i = 0; i < nmsg; i++) {
        KL_ASSERT(kl_mux_batch_next(&again.batch, &item) == 1 && item.kind == KL_MUX_MESSAGE);
        check_same_msg(&items[i], &item.msg);
    }
    KL_ASSERT(kl_mux_batch_next(&again.batch, &item) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *p = malloc(size ? size : 1);
    KL_ASSERT(p != NULL);
    memcpy(p, data, size);
    in_lo = p;
    in_hi = p + size;
    kl_mux_frame f;
    int rc = kl_mux_decode(size ? p : NULL, size, &f);
    if (rc) {
        KL_ASSERT(rc == KL_ECORRUPT && f.kind == KL_MUX_IGNORE && f.batch.p == NULL &&
                  f.msg.payload == NULL && f.open.protocol == NULL);
    } else if (f.kind == KL_MUX_IGNORE) {
        KL_ASSERT(size == 0);
    } else if (f.kind == KL_MUX_BATCH) {
        drive_batch(&f);
    } else {
        check_single(&f, size);
    }
    free(p);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR) ---- */

static void seed_frame(const char *dir, const char *name, const uint8_t *p, size_t n) {
    kl_mux_frame f;
    KL_ASSERT(kl_mux_decode(p, n, &f) == 0); /* every seed is a valid frame */
    write_seed(dir, name, p, n);
}

static void write_seeds(const char *dir) {
    size_t n = 0;
    /* open of the hypercore channel: discovery key and {seeks, capability} */
    uint8_t dkey[KL_HASH_BYTES], hs[64];
    for (size_t i = 0; i < KL_HASH_BYTES; i++)
        dkey[i] = (uint8_t)(0xfb - i);
    kl_wire_handshake h = {.flags = KL_WIRE_HS_SEEKS};
    memset(h.capability, 0x11, KL_HASH_BYTES);
    kl_mux_open o = {.local_id = 1,
                     .protocol = (const uint8_t *)KL_WIRE_PROTOCOL,
                     .protocol_len = KL_WIRE_PROTOCOL_LEN,
                     .id = dkey,
                     .id_len = sizeof dkey,
                     .handshake = hs};
    KL_ASSERT(kl_wire_handshake_encode(&h, hs, sizeof hs, &o.handshake_len) == 0);
    KL_ASSERT(kl_mux_open_encode(&o, out, sizeof out, &n) == 0);
    seed_frame(dir, "open-hypercore", out, n);
    kl_mux_open u = {
        .local_id = 1, .protocol = (const uint8_t *)"unknown/proto", .protocol_len = 13};
    KL_ASSERT(kl_mux_open_encode(&u, out, sizeof out, &n) == 0);
    seed_frame(dir, "open-unknown", out, n);
    /* a sync and a request outside a batch; sync + range in one; a batch switching channels */
    uint8_t sync[] = {0x0f, 0x00, 0x03, 0x00}, req[] = {0x18, 0x01, 0x00, 0x00, 0x03},
            range[] = {0x00, 0x00, 0x03}, cancel[] = {0x05};
    kl_mux_msg m[] = {{1, KL_MSG_SYNC, sync, sizeof sync},
                      {1, KL_MSG_RANGE, range, sizeof range},
                      {2, KL_MSG_CANCEL, cancel, sizeof cancel},
                      {1, KL_MSG_REQUEST, req, sizeof req}};
    KL_ASSERT(kl_mux_message_encode(&m[0], out, sizeof out, &n) == 0);
    seed_frame(dir, "sync", out, n);
    KL_ASSERT(kl_mux_message_encode(&m[3], out, sizeof out, &n) == 0);
    seed_frame(dir, "request", out, n);
    KL_ASSERT(kl_mux_batch_encode(m, 2, out, sizeof out, &n) == 0);
    seed_frame(dir, "batch-sync-range", out, n);
    KL_ASSERT(kl_mux_batch_encode(m, 4, out, sizeof out, &n) == 0);
    seed_frame(dir, "batch-switches", out, n);
    KL_ASSERT(kl_mux_close_encode(1, out, sizeof out, &n) == 0);
    seed_frame(dir, "close", out, n);
    KL_ASSERT(kl_mux_reject_encode(1, out, sizeof out, &n) == 0);
    seed_frame(dir, "reject", out, n);
    /* a corked close and open as control items of a batch, then a message on 3 */
    static const uint8_t corked[] = {0x00, 0x00, 0x01, 0x05, 0x00, 0x0f, 0x00, 0x03, 0x00,
                                     0x00, 0x00, 0x02, 0x03, 0x01, 0x0a, 0x01, 0x02, 0x04,
                                     'h',  'c',  '/',  'x',  0x00, 0xaa, 0xbb, 0x00, 0x03,
                                     0x02, 0x02, 0x2a, 0x00, 0x00, 0x02, 0x09, 0x07};
    seed_frame(dir, "batch-control-items", corked, sizeof corked);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
