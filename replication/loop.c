/*
 * loop.c - the epoll loop (loop.h).
 *
 * Each registration is a small struct that epoll hands back with the event.
 * Registrations live in a table indexed by fd, so kl_loop_mod/del find them
 * without a search; the table grows to the highest fd watched.
 *
 * What a reader would get wrong: a callback that removes another fd whose
 * event is later in the same batch must not have that event delivered, and
 * the struct must not be freed while epoll's batch still points at it.
 * So kl_loop_del only marks the entry dead and unlinks it from the table;
 * entries are freed after the batch.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "loop.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "engine/util.h"
#include "kappalog.h"

#define LOOP_BATCH 64

typedef struct entry {
    int fd;
    int dead;
    kl_loop_fn fn;
    void *ctx;
    struct entry *next_dead;
} entry;

struct kl_loop {
    int epfd;
    entry **by_fd; /* by_fd[fd]: the live registration of fd, or NULL */
    size_t nfd;
    entry *dead; /* removed during a batch, freed after it */
    int dispatching;
};

int kl_loop_new(kl_loop **out) {
    kl_loop *l = calloc(1, sizeof *l);
    if (!l)
        return kl_errf(KL_ENOMEM, "event loop");
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int e = errno;
        free(l);
        return kl_errf(kl_err_from_errno(e), "epoll_create1: %s", strerror(e));
    }
    *out = l;
    return 0;
}

static void free_dead(kl_loop *l) {
    while (l->dead) {
        entry *e = l->dead;
        l->dead = e->next_dead;
        free(e);
    }
}

void kl_loop_free(kl_loop *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->nfd; i++)
        free(l->by_fd[i]);
    free(l->by_fd);
    free_dead(l);
    close(l->epfd);
    free(l);
}

static entry *find(const kl_loop *l, int fd) {
    return fd >= 0 && (size_t)fd < l->nfd ? l->by_fd[fd] : NULL;
}

int kl_loop_add(kl_loop *l, int fd, uint32_t events, kl_loop_fn fn, void *ctx) {
    if (fd < 0 || !fn)
        return kl_errf(KL_EINVAL, "event loop: bad registration");
    if (find(l, fd))
        return kl_errf(KL_EEXIST, "event loop: fd %d is watched already", fd);
    if ((size_t)fd >= l->nfd) {
        size_t n = l->nfd ? l->nfd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        entry **t = realloc(l->by_fd, n * sizeof *t);
        if (!t)
            return kl_errf(KL_ENOMEM, "event loop table");
        memset(t + l->nfd, 0, (n - l->nfd) * sizeof *t);
        l->by_fd = t;
        l->nfd = n;
    }
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return kl_errf(KL_ENOMEM, "event loop entry");
    *e = (entry){.fd = fd, .fn = fn, .ctx = ctx};
    struct epoll_event ev = {.events = events, .data.ptr = e};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = errno;
        free(e);
        return kl_errf(kl_err_from_errno(err), "epoll_ctl add fd %d: %s", fd, strerror(err));
    }
    l->by_fd[fd] = e;
    return 0;
}

int kl_loop_mod(kl_loop *l, int fd, uint32_t events) {
    entry *e = find(l, fd);
    if (!e)
        return kl_errf(KL_ENOTFOUND, "event loop: fd %d is not watched", fd);
    struct epoll_event ev = {.events = events, .data.ptr = e};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        int err = errno;
        return kl_errf(kl_err_from_errno(err), "epoll_ctl mod fd %d: %s", fd, strerror(err));
    }
    return 0;
}

void kl_loop_del(kl_loop *l, int fd) {
    entry *e = find(l, fd);
    if (!e)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->by_fd[fd] = NULL;
    e->dead = 1;
    e->next_dead = l->dead;
    l->dead = e;
    if (!l->dispatching)
        free_dead(l);
}

int kl_loop_run_once(kl_loop *l, int timeout_ms) {
    struct epoll_event evs[LOOP_BATCH];
    int n = epoll_wait(l->epfd, evs, LOOP_BATCH, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        int err = errno;
        return kl_errf(kl_err_from_errno(err), "epoll_wait: %s", strerror(err));
    }
    l->dispatching = 1;
    int called = 0;
    for (int i = 0; i < n; i++) {
        entry *e = evs[i].data.ptr;
        if (e->dead)
            continue;
        e->fn(l, e->fd, evs[i].events, e->ctx);
        called++;
    }
    l->dispatching = 0;
    free_dead(l);
    return called;
}

int kl_addr_resolve(const char *host_port, int passive, struct addrinfo **out) {
    char host[256];
    const char *colon = strrchr(host_port, ':');
    size_t hlen = colon ? (size_t)(colon - host_port) : 0;
    size_t plen = colon ? strlen(colon + 1) : 0;
    if (!colon || hlen == 0 || hlen >= sizeof host || plen == 0 || plen > 5 ||
        strspn(colon + 1, "0123456789") != plen)
        return kl_errf(KL_EINVAL, "'%s' is not HOST:PORT", host_port);
    if (atoi(colon + 1) > 65535)
        return kl_errf(KL_EINVAL, "%s: port %s is out of range (0..65535)", host_port, colon + 1);
    if (host_port[0] == '[' && colon[-1] == ']') { /* [::1]:PORT */
        memcpy(host, host_port + 1, hlen - 2);
        host[hlen - 2] = 0;
    } else {
        memcpy(host, host_port, hlen);
        host[hlen] = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    int g = getaddrinfo(host, colon + 1, &hints, out);
    if (g != 0)
        return kl_errf(KL_EINVAL, "%s: %s", host_port,
                       g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    return 0;
}
