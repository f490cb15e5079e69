"""The one download gate. Every channel (API file and manifest, Hugging Face tree and resolve, relay URLs, the
grant page and its batches) asks `authorize` whether a download may happen, and lets `issue` sign and record
it. A channel only renders the decision in its own error shape.

The rule: an unpublished release is unknown except to reviewers; an open release is for anyone; a gated one only
for an active account holding an active grant (issued, not expired, not revoked) — the grant the caller names,
when it names one — whose holder accepted the release's current license version (else `license_update`). Every
refusal is audited with the code the caller was given; every allowed download leaves a `DownloadEvent` before the
URLs are handed out. A grant covers every revision of its release; which revision is served is the channel's
choice (`main` unless the caller names one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from django.conf import settings
from django.core import signing
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from . import groupcommit, manifests, metrics, selectors
from .durations import wait_estimate_text
from .models import (
    AccessRequest,
    DownloadEvent,
    Grant,
    LabSeat,
    ModelFile,
    ModelRelease,
    ReleaseRevision,
    UrlBatch,
    User,
    split_pieces,
)
from .services.audit import audit
from .services.base import Actor
from .services.counters import count_open_download
from .storage import Location, get_storage, locations

RELAY_SALT = "access.downloads.relay"
Via = DownloadEvent.Via


@dataclass(frozen=True)
class AccessDecision:
    """Whether a download may happen, and if not, the code that says what to do next."""

    allowed: bool
    code: str
    detail: str
    grant: Grant | None = None
    release: ModelRelease | None = None
    actor: Actor | None = field(default=None, compare=False)
    via: str = ""
    # The request the refusal is about (pending, needs_info, rejected), so pages can link it and show its reason.
    access_request: AccessRequest | None = field(default=None, compare=False)

    @property
    def status(self) -> int:
        if self.allowed:
            return 200
        return {"not_authenticated": 401, "not_found": 404}.get(self.code, 403)


def url_expiry(ttl: int) -> datetime:
    """When a URL signed now with this TTL stops working (whole seconds, as storage signs them)."""
    return datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + ttl, UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Deciding ---------------------------------------------------------------------------------------------


def access_state(*, user: User | None, release: ModelRelease, grant: Grant | None = None) -> AccessDecision:
    """The rule itself, without auditing: what pages show about where the user stands."""
    if not release.published and not selectors.is_reviewer(user):
        return AccessDecision(False, "not_found", _("No release named %(repo)s.") % {"repo": release.repo_id})
    if not release.is_gated:
        return AccessDecision(True, "open", "", release=release)
    if user is None or not user.is_authenticated:
        return AccessDecision(
            False,
            "not_authenticated",
            _("%(repo)s is gated. Sign in or send 'Authorization: Bearer <token>'; to get access, apply at %(url)s.")
            % {"repo": release.repo_id, "url": selectors.apply_url(release)},
        )
    if not user.is_active:
        return AccessDecision(False, "account_inactive", _("This account is disabled."))
    if grant is not None:
        # The caller names a grant (its page, its batch): only that grant, and only while it is active.
        if grant.lab_id is not None and grant.release_id == release.pk:
            return _lab_state(user, release, selectors.user_lab_access(user=user, release=release, grant=grant))
        if grant.user_id != user.pk or grant.release_id != release.pk:
            return AccessDecision(False, "not_found", _("Not found."))
        if grant.is_active:
            if grant.license_id != release.license_id:
                return _license_update(grant, release)
            return AccessDecision(True, "granted", "", grant, release)
        return _ended(grant, release)
    active = selectors.user_active_grant(user=user, release=release, cached_only=True)
    if active is None:
        # A lab member's seat this process has seen allowed since nothing changed: no query for either grant.
        cached = selectors.cached_lab_seat(user=user, release=release)
        if cached is not None:
            return AccessDecision(True, "granted", "", cached[0], release)
        active = selectors.user_active_grant(user=user, release=release)
    if active is not None:
        # Both ids are on rows already loaded: the license check costs the allowed path no query.
        if active.license_id != release.license_id:
            current = (
                Grant.objects.active()
                .filter(user=user, release=release, lab__isnull=True, license_id=release.license_id)
                .first()
            )
            if current is None:
                # Either suffices: a lab seat on the current version allows what the old grant no longer does.
                pairs = selectors.user_lab_access(user=user, release=release)
                lab = _lab_state(user, release, pairs) if pairs else None
                return lab if lab is not None and lab.allowed else _license_update(active, release)
            active = current
        return AccessDecision(True, "granted", "", active, release)
    pairs = selectors.user_lab_access(user=user, release=release)
    lab = _lab_state(user, release, pairs) if pairs else None
    if lab is not None and (lab.allowed or (lab.grant is not None and lab.grant.is_active)):
        return lab
    refusal = _refusal(user, release)
    if lab is not None and refusal.code == "gated":
        return lab  # the lab's grant ended, and there is nothing of the user's own to say
    return refusal


def _lab_state(user: User, release: ModelRelease, pairs: list) -> AccessDecision:
    """A lab member's access through the lab grants of their current labs: a seat that is active, on an active
    grant, with the release's current license version accepted by the member personally."""
    if not pairs:
        return AccessDecision(False, "not_found", _("Not found."))
    for grant, seat in pairs:
        usable = grant.is_active and seat is not None and seat.status == LabSeat.Status.ACTIVE
        if usable and seat.license_id == release.license_id:
            selectors.remember_lab_seat(user=user, release=release, grant=grant, seat=seat)
            return AccessDecision(True, "granted", "", grant, release)
    grant, seat = pairs[0]
    if not grant.is_active:
        return _ended(grant, release)
    values = {"lab": grant.lab.name, "repo": release.repo_id, "url": selectors.lab_grant_url(grant)}
    if seat is not None and seat.status == LabSeat.Status.REQUESTED:
        detail = _(
            "Your place on %(lab)s's grant for %(repo)s is waiting for a reviewer; you will be emailed (%(url)s)."
        )
        return AccessDecision(False, "lab_seat_pending", detail % values, grant)
    if seat is not None and seat.status == LabSeat.Status.REJECTED:
        detail = _("A reviewer did not approve your place on %(lab)s's grant for %(repo)s: %(reason)s")
        values["reason"] = seat.decision_reason or _("no reason given")
        return AccessDecision(False, "lab_seat_rejected", detail % values, grant)
    if seat is not None and seat.status == LabSeat.Status.ACTIVE:
        detail = _(
            "The license of %(repo)s changed to version %(version)s: accept it at %(url)s to download through "
            "%(lab)s again."
        )
        values["version"] = release.license.version
    else:
        detail = _("%(lab)s has access to %(repo)s: accept the license at %(url)s to download.")
    return AccessDecision(False, "lab_license_pending", detail % values, grant)


def _license_update(grant: Grant, release: ModelRelease) -> AccessDecision:
    """An active grant whose holder has not accepted the release's current license version."""
    license_obj = release.license
    waiting = (
        release.license_update_mode == ModelRelease.LicenseUpdateMode.REVIEW
        and grant.license_reviews.filter(status__in=AccessRequest.OPEN_STATUSES, license=license_obj).exists()
    )
    if waiting:
        detail = _(
            "The license of %(repo)s changed to version %(version)s; your acceptance is waiting for a reviewer. "
            "Downloads work again once it is approved (%(url)s)."
        )
    else:
        detail = _("The license of %(repo)s changed to version %(version)s: accept it at %(url)s to download again.")
    return AccessDecision(
        False,
        "license_update",
        detail % {"repo": release.repo_id, "version": license_obj.version, "url": selectors.license_accept_url(grant)},
        grant,
    )


def _ended(grant: Grant, release: ModelRelease) -> AccessDecision:
    if grant.revoked_at is not None:
        return AccessDecision(
            False,
            "revoked",
            _("Your access to %(repo)s was revoked: %(reason)s")
            % {"repo": release.repo_id, "reason": grant.revoke_reason or _("no reason given")},
            grant,
        )
    return AccessDecision(
        False,
        "expired",
        _("Your access to %(repo)s expired on %(date)s (UTC); ask for a renewal at %(url)s.")
        % {"repo": release.repo_id, "date": f"{grant.expires_at:%Y-%m-%d}", "url": selectors.apply_url(release)},
        grant,
    )


def _refusal(user: User, release: ModelRelease) -> AccessDecision:
    """Why a signed-in user without an active grant is refused, named so the message says what to do next."""
    open_request = (
        AccessRequest.objects.open().filter(applicant=user, release=release, lab__isnull=True).order_by("-created_at")
    ).first()
    if open_request is not None:
        if open_request.status == AccessRequest.Status.NEEDS_INFO:
            detail = _("Your request for %(repo)s needs more information from you: answer the reviewer at %(url)s.")
        else:
            detail = _("Your request for %(repo)s is pending review; you will be emailed when it is decided (%(url)s).")
        detail %= {"repo": release.repo_id, "url": selectors.request_url(open_request)}
        estimate = wait_estimate_text(
            repo_id=release.repo_id,
            position=selectors.queue_position(open_request),
            typical=selectors.typical_wait(release) if open_request.status == AccessRequest.Status.PENDING else None,
        )
        return AccessDecision(False, "pending", f"{detail} {estimate}".strip(), access_request=open_request)
    last_grant = Grant.objects.filter(user=user, release=release, lab__isnull=True).order_by("-issued_at").first()
    last_request = (
        AccessRequest.objects.filter(applicant=user, release=release, lab__isnull=True).order_by("-created_at").first()
    )
    grant_is_newest = last_grant is not None and (
        last_request is None
        or last_request.pk == last_grant.request_id
        or last_request.created_at <= last_grant.issued_at
    )
    if grant_is_newest:
        return _ended(last_grant, release)
    if last_request is not None and last_request.status == AccessRequest.Status.REJECTED:
        return AccessDecision(
            False,
            "rejected",
            _("Your request for %(repo)s was rejected: %(reason)s")
            % {"repo": release.repo_id, "reason": last_request.decision_reason or _("no reason given")},
            access_request=last_request,
        )
    return AccessDecision(
        False,
        "gated",
        _("%(repo)s is gated: apply for access at %(url)s; downloads work once a reviewer approves.")
        % {"repo": release.repo_id, "url": selectors.apply_url(release)},
    )


def authorize(
    *, actor: Actor, release: ModelRelease, via: str, grant: Grant | None = None, path: str = ""
) -> AccessDecision:
    """Decide a download for this actor on this channel. A refusal is audited with the code given."""
    decision = access_state(user=actor.user, release=release, grant=grant)
    if not decision.allowed:
        metrics.REFUSALS.labels(decision.code, via).inc()
        audit(
            actor=actor,
            action="download.refused",
            target=release,
            data={"code": decision.code, "via": via, "path": path[:500]},
        )
    return AccessDecision(
        decision.allowed, decision.code, decision.detail, decision.grant, release, actor=actor, via=via
    )


# --- Issuing ----------------------------------------------------------------------------------------------


# One statement, built once: the ORM's per-call SQL compilation is most of an insert's cost on this path.
INSERT_EVENT = (
    "INSERT INTO access_downloadevent "
    "(created_at, release_id, file_id, revision_id, user_id, token_id, grant_id, via, manifest_format, ip) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# The same insert for a group commit's batch, one array per column (PostgreSQL): one statement of constant text
# for any number of rows, so it is prepared once per connection and a batch costs one round trip.
INSERT_EVENTS = (
    "INSERT INTO access_downloadevent "
    "(created_at, release_id, file_id, revision_id, user_id, token_id, grant_id, via, manifest_format, ip) "
    "SELECT * FROM unnest(%s::timestamptz[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
    "%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[], %s::inet[])"
)


def _record(
    decision: AccessDecision,
    *,
    file: ModelFile | None = None,
    manifest_format: str = "",
    revision_id: int | None = None,
) -> None:
    """Make the download durable before any URL is handed out: a DownloadEvent row, committed before the
    response is sent (sharing a commit with concurrent requests, access.groupcommit, or alone). Anonymous
    downloads of an open release's files are counted per file and hour instead (access.services.counters), or
    get a row when there is no Redis to count in."""
    if not decision.allowed:
        raise PermissionError("issue() needs an allowed decision")
    actor = decision.actor
    metrics.DOWNLOADS.labels(decision.via, decision.release.repo_id).inc()
    user_id = actor.user.pk if actor.user and actor.user.pk else None
    if user_id is None and file is not None and not decision.release.is_gated and count_open_download(file.pk):
        return
    params = [
        timezone.now(),
        decision.release.pk,
        file.pk if file is not None else None,
        file.revision_id if file is not None else revision_id,
        user_id,
        actor.token.pk if actor.token is not None else None,
        decision.grant.pk if decision.grant is not None else None,
        decision.via,
        manifest_format,
        actor.ip,
    ]
    if groupcommit.write(INSERT_EVENTS, params):
        return
    if connection.vendor == "postgresql":
        # A server-side prepared statement (Django's cursors bind on the client, which cannot prepare): PostgreSQL
        # parses and plans it once per connection, about a fifth of an insert's cost on both sides.
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(INSERT_EVENT, params, prepare=True)
    else:
        with connection.cursor() as cursor:
            cursor.execute(INSERT_EVENT, params)


def issue_file(
    decision: AccessDecision, file: ModelFile, *, base_url: str | None = None, location: Location | None = None
) -> str:
    """Record the download, then sign a fresh URL for the file (on `location`, from
    selectors.release_location; the primary storage by default)."""
    _record(decision, file=file)
    return signed_file_url(file, base_url=base_url, location=location)


def issue_manifest(
    decision: AccessDecision,
    *,
    fmt: str,
    base_url: str,
    entries: list[dict] | None = None,
    revision: ReleaseRevision | None = None,
) -> tuple[list[dict], str]:
    """Record the manifest download, then sign every file of the revision (`main` unless one is named), or hand
    out the grant batch's `entries`. wget lists get relay URLs where storage URLs carry a query string (wget
    would save it as part of the file name); a relay URL names its file, so of that revision."""
    files = revision.files if revision is not None else decision.release.files
    _record(decision, manifest_format=fmt, revision_id=revision.pk if revision else decision.release.main_revision_id)
    pieces = fmt in manifests.WITH_PIECES
    if entries is None:
        entries, expires_at = manifest_entries(
            decision.release,
            base_url=base_url,
            urls=fmt != "sha256sum",
            revision=revision,
            pieces=pieces,
        )
    else:
        expires_at = ""
        if pieces:
            entries = with_pieces(decision.release, entries)
    if fmt == "metalink":
        primary = next(loc for loc in locations() if loc.primary)
        entries = [e if "urls" in e else {**e, "urls": [url_entry(primary, e["url"])]} for e in entries]
    if fmt == "wget" and any("?" in e.get("url", "") for e in entries):
        file_ids = dict(files.values_list("path", "pk"))
        user_id = decision.actor.user.pk if decision.actor.user else None
        entries = [
            {**e, "wget_url": relay_url(file_ids[e["path"]], e["path"], user_id=user_id, base_url=base_url)}
            for e in entries
            if e["path"] in file_ids
        ]
    return entries, expires_at


def unknown_mirror_detail() -> str:
    """What every channel says to a `?mirror=` naming no configured location (selectors.release_location raised
    UnknownMirror): the names it may use. The caller's value is not repeated back."""
    return _("No mirror of that name; use one of: %(names)s.") % {"names": ", ".join(loc.name for loc in locations())}


def location_storage(location: Location | None):
    return get_storage() if location is None or location.primary else get_storage(location.name)


def signed_file_url(
    file: ModelFile, *, base_url: str | None = None, ttl: int | None = None, location: Location | None = None
) -> str:
    return location_storage(location).signed_url(
        file.storage_key, filename=file.path.rsplit("/", 1)[-1], ttl=ttl or settings.SIGNED_URL_TTL, base_url=base_url
    )


def url_entry(location: Location, url: str) -> dict:
    return {"mirror": location.name, "url": url, "priority": location.priority, "location": location.country}


def pieces_entry(piece_size: int, pieces: str) -> dict | None:
    return {"length": piece_size, "sha256": split_pieces(pieces)} if piece_size else None


def with_pieces(release: ModelRelease, entries: list[dict]) -> list[dict]:
    """Entries (a grant's stored batch) with each file's piece hashes, which batches do not store."""
    known = {
        path: pieces_entry(size, joined)
        for path, size, joined in release.files.values_list("path", "piece_size", "pieces")
    }
    return [{**e, "pieces": known[e["path"]]} if known.get(e["path"]) else e for e in entries]


def manifest_entries(
    release: ModelRelease,
    *,
    base_url: str,
    ttl: int | None = None,
    urls: bool = True,
    revision: ReleaseRevision | None = None,
    pieces: bool = False,
) -> tuple[list[dict], str]:
    """Entries for every file of a revision of the release (`main` unless one is named), signed unless
    urls=False, and their expiry as ISO 8601. `url` is on the first location of the default order; with mirrors
    enabled for the release, `urls` lists the file on every location. `pieces` adds the piece hashes."""
    ttl = ttl or settings.SIGNED_URL_TTL
    expires_at = iso(url_expiry(ttl))
    files = revision.files if revision is not None else release.files
    columns = ["path", "size", "sha256", "storage_key"] + (["piece_size", "pieces"] if pieces else [])
    rows = list(files.order_by("path").values_list(*columns))
    entries = [{"path": row[0], "size": row[1], "sha256": row[2]} for row in rows]
    if pieces:
        for entry, row in zip(entries, rows, strict=True):
            if row[4]:
                entry["pieces"] = pieces_entry(row[4], row[5])
    if not urls:
        return entries, expires_at
    items = [(row[3], row[0].rsplit("/", 1)[-1]) for row in rows]
    where = selectors.release_locations(release=release)
    signed = [location_storage(loc).signed_urls(items, ttl=ttl, base_url=base_url) for loc in where]
    for i, entry in enumerate(entries):
        entry["url"] = signed[0][i]
        if len(where) > 1:
            entry["urls"] = [url_entry(loc, on_loc[i]) for loc, on_loc in zip(where, signed, strict=True)]
    return entries, expires_at


def batch_sign(grant: Grant) -> tuple[list[dict], datetime]:
    """The signed URLs of a grant's batch (every file of its release) and when they expire."""
    ttl = settings.GRANT_URL_TTL
    entries, _ = manifest_entries(grant.release, base_url=settings.SITE_URL, ttl=ttl)
    return entries, url_expiry(ttl)


def current_batch(grant: Grant) -> UrlBatch | None:
    """The batch the grant page hands out: the newest ready one, while it has not expired."""
    return (
        grant.batches.filter(status=UrlBatch.Status.READY)
        .exclude(expires_at__lte=timezone.now())
        .order_by("-created_at")
        .first()
    )


# --- Relay URLs -------------------------------------------------------------------------------------------


def relay_url(file_id: int, path: str, *, user_id: int | None, base_url: str) -> str:
    """A portal URL ending in the file name that redirects to a fresh signed URL, for tools that name files
    after the URL (wget). The gate decides again when it is followed, so a revocation takes effect at once."""
    ticket = signing.dumps([file_id, user_id or 0], salt=RELAY_SALT, compress=True)
    return base_url.rstrip("/") + reverse("download-relay", kwargs={"ticket": ticket, "path": path})


def relay_open(ticket: str, *, max_age: int | timedelta) -> tuple[int, int | None] | None:
    try:
        file_id, user_id = signing.loads(ticket, salt=RELAY_SALT, max_age=max_age)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return int(file_id), (int(user_id) or None)
