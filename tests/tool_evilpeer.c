/*
 * tool_evilpeer.c - hostile Hypercore peers for tests/test_hostile.sh.
 *
 * As a server (`tool_evilpeer serve MODE LOGDIR`): listens on 127.0.0.1
 * (prints "listening on HOST:PORT", then serves ONE connection) for
 * `kappalog clone`, and misbehaves per MODE:
 *   garbage-handshake  random bytes instead of handshake message 2
 *   oversize           after the handshake, a frame header announcing 16 MiB
 *   garbage-frame      after the handshake, an encrypted frame of junk
 *   bad-proof          honest upgrade, then every block proof with one node
 *                      hash flipped
 *   bad-signature      the upgrade's signature with one bit flipped
 *   unsolicited        honest upgrade, then a block nobody asked for
 *   hold-back          honest, except that it never sends block 0
 *   no-range           honest upgrade, but announces no blocks (no range
 *                      message); an empty message every 200 ms
 *   nodata-upgrade     answers every upgrade request with noData; an empty
 *                      message every 200 ms
 *   stall              completes the handshake and channel, then says nothing
 *   garbage-header     completes the handshake, then a stream header of junk
 *   garbage-msg-T      answers the clone's sync with a hypercore message of
 *                      type T (0..9: sync .. extension) that does not decode
 *   grow               honest, and takes a second directory (`serve grow
 *                      LOGDIR LOGDIR2`): the same core at a longer length L2
 *                      (LOGDIR is a copy of it at L1). It shows L1 and no
 *                      range; once the clone syncs length L1 (its upgrade to
 *                      L1 verified) it sends sync(L2, acknowledging L1) and
 *                      then range(0, L2), and answers everything from LOGDIR2
 *                      from then on, in order. So the clone asks for the
 *                      upgrade to L2 first and for the blocks under L1 after
 *                      it, each with the `nodes` of L1's roots, and verifies
 *                      those blocks once it holds L2's: a source that
 *                      appended while a follower downloads, made
 *                      deterministic (tests/test_clone_follow.sh)
 * Everything else it does honestly (proofs from LOGDIR via kl_log_proof).
 *
 * As a client (`tool_evilpeer attack MODE HOST:PORT KEYHEX`) against
 * `kappalog serve`, misbehaving per MODE:
 *   garbage-handshake  random bytes as handshake message 1
 *   oversize           after the handshake, a frame header announcing 16 MiB
 *   garbage-frame      after the handshake and channel, an encrypted junk frame
 *   bad-data           after the channel, a data message (a server asked for none)
 *   flood              requests without reading anything back, until dropped (10 s)
 *   garbage-header     completes the handshake, then a stream header of junk
 *   garbage-msg-T      after the channel, a hypercore message of type T (0..9)
 *                      that does not decode
 *   slow-handshake     handshake message 1 one byte every 100 ms (never silent
 *                      for long, never done)
 *   hold-frame         after the handshake, all but the last byte of a frame
 *                      of the largest size allowed (4 MiB), then nothing: the
 *                      server holds it until it drops the peer as stalled
 * and prints the milliseconds from the offence until the server closed the
 * connection ("closed after N ms"); exit 0 if it was closed, 1 if not.
 *
 * A message "that does not decode" is the one byte 0xfd: every hypercore
 * message starts with a compact-encoding uint, and 0xfd announces two more
 * bytes that are not there.
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
#include "engine/proof.h"
#include "kappalog.h"
#include "replication/session.h"
#include "replication/wire.h"

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

typedef struct evil {
    const char *mode;
    kl_log *log;
    kl_log *log2; /* grow: the longer state */
    int grown;    /* grow: LOGDIR2 is served */
    kl_session *s;
    int fd;
    int ch;
    int upgraded;
    int sent_unsolicited;
} evil;

static int is(const evil *e, const char *m) {
    return strcmp(e->mode, m) == 0;
}

static void write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void flush_session(evil *e) {
    size_t n = 0;
    const uint8_t *p = kl_session_output(e->s, &n);
    if (n) {
        write_all(e->fd, p, n);
        kl_session_sent(e->s, n);
    }
}

/* The message type of a garbage-msg-T mode, or -1 for other modes. */
static int garbage_type(const evil *e) {
    unsigned t = 0;
    char end = 0;
    if (sscanf(e->mode, "garbage-msg-%u%c", &t, &end) == 1 && t <= KL_MSG_EXTENSION)
        return (int)t;
    return -1;
}

static void send_garbage_message(evil *e, int ch) {
    static const uint8_t undecodable[] = {0xfd};
    kl_session_send(e->s, ch, (uint64_t)garbage_type(e), undecodable, sizeof undecodable);
    flush_session(e);
}

/* Send a data message, tampered as the mode says. */
static int send_data(evil *e, int ch, unsigned char *msg, size_t n) {
    kl_proof *p = calloc(1, sizeof *p);
    int rc = kl_proof_decode(msg, n, 1u << 24, p);
    if (rc == 0 && is(e, "bad-proof") && (p->flags & KL_PROOF_BLOCK) && p->block.nodes.n > 0)
        p->block.nodes.node[0].hash[0] ^= 1;
    else if (rc == 0 && is(e, "bad-proof") && (p->flags & KL_PROOF_BLOCK) && p->block.value_len)
        ((uint8_t *)p->block.value)[0] ^= 1; /* a root leaf: the value itself */
    if (rc == 0 && is(e, "bad-signature") && (p->flags & KL_PROOF_UPGRADE))
        ((uint8_t *)p->upgrade.signature)[10] ^= 1;
    uint8_t *out = malloc(n + 64);
    size_t m = 0;
    if (rc == 0)
        rc = kl_proof_encode(p, out, n + 64, &m);
    if (rc == 0)
        rc = kl_session_send(e->s, ch, KL_MSG_DATA, out, m);
    free(out);
    free(p);
    return rc;
}

static int srv_message(kl_session *s, int ch, uint64_t type, const uint8_t *payload, size_t len,
                       void *ctx) {
    evil *e = ctx;
    if (is(e, "stall"))
        return 0;
    kl_wire_message *m = calloc(1, sizeof *m);
    int rc = kl_wire_message_decode(type, payload, len, 0, m);
    if (rc == 0 && m->type == KL_MSG_SYNC && garbage_type(e) >= 0) {
        send_garbage_message(e, ch);
    } else if (rc == 0 && m->type == KL_MSG_SYNC) {
        kl_info info;
        kl_log_info(e->log, &info);
        if (is(e, "grow") && !e->grown && info.length > 0 && m->u.sync.length == info.length)
            e->grown = 1; /* the clone holds L1 now: the source "appends" */
        if (e->grown)
            kl_log_info(e->log2, &info);
        kl_wire_sync sy = {.flags = KL_WIRE_SYNC_CAN_UPGRADE | KL_WIRE_SYNC_UPLOADING |
                                    KL_WIRE_SYNC_HAS_MANIFEST,
                           .length = info.length,
                           .remote_length = m->u.sync.length};
        uint8_t buf[64];
        size_t n = 0;
        kl_wire_sync_encode(&sy, buf, sizeof buf, &n);
        kl_session_send(s, ch, KL_MSG_SYNC, buf, n);
        kl_wire_range r = {.start = 0, .length = info.length};
        kl_wire_range_encode(&r, buf, sizeof buf, &n);
        /* grow: no range before L2, so that no block is asked for before its upgrade */
        if (!is(e, "no-range") && !(is(e, "grow") && !e->grown))
            kl_session_send(s, ch, KL_MSG_RANGE, buf, n);
    } else if (rc == 0 && m->type == KL_MSG_REQUEST) {
        const kl_proof_request *r = &m->u.request;
        kl_proof_ask ask;
        kl_wire_ask_from_request(r, &ask);
        uint64_t id = r->id;
        if (is(e, "unsolicited") && ask.block && !e->sent_unsolicited) {
            ask.block_index = r->block.index + 5; /* not the block asked for */
            ask.block_nodes = 0;
            e->sent_unsolicited = 1;
        }
        unsigned char *msg = NULL;
        size_t n = 0;
        if (is(e, "hold-back") && ask.block && ask.block_index == 0)
            ask.block = 0; /* block 0 is never sent */
        if (is(e, "nodata-upgrade") && ask.upgrade) {
            kl_wire_no_data nd = {.request = id};
            uint8_t nb[32];
            size_t nn = 0;
            kl_wire_no_data_encode(&nd, nb, sizeof nb, &nn);
            kl_session_send(s, ch, KL_MSG_NO_DATA, nb, nn);
        } else if ((ask.block || ask.upgrade) &&
                   kl_log_proof(e->grown ? e->log2 : e->log, &ask, id, &msg, &n) == 0) {
            send_data(e, ch, msg, n);
        }
        free(msg);
    }
    free(m);
    return 0;
}

static void srv_remote_open(kl_session *s, const uint8_t dkey[KL_HASH_BYTES], void *ctx) {
    evil *e = ctx;
    (void)dkey;
    kl_info info;
    kl_log_info(e->log, &info);
    e->ch = kl_session_open_core(s, info.key);
}

static void send_junk_frame(evil *e) {
    uint8_t junk[200];
    randombytes_buf(junk, sizeof junk);
    junk[0] = sizeof junk - 3;
    junk[1] = junk[2] = 0;
    write_all(e->fd, junk, sizeof junk);
}

static void send_oversize(evil *e) {
    static const uint8_t hdr[3] = {0x00, 0x00, 0x00 + 0xff}; /* 0xff0000: about 16 MiB */
    write_all(e->fd, hdr, 3);
}

/*
 * Send what the session has, with its stream header frame turned to junk:
 * the output of the moment the handshake completed, which starts with the
 * initiator's handshake message 3 (skip_first) and then the header frame.
 */
static void send_garbage_header(evil *e, int skip_first) {
    size_t n = 0;
    const uint8_t *out = kl_session_output(e->s, &n);
    uint8_t *copy = malloc(n);
    memcpy(copy, out, n);
    size_t at =
        skip_first ? KL_FRAME_HDR_BYTES + (copy[0] | copy[1] << 8 | (size_t)copy[2] << 16) : 0;
    if (at + KL_FRAME_HDR_BYTES + KL_SS_HELLO_BYTES <= n)
        randombytes_buf(copy + at + KL_FRAME_HDR_BYTES, KL_SS_HELLO_BYTES);
    write_all(e->fd, copy, n);
    kl_session_sent(e->s, n);
    free(copy);
}

static int run_server(const char *mode, const char *logdir, const char *logdir2) {
    evil e = {.mode = mode, .fd = -1, .ch = -1};
    kl_open_options o;
    kl_open_options_default(&o);
    o.flags = KL_OPEN_READONLY;
    if (kl_log_open(logdir, &o, &e.log) < 0 || (logdir2 && kl_log_open(logdir2, &o, &e.log2) < 0)) {
        fprintf(stderr, "tool_evilpeer: %s\n", kl_last_error());
        return 1;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
        return 1;
    printf("listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    e.fd = accept(lfd, NULL, NULL);
    if (e.fd < 0)
        return 1;
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    kl_session_cbs cbs = {.on_remote_open = srv_remote_open, .on_message = srv_message};
    kl_session_new(KL_NOISE_RESPONDER, sk, &cbs, &e, &e.s);
    uint64_t deadline = now_ms() + 15000;
    static uint8_t buf[1 << 16];
    int offended = 0;
    uint64_t alive = 1, next_alive = 0;
    while (now_ms() < deadline) {
        struct pollfd pfd = {.fd = e.fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) < 0)
            break;
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(e.fd, buf, sizeof buf, 0);
            if (r <= 0)
                break; /* the client hung up: what the test waits for */
            if (is(&e, "garbage-handshake") && !offended) {
                uint8_t junk[99];
                randombytes_buf(junk, sizeof junk);
                junk[0] = 96;
                junk[1] = junk[2] = 0;
                write_all(e.fd, junk, sizeof junk);
                offended = 1;
                continue;
            }
            if (offended)
                continue;
            int was_ready = kl_session_ready(e.s), failed = 0;
            /* answer at most 1 MiB at a time, written out before more is read (as kl_serve) */
            for (size_t off = 0, used = 0; !failed && off < (size_t)r; off += used) {
                failed =
                    kl_session_input_upto(e.s, buf + off, (size_t)r - off, 1u << 20, &used) < 0;
                if (!failed && (was_ready || !is(&e, "garbage-header")))
                    flush_session(&e);
            }
            if (failed)
                break;
            if (!was_ready && kl_session_ready(e.s) && is(&e, "garbage-header")) {
                send_garbage_header(&e, 0); /* the responder's output starts with its header */
                offended = 1;
                continue;
            }
        }
        if (!offended && kl_session_ready(e.s) && (is(&e, "oversize") || is(&e, "garbage-frame"))) {
            flush_session(&e);
            if (is(&e, "oversize"))
                send_oversize(&e);
            else
                send_junk_frame(&e);
            offended = 1;
            continue;
        }
        if ((is(&e, "no-range") || is(&e, "nodata-upgrade")) && now_ms() >= next_alive) {
            /* an empty message every 200 ms: the session's keepalive, its clock run fast */
            kl_session_keepalive(e.s, ++alive * KL_SESSION_KEEPALIVE_NS);
            next_alive = now_ms() + 200;
        }
        flush_session(&e);
    }
    close(e.fd);
    close(lfd);
    kl_session_free(e.s);
    kl_log_close(e.log);
    if (e.log2)
        kl_log_close(e.log2);
    return 0;
}

static int cli_message(kl_session *s, int ch, uint64_t type, const uint8_t *p, size_t n,
                       void *ctx) {
    (void)s, (void)ch, (void)type, (void)p, (void)n, (void)ctx;
    return 0;
}

static void cli_channel(kl_session *s, int ch, void *ctx) {
    (void)s;
    ((evil *)ctx)->ch = ch;
}

/* Wait for the server to close; the ms it took, or -1 if it did not within 5 s. */
static long wait_closed(int fd, uint64_t since) {
    static uint8_t buf[1 << 16];
    while (now_ms() - since < 5000) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, 50);
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0)
                return (long)(now_ms() - since);
        }
    }
    return -1;
}

static int run_attack(const char *mode, const char *hostport, const char *keyhex) {
    evil e = {.mode = mode, .ch = -1};
    uint8_t key[32];
    size_t kn = 0;
    if (sodium_hex2bin(key, sizeof key, keyhex, strlen(keyhex), NULL, &kn, NULL) != 0 || kn != 32)
        return 2;
    e.fd = tu_dial(hostport);
    if (e.fd < 0)
        return 1;
    if (is(&e, "garbage-handshake")) {
        /* a first message of the wrong size: unmistakable (random 32 bytes can be a valid key) */
        uint8_t junk[43];
        randombytes_buf(junk, sizeof junk);
        junk[0] = 40;
        junk[1] = junk[2] = 0;
        uint64_t t = now_ms();
        write_all(e.fd, junk, sizeof junk);
        long ms = wait_closed(e.fd, t);
        printf("closed after %ld ms\n", ms);
        return ms >= 0 ? 0 : 1;
    }
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    kl_session_cbs cbs = {.on_message = cli_message, .on_channel = cli_channel};
    kl_session_new(KL_NOISE_INITIATOR, sk, &cbs, &e, &e.s);
    if (is(&e, "slow-handshake")) {
        size_t n = 0;
        const uint8_t *msg1 = kl_session_output(e.s, &n);
        uint64_t t = now_ms();
        for (size_t i = 0; i + 1 < n; i++) { /* never the last byte */
            if (send(e.fd, msg1 + i, 1, MSG_NOSIGNAL) != 1)
                break; /* closed: what the test waits for */
            struct pollfd pfd = {.fd = e.fd, .events = POLLIN};
            if (poll(&pfd, 1, 100) > 0)
                break;
        }
        long ms = wait_closed(e.fd, t);
        printf("closed after %ld ms\n", ms);
        kl_session_free(e.s);
        return ms >= 0 ? 0 : 1;
    }
    kl_session_open_core(e.s, key);
    static uint8_t buf[1 << 16];
    uint64_t deadline = now_ms() + 5000;
    int need_channel = !is(&e, "oversize") && !is(&e, "garbage-header") && !is(&e, "hold-frame");
    while (now_ms() < deadline && !(kl_session_ready(e.s) && (!need_channel || e.ch >= 0))) {
        if (!kl_session_ready(e.s) || !is(&e, "garbage-header"))
            flush_session(&e);
        struct pollfd pfd = {.fd = e.fd, .events = POLLIN};
        poll(&pfd, 1, 50);
        if (pfd.revents & POLLIN) {
            ssize_t r = recv(e.fd, buf, sizeof buf, 0);
            if (r <= 0 || kl_session_input(e.s, buf, (size_t)r) < 0)
                return 1;
        }
    }
    uint64_t t = now_ms();
    if (is(&e, "garbage-header")) {
        send_garbage_header(&e, 1); /* after our handshake message 3 */
    } else if (garbage_type(&e) >= 0) {
        flush_session(&e);
        t = now_ms();
        send_garbage_message(&e, e.ch);
    } else if (is(&e, "hold-frame")) {
        flush_session(&e);
        /* a frame of the largest size allowed, all but its last byte, then silence */
        size_t len = KL_FRAME_WIRE_MAX, n = KL_FRAME_HDR_BYTES + len - 1;
        uint8_t *frame = malloc(n);
        kl_frame_header(frame, len);
        randombytes_buf(frame + KL_FRAME_HDR_BYTES, len - 1);
        write_all(e.fd, frame, n);
        free(frame);
        printf("holding\n");
        fflush(stdout);
        t = now_ms();
    } else if (is(&e, "oversize")) {
        flush_session(&e);
        send_oversize(&e);
    } else if (is(&e, "garbage-frame")) {
        flush_session(&e);
        send_junk_frame(&e);
    } else if (is(&e, "bad-data")) {
        flush_session(&e);
        static const uint8_t junk_data[] = {0x01, 0x05, 0x00, 0x00, 0x00, 0x00};
        kl_session_send(e.s, e.ch, KL_MSG_DATA, junk_data, sizeof junk_data);
        flush_session(&e);
    } else if (is(&e, "flood")) {
        flush_session(&e);
        /* requests for block 0 as fast as the socket takes them, never reading */
        kl_proof_request r;
        memset(&r, 0, sizeof r);
        r.flags = KL_PROOF_BLOCK;
        uint8_t req[64];
        size_t n = 0;
        int sent = 0;
        while (now_ms() - t < 10000) { /* until the server drops us */
            r.id = (uint64_t)++sent;
            kl_proof_request_encode(&r, req, sizeof req, &n);
            kl_session_send(e.s, e.ch, KL_MSG_REQUEST, req, n);
            size_t out = 0;
            const uint8_t *p = kl_session_output(e.s, &out);
            ssize_t w = send(e.fd, p, out, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                kl_session_sent(e.s, (size_t)w);
            if (w < 0 && errno != EAGAIN)
                break;
            if (out > (1u << 20)) /* the server stopped reading: our output backs up */
                usleep(1000);
        }
        printf("flooded %d requests\n", sent);
        t = now_ms();
    }
    long ms = wait_closed(e.fd, t);
    printf("closed after %ld ms\n", ms);
    kl_session_free(e.s);
    return ms >= 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (sodium_init() < 0)
        return 1;
    if (argc == 4 && strcmp(argv[1], "serve") == 0 && strcmp(argv[2], "grow") != 0)
        return run_server(argv[2], argv[3], NULL);
    if (argc == 5 && strcmp(argv[1], "serve") == 0 && strcmp(argv[2], "grow") == 0)
        return run_server(argv[2], argv[3], argv[4]);
    if (argc == 5 && strcmp(argv[1], "attack") == 0)
        return run_attack(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: tool_evilpeer serve MODE LOGDIR | serve grow LOGDIR LOGDIR2 | attack "
                    "MODE HOST:PORT KEYHEX\n");
    return 2;
}
