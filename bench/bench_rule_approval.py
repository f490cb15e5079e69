"""Benchmark: apply -> grant for a request a release's decision rule approves, with a real Celery worker on Redis.

Run from the repository root (needs PostgreSQL and Redis; `make bench` runs all benchmarks):

    .venv/bin/python bench/bench_rule_approval.py [--applications 30]

OPT-175B (992 shards) has one rule: approve verified faculty of a confirmed institution. Each researcher holds a
verified identity from that institution's provider (faculty@uni.example, seen now) and applies through the API
(POST /api/v1/access-requests, Bearer token) on gunicorn; the rule approves inside the request, through the same
approve service a reviewer uses, and `celery -A portal worker -c 2` (a separate process, not eager) runs
grant_issue: the grant, 992 signed URLs in a UrlBatch, and the grant email. Latency = the grant email's
OutboundEmail.created_at - the moment the apply call was sent (what the researcher waits, from "Submit" to the
email saying they have access). One application at a time.
"""

from __future__ import annotations

import argparse
import sys
import time
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
    save_results,
    seed_opt175b,
    token_create,
    user_create,
)

GOAL_P50_S = 1.0
TIMEOUT_S = 120.0
ROR = "0benchu01"
ISSUER = "https://idp.uni.example"


def institution_and_rule(release):
    from access import services

    operator = services.command_actor("bench")
    institution = services.institution_create(
        actor=operator, ror_id=ROR, name="Bench University", email_domains=["uni.example"], issuers=[ISSUER]
    )
    services.institution_confirm(actor=operator, institution=institution)
    services.release_rules_set(
        actor=operator,
        release=release,
        rules=[{"action": "approve", "conditions": {"affiliation_kinds": ["faculty"], "institutions": [ROR]}}],
    )
    return institution


def faculty_member(i: int, institution) -> tuple[str, str]:
    """A researcher with a verified identity asserting faculty@uni.example (as a sign-in records it); their token."""
    from allauth.socialaccount.models import SocialAccount
    from django.utils import timezone

    from access.models import VerifiedIdentity

    email = f"faculty{i}@uni.example"
    user = user_create(email)
    account = SocialAccount.objects.create(user=user, provider="bench-university", uid=f"sub-{i}")
    VerifiedIdentity.objects.create(
        user=user,
        account=account,
        provider="bench-university",
        issuer=ISSUER,
        subject=f"sub-{i}",
        institution=institution,
        affiliations=["faculty@uni.example", "member@uni.example"],
        verified_email=email,
        last_seen_at=timezone.now(),
    )
    return email, token_create(user)


def application() -> dict:
    return {
        "repo_id": OPT_175B,
        "full_name": "Bench Researcher",
        "affiliation": "Bench University",
        "organization_type": "academic",
        "country": "NL",
        "role": "Professor",
        "intended_use": "Benchmarking how quickly a rule-approved request becomes a grant, for a research "
        "portal's documentation; non-commercial research only.",
        "publications": "",
        "accept_license": True,
        "noncommercial_attested": True,
    }


def wait_email(email: str) -> datetime:
    from access.models import OutboundEmail

    deadline = time.monotonic() + TIMEOUT_S
    while True:
        row = OutboundEmail.objects.filter(template="grant_issued", to=email).first()
        if row is not None:
            return row.created_at
        if time.monotonic() > deadline:
            raise RuntimeError(f"no grant email for {email} in {TIMEOUT_S:g}s")
        time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applications", type=int, default=30, help="applications (default 30)")
    args = parser.parse_args()

    import requests

    print_machine()
    with Bench("rule_approval") as bench:
        env = bench.env()
        seed_opt175b()
        from access.models import AccessRequest, Grant, ModelRelease, UrlBatch

        release = ModelRelease.objects.get(repo_id=OPT_175B)
        institution = institution_and_rule(release)
        people = [faculty_member(i, institution) for i in range(args.applications + 2)]
        bench.celery_worker(env=env, concurrency=2)
        base, _ = bench.gunicorn(env=env)

        total, approve_call, work = [], [], []
        for n, (email, token) in enumerate(people):
            sent = time.time()
            response = requests.post(
                f"{base}/api/v1/access-requests",
                json=application(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            returned = time.time()
            assert response.status_code == 201, (response.status_code, response.text[:500])
            assert response.json()["status"] == "approved", response.text[:500]
            emailed = wait_email(email).replace(tzinfo=UTC).timestamp()
            if n < 2:
                continue  # gunicorn and the worker warm up
            issued = Grant.objects.get(user__email=email).issued_at.timestamp()
            total.append(emailed - sent)
            approve_call.append(returned - sent)
            work.append(emailed - issued)

        mine = AccessRequest.objects.filter(release=release)
        assert mine.filter(status="approved", decided_by_rule__isnull=False, grant__isnull=False).count() == len(people)
        assert UrlBatch.objects.filter(grant__request__in=mine, status="ready").count() == len(people)

    print(
        f"\n{args.applications} applications through the API, each approved by a decision rule; celery worker -c 2 "
        "(prefork), Redis broker; PostgreSQL; local storage; 992 URLs signed per grant\n"
    )
    header = ("measure", "p50 (s)", "p99 (s)")
    rows = [
        ("apply -> grant email", f"{percentile(total, 50):.3f}", f"{percentile(total, 99):.3f}"),
        (
            "apply call (rule approves inside it)",
            f"{percentile(approve_call, 50):.3f}",
            f"{percentile(approve_call, 99):.3f}",
        ),
        ("grant issued -> email (worker)", f"{percentile(work, 50):.3f}", f"{percentile(work, 99):.3f}"),
    ]
    print_table(header, rows)
    p50 = percentile(total, 50)
    goal_line(f"apply -> grant p50 < {GOAL_P50_S:g} s for a rule-approved request ({p50:.3f} s)", p50 < GOAL_P50_S)
    save_results("rule_approval", {"args": vars(args), "total": total, "apply_call": approve_call, "work": work})
    return 0


if __name__ == "__main__":
    sys.exit(main())
