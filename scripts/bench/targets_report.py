#!/usr/bin/env python3
"""Turn one scripts/bench-targets.sh results directory into targets.md, targets.json and
targets-chart.svg (issue 15's targets, each with the same-round ratio it is judged by).

Ratios are per round (both runs of a ratio come from the same round, so machine noise mostly
cancels), then the median over rounds; rps and latencies are medians over rounds.
"""
import argparse, glob, json, os, re, statistics, sys

sys.path.insert(0, os.path.dirname(__file__))
from report import fmt, machine, med, parse_wrk  # noqa: E402  (same wrk parsing as bench-load.sh)


def parse_h2load(text):
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    if not m:
        return None
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rps": float(m.group(1)), "mean_ms": float(mean.group(1)) * unit[mean.group(2)] if mean else None,
            "bad": (int(done.group(3)) + int(done.group(4))) if done else 0, "p50_ms": None, "p99_ms": None}


def load_runs(raw):
    runs = {}  # name -> round -> result
    for path in glob.glob(os.path.join(raw, "*.r*.txt")):
        base = os.path.basename(path)
        m = re.match(r"(.+)\.r(\d+)\.txt$", base)
        if not m:
            continue
        text = open(path).read()
        res = parse_h2load(text) if m.group(1).endswith(".h2") else parse_wrk(text)
        if res:
            runs.setdefault(m.group(1), {})[int(m.group(2))] = res
    return runs


def ratio(runs, a, b):
    rs = []
    for rnd, x in runs.get(a, {}).items():
        y = runs.get(b, {}).get(rnd)
        if y and y["rps"]:
            rs.append(x["rps"] / y["rps"])
    return med(rs)


def summary(runs, name):
    r = runs.get(name, {})
    return {"rps": med([x["rps"] for x in r.values()]), "p50_ms": med([x.get("p50_ms") for x in r.values()]),
            "p99_ms": med([x.get("p99_ms") for x in r.values()]), "mean_ms": med([x.get("mean_ms") for x in r.values()]),
            "bad": sum(x.get("bad", 0) for x in r.values()), "rounds": len(r),
            "reused": any(x.get("reused") for x in r.values())}


def kv(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = parts[1:]
    return out


def chart(bars, path, title, note):
    """Horizontal bars of ratios to a baseline (1.0 marked), hand-written SVG like report.py's."""
    w, left, bar, gap, top = 820, 360, 22, 8, 44
    top_x = max([b["x"] or 0 for b in bars] + [1.2])
    h = top + len(bars) * (bar + gap) + 40
    scale = (w - left - 120) / top_x
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="sans-serif" font-size="13">', f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="10" y="24" font-size="15" font-weight="bold">{title}</text>']
    for i, b in enumerate(bars):
        y = top + i * (bar + gap)
        width = scale * (b["x"] or 0)
        color = "#2e7d32" if b["ours"] else "#607d8b"
        out.append(f'<text x="{left - 8}" y="{y + bar * 0.7}" text-anchor="end">{b["label"]}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{bar}" fill="{color}"/>')
        out.append(f'<text x="{left + width + 6:.1f}" y="{y + bar * 0.7}">{fmt(b["x"], ".2f")}×'
                   f'{"  (target " + b["target"] + ")" if b.get("target") else ""}</text>')
    x1 = left + scale
    out.append(f'<line x1="{x1:.1f}" y1="{top - 6}" x2="{x1:.1f}" y2="{h - 34}" stroke="#c62828" stroke-dasharray="4 3"/>')
    out.append(f'<text x="10" y="{h - 12}" font-size="11" fill="#555">{note}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("res")
    ap.add_argument("out")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    runs = load_runs(os.path.join(a.res, "raw"))
    peers = {}
    pj = os.path.join(a.res, "peers", "SUMMARY.json")
    if os.path.exists(pj):
        peers = json.load(open(pj))
    load = kv(os.path.join(a.res, "load.txt"))
    rss = kv(os.path.join(a.res, "rss.txt"))
    version = open(os.path.join(a.res, "version.txt")).read().strip() if os.path.exists(os.path.join(a.res, "version.txt")) else "?"
    startup = {n: kv(os.path.join(a.res, f"startup.{n}.txt")) for n in (10, 10000)}

    # The kit's rows: its SUMMARY.json holds per-target medians, same-round ratios and the rounds.
    def peer(name, mode):
        for row in peers.get("results", []):
            if row.get("target") == name and row.get("mode") == mode:
                return row
        return None

    def per_round(a_name, a_mode, b_name, b_mode, key):
        """Median over rounds of a's key ÷ b's key in the same round."""
        x, y = peer(a_name, a_mode), peer(b_name, b_mode)
        if not x or not y:
            return None
        rs = []
        for rnd, v in x.get("per_round", {}).items():
            w = y.get("per_round", {}).get(rnd)
            if v and w and v.get(key) and w.get(key):
                rs.append(v[key] / w[key])
        return med(rs)

    lines = [f"# Issue 15 targets, {os.path.basename(a.res)}", "",
             f"Machine: {machine()['nproc']} CPUs ({machine()['cpu_model']}), {machine()['kernel']}; {version}.",
             f"Load average (1, 5, 15 min) at start {' '.join(load.get('load_start', ['?']))}, after the peers "
             f"table {' '.join(load.get('load_after_peers', ['?']))}, after the rounds "
             f"{' '.join(load.get('load_after_rounds', ['?']))}: other engineers' builds share these 2 cores, so "
             "**absolute rps are noise; the same-round ratios are the numbers**.",
             f"Runs: {a.rounds} round(s) of {a.duration} s each, interleaved; the access log on (JSON, as shipped) "
             "for Portcullis, off for nginx (as in the kit).", ""]
    result = {"machine": machine(), "version": version, "load": load, "peers": peers, "runs": runs,
              "rss": rss, "startup": startup, "targets": []}

    def target(name, value, goal, ok, note=""):
        result["targets"].append({"target": name, "value": value, "goal": goal, "met": ok, "note": note})

    lines += ["## The peers kit (wrk -t2 -c32, one token and 2,000 rotating tokens)", ""]
    if peers:
        lines += ["| target | mode | rps (median) | × nginx-plain | p50 ms | p99 ms | non-2xx/errors |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in peers.get("results", []):
            lines.append(f"| {row.get('target')} | {row.get('mode')} | {fmt(row.get('median_rps'), ',.0f')} | "
                         f"{fmt(row.get('ratio_vs_nginx_plain'), '.3f')} | {fmt(row.get('p50_ms'), '.2f')} | "
                         f"{fmt(row.get('p99_ms'), '.2f')} | {row.get('non2xx', 0)}/{row.get('socket_errors', 0)} |")
        lines.append("")
    one = peer("portcullis", "single")
    if one:
        x = one.get("ratio_vs_nginx_plain")
        p99x = per_round("portcullis", "single", "nginx-plain", "single", "p99_ms")
        target("one token, × nginx-plain rps", x, "≥ 1.0", (x or 0) >= 1.0)
        target("one token, p99 ÷ nginx-plain p99 (same round)", p99x, "≤ 1.2", p99x is not None and p99x <= 1.2)
        rr = per_round("portcullis", "rotate", "portcullis", "single", "rps")
        target("2,000 rotating tokens ÷ one token (same round)", rr, "≥ 0.95", (rr or 0) >= 0.95)
        ej = per_round("portcullis", "single", "envoy-jwt", "single", "rps")
        target("one token, × Envoy jwt_authn (report)", ej, "(report)", None)

    lines += ["## Own ports (same round, interleaved)", "",
              "| run | rps (median) | p50 ms | p99 ms | h2 mean ms | errors | ratio (same round) |",
              "|---|---:|---:|---:|---:|---:|---|"]
    pairs = [("nginx-plain.c1", None), ("portcullis.c1", "nginx-plain.c1"),
             ("nginx-plain.c32", None), ("portcullis.c32", "nginx-plain.c32"),
             ("nginx-plain.c256", None), ("portcullis.c256", "nginx-plain.c256"),
             ("direct.4k", None), ("nginx-plain.4k", "direct.4k"), ("portcullis.4k", "nginx-plain.4k"),
             ("direct.1m", None), ("nginx-plain.1m", "direct.1m"), ("portcullis.1m", "nginx-plain.1m"),
             ("nginx-plain.h2", None), ("portcullis.h2", "nginx-plain.h2"),
             ("envoy-jwt.unique", None), ("portcullis.unique", "envoy-jwt.unique"),
             ("portcullis.single", None), ("portcullis.rss32", None)]
    for name, base in pairs:
        if name not in runs:
            continue
        s = summary(runs, name)
        r = ratio(runs, name, base) if base else None
        flag = " ⚠" if s["bad"] or s["reused"] else ""
        lines.append(f"| {name}{flag} | {fmt(s['rps'], ',.0f')} | {fmt(s['p50_ms'], '.2f')} | {fmt(s['p99_ms'], '.2f')} | "
                     f"{fmt(s['mean_ms'], '.2f')} | {s['bad']}{' (tokens reused)' if s['reused'] else ''} | "
                     f"{'' if r is None else f'{r:.2f}× {base}'} |")
    lines.append("")
    uq = ratio(runs, "portcullis.unique", "envoy-jwt.unique")
    target("never-seen token per request, × Envoy jwt_authn (same tokens)", uq, "≥ 2.0", (uq or 0) >= 2.0)
    h2 = ratio(runs, "portcullis.h2", "nginx-plain.h2")
    target("HTTP/2 downstream (h2load), × nginx h2 plain proxy", h2, "(report)", None)
    for c in (1, 32, 256):
        target(f"{c} connection(s), × nginx-plain", ratio(runs, f"portcullis.c{c}", f"nginx-plain.c{c}"), "(report)", None)
    for b in ("4k", "1m"):
        target(f"{b} body, × nginx-plain", ratio(runs, f"portcullis.{b}", f"nginx-plain.{b}"), "(report)", None)

    lines += ["## Memory (RSS)", ""]
    kib = lambda k: None if k not in rss else int(rss[k][0]) / 1024
    hwm = kib("portcullis_hwm_c32_kib")
    lines.append(f"- Portcullis under wrk -c32 (fresh process): peak (VmHWM) **{fmt(hwm, '.1f')} MiB**, "
                 f"after the run {fmt(kib('portcullis_rss_after_c32_kib'), '.1f')} MiB")
    target("RSS at 32 connections (VmHWM under wrk -c32)", hwm, "≤ 32 MiB", hwm is not None and hwm <= 32)
    lines += ["", "| idle keep-alive connections | Portcullis RSS MiB | nginx plain proxy RSS MiB (master + 2 workers) | held (Portcullis / nginx) |",
              "|---:|---:|---:|---|"]
    for n in (32, 1000, 10000):
        p, g = rss.get(f"portcullis_idle_{n}_kib"), rss.get(f"nginx-plain_idle_{n}_kib")
        lines.append(f"| {n:,} | {fmt(kib(f'portcullis_idle_{n}_kib'), '.1f')} | {fmt(kib(f'nginx-plain_idle_{n}_kib'), '.1f')} | "
                     f"{' '.join(p[1:]) if p else '–'} / {' '.join(g[1:]) if g else '–'} |")
    lines += ["", "## Start-up and reload", "",
              "| routes | start-up ms (exec → /readyz 200, JWKS fetched) | reload ms (SIGHUP → generation + 1) | RSS after start MiB |",
              "|---:|---:|---:|---:|"]
    for n, s in startup.items():
        rk = s.get("rss_kib_median", [None])[0]
        lines.append(f"| {n:,} | {' '.join(s.get('startup_ms_median', ['–']))} ({' '.join(s.get('startup_ms', []))}) | "
                     f"{' '.join(s.get('reload_ms_median', ['–']))} ({' '.join(s.get('reload_ms', []))}) | "
                     f"{fmt(int(rk) / 1024 if rk else None, '.1f')} |")
    lines += ["", "## Targets", "", "| target | measured | goal | met |", "|---|---:|---|---|"]
    for t in result["targets"]:
        v = t["value"]
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {fmt(v, '.2f')} | {t['goal']} | {met} |")
    lines.append("")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "targets.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "targets.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    bars = []
    for row in peers.get("results", []):
        if row.get("target") in ("nginx-plain", "portcullis", "envoy-plain", "envoy-jwt", "nginx-lua"):
            ours = row["target"] == "portcullis"
            bars.append({"label": f"{row['target']} ({row['mode']}), c32", "x": row.get("ratio_vs_nginx_plain"),
                         "ours": ours, "target": "≥ 1.0" if ours and row["mode"] == "single" else None})
    for c in (1, 32, 256):
        bars.append({"label": f"Portcullis, {c} connection(s)", "x": ratio(runs, f"portcullis.c{c}", f"nginx-plain.c{c}"), "ours": True})
    for b, label in (("4k", "4 KB"), ("1m", "1 MB")):
        bars.append({"label": f"Portcullis, {label} body", "x": ratio(runs, f"portcullis.{b}", f"nginx-plain.{b}"), "ours": True})
    bars.append({"label": "Portcullis, HTTP/2 (h2load)", "x": h2, "ours": True})
    bars.append({"label": "Portcullis never-seen ÷ Envoy jwt_authn", "x": uq, "ours": True, "target": "≥ 2.0"})
    chart(bars, os.path.join(a.out, "targets-chart.svg"), "Same-round ratio to nginx plain proxy (1.0 = dashed line)",
          f"{os.path.basename(a.res)}; {version}; last bar: ratio to Envoy jwt_authn with the same never-seen tokens")
    print("\n".join(lines))


main()
