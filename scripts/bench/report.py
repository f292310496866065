#!/usr/bin/env python3
"""Turn one scripts/bench-load.sh results directory into results.md, results.json and chart.svg.

Reads <target>.<mode>.r<round>.txt (wrk --latency output). Per target and mode: the median over
rounds of rps, p50 and p99, and of the per-round ratios to the direct upstream and to nginx-plain
(each ratio uses the baseline run of the same round, so machine noise mostly cancels).
"""
import argparse, datetime, glob, json, os, platform, re, statistics

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
ROWS = [("direct", "single", "upstream direct (nginx fixed 200, no proxy)"),
        ("nginx-plain", "single", "nginx plain reverse proxy, no auth"),
        ("portcullis", "single", "Portcullis, one token"),
        ("portcullis", "session", "Portcullis, a browser sign-in session cookie"),
        ("portcullis", "rotate", "Portcullis, 2000 rotating tokens"),
        ("portcullis", "unique", "Portcullis, a never-seen token per request")]


def parse_wrk(text):
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return None
    lat = {p: float(v) * UNIT_MS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"rps": float(m.group(1)), "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "bad": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0),
            "reused": "reused: yes" in text}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return None
    return (max(xs) - min(xs)) / statistics.median(xs)


def ratio_of(runs, a, b, rnd):
    x, y = runs.get(a, {}).get(rnd), runs.get(b, {}).get(rnd)
    return x["rps"] / y["rps"] if x and y and y["rps"] else None


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def machine():
    model = "unknown CPU"
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model,
            "kernel": f"{platform.system()} {platform.release()} {platform.machine()}"}


def chart(rows, path):
    """A horizontal bar chart of median rps, hand-written SVG (no dependencies)."""
    w, left, bar, gap, top = 760, 330, 26, 10, 44
    top_rps = max((r["rps"] or 0) for r in rows) or 1
    h = top + len(rows) * (bar + gap) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="sans-serif" font-size="13">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="10" y="24" font-size="15" font-weight="bold">Requests per second (median of rounds), '
           'wrk -t2 on loopback</text>']
    colors = {"direct": "#9e9e9e", "nginx-plain": "#607d8b", "portcullis": "#2e7d32"}
    for i, r in enumerate(rows):
        y = top + i * (bar + gap)
        width = (w - left - 150) * (r["rps"] or 0) / top_rps
        out.append(f'<text x="{left - 8}" y="{y + bar * 0.68}" text-anchor="end">{r["label"]}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{bar}" fill="{colors[r["target"]]}"/>')
        ratio = "" if r["x_plain"] is None or r["target"] != "portcullis" else f'  ({r["x_plain"]:.2f}× nginx-plain)'
        out.append(f'<text x="{left + width + 6:.1f}" y="{y + bar * 0.68}">{fmt(r["rps"], ",.0f")}{ratio}</text>')
    out.append(f'<text x="10" y="{h - 10}" font-size="11" fill="#555">{rows[0]["note"]}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("res")
    ap.add_argument("out")
    for a in ("duration", "conns", "rounds", "flood", "flood_rss"):
        ap.add_argument("--" + a.replace("_", "-"), type=int, required=True)
    for a in ("rss_warm", "rss_unique", "startup_ms", "version"):
        ap.add_argument("--" + a.replace("_", "-"), default="")
    a = ap.parse_args()

    runs = {}
    for f in glob.glob(os.path.join(a.res, "*.r*.txt")):
        m = re.match(r"(.+)\.(\w+)\.r(\d+)\.txt$", os.path.basename(f))
        if m:
            runs.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = parse_wrk(open(f).read())
    base = {k: runs.get(k, {}) for k in (("direct", "single"), ("nginx-plain", "single"))}

    def ratio(t, rnd, key):
        d = base[key].get(rnd)
        return t["rps"] / d["rps"] if t and d and d["rps"] else None

    m = machine()
    date = datetime.datetime.now().strftime("%Y-%m-%d")
    note = f'{m["nproc"]} CPUs ({m["cpu_model"]}), shared by wrk, nginx and Portcullis; {date}; {a.version}'
    rows = []
    for target, mode, label in ROWS:
        rs = runs.get((target, mode), {})
        vals = [v for v in rs.values() if v]
        rows.append({
            "target": target, "mode": mode, "label": label, "note": note,
            "rps": med([v["rps"] for v in vals]), "p50_ms": med([v["p50_ms"] for v in vals]),
            "p99_ms": med([v["p99_ms"] for v in vals]),
            "x_direct": med([ratio(v, k, ("direct", "single")) for k, v in rs.items()]),
            "x_plain": med([ratio(v, k, ("nginx-plain", "single")) for k, v in rs.items()]),
            "rps_spread": spread([v["rps"] for v in vals]),
            "rounds": len(vals), "bad": sum(v["bad"] for v in vals), "reused": any(v["reused"] for v in vals),
        })
    ints = lambda s: [int(x) for x in s.split()]
    rss_warm, rss_unique, startup = ints(a.rss_warm), ints(a.rss_unique), ints(a.startup_ms)
    by = {(r["target"], r["mode"]): r for r in rows}
    single, plain = by[("portcullis", "single")], by[("nginx-plain", "single")]
    summary = {
        "date": date, "machine": m, "version": a.version,
        "wrk": f"wrk -t2 -c{a.conns} -d{a.duration}s --latency, {a.rounds} round(s)",
        "rows": rows,
        # Per round (same machine state), then the median: not the ratio of two medians.
        "rotate_over_single": med([ratio_of(runs, ("portcullis", "rotate"), ("portcullis", "single"), k)
                                   for k in runs.get(("portcullis", "rotate"), {})]),
        "session_over_single": med([ratio_of(runs, ("portcullis", "session"), ("portcullis", "single"), k)
                                    for k in runs.get(("portcullis", "session"), {})]),
        "p99_over_plain": single["p99_ms"] / plain["p99_ms"] if single["p99_ms"] and plain["p99_ms"] else None,
        "peak_rss_mib_single_rotate": max(rss_warm) / 1024 if rss_warm else None,
        "peak_rss_mib_unique": max(rss_unique) / 1024 if rss_unique else None,
        "startup_ms_after_jwks": {"median": med(startup), "max": max(startup) if startup else None},
        "flood": {"requests": a.flood, "cache_entries": 10000, "peak_rss_mib": a.flood_rss / 1024} if a.flood else None,
    }
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)

    lines = [f"Machine: {note}.", f"Load: `{summary['wrk']}`, GET /bench, one proxy hop to nginx `return 200`.", "",
             "| target | rps (median) | × direct | × nginx-plain | p50 ms | p99 ms | rps spread |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        warn = " ⚠" if r["bad"] or r["reused"] or r["rounds"] < a.rounds else ""
        lines.append(f'| {r["label"]}{warn} | {fmt(r["rps"], ",.0f")} | {fmt(r["x_direct"], ".2f")} | '
                     f'{fmt(r["x_plain"], ".2f")} | {fmt(r["p50_ms"], ".2f")} | {fmt(r["p99_ms"], ".2f")} | '
                     f'{fmt(r["rps_spread"] and r["rps_spread"] * 100, ".0f")}% |')
    lines += ["",
              f"- session / single bearer token (per round, median): {fmt(summary['session_over_single'], '.2f')}",
              f"- rotating / single (per round, median): {fmt(summary['rotate_over_single'], '.2f')}; "
              f"p99 single / nginx-plain p99: {fmt(summary['p99_over_plain'], '.2f')}",
              f"- peak RSS (VmHWM): {fmt(summary['peak_rss_mib_single_rotate'], '.1f')} MiB over the single and "
              f"rotate runs, {fmt(summary['peak_rss_mib_unique'], '.1f')} MiB in a unique run",
              f"- ready after the JWKS answered: median {fmt(summary['startup_ms_after_jwks']['median'], '.0f')} ms, "
              f"max {fmt(summary['startup_ms_after_jwks']['max'], '.0f')} ms ({len(startup)} starts; "
              "includes up to ~10 ms of polling)"]
    if a.flood:
        lines.append(f"- flood of {a.flood:,} requests (half valid, half never-seen forged tokens), cache 10,000 "
                     f"entries: peak RSS {a.flood_rss / 1024:.1f} MiB")
    lines.append("- rps spread: (max − min) / median over the rounds; ⚠: errors, reused tokens or a missing round")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    chart(rows, os.path.join(a.out, "chart.svg"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
