"""Benchmark: the 992-file OPT-175B manifest in each format (json, aria2, wget, sha256sum) with a Bearer token,
through gunicorn, with LocalStorage and with S3Storage on nanio (a real S3 server that checks signatures).

Run from the repository root (needs PostgreSQL and Redis; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_manifest.py [--requests 50]

Each format is fetched --requests times in sequence over one keep-alive connection (after 3 untimed ones); the peer
is the release detail endpoint (/api/v1/models/facebook/opt-175b: the same 992 files, unsigned) measured in the same
run. Before timing, every format is checked (992 entries, checksums present) and a few signed URLs from the JSON
manifest are downloaded and their SHA-256 compared with the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OPT_175B,
    Bench,
    goal_line,
    percentile,
    print_machine,
    print_table,
    researcher_with_grant,
    save_results,
    seed_opt175b,
)

GOAL_P50_MS = 50.0
FORMATS = ("json", "aria2", "wget", "sha256sum")
PEER = "unsigned file list"


def check_manifests(session, base: str) -> None:
    """Refuse to time anything that is not a correct manifest."""
    manifest = session.get(f"{base}/api/v1/models/{OPT_175B}/manifest?format=json", timeout=30)
    manifest.raise_for_status()
    files = manifest.json()["files"]
    assert len(files) == 992, len(files)
    for entry in (files[0], files[500], files[-1]):
        body = session.get(entry["url"], timeout=30, headers={"Authorization": None})
        body.raise_for_status()
        assert hashlib.sha256(body.content).hexdigest() == entry["sha256"], entry["path"]
        assert len(body.content) == entry["size"]
    for fmt, marker in (("aria2", "checksum=sha-256="), ("wget", "http"), ("sha256sum", "  checkpoint_last")):
        text = session.get(f"{base}/api/v1/models/{OPT_175B}/manifest?format={fmt}", timeout=30).text
        assert text.count(marker) == 992, (fmt, text.count(marker))


def time_url(session, url: str, n: int) -> dict:
    for _ in range(3):
        session.get(url, timeout=30).raise_for_status()
    times, size = [], 0
    for _ in range(n):
        started = time.perf_counter()
        response = session.get(url, timeout=30)
        body = response.content
        times.append((time.perf_counter() - started) * 1e3)
        assert response.status_code == 200, (url, response.status_code)
        size = len(body)
    return {"p50": percentile(times, 50), "p99": percentile(times, 99), "bytes": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per format (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (default gthread)")
    parser.add_argument("--gthreads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    args = parser.parse_args()

    import requests

    print_machine()
    results: dict[str, dict[str, dict]] = {}
    with Bench("manifest") as bench:
        from access.storage import get_storage

        server = bench.nanio()
        s3 = bench.s3_storage(server)
        seed_opt175b(storages=[get_storage(), s3])
        _, token = researcher_with_grant("researcher@bench.example")
        from access.models import DownloadEvent

        for storage, extra in (("local", {}), ("s3 (nanio)", bench.s3_env(server))):
            base, proc = bench.gunicorn(
                env=bench.env(**extra), workers=args.workers, worker_class=args.worker_class, threads=args.gthreads
            )
            with requests.Session() as session:
                session.headers["Authorization"] = f"Bearer {token}"
                check_manifests(session, base)
                before = DownloadEvent.objects.filter(via="manifest").count()
                results[storage] = {PEER: time_url(session, f"{base}/api/v1/models/{OPT_175B}", args.requests)}
                for fmt in FORMATS:
                    url = f"{base}/api/v1/models/{OPT_175B}/manifest?format={fmt}"
                    results[storage][fmt] = time_url(session, url, args.requests)
                audited = DownloadEvent.objects.filter(via="manifest").count() - before
                assert audited == len(FORMATS) * (args.requests + 3), audited
            bench.procs.stop(proc)

    print(
        f"\n{args.requests} sequential GETs per row over one keep-alive connection, Bearer token; gunicorn "
        f"{args.workers} {args.worker_class} workers x {args.gthreads} threads; PostgreSQL; 992 files\n"
    )
    header = ("storage", "format", "p50 (ms)", "p99 (ms)", "size (KiB)", "p50 vs unsigned list")
    rows = []
    for storage, by_format in results.items():
        peer = by_format[PEER]["p50"]
        for fmt, r in by_format.items():
            rows.append(
                (
                    storage,
                    fmt,
                    f"{r['p50']:7.1f}",
                    f"{r['p99']:7.1f}",
                    f"{r['bytes'] / 1024:7.0f}",
                    f"{r['p50'] / peer:5.2f}x",
                )
            )
    print_table(header, rows)
    print()
    worst = max(r["p50"] for by_format in results.values() for f, r in by_format.items() if f != PEER)
    goal_line(f"every manifest p50 < {GOAL_P50_MS:g} ms (worst {worst:.1f} ms)", worst < GOAL_P50_MS)
    save_results("manifest", {"args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
