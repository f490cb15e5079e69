"""Turning an allowed download into signed URLs: shared by the API, the HF-compatible endpoints and the web."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.core import signing
from django.urls import reverse

from .models import ModelFile, ModelRelease
from .storage import get_storage

RELAY_SALT = "access.downloads.relay"


def signed_file_url(file: ModelFile, *, base_url: str | None = None, ttl: int | None = None) -> str:
    return get_storage().signed_url(
        file.storage_key, filename=file.path.rsplit("/", 1)[-1], ttl=ttl or settings.SIGNED_URL_TTL, base_url=base_url
    )


def relay_url(file_id: int, path: str, *, user_id: int | None, base_url: str) -> str:
    """A portal URL ending in the file name that redirects to a fresh signed URL, for tools that name files
    after the URL (wget). It checks the user's access again when followed, so a revocation takes effect."""
    ticket = signing.dumps([file_id, user_id or 0], salt=RELAY_SALT, compress=True)
    return base_url.rstrip("/") + reverse("download-relay", kwargs={"ticket": ticket, "path": path})


def relay_open(ticket: str, *, max_age: int) -> tuple[int, int | None] | None:
    try:
        file_id, user_id = signing.loads(ticket, salt=RELAY_SALT, max_age=max_age)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return int(file_id), (int(user_id) or None)


def manifest_entries(
    release: ModelRelease,
    *,
    base_url: str,
    ttl: int | None = None,
    user_id: int | None = None,
    wget: bool = False,
    urls: bool = True,
) -> tuple[list[dict], str]:
    """Entries for every file of the release, signed unless urls=False, and their expiry as ISO 8601."""
    ttl = ttl or settings.SIGNED_URL_TTL
    expires_at = (
        datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + ttl, UTC).isoformat().replace("+00:00", "Z")
    )
    rows = list(release.files.order_by("path").values_list("pk", "path", "size", "sha256", "storage_key"))
    entries = [{"path": path, "size": size, "sha256": sha} for _, path, size, sha, _ in rows]
    if not urls:
        return entries, expires_at
    signed = get_storage().signed_urls(
        [(key, path.rsplit("/", 1)[-1]) for _, path, _, _, key in rows], ttl=ttl, base_url=base_url
    )
    for entry, url, (pk, path, *_) in zip(entries, signed, rows, strict=True):
        entry["url"] = url
        if wget and "?" in url:
            entry["wget_url"] = relay_url(pk, path, user_id=user_id, base_url=base_url)
    return entries, expires_at
