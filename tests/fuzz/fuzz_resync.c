/*
 * fuzz_resync.c - libFuzzer target for the search past a damaged batch
 * header (engine/resync.c, kl_batch_resync) and the frame length solver it
 * uses (kl_batch_stored_for_frame, engine/frame.c).
 *
 * Input: 16 bytes of parameters, then the bytes of a segment. The
 * parameters say where the damaged batch is (its offset, taken modulo the
 * segment's length, and its first block), the limit of the search (the
 * segment's length or less), the known point the batches must lead to (a
 * block; at the limit exactly, at an offset inside it as an index entry
 * would be, or anywhere) and a frame length for the solver. The segment is
 * read through a kl_batch_src over a heap copy of exactly its length, so
 * ASan catches a read past it, and every view is checked to stay below the
 * limit.
 *
 * Invariants (a failure aborts, which libFuzzer reports as a crash),
 * against a reference that tries every offset with the rule written out
 * from resync.c's comment and FORMAT.md's chunk checksum: the search finds
 * exactly the first offset the reference accepts, or none when the
 * reference accepts none. An accepted offset lies past the damaged batch,
 * starts a header that checks out naming a block between the damaged
 * batch's first and the known point, the bytes before it make one frame of
 * a batch of the damaged batch's first block whose every chunk checksum
 * holds, and the batches from it follow each other for four batches or up
 * to the known point, where they end exactly. The solver returns a stored
 * length exactly when one makes a frame of the given length, and then that
 * one.
 *
 * KL_FUZZ_SEEDS=DIR makes the binary write a few segments with a zeroed
 * batch header into DIR and exit (scripts/fuzz.sh uses them as the
 * starting corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/frame.h"
#include "engine/log_internal.h"
#include "engine/util.h"
#include "fuzz_seeds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PARAM_BYTES 16u
#define LEAD        4u /* resync.c's LEAD_BATCHES */

typedef struct seg {
    const uint8_t *p;
    size_t len;
    uint64_t bound; /* the limit given to the search: no view reaches past it */
} seg;

static int src_header(void *ctx, uint64_t pos, uint64_t limit, kl_batch_hdr *h) {
    const seg *s = ctx;
    uint64_t end = limit < s->len ? limit : s->len;
    if (pos + KL_BATCH_HEADER_BYTES > end)
        return KL_ECORRUPT;
    int rc = kl_batch_hdr_decode(s->p + pos, (size_t)(end - pos), h);
    if (rc == 0 && pos + kl_batch_frame_len(h) > end)
        rc = KL_ECORRUPT;
    return rc;
}

static int src_view(void *ctx, uint64_t pos, size_t n, const uint8_t **out, size_t *got) {
    const seg *s = ctx;
    KL_ASSERT(pos + n <= s->bound); /* the search never looks at or past its limit */
    *out = s->p + pos;
    *got = n;
    return 0;
}

/* FORMAT.md: chunk i of a batch of block `first` is checksummed with this seed. */
static uint64_t ref_chunk_sum(const uint8_t *p, size_t n, uint64_t first, uint64_t i) {
    return XXH3_64bits_withSeed(p, n, first ^ (i << 40) ^ (i >> 24));
}

/* Is [pos, q) one frame of a batch of block `at` whose every chunk checksum holds? */
static int ref_one_frame(const seg *s, uint64_t pos, uint64_t q, uint64_t at) {
    uint64_t f = q - pos;
    for (uint64_t chunks = 1; KL_BATCH_HEADER_BYTES + KL_BATCH_SUM_BYTES * chunks < f; chunks++) {
        uint64_t stored = f - KL_BATCH_HEADER_BYTES - KL_BATCH_SUM_BYTES * chunks;
        if (stored <= (chunks - 1) * KL_BATCH_CHUNK_BYTES || stored > chunks * KL_BATCH_CHUNK_BYTES)
            continue; /* that many chunks do not hold this body */
        const uint8_t *sums = s->p + pos + KL_BATCH_HEADER_BYTES;
        const uint8_t *body = sums + KL_BATCH_SUM_BYTES * chunks;
        for (uint64_t i = 0; i < chunks; i++) {
            uint64_t off = i * KL_BATCH_CHUNK_BYTES;
            size_t n =
                (size_t)(stored - off < KL_BATCH_CHUNK_BYTES ? stored - off : KL_BATCH_CHUNK_BYTES);
            if (ref_chunk_sum(body + off, n, at, i) != kl_load64(sums + KL_BATCH_SUM_BYTES * i))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* Does the run from (q, index) follow on for LEAD batches or end exactly at the known point? */
static int ref_leads_on(const seg *s, uint64_t q, uint64_t index, uint64_t to_pos,
                        uint64_t to_index, uint64_t limit) {
    for (unsigned n = 0; index < to_index; n++) {
        if (to_pos != UINT64_MAX && q >= to_pos)
            return 0;
        if (n == LEAD)
            return 1;
        kl_batch_hdr h;
        if (src_header((void *)s, q, limit, &h) != 0 || h.first_index != index ||
            h.count > to_index - index)
            return 0;
        q += kl_batch_frame_len(&h);
        index += h.count;
    }
    return to_pos == UINT64_MAX || q == to_pos;
}

/* The first offset the rule accepts, or UINT64_MAX. */
static uint64_t ref_resync(const seg *s, uint64_t pos, uint64_t at, uint64_t to_pos,
                           uint64_t to_index, uint64_t limit, uint64_t *at_out) {
    uint64_t end = limit < to_pos ? limit : to_pos;
    if (to_index <= at + 1)
        return UINT64_MAX;
    for (uint64_t q = pos + 1; q + KL_BATCH_HEADER_BYTES <= end; q++) {
        kl_batch_hdr h;
        if (src_header((void *)s, q, limit, &h) != 0 || h.first_index <= at ||
            h.first_index >= to_index)
            continue;
        if (ref_one_frame(s, pos, q, at) &&
            ref_leads_on(s, q, h.first_index, to_pos, to_index, limit)) {
            *at_out = h.first_index;
            return q;
        }
    }
    return UINT64_MAX;
}

static void check_solver(uint64_t frame_len) {
    uint32_t stored = 0;
    int got = kl_batch_stored_for_frame(frame_len, &stored);
    if (got) {
        KL_ASSERT(stored > 0 && kl_batch_frame_bytes(stored) == frame_len);
        return;
    }
    if (frame_len <= KL_BATCH_HEADER_BYTES || frame_len > kl_batch_frame_bytes(KL_BATCH_MAX_RAW))
        return;
    uint64_t guess = (frame_len - KL_BATCH_HEADER_BYTES) * KL_BATCH_CHUNK_BYTES /
                     (KL_BATCH_CHUNK_BYTES + KL_BATCH_SUM_BYTES);
    for (uint64_t l = guess > 3 ? guess - 3 : 1; l <= guess + 3; l++)
        KL_ASSERT(kl_batch_frame_bytes(l) != frame_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < PARAM_BYTES + 1)
        return 0;
    check_solver(kl_load32(data) | ((uint64_t)data[10] << 32));
    size_t len = size - PARAM_BYTES;
    uint8_t *copy = malloc(len);
    KL_ASSERT(copy != NULL);
    memcpy(copy, data + PARAM_BYTES, len);
    /* the limit: the segment's length, or less (a lookup's committed end inside the file) */
    uint64_t limit = len - (data[11] & 1 ? kl_load16(data + 12) % len : 0);
    seg s = {copy, len, limit};
    uint64_t pos = kl_load32(data) % len;
    uint64_t at = kl_load32(data + 4);
    uint64_t to_index = at + 1 + kl_load16(data + 8);
    /* the known point: the limit exactly, an offset inside (an index entry), or anywhere */
    uint64_t to_pos = (data[10] & 3) == 1   ? limit
                      : (data[10] & 3) == 2 ? kl_load16(data + 14) % (limit + 1)
                                            : UINT64_MAX;
    kl_batch_src src = {src_header, src_view, &s};
    uint64_t q = 0, a = 0, rq, ra = 0;
    int rc = kl_batch_resync(&src, pos, at, to_pos, to_index, limit, &q, &a);
    KL_ASSERT(rc == 0 || rc == 1);
    rq = ref_resync(&s, pos, at, to_pos, to_index, limit, &ra);
    if (rc == 1) {
        KL_ASSERT(rq == q && ra == a);
        KL_ASSERT(q > pos && a > at && a < to_index);
    } else {
        KL_ASSERT(rq == UINT64_MAX);
    }
    free(copy);
    return 0;
}

/* Seeds: batches of blocks 100.. framed back to back, one header zeroed, the parameters to match.
 */
static void write_seeds(const char *dir) {
    static uint8_t buf[PARAM_BYTES + 65536];
    for (int v = 0; v < 4; v++) {
        uint8_t *segp = buf + PARAM_BYTES;
        size_t len = 0, damaged = 0;
        uint64_t index = 100, damaged_at = 0;
        static uint8_t payload[3000];
        for (size_t i = 0; i < sizeof payload; i++)
            payload[i] = (uint8_t)(i * 7 + (size_t)v);
        for (int b = 0; b < 12; b++) {
            size_t count = 1 + (size_t)((b + v) % 3);
            kl_block blocks[3];
            uint64_t bytes = 0;
            for (size_t k = 0; k < count; k++) {
                size_t n = v == 3 ? 1100 + 40 * (size_t)b : 30 + 17 * (size_t)b; /* v 3: chunks */
                blocks[k] = (kl_block){payload + k, n};
                bytes += n;
            }
            if (len + kl_batch_plain_bytes(count, bytes) > 65536)
                break;
            if (b == 3 + v) {
                damaged = len;
                damaged_at = index;
            }
            len += kl_batch_frame(segp + len, index, blocks, count, bytes, 1000 + (uint64_t)b);
            index += count;
        }
        memset(segp + damaged, 0, KL_BATCH_HEADER_BYTES);
        memset(buf, 0, PARAM_BYTES);
        kl_store32(buf, (uint32_t)damaged);
        kl_store32(buf + 4, (uint32_t)damaged_at);
        kl_store16(buf + 8, (uint16_t)(index - damaged_at - 1));
        buf[10] = (uint8_t)(v % 2 == 0);
        char name[32];
        snprintf(name, sizeof name, "seed-%d", v);
        write_seed(dir, name, buf, PARAM_BYTES + len);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeds_then_exit(write_seeds);
    return 0;
}
