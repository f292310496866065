#!/usr/bin/env python3
"""Start-up and reload time of Portcullis for one config (scripts/bench-targets.sh).

    startup.py BIN CONFIG ADMIN_PORT REPEATS PROBE_URL TOKEN

Per repeat: exec BIN run --config CONFIG, time until /readyz answers 200 (polled every 2 ms; the
JWKS is fetched in that time), check PROBE_URL answers 200 with TOKEN, then send SIGHUP and time
until portcullis_config_generation has increased (the reload parses, validates and builds the
whole new snapshot, route trie included, before the swap), then SIGINT. Prints the times, the
medians and the RSS after start.
"""
import http.client, os, signal, statistics, subprocess, sys, time, urllib.parse


def get(port, path, headers=None, host="127.0.0.1"):
    try:
        c = http.client.HTTPConnection(host, port, timeout=2)
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError:
        return None, b""


def generation(port):
    _, body = get(port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("portcullis_config_generation "):
            return float(line.split()[1])
    return None


def main():
    bin_, config, admin, repeats, probe, token = sys.argv[1:7]
    admin, repeats = int(admin), int(repeats)
    probe = urllib.parse.urlsplit(probe)
    starts, reloads, rss = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.Popen([bin_, "--log-format", "json", "--log-level", "warn", "run", "--config", config],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while get(admin, "/readyz")[0] != 200:
            if p.poll() is not None:
                sys.exit(f"portcullis exited with {p.returncode}")
            if time.perf_counter() - t0 > 60:
                sys.exit("not ready after 60 s")
            time.sleep(0.002)
        starts.append((time.perf_counter() - t0) * 1000)
        status, _ = get(probe.port, probe.path, {"Authorization": f"Bearer {token}"})
        if status != 200:
            sys.exit(f"probe {probe.geturl()} answered {status}")
        with open(f"/proc/{p.pid}/status") as f:
            rss += [int(l.split()[1]) for l in f if l.startswith("VmRSS")]
        g = generation(admin)
        t0 = time.perf_counter()
        os.kill(p.pid, signal.SIGHUP)
        while generation(admin) == g:
            if time.perf_counter() - t0 > 60:
                sys.exit("reload not applied after 60 s")
            time.sleep(0.002)
        reloads.append((time.perf_counter() - t0) * 1000)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    fmt = lambda xs: " ".join(f"{x:.1f}" for x in xs)
    print(f"startup_ms {fmt(starts)}")
    print(f"reload_ms {fmt(reloads)}")
    print(f"startup_ms_median {statistics.median(starts):.1f}")
    print(f"reload_ms_median {statistics.median(reloads):.1f}")
    print(f"rss_kib_median {statistics.median(rss):.0f}")


main()
