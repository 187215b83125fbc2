/*
 * tool_hcpeer.c - a minimal kappalog client of a live Hypercore peer, for
 * tests/test_hc_wire_live.sh: it connects over TCP as the Noise initiator,
 * opens the core KEY (replication/session.c: handshake, secret stream,
 * Protomux, capability), sends its sync as a new clone does, and when the
 * server's sync announces a length it asks for the upgrade from 0 (with
 * the manifest for a default core), then checks the data message as a
 * receiver (engine/proof.c: the tree hash, the signature over it, the
 * public key learned from the manifest). It prints one JSON line:
 *
 *   {"length":N,"tree_hash":"..","signature":"..","public_key":"..","range":N}
 *
 * where range is the contiguous length the server announced with a range
 * message. Exit 0 when all of it arrived and verified, 1 on any failure
 * (with the reason on stderr), 2 on usage errors.
 *
 *   tool_hcpeer HOST:PORT KEYHEX [--compat] [--timeout SECONDS]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/hc.h"
#include "testutil.h"
#include "kappalog.h"
#include "engine/proof.h"
#include "replication/session.h"
#include "replication/wire.h"

typedef struct client {
    int compat;
    uint8_t key[KL_HASH_BYTES];
    int ch;
    int requested;
    int done;
    uint64_t range;
    kl_proof_result *res;
} client;

static void hex(const uint8_t *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void on_channel(kl_session *s, int ch, void *ctx) {
    client *c = ctx;
    kl_wire_sync sync = {.flags = KL_WIRE_SYNC_CAN_UPGRADE | KL_WIRE_SYNC_UPLOADING |
                                  KL_WIRE_SYNC_DOWNLOADING};
    uint8_t buf[64];
    size_t n = 0;
    if (kl_wire_sync_encode(&sync, buf, sizeof buf, &n) == 0)
        kl_session_send(s, ch, KL_MSG_SYNC, buf, n);
    c->ch = ch;
}

static void on_closed(kl_session *s, int ch, void *ctx) {
    (void)s;
    (void)ch;
    (void)ctx;
    fprintf(stderr, "tool_hcpeer: the server closed or rejected the core's channel\n");
    exit(1);
}

static int on_sync(kl_session *s, client *c, int ch, const uint8_t *p, size_t len) {
    kl_wire_sync sync;
    int rc = kl_wire_sync_decode(p, len, &sync);
    if (rc < 0)
        return rc;
    if (c->requested || sync.length == 0 || !(sync.flags & KL_WIRE_SYNC_CAN_UPGRADE) ||
        sync.remote_length != 0)
        return 0;
    kl_proof_request req;
    memset(&req, 0, sizeof req);
    req.flags = KL_PROOF_UPGRADE | (c->compat ? 0 : KL_PROOF_MANIFEST);
    req.id = 1;
    req.fork = sync.fork;
    req.upgrade.start = 0;
    req.upgrade.length = sync.length;
    uint8_t buf[128];
    size_t n = 0;
    if ((rc = kl_proof_request_encode(&req, buf, sizeof buf, &n)) < 0)
        return rc;
    c->requested = 1;
    return kl_session_send(s, ch, KL_MSG_REQUEST, buf, n);
}

static int on_data(client *c, const uint8_t *p, size_t len) {
    kl_proof *pr = calloc(1, sizeof *pr);
    if (!pr)
        return KL_ENOMEM;
    int rc = kl_proof_decode(p, len, 1u << 20, pr);
    kl_proof_receiver rx = {.kind = c->compat ? KL_CORE_COMPAT : KL_CORE_DEFAULT,
                            .key = c->key,
                            .pk = c->compat ? c->key : NULL,
                            .length = 0,
                            .fork = pr->fork};
    if (rc == 0)
        rc = kl_proof_verify(&rx, pr, c->res);
    free(pr);
    if (rc == 0)
        c->done = 1;
    return rc;
}

static int on_message(kl_session *s, int ch, uint64_t type, const uint8_t *p, size_t len,
                      void *ctx) {
    client *c = ctx;
    if (type == KL_MSG_SYNC)
        return on_sync(s, c, ch, p, len);
    if (type == KL_MSG_DATA)
        return on_data(c, p, len);
    if (type == KL_MSG_RANGE) {
        kl_wire_range r;
        int rc = kl_wire_range_decode(p, len, &r);
        if (rc == 0 && r.start == 0 && !(r.flags & KL_WIRE_RANGE_DROP) && r.length > c->range)
            c->range = r.length;
        return rc;
    }
    if (type == KL_MSG_NO_DATA) {
        fprintf(stderr, "tool_hcpeer: the server answered noData\n");
        exit(1);
    }
    return 0; /* bitfield, want, extension...: not needed here */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tool_hcpeer HOST:PORT KEYHEX [--compat] [--timeout SECONDS]\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    client c;
    memset(&c, 0, sizeof c);
    c.ch = -1;
    int timeout_s = 20;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--compat") == 0)
            c.compat = 1;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_s = atoi(argv[++i]);
        else {
            fprintf(stderr, "tool_hcpeer: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    size_t kn = 0;
    if (sodium_hex2bin(c.key, sizeof c.key, argv[2], strlen(argv[2]), NULL, &kn, NULL) != 0 ||
        kn != sizeof c.key) {
        fprintf(stderr, "tool_hcpeer: the key must be 64 hex digits\n");
        return 2;
    }
    c.res = calloc(1, sizeof *c.res);
    int fd = tu_dial(argv[1]);
    if (fd < 0) {
        fprintf(stderr, "tool_hcpeer: cannot connect to %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    kl_session_cbs cbs = {
        .on_channel = on_channel, .on_message = on_message, .on_channel_closed = on_closed};
    kl_session *s = NULL;
    if (kl_session_new(KL_NOISE_INITIATOR, sk, &cbs, &c, &s) < 0 ||
        kl_session_open_core(s, c.key) < 0) {
        fprintf(stderr, "tool_hcpeer: %s\n", kl_last_error());
        return 1;
    }
    time_t deadline = time(NULL) + timeout_s;
    static uint8_t buf[1 << 16];
    while (!(c.done && c.range > 0)) {
        if (time(NULL) > deadline) {
            fprintf(stderr, "tool_hcpeer: timed out (upgrade %s, range %llu)\n",
                    c.done ? "verified" : "not verified", (unsigned long long)c.range);
            return 1;
        }
        size_t pending = 0;
        const uint8_t *out = kl_session_output(s, &pending);
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (pending ? POLLOUT : 0)};
        if (poll(&pfd, 1, 200) < 0 && errno != EINTR)
            return 1;
        if (pfd.revents & POLLOUT) {
            ssize_t w = write(fd, out, pending);
            if (w > 0)
                kl_session_sent(s, (size_t)w);
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                fprintf(stderr, "tool_hcpeer: the server closed the connection\n");
                return 1;
            }
            if (kl_session_input(s, buf, (size_t)r) < 0) {
                fprintf(stderr, "tool_hcpeer: %s\n", kl_last_error());
                return 1;
            }
        }
    }
    char th[65], sig[2 * KL_STORED_SIG_MAX + 1], pkh[65];
    hex(c.res->tree_hash, KL_HASH_BYTES, th);
    hex(c.res->signature, c.res->signature_len, sig);
    hex(c.res->pk, KL_PK_BYTES, pkh);
    printf("{\"length\":%llu,\"tree_hash\":\"%s\",\"signature\":\"%s\",\"public_key\":\"%s\","
           "\"range\":%llu}\n",
           (unsigned long long)c.res->length, th, sig, pkh, (unsigned long long)c.range);
    kl_session_free(s);
    close(fd);
    free(c.res);
    return 0;
}
