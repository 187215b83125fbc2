/*
 * b2b4.h - BLAKE2b-256 of four, eight or sixteen one-block messages at once,
 * and of eight longer ones.
 *
 * A Hypercore leaf of a small block (up to KL_B2B4_MAX_BYTES - 9 bytes of
 * data) and every parent node hash a message that fits in one 128-byte
 * BLAKE2b block. Hashing them one at a time through libsodium pays its
 * state set-up and final copy per message, and uses the vector unit for one
 * message's columns only; here four messages run side by side, one per
 * 64-bit lane of AVX2 registers (eight in AVX-512 registers, kl_b2b8),
 * which costs about what one message costs alone. The leaf of a bigger
 * block takes several BLAKE2b blocks: kl_b2b8_long runs eight such
 * messages side by side, a block of each per compression (a 1 KiB leaf in
 * about a third of libsodium's time here). Where the CPU lacks them the
 * same functions compute the messages in plain C. The digests are
 * BLAKE2b's (RFC 7693, unkeyed, 32-byte output): tests/test_b2b4.c compares
 * them with libsodium's.
 */
#ifndef KL_B2B4_H
#define KL_B2B4_H

#include <stddef.h>
#include <stdint.h>

/* The longest message one block holds. */
#define KL_B2B4_MAX_BYTES 128u

/*
 * out[k] = BLAKE2b-256(block[k][0 .. len[k])) for k = 0..3. Each block is
 * KL_B2B4_MAX_BYTES long and zero past len[k] (len[k] <= 128).
 */
void kl_b2b4(const uint8_t block[4][KL_B2B4_MAX_BYTES], const uint64_t len[4], uint8_t out[4][32]);

/* The same in plain C, whatever the CPU (tests compare the two). */
void kl_b2b4_portable(const uint8_t block[4][KL_B2B4_MAX_BYTES], const uint64_t len[4],
                      uint8_t out[4][32]);

/* Whether kl_b2b4 runs on AVX2 here. */
int kl_b2b4_vector(void);

/*
 * The same for eight messages: one pass in AVX-512 registers where the CPU
 * has AVX-512F, else kl_b2b4 twice.
 */
void kl_b2b8(const uint8_t block[8][KL_B2B4_MAX_BYTES], const uint64_t len[8], uint8_t out[8][32]);

/*
 * The same for sixteen messages: two passes of eight interleaved in
 * AVX-512 registers where the CPU has AVX-512F, else kl_b2b8 twice.
 */
void kl_b2b16(const uint8_t block[16][KL_B2B4_MAX_BYTES], const uint64_t len[16],
              uint8_t out[16][32]);

/* Whether kl_b2b8 and kl_b2b16 run on AVX-512 here. */
int kl_b2b8_vector(void);

/* BLAKE2b blocks of a message of len bytes (an empty one takes one). */
uint64_t kl_b2b_blocks(uint64_t len);

/*
 * Messages of any length, eight at once: message k is the plen bytes at
 * pre[k] (plen <= KL_B2B4_MAX_BYTES) followed by the size[k] bytes at
 * data[k], and all eight take the same number of BLAKE2b blocks
 * (kl_b2b_blocks(plen + size[k])). out[k] = its BLAKE2b-256. In AVX-512
 * registers where the CPU has AVX-512F (a block of each message per
 * compression, the eight chains side by side), else in plain C.
 */
void kl_b2b8_long(const uint8_t *const pre[8], size_t plen, const uint8_t *const data[8],
                  const uint64_t size[8], uint8_t out[8][32]);

/* The same in plain C, whatever the CPU (tests compare the two). */
void kl_b2b8_long_portable(const uint8_t *const pre[8], size_t plen, const uint8_t *const data[8],
                           const uint64_t size[8], uint8_t out[8][32]);

#endif
