"""Advisories: what a release's managers tell the holders of affected revisions about a flaw, and withdrawing a
revision.

A release manager drafts an advisory (from flaw reports or on its own) and edits it while it is a draft;
publishing numbers it `ADV-YYYY-NNNN` (per year, one UPSERT so concurrent publications never share a number),
fixes who is told — every account with a `DownloadEvent` on an affected revision, whatever its grant's state now
(lab members by their own downloads) — emails them in their language, and tells the webhooks
(`advisory.published`). A published advisory is not edited: it gets dated updates. Each account told acknowledges
once (page or API) and is reminded ADVISORY_REMINDER_DAYS after the email until it does (the daily beat sweep).

Who sees an advisory: drafts, reviewers and release managers; a published one under embargo, also the accounts
told and the release's current holders; after the embargo (or without one), anyone who sees the release.

Withdrawing a revision (with an advisory) records the withdrawal beside the revision, moves `main` to the latest
published revision not withdrawn (none left: the release has nothing to serve), and reissues the grant-page
batches that signed it. The gate refuses the revision on every channel with `revision_withdrawn`, naming the fixed
revision; URLs already handed out work until their TTL."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from .. import emails, selectors
from ..audit import audit
from ..models import (
    Advisory,
    AdvisoryRecipient,
    AdvisoryUpdate,
    DownloadEvent,
    FlawReport,
    ModelRelease,
    ReleaseRevision,
    RevisionWithdrawal,
    UrlBatch,
    User,
)
from ..taskbase import portal_task
from .base import Actor, Forbidden, InvalidTransition, NotFound, ServiceError, clean, require_role, task_actor
from .flaws import holds_release, published_revision
from .grants import batch_sign_task

A = Advisory.Status
ADV_ID = re.compile(r"^ADV-[0-9]{4}-[0-9]{4,}$")
TEXT_FIELDS = {
    # field: (multiline, a person's name, limit, required)
    "title": (False, False, 200, True),
    "summary": (True, False, 20_000, True),
    "mitigation": (True, False, 20_000, False),
    "credit": (False, True, 200, False),
}
UPDATE_MAX = 10_000
EDITABLE = (*TEXT_FIELDS, "severity", "affected_revisions", "fixed_revision", "embargo_until", "reports")


# --- Who ----------------------------------------------------------------------------------------------------


def require_advisory_manager(actor: Actor) -> None:
    """Release managers (manage_release), with a credential fit for powers."""
    require_role(
        actor,
        holds=selectors.is_release_manager,
        refusal=_("Only release managers may write, publish and withdraw advisories."),
    )


def sees_drafts(user) -> bool:
    return selectors.is_release_manager(user) or selectors.is_reviewer(user)


def may_see(user, advisory: Advisory, now: datetime | None = None) -> bool:
    """Whether this account (or nobody) may see the advisory (see the module's docstring)."""
    if user is not None and user.is_authenticated and user.is_active and sees_drafts(user):
        return True
    if not advisory.published or not advisory.release.published:
        return False
    if advisory.public(now):
        return True
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return advisory.recipients.filter(user=user).exists() or holds_release(user, advisory.release)


def visible(user, release: ModelRelease) -> list[Advisory]:
    """The release's advisories this account may see, newest first."""
    rows = Advisory.objects.filter(release=release).select_related("release", "fixed_revision")
    if not (user is not None and user.is_authenticated and sees_drafts(user)):
        rows = rows.filter(status=A.PUBLISHED)
    return [a for a in rows.prefetch_related("affected_revisions") if may_see(user, a)]


def banners(user, release: ModelRelease) -> list[Advisory]:
    """Published advisories the account has yet to acknowledge: those it was told of, and, for a current holder
    who never fetched an affected revision, every one it may see. Shown on release and grant pages."""
    if user is None or not user.is_authenticated:
        return []
    rows = Advisory.objects.filter(release=release, status=A.PUBLISHED).exclude(
        recipients__user=user, recipients__acknowledged_at__isnull=False
    )
    if not holds_release(user, release):
        rows = rows.filter(recipients__user=user)
    return list(rows.order_by("-published_at").distinct())


def advisory_get(*, user, public_id: str) -> Advisory | None:
    """An advisory by id, or None when it does not exist for this account (a guess is a 404)."""
    rows = Advisory.objects.select_related("release", "fixed_revision")
    if ADV_ID.match(public_id or ""):
        found = rows.filter(identifier=public_id).first()
    else:
        found = rows.filter(public_id=public_id).first()
    return found if found is not None and may_see(user, found) else None


# --- Input --------------------------------------------------------------------------------------------------


def _revisions(release: ModelRelease, shas, *, field: str) -> list[ReleaseRevision]:
    if not isinstance(shas, list | tuple) or not shas or len(shas) > 50:
        raise ServiceError(_("Name the affected revisions (one or more)."), "revisions_required", field=field)
    return [published_revision(release, sha, field=field) for sha in dict.fromkeys(map(str, shas))]


def _reports(release: ModelRelease, ids) -> list[FlawReport]:
    if ids in (None, ""):
        return []
    if not isinstance(ids, list | tuple) or len(ids) > 50 or not all(isinstance(i, str) for i in ids):
        raise ServiceError(_("Name the flaw reports by their ids."), "invalid_reports", field="reports")
    found = list(FlawReport.objects.filter(release=release, public_id__in=ids))
    if len(found) != len(set(ids)):
        raise ServiceError(_("No such flaw report on this release."), "unknown_report", field="reports")
    return found


def _when(value) -> datetime | None:
    if value in (None, ""):
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or timezone.is_naive(parsed) or not 2000 <= parsed.year <= 2100:
        raise ServiceError(
            _("Give the embargo as an ISO 8601 date and time with its offset, e.g. 2027-01-31T12:00:00Z."),
            "invalid_date",
            field="embargo_until",
        )
    return parsed


def _fields(release: ModelRelease, data: dict, *, partial: bool) -> tuple[dict, dict]:
    """Clean values of the fields given: (plain fields, many-to-many fields)."""
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise ServiceError(
            _("Unknown field: %(field)s.") % {"field": sorted(unknown)[0][:50]}, "unknown_field", field="__all__"
        )
    plain: dict = {}
    many: dict = {}
    for name, (multiline, person, limit, required) in TEXT_FIELDS.items():
        if name not in data:
            if required and not partial:
                raise ServiceError(_("This field is required."), "required", field=name)
            continue
        value = data[name]
        if not isinstance(value, str):
            raise ServiceError(_("Give text."), "invalid", field=name)
        value = clean(value, field=name, multiline=multiline, name=person, max_length=limit)
        if required and not value:
            raise ServiceError(_("This field is required."), "required", field=name)
        plain[name] = value
    if "severity" in data or not partial:
        if data.get("severity") not in Advisory.Severity.values:
            raise ServiceError(
                _("Choose one of: %(choices)s.") % {"choices": ", ".join(Advisory.Severity.values)},
                "invalid_choice",
                field="severity",
            )
        plain["severity"] = data["severity"]
    if "affected_revisions" in data or not partial:
        many["affected_revisions"] = _revisions(release, data.get("affected_revisions"), field="affected_revisions")
    if data.get("fixed_revision") not in (None, ""):
        plain["fixed_revision"] = published_revision(release, data["fixed_revision"], field="fixed_revision")
    elif "fixed_revision" in data:
        plain["fixed_revision"] = None
    if "embargo_until" in data:
        plain["embargo_until"] = _when(data["embargo_until"])
    if "reports" in data:
        many["reports"] = _reports(release, data["reports"])
    affected = many.get("affected_revisions")
    fixed = plain.get("fixed_revision")
    if fixed is not None and affected is not None and fixed in affected:
        raise ServiceError(
            _("The fixed revision cannot be one of the affected revisions."),
            "fixed_is_affected",
            field="fixed_revision",
        )
    return plain, many


# --- Drafts -------------------------------------------------------------------------------------------------


def advisory_create(*, actor: Actor, release: ModelRelease, data: dict) -> Advisory:
    """A draft advisory on the release (see _fields for what `data` holds)."""
    require_advisory_manager(actor)
    plain, many = _fields(release, data, partial=False)
    with transaction.atomic():
        advisory = Advisory.objects.create(release=release, created_by=actor.user, **plain)
        for name, rows in many.items():
            getattr(advisory, name).set(rows)
        audit(actor=actor, action="advisory.drafted", target=advisory, data={"release": release.repo_id})
    return advisory


def advisory_update(*, actor: Actor, advisory: Advisory, data: dict) -> Advisory:
    """Change a draft; a published advisory gets dated updates instead (advisory_add_update)."""
    require_advisory_manager(actor)
    with transaction.atomic():
        locked = Advisory.objects.select_for_update().get(pk=advisory.pk)
        if locked.status != A.DRAFT:
            raise InvalidTransition(
                _("A published advisory is not edited; add a dated update instead."), "advisory_published"
            )
        plain, many = _fields(locked.release, data, partial=True)
        fixed = plain.get("fixed_revision")
        if (
            fixed is not None
            and "affected_revisions" not in many
            and locked.affected_revisions.filter(pk=fixed.pk).exists()
        ):
            raise ServiceError(
                _("The fixed revision cannot be one of the affected revisions."),
                "fixed_is_affected",
                field="fixed_revision",
            )
        for name, value in plain.items():
            setattr(locked, name, value)
        locked.save()
        for name, rows in many.items():
            getattr(locked, name).set(rows)
        audit(actor=actor, action="advisory.edited", target=locked, data={"fields": sorted([*plain, *many])})
    return locked


def advisory_add_update(*, actor: Actor, advisory: Advisory, body: str) -> AdvisoryUpdate:
    """A dated note on a published advisory."""
    require_advisory_manager(actor)
    body = clean(body if isinstance(body, str) else "", field="body", multiline=True, max_length=UPDATE_MAX)
    if not body:
        raise ServiceError(_("Write the update."), "required", field="body")
    with transaction.atomic():
        locked = Advisory.objects.select_for_update().get(pk=advisory.pk)
        if locked.status != A.PUBLISHED:
            raise InvalidTransition(_("Edit the draft instead; updates are for published advisories."), "draft")
        update = AdvisoryUpdate.objects.create(advisory=locked, author=actor.user, body=body)
        audit(actor=actor, action="advisory.updated", target=locked, data={"update": update.pk})
    return update


# --- Publishing ---------------------------------------------------------------------------------------------


def next_number(year: int) -> int:
    """The next advisory number of the year: one statement, so two publications at once get two numbers (the
    row lock is held until the publishing transaction ends; a rolled-back one gives its number back)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO access_advisorynumber (year, last) VALUES (%s, 1) "
            "ON CONFLICT (year) DO UPDATE SET last = access_advisorynumber.last + 1 RETURNING last",
            [year],
        )
        return cursor.fetchone()[0]


def holders_of(advisory: Advisory) -> list[int]:
    """Ids of the active accounts with a download of an affected revision, whatever their grant's state now."""
    revisions = list(advisory.affected_revisions.values_list("pk", flat=True))
    users = (
        DownloadEvent.objects.filter(revision_id__in=revisions, user__isnull=False)
        .values_list("user_id", flat=True)
        .distinct()
    )
    return list(User.objects.filter(pk__in=users, is_active=True).values_list("pk", flat=True))


def advisory_publish(*, actor: Actor, advisory: Advisory) -> Advisory:
    """Number the draft, fix who is told, email them (after commit) and tell the webhooks."""
    require_advisory_manager(actor)
    with transaction.atomic():
        locked = Advisory.objects.select_for_update().select_related("release").get(pk=advisory.pk)
        if locked.status != A.DRAFT:
            raise InvalidTransition(_("This advisory is already published."), "already_published")
        now = timezone.now()
        locked.year = now.year
        locked.number = next_number(now.year)
        locked.identifier = f"ADV-{locked.year}-{locked.number:04d}"
        locked.status, locked.published_at, locked.published_by = A.PUBLISHED, now, actor.user
        locked.save()
        told = holders_of(locked)
        AdvisoryRecipient.objects.bulk_create(
            [AdvisoryRecipient(advisory=locked, user_id=pk, created_at=now) for pk in told], ignore_conflicts=True
        )
        audit(
            actor=actor,
            action="advisory.published",
            target=locked,
            data={"id": locked.identifier, "release": locked.release.repo_id, "told": len(told)},
        )
        advisory_notify.enqueue(locked.pk)
    return locked


def page_url(advisory: Advisory) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("advisory-detail", kwargs={"public_id": advisory.public_id})


@portal_task("access.tasks.advisory_notify")
def advisory_notify(advisory_id: int) -> int:
    """Email every account told of a published advisory, once each (in its language)."""
    advisory = Advisory.objects.select_related("release", "fixed_revision").filter(pk=advisory_id).first()
    if advisory is None or not advisory.published:
        return 0
    sent = 0
    pending = advisory.recipients.filter(emailed_at__isnull=True).select_related("user")
    for recipient in pending:
        sent += _send(advisory, recipient, "advisory_published", f"advisory:{advisory.pk}:{recipient.user_id}")
        AdvisoryRecipient.objects.filter(pk=recipient.pk, emailed_at__isnull=True).update(emailed_at=timezone.now())
    return sent


def _send(advisory: Advisory, recipient: AdvisoryRecipient, template: str, key: str) -> int:
    context = {
        "advisory": advisory,
        "release": advisory.release,
        "url": page_url(advisory),
        "revisions": list(advisory.affected_revisions.values_list("sha", flat=True)),
    }
    return int(emails.send_once(dedupe_key=key, template=template, to=recipient.user.email, context=context))


def advisory_reminders_due(now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.ADVISORY_REMINDER_DAYS)
    rows = AdvisoryRecipient.objects.filter(
        acknowledged_at__isnull=True, reminded_at__isnull=True, emailed_at__lte=cutoff
    )
    return list(rows.values_list("pk", flat=True))


@portal_task("access.tasks.advisory_reminders")
def advisory_reminders() -> int:
    """Daily (beat): remind once each account that has not acknowledged ADVISORY_REMINDER_DAYS after its email.
    Running it twice reminds no one twice."""
    reminded = 0
    for pk in advisory_reminders_due():
        with transaction.atomic():
            recipient = (
                AdvisoryRecipient.objects.select_for_update()
                .select_related("user", "advisory__release")
                .filter(pk=pk, reminded_at__isnull=True, acknowledged_at__isnull=True)
                .first()
            )
            if recipient is None:
                continue
            recipient.reminded_at = timezone.now()
            recipient.save(update_fields=["reminded_at"])
            advisory = recipient.advisory
            reminded += _send(
                advisory, recipient, "advisory_reminder", f"advisory-reminder:{advisory.pk}:{recipient.user_id}"
            )
            audit(
                actor=task_actor("advisory_reminders"),
                action="advisory.reminded",
                target=advisory,
                data={"user": recipient.user_id},
            )
    return reminded


# --- Acknowledging ------------------------------------------------------------------------------------------


def advisory_acknowledge(*, actor: Actor, advisory: Advisory) -> AdvisoryRecipient:
    """The acting account acknowledges a published advisory it was told of (or, as a current holder, sees);
    once: acknowledging again changes nothing. Only for oneself."""
    user = actor.user
    if user is None or not user.is_authenticated or not may_see(user, advisory):
        raise NotFound(_("Not found."))
    if not advisory.published:
        raise InvalidTransition(_("Only a published advisory is acknowledged."), "draft")
    with transaction.atomic():
        recipient = AdvisoryRecipient.objects.select_for_update().filter(advisory=advisory, user=user).first()
        if recipient is None:
            if not holds_release(user, advisory.release):
                raise Forbidden(_("You were not told of this advisory: there is nothing to acknowledge."), "not_told")
            recipient = AdvisoryRecipient.objects.create(advisory=advisory, user=user)
        if recipient.acknowledged_at is None:
            recipient.acknowledged_at = timezone.now()
            recipient.save(update_fields=["acknowledged_at"])
            audit(actor=actor, action="advisory.acknowledged", target=advisory, data={"id": advisory.identifier})
    return recipient


def acknowledged_ids(user, advisories) -> set[int]:
    if user is None or not getattr(user, "is_authenticated", False):
        return set()
    return set(
        AdvisoryRecipient.objects.filter(user=user, advisory__in=advisories, acknowledged_at__isnull=False).values_list(
            "advisory_id", flat=True
        )
    )


# --- Withdrawing a revision ---------------------------------------------------------------------------------


def revision_withdraw(*, actor: Actor, advisory: Advisory, revision: str | None = None) -> list[RevisionWithdrawal]:
    """Withdraw the advisory's affected revisions (or the one named): the gate refuses them from now on, `main`
    moves to the latest published revision not withdrawn, and grant batches that signed one are reissued."""
    require_advisory_manager(actor)
    if not advisory.published:
        raise InvalidTransition(_("Publish the advisory before withdrawing its revisions."), "draft")
    release = advisory.release
    affected = list(advisory.affected_revisions.all())
    if revision not in (None, ""):
        named = published_revision(release, revision, field="revision")
        if named not in affected:
            raise ServiceError(
                _("Only a revision the advisory affects can be withdrawn with it."), "not_affected", field="revision"
            )
        affected = [named]
    with transaction.atomic():
        locked = ModelRelease.objects.select_for_update().get(pk=release.pk)
        made = []
        for rev in affected:
            if RevisionWithdrawal.objects.filter(revision=rev).exists():
                continue
            made.append(
                RevisionWithdrawal.objects.create(
                    revision=rev, advisory=advisory, use_instead=advisory.fixed_revision, withdrawn_by=actor.user
                )
            )
        serving = (
            ReleaseRevision.objects.filter(release=locked, published_at__isnull=False, withdrawal__isnull=True)
            .order_by("-number")
            .first()
        )
        if locked.main_revision_id != (serving.pk if serving else None):
            locked.main_revision, locked.revision = serving, serving.sha if serving else ""
            locked.save(update_fields=["main_revision", "revision", "updated_at"])
        withdrawn_shas = [w.revision.sha for w in made]
        reissued = 0
        if withdrawn_shas and serving is not None:
            for batch in UrlBatch.objects.filter(
                grant__release=locked, status=UrlBatch.Status.READY, revision__in=withdrawn_shas
            ).exclude(expires_at__lte=timezone.now()):
                grant = batch.grant
                if grant.is_active and not grant.batches.filter(status=UrlBatch.Status.PENDING).exists():
                    fresh = UrlBatch.objects.create(grant=grant)
                    batch_sign_task.enqueue(fresh.pk)
                    reissued += 1
        audit(
            actor=actor,
            action="release.revision_withdrawn",
            target=advisory,
            data={
                "release": locked.repo_id,
                "revisions": withdrawn_shas,
                "main": locked.revision,
                "batches_reissued": reissued,
            },
        )
    return made
