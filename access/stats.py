"""The numbers behind the reviewer dashboard and the applicants' estimates: aggregate SQL over requests, grants
and download events, grouped and counted by the database; Python only adds up the grouped rows.

Counts are COUNT(*), not of a column, so the covering indexes (models.AccessRequest.Meta) can answer each query
with an index-only scan. Percentiles are nearest-rank (`percentile_disc` on PostgreSQL): the median of 1, 2 and
10 days is 2 days, a wait some request really had. SQLite, the development default, has no ordered-set
aggregates; there the decision times of the range are fetched, already ordered by the database, and ranked in
Python with the same rule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import (
    Aggregate,
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Least, TruncDate, TruncMonth, TruncWeek
from django.db.models.lookups import LessThan
from django.utils import timezone
from django.utils.translation import gettext as _

from . import inputs
from .models import AccessRequest, DownloadCount, DownloadDay, DownloadEvent, FlawReport, Grant, ModelRelease

S = AccessRequest.Status
PERIODS = (30, 90, 365)
DEFAULT_PERIOD = 90
MAX_RANGE_DAYS = 731
TOP_COUNTRIES = 15
# Pending requests by age, in days: [0, 1), [1, 2), … [30, ∞).
AGE_EDGES = (0, 1, 2, 3, 5, 7, 14, 30)
OUTCOMES = ("approved", "rejected", "withdrawn", "pending")
DECIDED = (S.APPROVED, S.REJECTED)


class StatsError(inputs.InputError):
    """A filter that names nothing or no real range; `code` is stable for API clients. Days that are no real day,
    or lie off the portal's calendar, are refused by access.inputs (its InputError is this class's base)."""


@dataclass(frozen=True)
class Filters:
    release: ModelRelease | None
    start: date
    end: date
    period: int | None

    @property
    def since(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.start, time.min), timezone.get_current_timezone())

    @property
    def until(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.end, time.max), timezone.get_current_timezone())

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def _day(params, name: str) -> date | None:
    value = (params.get(name) or "").strip()
    return inputs.day(value, name=name) if value else None


def parse_filters(params, *, today: date | None = None) -> Filters:
    """The release and days asked for: `release` (a repo id), then `from`/`to` (YYYY-MM-DD, either may be
    left out) or `period` (30, 90 or 365 days up to today; 90 when nothing is given)."""
    today = today or timezone.localdate()
    release = None
    repo_id = (params.get("release") or "").strip()
    if repo_id:
        release = ModelRelease.objects.filter(repo_id=repo_id[:200]).first()
        if release is None:
            raise StatsError(_("There is no release %(repo)s.") % {"repo": repo_id[:200]}, "unknown_release")
    start, end = _day(params, "from"), _day(params, "to")
    period = None
    if start is None and end is None:
        raw = (params.get("period") or str(DEFAULT_PERIOD)).strip()
        if raw not in {str(p) for p in PERIODS}:
            raise StatsError(_("The period is 30, 90 or 365 days."), "invalid_period")
        period = int(raw)
        end = today
        start = today - timedelta(days=period - 1)
    end = end or today
    start = start or end - timedelta(days=DEFAULT_PERIOD - 1)
    if start > end:
        raise StatsError(_("The “from” day comes after the “to” day."), "invalid_range")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise StatsError(_("Choose at most %(n)d days.") % {"n": MAX_RANGE_DAYS}, "range_too_long")
    return Filters(release=release, start=start, end=end, period=period)


# --------------------------------------------------------------------------------------------- percentiles


class _PercentileDisc(Aggregate):
    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), output_field=DurationField(), **extra)


def _wait():
    return ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())


def _rank(ordered: list[float], fraction: float) -> float:
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def decision_percentiles(queryset: QuerySet, group_by: tuple[str, ...] = (), fractions=(0.5, 0.9)) -> dict:
    """{group values: {"decided": n, "p50": seconds, "p90": seconds}} of decided_at − created_at."""
    names = {f: f"p{round(f * 100)}" for f in fractions}
    if connection.vendor == "postgresql":
        aggregates = {"decided": Count("*"), **{names[f]: _PercentileDisc(_wait(), f) for f in fractions}}
        if not group_by:
            row = queryset.order_by().aggregate(**aggregates)
            if not row["decided"]:
                return {}
            return {(): {"decided": row["decided"], **{n: row[n].total_seconds() for n in names.values()}}}
        rows = queryset.values(*group_by).annotate(**aggregates)
        out = {}
        for row in rows.order_by(*group_by):
            key = tuple(row[g] for g in group_by)
            out[key] = {"decided": row["decided"], **{n: row[n].total_seconds() for n in names.values()}}
        return out
    grouped: dict[tuple, list[float]] = {}
    ordered = queryset.annotate(wait=_wait()).order_by(*group_by, "wait").values_list(*group_by, "wait")
    for *key, wait in ordered:
        grouped.setdefault(tuple(key), []).append(wait.total_seconds())
    return {
        key: {"decided": len(waits), **{names[f]: _rank(waits, f) for f in fractions}} for key, waits in grouped.items()
    }


def decisions(release: ModelRelease | None = None) -> QuerySet[AccessRequest]:
    """Requests a reviewer (or the auto-approval rule) decided after an application: what a wait means."""
    qs = AccessRequest.objects.filter(
        status__in=DECIDED, decided_at__isnull=False, origin=AccessRequest.Origin.APPLICANT
    )
    return qs.filter(release=release) if release is not None else qs


# --------------------------------------------------------------------------------------------- overdue


def overdue_q(now: datetime | None = None) -> Q:
    """Pending requests older than their release's review deadline (counted from submission)."""
    now = now or timezone.now()
    deadlines = ModelRelease.objects.values_list("pk", "review_deadline_days")
    q = Q(pk__in=[])
    for pk, days in deadlines:
        q |= Q(release_id=pk, created_at__lt=now - timedelta(days=days))
    return Q(status=S.PENDING) & q


def is_overdue(access_request: AccessRequest, now: datetime | None = None) -> bool:
    """The rule of overdue_q for one loaded request (its release loaded too)."""
    deadline = timedelta(days=access_request.release.review_deadline_days)
    return access_request.status == S.PENDING and access_request.created_at < (now or timezone.now()) - deadline


def overdue_requests(*, release: ModelRelease | None = None, now: datetime | None = None) -> QuerySet[AccessRequest]:
    qs = AccessRequest.objects.filter(overdue_q(now)).select_related("release").order_by("created_at", "id")
    return qs.filter(release=release) if release is not None else qs


def flaw_overdue_q(now: datetime | None = None) -> Q:
    """Flaw reports still waiting for triage past their release's triage deadline (counted from filing)."""
    now = now or timezone.now()
    q = Q(pk__in=[])
    for pk, days in ModelRelease.objects.values_list("pk", "triage_deadline_days"):
        q |= Q(release_id=pk, created_at__lt=now - timedelta(days=days))
    return Q(status__in=FlawReport.UNTRIAGED) & q


def flaw_is_overdue(report: FlawReport, now: datetime | None = None) -> bool:
    """The rule of flaw_overdue_q for one loaded report (its release loaded too)."""
    deadline = timedelta(days=report.release.triage_deadline_days)
    return report.status in FlawReport.UNTRIAGED and report.created_at < (now or timezone.now()) - deadline


def overdue_flaw_reports(*, release: ModelRelease | None = None, now: datetime | None = None) -> QuerySet[FlawReport]:
    qs = FlawReport.objects.filter(flaw_overdue_q(now)).select_related("release").order_by("created_at", "id")
    return qs.filter(release=release) if release is not None else qs


def flaw_report_counts(*, release: ModelRelease | None = None, now: datetime | None = None) -> dict:
    """Flaw reports by their state now, and how many wait past the triage deadline."""
    qs = FlawReport.objects.all() if release is None else FlawReport.objects.filter(release=release)
    counts = dict.fromkeys(FlawReport.Status.values, 0)
    for row in qs.values("status").annotate(n=Count("*")):
        counts[row["status"]] = row["n"]
    return {"by_status": counts, "overdue": overdue_flaw_reports(release=release, now=now).count()}


# --------------------------------------------------------------------------------------------- the dashboard


def _requests(f: Filters) -> QuerySet[AccessRequest]:
    qs = AccessRequest.objects.exclude(status=S.DRAFT)
    return qs.filter(release=f.release) if f.release is not None else qs


def _outcome(status: str) -> str:
    return "pending" if status in (S.PENDING, S.NEEDS_INFO) else status


def counts_by_status(f: Filters, weekly: list[dict] | None = None) -> dict[str, int]:
    """Requests submitted in the range, by their status now (summed from the weekly counts when given)."""
    counts = {s: 0 for s in S.values if s != S.DRAFT}
    if weekly is not None:
        for week in weekly:
            for status, n in week["by_status"].items():
                counts[status] += n
        return counts
    rows = _requests(f).filter(created_at__range=(f.since, f.until)).values("status").annotate(n=Count("*"))
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def weekly_outcomes(f: Filters) -> list[dict]:
    """Requests submitted each week (weeks start on Monday), by what became of them."""
    rows = (
        _requests(f)
        .filter(created_at__range=(f.since, f.until))
        .annotate(week=TruncWeek("created_at"))
        .values("week", "status")
        .annotate(n=Count("*"))
    )
    weeks: dict[date, dict] = {}
    monday = f.start - timedelta(days=f.start.weekday())
    while monday <= f.end:
        weeks[monday] = {"week": monday, **dict.fromkeys(OUTCOMES, 0), "by_status": {}}
        monday += timedelta(days=7)
    for row in rows:
        week = row["week"].date() if isinstance(row["week"], datetime) else row["week"]
        entry = weeks.setdefault(week, {"week": week, **dict.fromkeys(OUTCOMES, 0), "by_status": {}})
        entry[_outcome(row["status"])] += row["n"]
        entry["by_status"][row["status"]] = entry["by_status"].get(row["status"], 0) + row["n"]
    return [weeks[w] for w in sorted(weeks)]


def decision_times(f: Filters) -> tuple[list[dict], dict]:
    """p50/p90 of the time to decision per release and month of the decision, and over the whole range."""
    decided = decisions(f.release).filter(decided_at__range=(f.since, f.until))
    per_month = decision_percentiles(decided.annotate(month=TruncMonth("decided_at")), ("release_id", "month"))
    releases = {r.pk: r for r in ModelRelease.objects.filter(pk__in={key[0] for key in per_month})}
    rows = [
        {
            "release": releases[release_id].repo_id,
            "month": (month.date() if isinstance(month, datetime) else month).strftime("%Y-%m"),
            "deadline_days": releases[release_id].review_deadline_days,
            "decided": v["decided"],
            "p50_seconds": round(v["p50"]),
            "p90_seconds": round(v["p90"]),
        }
        for (release_id, month), v in per_month.items()
    ]
    rows.sort(key=lambda r: (r["month"], r["release"]))
    overall = decision_percentiles(decided).get((), {"decided": 0, "p50": None, "p90": None})
    return rows, {
        "decided": overall["decided"],
        "p50_seconds": round(overall["p50"]) if overall["p50"] is not None else None,
        "p90_seconds": round(overall["p90"]) if overall["p90"] is not None else None,
    }


def pending_ages(f: Filters, now: datetime | None = None) -> list[dict]:
    """Requests waiting for a reviewer now, by how long they have waited, split at their release's deadline:
    one pass that puts each request in its age bucket and says whether it is late."""
    now = now or timezone.now()
    edges = sorted(set(AGE_EDGES) | ({f.release.review_deadline_days} if f.release is not None else set()))
    buckets = [(low, edges[i + 1] if i + 1 < len(edges) else None) for i, low in enumerate(edges)]
    bucket = Case(
        *[
            When(created_at__gt=now - timedelta(days=high), then=Value(i))
            for i, (_, high) in enumerate(buckets)
            if high
        ],
        default=Value(len(buckets) - 1),
        output_field=IntegerField(),
    )
    late = Case(When(overdue_q(now), then=Value(1)), default=Value(0), output_field=IntegerField())
    qs = AccessRequest.objects.filter(status=S.PENDING)
    if f.release is not None:
        qs = qs.filter(release=f.release)
    counts = {
        (row["bucket"], row["late"]): row["n"]
        for row in qs.annotate(bucket=bucket, late=late).values("bucket", "late").annotate(n=Count("*")).order_by()
    }
    return [
        {
            "min_days": low,
            "max_days": high,
            "within_deadline": counts.get((i, 0), 0),
            "overdue": counts.get((i, 1), 0),
        }
        for i, (low, high) in enumerate(buckets)
    ]


def downloads_per_day(f: Filters) -> list[dict]:
    """Per day: distinct researchers who downloaded, files signed for them, the bytes of those files, manifests,
    and anonymous downloads of open releases (counted per hour, not one row each). Closed days come from their
    DownloadDay sums (access.counts.download_days_rollup, hourly); the days after the last summed one are
    summed from the events here."""
    days = {d: {"day": d, "researchers": 0, "files": 0, "bytes": 0, "manifests": 0, "anonymous": 0} for d in f.days}
    names = ("researchers", "files", "bytes", "manifests")
    summed_through = DownloadDay.objects.filter(release__isnull=True).aggregate(last=Max("day"))["last"]
    live_from = f.start
    if summed_through is not None and summed_through >= f.start:
        summed = DownloadDay.objects.filter(day__range=(f.start, min(summed_through, f.end)))
        summed = summed.filter(release=f.release) if f.release is not None else summed.filter(release__isnull=True)
        for row in summed.values("day", *names):
            days[row.pop("day")].update(row)
        live_from = summed_through + timedelta(days=1)
    if live_from <= f.end:
        since = max(
            f.since, timezone.make_aware(datetime.combine(live_from, time.min), timezone.get_current_timezone())
        )
        events = DownloadEvent.objects.filter(created_at__range=(since, f.until))
        if f.release is not None:
            events = events.filter(release=f.release)
        rows = (
            events.annotate(day=TruncDate("created_at"))
            .values("day")
            .annotate(
                researchers=Count("user", distinct=True),
                files=Count("id", filter=Q(file__isnull=False)),
                manifests=Count("id", filter=Q(file__isnull=True)),
                bytes=Coalesce(Sum("file__size"), 0),
            )
        )
        for row in rows:
            day = row.pop("day")
            if day in days:
                days[day].update(row)
    anonymous = DownloadCount.objects.filter(hour__range=(f.since, f.until))
    if f.release is not None:
        anonymous = anonymous.filter(file__release=f.release)
    for row in anonymous.annotate(day=TruncDate("hour")).values("day").annotate(n=Sum("count")):
        if row["day"] in days:
            days[row["day"]]["anonymous"] = row["n"]
    return [days[d] for d in f.days]


def active_grants(f: Filters) -> list[dict]:
    """Grants active at the end of each day: issued by then, and neither expired nor revoked by then. Two grouped
    counts (issued per day, ended per day) and a running sum over the days."""
    grants = Grant.objects.all() if f.release is None else Grant.objects.filter(release=f.release)
    end = Least("expires_at", Coalesce("revoked_at", "expires_at"))
    ended = grants.annotate(ended=end)
    # Counted by issued_at (in the index, never null), so the scan stays index-only.
    before = grants.aggregate(
        issued=Count("issued_at", filter=Q(issued_at__lt=f.since)),
        ended=Count("issued_at", filter=LessThan(end, Value(f.since))),
    )
    base = before["issued"] - before["ended"]
    issued = dict(
        grants.filter(issued_at__range=(f.since, f.until))
        .annotate(day=TruncDate("issued_at"))
        .values("day")
        .annotate(n=Count("*"))
        .values_list("day", "n")
    )
    gone = dict(
        ended.filter(ended__range=(f.since, f.until))
        .annotate(day=TruncDate("ended"))
        .values("day")
        .annotate(n=Count("*"))
        .values_list("day", "n")
    )
    out, active = [], base
    for day in f.days:
        active += issued.get(day, 0) - gone.get(day, 0)
        out.append({"day": day, "active": active})
    return out


def decisions_by(f: Filters) -> tuple[list[dict], list[dict]]:
    """Approvals and rejections decided in the range per organization type and per country (most decisions
    first; the 15 countries with most): one grouped count by both, summed up each way."""
    rows = (
        decisions(f.release)
        .filter(decided_at__range=(f.since, f.until))
        .values("organization_type", "country", "status")
        .annotate(n=Count("*"))
        .order_by()
    )
    sums: dict[str, dict[str, dict]] = {"organization_type": {}, "country": {}}
    for row in rows:
        for field, by in sums.items():
            key = str(row[field])
            entry = by.setdefault(key, {"key": key, "approved": 0, "rejected": 0, "total": 0})
            entry[row["status"]] += row["n"]
            entry["total"] += row["n"]

    def ordered(by: dict) -> list[dict]:
        return sorted(by.values(), key=lambda e: (-e["total"], e["key"]))

    return ordered(sums["organization_type"]), ordered(sums["country"])[:TOP_COUNTRIES]


def decisions_by_decider(f: Filters) -> list[dict]:
    """Decisions in the range made automatically (a release's decision rule) and by reviewers: how many of each
    outcome, and the time from application to decision (p50/p90)."""
    decided = decisions(f.release).filter(decided_at__range=(f.since, f.until))
    out = []
    for decider, part in (
        ("automatic", decided.filter(decided_by_rule__isnull=False)),
        ("human", decided.filter(decided_by_rule__isnull=True)),
    ):
        counts = dict(part.values_list("status").annotate(n=Count("*")).order_by())
        times = decision_percentiles(part).get((), {"decided": 0, "p50": None, "p90": None})
        out.append(
            {
                "decider": decider,
                "approved": counts.get(S.APPROVED, 0),
                "rejected": counts.get(S.REJECTED, 0),
                "decided": times["decided"],
                "p50_seconds": round(times["p50"]) if times["p50"] is not None else None,
                "p90_seconds": round(times["p90"]) if times["p90"] is not None else None,
            }
        )
    return out


def review_stats(f: Filters, now: datetime | None = None) -> dict:
    """Everything the dashboard draws, as plain data (the stats API returns it as JSON)."""
    now = now or timezone.now()
    per_month, overall = decision_times(f)
    late = overdue_requests(release=f.release, now=now)
    by_org, by_country = decisions_by(f)
    weekly = weekly_outcomes(f)
    return {
        "release": f.release.repo_id if f.release is not None else None,
        "from": f.start,
        "to": f.end,
        "deadline_days": f.release.review_deadline_days if f.release is not None else None,
        "counts_by_status": counts_by_status(f, weekly),
        "requests_per_week": [{k: v for k, v in week.items() if k != "by_status"} for week in weekly],
        "decision_time": overall,
        "decision_time_per_month": per_month,
        "decisions_by_decider": decisions_by_decider(f),
        "pending_ages": pending_ages(f, now),
        "overdue_count": late.count(),
        "downloads_per_day": downloads_per_day(f),
        "active_grants": active_grants(f),
        "decisions_by_organization_type": by_org,
        "decisions_by_country": by_country,
        "flaw_reports": flaw_report_counts(release=f.release, now=now),
    }
