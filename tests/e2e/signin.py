"""Browser sign-in (SPEC §8) in the e2e suite: the Cognito-shaped OpenID provider, its own checks,
and the real-browser scenario through Portcullis in front of every app.

Imported by driver.py. `start_op` runs tests/e2e/cognito_op.mjs (npm `oidc-provider` configured
with Cognito's paths and token shapes). `OP_CHECKS` prove that provider is what Portcullis will
meet in production — discovery, PKCE, the code exchange, the tokens' Cognito claims and RS256
signatures, refresh-token rotation, revocation and Cognito's `/logout` — with plain HTTP, so they
run whatever the binary under test supports. `run_browser` runs tests/e2e/login.js: headless
Chromium signs in through Portcullis's `login` block, browses across an access-token expiry, is
refused as a reader, signs out, and sees `fetch()` get 401s. Tokens and cookies are never printed.
"""

import base64
import hashlib
import http.client
import json
import os
import secrets
import string
import subprocess
import time
import urllib.parse
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
POOL = "us-east-1_PcE2eLgn1"
# Portcullis refreshes when the access token expires within 60 s (SPEC §8): with 65 s tokens a
# refresh is due 5 s after each one is issued, and a token really expires 65 s after sign-in.
ACCESS_TTL = 65
REFRESH_MARGIN = 60
SESSION_COOKIE = "__Host-portcullis"
LOGIN_APPS = ("flask", "django", "express", "php")
PUBLIC_CLIENT_APP = "php"  # one app signs in with a public app client (no secret), like an SPA pool client
STEP_NAMES = [
    "navigation_is_sent_to_sign_in",
    "sign_in_lands_on_requested_page",
    "session_cookie_attributes",
    "admin_page_allowed_for_admin",
    "refresh_burst_is_single_flight",
    "browsing_across_access_token_expiry_without_redirect",
    "sign_out_lands_on_after_logout_url",
    "fetch_without_session_gets_401_never_redirect",
    "next_navigation_asks_for_sign_in_again",
    "old_session_cookie_dead_after_sign_out",
    "portcullis_log_holds_no_credential",
    "reader_signs_in",
    "reader_refused_on_admin_page",
]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cognito_client_id():
    # Cognito app client ids are 26 lower-case letters and digits.
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(26))


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


# --- the provider ----------------------------------------------------------------------------


class OP:
    """The running provider: where it is, its app clients and users.

    Like Cognito, the issuer (cognito-idp.<region>.amazonaws.com/<pool>) and the domain that serves
    the OAuth endpoints and the sign-in page (<prefix>.auth.<region>.amazoncognito.com) are two
    hosts: here 127.0.0.1 and localhost, one server listening on 127.0.0.1. So the browser's
    return from the sign-in page to Portcullis is a cross-site navigation, as in production, and
    the provider's cookies never reach Portcullis or the app.
    """

    def __init__(self, port, clients, users):
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}/{POOL}"
        self.jwks_uri = f"{self.issuer}/.well-known/jwks.json"
        self.origin = f"http://localhost:{port}"  # the "Cognito domain"
        self.endpoints = {
            "authorize": f"{self.origin}/oauth2/authorize",
            "token": f"{self.origin}/oauth2/token",
            "revoke": f"{self.origin}/oauth2/revoke",
            "logout": f"{self.origin}/logout",
        }
        self.clients = clients  # name -> {client_id, client_secret|None, redirect_uris, post_logout_redirect_uris}
        self.users = users  # name -> {sub, password, groups, email}

    def stats(self):
        reply = request(self.port, "GET", "/_e2e/stats")
        expect(reply.status == 200, f"stats: {reply.status}")
        return json.loads(reply.body)


def make_users():
    return {
        name: {"sub": str(uuid.uuid4()), "password": "Pw-" + secrets.token_urlsafe(12),
               "groups": groups, "email": f"{name}@example.com"}
        for name, groups in (("admin", ["Admins"]), ("reader", ["Readers"]))
    }


def start_op(procs, node_modules, workdir, clients, users, wait_until, free_port):
    port = free_port()
    op = OP(port, clients, users)
    cfg = {
        "port": port, "pool": POOL, "access_ttl": ACCESS_TTL, "node_modules": os.path.abspath(node_modules),
        "clients": list(clients.values()), "users": users,
    }
    path = os.path.join(workdir, "cognito-op.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    proc = procs.start("cognito-op", ["node", os.path.join(HERE, "cognito_op.mjs")], env={"E2E_OP_CONFIG": path})
    wait_until("cognito-op", lambda: request(port, "GET", f"/{POOL}/.well-known/openid-configuration").status == 200,
               proc)
    return op


# --- plain HTTP with a cookie jar -------------------------------------------------------------


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self):
        return json.loads(self.body)


def request(port, method, target, headers=(), body=None, host=None):
    """One request to 127.0.0.1:port; `host` names the Host header (the provider's two names)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        hdrs = dict(headers)
        hdrs["Host"] = host or f"127.0.0.1:{port}"
        conn.request(method, target, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


class Agent:
    """A cookie-keeping HTTP client for one origin (what a browser does, minus the rendering)."""

    def __init__(self, op):
        self.op = op
        self.cookies = {}

    def send(self, method, url, form=None, headers=()):
        parts = urllib.parse.urlsplit(url)
        expect(parts.hostname in ("127.0.0.1", "localhost") and parts.port == self.op.port, f"unexpected URL {url}")
        target = parts.path + ("?" + parts.query if parts.query else "")
        hdrs = list(headers)
        if self.cookies:
            hdrs.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items())))
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            hdrs.append(("Content-Type", "application/x-www-form-urlencoded"))
        reply = request(self.op.port, method, target, hdrs, body, host=parts.netloc)
        for name, value in reply.headers:
            if name.lower() == "set-cookie":
                pair, _, attrs = value.partition(";")
                key, _, val = pair.strip().partition("=")
                gone = "max-age=0" in attrs.lower().replace(" ", "") or "expires=thu, 01 jan 1970" in attrs.lower()
                if gone or not val:
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        return reply

    def absolute(self, location):
        return urllib.parse.urljoin(self.op.origin + "/", location)


def pkce_pair():
    verifier = b64url(secrets.token_bytes(32))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def authorize_url(op, client, **extra):
    params = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": client["redirect_uris"][0],
              "scope": "openid email profile", **extra}
    return op.endpoints["authorize"] + "?" + urllib.parse.urlencode(params)


def sign_in(agent, client, user, password=None):
    """authorize → /login form → POST credentials → code. Returns (code, nonce, verifier, state)."""
    op = agent.op
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    reply = agent.send("GET", authorize_url(op, client, state=state, nonce=nonce, code_challenge=challenge,
                                            code_challenge_method="S256"))
    expect(reply.status in (302, 303), f"authorize: {reply.status}")
    login = agent.absolute(reply.header("Location"))
    expect(urllib.parse.urlsplit(login).path == "/login", f"authorize sent to {login}")
    form = agent.send("GET", login)
    expect(form.status == 200 and b'name="password"' in form.body, f"sign-in form: {form.status}")
    if password is not None:
        bad = agent.send("POST", login, {"username": user, "password": password})
        expect(bad.status == 200 and b"Incorrect username or password." in bad.body, "a wrong password was accepted")
    done = agent.send("POST", login, {"username": user, "password": op.users[user]["password"]})
    expect(done.status == 303, f"sign-in POST: {done.status}")
    resume = agent.send("GET", agent.absolute(done.header("Location")))
    expect(resume.status in (302, 303), f"resume: {resume.status}")
    back = urllib.parse.urlsplit(resume.header("Location"))
    expect(f"{back.scheme}://{back.netloc}{back.path}" == client["redirect_uris"][0], "code sent elsewhere")
    q = dict(urllib.parse.parse_qsl(back.query))
    expect(q.get("state") == state, "state not returned unchanged")
    expect(q.get("iss") == op.issuer, f"iss parameter: {q.get('iss')!r}")
    expect("code" in q, f"no code: {sorted(q)}")
    return q["code"], nonce, verifier, state


def token_request(op, client, form, basic=True):
    headers = []
    form = dict(form)
    if client.get("client_secret") and basic:
        raw = f"{urllib.parse.quote(client['client_id'])}:{urllib.parse.quote(client['client_secret'])}"
        headers.append(("Authorization", "Basic " + base64.b64encode(raw.encode()).decode()))
    else:
        form["client_id"] = client["client_id"]
    headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    return request(op.port, "POST", "/oauth2/token", headers, urllib.parse.urlencode(form), host=f"localhost:{op.port}")


def revoke(op, client, token):
    headers = [("Content-Type", "application/x-www-form-urlencoded")]
    form = {"token": token}
    if client.get("client_secret"):
        raw = f"{client['client_id']}:{client['client_secret']}"
        headers.append(("Authorization", "Basic " + base64.b64encode(raw.encode()).decode()))
    else:
        form["client_id"] = client["client_id"]
    return request(op.port, "POST", "/oauth2/revoke", headers, urllib.parse.urlencode(form),
                   host=f"localhost:{op.port}")


# --- token checks ------------------------------------------------------------------------------


def jwt_parts(token):
    head, payload, sig = token.split(".")
    return json.loads(unb64url(head)), json.loads(unb64url(payload)), (head + "." + payload).encode(), unb64url(sig)


def verify_rs256(op, token):
    """Checks the RS256 signature against the provider's JWKS; returns (header, claims)."""
    header, claims, signed, sig = jwt_parts(token)
    expect(header.get("alg") == "RS256", f"alg {header.get('alg')}")
    keys = request(op.port, "GET", f"/{POOL}/.well-known/jwks.json").json()["keys"]
    key = next((k for k in keys if k["kid"] == header.get("kid")), None)
    expect(key is not None and key["kty"] == "RSA", f"kid {header.get('kid')} not in the JWKS")
    n, e = (int.from_bytes(unb64url(key[x]), "big") for x in ("n", "e"))
    expect(n.bit_length() >= 2048, "RSA key under 2048 bits")
    rsa.RSAPublicNumbers(e, n).public_key().verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
    return header, claims


def at_hash(access_token):
    return b64url(hashlib.sha256(access_token.encode()).digest()[:16])


def check_cognito_tokens(op, client, user, tokens, nonce=None):
    """The response of a code exchange or refresh has Cognito's shape; returns the access claims."""
    expect(tokens.get("token_type") == "Bearer", f"token_type {tokens.get('token_type')}")
    expect(tokens.get("expires_in") == ACCESS_TTL, f"expires_in {tokens.get('expires_in')}")
    _, at = verify_rs256(op, tokens["access_token"])
    _, idt = verify_rs256(op, tokens["id_token"])
    u = op.users[user]
    want_at = {"iss": op.issuer, "token_use": "access", "client_id": client["client_id"], "sub": u["sub"],
               "cognito:groups": u["groups"], "username": user}
    for k, v in want_at.items():
        expect(at.get(k) == v, f"access token {k}: {at.get(k)!r}, want {v!r}")
    expect(set("openid email profile".split()) <= set(at.get("scope", "").split()), f"scope {at.get('scope')!r}")
    expect(at["exp"] - at["iat"] == ACCESS_TTL, f"access token lifetime {at['exp'] - at['iat']}")
    expect(isinstance(at.get("origin_jti"), str) and at.get("jti") and at.get("auth_time"), "origin_jti/jti/auth_time")
    want_id = {"iss": op.issuer, "aud": client["client_id"], "token_use": "id", "sub": u["sub"],
               "cognito:groups": u["groups"], "cognito:username": user, "email": u["email"],
               "origin_jti": at["origin_jti"], "at_hash": at_hash(tokens["access_token"])}
    for k, v in want_id.items():
        expect(idt.get(k) == v, f"id token {k}: {idt.get(k)!r}, want {v!r}")
    if nonce is not None:
        expect(idt.get("nonce") == nonce, "id token nonce differs from the authorize request's")
    expect("client_id" not in idt and "scope" not in idt, "id token carries access-token claims")
    return at


def grant_error(reply):
    try:
        return reply.json().get("error")
    except ValueError:
        return f"status {reply.status}"


# --- provider checks (no Portcullis involved) ---------------------------------------------------


class OPChecks:
    """State shared by the provider checks, run in order."""

    def __init__(self, op):
        self.op = op
        # App clients of their own: what these checks do (reuse, replay) must not show in the
        # counters the browser scenarios read for the apps' clients.
        self.client = op.clients["op-check-confidential"]
        self.public = op.clients["op-check-public"]
        self.agent = Agent(op)
        self.tokens = None
        self.origin_jti = None

    def discovery_at_cognito_paths(self):
        op = self.op
        # Discovery under the issuer, as Cognito serves it (endpoint hosts follow the Host header).
        doc = request(op.port, "GET", f"/{POOL}/.well-known/openid-configuration").json()
        expect(doc.get("issuer") == op.issuer and doc.get("jwks_uri") == op.jwks_uri, f"discovery: {doc.get('issuer')}")
        for k, name in (("authorization_endpoint", "authorize"), ("token_endpoint", "token"),
                        ("revocation_endpoint", "revoke")):
            path = urllib.parse.urlsplit(op.endpoints[name]).path
            expect(urllib.parse.urlsplit(doc.get(k, "")).path == path, f"discovery {k}: {doc.get(k)!r}")
        expect(doc.get("code_challenge_methods_supported") == ["S256"], "PKCE methods")
        expect(doc.get("id_token_signing_alg_values_supported") == ["RS256"], "id token algs")
        keys = request(op.port, "GET", f"/{POOL}/.well-known/jwks.json").json()["keys"]
        expect(keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig" for k in keys), "JWKS")

    def pkce_required_and_code_exchange(self):
        op, client = self.op, self.client
        # No code_challenge: refused back to the client, no sign-in page.
        reply = self.agent.send("GET", authorize_url(op, client, state="s", nonce="n"))
        loc = reply.header("Location") or ""
        expect(reply.status in (302, 303) and loc.startswith(client["redirect_uris"][0]) and "error=invalid_request"
               in loc, f"authorize without PKCE: {reply.status}")
        code, nonce, verifier, _ = sign_in(self.agent, client, "admin", password="wrong-password")
        redirect = client["redirect_uris"][0]
        base = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
        wrong = token_request(op, client, {**base, "code_verifier": pkce_pair()[0]})
        expect(wrong.status == 400 and grant_error(wrong) == "invalid_grant", f"wrong verifier: {wrong.status}")
        missing = token_request(op, client, base)
        expect(missing.status == 400, f"no verifier: {missing.status}")
        no_auth = token_request(op, client, {**base, "code_verifier": verifier, "client_id": client["client_id"]},
                                basic=False)
        expect(no_auth.status in (400, 401) and grant_error(no_auth) == "invalid_client",
               f"confidential client without its secret: {no_auth.status}")
        ok = token_request(op, client, {**base, "code_verifier": verifier})
        expect(ok.status == 200, f"code exchange: {ok.status} {grant_error(ok)}")
        self.tokens, self.nonce = ok.json(), nonce

    def tokens_have_cognito_shape(self):
        expect(self.tokens is not None, "no tokens from the code exchange")
        at = check_cognito_tokens(self.op, self.client, "admin", self.tokens, nonce=self.nonce)
        self.origin_jti = at["origin_jti"]
        rt = self.tokens.get("refresh_token", "")
        # A Cognito refresh token is a ~1.8 KB JWE; this one is as long (opaque, like Cognito's to a client).
        expect(1700 <= len(rt) <= 1900, f"refresh token length {len(rt)}")

    def refresh_rotates_and_reuse_is_refused(self):
        op, client = self.op, self.client
        first = self.tokens["refresh_token"]
        ok = token_request(op, client, {"grant_type": "refresh_token", "refresh_token": first})
        expect(ok.status == 200, f"refresh: {ok.status} {grant_error(ok)}")
        new = ok.json()
        at = check_cognito_tokens(op, client, "admin", new)
        expect(at["origin_jti"] == self.origin_jti, "origin_jti changed on refresh")
        expect(new.get("refresh_token") and new["refresh_token"] != first, "refresh token not rotated")
        # Reuse of a rotated refresh token: refused, and (reuse detection) the family is revoked.
        reuse = token_request(op, client, {"grant_type": "refresh_token", "refresh_token": first})
        expect(reuse.status == 400 and grant_error(reuse) == "invalid_grant", f"reused refresh token: {reuse.status}")
        after = token_request(op, client, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
        expect(after.status == 400 and grant_error(after) == "invalid_grant",
               f"refresh after a reuse: {after.status} (family not revoked)")

    def silent_sign_in(self, nonce):
        """A new authorization while the hosted-UI session is on: no form, a new sign-in event."""
        op, client = self.op, self.client
        verifier, challenge = pkce_pair()
        reply = self.agent.send("GET", authorize_url(op, client, state="s-" + nonce, nonce=nonce,
                                                     code_challenge=challenge, code_challenge_method="S256"))
        hops = 0
        while reply.status in (302, 303) and not reply.header("Location").startswith(client["redirect_uris"][0]):
            expect(hops < 5, "too many redirects")
            reply = self.agent.send("GET", self.agent.absolute(reply.header("Location")))
            hops += 1
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(reply.header("Location") or "").query))
        expect("code" in q, f"silent sign-in with a hosted-UI session: {reply.status}")
        form = {"grant_type": "authorization_code", "code": q["code"], "redirect_uri": client["redirect_uris"][0],
                "code_verifier": verifier}
        tok = token_request(op, client, form)
        expect(tok.status == 200, f"exchange: {tok.status}")
        tokens = tok.json()
        at = check_cognito_tokens(op, client, "admin", tokens, nonce=nonce)
        expect(at["origin_jti"] != self.origin_jti, "two sign-ins share an origin_jti")
        return tokens, form

    def code_replay_is_refused_and_revokes(self):
        # RFC 6749 §4.1.2: a code used twice is refused, and what it issued is revoked.
        op, client = self.op, self.client
        tokens, form = self.silent_sign_in("n-replay")
        again = token_request(op, client, form)
        expect(again.status == 400 and grant_error(again) == "invalid_grant", f"code replay: {again.status}")
        after = token_request(op, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        expect(after.status == 400 and grant_error(after) == "invalid_grant",
               f"refresh after code replay: {after.status}")

    def revoke_ends_refresh_token(self):
        op, client = self.op, self.client
        tokens, _ = self.silent_sign_in("n-revoke")
        r = revoke(op, client, tokens["refresh_token"])
        expect(r.status == 200, f"revoke: {r.status}")
        after = token_request(op, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        expect(after.status == 400 and grant_error(after) == "invalid_grant", f"refresh after revoke: {after.status}")

    def logout_ends_hosted_ui_session(self):
        op, client, agent = self.op, self.client, self.agent
        logout_uri = client["post_logout_redirect_uris"][0]
        q = urllib.parse.urlencode({"client_id": client["client_id"], "logout_uri": "http://127.0.0.1:1/elsewhere"})
        bad = agent.send("GET", f"{op.endpoints['logout']}?{q}")
        expect(bad.status == 400, f"/logout to an unregistered logout_uri: {bad.status}")
        q = urllib.parse.urlencode({"client_id": client["client_id"], "logout_uri": logout_uri})
        out = agent.send("GET", f"{op.endpoints['logout']}?{q}")
        expect(out.status == 302 and out.header("Location") == logout_uri, f"/logout: {out.status}")
        # The next authorization shows the sign-in form again.
        _, challenge = pkce_pair()
        reply = agent.send("GET", authorize_url(op, client, state="s3", nonce="n3", code_challenge=challenge,
                                                code_challenge_method="S256"))
        login = agent.absolute(reply.header("Location") or "")
        expect(urllib.parse.urlsplit(login).path == "/login", f"after /logout, authorize went to {login}")
        form = agent.send("GET", login)
        expect(form.status == 200 and b'name="password"' in form.body, "after /logout no sign-in form")

    def public_client_without_secret(self):
        op, client = self.op, self.public
        agent = Agent(op)
        code, nonce, verifier, _ = sign_in(agent, client, "reader")
        ok = token_request(op, client, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": client["redirect_uris"][0], "code_verifier": verifier})
        expect(ok.status == 200, f"public client exchange: {ok.status} {grant_error(ok)}")
        tokens = ok.json()
        check_cognito_tokens(op, client, "reader", tokens, nonce=nonce)
        ref = token_request(op, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        expect(ref.status == 200 and ref.json()["refresh_token"] != tokens["refresh_token"], "public client refresh")
        expect(revoke(op, client, ref.json()["refresh_token"]).status == 200, "public client revoke")


OP_CHECKS = ["discovery_at_cognito_paths", "pkce_required_and_code_exchange", "tokens_have_cognito_shape",
             "refresh_rotates_and_reuse_is_refused", "code_replay_is_refused_and_revokes", "revoke_ends_refresh_token",
             "logout_ends_hosted_ui_session",
             "public_client_without_secret"]


# --- Portcullis with a login block --------------------------------------------------------------


def login_yaml(op, client, upstream_port, listen, admin):
    """One Portcullis per app: the `login` block exactly as SPEC §8 names it."""
    public_url = f"http://127.0.0.1:{listen}"
    lines = [
        f"listen: 127.0.0.1:{listen}",
        f"admin_listen: 127.0.0.1:{admin}",
        "upstream:",
        f"  url: http://127.0.0.1:{upstream_port}",
        "issuers:",
        "  - name: pool",
        f"    issuer: {json.dumps(op.issuer)}",
        f"    jwks_uri: {json.dumps(op.jwks_uri)}",
        f"    client_ids: [{json.dumps(client['client_id'])}]",
        "    token_use: access",
        "    verify_at_hash: true",
        "login:",
        "  issuer: pool",
        f"  client_id: {json.dumps(client['client_id'])}",
    ]
    if client.get("client_secret"):
        lines.append('  client_secret: "${env:PORTCULLIS_CLIENT_SECRET}"')
    lines += [
        "  endpoints:",
        *(f"    {k}: {json.dumps(v)}" for k, v in op.endpoints.items()),
        f"  public_url: {json.dumps(public_url)}",
        "  scopes: [openid, email, profile]",
        f"  after_logout_url: {json.dumps(client['post_logout_redirect_uris'][0])}",
        "  session:",
        '    secrets: ["${env:PORTCULLIS_SESSION_SECRET}"]',
        "    lifetime: 1h",
        f"    cookie: {SESSION_COOKIE}",
        "identity_headers:",
        "  claims:",
        "    X-User-Email: email        # only in the id token",
        "    X-User-Username: username  # only in the access token",
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
        "  - name: api",
        "    path: /api/**",
        "  - name: app",
        "    path: /**",
        "    require:",
        "      scopes_all: [openid, email, profile]  # the access token's scope",
    ]
    return "\n".join(lines) + "\n"


def plan_clients(ports):
    """One app client per app (ports: app -> Portcullis listen port; PHP's client is public), and
    two for the provider's own checks (their redirect URIs are never followed)."""
    clients = {}
    bases = {app: f"http://127.0.0.1:{listen}" for app, listen in ports.items()}
    bases["op-check-confidential"] = bases["op-check-public"] = "http://127.0.0.1:9"
    for name, base in bases.items():
        clients[name] = {
            "client_id": cognito_client_id(),
            "client_secret": None if name in (PUBLIC_CLIENT_APP, "op-check-public") else secrets.token_urlsafe(40),
            "redirect_uris": [f"{base}/.portcullis/callback"],
            "post_logout_redirect_uris": [f"{base}/public/signed-out"],
        }
    return clients


def portcullis_env(client):
    env = {"PORTCULLIS_SESSION_SECRET": secrets.token_hex(32)}
    if client.get("client_secret"):
        env["PORTCULLIS_CLIENT_SECRET"] = client["client_secret"]
    return env


# --- the browser --------------------------------------------------------------------------------


def run_browser(procs, node_modules, workdir, artifacts, op, targets, timeout=300):
    """Runs login.js once for every app at the same time (one shared wait across the token expiry).

    targets: app -> {"base": URL, "client": client}. Returns login.js's JSON result.
    """
    out = os.path.join(workdir, "login-result.json")
    plan = {
        "op_origin": op.origin, "authorize": op.endpoints["authorize"], "logout": op.endpoints["logout"],
        "stats_url": f"{op.origin}/_e2e/stats", "access_ttl": ACCESS_TTL, "refresh_margin": REFRESH_MARGIN,
        "session_cookie": SESSION_COOKIE, "artifacts": os.path.abspath(artifacts), "out": out,
        "users": {n: {"sub": u["sub"], "password": u["password"], "groups": u["groups"], "email": u["email"]}
                  for n, u in op.users.items()},
        "apps": {app: {"base": t["base"], "client_id": t["client"]["client_id"],
                       "after_logout_url": t["client"]["post_logout_redirect_uris"][0], "log": t["log"]}
                 for app, t in targets.items()},
    }
    path = os.path.join(workdir, "login-plan.json")
    with open(path, "w") as f:
        json.dump(plan, f)
    started = time.monotonic()
    proc = procs.start("login-browser", ["node", os.path.join(HERE, "login.js")],
                       env={"NODE_PATH": node_modules, "E2E_LOGIN_PLAN": path})
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"login.js did not finish in {timeout}s")
    print(f"login.js exited {code} after {time.monotonic() - started:.1f}s", flush=True)
    if not os.path.exists(out):
        raise AssertionError(f"login.js exited {code} without a result")
    with open(out) as f:
        return json.load(f)


# --- the whole sign-in part of the suite --------------------------------------------------------


def run_signin(run, h, procs, node_modules, artifacts, binary, workdir, apps, browser_enabled):
    """Registers every sign-in check with the driver's `run(name, fn)`.

    h: the driver's helpers (free_port, wait_until, start_portcullis, metric). The provider's own
    checks always run; the browser scenarios need a binary with the `login` block (E2E_LOGIN=0
    skips them).
    """
    ports = {app: (h.free_port(), h.free_port()) for app in LOGIN_APPS}
    clients = plan_clients({app: listen for app, (listen, _) in ports.items()})
    op = start_op(procs, node_modules, workdir, clients, make_users(), h.wait_until, h.free_port)
    print(f"cognito-shaped OP: issuer={op.issuer}", flush=True)
    checks = OPChecks(op)
    for name in OP_CHECKS:
        run(f"op/{name}", getattr(checks, name))
    if not browser_enabled:
        print("e2e: browser sign-in through Portcullis not run (E2E_LOGIN=0)",
              flush=True)
        return

    targets, admins = {}, {}
    for app in LOGIN_APPS:
        listen, admin = ports[app]
        client = clients[app]
        yaml = login_yaml(op, client, apps[app].port, listen, admin)

        def start(app=app, yaml=yaml, client=client, listen=listen, admin=admin):
            h.start_portcullis(procs, binary, workdir, f"login-{app}", lambda _l, _a: yaml, ports=(listen, admin),
                               env=portcullis_env(client))
            targets[app] = {"base": f"http://127.0.0.1:{listen}", "client": client,
                            "log": os.path.join(workdir, f"portcullis-login-{app}.log")}
            admins[app] = admin

        run(f"{app}/login/portcullis_starts_with_login_block", start)
    if not targets:
        return
    result = {}

    def browser():
        result.update(run_browser(procs, node_modules, workdir, artifacts, op, targets))
        for file in result.get("screenshots", []):
            print(f"e2e: screenshot {file}", flush=True)
        expect(not result.get("deadline") and not result.get("error"), f"login.js: {result.get('error', 'deadline')}")

    run("browser/login_scenarios_ran", browser)
    outcome = result.get("apps", {})
    for app in targets:
        steps = {s["name"]: s for key in (app, f"{app}:reader") for s in outcome.get(key, {}).get("steps", [])}

        def step_ok(name, steps=steps, app=app):
            s = steps.get(name)
            expect(s is not None, "not run")
            expect(s["ok"], s.get("error"))
            if s.get("info", {}).get("session_cookie_bytes"):
                print(f"e2e: {app} session cookie {s['info']['session_cookie_bytes']} bytes", flush=True)

        for name in STEP_NAMES:
            run(f"{app}/login/{name}", step_ok, name)

        def never_reached(app=app, steps=steps):
            fetched = steps.get("fetch_without_session_gets_401_never_redirect", {})
            marks = list(fetched.get("info", {}).get("markers", []))
            marks.append(steps.get("reader_refused_on_admin_page", {}).get("info", {}).get("marker"))
            expect(all(marks) and len(marks) == 4, "markers missing (steps failed)")
            for m in marks:
                expect(not apps[app].hit(m), f"a refused request reached the app ({m})")

        def metrics(app=app):
            a = admins[app]
            ok = h.metric(a, "portcullis_logins_total", result="ok")
            expect(ok >= 2, f"logins_total{{result=ok}} = {ok}, want ≥ 2 (admin and reader)")
            refreshed = h.metric(a, "portcullis_session_refresh_total", result="ok")
            expect(refreshed >= 2, f"session_refresh_total{{result=ok}} = {refreshed}, want ≥ 2")

        run(f"{app}/login/refused_requests_never_reached_app", never_reached)
        run(f"{app}/login/metrics_count_logins_and_refreshes", metrics)
