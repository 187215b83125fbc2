/*
 * test_noise.c - the Noise XX handshake (replication/noise.c) and the frames
 * and secret stream (replication/stream.c) against the sessions the real
 * JavaScript packages recorded (tests/data/hypercore/transcript.json and
 * transcript-live.json) and primitives.json's capability and stream-id
 * examples.
 *
 * What this proves: with the transcripts' static and ephemeral keys, both
 * sides write handshake messages 1..3 byte for byte as JS did, h, ck, k and
 * n after every message equal the recorded states, every listed DH output
 * is reproduced, and both sides end with the recorded handshake hash, split
 * keys, each other's static keys, stream ids and capabilities. With the
 * transcripts' fixed secretstream headers both header frames and every
 * encrypted frame of both directions are reproduced byte for byte from the
 * recorded plaintexts, and every recorded frame decrypts to its plaintext.
 * The raw byte streams, cut into 1-byte and into uneven pieces, reassemble
 * into exactly the recorded frames, and a responder driven only by the
 * initiator's raw stream completes and reads every plaintext.
 *
 * Against bad input: every handshake message cut short, extended, empty, or
 * with any single bit flipped is refused (KL_ECORRUPT for a size or a point,
 * KL_EVERIFY for a tag), and the state stays failed for good; a flipped
 * ephemeral key in message 1 that is still a valid point is accepted there
 * (it carries no tag) but makes the initiator refuse message 2. The all-zero
 * and identity points (small order) as ephemeral keys, and as static keys
 * properly encrypted by a misbehaving peer, are refused. A header frame of
 * 55 or 57 bytes, one with the wrong (reflected) stream id, a message under
 * 17 bytes, a flipped bit in a message and a TAG_FINAL message are refused
 * and fail receiving for good. A frame length above the maximum is refused
 * as soon as its 3 bytes are in, with nothing buffered.
 */
#include "testutil.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util.h"
#include "replication/noise.h"
#include "replication/stream.h"

#define FRAME_MAX  4096u /* the largest frame of the transcripts, rounded up */
#define MAX_FRAMES 64u

/* Values compared with a vector, or refusals checked, printed at the end. */
static unsigned long checks;

/* ---- reading the vectors ---- */

static void unhex_exact(const char *hex, uint8_t *out, size_t n) {
    assert_int_equal(tu_unhex(hex, out, n), n);
}

static void expect_bytes(const uint8_t *got, const uint8_t *want, size_t n) {
    assert_memory_equal(got, want, n);
    checks++;
}

static void expect_hex(const uint8_t *got, size_t n, const char *hex) {
    uint8_t want[FRAME_MAX];
    assert_true(n <= sizeof want);
    unhex_exact(hex, want, n);
    expect_bytes(got, want, n);
}

/* One side of a transcript: its keys and the secretstream header it used. */
typedef struct side {
    uint8_t s_pk[KL_NOISE_PK_BYTES], s_sk[KL_NOISE_SK_BYTES];
    uint8_t e_pk[KL_NOISE_PK_BYTES], e_sk[KL_NOISE_SK_BYTES];
    uint8_t header[KL_SS_HEADER_BYTES];
} side;

static void side_from(const json_t *o, side *s) {
    unhex_exact(tu_json_str(o, "static_public_key"), s->s_pk, sizeof s->s_pk);
    unhex_exact(tu_json_str(o, "static_secret_key"), s->s_sk, sizeof s->s_sk);
    unhex_exact(tu_json_str(o, "ephemeral_public_key"), s->e_pk, sizeof s->e_pk);
    unhex_exact(tu_json_str(o, "ephemeral_secret_key"), s->e_sk, sizeof s->e_sk);
    unhex_exact(tu_json_str(o, "secretstream_header"), s->header, sizeof s->header);
    /* The secret keys are libsodium's seed || public key, and the seeds are the listed ones. */
    uint8_t seed[KL_SEED_BYTES], pk[KL_PK_BYTES], sk[KL_SK_BYTES];
    unhex_exact(tu_json_str(o, "static_seed"), seed, sizeof seed);
    kl_hc_keypair(seed, pk, sk);
    expect_bytes(sk, s->s_sk, sizeof sk);
    expect_bytes(pk, s->s_pk, sizeof pk);
    unhex_exact(tu_json_str(o, "ephemeral_seed"), seed, sizeof seed);
    kl_hc_keypair(seed, pk, sk);
    expect_bytes(sk, s->e_sk, sizeof sk);
    expect_bytes(pk, s->e_pk, sizeof pk);
}

/* A recorded frame: its direction, kind, wire bytes and (messages) plaintext. */
typedef struct rec_frame {
    int i2r; /* sent by the initiator */
    char kind[16];
    uint8_t wire[FRAME_MAX];
    size_t wire_len;
    uint8_t plain[FRAME_MAX];
    size_t plain_len;
} rec_frame;

/* The whole of a transcript file, parsed once per test. */
typedef struct transcript {
    json_t *v;
    side ini, res;
    uint8_t core_key[KL_HASH_BYTES];
    rec_frame frames[MAX_FRAMES];
    size_t nframes;
    uint8_t stream[2][FRAME_MAX]; /* [0] i2r, [1] r2i */
    size_t stream_len[2];
} transcript;

static transcript *transcript_load(const char *name) {
    transcript *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->v = tu_vector(name);
    side_from(tu_json_get(t->v, "initiator"), &t->ini);
    side_from(tu_json_get(t->v, "responder"), &t->res);
    unhex_exact(tu_json_str(tu_json_get(t->v, "core"), "key"), t->core_key, sizeof t->core_key);
    const json_t *frames = tu_json_get(t->v, "frames");
    t->nframes = json_array_size(frames);
    assert_true(t->nframes > 5 && t->nframes <= MAX_FRAMES);
    for (size_t i = 0; i < t->nframes; i++) {
        const json_t *f = json_array_get(frames, i);
        rec_frame *r = &t->frames[i];
        assert_int_equal(tu_json_u64(f, "n"), i);
        r->i2r = strcmp(tu_json_str(f, "dir"), "i2r") == 0;
        assert_true(r->i2r || strcmp(tu_json_str(f, "dir"), "r2i") == 0);
        snprintf(r->kind, sizeof r->kind, "%s", tu_json_str(f, "kind"));
        r->wire_len = tu_unhex(tu_json_str(f, "wire"), r->wire, sizeof r->wire);
        assert_true(r->wire_len >= KL_FRAME_HDR_BYTES);
        if (strcmp(r->kind, "message") == 0)
            r->plain_len = tu_unhex(tu_json_str(f, "plaintext"), r->plain, sizeof r->plain);
    }
    const json_t *streams = tu_json_get(t->v, "streams");
    t->stream_len[0] = tu_unhex(tu_json_str(streams, "i2r"), t->stream[0], FRAME_MAX);
    t->stream_len[1] = tu_unhex(tu_json_str(streams, "r2i"), t->stream[1], FRAME_MAX);
    return t;
}

static void transcript_free(transcript *t) {
    json_decref(t->v);
    free(t);
}

/* The payload of recorded frame i, after checking its length prefix. */
static const uint8_t *payload_of(const rec_frame *r, size_t *len) {
    *len = r->wire_len - KL_FRAME_HDR_BYTES;
    uint8_t hdr[KL_FRAME_HDR_BYTES];
    kl_frame_header(hdr, *len);
    expect_bytes(r->wire, hdr, sizeof hdr);
    return r->wire + KL_FRAME_HDR_BYTES;
}

/* The n-th recorded frame of kind `kind` (noise: the handshake messages in order). */
static const rec_frame *nth_of_kind(const transcript *t, const char *kind, size_t n) {
    for (size_t i = 0; i < t->nframes; i++)
        if (strcmp(t->frames[i].kind, kind) == 0 && n-- == 0)
            return &t->frames[i];
    fail_msg("no frame %s #%zu", kind, n);
    return NULL;
}

/* ---- the handshake ---- */

static void expect_state(const kl_noise *st, const json_t *s, kl_noise_role by, const char *after) {
    assert_string_equal(tu_json_str(s, "by"), by == KL_NOISE_INITIATOR ? "initiator" : "responder");
    assert_string_equal(tu_json_str(s, "after"), after);
    expect_hex(st->h, sizeof st->h, tu_json_str(s, "h"));
    expect_hex(st->ck, sizeof st->ck, tu_json_str(s, "ck"));
    const json_t *k = tu_json_get(s, "k");
    if (json_is_null(k)) {
        assert_false(st->has_key);
    } else {
        assert_true(st->has_key);
        expect_hex(st->k, sizeof st->k, json_string_value(k));
    }
    assert_int_equal(st->n, tu_json_u64(s, "n"));
    checks++;
}

static void start_pair(const transcript *t, kl_noise *ini, kl_noise *res) {
    assert_int_equal(kl_noise_init(ini, KL_NOISE_INITIATOR, t->ini.s_sk, t->ini.e_sk), 0);
    assert_int_equal(kl_noise_init(res, KL_NOISE_RESPONDER, t->res.s_sk, t->res.e_sk), 0);
}

/* Move message `i` (0-based) from its writer to its reader, checking the recorded bytes. */
static void step_recorded(const transcript *t, kl_noise *ini, kl_noise *res, size_t i,
                          const json_t *states) {
    static const char *const after_send[] = {"send message 1", "send message 2",
                                             "last message 3, before split"};
    static const char *const after_recv[] = {"recv message 1", "recv message 2",
                                             "last message 3, before split"};
    kl_noise *w = i % 2 == 0 ? ini : res, *r = i % 2 == 0 ? res : ini;
    uint8_t msg[KL_NOISE_MSG_MAX];
    size_t n = 0, size = 0, want;
    assert_int_equal(kl_noise_status(w, &size), KL_NOISE_WRITE);
    assert_int_equal(kl_noise_status(r, &want), KL_NOISE_READ);
    assert_int_equal(size, want);
    assert_int_equal(kl_noise_write(w, msg, sizeof msg, &n), 0);
    assert_int_equal(n, size);
    size_t len;
    const uint8_t *rec = payload_of(nth_of_kind(t, "noise", i), &len);
    assert_int_equal(len, n);
    expect_bytes(msg, rec, n);
    expect_state(w, json_array_get(states, 2 * i), w->role, after_send[i]);
    assert_int_equal(kl_noise_read(r, msg, n), 0);
    expect_state(r, json_array_get(states, 2 * i + 1), r->role, after_recv[i]);
}

static void expect_split(const transcript *t, const kl_noise *ini, const kl_noise *res,
                         kl_noise_keys *ki, kl_noise_keys *kr) {
    const json_t *noise = tu_json_get(t->v, "noise");
    const json_t *split = tu_json_get(noise, "split");
    assert_int_equal(kl_noise_status(ini, NULL), KL_NOISE_DONE);
    assert_int_equal(kl_noise_status(res, NULL), KL_NOISE_DONE);
    assert_int_equal(kl_noise_keys_get(ini, ki), 0);
    assert_int_equal(kl_noise_keys_get(res, kr), 0);
    assert_int_equal(ki->role, KL_NOISE_INITIATOR);
    assert_int_equal(kr->role, KL_NOISE_RESPONDER);
    expect_hex(ki->hash, sizeof ki->hash, tu_json_str(noise, "handshake_hash"));
    expect_hex(kr->hash, sizeof kr->hash, tu_json_str(noise, "handshake_hash"));
    expect_hex(ki->tx, sizeof ki->tx, tu_json_str(split, "initiator_tx_eq_responder_rx"));
    expect_hex(kr->rx, sizeof kr->rx, tu_json_str(split, "initiator_tx_eq_responder_rx"));
    expect_hex(ki->rx, sizeof ki->rx, tu_json_str(split, "initiator_rx_eq_responder_tx"));
    expect_hex(kr->tx, sizeof kr->tx, tu_json_str(split, "initiator_rx_eq_responder_tx"));
    expect_bytes(ki->remote_pk, t->res.s_pk, KL_NOISE_PK_BYTES);
    expect_bytes(kr->remote_pk, t->ini.s_pk, KL_NOISE_PK_BYTES);
    /* The key pairs are gone once the last DH is done. */
    uint8_t zero[KL_NOISE_SK_BYTES] = {0};
    expect_bytes(ini->s_sk, zero, sizeof zero);
    expect_bytes(ini->e_sk, zero, sizeof zero);
    expect_bytes(res->s_sk, zero, sizeof zero);
    expect_bytes(res->e_sk, zero, sizeof zero);
}

/* Run the recorded handshake; *ki, *kr get both sides' keys. */
static void handshake_recorded(const transcript *t, kl_noise_keys *ki, kl_noise_keys *kr) {
    kl_noise ini, res;
    const json_t *states = tu_json_get(tu_json_get(t->v, "noise"), "states");
    assert_int_equal(json_array_size(states), 6);
    start_pair(t, &ini, &res);
    for (size_t i = 0; i < 3; i++)
        step_recorded(t, &ini, &res, i, states);
    expect_split(t, &ini, &res, ki, kr);
    kl_noise_wipe(&ini);
    kl_noise_wipe(&res);
}

static void expect_dh_outputs(const transcript *t) {
    const json_t *dhs = tu_json_get(tu_json_get(t->v, "noise"), "dh_outputs");
    assert_int_equal(json_array_size(dhs), 6);
    const uint8_t *sks[] = {t->ini.s_sk, t->ini.e_sk, t->res.s_sk, t->res.e_sk};
    for (size_t i = 0; i < json_array_size(dhs); i++) {
        const json_t *d = json_array_get(dhs, i);
        uint8_t local[KL_NOISE_PK_BYTES], remote[KL_NOISE_PK_BYTES], out[KL_NOISE_DH_BYTES];
        unhex_exact(tu_json_str(d, "local_public"), local, sizeof local);
        unhex_exact(tu_json_str(d, "remote_public"), remote, sizeof remote);
        const uint8_t *sk = NULL;
        for (size_t j = 0; j < 4; j++)
            if (memcmp(sks[j] + 32, local, sizeof local) == 0)
                sk = sks[j];
        assert_non_null(sk);
        assert_int_equal(kl_noise_dh(out, sk, remote), 0);
        expect_hex(out, sizeof out, tu_json_str(d, "output"));
    }
}

static void expect_ids_and_caps(const transcript *t, const kl_noise_keys *k) {
    const json_t *ids = tu_json_get(t->v, "stream_ids");
    const json_t *caps = tu_json_get(t->v, "capabilities");
    uint8_t out[32];
    kl_ss_stream_id(k->hash, KL_NOISE_INITIATOR, out);
    expect_hex(out, sizeof out, tu_json_str(ids, "initiator"));
    kl_ss_stream_id(k->hash, KL_NOISE_RESPONDER, out);
    expect_hex(out, sizeof out, tu_json_str(ids, "responder"));
    kl_ss_capability(k->hash, KL_NOISE_INITIATOR, t->core_key, out);
    expect_hex(out, sizeof out, tu_json_str(caps, "initiator"));
    kl_ss_capability(k->hash, KL_NOISE_RESPONDER, t->core_key, out);
    expect_hex(out, sizeof out, tu_json_str(caps, "responder"));
}

/* ---- the secret stream ---- */

/*
 * Replay every post-handshake frame in recorded order: the sender makes
 * each one from the recorded plaintext (byte for byte), the receiver takes
 * the recorded bytes back to the plaintext.
 */
static void replay_stream(const transcript *t, const kl_noise_keys *ki, const kl_noise_keys *kr) {
    kl_ss ss[2]; /* [0] initiator, [1] responder */
    uint8_t hello[2][KL_SS_HELLO_BYTES];
    kl_ss_init(&ss[0], ki, t->ini.header, hello[0]);
    kl_ss_init(&ss[1], kr, t->res.header, hello[1]);
    size_t headers = 0, messages = 0;
    for (size_t i = 0; i < t->nframes; i++) {
        const rec_frame *r = &t->frames[i];
        kl_ss *tx = &ss[r->i2r ? 0 : 1], *rx = &ss[r->i2r ? 1 : 0];
        size_t len;
        const uint8_t *payload = payload_of(r, &len);
        if (strcmp(r->kind, "header") == 0) {
            assert_int_equal(len, KL_SS_HELLO_BYTES);
            expect_bytes(payload, hello[r->i2r ? 0 : 1], KL_SS_HELLO_BYTES);
            assert_int_equal(kl_ss_accept(rx, payload, len), 0);
            headers++;
        } else if (strcmp(r->kind, "message") == 0) {
            uint8_t out[FRAME_MAX];
            size_t n = 0;
            assert_int_equal(kl_ss_encrypt(tx, r->plain, r->plain_len, out, sizeof out, &n), 0);
            assert_int_equal(n, r->wire_len);
            assert_int_equal(n, KL_SS_FRAME_BYTES(r->plain_len));
            expect_bytes(out, r->wire, n);
            assert_int_equal(kl_ss_decrypt(rx, payload, len, out, sizeof out, &n), 0);
            assert_int_equal(n, r->plain_len);
            expect_bytes(out, r->plain, n);
            messages++;
        } else {
            assert_string_equal(r->kind, "noise");
        }
    }
    assert_int_equal(headers, 2);
    assert_true(messages >= 10);
    kl_ss_wipe(&ss[0]);
    kl_ss_wipe(&ss[1]);
}

static void check_transcript(const char *name) {
    transcript *t = transcript_load(name);
    kl_noise_keys ki, kr;
    handshake_recorded(t, &ki, &kr);
    expect_dh_outputs(t);
    expect_ids_and_caps(t, &ki);
    replay_stream(t, &ki, &kr);
    transcript_free(t);
}

static void test_transcript_is_reproduced_byte_for_byte(void **state) {
    (void)state;
    check_transcript("transcript.json");
}

static void test_live_transcript_is_reproduced_byte_for_byte(void **state) {
    (void)state;
    check_transcript("transcript-live.json");
}

static void test_capability_and_stream_id_match_primitives(void **state) {
    (void)state;
    json_t *v = tu_vector("primitives.json");
    const json_t *cap = tu_json_get(v, "capability");
    const json_t *sid = tu_json_get(v, "stream_id");
    uint8_t hash[KL_NOISE_HASH_BYTES], key[KL_HASH_BYTES], out[32];
    unhex_exact(tu_json_str(cap, "handshake_hash"), hash, sizeof hash);
    unhex_exact(tu_json_str(cap, "core_key"), key, sizeof key);
    kl_ss_capability(hash, KL_NOISE_INITIATOR, key, out);
    expect_hex(out, sizeof out, tu_json_str(cap, "initiator"));
    kl_ss_capability(hash, KL_NOISE_RESPONDER, key, out);
    expect_hex(out, sizeof out, tu_json_str(cap, "responder"));
    unhex_exact(tu_json_str(sid, "handshake_hash"), hash, sizeof hash);
    kl_ss_stream_id(hash, KL_NOISE_INITIATOR, out);
    expect_hex(out, sizeof out, tu_json_str(sid, "initiator"));
    expect_hex(out, sizeof out, tu_json_str(sid, "check_initiator"));
    kl_ss_stream_id(hash, KL_NOISE_RESPONDER, out);
    expect_hex(out, sizeof out, tu_json_str(sid, "responder"));
    /* The namespaces behind them follow the rule ns[i] = H(H(name) || u8 i) (notes section 2). */
    const json_t *ns = tu_json_get(tu_json_get(v, "namespaces"), "hyperswarm/secret-stream");
    for (size_t i = 0; i < 2; i++) {
        uint8_t base[KL_HASH_BYTES + 1], nsi[KL_HASH_BYTES];
        const char *name = "hyperswarm/secret-stream";
        crypto_generichash(base, KL_HASH_BYTES, (const uint8_t *)name, strlen(name), NULL, 0);
        base[KL_HASH_BYTES] = (uint8_t)i;
        crypto_generichash(nsi, sizeof nsi, base, sizeof base, NULL, 0);
        expect_hex(nsi, sizeof nsi, tu_json_str(json_array_get(ns, i), "hash"));
        /* A stream id is the namespace keyed with the hash. */
        crypto_generichash(out, sizeof out, nsi, sizeof nsi, hash, sizeof hash);
        kl_ss_stream_id(hash, i == 0 ? KL_NOISE_INITIATOR : KL_NOISE_RESPONDER, base);
        expect_bytes(base, out, sizeof out);
    }
    json_decref(v);
}

/* ---- frames reassembled from the raw streams ---- */

/* Push s[0..n) in pieces of the sizes sizes[] (cycled); the frames in order must be `want`. */
static void reassemble(const uint8_t *s, size_t n, const size_t *sizes, size_t nsizes,
                       const rec_frame *const *want, size_t nwant) {
    kl_frames fr;
    assert_int_equal(kl_frames_init(&fr, KL_FRAME_WIRE_MAX), 0);
    size_t got = 0, at = 0, piece = 0, accounted = 0;
    while (at < n) {
        size_t piece_len = sizes[piece++ % nsizes]; /* KL_MIN evaluates its arguments twice */
        size_t len = KL_MIN(piece_len, n - at);
        const uint8_t *p = s + at;
        at += len;
        while (len > 0) {
            size_t used = 0, flen = 0;
            const uint8_t *f = NULL;
            int rc = kl_frames_next(&fr, p, len, &used, &f, &flen);
            assert_true(rc == 0 || rc == 1);
            assert_true(used >= 1 && used <= len);
            p += used;
            len -= used;
            if (rc == 1) {
                assert_true(got < nwant);
                assert_int_equal(flen + KL_FRAME_HDR_BYTES, want[got]->wire_len);
                expect_bytes(f, want[got]->wire + KL_FRAME_HDR_BYTES, flen);
                accounted += flen + KL_FRAME_HDR_BYTES;
                got++;
            } else {
                assert_int_equal(len, 0);
            }
        }
        assert_int_equal(accounted + kl_frames_pending(&fr), at);
    }
    assert_int_equal(got, nwant);
    assert_int_equal(kl_frames_pending(&fr), 0);
    kl_frames_free(&fr);
}

static void check_reassembly(const char *name) {
    transcript *t = transcript_load(name);
    static const size_t ones[] = {1};
    static const size_t uneven[] = {2, 5, 1, 64, 3, 17, 200, 7, 4096};
    static const size_t whole[] = {FRAME_MAX};
    for (int dir = 0; dir < 2; dir++) {
        const rec_frame *want[MAX_FRAMES];
        size_t nwant = 0, total = 0;
        for (size_t i = 0; i < t->nframes; i++)
            if (t->frames[i].i2r == (dir == 0)) {
                want[nwant++] = &t->frames[i];
                total += t->frames[i].wire_len;
            }
        assert_int_equal(total, t->stream_len[dir]);
        reassemble(t->stream[dir], t->stream_len[dir], ones, 1, want, nwant);
        reassemble(t->stream[dir], t->stream_len[dir], uneven, 9, want, nwant);
        reassemble(t->stream[dir], t->stream_len[dir], whole, 1, want, nwant);
    }
    transcript_free(t);
}

static void test_raw_streams_in_any_pieces_give_the_recorded_frames(void **state) {
    (void)state;
    check_reassembly("transcript.json");
    check_reassembly("transcript-live.json");
}

/*
 * A responder that sees only the initiator's raw byte stream, one byte at a
 * time: it reads the handshake, writes message 2 as recorded, accepts the
 * header and reads every message, as a server reading a socket would.
 */
static void test_responder_driven_by_the_raw_stream_reads_every_message(void **state) {
    (void)state;
    transcript *t = transcript_load("transcript.json");
    kl_noise res;
    kl_ss ss;
    kl_frames fr;
    uint8_t hello[KL_SS_HELLO_BYTES], out[FRAME_MAX];
    assert_int_equal(kl_noise_init(&res, KL_NOISE_RESPONDER, t->res.s_sk, t->res.e_sk), 0);
    assert_int_equal(kl_frames_init(&fr, KL_FRAME_WIRE_MAX), 0);
    size_t next_i2r = 0, frames_seen = 0, messages = 0, i2r_frames = 0;
    enum { HANDSHAKE, HEADER, MESSAGES } phase = HANDSHAKE;
    for (size_t i = 0; i < t->nframes; i++)
        i2r_frames += t->frames[i].i2r;
    for (size_t at = 0; at < t->stream_len[0]; at++) {
        size_t used = 0, len = 0, n = 0;
        const uint8_t *f = NULL;
        int rc = kl_frames_next(&fr, t->stream[0] + at, 1, &used, &f, &len);
        assert_int_equal(used, 1);
        if (rc == 0)
            continue;
        assert_int_equal(rc, 1);
        frames_seen++;
        while (t->frames[next_i2r].i2r == 0)
            next_i2r++;
        const rec_frame *r = &t->frames[next_i2r++];
        if (phase == HANDSHAKE) {
            assert_string_equal(r->kind, "noise");
            assert_int_equal(kl_noise_read(&res, f, len), 0);
            if (kl_noise_status(&res, NULL) == KL_NOISE_WRITE) {
                assert_int_equal(kl_noise_write(&res, out, sizeof out, &n), 0);
                size_t rl;
                const uint8_t *rec = payload_of(nth_of_kind(t, "noise", 1), &rl);
                assert_int_equal(n, rl);
                expect_bytes(out, rec, n);
            }
            if (kl_noise_status(&res, NULL) == KL_NOISE_DONE)
                phase = HEADER;
        } else if (phase == HEADER) {
            kl_noise_keys k;
            assert_string_equal(r->kind, "header");
            assert_int_equal(kl_noise_keys_get(&res, &k), 0);
            kl_noise_wipe(&res);
            kl_ss_init(&ss, &k, t->res.header, hello);
            sodium_memzero(&k, sizeof k);
            assert_int_equal(kl_ss_accept(&ss, f, len), 0);
            phase = MESSAGES;
        } else {
            assert_string_equal(r->kind, "message");
            assert_int_equal(kl_ss_decrypt(&ss, f, len, out, sizeof out, &n), 0);
            assert_int_equal(n, r->plain_len);
            expect_bytes(out, r->plain, n);
            messages++;
        }
    }
    assert_int_equal(phase, MESSAGES);
    assert_int_equal(frames_seen, i2r_frames);
    assert_int_equal(messages, i2r_frames - 3); /* all but messages 1, 3 and the header */
    assert_int_equal(kl_frames_pending(&fr), 0);
    kl_ss_wipe(&ss);
    kl_frames_free(&fr);
    transcript_free(t);
}

/* ---- our initiator against our responder, random ephemeral keys and headers ---- */

static void random_sk(uint8_t sk[KL_NOISE_SK_BYTES]) {
    uint8_t pk[KL_NOISE_PK_BYTES];
    crypto_sign_keypair(pk, sk);
}

/* Run a whole handshake between two fresh states; fills both key sets. */
static void handshake_fresh(kl_noise_keys *ki, kl_noise_keys *kr, uint8_t ini_pk[32],
                            uint8_t res_pk[32]) {
    uint8_t si[KL_NOISE_SK_BYTES], sr[KL_NOISE_SK_BYTES], msg[KL_NOISE_MSG_MAX];
    kl_noise ini, res;
    random_sk(si);
    random_sk(sr);
    memcpy(ini_pk, si + 32, 32);
    memcpy(res_pk, sr + 32, 32);
    assert_int_equal(kl_noise_init(&ini, KL_NOISE_INITIATOR, si, NULL), 0);
    assert_int_equal(kl_noise_init(&res, KL_NOISE_RESPONDER, sr, NULL), 0);
    for (int i = 0; i < 3; i++) {
        kl_noise *w = i % 2 == 0 ? &ini : &res, *r = i % 2 == 0 ? &res : &ini;
        size_t n = 0;
        assert_int_equal(kl_noise_write(w, msg, sizeof msg, &n), 0);
        assert_int_equal(kl_noise_read(r, msg, n), 0);
    }
    assert_int_equal(kl_noise_keys_get(&ini, ki), 0);
    assert_int_equal(kl_noise_keys_get(&res, kr), 0);
    kl_noise_wipe(&ini);
    kl_noise_wipe(&res);
}

static void test_fresh_handshake_and_stream_round_trip(void **state) {
    (void)state;
    kl_noise_keys ki, kr;
    uint8_t ipk[32], rpk[32];
    handshake_fresh(&ki, &kr, ipk, rpk);
    expect_bytes(ki.hash, kr.hash, sizeof ki.hash);
    expect_bytes(ki.tx, kr.rx, sizeof ki.tx);
    expect_bytes(ki.rx, kr.tx, sizeof ki.rx);
    assert_memory_not_equal(ki.tx, ki.rx, sizeof ki.tx);
    expect_bytes(ki.remote_pk, rpk, 32);
    expect_bytes(kr.remote_pk, ipk, 32);

    kl_ss a, b;
    uint8_t ha[KL_SS_HELLO_BYTES], hb[KL_SS_HELLO_BYTES];
    kl_ss_init(&a, &ki, NULL, ha);
    kl_ss_init(&b, &kr, NULL, hb);
    assert_int_equal(kl_ss_accept(&a, hb, sizeof hb), 0);
    assert_int_equal(kl_ss_accept(&b, ha, sizeof ha), 0);
    /* An empty message (keepalive, 20 bytes on the wire), a small one and a 1 MiB one, each way. */
    static const size_t sizes[] = {0, 1, 300, 1u << 20};
    size_t big = KL_SS_FRAME_BYTES(1u << 20);
    uint8_t *plain = malloc(1u << 20), *wire = malloc(big), *back = malloc(1u << 20);
    assert_true(plain && wire && back);
    randombytes_buf(plain, 1u << 20);
    for (size_t i = 0; i < 4; i++)
        for (int dir = 0; dir < 2; dir++) {
            kl_ss *tx = dir ? &b : &a, *rx = dir ? &a : &b;
            size_t n = 0, m = 0;
            assert_int_equal(kl_ss_encrypt(tx, plain, sizes[i], wire, big, &n), 0);
            assert_int_equal(n, KL_SS_FRAME_BYTES(sizes[i]));
            if (sizes[i] == 0)
                assert_int_equal(n, 20);
            /* Through a frame reader in uneven pieces, as from a socket. */
            kl_frames fr;
            assert_int_equal(kl_frames_init(&fr, KL_FRAME_WIRE_MAX), 0);
            const uint8_t *f = NULL;
            size_t flen = 0, at = 0, step = 1;
            int got = 0;
            while (at < n) {
                size_t used = 0, len = KL_MIN(step, n - at);
                int rc = kl_frames_next(&fr, wire + at, len, &used, &f, &flen);
                assert_true(rc == 0 || rc == 1);
                at += used;
                step = step * 3 + 1;
                if (rc == 1) {
                    got = 1;
                    assert_int_equal(at, n);
                    assert_int_equal(kl_ss_decrypt(rx, f, flen, back, 1u << 20, &m), 0);
                }
            }
            assert_true(got);
            assert_int_equal(m, sizes[i]);
            if (m)
                expect_bytes(back, plain, m);
            kl_frames_free(&fr);
        }
    free(plain);
    free(wire);
    free(back);
    kl_ss_wipe(&a);
    kl_ss_wipe(&b);
}

/* ---- refusals: the handshake ---- */

/* A pair of states just before message `i` (0-based), from the recorded keys. */
static void pair_before(const transcript *t, size_t i, kl_noise *ini, kl_noise *res,
                        uint8_t msg[KL_NOISE_MSG_MAX], size_t *n) {
    start_pair(t, ini, res);
    for (size_t j = 0;; j++) {
        kl_noise *w = j % 2 == 0 ? ini : res, *r = j % 2 == 0 ? res : ini;
        assert_int_equal(kl_noise_write(w, msg, KL_NOISE_MSG_MAX, n), 0);
        if (j == i)
            return;
        assert_int_equal(kl_noise_read(r, msg, *n), 0);
    }
}

static void expect_failed_for_good(kl_noise *st, int code, const uint8_t *good, size_t n) {
    uint8_t zero[KL_NOISE_SK_BYTES] = {0}, out[KL_NOISE_MSG_MAX];
    size_t w = 0;
    kl_noise_keys k;
    assert_int_equal(kl_noise_status(st, NULL), KL_NOISE_FAILED);
    assert_int_equal(kl_noise_read(st, good, n), code);
    assert_int_equal(kl_noise_write(st, out, sizeof out, &w), code);
    assert_int_equal(kl_noise_keys_get(st, &k), KL_EINVAL);
    expect_bytes(st->s_sk, zero, sizeof zero);
    expect_bytes(st->e_sk, zero, sizeof zero);
    expect_bytes(st->ck, zero, sizeof st->ck);
}

static void test_handshake_messages_of_the_wrong_size_are_refused(void **state) {
    (void)state;
    transcript *t = transcript_load("transcript.json");
    for (size_t i = 0; i < 3; i++) {
        kl_noise ini, res;
        uint8_t msg[KL_NOISE_MSG_MAX + 1] = {0};
        size_t n;
        pair_before(t, i, &ini, &res, msg, &n);
        kl_noise *r = i % 2 == 0 ? &res : &ini;
        const size_t wrong[] = {0, n - 1, n + 1, 1};
        for (size_t w = 0; w < 4; w++) {
            kl_noise copy = *r;
            kl_err_clear();
            assert_int_equal(kl_noise_read(&copy, msg, wrong[w]), KL_ECORRUPT);
            assert_non_null(strstr(kl_last_error(), "expected"));
            expect_failed_for_good(&copy, KL_ECORRUPT, msg, n);
            checks++;
        }
        /* The untouched state still takes the genuine message. */
        assert_int_equal(kl_noise_read(r, msg, n), 0);
        kl_noise_wipe(&ini);
        kl_noise_wipe(&res);
    }
    transcript_free(t);
}

/*
 * Every single-bit flip of every message. Messages 2 and 3 carry tags, so a
 * flip anywhere fails (a flipped ephemeral key in message 2 may also fail as
 * a point). Message 1 carries none: a flip that leaves a valid point is
 * accepted, and then the initiator must refuse the responder's answer.
 */
static void test_every_flipped_bit_of_every_handshake_message_is_refused(void **state) {
    (void)state;
    transcript *t = transcript_load("transcript.json");
    size_t accepted_m1 = 0, bad_point = 0;
    for (size_t i = 0; i < 3; i++) {
        kl_noise ini, res;
        uint8_t msg[KL_NOISE_MSG_MAX];
        size_t n;
        pair_before(t, i, &ini, &res, msg, &n);
        kl_noise *r = i % 2 == 0 ? &res : &ini;
        for (size_t bit = 0; bit < 8 * n; bit++) {
            kl_noise copy = *r;
            uint8_t bad[KL_NOISE_MSG_MAX];
            memcpy(bad, msg, n);
            bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            int rc = kl_noise_read(&copy, bad, n);
            if (i == 0 && rc == 0) {
                /* The responder answers a key the initiator never sent: refused there. */
                uint8_t m2[KL_NOISE_MSG_MAX];
                size_t n2;
                kl_noise ini2 = ini;
                assert_int_equal(kl_noise_write(&copy, m2, sizeof m2, &n2), 0);
                assert_int_equal(kl_noise_read(&ini2, m2, n2), KL_EVERIFY);
                expect_failed_for_good(&ini2, KL_EVERIFY, m2, n2);
                accepted_m1++;
            } else if (rc == KL_ECORRUPT) {
                assert_true(bit < 8 * KL_NOISE_PK_BYTES && i < 2); /* only an ephemeral key */
                expect_failed_for_good(&copy, KL_ECORRUPT, msg, n);
                bad_point++;
            } else {
                assert_int_equal(rc, KL_EVERIFY);
                assert_true(i > 0);
                expect_failed_for_good(&copy, KL_EVERIFY, msg, n);
            }
            checks++;
        }
        kl_noise_wipe(&ini);
        kl_noise_wipe(&res);
    }
    /* Both kinds happen: about half of all y values are on the curve. */
    assert_true(accepted_m1 > 0 && bad_point > 0);
    transcript_free(t);
}

/* Small-order points: all-zero (order 4) and the identity (y = 1). */
static const uint8_t SMALL_ORDER[2][32] = {{0}, {1}};

static void test_small_order_ephemeral_keys_are_refused(void **state) {
    (void)state;
    transcript *t = transcript_load("transcript.json");
    for (size_t p = 0; p < 2; p++) {
        uint8_t msg[KL_NOISE_MSG_MAX], out[KL_NOISE_DH_BYTES];
        size_t n;
        kl_noise ini, res;
        /* As message 1. */
        pair_before(t, 0, &ini, &res, msg, &n);
        memcpy(msg, SMALL_ORDER[p], 32);
        kl_err_clear();
        assert_int_equal(kl_noise_read(&res, msg, n), KL_ECORRUPT);
        assert_non_null(strstr(kl_last_error(), "small order"));
        expect_failed_for_good(&res, KL_ECORRUPT, msg, n);
        /* As the responder's ephemeral key in message 2. */
        pair_before(t, 1, &ini, &res, msg, &n);
        memcpy(msg, SMALL_ORDER[p], 32);
        assert_int_equal(kl_noise_read(&ini, msg, n), KL_ECORRUPT);
        expect_failed_for_good(&ini, KL_ECORRUPT, msg, n);
        /* And the DH itself refuses them. */
        assert_int_equal(kl_noise_dh(out, t->ini.e_sk, SMALL_ORDER[p]), KL_ECORRUPT);
        checks += 3;
    }
    transcript_free(t);
}

/*
 * A peer that encrypts a small-order point as its static key (a valid tag:
 * it holds k) is refused after decryption, at both messages that carry one.
 * The states' own static public halves are replaced after init to play it.
 */
static void test_small_order_static_keys_are_refused(void **state) {
    (void)state;
    transcript *t = transcript_load("transcript.json");
    for (size_t p = 0; p < 2; p++) {
        kl_noise ini, res;
        uint8_t msg[KL_NOISE_MSG_MAX];
        size_t n;
        start_pair(t, &ini, &res);
        memcpy(res.s_sk + 32, SMALL_ORDER[p], 32);
        assert_int_equal(kl_noise_write(&ini, msg, sizeof msg, &n), 0);
        assert_int_equal(kl_noise_read(&res, msg, n), 0);
        assert_int_equal(kl_noise_write(&res, msg, sizeof msg, &n), 0);
        kl_err_clear();
        assert_int_equal(kl_noise_read(&ini, msg, n), KL_ECORRUPT);
        assert_non_null(strstr(kl_last_error(), "static key"));
        expect_failed_for_good(&ini, KL_ECORRUPT, msg, n);

        /* An initiator that encrypts a small-order static key into message 3. */
        kl_noise before;
        start_pair(t, &before, &res);
        for (int j = 0; j < 2; j++) {
            kl_noise *w = j == 0 ? &before : &res, *r = j == 0 ? &res : &before;
            assert_int_equal(kl_noise_write(w, msg, sizeof msg, &n), 0);
            assert_int_equal(kl_noise_read(r, msg, n), 0);
        }
        memcpy(before.s_sk + 32, SMALL_ORDER[p], 32);
        assert_int_equal(kl_noise_write(&before, msg, sizeof msg, &n), 0);
        kl_err_clear();
        assert_int_equal(kl_noise_read(&res, msg, n), KL_ECORRUPT);
        assert_non_null(strstr(kl_last_error(), "static key"));
        expect_failed_for_good(&res, KL_ECORRUPT, msg, n);
        kl_noise_wipe(&ini);
        kl_noise_wipe(&before);
        kl_noise_wipe(&res);
        checks += 2;
    }
    transcript_free(t);
}

static void test_handshake_misuse_changes_nothing(void **state) {
    (void)state;
    transcript *t = transcript_load("transcript.json");
    kl_noise ini, res, copy, copy_ini;
    uint8_t msg[KL_NOISE_MSG_MAX], bad[KL_NOISE_SK_BYTES];
    size_t n = 0;
    kl_noise_keys k;
    start_pair(t, &ini, &res);
    memcpy(&copy, &res, sizeof copy);
    memcpy(&copy_ini, &ini, sizeof copy_ini);
    /* Reading or writing out of turn, a short buffer, keys before the end. */
    assert_int_equal(kl_noise_write(&res, msg, sizeof msg, &n), KL_EINVAL);
    assert_int_equal(kl_noise_read(&ini, msg, KL_NOISE_MSG1_BYTES), KL_EINVAL);
    assert_int_equal(kl_noise_write(&ini, msg, KL_NOISE_MSG1_BYTES - 1, &n), KL_ETOOSMALL);
    assert_int_equal(n, KL_NOISE_MSG1_BYTES);
    assert_int_equal(kl_noise_keys_get(&ini, &k), KL_EINVAL);
    assert_memory_equal(&copy, &res, sizeof copy);
    assert_memory_equal(&copy_ini, &ini, sizeof copy_ini);
    assert_int_equal(kl_noise_status(&ini, &n), KL_NOISE_WRITE);
    assert_int_equal(n, KL_NOISE_MSG1_BYTES);
    assert_int_equal(kl_noise_status(&res, &n), KL_NOISE_READ);
    /* A secret key whose public half is not its seed's, and an unknown role. */
    memcpy(bad, t->ini.s_sk, sizeof bad);
    bad[40] ^= 1;
    memcpy(&copy, &ini, sizeof copy);
    assert_int_equal(kl_noise_init(&ini, KL_NOISE_INITIATOR, bad, NULL), KL_EINVAL);
    assert_int_equal(kl_noise_init(&ini, KL_NOISE_INITIATOR, t->ini.s_sk, bad), KL_EINVAL);
    assert_int_equal(kl_noise_init(&ini, (kl_noise_role)7, t->ini.s_sk, NULL), KL_EINVAL);
    assert_memory_equal(&copy, &ini, sizeof copy);
    /* Wiping leaves nothing behind. */
    uint8_t zero[sizeof ini];
    memset(zero, 0, sizeof zero);
    kl_noise_wipe(&ini);
    assert_memory_equal(&ini, zero, sizeof ini);
    kl_noise_wipe(&res);
    checks += 8;
    transcript_free(t);
}

/* ---- refusals: the secret stream ---- */

typedef struct pair {
    kl_ss ini, res;
    uint8_t hi[KL_SS_HELLO_BYTES], hr[KL_SS_HELLO_BYTES];
} pair;

static void ss_pair(pair *p) {
    kl_noise_keys ki, kr;
    uint8_t a[32], b[32];
    handshake_fresh(&ki, &kr, a, b);
    kl_ss_init(&p->ini, &ki, NULL, p->hi);
    kl_ss_init(&p->res, &kr, NULL, p->hr);
}

static void test_bad_header_frames_are_refused(void **state) {
    (void)state;
    pair p;
    ss_pair(&p);
    uint8_t big[KL_SS_HELLO_BYTES + 1];
    memcpy(big, p.hi, KL_SS_HELLO_BYTES);
    big[KL_SS_HELLO_BYTES] = 0;
    kl_ss copy = p.res;
    /* 55 and 57 bytes. */
    assert_int_equal(kl_ss_accept(&copy, p.hi, KL_SS_HELLO_BYTES - 1), KL_ECORRUPT);
    assert_int_equal(kl_ss_accept(&copy, p.hi, KL_SS_HELLO_BYTES),
                     KL_ECORRUPT); /* failed for good */
    copy = p.res;
    assert_int_equal(kl_ss_accept(&copy, big, sizeof big), KL_ECORRUPT);
    /* Our own header reflected back: the initiator's id, not the responder's. */
    copy = p.ini;
    kl_err_clear();
    assert_int_equal(kl_ss_accept(&copy, p.hi, KL_SS_HELLO_BYTES), KL_EVERIFY);
    assert_non_null(strstr(kl_last_error(), "wrong stream id"));
    /* Any flipped bit of the stream id. */
    for (size_t bit = 0; bit < 8 * KL_SS_ID_BYTES; bit++) {
        uint8_t h[KL_SS_HELLO_BYTES];
        memcpy(h, p.hi, sizeof h);
        h[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        copy = p.res;
        assert_int_equal(kl_ss_accept(&copy, h, sizeof h), KL_EVERIFY);
        checks++;
    }
    /* A message before the header; then the right header once, and not twice. */
    uint8_t frame[64], out[64];
    size_t n = 0;
    assert_int_equal(kl_ss_encrypt(&p.ini, (const uint8_t *)"hi", 2, frame, sizeof frame, &n), 0);
    assert_int_equal(kl_ss_decrypt(&p.res, frame + 3, n - 3, out, sizeof out, &n), KL_EINVAL);
    assert_int_equal(kl_ss_accept(&p.res, p.hi, KL_SS_HELLO_BYTES), 0);
    assert_int_equal(kl_ss_accept(&p.res, p.hi, KL_SS_HELLO_BYTES), KL_EINVAL);
    assert_int_equal(kl_ss_decrypt(&p.res, frame + 3, 19, out, sizeof out, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "hi", 2);
    kl_ss_wipe(&p.ini);
    kl_ss_wipe(&p.res);
    checks += 6;
}

static void test_bad_messages_are_refused_and_fail_receiving(void **state) {
    (void)state;
    pair p;
    ss_pair(&p);
    assert_int_equal(kl_ss_accept(&p.res, p.hi, KL_SS_HELLO_BYTES), 0);
    uint8_t frame[128], out[128];
    const uint8_t plain[] = "a protomux frame";
    size_t n = 0, m = 0;
    assert_int_equal(kl_ss_encrypt(&p.ini, plain, sizeof plain, frame, sizeof frame, &n), 0);
    size_t len = n - KL_FRAME_HDR_BYTES;
    /* Every flipped bit fails authentication, and a failure is for good. */
    for (size_t bit = 0; bit < 8 * len; bit++) {
        kl_ss copy = p.res;
        uint8_t bad[128];
        memcpy(bad, frame + 3, len);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(kl_ss_decrypt(&copy, bad, len, out, sizeof out, &m), KL_EVERIFY);
        assert_int_equal(kl_ss_decrypt(&copy, frame + 3, len, out, sizeof out, &m), KL_EVERIFY);
        checks++;
    }
    /* Shorter than 17 bytes; a buffer too small changes nothing. */
    for (size_t short_len = 0; short_len < KL_SS_OVERHEAD; short_len++) {
        kl_ss copy = p.res;
        assert_int_equal(kl_ss_decrypt(&copy, frame + 3, short_len, out, sizeof out, &m),
                         KL_ECORRUPT);
        checks++;
    }
    assert_int_equal(kl_ss_decrypt(&p.res, frame + 3, len, out, sizeof plain - 1, &m),
                     KL_ETOOSMALL);
    assert_int_equal(m, sizeof plain);
    assert_int_equal(kl_ss_decrypt(&p.res, frame + 3, len, out, sizeof out, &m), 0);
    assert_memory_equal(out, plain, sizeof plain);
    /* A replay of the same frame is refused (the nonce moved on). */
    kl_ss copy = p.res;
    assert_int_equal(kl_ss_decrypt(&copy, frame + 3, len, out, sizeof out, &m), KL_EVERIFY);
    /* A frame with TAG_FINAL, made with the initiator's own send state. */
    unsigned long long clen = 0;
    copy = p.ini;
    crypto_secretstream_xchacha20poly1305_push(&copy.tx, frame, &clen, plain, sizeof plain, NULL, 0,
                                               crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    kl_err_clear();
    assert_int_equal(kl_ss_decrypt(&p.res, frame, (size_t)clen, out, sizeof out, &m), KL_ECORRUPT);
    assert_non_null(strstr(kl_last_error(), "tag"));
    /* Too big to send, and a buffer too small to send into. */
    assert_int_equal(kl_ss_encrypt(&p.ini, plain, KL_SS_PLAIN_MAX + 1, frame, sizeof frame, &n),
                     KL_ETOOBIG);
    assert_int_equal(kl_ss_encrypt(&p.ini, plain, sizeof plain, frame, 20, &n), KL_ETOOSMALL);
    assert_int_equal(n, KL_SS_FRAME_BYTES(sizeof plain));
    kl_ss_wipe(&p.ini);
    kl_ss_wipe(&p.res);
    checks += 5;
}

/* ---- refusals: frames ---- */

static void test_a_frame_above_the_maximum_is_refused_before_buffering(void **state) {
    (void)state;
    kl_frames fr;
    const uint8_t *f;
    size_t used, len;
    assert_int_equal(kl_frames_init(&fr, 0), KL_EINVAL);
    assert_int_equal(kl_frames_init(&fr, KL_FRAME_MAX_PAYLOAD + 1), KL_EINVAL);
    /* A length one above a 4 MiB maximum, a byte at a time. */
    assert_int_equal(kl_frames_init(&fr, KL_FRAME_WIRE_MAX), 0);
    uint8_t hdr[3 + 8] = {0};
    kl_frame_header(hdr, KL_FRAME_WIRE_MAX + 1);
    assert_int_equal(kl_frames_next(&fr, hdr, 1, &used, &f, &len), 0);
    assert_int_equal(kl_frames_next(&fr, hdr + 1, 1, &used, &f, &len), 0);
    assert_int_equal(kl_frames_pending(&fr), 2);
    kl_err_clear();
    assert_int_equal(kl_frames_next(&fr, hdr + 2, 9, &used, &f, &len), KL_ECORRUPT);
    assert_int_equal(used, 1);
    assert_non_null(strstr(kl_last_error(), "more than"));
    assert_null(fr.buf);
    assert_int_equal(kl_frames_pending(&fr), 0);
    /* Failed for good, even for a good frame. */
    uint8_t good[4] = {1, 0, 0, 'x'};
    assert_int_equal(kl_frames_next(&fr, good, 4, &used, &f, &len), KL_ECORRUPT);
    assert_int_equal(used, 0);
    kl_frames_free(&fr);
    /* The largest u24 against a small maximum, and exactly the maximum passes. */
    assert_int_equal(kl_frames_init(&fr, 10), 0);
    uint8_t max[3] = {0xff, 0xff, 0xff};
    assert_int_equal(kl_frames_next(&fr, max, 3, &used, &f, &len), KL_ECORRUPT);
    kl_frames_free(&fr);
    assert_int_equal(kl_frames_init(&fr, 10), 0);
    uint8_t ten[13] = {10, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(kl_frames_next(&fr, ten, sizeof ten, &used, &f, &len), 1);
    assert_int_equal(used, 13);
    assert_int_equal(len, 10);
    assert_ptr_equal(f, ten + 3); /* whole in one push: not copied */
    kl_frames_free(&fr);
    checks += 6;
}

static void test_frames_split_into_single_bytes_reassemble(void **state) {
    (void)state;
    /* Frames of 0, 1, 300 and 100 000 bytes back to back. */
    static const size_t sizes[] = {0, 1, 300, 100000, 0};
    size_t total = 0;
    for (size_t i = 0; i < 5; i++)
        total += KL_FRAME_HDR_BYTES + sizes[i];
    uint8_t *s = malloc(total);
    assert_non_null(s);
    size_t at = 0;
    for (size_t i = 0; i < 5; i++) {
        kl_frame_header(s + at, sizes[i]);
        at += KL_FRAME_HDR_BYTES;
        for (size_t j = 0; j < sizes[i]; j++)
            s[at++] = (uint8_t)(j * 7 + i);
    }
    kl_frames fr;
    assert_int_equal(kl_frames_init(&fr, KL_FRAME_WIRE_MAX), 0);
    size_t got = 0, accounted = 0;
    int after_big = 0;
    for (at = 0; at < total; at++) {
        const uint8_t *f;
        size_t used, len;
        int rc = kl_frames_next(&fr, s + at, 1, &used, &f, &len);
        assert_int_equal(used, 1);
        assert_int_equal(accounted + kl_frames_pending(&fr) + (rc == 1 ? 3 + len : 0), at + 1);
        if (after_big) {
            /* The 100 000-byte buffer was let go once the reader was between frames. */
            assert_null(fr.buf);
            after_big = 0;
            checks++;
        }
        if (rc == 0) {
            /* Memory grows with what arrived: under twice the bytes held, never past the frame. */
            assert_true(fr.cap <= KL_MAX(4096u, 2 * kl_frames_pending(&fr)));
            continue;
        }
        assert_int_equal(rc, 1);
        if (len == 100000) {
            assert_ptr_equal(f, fr.buf);
            assert_int_equal(fr.cap, 100000);
            after_big = 1;
        }
        assert_int_equal(len, sizes[got]);
        for (size_t j = 0; j < len; j++)
            assert_int_equal(f[j], (uint8_t)(j * 7 + got));
        accounted += KL_FRAME_HDR_BYTES + len;
        got++;
        checks++;
    }
    assert_int_equal(got, 5);
    assert_int_equal(accounted, total);
    assert_int_equal(kl_frames_pending(&fr), 0);
    kl_frames_free(&fr);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transcript_is_reproduced_byte_for_byte),
        cmocka_unit_test(test_live_transcript_is_reproduced_byte_for_byte),
        cmocka_unit_test(test_capability_and_stream_id_match_primitives),
        cmocka_unit_test(test_raw_streams_in_any_pieces_give_the_recorded_frames),
        cmocka_unit_test(test_responder_driven_by_the_raw_stream_reads_every_message),
        cmocka_unit_test(test_fresh_handshake_and_stream_round_trip),
        cmocka_unit_test(test_handshake_messages_of_the_wrong_size_are_refused),
        cmocka_unit_test(test_every_flipped_bit_of_every_handshake_message_is_refused),
        cmocka_unit_test(test_small_order_ephemeral_keys_are_refused),
        cmocka_unit_test(test_small_order_static_keys_are_refused),
        cmocka_unit_test(test_handshake_misuse_changes_nothing),
        cmocka_unit_test(test_bad_header_frames_are_refused),
        cmocka_unit_test(test_bad_messages_are_refused_and_fail_receiving),
        cmocka_unit_test(test_a_frame_above_the_maximum_is_refused_before_buffering),
        cmocka_unit_test(test_frames_split_into_single_bytes_reassemble),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_noise: %lu values checked against the vectors or refused as they must be\n",
           checks);
    return failed;
}
