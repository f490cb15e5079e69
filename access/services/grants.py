"""Grants: issued by a worker after approval, with their URL batches; refreshed, revoked, expired, reconciled."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import downloads, emails
from ..audit import audit
from ..models import AccessRequest, CloseOut, Grant, License, UrlBatch
from ..taskbase import portal_task
from .base import Actor, InvalidTransition, ServiceError, clean, on_calendar, require_reviewer, task_actor
from .labs import seats_for_new_grant
from .notifications import request_notify
from .stewardship import closeouts_ask
from .workflow import lock, transition

S = AccessRequest.Status
ISSUER = task_actor("grant_issue")
BATCHER = task_actor("batch_sign")
EXPIRER = task_actor("grants_expire")


def grant_issue(*, request_id: int) -> Grant | None:
    """Create the grant for an approved request with its first URL batch, and email the researcher once.
    Idempotent: a second run finds the grant, the batch and the sent email, and does nothing."""
    with transaction.atomic():
        access_request = AccessRequest.objects.select_for_update().select_related("release").get(pk=request_id)
        if access_request.status != S.APPROVED:
            return None
        if access_request.reconsent_of_id is not None:
            grant = _license_reviewed(access_request)
            if grant is None:
                return None
            dedupe_key = f"license-approved:{access_request.pk}"
        else:
            grant = _issue(access_request)
            dedupe_key = f"grant-issued:{grant.pk}"
    sent = emails.send_once(
        dedupe_key=dedupe_key,
        template="grant_issued",
        to=access_request.email,
        context={"grant": grant, "release": grant.release, "request": access_request},
    )
    if sent:
        Grant.objects.filter(pk=grant.pk).update(issued_email_sent_at=timezone.now())
    return grant


def grant_record_license(*, actor: Actor, grant: Grant, license: License, accepted_at, ip) -> Grant:
    """Record on a (locked) grant that its holder accepted this license version."""
    before = grant.license.version if grant.license_id else None
    grant.license, grant.license_accepted_at, grant.license_accepted_ip = license, accepted_at, ip
    grant.save(update_fields=["license", "license_accepted_at", "license_accepted_ip", "updated_at"])
    audit(
        actor=actor,
        action="grant.license_accepted",
        target=grant,
        access_request=grant.request,
        data={"license": license.slug, "version": license.version, "from": before},
    )
    return grant


def _license_reviewed(access_request: AccessRequest) -> Grant | None:
    """An approved license re-review: the grant it names moves to the version the request accepted, while that
    is still the release's version (a later version needs its own acceptance)."""
    grant = Grant.objects.select_for_update().select_related("release").get(pk=access_request.reconsent_of_id)
    if access_request.license_id != grant.release.license_id:
        return None
    if grant.license_id != access_request.license_id:
        grant_record_license(
            actor=ISSUER,
            grant=grant,
            license=access_request.license,
            accepted_at=access_request.license_accepted_at,
            ip=access_request.license_accepted_ip,
        )
    return grant


def _rested_on(access_request: AccessRequest) -> dict:
    """What a grant approved by a decision rule rests on: the verified facts the rule used; when one was a
    library card, the card (the grant lasts while it does); when one was a provider's affiliation, that
    affiliation and when it was seen (re-verification counts from then)."""
    facts = list(access_request.rule_facts or [])
    card = next((f for f in facts if f.get("kind") == "library_card"), None)
    rested = {"rested_on": facts, **({"card_id": card["card_id"]} if card else {})}
    affiliation = next((f for f in facts if f.get("kind") == "affiliation" and f.get("provider")), None)
    if affiliation is None:
        return rested
    seen = affiliation.get("seen_at")
    return {
        **rested,
        "affiliation": affiliation["value"],
        "affiliation_institution_id": affiliation["institution_id"],
        "affiliation_seen_at": datetime.fromisoformat(seen) if seen else timezone.now(),
    }


def _issue(access_request: AccessRequest) -> Grant:
    """The grant of an approved request and its first batch, each created once."""
    grant = Grant.objects.filter(request=access_request).first()
    if grant is None:
        now = timezone.now()
        grant = Grant.objects.create(
            user_id=access_request.applicant_id,
            release=access_request.release,
            request=access_request,
            issued_at=now,
            expires_at=now + timedelta(days=settings.GRANT_LIFETIME_DAYS),
            license_id=access_request.license_id,
            license_accepted_at=access_request.license_accepted_at,
            license_accepted_ip=access_request.license_accepted_ip,
            lab_id=access_request.lab_id,
            country=str(access_request.country or "").upper(),
            **_rested_on(access_request),
        )
        audit(
            actor=ISSUER,
            action="grant.issued",
            target=grant,
            access_request=access_request,
            data={
                "expires_at": grant.expires_at.isoformat(),
                "lab": grant.lab.public_id if grant.lab_id else None,
                "rule": access_request.decided_by_rule_id,
                "rested_on": grant.rested_on,
            },
        )
        if grant.lab_id is not None:
            seats_for_new_grant(grant, access_request)
    if grant.lab_id is not None:
        return grant  # members download with their own tokens; each download is recorded for its member
    if not grant.batches.filter(status=UrlBatch.Status.READY).exists():
        urls, expires_at, signed = downloads.batch_sign(grant)
        batch = UrlBatch.objects.create(
            grant=grant, status=UrlBatch.Status.READY, urls=urls, expires_at=expires_at, revision=signed
        )
        audit(
            actor=ISSUER,
            action="grant.batch_signed",
            target=batch,
            access_request=access_request,
            data={"grant": grant.public_id, "files": len(urls), "revision": signed},
        )
    return grant


@portal_task("access.tasks.grant_issue")
def grant_issue_task(request_id: int) -> str | None:
    grant = grant_issue(request_id=request_id)
    return grant.public_id if grant else None


def grant_refresh_links(*, actor: Actor, grant: Grant) -> UrlBatch:
    """Ask for a new URL batch; the worker signs it and the grant page shows progress until it is ready."""
    decision = downloads.access_state(user=actor.user, release=grant.release, grant=grant)
    if decision.code in ("license_update", "acknowledge_documents"):
        raise ServiceError(decision.detail, decision.code)
    if not decision.allowed:
        raise ServiceError(_("This grant is no longer active."), "grant_inactive")
    with transaction.atomic():
        pending = grant.batches.filter(status=UrlBatch.Status.PENDING).first()
        if pending is not None:
            return pending
        batch = UrlBatch.objects.create(grant=grant)
        audit(actor=actor, action="grant.batch_requested", target=batch, data={"grant": grant.public_id})
        batch_sign_task.enqueue(batch.pk)
    return batch


def batch_fill(*, batch_id: int) -> UrlBatch | None:
    with transaction.atomic():
        batch = UrlBatch.objects.select_for_update().select_related("grant__release").filter(pk=batch_id).first()
        if batch is None or batch.status != UrlBatch.Status.PENDING:
            return batch
        # The gate decides for the holder now, as for any download: a batch is a week of signed URLs.
        decision = downloads.access_state(user=batch.grant.user, release=batch.grant.release, grant=batch.grant)
        if decision.code == "acknowledge_documents":
            # Signed once the holder has acknowledged the documents (document_acknowledge enqueues it again).
            return batch
        if not decision.allowed:
            batch.status = UrlBatch.Status.FAILED
            batch.save(update_fields=["status", "updated_at"])
            audit(
                actor=BATCHER,
                action="grant.batch_refused",
                target=batch,
                data={"grant": batch.grant.public_id, "code": decision.code},
            )
            return batch
        batch.urls, batch.expires_at, batch.revision = downloads.batch_sign(batch.grant)
        batch.status = UrlBatch.Status.READY
        batch.save(update_fields=["urls", "expires_at", "status", "revision", "updated_at"])
        audit(
            actor=BATCHER,
            action="grant.batch_signed",
            target=batch,
            data={"grant": batch.grant.public_id, "files": len(batch.urls)},
        )
    return batch


@portal_task("access.tasks.batch_sign")
def batch_sign_task(batch_id: int) -> None:
    batch_fill(batch_id=batch_id)


def grant_revoke(*, actor: Actor, grant: Grant, reason: str) -> Grant:
    """Refuse every later portal call at once. URLs already handed out keep working until their TTL.
    Open renewal requests of the grant are closed with it, so approving one cannot give access back."""
    require_reviewer(actor)
    reason = clean(reason, field="reason", multiline=True)
    if not reason:
        raise ServiceError(_("Give a reason; the researcher will see it."), "reason_required", field="reason")
    with transaction.atomic():
        locked = Grant.objects.select_for_update().get(pk=grant.pk)
        if locked.revoked_at is not None:
            raise InvalidTransition(_("This grant is already revoked."))
        locked.revoked_at, locked.revoked_by, locked.revoke_reason = timezone.now(), actor.user, reason
        locked.save(update_fields=["revoked_at", "revoked_by", "revoke_reason", "updated_at"])
        event = audit(
            actor=actor, action="grant.revoked", target=locked, access_request=locked.request, data={"reason": reason}
        )
        request_notify.enqueue(event.pk)
        closeouts_ask(actor=actor, grant=locked, reason=CloseOut.Reason.REVOKED)
        for renewal in locked.renewals.open():
            closed = transition(
                actor=actor,
                locked=lock(renewal),
                action="close",
                reason=_("The grant this request would renew was revoked: %(reason)s") % {"reason": reason},
                data={"revoked_grant": locked.public_id},
            )
            request_notify.enqueue(closed.pk)
    return locked


def grant_set_expiry(*, actor: Actor, grant: Grant, expires_at: datetime) -> Grant:
    """Move a grant's expiry (the admin site's one change to a grant), audited with before and after."""
    require_reviewer(actor)
    with transaction.atomic():
        locked = Grant.objects.select_for_update().get(pk=grant.pk)
        if expires_at <= locked.issued_at:
            raise ServiceError(_("A grant must expire after it was issued."), "invalid_expiry", field="expires_at")
        on_calendar(expires_at, field="expires_at")
        if expires_at != locked.expires_at:
            before = locked.expires_at
            locked.expires_at = expires_at
            # A later expiry warns and notifies again.
            locked.expiry_warned_at = locked.expired_notified_at = None
            locked.save(update_fields=["expires_at", "expiry_warned_at", "expired_notified_at", "updated_at"])
            audit(
                actor=actor,
                action="grant.expiry_changed",
                target=locked,
                access_request=locked.request,
                data={"from": before.isoformat(), "to": expires_at.isoformat()},
            )
    return locked


def grants_expire() -> dict:
    """Warn researchers before expiry and tell them at expiry; idempotent (each notice is sent once)."""
    now = timezone.now()
    warned = expired = 0
    soon = now + timedelta(days=settings.GRANT_EXPIRY_WARNING_DAYS)
    for grant in (
        Grant.objects.active(now)
        .filter(expiry_warned_at__isnull=True, expires_at__lte=soon)
        .select_related("release", "user")
    ):
        emails.send_once(
            dedupe_key=f"grant-expiring:{grant.pk}:{grant.expires_at:%Y%m%d}",
            template="grant_expiring",
            to=grant.user.email,
            context={
                "grant": grant,
                "release": grant.release,
                # The release asks for a progress report with the renewal: the warning says so.
                "report_required": grant.release.progress_report_required,
            },
        )
        with transaction.atomic():
            if Grant.objects.filter(pk=grant.pk, expiry_warned_at__isnull=True).update(expiry_warned_at=now):
                audit(
                    actor=EXPIRER,
                    action="grant.expiring",
                    target=grant,
                    access_request=grant.request,
                    data={"expires_at": grant.expires_at.isoformat()},
                )
        warned += 1
    for grant in Grant.objects.filter(
        revoked_at__isnull=True, expired_notified_at__isnull=True, expires_at__lte=now
    ).select_related("release", "user"):
        with transaction.atomic():
            updated = Grant.objects.filter(pk=grant.pk, expired_notified_at__isnull=True).update(
                expired_notified_at=now
            )
            if updated:
                audit(actor=EXPIRER, action="grant.expired", target=grant, access_request=grant.request)
                closeouts_ask(actor=EXPIRER, grant=grant, reason=CloseOut.Reason.EXPIRED)
        emails.send_once(
            dedupe_key=f"grant-expired:{grant.pk}:{grant.expires_at:%Y%m%d}",
            template="grant_expired",
            to=grant.user.email,
            context={"grant": grant, "release": grant.release},
        )
        expired += 1
    return {"warned": warned, "expired": expired}


@portal_task("access.tasks.grants_expire")
def grants_expire_task() -> dict:
    return grants_expire()


def grants_reconcile(*, older_than: timedelta | None = None) -> list[int]:
    """Approved requests whose grant never appeared (a lost message, a broker outage): enqueue them again."""
    if older_than is None:
        older_than = timedelta(seconds=settings.GRANT_RECONCILE_AFTER_SECONDS)
    cutoff = timezone.now() - older_than
    # A license re-review has no grant of its own: it is missing while its grant is not on its version yet
    # (and that version is still the release's).
    missing = list(
        AccessRequest.objects.filter(status=S.APPROVED, decided_at__lte=cutoff)
        .filter(
            Q(reconsent_of__isnull=True, grant__isnull=True)
            | (Q(reconsent_of__isnull=False, license=F("release__license")) & ~Q(reconsent_of__license=F("license")))
        )
        .values_list("pk", flat=True)
    )
    for pk in missing:
        grant_issue_task.apply_async(args=(pk,), retry=False)
    stale_batches = UrlBatch.objects.filter(status=UrlBatch.Status.PENDING, created_at__lte=cutoff)
    for pk in stale_batches.values_list("pk", flat=True):
        batch_sign_task.apply_async(args=(pk,), retry=False)
    return missing


@portal_task("access.tasks.grants_reconcile")
def grants_reconcile_task() -> list[int]:
    return grants_reconcile()
