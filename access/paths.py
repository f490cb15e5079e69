"""What a file path or a revision named from outside may be."""

from __future__ import annotations

import re

MAIN = "main"
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f\\]")


def hex_id(name: str = "public_id") -> str:
    """A URL pattern's group for an unguessable id (32 hex digits, as every public id is)."""
    return rf"(?P<{name}>[0-9a-f]{{32}})"


# URL pattern groups: a public id, and an institution's ROR id (0, six letters or digits, two check digits).
PUBLIC_ID = hex_id()
ROR_ID = r"(?P<ror_id>0[a-z0-9]{6}[0-9]{2})"


def clean_file_path(path: str) -> str | None:
    """The path as stored, or None for anything that could escape the release or a manifest line: `..` or `.`
    segments, empty segments, absolute paths, backslashes, NUL and other control characters."""
    if not path or UNSAFE_PATH.search(path) or any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return path
