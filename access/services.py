"""Writes. Views, API classes, Celery tasks, admin actions and commands all change state through here."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import selectors
from .models import (
    AccessRequest,
    ApiToken,
    AuditEvent,
    DownloadEvent,
    Grant,
    ModelFile,
    ModelRelease,
    UrlBatch,
    User,
)

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refused operation; `code` is stable and shown to API clients, the message to people."""

    code = "invalid"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class InvalidTransition(ServiceError):
    code = "invalid_transition"


@dataclass
class Actor:
    """Who is acting and through which credential; recorded on every audit event."""

    user: User | None = None
    credential: str = "system"
    ip: str | None = None


SYSTEM = Actor()


def audit(
    *, actor: Actor, action: str, target=None, access_request: AccessRequest | None = None, data: dict | None = None
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.user if actor.user and actor.user.pk else None,
        credential=actor.credential,
        action=action,
        target_type=type(target).__name__ if target is not None else "",
        target_id=str(getattr(target, "public_id", None) or getattr(target, "pk", "") or "") if target else "",
        request=access_request,
        data=data or {},
        ip=actor.ip,
    )


@dataclass
class Enqueued:
    """Filled in when the transaction commits: whether the broker took the message."""

    ok: bool | None = None
    errors: list[str] = field(default_factory=list)


def enqueue_on_commit(task, *args, result: Enqueued | None = None) -> Enqueued:
    """Send a Celery message once the current transaction commits. A broker outage is logged, not raised:
    the periodic reconcile task finds the work again."""
    result = result or Enqueued()

    def send():
        try:
            task.apply_async(args=args, retry=False)
            result.ok = result.ok is not False
        except Exception as exc:  # the broker's errors vary by transport
            log.warning("could not enqueue %s%r: %s", task.name, args, exc)
            result.ok = False
            result.errors.append(str(exc))

    transaction.on_commit(send)
    return result


# --- Releases -----------------------------------------------------------------------------------------


def release_compute_revision(*, release: ModelRelease) -> str:
    """A stable 40-hex id for the release's content: changes whenever a file is added, removed or changed."""
    # A git-style 40-hex id (what Hugging Face clients expect as a revision), not a security boundary.
    digest = hashlib.sha1(f"{release.repo_id}\n".encode(), usedforsecurity=False)
    for path, size, sha in release.files.order_by("path").values_list("path", "size", "sha256"):
        digest.update(f"{path}\0{size}\0{sha}\n".encode())
    return digest.hexdigest()


def release_refresh_revision(*, release: ModelRelease) -> ModelRelease:
    revision = release_compute_revision(release=release)
    if revision != release.revision:
        release.revision = revision
        release.save(update_fields=["revision", "updated_at"])
    return release


def release_upsert_file(*, release: ModelRelease, path: str, size: int, sha256: str, storage_key: str) -> bool:
    """Record a file; returns True when it was new or changed."""
    if selectors.clean_file_path(path) is None:
        raise ServiceError(_("Invalid file path: %(path)s") % {"path": path}, "invalid_path")
    obj, created = ModelFile.objects.get_or_create(
        release=release, path=path, defaults={"size": size, "sha256": sha256, "storage_key": storage_key}
    )
    if created:
        return True
    if (obj.size, obj.sha256, obj.storage_key) != (size, sha256, storage_key):
        obj.size, obj.sha256, obj.storage_key = size, sha256, storage_key
        obj.save(update_fields=["size", "sha256", "storage_key", "updated_at"])
        return True
    return False


# --- API tokens ---------------------------------------------------------------------------------------


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(*, actor: Actor, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and only its SHA-256 is stored."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError(_("The expiry date must be in the future."), "invalid_expiry")
    secret = ApiToken.PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=actor.user, name=name, prefix=secret[:10], secret_hash=token_hash(secret), expires_at=expires_at
        )
        audit(actor=actor, action="token.created", target=token, data={"name": name, "prefix": token.prefix})
    return token, secret


def token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at", "updated_at"])
            audit(actor=actor, action="token.revoked", target=token, data={"prefix": token.prefix})
    return token


class TokenError(ServiceError):
    pass


def token_authenticate(*, secret: str) -> ApiToken:
    """The usable token for a secret. Lookup is by SHA-256, so comparing secrets leaks no timing."""
    if not secret.startswith(ApiToken.PREFIX) or len(secret) > 200:
        raise TokenError(_("Invalid token."), "invalid_token")
    token = selectors.token_lookup(secret_hash=token_hash(secret))
    if token is None or not token.user.is_active:
        raise TokenError(_("Invalid token."), "invalid_token")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenError(_("This token was revoked; create a new one on your tokens page."), "token_revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenError(_("This token has expired; create a new one on your tokens page."), "token_expired")
    # One write a minute at most: a 992-file download should not write the token row 992 times.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# --- Downloads ----------------------------------------------------------------------------------------


def download_refused(*, actor: Actor, release: ModelRelease, code: str, via: str, path: str = "") -> AuditEvent:
    """A refused download is an access decision too: recorded with the code the caller was given."""
    return audit(
        actor=actor, action="download.refused", target=release, data={"code": code, "via": via, "path": path[:500]}
    )


def download_record(
    *,
    actor: Actor,
    release: ModelRelease,
    via: str,
    file: ModelFile | None = None,
    token: ApiToken | None = None,
    grant: Grant | None = None,
    manifest_format: str = "",
) -> DownloadEvent:
    return DownloadEvent.objects.create(
        release=release,
        file=file,
        user=actor.user if actor.user and actor.user.pk else None,
        token=token,
        grant=grant,
        via=via,
        manifest_format=manifest_format,
        ip=actor.ip,
    )


# --- Reviewers ----------------------------------------------------------------------------------------

REVIEWERS_GROUP = "Reviewers"


def reviewers_group():
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    permission = Permission.objects.get(codename="review_accessrequest", content_type__app_label="access")
    group.permissions.add(permission)
    return group


def reviewer_add(*, user: User, staff: bool = False, verified: bool = False) -> User:
    from allauth.account.models import EmailAddress

    with transaction.atomic():
        user.groups.add(reviewers_group())
        if staff and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        if verified:
            EmailAddress.objects.update_or_create(
                user=user, email=user.email, defaults={"verified": True, "primary": True}
            )
        audit(actor=SYSTEM, action="reviewer.added", target=user, data={"email": user.email})
    return user


def reviewer_remove(*, user: User) -> User:
    with transaction.atomic():
        user.groups.remove(reviewers_group())
        audit(actor=SYSTEM, action="reviewer.removed", target=user, data={"email": user.email})
    return user


def reviewers() -> list[User]:
    return list(User.objects.filter(is_active=True, groups__name=REVIEWERS_GROUP).distinct().order_by("email"))


# --- Access requests ----------------------------------------------------------------------------------

S = AccessRequest.Status

# action → (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[set[str], str]] = {
    "request_info": ({S.PENDING}, S.NEEDS_INFO),
    "answer": ({S.NEEDS_INFO}, S.PENDING),
    "approve": ({S.PENDING, S.NEEDS_INFO}, S.APPROVED),
    "reject": ({S.PENDING, S.NEEDS_INFO}, S.REJECTED),
    "withdraw": ({S.PENDING, S.NEEDS_INFO}, S.WITHDRAWN),
}

REQUEST_FIELDS = [
    "full_name",
    "affiliation",
    "organization_type",
    "country",
    "role",
    "intended_use",
    "publications",
]


class OpenRequestExists(ServiceError):
    code = "request_exists"

    def __init__(self, message: str, existing: AccessRequest | None):
        super().__init__(message)
        self.existing = existing


def email_verified(user: User) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()


def _cooldown_ends(*, user: User, release: ModelRelease) -> datetime | None:
    last = (
        AccessRequest.objects.filter(applicant=user, release=release, status=S.REJECTED).order_by("-decided_at").first()
    )
    if last is None or last.decided_at is None:
        return None
    ends = last.decided_at + timedelta(days=settings.REJECTION_COOLDOWN_DAYS)
    return ends if ends > timezone.now() else None


def request_submit(
    *, actor: Actor, release: ModelRelease, data: dict, license_accepted: bool, renewal_of: Grant | None = None
) -> AccessRequest:
    """File an access request. Refuses unverified accounts, open releases, a second open request (a database
    constraint, so two concurrent submits cannot both succeed) and applications inside the rejection cool-down."""
    user = actor.user
    if not release.is_gated or release.license is None:
        raise ServiceError(_("%(repo)s is open: no request is needed.") % {"repo": release.repo_id}, "not_gated")
    if not email_verified(user):
        raise ServiceError(_("Verify your email address before applying."), "email_unverified")
    if not license_accepted or not data.get("noncommercial_attested"):
        raise ServiceError(_("You must accept the license and attest non-commercial use."), "license_not_accepted")
    if renewal_of is None and selectors.user_active_grant(user=user, release=release) is not None:
        raise ServiceError(_("You already have access to %(repo)s.") % {"repo": release.repo_id}, "already_granted")
    ends = _cooldown_ends(user=user, release=release)
    if ends is not None:
        raise ServiceError(
            _("Your last request was rejected; you can apply again after %(date)s.") % {"date": f"{ends:%Y-%m-%d}"},
            "cooldown",
        )
    fields = {name: data.get(name, "") for name in REQUEST_FIELDS}
    now = timezone.now()
    try:
        with transaction.atomic():
            access_request = AccessRequest.objects.create(
                applicant=user,
                release=release,
                email=user.email,
                license=release.license,
                license_version=release.license.version,
                license_accepted_at=now,
                license_accepted_ip=actor.ip,
                noncommercial_attested=True,
                renewal_of=renewal_of,
                **fields,
            )
            event = audit(
                actor=actor,
                action="request.submitted",
                target=access_request,
                access_request=access_request,
                data={
                    "license": release.license.slug,
                    "license_version": release.license.version,
                    "renewal_of": renewal_of.public_id if renewal_of else None,
                },
            )
    except IntegrityError:
        existing = AccessRequest.objects.filter(
            applicant=user, release=release, status__in=AccessRequest.OPEN_STATUSES
        ).first()
        raise OpenRequestExists(_("You already have an open request for this release."), existing) from None
    from . import tasks

    enqueue_on_commit(tasks.request_notify, event.pk)
    if settings.REVIEWER_NOTIFICATIONS == "realtime":
        enqueue_on_commit(tasks.reviewers_notify, access_request.pk)
    if _auto_approvable(release=release, user=user):
        request_decide(
            actor=Actor(user=None, credential="auto-approval", ip=actor.ip),
            access_request=access_request,
            action="approve",
            reason=_("Approved automatically: your verified email domain is on this release's allowlist."),
        )
        access_request.refresh_from_db()
    return access_request


def _auto_approvable(*, release: ModelRelease, user: User) -> bool:
    if release.approval_mode != ModelRelease.ApprovalMode.AUTO_DOMAIN:
        return False
    domains = {d.strip().lower().lstrip("@") for d in release.auto_approve_domains.splitlines() if d.strip()}
    domain = user.email.rsplit("@", 1)[-1].lower()
    return email_verified(user) and domain in domains


def request_decide(
    *, actor: Actor, access_request: AccessRequest, action: str, reason: str = "", enqueued: Enqueued | None = None
) -> AccessRequest:
    """Move a request along TRANSITIONS; anything else is refused and changes nothing."""
    if action not in TRANSITIONS:
        raise InvalidTransition(_("Unknown action."))
    sources, target = TRANSITIONS[action]
    if action in ("reject", "request_info") and not reason.strip():
        raise ServiceError(_("Give a reason; the applicant will see it."), "reason_required")
    with transaction.atomic():
        locked = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
        if locked.status not in sources:
            raise InvalidTransition(
                _("Cannot %(action)s a request that is %(status)s.")
                % {"action": action.replace("_", " "), "status": locked.get_status_display().lower()}
            )
        previous = locked.status
        locked.status = target
        update = ["status", "updated_at"]
        if action == "request_info":
            locked.info_request, locked.info_response = reason, ""
            locked.reviewer = actor.user
            update += ["info_request", "info_response", "reviewer"]
        elif action == "answer":
            locked.info_response = reason
            update += ["info_response"]
        elif action in ("approve", "reject"):
            locked.reviewer, locked.decision_reason, locked.decided_at = actor.user, reason, timezone.now()
            update += ["reviewer", "decision_reason", "decided_at"]
        locked.save(update_fields=update)
        event = audit(
            actor=actor,
            action=f"request.{action}",
            target=locked,
            access_request=locked,
            data={"from": previous, "to": target, "reason": reason},
        )
        from . import tasks

        if action == "approve":
            # The single hook for what approval sets off: issuing the grant (which also emails the applicant).
            enqueued = enqueue_on_commit(tasks.grant_issue, locked.pk, result=enqueued)
        elif action != "withdraw":
            enqueue_on_commit(tasks.request_notify, event.pk)
    access_request.refresh_from_db()
    return access_request


def request_bulk_decide(*, actor: Actor, public_ids: list[str], action: str, reason: str = "") -> dict:
    """Decide many requests; each is its own transaction, so one refusal does not undo the others."""
    if action not in ("approve", "reject"):
        raise InvalidTransition(_("Bulk actions are approve and reject."))
    done, refused = [], {}
    for access_request in AccessRequest.objects.filter(public_id__in=public_ids).order_by("created_at"):
        try:
            request_decide(actor=actor, access_request=access_request, action=action, reason=reason)
            done.append(access_request.public_id)
        except ServiceError as exc:
            refused[access_request.public_id] = str(exc)
    return {"done": done, "refused": refused}


# --- Grants -------------------------------------------------------------------------------------------

TASK = Actor(user=None, credential="task")


def _sign_batch(grant: Grant) -> tuple[list[dict], datetime]:
    from . import downloads

    ttl = settings.GRANT_URL_TTL
    entries, _ = downloads.manifest_entries(grant.release, base_url=settings.SITE_URL, ttl=ttl)
    return entries, timezone.now() + timedelta(seconds=ttl)


def grant_issue(*, request_id: int) -> Grant | None:
    """Create the grant for an approved request with its first URL batch, and email the researcher once.
    Idempotent: a second run finds the grant, the batch and the sent email, and does nothing."""
    from . import emails

    with transaction.atomic():
        access_request = AccessRequest.objects.select_for_update().select_related("release").get(pk=request_id)
        if access_request.status != S.APPROVED:
            return None
        grant = Grant.objects.filter(request=access_request).first()
        if grant is None:
            now = timezone.now()
            grant = Grant.objects.create(
                user_id=access_request.applicant_id,
                release=access_request.release,
                request=access_request,
                issued_at=now,
                expires_at=now + timedelta(days=settings.GRANT_LIFETIME_DAYS),
            )
            audit(
                actor=TASK,
                action="grant.issued",
                target=grant,
                access_request=access_request,
                data={"expires_at": grant.expires_at.isoformat()},
            )
        if not grant.batches.filter(status=UrlBatch.Status.READY).exists():
            urls, expires_at = _sign_batch(grant)
            batch = UrlBatch.objects.create(grant=grant, status=UrlBatch.Status.READY, urls=urls, expires_at=expires_at)
            audit(
                actor=TASK,
                action="grant.batch_issued",
                target=batch,
                access_request=access_request,
                data={"grant": grant.public_id, "files": len(urls)},
            )
    sent = emails.send_once(
        dedupe_key=f"grant-issued:{grant.pk}",
        template="grant_issued",
        to=access_request.email,
        context={"grant": grant, "release": grant.release, "request": access_request},
    )
    if sent:
        Grant.objects.filter(pk=grant.pk).update(issued_email_sent_at=timezone.now())
    return grant


def grant_refresh_links(*, actor: Actor, grant: Grant) -> UrlBatch:
    """Ask for a new URL batch; the worker signs it and the grant page shows progress until it is ready."""
    decision = selectors.release_access_decision(user=grant.user, release=grant.release)
    if not decision.allowed or decision.grant is None or decision.grant.pk != grant.pk:
        raise ServiceError(_("This grant is no longer active."), "grant_inactive")
    from . import tasks

    with transaction.atomic():
        pending = grant.batches.filter(status=UrlBatch.Status.PENDING).first()
        if pending is not None:
            return pending
        batch = UrlBatch.objects.create(grant=grant)
        audit(actor=actor, action="grant.batch_requested", target=batch, data={"grant": grant.public_id})
        enqueue_on_commit(tasks.batch_issue, batch.pk)
    return batch


def batch_fill(*, batch_id: int) -> UrlBatch | None:
    with transaction.atomic():
        batch = UrlBatch.objects.select_for_update().select_related("grant__release").filter(pk=batch_id).first()
        if batch is None or batch.status != UrlBatch.Status.PENDING:
            return batch
        if not batch.grant.is_active:
            batch.status = UrlBatch.Status.FAILED
            batch.save(update_fields=["status", "updated_at"])
            return batch
        batch.urls, batch.expires_at = _sign_batch(batch.grant)
        batch.status = UrlBatch.Status.READY
        batch.save(update_fields=["urls", "expires_at", "status", "updated_at"])
        audit(
            actor=TASK,
            action="grant.batch_issued",
            target=batch,
            data={"grant": batch.grant.public_id, "files": len(batch.urls)},
        )
    return batch


def grant_revoke(*, actor: Actor, grant: Grant, reason: str) -> Grant:
    """Refuse every later portal call at once. URLs already handed out keep working until their TTL."""
    if not reason.strip():
        raise ServiceError(_("Give a reason; the researcher will see it."), "reason_required")
    from . import tasks

    with transaction.atomic():
        locked = Grant.objects.select_for_update().get(pk=grant.pk)
        if locked.revoked_at is not None:
            raise InvalidTransition(_("This grant is already revoked."))
        locked.revoked_at, locked.revoked_by, locked.revoke_reason = timezone.now(), actor.user, reason
        locked.save(update_fields=["revoked_at", "revoked_by", "revoke_reason", "updated_at"])
        event = audit(
            actor=actor, action="grant.revoked", target=locked, access_request=locked.request, data={"reason": reason}
        )
        enqueue_on_commit(tasks.request_notify, event.pk)
    return locked


def grant_request_renewal(*, actor: Actor, grant: Grant) -> AccessRequest:
    """A new request, linked to the old grant, with the earlier answers; it goes to the reviewer queue."""
    if grant.user_id != actor.user.pk:
        raise ServiceError(_("Not your grant."), "not_found")
    if grant.revoked_at is not None:
        raise ServiceError(_("A revoked grant cannot be renewed; apply again instead."), "grant_revoked")
    previous = grant.request
    data = {name: getattr(previous, name) for name in REQUEST_FIELDS}
    data["noncommercial_attested"] = True
    return request_submit(actor=actor, release=grant.release, data=data, license_accepted=True, renewal_of=grant)


def grants_expire() -> dict:
    """Warn researchers before expiry and tell them at expiry; idempotent (each notice is sent once)."""
    from . import emails

    now = timezone.now()
    warned = expired = 0
    soon = now + timedelta(days=settings.GRANT_EXPIRY_WARNING_DAYS)
    for grant in Grant.objects.filter(
        revoked_at__isnull=True, expiry_warned_at__isnull=True, expires_at__gt=now, expires_at__lte=soon
    ).select_related("release", "user"):
        emails.send_once(
            dedupe_key=f"grant-expiring:{grant.pk}",
            template="grant_expiring",
            to=grant.user.email,
            context={"grant": grant, "release": grant.release},
        )
        Grant.objects.filter(pk=grant.pk).update(expiry_warned_at=now)
        warned += 1
    for grant in Grant.objects.filter(
        revoked_at__isnull=True, expired_notified_at__isnull=True, expires_at__lte=now
    ).select_related("release", "user"):
        with transaction.atomic():
            updated = Grant.objects.filter(pk=grant.pk, expired_notified_at__isnull=True).update(
                expired_notified_at=now
            )
            if updated:
                audit(actor=TASK, action="grant.expired", target=grant, access_request=grant.request)
        emails.send_once(
            dedupe_key=f"grant-expired:{grant.pk}",
            template="grant_expired",
            to=grant.user.email,
            context={"grant": grant, "release": grant.release},
        )
        expired += 1
    return {"warned": warned, "expired": expired}


def grants_reconcile(*, older_than: timedelta | None = None) -> list[int]:
    """Approved requests whose grant never appeared (a lost message, a broker outage): enqueue them again."""
    from . import tasks

    if older_than is None:
        older_than = timedelta(seconds=settings.GRANT_RECONCILE_AFTER_SECONDS)
    cutoff = timezone.now() - older_than
    missing = list(
        AccessRequest.objects.filter(status=S.APPROVED, grant__isnull=True, decided_at__lte=cutoff).values_list(
            "pk", flat=True
        )
    )
    for pk in missing:
        tasks.grant_issue.apply_async(args=(pk,), retry=False)
    stale_batches = UrlBatch.objects.filter(status=UrlBatch.Status.PENDING, created_at__lte=cutoff)
    for pk in stale_batches.values_list("pk", flat=True):
        tasks.batch_issue.apply_async(args=(pk,), retry=False)
    return missing
