import logging
import time

from django.conf import settings
from django.http import HttpResponseBadRequest, HttpResponseNotFound
from django.utils import translation
from django.utils.translation import gettext as _

from . import logs, metrics
from .http import json_error, wants_json
from .text import printable

logger = logging.getLogger(__name__)


class RejectNulMiddleware:
    """A NUL byte in the path or query string is never legitimate (and PostgreSQL refuses it in text):
    answer 400 before any view or query sees it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            # No object's name contains NUL, so such a path names nothing.
            if wants_json(request):
                return json_error("not_found", _("Not found."), 404)
            return HttpResponseNotFound(_("Not found."))
        if "%00" in request.META.get("QUERY_STRING", ""):
            detail = _("The request contains a NUL byte.")
            if wants_json(request):
                return json_error("invalid", detail, 400)
            return HttpResponseBadRequest(detail)
        return self.get_response(request)


class DependencyErrorMiddleware:
    """The database or file storage being unreachable is an outage, not a bug: answer 503 with Retry-After
    (JSON for scripts, a page for people) instead of a 500 traceback. Connections are re-made on the next
    request (CONN_HEALTH_CHECKS), so the service recovers on its own when the dependency returns."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.db import InterfaceError, OperationalError, close_old_connections
        from django.shortcuts import render

        from .codewords import CapacityExhausted
        from .storage import StorageError

        if isinstance(exception, OperationalError | InterfaceError):
            code, detail = "database_unavailable", _("The service is briefly unavailable; try again in a moment.")
            close_old_connections()
        elif isinstance(exception, StorageError):
            code, detail = "storage_unavailable", _("File storage is unavailable; try again shortly.")
        elif isinstance(exception, CapacityExhausted):
            code, detail = "marking_capacity", CapacityExhausted.detail()
        else:
            return None
        logger.warning("%s on %s: %s", code, request.path, exception)
        if wants_json(request):
            response = json_error(code, detail, 503)
        else:
            response = render(request, "503.html", {"detail": detail}, status=503)
        response["Retry-After"] = "30"
        return response


request_log = logging.getLogger("portal.request")
# Paths that carry a signature or a ticket: logged by their route name, never verbatim.
UNLOGGED_PATHS = ("/storage/", "/dl/")
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestContextMiddleware:
    """Outermost: gives the request its id (X-Request-ID, echoed back), counts and times it for /metrics by
    route name (bounded, unlike paths), and writes one log line per request (LOG_REQUESTS)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = logs.new_request_id(request.headers.get("X-Request-ID"))
        token = logs.bind(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            match = getattr(request, "resolver_match", None)
            route = (match.view_name if match else None) or "unmatched"
            method = request.method if request.method in METHODS else "other"
            metrics.HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
            metrics.HTTP_LATENCY.labels(route, method).observe(elapsed)
            response["X-Request-ID"] = request_id
            if settings.LOG_REQUESTS:
                path = printable(request.path)[:500] if not request.path.startswith(UNLOGGED_PATHS) else f"<{route}>"
                request_log.info(
                    "%s %s %s",
                    method,
                    path,
                    response.status_code,
                    extra={
                        "method": method,
                        "path": path,
                        "route": route,
                        "status": response.status_code,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            return response
        finally:
            logs.unbind(token)


class AccountLanguageMiddleware:
    """A signed-in person reads the portal in their account's language on any browser that has not chosen one
    (no language cookie): what they last picked elsewhere, or their browser's at sign-up. After the session and
    authentication middleware; LocaleMiddleware has chosen from the cookie or Accept-Language before."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and user.language
            and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES
        ):
            translation.activate(user.language)
            request.LANGUAGE_CODE = user.language
        return self.get_response(request)
