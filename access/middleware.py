import logging

from django.http import HttpResponseBadRequest, HttpResponseNotFound
from django.utils.translation import gettext as _

from .http import json_error, wants_json

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

        from .storage import StorageError

        if isinstance(exception, OperationalError | InterfaceError):
            code, detail = "database_unavailable", _("The service is briefly unavailable; try again in a moment.")
            close_old_connections()
        elif isinstance(exception, StorageError):
            code, detail = "storage_unavailable", _("File storage is unavailable; try again shortly.")
        else:
            return None
        logger.warning("%s on %s: %s", code, request.path, exception)
        if wants_json(request):
            response = json_error(code, detail, 503)
        else:
            response = render(request, "503.html", {"detail": detail}, status=503)
        response["Retry-After"] = "30"
        return response
