"""Mirrors of a release: a configured storage location serves a release only after its copy was verified
(every file present, with the recorded size, SHA-256 and piece hashes). Verifying and disabling are audited."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..audit import audit
from ..models import FileVariant, ModelFile, ModelRelease, ReleaseMirror
from ..storage import ObjectNotFound, StorageError, get_storage
from .base import Actor, ServiceError, clean, require_reviewer

# The audit record names the first differences; the mirror's row keeps them all.
AUDITED_DIFFERENCES = 50


def _mirror_name(mirror: str) -> str:
    if mirror == settings.STORAGE_NAME:
        raise ServiceError(
            _("%(name)s is the primary storage: it always serves and is not verified against itself.")
            % {"name": mirror},
            "primary_storage",
        )
    if mirror not in settings.STORAGE_MIRRORS:
        raise ServiceError(
            _("No mirror named %(name)s is configured (STORAGE_MIRRORS: %(names)s).")
            % {"name": mirror, "names": ", ".join(settings.STORAGE_MIRRORS) or "-"},
            "unknown_mirror",
        )
    return mirror


def mirror_compare(*, file: ModelFile | FileVariant, mirror: str, path: str = "") -> dict | None:
    """How the mirror's copy of a file (or of a marked file's variant) differs from the record, or None when it
    is identical. A marked file's original is never on a mirror: its variants are (mirror_verify checks them)."""
    if isinstance(file, ModelFile) and file.mark_variants:
        for variant in file.variants.order_by("variant"):
            difference = mirror_compare(file=variant, mirror=mirror, path=f"{file.path}#{variant.variant}")
            if difference is not None:
                return difference
        return None
    path = path or file.path
    try:
        found = get_storage(mirror).hash_object(file.storage_key, piece_size=file.piece_size or None)
    except ObjectNotFound:
        return {"path": path, "problem": "missing", "expected": file.size, "found": None}
    except (StorageError, OSError) as exc:
        return {"path": path, "problem": "unreadable", "expected": None, "found": str(exc)[:300]}
    if found.size != file.size:
        return {"path": path, "problem": "size", "expected": file.size, "found": found.size}
    if file.piece_size and "".join(found.pieces) != file.pieces:
        # Which pieces differ says more than one whole-file hash (one flipped bit, or a truncated upload).
        bad = [i for i, (a, b) in enumerate(zip(file.piece_hashes, found.pieces, strict=True)) if a != b]
        return {"path": path, "problem": "pieces", "expected": None, "found": bad}
    if found.sha256 != file.sha256:
        return {"path": path, "problem": "sha256", "expected": file.sha256, "found": found.sha256}
    return None


def mirror_verify(
    *,
    actor: Actor,
    release: ModelRelease,
    mirror: str,
    progress: Callable[[ModelFile, dict | None], None] | None = None,
) -> ReleaseMirror:
    """Read every file of the release from the mirror and compare it with the record. The mirror is enabled
    for the revision verified when nothing differs; otherwise it stays (or becomes) disabled, and the result
    says which files differ. Streams the whole release from the mirror once."""
    require_reviewer(actor)
    mirror = _mirror_name(mirror)
    revision = release.revision
    files = list(release.files.order_by("path"))
    differences, checked = [], 0
    for file in files:
        difference = mirror_compare(file=file, mirror=mirror)
        if difference is None:
            checked += file.size * (file.mark_variants or 1)
        else:
            differences.append(difference)
        if progress is not None:
            progress(file, difference)
    with transaction.atomic():
        current = ModelRelease.objects.select_for_update().get(pk=release.pk)
        if current.revision != revision:
            differences.append({"path": "", "problem": "revision", "expected": revision, "found": current.revision})
        row, _created = ReleaseMirror.objects.select_for_update().get_or_create(release=current, mirror=mirror)
        row.status = ReleaseMirror.Status.FAILED if differences else ReleaseMirror.Status.ENABLED
        row.revision = revision
        row.verified_at = timezone.now()
        row.files_checked = len(files)
        row.bytes_checked = checked
        row.differences = differences
        row.save()
        audit(
            actor=actor,
            action="mirror.verification_failed" if differences else "mirror.verified",
            target=current,
            data={
                "mirror": mirror,
                "revision": revision,
                "files": len(files),
                "differences": len(differences),
                "differing": differences[:AUDITED_DIFFERENCES],
            },
        )
    return row


def mirror_disable(*, actor: Actor, release: ModelRelease, mirror: str, reason: str = "") -> ReleaseMirror:
    """Stop a mirror serving a release (until it is verified again)."""
    require_reviewer(actor)
    mirror = _mirror_name(mirror)
    reason = clean(reason, field="reason", multiline=False, max_length=500)
    with transaction.atomic():
        row, _created = ReleaseMirror.objects.select_for_update().get_or_create(release=release, mirror=mirror)
        before = row.status
        if before != ReleaseMirror.Status.DISABLED:
            row.status = ReleaseMirror.Status.DISABLED
            row.save(update_fields=["status", "updated_at"])
            audit(
                actor=actor,
                action="mirror.disabled",
                target=release,
                data={"mirror": mirror, "from": before, "reason": reason},
            )
    return row
