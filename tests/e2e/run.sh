#!/usr/bin/env bash
# The end-to-end proof (README "End-to-end proof"): real Cognito emulators (moto, cognito-local)
# issue real tokens; Portcullis sits in front of real Flask, Django, Express and PHP apps and a
# real headless Chromium; a Cognito-shaped OpenID provider (npm oidc-provider) signs browsers in
# (through Portcullis unless E2E_LOGIN=0). This script only prepares the tools (cached outside the
# repo, keyed by the pinned lockfiles) and then runs the scenario driver, tests/e2e/driver.py, which
# starts every server on free loopback ports, stops each by PID, and prints "N passed, M failed".
# PORTCULLIS_BIN=path runs it against a binary built elsewhere instead of this tree's.
#
# A missing tool is a failure, never a skip: when root, it is installed with apt-get; otherwise the
# script names it and exits 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
e2e=tests/e2e
cache="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/e2e"
mkdir -p "$cache"

say() { echo "e2e: $*"; }
die() { echo "e2e: $*" >&2; exit 1; }

# --- system tools ----------------------------------------------------------------------------
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} with apt-get"
    # Another job may be installing at the same time: wait for dpkg's lock rather than fail.
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  else
    die "missing tools: ${missing[*]} (Debian: apt-get install ${missing[*]}); the e2e suite needs them all"
  fi
fi

# --- Python venv (moto, boto3, Flask, Django, gunicorn), keyed by requirements.txt -----------
py_key=$( (python3 --version; cat "$e2e/requirements.txt") | sha256sum | cut -c1-16)
venv="$cache/venv-$py_key"
if [ ! -f "$venv/.ready" ]; then
  say "creating Python venv in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check --no-input -q -r "$e2e/requirements.txt"
  touch "$venv/.ready"
fi

# --- node_modules (cognito-local, oidc-provider, Express, playwright-core), keyed by package-lock.json
node_key=$( (node --version; cat "$e2e/package.json" "$e2e/package-lock.json") | sha256sum | cut -c1-16)
nodedir="$cache/node-$node_key"
if [ ! -f "$nodedir/.ready" ]; then
  say "installing npm packages in $nodedir"
  rm -rf "$nodedir"
  mkdir -p "$nodedir"
  cp "$e2e/package.json" "$e2e/package-lock.json" "$nodedir/"
  # No install scripts are needed by these packages; not running them is the safer default.
  (cd "$nodedir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  touch "$nodedir/.ready"
fi

# --- the binary under test --------------------------------------------------------------------
# PORTCULLIS_BIN runs the suite against a binary built elsewhere (e.g. another branch's snapshot).
target_dir="${CARGO_TARGET_DIR:-target}"
if [ -n "${PORTCULLIS_BIN:-}" ]; then
  [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN=$PORTCULLIS_BIN is not an executable"
  binary="$PORTCULLIS_BIN"
else
  cargo build --locked --quiet --bin portcullis
  binary="$target_dir/debug/portcullis"
fi
# The browser sign-in scenarios (SPEC §8's `login` block) run by default; E2E_LOGIN=0 skips them,
# e.g. against a binary built before sign-in existed.
export E2E_LOGIN="${E2E_LOGIN:-1}"
say "binary under test: $binary; browser sign-in through Portcullis: E2E_LOGIN=$E2E_LOGIN"

# --- run, bounded -----------------------------------------------------------------------------
artifacts="$target_dir/e2e-artifacts"
mkdir -p "$artifacts"
driver_pid=
cleanup() { [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null || true; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
# The driver stops every server it started (by PID) on exit or on SIGTERM; the outer timeout only
# bounds a driver that is itself stuck.
timeout -k 20 900 "$venv/bin/python" "$e2e/driver.py" \
  --portcullis "$binary" \
  --node-modules "$nodedir/node_modules" \
  --artifacts "$artifacts" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=
exit "$status"
