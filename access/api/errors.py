"""Every API error is JSON `{"code": "...", "detail": "..."}` with a stable code."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..codewords import CapacityExhausted
from ..inputs import InputError
from ..services import ServiceError
from ..storage import StorageError


class ApiError(exceptions.APIException):
    def __init__(self, detail, code, status_code=400, headers=None):
        super().__init__(detail, code)
        self.code = code
        self.status_code = status_code
        self.extra_headers = headers or {}


class FieldErrors(ApiError):
    """400 `{"code": "invalid", "detail", "fields": {name: [message, ...]}}`, from a form's errors."""

    def __init__(self, fields: dict):
        super().__init__(_("The request has invalid fields."), "invalid", 400)
        self.fields = fields


def form_errors(form) -> dict:
    """A Django form's errors as the API sends them: field name → messages (`non_field_errors` for the rest)."""
    return {
        ("non_field_errors" if name == "__all__" else name): [str(message) for message in messages]
        for name, messages in form.errors.items()
    }


def error_response(code: str, detail: str, status_code: int, headers=None) -> Response:
    return Response({"code": code, "detail": str(detail)}, status=status_code, headers=headers)


def _flatten(detail):
    if isinstance(detail, dict):
        return {k: _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_flatten(v) for v in detail]
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        response = error_response(exc.code, str(exc), exc.status, getattr(exc, "headers", None))
        if exc.field:
            response.data["fields"] = {exc.field: [str(exc)]}
        return response
    if isinstance(exc, InputError):
        return error_response(exc.code, str(exc), 400)
    if isinstance(exc, CapacityExhausted):
        return error_response("marking_capacity", CapacityExhausted.detail(), 503, {"Retry-After": "3600"})
    if isinstance(exc, StorageError):
        return error_response(
            "storage_unavailable", _("File storage is unavailable; try again shortly."), 503, {"Retry-After": "30"}
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, FieldErrors):
        response = error_response(exc.code, str(exc.detail), exc.status_code)
        response.data["fields"] = exc.fields
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    for name, value in getattr(exc, "extra_headers", {}).items():
        response[name] = value
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        # `errors` is the older name of `fields`, kept for clients written against it.
        response.data = {"code": "invalid", "detail": _("The request has invalid fields."), "fields": fields}
        response.data["errors"] = fields
        return response
    code = getattr(exc, "code", None) or (exc.get_codes() if isinstance(exc.get_codes(), str) else "error")
    if isinstance(exc, exceptions.Throttled):
        code = "throttled"
    if isinstance(exc, exceptions.NotAuthenticated) or (
        isinstance(exc, exceptions.AuthenticationFailed) and code == "authentication_failed"
    ):
        code = "not_authenticated" if isinstance(exc, exceptions.NotAuthenticated) else "invalid_token"
    if response.status_code == status.HTTP_404_NOT_FOUND:
        code = "not_found"
    response.data = {"code": code, "detail": str(exc.detail)}
    return response
