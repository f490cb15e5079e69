from django.http import HttpResponseBadRequest, HttpResponseNotFound, JsonResponse
from django.utils.translation import gettext as _


class RejectNulMiddleware:
    """A NUL byte in the path or query string is never legitimate (and PostgreSQL refuses it in text):
    answer 400 before any view or query sees it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            # No object's name contains NUL, so such a path names nothing.
            if request.path.startswith(("/api/", "/storage/", "/dl/")):
                return JsonResponse({"code": "not_found", "detail": _("Not found.")}, status=404)
            return HttpResponseNotFound(_("Not found."))
        if "%00" in request.META.get("QUERY_STRING", ""):
            detail = _("The request contains a NUL byte.")
            if request.path.startswith(("/api/", "/storage/", "/dl/")):
                return JsonResponse({"code": "invalid", "detail": detail}, status=400)
            return HttpResponseBadRequest(detail)
        return self.get_response(request)
