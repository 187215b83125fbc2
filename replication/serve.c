/*
 * serve.c - kl_serve: serve logs to Hypercore peers (kappalog.h), any
 * number of connections on one thread (the event loop).
 *
 * Each log is opened read-only, so it can be served while a writer appends
 * to it in another process; an inotify watch on its header wakes the loop
 * when a commit lands, the handle refreshes, and every peer with that
 * core's channel gets `range` and `sync` with the new length (notes 8.9:
 * what makes JS followers upgrade). Only signed lengths are announced: a
 * writer's unsigned moment (docs/DURABILITY.md) is followed within
 * microseconds by its signed slot, which wakes the loop again.
 *
 * Per peer (responder side of the handshake): a remote open of a core we
 * serve opens our channel; its sync is answered with ours (echoing the
 * peer's length, as JS does); each request is answered with a data message
 * built by kl_log_proof_request, or noData when it cannot be (a block we do
 * not have, another fork, a malformed request, a seek request); a want
 * is answered with the range we hold. Nothing a peer sends is stored.
 *
 * Bounds: requests are answered only while a peer's unsent output is below
 * SERVE_OUT_HIGH; the rest of what was read waits (at most one read,
 * SERVE_READ_BYTES, and the rest of a batch frame, which the session keeps:
 * a JS peer sends all its requests in one) and nothing more is read until
 * the output drains, so
 * no request is answered faster than its answers are read. A peer that
 * does not drain within SERVE_BACKLOG_NS (it keeps more requests
 * outstanding than it reads answers for) is dropped, as is a peer silent
 * for stall_ms. A connection holds at most KL_CONN_MEM_MAX bytes (the
 * session's bound plus the waiting read); its peak is logged when it
 * closes. Every offence closes only that connection, with the reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/log_internal.h"
#include "engine/proof.h"
#include "engine/util.h"
#include "loop.h"
#include "session.h"
#include "wire.h"

#define SERVE_OUT_HIGH   (2u << 20)
#define SERVE_READ_BYTES (64u << 10) /* one recv */
/* A peer that leaves more than SERVE_OUT_HIGH of answers unread this long is dropped. */
#define SERVE_BACKLOG_NS 1000000000ull
#define SERVE_MAX_LOGS   64u
/*
 * Peers at once: opts->max_peers, or SERVE_PEERS_MAX when it is 0 (each may
 * hold KL_CONN_MEM_MAX, 8 MiB), and at most the file descriptors
 * RLIMIT_NOFILE leaves beyond those open at the start and SERVE_FD_RESERVE
 * more (a log maps and opens segments as it grows). A connection past the cap is accepted and
 * closed at once: left in the backlog, the listening socket would stay readable and the loop would
 * spin. When accept itself runs out of descriptors (EMFILE, ENFILE), a spare descriptor is let go
 * to take the connection and close it; without one, accepting pauses for SERVE_ACCEPT_PAUSE_NS.
 */
#define SERVE_PEERS_MAX       1024u
#define SERVE_FD_RESERVE      32u
#define SERVE_ACCEPT_PAUSE_NS (100ull * 1000000ull)
#define SERVE_REFUSED_SAY_NS  (1000ull * 1000000ull) /* refusals are logged once a second */

typedef struct server server;

typedef struct served {
    server *srv;
    kl_log *log;
    int ino_fd;
    uint64_t announced; /* the signed length peers were last told */
} served;

typedef struct peer {
    server *srv;
    int fd;
    kl_session *s;
    uint64_t last_input_ns;
    uint64_t accepted_ns;
    uint64_t backlog_since_ns; /* when its unread answers passed SERVE_OUT_HIGH; 0: they did not */
    int ch_log[KL_SESSION_MAX_CHANNELS]; /* channel -> index in srv->logs, -1 */
    uint64_t remote_len[KL_SESSION_MAX_CHANNELS];
    int reading;
    uint8_t *in; /* read but not yet fed (the session's output was too high): SERVE_READ_BYTES */
    size_t in_off, in_len;
    size_t peak_mem; /* the most this connection held (peer_memory) */
    struct peer *next;
} peer;

struct server {
    kl_loop *loop;
    int listen_fd;
    served logs[SERVE_MAX_LOGS];
    size_t nlogs;
    peer *peers;
    size_t npeers, max_peers;
    int spare_fd;              /* let go to accept-and-close when out of descriptors; -1 */
    uint64_t accept_paused_ns; /* accepting paused (no spare descriptor) since; 0 */
    uint64_t refused, refused_said_ns;
    const kl_serve_options *opts;
    uint8_t sk[64];
    uint8_t rbuf[SERVE_READ_BYTES]; /* one recv, fed at once (feed keeps what waits) */
    kl_wire_message msg;            /* the message being handled (one at a time: one thread) */
};

static void say(const server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const server *srv, const char *fmt, ...) {
    if (srv->opts->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kappalog serve: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* What a connection holds: its session, its waiting read and its own state. */
static size_t peer_memory(const peer *p) {
    return kl_session_memory(p->s) + (p->in ? SERVE_READ_BYTES : 0) + sizeof *p;
}

static void drop(peer *p, const char *why) {
    server *srv = p->srv;
    say(srv, "peer %d closed: %s (it held at most %zu KiB)", p->fd, why, p->peak_mem >> 10);
    kl_loop_del(srv->loop, p->fd);
    close(p->fd);
    kl_session_free(p->s);
    free(p->in);
    for (peer **pp = &srv->peers; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    KL_ASSERT(srv->npeers > 0);
    srv->npeers--;
    free(p);
}

/* The signed state of a served log (its length and fork); 0 if it has none yet. */
static int signed_state(served *sv, uint64_t *length, uint64_t *fork) {
    kl_slot st;
    kl_commit_last(sv->log, &st);
    *length = st.length;
    *fork = st.fork;
    return st.sig_len != 0;
}

static int send_sync(peer *p, int ch) {
    served *sv = &p->srv->logs[p->ch_log[ch]];
    uint64_t length = 0, fork = 0;
    signed_state(sv, &length, &fork);
    if (length > sv->announced)
        length = sv->announced; /* never more than what was signed when announced */
    kl_wire_sync m = {.flags = KL_WIRE_SYNC_CAN_UPGRADE | KL_WIRE_SYNC_UPLOADING |
                               (sv->log->kind == KL_CORE_DEFAULT ? KL_WIRE_SYNC_HAS_MANIFEST : 0),
                      .fork = fork,
                      .length = length,
                      .remote_length = p->remote_len[ch] <= length ? p->remote_len[ch] : 0};
    uint8_t buf[64];
    size_t n = 0;
    int rc = kl_wire_sync_encode(&m, buf, sizeof buf, &n);
    return rc < 0 ? rc : kl_session_send(p->s, ch, KL_MSG_SYNC, buf, n);
}

static int send_range(peer *p, int ch) {
    served *sv = &p->srv->logs[p->ch_log[ch]];
    if (sv->announced == 0)
        return 0;
    kl_wire_range r = {.start = 0, .length = sv->announced};
    uint8_t buf[32];
    size_t n = 0;
    int rc = kl_wire_range_encode(&r, buf, sizeof buf, &n);
    return rc < 0 ? rc : kl_session_send(p->s, ch, KL_MSG_RANGE, buf, n);
}

static int send_no_data(peer *p, int ch, uint64_t request, uint64_t reason) {
    kl_wire_no_data m = {.request = request, .reason = reason};
    uint8_t buf[32];
    size_t n = 0;
    int rc = kl_wire_no_data_encode(&m, buf, sizeof buf, &n);
    return rc < 0 ? rc : kl_session_send(p->s, ch, KL_MSG_NO_DATA, buf, n);
}

static int on_request(peer *p, int ch, const kl_proof_request *r) {
    served *sv = &p->srv->logs[p->ch_log[ch]];
    if (r->flags & KL_PROOF_SEEK)
        return send_no_data(p, ch, r->id, KL_WIRE_REASON_NOT_AVAILABLE);
    uint64_t length = 0, fork = 0;
    signed_state(sv, &length, &fork);
    /*
     * A request of another fork (sent before the peer heard of a truncation)
     * gets noData without a reason: JS says NOT_AVAILABLE here, which its
     * peers count as a backoff, and a follower with many requests in flight
     * when the log is truncated would stop asking this server at all.
     */
    if (r->fork != fork)
        return send_no_data(p, ch, r->id, 0);
    unsigned char *msg = NULL;
    size_t n = 0;
    int rc = kl_log_proof_request(sv->log, r, &msg, &n);
    if (rc < 0) /* not one we can answer: as JS, noData (invalid request or not available) */
        return send_no_data(p, ch, r->id,
                            rc == KL_EINVAL ? KL_WIRE_REASON_INVALID_REQUEST
                                            : KL_WIRE_REASON_NOT_AVAILABLE);
    rc = kl_session_send(p->s, ch, KL_MSG_DATA, msg, n);
    free(msg);
    if (rc == KL_ETOOBIG && kl_session_error(p->s) == 0) /* a block too big for one frame */
        return send_no_data(p, ch, r->id, KL_WIRE_REASON_NOT_AVAILABLE);
    return rc;
}

static int on_message(kl_session *s, int ch, uint64_t type, const uint8_t *payload, size_t len,
                      void *ctx) {
    (void)s;
    peer *p = ctx;
    if (ch < 0 || ch >= (int)KL_SESSION_MAX_CHANNELS || p->ch_log[ch] < 0)
        return 0;
    kl_wire_message *m = &p->srv->msg;
    int rc = kl_wire_message_decode(type, payload, len, 0, m);
    if (rc == KL_ENOTFOUND)
        return 0;
    if (rc == 0) {
        switch (m->type) {
        case KL_MSG_SYNC:
            if (m->u.sync.length != p->remote_len[ch]) {
                p->remote_len[ch] = m->u.sync.length;
                rc = send_sync(p, ch); /* answer a changed sync, as JS does */
            }
            break;
        case KL_MSG_REQUEST:
            rc = on_request(p, ch, &m->u.request);
            break;
        case KL_MSG_WANT:
            rc = send_range(p, ch);
            break;
        case KL_MSG_DATA:
            rc = kl_errf(KL_EPEER, "the peer sent data to a server that asked for none");
            break;
        default:
            break; /* cancel (answers are immediate), unwant, bitfield, range, extension */
        }
    }
    return rc;
}

static void on_remote_open(kl_session *s, const uint8_t dkey[KL_HASH_BYTES], void *ctx) {
    peer *p = ctx;
    server *srv = p->srv;
    for (size_t i = 0; i < srv->nlogs; i++)
        if (memcmp(srv->logs[i].log->dkey, dkey, KL_HASH_BYTES) == 0) {
            int ch = kl_session_open_core(s, srv->logs[i].log->key);
            if (ch >= 0)
                p->ch_log[ch] = (int)i;
            return;
        }
}

static void on_channel(kl_session *s, int ch, void *ctx) {
    (void)s;
    peer *p = ctx;
    if (p->ch_log[ch] < 0)
        return;
    p->remote_len[ch] = 0;
    int rc = send_sync(p, ch);
    if (rc == 0)
        rc = send_range(p, ch);
    (void)rc; /* a failure fails the session; the socket handler drops the peer */
}

static void on_closed(kl_session *s, int ch, void *ctx) {
    (void)s;
    peer *p = ctx;
    p->ch_log[ch] = -1;
}

/*
 * Feed in[0..n) to the session while its output stays below SERVE_OUT_HIGH;
 * keep what is left in p->in (in may be p->in's own bytes). < 0: dropped.
 */
static int feed(peer *p, const uint8_t *in, size_t n) {
    size_t used = 0;
    if (kl_session_input_upto(p->s, in, n, SERVE_OUT_HIGH, &used) < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", kl_last_error());
        drop(p, why);
        return -1;
    }
    size_t rest = n - used;
    if (rest == 0) {
        free(p->in);
        p->in = NULL;
        p->in_off = p->in_len = 0;
    } else if (p->in && in == p->in + p->in_off) { /* fed from p->in: what is left stays */
        p->in_off += used;
        p->in_len = rest;
    } else {
        KL_ASSERT(rest <= SERVE_READ_BYTES);
        if (!p->in && !(p->in = malloc(SERVE_READ_BYTES))) {
            drop(p, "out of memory");
            return -1;
        }
        memcpy(p->in, in + used, rest);
        p->in_off = 0;
        p->in_len = rest;
    }
    p->peak_mem = KL_MAX(p->peak_mem, peer_memory(p));
    return 0;
}

/*
 * Send what is pending, and answer what was read and not yet answered as
 * the output drains; read more only when both are done. < 0: dropped.
 */
static int pump_peer(peer *p) {
    size_t n = 0;
    for (;;) {
        const uint8_t *out = kl_session_output(p->s, &n);
        while (n > 0) {
            ssize_t w = send(p->fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (w < 0) {
                drop(p, strerror(errno));
                return -1;
            }
            kl_session_sent(p->s, (size_t)w);
            out = kl_session_output(p->s, &n);
        }
        if ((p->in_len == 0 && !kl_session_input_waiting(p->s)) || n >= SERVE_OUT_HIGH)
            break;
        if (feed(p, p->in ? p->in + p->in_off : NULL, p->in_len) < 0) /* 0: a batch's rest */
            return -1;
    }
    p->reading = n < SERVE_OUT_HIGH && p->in_len == 0 && !kl_session_input_waiting(p->s);
    if (n < SERVE_OUT_HIGH)
        p->backlog_since_ns = 0;
    else if (!p->backlog_since_ns)
        p->backlog_since_ns = kl_mono_ns();
    kl_loop_mod(p->srv->loop, p->fd, (p->reading ? EPOLLIN : 0) | (n ? EPOLLOUT : 0));
    return 0;
}

static void on_peer_io(kl_loop *loop, int fd, uint32_t events, void *ctx) {
    (void)loop;
    (void)fd;
    peer *p = ctx;
    if (p->reading && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        uint8_t *buf = p->srv->rbuf;
        ssize_t r = recv(p->fd, buf, SERVE_READ_BYTES, MSG_DONTWAIT);
        if (r == 0) {
            drop(p, "the peer closed the connection");
            return;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            drop(p, strerror(errno));
            return;
        }
        if (r > 0) {
            p->last_input_ns = kl_mono_ns();
            if (feed(p, buf, (size_t)r) < 0)
                return;
        }
    }
    pump_peer(p);
}

/* A connection refused: counted, and logged at most once a second. */
static void refused(server *srv, const char *why) {
    srv->refused++;
    uint64_t now = kl_mono_ns();
    if (now - srv->refused_said_ns < SERVE_REFUSED_SAY_NS && srv->refused_said_ns)
        return;
    say(srv, "refused %llu connection(s): %s", (unsigned long long)srv->refused, why);
    srv->refused = 0;
    srv->refused_said_ns = now;
}

/* accept failed for want of descriptors: take the connection with the spare one and close it. */
static void refuse_no_fd(server *srv, int lfd, int err) {
    if (srv->spare_fd >= 0) {
        close(srv->spare_fd);
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0)
            close(c);
        srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (srv->spare_fd < 0) { /* none to spare: stop watching the socket for a while */
        kl_loop_mod(srv->loop, lfd, 0);
        srv->accept_paused_ns = kl_mono_ns();
    }
    refused(srv, strerror(err));
}

static void on_accept(kl_loop *loop, int fd, uint32_t events, void *ctx) {
    (void)events;
    server *srv = ctx;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            refuse_no_fd(srv, fd, errno);
        return;
    }
    if (srv->npeers >= srv->max_peers) {
        close(c);
        char why[96];
        snprintf(why, sizeof why, "%zu peers connected, the most this server takes", srv->npeers);
        refused(srv, why);
        return;
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer *p = calloc(1, sizeof *p);
    kl_session_cbs cbs = {.on_remote_open = on_remote_open,
                          .on_channel = on_channel,
                          .on_message = on_message,
                          .on_channel_closed = on_closed};
    if (!p || kl_session_new(KL_NOISE_RESPONDER, srv->sk, &cbs, p, &p->s) < 0) {
        free(p);
        close(c);
        return;
    }
    p->srv = srv;
    p->fd = c;
    p->reading = 1;
    p->last_input_ns = p->accepted_ns = kl_mono_ns();
    for (size_t i = 0; i < KL_SESSION_MAX_CHANNELS; i++)
        p->ch_log[i] = -1;
    if (kl_loop_add(loop, c, EPOLLIN, on_peer_io, p) < 0) {
        kl_session_free(p->s);
        free(p);
        close(c);
        return;
    }
    p->next = srv->peers;
    srv->peers = p;
    srv->npeers++;
    say(srv, "peer %d connected", c);
}

/*
 * The log was truncated (its fork changed), or refreshing failed: a
 * read-only handle cannot follow a truncation, so open it again. Requests of the old fork are
 * answered noData from now on; peers learn the new fork from the sync that follows. On failure (the
 * truncation is not finished yet) the old handle stays, and the header write that finishes it calls
 * here again.
 */
static int reopen(served *sv) {
    kl_open_options oo;
    kl_open_options_default(&oo);
    oo.flags = KL_OPEN_READONLY;
    kl_log *fresh = NULL;
    int rc = kl_log_open(sv->log->dir, &oo, &fresh);
    if (rc < 0) {
        say(sv->srv, "%s was truncated; reopening it: %s", sv->log->dir, kl_last_error());
        return rc;
    }
    if (fresh->last.fork != sv->log->last.fork)
        say(sv->srv, "%s was truncated: now serving fork %llu", sv->log->dir,
            (unsigned long long)fresh->last.fork);
    kl_log_close(sv->log);
    sv->log = fresh;
    /* the header may be a new file: watch the path again (the same watch if it is not) */
    if (inotify_add_watch(sv->ino_fd, sv->log->hdr_path, IN_MODIFY) < 0)
        say(sv->srv, "watching %s: %s", sv->log->hdr_path, strerror(errno));
    return 0;
}

/* A served log's header changed: refresh, and announce a new signed length or fork. */
static void on_log_change(kl_loop *loop, int fd, uint32_t events, void *ctx) {
    (void)loop;
    (void)events;
    served *sv = ctx;
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    uint64_t old_fork = sv->log->last.fork;
    int rc = kl_log_refresh(sv->log);
    if (rc < 0) /* truncated (KL_EFORK), or files changed under a truncation: open anew */
        rc = reopen(sv);
    if (rc < 0)
        return; /* damage, or a truncation not finished yet: keep serving what was signed */
    uint64_t length = 0, fork = 0;
    int forked = sv->log->last.fork != old_fork;
    if (!signed_state(sv, &length, &fork) || (length <= sv->announced && !forked))
        return;
    sv->announced = length;
    server *srv = sv->srv;
    int index = (int)(sv - srv->logs);
    for (peer *p = srv->peers, *next; p; p = next) {
        next = p->next;
        rc = 0;
        for (int ch = 0; ch < (int)KL_SESSION_MAX_CHANNELS && rc == 0; ch++)
            if (p->ch_log[ch] == index && kl_session_channel_open(p->s, ch)) {
                /* after a truncation the sync goes first: a range before it would read
                   as blocks of the old fork, and the peer would ask for them in vain */
                rc = forked ? send_sync(p, ch) : send_range(p, ch);
                if (rc == 0)
                    rc = forked ? send_range(p, ch) : send_sync(p, ch);
            }
        if (rc < 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", kl_last_error());
            drop(p, why);
        } else {
            pump_peer(p);
        }
    }
}

static int listen_on(const char *host_port, int *out) {
    struct addrinfo *ai = NULL;
    int rc = kl_addr_resolve(host_port, 1, &ai);
    if (rc < 0)
        return rc;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1, err = 0;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0)
        err = errno;
    freeaddrinfo(ai);
    if (err) {
        if (fd >= 0)
            close(fd);
        return kl_errf(KL_EIO, "listening on %s: %s", host_port, strerror(err));
    }
    *out = fd;
    return 0;
}

void kl_serve_options_default(kl_serve_options *o) {
    memset(o, 0, sizeof *o);
    o->stall_ms = 30000;
}

/* The descriptors open now (for the peer cap: what RLIMIT_NOFILE leaves). */
static size_t fds_open(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 64; /* a guess on the safe side */
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The peers the descriptors allow: what RLIMIT_NOFILE leaves (at least 1; SIZE_MAX: no limit). */
static size_t fd_peer_cap(void) {
    struct rlimit rl;
    size_t cap = SIZE_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        size_t used = fds_open() + SERVE_FD_RESERVE;
        cap = rl.rlim_cur > used ? (size_t)(rl.rlim_cur - used) : 1;
    }
    KL_ASSERT(cap >= 1);
    return cap;
}

/*
 * srv->max_peers: opts->max_peers if the descriptors allow it, else what
 * they allow; 0 asks for SERVE_PEERS_MAX on the same terms. Logged if
 * say_it, with the reason when an explicit value was lowered.
 */
static void set_peer_cap(server *srv, int say_it) {
    size_t fds = fd_peer_cap();
    size_t asked = srv->opts->max_peers ? srv->opts->max_peers : SERVE_PEERS_MAX;
    srv->max_peers = KL_MIN(asked, fds);
    KL_ASSERT(srv->max_peers >= 1 && srv->max_peers <= asked);
    if (!say_it)
        return;
    if (srv->opts->max_peers == 0 || srv->max_peers == asked)
        say(srv, "at most %zu peers at once%s", srv->max_peers,
            srv->opts->max_peers ? " (as asked)" : "");
    else
        say(srv,
            "at most %zu peers at once: %zu were asked, but the file descriptors "
            "RLIMIT_NOFILE leaves allow only %zu (raise ulimit -n for more)",
            srv->max_peers, asked, fds);
}

int kl_serve(const char *const *dirs, size_t ndirs, const char *host_port,
             const kl_serve_options *opts_in) {
    kl_err_clear();
    if (sodium_init() < 0)
        return kl_errf(KL_EIO, "libsodium failed to initialize");
    if (!dirs || ndirs == 0 || !host_port)
        return kl_errf(KL_EINVAL, "kl_serve: no logs or no address");
    if (ndirs > SERVE_MAX_LOGS)
        return kl_errf(KL_EINVAL, "at most %u logs per server", SERVE_MAX_LOGS);
    kl_serve_options defaults;
    kl_serve_options_default(&defaults);
    server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return kl_errf(KL_ENOMEM, "server");
    srv->opts = opts_in ? opts_in : &defaults;
    srv->listen_fd = -1;
    srv->spare_fd = -1;
    uint8_t pk[32];
    crypto_sign_keypair(pk, srv->sk);
    int rc = kl_loop_new(&srv->loop);
    kl_open_options oo;
    kl_open_options_default(&oo);
    oo.flags = KL_OPEN_READONLY;
    for (size_t i = 0; rc == 0 && i < ndirs; i++) {
        served *sv = &srv->logs[i];
        sv->srv = srv;
        sv->ino_fd = -1;
        rc = kl_log_open(dirs[i], &oo, &sv->log);
        if (rc < 0)
            break;
        srv->nlogs++;
        uint64_t length = 0, fork = 0;
        signed_state(sv, &length, &fork);
        sv->announced = length;
        sv->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (sv->ino_fd < 0 || inotify_add_watch(sv->ino_fd, sv->log->hdr_path, IN_MODIFY) < 0)
            rc = kl_errf(KL_EIO, "watching %s: %s", sv->log->hdr_path, strerror(errno));
        if (rc == 0)
            rc = kl_loop_add(srv->loop, sv->ino_fd, EPOLLIN, on_log_change, sv);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (memcmp(srv->logs[j].log->key, sv->log->key, KL_HASH_BYTES) == 0)
                rc = kl_errf(KL_EINVAL, "%s and %s are the same core", dirs[j], dirs[i]);
    }
    if (rc == 0)
        rc = listen_on(host_port, &srv->listen_fd);
    if (rc == 0)
        rc = kl_loop_add(srv->loop, srv->listen_fd, EPOLLIN, on_accept, srv);
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    set_peer_cap(srv, rc == 0); /* after the logs, the listener and the spare are open */
    if (rc == 0 && srv->opts->on_listening) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char host[128] = "?", port[16] = "?";
        if (getsockname(srv->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
            getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                        NI_NUMERICHOST | NI_NUMERICSERV);
        char addr[160];
        snprintf(addr, sizeof addr, "%s:%s", host, port);
        srv->opts->on_listening(srv->opts->ctx, addr);
    }
    while (rc == 0 && !(srv->opts->stop && *srv->opts->stop)) {
        int n = kl_loop_run_once(srv->loop, 100);
        if (n < 0)
            rc = n;
        uint64_t now = kl_mono_ns();
        if (srv->accept_paused_ns && now - srv->accept_paused_ns > SERVE_ACCEPT_PAUSE_NS) {
            srv->accept_paused_ns = 0;
            if (srv->spare_fd < 0)
                srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            kl_loop_mod(srv->loop, srv->listen_fd, EPOLLIN);
        }
        for (peer *p = srv->peers, *next; p; p = next) {
            next = p->next;
            int ka = kl_session_keepalive(p->s, now); /* a quiet peer hears from us now and then */
            if (ka < 0)
                drop(p, kl_last_error());
            else if (ka > 0)
                pump_peer(p); /* < 0: dropped */
            else if (p->backlog_since_ns && now - p->backlog_since_ns > SERVE_BACKLOG_NS)
                drop(p, "it left its answers unread (over 2 MiB for a second): too many "
                        "requests outstanding");
            else if (p->reading &&
                     now - p->last_input_ns > (uint64_t)srv->opts->stall_ms * 1000000u)
                drop(p, "it sent nothing for too long");
            else if (!kl_session_ready(p->s) &&
                     now - p->accepted_ns > (uint64_t)srv->opts->stall_ms * 1000000u)
                drop(p, "its handshake did not finish in time");
        }
    }
    while (srv->peers)
        drop(srv->peers, "the server is stopping");
    if (srv->listen_fd >= 0) {
        kl_loop_del(srv->loop, srv->listen_fd);
        close(srv->listen_fd);
    }
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    for (size_t i = 0; i < srv->nlogs; i++) {
        if (srv->logs[i].ino_fd >= 0) {
            kl_loop_del(srv->loop, srv->logs[i].ino_fd);
            close(srv->logs[i].ino_fd);
        }
        kl_log_close(srv->logs[i].log);
    }
    kl_loop_free(srv->loop);
    sodium_memzero(srv->sk, sizeof srv->sk);
    free(srv);
    return rc;
}
