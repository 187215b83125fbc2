/*
 * test_session.c - replication/session.c: two sessions, an initiator and a
 * responder, wired to each other in memory (each one's output is the
 * other's input, in pieces of varying size).
 *
 * - The handshake completes, both secret streams come up, and a core the
 *   initiator announces is opened by the responder from on_remote_open:
 *   both see the channel open, and hypercore messages cross both ways
 *   intact (also an empty one and one of 1 MiB).
 * - A core the responder does not hold is rejected: the initiator hears
 *   the channel closed; the connection stays up for other cores.
 * - Garbage at each stage (instead of the first handshake message, after
 *   the handshake instead of the header, a flipped bit in an encrypted
 *   message) fails the receiving session with a reason, for good.
 * - Memory is bounded: a session holds at most KL_SESSION_MEM_MAX bytes
 *   (output the peer never reads fails the session instead of growing);
 *   a message of the largest frame, received in small pieces or in one
 *   piece, is held once (decrypted in place), and an idle session lets
 *   big buffers go. A message too big for one frame is refused and the
 *   session goes on.
 * - kl_session_input_upto stops once enough output waits, also part-way
 *   through a batch frame of many requests, and goes on as it drains.
 */
#include "testutil.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util.h"
#include "replication/session.h"
#include "replication/wire.h"

typedef struct side {
    kl_session *s;
    int channel_opened;
    int closed;
    int remote_opens;
    int messages;
    uint64_t last_type;
    uint8_t *last;
    size_t last_len;
    int serve;                   /* on_remote_open: announce the core if it is `have` */
    size_t echo;                 /* answer each message with this many bytes (0: none) */
    uint8_t have[KL_HASH_BYTES]; /* the core this side holds */
} side;

static void on_remote_open(kl_session *s, const uint8_t dkey[KL_HASH_BYTES], void *ctx) {
    side *d = ctx;
    d->remote_opens++;
    uint8_t mine[KL_HASH_BYTES];
    kl_hc_discovery_key(d->have, mine);
    if (d->serve && memcmp(mine, dkey, KL_HASH_BYTES) == 0)
        assert_true(kl_session_open_core(s, d->have) >= 0);
}

static void on_channel(kl_session *s, int ch, void *ctx) {
    (void)s;
    (void)ch;
    ((side *)ctx)->channel_opened++;
}

static int on_message(kl_session *s, int ch, uint64_t type, const uint8_t *p, size_t n, void *ctx) {
    side *d = ctx;
    d->messages++;
    d->last_type = type;
    free(d->last);
    d->last = malloc(n ? n : 1);
    memcpy(d->last, p, n);
    d->last_len = n;
    if (d->echo > 0) {
        static const uint8_t answer[1u << 20];
        /* the whole frame on the wire is echo bytes: the payload less the overheads */
        return kl_session_send(s, ch, KL_MSG_EXTENSION, answer,
                               d->echo - KL_FRAME_HDR_BYTES - KL_SS_OVERHEAD - 2);
    }
    return 0;
}

static void on_closed(kl_session *s, int ch, void *ctx) {
    (void)s;
    (void)ch;
    ((side *)ctx)->closed++;
}

static const kl_session_cbs cbs = {on_remote_open, on_channel, on_message, on_closed};

static void new_pair(side *a, side *b) {
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    uint8_t pk[32], ska[64], skb[64];
    crypto_sign_keypair(pk, ska);
    crypto_sign_keypair(pk, skb);
    assert_int_equal(kl_session_new(KL_NOISE_INITIATOR, ska, &cbs, a, &a->s), 0);
    assert_int_equal(kl_session_new(KL_NOISE_RESPONDER, skb, &cbs, b, &b->s), 0);
}

static void free_pair(side *a, side *b) {
    kl_session_free(a->s);
    kl_session_free(b->s);
    free(a->last);
    free(b->last);
}

/* Move `from`'s output into `to`, in pieces of 1..97 bytes; returns bytes moved or an error. */
static long move(side *from, side *to, uint64_t *rng) {
    size_t n = 0;
    const uint8_t *p = kl_session_output(from->s, &n);
    long moved = (long)n;
    while (n > 0) {
        size_t k = 1 + (size_t)(tu_rand(rng) % 97);
        if (k > n)
            k = n;
        int rc = kl_session_input(to->s, p, k);
        kl_session_sent(from->s, k);
        if (rc < 0)
            return rc;
        p = kl_session_output(from->s, &n);
    }
    return moved;
}

/* Exchange until neither side has anything to send. */
static void pump(side *a, side *b) {
    uint64_t rng = 7;
    for (int round = 0; round < 100; round++) {
        long x = move(a, b, &rng), y = move(b, a, &rng);
        assert_true(x >= 0 && y >= 0);
        if (x == 0 && y == 0)
            return;
    }
    fail_msg("the sessions never went quiet");
}

/* A pair with one core (its key all `fill` bytes) that b serves, its channel open on both. */
static int open_pair(side *a, side *b, uint8_t fill) {
    new_pair(a, b);
    memset(a->have, fill, sizeof a->have);
    memcpy(b->have, a->have, sizeof a->have);
    b->serve = 1;
    int ch = kl_session_open_core(a->s, a->have);
    pump(a, b);
    assert_true(kl_session_channel_open(a->s, ch));
    return ch;
}

static void test_handshake_channel_and_messages(void **state) {
    (void)state;
    side a, b;
    new_pair(&a, &b);
    randombytes_buf(a.have, sizeof a.have);
    memcpy(b.have, a.have, sizeof a.have);
    b.serve = 1;
    int ch = kl_session_open_core(a.s, a.have); /* before the handshake: opened once it is up */
    assert_true(ch >= 0);
    assert_false(kl_session_ready(a.s));
    pump(&a, &b);
    assert_true(kl_session_ready(a.s) && kl_session_ready(b.s));
    assert_int_equal(b.remote_opens, 1);
    assert_int_equal(a.channel_opened, 1);
    assert_int_equal(b.channel_opened, 1);
    assert_true(kl_session_channel_open(a.s, ch));

    /* a sync from a, a range back from b, an empty and a 1 MiB extension */
    kl_wire_sync sync = {.flags = KL_WIRE_SYNC_DOWNLOADING, .fork = 0, .length = 0};
    uint8_t buf[64];
    size_t n = 0;
    assert_int_equal(kl_wire_sync_encode(&sync, buf, sizeof buf, &n), 0);
    assert_int_equal(kl_session_send(a.s, ch, KL_MSG_SYNC, buf, n), 0);
    pump(&a, &b);
    assert_int_equal(b.messages, 1);
    assert_int_equal(b.last_type, KL_MSG_SYNC);
    assert_int_equal(b.last_len, n);
    assert_memory_equal(b.last, buf, n);
    assert_int_equal(kl_session_send(b.s, 0, KL_MSG_RANGE, (const uint8_t *)"\x00\x00\x03", 3), 0);
    pump(&a, &b);
    assert_int_equal(a.messages, 1);
    assert_int_equal(a.last_type, KL_MSG_RANGE);
    assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, NULL, 0), 0);
    pump(&a, &b);
    assert_int_equal(b.last_len, 0);
    size_t big = 1u << 20;
    uint8_t *p = malloc(big);
    randombytes_buf(p, big);
    assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, p, big), 0);
    pump(&a, &b);
    assert_int_equal(b.messages, 3);
    assert_int_equal(b.last_len, big);
    assert_memory_equal(b.last, p, big);
    free(p);
    /* a core b does not hold: rejected, the connection stays */
    uint8_t other[KL_HASH_BYTES];
    randombytes_buf(other, sizeof other);
    int ch2 = kl_session_open_core(a.s, other);
    assert_true(ch2 >= 0 && ch2 != ch);
    pump(&a, &b);
    assert_int_equal(a.closed, 1);
    assert_false(kl_session_channel_open(a.s, ch2));
    assert_true(kl_session_channel_open(a.s, ch));
    assert_int_equal(kl_session_error(a.s), 0);
    assert_int_equal(kl_session_error(b.s), 0);
    free_pair(&a, &b);
}

static void test_garbage_fails_the_receiving_session(void **state) {
    (void)state;
    side a, b;
    uint64_t rng = 3;
    /* instead of handshake message 1: a frame of the wrong size */
    new_pair(&a, &b);
    static const uint8_t junk[] = {5, 0, 0, 1, 2, 3, 4, 5};
    assert_true(kl_session_input(b.s, junk, sizeof junk) < 0);
    assert_non_null(strstr(kl_last_error(), "handshake"));
    assert_true(kl_session_error(b.s) < 0);
    assert_true(kl_session_input(b.s, junk, 1) < 0); /* failed for good */
    free_pair(&a, &b);
    /* a handshake frame longer than any handshake message: refused on its length alone */
    new_pair(&a, &b);
    static const uint8_t big[] = {0x61, 0, 0}; /* 97 bytes announced */
    assert_true(kl_session_input(b.s, big, sizeof big) < 0);
    assert_true(kl_session_memory(b.s) < (64u << 10));
    free_pair(&a, &b);
    /* after the handshake, a header frame that is not one */
    new_pair(&a, &b);
    assert_true(move(&a, &b, &rng) > 0); /* message 1 */
    assert_true(move(&b, &a, &rng) > 0); /* message 2 */
    size_t n = 0;
    kl_session_output(a.s, &n); /* message 3 and a's header */
    uint8_t *copy = malloc(n);
    memcpy(copy, kl_session_output(a.s, &n), n);
    copy[n - 1 - KL_SS_HEADER_BYTES] ^= 1; /* the last byte of a's stream id */
    assert_true(kl_session_input(b.s, copy, n) < 0);
    assert_non_null(strstr(kl_last_error(), "stream header"));
    free(copy);
    free_pair(&a, &b);
    /* a flipped bit in an encrypted message */
    new_pair(&a, &b);
    pump(&a, &b);
    uint8_t key[KL_HASH_BYTES] = {1};
    assert_true(kl_session_open_core(a.s, key) >= 0);
    const uint8_t *out = kl_session_output(a.s, &n);
    assert_true(n > 20);
    copy = malloc(n);
    memcpy(copy, out, n);
    copy[10] ^= 0x40;
    assert_true(kl_session_input(b.s, copy, n) < 0);
    free(copy);
    free_pair(&a, &b);
}

static void test_unread_output_is_bounded(void **state) {
    (void)state;
    side a, b;
    int ch = open_pair(&a, &b, 9);
    static uint8_t chunk[1u << 20];
    int rc = 0;
    int sent = 0;
    for (; sent < 64 && (rc = kl_session_send(a.s, ch, KL_MSG_EXTENSION, chunk, sizeof chunk)) == 0;
         sent++)
        ; /* nobody reads a's output */
    assert_int_equal(rc, KL_ETOOBIG);
    assert_true(sent >= 3 && sent < 8); /* the bound is 8 MiB less the caller's share */
    assert_true(kl_session_memory(a.s) <= KL_SESSION_MEM_MAX);
    assert_int_equal(kl_session_error(a.s), KL_ETOOBIG);
    free_pair(&a, &b);
}

/* Deliver a's output to b in pieces of `piece` bytes; the most b held meanwhile. */
static size_t deliver(side *a, side *b, size_t piece) {
    size_t n = 0, peak = 0;
    const uint8_t *p = kl_session_output(a->s, &n);
    while (n > 0) {
        size_t k = KL_MIN(piece, n);
        assert_int_equal(kl_session_input(b->s, p, k), 0);
        kl_session_sent(a->s, k);
        peak = KL_MAX(peak, kl_session_memory(b->s));
        p = kl_session_output(a->s, &n);
    }
    return peak;
}

static void test_memory_per_connection(void **state) {
    (void)state;
    side a, b;
    int ch = open_pair(&a, &b, 5);
    size_t idle = kl_session_memory(b.s);
    assert_true(idle < (256u << 10));
    /* the largest message one frame carries: channel and type take 2 bytes of it */
    size_t big = KL_FRAME_WIRE_MAX - KL_SS_OVERHEAD - 2;
    uint8_t *p = malloc(big + 1);
    randombytes_buf(p, big + 1);
    assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, p, big + 1), KL_ETOOBIG);
    assert_int_equal(kl_session_error(a.s), 0); /* refused, not failed */
    size_t pieces[] = {4096, 65536, (size_t)KL_FRAME_WIRE_MAX + 64};
    for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) {
        int before = b.messages;
        assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, p, big), 0);
        assert_true(kl_session_memory(a.s) <= KL_SESSION_MEM_MAX);
        size_t peak = deliver(&a, &b, pieces[i]);
        assert_int_equal(b.messages, before + 1);
        assert_int_equal(b.last_len, big);
        assert_memory_equal(b.last, p, big);
        /* held once: the frame, decrypted where it lies, plus what an idle session holds */
        assert_true(peak <= KL_FRAME_WIRE_MAX + idle + KL_FRAMES_KEEP);
        assert_true(kl_session_memory(b.s) <= idle + KL_FRAMES_KEEP); /* let go once done */
        kl_session_output(a.s, &big); /* a's output drained and trimmed too */
        assert_int_equal(big, 0);
        big = KL_FRAME_WIRE_MAX - KL_SS_OVERHEAD - 2;
        assert_true(kl_session_memory(a.s) <= idle + KL_FRAMES_KEEP);
    }
    free(p);
    assert_int_equal(kl_session_error(b.s), 0);
    free_pair(&a, &b);
}

/* All that a's session has for its peer, copied (free it), and taken from a's output. */
static uint8_t *take_output(side *a, size_t *total) {
    const uint8_t *in = kl_session_output(a->s, total);
    uint8_t *copy = malloc(*total ? *total : 1);
    assert_non_null(copy);
    memcpy(copy, in, *total);
    kl_session_sent(a->s, *total);
    return copy;
}

/* kl_session_input_upto stops once enough output waits, and the rest can be fed later. */
static void test_input_upto(void **state) {
    (void)state;
    side a, b;
    int ch = open_pair(&a, &b, 6);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, (const uint8_t *)"x", 1), 0);
    size_t n = 0, used = 0, at = 0, total = 0;
    uint8_t *copy = take_output(&a, &total);
    /* b answers each message with 100 bytes: stop once 250 wait, after the third message */
    int before = b.messages;
    b.echo = 100;
    assert_int_equal(kl_session_input_upto(b.s, copy, total, 250, &used), 0);
    assert_true(used < total);
    assert_int_equal(b.messages, before + 3);
    assert_int_equal(kl_session_input_upto(b.s, copy + used, total - used, 250, &at), 0);
    assert_int_equal(at, 0); /* nothing drained: nothing more taken */
    for (int rounds = 0; used < total; rounds++) {
        assert_true(rounds < 10);
        kl_session_output(b.s, &n);
        kl_session_sent(b.s, n); /* drained: the rest goes in */
        assert_int_equal(kl_session_input_upto(b.s, copy + used, total - used, 250, &at), 0);
        assert_true(at > 0);
        used += at;
    }
    assert_int_equal(b.messages, before + 10);
    free(copy);
    free_pair(&a, &b);
}

/*
 * A batch frame of requests whose answers together pass the session's bound (a JS peer sends
 * all the requests it has in one frame): kl_session_input_upto stops part-way through the batch
 * and goes on with it as the output drains, instead of failing "the peer does not read".
 */
static void test_input_upto_batch(void **state) {
    (void)state;
    side a, b;
    int ch = open_pair(&a, &b, 7);
    enum { COUNT = 40 };
    kl_mux_msg m[COUNT];
    for (int i = 0; i < COUNT; i++)
        m[i] = (kl_mux_msg){.type = KL_MSG_EXTENSION, .payload = (const uint8_t *)"q", .len = 1};
    assert_int_equal(kl_session_send_batch(a.s, ch, m, COUNT), 0);
    size_t n = 0, used = 0, total = 0;
    uint8_t *copy = take_output(&a, &total);
    /* each answer is 512 KiB: 20 MiB for the batch, more than a session may hold */
    int before = b.messages;
    b.echo = 512u << 10;
    const size_t limit = 2u << 20;
    assert_int_equal(kl_session_input_upto(b.s, copy, total, limit, &used), 0);
    assert_int_equal(used, total); /* the frame is taken; the session keeps its rest */
    assert_true(kl_session_input_waiting(b.s));
    assert_int_equal(b.messages, before + 4); /* stopped once 2 MiB wait */
    assert_int_equal(kl_session_input_upto(b.s, NULL, 0, limit, &used), 0);
    assert_int_equal(b.messages, before + 4); /* nothing drained: nothing more answered */
    for (int rounds = 0; kl_session_input_waiting(b.s); rounds++) {
        assert_true(rounds < COUNT);
        kl_session_output(b.s, &n);
        assert_true(n >= limit && n <= limit + b.echo);
        assert_true(kl_session_memory(b.s) <= KL_SESSION_MEM_MAX);
        kl_session_sent(b.s, n); /* drained: the batch goes on */
        assert_int_equal(kl_session_input_upto(b.s, NULL, 0, limit, &used), 0);
    }
    assert_int_equal(b.messages, before + COUNT);
    assert_int_equal(kl_session_error(b.s), 0);
    /* and the session reads on after it */
    b.echo = 0;
    assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, (const uint8_t *)"z", 1), 0);
    kl_session_output(b.s, &n);
    kl_session_sent(b.s, n);
    pump(&a, &b);
    assert_int_equal(b.messages, before + COUNT + 1);
    assert_int_equal(b.last_len, 1);
    free(copy);
    free_pair(&a, &b);
}

/* A quiet session queues one empty message per KL_SESSION_KEEPALIVE_NS; the peer ignores it. */
static void test_keepalive(void **state) {
    (void)state;
    side a, b;
    new_pair(&a, &b);
    assert_int_equal(kl_session_keepalive(a.s, 1000), 0); /* no handshake yet: nothing */
    size_t n = 0;
    kl_session_output(a.s, &n);
    assert_true(n > 0); /* the first handshake message only */
    free_pair(&a, &b);

    int ch = open_pair(&a, &b, 9);
    const uint64_t t0 = 1000000000ull, k = KL_SESSION_KEEPALIVE_NS;
    assert_int_equal(kl_session_keepalive(a.s, t0), 0); /* the open was queued: quiet from now */
    assert_int_equal(kl_session_keepalive(a.s, t0 + k - 1), 0);
    assert_int_equal(kl_session_keepalive(a.s, t0 + k), 1);
    kl_session_output(a.s, &n);
    assert_int_equal(n, KL_FRAME_HDR_BYTES + KL_SS_OVERHEAD); /* 20 bytes, as JS sends */
    int before = b.messages;
    pump(&a, &b);
    assert_int_equal(b.messages, before); /* ignored, and the session goes on */
    assert_int_equal(kl_session_error(b.s), 0);
    assert_int_equal(kl_session_keepalive(a.s, t0 + k + 1), 0);
    /* a message sent meanwhile restarts the quiet period */
    assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, (const uint8_t *)"x", 1), 0);
    assert_int_equal(kl_session_keepalive(a.s, t0 + 2 * k), 0);
    assert_int_equal(kl_session_keepalive(a.s, t0 + 3 * k - 1), 0);
    assert_int_equal(kl_session_keepalive(a.s, t0 + 3 * k), 1);
    pump(&a, &b);
    assert_int_equal(b.messages, before + 1);
    assert_int_equal(kl_session_send(a.s, ch, KL_MSG_EXTENSION, (const uint8_t *)"y", 1), 0);
    pump(&a, &b);
    assert_int_equal(b.messages, before + 2);
    free_pair(&a, &b);
}

int main(void) {
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_channel_and_messages),
        cmocka_unit_test(test_garbage_fails_the_receiving_session),
        cmocka_unit_test(test_unread_output_is_bounded),
        cmocka_unit_test(test_memory_per_connection),
        cmocka_unit_test(test_input_upto),
        cmocka_unit_test(test_input_upto_batch),
        cmocka_unit_test(test_keepalive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
