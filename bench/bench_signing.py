"""Benchmark: presign the 992 OPT-175B shard URLs with boto3 and with access.sigv4.Presigner.

Run from the repository root (no Django needed):

    .venv/bin/python bench/bench_signing.py [--rounds 7]

Both signers are built once and reused, as the portal does; each round signs all 992 keys. Before timing, the two
outputs are compared under one frozen clock and the script exits 1 if they differ.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from botocore.config import Config

from access.sigv4 import Presigner

BUCKET = "models"
REGION = "us-east-1"
ENDPOINT_URL = "http://127.0.0.1:9000"
ADDRESSING_STYLE = "path"
ACCESS_KEY = "benchaccesskey"
SECRET_KEY = "bench-secret-key-0123456789"
EXPIRES_IN = 3600
KEYS = [
    f"facebook/opt-175b/checkpoint_last-model_part-{part}-shard{shard}.pt" for part in range(8) for shard in range(124)
]
GOAL_TOTAL_MS = 10.0
GOAL_SPEEDUP = 20.0


def make_boto3_client():
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT_URL,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": ADDRESSING_STYLE}),
    )


def make_presigner() -> Presigner:
    return Presigner(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        endpoint_url=ENDPOINT_URL,
        addressing_style=ADDRESSING_STYLE,
    )


def sign_with_boto3(client) -> list[str]:
    return [
        client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=EXPIRES_IN)
        for key in KEYS
    ]


def sign_with_presigner(signer: Presigner, now: datetime.datetime | None = None) -> list[str]:
    return [signer.presign_get(bucket=BUCKET, key=key, expires_in=EXPIRES_IN, now=now) for key in KEYS]


def outputs_identical(client, signer: Presigner) -> bool:
    now = datetime.datetime(2024, 5, 1, 12, 0, 0)
    # botocore reads the signing time through get_current_datetime, imported by name into botocore.auth.
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        expected = sign_with_boto3(client)
    return expected == sign_with_presigner(signer, now)


def time_rounds(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median and best wall time of one full 992-URL pass, in seconds (after one untimed warm-up pass)."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed passes per method (default 7)")
    args = parser.parse_args()

    client, signer = make_boto3_client(), make_presigner()
    if not outputs_identical(client, signer):
        print("FAIL: Presigner output differs from boto3 for a frozen clock", file=sys.stderr)
        return 1
    print(f"outputs identical for all {len(KEYS)} keys (frozen clock); {args.rounds} rounds, median (best)\n")

    # Real clock in the timed runs: reading it is part of the per-URL cost on both sides.
    results = {
        "boto3 generate_presigned_url": time_rounds(lambda: sign_with_boto3(client), args.rounds),
        "access.sigv4.Presigner": time_rounds(lambda: sign_with_presigner(signer), args.rounds),
    }
    base_median, base_best = results["boto3 generate_presigned_url"]
    header = ("method", f"total for {len(KEYS)} (ms)", "per URL (µs)", "speed-up")
    rows = [
        (
            name,
            f"{median * 1e3:8.2f} ({best * 1e3:8.2f})",
            f"{median / len(KEYS) * 1e6:7.2f} ({best / len(KEYS) * 1e6:7.2f})",
            f"{base_median / median:6.1f}x ({base_best / best:6.1f}x)",
        )
        for name, (median, best) in results.items()
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

    fast_median, _ = results["access.sigv4.Presigner"]
    passed = fast_median * 1e3 <= GOAL_TOTAL_MS and base_median / fast_median >= GOAL_SPEEDUP
    print(
        f"\ngoal: <={GOAL_TOTAL_MS:g} ms for {len(KEYS)}, >={GOAL_SPEEDUP:g}x  (median: {fast_median * 1e3:.2f} ms, "
        f"{base_median / fast_median:.1f}x)  {'PASS' if passed else 'MISS'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
