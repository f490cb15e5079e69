"""Benchmark: download throughput of the portal's client (access/client/download.py --jobs 8) against
`aria2c -x4 -j8` (checksums from the portal's aria2 manifest) and sequential `curl` + `sha256sum -c`, on the same
files from the same servers: (a) the portal with LocalStorage under gunicorn, (b) S3Storage on nanio.

Run from the repository root (needs PostgreSQL, Redis, aria2c and curl; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_download.py [--files 16] [--mib 32] [--rounds 3]

Every method starts from an empty directory, fetches its manifest from the portal with a Bearer token (included in
the time) and must end with every file verified against the manifest's SHA-256 (the client and aria2c verify
themselves; curl is followed by `sha256sum -c`). Rounds rotate the order of the methods; the table shows the
median. The client fsyncs each finished file and the others do not; `sync` runs between downloads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REPO,
    Bench,
    files_store,
    goal_line,
    print_machine,
    print_table,
    researcher_with_grant,
    save_results,
)

GOAL_RATIO = 0.90  # client MB/s vs aria2c
REPO_ID = "bench/download"
METHODS = ("portal client --jobs 8", "aria2c -x4 -j8", "curl (sequential) + sha256sum")


def manifest(session, base: str, fmt: str) -> str:
    response = session.get(f"{base}/api/v1/models/{REPO_ID}/manifest?format={fmt}", timeout=60)
    response.raise_for_status()
    return response.text


def run(cmd: list, *, env: dict | None = None, cwd: Path | None = None) -> None:
    done = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def with_client(base: str, token: str, dest: Path, session) -> None:
    env = dict(os.environ, PORTAL_TOKEN=token)
    run(
        [sys.executable, REPO / "access/client/download.py", REPO_ID, "--dir", dest, "--jobs", "8", "--portal", base],
        env=env,
    )


def with_aria2c(base: str, token: str, dest: Path, session) -> None:
    dest.mkdir(parents=True)
    listing = dest.parent / (dest.name + ".aria2-input")
    listing.write_text(manifest(session, base, "aria2"))
    run(
        [
            shutil.which("aria2c") or "aria2c",
            "-x4",
            "-j8",
            "-i",
            listing,
            "-d",
            dest,
            "--check-integrity=true",
            "--file-allocation=none",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "--console-log-level=error",
            "--summary-interval=0",
            "--download-result=hide",
        ]
    )


def with_curl(base: str, token: str, dest: Path, session) -> None:
    import json

    dest.mkdir(parents=True)
    files = json.loads(manifest(session, base, "json"))["files"]
    config = dest.parent / (dest.name + ".curl-config")
    config.write_text("".join(f'url = "{f["url"]}"\noutput = "{dest / f["path"]}"\n' for f in files))
    run([shutil.which("curl") or "curl", "-sS", "--fail", "--create-dirs", "-K", config])
    (dest / "SHA256SUMS").write_text("".join(f"{f['sha256']}  {f['path']}\n" for f in files))
    run([shutil.which("sha256sum") or "sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dest)


RUNNERS = dict(zip(METHODS, (with_client, with_aria2c, with_curl), strict=True))


def verify(dest: Path, expected: dict[str, int]) -> None:
    for path, size in expected.items():
        got = (dest / path).stat().st_size
        assert got == size, (path, got, size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16, help="files in the release (default 16)")
    parser.add_argument("--mib", type=int, default=32, help="MiB per file (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="downloads per method and server (default 3)")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker (default 16)")
    args = parser.parse_args()

    total = args.files * args.mib * 1024 * 1024
    need = total * 3 + (2 << 30)  # LocalStorage, nanio, one download at a time, plus headroom
    free = shutil.disk_usage(tempfile_dir()).free
    if free < need:
        print(f"not enough free disk in {tempfile_dir()}: {free >> 20} MiB free, {need >> 20} MiB needed")
        return 1

    import requests

    print_machine()
    results: dict[str, dict[str, list[float]]] = {}
    with Bench("download") as bench:
        from access.models import License, ModelRelease
        from access.storage import get_storage

        server = bench.nanio()
        s3 = bench.s3_storage(server)
        license_obj = License.objects.create(slug="bench", version="1.0", title="Bench license", text="...")
        release = ModelRelease.objects.create(
            repo_id=REPO_ID, display_name="download bench", access="gated", license=license_obj
        )
        started = time.perf_counter()
        sizes = [(f"shard-{i:02d}.bin", args.mib * 1024 * 1024) for i in range(args.files)]
        files_store(release, sizes, [get_storage(), s3])
        print(f"stored {args.files} x {args.mib} MiB in LocalStorage and nanio in {time.perf_counter() - started:.1f}s")
        _, token = researcher_with_grant("researcher@bench.example", REPO_ID)
        expected = dict(sizes)

        servers = (("portal + LocalStorage", {}), ("nanio (S3)", bench.s3_env(server)))
        for label, extra in servers:
            base, proc = bench.gunicorn(env=bench.env(**extra), workers=2, threads=args.threads)
            results[label] = {m: [] for m in METHODS}
            with requests.Session() as session:
                session.headers["Authorization"] = f"Bearer {token}"
                for round_ in range(args.rounds):
                    order = METHODS[round_ % len(METHODS) :] + METHODS[: round_ % len(METHODS)]
                    for method in order:
                        dest = bench.tmp / f"dl-{len(results)}-{round_}-{METHODS.index(method)}"
                        os.sync()
                        started = time.perf_counter()
                        RUNNERS[method](base, token, dest, session)
                        seconds = time.perf_counter() - started
                        verify(dest, expected)
                        results[label][method].append(seconds)
                        shutil.rmtree(dest)
            bench.procs.stop(proc)

    print(
        f"\n{args.files} files x {args.mib} MiB = {total / 2**20:.0f} MiB per download, {args.rounds} rounds "
        f"(median; order rotated); time includes the manifest request and checksum verification\n"
    )
    header = ("server", "method", "seconds", "MiB/s", "vs aria2c")
    rows, ratios = [], {}
    for label, by_method in results.items():
        aria = statistics.median(by_method["aria2c -x4 -j8"])
        for method, times in by_method.items():
            seconds = statistics.median(times)
            rows.append(
                (label, method, f"{seconds:6.2f}", f"{total / 2**20 / seconds:7.1f}", f"{aria / seconds:5.2f}x")
            )
        ratios[label] = aria / statistics.median(by_method["portal client --jobs 8"])
    print_table(header, rows)
    print()
    for label, ratio in ratios.items():
        goal_line(f"{label}: client >= {GOAL_RATIO:.0%} of aria2c throughput ({ratio:.0%})", ratio >= GOAL_RATIO)
    save_results("download", {"args": vars(args), "seconds": results, "bytes": total})
    return 0


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


if __name__ == "__main__":
    sys.exit(main())
