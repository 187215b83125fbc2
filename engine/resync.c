/*
 * resync.c - finding the batches past a damaged batch header.
 *
 * A batch header that fails its checks hides where its batch ends, and so
 * where the next one begins. The walkers (a lookup, an index build, the
 * refresh of a read-only handle, recovery's walk of the active segment's
 * tail) used to give up on every block after it: up to the next index
 * entry, or to the segment's end where no entry was past it. Yet the
 * batches after it are whole on disk, each with a header of its own that
 * carries its own checksum.
 *
 * kl_batch_resync finds the first of them. A candidate is an offset past
 * the damage where the batch magic starts a header that checks out and
 * names a block after the damaged batch's first. Bytes inside a block can
 * look like that (a log that stores segment files holds whole batches in
 * its blocks), so a candidate is taken only if both of these hold:
 * - the bytes from the damaged header to it are one whole batch of which
 *   only the header is lost: their length gives the stored body's, and the
 *   chunk checksums after the header (each seeded with the damaged batch's
 *   first block) match the chunks of that body;
 * - the batches from it follow each other, each starting where the one
 *   before ends and holding the blocks after it, for LEAD_BATCHES batches
 *   or up to a point already known: a block, and where its batch starts if
 *   that is known (the next index entry, or where a walk stopped), where
 *   the run must arrive exactly.
 * A batch stored inside a block fails the first: the chunk checksums do
 * not line up with a body that would end inside another chunk (only a
 * 64-bit checksum collision, crafted together with damage to exactly that
 * header, would pass; `verify` checks every block against the signed tree
 * and would still name it). Only the damaged batch's own blocks are then
 * unreadable, and the error names exactly them. Damage wider than one
 * header (a lost page over several batches) is not bridged: the blocks up
 * to the known point stay unreadable, as before.
 *
 * Cost: only where a header is damaged. Most candidates fail the check of
 * their first chunk, so a search reads each byte up to the known point
 * about once.
 *
 * Nothing found past the damage is trusted more than a batch read the
 * usual way: its header and then its body are checked as any other's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>

#include "frame.h"
#include "log_internal.h"
#include "util.h"

/* Bytes of the segment looked at per read while searching for the magic. */
#define SCAN_BYTES (64u * 1024u)

/* Batches past a candidate that must follow it, unless the known point comes first. */
#define LEAD_BATCHES 4

/*
 * Do the batches from (pos, index) follow each other, each holding the
 * blocks after the one before, for LEAD_BATCHES batches or up to block
 * to_index, which must start at to_pos (anywhere if to_pos is UINT64_MAX)?
 * 1, 0, or an I/O error.
 */
static int leads_on(const kl_batch_src *src, uint64_t pos, uint64_t index, uint64_t to_pos,
                    uint64_t to_index, uint64_t limit) {
    for (int n = 0; index < to_index; n++) {
        if (to_pos != UINT64_MAX && pos >= to_pos)
            return 0;
        if (n == LEAD_BATCHES)
            return 1;
        kl_batch_hdr h;
        int rc = src->header(src->ctx, pos, limit, &h);
        if (rc == KL_ECORRUPT)
            return 0;
        if (rc < 0)
            return rc;
        if (h.first_index != index || h.count > to_index - index)
            return 0;
        pos += kl_batch_frame_len(&h);
        index += h.count;
    }
    return to_pos == UINT64_MAX || pos == to_pos;
}

/* Chunks checked per group of views in only_header_lost. */
#define GROUP_CHUNKS (SCAN_BYTES / KL_BATCH_CHUNK_BYTES)

/*
 * Is [pos, q) one whole batch of block `at` of which only the header is
 * lost? The frame's length gives its stored body's, and the chunk checksums
 * after the header, seeded with `at`, must each match their chunk of it.
 * 1, 0, or an I/O error. Uses src->view (any earlier view is gone).
 */
static int only_header_lost(const kl_batch_src *src, uint64_t pos, uint64_t q, uint64_t at) {
    uint32_t stored;
    if (!kl_batch_stored_for_frame(q - pos, &stored))
        return 0;
    uint64_t n = kl_batch_chunks(stored);
    uint64_t sums_at = pos + KL_BATCH_HEADER_BYTES, body_at = sums_at + KL_BATCH_SUM_BYTES * n;
    uint8_t sums[KL_BATCH_SUM_BYTES * GROUP_CHUNKS];
    for (uint64_t i = 0, k = 0; i < n; i += k) {
        k = KL_MIN(i == 0 ? 1 : (uint64_t)GROUP_CHUNKS, n - i); /* most candidates fail chunk 0 */
        uint64_t off = i * KL_BATCH_CHUNK_BYTES;
        size_t body = (size_t)KL_MIN(k * KL_BATCH_CHUNK_BYTES, stored - off), got = 0;
        const uint8_t *v = NULL;
        int rc = src->view(src->ctx, sums_at + KL_BATCH_SUM_BYTES * i,
                           (size_t)(KL_BATCH_SUM_BYTES * k), &v, &got);
        if (rc < 0 || got != KL_BATCH_SUM_BYTES * k)
            return rc;
        memcpy(sums, v, got);
        rc = src->view(src->ctx, body_at + off, body, &v, &got);
        if (rc < 0 || got != body)
            return rc;
        for (uint64_t j = 0; j < k; j++) {
            size_t len =
                (size_t)KL_MIN((uint64_t)KL_BATCH_CHUNK_BYTES, body - j * KL_BATCH_CHUNK_BYTES);
            if (kl_batch_chunk_sum(v + j * KL_BATCH_CHUNK_BYTES, len, at, i + j) !=
                kl_load64(sums + KL_BATCH_SUM_BYTES * j))
                return 0;
        }
    }
    return 1;
}

int kl_batch_resync(const kl_batch_src *src, uint64_t pos, uint64_t at, uint64_t to_pos,
                    uint64_t to_index, uint64_t limit, uint64_t *pos_out, uint64_t *at_out) {
    static const uint8_t magic[4] = {KL_BATCH_MAGIC & 0xff, (KL_BATCH_MAGIC >> 8) & 0xff,
                                     (KL_BATCH_MAGIC >> 16) & 0xff, KL_BATCH_MAGIC >> 24};
    uint64_t end = KL_MIN(limit, to_pos); /* no batch that leads there starts at or past it */
    if (to_index <= at + 1 || end <= pos + 1)
        return 0; /* the damaged batch holds every block up to the known point */
    int rc = 0;
    uint64_t p = pos + 1;
    while (rc == 0 && p + KL_BATCH_HEADER_BYTES <= end) {
        size_t want = (size_t)KL_MIN((uint64_t)SCAN_BYTES, end - p), got = 0;
        const uint8_t *w = NULL;
        rc = src->view(src->ctx, p, want, &w, &got);
        if (rc < 0)
            break;
        uint64_t again = 0; /* where to view again after a candidate's check (0: go on) */
        for (size_t k = 0; k + sizeof magic <= got;) {
            const uint8_t *m = memmem(w + k, got - k, magic, sizeof magic);
            if (!m)
                break;
            uint64_t q = p + (uint64_t)(m - w);
            k = (size_t)(m - w) + 1;
            kl_batch_hdr h;
            int hrc = src->header(src->ctx, q, limit, &h);
            if (hrc < 0 && hrc != KL_ECORRUPT) {
                rc = hrc;
                break;
            }
            if (hrc < 0 || h.first_index <= at || h.first_index >= to_index)
                continue;
            rc = only_header_lost(src, pos, q, at); /* the window's view is gone */
            if (rc == 1)
                rc = leads_on(src, q, h.first_index, to_pos, to_index, limit);
            if (rc == 1) {
                *pos_out = q;
                *at_out = h.first_index;
            }
            again = q + 1;
            break;
        }
        if (rc != 0)
            break;
        if (again)
            p = again;
        else if (got < want || got < sizeof magic)
            break;
        else
            p += got - (sizeof magic - 1); /* a magic across two views is found in the next */
    }
    if (rc >= 0)
        kl_err_clear(); /* the candidates' verdicts are no one's error */
    return rc;
}
