"""Grants that rested on a verified affiliation last while the affiliation does.

A grant a decision rule approved on a provider's affiliation (faculty@uni.example) records it with the time it
was seen. Each sign-in through that institution's provider either asserts it again (the time moves on, and a
suspension is lifted) or no longer does (the grant is suspended, audited, and the reviewers are told). The gate
refuses with `reverify` once the affiliation was last seen more than AFFILIATION_MAX_AGE_DAYS ago, or while the
grant is suspended: the loader caches the time, and `decide` compares it with now. Holders are emailed
AFFILIATION_REVERIFY_WARNING_DAYS before."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import emails
from ..audit import audit
from ..models import Grant, VerifiedIdentity
from ..taskbase import portal_task
from .base import Actor, require_portal, task_actor
from .cards import cards_reaffirm
from .reviewers import reviewers

REMINDER = task_actor("reverify_sweep")


def reverify_due(grant: Grant) -> datetime | None:
    """When the grant's affiliation must be seen again by (None: it rests on none)."""
    if not grant.affiliation or grant.affiliation_seen_at is None:
        return None
    return grant.affiliation_seen_at + timedelta(days=settings.AFFILIATION_MAX_AGE_DAYS)


def grants_reaffirm(*, actor: Actor, identity: VerifiedIdentity) -> dict:
    """After a sign-in recorded `identity`: every active grant of its account that rested on an affiliation at
    the identity's institution is seen again (the provider asserted it) or suspended (it did not). Called by
    access.services.identities.identity_record inside its transaction, with the signing-in person as actor.
    Library cards bound to the identity whose affiliation it no longer asserts end here too."""
    cards_reaffirm(actor=actor, identity=identity)
    if identity.institution_id is None:
        return {"seen": 0, "suspended": 0}
    now = timezone.now()
    grants = (
        Grant.objects.active(now)
        .select_for_update()
        .filter(user_id=identity.user_id, affiliation_institution_id=identity.institution_id)
    )
    seen = suspended = 0
    asserted = set(identity.affiliations or [])
    for grant in grants.exclude(affiliation=""):
        data = {"affiliation": grant.affiliation, "provider": identity.provider, "identity": identity.public_id}
        if grant.affiliation in asserted:
            lifted = grant.suspended_at is not None
            grant.affiliation_seen_at, grant.suspended_at, grant.reverify_warned_at = now, None, None
            grant.save(update_fields=["affiliation_seen_at", "suspended_at", "reverify_warned_at", "updated_at"])
            audit(
                actor=actor,
                action="grant.reinstated" if lifted else "grant.reverified",
                target=grant,
                access_request=grant.request,
                data=data,
            )
            seen += 1
        elif grant.suspended_at is None:
            grant.suspended_at = now
            grant.save(update_fields=["suspended_at", "updated_at"])
            audit(
                actor=actor,
                action="grant.suspended",
                target=grant,
                access_request=grant.request,
                data={**data, "asserted": sorted(asserted)},
            )
            grant_suspension_notify.enqueue(grant.pk)
            suspended += 1
    return {"seen": seen, "suspended": suspended}


@portal_task("access.tasks.grant_suspension_notify")
def grant_suspension_notify(grant_id: int) -> int:
    """Tell the reviewers a grant was suspended because its affiliation is no longer asserted."""
    grant = Grant.objects.select_related("release", "user", "affiliation_institution").filter(pk=grant_id).first()
    if grant is None or grant.suspended_at is None:
        return 0
    sent = 0
    for reviewer in reviewers():
        sent += emails.send_once(
            dedupe_key=f"grant-suspended:{grant.pk}:{grant.suspended_at:%Y%m%d%H%M%S}:{reviewer.pk}",
            template="review_grant_suspended",
            to=reviewer.email,
            context={"grant": grant, "release": grant.release, "holder": grant.user},
        )
    return sent


def grant_warn_reverify(*, actor: Actor, grant: Grant) -> bool:
    """Email the holder, once per time the affiliation was seen, that it must be seen again soon."""
    require_portal(actor, "Only the portal's schedule may do this.")
    due = reverify_due(grant)
    if due is None or grant.reverify_warned_at is not None or grant.suspended_at is not None:
        return False
    with transaction.atomic():
        if not Grant.objects.filter(pk=grant.pk, reverify_warned_at__isnull=True).update(
            reverify_warned_at=timezone.now()
        ):
            return False
        audit(
            actor=actor,
            action="grant.reverify_warned",
            target=grant,
            access_request=grant.request,
            data={"affiliation": grant.affiliation, "due": due.isoformat()},
        )
    emails.send_once(
        dedupe_key=f"grant-reverify:{grant.pk}:{grant.affiliation_seen_at:%Y%m%d%H%M%S}",
        template="grant_reverify",
        to=grant.user.email,
        context={"grant": grant, "release": grant.release, "due": due, "institution": grant.affiliation_institution},
    )
    return True


def reverify_sweep(now: datetime | None = None) -> int:
    """Warn holders whose affiliation must be seen again within AFFILIATION_REVERIFY_WARNING_DAYS."""
    now = now or timezone.now()
    horizon = now - timedelta(days=settings.AFFILIATION_MAX_AGE_DAYS - settings.AFFILIATION_REVERIFY_WARNING_DAYS)
    due = (
        Grant.objects.active(now)
        .exclude(affiliation="")
        .filter(suspended_at__isnull=True, reverify_warned_at__isnull=True, affiliation_seen_at__lte=horizon)
        .select_related("release", "user", "affiliation_institution", "request")
    )
    return sum(grant_warn_reverify(actor=REMINDER, grant=grant) for grant in due)


@portal_task("access.tasks.reverify_sweep")
def reverify_sweep_task() -> int:
    return reverify_sweep()
