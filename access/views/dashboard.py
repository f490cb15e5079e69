"""The reviewers' dashboard (charts over the numbers of access.stats, each with its table) and a release's
public transparency page (aggregates only)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe
from django_countries import countries

from .. import inputs, selectors, stats
from .. import transparency as public_numbers
from ..models import AccessRequest, ModelRelease
from .review import reviewer_required

DAY = 86400
OVERDUE_LISTED = 20


def _days(seconds) -> str:
    return "" if seconds is None else f"{seconds / DAY:.1f}"


def _age_label(low: int, high: int | None) -> str:
    if high is None:
        return _("%(n)d+ days") % {"n": low}
    return _("%(low)d–%(high)d days") % {"low": low, "high": high}


def _rows(data: dict) -> dict:
    """The tables the page shows (and the charts are drawn from): labels for people, raw numbers alongside."""
    org_names = dict(AccessRequest.OrganizationType.choices)
    return {
        "weekly": data["requests_per_week"],
        "decision_times": [
            {**row, "p50_days": _days(row["p50_seconds"]), "p90_days": _days(row["p90_seconds"])}
            for row in data["decision_time_per_month"]
        ],
        "deciders": [
            {
                **row,
                "label": _("Automatic (decision rules)") if row["decider"] == "automatic" else _("Reviewers"),
                "p50_days": _days(row["p50_seconds"]),
                "p90_days": _days(row["p90_seconds"]),
            }
            for row in data["decisions_by_decider"]
        ],
        "ages": [{**row, "label": _age_label(row["min_days"], row["max_days"])} for row in data["pending_ages"]],
        # A year of days: rendered here in one pass, not by the template language's loops (a third of the page's
        # time at 365 rows each).
        "downloads": format_html_join(
            "",
            '<tr><td>{}</td><td class="num" data-value="{}">{}</td><td class="num" data-value="{}">{}</td>'
            '<td class="num" data-value="{}">{}</td><td class="num" data-value="{}">{}</td></tr>',
            (
                (
                    d["day"].isoformat(),
                    d["researchers"],
                    d["researchers"],
                    d["files"],
                    d["files"],
                    f"{d['bytes'] / 1e9:.3f}",
                    filesizeformat(d["bytes"]),
                    d["anonymous"],
                    d["anonymous"],
                )
                for d in data["downloads_per_day"]
            ),
        ),
        "grants": format_html_join(
            "",
            '<tr><td>{}</td><td class="num" data-value="{}">{}</td></tr>',
            ((d["day"].isoformat(), d["active"], d["active"]) for d in data["active_grants"]),
        ),
        "org_types": [
            {**row, "label": org_names.get(row["key"], row["key"])} for row in data["decisions_by_organization_type"]
        ],
        "countries": [
            {**row, "label": countries.name(row["key"]) or row["key"]} for row in data["decisions_by_country"]
        ],
    }


@reviewer_required
@require_safe
def dashboard(request):
    releases = ModelRelease.objects.filter(access=ModelRelease.Access.GATED).order_by("repo_id")
    context = {"releases": releases, "periods": stats.PERIODS, "params": request.GET}
    try:
        filters = stats.parse_filters(request.GET)
    except inputs.InputError as exc:
        messages.error(request, str(exc))
        return render(request, "access/review/dashboard.html", context, status=400)
    now = timezone.now()
    data = stats.review_stats(filters, now=now)
    overdue = list(stats.overdue_requests(release=filters.release, now=now)[:OVERDUE_LISTED])
    for r in overdue:
        r.late_by = now - r.created_at - timedelta(days=r.release.review_deadline_days)
    context.update(
        filters=filters,
        data=data,
        tables=_rows(data),
        overdue=overdue,
        deadlines=sorted({r.review_deadline_days for r in releases}),
        overall_p50=_days(data["decision_time"]["p50_seconds"]),
        overall_p90=_days(data["decision_time"]["p90_seconds"]),
        submitted=sum(data["counts_by_status"].values()),
        waiting_now=sum(row["within_deadline"] + row["overdue"] for row in data["pending_ages"]),
        closeouts_outstanding=public_numbers.outstanding_closeouts(release=filters.release).count(),
    )
    return render(request, "access/review/dashboard.html", context)


TRANSPARENCY_DAYS = 365


def _numbers(numbers: dict) -> dict:
    """The transparency numbers with their times as durations and the rate as a percentage, for the page."""
    for times in numbers["time_to_decision"].values():
        for key in ("p50", "p90"):
            seconds = times[f"{key}_seconds"]
            times[key] = timedelta(seconds=seconds) if seconds is not None else None
    rate = numbers["approval_rate"]
    numbers["approval_percent"] = round(100 * rate) if rate is not None else None
    return numbers


@require_safe
def transparency(request, repo_id):
    """Public when the release publishes it: requests received, approval rate by organization type and the
    median time to decision over the last year. Counts only; no names, no countries."""
    release = selectors.release_get(repo_id=repo_id, user=request.user)
    if release is None or not release.is_gated or not release.transparency_public:
        raise Http404
    today = timezone.localdate()
    filters = stats.Filters(
        release=release, start=today - timedelta(days=TRANSPARENCY_DAYS - 1), end=today, period=TRANSPARENCY_DAYS
    )
    counts = stats.counts_by_status(filters)
    org_names = dict(AccessRequest.OrganizationType.choices)
    by_org = [
        {
            **row,
            "label": org_names.get(row["key"], row["key"]),
            "rate": round(100 * row["approved"] / row["total"]) if row["total"] else None,
        }
        for row in stats.decisions_by(filters)[0]
    ]
    _per_month, overall = stats.decision_times(filters)
    context = {
        "release": release,
        "days": TRANSPARENCY_DAYS,
        "received": sum(counts.values()),
        "counts": counts,
        "by_org": by_org,
        "median": timedelta(seconds=overall["p50_seconds"]) if overall["p50_seconds"] is not None else None,
        "decided": overall["decided"],
        "typical": selectors.typical_wait(release),
        "numbers": _numbers(public_numbers.transparency_numbers(release)),
    }
    return render(request, "access/transparency.html", context)
