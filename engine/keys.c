/*
 * keys.c - the log's signing key: the `secret` file (the 64-byte Ed25519
 * secret key, seed then public key, mode 0600) and the keys derived from the
 * public key the header stores (core key, discovery key).
 *
 * A log without a usable secret is still a log: it can be read, verified
 * and served, but not appended to. Why the secret is unusable (missing,
 * wrong size, someone else's key) is kept for the error an append returns.
 * The key is never logged, and wiped when the handle goes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log_internal.h"
#include "util.h"

void kl_keys_derive(kl_log *log) {
    kl_hc_core_key(log->kind, log->public_key, log->key);
    kl_hc_discovery_key(log->key, log->dkey);
}

int kl_keys_load(kl_log *log) {
    char path[4096];
    snprintf(path, sizeof path, "%s/secret", log->dir);
    log->has_sk = 0;
    log->secret_unsafe = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(log->sk_problem, sizeof log->sk_problem,
                 errno == ENOENT
                     ? "%s is missing: without its secret key the log is read-only (a replica)"
                     : "%s cannot be read",
                 path);
        return 0;
    }
    struct stat st;
    uint8_t buf[KL_SK_BYTES + 1];
    ssize_t got = fstat(fd, &st) == 0 ? read(fd, buf, sizeof buf) : -1;
    close(fd);
    if (got != (ssize_t)KL_SK_BYTES) {
        snprintf(log->sk_problem, sizeof log->sk_problem,
                 got < 0 ? "%s cannot be read" : "%s is not a secret key (%zd bytes, not 64)", path,
                 got);
        sodium_memzero(buf, sizeof buf);
        return 0;
    }
    /* the secret key is seed || public key: its public half must be this log's */
    uint8_t pk[KL_PK_BYTES], sk[KL_SK_BYTES];
    kl_hc_keypair(buf, pk, sk);
    int ok = sodium_memcmp(pk, log->public_key, KL_PK_BYTES) == 0 &&
             sodium_memcmp(buf + 32, log->public_key, KL_PK_BYTES) == 0;
    if (ok) {
        memcpy(log->sk, sk, KL_SK_BYTES);
        log->has_sk = 1;
        log->secret_unsafe = (st.st_mode & 077) != 0;
    } else {
        snprintf(log->sk_problem, sizeof log->sk_problem,
                 "%s is not the secret key of this log (its public key differs)", path);
    }
    sodium_memzero(buf, sizeof buf);
    sodium_memzero(sk, sizeof sk);
    return 0;
}
