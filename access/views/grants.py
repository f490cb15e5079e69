"""The researcher's grants, their URL batches, and personal API tokens."""

from __future__ import annotations

from allauth.core.exceptions import ReauthenticationRequired
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import downloads, manifests, selectors, services
from ..decorators import recently_authenticated
from ..forms import LicenseAcceptForm, TokenForm
from ..http import actor_for, base_url, download_redirect
from ..listing import file_listing
from ..models import ApiToken, DownloadEvent, UrlBatch
from ..services import advisories
from ..services.reverification import reverify_due


def _own_grant(request, public_id):
    grant = selectors.user_grant_get(user=request.user, public_id=public_id)
    if grant is None:
        raise Http404
    return grant


@login_required
@require_safe
def my_grants(request):
    context = {
        "grants": selectors.user_grants(user=request.user),
        "lab_grants": selectors.member_lab_grants(user=request.user),
    }
    return render(request, "access/my_grants.html", context)


@login_required
@require_safe
def grant_detail(request, public_id):
    if selectors.member_lab_grant_get(user=request.user, public_id=public_id) is not None:
        return redirect("lab-grant", public_id=public_id)  # a lab's grant: what it gives this member
    grant = _own_grant(request, public_id)
    decision = downloads.access_state(user=request.user, release=grant.release, grant=grant)
    active = decision.allowed
    context = {
        "grant": grant,
        "active": active,
        "decision": decision,
        "batch": downloads.current_batch(grant) if active else None,
        "pending_batch": grant.batches.filter(status=UrlBatch.Status.PENDING).first() if active else None,
        "listing": file_listing(grant.release.files.all()),
        # Each file links to grant_file, which asks the gate when clicked: nothing is signed for the page.
        "file_grant": grant if active else None,
        "tokens": request.user.api_tokens.filter(revoked_at__isnull=True),
        "renewal": grant.renewals.order_by("-created_at").first(),
        "reverify_due": reverify_due(grant),
        "outstanding_closeout": grant.closeouts.filter(user=request.user, completed_at__isnull=True).exists(),
        "in_register": grant.release.public_register
        and grant.request.register_consent
        and grant.request.register_withdrawn_at is None,
        "advisory_banners": advisories.banners(request.user, grant.release),
    }
    return render(request, "access/grant_detail.html", context)


@login_required
@require_safe
def grant_file(request, public_id, path):
    """One file of the grant's release, from its link on the grant page: the gate decides now, the download is
    recorded, then the browser is sent to a fresh signed URL (as the relay URLs of wget lists do)."""
    grant = _own_grant(request, public_id)
    file = grant.release.files.filter(path=path).first()
    if file is None:
        raise Http404
    decision = downloads.authorize(
        actor=actor_for(request), release=grant.release, via=DownloadEvent.Via.WEB, grant=grant, path=path
    )
    if not decision.allowed:
        messages.error(request, decision.detail)
        return redirect("grant-detail", public_id=public_id)
    return download_redirect(downloads.serve_file(decision, file, base_url=base_url(request)))


@login_required
@require_http_methods(["GET", "POST"])
def grant_license(request, public_id):
    """The release's current license version for a holder to accept: its text, what changed, and the form."""
    grant = _own_grant(request, public_id)
    release = grant.release
    current = release.license
    form = LicenseAcceptForm(request.POST or None, initial={"version": current.version if current else ""})
    if request.method == "POST" and form.is_valid():
        try:
            accepted = services.grant_accept_license(
                actor=actor_for(request),
                grant=grant,
                version=form.cleaned_data["version"],
                accept_license=form.cleaned_data["accept_license"],
                noncommercial_attested=form.cleaned_data["noncommercial_attested"],
            )
        except services.OpenRequestExists as exc:
            messages.info(request, str(exc))
            return redirect("my-requests")
        except services.ServiceError as exc:
            form.add_error("version" if exc.field == "version" else None, str(exc))
        else:
            if accepted.review_request is not None:
                messages.info(request, _("Thank you. A reviewer confirms your access under the new version."))
                return redirect("request-detail", public_id=accepted.review_request.public_id)
            messages.success(request, _("Thank you; you can download again."))
            return redirect("grant-detail", public_id=public_id)
    context = {
        "grant": grant,
        "license": current,
        "summary_of_changes": current.summary_in(translation.get_language()) if current else "",
        "form": form,
        "accepted": grant.license_id == release.license_id,
        "decision": downloads.access_state(user=request.user, release=release, grant=grant),
    }
    return render(request, "access/grant_license.html", context)


@login_required
@require_safe
def grant_batch_status(request, public_id):
    """Polled by the grant page while a refreshed batch is being issued."""
    grant = _own_grant(request, public_id)
    pending = grant.batches.filter(status=UrlBatch.Status.PENDING).exists()
    current = downloads.current_batch(grant)
    return JsonResponse({"pending": pending, "ready_batch": current.public_id if current else None})


@login_required
@require_safe
def grant_batch_download(request, public_id, fmt):
    """The current batch as json / aria2 / wget / sha256sum, while the grant is active."""
    grant = _own_grant(request, public_id)
    if fmt not in manifests.FORMATS:
        raise Http404
    # Decided and recorded for the revision the batch signed: main may have moved on since it was issued.
    batch = downloads.current_batch(grant)
    signed = downloads.batch_revision(batch) if batch is not None else None
    decision = downloads.authorize(
        actor=actor_for(request),
        release=grant.release,
        via=DownloadEvent.Via.WEB,
        grant=grant,
        path=f"batch.{fmt}",
        revision_id=signed.pk if signed else None,
    )
    if batch is None or not decision.allowed:
        messages.error(request, decision.detail or _("No download links are ready yet."))
        return redirect("grant-detail", public_id=public_id)
    entries, _expires = downloads.serve_manifest(
        decision, fmt=fmt, base_url=base_url(request), entries=batch.urls, revision=signed
    )
    advisories = downloads.advisories_for(decision, signed.pk if signed else None, acknowledged=True)
    body = manifests.render(
        fmt,
        repo_id=grant.release.repo_id,
        revision=batch.revision or grant.release.revision,
        expires_at=downloads.iso(batch.expires_at),
        entries=entries,
        advisories=advisories,
    )
    response = downloads.with_advisories(HttpResponse(body, content_type=manifests.FORMATS[fmt]), advisories)
    response["Content-Disposition"] = f'attachment; filename="{grant.release.name}-{manifests.FILENAMES[fmt]}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def grant_refresh(request, public_id):
    grant = _own_grant(request, public_id)
    try:
        services.grant_refresh_links(actor=actor_for(request), grant=grant)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, _("New download links are being issued; this page updates when they are ready."))
    return redirect("grant-detail", public_id=public_id)


NEW_TOKEN_SESSION_KEY = "access.new_token"  # noqa: S105 (a session key name, not a secret)


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """Create and list tokens. A created token's secret goes through the session to the page the browser is
    redirected to, so it is shown exactly once and reloading cannot create a second token."""
    reviewer = selectors.is_reviewer(request.user)
    form = TokenForm(request.POST or None, reviewer=reviewer)
    if request.method == "POST" and form.is_valid():
        review = reviewer and form.cleaned_data.get("review")
        if review and not recently_authenticated(request):
            # Reviewer powers need the password again; allauth brings the browser back here afterwards.
            raise ReauthenticationRequired()
        try:
            _token, secret = services.token_create(
                actor=actor_for(request),
                name=form.cleaned_data["name"],
                expires_at=form.cleaned_data["expires_at"],
                review=review,
            )
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            request.session[NEW_TOKEN_SESSION_KEY] = secret
            return redirect("tokens")
    new_secret = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    context = {
        "form": form,
        "new_secret": new_secret,
        "tokens": request.user.api_tokens.order_by("-created_at"),
        # The new token goes straight into the commands for what the user may download.
        "granted": _downloadable_releases(request.user) if new_secret else [],
    }
    response = render(request, "access/tokens.html", context, status=400 if form.is_bound else 200)
    response["Cache-Control"] = "no-store"
    return response


def _downloadable_releases(user) -> list:
    """The releases the user's own grants and their seats on lab grants let them download, each once."""
    releases = {g.release_id: g.release for g in selectors.user_grants(user=user) if g.is_active}
    for grant, seat in selectors.member_lab_grants(user=user):
        if grant.is_active and seat is not None and seat.status == seat.Status.ACTIVE:
            releases.setdefault(grant.release_id, grant.release)
    return list(releases.values())


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke(request, pk):
    """GET asks for confirmation (a page, so it works without JavaScript); POST revokes."""
    token = ApiToken.objects.filter(user=request.user, pk=pk).first()
    if token is None:
        raise Http404
    if request.method == "GET":
        context = {
            "title": _("Revoke this token?"),
            "question": _("Revoke the token “%(name)s” (%(prefix)s…)?") % {"name": token.name, "prefix": token.prefix},
            "consequence": _("Scripts using it stop working at once; this cannot be undone."),
            "confirm_label": _("Revoke the token"),
            "action": request.path,
            "cancel_url": reverse("tokens"),
        }
        return render(request, "access/confirm.html", context)
    services.token_revoke(actor=actor_for(request), token=token)
    messages.success(request, _("Token %(prefix)s… revoked.") % {"prefix": token.prefix})
    return redirect("tokens")
