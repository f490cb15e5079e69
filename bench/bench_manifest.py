"""Benchmark: the 992-file OPT-175B manifest in each format (json, aria2, wget, sha256sum) with a Bearer token,
through gunicorn, with LocalStorage and with S3Storage on nanio (a real S3 server that checks signatures); then
again with advisories published on the revision served (--advisories of them, the last under embargo; the
researcher downloaded that revision, so was told of each), side by side.

Run from the repository root (needs PostgreSQL and Redis; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_manifest.py [--rounds 10] [--requests 10] [--advisories 3]

Each format is fetched --requests times per round in sequence over one keep-alive connection (after 3 untimed ones),
in --rounds rounds; each round times every format without the advisories and then with them, so that both figures
meet the same load from elsewhere on the machine (short rounds pair them closely). The peer
is the release detail endpoint (/api/v1/models/facebook/opt-175b: the same 992 files, unsigned) measured in the same
run. Before timing, every format is checked (992 entries, checksums present) and a few signed URLs from the JSON
manifest are downloaded and their SHA-256 compared with the manifest; with advisories, every format is checked to
name each of them (the JSON field, the comment lines, the X-Advisories header).
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
    user_create,
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


def publish_advisories(manager, n: int) -> list[str]:
    """n advisories on the revision OPT-175B serves, published by a release manager; the last is under embargo
    (the manifest then asks whether the caller was told). Returns their ids, newest first (as manifests list them)."""
    from datetime import timedelta

    from django.utils import timezone

    from access import services
    from access.models import ModelRelease

    release = ModelRelease.objects.get(repo_id=OPT_175B)
    actor = services.Actor(user=manager, credential="session", reauthenticated=True)
    ids = []
    for i in range(n):
        data = {
            "affected_revisions": [release.revision],
            "severity": "high",
            "title": f"Advisory {i + 1} on the served revision",
            "summary": "Published by the manifest benchmark.",
        }
        if i == n - 1:
            data["embargo_until"] = (timezone.now() + timedelta(days=30)).isoformat()
        advisory = services.advisory_create(actor=actor, release=release, data=data)
        ids.append(services.advisory_publish(actor=actor, advisory=advisory).identifier)
    return ids[::-1]


def check_advisories(session, base: str, ids: list[str]) -> None:
    """Refuse to time manifests that do not name the advisories (each format its own way)."""
    url = f"{base}/api/v1/models/{OPT_175B}/manifest"
    manifest = session.get(f"{url}?format=json", timeout=30)
    assert [a["id"] for a in manifest.json()["advisories"]] == ids, manifest.json()["advisories"]
    for fmt in ("json", "aria2", "wget", "sha256sum"):
        response = session.get(f"{url}?format={fmt}", timeout=30)
        assert response.headers.get("X-Advisories") == ", ".join(ids), (fmt, response.headers.get("X-Advisories"))
        if fmt in ("aria2", "sha256sum"):
            assert response.text.count("# ADVISORY ") == len(ids), fmt


def time_url(session, url: str, n: int, into: dict) -> None:
    """Time n GETs (after 3 untimed ones), adding the times (ms) and the body's size to `into`."""
    for _ in range(3):
        session.get(url, timeout=30).raise_for_status()
    times = into.setdefault("times", [])
    for _ in range(n):
        started = time.perf_counter()
        response = session.get(url, timeout=30)
        body = response.content
        times.append((time.perf_counter() - started) * 1e3)
        assert response.status_code == 200, (url, response.status_code)
        into["bytes"] = len(body)


def summarize(by_format: dict) -> dict:
    return {
        fmt: {"p50": percentile(r["times"], 50), "p99": percentile(r["times"], 99), "bytes": r["bytes"]}
        for fmt, r in by_format.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10, help="timed requests per format and round (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (default gthread)")
    parser.add_argument("--gthreads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument(
        "--advisories", type=int, default=3, help="advisories published on the revision served (default 3; 0: none)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="rounds per storage, each timing without then with the advisories (default 10)",
    )
    args = parser.parse_args()
    rounds = args.rounds

    import requests

    print_machine()
    results: dict[str, dict[str, dict]] = {}
    advised: dict[str, dict[str, dict]] = {}  # the same, with the advisories published
    with Bench("manifest") as bench:
        from access.storage import get_storage

        server = bench.nanio()
        s3 = bench.s3_storage(server)
        seed_opt175b(storages=[get_storage(), s3])
        _, token = researcher_with_grant("researcher@bench.example")
        from access import services
        from access.models import Advisory, DownloadEvent

        manager = user_create("release-manager@bench.example")
        services.release_manager_add(actor=services.command_actor("bench"), user=manager)

        for storage, extra in (("local", {}), ("s3 (nanio)", bench.s3_env(server))):
            base, proc = bench.gunicorn(
                env=bench.env(**extra), workers=args.workers, worker_class=args.worker_class, threads=args.gthreads
            )
            results[storage] = {PEER: {}, **{fmt: {} for fmt in FORMATS}}
            advised[storage] = {fmt: {} for fmt in FORMATS} if args.advisories else {}
            with requests.Session() as session:
                session.headers["Authorization"] = f"Bearer {token}"
                check_manifests(session, base)
                for _round in range(rounds):
                    before = DownloadEvent.objects.filter(via="manifest").count()
                    time_url(session, f"{base}/api/v1/models/{OPT_175B}", args.requests, results[storage][PEER])
                    for fmt in FORMATS:
                        url = f"{base}/api/v1/models/{OPT_175B}/manifest?format={fmt}"
                        time_url(session, url, args.requests, results[storage][fmt])
                    audited = DownloadEvent.objects.filter(via="manifest").count() - before
                    assert audited == len(FORMATS) * (args.requests + 3), audited
                    if not args.advisories:
                        continue
                    # The researcher has downloaded the revision served: they are told of each advisory.
                    ids = publish_advisories(manager, args.advisories)
                    check_advisories(session, base, ids)
                    for fmt in FORMATS:
                        url = f"{base}/api/v1/models/{OPT_175B}/manifest?format={fmt}"
                        time_url(session, url, args.requests, advised[storage][fmt])
                    Advisory.objects.all().delete()  # the next round (or storage) starts without
            results[storage], advised[storage] = summarize(results[storage]), summarize(advised[storage])
            bench.procs.stop(proc)

    print(
        f"\n{args.requests * rounds} sequential GETs per row over one keep-alive connection, Bearer token; gunicorn "
        f"{args.workers} {args.worker_class} workers x {args.gthreads} threads; PostgreSQL; 992 files"
    )
    if args.advisories:
        print(
            f"with {args.advisories} adv.: {args.advisories} advisories published on the revision served (the last "
            f"under embargo; the researcher was told of each), timed in {rounds} rounds of {args.requests}, each "
            "right after a round without them"
        )
    print()
    header = ["storage", "format", "p50 (ms)", "p99 (ms)", "size (KiB)", "p50 vs unsigned list"]
    advised = {storage: by_format for storage, by_format in advised.items() if by_format}
    if advised:
        header[2:4] = ["p50 (ms)", f"p50 with {args.advisories} adv.", "p99 (ms)", f"p99 with {args.advisories} adv."]
    rows = []
    for storage, by_format in results.items():
        peer = by_format[PEER]["p50"]
        for fmt, r in by_format.items():
            with_them = advised.get(storage, {}).get(fmt)
            figures = [f"{r['p50']:7.1f}", f"{r['p99']:7.1f}"]
            if advised:
                more = [f"{with_them['p50']:7.1f}", f"{with_them['p99']:7.1f}"] if with_them else ["", ""]
                figures = [figures[0], more[0], figures[1], more[1]]
            rows.append((storage, fmt, *figures, f"{r['bytes'] / 1024:7.0f}", f"{r['p50'] / peer:5.2f}x"))
    print_table(header, rows)
    print()
    worst = max(r["p50"] for by_format in results.values() for f, r in by_format.items() if f != PEER)
    goal_line(f"every manifest p50 < {GOAL_P50_MS:g} ms (worst {worst:.1f} ms)", worst < GOAL_P50_MS)
    if advised:
        worst_advised = max(r["p50"] for by_format in advised.values() for r in by_format.values())
        goal_line(
            f"every manifest p50 < {GOAL_P50_MS:g} ms with {args.advisories} advisories on the revision served "
            f"(worst {worst_advised:.1f} ms)",
            worst_advised < GOAL_P50_MS,
        )
    save_results("manifest", {"args": vars(args), "results": results, "with_advisories": advised})
    return 0


if __name__ == "__main__":
    sys.exit(main())
