/*
 * fuzz_handshake.c - the Noise XX handshake (replication/noise.c) with
 * arbitrary bytes as every message a side receives, for both roles.
 *
 * The keys are fixed: the static and ephemeral seeds of
 * tests/data/hypercore/transcript.json (a1.., b2.., c3.., d4..), so the
 * genuine messages are the transcript's and a run is reproducible. Input:
 *
 *   [scenario] then, per message the side(s) under test receive,
 *   [h] [len bytes]   h bit 7: 0 = the bytes are the message as given,
 *                              1 = the message is the genuine one XOR the bytes
 *                     h bits 0..6: len, the message's size (0..127)
 *
 * scenario % 3: 0 = our initiator and our responder talk, every message
 * passing through the input on its way (XOR with all-zero bytes delivers
 * it untouched); 1 = a responder alone (its messages 1 and 3 from the
 * input); 2 = an initiator alone (its message 2 from the input).
 *
 * Checks: a refused message is KL_ECORRUPT or KL_EVERIFY and the side stays
 * failed for good (the same error again, no keys). A side that completes
 * holds exactly the keys of the genuine handshake (no one can make it agree
 * to other keys without the secret keys); when both complete, their keys
 * agree and a secret-stream message round-trips under them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util.h"
#include "fuzz_seeds.h"
#include "replication/noise.h"
#include "replication/stream.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_LEN_MASK 0x7fu
#define MSG_XOR      0x80u

static struct {
    uint8_t si[KL_NOISE_SK_BYTES], ei[KL_NOISE_SK_BYTES]; /* initiator static, ephemeral */
    uint8_t sr[KL_NOISE_SK_BYTES], er[KL_NOISE_SK_BYTES]; /* responder */
    uint8_t msg[3][KL_NOISE_MSG_MAX];                     /* the genuine messages */
    size_t len[3];
    kl_noise_keys ki, kr; /* the genuine outcome */
    int ready;
} ref;

static void sk_of(uint8_t byte, uint8_t sk[KL_NOISE_SK_BYTES]) {
    uint8_t seed[32], pk[KL_NOISE_PK_BYTES];
    memset(seed, byte, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
}

static void start(kl_noise *ini, kl_noise *res) {
    KL_ASSERT(kl_noise_init(ini, KL_NOISE_INITIATOR, ref.si, ref.ei) == 0);
    KL_ASSERT(kl_noise_init(res, KL_NOISE_RESPONDER, ref.sr, ref.er) == 0);
}

static void ref_init(void) {
    if (ref.ready)
        return;
    KL_ASSERT(sodium_init() >= 0);
    sk_of(0xa1, ref.si);
    sk_of(0xc3, ref.ei);
    sk_of(0xb2, ref.sr);
    sk_of(0xd4, ref.er);
    kl_noise ini, res;
    start(&ini, &res);
    for (int i = 0; i < 3; i++) {
        kl_noise *w = i % 2 == 0 ? &ini : &res, *r = i % 2 == 0 ? &res : &ini;
        KL_ASSERT(kl_noise_write(w, ref.msg[i], sizeof ref.msg[i], &ref.len[i]) == 0);
        KL_ASSERT(kl_noise_read(r, ref.msg[i], ref.len[i]) == 0);
    }
    KL_ASSERT(kl_noise_keys_get(&ini, &ref.ki) == 0);
    KL_ASSERT(kl_noise_keys_get(&res, &ref.kr) == 0);
    kl_noise_wipe(&ini);
    kl_noise_wipe(&res);
    ref.ready = 1;
}

/* The input, read front to back. */
typedef struct in {
    const uint8_t *p;
    size_t at, n;
} in;

/*
 * The next message as the input makes it from `genuine` (g_len bytes), in
 * a buffer of exactly its size (ASan sees any read past it). NULL for an
 * empty message, with *len = 0.
 */
static uint8_t *next_msg(in *d, const uint8_t *genuine, size_t g_len, size_t *len) {
    uint8_t h = d->at < d->n ? d->p[d->at++] : MSG_XOR | (uint8_t)g_len; /* input over: genuine */
    size_t n = h & MSG_LEN_MASK;
    size_t have = KL_MIN(n, d->n - d->at);
    *len = n;
    if (n == 0)
        return NULL;
    uint8_t *m = calloc(1, n);
    KL_ASSERT(m != NULL);
    memcpy(m, d->p + d->at, have);
    d->at += have;
    if (h & MSG_XOR)
        for (size_t i = 0; i < n && i < g_len; i++)
            m[i] ^= genuine[i];
    return m;
}

static void check_failed(kl_noise *st, int rc) {
    KL_ASSERT(rc == KL_ECORRUPT || rc == KL_EVERIFY);
    KL_ASSERT(kl_noise_status(st, NULL) == KL_NOISE_FAILED);
    kl_noise_keys k;
    size_t n;
    uint8_t out[KL_NOISE_MSG_MAX];
    KL_ASSERT(kl_noise_keys_get(st, &k) == KL_EINVAL);
    KL_ASSERT(kl_noise_read(st, ref.msg[0], ref.len[0]) == rc);
    KL_ASSERT(kl_noise_write(st, out, sizeof out, &n) == rc);
}

static int same_keys(const kl_noise_keys *a, const kl_noise_keys *b) {
    return a->role == b->role && memcmp(a->hash, b->hash, sizeof a->hash) == 0 &&
           memcmp(a->tx, b->tx, sizeof a->tx) == 0 && memcmp(a->rx, b->rx, sizeof a->rx) == 0 &&
           memcmp(a->remote_pk, b->remote_pk, sizeof a->remote_pk) == 0;
}

/* A side that completed holds the genuine keys. */
static void check_done(const kl_noise *st) {
    kl_noise_keys k;
    KL_ASSERT(kl_noise_keys_get(st, &k) == 0);
    KL_ASSERT(same_keys(&k, st->role == KL_NOISE_INITIATOR ? &ref.ki : &ref.kr));
}

/* Both sides complete: a message each way round-trips under their keys. */
static void check_pair(const kl_noise *ini, const kl_noise *res) {
    kl_noise_keys ki, kr;
    KL_ASSERT(kl_noise_keys_get(ini, &ki) == 0 && kl_noise_keys_get(res, &kr) == 0);
    KL_ASSERT(memcmp(ki.hash, kr.hash, sizeof ki.hash) == 0);
    KL_ASSERT(memcmp(ki.tx, kr.rx, sizeof ki.tx) == 0 && memcmp(ki.rx, kr.tx, sizeof ki.rx) == 0);
    static const uint8_t hdr[KL_SS_HEADER_BYTES] = {1, 2, 3};
    kl_ss a, b;
    uint8_t ha[KL_SS_HELLO_BYTES], hb[KL_SS_HELLO_BYTES], frame[64], out[64];
    size_t n = 0, m = 0;
    kl_ss_init(&a, &ki, hdr, ha);
    kl_ss_init(&b, &kr, hdr, hb);
    KL_ASSERT(kl_ss_accept(&a, hb, sizeof hb) == 0 && kl_ss_accept(&b, ha, sizeof ha) == 0);
    KL_ASSERT(kl_ss_encrypt(&a, (const uint8_t *)"ping", 4, frame, sizeof frame, &n) == 0);
    KL_ASSERT(kl_ss_decrypt(&b, frame + 3, n - 3, out, sizeof out, &m) == 0);
    KL_ASSERT(m == 4 && memcmp(out, "ping", 4) == 0);
    kl_ss_wipe(&a);
    kl_ss_wipe(&b);
}

/* Deliver message i (0-based) to r through the input; 0 if r took it. */
static int deliver(in *d, kl_noise *r, const uint8_t *genuine, size_t g_len) {
    size_t len;
    uint8_t *m = next_msg(d, genuine, g_len, &len);
    int rc = kl_noise_read(r, m, len);
    free(m);
    if (rc)
        check_failed(r, rc);
    return rc;
}

static void both(in *d) {
    kl_noise ini, res;
    uint8_t msg[KL_NOISE_MSG_MAX];
    size_t n;
    start(&ini, &res);
    for (int i = 0; i < 3; i++) {
        kl_noise *w = i % 2 == 0 ? &ini : &res, *r = i % 2 == 0 ? &res : &ini;
        KL_ASSERT(kl_noise_write(w, msg, sizeof msg, &n) == 0);
        if (deliver(d, r, msg, n) != 0)
            goto out;
    }
    check_done(&ini);
    check_done(&res);
    check_pair(&ini, &res);
out:
    kl_noise_wipe(&ini);
    kl_noise_wipe(&res);
}

/* One side alone: it writes its own messages and reads the input's. */
static void alone(in *d, kl_noise_role role) {
    kl_noise ini, res;
    uint8_t msg[KL_NOISE_MSG_MAX];
    size_t n;
    start(&ini, &res);
    kl_noise *st = role == KL_NOISE_INITIATOR ? &ini : &res;
    for (int i = 0; i < 3; i++) {
        size_t size = 0;
        kl_noise_next next = kl_noise_status(st, &size);
        KL_ASSERT(size == ref.len[i]);
        if (next == KL_NOISE_WRITE) {
            KL_ASSERT(kl_noise_write(st, msg, sizeof msg, &n) == 0 && n == size);
        } else {
            KL_ASSERT(next == KL_NOISE_READ);
            if (deliver(d, st, ref.msg[i], ref.len[i]) != 0)
                goto out;
        }
    }
    check_done(st);
out:
    kl_noise_wipe(&ini);
    kl_noise_wipe(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ref_init();
    if (size == 0)
        return 0;
    in d = {.p = data, .at = 1, .n = size};
    switch (data[0] % 3) {
    case 0:
        both(&d);
        break;
    case 1:
        alone(&d, KL_NOISE_RESPONDER);
        break;
    default:
        alone(&d, KL_NOISE_INITIATOR);
        break;
    }
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR): the transcript's real messages ---- */

static void write_seeds(const char *dir) {
    ref_init();
    uint8_t buf[1 + 3 * (1 + KL_NOISE_MSG_MAX)];
    for (int scenario = 0; scenario < 3; scenario++)
        for (int xor = 0; xor < 2; xor ++) {
            size_t n = 0;
            buf[n++] = (uint8_t)scenario;
            for (int i = 0; i < 3; i++) {
                /* Only the messages the scenario's side(s) receive. */
                if ((scenario == 1 && i == 1) || (scenario == 2 && i != 1))
                    continue;
                buf[n++] = (uint8_t)((xor? MSG_XOR : 0) | ref.len[i]);
                if (xor)
                    memset(buf + n, 0, ref.len[i]);
                else
                    memcpy(buf + n, ref.msg[i], ref.len[i]);
                n += ref.len[i];
            }
            char name[32];
            snprintf(name, sizeof name, "%s-%s",
                     scenario == 0   ? "both"
                     : scenario == 1 ? "res"
                                     : "ini",
                     xor? "xor" : "raw");
            write_seed(dir, name, buf, n);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
