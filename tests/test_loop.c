/*
 * test_loop.c - the replication event loop (replication/loop.c): callbacks
 * for ready fds only, with what epoll reported; changing what an fd is
 * watched for; removing an fd from inside a callback, also one whose event
 * is later in the same batch (never delivered, never a use after free
 * under ASan); refused registrations; a timeout with nothing ready.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "replication/loop.h"

#define NPIPES 8

typedef struct state {
    int rd[NPIPES], wr[NPIPES];
    int calls[NPIPES];
    uint32_t last_events[NPIPES];
    int remove_all_on_first; /* the first callback removes every other fd */
} state;

static state st;

static int index_of(int fd) {
    for (int i = 0; i < NPIPES; i++)
        if (st.rd[i] == fd || st.wr[i] == fd)
            return i;
    fail_msg("callback for an unknown fd %d", fd);
    return -1;
}

static void on_event(kl_loop *loop, int fd, uint32_t events, void *ctx) {
    assert_ptr_equal(ctx, &st);
    int i = index_of(fd);
    st.calls[i]++;
    st.last_events[i] = events;
    if (events & EPOLLIN) {
        char buf[16];
        assert_true(read(fd, buf, sizeof buf) > 0);
    }
    if (st.remove_all_on_first) {
        st.remove_all_on_first = 0;
        for (int j = 0; j < NPIPES; j++)
            kl_loop_del(loop, st.rd[j]); /* its own fd included */
    }
}

static void open_pipes(void) {
    memset(&st, 0, sizeof st);
    for (int i = 0; i < NPIPES; i++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        st.rd[i] = p[0];
        st.wr[i] = p[1];
    }
}

static void close_pipes(void) {
    for (int i = 0; i < NPIPES; i++) {
        close(st.rd[i]);
        close(st.wr[i]);
    }
}

static void test_only_ready_fds_are_called(void **state_) {
    (void)state_;
    open_pipes();
    kl_loop *loop = NULL;
    assert_int_equal(kl_loop_new(&loop), 0);
    for (int i = 0; i < NPIPES; i++)
        assert_int_equal(kl_loop_add(loop, st.rd[i], EPOLLIN, on_event, &st), 0);
    assert_int_equal(kl_loop_run_once(loop, 0), 0); /* nothing ready: a timeout */
    assert_int_equal(write(st.wr[2], "x", 1), 1);
    assert_int_equal(write(st.wr[5], "y", 1), 1);
    assert_int_equal(kl_loop_run_once(loop, 1000), 2);
    for (int i = 0; i < NPIPES; i++)
        assert_int_equal(st.calls[i], i == 2 || i == 5);
    assert_true(st.last_events[2] & EPOLLIN);
    /* watched for writing: a pipe with room is ready at once */
    assert_int_equal(kl_loop_add(loop, st.wr[7], EPOLLOUT, on_event, &st), 0);
    assert_int_equal(kl_loop_run_once(loop, 1000), 1);
    assert_true(st.last_events[7] & EPOLLOUT);
    assert_int_equal(kl_loop_mod(loop, st.wr[7], 0), 0); /* no longer */
    assert_int_equal(kl_loop_run_once(loop, 0), 0);
    assert_int_equal(kl_loop_add(loop, st.rd[1], EPOLLIN, on_event, &st), KL_EEXIST);
    assert_int_equal(kl_loop_mod(loop, 999, EPOLLIN), KL_ENOTFOUND);
    assert_int_equal(kl_loop_add(loop, -1, EPOLLIN, on_event, &st), KL_EINVAL);
    kl_loop_del(loop, 999); /* not watched: nothing happens */
    kl_loop_free(loop);
    close_pipes();
}

static void test_removal_inside_a_batch_stops_later_events(void **state_) {
    (void)state_;
    open_pipes();
    kl_loop *loop = NULL;
    assert_int_equal(kl_loop_new(&loop), 0);
    for (int i = 0; i < NPIPES; i++) {
        assert_int_equal(kl_loop_add(loop, st.rd[i], EPOLLIN, on_event, &st), 0);
        assert_int_equal(write(st.wr[i], "z", 1), 1); /* every one ready in the same batch */
    }
    st.remove_all_on_first = 1;
    assert_int_equal(kl_loop_run_once(loop, 1000), 1); /* the first removed all the others */
    int total = 0;
    for (int i = 0; i < NPIPES; i++)
        total += st.calls[i];
    assert_int_equal(total, 1);
    assert_int_equal(kl_loop_run_once(loop, 0), 0); /* nothing is watched any more */
    /* an fd can be watched again after its removal */
    assert_int_equal(kl_loop_add(loop, st.rd[3], EPOLLIN, on_event, &st), 0);
    assert_int_equal(kl_loop_run_once(loop, 1000), 1);
    kl_loop_free(loop);
    close_pipes();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_ready_fds_are_called),
        cmocka_unit_test(test_removal_inside_a_batch_stops_later_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
