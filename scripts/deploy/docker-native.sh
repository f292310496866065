#!/usr/bin/env bash
# Build the container image's contents from ./Dockerfile without a Docker engine, then run the
# result the way the image would: in a chroot holding only the runtime stage's files, as uid 65532,
# with nothing writable. Usage: docker-native.sh SCRATCH_DIR   (writes the rootfs path to
# SCRATCH_DIR/rootfs.path)
#
# What it proves: the Dockerfile's build commands still work (--locked, the musl target, the
# dependency-layer stub, .dockerignore lets through what COPY needs); the binary is static and
# starts with no libc, shell or writable file; ENTRYPOINT + CMD are a valid invocation; --version
# carries the GIT_COMMIT build argument.
set -euo pipefail
cd "$(dirname "$0")/../.."
scratch="$1"
root="$(pwd)"
mkdir -p "$scratch"

want_rust="$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)"
have_rust="$(rustc --version | cut -d' ' -f2)"
if [ "$want_rust" != "$have_rust" ]; then
  echo "note: Dockerfile builds with Rust $want_rust, this machine has $have_rust" >&2
fi

commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
# The shared target/ keeps the dependency builds between runs (the image uses its own layer cache).
# The summary comes through a file, never through stdout: the RUN steps print (apt-get installing
# musl-tools on a machine's first run, cargo), and none of that may be mistaken for it.
CARGO_TARGET_DIR="$root/target" python3 scripts/deploy/dockerfile_native.py \
  Dockerfile . "$scratch/stages" --build-arg "GIT_COMMIT=$commit" --summary "$scratch/summary.json" >&2
summary="$(cat "$scratch/summary.json")"
rootfs="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rootfs"])' "$summary")"
user="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["user"])' "$summary")"
path="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["path"])' "$summary")"
mapfile -t entry < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("\n".join(d["entrypoint"]+d["cmd"]))' "$summary")
echo "== runtime stage assembled in $rootfs: ENTRYPOINT+CMD = ${entry[*]}, USER $user"

bin="$rootfs/usr/local/bin/portcullis"
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "FAIL: $bin is dynamically linked; distroless/static has no libc" >&2
  ldd "$bin" >&2
  exit 1
fi
size=$(stat -c %s "$bin")
echo "binary: $size bytes"
# The README states the size; keep it within 15% of what the build gives (it drifted once).
python3 - "$size" README.md <<'PY'
import re, sys
size, text = int(sys.argv[1]), open(sys.argv[2], encoding="utf-8").read()
m = re.search(r"the static binary is ([0-9.]+) MB", text)
assert m, "README: the image size paragraph ('the static binary is N MB') is gone"
stated = float(m.group(1)) * 1e6
if abs(size - stated) > 0.15 * stated:
    sys.exit(f"FAIL: README says the static binary is {m.group(1)} MB; this build's is {size / 1e6:.1f} MB")
print(f"README's {m.group(1)} MB is within 15% of {size / 1e6:.1f} MB")
PY

# Root owns every file, so uid 65532 can write nothing: the same as readOnlyRootFilesystem.
chown -R 0:0 "$rootfs"
chmod -R go-w "$rootfs"
chmod 1777 "$rootfs/tmp"
in_image() { env -i PATH="$path" chroot --userspec="$user" "$rootfs" "$@"; }

echo "== portcullis --version (in the image root, as $user)"
version="$(in_image portcullis --version)"
echo "$version"
case "$version" in
  *"($commit)"*) ;;
  *) echo "FAIL: --version does not carry the commit $commit" >&2; exit 1 ;;
esac

echo "== ENTRYPOINT + CMD with run→check: the bundled policy is valid"
check=("${entry[@]}")
[ "${check[1]}" = run ] || { echo "FAIL: CMD does not start with run: ${check[*]}" >&2; exit 1; }
check[1]=check
in_image "${check[@]}"

echo "== ENTRYPOINT + CMD serving: admin answers, proxy forwards, SIGTERM exits 0"
# The bundled file listens on 8080/9901; other test runs may hold those, so serve a copy that
# differs only in the two listen addresses (ephemeral loopback ports, read back from the log).
conf="${entry[*]: -1}"
sed -e 's/^listen: .*/listen: 127.0.0.1:0/' -e 's/^admin_listen: .*/admin_listen: 127.0.0.1:0/' \
  "$rootfs$conf" > "$rootfs/etc/portcullis/ci.yaml"
log="$scratch/serve.log"
run=("${entry[@]}")
run[${#run[@]}-1]=/etc/portcullis/ci.yaml
env -i PATH="$path" chroot --userspec="$user" "$rootfs" "${run[@]}" > "$log" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true' EXIT
admin="" proxy=""
for _ in $(seq 1 100); do
  line="$(grep -m1 'portcullis started' "$log" || true)"
  if [ -n "$line" ]; then
    # JSON log, flattened: {"message":"portcullis started","listen":"…","admin":"…",…}
    admin="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["admin"])' "$line")"
    proxy="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["listen"])' "$line")"
    break
  fi
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; echo "FAIL: exited early" >&2; exit 1; }
  sleep 0.1
done
[ -n "$admin" ] || { cat "$log" >&2; echo "FAIL: no 'portcullis started' line" >&2; exit 1; }
healthz=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$admin/healthz")
# /health is `auth: none`; nothing listens on the upstream 127.0.0.1:8000 here, so a 502 shows the
# request went all the way through the pipeline to the upstream connect.
health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$proxy/health")
# Any other route needs a token: 401 before anything is forwarded.
denied=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$proxy/orders")
echo "admin /healthz → $healthz, proxy /health → $health, proxy /orders (no token) → $denied"
[ "$healthz" = 200 ] && [ "$health" = 502 ] && [ "$denied" = 401 ] || { cat "$log" >&2; exit 1; }
kill -TERM $pid
# shutdown.delay (5s) + an empty drain; bounded by the wait below, never a timed assertion.
for _ in $(seq 1 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then echo "FAIL: still running 30s after SIGTERM" >&2; exit 1; fi
wait $pid && rc=0 || rc=$?
trap - EXIT
[ "$rc" = 0 ] || { cat "$log" >&2; echo "FAIL: exit $rc after SIGTERM" >&2; exit 1; }
echo "SIGTERM → exit 0"
echo "$rootfs" > "$scratch/rootfs.path"
