/*
 * b2b4.c - BLAKE2b-256 of four, eight or sixteen one-block messages at once (b2b4.h).
 *
 * One compression per message: the state starts from the IV with the
 * parameter block of an unkeyed 32-byte digest, the counter is the
 * message's length and the block is the last. The vector version keeps
 * word i of the four working states in one register, so each step of G is
 * one instruction for all four (or eight) messages.
 */
#include "b2b4.h"

#include <pthread.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KL_B2B4_X86 1
#include <immintrin.h>
#endif

static const uint64_t b2b_iv[8] = {
    0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull,
    0x510e527fade682d1ull, 0x9b05688c2b3e6c1full, 0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull,
};

/* The message schedule of rounds 0..9; rounds 10 and 11 repeat 0 and 1. */
static const uint8_t b2b_sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

/* h[0] of an unkeyed 32-byte digest: fanout 1, depth 1, digest length 32. */
#define B2B_PARAM0 0x01010020ull

#define B2B_ROUNDS 12

static inline uint64_t rotr64(uint64_t x, unsigned n) {
    return (x >> n) | (x << (64 - n));
}

#define G1(a, b, c, d, x, y)                                                                       \
    do {                                                                                           \
        a = a + b + (x);                                                                           \
        d = rotr64(d ^ a, 32);                                                                     \
        c = c + d;                                                                                 \
        b = rotr64(b ^ c, 24);                                                                     \
        a = a + b + (y);                                                                           \
        d = rotr64(d ^ a, 16);                                                                     \
        c = c + d;                                                                                 \
        b = rotr64(b ^ c, 63);                                                                     \
    } while (0)

/*
 * One round of the compression on the working words v[16] and message words
 * m[16] with the schedule s, G being the one-lane or many-lane step.
 */
#define B2B_ROUND(G, v, m, s)                                                                      \
    do {                                                                                           \
        G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);                                              \
        G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);                                              \
        G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);                                             \
        G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);                                             \
        G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);                                             \
        G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);                                           \
        G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);                                            \
        G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);                                            \
    } while (0)

/* One compression of the chain h with block b, t bytes of the message so far, last or not. */
static void compress1(uint64_t h[8], const uint8_t b[KL_B2B4_MAX_BYTES], uint64_t t, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = kl_load64(b + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = b2b_iv[i];
    }
    v[12] ^= t; /* the byte counter (its high word, v[13], stays 0) */
    if (last)
        v[14] = ~v[14];
    for (int r = 0; r < B2B_ROUNDS; r++) {
        const uint8_t *s = b2b_sigma[r % 10];
        B2B_ROUND(G1, v, m, s);
    }
    for (int i = 0; i < 8; i++)
        h[i] ^= v[i] ^ v[i + 8];
}

/* The chain of an unkeyed 32-byte digest before its first block. */
static void start1(uint64_t h[8]) {
    for (int i = 0; i < 8; i++)
        h[i] = b2b_iv[i] ^ (i == 0 ? B2B_PARAM0 : 0);
}

static void digest1(const uint64_t h[8], uint8_t out[32]) {
    for (int i = 0; i < 4; i++)
        kl_store64(out + 8 * i, h[i]);
}

static void one_block(const uint8_t block[KL_B2B4_MAX_BYTES], uint64_t len, uint8_t out[32]) {
    uint64_t h[8];
    start1(h);
    compress1(h, block, len, 1);
    digest1(h, out);
}

uint64_t kl_b2b_blocks(uint64_t len) {
    return len ? (len + KL_B2B4_MAX_BYTES - 1) / KL_B2B4_MAX_BYTES : 1;
}

/*
 * Block j of a message made of pre (plen bytes) then data (size bytes):
 * its bytes from 128 j on, zero past the message's end. Returns a pointer
 * into data when the block lies whole in it, else copies it to buf.
 */
static const uint8_t *message_block(const uint8_t *pre, size_t plen, const uint8_t *data,
                                    uint64_t size, uint64_t j, uint8_t buf[KL_B2B4_MAX_BYTES]) {
    uint64_t off = KL_B2B4_MAX_BYTES * j, len = plen + size;
    if (off >= plen && off + KL_B2B4_MAX_BYTES <= len)
        return data + (off - plen);
    uint64_t n = len > off ? KL_MIN(len - off, (uint64_t)KL_B2B4_MAX_BYTES) : 0, done = 0;
    if (off < plen) {
        done = KL_MIN(plen - off, n);
        memcpy(buf, pre + off, (size_t)done);
    }
    if (done < n)
        memcpy(buf + done, data + (off + done - plen), (size_t)(n - done));
    memset(buf + n, 0, (size_t)(KL_B2B4_MAX_BYTES - n));
    return buf;
}

void kl_b2b8_long_portable(const uint8_t *const pre[8], size_t plen, const uint8_t *const data[8],
                           const uint64_t size[8], uint8_t out[8][32]) {
    for (int k = 0; k < 8; k++) {
        uint64_t h[8], len = plen + size[k], nb = kl_b2b_blocks(len);
        uint8_t buf[KL_B2B4_MAX_BYTES];
        start1(h);
        for (uint64_t j = 0; j < nb; j++)
            compress1(h, message_block(pre[k], plen, data[k], size[k], j, buf),
                      KL_MIN(len, KL_B2B4_MAX_BYTES * (j + 1)), j + 1 == nb);
        digest1(h, out[k]);
    }
}

void kl_b2b4_portable(const uint8_t block[4][KL_B2B4_MAX_BYTES], const uint64_t len[4],
                      uint8_t out[4][32]) {
    for (int k = 0; k < 4; k++) {
        KL_ASSERT(len[k] <= KL_B2B4_MAX_BYTES);
        one_block(block[k], len[k], out[k]);
    }
}

#ifdef KL_B2B4_X86

#define B2B4_TARGET __attribute__((target("avx2")))

B2B4_TARGET static inline __m256i rotr32_4(__m256i x) {
    return _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1));
}

B2B4_TARGET static inline __m256i rotr24_4(__m256i x) {
    const __m256i r24 = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 3, 4,
                                         5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
    return _mm256_shuffle_epi8(x, r24);
}

B2B4_TARGET static inline __m256i rotr16_4(__m256i x) {
    const __m256i r16 = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 2, 3,
                                         4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
    return _mm256_shuffle_epi8(x, r16);
}

B2B4_TARGET static inline __m256i rotr63_4(__m256i x) {
    return _mm256_or_si256(_mm256_srli_epi64(x, 63), _mm256_add_epi64(x, x));
}

#define G4(a, b, c, d, x, y)                                                                       \
    do {                                                                                           \
        a = _mm256_add_epi64(_mm256_add_epi64(a, b), x);                                           \
        d = rotr32_4(_mm256_xor_si256(d, a));                                                      \
        c = _mm256_add_epi64(c, d);                                                                \
        b = rotr24_4(_mm256_xor_si256(b, c));                                                      \
        a = _mm256_add_epi64(_mm256_add_epi64(a, b), y);                                           \
        d = rotr16_4(_mm256_xor_si256(d, a));                                                      \
        c = _mm256_add_epi64(c, d);                                                                \
        b = rotr63_4(_mm256_xor_si256(b, c));                                                      \
    } while (0)

B2B4_TARGET static void b2b4_avx2(const uint8_t block[4][KL_B2B4_MAX_BYTES], const uint64_t len[4],
                                  uint8_t out[4][32]) {
    __m256i m[16], v[16];
    /* word i of the four messages in m[i], lane k from message k: 4 x 4 transposes */
    for (int j = 0; j < 4; j++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(block[0] + 32 * j));
        __m256i b = _mm256_loadu_si256((const __m256i *)(block[1] + 32 * j));
        __m256i c = _mm256_loadu_si256((const __m256i *)(block[2] + 32 * j));
        __m256i d = _mm256_loadu_si256((const __m256i *)(block[3] + 32 * j));
        __m256i ab_even = _mm256_unpacklo_epi64(a, b), ab_odd = _mm256_unpackhi_epi64(a, b);
        __m256i cd_even = _mm256_unpacklo_epi64(c, d), cd_odd = _mm256_unpackhi_epi64(c, d);
        m[4 * j + 0] = _mm256_permute2x128_si256(ab_even, cd_even, 0x20);
        m[4 * j + 1] = _mm256_permute2x128_si256(ab_odd, cd_odd, 0x20);
        m[4 * j + 2] = _mm256_permute2x128_si256(ab_even, cd_even, 0x31);
        m[4 * j + 3] = _mm256_permute2x128_si256(ab_odd, cd_odd, 0x31);
    }
    for (int i = 0; i < 8; i++) {
        v[i] = _mm256_set1_epi64x((long long)(b2b_iv[i] ^ (i == 0 ? B2B_PARAM0 : 0)));
        v[i + 8] = _mm256_set1_epi64x((long long)b2b_iv[i]);
    }
    v[12] = _mm256_xor_si256(v[12], _mm256_set_epi64x((long long)len[3], (long long)len[2],
                                                      (long long)len[1], (long long)len[0]));
    v[14] = _mm256_xor_si256(v[14], _mm256_set1_epi64x(-1));
    /* unrolled, the schedule's indices are constants and m[] stays put */
#pragma GCC unroll 12
    for (int r = 0; r < B2B_ROUNDS; r++) {
        const uint8_t *s = b2b_sigma[r % 10];
        B2B_ROUND(G4, v, m, s);
    }
    uint64_t h[4][4]; /* h[i][k]: digest word i of message k */
    for (int i = 0; i < 4; i++) {
        __m256i hi = _mm256_set1_epi64x((long long)(b2b_iv[i] ^ (i == 0 ? B2B_PARAM0 : 0)));
        hi = _mm256_xor_si256(hi, _mm256_xor_si256(v[i], v[i + 8]));
        _mm256_storeu_si256((__m256i *)h[i], hi);
    }
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 4; i++)
            kl_store64(out[k] + 8 * i, h[i][k]);
}

/*
 * Eight lanes: one message per 64-bit lane of AVX-512 registers. Where the
 * unit is 512 bits wide each step costs what a 256-bit one does, so eight
 * messages take about the time of four on AVX2, and the rotations are one
 * instruction each (vprorq) where AVX2 needs a shuffle or three. (Older
 * Intel server cores lower their clock for a while after 512-bit work;
 * measured here only on the AMD EPYC of docs/BENCHMARKS.md.)
 */
#define B2B8_TARGET __attribute__((target("avx512f")))

#define G8(a, b, c, d, x, y)                                                                       \
    do {                                                                                           \
        a = _mm512_add_epi64(_mm512_add_epi64(a, b), x);                                           \
        d = _mm512_ror_epi64(_mm512_xor_si512(d, a), 32);                                          \
        c = _mm512_add_epi64(c, d);                                                                \
        b = _mm512_ror_epi64(_mm512_xor_si512(b, c), 24);                                          \
        a = _mm512_add_epi64(_mm512_add_epi64(a, b), y);                                           \
        d = _mm512_ror_epi64(_mm512_xor_si512(d, a), 16);                                          \
        c = _mm512_add_epi64(c, d);                                                                \
        b = _mm512_ror_epi64(_mm512_xor_si512(b, c), 63);                                          \
    } while (0)

/* out[i] lane k = r[k] lane i: eight rows of eight words turned into columns. */
B2B8_TARGET static inline void transpose8(const __m512i r[8], __m512i out[8]) {
    /* pairs of rows interleaved: t[2p] holds their words 0, 2, 4, 6, t[2p + 1] words 1, 3, 5, 7 */
    __m512i t[8];
    for (int p = 0; p < 4; p++) {
        t[2 * p] = _mm512_unpacklo_epi64(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_epi64(r[2 * p], r[2 * p + 1]);
    }
    /* four rows: u[4q + 0..3] hold words (0, 4), (2, 6), (1, 5), (3, 7) of rows 4q..4q+3 */
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    __m512i u[8];
    for (int q = 0; q < 2; q++) {
        u[4 * q + 0] = _mm512_permutex2var_epi64(t[4 * q], lo, t[4 * q + 2]);
        u[4 * q + 1] = _mm512_permutex2var_epi64(t[4 * q], hi, t[4 * q + 2]);
        u[4 * q + 2] = _mm512_permutex2var_epi64(t[4 * q + 1], lo, t[4 * q + 3]);
        u[4 * q + 3] = _mm512_permutex2var_epi64(t[4 * q + 1], hi, t[4 * q + 3]);
    }
    /* the low halves (words 0-3 of each pair) and high halves (4-7) of rows 0-3 and 4-7 */
    static const int word[4] = {0, 2, 1, 3};
    for (int j = 0; j < 4; j++) {
        out[word[j]] = _mm512_shuffle_i64x2(u[j], u[4 + j], 0x44);
        out[word[j] + 4] = _mm512_shuffle_i64x2(u[j], u[4 + j], 0xee);
    }
}

/* Word i of the eight 128-byte blocks at p[k] into m[i], lane k from block k. */
B2B8_TARGET static inline void load8(const uint8_t *const p[8], __m512i m[16]) {
    for (int half = 0; half < 2; half++) {
        __m512i r[8];
        for (int k = 0; k < 8; k++)
            r[k] = _mm512_loadu_si512((const void *)(p[k] + 64 * half));
        transpose8(r, m + 8 * half);
    }
}

/* The eight chains of unkeyed 32-byte digests before their first block. */
B2B8_TARGET static inline void start8(__m512i h[8]) {
    for (int i = 0; i < 8; i++)
        h[i] = _mm512_set1_epi64((long long)(b2b_iv[i] ^ (i == 0 ? B2B_PARAM0 : 0)));
}

/* The working words of a compression of the chains h, t[k] bytes of message k so far. */
B2B8_TARGET static inline void work8(const __m512i h[8], const uint64_t t[8], int last,
                                     __m512i v[16]) {
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = _mm512_set1_epi64((long long)b2b_iv[i]);
    }
    v[12] = _mm512_xor_si512(v[12], _mm512_loadu_si512((const void *)t));
    if (last)
        v[14] = _mm512_xor_si512(v[14], _mm512_set1_epi64(-1));
}

/* The chains after a compression whose rounds left the working words v. */
B2B8_TARGET static inline void chain8(__m512i h[8], const __m512i v[16]) {
    for (int i = 0; i < 8; i++)
        h[i] = _mm512_xor_si512(h[i], _mm512_xor_si512(v[i], v[i + 8]));
}

/* The eight digests: the first four words of each chain. */
B2B8_TARGET static inline void digest8(const __m512i h[8], uint8_t out[8][32]) {
    uint64_t d[4][8]; /* d[i][k]: digest word i of message k */
    for (int i = 0; i < 4; i++)
        _mm512_storeu_si512((void *)d[i], h[i]);
    for (int k = 0; k < 8; k++)
        for (int i = 0; i < 4; i++)
            kl_store64(out[k] + 8 * i, d[i][k]);
}

/* The working words of one-block messages of these lengths (the chains start fresh). */
B2B8_TARGET static inline void one_block8(const uint64_t len[8], __m512i v[16]) {
    __m512i h[8];
    start8(h);
    work8(h, len, 1, v);
}

/* The digests of one-block messages whose rounds left the working words v. */
B2B8_TARGET static inline void one_digest8(const __m512i v[16], uint8_t out[8][32]) {
    __m512i h[8];
    start8(h);
    chain8(h, v);
    digest8(h, out);
}

/* One compression of the eight chains h with the blocks at p. */
B2B8_TARGET __attribute__((always_inline)) static inline void
compress8(__m512i h[8], const uint8_t *const p[8], const uint64_t t[8], int last) {
    __m512i m[16], v[16];
    load8(p, m);
    work8(h, t, last, v);
#pragma GCC unroll 12
    for (int r = 0; r < B2B_ROUNDS; r++) {
        const uint8_t *s = b2b_sigma[r % 10];
        B2B_ROUND(G8, v, m, s);
    }
    chain8(h, v);
}

B2B8_TARGET static void b2b8_avx512(const uint8_t block[8][KL_B2B4_MAX_BYTES],
                                    const uint64_t len[8], uint8_t out[8][32]) {
    const uint8_t *p[8];
    for (int k = 0; k < 8; k++)
        p[k] = block[k];
    __m512i h[8];
    start8(h);
    compress8(h, p, len, 1);
    digest8(h, out);
}

/*
 * Sixteen messages: two sets of eight, their steps interleaved. Each step
 * of G waits for the one before it, so one set leaves most of the vector
 * unit idle between dependent steps; the other set's step fills the gap
 * (about a fifth less time a hash, measured on the EPYC of
 * docs/BENCHMARKS.md). The two sets' 32 working registers are all
 * AVX-512 has; the message words are read from memory.
 */
#define G8X2(i0, i1, i2, i3, x, y)                                                                 \
    do {                                                                                           \
        G8(v[i0], v[i1], v[i2], v[i3], m[x], m[y]);                                                \
        G8(w[i0], w[i1], w[i2], w[i3], n[x], n[y]);                                                \
    } while (0)

B2B8_TARGET static void b2b16_avx512(const uint8_t block[16][KL_B2B4_MAX_BYTES],
                                     const uint64_t len[16], uint8_t out[16][32]) {
    const uint8_t *p[16];
    for (int k = 0; k < 16; k++)
        p[k] = block[k];
    __m512i m[16], n[16], v[16], w[16];
    load8(p, m);
    load8(p + 8, n);
    one_block8(len, v);
    one_block8(len + 8, w);
#pragma GCC unroll 12
    for (int r = 0; r < B2B_ROUNDS; r++) {
        const uint8_t *s = b2b_sigma[r % 10];
        G8X2(0, 4, 8, 12, s[0], s[1]);
        G8X2(1, 5, 9, 13, s[2], s[3]);
        G8X2(2, 6, 10, 14, s[4], s[5]);
        G8X2(3, 7, 11, 15, s[6], s[7]);
        G8X2(0, 5, 10, 15, s[8], s[9]);
        G8X2(1, 6, 11, 12, s[10], s[11]);
        G8X2(2, 7, 8, 13, s[12], s[13]);
        G8X2(3, 4, 9, 14, s[14], s[15]);
    }
    one_digest8(v, out);
    one_digest8(w, out + 8);
}

/*
 * Messages of many blocks, eight at once: the chains of the eight stay in
 * h, and each compression takes block j of every message. All take the
 * same number of blocks, so the last block (and its flag) comes at once.
 */
B2B8_TARGET static void b2b8_long_avx512(const uint8_t *const pre[8], size_t plen,
                                         const uint8_t *const data[8], const uint64_t size[8],
                                         uint8_t out[8][32]) {
    __m512i h[8];
    start8(h);
    uint64_t nb = kl_b2b_blocks(plen + size[0]);
    uint8_t buf[8][KL_B2B4_MAX_BYTES];
    for (uint64_t j = 0; j < nb; j++) {
        const uint8_t *p[8];
        uint64_t t[8];
        for (int k = 0; k < 8; k++) {
            p[k] = message_block(pre[k], plen, data[k], size[k], j, buf[k]);
            t[k] = KL_MIN(plen + size[k], KL_B2B4_MAX_BYTES * (j + 1));
        }
        compress8(h, p, t, j + 1 == nb);
    }
    digest8(h, out);
}

static int have_avx2, have_avx512;
static pthread_once_t vector_once = PTHREAD_ONCE_INIT;

static void probe_vector(void) {
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") != 0;
    have_avx512 = __builtin_cpu_supports("avx512f") != 0;
}

int kl_b2b4_vector(void) {
    pthread_once(&vector_once, probe_vector);
    return have_avx2;
}

int kl_b2b8_vector(void) {
    pthread_once(&vector_once, probe_vector);
    return have_avx512;
}

void kl_b2b8(const uint8_t block[8][KL_B2B4_MAX_BYTES], const uint64_t len[8], uint8_t out[8][32]) {
    if (!kl_b2b8_vector()) {
        kl_b2b4(block, len, out);
        kl_b2b4(block + 4, len + 4, out + 4);
        return;
    }
    for (int k = 0; k < 8; k++)
        KL_ASSERT(len[k] <= KL_B2B4_MAX_BYTES);
    b2b8_avx512(block, len, out);
}

void kl_b2b16(const uint8_t block[16][KL_B2B4_MAX_BYTES], const uint64_t len[16],
              uint8_t out[16][32]) {
    if (!kl_b2b8_vector()) {
        kl_b2b8(block, len, out);
        kl_b2b8(block + 8, len + 8, out + 8);
        return;
    }
    for (int k = 0; k < 16; k++)
        KL_ASSERT(len[k] <= KL_B2B4_MAX_BYTES);
    b2b16_avx512(block, len, out);
}

/* Every message must take as many blocks as the first. */
static void check_long(size_t plen, const uint64_t size[8]) {
    KL_ASSERT(plen <= KL_B2B4_MAX_BYTES);
    for (int k = 1; k < 8; k++)
        KL_ASSERT(kl_b2b_blocks(plen + size[k]) == kl_b2b_blocks(plen + size[0]));
}

void kl_b2b8_long(const uint8_t *const pre[8], size_t plen, const uint8_t *const data[8],
                  const uint64_t size[8], uint8_t out[8][32]) {
    check_long(plen, size);
    if (kl_b2b8_vector())
        b2b8_long_avx512(pre, plen, data, size, out);
    else
        kl_b2b8_long_portable(pre, plen, data, size, out);
}

void kl_b2b4(const uint8_t block[4][KL_B2B4_MAX_BYTES], const uint64_t len[4], uint8_t out[4][32]) {
    if (!kl_b2b4_vector()) {
        kl_b2b4_portable(block, len, out);
        return;
    }
    for (int k = 0; k < 4; k++)
        KL_ASSERT(len[k] <= KL_B2B4_MAX_BYTES);
    b2b4_avx2(block, len, out);
}

#else

int kl_b2b4_vector(void) {
    return 0;
}

void kl_b2b4(const uint8_t block[4][KL_B2B4_MAX_BYTES], const uint64_t len[4], uint8_t out[4][32]) {
    kl_b2b4_portable(block, len, out);
}

int kl_b2b8_vector(void) {
    return 0;
}

void kl_b2b8(const uint8_t block[8][KL_B2B4_MAX_BYTES], const uint64_t len[8], uint8_t out[8][32]) {
    kl_b2b4_portable(block, len, out);
    kl_b2b4_portable(block + 4, len + 4, out + 4);
}

void kl_b2b16(const uint8_t block[16][KL_B2B4_MAX_BYTES], const uint64_t len[16],
              uint8_t out[16][32]) {
    kl_b2b8(block, len, out);
    kl_b2b8(block + 8, len + 8, out + 8);
}

void kl_b2b8_long(const uint8_t *const pre[8], size_t plen, const uint8_t *const data[8],
                  const uint64_t size[8], uint8_t out[8][32]) {
    kl_b2b8_long_portable(pre, plen, data, size, out);
}

#endif
