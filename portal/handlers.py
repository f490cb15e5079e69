"""The portal's WSGI application: one URLconf and one set of views, two middleware stacks.

A per-file download (`GET|HEAD /api/v1/models/{repo}/files/{path}` and the Hugging Face
`/{repo}/resolve/{rev}/{path}`) asked for without a session cookie — a script with a token, or anonymous — is
answered through `DOWNLOAD_MIDDLEWARE`, a subsequence of `MIDDLEWARE` without the parts that only serve signed-in
browsers (sessions, CSRF, session authentication, messages, allauth, static files, the page CSP). Those parts do
nothing for such a request but cost about a fifth of its CPU. Everything else, and every request that carries a
session cookie, goes through the full stack. The same view decides in both (the one download gate): the stacks
differ only in what a browser session needs.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.utils.module_loading import import_string

# The two per-file download routes (access.api.urls `api-model-file`, access.urls `hf-resolve`); a path that
# only looks like one still resolves through the URLconf as usual, to a 404 if it names nothing.
DOWNLOAD_PATH = re.compile(r"/(?:api/v1/models/[^/]+/[^/]+/files|[^/]+/[^/]+/resolve/[^/]+)/.")
DOWNLOAD_METHODS = frozenset({"GET", "HEAD"})
# Responses of the download stack are redirects and JSON: nothing to render, frame or run scripts in.
DOWNLOAD_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class DownloadCspMiddleware:
    """A fixed Content-Security-Policy for responses that are never pages (django-csp builds one per response)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", DOWNLOAD_CSP)
        return response


class DownloadHandler(WSGIHandler):
    """A WSGI handler whose middleware chain is DOWNLOAD_MIDDLEWARE (synchronous middleware only, as on WSGI)."""

    def load_middleware(self, is_async=False):
        full = list(settings.MIDDLEWARE)
        chosen = list(settings.DOWNLOAD_MIDDLEWARE)
        unknown = [path for path in chosen if path not in full and path != f"{__name__}.DownloadCspMiddleware"]
        if unknown:
            raise ImproperlyConfigured(f"DOWNLOAD_MIDDLEWARE names middleware MIDDLEWARE does not: {unknown}")
        ordered = [path for path in chosen if path in full]
        if ordered != [path for path in full if path in ordered]:
            raise ImproperlyConfigured("DOWNLOAD_MIDDLEWARE must keep MIDDLEWARE's order")
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(chosen):
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler


def is_download(environ) -> bool:
    """Whether this request goes through the download stack."""
    if environ.get("REQUEST_METHOD") not in DOWNLOAD_METHODS:
        return False
    if settings.SESSION_COOKIE_NAME + "=" in environ.get("HTTP_COOKIE", ""):
        return False  # a browser's session: the full stack, which authenticates it
    return DOWNLOAD_PATH.match(environ.get("PATH_INFO", "")) is not None


class PortalApplication:
    def __init__(self):
        self.full = WSGIHandler()
        self.download = DownloadHandler() if settings.DOWNLOAD_MIDDLEWARE else None

    def __call__(self, environ, start_response):
        if self.download is not None and is_download(environ):
            return self.download(environ, start_response)
        return self.full(environ, start_response)
