/*
 * session.h - one replication connection, as bytes in and bytes out: the
 * Noise handshake, the secret stream, Protomux, and the hypercore channels
 * on it (notes 8.1-8.6). No socket and no thread here: the caller feeds
 * what it read (kl_session_input) and writes what kl_session_output gives,
 * so one event loop drives any number of sessions, and tests drive two
 * sessions against each other in memory.
 *
 * Channels: kl_session_open_core announces a core (by its key) and checks
 * the remote's capability when the remote opens the same core; the
 * callbacks see a channel once both sides opened it, and every hypercore
 * message on it, undecoded (wire.h decodes them). A remote open of a core
 * we did not announce goes to on_remote_open, which may announce it (a
 * server with that core) or leave it, in which case it is rejected.
 *
 * Limits, for peers nobody trusts: frames of at most KL_NOISE_MSG_MAX
 * bytes until the peer's stream header was accepted (the handshake
 * messages and the header are that small), KL_FRAME_WIRE_MAX after, at most KL_SESSION_MAX_CHANNELS
 * channels, and at most KL_SESSION_MEM_MAX bytes held by the session in all (kl_session_memory: the
 * frame being received, decrypted in place, and the output not yet sent), which leaves
 * KL_SESSION_CALLER_MEM of the per-connection bound "4 MiB plus one frame" to the caller.
 * Output past that fails the session: a caller that answers requests stops feeding input while much
 * output waits (kl_session_input_upto). Any protocol error fails the
 * session for good with the reason in kl_last_error(); the caller closes
 * the connection.
 */
#ifndef KL_SESSION_H
#define KL_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "engine/hc.h"
#include "noise.h"
#include "stream.h"
#include "wire.h"

#define KL_SESSION_MAX_CHANNELS 64u
/* What one connection may hold in all: one frame plus 4 MiB (issue 6). */
#define KL_CONN_MEM_MAX ((size_t)KL_FRAME_WIRE_MAX + (4u << 20))
/* The caller's share of it (its read buffer, its state), and the session's. */
#define KL_SESSION_CALLER_MEM ((size_t)256u << 10)
#define KL_SESSION_MEM_MAX    (KL_CONN_MEM_MAX - KL_SESSION_CALLER_MEM)

typedef struct kl_session kl_session;

typedef struct kl_session_cbs {
    /* The remote opened a core we have not announced (discovery key dkey). */
    void (*on_remote_open)(kl_session *s, const uint8_t dkey[KL_HASH_BYTES], void *ctx);
    /* Both sides opened channel ch (its capability checked). */
    void (*on_channel)(kl_session *s, int ch, void *ctx);
    /* A hypercore message on channel ch (type KL_MSG_*, the payload as received). */
    int (*on_message)(kl_session *s, int ch, uint64_t type, const uint8_t *payload, size_t len,
                      void *ctx);
    /* The remote closed or rejected channel ch. */
    void (*on_channel_closed)(kl_session *s, int ch, void *ctx);
} kl_session_cbs;

/* A new session; static_sk: our Noise identity (libsodium's 64-byte secret key). */
int kl_session_new(kl_noise_role role, const uint8_t static_sk[KL_NOISE_SK_BYTES],
                   const kl_session_cbs *cbs, void *ctx, kl_session **out);
void kl_session_free(kl_session *s);

/* Feed received bytes. 0, or the error that failed the session. */
int kl_session_input(kl_session *s, const uint8_t *in, size_t n);
/*
 * Feed received bytes, but stop after a message that leaves out_limit or
 * more bytes of output waiting: *used gets the bytes taken (the caller keeps
 * the rest and feeds it once the output drained). A batch frame is left
 * part-way too (kl_session_input_waiting): the next call, even with n == 0,
 * goes on with its items first. 0, or the session's error.
 */
int kl_session_input_upto(kl_session *s, const uint8_t *in, size_t n, size_t out_limit,
                          size_t *used);
/* A batch received is not finished (kl_session_input_upto stopped in it). */
int kl_session_input_waiting(const kl_session *s);
/* The bytes the session holds now: its state and every buffer's capacity. */
size_t kl_session_memory(const kl_session *s);
/* The bytes waiting to be sent (*n may be 0), and how many were sent. */
const uint8_t *kl_session_output(kl_session *s, size_t *n);
void kl_session_sent(kl_session *s, size_t n);

/*
 * Keep a quiet connection alive as JS does (hypercore.replicate turns on a
 * 5 s keepalive): call this now and then (every loop turn) with the
 * monotonic clock; after KL_SESSION_KEEPALIVE_NS in which nothing was
 * queued, it queues an empty message and returns 1 (then send the output).
 * A peer that hears nothing for longer than a few of these can tell the
 * connection is dead. 0 when nothing was queued; < 0: the session failed.
 */
#define KL_SESSION_KEEPALIVE_NS (5000ull * 1000000ull)
int kl_session_keepalive(kl_session *s, uint64_t now_ns);

/* Is the secret stream up (handshake done, our header sent)? */
int kl_session_ready(const kl_session *s);
/* The error that failed the session, 0 if none. */
int kl_session_error(const kl_session *s);

/*
 * Announce the core `key` (its channel is opened as soon as the handshake
 * is done). Returns the channel number (>= 0) or an error.
 */
int kl_session_open_core(kl_session *s, const uint8_t key[KL_HASH_BYTES]);
/* Is channel ch open on both sides? */
int kl_session_channel_open(const kl_session *s, int ch);
/* The core key and discovery key of channel ch. */
const uint8_t *kl_session_core_key(const kl_session *s, int ch);
/*
 * Send one hypercore message (payload already encoded) on an open channel.
 * KL_ETOOBIG without failing the session if its frame would exceed
 * KL_FRAME_WIRE_MAX; any other error fails the session.
 */
int kl_session_send(kl_session *s, int ch, uint64_t type, const uint8_t *payload, size_t len);
/*
 * Send messages m[0..count) of channel ch (their channel fields are set
 * here) in one Protomux batch frame, as a corked JS peer does. Errors as
 * kl_session_send.
 */
int kl_session_send_batch(kl_session *s, int ch, kl_mux_msg *m, size_t count);

#endif
