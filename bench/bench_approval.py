"""Benchmark: approval -> grant email latency with a real Celery worker on the Redis broker, without webhooks and
with webhook endpoints that never answer.

Run from the repository root (needs PostgreSQL and Redis; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_approval.py [--approvals 50] [--storage local|s3] [--dead-endpoints 3]

A reviewer approves pending OPT-175B requests through the API (POST /api/v1/review/access-requests/<id>/approve,
Bearer token) on gunicorn; `celery -A portal worker -c 2` (a separate process, same env, not eager) runs grant_issue:
the grant, 992 signed URLs in a UrlBatch, and the grant email (an OutboundEmail row, created when it is sent);
`celery -A portal worker -c 2 --queues webhooks` runs the webhook deliveries, as production does.
Latency = OutboundEmail.created_at - the moment the approve call returned. Runs of --approvals each: one at a time
(approve, wait for the email) and a burst (all approvals back to back, then wait), first with no webhook endpoint,
then with --dead-endpoints registered endpoints that accept connections and never answer (every approval then
sends each of them two events, `access_request.approved` and `grant.issued`). The peer, in the same run, is a no-op
task through the same broker and worker (enqueue -> task ran).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OPT_175B,
    REDIS_DBS,
    REDIS_URL,
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
LOOPBACK = "127.0.0.0/8"  # where the endpoints that never answer listen (WEBHOOK_ALLOWED_NETWORKS)
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


def dead_endpoints(n: int, owner) -> list[socket.socket]:
    """`n` webhook endpoints that accept connections (the kernel completes them) and never read or answer."""
    from django.test import override_settings

    from access import services

    listeners = []
    for _ in range(n):
        listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        listeners.append(listener)
        with override_settings(WEBHOOK_ALLOWED_NETWORKS=[ipaddress.ip_network(LOOPBACK)]):
            services.webhook_endpoint_create(
                actor=services.Actor(user=owner, credential="command:bench"),
                url=f"http://127.0.0.1:{listener.getsockname()[1]}/hooks",
                events=[],
            )
    return listeners


def run_approvals(session, base: str, batch: list, results: dict, name: str) -> float:
    """One at a time for "one at a time" runs, else a burst; returns the burst's seconds (0 one at a time)."""
    if name.startswith("one at a time"):
        returned, found = {}, {}
        for r in batch:
            returned[r.pk] = approve(session, base, r)
            found.update(wait_emails([r.email], time.monotonic() + TIMEOUT_S))
        results[name] = breakdown(batch, returned, found)
        return 0.0
    returned = {}
    started = time.time()
    for r in batch:
        returned[r.pk] = approve(session, base, r)
    found = wait_emails([r.email for r in batch], time.monotonic() + TIMEOUT_S)
    results[name] = breakdown(batch, returned, found)
    return max(ts(e.created_at) for e in found.values()) - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=50, help="approvals per run (default 50)")
    parser.add_argument("--storage", choices=["local", "s3"], default="local", help="storage backend (default local)")
    parser.add_argument(
        "--dead-endpoints", type=int, default=3, help="webhook endpoints that never answer, in the second runs (3)"
    )
    args = parser.parse_args()

    import requests

    print_machine()
    with Bench("approval") as bench:
        env = bench.env(WEBHOOK_ALLOWED_NETWORKS=LOOPBACK)
        if args.storage == "s3":
            server = bench.nanio()
            env.update(bench.s3_env(server))
        seed_opt175b()  # file rows; grant_issue signs URLs without touching the objects
        from access.models import AccessRequest, ModelRelease, OutboundEmail, UrlBatch

        release = ModelRelease.objects.get(repo_id=OPT_175B)
        reviewer, reviewer_token = reviewer_create()
        dead = f"{args.dead_endpoints} endpoints that never answer"
        runs = [
            "one at a time",
            f"burst of {args.approvals}",
            f"one at a time, {dead}",
            f"burst of {args.approvals}, {dead}",
        ]
        batches = {
            name: [request_create(user_create(f"run{n}-{i}@bench.example"), release) for i in range(args.approvals)]
            for n, name in enumerate(runs)
        }
        bench.celery_worker(env=env, concurrency=2, include="bench.tasks")
        bench.celery_worker(env=env, concurrency=2, queues="webhooks", name="webhooks")
        base, _ = bench.gunicorn(env=env)
        noop_task_latency(3, bench.procs)  # worker up and warm
        peer = noop_task_latency(args.approvals, bench.procs)

        results, burst_seconds = {}, {}
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {reviewer_token}"
            for name in runs[:2]:
                burst_seconds[name] = run_approvals(session, base, batches[name], results, name)
            listeners = dead_endpoints(args.dead_endpoints, reviewer)
            for name in runs[2:]:
                burst_seconds[name] = run_approvals(session, base, batches[name], results, name)
        webhook_state = webhook_backlog()
        # The webhook worker's own queue: with the breaker, each endpoint that never answers costs one attempt per
        # pause and every other delivery to it waits for its turn without one.
        started = time.monotonic()
        while webhook_backlog()["queued"]["webhooks"] and time.monotonic() - started < TIMEOUT_S:
            time.sleep(0.2)
        drained = {**webhook_backlog(), "seconds": time.monotonic() - started}
        for listener in listeners:
            listener.close()

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
        f"\n{args.approvals} approvals per run through the API; celery worker -c 2 (prefork) and a webhook worker "
        f"-c 2 --queues webhooks, Redis broker; PostgreSQL; storage {args.storage}; 992 URLs signed per grant\n"
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
    print()
    for name, seconds in burst_seconds.items():
        if seconds:
            print(
                f"{name}: {args.approvals} grants issued and emailed in {seconds:.1f}s "
                f"({args.approvals / seconds:.1f} grants/s)"
            )
    print(
        f"\nwebhooks to the {dead} when the last grant was emailed: {webhook_state['deliveries']} deliveries, "
        f"{webhook_state['attempts']} attempts made, {webhook_state['waiting']} waiting; messages queued: "
        f"{webhook_state['queued']['webhooks']} on `webhooks`, {webhook_state['queued']['celery']} on `celery`"
    )
    print(
        f"the webhook worker then went through its queue in {drained['seconds']:.1f}s more "
        f"({drained['queued']['webhooks']} messages left): {drained['attempts']} attempts in all, "
        f"{drained['waiting']} deliveries waiting for their endpoint's turn\n"
    )
    p50 = percentile(results["one at a time"]["total"], 50)
    goal_line(f"approval -> email p50 < {GOAL_P50_S:g} s, one at a time ({p50:.3f} s)", p50 < GOAL_P50_S)
    dead_p50 = percentile(results[runs[2]]["total"], 50)
    goal_line(
        f"approval -> email p50 < {GOAL_P50_S:g} s, one at a time, {dead} ({dead_p50:.3f} s)", dead_p50 < GOAL_P50_S
    )
    save_results(
        "approval",
        {
            "args": vars(args),
            "peer": peer,
            "results": results,
            "burst_seconds": burst_seconds,
            "webhooks": webhook_state,
        },
    )
    return 0


def webhook_backlog() -> dict:
    """The webhook work left when the grants were done: deliveries, attempts made, and messages on each queue."""
    import redis

    from access.models import WebhookAttempt, WebhookDelivery

    broker = redis.Redis.from_url(f"{REDIS_URL}/{REDIS_DBS['broker']}")
    try:
        queued = {name: broker.llen(name) for name in ("webhooks", "celery")}
    finally:
        broker.close()
    return {
        "deliveries": WebhookDelivery.objects.count(),
        "attempts": WebhookAttempt.objects.count(),
        "waiting": WebhookDelivery.objects.filter(status__in=["pending", "retrying"]).count(),
        "queued": queued,
    }


if __name__ == "__main__":
    sys.exit(main())
