/*
 * verify.c - kl_log_verify: the whole log against its signed tree.
 *
 * One pass in block order: each block is read through the iterator (its
 * batch checksums are checked there), its leaf is hashed and added to a
 * fresh tree, and every node that makes which the tree file keeps (depth
 * low and up, tree.h) is compared with the stored one. Because the file
 * keeps nodes in the order they are made, the stored nodes are read
 * sequentially, in big chunks, beside the blocks. At the end the rebuilt
 * roots must be the signed ones. So a flipped bit anywhere is named: in a
 * block (its checksum; or its leaf, as the blocks under the first stored
 * node that differs), in a node (that node), in a root or signature (the
 * slot).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_internal.h"
#include "util.h"

#define CHUNK_NODES    (32u * 1024u)
#define PROGRESS_EVERY (64u * 1024u)

/* Stored nodes, read sequentially. */
typedef struct node_reader {
    kl_log *log;
    uint8_t *buf;
    uint64_t first, count; /* positions [first, first + count) are in buf */
    uint64_t total;        /* nodes the committed tree has */
} node_reader;

/* The stored node at position pos (in order), or NULL with the error set. */
static const uint8_t *stored_node(node_reader *r, uint64_t pos, int *rc) {
    if (pos >= r->first + r->count) {
        uint64_t n = KL_MIN((uint64_t)CHUNK_NODES, r->total - pos);
        size_t got = 0;
        int e = kl_io_pread(r->log->io, r->log->tree_fd, r->buf, (size_t)n * KL_TREE_NODE_BYTES,
                            kl_tree_off(pos), &got);
        if (e < 0) {
            *rc = kl_errf(kl_err_from_errno(-e), "reading %s: %s", r->log->tree_path, strerror(-e));
            return NULL;
        }
        r->first = pos;
        r->count = got / KL_TREE_NODE_BYTES;
        if (r->count == 0) {
            *rc = kl_errf(KL_ECORRUPT, "%s is cut short: node %llu of %llu is missing",
                          r->log->tree_path, (unsigned long long)pos, (unsigned long long)r->total);
            return NULL;
        }
    }
    return r->buf + (pos - r->first) * KL_TREE_NODE_BYTES;
}

/* Block i on its own (kl_log_get): 1 and *rec, or an error. */
static int read_block(kl_log *log, uint64_t i, uint8_t **buf, size_t *cap, kl_record *rec) {
    size_t size = 0;
    int rc = kl_log_get_grow(log, i, buf, cap, &size);
    if (rc < 0)
        return rc;
    rec->index = i;
    rec->data = *buf;
    rec->size = size;
    return 1;
}

/* The state to check: the last commit's, all of one commit. */
static int snapshot(kl_log *log, kl_slot **out) {
    kl_slot *s = malloc(sizeof *s);
    if (!s)
        return kl_errf(KL_ENOMEM, "verify");
    kl_commit_last(log, s);
    *out = s;
    return 0;
}

/* Compare block i's new stored nodes (k of them at made) with the file's from position pos. */
static int compare_nodes(node_reader *r, uint64_t i, const uint8_t *made, size_t k, uint64_t pos,
                         uint64_t *bad) {
    unsigned low = r->log->tree_low;
    uint64_t index = kl_ft_index(low, i >> low); /* the stored ones: the chain's from depth low */
    for (size_t j = 0; j < k; j++, index = kl_ft_parent(index)) {
        int rc = 0;
        const uint8_t *st = stored_node(r, pos + j, &rc);
        if (!st) {
            *bad = i;
            return rc;
        }
        if (memcmp(st, made + j * KL_TREE_NODE_BYTES, KL_TREE_NODE_BYTES) == 0)
            continue;
        uint64_t a = kl_ft_left_span(index) / 2, b = kl_ft_right_span(index) / 2;
        *bad = a;
        if (j == 0 && low == 0)
            return kl_errf(KL_EVERIFY,
                           "block %llu does not match the tree: its leaf (node %llu) in %s "
                           "differs from the hash of its bytes",
                           (unsigned long long)i, (unsigned long long)index, r->log->tree_path);
        if (j == 0)
            return kl_errf(KL_EVERIFY,
                           "blocks %llu..%llu do not match the tree: node %llu over them in %s "
                           "differs from the hash of their bytes (a block or the node is wrong)",
                           (unsigned long long)a, (unsigned long long)b, (unsigned long long)index,
                           r->log->tree_path);
        return kl_errf(KL_EVERIFY, "tree node %llu (over blocks %llu..%llu) in %s is wrong",
                       (unsigned long long)index, (unsigned long long)a, (unsigned long long)b,
                       r->log->tree_path);
    }
    return 0;
}

static int verify_blocks(kl_log *log, const kl_slot *st, kl_progress_fn progress, void *ctx,
                         uint64_t *bad) {
    node_reader r = {.log = log, .total = kl_tree_count(st->length, log->tree_low)};
    r.buf = malloc((size_t)CHUNK_NODES * KL_TREE_NODE_BYTES);
    kl_iter *it = NULL;
    int rc = r.buf ? kl_iter_open(log, 0, st->length, &it) : kl_errf(KL_ENOMEM, "verify");
    kl_treeb tb;
    kl_treeb_init(&tb, NULL, 0, 0, log->tree_low);
    uint8_t made[KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES];
    uint64_t pos = 0;
    /* After the iterator refuses a batch, blocks are read one by one (each read checks only
       the chunks that hold it), so the first bad block is named, not its batch's first. */
    int one_by_one = 0, batch_rc = 0;
    char batch_err[512] = "";
    uint64_t batch_bad = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (uint64_t i = 0; rc == 0 && i < st->length; i++) {
        kl_record rec;
        int got = one_by_one ? 0 : kl_iter_next(it, &rec);
        if (got < 0 && !one_by_one) {
            one_by_one = 1;
            batch_rc = got;
            batch_bad = i;
            snprintf(batch_err, sizeof batch_err, "%s", kl_err_thread());
        }
        if (one_by_one) {
            got = read_block(log, i, &buf, &cap, &rec);
            if (got < 0) {
                *bad = i;
                rc = got;
                break;
            }
        }
        if (got == 0) {
            *bad = i;
            rc = kl_errf(KL_ECORRUPT, "block %llu is missing", (unsigned long long)i);
            break;
        }
        size_t k = kl_treeb_add_block(&tb, rec.data, rec.size, made);
        rc = compare_nodes(&r, i, made, k, pos, bad);
        pos += k;
        if (progress && (i + 1) % PROGRESS_EVERY == 0)
            progress(ctx, i + 1, st->length);
    }
    kl_iter_close(it);
    free(r.buf);
    free(buf);
    if (rc == 0 && batch_rc < 0) { /* a batch failed as a whole, yet each block reads */
        *bad = batch_bad;
        rc = kl_errf(batch_rc, "%s", batch_err);
    }
    if (rc < 0)
        return rc;
    if (progress)
        progress(ctx, st->length, st->length);
    for (size_t j = 0; j < tb.n; j++)
        if (j >= st->nroots || tb.roots[j].size != st->roots[j].size ||
            memcmp(tb.roots[j].hash, st->roots[j].hash, KL_HASH_BYTES) != 0) {
            *bad = kl_ft_left_span(tb.roots[j].index) / 2;
            return kl_errf(KL_EVERIFY,
                           "the blocks do not hash to the signed tree: root %llu (blocks "
                           "%llu..%llu) differs from the one in the header",
                           (unsigned long long)tb.roots[j].index, (unsigned long long)*bad,
                           (unsigned long long)(kl_ft_right_span(tb.roots[j].index) / 2));
        }
    return 0;
}

int kl_log_verify(kl_log *log, kl_progress_fn progress, void *ctx, uint64_t *bad_block) {
    uint64_t bad_local;
    uint64_t *bad = bad_block ? bad_block : &bad_local;
    *bad = UINT64_MAX;
    if (!log)
        return kl_errf(KL_EINVAL, "log is NULL");
    kl_err_clear();
    kl_slot *st = NULL;
    int rc = snapshot(log, &st);
    if (rc < 0)
        return kl_log_err(log, rc);
    rc = kl_slot_verify(st);
    if (rc < 0)
        rc = kl_err_prefix(
            rc, "the header's signature over length %llu: ", (unsigned long long)st->length);
    if (rc == 0)
        rc = verify_blocks(log, st, progress, ctx, bad);
    for (int i = 0; rc == 0 && i < 2; i++)
        if (log->slot_problem[i][0])
            rc = kl_errf(KL_ECORRUPT,
                         "%s: header slot %d is damaged (%s); the other one holds "
                         "the log's state",
                         log->hdr_path, i, log->slot_problem[i]);
    free(st);
    return kl_log_err(log, rc);
}
