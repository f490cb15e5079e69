"""One request through portal.wsgi's application, as gunicorn hands it over (the stack choice included),
without an HTTP server: the environ is the one Django's RequestFactory builds."""

from __future__ import annotations

from django.test import RequestFactory


def wsgi_call(path: str, *, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body) of one request; repeated headers joined by ', '."""
    from portal.wsgi import application

    environ = RequestFactory().generic(method, path, headers=headers).environ
    seen: dict = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"] = int(status.split()[0])
        seen["headers"] = {}
        for name, value in response_headers:
            seen["headers"].setdefault(name.lower(), []).append(value)

    result = application(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return seen["status"], {name: ", ".join(values) for name, values in seen["headers"].items()}, body
