/*
 * log_proof.c - proofs from a log: kl_log_proof answers a Hypercore
 * request (which block, how many levels of its path, which upgrade) with the
 * `data` message a JavaScript peer would send, built from the committed
 * tree (proof.c has the rules, tree.c the nodes).
 *
 * Everything comes from one snapshot of the last commit (length, fork,
 * signature): nodes of the tree file never change while the handle is
 * open, so a proof built while appends go on is still the proof of that
 * snapshot's length.
 */
#include <stdlib.h>
#include <string.h>

#include "log_internal.h"
#include "proof.h"
#include "util.h"

/* Build and encode the answer to req (its fork is the snapshot's); *out malloc'ed. */
static int build(kl_log *log, const kl_slot *st, const kl_proof_request *r, unsigned char **out,
                 size_t *n) {
    uint8_t manifest[KL_MANIFEST_MAX];
    size_t mlen = kl_hc_manifest_default(st->public_key, manifest);
    kl_node_src ns = {log, st->length};
    kl_proof_source src = {.length = st->length,
                           .fork = st->fork,
                           .signature = st->sig,
                           .signature_len = st->sig_len,
                           .manifest = st->kind == KL_CORE_COMPAT ? NULL : manifest,
                           .manifest_len = st->kind == KL_CORE_COMPAT ? 0 : mlen,
                           .get = kl_node_src_get,
                           .ctx = &ns};
    kl_proof_request req = *r;
    req.fork = st->fork;
    const int has_block = (req.flags & KL_PROOF_BLOCK) != 0;
    kl_proof *p = malloc(sizeof *p);
    uint8_t *value = NULL;
    if (!p)
        return kl_errf(KL_ENOMEM, "proof");
    int rc = kl_proof_build(&src, &req, p);
    /* most blocks fit the first try; a bigger one is read again into its own buffer */
    uint8_t small[4096];
    if (rc == 0 && has_block) {
        size_t size = 0;
        rc = kl_log_get(log, req.block.index, small, sizeof small, &size);
        if (rc == KL_ETOOSMALL) {
            value = malloc(size);
            rc = value ? kl_log_get(log, req.block.index, value, size, &size)
                       : kl_errf(KL_ENOMEM, "proof");
        }
        p->block.value = value ? value : small;
        p->block.value_len = size;
    }
    /* the encoding is the block plus a few hundred bytes: one allocation, encoded once */
    size_t cap = (has_block ? p->block.value_len : 0) + 1024 + 64 * KL_PROOF_MAX_NODES;
    if (rc == 0)
        rc = (*out = malloc(cap)) ? kl_proof_encode(p, *out, cap, n) : kl_errf(KL_ENOMEM, "proof");
    if (rc == KL_ETOOSMALL) { /* a long manifest or signature: the size it asked for */
        free(*out);
        cap = *n;
        rc = (*out = malloc(cap)) ? kl_proof_encode(p, *out, cap, n) : kl_errf(KL_ENOMEM, "proof");
    }
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
    free(value);
    free(p);
    return rc;
}

int kl_log_proof_request(kl_log *log, const kl_proof_request *req, unsigned char **out, size_t *n) {
    if (!log || !req || !out || !n)
        return kl_errf(KL_EINVAL, "kl_log_proof: NULL argument");
    kl_err_clear();
    *out = NULL;
    *n = 0;
    kl_slot *st = malloc(sizeof *st);
    if (!st)
        return kl_log_err(log, kl_errf(KL_ENOMEM, "proof"));
    kl_commit_last(log, st);
    int rc = st->sig_len == 0 && (req->flags & KL_PROOF_UPGRADE)
                 ? kl_errf(KL_EBUSY,
                           "the state at length %llu is not signed (yet): no upgrade to it "
                           "can be proven",
                           (unsigned long long)st->length)
                 : build(log, st, req, out, n);
    free(st);
    return kl_log_err(log, rc);
}

int kl_log_proof(kl_log *log, const kl_proof_ask *ask, uint64_t request_id, unsigned char **out,
                 size_t *n) {
    if (!ask)
        return kl_errf(KL_EINVAL, "kl_log_proof: NULL argument");
    kl_proof_request req;
    memset(&req, 0, sizeof req);
    req.id = request_id;
    if (ask->block) {
        req.flags |= KL_PROOF_BLOCK;
        req.block.index = ask->block_index;
        req.block.nodes = ask->block_nodes;
    }
    if (ask->upgrade) {
        req.flags |= KL_PROOF_UPGRADE;
        req.upgrade.start = ask->upgrade_start;
        req.upgrade.length = ask->upgrade_length;
    }
    if (ask->manifest)
        req.flags |= KL_PROOF_MANIFEST;
    return kl_log_proof_request(log, &req, out, n);
}
