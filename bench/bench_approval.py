"""Benchmark: approval -> grant email latency with a real Celery worker on the Redis broker.

Run from the repository root (needs PostgreSQL and Redis; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_approval.py [--approvals 50] [--storage local|s3]

A reviewer approves pending OPT-175B requests through the API (POST /api/v1/review/access-requests/<id>/approve,
Bearer token) on gunicorn; `celery -A portal worker -c 2` (a separate process, same env, not eager) runs grant_issue:
the grant, 992 signed URLs in a UrlBatch, and the grant email (an OutboundEmail row, created when it is sent).
Latency = OutboundEmail.created_at - the moment the approve call returned. Two runs of --approvals each:
one at a time (approve, wait for the email) and a burst (all approvals back to back, then wait). The peer, in the
same run, is a no-op task through the same broker and worker (enqueue -> task ran).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OPT_175B,
    Bench,
    goal_line,
    percentile,
    print_machine,
    print_table,
    request_create,
    reviewer_create,
    save_results,
    seed_opt175b,
    user_create,
)

GOAL_P50_S = 1.0
TIMEOUT_S = 120.0


def ts(dt: datetime) -> float:
    return dt.replace(tzinfo=dt.tzinfo or UTC).timestamp()


def wait_emails(emails: list[str], deadline: float) -> dict[str, object]:
    from access.models import OutboundEmail

    found: dict[str, object] = {}
    while len(found) < len(emails):
        rows = OutboundEmail.objects.filter(template="grant_issued", to__in=[e for e in emails if e not in found])
        for row in rows:
            found[row.to] = row
        if len(found) < len(emails):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(emails) - len(found)} grant emails did not arrive in {TIMEOUT_S:g}s")
            time.sleep(0.005)
    return found


def noop_task_latency(n: int, procs) -> list[float]:
    from django.core.cache import cache

    from bench.tasks import stamp

    out = []
    for _ in range(n):
        key = f"bench-stamp-{uuid.uuid4().hex}"
        sent = time.time()
        stamp.apply_async(args=(key,))
        deadline = time.monotonic() + TIMEOUT_S
        while (done := cache.get(key)) is None:
            if time.monotonic() > deadline:
                procs.check_alive()
                raise RuntimeError("the Celery worker did not run the stamp task")
            time.sleep(0.002)
        out.append(done - sent)
    return out


def approve(session, base: str, access_request) -> float:
    response = session.post(
        f"{base}/api/v1/review/access-requests/{access_request.public_id}/approve",
        json={"reason": "Benchmark approval."},
        timeout=30,
    )
    returned = time.time()
    assert response.status_code == 200, (response.status_code, response.text[:500])
    assert response.json().get("grant_issuance") == "queued", response.text[:500]
    return returned


def breakdown(requests_, returned: dict, found: dict) -> dict:
    """Per approval: total latency, queue wait (returned -> grant issued_at), task work (issued -> email)."""
    from access.models import Grant

    grants = {g.request_id: g for g in Grant.objects.filter(request__in=[r.pk for r in requests_])}
    total, wait, work = [], [], []
    for r in requests_:
        email_at = ts(found[r.email].created_at)
        issued = ts(grants[r.pk].issued_at)
        total.append(email_at - returned[r.pk])
        wait.append(issued - returned[r.pk])
        work.append(email_at - issued)
    return {"total": total, "wait": wait, "work": work}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=50, help="approvals per run (default 50)")
    parser.add_argument("--storage", choices=["local", "s3"], default="local", help="storage backend (default local)")
    args = parser.parse_args()

    import requests

    print_machine()
    with Bench("approval") as bench:
        env = bench.env()
        if args.storage == "s3":
            server = bench.nanio()
            env.update(bench.s3_env(server))
        seed_opt175b()  # file rows; grant_issue signs URLs without touching the objects
        from access.models import AccessRequest, ModelRelease, OutboundEmail, UrlBatch

        release = ModelRelease.objects.get(repo_id=OPT_175B)
        _, reviewer_token = reviewer_create()
        batches = {
            mode: [request_create(user_create(f"{mode}-{i}@bench.example"), release) for i in range(args.approvals)]
            for mode in ("sequential", "burst")
        }
        bench.celery_worker(env=env, concurrency=2, include="bench.tasks")
        base, _ = bench.gunicorn(env=env)
        noop_task_latency(3, bench.procs)  # worker up and warm
        peer = noop_task_latency(args.approvals, bench.procs)

        results = {}
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {reviewer_token}"
            # one at a time
            returned, found = {}, {}
            for r in batches["sequential"]:
                returned[r.pk] = approve(session, base, r)
                found.update(wait_emails([r.email], time.monotonic() + TIMEOUT_S))
            results["one at a time"] = breakdown(batches["sequential"], returned, found)
            # burst
            returned = {}
            started = time.time()
            for r in batches["burst"]:
                returned[r.pk] = approve(session, base, r)
            found = wait_emails([r.email for r in batches["burst"]], time.monotonic() + TIMEOUT_S)
            burst_seconds = max(ts(e.created_at) for e in found.values()) - started
            results[f"burst of {args.approvals}"] = breakdown(batches["burst"], returned, found)

        # Exactly one grant, one ready batch of 992 URLs and one grant email per approval.
        approved = [r.pk for rs in batches.values() for r in rs]
        assert AccessRequest.objects.filter(pk__in=approved, status="approved", grant__isnull=False).count() == len(
            approved
        )
        ready = UrlBatch.objects.filter(grant__request__in=approved, status="ready")
        assert ready.count() == len(approved)
        assert all(len(b.urls) == 992 for b in ready.only("urls"))
        assert OutboundEmail.objects.filter(template="grant_issued").count() == len(approved)

    print(
        f"\n{args.approvals} approvals per run through the API; celery worker -c 2 (prefork), Redis broker; "
        f"PostgreSQL; storage {args.storage}; 992 URLs signed per grant\n"
    )
    peer_p50 = percentile(peer, 50)
    header = ("run", "p50 (s)", "p99 (s)", "queue wait p50 (s)", "grant_issue p50 (s)", "p50 vs no-op task")
    rows = [
        (
            "no-op task (enqueue -> ran)",
            f"{peer_p50:.3f}",
            f"{percentile(peer, 99):.3f}",
            "-",
            "-",
            "1.0x",
        )
    ]
    for name, r in results.items():
        rows.append(
            (
                f"approval -> grant email, {name}",
                f"{percentile(r['total'], 50):.3f}",
                f"{percentile(r['total'], 99):.3f}",
                f"{percentile(r['wait'], 50):.3f}",
                f"{percentile(r['work'], 50):.3f}",
                f"{percentile(r['total'], 50) / peer_p50:.0f}x",
            )
        )
    print_table(header, rows)
    print(
        f"\nburst: {args.approvals} grants issued and emailed in {burst_seconds:.1f}s "
        f"({args.approvals / burst_seconds:.1f} grants/s)\n"
    )
    p50 = percentile(results["one at a time"]["total"], 50)
    goal_line(f"approval -> email p50 < {GOAL_P50_S:g} s, one at a time ({p50:.3f} s)", p50 < GOAL_P50_S)
    save_results("approval", {"args": vars(args), "peer": peer, "results": results, "burst_seconds": burst_seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
