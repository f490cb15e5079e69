"""Request-context helpers shared by every entry point: the caller's address and credential, and error bodies."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse

from .decorators import recent_provider_sign_ins, recently_authenticated
from .models import ApiToken
from .services.base import Actor

# Paths whose callers are scripts: errors are JSON `{"code", "detail"}` there, pages elsewhere.
JSON_PREFIXES = ("/api/", "/storage/", "/dl/", "/healthz", "/metrics")


def wants_json(request) -> bool:
    path = request.path
    return path.startswith(JSON_PREFIXES) or "/resolve/" in path


def error_body(code: str, detail) -> dict:
    return {"code": code, "detail": str(detail)}


def json_error(code: str, detail, status: int, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(error_body(code, detail), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def client_ip(request) -> str | None:
    """The caller's address: REMOTE_ADDR, or behind a load balancer (BEHIND_PROXY) the address it appended to
    X-Forwarded-For. Without BEHIND_PROXY the header is never read: anyone can send it."""
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass  # absent or not an address: fall back to the peer
    return request.META.get("REMOTE_ADDR") or None


def base_url(request) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def request_token(request) -> ApiToken | None:
    """The API token the request authenticated with, or None (session or anonymous)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


def actor_for(request) -> Actor:
    """The acting party of a web page or API call: its user, credential, address, token, and for a session
    whether the password was entered recently (what reviewer powers need)."""
    user = request.user if request.user.is_authenticated else None
    token = request_token(request)
    if token is not None:
        credential = f"token:{token.pk}"
    elif user is not None:
        credential = "session"
    else:
        credential = "anonymous"
    return Actor(
        user=user,
        credential=credential,
        ip=client_ip(request),
        token=token,
        reauthenticated=credential == "session" and recently_authenticated(request),
        fresh_sign_ins=recent_provider_sign_ins(request) if credential == "session" else (),
    )


def download_redirect(url: str) -> HttpResponseRedirect:
    """The 302 to a signed URL every download channel answers with: never cached, and without a
    Content-Security-Policy (a redirect renders nothing; the header would only cost time on the hottest path)."""
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "no-store"
    response._csp_exempt = True
    return response
