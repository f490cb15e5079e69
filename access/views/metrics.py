"""`GET /metrics`: Prometheus exposition, for a scraper holding METRICS_TOKEN (a bearer token). Without the
setting the endpoint does not exist (404); with it, any other caller gets 401."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from .. import metrics as portal_metrics
from ..http import json_error


@require_safe
def metrics(request):
    token = settings.METRICS_TOKEN
    if not token:
        return json_error("not_found", _("Not found."), 404)
    offered = request.headers.get("Authorization", "")
    if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return json_error(
            "not_authenticated",
            _("Send 'Authorization: Bearer <METRICS_TOKEN>'."),
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    response = HttpResponse(portal_metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
