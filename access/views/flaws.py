"""Flaw reports on the web: the form on a release, the reporter's pages, and the reviewers' triage queue."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from .. import selectors, services, stats
from ..api.flaws import flaw_attachment_response
from ..decorators import recent_login_required
from ..forms import FlawCommentForm, FlawReportForm, FlawTriageForm
from ..http import actor_for
from ..models import FlawReport, FlawReportAttachment, User
from ..services.flaws import TEXT_FIELDS, can_triage


def triager_required(view):
    """Reviewers and release managers only; others get a 404, so report ids cannot be probed."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not can_triage(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper


def _form_error(form, exc: services.ServiceError) -> None:
    field = {"attachments": "attachment"}.get(exc.field, exc.field)
    form.add_error(field if field in form.fields else None, str(exc))


@login_required
@require_http_methods(["GET", "POST"])
def report_new(request, repo_id):
    release = selectors.release_get(repo_id=repo_id, user=request.user)
    if release is None:
        raise Http404
    terms = services.disclosure_terms_current(release=release)
    may = services.may_report(request.user, release)
    revisions = list(selectors.release_revisions(release=release))
    form = FlawReportForm(
        request.POST or None,
        request.FILES or None,
        revisions=revisions,
        initial={"terms_version": terms.version, "revisions": [revisions[0].sha] if revisions else []},
    )
    if request.method == "POST" and may and form.is_valid():
        data = form.cleaned_data
        upload = data.get("attachment")
        try:
            report = services.flaw_report_file(
                actor=actor_for(request),
                release=release,
                data={k: data[k] for k in TEXT_FIELDS}
                | {
                    "category": data["category"],
                    "severity": data["severity"],
                    "other_models": data["other_models"],
                    "anonymous": data["anonymous"],
                },
                revisions=data["revisions"],
                terms_version=data["terms_version"],
                accept_terms=data["accept_terms"],
                uploads=[upload] if upload else [],
            )
        except services.ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, _("Your report was filed. We emailed you a confirmation."))
            return redirect("flaw-report-detail", public_id=report.public_id)
    context = {
        "release": release,
        "form": form,
        "terms": terms,
        "terms_text": terms.text_in(translation.get_language() or ""),
        "may_report": may,
    }
    return render(request, "access/flaws/new.html", context, status=200 if may else 403)


@login_required
@require_safe
def my_reports(request):
    reports = selectors.user_flaw_reports(user=request.user)
    return render(request, "access/flaws/mine.html", {"reports": reports})


def _history(report: FlawReport):
    return report.entries.select_related("author").order_by("created_at", "id")


@login_required
@require_http_methods(["GET", "POST"])
def report_detail(request, public_id):
    """The reporter's page: the report, each change and comment, files, and a comment box."""
    report = selectors.flaw_report_get(user=request.user, public_id=public_id)
    if report is None:
        raise Http404
    form = FlawCommentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.flaw_report_comment(actor=actor_for(request), report=report, body=form.cleaned_data["body"])
        except services.ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, _("Your comment was sent to the reviewers."))
            return redirect("flaw-report-detail", public_id=report.public_id)
    context = {"report": report, "history": _history(report), "form": form, "reviewer_view": False}
    return render(request, "access/flaws/detail.html", context)


@login_required
@require_safe
def report_attachment(request, public_id, attachment_id):
    report = selectors.flaw_report_get(user=request.user, public_id=public_id, triager=can_triage(request.user))
    attachment = FlawReportAttachment.objects.filter(report=report, public_id=attachment_id).first() if report else None
    if attachment is None:
        raise Http404
    return flaw_attachment_response(request, attachment)


QUEUE_STATUSES = [("open", _("Open")), ("all", _("All")), *FlawReport.Status.choices]


@triager_required
@require_safe
def review_queue(request):
    params = request.GET
    status = params.get("status") or "open"
    if status not in selectors.FLAW_QUEUE_STATUSES:
        status = "open"
    release = (params.get("release") or "")[:200]
    assignee = (params.get("assignee") or "")[:254]
    severity = params.get("severity") if params.get("severity") in FlawReport.Severity.values else ""
    reports = selectors.flaw_queue(
        status=status, release=release or None, assignee=assignee or None, severity=severity or None, user=request.user
    )
    page = Paginator(reports, 50).get_page(params.get("page"))
    for report in page.object_list:
        report.overdue = stats.flaw_is_overdue(report)
    context = {
        "page": page,
        "filters": {"status": status, "release": release, "assignee": assignee, "severity": severity},
        "severities": FlawReport.Severity.choices,
        "statuses": QUEUE_STATUSES,
        "releases": selectors.release_list(user=request.user).values_list("repo_id", flat=True),
        "overdue_count": stats.overdue_flaw_reports().count(),
    }
    return render(request, "access/flaws/queue.html", context)


def _triagers():
    users = User.objects.filter(is_active=True).order_by("email")
    return [u for u in users if can_triage(u)][:200]


@triager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def review_detail(request, public_id):
    """A report for reviewers: who filed it, everything in it, triage and comments."""
    report = selectors.flaw_report_get(user=request.user, public_id=public_id, triager=True)
    if report is None:
        raise Http404
    others = FlawReport.objects.filter(release=report.release).exclude(pk=report.pk).exclude(status="duplicate")
    triagers = [u for u in _triagers() if u.pk != report.reporter_id]
    initial = {
        "status": report.status,
        "severity": report.triage_severity,
        "assignee": report.assignee.email if report.assignee_id else "",
        "duplicate_of": report.duplicate_of.public_id if report.duplicate_of_id else "",
    }
    posted = request.POST if request.method == "POST" else None
    triage = FlawTriageForm(
        posted if posted and "triage-status" in posted else None,
        initial=initial,
        triagers=triagers,
        others=others.order_by("-created_at")[:100],
        prefix="triage",
    )
    comment = FlawCommentForm(posted if posted and "comment-body" in posted else None, prefix="comment")
    if posted is not None:
        done = _triage(request, report, triage) if "triage-status" in posted else _comment(request, report, comment)
        if done:
            return redirect("review-flaw-report", public_id=report.public_id)
    context = {
        "report": report,
        "history": _history(report),
        "triage": triage,
        "form": comment,
        "reviewer_view": True,
        "overdue": stats.flaw_is_overdue(report),
    }
    return render(request, "access/flaws/detail.html", context)


def _triage(request, report: FlawReport, form: FlawTriageForm) -> bool:
    if not form.is_valid():
        return False
    data = form.cleaned_data
    by_email = {u.email: u for u in _triagers()}
    duplicate = FlawReport.objects.filter(public_id=data["duplicate_of"], release=report.release).first()
    try:
        services.flaw_report_triage(
            actor=actor_for(request),
            report=report,
            status=data["status"],
            severity=data["severity"],
            note=data["note"],
            duplicate_of=duplicate if data["duplicate_of"] else None,
            assignee=by_email.get(data["assignee"]),
            unassign=not data["assignee"],
        )
    except services.ServiceError as exc:
        _form_error(form, exc)
        return False
    messages.success(request, _("The report was updated; the reporter was emailed."))
    return True


def _comment(request, report: FlawReport, form: FlawCommentForm) -> bool:
    if not form.is_valid():
        return False
    try:
        services.flaw_report_comment(actor=actor_for(request), report=report, body=form.cleaned_data["body"])
    except services.ServiceError as exc:
        _form_error(form, exc)
        return False
    messages.success(request, _("Your comment was sent to the reporter."))
    return True
