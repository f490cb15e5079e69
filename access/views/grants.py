"""The researcher's grants, their URL batches, and personal API tokens."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import downloads, manifests, selectors, services
from ..forms import TokenForm
from ..models import ApiToken, DownloadEvent, UrlBatch
from .requests import web_actor


def _own_grant(request, public_id):
    grant = selectors.user_grant_get(user=request.user, public_id=public_id)
    if grant is None:
        raise Http404
    return grant


@login_required
@require_safe
def my_grants(request):
    return render(request, "access/my_grants.html", {"grants": selectors.user_grants(user=request.user)})


@login_required
@require_safe
def grant_detail(request, public_id):
    grant = _own_grant(request, public_id)
    decision = selectors.release_access_decision(user=request.user, release=grant.release)
    active = decision.allowed and decision.grant is not None and decision.grant.pk == grant.pk
    context = {
        "grant": grant,
        "active": active,
        "decision": decision,
        "batch": selectors.grant_current_batch(grant=grant) if active else None,
        "pending_batch": grant.batches.filter(status=UrlBatch.Status.PENDING).first() if active else None,
        "files": grant.release.files.order_by("path"),
        "portal_url": request.build_absolute_uri("/").rstrip("/"),
        "tokens": request.user.api_tokens.filter(revoked_at__isnull=True),
        "renewal": grant.renewals.order_by("-created_at").first(),
    }
    return render(request, "access/grant_detail.html", context)


@login_required
@require_safe
def grant_batch_status(request, public_id):
    """Polled by the grant page while a refreshed batch is being issued."""
    grant = _own_grant(request, public_id)
    pending = grant.batches.filter(status=UrlBatch.Status.PENDING).exists()
    current = selectors.grant_current_batch(grant=grant)
    return JsonResponse({"pending": pending, "ready_batch": current.public_id if current else None})


@login_required
@require_safe
def grant_batch_download(request, public_id, fmt):
    """The current batch as json / aria2 / wget / sha256sum, while the grant is active."""
    grant = _own_grant(request, public_id)
    if fmt not in manifests.FORMATS:
        raise Http404
    decision = selectors.release_access_decision(user=request.user, release=grant.release)
    batch = selectors.grant_current_batch(grant=grant)
    if not decision.allowed or batch is None:
        messages.error(request, decision.detail or _("No download links are ready yet."))
        return redirect("grant-detail", public_id=public_id)
    entries = batch.urls
    if fmt == "wget" and any("?" in e["url"] for e in entries):
        # wget names files after the URL: S3 URLs would leave query strings in the names, so the list gets relay
        # URLs that end in the file name (and check the grant again when followed).
        file_ids = dict(grant.release.files.values_list("path", "pk"))
        base = request.build_absolute_uri("/")
        entries = [
            {**e, "wget_url": downloads.relay_url(file_ids[e["path"]], e["path"], user_id=grant.user_id, base_url=base)}
            for e in entries
            if e["path"] in file_ids
        ]
    body = manifests.render(
        fmt,
        repo_id=grant.release.repo_id,
        revision=grant.release.revision,
        expires_at=batch.expires_at.isoformat() if batch.expires_at else "",
        entries=entries,
    )
    services.download_record(
        actor=web_actor(request), release=grant.release, grant=grant, via=DownloadEvent.Via.WEB, manifest_format=fmt
    )
    response = HttpResponse(body, content_type=manifests.FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{grant.release.name}-{manifests.FILENAMES[fmt]}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def grant_refresh(request, public_id):
    grant = _own_grant(request, public_id)
    try:
        services.grant_refresh_links(actor=web_actor(request), grant=grant)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, _("New download links are being issued; this page updates when they are ready."))
    return redirect("grant-detail", public_id=public_id)


@login_required
@require_POST
def grant_renew(request, public_id):
    grant = _own_grant(request, public_id)
    try:
        access_request = services.grant_request_renewal(actor=web_actor(request), grant=grant)
    except services.OpenRequestExists as exc:
        messages.info(request, str(exc))
        return redirect("my-requests")
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("grant-detail", public_id=public_id)
    messages.success(request, _("Your renewal request is with the reviewers."))
    return redirect("request-detail", public_id=access_request.public_id)


NEW_TOKEN_SESSION_KEY = "access.new_token"  # noqa: S105 (a session key name, not a secret)


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """Create and list tokens. A created token's secret goes through the session to the page the browser is
    redirected to, so it is shown exactly once and reloading cannot create a second token."""
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _token, secret = services.token_create(
                actor=web_actor(request), name=form.cleaned_data["name"], expires_at=form.cleaned_data["expires_at"]
            )
        except services.ServiceError as exc:
            form.add_error("expires_at", str(exc))
        else:
            request.session[NEW_TOKEN_SESSION_KEY] = secret
            return redirect("tokens")
    context = {
        "form": form,
        "new_secret": request.session.pop(NEW_TOKEN_SESSION_KEY, None),
        "tokens": request.user.api_tokens.order_by("-created_at"),
    }
    response = render(request, "access/tokens.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request, pk):
    token = ApiToken.objects.filter(user=request.user, pk=pk).first()
    if token is None:
        raise Http404
    services.token_revoke(actor=web_actor(request), token=token)
    messages.success(request, _("Token %(prefix)s… revoked.") % {"prefix": token.prefix})
    return redirect("tokens")
