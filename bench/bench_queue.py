"""Benchmark: the reviewer queue page (/review/) with 100,000 access requests in PostgreSQL.

Run from the repository root (needs PostgreSQL; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_queue.py [--loads 50] [--requests 100000]

Seeds 25,000 applicants x 4 gated releases = 100,000 AccessRequests with bulk_create (statuses, countries,
organisations and dates drawn from a fixed-seed distribution), then loads the real view through Django's test client
(signed in as a reviewer: same URLconf, middleware, queries and template as in production; no HTTP) --loads times per
case and prints p50/p99 per page load. Each case is measured with the app's queue indexes and again with them
dropped inside a transaction that is rolled back, and EXPLAIN shows which index the page query uses.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Bench, goal_line, percentile, print_machine, print_table, reviewer_create, save_results

GOAL_MS = 200.0
APP_INDEXES = (
    "request_queue_idx",
    "request_release_queue_idx",
    "request_country_queue_idx",
    "request_orgtype_queue_idx",
)
STATUSES = [("pending", 30), ("needs_info", 5), ("approved", 45), ("rejected", 15), ("withdrawn", 5)]
COUNTRIES = [
    ("US", 25), ("CN", 12), ("IN", 10), ("DE", 7), ("GB", 7), ("FR", 5), ("CA", 4), ("JP", 4), ("KR", 3), ("NL", 3),
    ("CH", 2), ("IT", 2), ("ES", 2), ("BR", 2), ("AU", 2), ("SE", 1), ("PL", 1), ("IL", 1), ("SG", 1), ("TW", 1),
    ("FI", 1), ("DK", 1), ("AT", 1), ("BE", 1), ("NO", 1), ("PT", 1), ("MX", 1), ("ZA", 1), ("TR", 1), ("IR", 1),
]  # fmt: skip
ORG_TYPES = [("academic", 70), ("industry_research", 15), ("nonprofit", 7), ("government", 5), ("other", 3)]
FIRST = "Alice Bob Chen Dmitri Elena Fatima Gustavo Hiroshi Ines Jamal Kavya Lars Mei Nikolai Olga Priya Quentin Rosa"
LAST = "Smith Wang Kumar Müller Garcia Kim Nguyen Rossi Tanaka Silva Cohen Novak Ivanova Okafor Larsen Dubois Kowalski"
AFFILIATIONS = [
    "Massachusetts Institute of Technology", "Stanford University", "Tsinghua University", "ETH Zürich",
    "University of Oxford", "Max Planck Institute for Informatics", "Indian Institute of Science", "Mila",
    "University of Tokyo", "KAIST", "University of Amsterdam", "Inria", "Allen Institute for AI",
    "University of Toronto", "Carnegie Mellon University", "EPFL", "Peking University", "University of Cambridge",
]  # fmt: skip


def weighted(rng: random.Random, table: list[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def seed(n_requests: int) -> dict:
    """Applicants x gated releases, one request per pair (so the one-open-request constraint always holds)."""
    from django.contrib.auth.hashers import make_password

    from access.models import AccessRequest, License, ModelRelease, User

    rng = random.Random(175)
    license_obj = License.objects.create(slug="opt-175b-noncommercial", version="1.0", title="OPT-175B", text="...")
    releases = [
        ModelRelease.objects.create(repo_id=repo, display_name=repo, access="gated", license=license_obj)
        for repo in ("facebook/opt-66b", "facebook/opt-175b", "bench/gated-a", "bench/gated-b")
    ]
    n_users = -(-n_requests // len(releases))
    password = make_password("bench")
    first, last = FIRST.split(), LAST.split()
    users = [
        User(email=f"applicant{i}@{rng.choice(['uni', 'lab', 'inst', 'college'])}{i % 700}.example", password=password)
        for i in range(n_users)
    ]
    User.objects.bulk_create(users, batch_size=5000)
    users = list(User.objects.filter(email__startswith="applicant").order_by("pk"))
    names = {u.pk: f"{rng.choice(first)} {rng.choice(last)}" for u in users}
    now = datetime.now(UTC)
    # Oldest first, so ids grow with created_at as they do in production.
    times = sorted(now - timedelta(seconds=rng.uniform(0, 730 * 86400)) for _ in range(n_requests))
    pairs = [(u, r) for u in users for r in releases][:n_requests]
    rng.shuffle(pairs)
    rows = []
    for (user, release), created in zip(pairs, times, strict=True):
        status = weighted(rng, STATUSES)
        decided = status in ("approved", "rejected")
        rows.append(
            AccessRequest(
                applicant=user,
                release=release,
                status=status,
                full_name=names[user.pk],
                email=user.email,
                affiliation=rng.choice(AFFILIATIONS),
                organization_type=weighted(rng, ORG_TYPES),
                country=weighted(rng, COUNTRIES),
                role=rng.choice(["PhD student", "Postdoc", "Professor", "Research engineer", "Scientist"]),
                intended_use="Studying the behaviour of large language models for a research project. " * 3,
                license=license_obj,
                license_version="1.0",
                license_accepted_at=created,
                license_accepted_ip="127.0.0.1",
                noncommercial_attested=True,
                decided_at=created + timedelta(days=2) if decided else None,
                decision_reason="Looks fine." if decided else "",
                created_at=created,
            )
        )
    AccessRequest.objects.bulk_create(rows, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE access_accessrequest")
        cursor.execute("VACUUM ANALYZE access_user")
    return {"users": len(users), "requests": AccessRequest.objects.count()}


def cases() -> dict[str, str]:
    return {
        "page 1 (pending)": "/review/",
        "page 1000 (any status, offset 49,950)": "/review/?status=&page=1000",
        "status + release filter": "/review/?status=pending&release=facebook/opt-175b",
        "country filter (DE)": "/review/?country=DE",
        "search 'kowalski' (pending)": "/review/?search=kowalski",
        "search 'kowalski' (any status)": "/review/?status=&search=kowalski",
    }


def queryset_for(url: str):
    """The page query the view runs for this URL (same selector, same slicing)."""
    from urllib.parse import parse_qs, urlsplit

    from access import selectors

    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}
    filters = {k: query.get(k, "pending" if k == "status" else "") or None for k in ("status", "release", "country")}
    qs = selectors.review_queue(**filters, search=query.get("search") or None)
    page = int(query.get("page", 1))
    return qs[(page - 1) * 50 : page * 50]


def indexes_used(url: str) -> str:
    plan = queryset_for(url).explain()
    used = sorted(set(re.findall(r"(?:Index(?: Only)? Scan(?: Backward)?) using (\w+)", plan)))
    seq = sorted(set(re.findall(r"Seq Scan on (\w+)", plan)))
    parts = [", ".join(used) or "no index"]
    if seq:
        parts.append("seq scan " + ", ".join(seq))
    return "; ".join(parts)


def measure(client, url: str, loads: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1e3)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    body = response.content.decode()
    count = re.search(r"\((\d+) requests\)", body)
    return {
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "queries": len(ctx.captured_queries),
        "sql_ms": sum(float(q["time"]) for q in ctx.captured_queries) * 1e3,
        "matches": int(count.group(1)) if count else -1,
        "rows": body.count('name="ids"'),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=50, help="timed page loads per case (default 50)")
    parser.add_argument("--requests", type=int, default=100_000, help="access requests to seed (default 100000)")
    parser.add_argument("--skip-unindexed", action="store_true", help="do not measure without the app's indexes")
    args = parser.parse_args()

    print_machine()
    with Bench("queue"):
        started = time.perf_counter()
        seeded = seed(args.requests)
        seconds = time.perf_counter() - started
        print(f"seeded {seeded['requests']:,} requests from {seeded['users']:,} applicants in {seconds:.1f}s\n")

        from django.db import connection, transaction
        from django.test import Client

        reviewer, _ = reviewer_create()
        client = Client()
        client.force_login(reviewer)
        urls = cases()
        plans = {name: indexes_used(url) for name, url in urls.items()}
        indexed = {name: measure(client, url, args.loads) for name, url in urls.items()}
        unindexed = {}
        if not args.skip_unindexed:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("DROP INDEX " + ", ".join(APP_INDEXES))
                unindexed = {name: measure(client, url, max(5, args.loads // 5)) for name, url in urls.items()}
                transaction.set_rollback(True)

    print(
        f"GET through the real view as a reviewer (test client, no HTTP), {args.loads} loads per case; "
        "50 rows per page; p99 of the loads\n"
    )
    base = indexed["page 1 (pending)"]["p50"]
    header = ["case", "matches", "p50 (ms)", "p99 (ms)", "SQL", "SQL ms", "vs page 1"]
    if unindexed:
        header += ["p50 w/o app indexes", "index speed-up"]
    rows = []
    for name, r in indexed.items():
        row = [
            name,
            f"{r['matches']:,}",
            f"{r['p50']:7.1f}",
            f"{r['p99']:7.1f}",
            str(r["queries"]),
            f"{r['sql_ms']:6.1f}",
            f"{r['p50'] / base:5.2f}x",
        ]
        if unindexed:
            u = unindexed[name]
            row += [f"{u['p50']:7.1f}", f"{u['p50'] / r['p50']:5.1f}x"]
        rows.append(row)
    print_table(header, rows)
    print("\npage query plan (EXPLAIN, with the app's indexes):")
    for name, plan in plans.items():
        print(f"  {name}: {plan}")
    print()
    worst = max(r["p99"] for r in indexed.values())
    worst_p50 = max(r["p50"] for r in indexed.values())
    goal_line(f"every page < {GOAL_MS:g} ms (worst p50 {worst_p50:.1f} ms, worst p99 {worst:.1f} ms)", worst < GOAL_MS)
    save_results("queue", {"args": vars(args), "indexed": indexed, "unindexed": unindexed, "plans": plans})
    return 0


if __name__ == "__main__":
    sys.exit(main())
