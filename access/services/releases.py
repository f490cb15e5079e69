"""Releases, their revisions and files. Switching access, moving to a new license version, registering files
and publishing revisions are audited changes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import marking, selectors
from ..audit import audit
from ..models import FileVariant, License, ModelFile, ModelRelease, ReleaseRevision
from .base import Actor, ServiceError, clean, number, require_release_manager, require_reviewer
from .licenses import license_update_notify

# What an audited change may set; the repo id and revision are not changed this way.
EDITABLE_FIELDS = (
    "access",
    "published",
    "license",
    "license_update_mode",
    "display_name",
    "parameters",
    "description",
    "lab_member_cap",
    "description_zh_hans",
    "review_deadline_days",
    "transparency_public",
    "triage_deadline_days",
    "flaw_reports_from_verified",
    "progress_report_required",
    "closeout_required",
    "public_register",
)
# What only release managers change: the license version holders must accept, and how they do; how long
# review may take and whether the release's request numbers are public.
POLICY_FIELDS = (
    "license",
    "license_update_mode",
    "review_deadline_days",
    "transparency_public",
    "triage_deadline_days",
    "flaw_reports_from_verified",
    "progress_report_required",
    "closeout_required",
    "public_register",
)
# The numbers a change may set, with their bounds (inclusive); `parameters` may also be left unset.
NUMBER_BOUNDS = {
    "review_deadline_days": ModelRelease.REVIEW_DEADLINE_DAYS,
    "triage_deadline_days": ModelRelease.REVIEW_DEADLINE_DAYS,
    "lab_member_cap": ModelRelease.LAB_MEMBER_CAP,
    "parameters": (0, 2**63 - 1),
}


def revision_sha(*, repo_id: str, parent: str, files: list[tuple[str, int, str]]) -> str:
    """A stable 40-hex id for a revision: its release, the revision it follows and its files (path, size,
    sha256) in path order. The first revision's id is that of its file list alone, as before revisions."""
    # A git-style 40-hex id (what Hugging Face clients expect as a revision), not a security boundary.
    digest = hashlib.sha1(f"{repo_id}\n".encode(), usedforsecurity=False)
    if parent:
        digest.update(f"parent {parent}\n".encode())
    for path, size, sha in sorted(files):
        digest.update(f"{path}\0{size}\0{sha}\n".encode())
    return digest.hexdigest()


def _next_number(release: ModelRelease) -> int:
    return (release.revisions.aggregate(n=Max("number"))["n"] or 0) + 1


def release_file_key(*, release: ModelRelease, path: str) -> str:
    """Where the bytes of a newly registered file go: `<repo>/<path>`, unless a published revision's file is
    stored there, in which case `<repo>/revisions/<n>/<path>` for the revision being prepared. Storage keys of
    published revisions are never written again, so a resumed download of an older revision gets its bytes."""
    base = f"{release.repo_id}/{path}"
    if not ModelFile.objects.filter(storage_key=base, revision__isnull=False).exists():
        return base
    return f"{release.repo_id}/revisions/{_next_number(release)}/{path}"


def release_upsert_file(
    *,
    actor: Actor,
    release: ModelRelease,
    path: str,
    size: int,
    sha256: str,
    storage_key: str,
    piece_size: int = 0,
    pieces: Sequence[str] = (),
    variants: Sequence[tuple[str, int, str, int, Sequence[str]]] = (),
) -> bool:
    """Add a file to the release's next revision (its draft); returns True when it is new or differs from
    main, and audits it. Published revisions are never changed: `release_publish`
    makes the draft a new revision. Refuses a storage key that holds a published file with other contents.

    Piece hashes come from the same pass as sha256 and are stored with the file; a published file's pieces
    never change under a client (a file published before pieces were hashed keeps none).

    `variants` marks the file (a marked release only): (storage key, size, sha256, piece size, pieces) of each
    variant, in variant order; the file's own key is then the original's, under the private prefix."""
    require_release_manager(actor)
    if selectors.clean_file_path(path) is None:
        raise ServiceError(_("Invalid file path: %(path)s") % {"path": path}, "invalid_path")
    if piece_size and len(pieces) != -(-size // piece_size):
        raise ServiceError(_("The piece hashes do not cover the file."), "invalid_pieces")
    joined = "".join(pieces) if piece_size else ""
    if variants and not release.marking:
        raise ServiceError(_("Turn marking on for %(repo)s first.") % {"repo": release.repo_id}, "marking_off")
    if variants and not marking.is_private(storage_key):
        raise ServiceError(_("A marked file's original must be stored under the private prefix."), "invalid_key")
    current = release.files.filter(path=path).first()
    draft = ModelFile.objects.filter(release=release, revision__isnull=True, path=path)
    if current is not None and (current.size, current.sha256) == (size, sha256):
        draft.delete()  # back to what main has: nothing to publish for this path
        return False
    clash = (
        ModelFile.objects.filter(storage_key=storage_key, revision__isnull=False)
        .exclude(size=size, sha256=sha256)
        .select_related("revision")
        .first()
    )
    if clash is not None:
        raise ServiceError(
            _(
                "Storage key %(key)s holds %(path)s of published revision %(n)d with other contents; store the "
                "changed file under a new key (published revisions never change)."
            )
            % {"key": storage_key, "path": clash.path, "n": clash.revision.number},
            "storage_key_in_use",
        )
    row, _created = draft.update_or_create(
        release=release,
        revision=None,
        path=path,
        defaults={
            "size": size,
            "sha256": sha256,
            "storage_key": storage_key,
            "piece_size": piece_size,
            "pieces": joined,
            "mark_variants": len(variants),
        },
    )
    FileVariant.objects.filter(file=row).delete()  # a draft's; published files' variants never change
    FileVariant.objects.bulk_create(
        [
            FileVariant(
                file=row,
                variant=number,
                storage_key=key,
                size=v_size,
                sha256=v_sha,
                piece_size=v_piece_size,
                pieces="".join(v_pieces) if v_piece_size else "",
            )
            for number, (key, v_size, v_sha, v_piece_size, v_pieces) in enumerate(variants)
        ]
    )
    audit(
        actor=actor,
        action="release.file_added" if current is None else "release.file_changed",
        target=release,
        data={"path": path, "size": size, "sha256": sha256, "piece_size": piece_size, "variants": len(variants)},
    )
    return True


def release_publish(*, actor: Actor, release: ModelRelease, notes: str = "") -> ReleaseRevision | None:
    """Publish the release's draft as a new revision: main's files with the draft's added or changed ones.
    The new revision becomes `main` (and `release.revision` its id); the one before stays downloadable by id
    and never changes. Does nothing (returns None) when the draft changes nothing."""
    require_release_manager(actor)
    notes = clean(notes, field="notes", multiline=True)
    with transaction.atomic():
        locked = ModelRelease.objects.select_for_update().get(pk=release.pk)
        draft = list(ModelFile.objects.filter(release=locked, revision__isnull=True))
        current = {f.path: f for f in locked.files}
        changed = [
            f
            for f in draft
            if (f.path not in current or (current[f.path].size, current[f.path].sha256) != (f.size, f.sha256))
        ]
        unchanged = [f.pk for f in draft if f not in changed]
        if unchanged:
            ModelFile.objects.filter(pk__in=unchanged).delete()
        if not changed:
            return None
        changed_paths = {f.path for f in changed}
        kept = [f for path, f in current.items() if path not in changed_paths]
        listing = [(f.path, f.size, f.sha256) for f in [*kept, *changed]]
        revision = ReleaseRevision.objects.create(
            release=locked,
            number=_next_number(locked),
            sha=revision_sha(repo_id=locked.repo_id, parent=locked.revision if current else "", files=listing),
            notes=notes,
        )
        copies = ModelFile.objects.bulk_create(
            [
                ModelFile(
                    release=locked,
                    revision=revision,
                    path=f.path,
                    size=f.size,
                    sha256=f.sha256,
                    storage_key=f.storage_key,
                    piece_size=f.piece_size,
                    pieces=f.pieces,
                    mark_variants=f.mark_variants,
                    created_at=f.created_at,
                )
                for f in kept
            ],
            batch_size=1000,
        )
        # A marked file kept into the new revision keeps its variants: the same objects, so a person's copy and a
        # resumed download stay the same across revisions.
        kept_marked = {f.pk: copy for f, copy in zip(kept, copies, strict=True) if f.mark_variants}
        FileVariant.objects.bulk_create(
            [
                FileVariant(
                    file=kept_marked[v.file_id],
                    variant=v.variant,
                    size=v.size,
                    sha256=v.sha256,
                    storage_key=v.storage_key,
                    piece_size=v.piece_size,
                    pieces=v.pieces,
                    created_at=v.created_at,
                )
                for v in FileVariant.objects.filter(file_id__in=list(kept_marked))
            ]
        )
        ModelFile.objects.filter(pk__in=[f.pk for f in changed]).update(revision=revision)
        revision.published_at = timezone.now()
        revision.save(update_fields=["published_at"])
        locked.main_revision, locked.revision = revision, revision.sha
        locked.save(update_fields=["main_revision", "revision", "updated_at"])
        audit(
            actor=actor,
            action="release.revision_published",
            target=locked,
            data={
                "revision": revision.sha,
                "number": revision.number,
                "files": len(listing),
                "changed": sorted(changed_paths)[:100],
                "notes": notes[:500],
            },
        )
    release.main_revision, release.main_revision_id, release.revision = revision, revision.pk, revision.sha
    return revision


def release_refresh_revision(*, actor: Actor, release: ModelRelease, notes: str = "") -> ModelRelease:
    """Publish whatever was registered since the last revision (see release_publish); returns the release."""
    release_publish(release=release, notes=notes, actor=actor)
    return release


def release_marking_enable(*, actor: Actor, release: ModelRelease, license: License | None = None) -> ModelRelease:
    """Turn marking on for a gated release whose weights are safetensors: the revisions registered from then on
    are marked, each holder served their own variants. A release with holders needs a new license version that
    says so (`license`, which holders then accept as for any new version); a new release's license says so from
    its first version."""
    require_release_manager(actor)
    if not release.is_gated:
        raise ServiceError(_("Only gated releases are marked: open copies name nobody."), "marking_open_release")
    others = sorted(
        path for path in release.files.values_list("path", flat=True) if path.lower().endswith(marking.OTHER_WEIGHTS)
    )
    if others:
        raise ServiceError(
            _("Marking reads safetensors weights only; convert these to safetensors first: %(paths)s.")
            % {"paths": ", ".join(others[:10])},
            "marking_not_safetensors",
        )
    marking.marking_key()  # fails loudly when MARKING_KEY is not set
    has_holders = release.grants.active().exists()
    if has_holders and (license is None or license.pk == release.license_id):
        raise ServiceError(
            _(
                "%(repo)s has holders: turning marking on needs a new license version that says each copy is "
                "marked; publish one and choose it here."
            )
            % {"repo": release.repo_id},
            "marking_needs_license",
            field="license",
        )
    with transaction.atomic():
        if license is not None and license.pk != release.license_id:
            release = release_update(actor=actor, release=release, changes={"license": license})
        locked = ModelRelease.objects.select_for_update().get(pk=release.pk)
        if not locked.marking:
            locked.marking = True
            locked.save(update_fields=["marking", "updated_at"])
            audit(
                actor=actor,
                action="release.marking_enabled",
                target=locked,
                data={"license": _plain(locked.license) if locked.license_id else None},
            )
    return locked


def release_update(*, actor: Actor, release: ModelRelease, changes: dict) -> ModelRelease:
    """Change a release (open or gated, published, license, approval mode, its descriptive fields), audited
    with the values before and after. Only reviewers, the admin site and commands may; the license version and
    how holders move to a new one are for release managers."""
    if set(changes) - set(POLICY_FIELDS):
        require_reviewer(actor)
    if set(changes) & set(POLICY_FIELDS):
        require_release_manager(actor)
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ServiceError(_("These fields cannot be changed here: %(f)s") % {"f": ", ".join(sorted(unknown))})
    changes = _bounded(changes)
    with transaction.atomic():
        locked = ModelRelease.objects.select_for_update().get(pk=release.pk)
        before, after = {}, {}
        for name, value in changes.items():
            old = getattr(locked, name)
            if old != value:
                before[name], after[name] = _plain(old), _plain(value)
                setattr(locked, name, value)
        if locked.access == ModelRelease.Access.GATED and locked.license is None:
            raise ServiceError(_("A gated release needs a license."), "license_required", field="license")
        if after:
            locked.save(update_fields=[*after, "updated_at"])
            audit(actor=actor, action="release.updated", target=locked, data={"from": before, "to": after})
            if "license" in after and locked.is_gated:
                # Holders of active grants on another version must accept this one; each is emailed once.
                license_update_notify.enqueue(locked.pk)
    return locked


def _bounded(fields: dict) -> dict:
    """The release's numbers among `fields`, each held to its bounds (a refusal names the field)."""
    out = dict(fields)
    for name, (low, high) in NUMBER_BOUNDS.items():
        if name in out and not (name == "parameters" and out[name] is None):
            out[name] = number(out[name], field=name, low=low, high=high)
    return out


def release_set_license(
    *, actor: Actor, release: ModelRelease, license: License, mode: str | None = None
) -> ModelRelease:
    """Move a release to a license version (and choose whether holders re-consent or are reviewed again).
    From then on every channel refuses holders on an older version with `license_update` until they accept."""
    require_release_manager(actor)
    changes = {"license": license}
    if mode is not None:
        changes["license_update_mode"] = mode
    return release_update(actor=actor, release=release, changes=changes)


def release_create(*, actor: Actor, fields: dict) -> ModelRelease:
    require_reviewer(actor)
    if fields.get("access") == ModelRelease.Access.GATED and fields.get("license") is None:
        raise ServiceError(_("A gated release needs a license."), "license_required", field="license")
    fields = _bounded(fields)
    with transaction.atomic():
        release = ModelRelease.objects.create(**fields)
        audit(
            actor=actor,
            action="release.created",
            target=release,
            data={name: _plain(getattr(release, name)) for name in ("access", "published", "license")},
        )
    return release


def _plain(value):
    if isinstance(value, License):
        return f"{value.slug}@{value.version}"
    return value
