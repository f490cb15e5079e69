"""The reviewer's side: the queue, a request's detail and decisions, grants, and audit exports."""

from __future__ import annotations

import csv
import json
from datetime import datetime, time, timedelta
from functools import wraps
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import EmptyPage, Paginator
from django.db.models import Count, F, Prefetch, Q
from django.http import Http404, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_countries import countries

from .. import inputs, questions, selectors, services, stats
from ..api.requests import attachment_response
from ..decorators import recent_login_required
from ..durations import duration_text
from ..forms import BulkDecisionForm, DecisionForm, RevokeForm
from ..http import actor_for
from ..identities import submitted_against, verified_facts
from ..models import (
    AccessRequest,
    AuditEvent,
    DownloadEvent,
    Grant,
    LabSeat,
    ModelRelease,
    ReasonTemplate,
    RequestAttachment,
    UrlBatch,
)
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


def queue_filters(params) -> dict:
    """The queue's filters from a query string; no status named means pending (the queue's first tab)."""
    filters = {name: (params.get(name) or "").strip()[:200] for name in QUEUE_FILTERS}
    if "status" not in params:
        filters["status"] = "pending"
    if filters["status"] not in ("", *AccessRequest.Status.values):
        filters["status"] = "pending"
    return filters


def _queryset(filters: dict):
    return selectors.review_queue(**{k: v or None for k, v in filters.items()})


def _page(number, queryset, per_page=50):
    """Paginate ids only (the count and the OFFSET walk an index, with no joins), then load that page's rows:
    deep pages of a 100k-request queue stay fast."""
    paginator = Paginator(queryset.values_list("pk", flat=True), per_page)
    try:
        page = paginator.page(_page_value(number, "page"))
    except EmptyPage:
        raise Http404 from None
    ids = list(page.object_list)
    rows = queryset.model.objects.select_related(*_related(queryset)).in_bulk(ids)
    page.object_list = [rows[pk] for pk in ids if pk in rows]
    return page


def page_number(request, name: str) -> int:
    """A page asked for in the query string (1 when absent); any other value than a page number is a 404, as a
    page past the last one is."""
    return _page_value(request.GET.get(name), name)


def _page_value(raw, name: str) -> int:
    try:
        return inputs.integer(raw or 1, name=name, low=1, high=inputs.MAX_INT)
    except inputs.InputError:
        raise Http404 from None


def _related(queryset) -> list[str]:
    related = queryset.query.select_related
    return list(related) if isinstance(related, dict) else []


def _status_tabs(filters: dict) -> list[dict]:
    """The queue's status tabs, each with how many requests it holds under the other filters (one grouped
    COUNT) and its link keeping those filters."""
    rows = _queryset({**filters, "status": ""}).order_by().values("status").annotate(n=Count("id"))
    counts = {row["status"]: row["n"] for row in rows}
    counts[""] = sum(counts.values())
    others = {k: v for k, v in filters.items() if v and k != "status"}
    tabs = [
        ("pending", _("Pending")),
        ("needs_info", _("Waiting on applicant")),
        ("approved", _("Approved")),
        ("rejected", _("Rejected")),
        ("withdrawn", _("Withdrawn")),
        ("", _("All")),
    ]
    return [
        {"value": v, "label": label, "count": counts.get(v, 0), "query": urlencode({**others, "status": v})}
        for v, label in tabs
    ]


@reviewer_required
@require_safe
def queue(request):
    return _queue_page(request, request.GET, selected=request.GET.getlist("selected"), back=request.get_full_path())


def _queue_page(request, params, *, selected, back, bulk_form=None, status=200):
    """The queue for these query parameters; `bulk_form` is a refused bulk form to show with its errors, `back`
    the queue URL a bulk action returns to."""
    filters = queue_filters(params)
    page = _page(params.get("page"), _queryset(filters))
    now = timezone.now()
    for r in page.object_list:
        r.overdue = stats.is_overdue(r, now)
        r.answered = r.status == AccessRequest.Status.PENDING and bool(r.info_response)
    context = {
        "page": page,
        "filters": filters,
        "filtered": any(filters[k] for k in QUEUE_FILTERS if k != "status"),
        "tabs": _status_tabs(filters),
        "org_types": AccessRequest.OrganizationType.choices,
        "releases": ModelRelease.objects.filter(access="gated").order_by("repo_id"),
        "countries": list(countries),
        "bulk_form": bulk_form or BulkDecisionForm(),
        "back": back,
        "querystring": urlencode({k: v for k, v in filters.items() if v or k == "status"}),
        "selected": set(selected),
        "export_kinds": [
            ("requests", _("Requests")),
            ("grants", _("Grants")),
            ("audit", _("Audit log")),
            ("downloads", _("Downloads")),
        ],
        "today": timezone.localdate(),
        "month_ago": timezone.localdate() - timedelta(days=30),
        "lab_seats": selectors.requested_lab_seats()[:50],
    }
    return render(request, "access/review/queue.html", context, status=status)


def _next_in_queue(current: AccessRequest, q: str) -> AccessRequest | None:
    """The request after this one in the queue the reviewer came from (same filters, same order); the first
    one still in it when this was the last."""
    filters = queue_filters(QueryDict(q))
    queryset = _queryset(filters).exclude(pk=current.pk)
    after = Q(created_at__gt=current.created_at) | Q(created_at=current.created_at, pk__gt=current.pk)
    return queryset.filter(after).first() or queryset.first()


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
    q = _queue_reference(request)
    language = access_request.applicant.language or settings.LANGUAGE_CODE
    form = DecisionForm(request.POST or None, language=language)
    if request.method == "POST" and form.is_valid():
        if _decide(request, access_request, form) and request.POST.get("next"):
            following = _next_in_queue(access_request, q)
            if following is None:
                messages.info(request, _("That was the last request in this queue."))
                return redirect(reverse("review-queue") + "?" + q)
            return redirect(_detail_url(following, q))
        return redirect(_detail_url(access_request, q))
    context = {
        "r": access_request,
        "form": form,
        "failed": form.data.get("action") if form.is_bound else None,
        "actions": _decision_actions(language),
        "q": q,
        "history": AccessRequest.objects.filter(applicant=access_request.applicant)
        .exclude(pk=access_request.pk)
        .select_related("release")
        .order_by("-created_at"),
        "renewed_grant_events": _grant_history(access_request.renewal_of),
        "events": access_request.events.select_related("actor").order_by("created_at", "id"),
        "grant": Grant.objects.filter(request=access_request).first(),
        "answers": answers_shown(access_request),
        "attachments": access_request.attachments.select_related("question").order_by("created_at"),
        **labs.review_request_context(access_request),
        # A renewal: the grant's history of progress reports.
        "reports": selectors.grant_report_history(grant=access_request.renewal_of)
        if access_request.renewal_of_id
        else [],
        "overdue": stats.is_overdue(access_request),
        **verified_context(access_request),
    }
    return render(request, "access/review/detail.html", context, status=400 if form.is_bound else 200)


def verified_context(access_request: AccessRequest) -> dict:
    """What is verified about the applicant, apart from what they typed, and whether what they typed matches."""
    facts = verified_facts(access_request.applicant)
    matches = submitted_against(
        facts, full_name=access_request.full_name, affiliation=access_request.affiliation, email=access_request.email
    )
    return {"verified": facts, "matches": matches}


def _queue_reference(request) -> str:
    """The queue the reviewer came from (`q`), rebuilt from its known filters only: it goes back into URLs."""
    raw = str((request.POST.get("q") if request.method == "POST" else request.GET.get("q")) or "")[:2000]
    return urlencode({k: v for k, v in queue_filters(QueryDict(raw)).items() if v or k == "status"})


def _detail_url(access_request: AccessRequest, q: str) -> str:
    return reverse("review-detail", kwargs={"public_id": access_request.public_id}) + "?" + urlencode({"q": q})


def _decision_actions(language: str) -> list[dict]:
    """The decision page's three forms, each with the saved reasons of its own action, in the applicant's
    language where a reason has a text in it."""
    reasons = {kind: [] for kind in ReasonTemplate.Kind.values}
    for template in ReasonTemplate.objects.order_by("title"):
        template.shown_text = template.text_in(language)
        reasons[template.kind].append(template)
    forms = [
        ("approve", _("Approve"), _("Approve and open next"), _("Note to the applicant (optional)"), "btn-primary"),
        (
            "request_info",
            _("Ask for information"),
            _("Ask and open next"),
            _("Your question (shown to the applicant)"),
            "btn-secondary",
        ),
        ("reject", _("Reject"), _("Reject and open next"), _("Reason (shown to the applicant)"), "btn-danger"),
    ]
    return [
        {
            "value": value,
            "label": label,
            "next_label": next_label,
            "reason_label": reason_label,
            "required": value != "approve",
            "reasons": reasons[value],
            "style": style,
        }
        for value, label, next_label, reason_label, style in forms
    ]


def _decide(request, access_request: AccessRequest, form: DecisionForm) -> bool:
    """Record the decision through its service; tells the reviewer what happened. Returns whether it did."""
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
        return False
    messages.success(
        request,
        {
            "approve": _("Approved: %(name)s → %(repo)s."),
            "reject": _("Rejected: %(name)s → %(repo)s."),
            "request_info": _("Question sent: %(name)s → %(repo)s."),
        }[action]
        % {"name": access_request.full_name, "repo": access_request.release.repo_id},
    )
    if action == "approve" and enqueued.ok is False:
        messages.warning(
            request,
            _(
                "The approval is saved, but the task queue is unreachable: the grant will be issued as soon "
                "as it is back."
            ),
        )
    return True


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


def _queue_url(request, selected=()) -> str:
    """The queue page a bulk action came from (`next`, a /review/ path only), with `selected` ticked again."""
    target = str(request.POST.get("next", ""))
    if not target.startswith("/review/") or target.startswith("//"):
        target = reverse("review-queue")
    if selected:
        parts = urlsplit(target)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "selected"]
        query += [("selected", i) for i in selected]
        target = parts._replace(query=urlencode(query)).geturl()
    return target


def _bulk_done(action: str, n: int) -> str:
    if action == "approve":
        return ngettext("%(n)d request approved.", "%(n)d requests approved.", n) % {"n": n}
    return ngettext("%(n)d request rejected.", "%(n)d requests rejected.", n) % {"n": n}


@reviewer_required
@recent_login_required
@require_POST
def bulk(request):
    """Approve or reject the selected requests, in two steps: the first POST shows what would be decided (each
    request, its release, lab or not) and asks once; only the confirmed POST decides. A refused form (no action
    chosen, a rejection without a reason) is the queue again with its errors and the selection kept. Whatever
    could not be decided stays selected, each with why."""
    form = BulkDecisionForm(request.POST)
    ids = [i for i in request.POST.getlist("ids") if i][:500]
    if not ids:
        messages.error(request, _("Select requests first."))
        return redirect(_queue_url(request))
    if not form.is_valid():
        messages.error(request, _("Choose an action; a rejection needs a reason. Nothing was changed."))
        back = _queue_url(request)
        params = QueryDict(urlsplit(back).query)
        return _queue_page(request, params, selected=ids, back=back, bulk_form=form, status=400)
    action, reason = form.cleaned_data["action"], form.cleaned_data.get("reason") or ""
    if not request.POST.get("confirm"):
        return _bulk_confirm(request, ids, action, reason)
    result = services.requests_decide_many(actor=actor_for(request), public_ids=ids, action=action, reason=reason)
    if result["done"]:
        messages.success(request, _bulk_done(action, len(result["done"])))
    if result["refused"]:
        names = dict(
            AccessRequest.objects.filter(public_id__in=result["refused"]).values_list("public_id", "full_name")
        )
        for public_id, why in result["refused"].items():
            messages.error(
                request, _("Not decided: %(name)s — %(why)s") % {"name": names.get(public_id, public_id), "why": why}
            )
    return redirect(_queue_url(request, list(result["refused"])))


def _bulk_confirm(request, ids: list[str], action: str, reason: str):
    """The page that lists what a bulk decision would decide and asks once; its form carries exactly the
    requests listed."""
    rows = list(
        AccessRequest.objects.filter(public_id__in=ids).select_related("release", "lab").order_by("created_at", "id")
    )
    if not rows:
        messages.error(request, _("Select requests first."))
        return redirect(_queue_url(request))
    for r in rows:
        r.answered = r.status == AccessRequest.Status.PENDING and bool(r.info_response)
    context = {
        "rows": rows,
        "action": action,
        "reason": reason,
        "next": _queue_url(request),
        "cancel_url": _queue_url(request, [r.public_id for r in rows]),
    }
    return render(request, "access/review/bulk_confirm.html", context)


def _link_lifetimes(grant: Grant) -> dict:
    """How long links already handed out keep working after a revocation, for the confirmation."""
    now = timezone.now()
    batch = (
        UrlBatch.objects.filter(grant=grant, status=UrlBatch.Status.READY, expires_at__gt=now)
        .order_by("-expires_at")
        .first()
    )
    return {
        "direct": duration_text(settings.SIGNED_URL_TTL),
        "batch_until": batch.expires_at if batch else None,
        "batch_left": duration_text(batch.expires_at - now) if batch else None,
        "batch_max": duration_text(settings.GRANT_URL_TTL),
    }


FETCHED_PER_PAGE = 100


@reviewer_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def grant_detail(request, public_id):
    grant = Grant.objects.select_related("user", "release", "request", "revoked_by").filter(public_id=public_id).first()
    if grant is None:
        raise Http404
    lifetimes = _link_lifetimes(grant)
    form = RevokeForm(request.POST or None, lifetimes=lifetimes)
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
    paginator = Paginator(fetched, FETCHED_PER_PAGE)
    try:
        fetched_page = paginator.page(page_number(request, "files"))
    except EmptyPage:
        raise Http404 from None
    context = {
        "grant": grant,
        "form": form,
        "lifetimes": lifetimes,
        "fetched": fetched_page,
        "file_total": grant.release.files.count(),
        "manifests": DownloadEvent.objects.filter(grant=grant, file__isnull=True).count(),
        **labs.review_grant_context(grant),
        "reports": selectors.grant_report_history(grant=grant),
        "closeouts": grant.closeouts.select_related("user").order_by("asked_at", "id"),
    }
    return render(request, "access/review/grant.html", context, status=400 if form.is_bound else 200)


def _date_range(request):
    """The export's days from `from` and `to` (YYYY-MM-DD; the last 30 days by default). A date that is given
    but is no real day, or is off the portal's calendar, raises InputError (a ValueError) with a message for the
    reviewer."""
    today = timezone.localdate()
    days = {"from": today - timedelta(days=30), "to": today}
    for name in days:
        value = request.GET.get(name) or ""
        if value:
            days[name] = inputs.day(value, name=name)
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


def _cell(value):
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    # A cell starting with = + - @, a tab or a carriage return can run as a formula in a spreadsheet.
    if isinstance(value, str) and value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


def _csv_response(filename, header, rows):
    writer = csv.writer(_Echo())

    def stream():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([_cell(c) for c in row])

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _json_response(filename, header, rows):
    """A JSON array of objects, streamed a row at a time (the audit log of a year is large)."""

    def stream():
        yield "["
        for i, row in enumerate(rows):
            yield ("," if i else "") + "\n" + json.dumps(dict(zip(header, row, strict=True)), ensure_ascii=False)
        yield "\n]\n"

    response = StreamingHttpResponse(stream(), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


EXPORT_KINDS = ("requests", "grants", "audit", "downloads")


def _export_release(request) -> ModelRelease | None:
    repo_id = (request.GET.get("release") or "").strip()[:200]
    if not repo_id:
        return None
    release = ModelRelease.objects.filter(repo_id=repo_id).first()
    if release is None:
        raise ValueError(_("There is no release %(repo)s.") % {"repo": repo_id})
    return release


@reviewer_required
@require_safe
def export(request, kind, fmt="csv"):
    """Requests (with the queue's filters), grants, audit events or downloads in a date range, as CSV or JSON;
    `release` narrows each to one release. Audited, since it carries personal data out of the portal."""
    if kind not in EXPORT_KINDS or fmt not in ("csv", "json"):
        raise Http404
    try:
        start, end, start_date, end_date = _date_range(request)
        release = _export_release(request)
    except ValueError as exc:
        messages.error(request, str(exc))
        return render(request, "base.html", status=400)
    header, rows = EXPORTERS[kind](request, start, end, release)
    filters = {k: v for k, v in request.GET.items() if k in QUEUE_FILTERS and v}
    services.audit(
        actor=actor_for(request),
        action="export.downloaded",
        data={"kind": kind, "format": fmt, "from": str(start_date), "to": str(end_date), "filters": filters},
    )
    respond = _csv_response if fmt == "csv" else _json_response
    return respond(f"{kind}-{start_date}-{end_date}.{fmt}", header, rows)


def _audit_rows(request, start, end, release):
    events = (
        AuditEvent.objects.filter(created_at__range=(start, end)).select_related("actor").order_by("created_at", "id")
    )
    if release is not None:
        events = events.filter(Q(request__release=release) | Q(target_type="ModelRelease", target_id=str(release.pk)))
    rows = (
        (
            e.created_at.isoformat(),
            e.action,
            e.actor.email if e.actor else "",
            e.credential,
            e.target_type,
            e.target_id,
            e.ip or "",
            e.data,
        )
        for e in events.iterator(chunk_size=2000)
    )
    return ["time", "action", "actor", "credential", "target_type", "target_id", "ip", "data"], rows


def _download_rows(request, start, end, release):
    events = (
        DownloadEvent.objects.filter(created_at__range=(start, end))
        .select_related("release", "file", "user", "token")
        .order_by("created_at", "id")
    )
    if release is not None:
        events = events.filter(release=release)
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
        for d in events.iterator(chunk_size=2000)
    )
    return ["time", "release", "file", "user", "token", "via", "manifest_format", "ip"], rows


def _grant_rows(request, start, end, release):
    """Grants issued in the range."""
    grants = (
        Grant.objects.filter(issued_at__range=(start, end))
        .select_related("user", "release", "request", "license", "revoked_by")
        .order_by("issued_at", "id")
    )
    if release is not None:
        grants = grants.filter(release=release)
    now = timezone.now()
    rows = (
        (
            g.issued_at.isoformat(),
            g.public_id,
            g.release.repo_id,
            g.user.email,
            g.request.public_id,
            g.expires_at.isoformat(),
            g.revoked_at.isoformat() if g.revoked_at else "",
            g.revoked_by.email if g.revoked_by else "",
            g.revoke_reason,
            g.license.version if g.license else "",
            "revoked" if g.revoked_at else ("active" if g.expires_at > now else "expired"),
        )
        for g in grants.iterator(chunk_size=2000)
    )
    header = [
        "issued", "id", "release", "user", "request", "expires", "revoked", "revoked_by", "revoke_reason",
        "license_version", "state",
    ]  # fmt: skip
    return header, rows


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


def _request_rows(request, start, end, release):
    """Every request submitted in the range that the queue's filters select (any status unless one is named),
    with its answers (by question id, as text) and attachments."""
    filters = {name: (request.GET.get(name) or "").strip()[:200] for name in QUEUE_FILTERS}
    if release is not None:
        filters["release"] = release.repo_id
    if filters["status"] not in ("", *AccessRequest.Status.values):
        filters["status"] = ""
    queryset = selectors.with_answers(
        _queryset(filters)
        .filter(created_at__range=(start, end))
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
                answers or "",
                " ".join(f"{a.filename} ({a.sha256})" for a in attachments.values()),
            )

    return REQUEST_COLUMNS, rows()


EXPORTERS = {"requests": _request_rows, "grants": _grant_rows, "audit": _audit_rows, "downloads": _download_rows}


@reviewer_required
@require_safe
def grants(request):
    """Every grant; `?license=old` lists those whose holders have not accepted their release's current license."""
    queryset = (
        Grant.objects.select_related("user", "release", "license", "release__license", "lab")
        .prefetch_related(Prefetch("seats", queryset=LabSeat.objects.select_related("user").order_by("user__email")))
        .order_by("-issued_at")
    )
    old = request.GET.get("license") == "old"
    if old:
        queryset = queryset.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).exclude(
            license_id=F("release__license_id")
        )
    context = {"page": _page(request.GET.get("page"), queryset), "now": timezone.now(), "old_only": old}
    return render(request, "access/review/grants.html", context)
