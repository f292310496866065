#!/usr/bin/env python3
"""A small, honest subset of `kustomize build`, for machines without kubectl or kustomize.

It implements exactly what deploy/ uses, and refuses any other kustomization field:
resources (files and directories), components (kind: Component), patches (`path:` files, as
strategic-merge patches: maps merge, lists of containers / volumes / env / ports merge by their
key, other lists replace), images (newName / newTag), configMapGenerator (files; behavior create
or replace; the same content-hash name suffix as kustomize, rewritten into volume references) and
generatorOptions.disableNameSuffixHash. Output: the resources as a YAML stream (order not
guaranteed to match kustomize; compare as a set). When kubectl is present, deploy-check.sh renders
with both and requires identical results, which is how this file is tested.

Usage: kustomize_lite.py DIR
"""

import hashlib
import json
import os
import sys

import yaml

KNOWN = {"apiVersion", "kind", "resources", "components", "patches", "images", "configMapGenerator", "generatorOptions"}
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "ports": "containerPort", "volumeMounts": "mountPath"}


def fail(msg):
    sys.stderr.write(f"kustomize_lite: {msg}\n")
    sys.exit(1)


def merge(base, patch, key=None):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS and patch:
        # As kustomize orders a strategic merge: the patch's items first (merged with their
        # base counterparts), then the base items the patch does not name.
        mk = MERGE_KEYS[key]
        named = {item.get(mk) for item in patch}
        out = []
        for item in patch:
            b = next((b for b in base if b.get(mk) == item.get(mk)), None)
            out.append(item if b is None else merge(b, item))
        return out + [b for b in base if b.get(mk) not in named]
    return patch


def config_map_hash(cm):
    # kustomize api/hasher: sha256 over the JSON of {data, kind, name} (Go's encoder escapes <, >, &),
    # first 10 hex digits with 0,1,3,a,e mapped to g,h,k,m,t so the suffix is never all-numeric.
    # The name field is hashed empty: kustomize hashes the generated object before it is named.
    doc = {"data": cm.get("data", {}), "kind": "ConfigMap", "name": ""}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    hexd = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return hexd.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def build(d, expect_kind="Kustomization"):
    path = os.path.join(d, "kustomization.yaml")
    k = yaml.safe_load(open(path, encoding="utf-8"))
    if k.get("kind", "Kustomization") != expect_kind:
        fail(f"{path}: expected kind {expect_kind}")
    unknown = set(k) - KNOWN
    if unknown:
        fail(f"{path}: unsupported fields {sorted(unknown)} (this is a subset renderer)")
    res = []  # list of [doc, hashed?]
    for r in k.get("resources", []):
        full = os.path.normpath(os.path.join(d, r))
        if os.path.isdir(full):
            res += build(full)
        else:
            res += [[doc, False] for doc in yaml.safe_load_all(open(full, encoding="utf-8")) if doc]
    opts = k.get("generatorOptions", {})
    if set(opts) - {"disableNameSuffixHash"}:
        fail(f"{path}: unsupported generatorOptions")
    for gen in k.get("configMapGenerator", []):
        if set(gen) - {"name", "files", "behavior"}:
            fail(f"{path}: unsupported configMapGenerator fields")
        data = {}
        for f in gen["files"]:
            key, _, src = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
            data[key] = open(os.path.join(d, src or f), encoding="utf-8").read()
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
        behavior = gen.get("behavior", "create")
        existing = [e for e in res if e[0]["kind"] == "ConfigMap" and e[0]["metadata"]["name"] == gen["name"]]
        if behavior == "replace":
            if not existing:
                fail(f"{path}: replace of unknown ConfigMap {gen['name']}")
            existing[0][0] = cm
        elif behavior == "create":
            if existing:
                fail(f"{path}: ConfigMap {gen['name']} already exists")
            res.append([cm, not opts.get("disableNameSuffixHash", False)])
        else:
            fail(f"{path}: unsupported behavior {behavior}")
    for comp in k.get("components", []):
        res += build(os.path.normpath(os.path.join(d, comp)), "Component")
    for p in k.get("patches", []):
        if set(p) != {"path"}:
            fail(f"{path}: only `patches: - path:` is supported")
        for patch in yaml.safe_load_all(open(os.path.join(d, p["path"]), encoding="utf-8")):
            hit = [e for e in res if e[0]["kind"] == patch["kind"] and e[0]["metadata"]["name"] == patch["metadata"]["name"]]
            if len(hit) != 1:
                fail(f"{path}: patch target {patch['kind']}/{patch['metadata']['name']} not found")
            hit[0][0] = merge(hit[0][0], patch)
    for img in k.get("images", []):
        for e in res:
            for c in e[0].get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name, _, _tag = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img['newTag']}" if "newTag" in img else img.get("newName", name)
    return res


def finish(res):
    renames = {}
    for e in res:
        if e[1]:
            old = e[0]["metadata"]["name"]
            new = f"{old}-{config_map_hash(e[0])}"
            e[0]["metadata"]["name"] = new
            renames[old] = new
    for e in res:
        for v in e[0].get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] in renames:
                v["configMap"]["name"] = renames[v["configMap"]["name"]]
    return [e[0] for e in res]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail(__doc__)
    docs = finish(build(sys.argv[1]))
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=True, default_flow_style=False))
