/*
 * wire.c - the plaintext layer of the Hypercore wire protocol (wire.h): the
 * compact-encoding reader and writer every decoder here uses, Protomux
 * frames (notes 8.5, protomux 3.12.1), the hypercore channel's handshake
 * (8.6) and its messages other than request and data (8.7, hypercore
 * 11.37.1 lib/messages.js), which engine/proof.c owns and this file only
 * dispatches to.
 *
 * Invariants: every read goes through a kl_ce_reader, which checks bounds
 * before it touches a byte and refuses integers above 2^53 - 1 (kl_cd_uint,
 * as proof.c); every length and count read is capped before it is used
 * (names and ids KL_MUX_NAME_MAX, extension names KL_WIRE_NAME_MAX,
 * bitfields KL_WIRE_BITFIELD_MAX_WORDS words, frames KL_MUX_FRAME_MAX);
 * nothing allocates and nothing recurses: a batch is walked by an iterator.
 * A decoder that refuses its input zeroes its output; an encoder never
 * writes a value its own decoder would refuse.
 *
 * Choices where JS leaves room, each as close to JS as safety allows:
 * - Trailing bytes after a message or a reject/close are ignored: neither
 *   protomux nor lib/messages.js checks that a message was consumed, and
 *   hypercore grows messages by appending optional fields (noData's reason,
 *   want's `any` came that way), so refusing them would break newer peers.
 *   proof.c does refuse them in request and data; that is its choice.
 * - noData without its flags field and want/unwant without theirs decode
 *   with flags 0, as JS does ("state.start < state.end ? ... : 0").
 * - Unknown flag bits in the channel handshake, sync, noData, want/unwant
 *   and range are ignored, as JS ignores them: a newer peer that sets a bit
 *   this version does not know is still understood (any field such a bit
 *   announced would come last, and trailing bytes are ignored). In request
 *   and data, where a bit announces a field in the middle, proof.c refuses
 *   them. Encoders never write an unknown bit.
 * - A batch inside a batch is refused. JS's _onbatch would recurse into it,
 *   but JS never writes one (a corked control frame goes into a batch as
 *   an item of channel 0, and only open, reject and close are written that
 *   way), so only a hostile peer sends it; refusing it keeps the walk flat.
 * - A batch item that runs past the frame is refused (JS would read past
 *   the item's bytes with a stale end); so is an open of channel id 0 (not a
 *   valid id: JS answers it with a reject of 0 and never opens it).
 * - Unknown control types and message types are not errors: JS ignores them
 *   and so must the channel (KL_MUX_CONTROL_UNKNOWN, KL_ENOTFOUND).
 *
 * The one thing a reader would get wrong: in a batch, an item length of 0
 * is not an empty message but a channel switch (`00 uint channel`), and
 * items of channel 0 are control frames without their leading 00. Channel
 * ids are always the sender's: a message carries the id the peer announced
 * in its own open, not the one we announced.
 */
#include "wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/util.h"

/* compact-encoding's uint prefixes (notes 1): 2, 4 or 8 bytes follow. */
#define CE_U16 0xfdu
#define CE_U32 0xfeu
#define CE_U64 0xffu

/* Protomux control types (notes 8.5). */
#define MUX_BATCH  0u
#define MUX_OPEN   1u
#define MUX_REJECT 2u
#define MUX_CLOSE  3u

/* ============================================================ the reader */

void kl_ce_reader_init(kl_ce_reader *r, const uint8_t *p, size_t len) {
    KL_ASSERT(r != NULL && (p != NULL || len == 0));
    memset(r, 0, sizeof *r);
    r->d.p = p;
    r->d.len = len;
}

void kl_ce_fail(kl_ce_reader *r, const char *fmt, ...) {
    r->d.err = KL_ECORRUPT;
    if (r->why[0])
        return; /* the first reason is the one that matters */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    if (!r->why[0])
        snprintf(r->why, sizeof r->why, "malformed");
}

size_t kl_ce_left(const kl_ce_reader *r) {
    KL_ASSERT(r->d.at <= r->d.len);
    return r->d.err ? 0 : r->d.len - r->d.at;
}

uint64_t kl_ce_read_uint(kl_ce_reader *r, const char *field) {
    if (r->d.err)
        return 0;
    size_t at = r->d.at, left = r->d.len - at;
    uint64_t v = kl_cd_uint(&r->d);
    if (!r->d.err) {
        KL_ASSERT(v <= KL_PROOF_MAX_U53 && r->d.at > at && r->d.at <= r->d.len);
        return v;
    }
    KL_ASSERT(r->d.at == at); /* a failed read does not move */
    uint8_t a = left ? r->d.p[at] : 0;
    size_t width = a == CE_U16 ? 2 : a == CE_U32 ? 4 : a == CE_U64 ? 8 : 0;
    if (left == 0 || left < 1 + width)
        kl_ce_fail(r, "%s at byte %zu is cut short", field, at);
    else
        kl_ce_fail(r, "%s at byte %zu is above 2^53 - 1", field, at);
    return 0;
}

uint32_t kl_ce_read_flags_lenient(kl_ce_reader *r, uint32_t known, const char *field) {
    return (uint32_t)(kl_ce_read_uint(r, field) & known);
}

uint32_t kl_ce_read_flags(kl_ce_reader *r, uint32_t known, const char *field) {
    size_t at = r->d.at;
    uint64_t f = kl_ce_read_uint(r, field);
    if (r->d.err)
        return 0;
    if (f & ~(uint64_t)known) {
        r->d.at = at;
        kl_ce_fail(r, "%s at byte %zu has unknown bits 0x%llx", field, at,
                   (unsigned long long)(f & ~(uint64_t)known));
        return 0;
    }
    return (uint32_t)f;
}

const uint8_t *kl_ce_read_fixed(kl_ce_reader *r, size_t n, const char *field) {
    if (r->d.err)
        return NULL;
    size_t at = r->d.at;
    const uint8_t *q = kl_cd_fixed(&r->d, n);
    if (q == NULL)
        kl_ce_fail(r, "%s: %zu bytes at byte %zu run past the end (%zu left)", field, n, at,
                   r->d.len - at);
    return q;
}

/* buffer, string and optionalBuffer: a uint length (at most max), then the bytes. */
static const uint8_t *rd_bytes(kl_ce_reader *r, size_t max, size_t *n, const char *field,
                               int optional) {
    *n = 0;
    size_t at = r->d.at;
    uint64_t len = kl_ce_read_uint(r, field);
    if (r->d.err)
        return NULL;
    if (len == 0 && optional)
        return NULL; /* absent */
    if (len > max || len > r->d.len - r->d.at) {
        r->d.at = at;
        if (len > max)
            kl_ce_fail(r, "%s at byte %zu: %llu bytes, more than the %zu allowed", field, at,
                       (unsigned long long)len, max);
        else
            kl_ce_fail(r, "%s at byte %zu: %llu bytes run past the end", field, at,
                       (unsigned long long)len);
        return NULL;
    }
    const uint8_t *q = kl_cd_fixed(&r->d, (size_t)len);
    KL_ASSERT(q != NULL);
    *n = (size_t)len;
    return q;
}

const uint8_t *kl_ce_read_buffer(kl_ce_reader *r, size_t max, size_t *n, const char *field) {
    return rd_bytes(r, max, n, field, 0);
}

const uint8_t *kl_ce_read_optional(kl_ce_reader *r, size_t max, size_t *n, const char *field) {
    return rd_bytes(r, max, n, field, 1);
}

const uint8_t *kl_ce_read_u32array(kl_ce_reader *r, size_t max_words, size_t *count,
                                   const char *field) {
    *count = 0;
    size_t at = r->d.at;
    uint64_t c = kl_ce_read_uint(r, field);
    if (r->d.err)
        return NULL;
    if (c > max_words || c > (r->d.len - r->d.at) / 4) {
        r->d.at = at;
        kl_ce_fail(r, "%s at byte %zu: %llu words, %s", field, at, (unsigned long long)c,
                   c > max_words ? "more than allowed" : "running past the end");
        return NULL;
    }
    const uint8_t *q = kl_cd_fixed(&r->d, (size_t)c * 4);
    KL_ASSERT(q != NULL);
    *count = (size_t)c;
    return q;
}

size_t kl_ce_read_count(kl_ce_reader *r, size_t max, size_t min_item_bytes, const char *field) {
    KL_ASSERT(min_item_bytes >= 1);
    size_t at = r->d.at;
    uint64_t c = kl_ce_read_uint(r, field);
    if (r->d.err)
        return 0;
    if (c > KL_CE_ARRAY_MAX || c > max) {
        r->d.at = at;
        kl_ce_fail(r, "%s at byte %zu: %llu items, more than %zu", field, at, (unsigned long long)c,
                   KL_MIN(max, (size_t)KL_CE_ARRAY_MAX));
        return 0;
    }
    if (c > (r->d.len - r->d.at) / min_item_bytes) {
        r->d.at = at;
        kl_ce_fail(r, "%s at byte %zu: %llu items cannot fit in the %zu bytes left", field, at,
                   (unsigned long long)c, r->d.len - r->d.at);
        return 0;
    }
    return (size_t)c;
}

const uint8_t *kl_ce_read_rest(kl_ce_reader *r, size_t *n) {
    *n = 0;
    if (r->d.err)
        return NULL;
    size_t k = r->d.len - r->d.at;
    const uint8_t *q = kl_cd_fixed(&r->d, k);
    KL_ASSERT(q != NULL && r->d.at == r->d.len);
    *n = k;
    return q;
}

int kl_ce_read_done(const kl_ce_reader *r, const char *what) {
    if (!r->d.err)
        return 0;
    return kl_errf(KL_ECORRUPT, "%s: %s", what, r->why[0] ? r->why : "malformed");
}

/* ============================================================ the writer */

void kl_ce_writer_init(kl_ce_writer *w, uint8_t *out, size_t cap) {
    KL_ASSERT(w != NULL && (out != NULL || cap == 0));
    w->p = out;
    w->at = 0;
    w->cap = cap;
    w->bad = 0;
}

void kl_ce_write_fixed(kl_ce_writer *w, const uint8_t *p, size_t n) {
    if (n == 0)
        return;
    KL_ASSERT(p != NULL);
    if (w->at <= w->cap && n <= w->cap - w->at)
        memcpy(w->p + w->at, p, n);
    w->at = n > SIZE_MAX - w->at ? SIZE_MAX : w->at + n;
}

void kl_ce_write_uint(kl_ce_writer *w, uint64_t v) {
    uint8_t b[KL_CE_UINT_MAX];
    if (v > KL_PROOF_MAX_U53)
        w->bad = 1;
    kl_ce_write_fixed(w, b, kl_ce_uint(b, v));
}

void kl_ce_write_buffer(kl_ce_writer *w, const uint8_t *p, size_t n) {
    if (p == NULL)
        n = 0;
    kl_ce_write_uint(w, n);
    kl_ce_write_fixed(w, p, n);
}

void kl_ce_write_u32(kl_ce_writer *w, uint32_t v) {
    uint8_t b[4];
    kl_store32(b, v);
    kl_ce_write_fixed(w, b, sizeof b);
}

int kl_ce_write_done(const kl_ce_writer *w, const char *what, size_t *n) {
    *n = w->at;
    if (w->bad)
        return kl_errf(KL_EINVAL, "%s: a value above 2^53 - 1, which no JS peer can read", what);
    if (w->at > w->cap)
        return kl_errf(KL_ETOOSMALL, "%s needs %zu bytes, the buffer has %zu", what, w->at, w->cap);
    return 0;
}

/* ============================================================ Protomux */

/* `uint type ‖ payload`: the rest of a channel frame or batch item. */
static void mux_message(kl_ce_reader *r, uint64_t channel, kl_mux_msg *m) {
    KL_ASSERT(channel != 0);
    m->channel = channel;
    m->type = kl_ce_read_uint(r, "message type");
    m->payload = kl_ce_read_rest(r, &m->len);
}

static void mux_open(kl_ce_reader *r, kl_mux_open *o) {
    size_t at = r->d.at;
    o->local_id = kl_ce_read_uint(r, "open channel id");
    if (!r->d.err && o->local_id == 0)
        kl_ce_fail(r, "open of channel id 0 at byte %zu", at);
    o->protocol = kl_ce_read_buffer(r, KL_MUX_NAME_MAX, &o->protocol_len, "open protocol");
    o->id = kl_ce_read_optional(r, KL_MUX_NAME_MAX, &o->id_len, "open id");
    o->handshake = kl_ce_read_rest(r, &o->handshake_len);
}

/* A control frame after its 00 (or a batch item of channel 0). */
static void mux_control(kl_ce_reader *r, int in_batch, kl_mux_frame *f) {
    size_t at = r->d.at;
    uint64_t type = kl_ce_read_uint(r, "control type");
    if (r->d.err)
        return;
    switch (type) {
    case MUX_BATCH:
        if (in_batch) {
            kl_ce_fail(r, "a batch inside a batch at byte %zu", at);
            return;
        }
        f->kind = KL_MUX_BATCH;
        f->batch.channel = kl_ce_read_uint(r, "batch channel");
        f->batch.at = 0;
        f->batch.p = kl_ce_read_rest(r, &f->batch.len);
        return;
    case MUX_OPEN:
        f->kind = KL_MUX_OPEN;
        mux_open(r, &f->open);
        return;
    case MUX_REJECT:
        f->kind = KL_MUX_REJECT;
        f->remote_id = kl_ce_read_uint(r, "reject id");
        return;
    case MUX_CLOSE:
        f->kind = KL_MUX_CLOSE;
        f->local_id = kl_ce_read_uint(r, "close id");
        return;
    default:
        f->kind = KL_MUX_CONTROL_UNKNOWN;
        f->msg.channel = 0;
        f->msg.type = type;
        f->msg.payload = kl_ce_read_rest(r, &f->msg.len);
        return;
    }
}

/* One item of b, at b->p + b->at, of `len` bytes after its length prefix of `pre` bytes. */
static int mux_item(kl_mux_batch *b, size_t pre, size_t len, kl_mux_frame *item) {
    kl_ce_reader ir;
    kl_ce_reader_init(&ir, b->p + b->at + pre, len);
    if (b->channel != 0) {
        item->kind = KL_MUX_MESSAGE;
        mux_message(&ir, b->channel, &item->msg);
    } else {
        mux_control(&ir, 1, item);
    }
    int rc = kl_ce_read_done(&ir, "protomux batch item");
    if (rc)
        return kl_err_prefix(rc, "item at byte %zu: ", b->at);
    b->at += pre + len;
    return 1;
}

int kl_mux_batch_next(kl_mux_batch *b, kl_mux_frame *item) {
    KL_ASSERT(b != NULL && item != NULL && b->at <= b->len && (b->p != NULL || b->len == 0));
    memset(item, 0, sizeof *item);
    int rc = 0;
    /* Each pass consumes at least two bytes (a switch) or returns. */
    while (b->at < b->len) {
        kl_ce_reader r;
        kl_ce_reader_init(&r, b->p + b->at, b->len - b->at);
        uint64_t len = kl_ce_read_uint(&r, "batch item length");
        if (!r.d.err && len == 0) {
            uint64_t ch = kl_ce_read_uint(&r, "batch channel switch");
            if (!r.d.err) {
                b->channel = ch;
                b->at += r.d.at;
                continue;
            }
        } else if (!r.d.err && len > kl_ce_left(&r)) {
            kl_ce_fail(&r, "an item of %llu bytes runs past the end (%zu left)",
                       (unsigned long long)len, kl_ce_left(&r));
        } else if (!r.d.err) {
            rc = mux_item(b, r.d.at, (size_t)len, item);
            if (rc == 1)
                return 1;
        }
        if (rc == 0)
            rc = kl_err_prefix(kl_ce_read_done(&r, "protomux batch"), "at byte %zu: ", b->at);
        KL_ASSERT(rc < 0);
        b->at = b->len; /* a broken batch ends here */
        memset(item, 0, sizeof *item);
        return rc;
    }
    return 0;
}

/* Walk a copy of the whole batch so that its iteration cannot fail later. */
static int mux_batch_check(const kl_mux_batch *b) {
    kl_mux_batch walk = *b;
    kl_mux_frame item;
    int rc;
    while ((rc = kl_mux_batch_next(&walk, &item)) == 1)
        KL_ASSERT(item.kind != KL_MUX_BATCH && item.kind != KL_MUX_IGNORE);
    return rc;
}

int kl_mux_decode(const uint8_t *p, size_t len, kl_mux_frame *f) {
    KL_ASSERT(f != NULL && (p != NULL || len == 0));
    memset(f, 0, sizeof *f);
    if (len == 0) {
        f->kind = KL_MUX_IGNORE; /* JS's keepalive */
        return 0;
    }
    if (len > KL_MUX_FRAME_MAX)
        return kl_errf(KL_ECORRUPT, "protomux frame of %zu bytes, more than %u", len,
                       KL_MUX_FRAME_MAX);
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    uint64_t channel = kl_ce_read_uint(&r, "channel");
    if (!r.d.err && channel != 0) {
        f->kind = KL_MUX_MESSAGE;
        mux_message(&r, channel, &f->msg);
    } else if (!r.d.err) {
        mux_control(&r, 0, f);
    }
    int rc = kl_ce_read_done(&r, "protomux frame");
    if (rc == 0 && f->kind == KL_MUX_BATCH) {
        rc = mux_batch_check(&f->batch);
        if (rc)
            kl_err_prefix(rc, "protomux frame: ");
    }
    if (rc)
        memset(f, 0, sizeof *f);
    KL_ASSERT(rc != 0 || f->kind != KL_MUX_IGNORE);
    return rc;
}

/* Encoders share the frame limit on top of the writer's checks. */
static int mux_done(const kl_ce_writer *w, const char *what, size_t *n) {
    if (!w->bad && w->at > KL_MUX_FRAME_MAX) {
        *n = w->at;
        return kl_errf(KL_ETOOBIG, "%s of %zu bytes, more than a frame's %u", what, w->at,
                       KL_MUX_FRAME_MAX);
    }
    return kl_ce_write_done(w, what, n);
}

/* A payload the caller gave: its bytes are there, and it fits in a frame. */
static int mux_check_payload(const kl_mux_msg *m, const char *what) {
    if (m->channel == 0)
        return kl_errf(KL_EINVAL, "%s: channel id 0 is the control channel", what);
    if (m->payload == NULL && m->len)
        return kl_errf(KL_EINVAL, "%s: a length without its bytes", what);
    if (m->len > KL_MUX_FRAME_MAX)
        return kl_errf(KL_ETOOBIG, "%s: a payload of %zu bytes, more than a frame's %u", what,
                       m->len, KL_MUX_FRAME_MAX);
    return 0;
}

int kl_mux_open_encode(const kl_mux_open *o, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(o != NULL && n != NULL && (out != NULL || cap == 0));
    if (o->local_id == 0)
        return kl_errf(KL_EINVAL, "open: channel id 0 is the control channel");
    if (o->protocol_len > KL_MUX_NAME_MAX || o->id_len > KL_MUX_NAME_MAX)
        return kl_errf(KL_EINVAL, "open: a protocol or id longer than %u bytes", KL_MUX_NAME_MAX);
    if ((o->protocol == NULL && o->protocol_len) || (o->handshake == NULL && o->handshake_len))
        return kl_errf(KL_EINVAL, "open: a length without its bytes");
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, 0);
    kl_ce_write_uint(&w, MUX_OPEN);
    kl_ce_write_uint(&w, o->local_id);
    kl_ce_write_buffer(&w, o->protocol, o->protocol_len);
    kl_ce_write_buffer(&w, o->id, o->id_len); /* NULL or empty: absent */
    kl_ce_write_fixed(&w, o->handshake, o->handshake_len);
    return mux_done(&w, "open frame", n);
}

/* reject and close: `00 type uint id`. */
static int mux_id_frame(uint64_t type, uint64_t id, const char *what, uint8_t *out, size_t cap,
                        size_t *n) {
    KL_ASSERT(n != NULL && (out != NULL || cap == 0));
    if (id == 0)
        return kl_errf(KL_EINVAL, "%s: channel id 0 is the control channel", what);
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, 0);
    kl_ce_write_uint(&w, type);
    kl_ce_write_uint(&w, id);
    return mux_done(&w, what, n);
}

int kl_mux_reject_encode(uint64_t remote_id, uint8_t *out, size_t cap, size_t *n) {
    return mux_id_frame(MUX_REJECT, remote_id, "reject frame", out, cap, n);
}

int kl_mux_close_encode(uint64_t local_id, uint8_t *out, size_t cap, size_t *n) {
    return mux_id_frame(MUX_CLOSE, local_id, "close frame", out, cap, n);
}

int kl_mux_message_encode(const kl_mux_msg *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    int rc = mux_check_payload(m, "channel message");
    if (rc)
        return rc;
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, m->channel);
    kl_ce_write_uint(&w, m->type);
    kl_ce_write_fixed(&w, m->payload, m->len);
    return mux_done(&w, "channel message", n);
}

int kl_mux_batch_encode(const kl_mux_msg *m, size_t count, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(n != NULL && (m != NULL || count == 0) && (out != NULL || cap == 0));
    if (count == 0)
        return kl_errf(KL_EINVAL, "batch: no messages");
    for (size_t i = 0; i < count; i++) {
        int rc = mux_check_payload(&m[i], "batch");
        if (rc)
            return rc;
    }
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, 0);
    kl_ce_write_uint(&w, MUX_BATCH);
    kl_ce_write_uint(&w, m[0].channel);
    uint64_t channel = m[0].channel;
    for (size_t i = 0; i < count; i++) {
        if (m[i].channel != channel) {
            channel = m[i].channel;
            kl_ce_write_uint(&w, 0); /* a switch, as protomux's _sendBatch writes it */
            kl_ce_write_uint(&w, channel);
        }
        uint8_t t[KL_CE_UINT_MAX];
        size_t tn = kl_ce_uint(t, m[i].type);
        if (m[i].type > KL_PROOF_MAX_U53)
            w.bad = 1;
        kl_ce_write_uint(&w, tn + m[i].len); /* never 0: the type takes a byte */
        kl_ce_write_fixed(&w, t, tn);
        kl_ce_write_fixed(&w, m[i].payload, m[i].len);
    }
    return mux_done(&w, "batch frame", n);
}

/* ============================================================ hypercore channel */

int kl_wire_handshake_encode(const kl_wire_handshake *h, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(h != NULL && n != NULL && (out != NULL || cap == 0));
    if (h->flags & ~KL_WIRE_HS_FLAGS)
        return kl_errf(KL_EINVAL, "channel handshake: unknown flag bits 0x%x", h->flags);
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, h->flags);
    kl_ce_write_fixed(&w, h->capability, KL_HASH_BYTES);
    return kl_ce_write_done(&w, "channel handshake", n);
}

/* Hand a decoded value out, or zero the output and say why. */
static int wire_out(const kl_ce_reader *r, const char *what, void *out, const void *val,
                    size_t size) {
    int rc = kl_ce_read_done(r, what);
    if (rc)
        memset(out, 0, size);
    else
        memcpy(out, val, size);
    return rc;
}

int kl_wire_handshake_decode(const uint8_t *p, size_t len, kl_wire_handshake *h) {
    KL_ASSERT(h != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_handshake v;
    memset(&v, 0, sizeof v);
    v.flags = kl_ce_read_flags_lenient(&r, KL_WIRE_HS_FLAGS, "flags");
    const uint8_t *c = kl_ce_read_fixed(&r, KL_HASH_BYTES, "capability");
    if (c != NULL)
        memcpy(v.capability, c, KL_HASH_BYTES);
    return wire_out(&r, "channel handshake", h, &v, sizeof v);
}

/* ---- sync (0) and cancel (2) ---- */

int kl_wire_sync_encode(const kl_wire_sync *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    if (m->flags & ~KL_WIRE_SYNC_FLAGS)
        return kl_errf(KL_EINVAL, "sync: unknown flag bits 0x%x", m->flags);
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, m->flags);
    kl_ce_write_uint(&w, m->fork);
    kl_ce_write_uint(&w, m->length);
    kl_ce_write_uint(&w, m->remote_length);
    return kl_ce_write_done(&w, "sync message", n);
}

int kl_wire_sync_decode(const uint8_t *p, size_t len, kl_wire_sync *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_sync v;
    v.flags = kl_ce_read_flags_lenient(&r, KL_WIRE_SYNC_FLAGS, "flags");
    v.fork = kl_ce_read_uint(&r, "fork");
    v.length = kl_ce_read_uint(&r, "length");
    v.remote_length = kl_ce_read_uint(&r, "remoteLength");
    return wire_out(&r, "sync message", m, &v, sizeof v);
}

int kl_wire_cancel_encode(const kl_wire_cancel *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, m->request);
    return kl_ce_write_done(&w, "cancel message", n);
}

int kl_wire_cancel_decode(const uint8_t *p, size_t len, kl_wire_cancel *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_cancel v;
    v.request = kl_ce_read_uint(&r, "request");
    return wire_out(&r, "cancel message", m, &v, sizeof v);
}

/* ---- noData (4) ---- */

int kl_wire_no_data_encode(const kl_wire_no_data *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, m->request);
    /* JS always writes the flags field, even when it is 0 */
    kl_ce_write_uint(&w, m->reason ? KL_WIRE_NO_DATA_REASON : 0);
    if (m->reason)
        kl_ce_write_uint(&w, m->reason);
    return kl_ce_write_done(&w, "noData message", n);
}

int kl_wire_no_data_decode(const uint8_t *p, size_t len, kl_wire_no_data *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_no_data v;
    v.request = kl_ce_read_uint(&r, "request");
    /* Older peers end here: no flags field means no reason (as JS). */
    uint32_t flags =
        kl_ce_left(&r) ? kl_ce_read_flags_lenient(&r, KL_WIRE_NO_DATA_REASON, "flags") : 0;
    v.reason = flags & KL_WIRE_NO_DATA_REASON ? kl_ce_read_uint(&r, "reason") : 0;
    return wire_out(&r, "noData message", m, &v, sizeof v);
}

/* ---- want (5) and unwant (6) ---- */

int kl_wire_want_encode(const kl_wire_want *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    if (m->flags & ~KL_WIRE_WANT_FLAGS)
        return kl_errf(KL_EINVAL, "want: unknown flag bits 0x%x", m->flags);
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, m->start);
    kl_ce_write_uint(&w, m->length);
    if (m->flags)
        kl_ce_write_uint(&w, m->flags);
    return kl_ce_write_done(&w, "want message", n);
}

int kl_wire_want_decode(const uint8_t *p, size_t len, kl_wire_want *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_want v;
    v.start = kl_ce_read_uint(&r, "start");
    v.length = kl_ce_read_uint(&r, "length");
    v.flags = kl_ce_left(&r) ? kl_ce_read_flags_lenient(&r, KL_WIRE_WANT_FLAGS, "flags") : 0;
    return wire_out(&r, "want message", m, &v, sizeof v);
}

/* ---- bitfield (7) ---- */

uint32_t kl_wire_bitfield_word(const kl_wire_bitfield *b, size_t i) {
    KL_ASSERT(b != NULL && i < b->nwords && b->words != NULL);
    return kl_load32(b->words + 4 * i);
}

int kl_wire_bitfield_encode(const kl_wire_bitfield *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    if (m->nwords > KL_WIRE_BITFIELD_MAX_WORDS)
        return kl_errf(KL_EINVAL, "bitfield: %zu words, more than %u", m->nwords,
                       KL_WIRE_BITFIELD_MAX_WORDS);
    if (m->words == NULL && m->nwords)
        return kl_errf(KL_EINVAL, "bitfield: a length without its words");
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, m->start);
    kl_ce_write_uint(&w, m->nwords);
    kl_ce_write_fixed(&w, m->words, 4 * m->nwords); /* already little-endian */
    return kl_ce_write_done(&w, "bitfield message", n);
}

int kl_wire_bitfield_decode(const uint8_t *p, size_t len, kl_wire_bitfield *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_bitfield v;
    v.start = kl_ce_read_uint(&r, "start");
    v.words = kl_ce_read_u32array(&r, KL_WIRE_BITFIELD_MAX_WORDS, &v.nwords, "bitfield");
    return wire_out(&r, "bitfield message", m, &v, sizeof v);
}

/* ---- range (8) ---- */

int kl_wire_range_encode(const kl_wire_range *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    if (m->flags & ~KL_WIRE_RANGE_DROP)
        return kl_errf(KL_EINVAL, "range: unknown flag bits 0x%x", m->flags);
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_uint(&w, m->flags | (m->length == 1 ? KL_WIRE_RANGE_ONE : 0));
    kl_ce_write_uint(&w, m->start);
    if (m->length != 1)
        kl_ce_write_uint(&w, m->length);
    return kl_ce_write_done(&w, "range message", n);
}

int kl_wire_range_decode(const uint8_t *p, size_t len, kl_wire_range *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_range v;
    uint32_t flags = kl_ce_read_flags_lenient(&r, KL_WIRE_RANGE_FLAGS, "flags");
    v.flags = flags & KL_WIRE_RANGE_DROP;
    v.start = kl_ce_read_uint(&r, "start");
    v.length = flags & KL_WIRE_RANGE_ONE ? 1 : kl_ce_read_uint(&r, "length");
    return wire_out(&r, "range message", m, &v, sizeof v);
}

/* ---- extension (9) ---- */

int kl_wire_extension_encode(const kl_wire_extension *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    if (m->name_len > KL_WIRE_NAME_MAX)
        return kl_errf(KL_EINVAL, "extension: a name of %zu bytes, more than %u", m->name_len,
                       KL_WIRE_NAME_MAX);
    if ((m->name == NULL && m->name_len) || (m->message == NULL && m->message_len))
        return kl_errf(KL_EINVAL, "extension: a length without its bytes");
    kl_ce_writer w;
    kl_ce_writer_init(&w, out, cap);
    kl_ce_write_buffer(&w, m->name, m->name_len);
    kl_ce_write_fixed(&w, m->message, m->message_len);
    return kl_ce_write_done(&w, "extension message", n);
}

int kl_wire_extension_decode(const uint8_t *p, size_t len, kl_wire_extension *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    kl_ce_reader r;
    kl_ce_reader_init(&r, p, len);
    kl_wire_extension v;
    v.name = kl_ce_read_buffer(&r, KL_WIRE_NAME_MAX, &v.name_len, "name");
    v.message = kl_ce_read_rest(&r, &v.message_len);
    return wire_out(&r, "extension message", m, &v, sizeof v);
}

/* ---- any of them, by type ---- */

int kl_wire_message_decode(uint64_t type, const uint8_t *p, size_t len, size_t max_value,
                           kl_wire_message *m) {
    KL_ASSERT(m != NULL && (p != NULL || len == 0));
    if (type >= KL_MSG_TYPES)
        return kl_errf(KL_ENOTFOUND, "message type %llu is not one of hypercore's",
                       (unsigned long long)type);
    m->type = (kl_msg_type)type;
    switch (m->type) {
    case KL_MSG_SYNC:
        return kl_wire_sync_decode(p, len, &m->u.sync);
    case KL_MSG_REQUEST:
        return kl_proof_request_decode(p, len, &m->u.request);
    case KL_MSG_CANCEL:
        return kl_wire_cancel_decode(p, len, &m->u.cancel);
    case KL_MSG_DATA:
        return kl_proof_decode(p, len, max_value, &m->u.data);
    case KL_MSG_NO_DATA:
        return kl_wire_no_data_decode(p, len, &m->u.no_data);
    case KL_MSG_WANT:
        return kl_wire_want_decode(p, len, &m->u.want);
    case KL_MSG_UNWANT: { /* the same fields: "want message: ..." becomes "unwant message: ..." */
        int rc = kl_wire_want_decode(p, len, &m->u.want);
        return rc < 0 ? kl_err_prefix(rc, "un") : rc;
    }
    case KL_MSG_BITFIELD:
        return kl_wire_bitfield_decode(p, len, &m->u.bitfield);
    case KL_MSG_RANGE:
        return kl_wire_range_decode(p, len, &m->u.range);
    case KL_MSG_EXTENSION:
        return kl_wire_extension_decode(p, len, &m->u.extension);
    case KL_MSG_TYPES:
        break;
    }
    KL_ASSERT(0 && "unreachable: type was checked");
    return KL_EINVAL;
}

int kl_wire_message_encode(const kl_wire_message *m, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(m != NULL && n != NULL && (out != NULL || cap == 0));
    switch (m->type) {
    case KL_MSG_SYNC:
        return kl_wire_sync_encode(&m->u.sync, out, cap, n);
    case KL_MSG_REQUEST:
        return kl_proof_request_encode(&m->u.request, out, cap, n);
    case KL_MSG_CANCEL:
        return kl_wire_cancel_encode(&m->u.cancel, out, cap, n);
    case KL_MSG_DATA:
        return kl_proof_encode(&m->u.data, out, cap, n);
    case KL_MSG_NO_DATA:
        return kl_wire_no_data_encode(&m->u.no_data, out, cap, n);
    case KL_MSG_WANT:
    case KL_MSG_UNWANT:
        return kl_wire_want_encode(&m->u.want, out, cap, n);
    case KL_MSG_BITFIELD:
        return kl_wire_bitfield_encode(&m->u.bitfield, out, cap, n);
    case KL_MSG_RANGE:
        return kl_wire_range_encode(&m->u.range, out, cap, n);
    case KL_MSG_EXTENSION:
        return kl_wire_extension_encode(&m->u.extension, out, cap, n);
    case KL_MSG_TYPES:
        break;
    }
    return kl_errf(KL_EINVAL, "message type %u is not one of hypercore's", (unsigned)m->type);
}

void kl_wire_ask_from_request(const kl_proof_request *r, kl_proof_ask *ask) {
    *ask = (kl_proof_ask){.block = (r->flags & KL_PROOF_BLOCK) != 0,
                          .block_index = r->block.index,
                          .block_nodes = r->block.nodes,
                          .upgrade = (r->flags & KL_PROOF_UPGRADE) != 0,
                          .upgrade_start = r->upgrade.start,
                          .upgrade_length = r->upgrade.length,
                          .manifest = (r->flags & KL_PROOF_MANIFEST) != 0};
}
