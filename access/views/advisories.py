"""Advisories on the web: an advisory's page (acknowledged there once by those told), and a release's Atom feed of
its public advisories."""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.feedgenerator import Atom1Feed
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_safe

from .. import selectors
from ..decorators import recent_login_required
from ..http import actor_for
from ..models import Advisory
from ..services import ServiceError
from ..services import advisories as service
from .manage import _release, release_manager_required


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


class AdvisoryForm(forms.Form):
    """A draft's fields; the advisories service cleans and checks them again."""

    affected_revisions = forms.MultipleChoiceField(
        label=gettext_lazy("Affected revisions"), widget=forms.CheckboxSelectMultiple
    )
    fixed_revision = forms.ChoiceField(label=gettext_lazy("Fixed in revision"), required=False)
    severity = forms.ChoiceField(label=gettext_lazy("Severity"), choices=Advisory.Severity.choices)
    title = forms.CharField(label=gettext_lazy("Title"), max_length=200)
    summary = forms.CharField(label=gettext_lazy("Summary"), widget=forms.Textarea)
    mitigation = forms.CharField(label=gettext_lazy("What to do"), widget=forms.Textarea, required=False)
    credit = forms.CharField(label=gettext_lazy("Credit"), max_length=200, required=False)
    embargo_until = forms.DateTimeField(
        label=gettext_lazy("Embargo until (UTC)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args, release, **kwargs):
        super().__init__(*args, **kwargs)
        revisions = [
            (r.sha, f"{r.number} · {r.sha[:12]}") for r in release.revisions.filter(published_at__isnull=False)
        ]
        self.fields["affected_revisions"].choices = revisions
        self.fields["fixed_revision"].choices = [("", "—"), *revisions]

    def data_for_service(self) -> dict:
        data = dict(self.cleaned_data)
        when = data.get("embargo_until")
        data["embargo_until"] = when.replace(tzinfo=UTC) if when and timezone.is_naive(when) else when
        return data


def _initial(advisory: Advisory) -> dict:
    return {
        "affected_revisions": [r.sha for r in advisory.affected_revisions.all()],
        "fixed_revision": advisory.fixed_revision.sha if advisory.fixed_revision_id else "",
        "severity": advisory.severity,
        "title": advisory.title,
        "summary": advisory.summary,
        "mitigation": advisory.mitigation,
        "credit": advisory.credit,
        "embargo_until": advisory.embargo_until,
    }


@release_manager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def manage_advisories(request, repo_id):
    """A release's advisories, and the form for a new draft."""
    release = _release(repo_id)
    form = AdvisoryForm(request.POST or None, release=release)
    if request.method == "POST" and form.is_valid():
        try:
            advisory = service.advisory_create(actor=actor_for(request), release=release, data=form.data_for_service())
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, _("Draft saved."))
            return redirect("manage-advisory", repo_id=release.repo_id, public_id=advisory.public_id)
    rows = Advisory.objects.filter(release=release).order_by("-created_at")
    return render(request, "access/advisories/manage.html", {"release": release, "form": form, "advisories": rows})


@release_manager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def manage_advisory(request, repo_id, public_id):
    """One advisory: edit the draft and publish it; once published, add dated updates and withdraw revisions."""
    release = _release(repo_id)
    advisory = Advisory.objects.filter(release=release, public_id=public_id).first()
    if advisory is None:
        raise Http404
    form = AdvisoryForm(
        request.POST if request.POST.get("do") == "save" else None, release=release, initial=_initial(advisory)
    )
    if request.method == "POST":
        do, actor = request.POST.get("do"), actor_for(request)
        try:
            if do == "save" and form.is_valid():
                service.advisory_update(actor=actor, advisory=advisory, data=form.data_for_service())
                messages.success(request, _("Draft saved."))
            elif do == "publish":
                advisory = service.advisory_publish(actor=actor, advisory=advisory)
                messages.success(request, _("Published as %(id)s.") % {"id": advisory.identifier})
            elif do == "update":
                service.advisory_add_update(actor=actor, advisory=advisory, body=request.POST.get("body", ""))
                messages.success(request, _("Update added."))
            elif do == "withdraw":
                service.revision_withdraw(actor=actor, advisory=advisory)
                messages.success(request, _("The affected revisions are withdrawn."))
            else:
                do = None
        except ServiceError as exc:
            if do == "save":
                form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            else:
                messages.error(request, str(exc))
            do = None
        if do is not None:
            return redirect("manage-advisory", repo_id=release.repo_id, public_id=advisory.public_id)
    context = {"release": release, "advisory": advisory, "form": form}
    return render(request, "access/advisories/manage_one.html", context)
