/*
 * test_wire.c - the plaintext wire layer (replication/wire.c) against the
 * golden vectors of tests/data/hypercore/wire-messages.json, which the real
 * protomux 3.12.1 and hypercore 11.37.1 produced and decoded.
 *
 * What this proves: the type numbers are JS's; every message of `encodings`
 * (all ten types, request and data through engine/proof.h) decodes to the
 * fields JS decoded, and its fields encode to JS's bytes; the channel
 * handshake decodes and encodes as JS's, and its capability is the keyed
 * BLAKE2b of notes 8.6; every Protomux frame (open, channel messages, a
 * batch, close, reject, an open without id) decodes to JS's fields, item by
 * item, and is rebuilt byte for byte from those fields.
 *
 * Against bad input: every vector message cut at every length is refused,
 * except the shorter forms JS accepts (noData without flags, want/unwant
 * without flags, an extension with a shorter raw part), which decode to the
 * documented fields; every vector frame cut at every length fails to decode
 * all the way down (frame, payload, handshake), except a batch cut between
 * items, which is a shorter batch. Oversized counts and lengths, integers
 * above 2^53 - 1, and unknown flag bits in request and data, are refused
 * with a reason (elsewhere unknown flag bits are ignored, as JS does); a batch
 * item running past the end, a batch inside a batch and an open of channel
 * 0 are refused; a batch switching channels (to a channel and to the
 * control channel) yields each item on the right channel. Trailing bytes
 * are ignored where JS ignores them. Encoders report the size they need,
 * refuse what the decoders would refuse, and never exceed a frame.
 */
#include "testutil.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hc.h"
#include "engine/proof.h"
#include "engine/util.h"
#include "replication/wire.h"

#define BUF_MAX   4096u /* the longest vector message or frame, with room */
#define VALUE_MAX 4096u

/* Values compared with a vector or refused as they must be. */
static unsigned long checks;

static const char *const type_names[KL_MSG_TYPES] = {"sync",   "request",  "cancel", "data",
                                                     "noData", "want",     "unwant", "bitfield",
                                                     "range",  "extension"};

/* Big structs (a kl_proof is ~31 KiB) live here, not on cmocka's stack. */
static kl_wire_message msg_a, msg_b;
static uint8_t buf_a[BUF_MAX], buf_b[BUF_MAX];

static void expect_hex(const uint8_t *p, size_t n, const char *hex) {
    static char s[2 * BUF_MAX + 1];
    assert_true(n <= BUF_MAX);
    tu_hex(p, n, s);
    assert_string_equal(s, hex);
    checks++;
}

static int json_flag(const json_t *o, const char *key) {
    return json_is_true(tu_json_get(o, key));
}

static kl_msg_type type_of(const char *name) {
    for (size_t t = 0; t < KL_MSG_TYPES; t++)
        if (strcmp(type_names[t], name) == 0)
            return (kl_msg_type)t;
    fail_msg("no message type named '%s'", name);
    return KL_MSG_TYPES;
}

/* ---- messages from JSON (the fields JS encoded or decoded) ---- */

/* Bytes the JSON-built messages point into: one arena per message built. */
typedef struct tw_arena {
    uint8_t value[VALUE_MAX], sig[256], manifest[KL_MANIFEST_MAX], words[1024], name[256],
        rest[256];
} tw_arena;

static void nodes_from_json(const json_t *a, kl_proof_nodes *l) {
    assert_true(json_array_size(a) <= KL_PROOF_MAX_NODES);
    l->n = json_array_size(a);
    for (size_t i = 0; i < l->n; i++) {
        const json_t *j = json_array_get(a, i);
        l->node[i].index = tu_json_u64(j, "index");
        l->node[i].size = tu_json_u64(j, "size");
        assert_int_equal(tu_unhex(tu_json_str(j, "hash"), l->node[i].hash, KL_HASH_BYTES),
                         KL_HASH_BYTES);
    }
}

/* The default manifest named by the JSON (the only kind kappalog sends), checked to be one. */
static size_t manifest_from_json(const json_t *m, uint8_t out[KL_MANIFEST_MAX]) {
    assert_int_equal(tu_json_u64(m, "version"), 1);
    assert_string_equal(tu_json_str(m, "hash"), "blake2b");
    assert_int_equal(tu_json_u64(m, "quorum"), 1);
    assert_false(json_flag(m, "allowPatch"));
    const json_t *signers = tu_json_get(m, "signers");
    assert_int_equal(json_array_size(signers), 1);
    const json_t *s = json_array_get(signers, 0);
    assert_string_equal(tu_json_str(s, "signature"), "ed25519");
    uint8_t pk[KL_PK_BYTES], ns[KL_HASH_BYTES];
    assert_int_equal(tu_unhex(tu_json_str(s, "publicKey"), pk, sizeof pk), KL_PK_BYTES);
    assert_int_equal(tu_unhex(tu_json_str(s, "namespace"), ns, sizeof ns), KL_HASH_BYTES);
    size_t n = kl_hc_manifest_default(pk, out);
    kl_manifest dec;
    assert_int_equal(kl_hc_manifest_decode(out, n, &dec), 0);
    assert_memory_equal(dec.ns, ns, KL_HASH_BYTES); /* DEFAULT_NAMESPACE, as JS's */
    return n;
}

static void data_from_json(const json_t *j, kl_proof *p, tw_arena *a) {
    memset(p, 0, sizeof *p);
    p->request = tu_json_u64(j, "request");
    p->fork = tu_json_u64(j, "fork");
    const json_t *b = tu_json_get(j, "block"), *h = tu_json_get(j, "hash"),
                 *s = tu_json_get(j, "seek"), *u = tu_json_get(j, "upgrade"),
                 *m = tu_json_get(j, "manifest");
    if (!json_is_null(b)) {
        p->flags |= KL_PROOF_BLOCK;
        p->block.index = tu_json_u64(b, "index");
        p->block.value = a->value;
        p->block.value_len = tu_unhex(tu_json_str(b, "value"), a->value, sizeof a->value);
        nodes_from_json(tu_json_get(b, "nodes"), &p->block.nodes);
    }
    if (!json_is_null(h)) {
        p->flags |= KL_PROOF_HASH;
        p->hash.index = tu_json_u64(h, "index");
        nodes_from_json(tu_json_get(h, "nodes"), &p->hash.nodes);
    }
    if (!json_is_null(s)) {
        p->flags |= KL_PROOF_SEEK;
        p->seek.bytes = tu_json_u64(s, "bytes");
        nodes_from_json(tu_json_get(s, "nodes"), &p->seek.nodes);
    }
    if (!json_is_null(u)) {
        p->flags |= KL_PROOF_UPGRADE;
        p->upgrade.start = tu_json_u64(u, "start");
        p->upgrade.length = tu_json_u64(u, "length");
        nodes_from_json(tu_json_get(u, "nodes"), &p->upgrade.nodes);
        nodes_from_json(tu_json_get(u, "additionalNodes"), &p->upgrade.additional);
        const json_t *sig = tu_json_get(u, "signature");
        if (!json_is_null(sig)) {
            p->upgrade.signature = a->sig;
            p->upgrade.signature_len = tu_unhex(json_string_value(sig), a->sig, sizeof a->sig);
        }
    }
    if (!json_is_null(m)) {
        p->flags |= KL_PROOF_MANIFEST;
        p->manifest = a->manifest;
        p->manifest_len = manifest_from_json(m, a->manifest);
    }
}

static void from_json(kl_msg_type t, const json_t *j, kl_wire_message *m, tw_arena *a) {
    memset(m, 0, sizeof *m);
    m->type = t;
    switch (t) {
    case KL_MSG_SYNC:
        m->u.sync.flags = (json_flag(j, "canUpgrade") ? KL_WIRE_SYNC_CAN_UPGRADE : 0) |
                          (json_flag(j, "uploading") ? KL_WIRE_SYNC_UPLOADING : 0) |
                          (json_flag(j, "downloading") ? KL_WIRE_SYNC_DOWNLOADING : 0) |
                          (json_flag(j, "hasManifest") ? KL_WIRE_SYNC_HAS_MANIFEST : 0) |
                          (json_flag(j, "allowPush") ? KL_WIRE_SYNC_ALLOW_PUSH : 0);
        m->u.sync.fork = tu_json_u64(j, "fork");
        m->u.sync.length = tu_json_u64(j, "length");
        m->u.sync.remote_length = tu_json_u64(j, "remoteLength");
        return;
    case KL_MSG_REQUEST:
        tu_request_from_json(j, &m->u.request);
        return;
    case KL_MSG_CANCEL:
        m->u.cancel.request = tu_json_u64(j, "request");
        return;
    case KL_MSG_DATA:
        data_from_json(j, &m->u.data, a);
        return;
    case KL_MSG_NO_DATA:
        m->u.no_data.request = tu_json_u64(j, "request");
        m->u.no_data.reason = tu_json_u64(j, "reason");
        return;
    case KL_MSG_WANT:
    case KL_MSG_UNWANT:
        m->u.want.start = tu_json_u64(j, "start");
        m->u.want.length = tu_json_u64(j, "length");
        m->u.want.flags = json_flag(j, "any") ? KL_WIRE_WANT_ANY : 0;
        return;
    case KL_MSG_BITFIELD: {
        const json_t *w = tu_json_get(j, "bitfield");
        assert_true(json_array_size(w) * 4 <= sizeof a->words);
        m->u.bitfield.start = tu_json_u64(j, "start");
        m->u.bitfield.nwords = json_array_size(w);
        m->u.bitfield.words = a->words;
        for (size_t i = 0; i < json_array_size(w); i++)
            kl_store32(a->words + 4 * i, (uint32_t)json_integer_value(json_array_get(w, i)));
        return;
    }
    case KL_MSG_RANGE:
        m->u.range.flags = json_flag(j, "drop") ? KL_WIRE_RANGE_DROP : 0;
        m->u.range.start = tu_json_u64(j, "start");
        m->u.range.length = tu_json_u64(j, "length");
        return;
    case KL_MSG_EXTENSION: {
        const char *name = tu_json_str(j, "name");
        assert_true(strlen(name) <= sizeof a->name);
        memcpy(a->name, name, strlen(name));
        m->u.extension.name = a->name;
        m->u.extension.name_len = strlen(name);
        m->u.extension.message = a->rest;
        m->u.extension.message_len = tu_unhex(tu_json_str(j, "message"), a->rest, sizeof a->rest);
        return;
    }
    case KL_MSG_TYPES:
        break;
    }
    fail_msg("unknown type %d", (int)t);
}

/* ---- comparing two messages field by field ---- */

static void expect_same_nodes(const kl_proof_nodes *a, const kl_proof_nodes *b) {
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->node[i].index, b->node[i].index);
        assert_int_equal(a->node[i].size, b->node[i].size);
        assert_memory_equal(a->node[i].hash, b->node[i].hash, KL_HASH_BYTES);
    }
}

static void expect_same_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    assert_int_equal(an, bn);
    if (an)
        assert_memory_equal(a, b, an);
}

static void expect_same_data(const kl_proof *a, const kl_proof *b) {
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->request, b->request);
    assert_int_equal(a->fork, b->fork);
    assert_int_equal(a->block.index, b->block.index);
    expect_same_bytes(a->block.value, a->block.value_len, b->block.value, b->block.value_len);
    expect_same_nodes(&a->block.nodes, &b->block.nodes);
    assert_int_equal(a->hash.index, b->hash.index);
    expect_same_nodes(&a->hash.nodes, &b->hash.nodes);
    assert_int_equal(a->seek.bytes, b->seek.bytes);
    expect_same_nodes(&a->seek.nodes, &b->seek.nodes);
    assert_int_equal(a->upgrade.start, b->upgrade.start);
    assert_int_equal(a->upgrade.length, b->upgrade.length);
    expect_same_nodes(&a->upgrade.nodes, &b->upgrade.nodes);
    expect_same_nodes(&a->upgrade.additional, &b->upgrade.additional);
    expect_same_bytes(a->upgrade.signature, a->upgrade.signature_len, b->upgrade.signature,
                      b->upgrade.signature_len);
    expect_same_bytes(a->manifest, a->manifest_len, b->manifest, b->manifest_len);
}

static void expect_same(const kl_wire_message *a, const kl_wire_message *b) {
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case KL_MSG_SYNC:
        assert_int_equal(a->u.sync.flags, b->u.sync.flags);
        assert_int_equal(a->u.sync.fork, b->u.sync.fork);
        assert_int_equal(a->u.sync.length, b->u.sync.length);
        assert_int_equal(a->u.sync.remote_length, b->u.sync.remote_length);
        break;
    case KL_MSG_REQUEST: {
        const kl_proof_request *x = &a->u.request, *y = &b->u.request;
        assert_int_equal(x->flags, y->flags);
        assert_int_equal(x->id, y->id);
        assert_int_equal(x->fork, y->fork);
        assert_int_equal(x->block.index, y->block.index);
        assert_int_equal(x->block.nodes, y->block.nodes);
        assert_int_equal(x->hash.index, y->hash.index);
        assert_int_equal(x->hash.nodes, y->hash.nodes);
        assert_int_equal(x->seek.bytes, y->seek.bytes);
        assert_int_equal(x->seek.padding, y->seek.padding);
        assert_int_equal(x->upgrade.start, y->upgrade.start);
        assert_int_equal(x->upgrade.length, y->upgrade.length);
        assert_int_equal(x->priority, y->priority);
        break;
    }
    case KL_MSG_CANCEL:
        assert_int_equal(a->u.cancel.request, b->u.cancel.request);
        break;
    case KL_MSG_DATA:
        expect_same_data(&a->u.data, &b->u.data);
        break;
    case KL_MSG_NO_DATA:
        assert_int_equal(a->u.no_data.request, b->u.no_data.request);
        assert_int_equal(a->u.no_data.reason, b->u.no_data.reason);
        break;
    case KL_MSG_WANT:
    case KL_MSG_UNWANT:
        assert_int_equal(a->u.want.start, b->u.want.start);
        assert_int_equal(a->u.want.length, b->u.want.length);
        assert_int_equal(a->u.want.flags, b->u.want.flags);
        break;
    case KL_MSG_BITFIELD:
        assert_int_equal(a->u.bitfield.start, b->u.bitfield.start);
        assert_int_equal(a->u.bitfield.nwords, b->u.bitfield.nwords);
        for (size_t i = 0; i < a->u.bitfield.nwords; i++)
            assert_int_equal(kl_wire_bitfield_word(&a->u.bitfield, i),
                             kl_wire_bitfield_word(&b->u.bitfield, i));
        break;
    case KL_MSG_RANGE:
        assert_int_equal(a->u.range.flags, b->u.range.flags);
        assert_int_equal(a->u.range.start, b->u.range.start);
        assert_int_equal(a->u.range.length, b->u.range.length);
        break;
    case KL_MSG_EXTENSION:
        expect_same_bytes(a->u.extension.name, a->u.extension.name_len, b->u.extension.name,
                          b->u.extension.name_len);
        expect_same_bytes(a->u.extension.message, a->u.extension.message_len,
                          b->u.extension.message, b->u.extension.message_len);
        break;
    case KL_MSG_TYPES:
        fail_msg("not a message");
    }
    checks++;
}

/* Decode bytes as type t into out; fails the test if they do not decode. */
static void decode_ok(kl_msg_type t, const uint8_t *p, size_t n, kl_wire_message *out) {
    kl_err_clear();
    int rc = kl_wire_message_decode(t, p, n, VALUE_MAX, out);
    if (rc)
        fail_msg("%s: %d %s", type_names[t], rc, kl_err_thread());
}

/* Decoding must fail with KL_ECORRUPT and a reason. */
static void expect_corrupt(int rc) {
    assert_int_equal(rc, KL_ECORRUPT);
    assert_true(strlen(kl_err_thread()) > 0);
    checks++;
}

/* ---- vectors: messages ---- */

static void test_type_numbers_are_hypercores(void **state) {
    (void)state;
    json_t *v = tu_vector("wire-messages.json");
    const json_t *types = tu_json_get(v, "message_types");
    assert_int_equal(json_array_size(types), KL_MSG_TYPES);
    for (size_t i = 0; i < json_array_size(types); i++) {
        const json_t *t = json_array_get(types, i);
        assert_int_equal(type_of(tu_json_str(t, "name")), tu_json_u64(t, "type"));
        checks++;
    }
    json_decref(v);
}

static void test_vector_messages_decode_and_encode_as_hypercore(void **state) {
    (void)state;
    static tw_arena arena;
    json_t *v = tu_vector("wire-messages.json");
    const json_t *enc = tu_json_get(v, "encodings");
    size_t seen = 0, types = 0;
    const char *name;
    const json_t *list;
    json_object_foreach((json_t *)enc, name, list) {
        kl_msg_type t = type_of(name);
        types++;
        for (size_t i = 0; i < json_array_size(list); i++) {
            const json_t *e = json_array_get(list, i);
            size_t n = tu_unhex(tu_json_str(e, "hex"), buf_a, BUF_MAX);
            /* bytes -> the fields JS decoded */
            decode_ok(t, buf_a, n, &msg_a);
            from_json(t, tu_json_get(e, "decoded"), &msg_b, &arena);
            expect_same(&msg_a, &msg_b);
            /* the fields JS encoded -> JS's bytes */
            from_json(t, tu_json_get(e, "message"), &msg_b, &arena);
            size_t m = 0;
            assert_int_equal(kl_wire_message_encode(&msg_b, buf_b, BUF_MAX, &m), 0);
            expect_hex(buf_b, m, tu_json_str(e, "hex"));
            /* and the size is known before writing */
            assert_int_equal(kl_wire_message_encode(&msg_b, NULL, 0, &n), m ? KL_ETOOSMALL : 0);
            assert_int_equal(n, m);
            seen++;
        }
    }
    assert_int_equal(types, KL_MSG_TYPES);
    assert_true(seen >= 20);
    json_decref(v);
}

/* ---- vectors: the channel handshake ---- */

static void test_vector_channel_handshake(void **state) {
    (void)state;
    json_t *v = tu_vector("wire-messages.json");
    const json_t *hs = tu_json_get(v, "channel_handshake");
    const json_t *m = tu_json_get(hs, "message");
    size_t n = tu_unhex(tu_json_str(hs, "hex"), buf_a, BUF_MAX);
    kl_wire_handshake h;
    assert_int_equal(kl_wire_handshake_decode(buf_a, n, &h), 0);
    assert_int_equal(h.flags, json_flag(m, "seeks") ? KL_WIRE_HS_SEEKS : 0);
    expect_hex(h.capability, KL_HASH_BYTES, tu_json_str(m, "capability"));
    size_t k = 0;
    assert_int_equal(kl_wire_handshake_encode(&h, buf_b, BUF_MAX, &k), 0);
    expect_hex(buf_b, k, tu_json_str(hs, "hex"));

    /* capability = Hk(handshake hash; REPLICATE_INITIATOR || key), notes 8.6 */
    uint8_t hh[64], key[KL_HASH_BYTES], ns[KL_HASH_BYTES], in[2 * KL_HASH_BYTES], cap[32];
    assert_int_equal(tu_unhex(tu_json_str(hs, "handshake_hash"), hh, sizeof hh), sizeof hh);
    assert_int_equal(tu_unhex(tu_json_str(hs, "core_key"), key, sizeof key), sizeof key);
    uint8_t base[KL_HASH_BYTES + 1];
    crypto_generichash(base, KL_HASH_BYTES, (const uint8_t *)"hypercore", 9, NULL, 0);
    base[KL_HASH_BYTES] = 1; /* namespace("hypercore", 6)[1] */
    crypto_generichash(ns, sizeof ns, base, sizeof base, NULL, 0);
    memcpy(in, ns, KL_HASH_BYTES);
    memcpy(in + KL_HASH_BYTES, key, KL_HASH_BYTES);
    crypto_generichash(cap, sizeof cap, in, sizeof in, hh, sizeof hh);
    assert_memory_equal(cap, h.capability, sizeof cap);
    checks++;

    /* every cut is refused; trailing bytes are ignored (JS reads no further) */
    for (size_t i = 0; i < n; i++)
        expect_corrupt(kl_wire_handshake_decode(buf_a, i, &h));
    buf_a[n] = 0xaa;
    assert_int_equal(kl_wire_handshake_decode(buf_a, n + 1, &h), 0);
    /* an unknown flag bit is ignored, as JS does (a newer peer may set one), and cannot be sent */
    buf_a[0] = 0x03;
    assert_int_equal(kl_wire_handshake_decode(buf_a, n, &h), 0);
    assert_int_equal(h.flags, KL_WIRE_HS_SEEKS);
    h.flags = 2;
    assert_int_equal(kl_wire_handshake_encode(&h, buf_b, BUF_MAX, &k), KL_EINVAL);
    json_decref(v);
}

/* ---- vectors: Protomux frames ---- */

/* Compare one decoded channel message with JS's {channel, type, name, message}. */
static void expect_msg_json(const kl_mux_msg *m, const json_t *j) {
    static tw_arena arena;
    assert_int_equal(m->channel, tu_json_u64(j, "channel"));
    assert_int_equal(m->type, tu_json_u64(j, "type"));
    kl_msg_type t = type_of(tu_json_str(j, "name"));
    assert_int_equal(t, m->type);
    decode_ok(t, m->payload, m->len, &msg_a);
    from_json(t, tu_json_get(j, "message"), &msg_b, &arena);
    expect_same(&msg_a, &msg_b);
}

/* Encode JS's message fields as a payload into out; returns its length. */
static size_t payload_from_json(const json_t *j, uint8_t *out, size_t cap) {
    static tw_arena arena;
    from_json(type_of(tu_json_str(j, "name")), tu_json_get(j, "message"), &msg_b, &arena);
    size_t n = 0;
    assert_int_equal(kl_wire_message_encode(&msg_b, out, cap, &n), 0);
    return n;
}

static void expect_open_json(const kl_mux_open *o, const json_t *j) {
    assert_int_equal(o->local_id, tu_json_u64(j, "local_id"));
    const char *proto = tu_json_str(j, "protocol");
    expect_same_bytes(o->protocol, o->protocol_len, (const uint8_t *)proto, strlen(proto));
    const json_t *id = tu_json_get(j, "id");
    if (json_is_null(id))
        assert_null(o->id);
    else
        expect_hex(o->id, o->id_len, json_string_value(id));
    const json_t *hs = json_object_get(j, "handshake");
    if (hs == NULL) {
        assert_int_equal(o->handshake_len, 0);
        return;
    }
    kl_wire_handshake h;
    assert_int_equal(kl_wire_handshake_decode(o->handshake, o->handshake_len, &h), 0);
    assert_int_equal(h.flags, json_flag(hs, "seeks") ? KL_WIRE_HS_SEEKS : 0);
    expect_hex(h.capability, KL_HASH_BYTES, tu_json_str(hs, "capability"));
}

/* The open frame rebuilt from JS's fields. */
static size_t open_from_json(const json_t *j, uint8_t *out, size_t cap) {
    uint8_t id[KL_MUX_NAME_MAX], hs[64];
    kl_mux_open o = {.local_id = tu_json_u64(j, "local_id")};
    o.protocol = (const uint8_t *)tu_json_str(j, "protocol");
    o.protocol_len = strlen(tu_json_str(j, "protocol"));
    const json_t *jid = tu_json_get(j, "id");
    if (!json_is_null(jid)) {
        o.id = id;
        o.id_len = tu_unhex(json_string_value(jid), id, sizeof id);
    }
    const json_t *jhs = json_object_get(j, "handshake");
    if (jhs != NULL) {
        kl_wire_handshake h = {.flags = json_flag(jhs, "seeks") ? KL_WIRE_HS_SEEKS : 0};
        tu_unhex(tu_json_str(jhs, "capability"), h.capability, KL_HASH_BYTES);
        assert_int_equal(kl_wire_handshake_encode(&h, hs, sizeof hs, &o.handshake_len), 0);
        o.handshake = hs;
    }
    size_t n = 0;
    assert_int_equal(kl_mux_open_encode(&o, out, cap, &n), 0);
    return n;
}

/* A batch frame rebuilt from JS's items (all channel messages). */
static size_t batch_from_json(const json_t *items, uint8_t *out, size_t cap) {
    static uint8_t payloads[8][256];
    kl_mux_msg m[8];
    size_t count = json_array_size(items);
    assert_true(count <= 8);
    for (size_t i = 0; i < count; i++) {
        const json_t *it = json_array_get(items, i);
        m[i].channel = tu_json_u64(it, "channel");
        m[i].type = tu_json_u64(it, "type");
        m[i].payload = payloads[i];
        m[i].len = payload_from_json(it, payloads[i], sizeof payloads[i]);
    }
    size_t n = 0;
    assert_int_equal(kl_mux_batch_encode(m, count, out, cap, &n), 0);
    return n;
}

static void check_frame(const json_t *fr) {
    const json_t *d = tu_json_get(fr, "decoded");
    const char *hex = tu_json_str(fr, "hex");
    size_t n = tu_unhex(hex, buf_a, BUF_MAX), k = 0;
    kl_mux_frame f;
    kl_err_clear();
    if (kl_mux_decode(buf_a, n, &f) != 0)
        fail_msg("%s: %s", tu_json_str(fr, "what"), kl_err_thread());
    const json_t *control = json_object_get(d, "control");
    if (control == NULL) {
        assert_int_equal(f.kind, KL_MUX_MESSAGE);
        expect_msg_json(&f.msg, d);
        kl_mux_msg m = {.channel = tu_json_u64(d, "channel"), .type = tu_json_u64(d, "type")};
        static uint8_t payload[256];
        m.payload = payload;
        m.len = payload_from_json(d, payload, sizeof payload);
        assert_int_equal(kl_mux_message_encode(&m, buf_b, BUF_MAX, &k), 0);
    } else if (strcmp(json_string_value(control), "open") == 0) {
        assert_int_equal(f.kind, KL_MUX_OPEN);
        expect_open_json(&f.open, d);
        k = open_from_json(d, buf_b, BUF_MAX);
    } else if (strcmp(json_string_value(control), "close") == 0) {
        assert_int_equal(f.kind, KL_MUX_CLOSE);
        assert_int_equal(f.local_id, tu_json_u64(d, "local_id"));
        assert_int_equal(kl_mux_close_encode(tu_json_u64(d, "local_id"), buf_b, BUF_MAX, &k), 0);
    } else if (strcmp(json_string_value(control), "reject") == 0) {
        assert_int_equal(f.kind, KL_MUX_REJECT);
        assert_int_equal(f.remote_id, tu_json_u64(d, "remote_id"));
        assert_int_equal(kl_mux_reject_encode(tu_json_u64(d, "remote_id"), buf_b, BUF_MAX, &k), 0);
    } else {
        assert_string_equal(json_string_value(control), "batch");
        assert_int_equal(f.kind, KL_MUX_BATCH);
        const json_t *items = tu_json_get(d, "items");
        kl_mux_frame item;
        size_t i = 0;
        while (kl_mux_batch_next(&f.batch, &item) == 1) {
            assert_true(i < json_array_size(items));
            assert_int_equal(item.kind, KL_MUX_MESSAGE);
            expect_msg_json(&item.msg, json_array_get(items, i++));
        }
        assert_int_equal(i, json_array_size(items));
        k = batch_from_json(items, buf_b, BUF_MAX);
    }
    expect_hex(buf_b, k, hex);
}

static void test_vector_protomux_frames(void **state) {
    (void)state;
    json_t *v = tu_vector("wire-messages.json");
    const json_t *frames = tu_json_get(v, "protomux_frames");
    assert_true(json_array_size(frames) >= 7);
    for (size_t i = 0; i < json_array_size(frames); i++)
        check_frame(json_array_get(frames, i));
    json_decref(v);
}

/* ---- truncation ---- */

/* Bytes of the uint at p (1, 3, 5 or 9). */
static size_t uint_len(const uint8_t *p) {
    return p[0] == 0xfd ? 3 : p[0] == 0xfe ? 5 : p[0] == 0xff ? 9 : 1;
}

/*
 * The shortest prefix of a vector message that still decodes, when JS
 * accepts a shorter form, else n (only the whole message decodes).
 */
static size_t shortest_form(kl_msg_type t, const uint8_t *p, size_t n) {
    switch (t) {
    case KL_MSG_NO_DATA: /* request, flags missing */
        return uint_len(p);
    case KL_MSG_WANT:
    case KL_MSG_UNWANT: /* start, length, flags missing */
        return uint_len(p) + uint_len(p + uint_len(p));
    case KL_MSG_EXTENSION: /* the name; the raw part may be any length */
        return uint_len(p) + p[0];
    default:
        return n;
    }
}

static void test_every_truncated_message_is_refused(void **state) {
    (void)state;
    json_t *v = tu_vector("wire-messages.json");
    const json_t *enc = tu_json_get(v, "encodings");
    const char *name;
    const json_t *list;
    json_object_foreach((json_t *)enc, name, list) {
        kl_msg_type t = type_of(name);
        for (size_t i = 0; i < json_array_size(list); i++) {
            size_t n = tu_unhex(tu_json_str(json_array_get(list, i), "hex"), buf_a, BUF_MAX);
            decode_ok(t, buf_a, n, &msg_b); /* the whole message */
            size_t shortest = shortest_form(t, buf_a, n);
            for (size_t cut = 0; cut < n; cut++) {
                /* an exact-size copy, so a read past the end is visible to ASan */
                uint8_t *p = malloc(cut ? cut : 1);
                assert_non_null(p);
                memcpy(p, buf_a, cut);
                kl_err_clear();
                int rc = kl_wire_message_decode(t, cut ? p : NULL, cut, VALUE_MAX, &msg_a);
                if (cut < shortest) {
                    expect_corrupt(rc);
                } else if (t == KL_MSG_EXTENSION) {
                    assert_int_equal(rc, 0); /* the same name, a shorter raw part */
                    expect_same_bytes(msg_a.u.extension.name, msg_a.u.extension.name_len,
                                      msg_b.u.extension.name, msg_b.u.extension.name_len);
                    assert_int_equal(msg_a.u.extension.message_len, cut - shortest);
                    checks++;
                } else if (cut == shortest) {
                    /* the form without flags: no reason, not `any`, all else the same */
                    assert_int_equal(rc, 0);
                    if (t == KL_MSG_NO_DATA) {
                        assert_int_equal(msg_a.u.no_data.request, msg_b.u.no_data.request);
                        assert_int_equal(msg_a.u.no_data.reason, 0);
                    } else {
                        assert_int_equal(msg_a.u.want.start, msg_b.u.want.start);
                        assert_int_equal(msg_a.u.want.length, msg_b.u.want.length);
                        assert_int_equal(msg_a.u.want.flags, 0);
                    }
                    checks++;
                } else {
                    expect_corrupt(rc); /* flags say a reason follows, and it does not */
                }
                free(p);
            }
        }
    }
    json_decref(v);
}

/*
 * Decode a frame all the way down: its payloads as hypercore messages, the
 * hypercore open's handshake. The number of messages, or -1 if anything in
 * it fails to decode.
 */
static int deep_decode(const uint8_t *p, size_t n) {
    static kl_wire_message m;
    kl_mux_frame f, item;
    if (kl_mux_decode(p, n, &f) != 0)
        return -1;
    if (f.kind == KL_MUX_MESSAGE)
        return kl_wire_message_decode(f.msg.type, f.msg.payload, f.msg.len, VALUE_MAX, &m) ? -1 : 1;
    if (f.kind == KL_MUX_OPEN && f.open.protocol_len == KL_WIRE_PROTOCOL_LEN &&
        memcmp(f.open.protocol, KL_WIRE_PROTOCOL, KL_WIRE_PROTOCOL_LEN) == 0) {
        kl_wire_handshake h;
        return kl_wire_handshake_decode(f.open.handshake, f.open.handshake_len, &h) ? -1 : 1;
    }
    if (f.kind != KL_MUX_BATCH)
        return 1;
    int count = 0, rc;
    while ((rc = kl_mux_batch_next(&f.batch, &item)) == 1) {
        assert_int_equal(item.kind, KL_MUX_MESSAGE);
        if (kl_wire_message_decode(item.msg.type, item.msg.payload, item.msg.len, VALUE_MAX, &m))
            return -1;
        count++;
    }
    assert_int_equal(rc, 0); /* kl_mux_decode checked the whole batch */
    return count;
}

static void test_every_truncated_frame_is_refused(void **state) {
    (void)state;
    json_t *v = tu_vector("wire-messages.json");
    const json_t *frames = tu_json_get(v, "protomux_frames");
    for (size_t i = 0; i < json_array_size(frames); i++) {
        size_t n = tu_unhex(tu_json_str(json_array_get(frames, i), "hex"), buf_a, BUF_MAX);
        int whole = deep_decode(buf_a, n);
        assert_true(whole >= 1);
        /* where a batch's items end: a cut there is a shorter batch */
        size_t ends[16], nends = 0;
        kl_mux_frame f, item;
        assert_int_equal(kl_mux_decode(buf_a, n, &f), 0);
        if (f.kind == KL_MUX_BATCH) {
            while (kl_mux_batch_next(&f.batch, &item) == 1) {
                assert_true(nends < 16);
                ends[nends++] = (size_t)(f.batch.p - buf_a) + f.batch.at;
            }
        }
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *p = malloc(cut ? cut : 1);
            assert_non_null(p);
            memcpy(p, buf_a, cut);
            int got = deep_decode(cut ? p : NULL, cut);
            int want = -1;
            if (cut == 0)
                want = 1; /* the empty frame: a keepalive */
            else if (f.kind == KL_MUX_BATCH && cut == 3)
                want = 0; /* `00 00 ch`: a batch with no items yet */
            for (size_t e = 0; e < nends; e++)
                if (ends[e] == cut)
                    want = (int)e + 1;
            if (got != want)
                fail_msg("frame %zu cut at %zu: %d, expected %d", i, cut, got, want);
            checks++;
            free(p);
        }
    }
    json_decref(v);
}

/* ---- the reader's limits ---- */

static size_t unhex_into(const char *hex, uint8_t *out) {
    return tu_unhex(hex, out, BUF_MAX);
}

static void test_uints_refuse_cuts_and_values_past_2_53(void **state) {
    (void)state;
    kl_ce_reader r;
    /* long forms of small values are accepted (as JS) */
    static const struct {
        const char *hex;
        uint64_t v;
    } ok[] = {
        {"fc", 252},           {"fdfd00", 253},           {"fd0500", 5},
        {"fe00000100", 65536}, {"ff0000000000000000", 0}, {"ffffffffffffff1f00", (1ull << 53) - 1}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n = unhex_into(ok[i].hex, buf_a);
        kl_ce_reader_init(&r, buf_a, n);
        assert_int_equal(kl_ce_read_uint(&r, "x"), ok[i].v);
        assert_int_equal(kl_ce_left(&r), 0);
        assert_int_equal(kl_ce_read_done(&r, "t"), 0);
        /* every cut of it fails, does not move, and stays failed */
        for (size_t cut = 0; cut < n; cut++) {
            kl_ce_reader_init(&r, cut ? buf_a : NULL, cut);
            assert_int_equal(kl_ce_read_uint(&r, "x"), 0);
            assert_int_equal(r.d.at, 0);
            assert_int_equal(kl_ce_left(&r), 0);
            assert_null(kl_ce_read_fixed(&r, 0, "y"));
            kl_err_clear();
            expect_corrupt(kl_ce_read_done(&r, "t"));
            assert_non_null(strstr(kl_err_thread(), "cut short"));
        }
    }
    /* 2^53 and above: JS numbers cannot hold them */
    const char *big[] = {"ff0000000000002000", "ffffffffffffffffff"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = unhex_into(big[i], buf_a);
        kl_ce_reader_init(&r, buf_a, n);
        assert_int_equal(kl_ce_read_uint(&r, "fork"), 0);
        kl_err_clear();
        expect_corrupt(kl_ce_read_done(&r, "t"));
        assert_non_null(strstr(kl_err_thread(), "above 2^53 - 1"));
        expect_corrupt(kl_wire_sync_decode(buf_a, n, &msg_a.u.sync));
    }
    /* and the encoders never send one */
    kl_wire_sync s = {.fork = 1ull << 53};
    size_t n = 0;
    assert_int_equal(kl_wire_sync_encode(&s, buf_a, BUF_MAX, &n), KL_EINVAL);
    s.fork = (1ull << 53) - 1;
    assert_int_equal(kl_wire_sync_encode(&s, buf_a, BUF_MAX, &n), 0);
    assert_int_equal(kl_wire_sync_decode(buf_a, n, &msg_a.u.sync), 0);
    assert_int_equal(msg_a.u.sync.fork, s.fork);
}

static void test_buffers_and_counts_are_capped(void **state) {
    (void)state;
    kl_ce_reader r;
    size_t n, k;
    /* buffer: exactly max is fine, one more is refused, past the end is refused */
    n = unhex_into("03616263", buf_a);
    kl_ce_reader_init(&r, buf_a, n);
    const uint8_t *q = kl_ce_read_buffer(&r, 3, &k, "b");
    assert_non_null(q);
    assert_int_equal(k, 3);
    assert_memory_equal(q, "abc", 3);
    kl_ce_reader_init(&r, buf_a, n);
    assert_null(kl_ce_read_buffer(&r, 2, &k, "b"));
    assert_int_equal(r.d.at, 0);
    expect_corrupt(kl_ce_read_done(&r, "t"));
    kl_ce_reader_init(&r, buf_a, n - 1);
    assert_null(kl_ce_read_buffer(&r, 16, &k, "b"));
    expect_corrupt(kl_ce_read_done(&r, "t"));
    /* empty buffer: present and empty; empty optionalBuffer: absent, not an error */
    n = unhex_into("0000", buf_a);
    kl_ce_reader_init(&r, buf_a, n);
    assert_non_null(kl_ce_read_buffer(&r, 16, &k, "b"));
    assert_int_equal(k, 0);
    assert_null(kl_ce_read_optional(&r, 16, &k, "o"));
    assert_int_equal(kl_ce_read_done(&r, "t"), 0);
    /* array counts: compact-encoding's 0x100000, the caller's cap, the bytes left */
    n = unhex_into("fe01001000", buf_a); /* 0x100001 */
    kl_ce_reader_init(&r, buf_a, n);
    assert_int_equal(kl_ce_read_count(&r, SIZE_MAX, 1, "a"), 0);
    expect_corrupt(kl_ce_read_done(&r, "t"));
    n = unhex_into("050102030405", buf_a);
    kl_ce_reader_init(&r, buf_a, n);
    assert_int_equal(kl_ce_read_count(&r, 5, 1, "a"), 5);
    kl_ce_reader_init(&r, buf_a, n);
    assert_int_equal(kl_ce_read_count(&r, 4, 1, "a"), 0);
    expect_corrupt(kl_ce_read_done(&r, "t"));
    kl_ce_reader_init(&r, buf_a, n);
    assert_int_equal(kl_ce_read_count(&r, 100, 2, "a"), 0); /* 5 items of 2 bytes in 5 */
    expect_corrupt(kl_ce_read_done(&r, "t"));
    /* uint32array: count of words, then the words */
    n = unhex_into("0201000000ffffffff", buf_a);
    kl_ce_reader_init(&r, buf_a, n);
    q = kl_ce_read_u32array(&r, 2, &k, "w");
    assert_non_null(q);
    assert_int_equal(k, 2);
    assert_int_equal(kl_load32(q + 4), 0xffffffffu);
    kl_ce_reader_init(&r, buf_a, n - 1);
    assert_null(kl_ce_read_u32array(&r, 2, &k, "w"));
    expect_corrupt(kl_ce_read_done(&r, "t"));
    kl_ce_reader_init(&r, buf_a, n);
    assert_null(kl_ce_read_u32array(&r, 1, &k, "w"));
    expect_corrupt(kl_ce_read_done(&r, "t"));
}

static void test_oversized_messages_are_refused(void **state) {
    (void)state;
    /* a bitfield of KL_WIRE_BITFIELD_MAX_WORDS words decodes; one more word is refused */
    size_t words = KL_WIRE_BITFIELD_MAX_WORDS + 1, n = 1 + 5 + 4 * words;
    uint8_t *p = calloc(1, n);
    assert_non_null(p);
    p[0] = 0;
    kl_ce_uint(p + 1, KL_WIRE_BITFIELD_MAX_WORDS);
    kl_wire_bitfield b;
    assert_int_equal(kl_wire_bitfield_decode(p, n - 4, &b), 0);
    assert_int_equal(b.nwords, KL_WIRE_BITFIELD_MAX_WORDS);
    kl_ce_uint(p + 1, words);
    expect_corrupt(kl_wire_bitfield_decode(p, n, &b));
    assert_int_equal(b.nwords, 0);
    b.words = p;
    b.nwords = words;
    size_t k = 0;
    assert_int_equal(kl_wire_bitfield_encode(&b, NULL, 0, &k), KL_EINVAL);
    /* a count larger than the bytes that follow */
    size_t m = unhex_into("00fe00000100", buf_a);
    expect_corrupt(kl_wire_bitfield_decode(buf_a, m, &b));
    free(p);

    /* extension names and open protocols and ids longer than their caps */
    n = 3 + KL_WIRE_NAME_MAX + 1;
    p = calloc(1, n + 8);
    assert_non_null(p);
    kl_ce_uint(p, KL_WIRE_NAME_MAX + 1);
    kl_wire_extension e;
    expect_corrupt(kl_wire_extension_decode(p, n, &e));
    kl_ce_uint(p, KL_WIRE_NAME_MAX);
    assert_int_equal(kl_wire_extension_decode(p, n, &e), 0);
    assert_int_equal(e.name_len, KL_WIRE_NAME_MAX);
    assert_int_equal(e.message_len, 1);
    e.name_len = KL_WIRE_NAME_MAX + 1;
    assert_int_equal(kl_wire_extension_encode(&e, NULL, 0, &k), KL_EINVAL);
    free(p);

    n = 3 + 3 + KL_MUX_NAME_MAX + 1 + 1;
    p = calloc(1, n);
    assert_non_null(p);
    p[0] = 0;
    p[1] = 1;
    p[2] = 1;
    kl_ce_uint(p + 3, KL_MUX_NAME_MAX + 1);
    kl_mux_frame f;
    expect_corrupt(kl_mux_decode(p, n, &f));
    assert_int_equal(f.kind, KL_MUX_IGNORE); /* zeroed */
    kl_ce_uint(p + 3, KL_MUX_NAME_MAX);
    assert_int_equal(kl_mux_decode(p, n - 1, &f), 0); /* then an empty id */
    assert_int_equal(f.kind, KL_MUX_OPEN);
    assert_int_equal(f.open.protocol_len, KL_MUX_NAME_MAX);
    assert_null(f.open.id);
    free(p);

    /* frames past the largest secretstream message */
    kl_mux_msg big = {.channel = 1, .type = 0, .payload = buf_a, .len = KL_MUX_FRAME_MAX};
    assert_int_equal(kl_mux_message_encode(&big, NULL, 0, &k), KL_ETOOBIG);
    assert_int_equal(kl_mux_batch_encode(&big, 1, NULL, 0, &k), KL_ETOOBIG);
    big.len = KL_MUX_FRAME_MAX - 2;
    assert_int_equal(kl_mux_message_encode(&big, NULL, 0, &k), KL_ETOOSMALL);
    assert_int_equal(k, KL_MUX_FRAME_MAX);
}

/* ---- Protomux: batches, switches, bad frames ---- */

static void test_batch_follows_channel_switches(void **state) {
    (void)state;
    /* sync on 1, range on 1, cancel on 2, want on 1: three switches' worth */
    uint8_t sync[] = {0x0f, 0x00, 0x03, 0x00}, range[] = {0x00, 0x00, 0x03}, cancel[] = {0x05},
            want[] = {0x00, 0x07};
    kl_mux_msg m[] = {{1, KL_MSG_SYNC, sync, sizeof sync},
                      {1, KL_MSG_RANGE, range, sizeof range},
                      {2, KL_MSG_CANCEL, cancel, sizeof cancel},
                      {1, KL_MSG_WANT, want, sizeof want}};
    size_t n = 0;
    assert_int_equal(kl_mux_batch_encode(m, 4, buf_a, BUF_MAX, &n), 0);
    expect_hex(buf_a, n,
               "00000105000f0003000408000003"
               "0002"
               "020205"
               "0001"
               "03050007");
    kl_mux_frame f, item;
    assert_int_equal(kl_mux_decode(buf_a, n, &f), 0);
    assert_int_equal(f.kind, KL_MUX_BATCH);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(kl_mux_batch_next(&f.batch, &item), 1);
        assert_int_equal(item.kind, KL_MUX_MESSAGE);
        assert_int_equal(item.msg.channel, m[i].channel);
        assert_int_equal(item.msg.type, m[i].type);
        expect_same_bytes(item.msg.payload, item.msg.len, m[i].payload, m[i].len);
        checks++;
    }
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 0);
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 0);

    /*
     * Switches to the control channel, back, and twice in a row: a close
     * and an open (with its handshake as the rest of the item) as JS
     * corks them, then a message on 3, an unknown control type.
     */
    n = unhex_into("000001"
                   "05000f000300" /* sync on 1 */
                   "0000"
                   "020301"                 /* switch to 0: close 1 */
                   "0a01020468632f7800aabb" /* open 2 "hc/x", no id, handshake aabb */
                   "0005"
                   "0003"
                   "02022a" /* switch to 5, then to 3: cancel 42 */
                   "0000"
                   "020907", /* switch to 0: control type 9, rest 07 */
                   buf_a);
    assert_int_equal(kl_mux_decode(buf_a, n, &f), 0);
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 1);
    assert_int_equal(item.kind, KL_MUX_MESSAGE);
    assert_int_equal(item.msg.channel, 1);
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 1);
    assert_int_equal(item.kind, KL_MUX_CLOSE);
    assert_int_equal(item.local_id, 1);
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 1);
    assert_int_equal(item.kind, KL_MUX_OPEN);
    assert_int_equal(item.open.local_id, 2);
    expect_same_bytes(item.open.protocol, item.open.protocol_len, (const uint8_t *)"hc/x", 4);
    assert_null(item.open.id);
    expect_hex(item.open.handshake, item.open.handshake_len, "aabb");
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 1);
    assert_int_equal(item.kind, KL_MUX_MESSAGE);
    assert_int_equal(item.msg.channel, 3);
    assert_int_equal(item.msg.type, KL_MSG_CANCEL);
    expect_hex(item.msg.payload, item.msg.len, "2a");
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 1);
    assert_int_equal(item.kind, KL_MUX_CONTROL_UNKNOWN);
    assert_int_equal(item.msg.type, 9);
    expect_hex(item.msg.payload, item.msg.len, "07");
    assert_int_equal(kl_mux_batch_next(&f.batch, &item), 0);

    /* a lone batch with one item is still a batch (JS sends those) */
    assert_int_equal(kl_mux_batch_encode(m + 2, 1, buf_a, BUF_MAX, &n), 0);
    expect_hex(buf_a, n, "000002020205");
    /* an empty batch, or a control item, cannot be encoded */
    assert_int_equal(kl_mux_batch_encode(m, 0, buf_a, BUF_MAX, &n), KL_EINVAL);
    kl_mux_msg ctl = {0, 3, cancel, 1};
    assert_int_equal(kl_mux_batch_encode(&ctl, 1, buf_a, BUF_MAX, &n), KL_EINVAL);
}

static void test_bad_frames_are_refused(void **state) {
    (void)state;
    static const struct {
        const char *hex, *why; /* why: a word the reason must contain */
    } bad[] = {
        {"00000105000f0003", "past the end"},     /* item of 5 with 3 left */
        {"000001fd", "cut short"},                /* item length cut */
        {"00000100", "cut short"},                /* switch without a channel */
        {"0000", "cut short"},                    /* batch without a channel */
        {"000000030000ff", "batch inside"},       /* channel 0 item: a batch */
        {"000000020000", "batch inside"},         /* nested, even empty */
        {"00010003616263", "channel id 0"},       /* open of 0 */
        {"0000000401000000", "channel id 0"},     /* open of 0, in a batch */
        {"00", "cut short"},                      /* control without type */
        {"01", "cut short"},                      /* message without type */
        {"000101", "cut short"},                  /* open without protocol */
        {"0001010561", "past the end"},           /* protocol cut */
        {"00010101610540", "past the end"},       /* id cut */
        {"0002", "cut short"},                    /* reject without id */
        {"0003fe0100", "cut short"},              /* close with a cut id */
        {"0000010200", "past the end"},           /* item of 2 with 1 left */
        {"ff0000000000002000", "above 2^53 - 1"}, /* channel too big */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = unhex_into(bad[i].hex, buf_a);
        kl_mux_frame f;
        kl_err_clear();
        int rc = kl_mux_decode(buf_a, n, &f);
        if (rc != KL_ECORRUPT || strstr(kl_err_thread(), bad[i].why) == NULL)
            fail_msg("'%s': %d '%s', expected a refusal naming '%s'", bad[i].hex, rc,
                     kl_err_thread(), bad[i].why);
        assert_int_equal(f.kind, KL_MUX_IGNORE);
        checks++;
    }

    /* empty: a keepalive; unknown control types and message types: for the channel to ignore */
    kl_mux_frame f;
    assert_int_equal(kl_mux_decode(NULL, 0, &f), 0);
    assert_int_equal(f.kind, KL_MUX_IGNORE);
    size_t n = unhex_into("0004aabb", buf_a);
    assert_int_equal(kl_mux_decode(buf_a, n, &f), 0);
    assert_int_equal(f.kind, KL_MUX_CONTROL_UNKNOWN);
    assert_int_equal(f.msg.type, 4);
    expect_hex(f.msg.payload, f.msg.len, "aabb");
    n = unhex_into("070cffee", buf_a);
    assert_int_equal(kl_mux_decode(buf_a, n, &f), 0);
    assert_int_equal(f.kind, KL_MUX_MESSAGE);
    assert_int_equal(f.msg.channel, 7);
    assert_int_equal(f.msg.type, 12);
    assert_int_equal(
        kl_wire_message_decode(f.msg.type, f.msg.payload, f.msg.len, VALUE_MAX, &msg_a),
        KL_ENOTFOUND);
    /* close and reject ignore trailing bytes, as JS reads only the id */
    n = unhex_into("000301ffff", buf_a);
    assert_int_equal(kl_mux_decode(buf_a, n, &f), 0);
    assert_int_equal(f.kind, KL_MUX_CLOSE);
    assert_int_equal(f.local_id, 1);

    /* encoders refuse channel 0 (the control channel) and bytes that are not there */
    size_t k = 0;
    kl_mux_open o = {.local_id = 0, .protocol = (const uint8_t *)"x", .protocol_len = 1};
    assert_int_equal(kl_mux_open_encode(&o, buf_a, BUF_MAX, &k), KL_EINVAL);
    assert_int_equal(kl_mux_close_encode(0, buf_a, BUF_MAX, &k), KL_EINVAL);
    assert_int_equal(kl_mux_reject_encode(0, buf_a, BUF_MAX, &k), KL_EINVAL);
    kl_mux_msg m = {.channel = 0, .type = 1};
    assert_int_equal(kl_mux_message_encode(&m, buf_a, BUF_MAX, &k), KL_EINVAL);
    m.channel = 1;
    m.len = 3; /* no payload pointer */
    assert_int_equal(kl_mux_message_encode(&m, buf_a, BUF_MAX, &k), KL_EINVAL);
    /* an open's size is known up front; a short buffer is reported */
    o.local_id = 1;
    assert_int_equal(kl_mux_open_encode(&o, NULL, 0, &k), KL_ETOOSMALL);
    assert_int_equal(k, 6); /* 00 01 01 01 'x' 00 */
    assert_int_equal(kl_mux_open_encode(&o, buf_a, k - 1, &n), KL_ETOOSMALL);
    assert_int_equal(kl_mux_open_encode(&o, buf_a, k, &n), 0);
    expect_hex(buf_a, n, "000101017800");
}

/* ---- messages: flags, shorter forms, trailing bytes ---- */

static void test_message_flags_and_optional_fields(void **state) {
    (void)state;
    /* in request and data an unknown bit could announce a field: refused */
    static const struct {
        kl_msg_type t;
        const char *hex;
    } unknown_bits[] = {
        {KL_MSG_REQUEST, "40010000"},
        {KL_MSG_DATA, "20010000"},
    };
    for (size_t i = 0; i < sizeof unknown_bits / sizeof unknown_bits[0]; i++) {
        size_t n = unhex_into(unknown_bits[i].hex, buf_a);
        kl_err_clear();
        expect_corrupt(kl_wire_message_decode(unknown_bits[i].t, buf_a, n, VALUE_MAX, &msg_a));
        assert_non_null(strstr(kl_err_thread(), "unknown"));
    }
    /* elsewhere ignored, as JS does: the message decodes with the known bits only */
    static const struct {
        kl_msg_type t;
        const char *hex, *canonical;
    } ignored_bits[] = {
        {KL_MSG_SYNC, "21000000", "01000000"}, {KL_MSG_NO_DATA, "0302", "0300"},
        {KL_MSG_NO_DATA, "030301", "030101"},  {KL_MSG_WANT, "000102", "0001"},
        {KL_MSG_UNWANT, "000103", "000101"},   {KL_MSG_RANGE, "040005", "000005"},
    };
    for (size_t i = 0; i < sizeof ignored_bits / sizeof ignored_bits[0]; i++) {
        size_t n = unhex_into(ignored_bits[i].hex, buf_a);
        decode_ok(ignored_bits[i].t, buf_a, n, &msg_a);
        size_t m = 0;
        assert_int_equal(kl_wire_message_encode(&msg_a, buf_b, BUF_MAX, &m), 0);
        expect_hex(buf_b, m, ignored_bits[i].canonical);
    }
    {
        size_t n = unhex_into("0303", buf_a); /* a reason announced, none there: cut short */
        expect_corrupt(kl_wire_message_decode(KL_MSG_NO_DATA, buf_a, n, VALUE_MAX, &msg_a));
    }
    /* and unknown bits cannot be sent */
    size_t k = 0;
    kl_wire_sync s = {.flags = 0x20};
    assert_int_equal(kl_wire_sync_encode(&s, buf_a, BUF_MAX, &k), KL_EINVAL);
    kl_wire_want w = {.flags = 2};
    assert_int_equal(kl_wire_want_encode(&w, buf_a, BUF_MAX, &k), KL_EINVAL);
    kl_wire_range r = {.flags = KL_WIRE_RANGE_ONE, .length = 1};
    assert_int_equal(kl_wire_range_encode(&r, buf_a, BUF_MAX, &k), KL_EINVAL);

    /* trailing bytes are ignored where JS ignores them (every type but request and data) */
    static const struct {
        kl_msg_type t;
        const char *hex, *canonical;
    } trailing[] = {
        {KL_MSG_SYNC, "0f000300ff", "0f000300"},
        {KL_MSG_CANCEL, "05aa", "05"},
        {KL_MSG_NO_DATA, "03010102", "030101"},
        {KL_MSG_WANT, "00070100", "000701"},
        {KL_MSG_RANGE, "02077777", "0207"},
        {KL_MSG_BITFIELD, "000107000000ee", "000107000000"},
    };
    for (size_t i = 0; i < sizeof trailing / sizeof trailing[0]; i++) {
        size_t n = unhex_into(trailing[i].hex, buf_a);
        decode_ok(trailing[i].t, buf_a, n, &msg_a);
        assert_int_equal(kl_wire_message_encode(&msg_a, buf_b, BUF_MAX, &k), 0);
        expect_hex(buf_b, k, trailing[i].canonical);
    }
    size_t n = unhex_into("1801000003ff", buf_a); /* proof.c refuses them */
    expect_corrupt(kl_wire_message_decode(KL_MSG_REQUEST, buf_a, n, VALUE_MAX, &msg_a));

    /* noData: flags with the reason bit but reason 0, and missing flags, both mean no reason */
    n = unhex_into("030100", buf_a);
    decode_ok(KL_MSG_NO_DATA, buf_a, n, &msg_a);
    assert_int_equal(msg_a.u.no_data.reason, 0);
    assert_int_equal(kl_wire_message_encode(&msg_a, buf_b, BUF_MAX, &k), 0);
    expect_hex(buf_b, k, "0300"); /* JS always writes the flags field */
    /* range: length 1 written long is the same range; the short form is what we send */
    n = unhex_into("010701", buf_a);
    decode_ok(KL_MSG_RANGE, buf_a, n, &msg_a);
    assert_int_equal(msg_a.u.range.flags, KL_WIRE_RANGE_DROP);
    assert_int_equal(msg_a.u.range.length, 1);
    assert_int_equal(kl_wire_message_encode(&msg_a, buf_b, BUF_MAX, &k), 0);
    expect_hex(buf_b, k, "0307");
    /* extension: an empty name ("same as last") and an empty message */
    n = unhex_into("00", buf_a);
    decode_ok(KL_MSG_EXTENSION, buf_a, n, &msg_a);
    assert_int_equal(msg_a.u.extension.name_len, 0);
    assert_int_equal(msg_a.u.extension.message_len, 0);
    /* an empty payload is no message of any type */
    for (kl_msg_type t = KL_MSG_SYNC; t < KL_MSG_TYPES; t++)
        expect_corrupt(kl_wire_message_decode(t, NULL, 0, VALUE_MAX, &msg_a));
    /* bitfield words are read little-endian, wherever they sit */
    n = unhex_into("fd008002ffffffff01000000", buf_a + 1);
    decode_ok(KL_MSG_BITFIELD, buf_a + 1, n, &msg_a);
    assert_int_equal(msg_a.u.bitfield.start, 32768);
    assert_int_equal(kl_wire_bitfield_word(&msg_a.u.bitfield, 0), 0xffffffffu);
    assert_int_equal(kl_wire_bitfield_word(&msg_a.u.bitfield, 1), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_numbers_are_hypercores),
        cmocka_unit_test(test_vector_messages_decode_and_encode_as_hypercore),
        cmocka_unit_test(test_vector_channel_handshake),
        cmocka_unit_test(test_vector_protomux_frames),
        cmocka_unit_test(test_every_truncated_message_is_refused),
        cmocka_unit_test(test_every_truncated_frame_is_refused),
        cmocka_unit_test(test_uints_refuse_cuts_and_values_past_2_53),
        cmocka_unit_test(test_buffers_and_counts_are_capped),
        cmocka_unit_test(test_oversized_messages_are_refused),
        cmocka_unit_test(test_batch_follows_channel_switches),
        cmocka_unit_test(test_bad_frames_are_refused),
        cmocka_unit_test(test_message_flags_and_optional_fields),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_wire: %lu values checked or refused as they must be\n", checks);
    return failed;
}
