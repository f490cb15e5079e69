"""Stewardship of a grant: progress reports while it runs, a close-out when it ends, and the public register of
uses. Each verb checks who acts: the holder for a personal grant; for a lab grant its owner or an admin (the
lab's report, closing the lab's access), each member who held a seat for their own close-out and the owner for
the lab's; reminders only from the portal's schedule."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import emails
from ..audit import audit
from ..models import AccessRequest, CloseOut, Grant, LabMembership, LabSeat, ModelRelease, ProgressReport, User
from ..taskbase import portal_task
from .base import (
    Actor,
    Forbidden,
    InvalidTransition,
    NotFound,
    ServiceError,
    clean,
    require_portal,
    require_user,
    task_actor,
)
from .base import number as whole_number
from .workflow import lock, transition

Role = LabMembership.Role
Seat = LabSeat.Status
ADMIN_ROLES = (Role.OWNER, Role.ADMIN)
REMINDER_DAYS = (7, 30)
# A DOI: the 10. prefix, a registrant code, a slash and a suffix without spaces (Crossref's advice on matching).
DOI_RE = re.compile(r"^10\.\d{4,9}/\S{1,200}$")
DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")
MAX_DOIS = 50
STATEMENT_MAX = 500


# --- Who may act on a grant --------------------------------------------------------------------------------


def _role_in(user: User, lab) -> str | None:
    return (
        LabMembership.objects.current().filter(lab=lab, user=user).values_list("role", flat=True).first()
        if lab is not None
        else None
    )


def require_steward(actor: Actor, grant: Grant) -> User:
    """The one who speaks for the grant: its holder, or for a lab grant the lab's owner or an admin."""
    user = require_user(actor)
    if grant.lab_id is None:
        if grant.user_id != user.pk:
            raise NotFound(_("Not found."))
        return user
    role = _role_in(user, grant.lab)
    if role is None:
        raise NotFound(_("Not found."))
    if role not in ADMIN_ROLES:
        raise Forbidden(_("Only the lab's owner and admins can do this."), "lab_admin_required")
    return user


def grant_for(*, user: User, public_id: str) -> Grant | None:
    """A grant the person may see stewardship of: their own, one of their lab's, or one they held a seat on or
    were asked to close out. Anything else does not exist for them."""
    if user is None or not user.is_authenticated:
        return None
    grants = Grant.objects.select_related("release", "lab", "request").filter(public_id=public_id)
    grant = grants.first()
    if grant is None:
        return None
    if grant.lab_id is None:
        return grant if grant.user_id == user.pk else None
    if _role_in(user, grant.lab) is not None:
        return grant
    if LabSeat.objects.filter(grant=grant, user=user).exists() or grant.closeouts.filter(user=user).exists():
        return grant
    return None


# --- Progress reports --------------------------------------------------------------------------------------


def parse_dois(value) -> list[str]:
    """DOIs from a list or from text (one per line, or separated by commas or spaces), each checked for syntax
    and normalised to its bare form (10.xxxx/…; a doi.org link or a doi: prefix is taken off)."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        items = [v for v in re.split(r"[\s,]+", value) if v]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        raise ServiceError(_("Give publications as a list of DOIs."), "invalid_doi", field="publications")
    if len(items) > MAX_DOIS:
        raise ServiceError(
            _("At most %(n)d publications per report.") % {"n": MAX_DOIS}, "too_many_dois", field="publications"
        )
    dois = []
    for item in items:
        doi = item
        for prefix in DOI_PREFIXES:
            if doi.lower().startswith(prefix):
                doi = doi[len(prefix) :]
                break
        if not DOI_RE.match(doi) or any(ord(c) < 32 or c in "<>\"'" for c in doi):
            raise ServiceError(
                _("“%(doi)s” is not a DOI; a DOI looks like 10.1234/abcd.") % {"doi": item[:80]},
                "invalid_doi",
                field="publications",
            )
        if doi not in dois:
            dois.append(doi)
    return dois


def _report_fields(report: dict) -> dict:
    summary = clean(report.get("summary", ""), field="summary", multiline=True, max_length=5000)
    if not summary:
        raise ServiceError(_("Say what was done with the weights."), "summary_required", field="summary")
    return {
        "summary": summary,
        "publications": parse_dois(report.get("publications")),
        "derived_models": clean(report.get("derived_models", ""), field="derived_models", multiline=True),
        "incidents": clean(report.get("incidents", ""), field="incidents", multiline=True),
    }


def progress_report_check(report: dict | None) -> dict:
    """The cleaned fields of a report, or the refusal that names the field at fault (before anything is filed)."""
    if not isinstance(report, dict):
        raise ServiceError(_("A progress report is an object."), "invalid_report", field="progress_report")
    return _report_fields(report)


def progress_report_file(
    *, actor: Actor, grant: Grant, report: dict, renewal: AccessRequest | None = None
) -> ProgressReport:
    """File a progress report on a grant (any time while it exists; with a renewal, the report it carries)."""
    user = require_steward(actor, grant)
    fields = progress_report_check(report)
    if grant.revoked_at is not None and renewal is None:
        raise InvalidTransition(_("This grant was revoked; there is nothing to report on."), "grant_revoked")
    with transaction.atomic():
        filed = ProgressReport.objects.create(grant=grant, author=user, renewal=renewal, **fields)
        audit(
            actor=actor,
            action="grant.progress_report",
            target=grant,
            access_request=renewal or grant.request,
            data={
                "report": filed.public_id,
                "publications": filed.publications,
                "renewal": renewal.public_id if renewal else None,
                "incidents": bool(filed.incidents),
            },
        )
    return filed


def renewal_needs_person(access_request: AccessRequest) -> bool:
    """A renewal of a release that asks for progress reports, or one that carries a report, is decided by a
    person: no decision rule approves it."""
    if access_request.renewal_of_id is None:
        return False
    return (
        access_request.release.progress_report_required
        or ProgressReport.objects.filter(renewal=access_request).exists()
    )


# --- Close-out ---------------------------------------------------------------------------------------------


def closeout_url(grant: Grant) -> str:
    return settings.SITE_URL + reverse("grant-closeout", kwargs={"public_id": grant.public_id})


def closeouts_ask(*, actor: Actor, grant: Grant, reason: str, users: list[User] | None = None) -> list[CloseOut]:
    """Ask for the close-outs an ended access needs (inside the caller's transaction; idempotent): the holder's
    on a personal grant; on a lab grant each member who held a seat (or only `users`, for a member who left the
    lab) and, when the grant itself ended, the owner for the lab's copies."""
    wanted: list[tuple[User | int, str]] = []
    if grant.lab_id is None:
        wanted.append((grant.user_id, CloseOut.Scope.PERSONAL))
    else:
        seats = LabSeat.objects.filter(grant=grant, license_accepted_at__isnull=False)
        if users is not None:
            seats = seats.filter(user__in=users)
        wanted += [(user_id, CloseOut.Scope.PERSONAL) for user_id in seats.values_list("user_id", flat=True)]
        if users is None:
            owner = (
                LabMembership.objects.current()
                .filter(lab_id=grant.lab_id, role=Role.OWNER)
                .values_list("user_id", flat=True)
                .first()
            )
            if owner is not None:
                wanted.append((owner, CloseOut.Scope.LAB))
    asked = []
    for user_id, scope in wanted:
        if CloseOut.objects.filter(grant=grant, user_id=user_id, scope=scope).exists():
            continue
        try:
            with transaction.atomic():
                closeout = CloseOut.objects.create(grant=grant, user_id=user_id, scope=scope, reason=reason)
        except IntegrityError:
            continue
        audit(
            actor=actor,
            action="closeout.asked",
            target=grant,
            access_request=grant.request,
            data={"closeout": closeout.public_id, "scope": scope, "reason": reason, "user": closeout.user.email},
        )
        closeout_notify.enqueue(closeout.pk, "asked")
        asked.append(closeout)
    return asked


def outstanding_closeout(*, user: User, release: ModelRelease, lab=None) -> CloseOut | None:
    """The applicant's (or, applying for a lab, the lab's) close-out still owed on this release."""
    owed = CloseOut.objects.filter(completed_at__isnull=True, grant__release=release).select_related("grant")
    if lab is not None:
        return owed.filter(grant__lab=lab, scope=CloseOut.Scope.LAB).first()
    return owed.filter(user=user, scope=CloseOut.Scope.PERSONAL).first()


def require_no_outstanding_closeout(*, user: User, release: ModelRelease, lab=None) -> None:
    """Submission's `closeout_required` refusal: the release asks for close-outs and one is owed on it."""
    if not release.closeout_required:
        return
    owed = outstanding_closeout(user=user, release=release, lab=lab)
    if owed is not None:
        raise ServiceError(
            _(
                "%(repo)s asks holders to certify that their copies were deleted when access ends, and a close-out "
                "of your earlier access is outstanding. File it at %(url)s, then apply again."
            )
            % {"repo": release.repo_id, "url": closeout_url(owed.grant)},
            "closeout_required",
        )


def _closeout_owed(user: User, grant: Grant, scope: str | None) -> CloseOut:
    owed = CloseOut.objects.select_for_update().filter(grant=grant, completed_at__isnull=True)
    mine = owed.filter(user=user, scope=CloseOut.Scope.PERSONAL)
    lab = (
        owed.filter(scope=CloseOut.Scope.LAB)
        if grant.lab_id is not None and _role_in(user, grant.lab) == Role.OWNER
        else owed.none()
    )
    if scope == CloseOut.Scope.LAB:
        found = lab.first()
    elif scope == CloseOut.Scope.PERSONAL:
        found = mine.first()
    elif scope in (None, ""):
        found = mine.first() or lab.first()
    else:
        raise ServiceError(_("The scope is personal or lab."), "invalid_scope", field="scope")
    if found is None:
        raise InvalidTransition(_("No close-out of yours is outstanding on this grant."), "no_closeout")
    return found


def closeout_file(
    *, actor: Actor, grant: Grant, deleted_on, locations, statement: str, scope: str | None = None
) -> CloseOut:
    """Certify that copies were deleted: when, how many places held them, and a statement in one's own words."""
    user = require_user(actor)
    if not isinstance(deleted_on, date) or isinstance(deleted_on, datetime):
        raise ServiceError(_("Give the date as YYYY-MM-DD."), "invalid_date", field="deleted_on")
    today = timezone.now().date()
    if deleted_on > today:
        raise ServiceError(_("The date cannot be in the future."), "invalid_date", field="deleted_on")
    if deleted_on < grant.issued_at.date():
        raise ServiceError(_("The date cannot be before the access began."), "invalid_date", field="deleted_on")
    locations = whole_number(locations, field="locations", low=0, high=1000)
    statement = clean(statement, field="statement", multiline=True, max_length=2000)
    if not statement:
        raise ServiceError(_("Write a statement in your own words."), "statement_required", field="statement")
    with transaction.atomic():
        closeout = _closeout_owed(user, grant, scope)
        closeout.completed_at, closeout.completed_by = timezone.now(), user
        closeout.deleted_on, closeout.locations, closeout.statement = deleted_on, locations, statement
        closeout.save(update_fields=["completed_at", "completed_by", "deleted_on", "locations", "statement"])
        audit(
            actor=actor,
            action="closeout.completed",
            target=grant,
            access_request=grant.request,
            data={
                "closeout": closeout.public_id,
                "scope": closeout.scope,
                "deleted_on": deleted_on.isoformat(),
                "locations": locations,
            },
        )
    return closeout


def grant_close(*, actor: Actor, grant: Grant) -> Grant:
    """The holder's "close my access" (for a lab grant: its owner or an admin): the grant ends now, its open
    renewals are withdrawn, a lab's seats end, and the close-outs are asked."""
    require_steward(actor, grant)
    with transaction.atomic():
        locked = Grant.objects.select_for_update().select_related("release", "request").get(pk=grant.pk)
        now = timezone.now()
        if locked.revoked_at is not None or locked.expires_at <= now:
            raise InvalidTransition(_("This access has already ended."), "grant_ended")
        locked.closed_at = now
        locked.expires_at = max(now, locked.issued_at + timedelta(microseconds=1))
        # Closed by its holder: no "your access expired" notice follows.
        locked.expired_notified_at = now
        locked.save(update_fields=["closed_at", "expires_at", "expired_notified_at", "updated_at"])
        audit(actor=actor, action="grant.closed", target=locked, access_request=locked.request)
        for renewal in locked.renewals.open():
            transition(actor=actor, locked=lock(renewal), action="withdraw", data={"closed_grant": locked.public_id})
        if locked.lab_id is not None:
            LabSeat.objects.filter(grant=locked).exclude(status=Seat.ENDED).update(
                status=Seat.ENDED, ended_at=now, updated_at=now
            )
        closeouts_ask(actor=actor, grant=locked, reason=CloseOut.Reason.CLOSED)
    return locked


@portal_task("access.tasks.closeout_notify")
def closeout_notify(closeout_id: int, kind: str) -> bool:
    """Email the person asked for a close-out: when asked, and each reminder (each once, in their language)."""
    closeout = CloseOut.objects.select_related("grant__release", "grant__lab", "user").filter(pk=closeout_id).first()
    if closeout is None or closeout.completed_at is not None:
        return False
    return emails.send_once(
        dedupe_key=f"closeout:{kind}:{closeout.pk}",
        template="closeout_asked" if kind == "asked" else "closeout_reminder",
        to=closeout.user.email,
        context={
            "closeout": closeout,
            "grant": closeout.grant,
            "release": closeout.grant.release,
            "url": closeout_url(closeout.grant),
            "days": (timezone.now() - closeout.asked_at).days,
        },
    )


def closeouts_remind(*, actor: Actor, now: datetime | None = None) -> dict:
    """Remind people of close-outs still owed 7 and 30 days after they were asked; each reminder once (a
    close-out first seen after 30 days gets only the 30-day one)."""
    require_portal(actor, _("Only the portal's schedule may do this."))
    now = now or timezone.now()
    sent = {7: 0, 30: 0}
    owed = CloseOut.objects.filter(completed_at__isnull=True)
    for days, field in ((30, "reminded_30_at"), (7, "reminded_7_at")):
        due = owed.filter(asked_at__lte=now - timedelta(days=days), **{f"{field}__isnull": True})
        for closeout in due.select_related("grant__request"):
            with transaction.atomic():
                changes = {field: now}
                if days == 30:
                    changes["reminded_7_at"] = closeout.reminded_7_at or now
                if not CloseOut.objects.filter(pk=closeout.pk, **{f"{field}__isnull": True}).update(**changes):
                    continue
                audit(
                    actor=actor,
                    action="closeout.reminded",
                    target=closeout.grant,
                    access_request=closeout.grant.request,
                    data={"closeout": closeout.public_id, "days": days},
                )
                closeout_notify.enqueue(closeout.pk, f"reminder{days}")
            sent[days] += 1
    return {"7": sent[7], "30": sent[30]}


@portal_task("access.tasks.closeouts_remind")
def closeouts_remind_task() -> dict:
    return closeouts_remind(actor=task_actor("closeouts_remind"))


# --- The public register of uses ---------------------------------------------------------------------------


def register_fields(release: ModelRelease, data: dict) -> dict:
    """The register's consent and public statement from an application: kept only when the release keeps a
    register; consenting needs a statement."""
    if not release.public_register or not data.get("register_consent"):
        return {"register_consent": False, "public_statement": ""}
    statement = clean(
        data.get("public_statement", ""), field="public_statement", multiline=True, max_length=STATEMENT_MAX
    )
    if not statement:
        raise ServiceError(
            _("Write the public statement that the register shows, or leave the register unticked."),
            "statement_required",
            field="public_statement",
        )
    return {"register_consent": True, "public_statement": statement}


def register_withdraw(*, actor: Actor, grant: Grant) -> Grant:
    """Withdraw consent to the public register: the entry (and those of earlier grants it renewed) leaves it."""
    require_steward(actor, grant)
    with transaction.atomic():
        chain = AccessRequest.objects.filter(release=grant.release, register_consent=True)
        chain = chain.filter(lab=grant.lab) if grant.lab_id else chain.filter(applicant=grant.user, lab__isnull=True)
        changed = chain.filter(register_withdrawn_at__isnull=True).update(register_withdrawn_at=timezone.now())
        if not changed:
            raise InvalidTransition(_("This grant is not in the register."), "not_in_register")
        audit(actor=actor, action="register.withdrawn", target=grant, access_request=grant.request)
    return grant


def register_seat_consent(*, actor: Actor, grant: Grant, consent: bool) -> LabSeat:
    """A member of a lab on the register says whether the lab's entry names them."""
    user = require_user(actor)
    with transaction.atomic():
        seat = LabSeat.objects.select_for_update().filter(grant=grant, user=user).first()
        if seat is None:
            raise NotFound(_("Not found."))
        if seat.register_consent != bool(consent):
            seat.register_consent = bool(consent)
            seat.save(update_fields=["register_consent", "updated_at"])
            audit(
                actor=actor,
                action="register.member_consent",
                target=grant,
                access_request=grant.request,
                data={"consent": seat.register_consent},
            )
    return seat
