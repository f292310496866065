#!/usr/bin/env bash
# Render a preview of deploy/grafana-dashboard.json: run the real binary on loopback under a
# bounded mixed load (with config reloads), scrape /metrics, compute each panel's series the way
# its PromQL does, and plot them to docs/dashboard-preview.png. Not part of scripts/test.sh
# (it takes about a minute); run it after changing the dashboard or the metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
venv="$cache/dashboard-venv"
if ! "$venv/bin/python" -c 'import matplotlib, cryptography' >/dev/null 2>&1; then
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'matplotlib==3.9.2' 'cryptography==43.0.3'
fi
cargo build --locked -q
"$venv/bin/python" scripts/render_dashboard.py target/debug/portcullis deploy/grafana-dashboard.json docs/dashboard-preview.png
