"""What a file path or a revision named from outside may be."""

from __future__ import annotations

import re

MAIN = "main"
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f\\]")


def clean_file_path(path: str) -> str | None:
    """The path as stored, or None for anything that could escape the release or a manifest line: `..` or `.`
    segments, empty segments, absolute paths, backslashes, NUL and other control characters."""
    if not path or UNSAFE_PATH.search(path) or any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return path
