"""The one download gate, as every channel sees it. The API's file and manifest endpoints, the Hugging Face tree
and resolve endpoints, relay URLs, the grant page and its batches ask `authorize` whether a download may happen,
then `serve_file` / `serve_manifest` record it and sign fresh URLs. A channel only renders the verdict in its own
error shape.

The gate is three parts, each the only one of its kind: the rule (access.gate.rule.decide, a pure function of
the facts), the loader (access.gate.loader, which reads and caches the facts) and the recorder
(access.gate.recorder, which makes a download durable). This module composes them: load, decide, audit a
refusal with the code the caller is given and render what it says, record, sign. A grant covers every revision
of its release; which revision is served is the channel's choice (`main` unless the caller names one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db.models import Value
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from . import codewords, manifests, metrics, selectors
from .actors import Actor
from .audit import audit
from .gate import loader, messages, recorder
from .gate.facts import GateInputs, GrantFacts, RequestFacts, SeatFacts
from .gate.rule import AccessDecision, decide, may_read_document
from .marking import Marks
from .models import (
    AdvisoryRecipient,
    DownloadEvent,
    FileVariant,
    Grant,
    ModelFile,
    ModelRelease,
    ReleaseRevision,
    UrlBatch,
    User,
    split_pieces,
)
from .storage import Location, get_storage, locations

RELAY_SALT = "access.downloads.relay"
Via = DownloadEvent.Via


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one call, with what the channel needs: the release, who asked through which
    channel, and (for refusals) what to tell them."""

    decision: AccessDecision
    release: ModelRelease
    detail: str = ""
    actor: Actor | None = None
    via: str = ""
    # In a marked release, the person's codeword: which variant of each marked file they are served.
    marks: Marks | None = None

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def code(self) -> str:
        return self.decision.code

    @property
    def status(self) -> int:
        return self.decision.status

    @property
    def grant(self) -> GrantFacts | None:
        return self.decision.grant

    @property
    def seat(self) -> SeatFacts | None:
        return self.decision.seat

    @property
    def access_request(self) -> RequestFacts | None:
        return self.decision.request


def url_expiry(ttl: int) -> datetime:
    """When a URL signed now with this TTL stops working (whole seconds, as storage signs them)."""
    return datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + ttl, UTC)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Deciding ---------------------------------------------------------------------------------------------


def _marks(inputs: GateInputs, release: ModelRelease, user: User | None, *, record: bool = True) -> Marks | None:
    """The person's codeword in a marked release they may download (recorded on first use unless `record` is
    off, for pages that only show). Computed from MARKING_KEY: no query once the loader has the attempt."""
    if not inputs.release.marked or user is None or not user.is_authenticated:
        return None
    if inputs.codeword is None and not record:
        return None
    return codewords.person_marks(release=release, user=user, attempt=inputs.codeword)


def access_state(
    *,
    user: User | None,
    release: ModelRelease,
    grant: Grant | None = None,
    record_codeword: bool = False,
    revision_id: int | None = None,
) -> Verdict:
    """Where the user stands, without auditing: what pages show."""
    inputs = loader.inputs(user=user, release=release, grant=grant, revision_id=revision_id)
    decision = decide(inputs, timezone.now())
    marks = _marks(inputs, release, user, record=record_codeword) if decision.allowed else None
    return Verdict(decision, release, messages.detail(decision, release), marks=marks)


def authorize(
    *,
    actor: Actor,
    release: ModelRelease,
    via: str,
    grant: Grant | None = None,
    path: str = "",
    revision_id: int | None = None,
) -> Verdict:
    """Decide a download for this actor on this channel, of `revision_id` (main when None). A refusal is audited
    with the code given. An allowed download of a marked release carries the person's codeword, so every channel
    serves their variants."""
    if revision_id is None:
        revision_id = release.main_revision_id
    inputs = loader.inputs(user=actor.user, release=release, grant=grant, revision_id=revision_id)
    decision = decide(inputs, timezone.now())
    if decision.allowed:
        return Verdict(decision, release, actor=actor, via=via, marks=_marks(inputs, release, actor.user))
    metrics.REFUSALS.labels(decision.code, via).inc()
    audit(
        actor=actor,
        action="download.refused",
        target=release,
        data={"code": decision.code, "via": via, "path": path[:500]},
    )
    return Verdict(decision, release, messages.detail(decision, release), actor, via)


def read_document(*, actor: Actor, release: ModelRelease, holders_only: bool, document_id: str) -> Verdict | None:
    """Decide whether this actor may read one of the release's documents: a public one, whoever sees the
    release; a holders-only one, whoever the gate allows or holds back only to acknowledge documents (they read
    them to acknowledge them). Returns None when they may (a holders-only read is recorded, `via` document),
    else the refusal, audited, to render as the channel does."""
    via = Via.DOCUMENT
    decision = decide(loader.inputs(user=actor.user, release=release), timezone.now())
    if may_read_document(decision, holders_only=holders_only):
        if holders_only and actor.user is not None and actor.user.pk:
            recorder.record(
                release=release,
                via=via,
                revision_id=release.main_revision_id,
                user_id=actor.user.pk,
                token_id=actor.token.pk if actor.token is not None else None,
                grant_id=decision.grant.pk if decision.grant is not None else None,
                ip=actor.ip,
            )
        return None
    metrics.REFUSALS.labels(decision.code, via).inc()
    audit(
        actor=actor,
        action="download.refused",
        target=release,
        data={"code": decision.code, "via": via, "path": document_id},
    )
    return Verdict(decision, release, messages.detail(decision, release), actor, via)


# --- Serving: recording the download, then signing --------------------------------------------------------


def _record(verdict: Verdict, *, file: ModelFile | None = None, manifest_format: str = "", revision_id=None) -> None:
    if not verdict.allowed:
        raise PermissionError("serving needs an allowed verdict")
    actor = verdict.actor
    recorder.record(
        release=verdict.release,
        via=verdict.via,
        file_id=file.pk if file is not None else None,
        revision_id=file.revision_id if file is not None else revision_id,
        user_id=actor.user.pk if actor.user and actor.user.pk else None,
        token_id=actor.token.pk if actor.token is not None else None,
        grant_id=verdict.grant.pk if verdict.grant is not None else None,
        manifest_format=manifest_format,
        ip=actor.ip,
    )


@dataclass(frozen=True)
class Served:
    """The object a person is served for a file: the file itself, or in a marked release their variant of it."""

    key: str
    size: int
    sha256: str
    piece_size: int
    pieces: str


def served(verdict: Verdict, file: ModelFile) -> Served:
    """What this verdict's person receives for the file. The variant is computed from their codeword; its record
    comes from the loader's cache. A marked file's original is never served."""
    if not file.mark_variants:
        return Served(file.storage_key, file.size, file.sha256, file.piece_size, file.pieces)
    if verdict.marks is None:
        raise PermissionError("a marked file is served only as a person's variant")
    row = loader.variant(file_id=file.pk, variant=verdict.marks.variant(file.path, file.mark_variants))
    if row is None:
        raise LookupError(f"{file} has no variant records")
    return Served(row.storage_key, row.size, row.sha256, row.piece_size, row.pieces)


def serve_file(
    verdict: Verdict, file: ModelFile, *, base_url: str | None = None, location: Location | None = None
) -> str:
    """Record the download, then sign a fresh URL for the file (on `location`, from
    selectors.release_location; the primary storage by default): the person's variant of a marked file."""
    _record(verdict, file=file)
    return signed_file_url(file, base_url=base_url, location=location, key=served(verdict, file).key)


def serve_manifest(
    verdict: Verdict,
    *,
    fmt: str,
    base_url: str,
    entries: list[dict] | None = None,
    revision: ReleaseRevision | None = None,
) -> tuple[list[dict], str]:
    """Record the manifest download, then sign every file of the revision (`main` unless one is named), or hand
    out the grant batch's `entries`. wget lists get relay URLs where storage URLs carry a query string (wget
    would save it as part of the file name); a relay URL names its file, so of that revision."""
    release = verdict.release
    files = revision.files if revision is not None else release.files
    _record(verdict, manifest_format=fmt, revision_id=revision.pk if revision else release.main_revision_id)
    pieces = fmt in manifests.WITH_PIECES
    if entries is None:
        entries, expires_at = manifest_entries(
            release, base_url=base_url, urls=fmt != "sha256sum", revision=revision, pieces=pieces, marks=verdict.marks
        )
    else:
        expires_at = ""
        if pieces:
            entries = with_pieces(files, entries)
        if release.marking:
            entries = personal_entries(release, entries, marks=verdict.marks, base_url=base_url)
    if fmt == "metalink":
        primary = next(loc for loc in locations() if loc.primary)
        entries = [e if "urls" in e else {**e, "urls": [url_entry(primary, e["url"])]} for e in entries]
    if fmt == "wget" and any("?" in e.get("url", "") for e in entries):
        file_ids = dict(files.values_list("path", "pk"))
        user_id = verdict.actor.user.pk if verdict.actor.user else None
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
    file: ModelFile,
    *,
    base_url: str | None = None,
    ttl: int | None = None,
    location: Location | None = None,
    key: str | None = None,
) -> str:
    """A signed URL for the file's object (or `key`, a variant of it), named after the file."""
    return location_storage(location).signed_url(
        key or file.storage_key,
        filename=file.path.rsplit("/", 1)[-1],
        ttl=ttl or settings.SIGNED_URL_TTL,
        base_url=base_url,
    )


def url_entry(location: Location, url: str) -> dict:
    return {"mirror": location.name, "url": url, "priority": location.priority, "location": location.country}


def pieces_entry(piece_size: int, pieces: str) -> dict | None:
    return {"length": piece_size, "sha256": split_pieces(pieces)} if piece_size else None


def with_pieces(files, entries: list[dict]) -> list[dict]:
    """Entries (a grant's stored batch) with each file's piece hashes (of the revision the batch signed), which
    batches do not store."""
    known = {
        path: pieces_entry(size, joined) for path, size, joined in files.values_list("path", "piece_size", "pieces")
    }
    return [{**e, "pieces": known[e["path"]]} if known.get(e["path"]) else e for e in entries]


def personal_rows(rows: list[tuple], marks: Marks | None, *, hide: bool = False) -> list[tuple]:
    """Manifest rows (path, size, sha256, storage_key, piece_size, pieces, pk, mark_variants) with each marked
    file's replaced by the person's variant (one query for all of them). Without a codeword a marked file is
    refused, or with `hide` listed without its object and hashes (what a page shows someone without access)."""
    marked = [row for row in rows if row[7]]
    if not marked:
        return rows
    if marks is None and hide:
        return [(r[0], r[1], None, None, 0, "", r[6], r[7]) if r[7] else r for r in rows]
    if marks is None:
        raise PermissionError("a marked file is served only as a person's variant")
    wanted = {row[6]: marks.variant(row[0], row[7]) for row in marked}
    found = {
        file_id: (size, sha256, key, piece_size, pieces)
        for file_id, variant, size, sha256, key, piece_size, pieces in FileVariant.objects.filter(
            file_id__in=list(wanted)
        ).values_list("file_id", "variant", "size", "sha256", "storage_key", "piece_size", "pieces")
        if wanted[file_id] == variant
    }
    if len(found) != len(wanted):
        raise LookupError("a marked file has no variant records")
    out = []
    for row in rows:
        if row[7]:
            size, sha256, key, piece_size, pieces = found[row[6]]
            row = (row[0], size, sha256, key, piece_size, pieces, row[6], row[7])
        out.append(row)
    return out


def manifest_entries(
    release: ModelRelease,
    *,
    base_url: str,
    ttl: int | None = None,
    urls: bool = True,
    revision: ReleaseRevision | None = None,
    pieces: bool = False,
    marks: Marks | None = None,
    unsigned_marked: bool = False,
) -> tuple[list[dict], str]:
    """Entries for every file of a revision of the release (`main` unless one is named), signed unless
    urls=False, and their expiry as ISO 8601. `url` is on the first location of the default order; with mirrors
    enabled for the release, `urls` lists the file on every location. `pieces` adds the piece hashes. In a
    marked release each marked file is the person's variant (`marks`), with its own size, hashes and object."""
    ttl = ttl or settings.SIGNED_URL_TTL
    expires_at = iso(url_expiry(ttl))
    files = revision.files if revision is not None else release.files
    rows = personal_rows(manifest_rows(files, pieces=pieces), marks, hide=unsigned_marked)
    entries = [{"path": row[0], "size": row[1], "sha256": row[2]} for row in rows]
    if pieces:
        for entry, row in zip(entries, rows, strict=True):
            if row[4]:
                entry["pieces"] = pieces_entry(row[4], row[5])
    if not urls:
        return entries, expires_at
    # Without a codeword (a stored batch of a marked release) a marked file's entry has no URL yet: the person's
    # variant is signed when the batch is handed out (personal_entries).
    signable = [(entry, row) for entry, row in zip(entries, rows, strict=True) if row[3] is not None]
    items = [(row[3], row[0].rsplit("/", 1)[-1]) for _entry, row in signable]
    where = selectors.release_locations(release=release)
    signed = [location_storage(loc).signed_urls(items, ttl=ttl, base_url=base_url) for loc in where]
    for i, (entry, _row) in enumerate(signable):
        entry["url"] = signed[0][i]
        if len(where) > 1:
            entry["urls"] = [url_entry(loc, on_loc[i]) for loc, on_loc in zip(where, signed, strict=True)]
    return entries, expires_at


def personal_entries(release: ModelRelease, entries: list[dict], *, marks: Marks | None, base_url: str) -> list[dict]:
    """A stored batch's entries as this person receives them: each marked file of main replaced by their variant,
    freshly signed (a lab's batch is shared by its members; each gets their own variants)."""
    marked = {row[0]: row for row in manifest_rows(release.files.filter(mark_variants__gt=0), pieces=True)}
    if not marked:
        return entries
    mine = {row[0]: row for row in personal_rows(list(marked.values()), marks)}
    where = selectors.release_locations(release=release)
    ttl = settings.GRANT_URL_TTL
    out = []
    for entry in entries:
        row = mine.get(entry["path"])
        if row is None:
            out.append(entry)
            continue
        path, size, sha256, key, piece_size, pieces = row[:6]
        filename = path.rsplit("/", 1)[-1]
        signed = [location_storage(loc).signed_url(key, filename=filename, ttl=ttl, base_url=base_url) for loc in where]
        entry = {**entry, "size": size, "sha256": sha256, "url": signed[0]}
        entry.pop("urls", None)
        if len(where) > 1:
            entry["urls"] = [url_entry(loc, url) for loc, url in zip(where, signed, strict=True)]
        if "pieces" in entry and piece_size:
            entry["pieces"] = pieces_entry(piece_size, pieces)
        out.append(entry)
    return out


MANIFEST_COLUMNS = ("path", "size", "sha256", "storage_key", "piece_size", "pieces", "pk", "mark_variants")


def manifest_rows(files, *, pieces: bool = False) -> list[tuple]:
    """The files' MANIFEST_COLUMNS in path order; without `pieces`, the piece hashes are left in the database
    (992 shards of 10 GB carry 40 MB of them)."""
    if pieces:
        return list(files.order_by("path").values_list(*MANIFEST_COLUMNS))
    columns = [name if name != "pieces" else "no_pieces" for name in MANIFEST_COLUMNS]
    return list(files.annotate(no_pieces=Value("")).order_by("path").values_list(*columns))


def batch_sign(grant: Grant) -> tuple[list[dict], datetime, str]:
    """The signed URLs of a grant's batch (every file of its release's `main`), when they expire, and the id of
    the revision signed (read with it, so a batch never names a revision other than the one it signs). A marked
    file's entry is signed when the batch is handed out, as the variant of whoever downloads it (the grant's
    holder, or each member of a lab)."""
    ttl = settings.GRANT_URL_TTL
    release = ModelRelease.objects.select_related("main_revision").get(pk=grant.release_id)
    revision = release.main_revision
    entries, _ = manifest_entries(release, base_url=settings.SITE_URL, ttl=ttl, revision=revision, unsigned_marked=True)
    return entries, url_expiry(ttl), revision.sha if revision is not None else release.revision


def batch_revision(batch: UrlBatch) -> ReleaseRevision | None:
    """The revision a grant's batch signed (None for a batch signed before revisions were named)."""
    if not batch.revision:
        return None
    return ReleaseRevision.objects.filter(release_id=batch.grant.release_id, sha=batch.revision).first()


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


# --- Advisories on what is served ---------------------------------------------------------------------------


def advisories_for(verdict: Verdict, revision_id: int | None, *, acknowledged: bool = False) -> list[dict]:
    """The published advisories on the revision served that the caller may see (public ones; under embargo, for
    a holder the gate just allowed or an account told), as [{id, severity, title, url, acknowledged}]. No query
    unless the revision has some (and then `acknowledged` asks one)."""
    revision_id = revision_id or verdict.release.main_revision_id
    found = [a for a in loader.advisories(verdict.release) if revision_id in a.revision_ids]
    if not found:
        return []
    now = timezone.now()
    user = verdict.actor.user if verdict.actor is not None else None
    signed_in = user is not None and user.is_authenticated
    embargoed = [a.pk for a in found if a.embargo_until is not None and a.embargo_until > now]
    told: dict = {}
    if signed_in and (embargoed or acknowledged):
        rows = AdvisoryRecipient.objects.filter(user=user, advisory_id__in=[a.pk for a in found])
        told = dict(rows.values_list("advisory_id", "acknowledged_at"))
    holder = verdict.decision.code == "granted"
    shown = [a for a in found if a.pk not in embargoed or holder or a.pk in told]
    base = settings.SITE_URL.rstrip("/")
    return [
        {
            "id": a.identifier,
            "severity": a.severity,
            "title": a.title,
            "url": base + reverse("advisory-detail", kwargs={"public_id": a.public_id}),
            "acknowledged": bool(told.get(a.pk)),
        }
        for a in shown
    ]


def with_advisories(response, advisories: list[dict]):
    """Name the advisories on the revision served in the response's X-Advisories header (when there are any)."""
    if advisories:
        response["X-Advisories"] = ", ".join(a["id"] for a in advisories)
    return response
