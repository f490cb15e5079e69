"""Reads for the public: a release's register of approved uses and its transparency numbers. Only consenting,
approved holders appear in the register; the numbers are aggregates."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from . import identities, stats
from .models import AccessRequest, Advisory, AuditEvent, CloseOut, Grant, LabSeat, ModelRelease

S = AccessRequest.Status
DAYS = 365


def register_grants(release: ModelRelease) -> QuerySet[Grant]:
    """The grants the register shows: approved requests whose applicant consented on the form (never withdrawn),
    not revoked; for a chain of renewals, the newest grant. Grants from before the register (no consent on their
    form) stay out."""
    renewed = Grant.objects.filter(request__renewal_of=OuterRef("pk"), request__register_consent=True)
    return (
        Grant.objects.filter(
            release=release,
            revoked_at__isnull=True,
            request__register_consent=True,
            request__register_withdrawn_at__isnull=True,
        )
        .exclude(Exists(renewed))
        .select_related("request", "lab__institution", "user")
        .order_by("-issued_at", "-id")
    )


def _first_issued(grant: Grant) -> Grant:
    first = grant
    while first.request.renewal_of_id is not None:
        first = Grant.objects.select_related("request").get(pk=first.request.renewal_of_id)
    return first


def register_entries(release: ModelRelease) -> list[dict]:
    """One entry per consenting use: the person's name, or the lab (and the members who consented to be named);
    the institution with its ROR id only when verified; the public statement; the grant's dates."""
    if not release.public_register:
        return []
    grants = list(register_grants(release))
    facts = identities.verified_facts_for([g.user for g in grants if g.lab_id is None])
    entries = []
    for grant in grants:
        institution = None
        if grant.lab_id is not None:
            if grant.lab.institution is not None and grant.lab.institution.is_confirmed:
                institution = grant.lab.institution
            members = [
                seat.user.get_full_name() or seat.user.email.split("@", 1)[0]
                for seat in LabSeat.objects.filter(grant=grant, register_consent=True).select_related("user")
            ]
            name = grant.lab.name
        else:
            held = facts.get(grant.user_id)
            if held is not None and held.affiliations:
                institution = held.affiliations[0].institution
            members = []
            name = grant.request.full_name
        entries.append(
            {
                "id": grant.public_id,
                "kind": "lab" if grant.lab_id else "person",
                "name": name,
                "members": sorted(members),
                "institution": {"name": institution.name, "ror": f"https://ror.org/{institution.ror_id}"}
                if institution
                else None,
                "statement": grant.request.public_statement,
                "granted_at": _first_issued(grant).issued_at,
                "expires_at": grant.expires_at,
                "active": grant.is_active,
            }
        )
    return entries


def _automatic() -> Exists:
    """Decided by a decision rule: the decision's audit event was written with a `rule:<id>` credential."""
    return Exists(
        AuditEvent.objects.filter(
            request=OuterRef("pk"), action__in=("request.approve", "request.reject"), credential__startswith="rule:"
        )
    )


def transparency_numbers(release: ModelRelease, *, now=None) -> dict:
    """The last year's decisions: p50/p90 time to decision, automatic and human apart (human: a person decided,
    the request's reviewer), the approval rate, the close-outs completed of those asked, and the advisories
    published (out of their embargo)."""
    now = now or timezone.now()
    since = now - timedelta(days=DAYS)
    decided = stats.decisions(release).filter(decided_at__gte=since, decided_at__lte=now)
    decided = decided.annotate(automatic=_automatic())
    groups = {}
    for key, qs in (
        ("human", decided.filter(automatic=False, reviewer__isnull=False)),
        ("automatic", decided.filter(automatic=True)),
    ):
        row = stats.decision_percentiles(qs).get((), {"decided": 0, "p50": None, "p90": None})
        groups[key] = {
            "decided": row["decided"],
            "p50_seconds": round(row["p50"]) if row["p50"] is not None else None,
            "p90_seconds": round(row["p90"]) if row["p90"] is not None else None,
        }
    total = decided.count()
    approved = decided.filter(status=S.APPROVED).count()
    closeouts = CloseOut.objects.filter(grant__release=release, asked_at__gte=since)
    # Advisories the public may read: published in the window and out of their embargo.
    advisories = Advisory.objects.filter(
        release=release, status=Advisory.Status.PUBLISHED, published_at__gte=since, published_at__lte=now
    ).filter(Q(embargo_until__isnull=True) | Q(embargo_until__lte=now))
    return {
        "release": release.repo_id,
        "days": DAYS,
        "decided": total,
        "approved": approved,
        "approval_rate": round(approved / total, 3) if total else None,
        "time_to_decision": groups,
        "closeouts": {
            "asked": closeouts.count(),
            "completed": closeouts.filter(completed_at__isnull=False).count(),
        },
        "advisories_published": advisories.count(),
    }


def outstanding_closeouts(*, release: ModelRelease | None = None) -> QuerySet[CloseOut]:
    """Close-outs still owed, oldest first (the reviewers' list and the dashboard's count)."""
    qs = CloseOut.objects.filter(completed_at__isnull=True).select_related("grant__release", "grant__lab", "user")
    if release is not None:
        qs = qs.filter(grant__release=release)
    return qs.order_by("asked_at", "id")
