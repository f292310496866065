#!/usr/bin/env bash
# The one command that runs every check and test of the project (README "Tests").
# Formatting, lints, then unit and integration tests on real loopback sockets.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test (unit + integration)"
cargo test --locked --all-targets
