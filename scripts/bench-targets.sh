#!/usr/bin/env bash
# bench-targets.sh: the performance targets of issue 15, side by side in one run on top of the
# peers kit (../shared/peers, already set up and started), the access log on (JSON, as shipped).
# README "Performance"; writes docs/bench/targets.{md,json}, targets-chart.svg and the raw output.
#
#   scripts/bench-targets.sh --bin target/release/portcullis [--kit DIR] [-d SECONDS] [-r ROUNDS]
#                            [--out DIR] [--skip-peers] [--unique-tokens FILE]
#
# 1. The kit's bench.sh (wrk -t2 -c32) for upstream-direct, nginx-plain, envoy-plain, portcullis,
#    envoy-jwt and nginx-lua: one token and 2,000 rotating tokens.
# 2. On its own ports (19201-19219), with the kit's issuer and tokens, interleaved per round:
#    - throughput at 1, 32 and 256 connections, nginx plain proxy vs Portcullis (one token);
#    - 4 KB and 1 MB response bodies: the upstream direct, nginx plain proxy, Portcullis;
#    - a never-seen token on every request (Portcullis restarted first: empty cache) vs the kit's
#      Envoy jwt_authn with the same tokens (Envoy has no verified-token cache configured);
#    - HTTP/2 downstream (h2c, prior knowledge) with h2load: nginx with `http2` vs Portcullis.
# 3. RSS: under wrk -c32, and with 32, 1,000 and 10,000 idle keep-alive connections (Portcullis
#    and the nginx plain proxy).
# 4. Start-up (exec to /readyz 200) and reload (SIGHUP to config_generation + 1) with 10 and
#    10,000 routes.
# Not part of scripts/test.sh: it takes about 15 minutes and its numbers depend on the machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KIT=${PEERS_KIT:-$ROOT/../shared/peers}
D=5 R=3 BIN="" OUT=$ROOT/docs/bench SKIP_PEERS=0 UNIQUE=""
while [ $# -gt 0 ]; do
  case $1 in
    -d) D=${2:?}; shift 2 ;; -r) R=${2:?}; shift 2 ;;
    --bin) BIN=$(realpath "${2:?}"); shift 2 ;;
    --kit) KIT=$(realpath "${2:?}"); shift 2 ;;
    --out) OUT=$(realpath -m "${2:?}"); shift 2 ;;
    --skip-peers) SKIP_PEERS=1; shift ;;
    --unique-tokens) UNIQUE=$(realpath "${2:?}"); shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "--bin PATH_TO_PORTCULLIS is required" >&2; exit 2; }
for v in "$D" "$R"; do [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "-d and -r take positive integers" >&2; exit 2; }; done
. "$KIT/common.sh"   # $W (PEERS_HOME), $PY, helpers; the kit must have been started
[ -s "$W/keys/token_valid.txt" ] || die "no tokens in $W/keys: run $KIT/start.sh first"
for t in wrk h2load nginx python3 curl; do command -v $t >/dev/null || die "$t is missing (h2load: apt-get install nghttp2-client)"; done
X=$W/targets
RES=$X/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES/raw" "$X/run" "$X/conf" "$X/files"
TOK=$(cat "$W/keys/token_valid.txt")
export BENCH_MODE=unique
if [ -z "$UNIQUE" ]; then
  UNIQUE=$X/unique/tokens_many.txt
  need=$(( D * 30000 ))
  have=$(wc -l <"$UNIQUE" 2>/dev/null || echo 0)
  if [ "$have" -lt "$need" ] || [ "$X/unique/private.pem" -ot "$W/keys/private.pem" ]; then
    say "minting $need never-seen tokens with the kit's key into $X/unique (about 0.5 ms each)"
    rm -rf "$X/unique"; mkdir -p "$X/unique"; cp -r "$W/keys/." "$X/unique/"
    "$PY" "$KIT/tools/mint.py" "$X/unique" "$need" --tokens-only >/dev/null
  fi
fi
export BENCH_TOKENS=$UNIQUE
LUA=$ROOT/scripts/bench/tokens.lua
say "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load_start $(cut -d' ' -f1-3 /proc/loadavg)" >"$RES/load.txt"

# --- 1. the kit's table --------------------------------------------------------------------------
if [ "$SKIP_PEERS" = 0 ]; then
  say "peers kit: bench.sh -d $D -r $R (one token and 2,000 rotating tokens)"
  "$KIT/bench.sh" -d "$D" -r "$R" --portcullis "$BIN" \
    --only upstream-direct,nginx-plain,envoy-plain,portcullis,envoy-jwt,nginx-lua | tee "$RES/peers.log"
  latest=$(ls -1d "$W"/results/*/ | sort | tail -n1)
  cp -r "$latest" "$RES/peers"
fi
echo "load_after_peers $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/load.txt"

# --- 2. own ports: upstream with bodies, nginx plain proxy (h1 + h2c), Portcullis ----------------
PIDS=()
cleanup() {
  for f in "$X"/run/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for p in 19201 19207 19208 19209 19219 19309 19319; do port_busy $p && die "127.0.0.1:$p is in use"; done
python3 -c 'import sys; [open(f"{sys.argv[1]}/{n}", "w").write(("0123456789abcdef" * (s // 16 + 1))[:s]) for n, s in (("4k", 4096), ("1m", 1048576))]' "$X/files"
chmod -R a+rX "$X/files"
nginx_conf() {   # name workers body
  cat >"$X/conf/$1.conf" <<EOF
worker_processes $2;
worker_rlimit_nofile 30000;
daemon on;
pid $X/run/$1.pid;
error_log $X/run/$1.error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_body_temp_path $X/run/tmp-$1;
    proxy_temp_path $X/run/tmp-$1;
    fastcgi_temp_path $X/run/tmp-$1;
    uwsgi_temp_path $X/run/tmp-$1;
    scgi_temp_path $X/run/tmp-$1;
    $3
}
EOF
  mkdir -p "$X/run/tmp-$1"
}
nginx_conf upstream 1 "
    server { listen 127.0.0.1:19201; default_type text/plain;
             location /bytes/ { alias $X/files/; }
             location / { return 200 \"ok sub=\$http_x_user_sub groups=\$http_x_user_groups\\n\"; } }"
nginx_conf plain 2 "
    upstream backend { server 127.0.0.1:19201; keepalive 64; }
    server { listen 127.0.0.1:19207; listen 127.0.0.1:19208 http2;
             location / { proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass http://backend; } }"
nginx -c "$X/conf/upstream.conf" -e "$X/run/upstream.error.log"
nginx -c "$X/conf/plain.conf" -e "$X/run/plain.error.log"

pc_conf() {   # file port admin routes-file
  cat >"$1" <<EOF
listen: 127.0.0.1:$2
admin_listen: 127.0.0.1:$3
upstream:
  url: http://127.0.0.1:19201
issuers:
  - name: kit
    issuer: http://127.0.0.1:9000/us-east-1_TEST
    jwks_uri: http://127.0.0.1:9000/us-east-1_TEST/.well-known/jwks.json
    client_ids: [3n4b5urk1ft4fl3mg5e62d9ado]
    token_use: access
limits:
  max_connections: 20000
shutdown:
  delay: 0s
  grace: 2s
routes:
EOF
  cat "$4" >>"$1"
}
printf '  - name: all\n    path: /**\n    require:\n      groups_any: [admins]\n' >"$X/conf/routes-1.yaml"
pc_conf "$X/conf/portcullis.yaml" 19209 19219 "$X/conf/routes-1.yaml"
PC_PID=""
start_pc() {
  "$BIN" --log-format json run --config "$X/conf/portcullis.yaml" 2>"$RES/portcullis.log" >/dev/null &
  PC_PID=$!; PIDS+=("$PC_PID")
  for _ in $(seq 1500); do
    [ "$(http_code http://127.0.0.1:19219/readyz)" = 200 ] && return 0
    kill -0 "$PC_PID" 2>/dev/null || die "portcullis exited (log: $RES/portcullis.log)"
    sleep 0.02
  done
  die "portcullis not ready"
}
stop_pc() { kill -INT "$PC_PID" 2>/dev/null || true; wait "$PC_PID" 2>/dev/null || true; PC_PID=""; }
start_pc
for u in http://127.0.0.1:19207/admin/bench http://127.0.0.1:19209/admin/bench http://127.0.0.1:9106/admin/bench; do
  [ "$(http_code -H "Authorization: Bearer $TOK" "$u")" = 200 ] || die "pre-check: $u did not answer 200"
done
[ "$(http_code --http2-prior-knowledge -H "Authorization: Bearer $TOK" http://127.0.0.1:19208/admin/bench)" = 200 ] \
  || die "pre-check: nginx h2c did not answer 200"

run_wrk() {   # name round conns url [wrk args]
  local n=$1 r=$2 c=$3 url=$4; shift 4
  local t=2; [ "$c" -lt 2 ] && t=1
  printf '   round %s/%s  %-28s ' "$r" "$R" "$n"
  timeout -k 5 $((D + 60)) wrk -t$t -c"$c" -d"${D}s" --timeout 5s --latency "$@" "$url" \
    >"$RES/raw/$n.r$r.txt" 2>&1 || echo -n "(wrk exit $?) "
  grep -o 'Requests/sec: *[0-9.]*' "$RES/raw/$n.r$r.txt" | tr -s ' ' || echo "no result"
  sleep 1
}
run_h2() {   # name round url
  local n=$1 r=$2 url=$3
  printf '   round %s/%s  %-28s ' "$r" "$R" "$n"
  timeout -k 5 $((D + 60)) h2load -t2 -c32 -m10 -D "$D" --warm-up-time 1 -H "authorization: Bearer $TOK" "$url" \
    >"$RES/raw/$n.r$r.txt" 2>&1 || echo -n "(h2load exit $?) "
  grep -o 'finished in .*' "$RES/raw/$n.r$r.txt" || echo "no result"
  sleep 1
}
say "warm-up (1 s each, not recorded)"
for u in 19201 19207 19209; do wrk -t2 -c32 -d1s -H "Authorization: Bearer $TOK" "http://127.0.0.1:$u/admin/bench" >/dev/null 2>&1 || true; done
H="Authorization: Bearer $TOK"
say "own ports: $R round(s) of wrk -d${D}s (connections, bodies, never-seen tokens) and h2load"
for r in $(seq "$R"); do
  for c in 1 32 256; do
    run_wrk "nginx-plain.c$c" "$r" "$c" http://127.0.0.1:19207/admin/bench -H "$H"
    run_wrk "portcullis.c$c" "$r" "$c" http://127.0.0.1:19209/admin/bench -H "$H"
  done
  for b in 4k 1m; do
    run_wrk "direct.$b" "$r" 32 "http://127.0.0.1:19201/bytes/$b" -H "$H"
    run_wrk "nginx-plain.$b" "$r" 32 "http://127.0.0.1:19207/bytes/$b" -H "$H"
    run_wrk "portcullis.$b" "$r" 32 "http://127.0.0.1:19209/bytes/$b" -H "$H"
  done
  run_h2 "nginx-plain.h2" "$r" http://127.0.0.1:19208/admin/bench
  run_h2 "portcullis.h2" "$r" http://127.0.0.1:19209/admin/bench
  run_wrk "envoy-jwt.unique" "$r" 32 http://127.0.0.1:9106/admin/bench -s "$LUA"
  stop_pc; start_pc   # an empty cache: every token is new to this process
  run_wrk "portcullis.unique" "$r" 32 http://127.0.0.1:19209/admin/bench -s "$LUA"
  run_wrk "portcullis.single" "$r" 32 http://127.0.0.1:19209/admin/bench -H "$H"
done
echo "load_after_rounds $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/load.txt"

# --- 3. RSS --------------------------------------------------------------------------------------
say "RSS under wrk -c32 (fresh process), then with idle keep-alive connections"
stop_pc; start_pc
run_wrk "portcullis.rss32" 1 32 http://127.0.0.1:19209/admin/bench -H "$H"
rss_of() { awk '/^VmRSS/ {s += $2} END {print s}' $(for p in "$@"; do echo "/proc/$p/status"; done); }
nginx_pids() { echo "$(cat "$X/run/plain.pid") $(pgrep -P "$(cat "$X/run/plain.pid")" | xargs)"; }
{
  echo "portcullis_hwm_c32_kib $(awk '/^VmHWM/ {print $2}' "/proc/$PC_PID/status")"
  echo "portcullis_rss_after_c32_kib $(rss_of "$PC_PID")"
} >"$RES/rss.txt"
for n in 32 1000 10000; do
  for target in portcullis nginx-plain; do
    port=19209; [ $target = nginx-plain ] && port=19207
    stop_pc; start_pc   # fresh, so each count starts from the same state
    python3 "$ROOT/scripts/bench/idle_conns.py" 127.0.0.1 $port "$n" "$TOK" "$RES/idle.$target.$n.ready" &
    HOLD=$!
    for _ in $(seq 600); do [ -e "$RES/idle.$target.$n.ready" ] && break; sleep 0.1; done
    if [ $target = portcullis ]; then rss=$(rss_of "$PC_PID"); else rss=$(rss_of $(nginx_pids)); fi
    echo "${target}_idle_${n}_kib $rss $(cat "$RES/idle.$target.$n.ready" 2>/dev/null)" >>"$RES/rss.txt"
    kill "$HOLD" 2>/dev/null || true; wait "$HOLD" 2>/dev/null || true
  done
done
cat "$RES/rss.txt"
stop_pc

# --- 4. start-up and reload with 10 and 10,000 routes --------------------------------------------
say "start-up and reload time with 10 and 10,000 routes"
for n in 10 10000; do
  python3 - "$n" >"$X/conf/routes-$n.yaml" <<'EOF'
import sys
n = int(sys.argv[1])
for i in range(n - 1):
    kind = i % 4
    path = [f"/svc{i}/health", f"/svc{i}/**", f"/svc{i}/items/*/detail", f"/svc{i}/admin"][kind]
    extra = ["    auth: none\n", "    require:\n      groups_any: [admins]\n", "", "    methods: [POST, DELETE]\n"][kind]
    print(f"  - name: r{i}\n    path: {path}\n{extra}", end="")
print("  - name: all\n    path: /**\n    require:\n      groups_any: [admins]")
EOF
  pc_conf "$X/conf/routes-$n.portcullis.yaml" 19309 19319 "$X/conf/routes-$n.yaml"
  python3 "$ROOT/scripts/bench/startup.py" "$BIN" "$X/conf/routes-$n.portcullis.yaml" 19319 5 \
    http://127.0.0.1:19309/admin/bench "$TOK" | tee "$RES/startup.$n.txt"
done
echo "load_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/load.txt"
"$BIN" --version >"$RES/version.txt"
mkdir -p "$OUT"
python3 "$ROOT/scripts/bench/targets_report.py" "$RES" "$OUT" --duration "$D" --rounds "$R"
say "raw output: $RES; report: $OUT/targets.md, $OUT/targets-chart.svg"
