"""The gate's loader: reads the facts the rule decides on, and is the only place that caches them.

Every download asks for a release, often a file, a token's user and the person's grants, seats and requests.
These change rarely and are read on every download, so each web process keeps what it read (access.gate.cache)
until any of it may have changed. Freshness is not left to the code that writes: every connection's SQL is
watched (`watch`), and a write to any table in GATE_TABLES — through a service, a plain `save()`, a
`QuerySet.update()`, a `bulk_create`, the admin or a shell — publishes a new version when its transaction
commits, whatever wrote it. An UPDATE that sets only bookkeeping columns (BOOKKEEPING: when a token was last used,
when a notice went out) changes nothing the gate reads and publishes nothing, so a busy token does not empty every
process's cache once a minute. tests/test_gate_loader.py checks that every table the loader reads is watched.

Facts that change with time (a grant's expiry) are kept as datetimes; the rule compares them with the time it is
given, so a cached grant expires on time. Only lookups that found something are kept for files, releases and
tokens; the person's facts are kept whatever they say (a refusal is a fact like any other).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

from django.conf import settings
from django.db.models import F

from .. import paths
from ..models import (
    AccessRequest,
    Advisory,
    ApiToken,
    DocumentAcknowledgement,
    DocumentVersion,
    FileVariant,
    Grant,
    Lab,
    LabMembership,
    LabSeat,
    LibraryCard,
    License,
    MarkingCodeword,
    ModelFile,
    ModelRelease,
    ReleaseDocument,
    ReleaseRevision,
    RevisionWithdrawal,
    User,
)
from . import cache
from .facts import (
    AdvisoryFacts,
    DocumentFacts,
    GateInputs,
    GrantFacts,
    LabAccess,
    LabFacts,
    ReleaseFacts,
    RequestFacts,
    SeatFacts,
    ViewerFacts,
)

GATE_MODELS = (AccessRequest, Advisory, ApiToken, DocumentAcknowledgement, DocumentVersion, FileVariant, Grant,
               Lab, LabMembership, LabSeat, LibraryCard, License, MarkingCodeword, ModelFile, ModelRelease,
               ReleaseDocument, ReleaseRevision, RevisionWithdrawal, User)  # fmt: skip
GATE_TABLES = frozenset(
    [model._meta.db_table for model in GATE_MODELS]
    # Who is a reviewer (a group's permission) decides whether an unpublished release exists for them.
    + [User.groups.through._meta.db_table, User.user_permissions.through._meta.db_table]
    + ["auth_group", "auth_group_permissions", "auth_permission", "django_content_type"]
    # Which revisions an advisory affects: what every download response names (X-Advisories).
    + [Advisory.affected_revisions.through._meta.db_table]
)
# Columns the gate never reads: an UPDATE setting only these keeps every process's cache.
BOOKKEEPING = frozenset(
    {
        "last_login",
        "last_used_at",
        "updated_at",
        "issued_email_sent_at",
        "expiry_warned_at",
        "expired_notified_at",
        "info_reminded_at",
        "answers_text",
        "language",
        "reverify_warned_at",
    }
)
# How many of a person's own requests for a release the rule looks at (at most one is open at a time, and it is
# the newest; the newest request decides what a refusal says), and how many grants: a person holds a grant a
# year or so per release, so this is all of them in practice.
HISTORY = 3
GRANTS = 50
LAB_GRANTS = 20

_WRITE = re.compile(r'\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE)\s+"?(\w+)"?', re.IGNORECASE)
_SET_COLUMN = re.compile(r'"(\w+)"\s*=')


def writes_gate(sql: str) -> bool:
    """Whether an SQL statement writes a table the gate reads (bookkeeping-only UPDATEs excepted)."""
    match = _WRITE.match(sql)
    if match is None:
        return False
    verb, table = match.group(1).upper(), match.group(2)
    if verb == "TRUNCATE":
        return True
    if table not in GATE_TABLES:
        return False
    if verb == "UPDATE":
        assignments = sql[match.end() :].split(" WHERE ", 1)[0]
        columns = set(_SET_COLUMN.findall(assignments))
        if columns and columns <= BOOKKEEPING:
            return False
    return True


def _watch_writes(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    if isinstance(sql, str) and writes_gate(sql):
        cache.written()
    return result


def watch(connection) -> None:
    """Watch this database connection's writes (connected to `connection_created` in access.apps)."""
    if _watch_writes not in connection.execute_wrappers:
        connection.execute_wrappers.append(_watch_writes)


# --- Rows the channels serve from ---------------------------------------------------------------------------


def _reviewer(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("access.review_accessrequest"))


def release(*, repo_id: str, user=None) -> ModelRelease | None:
    """A release by repo id (with its license), or None; an unpublished one exists only for reviewers."""
    key = ("release", repo_id)
    found = cache.get(key)
    if found is None:
        found = ModelRelease.objects.select_related("license").filter(repo_id=repo_id).first()
        if found is not None and found.published:
            cache.put(key, found)
    if found is None or (not found.published and not _reviewer(user)):
        return None
    return found


# A release's main-revision files are cached all at once when one of them is first asked for (OPT-175B's 992
# shards in one query instead of one each, per process and after each change); a release with more files than
# this is cached file by file.
CACHED_RELEASE_FILES = 5000


def _cache_release_files(found: ModelRelease) -> None:
    marker = ("release-files", found.repo_id)
    if cache.current_version() is None or cache.get(marker) is not None:
        return  # nothing is cached (no shared Redis), or they are already
    files = list(found.files.order_by("path")[: CACHED_RELEASE_FILES + 1])
    if len(files) <= CACHED_RELEASE_FILES:
        for file in files:
            file.release = found
            cache.put(("file", found.repo_id, file.path), file)
    cache.put(marker, True)


def release_file(*, release: ModelRelease, path: str, revision: ReleaseRevision | None = None) -> ModelFile | None:
    """A file of a revision of the release (`main` when none is named)."""
    clean = paths.clean_file_path(path)
    if clean is None:
        return None
    if revision is not None:
        return revision.files.filter(path=clean).first()
    key = ("file", release.repo_id, clean)
    file = cache.get(key)
    if file is None:
        file = release.files.filter(path=clean).first()
        if file is not None and release.published:
            file.release = release
            cache.put(key, file)
            _cache_release_files(release)
    return file


def main_file(*, repo_id: str, path: str, user=None) -> ModelFile | None:
    """A file of a release's main revision with its release, in one query (none while cached): the per-file
    download path."""
    clean = paths.clean_file_path(path)
    if clean is None:
        return None
    key = ("file", repo_id, clean)
    file = cache.get(key)
    if file is None:
        file = (
            ModelFile.objects.select_related("release__license")
            .filter(release__repo_id=repo_id, path=clean, revision_id=F("release__main_revision_id"))
            .first()
        )
        if file is not None and file.release.published:
            cache.put(key, file)
            _cache_release_files(file.release)
    if file is None or (not file.release.published and not _reviewer(user)):
        return None
    return file


def variant(*, file_id: int, variant: int) -> FileVariant | None:
    """A marked file's variant record (which object, size and hashes a person is served), kept under the version:
    the person's variant is computed from their codeword, and its record read once per process."""
    key = ("variant", file_id, variant)
    found = cache.get(key)
    if found is None:
        found = FileVariant.objects.filter(file_id=file_id, variant=variant).first()
        if found is not None:
            cache.put(key, found)
    return found


def token(*, secret_hash: str) -> ApiToken | None:
    """The token with its user, cached until a token or an account changes anywhere."""
    key = ("token", secret_hash)
    found = cache.get(key)
    if found is None:
        found = ApiToken.objects.select_related("user").filter(secret_hash=secret_hash).first()
        cache.put(key, found)
    return found


def token_guess(secret_hash: str) -> ApiToken | None:
    """The token as this process last read it, under any version: a guess (for naming a rate limit) that the
    caller checks with `token` once the version is known."""
    return cache.peek(("token", secret_hash))


# (storage key, revision id) -> (size, sha256, revision id) of a file of that published revision: a published
# revision's files never change (a database trigger refuses it), so these need no version check.
_NAMED: dict[tuple[str, str], tuple[int, str, str]] = {}
NAMED_MAX = 50_000


def stored_file(*, key: str, revision: str) -> tuple[int, str, str] | None:
    """(size, sha256, revision) of the release file stored under this key, for the Hub client's headers on a
    signed URL: the revision named (when it holds the key) wins, then main, then the newest revision holding it.
    What main holds can change, so that answer is kept under the version."""
    named = revision if paths.REVISION_RE.match(revision) else ""
    if named and (found := _NAMED.get((key, named))) is not None:
        return found
    if not named and (found := cache.get(("stored", key))) is not None:
        return found
    files = ModelFile.objects.filter(storage_key=key, revision__published_at__isnull=False)
    columns = ("size", "sha256", "revision__sha")
    found = (
        (files.filter(revision__sha=named).values_list(*columns).first() if named else None)
        or files.filter(revision_id=F("release__main_revision_id")).values_list(*columns).first()
        or files.order_by("-revision__number").values_list(*columns).first()
    )
    if found is None and "/marked/" in key:
        # A marked file's variant: its own size and SHA-256, with the revision of the file it is a variant of.
        variants = FileVariant.objects.filter(storage_key=key, file__revision__published_at__isnull=False)
        columns = ("size", "sha256", "file__revision__sha")
        found = (
            (variants.filter(file__revision__sha=named).values_list(*columns).first() if named else None)
            or variants.filter(file__revision_id=F("file__release__main_revision_id")).values_list(*columns).first()
            or variants.order_by("-file__revision__number").values_list(*columns).first()
        )
    if found is None:
        return None
    if found[2] == named:
        if len(_NAMED) >= NAMED_MAX:
            _NAMED.clear()
        _NAMED[(key, named)] = found
    elif not named:
        cache.put(("stored", key), found)
    return found


# --- The person's facts -------------------------------------------------------------------------------------


def withdrawn(found: ModelRelease) -> tuple[tuple[int, str], ...]:
    """The release's withdrawn revisions with the revision to use instead of each, cached: read on every download
    of the release, written almost never."""
    key = ("withdrawn", found.pk)
    rows = cache.get(key)
    if rows is None:
        rows = tuple(
            (revision_id, sha or "")
            for revision_id, sha in RevisionWithdrawal.objects.filter(revision__release_id=found.pk)
            .order_by("pk")
            .values_list("revision_id", "use_instead__sha")
        )
        cache.put(key, rows)
    return rows


def advisories(found: ModelRelease) -> tuple[AdvisoryFacts, ...]:
    """The release's published advisories (newest first), cached: every download response names those on the
    revision it serves, and they change almost never."""
    key = ("advisories", found.pk)
    rows = cache.get(key)
    if rows is None:
        published = Advisory.objects.filter(release_id=found.pk, status=Advisory.Status.PUBLISHED)
        affected = {}
        through = Advisory.affected_revisions.through.objects.filter(advisory__in=published)
        for advisory_id, revision_id in through.values_list("advisory_id", "releaserevision_id"):
            affected.setdefault(advisory_id, set()).add(revision_id)
        rows = tuple(
            AdvisoryFacts(
                pk=a.pk,
                public_id=a.public_id,
                identifier=a.identifier,
                severity=a.severity,
                title=a.title,
                revision_ids=frozenset(affected.get(a.pk, ())),
                embargo_until=a.embargo_until,
            )
            for a in published.order_by("-published_at", "-pk")
        )
        cache.put(key, rows)
    return rows


def release_facts(found: ModelRelease) -> ReleaseFacts:
    return ReleaseFacts(
        pk=found.pk,
        repo_id=found.repo_id,
        published=found.published,
        gated=found.is_gated,
        license_id=found.license_id,
        license_version=found.license.version if found.license_id else "",
        reviews_license_updates=found.license_update_mode == ModelRelease.LicenseUpdateMode.REVIEW,
        restricted_countries=frozenset(found.restricted_countries or ()),
        marked=found.marking,
        withdrawn=withdrawn(found),
    )


def _grant(grant: Grant) -> GrantFacts:
    lab = LabFacts(pk=grant.lab.pk, public_id=grant.lab.public_id, name=grant.lab.name) if grant.lab_id else None
    return GrantFacts(
        pk=grant.pk,
        public_id=grant.public_id,
        user_id=grant.user_id,
        release_id=grant.release_id,
        request_id=grant.request_id,
        issued_at=grant.issued_at,
        expires_at=grant.expires_at,
        revoked_at=grant.revoked_at,
        revoke_reason=grant.revoke_reason,
        license_id=grant.license_id,
        lab=lab,
        country=grant.country,
        # Cached as a date: the rule compares it with the time it is given, so a cached grant needs no new query.
        reverify_by=grant.affiliation_seen_at + timedelta(days=settings.AFFILIATION_MAX_AGE_DAYS)
        if grant.affiliation and grant.affiliation_seen_at is not None
        else None,
        suspended=grant.suspended_at is not None,
        affiliation=grant.affiliation,
        affiliation_institution_id=grant.affiliation_institution_id,
        # Read with the grant (select_related): a card's dates are cached like the grant's own.
        card_id=grant.card_id,
        card_expires_at=grant.card.expires_at if grant.card_id else None,
        card_revoked=grant.card.revoked_at is not None if grant.card_id else False,
    )


def _seat(seat: LabSeat | None) -> SeatFacts | None:
    if seat is None:
        return None
    return SeatFacts(pk=seat.pk, status=seat.status, license_id=seat.license_id, decision_reason=seat.decision_reason)


def _request(row: AccessRequest) -> RequestFacts:
    return RequestFacts(
        pk=row.pk,
        public_id=row.public_id,
        release_id=row.release_id,
        status=row.status,
        created_at=row.created_at,
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
        license_id=row.license_id,
        reconsent_of_id=row.reconsent_of_id,
    )


def _labs(user: User, found: ModelRelease, only: Grant | None = None) -> tuple[LabAccess, ...]:
    """The release's lab grants of every lab the user is a current member of (newest first), each with the
    user's seat. Two queries."""
    grants = Grant.objects.filter(
        release=found, lab__memberships__user=user, lab__memberships__left_at__isnull=True
    ).select_related("lab", "card")
    if only is not None:
        grants = grants.filter(pk=only.pk)
    grants = list(grants.order_by("-issued_at")[:LAB_GRANTS])
    if not grants:
        return ()
    seats = {seat.grant_id: seat for seat in LabSeat.objects.filter(user=user, grant__in=grants)}
    return tuple(LabAccess(grant=_grant(g), seat=_seat(seats.get(g.pk))) for g in grants)


def _documents(found: ModelRelease) -> tuple[DocumentFacts, ...]:
    """The release's documents holders acknowledge before downloading, at their newest versions (one query, none
    while cached: they are the same for everyone)."""
    key = ("documents", found.pk)
    cached = cache.get(key)
    if cached is not None:
        return cached
    rows = (
        DocumentVersion.objects.filter(document__release=found, document__acknowledge_required=True)
        .order_by("document__position", "document_id", "-number")
        .values_list("pk", "number", "document_id", "document__public_id", "document__title")
    )
    current: dict[int, DocumentFacts] = {}
    for version_pk, number, doc_pk, public_id, title in rows:
        if doc_pk not in current:
            current[doc_pk] = DocumentFacts(
                pk=doc_pk, public_id=public_id, title=title, version_pk=version_pk, version=number
            )
    documents = tuple(current.values())
    cache.put(key, documents)
    return documents


def _acknowledged(user: User, documents: tuple[DocumentFacts, ...]) -> frozenset[int]:
    if not documents:
        return frozenset()
    versions = [d.version_pk for d in documents]
    return frozenset(
        DocumentAcknowledgement.objects.filter(user=user, version_id__in=versions).values_list("version_id", flat=True)
    )


def _person(user: User, found: ModelRelease) -> GateInputs:
    grants = (
        Grant.objects.filter(user=user, release=found, lab__isnull=True)
        .select_related("card")
        .order_by("-issued_at", "-pk")
    )
    requests = AccessRequest.objects.filter(applicant=user, release=found, lab__isnull=True)
    documents = _documents(found) if found.is_gated else ()
    return GateInputs(
        release=release_facts(found),
        viewer=_viewer(user, found),
        grants=tuple(_grant(g) for g in grants[:GRANTS]),
        labs=_labs(user, found),
        requests=tuple(_request(r) for r in requests.order_by("-created_at", "-pk")[:HISTORY]),
        documents=documents,
        acknowledged=_acknowledged(user, documents),
        codeword=_codeword(user, found),
    )


def _codeword(user: User, found: ModelRelease) -> int | None:
    """The attempt number of the person's codeword in a marked release (one query, only for marked releases)."""
    if not found.marking:
        return None
    return MarkingCodeword.objects.filter(release=found, user=user).values_list("attempt", flat=True).first()


def _viewer(user: User, found: ModelRelease) -> ViewerFacts:
    return ViewerFacts(pk=user.pk, active=user.is_active, sees_unpublished=not found.published and _reviewer(user))


def inputs(*, user, release: ModelRelease, grant: Grant | None = None, revision_id: int | None = None) -> GateInputs:
    """The facts for this person (or nobody) and release; `grant` when the caller names one (its page, its
    batch), which only that grant may then allow; `revision_id` the revision the call would serve."""
    found = _inputs(user=user, release=release, grant=grant)
    if revision_id is not None and found.release.withdrawn:
        return replace(found, revision_id=revision_id)  # only then does the rule look at it
    return found


def _inputs(*, user, release: ModelRelease, grant: Grant | None) -> GateInputs:
    if user is None or not user.is_authenticated:
        return GateInputs(release=release_facts(release))
    if grant is not None:
        named = _grant(grant)
        documents = _documents(release) if release.is_gated else ()
        acknowledged = _acknowledged(user, documents)
        if grant.lab_id is not None and grant.release_id == release.pk:
            labs = _labs(user, release, only=grant)
            return GateInputs(
                release=release_facts(release),
                viewer=_viewer(user, release),
                labs=labs,
                named_grant=named,
                named_grant_foreign=not labs,
                documents=documents,
                acknowledged=acknowledged,
                codeword=_codeword(user, release),
            )
        return GateInputs(
            release=release_facts(release),
            viewer=_viewer(user, release),
            named_grant=named,
            documents=documents,
            acknowledged=acknowledged,
            codeword=_codeword(user, release),
        )
    key = ("person", user.pk, release.pk)
    found = cache.get(key)
    if found is None or found.viewer.active != user.is_active or found.release.license_id != release.license_id:
        found = _person(user, release)
        cache.put(key, found)
    return found


# --- The version, for the throttle's round trip ---------------------------------------------------------------

VERSION_KEY = cache.VERSION_KEY
version_wanted = cache.wants_version
version_seen = cache.prime_version


def forget() -> None:
    """Drop everything this process cached (tests, and a process told its Redis was flushed)."""
    cache.clear()
    _NAMED.clear()
