"""Benchmark: the reviewer dashboard (/review/dashboard) and the stats API (/api/v1/review/stats) with 100,000
access requests and 1,000,000 download events in PostgreSQL, side by side with the review queue page.

Run from the repository root (needs PostgreSQL; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_dashboard.py [--loads 20] [--requests 100000] [--downloads 1000000]

Seeds with INSERT … SELECT over generate_series inside PostgreSQL (a million rows in seconds, no Python loop):
25,000 applicants x 4 gated releases = 100,000 requests over two years (statuses, organisation types and
countries drawn at random; decisions 0-10 days after the application), a grant for every approval (5% revoked),
and download events over the last year by grant holders of files of their release (opt-175b has its 992 shards).
Then loads each page through Django's test client signed in as a reviewer (same URLconf, middleware, queries and
template as in production; no HTTP) --loads times and prints p50/p99 and the SQL behind each.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Bench, goal_line, percentile, print_machine, print_table, reviewer_create, save_results

GOAL_MS = 300.0
RELEASES = (("facebook/opt-175b", 992), ("facebook/opt-66b", 64), ("bench/gated-a", 16), ("bench/gated-b", 16))
COUNTRIES = [
    "US",
    "CN",
    "IN",
    "DE",
    "GB",
    "FR",
    "CA",
    "JP",
    "KR",
    "NL",
    "CH",
    "IT",
    "ES",
    "BR",
    "AU",
    "SE",
    "PL",
    "IL",
    "SG",
    "TW",
    "FI",
    "DK",
    "AT",
    "BE",
    "NO",
    "PT",
    "MX",
    "ZA",
    "TR",
    "IR",
]


def seed(n_requests: int, n_downloads: int) -> dict:
    from django.db import connection
    from django.utils import timezone

    from access.models import License, ModelFile, ModelRelease

    license_obj = License.objects.create(slug="opt-175b-noncommercial", version="1.0", title="OPT-175B", text="...")
    releases = []
    for repo, n_files in RELEASES:
        release = ModelRelease.objects.create(repo_id=repo, display_name=repo, access="gated", license=license_obj)
        ModelFile.objects.bulk_create(
            ModelFile(
                release=release,
                path=f"checkpoint_last-model_part-{i // 124}-shard{i % 124}.pt",
                size=2_500_000_000 + i,
                sha256=f"{i:064x}",
                storage_key=f"{repo}/{i}",
            )
            for i in range(n_files)
        )
        releases.append(release)
    release_ids = [r.pk for r in releases]
    n_users = -(-n_requests // len(releases))
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO access_user (password, is_superuser, first_name, last_name, is_staff, is_active, date_joined,
                                     email)
            SELECT '!', false, '', '', false, true, %s, 'applicant' || g || '@uni' || (g %% 700) || '.example'
            FROM generate_series(1, %s) g
            """,
            [now, n_users],
        )
        cursor.execute("SELECT min(id) FROM access_user WHERE email LIKE 'applicant%%'")
        first_user = cursor.fetchone()[0]
        # Request n: applicant n / 4, release n % 4 (one request per pair: the one-open-request rule holds).
        cursor.execute(
            """
            INSERT INTO access_accessrequest (
                public_id, applicant_id, release_id, status, full_name, email, affiliation, organization_type,
                country, role, intended_use, publications, answers_text, license_id, license_version,
                license_accepted_at, noncommercial_attested, decision_reason, info_request, info_response,
                decided_at, origin, created_at, updated_at, info_requested_at)
            SELECT md5(g::text || random()::text), %(first_user)s + g / 4, (%(releases)s)[g %% 4 + 1], s.status,
                   'Applicant ' || g, 'applicant' || g || '@uni.example', 'University ' || (g %% 500),
                   (ARRAY['academic','academic','academic','academic','academic','academic','academic',
                          'industry_research','industry_research','nonprofit','government','other'])[1 + (g * 7) %% 12],
                   (%(countries)s::text[])[1 + floor(power(random(), 2) * %(n_countries)s)::int],
                   'Researcher', repeat('Studying large language models. ', 4), '', '', %(license)s, '1.0',
                   s.created, true, '', '', '',
                   CASE WHEN s.status IN ('approved', 'rejected') THEN s.created + random() * interval '10 days' END,
                   'applicant', s.created, s.created,
                   CASE WHEN s.status = 'needs_info' THEN s.created + interval '1 day' END
            FROM generate_series(0, %(n)s - 1) g
            CROSS JOIN LATERAL (
                SELECT now() - random() * interval '730 days' AS created,
                       CASE WHEN r < 0.30 THEN 'pending' WHEN r < 0.35 THEN 'needs_info'
                            WHEN r < 0.80 THEN 'approved' WHEN r < 0.95 THEN 'rejected' ELSE 'withdrawn' END AS status
                FROM (SELECT random() + g * 0 AS r) x
            ) s
            """,
            {
                "first_user": first_user,
                "releases": release_ids,
                "license": license_obj.pk,
                "n": n_requests,
                "countries": COUNTRIES,
                "n_countries": len(COUNTRIES),
            },
        )
        # Pending requests are recent (a queue is worked through): most within weeks, a tail overdue.
        cursor.execute(
            """
            UPDATE access_accessrequest SET created_at = now() - power(random(), 3) * interval '60 days'
            WHERE status IN ('pending', 'needs_info')
            """
        )
        cursor.execute(
            """
            INSERT INTO access_grant (public_id, user_id, release_id, request_id, issued_at, expires_at, revoked_at,
                                      revoke_reason, created_at, updated_at)
            SELECT md5(id::text || random()::text), applicant_id, release_id, id, decided_at,
                   decided_at + interval '365 days',
                   CASE WHEN random() < 0.05 THEN decided_at + random() * interval '200 days' END,
                   '', decided_at, decided_at
            FROM access_accessrequest WHERE status = 'approved'
            """
        )
        cursor.execute(
            """
            CREATE TEMP TABLE bench_holder AS
            SELECT row_number() OVER () AS n, g.id AS grant_id, g.user_id, g.release_id
            FROM access_grant g WHERE g.issued_at > now() - interval '730 days'
            """
        )
        cursor.execute(
            """
            CREATE TEMP TABLE bench_file AS
            SELECT release_id, array_agg(id ORDER BY id) AS ids FROM access_modelfile GROUP BY release_id
            """
        )
        cursor.execute("SELECT count(*) FROM bench_holder")
        holders = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO access_downloadevent (created_at, release_id, file_id, user_id, grant_id, via,
                                              manifest_format)
            SELECT now() - random() * interval '365 days', h.release_id,
                   CASE WHEN d.manifest THEN NULL
                        ELSE f.ids[1 + floor(random() * array_length(f.ids, 1))::int] END,
                   h.user_id, h.grant_id, CASE WHEN d.manifest THEN 'manifest' ELSE 'api' END,
                   CASE WHEN d.manifest THEN 'json' ELSE '' END
            FROM generate_series(1, %s) g
            CROSS JOIN LATERAL (SELECT 1 + floor(random() * %s)::int + g * 0 AS pick, random() < 0.02 AS manifest) d
            JOIN bench_holder h ON h.n = d.pick
            JOIN bench_file f ON f.release_id = h.release_id
            """,
            [n_downloads, holders],
        )
        for table in ("access_user", "access_accessrequest", "access_grant", "access_downloadevent"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    from access.models import AccessRequest, DownloadEvent, Grant

    return {
        "accessrequest": AccessRequest.objects.count(),
        "grant": Grant.objects.count(),
        "downloadevent": DownloadEvent.objects.count(),
    }


def cases() -> dict[str, str]:
    return {
        "queue page 1 (pending)": "/review/",
        "dashboard (90 days)": "/review/dashboard",
        "dashboard (365 days)": "/review/dashboard?period=365",
        "dashboard (opt-175b, 90 days)": "/review/dashboard?release=facebook/opt-175b",
        "stats API (90 days)": "/api/v1/review/stats",
        "stats API (365 days)": "/api/v1/review/stats?period=365",
        "stats API (opt-175b, 30 days)": "/api/v1/review/stats?release=facebook/opt-175b&period=30",
    }


def measure(client, url: str, loads: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:500])
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1e3)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    slowest = max(ctx.captured_queries, key=lambda q: float(q["time"]))
    return {
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "queries": len(ctx.captured_queries),
        "sql_ms": sum(float(q["time"]) for q in ctx.captured_queries) * 1e3,
        "slowest_ms": float(slowest["time"]) * 1e3,
        "slowest": re.sub(r"\s+", " ", slowest["sql"])[:160],
        "bytes": len(response.content),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20, help="timed page loads per case (default 20)")
    parser.add_argument("--requests", type=int, default=100_000, help="access requests to seed (default 100000)")
    parser.add_argument("--downloads", type=int, default=1_000_000, help="download events to seed (default 1000000)")
    args = parser.parse_args()

    print_machine()
    with Bench("dashboard"):
        started = time.perf_counter()
        seeded = seed(args.requests, args.downloads)
        seconds = time.perf_counter() - started
        print(
            f"seeded {seeded['accessrequest']:,} requests, {seeded['grant']:,} grants and "
            f"{seeded['downloadevent']:,} download events in {seconds:.1f}s"
        )
        from access.counts import download_days_rollup

        started = time.perf_counter()
        summed = download_days_rollup()
        rollup_first = time.perf_counter() - started
        started = time.perf_counter()
        download_days_rollup()
        rollup_hourly = time.perf_counter() - started
        print(
            f"summed {summed} closed days of downloads in {rollup_first:.1f}s (the first run of the hourly task); "
            f"the next hourly run took {rollup_hourly * 1e3:.0f} ms\n"
        )
        from django.test import Client

        reviewer, _ = reviewer_create()
        client = Client()
        client.force_login(reviewer)
        results = {name: measure(client, url, args.loads) for name, url in cases().items()}

    print(f"GET through the real view as a reviewer (test client, no HTTP), {args.loads} loads per case\n")
    base = results["queue page 1 (pending)"]["p50"]
    rows = [
        [
            name,
            f"{r['p50']:7.1f}",
            f"{r['p99']:7.1f}",
            str(r["queries"]),
            f"{r['sql_ms']:6.1f}",
            f"{r['slowest_ms']:6.1f}",
            f"{r['p50'] / base:5.2f}x",
        ]
        for name, r in results.items()
    ]
    print_table(["case", "p50 (ms)", "p99 (ms)", "SQL", "SQL ms", "slowest SQL ms", "vs queue"], rows)
    print("\nslowest query per case:")
    for name, r in results.items():
        print(f"  {name}: {r['slowest']}")
    print()
    measured = {k: v for k, v in results.items() if not k.startswith("queue")}
    worst = max(r["p50"] for r in measured.values())
    goal_line(f"dashboard and stats API p50 < {GOAL_MS:g} ms (worst p50 {worst:.1f} ms)", worst < GOAL_MS)
    save_results(
        "dashboard",
        {
            "args": vars(args),
            "seeded": seeded,
            "results": results,
            "rollup_first_s": rollup_first,
            "rollup_hourly_s": rollup_hourly,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
