"""Access requests: applicants submit, answer and withdraw; reviewers approve, reject and ask for information.

Each verb checks its actor itself (a reviewer with a fresh credential for decisions, never on their own
request; the applicant for answers and withdrawals), so the rule holds whichever entry point calls it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import downloads, questions, selectors
from .. import rules as decision_rules
from ..audit import audit
from ..models import (
    AccessQuestion,
    AccessRequest,
    DecisionRule,
    FlawReportAttachment,
    Grant,
    Lab,
    ModelRelease,
    RequestAnswer,
    RequestAttachment,
    User,
)
from ..storage import get_storage
from ..taskbase import Enqueued
from . import labs, stewardship
from .base import (
    Actor,
    Forbidden,
    InvalidTransition,
    NotFound,
    ServiceError,
    clean,
    require_reviewer,
    require_user,
    rule_actor,
)
from .grants import grant_issue_task
from .notifications import request_notify, reviewers_notify
from .workflow import lock, transition

S = AccessRequest.Status

REQUEST_FIELDS = [
    "full_name",
    "affiliation",
    "organization_type",
    "country",
    "role",
    "intended_use",
    "publications",
]
# The free-text answers, each with the cleaning it gets: (one line, a person's or organisation's name, limit).
TEXT_FIELDS = {
    "full_name": (False, True, 200),
    "affiliation": (False, True, 300),
    "role": (False, True, 200),
    "intended_use": (True, False, 5000),
    "publications": (True, False, 2000),
}


class UploadTooLarge(ServiceError):
    """More files than a question or a request takes."""

    code = "upload_too_large"
    status = 413


class UploadLimit(ServiceError):
    """More bytes than a person may upload in a UTC day; `headers` carries when to try again."""

    code = "upload_limit"
    status = 429

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, field="file")
        self.headers = {"Retry-After": str(retry_after)}


class OpenRequestExists(ServiceError):
    code = "request_exists"
    status = 409

    def __init__(self, message: str, existing: AccessRequest | None):
        super().__init__(message)
        self.existing = existing


def email_verified(user: User) -> bool:
    return EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()


def _reason(reason: str, *, required: bool) -> str:
    reason = clean(reason, field="reason", multiline=True)
    if required and not reason:
        raise ServiceError(_("Give a reason; the applicant will see it."), "reason_required", field="reason")
    return reason


def _require_decider(actor: Actor, access_request: AccessRequest) -> None:
    """A reviewer with a fresh credential, who is not the applicant nor, for a lab request (or its renewal), a
    member of the lab it would cover."""
    require_reviewer(actor)
    if actor.user is not None and actor.user.pk == access_request.applicant_id:
        raise Forbidden(_("Reviewers cannot decide their own requests; another reviewer must."), "own_request")
    if access_request.lab_id is not None:
        labs.require_outside_lab(actor, access_request.lab)


def _require_applicant(actor: Actor, access_request: AccessRequest) -> None:
    if actor.user is None or actor.user.pk != access_request.applicant_id:
        # Someone else's request does not exist for them.
        raise NotFound(_("Not found."))


def request_submit(
    *,
    actor: Actor,
    release: ModelRelease,
    data: dict,
    license_accepted: bool,
    answers: dict | None = None,
    uploads: dict | None = None,
    draft: bool = False,
) -> AccessRequest:
    """A person applies for themselves. Refuses unverified accounts, open releases, someone the download gate
    already lets in (or who holds a grant on an older license version, who accepts the new one instead), a
    second open request (a database constraint, so two concurrent submits cannot both succeed) and applications
    inside the rejection cool-down.

    `answers` (by question id) and `uploads` (file questions) answer the release's own questions; the entry
    point has validated them with `access.forms.AccessRequestForm`. A `draft` waits for its uploads
    (`request_attach`) and reaches reviewers only with `request_submit_draft`."""
    user = require_user(actor)
    _require_applicable(user, release, data=data, license_accepted=license_accepted)
    decision = downloads.access_state(user=user, release=release)
    if decision.allowed or decision.code == "acknowledge_documents":
        raise ServiceError(_("You already have access to %(repo)s.") % {"repo": release.repo_id}, "already_granted")
    if decision.code == "license_update":
        raise ServiceError(decision.detail, "license_update")
    _require_cooled_down(user=user, release=release)
    stewardship.require_no_outstanding_closeout(user=user, release=release)
    pairs = _answer_pairs(release, answers or {}, uploads or {}, draft=draft)
    access_request = _file(actor, release, data, pairs=pairs, uploads=uploads, draft=draft, filing=Filing())
    if not draft:
        _apply_rules(actor, access_request)
    return access_request


def request_submit_for_lab(
    *,
    actor: Actor,
    release: ModelRelease,
    lab: Lab,
    data: dict,
    license_accepted: bool,
    members: list | None = None,
    all_members: bool = False,
    answers: dict | None = None,
    uploads: dict | None = None,
    draft: bool = False,
) -> AccessRequest:
    """An owner or admin applies for their lab, covering the lab's `members` named by member id, or
    `all_members`; approving it issues one lab grant (access.services.labs). Always decided by a reviewer."""
    user = require_user(actor)
    coverage = labs.lab_request_coverage(actor=actor, lab=lab, members=members, all_members=all_members)
    _require_applicable(user, release, data=data, license_accepted=license_accepted)
    if Grant.objects.active().filter(lab=lab, release=release).exists():
        raise ServiceError(
            _("%(lab)s already has access to %(repo)s.") % {"lab": lab.name, "repo": release.repo_id}, "already_granted"
        )
    _require_cooled_down(user=user, release=release, lab=lab)
    stewardship.require_no_outstanding_closeout(user=user, release=release, lab=lab)
    pairs = _answer_pairs(release, answers or {}, uploads or {}, draft=draft)
    filing = Filing(lab=lab, covered=tuple(m.user for m in coverage), all_members=all_members)
    return _file(actor, release, data, pairs=pairs, uploads=uploads, draft=draft, filing=filing)


def request_renew(*, actor: Actor, grant: Grant, report: dict | None = None) -> AccessRequest:
    """A new request, linked to the old grant, with the earlier answers; the release's decision rules decide it
    as any request (a lab's, one with an upload among its answers, or one that carries or needs a progress report
    goes to the reviewer queue). A lab grant is renewed by the lab's owner or an admin, for the members it covered.
    It carries a progress `report` when one is given, and must when the release asks for one."""
    user = require_user(actor)
    if grant.lab_id is None and grant.user_id != user.pk:
        raise NotFound(_("Not found."))
    if grant.lab_id is not None:
        labs.lab_request_coverage(actor=actor, lab=grant.lab, members=None, all_members=True)
    if grant.revoked_at is not None:
        raise ServiceError(_("A revoked grant cannot be renewed; apply again instead."), "grant_revoked")
    if grant.closed_at is not None:
        raise ServiceError(_("You closed this access; apply again instead."), "grant_closed")
    if report is None and grant.release.progress_report_required:
        raise ServiceError(
            _(
                "%(repo)s asks for a progress report with each renewal: what was done, publications, models derived, "
                "incidents."
            )
            % {"repo": grant.release.repo_id},
            "progress_report_required",
            field="progress_report",
        )
    if report is not None:
        stewardship.progress_report_check(report)
    previous = grant.request
    data = {
        **_previous_fields(previous),
        "noncommercial_attested": True,
        # The register entry carries on, unless its consent was withdrawn.
        "register_consent": previous.register_consent and previous.register_withdrawn_at is None,
        "public_statement": previous.public_statement,
    }
    _require_applicable(user, grant.release, data=data, license_accepted=True)
    _require_cooled_down(user=user, release=grant.release, lab=grant.lab)
    filing = Filing(
        lab=grant.lab,
        covered=tuple(previous.covered_members.all()) if grant.lab_id else (),
        all_members=previous.all_members,
        renewal_of=grant,
    )
    with transaction.atomic():
        renewal = _file(actor, grant.release, data, pairs=_previous_answers(previous), filing=filing)
        if report is not None:
            stewardship.progress_report_file(actor=actor, grant=grant, report=report, renewal=renewal)
    _apply_rules(actor, renewal)
    return renewal


def request_license_review(*, actor: Actor, grant: Grant) -> AccessRequest:
    """A holder accepting a new license version of a release that has a reviewer approve holders again: a
    request with their earlier answers, which moves the grant to the new version when approved (no cool-down: a
    holder is not an applicant)."""
    user = require_user(actor)
    if grant.user_id != user.pk:
        raise NotFound(_("Not found."))
    data = {**_previous_fields(grant.request), "noncommercial_attested": True}
    _require_applicable(user, grant.release, data=data, license_accepted=True)
    filing = Filing(reconsent_of=grant)
    return _file(actor, grant.release, data, pairs=_previous_answers(grant.request), filing=filing)


@dataclass(frozen=True)
class Filing:
    """Whom a new request is for and what it follows: the applicant alone, or a lab (its covered members, or
    all), and the grant it renews or whose license it reviews."""

    lab: Lab | None = None
    covered: tuple[User, ...] = ()
    all_members: bool = False
    renewal_of: Grant | None = None
    reconsent_of: Grant | None = None


def _require_applicable(user: User, release: ModelRelease, *, data: dict, license_accepted: bool) -> None:
    if not release.is_gated or release.license is None:
        raise ServiceError(_("%(repo)s is open: no request is needed.") % {"repo": release.repo_id}, "not_gated")
    if not email_verified(user):
        raise ServiceError(_("Verify your email address before applying."), "email_unverified")
    if not license_accepted or not data.get("noncommercial_attested"):
        raise ServiceError(_("You must accept the license and attest non-commercial use."), "license_not_accepted")
    _require_country_allowed(release, data.get("country"))


def _require_country_allowed(release: ModelRelease, country) -> None:
    """A request from one of the release's restricted countries is refused before it is filed, saying why."""
    code = str(country or "").upper()
    if code and code in (release.restricted_countries or []):
        raise ServiceError(
            _("%(repo)s is not available to requests from %(country)s: the release restricts that country.")
            % {"repo": release.repo_id, "country": code},
            "country_restricted",
            field="country",
        )


def _require_cooled_down(*, user: User, release: ModelRelease, lab: Lab | None = None) -> None:
    ends = selectors.rejection_cooldown_ends(user=user, release=release, lab=lab)
    if ends is not None:
        raise ServiceError(
            _("Your last request was rejected.") + " " + selectors.reapply_text(ends),
            "cooldown",
        )


def _previous_fields(previous: AccessRequest) -> dict:
    return {name: getattr(previous, name) for name in REQUEST_FIELDS}


def _previous_answers(previous: AccessRequest) -> list:
    return [(a.question, a.value) for a in selectors.request_answers(access_request=previous)]


def _file(
    actor: Actor,
    release: ModelRelease,
    data: dict,
    *,
    pairs: list,
    filing: Filing,
    uploads: dict | None = None,
    draft: bool = False,
) -> AccessRequest:
    """Create the request with its answers and uploads, audit it and tell whom it concerns, in one transaction."""
    user, lab = actor.user, filing.lab
    fields = {name: data.get(name, "") for name in REQUEST_FIELDS}
    for name, (multiline, is_name, limit) in TEXT_FIELDS.items():
        fields[name] = clean(fields[name], field=name, multiline=multiline, name=is_name, max_length=limit)
    now = timezone.now()
    try:
        with transaction.atomic():
            if uploads:
                lock_uploader(user)
            access_request = AccessRequest.objects.create(
                applicant=user,
                release=release,
                status=S.DRAFT if draft else S.PENDING,
                email=user.email,
                license=release.license,
                license_version=release.license.version,
                license_accepted_at=now,
                license_accepted_ip=actor.ip,
                noncommercial_attested=True,
                **stewardship.register_fields(release, data),
                renewal_of=filing.renewal_of,
                reconsent_of=filing.reconsent_of,
                lab=lab,
                all_members=bool(lab is not None and filing.all_members),
                **fields,
            )
            if lab is not None and not filing.all_members:
                access_request.covered_members.set(filing.covered)
            for question, value in pairs:
                RequestAnswer.objects.create(request=access_request, question=question, value=value)
            for key, upload in (uploads or {}).items():
                _store_attachment(access_request, _question(release, key), upload)
            _index_answers(access_request)
            lab_data = (
                {
                    "lab": lab.public_id,
                    "all_members": bool(filing.all_members),
                    "members": sorted(u.email for u in filing.covered),
                }
                if lab is not None
                else {}
            )
            event = audit(
                actor=actor,
                action="request.drafted" if draft else "request.submitted",
                target=access_request,
                access_request=access_request,
                data={
                    "license": release.license.slug,
                    "license_version": release.license.version,
                    "renewal_of": filing.renewal_of.public_id if filing.renewal_of else None,
                    "reconsent_of": filing.reconsent_of.public_id if filing.reconsent_of else None,
                    "answers": sorted(question.key for question, _value in pairs),
                    **lab_data,
                },
            )
            if not draft:
                _notify_submitted(access_request, event)
    except IntegrityError:
        mine = {"lab": lab} if lab is not None else {"applicant": user, "lab__isnull": True}
        existing = AccessRequest.objects.filter(
            release=release, status__in=AccessRequest.UNFINISHED_STATUSES, **mine
        ).first()
        if lab is not None:
            raise OpenRequestExists(_("The lab already has an open request for this release."), existing) from None
        raise OpenRequestExists(_("You already have an open request for this release."), existing) from None
    return access_request


def _answer_pairs(release: ModelRelease, answers: dict, uploads: dict, *, draft: bool) -> list:
    """(question, stored value) for every answered current question; a required question left unanswered is
    refused here too (any entry point), a required upload only once the request is submitted."""
    current = selectors.release_questions(release=release)
    unknown = sorted(set(answers) - {question.key for question in current})
    if unknown:
        raise ServiceError(_("Unknown question."), "unknown_question", field=questions.field_name(unknown[0]))
    pairs = []
    for question in current:
        field = questions.field_name(question.key)
        if question.kind == AccessQuestion.Kind.FILE:
            if question.required and question.key not in uploads and not draft:
                raise ServiceError(_upload_required(question), "upload_required", field=field)
            continue
        value = answers.get(question.key)
        if value in (None, "", [], False) and question.required:
            raise ServiceError(_("This field is required."), "required", field=field)
        if value not in (None, "", []):
            pairs.append((question, value))
    return pairs


def _upload_required(question: AccessQuestion) -> str:
    return _(
        'Upload this file: create the request with "draft": true, then POST the file to '
        "/api/v1/access-requests/<id>/attachments with question=%(key)s, then submit it."
    ) % {"key": question.key}


def _question(release: ModelRelease, key: str) -> AccessQuestion:
    question = AccessQuestion.objects.filter(release=release, key=key, retired_at__isnull=True).first()
    if question is None:
        raise ServiceError(_("Unknown question."), "unknown_question", field="question")
    return question


def _size(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + " " + unit
    return f"{n} B"


def _require_file_caps(locked: AccessRequest, adding: AccessQuestion | None = None) -> None:
    """The request's files (with one more for `adding`, when a file is being added) within
    UPLOAD_MAX_FILES_PER_QUESTION and UPLOAD_MAX_FILES_PER_REQUEST; UploadTooLarge (413) otherwise. The one
    check of both an upload and a draft's submission, so a draft that holds too many files is not sent on."""
    per_question = Counter(RequestAttachment.objects.filter(request=locked).values_list("question__key", flat=True))
    total = sum(per_question.values())
    question_cap, request_cap = settings.UPLOAD_MAX_FILES_PER_QUESTION, settings.UPLOAD_MAX_FILES_PER_REQUEST
    if adding is not None:
        if per_question[adding.key] >= question_cap:
            raise UploadTooLarge(
                _(
                    "A question takes at most %(cap)d files and “%(question)s” has %(n)d; remove one before "
                    "adding another."
                )
                % {"cap": question_cap, "question": adding.key, "n": per_question[adding.key]},
                field=questions.field_name(adding.key),
            )
        if total >= request_cap:
            raise UploadTooLarge(
                _("A request takes at most %(cap)d files and this one has %(n)d; remove one before adding another.")
                % {"cap": request_cap, "n": total},
                field=questions.field_name(adding.key),
            )
        return
    over = sorted(key for key, n in per_question.items() if n > question_cap)
    if over or total > request_cap:
        raise UploadTooLarge(
            _(
                "This request has %(n)d files; a request takes at most %(request_cap)d, and a question at most "
                "%(question_cap)d (too many for: %(questions)s). Remove files before submitting it."
            )
            % {
                "n": total,
                "request_cap": request_cap,
                "question_cap": question_cap,
                "questions": ", ".join(over) or "—",
            }
        )


def require_bytes_today(user: User, size: int) -> None:
    """A person's uploads of the current UTC day (removed files and flaw reports' files included), with this one, within
    UPLOAD_MAX_BYTES_PER_USER_DAY; UploadLimit (429, Retry-After: the next UTC midnight) otherwise. Called with
    the person's row locked, so two uploads at once (to any of their requests) are counted one after the other."""
    now = timezone.now().astimezone(UTC)
    midnight = datetime.combine(now.date(), time.min, tzinfo=UTC)
    used = (
        RequestAttachment.uploaded.filter(request__applicant=user, created_at__gte=midnight).aggregate(n=Sum("size"))[
            "n"
        ]
        or 0
    )
    # Files attached to flaw reports are uploads too: one allowance a day for everything a person sends.
    used += (
        FlawReportAttachment.objects.filter(uploaded_by=user, created_at__gte=midnight).aggregate(n=Sum("size"))["n"]
        or 0
    )
    cap = settings.UPLOAD_MAX_BYTES_PER_USER_DAY
    if used + size > cap:
        tomorrow = midnight + timedelta(days=1)
        raise UploadLimit(
            _(
                "You have uploaded %(used)s today (UTC) and this file is %(size)s; each person may upload %(cap)s "
                "a day. Upload it after 00:00 UTC."
            )
            % {"used": _size(used), "size": _size(size), "cap": _size(cap)},
            retry_after=max(int((tomorrow - now).total_seconds()), 1),
        )


def lock_uploader(user: User) -> None:
    """Take the uploader's row lock for the rest of the transaction: their uploads are counted one at a time."""
    User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).get()


def _store_attachment(access_request: AccessRequest, question: AccessQuestion, upload) -> RequestAttachment:
    """Keep an uploaded file in storage, outside every release's prefix (no repo id starts with `_`), and make
    it the answer to its question. Storage never hands out a URL for it: reviewers read it through the portal.
    Inside the caller's transaction, with the applicant's and the request's rows locked, the caps are checked
    before anything is stored."""
    try:
        media_type = questions.check_upload(question, upload)
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), "invalid_file", field=questions.field_name(question.key)) from None
    _require_file_caps(access_request, adding=question)
    require_bytes_today(access_request.applicant, upload.size)
    attachment = RequestAttachment(
        request=access_request,
        question=question,
        filename=questions.safe_filename(getattr(upload, "name", ""), media_type),
        content_type=media_type,
    )
    attachment.storage_key = f"_attachments/{access_request.public_id}/{attachment.public_id}/{attachment.filename}"
    upload.seek(0)
    attachment.size, attachment.sha256 = get_storage().save(attachment.storage_key, upload)
    attachment.save()
    RequestAnswer.objects.update_or_create(
        request=access_request, question=question, defaults={"value": attachment.public_id}
    )
    return attachment


def _index_answers(access_request: AccessRequest) -> None:
    attachments = {a.public_id: a for a in access_request.attachments.all()}
    pairs = [(a.question, a.value, attachments) for a in selectors.request_answers(access_request=access_request)]
    AccessRequest.objects.filter(pk=access_request.pk).update(answers_text=questions.search_text(pairs))


def _notify_submitted(access_request: AccessRequest, event) -> None:
    request_notify.enqueue(event.pk)
    if settings.REVIEWER_NOTIFICATIONS == "realtime":
        reviewers_notify.enqueue(access_request.pk)


def _apply_rules(actor: Actor, access_request: AccessRequest) -> None:
    """Let the release's decision rules decide a request just submitted: the first rule that matches the
    applicant's verified facts approves it (through `request_approve`, as the actor `rule:<id>`), refuses it
    (restricted countries) or leaves it to a reviewer; no match leaves it to a reviewer. Audited with the rule
    and the facts it used, which the request keeps (the grant then records them)."""
    if (
        access_request.status != S.PENDING
        or decision_rules.always_reviewed(access_request)
        or stewardship.renewal_needs_person(access_request)
    ):
        return
    rules = decision_rules.current_rules(access_request.release)
    if not rules:
        return
    facts = decision_rules.applicant_facts(access_request.applicant, access_request)
    outcome = decision_rules.decide(rules, facts)
    if outcome.rule is None or outcome.action == DecisionRule.Action.REVIEW:
        return
    rule = outcome.rule
    rule_by = rule_actor(str(rule.pk), ip=actor.ip)
    with transaction.atomic():
        AccessRequest.objects.filter(pk=access_request.pk).update(decided_by_rule=rule, rule_facts=list(outcome.facts))
        audit(
            actor=rule_by,
            action="request.rule_matched",
            target=access_request,
            access_request=access_request,
            data={
                "rule": rule.pk,
                "position": rule.position,
                "action": rule.action,
                "conditions": rule.conditions,
                "facts": list(outcome.facts),
            },
        )
        if outcome.action == DecisionRule.Action.APPROVE:
            why = decision_rules.explain(outcome.facts)
            request_approve(
                actor=rule_by,
                access_request=access_request,
                reason=_("Approved automatically because %(why)s.") % {"why": why},
            )
        else:
            request_reject(
                actor=rule_by,
                access_request=access_request,
                reason=_("Refused automatically: %(repo)s is not available to requests from %(country)s.")
                % {"repo": access_request.release.repo_id, "country": facts.country},
            )
    access_request.refresh_from_db()


def request_attach(*, actor: Actor, access_request: AccessRequest, question_key: str, upload) -> RequestAttachment:
    """The applicant uploads a file for one of the release's file questions: to a draft before submitting it,
    or while the reviewer asks for more information. The newest upload is the answer; earlier ones are kept."""
    _require_applicant(actor, access_request)
    with transaction.atomic():
        lock_uploader(access_request.applicant)
        locked = lock(access_request)
        if locked.status not in (S.DRAFT, S.NEEDS_INFO):
            raise InvalidTransition(
                _("Files can be added before the request is submitted or while the reviewer asks for information.")
            )
        question = _question(locked.release, question_key)
        if question.kind != AccessQuestion.Kind.FILE:
            raise ServiceError(_("This question does not take a file."), "not_a_file_question", field="question")
        attachment = _store_attachment(locked, question, upload)
        _index_answers(locked)
        audit(
            actor=actor,
            action="request.attachment_added",
            target=locked,
            access_request=locked,
            data={
                "question": question.key,
                "attachment": attachment.public_id,
                "filename": attachment.filename,
                "size": attachment.size,
                "sha256": attachment.sha256,
            },
        )
    return attachment


def request_attachment_remove(
    *, actor: Actor, access_request: AccessRequest, attachment: RequestAttachment
) -> RequestAttachment:
    """The applicant removes a file they uploaded, while they may still add files (a draft, or while the reviewer
    asks for more information). The file is hidden from everyone from then on (it still counts toward the day's
    upload bytes); the question's answer becomes the newest file left for it, or none."""
    _require_applicant(actor, access_request)
    with transaction.atomic():
        locked = lock(access_request)
        if locked.status not in (S.DRAFT, S.NEEDS_INFO):
            raise InvalidTransition(
                _("Files can be removed before the request is submitted or while the reviewer asks for information.")
            )
        found = RequestAttachment.objects.select_for_update().filter(pk=attachment.pk, request=locked).first()
        if found is None:
            raise NotFound(_("Not found."))
        found.removed_at = timezone.now()
        found.save(update_fields=["removed_at"])
        newest = (
            RequestAttachment.objects.filter(request=locked, question_id=found.question_id)
            .order_by("-created_at", "-id")
            .first()
        )
        answers = RequestAnswer.objects.filter(request=locked, question_id=found.question_id)
        if newest is None:
            answers.delete()
        else:
            answers.update(value=newest.public_id)
        _index_answers(locked)
        audit(
            actor=actor,
            action="request.attachment_removed",
            target=locked,
            access_request=locked,
            data={
                "question": found.question.key,
                "attachment": found.public_id,
                "filename": found.filename,
                "size": found.size,
                "sha256": found.sha256,
            },
        )
    return found


def request_submit_draft(*, actor: Actor, access_request: AccessRequest) -> AccessRequest:
    """Send a draft to the reviewers once every required upload is there."""
    _require_applicant(actor, access_request)
    with transaction.atomic():
        locked = lock(access_request)
        if locked.status == S.DRAFT:
            _require_file_caps(locked)
        answered = set(locked.answers.values_list("question__key", flat=True))
        for question in selectors.release_questions(release=locked.release):
            if question.kind == AccessQuestion.Kind.FILE and question.required and question.key not in answered:
                raise ServiceError(
                    _upload_required(question), "upload_required", field=questions.field_name(question.key)
                )
        event = transition(actor=actor, locked=locked, action="submit")
        _notify_submitted(locked, event)
    access_request.refresh_from_db()
    _apply_rules(actor, access_request)
    return access_request


def request_approve(
    *, actor: Actor, access_request: AccessRequest, reason: str = "", enqueued: Enqueued | None = None
) -> AccessRequest:
    """Approve; a worker then issues the grant (the one hook for what approval sets off, emails included)."""
    _require_decider(actor, access_request)
    if actor.kind == "rule" and stewardship.renewal_needs_person(access_request):
        raise Forbidden(
            _("A renewal with a progress report is decided by a reviewer, not by a rule."), "human_review_required"
        )
    reason = _reason(reason, required=False)
    with transaction.atomic():
        locked = lock(access_request)
        transition(actor=actor, locked=locked, action="approve", reason=reason)
        grant_issue_task.enqueue(locked.pk, result=enqueued)
    access_request.refresh_from_db()
    return access_request


def request_reject(*, actor: Actor, access_request: AccessRequest, reason: str) -> AccessRequest:
    _require_decider(actor, access_request)
    return _move(actor, access_request, "reject", _reason(reason, required=True), notify=True)


def request_ask_info(*, actor: Actor, access_request: AccessRequest, question: str) -> AccessRequest:
    _require_decider(actor, access_request)
    return _move(actor, access_request, "request_info", _reason(question, required=True), notify=True)


def request_answer(*, actor: Actor, access_request: AccessRequest, answer: str) -> AccessRequest:
    _require_applicant(actor, access_request)
    answer = clean(answer, field="answer", multiline=True)
    if not answer:
        raise ServiceError(_("Write an answer for the reviewer."), "answer_required", field="answer")
    return _move(actor, access_request, "answer", answer, notify=True)


def request_withdraw(*, actor: Actor, access_request: AccessRequest) -> AccessRequest:
    _require_applicant(actor, access_request)
    return _move(actor, access_request, "withdraw", "", notify=False)


def _move(actor: Actor, access_request: AccessRequest, action: str, reason: str, *, notify: bool) -> AccessRequest:
    with transaction.atomic():
        event = transition(actor=actor, locked=lock(access_request), action=action, reason=reason)
        if notify:
            request_notify.enqueue(event.pk)
    access_request.refresh_from_db()
    return access_request


def request_grant(*, actor: Actor, release: ModelRelease, user: User, reason: str = "") -> AccessRequest:
    """A reviewer gives access to someone who did not apply (or whose last request was decided): approve their
    open request if they have one, otherwise record a request of origin `reviewer` — no license accepted, nothing
    attested, the reviewer's decision on the record — and approve it, so the grant is issued as for any approval.
    The rejection cool-down does not apply: this is a reviewer's decision, not an application."""
    require_reviewer(actor)
    if actor.user is not None and actor.user.pk == user.pk:
        raise Forbidden(_("Reviewers cannot decide their own requests; another reviewer must."), "own_request")
    if not release.is_gated or release.license is None:
        raise ServiceError(_("%(repo)s is open: no request is needed.") % {"repo": release.repo_id}, "not_gated")
    if not user.is_active:
        raise ServiceError(_("This account is disabled."), "account_inactive")
    if selectors.user_active_grant(user=user, release=release) is not None:
        raise ServiceError(_("%(user)s already has access.") % {"user": user.email}, "already_granted")
    existing = AccessRequest.objects.open().filter(applicant=user, release=release, lab__isnull=True).first()
    if existing is not None:
        return request_approve(actor=actor, access_request=existing, reason=reason)
    reason = _reason(reason, required=False)
    try:
        with transaction.atomic():
            access_request = AccessRequest.objects.create(
                applicant=user,
                release=release,
                origin=AccessRequest.Origin.REVIEWER,
                full_name=clean(user.get_full_name(), field="full_name", multiline=False, name=True) or user.email,
                email=user.email,
                organization_type=AccessRequest.OrganizationType.OTHER,
                license=release.license,
                license_version=release.license.version,
                license_accepted_at=timezone.now(),
                noncommercial_attested=False,
            )
            audit(
                actor=actor,
                action="request.granted",
                target=access_request,
                access_request=access_request,
                data={"user": user.email, "origin": AccessRequest.Origin.REVIEWER},
            )
            transition(actor=actor, locked=lock(access_request), action="approve", reason=reason)
            grant_issue_task.enqueue(access_request.pk)
    except IntegrityError:
        raise OpenRequestExists(
            _("%(user)s filed a request meanwhile; decide it instead.") % {"user": user.email}, None
        ) from None
    access_request.refresh_from_db()
    return access_request


BULK_VERBS = {"approve": request_approve, "reject": request_reject}


def requests_decide_many(*, actor: Actor, public_ids: list[str], action: str, reason: str = "") -> dict:
    """Approve or reject many requests; each is its own transaction, so one refusal does not undo the others.
    Returns the ids done and, for each refused id, why."""
    require_reviewer(actor)
    verb = BULK_VERBS.get(action)
    if verb is None:
        raise ServiceError(_("Bulk actions are approve and reject."), "invalid_action")
    done, refused = [], {}
    for access_request in AccessRequest.objects.filter(public_id__in=public_ids).order_by("created_at"):
        try:
            verb(actor=actor, access_request=access_request, reason=reason)
            done.append(access_request.public_id)
        except ServiceError as exc:
            refused[access_request.public_id] = str(exc)
    for missing in set(public_ids) - set(done) - set(refused):
        refused[missing] = _("Not found.")
    return {"done": done, "refused": refused}
