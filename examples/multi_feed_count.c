/*
 * multi_feed_count.c - a processor over several logs (a Kappa view over
 * many feeds), with its own apply callback, using only <kappalog.h>.
 *
 *   multi_feed_count DIR [EVENTS]
 *
 * Makes three logs under DIR (feed-0, feed-1, feed-2; kept if they exist),
 * appends EVENTS events (default 10000) to each, and folds all three into
 * one view in DIR/counts: how many events of each type there are, per feed
 * and over all feeds. The processor keeps one position per feed, committed
 * in the same LMDB transaction as the counts, so running this again (or
 * after a crash) applies each event exactly once: the counts always equal
 * the events appended. It checks that and exits 1 if they differ.
 *
 * An event is a line "type=<click|view|purchase> user=<n>"; the fold does
 * not need JSON, just the bytes of each record.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <kappalog.h>

#define FEEDS 3
static const char *const TYPES[] = {"click", "view", "purchase"};
#define NTYPES 3

static int fail(const char *what, int rc) {
    fprintf(stderr, "multi_feed_count: %s: %s (%s)\n", what, kl_strerror(rc), kl_last_error());
    return 1;
}

/* The type of an event record: the word after "type=", up to a space. */
static size_t event_type(const kl_record *r, const char **type) {
    const char *p = r->data;
    if (r->size < 5 || memcmp(p, "type=", 5) != 0)
        return 0;
    const char *end = memchr(p + 5, ' ', r->size - 5);
    *type = p + 5;
    return end ? (size_t)(end - (p + 5)) : r->size - 5;
}

/* Add 1 to the counter stored at key (a little-endian uint64; absent = 0). */
static int bump(kl_txn *txn, const char *key) {
    const void *v;
    size_t n;
    uint64_t count = 0;
    int rc = kl_txn_get(txn, key, strlen(key), &v, &n);
    if (rc < 0)
        return rc;
    if (rc == 1 && n == sizeof count)
        memcpy(&count, v, sizeof count);
    count++;
    return kl_txn_put(txn, key, strlen(key), &count, sizeof count);
}

/* apply: count every event under "all/<type>" and "feed<source>/<type>". */
static int count_events(void *ctx, kl_txn *txn, size_t source, const kl_record *recs, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        const char *type;
        size_t len = event_type(&recs[i], &type);
        char key[64];
        int rc = 0;
        if (len == 0 || len > 32)
            len = 1, type = "?"; /* not an event: counted as "?" */
        snprintf(key, sizeof key, "all/%.*s", (int)len, type);
        if ((rc = bump(txn, key)) < 0)
            return rc;
        snprintf(key, sizeof key, "feed%zu/%.*s", source, (int)len, type);
        if ((rc = bump(txn, key)) < 0)
            return rc;
    }
    return 0;
}

/* Open feed i under dir, creating it if needed. */
static int open_feed(const char *dir, int i, kl_log **out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/feed-%d", dir, i);
    struct stat st;
    if (stat(path, &st) != 0) {
        kl_config cfg;
        kl_config_default(&cfg);
        cfg.fsync_mode = KL_FSYNC_NEVER; /* an example: speed over durability */
        int rc = kl_log_create(path, &cfg);
        if (rc < 0)
            return rc;
    }
    return kl_log_open(path, NULL, out);
}

/* Append n events to log, their types chosen by index. */
static int append_events(kl_log *log, int feed, uint64_t n) {
    enum { BATCH = 500 };
    static char text[BATCH][48];
    kl_block blocks[BATCH];
    uint64_t base = kl_log_length(log);
    for (uint64_t done = 0; done < n;) {
        size_t k = 0;
        for (; k < BATCH && done + k < n; k++) {
            uint64_t i = base + done + k;
            int len = snprintf(text[k], sizeof text[k], "type=%s user=%" PRIu64,
                               TYPES[(i * 7 + (uint64_t)feed) % NTYPES], i % 1000);
            blocks[k].data = text[k];
            blocks[k].size = (size_t)len;
        }
        int rc = kl_log_append(log, blocks, k, NULL);
        if (rc < 0)
            return rc;
        done += k;
    }
    return 0;
}

static int print_entry(void *ctx, const void *key, size_t key_len, const void *val, size_t n) {
    uint64_t *total = ctx, count = 0;
    if (n == sizeof count)
        memcpy(&count, val, sizeof count);
    printf("  %-18.*s %" PRIu64 "\n", (int)key_len, (const char *)key, count);
    if (key_len > 4 && memcmp(key, "all/", 4) == 0)
        *total += count;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: multi_feed_count DIR [EVENTS]\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t events = argc == 3 ? strtoull(argv[2], NULL, 10) : 10000;
    mkdir(dir, 0755);
    kl_log *feeds[FEEDS] = {0};
    uint64_t expected = 0;
    int rc = 0;
    for (int i = 0; i < FEEDS && rc == 0; i++) {
        rc = open_feed(dir, i, &feeds[i]);
        if (rc == 0)
            rc = append_events(feeds[i], i, events * (uint64_t)(i + 1));
        if (rc == 0)
            expected += kl_log_length(feeds[i]);
    }
    if (rc < 0)
        return fail("the feeds", rc);

    kl_processor_def def;
    kl_processor_def_default(&def);
    def.name = "event types per feed, v1"; /* checked on every open: a new fold needs a new view */
    def.apply = count_events;
    char view[4096];
    snprintf(view, sizeof view, "%s/counts", dir);
    kl_processor *p = NULL;
    uint64_t applied = 0;
    if ((rc = kl_processor_open(view, feeds, FEEDS, &def, &p)) < 0)
        return fail("opening the view", rc);
    if ((rc = kl_processor_run(p, NULL, &applied)) < 0)
        return fail("running the processor", rc);
    printf("applied %" PRIu64 " new events; positions:", applied);
    for (int i = 0; i < FEEDS; i++)
        printf(" feed-%d at %" PRIu64, i, kl_processor_position(p, (size_t)i));
    printf("\n");

    kl_txn *txn = NULL;
    uint64_t total = 0;
    if ((rc = kl_processor_read(p, &txn)) < 0)
        return fail("reading the view", rc);
    rc = kl_txn_scan(txn, "", 0, print_entry, &total);
    kl_txn_end(txn);
    kl_processor_close(p);
    for (int i = 0; i < FEEDS; i++)
        kl_log_close(feeds[i]);
    if (rc < 0)
        return fail("scanning the view", rc);
    printf("%" PRIu64 " events counted, %" PRIu64 " in the feeds\n", total, expected);
    return total == expected ? 0 : 1;
}
