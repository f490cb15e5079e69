"""Advisories on the web: an advisory's page (acknowledged there once by those told), and a release's Atom feed of
its public advisories."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.feedgenerator import Atom1Feed
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from .. import selectors
from ..http import actor_for
from ..models import Advisory
from ..services import ServiceError
from ..services import advisories as service


@require_http_methods(["GET", "POST"])
def advisory_detail(request, public_id):
    advisory = service.advisory_get(user=request.user, public_id=public_id)
    if advisory is None:
        raise Http404
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            service.advisory_acknowledge(actor=actor_for(request), advisory=advisory)
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Thank you: your acknowledgement is recorded."))
        return redirect("advisory-detail", public_id=advisory.public_id)
    user = request.user if request.user.is_authenticated else None
    told = advisory.recipients.filter(user=user).first() if user else None
    manager = bool(user and service.sees_drafts(user))
    context = {
        "advisory": advisory,
        "release": advisory.release,
        "told": told,
        "may_acknowledge": bool(
            advisory.published and user and (told is not None or service.holds_release(user, advisory.release))
        ),
        "acknowledged": bool(told and told.acknowledged_at),
        "counts": {
            "told": advisory.recipients.count(),
            "acknowledged": advisory.recipients.filter(acknowledged_at__isnull=False).count(),
        }
        if manager
        else None,
        "embargoed": advisory.published and not advisory.public(),
    }
    return render(request, "access/advisories/detail.html", context)


@require_safe
def release_advisories_atom(request, repo_id):
    """The release's public advisories (published, past any embargo), newest first."""
    release = selectors.release_get(repo_id=repo_id, user=None)
    if release is None:
        raise Http404
    now = timezone.now()
    feed = Atom1Feed(
        title=_("Advisories for %(repo)s") % {"repo": release.repo_id},
        link=request.build_absolute_uri(f"/models/{release.repo_id}"),
        description=_("Security and safety advisories for %(repo)s") % {"repo": release.repo_id},
        feed_url=request.build_absolute_uri(),
        language=request.LANGUAGE_CODE,
    )
    rows = Advisory.objects.filter(release=release, status=Advisory.Status.PUBLISHED).order_by("-published_at")
    for advisory in rows[:100]:
        if not advisory.public(now):
            continue
        updated = advisory.updates.order_by("-created_at").values_list("created_at", flat=True).first()
        feed.add_item(
            title=f"{advisory.identifier}: {advisory.title}",
            link=request.build_absolute_uri(f"/advisories/{advisory.public_id}/"),
            description=advisory.summary,
            unique_id=f"urn:advisory:{advisory.identifier}",
            pubdate=advisory.published_at,
            updateddate=updated or advisory.published_at,
            categories=[advisory.severity],
        )
    return HttpResponse(feed.writeString("utf-8"), content_type="application/atom+xml; charset=utf-8")
