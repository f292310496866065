#!/usr/bin/env bash
# Every item of the security catalog (SECURITY.md: TOK-01, PATH-07, ...) must be pinned by an
# automated test that names it. This script lists, for each catalog ID, the test files that name it,
# and fails when any ID is named by no test.
#
# "Test code" is: tests/**/*.rs, src/**/tests.rs, the `#[cfg(test)]` part of other src/**/*.rs,
# and the fuzz targets under fuzz/fuzz_targets/. A mention in product code (a comment explaining
# why the code is written that way) does not count: only a test that fails on regression does.
#
# The catalog is read from SECURITY_CATALOG (default: the shared SECURITY.md next to the repo, or
# the copy of its ID list in scripts/security-ids.txt when that file is not present, e.g. on CI),
# together with SECURITY-LOGIN.md beside it (the LOGIN-* items of browser sign-in).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== security catalog coverage (every SECURITY.md ID named by a test)"

ids_file=scripts/security-ids.txt
catalog=${SECURITY_CATALOG:-../shared/SECURITY.md}
# The browser sign-in items (SPEC §8) live in their own catalog file and join the list.
login_catalog=${SECURITY_LOGIN_CATALOG:-$(dirname "$catalog")/SECURITY-LOGIN.md}
if [ -f "$catalog" ]; then
  # Keep the committed list in step with the catalog when it is available.
  fresh=$(cat "$catalog" $([ -f "$login_catalog" ] && echo "$login_catalog") | grep -oE '^#### [A-Z]+-[0-9]+' | awk '{print $2}')
  if [ "$fresh" != "$(cat "$ids_file")" ]; then
    echo "security-coverage: $ids_file differs from $catalog; refreshing it (commit the change)" >&2
    printf '%s\n' "$fresh" >"$ids_file"
  fi
fi

# Print the test-code text of every file, prefixed with its name, one line per line.
test_text() {
  local f
  for f in $(find tests fuzz/fuzz_targets -name '*.rs' 2>/dev/null | sort) $(find src -name tests.rs | sort); do
    sed "s|^|$f: |" "$f"
  done
  for f in $(find src -name '*.rs' ! -name tests.rs | sort); do
    # Everything from the first `#[cfg(test)]` on is test code.
    awk -v f="$f" '/^ *#\[cfg\(test\)\]/ {t=1} t {print f ": " $0}' "$f"
  done
}

text=$(test_text)
missing=0
total=0
while read -r id; do
  [ -n "$id" ] || continue
  total=$((total + 1))
  files=$(printf '%s\n' "$text" | grep -E "\\b${id}\\b" | cut -d: -f1 | sort -u | tr '\n' ' ' || true)
  if [ -z "$files" ]; then
    printf '%-8s UNCOVERED\n' "$id"
    missing=$((missing + 1))
  else
    [ -z "${VERBOSE:-}" ] || printf '%-8s %s\n' "$id" "$files"
  fi
done <"$ids_file"

echo "security-coverage: $((total - missing))/$total catalog IDs are named by a test"
if [ "$missing" -ne 0 ]; then
  echo "security-coverage: $missing ID(s) have no test" >&2
  exit 1
fi
