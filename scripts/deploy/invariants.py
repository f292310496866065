#!/usr/bin/env python3
"""Cross-file invariants of the deployment: Dockerfile, config.example.yaml and every rendered
Kustomize overlay must agree with each other (ports, args, probes, the ConfigMap key, shutdown
timing, the loopback-only app). Kubernetes schema validation is a separate step; this checks what
a schema cannot: that the pieces fit.

Usage: invariants.py REPO PORTCULLIS_BINARY RENDERED.yaml...   (exit 1 listing every failure)
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

failures = []


def check(cond, where, msg):
    if not cond:
        failures.append(f"{where}: {msg}")
    return cond


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def host_of(addr):
    return addr.rsplit(":", 1)[0]


def seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", d)
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def dockerfile_facts(path):
    facts = {"expose": set()}
    for line in open(path, encoding="utf-8"):
        word, _, rest = line.strip().partition(" ")
        if word == "EXPOSE":
            facts["expose"] |= {int(p) for p in rest.split()}
        elif word == "USER":
            facts["user"] = rest.strip()
        elif word == "CMD":
            facts["cmd"] = json.loads(rest)
        elif word == "ENTRYPOINT":
            facts["entrypoint"] = json.loads(rest)
    return facts


def matches_route(path, pattern):
    if pattern.endswith("/**"):
        prefix = pattern[:-3]
        return path == prefix or path.startswith(prefix + "/")
    return path.rstrip("/") == pattern.rstrip("/")


def strings_in(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_in(v)


def port_named(container, name):
    for p in container.get("ports", []):
        if p.get("name") == name:
            return p["containerPort"]
    return None


def check_overlay(name, docs, binary, docker, example):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deps = by_kind.get("Deployment", [])
    if not check(len(deps) == 1, name, f"expected one Deployment, found {len(deps)}"):
        return
    dep = deps[0]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"]["labels"]
    containers = {c["name"]: c for c in spec["containers"]}
    px = containers.get("portcullis")
    if not check(px is not None, name, "no container named portcullis"):
        return
    apps = [c for n, c in containers.items() if n != "portcullis"]
    check(apps, name, "no app container next to portcullis")
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}

    # The policy: mounted as a directory (no subPath, so hot reload sees kubelet's symlink swap),
    # and --config points at the ConfigMap key inside it.
    args = px.get("args", [])
    check(args[:2] == ["run", "--config"] and len(args) == 3, name, f"portcullis args {args}")
    cfg_path = args[2] if len(args) == 3 else ""
    mount = next((m for m in px.get("volumeMounts", []) if cfg_path.startswith(m["mountPath"].rstrip("/") + "/")), None)
    if not check(mount is not None, name, f"--config {cfg_path} is not inside any volumeMount"):
        return
    check("subPath" not in mount, name, "policy mounted with subPath: ConfigMap updates would never arrive")
    check(mount.get("readOnly") is True, name, "policy mount is not readOnly")
    vol = volumes.get(mount["name"], {})
    cm_name = vol.get("configMap", {}).get("name")
    cm = configmaps.get(cm_name)
    if not check(cm is not None, name, f"volume {mount['name']} does not name a rendered ConfigMap ({cm_name})"):
        return
    key = os.path.relpath(cfg_path, mount["mountPath"])
    if not check(key in cm.get("data", {}), name, f"ConfigMap {cm_name} has no key {key}"):
        return
    text = cm["data"][key]
    check(cm_name == "portcullis-config", name, "policy ConfigMap name changed (hash suffix?): hot reload needs a stable name")
    config = yaml.safe_load(text)

    # The policy itself must be valid for the real binary.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    r = subprocess.run([binary, "check", "--config", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    check(r.returncode == 0, name, f"`portcullis check` rejects the ConfigMap policy:\n{r.stdout}{r.stderr}")

    listen, admin = config["listen"], config["admin_listen"]
    http_port, admin_port = port_named(px, "http"), port_named(px, "admin")
    check(http_port == port_of(listen), name, f"container port http {http_port} != listen {listen}")
    check(admin_port == port_of(admin), name, f"container port admin {admin_port} != admin_listen {admin}")
    check(host_of(admin) == "0.0.0.0", name, "admin_listen must be on the pod IP for kubelet and Prometheus")
    check(http_port != admin_port, name, "listen and admin_listen share a port")
    check({http_port, admin_port} == docker["expose"], name, f"Dockerfile EXPOSE {docker['expose']} != pod ports")
    check(docker["cmd"][-1] == cfg_path or docker["cmd"][-1].startswith(mount["mountPath"]), name,
          f"Dockerfile CMD config {docker['cmd'][-1]} is not where the ConfigMap is mounted")
    check(docker["entrypoint"] == ["portcullis"], name, "Dockerfile ENTRYPOINT")
    check(str(px["securityContext"].get("runAsUser")) == docker["user"].split(":")[0], name,
          "portcullis runAsUser differs from the Dockerfile USER")

    # Probes: readiness on /readyz and liveness on /healthz, both on the admin port.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        g = px.get(probe, {}).get("httpGet", {})
        check(g.get("path") == path and g.get("port") in ("admin", admin_port), name, f"portcullis {probe} {g}")
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/port") == str(admin_port) and ann.get("prometheus.io/path") == "/metrics",
          name, "prometheus.io annotations do not point at admin /metrics")

    # Shutdown contract: kubelet must not SIGKILL before delay + grace; apps outlive Portcullis.
    sd = config.get("shutdown", {})
    budget = seconds(sd.get("delay", "5s")) + seconds(sd.get("grace", "20s"))
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    check(tgps > budget, name, f"terminationGracePeriodSeconds {tgps} <= shutdown delay+grace {budget}")
    check("lifecycle" not in px, name, "portcullis has a preStop: the binary's shutdown.delay already does this")
    for c in apps:
        sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        check(budget <= sleep < tgps, name, f"{c['name']}: preStop sleep {sleep}s must cover {budget}s and fit in {tgps}s")

    # The trust boundary: apps bind loopback only, on the upstream port; nothing else is exposed.
    url = config["upstream"]["url"]
    m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/?", url)
    if check(m, name, f"upstream.url {url} is not http://127.0.0.1:PORT"):
        up = m.group(1)
        texts = []
        for c in apps:
            texts += list(strings_in({k: c.get(k) for k in ("command", "args", "env")}))
            for vm in c.get("volumeMounts", []):
                v = volumes.get(vm["name"], {})
                if "configMap" in v and v["configMap"]["name"] in configmaps:
                    texts += list(configmaps[v["configMap"]["name"]].get("data", {}).values())
        blob = "\n".join(texts)
        check(re.search(rf"127\.0\.0\.1:{up}\b", blob) or
              ("127.0.0.1" in blob and re.search(rf"(PORT|port)\W+{up}\b|\b{up}\b", blob)),
              name, f"no app container binds 127.0.0.1:{up}")
        check("0.0.0.0" not in blob and "[::]" not in blob, name, "an app container binds a wildcard address")
        # nginx `listen 8000;`, php-fpm `listen = 9000`: a bare port is every interface.
        for line in blob.splitlines():
            if re.match(r"\s*listen\b", line):
                check("127.0.0.1:" in line, name, f"app config line binds beyond loopback: {line.strip()}")
    for c in apps:
        check(not c.get("ports"), name, f"{c['name']} declares ports: only portcullis is reachable")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            g = c.get(probe, {}).get("httpGet")
            if g:
                # Kubelet connects to the pod IP, where the app does not listen: probe through
                # Portcullis, on a route that needs no token.
                check(g.get("port") in ("http", http_port), name, f"{c['name']} {probe} bypasses portcullis")
                public = [r["path"] for r in config["routes"] if r.get("auth") == "none"]
                check(any(matches_route(g["path"], p) for p in public), name,
                      f"{c['name']} {probe} path {g['path']} is not an auth: none route")
    check(not spec.get("hostNetwork"), name, "hostNetwork would put the loopback app on the node")
    for c in spec["containers"]:
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
              and sc.get("capabilities", {}).get("drop") == ["ALL"], name, f"{c['name']} securityContext {sc}")
        check(all("hostPort" not in p for p in c.get("ports", [])), name, f"{c['name']} uses hostPort")
    check(spec.get("securityContext", {}).get("runAsNonRoot") is True, name, "pod runAsNonRoot")

    def selects(sel):
        return sel and all(labels.get(k) == v for k, v in sel.items())

    services = by_kind.get("Service", [])
    for s in services:
        check(selects(s["spec"]["selector"]), name, f"Service {s['metadata']['name']} selects other pods")
        for p in s["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            if t in ("admin", admin_port):
                check(s["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "portcullis-metrics",
                      name, f"Service {s['metadata']['name']} exposes the admin port to clients")
            else:
                check(t in ("http", http_port), name, f"Service {s['metadata']['name']} targets {t}, not portcullis http")
    check(any(p.get("targetPort") in ("http", http_port) for s in services for p in s["spec"]["ports"]),
          name, "no Service reaches portcullis http")

    for np in by_kind.get("NetworkPolicy", []):
        check(selects(np["spec"]["podSelector"]["matchLabels"]), name, "NetworkPolicy selects other pods")
        check("Ingress" in np["spec"].get("policyTypes", []), name, "NetworkPolicy does not restrict ingress")
        seen = set()
        for rule in np["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            check(ports, name, "an ingress rule admits every port")
            check(ports <= {http_port, admin_port}, name, f"NetworkPolicy admits ports {ports}")
            if admin_port in ports:
                check(rule.get("from"), name, "the admin port is admitted from everywhere")
            seen |= ports
        check(http_port in seen, name, "NetworkPolicy does not admit the portcullis port")
    check(by_kind.get("NetworkPolicy"), name, "no NetworkPolicy")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        check(selects(pdb["spec"]["selector"]["matchLabels"]), name, "PDB selects other pods")
    check(by_kind.get("PodDisruptionBudget"), name, "no PodDisruptionBudget")

    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"]["matchLabels"]
        targets = [s for s in services if all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
        check(len(targets) == 1, name, f"ServiceMonitor selects {len(targets)} Services")
        for ep in sm["spec"]["endpoints"]:
            check(ep.get("path", "/metrics") == "/metrics", name, "ServiceMonitor path")
            for s in targets:
                p = next((p for p in s["spec"]["ports"] if p.get("name") == ep["port"]), None)
                check(p and p.get("targetPort") in ("admin", admin_port), name, "ServiceMonitor port is not admin")

    if name == "base":
        check(text == example, name, "deploy/base/portcullis.yaml differs from config.example.yaml")


def main():
    repo, binary, *rendered = sys.argv[1:]
    docker = dockerfile_facts(os.path.join(repo, "Dockerfile"))
    example = open(os.path.join(repo, "config.example.yaml"), encoding="utf-8").read()
    for path in rendered:
        name = os.path.basename(path)[: -len(".yaml")]
        docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]
        check_overlay(name, docs, binary, docker, example)
        print(f"invariants: {name}: {len(docs)} resources checked")
    if failures:
        print("\n".join(f"FAIL {f}" for f in failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
