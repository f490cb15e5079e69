"""Benchmark: marking a safetensors shard against `sha256sum` over the same bytes, in one run.

Run from the repository root (no database, no Django setup):

    .venv/bin/python bench/bench_marking.py [--size-mib 512] [--variants 2] [--rounds 5]

A shard of F16 and BF16 tensors (normal values, std 0.02) is written to a temporary directory and read once, so both
sides read from the page cache. Each round then times, alternately, `sha256sum` of the shard and
`access.marking.mark_file` writing and hashing every variant (its whole SHA-256 and the pieces its flips touch;
the original's piece hashes come from registering the original, which streams it once anyway). The figure is the
median of the per-round ratios sha256sum time / marking time; the goal is at least 0.4.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from access import marking
from access.catalog_data import safetensors_bytes
from access.storage import Hasher

GOAL = 0.4
KEY = b"bench-marking-key-0123456789abcdef"
PIECE = 16 * 1024 * 1024


def write_shard(path: Path, size_mib: int) -> None:
    """Half F16, half BF16, in tensors of 32 MiB."""
    rng = np.random.default_rng(1)
    tensors = []
    elements = 16 * 1024 * 1024  # 32 MiB of 2-byte values
    for i in range(max(2, size_mib // 32)):
        values = rng.normal(0.0, 0.02, size=elements).astype(np.float32)
        if i % 2:
            data = (values.view("<u4") >> 16).astype("<u2").tobytes()
            tensors.append((f"layers.{i}.weight", "BF16", (4096, elements // 4096), data))
        else:
            tensors.append((f"layers.{i}.weight", "F16", (4096, elements // 4096), values.astype("<f2").tobytes()))
    with open(path, "wb") as f:
        f.write(safetensors_bytes(tensors))


def digest_of(path: Path):
    hasher = Hasher(PIECE)
    with open(path, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            hasher.update(chunk)
    return hasher.digest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--elements", type=int, default=marking.DEFAULT_ELEMENTS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-marking-") as tmp:
        src = Path(tmp) / "model.safetensors"
        write_shard(src, args.size_mib)
        size = src.stat().st_size
        original = digest_of(src)  # also warms the page cache
        outputs = [Path(tmp) / f"variant-{v}" for v in range(args.variants)]
        marking.mark_file(src, outputs, original=original, elements=args.elements, key=KEY)  # warm the outputs
        sums, marks, ratios, hashlibs = [], [], [], []
        for _ in range(args.rounds):
            # For reference: one pass of Python's hashlib (OpenSSL, which uses the CPU's SHA extensions where
            # coreutils' sha256sum may not), the hash marking itself uses.
            start = time.perf_counter()
            digest_of(src)
            hashlibs.append(time.perf_counter() - start)
            start = time.perf_counter()
            done = subprocess.run(["sha256sum", str(src)], capture_output=True, text=True, check=True)
            sums.append(time.perf_counter() - start)
            assert done.stdout.split()[0] == original.sha256
            start = time.perf_counter()
            digests = marking.mark_file(src, outputs, original=original, elements=args.elements, key=KEY)
            marks.append(time.perf_counter() - start)
            ratios.append(sums[-1] / marks[-1])
        assert len({d.sha256 for d in digests} | {original.sha256}) == args.variants + 1
        for out in outputs:
            os.remove(out)
    mib = size / 1024 / 1024
    ratio = statistics.median(ratios)
    print(f"shard: {mib:.0f} MiB (F16 + BF16), {args.variants} variants x {args.elements} elements")
    print(f"cores: {os.cpu_count()}, load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"{'':28}|  median s |  MiB/s of input")
    for label, times in (
        ("sha256sum", sums),
        ("mark_file (all variants)", marks),
        ("hashlib, one pass (ref.)", hashlibs),
    ):
        print(f"{label:28}| {statistics.median(times):9.3f} | {mib / statistics.median(times):9.0f}")
    verdict = "PASS" if ratio >= GOAL else "MISS"
    print(f"goal: marking >= {GOAL:.0%} of sha256sum's throughput: {ratio:.0%} (rounds: "
          f"{', '.join(f'{r:.2f}' for r in ratios)})  {verdict}")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"mib": mib, "sha256sum": sums, "mark": marks, "ratios": ratios, "hashlib": hashlibs})
        )
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
