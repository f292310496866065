"""End-to-end scenario driver (run by tests/e2e/run.sh, which prepares the tools).

Starts, on free 127.0.0.1 ports: moto's Cognito server and cognito-local (real token issuers,
provisioned through boto3), Flask and Django under gunicorn, Express and PHP's built-in server
(each app echoes what its framework saw as JSON), one Portcullis in front of each app, and
headless Chromium for the cross-origin browser check. Then runs one table of scenarios against
every app. Browser sign-in (SPEC §8) is in signin.py: a Cognito-shaped OpenID provider (npm
`oidc-provider`) checked on its own, and — unless E2E_LOGIN=0 — a Portcullis with a `login` block in
front of every app, driven through sign-in, refresh and sign-out by Chromium. Prints
`N passed, M failed`. Every process is started in its own process group and
stopped by PID on exit; every wait has a timeout. Tokens are never printed.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import types
import uuid

import boto3

sys.dont_write_bytecode = True  # no __pycache__ in the source tree for the module below
import signin  # noqa: E402

REGION = "us-east-1"
PASSWORD = "E2e-Passw0rd!x"
USERS = {"admin": ["Admins"], "reader": ["Readers"], "nogroup": []}
WAIT_SECONDS = 60
BIG_BODY = 5 * 1024 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))


# --- processes ---------------------------------------------------------------------------------


class Processes:
    """Every server the suite starts, each in its own process group, stopped by PID."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.started = []  # (name, Popen, logpath)

    def start(self, name, argv, cwd=None, env=None):
        log = os.path.join(self.logdir, f"{name}.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.started.append((name, proc, log))
        return proc

    def stop_all(self):
        for _, proc, _ in reversed(self.started):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # the group: gunicorn workers too
                except ProcessLookupError:
                    pass
        for _, proc, _ in reversed(self.started):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    def dump_logs(self):
        for name, _, log in self.started:
            with open(log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            print(f"----- log of {name} (last 4000 chars) -----\n{text[-4000:]}")


_HANDED_OUT = set()


def free_port():
    """A loopback port nothing listens on, never one this run handed out before: the kernel may
    give a just-closed port 0 again, and two servers of one run (say a proxy's `listen` and
    `admin_listen`) must not be given the same port."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_until(what, check, proc=None, timeout=WAIT_SECONDS):
    """Poll `check` until it is truthy; fail after `timeout` s or if `proc` died."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout}s ({last})")


def http_status(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


# --- HTTP client -------------------------------------------------------------------------------


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def send(port, method, target, headers=(), body=None, chunked=False):
    """One request with the exact target and header lines given (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None and not chunked:
            conn.putheader("Content-Length", str(len(body)))
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if body is not None:
            if chunked:
                step = 256 * 1024
                for i in range(0, len(body), step):
                    part = body[i:i + step]
                    conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
                conn.send(b"0\r\n\r\n")
            else:
                conn.send(body)
        resp = conn.getresponse()
        return Reply(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


# --- issuers -----------------------------------------------------------------------------------


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Issuer:
    """A Cognito emulator with a provisioned pool: client, groups, three users and their tokens."""

    def __init__(self, name, endpoint):
        self.name = name
        self.endpoint = endpoint
        self.idp = boto3.client(
            "cognito-idp", endpoint_url=endpoint, region_name=REGION,
            aws_access_key_id="e2e", aws_secret_access_key="e2e",
        )
        self.tokens = {}  # user -> {"access": jwt, "id": jwt}
        self.subs = {}

    def provision(self):
        idp = self.idp
        self.pool = idp.create_user_pool(PoolName=f"portcullis-e2e-{self.name}")["UserPool"]["Id"]
        self.client = idp.create_user_pool_client(
            UserPoolId=self.pool, ClientName="portcullis-e2e",
            ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH",
                               "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        for group in ("Admins", "Readers"):
            idp.create_group(GroupName=group, UserPoolId=self.pool)
        for user, groups in USERS.items():
            idp.admin_create_user(UserPoolId=self.pool, Username=user, TemporaryPassword="Tmp-" + PASSWORD,
                                  MessageAction="SUPPRESS")
            idp.admin_set_user_password(UserPoolId=self.pool, Username=user, Password=PASSWORD, Permanent=True)
            for group in groups:
                idp.admin_add_user_to_group(UserPoolId=self.pool, Username=user, GroupName=group)
        # Both password flows a real app uses: the admin (server-side) one and the public one.
        for user in USERS:
            auth = {"USERNAME": user, "PASSWORD": PASSWORD}
            if user == "reader":
                result = idp.initiate_auth(ClientId=self.client, AuthFlow="USER_PASSWORD_AUTH",
                                           AuthParameters=auth)
            else:
                result = idp.admin_initiate_auth(UserPoolId=self.pool, ClientId=self.client,
                                                 AuthFlow="ADMIN_USER_PASSWORD_AUTH", AuthParameters=auth)
            r = result["AuthenticationResult"]
            self.tokens[user] = {"access": r["AccessToken"], "id": r["IdToken"]}
            self.subs[user] = claims(r["AccessToken"])["sub"]
        # A second sign-in of the same user: its halves must not pair with the first one's.
        r = idp.admin_initiate_auth(UserPoolId=self.pool, ClientId=self.client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                    AuthParameters={"USERNAME": "admin", "PASSWORD": PASSWORD})["AuthenticationResult"]
        self.second_admin_signin = {"access": r["AccessToken"], "id": r["IdToken"]}
        access = claims(self.tokens["admin"]["access"])
        self.iss = access["iss"]  # what the emulator writes into its tokens
        self.jwks_uri = self.jwks_url()
        assert access["token_use"] == "access" and access["client_id"] == self.client, "unexpected access token"
        assert access["cognito:groups"] == ["Admins"], "emulator did not put groups in the token"

    def jwks_url(self):
        # Both emulators serve the pool's keys at <endpoint>/<pool>/.well-known/jwks.json, while
        # moto's `iss` names AWS — hence Portcullis is configured with explicit issuer + jwks_uri.
        return f"{self.endpoint}/{self.pool}/.well-known/jwks.json"


def start_moto(procs, venv_bin):
    port = free_port()
    proc = procs.start("moto", [os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(port)])
    wait_until("moto", lambda: http_status(port, "/moto-api/") < 500, proc)
    return Issuer("moto", f"http://127.0.0.1:{port}")


def start_cognito_local(procs, node_modules, workdir):
    port = free_port()
    home = os.path.join(workdir, "cognito-local")
    os.makedirs(os.path.join(home, ".cognito"))
    with open(os.path.join(home, ".cognito", "config.json"), "w") as f:
        json.dump({"UserPoolDefaults": {"UsernameAttributes": []}}, f)
    proc = procs.start("cognito-local", [os.path.join(node_modules, ".bin", "cognito-local")], cwd=home,
                       env={"PORT": str(port), "HOST": "127.0.0.1"})
    wait_until("cognito-local", lambda: http_status(port, "/health") < 600, proc)
    return Issuer("cognito-local", f"http://127.0.0.1:{port}")


# --- apps --------------------------------------------------------------------------------------


class App:
    def __init__(self, name, port, hits, server_key):
        self.name, self.port, self.hits = name, port, hits
        self.server_key = server_key  # how the framework's server view names a header

    def hit(self, marker):
        """Did any request carrying `marker` in its query reach the app?"""
        return self.hit_with(None, marker)

    def hit_with(self, method, marker):
        with open(self.hits, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
        return any(marker in h["query"] and method in (None, h["method"]) for h in lines)


def cgi_fold(name):
    """A name as the widest CGI-style bridge folds it: upper-case, every byte that is not a letter
    or digit read as `_` (PHP folds `-` `_` `.` and space; lighttpd, Caddy and old Apache the rest)."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def cgi_key(header):
    return "HTTP_" + header.upper().replace("-", "_")


def folded_view_key(app_name, key):
    """The CGI variable (without `HTTP_`) a key of the app's server view stands for: the environ /
    META / $_SERVER keys carry `HTTP_`, Node's req.headers keys are the bare lower-cased names."""
    if app_name != "express":
        if not key.startswith("HTTP_"):
            return None
        key = key[len("HTTP_"):]
    return cgi_fold(key)


def start_apps(procs, venv_bin, node_modules, workdir):
    apps = {}
    for name in ("flask", "django", "express", "php"):
        port = free_port()
        hits = os.path.join(workdir, f"{name}-hits.jsonl")
        open(hits, "w").close()
        env = {"E2E_HITS": hits, "PORT": str(port), "PYTHONPATH": os.path.join(HERE, "apps"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        gunicorn = [os.path.join(venv_bin, "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "60"]
        argv = {
            "flask": gunicorn + ["flask_app:app"],
            "django": gunicorn + ["django_app:application"],
            "express": ["node", os.path.join(HERE, "apps", "express_app.js")],
            "php": ["php", "-S", f"127.0.0.1:{port}", os.path.join(HERE, "apps", "router.php")],
        }[name]
        if name == "express":
            env["NODE_PATH"] = node_modules
        proc = procs.start(name, argv, cwd=os.path.join(HERE, "apps"), env=env)
        key = (lambda h: h.lower()) if name == "express" else cgi_key
        app = App(name, port, hits, key)
        wait_until(name, lambda: http_status(port, "/ready?e2e=startup") == 200, proc)
        apps[name] = app
    return apps


# --- Portcullis --------------------------------------------------------------------------------


def portcullis_yaml(issuers, upstream_port, listen, admin, case_insensitive=False, catch_all=False):
    lines = [
        f"listen: 127.0.0.1:{listen}",
        f"admin_listen: 127.0.0.1:{admin}",
        "upstream:",
        f"  url: http://127.0.0.1:{upstream_port}",
        "issuers:",
    ]
    for i in issuers:
        lines += [
            f"  - name: {i.name}",
            f"    issuer: {json.dumps(i.iss)}",
            f"    jwks_uri: {json.dumps(i.jwks_uri)}",
            f"    client_ids: [{json.dumps(i.client)}]",
            "    token_use: any",
        ]
    lines += [
        "credentials:",
        "  - bearer",
        "  - header: accessToken",       # field pattern: raw JWT in an `accessToken` header
        "  - cookie: amplify",           # Amplify CookieStorage cookies
        "cors_preflight: pass",
        "match:",
        f"  case_insensitive: {'true' if case_insensitive else 'false'}",
        "routes:",
        "  - name: public",
        "    path: /public/**",
        "    auth: none",
        "  - name: ready",
        "    path: /ready",
        "    auth: none",
        "  - name: admin",
        "    path: /admin/**",
        "    require:",
        "      groups_any: [Admins]",
        "      token_use: access",
        "  - name: api",
        "    path: /api/**",
        "    require:",
        "      token_use: access",
        "  - name: profile",
        "    path: /profile/**",
        "    require:",
        "      token_use: id",
    ]
    if catch_all:
        lines += ["  - name: signed-in", "    path: /**"]
    return "\n".join(lines) + "\n"


def start_portcullis(procs, binary, workdir, name, make_yaml, ports=None, env=None):
    listen, admin = ports or (free_port(), free_port())
    yaml = make_yaml(listen, admin)
    path = os.path.join(workdir, f"portcullis-{name}.yaml")
    with open(path, "w") as f:
        f.write(yaml)
    proc = procs.start(f"portcullis-{name}", [binary, "run", "--config", path], env=env)
    # Ready means every issuer's JWKS was fetched from the emulator.
    wait_until(f"portcullis-{name}", lambda: http_status(admin, "/readyz") == 200, proc)
    return listen, admin


def metric(admin, name, **labels):
    """Sum of the samples of `name` whose labels include `labels` (Prometheus text format)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- scenarios ---------------------------------------------------------------------------------


class Ctx:
    """What one scenario sees: the app, the proxy in front of it, one issuer's users."""

    def __init__(self, app, proxy, issuer, issuers):
        self.app, self.proxy, self.issuer, self.issuers = app, proxy, issuer, issuers

    def marker(self):
        return "e2e-" + uuid.uuid4().hex

    def get(self, path, headers=(), method="GET", body=None, chunked=False):
        """Send through Portcullis with a fresh marker in the query; returns (reply, marker)."""
        m = self.marker()
        sep = "&" if "?" in path else "?"
        return send(self.proxy, method, f"{path}{sep}e2e={m}", headers, body, chunked), m

    def bearer(self, user, kind="access"):
        return [("Authorization", f"Bearer {self.issuer.tokens[user][kind]}")]


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def allowed(ctx, reply, user, handler="echo", path=None):
    """200, and the framework saw exactly the token's identity, in every view it has."""
    expect(reply.status == 200, f"expected 200, got {reply.status} {reply.body[:200]!r}")
    seen = reply.json()
    sub, groups = ctx.issuer.subs[user], ",".join(USERS[user])
    expect(seen["sub"] == sub, f"framework saw sub {seen['sub']!r}, token sub {sub!r}")
    expect(seen["groups"] == groups, f"framework saw groups {seen['groups']!r}, expected {groups!r}")
    expect(seen["handler"] == handler, f"handler {seen['handler']!r}, expected {handler!r}")
    if path is not None:
        expect(seen["path"] == path, f"app saw path {seen['path']!r}, expected {path!r}")
    identity_views(ctx, seen, sub, groups)
    return seen


def identity_views(ctx, seen, sub, groups):
    """Exactly one X-User-Sub / X-User-Groups in the header list and in the server view
    (WSGI environ, Django META, PHP $_SERVER, Node's req.headers), with the trusted values."""
    for header, want in (("X-User-Sub", sub), ("X-User-Groups", groups)):
        # Every spelling any bridge would fold onto this header counts (`X-User.Sub`, `x-user~sub`…).
        lines = [v for k, v in seen["headers"] if cgi_fold(k) == cgi_fold(header)]
        expect(lines == ([] if want is None else [want]), f"{header} lines in framework view: {lines!r}")
        key = ctx.app.server_key(header)
        server = {k: v for k, v in seen["server"].items() if folded_view_key(ctx.app.name, k) == cgi_fold(header)}
        expect(server == ({} if want is None else {key: want}), f"{header} in server view: {server!r}")


def refused(ctx, reply, marker, status):
    expect(reply.status == status, f"expected {status}, got {reply.status} {reply.body[:200]!r}")
    expect(not ctx.app.hit(marker), "the app received a request Portcullis refused")
    body = reply.body.decode("utf-8", "replace")
    for tokens in [*ctx.issuer.tokens.values(), ctx.issuer.second_admin_signin]:
        expect(tokens["access"] not in body and tokens["id"] not in body, "token echoed in refusal")


# Scenarios that depend on who issued the token run once per issuer.


def admin_on_admin_route(ctx):
    reply, _ = ctx.get("/admin/panel", ctx.bearer("admin"))
    allowed(ctx, reply, "admin", handler="admin", path="/admin/panel")


def reader_on_admin_route(ctx):
    reply, m = ctx.get("/admin/panel", ctx.bearer("reader"))
    refused(ctx, reply, m, 403)


def reader_and_nogroup_on_api(ctx):
    reply, _ = ctx.get("/api/whoami", ctx.bearer("reader"))
    allowed(ctx, reply, "reader")
    reply, _ = ctx.get("/api/whoami", ctx.bearer("nogroup"))
    allowed(ctx, reply, "nogroup")
    reply, m = ctx.get("/admin/panel", ctx.bearer("nogroup"))
    refused(ctx, reply, m, 403)


def id_token_on_access_only_route(ctx):
    reply, m = ctx.get("/api/whoami", ctx.bearer("admin", "id"))
    refused(ctx, reply, m, 401)
    # Control: the same id token is valid where the route wants id tokens.
    reply, _ = ctx.get("/profile/me", ctx.bearer("admin", "id"))
    allowed(ctx, reply, "admin")


def access_token_header(ctx):
    reply, _ = ctx.get("/api/whoami", [("accessToken", ctx.issuer.tokens["reader"]["access"])])
    seen = allowed(ctx, reply, "reader")
    names = [k.lower() for k, _ in seen["headers"]]
    expect("accesstoken" not in names, "the accessToken credential header reached the app")
    reply, m = ctx.get("/api/whoami", [("accessToken", ctx.issuer.tokens["reader"]["id"])])
    refused(ctx, reply, m, 401)


def amplify_cookies(ctx, user, client=None, kinds=("accessToken",)):
    client = client or ctx.issuer.client
    prefix = f"CognitoIdentityServiceProvider.{client}"
    parts = ["theme=dark", f"{prefix}.LastAuthUser={user}"]
    parts += [f"{prefix}.{user}.{k}={ctx.issuer.tokens[user]['access' if k == 'accessToken' else 'id']}"
              for k in kinds]
    parts.append("session=app-session-1")
    return [("Cookie", "; ".join(parts))]


def amplify_cookie(ctx):
    reply, _ = ctx.get("/admin/panel", amplify_cookies(ctx, "admin"))
    seen = allowed(ctx, reply, "admin", handler="admin")
    # The app's own cookies pass; every credential cookie is cut.
    expect(seen["cookies"].get("theme") == "dark" and seen["cookies"].get("session") == "app-session-1",
           f"app cookies lost: {seen['cookies']!r}")
    expect("CognitoIdentityServiceProvider" not in (seen["cookie_header"] or ""),
           "Amplify credential cookies reached the app")
    expect(not any(k.startswith("CognitoIdentityServiceProvider") for k in seen["cookies"]),
           "Amplify credential cookies reached the app's cookie view")
    reply, m = ctx.get("/admin/panel", amplify_cookies(ctx, "reader"))
    refused(ctx, reply, m, 403)


def amplify_cookie_pair(ctx):
    # What Amplify really stores: both tokens of the sign-in, which Portcullis verifies as a pair.
    reply, _ = ctx.get("/admin/panel", amplify_cookies(ctx, "admin", kinds=("idToken", "accessToken")))
    seen = allowed(ctx, reply, "admin", handler="admin")
    expect("CognitoIdentityServiceProvider" not in (seen["cookie_header"] or ""),
           "Amplify credential cookies reached the app")
    expect(seen["cookies"].get("theme") == "dark", f"app cookies lost: {seen['cookies']!r}")


def id_and_access_pair(ctx):
    # The Flask-tutorial pattern: id token in Authorization, access token in `accessToken`.
    def pair(id_token, access_token):
        return [("Authorization", f"Bearer {id_token}"), ("accessToken", access_token)]

    t = ctx.issuer.tokens
    reply, _ = ctx.get("/admin/panel", pair(t["admin"]["id"], t["admin"]["access"]))
    seen = allowed(ctx, reply, "admin", handler="admin")
    expect("accesstoken" not in [k.lower() for k, _ in seen["headers"]], "accessToken header reached the app")
    reply, m = ctx.get("/admin/panel", pair(t["reader"]["id"], t["reader"]["access"]))
    refused(ctx, reply, m, 403)
    # Halves of two different users: refused, never merged into one identity.
    reply, m = ctx.get("/api/whoami", pair(t["reader"]["id"], t["admin"]["access"]))
    refused(ctx, reply, m, 401)
    # Halves of two sign-ins of the same user: refused when the issuer stamps origin_jti (moto).
    second = ctx.issuer.second_admin_signin
    if "origin_jti" in claims(second["access"]):
        reply, m = ctx.get("/api/whoami", pair(t["admin"]["id"], second["access"]))
        refused(ctx, reply, m, 401)


def amplify_cookie_unconfigured_client(ctx):
    # A valid token in the cookie of an app client Portcullis is not configured for: not a
    # credential at all, so the route sees no token.
    reply, m = ctx.get("/api/whoami", amplify_cookies(ctx, "admin", client="unconfiguredclient0000000"))
    refused(ctx, reply, m, 401)


# Scenarios that do not depend on the issuer run once per app (with moto's tokens).


def no_token(ctx):
    reply, m = ctx.get("/api/whoami")
    refused(ctx, reply, m, 401)
    challenge = dict((k.lower(), v) for k, v in reply.headers).get("www-authenticate", "")
    expect(challenge.startswith("Bearer"), f"WWW-Authenticate: {challenge!r}")


# SECURITY HDR-04, HDR-09, RULE-08 (issue 12): every spelling a framework or bridge folds onto
# X-User-Sub (`-`/`_`/`.`/`~`, case), and `Remote.User`, which PHP makes HTTP_REMOTE_USER.
SPOOFS = [("X-User-Sub", "spoofed-sub"), ("X-User_Sub", "spoofed-underscore"), ("X_User_Sub", "spoofed-both"),
          ("X-User.Sub", "spoofed-dot"), ("X.User.Sub", "spoofed-dots"), ("X-User~Sub", "spoofed-tilde"),
          ("Remote.User", "spoofed-remote-user"), ("x-user-groups", "Admins,spoofed-group"),
          # gunicorn takes SCRIPT_NAME into the environ from a loopback peer (its forwarder_headers):
          # had it reached the app, the path would no longer start with it and gunicorn would 400.
          ("SCRIPT_NAME", "/spoofed-script")]
# The spellings Portcullis must drop that the apps themselves would read (the control below).
FOLDING_SPOOFS = [("X-User.Sub", "X_USER_SUB"), ("X.User.Sub", "X_USER_SUB"), ("X-User~Sub", "X_USER_SUB"),
                  ("Remote.User", "REMOTE_USER")]


def no_spoof_values(ctx, seen):
    blob = json.dumps([seen["headers"], seen["server"], seen["env"]])
    expect("spoofed" not in blob, f"a spoofed identity header reached the app: {blob[:400]}")
    for key in seen["server"]:
        expect(folded_view_key(ctx.app.name, key) != "REMOTE_USER", f"{key} reached the app's server view")


def spoofed_identity_headers(ctx):
    # Spoofs both before and after the credential: no position lets one through.
    reply, _ = ctx.get("/api/whoami", SPOOFS + ctx.bearer("reader") + SPOOFS[::-1])
    seen = allowed(ctx, reply, "reader")
    no_spoof_values(ctx, seen)
    # On a public route the app gets no identity at all, spoofed or not.
    reply, _ = ctx.get("/public/info", SPOOFS)
    expect(reply.status == 200, f"public route: {reply.status}")
    seen = reply.json()
    no_spoof_values(ctx, seen)
    identity_views(ctx, seen, None, None)
    # Without a token, spoofing gets nowhere near the app.
    reply, m = ctx.get("/admin/panel", SPOOFS)
    refused(ctx, reply, m, 401)


def header_spellings_fold_without_portcullis(ctx):
    """Control for spoofed_identity_headers: sent straight to the app, each spelling Portcullis
    drops does land in the app's view under a key that folds onto the variable it spoofs (PHP:
    `HTTP_X_USER_SUB` itself; gunicorn: `HTTP_X_USER.SUB`; Express: `x-user.sub`), so the check
    through Portcullis is not vacuous."""
    for header, variable in FOLDING_SPOOFS:
        value = f"direct-{uuid.uuid4().hex[:8]}"
        reply = send(ctx.app.port, "GET", "/public/info?e2e=control", [(header, value)])
        expect(reply.status == 200, f"{header} straight to {ctx.app.name}: {reply.status}")
        seen = reply.json()
        keys = [k for k, v in seen["server"].items() if v == value]
        expect(keys and all(folded_view_key(ctx.app.name, k) == variable for k in keys),
               f"{header} straight to {ctx.app.name}: expected a key folding to {variable}, saw {keys!r}")
        if ctx.app.name == "php":
            # PHP folds `.` itself: the app reads the spoofed value as the real variable's.
            expect(seen["server"].get(f"HTTP_{variable}") == value or "~" in header,
                   f"{header}: PHP's $_SERVER[HTTP_{variable}] is {seen['server'].get(f'HTTP_{variable}')!r}")
    if ctx.app.name in ("flask", "django"):
        # gunicorn trusts SCRIPT_NAME from a loopback peer and re-routes on it: /public/info
        # becomes PATH_INFO /info under SCRIPT_NAME /public. Portcullis drops the header (`_`).
        reply = send(ctx.app.port, "GET", "/public/info?e2e=control", [("SCRIPT_NAME", "/public")])
        env = reply.json()["env"]
        expect(env.get("SCRIPT_NAME") == "/public" and env.get("PATH_INFO") == "/info",
               f"SCRIPT_NAME straight to {ctx.app.name}: environ {env!r}")


def big_body_streams_intact(ctx):
    body = os.urandom(BIG_BODY)
    want = hashlib.sha256(body).hexdigest()
    # Django's WSGI handler reads a body only up to CONTENT_LENGTH, so it cannot take a chunked
    # request at all (with or without Portcullis); the others get both framings.
    for chunked in (False,) if ctx.app.name == "django" else (False, True):
        reply, _ = ctx.get("/api/upload", ctx.bearer("reader") + [("Content-Type", "application/octet-stream")],
                           method="POST", body=body, chunked=chunked)
        seen = allowed(ctx, reply, "reader")
        expect(seen["method"] == "POST", seen["method"])
        expect(seen["body_len"] == BIG_BODY, f"chunked={chunked}: app got {seen['body_len']} bytes")
        expect(seen["body_sha256"] == want, f"chunked={chunked}: body checksum differs")


PATH_TRICKS = ["/public/../admin/panel", "//admin/panel", "/public/..//admin/panel", "/public/./../admin/panel"]
ENCODED_TRICKS = ["/public/%2e%2e/admin/panel", "/public/%2E%2E/admin/panel", "/public/.%2e/admin/panel",
                  "/public/..%2fadmin/panel", "/public%2f..%2fadmin/panel", "/public/%252e%252e/admin/panel"]


def path_tricks(ctx):
    for trick in PATH_TRICKS:
        reply, m = ctx.get(trick)
        refused(ctx, reply, m, 401)
        reply, m = ctx.get(trick, ctx.bearer("reader"))
        refused(ctx, reply, m, 403)
        # Authorised: the app receives the normalised path that was authorised, nothing else.
        reply, _ = ctx.get(trick, ctx.bearer("admin"))
        allowed(ctx, reply, "admin", handler="admin", path="/admin/panel")
    for trick in ENCODED_TRICKS:
        reply, m = ctx.get(trick, ctx.bearer("reader"))
        if reply.status == 200:
            # Only acceptable if the app saw a path that is not the admin handler's.
            seen = reply.json()
            expect(seen["handler"] != "admin", f"{trick} reached the admin handler as a reader")
        else:
            expect(reply.status in (400, 401, 403), f"{trick}: {reply.status}")
            expect(not ctx.app.hit(m), f"{trick}: refused but the app received it")


def case_variants(ctx):
    # Express routes case-insensitively; its Portcullis has match.case_insensitive: true, so
    # /ADMIN is the admin route. The other apps are case-sensitive and /ADMIN matches no route.
    for path in ("/ADMIN/panel", "/Admin/panel"):
        reply, m = ctx.get(path, ctx.bearer("reader"))
        refused(ctx, reply, m, 403)
        if ctx.app.name == "express":
            reply, _ = ctx.get(path, ctx.bearer("admin"))
            allowed(ctx, reply, "admin", handler="admin")


PER_ISSUER = [admin_on_admin_route, reader_on_admin_route, reader_and_nogroup_on_api,
              id_token_on_access_only_route, access_token_header, id_and_access_pair, amplify_cookie,
              amplify_cookie_pair, amplify_cookie_unconfigured_client]
PER_APP = [no_token, spoofed_identity_headers, header_spellings_fold_without_portcullis, big_body_streams_intact,
           path_tricks, case_variants]


# --- browser -----------------------------------------------------------------------------------


def browser_check(procs, node_modules, workdir, artifacts, api_port, admin_port, issuer, app):
    page_dir = os.path.join(workdir, "page")
    os.makedirs(page_dir)
    with open(os.path.join(HERE, "page.html"), "rb") as src, open(os.path.join(page_dir, "index.html"), "wb") as dst:
        dst.write(src.read())
    page_port = free_port()
    proc = procs.start("page-server", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(page_port)],
                       cwd=page_dir)
    wait_until("page server", lambda: http_status(page_port, "/index.html") == 200, proc)
    page = f"http://127.0.0.1:{page_port}/index.html?api=http://localhost:{api_port}"
    out = os.path.join(workdir, "browser.json")
    env = {"NODE_PATH": node_modules, "E2E_TOKEN": issuer.tokens["admin"]["access"], "E2E_PAGE": page,
           "E2E_OUT": out, "E2E_ARTIFACTS": os.path.abspath(artifacts), "E2E_PROFILE": os.path.join(workdir, "chrome")}
    denied_before = metric(admin_port, "portcullis_requests_total", route="api", reason="missing_token")
    browser = procs.start("browser", ["node", os.path.join(HERE, "browser.js")], env=env)
    try:
        code = browser.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError("browser run did not finish in 120s")
    expect(code == 0, f"browser driver exited {code}")
    with open(out) as f:
        result = json.load(f)
    with_token, without = result["with_token"], result["without_token"]
    # With a token: the browser's CORS preflight went through Portcullis unauthenticated
    # (cors_preflight: pass) to the app, which answered it; then the real request was authorised.
    preflights = [n for n in with_token["network"] if n["type"] == "Preflight"]
    expect([n["status"] for n in preflights] == [200], f"preflight as the browser saw it: {with_token['network']}")
    expect(app.hit_with("OPTIONS", "browser-token"), "the preflight did not reach the app")
    expect(with_token["status"] == 200, f"authorised fetch: {with_token['status']}")
    seen = with_token["body"]
    expect(seen["sub"] == issuer.subs["admin"] and seen["groups"] == "Admins", f"page received {seen}")
    expect(issuer.subs["admin"] in with_token["page_text"] and "Admins" in with_token["page_text"],
           "the page does not show the identity")
    # Without a token: Portcullis refused with 401 and the app received nothing. Refusals carry
    # Access-Control-Allow-Origin for the request's origin, so the page can read the 401 (and, in a
    # real app, refresh its token) instead of seeing a network error.
    denied = metric(admin_port, "portcullis_requests_total", route="api", reason="missing_token") - denied_before
    expect(denied == 1, f"Portcullis counted {denied} missing_token refusals for the browser's request")
    expect(not app.hit("browser-no-token"), "the app received the browser's unauthenticated request")
    expect(without["status"] == 401, f"page's fetch without a token saw {without.get('status')}: {without}")
    expect("HTTP 401" in without["page_text"], f"page without token shows {without['page_text']!r}")


# --- main --------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--portcullis", required=True)
    ap.add_argument("--node-modules", required=True)
    ap.add_argument("--artifacts", required=True)
    args = ap.parse_args()
    binary = os.path.abspath(args.portcullis)
    venv_bin = os.path.dirname(sys.executable)
    # SIGTERM (from run.sh's timeout or trap) unwinds through `finally`, which stops every server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="portcullis-e2e-")
    procs = Processes(workdir)
    passed, failed = [], []

    def run(name, fn, *a):
        try:
            fn(*a)
            passed.append(name)
            print(f"ok    {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
            failed.append(name)
            print(f"FAIL  {name}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()

    started = time.monotonic()
    try:
        issuers = [start_moto(procs, venv_bin), start_cognito_local(procs, args.node_modules, workdir)]
        for i in issuers:
            i.provision()
            print(f"issuer {i.name}: iss={i.iss} jwks={i.jwks_uri}", flush=True)
        apps = start_apps(procs, venv_bin, args.node_modules, workdir)
        proxies, admins = {}, {}
        for name, app in apps.items():
            yaml = lambda listen, admin, app=app, name=name: portcullis_yaml(  # noqa: E731
                issuers, app.port, listen, admin, case_insensitive=(name == "express"))
            proxies[name], admins[name] = start_portcullis(procs, binary, workdir, name, yaml)
        print(f"started {len(procs.started)} servers in {time.monotonic() - started:.1f}s", flush=True)

        for name, app in apps.items():
            for issuer in issuers:
                ctx = Ctx(app, proxies[name], issuer, issuers)
                for fn in PER_ISSUER:
                    run(f"{name}/{issuer.name}/{fn.__name__}", fn, ctx)
            ctx = Ctx(app, proxies[name], issuers[0], issuers)
            for fn in PER_APP:
                run(f"{name}/{fn.__name__}", fn, ctx)

        # Control for case_variants: the same Express app behind a Portcullis *without*
        # match.case_insensitive and with a signed-in catch-all lets a reader into Express's admin
        # handler via /ADMIN — the bypass the setting exists to close.
        express = apps["express"]
        yaml = lambda listen, admin: portcullis_yaml(  # noqa: E731
            issuers, express.port, listen, admin, case_insensitive=False, catch_all=True)
        control, _ = start_portcullis(procs, binary, workdir, "express-case-sensitive", yaml)

        def case_control():
            ctx = Ctx(express, control, issuers[0], issuers)
            reply, _ = ctx.get("/ADMIN/panel", ctx.bearer("reader"))
            allowed(ctx, reply, "reader", handler="admin")

        run("express/control_without_case_insensitive_reader_reaches_admin", case_control)
        run("browser/cross_origin_bearer_and_401", browser_check, procs, args.node_modules, workdir,
            args.artifacts, proxies["flask"], admins["flask"], issuers[0], apps["flask"])

        # Browser sign-in (SPEC §8): the provider's own checks always run; the browser scenarios
        # through Portcullis's `login` block run unless E2E_LOGIN=0.
        helpers = types.SimpleNamespace(free_port=free_port, wait_until=wait_until,
                                        start_portcullis=start_portcullis, metric=metric)
        signin.run_signin(run, helpers, procs, args.node_modules, args.artifacts, binary, workdir, apps,
                          browser_enabled=os.environ.get("E2E_LOGIN", "1") != "0")
    except Exception as e:  # noqa: BLE001
        failed.append("setup")
        print(f"FAIL  setup: {e}", flush=True)
        traceback.print_exc()
    finally:
        if failed:
            procs.dump_logs()
        procs.stop_all()
        if failed:
            print(f"e2e: server logs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"e2e: {len(passed)} passed, {len(failed)} failed ({time.monotonic() - started:.1f}s)")
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
