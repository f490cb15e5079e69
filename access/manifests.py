"""Render a list of signed file entries in the formats download tools read."""

from __future__ import annotations

import json

FORMATS = {
    "json": "application/json",
    "aria2": "text/plain; charset=utf-8",
    "wget": "text/plain; charset=utf-8",
    "sha256sum": "text/plain; charset=utf-8",
}
FILENAMES = {"json": "manifest.json", "aria2": "manifest.aria2", "wget": "manifest.wget", "sha256sum": "SHA256SUMS"}


def render(fmt: str, *, repo_id: str, revision: str, expires_at: str, entries: list[dict]) -> str:
    """entries: [{path, size, sha256, url, wget_url?}] ordered by path. Every format names its revision (as a
    comment where the format has them; a wget list cannot, so the response's X-Revision header does)."""
    if fmt == "json":
        return json.dumps(
            {
                "repo_id": repo_id,
                "revision": revision,
                "expires_at": expires_at,
                "files": [{k: e[k] for k in ("path", "size", "sha256", "url")} for e in entries],
            }
        )
    if fmt == "aria2":
        # aria2c -i: each URI line is followed by its indented options; it verifies the checksum itself.
        return f"# {repo_id} revision {revision}\n" + "".join(
            f"{e['url']}\n  out={e['path']}\n  checksum=sha-256={e['sha256']}\n" for e in entries
        )
    if fmt == "wget":
        # wget -i names each file after the last segment of its URL, so these URLs end in the file name.
        return "".join(f"{e.get('wget_url') or e['url']}\n" for e in entries)
    if fmt == "sha256sum":
        return f"# {repo_id} revision {revision}\n" + "".join(f"{e['sha256']}  {e['path']}\n" for e in entries)
    raise ValueError(fmt)
