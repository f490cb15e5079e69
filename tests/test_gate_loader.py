"""The gate's loader keeps its cache fresh whatever writes: every table it reads is watched, and every kind of
write to one (save, QuerySet.update, bulk_create, bulk_update, delete, many-to-many changes) publishes a new
version when its transaction commits; bookkeeping-only updates and other tables publish nothing."""

from __future__ import annotations

import re

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access import services
from access.gate import cache, loader
from access.models import (
    AccessRequest,
    Advisory,
    ApiToken,
    AuditEvent,
    DocumentAcknowledgement,
    DocumentVersion,
    DownloadEvent,
    FileVariant,
    Grant,
    Lab,
    LabMembership,
    LabSeat,
    LibraryCard,
    License,
    MarkingCodeword,
    ModelFile,
    ModelRelease,
    ReleaseDocument,
    ReleaseRevision,
    RevisionWithdrawal,
    User,
)
from access.redisconn import redis_key, shared_redis
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file, grant_for

# Real commits: what is published, and when, is what happens at COMMIT.
pytestmark = pytest.mark.django_db(transaction=True)


def session(user):
    return services.Actor(user=user, credential="session", reauthenticated=True)


@pytest.fixture
def world(local_storage, reviewer):
    """A gated release with a file, a holder with a token, a lab with a grant and a seat, open requests."""
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, "weights.bin", b"weights")
    alice = UserFactory(email="alice@uni.example")
    grant = grant_for(alice, release, reviewer)
    token, _secret = services.token_create(actor=session(alice), name="laptop")
    pi = UserFactory(email="pi@uni.example")
    lab = services.lab_create(actor=session(pi), name="Language Lab")
    lab_request = AccessRequestFactory(applicant=pi, release=release, lab=lab, all_members=True)
    services.request_approve(actor=session(reviewer), access_request=lab_request)
    lab_grant = services.grant_issue(request_id=lab_request.pk)
    other = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    AccessRequestFactory(applicant=alice, release=other)
    return {
        "release": release,
        "alice": alice,
        "pi": pi,
        "grant": grant,
        "token": token,
        "lab": lab,
        "lab_grant": lab_grant,
        "seat": LabSeat.objects.get(grant=lab_grant, user=pi),
        "membership": LabMembership.objects.get(lab=lab, user=pi),
        "request": grant.request,
    }


TABLE = re.compile(r'(?:FROM|JOIN)\s+"(\w+)"')


def test_every_table_the_loader_reads_is_watched(world):
    release, alice, pi = world["release"], world["alice"], world["pi"]
    with CaptureQueriesContext(connection) as queries:
        found = loader.release(repo_id=release.repo_id)
        loader.main_file(repo_id=release.repo_id, path="weights.bin")
        loader.release_file(release=found, path="weights.bin")
        loader.release_file(release=found, path="weights.bin", revision=found.main_revision)
        loader.token(secret_hash=world["token"].secret_hash)
        loader.stored_file(key=f"{release.repo_id}/weights.bin", revision=release.revision)
        loader.stored_file(key=f"{release.repo_id}/weights.bin", revision="")
        for user in (alice, pi):
            loader.inputs(user=user, release=found)
        loader.inputs(user=alice, release=found, grant=world["grant"])
        loader.inputs(user=pi, release=found, grant=world["lab_grant"])
        ModelRelease.objects.filter(pk=release.pk).update(published=False)
        loader.inputs(user=alice, release=ModelRelease.objects.get(pk=release.pk))  # who sees it unpublished
    read = {table for q in queries for table in TABLE.findall(q["sql"]) if q["sql"].startswith("SELECT")}
    assert {"access_grant", "access_labseat", "access_accessrequest", "access_apitoken"} <= read
    assert read <= loader.GATE_TABLES, read - loader.GATE_TABLES


def version() -> str | None:
    value = shared_redis().get(redis_key(loader.VERSION_KEY))
    return value.decode() if value else None


def publishes(write) -> bool:
    """Whether running `write` in a transaction publishes a new version once it commits (and not before)."""
    cache.publish()
    before = version()
    with transaction.atomic():
        write()
        assert version() == before, "published before the commit"
    return version() != before


def writes(world) -> dict:
    """Every kind of write to every model the gate reads, each on a row of the world."""
    release, grant, alice = world["release"], world["grant"], world["alice"]

    def draft(path):
        return ModelFile.objects.create(release=release, path=path, size=1, sha256="a" * 64, storage_key=f"k/{path}")

    document = ReleaseDocument.objects.create(release=release, kind="other", title="Notes", acknowledge_required=True)
    version = DocumentVersion.objects.create(document=document, number=1, body="x\n", sha256="b" * 64, size=2)

    def new_version():
        return DocumentVersion.objects.create(document=document, number=2, body="y\n", sha256="c" * 64, size=2)

    return {
        AccessRequest: {
            "save": lambda: world["request"].save(),
            "update": lambda: AccessRequest.objects.filter(pk=world["request"].pk).update(decision_reason="Fine."),
            "bulk_create": lambda: AccessRequest.objects.bulk_create(
                [AccessRequestFactory.build(applicant=UserFactory(), release=release)]
            ),
            "bulk_update": lambda: AccessRequest.objects.bulk_update([world["request"]], ["decision_reason"]),
        },
        ReleaseDocument: {
            "update": lambda: ReleaseDocument.objects.filter(pk=document.pk).update(acknowledge_required=False),
            "create": lambda: ReleaseDocument.objects.create(release=release, kind="logbook", title="Logbook"),
        },
        DocumentVersion: {"create": new_version},
        DocumentAcknowledgement: {
            "create": lambda: DocumentAcknowledgement.objects.create(version=version, user=alice),
        },
        Advisory: {
            "create": lambda: Advisory.objects.create(
                release=release, severity="low", title="T", summary="S", created_by=alice
            ),
        },
        ApiToken: {
            "save": lambda: world["token"].save(),
            "update": lambda: ApiToken.objects.filter(pk=world["token"].pk).update(revoked_at=timezone.now()),
            "delete": lambda: ApiToken.objects.filter(pk=world["token"].pk).delete(),
        },
        FileVariant: {
            "create": lambda: FileVariant.objects.create(
                file=draft("marked.safetensors"), variant=0, size=1, sha256="b" * 64, storage_key="k/v0"
            ),
        },
        MarkingCodeword: {
            "create": lambda: MarkingCodeword.objects.create(release=release, user=alice, fingerprint="c" * 32),
        },
        Grant: {
            "save": lambda: grant.save(),
            "update": lambda: Grant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now()),
            "bulk_update": lambda: Grant.objects.bulk_update([grant], ["expires_at"]),
        },
        Lab: {
            "update": lambda: Lab.objects.filter(pk=world["lab"].pk).update(name="Renamed"),
            "bulk_create": lambda: Lab.objects.bulk_create([Lab(name="Other", created_by=alice)]),
        },
        LabMembership: {
            "update": lambda: LabMembership.objects.filter(pk=world["membership"].pk).update(left_at=timezone.now()),
        },
        LabSeat: {
            "update": lambda: LabSeat.objects.filter(pk=world["seat"].pk).update(status="ended"),
            "delete": lambda: LabSeat.objects.filter(pk=world["seat"].pk).delete(),
        },
        License: {
            "create": lambda: License.objects.create(slug="x", version="9", title="X", text="X"),
        },
        LibraryCard: {
            "update": lambda: LibraryCard.objects.filter(user=alice).update(revoked_at=timezone.now()),
        },
        ModelFile: {
            "create": lambda: draft("new.bin"),
            "delete": lambda: draft("gone.bin").delete(),
        },
        ModelRelease: {
            "update": lambda: ModelRelease.objects.filter(pk=release.pk).update(published=False),
            "save": lambda: release.save(),
        },
        ReleaseRevision: {
            "update": lambda: ReleaseRevision.objects.filter(pk=release.main_revision_id).update(notes="Notes."),
        },
        RevisionWithdrawal: {
            "create": lambda: RevisionWithdrawal.objects.create(
                revision_id=release.main_revision_id, withdrawn_by=alice
            ),
        },
        User: {
            "update": lambda: User.objects.filter(pk=alice.pk).update(is_active=False),
            "groups": lambda: services.reviewer_add(actor=services.command_actor("add_reviewer"), user=alice),
            "raw": lambda: connection.cursor().execute(
                'UPDATE "access_user" SET "is_active" = false WHERE "id" = %s', [alice.pk]
            ),
        },
    }


def test_every_kind_of_write_to_what_the_gate_reads_publishes_a_new_version(world):
    cases = writes(world)
    assert set(cases) == set(loader.GATE_MODELS)
    silent = [
        f"{model.__name__}.{kind}"
        for model, kinds in cases.items()
        for kind, write in kinds.items()
        if not publishes(write)
    ]
    assert silent == []


def test_bookkeeping_and_other_tables_publish_nothing(world):
    token, alice = world["token"], world["alice"]
    quiet = {
        "token last used": lambda: ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now()),
        "sign-in time": lambda: User.objects.filter(pk=alice.pk).update(last_login=timezone.now()),
        "audit": lambda: services.audit(actor=services.task_actor("tests"), action="test.event"),
        "download event": lambda: DownloadEvent.objects.create(release=world["release"], via="api"),
        "email sent": lambda: Grant.objects.filter(pk=world["grant"].pk).update(issued_email_sent_at=timezone.now()),
    }
    loud = [name for name, write in quiet.items() if publishes(write)]
    assert loud == []
    assert AuditEvent.objects.filter(action="test.event").exists()


def test_a_write_drops_this_processes_entries_at_once_and_nothing_is_cached_after_it_in_that_request(rf, world):
    release = world["release"]
    seen = []

    def view(request):
        cache.put(("probe",), 1)
        seen.append(cache.get(("probe",)))
        ModelRelease.objects.filter(pk=release.pk).update(display_name="Renamed")
        seen.append(cache.get(("probe",)))
        cache.put(("probe",), 2)
        seen.append(cache.get(("probe",)))
        return None

    cache.RequestScope(view)(rf.get("/"))
    assert seen == [1, None, None]
