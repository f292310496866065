#!/usr/bin/env bash
# The README's first hour, done as a newcomer would and checked: clone the repository, run the
# "Quick start" demo command exactly as written, paste every `curl` line the demo prints and check
# the status the line's own comment promises (at least one 200 through the proxy with a token),
# then follow "protect your own app": copy config.example.yaml and `check` it, and run the
# README's csv-groups decoders against the wire format.
#
# Bounded: the demo start (which includes the release build) waits at most WALKTHROUGH_BUILD_SECS,
# each curl at most 10 s; the demo is stopped by its process-group id, never by name.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-walkthrough.XXXXXX")"
pgid=""
cleanup() {
  if [ -n "$pgid" ]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== git clone"
git clone -q "$repo" "$work/portcullis"
cd "$work/portcullis"
# The clone builds into the checkout's target/ so CI does not compile everything twice; the build
# commands are the README's own.
export CARGO_TARGET_DIR="$repo/target"

# The Quick start block: the first ```bash fence after "## Quick start".
quick="$(awk '/^## Quick start/{q=1} q&&/^```bash/{f=1;next} f&&/^```/{exit} f' README.md)"
demo_cmd="$(printf '%s\n' "$quick" | sed 's/#.*//' | grep -E -- '-- demo|portcullis demo' | head -n 1 | sed 's/[[:space:]]*$//')"
[ -n "$demo_cmd" ] || { echo "FAIL: no demo command in the README's Quick start" >&2; exit 1; }

# The README says to use --listen / --admin-listen when 8080 or 9901 are taken; CI machines run
# other tests, so always pick free loopback ports.
read -r p1 p2 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
echo "== $demo_cmd --listen 127.0.0.1:$p1 --admin-listen 127.0.0.1:$p2"
out="$work/demo.out"
setsid bash -c "exec $demo_cmd --listen 127.0.0.1:$p1 --admin-listen 127.0.0.1:$p2" > "$out" 2> "$work/demo.err" &
pgid=$!
limit="${WALKTHROUGH_BUILD_SECS:-2400}"
for _ in $(seq 1 $((limit * 2))); do
  grep -q '^Press Ctrl-C' "$out" && break
  kill -0 "$pgid" 2>/dev/null || { tail -20 "$work/demo.err" >&2; echo "FAIL: demo exited" >&2; exit 1; }
  sleep 0.5
done
grep -q '^Press Ctrl-C' "$out" || { tail -20 "$work/demo.err" >&2; echo "FAIL: demo not up after ${limit}s" >&2; exit 1; }

echo "== paste the printed curl lines"
comment="" expect="" ran=0 ok200=0
while IFS= read -r line; do
  case "$line" in
    "# "*) comment="$line"; expect="$(printf '%s' "$line" | sed -n 's/.*: \([0-9][0-9][0-9]\)$/\1/p')" ;;
    "curl "*)
      # The line as printed, with the status written out instead of the body (never the token).
      code="$(bash -c "curl -o '$work/body' -w %{http_code} --max-time 10 ${line#curl }")"
      shown="$(printf '%s' "$line" | sed -E 's/Bearer [A-Za-z0-9._-]+/Bearer <token>/')"
      echo "$code  $shown"
      if [ -n "$expect" ] && [ "$code" != "$expect" ]; then echo "FAIL: expected $expect" >&2; exit 1; fi
      if [ "$code" = 200 ] && [[ "$line" == *Bearer* ]]; then ok200=$((ok200 + 1)); fi
      # "a forged identity header is stripped": the echo app must not have seen the forged group.
      if [[ "$comment" == *forged* ]] && grep -q Admins "$work/body"; then
        echo "FAIL: the forged X-User-Groups reached the app" >&2; exit 1
      fi
      ran=$((ran + 1)) expect="" ;;
  esac
done < "$out"
[ "$ran" -ge 5 ] && [ "$ok200" -ge 1 ] || { echo "FAIL: ran $ran curl lines, $ok200 authenticated 200s" >&2; exit 1; }

echo "== Ctrl-C"
kill -INT -- "-$pgid"
for _ in $(seq 1 100); do kill -0 "$pgid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$pgid" 2>/dev/null; then echo "FAIL: demo still running after Ctrl-C" >&2; exit 1; fi
wait "$pgid" || { echo "FAIL: demo exited non-zero after Ctrl-C" >&2; exit 1; }
pgid=""

echo "== protect your own app: copy config.example.yaml, check it"
python3 scripts/deploy/readme_snippets.py README.md
cp config.example.yaml portcullis.yaml
"$CARGO_TARGET_DIR/release/portcullis" check --config portcullis.yaml
echo "== cargo install --path . (README), then --version names the commit"
cargo install --quiet --locked --path . --root "$work/root"
version="$("$work/root/bin/portcullis" --version)"
echo "$version"
[[ "$version" == *"($(git rev-parse --short=12 HEAD))"* ]] || { echo "FAIL: --version lacks the commit" >&2; exit 1; }
echo "walk-through: $ran curl lines as promised, $ok200 authenticated 200s"
