/*
 * proof.c - Hypercore's Merkle proofs (proof.h): the `request` and `data`
 * wire encodings, the sender's proof builder and the receiver's checker.
 * The rules are notes section 7 (hypercore 11.37.1 lib/merkle-tree.js,
 * generateProof / verifyTree / verifyUpgrade); the encodings are section
 * 8.7 (lib/messages.js wire.request / wire.data).
 *
 * One walk decides both sides. prf_walk() lists, in order, the flat-tree
 * indexes of the nodes that grow a tree of s blocks into one of t blocks:
 * the right-hand siblings that grow the receiver's last root, then each
 * root to its right. The builder fetches those nodes; the checker expects exactly
 * those indexes, in that order, and nothing more, so a sender cannot slip
 * in a node the receiver would not have asked for.
 *
 * Invariants: every count is bounded before it is used (a list holds at
 * most KL_PROOF_MAX_NODES, the checker's stack and output have sizes
 * derived from that, asserted at every push); every integer read from the
 * wire is at most 2^53 - 1, so flat-tree arithmetic (depths <= 55 here)
 * never overflows; a decoder never reads past its input and refuses
 * trailing bytes; a proof is trusted only after the signature or a node the
 * receiver already holds has vouched for every hash in it.
 *
 * The one thing a reader would get wrong: a block proof that travels with
 * an upgrade (the block at or past the receiver's length) ignores the
 * request's `nodes` count. Its path climbs to the first node the upgrade
 * would have carried whole and takes that node's place in the upgrade
 * list, so the upgrade list is one node shorter and the receiver, when it
 * needs that index, uses the top of the block path instead of the next
 * list entry. And the additional nodes are not optional garnish: the
 * signature covers the sender's full length, so they are what lets the
 * receiver rebuild the tree the signature signs.
 */
#include "proof.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/*
 * The longest tree either side handles: its node indexes (< 2 * length)
 * stay at or below 2^53 - 1, the most a JS peer can send or read.
 */
#define PRF_MAX_LENGTH (1ull << 52)
/* The checker's stack: the receiver's roots plus every node both lists push. */
#define PRF_STACK_MAX (KL_MAX_ROOTS + 2u * KL_PROOF_MAX_NODES + 1u)
#define PRF_NO_NODE   UINT64_MAX

/* ---------------------------------------------------------------- encoding */

/*
 * A writer that counts what it would write: bytes land only while they fit
 * in cap, so one pass gives both the message and the size it needs.
 */
typedef struct prf_w {
    uint8_t *p;
    size_t at, cap;
} prf_w;

static void w_bytes(prf_w *w, const uint8_t *src, size_t n) {
    if (n == 0)
        return;
    if (w->at <= w->cap && n <= w->cap - w->at)
        memcpy(w->p + w->at, src, n);
    w->at = n > SIZE_MAX - w->at ? SIZE_MAX : w->at + n;
}

static void w_uint(prf_w *w, uint64_t v) {
    uint8_t b[KL_CE_UINT_MAX];
    w_bytes(w, b, kl_ce_uint(b, v));
}

static void w_nodes(prf_w *w, const kl_proof_nodes *l) {
    KL_ASSERT(l->n <= KL_PROOF_MAX_NODES);
    w_uint(w, l->n);
    for (size_t i = 0; i < l->n; i++) {
        w_uint(w, l->node[i].index);
        w_uint(w, l->node[i].size);
        w_bytes(w, l->node[i].hash, KL_HASH_BYTES);
    }
}

static int w_finish(const prf_w *w, const char *what, size_t *n) {
    *n = w->at;
    if (w->at > w->cap)
        return kl_errf(KL_ETOOSMALL, "%s needs %zu bytes, the buffer has %zu", what, w->at, w->cap);
    return 0;
}

int kl_proof_request_encode(const kl_proof_request *r, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(r != NULL && n != NULL && (out != NULL || cap == 0));
    if (r->flags & ~KL_PROOF_REQUEST_FLAGS)
        return kl_errf(KL_EINVAL, "request: unknown flag bits 0x%x", r->flags);
    prf_w w = {.p = out, .at = 0, .cap = cap};
    w_uint(&w, r->flags);
    w_uint(&w, r->id);
    w_uint(&w, r->fork);
    if (r->flags & KL_PROOF_BLOCK) {
        w_uint(&w, r->block.index);
        w_uint(&w, r->block.nodes);
    }
    if (r->flags & KL_PROOF_HASH) {
        w_uint(&w, r->hash.index);
        w_uint(&w, r->hash.nodes);
    }
    if (r->flags & KL_PROOF_SEEK) {
        w_uint(&w, r->seek.bytes);
        w_uint(&w, r->seek.padding);
    }
    if (r->flags & KL_PROOF_UPGRADE) {
        w_uint(&w, r->upgrade.start);
        w_uint(&w, r->upgrade.length);
    }
    if (r->flags & KL_PROOF_PRIORITY)
        w_uint(&w, r->priority);
    return w_finish(&w, "request", n);
}

/* The struct-level bounds of a proof (what a decoder guarantees by construction). */
static int prf_check_struct(const kl_proof *p) {
    if (p->flags & ~KL_PROOF_DATA_FLAGS)
        return kl_errf(KL_EINVAL, "data: unknown flag bits 0x%x", p->flags);
    const kl_proof_nodes *lists[] = {&p->block.nodes, &p->hash.nodes, &p->seek.nodes,
                                     &p->upgrade.nodes, &p->upgrade.additional};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (lists[i]->n > KL_PROOF_MAX_NODES)
            return kl_errf(KL_EINVAL, "data: a list of %zu nodes, more than %u", lists[i]->n,
                           KL_PROOF_MAX_NODES);
    if ((p->block.value == NULL && p->block.value_len) ||
        (p->upgrade.signature == NULL && p->upgrade.signature_len) ||
        (p->manifest == NULL && p->manifest_len))
        return kl_errf(KL_EINVAL, "data: a length without its bytes");
    return 0;
}

/*
 * Empty a proof or a result without zeroing their node arrays (tens of KB,
 * and a proof is decoded or verified per block): every count is 0, so no
 * node past it is ever read.
 */
static void prf_clear(kl_proof *p) {
    p->flags = 0;
    p->request = p->fork = 0;
    p->block.index = 0;
    p->block.value = NULL;
    p->block.value_len = 0;
    p->block.nodes.n = 0;
    p->hash.index = 0;
    p->hash.nodes.n = 0;
    p->seek.bytes = 0;
    p->seek.nodes.n = 0;
    p->upgrade.start = p->upgrade.length = 0;
    p->upgrade.nodes.n = p->upgrade.additional.n = 0;
    p->upgrade.signature = NULL;
    p->upgrade.signature_len = 0;
    p->manifest = NULL;
    p->manifest_len = 0;
}

static void result_clear(kl_proof_result *r) {
    r->flags = 0;
    r->nnodes = 0;
    r->length = r->byte_length = 0;
    r->nroots = 0;
    memset(r->tree_hash, 0, sizeof r->tree_hash);
    memset(r->signature, 0, sizeof r->signature);
    r->signature_len = 0;
    r->learned_pk = 0;
    memset(r->pk, 0, sizeof r->pk);
}

int kl_proof_encode(const kl_proof *p, uint8_t *out, size_t cap, size_t *n) {
    KL_ASSERT(p != NULL && n != NULL && (out != NULL || cap == 0));
    int rc = prf_check_struct(p);
    if (rc)
        return rc;
    prf_w w = {.p = out, .at = 0, .cap = cap};
    w_uint(&w, p->flags);
    w_uint(&w, p->request);
    w_uint(&w, p->fork);
    if (p->flags & KL_PROOF_BLOCK) {
        w_uint(&w, p->block.index);
        w_uint(&w, p->block.value_len);
        w_bytes(&w, p->block.value, p->block.value_len);
        w_nodes(&w, &p->block.nodes);
    }
    if (p->flags & KL_PROOF_HASH) {
        w_uint(&w, p->hash.index);
        w_nodes(&w, &p->hash.nodes);
    }
    if (p->flags & KL_PROOF_SEEK) {
        w_uint(&w, p->seek.bytes);
        w_nodes(&w, &p->seek.nodes);
    }
    if (p->flags & KL_PROOF_UPGRADE) {
        w_uint(&w, p->upgrade.start);
        w_uint(&w, p->upgrade.length);
        w_nodes(&w, &p->upgrade.nodes);
        w_nodes(&w, &p->upgrade.additional);
        /* optionalBuffer: length 0 is "no signature" */
        w_uint(&w, p->upgrade.signature_len);
        w_bytes(&w, p->upgrade.signature, p->upgrade.signature_len);
    }
    /* The manifest is the last field and carries no length of its own. */
    if (p->flags & KL_PROOF_MANIFEST)
        w_bytes(&w, p->manifest, p->manifest_len);
    return w_finish(&w, "data message", n);
}

/* ---------------------------------------------------------------- decoding */

/*
 * A reader over untrusted bytes that remembers why it first failed: after
 * that every read returns zero or NULL without moving.
 */
typedef struct prf_r {
    kl_cd d;
    const char *msg; /* "request" or "data" */
    char why[160];
} prf_r;

__attribute__((format(printf, 2, 3))) static void r_fail(prf_r *r, const char *fmt, ...) {
    if (r->why[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    if (!r->d.err)
        r->d.err = KL_ECORRUPT;
}

static uint64_t r_uint(prf_r *r, const char *field) {
    if (r->d.err)
        return 0;
    size_t at = r->d.at;
    uint64_t v = kl_cd_uint(&r->d);
    if (r->d.err) {
        r->d.err = 0; /* so r_fail records this reason */
        r_fail(r, "%s at byte %zu is cut short or above 2^53 - 1", field, at);
    }
    return v;
}

static void r_nodes(prf_r *r, kl_proof_nodes *l, const char *field) {
    uint64_t n = r_uint(r, field);
    if (r->d.err)
        return;
    if (n > KL_PROOF_MAX_NODES) {
        r_fail(r, "%s: %llu nodes, more than %u", field, (unsigned long long)n, KL_PROOF_MAX_NODES);
        return;
    }
    for (size_t i = 0; i < n && !r->d.err; i++) {
        kl_node *nd = &l->node[i];
        nd->index = r_uint(r, field);
        nd->size = r_uint(r, field);
        const uint8_t *h = kl_cd_fixed(&r->d, KL_HASH_BYTES);
        if (h == NULL) {
            r_fail(r, "%s: the hash of node %zu is cut short", field, i);
            return;
        }
        memcpy(nd->hash, h, KL_HASH_BYTES);
    }
    l->n = (size_t)n;
}

/* A length-prefixed byte string of at most max bytes: its bytes, NULL when empty or failed. */
static const uint8_t *r_bytes(prf_r *r, size_t max, size_t *n, const char *field) {
    *n = 0;
    uint64_t len = r_uint(r, field);
    if (r->d.err || len == 0)
        return NULL;
    if (len > max) {
        r_fail(r, "%s of %llu bytes, more than the %zu allowed", field, (unsigned long long)len,
               max);
        return NULL;
    }
    const uint8_t *q = kl_cd_fixed(&r->d, (size_t)len);
    if (q == NULL) {
        r_fail(r, "%s of %llu bytes runs past the end", field, (unsigned long long)len);
        return NULL;
    }
    *n = (size_t)len;
    return q;
}

static uint32_t r_flags(prf_r *r, uint32_t known) {
    uint64_t f = r_uint(r, "flags");
    if (!r->d.err && (f & ~(uint64_t)known))
        r_fail(r, "unknown flag bits 0x%llx", (unsigned long long)(f & ~(uint64_t)known));
    return (uint32_t)(f & known);
}

/* The end of a decode: no failure and no byte left over. */
static int r_finish(prf_r *r) {
    if (!r->d.err && r->d.at != r->d.len)
        r_fail(r, "%zu bytes of trailing garbage after byte %zu", r->d.len - r->d.at, r->d.at);
    if (r->d.err)
        return kl_errf(KL_ECORRUPT, "%s message: %s", r->msg, r->why);
    return 0;
}

int kl_proof_request_decode(const uint8_t *in, size_t len, kl_proof_request *out) {
    KL_ASSERT(out != NULL && (in != NULL || len == 0));
    prf_r r = {.d = {.p = in, .at = 0, .len = len, .err = 0}, .msg = "request", .why = ""};
    kl_proof_request q;
    memset(&q, 0, sizeof q);
    q.flags = r_flags(&r, KL_PROOF_REQUEST_FLAGS);
    q.id = r_uint(&r, "id");
    q.fork = r_uint(&r, "fork");
    if (q.flags & KL_PROOF_BLOCK) {
        q.block.index = r_uint(&r, "block.index");
        q.block.nodes = r_uint(&r, "block.nodes");
    }
    if (q.flags & KL_PROOF_HASH) {
        q.hash.index = r_uint(&r, "hash.index");
        q.hash.nodes = r_uint(&r, "hash.nodes");
    }
    if (q.flags & KL_PROOF_SEEK) {
        q.seek.bytes = r_uint(&r, "seek.bytes");
        q.seek.padding = r_uint(&r, "seek.padding");
    }
    if (q.flags & KL_PROOF_UPGRADE) {
        q.upgrade.start = r_uint(&r, "upgrade.start");
        q.upgrade.length = r_uint(&r, "upgrade.length");
    }
    if (q.flags & KL_PROOF_PRIORITY)
        q.priority = r_uint(&r, "priority");
    int rc = r_finish(&r);
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    *out = q;
    return 0;
}

/* The manifest: all that is left, which must decode as a manifest exactly. */
static int r_manifest(prf_r *r, kl_proof *p) {
    if (r->d.err)
        return 0; /* r_finish reports the earlier failure */
    size_t n = r->d.len - r->d.at;
    if (n == 0 || n > KL_MANIFEST_MAX) {
        r_fail(r, "a manifest of %zu bytes (1 to %u)", n, KL_MANIFEST_MAX);
        return 0;
    }
    const uint8_t *m = kl_cd_fixed(&r->d, n);
    KL_ASSERT(m != NULL);
    kl_manifest dec;
    int rc = kl_hc_manifest_decode(m, n, &dec);
    if (rc)
        return kl_err_prefix(rc, "data message: ");
    p->manifest = m;
    p->manifest_len = n;
    return 0;
}

int kl_proof_decode(const uint8_t *in, size_t len, size_t max_value, kl_proof *p) {
    KL_ASSERT(p != NULL && (in != NULL || len == 0));
    prf_clear(p);
    prf_r r = {.d = {.p = in, .at = 0, .len = len, .err = 0}, .msg = "data", .why = ""};
    p->flags = r_flags(&r, KL_PROOF_DATA_FLAGS);
    p->request = r_uint(&r, "request");
    p->fork = r_uint(&r, "fork");
    if (p->flags & KL_PROOF_BLOCK) {
        p->block.index = r_uint(&r, "block.index");
        p->block.value = r_bytes(&r, max_value, &p->block.value_len, "block.value");
        r_nodes(&r, &p->block.nodes, "block.nodes");
    }
    if (p->flags & KL_PROOF_HASH) {
        p->hash.index = r_uint(&r, "hash.index");
        r_nodes(&r, &p->hash.nodes, "hash.nodes");
    }
    if (p->flags & KL_PROOF_SEEK) {
        p->seek.bytes = r_uint(&r, "seek.bytes");
        r_nodes(&r, &p->seek.nodes, "seek.nodes");
    }
    if (p->flags & KL_PROOF_UPGRADE) {
        p->upgrade.start = r_uint(&r, "upgrade.start");
        p->upgrade.length = r_uint(&r, "upgrade.length");
        r_nodes(&r, &p->upgrade.nodes, "upgrade.nodes");
        r_nodes(&r, &p->upgrade.additional, "upgrade.additionalNodes");
        p->upgrade.signature =
            r_bytes(&r, KL_PROOF_MAX_SIG_BYTES, &p->upgrade.signature_len, "upgrade.signature");
    }
    int rc = 0;
    if (p->flags & KL_PROOF_MANIFEST)
        rc = r_manifest(&r, p);
    if (rc == 0)
        rc = r_finish(&r);
    if (rc)
        memset(p, 0, sizeof *p);
    return rc;
}

/* ---------------------------------------------------------------- the walk */

/*
 * The flat-tree indexes, in order, of the nodes that take a tree of from/2
 * blocks to one of to/2 blocks (notes 7.1, "Upgrade part"; hypercore
 * upgradeProof and additionalUpgradeProof). Roots wholly inside the old
 * tree are skipped; the first root that straddles the old tree's last leaf
 * contributes the right-hand siblings on the way up from that leaf; every
 * later root comes whole. At most two per level: <= 126.
 */
static size_t prf_walk(uint64_t from, uint64_t to, uint64_t out[KL_PROOF_MAX_NODES]) {
    KL_ASSERT(from % 2 == 0 && to % 2 == 0 && from < to && to / 2 <= PRF_MAX_LENGTH);
    uint64_t roots[KL_MAX_ROOTS];
    size_t nroots = kl_ft_full_roots(to / 2, roots);
    size_t n = 0;
    int connected = from == 0;
    for (size_t r = 0; r < nroots; r++) {
        uint64_t root = roots[r];
        if (kl_ft_right_span(root) + 1 < from)
            continue; /* the receiver already has this whole root */
        if (!connected && kl_ft_contains(root, from - 2)) {
            uint64_t last = from - 2;
            for (uint64_t i = last; i != root; i = kl_ft_parent(i)) {
                uint64_t s = kl_ft_sibling(i);
                if (s > last) {
                    KL_ASSERT(n < KL_PROOF_MAX_NODES);
                    out[n++] = s;
                }
            }
        } else {
            KL_ASSERT(n < KL_PROOF_MAX_NODES);
            out[n++] = root;
        }
        connected = 1;
    }
    KL_ASSERT(n > 0);
    return n;
}

/*
 * The proof path from node `start` up to its ancestor `top` (exclusive):
 * the sibling at each level, after `start` itself when include_start.
 */
static size_t prf_path(uint64_t start, uint64_t top, int include_start,
                       uint64_t out[KL_PROOF_MAX_NODES]) {
    KL_ASSERT(kl_ft_contains(top, start) && kl_ft_depth(top) >= kl_ft_depth(start));
    size_t n = 0;
    if (include_start)
        out[n++] = start;
    for (uint64_t i = start; i != top; i = kl_ft_parent(i)) {
        KL_ASSERT(n < KL_PROOF_MAX_NODES);
        out[n++] = kl_ft_sibling(i);
    }
    return n;
}

/* ---------------------------------------------------------------- building */

/* Which nodes a proof carries: its indexes, decided before any is read. */
typedef struct prf_plan {
    uint32_t part; /* KL_PROOF_BLOCK, KL_PROOF_HASH or 0 */
    uint64_t path[KL_PROOF_MAX_NODES], up[KL_PROOF_MAX_NODES], add[KL_PROOF_MAX_NODES];
    size_t npath, nup, nadd;
} prf_plan;

static int prf_plan_request(const kl_proof_source *src, const kl_proof_request *req, uint64_t *from,
                            uint64_t *to) {
    uint64_t len = src->length;
    if (req->flags & ~KL_PROOF_REQUEST_FLAGS)
        return kl_errf(KL_EINVAL, "request: unknown flag bits 0x%x", req->flags);
    if (req->flags & KL_PROOF_SEEK)
        return kl_errf(KL_EINVAL, "request %llu: seek requests are not supported",
                       (unsigned long long)req->id);
    if (req->fork != src->fork)
        return kl_errf(KL_ECONFLICT, "request %llu is for fork %llu, this core is at fork %llu",
                       (unsigned long long)req->id, (unsigned long long)req->fork,
                       (unsigned long long)src->fork);
    *from = 0;
    *to = 2 * len;
    if (!(req->flags & KL_PROOF_UPGRADE))
        return 0;
    uint64_t start = req->upgrade.start, n = req->upgrade.length;
    if (start >= len || n == 0 || n > len - start)
        return kl_errf(KL_EINVAL, "request %llu: invalid upgrade %llu+%llu for length %llu",
                       (unsigned long long)req->id, (unsigned long long)start,
                       (unsigned long long)n, (unsigned long long)len);
    if (src->signature == NULL || src->signature_len == 0)
        return kl_errf(KL_EINVAL, "an upgrade needs the signature of length %llu",
                       (unsigned long long)len);
    *from = 2 * start;
    *to = 2 * (start + n);
    return 0;
}

/* The block or hash request as (node index, levels, last block), or KL_EINVAL. */
static int prf_plan_wanted(const kl_proof_source *src, const kl_proof_request *req, prf_plan *pl,
                           uint64_t *index, uint64_t *levels, uint64_t *last) {
    uint64_t head = 2 * src->length;
    if (req->flags & KL_PROOF_BLOCK) {
        /* hypercore: a block wins over a hash in the same request */
        pl->part = KL_PROOF_BLOCK;
        if (req->block.index >= src->length)
            return kl_errf(KL_EINVAL, "request %llu: block %llu is past the length %llu",
                           (unsigned long long)req->id, (unsigned long long)req->block.index,
                           (unsigned long long)src->length);
        *index = 2 * req->block.index;
        *levels = req->block.nodes;
        *last = req->block.index;
        return 0;
    }
    pl->part = KL_PROOF_HASH;
    uint64_t x = req->hash.index;
    if (x > KL_PROOF_MAX_U53 || kl_ft_right_span(x) >= head)
        return kl_errf(KL_EINVAL, "request %llu: node %llu is outside the tree of %llu blocks",
                       (unsigned long long)req->id, (unsigned long long)x,
                       (unsigned long long)src->length);
    *index = x;
    *levels = req->hash.nodes;
    *last = kl_ft_right_span(x) / 2;
    return 0;
}

static int prf_plan_make(const kl_proof_source *src, const kl_proof_request *req, prf_plan *pl) {
    uint64_t from = 0, to = 0;
    int rc = prf_plan_request(src, req, &from, &to);
    if (rc)
        return rc;
    int upgrade = (req->flags & KL_PROOF_UPGRADE) != 0;
    uint64_t sub = PRF_NO_NODE; /* the block/hash node an upgrade node gives way to */
    pl->part = 0;
    if (req->flags & (KL_PROOF_BLOCK | KL_PROOF_HASH)) {
        uint64_t index = 0, levels = 0, last = 0;
        rc = prf_plan_wanted(src, req, pl, &index, &levels, &last);
        if (rc)
            return rc;
        int include = pl->part == KL_PROOF_HASH;
        if (!upgrade || last < req->upgrade.start) {
            /* Case A: up `levels` ancestors, all inside the tree of to/2 blocks. */
            KL_ASSERT(kl_ft_right_span(index) < to);
            uint64_t top = index;
            for (uint64_t k = 0; k < levels; k++) {
                top = kl_ft_parent(top);
                if (kl_ft_contains(top, to))
                    return kl_errf(KL_EINVAL, "request %llu: %llu nodes is out of bounds",
                                   (unsigned long long)req->id, (unsigned long long)levels);
            }
            pl->npath = prf_path(index, top, include, pl->path);
        } else {
            sub = index; /* Case B: the path replaces an upgrade node below */
        }
    }
    if (!upgrade)
        return 0;
    uint64_t list[KL_PROOF_MAX_NODES];
    size_t n = prf_walk(from, to, list);
    int placed = sub == PRF_NO_NODE;
    for (size_t i = 0; i < n; i++) {
        if (!placed && kl_ft_contains(list[i], sub)) {
            pl->npath = prf_path(sub, list[i], pl->part == KL_PROOF_HASH, pl->path);
            placed = 1;
        } else {
            pl->up[pl->nup++] = list[i];
        }
    }
    if (!placed)
        return kl_errf(KL_EINVAL, "request %llu: the %s is not inside upgrade %llu+%llu",
                       (unsigned long long)req->id, pl->part == KL_PROOF_BLOCK ? "block" : "node",
                       (unsigned long long)req->upgrade.start,
                       (unsigned long long)req->upgrade.length);
    if (2 * src->length > to)
        pl->nadd = prf_walk(to, 2 * src->length, pl->add);
    return 0;
}

static int prf_fetch(const kl_proof_source *src, const uint64_t *idx, size_t n,
                     kl_proof_nodes *out) {
    KL_ASSERT(n <= KL_PROOF_MAX_NODES);
    for (size_t i = 0; i < n; i++) {
        kl_node *nd = &out->node[i];
        kl_err_clear(); /* so a getter that fails without a reason does not inherit one */
        int rc = src->get(src->ctx, idx[i], nd);
        if (rc)
            return kl_err_prefix(rc, "proof: node %llu: ", (unsigned long long)idx[i]);
        if (nd->index != idx[i])
            return kl_errf(KL_ECORRUPT, "proof: asked for node %llu, got node %llu",
                           (unsigned long long)idx[i], (unsigned long long)nd->index);
    }
    out->n = n;
    return 0;
}

int kl_proof_build(const kl_proof_source *src, const kl_proof_request *req, kl_proof *out) {
    KL_ASSERT(src != NULL && req != NULL && out != NULL && src->get != NULL);
    if (src->length > PRF_MAX_LENGTH)
        return kl_errf(KL_EINVAL, "a core of %llu blocks is beyond what a proof can name",
                       (unsigned long long)src->length);
    prf_plan pl;
    memset(&pl, 0, sizeof pl);
    int rc = prf_plan_make(src, req, &pl);
    if (rc)
        return rc;
    prf_clear(out);
    out->request = req->id;
    out->fork = src->fork;
    if (pl.part == KL_PROOF_BLOCK) {
        out->flags |= KL_PROOF_BLOCK;
        out->block.index = req->block.index;
        rc = prf_fetch(src, pl.path, pl.npath, &out->block.nodes);
    } else if (pl.part == KL_PROOF_HASH) {
        out->flags |= KL_PROOF_HASH;
        out->hash.index = req->hash.index;
        rc = prf_fetch(src, pl.path, pl.npath, &out->hash.nodes);
    }
    if (rc == 0 && (req->flags & KL_PROOF_UPGRADE)) {
        out->flags |= KL_PROOF_UPGRADE;
        out->upgrade.start = req->upgrade.start;
        out->upgrade.length = req->upgrade.length;
        out->upgrade.signature = src->signature;
        out->upgrade.signature_len = src->signature_len;
        rc = prf_fetch(src, pl.up, pl.nup, &out->upgrade.nodes);
        if (rc == 0)
            rc = prf_fetch(src, pl.add, pl.nadd, &out->upgrade.additional);
    }
    if (rc)
        return rc;
    if ((req->flags & KL_PROOF_MANIFEST) && src->manifest != NULL) {
        out->flags |= KL_PROOF_MANIFEST;
        out->manifest = src->manifest;
        out->manifest_len = src->manifest_len;
    }
    KL_ASSERT(!(out->flags & KL_PROOF_HASH) || out->hash.nodes.n > 0);
    return 0;
}

/* ---------------------------------------------------------------- checking */

static void v_trust(kl_proof_result *out, const kl_node *n) {
    KL_ASSERT(out->nnodes < KL_PROOF_MAX_TRUSTED);
    out->nodes[out->nnodes++] = *n;
}

/* The receiver's own state must be a tree: roots that are the full roots of its length. */
static int v_check_receiver(const kl_proof_receiver *rx) {
    if (rx->key == NULL || (rx->kind != KL_CORE_DEFAULT && rx->kind != KL_CORE_COMPAT))
        return kl_errf(KL_EINVAL, "receiver: no key or an unknown core kind");
    if (rx->length > PRF_MAX_LENGTH)
        return kl_errf(KL_EINVAL, "receiver: length %llu is beyond what a proof can name",
                       (unsigned long long)rx->length);
    uint64_t want[KL_MAX_ROOTS];
    size_t n = kl_ft_full_roots(rx->length, want);
    if (rx->nroots != n || (n && rx->roots == NULL))
        return kl_errf(KL_EINVAL, "receiver: %zu roots for length %llu, which has %zu", rx->nroots,
                       (unsigned long long)rx->length, n);
    for (size_t i = 0; i < n; i++)
        if (rx->roots[i].index != want[i])
            return kl_errf(KL_EINVAL, "receiver: root %zu is node %llu, expected %llu", i,
                           (unsigned long long)rx->roots[i].index, (unsigned long long)want[i]);
    return 0;
}

/* What the decoder guarantees, checked again for a proof made by hand. */
static int v_check_values(const kl_proof *p) {
    const kl_proof_nodes *lists[] = {&p->block.nodes, &p->hash.nodes, &p->upgrade.nodes,
                                     &p->upgrade.additional};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        for (size_t j = 0; j < lists[i]->n; j++)
            if (lists[i]->node[j].index > KL_PROOF_MAX_U53 ||
                lists[i]->node[j].size > KL_PROOF_MAX_U53)
                return kl_errf(KL_ECORRUPT, "data: node %llu of size %llu is out of range",
                               (unsigned long long)lists[i]->node[j].index,
                               (unsigned long long)lists[i]->node[j].size);
    if (p->block.index > KL_PROOF_MAX_U53 || p->upgrade.start > KL_PROOF_MAX_U53 ||
        p->upgrade.length > KL_PROOF_MAX_U53)
        return kl_errf(KL_ECORRUPT, "data: an index or length above 2^53 - 1");
    return 0;
}

/*
 * Whose key signs: the receiver's, or the one in data.manifest, which must
 * be the default single-signer manifest (the only kind kappalog follows)
 * and hash to the core key. *pk is NULL when neither says.
 */
static int v_signer(const kl_proof_receiver *rx, const kl_proof *p, kl_proof_result *out,
                    const uint8_t **pk) {
    *pk = rx->pk ? rx->pk : rx->kind == KL_CORE_COMPAT ? rx->key : NULL;
    if (!(p->flags & KL_PROOF_MANIFEST))
        return 0;
    kl_manifest m;
    int rc = kl_hc_manifest_decode(p->manifest, p->manifest_len, &m);
    if (rc)
        return kl_err_prefix(rc, "data: ");
    uint8_t def[KL_MANIFEST_MAX], key[KL_HASH_BYTES];
    size_t n = kl_hc_manifest_default(m.pk, def);
    if (n != p->manifest_len || memcmp(def, p->manifest, n) != 0)
        return kl_errf(KL_EVERIFY, "data: the manifest is not a default single-signer manifest");
    kl_hc_core_key(rx->kind, m.pk, key);
    if (memcmp(key, rx->key, KL_HASH_BYTES) != 0)
        return kl_errf(KL_EVERIFY, "data: the manifest does not belong to this core's key");
    if (*pk != NULL && memcmp(*pk, m.pk, KL_PK_BYTES) != 0)
        return kl_errf(KL_EVERIFY, "data: the manifest names another signer");
    if (*pk == NULL) {
        memcpy(out->pk, m.pk, KL_PK_BYTES);
        out->learned_pk = 1;
        *pk = out->pk;
    }
    return 0;
}

/*
 * The block (or hash) path: hash up from the leaf (or the first node),
 * each entry the sibling of the node so far. *top is the untrusted result.
 */
static int v_path(const kl_proof *p, kl_proof_result *out, kl_node *top) {
    const kl_proof_nodes *l;
    size_t i = 0;
    kl_node node;
    const char *what = p->flags & KL_PROOF_BLOCK ? "block" : "hash";
    uint64_t at = p->flags & KL_PROOF_BLOCK ? p->block.index : p->hash.index;
    if (p->flags & KL_PROOF_BLOCK) {
        l = &p->block.nodes;
        kl_hc_leaf(p->block.index, p->block.value, p->block.value_len, &node);
    } else {
        l = &p->hash.nodes;
        if (l->n == 0 || l->node[0].index != p->hash.index)
            return kl_errf(KL_EVERIFY, "hash %llu: the proof does not start with that node",
                           (unsigned long long)p->hash.index);
        node = l->node[i++];
    }
    v_trust(out, &node);
    for (; i < l->n; i++) {
        const kl_node *s = &l->node[i];
        /* node.index stays <= 2^55: past 2^53 no entry can be its sibling */
        uint64_t want = kl_ft_sibling(node.index);
        if (s->index != want)
            return kl_errf(KL_EVERIFY, "%s %llu proof: node %zu is %llu, expected %llu", what,
                           (unsigned long long)at, i, (unsigned long long)s->index,
                           (unsigned long long)want);
        kl_node parent;
        kl_hc_parent(&node, s, &parent);
        v_trust(out, s);
        v_trust(out, &parent);
        node = parent;
    }
    *top = node;
    return 0;
}

/* A stack of roots, as hypercore's appendRoot: push, then merge siblings. */
typedef struct prf_stack {
    kl_node n[PRF_STACK_MAX];
    size_t len;
} prf_stack;

static void v_push(prf_stack *s, const kl_node *nd, kl_proof_result *out) {
    KL_ASSERT(s->len < PRF_STACK_MAX);
    s->n[s->len++] = *nd;
    while (s->len >= 2 && s->n[s->len - 2].index == kl_ft_sibling(s->n[s->len - 1].index)) {
        kl_node parent;
        kl_hc_parent(&s->n[s->len - 2], &s->n[s->len - 1], &parent);
        s->len -= 2;
        s->n[s->len++] = parent;
        v_trust(out, &parent);
    }
}

/*
 * Take the nodes prf_walk(from, to) names from `l`, in order, with the
 * block path's top standing in for the one node of its index. Every entry
 * of l must be used.
 */
static int v_take(const kl_proof_nodes *l, const char *what, uint64_t from, uint64_t to,
                  kl_node *top, int *top_used, prf_stack *s, kl_proof_result *out) {
    uint64_t want[KL_PROOF_MAX_NODES];
    size_t n = prf_walk(from, to, want), next = 0;
    for (size_t i = 0; i < n; i++) {
        if (top != NULL && !*top_used && top->index == want[i]) {
            *top_used = 1; /* already in out->nodes */
            v_push(s, top, out);
            continue;
        }
        if (next >= l->n)
            return kl_errf(KL_EVERIFY, "%s: %zu nodes, node %llu is missing", what, l->n,
                           (unsigned long long)want[i]);
        const kl_node *nd = &l->node[next];
        if (nd->index != want[i])
            return kl_errf(KL_EVERIFY, "%s: node %zu is %llu, expected %llu", what, next,
                           (unsigned long long)nd->index, (unsigned long long)want[i]);
        next++;
        v_trust(out, nd);
        v_push(s, nd, out);
    }
    if (next != l->n)
        return kl_errf(KL_EVERIFY, "%s: %zu nodes, %zu more than the upgrade needs", what, l->n,
                       l->n - next);
    return 0;
}

/* The upgrade: rebuild the roots at the signed length, hash them, check the signature. */
static int v_upgrade(const kl_proof_receiver *rx, const kl_proof *p, const uint8_t *pk,
                     kl_node *top, int *top_used, kl_proof_result *out) {
    uint64_t s = rx->length, len = p->upgrade.length;
    if (p->upgrade.start != s)
        return kl_errf(KL_EVERIFY, "upgrade starts at %llu, the receiver is at %llu",
                       (unsigned long long)p->upgrade.start, (unsigned long long)s);
    if (len == 0 || len > PRF_MAX_LENGTH - s)
        return kl_errf(KL_EVERIFY, "upgrade of %llu blocks from %llu", (unsigned long long)len,
                       (unsigned long long)s);
    if (pk == NULL)
        return kl_errf(KL_EVERIFY, "upgrade: no public key (no manifest known or sent)");
    if (p->upgrade.signature_len == 0)
        return kl_errf(KL_EVERIFY, "upgrade: no signature");
    prf_stack st;
    st.len = rx->nroots;
    if (rx->nroots) /* a receiver at length 0 has no roots (and may pass NULL) */
        memcpy(st.n, rx->roots, rx->nroots * sizeof(kl_node));
    uint64_t t = s + len;
    int rc = v_take(&p->upgrade.nodes, "upgrade.nodes", 2 * s, 2 * t, top, top_used, &st, out);
    if (rc)
        return rc;
    uint64_t end = t;
    const kl_proof_nodes *add = &p->upgrade.additional;
    if (add->n) {
        /* They end at the sender's length: the right edge of the last one. */
        end = kl_ft_right_span(add->node[add->n - 1].index) / 2 + 1;
        if (end <= t || end > PRF_MAX_LENGTH)
            return kl_errf(KL_EVERIFY, "upgrade.additionalNodes end at length %llu, not past %llu",
                           (unsigned long long)end, (unsigned long long)t);
        rc = v_take(add, "upgrade.additionalNodes", 2 * t, 2 * end, NULL, NULL, &st, out);
        if (rc)
            return rc;
    }
    /* The walk named every index, so the stack holds exactly the full roots of `end`. */
    uint64_t want[KL_MAX_ROOTS];
    size_t nroots = kl_ft_full_roots(end, want);
    KL_ASSERT(st.len == nroots);
    out->byte_length = 0;
    for (size_t i = 0; i < nroots; i++) {
        KL_ASSERT(st.n[i].index == want[i]);
        out->roots[i] = st.n[i];
        out->byte_length += st.n[i].size;
    }
    out->nroots = nroots;
    out->length = end;
    kl_hc_tree_hash(out->roots, nroots, out->tree_hash);
    rc = kl_hc_verify(rx->kind, pk, rx->key, out->tree_hash, end, p->fork, p->upgrade.signature,
                      p->upgrade.signature_len);
    if (rc)
        return kl_err_prefix(rc, "upgrade to length %llu: ", (unsigned long long)end);
    KL_ASSERT(p->upgrade.signature_len <= KL_STORED_SIG_MAX); /* kl_hc_verify took it */
    memcpy(out->signature, p->upgrade.signature, p->upgrade.signature_len);
    out->signature_len = p->upgrade.signature_len;
    return 0;
}

/* A path the upgrade did not use must end at a node the receiver holds. */
static int v_held(const kl_proof_receiver *rx, const kl_node *top) {
    kl_node held;
    int found = 0;
    for (size_t i = 0; i < rx->nroots && !found; i++)
        if (rx->roots[i].index == top->index) {
            held = rx->roots[i];
            found = 1;
        }
    if (!found && rx->get != NULL) {
        kl_err_clear();
        int rc = rx->get(rx->ctx, top->index, &held);
        if (rc == 0)
            found = 1;
        else if (rc != KL_ENOTFOUND)
            return kl_err_prefix(rc, "proof: reading node %llu: ", (unsigned long long)top->index);
    }
    if (!found)
        return kl_errf(KL_EVERIFY, "proof reaches node %llu, which the receiver does not hold",
                       (unsigned long long)top->index);
    if (held.size != top->size || memcmp(held.hash, top->hash, KL_HASH_BYTES) != 0)
        return kl_errf(KL_EVERIFY, "proof reaches node %llu with another hash than the one held",
                       (unsigned long long)top->index);
    return 0;
}

static int v_all(const kl_proof_receiver *rx, const kl_proof *p, kl_proof_result *out) {
    if (p->fork != rx->fork)
        return kl_errf(KL_EVERIFY, "data is for fork %llu, the receiver is at fork %llu",
                       (unsigned long long)p->fork, (unsigned long long)rx->fork);
    if (p->flags & KL_PROOF_SEEK)
        return kl_errf(KL_EVERIFY, "data carries a seek proof, which kappalog does not ask for");
    if ((p->flags & KL_PROOF_BLOCK) && (p->flags & KL_PROOF_HASH))
        return kl_errf(KL_EVERIFY, "data carries both a block and a hash proof");
    const uint8_t *pk;
    int rc = v_signer(rx, p, out, &pk);
    if (rc)
        return rc;
    if (pk != NULL && !out->learned_pk)
        memcpy(out->pk, pk, KL_PK_BYTES);
    kl_node top;
    int has_path = (p->flags & (KL_PROOF_BLOCK | KL_PROOF_HASH)) != 0, top_used = 0;
    if (has_path) {
        rc = v_path(p, out, &top);
        if (rc)
            return rc;
    }
    if (p->flags & KL_PROOF_UPGRADE) {
        rc = v_upgrade(rx, p, pk, has_path ? &top : NULL, &top_used, out);
        if (rc)
            return rc;
    }
    if (has_path && !top_used) {
        rc = v_held(rx, &top);
        if (rc)
            return rc;
    }
    out->flags = p->flags & (KL_PROOF_BLOCK | KL_PROOF_HASH | KL_PROOF_UPGRADE);
    return 0;
}

int kl_proof_verify(const kl_proof_receiver *rx, const kl_proof *p, kl_proof_result *out) {
    KL_ASSERT(rx != NULL && p != NULL && out != NULL);
    result_clear(out);
    int rc = v_check_receiver(rx);
    if (rc == 0)
        rc = prf_check_struct(p);
    if (rc == 0)
        rc = v_check_values(p);
    if (rc)
        return rc;
    /* Without an upgrade the signed state stays the receiver's. */
    out->length = rx->length;
    out->nroots = rx->nroots;
    for (size_t i = 0; i < rx->nroots; i++) {
        out->roots[i] = rx->roots[i];
        out->byte_length += rx->roots[i].size;
    }
    rc = v_all(rx, p, out);
    if (rc) {
        result_clear(out);
        return rc;
    }
    KL_ASSERT(out->nnodes <= KL_PROOF_MAX_TRUSTED && out->nroots <= KL_MAX_ROOTS);
    return 0;
}
