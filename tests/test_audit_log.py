"""The audit and download logs are append-only in PostgreSQL itself, not only in the admin."""

import psycopg
import pytest
from django.db import ProgrammingError, connection, transaction
from django.db.models import ProtectedError

from access import services
from access.models import AuditEvent, DownloadEvent, Grant, ModelRelease, User
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

REFUSED = r"pgtrigger: Cannot update or delete rows from access_{} table"


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, "checkpoint_last-model_part-0-shard0.pt", b"w")
    return release


@pytest.fixture
def grant(alice, reviewer, gated):
    return grant_for(alice, gated, reviewer)


@pytest.fixture
def download(alice, grant):
    return record(alice, grant, file=grant.release.files.get(), via=DownloadEvent.Via.API, ip="192.0.2.7")


def record(user, grant, *, via, file=None, token=None, ip=None):
    """What the download gate writes for an allowed download."""
    return DownloadEvent.objects.create(
        release=grant.release, file=file, user=user, token=token, grant=grant, via=via, ip=ip
    )


@pytest.fixture
def event(alice):
    return services.audit(actor=services.Actor(user=alice, credential="session"), action="token.create")


def _refused(table):
    """The trigger's RAISE (SQLSTATE P0001), which psycopg 3 reports as a ProgrammingError.

    Each refused statement runs in its own savepoint so the test's transaction survives it.
    """
    return pytest.raises(ProgrammingError, match=REFUSED.format(table))


def _row(model, pk):
    return model.objects.filter(pk=pk).values().get()


def test_it_refuses_a_raw_update_of_an_audit_event(event):
    before = _row(AuditEvent, event.pk)
    with _refused("auditevent") as refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE access_auditevent SET action = 'x'")
    assert isinstance(refused.value.__cause__, psycopg.errors.RaiseException)
    assert _row(AuditEvent, event.pk) == before


def test_it_refuses_a_raw_delete_of_a_download_event(download):
    with _refused("downloadevent"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM access_downloadevent")
    assert DownloadEvent.objects.filter(pk=download.pk).exists()


@pytest.mark.parametrize("fixture", ["event", "download"])
def test_it_refuses_an_orm_update_delete_or_save(request, fixture):
    obj = request.getfixturevalue(fixture)
    model = type(obj)
    before = _row(model, obj.pk)
    table = model._meta.model_name
    with _refused(table), transaction.atomic():
        model.objects.update(ip="203.0.113.1")
    with _refused(table), transaction.atomic():
        model.objects.filter(pk=obj.pk).delete()
    with _refused(table), transaction.atomic():
        obj.delete()
    obj.ip = "203.0.113.1"
    with _refused(table), transaction.atomic():
        obj.save()
    assert _row(model, obj.pk) == before


def test_it_still_records_new_events(event, download, alice, grant):
    events, downloads = AuditEvent.objects.count(), DownloadEvent.objects.count()
    services.audit(actor=services.Actor(user=alice, credential="session", reauthenticated=True), action="token.revoke")
    record(alice, grant, via="manifest")
    assert AuditEvent.objects.count() == events + 1
    assert DownloadEvent.objects.count() == downloads + 1


def test_truncate_still_empties_the_tables(event, download):
    # Test teardown (flush) truncates; the trigger guards rows, not the table as a whole.
    with transaction.atomic(), connection.cursor() as cursor:
        # The fixtures' deferred foreign-key checks would otherwise block TRUNCATE in this same transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # Webhook deliveries name the audit event they tell of, so they go with it.
        cursor.execute(
            "TRUNCATE access_auditevent, access_downloadevent, access_webhookdelivery, access_webhookattempt"
        )
    assert not AuditEvent.objects.exists()
    assert not DownloadEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_transactional_test_can_still_flush_the_log(local_storage):
    user = UserFactory()
    services.audit(actor=services.Actor(user=user, credential="session", reauthenticated=True), action="token.create")
    assert AuditEvent.objects.count() == 1  # teardown must truncate this row without tripping the trigger


def test_a_user_named_by_the_log_cannot_be_deleted(db):
    user_only_in_log = UserFactory()
    logged = services.audit(
        actor=services.Actor(user=user_only_in_log, credential="session", reauthenticated=True), action="token.create"
    )
    with pytest.raises(ProtectedError), transaction.atomic():
        user_only_in_log.delete()
    assert _row(AuditEvent, logged.pk)["actor_id"] == user_only_in_log.pk
    assert User.objects.filter(pk=user_only_in_log.pk).exists()


def test_a_grant_token_or_file_with_downloads_cannot_be_deleted(alice, grant):
    token = services.token_create(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="t"
    )[0]
    file = grant.release.files.get()
    record(alice, grant, file=file, token=token, via="api")
    for obj in (grant, token, file):
        with pytest.raises(ProtectedError), transaction.atomic():
            obj.delete()
    recorded = DownloadEvent.objects.get()
    assert (recorded.grant_id, recorded.token_id, recorded.file_id) == (grant.pk, token.pk, file.pk)


def test_a_release_with_downloads_cannot_be_deleted(local_storage, alice):
    release = ReleaseFactory(access="open")
    add_file(release, "config.json", b"{}")
    DownloadEvent.objects.create(release=release, file=release.files.get(), user=alice, via="api")
    with pytest.raises(ProtectedError), transaction.atomic():
        release.delete()
    assert ModelRelease.objects.filter(pk=release.pk).exists()
    assert DownloadEvent.objects.filter(release=release).count() == 1


def test_a_grant_without_downloads_can_still_be_deleted(grant):
    grant.delete()
    assert not Grant.objects.exists()


# --- Admin ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    return login_recently(client, UserFactory(is_staff=True, is_superuser=True))


@pytest.mark.parametrize("fixture", ["event", "download"])
def test_the_admin_shows_the_log_read_only(admin_client, request, fixture):
    obj = request.getfixturevalue(fixture)
    model = type(obj)
    base = f"/admin/access/{model._meta.model_name}/"
    page = admin_client.get(f"{base}{obj.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert admin_client.post(f"{base}{obj.pk}/change/", {"ip": "203.0.113.1"}).status_code == 403
    assert admin_client.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get(f"{base}add/").status_code == 403
    assert _row(model, obj.pk)["ip"] != "203.0.113.1"


def test_the_admin_explains_why_a_logged_user_cannot_be_deleted(admin_client, event, alice):
    page = admin_client.post(f"/admin/access/user/{alice.pk}/delete/", {"post": "yes"})
    assert page.status_code == 200
    assert page.context_data["protected"]  # the admin lists the log entries that keep the account
    assert User.objects.filter(pk=alice.pk).exists()
