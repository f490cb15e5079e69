"""Tracing a leaked copy of a marked release to the people whose codewords explain it.

Each file of the copy is read in one of two ways. By its hash: a marked variant's SHA-256 names its file and
variant (FileVariant). By its values, when the hash matches no variant (the copy was re-saved with other metadata,
its files renamed, or its tensors regrouped into other files): the keyed positions of each marked file
(access.marking.positions, from MARKING_KEY and the original's SHA-256) are looked up by tensor name in the copy's
tensors, wherever they are, and compared with the original's values; the variant whose positions are flipped (and
no other's) is the one the copy holds.

Every holder's codeword is then computed (access.marking.marks_for) and compared with the variants observed.
Model: an innocent holder's codeword is independent of the copy, and each of its marked files holds each of the
file's V variants with probability 1/V (HMAC-SHA256 output); so the number of the n observed files an innocent
holder agrees on is a sum of independent Bernoulli(1/V_i) (binomial when every V is equal), and the chance they
agree on at least a files is that distribution's exact upper tail. A holder is named only when that chance is below
CONFIDENCE (10^-6).

Nothing here checks who asks or audits: access.services.traces does. Results never hold a codeword or a variant
number, only counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import marking
from .models import FileVariant, LabSeat, MarkingCodeword, ModelFile, ModelRelease, ReleaseRevision, User
from .storage import LocalStorage, get_storage

CONFIDENCE = 1e-6
# A file is read by values only when at least this many of a variant's positions were found in the copy, and it
# holds a variant only when at least this share of that variant's positions are flipped and of every other
# variant's are not.
MIN_POSITIONS = 8
AGREEMENT = 0.9
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Observed:
    """One file of the copy: its name, SHA-256, and where its bytes are (None: only its hash is known)."""

    name: str
    sha256: str
    path: Path | None = None


@dataclass
class FileReading:
    name: str  # the copy's file (by values: the copy's files the tensors were found in)
    path: str = ""  # the release's file it is
    how: str = ""  # "hash" or "values"
    state: str = ""  # "marked", "unmarked", "original", "unreadable", "foreign"
    variant: int | None = field(default=None, repr=False)  # never leaves this module


def upper_tail(probabilities: list[float], at_least: int) -> float:
    """P(at least `at_least` of independent events with these probabilities happen): the Poisson-binomial upper
    tail (the binomial tail when all are equal), by the exact recurrence over the distribution of the count (no
    normal or Poisson approximation; floating point keeps tails far below 10^-6 accurate)."""
    dist = [1.0]
    for q in probabilities:
        new = [0.0] * (len(dist) + 1)
        for k, mass in enumerate(dist):
            new[k] += mass * (1 - q)
            new[k + 1] += mass * q
        dist = new
    return min(1.0, sum(dist[max(0, at_least) :]))


# --- Reading the copy ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _local_files():
    """A reader of stored objects as local paths (downloaded to a temporary directory when the storage is not
    local), cleaned up on exit."""
    storage = get_storage()
    with tempfile.TemporaryDirectory(prefix="trace-") as tmp:
        cache: dict[str, Path] = {}

        def local(key: str) -> Path:
            if isinstance(storage, LocalStorage):
                return storage.path(key)
            if key not in cache:
                target = Path(tmp) / str(len(cache))
                with storage.open(key) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
                cache[key] = target
            return cache[key]

        yield local


def _tensors_of(observed: list[Observed]) -> dict[str, tuple[str, marking.Tensor]]:
    """tensor name -> (the copy's file name, the tensor), over every safetensors file of the copy."""
    found: dict[str, tuple[str, marking.Tensor]] = {}
    for item in observed:
        if item.path is None:
            continue
        try:
            _length, tensors = marking.read_header(item.path)
        except (marking.MarkingError, OSError, KeyError, TypeError, ValueError):
            continue
        for tensor in tensors:
            found.setdefault(tensor.name, (str(item.path), tensor))
    return found


def _names(observed: list[Observed]) -> dict[str, str]:
    return {str(o.path): o.name for o in observed if o.path is not None}


def _elements(original: Path, variant0: Path, chosen: list[marking.Position]) -> int | None:
    """K, read back from the stored variant 0: it flips the first K positions of the keyed sequence."""
    with open(original, "rb") as a, open(variant0, "rb") as b:
        for i, p in enumerate(chosen):
            if os.pread(a.fileno(), p.size, p.offset) == os.pread(b.fileno(), p.size, p.offset):
                return i or None
    return None


def _sequence(original: Path, file: ModelFile, variant0: Path) -> tuple[list[marking.Position], int] | None:
    """The keyed positions of the file, in order, and K: variant v flips positions [vK, (v+1)K)."""
    guess = marking.DEFAULT_ELEMENTS
    while guess <= 1 << 16:
        try:
            chosen = marking.positions(original, sha256=file.sha256, variants=1, elements=guess * file.mark_variants)[0]
        except marking.MarkingError:
            return None
        k = _elements(original, variant0, chosen)
        if k is not None and k * file.mark_variants <= len(chosen):
            return chosen, k
        guess *= 4
    return None


def _read_values(
    file: ModelFile, tensors: dict[str, tuple[str, marking.Tensor]], local
) -> tuple[str, int | None, list[str]]:
    """(state, variant, the copy's files read) of one marked file, from the values at its keyed positions."""
    variant0 = file.variants.filter(variant=0).first()
    if variant0 is None:
        return "unreadable", None, []
    original = local(file.storage_key)
    found = _sequence(original, file, local(variant0.storage_key))
    if found is None:
        return "unreadable", None, []
    chosen, k = found
    flipped, same, seen = [0] * file.mark_variants, [0] * file.mark_variants, [0] * file.mark_variants
    used: set[str] = set()
    handles: dict[str, int] = {}
    try:
        with open(original, "rb") as orig:
            for v in range(file.mark_variants):
                for p in chosen[v * k : (v + 1) * k]:
                    where = tensors.get(p.tensor)
                    if where is None:
                        continue
                    copy_path, tensor = where
                    if marking.FLOATS[tensor.dtype][0] != p.size or p.index >= tensor.count:
                        continue
                    if copy_path not in handles:
                        handles[copy_path] = os.open(copy_path, os.O_RDONLY)
                    mine = os.pread(handles[copy_path], p.size, tensor.start + p.index * p.size)
                    theirs = os.pread(orig.fileno(), p.size, p.offset)
                    if len(mine) != p.size:
                        continue
                    used.add(copy_path)
                    seen[v] += 1
                    if mine == theirs:
                        same[v] += 1
                    elif mine[0] ^ theirs[0] == 1 and mine[1:] == theirs[1:]:
                        flipped[v] += 1
    finally:
        for fd in handles.values():
            os.close(fd)
    if min(seen) < MIN_POSITIONS:
        return ("unreadable" if any(seen) else "absent"), None, sorted(used)
    if all(same[v] >= AGREEMENT * seen[v] for v in range(file.mark_variants)):
        return "original", None, sorted(used)
    held = [
        v
        for v in range(file.mark_variants)
        if flipped[v] >= AGREEMENT * seen[v]
        and all(same[u] >= AGREEMENT * seen[u] for u in range(file.mark_variants) if u != v)
    ]
    if len(held) == 1:
        return "marked", held[0], sorted(used)
    return "unreadable", None, sorted(used)


# --- The trace ----------------------------------------------------------------------------------------------


@dataclass
class Trace:
    status: str  # "match", "no_confident_match", "unmarked", "foreign"
    release: ModelRelease | None = None
    revision: ReleaseRevision | None = None
    files: list[FileReading] = field(default_factory=list)
    marked: int = 0  # marked files in the revision
    observed: int = 0  # marked files whose variant was read
    holders: int = 0
    candidates: list[dict] = field(default_factory=list)
    best: dict | None = None  # what the closest holder agreed on, when no one is named

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "release": self.release.repo_id if self.release else None,
            "revision": self.revision.sha if self.revision else None,
            "marked_files": self.marked,
            "observed": self.observed,
            "holders": self.holders,
            "confidence": CONFIDENCE,
            "files": [{"name": f.name, "path": f.path, "how": f.how, "state": f.state} for f in self.files],
            "candidates": self.candidates,
            "closest": self.best,
        }

    def fingerprint(self) -> str:
        """A keyed digest of the result (the audit log's record of it): equal results, equal fingerprints."""
        body = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return marking._hmac(marking.marking_key(), "trace", body).hex()[:32]


def _revision_of(files: list[ModelFile]) -> ReleaseRevision | None:
    counts = Counter(f.revision_id for f in files if f.revision_id)
    if not counts:
        return None
    best = max(counts.values())
    return (
        ReleaseRevision.objects.filter(pk__in=[r for r, n in counts.items() if n == best]).order_by("-number").first()
    )


def _people(release: ModelRelease, user_ids: list[int]) -> dict[int, dict]:
    """Each named person's grants and lab seats in the release."""
    out: dict[int, dict] = {uid: {"grants": [], "seats": []} for uid in user_ids}
    for grant in release.grants.filter(user_id__in=user_ids, lab__isnull=True).order_by("issued_at"):
        out[grant.user_id]["grants"].append(
            {
                "id": grant.public_id,
                "issued_at": grant.issued_at.isoformat(),
                "expires_at": grant.expires_at.isoformat(),
                "revoked": grant.revoked_at is not None,
            }
        )
    seats = LabSeat.objects.filter(user_id__in=user_ids, grant__release=release).select_related("grant__lab")
    for seat in seats.order_by("created_at"):
        out[seat.user_id]["seats"].append(
            {"id": seat.public_id, "lab": seat.grant.lab.name if seat.grant.lab else "", "status": seat.status}
        )
    return out


def rank(agree: np.ndarray, users: list[int], variants: list[int]) -> tuple[list[tuple[int, int, int, float]], dict]:
    """The rule, on its inputs alone: `agree[h, i]` says whether holder `users[h]`'s codeword agrees with the copy on
    observed file i, which has `variants[i]` variants. Names, one after another, first whoever agrees with most of the
    copy, then whoever agrees with most of the files the people named so far do not explain (a copy mixed from
    several people's files), while the chance that any innocent holder agrees as much stays below CONFIDENCE; ties
    go to the smaller user id. Returns [(holder index, agreement on the files left, files left, chance)] and, when
    no one is named, what the closest holder agreed on."""
    holders, observed = agree.shape
    remaining = np.ones(observed, dtype=bool)
    done = np.zeros(holders, dtype=bool)
    ids = np.asarray(users, dtype=np.int64)
    named: list[tuple[int, int, int, float]] = []
    closest: dict = {}
    while remaining.any() and len(named) < holders:
        counts = agree[:, remaining].sum(axis=1)
        counts[done] = -1
        best = int(counts.max())
        row = int(np.flatnonzero(counts == best)[np.argmin(ids[counts == best])])
        left = int(remaining.sum())
        tail = upper_tail([1 / variants[i] for i in np.flatnonzero(remaining)], best)
        if not best or min(1.0, tail * holders) >= CONFIDENCE:
            if not named:
                closest = {
                    "agree": best,
                    "observed": observed,
                    "chance": tail,
                    "any_innocent": min(1.0, tail * holders),
                }
            break
        named.append((row, best, left, tail))
        done[row] = True
        remaining &= ~agree[row]
    return named, closest


def _rank(trace: Trace, readings: dict[str, tuple[int, int]]) -> None:
    """Compare every holder's codeword with the variants read ({path: (variant, V)}) and name the holders who
    explain the copy (`rank`). Each holder's codeword is computed once, as one row of variants, and compared with
    the copy all at once."""
    release = trace.release
    holders = list(MarkingCodeword.objects.filter(release=release).values_list("user_id", "attempt"))
    trace.holders = len(holders)
    items = sorted(readings.items())
    files = [(path.encode(), v) for path, (_variant, v) in items]
    seen = np.array([variant for _path, (variant, _v) in items], dtype=np.int64)
    release_id = release.pk
    codes = np.array(
        [marking.marks_for(release_id=release_id, user_id=uid, attempt=n).variants(files) for uid, n in holders],
        dtype=np.int64,
    ).reshape(len(holders), len(items))
    agree = codes == seen
    users = [uid for uid, _attempt in holders]
    named, closest = rank(agree, users, [v for _path, (_variant, v) in items])
    if not named:
        trace.best = closest or None
    total = agree.sum(axis=1)
    ids = [users[row] for row, *_rest in named]
    people = _people(release, ids)
    accounts = User.objects.in_bulk(ids)
    for row, explains, of, tail in named:
        uid = users[row]
        trace.candidates.append(
            {
                "user": accounts[uid].email,
                "agree": int(total[row]),
                "observed": len(items),
                "explains": explains,
                "of": of,
                "chance": tail,
                "any_innocent": min(1.0, tail * len(holders)),
                **people[uid],
            }
        )
    trace.status = "match" if trace.candidates else "no_confident_match"


def trace(observed: list[Observed]) -> Trace:
    """Read the copy, find its release and revision, and rank the holders whose codewords explain it."""
    hashes = {o.sha256 for o in observed}
    variants = {
        fv.sha256: fv
        for fv in FileVariant.objects.filter(sha256__in=hashes).select_related("file__release", "file__revision")
    }
    plain = {}
    for f in ModelFile.objects.filter(sha256__in=hashes, revision__isnull=False).select_related("release"):
        plain.setdefault(f.sha256, f)
    matched = [variants[h].file for h in hashes if h in variants] + [plain[h] for h in hashes if h in plain]
    release_counts = Counter(f.release_id for f in matched)
    release = ModelRelease.objects.get(pk=release_counts.most_common(1)[0][0]) if release_counts else None
    revision = _revision_of([f for f in matched if f.release_id == release.pk]) if release else None

    readings: dict[str, tuple[int, int]] = {}  # release path -> (variant, V)
    files: list[FileReading] = []
    unread: list[Observed] = []
    for o in observed:
        if o.sha256 in variants and (release is None or variants[o.sha256].file.release_id == release.pk):
            fv = variants[o.sha256]
            readings.setdefault(fv.file.path, (fv.variant, fv.file.mark_variants))
            files.append(FileReading(o.name, fv.file.path, "hash", "marked", fv.variant))
        elif o.sha256 in plain and plain[o.sha256].release_id == (release.pk if release else None):
            f = plain[o.sha256]
            files.append(FileReading(o.name, f.path, "hash", "original" if f.mark_variants else "unmarked"))
        else:
            unread.append(o)

    # By values: the marked files not read by hash, in the release found (or every marked release's main revision).
    if any(o.path is not None for o in unread):
        tensors = _tensors_of(unread)
        names = _names(unread)
        if revision is not None:
            candidates = ModelFile.objects.filter(revision=revision, mark_variants__gt=0)
        else:
            candidates = ModelFile.objects.filter(
                release__marking=True, revision__isnull=False, mark_variants__gt=0
            ).select_related("release", "revision")
            candidates = [f for f in candidates if f.revision_id == f.release.main_revision_id]
        read_names: set[str] = set()
        with _local_files() as local:
            for f in candidates:
                if f.path in readings or (release is not None and f.release_id != release.pk):
                    continue
                try:
                    _length, theirs = marking.read_header(local(f.storage_key))
                except (marking.MarkingError, OSError):
                    continue
                if not any(t.name in tensors for t in theirs):
                    continue
                state, variant, used = _read_values(f, tensors, local)
                if state == "absent":
                    continue
                if release is None:
                    release, revision = f.release, f.revision
                if f.release_id != release.pk:
                    continue
                label = ", ".join(names.get(u, u) for u in used)
                files.append(FileReading(label, f.path, "values", state, variant))
                read_names.update(names.get(u, u) for u in used)
                if variant is not None:
                    readings[f.path] = (variant, f.mark_variants)
        unread = [o for o in unread if o.name not in read_names]
    for o in unread:
        files.append(FileReading(o.name, "", "hash", "foreign"))

    result = Trace("foreign", release=release, revision=revision, files=files)
    if release is None:
        return result
    if revision is not None:
        result.marked = ModelFile.objects.filter(revision=revision, mark_variants__gt=0).count()
    result.observed = len(readings)
    if not readings:
        result.status = "unmarked"
        return result
    _rank(result, readings)
    return result


# --- Inputs -------------------------------------------------------------------------------------------------


class BadInput(ValueError):
    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def parse_manifest(text: str) -> list[tuple[str, str]]:
    """(name, sha256) pairs of a SHA256SUMS file (`sha256sum` output) or of the portal's JSON manifest."""
    text = text.strip()
    if text.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise BadInput("not valid JSON", "trace_bad_manifest") from None
        entries = data.get("files") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise BadInput('a JSON manifest lists its files under "files"', "trace_bad_manifest")
        out = []
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("path"), str) or not isinstance(e.get("sha256"), str):
                raise BadInput("each file needs a path and a sha256", "trace_bad_manifest")
            out.append((e["path"], e["sha256"].lower()))
        return out
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = SUMS_LINE.match(line.rstrip("\r"))
        if not m:
            raise BadInput(f"line {number} is not '<sha256>  <name>'", "trace_bad_manifest")
        out.append((m.group(2), m.group(1).lower()))
    return out


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
