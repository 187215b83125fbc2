/*
 * verify.c - kl_log_verify: the whole log against its signed tree.
 *
 * One pass in block order: each block is read through the iterator (its
 * batch checksums are checked there), its leaf is hashed and added to a
 * fresh tree (a group of blocks at a time, below), and every node that
 * the blocks make and the tree file keeps (depth low and up, tree.h) is
 * compared with the stored one. Because the file keeps nodes in the order
 * they are made, the stored nodes are read sequentially, in big chunks,
 * beside the blocks. At the end the rebuilt roots must be the signed ones.
 * So a flipped bit anywhere is named: in a block (its checksum; or its
 * leaf, as the blocks under the first stored node that differs), in a node
 * (that node), in a root or signature (the slot).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_internal.h"
#include "util.h"

#define CHUNK_NODES    (32u * 1024u)
#define PROGRESS_EVERY (64u * 1024u)

/* What a pass does with a stored node that differs from the one the blocks make. */
enum pass_mode {
    PASS_VERIFY, /* name it and stop */
    PASS_COUNT,  /* count it and go on (the roots decide whether the blocks are right) */
    PASS_FIX     /* count it and write the one the blocks make in its place */
};

/* Stored nodes, read sequentially. */
typedef struct node_reader {
    kl_log *log;
    uint8_t *buf;
    uint64_t first, count; /* positions [first, first + count) are in buf */
    uint64_t total;        /* nodes the committed tree has */
    enum pass_mode mode;
    uint64_t differ; /* stored nodes that differ (PASS_COUNT, PASS_FIX) */
} node_reader;

/* The stored node at position pos (in order), or NULL with the error set. */
static const uint8_t *stored_node(node_reader *r, uint64_t pos, int *rc) {
    if (pos < r->first ||
        pos >= r->first + r->count) { /* in order, or again from a group's start */
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

/* The state to check: the last commit's, all of one commit, and its signature checked. */
static int snapshot(kl_log *log, kl_slot **out) {
    kl_slot *s = malloc(sizeof *s);
    if (!s)
        return kl_errf(KL_ENOMEM, "verify");
    kl_commit_last(log, s);
    *out = s;
    int rc = kl_slot_verify(s);
    return rc < 0
               ? kl_err_prefix(
                     rc, "the header's signature over length %llu: ", (unsigned long long)s->length)
               : 0;
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

/*
 * Blocks are checked a group at a time: their bytes are copied (the
 * iterator's pointers last only to its next batch), their leaves hashed
 * up to sixteen at a time and their nodes made a row at a time, as a commit makes
 * them (kl_tree_build_spans), and the group's stored nodes compared in one
 * sweep. A group is aligned to GROUP_BLOCKS unless its bytes run out first,
 * so most make one span. If anything in it differs, the group is checked
 * again block by block from the tree as it was before it, which names the
 * first block or node that is wrong.
 */
#define GROUP_BLOCKS 1024u
#define GROUP_BYTES  (4u * 1024u * 1024u)

typedef struct group {
    uint8_t *bytes; /* the blocks' bytes, one after another */
    size_t cap, used;
    size_t off[GROUP_BLOCKS]; /* where block k's bytes start in bytes */
    kl_block blocks[GROUP_BLOCKS];
    uint8_t hashes[GROUP_BLOCKS * KL_HASH_BYTES];
    kl_node scratch[GROUP_BLOCKS];
    /* the group's stored nodes: at most two a block and the parents that join it */
    uint8_t nodes[(2u * GROUP_BLOCKS + 2u * KL_MAX_ROOTS) * KL_TREE_NODE_BYTES];
} group;

/* Copy block k of the group. */
static int group_put(group *g, size_t k, const kl_record *rec) {
    if (g->used + rec->size > g->cap) {
        size_t cap = KL_MAX(g->cap * 2, g->used + rec->size);
        uint8_t *p = realloc(g->bytes, cap);
        if (!p)
            return kl_errf(KL_ENOMEM, "verify: %zu bytes for a group of blocks", cap);
        g->bytes = p;
        g->cap = cap;
    }
    if (rec->size)
        memcpy(g->bytes + g->used, rec->data, rec->size);
    g->off[k] = g->used;
    g->blocks[k].size = rec->size;
    g->used += rec->size;
    return 0;
}

/* Block by block: the first wrong block or node of the group [a, e), from the tree before it. */
static int name_damage(node_reader *r, kl_treeb *tb, const group *g, uint64_t a, uint64_t e,
                       uint64_t *bad) {
    uint8_t made[KL_TREEB_MAX_NEW * KL_TREE_NODE_BYTES];
    uint64_t pos = kl_tree_count(a, r->log->tree_low);
    for (uint64_t i = a; i < e; i++) {
        const kl_block *b = &g->blocks[i - a];
        size_t k = kl_treeb_add_block(tb, b->data, b->size, made);
        int rc = compare_nodes(r, i, made, k, pos, bad);
        if (rc < 0)
            return rc;
        pos += k;
    }
    return 0;
}

/*
 * PASS_COUNT, PASS_FIX: the stored nodes at positions [base, end) against
 * the ones the group's blocks made (made[0] is base's); each run of
 * differing ones is counted and, under PASS_FIX, written over.
 */
static int mend_group(node_reader *r, const uint8_t *made, uint64_t base, uint64_t end,
                      uint64_t *bad) {
    for (uint64_t pos = base; pos < end;) {
        uint64_t run = pos;
        for (; run < end; run++) {
            int rc = 0;
            const uint8_t *st = stored_node(r, run, &rc);
            if (!st) {
                *bad = UINT64_MAX;
                return rc;
            }
            if (memcmp(st, made + (run - base) * KL_TREE_NODE_BYTES, KL_TREE_NODE_BYTES) == 0)
                break;
        }
        if (run > pos) {
            r->differ += run - pos;
            if (r->mode == PASS_FIX) {
                int rc = kl_commit_tree_write(r->log, made + (pos - base) * KL_TREE_NODE_BYTES,
                                              (size_t)(run - pos) * KL_TREE_NODE_BYTES,
                                              kl_tree_off(pos), 0);
                if (rc < 0) {
                    *bad = UINT64_MAX;
                    return rc;
                }
            }
        }
        pos = run + 1; /* past the run and the node that matched after it */
    }
    return 0;
}

/* Check the group of blocks [a, e) against the stored nodes and add it to tb. */
static int check_group(node_reader *r, kl_treeb *tb, group *g, uint64_t a, uint64_t e,
                       uint64_t *bad) {
    unsigned low = r->log->tree_low;
    size_t n = (size_t)(e - a);
    for (size_t k = 0; k < n; k++)
        g->blocks[k].data = g->bytes + g->off[k];
    kl_treeb before = *tb;
    uint64_t base = kl_tree_count(a, low), end = kl_tree_count(e, low);
    KL_ASSERT(end - base <= sizeof g->nodes / KL_TREE_NODE_BYTES);
    kl_tree_hash_leaves(g->blocks, n, g->hashes);
    kl_node tops[KL_TREE_MAX_SPANS];
    size_t spans =
        kl_tree_build_spans(g->blocks, g->hashes, a, e, low, base, g->nodes, g->scratch, tops);
    kl_treeb_join(tb, tops, spans, base, g->nodes);
    if (r->mode != PASS_VERIFY)
        return mend_group(r, g->nodes, base, end, bad);
    for (uint64_t pos = base; pos < end; pos++) {
        int rc = 0;
        const uint8_t *st = stored_node(r, pos, &rc);
        if (!st || memcmp(st, g->nodes + (pos - base) * KL_TREE_NODE_BYTES, KL_TREE_NODE_BYTES)) {
            *tb = before;
            rc = name_damage(r, tb, g, a, e, bad);
            /* not expected: the same nodes, made one block at a time, differ the same way */
            if (rc == 0) {
                *bad = a;
                rc = kl_errf(KL_EVERIFY, "blocks %llu..%llu do not match the tree",
                             (unsigned long long)a, (unsigned long long)(e - 1));
            }
            return rc;
        }
    }
    return 0;
}

static int verify_blocks(kl_log *log, const kl_slot *st, enum pass_mode mode, uint64_t *differ,
                         kl_progress_fn progress, void *ctx, uint64_t *bad) {
    node_reader r = {.log = log, .total = kl_tree_count(st->length, log->tree_low), .mode = mode};
    r.buf = malloc((size_t)CHUNK_NODES * KL_TREE_NODE_BYTES);
    group *g = calloc(1, sizeof *g);
    kl_iter *it = NULL;
    int rc = r.buf && g ? kl_iter_open(log, 0, st->length, &it) : kl_errf(KL_ENOMEM, "verify");
    kl_treeb tb;
    kl_treeb_init(&tb, NULL, 0, 0, log->tree_low);
    /* After the iterator refuses a batch, blocks are read one by one (each read checks only
       the chunks that hold it), so the first bad block is named, not its batch's first. */
    int one_by_one = 0, batch_rc = 0;
    char batch_err[512] = "", read_err[512] = "";
    uint64_t batch_bad = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (uint64_t a = 0, e = 0; rc == 0 && a < st->length; a = e) {
        /* up to the next multiple of GROUP_BLOCKS, or as far as its bytes allow */
        uint64_t stop = KL_MIN(st->length, (a / GROUP_BLOCKS + 1) * GROUP_BLOCKS);
        int read_rc = 0;
        uint64_t read_bad = 0;
        g->used = 0;
        for (e = a; e < stop && (e == a || g->used < GROUP_BYTES); e++) {
            kl_record rec;
            int got = one_by_one ? 0 : kl_iter_next(it, &rec);
            if (got < 0 && !one_by_one) {
                one_by_one = 1;
                batch_rc = got;
                batch_bad = e;
                snprintf(batch_err, sizeof batch_err, "%s", kl_err_thread());
            }
            if (one_by_one)
                got = read_block(log, e, &buf, &cap, &rec);
            if (got == 0)
                got = kl_errf(KL_ECORRUPT, "block %llu is missing", (unsigned long long)e);
            if (got > 0)
                got = group_put(g, (size_t)(e - a), &rec);
            if (got < 0) {
                read_rc = got;
                read_bad = e;
                snprintf(read_err, sizeof read_err, "%s", kl_err_thread());
                break;
            }
        }
        /* the blocks before a bad one are checked first: a wrong node there comes first */
        if (e > a)
            rc = check_group(&r, &tb, g, a, e, bad);
        if (rc == 0 && read_rc < 0) {
            *bad = read_bad;
            rc = kl_errf(read_rc, "%s", read_err);
        }
        if (rc == 0 && progress && a / PROGRESS_EVERY != e / PROGRESS_EVERY)
            progress(ctx, e, st->length);
    }
    kl_iter_close(it);
    *differ = r.differ;
    free(r.buf);
    free(buf);
    if (g)
        free(g->bytes);
    free(g);
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
    uint64_t differ = 0;
    if (rc == 0)
        rc = verify_blocks(log, st, PASS_VERIFY, &differ, progress, ctx, bad);
    if (rc == 0 && log->tree_problem[0])
        rc = kl_errf(KL_ECORRUPT, "%s: %s", log->tree_path, log->tree_problem);
    for (int i = 0; rc == 0 && i < 2; i++)
        if (log->slot_problem[i][0])
            rc = kl_errf(KL_ECORRUPT,
                         "%s: header slot %d is damaged (%s); the other one holds "
                         "the log's state",
                         log->hdr_path, i, log->slot_problem[i]);
    free(st);
    return kl_log_err(log, rc);
}

/* Progress of one pass of a repair, as part of both. */
typedef struct pass_progress {
    kl_progress_fn fn;
    void *ctx;
    uint64_t before, total; /* blocks done in passes before this one; of all passes */
} pass_progress;

static void on_pass_progress(void *ctx, uint64_t done, uint64_t total) {
    (void)total;
    const pass_progress *p = ctx;
    p->fn(p->ctx, p->before + done, p->total);
}

/*
 * Two passes, both hashing every block as verify does: the first only
 * counts the stored nodes that differ from the ones the blocks make, and
 * checks that the blocks make the signed roots. Only then are the blocks
 * known to be right, so only then does the second pass write the nodes they
 * make over the stored ones that differ (the blocks are read again: nothing
 * of the first pass is kept but its verdict), and sync the file.
 */
int kl_log_repair_tree(kl_log *log, kl_progress_fn progress, void *ctx, uint64_t *rebuilt) {
    uint64_t bad = UINT64_MAX, differ = 0;
    if (rebuilt)
        *rebuilt = 0;
    if (!log)
        return kl_errf(KL_EINVAL, "log is NULL");
    kl_err_clear();
    if (log->readonly)
        return kl_log_err(log, kl_errf(KL_EREADONLY, "repairing the tree file needs a writable "
                                                     "handle (the writer's lock)"));
    kl_slot *st = NULL;
    int rc = snapshot(log, &st);
    if (!st)
        return kl_log_err(log, rc);
    pass_progress pp = {progress, ctx, 0, 2 * st->length};
    kl_progress_fn fn = progress ? on_pass_progress : NULL;
    if (rc == 0)
        rc = verify_blocks(log, st, PASS_COUNT, &differ, fn, &pp, &bad);
    if (rc < 0)
        rc = kl_err_prefix(rc, "the tree file cannot be rebuilt from the blocks: ");
    if (rc == 0 && differ > 0) {
        pp.before = st->length;
        rc = verify_blocks(log, st, PASS_FIX, &differ, fn, &pp, &bad);
        if (rc == 0)
            rc = kl_commit_tree_write(log, NULL, 0, 0, 1);
        if (rc < 0)
            rc = kl_err_prefix(rc, "rebuilding the tree file: ");
        else if (rebuilt)
            *rebuilt = differ;
    }
    if (rc == 0 && progress)
        progress(ctx, 2 * st->length, 2 * st->length);
    free(st);
    return kl_log_err(log, rc);
}
