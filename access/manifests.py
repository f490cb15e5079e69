"""Render a list of signed file entries in the formats download tools read."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

FORMATS = {
    "json": "application/json",
    "aria2": "text/plain; charset=utf-8",
    "wget": "text/plain; charset=utf-8",
    "sha256sum": "text/plain; charset=utf-8",
    "metalink": "application/metalink4+xml",
}
FILENAMES = {
    "json": "manifest.json",
    "aria2": "manifest.aria2",
    "wget": "manifest.wget",
    "sha256sum": "SHA256SUMS",
    "metalink": "manifest.meta4",
}
# Formats that carry each file's piece hashes (so a client can re-fetch a single bad piece).
WITH_PIECES = {"json", "metalink"}
METALINK_NS = "urn:ietf:params:xml:ns:metalink"


def render(
    fmt: str, *, repo_id: str, revision: str, expires_at: str, entries: list[dict], advisories: list[dict] | None = None
) -> str:
    """entries: [{path, size, sha256, url, wget_url?, pieces?: {length, sha256: [...]},
    urls?: [{mirror, url, priority, location}]}] ordered by path. Every format names its revision (as a
    comment where the format has them; a wget list cannot, so the response's X-Revision header does), and the
    advisories on it ([{id, severity, title, url, acknowledged}]): a field in JSON, a comment line per advisory
    in the others that have comments (a wget list: the response's X-Advisories header)."""
    advisories = advisories or []
    if fmt == "json":
        return json.dumps(
            {
                "repo_id": repo_id,
                "revision": revision,
                "expires_at": expires_at,
                "advisories": advisories,
                "files": [_json(e) for e in entries],
            }
        )
    notes = "".join(f"# {comment_line(a)}\n" for a in advisories)
    if fmt == "aria2":
        # aria2c -i: each URI line is followed by its indented options; it verifies the checksum itself.
        return (
            f"# {repo_id} revision {revision}\n"
            + notes
            + "".join(f"{e['url']}\n  out={e['path']}\n  checksum=sha-256={e['sha256']}\n" for e in entries)
        )
    if fmt == "wget":
        # wget -i names each file after the last segment of its URL, so these URLs end in the file name.
        return "".join(f"{e.get('wget_url') or e['url']}\n" for e in entries)
    if fmt == "sha256sum":
        return f"# {repo_id} revision {revision}\n" + notes + "".join(f"{e['sha256']}  {e['path']}\n" for e in entries)
    if fmt == "metalink":
        return _metalink(repo_id, revision, entries, advisories)
    raise ValueError(fmt)


def _json(entry: dict) -> dict:
    out = {k: entry[k] for k in ("path", "size", "sha256", "url")}
    if entry.get("pieces"):
        out["pieces"] = entry["pieces"]
    if len(entry.get("urls", ())) > 1:
        out["urls"] = entry["urls"]
    return out


def comment_line(advisory: dict) -> str:
    """One advisory as a line of text (no line breaks: titles are one line)."""
    state = "acknowledged" if advisory.get("acknowledged") else "not acknowledged"
    title = " ".join(str(advisory["title"]).split())
    return f"ADVISORY {advisory['id']} ({advisory['severity']}, {state}): {title} {advisory['url']}"


def _metalink(repo_id: str, revision: str, entries: list[dict], advisories: list[dict] | None = None) -> str:
    """Metalink 4 (RFC 5854): per file its name, size, SHA-256, piece hashes and one URL per location.
    aria2c -M verifies each piece as it arrives and fetches a bad one again, from another URL if it must."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<metalink xmlns="{METALINK_NS}">\n',
        "  <generator>model-access-portal</generator>\n",
    ]
    for advisory in advisories or []:
        out.append(f"  <!-- {escape(comment_line(advisory)).replace('--', '- -')} -->\n")
    for e in entries:
        out.append(f"  <file name={quoteattr(e['path'])}>\n")
        out.append(f"    <identity>{escape(repo_id)}</identity>\n    <version>{escape(revision)}</version>\n")
        out.append(f"    <size>{e['size']}</size>\n")
        out.append(f'    <hash type="sha-256">{e["sha256"]}</hash>\n')
        pieces = e.get("pieces")
        if pieces and pieces["sha256"]:
            out.append(f'    <pieces length="{pieces["length"]}" type="sha-256">\n')
            out.extend(f"      <hash>{digest}</hash>\n" for digest in pieces["sha256"])
            out.append("    </pieces>\n")
        for url in e["urls"]:
            where = f" location={quoteattr(url['location'])}" if url.get("location") else ""
            out.append(f'    <url{where} priority="{url["priority"]}">{escape(url["url"])}</url>\n')
        out.append("  </file>\n")
    out.append("</metalink>\n")
    return "".join(out)
