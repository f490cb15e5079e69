"""Release documents (model card, acceptable use policy, the EU AI Act's public summary of training content and
information for downstream providers, a training logbook, ...), their versions and acknowledgements, and what it
takes to run a release (its stored precision and training emissions). Release managers write; holders
acknowledge. Every change is audited (and told to webhooks)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import downloads, emails, selectors
from ..audit import audit
from ..gate.rule import ACKNOWLEDGE_DOCUMENTS, may_read_document
from ..models import (
    DocumentAcknowledgement,
    DocumentVersion,
    Grant,
    LabSeat,
    ModelRelease,
    ReleaseDocument,
    ReleaseRevision,
    UrlBatch,
    User,
)
from ..taskbase import portal_task
from .base import Actor, Forbidden, NotFound, ServiceError, clean, require_release_manager, require_user
from .grants import batch_sign_task

# A document's text is Markdown, at most this many characters (a 100-page logbook is about 400 000).
MAX_BODY = 2_000_000

# The EU AI Office's template for the public summary of training content (Art. 53(1)(d)), in its three parts:
# what a release manager starts from when adding one.
TRAINING_CONTENT_TEMPLATE = """\
## 1. General information
- **Provider**:
- **Model**:
- **Modalities** (text, images, audio, video, other):
- **Training data size** (per modality, e.g. tokens):

## 2. List of data sources
### 2.1 Publicly available datasets
### 2.2 Private datasets licensed from third parties
### 2.3 Data crawled and scraped from online sources
- **Crawler(s)**:
- **Period of collection**:
- **Description of the content**:
### 2.4 User data
### 2.5 Synthetic data
### 2.6 Other sources

## 3. Data processing
- **Respect of reservations of rights from text and data mining (opt-outs)**:
- **Removal of illegal content**:
- **Other information**:
"""
TEMPLATES = {ReleaseDocument.Kind.TRAINING_CONTENT: TRAINING_CONTENT_TEMPLATE}

# What a release manager may set about running the release (access.footprint), Hugging Face's co2_eq_emissions
# fields among them.
FOOTPRINT_FIELDS = (
    "weights_dtype",
    "co2_eq_emissions",
    "co2_source",
    "co2_training_type",
    "co2_geographical_location",
    "co2_hardware_used",
)


class InvalidVersion(ServiceError):
    status = 409


def body_digest(body: str) -> tuple[str, int]:
    data = body.encode()
    return hashlib.sha256(data).hexdigest(), len(data)


def _body(body: str) -> str:
    body = (body or "").replace("\r\n", "\n").strip()
    if not body:
        raise ServiceError(_("A document needs some text."), "required", field="body")
    if len(body) > MAX_BODY:
        raise ServiceError(_("Keep it under %(n)d characters.") % {"n": MAX_BODY}, "too_long", field="body")
    if "\x00" in body:
        raise ServiceError(_("The text contains a NUL character."), "invalid_text", field="body")
    return body + "\n"


def _revisions(release: ModelRelease, revisions: Iterable[ReleaseRevision] | None) -> list[ReleaseRevision]:
    """The revisions a version describes: those named (all of this release, published), else `main`."""
    if revisions is None:
        return [release.main_revision] if release.main_revision_id else []
    chosen = list(revisions)
    for revision in chosen:
        if revision.release_id != release.pk or revision.published_at is None:
            raise ServiceError(
                _("Revision %(rev)s is not a published revision of %(repo)s.")
                % {"rev": revision.sha[:12], "repo": release.repo_id},
                "unknown_revision",
                field="revisions",
            )
    return chosen


def _choice(value: str, choices, *, field: str) -> str:
    if value not in choices.values:
        raise ServiceError(
            _("Use one of: %(values)s.") % {"values": ", ".join(choices.values)}, "invalid_choice", field=field
        )
    return value


def _snapshot(document: ReleaseDocument) -> dict:
    return {
        "title": document.title,
        "kind": document.kind,
        "visibility": document.visibility,
        "acknowledge_required": document.acknowledge_required,
    }


def document_create(
    *,
    actor: Actor,
    release: ModelRelease,
    kind: str,
    title: str,
    body: str,
    visibility: str = ReleaseDocument.Visibility.PUBLIC,
    acknowledge_required: bool = False,
    notes: str = "",
    revisions: Iterable[ReleaseRevision] | None = None,
) -> ReleaseDocument:
    """A new document with its first version, attached to `revisions` (main when none are named)."""
    require_release_manager(actor)
    kind = _choice(kind, ReleaseDocument.Kind, field="kind")
    visibility = _choice(visibility, ReleaseDocument.Visibility, field="visibility")
    title = clean(title, field="title", multiline=False, max_length=200)
    if not title:
        raise ServiceError(_("A document needs a title."), "required", field="title")
    body = _body(body)
    notes = clean(notes, field="notes", multiline=False, max_length=500)
    chosen = _revisions(release, revisions)
    try:
        with transaction.atomic():
            position = (release.documents.aggregate(n=Max("position"))["n"] or 0) + 1
            document = ReleaseDocument.objects.create(
                release=release,
                kind=kind,
                title=title,
                visibility=visibility,
                acknowledge_required=bool(acknowledge_required),
                position=position,
                created_by=actor.user if actor.user and actor.user.pk else None,
            )
            version = _new_version(actor, document, body, notes, chosen)
            audit(
                actor=actor,
                action="document.created",
                target=document,
                data={**_snapshot(document), "release": release.repo_id, "version": 1, "sha256": version.sha256},
            )
            if document.acknowledge_required:
                document_acknowledge_notify.enqueue(document.pk)
    except IntegrityError:
        raise ServiceError(
            _("%(repo)s already has a document with that title.") % {"repo": release.repo_id},
            "duplicate",
            field="title",
        ) from None
    return document


def _new_version(actor: Actor, document: ReleaseDocument, body: str, notes: str, revisions) -> DocumentVersion:
    number = (document.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    sha256, size = body_digest(body)
    version = DocumentVersion.objects.create(
        document=document,
        number=number,
        body=body,
        sha256=sha256,
        size=size,
        notes=notes,
        created_by=actor.user if actor.user and actor.user.pk else None,
    )
    version.revisions.set(revisions)
    return version


def document_version_add(
    *,
    actor: Actor,
    document: ReleaseDocument,
    body: str,
    notes: str = "",
    revisions: Iterable[ReleaseRevision] | None = None,
) -> DocumentVersion:
    """A new version of a document, which becomes current: holders asked to acknowledge it are asked again."""
    require_release_manager(actor)
    body = _body(body)
    notes = clean(notes, field="notes", multiline=False, max_length=500)
    chosen = _revisions(document.release, revisions)
    with transaction.atomic():
        locked = ReleaseDocument.objects.select_for_update().get(pk=document.pk)
        current = locked.versions.order_by("-number").first()
        if current is not None and current.body == body:
            raise InvalidVersion(_("This text is the current version's; nothing changed."), "unchanged", field="body")
        version = _new_version(actor, locked, body, notes, chosen)
        locked.save(update_fields=["updated_at"])
        audit(
            actor=actor,
            action="document.version_added",
            target=locked,
            data={"release": locked.release.repo_id, "version": version.number, "sha256": version.sha256},
        )
        if locked.acknowledge_required:
            document_acknowledge_notify.enqueue(locked.pk)
    return version


def document_update(
    *,
    actor: Actor,
    document: ReleaseDocument,
    title: str | None = None,
    visibility: str | None = None,
    acknowledge_required: bool | None = None,
) -> ReleaseDocument:
    """Rename a document, or change who may read it and whether holders acknowledge it before downloading."""
    require_release_manager(actor)
    with transaction.atomic():
        locked = ReleaseDocument.objects.select_for_update().get(pk=document.pk)
        before = _snapshot(locked)
        if title is not None:
            locked.title = clean(title, field="title", multiline=False, max_length=200) or locked.title
        if visibility is not None:
            locked.visibility = _choice(visibility, ReleaseDocument.Visibility, field="visibility")
        if acknowledge_required is not None:
            locked.acknowledge_required = bool(acknowledge_required)
        after = _snapshot(locked)
        if after != before:
            try:
                with transaction.atomic():
                    locked.save()
            except IntegrityError:
                raise ServiceError(
                    _("%(repo)s already has a document with that title.") % {"repo": locked.release.repo_id},
                    "duplicate",
                    field="title",
                ) from None
            audit(actor=actor, action="document.updated", target=locked, data={"from": before, "to": after})
            if locked.acknowledge_required and not before["acknowledge_required"]:
                document_acknowledge_notify.enqueue(locked.pk)
    return locked


def document_attach(*, actor: Actor, version: DocumentVersion, revisions: Iterable[ReleaseRevision]) -> DocumentVersion:
    """Say which revisions of the release a version describes (replacing what it said)."""
    require_release_manager(actor)
    chosen = _revisions(version.document.release, revisions)
    with transaction.atomic():
        before = sorted(version.revisions.values_list("sha", flat=True))
        version.revisions.set(chosen)
        after = sorted(r.sha for r in chosen)
        if before != after:
            audit(
                actor=actor,
                action="document.attached",
                target=version.document,
                data={"version": version.number, "from": before, "to": after},
            )
    return version


def document_acknowledge(
    *, actor: Actor, document: ReleaseDocument, version: int | None = None
) -> DocumentAcknowledgement:
    """The person acknowledges the document's current version (the one they were shown: `version`, when given,
    must be it). Only someone the gate allows, or holds back to acknowledge, may; acknowledging twice changes
    nothing."""
    user = require_user(actor)
    release = document.release
    current = document.versions.order_by("-number").first()
    state = downloads.access_state(user=user, release=release)
    if not may_read_document(state.decision, holders_only=document.holders_only):
        raise NotFound(_("No such document."))
    if not document.acknowledge_required or current is None:
        raise ServiceError(_("This document does not ask to be acknowledged."), "not_required")
    if not (state.allowed or state.code == ACKNOWLEDGE_DOCUMENTS):
        raise Forbidden(
            _("Only people with access to %(repo)s acknowledge its documents.") % {"repo": release.repo_id},
            "not_a_holder",
        )
    if version is not None and str(version) != str(current.number):
        raise InvalidVersion(
            _("Version %(v)s is not the current version of this document (%(current)d); read the current one.")
            % {"v": version, "current": current.number},
            "document_version",
            field="version",
        )
    with transaction.atomic():
        ack, created = DocumentAcknowledgement.objects.get_or_create(
            version=current, user=user, defaults={"ip": actor.ip, "created_at": timezone.now()}
        )
        if created:
            audit(
                actor=actor,
                action="document.acknowledged",
                target=document,
                data={"release": release.repo_id, "version": current.number, "sha256": current.sha256},
            )
            # Batches that waited for this (a grant's first one, signed while documents were unacknowledged).
            waiting = UrlBatch.objects.filter(
                status=UrlBatch.Status.PENDING, grant__release=release, grant__user=user
            ).values_list("pk", flat=True)
            for pk in waiting:
                batch_sign_task.enqueue(pk)
    return ack


def _holders(release: ModelRelease):
    """People who hold access to the release now: an active grant of their own, or an active lab seat."""
    own = Grant.objects.active().filter(release=release, lab__isnull=True).values("user_id")
    seats = LabSeat.objects.filter(
        grant__in=Grant.objects.active().filter(release=release), status=LabSeat.Status.ACTIVE
    ).values("user_id")
    return User.objects.filter(is_active=True).filter(pk__in=own.union(seats))


@portal_task("access.tasks.document_acknowledge_notify")
def document_acknowledge_notify(document_id: int) -> int:
    """Email every holder the gate now holds back for this document's current version, once per version, in
    their language: their downloads stop until they acknowledge it."""
    document = ReleaseDocument.objects.select_related("release").filter(pk=document_id).first()
    if document is None or not document.acknowledge_required:
        return 0
    current = document.versions.order_by("-number").first()
    release = document.release
    if current is None or not release.is_gated:
        return 0
    sent = 0
    for user in _holders(release):
        state = downloads.access_state(user=user, release=release)
        if state.code != ACKNOWLEDGE_DOCUMENTS or document.pk not in {d.pk for d in state.decision.documents}:
            continue
        sent += emails.send_once(
            dedupe_key=f"document-acknowledge:{current.pk}:{user.pk}",
            template="document_acknowledge",
            to=user.email,
            context={
                "release": release,
                "document": document,
                "version": current,
                "url": selectors.document_url(repo_id=release.repo_id, public_id=document.public_id),
            },
        )
    return sent


def release_set_footprint(*, actor: Actor, release: ModelRelease, changes: dict) -> ModelRelease:
    """Set what the release page says about running it: the precision its weights are stored in, and its
    training emissions (grams of CO2 equivalent, with their source, training type, location and hardware, as
    Hugging Face's co2_eq_emissions metadata)."""
    require_release_manager(actor)
    unknown = set(changes) - set(FOOTPRINT_FIELDS)
    if unknown:
        raise ServiceError(_("These fields cannot be changed here: %(f)s") % {"f": ", ".join(sorted(unknown))})
    changes = dict(changes)
    if "weights_dtype" in changes:
        dtype = changes["weights_dtype"] or ""
        if dtype:
            _choice(dtype, ModelRelease.WeightsDtype, field="weights_dtype")
        changes["weights_dtype"] = dtype
    if "co2_eq_emissions" in changes and changes["co2_eq_emissions"] not in (None, ""):
        try:
            value = float(changes["co2_eq_emissions"])
        except (TypeError, ValueError):
            value = -1.0
        if not (0 <= value < 1e15):
            raise ServiceError(
                _("Give the emissions in grams of CO2 equivalent, a number of at least 0."),
                "invalid_number",
                field="co2_eq_emissions",
            )
        changes["co2_eq_emissions"] = value
    elif "co2_eq_emissions" in changes:
        changes["co2_eq_emissions"] = None
    for name in FOOTPRINT_FIELDS[2:]:
        if name in changes:
            changes[name] = clean(changes[name] or "", field=name, multiline=False, max_length=200)
    with transaction.atomic():
        locked = ModelRelease.objects.select_for_update().get(pk=release.pk)
        before, after = {}, {}
        for name, value in changes.items():
            if getattr(locked, name) != value:
                before[name], after[name] = getattr(locked, name), value
                setattr(locked, name, value)
        if after:
            locked.save(update_fields=[*after, "updated_at"])
            audit(actor=actor, action="release.footprint_updated", target=locked, data={"from": before, "to": after})
    return locked
