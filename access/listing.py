"""File lists as people read them: natural order (shard2 before shard10) and groups where names have parts
(OPT-175B: 8 model parts of 124 shards each)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

DIGITS = re.compile(r"(\d+)")
# Fewer files than this that share a name pattern stay in the plain list.
GROUP_MIN = 4


def natural_key(path: str) -> tuple:
    """Sort key comparing digit runs as numbers: shard2 < shard10, part-0 < part-7."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in DIGITS.split(path))


@dataclass
class FileGroup:
    label: str
    files: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class FileListing:
    files: list
    groups: list[FileGroup]
    loose: list

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _pattern(path: str) -> tuple[str, list[str]]:
    parts = DIGITS.split(path)
    return "#".join(parts[0::2]), parts[1::2]


def file_listing(files) -> FileListing:
    """Files sorted naturally, with name patterns shared by GROUP_MIN or more files made groups. Where two numbers
    in a pattern vary (model part and shard), each value of the first is its own group."""
    ordered = sorted(files, key=lambda f: natural_key(f.path))
    by_pattern: dict[str, list] = defaultdict(list)
    for f in ordered:
        by_pattern[_pattern(f.path)[0]].append(f)
    groups: list[FileGroup] = []
    loose = []
    for members in by_pattern.values():
        if len(members) < GROUP_MIN:
            loose.extend(members)
            continue
        numbers = [_pattern(f.path)[1] for f in members]
        varying = [i for i in range(len(numbers[0])) if len({n[i] for n in numbers}) > 1]
        split_on = varying[0] if len(varying) > 1 else None
        subgroups: dict[str, list] = defaultdict(list)
        for f, nums in zip(members, numbers, strict=True):
            shown = [n if i == split_on or i not in varying else "*" for i, n in enumerate(nums)]
            texts = DIGITS.split(f.path)[0::2]
            label = texts[0] + "".join(n + t for n, t in zip(shown, texts[1:], strict=True))
            subgroups[label].append(f)
        groups.extend(FileGroup(label=label, files=fs) for label, fs in subgroups.items())
    loose.sort(key=lambda f: natural_key(f.path))
    return FileListing(files=ordered, groups=groups, loose=loose)
