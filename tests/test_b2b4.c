/*
 * test_b2b4.c - four, eight or sixteen one-block BLAKE2b-256 hashes at once
 * (engine/b2b4.c) give libsodium's digests, and the leaf hashes built on
 * them (kl_hc_leaf_hashes) are kl_hc_leaf's, one block at a time.
 *
 *   - every message length 0..128 in every lane, the others random, with
 *     random bytes: kl_b2b4 (AVX2 where the CPU has it),
 *     kl_b2b4_portable, kl_b2b8 and kl_b2b16 (AVX-512 where the CPU has it)
 *     against crypto_generichash_blake2b;
 *   - runs of 0..40 blocks of 0..300 bytes, so groups of sixteen, eight and
 *     four small blocks mix with blocks too big for one BLAKE2b block (119
 *     and 120 bytes, the edge, are drawn often; every fourth run has small
 *     blocks only; and of 1,000..1,199 bytes, runs of as many BLAKE2b blocks
 *     in eight lanes at once): every hash as kl_hc_leaf makes it;
 *   - messages of a prefix and data of 1..12 BLAKE2b blocks, eight at once
 *     (kl_b2b8_long and its plain C version) against libsodium;
 *   - rows of 0..37 parents (kl_hc_parent_row), also written over their own
 *     children: every one as kl_hc_parent makes it.
 */
#include "testutil.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/b2b4.h"
#include "engine/hc.h"

static void reference(const uint8_t *m, size_t len, uint8_t out[32]) {
    assert_int_equal(crypto_generichash_blake2b(out, 32, m, len, NULL, 0), 0);
}

/*
 * Every message length 0..128 in every one of `lanes` lanes (4: kl_b2b4 and
 * kl_b2b4_portable; 8: kl_b2b8; 16: kl_b2b16), the other lanes random,
 * against libsodium.
 */
static unsigned lanes_match_libsodium(unsigned lanes, uint64_t rng) {
    unsigned checked = 0;
    for (unsigned len0 = 0; len0 <= KL_B2B4_MAX_BYTES; len0++) {
        for (unsigned lane = 0; lane < lanes; lane++) {
            uint8_t block[16][KL_B2B4_MAX_BYTES], out[16][32], port[16][32], want[32];
            uint64_t len[16];
            memset(block, 0, sizeof block);
            for (unsigned k = 0; k < lanes; k++) {
                len[k] = k == lane ? len0 : tu_rand(&rng) % (KL_B2B4_MAX_BYTES + 1);
                for (uint64_t j = 0; j < len[k]; j++)
                    block[k][j] = (uint8_t)tu_rand(&rng);
            }
            if (lanes == 16) {
                kl_b2b16(block, len, out);
                memcpy(port, out, sizeof port); /* the fallback is kl_b2b8, checked below */
            } else if (lanes == 8) {
                kl_b2b8(block, len, out);
                memcpy(port, out, sizeof port); /* the fallback is kl_b2b4, checked below */
            } else {
                kl_b2b4(block, len, out);
                kl_b2b4_portable(block, len, port);
            }
            for (unsigned k = 0; k < lanes; k++) {
                reference(block[k], (size_t)len[k], want);
                if (memcmp(out[k], want, 32) != 0 || memcmp(port[k], want, 32) != 0)
                    fail_msg("lane %u of %u, %llu bytes: digest differs from libsodium's", k, lanes,
                             (unsigned long long)len[k]);
                checked++;
            }
        }
    }
    return checked;
}

static void test_four_at_once_match_libsodium(void **state) {
    (void)state;
    unsigned checked = lanes_match_libsodium(4, 0xb2b4u);
    print_message("%u digests checked (vector unit: %s)\n", checked,
                  kl_b2b4_vector() ? "AVX2" : "none, plain C");
    assert_int_equal(checked, 129u * 4u * 4u);
}

/* kl_b2b8 (lanes 8) or kl_b2b16 (16): every length in every lane, and what ran them. */
static void wide_lanes_match_libsodium(unsigned lanes, uint64_t seed, const char *on_avx512,
                                       const char *on_avx2) {
    unsigned checked = lanes_match_libsodium(lanes, seed);
    print_message("%u digests checked (vector unit: %s)\n", checked,
                  kl_b2b8_vector()   ? on_avx512
                  : kl_b2b4_vector() ? on_avx2
                                     : "none, plain C");
    assert_int_equal(checked, 129u * lanes * lanes);
}

static void test_eight_at_once_match_libsodium(void **state) {
    (void)state;
    wide_lanes_match_libsodium(8, 0xb2b8u, "AVX-512", "AVX2, four lanes twice");
}

static void test_sixteen_at_once_match_libsodium(void **state) {
    (void)state;
    wide_lanes_match_libsodium(16, 0xb2b16u, "AVX-512, two sets of eight interleaved",
                               "AVX2, four lanes four times");
}

/*
 * kl_b2b8_long: eight messages of a prefix (0..128 bytes) and data, all of
 * the same number of BLAKE2b blocks (1..12), every length in that range
 * drawn, against libsodium's digest of the two parts one after the other.
 */
static void test_long_messages_match_libsodium(void **state) {
    (void)state;
    uint64_t rng = 0x10e6u;
    static uint8_t pre[8][KL_B2B4_MAX_BYTES], data[8][12 * KL_B2B4_MAX_BYTES],
        joined[13 * KL_B2B4_MAX_BYTES];
    unsigned checked = 0;
    for (unsigned round = 0; round < 600; round++) {
        size_t plen = round % 7 == 0 ? 9 : (size_t)(tu_rand(&rng) % (KL_B2B4_MAX_BYTES + 1));
        uint64_t nb = 1 + tu_rand(&rng) % 12;
        /* lengths plen + size in ((nb - 1) * 128, nb * 128], or 0 for one block */
        uint64_t lo = nb == 1 ? 0 : (nb - 1) * KL_B2B4_MAX_BYTES + 1, hi = nb * KL_B2B4_MAX_BYTES;
        if (hi < plen)
            continue; /* the prefix alone takes more blocks */
        lo = lo > plen ? lo - plen : 0;
        hi -= plen;
        const uint8_t *pp[8], *dp[8];
        uint64_t size[8];
        uint8_t out[8][32], port[8][32], want[32];
        for (unsigned k = 0; k < 8; k++) {
            size[k] = lo + tu_rand(&rng) % (hi - lo + 1);
            for (size_t j = 0; j < plen; j++)
                pre[k][j] = (uint8_t)tu_rand(&rng);
            for (uint64_t j = 0; j < size[k]; j++)
                data[k][j] = (uint8_t)tu_rand(&rng);
            pp[k] = pre[k];
            dp[k] = data[k];
        }
        kl_b2b8_long(pp, plen, dp, size, out);
        kl_b2b8_long_portable(pp, plen, dp, size, port);
        for (unsigned k = 0; k < 8; k++) {
            memcpy(joined, pre[k], plen);
            memcpy(joined + plen, data[k], (size_t)size[k]);
            reference(joined, plen + (size_t)size[k], want);
            if (memcmp(out[k], want, 32) != 0 || memcmp(port[k], want, 32) != 0)
                fail_msg("lane %u: %zu + %llu bytes (%llu blocks): digest differs from "
                         "libsodium's",
                         k, plen, (unsigned long long)size[k], (unsigned long long)nb);
            checked++;
        }
    }
    print_message("%u digests checked (vector unit: %s)\n", checked,
                  kl_b2b8_vector() ? "AVX-512" : "none, plain C");
    assert_true(checked > 3000);
}

static void test_leaf_hashes_match_one_at_a_time(void **state) {
    (void)state;
    uint64_t rng = 0x1eafu;
    static uint8_t data[40][1200];
    kl_block blocks[40];
    uint8_t got[40 * KL_HASH_BYTES];
    unsigned checked = 0;
    for (unsigned round = 0; round < 2000; round++) {
        size_t count = (size_t)(tu_rand(&rng) % 41);
        for (size_t i = 0; i < count; i++) {
            uint64_t r = tu_rand(&rng) % 10;
            size_t size = r < 2 ? 119 + (size_t)(r & 1) : (size_t)(tu_rand(&rng) % 301);
            if (r == 2 || round % 4 == 3)
                size = (size_t)(tu_rand(&rng) % 120); /* more groups of small ones */
            else if (round % 4 == 1) /* runs of eight, nine or ten BLAKE2b blocks */
                size = 1000 + (size_t)(tu_rand(&rng) % 200);
            for (size_t j = 0; j < size; j++)
                data[i][j] = (uint8_t)tu_rand(&rng);
            blocks[i].data = data[i];
            blocks[i].size = size;
        }
        kl_hc_leaf_hashes(blocks, count, got);
        for (size_t i = 0; i < count; i++) {
            kl_node want;
            kl_hc_leaf(0, blocks[i].data, blocks[i].size, &want);
            if (memcmp(got + KL_HASH_BYTES * i, want.hash, KL_HASH_BYTES) != 0)
                fail_msg("round %u, block %zu of %zu (%zu bytes): leaf hash differs", round, i,
                         count, blocks[i].size);
            checked++;
        }
    }
    print_message("%u leaf hashes checked\n", checked);
    assert_true(checked > 30000);
}

static void test_parent_rows_match_one_at_a_time(void **state) {
    (void)state;
    uint64_t rng = 0xba5eu;
    enum { MAX_ROW = 37 };
    kl_node children[2 * MAX_ROW], inplace[2 * MAX_ROW], out[MAX_ROW];
    unsigned checked = 0;
    for (unsigned round = 0; round < 500; round++) {
        size_t n = (size_t)(tu_rand(&rng) % (MAX_ROW + 1));
        uint64_t depth = tu_rand(&rng) % 5, first = tu_rand(&rng) % 1000;
        for (size_t i = 0; i < 2 * n; i++) { /* siblings in pairs, at some depth */
            children[i].index = kl_ft_index(depth, 2 * first + i);
            children[i].size = tu_rand(&rng) % 100000;
            for (size_t j = 0; j < KL_HASH_BYTES; j++)
                children[i].hash[j] = (uint8_t)tu_rand(&rng);
        }
        memcpy(inplace, children, sizeof inplace);
        kl_hc_parent_row(children, n, out);
        kl_hc_parent_row(inplace, n, inplace); /* out may be the children */
        for (size_t j = 0; j < n; j++) {
            kl_node want;
            kl_hc_parent(&children[2 * j], &children[2 * j + 1], &want);
            assert_int_equal(out[j].index, want.index);
            assert_int_equal(out[j].size, want.size);
            assert_memory_equal(out[j].hash, want.hash, KL_HASH_BYTES);
            assert_memory_equal(&inplace[j], &out[j], sizeof out[j]);
            checked++;
        }
    }
    print_message("%u parents checked\n", checked);
    assert_true(checked > 5000);
}

int main(void) {
    assert_true(sodium_init() >= 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_at_once_match_libsodium),
        cmocka_unit_test(test_eight_at_once_match_libsodium),
        cmocka_unit_test(test_sixteen_at_once_match_libsodium),
        cmocka_unit_test(test_long_messages_match_libsodium),
        cmocka_unit_test(test_leaf_hashes_match_one_at_a_time),
        cmocka_unit_test(test_parent_rows_match_one_at_a_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
