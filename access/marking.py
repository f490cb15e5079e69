"""Marked copies: every holder of a marked release receives weights that differ from everyone else's in a few bits.

A marked weight file (safetensors) exists in V variants. Each variant flips the lowest mantissa bit of K elements of
the file's floating tensors (F32, F16, BF16), chosen pseudo-randomly with MARKING_KEY among the finite, non-zero,
normal ones, different elements for each variant; the header, shapes and dtypes stay as they are, and every changed
value moves by one unit in the last place. Tensors are read as raw integer views at the header's offsets (numpy has
no bfloat16), so the bytes written are exactly the original's but for those bits.

Each person has a codeword per release: one variant per marked file, computed from MARKING_KEY, the release, the
person and the codeword's attempt number (the first attempt whose codeword no one else in the release holds;
access.codewords records which). The variant a person receives is therefore computed on every download, never
looked up: `Marks.variant(file)`.

Nothing here touches the database. Positions and codewords come from HMAC-SHA256 alone (no random generator whose
stream a library upgrade could change), so whoever holds the key can find them again: tracing a leaked copy reads
the same positions, by tensor name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .storage import PRIVATE_PREFIX, Digest

# Where the unmarked originals are kept: never signed, never served (storage refuses to sign a key under it).
ORIGINALS_PREFIX = PRIVATE_PREFIX
DEFAULT_ELEMENTS = 64  # K: elements flipped per variant
DEFAULT_VARIANTS = 2  # V: variants per marked file
MAX_VARIANTS = 16
SUFFIX = ".safetensors"
# Weight formats marking cannot read: a release holding any of these is refused.
OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".pkl", ".npz", ".ggml")
# dtype -> (bytes per element, unsigned view, mantissa bits, exponent bits)
FLOATS = {
    "F32": (4, np.dtype("<u4"), 23, 8),
    "F16": (2, np.dtype("<u2"), 10, 5),
    "BF16": (2, np.dtype("<u2"), 7, 8),
}
CHUNK = 8 * 1024 * 1024
HEADER_MAX = 100 * 1024 * 1024


class MarkingError(ValueError):
    """A file marking cannot handle (not safetensors, no floating tensors, too few markable elements)."""


def marking_key() -> bytes:
    """MARKING_KEY as bytes; marking without one is a configuration error, never a silent fallback."""
    key = getattr(settings, "MARKING_KEY", "")
    if not key:
        raise ImproperlyConfigured(
            "MARKING_KEY (or MARKING_KEY_FILE) must be set to mark or serve marked releases; `make run` sets one."
        )
    return key.encode() if isinstance(key, str) else key


def _hmac(key: bytes, *parts: object) -> bytes:
    return hmac.new(key, "\0".join(str(p) for p in parts).encode(), hashlib.sha256).digest()


# --- The safetensors header ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    count: int  # elements


def read_header(path: Path | str) -> tuple[int, list[Tensor]]:
    """(header length, the floating tensors in file order) of a safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise MarkingError(f"{Path(path).name} is not a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= HEADER_MAX:
            raise MarkingError(f"{Path(path).name} is not a safetensors file")
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise MarkingError(f"{Path(path).name} is not a safetensors file") from None
    if not isinstance(header, dict):
        raise MarkingError(f"{Path(path).name} is not a safetensors file")
    base = 8 + length
    tensors = []
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict) or info.get("dtype") not in FLOATS:
            continue
        size = FLOATS[info["dtype"]][0]
        begin, end = info["data_offsets"]
        count = (end - begin) // size
        if count:
            tensors.append(Tensor(name, info["dtype"], tuple(info["shape"]), base + begin, count))
    tensors.sort(key=lambda t: t.start)
    return length, tensors


# --- Positions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    tensor: str
    index: int  # element index in the flattened tensor
    offset: int  # absolute byte offset in the file
    size: int  # bytes of the element


def markable(raw: int, dtype: str) -> bool:
    """Finite, non-zero and normal: the exponent field is neither all zeros nor all ones."""
    _size, _view, mantissa, exponent = FLOATS[dtype]
    field = (raw >> mantissa) & ((1 << exponent) - 1)
    return 0 < field < (1 << exponent) - 1


def positions(path: Path | str, *, sha256: str, variants: int, elements: int, key: bytes | None = None):
    """For each variant, the `elements` positions it flips: keyed by MARKING_KEY and the original's SHA-256,
    distinct across variants. Raises MarkingError when the file has too few markable elements."""
    key = key or marking_key()
    _length, tensors = read_header(path)
    if not tensors:
        raise MarkingError(f"{Path(path).name} has no F32, F16 or BF16 tensor to mark")
    ends = np.cumsum([t.count for t in tensors])
    total = int(ends[-1])
    wanted = variants * elements
    chosen: list[Position] = []
    seen: set[int] = set()
    counter = 0
    with open(path, "rb") as f:
        fd = f.fileno()
        while len(chosen) < wanted:
            if counter > 64 * wanted + 1024:
                raise MarkingError(f"{Path(path).name} has too few finite, non-zero, normal elements to mark")
            block = _hmac(key, "positions", sha256, counter)
            counter += 1
            for i in range(0, 32, 8):
                pick = int.from_bytes(block[i : i + 8], "big") % total
                if pick in seen:
                    continue
                seen.add(pick)
                which = int(np.searchsorted(ends, pick, side="right"))
                t = tensors[which]
                index = pick - (int(ends[which]) - t.count)
                size = FLOATS[t.dtype][0]
                offset = t.start + index * size
                raw = int.from_bytes(os.pread(fd, size, offset), "little")
                if markable(raw, t.dtype):
                    chosen.append(Position(t.name, index, offset, size))
                    if len(chosen) == wanted:
                        break
    return [chosen[v * elements : (v + 1) * elements] for v in range(variants)]


# --- Writing variants ---------------------------------------------------------------------------------------


def _write_variant(src: Path, dst: Path, flips: list[Position], original: Digest) -> Digest:
    """Copy src to dst flipping the lowest bit of each position; hash the whole and the pieces that changed (the
    others are the original's)."""
    by_chunk: dict[int, list[Position]] = {}
    for p in flips:
        by_chunk.setdefault(p.offset // CHUNK, []).append(p)
    whole = hashlib.sha256()
    size = 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        number = 0
        while chunk := f.read(CHUNK):
            if number in by_chunk:
                chunk = bytearray(chunk)
                for p in by_chunk[number]:
                    chunk[p.offset - number * CHUNK] ^= 1  # little-endian: the lowest mantissa bit is in byte 0
            out.write(chunk)
            whole.update(chunk)
            size += len(chunk)
            number += 1
    pieces = list(original.pieces)
    piece_size = original.piece_size
    if piece_size:
        with open(dst, "rb") as f:
            for index in sorted({p.offset // piece_size for p in flips}):
                f.seek(index * piece_size)
                pieces[index] = hashlib.sha256(f.read(piece_size)).hexdigest()
    return Digest(size, whole.hexdigest(), piece_size, tuple(pieces))


def mark_file(
    src: Path | str,
    outputs: list[Path],
    *,
    original: Digest,
    elements: int = DEFAULT_ELEMENTS,
    key: bytes | None = None,
) -> list[Digest]:
    """Write len(outputs) variants of the safetensors file `src` (whose Digest, with pieces, is `original`) and
    return each variant's Digest. The variants are written and hashed in parallel, one thread each (hashlib and
    file writes release the GIL)."""
    src = Path(src)
    flips = positions(src, sha256=original.sha256, variants=len(outputs), elements=elements, key=key)
    with ThreadPoolExecutor(max_workers=min(len(outputs), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda i: _write_variant(src, outputs[i], flips[i], original), range(len(outputs))))


# --- Codewords ----------------------------------------------------------------------------------------------


_BLOCK = hashlib.sha256().block_size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@dataclass(frozen=True)
class Marks:
    """A person's codeword in one release: which variant of each marked file they receive."""

    seed: bytes

    def variant(self, path: str, variants: int) -> int:
        return self.variants([(path.encode(), variants)])[0]

    def variants(self, files: list[tuple[bytes, int]]) -> list[int]:
        """The variant of each (path as UTF-8 bytes, variants): the first 8 bytes of HMAC-SHA256(seed, path), big
        endian, modulo variants. HMAC is computed by its definition (RFC 2104) from the seed's two padded SHA-256
        states, copied for each file: the same bytes as `hmac.new(seed, path, "sha256")` at less than half its cost
        (a trace computes one per holder and file read)."""
        key = self.seed if len(self.seed) <= _BLOCK else hashlib.sha256(self.seed).digest()
        key = key.ljust(_BLOCK, b"\0")
        inner, outer = hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))
        out = []
        for path, v in files:
            digest = inner.copy()
            digest.update(path)
            mac = outer.copy()
            mac.update(digest.digest())
            out.append(int.from_bytes(mac.digest()[:8], "big") % v)
        return out


def marks_for(*, release_id: int, user_id: int, attempt: int) -> Marks:
    return Marks(_hmac(marking_key(), "codeword", release_id, user_id, attempt))


def fingerprint(*, release_id: int, marks: Marks, files: list[tuple[str, int]]) -> str:
    """What the audit log and the codeword's record keep: a keyed digest of the codeword over the marked files
    (path, variants) — equal for two people exactly when their codewords are, and telling nothing without the key."""
    vector = ",".join(f"{path}={marks.variant(path, v)}" for path, v in sorted(files))
    return _hmac(marking_key(), "fingerprint", release_id, vector).hex()[:32]


def variant_key(*, repo_id: str, sha256: str, variant: int, path: str) -> str:
    """Where a variant is stored: beside no original (those are under ORIGINALS_PREFIX), named by the original's
    contents so a file kept across revisions keeps its variants, and ending in the file's name."""
    return f"{repo_id}/marked/{sha256[:32]}/{variant}/{path}"


def original_key(*, repo_id: str, path: str, number: int = 0) -> str:
    base = f"{ORIGINALS_PREFIX}{repo_id}/"
    return f"{base}revisions/{number}/{path}" if number else f"{base}{path}"


def is_private(key: str) -> bool:
    return key.startswith(ORIGINALS_PREFIX)
