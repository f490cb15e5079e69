"""Releases and their files. Switching access, publishing and registering files are audited changes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from django.db import transaction
from django.utils.translation import gettext as _

from .. import selectors
from ..models import License, ModelFile, ModelRelease
from .audit import audit
from .base import Actor, ServiceError, require_reviewer

# What an audited change may set; the repo id and revision are not changed this way.
EDITABLE_FIELDS = (
    "access",
    "published",
    "license",
    "approval_mode",
    "auto_approve_domains",
    "display_name",
    "parameters",
    "description",
)


def release_compute_revision(*, release: ModelRelease) -> str:
    """A stable 40-hex id for the release's content: changes whenever a file is added, removed or changed."""
    # A git-style 40-hex id (what Hugging Face clients expect as a revision), not a security boundary.
    digest = hashlib.sha1(f"{release.repo_id}\n".encode(), usedforsecurity=False)
    for path, size, sha in release.files.order_by("path").values_list("path", "size", "sha256"):
        digest.update(f"{path}\0{size}\0{sha}\n".encode())
    return digest.hexdigest()


def release_refresh_revision(*, release: ModelRelease) -> ModelRelease:
    revision = release_compute_revision(release=release)
    if revision != release.revision:
        release.revision = revision
        release.save(update_fields=["revision", "updated_at"])
    return release


def release_upsert_file(
    *,
    release: ModelRelease,
    path: str,
    size: int,
    sha256: str,
    storage_key: str,
    actor: Actor | None = None,
    piece_size: int = 0,
    pieces: Sequence[str] = (),
) -> bool:
    """Record a file; returns True when it was new or changed (and then audits it when an actor is given).

    Piece hashes come from the same pass as sha256. They are stored with a new or changed file, or one that
    had none yet, and otherwise kept: a published file's pieces never change under a client."""
    if selectors.clean_file_path(path) is None:
        raise ServiceError(_("Invalid file path: %(path)s") % {"path": path}, "invalid_path")
    if piece_size and len(pieces) != -(-size // piece_size):
        raise ServiceError(_("The piece hashes do not cover the file."), "invalid_pieces")
    joined = "".join(pieces) if piece_size else ""
    obj, created = ModelFile.objects.get_or_create(
        release=release,
        path=path,
        defaults={
            "size": size,
            "sha256": sha256,
            "storage_key": storage_key,
            "piece_size": piece_size,
            "pieces": joined,
        },
    )
    changed = created
    if not created and (obj.size, obj.sha256, obj.storage_key) != (size, sha256, storage_key):
        obj.size, obj.sha256, obj.storage_key = size, sha256, storage_key
        obj.piece_size, obj.pieces = piece_size, joined
        obj.save(update_fields=["size", "sha256", "storage_key", "piece_size", "pieces", "updated_at"])
        changed = True
    elif not created and piece_size and not obj.piece_size:
        obj.piece_size, obj.pieces = piece_size, joined
        obj.save(update_fields=["piece_size", "pieces", "updated_at"])
    if changed and actor is not None:
        audit(
            actor=actor,
            action="release.file_added" if created else "release.file_changed",
            target=release,
            data={"path": path, "size": size, "sha256": sha256, "piece_size": piece_size},
        )
    return changed


def release_update(*, actor: Actor, release: ModelRelease, changes: dict) -> ModelRelease:
    """Change a release (open or gated, published, license, approval mode, its descriptive fields), audited
    with the values before and after. Only reviewers, the admin site and commands may."""
    require_reviewer(actor)
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ServiceError(_("These fields cannot be changed here: %(f)s") % {"f": ", ".join(sorted(unknown))})
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
    return locked


def release_create(*, actor: Actor, fields: dict) -> ModelRelease:
    require_reviewer(actor)
    if fields.get("access") == ModelRelease.Access.GATED and fields.get("license") is None:
        raise ServiceError(_("A gated release needs a license."), "license_required", field="license")
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
