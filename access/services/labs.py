"""Labs: a research group applies once for its members, and access follows membership.

An owner (the principal investigator) or an admin invites people by email, applies for a gated release on the
lab's behalf and removes members; members accept invitations and leave. Approval issues one lab grant
(access.services.grants); each covered member downloads only after accepting the release's license personally,
which gives them a seat on that grant (`lab_seat_accept`). The download gate (access.downloads) decides a
member's access from the seat, the membership and the grant, so leaving or being removed ends it at once."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import domains as domains_rule
from .. import emails
from ..audit import audit
from ..models import (
    AccessRequest,
    CloseOut,
    Grant,
    Institution,
    Lab,
    LabInvitation,
    LabMembership,
    LabSeat,
    ModelRelease,
    User,
)
from ..selectors import is_reviewer, lab_grant_url
from ..taskbase import portal_task
from .base import (
    Actor,
    Forbidden,
    NotFound,
    ServiceError,
    clean,
    require_license_version,
    require_reviewer,
    require_user,
)
from .reviewers import reviewers
from .stewardship import closeouts_ask

Role = LabMembership.Role
Seat = LabSeat.Status
ADMIN_ROLES = (Role.OWNER, Role.ADMIN)
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ROR_RE = re.compile(r"^0[a-z0-9]{6}[0-9]{2}$")


def verified_email(user: User, email: str) -> bool:
    return EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()


def membership_of(user: User | None, lab: Lab) -> LabMembership | None:
    if user is None or not user.is_authenticated:
        return None
    return LabMembership.objects.current().filter(lab=lab, user=user).first()


def require_outside_lab(actor: Actor, lab: Lab) -> None:
    """A reviewer who is a member of a lab (any role) is covered, or could be, by its requests and seats: they
    decide none of them; another reviewer must."""
    if actor.user is not None and membership_of(actor.user, lab) is not None:
        raise Forbidden(
            _("You are a member of %(lab)s: another reviewer must decide its requests.") % {"lab": lab.name},
            "own_lab",
        )


def _require_admin(actor: Actor, lab: Lab) -> LabMembership:
    user = require_user(actor)
    membership = membership_of(user, lab)
    if membership is None:
        raise NotFound(_("Not found."))
    if membership.role not in ADMIN_ROLES:
        raise Forbidden(_("Only the lab's owner and admins can do this."), "lab_admin_required")
    return membership


def _details(*, name: str, ror_id: str, website: str, email_domains) -> dict:
    name = clean(name, field="name", multiline=False, name=True, max_length=200)
    if not name:
        raise ServiceError(_("Give the lab a name."), "invalid", field="name")
    ror_id = clean(ror_id or "", field="ror_id", multiline=False, max_length=40).lower()
    ror_id = ror_id.removeprefix("https://ror.org/").removeprefix("ror.org/")
    if ror_id and not ROR_RE.match(ror_id):
        raise ServiceError(_("A ROR id looks like 02mhbdp94."), "invalid", field="ror_id")
    website = clean(website or "", field="website", multiline=False, max_length=200)
    if website:
        try:
            URLValidator(schemes=["https", "http"])(website)
        except ValidationError:
            raise ServiceError(_("Enter the website as an https:// address."), "invalid", field="website") from None
    if isinstance(email_domains, str):
        email_domains = email_domains.split()
    if not isinstance(email_domains, list | tuple) or len(email_domains) > 20:
        raise ServiceError(_("Give at most 20 email domains."), "invalid", field="email_domains")
    domains = []
    for domain in email_domains:
        domain = str(domain).strip().lower().removeprefix("@")
        if not DOMAIN_RE.match(domain):
            raise ServiceError(
                _("%(domain)s is not an email domain.") % {"domain": domain[:80]}, "invalid", field="email_domains"
            )
        refused = domains_rule.refusal(domain)
        if refused is not None:
            raise ServiceError(refused[1], refused[0], field="email_domains")
        if domain not in domains:
            domains.append(domain)
    return {"name": name, "ror_id": ror_id, "website": website, "email_domains": "\n".join(domains)}


def _confirmed_institution(ror_id: str | None) -> Institution | None:
    """The confirmed institution a lab names by ROR id ("" or None: none)."""
    if not ror_id:
        return None
    institution = Institution.objects.filter(ror_id=str(ror_id)[:60], confirmed_at__isnull=False).first()
    if institution is None:
        raise ServiceError(
            _("Choose one of the institutions the portal's staff confirmed."),
            "unknown_institution",
            field="institution",
        )
    return institution


def lab_create(
    *, actor: Actor, name: str, ror_id: str = "", website: str = "", email_domains=(), institution: str = ""
) -> Lab:
    """Any researcher with a verified email creates a lab and becomes its owner. `institution` is the ROR id of a
    confirmed institution: members verified there are shown so."""
    user = require_user(actor)
    if not verified_email(user, user.email):
        raise ServiceError(_("Verify your email address before creating a lab."), "email_unverified")
    fields = _details(name=name, ror_id=ror_id, website=website, email_domains=email_domains)
    chosen = _confirmed_institution(institution)
    with transaction.atomic():
        lab = Lab.objects.create(created_by=user, institution=chosen, **fields)
        LabMembership.objects.create(lab=lab, user=user, role=Role.OWNER)
        audit(
            actor=actor,
            action="lab.created",
            target=lab,
            data={"name": lab.name, "domains": lab.domains, "institution": chosen.ror_id if chosen else None},
        )
    return lab


def lab_set_institution(*, actor: Actor, lab: Lab, institution: str = "") -> Lab:
    """The lab's owner names the confirmed institution the lab belongs to (by ROR id; "" for none)."""
    membership = _require_admin(actor, lab)
    if membership.role != Role.OWNER:
        raise Forbidden(_("Only the lab's owner can choose its institution."), "lab_owner_required")
    chosen = _confirmed_institution(institution)
    if chosen == lab.institution:
        return lab
    with transaction.atomic():
        before = lab.institution.ror_id if lab.institution else None
        lab.institution = chosen
        lab.save(update_fields=["institution", "updated_at"])
        audit(
            actor=actor,
            action="lab.institution_set",
            target=lab,
            data={"from": before, "to": chosen.ror_id if chosen else None},
        )
    return lab


def lab_update(*, actor: Actor, lab: Lab, name: str, ror_id: str = "", website: str = "", email_domains=()) -> Lab:
    _require_admin(actor, lab)
    fields = _details(name=name, ror_id=ror_id, website=website, email_domains=email_domains)
    with transaction.atomic():
        for key, value in fields.items():
            setattr(lab, key, value)
        lab.save(update_fields=[*fields, "updated_at"])
        audit(actor=actor, action="lab.updated", target=lab, data={"name": lab.name, "domains": lab.domains})
    return lab


# --- Invitations ------------------------------------------------------------------------------------------


def invitation_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_url(token: str) -> str:
    return settings.SITE_URL + reverse("lab-invitation", kwargs={"token": token})


def lab_invite(*, actor: Actor, lab: Lab, email: str, role: str = Role.MEMBER) -> tuple[LabInvitation, str]:
    """Invite a person by email: a single-use link valid for LAB_INVITATION_DAYS, emailed to them. A new
    invitation to the same address replaces the earlier one. Returns the invitation and its secret."""
    _require_admin(actor, lab)
    email = clean(str(email or ""), field="email", multiline=False, max_length=254).lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ServiceError(_("Enter a valid email address."), "invalid", field="email") from None
    if role not in (Role.ADMIN, Role.MEMBER):
        raise ServiceError(_("Invite as a member or an admin."), "invalid", field="role")
    if LabMembership.objects.current().filter(lab=lab, user__email__iexact=email).exists():
        raise ServiceError(_("%(email)s is a member already.") % {"email": email}, "already_member", field="email")
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        LabInvitation.objects.filter(lab=lab, email=email, accepted_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=now
        )
        invitation = LabInvitation.objects.create(
            lab=lab,
            email=email,
            role=role,
            token_hash=invitation_hash(token),
            invited_by=actor.user,
            expires_at=now + timedelta(days=settings.LAB_INVITATION_DAYS),
        )
        audit(actor=actor, action="lab.invited", target=lab, data={"email": email, "role": role})
        lab_notify.enqueue(
            f"invitation:{invitation.pk}",
            "lab_invitation",
            email,
            {"lab": lab.public_id, "url": invitation_url(token), "inviter": actor.user.email, "role": role},
        )
    return invitation, token


def lab_invitation_revoke(*, actor: Actor, invitation: LabInvitation) -> LabInvitation:
    _require_admin(actor, invitation.lab)
    with transaction.atomic():
        if invitation.accepted_at is None and invitation.revoked_at is None:
            invitation.revoked_at = timezone.now()
            invitation.save(update_fields=["revoked_at", "updated_at"])
            audit(actor=actor, action="lab.invitation_revoked", target=invitation.lab, data={"email": invitation.email})
    return invitation


def invitation_get(token: str) -> LabInvitation | None:
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    return LabInvitation.objects.select_related("lab").filter(token_hash=invitation_hash(token)).first()


def lab_invitation_accept(*, actor: Actor, token: str) -> LabMembership:
    """Join the lab with an invitation's link: once, before it expires, signed in with the invited address
    verified on the account."""
    user = require_user(actor)
    found = invitation_get(token)
    if found is None:
        raise NotFound(_("This invitation link is not valid."), "invitation_invalid")
    with transaction.atomic():
        invitation = LabInvitation.objects.select_for_update().select_related("lab").get(pk=found.pk)
        if not invitation.is_usable:
            raise ServiceError(
                _("This invitation was used, withdrawn or has expired; ask the lab for a new one."),
                "invitation_used",
            )
        if not verified_email(user, invitation.email):
            raise Forbidden(
                _("This invitation is for %(email)s: sign in with that address, or add and verify it on your account.")
                % {"email": invitation.email},
                "invitation_email_mismatch",
            )
        lab = invitation.lab
        try:
            with transaction.atomic():
                membership = LabMembership.objects.create(lab=lab, user=user, role=invitation.role)
        except IntegrityError:
            raise ServiceError(_("You are a member of this lab already."), "already_member") from None
        invitation.accepted_at, invitation.accepted_by = timezone.now(), user
        invitation.save(update_fields=["accepted_at", "accepted_by", "updated_at"])
        audit(actor=actor, action="lab.member_joined", target=lab, data={"member": user.email, "role": membership.role})
        lab_notify.enqueue(
            f"joined:{membership.pk}", "lab_joined", user.email, {"lab": lab.public_id, "url": lab_url(lab)}
        )
    return membership


# --- Leaving and removal ----------------------------------------------------------------------------------


def lab_member_remove(*, actor: Actor, lab: Lab, membership: LabMembership) -> LabMembership:
    """End a membership: the member leaving, or an owner or admin removing them. Their seats on the lab's
    grants end with it, so downloads through the lab stop on the next request on every instance."""
    user = require_user(actor)
    if membership.lab_id != lab.pk or not membership.is_current:
        raise NotFound(_("Not found."))
    leaving = membership.user_id == user.pk
    if leaving:
        if membership.role == Role.OWNER:
            raise ServiceError(
                _("The owner cannot leave the lab; make another member the owner first."), "owner_cannot_leave"
            )
    else:
        mine = _require_admin(actor, lab)
        if membership.role == Role.OWNER or (membership.role == Role.ADMIN and mine.role != Role.OWNER):
            raise Forbidden(_("Only the owner can remove an admin, and nobody can remove the owner."), "lab_role")
    now = timezone.now()
    with transaction.atomic():
        locked = LabMembership.objects.select_for_update().get(pk=membership.pk)
        if locked.left_at is not None:
            return locked
        locked.left_at = now
        locked.ending = LabMembership.Ending.LEFT if leaving else LabMembership.Ending.REMOVED
        locked.ended_by = user
        locked.save(update_fields=["left_at", "ending", "ended_by", "updated_at"])
        ended = LabSeat.objects.filter(grant__lab=lab, user_id=locked.user_id).exclude(status=Seat.ENDED)
        held = list(Grant.objects.filter(seats__in=ended.filter(license_accepted_at__isnull=False)).distinct())
        ended_count = ended.update(status=Seat.ENDED, ended_at=now, updated_at=now)
        for grant in held:  # they certify that their own copies were deleted
            closeouts_ask(actor=actor, grant=grant, reason=CloseOut.Reason.LEFT_LAB, users=[locked.user])
        audit(
            actor=actor,
            action="lab.member_left" if leaving else "lab.member_removed",
            target=lab,
            data={"member": locked.user.email, "role": locked.role, "seats_ended": ended_count},
        )
        lab_notify.enqueue(
            f"{locked.ending}:{locked.pk}",
            "lab_left" if leaving else "lab_removed",
            locked.user.email,
            {"lab": lab.public_id, "by": user.email},
        )
    return locked


def lab_member_set_role(*, actor: Actor, lab: Lab, membership: LabMembership, role: str) -> LabMembership:
    """The owner makes a member an admin or back; handing over ownership makes the old owner an admin."""
    mine = _require_admin(actor, lab)
    if mine.role != Role.OWNER:
        raise Forbidden(_("Only the owner can change roles."), "lab_role")
    if membership.lab_id != lab.pk or not membership.is_current:
        raise NotFound(_("Not found."))
    if role not in Role.values:
        raise ServiceError(_("Choose owner, admin or member."), "invalid", field="role")
    if membership.pk == mine.pk:
        raise ServiceError(_("Hand the lab to another member to change your own role."), "invalid", field="role")
    with transaction.atomic():
        if role == Role.OWNER:
            LabMembership.objects.filter(pk=mine.pk).update(role=Role.ADMIN, updated_at=timezone.now())
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
        audit(
            actor=actor,
            action="lab.role_changed",
            target=lab,
            data={"member": membership.user.email, "from": before, "to": role},
        )
        lab_notify.enqueue(
            f"role:{membership.pk}:{timezone.now().timestamp()}",
            "lab_role",
            membership.user.email,
            {"lab": lab.public_id, "role": role},
        )
    return membership


# --- Lab requests and seats -------------------------------------------------------------------------------


def lab_request_coverage(*, actor: Actor, lab: Lab, members: list | None, all_members: bool) -> list[LabMembership]:
    """Check that the actor may apply for this lab and who the request covers (named current members)."""
    _require_admin(actor, lab)
    if all_members:
        if members:
            raise ServiceError(_("Name members or choose all members, not both."), "invalid", field="members")
        return []
    if not isinstance(members, list | tuple) or not members:
        raise ServiceError(_("Name the members the request covers, or choose all members."), "invalid", field="members")
    if len(members) > 500 or not all(isinstance(m, str) for m in members):
        raise ServiceError(_("Members are given by their member id."), "invalid", field="members")
    wanted = set(members)
    found = list(LabMembership.objects.current().filter(lab=lab, public_id__in=wanted).select_related("user"))
    if len(found) != len(wanted):
        raise ServiceError(_("Some of these are not current members of the lab."), "invalid", field="members")
    return found


def seats_for_new_grant(grant: Grant, access_request: AccessRequest) -> None:
    """On issuing a lab grant: a seat for each named member (waiting for their license acceptance), and an
    active one for the applicant, who accepted with the request. A renewal carries the seats of the grant it
    renews over, acceptances included."""
    covered = set(access_request.covered_members.values_list("pk", flat=True))
    current = set(LabMembership.objects.current().filter(lab=grant.lab).values_list("user_id", flat=True))
    previous = {}
    if access_request.renewal_of_id is not None:
        previous = {
            s.user_id: s
            for s in LabSeat.objects.filter(grant_id=access_request.renewal_of_id).exclude(
                status__in=(Seat.ENDED, Seat.REJECTED)
            )
        }
    for user_id in current:
        old = previous.get(user_id)
        if old is not None:
            LabSeat.objects.get_or_create(
                grant=grant,
                user_id=user_id,
                defaults={
                    "status": old.status,
                    "license_id": old.license_id,
                    "license_accepted_at": old.license_accepted_at,
                    "license_accepted_ip": old.license_accepted_ip,
                    "noncommercial_attested": old.noncommercial_attested,
                    "decided_by_id": old.decided_by_id,
                    "decided_at": old.decided_at,
                },
            )
        elif user_id == access_request.applicant_id and (access_request.all_members or user_id in covered):
            LabSeat.objects.get_or_create(
                grant=grant,
                user_id=user_id,
                defaults={
                    "status": Seat.ACTIVE,
                    "license_id": access_request.license_id,
                    "license_accepted_at": access_request.license_accepted_at,
                    "license_accepted_ip": access_request.license_accepted_ip,
                    "noncommercial_attested": access_request.noncommercial_attested,
                },
            )
        elif user_id in covered:
            LabSeat.objects.get_or_create(grant=grant, user_id=user_id, defaults={"status": Seat.LICENSE_PENDING})
    for membership in LabMembership.objects.current().filter(lab=grant.lab).select_related("user"):
        if membership.user_id == access_request.applicant_id:
            continue  # the applicant hears of the approval once, from the grant's own email
        if access_request.all_members or membership.user_id in covered:
            lab_notify.enqueue(
                f"lab-grant:{grant.pk}:{membership.user_id}",
                "lab_grant",
                membership.user.email,
                {"lab": grant.lab.public_id, "repo": grant.release.repo_id, "url": lab_grant_url(grant.public_id)},
            )


def _covered_count(grant: Grant) -> int:
    return (
        LabSeat.objects.filter(grant=grant, status__in=(Seat.ACTIVE, Seat.LICENSE_PENDING))
        .filter(user__lab_memberships__lab=grant.lab, user__lab_memberships__left_at__isnull=True)
        .count()
    )


def _seat_status(*, seat: LabSeat | None, grant: Grant, membership: LabMembership) -> str:
    """Where a member's acceptance of the current license puts their seat on a (locked) lab grant."""
    release = grant.release
    if seat is not None and seat.status == Seat.REQUESTED:
        return Seat.REQUESTED  # a reviewer decides it; accepting again changes only the version
    if seat is not None and seat.status == Seat.ACTIVE:
        review = release.license_update_mode == ModelRelease.LicenseUpdateMode.REVIEW
        return Seat.REQUESTED if review and seat.license_id != release.license_id else Seat.ACTIVE
    decided = grant.request.decided_at
    if is_reviewer(membership.user) and (decided is None or membership.joined_at > decided):
        return Seat.REQUESTED  # no reviewer gives themselves a place another reviewer did not decide
    if (seat is not None and seat.status == Seat.LICENSE_PENDING) or (
        grant.request.all_members and _covered_count(grant) < release.lab_member_cap
    ):
        return Seat.ACTIVE
    return Seat.REQUESTED


def lab_seat_accept(
    *, actor: Actor, grant: Grant, version: str, accept_license: bool, noncommercial_attested: bool
) -> LabSeat:
    """A member accepts the release's current license for the lab's grant, personally (version, time, address,
    attestation). A named member, or anyone under an "all members" grant within the release's cap, can download
    from then on; anyone else has asked for a seat, which a reviewer approves. So has a reviewer who joined the
    lab after its request was decided (no reviewer gives themselves a place), and, on a release whose license
    updates are reviewed, a member accepting a new version: their seat waits for a reviewer as an individual
    holder's re-acceptance does."""
    user = require_user(actor)
    membership = membership_of(user, grant.lab) if grant.lab_id is not None else None
    if membership is None:
        raise NotFound(_("Not found."))
    if not accept_license or not noncommercial_attested:
        raise ServiceError(_("You must accept the license and attest non-commercial use."), "license_not_accepted")
    with transaction.atomic():
        locked = Grant.objects.select_for_update(of=("self",)).select_related("release__license", "request", "lab")
        locked = locked.get(pk=grant.pk)
        release, current = locked.release, locked.release.license
        if not locked.is_active:
            raise ServiceError(_("This grant is no longer active."), "grant_inactive")
        require_license_version(release, version)
        seat = LabSeat.objects.filter(grant=locked, user=user).first()
        if seat is not None and seat.status == Seat.REJECTED:
            raise ServiceError(
                _("A reviewer did not approve your place on this grant: %(reason)s")
                % {"reason": seat.decision_reason or _("no reason given")},
                "lab_seat_rejected",
            )
        reaccepting = seat is not None and seat.status == Seat.ACTIVE and seat.license_id != current.pk
        status = _seat_status(seat=seat, grant=locked, membership=membership)
        if seat is not None and seat.status == status and seat.license_id == current.pk:
            return seat
        fields = {
            "status": status,
            "license": current,
            "license_accepted_at": timezone.now(),
            "license_accepted_ip": actor.ip,
            "noncommercial_attested": True,
            "ended_at": None,
        }
        if seat is None:
            seat = LabSeat.objects.create(grant=locked, user=user, **fields)
        else:
            for key, value in fields.items():
                setattr(seat, key, value)
            seat.save(update_fields=[*fields, "updated_at"])
        if status == Seat.REQUESTED:
            for reviewer in reviewers():
                lab_notify.enqueue(
                    f"seat-requested:{seat.pk}:{reviewer.pk}",
                    "lab_seat_requested",
                    reviewer.email,
                    {
                        "lab": locked.lab.public_id,
                        "repo": release.repo_id,
                        "member": user.email,
                        "url": settings.SITE_URL + reverse("review-grant", kwargs={"public_id": locked.public_id}),
                    },
                )
        audit(
            actor=actor,
            action="lab.seat_requested" if status == Seat.REQUESTED else "lab.license_accepted",
            target=locked,
            access_request=locked.request,
            data={
                "member": user.email,
                "license": current.slug,
                "version": current.version,
                "seat": status,
                "reaccepting": reaccepting,
            },
        )
    return seat


def lab_seat_decide(*, actor: Actor, seat: LabSeat, approve: bool, reason: str = "") -> LabSeat:
    """A reviewer decides a member's request for a place on a lab grant (beyond the cap, or not named)."""
    require_reviewer(actor)
    if actor.user is not None and actor.user.pk == seat.user_id:
        raise Forbidden(_("Reviewers cannot decide their own requests; another reviewer must."), "own_request")
    require_outside_lab(actor, seat.grant.lab)
    reason = clean(reason, field="reason", multiline=True)
    if not approve and not reason:
        raise ServiceError(_("Give a reason; the applicant will see it."), "reason_required", field="reason")
    with transaction.atomic():
        locked = LabSeat.objects.select_for_update(of=("self",)).select_related("grant__lab", "grant__release", "user")
        locked = locked.get(pk=seat.pk)
        if locked.status != Seat.REQUESTED:
            raise ServiceError(_("This place was decided already."), "invalid_transition")
        locked.status = Seat.ACTIVE if approve else Seat.REJECTED
        locked.decided_by, locked.decided_at, locked.decision_reason = actor.user, timezone.now(), reason
        locked.save(update_fields=["status", "decided_by", "decided_at", "decision_reason", "updated_at"])
        audit(
            actor=actor,
            action="lab.seat_approved" if approve else "lab.seat_rejected",
            target=locked.grant,
            access_request=locked.grant.request,
            data={"member": locked.user.email, "reason": reason},
        )
        lab_notify.enqueue(
            f"seat:{locked.pk}:{locked.status}",
            "lab_seat",
            locked.user.email,
            {
                "lab": locked.grant.lab.public_id,
                "repo": locked.grant.release.repo_id,
                "approved": approve,
                "reason": reason,
                "url": lab_grant_url(locked.grant.public_id),
            },
        )
    return locked


# --- Notices ----------------------------------------------------------------------------------------------


def lab_url(lab: Lab) -> str:
    return settings.SITE_URL + reverse("lab-detail", kwargs={"public_id": lab.public_id})


@portal_task("access.tasks.lab_notify")
def lab_notify(dedupe_key: str, kind: str, to: str, context: dict) -> bool:
    """Tell the person concerned what changed in their lab (one email per change, retries send it once)."""
    lab = Lab.objects.filter(public_id=context.get("lab")).first()
    if lab is None:
        return False
    host = urlsplit(settings.SITE_URL).netloc
    return emails.send_once(
        dedupe_key=f"lab:{dedupe_key}"[:200],
        template="lab_notice",
        to=to,
        context={**context, "kind": kind, "lab": lab, "lab_url": lab_url(lab), "host": host},
    )
