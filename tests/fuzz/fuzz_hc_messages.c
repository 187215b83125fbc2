/*
 * fuzz_hc_messages.c - libFuzzer target for the ten hypercore message
 * decoders: kl_wire_message_decode and kl_wire_message_encode
 * (replication/wire.c), which reach sync, cancel, noData, want, unwant,
 * bitfield, range and extension there and request and data through
 * engine/proof.c.
 *
 * Input is `[type choice][payload]`: the first byte modulo 10 picks the
 * message type, the rest (in a buffer of exactly its length, so ASan sees a
 * read past the end) is the payload. The same payload is also offered as
 * type 10 + the first byte, which must be KL_ENOTFOUND (JS ignores unknown
 * types).
 *
 * A payload that decodes is re-encoded; the encoding decodes to the same
 * fields and re-encodes to the same bytes (stable), and is no longer than
 * the payload (only noData may grow, by one byte: JS writes its flags field
 * even when a short form left it out). Every pointer a message hands out
 * lies inside the payload; counts stay under their caps. A payload that is
 * refused is KL_ECORRUPT.
 *
 * KL_FUZZ_SEEDS=DIR writes every message of wire-messages.json (built here
 * from their fields with the library's encoders; tests/test_wire.c checks
 * they are JS's bytes) into DIR and exits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/hc.h"
#include "engine/proof.h"
#include "engine/util.h"
#include "fuzz_seeds.h"
#include "replication/wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_MAX   (64u * 1024u)
#define VALUE_MAX (64u * 1024u)

/* ~31 KiB each (a kl_proof): too big for every fuzzing thread's stack. */
static kl_wire_message first, second;
static uint8_t enc1[MSG_MAX], enc2[MSG_MAX];

static const uint8_t *in_lo, *in_hi;

static void check_inside(const uint8_t *p, size_t n) {
    if (n == 0)
        return;
    KL_ASSERT(p != NULL && p >= in_lo && n <= (size_t)(in_hi - p));
}

static int same_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static int same_nodes(const kl_proof_nodes *a, const kl_proof_nodes *b) {
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->node[i].index != b->node[i].index || a->node[i].size != b->node[i].size ||
            memcmp(a->node[i].hash, b->node[i].hash, KL_HASH_BYTES) != 0)
            return 0;
    return 1;
}

static int same_data(const kl_proof *a, const kl_proof *b) {
    return a->flags == b->flags && a->request == b->request && a->fork == b->fork &&
           a->block.index == b->block.index &&
           same_bytes(a->block.value, a->block.value_len, b->block.value, b->block.value_len) &&
           same_nodes(&a->block.nodes, &b->block.nodes) && a->hash.index == b->hash.index &&
           same_nodes(&a->hash.nodes, &b->hash.nodes) && a->seek.bytes == b->seek.bytes &&
           same_nodes(&a->seek.nodes, &b->seek.nodes) && a->upgrade.start == b->upgrade.start &&
           a->upgrade.length == b->upgrade.length &&
           same_nodes(&a->upgrade.nodes, &b->upgrade.nodes) &&
           same_nodes(&a->upgrade.additional, &b->upgrade.additional) &&
           same_bytes(a->upgrade.signature, a->upgrade.signature_len, b->upgrade.signature,
                      b->upgrade.signature_len) &&
           same_bytes(a->manifest, a->manifest_len, b->manifest, b->manifest_len);
}

static int same_message(const kl_wire_message *a, const kl_wire_message *b) {
    if (a->type != b->type)
        return 0;
    const kl_wire_bitfield *x = &a->u.bitfield, *y = &b->u.bitfield;
    switch (a->type) {
    case KL_MSG_SYNC:
        return a->u.sync.flags == b->u.sync.flags && a->u.sync.fork == b->u.sync.fork &&
               a->u.sync.length == b->u.sync.length &&
               a->u.sync.remote_length == b->u.sync.remote_length;
    case KL_MSG_REQUEST:
        return fz_same_request(&a->u.request, &b->u.request);
    case KL_MSG_CANCEL:
        return a->u.cancel.request == b->u.cancel.request;
    case KL_MSG_DATA:
        return same_data(&a->u.data, &b->u.data);
    case KL_MSG_NO_DATA:
        return a->u.no_data.request == b->u.no_data.request &&
               a->u.no_data.reason == b->u.no_data.reason;
    case KL_MSG_WANT:
    case KL_MSG_UNWANT:
        return a->u.want.start == b->u.want.start && a->u.want.length == b->u.want.length &&
               a->u.want.flags == b->u.want.flags;
    case KL_MSG_BITFIELD:
        return x->start == y->start && same_bytes(x->words, 4 * x->nwords, y->words, 4 * y->nwords);
    case KL_MSG_RANGE:
        return a->u.range.flags == b->u.range.flags && a->u.range.start == b->u.range.start &&
               a->u.range.length == b->u.range.length;
    case KL_MSG_EXTENSION:
        return same_bytes(a->u.extension.name, a->u.extension.name_len, b->u.extension.name,
                          b->u.extension.name_len) &&
               same_bytes(a->u.extension.message, a->u.extension.message_len,
                          b->u.extension.message, b->u.extension.message_len);
    case KL_MSG_TYPES:
        break;
    }
    return 0;
}

/* What the decoders promise about a message they accepted. */
static void check_decoded(const kl_wire_message *m) {
    switch (m->type) {
    case KL_MSG_SYNC:
        KL_ASSERT((m->u.sync.flags & ~KL_WIRE_SYNC_FLAGS) == 0);
        KL_ASSERT(m->u.sync.fork <= KL_PROOF_MAX_U53 && m->u.sync.length <= KL_PROOF_MAX_U53 &&
                  m->u.sync.remote_length <= KL_PROOF_MAX_U53);
        break;
    case KL_MSG_DATA:
        check_inside(m->u.data.block.value, m->u.data.block.value_len);
        check_inside(m->u.data.upgrade.signature, m->u.data.upgrade.signature_len);
        check_inside(m->u.data.manifest, m->u.data.manifest_len);
        KL_ASSERT(m->u.data.block.value_len <= VALUE_MAX);
        break;
    case KL_MSG_NO_DATA:
        KL_ASSERT(m->u.no_data.request <= KL_PROOF_MAX_U53 &&
                  m->u.no_data.reason <= KL_PROOF_MAX_U53);
        break;
    case KL_MSG_WANT:
    case KL_MSG_UNWANT:
        KL_ASSERT((m->u.want.flags & ~KL_WIRE_WANT_FLAGS) == 0);
        break;
    case KL_MSG_BITFIELD:
        KL_ASSERT(m->u.bitfield.nwords <= KL_WIRE_BITFIELD_MAX_WORDS);
        KL_ASSERT(m->u.bitfield.words != NULL);
        check_inside(m->u.bitfield.words, 4 * m->u.bitfield.nwords);
        if (m->u.bitfield.nwords)
            (void)kl_wire_bitfield_word(&m->u.bitfield, m->u.bitfield.nwords - 1);
        break;
    case KL_MSG_RANGE:
        KL_ASSERT((m->u.range.flags & ~KL_WIRE_RANGE_DROP) == 0);
        break;
    case KL_MSG_EXTENSION:
        KL_ASSERT(m->u.extension.name_len <= KL_WIRE_NAME_MAX && m->u.extension.name != NULL &&
                  m->u.extension.message != NULL);
        check_inside(m->u.extension.name, m->u.extension.name_len);
        check_inside(m->u.extension.message, m->u.extension.message_len);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    kl_msg_type type = (kl_msg_type)(data[0] % KL_MSG_TYPES);
    size_t len = size - 1;
    uint8_t *p = malloc(len ? len : 1);
    KL_ASSERT(p != NULL);
    memcpy(p, data + 1, len);
    const uint8_t *in = len ? p : NULL;
    in_lo = p;
    in_hi = p + len;

    KL_ASSERT(kl_wire_message_decode(KL_MSG_TYPES + data[0], in, len, VALUE_MAX, &first) ==
              KL_ENOTFOUND);
    int rc = kl_wire_message_decode(type, in, len, VALUE_MAX, &first);
    if (rc) {
        KL_ASSERT(rc == KL_ECORRUPT);
        free(p);
        return 0;
    }
    KL_ASSERT(first.type == type);
    check_decoded(&first);
    size_t n = 0, m = 0;
    KL_ASSERT(kl_wire_message_encode(&first, enc1, sizeof enc1, &n) == 0);
    KL_ASSERT(n <= len || (type == KL_MSG_NO_DATA && n == len + 1));
    KL_ASSERT(kl_wire_message_decode(type, enc1, n, VALUE_MAX, &second) == 0);
    KL_ASSERT(same_message(&first, &second));
    KL_ASSERT(kl_wire_message_encode(&second, enc2, sizeof enc2, &m) == 0);
    KL_ASSERT(m == n && memcmp(enc1, enc2, n) == 0);
    free(p);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR): the messages of wire-messages.json ---- */

static void seed(const char *dir, const char *name, const kl_wire_message *msg) {
    size_t n = 0;
    KL_ASSERT(kl_wire_message_encode(msg, enc1 + 1, sizeof enc1 - 1, &n) == 0);
    enc1[0] = (uint8_t)msg->type;
    write_seed(dir, name, enc1, n + 1);
}

static void write_seeds(const char *dir) {
    static kl_wire_message s;
    static uint8_t words[8], value[1] = {'a'}, sig[64], manifest[KL_MANIFEST_MAX], pk[32];
    memset(&s, 0, sizeof s);
    s.type = KL_MSG_SYNC;
    s.u.sync = (kl_wire_sync){.flags = 0x0f, .fork = 0, .length = 3, .remote_length = 0};
    seed(dir, "sync", &s);
    s.u.sync = (kl_wire_sync){.flags = 0x02, .fork = 2, .length = 300, .remote_length = 70000};
    seed(dir, "sync-long", &s);
    memset(&s, 0, sizeof s);
    s.type = KL_MSG_REQUEST;
    s.u.request.flags = KL_PROOF_UPGRADE | KL_PROOF_MANIFEST;
    s.u.request.id = 1;
    s.u.request.upgrade.length = 3;
    seed(dir, "request-upgrade", &s);
    s.u.request.flags = KL_PROOF_BLOCK | KL_PROOF_PRIORITY;
    s.u.request.id = 300;
    s.u.request.fork = 1;
    s.u.request.block.index = 70000;
    s.u.request.block.nodes = 3;
    s.u.request.priority = 2;
    seed(dir, "request-block", &s);
    memset(&s, 0, sizeof s);
    s.type = KL_MSG_CANCEL;
    s.u.cancel.request = 5;
    seed(dir, "cancel", &s);
    memset(&s, 0, sizeof s);
    s.type = KL_MSG_DATA;
    s.u.data.flags = KL_PROOF_BLOCK;
    s.u.data.request = 1;
    s.u.data.block.value = value;
    s.u.data.block.value_len = 1;
    s.u.data.block.nodes.n = 1;
    s.u.data.block.nodes.node[0] = (kl_node){.index = 2, .size = 1};
    seed(dir, "data-block", &s);
    memset(&s.u.data, 0, sizeof s.u.data);
    memset(sig, 7, sizeof sig);
    memset(pk, 0x8a, sizeof pk);
    s.u.data.flags = KL_PROOF_UPGRADE | KL_PROOF_MANIFEST;
    s.u.data.request = 2;
    s.u.data.upgrade.length = 2;
    s.u.data.upgrade.nodes.n = 1;
    s.u.data.upgrade.nodes.node[0] = (kl_node){.index = 1, .size = 2};
    s.u.data.upgrade.signature = sig;
    s.u.data.upgrade.signature_len = sizeof sig;
    s.u.data.manifest = manifest;
    s.u.data.manifest_len = kl_hc_manifest_default(pk, manifest);
    seed(dir, "data-upgrade", &s);
    memset(&s, 0, sizeof s);
    s.type = KL_MSG_NO_DATA;
    s.u.no_data = (kl_wire_no_data){.request = 3, .reason = KL_WIRE_REASON_NOT_AVAILABLE};
    seed(dir, "no-data", &s);
    s.type = KL_MSG_WANT;
    s.u.want = (kl_wire_want){.start = 0, .length = 4194304, .flags = KL_WIRE_WANT_ANY};
    seed(dir, "want", &s);
    s.type = KL_MSG_UNWANT;
    s.u.want = (kl_wire_want){.start = 0, .length = 2097152};
    seed(dir, "unwant", &s);
    s.type = KL_MSG_BITFIELD;
    kl_store32(words, 0xffffffffu);
    kl_store32(words + 4, 1);
    s.u.bitfield = (kl_wire_bitfield){.start = 32768, .words = words, .nwords = 2};
    seed(dir, "bitfield", &s);
    s.type = KL_MSG_RANGE;
    s.u.range = (kl_wire_range){.flags = KL_WIRE_RANGE_DROP, .start = 2, .length = 5};
    seed(dir, "range", &s);
    s.u.range = (kl_wire_range){.flags = 0, .start = 7, .length = 1};
    seed(dir, "range-one", &s);
    s.type = KL_MSG_EXTENSION;
    s.u.extension = (kl_wire_extension){.name = (const uint8_t *)"example",
                                        .name_len = 7,
                                        .message = (const uint8_t *)"hi",
                                        .message_len = 2};
    seed(dir, "extension", &s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
