#!/usr/bin/env bash
# The one command that runs every check and test of the project (README "Tests").
# Formatting, lints, then unit and integration tests on real loopback sockets.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test prerequisites beyond the Rust toolchain: the TLS test makes its certificate with openssl.
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    # Output to stderr; wait for dpkg's lock when another job is installing at the same time.
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq openssl >&2
  else
    echo "scripts/test.sh: openssl is required (Debian: apt-get install openssl)" >&2
    exit 1
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test (unit + integration)"
cargo test --locked --all-targets
echo "== config schema against an independent validator" && bash scripts/schema-check.sh
bash scripts/deny.sh
bash scripts/security-coverage.sh
bash scripts/fuzz-smoke.sh
bash scripts/deploy-check.sh            # Dockerfile lint + native build, deploy/ render + validate + invariants, README walk-through
echo "== end-to-end: real Cognito emulators, frameworks and browser (tests/e2e/run.sh)"; bash tests/e2e/run.sh
