"""Pages for the stewardship of a grant: progress reports, renewal with a report, closing one's access, the
close-out; the public register of uses; the reviewers' list of outstanding close-outs."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import selectors, services, transparency
from ..forms import CloseOutForm, ProgressReportForm
from ..http import actor_for
from ..models import CloseOut
from ..services import stewardship
from .review import reviewer_required


def _grant(request, public_id):
    grant = stewardship.grant_for(user=request.user, public_id=public_id)
    if grant is None:
        raise Http404
    return grant


def _back(grant):
    return redirect("lab-grant" if grant.lab_id else "grant-detail", public_id=grant.public_id)


@login_required
@require_http_methods(["GET", "POST"])
def grant_report(request, public_id):
    """File a progress report (any time)."""
    grant = _grant(request, public_id)
    form = ProgressReportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.progress_report_file(actor=actor_for(request), grant=grant, report=form.report())
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, _("Thank you; your progress report is filed."))
            return _back(grant)
    context = {"grant": grant, "form": form, "renewing": False, "reports": selectors.grant_report_history(grant=grant)}
    return render(request, "access/grant_report.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def grant_renew(request, public_id):
    """Ask for a renewal; with a progress report (which the release may require)."""
    grant = _grant(request, public_id)
    required = grant.release.progress_report_required
    wants_report = required or request.POST.get("with_report") == "1"
    form = ProgressReportForm(request.POST or None)
    if request.method == "POST" and (not wants_report or form.is_valid()):
        try:
            renewal = services.request_renew(
                actor=actor_for(request), grant=grant, report=form.report() if wants_report else None
            )
        except services.OpenRequestExists as exc:
            messages.info(request, str(exc))
            return redirect("my-requests")
        except services.ServiceError as exc:
            if exc.field in form.fields:
                form.add_error(exc.field, str(exc))
            else:
                messages.error(request, str(exc))
                return _back(grant)
        else:
            messages.success(request, _("Your renewal request is with the reviewers."))
            return redirect("request-detail", public_id=renewal.public_id)
    context = {"grant": grant, "form": form, "renewing": True, "required": required, "reports": []}
    return render(request, "access/grant_report.html", context, status=400 if request.method == "POST" else 200)


@login_required
@require_http_methods(["GET", "POST"])
def grant_close(request, public_id):
    """Close my access: asked to confirm first."""
    grant = _grant(request, public_id)
    if request.method == "POST":
        try:
            services.grant_close(actor=actor_for(request), grant=grant)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
            return _back(grant)
        messages.success(request, _("Your access is closed. Please certify that your copies were deleted."))
        return redirect("grant-closeout", public_id=public_id)
    return render(request, "access/grant_close.html", {"grant": grant})


@login_required
@require_http_methods(["GET", "POST"])
def grant_closeout(request, public_id):
    """The close-outs the person owes on this grant (their own; the lab's, for its owner) and the form."""
    grant = _grant(request, public_id)
    mine = list(CloseOut.objects.filter(grant=grant, user=request.user).order_by("scope"))
    form = CloseOutForm(request.POST or None, initial={"scope": request.GET.get("scope", "")})
    if request.method == "POST" and form.is_valid():
        try:
            services.closeout_file(
                actor=actor_for(request),
                grant=grant,
                deleted_on=form.cleaned_data["deleted_on"],
                locations=form.cleaned_data["locations"],
                statement=form.cleaned_data["statement"],
                scope=form.cleaned_data.get("scope") or None,
            )
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, _("Thank you; your close-out is recorded."))
            return redirect("grant-closeout", public_id=public_id)
    outstanding = [c for c in mine if c.is_outstanding]
    context = {"grant": grant, "closeouts": mine, "outstanding": outstanding, "form": form}
    return render(request, "access/grant_closeout.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def grant_register_withdraw(request, public_id):
    grant = _grant(request, public_id)
    try:
        services.register_withdraw(actor=actor_for(request), grant=grant)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your entry has left the public register."))
    return _back(grant)


@login_required
@require_POST
def grant_register_member(request, public_id):
    """A lab member says whether the lab's register entry names them."""
    grant = _grant(request, public_id)
    try:
        services.register_seat_consent(
            actor=actor_for(request), grant=grant, consent=request.POST.get("consent") == "1"
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    return _back(grant)


@require_safe
def release_register(request, repo_id):
    """The public register of approved uses, as a page and (?format=json) JSON."""
    release = selectors.release_get(repo_id=repo_id, user=request.user)
    if release is None or not release.is_gated or not release.public_register:
        raise Http404
    entries = transparency.register_entries(release)
    if request.GET.get("format") == "json":
        return JsonResponse({"release": release.repo_id, "entries": entries})
    return render(request, "access/register.html", {"release": release, "entries": entries})


@reviewer_required
@require_safe
def review_closeouts(request):
    """Close-outs still owed, oldest first."""
    outstanding = transparency.outstanding_closeouts()
    return render(
        request, "access/review/closeouts.html", {"closeouts": outstanding[:500], "total": outstanding.count()}
    )
