/*
 * peer_ceiling.c - the disk's ceiling as a peer of the compare run: a plain
 * C loop writing the same records in the same batches as kappalog (1, 64,
 * 100 and 1,000 records), one write(2) per batch of records packed back to
 * back, on a fresh file in the scratch dir; "none" never syncs, "fdatasync"
 * calls fdatasync(2) after every write (paired with kappalog's always).
 * There is no "interval ~1 s" setting, so kappalog's interval:1000 runs
 * have no ceiling to pair with here (the main benchmark's ceilings group
 * has the no-sync figures next to kappalog's never).
 *
 * The loop is the main benchmark's (ceiling.c, ceiling_write_file), not a
 * copy of it: one clock read per write, as kappalog's append loop, the
 * latency per op and the records counted as cmp_op_done counts them.
 *
 * What a reader would get wrong: this is a ceiling, not a log: no framing,
 * no index, no checksums, no reads. Its "none" figures are the page cache's
 * speed on this kernel, and its "fdatasync" figures the disk's flush
 * latency with the fewest bytes and metadata possible.
 */
#include <stdio.h>

#include "compare.h"

static int ce_setup(const cmp_ctx *c, char *why, size_t cap) {
    (void)c;
    (void)why;
    (void)cap;
    return 0;
}

static int ce_append(const cmp_ctx *c, const cmp_case *k, cmp_out *out) {
    const bench_pool *p = k->pool;
    if (k->producers > 1 || p->batch != k->batch || p->record_bytes != k->record_bytes) {
        snprintf(out->why, sizeof out->why, "ceiling: one writer of whole pool batches only");
        return -1;
    }
    char path[4096];
    cmp_scratch(c, "ceiling-append.dat", path, sizeof path);
    int sync = k->dur == CMP_DUR_EVERY;
    size_t batch_bytes = p->batch * p->record_bytes;
    if (ceiling_write_file(path, p, batch_bytes, sync, c->append_s, c->run_cap_bytes, &out->run,
                           out->hist, out->why, sizeof out->why) < 0)
        return -1;
    if (out->run.records != out->run.ops * p->batch)
        die("ceiling: %llu records in %llu writes of %zu", (unsigned long long)out->run.records,
            (unsigned long long)out->run.ops, p->batch);
    snprintf(out->note, sizeof out->note,
             "plain C loop (bench/ceiling.c): one write(2) of %zu bytes (%zu records packed back "
             "to back) per op%s, on a fresh file",
             batch_bytes, p->batch, sync ? ", fdatasync(2) after each" : ", never synced");
    return 0;
}

const cmp_peer cmp_peer_ceiling = {
    .name = "ceiling",
    .append_verb = "write(2)",
    .batch_word = "batch",
    .setting_word = "sync",
    .setting = {[CMP_DUR_NONE] = "none", [CMP_DUR_EVERY] = "fdatasync"},
    .batches = {1, 64, 100, 1000},
    .producers = 0,
    .setup = ce_setup,
    .append = ce_append,
    .visible = NULL, /* no reader: a file has no notion of "appended" */
    .load = NULL,    /* no reads: the ceiling is of writes */
    .read = NULL,
    .get = NULL,
};
