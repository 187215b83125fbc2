/*
 * clone.c - kl_clone: download a core from a Hypercore peer into a
 * replica (kappalog.h), over one TCP connection driven by the event loop.
 *
 * The protocol, as a JS downloader runs it (notes 8.8, 8.9):
 *   1. open the core's channel, send our sync (our signed length);
 *   2. when the peer's sync shows a longer length it can upgrade us to and
 *      acknowledges ours, request the upgrade from our length (with the
 *      manifest while we have none); verify it (engine/proof.c): the
 *      roots, the tree hash, the signature, the key. The first one creates
 *      the replica with the public key it proved;
 *   3. request the blocks the peer announced (range messages), up to
 *      CLONE_WINDOW at a time, each with `nodes` = the levels we lack above
 *      its leaf (notes 7.3), and verify each against the signed roots and
 *      the nodes already proven, before anything is stored;
 *   4. append verified blocks to the replica in order, in batches; the
 *      engine checks its own roots against the signed ones at the end.
 * With `follow`, a later sync with a longer length starts over at 2.
 *
 * Nodes proven by block proofs and upgrades, and the roots of every
 * signed state before the newest, not yet stored by the replica are kept
 * in a small map (for requests' `nodes` and for verifying later proofs: a
 * block asked for before an upgrade may be answered after it, its path
 * ending at an old root); entries the replica has stored are dropped as it
 * grows.
 *
 * Untrusted peer: anything that does not verify, a message we did not ask
 * for (a data reply to no request of ours), a malformed message or a stall
 * past stall_ms ends the clone with the reason; nothing unverified is ever
 * appended, and what was appended is a committed prefix (a rerun resumes).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/log_internal.h"
#include "engine/proof.h"
#include "engine/util.h"
#include "loop.h"
#include "session.h"
#include "wire.h"

#define CLONE_WINDOW 256u /* block requests in flight */
/*
 * The most the answers to the block requests in flight may come to: a
 * JS peer answers the requests it holds in one corked batch (hypercore
 * 11.37.1 replicator.js _handleRequests, and protomux _onbatch for the
 * requests of one frame), and protomux sends a batch of up to MAX_BATCH
 * (8 MiB) plus one message as ONE frame, where a frame is at most
 * KL_FRAME_WIRE_MAX (4 MiB) here. So the clone asks for no more than this
 * at a time, counting each block at the size of the smallest signed node
 * it holds that covers it (a bound, never a guess) plus its proof; the
 * 1 MiB left is for what JS may batch with the answers (an upgrade proof,
 * sync, range: a few KiB).
 */
#define CLONE_ASKED_MAX (3u << 20)
/* a block answer besides its value: id, fork, flags, and per proof node index, size and hash */
#define CLONE_ANSWER_BYTES(nodes) (64u + 56u * (nodes))
#define CLONE_APPEND_MAX          256u       /* blocks per append */
#define CLONE_VALUE_MAX           (4u << 20) /* a block: at most one frame */
#define CLONE_HELD_MAX            (4u << 20) /* bytes of blocks received ahead of a missing one */
#define CLONE_READ_BYTES          (64u << 10)
#define UPGRADE_ID                1u                     /* block requests use id index + 2 */
#define CLONE_REASK_NS            (1000ull * 1000000ull) /* an upgrade refused: asked again after this */

typedef struct slot {
    int state; /* 0 free, 1 requested, 2 received, 3 to ask again (dropped: too much held) */
    uint64_t index;
    uint8_t *data;
    size_t len;
    size_t charge; /* while requested: what its answer may come to (CLONE_ASKED_MAX) */
} slot;

typedef struct node_map {
    kl_node *n;
    uint8_t *used;
    size_t cap, count;
} node_map;

typedef struct cloner {
    const char *dir;
    uint8_t key[KL_HASH_BYTES];
    const kl_clone_options *opts;
    kl_session *s;
    kl_loop *loop;
    int fd;
    int ch;
    int err;
    int finished;
    kl_log *log;
    kl_core_kind kind;
    uint8_t pk[KL_PK_BYTES];
    int has_pk;
    kl_signed_state target; /* the newest verified signed state */
    int has_target;
    int resume_signed; /* the replica we resumed ends in a signed commit */
    int created;       /* this run created the replica (removed again if it fails empty) */
    uint64_t fork;     /* the replica's fork (once there is a replica) */
    int reorg;         /* the peer is at a newer fork: its upgrade from 0 is awaited */
    int got_sync;      /* the peer's sync arrived */
    uint64_t have;     /* blocks stored in the replica */
    uint64_t next;     /* next block to request */
    uint64_t remote_len, remote_fork, remote_range;
    int remote_can_upgrade;
    uint64_t remote_acked; /* the length the peer says we have */
    int upgrading;         /* an upgrade to the peer's state as we know it is asked for */
    uint32_t upgrades_out; /* upgrade requests not answered yet (older ones may be among them) */
    uint64_t upgrade_asked_ns;
    uint64_t upgrade_wait_ns; /* since when the peer has a longer (or newer) state than ours, 0 */
    int upgrade_after_sync;   /* the peer refused an upgrade: ask again after its next sync */
    uint64_t refused_ns;      /* ... or a second after the refusal, whichever comes first */
    slot win[CLONE_WINDOW];
    size_t held;    /* bytes of received blocks waiting for an earlier one */
    uint64_t retry; /* blocks to ask again (state 3) */
    size_t asked;   /* the charges of the blocks requested, not answered yet */
    node_map map;
    uint64_t last_progress_ns; /* when the replica last grew, or last had all it signed */
    uint64_t last_input_ns;
    kl_wire_message msg; /* the message being handled (big: no stack, no allocation per message) */
    kl_proof_result result; /* what verifying a proof gave */
    uint8_t rbuf[CLONE_READ_BYTES];
} cloner;

static int cfail(cloner *c, int rc) {
    if (!c->err)
        c->err = rc;
    return rc;
}

/* ---- the proven-node map (open addressing on the flat-tree index) ---- */

static size_t map_slot(const node_map *m, uint64_t index) {
    size_t i = (size_t)(index * 0x9e3779b97f4a7c15ull) & (m->cap - 1);
    while (m->used[i] && m->n[i].index != index)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static const kl_node *map_get(const node_map *m, uint64_t index) {
    if (!m->cap)
        return NULL;
    size_t i = map_slot(m, index);
    return m->used[i] ? &m->n[i] : NULL;
}

static int map_put(node_map *m, const kl_node *node);

static int map_grow(node_map *m, size_t cap) {
    node_map g = {calloc(cap, sizeof *g.n), calloc(cap, 1), cap, 0};
    if (!g.n || !g.used) {
        free(g.n);
        free(g.used);
        return kl_errf(KL_ENOMEM, "proven nodes");
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i])
            map_put(&g, &m->n[i]);
    free(m->n);
    free(m->used);
    *m = g;
    return 0;
}

static int map_put(node_map *m, const kl_node *node) {
    if (m->count + 1 > m->cap / 2) {
        int rc = map_grow(m, m->cap ? 2 * m->cap : 1024);
        if (rc < 0)
            return rc;
    }
    size_t i = map_slot(m, node->index);
    if (!m->used[i]) {
        m->used[i] = 1;
        m->count++;
    }
    m->n[i] = *node;
    return 0;
}

/* Drop the nodes the replica now stores itself (everything under its first `have` blocks). */
static int map_prune(node_map *m, uint64_t have) {
    node_map keep = {0};
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i] && kl_ft_right_span(m->n[i].index) >= 2 * have) {
            int rc = map_put(&keep, &m->n[i]);
            if (rc < 0) { /* m is kept whole: only the partial copy goes */
                free(keep.n);
                free(keep.used);
                return rc;
            }
        }
    free(m->n);
    free(m->used);
    *m = keep;
    return 0;
}

/* ---- what we hold ---- */

static int is_root(const cloner *c, uint64_t index) {
    for (size_t i = 0; i < c->target.nroots; i++)
        if (c->target.roots[i].index == index)
            return 1;
    return 0;
}

/* kl_proof_get_fn: a node we hold (proven, or stored by the replica). */
static int get_node(void *ctx, uint64_t index, kl_node *out) {
    cloner *c = ctx;
    const kl_node *n = map_get(&c->map, index);
    if (n) {
        *out = *n;
        return 0;
    }
    if (c->log && kl_ft_right_span(index) < 2 * c->have)
        return kl_log_node(c->log, index, out);
    return KL_ENOTFOUND;
}

/* A node we hold (a signed root, proven, or stored), with its size. */
static int held_node(cloner *c, uint64_t index, kl_node *out) {
    for (size_t i = 0; i < c->target.nroots; i++)
        if (c->target.roots[i].index == index) {
            *out = c->target.roots[i];
            return 0;
        }
    return get_node(c, index, out);
}

/*
 * notes 7.3: the levels from leaf 2i up that we do not hold; and what the
 * answer to a request for block i may come to: the bytes under the lowest
 * node we hold above it (signed, so a bound on the block's size, however
 * the peer lies) and the proof of that many nodes.
 */
static uint64_t missing_nodes(cloner *c, uint64_t i, size_t *charge) {
    KL_ASSERT(c->has_target && i < c->target.length);
    uint64_t n = 0, idx = 2 * i;
    kl_node top;
    while (held_node(c, idx, &top) != 0) { /* ends at a root at the latest */
        n++;
        idx = kl_ft_parent(idx);
    }
    KL_ASSERT(n < 64);
    *charge = (size_t)KL_MIN(top.size, (uint64_t)CLONE_VALUE_MAX) + CLONE_ANSWER_BYTES(n);
    return n;
}

/* Room for one more request of this charge; one is always allowed, so that a block
   larger than the room still comes (alone). */
static int may_ask(const cloner *c, size_t charge) {
    return c->asked == 0 || c->asked + charge <= CLONE_ASKED_MAX;
}

/* ---- sending ---- */

/*
 * The length we hold a signature for: the newest verified upgrade's, else
 * the replica's own if its last commit is signed, else 0 (a replica that
 * stopped between two signed lengths upgrades from 0 again: its blocks are
 * kept, and the upgrade's signature then covers them).
 */
static uint64_t signed_len(const cloner *c) {
    return c->has_target ? c->target.length : c->resume_signed ? c->have : 0;
}

static int send_sync(cloner *c) {
    kl_wire_sync m = {
        .flags = KL_WIRE_SYNC_CAN_UPGRADE | KL_WIRE_SYNC_UPLOADING | KL_WIRE_SYNC_DOWNLOADING |
                 (c->has_pk && c->kind == KL_CORE_DEFAULT ? KL_WIRE_SYNC_HAS_MANIFEST : 0),
        .fork = c->has_target ? c->target.fork : c->remote_fork,
        .length = c->has_target ? c->target.length : c->have,
        .remote_length = c->remote_len};
    uint8_t buf[64];
    size_t n = 0;
    int rc = kl_wire_sync_encode(&m, buf, sizeof buf, &n);
    return rc < 0 ? rc : kl_session_send(c->s, c->ch, KL_MSG_SYNC, buf, n);
}

static int send_request(cloner *c, const kl_proof_request *r) {
    uint8_t buf[128];
    size_t n = 0;
    int rc = kl_proof_request_encode(r, buf, sizeof buf, &n);
    return rc < 0 ? rc : kl_session_send(c->s, c->ch, KL_MSG_REQUEST, buf, n);
}

/* Every upgrade request has id UPGRADE_ID; the peer answers requests in order. */
static int ask_upgrade(cloner *c, const kl_proof_request *r) {
    int rc = send_request(c, r);
    if (rc < 0)
        return rc;
    c->upgrading = 1;
    c->upgrades_out++;
    c->upgrade_asked_ns = kl_mono_ns();
    return 0;
}

/* Ask for an upgrade if the peer has more and acknowledges our length; then blocks. */
static int pump(cloner *c) {
    if (c->ch < 0 || !kl_session_channel_open(c->s, c->ch))
        return 0;
    uint64_t mine = signed_len(c);
    if (c->reorg && !c->upgrading && !c->upgrade_after_sync) {
        /* the peer truncated: prove its whole new tree, from nothing (a JS peer does not
           say canUpgrade to a peer of another fork, but answers) */
        kl_proof_request r;
        memset(&r, 0, sizeof r);
        r.flags = KL_PROOF_UPGRADE;
        r.id = UPGRADE_ID;
        r.fork = c->remote_fork;
        r.upgrade.start = 0;
        r.upgrade.length = c->remote_len;
        return ask_upgrade(c, &r);
    }
    if (c->reorg)
        return 0;
    if (!c->upgrading && !c->upgrade_after_sync && c->remote_can_upgrade && c->remote_len > mine &&
        c->remote_acked == mine) {
        kl_proof_request r;
        memset(&r, 0, sizeof r);
        r.flags = KL_PROOF_UPGRADE | (c->has_pk ? 0 : KL_PROOF_MANIFEST);
        r.id = UPGRADE_ID;
        r.fork = c->remote_fork;
        r.upgrade.start = mine;
        r.upgrade.length = c->remote_len - mine;
        int rc = ask_upgrade(c, &r);
        if (rc < 0)
            return rc;
    }
    if (!c->has_target)
        return 0;
    for (uint64_t i = c->have; c->retry > 0 && i < c->next; i++) {
        slot *w = &c->win[i % CLONE_WINDOW];
        if (w->state != 3 || (i != c->have && c->held > CLONE_HELD_MAX / 2))
            continue; /* the next block to append is always asked again */
        kl_proof_request r;
        memset(&r, 0, sizeof r);
        r.flags = KL_PROOF_BLOCK;
        r.id = i + 2;
        r.fork = c->target.fork;
        r.block.index = i;
        size_t charge = 0;
        r.block.nodes = missing_nodes(c, i, &charge);
        if (!may_ask(c, charge))
            return 0; /* the answers in flight fill a frame already */
        int rc = send_request(c, &r);
        if (rc < 0)
            return rc;
        w->state = 1;
        w->charge = charge;
        c->asked += charge;
        c->retry--;
    }
    uint64_t avail = KL_MIN(c->target.length, c->remote_range);
    while (c->next < avail && c->next < c->have + CLONE_WINDOW) {
        slot *w = &c->win[c->next % CLONE_WINDOW];
        KL_ASSERT(w->state == 0);
        kl_proof_request r;
        memset(&r, 0, sizeof r);
        r.flags = KL_PROOF_BLOCK;
        r.id = c->next + 2;
        r.fork = c->target.fork;
        r.block.index = c->next;
        size_t charge = 0;
        r.block.nodes = missing_nodes(c, c->next, &charge);
        if (!may_ask(c, charge))
            break; /* the answers in flight fill a frame already */
        int rc = send_request(c, &r);
        if (rc < 0)
            return rc;
        *w = (slot){.state = 1, .index = c->next, .charge = charge};
        c->asked += charge;
        c->next++;
    }
    return 0;
}

/* ---- receiving ---- */

/*
 * Create the replica beside DIR (DIR.creating, whose name is ours: what a
 * crash left there is removed first), then rename it into place: a crash
 * never leaves DIR half created, and a rerun finds either nothing or a
 * replica it can resume. It is created at the fork of the state the peer
 * proved (a new replica is at fork 0; an empty truncation moves it to
 * `fork`): the engine takes a signed state of its own fork only.
 */
static int open_replica(cloner *c, uint64_t fork) {
    kl_config cfg;
    kl_config_default(&cfg);
    cfg.compat = c->kind == KL_CORE_COMPAT;
    if (c->opts && c->opts->fsync_set)
        cfg.fsync_mode = c->opts->fsync_mode;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.creating", c->dir) >= sizeof tmp)
        return kl_errf(KL_EINVAL, "%s: path too long", c->dir);
    int rc = kl_remove_tree(AT_FDCWD, tmp, 4);
    kl_io *io = NULL;
    if (rc == 0)
        rc = kl_io_new(KL_IO_AUTO, &io);
    if (rc == 0)
        rc = kl_replica_create_io(tmp, &cfg, c->pk, io);
    if (rc == 0 && fork > 0)
        rc = kl_replica_truncate(tmp, 0, fork);
    if (rc == 0 && rename(tmp, c->dir) != 0)
        rc = kl_errf(errno == ENOTEMPTY || errno == EEXIST ? KL_EEXIST : KL_EIO,
                     "moving the new replica to %s: %s", c->dir, strerror(errno));
    if (rc == 0) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", c->dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = 0;
        else
            snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
        rc = kl_io_sync_dir(io, parent);
        rc = rc < 0 ? kl_errf(KL_EIO, "syncing %s: %s", parent, strerror(-rc)) : 0;
    }
    if (io)
        kl_io_destroy(io);
    if (rc < 0) {
        kl_remove_tree(AT_FDCWD, tmp, 4);
        return rc;
    }
    c->created = 1;
    return kl_log_open(c->dir, NULL, &c->log);
}

/* Let go of every block asked for or held: the peer's fork changed under them. */
static void drop_window(cloner *c) {
    for (size_t i = 0; i < CLONE_WINDOW; i++) {
        free(c->win[i].data);
        c->win[i] = (slot){0};
    }
    c->held = 0;
    c->retry = 0;
    c->asked = 0;
    c->next = c->have;
}

/*
 * The peer truncated and res is its new tree, verified from nothing: keep
 * the blocks under the new roots the replica already holds (each root
 * that covers only stored blocks and equals our node there), cut the rest
 * (kl_replica_truncate: crash-safe, unsigned until the new signed length
 * is reached), and download from there.
 */
static int reorg_replica(cloner *c, const kl_proof_result *res, uint64_t fork) {
    uint64_t keep = 0;
    for (size_t i = 0; i < res->nroots; i++) {
        uint64_t end = kl_ft_right_span(res->roots[i].index) / 2 + 1;
        kl_node mine;
        if (end > c->have || kl_log_node(c->log, res->roots[i].index, &mine) < 0 ||
            mine.size != res->roots[i].size ||
            memcmp(mine.hash, res->roots[i].hash, KL_HASH_BYTES) != 0)
            break;
        keep = end;
    }
    int rc = kl_log_close(c->log);
    c->log = NULL;
    if (rc == 0)
        rc = kl_replica_truncate(c->dir, keep, fork);
    if (rc == 0)
        rc = kl_log_open(c->dir, NULL, &c->log);
    if (rc < 0)
        return kl_err_prefix(rc, "following the peer's truncation: ");
    c->have = keep;
    c->fork = fork;
    c->has_target = 0;
    drop_window(c);
    free(c->map.n);
    free(c->map.used);
    memset(&c->map, 0, sizeof c->map); /* nodes proven under the old fork */
    return 0;
}

/*
 * A newer signed state replaces the target: what the old one proved stays
 * proven. Its roots are inner nodes of the new tree (an append-only tree:
 * a node covers the same blocks at every length of a fork), and a block
 * request asked before the upgrade was verified counted them as held, so
 * its `nodes` stops at one and its answer, verified after the upgrade,
 * needs it (a follower whose source appends meanwhile meets this all the
 * time). The upgrade's own nodes are kept too, as JS keeps them. Roots of
 * the new target and nodes the replica stores are not kept here.
 */
static int keep_proven(cloner *c, const kl_node *old_roots, size_t nold,
                       const kl_proof_result *res) {
    for (size_t k = 0; k < nold + res->nnodes; k++) {
        const kl_node *n = k < nold ? &old_roots[k] : &res->nodes[k - nold];
        if (kl_ft_right_span(n->index) >= 2 * c->have && !is_root(c, n->index)) {
            int rc = map_put(&c->map, n);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int on_upgrade(cloner *c, const kl_proof *p) {
    kl_proof_result *res = &c->result;
    kl_slot cur;
    memset(&cur, 0, sizeof cur);
    const int reorg = c->reorg;
    if (c->log && c->resume_signed && !reorg)
        kl_commit_last(c->log, &cur); /* else: from length 0, no roots */
    kl_core_kind kind = c->has_pk ? c->kind : p->manifest ? KL_CORE_DEFAULT : KL_CORE_COMPAT;
    kl_proof_receiver rx = {
        .kind = kind,
        .key = c->key,
        .pk = c->has_pk                ? c->pk
              : kind == KL_CORE_COMPAT ? c->key
                                       : NULL,
        .length = reorg           ? 0
                  : c->has_target ? c->target.length
                                  : cur.length,
        .fork = p->fork,
        .roots = reorg           ? NULL
                 : c->has_target ? c->target.roots
                                 : cur.roots,
        .nroots = reorg           ? 0
                  : c->has_target ? c->target.nroots
                                  : cur.nroots,
        .get = get_node,
        .ctx = c,
    };
    int rc = kl_proof_verify(&rx, p, res);
    if (rc == KL_EVERIFY && !reorg && rx.length > 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", kl_err_thread());
        rc = kl_errf(KL_EVERIFY,
                     "%s: the peer's tree of fork %llu does not extend the signed %llu blocks this "
                     "replica holds (a dishonest peer, or a writer that lost signed appends in a "
                     "power loss under fsync interval or never, and signed other blocks in their "
                     "place); the replica keeps what it has",
                     why, (unsigned long long)p->fork, (unsigned long long)rx.length);
    }
    if (rc == 0 && !c->has_pk) {
        c->kind = kind;
        memcpy(c->pk, kind == KL_CORE_COMPAT ? c->key : res->pk, KL_PK_BYTES);
        c->has_pk = 1;
        rc = open_replica(c, p->fork);
    }
    if (rc == 0 && reorg && p->fork <= c->fork)
        rc = kl_errf(KL_EFORK, "the peer's upgrade is of fork %llu, this replica is at %llu",
                     (unsigned long long)p->fork, (unsigned long long)c->fork);
    if (rc == 0 && reorg)
        rc = reorg_replica(c, res, p->fork);
    if (rc == 0) {
        c->reorg = 0;
        c->fork = p->fork;
    }
    /* the roots of the signed state this upgrade grew (none after a truncation: another tree) */
    kl_node old_roots[KL_MAX_ROOTS];
    size_t nold = 0;
    if (rc == 0 && !reorg && c->has_target) {
        nold = c->target.nroots;
        memcpy(old_roots, c->target.roots, nold * sizeof *old_roots);
    }
    if (rc == 0) {
        c->target.length = res->length;
        c->target.fork = p->fork;
        c->target.nroots = res->nroots;
        memcpy(c->target.roots, res->roots, res->nroots * sizeof *res->roots);
        memcpy(c->target.sig, res->signature, res->signature_len);
        c->target.sig_len = res->signature_len;
        c->has_target = 1;
        rc = kl_replica_target(c->log, &c->target);
    }
    if (rc == 0)
        rc = keep_proven(c, old_roots, nold, res);
    if (rc == 0)
        c->upgrade_wait_ns = 0; /* progress: a longer wait starts now */
    c->upgrading = 0;
    if (rc < 0)
        return kl_err_prefix(rc, "the peer's upgrade: ");
    return send_sync(c);
}

/*
 * The answer to an upgrade request: data (proof != NULL) or noData. Only the
 * answer to the last one asked counts; one the peer could not give (noData,
 * or a proof of a fork it has left since) is asked again after its next
 * sync, which tells what there is to ask for now.
 */
static int on_upgrade_answer(cloner *c, const kl_proof *proof) {
    if (c->upgrades_out == 0)
        return kl_errf(KL_EPEER, "the peer answered upgrade request %u, which was not asked for",
                       UPGRADE_ID);
    if (--c->upgrades_out > 0 || !c->upgrading)
        return 0; /* an answer to one asked before the peer's fork changed */
    if (proof && proof->fork == c->remote_fork)
        return on_upgrade(c, proof);
    c->upgrading = 0;
    c->upgrade_after_sync = 1;
    c->refused_ns = kl_mono_ns();
    return 0;
}

/* Append the verified blocks that continue the replica. */
static int flush(cloner *c) {
    kl_block blocks[CLONE_APPEND_MAX];
    for (;;) {
        size_t n = 0;
        while (n < CLONE_APPEND_MAX) {
            slot *w = &c->win[(c->have + n) % CLONE_WINDOW];
            if (w->state != 2 || w->index != c->have + n)
                break;
            blocks[n] = (kl_block){w->data, w->len};
            n++;
            if (n == CLONE_WINDOW)
                break;
        }
        if (n == 0)
            return 0;
        int rc = kl_log_append(c->log, blocks, n, NULL);
        for (size_t k = 0; k < n; k++) {
            slot *w = &c->win[(c->have + k) % CLONE_WINDOW];
            c->held -= w->len;
            free(w->data);
            *w = (slot){0};
        }
        c->last_progress_ns = kl_mono_ns();
        if (rc < 0)
            return rc;
        uint64_t before = c->have;
        c->have += n;
        if ((before >> 12) != (c->have >> 12) || c->have == c->target.length) {
            if ((rc = map_prune(&c->map, c->have)) < 0)
                return rc;
        }
        if (c->opts && c->opts->progress)
            c->opts->progress(c->opts->ctx, c->have, c->target.length);
    }
}

/*
 * A block, verified before anything is kept. Blocks are appended in order
 * (flush, after each read): one that arrives ahead of a missing one is held
 * meanwhile, up to CLONE_HELD_MAX bytes; past that it is let go and asked
 * for again later, so a peer that holds back one block while it sends the
 * others cannot make the clone hold more.
 */
static int on_block(cloner *c, const kl_proof *p) {
    uint64_t i = p->block.index;
    slot *w = &c->win[i % CLONE_WINDOW];
    if (w->state != 1 || w->index != i || p->request != i + 2)
        return kl_errf(KL_EPEER, "the peer sent block %llu, which was not asked for",
                       (unsigned long long)i);
    KL_ASSERT(c->asked >= w->charge);
    c->asked -= w->charge; /* answered: its room is free again */
    w->charge = 0;
    kl_proof_result *res = &c->result;
    kl_proof_receiver rx = {.kind = c->kind,
                            .key = c->key,
                            .pk = c->pk,
                            .length = c->target.length,
                            .fork = c->target.fork,
                            .roots = c->target.roots,
                            .nroots = c->target.nroots,
                            .get = get_node,
                            .ctx = c};
    int rc = kl_proof_verify(&rx, p, res);
    for (size_t k = 0; rc == 0 && k < res->nnodes; k++)
        if (kl_ft_right_span(res->nodes[k].index) >= 2 * c->have &&
            !is_root(c, res->nodes[k].index))
            rc = map_put(&c->map, &res->nodes[k]);
    if (rc < 0)
        return kl_err_prefix(rc, "block %llu: ", (unsigned long long)i);
    if (i != c->have && c->held + p->block.value_len > CLONE_HELD_MAX) {
        w->state = 3; /* too much held already: ask again once the replica caught up */
        c->retry++;
        return 0;
    }
    w->data = malloc(p->block.value_len ? p->block.value_len : 1);
    if (!w->data)
        return kl_errf(KL_ENOMEM, "block %llu", (unsigned long long)i);
    if (p->block.value_len) /* an empty block has no value pointer */
        memcpy(w->data, p->block.value, p->block.value_len);
    w->len = p->block.value_len;
    w->state = 2;
    c->held += w->len;
    return 0;
}

static int on_message(kl_session *s, int ch, uint64_t type, const uint8_t *p, size_t len,
                      void *ctx) {
    (void)s;
    cloner *c = ctx;
    if (ch != c->ch)
        return 0;
    kl_wire_message *m = &c->msg;
    int rc = kl_wire_message_decode(type, p, len, CLONE_VALUE_MAX, m);
    if (rc == KL_ENOTFOUND)
        return 0; /* a type we do not know: ignored, as JS does */
    if (rc == 0) {
        switch (m->type) {
        case KL_MSG_SYNC: {
            uint64_t old_len = c->remote_len, old_acked = c->remote_acked,
                     old_fork = c->remote_fork;
            c->remote_len = m->u.sync.length;
            c->remote_fork = m->u.sync.fork;
            c->remote_acked = m->u.sync.remote_length;
            c->remote_can_upgrade = (m->u.sync.flags & KL_WIRE_SYNC_CAN_UPGRADE) != 0;
            c->got_sync = 1;
            c->upgrade_after_sync = 0;
            if (c->log && c->remote_fork < c->fork)
                rc = kl_errf(KL_EFORK, "the peer is at fork %llu, older than this replica's %llu",
                             (unsigned long long)c->remote_fork, (unsigned long long)c->fork);
            else if (c->log && c->remote_fork > c->fork &&
                     (!c->reorg || c->remote_fork != old_fork)) {
                c->reorg = 1; /* the peer truncated (again): what was asked for is void */
                c->upgrading = 0;
                drop_window(c);
            }
            if (rc == 0 && (old_len != c->remote_len || old_acked != c->remote_acked))
                rc = send_sync(c); /* answer a changed sync, as JS does */
            break;
        }
        case KL_MSG_RANGE:
            if (m->u.range.start == 0 && !(m->u.range.flags & KL_WIRE_RANGE_DROP) &&
                m->u.range.length > c->remote_range)
                c->remote_range = m->u.range.length;
            break;
        case KL_MSG_DATA:
            if ((m->u.data.flags & KL_PROOF_UPGRADE) && m->u.data.request == UPGRADE_ID)
                rc = on_upgrade_answer(c, &m->u.data);
            else if ((m->u.data.flags & KL_PROOF_BLOCK) && c->log &&
                     (c->reorg || m->u.data.fork != c->fork))
                break; /* an answer of the fork before a truncation: void */
            else if ((m->u.data.flags & KL_PROOF_BLOCK) && c->has_target)
                rc = on_block(c, &m->u.data);
            else
                rc = kl_errf(KL_EPEER, "the peer sent data nobody asked for (request %llu)",
                             (unsigned long long)m->u.data.request);
            break;
        case KL_MSG_NO_DATA: {
            uint64_t id = m->u.no_data.request;
            if (id == UPGRADE_ID) {
                /* e.g. a serving peer that truncates answers the requests of the old fork,
                   an upgrade too, with noData before its sync of the new fork arrives */
                rc = on_upgrade_answer(c, NULL);
                break;
            }
            const slot *w = id >= 2 ? &c->win[(id - 2) % CLONE_WINDOW] : NULL;
            if (c->reorg || (w && (w->state != 1 || w->index != id - 2)))
                break; /* a request voided by a truncation */
            rc = kl_errf(KL_EPEER, "the peer cannot serve request %llu", (unsigned long long)id);
            break;
        }
        default:
            break; /* requests, wants, bitfields, extensions: a downloader needs none */
        }
    }
    if (rc == 0 && m->type != KL_MSG_DATA)
        rc = pump(c); /* after data, on_socket appends what arrived, then asks for more */
    return rc < 0 ? cfail(c, rc) : 0;
}

static void on_channel(kl_session *s, int ch, void *ctx) {
    (void)s;
    cloner *c = ctx;
    c->ch = ch;
    int rc = send_sync(c);
    if (rc < 0)
        cfail(c, rc);
}

static void on_closed(kl_session *s, int ch, void *ctx) {
    (void)s;
    (void)ch;
    cloner *c = ctx;
    cfail(c, kl_errf(KL_ENOTFOUND, "the peer does not serve this core (it closed the channel)"));
}

/*
 * Connect without blocking past the clone's own bounds: a non-blocking
 * connect, polled in steps of DIAL_STEP_MS until it completes, stall_ms
 * passes (an address that drops packets would otherwise hold the clone for
 * the kernel's SYN timeout, about two minutes) or *stop is set. 0 and *out,
 * 1 when stopped, or a kl_error naming the address.
 */
#define DIAL_STEP_MS 100

static int connect_one(const struct addrinfo *a, uint32_t stall_ms, volatile int *stop, int *out,
                       int *err) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        *out = fd;
        return 0;
    }
    if (errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    uint64_t deadline = kl_mono_ns() + (uint64_t)stall_ms * 1000000u;
    for (;;) {
        if (stop && *stop) {
            close(fd);
            return 1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, DIAL_STEP_MS);
        if (n < 0 && errno != EINTR) {
            *err = errno;
            break;
        }
        if (n > 0) {
            int so = 0;
            socklen_t len = sizeof so;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len) < 0)
                so = errno;
            if (so == 0) {
                *out = fd;
                return 0;
            }
            *err = so;
            break;
        }
        if (kl_mono_ns() >= deadline) {
            *err = ETIMEDOUT;
            break;
        }
    }
    close(fd);
    return -1;
}

static int dial(const char *host_port, uint32_t stall_ms, volatile int *stop, int *out) {
    struct addrinfo *ai = NULL;
    int rc = kl_addr_resolve(host_port, 0, &ai);
    if (rc < 0)
        return rc;
    int fd = -1, err = 0, got = -1;
    for (struct addrinfo *a = ai; a && got < 0; a = a->ai_next)
        got = connect_one(a, stall_ms, stop, &fd, &err);
    freeaddrinfo(ai);
    if (got == 1)
        return 1;
    if (got < 0)
        return kl_errf(KL_EIO, "connecting to %s: %s%s", host_port, strerror(err ? err : EIO),
                       err == ETIMEDOUT ? " (no answer within --stall-ms)" : "");
    /* the session's own I/O is non-blocking (MSG_DONTWAIT, the loop), as before */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out = fd;
    return 0;
}

/* Write what the session has for the peer; watch for writability while some is left. */
static int flush_out(cloner *c) {
    size_t n = 0;
    const uint8_t *p = kl_session_output(c->s, &n);
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w < 0)
            return kl_errf(KL_EIO, "sending to the peer: %s", strerror(errno));
        kl_session_sent(c->s, (size_t)w);
        p = kl_session_output(c->s, &n);
    }
    return kl_loop_mod(c->loop, c->fd, EPOLLIN | (n ? EPOLLOUT : 0));
}

static void on_socket(kl_loop *loop, int fd, uint32_t events, void *ctx) {
    (void)loop;
    cloner *c = ctx;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        uint8_t *buf = c->rbuf;
        ssize_t r = recv(fd, buf, sizeof c->rbuf, MSG_DONTWAIT);
        if (r == 0) {
            cfail(c, kl_errf(KL_EIO, "the peer closed the connection"));
            return;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            cfail(c, kl_errf(KL_EIO, "reading from the peer: %s", strerror(errno)));
            return;
        }
        if (r > 0) {
            c->last_input_ns = kl_mono_ns();
            if (kl_session_input(c->s, buf, (size_t)r) < 0) {
                cfail(c, kl_session_error(c->s));
                return;
            }
            /* what this read brought, appended in one batch; then ask for more */
            int rc = c->log && c->has_target ? flush(c) : 0;
            if (rc == 0)
                rc = pump(c);
            if (rc < 0) {
                cfail(c, rc);
                return;
            }
        }
    }
    int rc = flush_out(c);
    if (rc < 0)
        cfail(c, rc);
}

/* now - then, or 0 when `then` was taken after `now` (a time set while a loop turn ran). */
static uint64_t since(uint64_t now, uint64_t then) {
    return now > then ? now - then : 0;
}

/*
 * Restart the waits for what is owed us when nothing is: blocks while the
 * replica holds every block it has a signature for, an upgrade while the
 * peer shows nothing longer or newer than what we hold.
 */
static void note_waits(cloner *c, uint64_t now) {
    if (!c->has_target || c->have >= c->target.length)
        c->last_progress_ns = now;
    if (!c->got_sync || (!c->reorg && c->remote_len <= signed_len(c)))
        c->upgrade_wait_ns = 0;
    else if (!c->upgrade_wait_ns)
        c->upgrade_wait_ns = now;
}

/*
 * The peer stopped giving what it owes us: what it left undone, as an
 * error (0 if nothing). It owes the blocks of the length it signed, and
 * the upgrade to the length (or fork) its sync shows; a peer that sends
 * keepalives, refusals or blocks of no use meanwhile still stalls.
 */
static int stalled(const cloner *c, uint64_t now, uint64_t started_ns) {
    const uint32_t ms = c->opts->stall_ms;
    const uint64_t stall_ns = (uint64_t)ms * 1000000u;
    /* the most telling first: what was asked for and never came */
    if (since(now, c->last_progress_ns) > stall_ns && c->next > c->have)
        return kl_errf(KL_EIO, "the peer did not send block %llu, asked for %u ms ago",
                       (unsigned long long)c->have, ms);
    if (since(now, c->last_progress_ns) > stall_ns)
        return kl_errf(KL_EIO,
                       "the peer signed length %llu but offers blocks only up to %llu (waited "
                       "%u ms for block %llu)",
                       (unsigned long long)c->target.length,
                       (unsigned long long)KL_MIN(c->remote_range, c->target.length), ms,
                       (unsigned long long)c->have);
    if (c->upgrading && since(now, c->upgrade_asked_ns) > stall_ns)
        return kl_errf(KL_EIO, "the peer did not answer the upgrade asked for %u ms ago", ms);
    if (c->upgrade_wait_ns && since(now, c->upgrade_wait_ns) > stall_ns)
        return kl_errf(KL_EIO,
                       "the peer announced length %llu at fork %llu but gave no upgrade to it "
                       "within %u ms (this replica has a signed length of %llu)",
                       (unsigned long long)c->remote_len, (unsigned long long)c->remote_fork, ms,
                       (unsigned long long)signed_len(c));
    if (!kl_session_ready(c->s) && since(now, started_ns) > stall_ns)
        return kl_errf(KL_EIO, "the handshake did not finish within %u ms", ms);
    if (since(now, c->last_input_ns) > stall_ns)
        return kl_errf(KL_EIO, "the peer sent nothing for %u ms", ms);
    return 0;
}

void kl_clone_options_default(kl_clone_options *o) {
    memset(o, 0, sizeof *o);
    o->stall_ms = 10000;
}

int kl_clone(const char *host_port, const unsigned char key[32], const char *dir,
             const kl_clone_options *opts_in) {
    kl_err_clear();
    if (sodium_init() < 0)
        return kl_errf(KL_EIO, "libsodium failed to initialize");
    if (!host_port || !key || !dir)
        return kl_errf(KL_EINVAL, "kl_clone: NULL argument");
    kl_clone_options defaults;
    kl_clone_options_default(&defaults);
    const kl_clone_options *opts = opts_in ? opts_in : &defaults;
    cloner *c = calloc(1, sizeof *c);
    if (!c)
        return kl_errf(KL_ENOMEM, "clone");
    c->dir = dir;
    c->opts = opts;
    c->fd = -1;
    c->ch = -1;
    memcpy(c->key, key, KL_HASH_BYTES);
    int rc = 0;
    /* an existing replica: resume from what it holds */
    if (access(dir, F_OK) == 0) {
        struct stat st;
        char hdr[4096];
        snprintf(hdr, sizeof hdr, "%s/header", dir);
        if (stat(hdr, &st) == 0) {
            rc = kl_log_open(dir, NULL, &c->log);
            if (rc == 0 && memcmp(c->log->key, key, KL_HASH_BYTES) != 0)
                rc = kl_errf(KL_EINVAL, "%s holds another core", dir);
            if (rc == 0 && c->log->has_sk)
                rc = kl_errf(KL_EINVAL, "%s is a writable log, not a replica", dir);
            if (rc == 0) {
                c->kind = c->log->kind;
                memcpy(c->pk, c->log->public_key, KL_PK_BYTES);
                c->has_pk = 1;
                c->have = kl_log_length(c->log);
                c->next = c->have;
                kl_slot cur;
                kl_commit_last(c->log, &cur);
                c->remote_fork = c->fork = cur.fork;
                c->resume_signed = cur.sig_len != 0;
            }
        }
    }
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    kl_session_cbs cbs = {
        .on_channel = on_channel, .on_message = on_message, .on_channel_closed = on_closed};
    if (rc == 0)
        rc = kl_loop_new(&c->loop);
    int stopped = 0;
    if (rc == 0) {
        rc = dial(host_port, opts->stall_ms, opts->stop, &c->fd);
        stopped = rc == 1; /* *stop was set while it connected: nothing to do */
        if (stopped)
            rc = 0;
    }
    if (rc == 0 && !stopped)
        rc = kl_session_new(KL_NOISE_INITIATOR, sk, &cbs, c, &c->s);
    sodium_memzero(sk, sizeof sk);
    if (rc == 0 && !stopped) {
        int ch = kl_session_open_core(c->s, key);
        rc = ch < 0 ? ch : 0;
    }
    if (rc == 0 && !stopped)
        rc = kl_loop_add(c->loop, c->fd, EPOLLIN | EPOLLOUT, on_socket, c);
    c->last_input_ns = kl_mono_ns();
    const uint64_t started_ns = c->last_input_ns;
    while (rc == 0 && !stopped && !c->err) {
        if (c->got_sync && !opts->follow && c->log && !c->reorg && c->remote_fork == c->fork &&
            c->have == signed_len(c) && c->remote_len <= c->have)
            break; /* everything the peer has is here and signed */
        if (opts->stop && *opts->stop)
            break;
        rc = kl_loop_run_once(c->loop, 100);
        if (rc > 0)
            rc = 0;
        uint64_t now = kl_mono_ns();
        /* a quiet connection stays open: the peer hears from us every few seconds */
        if (rc == 0 && kl_session_keepalive(c->s, now) != 0)
            rc = kl_session_error(c->s) ? kl_session_error(c->s) : flush_out(c);
        if (rc == 0 && c->upgrade_after_sync && now - c->refused_ns > CLONE_REASK_NS) {
            c->upgrade_after_sync = 0; /* no sync came: ask again anyway */
            rc = pump(c);
            if (rc == 0)
                rc = flush_out(c);
        }
        note_waits(c, now);
        if (rc == 0)
            rc = stalled(c, now, started_ns);
    }
    if (rc == 0)
        rc = c->err;
    if (c->s)
        kl_session_free(c->s);
    if (c->fd >= 0) {
        kl_loop_del(c->loop, c->fd);
        close(c->fd);
    }
    kl_loop_free(c->loop);
    for (size_t i = 0; i < CLONE_WINDOW; i++)
        free(c->win[i].data);
    free(c->map.n);
    free(c->map.used);
    uint64_t stored = c->log ? kl_log_length(c->log) : 0;
    if (c->log) {
        int crc = kl_log_close(c->log);
        if (rc == 0)
            rc = crc;
    }
    if (rc < 0 && c->created && stored == 0)
        kl_remove_tree(AT_FDCWD, dir, 4); /* a failed fresh clone leaves nothing behind */
    free(c);
    return rc;
}
