/*
 * result.c - the table of results: each scenario's runs (repetitions), its
 * latency histogram merged over them, the median rate, and its ratio to a
 * reference scenario with a target and a verdict (and, for a figure judged
 * against more than one reference, its further ratios: result_also).
 * Printing follows Kafka's producer perf test, one line per scenario.
 *
 * What a reader would get wrong: the rate of a scenario is the median of
 * its runs' rates (records / elapsed seconds of each run), while the
 * latency percentiles are over every op of every run together.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static bench_result **table;
static size_t ntable, captable;

bench_result *result_find(const char *name) {
    for (size_t i = 0; i < ntable; i++)
        if (strcmp(table[i]->name, name) == 0)
            return table[i];
    return NULL;
}

bench_result *result_get(const char *group, const char *kind, const char *name) {
    bench_result *r = result_find(name);
    if (r)
        return r;
    if (ntable == captable) {
        captable = captable ? captable * 2 : 64;
        table = realloc(table, captable * sizeof *table);
        if (!table)
            die("out of memory");
    }
    r = calloc(1, sizeof *r);
    if (!r || !(r->hist = malloc(sizeof *r->hist)))
        die("out of memory");
    hist_reset(r->hist);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->group, sizeof r->group, "%s", group);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    r->ratio = -1.0;
    table[ntable++] = r;
    return r;
}

void result_add_run(bench_result *r, const bench_run *run, const bench_hist *h) {
    if (r->nruns == BENCH_MAX_RUNS)
        die("%s: more than %d runs", r->name, BENCH_MAX_RUNS);
    r->runs[r->nruns++] = *run;
    if (h)
        hist_merge(r->hist, h);
    result_finish(r);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

void result_finish(bench_result *r) {
    double rates[BENCH_MAX_RUNS], secs[BENCH_MAX_RUNS];
    for (int i = 0; i < r->nruns; i++) {
        const bench_run *x = &r->runs[i];
        rates[i] = x->seconds > 0 ? (double)x->records / x->seconds : 0.0;
        secs[i] = x->seconds;
    }
    r->rate = r->nruns ? median(rates, r->nruns) : 0.0;
    r->value_ms = r->nruns ? median(secs, r->nruns) * 1000.0 : 0.0;
}

/*
 * Has a target a verdict, and is it met? v is the ratio (the rate for
 * TARGET_RATE_MIN, the p99 latency in microseconds for TARGET_P99_MAX_US).
 */
static void judge(target_kind tk, double target, double v, int *has, int *pass) {
    *has = tk != TARGET_NONE && (tk == TARGET_RATE_MIN || v >= 0);
    *pass = tk == TARGET_RATIO_MAX || tk == TARGET_P99_MAX_US ? v <= target : v >= target;
}

static void verdict(bench_result *r) {
    double v = r->ratio;
    if (r->tkind == TARGET_RATE_MIN)
        v = r->rate;
    else if (r->tkind == TARGET_P99_MAX_US)
        v = r->hist && r->hist->count ? (double)hist_percentile_ns(r->hist, 99.0) / 1e3 : -1.0;
    judge(r->tkind, r->target, v, &r->has_verdict, &r->pass);
}

void result_target(bench_result *r, target_kind tk, double target) {
    r->tkind = tk;
    r->target = target;
    verdict(r);
}

/* What a ratio compares in one run: its rate, or its time for open results. */
static double run_value(const bench_result *r, const bench_run *x) {
    if (strcmp(r->kind, "open_close") == 0)
        return x->seconds;
    return x->seconds > 0 ? (double)x->records / x->seconds : 0.0;
}

/*
 * ratio = r / ref, by rate, or by time for open results. When both have
 * the same number of runs, run i of each was made next to the other (the
 * scenarios pair them), and the ratio is the median of the run-by-run
 * ratios; otherwise, or when r says its runs were not made next to the
 * reference's (r->unpaired), it is the ratio of the medians. A missing reference
 * (its group not run, or not measured) leaves the ratio at -1.
 */
static double ratio_to(const bench_result *r, const char *ref_name, int *paired) {
    const bench_result *ref = result_find(ref_name);
    *paired = 0;
    if (!ref || ref->nruns == 0 || r->nruns == 0)
        return -1.0;
    if (ref->nruns == r->nruns && !r->unpaired) {
        double v[BENCH_MAX_RUNS];
        int n = 0;
        for (int i = 0; i < r->nruns; i++) {
            double den = run_value(ref, &ref->runs[i]);
            if (den > 0)
                v[n++] = run_value(r, &r->runs[i]) / den;
        }
        if (n == r->nruns) {
            *paired = 1;
            return median(v, n);
        }
        return -1.0;
    }
    int by_time = strcmp(r->kind, "open_close") == 0;
    double num = by_time ? r->value_ms : r->rate, den = by_time ? ref->value_ms : ref->rate;
    return den > 0 ? num / den : -1.0;
}

void result_ratio(bench_result *r, const char *ref_name, const char *what, target_kind tk,
                  double target) {
    snprintf(r->ratio_of, sizeof r->ratio_of, "%s", ref_name);
    r->ratio_what = what;
    r->tkind = tk;
    r->target = target;
    r->ratio = ratio_to(r, ref_name, &r->ratio_paired);
    verdict(r);
}

void result_also(bench_result *r, const char *ref_name, const char *what, target_kind tk,
                 double target) {
    bench_cmp *c = NULL;
    for (int i = 0; i < r->nalso && !c; i++)
        if (strcmp(r->also[i].of, ref_name) == 0)
            c = &r->also[i];
    if (!c) {
        if (r->nalso == BENCH_MAX_ALSO)
            die("%s: more than %d further comparisons", r->name, BENCH_MAX_ALSO);
        c = &r->also[r->nalso++];
    }
    snprintf(c->of, sizeof c->of, "%s", ref_name);
    c->what = what;
    c->tkind = tk;
    c->target = target;
    c->ratio = ratio_to(r, ref_name, &c->paired);
    judge(tk, target, c->ratio, &c->has_verdict, &c->pass);
}

static const char *verb(const bench_result *r) {
    if (strcmp(r->group, "ceilings") == 0)
        return "records written";
    if (strcmp(r->group, "read") == 0)
        return "records read";
    if (strcmp(r->group, "get") == 0)
        return "records got";
    if (strcmp(r->group, "open") == 0)
        return "opens";
    if (strcmp(r->group, "hashing") == 0)
        return "records hashed";
    if (strcmp(r->group, "verify") == 0)
        return "records verified";
    return "records sent";
}

static void print_latency(const bench_result *r) {
    const bench_hist *h = r->hist;
    if (h->count == 0)
        return;
    printf(", %.3g ms avg latency, %.3g ms p50, %.3g ms p99, %.3g ms p99.9, %.3g ms max latency",
           hist_avg_ns(h) / 1e6, (double)hist_percentile_ns(h, 50) / 1e6,
           (double)hist_percentile_ns(h, 99) / 1e6, (double)hist_percentile_ns(h, 99.9) / 1e6,
           (double)h->max_ns / 1e6);
}

/* Flag a result measured while other processes used much CPU (cpu_other_s). */
static void print_disturbance(const bench_result *r) {
    double other = 0, secs = 0;
    for (int i = 0; i < r->nruns; i++) {
        other += r->runs[i].other_cpu_s;
        secs += r->runs[i].seconds;
    }
    if (secs > 0 && other / secs > 0.1)
        printf(" [other processes used %.2f CPU-s in %.2f s]", other, secs);
}

/* One comparison's line; a reference that was not measured says why. */
static void print_cmp(const char *what, const char *of, double ratio, target_kind tk, double target,
                      int pass) {
    if (ratio < 0) {
        const bench_result *ref = result_find(of);
        if (ref && ref->missing[0])
            printf("    = n/a %s %s (not measured: %s)\n", what, of, ref->missing);
        else
            printf("    = n/a %s %s (not run)\n", what, of);
        return;
    }
    printf("    = %.3f %s %s", ratio, what, of);
    if (tk == TARGET_RATIO_MIN || tk == TARGET_RATIO_MAX)
        printf(" (target %s %.2f: %s)", tk == TARGET_RATIO_MIN ? ">=" : "<=", target,
               pass ? "PASS" : "MISS");
    printf("\n");
}

static void print_ratios(const bench_result *r) {
    if (r->ratio_what)
        print_cmp(r->ratio_what, r->ratio_of, r->ratio, r->tkind, r->target, r->pass);
    for (int i = 0; i < r->nalso; i++) {
        const bench_cmp *c = &r->also[i];
        print_cmp(c->what, c->of, c->ratio, c->tkind, c->target, c->pass);
    }
}

void result_print(const bench_result *r) {
    uint64_t records = 0;
    for (int i = 0; i < r->nruns; i++)
        records += r->runs[i].records;
    if (r->missing[0] && r->nruns == 0) {
        printf("%s: not measured: %s\n", r->name, r->missing);
    } else if (strcmp(r->kind, "open_close") == 0) {
        printf("%s: %d %s, %.2f ms median, %.2f ms min, %.2f ms max (open + close)\n", r->name,
               r->nruns, verb(r), r->value_ms, (double)r->hist->min_ns / 1e6,
               (double)r->hist->max_ns / 1e6);
    } else {
        printf("%s: %llu %s, %.1f records/sec (%.2f MB/sec)", r->name, (unsigned long long)records,
               verb(r), r->rate, r->rate * (double)r->record_bytes / (1024.0 * 1024.0));
        print_latency(r);
        printf(".");
        if (r->nruns > 1)
            printf(" [median of %d runs]", r->nruns);
        print_disturbance(r);
        printf("\n");
    }
    if (r->tkind == TARGET_RATE_MIN)
        printf("    target >= %.0f/s: %s\n", r->target, r->pass ? "PASS" : "MISS");
    if (r->tkind == TARGET_P99_MAX_US)
        printf("    target p99 <= %.0f us: %s\n", r->target, r->pass ? "PASS" : "MISS");
    print_ratios(r);
    fflush(stdout);
}

size_t result_count(void) {
    return ntable;
}

bench_result *result_at(size_t i) {
    return i < ntable ? table[i] : NULL;
}

void results_free(void) {
    for (size_t i = 0; i < ntable; i++) {
        free(table[i]->hist);
        free(table[i]);
    }
    free(table);
    table = NULL;
    ntable = captable = 0;
}

/* One target's summary line; counts it. */
static void summary_line(const char *name, const char *what, const char *of, double v, int has,
                         int pass, target_kind tk, double target, int *npass, int *nmiss,
                         int *nna) {
    const char *op = tk == TARGET_RATIO_MAX || tk == TARGET_P99_MAX_US ? "<=" : ">=";
    if (!has) {
        const bench_result *self = result_find(name), *ref = of ? result_find(of) : NULL;
        if (self && self->missing[0] && self->nruns == 0)
            printf("  n/a  %s: not measured (target %s %g): %s\n", name, op, target, self->missing);
        else if (ref && ref->missing[0])
            printf("  n/a  %s: %s %s not measured (target %s %g): %s\n", name, what, of, op, target,
                   ref->missing);
        else
            printf("  n/a  %s: %s %s not run (target %s %g)\n", name, what, of ? of : "", op,
                   target);
        (*nna)++;
        return;
    }
    if (of)
        printf("  %-4s %s: %.3f %s %s (target %s %g)\n", pass ? "PASS" : "MISS", name, v, what, of,
               op, target);
    else
        printf("  %-4s %s: %.3f (target %s %g)\n", pass ? "PASS" : "MISS", name, v, op, target);
    pass ? (*npass)++ : (*nmiss)++;
}

void results_summary(void) {
    int pass = 0, miss = 0, na = 0;
    printf("\ntargets:\n");
    for (size_t i = 0; i < result_count(); i++) {
        const bench_result *r = result_at(i);
        if (r->tkind == TARGET_RATE_MIN)
            summary_line(r->name, "", NULL, r->rate, r->has_verdict, r->pass, r->tkind, r->target,
                         &pass, &miss, &na);
        else if (r->tkind == TARGET_P99_MAX_US)
            summary_line(r->name, "p99 us", NULL,
                         r->hist ? (double)hist_percentile_ns(r->hist, 99.0) / 1e3 : -1.0,
                         r->has_verdict, r->pass, r->tkind, r->target, &pass, &miss, &na);
        else if (r->tkind != TARGET_NONE)
            summary_line(r->name, r->ratio_what, r->ratio_of, r->ratio, r->has_verdict, r->pass,
                         r->tkind, r->target, &pass, &miss, &na);
        for (int k = 0; k < r->nalso; k++) {
            const bench_cmp *c = &r->also[k];
            if (c->tkind != TARGET_NONE)
                summary_line(r->name, c->what, c->of, c->ratio, c->has_verdict, c->pass, c->tkind,
                             c->target, &pass, &miss, &na);
        }
    }
    printf("%d passed, %d missed, %d without a figure\n", pass, miss, na);
}
