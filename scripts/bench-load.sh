#!/usr/bin/env bash
# bench-load.sh: load benchmark of Portcullis on loopback (README "Performance").
#
# Starts, on 127.0.0.1 only: one nginx (1 worker) serving the upstream's fixed 200 on :19001 and the
# JWKS on :19000, an nginx plain reverse proxy without auth on :19107 (the cost of one proxy hop),
# and the release Portcullis on :19109 (admin :19909). Then, per round, wrk against the direct
# upstream, nginx-plain, and Portcullis with one token ("single"), 2000 rotating tokens ("rotate")
# and a never-seen token on every request ("unique"; Portcullis is restarted before it so its cache
# is empty), and a browser sign-in session cookie ("session": the same request as "single" but
# authenticated by a sealed session cookie; the process refreshes the session's tokens once, from
# a fixed answer nginx serves as the token endpoint). Reports rps, p50/p99, the ratios to the direct upstream and nginx-plain of the same
# round (median over rounds), peak RSS (VmHWM) and the time from the JWKS answering to /readyz.
# Writes docs/bench/results.md, results.json, chart.svg (override with --out).
#
#   scripts/bench-load.sh [-d SECONDS] [-c CONNS] [-r ROUNDS] [--bin PATH] [--out DIR] [--flood N]
#   defaults: -d 5 -c 32 -r 3; --flood N adds a run of N requests alternating valid and forged
#   never-seen tokens against a small cache (token_cache_entries: 10000) and reports its peak RSS.
#
# Not part of scripts/test.sh: it takes minutes and its numbers depend on the machine. Needs wrk,
# nginx, curl and python3 (installed with apt-get when missing and running as root).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=5 C=32 R=3 BIN="" OUT=$ROOT/docs/bench FLOOD=0
while [ $# -gt 0 ]; do
  case $1 in
    -d) D=${2:?}; shift 2 ;; -c) C=${2:?}; shift 2 ;; -r) R=${2:?}; shift 2 ;;
    --bin) BIN=$(realpath "${2:?}"); shift 2 ;;
    --out) OUT=$(realpath -m "${2:?}"); shift 2 ;;
    --flood) FLOOD=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
for v in "$D" "$C" "$R"; do [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "-d, -c, -r take positive integers" >&2; exit 2; }; done
[[ $FLOOD =~ ^[0-9]+$ ]] || { echo "--flood takes a request count" >&2; exit 2; }

CACHE=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}
W=$CACHE/bench
say() { printf '==> %s\n' "$*"; }
die() { printf 'bench-load: %s\n' "$*" >&2; exit 1; }

# --- prerequisites (idempotent) ------------------------------------------------------------------
missing=""
for p in wrk:wrk nginx:nginx-light curl:curl python3:python3; do
  command -v "${p%%:*}" >/dev/null 2>&1 || missing+=" ${p#*:}"
done
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || die "missing:$missing (Debian: apt-get install$missing)"
  say "apt-get install$missing"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  # Debian would start the system nginx on :80; keep services from starting, as Docker images do.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi
NGINX=$(command -v nginx)

if [ -z "$BIN" ]; then
  say "cargo build --release (portcullis + the token minter)"
  (cd "$ROOT" && cargo build --release --locked --bin portcullis --example mint)
  BIN=$ROOT/target/release/portcullis
fi
MINT=$(dirname "$BIN")/examples/mint
[ -x "$MINT" ] || (cd "$ROOT" && cargo build --release --locked --example mint)
[ -x "$MINT" ] || MINT=$ROOT/target/release/examples/mint

# --- tokens: minted once, reused while younger than 12 h (they live 23 h) -------------------------
ISS=http://127.0.0.1:19000/bench_pool CLIENT=benchclient
# Enough never-seen tokens for the unique runs: about 10k rps at most on 2 cores, with margin.
NTOK=$(( D * 16000 > 20000 ? D * 16000 : 20000 ))
[ "$FLOOD" -gt 0 ] && NTOK=$(( NTOK > 100000 ? NTOK : 100000 ))
mkdir -p "$W/tokens" "$W/run" "$W/conf"
have=$(wc -l <"$W/tokens/tokens.txt" 2>/dev/null || echo 0)
if [ "$have" -lt "$NTOK" ] || [ -n "$(find "$W/tokens/tokens.txt" -mmin +720 2>/dev/null)" ] \
  || [ ! -f "$W/tokens/session-cookie.txt" ]; then
  say "minting $NTOK tokens into $W/tokens (RSA-2048, about 1 ms each per core)"
  "$MINT" "$W/tokens" "$NTOK" "$ISS" "$CLIENT" admins 82800
fi
TOK=$(head -n1 "$W/tokens/tokens.txt")
BAD=$(cat "$W/tokens/badsig.txt")
SESSION=$(cat "$W/tokens/session-cookie.txt")
# The token endpoint's answer, inlined into nginx's config (tokens hold no single quote).
SESSION_TOKENS=$(cat "$W/tokens/session-tokens.json")

# --- processes: started here, stopped by PID on exit ---------------------------------------------
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/run/nginx-up.pid" ] && kill "$(cat "$W/run/nginx-up.pid")" 2>/dev/null || true
  [ -f "$W/run/nginx-plain.pid" ] && kill "$(cat "$W/run/nginx-plain.pid")" 2>/dev/null || true
  [ -n "${PC_PID:-}" ] && kill "$PC_PID" 2>/dev/null || true
  rm -rf "${JWKS_DIR:-/nonexistent}"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 19000 19001 19107 19109 19909; do port_busy $p && die "127.0.0.1:$p is in use (a previous run still up?)"; done

# nginx workers run as nobody and cannot read under $HOME: serve the (public) JWKS from /tmp.
JWKS_DIR=$(mktemp -d /tmp/portcullis-bench-jwks.XXXXXX)
chmod 755 "$JWKS_DIR" && install -m 644 "$W/tokens/jwks.json" "$JWKS_DIR/jwks.json"
nginx_conf() {   # name workers body
  cat >"$W/conf/$1.conf" <<EOF
worker_processes $2;
daemon on;
pid $W/run/$1.pid;
error_log $W/run/$1.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $W/run/tmp-$1;
    proxy_temp_path $W/run/tmp-$1;
    fastcgi_temp_path $W/run/tmp-$1;
    uwsgi_temp_path $W/run/tmp-$1;
    scgi_temp_path $W/run/tmp-$1;
    $3
}
EOF
  mkdir -p "$W/run/tmp-$1"
}
# The upstream: the ceiling, as in ../shared/peers (1 worker, fixed 200 echoing the identity).
# The JWKS server logs the time it answered, to measure startup from there.
nginx_conf nginx-up 1 "
    log_format t '\$msec';
    server { listen 127.0.0.1:19001; default_type text/plain;
             location / { return 200 \"ok sub=\$http_x_user_sub groups=\$http_x_user_groups\\n\"; } }
    server { listen 127.0.0.1:19000; access_log $W/run/jwks.log t; default_type application/json;
             location = /bench_pool/.well-known/jwks.json { alias $JWKS_DIR/jwks.json; }
             location = /oauth2/token { default_type application/json; return 200 '$SESSION_TOKENS'; } }"
nginx_conf nginx-plain 2 "
    upstream backend { server 127.0.0.1:19001; keepalive 64; }
    server { listen 127.0.0.1:19107;
             location / { proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass http://backend; } }"
"$NGINX" -c "$W/conf/nginx-up.conf" -e "$W/run/nginx-up.error.log" -q
"$NGINX" -c "$W/conf/nginx-plain.conf" -e "$W/run/nginx-plain.error.log" -q

pc_conf() {   # cache_entries
  cat >"$W/conf/portcullis.yaml" <<EOF
listen: 127.0.0.1:19109
admin_listen: 127.0.0.1:19909
upstream:
  url: http://127.0.0.1:19001
issuers:
  - name: bench
    issuer: $ISS
    jwks_uri: $ISS/.well-known/jwks.json
    client_ids: [$CLIENT]
    token_use: access
limits:
  token_cache_entries: $1
login:
  issuer: bench
  client_id: $CLIENT
  endpoints: {authorize: "http://127.0.0.1:19000/oauth2/authorize", token: "http://127.0.0.1:19000/oauth2/token"}
  public_url: http://127.0.0.1:19109
  session:
    secrets: ["bench-session-secret-0123456789abcdef"]
routes:
  - name: all
    path: /**
    require:
      groups_any: [admins]
EOF
}
START_MS=()
start_pc() {   # start Portcullis, wait for /readyz, record ms from the JWKS answer to ready
  : >"$W/run/jwks.log"
  # stop_pc runs in a command substitution (a subshell that cannot `wait` for the old process):
  # wait here until its listener is gone.
  local j
  for j in $(seq 1000); do port_busy 19109 || break; sleep 0.01; done
  "$BIN" run --config "$W/conf/portcullis.yaml" >"$W/run/portcullis.log" 2>&1 &
  PC_PID=$!
  local i
  for i in $(seq 3000); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19909/readyz)" = 200 ]; then
      local ready jwks
      ready=$(date +%s.%N)
      jwks=$(head -n1 "$W/run/jwks.log")
      START_MS+=("$(python3 -c "print(round(($ready - $jwks) * 1000))")")
      return 0
    fi
    kill -0 "$PC_PID" 2>/dev/null || { tail -n 20 "$W/run/portcullis.log"; die "portcullis exited"; }
    sleep 0.005
  done
  die "portcullis not ready after 15 s"
}
stop_pc() {   # prints peak RSS in KiB
  local hwm
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$PC_PID/status")
  # SIGINT: drain without the SIGTERM shutdown.delay (nothing is in flight between runs).
  kill -INT "$PC_PID"; wait "$PC_PID" 2>/dev/null || true; PC_PID=""
  echo "$hwm"
}

pc_conf 100000
start_pc
code() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$2"; }
[ "$(code "$TOK" http://127.0.0.1:19109/bench)" = 200 ] || die "pre-check: valid token not 200 on Portcullis"
[ "$(code "$BAD" http://127.0.0.1:19109/bench)" = 401 ] || die "pre-check: forged token not 401 on Portcullis"
[ "$(code "$TOK" http://127.0.0.1:19107/bench)" = 200 ] || die "pre-check: nginx-plain not 200"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: __Host-portcullis=$SESSION" http://127.0.0.1:19109/bench)" = 200 ] \
  || die "pre-check: the session cookie is not 200 on Portcullis"

RES=$W/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES"
LUA=$ROOT/scripts/bench/tokens.lua
export BENCH_TOKENS=$W/tokens/tokens.txt BENCH_ROTATE=2000
run() {   # name mode round port [wrk args]
  local n=$1 m=$2 r=$3 port=$4; shift 4
  printf '   round %s/%s  %-16s %-7s ' "$r" "$R" "$n" "$m"
  timeout -k 5 $((D + 60)) wrk -t2 -c"$C" -d"${D}s" --timeout 5s --latency "$@" \
    "http://127.0.0.1:$port/bench" >"$RES/$n.$m.r$r.txt" 2>&1 || echo -n "(wrk exit $?) "
  grep -o 'Requests/sec: *[0-9.]*' "$RES/$n.$m.r$r.txt" | tr -s ' ' || echo "no result"
  sleep 1
}
say "warm-up (1 s each, not recorded)"
for port in 19001 19107 19109; do
  wrk -t2 -c"$C" -d1s -H "Authorization: Bearer $TOK" "http://127.0.0.1:$port/bench" >/dev/null 2>&1 || true
done
say "wrk -t2 -c$C -d${D}s, $R round(s), $(nproc) CPUs shared by wrk, nginx and Portcullis"
RSS_WARM=()
RSS_UNIQUE=()
for r in $(seq "$R"); do
  run direct single "$r" 19001 -H "Authorization: Bearer $TOK"
  run nginx-plain single "$r" 19107 -H "Authorization: Bearer $TOK"
  run portcullis single "$r" 19109 -H "Authorization: Bearer $TOK"
  run portcullis session "$r" 19109 -H "Cookie: __Host-portcullis=$SESSION"
  BENCH_MODE=rotate run portcullis rotate "$r" 19109 -s "$LUA"
  RSS_WARM+=("$(stop_pc)")
  start_pc   # an empty cache: every token of the unique run is new to this process
  BENCH_MODE=unique run portcullis unique "$r" 19109 -s "$LUA"
  grep -q 'reused: yes' "$RES/portcullis.unique.r$r.txt" && echo "   WARNING: the unique run reused tokens"
  RSS_UNIQUE+=("$(stop_pc)")
  start_pc
done
FLOOD_RSS=""
if [ "$FLOOD" -gt 0 ]; then
  RSS_WARM+=("$(stop_pc)")
  pc_conf 10000
  start_pc
  say "flood: $FLOOD requests, half valid (cycling $NTOK tokens), half forged and never seen; cache 10000 entries"
  printf '   flood: '
  BENCH_MODE=flood timeout -k 5 3600 wrk -t2 -c"$C" -d3600s --timeout 5s -s "$LUA" \
    "http://127.0.0.1:19109/bench" >"$RES/portcullis.flood.txt" 2>&1 &
  WRK=$!
  # wrk has no request-count limit: stop it once Portcullis has answered FLOOD requests.
  while kill -0 "$WRK" 2>/dev/null; do
    n=$(curl -s http://127.0.0.1:19909/metrics | awk '/^portcullis_requests_total/ {s += $2} END {print s + 0}')
    [ "${n%.*}" -ge "$FLOOD" ] && { kill -INT "$WRK"; break; }
    sleep 1
  done
  wait "$WRK" 2>/dev/null || true
  grep -o 'Requests/sec: *[0-9.]*' "$RES/portcullis.flood.txt" | tr -s ' ' || echo "no result"
  FLOOD_RSS=$(stop_pc)
  echo "   flood peak RSS: $((FLOOD_RSS / 1024)) MiB after $n requests"
  start_pc
fi
RSS_WARM+=("$(stop_pc)")

mkdir -p "$OUT"
python3 "$ROOT/scripts/bench/report.py" "$RES" "$OUT" --duration "$D" --conns "$C" --rounds "$R" \
  --rss-warm "${RSS_WARM[*]}" --rss-unique "${RSS_UNIQUE[*]}" --startup-ms "${START_MS[*]}" \
  --flood "$FLOOD" --flood-rss "${FLOOD_RSS:-0}" --version "$("$BIN" --version)"
say "raw wrk output: $RES; report: $OUT/results.md, $OUT/chart.svg"
