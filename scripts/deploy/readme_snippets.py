#!/usr/bin/env python3
"""The README's csv-groups decoders really decode what Portcullis sends (SPEC §4: each name
percent-encoded outside A-Z a-z 0-9 - . _ ~, UTF-8, upper-case hex, then joined with ",").
Runs the Python decoder (Flask section) in-process and the Express one under node when node is
installed. PHP is not installed on CI machines: its one line (explode + rawurldecode) is read only.
Usage: readme_snippets.py README.md
"""

import json
import re
import shutil
import subprocess
import sys
from urllib.parse import quote

SAFE = "-._~"
NAMES = [[], ["Admins"], ["a,b", "Admins"], ["café", "x+y", "50%"], ["sp ace", "q\"uote", "comma,,"]]


def encode(groups):  # the wire format, written out independently of the decoders under test
    return ",".join(quote(g, safe=SAFE) for g in groups)


readme = open(sys.argv[1], encoding="utf-8").read()
failures = []

m = re.search(r"^def groups_from_header\(csv\):\n(?:    .*\n|\s*\n)+", readme, re.M)
assert m, "README: Flask groups_from_header not found"
ns = {}
exec("from urllib.parse import unquote\n" + m.group(0), ns)
for names in NAMES:
    got = ns["groups_from_header"](encode(names))
    if got != names:
        failures.append(f"python: {encode(names)!r} → {got!r}, want {names!r}")

m = re.search(r"^function identity\(req\) \{\n(?:.*\n)*?\}\n", readme, re.M)
assert m, "README: Express identity() not found"
if shutil.which("node"):
    js = m.group(0) + (
        "const cases = JSON.parse(process.argv[1]);\n"
        "const out = cases.map(h => identity({get: n => n === 'X-User-Groups' ? h : 'sub-1'}).groups);\n"
        "console.log(JSON.stringify(out));\n"
    )
    r = subprocess.run(["node", "-e", js, json.dumps([encode(n) for n in NAMES])], capture_output=True, text=True)
    got = json.loads(r.stdout) if r.returncode == 0 else r.stderr
    if got != NAMES:
        failures.append(f"javascript: {got!r}, want {NAMES!r}")
else:
    print("readme_snippets: node not installed, Express decoder not run")

assert "array_map('rawurldecode', explode(',', $csv))" in readme, "README: PHP decoder changed; check it by hand"
if failures:
    sys.exit("\n".join(failures))
print(f"readme_snippets: csv group decoders agree on {len(NAMES)} cases (python, javascript)")
