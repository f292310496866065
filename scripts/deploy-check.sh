#!/usr/bin/env bash
# Deployment checks (README "Deploy as a Kubernetes sidecar"), one step of scripts/test.sh:
#   1. hadolint on the Dockerfile;
#   2. the Dockerfile's build stage executed natively, the result run in a chroot as the image would;
#   3. every Kustomize entry point under deploy/ rendered (kubectl kustomize when present, checked
#      against the bundled subset renderer; the subset renderer alone otherwise);
#   4. every rendered resource validated against the Kubernetes OpenAPI schemas (kubernetes-validate,
#      --strict, oldest and newest supported versions); the ServiceMonitor against its own schema;
#   5. the cross-file invariants (ports, args, probes, ConfigMap key, shutdown timing, loopback app);
#   6. the README quick start walked through as a newcomer would (scripts/readme-walkthrough.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deploy/tools.sh
# Oldest: lifecycle.preStop.sleep (used by the app containers) is on by default from 1.30.
K8S_VERSIONS="1.30.0 1.37.0"
work="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-deploy.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "== hadolint Dockerfile"
"$DEPLOY_BIN/hadolint" --failure-threshold info Dockerfile

echo "== dockerfile_native.py: what RUN steps print never reaches its JSON summary"
# The first run on a machine without musl-tools once failed here: apt-get's output, inherited by
# the RUN step, landed in front of the summary on stdout. A two-stage fixture whose RUN prints.
fx="$work/fixture"
mkdir -p "$fx/ctx"
echo hello > "$fx/ctx/hello.txt"
cat > "$fx/Dockerfile" <<'EOF'
FROM docker.io/library/rust:1-slim-bookworm AS build
WORKDIR /src
COPY hello.txt ./
RUN echo noise-on-stdout && cat hello.txt && cp hello.txt out.txt
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/out.txt /out.txt
ENTRYPOINT ["true"]
EOF
python3 scripts/deploy/dockerfile_native.py "$fx/Dockerfile" "$fx/ctx" "$fx/a" >"$fx/stdout" 2>"$fx/stderr"
python3 scripts/deploy/dockerfile_native.py "$fx/Dockerfile" "$fx/ctx" "$fx/b" --summary "$fx/summary.json" >"$fx/stdout2" 2>/dev/null
python3 -c '
import json, sys
out, err, out2, summary = (open(p).read() for p in sys.argv[1:5])
assert json.loads(out)["entrypoint"] == ["true"], out   # stdout is the summary and nothing else
assert "noise-on-stdout" in err, err                     # the step did print, to stderr
assert out2 == "" and json.loads(summary)["entrypoint"] == ["true"], (out2, summary)
print("RUN output goes to stderr; the summary parses (stdout and --summary)")' \
  "$fx/stdout" "$fx/stderr" "$fx/stdout2" "$fx/summary.json"

echo "== Dockerfile build stage, natively (cargo build --release --locked, musl)"
bash scripts/deploy/docker-native.sh "$work/image"
rootfs="$(cat "$work/image/rootfs.path")"
binary="$rootfs/usr/local/bin/portcullis"

echo "== kustomize: render every entry point"
mapfile -t entries < <(find deploy -name kustomization.yaml -printf '%h\n' | sort)
renderer="kustomize_lite.py (subset)"
if kubectl kustomize --help >/dev/null 2>&1; then renderer="kubectl kustomize ($(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'))"; fi
echo "renderer: $renderer"
rendered=()
for dir in "${entries[@]}"; do
  if grep -q '^kind: Component' "$dir/kustomization.yaml"; then continue; fi   # rendered through an overlay
  out="$work/render/$(echo "${dir#deploy/}" | tr / -).yaml"
  mkdir -p "$(dirname "$out")"
  "$DEPLOY_PY" scripts/deploy/kustomize_lite.py "$dir" > "$out.lite"
  if kubectl kustomize --help >/dev/null 2>&1; then
    kubectl kustomize "$dir" > "$out"
    # The subset renderer must agree with the real one wherever both exist.
    "$DEPLOY_PY" -c '
import json, sys, yaml
a, b = ({json.dumps(d, sort_keys=True) for d in yaml.safe_load_all(open(p)) if d} for p in sys.argv[1:3])
sys.exit(0 if a == b else "kustomize_lite.py and kubectl kustomize disagree on " + sys.argv[3])' "$out.lite" "$out" "$dir"
  else
    mv "$out.lite" "$out"
  fi
  rm -f "$out.lite"
  echo "$dir → $(grep -c '^kind:' "$out") resources"
  rendered+=("$out")
done
echo "== kubernetes-validate --strict (${K8S_VERSIONS})"
for v in $K8S_VERSIONS; do
  out="$("$DEPLOY_BIN/kubernetes-validate" --strict --quiet -k "$v" "${rendered[@]}" 2>&1)" || { echo "$out" >&2; exit 1; }
  # The only resource without a Kubernetes schema is the ServiceMonitor (a CRD), checked below.
  if echo "$out" | grep -v "kind ServiceMonitor" | grep -q .; then echo "$out" >&2; exit 1; fi
  echo "$v: $(cat "${rendered[@]}" | grep -c '^kind:') resources valid"
done
"$DEPLOY_PY" -c '
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
n = 0
for p in sys.argv[2:]:
    for d in yaml.safe_load_all(open(p)):
        if d and d["kind"] == "ServiceMonitor":
            jsonschema.validate(d, schema); n += 1
assert n, "no ServiceMonitor rendered"
print(f"ServiceMonitor: {n} valid against scripts/deploy/servicemonitor.schema.json")' scripts/deploy/servicemonitor.schema.json "${rendered[@]}"

echo "== cross-file invariants"
"$DEPLOY_PY" scripts/deploy/invariants.py . "$binary" "${rendered[@]}"

echo "== README walk-through"
bash scripts/readme-walkthrough.sh
