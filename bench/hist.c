/*
 * hist.c - the latency histogram: log-linear buckets (exact below 32 ns,
 * then 32 buckets per power of two), so a percentile is within about 3% of
 * the true value and recording a sample is a few instructions with no
 * allocation. Count, sum, min and max are kept exactly.
 *
 * What a reader would get wrong: a percentile is reported as the middle of
 * its bucket, clamped to the exact min and max, not as a recorded sample.
 */
#include <string.h>

#include "bench.h"

static unsigned bucket_of(uint64_t ns) {
    if (ns < HIST_SUB)
        return (unsigned)ns;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* e >= HIST_SUB_BITS */
    unsigned sub = (unsigned)(ns >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB + sub;
}

/* The middle of bucket b, in ns. */
static uint64_t bucket_mid(unsigned b) {
    if (b < HIST_SUB)
        return b;
    unsigned e = (b - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
    uint64_t sub = (b - HIST_SUB) % HIST_SUB;
    uint64_t width = 1ull << (e - HIST_SUB_BITS);
    return ((HIST_SUB + sub) << (e - HIST_SUB_BITS)) + width / 2;
}

void hist_reset(bench_hist *h) {
    memset(h, 0, sizeof *h);
    h->min_ns = UINT64_MAX;
}

void hist_add(bench_hist *h, uint64_t ns) {
    h->bucket[bucket_of(ns)]++;
    h->count++;
    h->sum_ns += ns;
    if (ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void hist_merge(bench_hist *dst, const bench_hist *src) {
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns)
        dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

uint64_t hist_percentile_ns(const bench_hist *h, double pct) {
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->bucket[b];
        if (seen >= rank) {
            uint64_t v = bucket_mid(b);
            return v < h->min_ns ? h->min_ns : v > h->max_ns ? h->max_ns : v;
        }
    }
    return h->max_ns;
}

double hist_avg_ns(const bench_hist *h) {
    return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}

/* Ops at or above `ns` (by bucket, so within a bucket's width): count, time. */
void hist_over(const bench_hist *h, uint64_t ns, uint64_t *count, double *total_ns) {
    *count = 0;
    *total_ns = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        uint64_t mid = bucket_mid(b);
        if (mid < ns || h->bucket[b] == 0)
            continue;
        *count += h->bucket[b];
        *total_ns += (double)h->bucket[b] * (double)(mid > h->max_ns ? h->max_ns : mid);
    }
}
