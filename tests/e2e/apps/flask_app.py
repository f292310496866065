"""Flask app for the e2e suite (run under gunicorn): answers every path with what Flask saw.

Reports the request as Flask exposes it (`request.headers`, `request.cookies`) and as the WSGI
server handed it over (every `HTTP_*` key of the environ, raw — gunicorn keeps `.` and `~`, so a
client's `X-User.Sub` would be `HTTP_X_USER.SUB` — plus the non-`HTTP_` variables apps and
middleware read identity or routing from), so header spoofing is checked where a WSGI app would
really read it. Each request is appended to $E2E_HITS before answering, so the
suite can prove a refused request never reached the app. Also answers CORS for the browser test.
"""

import hashlib
import json
import os

from flask import Flask, Response, request

app = Flask(__name__)
HITS = os.environ["E2E_HITS"]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Environ keys outside HTTP_* that identity or routing is read from (REMOTE_USER: Django's
# RemoteUserMiddleware and most WSGI auth; SCRIPT_NAME: gunicorn takes it from a header).
ENV_KEYS = ["REMOTE_USER", "AUTH_TYPE", "SCRIPT_NAME", "PATH_INFO"]


def cors(resp):
    # Test app only: reflect the page's origin so the browser test can read responses.
    origin = request.headers.get("Origin")
    if origin:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST"
        resp.headers["Vary"] = "Origin"
    return resp


@app.route("/", defaults={"rest": ""}, methods=METHODS)
@app.route("/<path:rest>", methods=METHODS)
def echo(rest):
    digest, length = hashlib.sha256(), 0
    while chunk := request.stream.read(65536):
        digest.update(chunk)
        length += len(chunk)
    with open(HITS, "a", encoding="utf-8") as f:
        f.write(json.dumps({"method": request.method, "path": request.path,
                            "query": request.query_string.decode("latin-1")}) + "\n")
    seen = {
        "framework": "flask",
        "handler": "admin" if request.path.startswith("/admin") else "echo",
        "method": request.method,
        "path": request.path,
        "raw_path": request.environ.get("RAW_URI"),
        "sub": request.headers.get("X-User-Sub"),
        "groups": request.headers.get("X-User-Groups"),
        "headers": [[k, v] for k, v in request.headers.items()],
        "server": {k: v for k, v in request.environ.items() if k.startswith("HTTP_")},
        "env": {k: request.environ[k] for k in ENV_KEYS if k in request.environ},
        "cookie_header": request.headers.get("Cookie"),
        "cookies": dict(request.cookies),
        "body_len": length,
        "body_sha256": digest.hexdigest(),
    }
    return cors(Response(json.dumps(seen), status=200, mimetype="application/json"))
