/*
 * session.c - one replication connection as bytes in, bytes out (session.h).
 *
 * Order on the wire (notes 8.1-8.5): three handshake frames, then each side's
 * 56-byte header frame, then one secretstream message per Protomux frame.
 * The initiator writes message 1 at once; each side answers as soon as the
 * handshake asks it to write, and sends its header the moment the handshake
 * completes (it never waits for the remote's header: TCP keeps the order).
 * Channels announced before then are opened right after our header.
 *
 * Channel ids: ours is the channel's index + 1. The remote's ids must be new
 * and at most one above the highest it used (what JS enforces), and every
 * later message names the channel by the remote's id.
 *
 * What a reader would get wrong: a remote open whose capability is wrong is
 * not a refusal of that channel but proof that the remote does not hold the
 * handshake or the key; JS destroys the whole stream, and so do we.
 */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "engine/util.h"
#include "kappalog.h"
#include "wire.h"

/* The output buffer an idle session keeps (past it, a drained buffer is freed). */
#define SESSION_OUT_KEEP (256u << 10)

typedef struct channel {
    int used;
    int announced;    /* we want this core on this connection */
    int local_opened; /* our open was sent */
    int remote_opened;
    uint64_t remote_id;
    uint8_t key[KL_HASH_BYTES];
    uint8_t dkey[KL_HASH_BYTES];
} channel;

struct kl_session {
    kl_noise_role role;
    kl_noise noise;
    kl_noise_keys keys;
    kl_ss ss;
    kl_frames frames;
    int ready; /* handshake done, our header queued */
    int err;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    uint8_t *plain; /* a decrypted message */
    size_t plain_cap;
    /* A batch left part-way because its answers filled the output (out_limit): the rest of its
       items, in the decrypted frame (plain, or the frame reader's buffer), which is kept until
       they are done; no other frame is read meanwhile. */
    kl_mux_batch rest;
    int has_rest;
    size_t out_limit; /* of the kl_session_input_upto call under way */
    uint64_t remote_max_id;
    int queued;           /* a message was queued since the last keepalive check */
    uint64_t quiet_since; /* when the keepalive check last saw us send */
    channel ch[KL_SESSION_MAX_CHANNELS];
    kl_session_cbs cbs;
    void *ctx;
};

/* Fail for good with the reason already in kl_last_error (rc). */
static int fail(kl_session *s, int rc) {
    if (!s->err)
        s->err = rc;
    return rc;
}

size_t kl_session_memory(const kl_session *s) {
    return sizeof *s + s->frames.cap + s->plain_cap + s->out_cap;
}

/* Room for n more output bytes, within the session's memory bound. */
static int out_reserve(kl_session *s, size_t n) {
    if (s->out_off > 0 && s->out_off == s->out_len)
        s->out_off = s->out_len = 0;
    if (s->out_len + n <= s->out_cap)
        return 0;
    if (s->out_off > 0) { /* move what is left to the front first */
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_off = 0;
        if (s->out_len + n <= s->out_cap)
            return 0;
    }
    size_t need = s->out_len + n;
    size_t room = KL_SESSION_MEM_MAX - (kl_session_memory(s) - s->out_cap);
    if (need > room)
        return kl_errf(KL_ETOOBIG,
                       "the peer does not read what it is sent (%zu bytes to send, room for "
                       "%zu: a connection holds at most %zu bytes)",
                       need, room, (size_t)KL_CONN_MEM_MAX);
    /* double while small; past 1 MiB grow by a quarter, so capacity stays close to use */
    size_t cap = s->out_cap ? s->out_cap : 4096;
    while (cap < need)
        cap = cap < (1u << 20) ? cap * 2 : cap + cap / 4;
    cap = KL_MIN(cap, room);
    uint8_t *p = realloc(s->out, cap);
    if (!p)
        return kl_errf(KL_ENOMEM, "session output of %zu bytes", cap);
    s->out = p;
    s->out_cap = cap;
    return 0;
}

/* Queue one plain frame (a handshake message or the header frame). */
static int send_frame(kl_session *s, const uint8_t *p, size_t n) {
    int rc = out_reserve(s, KL_FRAME_HDR_BYTES + n);
    if (rc < 0)
        return rc;
    kl_frame_header(s->out + s->out_len, n);
    memcpy(s->out + s->out_len + KL_FRAME_HDR_BYTES, p, n);
    s->out_len += KL_FRAME_HDR_BYTES + n;
    return 0;
}

/* Queue one Protomux frame, encrypted. */
static int send_plain(kl_session *s, const uint8_t *p, size_t n) {
    size_t need = KL_SS_FRAME_BYTES(n), got = 0;
    int rc = out_reserve(s, need);
    if (rc < 0)
        return rc;
    rc = kl_ss_encrypt(&s->ss, p, n, s->out + s->out_len, s->out_cap - s->out_len, &got);
    if (rc < 0)
        return rc;
    s->out_len += got;
    s->queued = 1;
    return 0;
}

static int send_open(kl_session *s, int i) {
    channel *c = &s->ch[i];
    kl_wire_handshake hs = {.flags = KL_WIRE_HS_SEEKS};
    kl_ss_capability(s->keys.hash, s->role, c->key, hs.capability);
    uint8_t hsbuf[64], frame[160];
    size_t hn = 0, n = 0;
    int rc = kl_wire_handshake_encode(&hs, hsbuf, sizeof hsbuf, &hn);
    kl_mux_open o = {.local_id = (uint64_t)i + 1,
                     .protocol = (const uint8_t *)KL_WIRE_PROTOCOL,
                     .protocol_len = KL_WIRE_PROTOCOL_LEN,
                     .id = c->dkey,
                     .id_len = KL_HASH_BYTES,
                     .handshake = hsbuf,
                     .handshake_len = hn};
    if (rc == 0)
        rc = kl_mux_open_encode(&o, frame, sizeof frame, &n);
    if (rc == 0)
        rc = send_plain(s, frame, n);
    if (rc == 0)
        c->local_opened = 1;
    return rc;
}

/* Both sides opened channel i: tell the caller. */
static void maybe_opened(kl_session *s, int i) {
    channel *c = &s->ch[i];
    if (c->local_opened && c->remote_opened && s->cbs.on_channel)
        s->cbs.on_channel(s, i, s->ctx);
}

static int find_dkey(const kl_session *s, const uint8_t *dkey) {
    for (int i = 0; i < (int)KL_SESSION_MAX_CHANNELS; i++)
        if (s->ch[i].used && memcmp(s->ch[i].dkey, dkey, KL_HASH_BYTES) == 0)
            return i;
    return -1;
}

static int find_remote(const kl_session *s, uint64_t remote_id) {
    for (int i = 0; i < (int)KL_SESSION_MAX_CHANNELS; i++)
        if (s->ch[i].used && s->ch[i].remote_opened && s->ch[i].remote_id == remote_id)
            return i;
    return -1;
}

static int reject(kl_session *s, uint64_t remote_id) {
    uint8_t frame[32];
    size_t n = 0;
    int rc = kl_mux_reject_encode(remote_id, frame, sizeof frame, &n);
    return rc < 0 ? rc : send_plain(s, frame, n);
}

static int on_open(kl_session *s, const kl_mux_open *o) {
    if (o->local_id == 0 || find_remote(s, o->local_id) >= 0 || o->local_id > s->remote_max_id + 1)
        return kl_errf(KL_ECORRUPT, "the peer opened channel id %llu (its highest so far: %llu)",
                       (unsigned long long)o->local_id, (unsigned long long)s->remote_max_id);
    if (o->local_id > s->remote_max_id)
        s->remote_max_id = o->local_id;
    int hc = (o->protocol_len == KL_WIRE_PROTOCOL_LEN &&
              memcmp(o->protocol, KL_WIRE_PROTOCOL, KL_WIRE_PROTOCOL_LEN) == 0) ||
             (o->protocol_len == 9 && memcmp(o->protocol, "hypercore", 9) == 0);
    if (!hc || !o->id || o->id_len != KL_HASH_BYTES)
        return reject(s, o->local_id); /* not a core: nobody here wants it */
    int i = find_dkey(s, o->id);
    if ((i < 0 || !s->ch[i].announced) && s->cbs.on_remote_open) {
        s->cbs.on_remote_open(s, o->id, s->ctx);
        if (s->err)
            return s->err;
        i = find_dkey(s, o->id);
    }
    if (i < 0 || !s->ch[i].announced)
        return reject(s, o->local_id);
    channel *c = &s->ch[i];
    if (c->remote_opened)
        return kl_errf(KL_ECORRUPT, "the peer opened the same core twice");
    kl_wire_handshake hs;
    int rc = kl_wire_handshake_decode(o->handshake, o->handshake_len, &hs);
    if (rc < 0)
        return kl_err_prefix(rc, "the peer's channel handshake: ");
    uint8_t want[KL_HASH_BYTES];
    kl_noise_role remote = s->role == KL_NOISE_INITIATOR ? KL_NOISE_RESPONDER : KL_NOISE_INITIATOR;
    kl_ss_capability(s->keys.hash, remote, c->key, want);
    if (sodium_memcmp(want, hs.capability, KL_HASH_BYTES) != 0)
        return kl_errf(KL_EVERIFY, "the peer's capability for a core is wrong");
    c->remote_opened = 1;
    c->remote_id = o->local_id;
    maybe_opened(s, i);
    return 0;
}

static int on_frame(kl_session *s, const kl_mux_frame *f);

/*
 * Go on with the items of the batch under way while the output is below
 * out_limit: a JS peer batches every request it has for us in one frame
 * (protomux _onbatch), and the answers to all of them at once could pass
 * the session's memory bound ("the peer does not read what it is sent").
 */
static int batch_resume(kl_session *s) {
    KL_ASSERT(s->has_rest);
    kl_mux_frame item;
    while (s->out_len - s->out_off < s->out_limit) {
        int rc = kl_mux_batch_next(&s->rest, &item);
        if (rc == 0)
            s->has_rest = 0; /* the batch is done */
        if (rc == 1)
            rc = on_frame(s, &item);
        else
            return rc;
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int on_frame(kl_session *s, const kl_mux_frame *f) {
    switch (f->kind) {
    case KL_MUX_IGNORE:
    case KL_MUX_CONTROL_UNKNOWN:
        return 0;
    case KL_MUX_OPEN:
        return on_open(s, &f->open);
    case KL_MUX_REJECT:
    case KL_MUX_CLOSE: {
        /* a reject names our id, a close the remote's */
        int i = f->kind == KL_MUX_REJECT ? (int)f->remote_id - 1 : find_remote(s, f->local_id);
        if (f->kind == KL_MUX_REJECT &&
            (f->remote_id == 0 || f->remote_id > KL_SESSION_MAX_CHANNELS ||
             !s->ch[i].local_opened || s->ch[i].remote_opened))
            return kl_errf(KL_ECORRUPT, "the peer rejected channel %llu, not a pending open",
                           (unsigned long long)f->remote_id);
        if (i < 0)
            return 0; /* a close of a channel we never took: nothing to do */
        int was_open = s->ch[i].local_opened && s->ch[i].remote_opened;
        s->ch[i].remote_opened = 0;
        s->ch[i].announced = 0;
        if ((was_open || f->kind == KL_MUX_REJECT) && s->cbs.on_channel_closed)
            s->cbs.on_channel_closed(s, i, s->ctx);
        return 0;
    }
    case KL_MUX_MESSAGE: {
        int i = find_remote(s, f->msg.channel);
        if (i < 0 || !s->ch[i].local_opened || !s->cbs.on_message)
            return 0; /* a channel we do not know or closed: ignored, as JS does */
        return s->cbs.on_message(s, i, f->msg.type, f->msg.payload, f->msg.len, s->ctx);
    }
    case KL_MUX_BATCH:
        KL_ASSERT(!s->has_rest);
        s->rest = f->batch;
        s->has_rest = 1;
        return batch_resume(s);
    }
    return 0;
}

/* The handshake is complete: start the secret stream, then open the announced cores. */
static int start_stream(kl_session *s) {
    int rc = kl_noise_keys_get(&s->noise, &s->keys);
    if (rc < 0)
        return rc;
    kl_noise_wipe(&s->noise);
    uint8_t hello[KL_SS_HELLO_BYTES];
    kl_ss_init(&s->ss, &s->keys, NULL, hello);
    if ((rc = send_frame(s, hello, sizeof hello)) < 0)
        return rc;
    s->ready = 1;
    for (int i = 0; i < (int)KL_SESSION_MAX_CHANNELS && rc == 0; i++)
        if (s->ch[i].used && s->ch[i].announced && !s->ch[i].local_opened)
            rc = send_open(s, i);
    return rc;
}

/* Write our next handshake message if it is our turn; start the stream when it is done. */
static int handshake_step(kl_session *s) {
    size_t size = 0;
    kl_noise_next next = kl_noise_status(&s->noise, &size);
    if (next == KL_NOISE_WRITE) {
        uint8_t msg[KL_NOISE_MSG_MAX];
        size_t n = 0;
        int rc = kl_noise_write(&s->noise, msg, sizeof msg, &n);
        if (rc == 0)
            rc = send_frame(s, msg, n);
        if (rc < 0)
            return rc;
        next = kl_noise_status(&s->noise, &size);
    }
    return next == KL_NOISE_DONE ? start_stream(s) : 0;
}

/* Let go of a message buffer grown past what an idle connection keeps. */
static void plain_trim(kl_session *s) {
    if (s->plain_cap > KL_FRAMES_KEEP) {
        free(s->plain);
        s->plain = NULL;
        s->plain_cap = 0;
    }
}

/*
 * One received frame: p[0..n), also writable at own when the frame reader
 * assembled it (then it is decrypted in place, so a big message is held
 * once, not twice).
 */
static int on_wire_frame(kl_session *s, const uint8_t *p, size_t n, uint8_t *own) {
    if (!s->ready) {
        int rc = kl_noise_read(&s->noise, p, n);
        return rc < 0 ? kl_err_prefix(rc, "handshake: ") : handshake_step(s);
    }
    if (!s->ss.rx_ready) {
        int rc = kl_ss_accept(&s->ss, p, n);
        if (rc < 0)
            return kl_err_prefix(rc, "the peer's stream header: ");
        s->frames.max = KL_FRAME_WIRE_MAX; /* handshake and header are small; messages not */
        return 0;
    }
    if (n < KL_SS_OVERHEAD)
        return kl_errf(KL_ECORRUPT, "a message of %zu bytes, shorter than its own overhead", n);
    uint8_t *plain = own ? own + 1 : NULL;
    size_t cap = n - 1;
    if (!own) {
        if (s->plain_cap < n - KL_SS_OVERHEAD) {
            size_t want = KL_MAX(n - KL_SS_OVERHEAD, (size_t)4096);
            plain_trim(s);
            uint8_t *pl = realloc(s->plain, want);
            if (!pl)
                return kl_errf(KL_ENOMEM, "a message of %zu bytes", want);
            s->plain = pl;
            s->plain_cap = want;
        }
        plain = s->plain;
        cap = s->plain_cap;
    }
    size_t len = 0;
    int rc = kl_ss_decrypt(&s->ss, p, n, plain, cap, &len);
    if (rc < 0)
        return rc;
    kl_mux_frame f;
    rc = kl_mux_decode(plain, len, &f);
    if (rc < 0)
        return kl_err_prefix(rc, "a Protomux frame: ");
    rc = on_frame(s, &f);
    if (rc == 0 && s->has_rest)
        return 0; /* its rest is read from the same buffer: kept */
    plain_trim(s);
    kl_frames_trim(&s->frames);
    return rc;
}

int kl_session_new(kl_noise_role role, const uint8_t static_sk[KL_NOISE_SK_BYTES],
                   const kl_session_cbs *cbs, void *ctx, kl_session **out) {
    kl_session *s = calloc(1, sizeof *s);
    if (!s)
        return kl_errf(KL_ENOMEM, "session");
    s->role = role;
    s->ctx = ctx;
    if (cbs)
        s->cbs = *cbs;
    int rc = kl_noise_init(&s->noise, role, static_sk, NULL);
    if (rc == 0)
        rc = kl_frames_init(&s->frames, KL_NOISE_MSG_MAX); /* until the stream is up */
    if (rc == 0)
        rc = handshake_step(s); /* the initiator's first message */
    if (rc < 0) {
        kl_session_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void kl_session_free(kl_session *s) {
    if (!s)
        return;
    kl_noise_wipe(&s->noise);
    kl_ss_wipe(&s->ss);
    sodium_memzero(&s->keys, sizeof s->keys);
    kl_frames_free(&s->frames);
    free(s->out);
    free(s->plain);
    free(s);
}

int kl_session_input_upto(kl_session *s, const uint8_t *in, size_t n, size_t out_limit,
                          size_t *used) {
    *used = 0;
    if (s->err)
        return s->err;
    s->out_limit = out_limit;
    if (s->has_rest) {
        int rc = batch_resume(s);
        if (rc < 0)
            return fail(s, rc);
        if (s->has_rest)
            return 0;
        plain_trim(s);
        kl_frames_trim(&s->frames);
    }
    while (n > 0 && s->out_len - s->out_off < out_limit && !s->has_rest) {
        size_t took = 0, len = 0;
        const uint8_t *frame = NULL;
        int rc = kl_frames_next(&s->frames, in, n, &took, &frame, &len);
        in += took;
        n -= took;
        *used += took;
        if (rc == 1)
            rc = on_wire_frame(s, frame, len, kl_frames_held(&s->frames));
        if (rc < 0)
            return fail(s, rc);
    }
    return 0;
}

int kl_session_input_waiting(const kl_session *s) {
    return s->has_rest;
}

int kl_session_input(kl_session *s, const uint8_t *in, size_t n) {
    size_t used = 0;
    return kl_session_input_upto(s, in, n, SIZE_MAX, &used);
}

const uint8_t *kl_session_output(kl_session *s, size_t *n) {
    *n = s->out_len - s->out_off;
    return s->out ? s->out + s->out_off : NULL; /* none kept while idle (kl_session_sent) */
}

void kl_session_sent(kl_session *s, size_t n) {
    KL_ASSERT(n <= s->out_len - s->out_off);
    s->out_off += n;
    if (s->out_off == s->out_len) {
        s->out_off = s->out_len = 0;
        if (s->out_cap > SESSION_OUT_KEEP) { /* drained: an idle connection keeps little */
            free(s->out);
            s->out = NULL;
            s->out_cap = 0;
        }
    }
}

int kl_session_keepalive(kl_session *s, uint64_t now_ns) {
    if (s->err || !s->ready)
        return 0;
    if (s->queued || s->quiet_since == 0 || now_ns < s->quiet_since) {
        s->queued = 0;
        s->quiet_since = now_ns;
        return 0;
    }
    if (now_ns - s->quiet_since < KL_SESSION_KEEPALIVE_NS)
        return 0;
    int rc = send_plain(s, NULL, 0); /* an empty message: every peer ignores it */
    if (rc < 0)
        return fail(s, rc);
    s->queued = 0;
    s->quiet_since = now_ns;
    return 1;
}

int kl_session_ready(const kl_session *s) {
    return s->ready;
}

int kl_session_error(const kl_session *s) {
    return s->err;
}

int kl_session_open_core(kl_session *s, const uint8_t key[KL_HASH_BYTES]) {
    if (s->err)
        return s->err;
    uint8_t dkey[KL_HASH_BYTES];
    kl_hc_discovery_key(key, dkey);
    int i = find_dkey(s, dkey);
    if (i >= 0 && s->ch[i].announced)
        return i;
    if (i < 0)
        for (i = 0; i < (int)KL_SESSION_MAX_CHANNELS && s->ch[i].used; i++)
            ;
    if (i >= (int)KL_SESSION_MAX_CHANNELS)
        return kl_errf(KL_ETOOBIG, "at most %u cores per connection", KL_SESSION_MAX_CHANNELS);
    channel *c = &s->ch[i];
    memset(c, 0, sizeof *c);
    c->used = 1;
    c->announced = 1;
    memcpy(c->key, key, KL_HASH_BYTES);
    memcpy(c->dkey, dkey, KL_HASH_BYTES);
    if (s->ready) {
        int rc = send_open(s, i);
        if (rc < 0)
            return fail(s, rc);
    }
    return i;
}

int kl_session_channel_open(const kl_session *s, int ch) {
    return ch >= 0 && ch < (int)KL_SESSION_MAX_CHANNELS && s->ch[ch].local_opened &&
           s->ch[ch].remote_opened;
}

const uint8_t *kl_session_core_key(const kl_session *s, int ch) {
    return s->ch[ch].key;
}

int kl_session_send_batch(kl_session *s, int ch, kl_mux_msg *m, size_t count) {
    if (s->err)
        return s->err;
    if (!kl_session_channel_open(s, ch))
        return kl_errf(KL_EINVAL, "channel %d is not open", ch);
    KL_ASSERT(count > 0);
    for (size_t i = 0; i < count; i++)
        m[i].channel = (uint64_t)ch + 1;
    size_t n = 0;
    int rc = kl_mux_batch_encode(m, count, NULL, 0, &n);
    if (rc != KL_ETOOSMALL && rc != 0)
        return rc;
    if (n + KL_SS_OVERHEAD > KL_FRAME_WIRE_MAX)
        return kl_errf(KL_ETOOBIG, "a batch of %zu bytes: a frame carries at most %u", n,
                       KL_FRAME_WIRE_MAX - KL_SS_OVERHEAD);
    uint8_t *frame = malloc(n);
    if (!frame)
        return kl_errf(KL_ENOMEM, "a batch of %zu bytes", n);
    rc = kl_mux_batch_encode(m, count, frame, n, &n);
    if (rc == 0)
        rc = send_plain(s, frame, n);
    free(frame);
    return rc < 0 ? fail(s, rc) : 0;
}

int kl_session_send(kl_session *s, int ch, uint64_t type, const uint8_t *payload, size_t len) {
    if (s->err)
        return s->err;
    if (!kl_session_channel_open(s, ch))
        return kl_errf(KL_EINVAL, "channel %d is not open", ch);
    kl_mux_msg m = {.channel = (uint64_t)ch + 1, .type = type, .payload = payload, .len = len};
    size_t n = 0;
    int rc = kl_mux_message_encode(&m, NULL, 0, &n);
    if (rc != KL_ETOOSMALL && rc != 0)
        return rc;
    if (n + KL_SS_OVERHEAD > KL_FRAME_WIRE_MAX) /* refused, and the session goes on */
        return kl_errf(KL_ETOOBIG,
                       "a message of %zu bytes: a frame carries at most %u (its peer would "
                       "refuse it)",
                       n, KL_FRAME_WIRE_MAX - KL_SS_OVERHEAD);
    uint8_t *frame = malloc(n ? n : 1);
    if (!frame)
        return kl_errf(KL_ENOMEM, "a message of %zu bytes", n);
    rc = kl_mux_message_encode(&m, frame, n, &n);
    if (rc == 0)
        rc = send_plain(s, frame, n);
    free(frame);
    return rc < 0 ? fail(s, rc) : 0;
}
