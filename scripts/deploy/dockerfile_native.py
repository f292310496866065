#!/usr/bin/env python3
"""Execute the top-level Dockerfile natively, without a Docker engine.

The build stage runs in a scratch directory that stands in for the image's filesystem: WORKDIR,
ARG, ENV and COPY (from the context, honouring .dockerignore) are followed exactly, and each RUN
command runs verbatim with `/bin/sh -c` in the re-rooted working directory. The one exception is
system set-up that would damage the host if run verbatim (`rm -rf /var/lib/apt/lists/*`,
`apt-get update`): `apt-get install PKG=VER` is satisfied idempotently instead (installed only when
that version is missing). The runtime stage is assembled as a root filesystem that holds only what
distroless/static provides (passwd/group with nonroot 65532, CA roots, /tmp) plus what the
Dockerfile copies into it, so running the entrypoint there under `chroot` proves the binary needs
nothing else.

Usage: dockerfile_native.py DOCKERFILE CONTEXT SCRATCH [--build-arg K=V ...] [--summary FILE]
Writes a JSON summary (rootfs path, user, entrypoint, cmd, exposed ports) to FILE, or to stdout
without --summary. Every step's own output (RUN commands, apt-get, dpkg) goes to stderr, never to
stdout, so the summary can be parsed whatever the steps print: on a machine that lacks a package
the first run installs it, and dpkg's progress lines must not land in front of the JSON.
An instruction this script does not understand is an error, so the Dockerfile cannot grow a step
that CI silently skips.
"""

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

DISTROLESS_STATIC = "gcr.io/distroless/static-debian12"
DISTROLESS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# Child processes write to our stderr: stdout carries only the summary (see the docstring).
STEP_STDOUT = sys.stderr.fileno()


def fail(msg):
    sys.stderr.write(f"dockerfile_native: {msg}\n")
    sys.exit(1)


def instructions(text):
    """(keyword, argument) pairs: comments dropped, backslash continuations joined."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker too
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    if cur:
        fail("dangling line continuation")
    return out


def expand(value, env):
    """Dockerfile variable substitution: $VAR, ${VAR}, ${VAR:-default}."""

    def sub(m):
        name = m.group(1) or m.group(3)
        default = m.group(2)
        val = env.get(name, "")
        if default is not None and not val:
            return default
        return val

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", sub, value)


def ignore_patterns(context):
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return []
    pats = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line)
    return pats


def ignored(rel, pats):
    """Last matching pattern wins; `!` re-includes. Matches the path or any parent directory."""
    result = False
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in pats:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        hit = any(fnmatch.fnmatchcase(x, p) for x in prefixes)
        if p.endswith("/**"):
            hit = hit or rel.startswith(p[:-3] + "/")
        if hit:
            result = not neg
    return result


def copy_from_context(context, pats, srcs, dest):
    for src in srcs:
        full = os.path.join(context, src)
        if not os.path.exists(full):
            fail(f"COPY {src}: not in the build context")
        if os.path.isdir(full):
            target = dest if dest.endswith("/") or len(srcs) > 1 or os.path.isdir(dest) else dest
            n = 0
            for root, _dirs, files in os.walk(full):
                for f in files:
                    rel = os.path.relpath(os.path.join(root, f), context)
                    if ignored(rel, pats):
                        continue
                    out = os.path.join(target, os.path.relpath(os.path.join(root, f), full))
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    shutil.copy2(os.path.join(root, f), out)
                    n += 1
            if n == 0:
                fail(f"COPY {src}: everything in it is excluded by .dockerignore")
        else:
            if ignored(src, pats):
                fail(f"COPY {src}: excluded by .dockerignore")
            out = os.path.join(dest, os.path.basename(src)) if dest.endswith("/") else dest
            os.makedirs(os.path.dirname(out), exist_ok=True)
            shutil.copy2(full, out)


def apt_install(args):
    """`apt-get install [-y] [--no-install-recommends] pkg=ver ...`, idempotently on the host."""
    pkgs = [a for a in args if not a.startswith("-")]
    missing = []
    for spec in pkgs:
        name, _, ver = spec.partition("=")
        q = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", name], capture_output=True, text=True)
        have = q.stdout.split()
        if q.returncode == 0 and "installed" in have and (not ver or have[-1] == ver):
            continue
        missing.append(spec)
    if not missing:
        return
    if os.geteuid() != 0:
        fail(f"needs apt packages {missing} (run as root, or install them)")
    sys.stderr.write(f"dockerfile_native: installing {' '.join(missing)} with apt-get\n")
    # Other jobs on the machine may be installing too: wait for dpkg's lock instead of failing.
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*apt, "update", "-qq"], check=True, stdout=STEP_STDOUT, env=env)
    subprocess.run(
        [*apt, "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, stdout=STEP_STDOUT, env=env
    )


def run_step(cmd, cwd, env):
    for part in re.split(r"\s*&&\s*", cmd.strip()):
        words = shlex.split(part)
        if words[:2] == ["apt-get", "update"]:
            continue  # done by apt_install only when something is missing
        if words[:2] == ["apt-get", "install"]:
            apt_install(words[2:])
            continue
        if words[:2] == ["rm", "-rf"] and all(w.startswith("/var/lib/apt/lists") for w in words[2:]):
            continue  # image-size hygiene; never on the host
        if re.search(r"(^|[\s\"'=])/", part):
            # An absolute path would escape the scratch root and touch the host: keep RUN relative.
            fail(f"RUN uses an absolute path, cannot run natively: {part}")
        sys.stderr.write(f"+ (in {cwd}) {part}\n")
        r = subprocess.run(["/bin/sh", "-c", part], cwd=cwd, env=env, stdout=STEP_STDOUT)
        if r.returncode != 0:
            fail(f"RUN step failed ({r.returncode}): {part}")


def main():
    if len(sys.argv) < 4:
        fail(__doc__)
    dockerfile, context, scratch = sys.argv[1:4]
    build_args = {}
    summary_file = None
    rest = sys.argv[4:]
    while rest:
        if rest[0] not in ("--build-arg", "--summary") or len(rest) < 2:
            fail(f"unexpected argument {rest[0]}")
        if rest[0] == "--summary":
            summary_file = rest[1]
        else:
            k, _, v = rest[1].partition("=")
            build_args[k] = v
        rest = rest[2:]

    pats = ignore_patterns(context)
    global_args = {}
    stages = {}
    stage = None
    for word, arg in instructions(open(dockerfile, encoding="utf-8").read()):
        if word == "ARG":
            k, _, default = arg.partition("=")
            target = stage["env"] if stage else global_args
            target[k] = build_args.get(k, global_args.get(k, default))
            continue
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arg, re.IGNORECASE)
            if not m:
                fail(f"FROM {arg}: unsupported form")
            image = expand(m.group(1), global_args)
            name = m.group(2) or str(len(stages))
            root = os.path.join(scratch, name)
            os.makedirs(root, exist_ok=True)
            stage = {"image": image, "root": root, "workdir": "/", "env": {}, "user": "root"}
            stages[name] = stage
            if image.startswith(DISTROLESS_STATIC):
                emulate_distroless_static(root)
            elif not re.match(r"(docker\.io/library/)?rust:", image):
                fail(f"FROM {image}: only rust:* build stages and {DISTROLESS_STATIC} are emulated")
            continue
        if stage is None:
            fail(f"{word} before FROM")
        env = {**global_args, **stage["env"]}
        if word == "WORKDIR":
            stage["workdir"] = os.path.join(stage["workdir"], expand(arg, env))
            os.makedirs(stage["root"] + stage["workdir"], exist_ok=True)
        elif word == "ENV":
            k, _, v = arg.partition("=")
            stage["env"][k] = expand(v, env)
        elif word == "COPY":
            words = shlex.split(arg)
            src_stage = None
            while words and words[0].startswith("--"):
                flag = words.pop(0)
                if flag.startswith("--from="):
                    src_stage = stages.get(flag[len("--from=") :]) or fail(f"COPY {flag}: unknown stage")
                else:
                    fail(f"COPY {flag}: unsupported flag")
            *srcs, dest = [expand(w, env) for w in words]
            dest_abs = stage["root"] + os.path.join(stage["workdir"], dest) + ("/" if dest.endswith("/") else "")
            if src_stage:
                for s in srcs:
                    full = src_stage["root"] + s
                    if not os.path.isfile(full):
                        fail(f"COPY --from: {s} was not produced by the build stage")
                    out = os.path.join(dest_abs, os.path.basename(s)) if dest_abs.endswith("/") else dest_abs
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    shutil.copy2(full, out)
            else:
                copy_from_context(context, pats, srcs, dest_abs)
        elif word == "RUN":
            if stage["image"].startswith(DISTROLESS_STATIC):
                fail("RUN in a distroless stage: there is no shell there")
            run_env = dict(os.environ)
            run_env.update({k: v for k, v in env.items()})
            run_step(arg, stage["root"] + stage["workdir"], run_env)
        elif word == "USER":
            stage["user"] = arg
        elif word == "EXPOSE":
            stage["expose"] = arg.split()
        elif word in ("ENTRYPOINT", "CMD"):
            stage[word.lower()] = json.loads(arg)  # exec form only: no shell in the image
        else:
            fail(f"unsupported instruction {word}")

    final = stage
    summary = json.dumps(
        {
            "rootfs": final["root"],
            "user": final["user"],
            "entrypoint": final.get("entrypoint"),
            "cmd": final.get("cmd"),
            "expose": final.get("expose", []),
            "path": DISTROLESS_PATH,
        }
    )
    if summary_file:
        with open(summary_file, "w", encoding="utf-8") as f:
            f.write(summary + "\n")
    else:
        print(summary)


def emulate_distroless_static(root):
    """What gcr.io/distroless/static-debian12:nonroot holds that a program could depend on."""
    os.makedirs(os.path.join(root, "etc/ssl/certs"), exist_ok=True)
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    with open(os.path.join(root, "etc/passwd"), "w", encoding="utf-8") as f:
        f.write("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    with open(os.path.join(root, "etc/group"), "w", encoding="utf-8") as f:
        f.write("root:x:0:\nnonroot:x:65532:\n")
    ca = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.exists(ca):
        shutil.copy2(ca, os.path.join(root, "etc/ssl/certs/ca-certificates.crt"))


if __name__ == "__main__":
    main()
