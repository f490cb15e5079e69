"""Benchmark: tracing a whole leaked copy against 10,000 holders, beside the same trace against one holder and
`sha256sum` of the same copy, in one run.

Run from the repository root (needs PostgreSQL; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_tracing.py [--holders 10000] [--files 32] [--file-kib 256] [--rounds 5] [--profile]

Two marked releases of the same shape are registered with the real marking code (`register_release --mark`, 4
variants of each safetensors file, 64 elements each): `bench/many` with --holders holders (their users and codeword
records bulk-inserted, each codeword record as `codeword_assign` writes it, fingerprint included) and `bench/one` with
one. A whole copy of one holder's files (their own variants) is put in a directory for each. Each round times, one
after the other: `services.copy_trace` of the copy of `bench/many` (what `manage.py trace_copy <dir>` runs: hash every
file, find its variant, compute every holder's codeword, rank them, audit), the same of the copy of `bench/one`, and
`sha256sum` over the first copy's files. The goal: the trace against 10,000 holders in under 1 s (median of the
rounds). 32 marked files of 4 variants, so that a whole copy names its holder among 10,000 (4^-32 × 10^4 < 10^-6;
17 would do).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Bench, goal_line, print_machine, print_table, save_results

GOAL_S = 1.0
VARIANTS = 4
os.environ.setdefault("MARKING_KEY", "bench-marking-key-0123456789abcdef-0123456789")


def write_release(root: Path, files: int, kib: int, seed: int) -> None:
    """`files` safetensors shards of `kib` KiB of weights, alternately F16 and BF16 (normal values, std 0.02)."""
    import numpy as np

    from access.catalog_data import safetensors_bytes

    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    count = kib * 1024 // 2
    for i in range(files):
        values = rng.normal(0.0, 0.02, size=count).astype(np.float32)
        if i % 2:
            data, dtype = (values.view("<u4") >> 16).astype("<u2").tobytes(), "BF16"
        else:
            data, dtype = values.astype("<f2").tobytes(), "F16"
        blob = safetensors_bytes([(f"layers.{i}.weight", dtype, (count // 64, 64), data)], {"format": "pt"})
        (root / f"model-{i + 1:05d}-of-{files:05d}.safetensors").write_bytes(blob)
    (root / "config.json").write_text('{"model_type": "bench"}\n')


def register(bench: Bench, repo_id: str, files: int, kib: int, seed: int):
    from django.core.management import call_command

    from access.models import License, ModelRelease

    License.objects.get_or_create(slug="bench-marked", version="1", defaults={"title": "B", "text": "Marked."})
    source = bench.tmp / repo_id.replace("/", "-")
    write_release(source, files, kib, seed)
    call_command(
        "register_release",
        repo_id,
        from_dir=source,
        access="gated",
        license="bench-marked",
        mark=files,
        variants=VARIANTS,
        stdout=io.StringIO(),
    )
    return ModelRelease.objects.get(repo_id=repo_id)


def holders_create(release, count: int, prefix: str) -> list:
    """`count` people holding a codeword in the release, bulk-inserted (codeword_assign writes the same rows, one
    request at a time, with an audit event each)."""
    from access import codewords, marking
    from access.models import MarkingCodeword, User

    users = User.objects.bulk_create([User(email=f"{prefix}{i}@bench.example", password="!") for i in range(count)])
    files = codewords.marked_files(release)
    rows = []
    for user in users:
        marks = marking.marks_for(release_id=release.pk, user_id=user.pk, attempt=0)
        rows.append(
            MarkingCodeword(
                release=release,
                user=user,
                attempt=0,
                fingerprint=marking.fingerprint(release_id=release.pk, marks=marks, files=files),
            )
        )
    MarkingCodeword.objects.bulk_create(rows, batch_size=2000)
    return users


def copy_of(release, user, target: Path) -> list[tuple[str, Path]]:
    """The person's whole copy, as they downloaded it: their variant of every marked file, the others as stored."""
    from access import marking
    from access.storage import get_storage

    target.mkdir()
    marks = marking.marks_for(release_id=release.pk, user_id=user.pk, attempt=0)
    storage = get_storage()
    for f in release.files.order_by("path"):
        key = f.storage_key
        if f.mark_variants:
            key = f.variants.get(variant=marks.variant(f.path, f.mark_variants)).storage_key
        shutil.copyfile(storage.path(key), target / f.path)
    return [(p.name, p) for p in sorted(target.iterdir())]


def trace(files: list[tuple[str, Path]]):
    from access import services

    start = time.perf_counter()
    result = services.copy_trace(actor=services.command_actor("bench"), files=files, source="bench")
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holders", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--file-kib", type=int, default=256, help="KiB of weights per file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one 10,000-holder trace")
    args = parser.parse_args()

    with Bench("tracing") as bench:
        start = time.perf_counter()
        many = register(bench, "bench/many", args.files, args.file_kib, seed=1)
        one = register(bench, "bench/one", args.files, args.file_kib, seed=2)
        people = holders_create(many, args.holders, "h")
        (alone,) = holders_create(one, 1, "a")
        leaker = people[len(people) // 2]
        copy_many = copy_of(many, leaker, bench.tmp / "copy-many")
        copy_one = copy_of(one, alone, bench.tmp / "copy-one")
        print(f"seeded 2 releases of {args.files} marked files x {VARIANTS} variants and {args.holders:,} holders "
              f"in {time.perf_counter() - start:.1f}s")  # fmt: skip
        for files, person in ((copy_many, leaker), (copy_one, alone)):  # warm up, and check the answer
            _elapsed, result = trace(files)
            assert result.status == "match", result.as_dict()
            assert [c["user"] for c in result.candidates] == [person.email], result.candidates
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            trace(copy_many)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)

        times_many, times_one, sums = [], [], []
        for _ in range(args.rounds):
            times_many.append(trace(copy_many)[0])
            times_one.append(trace(copy_one)[0])
            start = time.perf_counter()
            subprocess.run(["sha256sum", *(str(p) for _n, p in copy_many)], capture_output=True, check=True)
            sums.append(time.perf_counter() - start)
        _elapsed, result = trace(copy_many)
        size = sum(p.stat().st_size for _n, p in copy_many)

    print()
    print_machine()
    print(f"copy: {len(copy_many)} files, {size / 1024 / 1024:.1f} MiB ({args.files} marked x {VARIANTS} variants); "
          f"{args.rounds} rounds, each trace through services.copy_trace (hash, read, rank, audit)")  # fmt: skip
    best = result.candidates[0]
    print(f"named: 1 of {result.holders:,} holders, {best['agree']} of {best['observed']} files agree; chance an "
          f"innocent holder agrees as well {best['chance']:.3g}, any of them {best['any_innocent']:.3g}")  # fmt: skip
    print()
    median_many = statistics.median(times_many)
    rows = [
        (f"trace against {args.holders:,} holders", f"{median_many:.3f}", f"{max(times_many):.3f}"),
        ("trace against 1 holder", f"{statistics.median(times_one):.3f}", f"{max(times_one):.3f}"),
        ("sha256sum of the copy", f"{statistics.median(sums):.3f}", f"{max(sums):.3f}"),
    ]
    print_table(("", "median (s)", "worst (s)"), rows)
    passed = median_many < GOAL_S
    goal_line(f"a whole copy traced against {args.holders:,} holders in < {GOAL_S:g} s ({median_many:.3f} s)", passed)
    save_results("tracing", {"args": vars(args), "many": times_many, "one": times_one, "sha256sum": sums})
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
