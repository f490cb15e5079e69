"""The download gate's rule: who may download a release's files, as a pure function of the facts.

`decide(inputs, now)` reads nothing but its arguments: no database, cache, clock, settings, URLs or audit. The
loader (access.gate.loader) gathers the facts; access.downloads.authorize audits and renders what a refusal says
(access.gate.messages); the recorder (access.gate.recorder) writes the download.

The rule: an unpublished release does not exist except for reviewers; a withdrawn revision is for nobody (the
refusal names the revision to use instead); an open release is for anyone; a gated
one for an active account whose own grant is active (issued, not expired, not revoked) and on the release's
current license version, or who holds an active seat, on the current version, on an active lab grant of a lab
they belong to. Either suffices. When the caller names a grant (its page, its batch), only that grant counts.
A grant of one's own also needs its declared country not among the release's restricted countries; when it
rested on a library card, that card neither revoked nor expired; and, when it rested on a verified affiliation,
that affiliation seen again in time and not suspended by a later sign-in.
A person so allowed who has not acknowledged the current version of every document the release asks holders to
acknowledge is refused with `acknowledge_documents`, naming them, until they do (a new version asks again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .facts import DocumentFacts, GateInputs, GrantFacts, LabAccess, RequestFacts, SeatFacts

OPEN = "open"
GRANTED = "granted"

NOT_FOUND = "not_found"
REVISION_WITHDRAWN = "revision_withdrawn"
NOT_AUTHENTICATED = "not_authenticated"
ACCOUNT_INACTIVE = "account_inactive"
COUNTRY_RESTRICTED = "country_restricted"
CARD_REVOKED = "card_revoked"
CARD_EXPIRED = "card_expired"
REVERIFY = "reverify"
LICENSE_UPDATE = "license_update"
LAB_LICENSE_PENDING = "lab_license_pending"
LAB_SEAT_PENDING = "lab_seat_pending"
LAB_SEAT_REJECTED = "lab_seat_rejected"
ACKNOWLEDGE_DOCUMENTS = "acknowledge_documents"
PENDING = "pending"
REVOKED = "revoked"
EXPIRED = "expired"
REJECTED = "rejected"
GATED = "gated"

# When several refusals apply, the earliest in this list wins. First what holds for everyone whatever they hold
# (the release, the revision asked for), then the account, then the conditions on a grant or seat the person
# holds now (the most final first: what they cannot fix themselves before what they can), then what is left
# of the past (an open request; the newest of an ended grant and a rejection; an ended lab grant), and last the
# plain "apply". A restricted country (the holder cannot change it) comes before a library card revoked (a
# signing official's decision), then one expired (the official may issue a new one), then a verified
# affiliation to be seen again (a sign-in fixes it), then a license to accept. Documents to acknowledge before
# downloading only ever stand between an otherwise allowed person and the files, so they rank after everything
# held that the person must still obtain. A withdrawn revision is refused to everyone, holders and reviewers
# alike, right after a release that does not exist: it says which revision to use instead, and nothing the person
# holds changes that.
ORDER = (
    NOT_FOUND,
    REVISION_WITHDRAWN,
    NOT_AUTHENTICATED,
    ACCOUNT_INACTIVE,
    COUNTRY_RESTRICTED,
    CARD_REVOKED,
    CARD_EXPIRED,
    REVERIFY,
    LICENSE_UPDATE,
    LAB_SEAT_REJECTED,
    LAB_LICENSE_PENDING,
    LAB_SEAT_PENDING,
    ACKNOWLEDGE_DOCUMENTS,
    PENDING,
    REVOKED,
    EXPIRED,
    REJECTED,
    GATED,
)
RANK = {code: i for i, code in enumerate(ORDER)}
STATUS = {NOT_AUTHENTICATED: 401, NOT_FOUND: 404}


@dataclass(frozen=True)
class AccessDecision:
    """Whether a download may happen, the code that says what to do next, and the facts behind it: the grant
    it allows through or is about, the lab seat, the request. Made by the named constructors below."""

    code: str
    grant: GrantFacts | None = None
    seat: SeatFacts | None = None
    request: RequestFacts | None = None
    # license_update only: the holder accepted the new version and a reviewer has yet to approve it.
    awaiting_review: bool = False
    # acknowledge_documents only: the documents to acknowledge (current versions).
    documents: tuple[DocumentFacts, ...] = ()
    # revision_withdrawn only: the 40-hex id of the revision to use instead ("" when there is none).
    use_instead: str = ""

    @property
    def allowed(self) -> bool:
        return self.code in (OPEN, GRANTED)

    @property
    def status(self) -> int:
        return 200 if self.allowed else STATUS.get(self.code, 403)

    @classmethod
    def open(cls) -> AccessDecision:
        return cls(OPEN)

    @classmethod
    def granted(cls, grant: GrantFacts, seat: SeatFacts | None = None) -> AccessDecision:
        return cls(GRANTED, grant=grant, seat=seat)

    @classmethod
    def refused(cls, code: str) -> AccessDecision:
        """A refusal about nothing the person holds (not found, sign in, disabled, apply)."""
        assert code in RANK, code
        return cls(code)

    @classmethod
    def withdrawn(cls, use_instead: str) -> AccessDecision:
        return cls(REVISION_WITHDRAWN, use_instead=use_instead)

    @classmethod
    def about_grant(cls, code: str, grant: GrantFacts, *, awaiting_review: bool = False) -> AccessDecision:
        assert code in RANK, code
        return cls(code, grant=grant, awaiting_review=awaiting_review)

    @classmethod
    def about_seat(cls, code: str, grant: GrantFacts, seat: SeatFacts | None) -> AccessDecision:
        assert code in RANK, code
        return cls(code, grant=grant, seat=seat)

    @classmethod
    def to_acknowledge(cls, allowed: AccessDecision, documents: tuple[DocumentFacts, ...]) -> AccessDecision:
        """An allowed decision held back until the person acknowledges these documents."""
        return cls(ACKNOWLEDGE_DOCUMENTS, grant=allowed.grant, seat=allowed.seat, documents=documents)

    @classmethod
    def about_request(cls, code: str, request: RequestFacts) -> AccessDecision:
        assert code in RANK, code
        return cls(code, request=request)


def decide(inputs: GateInputs, now: datetime) -> AccessDecision:
    """The rule (see the module's docstring); refusals rank by ORDER."""
    decision = _decide(inputs, now)
    if decision.code == GRANTED:
        missing = tuple(d for d in inputs.documents if d.version_pk not in inputs.acknowledged)
        if missing:
            return AccessDecision.to_acknowledge(decision, missing)
    return decision


def may_read_document(decision: AccessDecision, *, holders_only: bool) -> bool:
    """Whether a person may read a release document: a public one, anyone who may see the release; one for
    holders, whoever the gate allows, or holds back only to acknowledge documents (they must read them first)."""
    if decision.code == NOT_FOUND:
        return False
    if not holders_only:
        return True
    return decision.allowed or decision.code == ACKNOWLEDGE_DOCUMENTS


def _decide(inputs: GateInputs, now: datetime) -> AccessDecision:
    release, viewer = inputs.release, inputs.viewer
    if not release.published and not (viewer is not None and viewer.active and viewer.sees_unpublished):
        return AccessDecision.refused(NOT_FOUND)
    if inputs.revision_id is not None:
        for revision_id, use_instead in release.withdrawn:
            if revision_id == inputs.revision_id:
                return AccessDecision.withdrawn(use_instead)
    if not release.gated:
        return AccessDecision.open()
    if viewer is None:
        return AccessDecision.refused(NOT_AUTHENTICATED)
    if not viewer.active:
        return AccessDecision.refused(ACCOUNT_INACTIVE)
    if inputs.named_grant is not None:
        return _named(inputs, now)
    held = [_own(grant, inputs, now) for grant in inputs.grants if grant.active(now)]
    held += [_seat(access, inputs) for access in inputs.labs if access.grant.active(now)]
    allowed = [d for d in held if d.allowed]
    if allowed:
        return allowed[0]  # the person's own grant before a lab seat: downloads are recorded against it
    if held:
        return min(held, key=lambda d: RANK[d.code])
    return _past(inputs)


def _named(inputs: GateInputs, now: datetime) -> AccessDecision:
    grant = inputs.named_grant
    if grant.release_id != inputs.release.pk or inputs.named_grant_foreign:
        return AccessDecision.refused(NOT_FOUND)
    if grant.lab is not None:
        access = next((a for a in inputs.labs if a.grant.pk == grant.pk), None)
        if access is None:
            return AccessDecision.refused(NOT_FOUND)
        return _seat(access, inputs) if grant.active(now) else _ended(grant)
    if grant.user_id != inputs.viewer.pk:
        return AccessDecision.refused(NOT_FOUND)
    return _own(grant, inputs, now) if grant.active(now) else _ended(grant)


def _own(grant: GrantFacts, inputs: GateInputs, now: datetime) -> AccessDecision:
    """An active grant of the person's own: from a country the release does not restrict, its library card (when
    it rested on one) neither revoked nor expired, its affiliation (when it rested on one) seen in time and not
    suspended, and on the current license version."""
    release = inputs.release
    if grant.country and grant.country in release.restricted_countries:
        return AccessDecision.about_grant(COUNTRY_RESTRICTED, grant)
    if grant.card_id is not None and grant.card_revoked:
        return AccessDecision.about_grant(CARD_REVOKED, grant)
    if grant.card_id is not None and grant.card_expires_at is not None and grant.card_expires_at <= now:
        return AccessDecision.about_grant(CARD_EXPIRED, grant)
    if grant.suspended or (grant.reverify_by is not None and grant.reverify_by <= now):
        return AccessDecision.about_grant(REVERIFY, grant)
    if grant.license_id != release.license_id:
        waiting = release.reviews_license_updates and any(
            r.is_open and r.reconsent_of_id == grant.pk and r.license_id == release.license_id for r in inputs.requests
        )
        return AccessDecision.about_grant(LICENSE_UPDATE, grant, awaiting_review=waiting)
    return AccessDecision.granted(grant)


def _seat(access: LabAccess, inputs: GateInputs) -> AccessDecision:
    """A seat on an active lab grant: active and accepted on the current version, or what it waits for."""
    seat, grant = access.seat, access.grant
    if seat is None:
        return AccessDecision.about_seat(LAB_LICENSE_PENDING, grant, None)
    if seat.status == "requested":
        return AccessDecision.about_seat(LAB_SEAT_PENDING, grant, seat)
    if seat.status == "rejected":
        return AccessDecision.about_seat(LAB_SEAT_REJECTED, grant, seat)
    if seat.status == "active" and seat.license_id == inputs.release.license_id:
        return AccessDecision.granted(grant, seat)
    # Covered but not yet accepted, accepted an older version, or ended and back in the lab: accept (again).
    return AccessDecision.about_seat(LAB_LICENSE_PENDING, grant, seat)


def _ended(grant: GrantFacts) -> AccessDecision:
    return AccessDecision.about_grant(REVOKED if grant.revoked_at is not None else EXPIRED, grant)


def _past(inputs: GateInputs) -> AccessDecision:
    """Nothing active: an open request, else the newest of an ended grant and a rejection, else an ended lab
    grant, else apply."""
    waiting = next((r for r in inputs.requests if r.is_open), None)
    if waiting is not None:
        return AccessDecision.about_request(PENDING, waiting)
    last_grant = inputs.grants[0] if inputs.grants else None
    last_request = inputs.requests[0] if inputs.requests else None
    if last_grant is not None and (
        last_request is None
        or last_request.pk == last_grant.request_id
        or last_request.created_at <= last_grant.issued_at
    ):
        return _ended(last_grant)
    if last_request is not None and last_request.status == "rejected":
        return AccessDecision.about_request(REJECTED, last_request)
    if inputs.labs:
        return _ended(inputs.labs[0].grant)
    return AccessDecision.refused(GATED)
