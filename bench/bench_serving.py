"""Benchmark: serving LocalStorage files three ways in one run, on the same files and the same client:
(a) Django streaming them (gunicorn, what `make run` does), (b) the portal checking each signed URL and answering
`X-Accel-Redirect`, nginx sending the file (the server block of docs/operators.md, LOCAL_STORAGE_ACCEL_REDIRECT),
and (c) nginx serving the files directly from a plain location, with no check at all (the floor).

Run from the repository root (needs PostgreSQL, Redis, nginx and curl; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_serving.py [--files 8] [--mib 256] [--parallel 4] [--rounds 5] [--range-mib 16]

Two workloads: whole files (each file one GET), and 16 MiB ranges (piece-wise clients; Django answers these from
a Python loop, nginx with sendfile). `--parallel` curl processes, each on one kept-alive connection as a download
tool is, fetch to /dev/null; every answer must have the right status and size, and every file is first fetched
once by each method and checked against its SHA-256, which also leaves it in the page cache, so the figures are
the cost of serving, not of the disk. CPU is user + system time of every process of the server (gunicorn master
and workers, nginx master and workers, read from /proc) and of the curl clients (rusage), per GiB delivered.
Rounds rotate the order of the methods; the table shows medians.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Bench, files_store, goal_line, print_machine, print_table, save_results

GOAL_RATIO = 0.90  # X-Accel MiB/s vs nginx direct
REPO_ID = "bench/serving"
ACCEL = "/_protected/"
DJANGO, ACCEL_NGINX, DIRECT = "Django streaming (gunicorn)", "X-Accel-Redirect via nginx", "nginx direct (no check)"
METHODS = (DJANGO, ACCEL_NGINX, DIRECT)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgids: set[int]) -> float:
    """utime + stime of every live process in these process groups (threads included)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in pgids:  # fields[0] is field 3 of proc(5): state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fetch(group: tuple[Path, list[tuple]]) -> int:
    """One curl process for a share of the requests (one kept-alive connection, as a download tool has), every
    body to /dev/null; returns the bytes received after checking each answer's status and size."""
    config, jobs = group
    lines = []
    for url, _, start, end in jobs:
        lines += [f'url = "{url}"', 'output = "/dev/null"', 'write-out = "%{http_code} %{size_download}\\n"']
        lines += [f'range = "{start}-{end}"'] if start is not None else []
        lines += ["silent", "next"]
    config.write_text("\n".join(lines[:-1]) + "\n")
    done = subprocess.run([shutil.which("curl") or "curl", "-K", str(config)], capture_output=True, text=True)
    answers = [line.split() for line in done.stdout.splitlines()]
    if done.returncode != 0 or len(answers) != len(jobs):
        raise RuntimeError(f"curl {done.returncode}: {len(answers)} of {len(jobs)} answers\n{done.stderr[-2000:]}")
    for (url, expected, start, end), (status, size) in zip(jobs, answers, strict=True):
        if status != ("200" if start is None else "206") or int(size) != expected:
            raise RuntimeError(f"{url} {start}-{end}: HTTP {status}, {size} of {expected} bytes")
    return sum(expected for _, expected, _, _ in jobs)


def jobs_for(urls: list[str], sizes: list[int], range_bytes: int | None) -> list[tuple]:
    if range_bytes is None:
        return [(url, size, None, None) for url, size in zip(urls, sizes, strict=True)]
    jobs = []
    for url, size in zip(urls, sizes, strict=True):
        for start in range(0, size, range_bytes):
            end = min(start + range_bytes, size) - 1
            jobs.append((url, end - start + 1, start, end))
    return jobs


def measure(jobs: list[tuple], pgids: set[int], parallel: int, workdir: Path) -> dict:
    groups = [(workdir / f"curl-{n}.config", jobs[n::parallel]) for n in range(parallel) if jobs[n::parallel]]
    server_before, client_before = group_cpu_seconds(pgids), client_cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        received = sum(pool.map(fetch, groups))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "bytes": received,
        "server_cpu": group_cpu_seconds(pgids) - server_before,
        "client_cpu": client_cpu_seconds() - client_before,
    }


def check_bytes(session, url: str, sha256: str, size: int) -> None:
    digest = hashlib.sha256()
    with session.get(url, stream=True, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == sha256, f"{url}: wrong bytes"
    tail = session.get(url, headers={"Range": f"bytes={size - 1000}-"}, timeout=60)
    assert tail.status_code == 206 and len(tail.content) == 1000, (url, tail.status_code)


def head_latency(session, urls: list[str], count: int) -> float:
    """Median milliseconds of one HEAD answered in full (for X-Accel: the portal's check plus nginx's answer)."""
    times = []
    for n in range(count):
        started = time.perf_counter()
        response = session.head(urls[n % len(urls)], timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8, help="files served (default 8)")
    parser.add_argument("--mib", type=int, default=256, help="MiB per file (default 256)")
    parser.add_argument("--parallel", type=int, default=4, help="concurrent curl clients (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per method and workload (default 5)")
    parser.add_argument("--range-mib", type=int, default=16, help="MiB per request in the ranged workload")
    args = parser.parse_args()

    total = args.files * args.mib * 1024 * 1024
    import requests

    from tests.support.nginx import start_local_nginx

    print_machine()
    results: dict[str, dict[str, list[dict]]] = {}
    with Bench("serving") as bench:
        from access.models import ModelRelease
        from access.storage import get_storage

        storage_dir = bench.tmp / "storage"
        release = ModelRelease.objects.create(repo_id=REPO_ID, display_name="serving bench", access="open")
        started = time.perf_counter()
        files_store(release, [(f"shard-{i:02d}.bin", args.mib << 20) for i in range(args.files)], [get_storage()])
        rows = list(release.files.order_by("path").values_list("storage_key", "path", "size", "sha256"))
        print(f"stored {args.files} x {args.mib} MiB in {time.perf_counter() - started:.1f}s")

        django_url, django_proc = bench.gunicorn(env=bench.env(), name="gunicorn-stream")
        accel_env = bench.env(LOCAL_STORAGE_ACCEL_REDIRECT=ACCEL, BEHIND_PROXY="1")
        accel_gunicorn, accel_proc = bench.gunicorn(env=accel_env, name="gunicorn-accel")
        direct = f"""    location /direct/ {{
        alias {storage_dir.resolve()}/;
        sendfile on;
        sendfile_max_chunk 2m;
        tcp_nopush on;
        max_ranges 1;
    }}"""
        nginx = start_local_nginx(
            bench.tmp / "nginx",
            gunicorn=accel_gunicorn.removeprefix("http://"),
            storage_dir=storage_dir,
            workers=2,
            extra_locations=direct,
        )
        bench.stack.callback(nginx.stop)

        storage = get_storage()

        def signed(base: str) -> list[str]:
            return [storage.signed_url(key, filename=path, ttl=3600, base_url=base) for key, path, _, _ in rows]

        urls = {
            DJANGO: signed(django_url),
            ACCEL_NGINX: signed(nginx.url),
            DIRECT: [f"{nginx.url}/direct/{quote(key)}" for key, *_ in rows],
        }
        pgids = {
            DJANGO: {django_proc.pid},
            ACCEL_NGINX: {accel_proc.pid, nginx.process.pid},
            DIRECT: {nginx.process.pid},
        }
        sizes = [size for _, _, size, _ in rows]
        with requests.Session() as session:
            for method in METHODS:
                for url, (_, _, size, sha256) in zip(urls[method], rows, strict=True):
                    check_bytes(session, url, sha256, size)
            accel_answer = session.get(signed(accel_gunicorn)[0], timeout=30)
            assert accel_answer.headers.get("X-Accel-Redirect", "").startswith(ACCEL) and not accel_answer.content
            latency = {method: head_latency(session, urls[method], 300) for method in METHODS}
        print("every method served every file with the right SHA-256; the portal behind nginx sent headers only")

        workloads = {"whole files": None, f"{args.range_mib} MiB ranges": args.range_mib << 20}
        for workload, range_bytes in workloads.items():
            results[workload] = {m: [] for m in METHODS}
            for round_ in range(args.rounds):
                order = METHODS[round_ % len(METHODS) :] + METHODS[: round_ % len(METHODS)]
                for method in order:
                    bench.procs.check_alive()
                    jobs = jobs_for(urls[method], sizes, range_bytes)
                    results[workload][method].append(measure(jobs, pgids[method], args.parallel, bench.tmp))

    gib = total / 2**30
    print(
        f"\n{args.files} files x {args.mib} MiB = {total / 2**20:.0f} MiB per round, {args.parallel} curl clients, "
        f"{args.rounds} rounds (median; order rotated); CPU = user + system seconds per GiB delivered\n"
    )
    header = ("workload", "method", "MiB/s", "server CPU s/GiB", "client CPU s/GiB", "vs nginx direct")
    table, summary = [], {}
    for workload, by_method in results.items():
        rates = {m: statistics.median(total / 2**20 / r["seconds"] for r in runs) for m, runs in by_method.items()}
        for method, runs in by_method.items():
            server = statistics.median(r["server_cpu"] / gib for r in runs)
            client = statistics.median(r["client_cpu"] / gib for r in runs)
            ratio = rates[method] / rates[DIRECT]
            table.append(
                (workload, method, f"{rates[method]:7.0f}", f"{server:6.3f}", f"{client:6.3f}", f"{ratio:4.0%}")
            )
            summary.setdefault(workload, {})[method] = {
                "mib_s": rates[method],
                "server_cpu_s_per_gib": server,
                "client_cpu_s_per_gib": client,
                "vs_direct": ratio,
            }
    print_table(header, table)
    print("\nHEAD, one at a time, median ms: " + ", ".join(f"{m} {latency[m]:.2f}" for m in METHODS))
    print()
    for workload, by_method in summary.items():
        ratio = by_method[ACCEL_NGINX]["vs_direct"]
        goal_line(f"{workload}: X-Accel >= {GOAL_RATIO:.0%} of nginx direct ({ratio:.0%})", ratio >= GOAL_RATIO)
    save_results(
        "serving", {"args": vars(args), "bytes": total, "runs": results, "summary": summary, "head_ms": latency}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
