"""Web pages for researchers and the public catalog."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views import i18n
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from .. import codewords, downloads, selectors, services
from .. import counts as counters
from ..durations import wait_estimate_text
from ..http import actor_for, json_error, wants_json
from ..listing import file_listing
from ..services import advisories as advisory_service
from ..storage import get_storage

CLIENT_SCRIPT = Path(__file__).resolve().parent.parent / "client" / "download.py"


@require_safe
def catalog(request):
    return render(request, "access/catalog.html", {"releases": selectors.release_list(user=request.user)})


@require_safe
def release_detail(request, repo_id):
    release = selectors.release_get(repo_id=repo_id, user=request.user)
    if release is None:
        raise Http404
    decision = downloads.access_state(user=request.user, release=release)
    listing = file_listing(selectors.release_files(release=release))
    rejected = decision.code == "rejected" and decision.access_request is not None
    waiting = decision.code == "pending" and decision.access_request is not None
    waiting = waiting and decision.access_request.status == "pending"
    context = {
        "release": release,
        "description": release.description_in(translation.get_language()),
        "listing": listing,
        "revisions": selectors.release_revisions(release=release),
        "decision": decision,
        "reapply_after": selectors.rejection_cooldown_ends(user=request.user, release=release) if rejected else None,
        "downloads_30d": counters.release_downloads(release=release),
        "wait_estimate": (
            wait_estimate_text(
                repo_id=release.repo_id,
                position=selectors.queue_position(decision.access_request),
                typical=selectors.typical_wait(release),
            )
            if waiting
            else ""
        ),
        "admin_labs": selectors.labs_that_may_apply(user=request.user, release=release) if release.is_gated else [],
        "may_report": services.may_report(request.user, release),
        "footprint": selectors.release_footprint(release=release, download_bytes=listing.size),
        "documents": selectors.release_documents(release=release),
        "marking": codewords.MarkingStatus(release) if release.marking else None,
        "manages": selectors.is_release_manager(request.user) if release.marking else False,
        "advisories": advisory_service.visible(request.user, release),
        "advisory_banners": advisory_service.banners(request.user, release),
    }
    return render(request, "access/release_detail.html", context)


@require_safe
def license_detail(request, slug, version=None):
    """A license's text, one version per page with the summary of its changes; readable signed out."""
    versions = selectors.license_versions(slug=slug, user=request.user)
    shown = next((v for v in versions if version is None or v.version == version), None)
    if shown is None:
        raise Http404
    context = {
        "license": shown,
        "versions": versions,
        "latest": versions[0],
        "summary_of_changes": shown.summary_in(translation.get_language()),
        "releases": selectors.release_list(user=request.user).filter(license=shown),
    }
    return render(request, "access/license.html", context)


@require_POST
def set_language(request):
    response = i18n.set_language(request)
    if request.user.is_authenticated and response.status_code in (200, 302):
        services.user_set_language(actor=actor_for(request), user=request.user, language=request.POST.get("language"))
    return response


@require_safe
def help_page(request):
    return render(request, "help.html")


@require_safe
def download_script(request):
    response = FileResponse(CLIENT_SCRIPT.open("rb"), content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="download.py"'
    return response


def _check(fn) -> dict:
    try:
        fn()
    except Exception as exc:  # each backend raises its own errors; all mean "down"
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker():
    from kombu import Connection

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    with Connection(settings.CELERY_BROKER_URL, transport_options=options, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@never_cache
@require_safe
def healthz(request):
    checks = {
        "database": _check(_check_database),
        "broker": _check(_check_broker),
        "storage": _check(lambda: get_storage().check()),
    }
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if ok else "degraded", "checks": checks, "storage_backend": settings.STORAGE_BACKEND}
    # Reported, never a 503: a stalled webhook queue must not take web processes out of a load balancer.
    try:
        body["webhooks"] = selectors.webhook_queue_state()
    except Exception:  # the database check above already says why
        body["webhooks"] = None
    return JsonResponse(body, status=200 if ok else 503)


def page_not_found(request, exception=None):
    if wants_json(request):
        return json_error("not_found", _("Not found."), 404)
    return render(request, "404.html", status=404)


def server_error(request):
    if wants_json(request):
        return json_error("server_error", _("Internal error; it has been logged."), 500)
    return render(request, "500.html", status=500)


def csrf_failure(request, reason=""):
    if wants_json(request):
        return json_error("csrf_failed", _("CSRF check failed; send the X-CSRFToken header."), 403)
    return render(request, "403_csrf.html", status=403)


@require_safe
def downloading(request):
    """The download guide for one release (`?repo=`), an open one unless another is named: its commands run as
    shown by anyone, with no token to paste."""
    releases = list(selectors.release_list(user=request.user))
    repo_id = request.GET.get("repo") or ""
    release = next((r for r in releases if r.repo_id == repo_id), None)
    if release is None:
        release = next((r for r in releases if not r.is_gated), releases[0] if releases else None)
    return render(request, "access/downloading.html", {"release": release, "releases": releases})
