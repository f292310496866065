#!/usr/bin/env bash
# Validate real config files against portcullis.schema.json with an independent JSON Schema
# implementation (python-jsonschema, Draft 2020-12) — what editors do with the schema modeline.
# Installs into a cached virtualenv outside the repo, idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
venv="$cache/schema-venv"
if ! "$venv/bin/python" -c 'import jsonschema, yaml' >/dev/null 2>&1; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv >&2
    else
      echo "scripts/schema-check.sh: python3-venv is required" >&2
      exit 1
    fi
  fi
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'jsonschema==4.23.0' 'PyYAML==6.0.2'
fi
"$venv/bin/python" scripts/schema_check.py portcullis.schema.json config.example.yaml README.md
