/*
 * fuzz_frame.c - the frame reader and the secret stream's receiving side
 * (replication/stream.c) with arbitrary bytes in arbitrary pieces.
 *
 * Input:  [max] [m] [m piece sizes] [the byte stream]
 *   max: the reader's maximum payload, 1 + 16 * max for max < 200, else 4 MiB
 *   piece sizes: each 1 + byte, cycled; the stream is pushed in pieces of
 *   those sizes, each in a buffer of exactly its size (ASan sees overreads).
 *
 * Every frame that comes out goes to a secret stream with fixed keys (as a
 * responder): the first to kl_ss_accept, the rest to kl_ss_decrypt.
 *
 * Checks of the reader: every call with bytes consumes at least one and at
 * most all; a frame is never above the maximum and is exactly the bytes
 * that followed its length prefix in the stream; every byte pushed is in a
 * frame returned or in the frame in progress (nothing lost, nothing twice);
 * the buffer never grows past the maximum, nor past twice the bytes held
 * (or 4 KiB); an error is KL_ECORRUPT for a length prefix that really is
 * above the maximum, and sticks. Of the secret stream: a refusal is one of
 * the documented codes and sticks; a message that decrypts is exactly what
 * a sender in lockstep (same keys, the header that was accepted) makes of
 * that plaintext, so nothing decrypts that the key holder did not send.
 *
 * Seeds (KL_FUZZ_SEEDS): real streams of a header frame and messages
 * (empty keepalives included) under the fixed keys, in several cuttings.
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

#define SMALL_MAX_LIMIT 200u /* max bytes below this pick a small maximum */
#define PIECES_MAX      16u

static kl_noise_keys keys_ini, keys_res; /* fixed: the two ends of one made-up handshake */

static void keys_init(void) {
    static int ready;
    if (ready)
        return;
    KL_ASSERT(sodium_init() >= 0);
    for (size_t i = 0; i < KL_NOISE_HASH_BYTES; i++)
        keys_ini.hash[i] = (uint8_t)i;
    memset(keys_ini.tx, 0x11, sizeof keys_ini.tx);
    memset(keys_ini.rx, 0x22, sizeof keys_ini.rx);
    keys_ini.role = KL_NOISE_INITIATOR;
    keys_res = keys_ini;
    keys_res.role = KL_NOISE_RESPONDER;
    memcpy(keys_res.tx, keys_ini.rx, sizeof keys_res.tx);
    memcpy(keys_res.rx, keys_ini.tx, sizeof keys_res.rx);
    ready = 1;
}

/* The receiving end, and a sender in lockstep with what it accepted. */
typedef struct peer {
    kl_ss rx, tx;
    int frames; /* frames seen so far */
    int err;    /* the receiving side's sticky error */
} peer;

static void on_frame(peer *p, const uint8_t *f, size_t len) {
    int first = p->frames++ == 0;
    if (p->err) {
        size_t n = 0;
        KL_ASSERT(kl_ss_decrypt(&p->rx, f, len, NULL, 0, &n) == p->err && n == 0);
        return;
    }
    if (first) {
        int rc = kl_ss_accept(&p->rx, f, len);
        if (rc) {
            /* The size is checked first, then the stream id. */
            KL_ASSERT(rc == KL_ECORRUPT || rc == KL_EVERIFY);
            KL_ASSERT((rc == KL_ECORRUPT) == (len != KL_SS_HELLO_BYTES));
            p->err = rc;
            return;
        }
        KL_ASSERT(len == KL_SS_HELLO_BYTES);
        uint8_t hello[KL_SS_HELLO_BYTES];
        kl_ss_init(&p->tx, &keys_ini, f + KL_SS_ID_BYTES, hello);
        KL_ASSERT(memcmp(hello, f, KL_SS_HELLO_BYTES) == 0);
        return;
    }
    size_t cap = len > KL_SS_OVERHEAD ? len - KL_SS_OVERHEAD : 0, n = 0, m = 0;
    uint8_t *out = malloc(cap ? cap : 1), *again = malloc(KL_SS_FRAME_BYTES(cap));
    KL_ASSERT(out && again);
    int rc = kl_ss_decrypt(&p->rx, f, len, out, cap, &n);
    if (rc) {
        /* Too short, or not authentic (an authentic frame never carries another tag here). */
        KL_ASSERT(rc == KL_EVERIFY || rc == KL_ECORRUPT);
        KL_ASSERT((rc == KL_ECORRUPT) == (len < KL_SS_OVERHEAD));
        p->err = rc;
    } else {
        KL_ASSERT(n == cap);
        KL_ASSERT(kl_ss_encrypt(&p->tx, out, n, again, KL_SS_FRAME_BYTES(cap), &m) == 0);
        KL_ASSERT(m == KL_FRAME_HDR_BYTES + len && memcmp(again + KL_FRAME_HDR_BYTES, f, len) == 0);
    }
    free(out);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    keys_init();
    if (size < 2)
        return 0;
    size_t max = data[0] < SMALL_MAX_LIMIT ? 1 + 16u * data[0] : KL_FRAME_WIRE_MAX;
    size_t m = KL_MIN((size_t)data[1] % PIECES_MAX, size - 2);
    const uint8_t *sizes = data + 2, *s = data + 2 + m;
    size_t n = size - 2 - m;

    kl_frames fr;
    KL_ASSERT(kl_frames_init(&fr, max) == 0);
    peer p;
    memset(&p, 0, sizeof p);
    uint8_t hello[KL_SS_HELLO_BYTES];
    kl_ss_init(&p.rx, &keys_res, NULL, hello);

    size_t at = 0, accounted = 0, piece = 0;
    int err = 0;
    while (at < n) {
        size_t want = m ? (size_t)sizes[piece++ % m] + 1 : n; /* KL_MIN evaluates twice */
        size_t len = KL_MIN(want, n - at);
        uint8_t *buf = malloc(len);
        KL_ASSERT(buf != NULL);
        memcpy(buf, s + at, len);
        size_t off = 0;
        while (off < len) {
            size_t used = 0, flen = 0;
            const uint8_t *f = NULL;
            int rc = kl_frames_next(&fr, buf + off, len - off, &used, &f, &flen);
            KL_ASSERT(used <= len - off);
            if (err) {
                KL_ASSERT(rc == err && used == 0);
                break;
            }
            if (rc < 0) {
                /* Refused: the length prefix that just completed says more than the maximum. */
                KL_ASSERT(rc == KL_ECORRUPT);
                size_t hdr_at = accounted;
                KL_ASSERT(hdr_at + KL_FRAME_HDR_BYTES == at + off + used);
                size_t said =
                    (size_t)s[hdr_at] | (size_t)s[hdr_at + 1] << 8 | (size_t)s[hdr_at + 2] << 16;
                KL_ASSERT(said > max && kl_frames_pending(&fr) == 0 && fr.buf == NULL);
                err = rc;
                break;
            }
            KL_ASSERT(used >= 1);
            off += used;
            if (rc == 1) {
                KL_ASSERT(flen <= max);
                size_t said = (size_t)s[accounted] | (size_t)s[accounted + 1] << 8 |
                              (size_t)s[accounted + 2] << 16;
                KL_ASSERT(said == flen);
                KL_ASSERT(flen == 0 || memcmp(f, s + accounted + KL_FRAME_HDR_BYTES, flen) == 0);
                accounted += KL_FRAME_HDR_BYTES + flen;
                on_frame(&p, f, flen);
            } else {
                KL_ASSERT(rc == 0 && off == len);
            }
            KL_ASSERT(accounted + kl_frames_pending(&fr) == at + off);
            /*
             * Memory: never past the maximum; past KL_FRAMES_KEEP only while it serves the frame
             * in progress (under twice its bytes held) or the one just returned from it.
             */
            KL_ASSERT(fr.cap <= max);
            KL_ASSERT(fr.cap <= KL_FRAMES_KEEP || fr.cap <= KL_MAX(4096u, 2 * fr.have) ||
                      (rc == 1 && f == fr.buf && fr.cap <= flen));
        }
        free(buf);
        at += len;
        if (err)
            break;
    }
    if (!err)
        KL_ASSERT(kl_frames_pending(&fr) < KL_FRAME_HDR_BYTES + max &&
                  accounted + kl_frames_pending(&fr) == n);
    kl_frames_free(&fr);
    kl_ss_wipe(&p.rx);
    kl_ss_wipe(&p.tx);
    return 0;
}

/* ---- seed corpus (KL_FUZZ_SEEDS=DIR): real streams under the fixed keys ---- */

static void write_seeds(const char *dir) {
    keys_init();
    static const uint8_t header[KL_SS_HEADER_BYTES] = {7, 7, 7};
    static const size_t plains[] = {0, 5, 1, 0, 200, 33};
    static const uint8_t cuts[][4] = {{0}, {1, 0}, {2, 2, 6}, {3, 0, 40, 255}};
    uint8_t stream[1024], buf[1100];
    size_t n = 0, w = 0;
    kl_ss tx;
    kl_ss_init(&tx, &keys_ini, header, stream + KL_FRAME_HDR_BYTES);
    kl_frame_header(stream, KL_SS_HELLO_BYTES);
    n = KL_FRAME_HDR_BYTES + KL_SS_HELLO_BYTES;
    for (size_t i = 0; i < sizeof plains / sizeof plains[0]; i++) {
        uint8_t plain[256];
        for (size_t j = 0; j < plains[i]; j++)
            plain[j] = (uint8_t)(i + j);
        KL_ASSERT(kl_ss_encrypt(&tx, plain, plains[i], stream + n, sizeof stream - n, &w) == 0);
        n += w;
    }
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        size_t m = cuts[c][0], at = 0;
        buf[at++] = SMALL_MAX_LIMIT; /* 4 MiB */
        buf[at++] = (uint8_t)m;
        memcpy(buf + at, cuts[c] + 1, m);
        at += m;
        memcpy(buf + at, stream, n);
        char name[32];
        snprintf(name, sizeof name, "stream-%zu", c);
        write_seed(dir, name, buf, at + n);
    }
    /* A small maximum (1 + 16 * 4 = 65: the header fits, the 200-byte message does not). */
    buf[0] = 4;
    buf[1] = 0;
    memcpy(buf + 2, stream, n);
    write_seed(dir, "small-max", buf, 2 + n);
    kl_ss_wipe(&tx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
