"""report_common - what scripts/bench-report and scripts/compare_report.py share:
number formats, tables, latency cells, target verdicts and the machine table.

Every figure these helpers print comes from a kappalog-bench JSON file; none is
typed in by hand.
"""


def ms(us):
    """A latency in microseconds, printed in milliseconds."""
    if us is None:
        return "-"
    v = us / 1000.0
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    if v >= 0.01:
        return "%.3f" % v
    return "%.4f" % v


def rate(v):
    if v is None:
        return "-"
    return "{:,.0f}".format(v)


def mb(v):
    return "-" if v is None else "%.1f" % v


def gib(n):
    return "%.1f GiB" % (n / float(1 << 30))


def ratio(r):
    return "-" if r.get("ratio") is None else "%.3f" % r["ratio"]


def target_text(r):
    t = r.get("target")
    if not t:
        return ""
    if t["kind"] == "ratio_min":
        return ">= %g" % t["value"]
    if t["kind"] == "ratio_max":
        return "<= %g" % t["value"]
    if t["kind"] == "p99_max_us":
        return "p99 <= %g us" % t["value"]
    return ">= {:,.0f}/s".format(t["value"])


def verdict(r):
    """r is a result or one of its "also" comparisons (same keys)."""
    if r.get("pass") is None:
        return "" if not r.get("target") else "not measured"
    return "**PASS**" if r["pass"] else "**MISS**"


def comparisons(r):
    """The result's main comparison (if any), then its further ones ("also")."""
    out = [r] if r.get("ratio_of") else []
    return out + list(r.get("also") or [])


def missing_ref(d, c):
    """Why the reference of comparison c was not measured, or ""."""
    for x in d["results"]:
        if x["name"] == c.get("ratio_of"):
            return x.get("not_measured") or ""
    return ""


def cmp_verdict(d, c):
    v = verdict(c)
    why = c.get("not_measured") or missing_ref(d, c)
    return v + (": " + why if why and c.get("pass") is None else "")


def runs_text(r):
    rs = r.get("runs", [])
    if len(rs) <= 1:
        return ""
    return ", ".join(rate(x["records_per_s"]) for x in rs)


def other_cpu(r):
    other = sum(x.get("other_cpu_s") or 0 for x in r.get("runs", []))
    secs = sum(x.get("seconds") or 0 for x in r.get("runs", []))
    return "%.0f%%" % (100.0 * other / secs) if secs > 0 else "-"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def stalls(lat):
    n = lat.get("over_10ms") or 0
    return "0" if n == 0 else "%d (%.2f s)" % (n, lat.get("over_10ms_total_s") or 0)


def lat_cells(r):
    lat = r["latency_us"]
    if not lat.get("count"):
        return ["-"] * len(LAT_HEAD)
    return [ms(lat["avg"]), ms(lat["p50"]), ms(lat["p99"]), ms(lat["p99_9"]), ms(lat["max"]),
            stalls(lat)]


LAT_HEAD = ["avg ms", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "calls >= 10 ms (time)"]


def section_machine(d):
    m = d["machine"]
    rows = [
        ["host", m["hostname"]],
        ["kernel", m["kernel"]],
        ["CPU", "%s, %d cores" % (m["cpu"], m["cores"])],
        ["RAM", gib(m["ram_bytes"])],
        ["disk", "%s on %s (mounted at %s), logs in `%s`" % (m["filesystem"], m["device"],
                                                            m["mount_point"], m["dir"])],
        ["mount options", "`%s`; journal: %s; device write cache: %s"
         % (m.get("mount_options", "?"), m.get("journal", "?"), m.get("write_cache", "?"))],
        ["free disk at start", gib(m["disk_free_bytes"])],
        ["load average", "%s at start, %s at end" % (m["loadavg_start"], m["loadavg_end"])],
        ["clock read", "%.1f ns (CLOCK_MONOTONIC; inside every latency and rate)"
         % m["timer_overhead_ns"]],
    ]
    return "## The machine\n\n" + table(["", ""], rows)


def ratio_value(c):
    """A comparison's ratio as it reads: "0.912", or "15.300x" for a multiple."""
    return ratio(c) + ("x" if c.get("ratio") is not None and c.get("ratio_what") == "x" else "")


def by_group(d, g):
    return [r for r in d["results"] if r["group"] == g]
