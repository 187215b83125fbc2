/*
 * json.c - all results of a run as one JSON document (the input of
 * scripts/bench-report, which writes docs/BENCHMARKS.md from it).
 *
 * Layout: {tool, format, command, date, quick, build, kappalog_version,
 * source_commit, machine{...}, settings{...}, results[...]}. Rates are per
 * second, latencies in microseconds, sizes in bytes. A ratio that could not
 * be computed (its reference was not run) is null. Format 2 added, per
 * result, "also" (the same figure against further references, each as the
 * main ratio is) and "not_measured" (why a result has no runs, or "").
 *
 * What a reader would get wrong: "records_per_s" is the median of the
 * runs' rates, and each run's own figures are under "runs".
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#ifndef KL_BENCH_BUILD_TYPE
#define KL_BENCH_BUILD_TYPE ""
#endif
#ifndef KL_BENCH_C_FLAGS
#define KL_BENCH_C_FLAGS ""
#endif

#define JSON_FORMAT 2
#define SLOW_NS     10000000u /* ops this slow are stalls: counted apart (over_10ms) */

static void jstr(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void jnum(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void jkey(FILE *f, const char *k) {
    jstr(f, k);
    fputc(':', f);
}

static void write_machine(FILE *f, const bench_machine *m, const char *dir) {
    fputs("\"machine\":{", f);
    jkey(f, "hostname");
    jstr(f, m->hostname);
    fputc(',', f);
    jkey(f, "kernel");
    jstr(f, m->kernel);
    fputc(',', f);
    jkey(f, "cpu");
    jstr(f, m->cpu);
    fprintf(f, ",\"cores\":%ld,\"ram_bytes\":%llu,", m->cores, (unsigned long long)m->ram_bytes);
    jkey(f, "dir");
    jstr(f, dir);
    fputc(',', f);
    jkey(f, "filesystem");
    jstr(f, m->fs_type);
    fputc(',', f);
    jkey(f, "device");
    jstr(f, m->device);
    fputc(',', f);
    jkey(f, "mount_point");
    jstr(f, m->mount_point);
    fputc(',', f);
    jkey(f, "mount_options");
    jstr(f, m->mount_options);
    fputc(',', f);
    jkey(f, "journal");
    jstr(f, m->journal);
    fputc(',', f);
    jkey(f, "write_cache");
    jstr(f, m->write_cache);
    fprintf(f, ",\"disk_free_bytes\":%llu,\"timer_overhead_ns\":",
            (unsigned long long)m->disk_free_bytes);
    jnum(f, m->timer_overhead_ns);
    fputc(',', f);
    jkey(f, "io_backend");
    jstr(f, m->io_backend);
    fputc(',', f);
    jkey(f, "loadavg_start");
    jstr(f, m->loadavg_start);
    fputc(',', f);
    jkey(f, "loadavg_end");
    jstr(f, m->loadavg_end);
    fputc('}', f);
}

static void write_settings(FILE *f, const bench_opts *o) {
    fprintf(f,
            "\"settings\":{\"reps\":%d,\"ceiling_s\":%g,\"sync_s\":%g,\"never_s\":%g,"
            "\"concurrency_s\":%g,\"get_s\":%g,\"run_cap_bytes\":%llu,\"segment_bytes\":%llu,"
            "\"read_records\":%llu,\"open_small_bytes\":%llu,\"open_big_bytes\":%llu,"
            "\"open_tail_bytes\":%llu,\"open_runs\":%d,\"verify_bytes\":%llu,"
            "\"hypercore_records\":%llu,",
            o->reps, o->ceil_s, o->sync_s, o->never_s, o->conc_s, o->get_s,
            (unsigned long long)o->run_cap_bytes, (unsigned long long)o->segment_bytes,
            (unsigned long long)o->read_records, (unsigned long long)o->open_small_bytes,
            (unsigned long long)o->open_big_bytes, (unsigned long long)o->open_tail_bytes,
            o->open_runs, (unsigned long long)o->verify_bytes,
            (unsigned long long)o->hypercore_records);
    jkey(f, "io");
    jstr(f, o->io_name);
    fputc(',', f);
    jkey(f, "only");
    jstr(f, o->only ? o->only : "");
    fputc(',', f);
    jkey(f, "match");
    jstr(f, o->match ? o->match : "");
    fputc('}', f);
}

static void write_latency(FILE *f, const bench_hist *h) {
    fprintf(f, "\"latency_us\":{\"count\":%llu,\"avg\":", (unsigned long long)h->count);
    jnum(f, hist_avg_ns(h) / 1e3);
    const double pcts[] = {50, 99, 99.9};
    const char *keys[] = {"p50", "p99", "p99_9"};
    for (int i = 0; i < 3; i++) {
        fprintf(f, ",\"%s\":", keys[i]);
        jnum(f, (double)hist_percentile_ns(h, pcts[i]) / 1e3);
    }
    fputs(",\"min\":", f);
    jnum(f, h->count ? (double)h->min_ns / 1e3 : 0.0);
    fputs(",\"max\":", f);
    jnum(f, (double)h->max_ns / 1e3);
    uint64_t slow = 0;
    double slow_ns = 0;
    hist_over(h, SLOW_NS, &slow, &slow_ns);
    fprintf(f, ",\"over_10ms\":%llu,\"over_10ms_total_s\":", (unsigned long long)slow);
    jnum(f, slow_ns / 1e9);
    /* the distribution, for the latency CDF plots: [percentile, us] pairs */
    static const double cdf[] = {1,  5,  10, 20, 30, 40,   50,   60,
                                 70, 80, 90, 95, 99, 99.5, 99.9, 99.99};
    fputs(",\"cdf\":[", f);
    for (size_t i = 0; h->count && i < sizeof cdf / sizeof *cdf; i++) {
        fprintf(f, "%s[", i ? "," : "");
        jnum(f, cdf[i]);
        fputc(',', f);
        jnum(f, (double)hist_percentile_ns(h, cdf[i]) / 1e3);
        fputc(']', f);
    }
    fputs("]}", f);
}

static void write_runs(FILE *f, const bench_result *r) {
    fputs("\"runs\":[", f);
    for (int i = 0; i < r->nruns; i++) {
        const bench_run *x = &r->runs[i];
        fprintf(f, "%s{\"ops\":%llu,\"records\":%llu,\"bytes\":%llu,\"seconds\":", i ? "," : "",
                (unsigned long long)x->ops, (unsigned long long)x->records,
                (unsigned long long)x->bytes);
        jnum(f, x->seconds);
        fputs(",\"records_per_s\":", f);
        jnum(f, x->seconds > 0 ? (double)x->records / x->seconds : 0.0);
        fputs(",\"other_cpu_s\":", f);
        jnum(f, x->other_cpu_s);
        fputc('}', f);
    }
    fputc(']', f);
}

static const char *target_name(target_kind k) {
    switch (k) {
    case TARGET_RATIO_MIN:
        return "ratio_min";
    case TARGET_RATIO_MAX:
        return "ratio_max";
    case TARGET_RATE_MIN:
        return "rate_min";
    case TARGET_P99_MAX_US:
        return "p99_max_us";
    default:
        return "none";
    }
}

/* "ratio", "ratio_of", "ratio_method", "target", "pass" of one comparison. */
static void write_cmp(FILE *f, const char *what, const char *of, double ratio, int paired,
                      target_kind tk, double target, int has_verdict, int pass) {
    fputs("\"ratio\":", f);
    jnum(f, ratio >= 0 ? ratio : NAN);
    fputc(',', f);
    jkey(f, "ratio_of");
    jstr(f, what ? of : "");
    fputc(',', f);
    jkey(f, "ratio_what");
    jstr(f, what ? what : "");
    fprintf(f, ",\"ratio_method\":\"%s\"",
            ratio < 0 ? ""
            : paired  ? "median of paired runs"
                      : "ratio of medians");
    fputs(",\"target\":", f);
    if (tk == TARGET_NONE) {
        fputs("null", f);
    } else {
        fprintf(f, "{\"kind\":\"%s\",\"value\":", target_name(tk));
        jnum(f, target);
        fputc('}', f);
    }
    fprintf(f, ",\"pass\":%s", has_verdict ? (pass ? "true" : "false") : "null");
}

static void write_target(FILE *f, const bench_result *r) {
    write_cmp(f, r->ratio_what, r->ratio_of, r->ratio, r->ratio_paired, r->tkind, r->target,
              r->has_verdict, r->pass);
    fputs(",\"also\":[", f);
    for (int i = 0; i < r->nalso; i++) {
        const bench_cmp *c = &r->also[i];
        fputs(i ? ",{" : "{", f);
        write_cmp(f, c->what, c->of, c->ratio, c->paired, c->tkind, c->target, c->has_verdict,
                  c->pass);
        fputc('}', f);
    }
    fputs("],", f);
    jkey(f, "not_measured");
    jstr(f, r->missing);
}

static void write_result(FILE *f, const bench_result *r) {
    fputc('{', f);
    jkey(f, "name");
    jstr(f, r->name);
    fputc(',', f);
    jkey(f, "group");
    jstr(f, r->group);
    fputc(',', f);
    jkey(f, "kind");
    jstr(f, r->kind);
    fprintf(f,
            ",\"params\":{\"record_bytes\":%llu,\"batch\":%llu,\"threads\":%llu,"
            "\"write_bytes\":%llu,\"log_bytes\":%llu,\"disk_bytes\":%llu,\"fsync\":",
            (unsigned long long)r->record_bytes, (unsigned long long)r->batch,
            (unsigned long long)r->threads, (unsigned long long)r->write_bytes,
            (unsigned long long)r->log_bytes, (unsigned long long)r->disk_bytes);
    jstr(f, r->fsync);
    if (r->durability[0]) {
        fputs(",\"durability\":", f);
        jstr(f, r->durability);
    }
    uint64_t records = 0, ops = 0;
    double secs = 0;
    for (int i = 0; i < r->nruns; i++) {
        records += r->runs[i].records;
        ops += r->runs[i].ops;
        secs += r->runs[i].seconds;
    }
    fprintf(f, "},\"records\":%llu,\"ops\":%llu,\"seconds\":", (unsigned long long)records,
            (unsigned long long)ops);
    jnum(f, secs);
    fputs(",\"records_per_s\":", f);
    jnum(f, r->rate);
    fputs(",\"mb_per_s\":", f);
    jnum(f, r->rate * (double)r->record_bytes / (1024.0 * 1024.0));
    fputs(",\"median_ms\":", f);
    jnum(f, r->value_ms);
    fputc(',', f);
    write_latency(f, r->hist);
    fputc(',', f);
    write_runs(f, r);
    fputc(',', f);
    write_target(f, r);
    fputc(',', f);
    jkey(f, "note");
    jstr(f, r->note);
    fputc('}', f);
}

int json_write(const char *path, const bench_opts *o, const bench_machine *m) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"tool\":\"kappalog-bench\",\"format\":%d,", JSON_FORMAT);
    jkey(f, "command");
    jstr(f, o->cmdline);
    fputc(',', f);
    jkey(f, "date");
    jstr(f, m->date);
    fprintf(f, ",\"quick\":%s,\"build\":{\"type\":", o->quick ? "true" : "false");
    jstr(f, KL_BENCH_BUILD_TYPE);
    fputs(",\"c_flags\":", f);
    jstr(f, KL_BENCH_C_FLAGS);
    fputs("},", f);
    jkey(f, "kappalog_version");
    jstr(f, kl_version());
    fputc(',', f);
    jkey(f, "source_commit");
    jstr(f, m->source_commit);
    fputs(",\n", f);
    write_machine(f, m, o->dir);
    fputs(",\n", f);
    write_settings(f, o);
    fputs(",\n\"results\":[\n", f);
    for (size_t i = 0; i < result_count(); i++) {
        write_result(f, result_at(i));
        fputs(i + 1 < result_count() ? ",\n" : "\n", f);
    }
    fputs("]}\n", f);
    return fclose(f) == 0 ? 0 : -1;
}
