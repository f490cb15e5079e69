"""Tracing a leaked copy of a marked release (access.tracing): release managers only, every trace audited with
who traced what and the result's keyed fingerprint (never a codeword or a variant)."""

from __future__ import annotations

from pathlib import Path

from django.utils.translation import gettext as _

from .. import tracing
from ..audit import audit
from ..selectors import is_release_manager
from .base import Actor, ServiceError, require_role

MAX_FILES = 10_000
MAX_NAME = 500


def _check(hashes: list[tuple[str, str]], files: list[tuple[str, Path]]) -> list[tracing.Observed]:
    if not hashes and not files:
        raise ServiceError(_("Give the copy's files, their hashes or a manifest."), "trace_empty")
    if len(hashes) + len(files) > MAX_FILES:
        raise ServiceError(_("A trace reads at most %(n)d files.") % {"n": MAX_FILES}, "trace_too_many")
    observed = []
    for name, sha256 in hashes:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME or "\0" in name:
            raise ServiceError(
                _("Each file needs a name of at most %(n)d characters.") % {"n": MAX_NAME}, "trace_bad_name"
            )
        sha256 = sha256.lower() if isinstance(sha256, str) else ""
        if not tracing.SHA256.match(sha256):
            raise ServiceError(
                _("%(name)s: a SHA-256 is 64 hexadecimal digits.") % {"name": name[:100]}, "trace_bad_hash"
            )
        observed.append(tracing.Observed(name, sha256))
    for name, path in files:
        observed.append(tracing.Observed(name[:MAX_NAME], tracing.hash_file(path), Path(path)))
    return observed


def manifest_entries(text: str) -> list[tuple[str, str]]:
    """A SHA256SUMS file or a JSON manifest as (name, sha256) pairs; a clear refusal when it is neither."""
    try:
        return tracing.parse_manifest(text)
    except tracing.BadInput as exc:
        raise ServiceError(
            _("The manifest could not be read (%(why)s): give a SHA256SUMS file or the portal's JSON manifest.")
            % {"why": str(exc)},
            exc.code,
        ) from None


def copy_trace(
    *, actor: Actor, hashes: list[tuple[str, str]] = (), files: list[tuple[str, Path]] = (), source: str = ""
) -> tracing.Trace:
    """Trace a copy given by its files' names and hashes and/or the files themselves (read by values where the
    hash matches no variant). Release managers only; audited."""
    require_role(actor, holds=is_release_manager, refusal=_("Only release managers may trace a copy."))
    observed = _check(list(hashes), list(files))
    result = tracing.trace(observed)
    audit(
        actor=actor,
        action="marking.traced",
        target=result.release,
        data={
            "source": source[:200],
            "files": len(observed),
            "status": result.status,
            "release": result.release.repo_id if result.release else None,
            "observed": result.observed,
            "named": [c["user"] for c in result.candidates],
            "fingerprint": result.fingerprint(),
        },
    )
    return result
