"""Drive the real binary on 127.0.0.1 and plot the dashboard's panels from /metrics scrapes.

Bounded: ~60 s of load from 4 threads, loopback only. Each panel's series is computed from the
scrapes the way its PromQL expression does (rate = counter delta / interval, histogram_quantile
= linear interpolation within the bucket), panel titles come from the dashboard JSON."""
import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

binary, dashboard_path, out_png = sys.argv[1:4]
DURATION = 60
SCRAPE = 2.0

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
nums = key.public_key().public_numbers()
jwk = {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
       "n": b64(nums.n.to_bytes(256, "big")), "e": b64(nums.e.to_bytes(3, "big"))}
ISS = "https://idp.example/pool"

def mint(sub, groups=(), scope="openid", exp_in=3600):
    now = int(time.time())
    claims = {"sub": sub, "iss": ISS, "client_id": "app", "token_use": "access", "scope": scope,
              "cognito:groups": list(groups), "iat": now, "exp": now + exp_in}
    signing = b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing + "." + b64(sig)

class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        # /slow/ answers after upstream.timeout: a 504, charted under errors.
        time.sleep(0.8 if self.path.startswith("/slow/") else random.uniform(0.005, 0.03))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_POST = do_GET
    def log_message(self, *a):
        pass

echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
threading.Thread(target=echo.serve_forever, daemon=True).start()

tmp = tempfile.mkdtemp(prefix="portcullis-dash-")
open(os.path.join(tmp, "jwks.json"), "w").write(json.dumps({"keys": [jwk]}))
def config(extra_route=""):
    return f"""listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstream:
  url: http://127.0.0.1:{echo.server_address[1]}
  timeout: 500ms
issuers:
  - name: main
    issuer: {ISS}
    jwks_file: {tmp}/jwks.json
    client_ids: [app]
    token_use: access
routes:
  - {{name: health, path: /health, auth: none}}
  - {{name: admin, path: /admin/**, require: {{groups_any: [Admins]}}}}
  - {{name: reports, path: /reports/**, mode: audit, require: {{groups_any: [Analysts]}}}}
  - {{name: app, path: /app/**, require: {{scopes_all: [openid]}}}}
  - {{name: slow, path: /slow/**, auth: none}}
{extra_route}"""
cfg = os.path.join(tmp, "portcullis.yaml")
open(cfg, "w").write(config())
proc = subprocess.Popen([binary, "run", "--config", cfg], stderr=subprocess.PIPE, text=True)
admin = listen = None
for line in proc.stderr:
    try:
        v = json.loads(line)
    except ValueError:
        continue
    if v.get("message") == "portcullis started":
        admin, listen = v["admin"], v["listen"]
        break
threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()

def raw(head):
    """A request as a scanner or a broken client sends it: refused before routing (`route="none"`)."""
    try:
        host, port = listen.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(head)
            while s.recv(4096):
                pass
    except OSError:
        pass

MALFORMED = [b"GET /app/x HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", b"GET app:80 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
             b"GET /app/%2e%2e/admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", b"\x16\x03\x01\x00\x05hello\r\n\r\n"]

def get(url, token=None):
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except Exception:
        pass

tokens = {"admin": mint("ada", ["Admins"]), "analyst": mint("ana", ["Analysts"]), "staff": mint("sam", ["Staff"]),
          "noscope": mint("nos", [], scope="email"), "expired": mint("old", [], exp_in=-3600)}
mix = [("/health", None, 3), ("/admin/users", "admin", 4), ("/admin/users", "staff", 2), ("/reports/q3", "analyst", 3),
       ("/reports/q3", "staff", 2), ("/app/home", "staff", 8), ("/app/home", "noscope", 1), ("/app/home", None, 1),
       ("/app/home", "expired", 1), ("/nowhere", "staff", 1), ("/slow/x", None, 1), ("RAW", None, 1)]
weighted = [m for m in mix for _ in range(m[2])]
stop = time.time() + DURATION
def load():
    while time.time() < stop:
        path, who, _ = random.choice(weighted)
        if path == "RAW":
            raw(random.choice(MALFORMED))
        else:
            get(f"http://{listen}{path}", tokens.get(who))
threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
for t in threads:
    t.start()

def parse(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        out[(name, tuple(sorted(lab.items())))] = float(value)
    return out

scrapes = []
events = {20: "reload ok", 35: "reload error", 45: "SIGHUP"}
start = time.time()
done = set()
while time.time() < stop:
    t = time.time() - start
    for at, what in events.items():
        if t >= at and at not in done:
            done.add(at)
            if what == "reload ok":
                open(cfg, "w").write(config("  - {name: beta, path: /beta/**, require: {groups_any: [Beta]}}\n"))
            elif what == "reload error":
                open(cfg, "w").write(config("  - {name: broken, path: /x, auth: off}\n"))
            else:
                open(cfg, "w").write(config("  - {name: beta, path: /beta/**, require: {groups_any: [Beta]}}\n"))
                time.sleep(0.5)
                proc.send_signal(signal.SIGHUP)
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
        scrapes.append((time.time() - start, parse(r.read().decode())))
    time.sleep(SCRAPE)
proc.terminate()
proc.wait(timeout=30)
echo.shutdown()

def sum_by(sample, name, by, where=lambda l: True):
    out = {}
    for (n, labels), v in sample.items():
        l = dict(labels)
        if n == name and where(l):
            key = tuple(l.get(b, "") for b in by)
            out[key] = out.get(key, 0.0) + v
    return out

def rate_series(name, by, where=lambda l: True, increase=False):
    series = {}
    for (t0, a), (t1, b) in zip(scrapes, scrapes[1:]):
        sa, sb = sum_by(a, name, by, where), sum_by(b, name, by, where)
        for k in set(sa) | set(sb):
            d = max(sb.get(k, 0.0) - sa.get(k, 0.0), 0.0)
            series.setdefault(k, []).append((t1, d if increase else d / (t1 - t0)))
    return series

def quantile_series(name, q, where=lambda l: True):
    pts = []
    for (t0, a), (t1, b) in zip(scrapes, scrapes[1:]):
        ba, bb = sum_by(a, name + "_bucket", ["le"], where), sum_by(b, name + "_bucket", ["le"], where)
        buckets = sorted(((float(k[0]), bb[k] - ba.get(k, 0.0)) for k in bb), key=lambda x: x[0])
        total = buckets[-1][1] if buckets else 0
        if total <= 0:
            continue
        rank, prev_le, prev_c = q * total, 0.0, 0.0
        for le, c in buckets:
            if c >= rank:
                if le == float("inf"):
                    value = prev_le
                else:
                    value = prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
                pts.append((t1, value))
                break
            prev_le, prev_c = le, c
    return pts

def gauge_series(name, by, agg=max):
    series = {}
    for t, s in scrapes:
        groups = {}
        for (n, labels), v in s.items():
            l = dict(labels)
            if n == name:
                groups.setdefault(tuple(l.get(b, "") for b in by), []).append(v)
        for k, vs in groups.items():
            series.setdefault(k, []).append((t, agg(vs)))
    return series

dash = json.load(open(dashboard_path))
panels = {p["id"]: p for p in dash["panels"]}
fig, axes = plt.subplots(4, 3, figsize=(20, 17))
fig.suptitle(f"{dash['title']} — preview from {len(scrapes)} scrapes of the real binary under load "
             "(reload ok at 20 s, invalid file at 35 s, SIGHUP at 45 s)", fontsize=13)

def plot(ax, pid, series, fmt=lambda k: " ".join(k), stacked=False, unit=""):
    ax.set_title(panels[pid]["title"], fontsize=11, loc="left")
    items = sorted(series.items(), key=lambda kv: -max((v for _, v in kv[1]), default=0))[:9]
    if stacked and items:
        ts = [t for t, _ in items[0][1]]
        ys = [[dict(pts).get(t, 0.0) for t in ts] for _, pts in items]
        ax.stackplot(ts, ys, labels=[fmt(k) for k, _ in items], alpha=0.8)
    else:
        for k, pts in items:
            ax.plot([t for t, _ in pts], [v for _, v in pts], label=fmt(k), linewidth=1.8)
    ax.set_xlabel("seconds")
    if unit:
        ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")

a = axes.flat
plot(next(a), 1, rate_series("portcullis_requests_total", ["route", "decision"]), stacked=True, unit="req/s")
plot(next(a), 2, rate_series("portcullis_requests_total", ["reason"], lambda l: l.get("decision") == "deny"), stacked=True, unit="req/s")
plot(next(a), 10, rate_series("portcullis_requests_total", ["reason"], lambda l: l.get("decision") == "error"), stacked=True, unit="req/s")
ax = next(a)
lat = {("auth p99",): quantile_series("portcullis_auth_duration_seconds", 0.99),
       ("auth p50",): quantile_series("portcullis_auth_duration_seconds", 0.50),
       ("upstream p99",): quantile_series("portcullis_upstream_duration_seconds", 0.99),
       ("upstream p50",): quantile_series("portcullis_upstream_duration_seconds", 0.50)}
plot(ax, 3, lat, unit="seconds")
ax.set_yscale("log")
plot(next(a), 4, rate_series("portcullis_requests_total", ["route", "reason"], lambda l: l.get("decision") == "audit_deny"), stacked=True, unit="req/s")
age = {k: [(t, max(0.0, (start + t) - v)) for t, v in pts] for k, pts in gauge_series("portcullis_jwks_last_success_timestamp_seconds", ["issuer"]).items()}
plot(next(a), 5, age, unit="seconds")
plot(next(a), 6, rate_series("portcullis_jwks_fetch_total", ["issuer", "result"], increase=True))
ax = next(a)
keys = {("keys",) + k: v for k, v in gauge_series("portcullis_jwks_keys", ["issuer"]).items()}
keys.update({("ready",): gauge_series("portcullis_ready", [])[()]})
plot(ax, 7, keys)
ax = next(a)
rel = {("reloads",) + k: v for k, v in rate_series("portcullis_config_reloads_total", ["result"], increase=True).items()}
rel[("generation",)] = gauge_series("portcullis_config_generation", [])[()]
plot(ax, 8, rel)
ax = next(a)
hits = rate_series("portcullis_token_cache_hits_total", [])
miss = rate_series("portcullis_token_cache_misses_total", [])
ratio = [(t, h / (h + m) if h + m else 0) for (t, h), (_, m) in zip(hits.get((), []), miss.get((), []))]
plot(ax, 9, {("token cache hit ratio",): ratio})
for ax in a:
    ax.set_visible(False)
fig.tight_layout(rect=(0, 0, 1, 0.96))
fig.savefig(out_png, dpi=80)
print(f"wrote {out_png} from {len(scrapes)} scrapes")
