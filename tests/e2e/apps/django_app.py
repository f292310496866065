"""Single-file Django app for the e2e suite (run under gunicorn): every path answers with what
Django saw — `request.headers`, `request.META` (the WSGI environ Django routes and authenticates
on: every raw `HTTP_*` key, plus the non-`HTTP_` keys identity and routing are read from) and
`request.COOKIES`. Each request is appended to $E2E_HITS before answering.
"""

import hashlib
import json
import os

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="e2e-only-not-secret",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import re_path  # noqa: E402

HITS = os.environ["E2E_HITS"]
# META keys outside HTTP_* that identity or routing is read from (RemoteUserMiddleware reads
# REMOTE_USER; gunicorn takes SCRIPT_NAME from a header).
ENV_KEYS = ["REMOTE_USER", "AUTH_TYPE", "SCRIPT_NAME", "PATH_INFO"]


def echo(request):
    digest, length = hashlib.sha256(), 0
    while chunk := request.read(65536):
        digest.update(chunk)
        length += len(chunk)
    with open(HITS, "a", encoding="utf-8") as f:
        f.write(json.dumps({"method": request.method, "path": request.path,
                            "query": request.META.get("QUERY_STRING", "")}) + "\n")
    seen = {
        "framework": "django",
        "handler": "admin" if request.path.startswith("/admin") else "echo",
        "method": request.method,
        "path": request.path,
        "raw_path": request.META.get("RAW_URI"),
        "sub": request.headers.get("X-User-Sub"),
        "groups": request.headers.get("X-User-Groups"),
        "headers": [[k, v] for k, v in request.headers.items()],
        "server": {k: v for k, v in request.META.items() if k.startswith("HTTP_")},
        "env": {k: request.META[k] for k in ENV_KEYS if k in request.META},
        "cookie_header": request.META.get("HTTP_COOKIE"),
        "cookies": dict(request.COOKIES),
        "body_len": length,
        "body_sha256": digest.hexdigest(),
    }
    return HttpResponse(json.dumps(seen), content_type="application/json")


urlpatterns = [re_path(r"^.*$", echo)]
application = get_wsgi_application()
