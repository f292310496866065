#!/usr/bin/env bash
# profile.sh: per-request costs of Portcullis (one token, access log on, JSON) and of nginx as a
# plain proxy without auth, both in front of the peers kit's upstream (127.0.0.1:9001, fixed 200),
# for docs/profiling.md:
#   - CPU per request and its user/kernel split (/proc/PID/stat over a wrk run);
#   - system calls per request (perf stat on the syscall tracepoints over a wrk run; time-driven
#     calls such as the log flusher's 5 ms writes do not scale with the request rate);
#   - where the CPU goes natively (perf record -e cpu-clock);
#   - instructions per request (callgrind: load-independent; the run under valgrind is slow).
#
#   scripts/bench/profile.sh --bin target/release/portcullis [--kit ../shared/peers] [--out DIR] [-d SECONDS]
#                            [--callgrind-only | --no-callgrind] [--no-nginx] [--unique-tokens FILE]
#
# Also: Portcullis's own CPU per request with one token, 2,000 rotating tokens and a never-seen
# token per request, next to the load generator's (wrk's Lua script costs it CPU on the same
# cores), and callgrind's instructions per request for the rotating run.
#
# Needs the kit started (../shared/peers/start.sh), wrk, perf, valgrind (callgrind_control).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KIT=${PEERS_KIT:-$ROOT/../shared/peers}
BIN="" D=10 OUT="" CG_ONLY=0 NGINX=1 CG=1 UNIQUE=""
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$(realpath "${2:?}"); shift 2 ;; --kit) KIT=$(realpath "${2:?}"); shift 2 ;;
    --out) OUT=$(realpath -m "${2:?}"); shift 2 ;; -d) D=${2:?}; shift 2 ;;
    --unique-tokens) UNIQUE=$(realpath "${2:?}"); shift 2 ;;
    --callgrind-only) CG_ONLY=1; shift ;; --no-nginx) NGINX=0; shift ;; --no-callgrind) CG=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "--bin PATH is required" >&2; exit 2; }
. "$KIT/common.sh"
for t in wrk perf valgrind callgrind_control callgrind_annotate nginx; do command -v $t >/dev/null || die "$t missing"; done
X=$W/profile
OUT=${OUT:-$X/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" "$X/run/tmp"
TOK=$(cat "$W/keys/token_valid.txt")
UNIQUE=${UNIQUE:-$W/targets/unique/tokens_many.txt}
H="Authorization: Bearer $TOK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; return 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM
HZ=$(getconf CLK_TCK)

cat >"$X/portcullis.yaml" <<EOF
listen: 127.0.0.1:19409
admin_listen: 127.0.0.1:19419
upstream:
  url: http://127.0.0.1:9001
issuers:
  - name: kit
    issuer: http://127.0.0.1:9000/us-east-1_TEST
    jwks_uri: http://127.0.0.1:9000/us-east-1_TEST/.well-known/jwks.json
    client_ids: [3n4b5urk1ft4fl3mg5e62d9ado]
    token_use: access
shutdown:
  delay: 0s
  grace: 2s
routes:
  - name: all
    path: /**
    require:
      groups_any: [admins]
EOF
# nginx as in the kit (2 workers, access log off) and a one-process variant for callgrind.
nginx_conf() {   # file extra-main
  cat >"$1" <<EOF
$2
pid $X/run/nginx.pid;
error_log $X/run/nginx.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $X/run/tmp; proxy_temp_path $X/run/tmp; fastcgi_temp_path $X/run/tmp;
    uwsgi_temp_path $X/run/tmp; scgi_temp_path $X/run/tmp;
    upstream backend { server 127.0.0.1:9001; keepalive 64; }
    server { listen 127.0.0.1:19407;
             location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://backend; } }
}
EOF
}
nginx_conf "$X/nginx.conf" "worker_processes 2; daemon off;"
nginx_conf "$X/nginx-1.conf" "worker_processes 1; daemon off; master_process off;"

wait_200() { for _ in $(seq 1500); do [ "$(http_code -H "$H" "$1")" = 200 ] && return 0; sleep 0.02; done; die "$1 never answered 200"; }
ticks() { local u=0 s=0 p; for p in "$@"; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
requests() { awk '/requests in/ {print $1}' "$1"; }
workers_of() { echo "$1 $(pgrep -P "$1" | xargs)"; }

measure() {   # name url pids...
  local n=$1 url=$2; shift 2
  wrk -t2 -c32 -d2s -H "$H" "$url" >/dev/null 2>&1 || true
  read -r u0 s0 < <(ticks "$@")
  wrk -t2 -c32 -d"${D}s" -H "$H" "$url" >"$OUT/$n.cpu.wrk.txt" 2>&1
  read -r u1 s1 < <(ticks "$@")
  local req; req=$(requests "$OUT/$n.cpu.wrk.txt")
  python3 -c "u=($u1-$u0)/$HZ; s=($s1-$s0)/$HZ; r=$req
print(f'$n cpu_us_per_request {(u+s)/r*1e6:.1f} user_us {u/r*1e6:.1f} kernel_us {s/r*1e6:.1f} kernel_share {s/(u+s):.2f} requests {r}')" \
    | tee "$OUT/$n.cpu.txt"
  # Syscalls: counted in the kernel by tracepoints (perf stat; no ptrace slow-down as with
  # strace), over 5 s in the middle of a 7 s wrk run; requests = wrk's rate × 5 s.
  local events=raw_syscalls:sys_enter sc
  for sc in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_ctl futex \
            ioctl getsockopt setsockopt accept4 close clock_nanosleep sched_yield; do
    events+=",syscalls:sys_enter_$sc"
  done
  wrk -t2 -c32 -d7s -H "$H" "$url" >"$OUT/$n.syscalls.wrk.txt" 2>&1 &
  local wk=$!
  sleep 1
  perf stat -x, -e "$events" -p "$(echo "$@" | tr ' ' ,)" -o "$OUT/$n.perfstat.txt" -- sleep 5 >/dev/null 2>&1
  wait $wk
  python3 - "$OUT/$n.perfstat.txt" "$OUT/$n.syscalls.wrk.txt" "$n" <<'EOF' | tee "$OUT/$n.syscalls.txt"
import re, sys
path, wrk, name = sys.argv[1:4]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", open(wrk).read()).group(1))
req = rps * 5
counts = {}
for line in open(path):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        counts[f[2].split(":")[-1].replace("sys_enter_", "")] = float(f[0])
total = counts.pop("sys_enter", sum(counts.values()))
print(f"{name} syscalls_per_request {total / req:.2f} (≈{req:.0f} requests at {rps:.0f} rps) " +
      ", ".join(f"{k} {v / req:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v / req >= 0.005))
EOF
  # Where the CPU goes, natively (software clock sampling; the VM has no hardware counters).
  if command -v perf >/dev/null; then
    perf record -q -e cpu-clock -F 1999 -o "$OUT/$n.perf.data" -p "$(echo "$@" | tr ' ' ,)" -- sleep 4 \
      >/dev/null 2>&1 &
    local pr=$!
    wrk -t2 -c32 -d5s -H "$H" "$url" >/dev/null 2>&1
    wait $pr 2>/dev/null || true
    perf report -q -i "$OUT/$n.perf.data" --no-children --sort dso,sym --percent-limit 0.7 --stdio \
      2>/dev/null | sed '/^$/d' | head -n 60 >"$OUT/$n.perf.txt" || true
    perf report -q -i "$OUT/$n.perf.data" --no-children --sort dso --stdio 2>/dev/null | sed '/^$/d' \
      | head -n 12 >"$OUT/$n.perf-dso.txt" || true
  fi
}

if [ "$CG_ONLY" = 0 ]; then
say "Portcullis: CPU split and syscalls"
"$BIN" --log-format json run --config "$X/portcullis.yaml" 2>"$OUT/portcullis.log" >/dev/null &
PC=$!; PIDS+=("$PC")
wait_200 http://127.0.0.1:19409/bench
measure portcullis http://127.0.0.1:19409/bench "$PC"
kill -INT "$PC"; wait "$PC" 2>/dev/null || true

if [ "$NGINX" = 1 ]; then
say "nginx plain proxy: CPU split and syscalls"
nginx -c "$X/nginx.conf" -e "$X/run/nginx.error.log" &
NG=$!; PIDS+=("$NG")
wait_200 http://127.0.0.1:19407/bench
measure nginx-plain http://127.0.0.1:19407/bench $(workers_of "$NG")
kill -QUIT "$NG"; wait "$NG" 2>/dev/null || true
fi
fi

CG_WRK=() CG_WARM=3
callgrind() {   # name url cmd... (wrk request options in CG_WRK, default the one token; warm-up CG_WARM s)
  local n=$1 url=$2; shift 2
  local wa=("${CG_WRK[@]}"); [ ${#wa[@]} -gt 0 ] || wa=(-H "$H")
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$n.callgrind.%p" "$@" 2>"$OUT/$n.valgrind.log" >/dev/null &
  local vg=$!; PIDS+=("$vg")
  wait_200 "$url"
  wrk -t1 -c4 -d"${CG_WARM}s" "${wa[@]}" "$url" >/dev/null 2>&1 || true
  callgrind_control -z "$vg" >/dev/null
  wrk -t1 -c4 -d15s "${wa[@]}" "$url" >"$OUT/$n.callgrind.wrk.txt" 2>&1
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  kill -INT "$vg" 2>/dev/null; sleep 2; kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
  # The dump taken right after the measured run (callgrind_control -d writes <file>.1).
  local f; f=$(ls -1 "$OUT/$n.callgrind."*.1 | head -n1)
  local ir; ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  local req; req=$(requests "$OUT/$n.callgrind.wrk.txt")
  python3 -c "print(f'$n instructions_per_request {$ir / $req:,.0f} ({$req} requests, $ir Ir; dump $(basename "$f"))')" \
    | tee "$OUT/$n.instructions.txt"
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null | head -n 60 >"$OUT/$n.callgrind.inclusive.txt" || true
}
if [ "$CG" = 1 ]; then
say "callgrind: Portcullis"
callgrind portcullis http://127.0.0.1:19409/bench "$BIN" --log-format json run --config "$X/portcullis.yaml"
[ "$NGINX" = 1 ] && say "callgrind: nginx plain proxy (one process)" &&
  callgrind nginx-plain http://127.0.0.1:19407/bench nginx -c "$X/nginx-1.conf" -e "$X/run/nginx.error.log"
fi
if [ "$CG" = 1 ]; then
  say "callgrind: Portcullis, 2,000 rotating tokens"
  export PEERS_TOKENS=$W/keys/tokens_many.txt
  # Warm-up long enough for two passes over the 2,000 tokens under valgrind (a token is cached on
  # its second verification), so the measured run is all cache hits, as in the native runs.
  CG_WRK=(-s "$KIT/tools/rotate_tokens.lua") CG_WARM=20
  callgrind portcullis-rotate http://127.0.0.1:19409/bench "$BIN" --log-format json run --config "$X/portcullis.yaml"
  CG_WRK=() CG_WARM=3
fi

if [ "$CG_ONLY" = 0 ]; then
  say "Portcullis's CPU per request by token mode, and wrk's own"
  export PEERS_TOKENS=$W/keys/tokens_many.txt BENCH_MODE=unique BENCH_TOKENS=$UNIQUE
  for mode in single rotate unique; do
    case $mode in
      single) args=(-H "$H") ;;
      rotate) args=(-s "$KIT/tools/rotate_tokens.lua") ;;
      unique) [ -s "$UNIQUE" ] || { echo "   no never-seen tokens ($UNIQUE): skipped"; continue; }
              args=(-s "$ROOT/scripts/bench/tokens.lua") ;;
    esac
    "$BIN" --log-format json run --config "$X/portcullis.yaml" 2>"$OUT/portcullis.$mode.log" >/dev/null &
    pc=$!; PIDS+=("$pc")
    wait_200 http://127.0.0.1:19409/bench
    # Warm-up, except for never-seen tokens (the cache must start empty).
    [ $mode = unique ] || wrk -t2 -c32 -d2s "${args[@]}" http://127.0.0.1:19409/bench >/dev/null 2>&1 || true
    read -r u0 s0 < <(ticks "$pc")
    ( wrk -t2 -c32 -d"${D}s" "${args[@]}" http://127.0.0.1:19409/bench >"$OUT/mode.$mode.wrk.txt" 2>&1; times >"$OUT/mode.$mode.times" )
    read -r u1 s1 < <(ticks "$pc")
    kill -INT "$pc"; wait "$pc" 2>/dev/null || true
    python3 - "$mode" "$((u1 - u0))" "$((s1 - s0))" "$HZ" "$OUT/mode.$mode.wrk.txt" "$OUT/mode.$mode.times" <<'EOF' | tee "$OUT/mode.$mode.txt"
import re, sys
mode, u, s, hz, wrk, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
text = open(wrk).read()
req = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
sec = lambda m: int(m[0]) * 60 + float(m[1])
child = re.findall(r"(\d+)m([\d.]+)s", open(times).read())[2:4]
wu, ws = sec(child[0]), sec(child[1])
print(f"mode {mode}: portcullis {(u + s) / hz / req * 1e6:.1f} us/request (user {u / hz / req * 1e6:.1f}, kernel "
      f"{s / hz / req * 1e6:.1f}); wrk {(wu + ws) / req * 1e6:.1f} us/request; {rps:.0f} rps, {req} requests")
EOF
  done
fi
cat "$OUT"/*.cpu.txt "$OUT"/*.syscalls.txt "$OUT"/*.instructions.txt "$OUT"/mode.{single,rotate,unique}.txt >"$OUT/SUMMARY.txt" 2>/dev/null || true
say "summary ($OUT/SUMMARY.txt):"
cat "$OUT/SUMMARY.txt"
