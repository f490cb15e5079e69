"""The facts the download gate decides on: plain, immutable values read from the database by the loader
(access.gate.loader), kept in its cache, and handed to the rule (access.gate.rule). Nothing here touches the
database, the cache or the clock; times are stored as datetimes and compared with `now` by the rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ReleaseFacts:
    pk: int
    repo_id: str
    published: bool
    gated: bool
    license_id: int | None
    license_version: str
    # Whether holders accepting a new license version are approved again by a reviewer (license_update_mode).
    reviews_license_updates: bool
    # ISO codes of the countries the release refuses (holders from them too).
    restricted_countries: frozenset[str] = frozenset()
    # Marked copies (access.marking): each person is served their own variant of each marked file.
    marked: bool = False
    # Withdrawn revisions: (revision id, the 40-hex id of the revision to use instead, or "").
    withdrawn: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class ViewerFacts:
    pk: int
    active: bool
    # Only asked when the release is unpublished: reviewers see unpublished releases, nobody else does.
    sees_unpublished: bool = False


@dataclass(frozen=True)
class LabFacts:
    pk: int
    public_id: str
    name: str


@dataclass(frozen=True)
class GrantFacts:
    pk: int
    public_id: str
    user_id: int
    release_id: int
    request_id: int
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoke_reason: str
    license_id: int | None
    lab: LabFacts | None = None
    # The country its request declared.
    country: str = ""
    # A grant resting on a verified affiliation: when it must be seen again by (the time it was last seen plus
    # AFFILIATION_MAX_AGE_DAYS, computed by the loader), and whether a sign-in stopped asserting it.
    reverify_by: datetime | None = None
    suspended: bool = False
    affiliation: str = ""
    affiliation_institution_id: int | None = None
    # A grant a rule approved on a library card: the card, when it expires and whether it was revoked.
    card_id: int | None = None
    card_expires_at: datetime | None = None
    card_revoked: bool = False

    @property
    def lab_id(self) -> int | None:
        return self.lab.pk if self.lab is not None else None

    def active(self, now: datetime) -> bool:
        """Issued, not expired, not revoked (the one definition, as GrantQuerySet.active)."""
        return self.revoked_at is None and self.expires_at > now


@dataclass(frozen=True)
class SeatFacts:
    pk: int
    status: str  # LabSeat.Status values
    license_id: int | None
    decision_reason: str


@dataclass(frozen=True)
class RequestFacts:
    pk: int
    public_id: str
    release_id: int
    status: str  # AccessRequest.Status values
    created_at: datetime
    decided_at: datetime | None
    decision_reason: str
    license_id: int | None
    reconsent_of_id: int | None

    @property
    def is_open(self) -> bool:
        return self.status in ("pending", "needs_info")


@dataclass(frozen=True)
class LabAccess:
    """A lab grant for the release held by a lab the viewer is a current member of, with the viewer's seat."""

    grant: GrantFacts
    seat: SeatFacts | None


@dataclass(frozen=True)
class DocumentFacts:
    """A release document holders must acknowledge before downloading, at its current version."""

    pk: int
    public_id: str
    title: str
    version_pk: int
    version: int


@dataclass(frozen=True)
class AdvisoryFacts:
    """A published advisory as download responses name it (not an input of the rule)."""

    pk: int
    public_id: str
    identifier: str
    severity: str
    title: str
    revision_ids: frozenset[int]
    embargo_until: datetime | None


@dataclass(frozen=True)
class GateInputs:
    """Everything the rule reads for one person (or nobody) and one release."""

    release: ReleaseFacts
    viewer: ViewerFacts | None = None
    # The person's own (individual) grants for the release, newest first.
    grants: tuple[GrantFacts, ...] = ()
    # Lab grants for the release through the person's current labs, newest first.
    labs: tuple[LabAccess, ...] = ()
    # The person's own (individual) requests for the release, newest first (the newest few).
    requests: tuple[RequestFacts, ...] = ()
    # The grant the caller names (its page, its batch), when it names one: only that grant may allow.
    named_grant: GrantFacts | None = None
    # Set when the named grant is a lab grant the person is not a current member of: it does not exist for them.
    named_grant_foreign: bool = field(default=False)
    # The release's documents to acknowledge before downloading (current versions), and the versions the person
    # acknowledged (of those documents).
    documents: tuple[DocumentFacts, ...] = ()
    acknowledged: frozenset[int] = frozenset()
    # In a marked release: the attempt number of the person's codeword (access.marking.marks_for), or None when
    # they hold none yet. Not read by the rule: the channel serves the variant it names.
    codeword: int | None = None
    # The revision the call would serve (its id), when known: a withdrawn one is refused to everyone.
    revision_id: int | None = None
