"""Load with correctness: 200 applicants submitting at once (each twice, as a double click would), then 50
anonymous downloaders of an open release beside one researcher fetching all 992 gated redirects. The portal runs
under gunicorn on PostgreSQL + Redis + LocalStorage. Every answer is checked; any error fails the run.

    .venv/bin/python bench/bench_load.py [--applicants 200] [--downloaders 50]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench.common import (
    OPT_175B,
    Bench,
    goal_line,
    percentile,
    print_machine,
    print_table,
    researcher_with_grant,
    seed_opt175b,
    token_create,
    user_create,
)

ANSWERS = {
    "repo_id": OPT_175B,
    "full_name": "Load Tester",
    "affiliation": "University of Benchmarks",
    "organization_type": "academic",
    "country": "NL",
    "role": "Researcher",
    "intended_use": "Measuring how the portal behaves when many researchers apply at the same moment, "
    "with every application stored exactly once.",
    "accept_license": True,
    "noncommercial_attested": True,
}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1000


def phase_apply(base: str, tokens: list[str]) -> dict:
    """Each applicant sends the same application twice at once; exactly one may be stored."""
    barrier = threading.Barrier(min(len(tokens) * 2, 400))

    def submit(token):
        barrier.wait()
        with requests.Session() as http:
            return timed(
                lambda: http.post(
                    f"{base}/api/v1/access-requests",
                    json=ANSWERS,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                )
            )

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(tokens) * 2) as pool:
        results = list(pool.map(submit, [t for t in tokens for _ in range(2)]))
    elapsed = time.perf_counter() - start
    statuses = [r.status_code for r, _ in results]
    latencies = [ms for _, ms in results]
    per_token = [sorted(statuses[i : i + 2]) for i in range(0, len(statuses), 2)]
    return {
        "requests": len(results),
        "elapsed": elapsed,
        "created": statuses.count(201),
        "duplicates_refused": statuses.count(409),
        "errors": sum(1 for s in statuses if s not in (201, 409)),
        "pairs_ok": sum(1 for pair in per_token if pair == [201, 409]),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def phase_download(base: str, downloaders: int, researcher_token: str, gated_paths: list[str]) -> dict:
    manifest = requests.get(f"{base}/api/v1/models/facebook/opt-125m/manifest", timeout=30).json()["files"]
    expected = {f["path"]: f["sha256"] for f in manifest}
    errors: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def downloader(_):
        with requests.Session() as http:
            for path, sha in expected.items():
                response, ms = timed(
                    lambda p=path: http.get(f"{base}/api/v1/models/facebook/opt-125m/files/{p}", timeout=60)
                )
                with lock:
                    latencies.append(ms)
                    if response.status_code != 200 or hashlib.sha256(response.content).hexdigest() != sha:
                        errors.append(f"{path}: {response.status_code}")
        return len(expected)

    gated: dict = {}

    def researcher():
        ok, lat = 0, []
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {researcher_token}"
            for path in gated_paths:
                response, ms = timed(
                    lambda p=path: http.get(
                        f"{base}/api/v1/models/{OPT_175B}/files/{p}", allow_redirects=False, timeout=60
                    )
                )
                lat.append(ms)
                if response.status_code == 302 and response.headers["Location"].endswith("/" + path):
                    ok += 1
                else:
                    with lock:
                        errors.append(f"gated {path}: {response.status_code}")
        gated.update(ok=ok, p50=percentile(lat, 50), p99=percentile(lat, 99))

    start = time.perf_counter()
    research_thread = threading.Thread(target=researcher)
    research_thread.start()
    with ThreadPoolExecutor(max_workers=downloaders) as pool:
        files = sum(pool.map(downloader, range(downloaders)))
    research_thread.join()
    elapsed = time.perf_counter() - start
    return {
        "files": files,
        "elapsed": elapsed,
        "errors": errors,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "gated": gated,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applicants", type=int, default=200)
    parser.add_argument("--downloaders", type=int, default=50)
    args = parser.parse_args()
    print_machine()
    with Bench("load") as bench:
        from django.core.management import call_command

        from access.models import AccessRequest, DownloadEvent, ModelRelease

        seed_opt175b(64)
        call_command("load_demo_catalog", "--size", "65536", "--only", "facebook/opt-125m", verbosity=0)
        _, researcher_token = researcher_with_grant("researcher@bench.example")
        tokens = [token_create(user_create(f"applicant{i}@uni.example")) for i in range(args.applicants)]
        gated_paths = list(
            ModelRelease.objects.get(repo_id=OPT_175B).files.order_by("path").values_list("path", flat=True)
        )
        base, _ = bench.gunicorn(workers=2, threads=8)

        apply = phase_apply(base, tokens)
        stored = AccessRequest.objects.filter(status="pending", applicant__email__startswith="applicant").count()
        per_user = AccessRequest.objects.values("applicant").distinct().count()
        events_before = DownloadEvent.objects.filter(via="api", release__repo_id=OPT_175B).count()
        download = phase_download(base, args.downloaders, researcher_token, gated_paths)
        gated_events = DownloadEvent.objects.filter(via="api", release__repo_id=OPT_175B).count() - events_before

    rows = [
        [
            f"{args.applicants} applicants × 2 concurrent submits",
            f"{apply['requests']}",
            f"{apply['requests'] / apply['elapsed']:.0f}/s",
            f"{apply['p50']:.0f} / {apply['p99']:.0f}",
            f"{apply['errors']}",
            f"{stored} stored, {apply['pairs_ok']}/{args.applicants} pairs 201+409",
        ],
        [
            f"{args.downloaders} anonymous downloaders (opt-125m, 7 files each, sha256 checked)",
            f"{download['files']}",
            f"{download['files'] / download['elapsed']:.0f} files/s",
            f"{download['p50']:.0f} / {download['p99']:.0f}",
            f"{len([e for e in download['errors'] if not e.startswith('gated')])}",
            "every body verified",
        ],
        [
            "1 researcher, all 992 gated redirects (alongside)",
            "992",
            "",
            f"{download['gated'].get('p50', 0):.0f} / {download['gated'].get('p99', 0):.0f}",
            f"{len([e for e in download['errors'] if e.startswith('gated')])}",
            f"{download['gated'].get('ok', 0)} redirects, {gated_events} download events",
        ],
    ]
    print_table(["phase", "requests", "rate", "p50 / p99 ms", "errors", "correctness"], rows)
    ok = (
        apply["errors"] == 0
        and stored == args.applicants
        and per_user >= args.applicants
        and apply["pairs_ok"] == args.applicants
        and not download["errors"]
        and download["gated"].get("ok") == 992
        and gated_events == 992
    )
    goal_line("zero errors; every application stored exactly once; every download verified", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
