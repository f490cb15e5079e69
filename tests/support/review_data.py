"""A small, hand-countable history of two gated releases, for the dashboard, stats API and wait estimates.

Release A (`lab/model-a`, deadline 7 days) and B (`lab/model-b`, deadline 3 days), times relative to now:

    A  r1  created -20d, approved -18d (2 days)   academic           US   grant issued -18d, active
    A  r2  created -15d, rejected -14d (1 day)    industry_research  CN
    A  r3  created -12d, approved  -8d (4 days)   academic           DE   grant issued -8d, revoked -2d
    A  r4  created -10d, pending (overdue: 10 > 7)
    A  r5  created  -2d, pending
    A  r6  created  -5d, needs_info
    A  r7  created -30d, withdrawn
    B  b1  created  -6d, approved  -5d (1 day)    academic           US
    B  b2  created  -4d, pending (overdue: 4 > 3)

Downloads of A: -3d: u1 fetches f1 (100 B) and f2 (50 B), u2 fetches f1 and one manifest; -1d: u1 fetches f1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from access.models import DownloadEvent, Grant, ModelRelease
from tests.factories import AccessRequestFactory, LicenseFactory, ReleaseFactory, UserFactory, add_file

DAY = timedelta(days=1)


@dataclass
class World:
    now: datetime
    a: ModelRelease
    b: ModelRelease
    requests: dict = field(default_factory=dict)
    users: dict = field(default_factory=dict)
    grants: dict = field(default_factory=dict)


def _request(world: World, name: str, release, status: str, created_days: float, decided_days=None, **fields):
    created = world.now - created_days * DAY
    decided = world.now - decided_days * DAY if decided_days is not None else None
    applicant = UserFactory(email=f"{name}@uni.example")
    world.users[name] = applicant
    r = AccessRequestFactory(
        applicant=applicant,
        release=release,
        status=status,
        full_name=f"Applicant {name.upper()}",
        created_at=created,
        license_accepted_at=created,
        decided_at=decided,
        info_requested_at=created + DAY if status == "needs_info" else None,
        **fields,
    )
    world.requests[name] = r
    return r


def seed_review_world(*, with_files: bool = True) -> World:
    now = timezone.now()
    license_ = LicenseFactory()
    a = ReleaseFactory(repo_id="lab/model-a", access="gated", license=license_, review_deadline_days=7)
    b = ReleaseFactory(repo_id="lab/model-b", access="gated", license=license_, review_deadline_days=3)
    world = World(now=now, a=a, b=b)
    _request(world, "r1", a, "approved", 20, 18, organization_type="academic", country="US")
    _request(world, "r2", a, "rejected", 15, 14, organization_type="industry_research", country="CN")
    _request(world, "r3", a, "approved", 12, 8, organization_type="academic", country="DE")
    _request(world, "r4", a, "pending", 10)
    _request(world, "r5", a, "pending", 2)
    _request(world, "r6", a, "needs_info", 5)
    _request(world, "r7", a, "withdrawn", 30)
    _request(world, "b1", b, "approved", 6, 5, organization_type="academic", country="US")
    _request(world, "b2", b, "pending", 4)
    req = world.requests
    world.grants["g1"] = Grant.objects.create(
        user=req["r1"].applicant, release=a, request=req["r1"], issued_at=now - 18 * DAY, expires_at=now + 300 * DAY
    )
    world.grants["g3"] = Grant.objects.create(
        user=req["r3"].applicant,
        release=a,
        request=req["r3"],
        issued_at=now - 8 * DAY,
        expires_at=now + 300 * DAY,
        revoked_at=now - 2 * DAY,
        revoke_reason="Shared the weights.",
    )
    if with_files:
        f1 = add_file(a, "f1.bin", b"x" * 100)
        f2 = add_file(a, "f2.bin", b"y" * 50)
        u1, u2 = req["r1"].applicant, req["r3"].applicant
        grants = {u1: world.grants["g1"], u2: world.grants["g3"]}
        for when, user, file in [
            (3, u1, f1),
            (3, u1, f2),
            (3, u2, f1),
            (3, u2, None),
            (1, u1, f1),
        ]:
            DownloadEvent.objects.create(
                created_at=now - when * DAY,
                release=a,
                file=file,
                user=user,
                grant=grants[user],
                via="manifest" if file is None else "api",
            )
    return world
