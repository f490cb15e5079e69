"""The reviewer's side: the queue, a request's detail and decisions, grants, and audit exports."""

from __future__ import annotations

import csv
import json
from datetime import datetime, time, timedelta
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db.models import Count, F, Q
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_countries import countries

from .. import questions, selectors, services
from ..api.requests import attachment_response
from ..decorators import recent_login_required
from ..forms import BulkDecisionForm, DecisionForm, RevokeForm
from ..http import actor_for
from ..models import AccessRequest, AuditEvent, DownloadEvent, Grant, ModelRelease, RequestAttachment
from . import labs
from .requests import answers_shown


def reviewer_required(view):
    """Reviewers only (the review permission, not just is_staff). Others get a 404: the pages do not exist
    for them, so request ids cannot be probed."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not selectors.is_reviewer(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper


QUEUE_FILTERS = ("status", "release", "country", "organization_type", "search")


def _page(request, queryset, per_page=50):
    """Paginate ids only (the count and the OFFSET walk an index, with no joins), then load that page's rows:
    deep pages of a 100k-request queue stay fast."""
    paginator = Paginator(queryset.values_list("pk", flat=True), per_page)
    try:
        page = paginator.page(request.GET.get("page") or 1)
    except (EmptyPage, PageNotAnInteger):
        raise Http404 from None
    ids = list(page.object_list)
    rows = queryset.model.objects.select_related(*_related(queryset)).in_bulk(ids)
    page.object_list = [rows[pk] for pk in ids if pk in rows]
    return page


def _related(queryset) -> list[str]:
    related = queryset.query.select_related
    return list(related) if isinstance(related, dict) else []


@reviewer_required
@require_safe
def queue(request):
    filters = {name: (request.GET.get(name) or "").strip()[:200] for name in QUEUE_FILTERS}
    if "status" not in request.GET:
        filters["status"] = "pending"
    queryset = selectors.review_queue(**{k: v or None for k, v in filters.items()})
    context = {
        "page": _page(request, queryset),
        "filters": filters,
        "statuses": [(v, label) for v, label in AccessRequest.Status.choices if v != AccessRequest.Status.DRAFT],
        "org_types": AccessRequest.OrganizationType.choices,
        "releases": ModelRelease.objects.filter(access="gated").order_by("repo_id"),
        "countries": list(countries),
        "bulk_form": BulkDecisionForm(),
        "querystring": "&".join(f"{k}={v}" for k, v in filters.items() if v),
    }
    return render(request, "access/review/queue.html", context)


@reviewer_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def detail(request, public_id):
    access_request = (
        AccessRequest.objects.select_related("release", "applicant", "license", "renewal_of")
        .filter(public_id=public_id)
        .first()
    )
    if access_request is None:
        raise Http404
    form = DecisionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        enqueued = services.Enqueued()
        action, reason, actor = form.cleaned_data["action"], form.cleaned_data["reason"], actor_for(request)
        try:
            if action == "approve":
                services.request_approve(actor=actor, access_request=access_request, reason=reason, enqueued=enqueued)
            elif action == "reject":
                services.request_reject(actor=actor, access_request=access_request, reason=reason)
            else:
                services.request_ask_info(actor=actor, access_request=access_request, question=reason)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Decision recorded."))
            if form.cleaned_data["action"] == "approve" and enqueued.ok is False:
                messages.warning(
                    request,
                    _(
                        "The approval is saved, but the task queue is unreachable: the grant will be issued as soon "
                        "as it is back."
                    ),
                )
        return redirect("review-detail", public_id=public_id)
    history = (
        AccessRequest.objects.filter(applicant=access_request.applicant)
        .exclude(pk=access_request.pk)
        .select_related("release")
        .order_by("-created_at")
    )
    context = {
        "r": access_request,
        "form": form,
        "history": history,
        "renewed_grant_events": _grant_history(access_request.renewal_of),
        "events": access_request.events.select_related("actor").order_by("created_at", "id"),
        "grant": Grant.objects.filter(request=access_request).first(),
        "answers": answers_shown(access_request),
        "attachments": access_request.attachments.select_related("question").order_by("created_at"),
        **labs.review_request_context(access_request),
    }
    return render(request, "access/review/detail.html", context)


@reviewer_required
@require_safe
def attachment(request, public_id):
    """An applicant's uploaded file, streamed by the portal to reviewers only (every read is audited)."""
    found = RequestAttachment.objects.select_related("request").filter(public_id=public_id).first()
    if found is None:
        raise Http404
    return attachment_response(request, found)


def _grant_history(grant: Grant | None):
    """Everything that happened to the grant a renewal would extend (issue, batches, revocation, expiry), and to
    the request that led to it: a reviewer deciding a renewal sees why access ended, if it did."""
    if grant is None:
        return []
    return (
        AuditEvent.objects.filter(Q(target_type="Grant", target_id=grant.public_id) | Q(request_id=grant.request_id))
        .select_related("actor")
        .order_by("created_at", "id")
    )


@reviewer_required
@recent_login_required
@require_POST
def bulk(request):
    form = BulkDecisionForm(request.POST)
    ids = [i for i in request.POST.getlist("ids") if i][:500]
    if not form.is_valid() or not ids:
        messages.error(request, _("Choose requests and an action (a rejection needs a reason)."))
    else:
        result = services.requests_decide_many(
            actor=actor_for(request),
            public_ids=ids,
            action=form.cleaned_data["action"],
            reason=form.cleaned_data.get("reason") or "",
        )
        messages.success(request, _("%(n)d requests decided.") % {"n": len(result["done"])})
        if result["refused"]:
            messages.warning(
                request, _("%(n)d were refused: already decided or withdrawn.") % {"n": len(result["refused"])}
            )
    return redirect(
        request.POST.get("next") if str(request.POST.get("next", "")).startswith("/review") else "review-queue"
    )


@reviewer_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def grant_detail(request, public_id):
    grant = Grant.objects.select_related("user", "release", "request", "revoked_by").filter(public_id=public_id).first()
    if grant is None:
        raise Http404
    form = RevokeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.grant_revoke(actor=actor_for(request), grant=grant, reason=form.cleaned_data["reason"])
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("The grant was revoked; the portal refuses this researcher from now on."))
        return redirect("review-grant", public_id=public_id)
    fetched = (
        DownloadEvent.objects.filter(grant=grant, file__isnull=False)
        .values("file__path")
        .annotate(times=Count("id"))
        .order_by("file__path")
    )
    context = {
        "grant": grant,
        "form": form,
        "fetched": fetched,
        "file_total": grant.release.files.count(),
        "manifests": DownloadEvent.objects.filter(grant=grant, file__isnull=True).count(),
        **labs.review_grant_context(grant),
    }
    return render(request, "access/review/grant.html", context)


def _date_range(request):
    """The export's days from `from` and `to` (YYYY-MM-DD; the last 30 days by default). A date that is given
    but is no real day raises ValueError with a message for the reviewer."""
    today = timezone.localdate()
    days = {"from": today - timedelta(days=30), "to": today}
    for name in days:
        value = request.GET.get(name) or ""
        try:
            day = parse_date(value)  # None when not YYYY-MM-DD, ValueError when no such day (2024-02-30)
        except ValueError:
            day = None
        if value and day is None:
            raise ValueError(
                _("The “%(name)s” date is not a real day; write it as YYYY-MM-DD, e.g. 2024-02-29.") % {"name": name}
            )
        days[name] = day or days[name]
    start, end = days["from"], days["to"]
    tz = timezone.get_current_timezone()
    return (
        timezone.make_aware(datetime.combine(start, time.min), tz),
        timezone.make_aware(datetime.combine(end, time.max), tz),
        start,
        end,
    )


class _Echo:
    def write(self, value):
        return value


def _csv_response(filename, header, rows):
    writer = csv.writer(_Echo())

    def stream():
        yield writer.writerow(header)
        for row in rows:
            # A cell starting with = + - @, a tab or a carriage return can run as a formula in a spreadsheet.
            yield writer.writerow(["'" + c if isinstance(c, str) and c and c[0] in "=+-@\t\r" else c for c in row])

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@reviewer_required
@require_safe
def export(request, kind):
    try:
        start, end, start_date, end_date = _date_range(request)
    except ValueError as exc:
        messages.error(request, str(exc))
        return render(request, "base.html", status=400)
    if kind == "audit":
        rows = (
            (
                e.created_at.isoformat(),
                e.action,
                e.actor.email if e.actor else "",
                e.credential,
                e.target_type,
                e.target_id,
                e.ip or "",
                json.dumps(e.data, sort_keys=True, ensure_ascii=False),
            )
            for e in AuditEvent.objects.filter(created_at__range=(start, end)).select_related("actor").iterator()
        )
        header = ["time", "action", "actor", "credential", "target_type", "target_id", "ip", "data"]
    elif kind == "downloads":
        rows = (
            (
                d.created_at.isoformat(),
                d.release.repo_id,
                d.file.path if d.file else "",
                d.user.email if d.user else "",
                d.token.prefix if d.token else "",
                d.via,
                d.manifest_format,
                d.ip or "",
            )
            for d in DownloadEvent.objects.filter(created_at__range=(start, end))
            .select_related("release", "file", "user", "token")
            .iterator()
        )
        header = ["time", "release", "file", "user", "token", "via", "manifest_format", "ip"]
    elif kind == "requests":
        header, rows = _request_rows(start, end)
    else:
        raise Http404
    services.audit(
        actor=actor_for(request),
        action="export.downloaded",
        data={"kind": kind, "from": str(start_date), "to": str(end_date)},
    )
    return _csv_response(f"{kind}-{start_date}-{end_date}.csv", header, rows)


REQUEST_COLUMNS = [
    "submitted",
    "id",
    "status",
    "release",
    "full_name",
    "email",
    "affiliation",
    "organization_type",
    "country",
    "role",
    "intended_use",
    "publications",
    "license",
    "license_version",
    "license_accepted_at",
    "decided_at",
    "answers",
    "attachments",
]


def _request_rows(start, end):
    """Every request submitted in the range with its answers (by question id, as text) and attachments."""
    queryset = selectors.with_answers(
        AccessRequest.objects.filter(created_at__range=(start, end))
        .exclude(status=AccessRequest.Status.DRAFT)
        .select_related("release", "license")
        .order_by("created_at", "id")
    )

    def rows():
        for r in queryset.iterator(chunk_size=500):
            attachments = {a.public_id: a for a in r.attachments.all()}
            answers = {
                a.question.key: questions.display(a.question, a.value, "en", attachments) for a in r.answers.all()
            }
            yield (
                r.created_at.isoformat(),
                r.public_id,
                r.status,
                r.release.repo_id,
                r.full_name,
                r.email,
                r.affiliation,
                r.organization_type,
                r.country.code,
                r.role,
                r.intended_use,
                r.publications,
                r.license.slug,
                r.license_version,
                r.license_accepted_at.isoformat(),
                r.decided_at.isoformat() if r.decided_at else "",
                json.dumps(answers, sort_keys=True, ensure_ascii=False) if answers else "",
                " ".join(f"{a.filename} ({a.sha256})" for a in attachments.values()),
            )

    return REQUEST_COLUMNS, rows()


@reviewer_required
@require_safe
def grants(request):
    """Every grant; `?license=old` lists those whose holders have not accepted their release's current license."""
    queryset = Grant.objects.select_related("user", "release", "license", "release__license").order_by("-issued_at")
    old = request.GET.get("license") == "old"
    if old:
        queryset = queryset.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).exclude(
            license_id=F("release__license_id")
        )
    context = {"page": _page(request, queryset), "now": timezone.now(), "old_only": old}
    return render(request, "access/review/grants.html", context)
