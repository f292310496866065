#!/usr/bin/env bash
# Supply-chain checks (SECURITY DEP-03): cargo-deny for RustSec advisories, licenses, banned
# crates and crate sources, configured in deny.toml.
#
# This machine cannot fetch the advisory database, so the check runs against an offline snapshot
# of rustsec/advisory-db (default ../shared/advisory-db next to the repository; override with
# PORTCULLIS_ADVISORY_DB). cargo-deny wants a git checkout at a fixed place under its db-path, so
# the snapshot is copied there and committed once per snapshot, then checked with --offline (no
# fetching). cargo-deny itself is installed from crates.io into the cache on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== supply chain: cargo deny (advisories, licenses, bans, sources)"

cache=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}
tools=$cache/tools
export PATH="$tools/bin:$PATH"
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "deny.sh: installing cargo-deny into $tools (once; takes a few minutes)"
  cargo install --locked cargo-deny --root "$tools"
fi

snapshot=${PORTCULLIS_ADVISORY_DB:-../shared/advisory-db}
dbs=$cache/advisory-dbs
# The directory name cargo-deny derives from the default db URL (github.com/RustSec/advisory-db).
db=$dbs/advisory-db-3157b0e258782691
if [ -f "$snapshot/SNAPSHOT.md" ]; then
  stamp=$(sha256sum "$snapshot/SNAPSHOT.md" | cut -d' ' -f1)
  if [ "$(cat "$db/.portcullis-snapshot" 2>/dev/null)" != "$stamp" ]; then
    echo "deny.sh: preparing the advisory database from $snapshot"
    rm -rf "$db" && mkdir -p "$dbs"
    cp -r "$snapshot" "$db"
    (cd "$db" && git init -q && git add -A && git -c user.name=portcullis -c user.email=ci@localhost commit -qm snapshot)
    echo "$stamp" >"$db/.portcullis-snapshot"
  fi
elif [ ! -d "$db/.git" ]; then
  echo "deny.sh: no advisory database: $snapshot not found (set PORTCULLIS_ADVISORY_DB)" >&2
  exit 1
fi

# `--offline` below forbids downloads, but cargo-deny's metadata covers every platform's crates
# (e.g. notify's kqueue on BSD/macOS), which a Linux build never fetched: fetch them first.
cargo fetch --locked --quiet
DENY_ADVISORY_DB_PATH=$dbs cargo deny --offline --locked check advisories bans licenses sources
