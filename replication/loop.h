/*
 * loop.h - the event loop replication runs on: one thread, epoll, no
 * thread per peer. A file descriptor is registered with the events it
 * waits for and a callback; kl_loop_run_once waits up to a timeout and
 * calls the callbacks of the ready ones.
 *
 * Callbacks may add, change and remove any registration, their own
 * included, while a batch of events is being dispatched: a removed entry
 * is only marked, never called again, and freed after the batch.
 */
#ifndef KL_LOOP_H
#define KL_LOOP_H

#include <stdint.h>

typedef struct kl_loop kl_loop;

/* events: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP as epoll reported them */
typedef void (*kl_loop_fn)(kl_loop *loop, int fd, uint32_t events, void *ctx);

int kl_loop_new(kl_loop **out);
/* Frees the loop and its registrations (not the fds, which belong to the callers). */
void kl_loop_free(kl_loop *loop);

/* Watch fd for `events` (EPOLLIN, EPOLLOUT). KL_EEXIST if fd is watched already. */
int kl_loop_add(kl_loop *loop, int fd, uint32_t events, kl_loop_fn fn, void *ctx);
/* Change what fd is watched for. KL_ENOTFOUND if it is not watched. */
int kl_loop_mod(kl_loop *loop, int fd, uint32_t events);
/* Stop watching fd (before closing it). Nothing if it is not watched. */
void kl_loop_del(kl_loop *loop, int fd);

/* Wait up to timeout_ms (-1: no limit) and dispatch; the number of callbacks called, or an error.
 */
int kl_loop_run_once(kl_loop *loop, int timeout_ms);

struct addrinfo;
/*
 * Resolve "HOST:PORT" (PORT a decimal 0..65535; HOST a name or address,
 * IPv6 in brackets or bare) for a TCP socket, to listen on if passive.
 * KL_EINVAL with the reason for anything else. Free *out with freeaddrinfo.
 */
int kl_addr_resolve(const char *host_port, int passive, struct addrinfo **out);

#endif
