"""Benchmark: `huggingface_hub.snapshot_download` of opt-125m from the portal, against the same files served by
nginx directly, with the same client, in one run.

Run from the repository root (needs PostgreSQL, Redis and nginx; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_hf.py [--weight-mib 256] [--rounds 3]

opt-125m's real file names, with a weight file of --weight-mib MiB (the real one is 239 MiB) and small tokenizer
files. The portal runs under gunicorn (2 gthread workers x 4 threads) with LocalStorage: the client asks for the
revision and the tree, then for each file sends a HEAD to `/resolve/` (302 to a signed storage URL on the portal,
which it follows) and GETs the bytes from the portal's storage view. The peer is nginx serving the same files
from the same directory, with the Hub's metadata as static JSON and the headers the client reads (X-Repo-Commit,
X-Linked-Etag, X-Linked-Size) set per file: the least any server can do for this client. Rounds interleave the
two, each into an empty cache; every file's SHA-256 is checked after each download.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench.common import Bench, files_store, free_port, goal_line, print_machine, print_table, save_results, wait_port

REPO_ID = "facebook/opt-125m"
GOAL_RATIO = 1.5  # portal wall time / nginx wall time
PORTAL, NGINX = "portal (HF-compatible endpoints)", "nginx serving the files directly"


def seed(weight_bytes: int):
    from access import catalog_data
    from access.models import ModelRelease
    from access.storage import get_storage

    row = next(r for r in catalog_data.releases() if r["repo_id"] == REPO_ID)
    release = ModelRelease.objects.create(**row)
    files = [
        (p, weight_bytes if p.endswith(".bin") else catalog_data.synthetic_size(p, 0))
        for p in catalog_data.release_files(release.name)
    ]
    files_store(release, files, [get_storage()])
    release.refresh_from_db()
    return release


def nginx_static(bench: Bench, release, storage_dir: Path) -> str:
    """nginx answering the client's three kinds of request from files, as a static mirror of the Hub would."""
    from access.api.hf import tree_entries

    root = bench.tmp / "hub"
    api = root / "api" / "models" / REPO_ID
    (api / "revision").mkdir(parents=True)
    (api / "tree").mkdir(parents=True)
    (api / "revision" / "main").write_text(json.dumps({"id": REPO_ID, "sha": release.revision, "siblings": []}))
    (api / "tree" / release.revision).write_text(json.dumps(tree_entries(release, prefix="", recursive=True)))
    etags = []
    for file in release.files.all():
        etags.append(f'"/{REPO_ID}/resolve/{release.revision}/{file.path}" \'"{file.sha256}"\';')
    port = free_port()
    prefix = bench.tmp / "nginx-hub"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 2;
{"user root;" if os.geteuid() == 0 else ""}
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map_hash_bucket_size 256;
    map $uri $linked_etag {{ {" ".join(etags)} }}
    server {{
        listen 127.0.0.1:{port};
        location /api/ {{ root {root}; default_type application/json; }}
        location ~ ^/{REPO_ID}/resolve/[^/]+/(?<file>.+)$ {{
            alias {storage_dir}/{REPO_ID}/$file;
            add_header X-Repo-Commit {release.revision};
            add_header X-Linked-Etag $linked_etag;
        }}
    }}
}}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    bench.procs.start(
        "nginx", [nginx, "-p", prefix, "-c", conf, "-g", "daemon off;"], env=bench.env(), log=prefix / "stdout"
    )
    try:
        wait_port(port)
    except RuntimeError:
        print((prefix / "stdout").read_text(), file=sys.stderr)
        raise
    return f"http://127.0.0.1:{port}"


def download(endpoint: str, release, target: Path) -> float:
    from huggingface_hub import snapshot_download

    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    folder = snapshot_download(REPO_ID, endpoint=endpoint, cache_dir=target / "cache", token=False, max_workers=8)
    elapsed = time.perf_counter() - started
    for file in release.files.all():
        digest = hashlib.sha256()
        with open(Path(folder) / file.path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        assert digest.hexdigest() == file.sha256, f"{endpoint}: {file.path} does not match its SHA-256"
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight-mib", type=int, default=256, help="size of pytorch_model.bin in MiB (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()

    print_machine()
    with Bench("hf") as bench:
        release = seed(args.weight_mib * 1024 * 1024)
        total = sum(release.files.values_list("size", flat=True))
        n_files = release.files.count()
        env = bench.env()
        portal_url, _ = bench.gunicorn(env=env)
        nginx_url = nginx_static(bench, release, Path(env["LOCAL_STORAGE_DIR"]))
        times: dict[str, list[float]] = {PORTAL: [], NGINX: []}
        download(portal_url, release, bench.tmp / "warm")  # imports, connections, page cache
        for _ in range(args.rounds):
            times[PORTAL].append(download(portal_url, release, bench.tmp / "portal"))
            times[NGINX].append(download(nginx_url, release, bench.tmp / "nginx"))
            bench.procs.check_alive()

    print(
        f"\nsnapshot_download of {REPO_ID} ({n_files} files, {total / 2**20:.0f} MiB), "
        f"{args.rounds} interleaved rounds, median; SHA-256 of every file checked after each run\n"
    )
    ratios = [p / n for p, n in zip(times[PORTAL], times[NGINX], strict=True)]
    rows = [
        (
            name,
            f"{statistics.median(t):6.2f}",
            f"{total / 2**20 / statistics.median(t):8.0f}",
            f"{statistics.median(ratios):5.2f}x" if name == PORTAL else "1.00x",
        )
        for name, t in times.items()
    ]
    print_table(("target", "wall (s)", "MiB/s", "vs nginx"), rows)
    ratio = statistics.median(ratios)
    goal_line(f"portal within {GOAL_RATIO:g}x of nginx direct ({ratio:.2f}x)", ratio <= GOAL_RATIO)
    save_results("hf", {"args": vars(args), "times": times, "ratio": ratio, "bytes": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
