"""Flaw reports: researchers report a flaw in a release's revisions under its disclosure terms; reviewers and
release managers triage them (received → triaged → accepted | declined | duplicate → resolved; declined and
duplicate reopen to triaged), and both sides comment on the report's page.

Who may file: a holder of an active grant or an active lab seat covering the release, or, where the release
accepts them, any account with a verified email. Who may triage: reviewers and release managers (with a fresh
credential), never on a report they filed. Every change is audited (the audit log tells the webhooks), recorded
on the report's history and emailed to the reporter in their language."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import emails, questions, selectors
from ..audit import audit
from ..models import (
    AuditEvent,
    DisclosureTerms,
    FlawReport,
    FlawReportAttachment,
    FlawReportEntry,
    LabSeat,
    ModelRelease,
    ReleaseRevision,
    User,
)
from ..storage import get_storage
from ..taskbase import portal_task
from .base import Actor, Forbidden, InvalidTransition, NotFound, ServiceError, clean, require_role, require_user
from .requests import UploadTooLarge, email_verified, lock_uploader, require_bytes_today

F = FlawReport.Status

# The one table of triage: from each state, where a reviewer may move a report.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    F.RECEIVED: (F.TRIAGED, F.DECLINED, F.DUPLICATE),
    F.TRIAGED: (F.ACCEPTED, F.DECLINED, F.DUPLICATE),
    F.ACCEPTED: (F.RESOLVED,),
    F.DECLINED: (F.TRIAGED,),  # reopened
    F.DUPLICATE: (F.TRIAGED,),  # reopened
    F.RESOLVED: (),
}
# The free-text fields of a report: (multiline, a person's name, limit, required).
TEXT_FIELDS = {
    "title": (False, False, 200, True),
    "description": (True, False, 10_000, True),
    "reproduction": (True, False, 20_000, True),
    "observed": (True, False, 10_000, True),
    "expected": (True, False, 10_000, True),
    "other_models_detail": (True, False, 2000, False),
    "credit_name": (False, True, 200, False),
}
COMMENT_MAX = 10_000

# The terms a release has before its release managers publish their own (version 1, stored at first use).
DEFAULT_TERMS = (
    "Safe harbour. We will not take legal action against you, nor revoke your access, for good-faith research "
    "into this model's flaws that keeps to its license, does not harm others, and is reported here first.\n\n"
    "Embargo. Do not publish the flaw until it is resolved or 90 days after you report it, whichever comes "
    "first, unless we agree on another date with you in the report's comments.\n\n"
    "Credit. When we publish an advisory about the flaw, we credit the name you give, or nobody if you report "
    "anonymously. Reviewers always see who reported it."
)
DEFAULT_TERMS_ZH = (
    "安全港。对于遵守本模型许可、不伤害他人、并首先在此报告的善意缺陷研究，我们不会对您采取法律行动，也不会撤销您的访问权限。\n\n"
    "禁止披露期。在缺陷解决之前，或在您报告后 90 天内（以先到者为准），请不要公开该缺陷，"
    "除非我们在报告的评论中与您商定了其他日期。\n\n"
    "致谢。我们发布有关该缺陷的公告时，会署上您提供的名字；如果您匿名报告，则不署名。审核员始终能看到报告人是谁。"
)


# --- Who ----------------------------------------------------------------------------------------------------


def can_triage(user) -> bool:
    return selectors.is_reviewer(user) or selectors.is_release_manager(user)


def require_triager(actor: Actor) -> None:
    """Reviewers and release managers, with a credential fit for powers (access.services.base.require_role)."""
    require_role(actor, holds=can_triage, refusal=_("Only reviewers and release managers may triage flaw reports."))


def holds_release(user: User, release: ModelRelease) -> bool:
    """An active grant of the user's own, or an active seat on an active lab grant of a lab they are in now."""
    if selectors.user_active_grant(user=user, release=release) is not None:
        return True
    seats = LabSeat.objects.filter(
        user=user,
        status=LabSeat.Status.ACTIVE,
        grant__release=release,
        grant__revoked_at__isnull=True,
        grant__expires_at__gt=timezone.now(),
        grant__lab__memberships__user=user,
        grant__lab__memberships__left_at__isnull=True,
    )
    return seats.exists()


def may_report(user: User | None, release: ModelRelease) -> bool:
    """Whether this account may file a flaw report on the release (see the module's docstring)."""
    if user is None or not user.is_authenticated or not user.is_active or not release.published:
        return False
    if holds_release(user, release):
        return True
    return release.flaw_reports_from_verified and email_verified(user)


def _require_reporter(actor: Actor, report: FlawReport) -> None:
    if actor.user is None or actor.user.pk != report.reporter_id:
        raise NotFound(_("Not found."))


# --- Disclosure terms --------------------------------------------------------------------------------------


def disclosure_terms_current(*, release: ModelRelease) -> DisclosureTerms:
    """The release's newest terms; the portal's default terms become its version 1 the first time they are
    needed (idempotent under concurrency: the version is unique per release)."""
    terms = DisclosureTerms.objects.filter(release=release).order_by("-version").first()
    if terms is not None:
        return terms
    try:
        with transaction.atomic():
            return DisclosureTerms.objects.create(
                release=release, version=1, text=DEFAULT_TERMS, text_zh_hans=DEFAULT_TERMS_ZH
            )
    except IntegrityError:
        return DisclosureTerms.objects.filter(release=release).order_by("-version").first()


def disclosure_terms_publish(
    *, actor: Actor, release: ModelRelease, text: str, text_zh_hans: str = ""
) -> DisclosureTerms:
    """A release manager publishes a new version of the release's disclosure terms. Reports already filed keep
    the version they accepted; nobody's access changes and nobody is asked to accept again."""
    require_role(actor, holds=selectors.is_release_manager, refusal=_("Only release managers may do this."))
    text = clean(text, field="text", multiline=True, max_length=20_000)
    text_zh_hans = clean(text_zh_hans, field="text_zh_hans", multiline=True, max_length=20_000)
    if not text:
        raise ServiceError(_("Write the terms."), "text_required", field="text")
    with transaction.atomic():
        ModelRelease.objects.select_for_update().filter(pk=release.pk).values_list("pk", flat=True).get()
        current = disclosure_terms_current(release=release)
        terms = DisclosureTerms.objects.create(
            release=release,
            version=current.version + 1,
            text=text,
            text_zh_hans=text_zh_hans,
            published_by=actor.user if actor.user and actor.user.pk else None,
        )
        audit(
            actor=actor,
            action="disclosure_terms.published",
            target=release,
            data={"release": release.repo_id, "version": terms.version},
        )
    return terms


# --- Filing ------------------------------------------------------------------------------------------------


def _choice(value, choices, *, field: str, required: bool = True) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or value not in choices.values:
        raise ServiceError(
            _("Choose one of: %(choices)s.") % {"choices": ", ".join(choices.values)}, "invalid_choice", field=field
        )
    return value


def _revisions(release: ModelRelease, shas) -> list[ReleaseRevision]:
    """The published revisions named (40-hex ids, or `main`); at least one."""
    if not isinstance(shas, list | tuple) or not shas or len(shas) > 50:
        raise ServiceError(_("Name the affected revisions (one or more)."), "revisions_required", field="revisions")
    main = release.main_revision
    found = []
    for sha in shas:
        if sha == "main" and main is not None:
            found.append(main)
            continue
        found.append(published_revision(release, sha, field="revisions"))
    return list({r.pk: r for r in found}.values())


def published_revision(release: ModelRelease, sha, *, field: str) -> ReleaseRevision:
    """The published revision of the release with this 40-hex id, or a 400 `unknown_revision` on `field`."""
    found = None
    if isinstance(sha, str) and len(sha) == 40:
        found = ReleaseRevision.objects.filter(release=release, sha=sha, published_at__isnull=False).first()
    if found is None:
        raise ServiceError(
            _("%(revision)s is not a published revision of %(repo)s.")
            % {"revision": str(sha)[:40], "repo": release.repo_id},
            "unknown_revision",
            field=field,
        )
    return found


def flaw_report_file(
    *,
    actor: Actor,
    release: ModelRelease,
    data: dict,
    revisions: list,
    terms_version,
    accept_terms: bool,
    uploads=(),
) -> FlawReport:
    """File a flaw report: the reporter accepts the release's current disclosure terms (the version they were
    shown), names the affected revisions and may attach files (capped as every upload is)."""
    user = require_user(actor)
    if not may_report(user, release):
        raise Forbidden(
            _("Only holders of access to %(repo)s may report flaws in it.") % {"repo": release.repo_id},
            "not_a_holder",
        )
    terms = disclosure_terms_current(release=release)
    if accept_terms is not True:
        raise ServiceError(_("Accept the disclosure terms to file a report."), "terms_required", field="accept_terms")
    if str(terms_version) != str(terms.version):
        raise ServiceError(
            _("Version %(v)s is not the disclosure terms of %(repo)s; their current version is %(current)s.")
            % {"v": str(terms_version)[:20], "repo": release.repo_id, "current": terms.version},
            "terms_version",
            field="terms_version",
        )
    fields = {}
    for name, (multiline, is_name, limit, required) in TEXT_FIELDS.items():
        value = data.get(name, "")
        if not isinstance(value, str):
            raise ServiceError(_("Expected text."), "invalid", field=name)
        fields[name] = clean(value, field=name, multiline=multiline, name=is_name, max_length=limit)
        if required and not fields[name]:
            raise ServiceError(_("This field is required."), "required", field=name)
    fields["category"] = _choice(data.get("category"), FlawReport.Category, field="category")
    fields["severity"] = _choice(data.get("severity"), FlawReport.Severity, field="severity")
    fields["other_models"] = (
        _choice(data.get("other_models"), FlawReport.OtherModels, field="other_models", required=False)
        or FlawReport.OtherModels.UNKNOWN
    )
    anonymous = data.get("anonymous", False)
    if not isinstance(anonymous, bool):
        raise ServiceError(_("Expected true or false."), "invalid", field="anonymous")
    affected = _revisions(release, revisions)
    uploads = list(uploads or [])
    if len(uploads) > settings.UPLOAD_MAX_FILES_PER_REQUEST:
        raise UploadTooLarge(
            _("A report takes at most %(cap)d files.") % {"cap": settings.UPLOAD_MAX_FILES_PER_REQUEST},
            field="attachments",
        )
    with transaction.atomic():
        if uploads:
            lock_uploader(user)
        report = FlawReport.objects.create(
            release=release,
            reporter=user,
            anonymous=anonymous,
            terms=terms,
            terms_accepted_at=timezone.now(),
            terms_accepted_ip=actor.ip,
            **fields,
        )
        report.revisions.set(affected)
        for upload in uploads:
            _store(report, user, upload)
        event = audit(
            actor=actor,
            action="flaw_report.received",
            target=report,
            data={
                "release": release.repo_id,
                "revisions": [r.sha for r in affected],
                "category": report.category,
                "severity": report.severity,
                "terms_version": terms.version,
                "attachments": len(uploads),
            },
        )
        FlawReportEntry.objects.create(
            report=report, author=user, kind=FlawReportEntry.Kind.CHANGE, to_status=F.RECEIVED
        )
        flaw_report_notify.enqueue(event.pk)
    return report


def _store(report: FlawReport, user: User, upload) -> FlawReportAttachment:
    """Keep an attached file outside every release's prefix; the caps of every upload apply (one file's size
    and type, the files of one report, the person's bytes a day), checked before anything is stored."""
    try:
        media_type = questions.check_file(upload)
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), "invalid_file", field="attachments") from None
    if FlawReportAttachment.objects.filter(report=report).count() >= settings.UPLOAD_MAX_FILES_PER_REQUEST:
        raise UploadTooLarge(
            _("A report takes at most %(cap)d files.") % {"cap": settings.UPLOAD_MAX_FILES_PER_REQUEST},
            field="attachments",
        )
    require_bytes_today(user, upload.size)
    attachment = FlawReportAttachment(
        report=report,
        uploaded_by=user,
        filename=questions.safe_filename(getattr(upload, "name", ""), media_type),
        content_type=media_type,
    )
    attachment.storage_key = f"_flaw-reports/{report.public_id}/{attachment.public_id}/{attachment.filename}"
    upload.seek(0)
    attachment.size, attachment.sha256 = get_storage().save(attachment.storage_key, upload)
    attachment.save()
    return attachment


def flaw_report_attach(*, actor: Actor, report: FlawReport, upload) -> FlawReportAttachment:
    """The reporter adds a file to their report while it is not resolved."""
    _require_reporter(actor, report)
    with transaction.atomic():
        lock_uploader(report.reporter)
        locked = FlawReport.objects.select_for_update().get(pk=report.pk)
        if locked.status == F.RESOLVED:
            raise InvalidTransition(_("Files cannot be added to a resolved report."))
        attachment = _store(locked, report.reporter, upload)
        audit(
            actor=actor,
            action="flaw_report.attachment_added",
            target=locked,
            data={"attachment": attachment.public_id, "size": attachment.size, "sha256": attachment.sha256},
        )
    return attachment


# --- Comments and triage -----------------------------------------------------------------------------------


def flaw_report_comment(*, actor: Actor, report: FlawReport, body: str) -> FlawReportEntry:
    """The reporter, or a reviewer or release manager, comments on a report; the other side is emailed."""
    user = require_user(actor)
    by_reviewer = user.pk != report.reporter_id
    if by_reviewer:
        if not can_triage(user):
            raise NotFound(_("Not found."))
        require_triager(actor)
    body = clean(body, field="body", multiline=True, max_length=COMMENT_MAX)
    if not body:
        raise ServiceError(_("Write a comment."), "body_required", field="body")
    with transaction.atomic():
        entry = FlawReportEntry.objects.create(
            report=report, author=user, by_reviewer=by_reviewer, kind=FlawReportEntry.Kind.COMMENT, body=body
        )
        event = audit(
            actor=actor,
            action="flaw_report.commented",
            target=report,
            data={"entry": entry.public_id, "by_reviewer": by_reviewer},
        )
        flaw_report_notify.enqueue(event.pk)
    return entry


def flaw_report_triage(
    *,
    actor: Actor,
    report: FlawReport,
    status: str,
    severity: str = "",
    note: str = "",
    duplicate_of: FlawReport | None = None,
    assignee: User | None = None,
    unassign: bool = False,
) -> FlawReport:
    """Move a report along TRANSITIONS (or, with its current status, change only its severity or assignee),
    with a note the reporter reads. `duplicate` names another report on the same release."""
    require_triager(actor)
    if actor.user is not None and actor.user.pk == report.reporter_id:
        raise Forbidden(_("You cannot triage a report you filed; another reviewer must."), "own_report")
    status = _choice(status, FlawReport.Status, field="status")
    severity = _choice(severity, FlawReport.Severity, field="severity", required=False)
    note = clean(note, field="note", multiline=True, max_length=COMMENT_MAX)
    if assignee is not None and not can_triage(assignee):
        raise ServiceError(_("Assign reviewers or release managers only."), "invalid_assignee", field="assignee")
    if assignee is not None and assignee.pk == report.reporter_id:
        raise ServiceError(_("The reporter cannot be assigned their own report."), "invalid_assignee", field="assignee")
    with transaction.atomic():
        locked = FlawReport.objects.select_for_update().get(pk=report.pk)
        previous = locked.status
        changes = []
        if status != previous:
            if status not in TRANSITIONS[previous]:
                raise InvalidTransition(
                    _("A report that is %(from)s cannot become %(to)s.")
                    % {"from": locked.get_status_display().lower(), "to": FlawReport.Status(status).label.lower()}
                )
            locked.status = status
            changes.append("status")
        if status == F.DUPLICATE and status != previous:
            if duplicate_of is None:
                raise ServiceError(
                    _("Name the report this one duplicates."), "duplicate_of_required", field="duplicate_of"
                )
            if duplicate_of.pk == locked.pk or duplicate_of.release_id != locked.release_id:
                raise ServiceError(
                    _("A report duplicates another report on the same release."),
                    "invalid_duplicate",
                    field="duplicate_of",
                )
            # Point at the original, never at another duplicate.
            original = duplicate_of.duplicate_of if duplicate_of.status == F.DUPLICATE else duplicate_of
            if original is None or original.pk == locked.pk:
                raise ServiceError(
                    _("A report duplicates another report on the same release."),
                    "invalid_duplicate",
                    field="duplicate_of",
                )
            locked.duplicate_of = original
        elif status != F.DUPLICATE and locked.duplicate_of_id is not None:
            locked.duplicate_of = None
        if severity and severity != locked.triage_severity:
            locked.triage_severity = severity
            changes.append("severity")
        if assignee is not None and assignee.pk != locked.assignee_id:
            locked.assignee = assignee
            changes.append("assignee")
        elif unassign and locked.assignee_id is not None:
            locked.assignee = None
            changes.append("assignee")
        if not changes and not note:
            raise ServiceError(_("Nothing changed."), "no_change")
        now = timezone.now()
        if "status" in changes:
            if status == F.TRIAGED and locked.triaged_at is None:
                locked.triaged_at = now
            if status in (F.ACCEPTED, F.DECLINED, F.DUPLICATE):
                locked.decided_at = now
                locked.triaged_at = locked.triaged_at or now
            if status == F.RESOLVED:
                locked.resolved_at = now
        locked.save()
        reopened = previous in (F.DECLINED, F.DUPLICATE) and status == F.TRIAGED
        action = (
            ("flaw_report.reopened" if reopened else f"flaw_report.{status}")
            if "status" in changes
            else "flaw_report.updated"
        )
        entry = None
        if "status" in changes or note:
            entry = FlawReportEntry.objects.create(
                report=locked,
                author=actor.user if actor.user and actor.user.pk else None,
                by_reviewer=True,
                kind=FlawReportEntry.Kind.CHANGE if "status" in changes else FlawReportEntry.Kind.COMMENT,
                body=note,
                from_status=previous if "status" in changes else "",
                to_status=locked.status if "status" in changes else "",
            )
        event = audit(
            actor=actor,
            action=action,
            target=locked,
            data={
                "from": previous,
                "to": locked.status,
                "severity": locked.triage_severity,
                "assignee": locked.assignee.email if locked.assignee_id else None,
                "duplicate_of": locked.duplicate_of.public_id if locked.duplicate_of_id else None,
                "changes": changes,
                "entry": entry.public_id if entry is not None else None,
            },
        )
        flaw_report_notify.enqueue(event.pk)
    report.refresh_from_db()
    return report


# --- Emails ------------------------------------------------------------------------------------------------


def _report_of(event) -> FlawReport | None:
    return (
        FlawReport.objects.select_related("release", "reporter", "assignee", "duplicate_of")
        .filter(public_id=event.target_id)
        .first()
        if event.target_type == "FlawReport"
        else None
    )


@portal_task("access.tasks.flaw_report_notify")
def flaw_report_notify(event_id: int) -> int:
    """Tell the reporter of each change and each reviewer's comment (in their language); a reporter's comment
    goes to the report's assignee. Once per audit event."""
    event = AuditEvent.objects.filter(pk=event_id).first()
    report = _report_of(event) if event is not None else None
    if report is None:
        return 0
    context = {"report": report, "release": report.release, "event": event, "note": _last_note(report, event)}
    if event.action == "flaw_report.commented":
        if event.data.get("by_reviewer"):
            to, template = report.reporter.email, "flaw_report_comment"
        elif report.assignee_id is not None:
            to, template = report.assignee.email, "flaw_report_comment"
        else:
            return 0
    elif event.action == "flaw_report.received":
        to, template = report.reporter.email, "flaw_report_received"
    elif event.action.startswith("flaw_report.") and event.data.get("from") != event.data.get("to"):
        to, template = report.reporter.email, "flaw_report_status"
    elif event.action == "flaw_report.updated" and event.data.get("entry"):
        to, template = report.reporter.email, "flaw_report_comment"  # a reviewer's note without a change
    else:
        return 0
    context["by_reviewer"] = to == report.reporter.email
    return int(emails.send_once(dedupe_key=f"event:{event.pk}", template=template, to=to, context=context))


def _last_note(report: FlawReport, event) -> str:
    """The comment or note the event recorded, if any."""
    entry = FlawReportEntry.objects.filter(report=report, public_id=event.data.get("entry") or "").first()
    return entry.body if entry is not None else ""
